//! The certificate job against a real nginx (Debian's nginx-light): a files
//! bridge with `validate: tls-pair` and `signal: HUP` by pid file renews the
//! certificate nginx serves; a mismatched pair is never installed and nginx
//! is not signalled; a lone certificate waits for its key. A real TLS client
//! (openssl s_client) checks which certificate nginx serves.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::{Env, free_port, last_line_with, served_serial, wait_for};

struct Nginx {
    pidfile: std::path::PathBuf,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Ok(pid) = fs::read_to_string(&self.pidfile) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid.trim().parse().unwrap_or(0)),
                nix::sys::signal::Signal::SIGQUIT,
            );
        }
    }
}

/// Starts nginx under `prefix` (its pid file is `prefix/nginx.pid`),
/// serving `dest/tls.crt` and `dest/tls.key` on 127.0.0.1:`port`; returns
/// once it serves.
fn start_nginx(nginx_bin: &str, prefix: &Path, port: u16, dest: &Path) -> Nginx {
    let server = format!(
        "listen 127.0.0.1:{port} ssl;\n    ssl_certificate {dest}/tls.crt;\n    ssl_certificate_key {dest}/tls.key;\n    location / {{ return 200 \"ok\"; }}",
        dest = dest.display()
    );
    run_nginx(nginx_bin, prefix, &server, || served_serial(port).is_some())
}

/// Starts nginx under `prefix` with one `server { … }` holding `server`
/// (access log: `prefix/logs/access.log`); returns once `ready`.
fn run_nginx(nginx_bin: &str, prefix: &Path, server: &str, ready: impl FnMut() -> bool) -> Nginx {
    let pidfile = prefix.join("nginx.pid");
    let conf = prefix.join("nginx.conf");
    let temp = |n: &str| prefix.join(n).display().to_string();
    fs::write(
        &conf,
        format!(
            "pid {pid};\nerror_log {log} notice;\nevents {{}}\nhttp {{\n  access_log {access};\n  client_body_temp_path {t1};\n  proxy_temp_path {t2};\n  fastcgi_temp_path {t3};\n  uwsgi_temp_path {t4};\n  scgi_temp_path {t5};\n  server {{\n    {server}\n  }}\n}}\n",
            pid = pidfile.display(),
            log = prefix.join("logs/error.log").display(),
            access = prefix.join("logs/access.log").display(),
            t1 = temp("t1"),
            t2 = temp("t2"),
            t3 = temp("t3"),
            t4 = temp("t4"),
            t5 = temp("t5"),
        ),
    )
    .unwrap();
    let started = Command::new(nginx_bin)
        .arg("-p")
        .arg(prefix)
        .arg("-c")
        .arg(&conf)
        .output()
        .unwrap();
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    let guard = Nginx { pidfile };
    wait_for("nginx serving", ready, || {
        fs::read_to_string(prefix.join("logs/error.log")).unwrap_or_default()
    });
    guard
}

