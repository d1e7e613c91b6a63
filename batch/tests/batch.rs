//! In-process tests of `probe-batch`: small probe-row inputs written as Arrow IPC, the stage run
//! through `Config::run`, its decoded output compared with a simple oracle over plain vectors.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    Array, ArrayRef, AsArray, Float32Array, Float64Array, Int32Array, Int64Array, LargeListArray, ListArray,
    StringArray, StructArray, TimestampMicrosecondArray, UInt32Array,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Fields, Int32Type, Int64Type, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use clap::Parser;
use proptest::prelude::*;

use probe_batch::{Args, Config, Report};

const T0: i64 = 1_700_000_000_000_000;
const SEC: i64 = 1_000_000;

/// One measurement: time in µs (None = null), dst, rtt, seq (its identity).
#[derive(Clone, Debug)]
struct M {
    t: Option<i64>,
    dst: Option<String>,
    rtt: Option<f64>,
    seq: i64,
}

/// One probe row: key (addr, port) and its measurements, time ascending, nulls last.
#[derive(Clone, Debug)]
struct Key {
    addr: Option<String>,
    port: i32,
    ms: Vec<M>,
}

fn key(addr: &str, times: &[Option<i64>], first_seq: i64) -> Key {
    let ms = times
        .iter()
        .enumerate()
        .map(|(i, &t)| M {
            t: t.map(|t| T0 + t),
            dst: Some(format!("d{i}")),
            rtt: if i % 3 == 1 { None } else { Some(i as f64 * 0.5) },
            seq: first_seq + i as i64,
        })
        .collect();
    Key { addr: Some(addr.to_string()), port: 0, ms }
}

fn secs(times: &[f64]) -> Vec<Option<i64>> {
    times.iter().map(|&s| Some((s * SEC as f64) as i64)).collect()
}

fn item_fields() -> Fields {
    vec![
        Field::new("event_time", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true),
        Field::new("dst_addr", DataType::Utf8, true),
        Field::new("rtt_ms", DataType::Float64, true),
        Field::new("seq", DataType::Int64, true),
    ]
    .into()
}

fn input_schema(composite: bool, large: bool) -> SchemaRef {
    let item = Arc::new(Field::new_list_field(DataType::Struct(item_fields()), false));
    let mut fields = vec![Field::new("src_addr", DataType::Utf8, true)];
    if composite {
        fields.push(Field::new("port", DataType::Int32, true));
    }
    let list = if large { DataType::LargeList(item) } else { DataType::List(item) };
    fields.push(Field::new("measurements", list, false));
    fields.push(Field::new("split", DataType::Utf8, true));
    Arc::new(Schema::new(fields))
}

fn probe_batch(keys: &[Key], composite: bool, large: bool) -> RecordBatch {
    let all: Vec<&M> = keys.iter().flat_map(|k| &k.ms).collect();
    let values = StructArray::try_new(
        item_fields(),
        vec![
            Arc::new(TimestampMicrosecondArray::from(all.iter().map(|m| m.t).collect::<Vec<_>>()).with_timezone("UTC")),
            Arc::new(StringArray::from(all.iter().map(|m| m.dst.clone()).collect::<Vec<_>>())),
            Arc::new(Float64Array::from(all.iter().map(|m| m.rtt).collect::<Vec<_>>())),
            Arc::new(Int64Array::from(all.iter().map(|m| m.seq).collect::<Vec<_>>())),
        ],
        None,
    )
    .expect("struct");
    let item = Arc::new(Field::new_list_field(DataType::Struct(item_fields()), false));
    let lens = keys.iter().map(|k| k.ms.len());
    let list: ArrayRef = if large {
        Arc::new(LargeListArray::try_new(item, OffsetBuffer::from_lengths(lens), Arc::new(values), None).expect("list"))
    } else {
        Arc::new(ListArray::try_new(item, OffsetBuffer::from_lengths(lens), Arc::new(values), None).expect("list"))
    };
    let mut cols: Vec<ArrayRef> =
        vec![Arc::new(StringArray::from(keys.iter().map(|k| k.addr.clone()).collect::<Vec<_>>()))];
    if composite {
        cols.push(Arc::new(Int32Array::from(keys.iter().map(|k| k.port).collect::<Vec<_>>())));
    }
    cols.push(list);
    cols.push(Arc::new(StringArray::from(vec![Some("train"); keys.len()])));
    RecordBatch::try_new(input_schema(composite, large), cols).expect("batch")
}

