//! probe-gen: write a synthetic table of time-stamped network measurements as Parquet; see
//! [`probe_tests::gen_cli::main`].

fn main() -> std::process::ExitCode {
    probe_tests::gen_cli::main()
}
