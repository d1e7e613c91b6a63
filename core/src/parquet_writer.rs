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
//!
//! There, a string or binary field of a `List<Struct>` column whose values arrive as
//! `Dictionary(Int32, _)` (probe-group's payload read from page dictionaries) is written by a
//! [`DictLeafWriter`] instead of arrow-rs's writer, which would hash every value again; the
//! plan is made per row group from its first batch (see `crate::dict_leaf`).

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, ListArray, StructArray};
use arrow::datatypes::{DataType, Field, Fields, SchemaRef};
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use parquet::arrow::arrow_writer::{
    compute_leaves, ArrowColumnChunk, ArrowColumnWriter, ArrowLeafColumn, ArrowRowGroupWriterFactory,
};
use parquet::arrow::ArrowWriter;
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::{ParquetError, Result as PqResult};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::{SerializedFileWriter, SerializedRowGroupWriter};
use parquet::schema::types::ColumnDescPtr;

use crate::dict_leaf::{self, DictLeafWriter};
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

type Encoded = PqResult<Vec<Chunk>>;

/// A finished column chunk: arrow-rs's, or one a [`DictLeafWriter`] wrote.
enum Chunk {
    Arrow(ArrowColumnChunk),
    Raw(Bytes, ColumnCloseResult),
}

impl Chunk {
    fn compressed_size(&self) -> usize {
        let close = match self {
            Chunk::Arrow(c) => c.close(),
            Chunk::Raw(_, close) => close,
        };
        close.metadata.compressed_size().max(0) as usize
    }

    fn append_to(self, rg: &mut SerializedRowGroupWriter<'_, Sink>) -> PqResult<()> {
        match self {
            Chunk::Arrow(c) => c.append_to_row_group(rg),
            Chunk::Raw(bytes, close) => rg.append_column(&bytes, close),
        }
    }
}

/// A leaf column's writer for one row group.
#[allow(clippy::large_enum_variant)] // one per leaf column, moved once: boxing buys nothing
enum LeafWriter {
    Arrow(ArrowColumnWriter),
    Dict(DictLeafWriter),
}

/// Per column, which fields of its `List<Struct>` the [`DictLeafWriter`]s take (`None`:
/// arrow-rs takes every leaf of the column).
type Plan = Vec<Option<Vec<bool>>>;

impl LeafWriter {
    fn close(self) -> PqResult<Chunk> {
        match self {
            LeafWriter::Arrow(w) => w.close().map(Chunk::Arrow),
            LeafWriter::Dict(w) => w.close().map(|(bytes, close)| Chunk::Raw(bytes, close)),
        }
    }
}

/// A row group on the pool.
struct InFlight {
    result: Receiver<Encoded>,
    decoded_bytes: usize,
}

