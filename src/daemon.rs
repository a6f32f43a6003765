//! The daemon loop: one `tokio::select!` over inotify events, sync
//! completions, the next settle deadline and signals. Each branch calls one
//! method. Syncs run as tasks so events keep flowing while files are written
//! and actions run; the settle machine marks such events dirty.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures_util::StreamExt;
use inotify::EventOwned;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use crate::config::{Bridge, Config};
use crate::core::settle::{Batch, Input, Settle};
use crate::host::watch::{self, Meaning, SourceWatch, Watching};
use crate::sync::{SyncOptions, SyncReport, sync_bridge};

/// How long to wait before retrying a watch that could not be added.
const WATCH_RETRY: Duration = Duration::from_secs(5);
/// How long shutdown waits for in-flight syncs.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

enum Msg {
    Event(usize, EventOwned),
    ReadFailed(usize, std::io::Error),
}

struct BridgeRt {
    bridge: Bridge,
    settle: Settle,
    watch: SourceWatch,
    /// Retry time after a failed watch; the only timer outside a window.
    retry_at: Option<Instant>,
    /// The window that started the running sync (for the log line).
    batch: Option<Batch>,
    /// Whether "changed during sync" was already logged for this sync.
    told_dirty: bool,
    reader: tokio::task::JoinHandle<()>,
}

/// The running daemon.
pub struct Daemon {
    config: Arc<Config>,
    bridges: Vec<BridgeRt>,
    events: mpsc::Receiver<Msg>,
    done_tx: mpsc::UnboundedSender<(usize, Result<SyncReport>)>,
    done_rx: mpsc::UnboundedReceiver<(usize, Result<SyncReport>)>,
    running: usize,
    starting: bool,
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(config: Config) -> Result<()> {
    let mut d = Daemon::new(config)?;
    d.start();
    d.serve().await
}

impl Daemon {
    fn new(config: Config) -> Result<Daemon> {
        let (tx, events) = mpsc::channel(1024);
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let mut bridges = Vec::new();
        for (i, b) in config.bridges.iter().enumerate() {
            let inotify = watch::new_instance().context("creating inotify instance")?;
            let stream = inotify
                .into_event_stream([0u8; 8192])
                .context("registering inotify with the runtime")?;
            let watch = SourceWatch::new(&b.source, &b.include, stream.watches());
            let reader = tokio::spawn(read_events(i, stream, tx.clone()));
            bridges.push(BridgeRt {
                bridge: b.clone(),
                settle: Settle::new(b.settle),
                watch,
                retry_at: None,
                batch: None,
                told_dirty: false,
                reader,
            });
        }
        Ok(Daemon {
            config: Arc::new(config),
            bridges,
            events,
            done_tx,
            done_rx,
            running: 0,
            starting: true,
        })
    }

    /// Places every watch, then reconciles every bridge once. Watches come
    /// first so that nothing written during the startup sync is missed.
    fn start(&mut self) {
        info!(
            "hostbridge {} starting: {} bridges from {}",
            env!("CARGO_PKG_VERSION"),
            self.bridges.len(),
            self.config.path.display()
        );
        for i in 0..self.bridges.len() {
            self.rewatch(i, Instant::now());
            self.bridges[i].settle.begin_sync();
            self.spawn_sync(
                i,
                SyncOptions {
                    clean_temps: true,
                    ..SyncOptions::default()
                },
            );
        }
        if self.bridges.is_empty() {
            self.ready();
        }
    }

