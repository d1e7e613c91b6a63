//! Arrow IPC buffer compression of stage outputs: IPC *files* are zstd-compressed by default,
//! pipes stay plain unless asked, `--ipc-compression none|lz4|zstd` chooses, and every stage
//! reads what any of them (or pyarrow) wrote, with the same decoded result as uncompressed.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::Path;

use arrow::ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow::ipc::CompressionType;
use probe_tests::gen::{self, GenConfig, Order};
use probe_tests::harness::{read_file, run, sh};
use probe_tests::oracle::rows;

fn generate(dir: &Path, rows: u64, order: Order) {
    let mut cfg = GenConfig::new(rows, dir.join("data"));
    cfg.order = order;
    cfg.files = 2;
    cfg.keys = rows / 20;
    cfg.seed = 5;
    gen::generate(&cfg).expect("generate");
}

/// The buffer codec of every record batch message in an Arrow IPC stream, in order.
fn batch_codecs(bytes: &[u8]) -> Vec<Option<CompressionType>> {
    let mut codecs = Vec::new();
    let mut pos = 0;
    while pos + 8 <= bytes.len() {
        assert_eq!(bytes[pos..pos + 4], [0xff; 4], "no continuation marker at byte {pos}");
        let len = i32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap()) as usize;
        if len == 0 {
            break; // end-of-stream marker
        }
        let meta = &bytes[pos + 8..pos + 8 + len];
        let msg = arrow::ipc::root_as_message(meta).expect("IPC message");
        if let Some(rb) = msg.header_as_record_batch() {
            codecs.push(rb.compression().map(|c| c.codec()));
        }
        pos += 8 + len + msg.bodyLength() as usize;
    }
    codecs
}

fn p(d: &Path, name: &str) -> String {
    d.join(name).to_str().unwrap().to_string()
}

#[test]
fn ipc_files_are_zstd_by_default_and_pipes_plain() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    generate(d, 40_000, Order::Sorted);

    let piped = run("probe-group", &["-q", &p(d, "data")], None);
    piped.assert_ok();
    let codecs = batch_codecs(&piped.stdout);
    assert!(!codecs.is_empty() && codecs.iter().all(Option::is_none), "stdout must stay plain: {codecs:?}");

    run("probe-group", &["-q", &p(d, "data"), "-o", &p(d, "g.arrows")], None).assert_ok();
    let file = std::fs::read(d.join("g.arrows")).unwrap();
    let codecs = batch_codecs(&file);
    assert!(codecs.iter().all(|c| *c == Some(CompressionType::ZSTD)), "file default: {codecs:?}");
    assert!(file.len() < piped.stdout.len() / 2, "zstd {} vs plain {}", file.len(), piped.stdout.len());

    let lz4 = run("probe-group", &["-q", &p(d, "data"), "--ipc-compression", "lz4"], None);
    lz4.assert_ok();
    assert!(batch_codecs(&lz4.stdout).iter().all(|c| *c == Some(CompressionType::LZ4_FRAME)));
    run("probe-group", &["-q", &p(d, "data"), "--ipc-compression", "none", "-o", &p(d, "n.arrows")], None).assert_ok();
    assert!(batch_codecs(&std::fs::read(d.join("n.arrows")).unwrap()).iter().all(Option::is_none));

    // The same data whatever the codec.
    let plain = rows(&read_file(&d.join("n.arrows")).1);
    assert_eq!(rows(&read_file(&d.join("g.arrows")).1), plain);
    assert_eq!(rows(&probe_tests::harness::decode_ipc(&lz4.stdout).1), plain);

    // A bad codec is a usage error listing the choices.
    let bad = run("probe-group", &["-q", &p(d, "data"), "--ipc-compression", "brotli"], None);
    bad.assert_code(2);
    assert!(bad.stderr.contains("lz4") && bad.stderr.contains("zstd"), "{}", bad.stderr);
}

