//! probe-split: probe rows -> named splits (train/test/...) by a stable, documented key hash.
//!
//! ```text
//! probe-group data/ | probe-split --out-dir work/                 # work/train.arrows, work/test.arrows
//! probe-split --tag --ratios a=0.5,b=0.5 --seed 7 rows.arrows -o tagged.parquet
//! ```
//!
//! The stage is [`Config::run`] over a validated [`Config`]; `main.rs` only parses flags
//! ([`cli`]). [`ratios`] checks `--ratios`; [`route`] hashes keys with
//! [`probe_core::keyhash`] and routes or tags rows, one batch at a time.

pub mod cli;
pub mod ratios;
pub mod route;

use std::path::PathBuf;

use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use parquet::basic::Compression;

use probe_core::input::{column_index, discover, Input};
use probe_core::meta::{check_columns, resolve_keys};
use probe_core::output::{check_output, Output, OutputOptions};
use probe_core::progress::Progress;
use probe_core::schema::common_schema;
use probe_core::staging::Staging;
use probe_core::{Error, Result};

pub use cli::{Args, SplitFormat};
pub use ratios::SplitSpec;

use crate::route::{hashable, is_list, list_lengths, rows_of, Assigner, Tagger, TAG_COLUMN};

/// Where the rows go.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// One file per split, `dir/<name>.<ext>`.
    OutDir {
        /// Output directory, created if missing.
        dir: PathBuf,
        /// Format of the split files.
        format: SplitFormat,
    },
    /// One output per split, at the paths given (`--split-to`), in `splits` order: files
    /// (each renamed into place when complete) or pipes (written in place).
    Each {
        /// Per split, its output.
        paths: Vec<PathBuf>,
    },
    /// One output with a `split` column appended; stdout when `output` is `None`.
    Tag {
        /// `-o PATH`, format by extension.
        output: Option<PathBuf>,
    },
}

/// A validated `probe-split` run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Input paths as given (`-` for stdin).
    pub inputs: Vec<String>,
    /// Files per split, or one tagged output.
    pub mode: Mode,
    /// Key column names, in hash order; empty: the key the input records, else `src_addr`.
    pub keys: Vec<String>,
    /// The splits, in the order their ratios are walked.
    pub splits: Vec<SplitSpec>,
    /// Seed of the key hash.
    pub seed: u64,
    /// List column counted as measurements.
    pub measurements: String,
    /// Parquet compression.
    pub compression: Compression,
    /// Arrow IPC output compression (`None`: zstd for files, none on stdout).
    pub ipc_compression: Option<probe_core::output::IpcCompression>,
    /// Parquet row groups are closed at this encoded size.
    pub row_group_bytes: usize,
    /// Target decoded batch size.
    pub batch_bytes: usize,
    /// No progress or summary.
    pub quiet: bool,
    /// Worker threads (0 = one per core).
    pub threads: usize,
}

/// Counts of one split.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitCount {
    /// Split name.
    pub name: String,
    /// Ratio asked for.
    pub ratio: f64,
    /// Keys (rows) assigned.
    pub keys: u64,
    /// Measurements (list entries) of those keys.
    pub measurements: u64,
    /// The file written, with --out-dir.
    pub path: Option<PathBuf>,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// Per split, in `--ratios` order.
    pub splits: Vec<SplitCount>,
    /// Keys (rows) read.
    pub keys: u64,
    /// Measurements read.
    pub measurements: u64,
}

impl Report {
    /// The summary lines, `train: keys 9012 (90.1%), measurements 270000 (89.7%)`.
    pub fn lines(&self) -> Vec<String> {
        self.splits
            .iter()
            .map(|s| {
                format!(
                    "{}: keys {} ({}), measurements {} ({})",
                    s.name,
                    s.keys,
                    percent(s.keys, self.keys),
                    s.measurements,
                    percent(s.measurements, self.measurements)
                )
            })
            .collect()
    }
}

fn percent(part: u64, total: u64) -> String {
    if total == 0 {
        "-".to_string()
    } else {
        format!("{:.1}%", part as f64 * 100.0 / total as f64)
    }
}

/// Where assigned rows go: one file per split (written in a staging folder, committed at the
/// end), or one stream with a `split` column.
enum Sink {
    /// One output per split; with `--out-dir`, the staging folder they appear from together.
    Files(Vec<Output>, Option<Staging>),
    Tagged(Box<Output>, Tagger),
}

