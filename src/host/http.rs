//! The `http` action's connection: TCP to the URL's host, or a Unix socket
//! (an admin socket), one request, the answer read to its end (at most 64
//! KiB), all by one deadline. Also the bounded connect and exchange
//! `host::haproxy` uses. Host layer: `core::http` builds and reads the
//! bytes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::core::http::{Url, request, status_of};

/// The most of an answer read.
const ANSWER_LIMIT: usize = 64 * 1024;

/// Sends `method url` (over `socket` if given) and returns the status and
/// the start of the body; the whole exchange ends by `timeout`.
pub(crate) fn call(
    url: &Url,
    socket: Option<&Path>,
    method: &str,
    timeout: Duration,
) -> Result<(u16, String), String> {
    let deadline = Instant::now() + timeout;
    let req = request(method, url);
    let answer = match socket {
        Some(path) => exchange(
            &mut connect_unix(path, deadline)?,
            &req,
            deadline,
            ANSWER_LIMIT,
        )?,
        None => {
            let addrs = url
                .address()
                .to_socket_addrs()
                .map_err(|e| format!("cannot resolve {}: {e}", url.address()))?;
            let (mut s, _) = connect_first(addrs, deadline).map_err(|last| match last {
                Some((addr, e)) => format!("connecting to {addr}: {e}"),
                None => format!("{} resolves to no address", url.address()),
            })?;
            exchange(&mut s, &req, deadline, ANSWER_LIMIT)?
        }
    };
    status_of(&answer)
}

/// Connects to the first of `addrs` that answers, trying each in turn
/// with what is left of the time until `deadline`. When none does, the
/// last address tried and its error, or `None` when none was tried (no
/// address, or no time left).
pub(crate) fn connect_first(
    addrs: impl IntoIterator<Item = SocketAddr>,
    deadline: Instant,
) -> Result<(TcpStream, SocketAddr), Option<(SocketAddr, std::io::Error)>> {
    let mut last = None;
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(s) => return Ok((s, addr)),
            Err(e) => last = Some((addr, e)),
        }
    }
    Err(last)
}

/// A stream whose reads and writes can be bounded.
pub(crate) trait Timed: Read + Write {
    /// Sets both timeouts.
    fn bound(&self, t: Duration) -> std::io::Result<()>;
}

impl Timed for TcpStream {
    fn bound(&self, t: Duration) -> std::io::Result<()> {
        self.set_read_timeout(Some(t))?;
        self.set_write_timeout(Some(t))
    }
}

impl Timed for UnixStream {
    fn bound(&self, t: Duration) -> std::io::Result<()> {
        self.set_read_timeout(Some(t))?;
        self.set_write_timeout(Some(t))
    }
}

/// Connects to the Unix socket `path` by `deadline`: a listener whose
/// backlog is full makes a blocking `connect` wait for ever, so the socket
/// stays non-blocking until connected.
pub(crate) fn connect_unix(path: &Path, deadline: Instant) -> Result<UnixStream, String> {
    use nix::errno::Errno;
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, connect, socket};
    let fail = |e: Errno| {
        format!(
            "connecting to {}: {}",
            path.display(),
            std::io::Error::from(e)
        )
    };
    let addr = UnixAddr::new(path).map_err(fail)?;
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .map_err(fail)?;
    loop {
        match connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr) {
            Ok(()) => break,
            Err(Errno::EAGAIN | Errno::EINTR) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(Errno::EAGAIN) => {
                return Err(format!(
                    "connecting to {}: timed out (its listener is not accepting)",
                    path.display()
                ));
            }
            Err(e) => return Err(fail(e)),
        }
    }
    let s = UnixStream::from(fd);
    s.set_nonblocking(false).map_err(|e| e.to_string())?;
    Ok(s)
}

/// Writes `req` and reads the answer until the peer closes, at most
/// `limit` bytes, all by `deadline`: each read and write gets what is left
/// of it, so a peer that trickles bytes cannot stretch it.
pub(crate) fn exchange<S: Timed>(
    s: &mut S,
    req: &[u8],
    deadline: Instant,
    limit: usize,
) -> Result<Vec<u8>, String> {
    let left = || {
        let l = deadline.saturating_duration_since(Instant::now());
        if l.is_zero() {
            Err("timed out".to_string())
        } else {
            Ok(l)
        }
    };
    s.bound(left()?).map_err(|e| e.to_string())?;
    s.write_all(req)
        .map_err(|e| format!("sending the request: {e}"))?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let l = left().map_err(|_| "timed out reading the answer".to_string())?;
        s.bound(l).map_err(|e| e.to_string())?;
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                if answer.len() >= limit {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err("timed out reading the answer".into());
            }
            Err(e) => {
                // A server that answered and reset the connection still answered.
                if answer.is_empty() {
                    return Err(format!("reading the answer: {e}"));
                }
                break;
            }
        }
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn a_listener_that_never_accepts_or_trickles_cannot_hold_a_call() {
        let dir = tempfile::tempdir().unwrap();
        // A trickling server: the answer never ends, a byte at a time.
        let sock = dir.path().join("slow.sock");
        let l = UnixListener::bind(&sock).unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            for _ in 0..50 {
                if s.write_all(b"H").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let url = Url::parse("http://localhost/-/reload").unwrap();
        let t0 = Instant::now();
        let e = call(&url, Some(&sock), "POST", Duration::from_secs(1)).unwrap_err();
        assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
        assert!(e.contains("timed out"), "{e}");
    }

    #[test]
    fn a_unix_listener_that_never_accepts_is_a_timeout_not_a_hang() {
        use nix::sys::socket::{
            AddressFamily, Backlog, SockFlag, SockType, UnixAddr, bind, listen, socket,
        };
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("full.sock");
        let fd = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        bind(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            &UnixAddr::new(&sock).unwrap(),
        )
        .unwrap();
        listen(&fd, Backlog::new(0).unwrap()).unwrap();
        // Fill its backlog: nobody accepts.
        let mut held = Vec::new();
        let deadline = Instant::now() + Duration::from_millis(300);
        while let Ok(s) = connect_unix(&sock, deadline) {
            held.push(s);
            assert!(held.len() < 100, "the backlog never filled");
        }
        let t0 = Instant::now();
        let e = connect_unix(&sock, Instant::now() + Duration::from_secs(1)).unwrap_err();
        assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
        assert!(e.contains("not accepting"), "{e}");
    }
}
