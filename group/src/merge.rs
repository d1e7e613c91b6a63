//! Sorted inputs, checked as they stream, and their k-way merge into runs of rows.
//!
//! Every input yields batches sorted by (key, time), nulls last. A [`Cursor`] decodes each
//! batch, checks the order inside it and across batch boundaries, and notes where the key
//! changes: keys of plain types (strings, binary, integers, dates, timestamps) compare in place,
//! others in arrow's row format (so any key type and composite keys compare as `memcmp`). The
//! merge of several inputs encodes every batch's keys in row format before it compares them: it
//! repeatedly takes the smallest (key, time, input index) and hands the longest run of rows from
//! one batch that stays below the other inputs' heads to a [`RunSink`]: ties go to the earlier
//! input, so equal timestamps keep input order.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, OnceLock};

use arrow::array::{Array, ArrayRef, Int64Array};
use arrow::compute::{concat, interleave};
use arrow::datatypes::DataType;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use arrow::row::{OwnedRow, RowConverter, Rows, SortField};

use probe_core::columns::{self, time_as_i64};
use probe_core::keycmp::{adjacent_in_place, cmp_in_place, compares_in_place, KEY_ORDER};
use probe_core::{Error, Result};

/// Where the merged rows go.
pub trait RunSink {
    /// Rows `start..start + len` of `batch` come next in merged order.
    fn push_run(&mut self, batch: &Arc<SortedBatch>, start: usize, len: usize) -> Result<()>;

    /// Like [`RunSink::push_run`], for rows of one key only: `starts_key` says whether they are
    /// that key's first (the merge knows, so the sink need not compare keys).
    fn push_key_run(&mut self, batch: &Arc<SortedBatch>, start: usize, len: usize, starts_key: bool) -> Result<()> {
        let _ = starts_key;
        self.push_run(batch, start, len)
    }
}

/// Something that yields batches sorted by (key, time): an input file, stdin, a spill run.
pub trait BatchSource {
    /// The next batch, or `None` at the end.
    fn next_batch(&mut self) -> Result<Option<RecordBatch>>;
    /// Name for messages (a path, `stdin`, a spill run).
    fn name(&self) -> &str;
    /// Row number within the source of the next batch's first row.
    fn rows_read(&self) -> u64;
}

impl BatchSource for probe_core::input::BatchReader {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        probe_core::input::BatchReader::next_batch(self)
    }
    fn name(&self) -> &str {
        probe_core::input::BatchReader::name(self)
    }
    fn rows_read(&self) -> u64 {
        probe_core::input::BatchReader::rows_read(self)
    }
}

/// The column layout every batch in the merge shares: key columns first, then time, then
/// payload.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Number of key columns at the front.
    pub n_keys: usize,
    /// Names of the key columns (for messages).
    pub key_names: Vec<String>,
    /// Name of the time column.
    pub time_name: String,
}

impl Layout {
    /// Index of the time column.
    pub fn time_idx(&self) -> usize {
        self.n_keys
    }
}

/// A decoded batch, its times as i64 and where its key changes.
///
/// The keys are compared in place (see `compares_in_place`) where their types allow, within a
/// batch and across batches and inputs; arrow's row format is encoded only for the key types
/// compared that way alone. On one sorted input, encoding every key was 8% of
/// `probe-group -o x.parquet`'s CPU time; in a merge of several inputs, which compares a few
/// rows of each batch with other batches', 5% of the instructions.
#[derive(Debug)]
pub struct SortedBatch {
    /// The projected columns: keys, time, payload.
    pub data: RecordBatch,
    /// Key columns in arrow's row format, once encoded.
    keys: OnceLock<Rows>,
    converter: Arc<RowConverter>,
    n_keys: usize,
    /// Time values (nulls kept).
    pub times: Int64Array,
    /// Rows `i > 0` where the key differs from row `i - 1`, ascending.
    pub key_changes: Vec<u32>,
    /// Which merge input it came from.
    pub input: usize,
    /// Estimated in-memory bytes per row.
    pub row_bytes: usize,
}

impl SortedBatch {
    /// Rows in the batch.
    pub fn len(&self) -> usize {
        self.data.num_rows()
    }

    /// Whether the batch has no rows.
    pub fn is_empty(&self) -> bool {
        self.data.num_rows() == 0
    }

    fn time(&self, i: usize) -> Option<i64> {
        self.times.is_valid(i).then(|| self.times.value(i))
    }

    fn key_columns(&self) -> &[ArrayRef] {
        &self.data.columns()[..self.n_keys]
    }

    /// Encode the keys in row format, once (key types that do not compare in place).
    fn encode_keys(&self) -> Result<()> {
        if self.keys.get().is_none() {
            let rows =
                self.converter.convert_columns(self.key_columns()).map_err(|e| Error::arrow("key columns", e))?;
            let _ = self.keys.set(rows);
        }
        Ok(())
    }

