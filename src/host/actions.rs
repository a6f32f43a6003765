//! Runs a bridge's `then:` actions as child processes. Host layer.
//!
//! One small function per external command: build the argv, run it with a
//! timeout, and turn a non-zero exit into an error that carries the
//! command's stderr. Every child leads its own process group: one that
//! overruns is killed with everything it started.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use std::path::PathBuf;

use super::child::{Capture, capture};
use super::targets;
use crate::config::{Action, Target, Trigger};

/// Timeout for commands that have no timeout of their own.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Timeout for `systemctl try-restart` and `reload`, which wait for the
/// unit's job: a container's start (an image pull, an `ExecStartPre=`
/// that runs `hostbridge wait`) can take longer than a minute. The unit's
/// own `TimeoutStartSec=` (the example NUT quadlet's: 900 s) ends a hung
/// start first; this is a last resort past it.
const UNIT_TIMEOUT: Duration = Duration::from_secs(1200);

/// The result of one action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ActionOutcome {
    /// The action's label (`udev-reload`, …).
    pub(crate) action: &'static str,
    /// `Ok(output)` (stdout and stderr, trimmed, possibly empty) or the
    /// error, including stderr.
    pub(crate) result: Result<String, String>,
    /// The structured result of a `usb-check` action.
    pub(crate) usb: Option<crate::core::status::Usb>,
}

/// What actions need to know about the host and the sync.
#[derive(Debug, Clone)]
pub(crate) struct ActionCtx {
    /// `udevadm` binary.
    pub(crate) udevadm: PathBuf,
    /// `systemctl` binary.
    pub(crate) systemctl: PathBuf,
    /// `podman` binary.
    pub(crate) podman: PathBuf,
    /// The proc filesystem.
    pub(crate) proc_root: PathBuf,
    /// The bridge's name (`HOSTBRIDGE_BRIDGE` for exec).
    pub(crate) bridge: String,
    /// Changed file names (`HOSTBRIDGE_CHANGED` for exec, space-separated).
    pub(crate) changed: Vec<String>,
    /// Where exec's `HOSTBRIDGE_CHANGED_FILE` is written (root's own dir
    /// under `state_dir`).
    pub(crate) changed_dir: PathBuf,
    /// For a `usb-check`'s `on_replug` actions, the devices that arrived
    /// ("051d:0002 at 003:004"; `HOSTBRIDGE_REPLUGGED` for exec, joined
    /// by ", "); empty otherwise.
    pub(crate) replugged: Vec<String>,
}

/// Runs one action. The `usb-check` action is not a host command: `act`
/// runs it (it reads the installed rules and the state dir too), so here it
/// is an error.
pub(crate) async fn run(action: &Action, ctx: &ActionCtx) -> ActionOutcome {
    ActionOutcome {
        action: action.label(),
        result: run_one(action, ctx).await,
        usb: None,
    }
}

async fn run_one(action: &Action, ctx: &ActionCtx) -> Result<String, String> {
    let udevadm = ctx.udevadm.as_path();
    match action {
        Action::UdevReload => {
            run_command(
                udevadm,
                &["control".into(), "--reload".into()],
                COMMAND_TIMEOUT,
            )
            .await
        }
        Action::UdevTrigger(t) => {
            let triggered = run_command(udevadm, &trigger_args(t), COMMAND_TIMEOUT).await?;
            let secs = t.settle_timeout.as_secs().max(1);
            let settle = ["settle".to_string(), format!("--timeout={secs}")];
            let settled =
                run_command(udevadm, &settle, t.settle_timeout + Duration::from_secs(5)).await?;
            Ok(join_output(&triggered, &settled))
        }
        Action::Signal { target, signal } => signal_target(target, signal, ctx).await,
        Action::RestartUnit(u) => {
            run_command(
                &ctx.systemctl,
                &["try-restart".into(), u.clone()],
                UNIT_TIMEOUT,
            )
            .await
        }
        Action::ReloadUnit(u) => {
            run_command(&ctx.systemctl, &["reload".into(), u.clone()], UNIT_TIMEOUT).await
        }
        Action::Exec { argv, timeout } => exec(argv, *timeout, ctx).await,
        Action::Http(h) => http(h).await,
        Action::HaproxyCert {
            socket,
            cert,
            timeout,
        } => {
            let (socket, cert, bound) = (socket.clone(), cert.clone(), *timeout);
            // Three commands at most (set, commit, abort), each bounded.
            let run = tokio::task::spawn_blocking(move || {
                super::haproxy::update_cert(&socket, &cert, bound)
            });
            match tokio::time::timeout(3 * bound + Duration::from_secs(1), run).await {
                Ok(done) => done.unwrap_or_else(|e| Err(e.to_string())),
                Err(_) => Err(format!(
                    "timed out after {}",
                    humantime::format_duration(3 * bound)
                )),
            }
        }
        Action::UsbCheck { .. } => {
            Err("usb-check is run by act::usb, not as a host command".into())
        }
    }
}

