//! Test harness: a temp dir per test with source, destination and state dirs,
//! a config file, the real `hostbridge` binary run as a child process, and
//! helpers that wait on conditions with generous deadlines (never a sleep as
//! synchronisation).

#![allow(dead_code, clippy::unwrap_used)]

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// Generous deadline for conditions on a loaded 2-core machine.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// The hostbridge binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_hostbridge")
}

/// A test environment in a fresh temp dir.
pub struct Env {
    pub tmp: tempfile::TempDir,
    pub src: PathBuf,
    pub dest: PathBuf,
    pub state: PathBuf,
    pub log: PathBuf,
    pub config: PathBuf,
    pub gate: Option<PathBuf>,
}

impl Env {
    /// Creates the dirs (source and destination are *not* created, so tests
    /// can exercise their absence) and a config with `extra` YAML appended to
    /// the bridge (`settle:`, `then:` …).
    pub fn new(bridge_extra: &str) -> Env {
        let tmp = tempfile::Builder::new()
            .prefix("hb-test-")
            .tempdir()
            .expect("tempdir");
        let root = tmp.path().to_path_buf();
        let env = Env {
            src: root.join("export"),
            dest: root.join("rules.d"),
            state: root.join("state"),
            log: root.join("udevadm.log"),
            config: root.join("config.yaml"),
            gate: None,
            tmp,
        };
        env.write_config(bridge_extra);
        env
    }

    /// Rewrites the config file.
    pub fn write_config(&self, bridge_extra: &str) {
        let standin = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/udevadm-standin");
        let yaml = format!(
            "state_dir: {state}\nudevadm: {standin}\nbridges:\n  - name: test\n    kind: udev-rules\n    source: {src}\n    install_to: {dest}\n{extra}",
            state = self.state.display(),
            standin = standin.display(),
            src = self.src.display(),
            dest = self.dest.display(),
            extra = bridge_extra,
        );
        fs::write(&self.config, yaml).expect("write config");
    }

    /// [`Env::new`] with a bridge of kind `files` (include "*", mode 0644).
    pub fn new_files(bridge_extra: &str) -> Env {
        let env = Env::new(bridge_extra);
        env.write_files_config(bridge_extra);
        env
    }

    /// [`Env::write_config`] with a bridge of kind `files`.
    pub fn write_files_config(&self, bridge_extra: &str) {
        self.write_config(bridge_extra);
        let cfg = fs::read_to_string(&self.config)
            .expect("read config")
            .replace("kind: udev-rules", "kind: files");
        fs::write(&self.config, cfg).expect("write config");
    }

