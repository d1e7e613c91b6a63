//! probe-merge: many shard files (Parquet or Arrow IPC, any mix) -> final Parquet file(s).
//!
//! ```text
//! probe-merge work/train-rows.arrows --out-dir out/train     # part-00000.parquet ..., _manifest.json
//! probe-merge shards/ -o train.parquet
//! ```
//!
//! The stage is [`Config::run`] over a validated [`Config`]; `main.rs` only parses flags
//! ([`cli`]). `probe_core::schema` checks that the inputs agree, [`parts`] writes and rolls the output
//! files, [`manifest`] describes them.

pub mod cli;
pub mod manifest;
pub mod parts;

use std::path::PathBuf;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use parquet::basic::Compression;

use probe_core::cli::human_bytes;
use probe_core::input::{discover, Input, Source};
use probe_core::output::{check_output, OutputOptions};
use probe_core::progress::Progress;
use probe_core::schema::common_schema;
use probe_core::staging::Staging;
use probe_core::{Error, Result};

pub use cli::Args;

use crate::manifest::{columns, FileEntry, InputEntry, Manifest};
use crate::parts::{Parts, Written};

/// Where the merged rows go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One Parquet file.
    File(PathBuf),
    /// Part files and a manifest in a directory.
    Dir {
        /// The directory, created if missing.
        dir: PathBuf,
        /// Start a new part before one grows past this many bytes.
        max_file_bytes: u64,
    },
}

/// A validated `probe-merge` run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Input paths as given (`-` for stdin).
    pub inputs: Vec<String>,
    /// One file or a directory of parts.
    pub target: Target,
    /// Parquet row groups are closed at this encoded size.
    pub row_group_bytes: usize,
    /// Parquet compression.
    pub compression: Compression,
    /// Target decoded batch size.
    pub batch_bytes: usize,
    /// No progress or summary.
    pub quiet: bool,
    /// Worker threads (0 = one per core).
    pub threads: usize,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Rows written.
    pub rows: u64,
    /// Each input and the rows read from it, in order.
    pub inputs: Vec<(String, u64)>,
    /// Each output file, in row order.
    pub files: Vec<Written>,
    /// Total bytes of the output files.
    pub bytes: u64,
}

/// The inputs, opened once to check their schemas: stdin stays open (it can be read only
/// once); files are opened again when their turn comes, so thousands of shards do not hold
/// thousands of descriptors and footers.
struct Checked {
    sources: Vec<Source>,
    kept: Vec<Option<Input>>,
    schema: SchemaRef,
    total_rows: Option<u64>,
}

impl Config {
    /// Run the stage.
    pub fn run(&self) -> Result<Report> {
        probe_core::threads::init(self.threads)?;
        // The out-dir is built as a hidden sibling and renamed into place once complete, so a
        // killed run never leaves parts that a glob would read as the whole dataset.
        let staging = match &self.target {
            Target::Dir { dir, .. } => Some(Staging::whole_dir(dir)?),
            Target::File(_) => None,
        };
        let sources = discover(&self.inputs)?;
        if let Target::File(path) = &self.target {
            check_output(path, &sources)?;
        }
        let Checked { sources, kept, schema, total_rows } = check_inputs(sources)?;
        let mut parts = self.parts(&schema, staging.as_ref())?;
        let progress = Progress::new("probe-merge", self.quiet, total_rows);
        let mut report = self.copy_rows(&sources, kept, &schema, &mut parts, &progress)?;
        report.files = parts.finish()?;
        report.bytes = report.files.iter().map(|f| f.bytes).sum();
        if let Some(staging) = &staging {
            manifest(&report, &schema, staging).write(staging.path())?;
        }
        parts.commit();
        if let Some(staging) = staging {
            for f in &mut report.files {
                if let Some(name) = f.path.file_name().map(|n| n.to_string_lossy().into_owned()) {
                    f.path = staging.final_path(&name);
                }
            }
            staging.commit()?;
        }
        progress.finish(
            report.rows,
            &[
                ("input files", report.inputs.len().to_string()),
                ("output files", report.files.len().to_string()),
                ("bytes", human_bytes(report.bytes)),
            ],
        );
        Ok(report)
    }

