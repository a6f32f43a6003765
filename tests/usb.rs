//! USB checks on fake sysfs and /dev trees built in temp dirs (real char
//! device nodes made with mknod when running as root), with NUT's real
//! 62-nut-usbups.rules from the Debian nut-server package (scripts/fetch-corpus).

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Env, wait_for};

fn nut_rules() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/corpus/nut-server/lib/udev/rules.d/62-nut-usbups.rules");
    if p.exists() {
        return Some(p);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must have the corpus (scripts/fetch-corpus)"
    );
    eprintln!("SKIP: {} missing (run scripts/fetch-corpus)", p.display());
    None
}

fn usb_device(sys: &Path, name: &str, vid: &str, pid: &str, bus: u32, dev: u32, product: &str) {
    let d = sys.join("bus/usb/devices").join(name);
    fs::create_dir_all(&d).unwrap();
    for (k, v) in [
        ("idVendor", vid),
        ("idProduct", pid),
        ("busnum", &bus.to_string()),
        ("devnum", &dev.to_string()),
        ("product", product),
    ] {
        fs::write(d.join(k), format!("{v}\n")).unwrap();
    }
    // An interface dir, which is not a device.
    fs::create_dir_all(sys.join("bus/usb/devices").join(format!("{name}:1.0"))).unwrap();
}

/// A real char device node (major 189 is usb_device), chowned and chmodded.
fn node(dev: &Path, bus: u32, num: u32, gid: u32, mode: u32) -> bool {
    node_with(dev, bus, num, gid, mode, (189, 3))
}

fn node_with(
    dev: &Path,
    bus: u32,
    num: u32,
    gid: u32,
    mode: u32,
    (major, minor): (u64, u64),
) -> bool {
    let p = dev.join(format!("bus/usb/{bus:03}/{num:03}"));
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    let _ = fs::remove_file(&p);
    let made = nix::sys::stat::mknod(
        &p,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
        nix::sys::stat::makedev(major, minor),
    );
    if let Err(e) = made {
        eprintln!("SKIP node-type checks: mknod failed here ({e})");
        return false;
    }
    nix::unistd::chown(&p, Some(0.into()), Some(gid.into())).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    true
}

/// `hostbridge usb ARGS` against the fake trees.
fn usb_cmd(env: &Env, sys: &Path, dev: &Path, args: &[&str]) -> std::process::Output {
    let roots = [
        "--sysfs-root",
        sys.to_str().unwrap(),
        "--dev-root",
        dev.to_str().unwrap(),
    ];
    let all: Vec<&str> = ["usb"].iter().chain(args).chain(&roots).copied().collect();
    env.cmd(&all).output().unwrap()
}

fn usb_json(env: &Env, sys: &Path, dev: &Path) -> (i32, serde_json::Value) {
    let out = usb_cmd(
        env,
        sys,
        dev,
        &["--json", "--user", "nut", "--expect", "051d:0002"],
    );
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap(), json)
}

fn verdict_of<'a>(json: &'a serde_json::Value, id: &str) -> (&'a str, String) {
    let d = json["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| {
            format!(
                "{}:{}",
                d["device"]["vendor"].as_str().unwrap(),
                d["device"]["product"].as_str().unwrap()
            ) == id
        })
        .unwrap();
    (
        d["verdict"].as_str().unwrap(),
        d["reason"].as_str().unwrap_or_default().to_string(),
    )
}

