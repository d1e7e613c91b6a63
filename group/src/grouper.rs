//! Turns rows in (key, time) order into probe rows: one output row per key, its measurements
//! as a `List<Struct<time, payload...>>`.
//!
//! Rows arrive as runs (a slice of one decoded batch). The grouper keeps the runs of the
//! groups not yet written plus the open group, and writes every complete group once they hold
//! about one output batch of data. Memory: the open group (the largest group, at worst) plus one
//! output batch plus the input batches those runs point into.
//!
//! Where an output batch ends is decided here, in merge order, from the data alone; building
//! it (gathering the measurements into one list column, the costly part) is a [`BuildJob`]
//! handed to `emit`, which may run it on another thread: the caller keeps the jobs in order.

use std::cmp::Ordering;
use std::collections::VecDeque;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, ListArray, StructArray};
use arrow::buffer::OffsetBuffer;
use arrow::compute::interleave;
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

use probe_core::{Error, Result};

use crate::merge::{format_key, gather, RunSink, SortedBatch};

/// The output schema for key fields, a time field and payload fields.
pub fn output_schema(input: &Schema, n_keys: usize) -> SchemaRef {
    let mut fields: Vec<Field> =
        input.fields()[..n_keys].iter().map(|f| f.as_ref().clone().with_nullable(true)).collect();
    let item: Fields =
        input.fields()[n_keys..].iter().map(|f| f.as_ref().clone().with_nullable(true)).collect::<Vec<_>>().into();
    fields.push(Field::new(
        "measurements",
        DataType::List(Arc::new(Field::new_list_field(DataType::Struct(item), false))),
        false,
    ));
    Arc::new(Schema::new(fields))
}

struct Run {
    batch: Arc<SortedBatch>,
    start: usize,
    len: usize,
}

/// Builds one output batch; `Send`, so it can run on the pool while the merge goes on.
pub type BuildJob = Box<dyn FnOnce() -> Result<RecordBatch> + Send>;

/// Builds output batches of whole groups and hands them to `emit`.
pub struct Grouper<'a> {
    schema: SchemaRef,
    n_keys: usize,
    target_bytes: usize,
    runs: VecDeque<Run>,
    /// Start offset (in pending rows) of each pending group, the open one last.
    group_starts: Vec<usize>,
    /// Where each pending group's key is: (batch, row).
    group_keys: Vec<(Arc<SortedBatch>, usize)>,
    pending_rows: usize,
    /// Estimated bytes of the complete pending groups (all but the open one).
    complete_bytes: usize,
    open_bytes: usize,
    emit: &'a mut dyn FnMut(BuildJob) -> Result<()>,
    /// Groups written so far.
    pub groups: u64,
    /// Rows (measurements) written so far.
    pub rows: u64,
    /// Rows in the largest group seen.
    pub largest_group: u64,
}

impl<'a> Grouper<'a> {
    /// A grouper writing batches of about `target_bytes`.
    pub fn new(
        schema: SchemaRef,
        n_keys: usize,
        target_bytes: usize,
        emit: &'a mut dyn FnMut(BuildJob) -> Result<()>,
    ) -> Self {
        Grouper {
            schema,
            n_keys,
            target_bytes,
            runs: VecDeque::new(),
            group_starts: Vec::new(),
            group_keys: Vec::new(),
            pending_rows: 0,
            complete_bytes: 0,
            open_bytes: 0,
            emit,
            groups: 0,
            rows: 0,
            largest_group: 0,
        }
    }

    fn start_group(&mut self, batch: &Arc<SortedBatch>, row: usize) -> Result<()> {
        if let Some(&open_start) = self.group_starts.last() {
            let open_rows = (self.pending_rows - open_start) as u64;
            self.largest_group = self.largest_group.max(open_rows);
            self.complete_bytes += self.open_bytes;
            self.open_bytes = 0;
            if self.complete_bytes >= self.target_bytes {
                self.flush(self.pending_rows)?;
            }
        }
        self.group_starts.push(self.pending_rows);
        self.group_keys.push((batch.clone(), row));
        Ok(())
    }

    /// Write every complete group, and the open one too; returns (groups, rows, largest group).
    pub fn finish(mut self) -> Result<(u64, u64, u64)> {
        if let Some(&open_start) = self.group_starts.last() {
            self.largest_group = self.largest_group.max((self.pending_rows - open_start) as u64);
        }
        if self.pending_rows > 0 {
            self.flush(self.pending_rows)?;
        }
        Ok((self.groups, self.rows, self.largest_group))
    }

