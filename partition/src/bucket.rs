//! Per-batch work: the bucket of each row's key, and the buffers that collect each bucket's rows
//! until they are worth writing.
//!
//! ```
//! # fn main() -> probe_core::Result<()> {
//! use std::sync::Arc;
//!
//! use arrow::array::{ArrayRef, StringArray};
//! use arrow::record_batch::RecordBatch;
//! use probe_partition::bucket::bucket_ids;
//!
//! let keys: ArrayRef = Arc::new(StringArray::from(vec!["192.0.2.1", "198.51.100.7", "192.0.2.1"]));
//! let batch = RecordBatch::try_from_iter([("src_addr", keys)]).expect("a batch");
//! let ids = bucket_ids(&batch, &[0], 8, "rows.arrows")?; // key column 0, 8 buckets
//! assert_eq!(ids[0], ids[2]); // the same key, the same bucket
//! assert!(ids.iter().all(|&b| b < 8));
//! # Ok(())
//! # }
//! ```
//!
//! The bucket is [`probe_core::keyhash`] with [`PARTITION_SEED`] and nothing else, row by row:
//! it cannot depend on how the input was cut into batches, on the thread count or on the order
//! rows arrive in.

use arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::{concat_batches, take_record_batch};
use arrow::datatypes::SchemaRef;
use probe_core::keyhash::{key_hash, partition, PARTITION_SEED};
use probe_core::output::Output;
use probe_core::{Error, Result};
use rayon::prelude::*;

/// The bucket of a key hash among `n` (see the crate docs for the formula).
pub fn bucket_of(hash: u64, n: usize) -> u32 {
    partition(hash, n as u64) as u32
}

/// The bucket of every row of `batch` among `n`, hashing the key columns `key_idx` (in `--key`
/// order); `name` is for messages. Rows are hashed on the thread pool, in chunks.
pub fn bucket_ids(batch: &RecordBatch, key_idx: &[usize], n: usize, name: &str) -> Result<Vec<u32>> {
    let cols: Vec<ArrayRef> = key_idx.iter().map(|&i| batch.column(i).clone()).collect();
    (0..batch.num_rows())
        .into_par_iter()
        .with_min_len(16 << 10)
        .map_init(Vec::new, |buf, row| {
            key_hash(&cols, row, PARTITION_SEED, buf)
                .map(|h| bucket_of(h, n))
                .map_err(|e| Error::data(format!("{name}: hashing the key: {e}")))
        })
        .collect()
}

/// For each bucket, the rows of the batch in it, in input order.
pub fn rows_by_bucket(ids: &[u32], n: usize) -> Vec<Vec<u32>> {
    let mut rows = vec![Vec::new(); n];
    for (row, &b) in ids.iter().enumerate() {
        rows[b as usize].push(row as u32);
    }
    rows
}

/// One bucket's open file and the rows waiting to be written to it.
pub struct Bucket {
    out: Output,
    parts: Vec<RecordBatch>,
    bytes: usize,
    rows: u64,
}

impl Bucket {
    /// A bucket writing to `out`.
    pub fn new(out: Output) -> Bucket {
        Bucket { out, parts: Vec::new(), bytes: 0, rows: 0 }
    }

    /// Rows given to this bucket so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Decoded bytes waiting to be written.
    pub fn buffered_bytes(&self) -> usize {
        self.bytes
    }

    /// Take rows `rows` of `batch` into the buffer (a copy: the input batch is not kept alive).
    pub fn push(&mut self, batch: &RecordBatch, rows: Vec<u32>) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let part = if rows.len() == batch.num_rows() {
            batch.clone()
        } else {
            take_record_batch(batch, &UInt32Array::from(rows))
                .map_err(|e| Error::arrow("selecting a bucket's rows", e))?
        };
        self.bytes += part.get_array_memory_size();
        self.rows += part.num_rows() as u64;
        self.parts.push(part);
        Ok(())
    }

    /// Write the buffered rows as one batch, so the file holds batches of a useful size rather
    /// than one sliver per input batch.
    pub fn flush(&mut self, schema: &SchemaRef) -> Result<()> {
        if self.parts.is_empty() {
            return Ok(());
        }
        let parts = std::mem::take(&mut self.parts);
        self.bytes = 0;
        let batch = if parts.len() == 1 {
            parts.into_iter().next().ok_or_else(|| Error::internal("a bucket's one part vanished"))?
        } else {
            concat_batches(schema, &parts).map_err(|e| Error::arrow("joining a bucket's rows", e))?
        };
        self.out.write(&batch)
    }

    /// Write what is left and close the file (its end-of-stream marker written); returns rows.
    pub fn finish(mut self, schema: &SchemaRef) -> Result<u64> {
        self.flush(schema)?;
        self.out.finish()
    }
}
