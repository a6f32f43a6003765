//! Policy tests: forbidden keys, grant constraints through GOTO/LABEL flow,
//! and MODE/GROUP/OWNER values.

use super::*;
use crate::core::rules::parse::parse;

fn ids(text: &str) -> Vec<&'static str> {
    ids_with(text, &Policy::default())
}

fn ids_with(text: &str, policy: &Policy) -> Vec<&'static str> {
    let file = parse(text.as_bytes());
    assert!(
        !crate::core::rules::has_errors(&file.findings),
        "parse errors: {:?}",
        file.findings
    );
    check(&file, policy).iter().map(|f| f.rule).collect()
}

const OK_LINE: &str =
    "SUBSYSTEM==\"usb\", ATTR{idVendor}==\"051d\", MODE=\"0664\", GROUP=\"nut\"\n";

#[test]
fn a_constrained_grant_passes() {
    assert_eq!(ids(OK_LINE), Vec::<&str>::new());
    assert_eq!(
        ids(
            "SUBSYSTEM==\"tty\", ATTRS{idVendor}==\"0463\", ATTRS{bDeviceClass}!=\"09\", TAG+=\"uaccess\"\n"
        ),
        Vec::<&str>::new()
    );
    assert_eq!(
        ids(
            "SUBSYSTEM==\"usb|usb_device\", ATTR{idVendor}==\"0463|051d\", OWNER=\"nut\", MODE=\"660\"\n"
        ),
        Vec::<&str>::new()
    );
}

#[test]
fn forbidden_keys() {
    let cases: &[(&str, &str)] = &[
        ("RUN+=\"/tmp/x\"", "run"),
        ("RUN{builtin}+=\"kmod load evil\"", "run"),
        ("PROGRAM==\"/bin/sh -c x\"", "program"),
        ("IMPORT{program}=\"/tmp/x\"", "import"),
        ("IMPORT{file}=\"/etc/shadow\"", "import"),
        ("IMPORT{builtin}=\"usb_id\"", "import"),
        ("IMPORT{db}=\"X\"", "import"),
        ("IMPORT{cmdline}=\"x\"", "import"),
        ("IMPORT{parent}=\"X\"", "import"),
        ("SYSCTL{kernel/core_pattern}=\"|/tmp/x\"", "sysctl-write"),
        ("ATTR{authorized}=\"1\"", "attr-write"),
        ("NAME=\"eth0\"", "name"),
        (
            "SECLABEL{selinux}=\"system_u:object_r:shadow_t\"",
            "seclabel",
        ),
        ("OPTIONS+=\"static_node=sda\"", "options"),
        ("OPTIONS+=\"log_level=debug\"", "options"),
        ("OPTIONS+=\"string_escape=replace\"", "options"),
        ("TEST==\"/sys/*/x\"", "test"),
        ("SYSCTL{kernel/x}==\"1\"", "sysctl-match"),
        ("ENV{SYSTEMD_WANTS}+=\"evil.service\"", "env-write"),
        ("TAG+=\"systemd\"", "tag"),
        ("TAG=\"uaccess\"", "tag"),
        ("TAG-=\"uaccess\"", "tag"),
    ];
    for (line, want) in cases {
        let text = format!("SUBSYSTEM==\"usb\", ATTR{{idVendor}}==\"051d\", {line}\n");
        assert_eq!(ids(&text), [*want], "{line}");
    }
}

