//! The documented key hash: which split (and later, which partition) a key belongs to.
//!
//! A pure function of the key's bytes and a seed, stable across batch sizes, thread counts,
//! input order, machines and releases (pinned by golden tests):
//!
//! 1. **Key bytes.** A string is its UTF-8 bytes; binary is its bytes; a signed integer
//!    (any width, dates and timestamps too) is 8 bytes little-endian of its value as i64; an
//!    unsigned integer is 8 bytes little-endian of its value as u64; a boolean is one byte 0/1;
//!    a null is no bytes. A single-column key is just those bytes. A composite key is, for
//!    each part in `--key` order, a 4-byte little-endian length followed by the part's bytes
//!    (a null part has length `0xFFFFFFFF` and no bytes).
//! 2. **Hash.** `h = XXH3_64(bytes, seed)` (xxHash's XXH3, 64-bit, with seed).
//! 3. **Unit interval.** `u = (h >> 11) / 2^53`, a float in [0, 1).
//! 4. **Split.** With ratios `r1..rn` in the order given, the key goes to the first split i
//!    with `u < r1 + ... + ri` (sums taken left to right in f64); the last split takes the rest.
//!
//! In Python: `from xxhash import xxh3_64_intdigest`;
//! `u = (xxh3_64_intdigest(key.encode(), seed) >> 11) / 2**53`; then walk the cumulative ratios.

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{
    DataType, Date32Type, Date64Type, Int16Type, Int32Type, Int64Type, Int8Type, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt16Type, UInt32Type, UInt64Type,
    UInt8Type,
};
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::error::{Error, Result};

/// The seed partitioning uses, fixed so that partition I is the same set of keys everywhere.
pub const PARTITION_SEED: u64 = 0x7072_6f62_6570_6172; // "probepar"

/// XXH3-64 of key bytes with a seed.
pub fn hash_bytes(bytes: &[u8], seed: u64) -> u64 {
    xxh3_64_with_seed(bytes, seed)
}

/// A hash as a float in [0, 1): its top 53 bits over 2^53.
pub fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// Which of `n` partitions a hash falls in (multiply-shift, no modulo bias).
pub fn partition(h: u64, n: u64) -> u64 {
    ((h as u128 * n as u128) >> 64) as u64
}

/// Which split a hash falls in, for ratios in the order given.
pub fn split_index(h: u64, ratios: &[f64]) -> usize {
    let u = unit(h);
    let mut acc = 0.0f64;
    for (i, r) in ratios.iter().enumerate() {
        acc += r;
        if u < acc {
            return i;
        }
    }
    ratios.len().saturating_sub(1)
}

/// Whether the key hash defines bytes for a key column of this type (step 1 above).
pub fn hashable(dt: &DataType) -> bool {
    use DataType::*;
    match dt {
        Utf8
        | LargeUtf8
        | Utf8View
        | Binary
        | LargeBinary
        | BinaryView
        | FixedSizeBinary(_)
        | Boolean
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
        | Timestamp(_, _) => true,
        Dictionary(_, values) => hashable(values),
        _ => false,
    }
}

/// Appends one key part's bytes (step 1 above) for row `row` of `col`. Returns false for null.
pub fn part_bytes(col: &dyn Array, row: usize, buf: &mut Vec<u8>) -> Result<bool> {
    if col.is_null(row) {
        return Ok(false);
    }
    macro_rules! signed {
        ($t:ty) => {
            buf.extend_from_slice(&(col.as_primitive::<$t>().value(row) as i64).to_le_bytes())
        };
    }
    macro_rules! unsigned {
        ($t:ty) => {
            buf.extend_from_slice(&(col.as_primitive::<$t>().value(row) as u64).to_le_bytes())
        };
    }
    match col.data_type() {
        DataType::Utf8 => buf.extend_from_slice(col.as_string::<i32>().value(row).as_bytes()),
        DataType::LargeUtf8 => buf.extend_from_slice(col.as_string::<i64>().value(row).as_bytes()),
        DataType::Utf8View => buf.extend_from_slice(col.as_string_view().value(row).as_bytes()),
        DataType::Binary => buf.extend_from_slice(col.as_binary::<i32>().value(row)),
        DataType::LargeBinary => buf.extend_from_slice(col.as_binary::<i64>().value(row)),
        DataType::BinaryView => buf.extend_from_slice(col.as_binary_view().value(row)),
        DataType::FixedSizeBinary(_) => buf.extend_from_slice(col.as_fixed_size_binary().value(row)),
        DataType::Boolean => buf.push(col.as_boolean().value(row) as u8),
        DataType::Int8 => signed!(Int8Type),
        DataType::Int16 => signed!(Int16Type),
        DataType::Int32 => signed!(Int32Type),
        DataType::Int64 => signed!(Int64Type),
        DataType::UInt8 => unsigned!(UInt8Type),
        DataType::UInt16 => unsigned!(UInt16Type),
        DataType::UInt32 => unsigned!(UInt32Type),
        DataType::UInt64 => unsigned!(UInt64Type),
        DataType::Date32 => signed!(Date32Type),
        DataType::Date64 => signed!(Date64Type),
        DataType::Timestamp(TimeUnit::Second, _) => signed!(TimestampSecondType),
        DataType::Timestamp(TimeUnit::Millisecond, _) => signed!(TimestampMillisecondType),
        DataType::Timestamp(TimeUnit::Microsecond, _) => signed!(TimestampMicrosecondType),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => signed!(TimestampNanosecondType),
        DataType::Dictionary(_, _) => {
            let dict = col.as_any_dictionary();
            // One key read, not `normalized_keys()` (all of them, per row: quadratic).
            let keys = dict.keys();
            let key = match keys.data_type() {
                DataType::Int8 => keys.as_primitive::<Int8Type>().value(row) as usize,
                DataType::Int16 => keys.as_primitive::<Int16Type>().value(row) as usize,
                DataType::Int32 => keys.as_primitive::<Int32Type>().value(row) as usize,
                DataType::Int64 => keys.as_primitive::<Int64Type>().value(row) as usize,
                DataType::UInt8 => keys.as_primitive::<UInt8Type>().value(row) as usize,
                DataType::UInt16 => keys.as_primitive::<UInt16Type>().value(row) as usize,
                DataType::UInt32 => keys.as_primitive::<UInt32Type>().value(row) as usize,
                DataType::UInt64 => keys.as_primitive::<UInt64Type>().value(row) as usize,
                other => return Err(Error::data(format!("dictionary keys of type {other} are not supported"))),
            };
            if key >= dict.values().len() {
                return Err(Error::data(format!(
                    "dictionary key {key} is past the dictionary's {} values",
                    dict.values().len()
                )));
            }
            return part_bytes(dict.values().as_ref(), key, buf);
        }
        other => return Err(Error::data(format!("key columns of type {other} cannot be hashed"))),
    }
    Ok(true)
}

