//! Keys compared where they are, without encoding them in arrow's row format.
//!
//! The row format ([`arrow::row`]) makes any key type and any composite key compare as
//! `memcmp`, but encoding every key costs: 8% of `probe-group -o x.parquet`'s CPU on one sorted
//! input, and most of `probe-check-order`'s instructions. For the key types whose values order
//! exactly as their row format does ([`compares_in_place`]), these compare the columns
//! themselves: one row against another ([`cmp_in_place`]) and each row against the one before
//! ([`adjacent_in_place`], with a path of its own for a string or binary key without nulls).

use std::cmp::Ordering;

use arrow::array::{make_comparator, Array, ArrayRef, AsArray, DynComparator, GenericByteArray};
use arrow::compute::SortOptions;
use arrow::datatypes::{ByteArrayType, DataType};

use crate::{Error, Result};

/// The order of keys: ascending, nulls last (as `--sort` and probe-check-order sort them).
pub const KEY_ORDER: SortOptions = SortOptions { descending: false, nulls_first: false };

/// Whether key columns of this type compare in place exactly as in arrow's row format: bytes
/// lexicographically, integers, dates and timestamps by value (nulls last in both). Floats,
/// dictionaries and nested types take the row format. `probe-group`'s key ranges split on
/// the Parquet statistics of these types only, for the same reason.
pub fn compares_in_place(t: &DataType) -> bool {
    use DataType::*;
    matches!(
        t,
        Utf8 | LargeUtf8
            | Binary
            | LargeBinary
            | Int8
            | Int16
            | Int32
            | Int64
            | UInt8
            | UInt16
            | UInt32
            | UInt64
            | Date32
            | Date64
            | Timestamp(_, _)
    )
}

/// Compare key row `i` of `a` with key row `j` of `b` in place.
pub fn cmp_in_place(a: &[ArrayRef], i: usize, b: &[ArrayRef], j: usize) -> Result<Ordering> {
    for (ca, cb) in a.iter().zip(b) {
        let o = match cmp_values(ca.as_ref(), i, cb.as_ref(), j) {
            Some(o) => o,
            None => {
                let cmp =
                    make_comparator(ca.as_ref(), cb.as_ref(), KEY_ORDER).map_err(|e| Error::arrow("key columns", e))?;
                cmp(i, j)
            }
        };
        if o != Ordering::Equal {
            return Ok(o);
        }
    }
    Ok(Ordering::Equal)
}

/// Value `i` of `a` against value `j` of `b`, nulls last, for the types [`compares_in_place`]
/// takes when both columns have the same one; `None` for others (and for two columns of
/// different types, compared by `make_comparator` if it can). Reads the two values, where
/// `make_comparator` would build a comparator for the pair of columns first (the merge of
/// several inputs compares rows of different batches a few at a time).
fn cmp_values(a: &dyn Array, i: usize, b: &dyn Array, j: usize) -> Option<Ordering> {
    use arrow::datatypes::*;
    // `b` of another type fails its downcast below (a different timestamp unit too); only the
    // time zones of two timestamp columns go unchecked, and instants order alike in any zone.
    match (a.is_null(i), b.is_null(j)) {
        (true, true) => return Some(Ordering::Equal),
        (true, false) => return Some(Ordering::Greater),
        (false, true) => return Some(Ordering::Less),
        (false, false) => {}
    }
    fn prim<T: ArrowPrimitiveType>(a: &dyn Array, i: usize, b: &dyn Array, j: usize) -> Option<Ordering>
    where
        T::Native: Ord,
    {
        Some(a.as_primitive_opt::<T>()?.value(i).cmp(&b.as_primitive_opt::<T>()?.value(j)))
    }
    match a.data_type() {
        DataType::Utf8 => Some(a.as_string_opt::<i32>()?.value(i).cmp(b.as_string_opt::<i32>()?.value(j))),
        DataType::LargeUtf8 => Some(a.as_string_opt::<i64>()?.value(i).cmp(b.as_string_opt::<i64>()?.value(j))),
        DataType::Binary => Some(a.as_binary_opt::<i32>()?.value(i).cmp(b.as_binary_opt::<i32>()?.value(j))),
        DataType::LargeBinary => Some(a.as_binary_opt::<i64>()?.value(i).cmp(b.as_binary_opt::<i64>()?.value(j))),
        DataType::Int8 => prim::<Int8Type>(a, i, b, j),
        DataType::Int16 => prim::<Int16Type>(a, i, b, j),
        DataType::Int32 => prim::<Int32Type>(a, i, b, j),
        DataType::Int64 => prim::<Int64Type>(a, i, b, j),
        DataType::UInt8 => prim::<UInt8Type>(a, i, b, j),
        DataType::UInt16 => prim::<UInt16Type>(a, i, b, j),
        DataType::UInt32 => prim::<UInt32Type>(a, i, b, j),
        DataType::UInt64 => prim::<UInt64Type>(a, i, b, j),
        DataType::Date32 => prim::<Date32Type>(a, i, b, j),
        DataType::Date64 => prim::<Date64Type>(a, i, b, j),
        DataType::Timestamp(TimeUnit::Second, _) => prim::<TimestampSecondType>(a, i, b, j),
        DataType::Timestamp(TimeUnit::Millisecond, _) => prim::<TimestampMillisecondType>(a, i, b, j),
        DataType::Timestamp(TimeUnit::Microsecond, _) => prim::<TimestampMicrosecondType>(a, i, b, j),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => prim::<TimestampNanosecondType>(a, i, b, j),
        _ => None,
    }
}