fn write(path: &Path, schema: SchemaRef, batches: &[RecordBatch]) {
    probe_core::testing::write_file(path, schema, batches).expect("write input");
}

/// Write keys as an IPC stream of batches of `per_batch` keys.
fn write_keys(path: &Path, keys: &[Key], per_batch: usize, composite: bool, large: bool) {
    let batches: Vec<RecordBatch> = keys.chunks(per_batch.max(1)).map(|c| probe_batch(c, composite, large)).collect();
    write(path, input_schema(composite, large), &batches);
}

fn read(path: &Path) -> (SchemaRef, Vec<RecordBatch>) {
    probe_core::testing::read_batches(&[path]).expect("read output")
}

fn config(input: &Path, output: &Path) -> Config {
    Config::new(vec![input.display().to_string()], Some(output.to_path_buf()))
}

fn run(cfg: &Config) -> (Report, SchemaRef, Vec<RecordBatch>) {
    let report = cfg.run().expect("probe-batch run");
    let (schema, batches) = read(cfg.output.as_deref().expect("output path"));
    (report, schema, batches)
}

fn run_err(cfg: &Config) -> String {
    match cfg.run() {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

/// One output row, decoded.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    addr: Option<String>,
    port: Option<i32>,
    window: u32,
    start: i64,
    end: i64,
    length: u32,
    times: Vec<i64>,
    dst: Vec<Option<String>>,
    rtt: Vec<Option<f64>>,
    seq: Vec<i64>,
    dt: Option<Vec<f32>>,
}

fn list_value(col: &ArrayRef, row: usize) -> ArrayRef {
    match col.as_list_opt::<i32>() {
        Some(l) => l.value(row),
        None => col.as_list::<i64>().value(row),
    }
}

fn decode(batches: &[RecordBatch]) -> Vec<Row> {
    let mut rows = Vec::new();
    for b in batches {
        let col = |n: &str| b.column_by_name(n).cloned().unwrap_or_else(|| panic!("no column {n}"));
        let addr = col("src_addr");
        let addr = addr.as_string::<i32>();
        let port = b.column_by_name("port").map(|c| c.as_primitive::<Int32Type>().clone());
        let window = col("window");
        let start = col("start_time");
        let end = col("end_time");
        let length = col("length");
        let (times, dst, rtt, seq) = (col("event_time"), col("dst_addr"), col("rtt_ms"), col("seq"));
        let dt = b.column_by_name("dt").cloned();
        for r in 0..b.num_rows() {
            let ts = list_value(&times, r);
            let ts = ts.as_any().downcast_ref::<TimestampMicrosecondArray>().expect("timestamps");
            let d = list_value(&dst, r);
            let rt = list_value(&rtt, r);
            let sq = list_value(&seq, r);
            rows.push(Row {
                addr: addr.is_valid(r).then(|| addr.value(r).to_string()),
                port: port.as_ref().map(|p| p.value(r)),
                window: window.as_any().downcast_ref::<UInt32Array>().expect("window").value(r),
                start: start.as_any().downcast_ref::<TimestampMicrosecondArray>().expect("start").value(r),
                end: end.as_any().downcast_ref::<TimestampMicrosecondArray>().expect("end").value(r),
                length: length.as_any().downcast_ref::<UInt32Array>().expect("length").value(r),
                times: ts.values().to_vec(),
                dst: d.as_string::<i32>().iter().map(|s| s.map(str::to_string)).collect(),
                rtt: rt.as_primitive::<arrow::datatypes::Float64Type>().iter().collect(),
                seq: sq.as_primitive::<Int64Type>().values().to_vec(),
                dt: dt.as_ref().map(|c| {
                    let v = list_value(c, r);
                    v.as_any().downcast_ref::<Float32Array>().expect("dt").values().to_vec()
                }),
            });
        }
    }
    rows
}

/// The options the oracle follows.
#[derive(Debug, Clone, Copy)]
struct Params {
    min_len: usize,
    max_gap_s: Option<u64>,
    max_len: Option<usize>,
    stride: Option<usize>,
    delta: bool,
}

impl Params {
    fn apply(&self, cfg: &mut Config) {
        cfg.min_len = self.min_len;
        cfg.max_gap = self.max_gap_s.map(Duration::from_secs);
        cfg.max_len = self.max_len;
        cfg.stride = self.stride;
        cfg.delta_time = self.delta;
    }
}

/// What the output should be, computed the plain way: candidate windows at every multiple of
/// the stride, minus those ending where the one before ended (they lie inside it), minus the
/// short ones.
fn oracle(keys: &[Key], p: &Params, composite: bool) -> (Vec<Row>, u64, u64) {
    let mut rows = Vec::new();
    let mut keys_short = 0;
    let mut sessions_total = 0;
    for k in keys {
        let timed: Vec<&M> = k.ms.iter().filter(|m| m.t.is_some()).collect();
        if timed.len() < p.min_len {
            keys_short += 1;
            continue;
        }
        let mut sessions: Vec<Vec<&M>> = Vec::new();
        for m in timed {
            let t = m.t.unwrap_or_default();
            match sessions.last_mut() {
                Some(s) if p.max_gap_s.is_none_or(|g| t - s[s.len() - 1].t.unwrap_or_default() <= g as i64 * SEC) => {
                    s.push(m)
                }
                _ => sessions.push(vec![m]),
            }
        }
        sessions_total += sessions.len() as u64;
        let mut index = 0;
        for s in &sessions {
            let l = s.len();
            let m = p.max_len.unwrap_or(l);
            let st = p.stride.unwrap_or(m);
            let mut cands: Vec<(usize, usize)> =
                (0..).map(|i| i * st).take_while(|&a| a < l).map(|a| (a, (a + m).min(l))).collect();
            cands.dedup_by(|later, earlier| later.1 == earlier.1);
            for (a, b) in cands {
                if b - a < p.min_len {
                    continue;
                }
                let w = &s[a..b];
                let times: Vec<i64> = w.iter().map(|m| m.t.unwrap_or_default()).collect();
                let dt = p.delta.then(|| {
                    let mut d = vec![0f32];
                    d.extend(times.windows(2).map(|x| ((x[1] - x[0]) as f64 / 1e6) as f32));
                    d
                });
                rows.push(Row {
                    addr: k.addr.clone(),
                    port: composite.then_some(k.port),
                    window: index,
                    start: times[0],
                    end: times[times.len() - 1],
                    length: w.len() as u32,
                    dst: w.iter().map(|m| m.dst.clone()).collect(),
                    rtt: w.iter().map(|m| m.rtt).collect(),
                    seq: w.iter().map(|m| m.seq).collect(),
                    times,
                    dt,
                });
                index += 1;
            }
        }
    }
    (rows, keys_short, sessions_total)
}

fn arb_keys() -> impl Strategy<Value = Vec<Key>> {
    let one = (
        proptest::option::weighted(0.9, "[a-c]{1,2}"),
        0..3i32,
        proptest::collection::vec(prop_oneof![Just(0i64), 1..40i64, 100..300i64], 0..25),
        prop_oneof![4 => Just(0usize), 1 => 1..3usize],
        any::<bool>(),
    );
    proptest::collection::vec(one, 0..16).prop_map(|ks| {
        let mut seq = 0;
        ks.into_iter()
            .map(|(addr, port, steps, nulls, null_list)| {
                let mut t = T0;
                let mut ms: Vec<M> = Vec::new();
                // An empty list stays empty (written as an empty, not null, list).
                let nulls = if steps.is_empty() && null_list { 0 } else { nulls };
                for (i, s) in steps.iter().enumerate() {
                    t += s * SEC;
                    ms.push(M {
                        t: Some(t),
                        dst: (i % 4 != 3).then(|| format!("10.0.0.{i}")),
                        rtt: (i % 5 != 2).then_some(i as f64 + 0.25),
                        seq,
                    });
                    seq += 1;
                }
                for _ in 0..nulls {
                    ms.push(M { t: None, dst: Some("null-time".into()), rtt: None, seq });
                    seq += 1;
                }
                Key { addr, port, ms }
            })
            .collect()
    })
}

fn arb_params() -> impl Strategy<Value = Params> {
    (
        1..4usize,
        proptest::option::of(1..150u64),
        proptest::option::of(1..9usize),
        proptest::option::of(1..9usize),
        any::<bool>(),
    )
        .prop_map(|(min_len, max_gap_s, max_len, stride, delta)| Params {
            min_len,
            max_gap_s,
            // --min-len above --max-len is a usage error (it would drop every window).
            max_len: max_len.map(|m| m.max(min_len)),
            stride: match (max_len, stride) {
                (Some(m), Some(s)) => Some(s.min(m)),
                _ => None,
            },
            delta,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn matches_the_oracle(
        keys in arb_keys(),
        p in arb_params(),
        per_batch in 1..6usize,
        batch_bytes in prop_oneof![Just(64usize), Just(2048usize), Just(8usize << 20)],
        composite in any::<bool>(),
        large in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let input = dir.path().join("in.arrows");
        let setup = |keys: &[Key]| {
            write_keys(&input, keys, per_batch, composite, large);
            let mut cfg = config(&input, &dir.path().join("out1.arrows"));
            p.apply(&mut cfg);
            if composite {
                cfg.keys = vec!["src_addr".into(), "port".into()];
            }
            cfg
        };
        // The generated keys may repeat: then the run is an error naming two rows (one row per
        // key here) that hold one key; the rest of the test runs on each key's first row.
        let ident = |k: &Key| (k.addr.clone(), if composite { k.port } else { 0 });
        let mut seen = std::collections::HashSet::new();
        if keys.iter().any(|k| !seen.insert(ident(k))) {
            let msg = run_err(&setup(&keys));
            let rows: Vec<usize> = msg
                .split("row ")
                .skip(1)
                .map(|t| t.split(|c: char| !c.is_ascii_digit()).next().unwrap_or("").parse().expect("a row number"))
                .collect();
            prop_assert!(msg.contains("have the same key"), "{}", msg);
            prop_assert_eq!(rows.len(), 2, "{}", msg);
            prop_assert!(rows[0] < rows[1], "{}", msg);
            prop_assert_eq!(ident(&keys[rows[0]]), ident(&keys[rows[1]]), "{}", msg);
            prop_assert!(!dir.path().join("out1.arrows").exists());
        }
        let mut seen = std::collections::HashSet::new();
        let keys: Vec<Key> = keys.into_iter().filter(|k| seen.insert(ident(k))).collect();
        let mut cfg = setup(&keys);
        cfg.batch_bytes = batch_bytes;
        cfg.threads = 1;
        let (report1, schema1, out1) = run(&cfg);
        cfg.threads = 4;
        cfg.output = Some(dir.path().join("out4.arrows"));
        let (report4, schema4, out4) = run(&cfg);

        // Identical output whatever the worker count: same batches, same values.
        prop_assert_eq!(&schema1, &schema4);
        prop_assert_eq!(&out1, &out4);
        prop_assert_eq!(&report1, &report4);

        let rows = decode(&out1);
        let (expected, keys_short, sessions) = oracle(&keys, &p, composite);
        prop_assert_eq!(&rows, &expected);

        let s = report1.stats;
        prop_assert_eq!(report1.rows, expected.len() as u64);
        prop_assert_eq!(s.windows, expected.len() as u64);
        prop_assert_eq!(s.keys_in, keys.len() as u64);
        prop_assert_eq!(s.keys_short, keys_short);
        prop_assert_eq!(s.sessions, sessions);
        prop_assert_eq!(s.measurements_in, keys.iter().map(|k| k.ms.len() as u64).sum::<u64>());
        prop_assert_eq!(s.null_times, keys.iter().flat_map(|k| &k.ms).filter(|m| m.t.is_none()).count() as u64);
        prop_assert_eq!(s.measurements_out, rows.iter().map(|r| r.length as u64).sum::<u64>());

        for r in &rows {
            prop_assert!(r.length >= 1 && r.length as usize >= p.min_len);
            prop_assert_eq!(r.length as usize, r.times.len());
            if let Some(m) = p.max_len {
                prop_assert!(r.length as usize <= m, "window of {} > max-len {}", r.length, m);
            }
        }
        // Nothing dropped: the windows of each key, concatenated, are its timed measurements.
        if p.max_gap_s.is_none() && p.stride == p.max_len && p.min_len == 1 {
            let got: Vec<i64> = rows.iter().flat_map(|r| r.seq.clone()).collect();
            let want: Vec<i64> = keys.iter().flat_map(|k| &k.ms).filter(|m| m.t.is_some()).map(|m| m.seq).collect();
            prop_assert_eq!(got, want);
        }
    }
}

fn seqs(rows: &[Row]) -> Vec<Vec<i64>> {
    rows.iter().map(|r| r.seq.clone()).collect()
}

#[test]
fn gaps_cut_sessions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.arrows");
    let k = key("a", &secs(&[0.0, 10.0, 40.0, 100.0, 105.0, 500.0]), 0);
    write_keys(&input, &[k], 1, false, false);
    let mut cfg = config(&input, &dir.path().join("out.arrows"));
    cfg.max_gap = Some(Duration::from_secs(30));
    let (report, _, out) = run(&cfg);
    let rows = decode(&out);
    // 10 -> 40 is exactly 30 s: the same session.
    assert_eq!(seqs(&rows), vec![vec![0, 1, 2], vec![3, 4], vec![5]]);
    assert_eq!(rows.iter().map(|r| r.window).collect::<Vec<_>>(), vec![0, 1, 2]);
    assert_eq!(rows[1].start, T0 + 100 * SEC);
    assert_eq!(rows[1].end, T0 + 105 * SEC);
    assert_eq!(report.stats.sessions, 3);
}

#[test]
fn stride_gives_overlapping_windows_ending_at_the_session_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.arrows");
    let times: Vec<f64> = (0..10).map(f64::from).collect();
    write_keys(&input, &[key("a", &secs(&times), 0)], 1, false, false);
    let mut cfg = config(&input, &dir.path().join("out.arrows"));
    cfg.max_len = Some(4);
    cfg.stride = Some(2);
    let (_, _, out) = run(&cfg);
    let rows = decode(&out);
    assert_eq!(seqs(&rows), vec![vec![0, 1, 2, 3], vec![2, 3, 4, 5], vec![4, 5, 6, 7], vec![6, 7, 8, 9]]);
    assert_eq!(rows.iter().map(|r| r.window).collect::<Vec<_>>(), vec![0, 1, 2, 3]);
}

#[test]
fn min_len_drops_keys_and_windows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.arrows");
    let keys = [
        key("one", &secs(&[0.0]), 0),
        key("two", &secs(&[0.0, 1.0]), 10),
        key("five", &secs(&[0.0, 1.0, 2.0, 3.0, 4.0]), 20),
        // Two timed measurements and a null time: short for --min-len 3.
        key("nulls", &[Some(0), Some(SEC), None], 30),
    ];
    write_keys(&input, &keys, 2, false, false);
    let mut cfg = config(&input, &dir.path().join("out.arrows"));
    cfg.min_len = 2;
    cfg.max_len = Some(2);
    let (report, _, out) = run(&cfg);
    let rows = decode(&out);
    assert_eq!(seqs(&rows), vec![vec![10, 11], vec![20, 21], vec![22, 23], vec![30, 31]]);
    assert_eq!(report.stats.keys_short, 1);
    assert_eq!(report.stats.windows_short, 1);
    assert_eq!(report.stats.null_times, 1);

    cfg.min_len = 3;
    cfg.max_len = None;
    let (report, _, out) = run(&cfg);
    assert_eq!(seqs(&decode(&out)), vec![vec![20, 21, 22, 23, 24]]);
    assert_eq!(report.stats.keys_short, 3);
}

