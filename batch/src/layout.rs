//! The input columns `probe-batch` reads, checked against the schema, and the output schema.
//!
//! ```text
//! let layout = Layout::new(&input.schema(), &config, input.name())?;
//! let reader = input.reader(Some(&layout.projection), batch_bytes)?;  // keys..., measurements
//! ```

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};

use probe_core::columns::{check_key_type, check_time_type};
use probe_core::input::column_index;
use probe_core::{Error, Result};

use probe_core::meta::{carried, record, DEFAULT_TIME};

use crate::window::{nanos_per_tick, IntUnit};
use crate::Config;

/// Names of the output columns that do not come from the input.
pub const WINDOW: &str = "window";
/// Time of the window's first measurement.
pub const START_TIME: &str = "start_time";
/// Time of the window's last measurement.
pub const END_TIME: &str = "end_time";
/// Measurements in the window.
pub const LENGTH: &str = "length";
/// Seconds since the previous measurement (`--delta-time`).
pub const DT: &str = "dt";

/// Where the data is in a projected input batch (keys first, the list column last).
#[derive(Debug, Clone)]
pub struct Layout {
    /// Columns to read, in this order: the keys, then the measurements list.
    pub projection: Vec<String>,
    /// Number of key columns.
    pub n_keys: usize,
    /// The measurement list is a LargeList (64-bit offsets); the output lists follow it.
    pub large: bool,
    /// Fields of the measurement struct.
    pub fields: Fields,
    /// Index of the time field in the struct.
    pub time_idx: usize,
    /// Nanoseconds per tick of the time field.
    pub nanos_per_tick: i128,
    /// Type of the time field (for messages).
    pub time_type: DataType,
    /// The unit an integer time field is read in (`--time-unit`, default s); `None` for a
    /// type that carries its own unit.
    pub int_unit: Option<IntUnit>,
    /// Schema of the output batches.
    pub out_schema: SchemaRef,
}

impl Layout {
    /// Check `schema` (of input `file`) against the options and derive the output schema.
    pub fn new(schema: &Schema, config: &Config, file: &str) -> Result<Layout> {
        let mut out_fields: Vec<Field> = Vec::new();
        for k in &config.keys {
            let i = column_index(schema, k, file)?;
            check_key_type(schema.field(i), file)?;
            out_fields.push(schema.field(i).clone().with_nullable(true));
        }
        let m = config.measurements.as_str();
        let Ok(list_idx) = schema.index_of(m) else {
            let have: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            return Err(Error::data(format!(
                "{file}: no column `{m}` (it has: {}); probe-batch reads probe rows as probe-group writes them: \
                 name their list column with --measurements",
                have.join(", ")
            )));
        };
        let list_field = schema.field(list_idx);
        let (item, large) = match list_field.data_type() {
            DataType::List(item) => (item, false),
            DataType::LargeList(item) => (item, true),
            other => return Err(not_struct_list(file, m, other)),
        };
        let DataType::Struct(fields) = item.data_type() else {
            return Err(not_struct_list(file, m, list_field.data_type()));
        };
        let time = config.time.as_deref().unwrap_or(DEFAULT_TIME);
        let Some(time_idx) = fields.iter().position(|f| f.name() == time) else {
            let have: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
            return Err(Error::data(format!(
                "{file}: the `{m}` struct has no field `{time}` (it has: {}); name the time field with --time",
                have.join(", ")
            )));
        };
        let time_field = &fields[time_idx];
        check_time_type(time_field, file)?;
        let Some((nanos_per_tick, is_int)) = nanos_per_tick(time_field.data_type(), config.time_unit) else {
            return Err(Error::data(format!(
                "{file}: time field `{time}` has type {}, which probe-batch cannot read as times",
                time_field.data_type()
            )));
        };
        if config.time_unit.is_some() && !is_int {
            return Err(Error::config(format!(
                "--time-unit applies to integer time fields only; `{time}` in {file} is {}, which carries its own unit; \
                 leave --time-unit out",
                time_field.data_type()
            )));
        }

        let time_type = time_field.data_type().clone();
        out_fields.push(Field::new(WINDOW, DataType::UInt32, false));
        out_fields.push(Field::new(START_TIME, time_type.clone(), false));
        out_fields.push(Field::new(END_TIME, time_type, false));
        out_fields.push(Field::new(LENGTH, DataType::UInt32, false));
        for f in fields.iter() {
            out_fields.push(list_of(f.name(), Field::new_list_field(f.data_type().clone(), f.is_nullable()), large));
        }
        if config.delta_time {
            out_fields.push(list_of(DT, Field::new_list_field(DataType::Float32, false), large));
        }
        for (i, f) in out_fields.iter().enumerate() {
            if out_fields[..i].iter().any(|g| g.name() == f.name()) {
                return Err(Error::data(format!(
                    "{file}: output column `{}` would appear twice (a key column, a field of `{m}` and the columns \
                     probe-batch adds — window, start_time, end_time, length, dt — share one namespace); \
                     rename the field upstream",
                    f.name()
                )));
            }
        }

        let int_unit = is_int.then(|| config.time_unit.unwrap_or(IntUnit::Second));
        let time_type = time_field.data_type().clone();
        // The output keeps what the input records about itself, and records the names used.
        let out_schema = record(Schema::new(out_fields).with_metadata(carried(schema.metadata())), &config.keys, time);
        let mut projection = config.keys.clone();
        projection.push(config.measurements.clone());
        Ok(Layout {
            projection,
            n_keys: config.keys.len(),
            large,
            fields: fields.clone(),
            time_idx,
            nanos_per_tick,
            time_type,
            int_unit,
            out_schema: Arc::new(out_schema),
        })
    }
}

fn list_of(name: &str, item: Field, large: bool) -> Field {
    let item = Arc::new(item);
    let data_type = if large { DataType::LargeList(item) } else { DataType::List(item) };
    Field::new(name, data_type, false)
}

fn not_struct_list(file: &str, column: &str, data_type: &DataType) -> Error {
    Error::data(format!(
        "{file}: column `{column}` has type {data_type}; it must be a list of structs \
         (List<Struct<event_time, ...>>, as probe-group writes); name the right column with --measurements"
    ))
}