#[test]
fn nut_rules_verdicts_on_a_fake_apc_back_ups() {
    let Some(rules) = nut_rules() else { return };
    if !common::ensure_nut_user() {
        return;
    }
    let env = Env::new("");
    fs::create_dir_all(&env.src).unwrap();
    fs::copy(&rules, env.src.join("62-nut-usbups.rules")).unwrap();
    let out = env.run(&["sync"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let (sys, dev) = (env.tmp.path().join("sys"), env.tmp.path().join("dev"));
    usb_device(&sys, "1-1", "051d", "0002", 1, 4, "Back-UPS ES 700");
    usb_device(&sys, "1-2", "dead", "beef", 1, 5, "Mystery Gadget");
    let nut_gid = nix::unistd::Group::from_name("nut")
        .unwrap()
        .unwrap()
        .gid
        .as_raw();

    // The node as udev leaves it without the rule: root:root 0600.
    if !node(&dev, 1, 4, 0, 0o600) {
        return;
    }
    let (code, json) = usb_json(&env, &sys, &dev);
    assert_eq!(code, 1);
    let (v, why) = verdict_of(&json, "051d:0002");
    assert_eq!(v, "rules-not-applied", "{json}");
    assert!(
        why.contains("mode 0600 (rules: 0664)") && why.contains("udevadm trigger --action=add"),
        "{why}"
    );
    let (v, why) = verdict_of(&json, "dead:beef");
    assert_eq!(v, "no-rule-matches");
    assert!(why.contains("dead:beef"), "{why}");
    assert!(
        json["devices"].as_array().unwrap().len() == 2,
        "interfaces are not devices"
    );

    // As the rule asks: root:nut 0664.
    node(&dev, 1, 4, nut_gid, 0o664);
    let (code, json) = usb_json(&env, &sys, &dev);
    assert_eq!(code, 0, "{json}");
    assert_eq!(verdict_of(&json, "051d:0002").0, "ok");
    let rule = json["devices"][0]["grant"]["rules"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert!(rule.starts_with("62-nut-usbups.rules:"), "{rule}");

    // A user outside the group cannot open it.
    let out = usb_cmd(&env, &sys, &dev, &["--user", "nobody"]);
    assert_eq!(out.status.code(), Some(1));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("user-cannot-open: user nobody is not in the node's group"),
        "{table}"
    );
    assert!(
        table.contains("001:004 051d:0002 Back-UPS ES 700 "),
        "{table}"
    );

    // An expected device that is absent.
    fs::remove_dir_all(sys.join("bus/usb/devices/1-1")).unwrap();
    let (code, json) = usb_json(&env, &sys, &dev);
    assert_eq!(code, 1);
    assert_eq!(json["absent"][0], "051d:0002");
}

/// NUT's rules file, the nut user, an env and its fake sysfs and /dev roots;
/// `None` (said) where the corpus or root is missing.
fn nut_env() -> Option<(PathBuf, Env, PathBuf, PathBuf)> {
    let rules = nut_rules()?;
    if !common::ensure_nut_user() {
        return None;
    }
    let env = Env::new("");
    let (sys, dev) = (env.tmp.path().join("sys"), env.tmp.path().join("dev"));
    Some((rules, env, sys, dev))
}

/// Starts `env`'s bridge over the fake `sys` and `dev` trees, exporting
/// NUT's `rules`, with a `usb-check` as nut expecting 051d:0002.
fn start_nut_check(env: &Env, sys: &Path, dev: &Path, rules: &Path) -> common::Daemon {
    let cfg = fs::read_to_string(&env.config).unwrap();
    fs::write(
        &env.config,
        format!("sysfs_root: {}\ndev_root: {}\n{cfg}    then:\n      - udev-reload\n      - usb-check: {{ user: nut, expect: [\"051d:0002\"] }}\n", sys.display(), dev.display()),
    )
    .unwrap();
    fs::create_dir_all(&env.src).unwrap();
    fs::copy(rules, env.src.join("62-nut-usbups.rules")).unwrap();
    env.start()
}

#[test]
fn usb_check_action_reports_into_the_sync() {
    let Some((rules, env, sys, dev)) = nut_env() else {
        return;
    };
    usb_device(&sys, "1-1", "051d", "0002", 1, 4, "Back-UPS ES 700");
    if !node(&dev, 1, 4, 0, 0o600) {
        return;
    }
    let d = start_nut_check(&env, &sys, &dev, &rules);
    assert_logged(
        &d,
        "usb-check failed (retried on the next sync): 051d:0002 rules-not-applied",
    );
    let out = env.run(&["status"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed usb-check degrades the bridge"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("usb-check: 051d:0002 rules-not-applied")
    );
}

#[test]
fn the_probe_really_opens_as_the_user() {
    let Some(rules) = nut_rules() else { return };
    if !common::ensure_nut_user() {
        return;
    }
    let env = Env::new("");
    fs::create_dir_all(&env.src).unwrap();
    fs::copy(&rules, env.src.join("62-nut-usbups.rules")).unwrap();
    assert_eq!(env.run(&["sync"]).status.code(), Some(0));
    let (sys, dev) = (env.tmp.path().join("sys"), env.tmp.path().join("dev"));
    usb_device(&sys, "1-1", "051d", "0002", 1, 4, "Back-UPS ES 700");
    let nut_gid = nix::unistd::Group::from_name("nut")
        .unwrap()
        .unwrap()
        .gid
        .as_raw();
    // The node is a char device that always answers (the numbers of /dev/null),
    // so only permissions decide whether an open works.
    if !node_with(&dev, 1, 4, nut_gid, 0o664, (1, 3)) {
        return;
    }
    // The temp dirs must be traversable by the nut user for the open to work.
    for d in [env.tmp.path(), &dev, &dev.join("bus"), &dev.join("bus/usb")] {
        fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let probe = |env: &Env| usb_cmd(env, &sys, &dev, &["--probe", "--user", "nut"]);
    let out = probe(&env);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Only root may enter the bus dir now: the mode bits of the node still
    // say yes, but a real open as nut fails, so the child did drop root.
    fs::set_permissions(dev.join("bus/usb/001"), fs::Permissions::from_mode(0o700)).unwrap();
    let out = probe(&env);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("user-cannot-open: the mode bits allow it, but a real open failed"),
        "{text}"
    );
    assert!(text.contains("Permission denied"), "{text}");
}

/// A daemon whose bridge grants 051d:0002 to dialout; returns the env, the
/// daemon, the node path and dialout's gid.
fn revocation_setup(revoke: &str) -> Option<(Env, common::Daemon, PathBuf, u32)> {
    revocation_setup_with(revoke, "", Plug::Before)
}

/// [`revocation_setup`] with more `then:` actions after `udev-reload`.
fn revocation_setup_then(revoke: &str, then: &str) -> Option<(Env, common::Daemon, PathBuf, u32)> {
    revocation_setup_with(revoke, then, Plug::Before)
}

/// When the fake UPS is plugged in, and how its node starts.
#[derive(PartialEq)]
enum Plug {
    /// Before the daemon starts, its node `root:root 0600`.
    Before,
    /// Once the rule is installed (udev grants it on plug-in).
    Later,
    /// Before, its node already `root:dialout 0660`: the grant of an
    /// earlier glue whose rules file is gone.
    GrantedByEarlierGlue,
}

/// [`revocation_setup_then`], the UPS plugged in as `plug` says.
fn revocation_setup_with(
    revoke: &str,
    then: &str,
    plug_as: Plug,
) -> Option<(Env, common::Daemon, PathBuf, u32)> {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP revocation: needs root for device nodes");
        return None;
    }
    let dialout = nix::unistd::Group::from_name("dialout")
        .unwrap()?
        .gid
        .as_raw();
    let env = Env::new("");
    let (sys, dev) = (env.tmp.path().join("sys"), env.tmp.path().join("dev"));
    let plug = || {
        usb_device(&sys, "1-1", "051d", "0002", 1, 4, "Back-UPS ES 700");
        match plug_as {
            Plug::GrantedByEarlierGlue => node(&dev, 1, 4, dialout, 0o660),
            _ => node(&dev, 1, 4, 0, 0o600),
        }
    };
    if plug_as != Plug::Later && !plug() {
        return None;
    }
    let cfg = fs::read_to_string(&env.config).unwrap();
    fs::write(
        &env.config,
        format!("sysfs_root: {}\ndev_root: {}\n{cfg}    revoke: {revoke}\n    then:\n      - udev-reload\n{then}", sys.display(), dev.display()),
    )
    .unwrap();
    env.put("62-ups.rules", "SUBSYSTEM==\"usb\", ATTR{idVendor}==\"051d\", ATTR{idProduct}==\"0002\", MODE=\"0660\", GROUP=\"dialout\"\n");
    let d = env.start();
    if plug_as == Plug::Later && !plug() {
        return None;
    }
    // What udevd would do with the rule: root:dialout 0660.
    let p = dev.join("bus/usb/001/004");
    nix::unistd::chown(&p, None, Some(dialout.into())).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o660)).unwrap();
    Some((env, d, p, dialout))
}

