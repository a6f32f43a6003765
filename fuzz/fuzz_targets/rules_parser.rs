//! Fuzzes the udev rules readers, the policy and the canonical form: any
//! bytes must go through without panicking, every finding and token must
//! point inside the input, and the canonical form of an accepted file must
//! be accepted again and render to the same rules (a fixed point).

#![no_main]

use hostbridge::core::rules::{self, policy::Policy, policy::PolicyMode};
use libfuzzer_sys::fuzz_target;

fn body(b: &[u8]) -> Vec<&[u8]> {
    b.split(|&c| c == b'\n').filter(|l| !l.starts_with(b"#")).collect()
}

fuzz_target!(|data: &[u8]| {
    let lines = data.split(|&b| b == b'\n').count() as u32;
    for mode in [PolicyMode::PermissionsOnly, PolicyMode::Trusted] {
        let policy = Policy {
            mode,
            ..Policy::default()
        };
        let (file, findings) = rules::lint(data, &policy);
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
    }
    let policy = Policy::default();
    if let Some(canon) = rules::vet("f.rules", data, &policy).install {
        let again = rules::vet("f.rules", &canon, &policy)
            .install
            .expect("the canonical form is accepted");
        assert_eq!(body(&canon), body(&again), "the canonical form is a fixed point");
    }
});
