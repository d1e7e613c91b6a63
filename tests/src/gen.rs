//! `probe-gen`: synthetic tables of time-stamped network measurements, shaped like the real
//! thing, for tests and benchmarks.
//!
//! # The data
//! One row per measurement, columns in this order:
//!
//! | column | type | nulls | content |
//! |---|---|---|---|
//! | `src_addr` | Utf8 | never | the key: an IPv4 (~80%) or IPv6 (~20%) address string, unique per key |
//! | `event_time` | Timestamp(µs, "UTC") | never | four weeks from 2024-01-01T00:00:00Z, with sessions and gaps |
//! | `dst_addr` | Utf8 | never | one of a few destinations per key, from a pool of 4096 addresses |
//! | `rtt_ms` | Float64 | ~2% | round-trip time, log-normal per key and destination, 3 decimals |
//! | `ttl` | UInt8 | ~1% | initial TTL (64/128/255) minus the key's hop count |
//! | `proto` | Utf8 | never | `icmp`, `udp` or `tcp` |
//! | `probe_id` | Int64 | never | the measurement id, unique: `0..rows`, numbered by key index, then time |
//!
//! Measurements per key are heavy-tailed (Lomax/Pareto weights with alpha 1.4, normalised so
//! the total is exactly `rows`; every key has at least one): most keys have a handful, the
//! largest 100k+ at tens of millions of rows. About 1% of a key's measurements repeat the
//! previous timestamp (ties).
//!
//! # Determinism
//! Everything comes from a small built-in PRNG (xoshiro256++ seeded through SplitMix64) whose
//! streams are derived from `(seed, purpose, key index)`, so a key's rows depend only on
//! `(rows, keys, seed)`: the same options give byte-identical files, and the three orders hold
//! the same multiset of rows (only the order and the split into files differ).
//!
//! # Orders
//! - [`Order::Sorted`]: rows by (`src_addr` bytes, `event_time`) ascending across all files;
//!   file `i` holds a contiguous key range of about `rows / files` rows.
//! - [`Order::SortedPerFile`]: like daily exports: file `i` holds the rows of time window `i`
//!   (the four weeks cut into `files` equal windows), each file sorted by (key, time); keys
//!   appear in many files.
//! - [`Order::Shuffled`]: keys are visited in a random permutation, in chunks of about
//!   `chunk_rows` rows; the rows of a chunk are shuffled together, so keys are not contiguous
//!   and times are not ordered, while memory stays bounded by the chunk.
//!
//! Rows are streamed in batches of `batch_rows`; memory holds the key list (about 50 bytes a
//! key), one batch per open file and, for `shuffled`, one chunk.

use std::fmt::Write as _;
use std::fs::File;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, Float64Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder, UInt8Builder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use probe_core::output::{temp_beside, OutputOptions};
use probe_core::progress::Progress;
use probe_core::{Error, Result};

/// First instant of the time window: 2024-01-01T00:00:00Z, in microseconds since the epoch.
pub const WINDOW_START_US: i64 = 1_704_067_200_000_000;
/// Length of the time window: 28 days, in microseconds. Every timestamp falls inside it.
pub const WINDOW_US: i64 = 28 * 86_400 * 1_000_000;
/// Default rows per batch handed to the writer.
pub const DEFAULT_BATCH_ROWS: usize = 64 * 1024;
/// Default rows per shuffled chunk.
pub const DEFAULT_CHUNK_ROWS: usize = 1 << 20;
/// Default Parquet row-group size in rows.
pub const DEFAULT_ROW_GROUP_ROWS: usize = 1 << 20;
/// Destinations in the shared pool.
const DST_POOL: usize = 4096;
/// Tail index of the per-key weights.
const ALPHA: f64 = 1.4;

/// The three row orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Order {
    /// Sorted by (src_addr bytes, event_time) across all files: each file holds a contiguous
    /// key range of about rows/files rows, so the files concatenated in name order are sorted.
    #[default]
    Sorted,
    /// Like daily exports: file i holds the rows of time window i (the four weeks cut into
    /// --files equal windows), each file sorted by (src_addr, event_time); keys appear in
    /// many files.
    SortedPerFile,
    /// Keys visited in a random permutation, in chunks of about 1M rows; the rows of a chunk
    /// are shuffled together: keys are not contiguous and times are not ordered, while memory
    /// stays bounded by one chunk. Files split the rows evenly.
    Shuffled,
}

impl Order {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Order::Sorted => "sorted",
            Order::SortedPerFile => "sorted-per-file",
            Order::Shuffled => "shuffled",
        }
    }
}

/// What to generate and where.
#[derive(Debug, Clone)]
pub struct GenConfig {
    /// Total measurements (rows), exactly.
    pub rows: u64,
    /// Distinct keys (`src_addr` values), exactly; at most `rows` (each key has a row).
    pub keys: u64,
    /// Seed of every random choice.
    pub seed: u64,
    /// Row order and split into files.
    pub order: Order,
    /// Number of output files `part-00000.parquet` ... (all written, some may be empty).
    pub files: usize,
    /// Output directory (created if missing). Not used by [`generate_in_memory`].
    pub out_dir: PathBuf,
    /// Parquet row-group size in rows; `None` = [`DEFAULT_ROW_GROUP_ROWS`], or less for
    /// `sorted-per-file` with many files (all files are open at once).
    pub row_group_rows: Option<usize>,
    /// Rows per batch ([`DEFAULT_BATCH_ROWS`]).
    pub batch_rows: usize,
    /// Rows per shuffled chunk ([`DEFAULT_CHUNK_ROWS`]).
    pub chunk_rows: usize,
    /// Parquet compression (zstd level 1 by default).
    pub compression: Compression,
}

