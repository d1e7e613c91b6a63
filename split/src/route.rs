//! Per-batch work: which split each row's key falls in, how many measurements each row holds,
//! and the rows of one split (or the `split` tag column) as a new batch.
//!
//! ```
//! # fn main() -> probe_core::Result<()> {
//! use std::sync::Arc;
//!
//! use arrow::array::{ArrayRef, StringArray};
//! use arrow::record_batch::RecordBatch;
//! use probe_split::ratios::parse_ratios;
//! use probe_split::route::{rows_of, Assigner};
//!
//! let splits = parse_ratios("a=0.5,b=0.3,c=0.2")?;
//! let keys: ArrayRef = Arc::new(StringArray::from(vec!["192.0.2.1", "192.0.2.1"]));
//! let batch = RecordBatch::try_from_iter([("src_addr", keys)]).expect("a batch");
//! let mut assigner = Assigner::new(vec![0], &splits, 0); // key column 0, seed 0
//! let mut idx = Vec::new();
//! assigner.assign(&batch, "rows.arrows", &mut idx)?; // idx[row] = split number
//! assert_eq!(idx, [2, 2]); // "192.0.2.1" lands in c, as the README works out
//! assert!(rows_of(&batch, &idx, 0)?.is_none()); // None when no row is in split 0
//! assert_eq!(rows_of(&batch, &idx, 2)?.map(|b| b.num_rows()), Some(2));
//! # Ok(())
//! # }
//! ```
//!
//! The assignment is [`probe_core::keyhash`] and nothing else, row by row: it cannot depend on
//! how the input was cut into batches or in which order rows arrive.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, DictionaryArray, Int32Array, StringArray};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use probe_core::keyhash::{key_hash, split_index};
use probe_core::{Error, Result};

use crate::ratios::SplitSpec;

/// Name of the column `--tag` adds.
pub const TAG_COLUMN: &str = "split";

/// Hashes each row's key into a split number.
#[derive(Debug)]
pub struct Assigner {
    key_idx: Vec<usize>,
    ratios: Vec<f64>,
    seed: u64,
    buf: Vec<u8>,
}

impl Assigner {
    /// `key_idx`: the key columns' positions in the batches, in `--key` order.
    pub fn new(key_idx: Vec<usize>, splits: &[SplitSpec], seed: u64) -> Assigner {
        Assigner { key_idx, ratios: splits.iter().map(|s| s.ratio).collect(), seed, buf: Vec::new() }
    }

    /// Fill `out` with the split number of every row of `batch` (`name` is for messages).
    pub fn assign(&mut self, batch: &RecordBatch, name: &str, out: &mut Vec<u32>) -> Result<()> {
        let cols: Vec<ArrayRef> = self.key_idx.iter().map(|&i| batch.column(i).clone()).collect();
        out.clear();
        out.reserve(batch.num_rows());
        for row in 0..batch.num_rows() {
            let h = key_hash(&cols, row, self.seed, &mut self.buf)
                .map_err(|e| Error::data(format!("{name}: hashing the key: {e}")))?;
            out.push(split_index(h, &self.ratios) as u32);
        }
        Ok(())
    }
}

pub use probe_core::keyhash::hashable;

/// Whether a column's lengths can be counted as measurements.
pub fn is_list(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::List(_)
            | DataType::LargeList(_)
            | DataType::FixedSizeList(_, _)
            | DataType::ListView(_)
            | DataType::LargeListView(_)
    )
}

/// The length of each row's list (0 for a null list), into `out`.
pub fn list_lengths(col: &dyn Array, out: &mut Vec<u64>) -> Result<()> {
    out.clear();
    let n = col.len();
    match col.data_type() {
        DataType::List(_) => {
            let offsets = col.as_list::<i32>().value_offsets();
            out.extend(offsets.windows(2).map(|w| (w[1] - w[0]).max(0) as u64));
        }
        DataType::LargeList(_) => {
            let offsets = col.as_list::<i64>().value_offsets();
            out.extend(offsets.windows(2).map(|w| (w[1] - w[0]).max(0) as u64));
        }
        DataType::FixedSizeList(_, len) => out.extend(std::iter::repeat_n((*len).max(0) as u64, n)),
        DataType::ListView(_) => out.extend(col.as_list_view::<i32>().sizes().iter().map(|&s| s.max(0) as u64)),
        DataType::LargeListView(_) => out.extend(col.as_list_view::<i64>().sizes().iter().map(|&s| s.max(0) as u64)),
        other => return Err(Error::data(format!("cannot count the entries of a {other} column"))),
    }
    if let Some(nulls) = col.logical_nulls() {
        for (len, valid) in out.iter_mut().zip(nulls.iter()) {
            if !valid {
                *len = 0;
            }
        }
    }
    Ok(())
}

