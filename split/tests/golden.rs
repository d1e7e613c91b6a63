//! Golden values of the key hash and the split assignment, computed independently with the
//! `xxhash` PyPI package by `golden_xxhash.py` (beside this file) from the documentation
//! alone. If one of these fails, the assignment changed: every user's train/test split would
//! silently move. Do not update the numbers; fix the code.

mod common;

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, BinaryArray, Int64Array, StringArray};
use arrow::datatypes::Int32Type;
use probe_core::keyhash::{key_hash, split_index, unit};
use probe_core::Result;
use probe_split::Mode;

fn strings(v: &[Option<&str>]) -> ArrayRef {
    Arc::new(StringArray::from(v.to_vec()))
}

fn hash(cols: &[ArrayRef], seed: u64) -> Result<u64> {
    key_hash(cols, 0, seed, &mut Vec::new())
}

#[test]
fn string_keys() -> Result<()> {
    let cases: [(&str, u64, u64); 6] = [
        ("192.0.2.1", 0, 0xd5f33d205a82b1d0),
        ("192.0.2.1", 42, 0x6db99c0dec03a331),
        ("2001:db8::1", 0, 0x039294a7a3ff634b),
        ("10.0.0.1", 0xDEADBEEF, 0x4da49ebb3d26c85a),
        ("", 0, 0x2d06800538d394c2),
        ("héllo", 7, 0x50d22cf5cfd4eae2),
    ];
    for (key, seed, want) in cases {
        assert_eq!(hash(&[strings(&[Some(key)])], seed)?, want, "key {key:?} seed {seed}");
    }
    // A null single-column key is no bytes, like the empty string.
    assert_eq!(hash(&[strings(&[None])], 0)?, 0x2d06800538d394c2);
    Ok(())
}

#[test]
fn integer_keys() -> Result<()> {
    let i64s = |v: i64| -> ArrayRef { Arc::new(Int64Array::from(vec![v])) };
    assert_eq!(hash(&[i64s(1234567890123)], 0)?, 0xf184c651a63edda6);
    assert_eq!(hash(&[i64s(-1)], 0)?, 0x5111c7e47d784413);
    assert_eq!(hash(&[i64s(64512)], 42)?, 0x3ae5d30ca283f25f);
    // Any signed width is its value as i64: an Int32 64512 hashes like the Int64.
    let i32s: ArrayRef = Arc::new(arrow::array::Int32Array::from(vec![64512]));
    assert_eq!(hash(&[i32s], 42)?, 0x3ae5d30ca283f25f);
    Ok(())
}

/// Every other key type the README documents, each with the bytes step 1 gives it.
#[test]
fn binary_keys_of_every_kind() -> Result<()> {
    use arrow::array::{BinaryViewArray, FixedSizeBinaryArray, LargeBinaryArray};
    let v: &[u8] = b"\x00\xffab";
    let kinds: [ArrayRef; 4] = [
        Arc::new(BinaryArray::from(vec![v])),
        Arc::new(LargeBinaryArray::from(vec![v])),
        Arc::new(BinaryViewArray::from(vec![v])),
        Arc::new(FixedSizeBinaryArray::try_from_iter([v].into_iter()).expect("fixed size binary")),
    ];
    for col in kinds {
        assert_eq!(hash(std::slice::from_ref(&col), 0)?, 0xc1f65f316d1451be, "{}", col.data_type());
    }
    assert_eq!(hash(&[Arc::new(BinaryArray::from(vec![&b""[..]]))], 5)?, 0x388ec5bd0562e095);
    Ok(())
}

#[test]
fn string_keys_of_every_kind() -> Result<()> {
    use arrow::array::{DictionaryArray, LargeStringArray, StringViewArray};
    let kinds: [ArrayRef; 4] = [
        Arc::new(LargeStringArray::from(vec!["192.0.2.1"])),
        Arc::new(StringViewArray::from(vec!["192.0.2.1"])),
        // A dictionary hashes like its values, whatever the index type.
        Arc::new(DictionaryArray::new(
            arrow::array::Int32Array::from(vec![1]),
            Arc::new(StringArray::from(vec!["x", "192.0.2.1"])),
        )),
        Arc::new(vec!["192.0.2.1"].into_iter().collect::<DictionaryArray<arrow::datatypes::UInt8Type>>()),
    ];
    for col in kinds {
        assert_eq!(hash(std::slice::from_ref(&col), 0)?, 0xd5f33d205a82b1d0, "{}", col.data_type());
    }
    Ok(())
}

#[test]
fn boolean_and_unsigned_keys() -> Result<()> {
    use arrow::array::{BooleanArray, UInt16Array, UInt32Array, UInt64Array, UInt8Array};
    assert_eq!(hash(&[Arc::new(BooleanArray::from(vec![true]))], 0)?, 0xe12ef9d2eb86ceeb);
    assert_eq!(hash(&[Arc::new(BooleanArray::from(vec![false]))], 9)?, 0xe2031dce87db267f);
    // Any unsigned width is its value as u64.
    let kinds: [ArrayRef; 4] = [
        Arc::new(UInt8Array::from(vec![200])),
        Arc::new(UInt16Array::from(vec![200])),
        Arc::new(UInt32Array::from(vec![200])),
        Arc::new(UInt64Array::from(vec![200])),
    ];
    for col in kinds {
        assert_eq!(hash(std::slice::from_ref(&col), 0)?, 0x064c477f8f38cd0f, "{}", col.data_type());
    }
    assert_eq!(hash(&[Arc::new(UInt64Array::from(vec![u64::MAX]))], 0)?, 0x5111c7e47d784413);
    Ok(())
}

