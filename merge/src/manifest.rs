//! `_manifest.json`: what an `--out-dir` run wrote, for people and for loaders.
//!
//! ```text
//! {"files":[{"path":"part-00000.parquet","rows":N,"bytes":B}],
//!  "inputs":[{"path":"work/train-rows.arrows","rows":N}],
//!  "rows":N,"bytes":B,"schema":[{"name":"src_addr","type":"Utf8","nullable":true}]}
//! ```
//!
//! Its name starts with `_`, so input discovery skips it when the directory is read again.

use std::io::Write;
use std::path::Path;

use arrow::datatypes::Schema;
use probe_core::output::{disk_error, temp_beside};
use probe_core::{cleanup, Error, Result};
use serde::{Deserialize, Serialize};

/// File name of the manifest inside the output directory.
pub const MANIFEST: &str = "_manifest.json";

/// One output file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the output directory.
    pub path: String,
    /// Rows in the file.
    pub rows: u64,
    /// Size of the file in bytes.
    pub bytes: u64,
}

/// One input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputEntry {
    /// The input as named in messages (path as given, or `stdin`).
    pub path: String,
    /// Rows read from it.
    pub rows: u64,
}

/// One column of the output schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnEntry {
    /// Column name.
    pub name: String,
    /// Arrow data type, as arrow-rs displays it.
    #[serde(rename = "type")]
    pub data_type: String,
    /// Whether the column may hold nulls.
    pub nullable: bool,
}

/// The whole manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Output files, in row order.
    pub files: Vec<FileEntry>,
    /// Inputs, in the order read.
    pub inputs: Vec<InputEntry>,
    /// Total rows.
    pub rows: u64,
    /// Total bytes of the output files.
    pub bytes: u64,
    /// Output schema.
    pub schema: Vec<ColumnEntry>,
}

/// The schema as manifest entries.
pub fn columns(schema: &Schema) -> Vec<ColumnEntry> {
    schema
        .fields()
        .iter()
        .map(|f| ColumnEntry {
            name: f.name().clone(),
            data_type: f.data_type().to_string(),
            nullable: f.is_nullable(),
        })
        .collect()
}

impl Manifest {
    /// Write `dir/_manifest.json` atomically (temporary name, then rename).
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join(MANIFEST);
        let (file, temp) = temp_beside(&path)?;
        let mut w = std::io::BufWriter::new(file);
        serde_json::to_writer_pretty(&mut w, self)
            .map_err(|e| Error::data(format!("{}: cannot encode the manifest ({e})", path.display())))?;
        w.write_all(b"\n").map_err(|e| disk_error(&path, e))?;
        let file = w.into_inner().map_err(|e| disk_error(&path, e.into_error()))?;
        file.sync_all().map_err(|e| disk_error(&path, e))?;
        cleanup::forget(&temp);
        temp.persist(&path).map_err(|e| Error::io(&path, e.error))?;
        Ok(())
    }
}
