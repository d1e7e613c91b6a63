//! probe-group: measurements -> one row per key with a time-ordered list of its measurements.
//!
//! ```text
//! probe-group data/ -o grouped.arrows            # inputs sorted by (key, time), k-way merged
//! probe-group --sort --memory-limit 1GiB data/   # any order, external sort
//! ```
//!
//! The stage is [`Config::run`] over a validated [`Config`]; `main.rs` only parses flags.
//! [`merge`] checks and merges sorted inputs, [`grouper`] builds the list column, [`sort`]
//! turns unordered input into sorted runs first.

pub mod cli;
pub mod grouper;
pub mod merge;
pub mod ranges;
pub mod sort;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use parquet::basic::Compression;

use probe_core::columns::key_time_indices;
use probe_core::input::{discover, Input};
use probe_core::meta::{check_columns, record, resolve_keys, resolve_time};
use probe_core::output::{check_output, check_stdout_not_terminal, IpcCompression, Output, OutputOptions};
use probe_core::progress::{physical_memory_bytes, Progress};
use probe_core::schema::common_schema;
use probe_core::{Error, Result};

pub use cli::Args;

use crate::grouper::{output_schema, BuildJob, Grouper};
use crate::merge::{key_converter, Cursor, Layout, SourceKind};

/// A validated `probe-group` run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Input paths as given (`-` for stdin).
    pub inputs: Vec<String>,
    /// Output file, or stdout.
    pub output: Option<PathBuf>,
    /// Key column names; empty: the key the input records, else `src_addr`.
    pub keys: Vec<String>,
    /// Time column name; `None`: the one the input records, else `event_time`.
    pub time: Option<String>,
    /// Payload projection (None = all other columns).
    pub columns: Option<Vec<String>>,
    /// External sort.
    pub sort: bool,
    /// Memory budget for the sort.
    pub memory_limit: u64,
    /// Spill directory.
    pub temp_dir: PathBuf,
    /// Parquet output compression.
    pub compression: Compression,
    /// Arrow IPC output compression (`None`: zstd for files, none on stdout).
    pub ipc_compression: Option<IpcCompression>,
    /// Target decoded batch size.
    pub batch_bytes: usize,
    /// Merge fan-in for the sort.
    pub fan_in: usize,
    /// Worker threads (0 = one per core).
    pub threads: usize,
    /// Rows per key range of sorted Parquet inputs (`None`: [`ranges::range_rows`]).
    pub range_rows: Option<u64>,
    /// No progress or summary.
    pub quiet: bool,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Measurements read and written.
    pub rows: u64,
    /// Keys (output rows).
    pub keys: u64,
    /// Measurements of the largest key.
    pub largest_group: u64,
    /// Sorted runs spilled by --sort.
    pub spilled_runs: u64,
    /// Intermediate merge passes by --sort.
    pub merge_passes: u64,
    /// Bytes spilled by --sort.
    pub spilled_bytes: u64,
}

impl Config {
    /// Check sorted inputs the sequential way, building nothing: the error one thread reports
    /// (the first in merge order), if any.
    fn sequential_error(
        &self,
        sources: &[probe_core::input::Source],
        projection: &[String],
        batch_bytes: usize,
        converter: &Arc<arrow::row::RowConverter>,
        layout: &Arc<Layout>,
    ) -> Option<Error> {
        let run = || -> Result<()> {
            let mut cursors = Vec::with_capacity(sources.len());
            for (i, s) in sources.iter().enumerate() {
                let r = Input::open(s)?.reader(Some(projection), batch_bytes)?;
                cursors.push(Cursor::new(Box::new(r), i, converter.clone(), layout.clone(), SourceKind::Input));
            }
            let schema = Arc::new(arrow::datatypes::Schema::empty());
            let mut emit = |_job: BuildJob| Ok(());
            let mut grouper = Grouper::new(schema, layout.n_keys, self.batch_bytes, &mut emit);
            merge::merge(cursors, &mut grouper, &mut |_| {})?;
            grouper.finish().map(|_| ())
        };
        run().err()
    }
}

/// The smallest `--memory-limit`: below it, peak memory no longer follows the limit (measured
/// with `/usr/bin/time -v` on 2M shuffled rows: see the README's Memory section).
pub const MIN_MEMORY_LIMIT: u64 = 16 << 20;

/// The default --memory-limit: a quarter of physical memory, at most 4 GiB.
pub fn default_memory_limit() -> u64 {
    let phys = physical_memory_bytes().unwrap_or(4 << 30);
    (phys / 4).clamp(256 << 20, 4 << 30)
}

