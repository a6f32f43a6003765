//! hb-ups: an emulated APC Back-UPS for the VM tests (docs/testing.md, "The
//! emulated UPS"). It attaches itself to the guest kernel's `vhci-hcd` over
//! a loopback TCP connection (as `usbip attach` does, without the usbip
//! tools), so the guest's real udevd sees a real USB device with a real
//! /dev/bus/usb node, and answers the URBs libusb and the kernel send.
//!
//!   hb-ups serve SOCKET [STATE]   attach and serve; take commands on SOCKET
//!   hb-ups ctl SOCKET COMMAND     online | battery | low | detach | attach | status
//!
//! std only: tests/vm.rs builds it with `rustc`, and tests/ups_emulator.rs
//! tests its pure parts (device.rs, wire.rs) on the host. I/O shell.

mod device;
mod wire;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use device::{Power, Reply, Setup};

/// The guest's first vhci controller (attach, detach and status files).
const VHCI: &str = "/sys/devices/platform/vhci_hcd.0";

/// What the URB reader and the control commands share.
struct Shared {
    power: Power,
    /// Interrupt IN URBs waiting for a report (seqnums, oldest first).
    waiting: VecDeque<u32>,
    /// The state changed since the last input report.
    dirty: bool,
    /// Where replies go (one whole message per write, under this lock).
    to_kernel: Option<TcpStream>,
}

impl Shared {
    fn send(&mut self, msg: &[u8]) {
        if let Some(s) = &mut self.to_kernel
            && let Err(e) = s.write_all(msg)
        {
            eprintln!("hb-ups: writing to the kernel: {e}");
            self.to_kernel = None;
        }
    }

    /// Answers the oldest waiting interrupt URB with report 1, if the
    /// state changed since the last one.
    fn report_if_due(&mut self) {
        if !self.dirty {
            return;
        }
        if let Some(seqnum) = self.waiting.pop_front() {
            let report = self.power.report(1).unwrap_or_default();
            self.send(&wire::ret_submit_in(seqnum, 0, &report));
            self.dirty = false;
        }
    }
}

/// One attachment: the vhci port and the thread serving its URBs.
struct Attached {
    port: u32,
    reader: JoinHandle<()>,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["serve", sock] => serve(sock, Power::ONLINE),
        ["serve", sock, state] => match Power::named(state) {
            Some(p) => serve(sock, p),
            None => Err(format!("unknown state {state}")),
        },
        ["ctl", sock, command] => ctl(sock, command),
        _ => Err("usage: hb-ups serve SOCKET [STATE] | hb-ups ctl SOCKET COMMAND".into()),
    };
    if let Err(e) = code {
        eprintln!("hb-ups: {e}");
        std::process::exit(1);
    }
}

/// Sends one command to a serving hb-ups; prints its answer.
fn ctl(sock: &str, command: &str) -> Result<(), String> {
    let mut s = UnixStream::connect(sock).map_err(|e| format!("{sock}: {e}"))?;
    writeln!(s, "{command}").map_err(|e| e.to_string())?;
    s.shutdown(std::net::Shutdown::Write)
        .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).map_err(|e| e.to_string())?;
    print!("{answer}");
    if answer.starts_with("ok") {
        Ok(())
    } else {
        Err(format!("{command}: {}", answer.trim()))
    }
}

fn serve(sock: &str, power: Power) -> Result<(), String> {
    let shared = Arc::new(Mutex::new(Shared {
        power,
        waiting: VecDeque::new(),
        dirty: true,
        to_kernel: None,
    }));
    let _ = std::fs::remove_file(sock);
    let control = UnixListener::bind(sock).map_err(|e| format!("{sock}: {e}"))?;
    let mut attached = Some(attach(&shared)?);
    for conn in control.incoming() {
        let Ok(conn) = conn else { continue };
        let mut line = String::new();
        let _ = BufReader::new(&conn).read_line(&mut line);
        let answer = match line.trim() {
            "status" => {
                let sh = shared.lock().unwrap();
                format!(
                    "ok {:?} port {:?}",
                    sh.power,
                    attached.as_ref().map(|a| a.port)
                )
            }
            "detach" => match attached.take() {
                Some(a) => detach(a),
                None => "error: not attached".into(),
            },
            "attach" => match attached {
                Some(_) => "error: attached already".into(),
                None => match attach(&shared) {
                    Ok(a) => {
                        let said = format!("ok attached at port {}", a.port);
                        attached = Some(a);
                        said
                    }
                    Err(e) => format!("error: {e}"),
                },
            },
            name => match Power::named(name) {
                Some(p) => {
                    let mut sh = shared.lock().unwrap();
                    sh.power = p;
                    sh.dirty = true;
                    sh.report_if_due();
                    format!("ok {p:?}")
                }
                None => format!("error: unknown command {name:?}"),
            },
        };
        eprintln!("hb-ups: {}: {answer}", line.trim());
        let mut conn = conn;
        let _ = writeln!(conn, "{answer}");
    }
    Ok(())
}

