//! Fuzzing, in-process, with proptest (runs on stable; see tests/FUZZ.md for longer runs):
//!
//! - the input path of `probe-core`: valid Parquet, Arrow IPC stream and Arrow IPC file bytes,
//!   truncated and mutated at random, go through format detection ([`Input::open`]), the
//!   reader and every batch. Each must end in `Ok` or a clean `Err` naming the file, never a
//!   panic, and every batch it yields must be valid Arrow data;
//! - the grouper: small random inputs (sorted or not, nulls, ties, composite keys, several
//!   key and time types, awkward batch sizes) through `probe_group::Config::run`, compared with
//!   the in-test oracle; unsorted input must be refused with a clean error.
//!
//! `PROPTEST_CASES=5000 cargo test -p probe-tests --test fuzz --release` runs it longer.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use arrow::array::{
    Array, ArrayRef, BinaryArray, Date32Array, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::ipc::writer::{FileWriter, IpcWriteOptions, StreamWriter};
use arrow::ipc::CompressionType;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use proptest::prelude::*;

use probe_core::input::{Input, Source};
use probe_tests::gen::{generate_in_memory, GenConfig};
use probe_tests::oracle::{self, assert_groups_eq, decode_groups, Val};

/// Default number of cases per property; `PROPTEST_CASES` overrides it.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

// ---------------------------------------------------------------------------------------------
// The corpus of valid files the mutations start from.

/// Measurements from the generator (strings, timestamps, floats with nulls, UInt8, Int64).
fn measurements() -> (SchemaRef, Vec<RecordBatch>) {
    let mut cfg = GenConfig::new(2000, "unused");
    cfg.keys = 60;
    cfg.batch_rows = 700;
    let (files, _) = generate_in_memory(&cfg).expect("generate");
    (probe_tests::gen::schema(), files.into_iter().flatten().collect())
}

/// Probe rows (`List<Struct<...>>`), made by the real grouper in-process.
fn probe_rows(dir: &Path, schema: &SchemaRef, batches: &[RecordBatch]) -> Vec<RecordBatch> {
    let input = dir.join("m.arrows");
    std::fs::write(&input, ipc_stream(schema, batches, None)).expect("write");
    let output = dir.join("g.arrows");
    group_config(vec![input.display().to_string()], output.clone()).run().expect("group the corpus");
    let bytes = std::fs::read(&output).expect("read grouped");
    let reader = arrow::ipc::reader::StreamReader::try_new(&bytes[..], None).expect("stream");
    reader.collect::<Result<Vec<_>, _>>().expect("grouped batches")
}

fn parquet_bytes(schema: &SchemaRef, batches: &[RecordBatch], props: WriterProperties) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(&mut buf, schema.clone(), Some(props)).expect("writer");
    for b in batches {
        w.write(b).expect("write");
    }
    w.close().expect("close");
    buf
}

fn ipc_stream(schema: &SchemaRef, batches: &[RecordBatch], compression: Option<CompressionType>) -> Vec<u8> {
    let opts = IpcWriteOptions::default().try_with_compression(compression).expect("options");
    let mut buf = Vec::new();
    let mut w = StreamWriter::try_new_with_options(&mut buf, schema, opts).expect("writer");
    for b in batches {
        w.write(b).expect("write");
    }
    w.finish().expect("finish");
    drop(w);
    buf
}

fn ipc_file(schema: &SchemaRef, batches: &[RecordBatch], compression: Option<CompressionType>) -> Vec<u8> {
    let opts = IpcWriteOptions::default().try_with_compression(compression).expect("options");
    let mut buf = Vec::new();
    let mut w = FileWriter::try_new_with_options(&mut buf, schema, opts).expect("writer");
    for b in batches {
        w.write(b).expect("write");
    }
    w.finish().expect("finish");
    drop(w);
    buf
}