#[test]
fn nginx_serves_the_renewed_certificate_and_never_a_mismatch() {
    let Some((nginx_bin, _work, prefix)) = nginx_setup() else {
        return;
    };
    let (crt_a, key_a, _serial_a) = common::openssl_pair("p256", "hostbridge-a", 30);
    let (crt_b, key_b, serial_b) = common::openssl_pair("p256", "hostbridge-b", 30);
    let (crt_c, _key_c, _) = common::openssl_pair("p256", "hostbridge-c", 30);
    let (crt_d, key_d, serial_d) = common::openssl_pair("p256", "hostbridge-d", 30);

    let pidfile = prefix.join("nginx.pid");
    let env = Env::new(&format!(
        "    require: [tls.crt, tls.key]\n    validate: {{ tls-pair: {{ cert: tls.crt, key: tls.key }} }}\n    then:\n      - signal: {{ pidfile: {}, process: nginx, signal: HUP }}\n",
        pidfile.display()
    ));
    let cfg = fs::read_to_string(&env.config)
        .unwrap()
        .replace("kind: udev-rules", "kind: files");
    fs::write(&env.config, cfg).unwrap();
    env.put_renamed("tls.crt", &crt_a);
    env.put_renamed("tls.key", &key_a);
    let d = env.start();
    assert!(
        d.log().contains("signal failed"),
        "nginx is not running yet: a warning, {}",
        d.log()
    );

    // nginx on a free loopback port, serving the installed pair.
    let port = free_port();
    let _guard = start_nginx(nginx_bin, &prefix, port, &env.dest);
    let reloads = || {
        fs::read_to_string(prefix.join("logs/error.log"))
            .unwrap_or_default()
            .matches("signal 1 (SIGHUP) received")
            .count()
    };

    // Renewal: B arrives, hostbridge installs it and HUPs nginx.
    env.put_renamed("tls.crt", &crt_b);
    env.put_renamed("tls.key", &key_b);
    wait_for(
        "nginx serves B",
        || served_serial(port).as_deref() == Some(serial_b.as_str()),
        || d.log(),
    );
    let after_b = reloads();
    assert!(after_b >= 1);

    // Mismatch: cert C with key B is held; nginx is not signalled, still serves B.
    env.put_renamed("tls.crt", &crt_c);
    d.wait_log("tls.crt and tls.key: the private key does not match the certificate's public key");
    let out = env.run(&["status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("error[tls-pair]"));
    assert_eq!(reloads(), after_b, "nginx was not signalled for a bad pair");
    assert_eq!(served_serial(port).as_deref(), Some(serial_b.as_str()));

    // Only a cert: nothing happens until its key arrives.
    fs::remove_file(env.src.join("tls.key")).unwrap();
    env.put_renamed("tls.crt", &crt_d);
    d.wait_log("holding: waiting for tls.key (require)");
    assert_eq!(served_serial(port).as_deref(), Some(serial_b.as_str()));
    assert_eq!(reloads(), after_b);
    env.put_renamed("tls.key", &key_d);
    wait_for(
        "nginx serves D",
        || served_serial(port).as_deref() == Some(serial_d.as_str()),
        || d.log(),
    );
    assert_eq!(env.run(&["status"]).status.code(), Some(0));
}

/// Debian's nginx and a fresh prefix dir for it (`prefix/logs` made): the
/// program, the temp dir that holds the prefix (kept alive by the test),
/// the prefix; `None` when nginx is missing (scripts/test installs it).
fn nginx_setup() -> Option<(&'static str, tempfile::TempDir, std::path::PathBuf)> {
    let bin = common::server("/usr/sbin/nginx", "nginx-light")?;
    let work = tempfile::tempdir().unwrap();
    let prefix = work.path().join("nginx");
    fs::create_dir_all(prefix.join("logs")).unwrap();
    Some((bin, work, prefix))
}

/// A files bridge for the pair with `verify` of 127.0.0.1:`port` (SNI
/// localhost, within 3 s) and no `then:` action; `escalate` is the YAML
/// list of its escalation actions.
fn verify_env(port: u16, escalate: &str) -> Env {
    let env = Env::new(&format!(
        "    require: [tls.crt, tls.key]\n    validate: {{ tls-pair: {{ cert: tls.crt, key: tls.key }} }}\n    verify: {{ tls-endpoint: \"127.0.0.1:{port}\", sni: localhost, within: 3s, escalate: {escalate} }}\n    then: []\n"
    ));
    let cfg = fs::read_to_string(&env.config)
        .unwrap()
        .replace("kind: udev-rules", "kind: files");
    fs::write(&env.config, cfg).unwrap();
    env
}

fn status_json(env: &Env) -> serde_json::Value {
    serde_json::from_slice(&env.run(&["status", "--json"]).stdout).unwrap()
}

#[test]
fn verify_finds_nginx_still_serving_the_old_certificate() {
    let Some((nginx_bin, _work, prefix)) = nginx_setup() else {
        return;
    };
    let (crt_a, key_a, serial_a) = common::openssl_pair("p256", "hostbridge-a", 30);
    let (crt_b, key_b, serial_b) = common::openssl_pair("p256", "hostbridge-b", 30);
    let port = free_port();
    let env = verify_env(port, "[]");
    env.put_renamed("tls.crt", &crt_a);
    env.put_renamed("tls.key", &key_a);
    let d = env.start();
    // Nothing listens yet: not serving, which is not "the old certificate".
    d.wait_log(&format!(
        "verify failed (retried on the next sync): not serving: connection to 127.0.0.1:{port} refused (within 3s)"
    ));
    let st = status_json(&env);
    let cert = &st["bridges"][0]["cert"];
    assert_eq!(cert["file"], "tls.crt", "{cert:#}");
    assert_eq!(cert["served"]["matches"], false, "{cert:#}");
    assert!(cert["served"]["serial"].is_null(), "{cert:#}");

    // nginx starts with A; B is installed, and nothing tells nginx.
    let _nginx = start_nginx(nginx_bin, &prefix, port, &env.dest);
    env.put_renamed("tls.crt", &crt_b);
    env.put_renamed("tls.key", &key_b);
    d.wait_log("verify failed (retried on the next sync): serves serial ");
    let hex = |s: &str| s.trim_start_matches("serial=").to_ascii_lowercase();
    let log = d.log();
    let line = log
        .lines()
        .rfind(|l| l.contains("serves serial"))
        .unwrap()
        .to_ascii_lowercase()
        .replace(':', "");
    assert!(
        line.contains(&hex(&serial_a)) && line.contains("cn=hostbridge-a"),
        "names the served certificate: {line}"
    );
    assert!(
        line.contains("not the installed serial") && line.contains(&hex(&serial_b)),
        "names the installed one: {line}"
    );
    let out = env.run(&["status"]);
    assert_eq!(out.status.code(), Some(1), "degraded");
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(screen.contains("cert tls.crt serial "), "{screen}");
    let metrics = String::from_utf8_lossy(&env.run(&["status", "--metrics"]).stdout).to_string();
    assert!(
        metrics.contains("hostbridge_cert_served{bridge=\"test\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("hostbridge_cert_not_after_seconds{bridge=\"test\"} "),
        "{metrics}"
    );
    assert_eq!(served_serial(port), Some(serial_a));
}

#[test]
fn verify_escalates_once_and_then_sees_the_new_certificate() {
    let Some((nginx_bin, _work, prefix)) = nginx_setup() else {
        return;
    };
    let (crt_a, key_a, _) = common::openssl_pair("p256", "hostbridge-a", 30);
    let (crt_b, key_b, serial_b) = common::openssl_pair("p256", "hostbridge-b", 30);
    let port = free_port();
    let env = verify_env(
        port,
        &format!(
            "[ {{ signal: {{ pidfile: {}, process: nginx, signal: HUP }} }} ]",
            prefix.join("nginx.pid").display()
        ),
    );
    env.put_renamed("tls.crt", &crt_a);
    env.put_renamed("tls.key", &key_a);
    fs::create_dir_all(&env.dest).unwrap();
    let d = env.start();
    let _nginx = start_nginx(nginx_bin, &prefix, port, &env.dest);
    env.put_renamed("tls.crt", &crt_b);
    env.put_renamed("tls.key", &key_b);
    // (The startup's own verify, after READY, may have seen A.)
    d.wait_log("(CN=hostbridge-b) (after 3s without it, then escalate: signal ok)");
    let line = last_line_with(&d.log(), "(CN=hostbridge-b)");
    assert!(
        line.contains("verify ok: serving serial") && line.contains("then escalate: signal ok"),
        "{line}"
    );
    // A second TLS client agrees (nginx may still be retiring old workers).
    wait_for(
        "openssl sees B",
        || served_serial(port).as_deref() == Some(serial_b.as_str()),
        || d.log(),
    );
    let st = status_json(&env);
    let served = &st["bridges"][0]["cert"]["served"];
    assert_eq!(served["matches"], true, "{served:#}");
    assert!(served["since"].as_u64().is_some(), "{served:#}");
    assert_eq!(st["bridges"][0]["health"], "healthy", "{st:#}");
    let metrics = String::from_utf8_lossy(&env.run(&["status", "--metrics"]).stdout).to_string();
    assert!(
        metrics.contains("hostbridge_cert_served{bridge=\"test\"} 1"),
        "{metrics}"
    );
}

#[test]
fn the_http_action_reaches_an_admin_endpoint_on_a_unix_socket() {
    let Some((nginx_bin, _work, prefix)) = nginx_setup() else {
        return;
    };
    let sock = prefix.join("admin.sock");
    let server = format!(
        "listen unix:{};\n    location = /-/reload {{\n      if ($request_method != POST) {{ return 405; }}\n      return 200 \"reloaded\\n\";\n    }}",
        sock.display()
    );
    let _nginx = run_nginx(nginx_bin, &prefix, &server, || sock.exists());
    let env = Env::new_files(&format!(
        "    then:\n      - http: {{ url: \"http://localhost/-/reload\", socket: {} }}\n",
        sock.display()
    ));
    env.put("app.conf", "a\n");
    let d = env.start();
    d.wait_log(&format!(
        "http ok: POST http://localhost/-/reload via {}: HTTP 200",
        sock.display()
    ));
    let access = fs::read_to_string(prefix.join("logs/access.log")).unwrap();
    assert!(
        access.contains("\"POST /-/reload HTTP/1.1\" 200"),
        "{access}"
    );
    // A path nginx does not serve: its 404 is the action's failure.
    env.write_files_config(&format!(
        "    then:\n      - http: {{ url: \"http://localhost/nope\", socket: {} }}\n",
        sock.display()
    ));
    assert_eq!(env.run(&["reload"]).status.code(), Some(0));
    env.put("app.conf", "b\n");
    d.wait_log("http failed (retried on the next sync): POST http://localhost/nope via ");
    assert!(d.log().contains(": HTTP 404, expected 200"), "{}", d.log());
}

#[test]
fn a_certificate_the_service_does_not_take_is_rolled_back() {
    let Some((nginx_bin, _work, prefix)) = nginx_setup() else {
        return;
    };
    let (crt_a, key_a, serial_a) = common::openssl_pair("p256", "hostbridge-a", 30);
    let (crt_b, key_b, _) = common::openssl_pair("p256", "hostbridge-b", 30);
    let port = free_port();
    // No action tells nginx: B is never served, so it is rolled back.
    let env = Env::new_files(&format!(
        "    validate: {{ tls-pair: {{ cert: tls.crt, key: tls.key }} }}\n    then: []\n    verify: {{ tls-endpoint: \"127.0.0.1:{port}\", within: 2s }}\n    on_verify_fail: rollback\n"
    ));
    env.put_renamed("tls.crt", &crt_a);
    env.put_renamed("tls.key", &key_a);
    fs::create_dir_all(&env.dest).unwrap();
    let d = env.start();
    d.wait_log("no earlier certificate to roll back to");
    let _nginx = start_nginx(nginx_bin, &prefix, port, &env.dest);
    env.put_renamed("tls.crt", &crt_b);
    env.put_renamed("tls.key", &key_b);
    d.wait_log("rolled back to serial ");
    let line = last_line_with(&d.log(), "rolled back to serial");
    assert!(
        line.contains("not the installed serial")
            && line.contains("(CN=hostbridge-a): served again"),
        "{line}"
    );
    // The destination holds A again, through its links, and nginx serves A.
    assert_eq!(fs::read(env.dest.join("tls.crt")).unwrap(), crt_a);
    assert_eq!(fs::read(env.dest.join("tls.key")).unwrap(), key_a);
    assert_eq!(served_serial(port), Some(serial_a));
    let st: serde_json::Value =
        serde_json::from_slice(&env.run(&["status", "--json"]).stdout).unwrap();
    let cert = &st["bridges"][0]["cert"];
    assert_eq!(cert["subject"], "CN=hostbridge-a", "{cert:#}");
    assert_eq!(
        st["bridges"][0]["health"], "degraded",
        "the renewal failed: {st:#}"
    );
}

#[test]
fn ready_does_not_wait_for_a_startup_verify() {
    // A service ordered after hostbridge cannot be up before READY: the
    // startup's verify runs after it, however long `within` is.
    let (crt, key, _) = common::openssl_pair("p256", "hostbridge-a", 30);
    let env = verify_env(free_port(), "[]");
    let cfg = fs::read_to_string(&env.config)
        .unwrap()
        .replace("within: 3s", "within: 10m");
    fs::write(&env.config, cfg).unwrap();
    env.put_renamed("tls.crt", &crt);
    env.put_renamed("tls.key", &key);
    let d = env.start();
    d.wait_log("ready:");
    assert!(!d.log().contains("verify "), "{}", d.log());
    let st: serde_json::Value =
        serde_json::from_slice(&env.run(&["status", "--json"]).stdout).unwrap();
    assert!(st["bridges"][0]["cert"]["served"].is_null(), "{st:#}");
    assert!(st["bridges"][0]["syncing"].is_null(), "{st:#}");
}
