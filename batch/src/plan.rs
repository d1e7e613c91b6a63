//! One input batch seen as keys and flattened measurements, and the windows planned over it.
//!
//! ```text
//! let view = BatchView::new(&batch, &layout, "work/train.arrows", first_row)?;
//! let planned = view.plan(0..view.rows(), &rules)?;       // windows as ranges of the flat arrays
//! for range in group(&planned.windows, view.bytes_per_measurement(), ...) { build(...) }
//! ```
//!
//! Windows are (start, length) ranges over the struct's child arrays, flattened for the whole
//! batch, so building the output is a gather per column rather than a builder per row.

use std::ops::{AddAssign, Range};

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, OffsetSizeTrait, StructArray};
use arrow::buffer::NullBuffer;
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;

use probe_core::columns::time_as_i64;
use probe_core::time::{check_unit, format_time, IntUnit};
use probe_core::{Error, Result};

use crate::layout::Layout;
use crate::window::{cut, Rules};

/// One output row: a window of one key's measurements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Row of the key in the input batch.
    pub row: usize,
    /// First measurement, as an index into the batch's flattened measurement arrays.
    pub start: usize,
    /// Number of measurements.
    pub len: usize,
    /// Index among the key's kept windows.
    pub index: u64,
}

/// Counts for the summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Keys (input rows) read.
    pub keys_in: u64,
    /// Keys dropped for having fewer than --min-len timed measurements.
    pub keys_short: u64,
    /// Sessions of the kept keys.
    pub sessions: u64,
    /// Windows written.
    pub windows: u64,
    /// Windows dropped for being shorter than --min-len.
    pub windows_short: u64,
    /// Measurements read.
    pub measurements_in: u64,
    /// Measurements written (a measurement in two overlapping windows counts twice).
    pub measurements_out: u64,
    /// Measurements left out for their null time.
    pub null_times: u64,
}

impl AddAssign for Stats {
    fn add_assign(&mut self, o: Stats) {
        self.keys_in += o.keys_in;
        self.keys_short += o.keys_short;
        self.sessions += o.sessions;
        self.windows += o.windows;
        self.windows_short += o.windows_short;
        self.measurements_in += o.measurements_in;
        self.measurements_out += o.measurements_out;
        self.null_times += o.null_times;
    }
}

/// The windows of some rows of a batch.
#[derive(Debug, Default)]
pub struct Planned {
    /// In input order.
    pub windows: Vec<Window>,
    /// What was kept and dropped.
    pub stats: Stats,
}

/// An input batch taken apart: key columns, list offsets and the flattened measurements.
#[derive(Debug)]
pub struct BatchView {
    /// Key columns.
    pub keys: Vec<ArrayRef>,
    /// Start of each row's measurements in `values`, plus the end: `rows() + 1` entries.
    offsets: Vec<usize>,
    /// Null list rows (taken as no measurements).
    list_nulls: Option<NullBuffer>,
    /// The measurements of this batch's rows, flattened (the list's values, sliced to them).
    pub values: StructArray,
    /// The time field, in its own type (for start_time and end_time).
    pub time: ArrayRef,
    /// The time field as integers in its unit.
    pub ticks: Int64Array,
    /// Which measurements have a time (null struct entries have none).
    time_valid: Option<NullBuffer>,
    /// Input name and row number of the batch's first row, for messages.
    file: String,
    first_row: u64,
    /// How times are shown in messages.
    time_type: DataType,
    int_unit: Option<IntUnit>,
}

impl BatchView {
    /// Take apart a projected input batch (keys..., measurements).
    pub fn new(batch: &RecordBatch, layout: &Layout, file: &str, first_row: u64) -> Result<BatchView> {
        let keys = batch.columns()[..layout.n_keys].to_vec();
        let col = batch.column(layout.n_keys);
        let (offsets, list_nulls, values) =
            if layout.large { flatten::<i64>(col, file)? } else { flatten::<i32>(col, file)? };
        let values = values.as_struct_opt().cloned().ok_or_else(|| {
            Error::data(format!(
                "{file}: the measurements list does not hold structs; re-create the input with probe-group"
            ))
        })?;
        let time = values.column(layout.time_idx).clone();
        let at = |i: usize| {
            let row = offsets.partition_point(|&o| o <= i).saturating_sub(1);
            format!("{file}: row {} (key), measurement {}", first_row + row as u64, i - offsets[row])
        };
        let ticks = time_as_i64(&time, at)?;
        if let (Some(unit), Some(min), Some(max)) =
            (layout.int_unit, arrow::compute::min(&ticks), arrow::compute::max(&ticks))
        {
            let what = format!("{file}: time field `{}`", layout.fields[layout.time_idx].name());
            check_unit(min, max, unit, &what)?;
        }
        let time_valid = NullBuffer::union(ticks.nulls(), values.nulls());
        Ok(BatchView {
            keys,
            offsets,
            list_nulls,
            values,
            time,
            ticks,
            time_valid,
            file: file.to_string(),
            first_row,
            time_type: layout.time_type.clone(),
            int_unit: layout.int_unit,
        })
    }

