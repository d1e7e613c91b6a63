//! A Parquet column chunk for a string or binary field of grouped rows
//! (`List<Struct<.., field, ..>>`) whose values arrive dictionary-encoded, written without
//! hashing every value again.
//!
//! # Why
//! probe-group reads a sorted Parquet input's payload strings as `Dictionary(Int32, Utf8)`
//! (the page dictionaries, see `group/src/ranges.rs`). arrow-rs's writer takes such an array
//! for a string column, but flattens it: it looks every row's string up in its own dictionary
//! (`Interner::intern`: a hash of the bytes, a probe and a byte comparison), 12-14% of
//! `probe-group -o x.parquet`'s CPU on generated data (two string fields of ~4000 and 3 values).
//! The upstream fix (apache/arrow-rs PR #10862, a cache from input key to output key) is not
//! released. Here each input dictionary entry is looked up once per input dictionary: a row
//! costs an array read.
//!
//! # What it writes
//! What arrow-rs writes for the column with its properties, page by page:
//! - a dictionary page (PLAIN values) first, then data pages v1 (`RLE_DICTIONARY` indices,
//!   RLE repetition and definition levels), each compressed with the column's codec;
//! - past `dictionary_page_size_limit` of dictionary, the rest of the chunk in PLAIN pages
//!   (arrow-rs's fallback);
//! - a page ends at a row boundary once it holds `data_page_row_count_limit` rows or its values
//!   reach `data_page_size_limit` bytes;
//! - the chunk's metadata with encodings and page encoding statistics, and an offset index
//!   (with each page's decoded value bytes) unless disabled. No statistics, no column index, no bloom filter: it is used only for
//!   columns whose properties ask for none (see [`DictLeafWriter::supports`]).
//!
//! The pages are cut at other places than arrow-rs's (it checks its limits every
//! `write_batch_size` values), so the bytes differ from arrow-rs's, but they are a function of
//! the rows written alone: byte-identical for any thread count.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use arrow::array::{Array, ArrayRef, AsArray, GenericByteArray, ListArray, StructArray};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{
    ArrowNativeType, ByteArrayType, DataType, Field, GenericBinaryType, GenericStringType, Int32Type,
};
use bytes::Bytes;
use parquet::basic::{Compression, Encoding, PageType};
use parquet::column::page::{CompressedPage, Page, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::{ParquetError, Result as PqResult};
use parquet::file::metadata::{ColumnChunkMetaData, OffsetIndexBuilder, PageEncodingStats};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::file::writer::{SerializedPageWriter, TrackedWrite};
use parquet::schema::types::ColumnDescPtr;

/// Definition levels of a leaf in `List<Struct<leaf>>`, from the fields' nullability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Levels {
    /// The level of a null list (only if the list field is nullable).
    list_null: Option<u8>,
    /// The level of an empty list.
    empty: u8,
    /// The level of a null struct element (only if the element field is nullable).
    struct_null: Option<u8>,
    /// The level of a null value (only if the leaf field is nullable).
    leaf_null: Option<u8>,
    /// The level of a value.
    max: u8,
}

impl Levels {
    fn new(list: &Field, item: &Field, leaf: &Field) -> Levels {
        let mut d = 0u8;
        let mut optional = |nullable: bool| {
            nullable.then(|| {
                d += 1;
                d - 1
            })
        };
        let list_null = optional(list.is_nullable());
        let empty = optional(true).unwrap_or_default();
        let struct_null = optional(item.is_nullable());
        let leaf_null = optional(leaf.is_nullable());
        Levels { list_null, empty, struct_null, leaf_null, max: d }
    }
}

/// A `[u8]` key's hash: xxh3 of its bytes, seeded with its length (what `Hash for [u8]` writes).
/// std's SipHash took 2x the instructions on 15-byte values; each value of an input dictionary
/// is hashed once per writer.
#[derive(Default)]
struct Xxh3Bytes(u64);

