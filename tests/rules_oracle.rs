//! The rules policy judged by the real udevd (tests/oracle): every file that
//! `vet` accepts — from the adversarial set, the Debian corpus and a seeded
//! fuzzer — is installed as hostbridge would install it, and udevd's own
//! output must show nothing beyond the policy on this machine's devices
//! (none of which is on USB: any effect there is a disagreement). A
//! fidelity differential also runs the container's raw bytes: when they do
//! something other than the installed bytes, hostbridge read the input
//! differently from udevd. And each adversarial file's `# oracle:` header,
//! what the real udevd does with it raw, is checked, so every case is shown
//! to be a real attack (or, where it needs a USB device, said to be).
//!
//! Needs root, `unshare -m` and udevadm (Debian package udev): skipped with
//! a reason otherwise, a failure under CI. Figures: `-- --nocapture`.
//! `HOSTBRIDGE_FUZZ_SECS` (default 75) bounds the fuzzer, `HOSTBRIDGE_FUZZ_SEED`
//! picks its seed, `HOSTBRIDGE_FUZZ_CASE=N` replays one case and prints it;
//! `HOSTBRIDGE_ORACLE_LEGACY=1` judges with the udevd-like reader and raw
//! installs instead (what hostbridge did before the allow-list reader).

#![allow(clippy::unwrap_used)]

mod common;
mod oracle;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use hostbridge::core::rules::policy::Policy;
use hostbridge::core::rules::{self, Vetted};

use oracle::{Dir, Groups, Oracle, Outcome, RulesFile, escape, fuzz};

/// How many disagreements a test prints in full.
const SHOW: usize = 8;
/// Fuzz cases run raw, accepted or not, to show the generator's attacks.
const RAW_SAMPLE: u64 = 48;

fn nut_groups() -> Groups {
    Groups::Only(vec!["nut".into()])
}

fn nut_policy() -> Policy {
    Policy {
        groups: vec!["nut".into()],
        ..Policy::default()
    }
}

/// The fuzzer's: NUT's, on a bridge that also lets rules make links under
/// /dev/ups/, so the link checks meet udevd too.
fn fuzz_policy() -> Policy {
    Policy {
        symlinks: vec!["ups/".into()],
        ..nut_policy()
    }
}

/// One input: where it came from, its name, its bytes and the verdict.
struct Case {
    label: String,
    name: String,
    raw: Vec<u8>,
    vetted: Vetted,
}

impl Case {
    fn new(label: String, name: &str, raw: Vec<u8>, policy: &Policy) -> Case {
        let vetted = if legacy() {
            legacy_vet(&raw, policy)
        } else {
            rules::vet(name, &raw, policy)
        };
        Case {
            label,
            name: name.to_string(),
            raw,
            vetted,
        }
    }
}

/// `HOSTBRIDGE_ORACLE_LEGACY=1`: judge with the udevd-like reader
/// (`parse::parse`) and the policy, installing the raw bytes, as hostbridge
/// did before the allow-list reader: shows what the oracle finds there.
fn legacy() -> bool {
    std::env::var_os("HOSTBRIDGE_ORACLE_LEGACY").is_some_and(|v| v == "1")
}

fn legacy_vet(raw: &[u8], policy: &Policy) -> Vetted {
    let file = rules::parse::parse(raw);
    let mut findings = file.findings.clone();
    findings.sort();
    findings.extend(rules::policy::check(&file, policy));
    let install = (!rules::has_errors(&findings)).then(|| raw.to_vec());
    Vetted {
        file,
        findings,
        install,
    }
}

/// Disagreements found among accepted cases.
#[derive(Default)]
struct Report {
    accepted: usize,
    policy: Vec<String>,
    fidelity: Vec<String>,
    identical_bytes: usize,
}

impl Report {
    fn total(&self) -> usize {
        self.policy.len() + self.fidelity.len()
    }