#[test]
fn delta_time_in_seconds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.arrows");
    write_keys(&input, &[key("a", &secs(&[0.0, 1.5, 1.5, 4.0, 4.000001]), 0)], 1, false, false);
    let mut cfg = config(&input, &dir.path().join("out.arrows"));
    cfg.delta_time = true;
    cfg.max_len = Some(3);
    cfg.stride = Some(2);
    let (_, schema, out) = run(&cfg);
    assert_eq!(
        schema.field_with_name("dt").expect("dt").data_type(),
        &DataType::List(Arc::new(Field::new_list_field(DataType::Float32, false)))
    );
    let rows = decode(&out);
    let dts: Vec<Vec<f32>> = rows.iter().filter_map(|r| r.dt.clone()).collect();
    assert_eq!(dts, vec![vec![0.0, 1.5, 0.0], vec![0.0, 2.5, 0.000001]]);
}

#[test]
fn output_schema_layout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.arrows");
    write_keys(&input, &[key("a", &secs(&[0.0, 1.0]), 0)], 1, true, false);
    let mut cfg = config(&input, &dir.path().join("out.arrows"));
    cfg.keys = vec!["src_addr".into(), "port".into()];
    let (_, schema, _) = run(&cfg);
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        names,
        ["src_addr", "port", "window", "start_time", "end_time", "length", "event_time", "dst_addr", "rtt_ms", "seq"]
    );
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    assert_eq!(schema.field(3).data_type(), &ts);
    assert_eq!(schema.field(6).data_type(), &DataType::List(Arc::new(Field::new_list_field(ts, true))));
    assert_eq!(schema.field(7).data_type(), &DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))));
}