/// A Parquet file writer that encodes on the rayon pool; see the module header.
pub struct ParallelParquetWriter {
    file: SerializedFileWriter<Sink>,
    factory: Arc<ArrowRowGroupWriterFactory>,
    props: Arc<WriterProperties>,
    leaves: Arc<[ColumnDescPtr]>,
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
        let props = Arc::new(props);
        let (file, factory) =
            ArrowWriter::try_new(file, schema.clone(), Some((*props).clone()))?.into_serialized_writer()?;
        let descr = file.schema_descr();
        let leaves = (0..descr.num_columns()).map(|i| descr.column(i)).collect();
        Ok(ParallelParquetWriter {
            file,
            factory: Arc::new(factory),
            props,
            leaves,
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
        RowGroupEncoders {
            factory: self.factory.clone(),
            schema: self.schema.clone(),
            limits: self.limits,
            props: self.props.clone(),
            leaves: self.leaves.clone(),
        }
    }

    /// Append a row group a [`RowGroupEncoder`] finished, after everything written before it.
    pub fn append_encoded(&mut self, group: EncodedRowGroup) -> PqResult<()> {
        self.flush_row_group()?;
        while !self.in_flight.is_empty() {
            self.append_oldest()?;
        }
        self.append_chunks(group.chunks, group.decoded_bytes)
    }

    fn append_chunks(&mut self, chunks: Vec<Chunk>, decoded_bytes: usize) -> PqResult<()> {
        let before = self.file.bytes_written();
        let mut rg = self.file.next_row_group()?;
        for chunk in chunks {
            chunk.append_to(&mut rg)?;
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
    props: Arc<WriterProperties>,
    /// The file's leaf columns, in order.
    leaves: Arc<[ColumnDescPtr]>,
}

impl RowGroupEncoders {
    /// Which leaves a [`DictLeafWriter`] takes, from the first batch of a row group: per column,
    /// `None`, or for a `List<Struct>` column the fields that arrive as
    /// `Dictionary(Int32, string or binary)` and whose properties the writer supports.
    fn plan(&self, batch: &RecordBatch) -> Plan {
        let mut plan = Vec::with_capacity(batch.num_columns());
        for (c, (field, column)) in self.schema.fields().iter().zip(batch.columns()).enumerate() {
            let items = column.as_list_opt::<i32>().and_then(|l| l.values().as_struct_opt());
            let (Some((item, children)), Some(items)) = (list_of_struct(field), items) else {
                plan.push(None);
                continue;
            };
            let dict: Vec<bool> = children
                .iter()
                .zip(items.columns())
                .enumerate()
                .map(|(k, (child, array))| {
                    dict_leaf::is_dictionary_of_bytes(array.data_type())
                        && self
                            .leaves
                            .get(self.first_leaf(c, k))
                            .is_some_and(|descr| DictLeafWriter::supports(&self.props, descr, field, item, child))
                })
                .collect();
            plan.push(dict.contains(&true).then_some(dict));
        }
        plan
    }

    /// The index of the first leaf of field `k` of column `c`'s struct (`List<Struct>`).
    fn first_leaf(&self, c: usize, k: usize) -> usize {
        let fields = self.schema.fields();
        let before: usize = fields.iter().take(c).map(|f| leaf_count(f.data_type())).sum();
        let inside: usize = fields
            .get(c)
            .and_then(|f| list_of_struct(f))
            .map_or(0, |(_, children)| children.iter().take(k).map(|f| leaf_count(f.data_type())).sum());
        before + inside
    }

    /// The row group's writers: arrow-rs's, with the planned leaves' replaced.
    fn leaf_writers(&self, arrow: Vec<ArrowColumnWriter>, plan: &[Option<Vec<bool>>]) -> PqResult<Vec<LeafWriter>> {
        let mut writers: Vec<LeafWriter> = arrow.into_iter().map(LeafWriter::Arrow).collect();
        for (c, (field, plan)) in self.schema.fields().iter().zip(plan).enumerate() {
            let (Some(dict), Some((item, children))) = (plan, list_of_struct(field)) else { continue };
            for (k, (child, _)) in children.iter().zip(dict).enumerate().filter(|(_, (_, &d))| d) {
                let at = self.first_leaf(c, k);
                let (Some(descr), Some(slot)) = (self.leaves.get(at), writers.get_mut(at)) else {
                    return Err(ParquetError::General("internal error: a leaf past the schema's".into()));
                };
                *slot = LeafWriter::Dict(DictLeafWriter::try_new(&self.props, descr.clone(), field, item, child)?);
            }
        }
        Ok(writers)
    }

    /// An encoder for one piece, with no row group open.
    pub fn encoder(&self) -> RowGroupEncoder {
        RowGroupEncoder { encoders: self.clone(), writers: None, open_rows: 0, open_bytes: 0 }
    }
}

/// A row group encoded by a [`RowGroupEncoder`], ready for [`ParallelParquetWriter::append_encoded`].
pub struct EncodedRowGroup {
    chunks: Vec<Chunk>,
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
    /// The open row group's leaf writers, and its plan.
    writers: Option<(Vec<LeafWriter>, Plan)>,
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
        let (writers, plan) = match &mut self.writers {
            Some(w) => w,
            slot @ None => {
                let plan = self.encoders.plan(batch);
                // The row group index only keys encryption, which these files do not use.
                let arrow = self.encoders.factory.create_column_writers(0)?;
                let writers = self.encoders.leaf_writers(arrow, &plan)?;
                slot.insert((writers, plan))
            }
        };
        let internal = |what: &str| ParquetError::General(format!("internal error: {what}"));
        let mut at = 0;
        for ((field, column), plan) in self.encoders.schema.fields().iter().zip(batch.columns()).zip(plan.iter()) {
            let Some(dict) = plan else {
                for leaf in compute_leaves(field, column)? {
                    match next(writers, &mut at)? {
                        LeafWriter::Arrow(w) => w.write(&leaf)?,
                        LeafWriter::Dict(_) => return Err(internal("a plain leaf for a dictionary writer")),
                    }
                }
                continue;
            };
            let (item, children) = list_of_struct(field).ok_or_else(|| internal("not a list of structs"))?;
            let list = column.as_list_opt::<i32>().ok_or_else(|| internal("not a list array"))?;
            let items = list.values().as_struct_opt().ok_or_else(|| internal("not a struct array"))?;
            if items.num_columns() != children.len() || dict.len() != children.len() {
                return Err(internal("a struct of other fields than the schema's"));
            }
            let mut rest = project(field, item, children, list, items, dict)?.into_iter();
            for (k, child) in children.iter().enumerate() {
                if dict[k] {
                    match next(writers, &mut at)? {
                        LeafWriter::Dict(w) => w.write(list, items, items.column(k))?,
                        LeafWriter::Arrow(_) => return Err(internal("a dictionary leaf for an arrow writer")),
                    }
                    continue;
                }
                for _ in 0..leaf_count(child.data_type()) {
                    let leaf = rest.next().ok_or_else(|| internal("fewer leaves than the schema's"))?;
                    match next(writers, &mut at)? {
                        LeafWriter::Arrow(w) => w.write(&leaf)?,
                        LeafWriter::Dict(_) => return Err(internal("a plain leaf for a dictionary writer")),
                    }
                }
            }
            if rest.next().is_some() {
                return Err(internal("more leaves than the schema's"));
            }
        }
        if at != writers.len() {
            return Err(ParquetError::General(format!(
                "internal error: {at} leaf columns for {} column writers",
                writers.len()
            )));
        }
        Ok(())
    }

    /// Close the open row group, if it holds any rows.
    pub fn finish(&mut self) -> PqResult<Option<EncodedRowGroup>> {
        let Some(writers) = self.writers.take() else {
            return Ok(None);
        };
        let chunks: Vec<Chunk> = writers.0.into_iter().map(LeafWriter::close).collect::<PqResult<_>>()?;
        let encoded_bytes = chunks.iter().map(Chunk::compressed_size).sum();
        let group = EncodedRowGroup {
            chunks,
            rows: std::mem::take(&mut self.open_rows),
            decoded_bytes: std::mem::take(&mut self.open_bytes),
            encoded_bytes,
        };
        Ok(Some(group))
    }
}

/// The next leaf's writer.
fn next<'a>(writers: &'a mut [LeafWriter], at: &mut usize) -> PqResult<&'a mut LeafWriter> {
    *at += 1;
    writers
        .get_mut(*at - 1)
        .ok_or_else(|| ParquetError::General("internal error: more leaf columns than column writers".into()))
}