    /// Compare the key of row `i` here with row `j` of `other`, ascending, nulls last.
    pub fn cmp_keys(&self, i: usize, other: &SortedBatch, j: usize) -> Result<Ordering> {
        match (self.keys.get(), other.keys.get()) {
            (Some(a), Some(b)) => Ok(a.row(i).cmp(&b.row(j))),
            _ => cmp_in_place(self.key_columns(), i, other.key_columns(), j),
        }
    }

    /// Rows `start..start + len` as a batch of their own (key changes moved; keys encoded
    /// again when needed).
    fn slice(&self, start: usize, len: usize) -> Result<SortedBatch> {
        let data = self.data.slice(start, len);
        let times = self.times.slice(start, len);
        let key_changes = self
            .key_changes
            .iter()
            .filter(|&&i| (i as usize) > start && (i as usize) < start + len)
            .map(|&i| i - start as u32)
            .collect();
        let batch = SortedBatch {
            data,
            keys: OnceLock::new(),
            converter: self.converter.clone(),
            n_keys: self.n_keys,
            times,
            key_changes,
            input: self.input,
            row_bytes: self.row_bytes,
        };
        if self.keys.get().is_some() {
            // Key types that compare only in row format: keep them encoded.
            batch.encode_keys()?;
        }
        Ok(batch)
    }

    /// Memory held by this batch.
    pub fn memory_size(&self) -> usize {
        self.data.get_array_memory_size() + self.keys.get().map_or(0, |k| k.size()) + self.key_changes.capacity() * 4
    }
}

pub use probe_core::columns::cmp_time;

/// The row converter for the key columns of `data`, ascending, nulls last.
pub fn key_converter(data: &RecordBatch, n_keys: usize) -> Result<RowConverter> {
    let fields =
        (0..n_keys).map(|i| SortField::new_with_options(data.column(i).data_type().clone(), KEY_ORDER)).collect();
    RowConverter::new(fields).map_err(|e| Error::arrow("key columns", e))
}

/// Render the key of row `row` for messages: `"10.0.0.1"` or `("a", 3)`.
pub fn format_key(data: &RecordBatch, n_keys: usize, row: usize) -> String {
    columns::format_key(&data.columns()[..n_keys], row, true)
}

/// The previous row of an input, kept across batch boundaries for the order check.
struct LastRow {
    time: Option<i64>,
    /// The row itself (its key columns compared in place with the next batch's first row).
    data: RecordBatch,
}

/// One input being read and checked, here or on a thread of its own.
pub struct Cursor {
    kind: CursorKind,
    rows: u64,
    /// Only the rows of one key range are merged ([`Cursor::in_range`]).
    range: Option<RangeFilter>,
}

/// The rows of one key range: first key column in `[lo, hi)` (`None`: unbounded; a null key
/// sorts after every value, so it falls in the last range). Every batch is order-checked whole
/// before it is cut, so the rows skipped below `lo` and the first row at or above `hi` are
/// checked too: that is what makes the check complete across range boundaries.
struct RangeFilter {
    lo: Option<OwnedRow>,
    hi: Option<OwnedRow>,
    /// Row format of the first key column alone.
    first_key: Arc<RowConverter>,
    /// Rows of this input given to the range so far.
    taken: Arc<std::sync::atomic::AtomicU64>,
    /// A row at or above `hi` was seen: the input has nothing more for this range.
    done: bool,
}

impl RangeFilter {
    /// The first key column of row `i`, in row format.
    fn key(&self, b: &SortedBatch, i: usize) -> Result<OwnedRow> {
        let col = b.data.column(0).slice(i, 1);
        let rows = self.first_key.convert_columns(&[col]).map_err(|e| Error::arrow("key columns", e))?;
        Ok(rows.row(0).owned())
    }

