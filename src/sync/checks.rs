//! The checks a sync applies before anything is installed: the udev rules
//! checks (policy, host preflight, `udevadm verify`) and a files bridge's
//! set-level checks (`require`, the TLS pair). Glue over core and host.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::SyncReport;
use super::unix_now;
use crate::config::{Bridge, Config, FilesSettings, RulesChecks};
use crate::core::plan;
use crate::core::rules::{self, Finding, Severity};
use crate::host::dest::DestDir;
use crate::host::preflight::{self, HostChecks};
use crate::host::source;
use crate::host::state::Manifest;

/// Set-level checks of a files bridge: every `require`d file present and
/// usable, and the TLS pair valid, judged on the bytes the scan read (and
/// kept for them). Returns why the sync must hold.
pub(super) fn set_checks(
    files: &FilesSettings,
    scan: &source::SourceScan,
    report: &mut SyncReport,
) -> Option<SetHold> {
    for r in &files.require {
        match scan.view.files.get(r) {
            None => return Some(SetHold::waiting(format!("waiting for {r} (require)"))),
            Some(plan::SourceFile::Skipped(why)) => {
                return Some(SetHold::refused(format!("{r} is not usable: {why}")));
            }
            Some(plan::SourceFile::Ready(_)) => {}
        }
    }
    let pair = files.tls_pair.as_ref()?;
    let (cert, key) = (pair.cert.as_str(), pair.key.as_str());
    let read = |name: &str| -> Result<&[u8], SetHold> {
        match (scan.view.files.get(name), scan.content.get(name)) {
            (Some(plan::SourceFile::Ready(_)), Some(bytes)) => Ok(bytes),
            (Some(plan::SourceFile::Skipped(why)), _) => {
                Err(SetHold::refused(format!("{name}: {why}")))
            }
            _ => Err(SetHold::waiting(format!("waiting for {name} (tls-pair)"))),
        }
    };
    let (cert_pem, key_pem) = match (read(cert), read(key)) {
        (Ok(c), Ok(k)) => (c, k),
        (Err(e), _) | (_, Err(e)) => return Some(e),
    };
    let finding = |severity, message: String| {
        (
            cert.to_string(),
            Finding {
                line: 0,
                column: 0,
                severity,
                rule: "tls-pair",
                message,
            },
        )
    };
    match crate::core::tls::check_pair(cert_pem, key_pem, unix_now(), pair.expiry_warning) {
        Ok(info) => {
            if let Some(w) = info.expiry_warning {
                report
                    .findings
                    .push(finding(Severity::Warning, format!("{cert} and {key}: {w}")));
            }
            report.cert = Some(crate::core::status::Cert {
                file: cert.to_string(),
                serial: info.serial,
                subject: info.subject,
                not_after: info.not_after,
                warn_within: pair.expiry_warning.as_secs(),
                served: None,
            });
            None
        }
        Err(e) => {
            report
                .findings
                .push(finding(Severity::Error, format!("{cert} and {key}: {e}")));
            Some(SetHold::refused(format!(
                "{cert} and {key} failed validation"
            )))
        }
    }
}

/// Why a set is held back, and whether that is a refusal (a member
/// unusable, a failed validation) or only waiting for a member.
pub(super) struct SetHold {
    pub(super) why: String,
    pub(super) refused: bool,
}

impl SetHold {
    fn waiting(why: String) -> SetHold {
        SetHold {
            why,
            refused: false,
        }
    }

    fn refused(why: String) -> SetHold {
        SetHold { why, refused: true }
    }
}

/// Vets udev rules files during a scan: parser, policy, host checks, and
/// `udevadm verify` for content not installed before. Collects findings.
pub(super) struct RulesChecker<'a> {
    pub(super) verifier: Verifier,
    pub(super) checks: Option<&'a RulesChecks>,
    pub(super) host: HostChecks,
    /// This sync's host lookups (each name once).
    pub(super) lookups: preflight::Host,
    pub(super) installed: &'a Manifest,
    /// Where the step is said (the verify of a file can take long).
    pub(super) progress: Option<&'a super::Progress>,
    pub(super) findings: Vec<(String, Finding)>,
    /// The accepted files as read, by name: what the grants recorded before
    /// an install are computed from (each file is parsed once per sync).
    pub(super) accepted: BTreeMap<String, rules::parse::RulesFile>,
}