/// Compare each key row with the next, in place: `cmp(i)` orders row `i - 1` against row `i`.
pub fn adjacent_in_place(cols: &[ArrayRef]) -> Result<Box<dyn Fn(usize) -> Ordering + Send + Sync>> {
    // The commonest key, one string or binary column without nulls: adjacent rows straight from
    // the offsets (most adjacent rows share their key, and equal bytes are found fastest).
    if let [c] = cols {
        if c.null_count() == 0 {
            match c.data_type() {
                DataType::Utf8 => return Ok(adjacent_bytes(c.as_string::<i32>())),
                DataType::Binary => return Ok(adjacent_bytes(c.as_binary::<i32>())),
                _ => {}
            }
        }
    }
    let cmps = cols
        .iter()
        .map(|c| make_comparator(c.as_ref(), c.as_ref(), KEY_ORDER))
        .collect::<std::result::Result<Vec<DynComparator>, _>>()
        .map_err(|e| Error::arrow("key columns", e))?;
    Ok(Box::new(move |i: usize| {
        for cmp in &cmps {
            match cmp(i - 1, i) {
                Ordering::Equal => {}
                o => return o,
            }
        }
        Ordering::Equal
    }))
}

/// [`adjacent_in_place`] for a string or binary column without nulls: bytes in lexicographic
/// order, as the row format orders them.
fn adjacent_bytes<T: ByteArrayType<Offset = i32>>(
    a: &GenericByteArray<T>,
) -> Box<dyn Fn(usize) -> Ordering + Send + Sync> {
    let offsets = a.offsets().clone();
    let data = a.values().clone();
    Box::new(move |i: usize| {
        let (start, mid, end) = (offsets[i - 1] as usize, offsets[i] as usize, offsets[i + 1] as usize);
        let (x, y) = (&data[start..mid], &data[mid..end]);
        if equal_bytes(x, y) {
            Ordering::Equal
        } else {
            x.cmp(y)
        }
    })
}

