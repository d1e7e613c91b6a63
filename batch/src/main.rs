//! `probe-batch`: see [`probe_batch::cli::main`]; the stage itself is the library.

fn main() -> std::process::ExitCode {
    probe_batch::cli::main()
}
