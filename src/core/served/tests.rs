//! `judge` on real certificates (two self-signed P-256 fixtures, valid for a
//! century, in tests/fixtures/certs).

use super::*;

const A: &[u8] = include_bytes!("../../../tests/fixtures/certs/a.pem");
const B: &[u8] = include_bytes!("../../../tests/fixtures/certs/b.pem");

fn der(pem: &[u8]) -> Vec<u8> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem)
        .next()
        .unwrap()
        .unwrap()
        .as_ref()
        .to_vec()
}

#[test]
fn each_probe_gets_its_verdict() {
    let a = CertFacts::of_pem(A).unwrap();
    let b = CertFacts::of_pem(B).unwrap();
    assert_eq!(a.subject, "CN=hostbridge-fixture-a");
    assert_eq!(a.sha256.len(), 64);
    assert_ne!(a.sha256, b.sha256);
    assert!(a.not_after > 4_000_000_000, "{}", a.not_after);

    let cases: Vec<(&str, Probe, bool, String)> = vec![
        (
            "the installed one",
            Probe::Served(der(A)),
            true,
            format!("serving serial {} (CN=hostbridge-fixture-a)", a.serial),
        ),
        (
            "the old one",
            Probe::Served(der(B)),
            false,
            format!(
                "serves serial {} (CN=hostbridge-fixture-b), not the installed serial {} (CN=hostbridge-fixture-a)",
                b.serial, a.serial
            ),
        ),
        (
            "nothing listens",
            Probe::NotServing("connection to 127.0.0.1:1 refused".into()),
            false,
            "not serving: connection to 127.0.0.1:1 refused".into(),
        ),
        (
            "garbage instead of a certificate",
            Probe::Served(b"not DER".to_vec()),
            false,
            "not serving: the served certificate: certificate does not parse".into(),
        ),
    ];
    for (what, probe, ok, text) in cases {
        let v = judge(&a, &probe);
        assert_eq!(v.ok(), ok, "{what}");
        assert!(v.text(&a).starts_with(&text), "{what}: {}", v.text(&a));
    }
}

#[test]
fn a_pem_without_a_certificate_is_an_error() {
    assert!(CertFacts::of_pem(b"-----BEGIN NOTHING-----\n").is_err());
    assert!(CertFacts::of_der(b"").is_err());
}
