//! Command-line options of `probe-group`.

use std::path::PathBuf;

use clap::Parser;
use parquet::basic::Compression;
use probe_core::cli::{parse_size, CompressionParser, InputArgs, KeyArgs, LogArgs, OutputArgs, ThreadArgs};

/// Group measurements into probe rows: one row per key with its measurements as a
/// time-ordered list.
///
/// Output: the key column(s), then `measurements: List<Struct<time, payload...>>`, time
/// ascending, ties in input order (inputs in the order given, rows in file order), null times
/// last, a null key as one group after all others: what DuckDB's
/// `GROUP BY key` with `LIST(STRUCT_PACK(...) ORDER BY time)` returns, in bounded memory.
///
/// By default every input must be sorted by (key, time); several sorted inputs (overlapping
/// daily exports) are merged, no sort needed. The order is checked as rows stream and a
/// violation stops the run naming the file and row. `--sort` accepts any order with an external
/// sort bounded by `--memory-limit`.
///
/// Sorted Parquet files with statistics (a page index, or row-group min/max of the first key
/// column) are cut into key ranges grouped on all `--threads` and written in key order, the
/// order still checked in full; Arrow IPC, stdin and files without statistics are merged as
/// one stream, decoded ahead on their own threads. The output is the same either way.
#[derive(Debug, Parser)]
#[command(
    name = "probe-group",
    version,
    after_long_help = "Example:\n  probe-check-order data/ && probe-group data/ | probe-split --out-dir work/\n  probe-group --sort --memory-limit 2GiB shuffled/ -o grouped.parquet"
)]
pub struct Args {
    #[command(flatten)]
    pub input: InputArgs,

    #[command(flatten)]
    pub output: OutputArgs,

    #[command(flatten)]
    pub keys: KeyArgs,

    /// Payload columns to keep, in this order (default: every column but the key and time);
    /// pushed down into the Parquet reader.
    #[arg(short = 'c', long = "columns", value_name = "COLUMN", value_delimiter = ',')]
    pub columns: Option<Vec<String>>,

    /// Accept input in any order: external sort bounded by --memory-limit, spilling sorted runs
    /// to --temp-dir as compressed Arrow IPC.
    #[arg(long)]
    pub sort: bool,

    /// Memory budget for --sort (`512MiB`, `2GB`); default: a quarter of physical memory,
    /// at most 4 GiB. At least 16MiB: below that, a fixed overhead (about 8 MiB of code,
    /// allocator and I/O buffers) and one batch per merged run dominate and peak memory no
    /// longer follows the limit. Not covered by it: about twice the largest key's measurements.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub memory_limit: Option<u64>,

    /// Accept a --memory-limit below the minimum. For tests that force many spilled runs and
    /// merge passes on tiny inputs; peak memory then no longer follows the limit.
    #[arg(long, hide = true)]
    pub allow_small_memory_limit: bool,

    /// Directory for --sort's spill files (default: the system temp dir, $TMPDIR).
    #[arg(long, value_name = "DIR")]
    pub temp_dir: Option<PathBuf>,

    /// Parquet compression for a `.parquet` output.
    #[arg(long, value_name = "CODEC", default_value = "zstd", value_parser = CompressionParser)]
    pub compression: Compression,

    /// Target size of one decoded batch (input and output).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "8MiB", hide = true)]
    pub batch_size: u64,

    /// Rows aimed at per key range of sorted Parquet inputs (default: a 32nd of the input,
    /// between 64 Ki and 512 Ki rows). For tests that put range boundaries in tiny inputs.
    #[arg(long, value_name = "ROWS", hide = true)]
    pub range_rows: Option<u64>,

    /// Rows of --sort's first run per part of the final merge, at least (default: 64 Ki). For
    /// tests that put part boundaries in tiny inputs.
    #[arg(long, value_name = "ROWS", hide = true)]
    pub sort_part_rows: Option<usize>,

    /// Smallest --sort run (bytes, a quarter of the limit) that is spilled while the next one
    /// fills (default: 64 MiB). For tests that overlap runs of tiny inputs.
    #[arg(long, value_name = "BYTES", hide = true)]
    pub sort_overlap_min_run: Option<usize>,

    /// Sorted runs --sort merges at once (at least 2); more runs are merged in several
    /// passes, each merging consecutive runs so ties keep input order. A higher fan-in means
    /// fewer passes but a smaller read buffer per run within --memory-limit.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub fan_in: usize,

    #[command(flatten)]
    pub threads: ThreadArgs,

    #[command(flatten)]
    pub log: LogArgs,
}

/// The `probe-group` command: parse the flags, run the stage, print one `probe-group: error: ...`
/// line on failure and exit with the error's status. The binary's `main.rs` and the wheel's
/// copy of it (`wheel/`, built by maturin) are both this one call.
pub fn main() -> std::process::ExitCode {
    probe_core::main("probe-group", || Args::parse().into_config()?.run().map(|_| ()))
}
