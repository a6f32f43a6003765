//! How much a source may export: a bridge's `max_files` and `max_bytes`,
//! and which files get a place when there are more. Pure.
//!
//! Files already installed claim their places first, so a flood of new
//! files never pushes out what is working; new files follow in name order,
//! so the same source always gives the same answer. A file past either
//! limit is not read at all (the cost of a flood is a directory listing).

use std::collections::BTreeSet;

/// A bridge's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Most files read from the source.
    pub(crate) max_files: usize,
    /// Most bytes read from the source, all files together.
    pub(crate) max_bytes: u64,
}

/// The order in which `names` claim the budget: the installed ones, then
/// the others, each by name.
pub(crate) fn claim_order<'a>(names: &'a [String], installed: &BTreeSet<String>) -> Vec<&'a str> {
    // One membership test a name, not one a comparison.
    let (mut first, mut rest): (Vec<&str>, Vec<&str>) = names
        .iter()
        .map(String::as_str)
        .partition(|n| installed.contains(*n));
    first.sort_unstable();
    rest.sort_unstable();
    first.append(&mut rest);
    first
}

/// A scan's running account against its [`Limits`].
#[derive(Debug, Clone)]
pub(crate) struct Budget {
    limits: Limits,
    files: usize,
    bytes: u64,
}

impl Budget {
    /// A fresh account.
    pub(crate) fn new(limits: Limits) -> Budget {
        Budget {
            limits,
            files: 0,
            bytes: 0,
        }
    }

    /// Takes the places of `files` files of `bytes` bytes in all, as an
    /// earlier sync recorded them (no reason is asked for: the caller takes
    /// the full way when they do not fit). The totals only grow, so the sums
    /// pass a limit exactly when taking the files one by one would. Nothing
    /// is taken when they do not fit.
    pub(crate) fn take_recorded(&mut self, files: usize, bytes: u64) -> bool {
        match (self.files.checked_add(files), self.bytes.checked_add(bytes)) {
            (Some(f), Some(b)) if f <= self.limits.max_files && b <= self.limits.max_bytes => {
                (self.files, self.bytes) = (f, b);
                true
            }
            _ => false,
        }
    }

    /// Takes a file's place; `Err(reason)` once `max_files` are taken.
    pub(crate) fn take_file(&mut self) -> Result<(), String> {
        if self.files >= self.limits.max_files {
            return Err(format!(
                "over the bridge's max_files limit of {}; not read (what is installed stays)",
                self.limits.max_files
            ));
        }
        self.files += 1;
        Ok(())
    }

    /// Takes `n` bytes for the file whose place was just taken;
    /// `Err(reason)` (and the place given back) when they would pass
    /// `max_bytes`.
    pub(crate) fn take_bytes(&mut self, n: u64) -> Result<(), String> {
        match self.bytes.checked_add(n) {
            Some(total) if total <= self.limits.max_bytes => {
                self.bytes = total;
                Ok(())
            }
            _ => {
                self.files = self.files.saturating_sub(1);
                Err(format!(
                    "would bring the source past the bridge's max_bytes limit of {} bytes ({} taken); not installed (what is installed stays)",
                    self.limits.max_bytes, self.bytes
                ))
            }
        }
    }

    /// Checks a file's size before it is read: `Err(reason)`, with its
    /// place given back, when `n` bytes cannot fit, so the read is skipped.
    /// ([`Budget::take_bytes`] still counts what was really read.)
    pub(crate) fn precheck_bytes(&mut self, n: u64) -> Result<(), String> {
        if self.bytes.saturating_add(n) <= self.limits.max_bytes {
            return Ok(());
        }
        self.files = self.files.saturating_sub(1);
        Err(format!(
            "would bring the source past the bridge's max_bytes limit of {} bytes ({} taken); not read (what is installed stays)",
            self.limits.max_bytes, self.bytes
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn installed_files_claim_first_then_names_in_order() {
        let all = names(&["c", "a", "z", "b"]);
        let installed: BTreeSet<String> = ["z".to_string(), "b".to_string()].into();
        assert_eq!(claim_order(&all, &installed), ["b", "z", "a", "c"]);
        assert_eq!(claim_order(&all, &BTreeSet::new()), ["a", "b", "c", "z"]);
    }

    /// Files taken as recorded sums fit exactly when taking them one by
    /// one (each file's place, then its bytes) would, from any start.
    #[test]
    fn recorded_sums_fit_exactly_when_one_by_one_would() {
        let limits = Limits {
            max_files: 3,
            max_bytes: 10,
        };
        for start in [(0, 0), (1, 4), (3, 0), (2, 10)] {
            for sizes in [
                &[][..],
                &[0],
                &[5, 5],
                &[5, 6],
                &[1, 1, 1],
                &[1, 1, 1, 0],
                &[u64::MAX],
            ] {
                let begun = |b: &mut Budget| (b.files, b.bytes) = start;
                let mut one = Budget::new(limits);
                begun(&mut one);
                let by_one = sizes
                    .iter()
                    .all(|&n| one.take_file().and_then(|()| one.take_bytes(n)).is_ok());
                let mut sum = Budget::new(limits);
                begun(&mut sum);
                let total = sizes.iter().try_fold(0u64, |t, &n| t.checked_add(n));
                let by_sum = total.is_some_and(|t| sum.take_recorded(sizes.len(), t));
                assert_eq!(by_sum, by_one, "{start:?} {sizes:?}");
                if by_sum {
                    assert_eq!((sum.files, sum.bytes), (one.files, one.bytes));
                }
            }
        }
    }

    #[test]
    fn files_and_bytes_are_bounded() {
        let mut b = Budget::new(Limits {
            max_files: 2,
            max_bytes: 10,
        });
        assert_eq!(b.take_file(), Ok(()));
        assert_eq!(b.take_bytes(6), Ok(()));
        assert_eq!(b.take_file(), Ok(()));
        // 6 + 5 > 10: refused before reading, and the place is free again.
        assert!(b.precheck_bytes(5).unwrap_err().contains("not read"));
        assert_eq!(b.take_file(), Ok(()));
        // Refused after reading too (a file that grew), place given back.
        assert!(
            b.take_bytes(5)
                .unwrap_err()
                .contains("max_bytes limit of 10")
        );
        assert_eq!(b.take_file(), Ok(()));
        assert_eq!(b.take_bytes(4), Ok(()));
        assert!(b.take_file().unwrap_err().contains("max_files limit of 2"));
        assert_eq!(b.precheck_bytes(0), Ok(()));
        assert!(b.take_bytes(u64::MAX).is_err());
        assert_eq!(
            b.take_file(),
            Ok(()),
            "the refused read gave its place back"
        );
    }
}
