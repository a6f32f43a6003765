//! Which actions run, for whom, and when: the grouping of owed `then:`
//! actions across bridges and the rule for when they may start. Pure,
//! generic over the action and the bridge id.

use std::collections::BTreeSet;

/// Merges the action lists of several bridges (given in the order they are
/// to be taken) into each distinct action once, in the order first listed,
/// with every bridge that names it.
pub(crate) fn merge<A: PartialEq + Clone, I: Copy>(lists: &[(I, &[A])]) -> Vec<(A, Vec<I>)> {
    let mut plan: Vec<(A, Vec<I>)> = Vec::new();
    for (who, actions) in lists {
        for a in *actions {
            match plan.iter_mut().find(|(x, _)| x == a) {
                Some((_, whom)) => whom.push(*who),
                None => plan.push((a.clone(), vec![*who])),
            }
        }
    }
    plan
}

/// Splits the owed bridges into those whose actions may run now and those
/// that wait: a bridge waits while another bridge that is still collecting
/// or syncing changes (and owes nothing yet) names one of its actions, so a
/// target several bridges share is acted on once per burst; but not for
/// ever: one that has waited its fill (`waited_enough`) runs, so a peer
/// that never stops changing cannot starve it. `actions_of` gives an owed
/// bridge's actions; `busy` lists the busy bridges' actions.
pub(crate) fn ready_now<A: PartialEq, T>(
    owed: Vec<T>,
    actions_of: impl Fn(&T) -> &[A],
    waited_enough: impl Fn(&T) -> bool,
    busy: &[&[A]],
) -> (Vec<T>, Vec<T>) {
    owed.into_iter().partition(|t| {
        let actions = actions_of(t);
        waited_enough(t) || !busy.iter().any(|b| b.iter().any(|a| actions.contains(a)))
    })
}

/// Splits the bridges whose actions may run into groups that run at once,
/// each as one task (one hung action holds up only its own target): bridges
/// whose actions share a target (`same_target`) are in one group, where
/// each distinct action runs once ([`merge`]); a bridge sharing a target
/// with a group still running (`running`) waits for it.
pub(crate) fn start_groups<A, T>(
    ready: Vec<T>,
    actions_of: impl Fn(&T) -> &[A],
    same_target: impl Fn(&A, &A) -> bool,
    running: &[&[A]],
) -> (Vec<Vec<T>>, Vec<T>) {
    let shares = |x: &[A], y: &[A]| x.iter().any(|a| y.iter().any(|b| same_target(a, b)));
    let (wait, free): (Vec<T>, Vec<T>) = ready
        .into_iter()
        .partition(|t| running.iter().any(|r| shares(actions_of(t), r)));
    let mut groups: Vec<Vec<T>> = Vec::new();
    for t in free {
        let (mut joined, rest): (Vec<Vec<T>>, Vec<Vec<T>>) = groups
            .into_iter()
            .partition(|g| g.iter().any(|u| shares(actions_of(u), actions_of(&t))));
        let mut group: Vec<T> = joined.drain(..).flatten().collect();
        group.push(t);
        groups = rest;
        groups.push(group);
    }
    (groups, wait)
}

/// What a bridge's `then:` actions are owed once its sync put files in
/// place: `before` is what was owed (whether, and for which names), `now`
/// the names the sync installed, replaced or pruned. The actions stay owed
/// if they were (an earlier run failed) and become owed only if a file
/// changed: a sync whose every operation failed changed nothing, so
/// nothing runs. The names they are owed for (their `HOSTBRIDGE_CHANGED`)
/// are the earlier ones and these, merged, so a retry still names what
/// changed; a bridge without actions keeps none.
pub(crate) fn owed_after(
    has_actions: bool,
    before: (bool, &BTreeSet<String>),
    now: &[String],
) -> (bool, BTreeSet<String>) {
    let (was_owed, names) = before;
    let mut owed_for = BTreeSet::new();
    if has_actions {
        owed_for.clone_from(names);
        owed_for.extend(now.iter().cloned());
    }
    (was_owed || !now.is_empty(), owed_for)
}

/// Where a bridge stands, for scheduling actions and USB re-checks: one
/// answer to "is it busy" for the whole daemon.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Activity {
    /// A settle window is open.
    pub(crate) window_open: bool,
    /// Its sync is under way: its files, then its actions.
    pub(crate) syncing: bool,
    /// Its actions wait to run.
    pub(crate) owes_actions: bool,
}

