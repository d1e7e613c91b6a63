use clap::Parser;

fn main() -> std::process::ExitCode {
    probe_core::main("probe-batch", || probe_batch::Args::parse().into_config()?.run().map(|_| ()))
}
