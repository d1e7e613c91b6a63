//! Parquet encoded on every thread: the columns of a row group concurrently, and several row
//! groups at once, appended to the file in order.
//!
//! ```text
//! let mut w = ParallelParquetWriter::try_new(file, schema, props, limits)?;
//! w.write(&batch)?;          // buffers; a full row group is handed to the pool
//! w.flush_row_group()?;      // end the open row group here (merge and split size their own)
//! w.close()?;                // waits for the pool, appends the rest, writes the footer
//! ```
//!
//! # Algorithm
//! 1. **Row groups.** Batches are buffered (decoded, as given) until the open row group holds
//!    `row_group_bytes` of Arrow memory or `max_rows` rows, or the caller flushes. Both limits
//!    are functions of the data alone, never of the thread count or of timing, so the row
//!    groups, and with them the file's bytes, are the same for any `--threads`.
//! 2. **Encoding.** A closed row group becomes one task on the rayon pool: for each batch,
//!    [`compute_leaves`] of every column (in parallel), then every leaf's [`ArrowColumnWriter`]
//!    encodes and compresses its part (in parallel); the column chunks come back in order. This
//!    is what `ArrowWriter` does column after column, and what DataFusion's parallel Parquet sink
//!    does with the same arrow-rs pieces.
//! 3. **In order.** Finished row groups are appended by the calling thread, oldest first, as the
//!    next one is submitted. At most `in_flight_bytes` of decoded row groups wait for the pool
//!    (at least one); past that, the caller waits for the oldest. When a row group is appended
//!    depends only on the sizes of the row groups, so [`ParallelParquetWriter::bytes_written`]
//!    is deterministic too.
//!
//! Memory: the open row group plus at most `in_flight_bytes` of submitted ones, decoded, plus
//! their encoded chunks until appended. With the defaults that is about 64 MiB + 256 MiB,
//! whatever the number of threads.
//!
//! # Row groups encoded where they are built
//! A caller that builds a file's rows as independent pieces on threads of its own (probe-group's
//! key ranges) encodes each piece's row groups on that piece's thread with a
//! [`RowGroupEncoder`] (from [`ParallelParquetWriter::encoders`]) and hands the writer finished
//! ones ([`ParallelParquetWriter::append_encoded`]). Each batch is encoded as it arrives and
//! dropped, so a piece holds its open row group compressed, not decoded, and the writer only
//! appends bytes. Row groups are cut at the same limits but never span two pieces, so the
//! file's bytes depend on the pieces (which depend on the data), never on the threads.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_writer::{
    compute_leaves, ArrowColumnChunk, ArrowColumnWriter, ArrowLeafColumn, ArrowRowGroupWriterFactory,
};
use parquet::arrow::ArrowWriter;
use parquet::errors::{ParquetError, Result as PqResult};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;

use crate::output::Sink;
use rayon::prelude::*;

/// Where row groups end, and how much the pool may hold.
#[derive(Debug, Clone, Copy)]
pub struct RowGroupLimits {
    /// Close the open row group once it holds this many rows.
    pub max_rows: usize,
    /// Close the open row group once it holds this much decoded Arrow memory; `None`: only the
    /// caller ([`ParallelParquetWriter::flush_row_group`]) and `max_rows` close it.
    pub row_group_bytes: Option<usize>,
    /// Decoded bytes of submitted row groups that may wait for the pool before the caller waits.
    pub in_flight_bytes: usize,
}

impl Default for RowGroupLimits {
    fn default() -> Self {
        RowGroupLimits { max_rows: 1 << 20, row_group_bytes: Some(64 << 20), in_flight_bytes: 256 << 20 }
    }
}

type Encoded = PqResult<Vec<ArrowColumnChunk>>;

/// A row group on the pool.
struct InFlight {
    result: Receiver<Encoded>,
    decoded_bytes: usize,
}

