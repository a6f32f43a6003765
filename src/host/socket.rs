//! The status socket: a Unix stream socket in the state dir where the daemon
//! answers one JSON request per connection. Host layer: no policy, it only
//! moves bytes between clients and the daemon loop.
//!
//! Requests are one JSON object: `{"request":"status"}` returns the status
//! document; `{"request":"reload"}` reloads the config and returns
//! `{"ok":true}` or `{"ok":false,"error":"…"}`; `{"request":"wait","bridge":
//! NAME}` has the bridge look at its source anew and answers
//! `{"ok":true,"bridge":{…}}` once it is done with it (`hostbridge wait`).
//! The socket is mode 0600
//! (0660 with `status_group`) and removed when the daemon stops.

use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};

/// Largest request accepted.
const MAX_REQUEST: u64 = 4096;

/// A client request, parsed.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "lowercase")]
pub(crate) enum Wire {
    /// The status document.
    Status,
    /// Reload the config.
    Reload,
    /// Answer once `bridge` has synced what its source holds now (a rescan
    /// started by this request) and run what that owes.
    Wait {
        /// The bridge's name.
        bridge: String,
    },
}

/// A request handed to the daemon loop, with the channel for its answer
/// (a JSON document).
pub(crate) struct Request {
    /// What was asked.
    pub(crate) what: Wire,
    /// Where the JSON answer goes.
    pub(crate) reply: oneshot::Sender<String>,
}

/// The bound socket; the file is removed on drop.
pub(crate) struct Bound {
    path: PathBuf,
}

impl Drop for Bound {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds the socket at `path`, replacing a stale one; refuses if another
/// daemon answers there. `group` makes it 0660 and owned by that group.
pub(crate) fn bind(path: &Path, group: Option<&str>) -> io::Result<(UnixListener, Bound)> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "{} is answered by another hostbridge; stop it first",
                    path.display()
                ),
            ));
        }
        std::fs::remove_file(path)?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let listener = UnixListener::bind(path)?;
    let bound = Bound {
        path: path.to_path_buf(),
    };
    let mut mode = 0o600;
    if let Some(name) = group {
        let gid = super::nss::group(name, "status_group")?;
        nix::unistd::chown(path, None, Some(gid))?;
        mode = 0o660;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok((listener, bound))
}

/// Most unprivileged status clients answered at once. One more is told
/// nothing and closed at once, so a flood of connections costs a bounded
/// number of descriptors, drains the listen backlog, and never keeps root
/// (who is always answered) from asking.
pub(crate) const MAX_CLIENTS: usize = 32;
/// How long a status or reload answer may take, and a client to read any
/// answer.
pub(crate) const CLIENT_DEADLINE: Duration = Duration::from_secs(10);
/// How long a client may take to send its request.
pub(crate) const REQUEST_DEADLINE: Duration = Duration::from_secs(2);
/// How long a `wait` request may take: a sync and its actions (each action
/// has its own timeout, 60 s by default, and a bridge may have several).
pub(crate) const WAIT_DEADLINE: Duration = Duration::from_secs(900);

/// Accepts connections forever, handing each request to the loop.
pub(crate) async fn serve(listener: UnixListener, to_loop: mpsc::Sender<Request>) {
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CLIENTS));
    let mut told = false;
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors (EMFILE/ENFILE) or another failure:
                // accept would fail again at once, so wait instead of spinning.
                let out_of_fds = matches!(
                    e.raw_os_error(),
                    Some(
                        nix::libc::EMFILE
                            | nix::libc::ENFILE
                            | nix::libc::ENOBUFS
                            | nix::libc::ENOMEM
                    )
                );
                if !told {
                    tracing::warn!("status socket: accept failed: {e}; backing off");
                    told = true;
                }
                let pause = if out_of_fds { 200 } else { 20 };
                tokio::time::sleep(Duration::from_millis(pause)).await;
                continue;
            }
        };
        told = false;
        let root = stream.peer_cred().is_ok_and(|c| c.uid() == 0);
        let slot = if root {
            None
        } else {
            match slots.clone().try_acquire_owned() {
                Ok(slot) => Some(slot),
                Err(_) => continue, // full: closed unanswered
            }
        };
        let to_loop = to_loop.clone();
        tokio::spawn(async move {
            let _ = answer(stream, to_loop).await;
            drop(slot);
        });
    }
}

async fn answer(stream: tokio::net::UnixStream, to_loop: mpsc::Sender<Request>) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut buf = Vec::new();
    tokio::time::timeout(
        REQUEST_DEADLINE,
        read.take(MAX_REQUEST).read_to_end(&mut buf),
    )
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no request in time"))??;
    let timed_out = || io::Error::new(io::ErrorKind::TimedOut, "no answer in time");
    let reply = match serde_json::from_slice::<Wire>(&buf) {
        Ok(what) => {
            let deadline = match what {
                Wire::Wait { .. } => WAIT_DEADLINE,
                Wire::Status | Wire::Reload => CLIENT_DEADLINE,
            };
            let (tx, rx) = oneshot::channel();
            let asked = async {
                if to_loop.send(Request { what, reply: tx }).await.is_err() {
                    return None;
                }
                Some(
                    rx.await
                        .unwrap_or_else(|_| r#"{"ok":false,"error":"daemon is stopping"}"#.into()),
                )
            };
            match tokio::time::timeout(deadline, asked).await {
                Ok(Some(reply)) => reply,
                Ok(None) => return Ok(()),
                Err(_) => return Err(timed_out()),
            }
        }
        Err(e) => {
            serde_json::json!({"ok": false, "error": format!("bad request: {e}")}).to_string()
        }
    };
    let sent = async {
        write.write_all(reply.as_bytes()).await?;
        write.shutdown().await
    };
    tokio::time::timeout(CLIENT_DEADLINE, sent)
        .await
        .map_err(|_| timed_out())?
}

/// Client side: sends `request` and returns the answer (blocking).
pub(crate) fn query(path: &Path, request: &Wire) -> io::Result<String> {
    query_within(path, request, Duration::from_secs(30))
}

/// [`query`], giving up on the answer after `within`.
pub(crate) fn query_within(path: &Path, request: &Wire, within: Duration) -> io::Result<String> {
    let mut s = std::os::unix::net::UnixStream::connect(path)?;
    s.set_read_timeout(Some(within.max(Duration::from_millis(1))))?;
    s.write_all(serde_json::to_string(request)?.as_bytes())?;
    s.shutdown(std::net::Shutdown::Write)?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}
