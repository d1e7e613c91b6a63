//! probe-group: measurements -> one row per key with a time-ordered list of its measurements.
//!
//! ```text
//! probe-group data/ -o grouped.arrows            # inputs sorted by (key, time), k-way merged
//! probe-group --sort --memory-limit 1GiB data/   # any order, external sort
//! ```
//!
//! The stage is [`Config::run`] over a validated [`Config`]; `main.rs` only parses flags.
//! [`merge`] checks and merges sorted inputs, [`grouper`] builds the list column, [`ranges`]
//! splits sorted Parquet inputs into key ranges grouped in parallel, [`sort`] turns unordered
//! input into sorted runs first, written and read back by [`spill`].

pub mod cli;
pub mod grouper;
pub mod merge;
pub mod ordered;
pub mod ranges;
pub mod sort;
pub mod spill;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow::row::RowConverter;
use parquet::basic::Compression;

use probe_core::columns::key_time_indices;
use probe_core::input::{discover, BatchReader, Input, Source};
use probe_core::meta::{check_columns, record, resolve_keys, resolve_time};
use probe_core::output::{check_output, check_stdout_not_terminal, IpcCompression, OutFormat, Output, OutputOptions};
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
    /// Rows of `--sort`'s first run per part, at least (`None`: [`sort::MIN_PART_ROWS`]).
    pub sort_part_rows: Option<usize>,
    /// Smallest `--sort` run that overlaps (`None`: [`sort::OVERLAP_MIN_RUN_BYTES`]).
    pub sort_overlap_min_run: Option<usize>,
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
    /// Bytes of the inputs as stored (`None` when one is stdin).
    pub input_bytes: Option<u64>,
    /// Payload columns read as Arrow dictionaries ([`ranges::Dictionaries`]).
    pub dictionary_columns: usize,
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
        let output = self.output.path();
        check_stdout_not_terminal(output.as_deref())?;
        Ok(Config {
            inputs: self.input.inputs,
            output,
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
            sort_part_rows: self.sort_part_rows,
            sort_overlap_min_run: self.sort_overlap_min_run,
            quiet: self.log.quiet,
        })
    }
}

/// The inputs opened and checked, before anything is written: which columns are read, and
/// the schema they have across all inputs.
struct Prepared {
    sources: Vec<Source>,
    inputs: Vec<Input>,
    keys: Vec<String>,
    projection: Vec<String>,
    proj_schema: SchemaRef,
    total_rows: Option<u64>,
    /// Bytes of the inputs as stored, for the summary (`None` when one is stdin).
    input_bytes: Option<u64>,
}

/// What the merge, the grouper and the writer share: derived from [`Prepared`] once.
struct Shape {
    layout: Arc<Layout>,
    converter: Arc<RowConverter>,
    out_schema: SchemaRef,
}

/// The output schema for the columns read, recording the key and time columns so later stages
/// take their --key and --time from it.
fn recorded_output_schema(proj_schema: &arrow::datatypes::Schema, keys: &[String], time: &str) -> SchemaRef {
    let out_schema = output_schema(proj_schema, keys.len());
    Arc::new(record(out_schema.as_ref().clone(), keys, time))
}

/// Keys, measurements and the largest key's measurements, as the grouper counts them.
type Counts = (u64, u64, u64);

