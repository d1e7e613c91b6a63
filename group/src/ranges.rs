//! Sorted Parquet inputs grouped by key range, in parallel, written in key order.
//!
//! ```text
//! let plan = ranges::plan(&sources, &projection, &proj_schema, batch_bytes, None)?; // footers only
//! if let Some(plan) = plan { ranges::run(&plan, ..., threads, ...)? }              // else: merge
//! ```
//!
//! **Split keys.** The Parquet page index (or, without one, the row-group statistics) gives
//! min/max bounds of the first key column for each page of each input. Split keys are chosen
//! from the page minimums so that each range holds about [`range_rows`] rows; range `i` is the
//! first key column in `[k_i, k_{i+1})`, so a key never straddles two ranges and no stitching is
//! needed. The plan depends on the files only, never on `--threads`: the output (batches cut
//! where each range ends) is byte-identical for any N, ranges being done in order with one thread.
//! There is no plan where the bounds cannot spread the rows (one range would read more than
//! half of them): the streaming merge does better than ranges of which one reads nearly all.
//! Ranges are made larger where, finer than the inputs' pages, they would together read more
//! than [`MAX_READ_FACTOR`] times the input (many overlapping files of large pages).
//!
//! **Dictionaries.** To a Parquet output, payload strings the inputs store dictionary-encoded,
//! with small dictionaries, are read as Arrow dictionaries ([`Dictionaries`]).
//!
//! **Each range** merges, across all inputs, the rows of its keys: each input is read from the
//! first page whose max bound reaches `k_i` (pages before it are skipped unread, through the
//! offset index) until its first row at or above `k_{i+1}`; the same k-way merge as the whole
//! run, so ties across files keep input order. An input whose first page to read has a min
//! bound at or above `k_{i+1}` is not read at all (sorted files that each hold a slice of the
//! key space: most inputs, for most ranges). Every input is opened once, by the plan, and its
//! one descriptor is read by position by every range ([`probe_core::pread`]): open files are
//! the number of inputs, whatever N.
//!
//! **The order check stays complete.** Every batch read is checked whole, rows outside the range
//! included. Range `i` stops at the first row at or above `k_{i+1}`, which lies in a page whose
//! max bound reaches `k_{i+1}`, so at or after where range `i + 1` starts: the rows each range
//! checks overlap the next range's, and every adjacent pair of rows of every input is checked by
//! some range, whatever the data. A range that leaves an input unread (its first page to
//! read starts at or above `k_{i+1}`) breaks no link: that page's max bound reaches `k_{i+1}`
//! too, so range `i + 1` starts reading the input at or before it, where range `i - 1` stopped
//! or earlier. Only the statistics being *bounds* is relied on (true of
//! truncated ones too); a page with nulls, or unknown null count or max, is unbounded. So when
//! no range fails, every input was sorted, and each row went to exactly one range. When one
//! fails, ranges before it are written, nothing after, and the caller reruns the sequential check
//! to report the same violation (the first in merge order) as one thread would.
//!
//! **In parallel, written in order.** Up to N ranges are grouped at once; the writer takes their
//! batches range after range. The ranges after the one being written queue their batches for
//! it (up to [`AHEAD_BYTES_PER_THREAD`] per thread, [`AHEAD_BYTES`] at most), so a thread that finishes a range moves on to the
//! next instead of waiting for the writer; ranges are small for the same reason.
//!
//! Memory: up to N ranges in flight, each holding one decoded batch per input
//! ([`RANGE_BATCH_ROWS`] rows) and its open groups, plus up to [`AHEAD_BYTES`] + [`CURRENT_BYTES`] of
//! built output batches waiting for the writer.

use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, UInt64Array};
use arrow::datatypes::{DataType, FieldRef, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow::row::{OwnedRow, RowConverter};
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder, RowSelection,
    RowSelector,
};
use parquet::arrow::ProjectionMask;
use parquet::basic::{Encoding, PageType, Type as PhysicalType};
use parquet::file::metadata::PageIndexPolicy;
use parquet::file::metadata::ParquetMetaData;

use probe_core::input::Source;
use probe_core::output::Output;
use probe_core::pread::SharedFile;
use probe_core::progress::Progress;
use probe_core::{Error, Result};

use crate::grouper::{BuildJob, Grouper};
use crate::merge::{self, key_converter, BatchSource, Cursor, Layout, SourceKind};
use crate::ordered;

/// Decoded bytes of built output batches that the ranges *after* the one being written may hold
/// for the writer, all together ([`ordered::Limits`]), per thread grouping ranges: a range or
/// so ahead per thread, so every thread runs ahead while memory stays in proportion (measured
/// on 16 cores: 128 MiB in all took twice the time of 256 MiB).
pub const AHEAD_BYTES_PER_THREAD: usize = 16 << 20;

/// [`AHEAD_BYTES_PER_THREAD`] for all threads together, at most.
pub const AHEAD_BYTES: usize = 256 << 20;

/// Decoded bytes the range being written may queue before it waits for the writer.
pub const CURRENT_BYTES: usize = 32 << 20;