#[test]
fn composite_keys_pass_through() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.arrows");
    let mut a = key("a", &secs(&[0.0, 1.0, 2.0]), 0);
    a.port = 80;
    let mut b = key("a", &secs(&[5.0]), 10);
    b.port = 443;
    let mut c = key("b", &secs(&[7.0, 8.0]), 20);
    c.addr = None;
    c.port = 80;
    write_keys(&input, &[a, b, c], 2, true, false);
    let mut cfg = config(&input, &dir.path().join("out.arrows"));
    cfg.keys = vec!["src_addr".into(), "port".into()];
    cfg.max_len = Some(2);
    let (_, _, out) = run(&cfg);
    let rows = decode(&out);
    let got: Vec<(Option<String>, Option<i32>, u32)> =
        rows.iter().map(|r| (r.addr.clone(), r.port, r.window)).collect();
    assert_eq!(
        got,
        vec![
            (Some("a".into()), Some(80), 0),
            (Some("a".into()), Some(80), 1),
            (Some("a".into()), Some(443), 0),
            (None, Some(80), 0)
        ]
    );
}

#[test]
fn empty_input_gives_empty_output_with_the_schema() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.arrows");
    write_keys(&input, &[], 1, false, false);
    let cfg = config(&input, &dir.path().join("out.arrows"));
    let (report, schema, out) = run(&cfg);
    assert_eq!(report.rows, 0);
    assert_eq!(out.iter().map(|b| b.num_rows()).sum::<usize>(), 0);
    assert!(schema.field_with_name("event_time").is_ok());

    // Keys whose lists are empty or hold only null times.
    let keys = [key("a", &[], 0), key("b", &[None, None], 0)];
    write_keys(&input, &keys, 2, false, false);
    let (report, _, out) = run(&cfg);
    assert_eq!(out.iter().map(|b| b.num_rows()).sum::<usize>(), 0);
    assert_eq!(report.stats.keys_short, 2);
    assert_eq!(report.stats.null_times, 2);
}