    /// Number of keys (rows) in the batch.
    pub fn rows(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Estimated bytes one measurement takes in the output (all its fields).
    pub fn bytes_per_measurement(&self) -> usize {
        let bytes = self.values.to_data().get_slice_memory_size().unwrap_or(0);
        (bytes / self.values.len().max(1)).max(1)
    }

    /// Estimated bytes of one output row besides its measurements (keys, window, times).
    pub fn bytes_per_window(&self) -> usize {
        let keys: usize = self.keys.iter().map(|k| k.to_data().get_slice_memory_size().unwrap_or(0)).sum();
        keys / self.rows().max(1) + 32
    }

    /// Plan the windows of `rows`, in order.
    pub fn plan(&self, rows: Range<usize>, rules: &Rules) -> Result<Planned> {
        let mut out = Planned::default();
        let times = self.ticks.values();
        for row in rows {
            let start = self.offsets[row];
            let total = if self.list_nulls.as_ref().is_some_and(|n| n.is_null(row)) {
                0
            } else {
                self.offsets[row + 1] - start
            };
            out.stats.keys_in += 1;
            out.stats.measurements_in += total as u64;
            let timed = self.timed_prefix(row, start, total)?;
            out.stats.null_times += (total - timed) as u64;
            if timed < rules.min_len {
                out.stats.keys_short += 1;
                continue;
            }
            let t = &times[start..start + timed];
            if let Some(i) = t.windows(2).position(|w| w[1] < w[0]) {
                return Err(Error::data(format!(
                    "{}: row {} (key {}): measurement {} has time {} after {}: times must ascend within a key; \
                     produce the input with probe-group",
                    self.file,
                    self.first_row + row as u64,
                    self.describe_key(row),
                    i + 1,
                    format_time(t[i + 1], &self.time_type, self.int_unit),
                    format_time(t[i], &self.time_type, self.int_unit)
                )));
            }
            let mut index = 0u64;
            let windows = &mut out.windows;
            let mut short = 0u64;
            out.stats.sessions += cut(
                t,
                rules,
                |s, len| {
                    windows.push(Window { row, start: start + s, len, index });
                    index += 1;
                    out.stats.measurements_out += len as u64;
                },
                || short += 1,
            );
            out.stats.windows += index;
            out.stats.windows_short += short;
        }
        Ok(out)
    }

    /// How many of the row's measurements have a time; the others must all come after them.
    fn timed_prefix(&self, row: usize, start: usize, total: usize) -> Result<usize> {
        let Some(valid) = &self.time_valid else {
            return Ok(total);
        };
        let bits = valid.inner().slice(start, total);
        let count = bits.count_set_bits();
        if count == total {
            return Ok(total);
        }
        let timed = (0..total).position(|i| !bits.value(i)).unwrap_or(total);
        if timed < count {
            let next = (timed..total).find(|&i| bits.value(i)).unwrap_or(timed);
            return Err(Error::data(format!(
                "{}: row {} (key {}): measurement {next} has a time but measurement {timed} before it has none: \
                 null times must come last within a key; produce the input with probe-group",
                self.file,
                self.first_row + row as u64,
                self.describe_key(row)
            )));
        }
        Ok(timed)
    }

    fn describe_key(&self, row: usize) -> String {
        probe_core::columns::format_key(&self.keys, row, true)
    }
}

/// Offsets rebased to the batch's first measurement, list nulls, and the values sliced to the
/// batch's measurements.
fn flatten<O: OffsetSizeTrait>(col: &ArrayRef, file: &str) -> Result<(Vec<usize>, Option<NullBuffer>, ArrayRef)> {
    let list = col.as_list_opt::<O>().ok_or_else(|| {
        Error::data(format!(
            "{file}: the measurements column has type {}, unlike the first input; all inputs must share one schema",
            col.data_type()
        ))
    })?;
    let offsets = list.value_offsets();
    let first = offsets.first().map_or(0, |o| o.as_usize());
    let last = offsets.last().map_or(0, |o| o.as_usize());
    let rebased = offsets.iter().map(|o| o.as_usize() - first).collect();
    let values = list.values().slice(first, last - first);
    Ok((rebased, list.nulls().cloned(), values))
}

/// Cut windows into output batches of about `target_bytes` each (at least one window each, and
/// at most `max_items` measurements so the list offsets fit). Depends only on the data, never
/// on the number of workers, so the output is the same whatever --workers is.
pub fn group(
    windows: &[Window],
    bytes_per_measurement: usize,
    bytes_per_window: usize,
    target_bytes: usize,
    max_items: usize,
) -> Vec<Range<usize>> {
    let mut groups = Vec::new();
    let mut begin = 0;
    let mut bytes = 0usize;
    let mut items = 0usize;
    for (i, w) in windows.iter().enumerate() {
        let cost = w.len.saturating_mul(bytes_per_measurement).saturating_add(bytes_per_window);
        if i > begin && (bytes.saturating_add(cost) > target_bytes || items.saturating_add(w.len) > max_items) {
            groups.push(begin..i);
            begin = i;
            bytes = 0;
            items = 0;
        }
        bytes = bytes.saturating_add(cost);
        items = items.saturating_add(w.len);
    }
    if begin < windows.len() {
        groups.push(begin..windows.len());
    }
    groups
}