impl Sink {
    /// Write one batch whose rows are assigned to splits `idx`, closing row groups by size.
    fn write(&mut self, batch: &RecordBatch, idx: &[u32], row_group_bytes: usize) -> Result<()> {
        let write_one = |out: &mut Output, part: &RecordBatch| -> Result<()> {
            out.write(part)?;
            if out.in_progress_bytes() >= row_group_bytes {
                out.flush_row_group()?;
            }
            Ok(())
        };
        match self {
            Sink::Files(outs, _) => {
                for (i, out) in outs.iter_mut().enumerate() {
                    if let Some(part) = rows_of(batch, idx, i as u32)? {
                        write_one(out, &part)?;
                    }
                }
                Ok(())
            }
            Sink::Tagged(out, tagger) => write_one(out, &tagger.tag(batch, idx)?),
        }
    }

    /// Finish every output; split files appear in their folder only now, all at once.
    fn finish(self) -> Result<()> {
        match self {
            Sink::Files(outs, staging) => {
                for out in outs {
                    out.finish()?;
                }
                staging.map_or(Ok(()), Staging::commit)
            }
            Sink::Tagged(out, _) => out.finish().map(drop),
        }
    }
}

/// Keys and measurements counted per split.
struct Counts {
    keys: Vec<u64>,
    measurements: Vec<u64>,
}

impl Config {
    /// Run the stage.
    pub fn run(&self) -> Result<Report> {
        let threads = probe_core::threads::init(self.threads)?;
        let sources = discover(&self.inputs)?;
        self.check_outputs(&sources)?;
        let inputs = sources.iter().map(Input::open).collect::<Result<Vec<_>>>()?;
        let named: Vec<_> = inputs.iter().map(|i| (i.name().to_string(), i.schema())).collect();
        let schema = common_schema(&named, None)?;
        let first = inputs.first().map(|i| i.name().to_string()).unwrap_or_default();
        let (key_idx, m_idx) = self.resolve_columns(&schema, &first)?;
        let (mut sink, paths) = self.open_sink(&schema, &first, threads)?;

        let total_rows: Option<u64> = inputs.iter().map(|i| i.total_rows()).sum();
        let progress = Progress::new("probe-split", self.quiet, total_rows);
        let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        let mut assigner = Assigner::new(key_idx, &self.splits, self.seed);
        let mut counts = Counts { keys: vec![0; self.splits.len()], measurements: vec![0; self.splits.len()] };
        let (mut idx, mut lens) = (Vec::new(), Vec::new());
        for input in inputs {
            // Decoded (IPC decompressed) on a thread of its own while the batches are routed.
            let mut reader = input.reader(Some(&names), self.batch_bytes)?.ahead_with(threads)?;
            while let Some(batch) = reader.next_batch()? {
                let name = reader.name().to_string();
                let batch = RecordBatch::try_new(schema.clone(), batch.columns().to_vec())
                    .map_err(|e| Error::arrow(format!("reading {name}"), e))?;
                assigner.assign(&batch, &name, &mut idx)?;
                list_lengths(batch.column(m_idx).as_ref(), &mut lens)?;
                for (&i, &n) in idx.iter().zip(&lens) {
                    counts.keys[i as usize] += 1;
                    counts.measurements[i as usize] += n;
                }
                sink.write(&batch, &idx, self.row_group_bytes)?;
                progress.inc(batch.num_rows());
            }
        }
        sink.finish()?;
        let report = self.report(counts, paths);
        self.log_summary(&report, &progress);
        if let Mode::OutDir { dir, .. } = &self.mode {
            probe_core::output::keep_out_dir(dir);
        }
        Ok(report)
    }

    /// Refuse, before any work, an output that is one of the inputs.
    fn check_outputs(&self, sources: &[probe_core::input::Source]) -> Result<()> {
        match &self.mode {
            Mode::OutDir { dir, format } => {
                for sp in &self.splits {
                    check_output(&dir.join(format!("{}.{}", sp.name, format.extension())), sources)?;
                }
                Ok(())
            }
            Mode::Each { paths } => paths.iter().try_for_each(|p| check_output(p, sources)),
            Mode::Tag { output: Some(path) } => check_output(path, sources),
            Mode::Tag { output: None } => Ok(()),
        }
    }

