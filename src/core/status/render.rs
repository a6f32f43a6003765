//! The status document as text: the one screen of `hostbridge status`, the
//! one-line summary of a sync, and the Prometheus metrics. Pure.

use std::fmt::Write as _;

use super::{Bridge, Health, Status, Sync};
use crate::core::text::escape;
use crate::core::text::plural;

/// "3 s", "4 min", "2 h", "5 d".
pub(crate) fn ago(now: u64, then: u64) -> String {
    let s = now.saturating_sub(then);
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86400 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86400),
    }
}

/// The one-screen text of `hostbridge status`, written in the order it is
/// read (one function, so the screen's layout is in one place).
pub(crate) fn render(st: &Status, now: u64) -> String {
    let d = &st.daemon;
    let mut out = format!(
        "hostbridge {} (pid {}): {:?}, up {}, config {} loaded {} ago\n",
        d.version,
        d.pid,
        d.health,
        ago(now, d.started_at),
        d.config_path,
        ago(now, d.config_loaded_at)
    )
    .replace("Healthy", "healthy")
    .replace("Degraded", "degraded")
    .replace("Failed", "failed");
    if let Some(e) = &d.reload_error {
        let _ = writeln!(
            out,
            "✖ last reload failed, still running the previous config: {}",
            escape(e)
        );
    }
    for b in &st.bridges {
        let mark = if b.health == Health::Healthy {
            "✔"
        } else {
            "✖"
        };
        let what = match &b.last_sync {
            Some(s) if s.failed() => format!("sync failed {} ago: {}", ago(now, s.at), summary(s)),
            Some(s) => format!("synced {} ago: {}", ago(now, s.at), summary(s)),
            None => "not synced yet".into(),
        };
        // Every text here may hold input (file names, rule text, a
        // child's output): escaped, so none starts a line of its own.
        let _ = writeln!(out, "{mark} {:<16} {}", escape(&b.name), escape(&what));
        if let Some(p) = &b.pending {
            let _ = writeln!(
                out,
                "  pending: {} files changed, window open {} ms",
                p.files.len(),
                (now * 1000).saturating_sub(p.since_ms)
            );
        }
        // A stuck one is the bridge's reason, printed below.
        if let Some(sy) = b.syncing.as_ref().filter(|s| !s.stuck) {
            let _ = writeln!(
                out,
                "  syncing for {} s: {}",
                now.saturating_sub(sy.since),
                escape(&sy.doing)
            );
        }
        if let Some(u) = &b.usb {
            let _ = writeln!(
                out,
                "  usb ({}, {} ago, user {}): {}",
                u.trigger,
                ago(now, u.at),
                escape(&u.user),
                escape(&u.summary)
            );
        }
        if let Some(c) = &b.cert {
            let left = c.not_after - now as i64;
            let expiry = if left > 0 {
                format!("expires in {}", ago(left as u64, 0))
            } else {
                "expired".to_string()
            };
            let served = c.served.as_ref().map_or(String::new(), |s| {
                let since = s
                    .since
                    .map_or(String::new(), |t| format!(", for {}", ago(now, t)));
                format!(
                    "; verify {} ({} ago): {}{since}",
                    escape(&s.endpoint),
                    ago(now, s.at),
                    escape(&s.detail)
                )
            });
            let _ = writeln!(
                out,
                "  cert {} serial {}, {expiry}{served}",
                escape(&c.file),
                escape(&c.serial)
            );
        }
        if let Some(r) = &b.replug {
            let result = match r.ok {
                None => "running".to_string(),
                Some(_) => r
                    .actions
                    .iter()
                    .map(|a| format!("{} {}", a.action, if a.ok { "ok" } else { "failed" }))
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            let next = r.next_at.map_or(String::new(), |t| {
                format!("; next run held back {} s", t.saturating_sub(now))
            });
            let _ = writeln!(
                out,
                "  replug ({} ago, {}): {result}{next}",
                ago(now, r.at),
                escape(&r.devices.join(", "))
            );
        }
        if let Some(r) = &b.reason {
            let _ = writeln!(out, "  {}", escape(r));
        }
    }
    if d.hotplug.starts_with("off") {
        let _ = writeln!(out, "USB hotplug re-checks {}", d.hotplug);
    }
    out
}

/// "installed 1 file, 3 unchanged, 1 skipped; udev-reload ok".
pub(crate) fn summary(s: &Sync) -> String {
    let mut parts = Vec::new();
    let n = s.counts();
    for (verb, count) in [
        ("installed", n.installed),
        ("replaced", n.replaced),
        ("pruned", n.pruned),
    ] {
        if count > 0 {
            parts.push(format!("{verb} {}", plural(count, "file")));
        }
    }
    if parts.is_empty() {
        parts.push("nothing to change".into());
    }
    if s.unchanged > 0 {
        parts.push(format!("{} unchanged", s.unchanged));
    }
    // The words `sync` and the log use for the same sync.
    if n.skipped > 0 {
        parts.push(format!("{} skipped", n.skipped));
    }
    if n.held > 0 {
        parts.push(format!(
            "{} held for the next window",
            plural(n.held, "file")
        ));
    }
    let mut text = parts.join(", ");
    if !s.actions.is_empty() {
        let acts: Vec<String> = s
            .actions
            .iter()
            .map(|a| format!("{} {}", a.action, if a.ok { "ok" } else { "failed" }))
            .collect();
        let _ = write!(text, "; {}", acts.join(", "));
    }
    text
}

/// Prometheus text exposition format (version 0.0.4) of the status.
pub(crate) fn metrics(st: &Status) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP hostbridge_up 1 if the daemon answered.\n# TYPE hostbridge_up gauge\nhostbridge_up 1"
    );
    for f in FAMILIES {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}",
            name = f.name,
            help = f.help,
            kind = f.kind
        );
        for b in &st.bridges {
            for (labels, v) in (f.samples)(b) {
                let _ = writeln!(out, "{}{{bridge=\"{}\"{labels}}} {v}", f.name, b.name);
            }
        }
    }
    out
}

