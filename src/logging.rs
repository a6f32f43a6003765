//! Logging setup: one line per decision. Under systemd (`JOURNAL_STREAM`
//! set) events go to journald natively, with their fields as journal fields
//! (`BRIDGE=`, `FILE=`, `ACTION=`, `RESULT=`, `RULE=`), so
//! `journalctl BRIDGE=nut-udev` works; otherwise (or if journald cannot be
//! reached) plain lines go to stderr showing only the message (the fields
//! repeat what it says), without timestamps under systemd since journald adds
//! its own. Error events are counted for `hostbridge status`.
//!
//! Messages and fields carry text from containers (file names, rule text, a
//! child's stderr). Both writers pass every message and field value through
//! [`crate::core::text::escape`] on the way out, so no input can start a
//! forged log line or journal entry, nor drive a terminal, whatever the call
//! site forgot.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

use crate::core::text::escape;

/// Environment variable holding a tracing filter (e.g. `debug`, `hostbridge=debug`).
pub(crate) const LOG_ENV: &str = "HOSTBRIDGE_LOG";

/// journald's native protocol socket.
const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

static ERRORS: AtomicU64 = AtomicU64::new(0);

/// Error events logged since start.
pub(crate) fn errors_logged() -> u64 {
    ERRORS.load(Ordering::Relaxed)
}

/// `s` made safe to show on a terminal ([`crate::core::text::escape`]).
pub(crate) fn escape_for_terminal(s: &str) -> String {
    escape(s).into_owned()
}

struct CountErrors;

impl<S: Subscriber> Layer<S> for CountErrors {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        if *event.metadata().level() == Level::ERROR {
            ERRORS.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// An event's message and fields, each escaped.
#[derive(Default)]
struct Fields {
    message: String,
    fields: Vec<(&'static str, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, &format!("{value:?}"));
    }
}

impl Fields {
    fn put(&mut self, field: &Field, value: &str) {
        let value = escape(value).into_owned();
        if field.name() == "message" {
            self.message = value;
        } else {
            self.fields.push((field.name(), value));
        }
    }
}

/// Writes events to journald over its native protocol: `KEY=value` lines
/// in one datagram. Every value is escaped, so none holds a newline and
/// the simple form of the protocol is enough.
struct Journal {
    socket: UnixDatagram,
}

impl Journal {
    fn connect() -> Option<Journal> {
        let socket = UnixDatagram::unbound().ok()?;
        socket.connect(JOURNAL_SOCKET).ok()?;
        Some(Journal { socket })
    }
}

/// journald's PRIORITY for a tracing level.
fn priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// The journal field name for a tracing field: upper case, `[A-Z0-9_]`.
/// A new field must not be one of journald's own (`PRIORITY`, `MESSAGE`,
/// `UNIT`, `ERRNO`, …): it would be taken for journald's.
fn journal_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect::<String>()
        .trim_start_matches('_')
        .to_string()
}

/// The datagram for one event (pure).
fn journal_entry(level: Level, f: &Fields) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "PRIORITY={}", priority(level));
    out.push_str("SYSLOG_IDENTIFIER=hostbridge\n");
    let _ = writeln!(out, "MESSAGE={}", f.message);
    for (name, value) in &f.fields {
        let name = journal_name(name);
        if !name.is_empty() {
            let _ = writeln!(out, "{name}={value}");
        }
    }
    out
}

impl<S: Subscriber> Layer<S> for Journal {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut f = Fields::default();
        event.record(&mut f);
        let entry = journal_entry(*event.metadata().level(), &f);
        if self.socket.send(entry.as_bytes()).is_err() {
            // journald gone or the entry too big for a datagram: stderr is
            // the journal stream, so the message still gets there.
            eprintln!("{}", f.message);
        }
    }
}

/// Installs the global subscriber. `verbose` raises the default level to debug.
pub(crate) fn init(verbose: bool) {
    let default = if verbose { "debug" } else { "info" };
    // `level` or `target=level,…` (no span or field filters: their regex
    // engine would cost a daemon that idles on every host a fifth of a MB).
    let filter = std::env::var(LOG_ENV)
        .ok()
        .and_then(|v| v.parse::<Targets>().ok())
        .unwrap_or_else(|| default.parse().unwrap_or_default());
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(CountErrors);
    // A second init (tests) keeps the first subscriber, hence the `let _`.
    if journal && let Some(layer) = Journal::connect() {
        let _ = registry.with(layer).try_init();
        return;
    }
    let message_only = tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        if field.name() == "message" {
            write!(w, "{}", escape(&format!("{value:?}")))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_entries_hold_one_line_per_field() {
        let f = Fields {
            message: escape("nut: skipped x\nINFO installed fake").into_owned(),
            fields: vec![
                ("bridge", "nut".into()),
                ("file", escape("x\nMESSAGE=forged").into_owned()),
            ],
        };
        let entry = journal_entry(Level::WARN, &f);
        assert_eq!(
            entry,
            "PRIORITY=4\nSYSLOG_IDENTIFIER=hostbridge\nMESSAGE=nut: skipped x\\nINFO installed fake\nBRIDGE=nut\nFILE=x\\nMESSAGE=forged\n"
        );
        assert_eq!(journal_name("rule"), "RULE");
        assert_eq!(journal_name("_x-y"), "X_Y");
    }
}