    /// The key column indices (each of a type the key hash covers) and the measurements list
    /// column's index.
    fn resolve_columns(&self, schema: &Schema, first: &str) -> Result<(Vec<usize>, usize)> {
        let keys = resolve_keys(&self.keys, schema, first)?;
        check_columns(&keys, None, None)?;
        let mut key_idx = Vec::with_capacity(keys.len());
        for k in &keys {
            let i = column_index(schema, k, first)?;
            let dt = schema.field(i).data_type();
            if !hashable(dt) {
                return Err(Error::data(format!(
                    "{first}: key column `{k}` has type {dt}, which the key hash does not cover; use a string, \
                     binary, integer, boolean, date or timestamp column"
                )));
            }
            key_idx.push(i);
        }
        let m_idx = schema.index_of(&self.measurements).map_err(|_| {
            Error::data(format!(
                "{first}: no column `{}` to count measurements in; name the list column with --measurements",
                self.measurements
            ))
        })?;
        let m_type = schema.field(m_idx).data_type();
        if !is_list(m_type) {
            return Err(Error::data(format!(
                "{first}: --measurements column `{}` has type {m_type}, not a list; name the list column with --measurements",
                self.measurements
            )));
        }
        Ok((key_idx, m_idx))
    }

    /// Open the outputs; returns the sink and, per split, the final path of its file.
    fn open_sink(&self, schema: &SchemaRef, first: &str, threads: usize) -> Result<(Sink, Vec<Option<PathBuf>>)> {
        // Row groups are closed by size here (--row-group-size), not by the output's default
        // byte limit or a row count.
        let opts = OutputOptions {
            compression: self.compression,
            ipc_compression: self.ipc_compression,
            max_row_group_rows: usize::MAX,
            row_group_bytes: None,
            // One Parquet file per split is open at once: they share the allowance of row
            // groups waiting to be encoded that one output has (measured at 20M rows: 450 MiB
            // peak with a whole allowance each, 302 MiB shared), and of that only 32 MiB per
            // thread: more waiting row groups than threads to encode them add memory, not
            // speed (the whole job at 200M rows on 2 cores peaked at 480-522 MiB in split
            // with 128 MiB).
            parquet_in_flight_bytes: OutputOptions::default().parquet_in_flight_bytes.min((32 << 20) * threads.max(1))
                / self.splits.len().max(1),
        };
        let mut paths: Vec<Option<PathBuf>> = vec![None; self.splits.len()];
        let sink = match &self.mode {
            Mode::OutDir { dir, format } => {
                probe_core::output::create_out_dir(dir)?;
                // Every split file is written in a hidden staging folder and renamed into `dir`
                // only when all are complete: no split appears while another is missing.
                let stage = Staging::files_in(dir)?;
                let mut outs = Vec::with_capacity(self.splits.len());
                for (sp, slot) in self.splits.iter().zip(paths.iter_mut()) {
                    let name = format!("{}.{}", sp.name, format.extension());
                    outs.push(Output::create(Some(&stage.path().join(&name)), schema.clone(), &opts)?);
                    *slot = Some(stage.final_path(&name));
                }
                Sink::Files(outs, Some(stage))
            }
            Mode::Each { paths: each } => {
                let mut outs = Vec::with_capacity(each.len());
                for (path, slot) in each.iter().zip(paths.iter_mut()) {
                    outs.push(Output::create(Some(path), schema.clone(), &opts)?);
                    *slot = Some(path.clone());
                }
                Sink::Files(outs, None)
            }
            Mode::Tag { output } => {
                if schema.field_with_name(TAG_COLUMN).is_ok() {
                    return Err(Error::data(format!(
                        "{first}: already has a `{TAG_COLUMN}` column; drop it first, or use --out-dir"
                    )));
                }
                let tagger = Tagger::new(schema, &self.splits);
                Sink::Tagged(Box::new(Output::create(output.as_deref(), tagger.schema(), &opts)?), tagger)
            }
        };
        Ok((sink, paths))
    }

    fn report(&self, counts: Counts, paths: Vec<Option<PathBuf>>) -> Report {
        Report {
            splits: self
                .splits
                .iter()
                .zip(paths)
                .enumerate()
                .map(|(i, (sp, path))| SplitCount {
                    name: sp.name.clone(),
                    ratio: sp.ratio,
                    keys: counts.keys[i],
                    measurements: counts.measurements[i],
                    path,
                })
                .collect(),
            keys: counts.keys.iter().sum(),
            measurements: counts.measurements.iter().sum(),
        }
    }

    fn log_summary(&self, report: &Report, progress: &Progress) {
        for line in report.lines() {
            progress.log(&line);
        }
        progress.finish(
            report.keys,
            &[
                ("keys", report.keys.to_string()),
                ("measurements", report.measurements.to_string()),
                ("splits", self.splits.len().to_string()),
            ],
        );
    }
}
