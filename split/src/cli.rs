//! Command-line options of `probe-split`, and their check into a [`Config`].
//!
//! ```text
//! probe-split --out-dir work/ --ratios train=0.8,val=0.1,test=0.1 --seed 7 grouped.arrows
//! ```

use std::path::PathBuf;

use clap::{ArgGroup, Parser, ValueEnum};
use parquet::basic::Compression;
use probe_core::cli::{parse_size, CompressionParser, InputArgs, KeyArg, LogArgs, OutputArgs, ThreadArgs};
use probe_core::meta::check_columns;
use probe_core::output::check_stdout_not_terminal;
use probe_core::{Error, Result};

use crate::ratios::parse_ratios;
use crate::{Config, Mode};

/// Assign every key to a named split (train/test/...) by a stable, documented hash of the key.
///
/// Input: probe rows, as `probe-group` writes them (key column(s), then
/// `measurements: List<Struct<...>>`, one row per key); other columns are carried through.
///
/// A key's split depends only on its bytes and --seed: XXH3-64 of the key bytes with the
/// seed, its top 53 bits as u in [0, 1), and the first split whose cumulative ratio exceeds u
/// (the README shows how to reproduce it in a few lines of Python). The same key lands in the
/// same split whatever the batch sizes, input order or machine.
///
/// `--out-dir DIR` writes one file per split, `DIR/<name>.arrows` (or `.parquet`), every one of
/// them even when empty; `--tag` instead adds a `split` column and streams one output. The
/// summary on stderr shows keys, measurements and shares per split.
#[derive(Debug, Parser)]
#[command(
    name = "probe-split",
    version,
    group(ArgGroup::new("mode").required(true).args(["out_dir", "tag", "split_to"])),
    after_long_help = "Example:\n  probe-group data/ | probe-split --out-dir work/        # work/train.arrows, work/test.arrows"
)]
pub struct Args {
    #[command(flatten)]
    pub input: InputArgs,

    /// Write one file per split into DIR (created if missing): `DIR/<name>.arrows`, or
    /// `DIR/<name>.parquet` with `--format parquet`. Every split's file is written, even when
    /// empty, in a hidden staging folder `DIR/.probe-staging-<pid>/`, and all are renamed into
    /// DIR only when all are complete. A staging folder left by a killed run is refused: remove
    /// it and rerun. Nothing goes to stdout.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,

    /// Write split NAME to PATH (repeat it for every split of --ratios): a file (Arrow IPC by
    /// extension unless `.parquet`; written under a temporary name and renamed when complete),
    /// or a named pipe (FIFO) or device, written in place. With pipes every split streams to
    /// its own reader at once and nothing touches the disk: `scripts/pipeline.sh` feeds each
    /// split's `probe-batch | probe-merge` this way. Pipes need readers for every split, or
    /// this stage blocks opening them.
    #[arg(long, value_name = "NAME=PATH")]
    pub split_to: Vec<String>,

    /// Instead of one file per split, add a `split` column (dictionary of the split names) as
    /// the last column and write every row to stdout or -o.
    #[arg(long)]
    pub tag: bool,

    #[command(flatten)]
    pub output: OutputArgs,

    /// Split names and their shares of the keys, in this order: `NAME=RATIO,...`. Any names
    /// (letters, digits, `-`, `_`, `.`; not starting with `_` or `.`), any count; every ratio
    /// above 0, together summing to 1.
    #[arg(long, value_name = "NAME=RATIO,...", default_value = "train=0.9,test=0.1")]
    pub ratios: String,

    /// Seed of the key hash: another seed gives another, equally stable, assignment.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,

    #[command(flatten)]
    pub key: KeyArg,

    /// List column whose lengths are counted as each split's measurements.
    #[arg(long, value_name = "COLUMN", default_value = "measurements")]
    pub measurements: String,

    /// File format for --out-dir: `arrows` (Arrow IPC stream) or `parquet` [default: arrows].
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<SplitFormat>,

    /// Parquet compression.
    #[arg(long, value_name = "CODEC", default_value = "zstd", value_parser = CompressionParser)]
    pub compression: Compression,

    /// Close a Parquet row group when it holds SIZE of decoded (in-memory) data (bounds the
    /// memory each open Parquet output holds).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "128MiB")]
    pub row_group_size: u64,

    /// Target size of one decoded input batch.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "8MiB", hide = true)]
    pub batch_size: u64,

    #[command(flatten)]
    pub threads: ThreadArgs,

    #[command(flatten)]
    pub log: LogArgs,
}

/// File format of the per-split files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SplitFormat {
    /// Arrow IPC stream, `<name>.arrows`.
    Arrows,
    /// Parquet, `<name>.parquet`.
    Parquet,
}

impl SplitFormat {
    /// The file extension for this format.
    pub fn extension(self) -> &'static str {
        match self {
            SplitFormat::Arrows => "arrows",
            SplitFormat::Parquet => "parquet",
        }
    }
}

