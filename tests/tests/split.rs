//! probe-split's Parquet outputs, through the real binary: row groups are closed by
//! `--row-group-size`, whatever its value (the writer's own default of 64 MiB used to cap it).
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, ListArray, StringArray};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use parquet::file::reader::{FileReader, SerializedFileReader};

use probe_tests::harness::{encode_ipc, read_file, run};
use probe_tests::oracle::rows;

/// Probe rows of about `mib` MiB: one key per row, a one-element measurements list, and a
/// 1 MiB `blob` payload that makes the size.
fn big_probe_rows(mib: usize) -> (Arc<Schema>, Vec<RecordBatch>) {
    let item = Arc::new(Field::new("item", DataType::Int64, true));
    let schema = Arc::new(Schema::new(vec![
        Field::new("src_addr", DataType::Utf8, true),
        Field::new("measurements", DataType::List(item.clone()), true),
        Field::new("blob", DataType::Utf8, true),
    ]));
    let batches = (0..mib / 8)
        .map(|b| {
            let keys: Vec<String> = (0..8).map(|i| format!("10.0.{b}.{i}")).collect();
            let blobs: Vec<String> = keys.iter().map(|k| format!("{k}:{}", "x".repeat(1 << 20))).collect();
            let list = ListArray::new(
                item.clone(),
                OffsetBuffer::from_lengths([1; 8]),
                Arc::new(Int64Array::from_iter_values(0..8)),
                None,
            );
            let cols: Vec<ArrayRef> =
                vec![Arc::new(StringArray::from(keys)), Arc::new(list), Arc::new(StringArray::from(blobs))];
            RecordBatch::try_new(schema.clone(), cols).unwrap()
        })
        .collect();
    (schema, batches)
}

fn row_groups(path: &Path) -> usize {
    let reader = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    reader.metadata().num_row_groups()
}

/// 96 MiB through one split: one row group under the default 128 MiB, and under an explicit
/// 100 MiB; several under 16 MiB. Every row arrives either way.
#[test]
fn row_group_size_is_honoured_above_64_mib() {
    let dir = tempfile::tempdir().unwrap();
    let (schema, batches) = big_probe_rows(96);
    let input = dir.path().join("rows.arrows");
    std::fs::write(&input, encode_ipc(schema, &batches)).unwrap();
    let want = rows(&batches);
    for (size, groups) in [(None, 1..=1), (Some("100MiB"), 1..=1), (Some("16MiB"), 5..=7)] {
        let out = dir.path().join(format!("out-{}", size.unwrap_or("default")));
        let mut args = vec![
            input.to_str().unwrap(),
            "--out-dir",
            out.to_str().unwrap(),
            "--format",
            "parquet",
            "--compression",
            "none",
            "--ratios",
            "all=1",
            "-q",
        ];
        if let Some(s) = size {
            args.extend(["--row-group-size", s]);
        }
        run("probe-split", &args, None).assert_ok();
        let file = out.join("all.parquet");
        let n = row_groups(&file);
        assert!(groups.contains(&n), "--row-group-size {size:?}: {n} row groups, expected {groups:?}");
        assert_eq!(rows(&read_file(&file).1), want, "--row-group-size {size:?}");
    }
}
