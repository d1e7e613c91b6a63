//! External sort for `probe-group --sort`: input in any order -> sorted runs -> merge.
//!
//! 1. **Runs.** Input batches (all inputs, in the order given) are decoded and their
//!    (key, time) columns converted to arrow's row format until the run budget (half of
//!    `--memory-limit`) is used; the rows are then stable-sorted (ties keep input order) and
//!    written as a compressed Arrow IPC file in `--temp-dir`. When all input fits in one run,
//!    nothing is spilled: the sorted run is served from memory.
//! 2. **Merge passes.** While there are more runs than `--fan-in`, groups of `fan-in`
//!    *consecutive* runs are merged into one (consecutive, so that ties still resolve to the
//!    earlier run and input order survives); each pass halves the disk needed twice over.
//! 3. The last `fan-in` runs feed the same checked merge and grouper as sorted input.
//!
//! Budget: the run buffer is half the limit; spill batches are sized so that `fan-in` of them
//! (decoded, with their row-format keys) fit in a quarter. What is not counted is the fixed
//! overhead of the process (code, allocator, Parquet page buffers): the README documents it.
//!
//! Spill files live in a private directory under `--temp-dir`, removed when the stage ends,
//! fails, or is interrupted (SIGINT/SIGTERM via `probe_core::cleanup`).

use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch};
use arrow::compute::{interleave, SortOptions};
use arrow::datatypes::{Schema, SchemaRef};
use arrow::row::{RowConverter, Rows, SortField};
use rayon::iter::ParallelIterator;
use rayon::slice::{ParallelSlice, ParallelSliceMut};

use probe_core::cli::human_bytes;
use probe_core::input::BatchReader;
use probe_core::progress::Progress;
use probe_core::{Error, Result};

use crate::merge::{gather, key_converter, merge, BatchSource, Cursor, Layout, RunSink, SortedBatch, SourceKind};
use crate::spill::{RunReader, RunWriter, SpillDir};
use crate::Config;

/// Sorted runs ready for the final merge.
pub struct Sorted {
    /// One source per run, in input order.
    pub sources: Vec<Box<dyn BatchSource>>,
    /// Runs spilled to disk (0 when everything fit in memory).
    pub runs: u64,
    /// Intermediate merge passes.
    pub passes: u64,
    /// Bytes written to spill files, all passes.
    pub bytes: u64,
}

/// How the budget is split.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Bytes of decoded input (plus sort keys) gathered into one run.
    pub run_bytes: usize,
    /// Target bytes of one spilled batch.
    pub spill_batch_bytes: usize,
    /// Runs merged at once.
    pub fan_in: usize,
}

impl Budget {
    /// Split `--memory-limit` among the phases.
    pub fn new(limit: u64, fan_in: usize) -> Budget {
        let limit = limit as usize;
        // Decoded batch + its row-format keys + a little slack: ~3x the batch's bytes each.
        let spill_batch_bytes = (limit / 4 / (3 * fan_in)).clamp(1024, 8 << 20);
        Budget { run_bytes: (limit / 2).max(1024), spill_batch_bytes, fan_in }
    }
}

/// A run gathered in memory: batches plus the sorted order of their rows.
struct MemRun {
    batches: Vec<RecordBatch>,
    order: Vec<(usize, usize)>,
    pos: usize,
    chunk_rows: usize,
}

impl MemRun {
    fn next_chunk(&mut self) -> Result<Option<RecordBatch>> {
        if self.pos >= self.order.len() {
            return Ok(None);
        }
        let end = (self.pos + self.chunk_rows).min(self.order.len());
        let chunk = gather_rows(&self.batches, &self.order[self.pos..end])?;
        self.pos = end;
        Ok(Some(chunk))
    }

    /// Write the whole run, gathering a few chunks at a time in parallel (the gather is a random
    /// access over the run's batches, the costliest part of a spill).
    fn write_to(&mut self, w: &mut RunWriter) -> Result<()> {
        const PARALLEL_CHUNKS: usize = 8;
        while self.pos < self.order.len() {
            let end = (self.pos + self.chunk_rows * PARALLEL_CHUNKS).min(self.order.len());
            let chunks: Vec<Result<RecordBatch>> = self.order[self.pos..end]
                .par_chunks(self.chunk_rows.max(1))
                .map(|idx| gather_rows(&self.batches, idx))
                .collect();
            for c in chunks {
                w.write(&c?)?;
            }
            self.pos = end;
        }
        Ok(())
    }
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
        let mut keys: Vec<(u64, &[u8], u32, u32)> = Vec::with_capacity(self.count);
        for (b, rows) in self.rows.iter().enumerate() {
            for r in 0..rows.num_rows() {
                let bytes: &[u8] = rows.row(r).data();
                let mut prefix = [0u8; 8];
                let n = bytes.len().min(8);
                prefix[..n].copy_from_slice(&bytes[..n]);
                keys.push((u64::from_be_bytes(prefix), bytes, b as u32, r as u32));
            }
        }
        keys.par_sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)).then((a.2, a.3).cmp(&(b.2, b.3))));
        order.clear();
        order.extend(keys.iter().map(|k| (k.2 as usize, k.3 as usize)));
        drop(keys);
        self.rows.clear();
        self.bytes = 0;
        self.count = 0;
        MemRun { batches: std::mem::take(&mut self.batches), order, pos: 0, chunk_rows: 0 }
    }
}

