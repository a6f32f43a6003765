//! Config parsing and validation tests (pure: text in, config or error out).

use super::*;
use std::time::Duration;

const SAMPLE: &str = "\
state_dir: /run/hostbridge
settle: { quiet: 300ms, max_wait: 10s }
bridges:
  - name: nut-udev
    kind: udev-rules
    source: /run/containers/nut/udev-rules
    include: [\"*.rules\"]
    install_to: /run/udev/rules.d
    prune: true
    then:
      - udev-reload
      - udev-trigger: { subsystem: usb, action: change }
";

fn p(text: &str) -> Result<Config, ConfigError> {
    parse(text, Path::new("/etc/hostbridge/config.yaml"))
}

/// Asserts `text` fails at `line:col` with a message containing `needle`.
fn fails_at(text: &str, line: u64, column: u64, needle: &str) {
    let e = p(text).expect_err("config should be rejected");
    assert_eq!((e.line, e.column), (line, column), "{e}");
    assert!(e.message.contains(needle), "{e} should mention {needle:?}");
    let shown = e.to_string();
    assert!(
        shown.starts_with(&format!("/etc/hostbridge/config.yaml:{line}:{column}: ")),
        "{shown}"
    );
}

#[test]
fn sample_from_the_design_parses() {
    let c = p(SAMPLE).expect("sample parses");
    assert_eq!(c.state_dir, Path::new("/run/hostbridge"));
    assert_eq!(c.udevadm, Path::new(DEFAULT_UDEVADM));
    let b = &c.bridges[0];
    assert_eq!(b.name, "nut-udev");
    assert_eq!(b.source, Path::new("/run/containers/nut/udev-rules"));
    assert_eq!(b.include, ["*.rules"]);
    assert!(b.prune);
    assert_eq!(b.settle.quiet, Duration::from_millis(300));
    assert_eq!(b.settle.max_wait, Duration::from_secs(10));
    assert_eq!(b.max_file_size, DEFAULT_MAX_FILE_SIZE);
    assert_eq!(
        b.then,
        [
            Action::UdevReload,
            Action::UdevTrigger(Trigger {
                subsystem: Some("usb".into()),
                action: "change",
                attrs: vec![],
                settle_timeout: DEFAULT_SETTLE_TIMEOUT,
            })
        ]
    );
}

#[test]
fn defaults_apply() {
    let c = p("bridges:\n  - name: a\n    kind: udev-rules\n    source: /x\n").unwrap();
    let b = &c.bridges[0];
    assert_eq!(c.state_dir, Path::new(DEFAULT_STATE_DIR));
    assert_eq!(b.install_to, Path::new(DEFAULT_UDEV_RULES_DIR));
    assert_eq!(b.include, ["*.rules"]);
    assert!(b.prune);
    assert!(b.then.is_empty());
    assert_eq!(b.settle.quiet, DEFAULT_QUIET);
}

#[test]
fn per_bridge_settle_and_size_override_globals() {
    let c = p("settle: {quiet: 1s}\nmax_file_size: 4KiB\nbridges:\n  - name: a\n    kind: udev-rules\n    source: /x\n    include: [\"a-*.rules\"]\n    settle: {max_wait: 5s}\n    max_file_size: 100\n  - name: b\n    kind: udev-rules\n    source: /y\n    include: [\"b-*.rules\"]\n").unwrap();
    assert_eq!(c.bridges[0].settle.quiet, Duration::from_secs(1));
    assert_eq!(c.bridges[0].settle.max_wait, Duration::from_secs(5));
    assert_eq!(c.bridges[0].max_file_size, 100);
    assert_eq!(c.bridges[1].max_file_size, 4096);
    assert_eq!(c.bridges[1].settle.max_wait, DEFAULT_MAX_WAIT);
}

#[test]
fn unknown_key_is_located() {
    fails_at(
        "bridges:\n  - name: a\n    kind: udev-rules\n    source: /x\n    prnue: true\n",
        5,
        5,
        "unknown field `prnue`",
    );
    fails_at(
        "statedir: /x\nbridges: []\n",
        1,
        1,
        "unknown field `statedir`",
    );
}

#[test]
fn bad_duration_is_located() {
    fails_at(
        "settle:\n  quiet: 3 parsecs\nbridges: []\n",
        2,
        10,
        "bad duration",
    );
}

#[test]
fn relative_paths_are_rejected() {
    fails_at(
        "bridges:\n  - name: a\n    kind: udev-rules\n    source: run/x\n",
        4,
        13,
        "relative",
    );
    fails_at("state_dir: ./state\nbridges: []\n", 1, 12, "relative");
    fails_at(
        "bridges:\n  - name: a\n    kind: udev-rules\n    source: /run/../etc\n",
        4,
        13,
        "'..'",
    );
}

#[test]
fn duplicate_names_are_located() {
    fails_at(
        "bridges:\n  - name: a\n    kind: udev-rules\n    source: /x\n    include: [\"a*.rules\"]\n  - name: a\n    kind: udev-rules\n    source: /y\n    include: [\"b*.rules\"]\n",
        6,
        11,
        "duplicate bridge name",
    );
}

#[test]
fn overlapping_destinations_are_located() {
    fails_at(
        "bridges:\n  - name: a\n    kind: udev-rules\n    source: /x\n  - name: b\n    kind: udev-rules\n    source: /y\n    include: [\"62-*.rules\"]\n",
        8,
        14,
        "can match the same file",
    );
    // Disjoint patterns into the same dir are fine.
    p("bridges:\n  - name: a\n    kind: udev-rules\n    source: /x\n    include: [\"70-*.rules\"]\n  - name: b\n    kind: udev-rules\n    source: /y\n    include: [\"62-*.rules\"]\n").unwrap();
}

#[test]
fn destination_inside_a_source_is_rejected() {
    fails_at(
        "bridges:\n  - name: a\n    kind: udev-rules\n    source: /x\n    install_to: /x/out\n",
        5,
        17,
        "overlap",
    );
    fails_at(
        "bridges:\n  - name: a\n    kind: udev-rules\n    source: /x\n    install_to: /out\n  - name: b\n    kind: udev-rules\n    source: /out/in\n    install_to: /elsewhere\n",
        8,
        13,
        "overlaps bridge",
    );
}

#[test]
fn max_wait_shorter_than_quiet_is_rejected() {
    fails_at(
        "settle: {quiet: 2s, max_wait: 1s}\nbridges: []\n",
        1,
        31,
        "shorter than",
    );
}

#[test]
fn bad_values_are_located() {
    fails_at(
        "bridges:\n  - name: Bad Name\n    kind: udev-rules\n    source: /x\n",
        2,
        11,
        "bridge name",
    );
    fails_at(
        "bridges:\n  - name: a\n    kind: rules\n    source: /x\n",
        3,
        11,
        "unknown variant",
    );
    fails_at(
        "bridges:\n  - name: a\n    kind: udev-rules\n    source: /x\n    include: [\"../*.rules\"]\n",
        5,
        15,
        "include pattern",
    );
    fails_at(
        "bridges:\n  - name: a\n    kind: udev-rules\n    source: /x\n    then: [udev-relaod]\n",
        5,
        12,
        "unknown variant",
    );
    fails_at(
        "bridges:\n  - name: a\n    kind: udev-rules\n    source: /x\n    then:\n      - udev-trigger: {action: chnage}\n",
        6,
        32,
        "unknown variant",
    );
    fails_at("max_file_size: 1MB\nbridges: []\n", 1, 16, "bad size unit");
    fails_at(
        "bridges:\n  - name: a\n    kind: udev-rules\n    source: /x\n    include: []\n",
        5,
        14,
        "at least one",
    );
}

#[test]
fn syntax_error_is_located() {
    fails_at("bridges: [\n", 1, 10, "unclosed");
}

#[test]
fn missing_file_names_it() {
    let e = load(Path::new("/nonexistent/hostbridge.yaml"), &[]).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("/nonexistent/hostbridge.yaml: cannot read config"),
        "{e}"
    );
}