#[test]
fn harmless_matches_and_options_pass() {
    for line in [
        "ACTION==\"add\", ENV{ID_VENDOR_ID}==\"051d\", CONST{virt}==\"none\"",
        "OPTIONS+=\"link_priority=10\"",
        "OPTIONS+=\"link_priority=-5\"",
        "OPTIONS+=\"db_persist\"",
        "OPTIONS+=\"nowatch\"",
    ] {
        let text = format!("SUBSYSTEM==\"usb\", ATTR{{idVendor}}==\"051d\", {line}\n");
        assert_eq!(ids(&text), Vec::<&str>::new(), "{line}");
        // Alone, they would change how udevd treats every device.
        if line.starts_with("OPTIONS") {
            assert_eq!(
                ids(&format!("{line}\n")),
                ["unconstrained-permission"],
                "{line}"
            );
            assert_eq!(
                ids(&format!("KERNEL==\"vda\", {line}\n")),
                ["unconstrained-permission"],
                "{line}"
            );
        }
    }
    let allow_env = Policy {
        env: vec!["ID_NUT_UPS".into()],
        ..Policy::default()
    };
    assert_eq!(
        ids_with(
            "SUBSYSTEM==\"usb\", ATTR{idVendor}==\"051d\", ENV{ID_NUT_UPS}=\"1\"\n",
            &allow_env
        ),
        Vec::<&str>::new()
    );
    assert_eq!(
        ids_with("ENV{ID_NUT_UPS}=\"1\"\n", &allow_env),
        ["unconstrained-permission"]
    );
}

#[test]
fn grants_need_subsystem_and_vendor() {
    let cases: &[(&str, &[&str])] = &[
        ("MODE=\"0660\"", &["unconstrained-permission"]),
        (
            "KERNEL==\"sd*\", MODE=\"0660\"",
            &["unconstrained-permission"],
        ),
        (
            "SUBSYSTEM==\"block\", ATTRS{idVendor}==\"051d\", GROUP=\"nut\"",
            &["unconstrained-permission"],
        ),
        (
            "SUBSYSTEM==\"usb*\", ATTR{idVendor}==\"051d\", GROUP=\"nut\"",
            &["unconstrained-permission"],
        ),
        (
            "SUBSYSTEM==\"usb|block\", ATTR{idVendor}==\"051d\", GROUP=\"nut\"",
            &["unconstrained-permission"],
        ),
        (
            "SUBSYSTEM!=\"block\", ATTR{idVendor}==\"051d\", GROUP=\"nut\"",
            &["unconstrained-permission"],
        ),
        ("SUBSYSTEM==\"usb\", GROUP=\"nut\"", &["no-vendor-match"]),
        (
            "SUBSYSTEM==\"usb\", ATTR{idVendor}==\"05*\", GROUP=\"nut\"",
            &["catch-all-vendor", "no-vendor-match"],
        ),
        (
            "SUBSYSTEM==\"usb\", ATTR{idVendor}==\"05?d\", GROUP=\"nut\"",
            &["catch-all-vendor", "no-vendor-match"],
        ),
        (
            "SUBSYSTEM==\"usb\", ATTR{idVendor}==\"[0-9]*\", GROUP=\"nut\"",
            &["catch-all-vendor", "no-vendor-match"],
        ),
        (
            "SUBSYSTEM==\"usb\", ATTR{idVendor}==\"051d|\", GROUP=\"nut\"",
            &["catch-all-vendor", "no-vendor-match"],
        ),
        (
            "SUBSYSTEM==\"usb\", ATTR{idVendor}==\"|051d\", GROUP=\"nut\"",
            &["catch-all-vendor", "no-vendor-match"],
        ),
        (
            "SUBSYSTEM==\"tty\", ATTRS{idVendor}==\"1d6b\", GROUP=\"nut\"",
            &["catch-all-vendor", "no-vendor-match"],
        ),
        (
            "SUBSYSTEM==\"usb\", ATTRS{idVendor}==\"051d|1d6b\", GROUP=\"nut\"",
            &["catch-all-vendor", "no-vendor-match"],
        ),
        (
            "SUBSYSTEM==\"usb\", ATTR{idVendor}==\"051\", GROUP=\"nut\"",
            &["catch-all-vendor", "no-vendor-match"],
        ),
        (
            "SUBSYSTEM==\"usb\", ATTR{idVendor}!=\"051d\", GROUP=\"nut\"",
            &["no-vendor-match"],
        ),
        (
            "SUBSYSTEM==\"usb\", ENV{ID_VENDOR_ID}==\"051d\", TAG+=\"uaccess\"",
            &["no-vendor-match"],
        ),
        (
            "SUBSYSTEMS==\"usb\", ATTRS{idVendor}==\"051d\", GROUP=\"nut\"",
            &["unconstrained-permission"],
        ),
        (
            "SUBSYSTEM==\"block\", SYMLINK+=\"ups\"",
            &["symlink", "unconstrained-permission"],
        ),
    ];
    for (line, want) in cases {
        assert_eq!(ids(&format!("{line}\n")), *want, "{line}");
    }
    let wider = Policy {
        subsystems: vec!["block".into()],
        ..Policy::default()
    };
    assert_eq!(
        ids_with(
            "SUBSYSTEM==\"block\", ATTRS{idVendor}==\"051d\", ATTRS{bDeviceClass}!=\"09\", GROUP=\"nut\"\n",
            &wider
        ),
        Vec::<&str>::new()
    );
}