impl std::hash::Hasher for Xxh3Bytes {
    fn write(&mut self, bytes: &[u8]) {
        self.0 = xxhash_rust::xxh3::xxh3_64_with_seed(bytes, self.0);
    }

    fn write_usize(&mut self, n: usize) {
        self.0 ^= n as u64;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// The values of one leaf as they arrive: dictionary keys into values, or values.
enum Source<'a> {
    Dict { keys: &'a [i32], values: &'a ArrayRef },
    Plain(&'a ArrayRef),
}

/// Bytes of value `i` of a string or binary array.
fn bytes_at(a: &dyn Array, i: usize) -> &[u8] {
    fn of<T: ByteArrayType>(a: &dyn Array, i: usize) -> &[u8] {
        let a: &GenericByteArray<T> = a.as_bytes::<T>();
        let o = a.value_offsets();
        let (s, e) = (o[i].as_usize(), o[i + 1].as_usize());
        &a.value_data()[s..e]
    }
    match a.data_type() {
        DataType::Utf8 => of::<GenericStringType<i32>>(a, i),
        DataType::LargeUtf8 => of::<GenericStringType<i64>>(a, i),
        DataType::Binary => of::<GenericBinaryType<i32>>(a, i),
        DataType::LargeBinary => of::<GenericBinaryType<i64>>(a, i),
        DataType::Utf8View => a.as_string_view().value(i).as_bytes(),
        DataType::BinaryView => a.as_binary_view().value(i),
        // Checked by `DictLeafWriter::write` before any value is read.
        _ => &[],
    }
}

fn with_nulls(n: Option<&NullBuffer>) -> Option<&NullBuffer> {
    n.filter(|n| n.null_count() > 0)
}

/// The dictionaries this writer takes: `Int32` keys into strings or binary.
pub(crate) fn is_dictionary_of_bytes(t: &DataType) -> bool {
    matches!(t, DataType::Dictionary(k, v) if **k == DataType::Int32 && is_byte_type(v))
}

fn is_byte_type(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Binary
            | DataType::LargeBinary
            | DataType::Utf8View
            | DataType::BinaryView
    )
}

/// The codecs this writer compresses with itself.
enum Codec {
    None,
    Zstd(zstd::bulk::Compressor<'static>),
}

/// A data page, compressed, waiting for the dictionary page that must precede it.
struct DataPage {
    page: CompressedPage,
    rows: usize,
    /// Bytes of its values, decoded (the offset index records them, as arrow-rs's does).
    value_bytes: i64,
}

/// Writes one column chunk; see the module header.
pub(crate) struct DictLeafWriter {
    descr: ColumnDescPtr,
    compression: Compression,
    codec: Codec,
    levels: Levels,
    page_bytes_limit: usize,
    page_rows_limit: usize,
    dict_bytes_limit: usize,
    offset_index: bool,
    /// The dictionary: its PLAIN page as built so far, and each value's index.
    dict_page: Vec<u8>,
    dict_len: u32,
    lookup: HashMap<Box<[u8]>, u32, BuildHasherDefault<Xxh3Bytes>>,
    /// The last input dictionary and what each of its keys maps to: the output index
    /// (`u32::MAX`: not yet looked up) and the value's length. The array is held so that its
    /// buffers, compared by address, stay its own.
    cached: Option<(ArrayRef, Vec<(u32, u32)>)>,
    /// Past the dictionary limit: values go PLAIN.
    plain: bool,
    // The open page.
    rep: Vec<u8>,
    def: Vec<u8>,
    indices: Vec<u32>,
    plain_values: Vec<u8>,
    page_rows: usize,
    /// Bytes of the open page's values, decoded.
    page_value_bytes_decoded: u64,
    // Finished pages.
    pages: Vec<DataPage>,
    rows: u64,
}

impl DictLeafWriter {
    /// Whether this writer can write the leaf `descr` of `List<item: Struct<.., leaf, ..>>`
    /// with `props` as arrow-rs would: a byte-array leaf whose properties ask for a
    /// dictionary, no statistics, no bloom filter, data pages v1, and zstd or no codec.
    pub(crate) fn supports(
        props: &WriterProperties,
        descr: &ColumnDescPtr,
        list: &Field,
        item: &Field,
        leaf: &Field,
    ) -> bool {
        let path = descr.path();
        descr.physical_type() == parquet::basic::Type::BYTE_ARRAY
            && descr.max_rep_level() == 1
            && i16::from(Levels::new(list, item, leaf).max) == descr.max_def_level()
            && props.dictionary_enabled(path)
            && props.statistics_enabled(path) == EnabledStatistics::None
            && props.bloom_filter_properties(path).is_none()
            && props.writer_version() == WriterVersion::PARQUET_1_0
            && matches!(props.compression(path), Compression::UNCOMPRESSED | Compression::ZSTD(_))
    }

