//! Listens to udevd's monitor for USB devices, so the daemon can re-check a
//! device when it is plugged in, changed or removed. Host layer: opens the
//! netlink socket through libudev and turns events into `core::usb::UsbEvent`.
//!
//! udevd re-broadcasts each kernel event on its own netlink group after it
//! has applied its rules, so an event seen here means the node already has
//! the group and mode the rules give it. Without udevd nothing arrives on
//! that group; its `control` socket tells whether it runs.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{getsockopt, sockopt};
use tokio::sync::mpsc;

use crate::core::usb::{UsbEvent, product_id};

/// Why hotplug cannot work, if udevd does not run: none of the sockets
/// udevd listens on in `run_dir` is there: `control` (`/run/udev/control`,
/// `udevadm control`'s), or the varlink one newer systemd adds
/// (`io.systemd.Udev`; `io.systemd.udev` in systemd 255-256). Links are
/// followed: where a socket lives is udevd's business.
pub(crate) fn udevd_missing(run_dir: &Path) -> Option<String> {
    let sockets = ["control", "io.systemd.Udev", "io.systemd.udev"];
    let found = sockets.iter().any(|s| {
        run_dir
            .join(s)
            .metadata()
            .is_ok_and(|m| m.file_type().is_socket())
    });
    if found {
        return None;
    }
    let control = run_dir.join("control");
    Some(match control.symlink_metadata() {
        Ok(_) => format!(
            "udevd is not running ({} is not a socket, and neither is {})",
            control.display(),
            run_dir.join(sockets[1]).display()
        ),
        Err(_) => format!("udevd is not running (no {})", control.display()),
    })
}

/// A running monitor: a thread waits on udevd's netlink socket and passes
/// events on, so the daemon's loop needs no unsafe fd registration. The
/// daemon can also take queued events at once ([`Monitor::drain_now`]).
pub(crate) struct Monitor {
    sock: Arc<Mutex<udev::MonitorSocket>>,
    rx: mpsc::UnboundedReceiver<Result<UsbEvent, String>>,
    /// The thread's error, once taken off the channel behind events.
    failed: Option<String>,
}

impl Monitor {
    /// Opens a monitor for USB devices (devtype `usb_device`, not their
    /// interfaces) on udevd's netlink group, and starts its thread.
    pub(crate) fn open(run_dir: &Path) -> Result<Monitor, String> {
        if let Some(why) = udevd_missing(run_dir) {
            return Err(why);
        }
        let sock = udev::MonitorBuilder::new()
            .and_then(|b| b.match_subsystem_devtype("usb", "usb_device"))
            .and_then(udev::MonitorBuilder::listen)
            .map_err(|e| format!("cannot listen to udev events: {e}"))?;
        // The thread polls a duplicate of the socket's fd (the same open
        // socket) and reads through the shared monitor under the lock.
        // libudev objects are not thread-safe (non-atomic refcounts): every
        // call on the monitor and the devices it yields happens under that
        // lock, which is what makes the udev crate's `send` feature sound.
        let fd = sock
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| format!("cannot listen to udev events: {e}"))?;
        let sock = Arc::new(Mutex::new(sock));
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::clone(&sock);
        std::thread::Builder::new()
            .name("udev-monitor".into())
            .spawn(move || listen(&fd, &shared, &tx))
            .map_err(|e| format!("cannot start the udev monitor thread: {e}"))?;
        Ok(Monitor {
            sock,
            rx,
            failed: None,
        })
    }

    /// The next events, or an error after which the monitor is dead.
    pub(crate) async fn recv(&mut self) -> Result<Vec<UsbEvent>, String> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let first = self
            .rx
            .recv()
            .await
            .unwrap_or_else(|| Err("the udev monitor thread ended".into()))?;
        let mut events = vec![first];
        self.take_queued(&mut events);
        Ok(events)
    }

    /// Every event received so far, without waiting: those the thread
    /// passed on and those still in the socket. The thread sends under the
    /// lock, so once we hold it nothing received is in flight.
    pub(crate) fn drain_now(&mut self) -> Vec<UsbEvent> {
        let shared = Arc::clone(&self.sock);
        let Ok(sock) = shared.lock() else {
            return Vec::new();
        };
        let mut events = Vec::new();
        self.take_queued(&mut events);
        events.extend(drain(&sock));
        events
    }

    /// Moves the events the thread has queued into `events`. The thread's
    /// error (its last word) is kept for the next [`Monitor::recv`], after
    /// the events received before it.
    fn take_queued(&mut self, events: &mut Vec<UsbEvent>) {
        while let Ok(next) = self.rx.try_recv() {
            match next {
                Ok(ev) => events.push(ev),
                Err(e) => self.failed = Some(e),
            }
        }
    }
}