    fn print(&self, what: &str) {
        for (kind, list) in [("policy", &self.policy), ("fidelity", &self.fidelity)] {
            for d in list.iter().take(SHOW) {
                println!("DISAGREEMENT [{kind}] {what}: {d}\n");
            }
            if list.len() > SHOW {
                println!(
                    "... and {} more {kind} disagreements in {what}",
                    list.len() - SHOW
                );
            }
        }
    }
}

fn render_case(c: &Case) -> String {
    let install = c.vetted.install.as_deref().unwrap_or_default();
    let installed = if install == c.raw.as_slice() {
        "(installed bytes = raw bytes)".to_string()
    } else {
        format!("installed b\"{}\"", escape(install))
    };
    let findings: Vec<String> = c
        .vetted
        .findings
        .iter()
        .map(|f| f.render(&c.name))
        .collect();
    format!(
        "{}\n  raw b\"{}\"\n  {installed}\n  hostbridge findings: {}",
        c.label,
        escape(&c.raw),
        if findings.is_empty() {
            "none".to_string()
        } else {
            findings.join("; ")
        }
    )
}

/// Runs every accepted case through the oracle: its installed bytes must do
/// nothing beyond the policy, and its raw bytes must do the same as the
/// installed ones on every device.
fn check_accepted(oracle: &Oracle, cases: &[Case], groups: &Groups, report: &mut Report) {
    let accepted: Vec<&Case> = cases
        .iter()
        .filter(|c| c.vetted.install.is_some())
        .collect();
    report.accepted += accepted.len();
    if accepted.is_empty() {
        return;
    }
    let installed: Vec<RulesFile> = accepted
        .iter()
        .map(|c| RulesFile::new(&c.name, c.vetted.install.as_ref().unwrap()))
        .collect();
    for (c, outcome) in accepted.iter().zip(oracle.judge_files(&installed, true)) {
        let Some(outcome) = outcome else { continue };
        let v = oracle::policy_violations(oracle, &outcome, groups);
        if !v.is_empty() {
            report.policy.push(format!(
                "{}\n  udevd did with the installed bytes:\n    {}",
                render_case(c),
                v.join("\n    ")
            ));
        }
    }
    // Fidelity: only where hostbridge installs other bytes than it got.
    let differ: Vec<&&Case> = accepted
        .iter()
        .filter(|c| c.vetted.install.as_deref() != Some(c.raw.as_slice()))
        .collect();
    report.identical_bytes += accepted.len() - differ.len();
    let raw: Vec<RulesFile> = differ
        .iter()
        .map(|c| RulesFile::new(&c.name, &c.raw))
        .collect();
    let inst: Vec<RulesFile> = differ
        .iter()
        .map(|c| RulesFile::new(&c.name, c.vetted.install.as_ref().unwrap()))
        .collect();
    let found = oracle.compare_files(&raw, &inst);
    for (i, raw_o, inst_o) in found {
        let mut lines = Vec::new();
        for (d, (a, b)) in raw_o
            .signatures()
            .iter()
            .zip(inst_o.signatures())
            .enumerate()
        {
            if *a != b {
                lines.push(format!(
                    "{}: raw {:?}\n      installed {:?}",
                    oracle.devices[d].sysname, a, b
                ));
            }
        }
        report.fidelity.push(format!(
            "{}\n  udevd read the raw and the installed bytes differently:\n    {}",
            render_case(differ[i]),
            lines.join("\n    ")
        ));
    }
}

fn file_name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

fn stats_delta(oracle: &Oracle, before: (u64, u64)) -> String {
    let (ns, runs) = oracle.stats.counts();
    format!(
        "{} namespace runs, {} udevadm runs",
        ns - before.0,
        runs - before.1
    )
}