    /// Makes the first `udevadm control` call block until [`Env::open_gate`].
    pub fn with_gate(mut self) -> Env {
        let gate = self.tmp.path().join("gate");
        nix::unistd::mkfifo(&gate, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        self.gate = Some(gate);
        self
    }

    /// Lets a blocked stand-in call continue.
    pub fn open_gate(&self) {
        let gate = self.gate.as_ref().expect("with_gate");
        let mut f = fs::OpenOptions::new()
            .write(true)
            .open(gate)
            .expect("open gate");
        writeln!(f, "go").expect("write gate");
    }

    /// A `hostbridge` command with this env's config and stand-in variables.
    pub fn cmd(&self, args: &[&str]) -> Command {
        self.cmd_via(&[], args)
    }

    /// [`Env::cmd`] run through `prefix` (e.g. `unshare --net`).
    pub fn cmd_via(&self, prefix: &[&str], args: &[&str]) -> Command {
        let mut c = match prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin());
                c
            }
            None => Command::new(bin()),
        };
        c.arg("--config").arg(&self.config).args(args);
        c.env("STANDIN_LOG", &self.log)
            .env("STANDIN_DEST", &self.dest);
        c.env_remove("JOURNAL_STREAM").env_remove("HOSTBRIDGE_LOG");
        // Hermetic: no drop-ins from the machine's /etc or /run.
        c.env("HOSTBRIDGE_CONFIG_DIRS", "");
        if let Some(g) = &self.gate {
            c.env("STANDIN_GATE", g);
        }
        c
    }

    /// Runs `hostbridge ARGS` to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run hostbridge")
    }

    /// Starts `hostbridge run` and waits until it reports ready.
    pub fn start(&self) -> Daemon {
        let d = self.spawn_daemon(&[]);
        d.wait_log("ready:");
        d
    }

    /// Starts `hostbridge run` with extra environment, without waiting.
    pub fn spawn_daemon(&self, envs: &[(&str, &str)]) -> Daemon {
        self.spawn_daemon_via(&[], envs)
    }

    /// [`Env::spawn_daemon`] through `prefix` (which must exec, not fork,
    /// so the daemon keeps the child's pid).
    pub fn spawn_daemon_via(&self, prefix: &[&str], envs: &[(&str, &str)]) -> Daemon {
        let envs: Vec<(&str, &str)> = envs
            .iter()
            .copied()
            .chain(
                std::env::var("TEST_DAEMON_LOG")
                    .ok()
                    .map(|_| ("HOSTBRIDGE_LOG", "debug")),
            )
            .collect();
        let n = list(self.tmp.path())
            .iter()
            .filter(|f| f.starts_with("daemon-"))
            .count();
        let stderr_path = self.tmp.path().join(format!("daemon-{n}.log"));
        let stderr = fs::File::create(&stderr_path).expect("daemon log");
        let mut c = self.cmd_via(prefix, &["run"]);
        c.envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        let child = c.spawn().expect("spawn daemon");
        Daemon {
            child: Some(child),
            stderr: stderr_path,
        }
    }

    /// Lines of the stand-in's log.
    pub fn udevadm_calls(&self) -> Vec<String> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// `udevadm control --reload` calls so far.
    pub fn reloads(&self) -> Vec<String> {
        self.udevadm_calls()
            .into_iter()
            .filter(|l| l.starts_with("control --reload files="))
            .collect()
    }

    /// Names in the destination dir (sorted).
    pub fn installed(&self) -> Vec<String> {
        list(&self.dest)
    }

    /// Writes a source file in one go (creating the source dir).
    pub fn put(&self, name: &str, content: &str) {
        fs::create_dir_all(&self.src).expect("mkdir src");
        fs::write(self.src.join(name), content).expect("write source");
    }

    /// Writes a source file to a hidden temp name and renames it into place,
    /// as a careful writer (and `install`, `cp` + `mv`) does.
    pub fn put_renamed(&self, name: &str, bytes: &[u8]) {
        fs::create_dir_all(&self.src).expect("mkdir src");
        let tmp = self.src.join(format!(".{name}.tmp"));
        fs::write(&tmp, bytes).expect("write temp");
        fs::rename(tmp, self.src.join(name)).expect("rename into place");
    }

    /// Content of an installed file, if present.
    pub fn dest_content(&self, name: &str) -> Option<String> {
        fs::read_to_string(self.dest.join(name)).ok()
    }

    /// Waits (saying `what`) until `d` has installed the rules file `name`
    /// as the canonical form of `source`: the whole file, read and judged.
    pub fn wait_installed(&self, d: &Daemon, what: &str, name: &str, source: &str) {
        let want = canonical(name, source);
        wait_for(
            what,
            || self.dest_content(name).as_deref() == Some(want.as_str()),
            || d.log(),
        );
    }
}

/// What a `permissions-only` bridge installs for a rules file `name`
/// holding `source`: its canonical form (panics if the file is refused).
pub fn canonical(name: &str, source: &str) -> String {
    let policy = hostbridge::core::rules::policy::Policy::default();
    let vetted = hostbridge::core::rules::vet(name, source.as_bytes(), &policy);
    let bytes = vetted
        .install
        .unwrap_or_else(|| panic!("{name} is refused: {:?}", vetted.findings));
    String::from_utf8(bytes).expect("canonical form is ASCII")
}

