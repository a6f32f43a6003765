//! Status model tests: health, the screen, metrics (parsed with a real
//! Prometheus text parser).

use super::render::ago;
use super::*;

/// An ok sync at `at` that installed one file and ran udev-reload.
pub(crate) fn sync(at: u64) -> Sync {
    Sync {
        at,
        trigger: "settled after 312 ms".into(),
        result: "ok".into(),
        installed: vec!["62-nut-usbups.rules".into()],
        replaced: vec![],
        pruned: vec![],
        unchanged: 3,
        skipped: vec![],
        held: vec![],
        conflicts: vec![],
        findings: vec![],
        errors: vec![],
        notes: vec![],
        actions: vec![ActionRun {
            action: "udev-reload".into(),
            ok: true,
            detail: String::new(),
        }],
        totals: Totals::default(),
    }
}

/// A healthy bridge whose last sync is `last`.
pub(crate) fn bridge(name: &str, last: Option<Sync>) -> Bridge {
    Bridge {
        name: name.into(),
        source: "/run/containers/nut/udev-rules".into(),
        destination: "/run/udev/rules.d".into(),
        watching: "source".into(),
        source_seen: true,
        health: Health::Healthy,
        reason: None,
        last_sync: last,
        last_success_at: Some(1000),
        pending: None,
        syncing: None,
        counters: Counters {
            syncs_ok: 2,
            files_installed: 4,
            ..Counters::default()
        },
        usb: None,
        replug: None,
        cert: None,
    }
}

/// One USB device of a check, with `verdict`.
pub(crate) fn device(id: &str, bus_dev: &str, verdict: &str) -> UsbDevice {
    UsbDevice {
        bus_dev: bus_dev.into(),
        id: id.into(),
        product: Some("Back-UPS ES 700".into()),
        node: if verdict == "device-absent" {
            "missing".into()
        } else {
            "root:nut 0660".into()
        },
        rule: Some("62-nut-usbups.rules:14".into()),
        verdict: verdict.into(),
        reason: (verdict != "ok").then(|| format!("because {verdict}")),
    }
}

/// A USB check at `at` that found `devices`.
pub(crate) fn usb_with(at: u64, devices: Vec<UsbDevice>) -> Usb {
    let ok = devices.iter().all(|d| d.verdict == "ok");
    Usb {
        at,
        trigger: "sync".into(),
        ok,
        summary: devices
            .iter()
            .map(|d| format!("{} {}", d.id, d.verdict))
            .collect::<Vec<_>>()
            .join("; "),
        user: "nut".into(),
        devices,
        began: None,
    }
}

fn doc(bridges: Vec<Bridge>) -> Status {
    let mut st = Status {
        schema_version: SCHEMA_VERSION,
        daemon: Daemon {
            version: "0.1.0".into(),
            pid: 42,
            config_path: "/etc/hostbridge/config.yaml".into(),
            config_loaded_at: 900,
            started_at: 900,
            watches: 1,
            errors_since_start: 0,
            reload_error: None,
            health: Health::Healthy,
            hotplug: "on".into(),
        },
        bridges,
    };
    st.assess(1100);
    st
}

#[test]
fn health_follows_the_first_problem() {
    let st = doc(vec![bridge("nut-udev", Some(sync(1000)))]);
    assert_eq!(st.daemon.health, Health::Healthy);

    let mut bad = sync(1000);
    bad.findings.push(Finding {
        file: "63-evil.rules".into(),
        line: 1,
        column: 43,
        severity: "error".into(),
        rule: "run".into(),
        message: "RUN+= would execute '/tmp/x' as root".into(),
    });
    let st = doc(vec![
        bridge("ok", Some(sync(1000))),
        bridge("evil", Some(bad.clone())),
    ]);
    assert_eq!(st.daemon.health, Health::Degraded);
    assert_eq!(
        st.bridges[1].reason.as_deref(),
        Some("63-evil.rules:1:43: error[run]: RUN+= would execute '/tmp/x' as root")
    );

    bad.actions[0] = ActionRun {
        action: "udev-reload".into(),
        ok: false,
        detail: "exit status: 1: Failed to send reload request".into(),
    };
    let st = doc(vec![bridge("evil", Some(bad))]);
    assert_eq!(
        st.bridges[0].reason.as_deref(),
        Some("udev-reload failed: exit status: 1: Failed to send reload request"),
        "a failed action comes first"
    );

    let mut w = bridge("w", None);
    w.watching = "error: watching /x: too many inotify watches".into();
    assert_eq!(doc(vec![w]).daemon.health, Health::Degraded);

    let mut st = doc(vec![bridge("ok", Some(sync(1000)))]);
    st.daemon.reload_error = Some("config.yaml:3:5: unknown field".into());
    st.assess(1100);
    assert_eq!(st.daemon.health, Health::Degraded);
}

