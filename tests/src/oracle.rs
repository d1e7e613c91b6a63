//! An independent, deliberately simple model of what `probe-group` must return: decode every
//! input row into plain values, stable-sort by (key, time) with nulls last, group.
//!
//! It shares no code with the stages (no row format, no merge), so a bug in one is not
//! mirrored in the other.

use std::cmp::Ordering;

use arrow::array::{Array, AsArray, ListArray, StructArray};
use arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, Schema, TimeUnit, UInt16Type,
    UInt32Type, UInt64Type, UInt8Type,
};
use arrow::record_batch::RecordBatch;

/// One decoded cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    /// A null of any type.
    Null,
    /// Signed integers, timestamps (in their unit), dates.
    I(i64),
    /// Unsigned integers.
    U(u64),
    /// Floats (compared by bits for equality).
    F(f64),
    /// Strings.
    S(String),
    /// Binary.
    B(Vec<u8>),
    /// Booleans.
    Bool(bool),
    /// A list of struct rows (grouped output).
    List(Vec<Vec<Val>>),
}

impl Val {
    /// Order for keys and times: nulls last, values by their natural order (strings by bytes).
    pub fn cmp_nulls_last(&self, other: &Val) -> Ordering {
        use Val::*;
        match (self, other) {
            (Null, Null) => Ordering::Equal,
            (Null, _) => Ordering::Greater,
            (_, Null) => Ordering::Less,
            (I(a), I(b)) => a.cmp(b),
            (U(a), U(b)) => a.cmp(b),
            (F(a), F(b)) => a.total_cmp(b),
            (S(a), S(b)) => a.as_bytes().cmp(b.as_bytes()),
            (B(a), B(b)) => a.cmp(b),
            (Bool(a), Bool(b)) => a.cmp(b),
            (a, b) => panic!("oracle cannot compare {a:?} with {b:?}"),
        }
    }
}

impl Eq for Val {}

/// Decode cell `i` of `col`.
pub fn cell(col: &dyn Array, i: usize) -> Val {
    if col.is_null(i) {
        return Val::Null;
    }
    match col.data_type() {
        DataType::Utf8 => Val::S(col.as_string::<i32>().value(i).to_string()),
        DataType::LargeUtf8 => Val::S(col.as_string::<i64>().value(i).to_string()),
        DataType::Utf8View => Val::S(col.as_string_view().value(i).to_string()),
        DataType::Binary => Val::B(col.as_binary::<i32>().value(i).to_vec()),
        DataType::LargeBinary => Val::B(col.as_binary::<i64>().value(i).to_vec()),
        DataType::BinaryView => Val::B(col.as_binary_view().value(i).to_vec()),
        DataType::FixedSizeBinary(_) => Val::B(col.as_fixed_size_binary().value(i).to_vec()),
        DataType::Boolean => Val::Bool(col.as_boolean().value(i)),
        DataType::Int8 => Val::I(col.as_primitive::<Int8Type>().value(i) as i64),
        DataType::Int16 => Val::I(col.as_primitive::<Int16Type>().value(i) as i64),
        DataType::Int32 => Val::I(col.as_primitive::<Int32Type>().value(i) as i64),
        DataType::Int64 => Val::I(col.as_primitive::<Int64Type>().value(i)),
        DataType::UInt8 => Val::U(col.as_primitive::<UInt8Type>().value(i) as u64),
        DataType::UInt16 => Val::U(col.as_primitive::<UInt16Type>().value(i) as u64),
        DataType::UInt32 => Val::U(col.as_primitive::<UInt32Type>().value(i) as u64),
        DataType::UInt64 => Val::U(col.as_primitive::<UInt64Type>().value(i)),
        DataType::Float32 => Val::F(col.as_primitive::<Float32Type>().value(i) as f64),
        DataType::Float64 => Val::F(col.as_primitive::<Float64Type>().value(i)),
        DataType::Date32 => Val::I(col.as_primitive::<arrow::datatypes::Date32Type>().value(i) as i64),
        DataType::Date64 => Val::I(col.as_primitive::<arrow::datatypes::Date64Type>().value(i)),
        DataType::Timestamp(unit, _) => Val::I(match unit {
            TimeUnit::Second => col.as_primitive::<arrow::datatypes::TimestampSecondType>().value(i),
            TimeUnit::Millisecond => col.as_primitive::<arrow::datatypes::TimestampMillisecondType>().value(i),
            TimeUnit::Microsecond => col.as_primitive::<arrow::datatypes::TimestampMicrosecondType>().value(i),
            TimeUnit::Nanosecond => col.as_primitive::<arrow::datatypes::TimestampNanosecondType>().value(i),
        }),
        DataType::Dictionary(_, _) => {
            let d = col.as_any_dictionary();
            let k = d.normalized_keys()[i];
            cell(d.values().as_ref(), k)
        }
        DataType::List(_) => {
            let l = col.as_any().downcast_ref::<ListArray>().expect("list");
            let v = l.value(i);
            match v.as_any().downcast_ref::<StructArray>() {
                Some(s) => {
                    Val::List((0..s.len()).map(|r| s.columns().iter().map(|c| cell(c.as_ref(), r)).collect()).collect())
                }
                // A list of plain values: one single-field "row" per element.
                None => Val::List((0..v.len()).map(|r| vec![cell(v.as_ref(), r)]).collect()),
            }
        }
        other => panic!("oracle cannot decode {other}"),
    }
}

