//! Checks on the key and time columns, shared by every stage that orders or groups rows.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Int64Array, UInt64Array};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema};

use crate::error::{Error, Result};
use crate::input::column_index;

/// Whether a column type can be a key (compared as arrow's row format).
pub fn check_key_type(field: &Field, file: &str) -> Result<()> {
    // Every key type must also be hashable, so that probe-split can take what probe-group made.
    if crate::keyhash::hashable(field.data_type()) {
        return Ok(());
    }
    Err(Error::data(format!(
        "{file}: key column `{}` has type {}, which cannot be a key; use a string, binary, integer or \
         timestamp column (cast it when exporting)",
        field.name(),
        field.data_type()
    )))
}

/// Whether a column type can be the time column: its values are read as i64. Accepted:
/// timestamps, dates, times of day, durations, and every integer type (Int8 to Int64, UInt8 to
/// UInt64; a UInt64 value above i64::MAX is refused where it is read, naming its row).
pub fn check_time_type(field: &Field, file: &str) -> Result<()> {
    use DataType::*;
    match field.data_type() {
        Timestamp(_, _) | Date32 | Date64 | Time64(_) | Time32(_) | Duration(_) => Ok(()),
        t if t.is_integer() => Ok(()),
        other => Err(Error::data(format!(
            "{file}: time column `{}` has type {other}; it must be a timestamp, date, time, duration or integer \
             (Int8 to Int64, UInt8 to UInt64) column (pass --time with the right column, or cast it when exporting)",
            field.name()
        ))),
    }
}

/// Indices of the key columns and the time column, with their types checked.
pub fn key_time_indices(schema: &Schema, keys: &[String], time: &str, file: &str) -> Result<(Vec<usize>, usize)> {
    let mut key_idx = Vec::with_capacity(keys.len());
    for k in keys {
        let i = column_index(schema, k, file)?;
        check_key_type(schema.field(i), file)?;
        key_idx.push(i);
    }
    let t = column_index(schema, time, file)?;
    if keys.iter().any(|k| k == time) {
        return Err(Error::config(format!("`{time}` is given as both a key and the time column")));
    }
    check_time_type(schema.field(t), file)?;
    Ok((key_idx, t))
}

/// The time column's values as i64 (timestamps in their own unit, dates as days or ms,
/// integers as they are). A UInt64 value above i64::MAX is an error naming its place:
/// `at(i)` describes row `i` of `col` (file and row) for the message.
pub fn time_as_i64(col: &ArrayRef, at: impl Fn(usize) -> String) -> Result<Int64Array> {
    let data_type = col.data_type().clone();
    check_time_values(col, at)?;
    let as_i64 = match &data_type {
        DataType::Int64 => col.clone(),
        DataType::Date32 | DataType::Time32(_) => {
            cast(&cast(col, &DataType::Int32).map_err(|e| Error::arrow("time column", e))?, &DataType::Int64)
                .map_err(|e| Error::arrow("time column", e))?
        }
        _ => cast(col, &DataType::Int64).map_err(|e| Error::arrow("time column", e))?,
    };
    let arr = as_i64
        .as_any()
        .downcast_ref::<Int64Array>()
        .cloned()
        .ok_or_else(|| Error::data(format!("time column of type {data_type} could not be read as integers")))?;
    // A cast that turned a value into null would drop a time without a word.
    if arr.null_count() != col.null_count() {
        return Err(Error::internal(format!("reading a {data_type} time column as integers lost values")));
    }
    Ok(arr)
}

/// Refuse time values that cannot be read as i64: a UInt64 above i64::MAX (`at(i)` names the
/// file and row of `col`'s row `i`). Every other time type fits.
pub fn check_time_values(col: &ArrayRef, at: impl Fn(usize) -> String) -> Result<()> {
    let Some(u) = col.as_any().downcast_ref::<UInt64Array>() else {
        return Ok(());
    };
    if arrow::compute::max(u).is_none_or(|m| m <= i64::MAX as u64) {
        return Ok(());
    }
    let i = u.iter().position(|v| v.is_some_and(|v| v > i64::MAX as u64)).unwrap_or(0);
    Err(Error::data(format!(
        "{}: time {} is above {}, the largest time this project orders; cast the time column to Int64 or \
         a timestamp when exporting",
        at(i),
        u.value(i),
        i64::MAX
    )))
}

/// A schema with every field nullable (outputs may carry nulls from any input).
pub fn nullable(schema: &Schema) -> Schema {
    Schema::new(schema.fields().iter().map(|f| Arc::new(f.as_ref().clone().with_nullable(true))).collect::<Vec<_>>())
}

/// Time order with nulls last: the order every stage checks and produces.
pub fn cmp_time(a: Option<i64>, b: Option<i64>) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a, b) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

/// One cell for people, in its column's own type (a timestamp as a date and time), `null`
/// for a null; strings in double quotes when `quote_strings` (one-line error messages, where a
/// key may hold spaces or commas).
pub fn format_value(col: &dyn Array, row: usize, quote_strings: bool) -> String {
    // arrow's formatter gives up on a named timezone ("UTC") without the timezone database;
    // timestamps and dates (keys too) go through the one ISO 8601 formatter instead.
    if matches!(col.data_type(), DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64) {
        return format_time_at(col, row, None);
    }
    arrow_format(col, row, quote_strings)
}

fn arrow_format(col: &dyn Array, row: usize, quote_strings: bool) -> String {
    let opts = arrow::util::display::FormatOptions::default().with_null("null");
    match arrow::util::display::ArrayFormatter::try_new(col, &opts) {
        Ok(f) if row < col.len() => {
            let text = f.value(row).to_string();
            let is_string = matches!(col.data_type(), DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
            if quote_strings && is_string && col.is_valid(row) {
                format!("{text:?}")
            } else {
                text
            }
        }
        _ => "?".to_string(),
    }
}

/// The time in row `row` of a time column for people, in ISO 8601 (see
/// [`crate::time::format_time`]); `null` for a null; `int_unit` for an integer column.
pub fn format_time_at(col: &dyn Array, row: usize, int_unit: Option<crate::time::IntUnit>) -> String {
    if row >= col.len() || col.is_null(row) {
        return "null".to_string();
    }
    let one = arrow::array::make_array(col.to_data().slice(row, 1));
    match time_as_i64(&one, |_| String::new()) {
        Ok(v) if v.is_valid(0) => crate::time::format_time(v.value(0), col.data_type(), int_unit),
        _ => arrow_format(col, row, false),
    }
}

/// A key for people: its value, or `(a, b)` for a composite key (see [`format_value`]).
pub fn format_key(cols: &[ArrayRef], row: usize, quote_strings: bool) -> String {
    let parts: Vec<String> = cols.iter().map(|c| format_value(c.as_ref(), row, quote_strings)).collect();
    match parts.as_slice() {
        [one] => one.clone(),
        _ => format!("({})", parts.join(", ")),
    }
}
