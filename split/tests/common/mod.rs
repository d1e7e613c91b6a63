//! Test helpers: synthetic probe rows, writing them to files, running the stage, reading back.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Float64Array, Int32Array, ListArray, StringArray, StructArray, TimestampMicrosecondArray,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use probe_core::Result;
use probe_split::{Config, Mode, SplitFormat, SplitSpec};

pub fn item_fields() -> Fields {
    Fields::from(vec![
        Field::new("event_time", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        Field::new("rtt_ms", DataType::Float64, true),
    ])
}

pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("src_addr", DataType::Utf8, true),
        Field::new(
            "measurements",
            DataType::List(Arc::new(Field::new_list_field(DataType::Struct(item_fields()), false))),
            false,
        ),
        Field::new("note", DataType::Int32, true),
    ]))
}

/// Probe rows for the given keys; key i gets `1 + i % 5` measurements.
pub fn probe_rows(keys: &[String], first_index: usize) -> RecordBatch {
    let mut offsets = vec![0i32];
    let (mut times, mut rtts) = (Vec::new(), Vec::new());
    for (n, _) in keys.iter().enumerate() {
        let i = first_index + n;
        let len = 1 + i % 5;
        for j in 0..len {
            times.push((i * 1000 + j) as i64);
            rtts.push(i as f64 + j as f64 / 10.0);
        }
        offsets.push(offsets[offsets.len() - 1] + len as i32);
    }
    let items = StructArray::new(
        item_fields(),
        vec![Arc::new(TimestampMicrosecondArray::from(times)) as ArrayRef, Arc::new(Float64Array::from(rtts))],
        None,
    );
    let list = ListArray::new(
        Arc::new(Field::new_list_field(DataType::Struct(item_fields()), false)),
        OffsetBuffer::new(offsets.into()),
        Arc::new(items),
        None,
    );
    let notes: Int32Array = (0..keys.len()).map(|n| Some((first_index + n) as i32)).collect();
    RecordBatch::try_new(schema(), vec![Arc::new(StringArray::from_iter_values(keys)), Arc::new(list), Arc::new(notes)])
        .expect("test batch")
}

pub fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256)).collect()
}

pub use probe_core::testing::{read_all, write_file as write};

pub fn config(inputs: &[&Path], mode: Mode, ratios: &[(&str, f64)], seed: u64) -> Config {
    Config {
        inputs: inputs.iter().map(|p| p.display().to_string()).collect(),
        mode,
        keys: vec!["src_addr".into()],
        splits: ratios.iter().map(|(n, r)| SplitSpec { name: n.to_string(), ratio: *r }).collect(),
        seed,
        measurements: "measurements".into(),
        compression: probe_core::output::parse_compression("zstd").expect("zstd"),
        ipc_compression: None,
        row_group_bytes: 128 << 20,
        batch_bytes: 8 << 20,
        quiet: true,
        threads: 0,
    }
}

pub fn out_dir(dir: &Path) -> Mode {
    Mode::OutDir { dir: dir.to_path_buf(), format: SplitFormat::Arrows }
}

/// key -> split name, from the files of an --out-dir run.
pub fn assignment(dir: &Path, names: &[&str], ext: &str) -> Result<std::collections::BTreeMap<String, String>> {
    let mut map = std::collections::BTreeMap::new();
    for name in names {
        let b = read_all(&[dir.join(format!("{name}.{ext}"))])?;
        let k = b.column(0).as_any().downcast_ref::<StringArray>().expect("utf8 key");
        for i in 0..k.len() {
            let prev = map.insert(k.value(i).to_string(), name.to_string());
            assert!(prev.is_none(), "key {} in two splits", k.value(i));
        }
    }
    Ok(map)
}