/// Whether the bridge is a rules bridge whose policy is `trusted`.
pub(super) fn trusted(bridge: &Bridge) -> bool {
    bridge
        .rules
        .as_ref()
        .is_some_and(|c| c.policy.mode == rules::policy::PolicyMode::Trusted)
}

/// The host checks the daemon runs for a rules bridge: the same for
/// `hostbridge rules lint --bridge`.
pub(crate) fn host_checks(config: &Config, checks: &RulesChecks) -> HostChecks {
    host_checks_in(
        checks,
        &config.etc_udev_rules_dir,
        &config.system_udev_rules_dirs,
        &config.dev_root,
    )
}

/// The host checks for `checks` against the given /etc rules dir, system
/// rules dirs and /dev (the config's, or `rules lint`'s defaults).
pub(crate) fn host_checks_in(
    checks: &RulesChecks,
    etc_rules_dir: &Path,
    system_rules_dirs: &[PathBuf],
    dev_root: &Path,
) -> HostChecks {
    HostChecks {
        allow_unknown_groups: checks.allow_unknown_groups,
        allow_non_system_groups: checks.allow_non_system_groups,
        etc_rules_dir: Some(etc_rules_dir.to_path_buf()),
        system_rules_dirs: system_rules_dirs.to_vec(),
        allow_override: checks.allow_override.clone(),
        dev_root: Some(dev_root.to_path_buf()),
    }
    .trusting(checks.policy.mode == rules::policy::PolicyMode::Trusted)
}

/// Everything the daemon decides about one rules file of a bridge: the
/// pure vetting, then the host checks (when `host`), then `udevadm verify`
/// on what would be installed (when `verifier`, `run_verify` says so for
/// those bytes, and there is no error so far). Returns the rules as read,
/// every finding, and the bytes to install (`None`: refused).
pub(crate) fn vet_rules(
    verifier: Option<&Verifier>,
    checks: &RulesChecks,
    host: Option<(&HostChecks, &preflight::Host)>,
    name: &str,
    bytes: &[u8],
    run_verify: &dyn Fn(&[u8]) -> bool,
) -> rules::Vetted {
    let mut vetted = rules::vet(name, bytes, &checks.policy);
    if let Some((checks, host)) = host {
        let found = preflight::check(name, &vetted.file, checks, host);
        vetted.findings.extend(found);
    }
    if let (Some(install), Some(verifier)) = (&vetted.install, verifier)
        && !rules::has_errors(&vetted.findings)
        && run_verify(install)
    {
        vetted.findings.extend(verifier.verify(name, install));
    }
    if rules::has_errors(&vetted.findings) {
        vetted.install = None;
    }
    vetted
}

impl<'a> RulesChecker<'a> {
    pub(super) fn new(
        config: &'a Config,
        bridge: &'a Bridge,
        installed: &'a Manifest,
        progress: Option<&'a super::Progress>,
    ) -> Self {
        let checks = bridge.rules.as_ref();
        RulesChecker {
            progress,
            verifier: Verifier::of(config),
            checks,
            host: checks.map(|c| host_checks(config, c)).unwrap_or_default(),
            lookups: preflight::Host::default(),
            installed,
            findings: Vec::new(),
            accepted: BTreeMap::new(),
        }
    }

    /// Vets one file; `Ok(Some(bytes))` when what is installed is its
    /// canonical form (permissions-only), `Ok(None)` for the bytes as they
    /// are (trusted, or not a rules bridge).
    pub(super) fn accept(&mut self, name: &str, bytes: &[u8]) -> Result<Option<Vec<u8>>, String> {
        let Some(checks) = self.checks else {
            return Ok(None);
        };
        // udevadm verify runs on content not installed before.
        let installed = self.installed.files.get(name).map(|o| o.digest);
        let progress = self.progress;
        let new_content = |b: &[u8]| {
            let new = installed.is_none_or(|d| d != crate::host::fsx::digest(b));
            if let (true, Some(p)) = (new, progress) {
                p.set(format!("udevadm verify {name}"));
            }
            new
        };
        let vetted = vet_rules(
            Some(&self.verifier),
            checks,
            Some((&self.host, &self.lookups)),
            name,
            bytes,
            &new_content,
        );
        let found = vetted.findings;
        let first_error = found
            .iter()
            .find(|f| f.severity == Severity::Error)
            .map(|f| f.render(name));
        let errors = found
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count();
        self.findings
            .extend(found.into_iter().map(|f| (name.to_string(), f)));
        if let Some(first) = first_error {
            return Err(format!(
                "rejected by the rules checks ({}; first: {first})",
                crate::core::text::plural(errors, "error")
            ));
        }
        self.accepted.insert(name.to_string(), vetted.file);
        if checks.policy.mode == rules::policy::PolicyMode::Trusted {
            Ok(None)
        } else {
            Ok(vetted.install)
        }
    }
}