impl Args {
    /// Check the flags and turn them into a config.
    pub fn into_config(self) -> Result<Config> {
        check_columns(&self.keys.key.key, self.keys.time.as_deref(), self.columns.as_deref())?;
        if self.fan_in < 2 {
            return Err(Error::config("--fan-in must be at least 2"));
        }
        let memory_limit = self.memory_limit.unwrap_or_else(default_memory_limit);
        if memory_limit < MIN_MEMORY_LIMIT && !(self.allow_small_memory_limit && memory_limit >= 1024) {
            return Err(Error::usage(format!(
                "--memory-limit {} is below {}, the least --sort can keep to (its fixed overhead and one \
                 batch per merged run do not shrink with the limit); give at least {}",
                probe_core::cli::human_bytes(memory_limit),
                probe_core::cli::human_bytes(MIN_MEMORY_LIMIT),
                probe_core::cli::human_bytes(MIN_MEMORY_LIMIT),
            )));
        }
        check_stdout_not_terminal(self.output.output.as_deref())?;
        Ok(Config {
            inputs: self.input.inputs,
            output: self.output.output,
            keys: self.keys.key.key,
            time: self.keys.time,
            columns: self.columns,
            sort: self.sort,
            memory_limit,
            temp_dir: self.temp_dir.unwrap_or_else(std::env::temp_dir),
            compression: self.compression,
            ipc_compression: self.output.ipc_compression,
            batch_bytes: self.batch_size.clamp(1, 1 << 30) as usize,
            fan_in: self.fan_in,
            threads: self.threads.threads,
            range_rows: self.range_rows,
            quiet: self.log.quiet,
        })
    }
}

impl Config {
    /// Run the stage.
    pub fn run(&self) -> Result<Report> {
        let threads = probe_core::threads::init(self.threads)?.max(1);
        let sources = discover(&self.inputs)?;
        if let Some(path) = &self.output {
            check_output(path, &sources)?;
        }
        let inputs = sources.iter().map(Input::open).collect::<Result<Vec<_>>>()?;
        let named: Vec<_> = inputs.iter().map(|i| (i.name().to_string(), i.schema())).collect();
        let first = &inputs[0];
        let schema = first.schema();
        let keys = resolve_keys(&self.keys, &schema, first.name())?;
        let time = resolve_time(self.time.as_deref(), &schema, first.name())?;
        check_columns(&keys, Some(&time), self.columns.as_deref())?;
        let (key_idx, time_idx) = key_time_indices(&schema, &keys, &time, first.name())?;
        let payload: Vec<String> = match &self.columns {
            Some(cols) => cols.clone(),
            None => {
                // Every column is read, so every input must have the same columns: a column
                // missing from the first input would otherwise be dropped without a word.
                common_schema(&named, None)?;
                schema
                    .fields()
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !key_idx.contains(i) && *i != time_idx)
                    .map(|(_, f)| f.name().clone())
                    .collect()
            }
        };
        let mut projection: Vec<String> = keys.clone();
        projection.push(time.clone());
        projection.extend(payload);
        // The columns read, checked across inputs before anything is written; a column is
        // nullable in the output if it is in any input.
        let proj_schema = common_schema(&named, Some(&projection))?;
        let total_rows: Option<u64> = inputs.iter().map(|i| i.total_rows()).sum();

        // Under --sort the decoded batch is part of the budget. A k-way merge holds one batch per
        // input, so many inputs share the batch budget (down to 256 KiB each).
        let batch_bytes = if self.sort {
            self.batch_bytes.min((self.memory_limit / 16).max(1024) as usize)
        } else {
            (self.batch_bytes / inputs.len().max(1)).max(self.batch_bytes.min(256 << 10))
        };
        let out_batch_bytes = if self.sort { batch_bytes } else { self.batch_bytes };
        // Sorted Parquet inputs with statistics: key ranges in parallel (same plan, and so the
        // same output, for any --threads). Anything else: the streaming merge below.
        let plan = if self.sort {
            None
        } else {
            ranges::plan(&sources, &projection, &proj_schema, batch_bytes, self.range_rows)?
        };
        let mut readers = Vec::with_capacity(inputs.len());
        if plan.is_none() {
            for input in inputs {
                readers.push(input.reader(Some(&projection), batch_bytes)?);
            }
        }
        // Later stages take their --key and --time from what the output records.
        let out_schema = Arc::new(record(output_schema(&proj_schema, keys.len()).as_ref().clone(), &keys, &time));
        let layout = Arc::new(Layout { n_keys: keys.len(), key_names: keys.clone(), time_name: time.clone() });
        let empty = arrow::record_batch::RecordBatch::new_empty(proj_schema.clone());
        let converter = Arc::new(key_converter(&empty, keys.len())?);

        let progress = Progress::new("probe-group", self.quiet, total_rows);
        let opts = OutputOptions {
            compression: self.compression,
            ipc_compression: self.ipc_compression,
            ..Default::default()
        };
        let output = Output::create(self.output.as_deref(), out_schema.clone(), &opts)?;
        let mut report = Report::default();