impl Config {
    /// Run the stage: open and check the inputs, then group them by key ranges in parallel
    /// (sorted Parquet with statistics) or through one streaming merge (anything else, and
    /// `--sort`'s runs), and print the summary.
    pub fn run(&self) -> Result<Report> {
        let threads = probe_core::threads::init(self.threads)?.max(1);
        let prepared = self.prepare()?;
        let batch_bytes = self.input_batch_bytes(prepared.inputs.len());
        let out_batch_bytes = if self.sort { batch_bytes } else { self.batch_bytes };
        // Sorted Parquet inputs with statistics: key ranges in parallel (same plan, and so the
        // same output, for any --threads). Anything else: the streaming merge.
        // Payload strings stay dictionaries where the output is Parquet, whose writer takes them
        // as they are; an IPC output would have to decode them all the same.
        let to_parquet = self.output.as_deref().is_some_and(|p| OutFormat::for_path(p) == OutFormat::Parquet);
        let dictionaries = to_parquet.then_some(ranges::Dictionaries { payload_from: prepared.keys.len() + 1 });
        let plan = match self.sort {
            true => None,
            false => ranges::plan(
                &prepared.sources,
                &prepared.projection,
                &prepared.proj_schema,
                batch_bytes,
                self.range_rows,
                dictionaries,
            )?,
        };
        let shape = self.shape(&prepared)?;
        let progress = Progress::new("probe-group", self.quiet, prepared.total_rows);
        if let Some(plan) = &plan {
            let output = self.create_output(&shape)?;
            let counts =
                self.group_ranges(plan, &prepared, &shape, batch_bytes, out_batch_bytes, threads, output, &progress)?;
            let dictionary_columns = plan.dictionary_columns();
            let report = Report { input_bytes: prepared.input_bytes, dictionary_columns, ..Report::default() };
            return Ok(self.summary(counts, report, Some(plan.ranges()), &progress));
        }
        let Prepared { inputs, projection, proj_schema, input_bytes, total_rows, .. } = prepared;
        let readers =
            inputs.into_iter().map(|i| i.reader(Some(&projection), batch_bytes)).collect::<Result<Vec<_>>>()?;
        let output = self.create_output(&shape)?;
        let mut report = Report { input_bytes, ..Report::default() };
        if self.sort {
            let sorted = sort::sort_inputs(readers, total_rows, &proj_schema, self, &shape.layout, &progress)?;
            report.spilled_runs = sorted.runs;
            report.merge_passes = sorted.passes;
            report.spilled_bytes = sorted.bytes;
            let counts = self.group_parts(&sorted, &shape, batch_bytes, out_batch_bytes, threads, output)?;
            return Ok(self.summary(counts, report, None, &progress));
        }
        let cursors = self.cursors(readers, &shape, threads)?;
        let counts = self.group_merged(cursors, &shape, out_batch_bytes, threads, output, &progress)?;
        Ok(self.summary(counts, report, None, &progress))
    }

    /// Open every input, resolve the key and time columns (options, else the input's metadata)
    /// and check that the inputs agree on every column read.
    fn prepare(&self) -> Result<Prepared> {
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
        projection.push(time);
        projection.extend(payload);
        // The columns read, checked across inputs before anything is written; a column is
        // nullable in the output if it is in any input.
        let proj_schema = common_schema(&named, Some(&projection))?;
        let total_rows: Option<u64> = inputs.iter().map(|i| i.total_rows()).sum();
        let input_bytes: Option<u64> = inputs.iter().map(|i| i.size()).sum();
        Ok(Prepared { sources, inputs, keys, projection, proj_schema, total_rows, input_bytes })
    }

    /// Bytes of one decoded input batch. Under --sort the decoded batch is part of the budget;
    /// a k-way merge holds one batch per input, so many inputs share the batch budget (down to
    /// 256 KiB each).
    pub(crate) fn input_batch_bytes(&self, inputs: usize) -> usize {
        if self.sort {
            self.batch_bytes.min((self.memory_limit / 16).max(1024) as usize)
        } else {
            (self.batch_bytes / inputs.max(1)).max(self.batch_bytes.min(256 << 10))
        }
    }

    /// The merge layout, the key converter and the output schema, which records the key and
    /// time columns so later stages take their --key and --time from it.
    fn shape(&self, prepared: &Prepared) -> Result<Shape> {
        let keys = &prepared.keys;
        let time = prepared.projection[keys.len()].clone();
        let out_schema = recorded_output_schema(&prepared.proj_schema, keys, &time);
        let layout = Arc::new(Layout { n_keys: keys.len(), key_names: keys.clone(), time_name: time });
        let empty = RecordBatch::new_empty(prepared.proj_schema.clone());
        let converter = Arc::new(key_converter(&empty, keys.len())?);
        Ok(Shape { layout, converter, out_schema })
    }

    fn create_output(&self, shape: &Shape) -> Result<Output> {
        let opts = OutputOptions {
            compression: self.compression,
            ipc_compression: self.ipc_compression,
            ..Default::default()
        };
        Output::create(self.output.as_deref(), shape.out_schema.clone(), &opts)
    }

