//! A bounded soak (issue 16): random writes (atomic and in place, in two
//! steps so a torn state exists), renames, deletes, permission changes and
//! recreations of the source dir, on three bridge kinds at once (udev
//! rules; files renamed into place; files swapped as a set). While it runs,
//! no installed file is ever a torn one; at the end every destination
//! equals its source, and the daemon's RSS stayed flat. The length is
//! `SOAK_SECS` (default 120 under `CI`, 20 otherwise; a longer run is
//! `SOAK_SECS=600 cargo test --test soak -- --nocapture`). The workload's
//! pauses pace the writer; nothing waits on a sleep.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Env, wait_for};

/// xorshift64*: a seeded generator, so a failing run can be replayed
/// (`SOAK_SEED`).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Side {
    src: PathBuf,
    dest: PathBuf,
    suffix: &'static str,
    rules: bool,
}

/// What every complete content holds at its end, and a torn one (the
/// first half of an in-place write) lacks.
fn marker(side: &Side) -> &'static str {
    if side.rules {
        "MODE=\"0660\""
    } else {
        " end\n"
    }
}

fn content(side: &Side, rng: &mut Rng) -> String {
    let n = rng.below(0x1_0000);
    if side.rules {
        format!(
            "ACTION==\"add\", SUBSYSTEM==\"usb\", ATTR{{idVendor}}==\"0123\", ATTR{{idProduct}}==\"{n:04x}\", MODE=\"0660\"\n"
        )
    } else {
        format!("# v{n} end\n")
    }
}

fn write_in_place(path: &Path, text: &str, rng: &mut Rng) {
    let Ok(mut f) = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
    else {
        return; // the dir was being recreated
    };
    let (a, b) = text.split_at(text.len() / 2);
    let _ = f.write_all(a.as_bytes());
    let _ = f.flush();
    std::thread::sleep(Duration::from_millis(rng.below(20)));
    let _ = f.write_all(b.as_bytes());
}

fn one_op(side: &Side, rng: &mut Rng) {
    let name = |rng: &mut Rng| side.src.join(format!("n{}{}", rng.below(6), side.suffix));
    match rng.below(100) {
        0..35 => {
            let tmp = side.src.join(format!(".tmp{}", rng.below(1000)));
            if fs::write(&tmp, content(side, rng)).is_ok() {
                let _ = fs::rename(&tmp, name(rng));
            }
        }
        35..60 => {
            let text = content(side, rng);
            write_in_place(&name(rng), &text, rng);
        }
        60..75 => {
            let _ = fs::remove_file(name(rng));
        }
        75..85 => {
            let _ = fs::rename(name(rng), name(rng));
        }
        85..90 => {
            let _ = fs::set_permissions(name(rng), fs::Permissions::from_mode(0o600));
        }
        90..95 => {
            let _ = fs::set_permissions(name(rng), fs::Permissions::from_mode(0o644));
        }
        _ => {
            // A container restart: the export dir deleted and recreated.
            let _ = fs::remove_dir_all(&side.src);
            let _ = fs::create_dir(&side.src);
            for _ in 0..rng.below(3) {
                let _ = fs::write(name(rng), content(side, rng));
            }
        }
    }
}

/// Visible names and contents of a dir (through links).
fn visible(dir: &Path) -> BTreeMap<String, String> {
    common::list(dir)
        .into_iter()
        .filter(|n| !n.starts_with('.'))
        .filter_map(|n| fs::read_to_string(dir.join(&n)).ok().map(|c| (n, c)))
        .collect()
}

/// What the destination must hold for the source as it is.
fn expected(side: &Side) -> BTreeMap<String, String> {
    visible(&side.src)
        .into_iter()
        .filter(|(n, _)| n.ends_with(side.suffix))
        .map(|(n, c)| {
            let want = if side.rules {
                common::canonical(&n, &c)
            } else {
                c
            };
            (n, want)
        })
        .collect()
}