    /// A writer for one column chunk (call [`Self::supports`] first).
    pub(crate) fn try_new(
        props: &WriterProperties,
        descr: ColumnDescPtr,
        list: &Field,
        item: &Field,
        leaf: &Field,
    ) -> PqResult<DictLeafWriter> {
        let path = descr.path();
        let compression = props.compression(path);
        let codec = match compression {
            Compression::ZSTD(level) => Codec::Zstd(
                zstd::bulk::Compressor::new(level.compression_level()).map_err(|e| ParquetError::External(e.into()))?,
            ),
            _ => Codec::None,
        };
        Ok(DictLeafWriter {
            compression,
            codec,
            levels: Levels::new(list, item, leaf),
            page_bytes_limit: props.data_page_size_limit(),
            page_rows_limit: props.data_page_row_count_limit(),
            dict_bytes_limit: props.dictionary_page_size_limit(),
            offset_index: !props.offset_index_disabled(),
            descr,
            dict_page: Vec::new(),
            dict_len: 0,
            page_value_bytes_decoded: 0,
            lookup: HashMap::default(),
            cached: None,
            plain: false,
            rep: Vec::new(),
            def: Vec::new(),
            indices: Vec::new(),
            plain_values: Vec::new(),
            page_rows: 0,
            pages: Vec::new(),
            rows: 0,
        })
    }

    /// Write the leaf `child` (a column of `list`'s struct values) for every row of `list`.
    pub(crate) fn write(&mut self, list: &ListArray, items: &StructArray, child: &ArrayRef) -> PqResult<()> {
        let source = match child.data_type() {
            t if is_dictionary_of_bytes(t) => {
                let d = child.as_dictionary::<Int32Type>();
                Source::Dict { keys: d.keys().values(), values: d.values() }
            }
            t if is_byte_type(t) => Source::Plain(child),
            t => {
                return Err(ParquetError::General(format!(
                    "internal error: a {t} array for the string column {}",
                    self.descr.path()
                )))
            }
        };
        if let Source::Dict { values, .. } = &source {
            let same = matches!(&self.cached, Some((held, _)) if held.to_data().ptr_eq(&values.to_data()));
            if !same && !self.plain {
                self.cached = Some(((*values).clone(), vec![(u32::MAX, 0); values.len()]));
            }
        }
        // Null buffers without nulls (readers keep them for nullable columns) count as none.
        let leaf_nulls = child.logical_nulls().filter(|n| n.null_count() > 0);
        let (list_nulls, item_nulls) = (with_nulls(list.nulls()), with_nulls(items.nulls()));
        let null_at = |n: Option<&NullBuffer>, i: usize| n.is_some_and(|n| n.is_null(i));
        let no_nulls = list_nulls.is_none() && item_nulls.is_none() && leaf_nulls.is_none();
        let l = self.levels;
        for (row, w) in list.value_offsets().windows(2).enumerate() {
            let (start, end) = (w[0] as usize, w[1] as usize);
            if no_nulls && start < end {
                // The common case: a row of values, none null.
                self.rep.push(0);
                self.rep.resize(self.rep.len() + (end - start - 1), 1);
                self.def.resize(self.def.len() + (end - start), l.max);
                match &source {
                    Source::Dict { keys, values } if !self.plain => self.push_keys(&keys[start..end], values),
                    _ => (start..end).for_each(|j| self.push_value(&source, j)),
                }
            } else if null_at(list_nulls, row) {
                let level = l.list_null.ok_or_else(|| self.unexpected_null("list"))?;
                self.push_level(0, level);
            } else if start == end {
                self.push_level(0, l.empty);
            } else {
                for j in start..end {
                    let rep = u8::from(j != start);
                    if null_at(item_nulls, j) {
                        let level = l.struct_null.ok_or_else(|| self.unexpected_null("list element"))?;
                        self.push_level(rep, level);
                    } else if null_at(leaf_nulls.as_ref(), j) {
                        let level = l.leaf_null.ok_or_else(|| self.unexpected_null("value"))?;
                        self.push_level(rep, level);
                    } else {
                        self.push_level(rep, l.max);
                        self.push_value(&source, j);
                    }
                }
            }
            self.page_rows += 1;
            if self.page_rows >= self.page_rows_limit || self.page_value_bytes() >= self.page_bytes_limit {
                self.flush_page()?;
            }
        }
        Ok(())
    }

