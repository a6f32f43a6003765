//! `hostbridge usb` and the `usb-check` action: for every USB device, which
//! installed rules grant it, what its node looks like, and whether the NUT
//! user can open it. Shell code: gathers with the host layer, decides with
//! `core::usb`, renders.

use anyhow::{Context, Result};
use serde::Serialize;

use crate::config::Config;
use crate::core::rules::parse::{RulesFile, parse};
use crate::core::status;
use crate::core::usb::{self, Device, Grant, Verdict};
use crate::host::state::StateDir;
use crate::host::usb as host;

/// One device's result.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DeviceReport {
    /// The device.
    pub(crate) device: Device,
    /// Its node as `owner:group mode`, or "missing".
    pub(crate) node: String,
    /// What the installed rules ask for.
    pub(crate) grant: Grant,
    /// The verdict.
    #[serde(flatten)]
    pub(crate) verdict: Verdict,
}

/// The whole check.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct UsbReport {
    /// The user checked.
    pub(crate) user: String,
    /// Present devices.
    pub(crate) devices: Vec<DeviceReport>,
    /// Expected VID:PIDs that are not plugged in.
    pub(crate) absent: Vec<String>,
}

impl UsbReport {
    /// Whether every present device is ok and nothing expected is absent;
    /// devices no rule lists only count when they were expected.
    pub(crate) fn ok(&self, expect: &[String]) -> bool {
        self.absent.is_empty()
            && self.devices.iter().all(|d| match &d.verdict {
                Verdict::Ok => true,
                Verdict::NoRuleMatches(_) => !expect.contains(&d.device.id()),
                _ => false,
            })
    }

    /// One line summary for logs and the action result.
    pub(crate) fn summary(&self, expect: &[String]) -> String {
        let mut parts: Vec<String> = self
            .devices
            .iter()
            .filter(|d| {
                !matches!(d.verdict, Verdict::NoRuleMatches(_)) || expect.contains(&d.device.id())
            })
            .map(|d| format!("{} {}", d.device.id(), verdict_text(&d.verdict)))
            .collect();
        parts.extend(self.absent.iter().map(|id| format!("{id} device-absent")));
        if parts.is_empty() {
            "no USB device is granted by the installed rules".into()
        } else {
            parts.join("; ")
        }
    }
}

impl UsbReport {
    /// The status model's view: the devices that matter (granted by a rule,
    /// or expected), stamped with the time and what triggered the check.
    pub(crate) fn to_status(&self, expect: &[String], trigger: &str, at: u64) -> status::Usb {
        let mut devices: Vec<status::UsbDevice> = self
            .devices
            .iter()
            .filter(|d| {
                !matches!(d.verdict, Verdict::NoRuleMatches(_)) || expect.contains(&d.device.id())
            })
            .map(|d| {
                let (verdict, reason) = verdict_parts(&d.verdict);
                status::UsbDevice {
                    bus_dev: format!("{:03}:{:03}", d.device.busnum, d.device.devnum),
                    id: d.device.id(),
                    product: d.device.name.clone(),
                    node: d.node.clone(),
                    rule: d.grant.rules.last().cloned(),
                    verdict,
                    reason,
                }
            })
            .collect();
        devices.extend(self.absent.iter().map(|id| status::UsbDevice {
            bus_dev: "-".into(),
            id: id.clone(),
            product: None,
            node: "missing".into(),
            rule: None,
            verdict: "device-absent".into(),
            reason: Some("expected but not plugged in".into()),
        }));
        status::Usb {
            at,
            trigger: trigger.into(),
            ok: self.ok(expect),
            summary: self.summary(expect),
            user: self.user.clone(),
            devices,
            began: None,
        }
    }
}

fn verdict_parts(v: &Verdict) -> (String, Option<String>) {
    let text = verdict_text(v);
    match text.split_once(": ") {
        Some((k, r)) => (k.to_string(), Some(r.to_string())),
        None => (text, None),
    }
}

fn verdict_text(v: &Verdict) -> String {
    match v {
        Verdict::Ok => "ok".into(),
        Verdict::RulesNotApplied(r) => format!("rules-not-applied: {r}"),
        Verdict::NoRuleMatches(r) => format!("no-rule-matches: {r}"),
        Verdict::UserCannotOpen(r) => format!("user-cannot-open: {r}"),
        Verdict::DeviceAbsent(r) => format!("device-absent: {r}"),
    }
}

