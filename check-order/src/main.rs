//! probe-check-order: report whether the input is ordered by (key, time) and which
//! `probe-group` mode it needs. Exit 0: plain probe-group; 1: probe-group --sort; 2: error.

use std::io::BufWriter;
use std::process::ExitCode;

use clap::Parser;
use probe_check_order::cli::Args;

fn main() -> ExitCode {
    probe_core::main_with_status(
        probe_check_order::STAGE,
        |_| probe_check_order::EXIT_ERROR,
        || {
            let args = Args::parse();
            let mut out = BufWriter::new(std::io::stdout().lock());
            probe_check_order::main_with(&args, &mut out)
        },
    )
}
