//! `probe-group`: see [`probe_group::cli::main`]; the stage itself is the library.

fn main() -> std::process::ExitCode {
    probe_group::cli::main()
}
