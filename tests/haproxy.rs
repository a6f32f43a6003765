//! Against a real HAProxy (Debian 12's 2.6, installed by scripts/test): a
//! files bridge installs a renewed certificate-and-key PEM, the
//! `haproxy-cert` action puts it into HAProxy's memory through its runtime
//! API (`set ssl cert` + `commit ssl cert`) with no reload, `openssl
//! s_client` and `verify` see the new serial, and HAProxy's pid is the same.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::{Env, free_port, last_line_with, served_serial, wait_for};

struct Haproxy(Child);

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn haproxy_takes_the_renewed_certificate_through_its_runtime_api_without_a_reload() {
    let Some(bin) = common::server("/usr/sbin/haproxy", "haproxy") else {
        return;
    };
    let port = free_port();
    let (crt_a, key_a, _) = common::openssl_pair("p256", "hostbridge-a", 30);
    let (crt_b, key_b, serial_b) = common::openssl_pair("p256", "hostbridge-b", 30);
    let pem = |c: &[u8], k: &[u8]| [c, k].concat();
    let env = Env::new_files("");
    let sock = env.tmp.path().join("haproxy.sock");
    let site = env.dest.join("site.pem");
    env.write_files_config(&format!(
        "    validate: {{ tls-pair: {{ cert: site.pem, key: site.pem }} }}\n    then:\n      - haproxy-cert: {{ socket: {}, cert: {} }}\n    verify: {{ tls-endpoint: \"127.0.0.1:{port}\", sni: localhost, within: 10s }}\n",
        sock.display(),
        site.display()
    ));
    env.put_renamed("site.pem", &pem(&crt_a, &key_a));
    let d = env.start();
    // HAProxy is not there yet: the action says so.
    d.wait_log("haproxy-cert failed (retried on the next sync): connecting to ");

    let cfg = env.tmp.path().join("haproxy.cfg");
    fs::write(
        &cfg,
        format!(
            "global\n  stats socket {sock} mode 600 level admin\ndefaults\n  mode http\n  timeout connect 5s\n  timeout client 5s\n  timeout server 5s\nfrontend fe\n  bind 127.0.0.1:{port} ssl crt {site}\n  http-request return status 200 content-type text/plain string ok\n",
            sock = sock.display(),
            site = site.display()
        ),
    )
    .unwrap();
    let log = env.tmp.path().join("haproxy.log");
    let child = Command::new(bin)
        .args(["-db", "-f"])
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&log).unwrap())
        .stderr(fs::File::create(env.tmp.path().join("haproxy.err")).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id();
    let _haproxy = Haproxy(child);
    wait_for(
        "haproxy serving",
        || served_serial(port).is_some() && sock.exists(),
        || fs::read_to_string(env.tmp.path().join("haproxy.err")).unwrap_or_default(),
    );

    // B arrives: installed, handed to HAProxy, committed, served.
    env.put_renamed("site.pem", &pem(&crt_b, &key_b));
    d.wait_log(&format!(
        "haproxy-cert ok: {} updated in HAProxy's memory and committed",
        site.display()
    ));
    d.wait_log("verify ok: serving serial ");
    assert_eq!(served_serial(port).as_deref(), Some(serial_b.as_str()));
    assert!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "the same HAProxy process serves it: no reload, no restart"
    );
    let line = last_line_with(&d.log(), "verify ok");
    assert!(
        line.contains("CN=hostbridge-b") && !line.contains("escalate"),
        "{line}"
    );

    // A PEM with only the certificate fails validation before HAProxy is
    // asked: nothing is installed, HAProxy keeps B.
    env.put_renamed("site.pem", &crt_a);
    d.wait_log("site.pem and site.pem: ");
    assert_eq!(served_serial(port), Some(serial_b));
}
