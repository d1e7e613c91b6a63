//! What probe-check-order found, and how it is printed: a text report for people, or one JSON
//! object (`--json`, fields in snake_case) for machines.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let cfg = probe_check_order::Config::new(vec!["data/".into()], vec!["src_addr".into()], None)?;
//! # let report = probe_check_order::run(&cfg)?;
//! use probe_check_order::report;
//! let mut stdout = std::io::stdout();
//! report::write_text(&report, &mut stdout)?; // or serde_json::to_writer(&mut stdout, &report)
//! # Ok(())
//! # }
//! ```

use std::io::{self, Write};

use serde::Serialize;

use crate::Config;

/// The overall answer: which `probe-group` mode the input needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Every file is sorted by (key, time) and so are the files concatenated in the order given.
    Sorted,
    /// Each file is sorted but the files overlap: `probe-group` k-way merges them.
    SortedPerFile,
    /// Each key's rows are contiguous, but keys are not ascending or times are not sorted within
    /// a key: `probe-group --sort`.
    Clustered,
    /// Anything else: `probe-group --sort`.
    Unordered,
}

impl Verdict {
    /// The word used in the report and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Sorted => "sorted",
            Verdict::SortedPerFile => "sorted-per-file",
            Verdict::Clustered => "clustered",
            Verdict::Unordered => "unordered",
        }
    }

    /// Whether `probe-group` needs `--sort` for this input.
    pub fn needs_sort(self) -> bool {
        matches!(self, Verdict::Clustered | Verdict::Unordered)
    }

    /// Exit status: 0 when plain `probe-group` accepts the input, 1 when it needs `--sort`.
    pub fn exit_code(self) -> u8 {
        u8::from(self.needs_sort())
    }

    fn explain(self) -> &'static str {
        match self {
            Verdict::Sorted => "every file is sorted by (key, time), and so are the files in the order given",
            Verdict::SortedPerFile => {
                "each file is sorted by (key, time) but the files overlap; probe-group merges them"
            }
            Verdict::Clustered => {
                "each key's rows are contiguous, but keys are not ascending or times are not sorted within a key"
            }
            Verdict::Unordered => "some file is not sorted and some key's rows are not contiguous",
        }
    }
}

/// One file's verdict: is it sorted by (key, time) on its own?
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileVerdict {
    /// Keys ascending, times non-decreasing within a key, nulls last.
    Sorted,
    /// At least one key-order or time-order violation.
    Unsorted,
}

/// What a listed violation is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ViolationKind {
    /// A key less than the previous row's key in the same file.
    KeyOrder,
    /// The same key as the previous row, with an earlier time.
    TimeOrder,
}

impl ViolationKind {
    fn as_str(self) -> &'static str {
        match self {
            ViolationKind::KeyOrder => "key-order",
            ViolationKind::TimeOrder => "time-order",
        }
    }
}

/// One violation, with where it is and the two values involved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// The input's name (path as found, or `stdin`).
    pub file: String,
    /// Row number within the file, from 0.
    pub row: u64,
    /// Key order or time order.
    pub kind: ViolationKind,
    /// For a time-order violation, the key whose times are out of order.
    pub key: Option<String>,
    /// The previous row's key (key order) or time (time order).
    pub previous: String,
    /// This row's key or time.
    pub current: String,
}

/// The first key seen again after its run had ended (what makes input unordered, not clustered).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reappearance {
    /// The input's name.
    pub file: String,
    /// Row number within the file, from 0.
    pub row: u64,
    /// The key.
    pub key: String,
}

/// Counts and verdict for one input file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileReport {
    /// The input's name.
    pub file: String,
    /// The file's or object's size as stored; null for stdin.
    pub bytes: Option<u64>,
    /// Rows in the file.
    pub rows: u64,
    /// Maximal runs of equal consecutive keys in the file.
    pub key_runs: u64,
    /// Rows whose key is less than the previous row's.
    pub key_order_violations: u64,
    /// Rows with the previous row's key and an earlier time.
    pub time_order_violations: u64,
    /// Rows with the previous row's key and the same time.
    pub ties: u64,
    /// Rows with a null in a key column.
    pub null_keys: u64,
    /// Rows with a null time.
    pub null_times: u64,
    /// The file's first key (none for an empty file).
    pub first_key: Option<String>,
    /// The file's last key.
    pub last_key: Option<String>,
    /// The file's first row sorts before the last row of the file before it.
    pub overlaps_previous: bool,
    /// Sorted on its own or not.
    pub verdict: FileVerdict,
}