/// A Parquet file writer that encodes on the rayon pool; see the module header.
pub struct ParallelParquetWriter {
    file: SerializedFileWriter<Sink>,
    factory: Arc<ArrowRowGroupWriterFactory>,
    schema: SchemaRef,
    limits: RowGroupLimits,
    open: Vec<RecordBatch>,
    open_rows: usize,
    open_bytes: usize,
    in_flight: VecDeque<InFlight>,
    in_flight_bytes: usize,
    submitted: usize,
    /// Decoded and encoded bytes of the row groups appended so far (for the size estimate).
    appended_decoded: u64,
    appended_encoded: u64,
}

impl ParallelParquetWriter {
    /// Start a file: the Arrow schema is embedded in its metadata exactly as `ArrowWriter` does.
    pub fn try_new(
        file: Sink,
        schema: SchemaRef,
        props: WriterProperties,
        limits: RowGroupLimits,
    ) -> PqResult<ParallelParquetWriter> {
        let (file, factory) = ArrowWriter::try_new(file, schema.clone(), Some(props))?.into_serialized_writer()?;
        Ok(ParallelParquetWriter {
            file,
            factory: Arc::new(factory),
            schema,
            limits: RowGroupLimits { max_rows: limits.max_rows.max(1), ..limits },
            open: Vec::new(),
            open_rows: 0,
            open_bytes: 0,
            in_flight: VecDeque::new(),
            in_flight_bytes: 0,
            submitted: 0,
            appended_decoded: 0,
            appended_encoded: 0,
        })
    }

    /// Append a batch to the open row group, closing it (and starting the next) at the limits.
    pub fn write(&mut self, batch: &RecordBatch) -> PqResult<()> {
        for (slice, bytes, full) in cut(&self.limits, self.open_rows, self.open_bytes, batch) {
            self.open_rows += slice.num_rows();
            self.open_bytes += bytes;
            self.open.push(slice);
            if full {
                self.flush_row_group()?;
            }
        }
        Ok(())
    }

    /// Decoded bytes buffered in the open row group.
    pub fn in_progress_bytes(&self) -> usize {
        self.open_bytes
    }

    /// Bytes of the file so far: those written, plus the row groups still on the pool estimated
    /// at the compression ratio of the ones written (1:1 before any). Deterministic.
    pub fn bytes_written(&self) -> u64 {
        let ratio =
            if self.appended_decoded > 0 { self.appended_encoded as f64 / self.appended_decoded as f64 } else { 1.0 };
        self.file.bytes_written() as u64 + (self.in_flight_bytes as f64 * ratio) as u64
    }

    /// Encoded bytes a decoded byte took in the row groups appended so far; `None` before any.
    pub fn ratio(&self) -> Option<f64> {
        (self.appended_decoded > 0).then(|| self.appended_encoded as f64 / self.appended_decoded as f64)
    }

    /// The file's size if it were closed now, less the footer: the bytes written plus the row
    /// groups on the pool and the open one at `ratio` (this file's own once it has one).
    pub fn estimated_bytes(&self, ratio: f64) -> u64 {
        let ratio = self.ratio().unwrap_or(ratio);
        self.file.bytes_written() as u64 + ((self.in_flight_bytes + self.open_bytes) as f64 * ratio) as u64
    }

    /// Close the open row group and append every row group on the pool (waiting for them), so
    /// that the size written is exact and [`Self::ratio`] known.
    pub fn settle(&mut self) -> PqResult<()> {
        self.flush_row_group()?;
        while !self.in_flight.is_empty() {
            self.append_oldest()?;
        }
        Ok(())
    }

    /// Close the open row group: hand it to the pool, and append the oldest finished ones while
    /// more than the in-flight budget waits.
    pub fn flush_row_group(&mut self) -> PqResult<()> {
        if self.open.is_empty() {
            return Ok(());
        }
        let batches = std::mem::take(&mut self.open);
        let decoded_bytes = std::mem::take(&mut self.open_bytes);
        self.open_rows = 0;
        let writers = self.factory.create_column_writers(self.submitted)?;
        self.submitted += 1;
        let schema = self.schema.clone();
        let rx = crate::threads::on_pool(move || {
            catch_unwind(AssertUnwindSafe(|| encode(&schema, &batches, writers)))
                .unwrap_or_else(|_| Err(ParquetError::General("the Parquet encoder panicked".into())))
        });
        self.in_flight.push_back(InFlight { result: rx, decoded_bytes });
        self.in_flight_bytes += decoded_bytes;
        while self.in_flight_bytes > self.limits.in_flight_bytes && self.in_flight.len() > 1 {
            self.append_oldest()?;
        }
        Ok(())
    }