        if let Some(plan) = &plan {
            let shared = ranges::Shared {
                layout: layout.clone(),
                converter: converter.clone(),
                out_schema: out_schema.clone(),
                out_batch_bytes,
                progress: &progress,
            };
            let (keys, rows, largest) = match ranges::run(plan, &shared, threads, output) {
                Ok((output, counts)) => {
                    output.finish()?;
                    counts
                }
                Err(ranges::Failure::Write(e)) => return Err(e),
                // The same message as one thread gives: the first failure in merge order.
                Err(ranges::Failure::Range(e)) => {
                    return Err(self
                        .sequential_error(&sources, &projection, batch_bytes, &converter, &layout)
                        .unwrap_or(e))
                }
            };
            report.rows = rows;
            report.keys = keys;
            report.largest_group = largest;
            let fields = vec![
                ("keys", keys.to_string()),
                ("largest key", format!("{largest} rows")),
                ("key ranges", plan.ranges().to_string()),
            ];
            progress.finish(rows, &fields);
            return Ok(report);
        }

        let cursors: Vec<Cursor> = if self.sort {
            let sorted = sort::sort_inputs(readers, &proj_schema, self, &layout, &progress)?;
            report.spilled_runs = sorted.runs;
            report.merge_passes = sorted.passes;
            report.spilled_bytes = sorted.bytes;
            sorted
                .sources
                .into_iter()
                .enumerate()
                .map(|(i, s)| Cursor::new(s, i, converter.clone(), layout.clone(), SourceKind::SortedRun))
                .collect()
        } else if threads > 1 && readers.len() <= 4 * threads {
            // Each input decoded and checked on a thread of its own, two batches ahead; past a
            // few inputs per thread, more reader threads would only compete for the cores.
            readers
                .into_iter()
                .enumerate()
                .map(|(i, r)| {
                    Cursor::read_ahead(Box::new(r), i, converter.clone(), layout.clone(), SourceKind::Input, 2)
                })
                .collect::<Result<_>>()?
        } else {
            readers
                .into_iter()
                .enumerate()
                .map(|(i, r)| Cursor::new(Box::new(r), i, converter.clone(), layout.clone(), SourceKind::Input))
                .collect()
        };

        // Output batches are cut here, in merge order, built on the pool (up to one per thread
        // at a time) and encoded by the writer thread in the same order: IPC, or Parquet, itself
        // encoded on the pool. The bounded queue keeps memory at about one output batch per
        // thread.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Receiver<Result<RecordBatch>>>(threads);
        let writer = std::thread::spawn(move || -> Result<Output> {
            let mut output = output;
            for pending in rx {
                let batch = pending.recv().map_err(|_| Error::internal("an output batch was never built"))??;
                output.write(&batch)?;
            }
            Ok(output)
        });
        let grouped = (|| -> Result<(u64, u64, u64)> {
            // A failed send means the writer stopped on an error, which `join` below returns.
            let mut emit = |job: BuildJob| {
                let (done, pending) = std::sync::mpsc::sync_channel(1);
                let run = move || {
                    let built = catch_unwind(AssertUnwindSafe(job))
                        .unwrap_or_else(|_| Err(Error::internal("building an output batch panicked")));
                    let _ = done.send(built);
                };
                if threads > 1 {
                    rayon::spawn(run);
                } else {
                    run();
                }
                tx.send(pending).map_err(|_| Error::data("probe-group: output writer stopped"))
            };
            let mut grouper = Grouper::new(out_schema, keys.len(), out_batch_bytes, &mut emit);
            let counting = !self.sort;
            merge::merge(cursors, &mut grouper, &mut |n| {
                if counting {
                    progress.inc(n)
                }
            })?;
            grouper.finish()
        })();
        drop(tx);
        let written = writer.join().map_err(|_| Error::data("probe-group: the output writer panicked"))?;
        let (keys, rows, largest) = match (grouped, written) {
            (_, Err(e)) => return Err(e),
            (Err(e), Ok(_)) => return Err(e),
            (Ok(counts), Ok(output)) => {
                output.finish()?;
                counts
            }
        };
        report.rows = rows;
        report.keys = keys;
        report.largest_group = largest;
        let mut fields = vec![("keys", keys.to_string()), ("largest key", format!("{largest} rows"))];
        if self.sort {
            fields.push(("spilled runs", report.spilled_runs.to_string()));
            fields.push(("merge passes", report.merge_passes.to_string()));
            fields.push(("spilled", probe_core::cli::human_bytes(report.spilled_bytes)));
            fields.push(("memory limit", probe_core::cli::human_bytes(self.memory_limit)));
        }
        progress.finish(rows, &fields);
        Ok(report)
    }
}
