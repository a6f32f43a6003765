//! The daemon loop: one `tokio::select!` over inotify events, sync
//! completions, status-socket requests, the next deadline and signals; each
//! branch calls one method. Syncs run as tasks so events keep flowing while
//! files are written and actions run; the settle machine marks such events
//! dirty. Bridges have stable ids so a config reload can add, replace and
//! remove them while events and syncs of old ones are still in flight.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use crate::config::{Bridge, Config};
use crate::core::grace::PruneGrace;
use crate::core::hotplug::UsbChecks;
use crate::core::retry::{OpenRecheck, Retry};
use crate::core::settle::{Input, Settle};
use crate::core::status::{self, Health};
use crate::host::clock::unix_now;
use crate::host::feed::Delivery;
use crate::host::notify;
use crate::host::socket::{self, Request, Wire};
use crate::sync::{
    Guard, Owed, Progress, Scope, SyncOptions, SyncReport, Synced, sync_files_async,
};

mod acting;
mod bridge;
mod hotplug;
mod lifecycle;
mod replugging;
mod report;
mod waiting;
mod watching;

use bridge::{BridgeRt, SyncState, Watch};
use report::{describe, log_report, trigger};

/// How long to wait before retrying a watch that could not be added.
const WATCH_RETRY: Duration = Duration::from_secs(5);
/// How long shutdown waits for in-flight file installs.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);
/// A sync of a source this large gives back the memory it freed
/// ([`crate::host::heap::give_back`]): a few ms at most, none for a small one.
const LARGE_SYNC: usize = 1024;
/// Events taken in one turn of the daemon's loop, at most.
const EVENT_BATCH: usize = 256;

type BridgeId = u64;

/// The running daemon.
pub(crate) struct Daemon {
    config: Arc<Config>,
    config_loaded_at: u64,
    started_at: u64,
    reload_error: Option<String>,
    bridges: Vec<BridgeRt>,
    next_id: BridgeId,
    /// Every bridge's inotify events (bounded: a full channel leaves them
    /// in the kernel's queue, whose overflow makes the bridge rescan).
    events_tx: mpsc::Sender<Delivery>,
    events: mpsc::Receiver<Delivery>,
    done_tx: mpsc::UnboundedSender<(BridgeId, Result<Synced>)>,
    done_rx: mpsc::UnboundedReceiver<(BridgeId, Result<Synced>)>,
    /// Synced bridges whose actions wait until no bridge sharing a target
    /// is mid-window, so each target is acted on once per burst.
    owed: Vec<(BridgeId, Owed)>,
    actions_tx: mpsc::UnboundedSender<Vec<(BridgeId, Owed)>>,
    actions_rx: mpsc::UnboundedReceiver<Vec<(BridgeId, Owed)>>,
    /// Owed actions running now, one task per group of bridges that share
    /// a target.
    acting: Vec<acting::ActionGroup>,
    starting: bool,
    /// A large sync finished: its memory goes back to the system once no
    /// sync or action holds any of it ([`crate::host::heap`]).
    give_back_due: bool,
    watchdog: Option<(Duration, Instant)>,
    hotplug: hotplug::Hotplug,
    /// `hostbridge wait` requests not answered yet.
    waiters: Vec<waiting::Waiter>,
    /// Bridges whose startup actions ran without their `verify`, which
    /// runs once READY is out.
    verify_later: Vec<(BridgeId, Owed)>,
    verified_tx: mpsc::UnboundedSender<(BridgeId, SyncReport)>,
    verified_rx: mpsc::UnboundedReceiver<(BridgeId, SyncReport)>,
}

/// Runs the daemon until SIGTERM or SIGINT.
pub(crate) async fn run(config: Config) -> Result<()> {
    let (listener, _bound) = socket::bind(&config.status_socket, config.status_group.as_deref())
        .with_context(|| {
            format!(
                "binding the status socket {}",
                config.status_socket.display()
            )
        })?;
    let (req_tx, mut requests) = mpsc::channel(16);
    let server = tokio::spawn(socket::serve(listener, req_tx));
    let mut d = Daemon::new(config);
    d.start();
    let result = d.serve(&mut requests).await;
    server.abort();
    result
    // `_bound` drops here: the socket file is removed.
}