    /// What makes [`RowGroupEncoder`]s for this file: the same schema, properties and limits.
    pub fn encoders(&self) -> RowGroupEncoders {
        RowGroupEncoders { factory: self.factory.clone(), schema: self.schema.clone(), limits: self.limits }
    }

    /// Append a row group a [`RowGroupEncoder`] finished, after everything written before it.
    pub fn append_encoded(&mut self, group: EncodedRowGroup) -> PqResult<()> {
        self.flush_row_group()?;
        while !self.in_flight.is_empty() {
            self.append_oldest()?;
        }
        self.append_chunks(group.chunks, group.decoded_bytes)
    }

    fn append_chunks(&mut self, chunks: Vec<ArrowColumnChunk>, decoded_bytes: usize) -> PqResult<()> {
        let before = self.file.bytes_written();
        let mut rg = self.file.next_row_group()?;
        for chunk in chunks {
            chunk.append_to_row_group(&mut rg)?;
        }
        rg.close()?;
        self.appended_decoded += decoded_bytes as u64;
        self.appended_encoded += (self.file.bytes_written() - before) as u64;
        Ok(())
    }

    fn append_oldest(&mut self) -> PqResult<()> {
        let Some(group) = self.in_flight.pop_front() else {
            return Ok(());
        };
        self.in_flight_bytes -= group.decoded_bytes;
        let chunks = group
            .result
            .recv()
            .map_err(|_| ParquetError::General("the Parquet encoder stopped without a result".into()))??;
        self.append_chunks(chunks, group.decoded_bytes)
    }

    /// Encode and append everything left, then write the footer.
    pub fn close(mut self) -> PqResult<()> {
        self.flush_row_group()?;
        while !self.in_flight.is_empty() {
            self.append_oldest()?;
        }
        self.file.close()?;
        Ok(())
    }

    /// [`Self::close`], handing back where the bytes went (an upload still to complete).
    pub(crate) fn into_inner(mut self) -> PqResult<Sink> {
        self.flush_row_group()?;
        while !self.in_flight.is_empty() {
            self.append_oldest()?;
        }
        self.file.into_inner()
    }
}

/// Makes [`RowGroupEncoder`]s for one file; shared by the threads that build its pieces.
#[derive(Clone)]
pub struct RowGroupEncoders {
    factory: Arc<ArrowRowGroupWriterFactory>,
    schema: SchemaRef,
    limits: RowGroupLimits,
}

impl RowGroupEncoders {
    /// An encoder for one piece, with no row group open.
    pub fn encoder(&self) -> RowGroupEncoder {
        RowGroupEncoder { encoders: self.clone(), writers: None, open_rows: 0, open_bytes: 0 }
    }
}

/// A row group encoded by a [`RowGroupEncoder`], ready for [`ParallelParquetWriter::append_encoded`].
pub struct EncodedRowGroup {
    chunks: Vec<ArrowColumnChunk>,
    rows: usize,
    decoded_bytes: usize,
    encoded_bytes: usize,
}

impl EncodedRowGroup {
    /// Rows in the row group.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Its column chunks' compressed bytes: what it holds in memory until appended.
    pub fn encoded_bytes(&self) -> usize {
        self.encoded_bytes
    }
}

/// Encodes one piece's rows on the calling thread as they arrive, closing a row group at the
/// writer's limits (see the module header).
pub struct RowGroupEncoder {
    encoders: RowGroupEncoders,
    writers: Option<Vec<ArrowColumnWriter>>,
    open_rows: usize,
    open_bytes: usize,
}

impl RowGroupEncoder {
    /// Encode `batch` into the open row group; returns the row groups it completed (usually none).
    pub fn write(&mut self, batch: &RecordBatch) -> PqResult<Vec<EncodedRowGroup>> {
        let mut done = Vec::new();
        for (slice, bytes, full) in cut(&self.encoders.limits, self.open_rows, self.open_bytes, batch) {
            self.encode(&slice)?;
            self.open_rows += slice.num_rows();
            self.open_bytes += bytes;
            if full {
                done.extend(self.finish()?);
            }
        }
        Ok(done)
    }

