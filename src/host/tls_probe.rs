//! Which certificate a TLS endpoint serves: one TLS handshake (no HTTP),
//! then the leaf certificate the server presented. Host layer.
//!
//! The server is not authenticated against a CA: the question is not "is
//! this server trusted" but "is it serving the certificate we just
//! installed", answered by comparing the leaf's DER with ours
//! (`core::served`). The handshake signature is still verified against the
//! presented certificate, so a server that presents our certificate holds
//! its private key.

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use super::http::{Timed, connect_first};
use crate::core::served::Probe;

/// Accepts any certificate chain; checks the handshake's signature with the
/// presented leaf.
#[derive(Debug)]
struct AnyCert(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// Connects to `endpoint` ("host:port"; each address it resolves to in
/// turn until one answers), sends `sni` as the server name (none when
/// `sni` is an IP address), and returns the served leaf, or why there is
/// none. The whole probe ends by `timeout`: a server that trickles bytes
/// cannot hold it longer.
pub(crate) fn probe(endpoint: &str, sni: &str, timeout: Duration) -> Probe {
    let deadline = Instant::now() + timeout;
    let addrs: Vec<SocketAddr> = match endpoint.to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(e) => return Probe::NotServing(format!("cannot resolve {endpoint}: {e}")),
    };
    let (mut tcp, addr) = match connect_first(addrs, deadline) {
        Ok(connected) => connected,
        Err(Some((addr, e))) if e.kind() == ErrorKind::ConnectionRefused => {
            return Probe::NotServing(format!("connection to {addr} refused"));
        }
        Err(Some((addr, e))) => return Probe::NotServing(format!("connecting to {addr}: {e}")),
        Err(None) => return Probe::NotServing(format!("{endpoint} resolves to no address")),
    };
    match handshake(&mut tcp, sni, deadline) {
        Ok(der) => Probe::Served(der),
        Err(e) => Probe::NotServing(format!("TLS handshake with {addr}: {e}")),
    }
}

fn handshake(tcp: &mut TcpStream, sni: &str, deadline: Instant) -> Result<Vec<u8>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let algs = provider.signature_verification_algorithms;
    let config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(algs)))
        .with_no_client_auth();
    let name = ServerName::try_from(sni.to_string()).map_err(|e| format!("SNI {sni:?}: {e}"))?;
    let mut conn =
        rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    while conn.is_handshaking() {
        // Each read and write gets what is left of the whole probe's time.
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("timed out".into());
        }
        tcp.bound(left).map_err(|e| e.to_string())?;
        // One read or write a turn (not `complete_io`, which reads on while
        // bytes trickle in), so the deadline is looked at between each.
        let io = if conn.wants_write() {
            conn.write_tls(tcp)
        } else {
            match conn.read_tls(tcp) {
                Ok(0) => return Err("the server closed the connection".into()),
                Ok(n) => conn
                    .process_new_packets()
                    .map(|_| n)
                    .map_err(|e| std::io::Error::other(e.to_string())),
                Err(e) => Err(e),
            }
        };
        io.map_err(|e| match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => "timed out".to_string(),
            ErrorKind::UnexpectedEof => "the server closed the connection".to_string(),
            _ => e.to_string(),
        })?;
    }
    let leaf = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or("the server presented no certificate")?
        .as_ref()
        .to_vec();
    conn.send_close_notify();
    let _ = tcp.set_write_timeout(Some(Duration::from_millis(100)));
    let _ = conn.write_tls(tcp);
    Ok(leaf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;

    /// A server that starts a TLS record and then trickles a byte at a
    /// time: the probe still ends by its timeout, saying so.
    #[test]
    fn a_trickling_server_cannot_hold_a_probe_past_its_timeout() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            // A handshake record header announcing 16 KiB, then a drip.
            let _ = s.write_all(&[0x16, 0x03, 0x03, 0x40, 0x00]);
            for _ in 0..40 {
                if s.write_all(&[0]).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        let t0 = Instant::now();
        let p = probe(&addr.to_string(), "localhost", Duration::from_secs(1));
        let took = t0.elapsed();
        assert!(took < Duration::from_secs(4), "took {took:?}");
        match p {
            Probe::NotServing(why) => assert!(why.contains("timed out"), "{why}"),
            Probe::Served(_) => panic!("served?"),
        }
        drop(server);
    }

    #[test]
    fn nothing_listening_is_refused() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let p = probe(
            &format!("127.0.0.1:{port}"),
            "127.0.0.1",
            Duration::from_secs(2),
        );
        assert_eq!(
            p,
            Probe::NotServing(format!("connection to 127.0.0.1:{port} refused"))
        );
    }
}
