//! The streaming check: one pass over the key and time columns of every input.
//!
//! ```
//! # fn main() -> probe_core::Result<()> {
//! use std::sync::Arc;
//!
//! use arrow::array::{ArrayRef, Int64Array, StringArray};
//! use arrow::record_batch::RecordBatch;
//! use probe_check_order::check::Checker;
//! use probe_check_order::Config;
//!
//! // Batches hold the key columns, then the time column.
//! let keys: ArrayRef = Arc::new(StringArray::from(vec!["a", "a", "b", "a"]));
//! let times: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 1, 5]));
//! let batch = RecordBatch::try_from_iter([("src_addr", keys), ("event_time", times)]).expect("a batch");
//! let mut c = Checker::new(&batch.schema(), 1, 5, "a.parquet")?;
//! c.start_file("a.parquet", Some(1234));
//! c.batch(&batch)?;
//! let cfg = Config::new(vec!["a.parquet".into()], vec!["src_addr".into()], Some("event_time".into()))?;
//! let report = c.into_report(&cfg);
//! assert_eq!((report.rows, report.key_runs, report.key_order_violations), (4, 3, 1));
//! # Ok(())
//! # }
//! ```
//!
//! Keys are compared in arrow's row format (ascending, nulls last), the same comparison
//! `probe-group` uses, so composite keys and every key type order alike in both stages; keys of
//! the types that order in place exactly as in the row format are compared where they are
//! ([`probe_core::keycmp`]), and only the rows kept are encoded. The
//! last row of a batch is carried over to the next batch and the next file, so a violation at
//! a batch boundary is seen and the files can be checked as one concatenated stream too.
//!
//! Whether each key's rows are contiguous is decided exactly up to 64-bit hash collisions: a
//! set of the XXH3-64 hashes of every key seen (about 16 bytes per distinct key). A key is seen
//! again after its run ended exactly when a new run starts with a hash already in the set,
//! and the same set gives the distinct-key count.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::hash::BuildHasherDefault;

use arrow::array::{Array, ArrayRef};
use arrow::buffer::NullBuffer;
use arrow::compute::SortOptions;
use arrow::datatypes::{DataType, Schema};
use arrow::record_batch::RecordBatch;
use arrow::row::{OwnedRow, Row, RowConverter, Rows, SortField};
use probe_core::columns::time_as_i64;
use probe_core::keycmp::{adjacent_in_place, compares_in_place};
use probe_core::keyhash::key_hash;
use probe_core::{Error, Result};
use rayon::prelude::*;

use crate::report::{self, FileReport, FileVerdict, Reappearance, Report, Verdict, Violation, ViolationKind};
use crate::Config;

/// Shards of the set of key hashes seen, each filled by one task ([`Checker::runs_start`]).
const SHARDS: usize = 64;

/// The shard of a key hash: bits the hash table itself does not use (it takes the low bits for
/// the slot and the top seven as a tag).
fn shard(h: u64) -> usize {
    (h >> 40) as usize % SHARDS
}

/// The set's hasher: its values are XXH3-64 hashes already, so they are their own hash.
#[derive(Default)]
struct Prehashed(u64);

impl std::hash::Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Rows per chunk of keys converted to the row format on one thread.
const ROW_CHUNK: usize = 1 << 16;

/// A batch's keys in the row format, as chunks of [`ROW_CHUNK`] rows.
struct Chunked<'a>(&'a [Rows]);

impl Chunked<'_> {
    fn row(&self, i: usize) -> Row<'_> {
        self.0[i / ROW_CHUNK].row(i % ROW_CHUNK)
    }
}

