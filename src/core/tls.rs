//! TLS certificate/key pair validation. Pure: PEM bytes and the current time
//! in, a verdict out.
//!
//! A pair is good when the certificate parses (the first PEM certificate is
//! the leaf; a chain may follow), the private key parses (PKCS#8, PKCS#1 RSA
//! or SEC1 EC), the key's public half equals the certificate's
//! SubjectPublicKeyInfo (RSA, ECDSA P-256/P-384, Ed25519 — via rustls with
//! ring), and the certificate is valid now. Expiry within the warning window
//! is reported but does not block.

use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// What a good pair looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairInfo {
    /// The leaf's subject.
    pub subject: String,
    /// The leaf's serial number (hex, colon-separated).
    pub serial: String,
    /// Not-after (Unix seconds).
    pub not_after: i64,
    /// A warning if it expires within the window.
    pub expiry_warning: Option<String>,
}

/// Checks `cert_pem` against `key_pem` at Unix time `now`.
pub fn check_pair(
    cert_pem: &[u8],
    key_pem: &[u8],
    now: i64,
    warn_within: Duration,
) -> Result<PairInfo, String> {
    let der = CertificateDer::pem_slice_iter(cert_pem)
        .next()
        .ok_or("no PEM certificate found")?
        .map_err(|e| format!("certificate PEM does not parse: {e}"))?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| format!("certificate does not parse: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| format!("private key PEM does not parse: {e}"))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| format!("unsupported private key: {e}"))?;
    let key_spki = signer
        .public_key()
        .ok_or("cannot derive the public key of the private key")?;
    if key_spki.as_ref() != cert.public_key().raw {
        return Err("the private key does not match the certificate's public key".into());
    }
    let validity = cert.validity();
    let (not_before, not_after) = (
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    );
    if now < not_before {
        return Err(format!(
            "the certificate is not valid yet (not before {})",
            validity.not_before
        ));
    }
    if now > not_after {
        return Err(format!("the certificate expired on {}", validity.not_after));
    }
    let left = not_after - now;
    let expiry_warning = (left < warn_within.as_secs() as i64).then(|| {
        format!(
            "the certificate expires in {} (on {})",
            humantime::format_duration(Duration::from_secs(left as u64)),
            validity.not_after
        )
    });
    Ok(PairInfo {
        subject: cert.subject().to_string(),
        serial: cert.raw_serial_as_string(),
        not_after,
        expiry_warning,
    })
}
