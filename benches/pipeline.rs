//! Benchmarks of the core pipeline, run by `scripts/bench` (or
//! `cargo bench --bench pipeline`). Prints its figures; asserts nothing about
//! timing (timing goals live here, not in tests). Scenarios:
//! 1. slow writer vs. the seed-style `.path` + `sleep 0.25` + `cp` baseline;
//! 2. latency from the last close to install complete, p50/p99 over 25 runs;
//! 3. a 10,000-file burst: syncs, reloads, daemon CPU time;
//! 4. idle for 20 s: context switches and resident memory of the daemon;
//! 5. a sync where 10,000 files exist: `hostbridge sync` with nothing to do
//!    (time, and instructions under callgrind when valgrind is there), and
//!    the latency of one changed file with the 10,000 present (daemon);
//! 6. bursts of 10,000 and 100,000 files: daemon CPU, and its memory after;
//!    side by side with watchexec (when scripts/bench built it) and an
//!    `inotifywait -m` + quiet-window loop doing the copy.
//!
//! The filesystem is TMPDIR's; scripts/bench runs it on /tmp and /dev/shm.

#![allow(clippy::unwrap_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Env, wait_for};
use inotify::{Inotify, WatchMask};

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` does not, and
    // a 1-minute benchmark has no place in the test run.
    if !std::env::args().any(|a| a == "--bench") {
        println!("pipeline benchmark: skipped (not run under `cargo bench`; use scripts/bench)");
        return;
    }
    println!(
        "hostbridge pipeline benchmark ({} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let fs = std::env::var("HB_BENCH_FS").unwrap_or_else(|_| "TMPDIR".into());
    println!("filesystem: {fs} ({})", std::env::temp_dir().display());
    let only = std::env::var("HB_BENCH_ONLY").unwrap_or_default();
    let want = |n: &str| only.is_empty() || only.split(',').any(|o| o == n);
    if want("1") {
        slow_writer();
    }
    if want("2") {
        latency();
    }
    if want("3") {
        burst();
    }
    if want("4") {
        idle();
    }
    if want("5") {
        with_10k_present();
    }
    if want("6") {
        big_bursts();
    }
}

const TEN_K: usize = 10_000;

/// Writes `n` files into `dir` (`{prefix}{i:06}.rules`, a comment each).
fn fill(dir: &Path, prefix: &str, n: usize) {
    fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        fs::write(
            dir.join(format!("{prefix}{i:06}.rules")),
            format!("# {i}\n"),
        )
        .unwrap();
    }
}

/// p50 and p99 of `samples` (sorted here), in ms.
fn pcts(samples: &mut [Duration]) -> (f64, f64) {
    samples.sort();
    let pct = |p: f64| ms(samples[((samples.len() as f64 - 1.0) * p).round() as usize]);
    (pct(0.50), pct(0.99))
}

/// Instructions of `cmd` under callgrind, if valgrind is installed.
fn instructions(env: &Env, args: &[&str]) -> Option<u64> {
    let out = Command::new("valgrind")
        .args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
        .arg(common::bin())
        .arg("--config")
        .arg(&env.config)
        .args(args)
        .env("HOSTBRIDGE_CONFIG_DIRS", "")
        .output()
        .ok()?;
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err.lines().find(|l| l.contains("Collected :"))?;
    line.rsplit(' ').next()?.trim().parse().ok()
}

fn with_10k_present() {
    println!("\n## 5. 10,000 files present (quiet 300ms)");
    let env =
        Env::new("    max_files: 20000\n    max_bytes: 16MiB\n    then:\n      - udev-reload\n");
    fill(&env.src, "", TEN_K);
    // The first sync installs all; the stamps of files read within a second
    // of their last write are not trusted, so the next records them.
    std::thread::sleep(Duration::from_millis(1200));
    for args in [&["sync", "--full"][..], &["sync"]] {
        assert!(env.run(args).status.success());
    }
    let mut noop = Vec::new();
    for _ in 0..7 {
        let t = Instant::now();
        let out = env.run(&["sync"]);
        noop.push(t.elapsed());
        assert!(String::from_utf8_lossy(&out.stdout).contains("nothing to change"));
    }
    let (p50, _) = pcts(&mut noop);
    let full = {
        let t = Instant::now();
        assert!(env.run(&["sync", "--full"]).status.success());
        t.elapsed()
    };
    let insns = instructions(&env, &["sync"]).map_or("n/a (no valgrind)".to_string(), |n| {
        format!("{:.1} M", n as f64 / 1e6)
    });
    println!(
        "no-op `hostbridge sync`: median {p50:.1} ms over 7 runs, {insns} instructions (callgrind; goal <= 20 ms, <= 40 M); `sync --full` {:.0} ms",
        ms(full)
    );

    let d = env.start();
    let pid = d.pid().as_raw();
    let cpu0 = cpu_time(pid);
    let runs = 25;
    let mut samples = close_to_installed(&env, &d, runs, |i| format!("{:06}.rules", i * 7));
    let cpu = (cpu_time(pid) - cpu0) / runs as f64;
    let (p50, p99) = pcts(&mut samples);
    println!(
        "1 of 10,000 changed, daemon: last close -> installed p50 {p50:.1} ms, p99 {p99:.1} ms over {runs} runs (goal: p99 <= 305 ms); daemon CPU {:.1} ms a sync",
        cpu * 1000.0
    );
}

/// Writes `runs` files one at a time (named by `name_of`) and measures
/// each from the writer's close to its install (the destination's
/// IN_MOVED_TO), waiting for each sync to be logged.
fn close_to_installed(
    env: &Env,
    d: &common::Daemon,
    runs: usize,
    name_of: impl Fn(usize) -> String,
) -> Vec<Duration> {
    let mut ino = Inotify::init().unwrap();
    ino.watches().add(&env.dest, WatchMask::MOVED_TO).unwrap();
    let mut buf = [0u8; 4096];
    let mut samples = Vec::new();
    for i in 0..runs {
        let name = name_of(i);
        fs::write(env.src.join(&name), format!("# changed {i}\n")).unwrap();
        let closed = Instant::now();
        'wait: loop {
            for ev in ino.read_events_blocking(&mut buf).unwrap() {
                if ev.name.is_some_and(|n| n == name.as_str()) {
                    break 'wait;
                }
            }
        }
        samples.push(closed.elapsed());
        wait_for("the sync logged", || d.changing_syncs() > i, || d.log());
    }
    samples
}

/// Resident and peak memory of `pid`, in kB.
fn memory(pid: i32) -> (u64, u64) {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (kb("VmRSS:"), kb("VmHWM:"))
}

/// CPU seconds of `pid` and every process below it, with the children
/// they waited for (utime + stime + cutime + cstime, from /proc).
fn tree_cpu(pid: i32) -> f64 {
    let mut procs: Vec<(i32, i32, f64)> = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = after.split_whitespace().collect();
        let ppid: i32 = f[1].parse().unwrap();
        let ticks: f64 = f[11..15].iter().map(|v| v.parse::<f64>().unwrap()).sum();
        procs.push((p, ppid, ticks / 100.0));
    }
    let mut tree = vec![pid];
    let mut total = 0.0;
    while let Some(p) = tree.pop() {
        for (q, parent, cpu) in &procs {
            if *q == p {
                total += cpu;
            }
            if *parent == p {
                tree.push(*q);
            }
        }
    }
    total
}

fn big_bursts() {
    println!("\n## 6. bursts of 10,000 and 100,000 files (files bridge, no actions)");
    for n in [TEN_K, 100_000] {
        let env = Env::new_files(&format!(
            "    max_files: {}\n    settle: {{ quiet: 1s, max_wait: 600s }}\n",
            n * 2
        ));
        fs::create_dir_all(&env.src).unwrap();
        let staging = env.tmp.path().join("staging");
        fill(&staging, "b", n);
        let d = env.start();
        let pid = d.pid().as_raw();
        let cpu0 = cpu_time(pid);
        let start = Instant::now();
        // Renamed in: the burst itself takes well under the quiet time.
        for i in 0..n {
            let name = format!("b{i:06}.rules");
            fs::rename(staging.join(&name), env.src.join(&name)).unwrap();
        }
        wait_for(
            "all installed",
            || common::list(&env.dest).len() == n,
            || d.log(),
        );
        let took = start.elapsed();
        wait_for("the sync logged", || d.changing_syncs() > 0, || d.log());
        let cpu = cpu_time(pid) - cpu0;
        let (_, peak) = memory(pid);
        // What it keeps once the burst is over.
        std::thread::sleep(Duration::from_secs(3));
        let (rss, _) = memory(pid);
        println!(
            "{n} files: all installed after {:.0} ms; daemon CPU {:.0} ms; VmRSS after {:.1} MB (peak {:.1} MB; goal after 100k <= 16 MB)",
            ms(took),
            cpu * 1000.0,
            rss as f64 / 1024.0,
            peak as f64 / 1024.0
        );
        drop(d);
        if n == TEN_K {
            baselines(n);
        }
    }
}

/// The same 10,000-file burst for watchexec (copying the dir once the
/// burst is quiet) and for an `inotifywait -m` loop with a quiet window.
fn baselines(n: usize) {
    let root_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let watchexec = root_dir.join("target/bench-tools/bin/watchexec");
    let looped = root_dir.join("benches/inotify-loop.sh");
    for label in [
        "watchexec (--debounce 300ms, cp -a)",
        "inotifywait -m + 300 ms quiet + cp -a",
    ] {
        let tool = if label.starts_with("watchexec") {
            &watchexec
        } else {
            &looped
        };
        if !tool.exists() {
            println!(
                "{label}: skipped ({} not built; scripts/bench builds it)",
                tool.display()
            );
            continue;
        }
        let inotifywait = Command::new("inotifywait").arg("--help").output().is_ok();
        if tool == &looped && !inotifywait {
            println!("{label}: skipped (no inotifywait: apt-get install inotify-tools)");
            continue;
        }
        let root = tempfile::tempdir().unwrap();
        let (src, dest, staging) = (
            root.path().join("src"),
            root.path().join("dest"),
            root.path().join("staging"),
        );
        fs::create_dir_all(&src).unwrap();
        fs::create_dir_all(&dest).unwrap();
        fill(&staging, "b", n);
        let mut cmd = Command::new(tool);
        if tool == &watchexec {
            cmd.args(["--debounce", "300ms", "--postpone", "-w"])
                .arg(&src)
                .args(["--", "cp", "-a"])
                .arg(format!("{}/.", src.display()))
                .arg(&dest);
        } else {
            cmd.arg(&src).arg(&dest);
        }
        // Its own process group, so the whole tree is stopped at the end.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Let it place its watches (no event tells).
        std::thread::sleep(Duration::from_millis(500));
        let start = Instant::now();
        for i in 0..n {
            let name = format!("b{i:06}.rules");
            fs::rename(staging.join(&name), src.join(&name)).unwrap();
        }
        wait_for("copied", || common::list(&dest).len() == n, String::new);
        let took = start.elapsed();
        // Let its last copy finish, then count its CPU and stop it.
        std::thread::sleep(Duration::from_secs(2));
        let cpu = tree_cpu(child.id() as i32);
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(-(child.id() as i32)),
            nix::sys::signal::Signal::SIGTERM,
        );
        child.wait().unwrap();
        println!(
            "{label}: all copied after {:.0} ms; CPU {:.0} ms (with its copies)",
            ms(took),
            cpu * 1000.0
        );
    }
}
fn slow_writer() {
    println!("\n## 1. slow writer: 40 files over 2 s, each in 4 chunks 50 ms apart");
    let env = Env::new("    then:\n      - udev-reload\n");
    fs::create_dir_all(&env.src).unwrap();
    let d = env.start();
    common::slow_writer(&env.src, 40);
    wait_for(
        "hostbridge reload",
        || !env.reloads().is_empty(),
        || d.log(),
    );
    wait_for("the sync logged", || d.changing_syncs() > 0, || d.log());
    let first = env.reloads()[0].clone();
    println!(
        "hostbridge: first action saw {}; syncs {}, reloads {}",
        first.trim_start_matches("control --reload "),
        d.changing_syncs(),
        env.reloads().len()
    );
    drop(d);

    let base = Env::new("");
    fs::create_dir_all(&base.src).unwrap();
    let standin = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/udevadm-standin");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/seed-baseline.sh");
    let mut child = Command::new(script)
        .args([&base.src, &base.dest, &standin])
        .env("STANDIN_LOG", &base.log)
        .env("STANDIN_DEST", &base.dest)
        .spawn()
        .expect("inotifywait (Debian package inotify-tools) is needed for the baseline");
    // inotifywait needs a moment to place its watch; the seed's .path unit was
    // also armed long before the container wrote.
    std::thread::sleep(Duration::from_millis(300));
    common::slow_writer(&base.src, 40);
    child.wait().unwrap();
    let copied = common::list(&base.dest);
    let complete = (0..40)
        .filter(|&f| {
            base.dest_content(&common::slow_name(f)).as_deref()
                == Some(common::slow_content(f).as_str())
        })
        .count();
    println!(
        "seed baseline (.path + sleep 0.25 + cp): first action had {} of 40 files, {complete} of them complete",
        copied.len()
    );
}

fn latency() {
    println!("\n## 2. latency from last close to install complete (quiet 300ms, no actions)");
    let env = Env::new("");
    fs::create_dir_all(&env.src).unwrap();
    fs::create_dir_all(&env.dest).unwrap();
    let d = env.start();
    let mut samples = close_to_installed(&env, &d, 25, |i| format!("lat-{i:02}.rules"));
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "latency over {} runs: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (goal: p99 <= 305 ms)",
        samples.len(),
        ms(pct(0.50)),
        ms(pct(0.99)),
        ms(*samples.last().unwrap())
    );
}

fn burst() {
    println!("\n## 3. burst of 10,000 files (quiet 300ms)");
    let env = Env::new("    max_files: 10000\n    then:\n      - udev-reload\n");
    fs::create_dir_all(&env.src).unwrap();
    let d = env.start();
    let cpu0 = cpu_time(d.pid().as_raw());
    let start = Instant::now();
    for i in 0..10_000 {
        fs::write(
            env.src.join(format!("{i:05}-burst.rules")),
            format!("# burst {i}\n"),
        )
        .unwrap();
    }
    let written = start.elapsed();
    wait_for(
        "10k installed",
        || env.installed().len() == 10_000,
        || d.log(),
    );
    let installed = start.elapsed();
    // Let the last sync's log line land.
    wait_for(
        "reload logged",
        || d.changing_syncs() >= env.reloads().len() && !env.reloads().is_empty(),
        || d.log(),
    );
    let cpu = cpu_time(d.pid().as_raw()) - cpu0;
    println!(
        "written in {:.0} ms, all installed after {:.0} ms; syncs {}, reloads {}; daemon CPU {:.0} ms",
        ms(written),
        ms(installed),
        d.changing_syncs(),
        env.reloads().len(),
        cpu * 1000.0
    );
}

fn idle() {
    println!("\n## 4. idle for 20 s");
    let env = Env::new("    then:\n      - udev-reload\n");
    env.put("a.rules", "# a\n");
    let d = env.start();
    // Let the startup sync's blocking thread retire (1 s keep-alive).
    std::thread::sleep(Duration::from_secs(3));
    let pid = d.pid().as_raw();
    let (cs0, threads0) = ctx_switches(pid);
    std::thread::sleep(Duration::from_secs(20));
    let (cs1, threads1) = ctx_switches(pid);
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .unwrap_or("VmRSS: ?")
        .split_whitespace()
        .nth(1)
        .unwrap_or("?")
        .to_string();
    println!(
        "context switches in 20 s: {} (threads {threads0} -> {threads1}; goal <= 2); VmRSS {rss} kB (goal <= 6144 kB)",
        cs1 - cs0
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Daemon CPU seconds (user + system) from /proc/PID/stat.
fn cpu_time(pid: i32) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// Voluntary + involuntary context switches summed over all threads.
fn ctx_switches(pid: i32) -> (u64, usize) {
    let mut total = 0;
    let mut threads = 0;
    for t in fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let status = fs::read_to_string(t.unwrap().path().join("status")).unwrap_or_default();
        threads += 1;
        for l in status.lines() {
            if l.starts_with("voluntary_ctxt_switches:")
                || l.starts_with("nonvoluntary_ctxt_switches:")
            {
                total += l.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap();
            }
        }
    }
    (total, threads)
}
