//! HAProxy's stats socket: one command per connection (its non-interactive
//! mode), the answer read until HAProxy closes. Host layer: the commands
//! and their judging are `core::haproxy`'s.

use std::path::Path;
use std::time::{Duration, Instant};

use super::http::{connect_unix, exchange};

use crate::core::haproxy::{
    abort_command, commit_command, commit_ok, payload, set_command, set_ok,
};

/// The most of an answer read.
const ANSWER_LIMIT: usize = 64 * 1024;
/// HAProxy's default `tune.bufsize`: its CLI reads a command with its
/// payload into one such buffer.
const HAPROXY_BUFSIZE: usize = 16384;
/// The most a PEM file may hold.
const PEM_LIMIT: u64 = 1 << 20;

/// Sends `cmd` on `socket` and returns HAProxy's answer, all within
/// `timeout`.
fn command(socket: &Path, cmd: &str, timeout: Duration) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    let mut s = connect_unix(socket, deadline)?;
    let answer = exchange(&mut s, cmd.as_bytes(), deadline, ANSWER_LIMIT)
        .map_err(|e| format!("{}: {e}", socket.display()))?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// Puts the PEM at `cert` (certificate, chain, key) into HAProxy's memory
/// under that same name, and commits it: the next handshakes use it, with
/// no reload.
pub(crate) fn update_cert(socket: &Path, cert: &Path, timeout: Duration) -> Result<String, String> {
    let name = cert
        .to_str()
        .ok_or_else(|| format!("{} is not UTF-8", cert.display()))?;
    let pem = read_pem(cert)?;
    let payload = payload(&pem).map_err(|e| format!("{}: {e}", cert.display()))?;
    let set = set_command(name, &payload);
    set_ok(&command(socket, &set, timeout)?).map_err(|e| {
        if set.len() > HAPROXY_BUFSIZE {
            format!(
                "{e} (the command is {} bytes: more than HAProxy's default tune.bufsize, {HAPROXY_BUFSIZE}, which must hold it whole)",
                set.len()
            )
        } else {
            e
        }
    })?;
    let committed = command(socket, &commit_command(name), timeout).and_then(|a| commit_ok(&a));
    if let Err(e) = committed {
        // Leave no open transaction behind for the next update.
        let _ = command(socket, &abort_command(name), timeout);
        return Err(e);
    }
    Ok(format!("{name} updated in HAProxy's memory and committed"))
}

/// The PEM as the destination holds it: through `..data` or a plain file,
/// never following a link a container could have put there.
fn read_pem(path: &Path) -> Result<Vec<u8>, String> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Err(format!("{} names no file", path.display()));
    };
    let dest = super::dest::DestDir::open(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    super::gendir::read_current(&dest, name, PEM_LIMIT)
        .map_err(|e| format!("{}: {e}", path.display()))
}
