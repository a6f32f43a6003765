#![allow(clippy::unwrap_used)]
use hostbridge::core::rules::{self, policy::Policy};
use std::time::Instant;

fn pol() -> Policy {
    Policy {
        symlinks: vec!["ups/".into()],
        ..Policy::default()
    }
}

fn show(label: &str, src: &[u8], p: &Policy) -> Option<Vec<u8>> {
    let v = rules::vet("62-x.rules", src, p);
    let errs: Vec<String> = v
        .findings
        .iter()
        .filter(|f| f.severity == rules::Severity::Error)
        .map(|f| {
            format!(
                "{}:{} {}",
                f.line,
                f.rule,
                f.message.chars().take(80).collect::<String>()
            )
        })
        .collect();
    println!(
        "== {label}: install={} errs={:?}",
        v.install.is_some(),
        errs
    );
    if let Some(b) = &v.install {
        let s = String::from_utf8_lossy(b);
        for l in s.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
            println!("   | {}", &l[..l.len().min(200)]);
        }
    }
    v.install
}

#[test]
fn probe() {
    let p = pol();
    let long = "a".repeat(1015);
    let cases: Vec<(&str, String)> = vec![
        (
            "group +5",
            "SUBSYSTEM==\"usb\", ATTR{idVendor}==\"051d\", GROUP=\"+5\"\n".into(),
        ),
        (
            "mode 0",
            "SUBSYSTEM==\"usb\", ATTR{idVendor}==\"051d\", MODE=\"0\"\n".into(),
        ),
        (
            "symlink long",
            format!(
                "SUBSYSTEM==\"hidraw\", ATTRS{{idVendor}}==\"051d\", SYMLINK+=\"ups/{long}\"\n"
            ),
        ),
        (
            "attr read every dev",
            "ATTRS{vpd}==\"x\", GOTO=\"e\"\nLABEL=\"e\"\n".into(),
        ),
        (
            "subsystem bus",
            "SUBSYSTEM==\"bus\", ATTR{idVendor}==\"051d\", MODE=\"0660\"\n".into(),
        ),
        (
            "group braces",
            "SUBSYSTEM==\"usb\", ATTR{idVendor}==\"051d\", GROUP=\"{x}\"\n".into(),
        ),
        (
            "tag uaccess only",
            "SUBSYSTEM==\"usb\", ATTR{idVendor}==\"8087\", TAG+=\"uaccess\"\n".into(),
        ),
        (
            "sym colon",
            "SUBSYSTEM==\"hidraw\", ATTRS{idVendor}==\"051d\", SYMLINK+=\"ups/a:b=c+d@e\"\n".into(),
        ),
    ];
    for (l, s) in &cases {
        show(l, s.as_bytes(), &p);
    }
}

#[test]
fn perf() {
    let mk: Vec<(&str, Vec<u8>)> = vec![
        ("many tokens", {
            let mut v = Vec::new();
            while v.len() < 1 << 20 {
                let mut line = String::new();
                let mut i = 0;
                while line.len() < 4000 {
                    line.push_str(&format!("ATTR{{a{i}}}==\"\" "));
                    i += 1;
                }
                line.push_str("\n");
                v.extend_from_slice(line.as_bytes());
            }
            v
        }),
        ("many tokens same", {
            let mut v = Vec::new();
            while v.len() < 1 << 20 {
                let mut line = String::new();
                while line.len() < 4000 {
                    line.push_str("KERNEL==\"\",");
                }
                line.push_str("\n");
                v.extend_from_slice(line.as_bytes());
            }
            v
        }),
        ("backslashes", {
            let mut v = b"\\\n".repeat(500_000);
            v.extend_from_slice(b"MODE=\"0660\"\n");
            v
        }),
        ("gotos", {
            let mut v = Vec::new();
            for i in 0..1999 {
                v.extend_from_slice(format!("GOTO=\"l{i}\"\n").as_bytes());
            }
            for i in 0..1 {
                v.extend_from_slice(format!("LABEL=\"l{i}\"\n").as_bytes());
            }
            while v.len() < 1 << 20 {
                v.extend_from_slice(b"#\n");
            }
            v
        }),
        ("gotos2", {
            let mut v = Vec::new();
            for _ in 0..1000 {
                v.extend_from_slice(b"SUBSYSTEM==\"usb\", GOTO=\"zz\"\n");
            }
            v.extend_from_slice(b"LABEL=\"zz\"\n");
            v
        }),
        ("labels", {
            let mut v = Vec::new();
            for i in 0..2000 {
                v.extend_from_slice(format!("LABEL=\"l{i}\"\n").as_bytes());
            }
            v
        }),
        ("too many rules", {
            let mut v = Vec::new();
            while v.len() < 1 << 20 {
                v.extend_from_slice(b"GOTO=\"x\"\n");
            }
            v
        }),
        ("empty lines", vec![b'\n'; 1 << 20]),
        ("comment utf8", {
            let mut v = b"#".to_vec();
            v.extend("é".repeat(500_000).as_bytes());
            v
        }),
        ("subsys alts", {
            let mut v = Vec::new();
            while v.len() < 1 << 20 {
                let mut s = String::from("SUBSYSTEM!=\"");
                let mut i = 0;
                while s.len() < 3900 {
                    s.push_str(&format!("s{i}|"));
                    i += 1;
                }
                s.push_str("usb\", GOTO=\"e\"\n");
                v.extend_from_slice(s.as_bytes());
            }
            v.extend_from_slice(b"LABEL=\"e\"\n");
            v
        }),
    ];
    for (l, b) in mk {
        let t = Instant::now();
        let v = rules::vet("x.rules", &b, &Policy::default());
        println!(
            "perf {l}: {} bytes, {:?}, install={} findings={}",
            b.len(),
            t.elapsed(),
            v.install.is_some(),
            v.findings.len()
        );
    }
}
