//! glibc malloc settings for a process that allocates and frees batches of megabytes on every
//! thread.
//!
//! ```text
//! probe_core::malloc::tune(threads);   // once, from threads::init, before the work starts
//! ```
//!
//! By default glibc starts each thread's arena with a 128 KiB mmap threshold and trim threshold
//! and raises them as large blocks are freed. Until they have risen, and whenever a freed batch
//! leaves more than the trim threshold free at the top of an arena, the memory goes back to the
//! kernel and the next batch faults it in again, a page at a time, zeroed: on 10M sorted rows
//! at 2 threads that was 170k page faults and 0.4-0.5 s of system time in a 3.5 s run (group to
//! Parquet; 105k faults to IPC). Starting at the ceilings glibc would reach anyway (32 MiB
//! blocks from the arena, not mmap) and trimming only past 32 MiB of free memory per arena
//! takes it to 26k faults and 0.13 s; fewer threads' worth of arenas keep more slack each
//! (the trim threshold is 256 MiB / threads, between 4 and 32 MiB), so that the slack all
//! arenas may keep stays about 256 MiB whatever `--threads`.
//!
//! A setting given in the environment (`MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`,
//! `GLIBC_TUNABLES`) wins: the stage then changes nothing. Other C libraries: nothing to do.

/// Apply the settings above for a pool of `threads` threads (once per process).
pub fn tune(threads: usize) {
    let user_set = ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES"]
        .iter()
        .any(|v| std::env::var_os(v).is_some());
    if user_set {
        return;
    }
    let trim = ((256usize << 20) / threads.max(1)).clamp(4 << 20, 32 << 20);
    set(32 << 20, trim);
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn set(mmap_threshold: usize, trim_threshold: usize) {
    let to_int = |v: usize| libc::c_int::try_from(v).unwrap_or(libc::c_int::MAX);
    // SAFETY: mallopt only changes glibc's allocator parameters; it takes plain integers, touches
    // no memory of ours, and is thread-safe (it takes each arena's lock). A refused value
    // (returns 0) leaves glibc's default, which is correct, only slower.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, to_int(mmap_threshold));
        libc::mallopt(libc::M_TRIM_THRESHOLD, to_int(trim_threshold));
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set(_mmap_threshold: usize, _trim_threshold: usize) {}