fn perms(p: &Path) -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(p).unwrap();
    (m.gid(), m.mode() & 0o777)
}

#[test]
fn a_removed_rule_has_its_grant_restored() {
    let Some((env, d, node_path, _)) = revocation_setup("restore") else {
        return;
    };
    fs::remove_file(env.src.join("62-ups.rules")).unwrap();
    d.wait_log("revoked 051d:0002: restored");
    assert_eq!(perms(&node_path), (0, 0o600), "{}", d.log());
    assert_logged(&d, "to root:root 0600 (udev left root:dialout 0660)");
    let calls = env.udevadm_calls();
    assert!(
        calls
            .iter()
            .any(|c| c.starts_with("trigger --action=add ") && c.contains("bus/usb/devices/1-1")),
        "an add trigger for just that device: {calls:?}"
    );
    let out = env.run(&["status", "--json"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("revoked 051d:0002: restored"));
}

#[test]
fn a_grant_an_earlier_glue_left_is_never_restored() {
    // The node already had root:dialout 0660 when hostbridge first granted
    // it (the old path-unit glue's rules file is gone, its grant stayed):
    // revoking does what a fresh plug-in does, not put that grant back.
    let Some((env, d, node_path, _)) =
        revocation_setup_with("restore", "", Plug::GrantedByEarlierGlue)
    else {
        return;
    };
    let grants = fs::read_to_string(env.state.join("usb-grants.json")).unwrap();
    assert!(
        grants.contains("\"inherited\": \"root:dialout 0660\""),
        "{grants}"
    );
    remove_rule_and_wait(&env, &d);
    assert_logged(
        &d,
        "revoked 051d:0002: before hostbridge's grant it had root:dialout 0660, a grant of rules no longer installed (an earlier glue's?), which is not put back, so reset",
    );
    // Owner and group root; udev's add (a stand-in here) sets the mode.
    assert_eq!(perms(&node_path).0, 0, "{}", d.log());
    assert!(
        env.udevadm_calls()
            .iter()
            .any(|c| c.starts_with("trigger --action=add "))
    );
}

#[test]
fn after_a_restore_the_usb_status_shows_the_restored_node() {
    let then = "      - usb-check: { user: root, expect: [\"051d:0002\"] }\n";
    let Some((env, d, _, _)) = revocation_setup_then("restore", then) else {
        return;
    };
    fs::remove_file(env.src.join("62-ups.rules")).unwrap();
    d.wait_log("revoked 051d:0002: restored");
    wait_for(
        "the revocation's sync in the status",
        || status_json(&env)["bridges"][0]["last_sync"]["trigger"] != "startup reconcile",
        || d.log(),
    );
    let usb = &status_json(&env)["bridges"][0]["usb"];
    assert_eq!(usb["devices"][0]["node"], "root:root 0600", "{usb:#}");
    assert_eq!(usb["devices"][0]["verdict"], "no-rule-matches", "{usb:#}");
}

#[test]
fn a_device_plugged_in_after_the_grant_goes_back_to_root_when_the_rule_goes() {
    let Some((env, d, node_path, _)) = revocation_setup_with("restore", "", Plug::Later) else {
        return;
    };
    remove_rule_and_wait(&env, &d);
    // No state before the grant to go back to: owner and group as the
    // kernel creates nodes, then udev's add (here a stand-in that leaves
    // the node alone; the VM test has the real one).
    assert_eq!(perms(&node_path), (0, 0o660), "{}", d.log());
    assert_logged(
        &d,
        "revoked 051d:0002: plugged in after the grant, so reset ",
    );
    assert_logged(
        &d,
        "/bus/usb/001/004 to root:root as a fresh node and let udev's add apply the remaining rules: root:root 0660",
    );
    let calls = env.udevadm_calls();
    assert!(
        calls.iter().any(|c| c.starts_with("trigger --action=add ")),
        "{calls:?}"
    );
}

#[test]
fn revoke_report_leaves_a_device_plugged_in_after_the_grant() {
    let Some((env, d, node_path, dialout)) = revocation_setup_with("report", "", Plug::Later)
    else {
        return;
    };
    remove_rule_and_wait(&env, &d);
    assert_eq!(perms(&node_path), (dialout, 0o660), "{}", d.log());
    assert_logged(
        &d,
        "still has root:dialout 0660 (plugged in after the grant, so nothing was recorded before it); revoke: report leaves it",
    );
}

#[test]
fn revoke_report_only_reports() {
    let Some((env, d, node_path, dialout)) = revocation_setup("report") else {
        return;
    };
    remove_rule_and_wait(&env, &d);
    assert_eq!(perms(&node_path), (dialout, 0o660));
    assert_logged(
        &d,
        "still has root:dialout 0660 (before the grant: root:root 0600); revoke: report leaves it",
    );
}

#[test]
fn a_restore_never_follows_a_link_put_in_place_of_the_node() {
    let Some((env, d, node_path, _)) = revocation_setup("restore") else {
        return;
    };
    // Someone swaps the node for a link to a file hostbridge must not touch.
    let decoy = env.tmp.path().join("decoy");
    fs::write(&decoy, "precious").unwrap();
    fs::set_permissions(&decoy, fs::Permissions::from_mode(0o644)).unwrap();
    fs::remove_file(&node_path).unwrap();
    std::os::unix::fs::symlink(&decoy, &node_path).unwrap();
    remove_rule_and_wait(&env, &d);
    assert_eq!(perms(&decoy), (0, 0o644), "{}", d.log());
    assert_logged(&d, "failed: it is not a char device (left alone)");
}

#[test]
fn a_restore_never_touches_another_device_put_in_place_of_the_node() {
    let Some((env, d, node_path, dialout)) = revocation_setup("restore") else {
        return;
    };
    // The same path now holds another device (1:3, like /dev/null), with
    // the granted perms: hostbridge recorded 189:3 and leaves this alone.
    let (bus, num) = (1, 4);
    let dev_root = node_path.ancestors().nth(4).unwrap();
    assert!(node_with(dev_root, bus, num, dialout, 0o660, (1, 3)));
    remove_rule_and_wait(&env, &d);
    assert_eq!(perms(&node_path), (dialout, 0o660), "{}", d.log());
    assert_logged(
        &d,
        "failed: it is another device than the one recorded (left alone)",
    );
}

/// The host's dialout group (Debian has it).
fn dialout_gid() -> u32 {
    nix::unistd::Group::from_name("dialout")
        .unwrap()
        .expect("a dialout group")
        .gid
        .as_raw()
}

/// Removes the granting rule and waits for the revocation's log line.
fn remove_rule_and_wait(env: &Env, d: &common::Daemon) {
    fs::remove_file(env.src.join("62-ups.rules")).unwrap();
    d.wait_log("revoked 051d:0002:");
}

/// Asserts the daemon log has `needle`, showing the log if not.
fn assert_logged(d: &common::Daemon, needle: &str) {
    assert!(d.log().contains(needle), "{needle:?} not in:\n{}", d.log());
}

/// Status JSON from the running daemon.
fn status_json(env: &Env) -> serde_json::Value {
    let out = env.run(&["status", "--json"]);
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)))
}