    /// The first row of `b` (sorted) whose first key column is not below `bound`.
    fn position(&self, b: &SortedBatch, bound: &Option<OwnedRow>) -> Result<usize> {
        let Some(bound) = bound else {
            return Ok(b.len());
        };
        let (mut lo, mut hi) = (0, b.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.key(b, mid)?.row() < bound.row() {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    /// The part of `b` in the range, or `None` if none of it is.
    fn cut(&mut self, b: Arc<SortedBatch>) -> Result<Option<Arc<SortedBatch>>> {
        let start = if self.lo.is_some() { self.position(&b, &self.lo)? } else { 0 };
        let end = if self.hi.is_some() { self.position(&b, &self.hi)? } else { b.len() };
        if end < b.len() {
            self.done = true;
        }
        if start >= end {
            return Ok(None);
        }
        self.taken.fetch_add((end - start) as u64, std::sync::atomic::Ordering::Relaxed);
        if start == 0 && end == b.len() {
            return Ok(Some(b));
        }
        Ok(Some(Arc::new(b.slice(start, end - start)?)))
    }
}

enum CursorKind {
    Here(Checked),
    /// Batches decoded and checked ahead, in order, by [`Cursor::read_ahead`]'s thread.
    Ahead(Receiver<Result<Option<Arc<SortedBatch>>>>),
}

impl Cursor {
    /// Wrap a source as merge input number `input`.
    pub fn new(
        source: Box<dyn BatchSource>,
        input: usize,
        converter: Arc<RowConverter>,
        layout: Arc<Layout>,
        source_kind: SourceKind,
    ) -> Cursor {
        Cursor {
            kind: CursorKind::Here(Checked::new(source, input, converter, layout, source_kind)),
            rows: 0,
            range: None,
        }
    }

    /// Merge only the rows whose first key column is in `[lo, hi)` (row format of
    /// `first_key`; `None`: unbounded), and stop reading at the first row at or above `hi`.
    /// Every batch read is order-checked whole first, rows outside the range included.
    pub fn in_range(
        mut self,
        lo: Option<OwnedRow>,
        hi: Option<OwnedRow>,
        first_key: Arc<RowConverter>,
        taken: Arc<std::sync::atomic::AtomicU64>,
    ) -> Cursor {
        self.range = Some(RangeFilter { lo, hi, first_key, taken, done: false });
        self
    }

    /// Like [`Cursor::new`], but decode and check on a thread of its own, up to `depth` batches
    /// ahead of the merge, so decoding (the bulk of the work on sorted input) overlaps merging,
    /// grouping and encoding. The batches, and any error, arrive in the same order as without
    /// it: an order violation is reported when the merge reaches it, as with one thread.
    pub fn read_ahead(
        source: Box<dyn BatchSource + Send>,
        input: usize,
        converter: Arc<RowConverter>,
        layout: Arc<Layout>,
        source_kind: SourceKind,
        depth: usize,
    ) -> Result<Cursor> {
        let (tx, rx) = sync_channel(depth.max(1));
        std::thread::Builder::new()
            .name(format!("probe-read-{input}"))
            .spawn(move || {
                let mut checked = Checked::new(source, input, converter, layout, source_kind);
                loop {
                    let next = checked.next_batch();
                    let end = !matches!(next, Ok(Some(_)));
                    // A closed channel: the merge stopped (on an error of its own); so do we.
                    if tx.send(next).is_err() || end {
                        return;
                    }
                }
            })
            .map_err(|e| Error::config(format!("cannot start a reader thread ({e}); lower --threads")))?;
        Ok(Cursor { kind: CursorKind::Ahead(rx), rows: 0, range: None })
    }

    /// Rows read from this input so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The next non-empty batch, checked, or `None` at the end.
    pub fn next_batch(&mut self) -> Result<Option<Arc<SortedBatch>>> {
        let next = loop {
            if self.range.as_ref().is_some_and(|r| r.done) {
                break None;
            }
            let next = match &mut self.kind {
                CursorKind::Here(c) => c.next_batch()?,
                CursorKind::Ahead(rx) => {
                    rx.recv().map_err(|_| Error::internal("an input's reader thread stopped without a result"))??
                }
            };
            match (&mut self.range, next) {
                (None, next) => break next,
                (Some(_), None) => break None,
                (Some(range), Some(b)) => {
                    if let Some(cut) = range.cut(b)? {
                        break Some(cut);
                    }
                }
            }
        };
        if let Some(b) = &next {
            self.rows += b.len() as u64;
        }
        Ok(next)
    }
}

/// One input being read: the order check across its batches.
struct Checked {
    source: Box<dyn BatchSource>,
    input: usize,
    converter: Arc<RowConverter>,
    layout: Arc<Layout>,
    last: Option<LastRow>,
    /// What an order violation means here.
    source_kind: SourceKind,
}

impl Checked {
    fn new(
        source: Box<dyn BatchSource>,
        input: usize,
        converter: Arc<RowConverter>,
        layout: Arc<Layout>,
        source_kind: SourceKind,
    ) -> Checked {
        Checked { source, input, converter, layout, last: None, source_kind }
    }

    /// Decode the next non-empty batch and check its order.
    fn next_batch(&mut self) -> Result<Option<Arc<SortedBatch>>> {
        loop {
            let first_row = self.source.rows_read();
            let Some(data) = self.source.next_batch()? else {
                return Ok(None);
            };
            if data.num_rows() == 0 {
                continue;
            }
            let batch = self.prepare(data, first_row)?;
            return Ok(Some(Arc::new(batch)));
        }
    }

    fn prepare(&mut self, data: RecordBatch, first_row: u64) -> Result<SortedBatch> {
        let n_keys = self.layout.n_keys;
        let name = self.source.name().to_string();
        let times =
            time_as_i64(data.column(self.layout.time_idx()), |i| format!("{name}: row {}", first_row + i as u64))?;
        let n = data.num_rows();
        let batch = SortedBatch {
            data,
            keys: OnceLock::new(),
            converter: self.converter.clone(),
            n_keys,
            times,
            key_changes: Vec::new(),
            input: self.input,
            row_bytes: 0,
        };
        let in_place = batch.key_columns().iter().all(|c| compares_in_place(c.data_type()));
        if !in_place {
            let rows = self
                .converter
                .convert_columns(batch.key_columns())
                .map_err(|e| Error::arrow(format!("{name}: key columns"), e))?;
            let _ = batch.keys.set(rows);
        }
        let data = &batch.data;
        // Check the first row against the previous batch's last row.
        if let Some(last) = &self.last {
            let t0 = batch.time(0);
            let last_key = &last.data.columns()[..n_keys];
            let key = match batch.keys.get() {
                Some(rows) => {
                    let prev = self.converter.convert_columns(last_key).map_err(|e| Error::arrow("key columns", e))?;
                    prev.row(0).cmp(&rows.row(0))
                }
                None => cmp_in_place(last_key, 0, batch.key_columns(), 0)?,
            };
            match key {
                Ordering::Greater => {
                    return Err(self.violation(&name, first_row, false, &last.data, 0, data, 0));
                }
                Ordering::Equal => {
                    if cmp_time(last.time, t0) == Ordering::Greater {
                        return Err(self.violation(&name, first_row, true, &last.data, 0, data, 0));
                    }
                }
                Ordering::Less => {}
            }
        }
        let tv = batch.times.values();
        let tnull = batch.times.nulls();
        let in_place_cmp =
            if batch.keys.get().is_none() { Some(adjacent_in_place(batch.key_columns())?) } else { None };
        let mut key_changes = Vec::new();
        for i in 1..n {
            let key = match (&in_place_cmp, batch.keys.get()) {
                (Some(cmp), _) => cmp(i),
                (None, Some(rows)) => rows.row(i - 1).cmp(&rows.row(i)),
                (None, None) => return Err(Error::internal("key columns neither encoded nor comparable in place")),
            };
            match key {
                Ordering::Less => key_changes.push(i as u32),
                Ordering::Equal => {
                    let bad = match tnull {
                        None => tv[i - 1] > tv[i],
                        Some(nb) => {
                            cmp_time(nb.is_valid(i - 1).then(|| tv[i - 1]), nb.is_valid(i).then(|| tv[i]))
                                == Ordering::Greater
                        }
                    };
                    if bad {
                        return Err(self.violation(&name, first_row + i as u64, true, data, i - 1, data, i));
                    }
                }
                Ordering::Greater => {
                    return Err(self.violation(&name, first_row + i as u64, false, data, i - 1, data, i));
                }
            }
        }
        self.last = Some(LastRow { time: batch.time(n - 1), data: data.slice(n - 1, 1) });
        let row_bytes = (data.get_array_memory_size() / n).max(1);
        Ok(SortedBatch { key_changes, row_bytes, ..batch })
    }

    /// An order violation at `row` of this input: the current row (`ci` of `cur`) sorts before
    /// the previous one (`pi` of `prev`), by key, or (`by_time`) by time within one key.
    #[allow(clippy::too_many_arguments)]
    fn violation(
        &self,
        name: &str,
        row: u64,
        by_time: bool,
        prev: &RecordBatch,
        pi: usize,
        cur: &RecordBatch,
        ci: usize,
    ) -> Error {
        let l = &self.layout;
        let key = format_key(cur, l.n_keys, ci);
        let what = if !by_time {
            format!("key {key} comes after key {}", format_key(prev, l.n_keys, pi))
        } else {
            let time = |b: &RecordBatch, i: usize| columns::format_time_at(b.column(l.time_idx()).as_ref(), i, None);
            format!("key {key}: {} {} comes after {}", l.time_name, time(cur, ci), time(prev, pi))
        };
        let order = format!("{name}: row {row}: {what}: not sorted by ({}, {})", l.key_names.join(", "), l.time_name);
        match self.source_kind {
            SourceKind::Input => {
                Error::data(format!("{order}; rerun with --sort (probe-check-order shows what the input needs)"))
            }
            SourceKind::SortedRun => Error::internal(format!("{order} in a sorted run")),
        }
    }
}

/// Where a cursor's rows come from, which decides what an order violation means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// A user's input: a violation is bad input, and `--sort` is the fix.
    Input,
    /// A run that `--sort` wrote sorted: a violation is a bug.
    SortedRun,
}

/// An input's current batch and position, at the first row of a key: the heap of the merge
/// orders these by (key, input).
struct Head {
    batch: Arc<SortedBatch>,
    pos: usize,
    cursor: usize,
}

impl Head {
    fn cmp_key(&self, other: &Head) -> Ordering {
        // Key columns of one type in every batch (checked as batches arrive): this cannot fail.
        let key = self.batch.cmp_keys(self.pos, &other.batch, other.pos).unwrap_or(Ordering::Equal);
        key.then_with(|| self.batch.input.cmp(&other.batch.input))
    }
}

impl PartialEq for Head {
    fn eq(&self, other: &Self) -> bool {
        self.cmp_key(other) == Ordering::Equal
    }
}
impl Eq for Head {}
impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Head {
    // BinaryHeap is a max-heap: reverse so the smallest key is on top.
    fn cmp(&self, other: &Self) -> Ordering {
        other.cmp_key(self)
    }
}

/// An input with rows of the key being merged: its rows `pos..key_end` of `batch` are that
/// key's (`key_end`: the batch's next key change, or its end). Ordered by the time at `pos`,
/// kept here as (null, value) so comparing two takes no lookups, then by input.
struct TimeHead {
    null: bool,
    time: i64,
    batch: Arc<SortedBatch>,
    pos: usize,
    key_end: usize,
    cursor: usize,
}

impl TimeHead {
    fn new(batch: Arc<SortedBatch>, pos: usize, cursor: usize) -> TimeHead {
        let key_end = next_key_change(&batch, pos);
        let mut head = TimeHead { null: false, time: 0, batch, pos, key_end, cursor };
        head.load_time();
        head
    }

    fn load_time(&mut self) {
        let t = &self.batch.times;
        self.null = t.is_null(self.pos);
        self.time = if self.null { 0 } else { t.value(self.pos) };
    }

    /// (time, input) order: nulls last, ties to the earlier input.
    fn order(&self) -> (bool, i64, usize) {
        (self.null, if self.null { 0 } else { self.time }, self.batch.input)
    }

    /// Whether row `i` of this head's batch sorts before `other`'s head.
    fn row_before(&self, i: usize, other: &TimeHead) -> bool {
        let t = &self.batch.times;
        let null = t.is_null(i);
        let time = if null { 0 } else { t.value(i) };
        (null, time, self.batch.input) < other.order()
    }
}

impl PartialEq for TimeHead {
    fn eq(&self, other: &Self) -> bool {
        self.order() == other.order()
    }
}
impl Eq for TimeHead {}
impl PartialOrd for TimeHead {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for TimeHead {
    // Reversed, as for `Head`: the earliest time on top.
    fn cmp(&self, other: &Self) -> Ordering {
        other.order().cmp(&self.order())
    }
}

/// The first row after `pos` where the key changes, or the batch's end.
fn next_key_change(batch: &SortedBatch, pos: usize) -> usize {
    let i = batch.key_changes.partition_point(|&c| (c as usize) <= pos);
    batch.key_changes.get(i).map_or(batch.len(), |&c| c as usize)
}

/// Merge the cursors (in input order) into `sink`; calls `on_batch(rows)` per decoded batch.
///
/// Two levels: a heap of the inputs by (key, input) picks the next key, comparing keys once per
/// run of a key in an input, not once per row; the inputs that hold that key are then merged by
/// (time, input) on a second heap whose entries carry their time, so rows of one key from
/// several inputs (daily files, `--sort`'s runs), interleaved row by row, take integer
/// comparisons only. Where a key ends within a batch is known from the batch's key changes, and
/// the sink is told where each key starts ([`RunSink::push_key_run`]). Rows stream through: a
/// key's rows are handed over as they are merged, never gathered whole.
pub fn merge(mut cursors: Vec<Cursor>, sink: &mut dyn RunSink, on_batch: &mut dyn FnMut(usize)) -> Result<()> {
    if cursors.len() == 1 {
        let c = &mut cursors[0];
        while let Some(b) = c.next_batch()? {
            on_batch(b.len());
            sink.push_run(&b, 0, b.len())?;
        }
        return Ok(());
    }
    // Keys compare in place or, for other types, in the row format the order check encoded
    // them in; either way every batch's key columns must have the same types (the inputs'
    // schemas agree), which makes comparing them infallible on the heaps.
    let mut key_types: Option<Vec<DataType>> = None;
    let mut next = |cursors: &mut Vec<Cursor>, i: usize| -> Result<Option<Arc<SortedBatch>>> {
        let b = cursors[i].next_batch()?;
        if let Some(b) = &b {
            on_batch(b.len());
            let types = b.key_columns().iter().map(|c| c.data_type());
            match &key_types {
                None => key_types = Some(types.cloned().collect()),
                Some(first) => {
                    if !first.iter().eq(types) {
                        return Err(Error::internal("merged inputs whose key columns differ in type"));
                    }
                }
            }
        }
        Ok(b)
    };
    let mut heap = BinaryHeap::with_capacity(cursors.len());
    for i in 0..cursors.len() {
        if let Some(b) = next(&mut cursors, i)? {
            heap.push(Head { batch: b, pos: 0, cursor: i });
        }
    }
    let mut times: BinaryHeap<TimeHead> = BinaryHeap::with_capacity(cursors.len());
    while let Some(first) = heap.pop() {
        // The key to merge, and every input whose next rows have it.
        let (key_batch, key_row) = (first.batch.clone(), first.pos);
        times.push(TimeHead::new(first.batch, first.pos, first.cursor));
        while heap.peek().is_some_and(|h| key_batch.cmp_keys(key_row, &h.batch, h.pos).ok() == Some(Ordering::Equal)) {
            if let Some(h) = heap.pop() {
                times.push(TimeHead::new(h.batch, h.pos, h.cursor));
            }
        }
        let mut starts_key = true;
        while let Some(mut head) = times.pop() {
            // This input's rows of the key, while they stay before the next input's.
            let mut end = head.pos + 1;
            match times.peek() {
                None => end = head.key_end,
                Some(other) => {
                    while end < head.key_end && head.row_before(end, other) {
                        end += 1;
                    }
                }
            }
            sink.push_key_run(&head.batch, head.pos, end - head.pos, starts_key)?;
            starts_key = false;
            if end < head.key_end {
                head.pos = end;
                head.load_time();
                times.push(head);
            } else if end < head.batch.len() {
                // The input's next key: back to the key heap.
                heap.push(Head { batch: head.batch, pos: end, cursor: head.cursor });
            } else if let Some(b) = next(&mut cursors, head.cursor)? {
                // The key may go on in the input's next batch.
                if key_batch.cmp_keys(key_row, &b, 0)? == Ordering::Equal {
                    times.push(TimeHead::new(b, 0, head.cursor));
                } else {
                    heap.push(Head { batch: b, pos: 0, cursor: head.cursor });
                }
            }
        }
    }
    Ok(())
}

/// Columns `cols` of consecutive pieces `(batch, start, len)`, concatenated: a slice when there
/// is one piece, `concat` of slices for long pieces, a row-by-row gather for short ones (a
/// many-way merge of interleaved inputs).
pub fn gather(
    take: &[(Arc<SortedBatch>, usize, usize)],
    cols: std::ops::Range<usize>,
) -> std::result::Result<Vec<ArrayRef>, ArrowError> {
    let rows: usize = take.iter().map(|t| t.2).sum();
    if take.len() == 1 {
        let (b, s, n) = &take[0];
        return Ok(cols.map(|c| b.data.column(c).slice(*s, *n)).collect());
    }
    if take.len() * 8 > rows {
        let mut srcs: Vec<&Arc<SortedBatch>> = Vec::new();
        let mut idx = Vec::with_capacity(rows);
        for (b, s, n) in take {
            let i = match srcs.iter().rposition(|x| Arc::ptr_eq(x, b)) {
                Some(i) => i,
                None => {
                    srcs.push(b);
                    srcs.len() - 1
                }
            };
            idx.extend((*s..*s + *n).map(|r| (i, r)));
        }
        return cols
            .map(|c| {
                let arrays: Vec<&dyn Array> = srcs.iter().map(|b| b.data.column(c).as_ref()).collect();
                interleave(&arrays, &idx)
            })
            .collect();
    }
    cols.map(|c| {
        let slices: Vec<ArrayRef> = take.iter().map(|(b, s, n)| b.data.column(c).slice(*s, *n)).collect();
        let refs: Vec<&dyn Array> = slices.iter().map(|a| a.as_ref()).collect();
        concat(&refs)
    })
    .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::VecDeque;

    use arrow::array::{AsArray, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};

    use super::*;

    /// Batches held in memory, as an input.
    pub(crate) struct Mem {
        pub name: String,
        pub batches: VecDeque<RecordBatch>,
        pub rows: u64,
    }

    impl BatchSource for Mem {
        fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
            let b = self.batches.pop_front();
            self.rows += b.as_ref().map_or(0, |b| b.num_rows() as u64);
            Ok(b)
        }
        fn name(&self) -> &str {
            &self.name
        }
        fn rows_read(&self) -> u64 {
            self.rows
        }
    }

    /// Columns k (key, Utf8), t (time, Int64), seq (Int64, the row's identity).
    pub(crate) fn batch(rows: &[(Option<&str>, Option<i64>, i64)]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("t", DataType::Int64, true),
            Field::new("seq", DataType::Int64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(rows.iter().map(|r| r.0).collect::<Vec<_>>())) as ArrayRef,
                Arc::new(Int64Array::from(rows.iter().map(|r| r.1).collect::<Vec<_>>())),
                Arc::new(Int64Array::from(rows.iter().map(|r| r.2).collect::<Vec<_>>())),
            ],
        )
        .expect("test batch")
    }

