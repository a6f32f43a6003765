//! The certificate job against a real nginx (Debian's nginx-light): a files
//! bridge with `validate: tls-pair` and `signal: HUP` by pid file renews the
//! certificate nginx serves; a mismatched pair is never installed and nginx
//! is not signalled; a lone certificate waits for its key. A real TLS client
//! (openssl s_client) checks which certificate nginx serves.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{Env, wait_for};

fn nginx() -> Option<&'static str> {
    if Path::new("/usr/sbin/nginx").exists() {
        return Some("/usr/sbin/nginx");
    }
    let why = "SKIP: nginx not installed (scripts/test installs nginx-light)";
    assert!(std::env::var_os("CI").is_none(), "{why}; CI must have it");
    eprintln!("{why}");
    None
}

/// The serial of the certificate served on 127.0.0.1:port, via openssl s_client.
fn served_serial(port: u16) -> Option<String> {
    let client = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-servername",
            "localhost",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let mut x509 = Command::new("openssl")
        .args(["x509", "-noout", "-serial"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    std::io::Write::write_all(x509.stdin.as_mut()?, &client.stdout).ok()?;
    let out = x509.wait_with_output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

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

#[test]
fn nginx_serves_the_renewed_certificate_and_never_a_mismatch() {
    let Some(nginx_bin) = nginx() else { return };
    let work = tempfile::tempdir().unwrap();
    let (crt_a, key_a, _serial_a) = common::openssl_pair("p256", "hostbridge-a", 30);
    let (crt_b, key_b, serial_b) = common::openssl_pair("p256", "hostbridge-b", 30);
    let (crt_c, _key_c, _) = common::openssl_pair("p256", "hostbridge-c", 30);
    let (crt_d, key_d, serial_d) = common::openssl_pair("p256", "hostbridge-d", 30);

    let prefix = work.path().join("nginx");
    fs::create_dir_all(prefix.join("logs")).unwrap();
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
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = prefix.join("nginx.conf");
    let temp = |n: &str| prefix.join(n).display().to_string();
    fs::write(
        &conf,
        format!(
            "pid {pid};\nerror_log {log} notice;\nevents {{}}\nhttp {{\n  access_log off;\n  client_body_temp_path {t1};\n  proxy_temp_path {t2};\n  fastcgi_temp_path {t3};\n  uwsgi_temp_path {t4};\n  scgi_temp_path {t5};\n  server {{\n    listen 127.0.0.1:{port} ssl;\n    ssl_certificate {dest}/tls.crt;\n    ssl_certificate_key {dest}/tls.key;\n    location / {{ return 200 \"ok\"; }}\n  }}\n}}\n",
            pid = pidfile.display(),
            log = prefix.join("logs/error.log").display(),
            t1 = temp("t1"),
            t2 = temp("t2"),
            t3 = temp("t3"),
            t4 = temp("t4"),
            t5 = temp("t5"),
            dest = env.dest.display()
        ),
    )
    .unwrap();
    let started = Command::new(nginx_bin)
        .arg("-p")
        .arg(&prefix)
        .arg("-c")
        .arg(&conf)
        .output()
        .unwrap();
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    let _guard = Nginx {
        pidfile: pidfile.clone(),
    };
    wait_for(
        "nginx serving",
        || served_serial(port).is_some(),
        || fs::read_to_string(prefix.join("logs/error.log")).unwrap_or_default(),
    );
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