/// Non-default encodings for every leaf column, by physical type: the delta encodings for
/// integers and byte arrays, byte-stream-split for floats.
fn delta_encodings(
    schema: &Schema,
    mut props: parquet::file::properties::WriterPropertiesBuilder,
) -> parquet::file::properties::WriterPropertiesBuilder {
    use parquet::basic::Type;
    let descr = parquet::arrow::ArrowSchemaConverter::new().convert(schema).expect("parquet schema");
    for (i, col) in descr.columns().iter().enumerate() {
        let enc = match col.physical_type() {
            Type::INT32 | Type::INT64 => Encoding::DELTA_BINARY_PACKED,
            Type::BYTE_ARRAY if i % 2 == 0 => Encoding::DELTA_BYTE_ARRAY,
            Type::BYTE_ARRAY => Encoding::DELTA_LENGTH_BYTE_ARRAY,
            Type::FLOAT | Type::DOUBLE => Encoding::BYTE_STREAM_SPLIT,
            _ => continue,
        };
        props = props.set_column_encoding(col.path().clone(), enc);
    }
    props
}

/// Named valid files: every format, several Parquet encodings and compressions, flat and
/// nested data.
fn corpus() -> &'static [(String, Vec<u8>)] {
    static CORPUS: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let (schema, batches) = measurements();
        let grouped = probe_rows(dir.path(), &schema, &batches);
        let gschema = grouped[0].schema();
        let small = |rg: usize| {
            WriterProperties::builder()
                .set_max_row_group_row_count(Some(rg))
                .set_data_page_row_count_limit(97)
                .set_write_batch_size(97)
        };
        let mut out = Vec::new();
        for (name, s, b) in [("flat", &schema, &batches), ("nested", &gschema, &grouped)] {
            out.push((
                format!("{name}.plain.parquet"),
                parquet_bytes(
                    s,
                    b,
                    small(600).set_compression(Compression::UNCOMPRESSED).set_dictionary_enabled(false).build(),
                ),
            ));
            out.push((
                format!("{name}.dict.parquet"),
                parquet_bytes(
                    s,
                    b,
                    small(900)
                        .set_compression(Compression::UNCOMPRESSED)
                        .set_statistics_enabled(EnabledStatistics::Page)
                        .build(),
                ),
            ));
            out.push((
                format!("{name}.v2.parquet"),
                parquet_bytes(
                    s,
                    b,
                    delta_encodings(
                        s,
                        small(1000)
                            .set_writer_version(WriterVersion::PARQUET_2_0)
                            .set_dictionary_enabled(false)
                            .set_compression(Compression::UNCOMPRESSED),
                    )
                    .build(),
                ),
            ));
            out.push((
                format!("{name}.zstd.parquet"),
                parquet_bytes(s, b, small(700).set_compression(Compression::ZSTD(ZstdLevel::default())).build()),
            ));
            out.push((
                format!("{name}.snappy.parquet"),
                parquet_bytes(s, b, small(800).set_compression(Compression::SNAPPY).build()),
            ));
            out.push((format!("{name}.arrows"), ipc_stream(s, b, None)));
            out.push((format!("{name}.lz4.arrows"), ipc_stream(s, b, Some(CompressionType::LZ4_FRAME))));
            out.push((format!("{name}.zstd.arrows"), ipc_stream(s, b, Some(CompressionType::ZSTD))));
            out.push((format!("{name}.arrow"), ipc_file(s, b, None)));
            out.push((format!("{name}.zstd.arrow"), ipc_file(s, b, Some(CompressionType::ZSTD))));
        }
        out
    })
}

// ---------------------------------------------------------------------------------------------
// Mutations.