impl GenConfig {
    /// Defaults for `rows` rows written to `out_dir`: `rows / 30` keys, seed 0, sorted, one file.
    pub fn new(rows: u64, out_dir: impl Into<PathBuf>) -> GenConfig {
        GenConfig {
            rows,
            keys: default_keys(rows),
            seed: 0,
            order: Order::Sorted,
            files: 1,
            out_dir: out_dir.into(),
            row_group_rows: None,
            batch_rows: DEFAULT_BATCH_ROWS,
            chunk_rows: DEFAULT_CHUNK_ROWS,
            compression: OutputOptions::default().compression,
        }
    }

    fn validate(&self) -> Result<()> {
        if self.keys > self.rows {
            return Err(Error::config(format!(
                "--keys {} is more than --rows {}: every key has at least one measurement; lower --keys",
                self.keys, self.rows
            )));
        }
        if self.rows > 0 && self.keys == 0 {
            return Err(Error::config("--keys must be at least 1 when --rows is not 0"));
        }
        if self.keys > u64::from(u32::MAX) {
            return Err(Error::config(format!("--keys {} is too many; at most {}", self.keys, u32::MAX)));
        }
        if self.rows > 1 << 50 {
            return Err(Error::config(format!("--rows {} is too many; at most 2^50", self.rows)));
        }
        if self.files == 0 || self.files > 100_000 {
            return Err(Error::config(format!("--files {} is out of range; use 1 to 100000", self.files)));
        }
        if self.batch_rows == 0 || self.chunk_rows == 0 || self.row_group_rows == Some(0) {
            return Err(Error::config("batch, chunk and row-group sizes must be at least 1 row"));
        }
        Ok(())
    }

    fn row_group_rows(&self) -> usize {
        match self.row_group_rows {
            Some(n) => n,
            // Every file of sorted-per-file is open at once: keep their open row groups small.
            None if self.order == Order::SortedPerFile && self.files > 4 => {
                (4 * DEFAULT_ROW_GROUP_ROWS / self.files).max(128 * 1024)
            }
            None => DEFAULT_ROW_GROUP_ROWS,
        }
    }
}

/// The default key count for `rows` rows: one key per 30 measurements (at least 1).
pub fn default_keys(rows: u64) -> u64 {
    if rows == 0 {
        0
    } else {
        (rows / 30).max(1)
    }
}

/// What a run produced.
#[derive(Debug, Clone, Default)]
pub struct GenStats {
    /// Rows written.
    pub rows: u64,
    /// Keys written.
    pub keys: u64,
    /// The files, in order (empty for [`generate_in_memory`]).
    pub files: Vec<PathBuf>,
    /// Rows in each file.
    pub file_rows: Vec<u64>,
    /// Measurements of the largest key.
    pub max_key_rows: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// The schema of every file.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("src_addr", DataType::Utf8, false),
        Field::new("event_time", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false),
        Field::new("dst_addr", DataType::Utf8, false),
        Field::new("rtt_ms", DataType::Float64, true),
        Field::new("ttl", DataType::UInt8, true),
        Field::new("proto", DataType::Utf8, false),
        Field::new("probe_id", DataType::Int64, false),
    ]))
}

/// The name of file `i`: `part-00000.parquet`.
pub fn file_name(i: usize) -> String {
    format!("part-{i:05}.parquet")
}

/// Parse a count: `1000000`, `1_000_000`, `10k`, `2M`, `1.5G` (decimal multipliers k/M/G/T).
pub fn parse_count(s: &str) -> std::result::Result<u64, String> {
    let t: String = s.trim().chars().filter(|c| *c != '_' && *c != ',').collect();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m = match c {
                'k' | 'K' => 1e3,
                'm' | 'M' => 1e6,
                'g' | 'G' | 'b' | 'B' => 1e9,
                't' | 'T' => 1e12,
                _ => return Err(format!("`{s}`: unknown suffix `{c}`; write a count like 1000, 10k, 2M or 1G")),
            };
            (&t[..i], m)
        }
        _ => (t.as_str(), 1.0),
    };
    if num.is_empty() {
        return Err(format!("`{s}` is not a count; write it like 1000, 10k, 2M or 1G"));
    }
    if let Ok(n) = num.parse::<u64>() {
        return n.checked_mul(mult as u64).ok_or_else(|| format!("`{s}` is too large"));
    }
    match num.parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => {
            let v = x * mult;
            if v.fract() != 0.0 {
                Err(format!("`{s}` is not a whole number"))
            } else if v > 1e18 {
                Err(format!("`{s}` is too large"))
            } else {
                Ok(v as u64)
            }
        }
        _ => Err(format!("`{s}` is not a count; write it like 1000, 10k, 2M or 1G")),
    }
}

// ---------------------------------------------------------------------------------------------
// Random numbers: xoshiro256++ seeded through SplitMix64, stable forever (no dependency on the
// `rand` crate's algorithm choices), one stream per (seed, purpose, index).

const TAG_KEY: u64 = 1;
const TAG_COUNT: u64 = 2;
const TAG_ROWS: u64 = 3;
const TAG_DST: u64 = 4;
const TAG_PERM: u64 = 5;
const TAG_SHUFFLE: u64 = 6;
const TAG_GAPS: u64 = 7;

fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[derive(Debug, Clone)]
struct Rng {
    s: [u64; 4],
}

