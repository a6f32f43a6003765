//! The real udevd as a test oracle: runs `udevadm test --action=add` on this
//! machine's devices with candidate rules files installed in a private mount
//! namespace, and reports what udevd itself did with them, file by file.
//!
//! Isolation. Everything happens under `unshare -m -u -i -n --propagation
//! private`: tmpfs over the whole of `/run` (the candidates go to
//! `/run/udev/rules.d` there), over every system rules dir (`/etc`,
//! `/usr/local/lib`, `/usr/lib`, and `/lib` when it is a distinct dir), over
//! `/dev` (with a fresh `/dev/null`: udevd's spawn needs it), `/tmp` and
//! `/var/tmp`; every mount under `/sys` and `/proc` is remounted read-only
//! (udevadm test in systemd 252 *really* writes `ATTR{…}=` and `SYSCTL{…}=`:
//! they fail with EROFS here and the attempt is still logged), and udevadm
//! runs with `CAP_SYS_MODULE` (the kmod builtin), `CAP_SYS_ADMIN`,
//! `CAP_NET_ADMIN` and a few more dropped from its bounding set, from `/run`
//! as its working directory. `PROGRAM` and `IMPORT{program}` really execute:
//! generated rules only ever run `/bin/sh -c '… >/run/hb-marker-…'`, and a
//! marker found after a run is itself evidence. Groups and users the
//! candidates name (`nut`) are added to bind-mounted copies of
//! `/etc/group`/`/etc/passwd` when the host lacks them, so udevd does not
//! drop those lines for an unknown name.
//!
//! Reading udevd. At debug level (`udevadm test` sets it) udevd logs each
//! applied assignment as `SYSNAME: FILE:LINE KEY VALUE` (udev-rules.c,
//! `log_rule_debug`), each load-time problem as `FILE:LINE message`, and an
//! aborted run as `SYSNAME: Failed to apply udev rules: …` (udev-event.c);
//! ENV, TAG and OPTIONS are silent, so the device's final properties are
//! compared with a baseline. A sentinel file sorted last
//! (`zzzz-hb-sentinel.rules`) sets a per-run nonce property (processing got
//! there) and makes one logged no-op (logging was not turned off by an
//! `OPTIONS="log_level=…"`).
//!
//! Batching. One namespace and one udevadm run per device serve many files
//! (`c00042-NAME.rules`); a batch with nothing to report clears every file in
//! it, otherwise it is bisected down to files run alone, so every effect
//! reported is one file's own.

#![allow(dead_code, clippy::unwrap_used)]

pub mod fuzz;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The sentinel file's name: sorts after every candidate (`c…`, `0…`-`9…`).
pub const SENTINEL: &str = "zzzz-hb-sentinel.rules";
/// The sentinel's RUN (never run by udevadm test; left out of results).
const SENTINEL_RUN: &str = "/bin/true hb-sentinel";
/// The sentinel's canary assignments: each is logged unless an earlier
/// `:=` made that value final (OWNER, GROUP, MODE, SYMLINK, RUN).
const CANARIES: &[&str] = &[
    "OWNER 65534",
    "GROUP 65534",
    "MODE 0600",
    "LINK 'hb-sentinel'",
    "RUN '/bin/true hb-sentinel'",
];
/// Groups and users the candidates may name, added in the namespace when
/// the host lacks them.
const ACCOUNTS: &[&str] = &["nut"];
/// Capabilities udevadm (and what it spawns) runs without.
const DROP_CAPS: &str = "-sys_module,-sys_admin,-sys_boot,-sys_time,-net_admin,-sys_rawio,-sys_ptrace,-sys_resource,-syslog";

/// Who a device belongs to, as far as the policy is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// No `idVendor` on it or any parent: not on USB. A permissions-only
    /// file must do nothing at all here.
    NoVendor,
    /// On USB with a vendor the candidates name (the fake UPS, 051d, or a
    /// real USB device): MODE/GROUP/OWNER, a harmless LINK and the uaccess
    /// tag are what the policy lets a file do here.
    Named,
    /// On USB with a vendor no candidate names (05ad, the 1d6b root hub):
    /// anything here comes from a catch-all vendor match.
    Stranger,
}

/// A device udevadm test is run on.
#[derive(Debug, Clone)]
pub struct Device {
    /// `/sys/…` path given to udevadm.
    pub syspath: String,
    /// The kernel name udevd prefixes its log lines with (`ttyS0`).
    pub sysname: String,
    /// tty, block, mem, usb (a real one), or fake-usb.
    pub kind: &'static str,
    /// The nearest `idVendor` (on the device or a parent).
    pub vendor: Option<String>,
    /// What the policy lets a file do here.
    pub reach: Reach,
}

/// The UPS vendor the fake USB tree carries and candidates name (APC).
pub const UPS_VENDOR: &str = "051d";

/// One fake sysfs dir: path under the tree, uevent, subsystem link target,
/// (idVendor, idProduct), whether udevadm test runs on it.
type FakeDevice = (
    &'static str,
    &'static str,
    &'static str,
    Option<(&'static str, &'static str)>,
    bool,
);

/// The fake USB tree built in the namespace (sd-device accepts it with
/// `SYSTEMD_DEVICE_VERIFY_SYSFS=0`): a root hub 1d6b:0002, a UPS
/// 051d:0002 with a tty and a hidraw node, a stranger 05ad:0001 with a
/// tty, and a VIA hub 2109:3431 with a stranger 0bda:0001 and its tty
/// behind it. Every USB device has a bDeviceClass: 09 for hubs, else 00. (path under the tree, uevent, subsystem link target, idVendor,
/// idProduct, tested.)
const FAKE_USB: &[FakeDevice] = &[
    ("", "", "", None, false),
    (
        "usb1",
        "MAJOR=189\nMINOR=0\nDEVNAME=bus/usb/001/001\nDEVTYPE=usb_device\n",
        "/sys/bus/usb",
        Some((ROOT_HUB, "0002")),
        true,
    ),
    (
        "usb1/1-1",
        "MAJOR=189\nMINOR=1\nDEVNAME=bus/usb/001/002\nDEVTYPE=usb_device\n",
        "/sys/bus/usb",
        Some((UPS_VENDOR, "0002")),
        true,
    ),
    (
        "usb1/1-1/1-1:1.0",
        "DEVTYPE=usb_interface\n",
        "/sys/bus/usb",
        None,
        false,
    ),
    (
        "usb1/1-1/1-1:1.0/ttyUSB0",
        "",
        "/sys/bus/usb-serial",
        None,
        false,
    ),
    (
        "usb1/1-1/1-1:1.0/ttyUSB0/tty/ttyUSB0",
        "MAJOR=188\nMINOR=0\nDEVNAME=ttyUSB0\n",
        "/sys/class/tty",
        None,
        true,
    ),
    (
        "usb1/1-1/1-1:1.0/0003:051D:0002.0001",
        "",
        "/sys/bus/hid",
        None,
        false,
    ),
    (
        "usb1/1-1/1-1:1.0/0003:051D:0002.0001/hidraw/hidraw0",
        "MAJOR=242\nMINOR=0\nDEVNAME=hidraw0\n",
        "/sys/class/hidraw",
        None,
        true,
    ),
    (
        "usb1/1-2",
        "MAJOR=189\nMINOR=2\nDEVNAME=bus/usb/001/003\nDEVTYPE=usb_device\n",
        "/sys/bus/usb",
        Some(("05ad", "0001")),
        true,
    ),
    (
        "usb1/1-2/1-2:1.0",
        "DEVTYPE=usb_interface\n",
        "/sys/bus/usb",
        None,
        false,
    ),
    (
        "usb1/1-2/1-2:1.0/ttyUSB1",
        "",
        "/sys/bus/usb-serial",
        None,
        false,
    ),
    (
        "usb1/1-2/1-2:1.0/ttyUSB1/tty/ttyUSB1",
        "MAJOR=188\nMINOR=1\nDEVNAME=ttyUSB1\n",
        "/sys/class/tty",
        None,
        true,
    ),
    (
        "usb1/1-3",
        "MAJOR=189\nMINOR=3\nDEVNAME=bus/usb/001/004\nDEVTYPE=usb_device\n",
        "/sys/bus/usb",
        Some((HUB_VENDOR, "3431")),
        // Not tested: a file that names the hub's vendor may grant the
        // hub's own node. What must never be reached is behind it.
        false,
    ),
    (
        "usb1/1-3/1-3.1",
        "MAJOR=189\nMINOR=4\nDEVNAME=bus/usb/001/005\nDEVTYPE=usb_device\n",
        "/sys/bus/usb",
        Some(("0bda", "0001")),
        true,
    ),
    (
        "usb1/1-3/1-3.1/1-3.1:1.0",
        "DEVTYPE=usb_interface\n",
        "/sys/bus/usb",
        None,
        false,
    ),
    (
        "usb1/1-3/1-3.1/1-3.1:1.0/ttyUSB2",
        "",
        "/sys/bus/usb-serial",
        None,
        false,
    ),
    (
        "usb1/1-3/1-3.1/1-3.1:1.0/ttyUSB2/tty/ttyUSB2",
        "MAJOR=188\nMINOR=2\nDEVNAME=ttyUSB2\n",
        "/sys/class/tty",
        None,
        true,
    ),
];