    async fn serve(&mut self) -> Result<()> {
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
                Some(msg) = self.events.recv() => self.on_message(msg),
                Some((i, res)) = self.done_rx.recv() => self.on_sync_done(i, res),
                () = sleep => self.on_timer(),
                _ = term.recv() => { info!("SIGTERM: shutting down"); break; }
                _ = int.recv() => { info!("SIGINT: shutting down"); break; }
                _ = hup.recv() => warn!("SIGHUP: config reload is not supported yet; restart hostbridge to apply config changes"),
            }
        }
        self.shutdown().await;
        Ok(())
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.bridges
            .iter()
            .flat_map(|b| [b.settle.deadline(), b.retry_at])
            .flatten()
            .min()
    }

    fn on_message(&mut self, msg: Msg) {
        let now = Instant::now();
        match msg {
            Msg::Event(i, ev) => {
                let meaning = self.bridges[i].watch.interpret(&ev);
                match meaning {
                    Meaning::Settle(input) => self.observe(i, now, input),
                    Meaning::Rewatch => {
                        self.rewatch(i, now);
                        self.observe(i, now, Input::Rescan);
                    }
                    Meaning::Overflow => {
                        warn!(
                            "{}: inotify queue overflowed (fs.inotify.max_queued_events); events were lost, rescanning the source",
                            self.bridges[i].bridge.name
                        );
                        self.rewatch(i, now);
                        self.observe(i, now, Input::Rescan);
                    }
                    Meaning::Ignore => {}
                }
            }
            Msg::ReadFailed(i, e) => {
                error!(
                    "{}: reading inotify events failed: {e}; retrying the watch",
                    self.bridges[i].bridge.name
                );
                self.bridges[i].retry_at = Some(now + WATCH_RETRY);
            }
        }
    }

    fn observe(&mut self, i: usize, now: Instant, input: Input) {
        let b = &mut self.bridges[i];
        if b.settle.is_syncing() && !b.told_dirty {
            b.told_dirty = true;
            info!(
                "{}: change during sync ({}); syncing again when it ends",
                b.bridge.name,
                describe(&input)
            );
        }
        debug!("event: {input:?}");
        b.settle.observe(now, input);
    }

    /// Re-places the watch of bridge `i`; on failure, schedules a retry.
    fn rewatch(&mut self, i: usize, now: Instant) {
        let b = &mut self.bridges[i];
        let name = &b.bridge.name;
        match b.watch.resolve() {
            Ok(Watching::Source) => debug!("watching {}", b.bridge.source.display()),
            Ok(Watching::Ancestor { dir, next }) => info!(
                "{name}: source {} does not exist yet; watching {} for {:?} to appear",
                b.bridge.source.display(),
                dir.display(),
                next
            ),
            Ok(Watching::Nothing) => {}
            Err(e) => {
                error!("{name}: {e}; retrying in {}s", WATCH_RETRY.as_secs());
                b.retry_at = Some(now + WATCH_RETRY);
            }
        }
    }

    fn on_timer(&mut self) {
        let now = Instant::now();
        for i in 0..self.bridges.len() {
            if self.bridges[i].retry_at.is_some_and(|t| t <= now) {
                self.bridges[i].retry_at = None;
                self.rewatch(i, now);
                self.observe(i, now, Input::Rescan);
            }
            if let Some(batch) = self.bridges[i].settle.poll(now) {
                let opts = SyncOptions {
                    still_open: batch.still_open.clone(),
                    ..SyncOptions::default()
                };
                self.bridges[i].batch = Some(batch);
                self.spawn_sync(i, opts);
            }
        }
    }

    fn spawn_sync(&mut self, i: usize, opts: SyncOptions) {
        let config = Arc::clone(&self.config);
        let bridge = self.bridges[i].bridge.clone();
        let done = self.done_tx.clone();
        self.bridges[i].told_dirty = false;
        self.running += 1;
        tokio::spawn(async move {
            let res = sync_bridge(&config, &bridge, opts).await;
            let _ = done.send((i, res));
        });
    }

    fn on_sync_done(&mut self, i: usize, res: Result<SyncReport>) {
        self.running -= 1;
        let now = Instant::now();
        let b = &mut self.bridges[i];
        let batch = b.batch.take();
        match res {
            Ok(report) => log_report(&report, batch.as_ref()),
            Err(e) => error!("{}: sync failed: {e:#}", b.bridge.name),
        }
        if b.settle.finish_sync(now) {
            debug!("new window opened for changes made during the sync");
        }
        if self.starting && self.running == 0 {
            self.ready();
        }
    }

    fn ready(&mut self) {
        self.starting = false;
        info!(
            "ready: {} bridges reconciled, waiting for changes",
            self.bridges.len()
        );
    }

    async fn shutdown(&mut self) {
        for b in &self.bridges {
            b.reader.abort();
        }
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        while self.running > 0 {
            match tokio::time::timeout_at(deadline, self.done_rx.recv()).await {
                Ok(Some((i, res))) => self.on_sync_done(i, res),
                _ => {
                    warn!(
                        "{} syncs still running at shutdown; exiting anyway",
                        self.running
                    );
                    break;
                }
            }
        }
        info!("stopped");
    }
}

fn describe(input: &Input) -> String {
    match input {
        Input::Write(n) | Input::Close(n) | Input::Change(n) => n.clone(),
        Input::Rescan => "rescan".into(),
    }
}

async fn read_events(
    i: usize,
    mut stream: inotify::EventStream<[u8; 8192]>,
    tx: mpsc::Sender<Msg>,
) {
    while let Some(ev) = stream.next().await {
        let msg = match ev {
            Ok(ev) => Msg::Event(i, ev),
            Err(e) => {
                let _ = tx.send(Msg::ReadFailed(i, e)).await;
                return;
            }
        };
        if tx.send(msg).await.is_err() {
            return;
        }
    }
}

/// Logs one line per decision, then one per finding.
fn log_report(r: &SyncReport, batch: Option<&Batch>) {
    let name = &r.bridge;
    let why = match batch {
        Some(b) if b.forced => format!("forced by max_wait after {} ms", b.waited.as_millis()),
        Some(b) => format!("settled after {} ms", b.waited.as_millis()),
        None => "startup reconcile".into(),
    };
    if r.changed() {
        info!(
            "{name}: {why}, {} files changed: {}",
            r.change_count(),
            r.summary()
        );
    } else {
        info!("{name}: {why}: {}", r.summary());
    }
    if !r.source_present {
        warn!("{name}: source dir is missing; installed files are kept until it returns");
    }
    for n in &r.notes {
        warn!("{name}: {n}");
    }
    for f in &r.cleaned {
        info!("{name}: removed stale temp file {f} left by an earlier run");
    }
    for (f, finding) in &r.findings {
        let line = finding.render(f);
        match finding.severity {
            crate::core::rules::Severity::Error => error!("{name}: {line}"),
            crate::core::rules::Severity::Warning => warn!("{name}: {line}"),
        }
    }
    for (f, why) in &r.skipped {
        warn!("{name}: skipped {f}: {why}");
    }
    for (f, why) in &r.conflicts {
        warn!("{name}: not touching {f}: {why}");
    }
    for e in &r.errors {
        error!("{name}: {e}");
    }
    for a in &r.actions {
        match &a.result {
            Ok(out) if out.is_empty() => info!("{name}: {} ok", a.action),
            Ok(out) => info!("{name}: {} ok: {out}", a.action),
            Err(e) => error!(
                "{name}: {} failed (retried on the next sync): {e}",
                a.action
            ),
        }
    }
}
