//! URLs, requests and answers, table-style.

use super::*;

#[test]
fn urls() {
    let ok = |u: &str, host: &str, port: u16, path: &str| {
        assert_eq!(
            Url::parse(u),
            Ok(Url {
                host: host.into(),
                port,
                path: path.into()
            }),
            "{u}"
        );
    };
    ok(
        "http://127.0.0.1:9090/-/reload",
        "127.0.0.1",
        9090,
        "/-/reload",
    );
    ok("http://localhost", "localhost", 80, "/");
    ok("http://[::1]:2019/load?x=1", "[::1]", 2019, "/load?x=1");
    ok("http://[::1]/", "[::1]", 80, "/");
    for bad in [
        "https://127.0.0.1/-/reload",
        "127.0.0.1:9090/-/reload",
        "http:///x",
        "http://user@host/",
        "http://host:0/",
        "http://host:99999/",
        "http://host:x/",
        "http://[::1]x/",
        "http://host/a b",
        "http://host/a\r\nX: y",
        "http://host/#frag",
    ] {
        assert!(Url::parse(bad).is_err(), "{bad} should be refused");
    }
}

#[test]
fn the_request_names_the_host_and_has_no_body() {
    let u = Url::parse("http://127.0.0.1:9090/-/reload").unwrap();
    let r = String::from_utf8(request("POST", &u)).unwrap();
    assert!(
        r.starts_with("POST /-/reload HTTP/1.1\r\nHost: 127.0.0.1:9090\r\n"),
        "{r}"
    );
    assert!(
        r.contains("\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
        "{r}"
    );
    let u = Url::parse("http://localhost/load").unwrap();
    let r = String::from_utf8(request("GET", &u)).unwrap();
    assert!(
        r.starts_with("GET /load HTTP/1.1\r\nHost: localhost\r\n"),
        "{r}"
    );
}

#[test]
fn answers() {
    assert_eq!(
        status_of(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        Ok((200, String::new()))
    );
    assert_eq!(
        status_of(
            b"HTTP/1.0 405 Method Not Allowed\r\nX: y\r\n\r\nOnly POST or PUT requests allowed\n"
        ),
        Ok((405, "Only POST or PUT requests allowed".into()))
    );
    for bad in [
        &b""[..],
        b"SSH-2.0-OpenSSH\r\n",
        b"HTTP/2 200\r\n",
        b"HTTP/1.1 abc\r\n",
        b"HTTP/1.1 999 x\r\n",
    ] {
        assert!(
            status_of(bad).is_err(),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
}
