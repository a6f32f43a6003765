//! The manifest's file format: compact lines, written in one pass without
//! `format!` per field (a 10,000-file manifest is written at every sync
//! that changes a file). Pure: bytes in, bytes out.
//!
//! ```text
//! hostbridge-manifest 3
//! destination /run/udev/rules.d
//! actions_pending 1
//! checks SHA256
//! changed 60-ups.rules
//! file SHA256 MODE UID GID SIZE SOURCE DEST NAME
//! ```
//!
//! `MODE` is octal; `UID`, `GID` are decimal or `-` (the config named
//! none); `SIZE` is the source's size when read, or `-`; `SOURCE` and `DEST`
//! are stamps (`dev:ino:size:mtime_ns:ctime_ns:mode:uid:gid`, lowercase
//! hex, a negative time with a leading `-`: written and read without a
//! division per digit) or `-`. Version 2 wrote the stamps in decimal; it is
//! still read. Names and the destination are the last field of their line, with
//! bytes below 0x21, `%` and 0x7f written as `%XX`. Unknown keys are an
//! error: a manifest is hostbridge's own, never edited by hand.

use std::path::PathBuf;

use super::{Manifest, Seen};
use crate::core::plan::{Digest, Owned};
use crate::core::stamp::Stamp;

/// The first line.
const MAGIC: &str = "hostbridge-manifest 3";

/// The first line of version 2, whose stamps are decimal (read, not written).
const MAGIC_V2: &str = "hostbridge-manifest 2";

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
        owned_into(&mut out, o);
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

/// The intent records of the daemon's syncs of changed names, appended to
/// `bridges/<name>.intent` before the destination changes, one block each,
/// instead of rewriting the whole manifest ([`super::StateDir::append_intent`]):
///
/// ```text
/// intent OWED
/// file SHA256 MODE UID GID - - - NAME
/// prune NAME
/// end
/// ```
///
/// The file starts with a line naming the manifest file the blocks follow
/// (`base INO:CTIME`, written and checked by [`super::StateDir`]): blocks
/// after another one are not read. `OWED` is 1 when the bridge has `then:`
/// actions. A `file` line is a
/// manifest's, with nothing seen: the entry planned for a name installed or
/// replaced. A `prune` line names an entry about to be removed, which stays
/// listed until the removal is recorded. A block is taken whole or not at
/// all: one without its `end` line was cut short by a crash before anything
/// it plans was done, and it and what follows are ignored.
pub(crate) fn intent<'a>(
    owed: bool,
    planned: impl Iterator<Item = (&'a String, Option<&'a Owned>)>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(if owed { b"intent 1\n" } else { b"intent 0\n" });
    for (name, entry) in planned {
        match entry {
            Some(o) => {
                owned_into(&mut out, o);
                out.extend_from_slice(b" - - - ");
            }
            None => out.extend_from_slice(b"prune "),
        }
        escape_into(&mut out, name.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"end\n");
    out
}

/// Applies the complete blocks of an intent file ([`intent`]) to the
/// manifest they were appended after, as the whole manifest written as an
/// intent record would say it: the actions owed (for the names, when the
/// block says so), each planned entry listed, and nothing seen of the
/// names about to change (what was seen says nothing of what a crash left
/// there).
pub(crate) fn apply_intents(m: &mut Manifest, bytes: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
    let mut block: Vec<(String, Option<Owned>)> = Vec::new();
    let mut owed = None;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let bad = |why: &str| format!("line {}: {why}", i + 1);
        let Some(line) = line.strip_suffix('\n') else {
            break; // cut short: not written whole
        };
        match (owed, line.split_once(' ')) {
            (None, Some(("intent", "1"))) => owed = Some(true),
            (None, Some(("intent", "0"))) => owed = Some(false),
            (None, _) => return Err(bad("expected an intent line")),
            (Some(owe), None) if line == "end" => {
                m.actions_pending = true;
                for (name, entry) in block.drain(..) {
                    m.seen.remove(&name);
                    if let Some(o) = entry {
                        m.files.insert(name.clone(), o);
                    }
                    if owe {
                        m.changed.insert(name);
                    }
                }
                owed = None;
            }
            (Some(_), Some(("file", rest))) => {
                let (n, o, _) = file_line(rest, 16).ok_or_else(|| bad("bad file line"))?;
                block.push((n, Some(o)));
            }
            (Some(_), Some(("prune", rest))) => {
                block.push((name(rest).ok_or_else(|| bad("bad name"))?, None));
            }
            (Some(_), _) => return Err(bad("unknown line")),
        }
    }
    Ok(())
}

