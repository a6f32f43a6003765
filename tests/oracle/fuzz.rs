//! A seeded generator of udev rules files for the oracle fuzzer: starts from
//! valid NUT-like files and mutates them with udev's whole grammar (every
//! key and operator, `e"…"`/`i"…"` prefixes, escapes, CR/NUL/CRLF/LF-CR line
//! ends, continuations with comments and blank lines inside, comments,
//! GOTO/LABEL shapes, catch-all vendors, SYMLINK names, OPTIONS values,
//! spacing and commas). Dependency-free and deterministic: case `i` of seed
//! `s` is always the same bytes.
//!
//! Everything that executes writes only a marker under the oracle
//! namespace's tmpfs `/run` (`/bin/sh -c '… >/run/hb-marker-…'`), and the
//! byte-level mutations never touch those command strings.

/// SplitMix64: small, fast, and good enough to drive a grammar.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The generator of case `index` under `seed`.
    pub fn for_case(seed: u64, index: u64) -> Rng {
        let mut r = Rng(seed ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03));
        r.next_u64();
        r
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// True with probability `pct`/100.
    pub fn chance(&mut self, pct: u64) -> bool {
        self.next_u64() % 100 < pct
    }

    /// A random element.
    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }
}

/// One `KEY{attr}OP"value"` pair as it will be written.
#[derive(Debug, Clone)]
struct Pair {
    key: String,
    op: String,
    /// "", "e" or "i".
    prefix: &'static str,
    /// The text between the quotes, escapes already written out.
    value: String,
    /// Spaces before and after the operator.
    pad: (&'static str, &'static str),
}

fn pair(key: &str, op: &str, value: &str) -> Pair {
    Pair {
        key: key.to_string(),
        op: op.to_string(),
        prefix: "",
        value: value.to_string(),
        pad: ("", ""),
    }
}

