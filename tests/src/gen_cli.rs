//! The command line of probe-gen: write a synthetic table of time-stamped network measurements
//! as Parquet (the generator itself is [`crate::gen`]).

use std::path::PathBuf;

use crate::gen::{self, GenConfig, Order};
use clap::Parser;
use parquet::basic::Compression;
use probe_core::cli::LogArgs;
use probe_core::output::parse_compression;
use probe_core::progress::Progress;

/// Write a synthetic table of network measurements (Parquet) for tests and benchmarks.
///
/// One row per measurement: src_addr (the key: IPv4 or IPv6 string), event_time (timestamp,
/// microseconds, UTC, over four weeks from 2024-01-01), dst_addr, rtt_ms (~2% null), ttl
/// (UInt8, ~1% null), proto (icmp/udp/tcp), probe_id (unique measurement id 0..rows).
/// Measurements per key are heavy-tailed (from one to 100k+ at large row counts) and about 1%
/// repeat their predecessor's timestamp (ties).
///
/// The same options give byte-identical files, and the three orders hold the same rows for the
/// same --rows, --keys and --seed. Files are written as DIR/part-00000.parquet, ...; each is
/// written under a temporary dot-name and all are renamed into place when the last one is done.
/// Memory stays bounded whatever --rows: the key list (about 50 bytes a key), a few batches
/// of 64k rows, the open row groups, and for shuffled one chunk of about 1M rows.
#[derive(Debug, Parser)]
#[command(
    name = "probe-gen",
    version,
    verbatim_doc_comment,
    after_long_help = "Examples:\n  probe-gen --rows 20M --out-dir data/\n  \
                       probe-gen --rows 2M --keys 50k --order sorted-per-file --files 7 --seed 1 -o daily/\n  \
                       probe-gen --rows 1M --order shuffled -o shuffled/ && probe-check-order shuffled/"
)]
pub struct Args {
    /// Measurements (rows) in total, exactly: 1000000, 1_000_000, 10k, 2M, 200M.
    #[arg(long, value_name = "N", default_value = "1M", value_parser = gen::parse_count)]
    rows: u64,

    /// Distinct keys (src_addr values), exactly; at most --rows. Default: rows / 30.
    #[arg(long, value_name = "N", value_parser = gen::parse_count)]
    keys: Option<u64>,

    /// Seed of every random choice.
    #[arg(long, value_name = "N", default_value_t = 0)]
    seed: u64,

    /// Row order, and how rows are split into files.
    #[arg(long, value_enum, default_value_t = Order::Sorted)]
    order: Order,

    /// Number of output files (1 to 100000).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    files: u32,

    /// Output directory (created if missing); refused if it holds more part-*.parquet files
    /// than this run writes.
    #[arg(short = 'o', long = "out-dir", value_name = "DIR")]
    out_dir: PathBuf,

    /// Parquet row-group size in rows. Default: 1M (sorted-per-file with more than 4 files:
    /// 4M / files, at least 128k, since all its files are open at once).
    #[arg(long, value_name = "N", value_parser = gen::parse_count)]
    row_group_rows: Option<u64>,

    /// Parquet compression: zstd, zstd:LEVEL, snappy, lz4, gzip or none.
    #[arg(long, value_name = "CODEC", default_value = "zstd:1", value_parser = parse_compression)]
    compression: Compression,

    #[command(flatten)]
    log: LogArgs,
}

impl Args {
    /// Generate the table the flags describe.
    pub fn run(self) -> probe_core::Result<()> {
        let mut cfg = GenConfig::new(self.rows, self.out_dir);
        cfg.keys = self.keys.unwrap_or(cfg.keys);
        cfg.seed = self.seed;
        cfg.order = self.order;
        cfg.files = self.files as usize;
        cfg.compression = self.compression;
        cfg.row_group_rows = match self.row_group_rows {
            Some(n) => Some(
                usize::try_from(n)
                    .map_err(|_| probe_core::Error::config(format!("--row-group-rows {n} is too large")))?,
            ),
            None => None,
        };
        let progress = Progress::new("probe-gen", self.log.quiet, Some(cfg.rows));
        let stats = gen::generate_with_progress(&cfg, &progress)?;
        progress.finish(
            stats.rows,
            &[
                ("keys", stats.keys.to_string()),
                ("largest key", stats.max_key_rows.to_string()),
                ("files", stats.files.len().to_string()),
                ("order", cfg.order.name().to_string()),
                ("dir", cfg.out_dir.display().to_string()),
            ],
        );
        Ok(())
    }
}

/// The `probe-gen` command: parse the flags, write the table, print one
/// `probe-gen: error: ...` line on failure. `src/bin/probe-gen.rs` and the wheel's copy of the
/// binary (`wheel/`, built by maturin) are both this one call.
pub fn main() -> std::process::ExitCode {
    probe_core::main("probe-gen", || Args::parse().run())
}
