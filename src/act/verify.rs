//! The `verify` step of a files bridge: after its actions, a TLS handshake
//! with the endpoint must present the certificate now installed, tried
//! again until `within`; if it does not, the `escalate` actions run once
//! and it is tried again. Shell code: the installed certificate is read
//! through the destination's `..data` (`host::gendir`), the endpoint probed
//! by `host::tls_probe`, the verdict is `core::served`'s.

use std::time::{Duration, Instant};

use super::Owed;
use crate::config::{Config, Verify};
use crate::core::served::{CertFacts, Probe, Verdict, judge};
use crate::core::status::Served;
use crate::host::actions::ActionOutcome;
use crate::host::clock::unix_now;

/// Most a certificate file may hold.
const CERT_LIMIT: u64 = 1 << 20;
/// Longest pause between two probes.
const MAX_PAUSE: Duration = Duration::from_secs(2);
/// Longest a single probe (connect, handshake) may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Verifies each bridge whose actions all succeeded and that has a
/// `verify`; a failed verification counts as a failed action (the actions
/// stay owed, and run again with the next change).
pub(crate) async fn verify_after(config: &Config, owed: &mut [Owed], failed: &mut [bool]) {
    for (o, failed) in owed.iter_mut().zip(failed.iter_mut()) {
        if *failed {
            continue;
        }
        let Some(files) = &o.bridge.files else {
            continue;
        };
        let (Some(v), Some(pair)) = (files.verify.clone(), files.tls_pair.clone()) else {
            continue;
        };
        let expected = match installed(&o.bridge.install_to, &pair.cert).await {
            Ok(f) => f,
            Err(e) => {
                o.report.actions.push(outcome(Err(format!(
                    "reading the installed {}: {e}",
                    pair.cert
                ))));
                *failed = true;
                continue;
            }
        };
        let mut verdict = until_served(&v, &expected).await;
        let mut escalated = Vec::new();
        if !verdict.ok() && !v.escalate.is_empty() {
            escalated = run_in_order(config, o, &v.escalate).await;
            verdict = until_served(&v, &expected).await;
        }
        let mut text = verdict.text(&expected);
        if !escalated.is_empty() {
            text = format!(
                "{text} (after {} without it, then escalate: {})",
                humantime::format_duration(v.within),
                escalated.join(", ")
            );
        } else if !verdict.ok() {
            text = format!("{text} (within {})", humantime::format_duration(v.within));
        }
        if !verdict.ok() && v.rollback {
            let back = roll_back(config, o, &v, pair.expiry_warning).await;
            text = format!("{text}; {back}");
        }
        let served = match &verdict {
            Verdict::Serving(f) | Verdict::Other { served: f } => Some(f),
            Verdict::NotServing(_) => None,
        };
        o.report.served = Some(Served {
            at: unix_now(),
            endpoint: v.endpoint.clone(),
            matches: verdict.ok(),
            serial: served.map(|f| f.serial.clone()),
            subject: served.map(|f| f.subject.clone()),
            detail: text.clone(),
            since: None,
        });
        *failed |= !verdict.ok();
        o.report
            .actions
            .push(outcome(if verdict.ok() { Ok(text) } else { Err(text) }));
    }
}

fn outcome(result: Result<String, String>) -> ActionOutcome {
    ActionOutcome {
        action: "verify",
        result,
        usb: None,
    }
}

/// The certificate as readers of the destination see it now.
async fn installed(dir: &std::path::Path, name: &str) -> Result<CertFacts, String> {
    let (dir, name) = (dir.to_path_buf(), name.to_string());
    tokio::task::spawn_blocking(move || {
        let dest = crate::host::dest::DestDir::open(&dir).map_err(|e| e.to_string())?;
        let pem = crate::host::gendir::read_current(&dest, &name, CERT_LIMIT)
            .map_err(|e| e.to_string())?;
        CertFacts::of_pem(&pem)
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Probes until the installed certificate is served or `within` is over;
/// the last verdict.
async fn until_served(v: &Verify, expected: &CertFacts) -> Verdict {
    let deadline = Instant::now() + v.within;
    let mut pause = Duration::from_millis(100);
    loop {
        let (endpoint, sni) = (v.endpoint.clone(), v.sni.clone());
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = left.clamp(Duration::from_secs(1), PROBE_TIMEOUT);
        let probe = tokio::task::spawn_blocking(move || {
            crate::host::tls_probe::probe(&endpoint, &sni, timeout)
        })
        .await
        .unwrap_or_else(|e| Probe::NotServing(format!("the probe failed: {e}")));
        let verdict = judge(expected, &probe);
        if verdict.ok() || Instant::now() + pause >= deadline {
            return verdict;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// `on_verify_fail: rollback`: the previous generation swapped back in, the
/// bridge's `then:` actions run again so the service takes it, and whether
/// it is served then; one line saying so. The sync's `cert` becomes the one
/// now installed.
async fn roll_back(config: &Config, o: &mut Owed, v: &Verify, warn_within: Duration) -> String {
    let dir = o.bridge.install_to.clone();
    let swapped = tokio::task::spawn_blocking(move || {
        let dest = crate::host::dest::DestDir::open(&dir)?;
        crate::host::gendir::roll_back(&dest)
    })
    .await
    .map_err(std::io::Error::other)
    .and_then(|r| r);
    match swapped {
        Ok(None) => return "no earlier certificate to roll back to".into(),
        Err(e) => return format!("rolling back failed: {e}"),
        Ok(Some(_)) => {}
    }
    let Some(pair) = o.bridge.files.as_ref().and_then(|f| f.tls_pair.clone()) else {
        return "rolled back".into();
    };
    let old = match installed(&o.bridge.install_to, &pair.cert).await {
        Ok(f) => f,
        Err(e) => return format!("rolled back, but reading {} failed: {e}", pair.cert),
    };
    o.report.cert = Some(crate::core::status::Cert {
        file: pair.cert.clone(),
        serial: old.serial.clone(),
        subject: old.subject.clone(),
        not_after: old.not_after,
        warn_within: warn_within.as_secs(),
        served: None,
    });
    let then = o.bridge.then.clone();
    run_in_order(config, o, &then).await;
    let again = until_served(v, &old).await;
    format!(
        "rolled back to serial {} ({}): {}",
        old.serial,
        old.subject,
        if again.ok() {
            "served again".to_string()
        } else {
            again.text(&old)
        }
    )
}

/// Runs `actions` for bridge `o` in order, each outcome into its report; a
/// failed one ends the list. Returns "LABEL ok" / "LABEL failed" of each
/// that ran.
async fn run_in_order(
    config: &Config,
    o: &mut Owed,
    actions: &[crate::config::Action],
) -> Vec<String> {
    let mut ran = Vec::new();
    for a in actions {
        let out = super::run_one(config, a, &[&*o]).await;
        let bad = out.result.is_err();
        ran.push(format!(
            "{} {}",
            out.action,
            if bad { "failed" } else { "ok" }
        ));
        o.report.actions.push(out);
        if bad {
            break;
        }
    }
    ran
}