/// One change to a file's bytes; positions are fractions of the current length so that
/// shrinking keeps them meaningful.
#[derive(Debug, Clone)]
enum Mutation {
    /// Keep only the first `frac` of the bytes.
    Truncate(f64),
    /// XOR one byte with a non-zero mask.
    Flip(f64, u8),
    /// Overwrite `len` bytes with one value (0x00, 0xff, or anything).
    Fill(f64, usize, u8),
    /// Remove `len` bytes.
    Delete(f64, usize),
    /// Insert `len` copies of a byte.
    Insert(f64, usize, u8),
    /// Copy `len` bytes from one place over another.
    Copy(f64, f64, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let frac = 0.0f64..1.0;
    prop_oneof![
        2 => frac.clone().prop_map(Mutation::Truncate),
        6 => (frac.clone(), 1u8..=255).prop_map(|(p, m)| Mutation::Flip(p, m)),
        2 => (frac.clone(), 1usize..64, prop_oneof![Just(0u8), Just(0xff), any::<u8>()])
            .prop_map(|(p, l, v)| Mutation::Fill(p, l, v)),
        1 => (frac.clone(), 1usize..32).prop_map(|(p, l)| Mutation::Delete(p, l)),
        1 => (frac.clone(), 1usize..32, any::<u8>()).prop_map(|(p, l, v)| Mutation::Insert(p, l, v)),
        1 => (frac.clone(), frac, 1usize..64).prop_map(|(a, b, l)| Mutation::Copy(a, b, l)),
    ]
}

fn at(frac: f64, len: usize) -> usize {
    ((frac * len as f64) as usize).min(len.saturating_sub(1))
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let n = bytes.len();
    if n == 0 {
        return;
    }
    match *m {
        Mutation::Truncate(f) => bytes.truncate(at(f, n)),
        Mutation::Flip(f, mask) => bytes[at(f, n)] ^= mask,
        Mutation::Fill(f, len, v) => {
            let p = at(f, n);
            let end = (p + len).min(n);
            bytes[p..end].fill(v);
        }
        Mutation::Delete(f, len) => {
            let p = at(f, n);
            bytes.drain(p..(p + len).min(n));
        }
        Mutation::Insert(f, len, v) => {
            let p = at(f, n);
            bytes.splice(p..p, std::iter::repeat_n(v, len));
        }
        Mutation::Copy(from, to, len) => {
            let (a, b) = (at(from, n), at(to, n));
            let len = len.min(n - a).min(n - b);
            let chunk = bytes[a..a + len].to_vec();
            bytes[b..b + len].copy_from_slice(&chunk);
        }
    }
}

/// Open, read every batch and check each is valid Arrow data. `Err` is a clean failure.
fn read_all(path: &Path, columns: Option<usize>, batch_bytes: usize) -> probe_core::Result<u64> {
    let input = Input::open(&Source::File(path.to_path_buf()))?;
    let schema = input.schema();
    // Every column, or a projection of a few (pushed into the Parquet reader), reordered.
    let names: Option<Vec<String>> = columns.filter(|_| !schema.fields().is_empty()).map(|k| {
        let mut v: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).rev().collect();
        v.truncate(k.clamp(1, v.len()));
        v
    });
    let mut reader = input.reader(names.as_deref(), batch_bytes)?;
    let mut rows = 0u64;
    while let Some(batch) = reader.next_batch()? {
        for (i, c) in batch.columns().iter().enumerate() {
            if let Err(e) = c.to_data().validate_full() {
                panic!(
                    "reader yielded invalid data in column {} of {}: {e}",
                    batch.schema().field(i).name(),
                    path.display()
                );
            }
        }
        rows += batch.num_rows() as u64;
    }
    Ok(rows)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(256), ..ProptestConfig::default() })]

    /// Mutated Parquet / IPC bytes: `Ok` or a clean error that names the file; never a panic.
    #[test]
    fn corrupt_inputs_fail_cleanly(
        which in 0usize..64,
        muts in prop::collection::vec(mutation(), 1..4),
        columns in prop::option::of(1usize..4),
        batch_bytes in prop::sample::select(vec![1usize, 4096, 8 << 20]),
    ) {
        let corpus = corpus();
        let (name, good) = &corpus[which % corpus.len()];
        let mut bytes = good.clone();
        for m in &muts {
            apply(&mut bytes, m);
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        if std::env::var_os("FUZZ_TRACE").is_some() {
            // An abort (a failed huge allocation) cannot be caught: this names the input.
            eprintln!("case: {name} {muts:?} columns {columns:?} batch_bytes {batch_bytes}");
        }
        match read_all(&path, columns, batch_bytes) {
            Ok(_) => {}
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(msg.contains(name.as_str()), "error does not name the file: {msg}");
                prop_assert!(!msg.contains("panicked"), "{msg}");
            }
        }
    }
}

