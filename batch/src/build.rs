//! Output batches from planned windows: one gather per column, one shared offsets buffer.
//!
//! ```text
//! let batch = build(&view, &layout, &planned.windows[range], delta_time)?;
//! ```
//!
//! Every list column of a batch has the same offsets (the window lengths). Its values are the
//! windows' measurements gathered from the batch's flattened child arrays: a zero-copy slice
//! when they form one contiguous run (non-overlapping windows, nothing dropped between them),
//! copies of whole runs when runs are long, and arrow's `take` with flattened indices when they
//! are short.

use std::sync::Arc;

use arrow::array::{
    make_array, Array, ArrayRef, Float32Array, GenericListArray, MutableArrayData, OffsetSizeTrait, UInt32Array,
    UInt64Array,
};
use arrow::buffer::{OffsetBuffer, ScalarBuffer};
use arrow::compute::take;
use arrow::datatypes::{DataType, FieldRef};
use arrow::record_batch::RecordBatch;

use probe_core::{Error, Result};

use crate::layout::Layout;
use crate::plan::{BatchView, Window};

/// Context of a failed gather: the only way it fails is an offset overflow of a huge window.
const GATHER_CONTEXT: &str =
    "gathering measurements into windows (more than 2 GiB of one field in one output batch; lower --max-len)";

/// Runs at least this long on average are copied whole rather than gathered by index.
const MIN_AVG_RUN: usize = 8;

/// Build the output batch of `windows` (non-empty, all from `view`).
pub fn build(view: &BatchView, layout: &Layout, windows: &[Window], delta_time: bool) -> Result<RecordBatch> {
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(layout.out_schema.fields().len());
    let rows = indices(windows.iter().map(|w| w.row), view.rows());
    for key in &view.keys {
        columns.push(take(key.as_ref(), rows.as_ref(), None).map_err(|e| Error::arrow("gathering key columns", e))?);
    }
    let window_index = windows
        .iter()
        .map(|w| u32::try_from(w.index))
        .collect::<std::result::Result<Vec<u32>, _>>()
        .map_err(|_| too_many("windows in one key"))?;
    columns.push(Arc::new(UInt32Array::from(window_index)));
    let starts = indices(windows.iter().map(|w| w.start), view.values.len());
    let ends = indices(windows.iter().map(|w| w.start + w.len - 1), view.values.len());
    for idx in [&starts, &ends] {
        columns.push(take(view.time.as_ref(), idx.as_ref(), None).map_err(|e| Error::arrow("gathering times", e))?);
    }
    let lengths = windows
        .iter()
        .map(|w| u32::try_from(w.len))
        .collect::<std::result::Result<Vec<u32>, _>>()
        .map_err(|_| too_many("measurements in one window"))?;
    columns.push(Arc::new(UInt32Array::from(lengths)));

    let items: Vec<FieldRef> = layout.out_schema.fields()[columns.len()..]
        .iter()
        .map(|f| match f.data_type() {
            DataType::List(item) | DataType::LargeList(item) => Ok(item.clone()),
            other => Err(Error::internal(format!("output column `{}` is {other}, not a list", f.name()))),
        })
        .collect::<Result<_>>()?;
    let lists = if layout.large {
        lists::<i64>(view, layout, windows, &items, delta_time)?
    } else {
        lists::<i32>(view, layout, windows, &items, delta_time)?
    };
    columns.extend(lists);
    RecordBatch::try_new(layout.out_schema.clone(), columns).map_err(|e| Error::arrow("assembling an output batch", e))
}

/// The list columns: one per measurement field, then `dt`.
fn lists<O: OffsetSizeTrait>(
    view: &BatchView,
    layout: &Layout,
    windows: &[Window],
    items: &[FieldRef],
    delta_time: bool,
) -> Result<Vec<ArrayRef>> {
    let mut offsets: Vec<O> = Vec::with_capacity(windows.len() + 1);
    offsets.push(O::usize_as(0));
    let mut total = 0usize;
    for w in windows {
        total += w.len;
        offsets.push(O::from_usize(total).ok_or_else(|| too_many("measurements in one output batch"))?);
    }
    let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));

    // Adjacent windows that continue each other are one run of the flat arrays.
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for w in windows {
        match runs.last_mut() {
            Some((s, l)) if *s + *l == w.start => *l += w.len,
            _ => runs.push((w.start, w.len)),
        }
    }
    let mut gather_idx: Option<ArrayRef> = None;
    let mut out = Vec::with_capacity(items.len());
    for (i, child) in view.values.columns().iter().enumerate() {
        let values = gather(child, &runs, total, &mut gather_idx, view.values.len())?;
        out.push(list::<O>(&items[i], &offsets, values)?);
    }
    if delta_time {
        let ticks = view.ticks.values();
        let npt = layout.nanos_per_tick;
        let mut dt: Vec<f32> = Vec::with_capacity(total);
        for w in windows {
            let t = &ticks[w.start..w.start + w.len];
            dt.push(0.0);
            // Exact nanoseconds, one rounding to f64 seconds, one to f32.
            dt.extend(t.windows(2).map(|p| (((p[1] as i128 - p[0] as i128) * npt) as f64 / 1e9) as f32));
        }
        let item = items
            .get(view.values.num_columns())
            .ok_or_else(|| Error::internal("the output schema has no `dt` column"))?;
        out.push(list::<O>(item, &offsets, Arc::new(Float32Array::from(dt)))?);
    }
    Ok(out)
}

fn list<O: OffsetSizeTrait>(item: &FieldRef, offsets: &OffsetBuffer<O>, values: ArrayRef) -> Result<ArrayRef> {
    let list = GenericListArray::<O>::try_new(item.clone(), offsets.clone(), values, None)
        .map_err(|e| Error::arrow(format!("assembling output list `{}`", item.name()), e))?;
    Ok(Arc::new(list))
}

/// The measurements of `runs`, from one flattened child array.
fn gather(
    child: &ArrayRef,
    runs: &[(usize, usize)],
    total: usize,
    idx: &mut Option<ArrayRef>,
    n_values: usize,
) -> Result<ArrayRef> {
    if let [(start, len)] = runs {
        return Ok(child.slice(*start, *len));
    }
    if total >= runs.len() * MIN_AVG_RUN {
        let data = child.to_data();
        let mut out = MutableArrayData::new(vec![&data], false, total);
        for &(start, len) in runs {
            out.try_extend(0, start, start + len).map_err(|e| Error::arrow(GATHER_CONTEXT, e))?;
        }
        return Ok(make_array(out.freeze()));
    }
    let idx = idx.get_or_insert_with(|| indices(runs.iter().flat_map(|&(s, l)| s..s + l), n_values));
    take(child.as_ref(), idx.as_ref(), None).map_err(|e| Error::arrow(GATHER_CONTEXT, e))
}

/// An index array, 32-bit when every index fits.
fn indices(it: impl Iterator<Item = usize>, bound: usize) -> ArrayRef {
    if bound <= u32::MAX as usize {
        Arc::new(UInt32Array::from_iter_values(it.map(|i| i as u32)))
    } else {
        Arc::new(UInt64Array::from_iter_values(it.map(|i| i as u64)))
    }
}

fn too_many(what: &str) -> Error {
    Error::data(format!("too many {what} for the output's list offsets; use --max-len to cut shorter windows"))
}
