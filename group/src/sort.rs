//! External sort for `probe-group --sort`: input in any order -> sorted runs -> merge.
//!
//! 1. **Runs.** Input batches (all inputs, in the order given) are decoded and their
//!    (key, time) columns converted to arrow's row format until the run budget (half of
//!    `--memory-limit`) is used; the rows are then stable-sorted on all threads (ties keep
//!    input order) and written as compressed Arrow IPC files in `--temp-dir` (compressed on all
//!    threads). When all input fits in one run, nothing is spilled: the sorted run is served
//!    from memory. When the input is known to need at most half the fan-in of quarter-limit
//!    runs, runs are a quarter of the limit instead, and each is sorted and spilled on a thread
//!    of its own while the next fills: reading no longer waits for the sort.
//! 2. **Parts.** The first run's quantiles cut it into up to [`PARTS`] parts (distinct split keys; at least
//!    [`MIN_PART_ROWS`] rows of that run per part). Every run is cut at them, one spill file
//!    per part, so part `j` of every run holds the same keys and no key is in two parts. The
//!    split keys depend on the data and `--memory-limit` alone, never on `--threads`.
//! 3. **Merge passes.** While there are more runs than `--fan-in`, groups of `fan-in`
//!    *consecutive* runs are merged into one, part by part (consecutive, so that ties still
//!    resolve to the earlier run and input order survives).
//! 4. **Final merge, part by part.** Each part's runs are merged and grouped on a thread of its
//!    own and the parts written in key order ([`crate::ordered`]): the same bytes for any
//!    number of threads.
//!
//! Budget: the run buffer is half the limit (two of a quarter when runs overlap: the one being
//! spilled and the one filling); spill batches are sized so that `fan-in` of them
//! (decoded, with their row-format keys) fit in a quarter. The parts merged at once are as many
//! as fit in the half the run buffer leaves free. What is not counted is the fixed overhead of
//! the process (code, allocator, Parquet page buffers): the README documents it.
//!
//! Spill files live in a private directory under `--temp-dir`, removed when the stage ends,
//! fails, or is interrupted (SIGINT/SIGTERM via `probe_core::cleanup`).

use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch};
use arrow::compute::{interleave, SortOptions};
use arrow::datatypes::{Schema, SchemaRef};
use arrow::row::{OwnedRow, RowConverter, Rows, SortField};
use rayon::iter::{IndexedParallelIterator, IntoParallelRefIterator, ParallelExtend, ParallelIterator};
use rayon::slice::ParallelSliceMut;

use probe_core::cli::human_bytes;
use probe_core::input::{BatchReader, Window};
use probe_core::progress::Progress;
use probe_core::{Error, Result};

use crate::merge::{gather, key_converter, merge, BatchSource, Cursor, Layout, RunSink, SortedBatch, SourceKind};
use crate::spill::{RunReader, RunWriter, SpillDir};
use crate::Config;

/// Sorted runs ready for the final merge, cut into parts (key ranges) merged independently.
pub struct Sorted {
    /// Per part, its sources (one per run that has rows there, in run order), taken once.
    parts: Vec<std::sync::Mutex<Option<PartSources>>>,
    dir: Option<Arc<SpillDir>>,
    /// Runs spilled to disk (0 when everything fit in memory).
    pub runs: u64,
    /// Intermediate merge passes.
    pub passes: u64,
    /// Bytes written to spill files, all passes.
    pub bytes: u64,
    /// Runs the final merge of a part reads at once (the most in any part).
    pub final_runs: usize,
}

enum PartSources {
    Mem(MemRun),
    Files(Vec<PathBuf>),
}

impl Sorted {
    /// How many parts.
    pub fn parts(&self) -> usize {
        self.parts.len()
    }

    /// Whether the runs were spilled (else the one run is in memory).
    pub fn spilled(&self) -> bool {
        self.dir.is_some()
    }