#[test]
fn location_prefix_is_stripped() {
    assert_eq!(
        strip_location_prefix("error: line 3 column 5: unknown field `x`"),
        "unknown field `x`"
    );
    assert_eq!(strip_location_prefix("plain message"), "plain message");
    assert_eq!(
        strip_location_prefix("error: line 6 column 32: unknown variant `x` at line 6, column 32"),
        "unknown variant `x`"
    );
}

#[test]
fn a_fragment_replaces_every_host_path_it_sets() {
    let path = Path::new("/etc/hostbridge/config.yaml");
    let mut raw = parse_raw(SAMPLE, path).unwrap();
    let frag = parse_raw(
        "sysfs_root: /t/sys\ndev_root: /t/dev\nsetpriv: /t/setpriv\nudev_run_dir: /t/udev\n\
         proc_root: /t/proc\nsystemctl: /t/systemctl\npodman: /t/podman\n",
        Path::new("/etc/hostbridge/config.d/10-test.yaml"),
    )
    .unwrap();
    raw.merge(frag);
    let c = Validator { path }.config(raw).unwrap();
    assert_eq!(
        [
            &c.sysfs_root,
            &c.dev_root,
            &c.setpriv,
            &c.udev_run_dir,
            &c.proc_root,
            &c.systemctl,
            &c.podman
        ],
        [
            "/t/sys",
            "/t/dev",
            "/t/setpriv",
            "/t/udev",
            "/t/proc",
            "/t/systemctl",
            "/t/podman"
        ]
        .map(Path::new)
    );
    assert_eq!(p(SAMPLE).unwrap().udev_run_dir, Path::new("/run/udev"));
}