impl Rng {
    fn new(seed: u64, tag: u64, index: u64) -> Rng {
        let mut x = seed;
        let a = splitmix(&mut x);
        let mut x = a ^ tag.wrapping_mul(0xD6E8_FEB8_6659_FD93);
        let b = splitmix(&mut x);
        let mut x = b ^ index;
        let c = splitmix(&mut x);
        let mut x = c;
        Rng { s: [splitmix(&mut x), splitmix(&mut x), splitmix(&mut x), splitmix(&mut x) | 1] }
    }

    #[inline]
    fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    #[inline]
    fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in 0..n (n > 0), multiply-shift (bias below 2^-40 for our n).
    #[inline]
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    #[inline]
    fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }

    /// Exponential with mean 1.
    #[inline]
    fn exp(&mut self) -> f64 {
        -(1.0 - self.f64()).ln()
    }

    /// Standard normal (Box-Muller, one value).
    fn normal(&mut self) -> f64 {
        let u = 1.0 - self.f64();
        let v = self.f64();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

// ---------------------------------------------------------------------------------------------
// Keys.

fn bij32(x: u32, salt: u32) -> u32 {
    let mut x = x.wrapping_add(salt);
    x ^= x >> 16;
    x = x.wrapping_mul(0x7FEB_352D);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846C_A68B);
    x ^ (x >> 16)
}

fn bij48(x: u64, salt: u64) -> u64 {
    const M: u64 = (1 << 48) - 1;
    let mut x = x.wrapping_add(salt) & M;
    x ^= x >> 24;
    x = x.wrapping_mul(0x9E37_79B9_7F4B) & M;
    x ^= x >> 21;
    x = x.wrapping_mul(0xC2B2_AE3D_27D5) & M;
    x ^ (x >> 24)
}

/// Append key `k`'s address to `out`. Unique per key: IPv4 from a bijection of `k` on 32 bits,
/// IPv6 with a bijection of `k` in bits 16..64.
fn push_key(out: &mut String, seed: u64, k: u64) {
    let mut rng = Rng::new(seed, TAG_KEY, k);
    let salt = Rng::new(seed, TAG_KEY, u64::MAX).next_u64();
    if rng.below(5) != 0 {
        let _ = write!(out, "{}", Ipv4Addr::from(bij32(k as u32, salt as u32)));
    } else {
        const PREFIXES: [u16; 8] = [0x2001, 0x2003, 0x2400, 0x2600, 0x2604, 0x2a00, 0x2a01, 0x2a02];
        let top = u64::from(PREFIXES[rng.below(8) as usize]);
        let hi = (top << 48) | bij48(k, salt >> 16);
        let lo = if rng.chance(0.4) { 1 + rng.below(255) } else { rng.next_u64() };
        let _ = write!(out, "{}", Ipv6Addr::from((u128::from(hi) << 64) | u128::from(lo)));
    }
}

fn dst_pool(seed: u64) -> (Vec<String>, Vec<f64>) {
    let mut rng = Rng::new(seed, TAG_DST, 0);
    let mut names = Vec::with_capacity(DST_POOL);
    let mut factors = Vec::with_capacity(DST_POOL);
    for _ in 0..DST_POOL {
        let name = if rng.chance(0.85) {
            Ipv4Addr::from(rng.next_u64() as u32).to_string()
        } else {
            let a = (0x2001u128 << 112) | (u128::from(rng.next_u64() >> 16) << 64) | u128::from(rng.below(4096) + 1);
            Ipv6Addr::from(a).to_string()
        };
        names.push(name);
        factors.push((0.6 * rng.normal()).exp());
    }
    (names, factors)
}

/// The key list: strings, row ranges, and the order to visit them in.
struct Plan {
    /// Concatenated key strings; key `k` is `key_buf[key_off[k]..key_off[k + 1]]`.
    key_buf: String,
    key_off: Vec<u32>,
    /// Key `k` owns rows (probe ids) `row_off[k]..row_off[k + 1]`.
    row_off: Vec<u64>,
    /// Key indices in visiting order.
    visit: Vec<u32>,
    dst_names: Vec<String>,
    dst_factors: Vec<f64>,
}

