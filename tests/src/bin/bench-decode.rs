//! bench-decode: the benchmark's floor. Decodes every column of every input with the same
//! reader `probe-group` uses (`probe_core::input`) and discards the batches, printing the row
//! count on stderr. Not a user tool: `scripts/bench.sh` runs it.
//!
//! Usage: `bench-decode INPUTS...` (files or directories, as `probe-group` takes them).

use std::time::Instant;

use probe_core::input::{discover, Input, DEFAULT_BATCH_BYTES};

fn run() -> probe_core::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() || args.iter().any(|a| a == "-h" || a == "--help") {
        return Err(probe_core::Error::config(
            "usage: bench-decode INPUTS... (Parquet or Arrow IPC files or directories)",
        ));
    }
    let start = Instant::now();
    let sources = discover(&args)?;
    let mut rows: u64 = 0;
    let mut batches: u64 = 0;
    for source in &sources {
        let mut reader = Input::open(source)?.reader(None, DEFAULT_BATCH_BYTES)?;
        while let Some(batch) = reader.next_batch()? {
            rows += batch.num_rows() as u64;
            batches += 1;
            drop(batch);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "bench-decode: {rows} rows, {batches} batches, {} files, {secs:.2}s, {:.0} rows/s",
        sources.len(),
        rows as f64 / secs.max(1e-9)
    );
    Ok(())
}

fn main() -> std::process::ExitCode {
    probe_core::main("bench-decode", run)
}
