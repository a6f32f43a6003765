//! Fuzzes the udev rules parser and the policy: any bytes must parse without
//! panicking, and every finding and token must point inside the input.

#![no_main]

use hostbridge::core::rules::{self, policy::Policy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (file, findings) = rules::lint(data, &Policy::default());
    let lines = data.split(|&b| b == b'\n').count() as u32;
    for f in &findings {
        assert!(f.line <= lines, "finding past the end: {f:?}");
    }
    for rule in &file.rules {
        for t in &rule.tokens {
            assert!(t.line >= 1 && t.line <= lines && t.column >= 1, "token out of range: {t:?}");
        }
        if let Some((_, target)) = &rule.goto {
            assert!(*target < file.rules.len());
        }
    }
});