/// A running daemon; sent SIGTERM and reaped on drop.
pub struct Daemon {
    pub child: Option<Child>,
    pub stderr: PathBuf,
}

impl Daemon {
    /// The daemon's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits until the log contains `needle`.
    pub fn wait_log(&self, needle: &str) {
        self.wait_log_count(needle, 1);
    }

    /// Waits until the log contains `needle` at least `n` times.
    pub fn wait_log_count(&self, needle: &str, n: usize) {
        wait_for(
            &format!("{n}x {needle:?} in daemon log"),
            || self.log().matches(needle).count() >= n,
            || self.log(),
        );
    }

    /// Number of syncs that changed files.
    pub fn changing_syncs(&self) -> usize {
        self.log().lines().filter(|l| is_changing_sync(l)).count()
    }

    /// Pid of the daemon.
    pub fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.as_ref().expect("child").id() as i32)
    }

    /// Sends SIGTERM and waits for exit.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        child.wait().expect("wait daemon")
    }

    /// Sends SIGTERM and waits for exit at most [`DEADLINE`]; `None` (and
    /// SIGKILL) if it did not exit by then.
    pub fn stop_within_deadline(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take().expect("running");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let end = Instant::now() + DEADLINE;
        while Instant::now() < end {
            if let Some(st) = child.try_wait().expect("try_wait") {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// Sends SIGKILL and waits for exit.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("kill -9");
        let _ = child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.stop();
        }
        if std::thread::panicking() {
            eprintln!("---- daemon log ----\n{}", self.log());
        }
    }
}

/// Runs `hostbridge sync` with the destination a read-only mount (what
/// `ProtectSystem=strict` does to a dir missing from `ReadWritePaths=`),
/// in a private mount namespace; its exit code and output, or `None` (a
/// skip, said why) where private mounts are not allowed (never under CI).
pub fn sync_with_read_only_dest(env: &Env) -> Option<(Option<i32>, String)> {
    fs::create_dir_all(&env.dest).expect("mkdir dest");
    let script = format!(
        "mount --bind {d} {d} && mount -o remount,bind,ro {d} && exec \"$@\"",
        d = env.dest.display()
    );
    let out = env
        .cmd_via(
            &["unshare", "--mount", "sh", "-c", &script, "sh"],
            &["sync"],
        )
        .output()
        .expect("run hostbridge sync");
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    if text.contains("unshare: ") || text.contains("mount: ") {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must allow private mounts: {text}"
        );
        eprintln!("SKIP: no private read-only mount here: {text}");
        return None;
    }
    Some((out.status.code(), text))
}

/// Makes the `nut` group and user exist (as NUT's package would). Root only.
pub fn ensure_nut_user() -> bool {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP: needs root to create the nut user and real device nodes");
        return false;
    }
    if nix::unistd::Group::from_name("nut").unwrap().is_none() {
        let _ = std::process::Command::new("groupadd")
            .args(["-r", "nut"])
            .status();
    }
    if nix::unistd::User::from_name("nut").unwrap().is_none() {
        let _ = std::process::Command::new("useradd")
            .args(["-r", "-g", "nut", "-M", "-s", "/usr/sbin/nologin", "nut"])
            .status();
    }
    nix::unistd::User::from_name("nut").unwrap().is_some()
}

/// Whether a daemon log line is that of a sync that changed files ("…, 1
/// file changed: …", "…, 3 files changed: …").
pub fn is_changing_sync(line: &str) -> bool {
    line.contains(" file changed: ") || line.contains(" files changed: ")
}

