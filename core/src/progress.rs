//! Progress on stderr (a bar only when stderr is a terminal) and the closing summary line.
//!
//! ```
//! use probe_core::progress::Progress;
//! let progress = Progress::new("probe-group", true, Some(1_000)); // quiet: nothing printed
//! progress.inc(1_000);
//! progress.finish(1_000, &[("keys", "42".to_string())]);
//! ```

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// Progress reporting and the summary for one stage run.
#[derive(Debug)]
pub struct Progress {
    stage: &'static str,
    quiet: bool,
    bar: Option<ProgressBar>,
    start: Instant,
}

impl Progress {
    /// `total` is the number of rows expected, when known.
    pub fn new(stage: &'static str, quiet: bool, total: Option<u64>) -> Progress {
        let bar = if !quiet && std::io::stderr().is_terminal() {
            let bar = match total {
                Some(t) => ProgressBar::with_draw_target(Some(t), ProgressDrawTarget::stderr()).with_style(
                    ProgressStyle::with_template("{prefix} [{bar:30}] {human_pos}/{human_len} rows {rate} eta {eta}")
                        .map(with_rate)
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                ),
                None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(
                    ProgressStyle::with_template("{prefix} {spinner} {human_pos} rows {rate} {elapsed}")
                        .map(with_rate)
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                ),
            };
            bar.set_prefix(stage);
            bar.enable_steady_tick(Duration::from_millis(200));
            Some(bar)
        } else {
            None
        };
        Progress { stage, quiet, bar, start: Instant::now() }
    }

    /// Count processed rows.
    pub fn inc(&self, rows: usize) {
        if let Some(bar) = &self.bar {
            bar.inc(rows as u64);
        }
    }

    /// A log line on stderr (hidden by `-q`), printed above the bar.
    pub fn log(&self, msg: &str) {
        if self.quiet {
            return;
        }
        match &self.bar {
            Some(bar) => bar.println(format!("{}: {msg}", self.stage)),
            None => crate::error::stderr_line(&format!("{}: {msg}", self.stage)),
        }
    }

    /// Seconds since the stage started.
    pub fn elapsed(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// Clear the bar and print the summary line:
    /// `probe-x: rows 123, keys 4, 0.52 s, 236.5 K rows/s, written 1.1 MiB, peak memory 12.3 MiB`.
    /// `written` counts every byte the process wrote (files, spills, stdout even when it is a
    /// pipe): what `scripts/pipeline.sh` reports per stage.
    pub fn finish(&self, rows: u64, fields: &[(&str, String)]) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        if self.quiet {
            return;
        }
        let secs = self.elapsed();
        let mut parts = vec![format!("rows {rows}")];
        parts.extend(fields.iter().map(|(k, v)| format!("{k} {v}")));
        parts.push(format!("{secs:.2} s"));
        parts.push(format!("{} rows/s", human_rate(rows as f64 / secs.max(1e-9))));
        if let Some(written) = written_bytes() {
            parts.push(format!("written {}", bytesize::ByteSize::b(written).display().iec()));
        }
        if let Some(peak) = peak_rss_bytes() {
            parts.push(format!("peak memory {}", bytesize::ByteSize::b(peak).display().iec()));
        }
        crate::error::stderr_line(&format!("{}: {}", self.stage, parts.join(", ")));
    }
}

/// indicatif's `{per_sec}` prints the rate with four decimals (`1,813,757.2515/s`); rows per
/// second are shown whole instead.
fn with_rate(style: ProgressStyle) -> ProgressStyle {
    style.with_key("rate", |state: &ProgressState, w: &mut dyn std::fmt::Write| {
        let _ = write!(w, "{}/s", thousands(state.per_sec()));
    })
}

/// A rate rounded to a whole number with thousands separators: `1,813,757`.
pub fn thousands(r: f64) -> String {
    let n = if r.is_finite() && r > 0.0 { r.round() as u64 } else { 0 };
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn human_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2} M", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1} K", r / 1e3)
    } else {
        format!("{r:.0}")
    }
}

/// Peak resident set size of this process (VmHWM), where the OS reports it.
pub fn peak_rss_bytes() -> Option<u64> {
    read_status_kib("VmHWM:").map(|k| k * 1024)
}

/// Bytes this process has written so far, to files and pipes alike (`wchar` of
/// `/proc/self/io`, where the OS reports it): a stage writing to a pipe has no file to measure.
pub fn written_bytes() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    let line = io.lines().find(|l| l.starts_with("wchar:"))?;
    line["wchar:".len()..].trim().parse().ok()
}

/// Current resident set size of this process (VmRSS).
pub fn current_rss_bytes() -> Option<u64> {
    read_status_kib("VmRSS:").map(|k| k * 1024)
}

fn read_status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..].trim().trim_end_matches("kB").trim().parse().ok()
}

/// Physical memory of the machine (MemTotal), where the OS reports it.
pub fn physical_memory_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    line["MemTotal:".len()..].trim().trim_end_matches("kB").trim().parse::<u64>().ok().map(|k| k * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_whole_numbers_with_separators() {
        assert_eq!(thousands(1_813_757.251_5), "1,813,757");
        assert_eq!(thousands(999.6), "1,000");
        assert_eq!(thousands(12.0), "12");
        assert_eq!(thousands(f64::NAN), "0");
    }

    /// Writing through a pipe counts as much as writing a file: the figure the pipeline report
    /// gives a stage whose output is stdout.
    #[test]
    #[cfg(target_os = "linux")]
    fn written_bytes_counts_pipe_writes() {
        use std::io::Write;
        let before = written_bytes().expect("/proc/self/io on Linux");
        let mut child = std::process::Command::new("cat")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("cat");
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin.write_all(&[7u8; 100_000]).expect("write to cat");
        drop(stdin);
        child.wait().expect("cat ends");
        let after = written_bytes().expect("/proc/self/io on Linux");
        assert!(after - before >= 100_000, "wrote 100000 bytes, counted {}", after - before);
    }
}