    /// One cursor per input (each a list of batches), as user inputs or as sorted runs.
    pub(crate) fn cursors(inputs: Vec<Vec<RecordBatch>>, kind: SourceKind) -> Vec<Cursor> {
        let converter = Arc::new(key_converter(&batch(&[]), 1).expect("converter"));
        let layout = Arc::new(Layout { n_keys: 1, key_names: vec!["k".into()], time_name: "t".into() });
        inputs
            .into_iter()
            .enumerate()
            .map(|(i, batches)| {
                let mem = Mem { name: format!("in{i}"), batches: batches.into(), rows: 0 };
                Cursor::new(Box::new(mem), i, converter.clone(), layout.clone(), kind)
            })
            .collect()
    }

    /// Records the seq of every row in the order the merge hands them over.
    struct Seqs(Vec<i64>);

    impl RunSink for Seqs {
        fn push_run(&mut self, batch: &Arc<SortedBatch>, start: usize, len: usize) -> Result<()> {
            let seq = batch.data.column(2).as_primitive::<Int64Type>();
            self.0.extend((start..start + len).map(|i| seq.value(i)));
            Ok(())
        }
    }

    fn merged(inputs: Vec<Vec<RecordBatch>>) -> Result<Vec<i64>> {
        let mut sink = Seqs(Vec::new());
        merge(cursors(inputs, SourceKind::Input), &mut sink, &mut |_| {})?;
        Ok(sink.0)
    }

