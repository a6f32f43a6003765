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

/// A bridge's inotify instance.
pub(crate) struct Feed {
    id: u64,
    inner: Mutex<Inner>,
    /// Rings when a barrier queued events (the kernel then has none left to
    /// wake the reader with).
    queued: Notify,
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
        // Deprecated for types whose descriptor can be closed behind the
        // registration (tokio #8587); an `OwnedFd` moved in cannot, and the
        // replacement is `unsafe`, which this crate forbids.
        #[allow(deprecated)]
        let ready = AsyncFd::new(fd)?;
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
            tokio::select! {
                guard = ready.readable() => {
                    let mut guard = guard?;
                    // `WouldBlock` (the kernel queue is empty) clears the
                    // readiness; a bounded turn leaves it set.
                    let turn = guard.try_io(|_| match self.lock().drain(READS_PER_TURN)? {
                        Drained::Empty => Err(io::ErrorKind::WouldBlock.into()),
                        Drained::Bounded => Ok(()),
                    });
                    if let Ok(Err(e)) = turn {
                        return Err(e);
                    }
                }
                () = self.queued.notified() => {}
            }
            tokio::task::yield_now().await;
        }
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