    /// The dictionary indices of valid `keys` into `values` (the cached dictionary).
    fn push_keys(&mut self, keys: &[i32], values: &ArrayRef) {
        let Some((held, mut map)) = self.cached.take() else {
            // `write` caches every dictionary it is given while not PLAIN.
            keys.iter().for_each(|&k| {
                let i = self.intern(bytes_at(values.as_ref(), k as usize));
                self.indices.push(i);
            });
            return;
        };
        let mut bytes = 0u64;
        for &k in keys {
            let k = k as usize;
            let (mut i, mut len) = map[k];
            if i == u32::MAX {
                let v = bytes_at(values.as_ref(), k);
                (i, len) = (self.intern_only(v), v.len() as u32);
                map[k] = (i, len);
            }
            bytes += u64::from(len);
            self.indices.push(i);
        }
        self.page_value_bytes_decoded += bytes;
        self.cached = Some((held, map));
    }

    fn unexpected_null(&self, what: &str) -> ParquetError {
        ParquetError::General(format!("a null {what} in the non-nullable column {}", self.descr.path()))
    }

    #[inline]
    fn push_level(&mut self, rep: u8, def: u8) {
        self.rep.push(rep);
        self.def.push(def);
    }

    #[inline]
    fn push_value(&mut self, source: &Source, j: usize) {
        if self.plain {
            let v = match source {
                Source::Dict { keys, values } => bytes_at(values.as_ref(), keys[j] as usize),
                Source::Plain(a) => bytes_at(a.as_ref(), j),
            };
            self.plain_values.extend_from_slice(&(v.len() as u32).to_le_bytes());
            self.plain_values.extend_from_slice(v);
            self.page_value_bytes_decoded += v.len() as u64;
            return;
        }
        let index = match source {
            Source::Dict { keys, values } => {
                // `write` made `cached` this dictionary's map.
                let key = keys[j] as usize;
                match self.cached.as_ref().map(|(_, m)| m[key]) {
                    Some((i, len)) if i != u32::MAX => {
                        self.page_value_bytes_decoded += u64::from(len);
                        i
                    }
                    _ => {
                        let v = bytes_at(values.as_ref(), key);
                        let i = self.intern(v);
                        if let Some((_, m)) = self.cached.as_mut() {
                            m[key] = (i, v.len() as u32);
                        }
                        i
                    }
                }
            }
            Source::Plain(a) => self.intern(bytes_at(a.as_ref(), j)),
        };
        self.indices.push(index);
    }

    /// `v`'s index in the output dictionary, counted in the open page's value bytes.
    fn intern(&mut self, v: &[u8]) -> u32 {
        self.page_value_bytes_decoded += v.len() as u64;
        self.intern_only(v)
    }