/// A bridge granting 051d:0002 to dialout 0660, with `usb-check` as root,
/// over fake sysfs and /dev trees and a udev run dir (with no `control`
/// socket yet): the env, sysfs root, dev root, udev run dir.
fn hotplug_env() -> (Env, PathBuf, PathBuf, PathBuf) {
    hotplug_env_from(Env::new(""))
}

fn hotplug_env_from(env: Env) -> (Env, PathBuf, PathBuf, PathBuf) {
    hotplug_env_checking(env, "{ user: root }")
}

/// [`hotplug_env_from`] with `check` as the `usb-check` action's settings.
fn hotplug_env_checking(env: Env, check: &str) -> (Env, PathBuf, PathBuf, PathBuf) {
    let root = env.tmp.path();
    let (sys, dev, udev_run) = (root.join("sys"), root.join("dev"), root.join("run-udev"));
    fs::create_dir_all(&udev_run).unwrap();
    let cfg = fs::read_to_string(&env.config).unwrap();
    fs::write(
        &env.config,
        format!(
            "sysfs_root: {}\ndev_root: {}\nudev_run_dir: {}\n{cfg}    then:\n      - udev-reload\n      - usb-check: {check}\n",
            sys.display(),
            dev.display(),
            udev_run.display()
        ),
    )
    .unwrap();
    env.put(
        "62-ups.rules",
        "SUBSYSTEM==\"usb\", ATTR{idVendor}==\"051d\", ATTR{idProduct}==\"0002\", MODE=\"0660\", GROUP=\"dialout\"\n",
    );
    (env, sys, dev, udev_run)
}