    #[test]
    fn merge_orders_by_key_then_time_nulls_last_ties_in_input_order() -> Result<()> {
        let a = vec![batch(&[(Some("a"), Some(1), 0), (Some("a"), Some(2), 1)]), batch(&[(Some("b"), Some(1), 2)])];
        let b = vec![batch(&[(Some("a"), Some(1), 10), (Some("a"), None, 11), (Some("c"), Some(0), 12)])];
        let c = vec![batch(&[]), batch(&[(Some("a"), Some(0), 20), (None, Some(5), 21)])];
        assert_eq!(merged(vec![a, b, c])?, [20, 0, 10, 1, 11, 2, 12, 21]);
        Ok(())
    }

    /// Records, per row handed over, its seq and whether the sink was told a key starts there
    /// (`None`: a `push_run`, which does not say).
    struct KeyStarts(Vec<(i64, Option<bool>)>);

    impl RunSink for KeyStarts {
        fn push_run(&mut self, batch: &Arc<SortedBatch>, start: usize, len: usize) -> Result<()> {
            let seq = batch.data.column(2).as_primitive::<Int64Type>();
            self.0.extend((start..start + len).map(|i| (seq.value(i), None)));
            Ok(())
        }
        fn push_key_run(&mut self, batch: &Arc<SortedBatch>, start: usize, len: usize, starts_key: bool) -> Result<()> {
            let seq = batch.data.column(2).as_primitive::<Int64Type>();
            let key = batch.data.column(0).as_string::<i32>();
            assert!((start + 1..start + len)
                .all(|i| key.is_null(i) == key.is_null(start) && key.value(i) == key.value(start)));
            self.0.extend((start..start + len).map(|i| (seq.value(i), Some(starts_key && i == start))));
            Ok(())
        }
    }