/// (started, seen at, stuck after) → degraded with the step, or healthy.
#[test]
fn a_sync_running_past_stuck_after_degrades_its_bridge_with_the_step() {
    let table: &[(u64, u64, u64, Option<&str>)] = &[
        (1000, 1010, 60, None),
        (1000, 1060, 60, None),
        (
            1000,
            1062,
            60,
            Some("syncing for 62 s: udevadm verify 10-x.rules"),
        ),
        (
            1000,
            1002,
            1,
            Some("syncing for 2 s: udevadm verify 10-x.rules"),
        ),
    ];
    for &(since, now, after, want) in table {
        let mut b = bridge("b", Some(sync(900)));
        b.syncing = Some(Syncing::at(
            since,
            "udevadm verify 10-x.rules".into(),
            now,
            after,
        ));
        let mut st = doc(vec![b]);
        st.assess(now);
        let b = &st.bridges[0];
        assert_eq!(b.reason.as_deref(), want, "since {since}, now {now}");
        let health = if want.is_some() {
            Health::Degraded
        } else {
            Health::Healthy
        };
        assert_eq!(b.health, health);
        assert_eq!(st.daemon.health, health);
    }
}

fn usb(at: u64, trigger: &str, ok: bool, summary: &str) -> Usb {
    Usb {
        at,
        trigger: trigger.into(),
        ok,
        summary: summary.into(),
        user: "nut".into(),
        devices: vec![],
        began: None,
    }
}

#[test]
fn a_newer_usb_check_supersedes_the_syncs_usb_check_action() {
    let mut failed = sync(1000);
    failed.actions.push(ActionRun {
        action: "usb-check".into(),
        ok: false,
        detail: "051d:0002 device-absent".into(),
    });
    let mut b = bridge("nut-udev", Some(failed));
    b.usb = Some(usb(1000, "sync", false, "051d:0002 device-absent"));
    let st = doc(vec![b.clone()]);
    assert_eq!(
        st.bridges[0].reason.as_deref(),
        Some("usb-check: 051d:0002 device-absent"),
        "the sync's own check"
    );

    // The UPS is plugged in later: the hotplug re-check says ok.
    b.usb = Some(usb(1005, "hotplug add 001:004", true, "051d:0002 ok"));
    let st = doc(vec![b.clone()]);
    assert_eq!(st.bridges[0].health, Health::Healthy, "{st:?}");

    // And unplugged again: degraded by the re-check, not the old action.
    b.usb = Some(usb(
        1009,
        "hotplug remove 001:004",
        false,
        "051d:0002 device-absent",
    ));
    let st = doc(vec![b.clone()]);
    assert_eq!(
        st.bridges[0].reason.as_deref(),
        Some("usb-check: 051d:0002 device-absent")
    );
    let text = render(&st, 1010);
    assert!(
        text.contains("  usb (hotplug remove 001:004, 1 s ago, user nut): 051d:0002 device-absent"),
        "{text}"
    );

    // A check older than the last sync does not hide that sync's problems.
    let mut b = bridge("nut-udev", Some(sync(1000)));
    b.usb = Some(usb(990, "sync", false, "x"));
    assert_eq!(doc(vec![b]).bridges[0].health, Health::Healthy);
}

#[test]
fn the_screen() {
    let mut st = doc(vec![bridge("nut-udev", Some(sync(1000)))]);
    st.bridges.push(bridge("certs", None));
    st.assess(1100);
    let text = render(&st, 1002);
    assert_eq!(
        text,
        "hostbridge 0.1.0 (pid 42): healthy, up 1 min, config /etc/hostbridge/config.yaml loaded 1 min ago\n\
         ✔ nut-udev         synced 2 s ago: installed 1 file, 3 unchanged; udev-reload ok\n\
         ✔ certs            not synced yet\n"
    );
}

#[test]
fn ago_units() {
    assert_eq!(ago(100, 100), "0 s");
    assert_eq!(ago(100, 200), "0 s");
    assert_eq!(ago(3700, 0), "1 h");
    assert_eq!(ago(200_000, 0), "2 d");
}

