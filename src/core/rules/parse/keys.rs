//! udevd's per-key checks (udev-rules.c `parse_token`) as a table: which
//! `{attribute}` each key takes, which operators, and which operators udevd
//! silently reads as another. Pure.

use super::{Key, Op, RawToken, err, parse_mode, warn};
use crate::core::rules::Finding;

/// What a key accepts as its `{attribute}`.
#[derive(Debug, Clone, Copy)]
enum AttrRule {
    /// None at all.
    Absent,
    /// A non-empty one.
    Required,
    /// One of these.
    OneOf(&'static [&'static str]),
    /// None, or one of these.
    AbsentOr(&'static [&'static str]),
    /// None, empty, or an octal mode (TEST).
    OctalMode,
}

/// Which operators a key takes.
#[derive(Debug, Clone, Copy)]
enum OpRule {
    /// `==` and `!=` only.
    Match,
    /// Any but `-=`.
    NotRemove,
    /// An assignment other than `-=`.
    Assignment,
    /// `=` only.
    AssignOnly,
    /// Any.
    Any,
}

/// One key's row of the table.
#[derive(Debug, Clone, Copy)]
struct Spec {
    attr: AttrRule,
    ops: OpRule,
    /// Operators udevd reads as `=`, with a warning.
    assumed_assign: &'static [Op],
    /// Any assignment is read as `==`, silently (PROGRAM, IMPORT).
    assign_is_match: bool,
    /// The operator is checked before the attribute (RUN), so a line wrong
    /// in both is reported the way udevd reports it.
    op_first: bool,
}

const fn spec(attr: AttrRule, ops: OpRule) -> Spec {
    Spec {
        attr,
        ops,
        assumed_assign: &[],
        assign_is_match: false,
        op_first: false,
    }
}

/// The row for `key`.
fn row(key: Key) -> Spec {
    use AttrRule::*;
    use Key::*;
    match key {
        Action | Devpath | Kernel | Subsystem | Driver | Kernels | Subsystems | Drivers | Tags
        | Result => spec(Absent, OpRule::Match),
        Symlink => spec(Absent, OpRule::Any),
        Name => Spec {
            assumed_assign: &[Op::Add],
            ..spec(Absent, OpRule::NotRemove)
        },
        Env => Spec {
            assumed_assign: &[Op::AssignFinal],
            ..spec(Required, OpRule::NotRemove)
        },
        Const => spec(OneOf(&["arch", "virt"]), OpRule::Match),
        Tag => Spec {
            assumed_assign: &[Op::AssignFinal],
            ..spec(Absent, OpRule::Any)
        },
        Attr | Sysctl => Spec {
            assumed_assign: &[Op::Add, Op::AssignFinal],
            ..spec(Required, OpRule::NotRemove)
        },
        Attrs => spec(Required, OpRule::Match),
        Test => spec(OctalMode, OpRule::Match),
        Program => Spec {
            assign_is_match: true,
            ..spec(Absent, OpRule::NotRemove)
        },
        Import => Spec {
            assign_is_match: true,
            ..spec(
                OneOf(&["file", "program", "builtin", "db", "cmdline", "parent"]),
                OpRule::NotRemove,
            )
        },
        Options => spec(Absent, OpRule::Assignment),
        Owner | Group | Mode => Spec {
            assumed_assign: &[Op::Add],
            ..spec(Absent, OpRule::Assignment)
        },
        Seclabel => spec(Required, OpRule::Assignment),
        Run => Spec {
            op_first: true,
            ..spec(AbsentOr(&["program", "builtin"]), OpRule::Assignment)
        },
        Goto | Label => spec(Absent, OpRule::AssignOnly),
    }
}

/// Where a token sits, for findings.
#[derive(Debug, Clone, Copy)]
pub(super) struct At {
    pub(super) line: u32,
    pub(super) column: u32,
}

/// Checks `t` against its key's row: `Err` when udevd drops the line,
/// otherwise the operator udevd goes on with (a warning when it is not the
/// one written).
pub(super) fn check(
    key: Key,
    t: &RawToken,
    at: At,
    findings: &mut Vec<Finding>,
) -> Result<Op, Finding> {
    let row = row(key);
    if row.op_first {
        check_op(row.ops, t, at)?;
        check_attr(row.attr, t, at)?;
    } else {
        check_attr(row.attr, t, at)?;
        check_op(row.ops, t, at)?;
    }
    if row.assumed_assign.contains(&t.op) {
        findings.push(warn(
            at.line,
            at.column,
            "operator-assumed",
            format!(
                "{} does not take '{}'; udevd assumes '='",
                t.key,
                t.op.as_str()
            ),
        ));
        return Ok(Op::Assign);
    }
    if row.assign_is_match && !t.op.is_match() {
        return Ok(Op::Match);
    }
    Ok(t.op)
}

fn check_attr(rule: AttrRule, t: &RawToken, at: At) -> Result<(), Finding> {
    let attr = t.attr.as_deref();
    let ok = match rule {
        AttrRule::Absent => attr.is_none(),
        AttrRule::Required => attr.is_some_and(|a| !a.is_empty()),
        AttrRule::OneOf(names) => attr.is_some_and(|a| names.contains(&a)),
        AttrRule::AbsentOr(names) => attr.is_none_or(|a| names.contains(&a)),
        AttrRule::OctalMode => match attr.filter(|a| !a.is_empty()) {
            Some(m) if parse_mode(m).is_none() => {
                return Err(err(
                    at.line,
                    at.column,
                    "invalid-attr",
                    format!("TEST{{{m}}} is not an octal mode; udevd drops this line"),
                ));
            }
            _ => true,
        },
    };
    if ok {
        return Ok(());
    }
    Err(err(
        at.line,
        at.column,
        "invalid-attr",
        format!(
            "{} has an invalid or missing {{attribute}}; udevd drops this line",
            t.key
        ),
    ))
}

fn check_op(rule: OpRule, t: &RawToken, at: At) -> Result<(), Finding> {
    let op = t.op;
    let ok = match rule {
        OpRule::Match => op.is_match(),
        OpRule::NotRemove => op != Op::Remove,
        OpRule::Assignment => !op.is_match() && op != Op::Remove,
        OpRule::AssignOnly => op == Op::Assign,
        OpRule::Any => true,
    };
    if ok {
        return Ok(());
    }
    Err(err(
        at.line,
        at.column,
        "invalid-operator",
        format!(
            "{} does not take '{}'; udevd drops this line",
            t.key,
            op.as_str()
        ),
    ))
}