    /// Key ranges of sorted Parquet inputs, grouped in parallel and written in key order. A
    /// range that fails is reported as one thread would: the first failure in merge order.
    #[allow(clippy::too_many_arguments)] // one call site; each is a distinct piece of the run
    fn group_ranges(
        &self,
        plan: &ranges::Plan,
        prepared: &Prepared,
        shape: &Shape,
        batch_bytes: usize,
        out_batch_bytes: usize,
        threads: usize,
        output: Output,
        progress: &Progress,
    ) -> Result<Counts> {
        // The grouper builds batches of the types read (dictionaries included); the writer's
        // schema stays `shape.out_schema`, of the plain types.
        let out_schema = match plan.physical_schema() {
            Some(physical) => recorded_output_schema(physical, &shape.layout.key_names, &shape.layout.time_name),
            None => shape.out_schema.clone(),
        };
        let shared = ranges::Shared {
            layout: shape.layout.clone(),
            converter: shape.converter.clone(),
            out_schema,
            out_batch_bytes,
            progress,
        };
        match ranges::run(plan, &shared, threads, output) {
            Ok((output, counts)) => {
                output.finish()?;
                Ok(counts)
            }
            Err(ranges::Failure::Write(e)) => Err(e),
            Err(ranges::Failure::Range(e)) => Err(self
                .sequential_error(&prepared.sources, &prepared.projection, batch_bytes, &shape.converter, &shape.layout)
                .unwrap_or(e)),
        }
    }

    /// The merge's cursors: the inputs (each decoded and checked on a thread of its own when
    /// there are threads to spare).
    fn cursors(&self, readers: Vec<BatchReader>, shape: &Shape, threads: usize) -> Result<Vec<Cursor>> {
        let (converter, layout) = (&shape.converter, &shape.layout);
        let inputs = readers.into_iter().enumerate();
        if threads > 1 && inputs.len() <= 4 * threads {
            // Two batches ahead per input; past a few inputs per thread, more reader threads
            // would only compete for the cores.
            inputs
                .map(|(i, r)| {
                    Cursor::read_ahead(Box::new(r), i, converter.clone(), layout.clone(), SourceKind::Input, 2)
                })
                .collect()
        } else {
            Ok(inputs
                .map(|(i, r)| Cursor::new(Box::new(r), i, converter.clone(), layout.clone(), SourceKind::Input))
                .collect())
        }
    }