/// A batch's keys as the check compares them: every key in the row format, or, for key types
/// that order in place as they do in it ([`compares_in_place`]), the key columns themselves,
/// with a row encoded only where one is kept (a file's first and last key, the row carried to
/// the next batch). Encoding every key was most of the check's instructions.
enum BatchKeys<'a> {
    Encoded(Chunked<'a>),
    InPlace(&'a [ArrayRef]),
}

impl BatchKeys<'_> {
    /// The key of row `i`, encoded.
    fn owned(&self, converter: &RowConverter, i: usize) -> Result<OwnedRow> {
        match self {
            BatchKeys::Encoded(rows) => Ok(rows.row(i).owned()),
            BatchKeys::InPlace(keys) => {
                let cols: Vec<ArrayRef> = keys.iter().map(|c| c.slice(i, 1)).collect();
                let rows = converter.convert_columns(&cols).map_err(|e| Error::arrow("key columns", e))?;
                Ok(rows.row(0).owned())
            }
        }
    }

    /// Each key against the one before it: `cmp(i)` orders row `i - 1` against row `i`.
    fn adjacent(&self) -> Result<Box<dyn Fn(usize) -> Ordering + Send + Sync + '_>> {
        match self {
            BatchKeys::Encoded(rows) => Ok(Box::new(move |i: usize| rows.row(i - 1).cmp(&rows.row(i)))),
            BatchKeys::InPlace(keys) => adjacent_in_place(keys),
        }
    }

    /// The key of row `i`, for people.
    fn text(&self, converter: &RowConverter, i: usize) -> String {
        match self {
            BatchKeys::Encoded(rows) => display_key(converter, rows.row(i)),
            BatchKeys::InPlace(keys) => probe_core::columns::format_key(keys, i, false),
        }
    }
}

/// How a row compares with the row before it: `key`, its key against the previous one, and
/// the times (`time` against `prev_time`) where the keys are equal.
fn step(key: Ordering, time: Option<i64>, prev_time: Option<i64>) -> (Ordering, Ordering) {
    (key, if key == Ordering::Equal { cmp_time(time, prev_time) } else { Ordering::Equal })
}

/// The order `probe-group` relies on: ascending, nulls last.
pub const SORT_OPTIONS: SortOptions = SortOptions { descending: false, nulls_first: false };

/// Per-file counters.
#[derive(Debug, Default, Clone)]
struct FileState {
    name: String,
    bytes: Option<u64>,
    rows: u64,
    key_runs: u64,
    key_order_violations: u64,
    time_order_violations: u64,
    ties: u64,
    null_keys: u64,
    null_times: u64,
    first_key: Option<OwnedRow>,
    last_key: Option<OwnedRow>,
    overlaps_previous: bool,
}

/// The last row seen, carried across batches and files.
#[derive(Debug)]
struct Prev {
    key: OwnedRow,
    time: Option<i64>,
    file: usize,
}

/// A row's key (row format) and time, for comparing with its neighbour.
struct Pos<'a> {
    key: Row<'a>,
    time: Option<i64>,
}

/// Where a row is, for messages: its file and row number in it.
struct At<'a> {
    file: &'a str,
    row: u64,
}

/// State of the one pass over all inputs.
#[derive(Debug)]
pub struct Checker {
    converter: RowConverter,
    n_keys: usize,
    time_type: DataType,
    max_violations: usize,
    files: Vec<FileState>,
    prev: Option<Prev>,
    /// Hashes of every key seen so far (the null key of a one-column key is tracked apart,
    /// because its key bytes are empty like those of an empty string).
    seen: Vec<HashSet<u64, BuildHasherDefault<Prehashed>>>,
    null_key_seen: bool,
    reappearances: u64,
    first_reappearance: Option<Reappearance>,
    violations: Vec<Violation>,
}

pub use probe_core::columns::cmp_time;

impl Checker {
    /// `schema` holds the key columns then the time column (as the batches will).
    pub fn new(schema: &Schema, n_keys: usize, max_violations: usize, name: &str) -> Result<Checker> {
        let fields = schema.fields();
        if fields.len() != n_keys + 1 {
            return Err(Error::internal(format!("{name}: expected {} key/time columns", n_keys + 1)));
        }
        let sort_fields =
            fields[..n_keys].iter().map(|f| SortField::new_with_options(f.data_type().clone(), SORT_OPTIONS)).collect();
        let converter = RowConverter::new(sort_fields)
            .map_err(|e| Error::arrow(format!("{name}: the key columns cannot be compared"), e))?;
        Ok(Checker {
            converter,
            n_keys,
            time_type: fields[n_keys].data_type().clone(),
            max_violations,
            files: Vec::new(),
            prev: None,
            seen: (0..SHARDS).map(|_| HashSet::default()).collect(),
            null_key_seen: false,
            reappearances: 0,
            first_reappearance: None,
            violations: Vec::new(),
        })
    }

