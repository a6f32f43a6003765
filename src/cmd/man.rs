//! `hostbridge completions SHELL` and `hostbridge man`: shell completion
//! scripts (clap_complete) and roff manual pages (clap_mangen), generated
//! from the same clap definition as the parser, so they cannot drift. The
//! main page adds the sections clap does not know: exit status, files,
//! environment, see also. Shell code (writes to stdout or a dir).

use std::io::Write;
use std::path::Path;

use clap::CommandFactory;

use super::args::Cli;

/// Sections of hostbridge(1) beyond the generated ones, in roff.
const EXTRA: &str = r#".SH "EXIT STATUS"
.TP
\fB0\fR
Success; for \fBstatus\fR, every bridge is healthy.
.TP
\fB1\fR
Something failed: a sync error, a failed action, a conflict, findings of
\fBrules lint\fR, a USB device that is not usable; for \fBstatus\fR, a
degraded bridge.
.TP
\fB2\fR
Bad command line, or an unknown \fB\-\-bridge\fR name.
.TP
\fB3\fR
\fBstatus\fR, \fBreload\fR: the daemon is not running (no status socket).
.TP
\fB4\fR
\fBstatus\fR, \fBreload\fR: the daemon's answer could not be read (e.g.
permission denied on the socket).
.TP
\fB65\fR
\fBsync\fR: a file was refused or a set held back (nothing failed, but not
all the source offers is installed).
.TP
\fB78\fR
The config is invalid (EX_CONFIG): a parse error names FILE:LINE:COLUMN, a
host lookup the bridge and key; or the host lacks a name it needs.
.SH FILES
.TP
\fI/etc/hostbridge/config.yaml\fR
The config file.
.TP
\fI/usr/lib/hostbridge/config.d\fR, \fI/etc/hostbridge/config.d\fR, \fI/run/hostbridge/config.d\fR
Drop-in fragments (*.yaml), merged by file name; later dirs win.
.TP
\fI/run/hostbridge\fR
State: manifests of installed files, the status socket \fIstatus.sock\fR,
recorded USB node state \fIusb-grants.json\fR.
.TP
\fI/run/udev/rules.d\fR
Where udev rules bridges install by default.
.SH ENVIRONMENT
.TP
\fBHOSTBRIDGE_CONFIG\fR
The config file, like \fB\-\-config\fR.
.TP
\fBHOSTBRIDGE_CONFIG_DIRS\fR
Colon-separated drop-in dirs, like \fB\-\-config\-dir\fR; empty for none.
.TP
\fBHOSTBRIDGE_LOG\fR
Log filter, e.g. \fBdebug\fR.
.TP
\fBJOURNAL_STREAM\fR
Set by systemd: logs go to the journal with fields BRIDGE=, FILE=, ACTION=,
RESULT=, RULE=.
.SH "SEE ALSO"
\fBudev\fR(7), \fBudevadm\fR(8), \fBsystemd.service\fR(5),
\fBsystemd-analyze\fR(1), \fBupsd\fR(8); the docs in
\fI/usr/local/share/doc/hostbridge\fR (configuration.md, operations.md,
security.md, nut.md, loki-cert.md, deploy-fcos.md).
"#;

/// Prints the completion script for `shell` to stdout.
pub(crate) fn completions(shell: clap_complete::Shell) -> std::io::Result<()> {
    let mut cmd = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "hostbridge", &mut script);
    std::io::stdout().lock().write_all(&script)
}

/// hostbridge(1) with the extra sections.
pub(crate) fn main_page(w: &mut dyn Write) -> std::io::Result<()> {
    // As generate_to does: there is no page for clap's `help` subcommand.
    let cmd = Cli::command().disable_help_subcommand(true);
    let man = clap_mangen::Man::new(cmd).manual("hostbridge manual");
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    man.render_description_section(w)?;
    man.render_options_section(w)?;
    man.render_subcommands_section(w)?;
    w.write_all(EXTRA.as_bytes())?;
    man.render_version_section(w)
}

/// Writes hostbridge.1 and a page per subcommand (hostbridge-status.1, ...)
/// into `dir`.
pub(crate) fn write_pages(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(Cli::command(), dir)?;
    let mut f = std::fs::File::create(dir.join("hostbridge.1"))?;
    main_page(&mut f)?;
    f.flush()
}

/// The exit code for a finished write: a closed pipe (`| head`) is the
/// reader's choice, not an error.
pub(crate) fn finish(written: std::io::Result<()>) -> u8 {
    match written {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => super::args::EXIT_OK,
        Ok(()) => super::args::EXIT_OK,
        Err(e) => {
            eprintln!("hostbridge: writing to stdout or the dir: {e}");
            super::args::EXIT_FAILURE
        }
    }
}
