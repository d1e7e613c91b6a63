//! Arrow IPC streams and files whose buffers are compressed on every thread, written in order.
//!
//! ```text
//! let mut w = IpcWriter::try_new(sink, &schema, options)?;   // writes the schema message
//! w.write(&batch)?;                                          // encodes on the pool
//! let sink = w.finish()?;                                    // the rest, then end-of-stream
//! ```
//!
//! [`IpcWriter::try_new_file`] writes the IPC file format the same way: the file is the stream
//! framed by a header and a footer that lists where each message starts, so [`BlockFile`]
//! notes each message's place as it writes it and builds the footer as arrow-rs's `FileWriter`
//! does, byte for byte (a unit test compares them).
//!
//! With LZ4 or zstd, compressing the buffers is nearly all of what writing a stream costs
//! (about four fifths of a `probe-batch` run to a zstd file, one thread), and arrow-rs does it
//! on the writing thread. Here each batch is encoded (`IpcDataGenerator::encode`: the message
//! and its compressed body) as a task on the rayon pool, and the caller writes the finished
//! messages oldest first, so the bytes are exactly those of a serial writer whatever the number
//! of threads. At most [`IN_FLIGHT_BYTES`] of decoded batches (or what the caller sets with
//! [`IpcWriter::with_in_flight_bytes`]), and at least one batch, wait for the pool; past that the
//! caller waits for the oldest.
//!
//! Done serially, as `StreamWriter` does: uncompressed streams (encoding is a copy), schemas
//! with dictionary columns (a dictionary is sent once, then referred to: that needs the order),
//! and a pool of one thread (`--threads 1` keeps to one core).

use std::collections::VecDeque;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{Receiver, TryRecvError};

use arrow::datatypes::{DataType, Schema};
use arrow::error::ArrowError;
use arrow::ipc::convert::IpcSchemaEncoder;
use arrow::ipc::writer::{
    write_message, DictionaryTracker, EncodedData, FileWriter, IpcDataGenerator, IpcWriteContext, IpcWriteOptions,
    StreamWriter,
};
use arrow::ipc::{Block, FooterBuilder, MetadataVersion};
use arrow::record_batch::RecordBatch;
use flatbuffers::FlatBufferBuilder;

/// Decoded bytes of batches that may wait for the pool before the writer waits for the oldest.
pub const IN_FLIGHT_BYTES: usize = 128 << 20;

type Encoded = Result<EncodedData, ArrowError>;

/// An Arrow IPC stream or file writer that compresses on the rayon pool; see the module header.
pub struct IpcWriter<W: Write> {
    inner: Inner<W>,
    options: IpcWriteOptions,
    parallel: bool,
    in_flight: VecDeque<(Receiver<Encoded>, usize)>,
    in_flight_bytes: usize,
    in_flight_limit: usize,
}

impl<W: Write> IpcWriter<W> {
    /// Start a stream: the schema message is written now. `compressed`: whether `options`
    /// compress (arrow-rs has no getter for it).
    pub fn try_new(
        sink: W,
        schema: &Schema,
        options: IpcWriteOptions,
        compressed: bool,
    ) -> Result<IpcWriter<W>, ArrowError> {
        let parallel = parallel(schema, compressed);
        let inner = Inner::Stream(StreamWriter::try_new_with_options(sink, schema, options.clone())?);
        Ok(IpcWriter::with_inner(inner, options, parallel))
    }

    /// Start an IPC file (the format of `.arrow` files: random access through its footer): the
    /// header and schema message are written now.
    pub fn try_new_file(
        sink: W,
        schema: &Schema,
        options: IpcWriteOptions,
        compressed: bool,
    ) -> Result<IpcWriter<W>, ArrowError> {
        let parallel = parallel(schema, compressed);
        let inner = if parallel {
            Inner::Blocks(BlockFile::try_new(sink, schema, options.clone())?)
        } else {
            Inner::File(FileWriter::try_new_with_options(sink, schema, options.clone())?)
        };
        Ok(IpcWriter::with_inner(inner, options, parallel))
    }

