//! A bridge's `then:` entries, from what the file says to the typed
//! [`Action`]s: each one's settings checked and defaulted. Pure.

use super::model::*;
use super::raw::RawAction;

pub(super) fn action(raw: RawAction) -> Result<Action, String> {
    Ok(match raw {
        RawAction::UdevReload => Action::UdevReload,
        RawAction::Signal(s) => {
            let target = match (s.pidfile, s.process, s.unit, s.container) {
                (Some(_), None, None, None) => return Err(
                    "signal with a pidfile needs process: too (the program the pid must be); a pid file alone could name any process".into()
                ),
                (Some(p), Some(process), None, None) => Target::Pidfile { path: p.0, process: process.0 },
                (None, Some(p), None, None) => Target::Process(p.0),
                (None, None, Some(u), None) => Target::Unit(u.0),
                (None, None, None, Some(c)) => Target::Container(c.0),
                _ => return Err("signal needs exactly one of pidfile (with process), process, unit or container".into()),
            };
            Action::Signal {
                target,
                signal: s.signal.0,
            }
        }
        RawAction::RestartUnit(u) => Action::RestartUnit(u.0),
        RawAction::UsbCheck(u) => {
            let expect: Vec<String> = u
                .expect
                .into_iter()
                .map(|t| t.0.to_ascii_lowercase())
                .collect();
            if !u.on_replug.is_empty() && expect.is_empty() {
                return Err("usb-check: on_replug needs expect: (the devices whose re-enumeration it acts on)".into());
            }
            let on_replug = service_actions(u.on_replug, "usb-check: on_replug")?;
            Action::UsbCheck {
                user: u.user.map_or_else(|| "nut".into(), |t| t.0),
                expect,
                probe: u.probe.unwrap_or(false),
                on_replug,
            }
        }
        RawAction::ReloadUnit(u) => Action::ReloadUnit(u.0),
        RawAction::HaproxyCert(h) => Action::HaproxyCert {
            socket: h.socket.0,
            cert: h.cert.0,
            timeout: h.timeout.map_or(DEFAULT_HTTP_TIMEOUT, |d| d.0),
        },
        RawAction::Http(h) => {
            let parsed =
                crate::core::http::Url::parse(&h.url.0).map_err(|e| format!("http: {e}"))?;
            let method = h.method.map_or_else(|| "POST".to_string(), |m| m.0);
            if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(format!(
                    "http: method {method:?} is not an HTTP method (POST, PUT, GET, …)"
                ));
            }
            let expect_status = h.expect_status.unwrap_or(200);
            if !(100..600).contains(&expect_status) {
                return Err(format!(
                    "http: expect_status {expect_status} is not an HTTP status"
                ));
            }
            Action::Http(HttpAction {
                url: h.url.0,
                parsed,
                socket: h.socket.map(|s| s.0),
                method,
                expect_status,
                timeout: h.timeout.map_or(DEFAULT_HTTP_TIMEOUT, |d| d.0),
            })
        }
        RawAction::Exec(e) => {
            if e.argv.first().is_none_or(|p| !p.starts_with('/')) {
                return Err("exec argv must start with an absolute program path".into());
            }
            Action::Exec {
                argv: e.argv,
                timeout: e.timeout.map_or(DEFAULT_EXEC_TIMEOUT, |d| d.0),
            }
        }
        RawAction::UdevTrigger(t) => Action::UdevTrigger(Trigger {
            subsystem: t.subsystem.map(|s| s.0),
            action: t.action.map_or("change", |a| a.as_str()),
            attrs: t.attrs.into_iter().map(|(k, v)| (k.0, v.0)).collect(),
            settle_timeout: t.settle_timeout.map_or(DEFAULT_SETTLE_TIMEOUT, |d| d.0),
        }),
    })
}

/// A nested list of actions that act on a service (`on_replug`,
/// `escalate`): restart-unit, reload-unit, signal, http or exec; `what` names the
/// list in errors.
pub(super) fn service_actions(raws: Vec<RawAction>, what: &str) -> Result<Vec<Action>, String> {
    raws.into_iter()
        .map(|raw| match action(raw)? {
            a @ (Action::RestartUnit(_)
            | Action::ReloadUnit(_)
            | Action::Signal { .. }
            | Action::Http(_)
            | Action::HaproxyCert { .. }
            | Action::Exec { .. }) => Ok(a),
            a => Err(format!(
                "{what} may restart-unit, reload-unit, signal, http, haproxy-cert or exec, not {}",
                a.label()
            )),
        })
        .collect()
}