/// The monitor thread: waits for the socket to become readable, then
/// reads and passes on every event. Idle is a blocked `poll`, no timer.
fn listen(
    fd: &OwnedFd,
    sock: &Mutex<udev::MonitorSocket>,
    tx: &mpsc::UnboundedSender<Result<UsbEvent, String>>,
) {
    loop {
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(Errno::EINTR) => continue,
            Err(e) => {
                let _ = tx.send(Err(format!("waiting for udev events: {e}")));
                return;
            }
            Ok(_) => {}
        }
        let revents = fds[0].revents().unwrap_or(PollFlags::empty());
        if revents.intersects(PollFlags::POLLNVAL | PollFlags::POLLHUP) {
            let _ = tx.send(Err("the udev monitor socket failed".into()));
            return;
        }
        if revents.contains(PollFlags::POLLERR) {
            // Reading the pending error clears it. ENOBUFS: the receive
            // buffer overflowed and events were dropped, which a burst of
            // plug-ins can cause; the socket itself is fine.
            match getsockopt(fd, sockopt::SocketError) {
                Ok(e) if e == Errno::ENOBUFS as i32 => {
                    if tx.send(Ok(UsbEvent::lost())).is_err() {
                        return;
                    }
                }
                Ok(0) => {}
                Ok(e) => {
                    let e = Errno::from_raw(e);
                    let _ = tx.send(Err(format!("the udev monitor socket failed: {e}")));
                    return;
                }
                Err(e) => {
                    let _ = tx.send(Err(format!("the udev monitor socket failed: {e}")));
                    return;
                }
            }
        }
        let Ok(sock) = sock.lock() else { return };
        for ev in drain(&sock) {
            if tx.send(Ok(ev)).is_err() {
                return; // the daemon dropped the monitor
            }
        }
    }
}

/// Reads every queued event; returns when none is left (the socket is
/// non-blocking and libudev skips messages that fail the filter). If the
/// read that ended it failed with ENOBUFS, the receive buffer overflowed
/// meanwhile: [`UsbEvent::lost`] comes last.
fn drain(sock: &udev::MonitorSocket) -> Vec<UsbEvent> {
    Errno::clear();
    let mut events: Vec<UsbEvent> = sock.iter().filter_map(|ev| to_event(&ev)).collect();
    // libudev returns NULL with errno set (EAGAIN when the queue is empty).
    if Errno::last() == Errno::ENOBUFS {
        events.push(UsbEvent::lost());
    }
    events
}

fn to_event(ev: &udev::Event) -> Option<UsbEvent> {
    let prop = |k: &str| ev.property_value(k).and_then(|v| v.to_str());
    Some(UsbEvent {
        action: prop("ACTION")?.to_string(),
        busnum: prop("BUSNUM")?.parse().ok()?,
        devnum: prop("DEVNUM")?.parse().ok()?,
        id: prop("PRODUCT").and_then(product_id),
        synthetic: prop("SYNTH_UUID").is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udevd_is_found_by_its_control_socket_or_the_varlink_one_it_links_to() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path();
        assert!(udevd_missing(run).unwrap().contains("no "));
        // systemd 262 (Debian sid, VM tests): `control` is a link to the
        // varlink socket.
        let _sock = std::os::unix::net::UnixListener::bind(run.join("io.systemd.Udev")).unwrap();
        std::os::unix::fs::symlink(run.join("io.systemd.Udev"), run.join("control")).unwrap();
        assert_eq!(udevd_missing(run), None);
        // Older systemd: `control` is the socket itself.
        let old = tempfile::tempdir().unwrap();
        let _ctl = std::os::unix::net::UnixListener::bind(old.path().join("control")).unwrap();
        assert_eq!(udevd_missing(old.path()), None);
        // A plain file is no udevd.
        let none = tempfile::tempdir().unwrap();
        std::fs::write(none.path().join("control"), "").unwrap();
        assert!(
            udevd_missing(none.path())
                .unwrap()
                .contains("is not a socket")
        );
    }
}