/// The vendor of the fake tree's one hub below the root hub (VIA, as on a
/// Raspberry Pi 4): a rule naming it under ATTRS reaches the device behind
/// it unless it keeps hubs out.
pub const HUB_VENDOR: &str = "2109";

/// The Linux Foundation's root hubs.
const ROOT_HUB: &str = "1d6b";

/// Where the fake tree is mounted: a sysfs dir no tested device lives in.
fn fake_usb_mount() -> Option<&'static str> {
    [
        "/sys/devices/software",
        "/sys/devices/breakpoint",
        "/sys/devices/tracepoint",
    ]
    .into_iter()
    .find(|d| Path::new(d).is_dir())
}

/// The shell snippet that builds the fake tree under `root`.
fn fake_usb_script(root: &str) -> String {
    let mut out = String::new();
    for (rel, uevent, subsystem, ids, _) in FAKE_USB {
        let dir = if rel.is_empty() {
            root.to_string()
        } else {
            format!("{root}/{rel}")
        };
        writeln!(out, "mkdir -p '{dir}'").unwrap();
        writeln!(out, "printf '{uevent}' >'{dir}/uevent'").unwrap();
        if !subsystem.is_empty() {
            writeln!(out, "ln -s '{subsystem}' '{dir}/subsystem'").unwrap();
        }
        if let Some((v, p)) = ids {
            // Hubs are device class 09; the others say 00 (class per
            // interface), as a HID UPS and a USB serial adapter do.
            let class = if [ROOT_HUB, HUB_VENDOR].contains(v) {
                "09"
            } else {
                "00"
            };
            writeln!(
                out,
                "echo {v} >'{dir}/idVendor'; echo {p} >'{dir}/idProduct'; echo {class} >'{dir}/bDeviceClass'"
            )
            .unwrap();
        }
    }
    out
}

fn fake_usb_devices(root: &str) -> Vec<Device> {
    let mut out = Vec::new();
    for (i, (rel, _, _, _, tested)) in FAKE_USB.iter().enumerate() {
        let _ = i;
        if !tested {
            continue;
        }
        // The nearest vendor: this entry's, or its closest ancestor's.
        let mut path = rel.to_string();
        let vendor = loop {
            let here = FAKE_USB[..=i]
                .iter()
                .find(|(r, ..)| *r == path)
                .and_then(|(_, _, _, ids, _)| *ids);
            if let Some((v, _)) = here {
                break Some(v.to_string());
            }
            match path.rfind('/') {
                Some(at) => path.truncate(at),
                None => break None,
            }
        };
        let reach = if vendor.as_deref() == Some(UPS_VENDOR) {
            Reach::Named
        } else {
            Reach::Stranger
        };
        out.push(Device {
            syspath: format!("{root}/{rel}"),
            sysname: rel.rsplit('/').next().unwrap().to_string(),
            kind: "fake-usb",
            vendor,
            reach,
        });
    }
    out
}

/// Where a rules file lives in the namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dir {
    /// `/run/udev/rules.d`: the candidates.
    Run,
    /// `/usr/lib/udev/rules.d`: system files a test put there.
    System,
}

/// One assignment (or other rule-attributed log line) udevd applied.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Effect {
    /// File name as given to the oracle.
    pub file: String,
    /// Which rules dir.
    pub dir: Dir,
    /// udevd's line number (physical lines, CR and NUL count as line ends).
    pub line: u32,
    /// OWNER, GROUP, MODE, LINK, RUN, NAME, SECLABEL, ATTR-WRITE,
    /// SYSCTL-WRITE, PROGRAM, IMPORT-PROGRAM, IMPORT-BUILTIN, IMPORT-FILE,
    /// or MSG for any other line udevd logged for this rule.
    pub key: String,
    /// The rest of udevd's line.
    pub value: String,
}

impl Effect {
    /// `FILE:LINE KEY VALUE`.
    pub fn render(&self) -> String {
        format!("{}:{} {} {}", self.file, self.line, self.key, self.value)
    }
}

/// How a load-time message affects the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LoadKind {
    /// udevd dropped the whole line (or the rest of the file).
    Dropped,
    /// A GOTO without a later LABEL: udevd removed the GOTO, the line stays.
    GotoIgnored,
    /// udevd corrected or ignored part of the line and kept it.
    Warning,
}

/// A message udevd printed while loading a rules file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LoadMessage {
    /// File name as given to the oracle.
    pub file: String,
    /// Which rules dir.
    pub dir: Dir,
    /// Line (0 for the whole file).
    pub line: u32,
    /// Dropped, GOTO ignored, or kept with a warning.
    pub kind: LoadKind,
    /// udevd's text.
    pub message: String,
}

/// What one `udevadm test` run did on one device.
#[derive(Debug, Clone)]
pub struct DeviceRun {
    /// Index into [`Oracle::devices`].
    pub device: usize,
    /// Rule-attributed lines (the sentinel's own are left out).
    pub effects: Vec<Effect>,
    /// `run:` lines: programs udevd would run after the rules.
    pub run: Vec<String>,
    /// Properties that differ from the baseline: name → (before, after).
    pub props: BTreeMap<String, (Option<String>, Option<String>)>,
    /// `/run/hb-marker*` files the run's programs created.
    pub markers: Vec<String>,
    /// `Failed to apply udev rules: …` (or the sentinel was never reached).
    pub aborted: Option<String>,
    /// The sentinel's logged no-op is missing: logging was turned down.
    pub log_silenced: bool,
    /// Every sentinel canary was logged: no earlier `:=` hid assignments.
    pub finals_intact: bool,
    /// udevadm's exit status.
    pub status: i32,
    /// Time of this udevadm run.
    pub elapsed: Duration,
    /// udevadm's stdout and stderr.
    pub stdout: String,
    /// udevadm's stderr.
    pub stderr: String,
}

impl DeviceRun {
    /// Nothing at all happened beyond the baseline.
    pub fn quiet(&self) -> bool {
        self.effects.is_empty()
            && self.run.is_empty()
            && self.props.is_empty()
            && self.markers.is_empty()
            && self.aborted.is_none()
            && !self.log_silenced
    }

    /// Everything this run did, without line numbers, sorted: what two
    /// readings of the same rules must agree on.
    pub fn signature(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .effects
            .iter()
            .map(|e| format!("{} {}", e.key, e.value))
            .collect();
        v.extend(self.run.iter().map(|r| format!("run: {r}")));
        v.extend(
            self.props
                .iter()
                .map(|(k, (a, b))| format!("property {k}: {a:?} -> {b:?}")),
        );
        v.extend(self.markers.iter().map(|m| format!("marker {m}")));
        if let Some(a) = &self.aborted {
            v.push(format!("aborted: {a}"));
        }
        if self.log_silenced {
            v.push("logging silenced".to_string());
        }
        v.sort();
        v
    }