impl Daemon {
    fn new(config: Config) -> Daemon {
        let (events_tx, events) = mpsc::channel(1024);
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let (actions_tx, actions_rx) = mpsc::unbounded_channel();
        let (verified_tx, verified_rx) = mpsc::unbounded_channel();
        Daemon {
            verify_later: Vec::new(),
            verified_tx,
            verified_rx,
            owed: Vec::new(),
            actions_tx,
            actions_rx,
            acting: Vec::new(),
            config: Arc::new(config),
            config_loaded_at: unix_now(),
            started_at: unix_now(),
            reload_error: None,
            bridges: Vec::new(),
            next_id: 0,
            events_tx,
            events,
            done_tx,
            done_rx,
            starting: true,
            give_back_due: false,
            watchdog: notify::watchdog_interval().map(|i| (i, Instant::now() + i)),
            hotplug: hotplug::Hotplug::new(),
            waiters: Vec::new(),
        }
    }

    /// Places every watch, then reconciles every bridge once. Watches come
    /// first so that nothing written during the startup sync is missed.
    fn start(&mut self) {
        info!(
            "hostbridge {} starting: {} from {}",
            env!("CARGO_PKG_VERSION"),
            crate::core::text::plural(self.config.bridges.len(), "bridge"),
            self.config.path.display()
        );
        self.setup_hotplug();
        for b in self.config.bridges.clone() {
            self.add_bridge(b);
        }
        if self.bridges.is_empty() {
            self.ready();
        }
    }

    /// Creates a bridge's watch and reader and starts its first sync.
    fn add_bridge(&mut self, b: Bridge) {
        let id = self.next_id;
        self.next_id += 1;
        for w in crate::sync::source_warnings(&b) {
            warn!("{}: {w}", b.name);
        }
        // A bridge whose instance cannot be made now is still listed, synced
        // and retried (rewatch says why in its status).
        let watch = self.open_watch(id, &b).unwrap_or(Watch::Down);
        let status = status::Bridge {
            name: b.name.clone(),
            source: b.source.display().to_string(),
            destination: b.install_to.display().to_string(),
            watching: String::new(),
            source_seen: false,
            health: Health::Healthy,
            reason: None,
            last_sync: None,
            last_success_at: None,
            pending: None,
            syncing: None,
            counters: status::Counters::default(),
            usb: None,
            replug: None,
            cert: None,
        };
        self.bridges.push(BridgeRt {
            id,
            settle: Settle::new(b.settle),
            bridge: b,
            watch,
            retry: Retry::default(),
            open_recheck: OpenRecheck::default(),
            batch: None,
            sync: SyncState::Idle,
            status,
            usb: UsbChecks::default(),
            source_identity: None,
            grace: PruneGrace::default(),
            syncs_started: 0,
            replug: Default::default(),
            replug_task: None,
        });
        let now = Instant::now();
        self.rewatch(id, now);
        if let Some(rt) = self.find(id) {
            rt.settle.begin_sync();
        }
        self.spawn_sync(
            id,
            SyncOptions {
                clean_temps: true,
                ..SyncOptions::default()
            },
        );
    }

    fn find(&mut self, id: BridgeId) -> Option<&mut BridgeRt> {
        self.bridges.iter_mut().find(|b| b.id == id)
    }