/// Reads a manifest file; the error says which line is wrong and how.
pub(crate) fn parse(bytes: &[u8]) -> Result<Manifest, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
    let mut lines = text.lines().enumerate();
    let radix = match lines.next() {
        Some((_, MAGIC)) => 16,
        Some((_, MAGIC_V2)) => 10,
        Some((_, other)) => return Err(format!("line 1 is {other:?}, expected {MAGIC:?}")),
        None => return Err("empty".into()),
    };
    let mut m = Manifest {
        write_whole: radix != 16,
        ..Manifest::default()
    };
    // Written in name order: collected, then built in bulk (no searches).
    let mut files = Vec::new();
    let mut seen = Vec::new();
    for (i, line) in lines {
        let bad = |why: &str| format!("line {}: {why}", i + 1);
        let (key, rest) = line.split_once(' ').ok_or_else(|| bad("no value"))?;
        match key {
            "destination" => {
                let raw = unescape(rest.as_bytes()).ok_or_else(|| bad("bad escape"))?;
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
                let d = Digest::from_hex(rest.as_bytes());
                m.checks = Some(d.ok_or_else(|| bad("bad checks digest"))?);
            }
            "changed" => {
                m.changed.insert(name(rest).ok_or_else(|| bad("bad name"))?);
            }
            "file" => {
                let (n, owned, s) = file_line(rest, radix).ok_or_else(|| bad("bad file line"))?;
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

/// A manifest file taken as written, without building it: its header and,
/// line by line, each file's fields. For the check that every file is as
/// the last sync recorded it ([`crate::sync`]'s `hostbridge sync` with
/// nothing to do), which compares stamps as written instead of parsing
/// them. Only the current version is taken this way.
#[derive(Debug)]
pub(crate) struct Records<'a> {
    /// The destination's bytes.
    pub(crate) destination: Vec<u8>,
    /// Whether the actions are owed.
    pub(crate) actions_pending: bool,
    /// Whether the manifest lists names changed for owed actions.
    pub(crate) changed: bool,
    /// What its verdicts were made under.
    pub(crate) checks: Option<Digest>,
    /// The lines from the first `file` line on, less those taken.
    files: &'a [u8],
}

/// The fields of a `file` line that [`Records::next_as`] gives back.
#[derive(Debug)]
pub(crate) struct Record {
    /// Permission bits installed.
    pub(crate) mode: u32,
    /// Owner and group set (`None`: the config named none).
    pub(crate) uid: Option<u32>,
    /// See `uid`.
    pub(crate) gid: Option<u32>,
    /// The source's size when read with the verdict installed.
    pub(crate) size: Option<u64>,
}

/// What the next `file` line must hold: a name and two stamps as written
/// ([`StampText`]: a stamp has one text, so comparing texts is comparing
/// stamps).
#[derive(Debug)]
pub(crate) struct Expect<'e> {
    /// The name (one that needs no escape).
    pub(crate) name: &'e [u8],
    /// The source's stamp.
    pub(crate) source: &'e [u8],
    /// The installed copy's stamp.
    pub(crate) dest: &'e [u8],
}

/// `bytes` less `prefix` when they start with it: a plain compare, inlined
/// (a line is taken in a few of these, for every file of `hostbridge
/// sync`, in a binary built for size).
#[inline(always)]
fn after<'b>(bytes: &'b [u8], prefix: &[u8]) -> Option<&'b [u8]> {
    let (head, tail) = bytes.split_at_checked(prefix.len())?;
    (head == prefix).then_some(tail)
}

/// `bytes` less their first when it is `b`.
#[inline(always)]
fn after_byte(bytes: &[u8], b: u8) -> Option<&[u8]> {
    match bytes {
        [first, rest @ ..] if *first == b => Some(rest),
        _ => None,
    }
}

/// The name the first line of `lines` ends with (its last field, as
/// written), and the lines after it; `None` when it has no end or no field.
fn first_name(lines: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = memchr::memchr(b'\n', lines)?;
    let at = memchr::memrchr(b' ', &lines[..end])?;
    Some((&lines[end + 1..], &lines[at + 1..end]))
}

/// The header of a manifest file of the current version, and its file
/// lines to walk ([`Records::files`]); `None` for another version or a
/// header line this reader does not take (the full [`parse`] says why).
pub(crate) fn records(bytes: &[u8]) -> Option<Records<'_>> {
    // The header is text; the file lines are taken as bytes.
    let head = bytes
        .windows(6)
        .position(|w| w == b"\nfile ")
        .map_or(bytes.len(), |i| i + 1);
    let text = std::str::from_utf8(&bytes[..head]).ok()?;
    let mut rest = text.strip_prefix(MAGIC)?.strip_prefix('\n')?;
    let mut r = Records {
        destination: Vec::new(),
        actions_pending: false,
        changed: false,
        checks: None,
        files: b"",
    };
    while !rest.is_empty() && !rest.starts_with("file ") {
        let (line, next) = rest.split_once('\n')?;
        let (key, value) = line.split_once(' ')?;
        match key {
            "destination" => r.destination = unescape(value.as_bytes())?,
            "actions_pending" => r.actions_pending = value != "0",
            "checks" => r.checks = Some(Digest::from_hex(value.as_bytes())?),
            "changed" => r.changed = true,
            _ => return None,
        }
        rest = next;
    }
    r.files = &bytes[head..];
    Some(r)
}

