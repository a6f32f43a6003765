//! USB hotplug in the daemon: listens to udevd's monitor while some bridge
//! has a `usb-check` action, and re-checks such a bridge when a USB device
//! it cares about is added, changed or removed. Shell code: events come from
//! `host::hotplug`, the check from `usb_check`, the decisions from
//! `core::usb::event_concerns` and `core::hotplug`.
//!
//! Re-checks of one bridge never overlap: events during a re-check, or
//! while the bridge syncs, are owed (all of them, each once) and one
//! re-check covers them once the bridge is free. A
//! synthetic event (`SYNTH_UUID`, made by `udevadm trigger`) during a sync
//! is the echo of the bridge's own `udev-trigger` or revocation, whose
//! effect its `usb-check` action (run after `udevadm settle`) already sees,
//! so it is dropped.

use std::sync::Arc;

use anyhow::Result;
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use super::replugging::Replugged;
use super::{BridgeId, Daemon};
use crate::act::usb::UsbReport;
use crate::config::{Action, Bridge};
use crate::core::hotplug::{Fate, fate};
use crate::core::status::Usb;
use crate::core::usb::{UsbEvent, event_concerns};
use crate::host::clock::unix_now;
use crate::host::{hotplug as host, notify};

/// A finished re-check: the bridge, the events it covers, the expected
/// VID:PIDs, when it began and the result.
pub(super) type Checked = (
    BridgeId,
    Vec<UsbEvent>,
    Vec<String>,
    std::time::Instant,
    Result<UsbReport>,
);

/// The daemon's hotplug state.
pub(super) struct Hotplug {
    /// The monitor, while listening.
    pub(super) monitor: Option<host::Monitor>,
    /// For the status: "on", "off: why", "not used".
    pub(super) state: String,
    /// Whether "udevd is not running" was logged (it is said once).
    told: bool,
    done_tx: mpsc::UnboundedSender<Checked>,
    pub(super) done_rx: mpsc::UnboundedReceiver<Checked>,
    /// Finished runs of `on_replug` actions.
    pub(super) replug_tx: mpsc::UnboundedSender<Replugged>,
    pub(super) replug_rx: mpsc::UnboundedReceiver<Replugged>,
}

impl Hotplug {
    pub(super) fn new() -> Hotplug {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let (replug_tx, replug_rx) = mpsc::unbounded_channel();
        Hotplug {
            monitor: None,
            state: "not used (no bridge has a usb-check action)".into(),
            told: false,
            done_tx,
            done_rx,
            replug_tx,
            replug_rx,
        }
    }
}

/// The `usb-check` settings of a bridge: user, expected VID:PIDs, probe.
pub(super) fn usb_check_of(b: &Bridge) -> Option<(String, Vec<String>, bool)> {
    b.then.iter().find_map(|a| match a {
        Action::UsbCheck {
            user,
            expect,
            probe,
            ..
        } => Some((user.clone(), expect.clone(), *probe)),
        _ => None,
    })
}

/// The monitor's next events; never returns while there is no monitor.
pub(super) async fn ready(monitor: Option<&mut host::Monitor>) -> Result<Vec<UsbEvent>, String> {
    match monitor {
        Some(m) => m.recv().await,
        None => std::future::pending().await,
    }
}

impl Daemon {
    /// Starts listening when a bridge needs it and udevd runs; otherwise
    /// says why, once. Called at start and after each reload (udevd may
    /// have started since).
    pub(super) fn setup_hotplug(&mut self) {
        let wanted = self
            .config
            .bridges
            .iter()
            .any(|b| usb_check_of(b).is_some());
        let h = &mut self.hotplug;
        if h.monitor.is_some() {
            return;
        }
        if !wanted {
            h.state = "not used (no bridge has a usb-check action)".into();
            return;
        }
        match host::Monitor::open(&self.config.udev_run_dir) {
            Ok(fd) => {
                info!("listening for USB hotplug events from udevd");
                h.monitor = Some(fd);
                h.state = "on".into();
            }
            Err(why) => {
                if !h.told {
                    warn!(
                        "{why}: USB hotplug re-checks are off; usb-check still runs after each sync"
                    );
                    h.told = true;
                }
                h.state = format!("off: {why}");
            }
        }
    }

    /// Handles a wake-up of the monitor.
    pub(super) fn on_hotplug(&mut self, res: Result<Vec<UsbEvent>, String>) {
        match res {
            Ok(events) => self.on_usb_events(events),
            Err(e) => {
                error!("reading udev events failed: {e}; USB hotplug re-checks are off");
                self.hotplug.monitor = None;
                self.hotplug.state = format!("off: reading udev events failed: {e}");
            }
        }
    }

    /// Takes whatever the monitor has queued, without waiting.
    pub(super) fn drain_hotplug(&mut self) {
        let events = match &mut self.hotplug.monitor {
            Some(m) => m.drain_now(),
            None => return,
        };
        self.on_usb_events(events);
    }