#[test]
fn the_oracle_sees_what_udevd_does() {
    let Some(o) = oracle::oracle() else { return };
    println!(
        "oracle: devices {}; set up in {:.0} ms",
        o.describe_devices(),
        o.setup.as_secs_f64() * 1e3
    );
    let tty = o.devices.iter().position(|d| d.kind == "tty").unwrap();
    let sys = &o.devices[tty].sysname;
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let text = format!(
        "KERNEL==\"{sys}\", MODE=\"0660\", GROUP=\"nut\", SYMLINK+=\"hb-self\"\n\
         KERNEL==\"{sys}\", PROGRAM==\"/bin/sh -c 'echo p >/run/hb-marker-self; echo hi'\", ENV{{HB_SELF}}=\"%c\"\n\
         KERNEL==\"{sys}\", SUBSYSTEM==i\"tty\", MODE=\"0600\"\n\
         KERNEL==\"{sys}\", GROUP+=\"nut\"\n\
         KERNEL==\"{sys}\", RUN+=\"/bin/true\", TAG+=\"hbself\"\n\
         KERNEL==\"{sys}\", SYSCTL{{kernel/hostname}}=\"hb-oracle-selftest\", ATTR{{power/control}}=\"auto\"\n"
    );
    let out = o.run_one("50-self.rules", text.as_bytes());
    let d = &out.devices[tty];
    let keys: Vec<(u32, &str)> = d.effects.iter().map(|e| (e.line, e.key.as_str())).collect();
    for want in [
        (1, "GROUP"),
        (1, "MODE"),
        (1, "LINK"),
        (2, "PROGRAM"),
        (4, "GROUP"),
        (5, "RUN"),
        (6, "SYSCTL-WRITE"),
        (6, "ATTR-WRITE"),
    ] {
        assert!(
            keys.contains(&want),
            "{want:?} missing: {keys:?}\n{}",
            d.stderr
        );
    }
    assert!(
        !keys.contains(&(3, "MODE")),
        "udevd 252 has no i\"…\" prefix: line 3 is dropped"
    );
    assert!(
        d.effects
            .iter()
            .any(|e| e.line == 6 && e.value.contains("Read-only file system")),
        "the sysctl write must fail in the namespace: {:?}",
        d.effects
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
        hostname
    );
    assert_eq!(d.markers, vec!["hb-marker-self".to_string()]);
    assert_eq!(d.run, vec!["/bin/true".to_string()]);
    assert_eq!(
        d.props.get("HB_SELF").and_then(|(_, b)| b.clone()),
        Some("hi".to_string()),
        "PROGRAM's stdout is %c"
    );
    assert!(d.props.contains_key("TAGS"), "{:?}", d.props);
    assert!(d.aborted.is_none() && !d.log_silenced);
    assert!(
        out.load.iter().any(|m| m.line == 3
            && m.kind == oracle::LoadKind::Dropped
            && m.message.contains("Invalid key/value pair")),
        "{:?}",
        out.load
    );
    assert!(
        out.load
            .iter()
            .any(|m| m.line == 4 && m.kind == oracle::LoadKind::Warning),
        "{:?}",
        out.load
    );
    assert!(!Path::new("/run/hb-marker-self").exists());
    assert!(!Path::new("/run/udev/rules.d/50-self.rules").exists());

    // A vendor rule, an abort, silenced logging, a catch-all vendor and a
    // rule for no device here, in one batch: the bisection must pin each
    // on its file.
    let files = vec![
        RulesFile::new(
            "61-vendor.rules",
            b"SUBSYSTEM==\"usb\", ATTR{idVendor}==\"051d\", MODE=\"0660\", GROUP=\"nut\"\n",
        ),
        RulesFile::new(
            "62-abort.rules",
            b"TEST==\"/dev/null/*/x\", GOTO=\"end\"\nLABEL=\"end\"\n",
        ),
        RulesFile::new("63-quiet.rules", b"OPTIONS=\"log_level=emerg\"\n"),
        RulesFile::new(
            "64-nobody.rules",
            b"SUBSYSTEM==\"tty\", ATTRS{idVendor}==\"0403\", MODE=\"0660\"\n",
        ),
        RulesFile::new(
            "65-catch-all.rules",
            b"SUBSYSTEM==\"tty\", ATTRS{idVendor}==\"*\", MODE=\"0660\"\n",
        ),
    ];
    let judged = o.judge_files(&files, true);
    assert!(judged[3].is_none(), "no device here has vendor 0403");
    let abort = judged[1].as_ref().expect("the abort is pinned on its file");
    assert!(
        abort.devices.iter().all(|d| d.aborted.is_some()),
        "{:?}",
        abort.devices.iter().map(|d| &d.aborted).collect::<Vec<_>>()
    );
    let quiet = judged[2].as_ref().expect("log_level is pinned on its file");
    assert!(quiet.devices.iter().all(|d| d.log_silenced));
    let fake = o.devices.iter().any(|d| d.kind == "fake-usb");
    if fake {
        let vendor = judged[0]
            .as_ref()
            .expect("the UPS rule applies to the fake UPS");
        let touched: Vec<&str> = vendor
            .devices
            .iter()
            .filter(|d| !d.quiet())
            .map(|d| o.devices[d.device].sysname.as_str())
            .collect();
        assert_eq!(touched, ["1-1"], "only the UPS's usb_device node");
        let nut = Groups::Only(vec!["nut".into()]);
        assert!(oracle::policy_violations(o, vendor, &nut).is_empty());
        let any = judged[4]
            .as_ref()
            .expect("a catch-all reaches the stranger");
        assert!(
            oracle::effect_classes(o, any).contains("perm-on-other-vendor"),
            "{:?}",
            oracle::effect_classes(o, any)
        );
    } else {
        println!("oracle self-test: no fake USB tree on this machine (no /sys/devices/software)");
    }
    println!(
        "oracle self-test: ok; one namespace run with {} devices took {:.0} ms (udevadm test {:.1} ms per device); {}",
        o.devices.len(),
        out.elapsed.as_secs_f64() * 1e3,
        out.devices
            .iter()
            .map(|d| d.elapsed.as_secs_f64() * 1e3)
            .sum::<f64>()
            / out.devices.len() as f64,
        o.stats.render()
    );
}

