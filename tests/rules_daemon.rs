//! The rules checks inside the running daemon: a rules file that fails the
//! policy or the host preflight is not installed, the good files beside it
//! are, the last good copy stays, and the sync's log names the finding.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Env, wait_for};

/// A system group that exists on this host and is not privileged.
fn existing_group() -> String {
    ["dialout", "plugdev", "lp", "users"]
        .iter()
        .find(|g| nix::unistd::Group::from_name(g).ok().flatten().is_some())
        .expect("one of dialout, plugdev, lp, users exists")
        .to_string()
}

fn good(group: &str) -> String {
    format!(
        "SUBSYSTEM==\"usb\", ATTR{{idVendor}}==\"051d\", ATTR{{idProduct}}==\"0002\", MODE=\"0664\", GROUP=\"{group}\"\n"
    )
}

#[test]
fn a_rejected_file_is_not_installed_and_its_neighbours_are() {
    let env = Env::new("    then:\n      - udev-reload\n");
    let group = existing_group();
    env.put("62-good.rules", &good(&group));
    env.put(
        "63-evil.rules",
        "SUBSYSTEM==\"usb\", ATTR{idVendor}==\"051d\", RUN+=\"/usr/bin/touch /tmp/pwned\"\n",
    );
    let d = env.start();
    assert_eq!(env.installed(), ["62-good.rules"]);
    let log = d.log();
    assert!(log.contains("63-evil.rules:1:43: error[run]: RUN+= would execute '/usr/bin/touch /tmp/pwned' as root on every matching uevent"), "{log}");
    assert!(log.contains("skipped 63-evil.rules: rejected by the rules checks (1 error; first: 63-evil.rules:1:43: error[run]"), "{log}");
    assert_eq!(env.reloads().len(), 1);

    // A good file turning bad keeps its last good copy.
    env.put(
        "62-good.rules",
        &format!("{}SUBSYSTEM==\"block\", MODE=\"0666\"\n", good(&group)),
    );
    d.wait_log("62-good.rules:2:21: error[unconstrained-permission]");
    assert_eq!(
        env.dest_content("62-good.rules").unwrap(),
        common::canonical("62-good.rules", &good(&group))
    );
    assert_eq!(env.reloads().len(), 1, "nothing changed, no reload");

    // `hostbridge sync --dry-run` shows the same findings.
    let out = env.run(&["sync", "--dry-run"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("63-evil.rules:1:43: error[run]"), "{text}");
}

#[test]
fn unknown_groups_are_caught_unless_allowed() {
    let env = Env::new("");
    env.put("62-ups.rules", &good("hb-no-such-group"));
    let d = env.start();
    assert!(env.installed().is_empty());
    assert!(
        d.log().contains("62-ups.rules:1:81: error[group-unknown]: GROUP=\"hb-no-such-group\": no such group on this host; udevd would drop this whole line (MODE included)"),
        "{}",
        d.log()
    );
    drop(d);
    env.write_config("    allow_unknown_groups: true\n");
    let d = env.start();
    assert_eq!(env.installed(), ["62-ups.rules"], "{}", d.log());
}

#[test]
fn trusted_policy_installs_anything_and_says_so_at_every_sync() {
    let env = Env::new("    policy: trusted\n");
    env.put("90-anything.rules", "RUN+=\"/bin/true\"\n");
    let d = env.start();
    assert_eq!(env.installed(), ["90-anything.rules"]);
    assert!(
        d.log()
            .contains("policy is trusted: rules files are installed without security checks")
    );
    env.put("91-more.rules", "# more\n");
    wait_for(
        "second sync",
        || d.log().matches("policy is trusted").count() == 2,
        || d.log(),
    );
}

#[test]
fn a_shadowing_etc_file_is_reported() {
    let env = Env::new("");
    let etc = env.tmp.path().join("etc-rules.d");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(etc.join("62-ups.rules"), "# the operator's override\n").unwrap();
    let cfg = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(
        &env.config,
        format!("etc_udev_rules_dir: {}\n{cfg}", etc.display()),
    )
    .unwrap();
    env.put("62-ups.rules", &good(&existing_group()));
    let d = env.start();
    assert_eq!(
        env.installed(),
        ["62-ups.rules"],
        "a warning does not block"
    );
    assert!(
        d.log().contains("62-ups.rules: warning[shadowed]"),
        "{}",
        d.log()
    );
}

#[test]
fn a_run_hidden_behind_a_carriage_return_is_refused_and_nothing_is_installed() {
    // The bypass found against the first policy: hostbridge read one comment
    // line, udevd (which ends lines at CR too) read a RUN+=.
    let env = Env::new("    then:\n      - udev-reload\n");
    let group = existing_group();
    let evil = format!(
        "SUBSYSTEM==\"usb\", ATTR{{idVendor}}==\"051d\", MODE=\"0660\", GROUP=\"{group}\"\n# APC Back-UPS\rRUN+=\"/bin/sh -c 'id > /run/pwned'\"\n"
    );
    env.put("62-ups.rules", &evil);
    env.put("63-ok.rules", &good(&group));
    let d = env.start();
    assert_eq!(env.installed(), ["63-ok.rules"], "{}", d.log());
    assert!(
        d.log().contains("62-ups.rules:2:15: error[line-ending]"),
        "{}",
        d.log()
    );
    // What is installed is the canonical form: no byte of it is the
    // container's own layout, and it reads back to the same rule.
    let installed = env.dest_content("63-ok.rules").unwrap();
    assert_eq!(installed, common::canonical("63-ok.rules", &good(&group)));
    assert!(installed.starts_with("SUBSYSTEM==\"usb\", ATTR{idVendor}==\"051d\", ATTR{idProduct}==\"0002\", MODE=\"0664\", GROUP="));
}