#[test]
fn large_list_input_gives_large_list_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.arrows");
    write_keys(&input, &[key("a", &secs(&[0.0, 1.0, 2.0]), 0)], 1, false, true);
    let mut cfg = config(&input, &dir.path().join("out.arrows"));
    cfg.max_len = Some(2);
    let (_, schema, out) = run(&cfg);
    assert!(matches!(schema.field_with_name("seq").expect("seq").data_type(), DataType::LargeList(_)));
    assert_eq!(seqs(&decode(&out)), vec![vec![0, 1], vec![2]]);
}

#[test]
fn parquet_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.arrows");
    write_keys(&input, &[key("a", &secs(&[0.0, 1.0, 2.0]), 0), key("b", &secs(&[3.0]), 3)], 1, false, false);
    let mut cfg = config(&input, &dir.path().join("out.parquet"));
    cfg.max_len = Some(2);
    cfg.delta_time = true;
    let (_, _, out) = run(&cfg);
    assert_eq!(seqs(&decode(&out)), vec![vec![0, 1], vec![2], vec![3]]);
}

#[test]
fn several_inputs_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = dir.path().join("a.arrows");
    let b = dir.path().join("b.arrows");
    write_keys(&a, &[key("a", &secs(&[0.0, 1.0]), 0)], 1, false, false);
    write_keys(&b, &[key("b", &secs(&[0.0]), 10)], 1, false, false);
    let mut cfg = config(&a, &dir.path().join("out.arrows"));
    cfg.inputs.push(b.display().to_string());
    let (_, _, out) = run(&cfg);
    assert_eq!(seqs(&decode(&out)), vec![vec![0, 1], vec![10]]);
}