async fn signal_target(target: &Target, signal: &str, ctx: &ActionCtx) -> Result<String, String> {
    let short = signal.trim_start_matches("SIG");
    match target {
        Target::Pidfile { path, process } => signal_pidfile(path, process, signal, ctx),
        Target::Process(name) => signal_process(name, signal, ctx),
        Target::Unit(u) => {
            run_command(
                &ctx.systemctl,
                &[
                    "kill".into(),
                    "--kill-whom=main".into(),
                    format!("--signal={signal}"),
                    u.clone(),
                ],
                COMMAND_TIMEOUT,
            )
            .await
        }
        Target::Container(c) => {
            run_command(
                &ctx.podman,
                &["kill".into(), "--signal".into(), short.into(), c.clone()],
                COMMAND_TIMEOUT,
            )
            .await
        }
    }
}

/// The process a pid file names, only if it is alive and has the expected
/// name.
fn signal_pidfile(
    path: &std::path::Path,
    process: &str,
    signal: &str,
    ctx: &ActionCtx,
) -> Result<String, String> {
    let pid = targets::read_pidfile(path)?;
    if !targets::alive(&ctx.proc_root, pid) {
        return Err(format!("pid {pid} from {} is not running", path.display()));
    }
    if !targets::is_named(&ctx.proc_root, pid, process) {
        let (comm, _) = targets::names(&ctx.proc_root, pid);
        return Err(format!(
            "pid {pid} from {} is {:?}, not {process:?} (stale pid file?); not signalling it",
            path.display(),
            comm.unwrap_or_default()
        ));
    }
    targets::send(pid, signal)?;
    Ok(format!("sent {signal} to pid {pid}"))
}

/// Every process of that name: a short-lived namesake that is gone by now
/// (ESRCH) must not keep the signal from the others.
fn signal_process(name: &str, signal: &str, ctx: &ActionCtx) -> Result<String, String> {
    let pids = targets::find_by_name(&ctx.proc_root, name);
    if pids.is_empty() {
        return Err(format!("no process named {name:?} is running"));
    }
    let mut sent = Vec::new();
    let mut failed = Vec::new();
    for pid in &pids {
        match targets::send(*pid, signal) {
            Ok(()) => sent.push(*pid),
            Err(targets::SendError::Gone) => {}
            Err(e) => failed.push(e.to_string()),
        }
    }
    if let Some(e) = failed.first() {
        return Err(format!("{e} (sent to pids {sent:?})"));
    }
    if sent.is_empty() {
        return Err(format!("no process named {name:?} is running any more"));
    }
    Ok(format!("sent {signal} to {name} (pids {sent:?})"))
}

/// Runs `argv` without a shell, with the changed files in the environment.
async fn exec(argv: &[String], timeout: Duration, ctx: &ActionCtx) -> Result<String, String> {
    let Some((program, args)) = argv.split_first() else {
        return Err("exec needs argv".into());
    };
    // The whole list in a file, one name a line; the variable is bounded,
    // since past 128 KiB one variable makes execve fail (E2BIG) and the
    // action would never run after a large burst.
    let list = ChangedFile::write(&ctx.changed_dir, &ctx.changed).map_err(|e| {
        format!(
            "writing the changed-file list in {}: {e}",
            ctx.changed_dir.display()
        )
    })?;
    let mut cmd = Command::from(super::child::command(program));
    cmd.args(args)
        .env("HOSTBRIDGE_BRIDGE", &ctx.bridge)
        .env(
            "HOSTBRIDGE_CHANGED",
            crate::core::act::changed_env(&ctx.changed, crate::core::act::CHANGED_ENV_MAX),
        )
        .env("HOSTBRIDGE_CHANGED_FILE", &list.0);
    if !ctx.replugged.is_empty() {
        cmd.env("HOSTBRIDGE_REPLUGGED", ctx.replugged.join(", "));
    }
    output_of(cmd, &argv.join(" "), timeout).await
}

/// The file `HOSTBRIDGE_CHANGED_FILE` names, removed when dropped (after
/// the action ended).
struct ChangedFile(PathBuf);

impl ChangedFile {
    /// Writes `names`, one a line, to a new file (0600, never an existing
    /// one) in `dir` (created 0700).
    fn write(dir: &Path, names: &[String]) -> std::io::Result<ChangedFile> {
        use std::io::Write as _;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = dir.join(format!("{}-{n}", std::process::id()));
        let mut f = std::fs::File::options()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&path)?;
        let file = ChangedFile(path);
        let mut text = names.join("\n");
        if !names.is_empty() {
            text.push('\n');
        }
        f.write_all(text.as_bytes())?;
        Ok(file)
    }
}

impl Drop for ChangedFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `udevadm trigger` arguments for a trigger action (pure).
pub(crate) fn trigger_args(t: &Trigger) -> Vec<String> {
    let mut args = vec!["trigger".to_string(), format!("--action={}", t.action)];
    if let Some(s) = &t.subsystem {
        args.push(format!("--subsystem-match={s}"));
    }
    for (k, v) in &t.attrs {
        args.push(format!("--attr-match={k}={v}"));
    }
    args
}

fn join_output(a: &str, b: &str) -> String {
    [a, b]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" / ")
}