    fn encode(&mut self, batch: &RecordBatch) -> PqResult<()> {
        let writers = match &mut self.writers {
            Some(w) => w,
            // The row group index only keys encryption, which these files do not use.
            slot @ None => slot.insert(self.encoders.factory.create_column_writers(0)?),
        };
        let mut leaves = Vec::with_capacity(writers.len());
        for (field, column) in self.encoders.schema.fields().iter().zip(batch.columns()) {
            leaves.extend(compute_leaves(field, column)?);
        }
        if leaves.len() != writers.len() {
            return Err(ParquetError::General(format!(
                "internal error: {} leaf columns for {} column writers",
                leaves.len(),
                writers.len()
            )));
        }
        for (w, leaf) in writers.iter_mut().zip(&leaves) {
            w.write(leaf)?;
        }
        Ok(())
    }

    /// Close the open row group, if it holds any rows.
    pub fn finish(&mut self) -> PqResult<Option<EncodedRowGroup>> {
        let Some(writers) = self.writers.take() else {
            return Ok(None);
        };
        let chunks: Vec<ArrowColumnChunk> =
            writers.into_iter().map(ArrowColumnWriter::close).collect::<PqResult<_>>()?;
        let encoded_bytes = chunks.iter().map(|c| c.close().metadata.compressed_size().max(0) as usize).sum();
        let group = EncodedRowGroup {
            chunks,
            rows: std::mem::take(&mut self.open_rows),
            decoded_bytes: std::mem::take(&mut self.open_bytes),
            encoded_bytes,
        };
        Ok(Some(group))
    }
}

/// `batch` cut where row groups end, given the rows and decoded bytes the open one holds: each
/// slice with its decoded bytes and whether the row group is full after it (the caller closes
/// it there). The one rule of the writer and the piece encoders, so both cut alike.
fn cut(
    limits: &RowGroupLimits,
    open_rows: usize,
    open_bytes: usize,
    batch: &RecordBatch,
) -> Vec<(RecordBatch, usize, bool)> {
    // The bytes of the data itself, spread over its rows. Not the buffers' capacity: slices
    // and the columns of a decoded IPC message share one allocation, which
    // `get_array_memory_size` would charge to each of them in full.
    let per_row = data_bytes(batch) as f64 / batch.num_rows().max(1) as f64;
    let (mut rows, mut bytes) = (open_rows, open_bytes);
    let mut slices = Vec::new();
    let mut rest = batch.clone();
    while rest.num_rows() > 0 {
        let take = rest.num_rows().min(limits.max_rows.saturating_sub(rows).max(1));
        let now = rest.slice(0, take);
        rest = rest.slice(take, rest.num_rows() - take);
        let added = (per_row * take as f64).ceil() as usize;
        rows += take;
        bytes += added;
        let full = rows >= limits.max_rows || limits.row_group_bytes.is_some_and(|limit| bytes >= limit);
        if full {
            (rows, bytes) = (0, 0);
        }
        slices.push((now, added, full));
    }
    slices
}

/// Bytes of a batch's data as sliced (what encoding reads), whatever buffers it shares.
fn data_bytes(batch: &RecordBatch) -> usize {
    batch.columns().iter().map(|c| slice_bytes(c.as_ref())).sum()
}

