//! Command-line options of `probe-batch`, and their check into a [`Config`].

use std::time::Duration;

use clap::Parser;
use probe_core::cli::{parse_size, InputArgs, KeyArgs, LogArgs, OutputArgs, ThreadArgs};
use probe_core::meta::check_columns;
use probe_core::output::check_stdout_not_terminal;
use probe_core::{Error, Result};

use crate::window::IntUnit;
use crate::Config;

/// Turn probe rows into model-ready sequence rows (sessions cut into windows), in parallel.
///
/// Input: probe rows as `probe-group` or `probe-split` write them: the key column(s), then
/// `measurements: List<Struct<event_time, payload...>>`, time ascending, null times last. Other
/// columns (such as `split`) are ignored. Each key must be in one row, holding all of its
/// measurements: a key found in two rows (days grouped apart, then batched together) is an
/// error naming both rows, and nothing is written (the check keeps 24 bytes a row, written out
/// to one temporary file in $TMPDIR every 1 Mi rows).
///
/// For each key, in order: measurements with a null time are left out of every window (they
/// are counted in the summary); a key with fewer than --min-len timed measurements is dropped;
/// the rest is cut into sessions wherever the gap between consecutive measurements exceeds
/// --max-gap; each session is cut into windows of at most --max-len measurements, starting at
/// 0, stride, 2*stride, ... and ending with the first window that reaches the session's end
/// (a later start would give a window lying inside that one); windows shorter than --min-len
/// are dropped.
///
/// Output: one row per window: the key column(s), `window` (UInt32, 0-based index of the kept
/// windows of the key), `start_time` and `end_time` (the time field's type), `length`
/// (UInt32), then one list column per measurement field, named after it, in struct order
/// (`event_time: List<Timestamp>`, `dst_addr: List<Utf8>`, `rtt_ms: List<Float64>`, ...), and
/// `dt: List<Float32>` with --delta-time. Rows come out in input order whatever --threads is.
#[derive(Debug, Parser)]
#[command(
    name = "probe-batch",
    version,
    // `--workers` was this stage's name for `--threads` before every stage had one.
    mut_arg("threads", |a| a.visible_alias("workers")),
    after_long_help = "Example:\n  probe-batch work/train.arrows --max-len 512 --max-gap 30m -o work/train-rows.arrows"
)]
pub struct Args {
    #[command(flatten)]
    pub input: InputArgs,

    #[command(flatten)]
    pub output: OutputArgs,

    #[command(flatten)]
    pub keys: KeyArgs,

    /// The list-of-struct column holding each key's measurements (List or LargeList).
    #[arg(long, value_name = "COLUMN", default_value = "measurements")]
    pub measurements: String,

    /// Drop keys with fewer than N timed measurements, and windows shorter than N.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub min_len: usize,

    /// Start a new session where the gap between consecutive measurements exceeds DURATION
    /// (`90s`, `30m`, `2h`, `1day`); a gap equal to it stays in the session. Default: no
    /// cutting, the whole key is one session.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub max_gap: Option<Duration>,

    /// Cut sessions into windows of at most N measurements. Default: one window per session.
    #[arg(long, value_name = "N")]
    pub max_len: Option<usize>,

    /// Start a window every N measurements of a session (needs --max-len; at most --max-len).
    /// Default: --max-len, so windows do not overlap; a smaller stride gives overlapping
    /// windows.
    #[arg(long, value_name = "N")]
    pub stride: Option<usize>,

    /// Add `dt: List<Float32>`: seconds since the previous measurement of the window, 0 for
    /// the first.
    #[arg(long)]
    pub delta_time: bool,

    /// Unit of an integer time field (s, ms, us, ns), for --max-gap, --delta-time and
    /// messages. Timestamp, date, time and duration fields carry their own unit. Default: s.
    /// Integer times past the year 5000 in this unit are refused: they are in a finer unit.
    #[arg(long, value_name = "UNIT", value_parser = parse_unit)]
    pub time_unit: Option<IntUnit>,

    /// Target size of one decoded batch (input and output).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "8MiB", hide = true)]
    pub batch_size: u64,

    #[command(flatten)]
    pub threads: ThreadArgs,

    #[command(flatten)]
    pub log: LogArgs,
}

fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("`{s}` is not a duration ({e}); write it like 90s, 30m, 2h or 1day"))
}

fn parse_unit(s: &str) -> std::result::Result<IntUnit, String> {
    IntUnit::parse(s)
}

impl Args {
    /// Check the flags and turn them into a config.
    pub fn into_config(self) -> Result<Config> {
        let (keys, time) = (self.keys.key.key, self.keys.time);
        check_columns(&keys, time.as_deref(), None)?;
        if keys.contains(&self.measurements) {
            return Err(Error::config(format!(
                "`{}` is given as both a key and the --measurements column",
                self.measurements
            )));
        }
        if self.min_len == 0 {
            return Err(Error::config("--min-len must be at least 1 (a window holds at least one measurement)"));
        }
        if self.max_len == Some(0) {
            return Err(Error::config("--max-len must be at least 1"));
        }
        if let Some(max_len) = self.max_len.filter(|&m| m < self.min_len) {
            return Err(Error::config(format!(
                "--min-len {} is above --max-len {max_len}: every window would be dropped; lower --min-len or raise --max-len",
                self.min_len
            )));
        }
        let stride = match (self.stride, self.max_len) {
            (None, m) => m,
            (Some(_), None) => {
                return Err(Error::config(
                    "--stride needs --max-len (without it each session is one window); add --max-len N",
                ))
            }
            (Some(0), Some(_)) => return Err(Error::config("--stride must be at least 1")),
            (Some(s), Some(m)) if s > m => {
                return Err(Error::config(format!(
                    "--stride {s} is larger than --max-len {m}, which would skip measurements between windows; \
                     use a stride of at most {m}"
                )))
            }
            (Some(s), Some(_)) => Some(s),
        };
        let output = self.output.path();
        check_stdout_not_terminal(output.as_deref())?;
        Ok(Config {
            inputs: self.input.inputs,
            output,
            ipc_compression: self.output.ipc_compression,
            keys,
            time,
            measurements: self.measurements,
            min_len: self.min_len,
            max_gap: self.max_gap,
            max_len: self.max_len,
            stride,
            delta_time: self.delta_time,
            time_unit: self.time_unit,
            threads: self.threads.threads,
            batch_bytes: self.batch_size.clamp(1, 1 << 30) as usize,
            quiet: self.log.quiet,
        })
    }
}

/// The `probe-batch` command: parse the flags, run the stage, print one `probe-batch: error: ...`
/// line on failure and exit with the error's status. The binary's `main.rs` and the wheel's
/// copy of it (`wheel/`, built by maturin) are both this one call.
pub fn main() -> std::process::ExitCode {
    probe_core::main("probe-batch", || Args::parse().into_config()?.run().map(|_| ()))
}