#[test]
fn metrics_parse_with_a_prometheus_parser() {
    let mut b = bridge("nut-udev", Some(sync(1000)));
    b.pending = Some(Pending {
        since_ms: 1_000_000,
        files: vec!["a.rules".into()],
    });
    b.usb = Some(usb(
        1001,
        "hotplug add 001:004",
        false,
        "051d:0002 rules-not-applied",
    ));
    let st = doc(vec![b, bridge("certs", None)]);
    let text = metrics(&st);
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid exposition format");
    let get = |name: &str, bridge: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && s.labels.get("bridge") == Some(bridge))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
    };
    assert_eq!(
        get("hostbridge_files_installed_total", "nut-udev"),
        Some(4.0)
    );
    assert_eq!(get("hostbridge_pending_windows", "nut-udev"), Some(1.0));
    assert_eq!(get("hostbridge_pending_windows", "certs"), Some(0.0));
    assert_eq!(
        get("hostbridge_last_success_timestamp_seconds", "nut-udev"),
        Some(1000.0)
    );
    assert_eq!(get("hostbridge_healthy", "certs"), Some(1.0));
    assert_eq!(get("hostbridge_usb_ok", "nut-udev"), Some(0.0));
    assert_eq!(
        get("hostbridge_usb_ok", "certs"),
        None,
        "no usb-check, no sample"
    );
    let ok = scrape
        .samples
        .iter()
        .find(|s| s.metric == "hostbridge_syncs_total" && s.labels.get("result") == Some("ok"))
        .unwrap();
    assert!(matches!(ok.value, prometheus_parse::Value::Counter(v) if v == 2.0));
}

#[test]
fn record_folds_each_kind_of_sync_into_the_counters() {
    let failed_action = {
        let mut s = sync(2000);
        s.result = "failed".into();
        s.actions[0].ok = false;
        s
    };
    let pruned = {
        let mut s = sync(2000);
        s.installed.clear();
        s.replaced = vec!["a.rules".into()];
        s.pruned = vec!["b.rules".into(), "c.rules".into()];
        s
    };
    let whole_failure = Sync::failed_with(2000, "startup reconcile".into(), "boom".into());
    // (sync, syncs_ok, syncs_failed, files_installed, files_pruned, action_failures, last_success_at)
    let cases = [
        (sync(2000), 3, 0, 5, 0, 0, Some(2000)),
        (failed_action, 2, 1, 5, 0, 1, Some(1000)),
        (pruned, 3, 0, 5, 2, 0, Some(2000)),
        (whole_failure, 2, 1, 4, 0, 0, Some(1000)),
    ];
    for (s, ok, failed, installed, pruned, action_failures, success) in cases {
        let mut b = bridge("nut-udev", None);
        b.record(s.clone(), None);
        let c = &b.counters;
        assert_eq!(
            (
                c.syncs_ok,
                c.syncs_failed,
                c.files_installed,
                c.files_pruned,
                c.action_failures
            ),
            (ok, failed, installed, pruned, action_failures),
            "{s:?}"
        );
        assert_eq!(b.last_success_at, success, "{s:?}");
        assert_eq!(b.last_sync, Some(s));
    }
}

#[test]
fn record_stamps_the_syncs_usb_check_with_the_syncs_time() {
    let mut b = bridge("nut-udev", None);
    let usb = Usb {
        at: 5,
        trigger: "sync".into(),
        ok: true,
        summary: "051d:0002 ok".into(),
        user: "nut".into(),
        devices: vec![],
        began: None,
    };
    b.record(sync(2000), Some(usb));
    assert_eq!(b.usb.as_ref().map(|u| u.at), Some(2000));
    b.record(sync(3000), None);
    assert_eq!(
        b.usb.as_ref().map(|u| u.at),
        Some(2000),
        "kept when a sync ran no check"
    );
}

/// Issue 17: the status line uses the words `sync` and the log use for the
/// same sync, the skips included.
#[test]
fn the_summary_says_nothing_to_change_and_counts_skips() {
    let mut s = sync(1000);
    s.installed.clear();
    s.skipped = vec![Note {
        file: "63-evil.rules".into(),
        reason: "rejected by the rules checks".into(),
    }];
    assert_eq!(
        super::render::summary(&s),
        "nothing to change, 3 unchanged, 1 skipped; udev-reload ok"
    );
}

/// A burst's sync is kept as its first names and its counts: the summary
/// and the counters say how many, the lists name at most [`LISTED`].
#[test]
fn a_large_sync_keeps_its_counts_and_only_its_first_names() {
    let names: Vec<String> = (0..5000).map(|i| format!("{i:05}.rules")).collect();
    let mut s = sync(1000);
    s.installed = listed(&names);
    s.totals = Totals {
        installed: names.len(),
        skipped: 2,
        ..Totals::default()
    };
    assert_eq!(s.installed.len(), LISTED);
    assert_eq!(s.counts().installed, 5000);
    assert_eq!(
        render::summary(&s),
        "installed 5000 files, 3 unchanged, 2 skipped; udev-reload ok"
    );
    let mut b = bridge("nut-udev", None);
    let before = b.counters.files_installed;
    b.record(s.clone(), None);
    assert_eq!(b.counters.files_installed - before, 5000);
    // A status of an earlier version, without totals: the lists count.
    let mut old = sync(1000);
    old.totals = Totals::default();
    assert_eq!(old.counts().installed, 1);
}