    /// The next input begins; rows are numbered from 0 again.
    /// `bytes`: the file's size as stored, `None` for stdin.
    pub fn start_file(&mut self, name: &str, bytes: Option<u64>) {
        self.files.push(FileState { name: name.to_string(), bytes, ..FileState::default() });
    }

    /// Check one batch of the current file: the key columns, then the time column.
    pub fn batch(&mut self, batch: &RecordBatch) -> Result<()> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let file_idx = self.files.len().checked_sub(1).ok_or_else(|| Error::internal("a batch before any file"))?;
        let name = self.files[file_idx].name.clone();
        if batch.num_columns() != self.n_keys + 1 {
            return Err(Error::internal(format!("{name}: batch has {} columns", batch.num_columns())));
        }
        let base = self.files[file_idx].rows;
        let keys: Vec<ArrayRef> = batch.columns()[..self.n_keys].to_vec();
        let time = time_as_i64(batch.column(self.n_keys), |i| format!("{name}: row {}", base + i as u64))?;
        let parts;
        let rows = if keys.iter().all(|c| compares_in_place(c.data_type())) {
            BatchKeys::InPlace(&keys)
        } else {
            // Keys in the row format, converted in chunks on every thread.
            parts = (0..n)
                .step_by(ROW_CHUNK)
                .collect::<Vec<_>>()
                .into_par_iter()
                .map(|start| {
                    let cols: Vec<ArrayRef> = keys.iter().map(|c| c.slice(start, ROW_CHUNK.min(n - start))).collect();
                    self.converter.convert_columns(&cols)
                })
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| Error::arrow(format!("{name}: comparing keys near row {base}"), e))?;
            BatchKeys::Encoded(Chunked(&parts))
        };
        let nullable_keys: Vec<&ArrayRef> = keys.iter().filter(|c| c.null_count() > 0).collect();
        let time_at = |i: usize| (!time.is_null(i)).then(|| time.value(i));
        let carried = self.prev.take();
        let first = rows.owned(&self.converter, 0)?;
        self.files[file_idx].first_key.get_or_insert_with(|| first.clone());
        // Each row against the one before it in this batch (key order, then time order within
        // a key): most of the checking, so it runs on every thread; what it finds is counted
        // below, in row order.
        let adjacent = rows.adjacent()?;
        let steps: Vec<(Ordering, Ordering)> = (1..n)
            .into_par_iter()
            .with_min_len(1 << 14)
            // `adjacent(i)` orders row i - 1 against row i: reversed, row i against row i - 1.
            .map(|i| step(adjacent(i).reverse(), time_at(i), time_at(i - 1)))
            .collect();

        // Rows with a null in any key column, and null times: counted over the whole batch.
        let null_keys =
            nullable_keys.iter().fold(None, |acc: Option<NullBuffer>, c| NullBuffer::union(acc.as_ref(), c.nulls()));
        let file = &mut self.files[file_idx];
        file.null_keys += null_keys.map_or(0, |b| b.null_count()) as u64;
        file.null_times += time.null_count() as u64;

        // Rows of this batch where a key run starts, in order.
        let mut starts = Vec::new();
        for i in 0..n {
            // A later time of the same key (nearly every row of a sorted input): nothing to count.
            if i > 0 && steps[i - 1] == (Ordering::Equal, Ordering::Greater) {
                continue;
            }
            let at = At { file: &name, row: base + i as u64 };
            let new_run = if i > 0 {
                let text = |c: &RowConverter, current: bool| rows.text(c, if current { i } else { i - 1 });
                self.next_in_file(file_idx, &at, &text, (time_at(i - 1), time_at(i)), steps[i - 1])
            } else {
                let cur = Pos { key: first.row(), time: time_at(0) };
                match &carried {
                    Some(p) if p.file == file_idx => {
                        let step = step(first.row().cmp(&p.key.row()), cur.time, p.time);
                        let text = |c: &RowConverter, current: bool| {
                            display_key(c, if current { first.row() } else { p.key.row() })
                        };
                        self.next_in_file(file_idx, &at, &text, (p.time, cur.time), step)
                    }
                    Some(p) => self.first_after_earlier_file(file_idx, &cur, &Pos { key: p.key.row(), time: p.time }),
                    None => {
                        self.files[file_idx].key_runs += 1;
                        true
                    }
                }
            };
            if new_run {
                starts.push(i);
            }
        }
        self.runs_start(&keys, &starts, &name, base, &rows)?;

        let last = rows.owned(&self.converter, n - 1)?;
        let file = &mut self.files[file_idx];
        file.last_key = Some(last.clone());
        file.rows += n as u64;
        self.prev = Some(Prev { key: last, time: time_at(n - 1), file: file_idx });
        Ok(())
    }

    /// Row `cur` follows `prev` in the same file, in the order `step` says ([`step`]): count
    /// order violations, ties and key runs. Returns whether a key run starts here.
    fn next_in_file(
        &mut self,
        file_idx: usize,
        at: &At<'_>,
        key_text: &dyn Fn(&RowConverter, bool) -> String,
        (prev_time, cur_time): (Option<i64>, Option<i64>),
        (ord, time_ord): (Ordering, Ordering),
    ) -> bool {
        let file = &mut self.files[file_idx];
        let violation = match ord {
            Ordering::Less => {
                file.key_order_violations += 1;
                Some(ViolationKind::KeyOrder)
            }
            Ordering::Equal => match time_ord {
                Ordering::Less => {
                    file.time_order_violations += 1;
                    Some(ViolationKind::TimeOrder)
                }
                Ordering::Equal => {
                    file.ties += 1;
                    None
                }
                Ordering::Greater => None,
            },
            Ordering::Greater => None,
        };
        // Only the first few are shown, and formatting keys costs: count the rest.
        if let Some(kind) = violation.filter(|_| self.violations.len() < self.max_violations) {
            let (key, previous, current) = match kind {
                ViolationKind::KeyOrder => (None, key_text(&self.converter, false), key_text(&self.converter, true)),
                ViolationKind::TimeOrder => {
                    (Some(key_text(&self.converter, true)), self.time_text(prev_time), self.time_text(cur_time))
                }
            };
            self.violations.push(Violation { file: at.file.to_string(), row: at.row, kind, key, previous, current });
        }
        if ord != Ordering::Equal {
            self.files[file_idx].key_runs += 1;
        }
        ord != Ordering::Equal
    }

    /// The first row of a file, after the last row of an earlier file: a run of this file
    /// starts, and the concatenation must stay in (key, time) order. Returns whether a key run
    /// starts here: a key continuing across the file boundary is still one contiguous run.
    fn first_after_earlier_file(&mut self, file_idx: usize, cur: &Pos<'_>, prev: &Pos<'_>) -> bool {
        let file = &mut self.files[file_idx];
        file.key_runs += 1;
        let ord = cur.key.cmp(&prev.key);
        if ord == Ordering::Less || (ord == Ordering::Equal && cmp_time(cur.time, prev.time) == Ordering::Less) {
            file.overlaps_previous = true;
        }
        ord != Ordering::Equal
    }

    /// Key runs start at rows `starts` of this batch (ascending): a key seen in an earlier run
    /// means the key is not contiguous (the input is not even clustered). The keys are hashed on
    /// the pool; the set of hashes seen is cut into [`SHARDS`] by hash, and each shard takes its
    /// rows in order on the pool, so each key is found fresh or seen exactly where a pass in
    /// row order would find it. The null key of a one-column key is tracked apart, in order.
    fn runs_start(
        &mut self,
        keys: &[ArrayRef],
        starts: &[usize],
        name: &str,
        base: u64,
        rows: &BatchKeys<'_>,
    ) -> Result<()> {
        let null_key = |i: usize| self.n_keys == 1 && keys[0].is_null(i);
        let hashes = starts
            .par_iter()
            .with_min_len(1 << 12)
            .map_init(Vec::new, |buf, &i| if null_key(i) { Ok(None) } else { key_hash(keys, i, 0, buf).map(Some) })
            .collect::<Result<Vec<Option<u64>>>>()?;
        // Per shard, the positions in `starts` of its keys, in order.
        let mut by_shard: Vec<Vec<u32>> = vec![Vec::new(); SHARDS];
        let (mut again, mut first_again) = (0u64, None::<usize>);
        for (k, h) in hashes.iter().enumerate() {
            match h {
                Some(h) => by_shard[shard(*h)].push(k as u32),
                None => {
                    if std::mem::replace(&mut self.null_key_seen, true) {
                        again += 1;
                        first_again = first_again.or(Some(k));
                    }
                }
            }
        }
        let found: Vec<(u64, Option<usize>)> = self
            .seen
            .par_iter_mut()
            .zip(by_shard.par_iter())
            .map(|(set, ks)| {
                let (mut again, mut first) = (0u64, None::<usize>);
                for &k in ks {
                    if let Some(h) = hashes[k as usize] {
                        if !set.insert(h) {
                            again += 1;
                            first = first.or(Some(k as usize));
                        }
                    }
                }
                (again, first)
            })
            .collect();
        for (a, f) in found {
            again += a;
            first_again = match (first_again, f) {
                (Some(x), Some(y)) => Some(x.min(y)),
                (x, y) => x.or(y),
            };
        }
        self.reappearances += again;
        if let (None, Some(k)) = (&self.first_reappearance, first_again) {
            let i = starts[k];
            let key = rows.text(&self.converter, i);
            self.first_reappearance = Some(Reappearance { file: name.to_string(), row: base + i as u64, key });
        }
        Ok(())
    }

    fn time_text(&self, t: Option<i64>) -> String {
        display_time(t, &self.time_type)
    }

    /// The report over everything seen.
    pub fn into_report(self, cfg: &Config) -> Report {
        let mut r = Report::empty();
        let mut all_sorted = true;
        for f in &self.files {
            let sorted = f.key_order_violations == 0 && f.time_order_violations == 0;
            all_sorted &= sorted;
            r.rows += f.rows;
            r.key_runs += f.key_runs;
            r.key_order_violations += f.key_order_violations;
            r.time_order_violations += f.time_order_violations;
            r.ties += f.ties;
            r.null_keys += f.null_keys;
            r.null_times += f.null_times;
            r.file_overlaps += u64::from(f.overlaps_previous);
            r.files.push(FileReport {
                file: f.name.clone(),
                bytes: f.bytes,
                rows: f.rows,
                key_runs: f.key_runs,
                key_order_violations: f.key_order_violations,
                time_order_violations: f.time_order_violations,
                ties: f.ties,
                null_keys: f.null_keys,
                null_times: f.null_times,
                first_key: f.first_key.as_ref().map(|k| display_key(&self.converter, k.row())),
                last_key: f.last_key.as_ref().map(|k| display_key(&self.converter, k.row())),
                overlaps_previous: f.overlaps_previous,
                verdict: if sorted { FileVerdict::Sorted } else { FileVerdict::Unsorted },
            });
        }
        r.file_count = r.files.len();
        // Unknown (stdin among the inputs) rather than a total that leaves some out.
        r.bytes = r.files.iter().map(|f| f.bytes).sum();
        r.distinct_keys = self.seen.iter().map(|s| s.len() as u64).sum::<u64>() + u64::from(self.null_key_seen);
        r.key_reappearances = self.reappearances;
        r.first_reappearance = self.first_reappearance;
        r.first_violations = self.violations;
        r.verdict = if all_sorted && r.file_overlaps == 0 {
            Verdict::Sorted
        } else if all_sorted {
            Verdict::SortedPerFile
        } else if self.reappearances == 0 {
            Verdict::Clustered
        } else {
            Verdict::Unordered
        };
        r.group_command = report::group_command(cfg, r.verdict.needs_sort());
        r.key = cfg.keys.clone();
        r.time = cfg.time.clone().unwrap_or_default();
        r
    }

    /// The report when no input was opened at all.
    pub fn empty_report(cfg: &Config) -> Report {
        let mut r = Report::empty();
        r.group_command = report::group_command(cfg, false);
        r.key = cfg.keys.clone();
        r.time = cfg.time.clone().unwrap_or_default();
        r
    }
}

/// A key for people: the value, or `(a, b)` for a composite key; nulls as `null`.
fn display_key(converter: &RowConverter, row: Row<'_>) -> String {
    match converter.convert_rows([row]) {
        Ok(cols) => probe_core::columns::format_key(&cols, 0, false),
        Err(_) => "<key not displayable>".to_string(),
    }
}

/// A time for people: ISO 8601 by the time column's type (see `probe_core::time`).
fn display_time(t: Option<i64>, time_type: &DataType) -> String {
    match t {
        Some(v) => probe_core::time::format_time(v, time_type, None),
        None => "null".to_string(),
    }
}
