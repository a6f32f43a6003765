//! The command line: one match from subcommand to the module that runs it.
//! `args` holds the clap definition and exit codes; every other module here
//! is one subcommand and imports only `args` (no cycle). Shell code.

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;

pub(crate) mod args;
pub(crate) mod check;
pub(crate) mod lint;
pub(crate) mod man;
pub(crate) mod status;
pub(crate) mod sync;
pub(crate) mod usb;
pub(crate) mod wait;

use args::{Cli, Command, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, RulesCommand, StatusFormat};
use args::{in_runtime, load_config, socket_path};

/// Parses `args`, sets up logging and runs the subcommand.
pub fn main<I: IntoIterator<Item = OsString>>(args: I) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { EXIT_OK });
        }
    };
    crate::logging::init(cli.verbose);
    ExitCode::from(dispatch(&cli))
}

/// Runs the subcommand; returns the exit code. Subcommands that need no
/// valid config (status, reload, lint without `--bridge`, man, completions,
/// probe-open) never load it. One match, one arm per subcommand: long
/// because there are that many subcommands.
fn dispatch(cli: &Cli) -> u8 {
    let with_config = |run: &dyn Fn(crate::config::Config) -> u8| match load_config(cli) {
        Ok(c) => run(c),
        Err(code) => code,
    };
    match &cli.command {
        Command::Rules(RulesCommand::Lint(a)) if a.bridge.is_none() => {
            // Without --bridge the config is not used: say so when it has
            // rules bridges, whose verdicts may differ (their allow lists).
            if let Ok(c) = crate::config::load(&cli.config, &args::dropin_dirs(cli)) {
                let rules: Vec<&str> = c
                    .bridges
                    .iter()
                    .filter(|b| b.rules.is_some())
                    .map(|b| b.name.as_str())
                    .collect();
                if !rules.is_empty() {
                    eprintln!(
                        "hostbridge rules lint: note: checked with the default policy, not {}'s; `--bridge NAME` gives the daemon's verdict for that bridge ({})",
                        cli.config.display(),
                        rules.join(", ")
                    );
                }
            }
            lint::run(a, None)
        }
        Command::Rules(RulesCommand::Lint(a)) => with_config(&|c| lint::run(a, Some(&c))),
        Command::Completions { shell } => man::finish(man::completions(*shell)),
        Command::Man { out_dir: Some(dir) } => man::finish(man::write_pages(dir)),
        Command::Man { out_dir: None } => {
            man::finish(man::main_page(&mut std::io::stdout().lock()))
        }
        Command::Status {
            json,
            metrics,
            bridge,
            socket,
        } => {
            let format = if *json {
                StatusFormat::Json
            } else if *metrics {
                StatusFormat::Metrics
            } else {
                StatusFormat::Text
            };
            status::status(&socket_path(cli, socket), format, bridge.as_deref())
        }
        Command::Reload { socket } => status::reload(&socket_path(cli, socket)),
        Command::Wait {
            bridge,
            usb,
            timeout,
            socket,
            image,
            user,
        } => {
            let config = crate::config::load(&cli.config, &args::dropin_dirs(cli)).ok();
            let a = wait::WaitArgs {
                bridge,
                usb,
                timeout: *timeout,
                inside: image.as_deref().map(|image| wait::Inside {
                    image,
                    user,
                    dev_root: config
                        .as_ref()
                        .map_or_else(|| "/dev".into(), |c| c.dev_root.clone()),
                }),
            };
            wait::run(&socket_path(cli, socket), &a)
        }
        Command::ProbeOpen { path } => match crate::host::usb::probe_open(path) {
            Ok(()) => EXIT_OK,
            Err(e) => {
                eprintln!("{e}");
                EXIT_FAILURE
            }
        },
        Command::Check { no_source } => with_config(&|c| check::run(&c, *no_source)),
        Command::Run => {
            with_config(&|c| in_runtime(async { crate::daemon::run(c).await.map(|()| EXIT_OK) }))
        }
        Command::Usb {
            user,
            expect,
            json,
            sysfs_root,
            dev_root,
            probe,
        } => {
            let a = usb::UsbArgs {
                user,
                expect,
                json: *json,
                roots: (sysfs_root.as_ref(), dev_root.as_ref()),
                probe: *probe,
            };
            // A standalone diagnostic: with no config file, the defaults
            // (/sys, /dev, setpriv) are all it needs.
            if !cli.config.exists() {
                return match crate::config::defaults(&cli.config) {
                    Ok(c) => usb::run(c, &a),
                    Err(e) => {
                        eprintln!("hostbridge: config error: {e}");
                        args::EXIT_CONFIG
                    }
                };
            }
            with_config(&|c| usb::run(c, &a))
        }
        Command::Sync {
            bridge,
            dry_run,
            full,
        } => {
            let scope = if *full {
                crate::sync::Scope::Full
            } else {
                crate::sync::Scope::Stamped
            };
            with_config(&|c| in_runtime(sync::run(c, bridge.as_deref(), *dry_run, scope.clone())))
        }
    }
}
