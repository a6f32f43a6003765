//! hostbridge: a small privileged daemon that carries files from container
//! export dirs to host dirs (udev rules into `/run/udev/rules.d`), waiting for
//! writes to settle, installing atomically, and running host actions.
//!
//! Layout: [`core`] is pure (settle machine, planner, name rules); `host` is
//! the thin I/O layer; `sync` and `daemon` glue them; [`cmd`] is the
//! command line.

#![warn(missing_docs)]

pub(crate) mod act;
pub mod cmd;
pub(crate) mod config;
pub mod core;
pub(crate) mod daemon;
pub(crate) mod host;
pub(crate) mod logging;

pub(crate) mod sync;