/// Rows per output chunk for a target size, from the batches' average row size.
/// Write one sorted run to the spill directory as run number `n`, in batches of about
/// `batch_bytes`; the run's memory is freed before the file is closed.
fn spill_run(
    mut run: MemRun,
    dir: &SpillDir,
    n: usize,
    schema: &SchemaRef,
    batch_bytes: usize,
) -> Result<(PathBuf, u64)> {
    run.chunk_rows = chunk_rows(&run.batches, batch_bytes);
    let mut w = RunWriter::create(dir, n, schema)?;
    run.write_to(&mut w)?;
    drop(run);
    w.finish()
}

fn chunk_rows(batches: &[RecordBatch], target: usize) -> usize {
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let bytes: usize = batches.iter().map(|b| b.get_array_memory_size()).sum();
    let per_row = (bytes / rows.max(1)).max(1);
    (target / per_row).clamp(1, 1 << 20)
}

/// Turn the inputs into sorted runs (spilling when they do not fit) ready for the final merge.
pub fn sort_inputs(
    readers: Vec<BatchReader>,
    schema: &Arc<Schema>,
    cfg: &Config,
    layout: &Arc<Layout>,
    progress: &Progress,
) -> Result<Sorted> {
    let budget = Budget::new(cfg.memory_limit, cfg.fan_in);
    let mut builder = RunBuilder::new(schema, layout.n_keys)?;
    let mut spill: Option<Arc<SpillDir>> = None;
    let mut runs: Vec<PathBuf> = Vec::new();
    let mut spilled_bytes = 0u64;
    for mut reader in readers {
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
            builder.push(batch)?;
            if builder.bytes >= budget.run_bytes {
                let dir = match &spill {
                    Some(d) => d.clone(),
                    None => {
                        let d = SpillDir::new(&cfg.temp_dir)?;
                        spill = Some(d.clone());
                        d
                    }
                };
                let (path, size) = spill_run(builder.sorted(), &dir, runs.len(), schema, budget.spill_batch_bytes)?;
                spilled_bytes += size;
                runs.push(path);
            }
        }
    }
    let mut last = builder.sorted();
    let Some(dir) = spill else {
        // Everything fit: serve the one run from memory, nothing touches the disk.
        last.chunk_rows = chunk_rows(&last.batches, cfg.batch_bytes);
        let sources: Vec<Box<dyn BatchSource>> = if last.order.is_empty() { Vec::new() } else { vec![Box::new(last)] };
        return Ok(Sorted { sources, runs: 0, passes: 0, bytes: 0 });
    };
    if !last.order.is_empty() {
        let (path, size) = spill_run(last, &dir, runs.len(), schema, budget.spill_batch_bytes)?;
        spilled_bytes += size;
        runs.push(path);
    }
    let run_count = runs.len() as u64;
    progress.log(&format!(
        "sorted {run_count} runs ({} spilled to {})",
        human_bytes(spilled_bytes),
        dir.path().display()
    ));

    // Intermediate passes until one final merge of at most fan-in runs remains.
    let mut passes = 0u64;
    let mut next_id = runs.len();
    let converter = Arc::new(key_converter(&RecordBatch::new_empty(schema.clone()), layout.n_keys)?);
    while runs.len() > budget.fan_in {
        passes += 1;
        let mut merged = Vec::with_capacity(runs.len().div_ceil(budget.fan_in));
        for group in runs.chunks(budget.fan_in) {
            if group.len() == 1 {
                merged.push(group[0].clone());
                continue;
            }
            let cursors = open_cursors(group, &dir, &converter, layout)?;
            let mut sink =
                SpillSink::new(RunWriter::create(&dir, next_id, schema)?, schema.clone(), budget.spill_batch_bytes);
            next_id += 1;
            merge(cursors, &mut sink, &mut |_| {})?;
            let (path, size) = sink.finish()?;
            spilled_bytes += size;
            merged.push(path);
        }
        runs = merged;
    }
    let sources = runs
        .iter()
        .map(|p| RunReader::open(p, &dir).map(|r| Box::new(r) as Box<dyn BatchSource>))
        .collect::<Result<Vec<_>>>()?;
    Ok(Sorted { sources, runs: run_count, passes, bytes: spilled_bytes })
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
