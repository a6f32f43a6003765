//! What `hostbridge wait` makes of a bridge's status: ready (its files are
//! installed, its actions ran, its USB check is ok), not yet (the daemon is
//! still at it, or retries), refused (a file the container wrote will not
//! be installed until it changes), or failed (an action failed; it runs
//! again on the next change or the next `wait`). Pure: a function of the
//! status the daemon answered.

use super::status::{Bridge, Sync};

/// The verdict on one bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Everything asked for holds; the text says what was seen.
    Ready(String),
    /// Not yet: the daemon syncs, retries, or a device is not there or not
    /// usable yet (a hotplug re-check may change that). Why.
    NotYet(String),
    /// A source file is refused, skipped or in conflict: waiting does not
    /// help until the container writes it anew. Which file and why.
    Refused(String),
    /// An action failed; it is retried on the next change or `wait`. Which
    /// and why.
    Failed(String),
}

/// Judges bridge `b` as the daemon answered it, with `usb` the `VID:PID`s
/// that must be present and usable (lowercase). Without `usb`, the bridge's
/// own USB check, if it has one, must be ok.
pub(crate) fn judge(b: &Bridge, usb: &[String]) -> Verdict {
    if let Some(s) = &b.syncing {
        return Verdict::NotYet(format!("a sync is running ({})", s.doing));
    }
    if let Some(p) = &b.pending {
        return Verdict::NotYet(format!(
            "changes are settling ({})",
            crate::core::text::plural(p.files.len(), "file")
        ));
    }
    if b.watching.starts_with("error") {
        return Verdict::NotYet(format!("its watch: {}", b.watching));
    }
    if !b.source_seen {
        return Verdict::NotYet(format!("its source {} has not been seen", b.source));
    }
    let Some(s) = &b.last_sync else {
        return Verdict::NotYet("no sync has finished yet".into());
    };
    // A newer USB check replaces the sync's usb-check action result.
    let usb_newer = match &b.usb {
        Some(u) => u.at >= s.at,
        None => false,
    };
    let failed = s
        .actions
        .iter()
        .filter(|a| !(usb_newer && a.action == "usb-check"))
        .find(|a| !a.ok);
    if let Some(a) = failed {
        if a.action == "usb-check" {
            return Verdict::NotYet(format!("usb-check: {}", a.detail));
        }
        return Verdict::Failed(format!("{} failed: {}", a.action, a.detail));
    }
    // A sync whose files could not be put in place is retried with backoff.
    // (One that failed by its usb-check alone, since checked anew, is not.)
    if s.failed()
        && let Some(why) = s.errors.first()
    {
        return Verdict::NotYet(format!("the last sync failed and is retried: {why}"));
    }
    if let Some(why) = refusal(s) {
        return Verdict::Refused(why);
    }
    if let Some(n) = s.held.first() {
        return Verdict::NotYet(format!("{} is held: {}", n.file, n.reason));
    }
    let usb_seen = match usb_verdict(b, usb) {
        Ok(seen) => seen,
        Err(why) => return Verdict::NotYet(why),
    };
    let n = s.unchanged + s.counts().installed + s.counts().replaced;
    let mut text = format!("{} in place", crate::core::text::plural(n, "file"));
    if let Some(seen) = usb_seen {
        text += &format!("; usb: {seen}");
    }
    Verdict::Ready(text)
}

/// The first refused, skipped or conflicting file of sync `s`.
fn refusal(s: &Sync) -> Option<String> {
    if let Some(f) = s.findings.iter().find(|f| f.severity == "error") {
        return Some(format!("refused: {}", f.render()));
    }
    if let Some(n) = s.skipped.first() {
        return Some(format!("skipped {}: {}", n.file, n.reason));
    }
    s.conflicts
        .first()
        .map(|n| format!("conflict at {}: {}", n.file, n.reason))
}

/// The USB part: `Ok(None)` when nothing is asked and the bridge has no
/// check, `Ok(Some(summary))` when all is well, `Err(why)` otherwise.
fn usb_verdict(b: &Bridge, usb: &[String]) -> Result<Option<String>, String> {
    let Some(u) = &b.usb else {
        return if usb.is_empty() {
            Ok(None)
        } else {
            Err("no USB check has run yet".into())
        };
    };
    if usb.is_empty() {
        return if u.ok {
            Ok(Some(u.summary.clone()))
        } else {
            Err(format!("usb-check: {}", u.summary))
        };
    }
    let mut seen = Vec::new();
    for id in usb {
        let found: Vec<_> = u
            .devices
            .iter()
            .filter(|d| d.id == *id && d.bus_dev != "-")
            .collect();
        if found.is_empty() {
            return Err(format!("{id} is not plugged in (as {} sees it)", u.user));
        }
        for d in found {
            if d.verdict != "ok" {
                let why = d.reason.as_deref().unwrap_or("");
                return Err(format!(
                    "{id} at {}: {} ({}): {why}",
                    d.bus_dev, d.verdict, d.node
                ));
            }
            seen.push(format!("{id} at {} ok ({})", d.bus_dev, d.node));
        }
    }
    Ok(Some(seen.join(", ")))
}

#[cfg(test)]
mod tests;
