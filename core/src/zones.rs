//! Time zones that arrow-rs drops when it reads second timestamps from Parquet.
//!
//! ```text
//! let meta = zones::restore(ArrowReaderMetadata::load(&file, options)?);  // then build readers from it
//! ```
//!
//! Parquet has no second timestamps, so pyarrow stores a `timestamp[s, tz=Europe/Paris]` column
//! as milliseconds and records the Arrow type in the file's `ARROW:schema` metadata. arrow-rs
//! applies that record only where the units agree: here it reads `timestamp[ms, tz=UTC]`, the
//! same instants with the zone replaced by UTC, and probe-group wrote that zone on (QA). This
//! reads the record itself and puts each recorded zone back on the millisecond column
//! (nested fields too); the values are untouched. A file without the record, or one that does
//! not parse, is read as arrow-rs reads it.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, FieldRef, Fields, Schema};
use base64::Engine;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::file::metadata::ParquetMetaData;

/// `meta` with the recorded time zones put back where arrow-rs dropped them.
pub fn restore(meta: ArrowReaderMetadata) -> ArrowReaderMetadata {
    let Some(recorded) = recorded_schema(meta.metadata()) else {
        return meta;
    };
    let schema = meta.schema();
    let mut changed = false;
    let fields: Vec<FieldRef> = schema
        .fields()
        .iter()
        .map(|f| match recorded.field_with_name(f.name()) {
            Ok(r) => restore_field(f, r, &mut changed),
            Err(_) => f.clone(),
        })
        .collect();
    if !changed {
        return meta;
    }
    let fixed = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    // The page index, if loaded, is in the metadata already: only the schema is new.
    ArrowReaderMetadata::try_new(meta.metadata().clone(), ArrowReaderOptions::new().with_schema(fixed)).unwrap_or(meta)
}

/// The Arrow schema a writer recorded in the file (`ARROW:schema`), if any and readable.
fn recorded_schema(meta: &ParquetMetaData) -> Option<Schema> {
    let kv = meta.file_metadata().key_value_metadata()?;
    let encoded = kv.iter().find(|k| k.key == parquet::arrow::ARROW_SCHEMA_META_KEY)?.value.as_ref()?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).ok()?;
    arrow::ipc::convert::try_schema_from_ipc_buffer(&bytes).ok()
}

fn restore_field(read: &FieldRef, recorded: &Field, changed: &mut bool) -> FieldRef {
    match restore_type(read.data_type(), recorded.data_type(), changed) {
        Some(t) => Arc::new(read.as_ref().clone().with_data_type(t)),
        None => read.clone(),
    }
}

/// The type to read instead of `read`, where `recorded` holds a zone arrow-rs dropped.
fn restore_type(read: &DataType, recorded: &DataType, changed: &mut bool) -> Option<DataType> {
    use DataType::*;
    match (read, recorded) {
        (Timestamp(unit, zone), Timestamp(recorded_unit, Some(recorded_zone)))
            if unit != recorded_unit && zone.as_deref() != Some(recorded_zone.as_ref()) =>
        {
            *changed = true;
            Some(Timestamp(*unit, Some(recorded_zone.clone())))
        }
        (List(f), List(r)) => Some(List(nested(f, r, changed)?)),
        (LargeList(f), LargeList(r)) => Some(LargeList(nested(f, r, changed)?)),
        (FixedSizeList(f, n), FixedSizeList(r, _)) => Some(FixedSizeList(nested(f, r, changed)?, *n)),
        (Struct(fs), Struct(rs)) if fs.len() == rs.len() => {
            let mut any = false;
            let fields: Fields = fs.iter().zip(rs.iter()).map(|(f, r)| restore_field(f, r, &mut any)).collect();
            any.then(|| {
                *changed = true;
                Struct(fields)
            })
        }
        _ => None,
    }
}

/// A list's item field with its zones restored, if any changed.
fn nested(read: &FieldRef, recorded: &FieldRef, changed: &mut bool) -> Option<FieldRef> {
    let mut any = false;
    let f = restore_field(read, recorded, &mut any);
    any.then(|| {
        *changed = true;
        f
    })
}