#[test]
fn guards_and_labels_carry_facts() {
    // NUT's own shape: positive jumps into a section, unconditional jump past it.
    let nut = "ACTION==\"remove\", GOTO=\"end\"\nSUBSYSTEM==\"usb_device\", GOTO=\"real\"\nSUBSYSTEM==\"usb\", GOTO=\"real\"\nGOTO=\"end\"\nLABEL=\"real\"\nATTR{idVendor}==\"051d\", MODE=\"664\", GROUP=\"nut\"\nLABEL=\"end\"\n";
    assert_eq!(ids(nut), Vec::<&str>::new());
    // A negative SUBSYSTEM guard holds: udevd compares a missing subsystem
    // as "", so only usb devices fall through.
    let guard = "SUBSYSTEM!=\"usb\", GOTO=\"end\"\nATTR{idVendor}==\"051d\", MODE=\"0660\", GROUP=\"nut\"\nLABEL=\"end\"\n";
    assert_eq!(ids(guard), Vec::<&str>::new());
    // A negative vendor guard does not: ATTR{idVendor}!= is false when the
    // attribute is missing, so every device without one falls through.
    let vendor = "SUBSYSTEM!=\"usb\", GOTO=\"end\"\nATTR{idVendor}!=\"051d\", GOTO=\"end\"\nMODE=\"0660\", GROUP=\"nut\"\nLABEL=\"end\"\n";
    assert_eq!(ids(vendor), ["no-vendor-match", "no-vendor-match"]);
    let parents = "SUBSYSTEM!=\"tty\", GOTO=\"end\"\nATTRS{idVendor}!=\"0403\", GOTO=\"end\"\nGROUP=\"nut\"\nLABEL=\"end\"\n";
    assert_eq!(ids(parents), ["no-vendor-match"]);
    // A guard with two matches proves nothing by falling through.
    let weak = "SUBSYSTEM!=\"usb\", ACTION==\"add\", GOTO=\"end\"\nATTR{idVendor}==\"051d\", MODE=\"0660\"\nLABEL=\"end\"\n";
    assert_eq!(ids(weak), ["unconstrained-permission"]);
    // A GOTO that jumps over the guard loses its facts.
    let bypass = "KERNEL==\"sd*\", GOTO=\"skip\"\nSUBSYSTEM!=\"usb\", GOTO=\"end\"\nLABEL=\"skip\"\nATTR{idVendor}==\"051d\", MODE=\"0660\"\nLABEL=\"end\"\n";
    assert_eq!(ids(bypass), ["unconstrained-permission"]);
    // The guard's label must come after the grant: here it is before it.
    let early = "SUBSYSTEM!=\"usb\", GOTO=\"end\"\nLABEL=\"end\"\nATTR{idVendor}==\"051d\", MODE=\"0660\"\n";
    assert_eq!(ids(early), ["unconstrained-permission"]);
    // A line after an unconditional GOTO looks dead, and is still checked
    // on its own: reasoning about jumps may narrow, never exempt.
    let dead = "GOTO=\"end\"\nMODE=\"0660\"\nLABEL=\"end\"\n";
    assert_eq!(ids(dead), ["unconstrained-permission"]);
    let dead_ok = "GOTO=\"end\"\nSUBSYSTEM==\"usb\", ATTR{idVendor}==\"051d\", MODE=\"0660\"\nLABEL=\"end\"\n";
    assert_eq!(ids(dead_ok), Vec::<&str>::new());
    // …but forbidden keys are refused even there.
    assert_eq!(ids("GOTO=\"end\"\nRUN+=\"/x\"\nLABEL=\"end\"\n"), ["run"]);
}

