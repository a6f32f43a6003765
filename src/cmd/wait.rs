//! `hostbridge wait`: a client of the status socket that asks the daemon to
//! look at a bridge's source anew, then judges the bridge's status
//! (`core::wait`) until it is ready, refused, failed or out of time. Shell
//! code: requests, a poll of the status while not yet ready, exit codes.

use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::args::{EXIT_FAILURE, EXIT_OK, EXIT_REFUSED, EXIT_USAGE};
use crate::core::inside;
use crate::core::status::{Bridge, Status};
use crate::core::usb::Node;
use crate::core::wait::{Verdict, judge};
use crate::host::socket::{self, Wire};

/// How often the status is read again while the bridge is not ready.
const POLL: Duration = Duration::from_millis(250);

/// What `wait` was asked.
pub(crate) struct WaitArgs<'a> {
    /// The bridge.
    pub(crate) bridge: &'a str,
    /// `VID:PID`s that must be usable (lowercase).
    pub(crate) usb: &'a [String],
    /// How long to wait.
    pub(crate) timeout: Duration,
    /// Check the devices as a container's user, too.
    pub(crate) inside: Option<Inside<'a>>,
}

/// `--image IMAGE --user NAME`: the devices as that image's user sees them.
pub(crate) struct Inside<'a> {
    /// The container image.
    pub(crate) image: &'a str,
    /// Its user.
    pub(crate) user: &'a str,
    /// Where the device nodes are (the config's `dev_root`).
    pub(crate) dev_root: PathBuf,
}

/// Runs `wait`; returns the exit code.
pub(crate) fn run(sock: &Path, a: &WaitArgs<'_>) -> u8 {
    let (bridge, usb, timeout) = (a.bridge, a.usb, a.timeout);
    let deadline = Instant::now() + timeout;
    let mut w = Waiting {
        sock,
        bridge,
        deadline,
        timeout,
        last: String::new(),
    };
    let mut b = match w.barrier() {
        Ok(b) => b,
        Err(code) => return code,
    };
    loop {
        match judge(&b, usb) {
            Verdict::Ready(what) => {
                let inside = match &a.inside {
                    Some(i) => match i.check(&b, usb) {
                        Ok(seen) => format!("; {seen}"),
                        Err(why) => {
                            eprintln!("hostbridge wait: {bridge}: {why}");
                            return EXIT_FAILURE;
                        }
                    },
                    None => String::new(),
                };
                println!("{bridge}: ready: {what}{inside}");
                return EXIT_OK;
            }
            Verdict::Refused(why) => {
                eprintln!("hostbridge wait: {bridge}: {why}");
                return EXIT_REFUSED;
            }
            Verdict::Failed(why) => {
                eprintln!(
                    "hostbridge wait: {bridge}: {why} (it runs again on the next change, or the next `hostbridge wait`)"
                );
                return EXIT_FAILURE;
            }
            Verdict::NotYet(why) => w.note(why),
        }
        if !w.pause() {
            return w.timed_out();
        }
        b = match w.status() {
            Ok(Some(b)) => b,
            Ok(None) => continue,
            Err(code) => return code,
        };
    }
}

/// One `wait` under way.
struct Waiting<'a> {
    sock: &'a Path,
    bridge: &'a str,
    deadline: Instant,
    timeout: Duration,
    /// Why it is not ready, as last said.
    last: String,
}

