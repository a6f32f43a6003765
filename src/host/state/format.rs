//! The manifest's file format: compact lines, written in one pass without
//! `format!` per field (a 10,000-file manifest is written at every sync
//! that changes a file). Pure: bytes in, bytes out.
//!
//! ```text
//! hostbridge-manifest 2
//! destination /run/udev/rules.d
//! actions_pending 1
//! checks SHA256
//! changed 60-ups.rules
//! file SHA256 MODE UID GID SIZE SOURCE DEST NAME
//! ```
//!
//! `MODE` is octal; `UID`, `GID` are decimal or `-` (the config named
//! none); `SIZE` is the source's size when read, or `-`; `SOURCE` and `DEST`
//! are stamps (`dev:ino:size:mtime_ns:ctime_ns:mode:uid:gid`, decimal) or
//! `-`. Names and the destination are the last field of their line, with
//! bytes below 0x21, `%` and 0x7f written as `%XX`. Unknown keys are an
//! error: a manifest is hostbridge's own, never edited by hand.

use std::path::PathBuf;

use super::{Manifest, Seen};
use crate::core::plan::{Digest, Owned};
use crate::core::stamp::Stamp;

/// The first line.
const MAGIC: &str = "hostbridge-manifest 2";

/// The bytes of `m`'s manifest file.
pub(crate) fn write(m: &Manifest) -> Vec<u8> {
    let mut seen = m.seen.iter().peekable();
    write_parts(m, m.files.iter(), |name| {
        crate::core::plan::at(&mut seen, name).copied()
    })
}

/// The bytes of a manifest file with `m`'s destination, actions owed and
/// changed names, and these `files` (in name order) with what `seen` says
/// of each (asked in name order): a manifest written without being built.
pub(crate) fn write_parts<'a>(
    m: &Manifest,
    files: impl Iterator<Item = (&'a String, &'a Owned)>,
    mut seen: impl FnMut(&str) -> Option<Seen>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + m.files.len() * 200);
    out.extend_from_slice(MAGIC.as_bytes());
    out.extend_from_slice(b"\ndestination ");
    escape_into(&mut out, m.destination.as_os_str().as_encoded_bytes());
    out.extend_from_slice(b"\nactions_pending ");
    out.push(if m.actions_pending { b'1' } else { b'0' });
    out.push(b'\n');
    if let Some(d) = &m.checks {
        out.extend_from_slice(b"checks ");
        out.extend_from_slice(&d.hex());
        out.push(b'\n');
    }
    for name in &m.changed {
        out.extend_from_slice(b"changed ");
        escape_into(&mut out, name.as_bytes());
        out.push(b'\n');
    }
    for (name, o) in files {
        let seen = seen(name);
        out.extend_from_slice(b"file ");
        out.extend_from_slice(&o.digest.hex());
        out.push(b' ');
        octal_into(&mut out, o.mode);
        out.push(b' ');
        opt_into(&mut out, o.uid.map(u64::from));
        out.push(b' ');
        opt_into(&mut out, o.gid.map(u64::from));
        out.push(b' ');
        opt_into(&mut out, seen.and_then(|s| s.size));
        out.push(b' ');
        stamp_into(&mut out, seen.as_ref().and_then(|s| s.source.as_ref()));
        out.push(b' ');
        stamp_into(&mut out, seen.as_ref().and_then(|s| s.dest.as_ref()));
        out.push(b' ');
        escape_into(&mut out, name.as_bytes());
        out.push(b'\n');
    }
    out
}

/// Reads a manifest file; the error says which line is wrong and how.
pub(crate) fn parse(bytes: &[u8]) -> Result<Manifest, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, MAGIC)) => {}
        Some((_, other)) => return Err(format!("line 1 is {other:?}, expected {MAGIC:?}")),
        None => return Err("empty".into()),
    }
    let mut m = Manifest::default();
    // Written in name order: collected, then built in bulk (no searches).
    let mut files = Vec::new();
    let mut seen = Vec::new();
    for (i, line) in lines {
        let bad = |why: &str| format!("line {}: {why}", i + 1);
        let (key, rest) = line.split_once(' ').ok_or_else(|| bad("no value"))?;
        match key {
            "destination" => {
                let raw = unescape(rest).ok_or_else(|| bad("bad escape"))?;
                m.destination = PathBuf::from(std::ffi::OsString::from(
                    String::from_utf8(raw).map_err(|_| bad("not UTF-8"))?,
                ));
            }
            "actions_pending" => {
                m.actions_pending = match rest {
                    "1" => true,
                    "0" => false,
                    _ => return Err(bad("actions_pending is 0 or 1")),
                }
            }
            "checks" => {
                m.checks = Some(hex_digest(rest).ok_or_else(|| bad("bad checks digest"))?);
            }
            "changed" => {
                m.changed.insert(name(rest).ok_or_else(|| bad("bad name"))?);
            }
            "file" => {
                let (n, owned, s) = file_line(rest).ok_or_else(|| bad("bad file line"))?;
                if s != Seen::default() {
                    seen.push((n.clone(), s));
                }
                files.push((n, owned));
            }
            _ => return Err(bad(&format!("unknown key {key:?}"))),
        }
    }
    m.files = files.into_iter().collect();
    m.seen = seen.into_iter().collect();
    Ok(m)
}

