//! probe-batch: probe rows -> model-ready sequence rows (sessions cut into windows), in parallel.
//!
//! ```text
//! probe-batch work/train.arrows --max-len 512 --max-gap 30m -o work/train-rows.arrows
//! ```
//!
//! The stage is [`Config::run`] over a validated [`Config`]; `main.rs` only parses flags.
//! [`layout`] checks the input schema and derives the output schema, [`window`] holds the
//! cutting rules, [`plan`] finds each batch's windows, [`build`] gathers them into output
//! batches; [`unique`] checks that no key is in two input rows.
//!
//! Parallelism keeps the output order: up to N (`--threads`) input batches are read at a time
//! and planned on the pool (each in row chunks); each batch's windows are cut into output
//! batches by size alone (never by the number of threads), and those are built a wave of N at
//! a time, collected in order, and written by the calling thread while the pool builds the next
//! wave (during the last wave the calling thread also reads the next input batches). Memory:
//! two sets of N input batches (one being read) with one set's window plans, and two waves of
//! N output batches, each about --batch-size.

pub mod build;
pub mod cli;
pub mod layout;
pub mod plan;
pub mod unique;
pub mod window;

use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use rayon::prelude::*;

use probe_core::input::{discover, BatchReader, Input};
use probe_core::meta::{check_columns, resolve_keys, resolve_time};
use probe_core::output::{check_output, Output, OutputOptions};
use probe_core::progress::Progress;
use probe_core::schema::check_agree;
use probe_core::{Error, Result};

pub use cli::Args;

use crate::build::build;
use crate::layout::Layout;
use crate::plan::{group, BatchView, Planned, Stats};
use crate::unique::UniqueKeys;
use crate::window::{gap_ticks, IntUnit, Rules};

/// A validated `probe-batch` run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Input paths as given (`-` for stdin).
    pub inputs: Vec<String>,
    /// Output file, or stdout.
    pub output: Option<PathBuf>,
    /// Arrow IPC output compression (`None`: zstd for files, none on stdout).
    pub ipc_compression: Option<probe_core::output::IpcCompression>,
    /// Key column names; empty: the key the input records, else `src_addr`.
    pub keys: Vec<String>,
    /// Time field inside the measurement struct; `None`: the one the input records, else
    /// `event_time`.
    pub time: Option<String>,
    /// The list-of-struct column.
    pub measurements: String,
    /// Shortest key and window kept (at least 1).
    pub min_len: usize,
    /// Session gap limit.
    pub max_gap: Option<Duration>,
    /// Longest window (None = whole session).
    pub max_len: Option<usize>,
    /// Distance between window starts (None exactly when `max_len` is None; at most `max_len`).
    pub stride: Option<usize>,
    /// Add the `dt` column.
    pub delta_time: bool,
    /// Unit of an integer time field (None = seconds).
    pub time_unit: Option<IntUnit>,
    /// Worker threads (0 = one per core).
    pub threads: usize,
    /// Target decoded batch size, input and output.
    pub batch_bytes: usize,
    /// No progress or summary.
    pub quiet: bool,
}

