//! Child processes start without the service manager's variables. Host
//! layer.
//!
//! Under systemd the daemon has `NOTIFY_SOCKET` and the watchdog variables in
//! its environment; a child that inherits them (udevadm, systemctl, an `exec`
//! action's script calling `systemd-notify`) could speak for hostbridge, and
//! systemd logs "Got notification message from PID …, but reception only
//! permitted for main PID" for every try.

use std::ffi::OsStr;

/// Variables of the service manager that children must not see.
const SERVICE_ONLY: [&str; 3] = ["NOTIFY_SOCKET", "WATCHDOG_PID", "WATCHDOG_USEC"];

/// `Command::new(program)` without the service-only variables.
pub(crate) fn command(program: impl AsRef<OsStr>) -> std::process::Command {
    let mut cmd = std::process::Command::new(program);
    for v in SERVICE_ONLY {
        cmd.env_remove(v);
    }
    cmd
}

#[cfg(test)]
mod tests {
    #[test]
    fn children_do_not_see_the_notify_socket() {
        let cmd = super::command("true");
        let removed: Vec<_> = cmd
            .get_envs()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        assert_eq!(removed, ["NOTIFY_SOCKET", "WATCHDOG_PID", "WATCHDOG_USEC"]);
    }
}