impl<'a> Records<'a> {
    /// The next file line's fields when it records `expect` (its name and
    /// its two stamps, compared as written, where they stand in the line:
    /// nothing is searched for), and takes it; `None` when it records
    /// something else, or at the end.
    pub(crate) fn next_as(&mut self, expect: &Expect<'_>) -> Option<Record> {
        if expect.name.iter().any(|&b| needs_escape(b)) {
            return None;
        }
        // "file ", 64 hex digits and a space; then the fields.
        let rest = after(self.files, b"file ")?;
        let mut rest = after_byte(rest.get(64..)?, b' ')?;
        let mut field = || {
            let end = rest.iter().position(|&b| b == b' ')?;
            let f = &rest[..end];
            rest = &rest[end + 1..];
            Some(f)
        };
        // The fields are ASCII digits or `-` when well formed: taken as
        // bytes (a malformed one is refused by the number's parse).
        let mode = mode(field()?)?;
        let uid = id(field()?)?;
        let gid = id(field()?)?;
        let size = opt(field()?)?;
        let rest = after_byte(after(rest, expect.source)?, b' ')?;
        let rest = after_byte(after(rest, expect.dest)?, b' ')?;
        self.files = after_byte(after(rest, expect.name)?, b'\n')?;
        Some(Record {
            mode,
            uid,
            gid,
            size,
        })
    }

    /// The file lines not yet taken, cut in two at the line start nearest
    /// their middle (at or after it): this keeps the first part, and the
    /// second is returned with the name its first line records, as
    /// written. `None` (nothing cut) when no line starts after the middle.
    /// Each part is then walked on its own, e.g. on two threads.
    pub(crate) fn split(&mut self) -> Option<(Records<'a>, &'a [u8])> {
        let files = self.files;
        let mid = files.len() / 2;
        let start = mid + files.get(mid..)?.windows(6).position(|w| w == b"\nfile ")? + 1;
        let line = &files[start..];
        let (_, name) = first_name(line)?;
        self.files = &files[..start];
        let second = Records {
            destination: Vec::new(),
            actions_pending: self.actions_pending,
            changed: self.changed,
            checks: self.checks,
            files: line,
        };
        Some((second, name))
    }

    /// Gives `take` the name of each file line not yet taken, in order,
    /// as written; `false` (at once) when a name is written escaped
    /// (`%XX`, which [`Records::next_as`] never takes) or a line is
    /// malformed.
    pub(crate) fn names(&self, take: &mut dyn FnMut(&[u8])) -> bool {
        let mut rest = self.files;
        while !rest.is_empty() {
            let Some((next, name)) = first_name(rest) else {
                return false;
            };
            if name.is_empty() || name.contains(&b'%') {
                return false;
            }
            take(name);
            rest = next;
        }
        true
    }

    /// Whether every file line was taken.
    pub(crate) fn at_end(&self) -> bool {
        self.files.is_empty()
    }
}

/// The bytes of a bridge's listing file (`bridges/<name>.listing`, next
/// to the manifest, which older versions do not read): the manifest file
/// it was written with (`base`, as an intent file's first line), then the
/// source dir's stamp and the checksum of its names
/// ([`Manifest::listing`]):
///
/// ```text
/// base INO:CTIME
/// listing STAMP SUM
/// ```
pub(crate) fn listing_file(base: &str, (dir, sum): (Stamp, u64)) -> Vec<u8> {
    let mut out = base.as_bytes().to_vec();
    out.extend_from_slice(b"listing ");
    stamp_into(&mut out, Some(&dir));
    out.push(b' ');
    out.extend_from_slice(&hex8((sum >> 32) as u32));
    out.extend_from_slice(&hex8(sum as u32));
    out.push(b'\n');
    out
}

/// What a listing file ([`listing_file`]) says, if it was written with the
/// manifest file of base line `base`; `None` otherwise, or when malformed.
pub(crate) fn read_listing_file(bytes: &[u8], base: &str) -> Option<(Stamp, u64)> {
    let rest = std::str::from_utf8(bytes.strip_prefix(base.as_bytes())?).ok()?;
    let (dir, sum) = rest
        .strip_prefix("listing ")?
        .strip_suffix('\n')?
        .split_once(' ')?;
    if sum.len() != 16 {
        return None;
    }
    Some((stamp(dir, 16)??, u64::from_str_radix(sum, 16).ok()?))
}