/// One `file` line's fields after the key.
fn file_line(rest: &str) -> Option<(String, Owned, Seen)> {
    let mut f = rest.splitn(8, ' ');
    let digest = hex_digest(f.next()?)?;
    let mode = u32::from_str_radix(f.next()?, 8).ok()?;
    let uid = opt(f.next()?)?.map(u32::try_from).transpose().ok()?;
    let gid = opt(f.next()?)?.map(u32::try_from).transpose().ok()?;
    let size = opt(f.next()?)?;
    let source = stamp(f.next()?)?;
    let dest = stamp(f.next()?)?;
    let n = name(f.next()?)?;
    let owned = Owned {
        digest,
        mode,
        uid,
        gid,
    };
    let seen = Seen { size, source, dest };
    Some((n, owned, seen))
}

/// A decimal number or `-`: `Some(None)` for `-`, `None` when malformed.
fn opt(s: &str) -> Option<Option<u64>> {
    if s == "-" {
        return Some(None);
    }
    Some(Some(u64::try_from(decimal(s)?).ok()?))
}

/// A decimal number of at most 19 digits, optionally negative (what
/// [`signed_into`] writes for a stamp's times, nanoseconds within ±292
/// years of 1970, and every id and size), in 64-bit arithmetic.
fn decimal(s: &str) -> Option<i128> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut n: u64 = 0;
    for b in digits.bytes() {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(b - b'0');
    }
    let n = i128::from(n);
    Some(if neg { -n } else { n })
}

/// 64 hex digits (lowercase, as [`Digest::hex`] writes them).
fn hex_digest(s: &str) -> Option<Digest> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = nibble(b[2 * i])? << 4 | nibble(b[2 * i + 1])?;
    }
    Some(Digest(out))
}

/// A stamp or `-`: `Some(None)` for `-`, `None` when malformed. Eight
/// colon-separated decimals, read in one pass over the bytes.
fn stamp(s: &str) -> Option<Option<Stamp>> {
    if s == "-" {
        return Some(None);
    }
    if s.is_empty() {
        return None;
    }
    let mut n = [0i64; 8];
    let mut field = 0;
    let (mut value, mut digits, mut neg) = (0u64, 0usize, false);
    for (i, &b) in s.as_bytes().iter().enumerate() {
        match b {
            b'0'..=b'9' if digits < 19 => {
                value = value * 10 + u64::from(b - b'0');
                digits += 1;
            }
            b'-' if digits == 0 && !neg => neg = true,
            b':' if digits > 0 && field < 7 => {
                n[field] = signed(value, neg)?;
                field += 1;
                (value, digits, neg) = (0, 0, false);
            }
            _ => return None,
        }
        if i + 1 == s.len() {
            if digits == 0 || field != 7 {
                return None;
            }
            n[7] = signed(value, neg)?;
        }
    }
    let u = |v: i64| u64::try_from(v).ok();
    let w = |v: i64| u32::try_from(v).ok();
    Some(Some(Stamp {
        dev: u(n[0])?,
        ino: u(n[1])?,
        size: u(n[2])?,
        mtime_ns: n[3],
        ctime_ns: n[4],
        mode: w(n[5])?,
        uid: w(n[6])?,
        gid: w(n[7])?,
    }))
}

/// `value`, negated when `neg`, if it fits an i64.
fn signed(value: u64, neg: bool) -> Option<i64> {
    let v = i64::try_from(value).ok()?;
    Some(if neg { -v } else { v })
}

/// A name field: unescaped, UTF-8, not empty.
fn name(s: &str) -> Option<String> {
    let raw = unescape(s)?;
    String::from_utf8(raw).ok().filter(|n| !n.is_empty())
}

/// Digits of a `%XX` escape.
const HEX: &[u8; 16] = b"0123456789abcdef";