/// A free high-speed port of the controller (`status`: "hs  PORT STA …",
/// 004 being free).
fn free_port() -> Result<u32, String> {
    let status = std::fs::read_to_string(format!("{VHCI}/status"))
        .map_err(|e| format!("{VHCI}/status: {e} (is vhci-hcd loaded?)"))?;
    status
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && f[0] == "hs" && f[2] == "004").then(|| f[1].parse().ok())?
        })
        .next()
        .ok_or_else(|| "no free high-speed vhci port".to_string())
}

/// Hands one end of a loopback connection to vhci-hcd as a full-speed
/// device and serves the other end.
fn attach(shared: &Arc<Mutex<Shared>>) -> Result<Attached, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let kernel_end = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    let (ours, _) = listener.accept().map_err(|e| e.to_string())?;
    let _ = ours.set_nodelay(true);
    let port = free_port()?;
    {
        let mut sh = shared.lock().unwrap();
        sh.to_kernel = Some(ours.try_clone().map_err(|e| e.to_string())?);
        sh.waiting.clear();
        sh.dirty = true;
    }
    // PORT SOCKFD DEVID SPEED; devid is echoed back only; speed 2 = full.
    let line = format!("{port} {} {} 2", kernel_end.as_raw_fd(), (1 << 16) | port);
    std::fs::write(format!("{VHCI}/attach"), &line)
        .map_err(|e| format!("{VHCI}/attach {line:?}: {e}"))?;
    drop(kernel_end); // the kernel holds its own reference
    eprintln!("hb-ups: attached at vhci port {port}");
    let shared = Arc::clone(shared);
    let reader = std::thread::spawn(move || {
        if let Err(e) = serve_urbs(ours, &shared) {
            eprintln!("hb-ups: port {port}: {e}");
        }
        shared.lock().unwrap().to_kernel = None;
        eprintln!("hb-ups: port {port}: connection closed");
    });
    Ok(Attached { port, reader })
}

/// Detaches through sysfs and waits until the kernel has closed the
/// connection.
fn detach(a: Attached) -> String {
    if let Err(e) = std::fs::write(format!("{VHCI}/detach"), a.port.to_string()) {
        return format!("error: detaching port {}: {e}", a.port);
    }
    let _ = a.reader.join();
    format!("ok detached port {}", a.port)
}

/// Reads commands until the kernel closes the connection.
fn serve_urbs(mut from: TcpStream, shared: &Mutex<Shared>) -> Result<(), String> {
    let mut header = [0u8; wire::HEADER];
    loop {
        match from.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.to_string()),
        }
        match wire::decode(&header)? {
            wire::Command::Submit {
                seqnum,
                ep,
                dir_in,
                length,
                setup,
            } => {
                let mut data = vec![0u8; if dir_in { 0 } else { length as usize }];
                from.read_exact(&mut data).map_err(|e| e.to_string())?;
                let mut sh = shared.lock().unwrap();
                match (ep, dir_in) {
                    (0, _) => {
                        let msg = match device::control(Setup::parse(setup), &data, sh.power) {
                            Reply::Data(d) if dir_in => wire::ret_submit_in(seqnum, 0, &d),
                            Reply::Data(_) => wire::ret_submit(seqnum, 0, data.len() as u32),
                            Reply::Stall => wire::ret_submit(seqnum, wire::EPIPE, 0),
                        };
                        sh.send(&msg);
                    }
                    (1, true) => {
                        sh.waiting.push_back(seqnum);
                        sh.report_if_due();
                    }
                    _ => sh.send(&wire::ret_submit(seqnum, wire::EPIPE, 0)),
                }
            }
            wire::Command::Unlink { seqnum, victim } => {
                let mut sh = shared.lock().unwrap();
                let before = sh.waiting.len();
                sh.waiting.retain(|s| *s != victim);
                let status = if sh.waiting.len() < before {
                    wire::ECONNRESET
                } else {
                    0
                };
                sh.send(&wire::ret_unlink(seqnum, status));
            }
        }
    }
}