/// The `# oracle:` header of an adversarial file, and `# oracle-as:`.
fn oracle_header(text: &[u8]) -> Option<(BTreeSet<String>, Option<String>)> {
    let head = String::from_utf8_lossy(&text[..text.len().min(4096)]);
    let mut classes = None;
    let mut install_as = None;
    for line in head.split('\n').take(6) {
        if let Some(h) = line.strip_prefix("# oracle: ") {
            classes = Some(h.split(',').map(|s| s.trim().to_string()).collect());
        }
        if let Some(h) = line.strip_prefix("# oracle-as: ") {
            install_as = Some(h.trim().to_string());
        }
    }
    classes.map(|c| (c, install_as))
}

#[test]
fn adversarial_files_do_what_their_oracle_header_says() {
    let Some(o) = oracle::oracle() else { return };
    let started = Instant::now();
    let before = o.stats.counts();
    let mut failures = Vec::new();
    let mut checked = 0;
    for path in common::rules_files_in("tests/rules/adversarial") {
        let bytes = std::fs::read(&path).unwrap();
        let Some((want, install_as)) = oracle_header(&bytes) else {
            continue;
        };
        checked += 1;
        let name = file_name(&path);
        let (got, detail) = match &install_as {
            None => {
                let out = o.run_one(&name, &bytes);
                let got = oracle::effect_classes(o, &out);
                (got, describe(o, &out))
            }
            Some(system_name) => {
                // Masking: the candidate under a system file's name.
                let sys_path = Path::new("/usr/lib/udev/rules.d").join(system_name);
                let Ok(sys_bytes) = std::fs::read(&sys_path) else {
                    let why = format!("{}: no {} on this host", name, sys_path.display());
                    assert!(std::env::var_os("CI").is_none(), "{why}");
                    println!("SKIP: {why}");
                    continue;
                };
                let system = [RulesFile::new(system_name, &sys_bytes)];
                let alone = o.run(&[], &system);
                let both = o.run(&[RulesFile::new(system_name, &bytes)], &system);
                let mut got = oracle::effect_classes(o, &both);
                // Masked: the system file did something alone, and with the
                // candidate under its name none of that is left.
                let masked = !alone.quiet()
                    && alone.devices.iter().zip(&both.devices).all(|(a, b)| {
                        let kept: BTreeSet<String> = b.signature().into_iter().collect();
                        b.effects.iter().all(|e| e.dir != Dir::System)
                            && (a.quiet() || a.signature().iter().any(|s| !kept.contains(s)))
                    });
                if masked {
                    got.remove("none");
                    got.insert("masks-system");
                }
                (got, describe(o, &both))
            }
        };
        // Grants on the UPS are what the policy allows: not worth a header.
        let mut got: BTreeSet<String> = got
            .into_iter()
            .filter(|c| *c != "perm")
            .map(str::to_string)
            .collect();
        if got.is_empty() {
            got.insert("none".to_string());
        }
        if got != want {
            failures.push(format!(
                "{name}: header says {want:?}, udevd did {got:?}\n    {}",
                detail.join("\n    ")
            ));
        }
    }
    println!(
        "oracle: adversarial headers: {checked} files run raw, {} differ from what udevd does; {}, {:.1} s",
        failures.len(),
        stats_delta(o, before),
        started.elapsed().as_secs_f64()
    );
    assert!(
        checked >= 25,
        "only {checked} files have an # oracle: header"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn describe(o: &Oracle, out: &Outcome) -> Vec<String> {
    let mut v: Vec<String> = out
        .load
        .iter()
        .map(|m| format!("load {}:{} {:?}: {}", m.file, m.line, m.kind, m.message))
        .collect();
    for d in &out.devices {
        v.extend(
            d.describe()
                .into_iter()
                .map(|s| format!("{}: {s}", o.devices[d.device].sysname)),
        );
    }
    v
}

#[test]
fn accepted_adversarial_files_stay_within_the_policy() {
    let Some(o) = oracle::oracle() else { return };
    let started = Instant::now();
    let before = o.stats.counts();
    // More dirs judged the same way, e.g. the accepted files of a
    // differential run: HOSTBRIDGE_ORACLE_EXTRA=DIR[:DIR…] (docs/testing.md).
    let extra = std::env::var("HOSTBRIDGE_ORACLE_EXTRA").unwrap_or_default();
    let dirs = std::iter::once("tests/rules/adversarial")
        .chain(extra.split(':').filter(|d| !d.is_empty()));
    let cases: Vec<Case> = dirs
        .flat_map(|dir| {
            common::rules_files_in(dir).into_iter().map(move |p| {
                let name = file_name(&p);
                Case::new(
                    format!("{dir}/{name}"),
                    &name,
                    std::fs::read(&p).unwrap(),
                    &Policy::default(),
                )
            })
        })
        .collect();
    let mut report = Report::default();
    check_accepted(o, &cases, &Groups::Unprivileged, &mut report);
    report.print("adversarial");
    println!(
        "oracle: adversarial {} accepted of {}, {} disagreements ({} policy, {} fidelity; {} accepted files installed unchanged); {}, {:.1} s",
        report.accepted,
        cases.len(),
        report.total(),
        report.policy.len(),
        report.fidelity.len(),
        report.identical_bytes,
        stats_delta(o, before),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(report.total(), 0, "see the DISAGREEMENT lines above");
}

#[test]
fn accepted_corpus_files_stay_within_the_policy() {
    let Some(o) = oracle::oracle() else { return };
    let Some(root) = common::corpus() else { return };
    let started = Instant::now();
    let before = o.stats.counts();
    let policy = nut_policy();
    let mut cases = Vec::new();
    for pkg in common::CORPUS_PACKAGES {
        for p in common::corpus_files(&root, pkg) {
            let name = file_name(&p);
            cases.push(Case::new(
                format!("corpus {pkg}/{name}"),
                &name,
                std::fs::read(&p).unwrap(),
                &policy,
            ));
        }
    }
    let nut: Vec<&Case> = cases
        .iter()
        .filter(|c| c.name == "62-nut-usbups.rules")
        .collect();
    assert_eq!(nut.len(), 1, "NUT's rules file is in the corpus");
    let nut = nut[0];
    let install = nut.vetted.install.as_ref().unwrap_or_else(|| {
        panic!(
            "NUT's 62-nut-usbups.rules must be accepted with allow group nut: {:?}",
            nut.vetted.findings
        )
    });
    let out = o.run_one(&nut.name, install);
    let off_usb: Vec<String> = out
        .devices
        .iter()
        .filter(|d| o.devices[d.device].reach == oracle::Reach::NoVendor && !d.quiet())
        .flat_map(|d| d.describe())
        .collect();
    assert!(
        off_usb.is_empty() && out.load.is_empty(),
        "NUT's canonical form must apply nothing to the non-USB devices and load without a word from udevd:\n{}",
        describe(o, &out).join("\n")
    );
    let violations = oracle::policy_violations(o, &out, &nut_groups());
    assert!(violations.is_empty(), "{}", violations.join("\n"));
    let on_ups: Vec<String> = out
        .devices
        .iter()
        .filter(|d| !d.quiet())
        .flat_map(|d| {
            let name = &o.devices[d.device].sysname;
            d.effects
                .iter()
                .map(move |e| format!("{name}: {} {}", e.key, e.value))
        })
        .collect();
    println!(
        "oracle: NUT's canonical form on the fake UPS ({UPS}): {}",
        if on_ups.is_empty() {
            "nothing (no fake USB tree here)".to_string()
        } else {
            on_ups.join(", ")
        },
        UPS = oracle::UPS_VENDOR
    );
    let mut report = Report::default();
    check_accepted(o, &cases, &nut_groups(), &mut report);
    report.print("corpus");
    println!(
        "oracle: corpus {} accepted of {} (NUT's canonical form: nothing off USB, {} rules lines), {} disagreements ({} policy, {} fidelity); {}, {:.1} s",
        report.accepted,
        cases.len(),
        String::from_utf8_lossy(install)
            .lines()
            .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
            .count(),
        report.total(),
        report.policy.len(),
        report.fidelity.len(),
        stats_delta(o, before),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(report.total(), 0, "see the DISAGREEMENT lines above");
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    let parsed = match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={v} is not a number")))
}

#[test]
fn fuzzed_files_that_are_accepted_stay_within_the_policy() {
    let Some(o) = oracle::oracle() else { return };
    let seed = env_u64("HOSTBRIDGE_FUZZ_SEED").unwrap_or(0x6862_2d6f_7261_636c);
    let budget = Duration::from_secs(env_u64("HOSTBRIDGE_FUZZ_SECS").unwrap_or(75));
    let policy = fuzz_policy();
    let case = |i: u64| {
        let name = format!("fuzz-{i}.rules");
        Case::new(
            format!(
                "fuzz seed {seed:#x} case {i} (HOSTBRIDGE_FUZZ_SEED={seed:#x} HOSTBRIDGE_FUZZ_CASE={i})"
            ),
            &name,
            fuzz::generate(seed, i),
            &policy,
        )
    };
    if let Some(i) = env_u64("HOSTBRIDGE_FUZZ_CASE") {
        let c = case(i);
        println!("{}", render_case(&c));
        let out = o.run_one(&c.name, &c.raw);
        println!(
            "udevd with the raw bytes:\n  {}",
            describe(o, &out).join("\n  ")
        );
        if let Some(inst) = &c.vetted.install {
            let out = o.run_one(&c.name, inst);
            println!(
                "udevd with the installed bytes:\n  {}",
                describe(o, &out).join("\n  ")
            );
        }
        return;
    }
    let started = Instant::now();
    let before = o.stats.counts();
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 4);
    // The generator's teeth: the first cases, refused or not, installed
    // raw. Those doing anything beyond the policy here are real attacks,
    // and each must have been refused (or be caught below).
    let sample: Vec<Case> = (0..RAW_SAMPLE).map(case).collect();
    let per = sample.len().div_ceil(workers);
    let judged: Vec<Option<Outcome>> = std::thread::scope(|s| {
        let parts: Vec<_> = sample
            .chunks(per)
            .map(|part| {
                s.spawn(move || {
                    let raw: Vec<RulesFile> = part
                        .iter()
                        .map(|c| RulesFile::new(&c.name, &c.raw))
                        .collect();
                    o.judge_files(&raw, false)
                })
            })
            .collect();
        parts.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let mut attacks = 0;
    let mut accepted_attacks = Vec::new();
    let mut by_class: std::collections::BTreeMap<&str, usize> = Default::default();
    for (c, out) in sample.iter().zip(judged) {
        let Some(out) = out else { continue };
        let mut quiet_load = out.clone();
        quiet_load.load.clear();
        if oracle::policy_violations(o, &quiet_load, &nut_groups()).is_empty() {
            continue;
        }
        attacks += 1;
        for class in oracle::effect_classes(o, &out) {
            *by_class.entry(class).or_default() += 1;
        }
        if c.vetted.install.is_some() {
            accepted_attacks.push(c.label.clone());
        }
    }
    println!(
        "oracle: fuzz raw sample: {attacks} of {RAW_SAMPLE} cases installed raw do something beyond the policy on this machine's devices ({by_class:?}); hostbridge accepted {} of them{}; {:.1} s",
        accepted_attacks.len(),
        if accepted_attacks.is_empty() {
            String::new()
        } else {
            format!(": {}", accepted_attacks.join(", "))
        },
        started.elapsed().as_secs_f64()
    );
    // Then chunks of cases, `workers` at a time, until the budget is spent
    // (at least one chunk each). Case i is the same bytes on every run.
    const CHUNK: u64 = 96;
    let next = std::sync::atomic::AtomicU64::new(0);
    let vet_nanos = std::sync::atomic::AtomicU64::new(0);
    let mut chunks: Vec<(u64, Report)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut done = Vec::new();
                    let mut first = true;
                    while first || started.elapsed() < budget {
                        first = false;
                        let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let t = Instant::now();
                        let cases: Vec<Case> = (k * CHUNK..(k + 1) * CHUNK).map(case).collect();
                        vet_nanos.fetch_add(
                            t.elapsed().as_nanos() as u64,
                            std::sync::atomic::Ordering::Relaxed,
                        );
                        let mut r = Report::default();
                        check_accepted(o, &cases, &nut_groups(), &mut r);
                        done.push((k, r));
                    }
                    done
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    chunks.sort_by_key(|(k, _)| *k);
    let generated = chunks.len() as u64 * CHUNK;
    let mut report = Report::default();
    for (_, r) in chunks {
        report.accepted += r.accepted;
        report.identical_bytes += r.identical_bytes;
        report.policy.extend(r.policy);
        report.fidelity.extend(r.fidelity);
    }
    let vet_time = Duration::from_nanos(vet_nanos.into_inner());
    let secs = started.elapsed().as_secs_f64();
    report.print("fuzz");
    println!(
        "oracle: fuzz seed {seed:#x}: generated {generated}, accepted {} ({:.0}%), {} disagreements ({} policy, {} fidelity; {} accepted files installed unchanged); {}; {:.1} s with {workers} workers ({:.0} cases/s, generating and vetting {:.2} s)",
        report.accepted,
        100.0 * report.accepted as f64 / generated.max(1) as f64,
        report.total(),
        report.policy.len(),
        report.fidelity.len(),
        report.identical_bytes,
        stats_delta(o, before),
        secs,
        generated as f64 / secs,
        vet_time.as_secs_f64(),
    );
    println!("oracle: {}", o.stats.render());
    assert_eq!(report.total(), 0, "see the DISAGREEMENT lines above");
}
