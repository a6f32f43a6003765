//! Logging setup: one line per decision. Under systemd (`JOURNAL_STREAM`
//! set) events go to journald natively, with their fields as journal fields
//! (`BRIDGE=`, `FILE=`, `ACTION=`, `RESULT=`, `RULE=`), so
//! `journalctl BRIDGE=nut-udev` works; otherwise (or if journald cannot be
//! reached) plain lines go to stderr showing only the message (the fields
//! repeat what it says), without timestamps under systemd since journald adds
//! its own. Error events are counted for `hostbridge status`.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Environment variable holding a tracing filter (e.g. `debug`, `hostbridge=debug`).
pub const LOG_ENV: &str = "HOSTBRIDGE_LOG";

static ERRORS: AtomicU64 = AtomicU64::new(0);

/// Error events logged since start.
pub fn errors_logged() -> u64 {
    ERRORS.load(Ordering::Relaxed)
}

/// `s` with every control character (newline, ESC, CR, DEL …) written as a
/// visible escape, so text that came from a container can neither start a
/// forged log line nor drive the terminal.
pub fn escape_for_terminal(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

struct CountErrors;

impl<S: Subscriber> Layer<S> for CountErrors {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        if *event.metadata().level() == Level::ERROR {
            ERRORS.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Installs the global subscriber. `verbose` raises the default level to debug.
pub fn init(verbose: bool) {
    let default = if verbose { "debug" } else { "info" };
    let filter = EnvFilter::try_from_env(LOG_ENV).unwrap_or_else(|_| EnvFilter::new(default));
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(CountErrors);
    // A second init (tests) keeps the first subscriber, hence the `let _`.
    if journal && let Ok(layer) = tracing_journald::layer() {
        // No `F_` prefix (tracing-journald's default): the fields are
        // `BRIDGE=`, `FILE=`, … as documented; none is a journald name.
        // A new field must not be one either (`priority`, `unit`, `target`,
        // `errno`, `message`, …): it would be taken for journald's own.
        let layer = layer
            .with_syslog_identifier("hostbridge".into())
            .with_field_prefix(None);
        let _ = registry.with(layer).try_init();
        return;
    }
    let message_only = tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        if field.name() == "message" {
            write!(w, "{value:?}")
        } else {
            Ok(())
        }
    });
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .fmt_fields(message_only)
        .with_ansi(!journal && std::io::stderr().is_terminal());
    let _ = if journal {
        registry.with(fmt.without_time()).try_init()
    } else {
        registry.with(fmt).try_init()
    };
}