fn cert(serial: &str, not_after: i64) -> Cert {
    Cert {
        file: "tls.crt".into(),
        serial: serial.into(),
        subject: "CN=loki".into(),
        not_after,
        warn_within: 14 * 86400,
        served: None,
    }
}

fn served(at: u64, serial: &str, matches: bool) -> Served {
    Served {
        at,
        endpoint: "127.0.0.1:3100".into(),
        matches,
        serial: Some(serial.into()),
        subject: Some("CN=loki".into()),
        detail: if matches {
            format!("serving serial {serial} (CN=loki)")
        } else {
            format!("serves serial {serial} (CN=loki), not the installed serial 02 (CN=loki)")
        },
        since: None,
    }
}

#[test]
fn a_certificate_is_served_since_its_first_good_verify() {
    let day = 86400;
    let mut b = bridge("loki-cert", Some(sync(1000)));
    b.note_cert(Some(cert("01", 100 * day)), Some(served(1000, "01", true)));
    assert_eq!(
        b.cert.as_ref().unwrap().served.as_ref().unwrap().since,
        Some(1000)
    );
    // The same certificate, verified again: served since the first time.
    b.note_cert(Some(cert("01", 100 * day)), Some(served(2000, "01", true)));
    let s = b.cert.as_ref().unwrap().served.clone().unwrap();
    assert_eq!((s.at, s.since), (2000, Some(1000)));
    // A sync with no verify (nothing changed) keeps what was served.
    b.note_cert(Some(cert("01", 100 * day)), None);
    assert_eq!(b.cert.as_ref().unwrap().served.as_ref().unwrap().at, 2000);
    b.assess(3000);
    assert_eq!(b.health, Health::Healthy, "{:?}", b.reason);

    // A new certificate the service does not serve yet: degraded, naming both.
    b.note_cert(Some(cert("02", 100 * day)), Some(served(4000, "01", false)));
    let s = b.cert.as_ref().unwrap().served.clone().unwrap();
    assert_eq!((s.matches, s.since), (false, None));
    b.assess(4000);
    assert_eq!(b.health, Health::Degraded);
    assert!(
        b.reason.as_deref().unwrap().starts_with(
            "verify 127.0.0.1:3100: serves serial 01 (CN=loki), not the installed serial 02"
        ),
        "{:?}",
        b.reason
    );
    // A new certificate forgets what was served of the old one.
    b.note_cert(Some(cert("03", 100 * day)), None);
    assert!(b.cert.as_ref().unwrap().served.is_none());
}

#[test]
fn a_certificate_inside_its_expiry_window_degrades_the_bridge() {
    let day = 86400;
    let mut b = bridge("loki-cert", Some(sync(1000)));
    b.cert = Some(cert("0a", 1000 + 20 * day));
    b.assess(1000);
    assert_eq!(b.health, Health::Healthy);
    b.assess((1000 + 10 * day) as u64);
    assert_eq!(
        b.reason.as_deref(),
        Some(
            "tls.crt: serial 0a expires in 10 d (within the expiry_warning window): the renewal is overdue"
        )
    );
    b.assess((1000 + 21 * day) as u64);
    assert_eq!(b.reason.as_deref(), Some("tls.crt: serial 0a has expired"));

    let mut st = doc(vec![b]);
    st.bridges[0].cert.as_mut().unwrap().served = Some(Served {
        since: Some(1000),
        ..served(1000 + day as u64, "0a", true)
    });
    let screen = render(&st, (1000 + day) as u64 + 5);
    assert!(
        screen.contains(
            "  cert tls.crt serial 0a, expires in 18 d; verify 127.0.0.1:3100 (5 s ago): serving serial 0a (CN=loki), for 1 d\n"
        ),
        "{screen}"
    );
    let m = metrics(&st);
    assert!(
        m.contains(&format!(
            "hostbridge_cert_not_after_seconds{{bridge=\"loki-cert\"}} {}",
            1000 + 20 * day
        )),
        "{m}"
    );
    assert!(
        m.contains("hostbridge_cert_served{bridge=\"loki-cert\"} 1"),
        "{m}"
    );
}
