//! The check that every key is in one input row.
//!
//! probe-batch cuts each row on its own, so a key in two rows (days grouped apart, then batched
//! together; the same file given twice) would get two sets of windows numbered from 0: two
//! output rows with one `(key, window)`, and sessions cut where the rows meet. This check makes
//! that an error instead, for inputs in any order and of any size:
//!
//! - Each input row's key is reduced to its key bytes (`probe_core::keyhash`, with a length or
//!   null marker per part, so a null and an empty string differ) and hashed with XXH3-128; the
//!   hash goes into a buffer with the row's number, 24 bytes a row.
//! - A full buffer ([`RUN_ROWS`] rows, 24 MiB) is sorted, searched for two equal hashes, and
//!   written to one temporary file (`$TMPDIR`, removed when the stage ends) as a sorted run.
//! - At the end the runs and the buffer are merged, each run read through its own small buffer
//!   from the one file, and two equal hashes next to each other are the error, naming both
//!   rows. So memory stays at the buffer plus 8 KiB a run, whatever the number of keys.
//!
//! Two different keys share a 128-bit hash with a chance of about n²/2¹²⁹ for n rows (below
//! 10⁻²⁰ for 10⁹ rows): a duplicate reported is a duplicate.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufWriter, Read, Write};

use arrow::array::ArrayRef;
use parquet::file::reader::ChunkReader;
use probe_core::error::{Error, Result};
use probe_core::keyhash::composite_bytes;
use probe_core::pread::SharedFile;
use rayon::prelude::*;
use xxhash_rust::xxh3::xxh3_128;

/// Rows hashed before a sorted run is written out: 1 Mi rows, 24 MiB.
pub const RUN_ROWS: usize = 1 << 20;

const ENTRY_BYTES: usize = 24;

/// A row's key hash and its number across all inputs; ordered by hash, then row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    hi: u64,
    lo: u64,
    row: u64,
}

impl Entry {
    fn bytes(&self) -> [u8; ENTRY_BYTES] {
        let mut b = [0u8; ENTRY_BYTES];
        b[..8].copy_from_slice(&self.hi.to_le_bytes());
        b[8..16].copy_from_slice(&self.lo.to_le_bytes());
        b[16..].copy_from_slice(&self.row.to_le_bytes());
        b
    }

    fn from_bytes(b: &[u8; ENTRY_BYTES]) -> Entry {
        let word =
            |i: usize| u64::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3], b[i + 4], b[i + 5], b[i + 6], b[i + 7]]);
        Entry { hi: word(0), lo: word(8), row: word(16) }
    }

    fn same_key(&self, other: &Entry) -> bool {
        self.hi == other.hi && self.lo == other.lo
    }
}

/// Collects the key of every input row and reports a key found in two rows.
#[derive(Debug)]
pub struct UniqueKeys {
    run_rows: usize,
    entries: Vec<Entry>,
    /// The spill file and its runs: (first byte, entries).
    spill: Option<File>,
    runs: Vec<(u64, u64)>,
    spilled_bytes: u64,
    /// Each input's name and the number of its first row across all inputs.
    inputs: Vec<(u64, String)>,
    rows: u64,
}

impl Default for UniqueKeys {
    fn default() -> Self {
        UniqueKeys::with_run_rows(RUN_ROWS)
    }
}

impl UniqueKeys {
    /// A check that sorts and writes out a run every `run_rows` rows (tests use small runs).
    pub fn with_run_rows(run_rows: usize) -> UniqueKeys {
        UniqueKeys {
            run_rows: run_rows.max(1),
            entries: Vec::new(),
            spill: None,
            runs: Vec::new(),
            spilled_bytes: 0,
            inputs: Vec::new(),
            rows: 0,
        }
    }

    /// The rows added next belong to input `name`, starting at its row 0.
    pub fn start_input(&mut self, name: &str) {
        self.inputs.push((self.rows, name.to_string()));
    }