impl Activity {
    /// Its files may still change and it owes no actions yet: other
    /// bridges that share an action target wait for it ([`ready_now`]).
    pub(crate) fn collecting(self) -> bool {
        (self.window_open || self.syncing) && !self.owes_actions
    }

    /// A USB re-check now would race its sync or its actions (which end
    /// with their own usb-check).
    pub(crate) fn busy(self) -> bool {
        self.syncing || self.owes_actions
    }
}

/// Longest `HOSTBRIDGE_CHANGED` value an `exec` action gets: far below the
/// kernel's 128 KiB limit on one environment string (past it, `execve`
/// fails with E2BIG and the action would never run), leaving the rest of
/// the environment room. The full list is in `HOSTBRIDGE_CHANGED_FILE`.
pub(crate) const CHANGED_ENV_MAX: usize = 32 * 1024;

/// The `HOSTBRIDGE_CHANGED` value for `names`: space-separated, and when
/// that would be longer than `max` bytes, cut after the last name that
/// fits with the marker ` +N more` (N names left out) still within `max`
/// (only the marker, `+N more`, when not even one name fits with it).
pub(crate) fn changed_env(names: &[String], max: usize) -> String {
    let full: usize = names
        .iter()
        .map(|n| n.len() + 1)
        .sum::<usize>()
        .saturating_sub(1);
    if full <= max {
        return names.join(" ");
    }
    let mut out = String::new();
    for (i, name) in names.iter().enumerate() {
        let marker = format!(" +{} more", names.len() - i);
        let sep = usize::from(!out.is_empty());
        if out.len() + sep + name.len() + format!(" +{} more", names.len() - i - 1).len() > max {
            out.push_str(if out.is_empty() {
                marker.trim_start()
            } else {
                &marker
            });
            return out;
        }
        if sep == 1 {
            out.push(' ');
        }
        out.push_str(name);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (ready bridges with their targets, targets running) → the groups
    /// started (bridge ids) and who waits. 'u' stands for udevd: every
    /// udev action is one target.
    #[test]
    fn start_groups_table() {
        type Row = (
            &'static [(u8, &'static str)],
            &'static [&'static str],
            &'static [&'static [u8]],
            &'static [u8],
        );
        let table: &[Row] = &[
            (&[], &[], &[], &[]),
            // Different targets: one group each, all at once.
            (&[(1, "a"), (2, "b")], &[], &[&[1], &[2]], &[]),
            // A shared target: one group.
            (&[(1, "ab"), (2, "b"), (3, "c")], &[], &[&[1, 2], &[3]], &[]),
            // A bridge that links two groups joins them.
            (&[(1, "a"), (2, "b"), (3, "ab")], &[], &[&[1, 2, 3]], &[]),
            // A target already running: that bridge waits, the others go.
            (&[(1, "a"), (2, "b")], &["b"], &[&[1]], &[2]),
            (&[(1, "u")], &["cu"], &[], &[1]),
        ];
        for (i, (ready, running, groups, wait)) in table.iter().enumerate() {
            let running: Vec<Vec<char>> = running.iter().map(|r| r.chars().collect()).collect();
            let running: Vec<&[char]> = running.iter().map(Vec::as_slice).collect();
            let ready: Vec<(u8, Vec<char>)> = ready
                .iter()
                .map(|(id, t)| (*id, t.chars().collect()))
                .collect();
            let (g, w) = start_groups(ready, |(_, a)| a.as_slice(), |a, b| a == b, &running);
            let g: Vec<Vec<u8>> = g
                .iter()
                .map(|g| g.iter().map(|(id, _)| *id).collect())
                .collect();
            let w: Vec<u8> = w.iter().map(|(id, _)| *id).collect();
            assert_eq!(
                g,
                groups.iter().map(|g| g.to_vec()).collect::<Vec<_>>(),
                "row {i}"
            );
            assert_eq!(w, wait.to_vec(), "row {i}");
        }
    }

    #[test]
    fn merge_keeps_first_order_and_lists_every_bridge() {
        let a: &[&str] = &["reload", "trigger"];
        let b: &[&str] = &["trigger", "hup"];
        let c: &[&str] = &[];
        let plan = merge(&[(0, a), (1, b), (2, c)]);
        assert_eq!(
            plan,
            [
                ("reload", vec![0]),
                ("trigger", vec![0, 1]),
                ("hup", vec![1])
            ]
        );
        assert!(merge::<&str, u8>(&[]).is_empty());
    }

    #[test]
    fn ready_now_table() {
        let reload: &[&str] = &["reload"];
        let hup: &[&str] = &["hup"];
        let both: &[&str] = &["reload", "hup"];
        // (owed, busy) -> (ready, wait); bridge 9 has waited its fill.
        type Case<'a> = (
            Vec<(u8, &'a [&'a str])>,
            Vec<&'a [&'a str]>,
            Vec<u8>,
            Vec<u8>,
        );
        let cases: Vec<Case> = vec![
            (vec![(1, reload)], vec![], vec![1], vec![]),
            (vec![(1, reload)], vec![reload], vec![], vec![1]),
            (vec![(1, reload), (2, hup)], vec![reload], vec![2], vec![1]),
            (vec![(1, both)], vec![hup], vec![], vec![1]),
            (vec![(1, hup)], vec![&[]], vec![1], vec![]),
            (
                vec![(1, reload), (9, reload)],
                vec![reload],
                vec![9],
                vec![1],
            ),
        ];
        for (owed, busy, ready, wait) in cases {
            let (r, w) = ready_now(owed.clone(), |(_, a)| a, |(id, _)| *id == 9, &busy);
            let ids = |v: Vec<(u8, &[&str])>| v.into_iter().map(|(i, _)| i).collect::<Vec<_>>();
            assert_eq!((ids(r), ids(w)), (ready, wait), "{owed:?} {busy:?}");
        }
    }

    #[test]
    fn owed_after_table() {
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // (has actions, was owed, owed for, changed now) -> (owed, owed for)
        type Row<'a> = (
            bool,
            bool,
            &'a [&'a str],
            &'a [&'a str],
            bool,
            &'a [&'a str],
        );
        let table: [Row; 6] = [
            // Nothing changed (or every operation failed), nothing owed:
            // nothing runs.
            (true, false, &[], &[], false, &[]),
            (true, false, &[], &["a"], true, &["a"]),
            // A failed run is owed again, for the names it had.
            (true, true, &["a"], &[], true, &["a"]),
            // … merged with the new ones.
            (true, true, &["a", "c"], &["b", "a"], true, &["a", "b", "c"]),
            // A bridge without actions keeps no names.
            (false, false, &[], &["a"], true, &[]),
            (false, true, &["a"], &["b"], true, &[]),
        ];
        for (has, was, before, now, owed, owed_for) in table {
            let before = set(before);
            assert_eq!(
                owed_after(has, (was, &before), &names(now)),
                (owed, set(owed_for)),
                "{has} {was} {before:?} {now:?}"
            );
        }
    }

    #[test]
    fn activity_says_collecting_and_busy() {
        // (window open, syncing, owes actions) → (collecting, busy)
        let table = [
            ((false, false, false), (false, false)),
            ((true, false, false), (true, false)),
            ((false, true, false), (true, true)),
            ((true, true, false), (true, true)),
            ((false, true, true), (false, true)),
            ((true, false, true), (false, true)),
            ((false, false, true), (false, true)),
        ];
        for ((window_open, syncing, owes_actions), want) in table {
            let a = Activity {
                window_open,
                syncing,
                owes_actions,
            };
            assert_eq!((a.collecting(), a.busy()), want, "{a:?}");
        }
    }

    #[test]
    fn the_changed_env_is_bounded_and_says_how_many_it_left_out() {
        let names = |n: usize| (0..n).map(|i| format!("{i:05}.rules")).collect::<Vec<_>>();
        // (names, max, want)
        assert_eq!(
            changed_env(&names(3), 100),
            "00000.rules 00001.rules 00002.rules"
        );
        assert_eq!(changed_env(&[], 10), "");
        // 3 names are 35 bytes: at 30, two fit with " +1 more" (31)? No:
        // "00000.rules 00001.rules" (23) + " +1 more" (8) = 31 > 30.
        assert_eq!(changed_env(&names(3), 30), "00000.rules +2 more");
        assert_eq!(
            changed_env(&names(3), 31),
            "00000.rules 00001.rules +1 more"
        );
        assert_eq!(changed_env(&names(3), 5), "+3 more");
        for n in [7_000, 20_000] {
            let v = changed_env(&names(n), CHANGED_ENV_MAX);
            assert!(v.len() <= CHANGED_ENV_MAX, "{n}: {}", v.len());
            let (listed, more) = v.rsplit_once(" +").unwrap();
            let shown = listed.split(' ').count();
            assert_eq!(more, format!("{} more", n - shown));
        }
    }
}