impl Config {
    /// A config with the CLI's defaults, for tests and embedding.
    pub fn new(inputs: Vec<String>, output: Option<PathBuf>) -> Config {
        Config {
            inputs,
            output,
            ipc_compression: None,
            keys: Vec::new(),
            time: None,
            measurements: "measurements".into(),
            min_len: 1,
            max_gap: None,
            max_len: None,
            stride: None,
            delta_time: false,
            time_unit: None,
            threads: 0,
            batch_bytes: probe_core::input::DEFAULT_BATCH_BYTES,
            quiet: true,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Output rows (windows) written.
    pub rows: u64,
    /// Keys read, dropped, and sessions, windows and measurements counted.
    pub stats: Stats,
    /// Output batches written.
    pub batches: u64,
}

impl Config {
    /// Run the stage.
    pub fn run(&self) -> Result<Report> {
        self.check()?;
        let threads = probe_core::threads::init(self.threads)?.max(1);

        let (inputs, layout) = self.open_inputs()?;
        let total_rows: Option<u64> = inputs.iter().map(|i| i.total_rows()).sum();
        let rules = Rules {
            min_len: self.min_len,
            max_gap_ticks: self.max_gap.map(|g| gap_ticks(g, layout.nanos_per_tick)),
            max_len: self.max_len,
            stride: self.stride,
        };

        let progress = Progress::new("probe-batch", self.quiet, total_rows);
        let opts = OutputOptions { ipc_compression: self.ipc_compression, ..Default::default() };
        let mut output = Output::create(self.output.as_deref(), layout.out_schema.clone(), &opts)?;
        let mut report = Report::default();
        let mut batches = Batches {
            inputs: inputs.into_iter(),
            current: None,
            layout: &layout,
            batch_bytes: self.batch_bytes,
            threads,
            unique: UniqueKeys::default(),
        };
        // Built output batches waiting to be written, in order.
        let mut pending: Vec<RecordBatch> = Vec::new();
        let mut set = batches.next_set(threads)?;
        while !set.is_empty() {
            let (planned, groups) = self.plan_set(&set, &rules, &layout, threads, &mut report)?;
            // Each wave is built on the pool while this thread writes the one before; during
            // the last wave it also reads the next set of input batches.
            let waves: Vec<&[(usize, Range<usize>)]> = groups.chunks(threads).collect();
            let mut next: Option<Result<Vec<BatchView>>> = None;
            for (w, wave) in waves.iter().enumerate() {
                let mut built: Vec<Result<RecordBatch>> = Vec::new();
                let build_one = |(i, r): &(usize, Range<usize>)| {
                    build(&set[*i], &layout, &planned[*i].windows[r.clone()], self.delta_time)
                };
                let last = w + 1 == waves.len();
                let written = if threads <= 1 {
                    // One thread keeps to one core: write, build, read, one after another.
                    let written = write_all(&mut output, &mut pending, &mut report);
                    if written.is_ok() {
                        built = wave.iter().map(build_one).collect();
                        if last {
                            next = Some(batches.next_set(threads));
                        }
                    }
                    written
                } else {
                    rayon::in_place_scope(|scope| {
                        scope.spawn(|_| built = wave.par_iter().map(build_one).collect());
                        let written = write_all(&mut output, &mut pending, &mut report);
                        if last && written.is_ok() {
                            next = Some(batches.next_set(threads));
                        }
                        written
                    })
                };
                written?;
                // Errors in output order: a failed build comes before a failed read further on.
                pending = built.into_iter().collect::<Result<Vec<_>>>()?;
            }
            progress.inc(set.iter().map(BatchView::rows).sum());
            set = match next {
                Some(next) => next?,
                None => batches.next_set(threads)?,
            };
        }
        write_all(&mut output, &mut pending, &mut report)?;
        // Before the output is finished: a key in two rows leaves no result.
        std::mem::take(&mut batches.unique).finish()?;
        output.finish()?;
        log_summary(&progress, &report, threads);
        Ok(report)
    }

    /// Open the inputs, settle the key and time on the first, and check every input has the
    /// columns it reads, with the same types, before anything is written.
    fn open_inputs(&self) -> Result<(Vec<Input>, Layout)> {
        let sources = discover(&self.inputs)?;
        if let Some(path) = &self.output {
            check_output(path, &sources)?;
        }
        let inputs = sources.iter().map(Input::open).collect::<Result<Vec<_>>>()?;
        let Some(first) = inputs.first() else {
            return Err(Error::internal("no input after discovery"));
        };
        let cfg = self.resolved(&first.schema(), first.name())?;
        let layout = Layout::new(&first.schema(), &cfg, first.name())?;
        for input in &inputs[1..] {
            Layout::new(&input.schema(), &cfg, input.name())?;
            check_agree(&first.schema(), first.name(), &input.schema(), input.name(), Some(&layout.projection))?;
        }
        Ok((inputs, layout))
    }

    /// Plan the windows of a set of input batches on the pool, and cut them into output
    /// batches: `(input batch, window range)` each, in output order.
    #[allow(clippy::type_complexity)]
    fn plan_set(
        &self,
        set: &[BatchView],
        rules: &Rules,
        layout: &Layout,
        threads: usize,
        report: &mut Report,
    ) -> Result<(Vec<Planned>, Vec<(usize, Range<usize>)>)> {
        let max_items = if layout.large { i64::MAX as usize } else { i32::MAX as usize };
        let planned: Vec<Result<Planned>> = set.par_iter().map(|view| plan_parallel(view, rules, threads)).collect();
        let planned = planned.into_iter().collect::<Result<Vec<_>>>()?;
        let mut groups: Vec<(usize, Range<usize>)> = Vec::new();
        for (i, (view, plan)) in set.iter().zip(&planned).enumerate() {
            report.stats += plan.stats;
            let g = group(
                &plan.windows,
                view.bytes_per_measurement(),
                view.bytes_per_window(),
                self.batch_bytes,
                max_items,
            );
            groups.extend(g.into_iter().map(|r| (i, r)));
        }
        Ok((planned, groups))
    }

    /// This config with the key and time settled for `schema` (the first input's): given
    /// names, else the names it records (probe-group writes them), else the defaults.
    fn resolved(&self, schema: &arrow::datatypes::Schema, file: &str) -> Result<Config> {
        let keys = resolve_keys(&self.keys, schema, file)?;
        let time = resolve_time(self.time.as_deref(), schema, file)?;
        check_columns(&keys, Some(&time), None)?;
        Ok(Config { keys, time: Some(time), ..self.clone() })
    }

    /// The checks `Args::into_config` makes, for configs built in code.
    fn check(&self) -> Result<()> {
        check_columns(&self.keys, self.time.as_deref(), None)?;
        if self.min_len == 0 || self.max_len == Some(0) || self.stride == Some(0) {
            return Err(Error::config("--min-len, --max-len and --stride must be at least 1"));
        }
        if self.max_len.is_some_and(|m| m < self.min_len) {
            return Err(Error::config("--min-len is above --max-len: every window would be dropped"));
        }
        match (self.max_len, self.stride) {
            (None, Some(_)) => Err(Error::config("--stride needs --max-len")),
            (Some(m), Some(s)) if s > m => Err(Error::config("--stride must be at most --max-len")),
            _ => Ok(()),
        }
    }
}

/// The summary line on stderr.
fn log_summary(progress: &Progress, report: &Report, threads: usize) {
    let s = &report.stats;
    progress.finish(
        report.rows,
        &[
            ("keys in", s.keys_in.to_string()),
            ("keys dropped (short)", s.keys_short.to_string()),
            ("sessions", s.sessions.to_string()),
            ("windows", s.windows.to_string()),
            ("windows dropped (short)", s.windows_short.to_string()),
            ("measurements in", s.measurements_in.to_string()),
            ("measurements in windows", s.measurements_out.to_string()),
            ("null times dropped", s.null_times.to_string()),
            ("threads", threads.to_string()),
        ],
    );
}

/// Input batches across all inputs, in order.
struct Batches<'a> {
    inputs: std::vec::IntoIter<Input>,
    current: Option<(BatchReader, String)>,
    layout: &'a Layout,
    batch_bytes: usize,
    threads: usize,
    /// Every row's key, for the check that no key is in two rows.
    unique: UniqueKeys,
}

impl Batches<'_> {
    /// The next `n` batches (fewer at the end, none when the inputs are done).
    fn next_set(&mut self, n: usize) -> Result<Vec<BatchView>> {
        let mut set = Vec::with_capacity(n);
        while set.len() < n {
            if self.current.is_none() {
                let Some(input) = self.inputs.next() else { break };
                let name = input.name().to_string();
                // Decoded (IPC decompressed) on a thread of its own while windows are built.
                let reader = input.reader(Some(&self.layout.projection), self.batch_bytes)?.ahead_with(self.threads)?;
                self.unique.start_input(&name);
                self.current = Some((reader, name));
            }
            let Some((reader, name)) = self.current.as_mut() else { break };
            match reader.next_batch()? {
                Some(batch) => {
                    let first_row = reader.rows_read() - batch.num_rows() as u64;
                    let view = BatchView::new(&batch, self.layout, name, first_row)?;
                    self.unique.add(&view.keys)?;
                    set.push(view);
                }
                None => self.current = None,
            }
        }
        Ok(set)
    }
}

/// Plan a batch's windows in row chunks on the current pool, concatenated in row order. The
/// first error in row order wins, so messages do not depend on scheduling.
fn plan_parallel(view: &BatchView, rules: &Rules, threads: usize) -> Result<Planned> {
    let rows = view.rows();
    let chunk = rows.div_ceil(threads * 4).max(256);
    let starts: Vec<usize> = (0..rows).step_by(chunk).collect();
    let parts: Vec<Result<Planned>> = starts.par_iter().map(|&s| view.plan(s..(s + chunk).min(rows), rules)).collect();
    let mut out = Planned::default();
    for part in parts {
        let part = part?;
        out.windows.extend(part.windows);
        out.stats += part.stats;
    }
    Ok(out)
}

fn write_all(output: &mut Output, pending: &mut Vec<RecordBatch>, report: &mut Report) -> Result<()> {
    for batch in pending.drain(..) {
        output.write(&batch)?;
        report.rows += batch.num_rows() as u64;
        report.batches += 1;
    }
    Ok(())
}
