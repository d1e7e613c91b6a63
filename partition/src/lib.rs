//! probe-partition: measurements -> N key-hash buckets, the shuffle (map) step of a run across
//! machines.
//!
//! ```text
//! probe-partition --buckets 8 --out-dir shuffle/ --name part-00000 data/slice-0/
//! probe-partition --buckets 8 --out-dir shuffle/ --name part-00001 data/slice-1/
//! scripts/pipeline.sh shuffle/bucket-3 out/        # any bucket, on any machine, alone
//! ```
//!
//! The stage is [`Config::run`] over a validated [`Config`]; `main.rs` only parses flags
//! ([`cli`]). [`bucket`] hashes keys with [`probe_core::keyhash`] and buffers each bucket's
//! rows.
//!
//! # Algorithm
//! 1. Open every input (files, folders, stdin, URLs) and check they share one schema; resolve
//!    the key (hashable types only) and time columns from the options or the input's metadata.
//! 2. Open one Arrow IPC stream per bucket in a staging folder, `DIR/.probe-staging-NAME-<pid>/
//!    bucket-<i>/NAME.arrows`, with the input's schema and the key/time names recorded.
//! 3. Per input batch: hash every row's key on the pool ([`bucket::bucket_ids`]), copy each
//!    bucket's rows (in input order) into its buffer, and write out, on the pool, every buffer
//!    that holds `--buffer-size` or more. Which buffers are written when depends on the data only,
//!    so the files are byte-identical for any `--threads`.
//! 4. Write the rest, finish every stream (empty ones too), and rename them all into place.

pub mod bucket;
pub mod cli;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use rayon::prelude::*;

use probe_core::input::{column_index, discover, Input, Source};
use probe_core::keyhash::hashable;
use probe_core::meta::{carried, check_columns, record, resolve_keys, resolve_time};
use probe_core::output::{check_output, disk_error, IpcCompression, Output, OutputOptions};
use probe_core::progress::Progress;
use probe_core::schema::common_schema;
use probe_core::staging::Staging;
use probe_core::{Error, Result};

pub use bucket::{bucket_of, Bucket};
pub use cli::Args;

/// A validated `probe-partition` run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Input paths as given (`-` for stdin).
    pub inputs: Vec<String>,
    /// The folder of the bucket folders.
    pub out_dir: PathBuf,
    /// This run's file name in every bucket folder, without `.arrows`.
    pub name: String,
    /// Number of buckets.
    pub buckets: usize,
    /// Key column names; empty: the key the input records, else `src_addr`.
    pub keys: Vec<String>,
    /// Time column name; `None`: the one the input records, else `event_time`.
    pub time: Option<String>,
    /// A bucket's buffer is written when it holds this many decoded bytes.
    pub buffer_bytes: usize,
    /// Arrow IPC buffer compression of the bucket files.
    pub ipc_compression: IpcCompression,
    /// Target decoded input batch size.
    pub batch_bytes: usize,
    /// Worker threads (0 = one per core).
    pub threads: usize,
    /// No progress or summary.
    pub quiet: bool,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// Rows written to each bucket, by bucket number.
    pub rows: Vec<u64>,
    /// The file written in each bucket folder, by bucket number.
    pub paths: Vec<PathBuf>,
}

impl Report {
    /// Rows read (and written).
    pub fn total(&self) -> u64 {
        self.rows.iter().sum()
    }
}

/// The schema and key columns every batch is read with.
struct Prepared {
    inputs: Vec<Input>,
    schema: SchemaRef,
    out_schema: SchemaRef,
    key_idx: Vec<usize>,
}

impl Config {
    /// The file of bucket `i`, relative to the out-dir.
    pub fn file_of(&self, i: usize) -> String {
        format!("bucket-{i}/{}.arrows", self.name)
    }

    /// Run the stage.
    pub fn run(&self) -> Result<Report> {
        probe_core::threads::init(self.threads)?;
        let sources = discover(&self.inputs)?;
        self.check_outputs(&sources)?;
        let prepared = self.prepare(sources)?;
        self.create_out_dir()?;
        let staging = Staging::files_under(&self.out_dir, &self.name)?;
        let mut buckets = self.open_buckets(&staging, &prepared.out_schema)?;

        let total_rows: Option<u64> = prepared.inputs.iter().map(|i| i.total_rows()).sum();
        let progress = Progress::new("probe-partition", self.quiet, total_rows);
        let names: Vec<String> = prepared.schema.fields().iter().map(|f| f.name().clone()).collect();
        for input in prepared.inputs {
            let mut reader = input.reader(Some(&names), self.batch_bytes)?;
            while let Some(batch) = reader.next_batch()? {
                let name = reader.name().to_string();
                // The output schema: the common one, with the key and time names recorded.
                let batch = RecordBatch::try_new(prepared.out_schema.clone(), batch.columns().to_vec())
                    .map_err(|e| Error::arrow(format!("reading {name}"), e))?;
                self.route(&batch, &prepared.key_idx, &name, &mut buckets)?;
                progress.inc(batch.num_rows());
            }
        }
        let schema = &prepared.out_schema;
        let rows = buckets.into_par_iter().map(|b| b.finish(schema)).collect::<Result<Vec<u64>>>()?;
        let paths = (0..self.buckets).map(|i| staging.final_path(&self.file_of(i))).collect();
        staging.commit()?;
        let report = Report { rows, paths };
        self.log_summary(&report, &progress);
        Ok(report)
    }