#[test]
fn without_udevd_hotplug_is_off_said_once_and_the_sync_check_still_reports() {
    let (env, sys, dev, udev_run) = hotplug_env();
    usb_device(&sys, "1-1", "051d", "0002", 1, 4, "Back-UPS ES 700");
    usb_device(&sys, "1-2", "046d", "c31c", 1, 5, "USB Keyboard");
    // The node as a plain file (no mknod needed): the check says it is not
    // a character device, which is enough to see the result in the status.
    fs::create_dir_all(dev.join("bus/usb/001")).unwrap();
    fs::write(dev.join("bus/usb/001/004"), "").unwrap();
    let d = env.start();
    let said = format!(
        "udevd is not running (no {}/control): USB hotplug re-checks are off",
        udev_run.display()
    );
    assert_eq!(d.log().matches(&said).count(), 1, "{}", d.log());

    let st = status_json(&env);
    assert_eq!(
        st["daemon"]["hotplug"],
        format!(
            "off: udevd is not running (no {}/control)",
            udev_run.display()
        )
    );
    let usb = &st["bridges"][0]["usb"];
    assert_eq!(usb["trigger"], "sync", "{st:#}");
    assert_eq!(usb["user"], "root");
    // Only the device a rule grants is listed; the keyboard is not.
    let devices = usb["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 1, "{usb:#}");
    assert_eq!(devices[0]["bus_dev"], "001:004");
    assert_eq!(devices[0]["id"], "051d:0002");
    assert_eq!(devices[0]["rule"], "62-ups.rules:1");
    assert_eq!(devices[0]["verdict"], "rules-not-applied");
    assert!(
        devices[0]["reason"]
            .as_str()
            .unwrap()
            .contains("is not a character device"),
        "{usb:#}"
    );
    let screen = String::from_utf8_lossy(&env.run(&["status"]).stdout).into_owned();
    assert!(
        screen.contains("  usb (sync, ") && screen.contains("051d:0002 rules-not-applied"),
        "{screen}"
    );
    assert!(
        screen.contains("USB hotplug re-checks off: udevd is not running"),
        "{screen}"
    );

    // A reload tries again (udevd may have started) but does not say it twice.
    nix::sys::signal::kill(d.pid(), nix::sys::signal::Signal::SIGHUP).unwrap();
    d.wait_log("SIGHUP: config reloaded");
    assert_eq!(d.log().matches(&said).count(), 1, "{}", d.log());
}

#[test]
fn hotplug_is_not_used_without_a_usb_check() {
    let env = Env::new("");
    let _d = env.start();
    let st = status_json(&env);
    assert_eq!(
        st["daemon"]["hotplug"],
        "not used (no bridge has a usb-check action)"
    );
    assert!(st["bridges"][0]["usb"].is_null());
}

/// Stands in for systemd-udevd's broadcast, which cannot happen on the test
/// machines (no udevd, no USB devices): sends one event for a USB device in
/// udevd's wire format (systemd's `monitor_netlink_header`, then the
/// properties as NUL-separated `KEY=value`) to the "udev" netlink group, from
/// inside the network namespace of process `pid`, where only the daemon
/// under test listens. The daemon receives it through the real libudev.
mod fake_udevd {
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{
        AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, sendto, socket,
    };

    /// systemd's `string_hash32`: MurmurHash2 with seed 0.
    fn murmur2(key: &[u8]) -> u32 {
        const M: u32 = 0x5bd1_e995;
        let mut h = key.len() as u32;
        let mut chunks = key.chunks_exact(4);
        for c in &mut chunks {
            let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            k = k.wrapping_mul(M);
            k ^= k >> 24;
            k = k.wrapping_mul(M);
            h = h.wrapping_mul(M) ^ k;
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            for (i, b) in rest.iter().enumerate() {
                h ^= u32::from(*b) << (8 * i);
            }
            h = h.wrapping_mul(M);
        }
        h ^= h >> 13;
        h = h.wrapping_mul(M);
        h ^ (h >> 15)
    }

    /// The message udevd would send for `action` on USB device bus/dev with
    /// `PRODUCT=product`.
    fn message(action: &str, seqnum: u64, bus: u32, dev: u32, product: &str) -> Vec<u8> {
        let mut props = Vec::new();
        for p in [
            format!("ACTION={action}"),
            format!("DEVPATH=/devices/pci0000:00/0000:00:04.0/usb{bus}/{bus}-{dev}"),
            "SUBSYSTEM=usb".into(),
            "DEVTYPE=usb_device".into(),
            format!("SEQNUM={seqnum}"),
            format!("BUSNUM={bus:03}"),
            format!("DEVNUM={dev:03}"),
            format!("PRODUCT={product}"),
            format!("DEVNAME=/dev/bus/usb/{bus:03}/{dev:03}"),
        ] {
            props.extend_from_slice(p.as_bytes());
            props.push(0);
        }
        const HEADER: u32 = 40;
        let mut m = b"libudev\0".to_vec();
        m.extend_from_slice(&0xfeed_cafe_u32.to_be_bytes()); // magic, network order
        m.extend_from_slice(&HEADER.to_ne_bytes()); // header_size
        m.extend_from_slice(&HEADER.to_ne_bytes()); // properties_off
        m.extend_from_slice(&(props.len() as u32).to_ne_bytes()); // properties_len
        m.extend_from_slice(&murmur2(b"usb").to_be_bytes()); // for the kernel BPF filter
        m.extend_from_slice(&murmur2(b"usb_device").to_be_bytes());
        m.extend_from_slice(&[0; 8]); // tag bloom: no tags
        m.extend_from_slice(&props);
        m
    }

    /// Sends the event from `pid`'s network namespace (in a thread of its
    /// own, so this test's other threads stay where they are), with `extra`
    /// properties (e.g. `SYNTH_UUID=0`, which the kernel adds to events made
    /// by `udevadm trigger`).
    pub fn send(
        pid: nix::unistd::Pid,
        action: &str,
        seqnum: u64,
        bus: u32,
        dev: u32,
        product: &str,
        extra: &[&str],
    ) {
        send_times(pid, 1, action, seqnum, bus, dev, product, extra);
    }

    /// [`send`], `times` times over (a flood).
    #[allow(clippy::too_many_arguments)]
    pub fn send_times(
        pid: nix::unistd::Pid,
        times: usize,
        action: &str,
        seqnum: u64,
        bus: u32,
        dev: u32,
        product: &str,
        extra: &[&str],
    ) {
        let mut msg = message(action, seqnum, bus, dev, product);
        for p in extra {
            msg.extend_from_slice(p.as_bytes());
            msg.push(0);
        }
        // properties_len (bytes 20..24) covers the extra properties too.
        let len = (msg.len() - 40) as u32;
        msg[20..24].copy_from_slice(&len.to_ne_bytes());
        std::thread::spawn(move || {
            let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).unwrap();
            nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let fd = socket(
                AddressFamily::Netlink,
                SockType::Raw,
                SockFlag::SOCK_CLOEXEC,
                SockProtocol::NetlinkKObjectUEvent,
            )
            .unwrap();
            // Group 2 is udevd's ("udev"); group 1 would be the kernel's.
            for _ in 0..times {
                sendto(
                    fd.as_raw_fd(),
                    &msg,
                    &NetlinkAddr::new(0, 2),
                    MsgFlags::empty(),
                )
                .unwrap();
            }
        })
        .join()
        .unwrap();
    }
}

/// Whether the fake-udevd hotplug tests can run here (root and unshare).
fn can_fake_udevd() -> bool {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP hotplug: needs root (a private network namespace, device nodes)");
        return false;
    }
    if Command::new("unshare").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have unshare (util-linux)"
        );
        eprintln!("SKIP hotplug: no unshare (util-linux)");
        return false;
    }
    true
}