/// The checksum of a list of names, each followed by a NUL (which no name
/// holds): FNV-1a, 64 bits. It tells whether the manifest's `file` lines
/// are the names a listing found ([`Manifest::listing`]); the state dir is
/// hostbridge's own (root's), so this guards against files that changed
/// apart from each other, not against an adversary, and a cryptographic
/// digest would cost `hostbridge sync` more than its listing.
pub(crate) fn names_sum<'n>(names: impl IntoIterator<Item = &'n [u8]>) -> u64 {
    names
        .into_iter()
        .fold(FNV_OFFSET, |h, name| fnv(fnv(h, name), &[0]))
}

/// [`names_sum`] of names already in one buffer, each followed by its NUL.
pub(crate) fn joined_names_sum(joined: &[u8]) -> u64 {
    fnv(FNV_OFFSET, joined)
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

fn fnv(h: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(h, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// One `file` line's fields after the key.
fn file_line(rest: &str, radix: u32) -> Option<(String, Owned, Seen)> {
    let mut f = rest.splitn(8, ' ');
    let digest = Digest::from_hex(f.next()?.as_bytes())?;
    let mode = mode(f.next()?.as_bytes())?;
    let uid = id(f.next()?.as_bytes())?;
    let gid = id(f.next()?.as_bytes())?;
    let size = opt(f.next()?.as_bytes())?;
    let source = stamp(f.next()?, radix)?;
    let dest = stamp(f.next()?, radix)?;
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

/// A `MODE` field: at most 11 octal digits.
fn mode(b: &[u8]) -> Option<u32> {
    if b.is_empty() || b.len() > 11 {
        return None;
    }
    let n = b.iter().try_fold(0u64, |n, &d| {
        matches!(d, b'0'..=b'7').then(|| n << 3 | u64::from(d - b'0'))
    })?;
    u32::try_from(n).ok()
}

/// A `UID` or `GID` field: [`opt`] within 32 bits.
fn id(s: &[u8]) -> Option<Option<u32>> {
    opt(s)?.map(u32::try_from).transpose().ok()
}

/// A decimal number or `-`: `Some(None)` for `-`, `None` when malformed.
fn opt(s: &[u8]) -> Option<Option<u64>> {
    if s == b"-" {
        return Some(None);
    }
    Some(Some(decimal(s)?))
}

/// A decimal number of at most 19 digits (every id and size), in 64-bit
/// arithmetic.
fn decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 {
        return None;
    }
    s.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
    })
}

/// A stamp or `-`: `Some(None)` for `-`, `None` when malformed. Eight
/// colon-separated numbers in `radix` (16, or 10 for version 2), read in
/// one pass over the bytes.
fn stamp(s: &str, radix: u32) -> Option<Option<Stamp>> {
    if s == "-" {
        return Some(None);
    }
    if s.is_empty() {
        return None;
    }
    // Each field's sign and magnitude: the unsigned ones take all 64 bits.
    let mut n = [(false, 0u64); 8];
    let mut field = 0;
    let (mut value, mut digits, mut neg) = (0u64, 0usize, false);
    // At most 16 hex digits, or 19 decimal ones: no overflow of a u64.
    let max_digits = if radix == 16 { 16 } else { 19 };
    for (i, &b) in s.as_bytes().iter().enumerate() {
        let digit = match b {
            b'0'..=b'9' => Some(u64::from(b - b'0')),
            b'a'..=b'f' if radix == 16 => Some(u64::from(b - b'a' + 10)),
            _ => None,
        };
        match (b, digit) {
            (_, Some(d)) if digits < max_digits => {
                value = value * u64::from(radix) + d;
                digits += 1;
            }
            (b'-', _) if digits == 0 && !neg => neg = true,
            (b':', _) if digits > 0 && field < 7 => {
                n[field] = (neg, value);
                field += 1;
                (value, digits, neg) = (0, 0, false);
            }
            _ => return None,
        }
        if i + 1 == s.len() {
            if digits == 0 || field != 7 {
                return None;
            }
            n[7] = (neg, value);
        }
    }
    let u = |(neg, v): (bool, u64)| (!neg).then_some(v);
    let w = |f: (bool, u64)| u32::try_from(u(f)?).ok();
    Some(Some(Stamp {
        dev: u(n[0])?,
        ino: u(n[1])?,
        size: u(n[2])?,
        mtime_ns: signed(n[3].1, n[3].0)?,
        ctime_ns: signed(n[4].1, n[4].0)?,
        mode: w(n[5])?,
        uid: w(n[6])?,
        gid: w(n[7])?,
    }))
}

/// `value`, negated when `neg`, if it fits an i64.
/// (i64::MIN too: a container may set a modification time that far back,
/// and its stamp must read back as written.)
fn signed(value: u64, neg: bool) -> Option<i64> {
    if neg {
        0i64.checked_sub_unsigned(value)
    } else {
        i64::try_from(value).ok()
    }
}

/// A name field: unescaped, UTF-8, not empty.
fn name(s: &str) -> Option<String> {
    let raw = unescape(s.as_bytes())?;
    String::from_utf8(raw).ok().filter(|n| !n.is_empty())
}

/// Digits of a `%XX` escape.
const HEX: &[u8; 16] = b"0123456789abcdef";

/// Whether a name's byte is written as `%XX`.
fn needs_escape(b: u8) -> bool {
    b <= b' ' || b == b'%' || b == 0x7f
}

fn escape_into(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        if needs_escape(b) {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
        } else {
            out.push(b);
        }
    }
}