fn escape_into(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        if b <= b' ' || b == b'%' || b == 0x7f {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
        } else {
            out.push(b);
        }
    }
}

fn unescape(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Decimal digits of `n`, without `format!` (and in 64-bit arithmetic:
/// 128-bit division is a library call).
fn decimal_into(out: &mut Vec<u8>, n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// A stamp's time (nanoseconds since 1970).
fn signed_into(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    decimal_into(out, n.unsigned_abs());
}

fn octal_into(out: &mut Vec<u8>, n: u32) {
    let mut buf = [0u8; 11];
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n & 7) as u8;
        n >>= 3;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

fn opt_into(out: &mut Vec<u8>, n: Option<u64>) {
    match n {
        Some(n) => decimal_into(out, n),
        None => out.push(b'-'),
    }
}

fn stamp_into(out: &mut Vec<u8>, s: Option<&Stamp>) {
    let Some(s) = s else {
        out.push(b'-');
        return;
    };
    decimal_into(out, s.dev);
    out.push(b':');
    decimal_into(out, s.ino);
    out.push(b':');
    decimal_into(out, s.size);
    out.push(b':');
    signed_into(out, s.mtime_ns);
    out.push(b':');
    signed_into(out, s.ctime_ns);
    out.push(b':');
    decimal_into(out, s.mode.into());
    out.push(b':');
    decimal_into(out, s.uid.into());
    out.push(b':');
    decimal_into(out, s.gid.into());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        let stamp = Stamp {
            dev: 64769,
            ino: 1234,
            size: 42,
            mtime_ns: 1_765_000_000_123_456_789,
            ctime_ns: -5,
            mode: 0o100644,
            uid: 0,
            gid: 998,
        };
        let mut m = Manifest {
            destination: PathBuf::from("/run/udev/rules d%"),
            actions_pending: true,
            checks: Some(Digest::of(b"policy")),
            changed: ["60-ups.rules".to_string(), "b@c+d".to_string()].into(),
            ..Manifest::default()
        };
        for (i, n) in ["60-ups.rules", "70-x.rules", "b@c+d"]
            .into_iter()
            .enumerate()
        {
            m.files.insert(
                n.into(),
                Owned {
                    digest: Digest::of(n.as_bytes()),
                    mode: 0o640 + i as u32,
                    uid: (i == 1).then_some(0),
                    gid: (i != 0).then_some(4_000_000_000),
                },
            );
        }
        m.seen.insert(
            "60-ups.rules".into(),
            Seen {
                size: Some(42),
                source: Some(stamp),
                dest: None,
            },
        );
        m.seen.insert(
            "b@c+d".into(),
            Seen {
                size: None,
                source: None,
                dest: Some(stamp),
            },
        );
        m
    }

    #[test]
    fn a_manifest_reads_back_as_written() {
        let m = sample();
        let bytes = write(&m);
        assert_eq!(parse(&bytes).unwrap(), m);
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("hostbridge-manifest 2\ndestination /run/udev/rules%20d%25\n"));
        assert!(text.contains(&format!(
            "file {} 640 - - 42 64769:1234:42:1765000000123456789:-5:33188:0:998 - 60-ups.rules\n",
            Digest::of(b"60-ups.rules")
        )));
        assert_eq!(
            parse(&write(&Manifest::default())).unwrap(),
            Manifest::default()
        );
    }

    #[test]
    fn a_damaged_manifest_is_an_error_naming_the_line() {
        let good = String::from_utf8(write(&sample())).unwrap();
        let cases = [
            (String::new(), "empty"),
            ("{\"version\": 1}".to_string(), "line 1 is"),
            (
                good.replace("actions_pending 1", "actions_pending yes"),
                "line 3: actions_pending",
            ),
            (good.replace(" 640 ", " 9x0 "), "bad file line"),
            (good.replace(":998 ", ":998:7 "), "bad file line"),
            (good.replace(":998 ", ": "), "bad file line"),
            (good.replace("64769:", "-:"), "bad file line"),
            (good.replace("64769:", "--1:"), "bad file line"),
            (
                good.replace("64769:", "99999999999999999999:"),
                "bad file line",
            ),
            (
                good.replace("changed 60-ups.rules", "changed %zz"),
                "bad name",
            ),
            (good.clone() + "extra 1\n", "unknown key \"extra\""),
        ];
        for (text, want) in cases {
            let err = parse(text.as_bytes()).unwrap_err();
            assert!(err.contains(want), "{err:?} lacks {want:?}");
        }
    }
}
