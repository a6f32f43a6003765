//! Configuration: the YAML file parsed into raw serde structs ([`raw`]), then
//! checked and turned into typed settings. Parsing and validation are pure
//! ([`parse`]); only [`load`] reads a file.
//!
//! YAML is read with `serde-saphyr`: maintained (serde_yaml is archived),
//! pure Rust without unsafe code, honours `deny_unknown_fields`, and reports
//! line and column for every error, including errors raised by our own value
//! types. Checks that span several values (duplicate names, overlapping
//! destinations) use its `Spanned` wrapper to point at the right line too.

mod actions;
mod bridge;
mod hints;
mod model;
pub(crate) mod raw;
mod validate;
pub(crate) mod values;

use std::path::{Path, PathBuf};

pub(crate) use model::*;
use raw::RawConfig;
use validate::Validator;

/// Reads and validates the config file at `path`.
///
/// Then applies drop-in fragments, the FCOS convention zincati follows:
/// `*.yaml` files from `dirs` (typically [`DEFAULT_DROPIN_DIRS`]); for the
/// same file name a later dir wins; fragments apply in file-name order;
/// top-level keys a fragment sets replace earlier ones, and its bridges
/// replace earlier bridges of the same name or are added. The main file
/// may be missing when fragments exist.
pub(crate) fn load(path: &Path, dirs: &[PathBuf]) -> Result<Config, ConfigError> {
    let fragments = list_fragments(dirs)?;
    let mut raw = match std::fs::read_to_string(path) {
        Ok(text) => parse_raw(&text, path)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !fragments.is_empty() => {
            RawConfig::default()
        }
        Err(e) => return Err(io_error(path, &e)),
    };
    for frag in &fragments {
        let text = std::fs::read_to_string(frag).map_err(|e| io_error(frag, &e))?;
        raw.merge(parse_raw(&text, frag)?);
    }
    let mut config = Validator { path }.config(raw)?;
    config.dropin_dirs = dirs.to_vec();
    config.fragments = fragments;
    Ok(config)
}

/// The defaults alone, as if `path` were an empty config: for diagnostics
/// that need no bridge (`hostbridge usb`) on a host with no config file.
pub(crate) fn defaults(path: &Path) -> Result<Config, ConfigError> {
    Validator { path }.config(RawConfig::default())
}

/// Default drop-in dirs, lowest precedence first.
pub(crate) const DEFAULT_DROPIN_DIRS: &[&str] = &[
    "/usr/lib/hostbridge/config.d",
    "/etc/hostbridge/config.d",
    "/run/hostbridge/config.d",
];

fn io_error(path: &Path, e: &std::io::Error) -> ConfigError {
    ConfigError {
        path: path.to_path_buf(),
        line: 0,
        column: 0,
        message: format!("cannot read config: {e}"),
    }
}

/// The fragments to apply, in order (see [`load`]).
fn list_fragments(dirs: &[PathBuf]) -> Result<Vec<PathBuf>, ConfigError> {
    let mut by_name: std::collections::BTreeMap<std::ffi::OsString, PathBuf> = Default::default();
    for dir in dirs {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_error(dir, &e)),
        };
        for entry in entries.flatten() {
            let p = entry.path();
            if p.extension().is_some_and(|x| x == "yaml")
                && !entry.file_name().to_string_lossy().starts_with('.')
            {
                by_name.insert(entry.file_name(), p);
            }
        }
    }
    Ok(by_name.into_values().collect())
}

/// Parses and validates one config text (no drop-ins); `path` is used in
/// messages. The tests' way in.
#[cfg(test)]
pub(crate) fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let raw = parse_raw(text, path)?;
    Validator { path }.config(raw)
}

fn parse_raw(text: &str, path: &Path) -> Result<RawConfig, ConfigError> {
    let mut raw: RawConfig = serde_saphyr::from_str(text).map_err(|e| {
        let loc = e.location();
        ConfigError {
            path: path.to_path_buf(),
            line: loc.map_or(0, |l| l.line()),
            column: loc.map_or(0, |l| l.column()),
            message: hints::with_hint(&strip_location_prefix(&e.without_snippet().to_string())),
        }
    })?;
    raw.set_origin(path);
    Ok(raw)
}

/// serde-saphyr prefixes messages with "error: line L column C: " and some
/// end with " at line L, column C"; we print `file:line:col:` ourselves, so
/// drop both.
fn strip_location_prefix(msg: &str) -> String {
    let rest = msg.strip_prefix("error: ").unwrap_or(msg);
    let rest = match rest.strip_prefix("line ").and_then(|r| r.split_once(": ")) {
        Some((pos, tail)) if pos.contains(" column ") => tail,
        _ => rest,
    };
    match rest.rsplit_once(" at line ") {
        Some((head, pos)) if pos.contains(", column ") => head.to_string(),
        _ => rest.to_string(),
    }
}

/// The status socket named by the config at `path`, read leniently so that
/// `hostbridge status` still finds the daemon while the file on disk is
/// broken (the daemon keeps running its previous config then).
pub(crate) fn status_socket_hint(path: &Path) -> PathBuf {
    #[derive(serde::Deserialize)]
    struct Hint {
        state_dir: Option<PathBuf>,
        status_socket: Option<PathBuf>,
    }
    let text = std::fs::read_to_string(path).unwrap_or_default();
    // A config broken elsewhere (the case this is for) may not parse as a
    // whole: then its top-level `key: value` lines are read one by one.
    let top_level = |key: &str| -> Option<PathBuf> {
        text.lines().find_map(|l| {
            let v = l.strip_prefix(key)?.strip_prefix(':')?.trim();
            let v = v.trim_matches(|c| c == '"' || c == '\'');
            (!v.is_empty()).then(|| PathBuf::from(v))
        })
    };
    let hint = serde_saphyr::from_str::<Hint>(&text).ok().or_else(|| {
        Some(Hint {
            state_dir: top_level("state_dir"),
            status_socket: top_level("status_socket"),
        })
    });
    match hint {
        Some(Hint {
            status_socket: Some(s),
            ..
        }) if s.is_absolute() => s,
        Some(Hint {
            state_dir: Some(d), ..
        }) if d.is_absolute() => d.join("status.sock"),
        _ => PathBuf::from(DEFAULT_STATE_DIR).join("status.sock"),
    }
}

#[cfg(test)]
mod tests;
