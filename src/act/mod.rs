//! Acting on a sync: the `then:` actions owed by bridges whose files
//! changed, each distinct action once per burst however many bridges name
//! it, then revocation of USB grants their rules dropped and the manifests
//! saved with nothing owed. Shell code: the grouping is decided in
//! `core::act`, commands run in `host::actions`, the USB check in [`usb`].

use anyhow::Context;

use crate::config::{Action, Bridge, Config};
use crate::host::actions::{self, ActionOutcome};
use crate::host::state::{Manifest, StateDir};
use crate::sync::SyncReport;

pub(crate) mod revoke;
pub(crate) mod usb;
pub(crate) mod verify;

/// A bridge whose files changed and whose `then:` actions are owed.
#[derive(Debug, Clone)]
pub(crate) struct Owed {
    /// The bridge.
    pub(crate) bridge: Bridge,
    /// Its sync report (actions get filled in).
    pub(crate) report: SyncReport,
    /// Its manifest, saved again once the actions succeeded.
    pub(crate) manifest: Manifest,
    /// When its files were done: it waits for peers sharing a target at
    /// most twice its `max_wait` from then.
    pub(crate) since: std::time::Instant,
}

impl Owed {
    /// The names the actions are owed for (`HOSTBRIDGE_CHANGED`), sorted:
    /// those of this sync and those still owed from an earlier sync whose
    /// actions failed (the manifest keeps them until the actions succeed).
    pub(crate) fn changed_names(&self) -> Vec<String> {
        let mut names = self.manifest.changed.clone();
        names.extend(self.report.changed_names());
        names.into_iter().collect()
    }
}

/// Runs the owed actions of several bridges together (and, with `verify`,
/// each bridge's `verify` step after them): each distinct action
/// once, in the order first listed, even when several bridges name it.
/// Bridges are taken in config order, whichever settled first, so the
/// `HOSTBRIDGE_BRIDGE` and `HOSTBRIDGE_CHANGED` an action sees do not depend
/// on timing. A
/// failed action skips the rest of its bridges' actions until their next
/// sync. Manifests of bridges whose actions all succeeded are saved with
/// nothing owed; a manifest that cannot be saved is an error in that
/// bridge's report (its actions run again at the next sync).
pub(crate) async fn run_owed(config: &Config, owed: &mut [Owed], verify: bool) {
    // Indices in config order; `owed` itself keeps its order for the caller.
    let mut order: Vec<usize> = (0..owed.len()).collect();
    order.sort_by_key(|&i| {
        config
            .bridges
            .iter()
            .position(|b| b.name == owed[i].bridge.name)
            .unwrap_or(usize::MAX)
    });
    let lists: Vec<(usize, &[Action])> = order
        .iter()
        .map(|&i| (i, owed[i].bridge.then.as_slice()))
        .collect();
    let plan = crate::core::act::merge(&lists);
    let mut failed = run_merged(config, plan, owed).await;
    revoke_after(config, owed, &mut failed).await;
    if verify {
        verify::verify_after(config, owed, &mut failed).await;
    }
    settle_manifests(config, owed, &failed).await;
}

/// Runs each merged action once for the bridges that owe it (a bridge
/// whose earlier action failed drops out of its later ones); which bridges
/// had a failure.
async fn run_merged(
    config: &Config,
    plan: Vec<(Action, Vec<usize>)>,
    owed: &mut [Owed],
) -> Vec<bool> {
    let mut failed = vec![false; owed.len()];
    for (action, who) in plan {
        let live: Vec<usize> = who.into_iter().filter(|&i| !failed[i]).collect();
        if live.is_empty() {
            continue;
        }
        let who: Vec<&Owed> = live.iter().map(|&i| &owed[i]).collect();
        let outcome = run_one(config, &action, &who).await;
        for &i in &live {
            failed[i] |= outcome.result.is_err();
            owed[i].report.actions.push(outcome.clone());
        }
    }
    failed
}