    /// The output: one file, or parts rolled by size in the staging folder.
    fn parts(&self, schema: &SchemaRef, staging: Option<&Staging>) -> Result<Parts> {
        // Row groups are closed by size (--row-group-size), not by a row count.
        let opts = OutputOptions {
            compression: self.compression,
            max_row_group_rows: usize::MAX,
            row_group_bytes: None,
            ..Default::default()
        };
        Ok(match &self.target {
            Target::File(path) => Parts::single(path.clone(), schema.clone(), opts, self.row_group_bytes),
            Target::Dir { max_file_bytes, .. } => {
                let Some(staging) = staging else {
                    return Err(Error::internal("--out-dir without a staging folder"));
                };
                Parts::rolled(staging.path().to_path_buf(), *max_file_bytes, schema.clone(), opts, self.row_group_bytes)
            }
        })
    }

    /// Copy every input's rows, in order, into `parts`; the report's rows and inputs.
    fn copy_rows(
        &self,
        sources: &[Source],
        kept: Vec<Option<Input>>,
        schema: &SchemaRef,
        parts: &mut Parts,
        progress: &Progress,
    ) -> Result<Report> {
        let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        let mut report = Report::default();
        for (source, input) in sources.iter().zip(kept) {
            let input = match input {
                Some(i) => i,
                None => Input::open(source)?,
            };
            let name = input.name().to_string();
            // The file may have changed since the check; the reader would then fail on a
            // missing column, and the batch rebuild below on a changed type.
            // Not read ahead on a thread of its own, unlike split and batch: measured (2 threads,
            // 10M rows) it saved nothing here and cost 14-20 MiB, and merge's peak is the
            // whole job's highest.
            let mut reader = input.reader(Some(&names), self.batch_bytes)?;
            let mut rows = 0u64;
            while let Some(batch) = reader.next_batch()? {
                let batch = RecordBatch::try_new(schema.clone(), batch.columns().to_vec()).map_err(|e| {
                    Error::data(format!("{name}: its data does not fit the schema of the first input ({e}); all inputs must share one schema"))
                })?;
                parts.write(&batch)?;
                rows += batch.num_rows() as u64;
                progress.inc(batch.num_rows());
            }
            report.rows += rows;
            report.inputs.push((name, rows));
        }
        Ok(report)
    }
}

/// Open every input and check the schemas agree, before anything is written.
fn check_inputs(sources: Vec<Source>) -> Result<Checked> {
    let mut schemas = Vec::with_capacity(sources.len());
    let mut kept: Vec<Option<Input>> = Vec::with_capacity(sources.len());
    let mut total_rows = Some(0u64);
    for source in &sources {
        let input = Input::open(source)?;
        schemas.push((input.name().to_string(), input.schema()));
        total_rows = total_rows.zip(input.total_rows()).map(|(a, b)| a + b);
        kept.push(if source.read_once() { Some(input) } else { None });
    }
    let schema = common_schema(&schemas, None)?;
    Ok(Checked { sources, kept, schema, total_rows })
}

/// The `_manifest.json` of an out-dir: its files (names within the folder; URLs on a store),
/// inputs, totals and schema (as the parts store it: [`probe_core::output::parquet_schema`]).
fn manifest(report: &Report, schema: &SchemaRef, staging: &Staging) -> Manifest {
    Manifest {
        files: report
            .files
            .iter()
            .map(|f| FileEntry {
                path: match f.path.file_name().map(|n| n.to_string_lossy().into_owned()) {
                    // On a store the manifest lists each part's URL.
                    Some(n) if staging.uploads() => staging.final_path(&n).display().to_string(),
                    Some(n) => n,
                    None => f.path.display().to_string(),
                },
                rows: f.rows,
                bytes: f.bytes,
            })
            .collect(),
        inputs: report.inputs.iter().map(|(path, rows)| InputEntry { path: path.clone(), rows: *rows }).collect(),
        rows: report.rows,
        bytes: report.bytes,
        schema: columns(&probe_core::output::parquet_schema(schema)),
    }
}
