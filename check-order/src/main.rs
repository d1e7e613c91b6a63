//! probe-check-order: report whether the input is ordered by (key, time) and which
//! `probe-group` mode it needs. Exit 0: plain probe-group; 1: probe-group --sort; 2: error.
//! See [`probe_check_order::cli::main`]; the stage itself is the library.

fn main() -> std::process::ExitCode {
    probe_check_order::cli::main()
}
