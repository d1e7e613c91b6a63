//! Command-line options of `probe-merge`, and their check into a [`Config`].
//!
//! ```text
//! probe-merge shards/ --out-dir out/train --max-file-size 512MiB
//! ```

use std::path::PathBuf;

use clap::{ArgGroup, Parser};
use parquet::basic::Compression;
use probe_core::cli::{parse_size, CompressionParser, InputArgs, LogArgs, ThreadArgs};
use probe_core::output::OutFormat;
use probe_core::{Error, Result};

use crate::{Config, Target};

/// Combine shard files (Parquet or Arrow IPC, any mix) into final Parquet file(s).
///
/// Every input must have the same columns with the same types (nullability may differ; column
/// order follows the first input); the first input that differs is named with the column,
/// before anything is written. Rows come out in input order (inputs in the order given,
/// directories in name order), streamed one batch at a time; row groups are closed by size.
///
/// `-o FILE.parquet` writes one file. `--out-dir DIR` writes `part-00000.parquet`,
/// `part-00001.parquet`, ... of at most about --max-file-size each, and `DIR/_manifest.json`
/// (files with rows and bytes, inputs with rows, totals, schema). DIR must be missing or
/// empty: the folder is built as a hidden sibling, `.DIR.probe-staging-<pid>/`, and renamed to
/// DIR only when every part and the manifest are complete, so a killed run never leaves parts
/// that a glob would read as the whole dataset. A staging folder left by a killed run is
/// refused, not removed: remove it and rerun. A failed or interrupted run removes it.
#[derive(Debug, Parser)]
#[command(
    name = "probe-merge",
    version,
    group(ArgGroup::new("target").required(true).args(["output", "out_dir"])),
    after_long_help = "Example:\n  probe-merge work/train-rows.arrows --out-dir out/train"
)]
pub struct Args {
    #[command(flatten)]
    pub input: InputArgs,

    /// Write one Parquet file (the name must end in `.parquet`), under a temporary name renamed
    /// on success.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Write `part-NNNNN.parquet` files and `_manifest.json` as the folder DIR, which appears
    /// complete at the end of the run. DIR must be missing or empty.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,

    /// With --out-dir: start a new part file when one reaches about SIZE (`512MiB`, `2GB`)
    /// [default: 1GiB]. The encoded size of the rows still in the open row group is estimated, so
    /// a part can end a little above SIZE; a file holds at least one row, so a single larger row
    /// makes a larger file.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_file_size: Option<u64>,

    /// Close a Parquet row group when it holds SIZE of decoded (in-memory) data (about a fifth of
    /// that on disk with zstd). The open row group and one being encoded are held decoded, so
    /// this sets most of the stage's memory: 64 MiB keeps it near 300 MiB.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "64MiB")]
    pub row_group_size: u64,

    /// Parquet compression.
    #[arg(long, value_name = "CODEC", default_value = "zstd", value_parser = CompressionParser)]
    pub compression: Compression,

    /// Target size of one decoded input batch.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "8MiB", hide = true)]
    pub batch_size: u64,

    #[command(flatten)]
    pub threads: ThreadArgs,

    #[command(flatten)]
    pub log: LogArgs,
}

/// The default --max-file-size.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 1 << 30;

impl Args {
    /// Check the flags and turn them into a config.
    pub fn into_config(self) -> Result<Config> {
        if self.row_group_size == 0 {
            return Err(Error::config("--row-group-size must be above 0"));
        }
        let target = match (self.output, self.out_dir) {
            (Some(path), None) => {
                if self.max_file_size.is_some() {
                    return Err(Error::config("--max-file-size is for --out-dir; -o writes one file"));
                }
                if OutFormat::for_path(&path) != OutFormat::Parquet {
                    return Err(Error::config(format!(
                        "-o {}: probe-merge writes Parquet; name the output FILE.parquet",
                        path.display()
                    )));
                }
                Target::File(path)
            }
            (None, Some(dir)) => {
                let max_file_bytes = self.max_file_size.unwrap_or(DEFAULT_MAX_FILE_SIZE);
                if max_file_bytes == 0 {
                    return Err(Error::config("--max-file-size must be above 0"));
                }
                Target::Dir { dir, max_file_bytes }
            }
            _ => return Err(Error::config("give exactly one of -o FILE and --out-dir DIR")),
        };
        Ok(Config {
            inputs: self.input.inputs,
            target,
            row_group_bytes: self.row_group_size.clamp(1, usize::MAX as u64) as usize,
            compression: self.compression,
            batch_bytes: self.batch_size.clamp(1, 1 << 30) as usize,
            threads: self.threads.threads,
            quiet: self.log.quiet,
        })
    }
}

/// The `probe-merge` command: parse the flags, run the stage, print one `probe-merge: error: ...`
/// line on failure and exit with the error's status. The binary's `main.rs` and the wheel's
/// copy of it (`wheel/`, built by maturin) are both this one call.
pub fn main() -> std::process::ExitCode {
    probe_core::main("probe-merge", || Args::parse().into_config()?.run().map(|_| ()))
}