impl Waiting<'_> {
    /// Says why the bridge is not ready, once per reason.
    fn note(&mut self, why: String) {
        if why != self.last {
            eprintln!("hostbridge wait: {}: not yet: {why}", self.bridge);
            self.last = why;
        }
    }

    /// Sleeps until the next poll; false when the deadline has passed.
    fn pause(&self) -> bool {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        std::thread::sleep(left.min(POLL));
        true
    }

    fn timed_out(&self) -> u8 {
        eprintln!(
            "hostbridge wait: {}: not ready after {}: {}",
            self.bridge,
            humantime::format_duration(self.timeout),
            if self.last.is_empty() {
                "no answer"
            } else {
                &self.last
            }
        );
        EXIT_FAILURE
    }

    /// Sends `what`; `Ok(None)` when the daemon cannot be asked yet (not
    /// running, busy): the reason is noted and the caller tries again.
    fn ask(&mut self, what: &Wire) -> Result<Option<String>, u8> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        match socket::query_within(self.sock, what, left) {
            Ok(t) if t.is_empty() => {
                self.note("the daemon closed the connection unanswered (busy)".into());
                Ok(None)
            }
            Ok(t) => Ok(Some(t)),
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused) => {
                let why = format!(
                    "hostbridge is not running (no answer on {}: {e})",
                    self.sock.display()
                );
                self.note(why);
                Ok(None)
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if self.last.is_empty() {
                    self.last = "the daemon was still syncing the bridge".into();
                }
                Err(self.timed_out())
            }
            Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                eprintln!(
                    "hostbridge wait: permission denied on {}: run it as root, or as a member of the config's status_group",
                    self.sock.display()
                );
                Err(EXIT_FAILURE)
            }
            Err(e) => {
                self.note(format!("asking {}: {e}", self.sock.display()));
                Ok(None)
            }
        }
    }

    /// Has the daemon look at the bridge's source anew and returns the
    /// bridge's status once it is done with it.
    fn barrier(&mut self) -> Result<Bridge, u8> {
        let what = Wire::Wait {
            bridge: self.bridge.to_string(),
        };
        loop {
            if let Some(text) = self.ask(&what)? {
                return self.parse_answer(&text);
            }
            if !self.pause() {
                return Err(self.timed_out());
            }
        }
    }

    fn parse_answer(&self, text: &str) -> Result<Bridge, u8> {
        #[derive(serde::Deserialize)]
        struct Answer {
            ok: bool,
            error: Option<String>,
            bridge: Option<Bridge>,
        }
        let a: Answer = serde_json::from_str(text).map_err(|e| {
            eprintln!("hostbridge wait: the daemon's answer could not be read: {e}");
            EXIT_FAILURE
        })?;
        match (a.ok, a.bridge) {
            (true, Some(b)) => Ok(b),
            _ => {
                let why = a.error.unwrap_or_else(|| "no bridge in the answer".into());
                eprintln!("hostbridge wait: {why}");
                Err(if why.starts_with("no bridge named") {
                    EXIT_USAGE
                } else {
                    EXIT_FAILURE
                })
            }
        }
    }

    /// The bridge's status now, or `None` when it could not be had yet.
    fn status(&mut self) -> Result<Option<Bridge>, u8> {
        let Some(text) = self.ask(&Wire::Status)? else {
            return Ok(None);
        };
        let st: Status = match serde_json::from_str(&text) {
            Ok(st) => st,
            Err(e) => {
                self.note(format!("the daemon's status could not be read: {e}"));
                return Ok(None);
            }
        };
        match st.bridges.into_iter().find(|b| b.name == self.bridge) {
            Some(b) => Ok(Some(b)),
            None => {
                eprintln!(
                    "hostbridge wait: bridge {:?} is gone from the daemon's config (reloaded?)",
                    self.bridge
                );
                Err(EXIT_USAGE)
            }
        }
    }
}

impl Inside<'_> {
    /// Resolves the user in the image and judges each device the bridge's
    /// check saw (those of `usb`, else every one that is ok) with its ids.
    fn check(&self, b: &Bridge, usb: &[String]) -> Result<String, String> {
        let out = Command::new("podman")
            .args(["run", "--rm", "--network=none", "--entrypoint=/bin/cat"])
            .args([self.image, "/etc/passwd", "/etc/group"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running podman to read {}'s users: {e}", self.image))?;
        if !out.status.success() {
            return Err(format!(
                "reading /etc/passwd and /etc/group of {} failed ({}): {}",
                self.image,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let (passwd, group) = inside::split_passwd_group(&String::from_utf8_lossy(&out.stdout));
        let who = inside::resolve(&passwd, &group, self.user)
            .map_err(|e| format!("{}: {e}", self.image))?;
        let what = format!("{} in {}", self.user, self.image);
        let devices: Vec<_> = b
            .usb
            .iter()
            .flat_map(|u| &u.devices)
            .filter(|d| d.bus_dev != "-")
            .filter(|d| {
                if usb.is_empty() {
                    d.verdict == "ok"
                } else {
                    usb.contains(&d.id)
                }
            })
            .collect();
        for d in &devices {
            let rel = format!("bus/usb/{}", d.bus_dev.replace(':', "/"));
            let path = self.dev_root.join(&rel);
            let m = path
                .symlink_metadata()
                .map_err(|e| format!("{}: {e}", path.display()))?;
            let node = Node {
                is_char: m.file_type().is_char_device(),
                uid: m.uid(),
                gid: m.gid(),
                mode: m.mode() & 0o7777,
                rdev: None,
            };
            let group = crate::host::nss::name_of_gid(node.gid);
            inside::judge(&who, &what, &path.display().to_string(), &node, &group)
                .map_err(|why| format!("{} at {}: {why}", d.id, d.bus_dev))?;
        }
        Ok(format!(
            "{what} (uid {}, gids {}) can open {}",
            who.uid,
            who.gids
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(","),
            crate::core::text::plural(devices.len(), "device")
        ))
    }
}
