//! probe-check-order: is the input ordered by (key, time), and which `probe-group` mode does it need?
//!
//! Streams every input once, in the order given, reading only the key and time columns, and
//! reports rows, files, key runs, distinct keys, key-order and time-order violations, ties,
//! nulls, a verdict per file, the first violations with file and row, and the overall
//! [`Verdict`] with the exact `probe-group` command to run.
//!
//! ```no_run
//! # fn main() -> probe_core::Result<()> {
//! use probe_check_order::Config;
//! let cfg = Config::new(vec!["data/".into()], vec!["src_addr".into()], Some("event_time".into()))?;
//! let report = probe_check_order::run(&cfg)?; // Report: counts, files, verdict, command
//! std::process::exit(report.exit_code().into()); // 0 plain probe-group, 1 needs --sort
//! # }
//! ```
//!
//! Exit status of the binary: 0 when plain `probe-group` accepts the input, 1 when it needs
//! `--sort`, 2 on error (so a script can branch on it without parsing the report).

pub mod check;
pub mod cli;
pub mod report;

use std::io::Write;

use probe_core::columns::key_time_indices;
use probe_core::input::{discover, Input, Window, DEFAULT_BATCH_BYTES};
use probe_core::meta::{check_columns, resolve_keys, resolve_time};
use probe_core::progress::Progress;
use probe_core::schema::check_agree;
use probe_core::{Error, Result};

pub use report::{FileReport, FileVerdict, Report, Verdict, Violation, ViolationKind};

/// The stage name, used in messages.
pub const STAGE: &str = "probe-check-order";

/// Exit status for any error, usage errors included: 0 and 1 are verdicts here.
pub const EXIT_ERROR: u8 = 2;

/// A validated configuration: what [`run`] needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Inputs as given on the command line (files, directories, `-`; empty = stdin).
    pub inputs: Vec<String>,
    /// Key columns, in comparison order; empty: the key the first input records, else
    /// `src_addr`.
    pub keys: Vec<String>,
    /// The time column; `None`: the one the first input records, else `event_time`.
    pub time: Option<String>,
    /// Print the report as one JSON object.
    pub json: bool,
    /// How many violations to list with file and row.
    pub max_violations: usize,
    /// No progress and no summary on stderr.
    pub quiet: bool,
    /// Worker threads (0 = one per core).
    pub threads: usize,
}

impl Config {
    /// A configuration with the default report options (text, 5 violations listed, quiet),
    /// after checking the column names make sense together.
    pub fn new(inputs: Vec<String>, keys: Vec<String>, time: Option<String>) -> Result<Config> {
        check_columns(&keys, time.as_deref(), None)?;
        Ok(Config { inputs, keys, time, json: false, max_violations: 5, quiet: true, threads: 0 })
    }

    /// This config with the key and time columns settled for `schema` (the first input's):
    /// given names, else the names it records, else the defaults.
    fn resolved(&self, schema: &arrow::datatypes::Schema, file: &str) -> Result<Config> {
        let keys = resolve_keys(&self.keys, schema, file)?;
        let time = resolve_time(self.time.as_deref(), schema, file)?;
        check_columns(&keys, Some(&time), None)?;
        Ok(Config { keys, time: Some(time), ..self.clone() })
    }

    /// The time column (after [`Config::resolved`]).
    fn time_name(&self) -> &str {
        self.time.as_deref().unwrap_or(probe_core::meta::DEFAULT_TIME)
    }
}

/// Check the order of every input and build the report.
pub fn run(cfg: &Config) -> Result<Report> {
    let threads = probe_core::threads::init(cfg.threads)?;
    let sources = discover(&cfg.inputs)?;
    let progress = Progress::new(STAGE, cfg.quiet, None);
    // Settled on the first input; `cfg` as given if there is none.
    let mut settled: Option<Config> = None;

    let mut checker: Option<check::Checker> = None;
    // The first input's schema, whose key and time columns every later input must match.
    let mut first: Option<(arrow::datatypes::SchemaRef, String)> = None;
    // Input i, opened and checked against the first: its name, size, projected schema, and its
    // key and time columns decoded on a thread of its own (with threads to spare), two batches
    // ahead. Up to one input per thread decodes at once (`Window`); the checker takes them in
    // order, so batches, violations and errors are the same for any number of threads.
    let open = |source| -> Result<_> {
        let input = Input::open(source)?;
        let name = input.name().to_string();
        let schema = input.schema();
        if settled.is_none() {
            settled = Some(cfg.resolved(&schema, &name)?);
        }
        let cfg = settled.as_ref().unwrap_or(cfg);
        let (key_idx, time_idx) = key_time_indices(&schema, &cfg.keys, cfg.time_name(), &name)?;
        let mut columns = cfg.keys.clone();
        columns.push(cfg.time_name().to_string());
        let mut idx = key_idx;
        idx.push(time_idx);
        let projected = schema.project(&idx).map_err(|e| Error::arrow(name.clone(), e))?;
        match &first {
            None => first = Some((schema.clone(), name.clone())),
            Some((first_schema, first_name)) => check_agree(first_schema, first_name, &schema, &name, Some(&columns))?,
        }
        let size = input.size();
        let batches = input.reader(Some(&columns), DEFAULT_BATCH_BYTES)?.ahead_with(threads)?;
        Ok((name, size, projected, cfg.keys.len(), cfg.max_violations, batches))
    };
    for opened in Window::new(sources.iter().map(open), threads) {
        let (name, size, projected, n_keys, max_violations, mut batches) = opened?;
        let checker = match checker.as_mut() {
            Some(c) => c,
            None => checker.insert(check::Checker::new(&projected, n_keys, max_violations, &name)?),
        };
        checker.start_file(&name, size);
        while let Some(batch) = batches.next_batch()? {
            checker.batch(&batch)?;
            progress.inc(batch.num_rows());
        }
    }
    let cfg = settled.as_ref().unwrap_or(cfg);
    let report = match checker {
        Some(c) => c.into_report(cfg),
        // discover() always yields at least one source, so this is only a safe default.
        None => check::Checker::empty_report(cfg),
    };
    progress.finish(
        report.rows,
        &[
            ("files", report.files.len().to_string()),
            ("keys", report.distinct_keys.to_string()),
            ("verdict", report.verdict.as_str().to_string()),
        ],
    );
    Ok(report)
}

/// Print the report: text by default, one JSON object with `json`.
pub fn print(report: &Report, json: bool, out: &mut dyn Write) -> Result<()> {
    if json {
        serde_json::to_writer(&mut *out, report).map_err(|e| Error::Stdout(e.into()))?;
        writeln!(out).map_err(Error::Stdout)?;
    } else {
        report::write_text(report, out).map_err(Error::Stdout)?;
    }
    out.flush().map_err(Error::Stdout)
}

/// The whole stage: validate, run, print to `out`, and return the exit status (0 plain
/// `probe-group` accepts the input, 1 it needs `--sort`). `main.rs` hands an error to
/// `probe_core::main_with_status`, which prints it as one line and exits [`EXIT_ERROR`].
pub fn main_with(args: &cli::Args, out: &mut dyn Write) -> Result<u8> {
    let cfg = args.config()?;
    let report = run(&cfg)?;
    match print(&report, cfg.json, out) {
        // A closed pipe (`| head`): the reader has what it wanted; the verdict still stands.
        Err(e) if e.is_broken_pipe() => Ok(report.exit_code()),
        Err(e) => Err(e),
        Ok(()) => Ok(report.exit_code()),
    }
}

#[cfg(test)]
mod tests;