/// The whole job once with every intermediate file compressed (lz4 and zstd mixed) and once
/// uncompressed: every stage reads compressed input and the final Parquet is the same.
#[test]
fn every_stage_reads_and_writes_compressed_ipc() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    generate(d, 30_000, Order::Shuffled);

    // Compressed measurements (zstd) as the input of check-order and group.
    let (schema, batches) = {
        let mut all = Vec::new();
        let mut schema = None;
        for f in ["part-00000.parquet", "part-00001.parquet"] {
            let (s, b) = read_file(&d.join("data").join(f));
            schema = Some(s);
            all.extend(b);
        }
        (schema.unwrap(), all)
    };
    let opts = IpcWriteOptions::default().try_with_compression(Some(CompressionType::ZSTD)).unwrap();
    let mut w = StreamWriter::try_new_with_options(
        std::fs::File::create(d.join("measurements.arrows")).unwrap(),
        &schema,
        opts,
    )
    .unwrap();
    for b in &batches {
        w.write(b).unwrap();
    }
    w.finish().unwrap();
    let check = run("probe-check-order", &["-q", &p(d, "measurements.arrows")], None);
    assert_eq!(check.code(), 1, "shuffled input needs --sort:\n{}", check.stderr);

    let job = |tag: &str, group: &str, split: &str, batch: &str| {
        sh(
            &format!(
                "set -e; mkdir -p {tag}
                 probe-group -q --sort measurements.arrows --ipc-compression {group} -o {tag}/g.arrows
                 probe-split -q {tag}/g.arrows --out-dir {tag}/work --ipc-compression {split}
                 probe-batch -q {tag}/work/train.arrows --max-len 8 --ipc-compression {batch} -o {tag}/rows.arrows
                 probe-merge -q {tag}/rows.arrows -o {tag}/rows.parquet"
            ),
            d,
        )
    };
    job("plain", "none", "none", "none").assert_ok();
    job("packed", "lz4", "zstd", "lz4").assert_ok();
    for f in ["g.arrows", "work/train.arrows", "work/test.arrows", "rows.arrows", "rows.parquet"] {
        let a = rows(&read_file(&d.join("plain").join(f)).1);
        let b = rows(&read_file(&d.join("packed").join(f)).1);
        assert!(!a.is_empty() || f == "work/test.arrows", "{f} is empty");
        assert_eq!(a, b, "{f} differs between compressed and plain intermediates");
    }
    let codecs = batch_codecs(&std::fs::read(d.join("packed/work/train.arrows")).unwrap());
    assert!(codecs.iter().all(|c| *c == Some(CompressionType::ZSTD)), "{codecs:?}");
}

/// pyarrow reads what the stages write compressed, and the stages read what pyarrow writes.
/// Needs python3 with pyarrow; skipped with a message without it, except under CI=true.
#[test]
fn pyarrow_round_trip_of_compressed_ipc() {
    if !probe_tests::harness::pyarrow_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    generate(d, 20_000, Order::Sorted);
    run("probe-group", &["-q", &p(d, "data"), "-o", &p(d, "g.arrows")], None).assert_ok();
    let py = r#"
import pyarrow as pa, pyarrow.ipc as ipc
t = ipc.open_stream(open("g.arrows", "rb")).read_all()
print(t.num_rows, sum(len(x) for x in t.column("measurements").to_pylist()))
with ipc.new_stream("py.arrows", t.schema, options=ipc.IpcWriteOptions(compression="lz4")) as w:
    w.write_table(t, max_chunksize=500)
"#;
    let out = sh(&format!("python3 -c '{py}'"), d);
    out.assert_ok();
    let (_, batches) = read_file(&d.join("g.arrows"));
    let keys: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("{keys} 20000"));
    assert!(batch_codecs(&std::fs::read(d.join("py.arrows")).unwrap())
        .iter()
        .all(|c| *c == Some(CompressionType::LZ4_FRAME)));
    // What pyarrow wrote (lz4, other batch sizes) goes through probe-split unchanged.
    run("probe-split", &["-q", &p(d, "py.arrows"), "--tag", "-o", &p(d, "tagged.arrows")], None).assert_ok();
    let tagged = rows(&read_file(&d.join("tagged.arrows")).1);
    let orig = rows(&batches);
    assert_eq!(tagged.len(), orig.len());
    for (t, o) in tagged.iter().zip(&orig) {
        assert_eq!(&t[..o.len()], &o[..], "probe-split changed a row read from pyarrow's file");
    }
}