#[test]
fn export_bounds_default_by_kind_and_can_be_set() {
    let c = p(SAMPLE).unwrap();
    let b = &c.bridges[0];
    assert_eq!(
        (b.max_files, b.max_bytes),
        (DEFAULT_UDEV_MAX_FILES, DEFAULT_UDEV_MAX_BYTES)
    );
    assert_eq!(b.source_owner, None);
    let files =
        "bridges:\n  - name: certs\n    kind: files\n    source: /run/c\n    install_to: /run/d\n";
    let b = &p(files).unwrap().bridges[0];
    assert_eq!(
        (b.max_files, b.max_bytes),
        (DEFAULT_FILES_MAX_FILES, DEFAULT_FILES_MAX_BYTES)
    );
    let set =
        format!("{files}    max_files: 5\n    max_bytes: 64KiB\n    source_owner: [0, 100000]\n");
    let b = &p(&set).unwrap().bridges[0];
    assert_eq!((b.max_files, b.max_bytes), (5, 64 << 10));
    assert_eq!(b.source_owner, Some(vec![0, 100000]));
}

#[test]
fn a_pid_file_needs_a_process_and_must_lie_outside_every_source() {
    let base = "bridges:\n  - name: certs\n    kind: files\n    source: /run/c\n    install_to: /run/d\n    then:\n";
    let alone = format!("{base}      - signal: {{ pidfile: /run/nginx.pid, signal: HUP }}\n");
    let e = p(&alone).unwrap_err();
    assert!(e.message.contains("needs process: too"), "{e}");
    let inside = format!(
        "{base}      - signal: {{ pidfile: /run/c/nginx.pid, process: nginx, signal: HUP }}\n"
    );
    let e = p(&inside).unwrap_err();
    assert!(
        e.message.contains("inside bridge \"certs\"'s source"),
        "{e}"
    );
    let in_dest = format!(
        "{base}      - signal: {{ pidfile: /run/d/nginx.pid, process: nginx, signal: HUP }}\n"
    );
    let e = p(&in_dest).unwrap_err();
    assert!(
        e.message.contains("inside bridge \"certs\"'s install_to"),
        "{e}"
    );
    let in_state = format!(
        "{base}      - signal: {{ pidfile: /run/hostbridge/x.pid, process: nginx, signal: HUP }}\n"
    );
    let e = p(&in_state).unwrap_err();
    assert!(e.message.contains("inside the state_dir"), "{e}");
    let ok = format!(
        "{base}      - signal: {{ pidfile: /run/nginx.pid, process: nginx, signal: HUP }}\n"
    );
    assert!(p(&ok).is_ok());
    // The same in a usb-check's on_replug.
    let replug = format!(
        "{base}      - usb-check: {{ expect: [051d:0002], on_replug: [ signal: {{ pidfile: /run/c/upsd.pid, process: upsd, signal: HUP }} ] }}\n"
    );
    let e = p(&replug).unwrap_err();
    assert!(
        e.message.contains("inside bridge \"certs\"'s source"),
        "{e}"
    );
}

