//! Against a real Prometheus (Debian's `prometheus` 2.42, installed by
//! scripts/test): the `http` action reloads it through its lifecycle
//! endpoint, a wrong method fails with its own answer; and, as the stand-in
//! for Loki (whose TLS comes from the same exporter-toolkit code), with TLS
//! from `--web.config.file` it serves a swapped pair with no action at all,
//! which `verify` sees.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::{Env, free_port, last_line_with, served_serial, wait_for};

/// A Prometheus on 127.0.0.1:`port`, killed when dropped.
struct Prom {
    child: Child,
    log: PathBuf,
}

impl Prom {
    fn start(bin: &str, dir: &Path, port: u16, config: &Path, web_config: Option<&Path>) -> Prom {
        let log = dir.join("prometheus.log");
        let mut cmd = Command::new(bin);
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-lifecycle")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap());
        if let Some(w) = web_config {
            cmd.arg(format!("--web.config.file={}", w.display()));
        }
        Prom {
            child: cmd.spawn().unwrap(),
            log,
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Prom {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET `path` from 127.0.0.1:`port` over plain HTTP: the whole answer.
fn get(port: u16, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

const SCRAPE_A: &str = "global:\n  scrape_interval: 15s\n";
const SCRAPE_B: &str = "global:\n  scrape_interval: 17s\n";

/// A files bridge installing `prometheus.yml` for a Prometheus on `port`,
/// reloaded with `http` (`method`).
fn http_env(port: u16, method: &str) -> Env {
    Env::new_files(&format!(
        "    then:\n      - http: {{ url: \"http://127.0.0.1:{port}/-/reload\", method: {method}, timeout: 20s }}\n"
    ))
}

#[test]
fn the_http_action_reloads_prometheus_and_a_refusal_is_its_answer() {
    let Some(bin) = common::server("/usr/bin/prometheus", "prometheus") else {
        return;
    };
    let port = free_port();
    let env = http_env(port, "POST");
    env.put("prometheus.yml", SCRAPE_A);
    let d = env.start();
    // Not up yet: the action fails with the connection's error.
    d.wait_log(&format!(
        "http failed (retried on the next sync): POST http://127.0.0.1:{port}/-/reload: connecting to 127.0.0.1:{port}"
    ));
    let prom = Prom::start(
        bin,
        env.tmp.path(),
        port,
        &env.dest.join("prometheus.yml"),
        None,
    );
    wait_for(
        "prometheus ready",
        || get(port, "/-/ready").is_some_and(|a| a.starts_with("HTTP/1.1 200")),
        || prom.log(),
    );
    assert!(
        get(port, "/api/v1/status/config")
            .unwrap()
            .contains("scrape_interval: 15s"),
        "{}",
        prom.log()
    );

    // A new config: installed, then POST /-/reload; Prometheus loads it.
    env.put("prometheus.yml", SCRAPE_B);
    d.wait_log(&format!(
        "http ok: POST http://127.0.0.1:{port}/-/reload: HTTP 200"
    ));
    wait_for(
        "prometheus runs the new config",
        || get(port, "/api/v1/status/config").is_some_and(|a| a.contains("scrape_interval: 17s")),
        || prom.log(),
    );
    assert!(
        prom.log()
            .contains("Completed loading of configuration file"),
        "{}",
        prom.log()
    );
    drop(d);

    // GET is refused by Prometheus itself: the action fails with its answer.
    let env = http_env(port, "GET");
    env.put("prometheus.yml", SCRAPE_A);
    let d = env.start();
    d.wait_log(&format!(
        "http failed (retried on the next sync): GET http://127.0.0.1:{port}/-/reload: HTTP 405, expected 200: Only POST or PUT requests allowed"
    ));
    assert_eq!(env.run(&["status"]).status.code(), Some(1));
}

#[test]
fn prometheus_serves_a_swapped_pair_with_no_action_as_verify_sees() {
    let Some(bin) = common::server("/usr/bin/prometheus", "prometheus") else {
        return;
    };
    let port = free_port();
    let (crt_a, key_a, _) = common::openssl_pair("p256", "hostbridge-a", 30);
    let (crt_b, key_b, serial_b) = common::openssl_pair("p256", "hostbridge-b", 30);
    let env = Env::new_files(&format!(
        "    require: [tls.crt, tls.key]\n    validate: {{ tls-pair: {{ cert: tls.crt, key: tls.key }} }}\n    then: []\n    verify: {{ tls-endpoint: \"127.0.0.1:{port}\", sni: localhost, within: 20s }}\n"
    ));
    env.put_renamed("tls.crt", &crt_a);
    env.put_renamed("tls.key", &key_a);
    let d = env.start();
    d.wait_log("verify failed");
    // Prometheus with TLS from the installed pair, through its links.
    let web = env.tmp.path().join("web.yml");
    fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: {0}/tls.crt\n  key_file: {0}/tls.key\n",
            env.dest.display()
        ),
    )
    .unwrap();
    let scrape = env.tmp.path().join("prometheus.yml");
    fs::write(&scrape, SCRAPE_A).unwrap();
    let prom = Prom::start(bin, env.tmp.path(), port, &scrape, Some(&web));
    wait_for(
        "prometheus serving TLS",
        || served_serial(port).is_some(),
        || prom.log(),
    );

    // B arrives; no action runs; the next handshake already gets B.
    env.put_renamed("tls.crt", &crt_b);
    env.put_renamed("tls.key", &key_b);
    d.wait_log("verify ok: serving serial ");
    let line = last_line_with(&d.log(), "verify ok: serving serial");
    assert!(line.contains("CN=hostbridge-b"), "{line}");
    assert!(!line.contains("escalate"), "{line}");
    assert_eq!(served_serial(port), Some(serial_b));
    assert_eq!(
        prom.log()
            .matches("Completed loading of configuration file")
            .count(),
        1,
        "Prometheus loaded its config once, at start, and was never reloaded: {}",
        prom.log()
    );
    let st: serde_json::Value =
        serde_json::from_slice(&env.run(&["status", "--json"]).stdout).unwrap();
    assert_eq!(
        st["bridges"][0]["cert"]["served"]["matches"], true,
        "{st:#}"
    );
    assert_eq!(st["bridges"][0]["health"], "healthy", "{st:#}");
}
