//! `hostbridge usb`: the USB devices NUT needs, as the `usb-check` action
//! sees them, printed as a table or JSON. Shell code.

use std::path::PathBuf;

use crate::config::Config;

use super::args::{EXIT_FAILURE, EXIT_OK};

/// What `hostbridge usb` was asked.
pub(crate) struct UsbArgs<'a> {
    /// The user that must be able to open the devices.
    pub(crate) user: &'a str,
    /// VID:PID pairs that must be present.
    pub(crate) expect: &'a [String],
    /// JSON instead of the table.
    pub(crate) json: bool,
    /// Other sysfs and /dev roots (tests, chroots).
    pub(crate) roots: (Option<&'a PathBuf>, Option<&'a PathBuf>),
    /// Also open each node as the user.
    pub(crate) probe: bool,
}

/// Runs `usb`; returns the exit code.
pub(crate) fn run(mut config: Config, args: &UsbArgs<'_>) -> u8 {
    if let Some(p) = args.roots.0 {
        config.sysfs_root = p.clone();
    }
    if let Some(p) = args.roots.1 {
        config.dev_root = p.clone();
    }
    let expect: Vec<String> = args.expect.iter().map(|e| e.to_ascii_lowercase()).collect();
    // Say what could not be seen, rather than an empty table.
    let bus = config.sysfs_root.join("bus/usb/devices");
    if !bus.is_dir() {
        let why = format!(
            "{} does not exist: no USB bus is visible here (no USB support, or sysfs is not mounted); nothing could be checked",
            bus.display()
        );
        return failed(args.json, &why);
    }
    if !config.udev_run_dir.join("control").exists() {
        eprintln!(
            "hostbridge usb: warning: udevd is not running here (no {}): no rule is applied to a node; the nodes are shown as they are",
            config.udev_run_dir.join("control").display()
        );
    }
    match crate::act::usb::check(&config, args.user, &expect, args.probe) {
        Ok(r) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
            } else {
                print!("{}", crate::act::usb::render(&r));
                if r.devices.is_empty() {
                    println!("(no USB device is plugged in under {})", bus.display());
                }
            }
            if r.ok(&expect) { EXIT_OK } else { EXIT_FAILURE }
        }
        Err(e) => failed(args.json, &format!("{e:#}")),
    }
}

/// Says why nothing could be checked: on stderr, and with `--json` also as
/// `{"error": …}` on stdout, so a script reading it gets JSON either way.
fn failed(json: bool, why: &str) -> u8 {
    eprintln!("hostbridge usb: {why}");
    if json {
        println!("{}", serde_json::json!({ "error": why }));
    }
    EXIT_FAILURE
}