    /// The sources of part `j`, in run order (each part's are handed out once).
    pub fn take_part(&self, j: usize) -> Result<Vec<Box<dyn BatchSource + Send>>> {
        let taken = self.parts.get(j).and_then(|p| p.lock().ok()?.take());
        match taken {
            None => Err(Error::internal(format!("sort part {j} taken twice"))),
            Some(PartSources::Mem(run)) => {
                Ok(if run.len() == 0 { Vec::new() } else { vec![Box::new(run) as Box<dyn BatchSource + Send>] })
            }
            Some(PartSources::Files(paths)) => {
                let dir =
                    self.dir.as_ref().ok_or_else(|| Error::internal("spilled parts without a spill directory"))?;
                paths
                    .iter()
                    .map(|p| RunReader::open(p, dir).map(|r| Box::new(r) as Box<dyn BatchSource + Send>))
                    .collect()
            }
        }
    }
}

/// How the budget is split.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Bytes of decoded input (plus sort keys) gathered into one run: half the limit, or a
    /// quarter where runs overlap ([`sort_inputs`]).
    pub run_bytes: usize,
    /// Target bytes of one spilled batch.
    pub spill_batch_bytes: usize,
    /// Runs merged at once.
    pub fan_in: usize,
    /// Decoded bytes of a spill file's batches that may wait to be compressed on the pool (the
    /// merge's quarter of the budget is idle while a run is spilled).
    pub spill_in_flight: usize,
}

impl Budget {
    /// Split `--memory-limit` among the phases.
    pub fn new(limit: u64, fan_in: usize) -> Budget {
        let limit = limit as usize;
        // Decoded batch + its row-format keys + a little slack: ~3x the batch's bytes each.
        let spill_batch_bytes = (limit / 4 / (3 * fan_in)).clamp(1024, 8 << 20);
        Budget { run_bytes: (limit / 2).max(1024), spill_batch_bytes, fan_in, spill_in_flight: limit / 8 }
    }
}

/// A run gathered in memory: batches plus the sorted order of their rows; a part of a run is
/// the same batches and order with a narrower `pos..end`.
struct MemRun {
    batches: Arc<Vec<RecordBatch>>,
    order: Arc<Vec<(usize, usize)>>,
    pos: usize,
    end: usize,
    chunk_rows: usize,
}

impl MemRun {
    fn len(&self) -> usize {
        self.end - self.pos
    }

    /// Rows `start..end` of this run (positions in its order), sharing its data.
    fn part(&self, start: usize, end: usize) -> MemRun {
        MemRun {
            batches: self.batches.clone(),
            order: self.order.clone(),
            pos: start,
            end,
            chunk_rows: self.chunk_rows,
        }
    }

    fn next_chunk(&mut self) -> Result<Option<RecordBatch>> {
        if self.pos >= self.end {
            return Ok(None);
        }
        let end = (self.pos + self.chunk_rows).min(self.end);
        let chunk = gather_rows(&self.batches, &self.order[self.pos..end])?;
        self.pos = end;
        Ok(Some(chunk))
    }

    /// The key (key columns only, row format) of the row at position `i` of the order.
    fn key_at(&self, i: usize, keys: &Keys) -> Result<OwnedRow> {
        let (b, r) = self.order[i];
        let batch = &self.batches[b];
        let cols: Vec<ArrayRef> = (0..keys.n_keys).map(|c| batch.column(c).slice(r, 1)).collect();
        let rows = keys.converter.convert_columns(&cols).map_err(|e| Error::arrow("sort keys", e))?;
        Ok(rows.row(0).owned())
    }