/// Runs the check for `user`, expecting the given VID:PIDs.
pub(crate) fn check(
    config: &Config,
    user: &str,
    expect: &[String],
    probe: bool,
) -> Result<UsbReport> {
    let who = crate::host::nss::user(user)
        .with_context(|| format!("user {user:?} does not exist on this host"))?;
    let files = installed_rules(config, None)?;
    let devices = host::devices(&config.sysfs_root);
    let mut out = Vec::new();
    for d in &devices {
        let grant = grant_for(&files, d);
        let node = host::node(&config.dev_root, d);
        let mut verdict = usb::verdict(
            d,
            node.as_ref(),
            &grant,
            &who,
            &crate::host::nss::gid_of,
            &crate::host::nss::uid_of,
        );
        if probe && verdict.is_ok() {
            let path = config
                .dev_root
                .join(format!("bus/usb/{:03}/{:03}", d.busnum, d.devnum));
            if let Err(e) = host::probe(&config.setpriv, &who, &path) {
                verdict = Verdict::UserCannotOpen(format!(
                    "the mode bits allow it, but a real open failed: {e}"
                ));
            }
        }
        let node_desc = node.map_or_else(
            || "missing".to_string(),
            |n| {
                format!(
                    "{}:{} {:04o}",
                    name_of_uid(n.uid),
                    name_of_gid(n.gid),
                    n.mode & 0o777
                )
            },
        );
        out.push(DeviceReport {
            device: d.clone(),
            node: node_desc,
            grant,
            verdict,
        });
    }
    let absent = expect
        .iter()
        .filter(|id| !devices.iter().any(|d| d.id() == id.to_ascii_lowercase()))
        .cloned()
        .collect();
    Ok(UsbReport {
        user: user.into(),
        devices: out,
        absent,
    })
}

/// The rules files hostbridge installed (all udev-rules bridges, or only
/// `only`), parsed, in udev's order (by file name).
pub(crate) fn installed_rules(
    config: &Config,
    only: Option<&str>,
) -> Result<Vec<(String, RulesFile)>> {
    let state = StateDir::new(&config.state_dir);
    let mut files = Vec::new();
    for b in config
        .bridges
        .iter()
        .filter(|b| b.rules.is_some() && only.is_none_or(|n| n == b.name))
    {
        let manifest = state.load(&b.name)?;
        for name in manifest.files.keys() {
            if let Ok(bytes) = std::fs::read(b.install_to.join(name)) {
                files.push((name.clone(), parse(&bytes)));
            }
        }
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(files)
}

/// What `files` grant device `d`.
pub(crate) fn grant_for(files: &[(String, RulesFile)], d: &Device) -> Grant {
    let mut grant = Grant::default();
    for (name, file) in files {
        usb::grants(name, file, &d.vendor, &d.product, &mut grant);
    }
    grant
}

pub(crate) use crate::host::nss::{name_of_gid, name_of_uid};

/// The one-screen table of `hostbridge usb`.
pub(crate) fn render(r: &UsbReport) -> String {
    // Each column as wide as its widest cell, so a long rule name or node
    // path never pushes the verdict out of line.
    let mut rows: Vec<[String; 6]> = vec![[
        "bus:dev".into(),
        "VID:PID".into(),
        "product".into(),
        "rule".into(),
        "node".into(),
        format!("verdict (user {})", r.user),
    ]];
    for d in &r.devices {
        // The product string is the device's own: escaped like any input.
        let product: String =
            crate::core::text::escape(d.device.name.as_deref().unwrap_or_default())
                .chars()
                .take(28)
                .collect();
        let rule = crate::core::text::escape(d.grant.rules.last().map_or("-", String::as_str))
            .into_owned();
        rows.push([
            format!("{:03}:{:03}", d.device.busnum, d.device.devnum),
            d.device.id(),
            product,
            rule,
            d.node.to_string(),
            verdict_text(&d.verdict),
        ]);
    }
    for id in &r.absent {
        rows.push([
            "-".into(),
            id.clone(),
            String::new(),
            String::new(),
            String::new(),
            "device-absent: expected but not plugged in".into(),
        ]);
    }
    let mut widths = [0usize; 5];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut s = String::new();
    for row in &rows {
        for (w, cell) in widths.iter().zip(row) {
            s += &format!("{cell:<w$} ");
        }
        s += &row[5];
        s.push('\n');
    }
    s
}
/// The `usb-check` action: [`check`] on the blocking pool, as an action
/// outcome whose `usb` carries the structured result for the status.
pub(crate) async fn run_action(
    config: &Config,
    user: &str,
    expect: &[String],
    probe: bool,
) -> crate::host::actions::ActionOutcome {
    let (config, user, expect) = (config.clone(), user.to_string(), expect.to_vec());
    let began = std::time::Instant::now();
    let checked = tokio::task::spawn_blocking(move || {
        check(&config, &user, &expect, probe).map(|r| {
            let mut s = r.to_status(&expect, "sync", crate::host::clock::unix_now());
            s.began = Some(began);
            s
        })
    })
    .await;
    let (result, usb) = match checked {
        Ok(Ok(s)) if s.ok => (Ok(s.summary.clone()), Some(s)),
        Ok(Ok(s)) => (Err(s.summary.clone()), Some(s)),
        Ok(Err(e)) => (Err(format!("{e:#}")), None),
        Err(e) => (Err(e.to_string()), None),
    };
    crate::host::actions::ActionOutcome {
        action: "usb-check",
        result,
        usb,
    }
}
