//! One bridge's inotify instance and its reading. Host layer.
//!
//! The events are read by whoever needs them now: the reader task when the
//! descriptor turns readable, and a sync right before it installs (the
//! barrier of [`crate::core::fresh`]: every event the kernel queued until
//! then is read and counted, so a file written during the sync is known
//! to be). Both read under one lock and forward each event, in kernel
//! order, to the daemon, which interprets it ([`super::watch`]).

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};

use inotify::{EventMask, EventOwned, Inotify, Watches};
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc::UnboundedSender;

use crate::core::fresh::{Hold, Mark, Seen};
use crate::core::settle::Input;

/// What a feed hands the daemon: the bridge id and an event, or the read
/// error that ended the feed.
pub(crate) type Delivery = (u64, io::Result<EventOwned>);

/// A bridge's inotify instance.
pub(crate) struct Feed {
    id: u64,
    inner: Mutex<Inner>,
}

struct Inner {
    inotify: Inotify,
    buf: Vec<u8>,
    seen: Seen,
    tx: UnboundedSender<Delivery>,
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Feed({})", self.id)
    }
}

impl Feed {
    /// A fresh inotify instance for bridge `id`, delivering to `tx`, and the
    /// handle to place its watches with.
    pub(crate) fn new(id: u64, tx: UnboundedSender<Delivery>) -> io::Result<(Arc<Feed>, Watches)> {
        let inotify = super::watch::new_instance()?;
        let watches = inotify.watches();
        let feed = Feed {
            id,
            inner: Mutex::new(Inner {
                inotify,
                buf: vec![0; 16 * 1024],
                seen: Seen::default(),
                tx,
            }),
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
    /// `names` the sync that took `mark` must hold. A read error holds
    /// everything (nothing can be proven).
    pub(crate) fn holds<'a>(
        &self,
        mark: Mark,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Vec<(String, Hold)> {
        let mut inner = self.lock();
        match inner.drain(self.id) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => inner.seen.record(&Input::Rescan),
            Ok(()) => {}
        }
        names
            .into_iter()
            .filter_map(|n| inner.seen.hold(mark, n).map(|h| (n.to_string(), h)))
            .collect()
    }

    /// The reader task: reads whenever the descriptor is readable, until a
    /// read fails (that error is delivered, and the task ends).
    pub(crate) async fn read(self: Arc<Self>) {
        let res = self.read_until_error().await;
        let e = match res {
            Err(e) => e,
            Ok(()) => io::Error::other("the inotify reader stopped"),
        };
        let inner = self.lock();
        let _ = inner.tx.send((self.id, Err(e)));
    }

    async fn read_until_error(&self) -> io::Result<()> {
        let fd: OwnedFd = self.lock().inotify.as_fd().try_clone_to_owned()?;
        // Deprecated for types whose descriptor can be closed behind the
        // registration (tokio #8587); an `OwnedFd` moved in cannot, and the
        // replacement is `unsafe`, which this crate forbids.
        #[allow(deprecated)]
        let ready = AsyncFd::new(fd)?;
        loop {
            let mut guard = ready.readable().await?;
            // `WouldBlock` (the queue is empty) clears the readiness.
            match guard.try_io(|_| self.lock().drain(self.id)) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => {}
            }
        }
    }
}

impl Inner {
    /// Reads and forwards events until the queue is empty, which it says
    /// with `WouldBlock`.
    fn drain(&mut self, id: u64) -> io::Result<()> {
        loop {
            let Inner {
                inotify,
                buf,
                seen,
                tx,
            } = self;
            let events = inotify.read_events(buf)?;
            for ev in events {
                if let Some(input) = input_of(&ev) {
                    seen.record(&input);
                }
                // The daemon may be shutting down: nothing left to tell.
                let _ = tx.send((id, Ok(ev.to_owned())));
            }
        }
    }
}

/// What an event says about a name, for [`Seen`] (conservatively: names
/// from the ancestor watches are recorded too, and every event without a
/// name, the watched dir itself changing, counts as a loss).
fn input_of(ev: &inotify::Event<&std::ffi::OsStr>) -> Option<Input> {
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
    let name = name.to_string_lossy().into_owned();
    Some(if ev.mask.contains(EventMask::MODIFY) {
        Input::Write(name)
    } else if ev.mask.contains(EventMask::CLOSE_WRITE) {
        Input::Close(name)
    } else {
        Input::Change(name)
    })
}