impl Pair {
    fn is_exec(&self) -> bool {
        self.key.starts_with("RUN")
            || self.key == "PROGRAM"
            || self.key == "IMPORT{program}"
            || self.value.contains("hb-marker")
    }
    fn is_match(&self) -> bool {
        self.op == "==" || self.op == "!="
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Cont {
    /// `\` + LF between pairs.
    Plain,
    /// A comment line inside the continuation.
    Comment,
    /// An empty line inside (udevd ends the continuation there).
    Blank,
    /// A whitespace-only line inside.
    Spaces,
}

#[derive(Debug, Clone)]
enum Item {
    Rule {
        pairs: Vec<Pair>,
        /// Separator between pairs.
        sep: &'static str,
        /// Leading bytes (indent, control bytes).
        lead: Vec<u8>,
        /// Continuation after pair i (index of the pair it follows).
        cont: Option<(usize, Cont)>,
        /// Text after the last pair (` # note`, ` ,`).
        trail: String,
    },
    Comment(String),
    Blank,
}

#[derive(Debug, Clone)]
struct Doc {
    items: Vec<(Item, Vec<u8>)>,
    /// The file ends in a continuation (`\` as the last byte).
    cont_at_eof: bool,
}

fn rule(pairs: Vec<Pair>) -> (Item, Vec<u8>) {
    (
        Item::Rule {
            pairs,
            sep: ", ",
            lead: Vec::new(),
            cont: None,
            trail: String::new(),
        },
        b"\n".to_vec(),
    )
}

/// UPS vendors, and 2109: the VIA hub of the fake tree (tests/oracle), a
/// vendor that looks harmless and sits above another device.
const VENDORS: &[&str] = &[
    "051d", "0463", "0764", "0665", "06da", "09ae", "0d9f", "10af", "0001", "ffff", "2109",
];
const PRODUCTS: &[&str] = &["0002", "0001", "0005", "5161", "ffff", "6001"];
/// Vendor values that prove nothing or match everything.
const BAD_VENDORS: &[&str] = &[
    "*",
    "05?d",
    "[0-9]*",
    "051d|",
    "|051d",
    "1d6b",
    "051D",
    "051d*",
    "",
    "0463|051d",
    "51d",
    "0x051d",
    "051d ",
];
const MARK_PROGRAM: &str = "/bin/sh -c 'echo p >/run/hb-marker-program'";
const MARK_IMPORT: &str = "/bin/sh -c 'echo HB_IMPORTED=1; echo i >/run/hb-marker-import'";
const MARK_RUN: &str = "/bin/sh -c 'echo r >/run/hb-marker-run'";

/// A vendor, the fake UPS's a third of the time: a grant that reaches a
/// device is what puts udevd's assignment code to the test.
fn vendor(rng: &mut Rng) -> String {
    if rng.chance(33) {
        return "051d".into();
    }
    rng.pick(VENDORS).to_string()
}

fn template(rng: &mut Rng) -> Doc {
    let mut items = Vec::new();
    let attr = if rng.chance(50) { "ATTR" } else { "ATTRS" };
    let grants = 1 + rng.below(3);
    let grant = |rng: &mut Rng, attr: &str, with_sub: bool| {
        let mut p = Vec::new();
        if with_sub {
            p.push(pair(
                "SUBSYSTEM",
                "==",
                rng.pick(&["usb", "usb", "tty", "hidraw", "usbmisc", "usb_device"]),
            ));
        }
        p.push(pair(&format!("{attr}{{idVendor}}"), "==", &vendor(rng)));
        if rng.chance(60) {
            p.push(pair(
                &format!("{attr}{{idProduct}}"),
                "==",
                rng.pick(PRODUCTS),
            ));
        }
        // The hub exclusion a parent vendor needs, mostly right.
        if attr == "ATTRS" && rng.chance(70) {
            p.push(match rng.below(6) {
                0 => pair("ATTRS{bDeviceClass}", "==", "09"),
                1 => pair("ATTRS{bDeviceClass}", "!=", rng.pick(&["9", "0*", "00"])),
                _ => pair("ATTRS{bDeviceClass}", "!=", "09"),
            });
        }
        p.push(pair(
            "MODE",
            "=",
            rng.pick(&["0660", "0664", "0640", "660"]),
        ));
        if rng.chance(85) {
            p.push(pair("GROUP", "=", "nut"));
        }
        if rng.chance(10) {
            p.push(pair("TAG", "+=", "uaccess"));
        }
        p
    };
    match rng.below(5) {
        0 => {
            items.push((
                Item::Comment("# UPS devices for NUT".into()),
                b"\n".to_vec(),
            ));
            items.push(rule(vec![
                pair("SUBSYSTEM", "!=", "usb"),
                pair("GOTO", "=", "nut_end"),
            ]));
            if rng.chance(50) {
                items.push(rule(vec![
                    pair("ACTION", "!=", "add|change"),
                    pair("GOTO", "=", "nut_end"),
                ]));
            }
            for _ in 0..grants {
                items.push(rule(grant(rng, attr, false)));
            }
            items.push(rule(vec![pair("LABEL", "=", "nut_end")]));
        }
        1 => {
            for _ in 0..grants {
                items.push(rule(grant(rng, attr, true)));
            }
        }
        2 => {
            let mut p = grant(rng, "ATTRS", false);
            p.insert(0, pair("SUBSYSTEM", "==", rng.pick(&["tty", "hidraw"])));
            if rng.chance(50) {
                // Names under the fuzz bridge's allow_symlinks (ups/), and
                // lengths around what udevd's 1024-byte buffer holds.
                let long = |n: usize| format!("ups/{}", "a".repeat(n - 4));
                let name = match rng.below(6) {
                    0 => long(255),
                    1 => long(256),
                    2 => long(rng.pick(&[1018, 1019, 1021, 1023])),
                    _ => rng
                        .pick(&[
                            "ups0",
                            "ups/serial",
                            "nut-ups",
                            "ups/a.b:c=d+e@f#g",
                            "ups/x-1",
                        ])
                        .to_string(),
                };
                p.push(pair("SYMLINK", "+=", &name));
            }
            items.push(rule(p));
        }
        3 => {
            items.push(rule(vec![
                pair("SUBSYSTEM", "==", "usb"),
                pair(&format!("{attr}{{idVendor}}"), "==", &vendor(rng)),
                pair("GOTO", "=", "nut_grant"),
            ]));
            items.push(rule(vec![pair("GOTO", "=", "nut_end")]));
            items.push(rule(vec![pair("LABEL", "=", "nut_grant")]));
            items.push(rule(vec![
                pair("MODE", "=", "0660"),
                pair("GROUP", "=", "nut"),
            ]));
            items.push(rule(vec![pair("LABEL", "=", "nut_end")]));
        }
        _ => {
            items.push(rule(vec![
                pair("SUBSYSTEM", "==", rng.pick(&["hidraw", "usb"])),
                pair("ATTRS{idVendor}", "==", &vendor(rng)),
                pair("TAG", "+=", "uaccess"),
            ]));
        }
    }
    Doc {
        items,
        cont_at_eof: false,
    }
}

/// Rules that hit this machine's non-USB devices if udevd reads them.
fn payload(rng: &mut Rng) -> Vec<Pair> {
    match rng.below(14) {
        0 => vec![
            pair("KERNEL", "==", "ttyS0|tty|null|vda|loop0"),
            pair("MODE", "=", "0660"),
            pair("GROUP", "=", "nut"),
        ],
        1 => vec![
            pair("SUBSYSTEM", "==", "tty"),
            pair("MODE", "=", "0660"),
            pair("GROUP", "=", "nut"),
        ],
        2 => vec![pair("MODE", "=", "0660")],
        3 => vec![
            pair("SUBSYSTEM", "==", "tty"),
            pair("ATTRS{idVendor}", "==", "0403"),
            pair("MODE", "=", "0660"),
        ],
        4 => vec![pair("KERNEL", "==", "ttyS0"), pair("SYMLINK", "+=", "log")],
        5 => vec![pair("RUN", "+=", MARK_RUN)],
        6 => vec![
            pair("KERNEL", "==", "ttyS0"),
            pair("PROGRAM", "==", MARK_PROGRAM),
            pair("MODE", "=", "0660"),
        ],
        7 => vec![pair("IMPORT{program}", "=", MARK_IMPORT)],
        8 => vec![
            pair("TEST", "==", "/dev/null/*/x"),
            pair("ENV{HB_FUZZ}", "=", "1"),
        ],
        9 => vec![
            pair("SYSCTL{kernel}", "==", "x"),
            pair("ENV{HB_FUZZ}", "=", "1"),
        ],
        10 => vec![pair("ENV{HB_FUZZ}", "=", "1")],
        11 => vec![pair("TAG", "+=", "systemd")],
        12 => vec![pair("OPTIONS", "=", "log_level=emerg")],
        _ => vec![
            pair("SUBSYSTEM", "==", "tty"),
            pair("ATTRS{idVendor}", "!=", "0403"),
            pair("GOTO", "=", "nut_end"),
        ],
    }
}

/// A random pair from udev's whole key set.
fn any_pair(rng: &mut Rng) -> Pair {
    let vendor_key = |rng: &mut Rng| rng.pick(&["ATTR{idVendor}", "ATTRS{idVendor}"]).to_string();
    match rng.below(41) {
        40 => pair(
            rng.pick(&["ATTRS{bDeviceClass}", "ATTR{bDeviceClass}"]),
            rng.pick(&["==", "!="]),
            rng.pick(&["09", "00", "9"]),
        ),
        0 => pair(
            "SUBSYSTEM",
            "==",
            rng.pick(&["usb", "tty", "block", "usb|tty", "usb*", "*", "mem"]),
        ),
        1 => pair("SUBSYSTEMS", "==", rng.pick(&["usb", "tty", "pnp"])),
        2 => pair(
            "KERNEL",
            "==",
            rng.pick(&["ttyS0", "tty*", "*", "null", "vda|loop0", "hiddev*"]),
        ),
        3 => pair("KERNELS", "==", rng.pick(&["ttyS0", "00:00:0", "*"])),
        4 => pair("DRIVER", "==", rng.pick(&["usb", "serial8250", ""])),
        5 => pair("DRIVERS", "==", rng.pick(&["usb", "serial8250", "usbhid"])),
        6 => {
            let k = vendor_key(rng);
            pair(&k, rng.pick(&["==", "!="]), rng.pick(BAD_VENDORS))
        }
        7 => {
            let k = vendor_key(rng);
            let v = vendor(rng);
            pair(&k, "==", &v)
        }
        8 => pair("ATTRS{idProduct}", "==", rng.pick(PRODUCTS)),
        9 => pair("ENV{ID_VENDOR_ID}", "==", "051d"),
        10 => pair("ENV{DEVTYPE}", rng.pick(&["==", "!="]), "usb_device"),
        11 => pair(
            "ACTION",
            rng.pick(&["==", "!="]),
            rng.pick(&["add", "add|change", "remove"]),
        ),
        12 => pair("DEVPATH", "==", rng.pick(&["/devices/*", "*/usb*"])),
        13 => pair("TAG", "==", rng.pick(&["uaccess", "systemd"])),
        14 => pair("TAGS", "==", "uaccess"),
        15 => pair(
            "TEST",
            rng.pick(&["==", "!="]),
            rng.pick(&["/run", "/dev/null/*/x", "/sys/*/x", "/nonexistent", "power"]),
        ),
        16 => pair("TEST{0644}", "==", "/run"),
        17 => pair("SYSCTL{kernel/hostname}", "==", rng.pick(&["vm", "*"])),
        18 => pair("SYSCTL{kernel}", "==", "x"),
        19 => pair("RESULT", "==", "x"),
        20 => pair(
            rng.pick(&["CONST{virt}", "CONST{arch}"]),
            "==",
            rng.pick(&["docker", "none", "x86-64"]),
        ),
        21 => pair("NAME", rng.pick(&["==", "="]), rng.pick(&["eth0", "hb0"])),
        22 => pair("SYMLINK", "==", "ups0"),
        23 => pair("PROGRAM", rng.pick(&["==", "="]), MARK_PROGRAM),
        24 => pair(
            "MODE",
            rng.pick(&["=", ":=", "+="]),
            rng.pick(&[
                "0660", "0664", "0666", "660", "4770", "0600", "$attr{x}", "0660 ",
            ]),
        ),
        25 => pair(
            "GROUP",
            rng.pick(&["=", ":=", "+="]),
            rng.pick(&[
                "nut",
                "nut",
                "dialout",
                "disk",
                "root",
                "6",
                "$env{G}",
                "nosuchgroup",
            ]),
        ),
        26 => pair(
            "OWNER",
            rng.pick(&["=", ":="]),
            rng.pick(&["nut", "root", "0", "nobody"]),
        ),
        27 => pair(
            "SYMLINK",
            rng.pick(&["+=", "=", ":="]),
            rng.pick(&[
                "ups0",
                "ups/%k",
                "log",
                "stdout",
                "disk/by-id/usb-hb",
                "mapper/hb",
                "../hb",
                "/dev/hb",
                "ups%n",
                "ups0 ups1",
            ]),
        ),
        28 => pair(
            "TAG",
            rng.pick(&["+=", "=", "-="]),
            rng.pick(&["uaccess", "systemd", ""]),
        ),
        29 => pair("ENV{HB_FUZZ}", rng.pick(&["=", "+=", ":="]), "1"),
        30 => pair(
            "OPTIONS",
            rng.pick(&["+=", "="]),
            rng.pick(&[
                "link_priority=10",
                "link_priority=abc",
                "link_priority=",
                "string_escape=replace",
                "static_node=ttyS0",
                "log_level=emerg",
                "db_persist",
                "watch",
                "nowatch",
                "bogus",
                "last_rule",
            ]),
        ),
        31 => pair("RUN", "+=", MARK_RUN),
        32 => pair("RUN{builtin}", "+=", "path_id"),
        33 => pair("IMPORT{program}", "=", MARK_IMPORT),
        34 => pair(
            rng.pick(&[
                "IMPORT{file}",
                "IMPORT{cmdline}",
                "IMPORT{db}",
                "IMPORT{parent}",
            ]),
            "=",
            rng.pick(&["/run/hb-none", "quiet", "HB_X"]),
        ),
        35 => pair(
            "IMPORT{builtin}",
            "=",
            rng.pick(&["path_id", "usb_id", "hwdb"]),
        ),
        36 => pair("SECLABEL{selinux}", "=", "system_u:object_r:hb_t:s0"),
        37 => pair("LABEL", "=", rng.pick(&["nut_end", "nut_grant", "other"])),
        38 => pair("GOTO", "=", rng.pick(&["nut_end", "nut_grant", "nowhere"])),
        _ => pair(
            rng.pick(&["subsystem", "FOO", "Mode", "ATTR{}", "ENV", "IMPORT{bogus}"]),
            "==",
            "x",
        ),
    }
}

fn rules_idx(doc: &Doc) -> Vec<usize> {
    doc.items
        .iter()
        .enumerate()
        .filter(|(_, (it, _))| matches!(it, Item::Rule { .. }))
        .map(|(i, _)| i)
        .collect()
}

fn with_rule<F: FnOnce(&mut Vec<Pair>, &mut Rng)>(doc: &mut Doc, rng: &mut Rng, f: F) {
    let idx = rules_idx(doc);
    if idx.is_empty() {
        return;
    }
    let i = rng.pick(&idx);
    if let (Item::Rule { pairs, .. }, _) = &mut doc.items[i] {
        f(pairs, rng);
    }
}

/// Changes that keep a file valid: what a real container would vary.
fn benign(doc: &mut Doc, rng: &mut Rng) {
    match rng.below(8) {
        0 => with_rule(doc, rng, |pairs, rng| {
            for p in pairs.iter_mut().filter(|p| p.key.ends_with("{idVendor}")) {
                p.value = vendor(rng);
            }
        }),
        1 => {
            let at = rng.below(doc.items.len() + 1);
            let text = rng
                .pick(&[
                    "# NUT",
                    "#",
                    "  # indented comment",
                    "# RUN+=\"/bin/true\" is not here",
                ])
                .to_string();
            doc.items.insert(at, (Item::Comment(text), b"\n".to_vec()));
        }
        2 => {
            let at = rng.below(doc.items.len() + 1);
            doc.items.insert(at, (Item::Blank, b"\n".to_vec()));
        }
        3 => with_rule(doc, rng, |pairs, rng| {
            // Matches before assignments keeps the meaning (udevd sorts
            // tokens by type anyway); swap two neighbours of a kind.
            if pairs.len() >= 2 {
                let i = rng.below(pairs.len() - 1);
                if pairs[i].is_match() == pairs[i + 1].is_match() {
                    pairs.swap(i, i + 1);
                }
            }
        }),
        4 => {
            let sep = rng.pick(&[", ", ",", ",  ", ", \t"]);
            for (it, _) in doc.items.iter_mut() {
                if let Item::Rule { sep: s, .. } = it {
                    *s = sep;
                }
            }
        }
        5 => with_rule(doc, rng, |pairs, rng| {
            if let Some(i) = pairs.iter().position(|p| p.key.ends_with("{idVendor}")) {
                let key = pairs[i].key.replace("idVendor", "idProduct");
                pairs.insert(i + 1, pair(&key, "==", rng.pick(PRODUCTS)));
            }
        }),
        6 => with_rule(doc, rng, |pairs, rng| {
            if let Some(p) = pairs.iter_mut().find(|p| p.key == "MODE") {
                p.value = rng.pick(&["0660", "0664", "0640", "0600"]).to_string();
            }
        }),
        _ => {
            if rng.chance(50) {
                doc.items.insert(
                    0,
                    (
                        Item::Comment("# generated by the hostbridge oracle fuzzer".into()),
                        b"\n".to_vec(),
                    ),
                );
            } else {
                doc.items.push((Item::Blank, b"\n".to_vec()));
            }
        }
    }
}

const ENDINGS: &[&[u8]] = &[
    b"\r", b"\0", b"\r\n", b"\n\r", b"\r\0", b"\n\0", b"\r\r", b"\n\n",
];

fn escape_one(c: char, rng: &mut Rng) -> String {
    match rng.below(9) {
        0 => format!("\\x{:02x}", c as u32),
        1 => format!("\\x{:02X}", c as u32),
        2 => format!("\\{:03o}", c as u32),
        3 => format!("\\?{c}"),
        4 => format!("\\777{c}"),
        5 => format!("\\q{c}"),
        6 => format!("\\\\{c}"),
        7 => format!("\\\"{c}"),
        _ => format!("\\{c}"),
    }
}

/// Changes from udev's whole grammar.
fn hostile(doc: &mut Doc, rng: &mut Rng) {
    match rng.below(27) {
        0 => with_rule(doc, rng, |pairs, rng| {
            if let Some(p) = pairs.iter_mut().find(|p| p.key.ends_with("{idVendor}")) {
                p.value = rng.pick(BAD_VENDORS).to_string();
            }
        }),
        1 => with_rule(doc, rng, |pairs, rng| {
            let i = rng.below(pairs.len());
            let p = &mut pairs[i];
            p.op = match p.op.as_str() {
                "==" => "!=".into(),
                "!=" => "==".into(),
                _ => rng.pick(&["=", "+=", ":=", "-=", "==", "!="]).to_string(),
            };
        }),
        2 => with_rule(doc, rng, |pairs, rng| {
            let i = rng.below(pairs.len());
            let new = any_pair(rng);
            pairs[i].key = new.key;
        }),
        3 => with_rule(doc, rng, |pairs, rng| {
            let at = rng.below(pairs.len() + 1);
            pairs.insert(at, any_pair(rng));
        }),
        4 => with_rule(doc, rng, |pairs, rng| {
            if pairs.len() > 1 {
                let i = rng.below(pairs.len());
                pairs.remove(i);
            }
        }),
        5 | 6 | 22 | 23 => {
            // Hide a payload behind a CR or NUL (or a harmless CRLF/LF-CR).
            let at = rng.below(doc.items.len());
            doc.items[at].1 = rng.pick(ENDINGS).to_vec();
            if rng.chance(50) {
                doc.items[at].0 =
                    Item::Comment(rng.pick(&["# note", "#", "# see docs"]).to_string());
            }
            doc.items.insert(at + 1, rule(payload(rng)));
        }
        7 => {
            let at = rng.below(doc.items.len());
            doc.items[at].1 = rng.pick(ENDINGS).to_vec();
        }
        8 => with_rule(doc, rng, |pairs, rng| {
            let i = rng.below(pairs.len());
            let p = &mut pairs[i];
            if p.is_exec() || p.value.is_empty() {
                return;
            }
            let chars: Vec<char> = p.value.chars().collect();
            let at = rng.below(chars.len());
            if rng.chance(70) {
                p.prefix = "e";
            }
            let mut v: String = chars[..at].iter().collect();
            v.push_str(&escape_one(chars[at], rng));
            v.extend(&chars[at + 1..]);
            p.value = v;
        }),
        9 => with_rule(doc, rng, |pairs, rng| {
            let i = rng.below(pairs.len());
            if !pairs[i].is_exec() {
                pairs[i].prefix = rng.pick(&["i", "e"]);
            }
        }),
        10 => {
            let idx = rules_idx(doc);
            if let Some(&i) = idx.get(rng.below(idx.len().max(1)))
                && let (Item::Rule { pairs, cont, .. }, _) = &mut doc.items[i]
                && pairs.len() >= 2
            {
                let after = rng.below(pairs.len() - 1);
                *cont = Some((
                    after,
                    rng.pick(&[Cont::Plain, Cont::Comment, Cont::Blank, Cont::Spaces]),
                ));
            }
        }
        11 => doc.cont_at_eof = true,
        12 => {
            let at = rng.below(doc.items.len() + 1);
            let text = rng.pick(&[
                "# RUN+=\"/bin/true\"",
                "# continued \\",
                "#\\",
                "# KERNEL==\"ttyS0\", MODE=\"0660\"",
            ]);
            doc.items
                .insert(at, (Item::Comment(text.to_string()), b"\n".to_vec()));
        }
        13 => {
            let idx = rules_idx(doc);
            if let Some(&i) = idx.get(rng.below(idx.len().max(1)))
                && let (Item::Rule { trail, .. }, _) = &mut doc.items[i]
            {
                *trail = rng
                    .pick(&[" # note", ",", " ,", ", ", "\t", " foo"])
                    .to_string();
            }
        }
        14 => goto_shape(doc, rng),
        15 | 24 | 25 => {
            let at = rng.below(doc.items.len() + 1);
            doc.items.insert(at, rule(payload(rng)));
        }
        16 => {
            let idx = rules_idx(doc);
            if let Some(&i) = idx.get(rng.below(idx.len().max(1)))
                && let (
                    Item::Rule {
                        sep, pairs, lead, ..
                    },
                    _,
                ) = &mut doc.items[i]
            {
                *sep = rng.pick(&["", " ", ",,", " , ", "\t", ",\t"]);
                if rng.chance(30) {
                    *lead = rng.pick(&[&b"  "[..], b"\t", b",", b" ,"]).to_vec();
                }
                if let Some(p) = pairs.first_mut()
                    && rng.chance(40)
                {
                    p.pad = rng.pick(&[(" ", " "), ("", " "), (" ", ""), ("\t", "")]);
                }
            }
        }
        17 => with_rule(doc, rng, |pairs, rng| {
            let exec = match rng.below(3) {
                0 => pair("RUN", "+=", MARK_RUN),
                1 => pair("PROGRAM", "==", MARK_PROGRAM),
                _ => pair("IMPORT{program}", "=", MARK_IMPORT),
            };
            let at = rng.below(pairs.len() + 1);
            pairs.insert(at, exec);
        }),
        18 => with_rule(doc, rng, |pairs, rng| {
            pairs.push(pair(
                rng.pick(&["OPTIONS", "SYMLINK"]),
                "+=",
                rng.pick(&[
                    "link_priority=abc",
                    "link_priority=10",
                    "log",
                    "stdout",
                    "disk/by-id/usb-hb",
                    "mapper/hb",
                    "ups0",
                ]),
            ));
        }),
        19 => with_rule(doc, rng, |pairs, rng| {
            if let Some(p) = pairs
                .iter()
                .find(|p| !p.is_match() && p.key != "GOTO" && p.key != "LABEL")
            {
                let mut d = p.clone();
                d.value = rng
                    .pick(&["0666", "root", "disk", "0660", "nut"])
                    .to_string();
                pairs.push(d);
            }
        }),
        20 => {
            let idx = rules_idx(doc);
            if let Some(&i) = idx.get(rng.below(idx.len().max(1)))
                && let (Item::Rule { lead, .. }, _) = &mut doc.items[i]
            {
                *lead = rng
                    .pick(&[&b"\x0c"[..], b"\x0b", b"\xc2\xa0", b"\x1b", b"\xef\xbb\xbf"])
                    .to_vec();
            }
        }
        _ => {
            // Device-hitting matches in place of USB ones.
            with_rule(doc, rng, |pairs, rng| {
                for p in pairs.iter_mut() {
                    if p.key == "SUBSYSTEM" && p.value == "usb" {
                        p.value = rng.pick(&["tty", "block", "mem", "tty|usb"]).to_string();
                    }
                }
            })
        }
    }
}

fn goto_shape(doc: &mut Doc, rng: &mut Rng) {
    let labels: Vec<usize> = doc
        .items
        .iter()
        .enumerate()
        .filter(|(_, (it, _))| matches!(it, Item::Rule { pairs, .. } if pairs.iter().any(|p| p.key == "LABEL")))
        .map(|(i, _)| i)
        .collect();
    match rng.below(6) {
        0 => {
            if let Some(&i) = labels.first() {
                doc.items.remove(i);
            }
        }
        1 => {
            if let Some(&i) = labels.first() {
                let dup = doc.items[i].clone();
                let at = rng.below(i + 1);
                doc.items.insert(at, dup);
            }
        }
        2 => {
            // Jump over the guards straight to the grants.
            doc.items.insert(
                0,
                rule(vec![
                    pair("ACTION", "==", "add"),
                    pair("GOTO", "=", "nut_in"),
                ]),
            );
            let at = 1 + rng.below(doc.items.len());
            doc.items.insert(
                at.min(doc.items.len()),
                rule(vec![pair("LABEL", "=", "nut_in")]),
            );
        }
        3 => with_rule(doc, rng, |pairs, _| {
            pairs.push(pair("GOTO", "=", "nut_end"));
            pairs.push(pair("GOTO", "=", "nut_grant"));
        }),
        4 => {
            // A negated vendor guard and a grant without a vendor.
            let v = vendor(rng);
            let key = rng.pick(&["ATTR{idVendor}", "ATTRS{idVendor}"]).to_string();
            let at = rng.below(doc.items.len() + 1);
            doc.items.insert(
                at,
                rule(vec![pair(&key, "!=", &v), pair("GOTO", "=", "nut_end")]),
            );
            doc.items.insert(
                (at + 1).min(doc.items.len()),
                rule(vec![pair("MODE", "=", "0660"), pair("GROUP", "=", "nut")]),
            );
            if labels.is_empty() {
                doc.items.push(rule(vec![pair("LABEL", "=", "nut_end")]));
            }
        }
        _ => {
            // The guard's GOTO on a line udevd drops.
            for (it, _) in doc.items.iter_mut() {
                if let Item::Rule { pairs, .. } = it
                    && pairs.iter().any(|p| p.key == "GOTO")
                {
                    pairs.push(match rng.below(4) {
                        0 => pair("OPTIONS", "+=", "link_priority=high"),
                        1 => {
                            let mut p = pair("TEST", "!=", "/nonexistent");
                            p.prefix = "i";
                            p
                        }
                        2 => pair("GROUP", "=", "nosuchgroup"),
                        _ => pair("ENV", "=", "x"),
                    });
                    break;
                }
            }
        }
    }
}

/// The bytes and the ranges that must not be touched (command strings).
fn render(doc: &Doc, rng: &mut Rng) -> (Vec<u8>, Vec<(usize, usize)>) {
    let mut out: Vec<u8> = Vec::new();
    let mut keep = Vec::new();
    let n = doc.items.len();
    for (k, (item, end)) in doc.items.iter().enumerate() {
        match item {
            Item::Rule {
                pairs,
                sep,
                lead,
                cont,
                trail,
            } => {
                out.extend_from_slice(lead);
                for (i, p) in pairs.iter().enumerate() {
                    if i > 0 {
                        out.extend_from_slice(sep.as_bytes());
                    }
                    out.extend_from_slice(p.key.as_bytes());
                    out.extend_from_slice(p.pad.0.as_bytes());
                    out.extend_from_slice(p.op.as_bytes());
                    out.extend_from_slice(p.pad.1.as_bytes());
                    out.extend_from_slice(p.prefix.as_bytes());
                    out.push(b'"');
                    let start = out.len();
                    out.extend_from_slice(p.value.as_bytes());
                    if p.is_exec() {
                        keep.push((start, out.len()));
                    }
                    out.push(b'"');
                    if let Some((after, how)) = cont
                        && *after == i
                        && i + 1 < pairs.len()
                    {
                        out.extend_from_slice(b" \\\n");
                        match how {
                            Cont::Plain => {}
                            Cont::Comment => out.extend_from_slice(b"# inside a continuation\n"),
                            Cont::Blank => out.extend_from_slice(b"\n"),
                            Cont::Spaces => out.extend_from_slice(b"   \n"),
                        }
                        out.extend_from_slice(b"  ");
                        // The separator still follows on the next line.
                    }
                }
                out.extend_from_slice(trail.as_bytes());
            }
            Item::Comment(t) => out.extend_from_slice(t.as_bytes()),
            Item::Blank => {}
        }
        if k + 1 == n && doc.cont_at_eof {
            out.extend_from_slice(b" \\");
            if rng.chance(50) {
                out.push(b'\n');
            }
        } else {
            out.extend_from_slice(end);
        }
    }
    (out, keep)
}

/// Inserts one odd byte somewhere outside the command strings.
fn byte_mutation(bytes: &mut Vec<u8>, keep: &[(usize, usize)], rng: &mut Rng) {
    if bytes.is_empty() {
        return;
    }
    for _ in 0..8 {
        let at = rng.below(bytes.len() + 1);
        if keep.iter().any(|&(s, e)| at >= s && at <= e) {
            continue;
        }
        let b: &[u8] = rng.pick(&[
            &b"\r"[..],
            b"\0",
            b"\x0c",
            b"\\",
            b"\"",
            b"#",
            b",",
            b"\xa0",
            b"\\\n",
            b"\r\n",
        ]);
        bytes.splice(at..at, b.iter().copied());
        return;
    }
}

/// Case `index` of `seed`: a rules file.
pub fn generate(seed: u64, index: u64) -> Vec<u8> {
    let mut rng = Rng::for_case(seed, index);
    let mut doc = template(&mut rng);
    let benign_only = rng.chance(35);
    let n = if benign_only {
        1 + rng.below(3)
    } else {
        rng.pick(&[1, 1, 1, 2, 2, 3, 4])
    };
    if !benign_only && rng.chance(50) {
        // Aim at this machine's devices: a tty is an allowed subsystem, so
        // only the vendor match stands between the grant and ttyS0.
        for (it, _) in doc.items.iter_mut() {
            if let Item::Rule { pairs, .. } = it {
                for p in pairs
                    .iter_mut()
                    .filter(|p| p.key == "SUBSYSTEM" && p.value == "usb")
                {
                    p.value = "tty".into();
                }
            }
        }
    }
    for _ in 0..n {
        if benign_only || rng.chance(25) {
            benign(&mut doc, &mut rng);
        } else {
            hostile(&mut doc, &mut rng);
        }
    }
    if !benign_only && rng.chance(40) {
        // Something this machine's devices would show, hidden or not.
        let at = rng.below(doc.items.len() + 1);
        if at > 0 && rng.chance(60) {
            doc.items[at - 1].1 = rng.pick(ENDINGS).to_vec();
        }
        doc.items.insert(at, rule(payload(&mut rng)));
    }
    let (mut bytes, keep) = render(&doc, &mut rng);
    if !benign_only && rng.chance(12) {
        byte_mutation(&mut bytes, &keep, &mut rng);
    }
    if !benign_only && rng.chance(1) {
        // A physical line past udevd's 16 KiB buffer: it stops reading.
        let mut long = b"KERNEL==\"".to_vec();
        long.extend(std::iter::repeat_n(b'a', 17 * 1024));
        long.extend_from_slice(b"\", MODE=\"0660\"\n");
        bytes.splice(0..0, long);
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic() {
        assert_eq!(generate(1, 5), generate(1, 5));
        assert_ne!(generate(1, 5), generate(2, 5));
    }
}