#[test]
fn mode_values() {
    let cases: &[(&str, &[&str])] = &[
        ("0664", &[]),
        ("664", &[]),
        ("0600", &[]),
        ("0666", &["mode-world-writable"]),
        ("666", &["mode-world-writable"]),
        ("0662", &["mode-world-writable"]),
        ("4660", &["mode-special-bits"]),
        ("02660", &["mode-special-bits"]),
        ("1660", &["mode-special-bits"]),
        ("$attr{mode}", &["mode-dynamic"]),
        ("0x1b4", &["mode-dynamic"]),
    ];
    for (mode, want) in cases {
        let text = format!("SUBSYSTEM==\"usb\", ATTR{{idVendor}}==\"051d\", MODE=\"{mode}\"\n");
        assert_eq!(ids(&text), *want, "MODE={mode}");
    }
}

#[test]
fn group_and_owner_values() {
    let line = |kv: &str| format!("SUBSYSTEM==\"usb\", ATTR{{idVendor}}==\"051d\", {kv}\n");
    let cases: &[(&str, &[&str])] = &[
        ("GROUP=\"nut\"", &[]),
        ("GROUP=\"disk\"", &["group-privileged"]),
        ("GROUP=\"wheel\"", &["group-privileged"]),
        ("GROUP=\"root\"", &["group-privileged"]),
        ("GROUP=\"0\"", &["group-numeric"]),
        ("GROUP=\"%k\"", &["group-dynamic"]),
        ("OWNER=\"nut\"", &[]),
        ("OWNER=\"root\"", &[]),
        ("OWNER=\"1000\"", &["owner-numeric"]),
        ("OWNER=\"$env{X}\"", &["owner-dynamic"]),
    ];
    for (kv, want) in cases {
        assert_eq!(ids(&line(kv)), *want, "{kv}");
    }
    let only_nut = Policy {
        groups: vec!["nut".into()],
        owners: vec!["nut".into()],
        ..Policy::default()
    };
    assert_eq!(
        ids_with(&line("GROUP=\"dialout\""), &only_nut),
        ["group-not-allowed"]
    );
    assert_eq!(
        ids_with(&line("OWNER=\"bob\""), &only_nut),
        ["owner-not-allowed"]
    );
    assert_eq!(
        ids_with(&line("GROUP=\"nut\", OWNER=\"nut\""), &only_nut),
        Vec::<&str>::new()
    );
}

#[test]
fn symlinks() {
    let line = |v: &str| {
        format!(
            "SUBSYSTEM==\"tty\", ATTRS{{idVendor}}==\"0403\", ATTRS{{bDeviceClass}}!=\"09\", SYMLINK+=\"{v}\"\n"
        )
    };
    // None by default.
    assert_eq!(ids(&line("ups/ups0")), ["symlink"]);
    let ups = Policy {
        symlinks: vec!["ups/".into(), "apc-ups".into()],
        ..Policy::default()
    };
    for ok in ["ups/ups0", "ups/by-serial/x1", "apc-ups"] {
        assert_eq!(ids_with(&line(ok), &ups), Vec::<&str>::new(), "{ok}");
    }
    for bad in [
        "ups",
        "ups/",
        "upsx/a",
        "apc-ups2",
        "log",
        "stdout",
        "kmem",
        "disk/by-id/x",
        "mapper/root",
        "ups/ups0 log",
        "../etc/x",
        "ups/../log",
        "/etc/x",
        "ups/ups-%k",
        "ups//x",
        // udevd would make /dev/ups/_x_, not the name checked.
        "ups/{x}",
        "ups/a,b",
    ] {
        assert_eq!(ids_with(&line(bad), &ups), ["symlink"], "{bad}");
    }
    // udevd 252 spins on a name that does not fit its buffer: links are
    // at most 255 bytes.
    let long = |n: usize| format!("ups/{}", "a".repeat(n - 4));
    assert_eq!(ids_with(&line(&long(255)), &ups), Vec::<&str>::new());
    assert_eq!(ids_with(&line(&long(256)), &ups), ["symlink"]);
    assert_eq!(ids_with(&line(&long(1019)), &ups), ["symlink"]);
    // A link is a claim on /dev: it needs the subsystem and the vendor too.
    let anywhere = "SUBSYSTEM==\"block\", SYMLINK+=\"ups/x\"\n";
    assert_eq!(ids_with(anywhere, &ups), ["unconstrained-permission"]);
    let no_vendor = "SUBSYSTEM==\"tty\", SYMLINK+=\"ups/x\"\n";
    assert_eq!(ids_with(no_vendor, &ups), ["no-vendor-match"]);
    // Operators may not grant a reserved name either.
    assert!(symlink_prefix_problem("ups/").is_none());
    assert!(symlink_prefix_problem("disk/").is_some());
    assert!(symlink_prefix_problem("log").is_some());
    assert!(symlink_prefix_problem("../x").is_some());
    assert!(symlink_prefix_problem("/ups").is_some());
}