/// Rows per batch read from an input within a range: small, because each range reads up to one
/// batch per input past its end (the rows it checks but leaves to the next range).
pub const RANGE_BATCH_ROWS: usize = 8192;

/// Rows aimed at per range: a 32nd of the input, between 64 Ki and 512 Ki rows. Small enough that
/// the ranges after the one being written fit [`AHEAD_BYTES`] and every thread keeps busy; large
/// enough that rereading up to a page and a batch per input at each edge costs little.
pub fn range_rows(total_rows: u64) -> u64 {
    (total_rows / 32).clamp(1 << 16, 1 << 19)
}

/// Key ranges of a set of sorted Parquet inputs.
pub struct Plan {
    files: Vec<PlanFile>,
    /// Split keys, ascending and distinct, first key column in row format.
    splits: Vec<OwnedRow>,
    first_key: Arc<RowConverter>,
    /// The columns read, as the ranges' batches hold them: the projected schema with the
    /// payload strings kept as dictionaries ([`Dictionaries`]); `None` when none are.
    physical: Option<SchemaRef>,
}

impl Plan {
    /// How many ranges.
    pub fn ranges(&self) -> usize {
        self.splits.len() + 1
    }

    /// The schema of the batches the ranges read, where it differs from the projected one:
    /// some payload columns are `Dictionary(Int32, _)` of the projected string or binary type.
    pub fn physical_schema(&self) -> Option<&SchemaRef> {
        self.physical.as_ref()
    }

    /// How many payload columns the ranges read as dictionaries.
    pub fn dictionary_columns(&self) -> usize {
        self.physical
            .as_ref()
            .map_or(0, |s| s.fields().iter().filter(|f| matches!(f.data_type(), DataType::Dictionary(..))).count())
    }
}

/// Which payload columns the ranges may read as Arrow dictionaries.
///
/// A string column that a Parquet file stores dictionary-encoded decodes, by default, into one
/// string per row: the reader copies every value out of the dictionary, and a Parquet writer
/// then hashes every value again to build its own dictionary. Read as a `Dictionary(Int32, _)`
/// the column costs only its keys to decode, and arrow-rs's writer takes the dictionary array
/// for a column of the plain type: the file written is the same. On 10M generated rows (two
/// string payload columns) that decoding was 10% of `probe-group -o x.parquet`'s CPU.
///
/// Only where it pays and is safe: payload columns (never a key, whose comparisons need the
/// plain type, nor the time), of a string or binary type, that every row group of every input
/// stores with every data page dictionary-encoded (the footer's page encoding statistics say
/// so; a column that fell back to plain pages would be hashed into a dictionary on reading),
/// with small dictionaries (at most a byte a row, all inputs together).
#[derive(Debug, Clone, Copy)]
pub struct Dictionaries {
    /// Projected columns from this position on are payload.
    pub payload_from: usize,
}

struct PlanFile {
    /// Open from the plan on: every range reading this input reads this descriptor.
    file: SharedFile,
    name: String,
    meta: ArrowReaderMetadata,
    mask: ProjectionMask,
    /// Root column of each projected column in the file.
    indices: Vec<usize>,
    /// The Parquet reader keeps file order: positions of the requested columns in it.
    reorder: Vec<usize>,
    batch_rows: usize,
    /// Pages (or row groups) in file order.
    units: Vec<Unit>,
    /// First row of each row group.
    rg_starts: Vec<u64>,
    total_rows: u64,
}

/// A page or row group: where it starts and bounds of its first key column.
struct Unit {
    first_row: u64,
    rows: u64,
    /// Lower bound (`None`: unknown; not used as a split key).
    min: Option<OwnedRow>,
    /// Upper bound (`None`: unbounded: nulls, or no statistics).
    max: Option<OwnedRow>,
}

/// Key types whose Parquet statistics order the same way as arrow's row format (floats are
/// left out: NaN is outside Parquet's min/max but sorts last here).
fn supported(t: &DataType) -> bool {
    // The same types whose values compare in place exactly as in the row format.
    probe_core::keycmp::compares_in_place(t)
}

/// Plan key ranges, or `None` where this path does not apply (stdin, a non-Parquet input, a
/// key type without trustworthy statistics, a footer it cannot read: the sequential path then
/// reads the inputs and reports any problem) or finds a single range.
pub fn plan(
    sources: &[Source],
    projection: &[String],
    proj_schema: &Schema,
    batch_bytes: usize,
    rows_per_range: Option<u64>,
    dictionaries: Option<Dictionaries>,
) -> Result<Option<Plan>> {
    let key_type = proj_schema.field(0).data_type().clone();
    if !supported(&key_type) {
        return Ok(None);
    }
    let first_key = Arc::new(first_key_converter(proj_schema)?);
    let mut files = Vec::with_capacity(sources.len());
    for source in sources {
        let Source::File(path) = source else {
            return Ok(None);
        };
        match plan_file(path, &source.name(), projection, &key_type, &first_key, batch_bytes) {
            Some(f) => files.push(f),
            None => return Ok(None),
        }
    }
    let total: u64 = files.iter().map(|f| f.total_rows).sum();
    let target = rows_per_range.unwrap_or_else(|| range_rows(total)).max(1);
    let Some(splits) = plan_splits(&files, total, target, rows_per_range.is_none()) else {
        return Ok(None);
    };
    let physical = match dictionaries {
        Some(d) => keep_dictionaries(&mut files, proj_schema, d)?,
        None => None,
    };
    Ok(Some(Plan { files, splits, first_key, physical }))
}

