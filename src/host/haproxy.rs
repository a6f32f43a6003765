//! HAProxy's stats socket: one command per connection (its non-interactive
//! mode), the answer read until HAProxy closes. Host layer: the commands
//! and their judging are `core::haproxy`'s.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::core::haproxy::{
    abort_command, commit_command, commit_ok, payload, set_command, set_ok,
};

/// The most of an answer read.
const ANSWER_LIMIT: usize = 64 * 1024;
/// The most a PEM file may hold.
const PEM_LIMIT: u64 = 1 << 20;

/// Sends `cmd` on `socket` and returns HAProxy's answer.
fn command(socket: &Path, cmd: &str, timeout: Duration) -> Result<String, String> {
    let mut s = UnixStream::connect(socket)
        .map_err(|e| format!("connecting to {}: {e}", socket.display()))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.write_all(cmd.as_bytes())
        .map_err(|e| format!("sending to {}: {e}", socket.display()))?;
    let mut answer = Vec::new();
    (&mut s)
        .take(ANSWER_LIMIT as u64)
        .read_to_end(&mut answer)
        .map_err(|e| format!("reading from {}: {e}", socket.display()))?;
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
    set_ok(&command(socket, &set_command(name, &payload), timeout)?)?;
    let committed = command(socket, &commit_command(name), timeout).and_then(|a| commit_ok(&a));
    if let Err(e) = committed {
        // Leave no open transaction behind for the next update.
        let _ = command(socket, &abort_command(name), timeout);
        return Err(e);
    }
    Ok(format!("{name} updated in HAProxy's memory and committed"))
}

fn read_pem(path: &Path) -> Result<Vec<u8>, String> {
    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut pem = Vec::new();
    f.take(PEM_LIMIT + 1)
        .read_to_end(&mut pem)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if pem.len() as u64 > PEM_LIMIT {
        return Err(format!(
            "{} is larger than {PEM_LIMIT} bytes",
            path.display()
        ));
    }
    Ok(pem)
}