impl Plan {
    fn build(cfg: &GenConfig) -> Result<Plan> {
        let n = cfg.keys;
        let mut key_buf = String::with_capacity((n as usize).saturating_mul(16));
        let mut key_off = Vec::with_capacity(n as usize + 1);
        key_off.push(0u32);
        for k in 0..n {
            push_key(&mut key_buf, cfg.seed, k);
            let off = u32::try_from(key_buf.len()).map_err(|_| {
                Error::config(format!("--keys {n} is too many: the key strings exceed 4 GiB; use fewer keys"))
            })?;
            key_off.push(off);
        }

        // Heavy-tailed weights, capped so one key cannot take everything, then cumulative
        // rounding: exact total, every key at least one row.
        let cap = (n.max(1) as f64).powf(1.0 / ALPHA) * 3.0;
        let weight = |k: u64| {
            let u = 1.0 - Rng::new(cfg.seed, TAG_COUNT, k).f64();
            (u.powf(-1.0 / ALPHA) - 1.0).min(cap)
        };
        let total: f64 = (0..n).map(weight).sum();
        let extra = cfg.rows - n;
        let mut row_off = Vec::with_capacity(n as usize + 1);
        row_off.push(0u64);
        let mut cum = 0.0f64;
        for k in 0..n {
            cum += weight(k);
            let share = if total > 0.0 { ((cum / total) * extra as f64).round() as u64 } else { 0 };
            let share = if k + 1 == n { extra } else { share.min(extra) };
            row_off.push(k + 1 + share);
        }

        let visit = match cfg.order {
            Order::Sorted | Order::SortedPerFile => {
                // Sort on a 12-byte big-endian prefix held inline (no 0 bytes in the strings, so
                // zero padding sorts a prefix first), full strings only on equal prefixes.
                let key = |k: u32| &key_buf.as_bytes()[key_off[k as usize] as usize..key_off[k as usize + 1] as usize];
                let mut tagged: Vec<(u64, u32, u32)> = (0..n as u32)
                    .map(|k| {
                        let s = key(k);
                        let mut p = [0u8; 12];
                        let m = s.len().min(12);
                        p[..m].copy_from_slice(&s[..m]);
                        let [a0, a1, a2, a3, a4, a5, a6, a7, b0, b1, b2, b3] = p;
                        (u64::from_be_bytes([a0, a1, a2, a3, a4, a5, a6, a7]), u32::from_be_bytes([b0, b1, b2, b3]), k)
                    })
                    .collect();
                tagged.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)).then_with(|| key(a.2).cmp(key(b.2))));
                tagged.into_iter().map(|t| t.2).collect()
            }
            Order::Shuffled => {
                let mut visit: Vec<u32> = (0..n as u32).collect();
                let mut rng = Rng::new(cfg.seed, TAG_PERM, 0);
                for i in (1..visit.len()).rev() {
                    let j = rng.below(i as u64 + 1) as usize;
                    visit.swap(i, j);
                }
                visit
            }
        };
        let (dst_names, dst_factors) = dst_pool(cfg.seed);
        Ok(Plan { key_buf, key_off, row_off, visit, dst_names, dst_factors })
    }

    fn key(&self, k: u32) -> &str {
        &self.key_buf[self.key_off[k as usize] as usize..self.key_off[k as usize + 1] as usize]
    }

    fn rows_of(&self, k: u32) -> (u64, u64) {
        let a = self.row_off[k as usize];
        (a, self.row_off[k as usize + 1] - a)
    }

    fn max_key_rows(&self) -> u64 {
        self.row_off.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0)
    }
}

// ---------------------------------------------------------------------------------------------
// Rows.

#[derive(Debug, Clone, Copy)]
struct Row {
    time: i64,
    probe_id: i64,
    rtt: Option<f64>,
    dst: u16,
    ttl: Option<u8>,
    proto: u8,
}

const PROTOS: [&str; 3] = ["icmp", "udp", "tcp"];

/// One key's measurements, generated in time order from the key's own streams.
///
/// Times: `n + 1` gaps in abstract units (96% regular, uniform 0.5..1.5; 3% session breaks,
/// exponential with mean 20; 1% zero, a tie) are summed once ahead with a copy of the gap
/// stream, then replayed and scaled so the key's measurements fill its active span exactly
/// (the whole window for 70% of keys, a random part of it for the rest).
struct KeyRows {
    rng: Rng,
    gaps: Rng,
    left: u64,
    next_id: i64,
    start_off: f64,
    us_per_unit: f64,
    cum: f64,
    dsts: [u16; 8],
    ndst: u64,
    rtt_base: f64,
    ttl_base: u8,
    proto: u8,
}

#[inline]
fn gap_units(rng: &mut Rng) -> f64 {
    let r = rng.f64();
    if r < 0.01 {
        0.0
    } else if r < 0.04 {
        20.0 * rng.exp()
    } else {
        0.5 + rng.f64()
    }
}

impl KeyRows {
    fn new(seed: u64, k: u32, first_id: u64, n: u64) -> KeyRows {
        let mut rng = Rng::new(seed, TAG_ROWS, u64::from(k));
        let ndst = 1 + rng.below(8);
        let mut dsts = [0u16; 8];
        for d in dsts.iter_mut() {
            *d = rng.below(DST_POOL as u64) as u16;
        }
        let rtt_base = (30f64.ln() + 0.9 * rng.normal()).exp().clamp(0.2, 2000.0);
        let init = match rng.below(10) {
            0..=5 => 64u8,
            6..=8 => 128,
            _ => 255,
        };
        let ttl_base = init - (3 + rng.below(25)) as u8;
        let proto = match rng.below(20) {
            0..=11 => 0,
            12..=16 => 1,
            _ => 2,
        };
        let w = WINDOW_US as f64;
        let (start, span) = if rng.chance(0.7) {
            (0.0, w)
        } else {
            let span = w * (0.05 + 0.95 * rng.f64());
            (rng.f64() * (w - span), span)
        };
        let gaps = Rng::new(seed, TAG_GAPS, u64::from(k));
        let mut ahead = gaps.clone();
        let total: f64 = (0..=n).map(|_| gap_units(&mut ahead)).sum();
        // Keep the last measurement strictly inside the span whatever the rounding.
        let us_per_unit = if total > 0.0 { (span - 1.0).max(0.0) / total } else { 0.0 };
        KeyRows {
            rng,
            gaps,
            left: n,
            next_id: first_id as i64,
            start_off: start,
            us_per_unit,
            cum: 0.0,
            dsts,
            ndst,
            rtt_base,
            ttl_base,
            proto,
        }
    }

    #[inline]
    fn next(&mut self, dst_factors: &[f64]) -> Option<Row> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        self.cum += gap_units(&mut self.gaps);
        let time = WINDOW_START_US + (self.start_off + self.cum * self.us_per_unit) as i64;
        let rng = &mut self.rng;
        let dst = self.dsts[rng.below(self.ndst) as usize];
        let rtt = if rng.chance(0.02) {
            None
        } else {
            let v = self.rtt_base * dst_factors[dst as usize] * (1.0 + 0.3 * rng.exp());
            Some((v * 1000.0).round() / 1000.0)
        };
        let ttl = if rng.chance(0.01) { None } else { Some(self.ttl_base - u8::from(rng.chance(0.05))) };
        let proto = if rng.chance(0.8) { self.proto } else { rng.below(3) as u8 };
        let row = Row { time, probe_id: self.next_id, rtt, dst, ttl, proto };
        self.next_id += 1;
        Some(row)
    }
}

