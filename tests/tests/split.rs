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

/// `--split-to NAME=PATH`: every split to a path of its own, a file (IPC or Parquet by
/// extension) or a named pipe read while the stage writes; the rows are those `--out-dir`
/// writes. A split left out, a name not in --ratios, one named twice, two splits to one file,
/// or another mode as well is a usage error that writes nothing.
#[test]
fn split_to_writes_each_split_to_its_path_files_and_pipes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (schema, batches) = big_probe_rows(16);
    let input = d.join("rows.arrows");
    std::fs::write(&input, encode_ipc(schema, &batches)).unwrap();
    let arg = |p: &Path| p.to_str().unwrap().to_string();
    let ratios = "a=0.5,b=0.5";
    run(
        "probe-split",
        &[arg(&input), "--ratios".into(), ratios.into(), "--out-dir".into(), arg(&d.join("ref")), "-q".into()],
        None,
    )
    .assert_ok();
    let want_a = rows(&read_file(&d.join("ref/a.arrows")).1);
    let want_b = rows(&read_file(&d.join("ref/b.arrows")).1);
    assert!(!want_a.is_empty() && !want_b.is_empty());

    // Files: IPC and Parquet by extension.
    let (fa, fb) = (d.join("a.arrows"), d.join("b.parquet"));
    let to = |name: &str, p: &Path| format!("{name}={}", p.display());
    // The input, the ratios, `--split-to` for a and b, then `extra`.
    let split_to = |a: &Path, b: &Path, extra: &[&str]| {
        let mut v = vec![arg(&input), "--ratios".into(), ratios.into()];
        v.extend(["--split-to".into(), to("a", a), "--split-to".into(), to("b", b), "-q".into()]);
        v.extend(extra.iter().map(|e| e.to_string()));
        v
    };
    run("probe-split", &split_to(&fa, &fb, &[]), None).assert_ok();
    assert_eq!(rows(&read_file(&fa).1), want_a);
    assert_eq!(rows(&read_file(&fb).1), want_b);

    // Named pipes, each read by a thread while the stage writes.
    let (pa, pb) = (d.join("a.fifo"), d.join("b.fifo"));
    let made = std::process::Command::new("mkfifo").arg(&pa).arg(&pb).status().unwrap();
    assert!(made.success(), "mkfifo");
    let readers: Vec<_> =
        [pa.clone(), pb.clone()].into_iter().map(|p| std::thread::spawn(move || std::fs::read(p).unwrap())).collect();
    run("probe-split", &split_to(&pa, &pb, &["--ipc-compression", "none"]), None).assert_ok();
    let got: Vec<Vec<u8>> = readers.into_iter().map(|h| h.join().unwrap()).collect();
    for (bytes, want) in got.iter().zip([&want_a, &want_b]) {
        let path = d.join("from-pipe.arrows");
        std::fs::write(&path, bytes).unwrap();
        assert_eq!(&rows(&read_file(&path).1), want);
    }
    // The pipes are still pipes.
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(&std::fs::metadata(&pa).unwrap().file_type()));

    // Usage errors, nothing written.
    let out = d.join("x.arrows");
    for (extra, needle) in [
        (vec![to("a", &out)], "no output for split `b`"),
        (vec![to("a", &out), to("c", &out)], "`c` is not a split of --ratios"),
        (vec![to("a", &out), to("a", &out), to("b", &out)], "names split `a` twice"),
        (vec!["a".to_string()], "give NAME=PATH"),
        // One file for two splits, also spelled two ways: the second would replace the first.
        (vec![to("a", &out), to("b", &out)], "both go to"),
        (vec![to("a", &out), format!("b={}/./x.arrows", d.display())], "both go to"),
    ] {
        let mut args = vec![arg(&input), "--ratios".into(), ratios.into()];
        for e in extra {
            args.extend(["--split-to".to_string(), e]);
        }
        let o = run("probe-split", &args, None);
        assert_eq!(o.code(), 2, "{args:?}: {}", o.stderr);
        assert!(o.stderr.contains(needle), "{args:?}: {}", o.stderr);
        assert!(!out.exists());
    }
    let o = run("probe-split", &split_to(&out, &out, &["--tag"]), None);
    assert_eq!(o.code(), 2, "{}", o.stderr);
    // A device such as /dev/null may take several splits.
    let null = Path::new("/dev/null");
    run("probe-split", &split_to(null, null, &[]), None).assert_ok();
}