/// `x == y`, without a call to `memcmp` for keys of 8 to 16 bytes (an IPv4 or IPv6 address as
/// text mostly): two overlapping 8-byte words each.
fn equal_bytes(x: &[u8], y: &[u8]) -> bool {
    let n = x.len();
    if n != y.len() {
        return false;
    }
    if (8..=16).contains(&n) {
        let word = |s: &[u8], at: usize| s.get(at..at + 8).map(|w| u64::from_ne_bytes(w.try_into().unwrap_or([0; 8])));
        return word(x, 0) == word(y, 0) && word(x, n - 8) == word(y, n - 8);
    }
    x == y
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};
    use arrow::record_batch::RecordBatch;
    use arrow::row::{RowConverter, SortField};

    use super::*;

    fn key_converter(data: &RecordBatch) -> Result<RowConverter> {
        let fields = vec![SortField::new_with_options(data.column(0).data_type().clone(), KEY_ORDER)];
        RowConverter::new(fields).map_err(|e| Error::arrow("key columns", e))
    }

    /// The key types compared in place order exactly as arrow's row format does (the multi-input
    /// merge, `--sort` and the order check elsewhere use it), nulls last included.
    #[test]
    fn keys_compared_in_place_order_as_the_row_format() -> Result<()> {
        use arrow::array::{
            BinaryArray, Date32Array, Date64Array, Int16Array, Int32Array, Int8Array, LargeBinaryArray,
            LargeStringArray, TimestampMicrosecondArray, UInt16Array, UInt32Array, UInt64Array, UInt8Array,
        };
        let strs =
            [Some(""), None, Some("a"), Some("ab"), Some("b"), Some("\u{0}"), Some("é"), Some("a\u{0}"), Some("Z")];
        let bytes: Vec<Option<&[u8]>> = vec![Some(b""), None, Some(&[0xff]), Some(&[0]), Some(&[0, 0]), Some(b"a")];
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(strs.to_vec())),
            Arc::new(LargeStringArray::from(strs.to_vec())),
            Arc::new(BinaryArray::from(bytes.clone())),
            Arc::new(LargeBinaryArray::from(bytes)),
            Arc::new(Int8Array::from(vec![Some(i8::MIN), None, Some(-1), Some(0), Some(1), Some(i8::MAX)])),
            Arc::new(Int16Array::from(vec![Some(i16::MIN), None, Some(-1), Some(0), Some(i16::MAX)])),
            Arc::new(Int32Array::from(vec![Some(i32::MIN), None, Some(-1), Some(0), Some(i32::MAX)])),
            Arc::new(Int64Array::from(vec![Some(i64::MIN), None, Some(-1), Some(0), Some(i64::MAX)])),
            Arc::new(UInt8Array::from(vec![Some(0), None, Some(1), Some(u8::MAX)])),
            Arc::new(UInt16Array::from(vec![Some(0), None, Some(1), Some(u16::MAX)])),
            Arc::new(UInt32Array::from(vec![Some(0), None, Some(1), Some(u32::MAX)])),
            Arc::new(UInt64Array::from(vec![Some(0), None, Some(1), Some(u64::MAX), Some(1 << 63)])),
            Arc::new(Date32Array::from(vec![Some(-1), None, Some(0), Some(i32::MAX)])),
            Arc::new(Date64Array::from(vec![Some(-86_400_000), None, Some(0)])),
            Arc::new(
                TimestampMicrosecondArray::from(vec![Some(-1), None, Some(0), Some(i64::MAX)]).with_timezone("UTC"),
            ),
        ];
        for col in columns {
            assert!(compares_in_place(col.data_type()), "{}", col.data_type());
            let schema = Schema::new(vec![Field::new("k", col.data_type().clone(), true)]);
            let data = RecordBatch::try_new(Arc::new(schema), vec![col.clone()]).expect("batch");
            let cols = [col.clone()];
            let rows = key_converter(&data)?.convert_columns(&cols).expect("rows");
            for i in 0..col.len() {
                for j in 0..col.len() {
                    let want = rows.row(i).cmp(&rows.row(j));
                    assert_eq!(cmp_in_place(&cols, i, &cols, j)?, want, "{} rows {i}, {j}", col.data_type());
                    if i + 1 == j {
                        assert_eq!(adjacent_in_place(&cols)?(j), want, "{} rows {i}, {j}", col.data_type());
                    }
                }
            }
            // Across two arrays (the merge compares rows of different batches): the values
            // reversed into a new array, sliced so its offsets start elsewhere.
            let n = col.len();
            let reversed =
                arrow::compute::take(&col, &arrow::array::UInt32Array::from_iter_values((0..n as u32).rev()), None)
                    .expect("take");
            let other = arrow::compute::concat(&[&col.slice(0, 1), &reversed]).expect("concat").slice(1, n);
            let others = [other];
            for i in 0..n {
                for j in 0..n {
                    let want = rows.row(i).cmp(&rows.row(n - 1 - j));
                    assert_eq!(
                        cmp_in_place(&cols, i, &others, j)?,
                        want,
                        "{} rows {i}, {j} of another",
                        col.data_type()
                    );
                    assert_eq!(cmp_in_place(&others, j, &cols, i)?, want.reverse(), "{} reversed", col.data_type());
                }
            }
        }
        // Floats take the row format (its total order on -0.0 and NaN).
        assert!(!compares_in_place(&DataType::Float64));
        Ok(())
    }

    /// Strings and binary without nulls take a path of their own: every pair of values from 0 to
    /// 20 bytes long (differing at the first, a middle or the last byte, or in length) orders as
    /// the row format does, in a sliced array too.
    #[test]
    fn adjacent_string_keys_without_nulls_order_as_the_row_format() -> Result<()> {
        use arrow::array::BinaryArray;
        let mut values: Vec<Vec<u8>> = Vec::new();
        for n in 0..=20usize {
            let base: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
            values.push(base.clone());
            for at in [0, n / 2, n.saturating_sub(1)] {
                if at < n {
                    for delta in [1u8, 255] {
                        let mut v = base.clone();
                        v[at] = v[at].wrapping_add(delta);
                        values.push(v);
                    }
                }
            }
        }
        for x in &values {
            for y in &values {
                // A leading row, sliced off, moves the offsets.
                let pair = [b"zz".as_slice(), x, y];
                let strs: Vec<String> = pair.iter().map(|v| String::from_utf8_lossy(v).into_owned()).collect();
                let columns: Vec<ArrayRef> = vec![
                    (Arc::new(BinaryArray::from_iter_values(pair)) as ArrayRef).slice(1, 2),
                    (Arc::new(StringArray::from_iter_values(&strs)) as ArrayRef).slice(1, 2),
                ];
                for col in columns {
                    let schema = Schema::new(vec![Field::new("k", col.data_type().clone(), false)]);
                    let data = RecordBatch::try_new(Arc::new(schema), vec![col.clone()]).expect("batch");
                    let cols = [col];
                    let rows = key_converter(&data)?.convert_columns(&cols).expect("rows");
                    assert_eq!(adjacent_in_place(&cols)?(1), rows.row(0).cmp(&rows.row(1)), "{x:?} {y:?}");
                }
            }
        }
        Ok(())
    }
}