/// The row converter of the first key column (`schema`'s first field), which splits compare in.
fn first_key_converter(schema: &Schema) -> Result<RowConverter> {
    key_converter(&RecordBatch::new_empty(Arc::new(Schema::new(vec![schema.field(0).clone()]))), 1)
}

/// Split keys for ranges of about `target` rows, or `None` where no ranges spread the rows
/// ([`spreads`]). With `coarsen`, the ranges are made larger (`target` doubled) while together
/// they read more than [`MAX_READ_FACTOR`] times the input, down to the fewest that still spread.
fn plan_splits(files: &[PlanFile], total: u64, mut target: u64, coarsen: bool) -> Option<Vec<OwnedRow>> {
    // Every unit with a known minimum, by minimum.
    let mut units: Vec<(&OwnedRow, u64)> =
        files.iter().flat_map(|f| f.units.iter().filter_map(|u| u.min.as_ref().map(|m| (m, u.rows)))).collect();
    units.sort_by(|a, b| a.0.row().cmp(&b.0.row()));
    let mut planned = None;
    loop {
        let splits = split_keys(&units, target);
        if splits.is_empty() || !spreads(files, &splits, total) {
            return planned;
        }
        let read: u64 = rows_read(files, &splits).iter().sum();
        planned = Some(splits);
        if !coarsen || read <= MAX_READ_FACTOR.saturating_mul(total) {
            return planned;
        }
        target = target.saturating_mul(2);
    }
}

/// The ranges together read at most this many times the input's rows (by the units whose
/// bounds meet them), where fewer ranges can. A range decodes every page its keys touch, in
/// each input, whole; ranges finer than the inputs' pages decode the same pages again and
/// again. 32 overlapping sorted files of 300k rows (`probe-gen --order sorted-per-file`, like
/// daily exports; pages of 131k rows) planned 31 ranges that read 2.85 times the rows: 16
/// ranges (1.94 times) took 16% less CPU and wall time at 2 threads (interleaved A/B, medians
/// of 4). Inputs that each hold a slice of the key space read about 1.06 times and keep their
/// ranges.
const MAX_READ_FACTOR: u64 = 2;

/// Whether the ranges spread the work: no range reads more than half of the rows, by the units
/// whose bounds meet it. Inputs that all span the whole key space in one unit each (overlapping
/// files of one row group each, without a page index: pyarrow writes files so by default) give
/// ranges of which one reads nearly everything, slower than the sequential merge (32 such files
/// of 125k rows, 2 threads: 3.3 s against 2.2 s). The plan depends on the files only, so the
/// choice is the same for any `--threads`.
fn spreads(files: &[PlanFile], splits: &[OwnedRow], total: u64) -> bool {
    rows_read(files, splits).iter().all(|rows| rows.saturating_mul(2) <= total)
}

/// Rows each range reads (decodes, at least in part), by the units whose bounds meet it.
fn rows_read(files: &[PlanFile], splits: &[OwnedRow]) -> Vec<u64> {
    let units: Vec<&Unit> = files.iter().flat_map(|f| &f.units).collect();
    (0..=splits.len())
        .map(|r| {
            let lo = r.checked_sub(1).map(|i| &splits[i]);
            let hi = splits.get(r);
            units
                .iter()
                .filter(|u| lo.is_none_or(|lo| u.max.as_ref().is_none_or(|m| m.row() >= lo.row())))
                .filter(|u| hi.is_none_or(|hi| u.min.as_ref().is_none_or(|m| m.row() < hi.row())))
                .map(|u| u.rows)
                .sum()
        })
        .collect()
}

/// Split keys for ranges of about `target` rows: a split goes before a unit (`units`: minimum
/// and rows, by minimum) once the units before it hold `target` rows.
fn split_keys(units: &[(&OwnedRow, u64)], target: u64) -> Vec<OwnedRow> {
    let mut splits: Vec<OwnedRow> = Vec::new();
    let mut acc = 0u64;
    for (i, (min, rows)) in units.iter().enumerate() {
        let above_last = match splits.last() {
            Some(s) => min.row() > s.row(),
            None => i > 0 && min.row() > units[0].0.row(),
        };
        if acc >= target && above_last {
            splits.push((*min).clone());
            acc = 0;
        }
        acc += rows;
    }
    splits
}

/// Payload types that Parquet stores as BYTE_ARRAY and the reader can keep as a dictionary.
fn dictionary_value_type(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Binary | DataType::LargeBinary)
}