#[test]
fn hotplug_add_and_remove_of_a_granted_device_are_rechecked() {
    if !can_fake_udevd() {
        return;
    }
    let (env, sys, dev, udev_run) = hotplug_env();
    fs::create_dir_all(sys.join("bus/usb/devices")).unwrap();
    // udevd's control socket: its presence says udevd runs.
    let _control = std::os::unix::net::UnixListener::bind(udev_run.join("control")).unwrap();
    let d = env.spawn_daemon_via(&["unshare", "--net"], &[("HOSTBRIDGE_LOG", "debug")]);
    d.wait_log("ready:");
    assert_logged(&d, "listening for USB hotplug events from udevd");
    let st = status_json(&env);
    assert_eq!(st["daemon"]["hotplug"], "on");
    assert_eq!(st["bridges"][0]["usb"]["devices"], serde_json::json!([]));

    // The UPS is plugged in: udevd has applied the rule (dialout 0660),
    // then broadcasts "add".
    usb_device(&sys, "1-1", "051d", "0002", 1, 4, "Back-UPS ES 700");
    let dialout = dialout_gid();
    if !node(&dev, 1, 4, dialout, 0o660) {
        return;
    }
    fake_udevd::send(d.pid(), "add", 1001, 1, 4, "51d/2/100", &[]);
    d.wait_log("test: USB add 001:004: 051d:0002 ok; all: 051d:0002 ok");
    let usb = &status_json(&env)["bridges"][0]["usb"];
    assert_eq!(usb["trigger"], "hotplug add 001:004", "{usb:#}");
    assert_eq!(usb["devices"][0]["verdict"], "ok", "{usb:#}");
    assert_eq!(usb["devices"][0]["node"], "root:dialout 0660", "{usb:#}");

    // `udevadm trigger` by hand while the bridge is idle: a synthetic
    // event, re-checked all the same.
    fake_udevd::send(
        d.pid(),
        "change",
        1002,
        1,
        4,
        "51d/2/100",
        &["SYNTH_UUID=0"],
    );
    d.wait_log("test: USB change 001:004: 051d:0002 ok");

    // A keyboard no rule lists: checked, but neither recorded nor logged.
    usb_device(&sys, "1-2", "046d", "c31c", 1, 5, "USB Keyboard");
    fake_udevd::send(d.pid(), "add", 1003, 1, 5, "46d/c31c/110", &[]);
    d.wait_log("USB add 001:005 does not concern this bridge");

    // Unplugged: the device is gone from sysfs, then "remove" arrives.
    fs::remove_dir_all(sys.join("bus/usb/devices/1-1")).unwrap();
    fake_udevd::send(d.pid(), "remove", 1004, 1, 4, "51d/2/100", &[]);
    d.wait_log("test: USB remove 001:004: device gone");
    let usb = &status_json(&env)["bridges"][0]["usb"];
    assert_eq!(usb["trigger"], "hotplug remove 001:004", "{usb:#}");
    assert_eq!(usb["devices"], serde_json::json!([]), "{usb:#}");
    assert!(!d.log().contains("test: USB add 001:005:"), "{}", d.log());
}