/// Everything probe-check-order reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Rows in all inputs.
    pub rows: u64,
    /// Number of input files.
    pub file_count: usize,
    /// Bytes of all input files and objects as stored (what `du` or a listing counts), the
    /// input size that scripts report for a URL too; null when stdin is among the inputs.
    pub bytes: Option<u64>,
    /// Maximal runs of equal consecutive keys within each file, summed ("source address changes").
    pub key_runs: u64,
    /// Distinct keys over all inputs (a null key counts as one key).
    pub distinct_keys: u64,
    /// Rows whose key is less than the previous row's key in the same file.
    pub key_order_violations: u64,
    /// Rows with the previous row's key and an earlier time (nulls last).
    pub time_order_violations: u64,
    /// Rows with the previous row's key and the same time.
    pub ties: u64,
    /// Rows with a null in a key column.
    pub null_keys: u64,
    /// Rows with a null time.
    pub null_times: u64,
    /// Runs of a key that had already appeared, earlier in the input, in a run that ended.
    pub key_reappearances: u64,
    /// Files whose first row sorts before the previous file's last row.
    pub file_overlaps: u64,
    /// One entry per input file, in the order read.
    pub files: Vec<FileReport>,
    /// The first violations (up to `--max-violations`), in input order.
    pub first_violations: Vec<Violation>,
    /// The first key seen again after its run had ended.
    pub first_reappearance: Option<Reappearance>,
    /// The overall verdict.
    pub verdict: Verdict,
    /// The `probe-group` command to use.
    pub group_command: String,
    /// The key columns checked.
    pub key: Vec<String>,
    /// The time column checked.
    pub time: String,
}

impl Report {
    /// A report of no rows: sorted.
    pub fn empty() -> Report {
        Report {
            rows: 0,
            file_count: 0,
            bytes: Some(0),
            key_runs: 0,
            distinct_keys: 0,
            key_order_violations: 0,
            time_order_violations: 0,
            ties: 0,
            null_keys: 0,
            null_times: 0,
            key_reappearances: 0,
            file_overlaps: 0,
            files: Vec::new(),
            first_violations: Vec::new(),
            first_reappearance: None,
            verdict: Verdict::Sorted,
            group_command: String::new(),
            key: Vec::new(),
            time: String::new(),
        }
    }

    /// Exit status: 0 when plain `probe-group` accepts the input, 1 when it needs `--sort`.
    pub fn exit_code(&self) -> u8 {
        self.verdict.exit_code()
    }
}

/// The `probe-group` command for this input, with the user's columns and input paths.
pub fn group_command(cfg: &Config, sort: bool) -> String {
    let mut parts = vec!["probe-group".to_string()];
    if sort {
        parts.push("--sort".to_string());
    }
    parts.push("--key".to_string());
    parts.push(shell_quote(&cfg.keys.join(",")));
    parts.push("--time".to_string());
    parts.push(shell_quote(cfg.time.as_deref().unwrap_or(probe_core::meta::DEFAULT_TIME)));
    parts.extend(cfg.inputs.iter().map(|i| shell_quote(i)));
    parts.join(" ")
}

/// Quote a word for a POSIX shell when it needs it.
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "_-./:=,@%+".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Files listed one by one in the text report; beyond that only the unsorted and overlapping ones.
const LIST_FILES: usize = 20;

/// With more files than [`LIST_FILES`], the first few are listed whatever their verdict, so
/// the list always shows what the files look like.
const FIRST_FILES: usize = 5;