/// Arrow builders for one batch.
struct Batcher {
    schema: SchemaRef,
    cap: usize,
    len: usize,
    src: StringBuilder,
    time: TimestampMicrosecondBuilder,
    dst: StringBuilder,
    rtt: Float64Builder,
    ttl: UInt8Builder,
    proto: StringBuilder,
    id: Int64Builder,
}

impl Batcher {
    fn new(schema: SchemaRef, cap: usize) -> Batcher {
        Batcher {
            src: StringBuilder::with_capacity(cap, cap * 16),
            time: TimestampMicrosecondBuilder::with_capacity(cap).with_timezone("UTC"),
            dst: StringBuilder::with_capacity(cap, cap * 14),
            rtt: Float64Builder::with_capacity(cap),
            ttl: UInt8Builder::with_capacity(cap),
            proto: StringBuilder::with_capacity(cap, cap * 4),
            id: Int64Builder::with_capacity(cap),
            schema,
            cap,
            len: 0,
        }
    }

    #[inline]
    fn push(&mut self, key: &str, row: &Row, dst_names: &[String]) {
        self.src.append_value(key);
        self.time.append_value(row.time);
        self.dst.append_value(&dst_names[row.dst as usize]);
        self.rtt.append_option(row.rtt);
        self.ttl.append_option(row.ttl);
        self.proto.append_value(PROTOS[row.proto as usize]);
        self.id.append_value(row.probe_id);
        self.len += 1;
    }

    fn full(&self) -> bool {
        self.len >= self.cap
    }

    fn take(&mut self) -> Result<RecordBatch> {
        let fresh = Batcher::new(self.schema.clone(), self.cap);
        let mut old = std::mem::replace(self, fresh);
        let cols: Vec<ArrayRef> = vec![
            Arc::new(old.src.finish()),
            Arc::new(old.time.finish()),
            Arc::new(old.dst.finish()),
            Arc::new(old.rtt.finish()),
            Arc::new(old.ttl.finish()),
            Arc::new(old.proto.finish()),
            Arc::new(old.id.finish()),
        ];
        RecordBatch::try_new(old.schema.clone(), cols).map_err(|e| Error::arrow("probe-gen: building a batch", e))
    }
}

/// What the generator hands to its consumer.
#[derive(Debug)]
pub enum Event {
    /// A batch for file `file`.
    Batch {
        /// File index.
        file: usize,
        /// The rows.
        batch: RecordBatch,
    },
    /// File `file` will get no more batches.
    FileDone {
        /// File index.
        file: usize,
    },
}

type Emit<'a> = dyn FnMut(Event) -> Result<()> + 'a;

struct Gen<'a> {
    cfg: &'a GenConfig,
    plan: &'a Plan,
    emit: &'a mut Emit<'a>,
}

impl Gen<'_> {
    fn flush(&mut self, b: &mut Batcher, file: usize) -> Result<()> {
        if b.len > 0 {
            let batch = b.take()?;
            (self.emit)(Event::Batch { file, batch })?;
        }
        Ok(())
    }

    /// Rows where file `f` ends (exclusive), by row count.
    fn boundary(&self, f: usize) -> u64 {
        ((u128::from(self.cfg.rows) * (f as u128 + 1)) / self.cfg.files as u128) as u64
    }

    fn sorted(&mut self) -> Result<()> {
        let plan = self.plan;
        let mut b = Batcher::new(schema(), self.cfg.batch_rows);
        let mut file = 0usize;
        let mut done = 0u64;
        for &k in &plan.visit {
            while file + 1 < self.cfg.files && done >= self.boundary(file) {
                self.flush(&mut b, file)?;
                (self.emit)(Event::FileDone { file })?;
                file += 1;
            }
            let key = plan.key(k);
            let (first, n) = plan.rows_of(k);
            let mut rows = KeyRows::new(self.cfg.seed, k, first, n);
            while let Some(row) = rows.next(&plan.dst_factors) {
                b.push(key, &row, &plan.dst_names);
                if b.full() {
                    self.flush(&mut b, file)?;
                }
            }
            done += n;
        }
        self.flush(&mut b, file)?;
        for f in file..self.cfg.files {
            (self.emit)(Event::FileDone { file: f })?;
        }
        Ok(())
    }

    fn sorted_per_file(&mut self) -> Result<()> {
        let plan = self.plan;
        let files = self.cfg.files;
        let schema = schema();
        // Every file has a batch open: share the batch budget between them.
        let cap = if files > 4 {
            (self.cfg.batch_rows * 4 / files).max(8192.min(self.cfg.batch_rows))
        } else {
            self.cfg.batch_rows
        };
        let mut bs: Vec<Batcher> = (0..files).map(|_| Batcher::new(schema.clone(), cap)).collect();
        for &k in &plan.visit {
            let key = plan.key(k);
            let (first, n) = plan.rows_of(k);
            let mut rows = KeyRows::new(self.cfg.seed, k, first, n);
            while let Some(row) = rows.next(&plan.dst_factors) {
                let f = bucket(row.time, files);
                let b = &mut bs[f];
                b.push(key, &row, &plan.dst_names);
                if b.full() {
                    self.flush(b, f)?;
                }
            }
        }
        for (f, b) in bs.iter_mut().enumerate() {
            self.flush(b, f)?;
            (self.emit)(Event::FileDone { file: f })?;
        }
        Ok(())
    }

    fn shuffled(&mut self) -> Result<()> {
        let plan = self.plan;
        let mut b = Batcher::new(schema(), self.cfg.batch_rows);
        let mut file = 0usize;
        let mut done = 0u64;
        let mut chunk: Vec<(u32, Row)> = Vec::new();
        let mut chunk_no = 0u64;
        let mut i = 0usize;
        while i < plan.visit.len() {
            chunk.clear();
            while i < plan.visit.len() && (chunk.is_empty() || chunk.len() < self.cfg.chunk_rows) {
                let k = plan.visit[i];
                let (first, n) = plan.rows_of(k);
                let mut rows = KeyRows::new(self.cfg.seed, k, first, n);
                while let Some(row) = rows.next(&plan.dst_factors) {
                    chunk.push((k, row));
                }
                i += 1;
            }
            let mut rng = Rng::new(self.cfg.seed, TAG_SHUFFLE, chunk_no);
            chunk_no += 1;
            for j in (1..chunk.len()).rev() {
                let r = rng.below(j as u64 + 1) as usize;
                chunk.swap(j, r);
            }
            for (k, row) in &chunk {
                while file + 1 < self.cfg.files && done >= self.boundary(file) {
                    self.flush(&mut b, file)?;
                    (self.emit)(Event::FileDone { file })?;
                    file += 1;
                }
                b.push(plan.key(*k), row, &plan.dst_names);
                done += 1;
                if b.full() {
                    self.flush(&mut b, file)?;
                }
            }
        }
        self.flush(&mut b, file)?;
        for f in file..self.cfg.files {
            (self.emit)(Event::FileDone { file: f })?;
        }
        Ok(())
    }
}

