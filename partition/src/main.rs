//! `probe-partition`: flags in, [`probe_partition::Config::run`] out; see the library for the stage.

use clap::Parser;

fn main() -> std::process::ExitCode {
    probe_core::main("probe-partition", || probe_partition::Args::parse().into_config()?.run().map(|_| ()))
}