    fn with_inner(inner: Inner<W>, options: IpcWriteOptions, parallel: bool) -> IpcWriter<W> {
        IpcWriter {
            inner,
            options,
            parallel,
            in_flight: VecDeque::new(),
            in_flight_bytes: 0,
            in_flight_limit: IN_FLIGHT_BYTES,
        }
    }

    /// Let at most `bytes` of decoded batches (and at least one batch) wait for the pool,
    /// instead of [`IN_FLIGHT_BYTES`]: for a caller with a tighter memory budget.
    pub fn with_in_flight_bytes(mut self, bytes: usize) -> IpcWriter<W> {
        self.in_flight_limit = bytes;
        self
    }

    /// Append a batch.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), ArrowError> {
        if !self.parallel {
            return match &mut self.inner {
                Inner::Stream(w) => w.write(batch),
                Inner::File(w) => w.write(batch),
                Inner::Blocks(_) => {
                    Err(ArrowError::IpcError("internal error: a serial batch in a parallel file".into()))
                }
            };
        }
        let options = self.options.clone();
        let batch = batch.clone();
        let bytes = batch.get_array_memory_size();
        let rx = crate::threads::on_pool(move || {
            catch_unwind(AssertUnwindSafe(|| encode(&batch, &options)))
                .unwrap_or_else(|_| Err(ArrowError::IpcError("the Arrow IPC encoder panicked".into())))
        });
        self.in_flight.push_back((rx, bytes));
        self.in_flight_bytes += bytes;
        while self.in_flight_bytes > self.in_flight_limit && self.in_flight.len() > 1 {
            self.write_oldest()?;
        }
        // Whatever is already encoded goes out now, so the stream flows to a reader downstream.
        while let Some((rx, bytes)) = self.in_flight.front() {
            let encoded = match rx.try_recv() {
                Ok(encoded) => encoded?,
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return Err(stopped()),
            };
            self.in_flight_bytes -= *bytes;
            self.in_flight.pop_front();
            self.emit(encoded)?;
        }
        Ok(())
    }

    /// The options a batch is encoded with off this writer ([`encode_batch`]), when this stream
    /// takes encoded messages: compressed and without dictionaries (else `None`: batches only).
    pub fn piece_options(&self) -> Option<IpcWriteOptions> {
        self.parallel.then(|| self.options.clone())
    }

    /// Append a message [`encode_batch`] made with [`Self::piece_options`], after everything
    /// written before it.
    pub fn write_encoded(&mut self, encoded: EncodedData) -> Result<(), ArrowError> {
        while !self.in_flight.is_empty() {
            self.write_oldest()?;
        }
        self.emit(encoded)
    }

    /// Write one encoded message where the stream or file is now.
    fn emit(&mut self, encoded: EncodedData) -> Result<(), ArrowError> {
        match &mut self.inner {
            Inner::Stream(w) => write_message(w.get_mut(), encoded, &self.options).map(|_| ()),
            Inner::Blocks(f) => f.append(encoded, &self.options),
            Inner::File(_) => Err(ArrowError::IpcError("internal error: an encoded message in a serial file".into())),
        }
    }

    fn write_oldest(&mut self) -> Result<(), ArrowError> {
        let Some((rx, bytes)) = self.in_flight.pop_front() else {
            return Ok(());
        };
        self.in_flight_bytes -= bytes;
        let encoded = rx.recv().map_err(|_| stopped())??;
        self.emit(encoded)
    }

    /// Write what is left and the end-of-stream marker; hand back the sink.
    pub fn finish(mut self) -> Result<W, ArrowError> {
        while !self.in_flight.is_empty() {
            self.write_oldest()?;
        }
        match self.inner {
            Inner::Stream(mut w) => {
                w.finish()?;
                w.into_inner()
            }
            Inner::File(mut w) => {
                w.finish()?;
                w.into_inner()
            }
            Inner::Blocks(f) => f.finish(),
        }
    }
}

/// Whether batches are encoded on the pool: compressed, and no dictionaries (a dictionary is
/// sent once, then referred to: that needs the order).
fn parallel(schema: &Schema, compressed: bool) -> bool {
    compressed && !schema.fields().iter().any(|f| has_dictionary(f.data_type()))
}