    async fn serve(&mut self, requests: &mut mpsc::Receiver<Request>) -> Result<()> {
        let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
        let mut hup = signal(SignalKind::hangup()).context("installing SIGHUP handler")?;
        loop {
            let deadline = self.next_deadline();
            let sleep = async {
                match deadline {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some(ev) = self.events.recv() => self.on_events(ev),
                Some((id, res)) = self.done_rx.recv() => self.on_sync_done(id, res),
                Some(done) = self.actions_rx.recv() => self.on_actions_done(done),
                Some(req) = requests.recv() => self.on_request(req),
                res = hotplug::ready(self.hotplug.monitor.as_mut()) => self.on_hotplug(res),
                Some(done) = self.hotplug.done_rx.recv() => self.on_usb_checked(done),
                Some(done) = self.hotplug.replug_rx.recv() => self.on_replug_done(done),
                Some(done) = self.verified_rx.recv() => self.on_verified(done),
                () = sleep => self.on_timer(),
                _ = term.recv() => { info!("SIGTERM: shutting down"); break; }
                _ = int.recv() => { info!("SIGINT: shutting down"); break; }
                _ = hup.recv() => { let _ = self.reload("SIGHUP"); }
            }
            self.give_back_if_due();
            self.answer_waiters();
        }
        self.shutdown().await;
        Ok(())
    }

    /// An event, and those queued behind it (a bounded number: a burst is
    /// taken in batches, not one turn of the loop an event).
    fn on_events(&mut self, first: Delivery) {
        self.on_event(first);
        for _ in 0..EVENT_BATCH {
            match self.events.try_recv() {
                Ok(ev) => self.on_event(ev),
                Err(_) => break,
            }
        }
    }

    /// After a large sync, once nothing holds its data (no sync running,
    /// no actions owed or running: the manifests and reports they keep are
    /// dropped), hands its memory back ([`crate::host::heap`]).
    fn give_back_if_due(&mut self) {
        if self.give_back_due
            && self.running() == 0
            && self.owed.is_empty()
            && self.acting.is_empty()
        {
            self.give_back_due = false;
            crate::host::heap::give_back();
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let bridges = self.bridges.iter().flat_map(|b| {
            [
                b.settle.deadline(),
                b.retry.deadline(),
                b.open_recheck.deadline(),
                b.grace.deadline(b.bridge.prune_grace),
                b.replug.deadline(),
            ]
        });
        bridges.chain([self.watchdog.map(|w| w.1)]).flatten().min()
    }

    fn on_timer(&mut self) {
        let now = Instant::now();
        if let Some((interval, at)) = self.watchdog
            && at <= now
        {
            notify::watchdog();
            self.watchdog = Some((interval, now + interval));
        }
        let ids: Vec<BridgeId> = self.bridges.iter().map(|b| b.id).collect();
        for id in ids {
            let Some(b) = self.find(id) else { continue };
            if b.retry.take_due(now) {
                self.rewatch(id, now);
                self.observe(id, now, Input::Rescan);
            }
            let Some(b) = self.find(id) else { continue };
            if let Some(names) = b.open_recheck.take_due(now) {
                info!(
                    "{}: looking again at {} file(s) held open for writing",
                    b.bridge.name,
                    names.len()
                );
                for name in names {
                    self.observe(id, now, Input::Change(name));
                }
            }
            let Some(b) = self.find(id) else { continue };
            if b.grace.take_due(now, b.bridge.prune_grace) {
                info!(
                    "{}: the recreated source dir stayed empty for prune_grace ({}); pruning",
                    b.bridge.name,
                    humantime::format_duration(b.bridge.prune_grace)
                );
                self.observe(id, now, Input::Rescan);
            }
            self.run_due_replug(id, now);
            let Some(b) = self.find(id) else { continue };
            if let Some(batch) = b.settle.poll(now) {
                // The watch saw every change of the window, unless it
                // asked for a rescan (an overflow, a replaced watch, a
                // reload, a retry): then everything is read.
                let scope = if batch.rescan {
                    Scope::Full
                } else {
                    Scope::Changed(batch.changed.clone())
                };
                let opts = SyncOptions {
                    still_open: batch.still_open.clone(),
                    quiet_for: Some(b.bridge.settle.quiet),
                    scope,
                    ..SyncOptions::default()
                };
                b.batch = Some(batch);
                self.spawn_sync(id, opts);
            }
        }
    }

    fn spawn_sync(&mut self, id: BridgeId, mut opts: SyncOptions) {
        let config = Arc::clone(&self.config);
        let done = self.done_tx.clone();
        let Some(b) = self.find(id) else { return };
        let bridge = b.bridge.clone();
        // Taken before the sync reads anything: what happens after it holds
        // the files it touched (core::fresh).
        opts.guard = b.watch.feed().map(|feed| Guard {
            mark: feed.mark(),
            feed: Arc::clone(feed),
        });
        opts.prune_gate = b.grace.gate(Instant::now(), b.bridge.prune_grace);
        let progress = Arc::new(Progress::default());
        opts.progress = Some(Arc::clone(&progress));
        b.syncs_started += 1;
        let task = tokio::spawn(async move {
            let res = sync_files_async(&config, &bridge, opts).await;
            let _ = done.send((id, res));
        });
        b.sync = SyncState::Running {
            task,
            told_dirty: false,
            since: unix_now(),
            progress,
        };
    }

    /// Syncs running now (derived, never counted by hand).
    fn running(&self) -> usize {
        self.bridges.iter().filter(|b| b.sync.is_running()).count()
    }

    fn on_sync_done(&mut self, id: BridgeId, res: Result<Synced>) {
        // A stopped bridge is gone (its completion may still have been
        // queued): then nothing below finds it.
        if let Some(b) = self.find(id) {
            b.sync.files_done();
        }
        if let Some(b) = self.find(id) {
            // The bridge stays "syncing" until its actions ran: events
            // meanwhile mark it dirty and open a window once it is done.
            match res {
                Ok((report, Some(manifest))) if manifest.actions_pending && b.bridge.acts() => {
                    let bridge = b.bridge.clone();
                    // A newer sync of the same bridge replaces an owed one.
                    self.owed.retain(|(o, _)| *o != id);
                    self.owed.push((
                        id,
                        Owed {
                            bridge,
                            report,
                            manifest,
                            since: Instant::now(),
                        },
                    ));
                }
                Ok((report, _)) => self.finish(id, Ok(report)),
                Err(e) => self.finish(id, Err(e)),
            }
        }
        self.run_owed_actions();
        self.ready_if_reconciled();
    }

    /// Logs a completed sync (files and actions) and records it in the status.
    fn finish(&mut self, id: BridgeId, res: Result<SyncReport>) {
        self.give_back_due |= res.as_ref().is_ok_and(|r| r.source_files >= LARGE_SYNC);
        // Events our own trigger caused are queued by now (udevd sends them
        // before `udevadm settle` returns): take them while still syncing.
        self.drain_hotplug();
        let Some(b) = self.find(id) else { return };
        b.sync = SyncState::Idle;
        if b.settle.finish_sync(Instant::now()) {
            debug!(
                "{}: new window opened for changes made during the sync",
                b.bridge.name
            );
        }
        let trigger = trigger(b.batch.take().as_ref());
        // A sync that could not put its files in place (ENOSPC, EROFS, EIO,
        // EMFILE, …) or read one (EIO, EACCES from a FUSE source) is tried
        // again with backoff, not left until the next event; a failing
        // action alone is not (it is retried with the next change, and a
        // permanent one must not loop), nor a refusal (it stays until the
        // container changes the file, which is an event).
        let files_failed = match &res {
            Ok(r) => r.needs_retry(),
            Err(_) => true,
        };
        if let Some(wait) = b.retry.after_sync(files_failed, Instant::now()) {
            warn!(
                "{}: sync failed {} time(s) in a row; trying again in {}",
                b.bridge.name,
                b.retry.failures(),
                humantime::format_duration(wait)
            );
        }
        let recheck = match &res {
            Ok(report) => report.recheck.clone(),
            Err(_) => Vec::new(),
        };
        if let Ok(report) = &res {
            b.open_recheck.after_sync(&report.held_open, Instant::now());
        }
        // The sync's usb-check: the one before it, and its own.
        let mut checked = None;
        match res {
            Ok(report) => {
                b.grace.synced(report.source_files > 0, report.prune_held);
                b.status.source_seen |= report.source_present;
                log_report(&report, &trigger);
                let usb = report.actions.iter().find_map(|a| a.usb.clone());
                if let Some(after) = &usb
                    && !b
                        .status
                        .usb
                        .as_ref()
                        .is_some_and(|old| after.older_than(old))
                {
                    checked = Some((b.status.usb.clone(), after.clone()));
                }
                b.status.record(report.to_status(&trigger, unix_now()), usb);
                if !report.failed() || report.served.is_some() {
                    b.status
                        .note_cert(report.cert.clone(), report.served.clone());
                }
            }
            Err(e) => {
                error!("{}: sync failed: {e:#}", b.bridge.name);
                let failed = status::Sync::failed_with(unix_now(), trigger, format!("{e:#}"));
                b.status.record(failed, None);
            }
        }
        if matches!(&b.watch, Watch::Live { watch, .. } if watch.replaced()) {
            warn!(
                "{}: the source path {} names another dir than the one watched (renamed away?); watching it anew",
                b.bridge.name,
                b.bridge.source.display()
            );
            let now = Instant::now();
            b.source_identity = None;
            self.rewatch(id, now);
            self.observe(id, now, Input::Rescan);
        }
        let now = Instant::now();
        for input in recheck {
            self.observe(id, now, input);
        }
        if let Some((before, after)) = checked {
            self.note_arrivals(id, before.as_ref(), &after);
        }
        if !self.starting {
            notify::status(&self.status_line());
        }
        self.write_metrics();
        self.run_owed_usb_check(id);
    }

    fn on_request(&mut self, req: Request) {
        let answer = match req.what {
            Wire::Wait { bridge } => return self.on_wait(&bridge, req.reply),
            Wire::Status => serde_json::to_string(&self.snapshot()).unwrap_or_default(),
            Wire::Reload => match self.reload("reload request") {
                Ok(()) => r#"{"ok":true}"#.to_string(),
                Err(e) => serde_json::json!({"ok": false, "error": e}).to_string(),
            },
        };
        let _ = req.reply.send(answer);
    }
}