    /// Where each part starts: the first position whose key is at or above each split key.
    fn bounds(&self, splits: &[OwnedRow], keys: &Keys) -> Result<Vec<usize>> {
        let mut bounds = vec![self.pos];
        for split in splits {
            // Binary search of the sorted order (keys ascending); one row converted per step.
            let (mut lo, mut hi) = (*bounds.last().unwrap_or(&self.pos), self.end);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if self.key_at(mid, keys)?.row() < split.row() {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            bounds.push(lo);
        }
        bounds.push(self.end);
        Ok(bounds)
    }
}

/// The key columns in row format, for the split keys of the parts.
pub(crate) struct Keys {
    converter: RowConverter,
    n_keys: usize,
}

/// Parts (key ranges) the sort's final merge is cut into, at most; each part is merged and
/// grouped on a thread of its own. Independent of `--threads`, so the output is too.
pub const PARTS: usize = 128;

/// Rows of the first run per part, at least: smaller parts would cost more than they save.
pub const MIN_PART_ROWS: usize = 1 << 14;

/// Split keys from the first run, which the sort has just ordered: its quantiles, distinct.
/// A key is never cut: part `j` holds the keys from split `j - 1` (included) to split `j`.
fn split_keys(run: &MemRun, keys: &Keys, part_rows: usize) -> Result<Vec<OwnedRow>> {
    let parts = (run.len() / part_rows.max(1)).clamp(1, PARTS);
    let mut splits: Vec<OwnedRow> = Vec::with_capacity(parts);
    for q in 1..parts {
        let key = run.key_at(run.pos + q * run.len() / parts, keys)?;
        let first = run.key_at(run.pos, keys)?;
        let above = match splits.last() {
            Some(last) => key.row() > last.row(),
            None => key.row() > first.row(),
        };
        if above {
            splits.push(key);
        }
    }
    Ok(splits)
}

/// The rows `idx` (batch, row) of `batches`, in that order, as one batch.
fn gather_rows(batches: &[RecordBatch], idx: &[(usize, usize)]) -> Result<RecordBatch> {
    let schema = batches[0].schema();
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for c in 0..schema.fields().len() {
        let arrays: Vec<&dyn Array> = batches.iter().map(|b| b.column(c).as_ref()).collect();
        cols.push(interleave(&arrays, idx).map_err(|e| Error::arrow("sorting a run", e))?);
    }
    RecordBatch::try_new(schema, cols).map_err(|e| Error::arrow("sorting a run", e))
}

impl BatchSource for MemRun {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        self.next_chunk()
    }
    fn name(&self) -> &str {
        "in-memory sorted run"
    }
    fn rows_read(&self) -> u64 {
        self.pos as u64
    }
}

/// Collects input until the run budget is used.
struct RunBuilder {
    converter: RowConverter,
    n_keys: usize,
    batches: Vec<RecordBatch>,
    rows: Vec<Rows>,
    bytes: usize,
    count: usize,
}

impl RunBuilder {
    fn new(schema: &Schema, n_keys: usize) -> Result<RunBuilder> {
        let opts = SortOptions { descending: false, nulls_first: false };
        let fields =
            (0..=n_keys).map(|i| SortField::new_with_options(schema.field(i).data_type().clone(), opts)).collect();
        let converter = RowConverter::new(fields).map_err(|e| Error::arrow("sort keys", e))?;
        Ok(RunBuilder { converter, n_keys, batches: Vec::new(), rows: Vec::new(), bytes: 0, count: 0 })
    }

    fn push(&mut self, batch: RecordBatch) -> Result<()> {
        let cols: Vec<ArrayRef> = batch.columns()[..=self.n_keys].to_vec();
        let rows = self.converter.convert_columns(&cols).map_err(|e| Error::arrow("sort keys", e))?;
        // Decoded data, its sort keys, 32 bytes a row for the sort tuples and 16 for the order.
        self.bytes += batch.get_array_memory_size() + rows.size() + 48 * batch.num_rows();
        self.count += batch.num_rows();
        self.batches.push(batch);
        self.rows.push(rows);
        Ok(())
    }

