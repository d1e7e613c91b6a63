//! `probe-split`: flags in, [`probe_split::Config::run`] out; see the library for the stage.

use clap::Parser;

fn main() -> std::process::ExitCode {
    probe_core::main("probe-split", || probe_split::Args::parse().into_config()?.run().map(|_| ()))
}