    fn on_usb_events(&mut self, events: Vec<UsbEvent>) {
        for ev in events.into_iter().filter(UsbEvent::wants_check) {
            if ev.is_lost() {
                warn!(
                    "udev events were lost (the monitor's receive buffer overflowed); re-checking every USB device"
                );
            }
            debug!("udev: USB {} {:?}", ev.label(), ev.id);
            let ids: Vec<BridgeId> = self
                .bridges
                .iter()
                .filter(|b| usb_check_of(&b.bridge).is_some())
                .map(|b| b.id)
                .collect();
            for id in ids {
                let Some(busy) = self.busy(id) else { continue };
                let Some(b) = self.find(id) else { continue };
                match fate(&ev, busy, b.usb.running()) {
                    Fate::Check => self.start_usb_check(id, vec![ev.clone()]),
                    Fate::Owe => b.usb.owe(vec![ev.clone()]),
                    Fate::Echo => debug!(
                        "{}: USB {} during the sync: a trigger's echo",
                        b.bridge.name,
                        ev.label()
                    ),
                }
            }
        }
    }

    /// Re-checks bridge `id` for events `evs`, unless one is running (then
    /// they are owed).
    fn start_usb_check(&mut self, id: BridgeId, evs: Vec<UsbEvent>) {
        let config = Arc::clone(&self.config);
        let tx = self.hotplug.done_tx.clone();
        let Some(b) = self.find(id) else { return };
        let Some((user, expect, probe)) = usb_check_of(&b.bridge) else {
            return;
        };
        let Some(evs) = b.usb.start(evs) else {
            return;
        };
        let began = std::time::Instant::now();
        tokio::task::spawn_blocking(move || {
            let res = crate::act::usb::check(&config, &user, &expect, probe);
            let _ = tx.send((id, evs, expect, began, res));
        });
    }

    /// Runs the re-check owed to bridge `id`, if it is free now.
    pub(super) fn run_owed_usb_check(&mut self, id: BridgeId) {
        let Some(busy) = self.busy(id) else { return };
        let Some(b) = self.find(id) else { return };
        if let Some(evs) = b.usb.take_owed(busy) {
            self.start_usb_check(id, evs);
        }
    }

    /// Whether bridge `id` is busy for a USB re-check (`None`: no such
    /// bridge).
    fn busy(&self, id: BridgeId) -> Option<bool> {
        let b = self.bridges.iter().find(|b| b.id == id)?;
        Some(self.activity(b).busy())
    }

    /// Records a finished re-check if one of its events concerns the bridge.
    pub(super) fn on_usb_checked(&mut self, (id, evs, expect, began, res): Checked) {
        let Some(b) = self.find(id) else { return };
        b.usb.finished();
        let name = b.bridge.name.clone();
        let labels = evs
            .iter()
            .map(UsbEvent::label)
            .collect::<Vec<_>>()
            .join(", ");
        match res {
            Err(e) => error!(
                bridge = name,
                "{name}: USB re-check after {labels} failed: {e:#}"
            ),
            Ok(_) if b.status.usb.as_ref().and_then(|u| u.began) > Some(began) => {
                debug!("{name}: USB re-check after {labels} overtaken by a newer check; dropped")
            }
            Ok(report) => {
                let mut new = report.to_status(&expect, &trigger_of(&evs, &labels), unix_now());
                new.began = Some(began);
                let listed = |u: Option<&Usb>| -> Vec<String> {
                    u.map(|u| u.devices.iter().map(|d| d.bus_dev.clone()).collect())
                        .unwrap_or_default()
                };
                let (before, after) = (listed(b.status.usb.as_ref()), listed(Some(&new)));
                let concerning: Vec<&UsbEvent> = evs
                    .iter()
                    .filter(|ev| event_concerns(ev, &expect, &before, &after))
                    .collect();
                if concerning.is_empty() {
                    debug!("{name}: USB {labels} does not concern this bridge");
                } else {
                    for ev in concerning {
                        log_recheck(&name, ev, &new);
                    }
                    let before = b.status.usb.replace(new.clone());
                    self.note_arrivals(id, before.as_ref(), &new);
                    if !self.starting {
                        notify::status(&self.status_line());
                    }
                    self.write_metrics();
                }
            }
        }
        self.run_owed_usb_check(id);
    }
}

/// A re-check's trigger in the status: "hotplug add 001:003", or
/// "hostbridge wait" for the check a `wait` asked for.
fn trigger_of(evs: &[UsbEvent], labels: &str) -> String {
    if evs.iter().all(|e| e.label() == UsbEvent::asked().label()) {
        labels.to_string()
    } else {
        format!("hotplug {labels}")
    }
}

/// One line per re-check: the event's device and its verdict, or that it
/// is gone, then the whole summary.
fn log_recheck(name: &str, ev: &UsbEvent, u: &Usb) {
    let bus_dev = ev.bus_dev();
    let what = match u.devices.iter().find(|d| d.bus_dev == bus_dev) {
        _ if ev.is_whole() => "every device re-checked".into(),
        Some(d) => match &d.reason {
            Some(r) => format!("{} {}: {r}", d.id, d.verdict),
            None => format!("{} {}", d.id, d.verdict),
        },
        None => "device gone".into(),
    };
    if u.ok {
        info!(
            bridge = name,
            "{name}: USB {}: {what}; all: {}",
            ev.label(),
            u.summary
        );
    } else {
        warn!(
            bridge = name,
            "{name}: USB {}: {what}; all: {}",
            ev.label(),
            u.summary
        );
    }
}