fn torn(side: &Side) -> Vec<String> {
    visible(&side.dest)
        .into_iter()
        .filter(|(_, c)| !c.contains(marker(side)))
        .map(|(n, c)| format!("{}/{n}: {c:?}", side.dest.display()))
        .collect()
}

fn rss_kib(pid: nix::unistd::Pid) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_random_soak_on_three_bridge_kinds_ends_equal_with_nothing_torn_and_flat_rss() {
    let secs: u64 = std::env::var("SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if std::env::var_os("CI").is_some() {
            120
        } else {
            20
        });
    let seed: u64 = std::env::var("SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_1616);
    let env = Env::new("    settle: { quiet: 100ms, max_wait: 2s }\n    prune_grace: 1s\n");
    let root = env.tmp.path().to_path_buf();
    let mut cfg = fs::read_to_string(&env.config).unwrap();
    for (name, swap) in [("plain", "rename"), ("set", "symlink-dir")] {
        cfg.push_str(&format!(
            "  - name: {name}\n    kind: files\n    source: {src}\n    install_to: {dest}\n    swap: {swap}\n    settle: {{ quiet: 100ms, max_wait: 2s }}\n    prune_grace: 1s\n",
            src = root.join(format!("src-{name}")).display(),
            dest = root.join(format!("dest-{name}")).display(),
        ));
    }
    fs::write(&env.config, cfg).unwrap();
    let sides = [
        Side {
            src: env.src.clone(),
            dest: env.dest.clone(),
            suffix: ".rules",
            rules: true,
        },
        Side {
            src: root.join("src-plain"),
            dest: root.join("dest-plain"),
            suffix: ".txt",
            rules: false,
        },
        Side {
            src: root.join("src-set"),
            dest: root.join("dest-set"),
            suffix: ".txt",
            rules: false,
        },
    ];
    for s in &sides {
        fs::create_dir_all(&s.src).unwrap();
    }
    let d = env.start();
    let mut rng = Rng(seed | 1);
    let started = Instant::now();
    let (mut ops, mut rss) = (0u64, Vec::new());
    while started.elapsed() < Duration::from_secs(secs) {
        let side = &sides[rng.below(3) as usize];
        one_op(side, &mut rng);
        ops += 1;
        if ops % 50 == 0 {
            for s in &sides {
                let t = torn(s);
                assert!(t.is_empty(), "torn files installed: {t:?}\n{}", d.log());
            }
            rss.push(rss_kib(d.pid()));
        }
        std::thread::sleep(Duration::from_millis(rng.below(30)));
    }
    for s in &sides {
        wait_for(
            &format!("{} equal to {}", s.dest.display(), s.src.display()),
            || visible(&s.dest) == expected(s),
            || {
                format!(
                    "dest {:?}\nwant {:?}\n{}",
                    visible(&s.dest),
                    expected(s),
                    d.log()
                )
            },
        );
    }
    // Flat: the second half of the run holds no more than the first's peak
    // plus a little (allocator slack), whatever the number of syncs.
    let half = rss.len() / 2;
    let (first, second) = rss.split_at(half.max(1).min(rss.len()));
    let first_peak = first.iter().max().copied().unwrap_or(0);
    let second_peak = second.iter().max().copied().unwrap_or(0);
    let syncs = d
        .log()
        .lines()
        .filter(|l| common::is_changing_sync(l))
        .count();
    eprintln!(
        "soak: {secs} s, seed {seed}, {ops} operations, {syncs} changing syncs, RSS first half peak {first_peak} kB, second half peak {second_peak} kB"
    );
    assert!(syncs > 0);
    assert!(
        second_peak <= first_peak + 2048,
        "RSS grew: {first_peak} kB → {second_peak} kB ({rss:?})"
    );
    let (_, errors) = (
        0,
        d.log()
            .lines()
            .filter(|l| l.contains(" ERROR "))
            .map(str::to_owned)
            .collect::<Vec<_>>(),
    );
    assert!(
        errors.is_empty(),
        "errors logged in a fault-free soak: {errors:?}"
    );
}