/// What the fuzz found: parquet-rs panics on some corrupt pages (`Num of bytes exceed
/// MAX_VLQ_BYTE_LEN`, `offset + len out of bounds`, `slice index starts at ...`). Flipping each
/// of the first bytes of a delta-encoded file hits several; each must be a clean error.
#[test]
fn parquet_decoder_panics_are_clean_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (name, good) = corpus().iter().find(|(n, _)| n == "flat.v2.parquet").expect("corpus file");
    let path = dir.path().join(name);
    let mut caught = 0;
    for pos in 4..200 {
        for mask in [1u8, 64, 255] {
            let mut bytes = good.clone();
            bytes[pos] ^= mask;
            std::fs::write(&path, &bytes).unwrap();
            if let Err(e) = read_all(&path, None, 8 << 20) {
                let msg = e.to_string();
                assert!(msg.contains(name.as_str()), "{msg}");
                if msg.contains("corrupt Parquet data: the decoder failed") {
                    caught += 1;
                }
            }
        }
    }
    assert!(caught > 0, "no decoder panic was provoked: the test lost its point");
}

/// What the fuzz found: arrow-rs allocates the uncompressed length a compressed IPC buffer
/// declares before decompressing, so a corrupt length aborted the process ("memory allocation
/// of 3328785945153908279 bytes failed"). Each compressed stream and file, with the length of
/// its first compressed buffer set to 32 TiB, must give a clean error instead.
#[test]
fn huge_compressed_ipc_lengths_are_clean_errors() {
    let dir = tempfile::tempdir().unwrap();
    for (name, magic) in [
        ("flat.lz4.arrows", [0x04u8, 0x22, 0x4d, 0x18]),
        ("flat.zstd.arrows", [0x28, 0xb5, 0x2f, 0xfd]),
        ("nested.lz4.arrows", [0x04, 0x22, 0x4d, 0x18]),
        ("flat.zstd.arrow", [0x28, 0xb5, 0x2f, 0xfd]),
    ] {
        let (_, good) = corpus().iter().find(|(n, _)| n == name).expect("corpus file");
        // A compressed buffer: its 8-byte uncompressed length, then the codec's frame magic.
        let at = good.windows(4).position(|w| w == magic).expect("a compressed buffer");
        let mut bytes = good.clone();
        bytes[at - 8..at].copy_from_slice(&(1i64 << 45).to_le_bytes());
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        let msg = read_all(&path, None, 8 << 20).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains(name) && msg.contains("corrupt compressed buffer"), "{name}: {msg}");
    }
}

/// Every file of the corpus reads back completely (so the fuzz starts from valid files).
#[test]
fn corpus_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in corpus() {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let rows = read_all(&path, None, 4096).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(rows > 0, "{name}");
    }
}

/// Every cut of a small IPC stream before its end-of-stream marker is reported as truncated.
#[test]
fn every_cut_of_an_ipc_stream_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let (schema, batches) = measurements();
    let bytes = ipc_stream(&schema, &batches[..1], None);
    let path = dir.path().join("cut.arrows");
    // Every cut inside the stream: the schema message, the batch, the end marker.
    let step = (bytes.len() / 400).max(1);
    for len in (1..bytes.len()).step_by(step).chain([bytes.len() - 4, bytes.len() - 1]) {
        std::fs::write(&path, &bytes[..len]).unwrap();
        let err = read_all(&path, None, 8 << 20)
            .err()
            .unwrap_or_else(|| panic!("a stream cut at {len} of {} was accepted", bytes.len()));
        let msg = err.to_string();
        assert!(msg.contains("cut.arrows") && msg.contains("truncated"), "cut at {len}: {msg}");
    }
}