/// Key `id: Int64`, list column `m` of struct<ts: Int64 (ms), FIELD: Int32>, one key with times
/// 0, 1000, 3500.
fn write_int_input(path: &Path, field: &str) {
    let fields: Fields = vec![Field::new("ts", DataType::Int64, true), Field::new(field, DataType::Int32, true)].into();
    let values = StructArray::try_new(
        fields.clone(),
        vec![Arc::new(Int64Array::from(vec![0, 1000, 3500])), Arc::new(Int32Array::from(vec![1, 2, 3]))],
        None,
    )
    .expect("struct");
    let item = Arc::new(Field::new_list_field(DataType::Struct(fields), false));
    let list = ListArray::try_new(item.clone(), OffsetBuffer::from_lengths([3]), Arc::new(values), None).expect("list");
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("m", DataType::List(item), false),
    ]));
    let batch =
        RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![7])), Arc::new(list)]).expect("batch");
    write(path, schema, &[batch]);
}

/// Integer time field with --time-unit ms.
#[test]
fn integer_times_with_a_unit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.arrows");
    write_int_input(&input, "v");
    let out_path = dir.path().join("out.arrows");
    let args = [
        "probe-batch",
        input.to_str().expect("utf-8 path"),
        "-o",
        out_path.to_str().expect("utf-8 path"),
        "--key",
        "id",
        "--measurements",
        "m",
        "--time",
        "ts",
        "--time-unit",
        "ms",
        "--max-gap",
        "2s",
        "--delta-time",
        "-q",
    ];
    let cfg = Args::try_parse_from(args).expect("args").into_config().expect("config");
    let (report, schema, out) = run(&cfg);
    assert_eq!(report.stats.sessions, 2);
    assert_eq!(schema.field_with_name("start_time").expect("start").data_type(), &DataType::Int64);
    let b = &out[0];
    let ts = b.column_by_name("ts").expect("ts");
    assert_eq!(list_value(ts, 0).as_primitive::<Int64Type>().values().to_vec(), vec![0, 1000]);
    assert_eq!(list_value(ts, 1).as_primitive::<Int64Type>().values().to_vec(), vec![3500]);
    let dt = b.column_by_name("dt").expect("dt");
    assert_eq!(
        list_value(dt, 0).as_any().downcast_ref::<Float32Array>().expect("f32").values().to_vec(),
        vec![0.0, 1.0]
    );

    // A timestamp field carries its unit: --time-unit is refused.
    let input2 = dir.path().join("ts.arrows");
    write_keys(&input2, &[key("a", &secs(&[0.0]), 0)], 1, false, false);
    let mut cfg = config(&input2, &out_path);
    cfg.time_unit = Some(probe_batch::window::IntUnit::Millisecond);
    assert!(run_err(&cfg).contains("--time-unit"));
}