    /// Stable sort of everything gathered: ties keep the order rows arrived in.
    fn sorted(&mut self) -> MemRun {
        let mut order: Vec<(usize, usize)> = Vec::with_capacity(self.count);
        // Sort (prefix, row bytes, batch, row) tuples: the first 8 bytes of the row format as a
        // big-endian integer settle most comparisons without touching the row bytes, and the
        // (batch, row) tie-break makes the parallel unstable sort equal to a stable one.
        // Built on all threads, a batch each (the order of the tuples does not matter: the
        // sort's tie-break is the position).
        let mut keys: Vec<(u64, &[u8], u32, u32)> = Vec::with_capacity(self.count);
        keys.par_extend(self.rows.par_iter().enumerate().flat_map_iter(|(b, rows)| {
            (0..rows.num_rows()).map(move |r| {
                let bytes: &[u8] = rows.row(r).data();
                let mut prefix = [0u8; 8];
                let n = bytes.len().min(8);
                prefix[..n].copy_from_slice(&bytes[..n]);
                (u64::from_be_bytes(prefix), bytes, b as u32, r as u32)
            })
        }));
        keys.par_sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)).then((a.2, a.3).cmp(&(b.2, b.3))));
        order.clear();
        order.par_extend(keys.par_iter().map(|k| (k.2 as usize, k.3 as usize)));
        drop(keys);
        self.rows.clear();
        self.bytes = 0;
        self.count = 0;
        let end = order.len();
        MemRun {
            batches: Arc::new(std::mem::take(&mut self.batches)),
            order: Arc::new(order),
            pos: 0,
            end,
            chunk_rows: 0,
        }
    }
}

/// Write one sorted run to the spill directory, one file per part (`None` where the part is
/// empty; files numbered from `next_file`), in batches of about `budget.spill_batch_bytes`.
/// Chunks are gathered a window at a time on all threads, across part boundaries, and each
/// file compresses on the pool too, so small parts do not serialise the spill.
fn spill_run(
    run: MemRun,
    splits: &[OwnedRow],
    keys: &Keys,
    dir: &SpillDir,
    next_file: &mut usize,
    schema: &SchemaRef,
    budget: &Budget,
) -> Result<(Vec<Option<PathBuf>>, u64)> {
    let chunk = chunk_rows(&run.batches, budget.spill_batch_bytes);
    let bounds = run.bounds(splits, keys)?;
    // (part, first, end) positions of the order, no chunk crossing a part's end.
    let mut chunks: Vec<(usize, usize, usize)> = Vec::new();
    for (j, w) in bounds.windows(2).enumerate() {
        let mut start = w[0];
        while start < w[1] {
            let end = (start + chunk).min(w[1]);
            chunks.push((j, start, end));
            start = end;
        }
    }
    let parts = bounds.len().saturating_sub(1);
    let busy = chunks.iter().map(|c| c.0).collect::<std::collections::BTreeSet<_>>().len().max(1);
    let in_flight = (budget.spill_in_flight / busy).max(1);
    let mut writers: Vec<Option<RunWriter>> = (0..parts).map(|_| None).collect();
    let window = (2 * rayon::current_num_threads()).max(8);
    for group in chunks.chunks(window) {
        let gathered: Vec<Result<RecordBatch>> =
            group.par_iter().map(|&(_, a, b)| gather_rows(&run.batches, &run.order[a..b])).collect();
        for (&(j, _, _), batch) in group.iter().zip(gathered) {
            let writer = match &mut writers[j] {
                Some(w) => w,
                slot @ None => {
                    let w = RunWriter::create(dir, *next_file, schema, in_flight)?;
                    *next_file += 1;
                    slot.insert(w)
                }
            };
            writer.write(&batch?)?;
        }
    }
    drop(run);
    let mut bytes = 0;
    let mut files = Vec::with_capacity(parts);
    for w in writers {
        files.push(match w {
            None => None,
            Some(w) => {
                let (path, size) = w.finish()?;
                bytes += size;
                Some(path)
            }
        });
    }
    Ok((files, bytes))
}

fn chunk_rows(batches: &[RecordBatch], target: usize) -> usize {
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let bytes: usize = batches.iter().map(|b| b.get_array_memory_size()).sum();
    let per_row = (bytes / rows.max(1)).max(1);
    (target / per_row).clamp(1, 1 << 20)
}

/// The smallest run that overlaps (a quarter of a 256 MiB `--memory-limit`): below it the spill
/// thread and the extra runs cost more than the overlap saves (2M shuffled rows at 64 MiB, 2
/// threads: 3-5% slower and 8 MB more), while at 1 GiB on 10M rows it was 10% faster.
pub const OVERLAP_MIN_RUN_BYTES: usize = 64 << 20;

