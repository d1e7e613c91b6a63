//! The output side: one Parquet file, or numbered part files rolled over by size.
//!
//! ```text
//! let mut parts = Parts::rolled(dir, max_file_bytes, schema, opts, row_group_bytes);
//! parts.write(&batch)?;          // may close the current part and open the next
//! let files = parts.finish()?;   // [(path, rows, bytes)]; the parts stay until `commit`
//! ```
//!
//! A part about to grow past the maximum is closed first: the rows that still fit (by the
//! average encoded row size seen so far) go into it, the rest into the next part. Finished
//! parts are removed again if the run fails before [`Parts::commit`], so a failed run leaves
//! no part files that look like a result.

use std::path::PathBuf;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use probe_core::output::{Output, OutputOptions};
use probe_core::{cleanup, Error, Result};

/// One finished output file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Where it is.
    pub path: PathBuf,
    /// Rows in it.
    pub rows: u64,
    /// Its size on disk.
    pub bytes: u64,
}

/// The name of part `n`.
pub fn part_name(n: usize) -> String {
    format!("part-{n:05}.parquet")
}

/// Whether a file name is one this stage writes into an out-dir.
pub fn is_part_name(name: &str) -> bool {
    name.starts_with("part-") && name.ends_with(".parquet")
}

/// Where batches go: a single file (`dir` = None, `single` path) or rolled part files.
pub struct Parts {
    single: Option<PathBuf>,
    dir: Option<PathBuf>,
    max_file_bytes: u64,
    row_group_bytes: usize,
    schema: SchemaRef,
    opts: OutputOptions,
    current: Option<(Output, PathBuf)>,
    written: Vec<Written>,
    /// Encoded bytes per row of the last finished part, to size the first batch of the next.
    bytes_per_row: Option<f64>,
    /// Encoded bytes per decoded byte, from the row groups of parts written so far.
    ratio: Option<f64>,
    /// Bytes a part grows by when closed (footer, indexes): a guess until one is closed.
    footer_bytes: u64,
    committed: bool,
}

impl std::fmt::Debug for Parts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parts").field("dir", &self.dir).field("written", &self.written).finish()
    }
}

impl Parts {
    /// One file at `path`.
    pub fn single(path: PathBuf, schema: SchemaRef, opts: OutputOptions, row_group_bytes: usize) -> Parts {
        Parts::new(Some(path), None, u64::MAX, schema, opts, row_group_bytes)
    }

    /// Part files in `dir` (which must exist), each at most about `max_file_bytes`.
    pub fn rolled(
        dir: PathBuf,
        max_file_bytes: u64,
        schema: SchemaRef,
        opts: OutputOptions,
        row_group_bytes: usize,
    ) -> Parts {
        Parts::new(None, Some(dir), max_file_bytes.max(1), schema, opts, row_group_bytes)
    }

    fn new(
        single: Option<PathBuf>,
        dir: Option<PathBuf>,
        max_file_bytes: u64,
        schema: SchemaRef,
        opts: OutputOptions,
        row_group_bytes: usize,
    ) -> Parts {
        let footer_bytes = 1024 + 256 * schema.fields().len() as u64;
        Parts {
            single,
            dir,
            max_file_bytes,
            row_group_bytes: row_group_bytes.max(1),
            schema,
            opts,
            current: None,
            written: Vec::new(),
            bytes_per_row: None,
            ratio: None,
            footer_bytes,
            committed: false,
        }
    }

    fn open(&mut self) -> Result<()> {
        if self.current.is_some() {
            return Ok(());
        }
        let path = match (&self.single, &self.dir) {
            (Some(p), _) => p.clone(),
            (None, Some(d)) => d.join(part_name(self.written.len())),
            (None, None) => return Err(Error::internal("output without a path")),
        };
        let out = Output::create(Some(&path), self.schema.clone(), &self.opts)?;
        self.current = Some((out, path));
        Ok(())
    }

