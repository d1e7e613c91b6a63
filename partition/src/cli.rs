//! Command-line options of `probe-partition`, and their check into a [`Config`].
//!
//! ```text
//! probe-partition --buckets 8 --out-dir shuffle/ --name part-00003 data/slice-3/
//! ```

use std::path::PathBuf;

use clap::Parser;
use probe_core::cli::{parse_size, InputArgs, KeyArgs, LogArgs, ThreadArgs};
use probe_core::meta::check_columns;
use probe_core::output::IpcCompression;
use probe_core::{Error, Result};

use crate::Config;

/// The most buckets one run writes: every bucket holds an open file (and its buffers).
pub const MAX_BUCKETS: usize = 65_536;

const LONG_ABOUT: &str = "\
Write every measurement to one of N buckets by a documented hash of its key: the shuffle (map) \
step of a run across machines. Each bucket then runs the whole job alone (probe-group | \
probe-split | probe-batch | probe-merge): a key's rows are all in one bucket, and a key's split \
depends on the key only, so no bucket needs another.

Output: DIR/bucket-<i>/NAME.arrows for every i in 0..N, empty buckets too (an empty Arrow IPC \
stream with the schema), all columns of the input, with the key and time column names recorded \
in the schema metadata. Rows keep their input order within a bucket, so sorted inputs give sorted \
bucket files, and M runs over M slices of the input (--name part-00000 .. part-<M-1>) give M \
files per bucket that plain probe-group k-way merges.

The bucket of a key is (XXH3_64(key bytes, seed 0x7072_6f62_6570_6172) * N) >> 64, the product \
taken in 128 bits, with the key bytes of probe-split's hash; the seed is fixed (\"probepar\"), so \
bucket i is the same set of keys on every machine, and it is independent of the train/test \
split for any --seed of probe-split. In Python: \
(xxh3_64_intdigest(key.encode(), 0x7072_6f62_6570_6172) * N) >> 64.

The files are written in a hidden staging folder DIR/.probe-staging-NAME-<pid>/ and renamed into \
their bucket folders only when all are complete; a rerun with the same NAME replaces its own \
files and no others. A staging folder left by a killed run with the same NAME is refused: remove \
it and rerun.

Memory: per bucket, a buffer of --buffer-size (written out when full), a 1 MiB write buffer and, \
for zstd, its compressor (about 1.4 MiB); plus one input batch: about N x (SIZE + 2.5 MiB), \
N x (SIZE + 1 MiB) with --ipc-compression lz4 or none. Every bucket is an open file: N is bounded \
by the open-file limit (ulimit -n).";

const EXAMPLE: &str = "\
Example:
  probe-partition --buckets 8 --out-dir shuffle/ --name part-00000 data/
  BUCKET=3 scripts/pipeline.sh shuffle/bucket-3 out/    # bucket 3 alone: out/<split>/bucket-3/";

/// Write every row to one of N buckets by a hash of its key (the shuffle for runs across machines).
#[derive(Debug, Parser)]
#[command(name = "probe-partition", version, long_about = LONG_ABOUT, after_long_help = EXAMPLE)]
pub struct Args {
    #[command(flatten)]
    pub input: InputArgs,

    /// Number of buckets: rows go to DIR/bucket-0 .. DIR/bucket-<N-1>.
    #[arg(short = 'n', long, value_name = "N")]
    pub buckets: usize,

    /// Folder of the bucket folders (created if missing); a store URL (s3://...) works too.
    #[arg(long, value_name = "DIR")]
    pub out_dir: PathBuf,

    /// File name (without `.arrows`) of this run's file in every bucket folder: one name per
    /// map task (part-00000, part-00001, ...). Letters, digits, `-`, `_`, `.`, not starting
    /// with `_` or `.` (readers skip those).
    #[arg(long, value_name = "NAME", default_value = "part-00000")]
    pub name: String,

    #[command(flatten)]
    pub keys: KeyArgs,

    /// Decoded bytes buffered per bucket before they are written as one batch.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "1MiB")]
    pub buffer_size: u64,

    /// Arrow IPC buffer compression of the bucket files [default: zstd].
    #[arg(long = "ipc-compression", value_enum, value_name = "CODEC")]
    pub ipc_compression: Option<IpcCompression>,

    /// Target size of one decoded input batch.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "8MiB", hide = true)]
    pub batch_size: u64,

    #[command(flatten)]
    pub threads: ThreadArgs,

    #[command(flatten)]
    pub log: LogArgs,
}

impl Args {
    /// Check the flags and turn them into a config.
    pub fn into_config(self) -> Result<Config> {
        if self.buckets == 0 || self.buckets > MAX_BUCKETS {
            return Err(Error::usage(format!(
                "--buckets {}: give a number of buckets from 1 to {MAX_BUCKETS}",
                self.buckets
            )));
        }
        check_name(&self.name)?;
        check_columns(&self.keys.key.key, self.keys.time.as_deref(), None)?;
        Ok(Config {
            inputs: self.input.inputs,
            out_dir: self.out_dir,
            name: self.name,
            buckets: self.buckets,
            keys: self.keys.key.key,
            time: self.keys.time,
            buffer_bytes: self.buffer_size.clamp(1, 1 << 40) as usize,
            ipc_compression: self.ipc_compression.unwrap_or(IpcCompression::FILE_DEFAULT),
            batch_bytes: self.batch_size.clamp(1, 1 << 30) as usize,
            threads: self.threads.threads,
            quiet: self.log.quiet,
        })
    }
}

/// A `--name` is a plain file name every reader lists: a name starting with `_` or `.` would be
/// skipped by input discovery (and by Spark, DuckDB, Polars), which would lose its rows.
pub fn check_name(name: &str) -> Result<()> {
    let ok_chars = name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if name.is_empty() || !ok_chars || name.starts_with(['_', '.']) {
        return Err(Error::usage(format!(
            "--name `{name}`: use letters, digits, `-`, `_` and `.`, not starting with `_` or `.` (readers skip \
             such files), for example part-00003"
        )));
    }
    Ok(())
}

/// The `probe-partition` command line: parse, run, and exit with the stage's status (the stage's
/// own binary and the wheel's both call this).
pub fn main() -> std::process::ExitCode {
    probe_core::main("probe-partition", || Args::parse().into_config()?.run().map(|_| ()))
}
