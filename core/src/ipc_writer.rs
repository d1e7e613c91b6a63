//! Arrow IPC streams whose buffers are compressed on every thread, written in order.
//!
//! ```text
//! let mut w = IpcStream::try_new(sink, &schema, options)?;   // writes the schema message
//! w.write(&batch)?;                                          // encodes on the pool
//! let sink = w.finish()?;                                    // the rest, then end-of-stream
//! ```
//!
//! With LZ4 or zstd, compressing the buffers is nearly all of what writing a stream costs
//! (about four fifths of a `probe-batch` run to a zstd file, one thread), and arrow-rs does it
//! on the writing thread. Here each batch is encoded (`IpcDataGenerator::encode`: the message
//! and its compressed body) as a task on the rayon pool, and the caller writes the finished
//! messages oldest first, so the bytes are exactly those of a serial writer whatever the number
//! of threads. At most [`IN_FLIGHT_BYTES`] of decoded batches (or what the caller sets with
//! [`IpcStream::with_in_flight_bytes`]), and at least one batch, wait for the pool; past that the
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
use arrow::ipc::writer::{
    write_message, DictionaryTracker, EncodedData, IpcDataGenerator, IpcWriteContext, IpcWriteOptions, StreamWriter,
};
use arrow::record_batch::RecordBatch;

/// Decoded bytes of batches that may wait for the pool before the writer waits for the oldest.
pub const IN_FLIGHT_BYTES: usize = 128 << 20;

type Encoded = Result<EncodedData, ArrowError>;

/// An Arrow IPC stream writer that compresses on the rayon pool; see the module header.
pub struct IpcStream<W: Write> {
    inner: StreamWriter<W>,
    options: IpcWriteOptions,
    parallel: bool,
    in_flight: VecDeque<(Receiver<Encoded>, usize)>,
    in_flight_bytes: usize,
    in_flight_limit: usize,
}

impl<W: Write> IpcStream<W> {
    /// Start a stream: the schema message is written now. `compressed`: whether `options`
    /// compress (arrow-rs has no getter for it).
    pub fn try_new(
        sink: W,
        schema: &Schema,
        options: IpcWriteOptions,
        compressed: bool,
    ) -> Result<IpcStream<W>, ArrowError> {
        let parallel = compressed && !schema.fields().iter().any(|f| has_dictionary(f.data_type()));
        let inner = StreamWriter::try_new_with_options(sink, schema, options.clone())?;
        Ok(IpcStream {
            inner,
            options,
            parallel,
            in_flight: VecDeque::new(),
            in_flight_bytes: 0,
            in_flight_limit: IN_FLIGHT_BYTES,
        })
    }

    /// Let at most `bytes` of decoded batches (and at least one batch) wait for the pool,
    /// instead of [`IN_FLIGHT_BYTES`]: for a caller with a tighter memory budget.
    pub fn with_in_flight_bytes(mut self, bytes: usize) -> IpcStream<W> {
        self.in_flight_limit = bytes;
        self
    }

    /// Append a batch.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), ArrowError> {
        if !self.parallel {
            return self.inner.write(batch);
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
            write_message(self.inner.get_mut(), encoded, &self.options)?;
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
        write_message(self.inner.get_mut(), encoded, &self.options)?;
        Ok(())
    }

    fn write_oldest(&mut self) -> Result<(), ArrowError> {
        let Some((rx, bytes)) = self.in_flight.pop_front() else {
            return Ok(());
        };
        self.in_flight_bytes -= bytes;
        let encoded = rx.recv().map_err(|_| stopped())??;
        write_message(self.inner.get_mut(), encoded, &self.options)?;
        Ok(())
    }

    /// Write what is left and the end-of-stream marker; hand back the sink.
    pub fn finish(mut self) -> Result<W, ArrowError> {
        while !self.in_flight.is_empty() {
            self.write_oldest()?;
        }
        self.inner.finish()?;
        self.inner.into_inner()
    }
}

fn stopped() -> ArrowError {
    ArrowError::IpcError("the Arrow IPC encoder stopped without a result".into())
}

/// One batch's message and body, compressed (no dictionaries: see [`IpcStream::try_new`]).
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
    use arrow::ipc::reader::StreamReader;
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

    fn serial(schema: &Schema, input: &[RecordBatch], options: IpcWriteOptions) -> Vec<u8> {
        let mut w = StreamWriter::try_new_with_options(Vec::new(), schema, options).unwrap();
        for b in input {
            w.write(b).unwrap();
        }
        w.finish().unwrap();
        w.into_inner().unwrap()
    }

    #[test]
    fn decodes_to_the_input_and_matches_the_serial_writer() {
        let (schema, input) = batches();
        for codec in [None, Some(CompressionType::LZ4_FRAME), Some(CompressionType::ZSTD)] {
            let options = IpcWriteOptions::default().try_with_compression(codec).unwrap();
            let mut w = IpcStream::try_new(Vec::new(), &schema, options.clone(), codec.is_some()).unwrap();
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
        let mut w = IpcStream::try_new(Vec::new(), &schema, options.clone(), true).unwrap();
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
        let plain = IpcStream::try_new(Vec::new(), &schema, IpcWriteOptions::default(), false).unwrap();
        assert!(plain.piece_options().is_none());
    }

    #[test]
    fn dictionaries_are_written_serially() {
        let dict = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
        let nested = DataType::List(Arc::new(Field::new_list_field(dict.clone(), true)));
        for t in [dict, nested] {
            let schema = Schema::new(vec![Field::new("k", t, true)]);
            let options = IpcWriteOptions::default().try_with_compression(Some(CompressionType::ZSTD)).unwrap();
            assert!(!IpcStream::try_new(Vec::new(), &schema, options, true).unwrap().parallel);
        }
    }
}