#[test]
fn times_out_of_order_or_nulls_in_between_are_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.arrows");
    let out = dir.path().join("out.arrows");
    write_keys(&input, &[key("ok", &secs(&[0.0]), 0), key("bad", &secs(&[0.0, 2.0, 1.0]), 0)], 1, false, false);
    let msg = run_err(&config(&input, &out));
    assert!(msg.contains("in.arrows") && msg.contains("row 1") && msg.contains("key \"bad\""), "{msg}");
    assert!(msg.contains("ascend"), "{msg}");
    assert!(!out.exists(), "a failed run leaves no output");

    write_keys(&input, &[key("gap", &[Some(0), None, Some(SEC)], 0)], 1, false, false);
    let msg = run_err(&config(&input, &out));
    assert!(msg.contains("key \"gap\"") && msg.contains("null times must come last"), "{msg}");
}

#[test]
fn schema_errors_name_the_column_and_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.arrows");
    let out = dir.path().join("out.arrows");
    write_keys(&input, &[key("a", &secs(&[0.0]), 0)], 1, false, false);

    let mut cfg = config(&input, &out);
    cfg.keys = vec!["nope".into()];
    let msg = run_err(&cfg);
    assert!(msg.contains("`nope`") && msg.contains("in.arrows"), "{msg}");

    let mut cfg = config(&input, &out);
    cfg.measurements = "split".into();
    let msg = run_err(&cfg);
    assert!(msg.contains("`split`") && msg.contains("list of structs") && msg.contains("in.arrows"), "{msg}");

    let mut cfg = config(&input, &out);
    cfg.time = Some("when".into());
    let msg = run_err(&cfg);
    assert!(msg.contains("`when`") && msg.contains("--time") && msg.contains("in.arrows"), "{msg}");

    let mut cfg = config(&input, &out);
    cfg.time = Some("dst_addr".into());
    let msg = run_err(&cfg);
    assert!(msg.contains("`dst_addr`") && msg.contains("Utf8"), "{msg}");

    let mut cfg = config(&input, &out);
    cfg.keys = vec!["seq".into()];
    cfg.delta_time = true;
    let msg = run_err(&cfg);
    assert!(msg.contains("no column `seq`"), "{msg}");

    // A measurement field named like an added column.
    write_int_input(&input, "window");
    let mut cfg = config(&input, &out);
    cfg.keys = vec!["id".into()];
    cfg.measurements = "m".into();
    cfg.time = Some("ts".into());
    let msg = run_err(&cfg);
    assert!(msg.contains("`window`") && msg.contains("twice"), "{msg}");
}