    /// Finish the current part (if any) and record it.
    fn close(&mut self) -> Result<()> {
        let Some((mut out, path)) = self.current.take() else {
            return Ok(());
        };
        // Everything but the footer, exactly: what finish appends before it.
        out.parquet_settle()?;
        let open_size = out.bytes_written();
        self.ratio = out.parquet_ratio().or(self.ratio);
        let rows = out.finish()?;
        // Registered so that an interrupt or a later error removes it again.
        cleanup::register(&path);
        let bytes = std::fs::metadata(&path).map_err(|e| Error::io(&path, e))?.len();
        if rows > 0 {
            self.bytes_per_row = Some(bytes as f64 / rows as f64);
            self.footer_bytes = bytes.saturating_sub(open_size);
        }
        self.written.push(Written { path, rows, bytes });
        Ok(())
    }

    /// Append a batch, rolling over to new parts as the size limit requires.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let mut rest = batch.clone();
        // Before any part has been finished, the decoded size is the (pessimistic) guess, so
        // the first part's first write cannot overshoot by a whole batch.
        let decoded_per_row = batch.get_array_memory_size() as f64 / batch.num_rows().max(1) as f64;
        while rest.num_rows() > 0 {
            self.open()?;
            // Room for the data: what the footer will add is kept free.
            let max = self.max_file_bytes.saturating_sub(self.footer_bytes).max(1);
            let prior = self.bytes_per_row.unwrap_or(decoded_per_row);
            // Data not yet encoded counts at the ratio learned so far, 1:1 before any.
            let ratio = self.ratio.unwrap_or(1.0);
            let Some((out, _)) = self.current.as_mut() else {
                return Err(Error::internal("no open output"));
            };
            let size = out.parquet_estimated_bytes(ratio);
            let per_row = if out.rows() > 0 { size as f64 / out.rows() as f64 } else { prior };
            let take = match per_row {
                pr if pr > 0.0 && self.dir.is_some() => {
                    let fit = (max.saturating_sub(size) as f64 / pr).floor() as usize;
                    if fit == 0 && out.rows() > 0 {
                        // Judged again once by real bytes, then closed if still no row fits.
                        if !self.learn_ratio()? {
                            self.close()?;
                        }
                        continue;
                    }
                    fit.clamp(1, rest.num_rows())
                }
                _ => rest.num_rows(),
            };
            let now = rest.slice(0, take);
            rest = rest.slice(take, rest.num_rows() - take);
            out.write(&now)?;
            if out.in_progress_bytes() >= self.row_group_bytes {
                out.flush_row_group()?;
            }
            if self.dir.is_some() && out.parquet_estimated_bytes(ratio) >= max {
                let learned = self.learn_ratio()?;
                let still = self.current.as_ref().is_some_and(|(o, _)| o.parquet_estimated_bytes(ratio) >= max);
                if !learned || still {
                    self.close()?;
                }
            }
        }
        Ok(())
    }

    /// Before anything has been encoded, sizes are estimated at decoded bytes 1:1, which would
    /// close a first part at a twentieth of its size: encode what the open part holds, so its
    /// real bytes and ratio decide. Returns whether it did (once per run at most).
    fn learn_ratio(&mut self) -> Result<bool> {
        if self.ratio.is_some() {
            return Ok(false);
        }
        let Some((out, _)) = self.current.as_mut() else { return Ok(false) };
        if out.parquet_ratio().is_some() {
            return Ok(false);
        }
        out.parquet_settle()?;
        Ok(out.parquet_ratio().is_some())
    }

    /// Close the last part (writing one empty file when there were no rows at all) and return
    /// every file written. They are removed again unless [`Parts::commit`] follows.
    pub fn finish(&mut self) -> Result<Vec<Written>> {
        if self.current.is_none() && self.written.is_empty() {
            self.open()?;
        }
        self.close()?;
        Ok(self.written.clone())
    }

    /// Keep the files: the run succeeded.
    pub fn commit(mut self) {
        for w in &self.written {
            cleanup::forget(&w.path);
        }
        self.committed = true;
    }
}

impl Drop for Parts {
    fn drop(&mut self) {
        if !self.committed {
            for w in &self.written {
                let _ = std::fs::remove_file(&w.path);
                cleanup::forget(&w.path);
            }
        }
    }
}