#[test]
fn trusted_reports_nothing() {
    let trusted = Policy {
        mode: PolicyMode::Trusted,
        ..Policy::default()
    };
    assert_eq!(
        ids_with("RUN+=\"/tmp/x\", MODE=\"0666\"\n", &trusted),
        Vec::<&str>::new()
    );
}

#[test]
fn messages_say_what_would_happen() {
    let file = parse(b"SUBSYSTEM==\"usb\", RUN+=\"/tmp/x\"\n");
    let f = check(&file, &Policy::default());
    assert_eq!(
        f[0].render("a.rules"),
        "a.rules:1:19: error[run]: RUN+= would execute '/tmp/x' as root on every matching uevent"
    );
}

#[test]
fn a_vendor_found_on_a_parent_must_not_be_a_hubs() {
    // ATTRS walks up to the hubs: a hub's vendor would cover every device
    // behind it, unless the line keeps the matched parent from being a hub.
    let hub = "SUBSYSTEM==\"hidraw\", ATTRS{idVendor}==\"2109\", MODE=\"0660\", GROUP=\"nut\"\n";
    assert_eq!(ids(hub), ["no-vendor-match", "no-vendor-match"]);
    let file = parse(hub.as_bytes());
    let f = check(&file, &Policy::default());
    assert!(
        f[0].message.contains("also matches a hub above the device"),
        "{}",
        f[0].message
    );
    let safe = "SUBSYSTEM==\"hidraw\", ATTRS{idVendor}==\"2109\", ATTRS{bDeviceClass}!=\"09\", MODE=\"0660\", GROUP=\"nut\"\n";
    assert_eq!(ids(safe), Vec::<&str>::new());
    // Only the exact exclusion counts; ATTR (the device itself) needs none.
    for weak in [
        "ATTRS{bDeviceClass}==\"09\"",
        "ATTRS{bDeviceClass}!=\"9\"",
        "ATTRS{bDeviceClass}!=\"0*\"",
        "ATTR{bDeviceClass}!=\"09\"",
    ] {
        let line =
            format!("SUBSYSTEM==\"hidraw\", ATTRS{{idVendor}}==\"2109\", {weak}, MODE=\"0660\"\n");
        assert_eq!(ids(&line), ["no-vendor-match"], "{weak}");
    }
    assert_eq!(ids(OK_LINE), Vec::<&str>::new());
    // The same through a jump: the exclusion must sit on the jumping line.
    let jump = |extra: &str| {
        format!(
            "SUBSYSTEM!=\"tty\", GOTO=\"end\"\nATTRS{{idVendor}}==\"0403\"{extra}, GOTO=\"ftdi\"\nGOTO=\"end\"\nLABEL=\"ftdi\"\nGROUP=\"nut\"\nLABEL=\"end\"\n"
        )
    };
    assert_eq!(ids(&jump("")), ["no-vendor-match"]);
    assert_eq!(
        ids(&jump(", ATTRS{bDeviceClass}!=\"09\"")),
        Vec::<&str>::new()
    );
}