/// The bytes of an array's own slice. arrow's `get_slice_memory_size` counts a list's whole
/// child (its values are not sliced with it), so a slice of 400 rows of a list column counted
/// every row's measurements: 100x too much for the first part of `probe-merge --out-dir`.
fn slice_bytes(a: &dyn arrow::array::Array) -> usize {
    use arrow::array::AsArray;
    use arrow::datatypes::DataType;
    let nulls = a.nulls().map_or(0, |n| n.len().div_ceil(8));
    match a.data_type() {
        DataType::List(_) => {
            let l = a.as_list::<i32>();
            let o = l.value_offsets();
            let (start, end) = (o[0] as usize, o[o.len() - 1] as usize);
            nulls + 4 * o.len() + slice_bytes(l.values().slice(start, end - start).as_ref())
        }
        DataType::LargeList(_) => {
            let l = a.as_list::<i64>();
            let o = l.value_offsets();
            let (start, end) = (o[0] as usize, o[o.len() - 1] as usize);
            nulls + 8 * o.len() + slice_bytes(l.values().slice(start, end - start).as_ref())
        }
        // A struct's children are sliced with it.
        DataType::Struct(_) => nulls + a.as_struct().columns().iter().map(|c| slice_bytes(c.as_ref())).sum::<usize>(),
        _ => a.to_data().get_slice_memory_size().unwrap_or_else(|_| a.get_array_memory_size()),
    }
}