#[test]
fn date_and_timestamp_keys() -> Result<()> {
    use arrow::array::{
        Date32Array, Date64Array, TimestampMicrosecondArray, TimestampMillisecondArray, TimestampNanosecondArray,
        TimestampSecondArray,
    };
    assert_eq!(hash(&[Arc::new(Date32Array::from(vec![19723]))], 0)?, 0x9feabf1f1702083f);
    assert_eq!(hash(&[Arc::new(Date64Array::from(vec![1704067200000]))], 0)?, 0x5d20d23eef68cddd);
    // A timestamp is its value in its own unit; the timezone does not change the bytes.
    let ts: [ArrayRef; 4] = [
        Arc::new(TimestampMillisecondArray::from(vec![1704067200000])),
        Arc::new(TimestampMillisecondArray::from(vec![1704067200000]).with_timezone("UTC")),
        Arc::new(TimestampMicrosecondArray::from(vec![1704067200000]).with_timezone("Europe/Paris")),
        Arc::new(TimestampNanosecondArray::from(vec![1704067200000])),
    ];
    for col in ts {
        assert_eq!(hash(std::slice::from_ref(&col), 0)?, 0x5d20d23eef68cddd, "{}", col.data_type());
    }
    assert_eq!(hash(&[Arc::new(TimestampSecondArray::from(vec![-5]))], 1)?, 0x19d6d03d92a3a675);
    Ok(())
}

#[test]
fn composite_keys() -> Result<()> {
    let a = strings(&[Some("192.0.2.1")]);
    assert_eq!(hash(&[a.clone(), strings(&[Some("2001:db8::1")])], 0)?, 0x08e0dd08bc0803bd);
    assert_eq!(hash(&[a.clone(), Arc::new(Int64Array::from(vec![64512]))], 0)?, 0x63a50246c2284cb2);
    assert_eq!(hash(&[a, strings(&[None])], 0)?, 0x7a51a780a68768d3);
    assert_eq!(hash(&[strings(&[None]), strings(&[Some("x")])], 3)?, 0x90667212a81c9959);
    let parts: [ArrayRef; 3] = [
        strings(&[Some("192.0.2.1")]),
        Arc::new(arrow::array::BooleanArray::from(vec![true])),
        Arc::new(arrow::array::UInt32Array::from(vec![7])),
    ];
    assert_eq!(hash(&parts, 0)?, 0x056a5b72d3ba9329);
    let parts: [ArrayRef; 2] =
        [Arc::new(BinaryArray::from(vec![&b"\x01\x02"[..]])), Arc::new(arrow::array::Date32Array::from(vec![19723]))];
    assert_eq!(hash(&parts, 0)?, 0x03f1acc7ef41b542);
    Ok(())
}

#[test]
fn hash_to_split() {
    // u values and splits as printed by golden_xxhash.py.
    assert_eq!(unit(0xd5f33d205a82b1d0), 0.8357427791584182);
    assert_eq!(unit(0xf184c651a63edda6), 0.943432230886397);
    let r = [0.9, 0.1];
    assert_eq!(split_index(0xd5f33d205a82b1d0, &r), 0);
    assert_eq!(split_index(0xf184c651a63edda6, &r), 1);
    let abc = [0.5, 0.3, 0.2];
    assert_eq!(split_index(0xd5f33d205a82b1d0, &abc), 2);
    assert_eq!(split_index(0x90667212a81c9959, &abc), 1);
    assert_eq!(split_index(0x6db99c0dec03a331, &abc), 0);
}

/// The whole stage, end to end in-process, against the Python assignment of 20 keys.
#[test]
fn stage_assigns_like_python() -> Result<()> {
    let keys: Vec<String> = (0..2).flat_map(|i| (0..10).map(move |j| format!("10.0.{i}.{j}"))).collect();
    let dir = tempfile::tempdir().map_err(|e| probe_core::Error::io("tempdir", e))?;
    let input = dir.path().join("rows.arrows");
    common::write(&input, common::schema(), &[common::probe_rows(&keys, 0)])?;
    type Case<'a> = (u64, &'a [(&'a str, f64)], &'a [&'a str]);
    let cases: [Case; 2] = [
        (
            0,
            &[("train", 0.9), ("test", 0.1)],
            &[
                "train", "train", "train", "test", "train", "train", "train", "train", "train", "test", "train",
                "train", "train", "train", "train", "train", "train", "train", "train", "train",
            ],
        ),
        (
            1,
            &[("a", 0.5), ("b", 0.3), ("c", 0.2)],
            &["a", "b", "b", "a", "a", "a", "b", "a", "a", "a", "b", "b", "a", "b", "b", "a", "a", "a", "c", "a"],
        ),
    ];
    for (seed, ratios, want) in cases {
        let out = dir.path().join(format!("tagged-{seed}.arrows"));
        common::config(&[&input], Mode::Tag { output: Some(out.clone()) }, ratios, seed).run()?;
        let b = common::read_all(&[out])?;
        let tag = b.column(b.num_columns() - 1).as_dictionary::<Int32Type>();
        let values = tag.values().as_string::<i32>();
        let got: Vec<&str> = tag.keys().values().iter().map(|&k| values.value(k as usize)).collect();
        assert_eq!(got, want, "seed {seed}");
    }
    Ok(())
}
