//! One bridge's inotify instance and its reading. Host layer.
//!
//! The events are read from the kernel by whoever needs them now: the
//! reader task when the descriptor turns readable, and a sync right before
//! it installs (the barrier of [`crate::core::fresh`]: every event the
//! kernel queued until then is read and counted, so a file written during
//! the sync is known to be). Both read under one lock into one queue; the
//! reader task alone forwards that queue, in kernel order, to the daemon,
//! which interprets each event ([`super::watch`]).
//!
//! Everything is bounded: the channel to the daemon (the reader waits for
//! room, and while it waits the kernel's own queue fills and at its limit
//! says `IN_Q_OVERFLOW`, which makes the bridge rescan), the queue between
//! the two readers, each read burst, and the names [`Seen`] tracks (only
//! names the bridge syncs, at most [`crate::core::fresh::TRACKED`]).

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, Mutex, MutexGuard};

use inotify::{EventMask, EventOwned, Inotify, Watches};
use tokio::io::unix::AsyncFd;
use tokio::sync::Notify;
use tokio::sync::mpsc::Sender;

use crate::core::fresh::{Hold, Mark, Seen};
use crate::core::names::{NameVerdict, classify};
use crate::core::settle::Input;

/// What a feed hands the daemon: the bridge id and an event, or the read
/// error that ended the feed.
pub(crate) type Delivery = (u64, io::Result<EventOwned>);

/// Events read from the kernel and not yet forwarded, at most; past it
/// nothing more is read (the kernel queue holds the rest).
const QUEUED_MAX: usize = 16 * 1024;
/// Buffers the reader task reads in one turn before it forwards and yields.
const READS_PER_TURN: usize = 8;
/// How long the reader task lets events gather before it reads again, once
/// they come in a stream and a read has emptied the kernel's queue. A
/// writer making many files keeps the queue readable without pause: read
/// at once, that is a wakeup for every file or two (9,000 for a burst of
/// 10,000 files, a quarter of the daemon's CPU). Paused, a burst is read
/// in batches of hundreds. A read that stopped at its bound with more
/// queued is followed by the next at once, so the pause never caps how
/// fast the queue is read (which would let a fast writer overflow it).
/// Events that come during a pause are seen up to this much later (plus
/// the timer's tick), which moves a settle window's end by as much; the
/// barrier before an install reads every event regardless.
const GATHER: std::time::Duration = std::time::Duration::from_millis(1);
/// Events read in one stream (each read within twice [`GATHER`] of the
/// one before) before the reader starts pausing. One file written makes
/// two or three, so a single change is always read as it comes.
const STREAM: usize = 64;

/// A bridge's inotify instance.
pub(crate) struct Feed {
    id: u64,
    inner: Mutex<Inner>,
    /// Rings when a barrier queued events (the kernel then has none left to
    /// wake the reader with).
    queued: Notify,
    /// Pauses the reader made (`GATHER`), for the tests to see one was.
    #[cfg(test)]
    pauses: std::sync::atomic::AtomicUsize,
}

struct Inner {
    inotify: Inotify,
    buf: Vec<u8>,
    seen: Seen,
    include: Vec<String>,
    queue: VecDeque<EventOwned>,
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Feed({})", self.id)
    }
}

/// How a read of the kernel queue ended.
enum Drained {
    /// The kernel had nothing more (`EAGAIN`).
    Empty,
    /// It stopped at its bound; more may wait.
    Bounded,
}