#[test]
fn on_replug_takes_service_actions_for_expected_devices() {
    let with = |check: &str| format!("{SAMPLE}      - usb-check: {check}\n");
    let c = p(&with(
        "{ user: nut, expect: [051D:0002], on_replug: [ restart-unit: nut-server.service ] }",
    ))
    .expect("parses");
    assert_eq!(
        c.bridges[0].then[2],
        Action::UsbCheck {
            user: "nut".into(),
            expect: vec!["051d:0002".into()],
            probe: false,
            on_replug: vec![Action::RestartUnit("nut-server.service".into())],
        }
    );
    fails_at(
        &with("{ user: nut, on_replug: [ restart-unit: nut-server.service ] }"),
        4,
        11,
        "on_replug needs expect:",
    );
    let e = p(&with("{ expect: [051d:0002], on_replug: [ udev-reload ] }")).unwrap_err();
    assert!(
        e.message.contains(
            "on_replug may restart-unit, reload-unit, signal, http, haproxy-cert or exec, not udev-reload"
        ),
        "{e}"
    );
    let e = p(&with(
        "{ expect: [051d:0002], on_replug: [ usb-check: { user: nut } ] }",
    ))
    .unwrap_err();
    assert!(e.message.contains("not usb-check"), "{e}");
}

#[test]
fn verify_needs_a_pair_and_a_host_port_and_takes_service_actions() {
    let files = "bridges:\n  - name: certs\n    kind: files\n    source: /run/c\n    install_to: /etc/loki/tls\n";
    let pair = "    validate: { tls-pair: { cert: tls.crt, key: tls.key } }\n";
    let c = p(&format!(
        "{files}{pair}    verify: {{ tls-endpoint: \"loki.example:3100\" }}\n"
    ))
    .expect("parses");
    let f = c.bridges[0].files.as_ref().unwrap();
    assert_eq!(
        f.verify,
        Some(Verify {
            endpoint: "loki.example:3100".into(),
            sni: "loki.example".into(),
            within: DEFAULT_VERIFY_WITHIN,
            escalate: vec![],
            rollback: false,
        })
    );
    assert_eq!(
        f.tls_pair.as_ref().unwrap().expiry_warning.as_secs(),
        14 * 86400
    );
    let c = p(&format!(
        "{files}{pair}    verify: {{ tls-endpoint: \"[::1]:8443\", sni: loki.example, within: 1m, escalate: [ restart-unit: loki.service ] }}\n"
    ))
    .expect("parses");
    let v = c.bridges[0].files.as_ref().unwrap().verify.clone().unwrap();
    assert_eq!((v.sni.as_str(), v.within.as_secs()), ("loki.example", 60));
    assert_eq!(v.escalate, vec![Action::RestartUnit("loki.service".into())]);
    assert!(c.bridges[0].acts(), "a verify alone is owed after a change");
    let c = p(&format!(
        "{files}{pair}    verify: {{ tls-endpoint: \"127.0.0.1:1\" }}\n    on_verify_fail: rollback\n"
    ))
    .expect("parses");
    assert!(
        c.bridges[0]
            .files
            .as_ref()
            .unwrap()
            .verify
            .as_ref()
            .unwrap()
            .rollback
    );

    for (text, needle) in [
        (
            format!("{files}    verify: {{ tls-endpoint: \"127.0.0.1:8443\" }}\n"),
            "verify needs validate: { tls-pair",
        ),
        (
            format!("{files}{pair}    verify: {{ tls-endpoint: \"127.0.0.1\" }}\n"),
            "is not host:port",
        ),
        (
            format!("{files}{pair}    verify: {{ tls-endpoint: \"127.0.0.1:0\" }}\n"),
            "is not host:port",
        ),
        (
            format!(
                "{files}{pair}    verify: {{ tls-endpoint: \"127.0.0.1:1\", escalate: [ udev-reload ] }}\n"
            ),
            "verify: escalate may restart-unit, reload-unit, signal, http, haproxy-cert or exec, not udev-reload",
        ),
        (
            format!(
                "{files}{pair}    verify: {{ tls-endpoint: \"127.0.0.1:1\", escalate: [ signal: {{ pidfile: /run/c/x.pid, process: x, signal: HUP }} ] }}\n"
            ),
            "inside bridge \"certs\"'s source",
        ),
        (
            format!("{SAMPLE}    verify: {{ tls-endpoint: \"127.0.0.1:1\" }}\n"),
            "`verify` only applies to kind files",
        ),
        (
            format!("{files}{pair}    on_verify_fail: rollback\n"),
            "on_verify_fail needs verify:",
        ),
        (
            format!(
                "{files}{pair}    swap: rename\n    verify: {{ tls-endpoint: \"127.0.0.1:1\" }}\n    on_verify_fail: rollback\n"
            ),
            "rollback needs swap: symlink-dir",
        ),
    ] {
        let e = p(&text).unwrap_err();
        assert!(e.message.contains(needle), "{e}\nwanted {needle:?}");
    }
}