    /// Refuse, before any work, a bucket file that is one of the inputs.
    fn check_outputs(&self, sources: &[Source]) -> Result<()> {
        (0..self.buckets).try_for_each(|i| check_output(&self.out_dir.join(self.file_of(i)), sources))
    }

    /// Open the inputs, check they agree on every column, and resolve the key and time columns.
    fn prepare(&self, sources: Vec<Source>) -> Result<Prepared> {
        let inputs = sources.iter().map(Input::open).collect::<Result<Vec<_>>>()?;
        let named: Vec<_> = inputs.iter().map(|i| (i.name().to_string(), i.schema())).collect();
        // Every column is carried, so every input must have the same columns.
        let schema = common_schema(&named, None)?;
        let first = inputs.first().map(|i| i.name().to_string()).unwrap_or_default();
        let keys = resolve_keys(&self.keys, &schema, &first)?;
        let time = resolve_time(self.time.as_deref(), &schema, &first)?;
        check_columns(&keys, Some(&time), None)?;
        let key_idx = keys.iter().map(|k| key_column(&schema, k, &first)).collect::<Result<Vec<_>>>()?;
        column_index(&schema, &time, &first).map_err(|_| {
            Error::data(format!(
                "{first}: no time column `{time}`; name it with --time (the bucket files record it for the next stages)"
            ))
        })?;
        let fields = schema.fields().clone();
        let out_schema = Arc::new(record(Schema::new_with_metadata(fields, carried(schema.metadata())), &keys, &time));
        Ok(Prepared { inputs, schema, out_schema, key_idx })
    }

    /// Create the out-dir if missing. Unlike other stages' `--out-dir`, it is not removed when
    /// this run fails: M map tasks share it, and another task's finished files may be in it
    /// by then.
    fn create_out_dir(&self) -> Result<()> {
        let dir = &self.out_dir;
        if probe_core::store::path_is_url(dir) {
            return Ok(());
        }
        if dir.exists() && !dir.is_dir() {
            return Err(Error::data(format!(
                "{}: exists and is not a directory; choose another --out-dir",
                display(dir)
            )));
        }
        std::fs::create_dir_all(dir).map_err(|e| disk_error(dir, e))
    }

    /// One IPC stream per bucket, in the staging folder.
    fn open_buckets(&self, staging: &Staging, schema: &SchemaRef) -> Result<Vec<Bucket>> {
        let opts = OutputOptions { ipc_compression: Some(self.ipc_compression), ..Default::default() };
        (0..self.buckets)
            .map(|i| {
                let path = staging.path().join(self.file_of(i));
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| disk_error(dir, e))?;
                }
                Ok(Bucket::new(Output::create(Some(&path), schema.clone(), &opts).map_err(|e| too_many(e, self))?))
            })
            .collect()
    }

    /// Give every row of `batch` to its bucket; write out the buffers that are full.
    fn route(&self, batch: &RecordBatch, key_idx: &[usize], name: &str, buckets: &mut [Bucket]) -> Result<()> {
        let ids = bucket::bucket_ids(batch, key_idx, self.buckets, name)?;
        for (b, rows) in buckets.iter_mut().zip(bucket::rows_by_bucket(&ids, self.buckets)) {
            b.push(batch, rows)?;
        }
        let schema = batch.schema();
        let limit = self.buffer_bytes;
        buckets.par_iter_mut().filter(|b| b.buffered_bytes() >= limit).try_for_each(|b| b.flush(&schema))
    }

    fn log_summary(&self, report: &Report, progress: &Progress) {
        let min = report.rows.iter().min().copied().unwrap_or(0);
        let max = report.rows.iter().max().copied().unwrap_or(0);
        let empty = report.rows.iter().filter(|&&r| r == 0).count();
        progress.log(&format!(
            "buckets {}: rows per bucket min {min}, max {max}, {empty} empty; files {}/bucket-*/{}.arrows",
            self.buckets,
            display(&self.out_dir),
            self.name
        ));
        progress.finish(report.total(), &[("buckets", self.buckets.to_string())]);
    }
}

/// A key column of a type the key hash covers.
fn key_column(schema: &Schema, key: &str, first: &str) -> Result<usize> {
    let i = column_index(schema, key, first)?;
    let dt = schema.field(i).data_type();
    if !hashable(dt) {
        return Err(Error::data(format!(
            "{first}: key column `{key}` has type {dt}, which the key hash does not cover; use a string, binary, \
             integer, boolean, date or timestamp column"
        )));
    }
    Ok(i)
}

/// Opening a bucket's file failed: with many buckets, most likely the open-file limit.
fn too_many(e: Error, cfg: &Config) -> Error {
    let text = e.to_string();
    if text.contains("Too many open files") || text.contains("os error 24") {
        return Error::data(format!(
            "{}: cannot open {} bucket files at once (too many open files); raise the limit (ulimit -n) or use \
             fewer --buckets",
            display(&cfg.out_dir),
            cfg.buckets
        ));
    }
    e
}

fn display(p: &Path) -> String {
    p.display().to_string()
}