/// All rows of some batches as plain values.
pub fn rows(batches: &[RecordBatch]) -> Vec<Vec<Val>> {
    let mut out = Vec::new();
    for b in batches {
        for i in 0..b.num_rows() {
            out.push(b.columns().iter().map(|c| cell(c.as_ref(), i)).collect());
        }
    }
    out
}

/// A probe row: key values and the measurements (time first, then payload).
pub type Group = (Vec<Val>, Vec<Vec<Val>>);

/// The expected `probe-group` output for input files (each a list of rows, in the order
/// given): stable sort by (key, time), nulls last, then group.
///
/// `keys` and `time` are column indices; `payload` the payload column indices in output order.
pub fn group(files: &[Vec<Vec<Val>>], keys: &[usize], time: usize, payload: &[usize]) -> Vec<Group> {
    let mut all: Vec<&Vec<Val>> = files.iter().flatten().collect();
    let cmp_keys = |a: &Vec<Val>, b: &Vec<Val>| {
        for &k in keys {
            let c = a[k].cmp_nulls_last(&b[k]);
            if c != Ordering::Equal {
                return c;
            }
        }
        Ordering::Equal
    };
    // `sort_by` is stable: ties keep the concatenated input order.
    all.sort_by(|a, b| cmp_keys(a, b).then_with(|| a[time].cmp_nulls_last(&b[time])));
    let mut out: Vec<Group> = Vec::new();
    for r in all {
        let key: Vec<Val> = keys.iter().map(|&k| r[k].clone()).collect();
        let m: Vec<Val> = std::iter::once(r[time].clone()).chain(payload.iter().map(|&p| r[p].clone())).collect();
        match out.last_mut() {
            Some((k, ms)) if *k == key => ms.push(m),
            _ => out.push((key, vec![m])),
        }
    }
    out
}

/// Decode `probe-group` output: `n_keys` key columns, then the measurements list.
pub fn decode_groups(batches: &[RecordBatch], n_keys: usize) -> Vec<Group> {
    let mut out = Vec::new();
    for row in rows(batches) {
        assert_eq!(row.len(), n_keys + 1, "grouped output has key columns and one list column");
        let key = row[..n_keys].to_vec();
        let Val::List(ms) = row[n_keys].clone() else { panic!("measurements column is not a list: {:?}", row[n_keys]) };
        out.push((key, ms));
    }
    out
}

/// Compare grouped output with the oracle, reporting the first difference readably.
pub fn assert_groups_eq(actual: &[Group], expected: &[Group]) {
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert_eq!(a.0, e.0, "group {i}: key differs");
        assert_eq!(a.1.len(), e.1.len(), "group {i} (key {:?}): measurement count differs", e.0);
        for (j, (am, em)) in a.1.iter().zip(&e.1).enumerate() {
            assert_eq!(am, em, "group {i} (key {:?}), measurement {j} differs", e.0);
        }
    }
    assert_eq!(actual.len(), expected.len(), "number of groups differs");
}

/// A column's name and type.
pub type Column = (String, DataType);

/// A schema's columns as (name, type), nullability aside: what the values mean. [`cell`] folds
/// every integer, date and timestamp type into one [`Val`], so the types are checked here.
pub fn columns(schema: &Schema) -> Vec<Column> {
    schema.fields().iter().map(|f| (f.name().clone(), f.data_type().clone())).collect()
}

/// Assert that an output schema has the expected columns with the same types (a lost `UTC`
/// timezone, an Int64 written for a Timestamp, Utf8 for LargeUtf8 all fail), nullability aside.
pub fn assert_same_columns(actual: &Schema, expected: &Schema, what: &str) {
    assert_eq!(columns(actual), columns(expected), "{what}: output columns or types differ from the input's");
}

/// The columns `probe-group` must write for an input schema: each key column as it was, then
/// `measurements`, a list of structs of the time column and the payload columns, types kept.
/// Returns the key columns and the struct's fields, both as (name, type).
pub fn group_columns(input: &Schema, keys: &[usize], time: usize, payload: &[usize]) -> (Vec<Column>, Vec<Column>) {
    let col = |i: &usize| (input.field(*i).name().clone(), input.field(*i).data_type().clone());
    let key_cols = keys.iter().map(col).collect();
    let item = std::iter::once(&time).chain(payload).map(col).collect();
    (key_cols, item)
}

/// Assert that `probe-group` output has the schema [`group_columns`] describes.
pub fn assert_group_schema(actual: &Schema, input: &Schema, keys: &[usize], time: usize, payload: &[usize]) {
    let (want_keys, want_item) = group_columns(input, keys, time, payload);
    let got = columns(actual);
    assert_eq!(got.len(), keys.len() + 1, "grouped output has the key columns and one list: {got:?}");
    assert_eq!(&got[..keys.len()], &want_keys[..], "key columns or their types changed");
    let (name, list) = &got[keys.len()];
    assert_eq!(name, "measurements");
    let item = match list {
        DataType::List(f) | DataType::LargeList(f) => f.data_type(),
        other => panic!("measurements is not a list: {other}"),
    };
    let DataType::Struct(fields) = item else { panic!("measurements items are not structs: {item}") };
    let got_item: Vec<Column> = fields.iter().map(|f| (f.name().clone(), f.data_type().clone())).collect();
    assert_eq!(got_item, want_item, "measurement fields or their types changed");
}
