//! The host layer: inotify, file I/O and child processes. Thin: it performs
//! what the core decides and holds no policy. Every host path it touches is
//! passed in from the config, so tests run against temp dirs.

pub mod actions;
pub mod child;
pub mod clock;
pub mod dest;
pub mod fsx;
pub mod gendir;
pub mod hotplug;
pub mod notify;
pub mod nss;
pub mod preflight;
pub mod socket;
pub mod source;
pub mod state;
pub mod targets;
pub mod usb;
pub mod watch;
