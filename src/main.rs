//! The `hostbridge` binary: everything lives in the library; see `cli`.

fn main() -> std::process::ExitCode {
    hostbridge::cmd::main(std::env::args_os())
}