#[test]
fn hotplug_events_during_a_sync_are_each_rechecked_after_it() {
    if !can_fake_udevd() {
        return;
    }
    // The startup sync installs the rule and blocks in `udevadm control`.
    let (env, sys, dev, udev_run) = hotplug_env_from(Env::new("").with_gate());
    let _control = std::os::unix::net::UnixListener::bind(udev_run.join("control")).unwrap();
    let dialout = dialout_gid();
    for (name, num) in [("1-1", 4), ("1-2", 6)] {
        usb_device(&sys, name, "051d", "0002", 1, num, "Back-UPS ES 700");
        if !node(&dev, 1, num, dialout, 0o660) {
            return;
        }
    }
    let d = env.spawn_daemon_via(&["unshare", "--net"], &[]);
    let gate_used = env.tmp.path().join("gate.used");
    wait_for("the sync at the gate", || gate_used.exists(), || d.log());
    // Two UPSes plugged in while the bridge syncs: both are owed.
    fake_udevd::send(d.pid(), "add", 2001, 1, 4, "51d/2/100", &[]);
    fake_udevd::send(d.pid(), "add", 2002, 1, 6, "51d/2/100", &[]);
    env.open_gate();
    d.wait_log("test: USB add 001:004: 051d:0002 ok");
    d.wait_log("test: USB add 001:006: 051d:0002 ok");
    let usb = &status_json(&env)["bridges"][0]["usb"];
    assert_eq!(
        usb["trigger"], "hotplug add 001:004, add 001:006",
        "one re-check for both: {usb:#}"
    );
}

#[test]
fn lost_udev_events_are_said_and_every_device_is_rechecked() {
    if !can_fake_udevd() {
        return;
    }
    let (env, sys, dev, udev_run) = hotplug_env();
    let _control = std::os::unix::net::UnixListener::bind(udev_run.join("control")).unwrap();
    usb_device(&sys, "1-1", "051d", "0002", 1, 4, "Back-UPS ES 700");
    let dialout = dialout_gid();
    if !node(&dev, 1, 4, dialout, 0o660) {
        return;
    }
    let mut d = env.spawn_daemon_via(&["unshare", "--net"], &[]);
    d.wait_log("ready:");
    // The daemon is stopped while a flood arrives: its monitor's receive
    // buffer overflows and the kernel drops events (ENOBUFS).
    use nix::sys::signal::{Signal, kill};
    kill(d.pid(), Signal::SIGSTOP).unwrap();
    fake_udevd::send_times(d.pid(), 400_000, "change", 3000, 1, 5, "46d/c31c/110", &[]);
    kill(d.pid(), Signal::SIGCONT).unwrap();
    d.wait_log("udev events were lost (the monitor's receive buffer overflowed); re-checking every USB device");
    d.wait_log("test: USB lost events: every device re-checked; all: 051d:0002 ok");
    assert_eq!(status_json(&env)["daemon"]["hotplug"], "on", "{}", d.log());
    // The monitor still works afterwards. Until the daemon has read the
    // rest of the flood its buffer is full and drops new events: resend.
    let pid = d.pid();
    wait_for(
        "an add after the flood",
        || {
            fake_udevd::send(pid, "add", 9001, 1, 4, "51d/2/100", &[]);
            d.log().contains("test: USB add 001:004: 051d:0002 ok")
        },
        || d.log(),
    );
    assert!(d.stop().success());
}