/// Dictionary page bytes a row of column chunk `leaf`, the most of any row group, where every
/// data page of every row group is dictionary-encoded (`None` otherwise).
fn dictionary_bytes_per_row(md: &ParquetMetaData, leaf: usize) -> Option<f64> {
    let mut most = 0f64;
    for rg in md.row_groups() {
        let c = rg.column(leaf);
        let all_dictionary = match (c.page_encoding_stats_mask(), c.page_encoding_stats()) {
            (Some(mask), _) => mask.is_only(Encoding::RLE_DICTIONARY) || mask.is_only(Encoding::PLAIN_DICTIONARY),
            (None, Some(stats)) => stats
                .iter()
                .filter(|s| matches!(s.page_type, PageType::DATA_PAGE | PageType::DATA_PAGE_V2))
                .all(|s| matches!(s.encoding, Encoding::RLE_DICTIONARY | Encoding::PLAIN_DICTIONARY)),
            // No statistics: the pages are unknown.
            (None, None) => false,
        };
        // The dictionary page comes first: its bytes (compressed, with its header) run up to
        // the first data page.
        let bytes = c.data_page_offset() - c.dictionary_page_offset()?;
        if !all_dictionary || bytes <= 0 || rg.num_rows() <= 0 {
            return None;
        }
        most = most.max(bytes as f64 / rg.num_rows() as f64);
    }
    Some(most)
}

/// Dictionary page bytes a row, all inputs together, at most, for a column to be read as a
/// dictionary: values that repeat (a few bytes a row hold distinct values a tenth of the rows
/// or fewer, for values of 10 bytes or more). An output batch built from batches of several
/// inputs holds their dictionaries; once they outnumber its rows, arrow merges them, hashing
/// every value, which costs more than the dictionaries save. Measured on 2 threads: 2M rows in
/// 8 overlapping files with near-distinct values (20 bytes a row each) and 4M rows in 32
/// overlapping files (0.18 each) took 10-20% more CPU read as dictionaries; the generated 10M
/// rows (4 files, 0.08 each) 7-10% less.
const DICTIONARY_BYTES_PER_ROW: f64 = 1.0;

/// Choose the payload columns read as dictionaries ([`Dictionaries`]) and reopen every file's
/// reader metadata to read them so; returns the batches' schema, `None` if no column qualifies.
fn keep_dictionaries(files: &mut [PlanFile], proj_schema: &Schema, d: Dictionaries) -> Result<Option<SchemaRef>> {
    let chosen: Vec<usize> = (d.payload_from..proj_schema.fields().len())
        .filter(|&p| dictionary_value_type(proj_schema.field(p).data_type()))
        .filter(|&p| {
            let per_file = files.iter().map(|f| {
                let root = f.indices[p];
                let descr = f.meta.metadata().file_metadata().schema_descr();
                let leaves: Vec<usize> =
                    (0..descr.num_columns()).filter(|&l| descr.get_column_root_idx(l) == root).collect();
                // The same type in this file (the inputs agree; checked, as the reader needs it).
                match (f.meta.schema().field(root).data_type() == proj_schema.field(p).data_type(), &leaves[..]) {
                    (true, [leaf]) => dictionary_bytes_per_row(f.meta.metadata(), *leaf),
                    _ => None,
                }
            });
            per_file.sum::<Option<f64>>().is_some_and(|total| total <= DICTIONARY_BYTES_PER_ROW)
        })
        .collect();
    if chosen.is_empty() {
        return Ok(None);
    }
    for f in files.iter_mut() {
        let roots: Vec<usize> = chosen.iter().map(|&p| f.indices[p]).collect();
        let hinted = with_dictionaries(f.meta.schema(), &roots);
        // The page index, if loaded, is in the metadata already: only the schema is new.
        f.meta = ArrowReaderMetadata::try_new(f.meta.metadata().clone(), ArrowReaderOptions::new().with_schema(hinted))
            .map_err(|e| Error::data(format!("{}: cannot read Parquet data ({e}); re-create the file", f.name)))?;
    }
    Ok(Some(with_dictionaries(proj_schema, &chosen)))
}

