//! The `http` action's connection: TCP to the URL's host, or a Unix socket
//! (an admin socket), one request, the answer read to its end (at most 64
//! KiB) within the timeout. Host layer: `core::http` builds and reads the
//! bytes.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::core::http::{Url, request, status_of};

/// The most of an answer read.
const ANSWER_LIMIT: u64 = 64 * 1024;

/// Sends `method url` (over `socket` if given) and returns the status and
/// the start of the body.
pub(crate) fn call(
    url: &Url,
    socket: Option<&Path>,
    method: &str,
    timeout: Duration,
) -> Result<(u16, String), String> {
    let deadline = Instant::now() + timeout;
    let req = request(method, url);
    let answer = match socket {
        Some(path) => {
            let mut s = UnixStream::connect(path)
                .map_err(|e| format!("connecting to {}: {e}", path.display()))?;
            s.set_read_timeout(Some(timeout))
                .map_err(|e| e.to_string())?;
            s.set_write_timeout(Some(timeout))
                .map_err(|e| e.to_string())?;
            exchange(&mut s, &req, deadline)?
        }
        None => {
            let addr = url
                .address()
                .to_socket_addrs()
                .map_err(|e| format!("cannot resolve {}: {e}", url.address()))?
                .next()
                .ok_or_else(|| format!("{} resolves to no address", url.address()))?;
            let mut s = TcpStream::connect_timeout(&addr, timeout)
                .map_err(|e| format!("connecting to {addr}: {e}"))?;
            s.set_read_timeout(Some(timeout))
                .map_err(|e| e.to_string())?;
            s.set_write_timeout(Some(timeout))
                .map_err(|e| e.to_string())?;
            exchange(&mut s, &req, deadline)?
        }
    };
    status_of(&answer)
}

fn exchange<S: Read + Write>(s: &mut S, req: &[u8], deadline: Instant) -> Result<Vec<u8>, String> {
    s.write_all(req)
        .map_err(|e| format!("sending the request: {e}"))?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        if Instant::now() > deadline {
            return Err("timed out reading the answer".into());
        }
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                if answer.len() as u64 >= ANSWER_LIMIT {
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
