//! The payload rebuilt from PEM blocks, and HAProxy's answers.

use super::*;

const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIBAA==\n-----END CERTIFICATE-----\n";
const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIGHAgEA\n-----END PRIVATE KEY-----\n";

#[test]
fn the_payload_has_only_the_blocks_and_no_empty_line() {
    let pem = format!("subject=CN=x\r\n{CERT}\n\nsome words\n{KEY}\n");
    let p = payload(pem.as_bytes()).unwrap();
    assert_eq!(p, format!("{CERT}{KEY}"));
    assert!(!p.contains("\n\n"));
    // An empty line inside a block is dropped, not passed on.
    let gappy =
        "-----BEGIN CERTIFICATE-----\nMIIB\n\nAA==\n-----END CERTIFICATE-----\n".to_string() + KEY;
    assert!(!payload(gappy.as_bytes()).unwrap().contains("\n\n"));
}

#[test]
fn what_haproxy_could_misread_is_refused() {
    for (pem, why) in [
        (CERT.to_string(), "found 1 certificate(s) and 0 key(s)"),
        (KEY.to_string(), "found 0 certificate(s) and 1 key(s)"),
        (
            format!("{CERT}-----BEGIN PRIVATE KEY-----\nshow info\n-----END PRIVATE KEY-----\n"),
            "not base64",
        ),
        (
            format!("{CERT}-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n"),
            "not base64",
        ),
        (
            format!("{CERT}-----BEGIN PRIVATE KEY-----\nMIGH\n"),
            "not closed",
        ),
        (format!("-----BEGIN x;y-----\n{CERT}{KEY}"), "odd PEM label"),
    ] {
        let e = payload(pem.as_bytes()).unwrap_err();
        assert!(e.contains(why), "{e} should say {why:?}");
    }
    assert!(payload(b"\xff\xfe").is_err());
}

#[test]
fn commands_and_answers() {
    assert_eq!(
        set_command("/etc/haproxy/site.pem", "P\n"),
        "set ssl cert /etc/haproxy/site.pem <<\nP\n\n"
    );
    assert_eq!(commit_command("/a.pem"), "commit ssl cert /a.pem\n");
    assert!(set_ok("Transaction created for certificate /a.pem!\n").is_ok());
    assert!(set_ok("Transaction updated for certificate /a.pem!\n").is_ok());
    let e = set_ok("unknown certificate name '/b.pem'\n").unwrap_err();
    assert_eq!(e, "set ssl cert: unknown certificate name '/b.pem'");
    assert!(commit_ok("Committing /a.pem\nSuccess!\n").is_ok());
    assert!(commit_ok("").unwrap_err().contains("level admin"));
}
