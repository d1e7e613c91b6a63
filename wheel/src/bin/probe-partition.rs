//! `probe-partition` in the wheel: the same entry point as the stage's own binary.

fn main() -> std::process::ExitCode {
    probe_partition::cli::main()
}