/// Encode one row group: leaves of every column of a batch in parallel, then each leaf into its
/// column writer in parallel, batch after batch (a column's pages must follow row order).
fn encode(schema: &SchemaRef, batches: &[RecordBatch], mut writers: Vec<ArrowColumnWriter>) -> Encoded {
    for batch in batches {
        let leaves: Vec<Vec<ArrowLeafColumn>> = schema
            .fields()
            .par_iter()
            .zip(batch.columns().par_iter())
            .map(|(field, column)| compute_leaves(field, column))
            .collect::<PqResult<_>>()?;
        let leaves: Vec<ArrowLeafColumn> = leaves.into_iter().flatten().collect();
        if leaves.len() != writers.len() {
            return Err(ParquetError::General(format!(
                "internal error: {} leaf columns for {} column writers",
                leaves.len(),
                writers.len()
            )));
        }
        writers.par_iter_mut().zip(leaves.par_iter()).try_for_each(|(w, leaf)| w.write(leaf))?;
    }
    writers.into_par_iter().map(ArrowColumnWriter::close).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use arrow::array::{ArrayRef, ListArray, StringArray};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;

    fn batches() -> (SchemaRef, Vec<RecordBatch>) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("l", DataType::List(Arc::new(Field::new_list_field(DataType::Int64, true))), true),
        ]));
        let batches = (0..20)
            .map(|b| {
                let n = 1 + (b * 7) % 13;
                let k: ArrayRef =
                    Arc::new(StringArray::from_iter((0..n).map(|i| (i % 3 != 0).then(|| format!("{b}-{i}")))));
                let l: ArrayRef =
                    Arc::new(ListArray::from_iter_primitive::<Int64Type, _, _>((0..n).map(|i| {
                        (i % 4 != 1).then(|| (0..i).map(|j| (j % 5 != 2).then_some(j * b)).collect::<Vec<_>>())
                    })));
                RecordBatch::try_new(schema.clone(), vec![k, l]).unwrap()
            })
            .collect();
        (schema, batches)
    }

    fn write(limits: RowGroupLimits, flush_every: Option<usize>) -> (Vec<u8>, usize) {
        let (schema, input) = batches();
        let file = tempfile::tempfile().unwrap();
        let mut w = ParallelParquetWriter::try_new(
            file.try_clone().unwrap().into(),
            schema,
            WriterProperties::builder().build(),
            limits,
        )
        .unwrap();
        for (i, b) in input.iter().enumerate() {
            w.write(b).unwrap();
            if flush_every.is_some_and(|f| i % f == f - 1) {
                w.flush_row_group().unwrap();
            }
        }
        w.close().unwrap();
        read_back(file)
    }

    /// The file's bytes and row groups, after checking that it decodes to [`batches`].
    fn read_back(file: std::fs::File) -> (Vec<u8>, usize) {
        let reader = ParquetRecordBatchReaderBuilder::try_new(file.try_clone().unwrap()).unwrap();
        let groups = reader.metadata().num_row_groups();
        let got: Vec<RecordBatch> = reader.build().unwrap().collect::<std::result::Result<_, _>>().unwrap();
        let (schema, want) = batches();
        assert_eq!(
            arrow::compute::concat_batches(&schema, &got).unwrap(),
            arrow::compute::concat_batches(&schema, &want).unwrap(),
            "decoded data differs from what was written"
        );
        let mut bytes = Vec::new();
        let mut file = file;
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(0)).unwrap();
        std::io::Read::read_to_end(&mut file, &mut bytes).unwrap();
        (bytes, groups)
    }

    #[test]
    fn row_groups_split_by_rows_bytes_and_flushes_decode_to_the_input() {
        // Row limits cut batches; a tiny in-flight budget makes the writer append while writing.
        let (_, groups) = write(RowGroupLimits { max_rows: 5, row_group_bytes: None, in_flight_bytes: 1 }, None);
        assert!(groups > 20, "{groups} row groups");
        let (_, groups) =
            write(RowGroupLimits { max_rows: 1 << 20, row_group_bytes: Some(1), in_flight_bytes: 1 << 30 }, None);
        assert_eq!(groups, 20);
        let (_, groups) =
            write(RowGroupLimits { max_rows: 1 << 20, row_group_bytes: None, in_flight_bytes: 1 << 30 }, Some(3));
        assert_eq!(groups, 7);
    }

    /// Pieces encoded by [`RowGroupEncoder`]s and appended in order.
    fn write_pieces(limits: RowGroupLimits, pieces: &[std::ops::Range<usize>]) -> (Vec<u8>, usize) {
        let (schema, input) = batches();
        let file = tempfile::tempfile().unwrap();
        let mut w = ParallelParquetWriter::try_new(
            file.try_clone().unwrap().into(),
            schema.clone(),
            WriterProperties::builder().build(),
            limits,
        )
        .unwrap();
        let encoders = w.encoders();
        let mut rows = 0;
        for piece in pieces {
            let mut enc = encoders.encoder();
            let mut groups = Vec::new();
            for b in &input[piece.clone()] {
                groups.extend(enc.write(b).unwrap());
            }
            groups.extend(enc.finish().unwrap());
            for g in groups {
                rows += g.rows();
                assert!(g.encoded_bytes() > 0);
                w.append_encoded(g).unwrap();
            }
        }
        w.close().unwrap();
        assert_eq!(rows, input.iter().map(|b| b.num_rows()).sum::<usize>());
        read_back(file)
    }

    #[test]
    #[allow(clippy::single_range_in_vec_init)] // one piece holding every batch
    fn encoded_pieces_cut_like_the_writer_and_end_their_row_groups() {
        // One piece holding everything: the same row groups, so the same bytes, as the writer.
        for limits in [
            RowGroupLimits { max_rows: 5, row_group_bytes: None, in_flight_bytes: 1 },
            RowGroupLimits { max_rows: 1 << 20, row_group_bytes: Some(300), in_flight_bytes: 1 << 30 },
            RowGroupLimits::default(),
        ] {
            let whole = write_pieces(limits, &[0..20]);
            assert!(whole == write(limits, None), "{limits:?}");
        }
        // Several pieces: a row group ends with each piece (none spans two).
        let unlimited = RowGroupLimits { max_rows: 1 << 20, row_group_bytes: None, in_flight_bytes: 1 };
        let (_, groups) = write_pieces(unlimited, &[0..3, 3..4, 4..11, 11..20]);
        assert_eq!(groups, 4);
        // An empty piece adds nothing.
        let (_, groups) = write_pieces(unlimited, &[0..0, 0..20, 20..20]);
        assert_eq!(groups, 1);
        // Limits still cut inside a piece.
        let (_, groups) =
            write_pieces(RowGroupLimits { max_rows: 5, row_group_bytes: None, in_flight_bytes: 1 }, &[0..10, 10..20]);
        let (_, whole) = write(RowGroupLimits { max_rows: 5, row_group_bytes: None, in_flight_bytes: 1 }, None);
        assert!(groups >= whole, "{groups} row groups in pieces, {whole} in one");
    }

    #[test]
    fn bytes_do_not_depend_on_the_in_flight_budget() {
        // The budget only changes when row groups are appended, never what is appended.
        let a = write(RowGroupLimits { max_rows: 6, row_group_bytes: None, in_flight_bytes: 1 }, None);
        let b = write(RowGroupLimits { max_rows: 6, row_group_bytes: None, in_flight_bytes: 1 << 30 }, None);
        assert!(a == b);
    }
}