/// Puts back the nodes of devices whose grant is gone (see [`revoke`]),
/// and checks the USB devices again where that changed them.
async fn revoke_after(config: &Config, owed: &mut [Owed], failed: &mut [bool]) {
    for (o, failed) in owed.iter_mut().zip(failed.iter_mut()) {
        let Some(checks) = &o.bridge.rules else {
            continue;
        };
        match revoke::revoke(config, &o.bridge, checks.revoke_restore).await {
            Ok(notes) if notes.is_empty() => {}
            Ok(notes) => {
                o.report.notes.extend(notes);
                // The usb-check ran before the revocation: check again so
                // the status shows the nodes as they are now.
                let check = o
                    .bridge
                    .then
                    .iter()
                    .find(|a| matches!(a, Action::UsbCheck { .. }));
                let ran = o.report.actions.iter().any(|a| a.usb.is_some());
                if let Some(action) = check.filter(|_| ran) {
                    let outcome = run_one(config, action, &[&*o]).await;
                    *failed |= outcome.result.is_err();
                    match o
                        .report
                        .actions
                        .iter_mut()
                        .find(|a| a.action == outcome.action)
                    {
                        Some(a) => *a = outcome,
                        None => o.report.actions.push(outcome),
                    }
                }
            }
            Err(e) => o.report.errors.push(format!("revoking grants: {e:#}")),
        }
    }
}

/// Once a bridge's actions ran, its manifest says whether they are still
/// owed: none if all ran, else the names they are owed for. This is the
/// sync's second and last manifest write (the first is its intent record).
async fn settle_manifests(config: &Config, owed: &mut [Owed], failed: &[bool]) {
    let state = StateDir::new(&config.state_dir);
    for (o, failed) in owed.iter_mut().zip(failed) {
        // An action is only skipped after one of the bridge's actions failed.
        if !*failed {
            o.manifest.actions_pending = false;
            o.manifest.changed.clear();
        }
        // Moved to the blocking task and back, not copied (10,000 entries
        // are common).
        let (name, st, m) = (
            o.bridge.name.clone(),
            state.clone(),
            std::mem::take(&mut o.manifest),
        );
        let saved = tokio::task::spawn_blocking(move || {
            // Under the lock, and only over the manifest this sync left
            // (every save is a new file: its stamp tells): a newer sync (a
            // bridge replaced by a reload while these actions ran, a
            // `hostbridge sync` by hand) wrote one that owes its own.
            let saved = st.lock().and_then(|_lock| {
                if m.left.is_some() && st.stamp(&name) == m.left {
                    st.save(&name, &m)?;
                }
                Ok(())
            });
            (saved, m)
        })
        .await
        .context("manifest task failed")
        .and_then(|(saved, m)| {
            o.manifest = m;
            saved
        });
        if let Err(e) = saved {
            // Its actions ran; they run again at the next sync.
            o.report.errors.push(format!("{e:#}"));
        }
    }
}

/// Runs `action` once for the bridges `who` (their names and changed files
/// in its environment). The USB check runs here, not in the host layer: it
/// reads the installed rules and the state dir as well as the host.
async fn run_one(config: &Config, action: &Action, who: &[&Owed]) -> ActionOutcome {
    if let Action::UsbCheck {
        user,
        expect,
        probe,
        ..
    } = action
    {
        return usb::run_action(config, user, expect, *probe).await;
    }
    let bridge = who
        .iter()
        .map(|o| o.bridge.name.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let changed = who.iter().flat_map(|o| o.changed_names()).collect();
    actions::run(action, &ctx(config, bridge, changed, Vec::new())).await
}

/// Runs a `usb-check`'s `on_replug` actions for bridge `bridge`, in order,
/// after expected devices arrived (`replugged`, as "051d:0002 at
/// 003:004"); a failed one skips the rest until the next arrival.
pub(crate) async fn run_on_replug(
    config: &Config,
    bridge: &str,
    on_replug: &[Action],
    replugged: Vec<String>,
) -> Vec<ActionOutcome> {
    let ctx = ctx(config, bridge.to_string(), Vec::new(), replugged);
    let mut out = Vec::new();
    for action in on_replug {
        let outcome = actions::run(action, &ctx).await;
        let failed = outcome.result.is_err();
        out.push(outcome);
        if failed {
            break;
        }
    }
    out
}

/// What an action run for `bridge` knows of the host and the cause.
fn ctx(
    config: &Config,
    bridge: String,
    changed: Vec<String>,
    replugged: Vec<String>,
) -> actions::ActionCtx {
    actions::ActionCtx {
        udevadm: config.udevadm.clone(),
        systemctl: config.systemctl.clone(),
        podman: config.podman.clone(),
        proc_root: config.proc_root.clone(),
        bridge,
        changed,
        changed_dir: config.state_dir.join("changed"),
        replugged,
    }
}