/// A `List<Struct>` field's element field and the struct's fields.
fn list_of_struct(field: &Field) -> Option<(&Field, &Fields)> {
    match field.data_type() {
        DataType::List(item) => match item.data_type() {
            DataType::Struct(children) => Some((item.as_ref(), children)),
            _ => None,
        },
        _ => None,
    }
}

/// Parquet leaf columns of a field of this type.
fn leaf_count(t: &DataType) -> usize {
    match t {
        DataType::Struct(fields) => fields.iter().map(|f| leaf_count(f.data_type())).sum(),
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::ListView(f)
        | DataType::LargeListView(f)
        | DataType::FixedSizeList(f, _)
        | DataType::Map(f, _) => leaf_count(f.data_type()),
        _ => 1,
    }
}

/// The leaves arrow-rs writes of a `List<Struct>` column: those of the struct's fields that
/// `dict` leaves to it, in order (the list without the others).
fn project(
    field: &Field,
    item: &Field,
    children: &Fields,
    list: &ListArray,
    items: &StructArray,
    dict: &[bool],
) -> PqResult<Vec<ArrowLeafColumn>> {
    let keep: Vec<usize> = (0..children.len()).filter(|&k| !dict.get(k).copied().unwrap_or(false)).collect();
    if keep.is_empty() {
        return Ok(Vec::new());
    }
    let fields: Fields = keep.iter().map(|&k| children[k].clone()).collect();
    let columns: Vec<ArrayRef> = keep.iter().map(|&k| items.column(k).clone()).collect();
    let arrow_err = |e: arrow::error::ArrowError| ParquetError::General(format!("internal error: {e}"));
    let items = StructArray::try_new(fields.clone(), columns, items.nulls().cloned()).map_err(arrow_err)?;
    let item = Arc::new(
        Field::new(item.name(), DataType::Struct(fields), item.is_nullable()).with_metadata(item.metadata().clone()),
    );
    let list = ListArray::try_new(item.clone(), list.offsets().clone(), Arc::new(items), list.nulls().cloned())
        .map_err(arrow_err)?;
    let field =
        Field::new(field.name(), DataType::List(item), field.is_nullable()).with_metadata(field.metadata().clone());
    compute_leaves(&field, &(Arc::new(list) as ArrayRef))
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
    writers.into_par_iter().map(|w| w.close().map(Chunk::Arrow)).collect()
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

    /// A generator for the dictionary-string test: xorshift, seeded.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }
        fn chance(&mut self, percent: u64) -> bool {
            self.below(100) < percent
        }
    }

    /// Rows of `k: Int64, m: List<Struct<s: string, t: List<Int64>, n: Int64, b: binary>>` with
    /// `s` and `b` dictionary-encoded (keys into dictionaries that batches share or not, with
    /// duplicate values), nulls and empty lists where the fields allow them, and sliced batches.
    /// Returns the writer's schema (plain `s` and `b`), and the batches.
    fn dictionary_batches(nullable: [bool; 3], seed: u64) -> (SchemaRef, Vec<RecordBatch>) {
        use arrow::array::{BinaryArray, DictionaryArray, Int32Array, Int64Array, StructArray};
        use arrow::buffer::{NullBuffer, OffsetBuffer};
        use arrow::datatypes::{Fields, Int32Type};
        let [list_nullable, item_nullable, leaf_nullable] = nullable;
        let dict_of = |t: DataType| DataType::Dictionary(Box::new(DataType::Int32), Box::new(t));
        let ints = Arc::new(Field::new_list_field(DataType::Int64, true));
        let fields = |s: DataType, b: DataType| {
            Fields::from(vec![
                Field::new("s", s, leaf_nullable),
                Field::new("t", DataType::List(ints.clone()), true),
                Field::new("n", DataType::Int64, true),
                Field::new("b", b, true),
            ])
        };
        let schema_of = |f: Fields| {
            let item = Arc::new(Field::new("item", DataType::Struct(f), item_nullable));
            Arc::new(Schema::new(vec![
                Field::new("k", DataType::Int64, false),
                Field::new("m", DataType::List(item), list_nullable),
            ]))
        };
        let plain = schema_of(fields(DataType::Utf8, DataType::Binary));
        let dict_fields = fields(dict_of(DataType::Utf8), dict_of(DataType::Binary));
        let dict = schema_of(dict_fields.clone());
        let DataType::List(item) = dict.field(1).data_type().clone() else { unreachable!() };
        let mut rng = Rng(seed | 1);
        let mut words: ArrayRef = Arc::new(StringArray::from(vec!["a"]));
        let mut blobs: ArrayRef = Arc::new(BinaryArray::from(vec![&b"x"[..]]));
        let mut batches = Vec::new();
        let mut k = 0i64;
        for _ in 0..12 {
            // A new dictionary, or the last one again (the same arrays).
            if rng.chance(60) {
                let n = 1 + rng.below(30) as usize;
                words = Arc::new(StringArray::from_iter_values((0..n).map(|_| {
                    let v = rng.below(40);
                    if v == 0 {
                        String::new()
                    } else {
                        format!("w{v}-{}", "z".repeat(v as usize % 7))
                    }
                })));
            }
            if rng.chance(50) {
                let n = 1 + rng.below(5) as usize;
                let v: Vec<Vec<u8>> = (0..n).map(|_| vec![rng.below(3) as u8; rng.below(4) as usize]).collect();
                blobs = Arc::new(BinaryArray::from_iter_values(v));
            }
            let rows = 1 + rng.below(60) as usize;
            let (mut offsets, mut list_valid) = (vec![0i32], Vec::new());
            let (mut s_keys, mut b_keys, mut t, mut n, mut item_valid) = (vec![], vec![], vec![], vec![], vec![]);
            for _ in 0..rows {
                let null = list_nullable && rng.chance(10);
                let len = if null || rng.chance(10) { 0 } else { 1 + rng.below(9) as usize };
                list_valid.push(!null);
                offsets.push(offsets[offsets.len() - 1] + len as i32);
                for _ in 0..len {
                    item_valid.push(!(item_nullable && rng.chance(10)));
                    s_keys.push((!(leaf_nullable && rng.chance(15))).then(|| rng.below(words.len() as u64) as i32));
                    b_keys.push((!rng.chance(20)).then(|| rng.below(blobs.len() as u64) as i32));
                    t.push((!rng.chance(20)).then(|| (0..rng.below(3)).map(|x| Some(x as i64)).collect::<Vec<_>>()));
                    n.push((!rng.chance(20)).then(|| rng.next() as i64 % 1000));
                }
            }
            let s = DictionaryArray::<Int32Type>::try_new(Int32Array::from(s_keys), words.clone()).unwrap();
            let b = DictionaryArray::<Int32Type>::try_new(Int32Array::from(b_keys), blobs.clone()).unwrap();
            let t = ListArray::from_iter_primitive::<Int64Type, _, _>(t);
            let columns: Vec<ArrayRef> = vec![Arc::new(s), Arc::new(t), Arc::new(Int64Array::from(n)), Arc::new(b)];
            let nulls = item_nullable.then(|| NullBuffer::from(item_valid));
            let items = StructArray::try_new(dict_fields.clone(), columns, nulls).unwrap();
            let nulls = list_nullable.then(|| NullBuffer::from(list_valid));
            let list =
                ListArray::try_new(item.clone(), OffsetBuffer::new(offsets.into()), Arc::new(items), nulls).unwrap();
            let keys = Int64Array::from_iter_values(k..k + rows as i64);
            k += rows as i64;
            let batch = RecordBatch::try_new(dict.clone(), vec![Arc::new(keys), Arc::new(list)]).unwrap();
            // A slice: lists whose offsets do not start at 0.
            let from = rng.below(rows as u64 / 2) as usize;
            batches.push(batch.slice(from, rows - from));
        }
        (plain, batches)
    }

    /// Dictionary-encoded strings in lists go through [`DictLeafWriter`]; what it writes decodes
    /// (page index and row selections included) to what arrow-rs's own writer decodes to,
    /// whatever the fields' nullability, page and dictionary limits, codec and row groups.
    #[test]
    fn dictionary_strings_in_lists_decode_to_the_input() {
        use parquet::arrow::arrow_reader::{ArrowReaderOptions, RowSelection, RowSelector};
        use parquet::basic::{Compression, ZstdLevel};
        use parquet::file::properties::EnabledStatistics;
        let no_stats = |b: parquet::file::properties::WriterPropertiesBuilder| {
            ["m.list.item.s", "m.list.item.b", "m.list.item.t.list.element", "m.list.item.n"].iter().fold(b, |b, p| {
                let path = parquet::schema::types::ColumnPath::new(p.split('.').map(String::from).collect());
                b.set_column_statistics_enabled(path, EnabledStatistics::None)
            })
        };
        let props = [
            no_stats(WriterProperties::builder().set_compression(Compression::ZSTD(ZstdLevel::try_new(1).unwrap()))),
            // Pages of a few rows or bytes, and a dictionary that overflows into PLAIN pages.
            no_stats(
                WriterProperties::builder()
                    .set_data_page_row_count_limit(3)
                    .set_data_page_size_limit(20)
                    .set_dictionary_page_size_limit(30),
            ),
            no_stats(
                WriterProperties::builder()
                    .set_offset_index_disabled(true)
                    .set_dictionary_page_size_limit(1)
                    .set_data_page_row_count_limit(7),
            ),
        ];
        let mut used = 0;
        for case in 0..48u64 {
            let nullable = [case & 1 == 1, case & 2 == 2, case & 4 == 4];
            let props = props[(case / 8 % 3) as usize].clone().build();
            let offset_index = !props.offset_index_disabled();
            let dictionary_limit = props.dictionary_page_size_limit();
            let (plain, batches) = dictionary_batches(nullable, 0x5eed + case);
            let file = tempfile::tempfile().unwrap();
            let limits = RowGroupLimits { max_rows: [1 << 20, 40][(case / 24) as usize], ..Default::default() };
            let mut w =
                ParallelParquetWriter::try_new(file.try_clone().unwrap().into(), plain.clone(), props, limits).unwrap();
            let encoders = w.encoders();
            let plan = encoders.plan(&batches[0]);
            assert_eq!(plan, vec![None, Some(vec![true, false, false, true])], "case {case}");
            for piece in batches.chunks(5) {
                let mut enc = encoders.encoder();
                for b in piece {
                    for g in enc.write(b).unwrap() {
                        w.append_encoded(g).unwrap();
                    }
                }
                if let Some(g) = enc.finish().unwrap() {
                    w.append_encoded(g).unwrap();
                }
            }
            w.close().unwrap();
            let want: Vec<RecordBatch> = batches
                .iter()
                .map(|b| {
                    let columns = b
                        .columns()
                        .iter()
                        .zip(plain.fields())
                        .map(|(c, f)| arrow::compute::cast(c, f.data_type()).unwrap())
                        .collect();
                    RecordBatch::try_new(plain.clone(), columns).unwrap()
                })
                .collect();
            let want = arrow::compute::concat_batches(&plain, &want).unwrap();
            let s_bytes: i64 = {
                use arrow::array::AsArray;
                let m = want.column(1).as_list::<i32>();
                let (o, items) = (m.value_offsets(), m.values().as_struct());
                let s = items.column(0).as_string::<i32>();
                (o[0] as usize..o[o.len() - 1] as usize)
                    .filter(|&j| items.is_valid(j) && s.is_valid(j))
                    .map(|j| s.value(j).len() as i64)
                    .sum()
            };
            let options =
                ArrowReaderOptions::new().with_page_index_policy(parquet::file::metadata::PageIndexPolicy::Optional);
            let read = |selection: Option<RowSelection>| {
                let mut b =
                    ParquetRecordBatchReaderBuilder::try_new_with_options(file.try_clone().unwrap(), options.clone())
                        .unwrap();
                // Every column has its offset index, ours included, unless disabled.
                // Past the dictionary limit, `s` goes on in PLAIN pages, as arrow-rs's would.
                let plain_pages = b.metadata().row_groups().iter().any(|g| {
                    // The reader keeps the data pages' encodings as a mask.
                    g.column(1).page_encoding_stats_mask().is_some_and(|m| m.is_set(parquet::basic::Encoding::PLAIN))
                });
                assert_eq!(plain_pages, dictionary_limit <= 30, "case {case}");
                // The offset index counts the bytes of `s`'s values per page, as arrow-rs's does.
                if offset_index && selection.is_none() {
                    let md = b.metadata();
                    let per_page = (0..md.num_row_groups()).map(|g| {
                        let index = md.page_index_for_row_group(g);
                        index
                            .offset_index(1)
                            .and_then(|o| o.unencoded_byte_array_data_bytes())
                            .map(|v| v.iter().sum::<i64>())
                    });
                    let counted: Option<i64> = per_page.sum();
                    assert_eq!(counted, Some(s_bytes), "case {case}");
                }
                let chunks = b.metadata().row_groups().iter().flat_map(|g| g.columns());
                let indexed: Vec<bool> = chunks.map(|c| c.offset_index_offset().is_some()).collect();
                assert!(indexed.iter().all(|&i| i == offset_index), "case {case}: {indexed:?}");
                if let Some(s) = selection {
                    b = b.with_row_selection(s);
                }
                let got: Vec<RecordBatch> = b.build().unwrap().collect::<std::result::Result<_, _>>().unwrap();
                arrow::compute::concat_batches(&plain, &got).unwrap()
            };
            assert_eq!(read(None), want, "case {case}");
            // Skip into the middle of pages and row groups: the offset index must hold.
            let n = want.num_rows();
            let (a, b) = (n / 3, n / 4);
            let selection = RowSelection::from(vec![RowSelector::skip(a), RowSelector::select(b)]);
            assert_eq!(read(Some(selection)), want.slice(a, b), "case {case}, rows {a}..{}", a + b);
            // What the encoders wrote is what arrow-rs writes, decoded.
            let mut arrow_file = Vec::new();
            let mut aw = ArrowWriter::try_new(&mut arrow_file, plain.clone(), None).unwrap();
            for b in &batches {
                aw.write(b).unwrap();
            }
            aw.close().unwrap();
            let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(arrow_file)).unwrap().build().unwrap();
            let theirs: Vec<RecordBatch> = reader.collect::<std::result::Result<_, _>>().unwrap();
            assert_eq!(arrow::compute::concat_batches(&plain, &theirs).unwrap(), want, "case {case}");
            used += 1;
        }
        assert_eq!(used, 48);
    }

    #[test]
    fn bytes_do_not_depend_on_the_in_flight_budget() {
        // The budget only changes when row groups are appended, never what is appended.
        let a = write(RowGroupLimits { max_rows: 6, row_group_bytes: None, in_flight_bytes: 1 }, None);
        let b = write(RowGroupLimits { max_rows: 6, row_group_bytes: None, in_flight_bytes: 1 << 30 }, None);
        assert!(a == b);
    }
}