/// A spilled run's part files, their bytes, and the next spill file number.
type SpillResult = Result<(Vec<Option<PathBuf>>, u64, usize)>;

/// The runs spilled so far, in run order.
struct Spills {
    runs: Vec<Vec<Option<PathBuf>>>,
    bytes: u64,
    next_file: usize,
}

impl Spills {
    /// The run a spill thread wrote, in its turn.
    fn join(&mut self, spilling: std::thread::ScopedJoinHandle<'_, SpillResult>) -> Result<()> {
        self.add(spilling.join().map_err(|_| Error::internal("spilling a sorted run panicked"))?)
    }

    fn add(&mut self, spilled: SpillResult) -> Result<()> {
        let (files, size, next) = spilled?;
        self.runs.push(files);
        self.bytes += size;
        self.next_file = next;
        Ok(())
    }
}

/// Turn the inputs into sorted runs (spilling when they do not fit), cut into parts by split
/// keys taken from the first run, ready for the final merge of each part.
pub fn sort_inputs(
    readers: Vec<BatchReader>,
    total_rows: Option<u64>,
    schema: &Arc<Schema>,
    cfg: &Config,
    layout: &Arc<Layout>,
    progress: &Progress,
) -> Result<Sorted> {
    let budget = Budget::new(cfg.memory_limit, cfg.fan_in);
    let part_rows = cfg.sort_part_rows.unwrap_or(MIN_PART_ROWS);
    let mut builder = RunBuilder::new(schema, layout.n_keys)?;
    let keys = Keys {
        converter: key_converter(&RecordBatch::new_empty(schema.clone()), layout.n_keys)?,
        n_keys: layout.n_keys,
    };
    let mut spill: Option<Arc<SpillDir>> = None;
    let mut splits: Option<Vec<OwnedRow>> = None;
    let mut acc = Spills { runs: Vec::new(), bytes: 0, next_file: 0 };
    // With threads to spare, each input is decoded two batches ahead on a thread of its own
    // while this one checks times, converts keys and sorts. With many threads the inputs after
    // it start decoding too: one per four threads (the pool sorts runs meanwhile; on 2 cores a
    // second decoding input measured no faster), as many as the merge's quarter of the limit
    // (idle while runs are built) holds at three batches each. Batches arrive in input order.
    let threads = rayon::current_num_threads();
    let batch_bytes = cfg.input_batch_bytes(readers.len()).max(1) as u64;
    let window = ((cfg.memory_limit / 4) / (3 * batch_bytes)).clamp(1, (threads as u64 / 4).max(1)) as usize;
    // Runs overlap (a quarter of the limit each, sorted and spilled on a thread of its own,
    // using the pool, while this one fills the next; one in flight at a time, so spill files
    // keep run order) where the input is known (row count from the footers, bytes a row from
    // its first batch) to be more than half the limit (less fits in one run, never spilled)
    // and to need at most half the fan-in of quarter runs (still one merge pass), and a
    // quarter is at least [`OVERLAP_MIN_RUN_BYTES`]. Else, or when the size is unknown
    // (streams), runs are half the limit, one at a time. Decided from the data and the limit
    // alone, and spilled here in turn with one thread: the runs, and so the split keys and
    // the output, are the same for any --threads.
    let mut overlap: Option<bool> = None;
    std::thread::scope(|scope| -> Result<()> {
        let mut pending: Option<std::thread::ScopedJoinHandle<'_, SpillResult>> = None;
        for reader in Window::new(readers.into_iter().map(|r| r.ahead_with(threads)), window) {
            let mut reader = reader?;
            while let Some(batch) = reader.next_batch()? {
                if batch.num_rows() == 0 {
                    continue;
                }
                progress.inc(batch.num_rows());
                // Times are checked here, where the file and row are known, not in the sorted runs.
                let first_row = reader.rows_read() - batch.num_rows() as u64;
                probe_core::columns::check_time_values(batch.column(layout.time_idx()), |i| {
                    format!("{}: row {}", reader.name(), first_row + i as u64)
                })?;
                // Inputs may differ in top-level nullability: runs hold the common schema (a
                // column nullable if it is in any input), or a later input's nulls would not
                // fit the first's non-null field when rows of both are gathered.
                let batch = if batch.schema() == *schema {
                    batch
                } else {
                    RecordBatch::try_new(schema.clone(), batch.columns().to_vec())
                        .map_err(|e| Error::arrow(format!("reading {}", reader.name()), e))?
                };
                builder.push(batch)?;
                let overlap = *overlap.get_or_insert_with(|| {
                    let per_row = builder.bytes as f64 / builder.count.max(1) as f64;
                    let quarter = (budget.run_bytes / 2).max(1024) as f64;
                    let input = total_rows.map(|n| per_row * n as f64);
                    quarter >= cfg.sort_overlap_min_run.unwrap_or(OVERLAP_MIN_RUN_BYTES) as f64
                        && input
                            .is_some_and(|d| d > budget.run_bytes as f64 && d <= quarter * (budget.fan_in / 2) as f64)
                });
                let run_bytes = if overlap { (budget.run_bytes / 2).max(1024) } else { budget.run_bytes };
                if builder.bytes < run_bytes {
                    continue;
                }
                if let Some(h) = pending.take() {
                    acc.join(h)?;
                }
                let dir = match &spill {
                    Some(d) => d.clone(),
                    None => {
                        let d = SpillDir::new(&cfg.temp_dir)?;
                        spill = Some(d.clone());
                        d
                    }
                };
                let mut full = std::mem::replace(&mut builder, RunBuilder::new(schema, layout.n_keys)?);
                // The first run is sorted here: its quantiles are the split keys of every run.
                let first = match &splits {
                    Some(_) => None,
                    None => {
                        let run = full.sorted();
                        splits = Some(split_keys(&run, &keys, part_rows)?);
                        Some(run)
                    }
                };
                let run_splits = splits.clone().unwrap_or_default();
                let (keys, budget, from) = (&keys, &budget, acc.next_file);
                // A panic becomes an error here: a scoped thread's panic left unjoined (this
                // thread returning an error of its own first) would be re-raised by the scope.
                let job = move || -> SpillResult {
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        let run = first.unwrap_or_else(|| full.sorted());
                        let mut next = from;
                        let (files, size) = spill_run(run, &run_splits, keys, &dir, &mut next, schema, budget)?;
                        Ok((files, size, next))
                    }))
                    .unwrap_or_else(|_| Err(Error::internal("spilling a sorted run panicked")))
                };
                if threads > 1 && overlap {
                    let spawned = std::thread::Builder::new().name("probe-spill".into()).spawn_scoped(scope, job);
                    pending =
                        Some(spawned.map_err(|e| {
                            Error::config(format!("cannot start a spill thread ({e}); lower --threads"))
                        })?);
                } else {
                    acc.add(job())?;
                }
            }
        }
        match pending {
            Some(h) => acc.join(h),
            None => Ok(()),
        }
    })?;
    // Per run, its part files.
    let Spills { mut runs, bytes: mut spilled_bytes, mut next_file } = acc;
    let mut last = builder.sorted();
    let Some(dir) = spill else {
        // Everything fit: serve the one run from memory, in parts, nothing touches the disk.
        last.chunk_rows = chunk_rows(&last.batches, cfg.batch_bytes);
        let splits = split_keys(&last, &keys, part_rows)?;
        let bounds = last.bounds(&splits, &keys)?;
        let parts =
            bounds.windows(2).map(|w| std::sync::Mutex::new(Some(PartSources::Mem(last.part(w[0], w[1]))))).collect();
        return Ok(Sorted { parts, dir: None, runs: 0, passes: 0, bytes: 0, final_runs: 1 });
    };
    let splits = splits.unwrap_or_default();
    if last.len() > 0 {
        let (files, size) = spill_run(last, &splits, &keys, &dir, &mut next_file, schema, &budget)?;
        spilled_bytes += size;
        runs.push(files);
    }
    let run_count = runs.len() as u64;
    progress.log(&format!(
        "sorted {run_count} runs ({} spilled to {}) at {:.1} s",
        human_bytes(spilled_bytes),
        dir.path().display(),
        progress.elapsed()
    ));

    // Intermediate passes until one final merge of at most fan-in runs remains, part by part.
    let mut passes = 0u64;
    let converter = Arc::new(key_converter(&RecordBatch::new_empty(schema.clone()), layout.n_keys)?);
    let n_parts = splits.len() + 1;
    while runs.len() > budget.fan_in {
        passes += 1;
        let mut merged = Vec::with_capacity(runs.len().div_ceil(budget.fan_in));
        for group in runs.chunks(budget.fan_in) {
            let mut files = Vec::with_capacity(n_parts);
            for j in 0..n_parts {
                let paths: Vec<PathBuf> = group.iter().filter_map(|r| r.get(j).cloned().flatten()).collect();
                if paths.len() <= 1 {
                    files.push(paths.into_iter().next());
                    continue;
                }
                let cursors = open_cursors(&paths, &dir, &converter, layout)?;
                let mut sink = SpillSink::new(
                    RunWriter::create(&dir, next_file, schema, budget.spill_in_flight)?,
                    schema.clone(),
                    budget.spill_batch_bytes,
                );
                next_file += 1;
                merge(cursors, &mut sink, &mut |_| {})?;
                let (path, size) = sink.finish()?;
                spilled_bytes += size;
                files.push(Some(path));
            }
            merged.push(files);
        }
        runs = merged;
    }
    let mut final_runs = 0;
    let parts = (0..n_parts)
        .map(|j| {
            let paths: Vec<PathBuf> = runs.iter().filter_map(|r| r.get(j).cloned().flatten()).collect();
            final_runs = final_runs.max(paths.len());
            std::sync::Mutex::new(Some(PartSources::Files(paths)))
        })
        .collect();
    Ok(Sorted { parts, dir: Some(dir), runs: run_count, passes, bytes: spilled_bytes, final_runs })
}

