//! TLS pair validation against certificates and keys generated here with the
//! real openssl CLI (no fixed keys in the repo): RSA, ECDSA P-256/P-384 and
//! Ed25519; matching and mismatched pairs; validity and the expiry warning.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use hostbridge::core::tls::check_pair;

/// A self-signed pair (PEM) of `kind`, valid for `days`.
fn generate(kind: &str, days: u32) -> (Vec<u8>, Vec<u8>) {
    let (crt, key, _) = common::openssl_pair(kind, "hostbridge-test", days);
    (crt, key)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

const WEEK: Duration = Duration::from_secs(7 * 86400);

#[test]
fn matching_pairs_of_every_key_type_pass() {
    for kind in ["rsa", "p256", "p384", "ed25519"] {
        let (crt, key) = generate(kind, 30);
        let info = check_pair(&crt, &key, now(), WEEK).unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert!(info.subject.contains("hostbridge-test"), "{kind}: {info:?}");
        assert!(info.expiry_warning.is_none(), "{kind}");
    }
}

#[test]
fn mismatched_pairs_fail() {
    let (crt_a, _) = generate("p256", 30);
    let (_, key_b) = generate("p256", 30);
    let (_, key_rsa) = generate("rsa", 30);
    for key in [&key_b, &key_rsa] {
        let err = check_pair(&crt_a, key, now(), WEEK).unwrap_err();
        assert_eq!(
            err,
            "the private key does not match the certificate's public key"
        );
    }
}

#[test]
fn validity_and_expiry_warning() {
    let (crt, key) = generate("ed25519", 30);
    let info = check_pair(&crt, &key, now(), WEEK).unwrap();
    // 40 days from now it has expired; 25 days from now it warns.
    let err = check_pair(&crt, &key, now() + 40 * 86400, WEEK).unwrap_err();
    assert!(err.starts_with("the certificate expired on "), "{err}");
    let warned = check_pair(&crt, &key, now() + 25 * 86400, WEEK).unwrap();
    assert!(
        warned
            .expiry_warning
            .unwrap()
            .starts_with("the certificate expires in ")
    );
    let err = check_pair(&crt, &key, info.not_after - 400 * 86400, WEEK).unwrap_err();
    assert!(err.starts_with("the certificate is not valid yet"), "{err}");
}

#[test]
fn garbage_is_reported() {
    let (crt, key) = generate("p256", 30);
    assert_eq!(
        check_pair(b"", &key, now(), WEEK).unwrap_err(),
        "no PEM certificate found"
    );
    assert!(
        check_pair(&crt, b"not a key", now(), WEEK)
            .unwrap_err()
            .starts_with("private key PEM does not parse")
    );
    assert!(
        check_pair(&key, &key, now(), WEEK).is_err(),
        "a key is not a certificate"
    );
}
