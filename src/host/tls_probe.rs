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
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

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

/// Connects to `endpoint` ("host:port"), sends `sni` as the server name
/// (none when `sni` is an IP address), and returns the served leaf, or
/// why there is none. Each step is bounded by `timeout`.
pub(crate) fn probe(endpoint: &str, sni: &str, timeout: Duration) -> Probe {
    let addrs: Vec<SocketAddr> = match endpoint.to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(e) => return Probe::NotServing(format!("cannot resolve {endpoint}: {e}")),
    };
    let Some(addr) = addrs.first() else {
        return Probe::NotServing(format!("{endpoint} resolves to no address"));
    };
    let mut tcp = match TcpStream::connect_timeout(addr, timeout) {
        Ok(s) => s,
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
            return Probe::NotServing(format!("connection to {addr} refused"));
        }
        Err(e) => return Probe::NotServing(format!("connecting to {addr}: {e}")),
    };
    let _ = tcp.set_read_timeout(Some(timeout));
    let _ = tcp.set_write_timeout(Some(timeout));
    match handshake(&mut tcp, sni) {
        Ok(der) => Probe::Served(der),
        Err(e) => Probe::NotServing(format!("TLS handshake with {addr}: {e}")),
    }
}

fn handshake(tcp: &mut TcpStream, sni: &str) -> Result<Vec<u8>, String> {
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
        conn.complete_io(tcp).map_err(|e| match e.kind() {
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
    let _ = conn.complete_io(tcp);
    Ok(leaf)
}
