//! `hostbridge status` and `hostbridge reload`: clients of the daemon's
//! status socket. Shell code: one request, then printing and exit codes.
//!
//! Exit codes follow the LSB `status` convention: 0 healthy, 1 degraded,
//! 3 not running (no socket, or nobody answering), 4 unknown error.

use std::io::ErrorKind;
use std::path::Path;

use super::args::StatusFormat;
use crate::core::status::{self, Health, Status};
use crate::host::clock::unix_now as now;
use crate::host::socket::{self, Wire};

/// Healthy.
pub(crate) const STATUS_OK: u8 = 0;
/// Degraded (or failed).
pub(crate) const STATUS_DEGRADED: u8 = 1;
/// Not running.
pub(crate) const STATUS_NOT_RUNNING: u8 = 3;
/// Anything else went wrong.
pub(crate) const STATUS_UNKNOWN: u8 = 4;

/// Says the daemon closed the connection unanswered (all its slots for
/// unprivileged clients were taken).
fn busy(sock: &Path) -> u8 {
    eprintln!(
        "hostbridge: {} closed the connection unanswered: the daemon is busy with other status clients (at most 32 at a time; root is always answered); try again",
        sock.display()
    );
    STATUS_UNKNOWN
}

/// Asks the daemon `what` on `sock` for the command `cmd`; on failure, says
/// why and gives the exit code: 3 not running, 4 the answer could not be
/// read (permission denied, busy, any other error).
fn ask(cmd: &str, sock: &Path, what: &Wire) -> Result<String, u8> {
    match socket::query(sock, what) {
        Ok(t) if t.is_empty() => Err(busy(sock)),
        Ok(t) => Ok(t),
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused) => {
            eprintln!(
                "hostbridge is not running (no answer on {}: {e})",
                sock.display()
            );
            Err(STATUS_NOT_RUNNING)
        }
        Err(e) if e.kind() == ErrorKind::PermissionDenied => {
            eprintln!(
                "hostbridge {cmd}: permission denied on {}: run it as root, or as a member of the config's status_group",
                sock.display()
            );
            Err(STATUS_UNKNOWN)
        }
        Err(e) if matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset) => {
            Err(busy(sock))
        }
        Err(e) => {
            eprintln!("hostbridge {cmd}: asking {}: {e}", sock.display());
            Err(STATUS_UNKNOWN)
        }
    }
}

/// Asks the daemon for its status and prints it.
pub(crate) fn status(sock: &Path, format: StatusFormat, bridge: Option<&str>) -> u8 {
    let text = match ask("status", sock, &Wire::Status) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let mut st: Status = match serde_json::from_str(&text) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "hostbridge status: unexpected answer from {}: {e}",
                sock.display()
            );
            return STATUS_UNKNOWN;
        }
    };
    let known: Vec<String> = st.bridges.iter().map(|b| b.name.clone()).collect();
    if let Some(name) = bridge
        && !st.narrow(name)
    {
        eprintln!(
            "hostbridge status: no bridge named {name:?}; the daemon runs {}",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        );
        return super::args::EXIT_USAGE;
    }
    st.assess(now());
    match format {
        StatusFormat::Text => print!("{}", status::render(&st, now())),
        StatusFormat::Json => println!("{}", serde_json::to_string_pretty(&st).unwrap_or_default()),
        StatusFormat::Metrics => print!("{}", status::metrics(&st)),
    }
    match st.daemon.health {
        Health::Healthy => STATUS_OK,
        Health::Degraded | Health::Failed => STATUS_DEGRADED,
    }
}

/// Asks the daemon to reload its config.
pub(crate) fn reload(sock: &Path) -> u8 {
    let text = match ask("reload", sock, &Wire::Reload) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let answer: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    if answer["ok"] == true {
        println!("config reloaded");
        STATUS_OK
    } else {
        eprintln!(
            "reload failed, the daemon keeps its running config: {}",
            answer["error"].as_str().unwrap_or(&text)
        );
        STATUS_DEGRADED
    }
}