/// Polls `cond` until true or [`DEADLINE`]; on timeout panics with `what` and
/// the output of `context`.
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool, context: impl Fn() -> String) {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > DEADLINE {
            panic!(
                "timed out after {DEADLINE:?} waiting for {what}\n{}",
                context()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sorted names in a dir (empty if missing).
pub fn list(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Marks a file executable.
pub fn make_executable(p: &Path) {
    let mut perm = fs::metadata(p).expect("stat").permissions();
    perm.set_mode(0o755);
    fs::set_permissions(p, perm).expect("chmod");
}

/// Name of slow-writer file `f`.
pub fn slow_name(f: usize) -> String {
    format!("{f:02}-slow.rules")
}

/// Complete content of slow-writer file `f`.
pub fn slow_content(f: usize) -> String {
    (0..4).map(|c| slow_chunk(f, c)).collect()
}

fn slow_chunk(f: usize, chunk: usize) -> String {
    format!("# file {f} chunk {chunk}\n# {}\n", "x".repeat(200))
}

/// The slow writer: `n` files started every 50 ms (40 files spread over 2 s),
/// each written in 4 chunks 50 ms apart, as a container copying files over
/// a slow bind mount would. Returns when every file is closed.
pub fn slow_writer(dir: &Path, n: usize) {
    let mut schedule: Vec<(u64, usize, usize)> = Vec::new();
    for f in 0..n {
        for chunk in 0..4 {
            schedule.push((f as u64 * 50 + chunk as u64 * 50, f, chunk));
        }
    }
    schedule.sort();
    let start = Instant::now();
    let mut open: Vec<Option<fs::File>> = (0..n).map(|_| None).collect();
    for (at, f, chunk) in schedule {
        // Pacing the writer is the scenario itself, not synchronisation.
        let due = start + Duration::from_millis(at);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let file = open[f].get_or_insert_with(|| fs::File::create(dir.join(slow_name(f))).unwrap());
        file.write_all(slow_chunk(f, chunk).as_bytes()).unwrap();
        if chunk == 3 {
            open[f] = None; // close: IN_CLOSE_WRITE
        }
    }
}

/// A self-signed certificate and its key, made by the real openssl CLI
/// (`kind`: rsa, p256, p384 or ed25519; CN=`cn`; valid `days`). Returns the
/// certificate PEM, the key PEM and openssl's `serial=…` line.
pub fn openssl_pair(kind: &str, cn: &str, days: u32) -> (Vec<u8>, Vec<u8>, String) {
    let dir = tempfile::tempdir().unwrap();
    let (crt, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let newkey: &[&str] = match kind {
        "rsa" => &["-newkey", "rsa:2048"],
        "p256" => &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        "p384" => &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"],
        "ed25519" => &["-newkey", "ed25519"],
        other => panic!("unknown key kind {other}"),
    };
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-nodes",
            "-subj",
            &format!("/CN={cn}"),
            "-days",
            &days.to_string(),
        ])
        .args(newkey)
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .expect("openssl (Debian package openssl)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let serial = Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(&crt)
        .output()
        .unwrap();
    (
        fs::read(crt).unwrap(),
        fs::read(key).unwrap(),
        String::from_utf8_lossy(&serial.stdout).trim().to_string(),
    )
}

/// `yaml` with every host path under a config key that names one (sources,
/// destinations, the state dir, sockets, pid files, sysfs and /dev roots)
/// moved under `root`, so a shipped example runs against a temp dir.
pub fn rebase_paths(yaml: &str, root: &Path) -> String {
    const KEYS: [&str; 9] = [
        "source",
        "install_to",
        "state_dir",
        "status_socket",
        "metrics_file",
        "pidfile",
        "sysfs_root",
        "dev_root",
        "udev_run_dir",
    ];
    let mut out = yaml.to_string();
    for key in KEYS {
        out = out.replace(&format!("{key}: /"), &format!("{key}: {}/", root.display()));
    }
    out
}

/// The Debian packages whose udev rules make the real corpus
/// (`scripts/fetch-corpus` unpacks them into target/corpus).
pub const CORPUS_PACKAGES: &[&str] = &[
    "udev",
    "nut-server",
    "libsane1",
    "libmtp-common",
    "brltty",
    "usb-modeswitch-data",
];

/// The corpus root, or `None` with a printed reason (a panic under CI,
/// which must have it).
pub fn corpus() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/corpus");
    if root.join("udev").is_dir() && root.join("nut-server").is_dir() {
        return Some(root);
    }
    let why = format!(
        "SKIP: no corpus in {} (run scripts/fetch-corpus)",
        root.display()
    );
    if std::env::var_os("CI").is_some() {
        panic!("{why}; CI must have it");
    }
    eprintln!("{why}");
    None
}

/// Every `*.rules` file under `*/udev/rules.d/` of a corpus package
/// (brltty's Debian package ships its udev rules as examples under its doc
/// dir), sorted.
pub fn corpus_files(root: &Path, package: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.join(package)];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rules")
                && p.parent()
                    .is_some_and(|d| d.ends_with("udev/rules.d") || d.ends_with("brltty/examples"))
            {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The `*.rules` files of `dir` (relative to the project root), sorted.
pub fn rules_files_in(dir: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rules"))
        .collect();
    v.sort();
    v
}

/// How often each source file was opened for reading (real inotify on the
/// source dir: IN_OPEN; the `O_PATH` handle a scan judges an entry by opens
/// nothing and counts as no open).
pub fn reads_during(env: &Env, run: impl FnOnce()) -> std::collections::BTreeMap<String, usize> {
    source_events_during(env, false, run).1
}

/// [`reads_during`], with how often the source dir was listed (IN_ACCESS
/// on the dir itself: a `getdents`).
pub fn listings_and_reads_during(
    env: &Env,
    run: impl FnOnce(),
) -> (usize, std::collections::BTreeMap<String, usize>) {
    source_events_during(env, true, run)
}

fn source_events_during(
    env: &Env,
    listings: bool,
    run: impl FnOnce(),
) -> (usize, std::collections::BTreeMap<String, usize>) {
    use inotify::{EventMask, Inotify, WatchMask};
    let mut ino = Inotify::init().unwrap();
    let mask = if listings {
        WatchMask::OPEN | WatchMask::ACCESS
    } else {
        WatchMask::OPEN
    };
    ino.watches().add(&env.src, mask).unwrap();
    run();
    let (mut listed, mut counts) = (0, std::collections::BTreeMap::new());
    let mut buf = [0u8; 65536];
    loop {
        let events = match ino.read_events(&mut buf) {
            Ok(events) => events,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("reading inotify events: {e}"),
        };
        for e in events {
            match e.name {
                None if e.mask.contains(EventMask::ACCESS) => listed += 1,
                Some(name) if e.mask.contains(EventMask::OPEN) => {
                    *counts
                        .entry(name.to_string_lossy().into_owned())
                        .or_insert(0) += 1;
                }
                _ => {}
            }
        }
    }
    (listed, counts)
}

/// The server program at `path` from Debian's `package`, which
/// scripts/test installs: `None` (and why, on stderr) when missing, which
/// is a failure under CI.
pub fn server(path: &'static str, package: &str) -> Option<&'static str> {
    if Path::new(path).exists() {
        return Some(path);
    }
    let why = format!("SKIP: {path} not installed (scripts/test installs {package})");
    assert!(std::env::var_os("CI").is_none(), "{why}; CI must have it");
    eprintln!("{why}");
    None
}

/// A free loopback TCP port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The serial (`serial=…`, as `openssl x509 -serial` prints it) of the
/// certificate served on 127.0.0.1:`port`, by a real TLS client, `openssl
/// s_client` with SNI localhost; `None` while nothing serves.
pub fn served_serial(port: u16) -> Option<String> {
    let client = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-servername",
            "localhost",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let mut x509 = Command::new("openssl")
        .args(["x509", "-noout", "-serial"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    x509.stdin.as_mut()?.write_all(&client.stdout).ok()?;
    let out = x509.wait_with_output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The last line of `log` holding `needle`.
pub fn last_line_with(log: &str, needle: &str) -> String {
    log.lines()
        .rfind(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in\n{log}"))
        .to_string()
}
