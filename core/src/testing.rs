//! Helpers for the stage crates' own tests (feature `test-util`, enabled only as a
//! dev-dependency): write batches to a file of any format and read every row back, through the
//! same readers and writers the stages use. One copy instead of one per test folder.

use std::path::Path;

use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use crate::input::{discover, Input};
use crate::output::{Output, OutputOptions};
use crate::{Error, Result};

/// Write `batches` to `path`, the format chosen by its extension as for `-o`.
pub fn write_file(path: &Path, schema: SchemaRef, batches: &[RecordBatch]) -> Result<()> {
    let mut out = Output::create(Some(path), schema, &OutputOptions::default())?;
    for b in batches {
        out.write(b)?;
    }
    out.finish()?;
    Ok(())
}

/// The schema of the first input and every batch of every file under `paths` (files and
/// folders, as a stage's inputs), in input order.
pub fn read_batches<P: AsRef<Path>>(paths: &[P]) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let names: Vec<String> = paths.iter().map(|p| p.as_ref().display().to_string()).collect();
    let mut schema = None;
    let mut batches = Vec::new();
    for source in discover(&names)? {
        let input = Input::open(&source)?;
        schema.get_or_insert(input.schema());
        let mut r = input.reader(None, 1 << 20)?;
        while let Some(b) = r.next_batch()? {
            batches.push(b);
        }
    }
    let schema = schema.ok_or_else(|| Error::data(format!("no input under {names:?}")))?;
    Ok((schema, batches))
}

/// Every row of every file under `paths`, as one batch.
pub fn read_all<P: AsRef<Path>>(paths: &[P]) -> Result<RecordBatch> {
    let (schema, batches) = read_batches(paths)?;
    concat_batches(&schema, &batches).map_err(|e| Error::arrow("concatenating batches", e))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Array, ArrayRef, Int64Array};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    #[test]
    fn round_trips_every_format_and_reads_folders_in_order() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let batch = |v: Vec<i64>| {
            RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(v)) as ArrayRef])
                .map_err(|e| Error::arrow("batch", e))
        };
        write_file(&dir.path().join("a.parquet"), schema.clone(), &[batch(vec![1, 2])?])?;
        write_file(&dir.path().join("b.arrow"), schema.clone(), &[batch(vec![3])?, batch(vec![4])?])?;
        write_file(&dir.path().join("c.arrows"), schema.clone(), &[batch(vec![5])?])?;
        let all = read_all(&[dir.path()])?;
        assert_eq!(all.column(0).as_ref(), &Int64Array::from(vec![1, 2, 3, 4, 5]) as &dyn Array);
        Ok(())
    }
}
