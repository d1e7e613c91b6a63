//! `probe-merge`: flags in, [`probe_merge::Config::run`] out; see the library for the stage.

use clap::Parser;

fn main() -> std::process::ExitCode {
    probe_core::main("probe-merge", || probe_merge::Args::parse().into_config()?.run().map(|_| ()))
}
