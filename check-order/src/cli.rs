//! The command line of probe-check-order, turned into a validated [`Config`].

use clap::Parser;
use probe_core::cli::{InputArgs, KeyArgs, LogArgs, ThreadArgs};
use probe_core::Result;

use crate::Config;

const LONG_ABOUT: &str = "\
Report whether measurements are ordered by (key, time), and print the probe-group command to use.

Streams the input once, reading only the key and time columns, and reports rows, files, key runs \
(where the key changes), distinct keys, key-order and time-order violations, ties, nulls, a verdict \
per file, the first violations with file and row, and the overall verdict:

  sorted           every file is sorted by (key, time), and so are the files in the order given
  sorted-per-file  each file is sorted but the files overlap: probe-group merges them
  clustered        each key's rows are contiguous, but keys are not ascending or times are not
                   sorted within a key: probe-group --sort
  unordered        anything else: probe-group --sort

The order is: keys ascending (compared as probe-group compares them; a composite key column by \
column), times non-decreasing within a key, nulls last.

Distinct keys are counted exactly with a set of 64-bit key hashes: about 16 bytes of memory per \
distinct key (100 MiB for 6.8M keys).

Exit status: 0 when plain probe-group accepts the input (sorted, sorted-per-file), 1 when it needs \
--sort (clustered, unordered), 2 on error.";

const EXAMPLE: &str = "\
Example:
  probe-check-order --key src_addr --time event_time data/ && probe-group data/ | probe-split --out-dir work/";

/// Report whether the input is ordered by (key, time), and which probe-group mode it needs.
#[derive(Debug, Clone, Parser)]
#[command(name = "probe-check-order", version, long_about = LONG_ABOUT, after_long_help = EXAMPLE)]
pub struct Args {
    #[command(flatten)]
    pub input: InputArgs,

    #[command(flatten)]
    pub keys: KeyArgs,

    /// Print the report as one JSON object (fields in snake_case) instead of text.
    #[arg(long)]
    pub json: bool,

    /// List at most N violations with file and row (all of them are counted).
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub max_violations: usize,

    #[command(flatten)]
    pub threads: ThreadArgs,

    #[command(flatten)]
    pub log: LogArgs,
}

impl Args {
    /// Check the options and turn them into the stage's configuration.
    pub fn config(&self) -> Result<Config> {
        let mut cfg = Config::new(self.input.inputs.clone(), self.keys.key.key.clone(), self.keys.time.clone())?;
        cfg.json = self.json;
        cfg.max_violations = self.max_violations;
        cfg.quiet = self.log.quiet;
        cfg.threads = self.threads.threads;
        Ok(cfg)
    }
}

/// The `probe-check-order` command: parse the flags, check the input, print the report to
/// stdout and exit 0 (plain `probe-group` accepts it), 1 (it needs `--sort`) or
/// [`crate::EXIT_ERROR`] with one `probe-check-order: error: ...` line. The binary's `main.rs`
/// and the wheel's copy of it (`wheel/`, built by maturin) are both this one call.
pub fn main() -> std::process::ExitCode {
    probe_core::main_with_status(
        crate::STAGE,
        |_| crate::EXIT_ERROR,
        || {
            let args = Args::parse();
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            crate::main_with(&args, &mut out)
        },
    )
}