/// `schema` with the fields at `positions` as `Dictionary(Int32, <their type>)`.
fn with_dictionaries(schema: &Schema, positions: &[usize]) -> SchemaRef {
    let fields: Vec<FieldRef> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| match positions.contains(&i) {
            true => {
                let t = DataType::Dictionary(Box::new(DataType::Int32), Box::new(f.data_type().clone()));
                Arc::new(f.as_ref().clone().with_data_type(t))
            }
            false => f.clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

fn plan_file(
    path: &std::path::Path,
    name: &str,
    projection: &[String],
    key_type: &DataType,
    first_key: &RowConverter,
    batch_bytes: usize,
) -> Option<PlanFile> {
    // Only regular files: a named pipe opened a second time would wait for another writer.
    if !probe_core::input::is_regular_file(path) {
        return None;
    }
    let file = SharedFile::open(path).ok()?;
    let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
    let meta = probe_core::zones::restore(ArrowReaderMetadata::load(&file, options).ok()?);
    let schema: SchemaRef = meta.schema().clone();
    let parquet_schema = meta.parquet_schema();
    let md = meta.metadata().clone();
    let indices: Vec<usize> = projection.iter().map(|c| schema.index_of(c).ok()).collect::<Option<_>>()?;
    if schema.field(indices[0]).data_type() != key_type {
        return None;
    }
    let conv = StatisticsConverter::try_new(&projection[0], &schema, parquet_schema)
        .ok()?
        .with_missing_null_counts_as_zero(false)
        .with_column_orders(md.file_metadata().column_orders().map(|v| v.as_slice()));
    let leaf = conv.parquet_column_index()?;
    if parquet_schema.column(leaf).physical_type() == PhysicalType::INT96 {
        return None;
    }
    let rgs = md.row_groups();
    let mut rg_starts = Vec::with_capacity(rgs.len());
    let mut at = 0u64;
    for rg in rgs {
        rg_starts.push(at);
        at += u64::try_from(rg.num_rows()).ok()?;
    }
    let total_rows = at;
    let rg_idx: Vec<usize> = (0..rgs.len()).collect();
    // Pages where the page index has them for the key column in every row group.
    let page_index = md
        .page_index()
        .filter(|p| rg_idx.iter().all(|&g| p.column_index(g, leaf).is_some() && p.offset_index(g, leaf).is_some()));
    let (firsts, counts, mins, maxes, nulls): (Vec<u64>, Vec<u64>, ArrayRef, ArrayRef, UInt64Array) = match page_index {
        Some(p) => {
            let mut firsts = Vec::new();
            let mut counts = Vec::new();
            for &g in &rg_idx {
                let locs = p.offset_index(g, leaf)?.page_locations();
                let rg_rows = rg_starts.get(g + 1).copied().unwrap_or(total_rows) - rg_starts[g];
                for (j, loc) in locs.iter().enumerate() {
                    let start = u64::try_from(loc.first_row_index).ok()?;
                    let end = match locs.get(j + 1) {
                        Some(next) => u64::try_from(next.first_row_index).ok()?,
                        None => rg_rows,
                    };
                    if end < start || end > rg_rows {
                        return None;
                    }
                    firsts.push(rg_starts[g] + start);
                    counts.push(end - start);
                }
            }
            (
                firsts,
                counts,
                conv.data_page_mins(p.as_ref(), &rg_idx).ok()?,
                conv.data_page_maxes(p.as_ref(), &rg_idx).ok()?,
                conv.data_page_null_counts(p.as_ref(), &rg_idx).ok()?,
            )
        }
        None => (
            rg_starts.clone(),
            rgs.iter().map(|g| g.num_rows().max(0) as u64).collect(),
            conv.row_group_mins(rgs.iter()).ok()?,
            conv.row_group_maxes(rgs.iter()).ok()?,
            conv.row_group_null_counts(rgs.iter()).ok()?,
        ),
    };
    let n = firsts.len();
    if mins.len() != n || maxes.len() != n || nulls.len() != n || mins.data_type() != key_type {
        return None;
    }
    let min_rows = first_key.convert_columns(std::slice::from_ref(&mins)).ok()?;
    let max_rows = first_key.convert_columns(std::slice::from_ref(&maxes)).ok()?;
    let units = (0..n)
        .map(|i| Unit {
            first_row: firsts[i],
            rows: counts[i],
            min: mins.is_valid(i).then(|| min_rows.row(i).owned()),
            max: (maxes.is_valid(i) && nulls.is_valid(i) && nulls.value(i) == 0).then(|| max_rows.row(i).owned()),
        })
        .collect();

    let mask = ProjectionMask::roots(parquet_schema, indices.iter().copied());
    let mut sorted = indices.clone();
    sorted.sort_unstable();
    let reorder = indices.iter().map(|i| sorted.binary_search(i).ok()).collect::<Option<Vec<_>>>()?;
    // The same batch sizing as the sequential reader.
    let batch_rows = probe_core::input::parquet_batch_rows(file.clone(), &meta, &mask, batch_bytes).ok()?;
    Some(PlanFile {
        file,
        name: name.to_string(),
        meta,
        mask,
        indices,
        reorder,
        batch_rows,
        units,
        rg_starts,
        total_rows,
    })
}

/// One input read from a row on: the rows of the row groups from there, the columns reordered.
struct RangeSource {
    reader: ParquetRecordBatchReader,
    reorder: Vec<usize>,
    name: String,
    rows: u64,
}

impl BatchSource for RangeSource {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        let name = self.name.clone();
        let rows = self.rows;
        let next = probe_core::guard::decode(&name, "Parquet data", || match self.reader.next() {
            None => Ok(None),
            Some(Err(e)) => Err(Error::data(format!(
                "{name}: cannot decode Parquet data near row {rows} ({e}): the file is corrupt; re-create it"
            ))),
            Some(Ok(b)) => b.project(&self.reorder).map(Some).map_err(|e| Error::arrow(name.clone(), e)),
        })?;
        if let Some(b) = &next {
            self.rows += b.num_rows() as u64;
        }
        Ok(next)
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn rows_read(&self) -> u64 {
        self.rows
    }
}

impl PlanFile {
    /// A source from the first unit whose max bound reaches `lo`, or `None` if no row can.
    ///
    /// `None` too when the first unit to read starts at or above `hi`: the range would stop at
    /// its first row, taking nothing. Its first batch is still checked, by the range its first
    /// row is in, which starts reading this file at or before that unit (the unit's max bound
    /// reaches `hi` too). Before, every range decoded a batch of every later file: with 20 sorted
    /// files (each a slice of the key space), most of the files.
    fn source_from(&self, lo: Option<&OwnedRow>, hi: Option<&OwnedRow>) -> Result<Option<RangeSource>> {
        let first = match lo {
            None => self.units.first(),
            Some(lo) => match self.units.iter().find(|u| u.max.as_ref().is_none_or(|m| m.row() >= lo.row())) {
                Some(u) => Some(u),
                None => return Ok(None),
            },
        };
        if let (Some(u), Some(hi)) = (first, hi) {
            if u.min.as_ref().is_some_and(|m| m.row() >= hi.row()) {
                return Ok(None);
            }
        }
        let start = first.map_or(0, |u| u.first_row);
        if start >= self.total_rows {
            return Ok(None);
        }
        let rg = self.rg_starts.partition_point(|&s| s <= start).saturating_sub(1);
        let skip = (start - self.rg_starts[rg]) as usize;
        let mut selectors = Vec::new();
        if skip > 0 {
            selectors.push(RowSelector::skip(skip));
        }
        selectors.push(RowSelector::select((self.total_rows - start) as usize));
        let name = &self.name;
        let reader = probe_core::guard::decode(name, "Parquet data", || {
            ParquetRecordBatchReaderBuilder::new_with_metadata(self.file.clone(), self.meta.clone())
                .with_projection(self.mask.clone())
                .with_batch_size(self.batch_rows.min(RANGE_BATCH_ROWS))
                .with_row_groups((rg..self.rg_starts.len()).collect())
                .with_row_selection(RowSelection::from(selectors))
                .build()
                .map_err(|e| Error::data(format!("{name}: cannot read Parquet data ({e}); re-create the file")))
        })?;
        Ok(Some(RangeSource { reader, reorder: self.reorder.clone(), name: name.clone(), rows: start }))
    }
}

/// How the range path failed.
pub enum Failure {
    /// Writing the output failed: report as is.
    Write(Error),
    /// A range failed (an order violation, bad data): ranges before it are written, nothing
    /// after; rerun the sequential check for the message one thread gives.
    Range(Error),
}

/// What the ranges share.
pub struct Shared<'a> {
    /// Merge layout.
    pub layout: Arc<Layout>,
    /// Key converter of all key columns.
    pub converter: Arc<RowConverter>,
    /// Output schema.
    pub out_schema: SchemaRef,
    /// Output batch size.
    pub out_batch_bytes: usize,
    /// Progress counter.
    pub progress: &'a Progress,
}

/// Group every range on `threads` threads and write the results to `output` in key order
/// ([`crate::ordered`]); returns the output and (keys, rows, largest group).
pub fn run(
    plan: &Plan,
    shared: &Shared,
    threads: usize,
    mut output: Output,
) -> std::result::Result<(Output, (u64, u64, u64)), Failure> {
    let ahead_bytes = (threads * AHEAD_BYTES_PER_THREAD).min(AHEAD_BYTES);
    let limits = ordered::Limits { ahead_bytes, current_bytes: CURRENT_BYTES };
    let work = |r: usize, send: &mut ordered::Send| run_range(plan, shared, r, send);
    let results = ordered::run(plan.ranges(), threads, limits, &mut output, &work).map_err(|f| match f {
        ordered::Failure::Write(e) => Failure::Write(e),
        ordered::Failure::Piece(e) => Failure::Range(e),
    })?;
    let mut totals = (0u64, 0u64, 0u64);
    let mut taken_total = vec![0u64; plan.files.len()];
    for ((k, rows, l), taken) in results {
        totals = (totals.0 + k, totals.1 + rows, totals.2.max(l));
        for (t, n) in taken_total.iter_mut().zip(taken) {
            *t += n;
        }
    }
    check_taken(plan, &taken_total)?;
    Ok((output, totals))
}

/// Each row is taken by the one range its key is in, at most once: all rows taken means none
/// lost. Only statistics that do not bound their data can fail this.
fn check_taken(plan: &Plan, taken_total: &[u64]) -> std::result::Result<(), Failure> {
    for (f, taken) in plan.files.iter().zip(taken_total) {
        if *taken != f.total_rows {
            return Err(Failure::Write(Error::data(format!(
                "{}: its Parquet statistics (min/max of the first key column) do not bound its data: \
                 {taken} of its {} rows fell in the key ranges they planned; the file is corrupt: \
                 re-create it, or group it with --sort",
                f.name, f.total_rows
            ))));
        }
    }
    Ok(())
}

/// Merge and group range `r` across every input, handing its batches to `send` in order.
#[allow(clippy::type_complexity)]
fn run_range(plan: &Plan, shared: &Shared, r: usize, send: &mut ordered::Send) -> Result<((u64, u64, u64), Vec<u64>)> {
    let lo = r.checked_sub(1).map(|i| &plan.splits[i]);
    let hi = plan.splits.get(r);
    let mut cursors = Vec::with_capacity(plan.files.len());
    let taken: Vec<Arc<AtomicU64>> = plan.files.iter().map(|_| Arc::new(AtomicU64::new(0))).collect();
    for (i, f) in plan.files.iter().enumerate() {
        if let Some(source) = f.source_from(lo, hi)? {
            let c =
                Cursor::new(Box::new(source), i, shared.converter.clone(), shared.layout.clone(), SourceKind::Input);
            cursors.push(c.in_range(lo.cloned(), hi.cloned(), plan.first_key.clone(), taken[i].clone()));
        }
    }
    // No early stop here on another range's failure: ranges before it must complete (the
    // writer hanging up, on its own failure, stops this one).
    let mut emit = |job: BuildJob| -> Result<()> { send(job()?) };
    let mut grouper = Grouper::new(shared.out_schema.clone(), shared.layout.n_keys, shared.out_batch_bytes, &mut emit);
    if !cursors.is_empty() {
        merge::merge(cursors, &mut grouper, &mut |rows| shared.progress.inc(rows))?;
    }
    let counts = grouper.finish()?;
    Ok((counts, taken.iter().map(|t| t.load(AtomicOrdering::SeqCst)).collect()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report
    use arrow::array::{AsArray, Float64Array, StringArray};
    use arrow::datatypes::Field;
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::{WriterProperties, WriterPropertiesBuilder};

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("src", DataType::Utf8, false),
            Field::new("t", DataType::Int64, false),
            Field::new("dst", DataType::Utf8, true),
            Field::new("rtt", DataType::Float64, true),
        ]))
    }

    const ROWS: usize = 400;

    /// Low-cardinality `dst`: four values and nulls.
    fn few(prefix: &str, i: usize) -> Option<String> {
        (!i.is_multiple_of(7)).then(|| format!("{prefix}{}", i % 4))
    }

    /// [`ROWS`] sorted rows in row groups of 100 (each its own dictionary), `dst` from `few`.
    fn write(path: &std::path::Path, dictionary: bool, dst_prefix: &str) -> Source {
        write_with(path, WriterProperties::builder().set_dictionary_enabled(dictionary), |i| few(dst_prefix, i))
    }

    fn write_with(
        path: &std::path::Path,
        props: WriterPropertiesBuilder,
        dst: impl Fn(usize) -> Option<String>,
    ) -> Source {
        let props = props.set_max_row_group_row_count(Some(100)).set_data_page_row_count_limit(20).build();
        write_props(path, props, dst, 0)
    }

    fn write_props(
        path: &std::path::Path,
        props: WriterProperties,
        dst: impl Fn(usize) -> Option<String>,
        first_key: usize,
    ) -> Source {
        let mut w = ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema(), Some(props)).unwrap();
        let batch = RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(StringArray::from_iter_values((0..ROWS).map(|i| format!("k{:03}", first_key + i / 3)))),
                Arc::new(arrow::array::Int64Array::from_iter_values(0..ROWS as i64)),
                Arc::new(StringArray::from_iter((0..ROWS).map(dst))),
                Arc::new(Float64Array::from_iter_values((0..ROWS).map(|i| i as f64))),
            ],
        )
        .unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        Source::File(path.to_path_buf())
    }

    fn plan_of(sources: &[Source], dictionaries: Option<Dictionaries>) -> Plan {
        let projection: Vec<String> = ["src", "t", "dst", "rtt"].map(String::from).into();
        plan(sources, &projection, &schema(), 1 << 20, Some(50), dictionaries).unwrap().unwrap()
    }

    const PAYLOAD: Option<Dictionaries> = Some(Dictionaries { payload_from: 2 });

    #[test]
    fn dictionary_encoded_payload_strings_are_read_as_dictionaries_with_the_same_values() -> Result<()> {
        let dir = tempfile::tempdir().unwrap();
        let sources =
            [write(&dir.path().join("a.parquet"), true, "x"), write(&dir.path().join("b.parquet"), true, "y")];
        let plan = plan_of(&sources, PAYLOAD);
        let physical = plan.physical_schema().expect("dst is dictionary-encoded in every file");
        let dict = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
        // The key and the time never; the float payload is no string.
        let types: Vec<&DataType> = physical.fields().iter().map(|f| f.data_type()).collect();
        assert_eq!(types, [&DataType::Utf8, &DataType::Int64, &dict, &DataType::Float64]);
        // Read across row groups (a dictionary each), the values are the file's.
        for (f, prefix) in plan.files.iter().zip(["x", "y"]) {
            let mut source = f.source_from(None, None)?.unwrap();
            let mut got: Vec<Option<String>> = Vec::new();
            while let Some(b) = source.next_batch()? {
                assert_eq!(b.column(2).data_type(), &dict);
                let plain = arrow::compute::cast(b.column(2), &DataType::Utf8).unwrap();
                got.extend(plain.as_string::<i32>().iter().map(|v| v.map(String::from)));
            }
            let want: Vec<Option<String>> = (0..ROWS).map(|i| few(prefix, i)).collect();
            assert_eq!(got, want);
        }
        Ok(())
    }

    #[test]
    fn payload_strings_stay_plain_unless_every_input_has_small_dictionaries_and_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let dict = write(&dir.path().join("a.parquet"), true, "x");
        let plain = write(&dir.path().join("b.parquet"), false, "y");
        // One input stores plain pages: its strings would be hashed into a dictionary on reading.
        assert!(plan_of(std::slice::from_ref(&dict), PAYLOAD).physical_schema().is_some());
        assert!(plan_of(&[dict.clone(), plain.clone()], PAYLOAD).physical_schema().is_none());
        assert!(plan_of(&[plain], PAYLOAD).physical_schema().is_none());
        // A dictionary that outgrew its limit: later pages of the chunk are plain.
        let limit = WriterProperties::builder().set_dictionary_page_size_limit(12).set_write_batch_size(1);
        let fell_back = write_with(&dir.path().join("c.parquet"), limit, |i| few("a-longer-value-", i));
        assert!(plan_of(&[fell_back], PAYLOAD).physical_schema().is_none());
        // Distinct values: a dictionary page of several bytes a row.
        let distinct =
            write_with(&dir.path().join("d.parquet"), WriterProperties::builder(), |i| Some(format!("v{i}")));
        assert!(plan_of(&[distinct], PAYLOAD).physical_schema().is_none());
        // Small dictionaries each, but many overlapping inputs: an output batch would hold them all.
        let many: Vec<Source> = (0..3).map(|i| write(&dir.path().join(format!("m{i}.parquet")), true, "z")).collect();
        assert!(plan_of(&many[..2], PAYLOAD).physical_schema().is_some());
        assert!(plan_of(&many, PAYLOAD).physical_schema().is_none());
        // Not asked for (an IPC output).
        assert!(plan_of(std::slice::from_ref(&dict), None).physical_schema().is_none());
        // Payload from the float column on: no string left.
        assert!(plan_of(&[dict], Some(Dictionaries { payload_from: 3 })).physical_schema().is_none());
    }

    /// Overlapping inputs of one row group each (no page index): every range would read nearly
    /// all rows, so there is no plan (the sequential merge is faster). With row groups of 20
    /// rows, there is.
    #[test]
    fn ranges_are_planned_only_where_they_spread_the_rows() {
        use parquet::file::properties::EnabledStatistics;
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, rows: usize, first_key: usize| {
            let props = WriterProperties::builder()
                .set_max_row_group_row_count(Some(rows))
                .set_statistics_enabled(EnabledStatistics::Chunk)
                .set_offset_index_disabled(true);
            write_props(&dir.path().join(name), props.build(), |i| few("x", i), first_key)
        };
        let projection: Vec<String> = ["src", "t", "dst", "rtt"].map(String::from).into();
        // Each starts a key later: split keys at their starts, and the last range reads all three.
        let coarse = [write("a.parquet", ROWS, 0), write("b.parquet", ROWS, 1), write("c.parquet", ROWS, 2)];
        assert!(plan(&coarse, &projection, &schema(), 1 << 20, Some(50), None).unwrap().is_none());
        let fine = [write("d.parquet", 20, 0), write("e.parquet", 20, 1), write("f.parquet", 20, 2)];
        let p =
            plan(&fine, &projection, &schema(), 1 << 20, Some(50), None).unwrap().expect("row groups bound the ranges");
        assert!(p.ranges() > 4, "{} ranges", p.ranges());
    }

    #[test]
    fn ranges_finer_than_the_pages_of_many_overlapping_inputs_are_made_larger() {
        use parquet::file::properties::EnabledStatistics;
        let dir = tempfile::tempdir().unwrap();
        let projection: Vec<String> = ["src", "t", "dst", "rtt"].map(String::from).into();
        let first_key = first_key_converter(&schema()).unwrap();
        // Eight overlapping sorted files (each a key later), units of 100 rows (row groups, no
        // page index), and ranges of 10 rows asked for: each range would read a unit of most files.
        let files: Vec<PlanFile> = (0..8)
            .map(|f| {
                let props = WriterProperties::builder()
                    .set_max_row_group_row_count(Some(100))
                    .set_statistics_enabled(EnabledStatistics::Chunk)
                    .set_offset_index_disabled(true)
                    .build();
                let path = dir.path().join(format!("{f}.parquet"));
                write_props(&path, props, |i| few("x", i), f);
                plan_file(&path, "f", &projection, &DataType::Utf8, &first_key, 1 << 20).unwrap()
            })
            .collect();
        let total = 8 * ROWS as u64;
        let read = |splits: &[OwnedRow]| rows_read(&files, splits).iter().sum::<u64>();
        let fine = plan_splits(&files, total, 10, false).expect("ranges as asked");
        assert!(read(&fine) > MAX_READ_FACTOR * total, "{} of {total} rows read", read(&fine));
        let coarse = plan_splits(&files, total, 10, true).expect("larger ranges");
        assert!(coarse.len() > 1 && coarse.len() < fine.len(), "{} and {} splits", coarse.len(), fine.len());
        assert!(read(&coarse) <= MAX_READ_FACTOR * total, "{} of {total} rows read", read(&coarse));
        assert!(spreads(&files, &coarse, total));
    }
}