// ---------------------------------------------------------------------------------------------
// The grouper against the oracle.

fn group_config(inputs: Vec<String>, output: PathBuf) -> probe_group::Config {
    probe_group::Config {
        inputs,
        output: Some(output),
        keys: vec!["src_addr".into()],
        time: Some("event_time".into()),
        columns: None,
        sort: false,
        memory_limit: 64 << 20,
        temp_dir: std::env::temp_dir(),
        compression: Compression::UNCOMPRESSED,
        ipc_compression: None,
        batch_bytes: 8 << 20,
        fan_in: 64,
        quiet: true,
        threads: 0,
        // Key ranges of a few rows (where the inputs are Parquet with statistics), so every key
        // type crosses range edges.
        range_rows: Some(7),
        // Parts of --sort's final merge of a few rows, likewise.
        sort_part_rows: Some(3),
        // Runs of any size overlap (spilled while the next fills).
        sort_overlap_min_run: Some(0),
    }
}

/// Key column types the grouper is fuzzed with: every type the key hash accepts.
#[derive(Debug, Clone, Copy)]
enum KeyType {
    Utf8,
    LargeUtf8,
    Utf8View,
    /// `Dictionary(Int32, Utf8)` whose dictionary is in reverse value order, so ordering by
    /// index instead of value shows.
    Dictionary,
    Int64,
    UInt8,
    /// Values on both sides of 2^63, so a signed comparison shows.
    UInt64,
    Boolean,
    Binary,
    FixedSizeBinary,
    Date32,
    Date64,
    TimestampNsUtc,
}

const KEY_TYPES: [KeyType; 13] = [
    KeyType::Utf8,
    KeyType::LargeUtf8,
    KeyType::Utf8View,
    KeyType::Dictionary,
    KeyType::Int64,
    KeyType::UInt8,
    KeyType::UInt64,
    KeyType::Boolean,
    KeyType::Binary,
    KeyType::FixedSizeBinary,
    KeyType::Date32,
    KeyType::Date64,
    KeyType::TimestampNsUtc,
];

/// String keys of varied lengths with shared prefixes: empty, one byte, a prefix of another,
/// equal up to the last byte, a NUL inside, around Utf8View's 12-byte inline limit, long with a
/// long common prefix, non-ASCII. Their byte order differs from their index order.
fn string_key(k: u8) -> String {
    let long = "x".repeat(40);
    let table = [
        "10.0.0.1".to_string(),
        String::new(),
        "10.0.0.10".into(),
        "1".into(),
        "10.0.0.1\0".into(),
        "2001:db8::1:0".into(), // 13 bytes: stored out of line in a Utf8View
        "2001:db8::10".into(),  // 12 bytes: inline
        format!("{long}b"),
        format!("{long}a"),
        "\u{e9}t\u{e9}".into(),
        "10.0.0.2".into(),
        "2001:db8::1".into(),
    ];
    table[usize::from(k) % table.len()].clone()
}

/// The dictionary of [`KeyType::Dictionary`] keys: every string key, in descending order.
fn dictionary_values() -> Vec<String> {
    let mut v: Vec<String> = (0..12).map(string_key).collect();
    v.sort_by(|a, b| b.as_bytes().cmp(a.as_bytes()));
    v
}

/// Time column types.
#[derive(Debug, Clone, Copy)]
enum TimeType {
    Int64,
    TimestampMs,
    Date32,
    Int32,
}

/// One generated row: key parts, time, payload.
type FRow = (Option<u8>, Option<u8>, Option<i8>, Option<f64>, i64);

