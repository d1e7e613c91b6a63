//! `probe-split`: see [`probe_split::cli::main`]; the stage itself is the library.

fn main() -> std::process::ExitCode {
    probe_split::cli::main()
}
