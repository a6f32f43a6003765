//! Runs a bridge's `then:` actions as child processes. Host layer.
//!
//! One small function per external command: build the argv, run it with a
//! timeout (the child is killed if it overruns), and turn a non-zero exit into
//! an error that carries the command's stderr.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use crate::config::{Action, Trigger};

/// Timeout for commands that have no timeout of their own.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// The result of one action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionOutcome {
    /// The action's label (`udev-reload`, …).
    pub action: &'static str,
    /// `Ok(output)` (stdout and stderr, trimmed, possibly empty) or the
    /// error, including stderr.
    pub result: Result<String, String>,
}

/// Runs `actions` in order, stopping at the first failure.
pub async fn run_all(actions: &[Action], udevadm: &Path) -> Vec<ActionOutcome> {
    let mut out = Vec::new();
    for action in actions {
        let result = run_one(action, udevadm).await;
        let failed = result.is_err();
        out.push(ActionOutcome {
            action: action.label(),
            result,
        });
        if failed {
            break;
        }
    }
    out
}

async fn run_one(action: &Action, udevadm: &Path) -> Result<String, String> {
    match action {
        Action::UdevReload => {
            run(
                udevadm,
                &["control".into(), "--reload".into()],
                COMMAND_TIMEOUT,
            )
            .await
        }
        Action::UdevTrigger(t) => {
            let triggered = run(udevadm, &trigger_args(t), COMMAND_TIMEOUT).await?;
            let secs = t.settle_timeout.as_secs().max(1);
            let settle = ["settle".to_string(), format!("--timeout={secs}")];
            let settled = run(udevadm, &settle, t.settle_timeout + Duration::from_secs(5)).await?;
            Ok(join_output(&triggered, &settled))
        }
    }
}

/// `udevadm trigger` arguments for a trigger action (pure).
pub fn trigger_args(t: &Trigger) -> Vec<String> {
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

/// Longest excerpt of a command's output kept for logs.
const OUTPUT_EXCERPT: usize = 500;

fn excerpt(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .trim()
        .chars()
        .take(OUTPUT_EXCERPT)
        .collect()
}

/// Runs `program args…` with no shell and no stdin, within `timeout`.
/// Returns its output (stdout, then stderr) or an error with its stderr.
pub async fn run(program: &Path, args: &[String], timeout: Duration) -> Result<String, String> {
    let shown = format!("{} {}", program.display(), args.join(" "));
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(r) => r.map_err(|e| format!("{shown}: {e}"))?,
        Err(_) => {
            return Err(format!(
                "{shown}: timed out after {}",
                humantime::format_duration(timeout)
            ));
        }
    };
    if output.status.success() {
        return Ok(join_output(
            &excerpt(&output.stdout),
            &excerpt(&output.stderr),
        ));
    }
    Err(format!(
        "{shown}: {}: {}",
        output.status,
        excerpt(&output.stderr)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trigger_argv() {
        let t = Trigger {
            subsystem: Some("usb".into()),
            action: "change",
            attrs: vec![("idVendor".into(), "051d".into())],
            settle_timeout: Duration::from_secs(30),
        };
        assert_eq!(
            trigger_args(&t),
            [
                "trigger",
                "--action=change",
                "--subsystem-match=usb",
                "--attr-match=idVendor=051d"
            ]
        );
    }
}
