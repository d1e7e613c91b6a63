use clap::Parser;

fn main() -> std::process::ExitCode {
    probe_core::main("probe-group", || probe_group::Args::parse().into_config()?.run().map(|_| ()))
}