    /// Add the next rows of the current input: its key columns, one entry per row (hashed on
    /// the pool).
    pub fn add(&mut self, keys: &[ArrayRef]) -> Result<()> {
        let Some(rows) = keys.first().map(|k| k.len()) else { return Ok(()) };
        let base = self.rows;
        let hashed: Result<Vec<Entry>> = (0..rows)
            .into_par_iter()
            .with_min_len(4096)
            .map_init(
                || (Vec::new(), Vec::new()),
                |(buf, part), row| {
                    buf.clear();
                    composite_bytes(keys, row, buf, part)?;
                    let h = xxh3_128(buf);
                    Ok(Entry { hi: (h >> 64) as u64, lo: h as u64, row: base + row as u64 })
                },
            )
            .collect();
        self.entries.extend(hashed?);
        self.rows += rows as u64;
        if self.entries.len() >= self.run_rows {
            self.write_run()?;
        }
        Ok(())
    }

    /// Sort the buffer, check it, and append it to the spill file as a run.
    fn write_run(&mut self) -> Result<()> {
        sort(&mut self.entries);
        self.check_sorted(&self.entries)?;
        let tmp = std::env::temp_dir();
        let spill_err = |e: std::io::Error| {
            Error::data(format!(
                "{}: cannot write the key check's temporary file ({e}); free space there or set TMPDIR to another folder",
                tmp.display()
            ))
        };
        if self.spill.is_none() {
            self.spill = Some(tempfile::tempfile().map_err(spill_err)?);
        }
        let Some(file) = self.spill.as_mut() else { return Err(Error::internal("no spill file")) };
        let mut w = BufWriter::with_capacity(1 << 20, file);
        for e in &self.entries {
            w.write_all(&e.bytes()).map_err(spill_err)?;
        }
        w.flush().map_err(spill_err)?;
        self.runs.push((self.spilled_bytes, self.entries.len() as u64));
        self.spilled_bytes += (self.entries.len() * ENTRY_BYTES) as u64;
        self.entries.clear();
        Ok(())
    }

    fn check_sorted(&self, sorted: &[Entry]) -> Result<()> {
        match sorted.windows(2).find(|w| w[0].same_key(&w[1])) {
            Some(w) => Err(self.duplicate(w[0].row, w[1].row)),
            None => Ok(()),
        }
    }

    /// Every row added: an error naming two rows with one key, if there are such rows.
    pub fn finish(mut self) -> Result<()> {
        sort(&mut self.entries);
        if self.runs.is_empty() {
            return self.check_sorted(&self.entries);
        }
        self.check_sorted(&self.entries)?;
        let Some(file) = self.spill.take() else { return Err(Error::internal("no spill file")) };
        let read_err = |e: std::io::Error| {
            Error::data(format!(
                "{}: cannot read the key check's temporary file back ({e})",
                std::env::temp_dir().display()
            ))
        };
        let shared = SharedFile::new(file).map_err(read_err)?;
        let mut runs = Vec::with_capacity(self.runs.len());
        for &(start, len) in &self.runs {
            let reader = shared.get_read(start).map_err(|e| read_err(std::io::Error::other(e)))?;
            runs.push((reader, len));
        }
        let next =
            |i: usize, runs: &mut Vec<(std::io::BufReader<probe_core::pread::At>, u64)>| -> Result<Option<Entry>> {
                let (reader, left) = &mut runs[i];
                if *left == 0 {
                    return Ok(None);
                }
                *left -= 1;
                let mut b = [0u8; ENTRY_BYTES];
                reader.read_exact(&mut b).map_err(read_err)?;
                Ok(Some(Entry::from_bytes(&b)))
            };
        // Streams: the runs, then the buffer (index runs.len()).
        let mut memory = self.entries.iter().copied();
        let mut heap = BinaryHeap::new();
        for i in 0..runs.len() {
            if let Some(e) = next(i, &mut runs)? {
                heap.push(Reverse((e, i)));
            }
        }
        if let Some(e) = memory.next() {
            heap.push(Reverse((e, runs.len())));
        }
        let mut prev: Option<Entry> = None;
        while let Some(Reverse((e, i))) = heap.pop() {
            if let Some(p) = prev.filter(|p| p.same_key(&e)) {
                return Err(self.duplicate(p.row, e.row));
            }
            prev = Some(e);
            let following = if i == runs.len() { memory.next() } else { next(i, &mut runs)? };
            if let Some(f) = following {
                heap.push(Reverse((f, i)));
            }
        }
        Ok(())
    }

    /// Input name and row of a row number across all inputs.
    fn locate(&self, row: u64) -> (&str, u64) {
        let i = self.inputs.partition_point(|(start, _)| *start <= row).saturating_sub(1);
        match self.inputs.get(i) {
            Some((start, name)) => (name, row - start),
            None => ("input", row),
        }
    }

