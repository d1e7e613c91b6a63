//! Checks on the key and time columns, shared by every stage that orders or groups rows.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Int64Array};
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

/// Whether a column type can be the time column: its values are read as i64.
pub fn check_time_type(field: &Field, file: &str) -> Result<()> {
    use DataType::*;
    match field.data_type() {
        Timestamp(_, _) | Date32 | Date64 | Int64 | Int32 | UInt32 | Int16 | Time64(_) | Time32(_) | Duration(_) => {
            Ok(())
        }
        other => Err(Error::data(format!(
            "{file}: time column `{}` has type {other}; it must be a timestamp, date or integer column \
             (pass --time with the right column, or cast it when exporting)",
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

/// The time column's values as i64 (timestamps in their own unit, dates as days or ms).
pub fn time_as_i64(col: &ArrayRef) -> Result<Int64Array> {
    let data_type = col.data_type().clone();
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
    Ok(arr)
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

/// A key for people: its value, or `(a, b)` for a composite key (see [`format_value`]).
pub fn format_key(cols: &[ArrayRef], row: usize, quote_strings: bool) -> String {
    let parts: Vec<String> = cols.iter().map(|c| format_value(c.as_ref(), row, quote_strings)).collect();
    match parts.as_slice() {
        [one] => one.clone(),
        _ => format!("({})", parts.join(", ")),
    }
}
