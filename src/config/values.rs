//! The config's value types: absolute paths, names, patterns, durations,
//! sizes, modes and signals, each checking itself while it is parsed, so an
//! error carries the line and column of the value. Pure.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// Implements `Deserialize` for a newtype over `String` via a checking function.
macro_rules! checked_string {
    ($ty:ident, $inner:ty, $check:expr) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                let check: fn(String) -> Result<$inner, String> = $check;
                check(s).map($ty).map_err(de::Error::custom)
            }
        }
    };
}

/// An absolute, normalised path (no `.`/`..` components, no trailing slash issues).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AbsPath(pub PathBuf);
checked_string!(AbsPath, PathBuf, |s| {
    let p = PathBuf::from(&s);
    if !p.is_absolute() {
        return Err(format!("path {s:?} is relative; use an absolute path"));
    }
    if p.components().any(|c| {
        matches!(
            c,
            std::path::Component::ParentDir | std::path::Component::CurDir
        )
    }) {
        return Err(format!(
            "path {s:?} contains '.' or '..'; write it out in full"
        ));
    }
    Ok(p.components().collect())
});

/// A bridge name: 1–64 of `[a-z0-9_-]`, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct BridgeName(pub String);
checked_string!(BridgeName, String, |s| {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && !s.starts_with(['-', '_']);
    if ok {
        Ok(s)
    } else {
        Err(format!(
            "bridge name {s:?} must be 1-64 of [a-z0-9_-], starting with a letter or digit"
        ))
    }
});

/// An `include` glob: the file-name charset plus `*` and `?`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern(pub String);
checked_string!(Pattern, String, |s| {
    let ok = !s.is_empty()
        && !s.starts_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._+@-*?".contains(c));
    if ok {
        Ok(s)
    } else {
        Err(format!(
            "include pattern {s:?} may use only [A-Za-z0-9._+@-], '*' and '?', and may not start with '.'"
        ))
    }
});

/// A plain word for udevadm arguments (subsystem names, sysfs attributes).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Token(pub String);
checked_string!(Token, String, |s| {
    let ok = !s.is_empty() && s.len() <= 128 && s.chars().all(|c| c.is_ascii_graphic() && c != '=');
    if ok {
        Ok(s)
    } else {
        Err(format!(
            "{s:?} must be 1-128 printable characters without spaces or '='"
        ))
    }
});

/// A duration written like `300ms`, `10s`, `2m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Dur(pub Duration);
checked_string!(Dur, Duration, |s| {
    humantime::parse_duration(&s)
        .map_err(|e| format!("bad duration {s:?}: {e} (write e.g. 300ms, 10s, 2m)"))
});

/// A byte size: an integer, or a string with a unit (`512KiB`, `1MiB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Size(pub u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a size such as 1048576, 512KiB or 1MiB")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Size, E> {
                Ok(Size(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v)
                    .map(Size)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Size, E> {
                parse_size(v).map(Size).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// Parses `N`, `NB`, `NKiB`, `NMiB` or `NGiB` (binary units only, to avoid
/// guessing whether "k" means 1000 or 1024).
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("bad size {s:?}: expected e.g. 1MiB"))?;
    let mult = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => {
            return Err(format!(
                "bad size unit {other:?} in {s:?}: use B, KiB, MiB or GiB"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

/// An octal permission mode written as a string, e.g. "0640" (at most 0777).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileMode(pub u32);
checked_string!(FileMode, u32, |s| {
    let ok = !s.is_empty() && s.len() <= 4 && s.bytes().all(|c| (b'0'..=b'7').contains(&c));
    match u32::from_str_radix(&s, 8) {
        Ok(m) if ok && m <= 0o777 => Ok(m),
        _ => Err(format!(
            "mode {s:?} must be an octal string up to \"0777\", e.g. \"0640\""
        )),
    }
});

/// A signal name: `HUP`, `SIGHUP`, `USR1`…; stored as `SIGHUP`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SignalName(pub String);
checked_string!(SignalName, String, |s| {
    let full = if s.starts_with("SIG") {
        s.clone()
    } else {
        format!("SIG{s}")
    };
    match full.parse::<nix::sys::signal::Signal>() {
        Ok(sig)
            if !matches!(
                sig,
                nix::sys::signal::Signal::SIGKILL | nix::sys::signal::Signal::SIGSTOP
            ) =>
        {
            Ok(full)
        }
        Ok(_) => Err(format!(
            "signal {s:?} is not allowed; use restart-unit to restart a service"
        )),
        Err(_) => Err(format!("unknown signal {s:?} (write e.g. HUP, USR1, TERM)")),
    }
});