    /// Human-readable list of what happened.
    pub fn describe(&self) -> Vec<String> {
        let mut v: Vec<String> = self.effects.iter().map(Effect::render).collect();
        v.extend(self.run.iter().map(|r| format!("run: '{r}'")));
        v.extend(
            self.props
                .iter()
                .map(|(k, (a, b))| format!("property {k}: {a:?} -> {b:?}")),
        );
        v.extend(
            self.markers
                .iter()
                .map(|m| format!("marker /run/{m} created")),
        );
        if let Some(a) = &self.aborted {
            v.push(format!("rule processing aborted: {a}"));
        }
        if self.log_silenced {
            v.push("udevd's logging was turned down (OPTIONS log_level)".to_string());
        }
        v
    }
}

/// What one namespace run did: per device, plus udevd's load messages.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// One per oracle device, in order.
    pub devices: Vec<DeviceRun>,
    /// Load-time messages about the candidate and system files.
    pub load: Vec<LoadMessage>,
    /// Wall time of the whole namespace run.
    pub elapsed: Duration,
}

impl Outcome {
    /// No device saw anything beyond the baseline.
    pub fn quiet(&self) -> bool {
        self.devices.iter().all(DeviceRun::quiet)
    }

    /// Quiet and udevd had nothing to say while loading.
    pub fn clean(&self) -> bool {
        self.quiet() && self.load.is_empty()
    }

    /// Per-device signatures.
    pub fn signatures(&self) -> Vec<Vec<String>> {
        self.devices.iter().map(DeviceRun::signature).collect()
    }

    /// What the candidate `file` did by itself in an attributable batch
    /// ([`Oracle::attributable`]): its own lines and load messages.
    pub fn only(&self, file: &str) -> Outcome {
        Outcome {
            devices: self
                .devices
                .iter()
                .map(|d| DeviceRun {
                    effects: d
                        .effects
                        .iter()
                        .filter(|e| e.dir == Dir::Run && e.file == file)
                        .cloned()
                        .collect(),
                    run: Vec::new(),
                    props: BTreeMap::new(),
                    markers: Vec::new(),
                    aborted: None,
                    log_silenced: false,
                    stdout: String::new(),
                    stderr: String::new(),
                    ..d.clone()
                })
                .collect(),
            load: self
                .load
                .iter()
                .filter(|m| m.dir == Dir::Run && m.file == file)
                .cloned()
                .collect(),
            elapsed: self.elapsed,
        }
    }
}

/// A rules file to install: its name in the rules dir and its bytes.
#[derive(Debug, Clone)]
pub struct RulesFile {
    /// File name (`[A-Za-z0-9._+@-]`, ends in `.rules`).
    pub name: String,
    /// Content.
    pub bytes: Vec<u8>,
}

impl RulesFile {
    /// A file.
    pub fn new(name: &str, bytes: &[u8]) -> RulesFile {
        RulesFile {
            name: name.to_string(),
            bytes: bytes.to_vec(),
        }
    }
}

/// Counters for the figures the tests print.
#[derive(Debug, Default)]
pub struct Stats {
    namespaces: AtomicU64,
    udevadm_runs: AtomicU64,
    namespace_nanos: AtomicU64,
    udevadm_nanos: AtomicU64,
    files: AtomicU64,
}

impl Stats {
    /// `N namespaces (avg X ms), N udevadm runs (avg Y ms), N files`.
    pub fn render(&self) -> String {
        let ns = self.namespaces.load(Ordering::Relaxed);
        let runs = self.udevadm_runs.load(Ordering::Relaxed);
        let avg = |nanos: &AtomicU64, n: u64| {
            if n == 0 {
                0.0
            } else {
                nanos.load(Ordering::Relaxed) as f64 / n as f64 / 1e6
            }
        };
        format!(
            "{ns} namespace runs (avg {:.1} ms each), {runs} udevadm test runs (avg {:.1} ms each), {} rules files installed",
            avg(&self.namespace_nanos, ns),
            avg(&self.udevadm_nanos, runs),
            self.files.load(Ordering::Relaxed)
        )
    }

    /// Snapshot of (namespace runs, udevadm runs).
    pub fn counts(&self) -> (u64, u64) {
        (
            self.namespaces.load(Ordering::Relaxed),
            self.udevadm_runs.load(Ordering::Relaxed),
        )
    }
}

/// The oracle: this machine's devices, the namespace script and baselines.
#[derive(Debug)]
pub struct Oracle {
    /// The devices every run covers.
    pub devices: Vec<Device>,
    udevadm: String,
    bash: String,
    fake_mount: Option<String>,
    hide: Vec<String>,
    host_ns: String,
    group: Option<Vec<u8>>,
    group_text: String,
    passwd: Option<Vec<u8>>,
    baseline: Vec<BTreeMap<String, String>>,
    /// Run counters.
    pub stats: Stats,
    /// Time spent finding devices and taking the baseline.
    pub setup: Duration,
}

static ORACLE: OnceLock<Result<Oracle, String>> = OnceLock::new();

/// The oracle, set up once per test binary; `None` (after printing `SKIP:
/// reason`) where it cannot run. Under `CI` a skip is a panic.
pub fn oracle() -> Option<&'static Oracle> {
    match ORACLE.get_or_init(Oracle::new) {
        Ok(o) => Some(o),
        Err(why) => {
            let msg = format!("SKIP: udevd oracle: {why}");
            if std::env::var_os("CI").is_some() {
                panic!("{msg}; CI must run the oracle tests");
            }
            eprintln!("{msg}");
            None
        }
    }
}

fn find_in_path(name: &str) -> Option<String> {
    ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
        .iter()
        .map(|d| format!("{d}/{name}"))
        .find(|p| Path::new(p).is_file())
}

/// The `idVendor` of a sysfs device or its nearest parent that has one.
fn nearest_vendor(syspath: &Path) -> Option<String> {
    let mut p = std::fs::canonicalize(syspath).ok()?;
    loop {
        if let Ok(v) = std::fs::read_to_string(p.join("idVendor")) {
            return Some(v.trim().to_string());
        }
        if !p.pop() || p == Path::new("/sys/devices") || p == Path::new("/") {
            return None;
        }
    }
}

fn sysname(syspath: &str) -> String {
    let real = std::fs::canonicalize(syspath).unwrap_or_else(|_| PathBuf::from(syspath));
    real.file_name().unwrap().to_string_lossy().into_owned()
}