#[test]
fn wait_for_a_usb_device_needs_it_plugged_in_and_usable() {
    let Some((rules, env, sys, dev)) = nut_env() else {
        return;
    };
    fs::create_dir_all(sys.join("bus/usb/devices")).unwrap();
    fs::create_dir_all(&dev).unwrap();
    let d = start_nut_check(&env, &sys, &dev, &rules);
    let wait = |timeout: &str| {
        let out = env.run(&[
            "wait",
            "--bridge",
            "test",
            "--usb",
            "051D:0002",
            "--timeout",
            timeout,
        ]);
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), said)
    };
    // Not plugged in: out of time, saying so.
    let (code, said) = wait("2s");
    assert_eq!(code, Some(1), "{said}\n{}", d.log());
    assert!(said.contains("051d:0002 is not plugged in"), "{said}");
    assert!(said.contains("not ready after 2s"), "{said}");

    // Plugged in while nothing changed in the export, its node as NUT's rule
    // leaves it (udevd is not here): the check `wait` asks for sees it.
    usb_device(&sys, "1-1", "051d", "0002", 1, 4, "Back-UPS ES 700");
    let nut_gid = nix::unistd::Group::from_name("nut")
        .unwrap()
        .unwrap()
        .gid
        .as_raw();
    if !node(&dev, 1, 4, nut_gid, 0o664) {
        return;
    }
    let (code, said) = wait("120s");
    assert_eq!(code, Some(0), "{said}\n{}", d.log());
    assert!(said.contains("051d:0002 at 001:004 ok"), "{said}");

    // A node the user cannot open: not ready, and why.
    node(&dev, 1, 4, 0, 0o600);
    let (code, said) = wait("2s");
    assert_eq!(code, Some(1), "{said}\n{}", d.log());
    assert!(said.contains("051d:0002 at 001:004: "), "{said}");
}

#[test]
fn a_replugged_ups_runs_on_replug_and_a_flapping_one_is_held_back() {
    if !can_fake_udevd() {
        return;
    }
    let env = Env::new("");
    let ran = env.tmp.path().join("on-replug.log");
    let check = format!(
        "{{ user: root, expect: [051d:0002], on_replug: [ exec: {{ argv: [/bin/sh, -c, 'echo \"$HOSTBRIDGE_BRIDGE: $HOSTBRIDGE_REPLUGGED\" >> {}'] }} ] }}",
        ran.display()
    );
    let (env, sys, dev, udev_run) = hotplug_env_checking(env, &check);
    let dialout = dialout_gid();
    usb_device(&sys, "1-1", "051d", "0002", 1, 4, "Back-UPS ES 700");
    if !node(&dev, 1, 4, dialout, 0o660) {
        return;
    }
    let _control = std::os::unix::net::UnixListener::bind(udev_run.join("control")).unwrap();
    let d = env.spawn_daemon_via(&["unshare", "--net"], &[("HOSTBRIDGE_LOG", "debug")]);
    d.wait_log("ready:");
    assert_logged(&d, "listening for USB hotplug events from udevd");
    let runs = || fs::read_to_string(&ran).unwrap_or_default();
    let replug = |seq: u64, devnum: u32| {
        fs::remove_dir_all(sys.join("bus/usb/devices/1-1")).unwrap();
        fake_udevd::send(d.pid(), "remove", seq, 1, devnum - 1, "51d/2/100", &[]);
        usb_device(&sys, "1-1", "051d", "0002", 1, devnum, "Back-UPS ES 700");
        assert!(node(&dev, 1, devnum, dialout, 0o660));
        fake_udevd::send(d.pid(), "add", seq + 1, 1, devnum, "51d/2/100", &[]);
    };

    // The UPS was there at start: the startup check is the first, nothing
    // arrived, nothing runs.
    assert_eq!(status_json(&env)["bridges"][0]["usb"]["ok"], true);
    assert!(runs().is_empty(), "{}", runs());

    // Unplugged and plugged back: a new device number.
    replug(1001, 5);
    d.wait_log("test: 051d:0002 at 001:005 re-enumerated: running on_replug (exec)");
    d.wait_log("test: on_replug exec ok");
    assert_eq!(runs(), "test: 051d:0002 at 001:005\n");
    let st = status_json(&env);
    let r = &st["bridges"][0]["replug"];
    assert_eq!(
        r["devices"],
        serde_json::json!(["051d:0002 at 001:005"]),
        "{r:#}"
    );
    assert_eq!(r["ok"], true, "{r:#}");
    assert_eq!(r["actions"][0]["action"], "exec", "{r:#}");
    assert_eq!(st["bridges"][0]["counters"]["replug_runs"], 1);
    assert_eq!(st["bridges"][0]["health"], "healthy", "{st:#}");

    // At once again (it flaps): held back for the rest of the first gap,
    // then it runs once, for the device as it is now.
    replug(1003, 6);
    d.wait_log("test: 051d:0002 at 001:006 re-enumerated; on_replug is held back");
    let r = &status_json(&env)["bridges"][0]["replug"];
    assert!(r["next_at"].as_u64().is_some(), "{r:#}");
    d.wait_log("test: 051d:0002 at 001:006 re-enumerated: running on_replug (exec)");
    d.wait_log_count("test: on_replug exec ok", 2);
    assert_eq!(
        runs(),
        "test: 051d:0002 at 001:005\ntest: 051d:0002 at 001:006\n"
    );
    let out = env.run(&["status"]);
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(
        screen.contains("replug (") && screen.contains("051d:0002 at 001:006): exec ok"),
        "{screen}"
    );
}