/// The key bytes (step 1) of row `row` over the key columns, into `buf` (cleared first).
pub fn key_bytes(cols: &[ArrayRef], row: usize, buf: &mut Vec<u8>) -> Result<()> {
    buf.clear();
    if cols.len() == 1 {
        part_bytes(cols[0].as_ref(), row, buf)?;
        return Ok(());
    }
    composite_bytes(cols, row, buf, &mut Vec::new())
}

/// Appends the composite form of row `row`'s key (step 1: each part as a length and its bytes,
/// a null part as `0xFFFFFFFF`) whatever the number of parts, so a null and an empty string
/// differ even in a one-column key (what probe-batch's key check compares). `part` is scratch.
pub fn composite_bytes(cols: &[ArrayRef], row: usize, buf: &mut Vec<u8>, part: &mut Vec<u8>) -> Result<()> {
    for c in cols {
        part.clear();
        if part_bytes(c.as_ref(), row, part)? {
            buf.extend_from_slice(&(part.len() as u32).to_le_bytes());
            buf.extend_from_slice(part);
        } else {
            buf.extend_from_slice(&u32::MAX.to_le_bytes());
        }
    }
    Ok(())
}

/// The hash of row `row`'s key with `seed`.
pub fn key_hash(cols: &[ArrayRef], row: usize, seed: u64, buf: &mut Vec<u8>) -> Result<u64> {
    key_bytes(cols, row, buf)?;
    Ok(hash_bytes(buf, seed))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn split_index_walks_cumulative_ratios() {
        let r = [0.9, 0.1];
        assert_eq!(split_index(0, &r), 0);
        assert_eq!(split_index(u64::MAX, &r), 1);
        // u just below 0.9 -> train, just above -> test.
        let h_at = |u: f64| ((u * (1u64 << 53) as f64) as u64) << 11;
        assert_eq!(split_index(h_at(0.8999), &r), 0);
        assert_eq!(split_index(h_at(0.9001), &r), 1);
    }

    #[test]
    fn a_dictionary_key_has_the_bytes_of_its_value() {
        use std::sync::Arc;

        use arrow::array::{DictionaryArray, StringArray, UInt16Array};
        let values = Arc::new(StringArray::from(vec![Some("b"), None, Some("a")]));
        // Keys of every width read the same value; a null key and a null value are nulls.
        let dict = DictionaryArray::new(UInt16Array::from(vec![Some(2), None, Some(0), Some(1), Some(2)]), values);
        let plain = StringArray::from(vec![Some("a"), None, Some("b"), None, Some("a")]);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for row in 0..5 {
            let cols_d: Vec<ArrayRef> = vec![Arc::new(dict.clone())];
            let cols_p: Vec<ArrayRef> = vec![Arc::new(plain.clone())];
            assert_eq!(key_hash(&cols_d, row, 7, &mut a).unwrap(), key_hash(&cols_p, row, 7, &mut b).unwrap(), "{row}");
            assert_eq!(a, b, "{row}");
        }
        // Sliced: the key of row 0 of the slice is the array's row 2.
        let sliced: Vec<ArrayRef> = vec![Arc::new(dict.slice(2, 3))];
        key_bytes(&sliced, 0, &mut a).unwrap();
        assert_eq!(a, b"b");
    }

    #[test]
    fn partition_is_in_range_and_monotone() {
        assert_eq!(partition(0, 4), 0);
        assert_eq!(partition(u64::MAX, 4), 3);
        assert_eq!(partition(u64::MAX / 2, 4), 1);
    }
}