    /// Write the pending groups that end at or before row `upto` (a group boundary).
    fn flush(&mut self, upto: usize) -> Result<()> {
        let n_groups = self.group_starts.iter().take_while(|&&s| s < upto).count();
        if n_groups == 0 {
            return Ok(());
        }
        if upto > i32::MAX as usize {
            let (b, r) = &self.group_keys[n_groups - 1];
            return Err(Error::data(format!(
                "key {} has more than {} measurements, more than one Arrow list can hold; \
                 split the key (add a column to --key) or filter the input",
                format_key(&b.data, self.n_keys, *r),
                i32::MAX
            )));
        }
        // Which runs make up the first `upto` rows.
        let mut take = Vec::new();
        let mut left = upto;
        for run in &self.runs {
            if left == 0 {
                break;
            }
            let n = run.len.min(left);
            take.push((run.batch.clone(), run.start, n));
            left -= n;
        }
        // Key columns: one value per group; where each group's key is.
        let keys: Vec<(Arc<SortedBatch>, usize)> = self.group_keys[..n_groups].to_vec();
        let mut offsets: Vec<i32> = self.group_starts[..n_groups].iter().map(|&s| s as i32).collect();
        offsets.push(upto as i32);
        let schema = self.schema.clone();
        let n_keys = self.n_keys;
        let job: BuildJob = Box::new(move || build(&schema, n_keys, &take, &keys, offsets));

        // Drop what was written.
        let mut left = upto;
        while left > 0 {
            let Some(run) = self.runs.front_mut() else {
                break;
            };
            if run.len <= left {
                left -= run.len;
                self.runs.pop_front();
            } else {
                run.start += left;
                run.len -= left;
                left = 0;
            }
        }
        self.group_starts.drain(..n_groups);
        self.group_keys.drain(..n_groups);
        for s in &mut self.group_starts {
            *s -= upto;
        }
        self.pending_rows -= upto;
        self.complete_bytes = 0;
        self.groups += n_groups as u64;
        self.rows += upto as u64;
        (self.emit)(job)
    }
}

/// Build one output batch: the key of each group, and the rows `take` (consecutive pieces of
/// input batches) as one list column cut at `offsets`.
fn build(
    schema: &SchemaRef,
    n_keys: usize,
    take: &[(Arc<SortedBatch>, usize, usize)],
    groups: &[(Arc<SortedBatch>, usize)],
    offsets: Vec<i32>,
) -> Result<RecordBatch> {
    let batch_cols = take[0].0.data.num_columns();
    let children = gather(take, n_keys..batch_cols).map_err(too_big)?;
    let mut key_cols: Vec<ArrayRef> = Vec::with_capacity(n_keys);
    let mut sources: Vec<&Arc<SortedBatch>> = Vec::new();
    let mut indices = Vec::with_capacity(groups.len());
    for (b, r) in groups {
        let idx = match sources.iter().rposition(|s| Arc::ptr_eq(s, b)) {
            Some(i) => i,
            None => {
                sources.push(b);
                sources.len() - 1
            }
        };
        indices.push((idx, *r));
    }
    for c in 0..n_keys {
        let arrays: Vec<&dyn Array> = sources.iter().map(|b| b.data.column(c).as_ref()).collect();
        key_cols.push(interleave(&arrays, &indices).map_err(too_big)?);
    }
    let item_fields = match schema.field(n_keys).data_type() {
        DataType::List(f) => f.clone(),
        _ => return Err(Error::internal("output schema without a list column")),
    };
    let struct_fields = match item_fields.data_type() {
        DataType::Struct(fs) => fs.clone(),
        _ => return Err(Error::internal("list items are not structs")),
    };
    let items = StructArray::try_new(struct_fields, children, None).map_err(too_big)?;
    let list =
        ListArray::try_new(item_fields, OffsetBuffer::new(offsets.into()), Arc::new(items), None).map_err(too_big)?;
    key_cols.push(Arc::new(list));
    RecordBatch::try_new(schema.clone(), key_cols).map_err(too_big)
}

fn too_big(e: arrow::error::ArrowError) -> Error {
    Error::data(format!(
        "cannot build an output batch ({e}); a single key's measurements are too large for one Arrow list: \
         split the key (add a column to --key) or filter the input"
    ))
}

impl RunSink for Grouper<'_> {
    fn push_run(&mut self, batch: &Arc<SortedBatch>, start: usize, len: usize) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        // Does the first row start a new group?
        let new_first = match self.group_keys.last() {
            None => true,
            Some(_) => match self.runs.back() {
                Some(last) => last.batch.cmp_keys(last.start + last.len - 1, batch, start)? != Ordering::Equal,
                None => true,
            },
        };
        // Key changes inside the run.
        let lo = batch.key_changes.partition_point(|&i| (i as usize) <= start);
        let hi = batch.key_changes.partition_point(|&i| (i as usize) < start + len);
        let mut seg_start = start;
        let mut pending_new = new_first;
        for &ch in &batch.key_changes[lo..hi] {
            let ch = ch as usize;
            self.append(batch, seg_start, ch - seg_start, pending_new)?;
            seg_start = ch;
            pending_new = true;
        }
        self.append(batch, seg_start, start + len - seg_start, pending_new)
    }

    fn push_key_run(&mut self, batch: &Arc<SortedBatch>, start: usize, len: usize, starts_key: bool) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        self.append(batch, start, len, starts_key)
    }
}

