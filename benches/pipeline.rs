//! Benchmarks of the core pipeline, run by `scripts/bench` (or
//! `cargo bench --bench pipeline`). Prints its figures; asserts nothing about
//! timing (timing goals live here, not in tests). Scenarios:
//! 1. slow writer vs. the seed-style `.path` + `sleep 0.25` + `cp` baseline;
//! 2. latency from the last close to install complete, p50/p99 over 25 runs;
//! 3. a 10,000-file burst: syncs, reloads, daemon CPU time;
//! 4. idle for 20 s: context switches and resident memory of the daemon.

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
    slow_writer();
    latency();
    burst();
    idle();
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
    d.wait_log(" files changed: ");
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
    let mut ino = Inotify::init().unwrap();
    ino.watches().add(&env.dest, WatchMask::MOVED_TO).unwrap();
    let mut buf = [0u8; 4096];
    let mut samples = Vec::new();
    for i in 0..25 {
        let name = format!("lat-{i:02}.rules");
        fs::write(env.src.join(&name), format!("# {i}\n")).unwrap();
        let closed = Instant::now();
        'wait: loop {
            for ev in ino.read_events_blocking(&mut buf).unwrap() {
                if ev.name.is_some_and(|n| n == name.as_str()) {
                    break 'wait;
                }
            }
        }
        samples.push(closed.elapsed());
        d.wait_log_count(" files changed: ", i + 1);
    }
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