/// A metric family with samples per bridge: each an extra label (empty, or
/// `,name="value"`) and a value; a bridge with none is left out.
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    samples: fn(&Bridge) -> Vec<(&'static str, f64)>,
}

fn flag(b: bool) -> f64 {
    f64::from(u8::from(b))
}

/// Every per-bridge family, in the order they are written.
const FAMILIES: &[Family] = &[
    Family {
        name: "hostbridge_healthy",
        kind: "gauge",
        help: "1 if the bridge is healthy.",
        samples: |b| vec![("", flag(b.health == Health::Healthy))],
    },
    Family {
        name: "hostbridge_syncs_total",
        kind: "counter",
        help: "Syncs by result.",
        samples: |b| {
            vec![
                (",result=\"ok\"", b.counters.syncs_ok as f64),
                (",result=\"failed\"", b.counters.syncs_failed as f64),
            ]
        },
    },
    Family {
        name: "hostbridge_files_installed_total",
        kind: "counter",
        help: "Files installed or replaced.",
        samples: |b| vec![("", b.counters.files_installed as f64)],
    },
    Family {
        name: "hostbridge_files_pruned_total",
        kind: "counter",
        help: "Files pruned.",
        samples: |b| vec![("", b.counters.files_pruned as f64)],
    },
    Family {
        name: "hostbridge_action_failures_total",
        kind: "counter",
        help: "Failed actions.",
        samples: |b| vec![("", b.counters.action_failures as f64)],
    },
    Family {
        name: "hostbridge_cert_not_after_seconds",
        kind: "gauge",
        help: "Not-after of the installed certificate (files bridges with validate: tls-pair).",
        samples: |b| b.cert.iter().map(|c| ("", c.not_after as f64)).collect(),
    },
    Family {
        name: "hostbridge_cert_served",
        kind: "gauge",
        help: "1 if the verify endpoint served the installed certificate at the last check.",
        samples: |b| {
            b.cert
                .iter()
                .filter_map(|c| c.served.as_ref())
                .map(|s| ("", flag(s.matches)))
                .collect()
        },
    },
    Family {
        name: "hostbridge_replug_runs_total",
        kind: "counter",
        help: "Runs of the usb-check's on_replug actions (an expected USB device re-enumerated).",
        samples: |b| vec![("", b.counters.replug_runs as f64)],
    },
    Family {
        name: "hostbridge_inotify_overflows_total",
        kind: "counter",
        help: "inotify queue overflows.",
        samples: |b| vec![("", b.counters.overflows as f64)],
    },
    Family {
        name: "hostbridge_pending_windows",
        kind: "gauge",
        help: "1 while a settle window is open.",
        samples: |b| vec![("", flag(b.pending.is_some()))],
    },
    Family {
        name: "hostbridge_usb_ok",
        kind: "gauge",
        help: "1 if the latest USB check (after a sync or on hotplug) found every device usable.",
        samples: |b| b.usb.iter().map(|u| ("", flag(u.ok))).collect(),
    },
    Family {
        name: "hostbridge_last_success_timestamp_seconds",
        kind: "gauge",
        help: "When the last successful sync finished.",
        samples: |b| b.last_success_at.iter().map(|t| ("", *t as f64)).collect(),
    },
];