impl Grouper<'_> {
    fn append(&mut self, batch: &Arc<SortedBatch>, start: usize, len: usize, new_group: bool) -> Result<()> {
        if new_group {
            self.start_group(batch, start)?;
        }
        match self.runs.back_mut() {
            Some(r) if Arc::ptr_eq(&r.batch, batch) && r.start + r.len == start => r.len += len,
            _ => self.runs.push_back(Run { batch: batch.clone(), start, len }),
        }
        self.pending_rows += len;
        self.open_bytes += len * batch.row_bytes;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::AsArray;
    use arrow::datatypes::Int64Type;

    use super::*;
    use crate::merge::tests::{batch, cursors};
    use crate::merge::{merge, SourceKind};

    /// Group the inputs with output batches of about `target_bytes`; returns the output batches
    /// and (groups, rows, largest group).
    fn group(inputs: Vec<Vec<RecordBatch>>, target_bytes: usize) -> Result<(Vec<RecordBatch>, (u64, u64, u64))> {
        let schema = output_schema(&batch(&[]).schema(), 1);
        let mut out = Vec::new();
        let mut emit = |job: BuildJob| -> Result<()> {
            out.push(job()?);
            Ok(())
        };
        let mut grouper = Grouper::new(schema, 1, target_bytes, &mut emit);
        merge(cursors(inputs, SourceKind::Input), &mut grouper, &mut |_| {})?;
        let stats = grouper.finish()?;
        Ok((out, stats))
    }

    /// (key, seqs of its measurements) of every output row.
    fn decoded(batches: &[RecordBatch]) -> Vec<(Option<String>, Vec<i64>)> {
        let mut rows = Vec::new();
        for b in batches {
            let keys = b.column(0).as_string::<i32>();
            let lists = b.column(1).as_list::<i32>();
            for i in 0..b.num_rows() {
                let items = lists.value(i);
                let seq: Vec<i64> = items.as_struct().column(1).as_primitive::<Int64Type>().values().to_vec();
                rows.push((keys.is_valid(i).then(|| keys.value(i).to_string()), seq));
            }
        }
        rows
    }

    fn inputs() -> Vec<Vec<RecordBatch>> {
        // Key "a" spans two batches of one input and two inputs; the null key comes last.
        vec![
            vec![batch(&[(Some("a"), Some(1), 0), (Some("a"), Some(3), 1)]), batch(&[(Some("a"), Some(4), 2)])],
            vec![batch(&[(Some("a"), Some(2), 10), (Some("b"), Some(1), 11), (None, Some(1), 12)])],
        ]
    }

    #[test]
    fn groups_span_batches_and_inputs_and_never_split_across_output_batches() -> Result<()> {
        let want = vec![(Some("a".to_string()), vec![0, 10, 1, 2]), (Some("b".into()), vec![11]), (None, vec![12])];
        // One byte: every group goes out as soon as it is complete, each in a batch of its own.
        let (tiny, stats) = group(inputs(), 1)?;
        assert_eq!(decoded(&tiny), want);
        assert_eq!(tiny.iter().map(|b| b.num_rows()).collect::<Vec<_>>(), [1, 1, 1]);
        assert_eq!(stats, (3, 6, 4));
        // A large target: one batch holding all of them.
        let (big, stats) = group(inputs(), 1 << 30)?;
        assert_eq!(decoded(&big), want);
        assert_eq!(big.len(), 1);
        assert_eq!(stats, (3, 6, 4));
        Ok(())
    }

    #[test]
    fn output_schema_keeps_key_and_item_types_and_makes_them_nullable() {
        let s = output_schema(&batch(&[]).schema(), 1);
        assert_eq!(s.fields().len(), 2);
        assert_eq!(s.field(0).data_type(), &DataType::Utf8);
        assert!(s.field(0).is_nullable());
        let DataType::List(item) = s.field(1).data_type() else { panic!("not a list: {}", s.field(1)) };
        let DataType::Struct(fields) = item.data_type() else { panic!("not a struct: {item}") };
        let names: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["t", "seq"]);
        assert!(fields.iter().all(|f| f.is_nullable()));
    }

    #[test]
    fn no_input_rows_give_no_groups() -> Result<()> {
        let (out, stats) = group(vec![vec![batch(&[])]], 1)?;
        assert!(out.is_empty());
        assert_eq!(stats, (0, 0, 0));
        Ok(())
    }
}
