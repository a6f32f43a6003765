//! `kind: files` bridges end to end: `require`, `validate: tls-pair` with
//! pairs made by the openssl CLI, and the symlink-dir swap proven with
//! concurrent readers while 200 updates go through.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use common::{Env, wait_for};

/// A files bridge config (the harness writes a udev-rules one; replace the kind).
fn files_env(extra: &str) -> Env {
    Env::new_files(extra)
}

const TLS: &str = "    mode: \"0640\"\n    require: [tls.crt, tls.key]\n    validate: { tls-pair: { cert: tls.crt, key: tls.key } }\n";

#[test]
fn a_valid_pair_is_installed_a_mismatch_is_held_and_require_waits() {
    let env = files_env(TLS);
    let (crt_a, key_a, _) = common::openssl_pair("p256", "a", 30);
    let (crt_b, _, _) = common::openssl_pair("p256", "b", 30);
    let (crt_c, key_c, _) = common::openssl_pair("p256", "c", 30);
    env.put_renamed("tls.crt", &crt_a);
    env.put_renamed("tls.key", &key_a);
    let d = env.start();
    assert_eq!(fs::read(env.dest.join("tls.crt")).unwrap(), crt_a);
    assert_eq!(fs::read(env.dest.join("tls.key")).unwrap(), key_a);
    let link = fs::read_link(env.dest.join("tls.crt")).unwrap();
    assert_eq!(
        link.to_str(),
        Some("..data/tls.crt"),
        "symlink-dir is the default with validate"
    );
    assert_eq!(
        fs::metadata(env.dest.join("tls.key")).unwrap().mode() & 0o777,
        0o640
    );

    // Cert B with key A: a mismatch. Nothing changes; the finding names both files.
    env.put_renamed("tls.crt", &crt_b);
    d.wait_log("tls.crt: error[tls-pair]: tls.crt and tls.key: the private key does not match the certificate's public key");
    assert!(
        d.log()
            .contains("holding: tls.crt and tls.key failed validation; nothing was changed"),
        "{}",
        d.log()
    );
    assert_eq!(fs::read(env.dest.join("tls.crt")).unwrap(), crt_a);

    // Only the key goes away and the new cert arrives: require holds everything.
    fs::remove_file(env.src.join("tls.key")).unwrap();
    env.put_renamed("tls.crt", &crt_c);
    d.wait_log("holding: waiting for tls.key (require)");
    assert_eq!(fs::read(env.dest.join("tls.crt")).unwrap(), crt_a);
    assert_eq!(
        fs::read(env.dest.join("tls.key")).unwrap(),
        key_a,
        "the key was not pruned while held"
    );
    env.put_renamed("tls.key", &key_c);
    wait_for(
        "pair C installed",
        || fs::read(env.dest.join("tls.key")).ok() == Some(key_c.clone()),
        || d.log(),
    );
    assert_eq!(fs::read(env.dest.join("tls.crt")).unwrap(), crt_c);

    let (code, text) = {
        let out = env.run(&["status"]);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    assert_eq!(code, Some(0), "{text}");
}

#[test]
fn symlink_dir_swap_never_mixes_a_set_over_200_updates() {
    // 201 real pairs; the bridge validates them, so a half-written set in the
    // source (new key, old cert) is held, never published. Fast settle so
    // 200 updates take seconds.
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = (0..=200)
        .map(|i| {
            let (c, k, _) = common::openssl_pair("p256", &format!("v{i}"), 30);
            (c, k)
        })
        .collect();
    // Which update each certificate and each key belongs to.
    let by = |pick: usize| -> Arc<HashMap<Vec<u8>, usize>> {
        let part = |p: &(Vec<u8>, Vec<u8>)| if pick == 0 { p.0.clone() } else { p.1.clone() };
        Arc::new(
            pairs
                .iter()
                .enumerate()
                .map(|(i, p)| (part(p), i))
                .collect(),
        )
    };
    let (cert_v, key_v) = (by(0), by(1));
    let env = files_env(
        "    settle: { quiet: 10ms, max_wait: 1s }\n    require: [tls.crt, tls.key]\n    validate: { tls-pair: { cert: tls.crt, key: tls.key } }\n",
    );
    env.put_renamed("tls.crt", &pairs[0].0);
    env.put_renamed("tls.key", &pairs[0].1);
    let d = env.start();
    let stop = Arc::new(AtomicBool::new(false));
    let (mixed, reads) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));

    // Reader 1: resolves `..data` once per round and reads both files in it:
    // the pair must always be one pair.
    let r1 = {
        let (dest, stop, mixed, reads) =
            (env.dest.clone(), stop.clone(), mixed.clone(), reads.clone());
        let (cert_v, key_v) = (cert_v.clone(), key_v.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let Ok(dir) = fs::canonicalize(dest.join("..data")) else {
                    continue;
                };
                let (Ok(c), Ok(k)) = (fs::read(dir.join("tls.crt")), fs::read(dir.join("tls.key")))
                else {
                    continue;
                };
                reads.fetch_add(1, Ordering::Relaxed);
                if cert_v.get(&c) != key_v.get(&k) {
                    mixed.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    // Reader 2: opens tls.crt, then tls.key, by their plain names (as
    // exporter-toolkit does): never a newer certificate with an older key.
    let newer_cert = Arc::new(AtomicUsize::new(0));
    let r2 = {
        let (dest, stop, newer_cert) = (env.dest.clone(), stop.clone(), newer_cert.clone());
        let (cert_v, key_v) = (cert_v.clone(), key_v.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let (Ok(c), Ok(k)) = (
                    fs::read(dest.join("tls.crt")),
                    fs::read(dest.join("tls.key")),
                ) else {
                    continue;
                };
                if let (Some(c), Some(k)) = (cert_v.get(&c), key_v.get(&k))
                    && k < c
                {
                    newer_cert.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    for (i, (crt, key)) in pairs.iter().enumerate().skip(1) {
        // The writer replaces the key first, then the cert: the worst order
        // for a reader of plain files if installs were not swapped as a set.
        env.put_renamed("tls.key", key);
        env.put_renamed("tls.crt", crt);
        wait_for(
            &format!("update {i}"),
            || {
                fs::read(env.dest.join("tls.crt")).ok().as_ref() == Some(crt)
                    && fs::read(env.dest.join("tls.key")).ok().as_ref() == Some(key)
            },
            || d.log(),
        );
    }
    stop.store(true, Ordering::Relaxed);
    r1.join().unwrap();
    r2.join().unwrap();
    println!(
        "symlink-dir: 200 updates, {} consistent-set reads, {} mixed, {} newer-cert-older-key",
        reads.load(Ordering::Relaxed),
        mixed.load(Ordering::Relaxed),
        newer_cert.load(Ordering::Relaxed)
    );
    assert!(reads.load(Ordering::Relaxed) > 200, "the reader really ran");
    assert_eq!(mixed.load(Ordering::Relaxed), 0);
    assert_eq!(newer_cert.load(Ordering::Relaxed), 0);
    // Old generations are cleaned: the current one and at most the previous.
    // The cleaning follows the swap the loop above saw, so wait for it.
    let gens = || {
        common::list(&env.dest)
            .into_iter()
            .filter(|n| n.starts_with("..1"))
            .collect::<Vec<_>>()
    };
    wait_for(
        "at most 2 generation dirs",
        || gens().len() <= 2,
        || format!("{:?}\n{}", gens(), d.log()),
    );
}

#[test]
fn files_bridges_need_install_to_and_refuse_rules_keys() {
    let env = Env::new("");
    let cfg = fs::read_to_string(&env.config)
        .unwrap()
        .replace("kind: udev-rules", "kind: files");
    let no_dest: String = cfg
        .lines()
        .filter(|l| !l.contains("install_to"))
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(&env.config, no_dest).unwrap();
    let out = env.run(&["check"]);
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("of kind files needs install_to"));
    fs::write(&env.config, cfg + "    policy: trusted\n").unwrap();
    let out = env.run(&["check"]);
    assert_eq!(out.status.code(), Some(78));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("`policy` only applies to kind udev-rules")
    );
}

#[test]
fn a_changed_or_dropped_group_is_applied_to_installed_files_at_the_reload() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP group change: needs root to chown");
        return;
    }
    let dialout = nix::unistd::Group::from_name("dialout")
        .unwrap()
        .expect("a dialout group")
        .gid
        .as_raw();
    let env = files_env("    mode: \"0640\"\n    group: root\n");
    env.put("tls.key", "key\n");
    let d = env.start();
    let key = env.dest.join("tls.key");
    assert_eq!(fs::metadata(&key).unwrap().gid(), 0);
    // The operator fixes the group: the same content is re-installed with it.
    let cfg = fs::read_to_string(&env.config).unwrap();
    fs::write(&env.config, cfg.replace("group: root", "group: dialout")).unwrap();
    nix::sys::signal::kill(d.pid(), nix::sys::signal::Signal::SIGHUP).unwrap();
    wait_for(
        "tls.key in group dialout",
        || fs::metadata(&key).is_ok_and(|m| m.gid() == dialout),
        || d.log(),
    );
    assert_eq!(fs::metadata(&key).unwrap().mode() & 0o777, 0o640);
    d.wait_log("replaced tls.key");
    // The group is dropped from the config: the file goes back to root's.
    let cfg = fs::read_to_string(&env.config).unwrap();
    fs::write(&env.config, cfg.replace("    group: dialout\n", "")).unwrap();
    nix::sys::signal::kill(d.pid(), nix::sys::signal::Signal::SIGHUP).unwrap();
    wait_for(
        "tls.key back in group root",
        || fs::metadata(&key).is_ok_and(|m| m.gid() == 0),
        || d.log(),
    );
}

#[test]
fn a_pair_member_in_conflict_holds_the_whole_pair() {
    // An operator's own tls.crt sits in the destination: the container's
    // pair must not half land (its key beside the foreign certificate).
    let env = files_env(TLS);
    fs::create_dir_all(&env.dest).unwrap();
    fs::write(env.dest.join("tls.crt"), "operator's own\n").unwrap();
    let (crt, key, _) = common::openssl_pair("p256", "hostbridge-a", 30);
    env.put_renamed("tls.crt", &crt);
    env.put_renamed("tls.key", &key);
    let d = env.start();
    d.wait_log("holding the set: tls.crt is in conflict; nothing was changed");
    assert!(
        !env.dest.join("tls.key").exists(),
        "the key did not land alone"
    );
    assert_eq!(
        fs::read_to_string(env.dest.join("tls.crt")).unwrap(),
        "operator's own\n"
    );
    let st: serde_json::Value =
        serde_json::from_slice(&env.run(&["status", "--json"]).stdout).unwrap();
    assert!(
        st["bridges"][0]["cert"].is_null(),
        "no certificate was installed: {st:#}"
    );
    // The operator removes theirs: the next change installs the pair whole.
    fs::remove_file(env.dest.join("tls.crt")).unwrap();
    env.put_renamed("tls.key", &key);
    wait_for(
        "the pair installed",
        || fs::read(env.dest.join("tls.crt")).is_ok_and(|c| c == crt),
        || d.log(),
    );
    assert_eq!(fs::read(env.dest.join("tls.key")).unwrap(), key);
}