/// Most bytes of one output stream shown in a log line and the status.
const OUTPUT_EXCERPT: usize = 500;

/// What a log line and the status show of one output stream (pure): its
/// first [`OUTPUT_EXCERPT`] bytes with the white space around them
/// trimmed, never split inside a UTF-8 sequence, then `… N bytes cut` when
/// the stream carried more than that (N counts every byte of the stream
/// not shown, those past the capture's cap,
/// [`CAPTURE_CAP`](super::child::CAPTURE_CAP), too).
fn excerpt(c: &Capture) -> String {
    let whole = c.head.trim_ascii();
    let mut shown = &whole[..whole.len().min(OUTPUT_EXCERPT)];
    if shown.len() < whole.len()
        && let Err(e) = std::str::from_utf8(shown)
        && e.error_len().is_none()
    {
        shown = &shown[..e.valid_up_to()];
    }
    if shown.len() == whole.len() && c.total == c.head.len() as u64 {
        return String::from_utf8_lossy(shown).into_owned();
    }
    let shown = shown.trim_ascii_end();
    let text = String::from_utf8_lossy(shown);
    let cut = c.total.saturating_sub(shown.len() as u64);
    if text.is_empty() {
        format!("… {cut} bytes cut")
    } else {
        format!("{text} … {cut} bytes cut")
    }
}

/// Runs `program args…` with no shell and no stdin, within `timeout`.
/// Returns its output (stdout, then stderr) or an error with its stderr.
pub(crate) async fn run_command(
    program: &Path,
    args: &[String],
    timeout: Duration,
) -> Result<String, String> {
    let shown = format!("{} {}", program.display(), args.join(" "));
    let mut cmd = Command::from(super::child::command(program));
    cmd.args(args);
    output_of(cmd, &shown, timeout).await
}

/// Runs a prepared command (no stdin, output captured: the first
/// [`CAPTURE_CAP`](super::child::CAPTURE_CAP) bytes of each stream are kept,
/// the rest drained and counted, see [`excerpt`]). The child leads a
/// process group of its own; once `timeout` has passed, the whole group is
/// killed (`SIGKILL` to the group) and the child reaped. The timeout covers
/// the output too: a grandchild that keeps the pipes open is killed with
/// the rest.
async fn output_of(mut cmd: Command, shown: &str, timeout: Duration) -> Result<String, String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    // Declared after the child, so dropped before it: a task aborted (the
    // daemon stopping) kills the whole group while the child is unreaped.
    let mut group = GroupKill(child.id());
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    // The child is reaped last, once its pipes are closed: until then its
    // pid, and so its group's id, cannot have been reused.
    let run = async {
        let (stdout, stderr) = tokio::join!(capture(stdout), capture(stderr));
        let status = child.wait().await?;
        group.0 = None; // reaped: its group id is free for reuse
        Ok::<_, std::io::Error>((status, stdout, stderr))
    };
    let done = tokio::time::timeout(timeout, run).await;
    let (status, stdout, stderr) = match done {
        Ok(r) => r.map_err(|e| format!("{shown}: {e}"))?,
        Err(_) => {
            if let Some(pgid) = group.0.take() {
                super::child::kill_group(pgid);
            }
            let _ = child.kill().await;
            return Err(format!(
                "{shown}: timed out after {}",
                humantime::format_duration(timeout)
            ));
        }
    };
    if status.success() {
        return Ok(join_output(&excerpt(&stdout), &excerpt(&stderr)));
    }
    Err(format!("{shown}: {status}: {}", excerpt(&stderr)))
}

/// Kills the process group it names when dropped, unless disarmed.
struct GroupKill(Option<u32>);

impl Drop for GroupKill {
    fn drop(&mut self) {
        if let Some(pgid) = self.0.take() {
            super::child::kill_group(pgid);
        }
    }
}

#[cfg(test)]
mod tests;

/// `http`: the request in a blocking task, bounded by its timeout; ok when
/// the status is the one expected.
async fn http(h: &crate::config::HttpAction) -> Result<String, String> {
    let what = match &h.socket {
        Some(s) => format!("{} {} via {}", h.method, h.url, s.display()),
        None => format!("{} {}", h.method, h.url),
    };
    let (url, socket, method, timeout) = (
        h.parsed.clone(),
        h.socket.clone(),
        h.method.clone(),
        h.timeout,
    );
    let call = tokio::task::spawn_blocking(move || {
        super::http::call(&url, socket.as_deref(), &method, timeout)
    });
    let answer = match tokio::time::timeout(timeout + Duration::from_secs(1), call).await {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "timed out after {}",
            humantime::format_duration(timeout)
        )),
    };
    match answer {
        Ok((code, _)) if code == h.expect_status => Ok(format!("{what}: HTTP {code}")),
        Ok((code, body)) if body.is_empty() => {
            Err(format!("{what}: HTTP {code}, expected {}", h.expect_status))
        }
        Ok((code, body)) => Err(format!(
            "{what}: HTTP {code}, expected {}: {body}",
            h.expect_status
        )),
        Err(e) => Err(format!("{what}: {e}")),
    }
}