enum Inner<W: Write> {
    Stream(StreamWriter<W>),
    /// A file written batch by batch, on this thread.
    File(FileWriter<W>),
    /// A file written from encoded messages.
    Blocks(BlockFile<W>),
}

const ARROW_MAGIC: [u8; 6] = *b"ARROW1";

/// The IPC file format from messages encoded elsewhere, for schemas without dictionaries.
///
/// A file is: `ARROW1`, padding, the stream (schema message, record batch messages,
/// end-of-stream marker), a footer (flatbuffer: version, schema, the offset and lengths of every
/// record batch message), its length, `ARROW1`. The header, the end-of-stream marker and the
/// footer's version are taken from an empty file arrow-rs's `FileWriter` writes with the same
/// options.
struct BlockFile<W: Write> {
    sink: W,
    schema: Schema,
    /// Where the next message starts.
    offset: usize,
    blocks: Vec<Block>,
    eos: Vec<u8>,
    version: MetadataVersion,
}

impl<W: Write> BlockFile<W> {
    fn try_new(mut sink: W, schema: &Schema, options: IpcWriteOptions) -> Result<BlockFile<W>, ArrowError> {
        // An empty file as FileWriter writes it: header (magic, padding, schema message),
        // end-of-stream marker, footer, its length, magic. This file repeats its header and
        // marker, and its footer's version.
        let mut empty = FileWriter::try_new_with_options(Vec::new(), schema, options)?;
        let header_len = empty.get_ref().len();
        empty.finish()?;
        let bytes = empty.get_ref();
        let bad = || ArrowError::IpcError("internal error: an unexpected empty Arrow IPC file".into());
        let tail = bytes.len().checked_sub(4 + ARROW_MAGIC.len()).ok_or_else(bad)?;
        let footer_len = i32::from_le_bytes(bytes[tail..tail + 4].try_into().map_err(|_| bad())?);
        let footer_start = usize::try_from(footer_len).ok().and_then(|l| tail.checked_sub(l)).ok_or_else(bad)?;
        let version = arrow::ipc::root_as_footer(&bytes[footer_start..tail])
            .map_err(|e| ArrowError::IpcError(format!("internal error: {e}")))?
            .version();
        let eos = bytes.get(header_len..footer_start).ok_or_else(bad)?.to_vec();
        sink.write_all(&bytes[..header_len])?;
        Ok(BlockFile { sink, schema: schema.clone(), offset: header_len, blocks: Vec::new(), eos, version })
    }

    fn append(&mut self, encoded: EncodedData, options: &IpcWriteOptions) -> Result<(), ArrowError> {
        let (meta, body) = write_message(&mut self.sink, encoded, options)?;
        let too_big = |_| ArrowError::IpcError("an Arrow IPC message over 2 GiB".into());
        self.blocks.push(Block::new(
            i64::try_from(self.offset).map_err(too_big)?,
            i32::try_from(meta).map_err(too_big)?,
            i64::try_from(body).map_err(too_big)?,
        ));
        self.offset += meta + body;
        Ok(())
    }

    fn finish(mut self) -> Result<W, ArrowError> {
        self.sink.write_all(&self.eos)?;
        let mut fbb = FlatBufferBuilder::new();
        let dictionaries = fbb.create_vector::<Block>(&[]);
        let record_batches = fbb.create_vector(&self.blocks);
        let schema = IpcSchemaEncoder::new().schema_to_fb_offset(&mut fbb, &self.schema);
        let root = {
            let mut footer = FooterBuilder::new(&mut fbb);
            footer.add_version(self.version);
            footer.add_schema(schema);
            footer.add_dictionaries(dictionaries);
            footer.add_recordBatches(record_batches);
            footer.finish()
        };
        fbb.finish(root, None);
        let footer = fbb.finished_data();
        let len = i32::try_from(footer.len())
            .map_err(|_| ArrowError::IpcError("an Arrow IPC file footer over 2 GiB".into()))?;
        self.sink.write_all(footer)?;
        self.sink.write_all(&len.to_le_bytes())?;
        self.sink.write_all(&ARROW_MAGIC)?;
        self.sink.flush()?;
        Ok(self.sink)
    }
}