fn key_val(k: Option<u8>, t: KeyType) -> Val {
    use KeyType::*;
    let Some(k) = k else { return Val::Null };
    let signed = i64::from(k) - 3;
    match t {
        Utf8 | LargeUtf8 | Utf8View | Dictionary => Val::S(string_key(k)),
        Int64 => Val::I(signed),
        UInt8 => Val::U(u64::from(k) * 20),
        UInt64 => Val::U(if k % 2 == 0 { u64::from(k) } else { u64::MAX - u64::from(k) }),
        Boolean => Val::Bool(k % 2 == 1),
        Binary | FixedSizeBinary => Val::B(vec![k % 3, 255 - k]),
        Date32 => Val::I(signed * 1000),
        Date64 => Val::I(signed * 86_400_000),
        TimestampNsUtc => Val::I(signed * 1_000_000_000_000),
    }
}

fn key_array(vals: &[Val], t: KeyType) -> ArrayRef {
    use arrow::array::{
        BooleanArray, Date64Array, DictionaryArray, FixedSizeBinaryArray, LargeStringArray, StringViewArray,
        TimestampNanosecondArray, UInt64Array, UInt8Array,
    };
    let strs = || vals.iter().map(|v| if let Val::S(s) = v { Some(s.as_str()) } else { None }).collect::<Vec<_>>();
    let ints = || vals.iter().map(|v| if let Val::I(i) = v { Some(*i) } else { None }).collect::<Vec<_>>();
    let uints = || vals.iter().map(|v| if let Val::U(u) = v { Some(*u) } else { None }).collect::<Vec<_>>();
    let bins = || vals.iter().map(|v| if let Val::B(b) = v { Some(b.as_slice()) } else { None }).collect::<Vec<_>>();
    match t {
        KeyType::Utf8 => Arc::new(StringArray::from(strs())),
        KeyType::LargeUtf8 => Arc::new(LargeStringArray::from(strs())),
        KeyType::Utf8View => Arc::new(StringViewArray::from(strs())),
        KeyType::Dictionary => {
            let dict = dictionary_values();
            let idx: Int32Array =
                strs().iter().map(|s| s.and_then(|s| dict.iter().position(|d| d == s)).map(|i| i as i32)).collect();
            Arc::new(DictionaryArray::new(idx, Arc::new(StringArray::from(dict))))
        }
        KeyType::Int64 => Arc::new(Int64Array::from(ints())),
        KeyType::UInt8 => Arc::new(UInt8Array::from(uints().iter().map(|u| u.map(|u| u as u8)).collect::<Vec<_>>())),
        KeyType::UInt64 => Arc::new(UInt64Array::from(uints())),
        KeyType::Boolean => Arc::new(BooleanArray::from(
            vals.iter().map(|v| if let Val::Bool(b) = v { Some(*b) } else { None }).collect::<Vec<_>>(),
        )),
        KeyType::Binary => Arc::new(BinaryArray::from(bins())),
        KeyType::FixedSizeBinary => {
            Arc::new(FixedSizeBinaryArray::try_from_sparse_iter_with_size(bins().into_iter(), 2).expect("2 bytes"))
        }
        KeyType::Date32 => Arc::new(Date32Array::from(ints().iter().map(|i| i.map(|i| i as i32)).collect::<Vec<_>>())),
        KeyType::Date64 => Arc::new(Date64Array::from(ints())),
        KeyType::TimestampNsUtc => Arc::new(TimestampNanosecondArray::from(ints()).with_timezone("UTC")),
    }
}

fn key_type(t: KeyType) -> DataType {
    key_array(&[], t).data_type().clone()
}

fn time_array(vals: &[Option<i8>], t: TimeType) -> (DataType, ArrayRef) {
    let v64 = |f: i64| vals.iter().map(|v| v.map(|x| i64::from(x) * f)).collect::<Vec<_>>();
    match t {
        TimeType::Int64 => (DataType::Int64, Arc::new(Int64Array::from(v64(1)))),
        TimeType::TimestampMs => {
            (DataType::Timestamp(TimeUnit::Millisecond, None), Arc::new(TimestampMillisecondArray::from(v64(1000))))
        }
        TimeType::Date32 => {
            (DataType::Date32, Arc::new(Date32Array::from(vals.iter().map(|v| v.map(i32::from)).collect::<Vec<_>>())))
        }
        TimeType::Int32 => (
            DataType::Int32,
            Arc::new(Int32Array::from(vals.iter().map(|v| v.map(|x| i32::from(x) * 3)).collect::<Vec<_>>())),
        ),
    }
}