#[test]
fn http_actions_take_a_url_and_maybe_a_socket() {
    let with = |a: &str| format!("{SAMPLE}      - http: {a}\n");
    let c = p(&with("{ url: \"http://127.0.0.1:9090/-/reload\" }")).expect("parses");
    let Action::Http(h) = &c.bridges[0].then[2] else {
        panic!("{:?}", c.bridges[0].then)
    };
    assert_eq!(
        (
            h.method.as_str(),
            h.expect_status,
            h.timeout,
            h.socket.is_none()
        ),
        ("POST", 200, DEFAULT_HTTP_TIMEOUT, true)
    );
    assert_eq!((h.parsed.port, h.parsed.path.as_str()), (9090, "/-/reload"));
    let c = p(&with(
        "{ url: \"http://localhost/load\", socket: /run/caddy/admin.sock, method: PUT, expect_status: 204, timeout: 3s }",
    ))
    .expect("parses");
    let Action::Http(h) = &c.bridges[0].then[2] else {
        panic!()
    };
    assert_eq!(
        h.socket.as_deref(),
        Some(Path::new("/run/caddy/admin.sock"))
    );
    assert_eq!((h.method.as_str(), h.expect_status), ("PUT", 204));
    for (a, needle) in [
        (
            "{ url: \"https://127.0.0.1/-/reload\" }",
            "https is not supported",
        ),
        (
            "{ url: \"http://127.0.0.1/x\", method: post }",
            "is not an HTTP method",
        ),
        (
            "{ url: \"http://127.0.0.1/x\", expect_status: 99 }",
            "is not an HTTP status",
        ),
        (
            "{ url: \"http://127.0.0.1/x\", socket: relative.sock }",
            "absolute",
        ),
    ] {
        let e = p(&with(a)).unwrap_err();
        assert!(e.message.contains(needle), "{e}\nwanted {needle:?}");
    }
}

#[test]
fn haproxy_cert_sends_a_file_a_files_bridge_installs() {
    let base = "bridges:\n  - name: certs\n    kind: files\n    source: /run/c\n    install_to: /etc/haproxy/certs\n    then:\n";
    let ok = format!(
        "{base}      - haproxy-cert: {{ socket: /run/haproxy/admin.sock, cert: /etc/haproxy/certs/site.pem }}\n"
    );
    let c = p(&ok).expect("parses");
    assert!(matches!(c.bridges[0].then[0], Action::HaproxyCert { .. }));
    for (cert, socket, needle) in [
        (
            "/etc/ssl/private/other.pem",
            "/run/haproxy/admin.sock",
            "is not a file a files bridge installs",
        ),
        (
            "/run/c/site.pem",
            "/run/haproxy/admin.sock",
            "is not a file a files bridge installs",
        ),
        (
            "/etc/haproxy/certs/site.pem",
            "/run/c/admin.sock",
            "lies inside bridge \"certs\"'s dirs",
        ),
    ] {
        let text = format!("{base}      - haproxy-cert: {{ socket: {socket}, cert: {cert} }}\n");
        let e = p(&text).unwrap_err();
        assert!(e.message.contains(needle), "{e}\nwanted {needle:?}");
    }
}