impl Feed {
    /// A fresh inotify instance for bridge `id`, whose synced names match
    /// `include`, and the handle to place its watches with.
    pub(crate) fn new(id: u64, include: &[String]) -> io::Result<(Arc<Feed>, Watches)> {
        let inotify = super::watch::new_instance()?;
        let watches = inotify.watches();
        let feed = Feed {
            id,
            inner: Mutex::new(Inner {
                inotify,
                buf: vec![0; 16 * 1024],
                seen: Seen::default(),
                include: include.to_vec(),
                queue: VecDeque::new(),
            }),
            queued: Notify::new(),
            #[cfg(test)]
            pauses: std::sync::atomic::AtomicUsize::new(0),
        };
        Ok((Arc::new(feed), watches))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding it left plain counters behind: still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The mark of a sync starting now ([`Seen::mark`]).
    pub(crate) fn mark(&self) -> Mark {
        self.lock().seen.mark()
    }

    /// The barrier: reads every event queued now, then says which of
    /// `names` the sync that took `mark` must hold. A read error, or more
    /// events than can be queued, holds everything (nothing can be proven).
    pub(crate) fn holds<'a>(
        &self,
        mark: Mark,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Vec<(String, Hold)> {
        let mut inner = self.lock();
        let before = inner.queue.len();
        match inner.drain(usize::MAX) {
            Ok(Drained::Empty) => {}
            Ok(Drained::Bounded) | Err(_) => inner.seen.record(&Input::Rescan),
        }
        if inner.queue.len() > before {
            self.queued.notify_one();
        }
        names
            .into_iter()
            .filter_map(|n| inner.seen.hold(mark, n).map(|h| (n.to_string(), h)))
            .collect()
    }

    /// The reader task: forwards the queue to `tx` (waiting for room),
    /// reads the kernel whenever the descriptor is readable, until a read
    /// fails; that error is delivered, and the task ends.
    pub(crate) async fn read(self: Arc<Self>, tx: Sender<Delivery>) {
        let e = match self.read_until_error(&tx).await {
            Ok(()) => return, // the daemon is gone
            Err(e) => e,
        };
        let _ = tx.send((self.id, Err(e))).await;
    }

    async fn read_until_error(&self, tx: &Sender<Delivery>) -> io::Result<()> {
        let fd: OwnedFd = self.lock().inotify.as_fd().try_clone_to_owned()?;
        let mut ready = register(fd)?;
        let mut stream = Stream::default();
        loop {
            // Forward everything queued, in order; this task is the only
            // one that forwards, so the order is the kernel's.
            loop {
                let Ok(permit) = tx.reserve().await else {
                    return Ok(());
                };
                match self.lock().queue.pop_front() {
                    Some(ev) => permit.send((self.id, Ok(ev))),
                    None => break,
                }
            }
            if stream.flowing() {
                // Out of the reactor while events gather: registered, each
                // event the kernel queues would wake the thread again.
                let fd = ready.into_inner();
                #[cfg(test)]
                self.pauses
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(GATHER).await;
                ready = register(fd)?;
                stream.paused(std::time::Instant::now());
                continue;
            }
            tokio::select! {
                guard = ready.readable() => {
                    let mut guard = guard?;
                    let mut read = 0;
                    // `WouldBlock` (the kernel queue is empty) clears the
                    // readiness; a bounded turn leaves it set.
                    let turn = guard.try_io(|_| {
                        let mut inner = self.lock();
                        let before = inner.queue.len();
                        let drained = inner.drain(READS_PER_TURN);
                        read = inner.queue.len() - before;
                        match drained? {
                            Drained::Empty => Err(io::ErrorKind::WouldBlock.into()),
                            Drained::Bounded => Ok(()),
                        }
                    });
                    let emptied = match turn {
                        Ok(Err(e)) => return Err(e),
                        Ok(Ok(())) => false,
                        Err(_would_block) => true,
                    };
                    stream.read(std::time::Instant::now(), read, emptied);
                }
                () = self.queued.notified() => {}
            }
            tokio::task::yield_now().await;
        }
    }
}

/// Registers the inotify descriptor with the reactor.
fn register(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // Deprecated for types whose descriptor can be closed behind the
    // registration (tokio #8587); an `OwnedFd` moved in cannot, and the
    // replacement is `unsafe`, which this crate forbids.
    #[allow(deprecated)]
    AsyncFd::new(fd)
}

/// Whether events come in a stream, so the reader should let them gather
/// ([`GATHER`], [`STREAM`]).
#[derive(Debug, Default)]
struct Stream {
    /// Events read since the stream began.
    events: usize,
    /// When the last read ended, or a pause.
    last: Option<std::time::Instant>,
    /// A read since the last pause made it long enough.
    flowing: bool,
}

impl Stream {
    /// `n` events were read at `now`, and the read `emptied` the kernel's
    /// queue (or stopped at its bound with more to read).
    fn read(&mut self, now: std::time::Instant, n: usize, emptied: bool) {
        let near = self
            .last
            .is_some_and(|t| now.saturating_duration_since(t) <= GATHER * 2);
        self.events = if near { self.events + n } else { n };
        self.last = Some(now);
        self.flowing = emptied && n > 0 && self.events >= STREAM;
    }

