//! `probe-merge`: see [`probe_merge::cli::main`]; the stage itself is the library.

fn main() -> std::process::ExitCode {
    probe_merge::cli::main()
}
