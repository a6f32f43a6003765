//! Logging setup: tracing to stderr, one line per decision. Under systemd
//! (`JOURNAL_STREAM` set) timestamps are left out, since journald adds its own.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Environment variable holding a tracing filter (e.g. `debug`, `hostbridge=debug`).
pub const LOG_ENV: &str = "HOSTBRIDGE_LOG";

/// Installs the global subscriber. `verbose` raises the default level to debug.
pub fn init(verbose: bool) {
    let default = if verbose { "debug" } else { "info" };
    let filter = EnvFilter::try_from_env(LOG_ENV).unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal());
    let result = if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder.without_time().with_ansi(false).try_init()
    } else {
        builder.try_init()
    };
    // A second init (tests) keeps the first subscriber.
    drop(result);
}