    /// One streaming merge into the grouper. Output batches are cut here, in merge order,
    /// built on the pool (up to one per thread at a time) and encoded by the writer thread in
    /// the same order: IPC, or Parquet, itself encoded on the pool. The bounded queue keeps
    /// memory at about one output batch per thread.
    fn group_merged(
        &self,
        cursors: Vec<Cursor>,
        shape: &Shape,
        out_batch_bytes: usize,
        threads: usize,
        output: Output,
        progress: &Progress,
    ) -> Result<Counts> {
        if threads <= 1 {
            return self.group_merged_here(cursors, shape, out_batch_bytes, output, progress);
        }
        let (tx, rx) = std::sync::mpsc::sync_channel::<Receiver<Result<RecordBatch>>>(threads);
        let writer = std::thread::spawn(move || -> Result<Output> {
            let mut output = output;
            for pending in rx {
                let batch = pending.recv().map_err(|_| Error::internal("an output batch was never built"))??;
                output.write(&batch)?;
            }
            Ok(output)
        });
        let grouped = (|| -> Result<Counts> {
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
                tx.send(pending).map_err(|_| Error::internal("the output writer stopped"))
            };
            let mut grouper = Grouper::new(shape.out_schema.clone(), shape.layout.n_keys, out_batch_bytes, &mut emit);
            merge::merge(cursors, &mut grouper, &mut |n| progress.inc(n))?;
            grouper.finish()
        })();
        drop(tx);
        let written = writer.join().map_err(|_| Error::internal("the output writer panicked"))?;
        // The writer's error explains a grouping error that only says the writer stopped.
        let output = written?;
        let counts = grouped?;
        output.finish()?;
        Ok(counts)
    }

    /// [`Self::group_merged`] on this thread alone (`--threads 1`: one core, nothing overlapped).
    fn group_merged_here(
        &self,
        cursors: Vec<Cursor>,
        shape: &Shape,
        out_batch_bytes: usize,
        mut output: Output,
        progress: &Progress,
    ) -> Result<Counts> {
        let mut emit = |job: BuildJob| output.write(&job()?);
        let mut grouper = Grouper::new(shape.out_schema.clone(), shape.layout.n_keys, out_batch_bytes, &mut emit);
        merge::merge(cursors, &mut grouper, &mut |n| progress.inc(n))?;
        let counts = grouper.finish()?;
        output.finish()?;
        Ok(counts)
    }

    /// `--sort`'s final merge: each part (key range) of the sorted runs merged and grouped on a
    /// thread of its own, as many at once as fit the memory limit, written in key order.
    fn group_parts(
        &self,
        sorted: &sort::Sorted,
        shape: &Shape,
        batch_bytes: usize,
        out_batch_bytes: usize,
        threads: usize,
        mut output: Output,
    ) -> Result<Counts> {
        let budget = sort::Budget::new(self.memory_limit, self.fan_in);
        // A part holds a batch (and its keys) per run, its open groups and an output batch.
        // Spilled, the half of the limit the run buffer used is theirs; in memory the run is
        // still there, and what the output queue below leaves (3/16) is. Each part keeps its
        // runs' files open (a few hundred at most).
        let limit = self.memory_limit as usize;
        let per_part =
            (sorted.final_runs.max(1) * 3 * budget.spill_batch_bytes).max(3 * batch_bytes) + 2 * out_batch_bytes;
        let free = if sorted.spilled() { limit / 2 } else { limit * 3 / 16 };
        let by_files = (512 / sorted.final_runs.max(1)).max(1);
        let at_once = (free / per_part.max(1)).clamp(1, threads.min(by_files));
        // The parts after the one being written may queue a quarter of the limit: enough for
        // every thread to run a part ahead when parts are a 128th of the input.
        let limits = ordered::Limits { ahead_bytes: limit / 4, current_bytes: (limit / 16).min(ranges::CURRENT_BYTES) };
        let (converter, layout) = (&shape.converter, &shape.layout);
        let work = |j: usize, send: &mut ordered::Send| -> Result<Counts> {
            let cursors: Vec<Cursor> = sorted
                .take_part(j)?
                .into_iter()
                .enumerate()
                .map(|(i, s)| Cursor::new(s, i, converter.clone(), layout.clone(), SourceKind::SortedRun))
                .collect();
            let mut emit = |job: BuildJob| send(job()?);
            let mut grouper = Grouper::new(shape.out_schema.clone(), layout.n_keys, out_batch_bytes, &mut emit);
            if !cursors.is_empty() {
                merge::merge(cursors, &mut grouper, &mut |_| {})?;
            }
            grouper.finish()
        };
        let results = ordered::run(sorted.parts(), at_once, limits, &mut output, &work).map_err(|f| match f {
            ordered::Failure::Write(e) | ordered::Failure::Piece(e) => e,
        })?;
        output.finish()?;
        Ok(results.into_iter().fold((0, 0, 0), |t, (k, r, l)| (t.0 + k, t.1 + r, t.2.max(l))))
    }

    /// The report and the summary line.
    fn summary(&self, counts: Counts, mut report: Report, ranges: Option<usize>, progress: &Progress) -> Report {
        let (keys, rows, largest) = counts;
        report.rows = rows;
        report.keys = keys;
        report.largest_group = largest;
        let mut fields = vec![("keys", keys.to_string()), ("largest key", format!("{largest} rows"))];
        // Exact, for scripts/pipeline.sh's report (the input's bytes against the temp disk).
        if let Some(b) = report.input_bytes {
            fields.push(("input", format!("{b} bytes ({})", probe_core::cli::human_bytes(b))));
        }
        if let Some(n) = ranges {
            fields.push(("key ranges", n.to_string()));
        }
        if self.sort {
            fields.push(("spilled runs", report.spilled_runs.to_string()));
            fields.push(("merge passes", report.merge_passes.to_string()));
            fields.push(("spilled", probe_core::cli::human_bytes(report.spilled_bytes)));
            fields.push(("memory limit", probe_core::cli::human_bytes(self.memory_limit)));
        }
        progress.finish(rows, &fields);
        report
    }
}