    /// `v`'s index in the output dictionary (added if new).
    fn intern_only(&mut self, v: &[u8]) -> u32 {
        if let Some(&i) = self.lookup.get(v) {
            return i;
        }
        let i = self.dict_len;
        self.dict_len += 1;
        self.dict_page.extend_from_slice(&(v.len() as u32).to_le_bytes());
        self.dict_page.extend_from_slice(v);
        self.lookup.insert(v.into(), i);
        i
    }

    fn bit_width(&self) -> u8 {
        bits_for(self.dict_len.saturating_sub(1))
    }

    /// The encoded size of the open page's values, as arrow-rs estimates it.
    fn page_value_bytes(&self) -> usize {
        if self.plain {
            self.plain_values.len()
        } else {
            1 + (self.indices.len() * self.bit_width() as usize).div_ceil(8)
        }
    }

    fn compress(&mut self, buf: Vec<u8>) -> PqResult<Vec<u8>> {
        match &mut self.codec {
            Codec::None => Ok(buf),
            Codec::Zstd(c) => c.compress(&buf).map_err(|e| ParquetError::External(e.into())),
        }
    }

    /// End the open page; past the dictionary limit, the pages after it are PLAIN.
    fn flush_page(&mut self) -> PqResult<()> {
        if self.rep.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(self.page_value_bytes() + self.rep.len() / 2 + 16);
        levels_v1(&self.rep, 1, &mut buf);
        levels_v1(&self.def, bits_for(u32::from(self.levels.max)), &mut buf);
        let value_bytes = std::mem::take(&mut self.page_value_bytes_decoded) as i64;
        let encoding = if self.plain {
            buf.extend_from_slice(&self.plain_values);
            Encoding::PLAIN
        } else {
            let width = self.bit_width();
            buf.push(width);
            rle_hybrid(&self.indices, width, &mut buf);
            Encoding::RLE_DICTIONARY
        };
        let num_values = self.rep.len() as u32;
        let uncompressed = buf.len();
        let compressed = self.compress(buf)?;
        let page = Page::DataPage {
            buf: Bytes::from(compressed),
            num_values,
            encoding,
            def_level_encoding: Encoding::RLE,
            rep_level_encoding: Encoding::RLE,
            statistics: None,
        };
        let page = CompressedPage::new(page, uncompressed);
        self.pages.push(DataPage { page, rows: self.page_rows, value_bytes });
        self.rows += self.page_rows as u64;
        self.rep.clear();
        self.def.clear();
        self.indices.clear();
        self.plain_values.clear();
        self.page_rows = 0;
        if !self.plain && self.dict_page.len() >= self.dict_bytes_limit {
            self.plain = true;
            self.cached = None;
        }
        Ok(())
    }