fn stopped() -> ArrowError {
    ArrowError::IpcError("the Arrow IPC encoder stopped without a result".into())
}

/// One batch's message and body, compressed (no dictionaries: see [`IpcWriter::try_new`]).
pub fn encode_batch(batch: &RecordBatch, options: &IpcWriteOptions) -> Encoded {
    encode(batch, options)
}

fn encode(batch: &RecordBatch, options: &IpcWriteOptions) -> Encoded {
    let (dictionaries, encoded) = IpcDataGenerator::default().encode(
        batch,
        &mut DictionaryTracker::new(false),
        options,
        &mut IpcWriteContext::default(),
    )?;
    if !dictionaries.is_empty() {
        return Err(ArrowError::IpcError("internal error: a dictionary in a parallel IPC stream".into()));
    }
    Ok(encoded)
}

/// Whether a column of type `t` holds dictionary-encoded data anywhere (nested ones too).
pub(crate) fn has_dictionary(t: &DataType) -> bool {
    match t {
        DataType::Dictionary(_, _) => true,
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::ListView(f)
        | DataType::LargeListView(f)
        | DataType::FixedSizeList(f, _)
        | DataType::Map(f, _) => has_dictionary(f.data_type()),
        DataType::Struct(fields) => fields.iter().any(|f| has_dictionary(f.data_type())),
        DataType::Union(fields, _) => fields.iter().any(|(_, f)| has_dictionary(f.data_type())),
        DataType::RunEndEncoded(_, v) => has_dictionary(v.data_type()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use arrow::array::{ArrayRef, Int64Array, ListArray, StringArray};
    use arrow::datatypes::{Field, Int64Type};
    use arrow::ipc::reader::{FileReader, StreamReader};
    use arrow::ipc::CompressionType;

    use super::*;

    fn batches() -> (Arc<Schema>, Vec<RecordBatch>) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("t", DataType::Int64, true),
            Field::new("l", DataType::List(Arc::new(Field::new_list_field(DataType::Int64, true))), true),
        ]));
        let batches = (0..40)
            .map(|b| {
                let n = (b * 37) % 300;
                let k: ArrayRef =
                    Arc::new(StringArray::from_iter((0..n).map(|i| (i % 7 != 0).then(|| format!("{b}-{i}")))));
                let t: ArrayRef = Arc::new(Int64Array::from_iter((0..n).map(|i| (i % 5 != 3).then_some(i as i64))));
                let l: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Int64Type, _, _>((0..n).map(|i| {
                    (i % 4 != 1).then(|| (0..i % 9).map(|j| (j % 5 != 2).then_some((j * b) as i64)).collect::<Vec<_>>())
                })));
                RecordBatch::try_new(schema.clone(), vec![k, t, l]).unwrap()
            })
            .collect();
        (schema, batches)
    }

    /// What arrow-rs's own stream writer (or, `file`, its file writer) writes.
    fn serial_bytes(schema: &Schema, input: &[RecordBatch], options: IpcWriteOptions, file: bool) -> Vec<u8> {
        if file {
            let mut w = FileWriter::try_new_with_options(Vec::new(), schema, options).unwrap();
            input.iter().for_each(|b| w.write(b).unwrap());
            return w.into_inner().unwrap();
        }
        let mut w = StreamWriter::try_new_with_options(Vec::new(), schema, options).unwrap();
        input.iter().for_each(|b| w.write(b).unwrap());
        w.into_inner().unwrap()
    }

    fn serial(schema: &Schema, input: &[RecordBatch], options: IpcWriteOptions) -> Vec<u8> {
        serial_bytes(schema, input, options, false)
    }

    #[test]
    fn decodes_to_the_input_and_matches_the_serial_writer() {
        let (schema, input) = batches();
        for codec in [None, Some(CompressionType::LZ4_FRAME), Some(CompressionType::ZSTD)] {
            let options = IpcWriteOptions::default().try_with_compression(codec).unwrap();
            let mut w = IpcWriter::try_new(Vec::new(), &schema, options.clone(), codec.is_some()).unwrap();
            assert_eq!(w.parallel, codec.is_some());
            for b in &input {
                w.write(b).unwrap();
            }
            let bytes = w.finish().unwrap();
            let got: Vec<RecordBatch> =
                StreamReader::try_new(&bytes[..], None).unwrap().collect::<Result<_, _>>().unwrap();
            assert_eq!(got, input, "{codec:?}: decoded batches differ from the input");
            // The same messages as arrow-rs's own writer (its zstd and LZ4 are deterministic).
            assert!(bytes == serial(&schema, &input, options), "{codec:?}: bytes differ from StreamWriter's");
        }
    }

    #[test]
    fn messages_encoded_elsewhere_keep_their_place() {
        // Some batches written, some encoded by the caller (as key ranges do) and handed over:
        // the stream is still the serial writer's, byte for byte.
        let (schema, input) = batches();
        let options = IpcWriteOptions::default().try_with_compression(Some(CompressionType::ZSTD)).unwrap();
        let mut w = IpcWriter::try_new(Vec::new(), &schema, options.clone(), true).unwrap();
        let piece_options = w.piece_options().unwrap();
        for (i, b) in input.iter().enumerate() {
            if i % 3 == 1 {
                w.write_encoded(encode_batch(b, &piece_options).unwrap()).unwrap();
            } else {
                w.write(b).unwrap();
            }
        }
        let bytes = w.finish().unwrap();
        assert!(bytes == serial(&schema, &input, options), "bytes differ from StreamWriter's");
        // Uncompressed streams take batches only.
        let plain = IpcWriter::try_new(Vec::new(), &schema, IpcWriteOptions::default(), false).unwrap();
        assert!(plain.piece_options().is_none());
    }

    fn serial_file(schema: &Schema, input: &[RecordBatch], options: IpcWriteOptions) -> Vec<u8> {
        serial_bytes(schema, input, options, true)
    }

    #[test]
    fn files_decode_to_the_input_and_match_the_serial_writer() {
        let (schema, input) = batches();
        for codec in [None, Some(CompressionType::LZ4_FRAME), Some(CompressionType::ZSTD)] {
            for n in [0, 1, input.len()] {
                let options = IpcWriteOptions::default().try_with_compression(codec).unwrap();
                let mut w = IpcWriter::try_new_file(Vec::new(), &schema, options.clone(), codec.is_some()).unwrap();
                assert_eq!(w.parallel, codec.is_some());
                let piece_options = w.piece_options();
                for (i, b) in input[..n].iter().enumerate() {
                    match &piece_options {
                        // Some messages encoded by the caller, as key ranges do.
                        Some(o) if i % 3 == 1 => w.write_encoded(encode_batch(b, o).unwrap()).unwrap(),
                        _ => w.write(b).unwrap(),
                    }
                }
                let bytes = w.finish().unwrap();
                let reader = FileReader::try_new(std::io::Cursor::new(bytes.clone()), None).unwrap();
                assert_eq!(reader.num_batches(), n);
                let got: Vec<RecordBatch> = reader.collect::<Result<_, _>>().unwrap();
                assert_eq!(got, input[..n], "{codec:?}, {n} batches: decoded batches differ from the input");
                assert!(
                    bytes == serial_file(&schema, &input[..n], options),
                    "{codec:?}, {n} batches: bytes differ from FileWriter's"
                );
            }
        }
    }

    #[test]
    fn dictionaries_are_written_serially() {
        let dict = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
        let nested = DataType::List(Arc::new(Field::new_list_field(dict.clone(), true)));
        for t in [dict, nested] {
            let schema = Schema::new(vec![Field::new("k", t, true)]);
            let options = IpcWriteOptions::default().try_with_compression(Some(CompressionType::ZSTD)).unwrap();
            assert!(!IpcWriter::try_new(Vec::new(), &schema, options, true).unwrap().parallel);
        }
    }
}
