//! The measurement table most end-to-end tests write: `src_addr` (key), `event_time`
//! (µs, UTC), `dst_addr`, `rtt_ms`, `seq` (the row's identity, to check ties and order),
//! built from plain tuples and decoded to oracle values.

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;

use crate::oracle::Val;

/// One measurement: (key, time, dst, rtt, seq).
pub type Row = (Option<String>, Option<i64>, Option<String>, Option<f64>, i64);

/// Columns: src_addr (key), event_time, dst_addr, rtt_ms, seq.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("src_addr", DataType::Utf8, true),
        Field::new("event_time", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true),
        Field::new("dst_addr", DataType::Utf8, true),
        Field::new("rtt_ms", DataType::Float64, true),
        Field::new("seq", DataType::Int64, false),
    ]))
}

/// The rows as one batch of [`schema`].
pub fn batch(rows: &[Row]) -> RecordBatch {
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>())),
        Arc::new(TimestampMicrosecondArray::from(rows.iter().map(|r| r.1).collect::<Vec<_>>()).with_timezone("UTC")),
        Arc::new(StringArray::from(rows.iter().map(|r| r.2.clone()).collect::<Vec<_>>())),
        Arc::new(Float64Array::from(rows.iter().map(|r| r.3).collect::<Vec<_>>())),
        Arc::new(Int64Array::from(rows.iter().map(|r| r.4).collect::<Vec<_>>())),
    ];
    // Columns built to the schema above: a mismatch is a bug in this file.
    #[allow(clippy::expect_used)]
    RecordBatch::try_new(schema(), cols).expect("measurement batch")
}

/// The rows as oracle values, in column order.
pub fn vals(rows: &[Row]) -> Vec<Vec<Val>> {
    rows.iter()
        .map(|r| {
            vec![
                r.0.clone().map_or(Val::Null, Val::S),
                r.1.map_or(Val::Null, Val::I),
                r.2.clone().map_or(Val::Null, Val::S),
                r.3.map_or(Val::Null, Val::F),
                Val::I(r.4),
            ]
        })
        .collect()
}

/// A spec row: (key, time, destination, rtt) as small numbers, `None` for null.
pub type Spec<K> = (Option<K>, Option<i64>, Option<u8>, Option<f64>);

/// Sort rows by (key, time), nulls last, as every stage orders them.
pub fn sort_rows(rows: &mut [Row]) {
    let k = |r: &Row| r.0.clone().map_or(Val::Null, Val::S);
    let t = |r: &Row| r.1.map_or(Val::Null, Val::I);
    rows.sort_by(|a, b| k(a).cmp_nulls_last(&k(b)).then_with(|| t(a).cmp_nulls_last(&t(b))));
}

/// Sorted files from specs (one `Vec` per file): key `k` named by `key_name`, time `t` as
/// microseconds from 2023-11-14, destination `192.0.2.d`; rows numbered across files in spec
/// order (the last column), so ties can be told apart.
pub fn sorted_files<K>(spec: Vec<Vec<Spec<K>>>, key_name: impl Fn(K) -> String) -> Vec<Vec<Row>> {
    let mut seq = 0i64;
    spec.into_iter()
        .map(|f| {
            let mut rows: Vec<Row> = f
                .into_iter()
                .map(|(k, t, d, r)| {
                    seq += 1;
                    (
                        k.map(&key_name),
                        t.map(|t| 1_700_000_000_000_000 + t * 1_000_000),
                        d.map(|d| format!("192.0.2.{d}")),
                        r,
                        seq,
                    )
                })
                .collect();
            sort_rows(&mut rows);
            rows
        })
        .collect()
}
