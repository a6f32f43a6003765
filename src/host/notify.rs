//! systemd notifications (sd_notify): READY, STATUS, RELOADING, STOPPING and
//! WATCHDOG. Host layer. Notifications never fail the daemon: errors are
//! logged at debug level, and without `NOTIFY_SOCKET` nothing is sent.

use std::time::Duration;

use sd_notify::NotifyState;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!("sd_notify failed: {e}");
    }
}

/// Startup (or a reload) is complete.
pub(crate) fn ready(status: &str) {
    let status = one_line(status);
    send(&[NotifyState::Ready, NotifyState::Status(&status)]);
}

/// A new human status line for `systemctl status`.
pub(crate) fn status(line: &str) {
    let line = one_line(line);
    send(&[NotifyState::Status(&line)]);
}

/// A notification is `KEY=value` lines: a newline in the status text would
/// start an assignment of its own (`MAINPID=`, `READY=1`), so none gets in.
fn one_line(s: &str) -> std::borrow::Cow<'_, str> {
    crate::core::text::escape(s)
}

/// A reload begins (followed by [`ready`] when it ends).
pub(crate) fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(e) => tracing::debug!("reading the monotonic clock for RELOADING=1 failed: {e}"),
    }
}

/// Shutdown begins.
pub(crate) fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// The loop is alive.
pub(crate) fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// How often to ping the watchdog (half its timeout), if systemd set one.
pub(crate) fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|d| d / 2)
}