    /// Many inputs whose keys and times interleave row by row, keys that go on across batches in
    /// several inputs, ties, null keys and null times: the merge hands the rows over in the
    /// order of a stable sort of all of them by (key, time, input), nulls last, and says exactly
    /// where each key starts.
    #[test]
    fn merge_equals_a_stable_sort_by_key_time_and_input() -> Result<()> {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut rand = |n: u64| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) % n
        };
        for case in 0..300 {
            let n_inputs = 2 + rand(6) as usize;
            let keys = 1 + rand(5);
            // (key, time, input, seq) of every row; each input sorted, then cut into batches.
            let mut all: Vec<(Option<String>, Option<i64>, usize, i64)> = Vec::new();
            let mut inputs = Vec::new();
            let mut seq = 0i64;
            for input in 0..n_inputs {
                let mut rows: Vec<(Option<String>, Option<i64>)> = (0..rand(30))
                    .map(|_| {
                        let k = rand(keys + 1);
                        let key = (k < keys).then(|| format!("k{k}"));
                        let time = (rand(10) > 0).then(|| rand(6) as i64);
                        (key, time)
                    })
                    .collect();
                // Nulls last, for keys and times alike.
                rows.sort_by(|a, b| {
                    (a.0.is_none(), &a.0, a.1.is_none(), a.1).cmp(&(b.0.is_none(), &b.0, b.1.is_none(), b.1))
                });
                let mut batches = Vec::new();
                let mut rest = &rows[..];
                while !rest.is_empty() {
                    let take = (1 + rand(8) as usize).min(rest.len());
                    let chunk: Vec<(Option<&str>, Option<i64>, i64)> = rest[..take]
                        .iter()
                        .map(|(k, t)| {
                            all.push((k.clone(), *t, input, seq));
                            seq += 1;
                            (k.as_deref(), *t, seq - 1)
                        })
                        .collect();
                    batches.push(batch(&chunk));
                    rest = &rest[take..];
                }
                inputs.push(batches);
            }
            let mut want = all.clone();
            want.sort_by(|a, b| {
                (a.0.is_none(), &a.0, a.1.is_none(), a.1, a.2).cmp(&(b.0.is_none(), &b.0, b.1.is_none(), b.1, b.2))
            });
            let mut sink = KeyStarts(Vec::new());
            merge(cursors(inputs, SourceKind::Input), &mut sink, &mut |_| {})?;
            let got: Vec<i64> = sink.0.iter().map(|r| r.0).collect();
            let want_seq: Vec<i64> = want.iter().map(|r| r.3).collect();
            assert_eq!(got, want_seq, "case {case}");
            let key_of = |s: i64| &all[s as usize].0;
            for (i, (s, starts)) in sink.0.iter().enumerate() {
                let new_key = i == 0 || key_of(sink.0[i - 1].0) != key_of(*s);
                assert_eq!(*starts, Some(new_key), "case {case}, row {i}");
            }
        }
        Ok(())
    }

    #[test]
    fn one_input_passes_through_whole_batches() -> Result<()> {
        let a = vec![batch(&[(Some("a"), Some(1), 0), (Some("b"), Some(1), 1)]), batch(&[(Some("b"), Some(2), 2)])];
        assert_eq!(merged(vec![a])?, [0, 1, 2]);
        Ok(())
    }

    #[test]
    fn order_violations_name_the_input_and_row_within_and_across_batches() {
        let err = |inputs| merged(inputs).expect_err("unsorted").to_string();
        let key = err(vec![vec![batch(&[(Some("b"), Some(1), 0), (Some("a"), Some(1), 1)])]]);
        assert!(key.contains("in0: row 1") && key.contains("\"a\"") && key.contains("--sort"), "{key}");
        let time = err(vec![vec![batch(&[(Some("a"), Some(5), 0)]), batch(&[(Some("a"), Some(4), 1)])]]);
        assert!(time.contains("in0: row 1") && time.contains("t ") && time.contains("--sort"), "{time}");
        // A null time sorts last: a time after it is out of order.
        let null = err(vec![vec![batch(&[(Some("a"), None, 0), (Some("a"), Some(1), 1)])]]);
        assert!(null.contains("row 1"), "{null}");
    }

    /// A composite key with a float column is encoded and checked in row format, across batches too.
    #[test]
    fn keys_not_compared_in_place_are_checked_in_row_format() {
        use arrow::array::Float64Array;
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Float64, true),
            Field::new("t", DataType::Int64, true),
        ]));
        let b = |k: Vec<Option<f64>>| {
            let t = Int64Array::from(vec![Some(1); k.len()]);
            RecordBatch::try_new(schema.clone(), vec![Arc::new(Float64Array::from(k)) as ArrayRef, Arc::new(t)])
                .expect("batch")
        };
        let layout = Arc::new(Layout { n_keys: 1, key_names: vec!["k".into()], time_name: "t".into() });
        let run = |batches: Vec<RecordBatch>| -> Result<Vec<u32>> {
            let converter = Arc::new(key_converter(&batches[0], 1)?);
            let mem = Mem { name: "in0".into(), batches: batches.into(), rows: 0 };
            let mut c = Cursor::new(Box::new(mem), 0, converter, layout.clone(), SourceKind::Input);
            let mut changes = Vec::new();
            while let Some(batch) = c.next_batch()? {
                assert!(batch.keys.get().is_some(), "a float key is encoded");
                changes.extend(&batch.key_changes);
            }
            Ok(changes)
        };
        assert_eq!(
            run(vec![b(vec![Some(-0.0), Some(0.0), Some(0.0), Some(f64::NAN), None])]).expect("sorted"),
            [1, 3, 4]
        );
        let err = run(vec![b(vec![Some(1.0)]), b(vec![Some(-0.0)])]).expect_err("unsorted across batches").to_string();
        assert!(err.contains("in0: row 1") && err.contains("--sort"), "{err}");
    }

    #[test]
    fn a_violation_in_a_sorted_run_is_an_internal_error() {
        let run = vec![vec![batch(&[(Some("b"), Some(1), 0), (Some("a"), Some(1), 1)])]];
        let mut sink = Seqs(Vec::new());
        let e = merge(cursors(run, SourceKind::SortedRun), &mut sink, &mut |_| {}).expect_err("unsorted run");
        assert!(matches!(e, Error::Internal(_)), "{e:?}");
        assert!(!e.to_string().contains("--sort"), "{e}");
    }
}