fn class_entries(class: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(format!("/sys/class/{class}"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| Path::new(&format!("/sys/class/{class}/{n}/dev")).is_file())
        .collect();
    v.sort();
    v
}

/// A tty (ttyS0 if present, and `tty`), a block device that is not a loop
/// or RAM disk, loop0, a mem device (null), and up to two USB devices.
fn discover_devices() -> Vec<Device> {
    let mut out: Vec<(String, &'static str)> = Vec::new();
    let ttys = class_entries("tty");
    let serial = if ttys.iter().any(|t| t == "ttyS0") {
        Some("ttyS0".to_string())
    } else {
        ttys.iter().find(|t| *t != "tty").cloned()
    };
    let controlling = ttys.iter().find(|t| *t == "tty").cloned();
    for t in serial.into_iter().chain(controlling) {
        out.push((format!("/sys/class/tty/{t}"), "tty"));
    }
    let blocks = class_entries("block");
    if let Some(b) = blocks.iter().find(|b| {
        !b.starts_with("loop")
            && !b.starts_with("ram")
            && !b.starts_with("zram")
            && !Path::new(&format!("/sys/class/block/{b}/partition")).exists()
    }) {
        out.push((format!("/sys/class/block/{b}"), "block"));
    }
    if blocks.iter().any(|b| b == "loop0") {
        out.push(("/sys/class/block/loop0".to_string(), "block"));
    }
    let mems = class_entries("mem");
    if let Some(m) = ["null"]
        .iter()
        .map(|s| s.to_string())
        .find(|m| mems.contains(m))
        .or_else(|| mems.first().cloned())
    {
        out.push((format!("/sys/class/mem/{m}"), "mem"));
    }
    let mut usb: Vec<String> = std::fs::read_dir("/sys/bus/usb/devices")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| format!("/sys/bus/usb/devices/{}", e.file_name().to_string_lossy()))
        .filter(|p| Path::new(&format!("{p}/idVendor")).is_file())
        .collect();
    usb.sort();
    out.extend(usb.into_iter().take(2).map(|p| (p, "usb")));
    out.into_iter()
        .map(|(syspath, kind)| {
            let vendor = nearest_vendor(Path::new(&syspath));
            Device {
                reach: if vendor.is_some() {
                    Reach::Named
                } else {
                    Reach::NoVendor
                },
                vendor,
                sysname: sysname(&syspath),
                syspath,
                kind,
            }
        })
        .collect()
}

/// `/etc/group` or `/etc/passwd` with the [`ACCOUNTS`] it lacks added
/// (system ids counted down from 999); `None` when nothing is missing.
fn accounts_overlay(path: &str, user: bool, group_text: &str) -> Option<Vec<u8>> {
    let text = std::fs::read_to_string(path).ok()?;
    let names: BTreeSet<&str> = text.lines().filter_map(|l| l.split(':').next()).collect();
    let used: BTreeSet<u32> = text
        .lines()
        .filter_map(|l| l.split(':').nth(2)?.parse().ok())
        .collect();
    let missing: Vec<&&str> = ACCOUNTS.iter().filter(|n| !names.contains(**n)).collect();
    if missing.is_empty() {
        return None;
    }
    let mut out = text.clone();
    if !out.ends_with('\n') && !out.is_empty() {
        out.push('\n');
    }
    let mut id = 999;
    for name in missing {
        while used.contains(&id) {
            id -= 1;
        }
        if user {
            // The user's primary group: the group of the same name if any.
            let gid = group_text
                .lines()
                .find(|l| l.split(':').next() == Some(name))
                .and_then(|l| l.split(':').nth(2))
                .unwrap_or("65534")
                .to_string();
            writeln!(out, "{name}:x:{id}:{gid}::/nonexistent:/usr/sbin/nologin").unwrap();
        } else {
            writeln!(out, "{name}:x:{id}:").unwrap();
        }
        id -= 1;
    }
    Some(out.into_bytes())
}

/// The script run in the namespace by bash: `SCRIPT STAGE HOSTNS UDEVADM
/// HIDE DEV…`. `set -e` makes any failed mount end it before udevadm runs.
/// Fresh read-only sysfs and proc instances over /sys and /proc (hiding
/// their submounts, such as the cgroup trees) are one mount each; where
/// they cannot be mounted, every mount under them is remounted read-only.
const SCRIPT: &str = r#"set -eu
stage="$1"; hostns="$2"; udevadm="$3"; hide="$4"; shift 4
if [ "$(readlink /proc/self/ns/mnt)" = "$hostns" ]; then
    echo "hb-oracle: still in the host's mount namespace" >&2; exit 90
fi
mount -t tmpfs -o mode=0755 hb-run /run
mkdir -p /run/hb /run/udev/rules.d
mount --bind "$stage" /run/hb
[ -e /run/hb/.hb-stage ] || { echo "hb-oracle: stage not visible" >&2; exit 91; }
for d in $hide; do mount -t tmpfs -o mode=0755 hb-rules "$d"; done
mount -t tmpfs -o mode=0755 hb-dev /dev
mknod -m 0666 /dev/null c 1 3
mount -t tmpfs -o mode=1777 hb-tmp /tmp
if [ -d /var/tmp ]; then mount -t tmpfs -o mode=1777 hb-vartmp /var/tmp; fi
if [ -f /run/hb/group ]; then mount --bind /run/hb/group /etc/group; fi
if [ -f /run/hb/passwd ]; then mount --bind /run/hb/passwd /etc/passwd; fi
if [ -n "$(ls -A /run/udev/rules.d)" ]; then echo "hb-oracle: rules dir not empty" >&2; exit 92; fi
for f in /run/hb/rules/*; do if [ -e "$f" ]; then cp "$f" /run/udev/rules.d/; fi; done
if [ -n "$(ls -A /run/hb/system)" ]; then
    # Only into the tmpfs over the system dir, never the host's.
    case " $hide " in *" /usr/lib/udev/rules.d "*) ;; *) echo "hb-oracle: /usr/lib/udev/rules.d not hidden" >&2; exit 94 ;; esac
    cp /run/hb/system/* /usr/lib/udev/rules.d/
fi
if ! { mount -t sysfs -o ro,nosuid,nodev,noexec hb-sys /sys && mount -t proc -o ro,nosuid,nodev,noexec hb-proc /proc; } 2>/dev/null; then
    awk '$2 ~ /^\/(sys|proc)(\/|$)/ { print $2 }' /proc/self/mounts >/run/hb-ro-mounts
    while read -r m; do mount -o remount,bind,ro "$m"; done </run/hb-ro-mounts
    rm -f /run/hb-ro-mounts
fi
if [ -f /run/hb/fake-usb.sh ]; then
    mount -t tmpfs -o mode=0755 hb-fake-usb "$HB_FAKE_MNT"
    . /run/hb/fake-usb.sh
    mount -o remount,ro "$HB_FAKE_MNT"
fi
# access(2) says EROFS without writing anything.
for f in /proc/sys/kernel/hostname "${@/%//uevent}"; do
    if [ -w "$f" ]; then echo "hb-oracle: $f is still writable" >&2; exit 93; fi
done
cd /run
i=0
for dev in "$@"; do
    s=$EPOCHREALTIME
    rc=0
    # A rule that makes udevd spin (it has happened: a long SYMLINK) is a
    # finding, not a hung suite: killed after 60 s, exit 137.
    SYSTEMD_DEVICE_VERIFY_SYSFS=0 timeout -s KILL 60 setpriv --bounding-set="$HB_DROP_CAPS" --no-new-privs "$udevadm" test --action=add "$dev" \
        >"/run/hb/out/$i.out" 2>"/run/hb/out/$i.err" </dev/null || rc=$?
    e=$EPOCHREALTIME
    echo "$rc ${s/./} ${e/./}" >"/run/hb/out/$i.status"
    : >"/run/hb/out/$i.markers"
    for m in /run/hb-marker*; do
        if [ -e "$m" ]; then echo "${m#/run/}" >>"/run/hb/out/$i.markers"; rm -rf "$m"; fi
    done
    i=$((i + 1))
done
"#;

/// Rules dirs udevd reads besides /run, each once (merged /usr: /lib is
/// /usr/lib).
fn rules_dirs() -> Vec<String> {
    let mut seen: BTreeSet<PathBuf> = BTreeSet::new();
    let mut out = Vec::new();
    for d in [
        "/etc/udev/rules.d",
        "/usr/local/lib/udev/rules.d",
        "/usr/lib/udev/rules.d",
        "/lib/udev/rules.d",
    ] {
        let Ok(real) = std::fs::canonicalize(d) else {
            continue;
        };
        if real.is_dir() && seen.insert(real.clone()) {
            out.push(real.to_string_lossy().into_owned());
        }
    }
    out
}

fn nonce() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    format!(
        "{:x}{:x}{:x}",
        t,
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn valid_name(n: &str) -> bool {
    n.ends_with(".rules")
        && !n.starts_with('.')
        && n.len() <= 200
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+@-".contains(&b))
}

impl Oracle {
    fn new() -> Result<Oracle, String> {
        let started = Instant::now();
        if !nix::unistd::geteuid().is_root() {
            return Err("needs root (mount namespaces, tmpfs mounts)".into());
        }
        let udevadm = find_in_path("udevadm").ok_or("no udevadm (Debian package udev)")?;
        let bash = find_in_path("bash").ok_or("no bash")?;
        for tool in ["unshare", "setpriv", "mount", "mknod", "awk"] {
            find_in_path(tool).ok_or(format!("no {tool} (util-linux/coreutils)"))?;
        }
        let host_ns = std::fs::read_link("/proc/self/ns/mnt")
            .map_err(|e| format!("cannot read /proc/self/ns/mnt: {e}"))?
            .to_string_lossy()
            .into_owned();
        let mut devices = discover_devices();
        if !devices.iter().any(|d| d.kind == "tty") || devices.len() < 2 {
            return Err(format!("too few devices in /sys/class: {devices:?}"));
        }
        let fake_mount = fake_usb_mount().map(str::to_string);
        if let Some(m) = &fake_mount {
            devices.extend(fake_usb_devices(&format!("{m}/hb-usb")));
        }
        let hide = rules_dirs();
        for d in hide.iter().chain(devices.iter().map(|d| &d.syspath)) {
            if d.contains(|c: char| c.is_whitespace() || c == '\'' || c == '"') {
                return Err(format!("unusual path {d:?}"));
            }
        }
        let group_text = std::fs::read_to_string("/etc/group").unwrap_or_default();
        let group = accounts_overlay("/etc/group", false, &group_text);
        let group_text = group
            .as_ref()
            .map(|g| String::from_utf8_lossy(g).into_owned())
            .unwrap_or(group_text);
        let passwd = accounts_overlay("/etc/passwd", true, &group_text);
        let mut oracle = Oracle {
            devices,
            udevadm,
            bash,
            fake_mount,
            hide,
            host_ns,
            group,
            group_text: group_text.clone(),
            passwd,
            baseline: Vec::new(),
            stats: Stats::default(),
            setup: Duration::ZERO,
        };
        let raw = oracle.run_raw(&[], &[])?;
        for (i, (props, _, _, stderr, status)) in raw.devices.iter().enumerate() {
            if *status != 0 || !props.contains_key("HB_SENTINEL") {
                return Err(format!(
                    "udevadm test on {} failed (status {status}): {}",
                    oracle.devices[i].syspath,
                    stderr.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
                ));
            }
        }
        oracle.baseline = raw
            .devices
            .iter()
            .map(|(props, ..)| {
                let mut p = props.clone();
                p.remove("HB_SENTINEL");
                p
            })
            .collect();
        oracle.setup = started.elapsed();
        Ok(oracle)
    }

    /// One line per device: `ttyS0 (tty, /sys/class/tty/ttyS0, no vendor)`.
    pub fn describe_devices(&self) -> String {
        self.devices
            .iter()
            .map(|d| {
                format!(
                    "{} ({}, {}{})",
                    d.sysname,
                    d.kind,
                    d.syspath,
                    match (&d.vendor, d.reach) {
                        (None, _) => ", no vendor".to_string(),
                        (Some(v), Reach::Named) => format!(", vendor {v}"),
                        (Some(v), _) => format!(", vendor {v} named by no candidate"),
                    }
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Installs `files` in /run/udev/rules.d (and `system` in
    /// /usr/lib/udev/rules.d) under their own names and runs udevadm test
    /// on every device.
    pub fn run(&self, files: &[RulesFile], system: &[RulesFile]) -> Outcome {
        for f in files.iter().chain(system) {
            assert!(valid_name(&f.name), "bad rules file name {:?}", f.name);
            assert!(
                f.name.as_str() < SENTINEL,
                "{} would sort after the sentinel",
                f.name
            );
        }
        let raw = match self.run_raw(files, system) {
            Ok(r) => r,
            Err(e) => panic!("oracle run failed: {e}"),
        };
        let names: BTreeMap<(Dir, &str), &str> = files
            .iter()
            .map(|f| ((Dir::Run, f.name.as_str()), f.name.as_str()))
            .chain(
                system
                    .iter()
                    .map(|f| ((Dir::System, f.name.as_str()), f.name.as_str())),
            )
            .collect();
        let mut devices = Vec::new();
        let mut load: BTreeSet<LoadMessage> = BTreeSet::new();
        for (i, (props, markers, stdout, stderr, status)) in raw.devices.into_iter().enumerate() {
            let dev = &self.devices[i];
            let parsed = parse_stderr(&stderr, &dev.sysname, &raw.nonce);
            load.extend(
                parsed
                    .load
                    .into_iter()
                    .filter(|m| names.contains_key(&(m.dir, m.file.as_str()))),
            );
            let run = stdout
                .lines()
                .filter_map(|l| l.strip_prefix("run: '")?.strip_suffix('\''))
                .filter(|r| *r != SENTINEL_RUN)
                .map(str::to_string)
                .collect();
            let reached = props.get("HB_SENTINEL").map(String::as_str) == Some(raw.nonce.as_str());
            let mut after = props.clone();
            after.remove("HB_SENTINEL");
            let mut delta = BTreeMap::new();
            let base = &self.baseline[i];
            for k in base.keys().chain(after.keys()) {
                if k == "USEC_INITIALIZED" {
                    continue;
                }
                let (a, b) = (base.get(k), after.get(k));
                if a != b {
                    delta.insert(k.clone(), (a.cloned(), b.cloned()));
                }
            }
            let aborted = parsed.aborted.or_else(|| {
                (!reached).then(|| match status {
                    137 => "udevadm test hung and was killed after 60 s".to_string(),
                    _ => "the sentinel file was never reached".to_string(),
                })
            });
            devices.push(DeviceRun {
                device: i,
                effects: parsed.effects,
                run,
                props: delta,
                markers,
                aborted,
                log_silenced: reached && !parsed.sentinel_logged,
                finals_intact: parsed.canaries == CANARIES.len(),
                status,
                elapsed: raw.times[i],
                stdout,
                stderr,
            });
        }
        Outcome {
            devices,
            load: load.into_iter().collect(),
            elapsed: raw.elapsed,
        }
    }

    /// One file alone, under its own name.
    pub fn run_one(&self, name: &str, bytes: &[u8]) -> Outcome {
        self.run(&[RulesFile::new(name, bytes)], &[])
    }

    /// Batch name of file `i`: `c00042-NAME` (sorts by index, before the
    /// sentinel; the original name keeps it readable).
    pub fn batch_name(i: usize, name: &str) -> String {
        let clean: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._+@-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .take(120)
            .collect();
        let clean = clean.strip_suffix(".rules").unwrap_or(&clean).to_string();
        format!("c{i:05}-{clean}.rules")
    }

    /// Runs the files together, renamed with [`Oracle::batch_name`]; when
    /// anything shows up, bisects until each effect is one file's own.
    /// Returns, per file, `None` when it was cleared in a quiet batch, or
    /// its own solo outcome. `want_load`: a load message also counts as
    /// something showing up.
    pub fn judge_files(&self, files: &[RulesFile], want_load: bool) -> Vec<Option<Outcome>> {
        let mut out: Vec<Option<Outcome>> = vec![None; files.len()];
        let idx: Vec<usize> = (0..files.len()).collect();
        self.bisect(files, &idx, want_load, &mut out);
        out
    }

    fn batch(files: &[RulesFile], idx: &[usize]) -> Vec<RulesFile> {
        idx.iter()
            .map(|&i| RulesFile::new(&Self::batch_name(i, &files[i].name), &files[i].bytes))
            .collect()
    }

    fn bisect(
        &self,
        files: &[RulesFile],
        idx: &[usize],
        want_load: bool,
        out: &mut [Option<Outcome>],
    ) {
        if idx.is_empty() {
            return;
        }
        let outcome = self.run(&Self::batch(files, idx), &[]);
        let quiet = outcome.quiet() && (!want_load || outcome.load.is_empty());
        if quiet {
            return;
        }
        if idx.len() == 1 {
            out[idx[0]] = Some(outcome);
            return;
        }
        if self.attributable(&outcome, true) {
            for &i in idx {
                let mine = outcome.only(&Self::batch_name(i, &files[i].name));
                if !mine.quiet() || (want_load && !mine.load.is_empty()) {
                    out[i] = Some(mine);
                }
            }
            return;
        }
        let (a, b) = idx.split_at(idx.len() / 2);
        self.bisect(files, a, want_load, out);
        self.bisect(files, b, want_load, out);
    }

    /// Whether every effect in a batch outcome is one file's own, told by
    /// the file name on udevd's line: rule processing reached the sentinel
    /// with logging on and no value made final, no program left a marker,
    /// nothing was queued to run, and no property changed but DEVLINKS
    /// (from the LINK lines) and, with `uaccess_ok`, tags gaining only
    /// uaccess on the UPS (allowed there, whoever added it).
    pub fn attributable(&self, outcome: &Outcome, uaccess_ok: bool) -> bool {
        outcome.devices.iter().all(|d| {
            d.aborted.is_none()
                && !d.log_silenced
                && d.finals_intact
                && d.markers.is_empty()
                && d.run.is_empty()
                && d.props.iter().all(|(k, (a, b))| match k.as_str() {
                    "DEVLINKS" => true,
                    // Only where the tag is allowed: elsewhere it must be
                    // pinned on its file.
                    "TAGS" | "CURRENT_TAGS"
                        if uaccess_ok && self.devices[d.device].reach == Reach::Named =>
                    {
                        let (a, b) = (tag_set(a.as_deref()), tag_set(b.as_deref()));
                        a.is_subset(&b) && b.difference(&a).all(|t| t == "uaccess")
                    }
                    _ => false,
                })
        })
    }

    /// Runs `raw[i]` and `inst[i]` (the same file as the container wrote
    /// it and as hostbridge installs it) and returns, for each pair whose
    /// effects differ on some device, both solo outcomes. Batches first;
    /// a pair that differs in a batch is confirmed alone.
    pub fn compare_files(
        &self,
        raw: &[RulesFile],
        inst: &[RulesFile],
    ) -> Vec<(usize, Outcome, Outcome)> {
        assert_eq!(raw.len(), inst.len());
        let mut found = Vec::new();
        let idx: Vec<usize> = (0..raw.len()).collect();
        self.compare(raw, inst, &idx, &mut found);
        found.sort_by_key(|(i, ..)| *i);
        found
    }

    fn compare(
        &self,
        raw: &[RulesFile],
        inst: &[RulesFile],
        idx: &[usize],
        found: &mut Vec<(usize, Outcome, Outcome)>,
    ) {
        if idx.is_empty() {
            return;
        }
        let a = self.run(&Self::batch(raw, idx), &[]);
        let b = self.run(&Self::batch(inst, idx), &[]);
        if a.quiet() && b.quiet() {
            return;
        }
        if idx.len() == 1 {
            if a.signatures() != b.signatures() {
                found.push((idx[0], a, b));
            }
            return;
        }
        if self.attributable(&a, false) && self.attributable(&b, false) {
            for &i in idx {
                let name = Self::batch_name(i, &raw[i].name);
                if a.only(&name).signatures() != b.only(&name).signatures() {
                    self.compare(raw, inst, &[i], found);
                }
            }
            return;
        }
        let (l, r) = idx.split_at(idx.len() / 2);
        self.compare(raw, inst, l, found);
        self.compare(raw, inst, r, found);
    }

    fn run_raw(&self, files: &[RulesFile], system: &[RulesFile]) -> Result<RawRun, String> {
        let started = Instant::now();
        let stage = tempfile::Builder::new()
            .prefix("hb-oracle-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let s = stage.path();
        for d in ["rules", "system", "out"] {
            std::fs::create_dir(s.join(d)).map_err(|e| e.to_string())?;
        }
        std::fs::write(s.join(".hb-stage"), b"").map_err(|e| e.to_string())?;
        let nonce = nonce();
        let sentinel = format!(
            "# hostbridge oracle sentinel: processing reached the last file, logging is on, no := made a value final\nENV{{HB_SENTINEL}}=\"{nonce}\"\nIMPORT{{file}}=\"/run/hb-sentinel-{nonce}\"\nOWNER=\"65534\", GROUP=\"65534\", MODE=\"0600\", SYMLINK+=\"hb-sentinel\", RUN+=\"{SENTINEL_RUN}\"\n"
        );
        std::fs::write(s.join("rules").join(SENTINEL), sentinel).map_err(|e| e.to_string())?;
        for f in files {
            std::fs::write(s.join("rules").join(&f.name), &f.bytes).map_err(|e| e.to_string())?;
        }
        for f in system {
            std::fs::write(s.join("system").join(&f.name), &f.bytes).map_err(|e| e.to_string())?;
        }
        if let Some(m) = &self.fake_mount {
            std::fs::write(
                s.join("fake-usb.sh"),
                fake_usb_script(&format!("{m}/hb-usb")),
            )
            .map_err(|e| e.to_string())?;
        }
        if let Some(g) = &self.group {
            std::fs::write(s.join("group"), g).map_err(|e| e.to_string())?;
        }
        if let Some(p) = &self.passwd {
            std::fs::write(s.join("passwd"), p).map_err(|e| e.to_string())?;
        }
        let script = s.join("oracle.sh");
        std::fs::write(&script, SCRIPT).map_err(|e| e.to_string())?;
        let out = Command::new("unshare")
            .args(["-m", "-u", "-i", "-n", "--propagation", "private", "--"])
            .arg(&self.bash)
            .arg(&script)
            .arg(s)
            .arg(&self.host_ns)
            .arg(&self.udevadm)
            .arg(self.hide.join(" "))
            .args(self.devices.iter().map(|d| &d.syspath))
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LANG", "C")
            .env("SYSTEMD_LOG_LEVEL", "debug")
            .env("SYSTEMD_LOG_TARGET", "console")
            .env("SYSTEMD_LOG_COLOR", "0")
            .env("HB_DROP_CAPS", DROP_CAPS)
            .env(
                "HB_FAKE_MNT",
                self.fake_mount.as_deref().unwrap_or_default(),
            )
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("unshare: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "namespace script failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let mut devices = Vec::new();
        let mut times = Vec::new();
        for i in 0..self.devices.len() {
            let read = |ext: &str| {
                std::fs::read(s.join("out").join(format!("{i}.{ext}")))
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .map_err(|e| format!("no {ext} output for device {i}: {e}"))
            };
            let stdout = read("out")?;
            let stderr = read("err")?;
            let status_line = read("status")?;
            let mut it = status_line.split_whitespace();
            let status: i32 = it.next().and_then(|x| x.parse().ok()).unwrap_or(-1);
            let start: u64 = it.next().and_then(|x| x.parse().ok()).unwrap_or(0);
            let end: u64 = it.next().and_then(|x| x.parse().ok()).unwrap_or(0);
            // EPOCHREALTIME without its dot: microseconds.
            let nanos = end.saturating_sub(start) * 1000;
            times.push(Duration::from_nanos(nanos));
            self.stats.udevadm_runs.fetch_add(1, Ordering::Relaxed);
            self.stats.udevadm_nanos.fetch_add(nanos, Ordering::Relaxed);
            let markers: Vec<String> = read("markers")?.lines().map(str::to_string).collect();
            let props = parse_properties(&stdout);
            devices.push((props, markers, stdout, stderr, status));
        }
        let elapsed = started.elapsed();
        self.stats.namespaces.fetch_add(1, Ordering::Relaxed);
        self.stats
            .namespace_nanos
            .fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
        self.stats
            .files
            .fetch_add(files.len() as u64, Ordering::Relaxed);
        Ok(RawRun {
            devices,
            times,
            nonce,
            elapsed,
        })
    }
}

type RawDevice = (BTreeMap<String, String>, Vec<String>, String, String, i32);

struct RawRun {
    devices: Vec<RawDevice>,
    times: Vec<Duration>,
    nonce: String,
    elapsed: Duration,
}

/// `KEY=value` lines of udevadm test's stdout (after its banner), without
/// the sentinel's own link.
fn parse_properties(stdout: &str) -> BTreeMap<String, String> {
    stdout
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once('=')?;
            let ok = !k.is_empty()
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
            if k == "DEVLINKS" {
                let links: Vec<&str> = v
                    .split(' ')
                    .filter(|l| !l.is_empty() && *l != "/dev/hb-sentinel")
                    .collect();
                return (!links.is_empty()).then(|| (k.to_string(), links.join(" ")));
            }
            ok.then(|| (k.to_string(), v.to_string()))
        })
        .collect()
}

struct Parsed {
    effects: Vec<Effect>,
    load: Vec<LoadMessage>,
    aborted: Option<String>,
    sentinel_logged: bool,
    canaries: usize,
}

const DIRS: &[(&str, Dir)] = &[
    ("/run/udev/rules.d/", Dir::Run),
    ("/usr/lib/udev/rules.d/", Dir::System),
];

/// Splits `PATH:LINE[:] rest` for a path in one of [`DIRS`].
fn split_located(s: &str) -> Option<(Dir, String, u32, String)> {
    let (prefix, dir) = DIRS.iter().find(|(p, _)| s.starts_with(p))?;
    let rest = &s[prefix.len()..];
    let colon = rest.find(':')?;
    let name = &rest[..colon];
    let after = &rest[colon + 1..];
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    let line: u32 = digits.parse().ok()?;
    let msg = after[digits.len()..].trim_start_matches(':').trim_start();
    Some((*dir, name.to_string(), line, msg.to_string()))
}

/// How a load-time message affects its line (udev-rules.c, rule_add_line
/// and parse_token: an error return drops the whole line; the warnings
/// listed here keep it).
fn load_kind(msg: &str) -> LoadKind {
    if msg.contains("has no matching label") {
        return LoadKind::GotoIgnored;
    }
    const KEPT: &[&str] = &[
        "Invalid value for OPTIONS key",
        "operator, assuming",
        "Contains multiple GOTO keys",
        "must be specified as",
        "link may not be available",
        "Direct reference to parent",
        // check_value_format_and_warn / check_attr_format_and_warn log
        // "…, ignoring." but keep the token.
        "(char ",
        "is marked executable",
        "is marked world-writable",
        "Found builtin command",
    ];
    if KEPT.iter().any(|k| msg.contains(k)) {
        LoadKind::Warning
    } else {
        LoadKind::Dropped
    }
}

fn classify(msg: &str) -> (String, String) {
    const PREFIXES: &[(&str, &str)] = &[
        ("OWNER ", "OWNER"),
        ("GROUP ", "GROUP"),
        ("MODE ", "MODE"),
        ("LINK ", "LINK"),
        ("RUN ", "RUN"),
        ("NAME ", "NAME"),
        ("SECLABEL", "SECLABEL"),
        ("ATTR ", "ATTR-WRITE"),
        ("SYSCTL ", "SYSCTL-WRITE"),
        ("Running PROGRAM ", "PROGRAM"),
        (
            "Importing properties from results of builtin command ",
            "IMPORT-BUILTIN",
        ),
        ("Importing properties from results of ", "IMPORT-PROGRAM"),
        ("Importing properties from ", "IMPORT-FILE"),
    ];
    for (p, k) in PREFIXES {
        if let Some(rest) = msg.strip_prefix(p) {
            let v = if *k == "SECLABEL" { msg } else { rest };
            return (k.to_string(), v.to_string());
        }
    }
    ("MSG".to_string(), msg.to_string())
}

fn parse_stderr(stderr: &str, sysname: &str, nonce: &str) -> Parsed {
    let dev_prefix = format!("{sysname}: ");
    let sentinel_import = format!("Importing properties from '/run/hb-sentinel-{nonce}'");
    let mut p = Parsed {
        effects: Vec::new(),
        load: Vec::new(),
        aborted: None,
        sentinel_logged: false,
        canaries: 0,
    };
    for line in stderr.lines() {
        if let Some(rest) = line.strip_prefix(&dev_prefix) {
            if let Some(why) = rest.strip_prefix("Failed to apply udev rules: ") {
                p.aborted = Some(why.to_string());
                continue;
            }
            let Some((dir, file, line_nr, msg)) = split_located(rest) else {
                continue;
            };
            if dir == Dir::Run && file == SENTINEL {
                if msg == sentinel_import {
                    p.sentinel_logged = true;
                }
                if CANARIES.contains(&msg.as_str()) {
                    p.canaries += 1;
                }
                continue;
            }
            let (key, value) = classify(&msg);
            p.effects.push(Effect {
                file,
                dir,
                line: line_nr,
                key,
                value,
            });
        } else if let Some((dir, file, line_nr, msg)) = split_located(line) {
            p.load.push(LoadMessage {
                kind: load_kind(&msg),
                file,
                dir,
                line: line_nr,
                message: msg,
            });
        } else if let Some(rest) = line.strip_prefix("Failed to read rules file ") {
            // The whole rest of the file (read_line: a line over 16 KiB).
            if let Some((dir_prefix, dir)) = DIRS.iter().find(|(d, _)| rest.starts_with(d)) {
                let tail = &rest[dir_prefix.len()..];
                let name = tail.split([',', ' ']).next().unwrap_or_default();
                p.load.push(LoadMessage {
                    file: name.to_string(),
                    dir: *dir,
                    line: 0,
                    kind: LoadKind::Dropped,
                    message: line.to_string(),
                });
            }
        } else if let Some(rest) = line.strip_prefix("Configuration file ")
            && let Some((d, dir)) = DIRS.iter().find(|(d, _)| rest.starts_with(d))
        {
            // fd_warn_permissions: marked executable or world-writable.
            let name = rest[d.len()..].split(' ').next().unwrap_or_default();
            p.load.push(LoadMessage {
                file: name.to_string(),
                dir: *dir,
                line: 0,
                kind: LoadKind::Warning,
                message: line.to_string(),
            });
        }
    }
    p
}

/// Bytes as a Rust byte-string body: printable ASCII as is, `\\`, `\"`,
/// `\n`, `\r`, `\t`, `\0`, other bytes `\xNN`. Paste into `b"…"` or
/// `printf '%b'`.
pub fn escape(bytes: &[u8]) -> String {
    let mut s = String::new();
    for &b in bytes {
        match b {
            b'\\' => s.push_str("\\\\"),
            b'"' => s.push_str("\\\""),
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            b'\t' => s.push_str("\\t"),
            0 => s.push_str("\\0"),
            0x20..=0x7e => s.push(b as char),
            _ => write!(s, "\\x{b:02x}").unwrap(),
        }
    }
    s
}

/// Which groups a grant may name.
#[derive(Debug, Clone)]
pub enum Groups {
    /// Any group but the privileged ones (`allow_groups` empty).
    Unprivileged,
    /// Only these (`allow_groups: [...]`).
    Only(Vec<String>),
}

/// Names a LINK must never take: nodes and sockets other programs trust.
fn link_hijacks(name: &str) -> bool {
    const SPECIAL: &[&str] = &[
        "log",
        "stdin",
        "stdout",
        "stderr",
        "console",
        "null",
        "zero",
        "full",
        "random",
        "urandom",
        "kmsg",
        "mem",
        "kmem",
        "port",
        "tty",
        "ptmx",
        "fd",
        "core",
        "initctl",
        "rtc",
        "shm",
        "pts",
        "mqueue",
        "hugepages",
        "root",
        "watchdog",
    ];
    let n = name.trim_start_matches('/');
    SPECIAL.contains(&n)
        || name.starts_with('/')
        || name
            .split('/')
            .any(|c| c == ".." || c == "." || c.is_empty())
        || [
            "disk/", "mapper/", "block/", "char/", "bus/", "input/", "net/", "dri/", "snd/",
            "vfio/",
        ]
        .iter()
        .any(|p| n.starts_with(p))
}

impl Oracle {
    /// The group a GROUP effect names: udevd logs the gid, shown by name
    /// where this host has one.
    pub fn effect_group(&self, e: &Effect) -> String {
        e.value
            .trim()
            .parse::<u32>()
            .ok()
            .and_then(|g| self.group_name(g))
            .unwrap_or_else(|| e.value.clone())
    }

    /// The group name of `gid` in the namespace (with the added accounts).
    pub fn group_name(&self, gid: u32) -> Option<String> {
        self.group_text.lines().find_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            (f.nth(1)?.parse::<u32>().ok()? == gid).then(|| name.to_string())
        })
    }
}

/// Why a MODE udevd applied is not a permission the policy may grant, if
/// it is not one.
fn unsafe_mode(value: &str) -> Option<&'static str> {
    match u32::from_str_radix(value.trim(), 8) {
        Ok(m) if m & 0o002 != 0 => Some("world-writable"),
        Ok(m) if m & 0o7000 != 0 => Some("setuid, setgid or sticky"),
        Ok(_) => None,
        Err(_) => Some("not an octal mode"),
    }
}

/// What a permissions-only file may do, judged from udevd's own output:
/// on a device without a vendor, or whose vendor no candidate names,
/// nothing at all; on the UPS (or a real USB device) only OWNER, GROUP
/// (allowed, unprivileged) and MODE (not world-writable, no special bits),
/// a LINK that hijacks no well-known name, and the uaccess tag. udevd
/// having anything to say while loading the file is a violation too.
/// Returns one line per violation.
pub fn policy_violations(oracle: &Oracle, outcome: &Outcome, groups: &Groups) -> Vec<String> {
    let mut v = Vec::new();
    for m in &outcome.load {
        v.push(format!(
            "udevd at load: {}:{} {:?}: {}",
            m.file, m.line, m.kind, m.message
        ));
    }
    for d in &outcome.devices {
        let dev = &oracle.devices[d.device];
        if dev.reach != Reach::Named {
            let why = match dev.reach {
                Reach::NoVendor => "no vendor".to_string(),
                _ => format!(
                    "vendor {} named by no candidate",
                    dev.vendor.as_deref().unwrap_or("?")
                ),
            };
            v.extend(
                d.describe()
                    .into_iter()
                    .map(|s| format!("{} ({why}): {s}", dev.sysname)),
            );
            continue;
        }
        let at = |s: String| {
            format!(
                "{} (vendor {}): {s}",
                dev.sysname,
                dev.vendor.as_deref().unwrap_or("?")
            )
        };
        for e in &d.effects {
            let bad = match e.key.as_str() {
                "OWNER" => None,
                "MODE" => unsafe_mode(&e.value),
                "GROUP" => {
                    let name = oracle.effect_group(e);
                    let ok = match groups {
                        Groups::Only(list) => list.contains(&name),
                        Groups::Unprivileged => !hostbridge::core::rules::policy::PRIVILEGED_GROUPS
                            .contains(&name.as_str()),
                    };
                    (!ok).then_some("a group the policy does not allow")
                }
                "LINK" => {
                    let name = e.value.trim().trim_matches('\'');
                    link_hijacks(name).then_some("a name other programs trust")
                }
                _ => Some("not a permission"),
            };
            if let Some(why) = bad {
                v.push(at(format!("{} ({why})", e.render())));
            }
        }
        for (k, (a, b)) in &d.props {
            let tags_only_uaccess = (k == "TAGS" || k == "CURRENT_TAGS")
                && tag_set(b.as_deref())
                    .difference(&tag_set(a.as_deref()))
                    .all(|t| t == "uaccess")
                && tag_set(a.as_deref()).is_subset(&tag_set(b.as_deref()));
            if !(tags_only_uaccess || k == "DEVLINKS") {
                v.push(at(format!("property {k}: {a:?} -> {b:?}")));
            }
        }
        v.extend(d.run.iter().map(|r| at(format!("run: '{r}'"))));
        v.extend(d.markers.iter().map(|m| at(format!("marker /run/{m}"))));
        if let Some(a) = &d.aborted {
            v.push(at(format!("rule processing aborted: {a}")));
        }
        if d.log_silenced {
            v.push(at("logging silenced".to_string()));
        }
    }
    v
}

fn tag_set(s: Option<&str>) -> BTreeSet<String> {
    s.unwrap_or_default()
        .split(':')
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// The effect classes of the `# oracle:` vocabulary that `outcome` shows
/// (`none` when it shows nothing): `perm` (OWNER/GROUP/MODE on the UPS,
/// what the policy allows: headers leave it out), `unsafe-mode` (o+w or
/// special bits on the UPS), `privileged-group`, `perm-on-non-usb`,
/// `perm-on-other-vendor` (a catch-all vendor reached a stranger), `link`,
/// `link-hijack` (log, stdout, disk/…, mapper/…), `run`, `program`
/// (PROGRAM or IMPORT{program} executed), `import`, `env`, `tag`,
/// `attr-write`, `sysctl-write`, `name`, `seclabel`, `abort`,
/// `log-silenced`, `dropped` (udevd dropped a line or a GOTO while
/// loading), `warning` (it corrected or ignored part of a line), `message`
/// (any other line udevd logged for a rule).
pub fn effect_classes(oracle: &Oracle, outcome: &Outcome) -> BTreeSet<&'static str> {
    let mut c = BTreeSet::new();
    for m in &outcome.load {
        c.insert(match m.kind {
            LoadKind::Dropped | LoadKind::GotoIgnored => "dropped",
            LoadKind::Warning => "warning",
        });
    }
    for d in &outcome.devices {
        let dev = &oracle.devices[d.device];
        for e in &d.effects {
            c.insert(match e.key.as_str() {
                "OWNER" | "GROUP" | "MODE" if dev.reach == Reach::NoVendor => "perm-on-non-usb",
                "OWNER" | "GROUP" | "MODE" if dev.reach == Reach::Stranger => {
                    "perm-on-other-vendor"
                }
                "MODE" if unsafe_mode(&e.value).is_some() => "unsafe-mode",
                "MODE" => "perm",
                "GROUP" => {
                    let name = oracle.effect_group(e);
                    if hostbridge::core::rules::policy::PRIVILEGED_GROUPS.contains(&name.as_str()) {
                        "privileged-group"
                    } else {
                        "perm"
                    }
                }
                "OWNER" => "perm",
                "LINK" if link_hijacks(e.value.trim().trim_matches('\'')) => "link-hijack",
                "LINK" => "link",
                "RUN" => "run",
                "NAME" => "name",
                "SECLABEL" => "seclabel",
                "ATTR-WRITE" => "attr-write",
                "SYSCTL-WRITE" => "sysctl-write",
                "PROGRAM" | "IMPORT-PROGRAM" => "program",
                "IMPORT-BUILTIN" | "IMPORT-FILE" => "import",
                _ if e.value.starts_with("Command ") || e.value.starts_with("Replaced ") => {
                    continue;
                }
                // The error that ended rule processing: part of the abort.
                _ if d.aborted.is_some() && e.value.starts_with("Failed to ") => "abort",
                _ if e.value.starts_with("Failed to write ATTR") => "attr-write",
                _ if e.value.starts_with("Failed to write SYSCTL") => "sysctl-write",
                _ if e
                    .value
                    .starts_with("Only network interfaces can be renamed") =>
                {
                    "name"
                }
                _ => "message",
            });
        }
        if !d.run.is_empty() {
            c.insert("run");
        }
        if !d.markers.is_empty() {
            c.insert("program");
        }
        let linked = d.effects.iter().any(|e| e.key == "LINK");
        for k in d.props.keys() {
            c.insert(match k.as_str() {
                "TAGS" | "CURRENT_TAGS" => "tag",
                // The LINK lines already said it.
                "DEVLINKS" if linked => continue,
                "DEVLINKS" => "link",
                _ => "env",
            });
        }
        if d.aborted.is_some() {
            c.insert("abort");
        }
        if d.log_silenced {
            c.insert("log-silenced");
        }
    }
    if c.is_empty() {
        c.insert("none");
    }
    c
}
