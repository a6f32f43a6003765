//! `hostbridge sync`: one reconcile of every bridge (or one), files first,
//! then the owed actions together, as the daemon does. Shell code.

use crate::config::Config;
use crate::sync::{Owed, SyncOptions, SyncReport, run_owed, sync_files_async};

use super::args::{EXIT_FAILURE, EXIT_OK, EXIT_REFUSED, EXIT_USAGE};

/// Syncs every bridge (or `only`) once; returns the exit code.
pub(crate) async fn run(
    config: Config,
    only: Option<&str>,
    dry_run: bool,
    scope: crate::sync::Scope,
) -> anyhow::Result<u8> {
    if let Some(name) = only
        && !config.bridges.iter().any(|b| b.name == name)
    {
        eprintln!(
            "hostbridge: no bridge named {name:?} in {}",
            config.path.display()
        );
        return Ok(EXIT_USAGE);
    }
    // Files first, bridge by bridge; then the owed actions together, so a
    // target several bridges name is acted on once (as in the daemon).
    let mut results: Vec<(String, anyhow::Result<SyncReport>)> = Vec::new();
    let mut owed: Vec<(usize, Owed)> = Vec::new();
    for b in config
        .bridges
        .iter()
        .filter(|b| only.is_none_or(|n| n == b.name))
    {
        let opts = SyncOptions {
            dry_run,
            clean_temps: true,
            scope: scope.clone(),
            ..SyncOptions::default()
        };
        match sync_files_async(&config, b, opts).await {
            Ok((report, Some(manifest))) if !dry_run && manifest.actions_pending => {
                owed.push((
                    results.len(),
                    Owed {
                        bridge: b.clone(),
                        report,
                        manifest,
                        since: std::time::Instant::now(),
                    },
                ));
                // Filled in once the actions ran.
                results.push((b.name.clone(), Err(anyhow::anyhow!("actions did not run"))));
            }
            Ok((report, _)) => results.push((b.name.clone(), Ok(report))),
            Err(e) => results.push((b.name.clone(), Err(e))),
        }
    }
    if !owed.is_empty() {
        let (slots, mut owed): (Vec<usize>, Vec<Owed>) = owed.into_iter().unzip();
        run_owed(&config, &mut owed, true).await;
        for (i, o) in slots.into_iter().zip(owed) {
            results[i].1 = Ok(o.report);
        }
    }
    Ok(print_results(results))
}

/// Prints each bridge's report. The exit code: 1 if any bridge failed or
/// met a conflict, else 65 if any refused or held something back, else 0
/// (everything in place, or nothing to do).
fn print_results(results: Vec<(String, anyhow::Result<SyncReport>)>) -> u8 {
    let mut code = EXIT_OK;
    for (name, res) in results {
        match res {
            Ok(r) => {
                print!("{}", render_report(&r));
                if r.failed() || !r.conflicts.is_empty() {
                    code = EXIT_FAILURE;
                } else if r.refused() && code == EXIT_OK {
                    code = EXIT_REFUSED;
                }
            }
            Err(e) => {
                println!("{name}: error: {e:#}");
                code = EXIT_FAILURE;
            }
        }
    }
    code
}

/// The text `hostbridge sync` prints for one bridge.
pub(crate) fn render_report(r: &SyncReport) -> String {
    let mut s = String::new();
    let head = if r.dry_run { "plan" } else { "synced" };
    line(&mut s, &format!("{}: {head}: {}", r.bridge, r.summary()));
    let lines = [
        ("+ install", &r.installed),
        ("~ replace", &r.replaced),
        ("- prune", &r.pruned),
    ];
    for (sign, names) in lines {
        for n in names {
            line(&mut s, &format!("  {sign} {n}"));
        }
    }
    for (label, list) in [
        ("skip", &r.skipped),
        ("hold", &r.held),
        ("conflict", &r.conflicts),
        ("keep", &r.kept),
    ] {
        for (n, why) in list {
            // The findings are listed below: the first is not said twice.
            let listed = r.findings.iter().any(|(f, _)| f == n);
            let why = match why.split_once("; first: ") {
                Some((head, _)) if listed => format!("{head}, below)"),
                _ => why.clone(),
            };
            line(&mut s, &format!("  ! {label} {n}: {why}"));
        }
    }
    for (f, finding) in &r.findings {
        line(&mut s, &format!("  {}", finding.render(f)));
    }
    for n in r.notes.iter().chain(&r.errors) {
        line(&mut s, &format!("  ! {n}"));
    }
    for a in &r.actions {
        match &a.result {
            Ok(_) => line(&mut s, &format!("  ran {}", a.action)),
            Err(e) => line(&mut s, &format!("  ! {} failed: {e}", a.action)),
        }
    }
    s
}

/// Appends one line of `hostbridge sync` output, escaped: the text holds
/// file names and rule text from the container.
fn line(out: &mut String, text: &str) {
    out.push_str(&crate::core::text::escape(text));
    out.push('\n');
}