    /// Whether to pause before the next read.
    fn flowing(&self) -> bool {
        self.flowing
    }

    /// A pause ended at `now`: the next read says whether the stream goes
    /// on.
    fn paused(&mut self, now: std::time::Instant) {
        self.last = Some(now);
        self.flowing = false;
    }
}

impl Inner {
    /// Reads events into the queue, recording each in [`Seen`], until the
    /// kernel has none (`Empty`), or `max_reads` buffers were read or the
    /// queue is full (`Bounded`).
    fn drain(&mut self, max_reads: usize) -> io::Result<Drained> {
        for _ in 0..max_reads {
            if self.queue.len() >= QUEUED_MAX {
                return Ok(Drained::Bounded);
            }
            let Inner {
                inotify,
                buf,
                seen,
                include,
                queue,
            } = self;
            let events = match inotify.read_events(buf) {
                Ok(events) => events,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Drained::Empty),
                Err(e) => return Err(e),
            };
            for ev in events {
                if let Some(input) = input_of(&ev, include) {
                    seen.record(&input);
                }
                queue.push_back(ev.to_owned());
            }
        }
        Ok(Drained::Bounded)
    }
}

/// What an event says about a name the bridge syncs, for [`Seen`]
/// (conservatively: every event without a name, the watched dir itself
/// changing, counts as a loss). Names the bridge never syncs (hidden,
/// not included) are not tracked.
fn input_of(ev: &inotify::Event<&std::ffi::OsStr>, include: &[String]) -> Option<Input> {
    if ev.mask.contains(EventMask::Q_OVERFLOW) {
        return Some(Input::Rescan);
    }
    let Some(name) = ev.name else {
        let self_events = EventMask::IGNORED
            | EventMask::DELETE_SELF
            | EventMask::MOVE_SELF
            | EventMask::UNMOUNT
            | EventMask::ATTRIB;
        return ev.mask.intersects(self_events).then_some(Input::Rescan);
    };
    if classify(name.as_bytes(), include) != NameVerdict::Candidate {
        return None;
    }
    let name = name.to_string_lossy().into_owned();
    // A file just created (by an open for writing) is empty until its
    // writer writes, and may stay so for a while: it counts as open until
    // its close, like a file being written. (A hard link, created with no
    // open, stays held until its next event; it is refused anyway.)
    let created = ev.mask.contains(EventMask::CREATE) && !ev.mask.contains(EventMask::ISDIR);
    Some(if created || ev.mask.contains(EventMask::MODIFY) {
        Input::Write(name)
    } else if ev.mask.contains(EventMask::CLOSE_WRITE) {
        Input::Close(name)
    } else if ev.mask.contains(EventMask::ATTRIB) {
        // Mode, owner, times or links: the content is what was read.
        return None;
    } else {
        Input::Change(name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// A read that stopped at its bound (a full turn of buffers).
    const BOUNDED: usize = 3000;

    /// Reads at the given offsets (ms) of the given counts, each emptying
    /// the queue unless its count is [`BOUNDED`]; whether the reader
    /// pauses after each.
    fn run(reads: &[(u64, usize)]) -> Vec<bool> {
        let t0 = Instant::now();
        let mut s = Stream::default();
        reads
            .iter()
            .map(|&(ms, n)| {
                let now = t0 + Duration::from_millis(ms);
                s.read(now, n, n != BOUNDED);
                let pause = s.flowing();
                if pause {
                    s.paused(now + GATHER);
                }
                pause
            })
            .collect()
    }

    #[test]
    fn a_stream_of_events_is_read_in_batches_and_a_single_change_at_once() {
        type Case = (&'static str, &'static [(u64, usize)], &'static [bool]);
        let cases: &[Case] = &[
            ("one file written", &[(0, 1), (0, 2)], &[false, false]),
            (
                "files a second apart",
                &[(0, 3), (1000, 3), (2000, 3)],
                &[false, false, false],
            ),
            (
                "a burst reaches the stream",
                &[(0, 30), (0, 30), (0, 4)],
                &[false, false, true],
            ),
            ("one read of a full buffer", &[(0, 400)], &[true]),
            (
                "it goes on after a pause",
                &[(0, 64), (1, 200), (2, 200)],
                &[true, true, true],
            ),
            ("a quiet spell ends it", &[(0, 64), (50, 3)], &[true, false]),
            (
                "an empty read ends the pauses",
                &[(0, 64), (1, 0)],
                &[true, false],
            ),
            (
                "a read that left more queued is followed at once",
                &[(0, 64), (1, BOUNDED), (1, BOUNDED), (1, 100)],
                &[true, false, false, true],
            ),
        ];
        for (what, reads, want) in cases {
            assert_eq!(run(reads), *want, "{what}");
        }
    }

    /// The reader on a real inotify instance: a stream of events queued
    /// before it starts, with names long enough that reading them takes
    /// several bounded turns, is delivered in full and with a single pause
    /// (after the turn that emptied the queue, none after the bounded
    /// ones, which would slow the draining); an event that comes while it
    /// pauses or after reaches it too (the descriptor registered again
    /// sees what the kernel queued meanwhile).
    #[test]
    fn every_event_of_a_stream_is_delivered_and_the_one_after_its_pause_too() {
        use inotify::WatchMask;
        const FILES: usize = 3000;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        let (feed, mut watches) = Feed::new(1, &["*.rules".to_string()]).unwrap();
        watches
            .add(&d, WatchMask::CLOSE_WRITE | WatchMask::ONLYDIR)
            .unwrap();
        for i in 0..FILES {
            // 196 bytes: 224 an event, 73 a 16 KiB buffer, 5 full turns.
            std::fs::write(d.join(format!("{i:0>190}.rules")), "x").unwrap();
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (tx, mut rx) = tokio::sync::mpsc::channel(64);
            let reader = tokio::spawn(Arc::clone(&feed).read(tx));
            let next = async |rx: &mut tokio::sync::mpsc::Receiver<Delivery>| {
                let got = tokio::time::timeout(Duration::from_secs(60), rx.recv()).await;
                let (_, ev) = got.expect("an event within 60 s").expect("the reader runs");
                let ev = ev.expect("no read error");
                assert!(
                    !ev.mask.contains(EventMask::Q_OVERFLOW),
                    "the queue overflowed"
                );
                ev.name.expect("a name").to_string_lossy().into_owned()
            };
            let mut names = std::collections::BTreeSet::new();
            while names.len() < FILES {
                names.insert(next(&mut rx).await);
            }
            assert!(names.iter().all(|n| n.ends_with(".rules")));
            let pauses = || feed.pauses.load(std::sync::atomic::Ordering::Relaxed);
            assert!(pauses() <= 1, "{} pauses while draining", pauses());
            // The last turn ended in a pause; this comes during or after it.
            std::fs::write(d.join("last.rules"), "x").unwrap();
            assert_eq!(next(&mut rx).await, "last.rules");
            assert!(pauses() >= 1, "the stream made the reader pause");
            reader.abort();
        });
    }
}
