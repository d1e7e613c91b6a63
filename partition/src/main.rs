//! `probe-partition`: see [`probe_partition::cli::main`]; the stage itself is the library.

fn main() -> std::process::ExitCode {
    probe_partition::cli::main()
}