#[test]
fn option_checks() {
    let parse = |extra: &[&str]| {
        let mut args = vec!["probe-batch", "in.arrows", "-o", "out.arrows"];
        args.extend_from_slice(extra);
        Args::try_parse_from(args).map_err(|e| e.to_string()).and_then(|a| a.into_config().map_err(|e| e.to_string()))
    };
    let err = |extra: &[&str]| match parse(extra) {
        Ok(_) => panic!("{extra:?} should be refused"),
        Err(e) => e,
    };
    assert!(err(&["--stride", "2"]).contains("--stride needs --max-len"));
    assert!(err(&["--max-len", "2", "--stride", "3"]).contains("larger than --max-len"));
    assert!(err(&["--max-len", "0"]).contains("--max-len must be at least 1"));
    assert!(err(&["--max-len", "2", "--stride", "0"]).contains("--stride must be at least 1"));
    assert!(err(&["--min-len", "0"]).contains("--min-len"));
    assert!(err(&["--max-gap", "soon"]).contains("not a duration"));
    let cfg = parse(&["--max-len", "512", "--max-gap", "30m", "-j", "3"]).expect("valid");
    assert_eq!(cfg.stride, Some(512));
    assert_eq!(cfg.max_gap, Some(Duration::from_secs(1800)));
    assert_eq!(cfg.threads, 3);
}

#[test]
fn help_ends_with_the_example() {
    use clap::CommandFactory;
    let help = Args::command().render_long_help().to_string();
    assert!(help
        .trim_end()
        .ends_with("probe-batch work/train.arrows --max-len 512 --max-gap 30m -o work/train-rows.arrows"));
    for opt in
        ["--max-gap", "--max-len", "--stride", "--min-len", "--delta-time", "--threads", "--workers", "--measurements"]
    {
        assert!(help.contains(opt), "{opt} missing from --help");
    }
}

#[test]
fn paths_are_reported_for_missing_inputs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing: PathBuf = dir.path().join("missing.arrows");
    let msg = run_err(&config(&missing, &dir.path().join("out.arrows")));
    assert!(msg.contains("missing.arrows"), "{msg}");
}