fn open_cursors(
    paths: &[PathBuf],
    dir: &Arc<SpillDir>,
    converter: &Arc<RowConverter>,
    layout: &Arc<Layout>,
) -> Result<Vec<Cursor>> {
    paths
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let r = RunReader::open(p, dir)?;
            Ok(Cursor::new(Box::new(r), i, converter.clone(), layout.clone(), SourceKind::SortedRun))
        })
        .collect()
}

/// Writes merged rows to a new run in batches of about `target` bytes.
struct SpillSink {
    writer: RunWriter,
    schema: SchemaRef,
    pending: Vec<(Arc<SortedBatch>, usize, usize)>,
    pending_bytes: usize,
    target: usize,
}

impl SpillSink {
    fn new(writer: RunWriter, schema: SchemaRef, target: usize) -> SpillSink {
        SpillSink { writer, schema, pending: Vec::new(), pending_bytes: 0, target }
    }

    fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let cols = gather(&self.pending, 0..self.schema.fields().len()).map_err(|e| Error::arrow("merging runs", e))?;
        let batch = RecordBatch::try_new(self.schema.clone(), cols).map_err(|e| Error::arrow("merging runs", e))?;
        self.pending.clear();
        self.pending_bytes = 0;
        self.writer.write(&batch)
    }

    fn finish(mut self) -> Result<(PathBuf, u64)> {
        self.flush()?;
        self.writer.finish()
    }
}

impl RunSink for SpillSink {
    fn push_run(&mut self, batch: &Arc<SortedBatch>, start: usize, len: usize) -> Result<()> {
        match self.pending.last_mut() {
            Some((b, s, n)) if Arc::ptr_eq(b, batch) && *s + *n == start => *n += len,
            _ => self.pending.push((batch.clone(), start, len)),
        }
        self.pending_bytes += len * batch.row_bytes;
        if self.pending_bytes >= self.target {
            self.flush()?;
        }
        Ok(())
    }
}