fn unescape(b: &[u8]) -> Option<Vec<u8>> {
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

/// The 8 lowercase hex digits of `n`, most significant first, each nibble
/// spread into a byte and turned into its digit in one pass (no table, no
/// division).
#[inline(always)]
fn hex8(n: u32) -> [u8; 8] {
    // Nibble k (from the low end) of `n` into byte k of the result.
    let x = u64::from(n);
    let x = (x | x << 16) & 0x0000_ffff_0000_ffff;
    let x = (x | x << 8) & 0x00ff_00ff_00ff_00ff;
    let v = (x | x << 4) & 0x0f0f_0f0f_0f0f_0f0f;
    // Each byte 0..=15 to '0'..='9' or 'a'..='f'.
    let letters = ((v + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
    (v + 0x3030_3030_3030_3030 + letters * 0x27).to_be_bytes()
}

/// A `file` line's start: `file SHA256 MODE UID GID`.
fn owned_into(out: &mut Vec<u8>, o: &Owned) {
    out.extend_from_slice(b"file ");
    out.extend_from_slice(&o.digest.hex());
    out.push(b' ');
    octal_into(out, o.mode);
    out.push(b' ');
    opt_into(out, o.uid.map(u64::from));
    out.push(b' ');
    opt_into(out, o.gid.map(u64::from));
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
    match s {
        Some(s) => out.extend_from_slice(StampText::of(s).as_bytes()),
        None => out.push(b'-'),
    }
}

/// A stamp's fields as its text has them: (negative, magnitude).
#[inline(always)]
fn fields(s: &Stamp) -> [(bool, u64); 8] {
    let signed = |v: i64| (v < 0, v.unsigned_abs());
    [
        (false, s.dev),
        (false, s.ino),
        (false, s.size),
        signed(s.mtime_ns),
        signed(s.ctime_ns),
        (false, u64::from(s.mode)),
        (false, u64::from(s.uid)),
        (false, u64::from(s.gid)),
    ]
}

/// `word`'s bytes, most significant first, at `buf[at..at + 8]` (a
/// fixed-size store, inlined even where the binary is built for size).
#[inline(always)]
fn put8(buf: &mut [u8], at: usize, word: u64) {
    if let Some(dst) = buf
        .get_mut(at..at + 8)
        .and_then(|d| <&mut [u8; 8]>::try_from(d).ok())
    {
        *dst = word.to_be_bytes();
    }
}

/// One stamp field's text at `buf[at..]`: a `-` when negative, then its
/// significant hex digits; where it ends. Eight digits at a time, the
/// significant ones first and the rest overwritten next (a value of 32
/// bits, most fields, is spread once); 17 bytes of room are needed.
#[inline(always)]
fn put_field(buf: &mut [u8], at: usize, (neg, n): (bool, u64)) -> usize {
    // Written always, counted when due: no branch.
    buf[at] = b'-';
    let at = at + usize::from(neg);
    let digits = ((64 - n.leading_zeros()).div_ceil(4).max(1)) as usize;
    let low = u64::from_be_bytes(hex8(n as u32));
    if digits > 8 {
        let high = u64::from_be_bytes(hex8((n >> 32) as u32));
        put8(buf, at, high << (8 * (16 - digits)));
        put8(buf, at + digits - 8, low);
    } else {
        put8(buf, at, low << (8 * (8 - digits)));
    }
    at + digits
}

/// A stamp's text as a manifest file writes it, made in a fixed buffer:
/// each field's 16 hex digits are written whole and the next field starts
/// right after the significant ones (no copy of a varying length).
pub(crate) struct StampText {
    buf: [u8; 8 * 18 + 16],
    len: usize,
}

impl StampText {
    /// The text of `s`.
    pub(crate) fn of(s: &Stamp) -> StampText {
        let mut t = StampText::empty();
        t.set(s);
        t
    }

    /// No text yet (a buffer for [`StampText::set`]).
    pub(crate) fn empty() -> StampText {
        StampText {
            buf: [0; 8 * 18 + 16],
            len: 0,
        }
    }

    /// Makes this the text of `s`, in the same buffer (a loop over many
    /// stamps makes one buffer, not one each). The eight fields written
    /// one after the other, each by [`put_field`]: this runs twice a file
    /// in `hostbridge sync`, and the binary is built for size.
    pub(crate) fn set(&mut self, s: &Stamp) {
        let [dev, ino, size, mtime, ctime, mode, uid, gid] = fields(s);
        let b = &mut self.buf;
        let mut len = put_field(b, 0, dev);
        for f in [ino, size, mtime, ctime, mode, uid, gid] {
            b[len] = b':';
            len = put_field(b, len + 1, f);
        }
        self.len = len;
    }

    /// The text.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
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
        assert!(text.starts_with("hostbridge-manifest 3\ndestination /run/udev/rules%20d%25\n"));
        assert!(text.contains(&format!(
            "file {} 640 - - 42 fd01:4d2:2a:187e8a2613ec4d15:-5:81a4:0:3e6 - 60-ups.rules\n",
            Digest::of(b"60-ups.rules")
        )));
        assert_eq!(
            parse(&write(&Manifest::default())).unwrap(),
            Manifest::default()
        );
    }

    /// Version 2 wrote the stamps in decimal: such a file reads as the
    /// same manifest (the next save writes version 3).
    #[test]
    fn a_version_2_manifest_with_decimal_stamps_is_read() {
        let m = sample();
        let v2 = String::from_utf8(write(&m))
            .unwrap()
            .replace("hostbridge-manifest 3", "hostbridge-manifest 2")
            .replace(
                "fd01:4d2:2a:187e8a2613ec4d15:-5:81a4:0:3e6",
                "64769:1234:42:1765000000123456789:-5:33188:0:998",
            );
        let read = parse(v2.as_bytes()).unwrap();
        assert!(read.write_whole);
        assert_eq!(
            read,
            Manifest {
                write_whole: true,
                ..m
            }
        );
        // Hex digits are not decimal ones.
        let bad = v2.replacen("64769:", "fd01:", 1);
        assert!(parse(bad.as_bytes()).is_err());
    }

    /// A listing file holds the dir's stamp and the checksum of the names,
    /// and is read only with the manifest file it was written with; the
    /// names of the file lines are given as written, in order, and the
    /// checksum of a buffer of them is that of the list.
    #[test]
    fn a_listing_file_is_read_only_with_its_manifest_and_names_are_given_in_order() {
        let dir = Stamp {
            dev: 27,
            ino: 99,
            size: 60,
            mtime_ns: 1_765_000_000_000_000_001,
            ctime_ns: -2,
            mode: 0o40755,
            uid: 0,
            gid: 0,
        };
        let names = ["60-ups.rules", "70-x.rules", "b@c+d"];
        let sum = names_sum(names.iter().map(|n| n.as_bytes()));
        assert_eq!(
            sum,
            joined_names_sum(b"60-ups.rules\x0070-x.rules\x00b@c+d\x00")
        );
        assert_ne!(sum, names_sum(names[..2].iter().map(|n| n.as_bytes())));
        let bytes = listing_file("base 1:2\n", (dir, sum));
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            format!(
                "base 1:2\nlisting {} {sum:016x}\n",
                String::from_utf8_lossy(StampText::of(&dir).as_bytes())
            )
        );
        assert_eq!(read_listing_file(&bytes, "base 1:2\n"), Some((dir, sum)));
        assert_eq!(read_listing_file(&bytes, "base 1:3\n"), None);
        assert_eq!(
            read_listing_file(&bytes[..bytes.len() - 1], "base 1:2\n"),
            None
        );

        let m = sample();
        let bytes = write(&m);
        let mut given = Vec::new();
        let r = records(&bytes).unwrap();
        assert!(r.names(&mut |n| given.push(String::from_utf8(n.to_vec()).unwrap())));
        assert_eq!(given, names);
        // An escaped name is not given (the check takes none such).
        let mut m = m;
        m.files.insert("a b".into(), m.files["70-x.rules"]);
        assert!(!records(&write(&m)).unwrap().names(&mut |_| {}));
    }

    /// The file lines are taken in order, each only when its name and both
    /// stamps are the ones expected; the header is read as written.
    #[test]
    fn records_cut_in_two_are_walked_as_one() {
        let st = Stamp {
            dev: 1,
            ino: 2,
            size: 3,
            mtime_ns: 4,
            ctime_ns: 5,
            mode: 0o100644,
            uid: 0,
            gid: 0,
        };
        let text = StampText::of(&st).as_bytes().to_vec();
        let walk = |r: &mut Records<'_>, names: &[String]| {
            names.iter().all(|n| {
                r.next_as(&Expect {
                    name: n.as_bytes(),
                    source: &text,
                    dest: &text,
                })
                .is_some()
            }) && r.at_end()
        };
        let mut cut = 0;
        for n in 0..40 {
            let mut m = Manifest::default();
            // Names of varied lengths: the cut is a byte middle, not a line's.
            let names: Vec<String> = (0..n)
                .map(|i| format!("{i:02}{}.rules", "x".repeat(i % 7)))
                .collect();
            for name in &names {
                m.files.insert(
                    name.clone(),
                    Owned {
                        digest: Digest::of(name.as_bytes()),
                        mode: 0o644,
                        uid: None,
                        gid: None,
                    },
                );
                let seen = Seen {
                    size: Some(3),
                    source: Some(st),
                    dest: Some(st),
                };
                m.seen.insert(name.clone(), seen);
            }
            let bytes = write(&m);
            let mut first = records(&bytes).unwrap();
            let Some((mut second, at)) = first.split() else {
                // Nothing cut: the whole is walked as one part.
                assert!(n < 3, "{n} lines are cut");
                assert!(walk(&mut first, &names), "{n}");
                continue;
            };
            cut += 1;
            let k = names.iter().position(|x| x.as_bytes() == at).unwrap();
            assert!(k > 0 && k < names.len(), "{n}: cut at {k}");
            assert!(walk(&mut first, &names[..k]), "{n}: first part");
            assert!(walk(&mut second, &names[k..]), "{n}: second part");
            // A part does not take a line of the other.
            let mut first = records(&bytes).unwrap();
            first.split();
            assert!(
                !walk(&mut first, &names),
                "{n}: the first part ends at the cut"
            );
        }
        assert!(cut > 30);
    }

    #[test]
    fn records_take_a_line_only_as_expected() {
        let mut m = sample();
        m.actions_pending = false;
        m.changed.clear();
        let st = |ino| Stamp {
            dev: 1,
            ino,
            size: 2,
            mtime_ns: 3,
            ctime_ns: 4,
            mode: 0o100644,
            uid: 0,
            gid: 0,
        };
        for (i, seen) in m.seen.values_mut().enumerate() {
            *seen = Seen {
                size: Some(9),
                source: Some(st(i as u64)),
                dest: Some(st(100 + i as u64)),
            };
        }
        m.files.remove("70-x.rules");
        let bytes = write(&m);
        let r = records(&bytes).unwrap();
        assert_eq!(r.destination, b"/run/udev/rules d%");
        assert_eq!((r.actions_pending, r.changed), (false, false));
        assert_eq!(r.checks, m.checks);
        let text = |s: &Stamp| StampText::of(s).as_bytes().to_vec();
        let expect =
            |name: &'static str, a: &[u8], b: &[u8]| (name.as_bytes(), a.to_vec(), b.to_vec());
        let walk = |cases: &[(&[u8], Vec<u8>, Vec<u8>)]| {
            let mut r = records(&bytes).unwrap();
            let taken = cases
                .iter()
                .map_while(|(name, source, dest)| r.next_as(&Expect { name, source, dest }))
                .count();
            (taken, r.at_end())
        };
        let (s0, d0, s1, d1) = (text(&st(0)), text(&st(100)), text(&st(1)), text(&st(101)));
        let good = [expect("60-ups.rules", &s0, &d0), expect("b@c+d", &s1, &d1)];
        assert_eq!(walk(&good), (2, true));
        // Another stamp, another name, or a line short: not taken.
        assert_eq!(walk(&[expect("60-ups.rules", &s1, &d0)]), (0, false));
        assert_eq!(walk(&[expect("60-ups.rules", &s0, &d1)]), (0, false));
        assert_eq!(walk(&[expect("60-ups.rulez", &s0, &d0)]), (0, false));
        assert_eq!(walk(&[expect("60-ups.rule", &s0, &d0)]), (0, false));
        assert_eq!(walk(&good[..1]), (1, false));
        let mut r = records(&bytes).unwrap();
        let first = r
            .next_as(&Expect {
                name: b"60-ups.rules",
                source: &s0,
                dest: &d0,
            })
            .unwrap();
        assert_eq!(
            (first.mode, first.uid, first.gid, first.size),
            (0o640, None, None, Some(9))
        );
        // Another version is not taken this way.
        let v2 = String::from_utf8(bytes.clone())
            .unwrap()
            .replace("hostbridge-manifest 3", "hostbridge-manifest 2");
        assert!(records(v2.as_bytes()).is_none());
    }

    /// An intent block says what a whole intent record would: the planned
    /// entries listed, the pruned ones still listed, nothing seen of either,
    /// the actions owed for them (when the bridge has some). A block cut
    /// short is ignored, and so is what follows it.
    #[test]
    fn intent_blocks_are_read_over_the_manifest_whole_or_not_at_all() {
        let before = sample();
        let new = Owned {
            digest: Digest::of(b"new"),
            mode: 0o644,
            uid: Some(0),
            gid: None,
        };
        let (added, pruned) = ("c d%".to_string(), "70-x.rules".to_string());
        let block = intent(true, [(&added, Some(&new)), (&pruned, None)].into_iter());
        let mut m = Manifest {
            actions_pending: false,
            changed: Default::default(),
            ..before.clone()
        };
        apply_intents(&mut m, &block).unwrap();
        assert!(m.actions_pending);
        assert_eq!(m.files.get(&added), Some(&new));
        assert_eq!(m.files.get(&pruned), before.files.get(&pruned));
        assert!(!m.seen.contains_key(&added) && !m.seen.contains_key(&pruned));
        assert_eq!(m.changed, [added.clone(), pruned.clone()].into());
        assert_eq!(m.seen.get("60-ups.rules"), before.seen.get("60-ups.rules"));

        // Not owed (no actions): listed, no names for them.
        let mut m = Manifest {
            changed: Default::default(),
            ..before.clone()
        };
        apply_intents(&mut m, &intent(false, [(&added, Some(&new))].into_iter())).unwrap();
        assert!(m.changed.is_empty() && m.files.contains_key(&added));

        // A second block cut short: the first stands, the second is not read.
        let other = "z".to_string();
        let mut two = block.clone();
        let second = intent(true, [(&other, Some(&new))].into_iter());
        two.extend_from_slice(&second[..second.len() - 2]);
        let mut m = before.clone();
        apply_intents(&mut m, &two).unwrap();
        assert!(m.files.contains_key(&added) && !m.files.contains_key(&other));
        let mut m = before.clone();
        apply_intents(&mut m, &block[..block.len() - 1]).unwrap();
        assert_eq!(m, before, "the only block, cut short");

        assert!(apply_intents(&mut before.clone(), b"intent 1\nfile x\nend\n").is_err());
        assert!(apply_intents(&mut before.clone(), b"hello\n").is_err());
    }

    #[test]
    fn hex_digits_are_those_of_format() {
        let st = Stamp {
            dev: 0,
            ino: u64::MAX,
            size: 0x10,
            mtime_ns: -1,
            ctime_ns: i64::MIN,
            mode: 0o100644,
            uid: 7,
            gid: u32::MAX,
        };
        assert_eq!(
            StampText::of(&st).as_bytes(),
            b"0:ffffffffffffffff:10:-1:-8000000000000000:81a4:7:ffffffff"
        );
        assert_eq!(
            stamp(
                std::str::from_utf8(StampText::of(&st).as_bytes()).unwrap(),
                16
            ),
            Some(Some(st))
        );
        // The file's text is the one the no-op check compares with.
        let mut written = Vec::new();
        stamp_into(&mut written, Some(&st));
        assert_eq!(written, StampText::of(&st).as_bytes());
        let cases = [
            0,
            1,
            9,
            10,
            15,
            16,
            0xabc,
            0x8000_0000,
            u64::from(u32::MAX),
            u64::MAX,
        ];
        let more = (0..64)
            .map(|i| 1u64 << i)
            .chain((0..64).map(|i| u64::MAX >> i));
        for n in cases
            .into_iter()
            .chain(more)
            .chain((0..200).map(|i| 0x0123_4567_89ab_cdef_u64.wrapping_mul(i * i + 1)))
        {
            let text = format!("{:016x}", n);
            assert_eq!(hex8((n >> 32) as u32), text.as_bytes()[..8]);
            assert_eq!(hex8(n as u32), text.as_bytes()[8..]);
            // A stamp's text, each field as `format!` writes it.
            let st = Stamp {
                dev: n,
                ino: n.rotate_left(7),
                size: n >> 3,
                mtime_ns: n as i64,
                ctime_ns: (n as i64).wrapping_neg(),
                mode: n as u32,
                uid: (n >> 32) as u32,
                gid: (n >> 16) as u32,
            };
            let want: Vec<String> = fields(&st)
                .iter()
                .map(|(neg, v)| format!("{}{v:x}", if *neg { "-" } else { "" }))
                .collect();
            let mut reused = StampText::of(&Stamp {
                dev: u64::MAX,
                ..st
            });
            reused.set(&st);
            assert_eq!(reused.as_bytes(), want.join(":").as_bytes());
        }
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
            (good.replace(":3e6 ", ":3e6:7 "), "bad file line"),
            (good.replace(":3e6 ", ": "), "bad file line"),
            (good.replace("fd01:", "-:"), "bad file line"),
            (good.replace("fd01:", "--1:"), "bad file line"),
            (good.replace("fd01:", "FD01:"), "bad file line"),
            (good.replace("fd01:", "10000000000000000:"), "bad file line"),
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