impl Args {
    /// Check the flags and turn them into a config.
    pub fn into_config(self) -> Result<Config> {
        let splits = parse_ratios(&self.ratios)?;
        check_columns(&self.key.key, None, None)?;
        if self.measurements.is_empty() {
            return Err(Error::config("--measurements needs a column name"));
        }
        let ipc_compression = self.output.ipc_compression;
        let each = if self.split_to.is_empty() { None } else { Some(self.each_mode(&splits)?) };
        let mode = match (each, self.out_dir, self.tag) {
            (Some(each), _, _) => each,
            (None, Some(dir), false) => {
                if self.output.output.is_some() {
                    return Err(Error::config(
                        "-o is for --tag; --out-dir names its files itself (DIR/<split>.arrows)",
                    ));
                }
                Mode::OutDir { dir, format: self.format.unwrap_or(SplitFormat::Arrows) }
            }
            (None, None, true) => {
                if self.format.is_some() {
                    return Err(Error::config(
                        "--format is for --out-dir; with --tag the -o extension picks the format (.parquet, .arrows)",
                    ));
                }
                let output = self.output.path();
                check_stdout_not_terminal(output.as_deref())?;
                Mode::Tag { output }
            }
            _ => return Err(Error::config("give exactly one of --out-dir DIR, --split-to and --tag")),
        };
        Ok(Config {
            inputs: self.input.inputs,
            mode,
            keys: self.key.key,
            splits,
            seed: self.seed,
            measurements: self.measurements,
            compression: self.compression,
            ipc_compression,
            row_group_bytes: self.row_group_size.clamp(1, usize::MAX as u64) as usize,
            batch_bytes: self.batch_size.clamp(1, 1 << 30) as usize,
            threads: self.threads.threads,
            quiet: self.log.quiet,
        })
    }

    /// `--split-to NAME=PATH` for every split of --ratios, in their order. (clap refuses it
    /// with --out-dir or --tag: one mode group.)
    fn each_mode(&self, splits: &[crate::ratios::SplitSpec]) -> Result<Mode> {
        if self.output.output.is_some() || self.format.is_some() {
            return Err(Error::config(
                "--split-to names every split's output itself; leave out -o and --format (the extension picks it)",
            ));
        }
        let mut paths: Vec<Option<PathBuf>> = vec![None; splits.len()];
        for item in &self.split_to {
            let Some((name, path)) = item.split_once('=').filter(|(n, p)| !n.is_empty() && !p.is_empty()) else {
                return Err(Error::config(format!("--split-to {item}: give NAME=PATH")));
            };
            let Some(i) = splits.iter().position(|s| s.name == name) else {
                return Err(Error::config(format!("--split-to {item}: `{name}` is not a split of --ratios")));
            };
            if paths[i].replace(PathBuf::from(path)).is_some() {
                return Err(Error::config(format!("--split-to names split `{name}` twice")));
            }
        }
        if let Some(i) = paths.iter().position(Option::is_none) {
            return Err(Error::config(format!(
                "--split-to: no output for split `{}`; give one for every split of --ratios",
                splits[i].name
            )));
        }
        let paths: Vec<PathBuf> = paths.into_iter().flatten().collect();
        // Two splits into one file: the second would replace the first, and the run succeed.
        let ids: Vec<Option<String>> = paths.iter().map(|p| output_identity(p)).collect();
        for (j, id) in ids.iter().enumerate() {
            if let Some(i) = id.as_ref().and_then(|id| ids[..j].iter().position(|x| x.as_ref() == Some(id))) {
                return Err(Error::config(format!(
                    "--split-to: splits `{}` and `{}` both go to {}; give each split its own output",
                    splits[i].name,
                    splits[j].name,
                    paths[j].display()
                )));
            }
        }
        Ok(Mode::Each { paths })
    }
}

/// What an output path writes to, for telling two outputs apart: an existing file's device and
/// inode, else the resolved folder and the name (a URL as written). `None` for a device such as
/// `/dev/null`, which several splits may share.
fn output_identity(p: &std::path::Path) -> Option<String> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    if probe_core::store::path_is_url(p) {
        return Some(p.display().to_string());
    }
    if let Ok(m) = std::fs::metadata(p) {
        if m.file_type().is_char_device() {
            return None;
        }
        return Some(format!("{}:{}", m.dev(), m.ino()));
    }
    let parent = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let dir = std::fs::canonicalize(parent).unwrap_or_else(|_| parent.to_path_buf());
    Some(dir.join(p.file_name().unwrap_or_default()).display().to_string())
}

/// The `probe-split` command: parse the flags, run the stage, print one `probe-split: error: ...`
/// line on failure and exit with the error's status. The binary's `main.rs` and the wheel's
/// copy of it (`wheel/`, built by maturin) are both this one call.
pub fn main() -> std::process::ExitCode {
    probe_core::main("probe-split", || Args::parse().into_config()?.run().map(|_| ()))
}