/// The file (time window) of a timestamp in `sorted-per-file` order.
pub fn bucket(time: i64, files: usize) -> usize {
    let off = (time - WINDOW_START_US).max(0) as u128;
    ((off * files as u128 / WINDOW_US as u128) as usize).min(files - 1)
}

fn run_plan(cfg: &GenConfig, plan: &Plan, emit: &mut Emit<'_>) -> Result<()> {
    let mut g = Gen { cfg, plan, emit };
    match cfg.order {
        Order::Sorted => g.sorted(),
        Order::SortedPerFile => g.sorted_per_file(),
        Order::Shuffled => g.shuffled(),
    }
}

/// Generate the data and hand it to `emit` as [`Event`]s (batches tagged with their file
/// index, and a `FileDone` per file), in the calling thread. `cfg.out_dir` is not used.
pub fn generate_events(cfg: &GenConfig, emit: &mut dyn FnMut(Event) -> Result<()>) -> Result<GenStats> {
    let start = Instant::now();
    cfg.validate()?;
    let plan = Plan::build(cfg)?;
    run_plan(cfg, &plan, emit)?;
    Ok(GenStats {
        rows: cfg.rows,
        keys: cfg.keys,
        files: Vec::new(),
        file_rows: Vec::new(),
        max_key_rows: plan.max_key_rows(),
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Generate into memory: the batches of each file (for tests on small configurations).
pub fn generate_in_memory(cfg: &GenConfig) -> Result<(Vec<Vec<RecordBatch>>, GenStats)> {
    let mut files: Vec<Vec<RecordBatch>> = vec![Vec::new(); cfg.files];
    let mut stats = generate_events(cfg, &mut |ev| {
        if let Event::Batch { file, batch } = ev {
            files[file].push(batch);
        }
        Ok(())
    })?;
    stats.file_rows = files.iter().map(|f| f.iter().map(|b| b.num_rows() as u64).sum()).collect();
    Ok((files, stats))
}

/// Generate and write `cfg.out_dir/part-NNNNN.parquet`, quietly.
pub fn generate(cfg: &GenConfig) -> Result<GenStats> {
    generate_with_progress(cfg, &Progress::new("probe-gen", true, None))
}

/// One output file: written under a temporary dot-name, renamed into place when every file
/// is done, so a failed or interrupted run leaves no `part-*` file behind. `T` is
/// `tempfile::TempPath` (from [`temp_beside`]; generic only to spare this crate the dependency).
struct FileOut<T> {
    writer: Option<ArrowWriter<File>>,
    temp: T,
    dest: PathBuf,
    rows: u64,
}

/// Parquet properties: dictionary for the strings and small integers; no dictionary for the
/// high-cardinality columns (it only costs time before falling back), and delta encoding for
/// the time and id columns (smaller, and less for zstd to do).
fn writer_properties(cfg: &GenConfig) -> WriterProperties {
    let mut b = WriterProperties::builder()
        .set_compression(cfg.compression)
        .set_max_row_group_row_count(Some(cfg.row_group_rows()));
    for col in ["event_time", "rtt_ms", "probe_id"] {
        b = b.set_column_dictionary_enabled(ColumnPath::from(col), false);
    }
    for col in ["event_time", "probe_id"] {
        b = b.set_column_encoding(ColumnPath::from(col), Encoding::DELTA_BINARY_PACKED);
    }
    b.build()
}

/// Generate and write the files, counting rows on `progress` (the caller prints the summary).
///
/// Rows are generated in a second thread while this one encodes Parquet.
pub fn generate_with_progress(cfg: &GenConfig, progress: &Progress) -> Result<GenStats> {
    let start = Instant::now();
    cfg.validate()?;
    let dir = &cfg.out_dir;
    prepare_dir(dir, cfg.files)?;
    let plan = Plan::build(cfg)?;

    let props = writer_properties(cfg);
    let mut outs = Vec::with_capacity(cfg.files);
    for i in 0..cfg.files {
        let dest = dir.join(file_name(i));
        let (file, temp) = temp_beside(&dest)?;
        let writer = ArrowWriter::try_new(file, schema(), Some(props.clone()))
            .map_err(|e| Error::parquet(format!("writing {}", dest.display()), e))?;
        outs.push(FileOut { writer: Some(writer), temp, dest, rows: 0 });
    }

    let (tx, rx) = sync_channel::<Event>(4);
    let (gen_result, write_result) = std::thread::scope(|s| {
        let plan = &plan;
        let producer = s.spawn(move || {
            run_plan(cfg, plan, &mut |ev| tx.send(ev).map_err(|_| Error::internal("probe-gen: the writer stopped")))
        });
        let write_result = write_events(rx, &mut outs, progress);
        let gen_result =
            producer.join().unwrap_or_else(|_| Err(Error::internal("probe-gen: the generator thread panicked")));
        (gen_result, write_result)
    });
    write_result?;
    gen_result?;
    if let Some(out) = outs.iter().find(|o| o.writer.is_some()) {
        return Err(Error::internal(format!("{}: never finished", out.dest.display())));
    }

    let file_rows = outs.iter().map(|o| o.rows).collect();
    let mut files = Vec::with_capacity(outs.len());
    for out in outs {
        probe_core::cleanup::forget(&out.temp);
        out.temp.persist(&out.dest).map_err(|e| Error::io(&out.dest, e.error))?;
        files.push(out.dest);
    }
    Ok(GenStats {
        rows: cfg.rows,
        keys: cfg.keys,
        files,
        file_rows,
        max_key_rows: plan.max_key_rows(),
        seconds: start.elapsed().as_secs_f64(),
    })
}

fn write_events<T>(rx: Receiver<Event>, outs: &mut [FileOut<T>], progress: &Progress) -> Result<()> {
    for ev in rx {
        match ev {
            Event::Batch { file, batch } => {
                let out = &mut outs[file];
                let name = out.dest.display();
                let writer =
                    out.writer.as_mut().ok_or_else(|| Error::internal(format!("{name}: written after done")))?;
                writer.write(&batch).map_err(|e| Error::parquet(format!("writing {name}"), e))?;
                out.rows += batch.num_rows() as u64;
                progress.inc(batch.num_rows());
            }
            Event::FileDone { file } => {
                let out = &mut outs[file];
                if let Some(writer) = out.writer.take() {
                    writer.close().map_err(|e| Error::parquet(format!("writing {}", out.dest.display()), e))?;
                }
            }
        }
    }
    Ok(())
}

/// Create the output directory; refuse one holding more `part-*.parquet` files than this run
/// writes (a mix of two runs would be read as one data set).
fn prepare_dir(dir: &Path, files: usize) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        return Err(Error::config(format!("{}: exists and is not a directory; pass another --out-dir", dir.display())));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let index =
            name.strip_prefix("part-").and_then(|r| r.strip_suffix(".parquet")).and_then(|n| n.parse::<usize>().ok());
        if let Some(i) = index {
            if i >= files {
                return Err(Error::config(format!(
                    "{}: holds {name} from an earlier run with more files; remove the old part-*.parquet files \
                     or use an empty --out-dir",
                    dir.display()
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray, UInt8Array};

    fn small(order: Order, files: usize) -> GenConfig {
        let mut c = GenConfig::new(20_000, "/nonexistent");
        c.keys = 300;
        c.seed = 7;
        c.order = order;
        c.files = files;
        c.batch_rows = 1000;
        c.chunk_rows = 3000;
        c
    }

    type Rec = (String, i64, String, Option<u64>, Option<u8>, String, i64);

    fn rows_of(batches: &[RecordBatch]) -> Vec<Rec> {
        let mut out = Vec::new();
        for b in batches {
            let col = |i: usize| b.column(i).as_any();
            let src = col(0).downcast_ref::<StringArray>().expect("src");
            let t = col(1).downcast_ref::<TimestampMicrosecondArray>().expect("time");
            let dst = col(2).downcast_ref::<StringArray>().expect("dst");
            let rtt = col(3).downcast_ref::<Float64Array>().expect("rtt");
            let ttl = col(4).downcast_ref::<UInt8Array>().expect("ttl");
            let proto = col(5).downcast_ref::<StringArray>().expect("proto");
            let id = col(6).downcast_ref::<Int64Array>().expect("id");
            for i in 0..b.num_rows() {
                out.push((
                    src.value(i).to_string(),
                    t.value(i),
                    dst.value(i).to_string(),
                    rtt.is_valid(i).then(|| rtt.value(i).to_bits()),
                    ttl.is_valid(i).then(|| ttl.value(i)),
                    proto.value(i).to_string(),
                    id.value(i),
                ));
            }
        }
        out
    }

    fn is_sorted(rows: &[Rec]) -> bool {
        rows.windows(2).all(|w| (w[0].0.as_bytes(), w[0].1) <= (w[1].0.as_bytes(), w[1].1))
    }

    #[test]
    fn parse_counts() {
        assert_eq!(parse_count("1000"), Ok(1000));
        assert_eq!(parse_count("1_000_000"), Ok(1_000_000));
        assert_eq!(parse_count("10k"), Ok(10_000));
        assert_eq!(parse_count("2M"), Ok(2_000_000));
        assert_eq!(parse_count("200M"), Ok(200_000_000));
        assert_eq!(parse_count("1.5M"), Ok(1_500_000));
        assert!(parse_count("").is_err());
        assert!(parse_count("x").is_err());
        assert!(parse_count("1.5").is_err());
        assert!(parse_count("-3").is_err());
        assert!(parse_count("3q").is_err());
    }

    #[test]
    fn exact_counts_schema_and_determinism() {
        let cfg = small(Order::Sorted, 3);
        let (a, stats) = generate_in_memory(&cfg).expect("gen");
        let (b, _) = generate_in_memory(&cfg).expect("gen");
        assert_eq!(stats.file_rows.iter().sum::<u64>(), 20_000);
        assert!(a.iter().flatten().all(|x| x.schema() == schema()));
        let ra = rows_of(&a.concat());
        assert_eq!(ra, rows_of(&b.concat()));
        let keys: std::collections::BTreeSet<&str> = ra.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(keys.len(), 300);
        assert!(keys.iter().any(|k| k.contains(':')) && keys.iter().any(|k| k.contains('.')));
        // probe_id is 0..rows exactly once.
        let mut ids: Vec<i64> = ra.iter().map(|r| r.6).collect();
        ids.sort_unstable();
        assert!(ids.iter().enumerate().all(|(i, &id)| i as i64 == id));
        // Inside the window; nulls and ties exist.
        assert!(ra.iter().all(|r| (WINDOW_START_US..WINDOW_START_US + WINDOW_US).contains(&r.1)));
        assert!(ra.iter().any(|r| r.3.is_none()) && ra.iter().any(|r| r.4.is_none()));
        assert!(ra.windows(2).any(|w| w[0].0 == w[1].0 && w[0].1 == w[1].1));
        // A different seed gives different data.
        let mut other = cfg.clone();
        other.seed = 8;
        let (c, _) = generate_in_memory(&other).expect("gen");
        assert_ne!(ra, rows_of(&c.concat()));
    }

    #[test]
    fn orders_hold_and_share_the_multiset() {
        let (sorted, _) = generate_in_memory(&small(Order::Sorted, 3)).expect("gen");
        let all_sorted = rows_of(&sorted.concat());
        assert!(is_sorted(&all_sorted));
        // Files hold contiguous key ranges.
        for w in sorted.windows(2) {
            let (a, b) = (rows_of(&w[0]), rows_of(&w[1]));
            if let (Some(x), Some(y)) = (a.last(), b.first()) {
                assert!(x.0 < y.0);
            }
        }

        let (per_file, _) = generate_in_memory(&small(Order::SortedPerFile, 4)).expect("gen");
        let mut per_file_rows = Vec::new();
        for (f, batches) in per_file.iter().enumerate() {
            let rows = rows_of(batches);
            assert!(!rows.is_empty());
            assert!(is_sorted(&rows), "file {f} not sorted");
            assert!(rows.iter().all(|r| bucket(r.1, 4) == f));
            per_file_rows.extend(rows);
        }
        assert!(!is_sorted(&per_file_rows));

        let (shuffled, _) = generate_in_memory(&small(Order::Shuffled, 2)).expect("gen");
        let shuffled = rows_of(&shuffled.concat());
        assert!(!is_sorted(&shuffled));
        // Keys not contiguous.
        let runs = 1 + shuffled.windows(2).filter(|w| w[0].0 != w[1].0).count();
        assert!(runs > 1000);

        let mut a = per_file_rows;
        a.sort();
        let mut b = shuffled;
        b.sort();
        let mut s = all_sorted;
        s.sort();
        assert_eq!(a, s);
        assert_eq!(b, s);
    }

    #[test]
    fn heavy_tail() {
        let mut cfg = GenConfig::new(1_000_000, "/nonexistent");
        cfg.keys = 33_000;
        let plan = Plan::build(&cfg).expect("plan");
        let counts: Vec<u64> = plan.row_off.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(counts.iter().sum::<u64>(), 1_000_000);
        assert!(counts.iter().all(|&c| c >= 1));
        assert!(plan.max_key_rows() > 2_000, "max {}", plan.max_key_rows());
        assert!(counts.iter().filter(|&&c| c <= 5).count() > 3_000);
        let keys: std::collections::HashSet<&str> = (0..33_000u32).map(|k| plan.key(k)).collect();
        assert_eq!(keys.len(), 33_000);
    }

    #[test]
    fn writes_files_atomically() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = small(Order::SortedPerFile, 3);
        cfg.out_dir = dir.path().join("out");
        let stats = generate(&cfg).expect("gen");
        assert_eq!(stats.files.len(), 3);
        let mut names: Vec<String> = std::fs::read_dir(&cfg.out_dir)
            .expect("read_dir")
            .filter_map(|e| e.ok().and_then(|e| e.file_name().to_str().map(str::to_string)))
            .collect();
        names.sort();
        assert_eq!(names, ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]);
        let first = std::fs::read(&stats.files[0]).expect("read");
        generate(&cfg).expect("again");
        assert_eq!(first, std::fs::read(&stats.files[0]).expect("read"));
        // Fewer files into the same directory: refused.
        cfg.files = 2;
        assert!(generate(&cfg).is_err());
    }

    #[test]
    fn bad_configs() {
        let mut cfg = GenConfig::new(10, "/nonexistent");
        cfg.keys = 11;
        assert!(generate_in_memory(&cfg).is_err());
        cfg.keys = 0;
        assert!(generate_in_memory(&cfg).is_err());
        cfg.keys = 10;
        cfg.files = 0;
        assert!(generate_in_memory(&cfg).is_err());
        let empty = GenConfig::new(0, "/nonexistent");
        let (files, stats) = generate_in_memory(&empty).expect("empty");
        assert_eq!((files.len(), stats.rows), (1, 0));
    }
}