/// Where and with what `udevadm verify` runs.
#[derive(Debug, Clone)]
pub(crate) struct Verifier {
    /// The udevadm binary.
    pub(crate) udevadm: PathBuf,
    /// A root-owned dir to stage candidates in (`STATE_DIR/verify`).
    pub(crate) stage: PathBuf,
    /// Longest one verify may run (`verify_timeout`).
    pub(crate) timeout: std::time::Duration,
    /// The clean passes remembered (the daemon's and `sync`'s; `lint`
    /// keeps none).
    pub(crate) verified: Option<std::sync::Arc<crate::host::verified::Verified>>,
}

impl Verifier {
    /// The daemon's: `udevadm` and a stage under `state_dir`.
    pub(crate) fn of(config: &Config) -> Verifier {
        Verifier {
            udevadm: config.udevadm.clone(),
            stage: config.state_dir.join("verify"),
            timeout: config.verify_timeout,
            verified: Some(std::sync::Arc::new(crate::host::verified::Verified::new(
                config.state_dir.join("verified"),
                &config.udevadm,
            ))),
        }
    }

    /// Runs `udevadm verify` on a candidate staged in [`Verifier::stage`],
    /// if udevadm has the verb; the answer to that is probed once per
    /// process.
    pub(crate) fn verify(&self, name: &str, bytes: &[u8]) -> Vec<Finding> {
        let (udevadm, dir) = (&self.udevadm, &self.stage);
        static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        let available = *AVAILABLE.get_or_init(|| {
        let yes = preflight::verify_available(udevadm);
        if !yes {
            tracing::info!("`{} verify` is not available (no udevadm, or systemd < 254): rules are checked by hostbridge's own parser only", udevadm.display());
        }
        yes
    });
        if !available {
            return Vec::new();
        }
        let digest = crate::host::fsx::digest(bytes);
        if self.verified.as_ref().is_some_and(|v| v.passed(&digest)) {
            return Vec::new();
        }
        let written = DestDir::open_or_create(dir).and_then(|d| d.install(name, bytes, 0o600));
        if let Err(e) = written {
            return vec![Finding {
                line: 0,
                column: 0,
                severity: Severity::Error,
                rule: "udevadm-verify",
                message: format!(
                    "cannot stage the file for udevadm verify in {}: {e}",
                    dir.display()
                ),
            }];
        }
        let path = dir.join(name);
        let found = preflight::verify(udevadm, &path, self.timeout);
        let _ = std::fs::remove_file(&path);
        if let (true, Some(v)) = (found.is_empty(), &self.verified) {
            v.remember(&digest);
        }
        found
    }
}

/// What about a bridge's source the operator should know, said by `check`
/// and at the daemon's start: dirs above it in others' hands, and a file
/// system it shares with host files (hard links).
pub(crate) fn source_warnings(b: &Bridge) -> Vec<String> {
    let mut out: Vec<String> = crate::host::fsx::swappable_ancestors(&b.source)
        .into_iter()
        .map(|(dir, why)| {
            format!(
                "{} above the source is {why}: whoever writes there can rename the source away (hostbridge then follows no symlink and watches the new dir); bind-mount the source dir itself",
                dir.display()
            )
        })
        .collect();
    if b.source_owner.is_none()
        && let Some(fs) = crate::host::fsx::shares_fs_with_host_files(&b.source)
    {
        out.push(format!(
            "source {} is on the same file system as {fs}: a rootful container can hard-link host files into it; files with several links are refused, but one whose other name the host later replaced by rename is not; keep exports on their own file system (a tmpfs under /run) or set source_owner",
            b.source.display()
        ));
    }
    out
}