    fn duplicate(&self, a: u64, b: u64) -> Error {
        let (a, b) = (a.min(b), a.max(b));
        let (fa, ra) = self.locate(a);
        let (fb, rb) = self.locate(b);
        let second = if self.input_of(a) == self.input_of(b) { format!("row {rb}") } else { format!("{fb}: row {rb}") };
        Error::data(format!(
            "{fa}: row {ra} and {second} have the same key: probe-batch needs all of a key's measurements in one \
             row, as probe-group writes them (its windows would be numbered twice); group the inputs together, \
             as in probe-group day1/ day2/ | probe-batch"
        ))
    }

    fn input_of(&self, row: u64) -> usize {
        self.inputs.partition_point(|(start, _)| *start <= row)
    }
}

/// Sort by (hash, row): by the hash's high word on the pool, then each run of equal high words
/// (almost always none) in full.
fn sort(entries: &mut [Entry]) {
    entries.par_sort_unstable_by_key(|e| e.hi);
    let mut i = 0;
    while i + 1 < entries.len() {
        let mut j = i + 1;
        while j < entries.len() && entries[j].hi == entries[i].hi {
            j += 1;
        }
        if j - i > 1 {
            entries[i..j].sort_unstable();
        }
        i = j;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};

    use super::*;

    fn strings(v: &[Option<&str>]) -> Vec<ArrayRef> {
        vec![Arc::new(StringArray::from(v.to_vec())) as ArrayRef]
    }

    fn check(run_rows: usize, inputs: &[(&str, Vec<Vec<ArrayRef>>)]) -> Result<()> {
        let mut u = UniqueKeys::with_run_rows(run_rows);
        for (name, batches) in inputs {
            u.start_input(name);
            for b in batches {
                u.add(b)?;
            }
        }
        u.finish()
    }

    #[test]
    fn distinct_keys_pass_in_any_order_and_run_size() {
        let keys: Vec<String> = (0..1000).map(|i| format!("k{}", (i * 7919) % 1000)).collect();
        let batch: Vec<Option<&str>> = keys.iter().map(|s| Some(s.as_str())).collect();
        for run in [1, 3, 64, 1 << 20] {
            check(run, &[("a", vec![strings(&batch[..400])]), ("b", vec![strings(&batch[400..])])]).unwrap();
        }
        // A null key and an empty string are two keys.
        check(1, &[("a", vec![strings(&[None, Some("")])])]).unwrap();
    }

    #[test]
    fn a_key_in_two_rows_is_found_wherever_the_rows_are() {
        for run in [1, 2, 5, 1 << 20] {
            // Two inputs, the second repeating a key of the first.
            let e = check(
                run,
                &[
                    ("day1", vec![strings(&[Some("a"), Some("b"), Some("c")])]),
                    ("day2", vec![strings(&[Some("x"), Some("b")])]),
                ],
            )
            .unwrap_err()
            .to_string();
            assert!(e.contains("day1: row 1 and day2: row 1 have the same key"), "{run}: {e}");
            // One input, across batches; null keys count too.
            let e = check(run, &[("one", vec![strings(&[None, Some("q")]), strings(&[Some("r"), None])])])
                .unwrap_err()
                .to_string();
            assert!(e.contains("one: row 0 and row 3 have the same key"), "{run}: {e}");
        }
        // The same file given twice: the names are equal, the inputs are not.
        let e = check(4, &[("f", vec![strings(&[Some("a")])]), ("f", vec![strings(&[Some("a")])])])
            .unwrap_err()
            .to_string();
        assert!(e.contains("f: row 0 and f: row 0 have the same key"), "{e}");
    }

    #[test]
    fn composite_keys_compare_every_part() {
        let k = |a: &[i64], b: &[Option<&str>]| -> Vec<ArrayRef> {
            vec![
                Arc::new(Int64Array::from(a.to_vec())) as ArrayRef,
                Arc::new(StringArray::from(b.to_vec())) as ArrayRef,
            ]
        };
        check(2, &[("a", vec![k(&[1, 1, 2], &[Some("x"), Some("y"), Some("x")])])]).unwrap();
        let e = check(2, &[("a", vec![k(&[1, 2, 1], &[None, None, None])])]).unwrap_err().to_string();
        assert!(e.contains("a: row 0 and row 2"), "{e}");
    }
}