fn time_val(v: Option<i8>, t: TimeType) -> Val {
    match v {
        None => Val::Null,
        Some(x) => Val::I(match t {
            TimeType::Int64 | TimeType::Date32 => i64::from(x),
            TimeType::TimestampMs => i64::from(x) * 1000,
            TimeType::Int32 => i64::from(x) * 3,
        }),
    }
}

/// Decoded rows of one input file: key columns, time, payload (v, seq).
fn file_vals(rows: &[FRow], kt: KeyType, tt: TimeType, composite: bool) -> Vec<Vec<Val>> {
    rows.iter()
        .map(|r| {
            let mut v = vec![key_val(r.0, kt)];
            if composite {
                v.push(key_val(r.1, KeyType::Int64));
            }
            v.push(time_val(r.2, tt));
            v.push(r.3.map_or(Val::Null, Val::F));
            v.push(Val::I(r.4));
            v
        })
        .collect()
}

fn sort_vals(rows: &mut [Vec<Val>], n_keys: usize) {
    rows.sort_by(|a, b| {
        (0..=n_keys).map(|i| a[i].cmp_nulls_last(&b[i])).find(|o| o.is_ne()).unwrap_or(std::cmp::Ordering::Equal)
    });
}

/// Columns: key(s), event_time, v, seq.
fn input_schema(kt: KeyType, tt: TimeType, composite: bool) -> SchemaRef {
    let (time_type, _) = time_array(&[], tt);
    let mut fields = vec![Field::new("src_addr", key_type(kt), true)];
    if composite {
        fields.push(Field::new("probe", DataType::Int64, true));
    }
    fields.push(Field::new("event_time", time_type, true));
    fields.push(Field::new("v", DataType::Float64, true));
    fields.push(Field::new("seq", DataType::Int64, false));
    Arc::new(Schema::new(fields))
}

/// Write one file's rows (already as values) as Parquet or IPC, cut into `chunk`-row batches.
#[allow(clippy::too_many_arguments)]
fn write_file(path: &Path, vals: &[Vec<Val>], kt: KeyType, tt: TimeType, composite: bool, parquet: bool, chunk: usize) {
    let n_keys = if composite { 2 } else { 1 };
    let schema = input_schema(kt, tt, composite);
    let batches: Vec<RecordBatch> = vals
        .chunks(chunk.max(1))
        .map(|rows| {
            let col = |i: usize| rows.iter().map(|r| r[i].clone()).collect::<Vec<_>>();
            let mut cols = vec![key_array(&col(0), kt)];
            if composite {
                cols.push(key_array(&col(1), KeyType::Int64));
            }
            let times: Vec<Option<i8>> = col(n_keys)
                .iter()
                .map(|v| match (v, tt) {
                    (Val::I(i), TimeType::TimestampMs) => Some((*i / 1000) as i8),
                    (Val::I(i), TimeType::Int32) => Some((*i / 3) as i8),
                    (Val::I(i), _) => Some(*i as i8),
                    _ => None,
                })
                .collect();
            cols.push(time_array(&times, tt).1);
            cols.push(Arc::new(Float64Array::from(
                col(n_keys + 1)
                    .iter()
                    .map(|v| match v {
                        Val::F(f) => Some(*f),
                        _ => None,
                    })
                    .collect::<Vec<_>>(),
            )));
            cols.push(Arc::new(Int64Array::from(
                col(n_keys + 2)
                    .iter()
                    .map(|v| match v {
                        Val::I(i) => *i,
                        _ => 0,
                    })
                    .collect::<Vec<_>>(),
            )));
            RecordBatch::try_new(schema.clone(), cols).expect("batch")
        })
        .collect();
    if parquet {
        let props = WriterProperties::builder().set_max_row_group_row_count(Some(chunk.max(1))).build();
        std::fs::write(path, parquet_bytes(&schema, &batches, props)).expect("write");
    } else {
        std::fs::write(path, ipc_stream(&schema, &batches, None)).expect("write");
    }
}

