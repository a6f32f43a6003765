//! The host layer: inotify, file I/O and child processes. Thin: it performs
//! what the core decides and holds no policy. Every host path it touches is
//! passed in from the config, so tests run against temp dirs.

pub(crate) mod actions;
pub(crate) mod child;
pub(crate) mod clock;
pub(crate) mod dest;
pub(crate) mod feed;
pub(crate) mod fsx;
pub(crate) mod gendir;
pub(crate) mod haproxy;
pub(crate) mod heap;
pub(crate) mod hotplug;
pub(crate) mod http;
pub(crate) mod lease;
pub(crate) mod notify;
pub(crate) mod nss;
pub(crate) mod preflight;
pub(crate) mod socket;
pub(crate) mod source;
pub(crate) mod state;
pub(crate) mod targets;
pub(crate) mod tls_probe;
pub(crate) mod usb;
pub(crate) mod verified;
pub(crate) mod watch;