/// The rows of `batch` whose split number is `split`, in input order; `None` when there are none.
pub fn rows_of(batch: &RecordBatch, idx: &[u32], split: u32) -> Result<Option<RecordBatch>> {
    let hits = idx.iter().filter(|&&i| i == split).count();
    if hits == 0 {
        return Ok(None);
    }
    if hits == idx.len() {
        return Ok(Some(batch.clone()));
    }
    let mask: BooleanArray = idx.iter().map(|&i| Some(i == split)).collect();
    filter_record_batch(batch, &mask).map(Some).map_err(|e| Error::arrow("selecting a split's rows", e))
}

/// The schema with the `split` tag column appended.
pub fn tagged_schema(schema: &Schema) -> SchemaRef {
    let mut fields: Vec<Arc<Field>> = schema.fields().iter().cloned().collect();
    fields.push(Arc::new(Field::new(
        TAG_COLUMN,
        DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
        false,
    )));
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// Builds the `split` column. Every batch shares one dictionary array, so the IPC writers
/// send the dictionary once instead of replacing it per batch.
#[derive(Debug)]
pub struct Tagger {
    schema: SchemaRef,
    names: ArrayRef,
}

impl Tagger {
    /// For batches of `schema` (without the tag), splits named as given.
    pub fn new(schema: &Schema, splits: &[SplitSpec]) -> Tagger {
        let names: StringArray = splits.iter().map(|s| Some(s.name.as_str())).collect();
        Tagger { schema: tagged_schema(schema), names: Arc::new(names) }
    }

    /// The output schema.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// `batch` with the split of each row appended as the last column.
    pub fn tag(&self, batch: &RecordBatch, idx: &[u32]) -> Result<RecordBatch> {
        let keys: Int32Array = idx.iter().map(|&i| i as i32).collect();
        let dict = DictionaryArray::<Int32Type>::try_new(keys, self.names.clone())
            .map_err(|e| Error::arrow("building the split column", e))?;
        let mut cols = batch.columns().to_vec();
        cols.push(Arc::new(dict));
        RecordBatch::try_new(self.schema.clone(), cols).map_err(|e| Error::arrow("adding the split column", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ListArray, StringArray};
    use arrow::datatypes::Int64Type;

    #[test]
    fn list_lengths_count_null_lists_as_zero() -> Result<()> {
        let list = ListArray::from_iter_primitive::<Int64Type, _, _>(vec![
            Some(vec![Some(1), Some(2)]),
            None,
            Some(vec![]),
            Some(vec![Some(3)]),
        ]);
        let mut out = Vec::new();
        list_lengths(&list, &mut out)?;
        assert_eq!(out, [2, 0, 0, 1]);
        list_lengths(&list.slice(1, 3), &mut out)?;
        assert_eq!(out, [0, 0, 1]);
        Ok(())
    }

    #[test]
    fn rows_of_keeps_order() -> Result<()> {
        let a: ArrayRef = Arc::new(StringArray::from(vec!["a", "b", "c", "d"]));
        let batch = RecordBatch::try_from_iter([("k", a)]).map_err(|e| Error::arrow("test", e))?;
        let idx = [1, 0, 1, 1];
        let ones = rows_of(&batch, &idx, 1)?.map(|b| b.num_rows());
        assert_eq!(ones, Some(3));
        assert!(rows_of(&batch, &idx, 2)?.is_none());
        assert_eq!(rows_of(&batch, &[0, 0, 0, 0], 0)?.map(|b| b.num_rows()), Some(4));
        Ok(())
    }
}