fn frow() -> impl Strategy<Value = (Option<u8>, Option<u8>, Option<i8>, Option<f64>)> {
    (
        prop::option::weighted(0.9, 0u8..12),
        prop::option::weighted(0.85, 0u8..3),
        prop::option::weighted(0.85, -3i8..5),
        prop::option::weighted(0.8, -5.0f64..5.0),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(256), ..ProptestConfig::default() })]

    /// Random small inputs through the grouper in-process: sorted inputs (or any input with
    /// --sort) give exactly the oracle's groups; unsorted inputs without --sort are refused
    /// with a clean error naming a file.
    #[test]
    fn grouper_matches_oracle(
        spec in prop::collection::vec(prop::collection::vec(frow(), 0..30), 1..4),
        kt in prop::sample::select(KEY_TYPES.to_vec()),
        tt in prop_oneof![Just(TimeType::Int64), Just(TimeType::TimestampMs), Just(TimeType::Date32), Just(TimeType::Int32)],
        composite in any::<bool>(),
        sorted in prop::sample::select(vec![true, true, false]),
        sort_mode in any::<bool>(),
        chunk in 1usize..9,
        batch_bytes in prop::sample::select(vec![1usize, 100, 1000, 8 << 20]),
        parquet_mask in any::<u8>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let n_keys = if composite { 2 } else { 1 };
        let mut seq = 0i64;
        let mut files = Vec::new();
        let mut inputs = Vec::new();
        for (i, f) in spec.iter().enumerate() {
            let rows: Vec<FRow> = f.iter().map(|&(k, p, t, v)| { seq += 1; (k, p, t, v, seq) }).collect();
            let mut vals = file_vals(&rows, kt, tt, composite);
            if sorted {
                sort_vals(&mut vals, n_keys);
            }
            let path = dir.path().join(format!("in{i}"));
            write_file(&path, &vals, kt, tt, composite, parquet_mask >> (i % 8) & 1 == 1, chunk);
            inputs.push(path.display().to_string());
            files.push(vals);
        }
        let out = dir.path().join("out.arrows");
        let spill = dir.path().join("spill");
        std::fs::create_dir(&spill).unwrap();
        let mut cfg = group_config(inputs, out.clone());
        if composite {
            cfg.keys.push("probe".into());
        }
        cfg.batch_bytes = batch_bytes;
        cfg.sort = sort_mode;
        if sort_mode {
            cfg.memory_limit = 4096;
            cfg.fan_in = 2;
            cfg.temp_dir = spill.clone();
        }
        let payload: Vec<usize> = vec![n_keys + 1, n_keys + 2];
        let keys: Vec<usize> = (0..n_keys).collect();
        let want = oracle::group(&files, &keys, n_keys, &payload);
        match cfg.run() {
            Ok(report) => {
                let (schema, batches) = probe_tests::harness::read_file(&out);
                oracle::assert_group_schema(&schema, &input_schema(kt, tt, composite), &keys, n_keys, &payload);
                assert_groups_eq(&decode_groups(&batches, n_keys), &want);
                prop_assert_eq!(report.keys as usize, want.len());
            }
            Err(e) => {
                // Only unsorted input without --sort may fail, and then cleanly.
                let msg = e.to_string();
                prop_assert!(!sorted && !sort_mode, "unexpected error: {msg}");
                prop_assert!(msg.contains("--sort") && msg.contains("in"), "{msg}");
                prop_assert!(!out.exists());
            }
        }
        prop_assert!(probe_tests::harness::list_dir(&spill).is_empty(), "spill files left behind");
        let left: Vec<String> = probe_tests::harness::list_dir(dir.path())
            .into_iter()
            .filter(|n| n.starts_with('.'))
            .collect();
        prop_assert!(left.is_empty(), "temp files left: {left:?}");
    }
}