    /// The chunk's bytes (dictionary page, then data pages) and what the row group needs.
    pub(crate) fn close(mut self) -> PqResult<(Bytes, ColumnCloseResult)> {
        self.flush_page()?;
        let dict = std::mem::take(&mut self.dict_page);
        let dict_uncompressed = dict.len();
        let dict = self.compress(dict)?;
        let dict_page = Page::DictionaryPage {
            buf: Bytes::from(dict),
            num_values: self.dict_len,
            encoding: Encoding::PLAIN,
            is_sorted: false,
        };
        let mut sink = TrackedWrite::new(Vec::new());
        let mut writer = SerializedPageWriter::new(&mut sink);
        let mut offsets = OffsetIndexBuilder::new();
        let (mut compressed, mut uncompressed, mut values) = (0i64, 0i64, 0i64);
        let mut data_page_offset = None;
        let spec = writer.write_page(CompressedPage::new(dict_page, dict_uncompressed))?;
        compressed += spec.compressed_size as i64;
        uncompressed += spec.uncompressed_size as i64;
        let mut stats =
            vec![PageEncodingStats { page_type: PageType::DICTIONARY_PAGE, encoding: Encoding::PLAIN, count: 1 }];
        let mut encodings = vec![Encoding::PLAIN, Encoding::RLE];
        for DataPage { page, rows, value_bytes } in std::mem::take(&mut self.pages) {
            let encoding = page.encoding();
            if !encodings.contains(&encoding) {
                encodings.push(encoding);
            }
            match stats.last_mut() {
                Some(s) if s.page_type == PageType::DATA_PAGE && s.encoding == encoding => s.count += 1,
                _ => stats.push(PageEncodingStats { page_type: PageType::DATA_PAGE, encoding, count: 1 }),
            }
            let spec = writer.write_page(page)?;
            data_page_offset.get_or_insert(spec.offset as i64);
            offsets.append_offset_and_size(spec.offset as i64, spec.compressed_size as i32);
            offsets.append_row_count(rows as i64);
            offsets.append_unencoded_byte_array_data_bytes(Some(value_bytes));
            compressed += spec.compressed_size as i64;
            uncompressed += spec.uncompressed_size as i64;
            values += i64::from(spec.num_values);
        }
        writer.close()?;
        let bytes = Bytes::from(sink.into_inner()?);
        let metadata = ColumnChunkMetaData::builder(self.descr.clone())
            .set_compression(self.compression)
            .set_encodings(encodings)
            .set_page_encoding_stats(stats)
            .set_total_compressed_size(compressed)
            .set_total_uncompressed_size(uncompressed)
            .set_num_values(values)
            .set_data_page_offset(data_page_offset.unwrap_or(compressed))
            .set_dictionary_page_offset(Some(0))
            .build()?;
        let close = ColumnCloseResult {
            bytes_written: bytes.len() as u64,
            rows_written: self.rows,
            metadata,
            bloom_filter: None,
            column_index: None,
            offset_index: self.offset_index.then(|| offsets.build()),
        };
        Ok((bytes, close))
    }
}

/// Bits needed for values up to `max`.
fn bits_for(max: u32) -> u8 {
    (32 - max.leading_zeros()) as u8
}

/// Levels in a v1 data page: their encoded length (4 bytes, little-endian), then the RLE /
/// bit-packed hybrid encoding.
fn levels_v1(levels: &[u8], width: u8, out: &mut Vec<u8>) {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    rle_hybrid(levels, width, out);
    let len = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
}

fn uleb128(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Bit-pack `values` (each below `2^width`, width <= 32) LSB first, in groups of 8, the last
/// group padded with zeros; a run header per 63 groups (arrow-rs's and parquet-mr's limit).
fn bit_packed<T: Copy + Into<u64>>(values: &[T], width: u8, out: &mut Vec<u8>) {
    const MAX_GROUPS: usize = 63;
    let width = u32::from(width);
    for chunk in values.chunks(MAX_GROUPS * 8) {
        let groups = chunk.len().div_ceil(8);
        uleb128(((groups as u64) << 1) | 1, out);
        out.reserve(groups * width as usize);
        let (mut acc, mut bits) = (0u64, 0u32);
        for &v in chunk {
            acc |= v.into() << bits;
            bits += width;
            if bits >= 32 {
                out.extend_from_slice(&(acc as u32).to_le_bytes());
                acc >>= 32;
                bits -= 32;
            }
        }
        // The padding of the last group: zero values add zero bits.
        bits += width * ((groups * 8 - chunk.len()) as u32);
        while bits >= 8 {
            out.push(acc as u8);
            acc >>= 8;
            bits -= 8;
        }
    }
}

/// Parquet's RLE / bit-packed hybrid encoding of `values` (each below `2^width`, width <= 32),
/// without a length prefix. Runs of 8 or more equal values are RLE runs; the values between
/// them are bit-packed in groups of 8, the last group padded with zeros (only at the end).
pub(crate) fn rle_hybrid<T: Copy + PartialEq + Into<u64>>(values: &[T], width: u8, out: &mut Vec<u8>) {
    let value_bytes = usize::from(width).div_ceil(8);
    let (mut i, mut literal_start) = (0, 0);
    let n = values.len();
    while i < n {
        let v = values[i];
        // A run of 8 needs its eighth value: most literals (dictionary indices) stop here.
        if i + 7 >= n || values[i + 7] != v {
            i += 1;
            continue;
        }
        let mut run = 1;
        while i + run + 8 <= n && values[i + run..i + run + 8].iter().all(|&x| x == v) {
            run += 8;
        }
        while i + run < n && values[i + run] == v {
            run += 1;
        }
        // Literals before an RLE run must fill whole groups: lend them the run's first values.
        let lend = (8 - (i - literal_start) % 8) % 8;
        if run >= 8 + lend {
            if literal_start < i + lend {
                bit_packed(&values[literal_start..i + lend], width, out);
            }
            uleb128(((run - lend) as u64) << 1, out);
            out.extend_from_slice(&v.into().to_le_bytes()[..value_bytes]);
            literal_start = i + run;
        }
        i += run;
    }
    if literal_start < n {
        bit_packed(&values[literal_start..], width, out);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A reference decoder for the hybrid encoding, independent of the encoder's logic.
    fn decode(mut b: &[u8], width: u8, n: usize) -> Vec<u32> {
        let mut out = Vec::new();
        let value_bytes = usize::from(width).div_ceil(8);
        while out.len() < n {
            let (mut header, mut shift) = (0u64, 0);
            loop {
                let byte = b[0];
                b = &b[1..];
                header |= u64::from(byte & 0x7f) << shift;
                shift += 7;
                if byte & 0x80 == 0 {
                    break;
                }
            }
            if header & 1 == 1 {
                let count = (header >> 1) as usize * 8;
                let bytes = count * usize::from(width) / 8;
                let (data, rest) = b.split_at(bytes);
                for k in 0..count {
                    let mut v = 0u32;
                    for bit in 0..usize::from(width) {
                        let at = k * usize::from(width) + bit;
                        v |= u32::from((data[at / 8] >> (at % 8)) & 1) << bit;
                    }
                    out.push(v);
                }
                b = rest;
            } else {
                let mut le = [0u8; 4];
                le[..value_bytes].copy_from_slice(&b[..value_bytes]);
                b = &b[value_bytes..];
                out.extend(std::iter::repeat_n(u32::from_le_bytes(le), (header >> 1) as usize));
            }
        }
        assert!(b.is_empty(), "{} bytes left over", b.len());
        out.truncate(n);
        out
    }

    #[test]
    fn rle_hybrid_round_trips_runs_literals_and_widths() {
        let mut state = 7u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for case in 0..2000 {
            let width = [0u8, 1, 2, 3, 7, 8, 9, 12, 16, 17, 24, 31, 32][case % 13];
            let max = if width == 32 { u32::MAX } else { (1u32 << width) - 1 };
            let n = (next() % 1200) as usize;
            let mut values = Vec::with_capacity(n);
            while values.len() < n {
                let v = (next() as u32) & max;
                let run = match next() % 4 {
                    0 => (next() % 40) as usize,
                    _ => 1 + (next() % 3) as usize,
                };
                values.extend(std::iter::repeat_n(v, run.min(n - values.len())));
            }
            let mut out = Vec::new();
            rle_hybrid(&values, width, &mut out);
            assert_eq!(decode(&out, width, n), values, "case {case}, width {width}");
        }
    }

    #[test]
    fn definition_levels_follow_nullability() {
        let f = |n| Field::new("x", DataType::Utf8, n);
        let l = Levels::new(&f(true), &f(true), &f(true));
        assert_eq!(l, Levels { list_null: Some(0), empty: 1, struct_null: Some(2), leaf_null: Some(3), max: 4 });
        let l = Levels::new(&f(false), &f(false), &f(true));
        assert_eq!(l, Levels { list_null: None, empty: 0, struct_null: None, leaf_null: Some(1), max: 2 });
        let l = Levels::new(&f(false), &f(false), &f(false));
        assert_eq!(l.max, 1);
    }
}