/// The report for people.
pub fn write_text(r: &Report, w: &mut dyn Write) -> io::Result<()> {
    let files_word = if r.file_count == 1 { "file" } else { "files" };
    writeln!(w, "rows                   {} in {} {files_word}", r.rows, r.file_count)?;
    match r.bytes {
        Some(b) => writeln!(w, "bytes                  {b} ({})", probe_core::cli::human_bytes(b))?,
        None => writeln!(w, "bytes                  unknown (stdin)")?,
    }
    writeln!(w, "distinct keys          {}", r.distinct_keys)?;
    // The seed's wording for its default key; any other key just changes.
    let runs = if r.key == ["src_addr"] { "source address changes" } else { "key changes" };
    writeln!(w, "key runs               {} ({runs})", r.key_runs)?;
    writeln!(w, "key-order violations   {}", r.key_order_violations)?;
    writeln!(w, "time-order violations  {} (within a key)", r.time_order_violations)?;
    writeln!(w, "ties                   {} (same key and time as the row before)", r.ties)?;
    writeln!(w, "nulls                  {} in key, {} in time", r.null_keys, r.null_times)?;
    writeln!(w, "keys seen again        {} (after their run had ended)", r.key_reappearances)?;
    writeln!(w, "overlapping files      {}", r.file_overlaps)?;

    let notable = |f: &&FileReport| f.verdict != FileVerdict::Sorted || f.overlaps_previous;
    let listed: Vec<&FileReport> = if r.files.len() <= LIST_FILES {
        r.files.iter().collect()
    } else {
        let first = r.files.iter().take(FIRST_FILES);
        let rest = r.files.iter().skip(FIRST_FILES).filter(notable).take(LIST_FILES - FIRST_FILES);
        first.chain(rest).collect()
    };
    if !r.files.is_empty() {
        writeln!(w, "files:")?;
        let width = listed.iter().map(|f| f.file.len()).max().unwrap_or(0);
        for f in &listed {
            let mut line = format!("  {:width$}  {:>12} rows  {}", f.file, f.rows, verdict_word(f.verdict));
            if f.key_order_violations > 0 {
                line.push_str(&format!(", {} key-order violations", f.key_order_violations));
            }
            if f.time_order_violations > 0 {
                line.push_str(&format!(", {} time-order violations", f.time_order_violations));
            }
            if f.overlaps_previous {
                line.push_str(", overlaps the file before");
            }
            writeln!(w, "{}", line.trim_end())?;
        }
        if listed.len() < r.files.len() {
            let not_listed = r.files.len() - listed.len();
            let notable_not_listed =
                r.files.iter().filter(notable).count() - listed.iter().filter(|f| notable(f)).count();
            let what = match notable_not_listed {
                0 => "all sorted and not overlapping".to_string(),
                n => format!("{n} of them unsorted or overlapping"),
            };
            writeln!(w, "  ... and {not_listed} more files ({what}; --json lists all)")?;
        }
    }

    if !r.first_violations.is_empty() {
        let total = r.key_order_violations + r.time_order_violations;
        writeln!(w, "first violations ({} of {total}):", r.first_violations.len())?;
        for v in &r.first_violations {
            match (&v.kind, &v.key) {
                (ViolationKind::TimeOrder, Some(key)) => writeln!(
                    w,
                    "  {} row {}: {}: key {key}: time {} after {}",
                    v.file,
                    v.row,
                    v.kind.as_str(),
                    v.current,
                    v.previous
                )?,
                _ => writeln!(
                    w,
                    "  {} row {}: {}: key {} after {}",
                    v.file,
                    v.row,
                    v.kind.as_str(),
                    v.current,
                    v.previous
                )?,
            }
        }
    }
    // Keys coming back are normal when sorted files overlap; they matter only for `unordered`.
    if let (Some(a), Verdict::Unordered) = (&r.first_reappearance, r.verdict) {
        writeln!(w, "first key seen again:  {} row {}: key {}", a.file, a.row, a.key)?;
    }
    writeln!(w, "verdict                {}: {}", r.verdict.as_str(), r.verdict.explain())?;
    writeln!(w, "run                    {}", r.group_command)?;
    Ok(())
}

fn verdict_word(v: FileVerdict) -> &'static str {
    match v {
        FileVerdict::Sorted => "sorted",
        FileVerdict::Unsorted => "unsorted",
    }
}
