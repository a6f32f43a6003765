//! Child processes start without the service manager's variables. Host
//! layer.
//!
//! Under systemd the daemon has `NOTIFY_SOCKET` and the watchdog variables in
//! its environment; a child that inherits them (udevadm, systemctl, an `exec`
//! action's script calling `systemd-notify`) could speak for hostbridge, and
//! systemd logs "Got notification message from PID …, but reception only
//! permitted for main PID" for every try.
//!
//! Every child hostbridge waits on with a timeout leads a process group of
//! its own, and a child that overruns is killed with its whole group: a
//! shell action's background `sleep` (or a script's helpers) must not
//! outlive the timeout that killed the shell.

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Variables of the service manager that children must not see.
const SERVICE_ONLY: [&str; 3] = ["NOTIFY_SOCKET", "WATCHDOG_PID", "WATCHDOG_USEC"];

/// `Command::new(program)` without the service-only variables.
pub(crate) fn command(program: impl AsRef<OsStr>) -> std::process::Command {
    let mut cmd = std::process::Command::new(program);
    for v in SERVICE_ONLY {
        cmd.env_remove(v);
    }
    cmd
}

/// Set when the daemon stops: every child still waited on is killed, so
/// shutdown is bounded whatever a child is stuck in.
static STOPPING: AtomicBool = AtomicBool::new(false);

/// Kills the children [`output_within`] waits on, now and from now on (the
/// daemon is stopping).
pub(crate) fn stop_all() {
    STOPPING.store(true, Ordering::SeqCst);
}

/// Whether [`stop_all`] was called.
pub(crate) fn stopping() -> bool {
    STOPPING.load(Ordering::SeqCst)
}

/// Runs `cmd` to completion with its output captured (stdin from
/// /dev/null), or kills it once `timeout` has passed: a hung child (a
/// `udevadm verify` stuck in an NSS lookup) must not hold a sync, and with
/// it the state lock, for ever. The child leads its own process group,
/// and the timeout (or [`stop_all`]) kills the whole group
/// ([`kill_group`]); the deadline covers the child's pipes too, so a
/// grandchild holding them open cannot stall it either. For blocking
/// contexts (a sync's thread); the wait polls, from 1 ms up to 50 ms
/// apart, only while a child runs.
pub(crate) fn output_within(
    mut cmd: std::process::Command,
    timeout: Duration,
) -> std::io::Result<Output> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()?;
    // Pipes are drained on their own threads, so a chatty child never
    // blocks on a full pipe while we wait for it.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    let status = loop {
        // Reaped only once its pipes are closed: a grandchild that keeps
        // them open is still under the deadline, and until the child is
        // reaped its group can be killed.
        if out.is_finished()
            && err.is_finished()
            && let Some(status) = child.try_wait()?
        {
            break status;
        }
        let why = if stopping() {
            Some((
                std::io::ErrorKind::Interrupted,
                "hostbridge is stopping; killed".to_string(),
            ))
        } else if Instant::now() >= deadline {
            Some((
                std::io::ErrorKind::TimedOut,
                format!(
                    "did not finish within {}; killed",
                    humantime::format_duration(timeout)
                ),
            ))
        } else {
            None
        };
        if let Some((kind, message)) = why {
            // Killed before it is reaped: the pid, and with it the group's
            // id, cannot have been reused.
            kill_group(child.id());
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::new(kind, message));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    };
    Ok(Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

/// Most bytes of one output stream (stdout or stderr) of an action's child
/// kept in memory: the first 32 KiB. The rest is read and counted, not
/// kept, so the child never blocks on a full pipe and a child that writes
/// without end costs 32 KiB, not its output (500 MB of stderr once took
/// 517 MB of the daemon's memory).
pub(crate) const CAPTURE_CAP: usize = 32 * 1024;

/// The head of one output stream of a child, and how long it was.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Capture {
    /// The first bytes, at most [`CAPTURE_CAP`].
    pub(crate) head: Vec<u8>,
    /// Every byte the stream carried.
    pub(crate) total: u64,
}

impl Capture {
    /// Counts `chunk`, keeping what still fits under the cap.
    pub(crate) fn push(&mut self, chunk: &[u8]) {
        let room = CAPTURE_CAP.saturating_sub(self.head.len());
        self.head.extend_from_slice(&chunk[..chunk.len().min(room)]);
        self.total += chunk.len() as u64;
    }
}

/// Reads a child's pipe to its end in 16 KiB steps, keeping its first
/// [`CAPTURE_CAP`] bytes.
pub(crate) async fn capture(pipe: Option<impl tokio::io::AsyncRead + Unpin>) -> Capture {
    use tokio::io::AsyncReadExt;
    let mut c = Capture::default();
    let Some(mut pipe) = pipe else {
        return c;
    };
    let mut buf = vec![0; 16 * 1024];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => c.push(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    c
}

/// Sends SIGKILL to the process group that the child `pid` leads (it was
/// spawned with `process_group(0)`), so its children die with it. Call it
/// only while the child is not yet reaped: until then its pid, and so the
/// group id, cannot name anyone else.
pub(crate) fn kill_group(pid: u32) {
    // Never 0 or negative: killpg(0) would be hostbridge's own group.
    if let Ok(pgid) = i32::try_from(pid)
        && pgid > 0
    {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pgid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn children_do_not_see_the_notify_socket() {
        let cmd = super::command("true");
        let removed: Vec<_> = cmd
            .get_envs()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        assert_eq!(removed, ["NOTIFY_SOCKET", "WATCHDOG_PID", "WATCHDOG_USEC"]);
    }

    #[test]
    fn a_child_past_its_timeout_is_killed_and_reported() {
        use std::time::{Duration, Instant};
        let started = Instant::now();
        let mut cmd = super::command("sleep");
        cmd.arg("600");
        let e = super::output_within(cmd, Duration::from_millis(200)).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
        assert!(e.to_string().contains("killed"), "{e}");
        // Far below the child's own 600 s: it was killed, not waited for.
        assert!(started.elapsed() < Duration::from_secs(120));
    }

    #[test]
    fn a_child_past_its_timeout_is_killed_with_its_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("grandchild.pid");
        let mut cmd = super::command("sh");
        cmd.arg("-c").arg(format!(
            "sleep 1000 & echo $! > {}; wait",
            pidfile.display()
        ));
        let e = super::output_within(cmd, std::time::Duration::from_secs(2)).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
        let pid = std::fs::read_to_string(&pidfile)
            .expect("the shell wrote its grandchild's pid within 2 s");
        let stat = format!("/proc/{}/stat", pid.trim());
        let start = std::time::Instant::now();
        // Gone, or a zombie nobody reaped yet: dead all the same.
        while std::fs::read_to_string(&stat).is_ok_and(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, r)| !r.starts_with(" Z"))
        }) {
            assert!(
                start.elapsed().as_secs() < 60,
                "grandchild {pid} still runs"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    #[test]
    fn a_child_within_its_timeout_gives_its_output() {
        let mut cmd = super::command("sh");
        cmd.args(["-c", "echo out; echo err >&2; exit 3"]);
        let o = super::output_within(cmd, std::time::Duration::from_secs(60)).unwrap();
        assert_eq!(o.status.code(), Some(3));
        assert_eq!(o.stdout, b"out\n");
        assert_eq!(o.stderr, b"err\n");
    }
}
