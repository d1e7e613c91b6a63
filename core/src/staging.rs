//! Multi-file outputs that appear all at once: built under a hidden staging name, moved into
//! place only when every file is complete.
//!
//! ```text
//! let staging = Staging::whole_dir(out_dir)?;       // probe-merge: DIR is the result
//! // ... write files into staging.path() ...
//! staging.commit()?;                                // one rename: DIR appears complete
//!
//! let staging = Staging::files_in(work_dir)?;       // probe-split: DIR is shared with others
//! // ... write train.arrows, test.arrows into staging.path() ...
//! staging.commit()?;                                // every file renamed in, back to back
//! ```
//!
//! Readers glob folders (`out/train/*.parquet` in DuckDB, Spark, Polars): a part that is in
//! place while the next one is still being written would be read as a whole dataset. So:
//!
//! - [`Staging::whole_dir`] builds the folder as a hidden sibling, `PARENT/.NAME.probe-staging-<pid>/`,
//!   and renames it to `DIR` at the end: rename(2) is atomic, so a reader sees no folder, or
//!   the whole result. `DIR` must be missing or empty (an empty directory is replaced).
//! - [`Staging::files_in`] is for a folder shared with other files (`work/`), where no folder
//!   can be swapped: files are built in `DIR/.probe-staging-<pid>/` and renamed into `DIR` one
//!   after another once all are complete. SIGINT/SIGTERM/SIGHUP wait for those renames
//!   ([`cleanup::commit_lock`]); only a SIGKILL within those microseconds can leave some in
//!   place, and then the staging folder stays too, which the next run refuses.
//!
//! An `--out-dir` that is a store URL (`s3://bucket/out/train`) has no rename: the files are
//! built in a local staging folder (in `$TMPDIR`) and uploaded at [`Staging::commit`], one
//! multipart upload each, in name order, `_manifest.json` last; each object appears when its
//! upload completes, so a reader that waits for `_manifest.json` sees the whole result. For
//! [`Staging::whole_dir`] the prefix must hold no objects. The local copy costs disk space the
//! size of the result; a failed or interrupted run uploads nothing.
//!
//! Names starting with `.` are skipped by input discovery and by shell globs, so nothing in a
//! staging folder is ever read as a result. A staging folder left by a killed run is refused
//! (not cleaned) by the next run into the same place: another run may still be writing it, and
//! the user decides. On error or interrupt the staging folder is removed.

use std::path::{Path, PathBuf};

use crate::cleanup;
use crate::error::{Error, Result};
use crate::output::disk_error;
use crate::store;

/// Marker in every staging folder's name.
pub const STAGING_MARK: &str = ".probe-staging-";

/// How [`Staging::commit`] moves the result into place.
#[derive(Debug)]
enum Commit {
    /// Rename the staging folder itself to this path.
    Swap(PathBuf),
    /// Rename every file of the staging folder into this folder.
    Files(PathBuf),
    /// Upload every file of the staging folder under this URL.
    Upload(String),
}

/// A staging folder, removed on drop unless committed.
#[derive(Debug)]
pub struct Staging {
    path: PathBuf,
    commit: Commit,
    done: bool,
}

impl Staging {
    /// Stage a folder that is the result as a whole (`probe-merge --out-dir`). `dir` must be
    /// missing or empty; its parent is created if missing.
    pub fn whole_dir(dir: &Path) -> Result<Staging> {
        if store::path_is_url(dir) {
            let url = dir.display().to_string();
            let loc = store::Location::parse(&url)?;
            if let Some(first) = loc.has_any()? {
                return Err(Error::data(format!(
                    "{url}: out-dir not empty (it holds {first}): the result replaces the whole folder; remove it or \
                     choose another"
                )));
            }
            return Staging::for_upload(url);
        }
        // A symlinked out-dir: build beside its target, so the rename stays in one filesystem
        // and replaces the folder, not the link.
        let dir = match std::fs::canonicalize(dir) {
            Ok(real) => real,
            Err(_) => dir.to_path_buf(),
        };
        let Some(name) = dir.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            return Err(Error::data(format!("{}: not a folder name; choose another --out-dir", dir.display())));
        };
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if dir.exists() {
            if !dir.is_dir() {
                return Err(Error::data(format!(
                    "{}: exists and is not a directory; choose another --out-dir",
                    dir.display()
                )));
            }
            if let Some(entry) = first_entry(&dir)? {
                return Err(Error::data(format!(
                    "{}: out-dir not empty (it holds {entry}): the result replaces the whole folder; remove it or \
                     choose another",
                    dir.display()
                )));
            }
        }
        std::fs::create_dir_all(&parent).map_err(|e| disk_error(&parent, e))?;
        refuse_leftover(&parent, &format!(".{name}{STAGING_MARK}"), &dir)?;
        let path = parent.join(format!(".{name}{STAGING_MARK}{}", std::process::id()));
        Staging::create(path, Commit::Swap(dir))
    }

    /// Stage files that go into a folder shared with other files (`probe-split --out-dir`).
    /// `dir` must exist.
    pub fn files_in(dir: &Path) -> Result<Staging> {
        if store::path_is_url(dir) {
            return Staging::for_upload(dir.display().to_string());
        }
        refuse_leftover(dir, STAGING_MARK, dir)?;
        let path = dir.join(format!("{STAGING_MARK}{}", std::process::id()));
        Staging::create(path, Commit::Files(dir.to_path_buf()))
    }

    /// Stage files, in subfolders too, that go into a folder shared with other runs writing
    /// other files (`probe-partition --out-dir DIR --name NAME`: `DIR/bucket-<i>/NAME.arrows`).
    /// The staging folder is `DIR/.probe-staging-<tag>-<pid>/`, so runs with other tags write
    /// into `DIR` at the same time; only a leftover of the same tag is refused. At commit, each
    /// file `SUB/FILE` of the staging folder is renamed to `DIR/SUB/FILE` (`SUB` created).
    pub fn files_under(dir: &Path, tag: &str) -> Result<Staging> {
        if store::path_is_url(dir) {
            return Staging::for_upload(dir.display().to_string());
        }
        let prefix = format!("{STAGING_MARK}{tag}-");
        refuse_leftover(dir, &prefix, dir)?;
        let path = dir.join(format!("{prefix}{}", std::process::id()));
        Staging::create(path, Commit::Files(dir.to_path_buf()))
    }

    /// A local staging folder whose files are uploaded under `url` at commit.
    fn for_upload(url: String) -> Result<Staging> {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(".probe-upload-{}-{n}", std::process::id()));
        Staging::create(path, Commit::Upload(url.trim_end_matches('/').to_string()))
    }

    /// Whether the result goes to a store (`final_path`s are URLs).
    pub fn uploads(&self) -> bool {
        matches!(self.commit, Commit::Upload(_))
    }

    fn create(path: PathBuf, commit: Commit) -> Result<Staging> {
        // Registered before it exists, so an interrupt in between cannot miss it.
        cleanup::register(&path);
        if let Err(e) = std::fs::create_dir(&path) {
            cleanup::forget(&path);
            return Err(disk_error(&path, e));
        }
        Ok(Staging { path, commit, done: false })
    }

    /// Where to write the files.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The final path of a file written as `self.path().join(name)`.
    pub fn final_path(&self, name: &str) -> PathBuf {
        match &self.commit {
            Commit::Swap(dir) | Commit::Files(dir) => dir.join(name),
            Commit::Upload(url) => PathBuf::from(format!("{url}/{name}")),
        }
    }

    /// Move the complete result into place.
    pub fn commit(mut self) -> Result<()> {
        // An interrupt now waits until the result is whole, then finds nothing to remove.
        let _lock = cleanup::commit_lock();
        match &self.commit {
            Commit::Swap(dir) => {
                std::fs::rename(&self.path, dir).map_err(|e| {
                    let why = if dir.is_dir() { "it is no longer empty" } else { "it cannot be replaced" };
                    Error::data(format!(
                        "{}: cannot move the finished result into place ({why}: {e}); remove it and rerun",
                        dir.display()
                    ))
                })?;
            }
            Commit::Files(dir) => {
                for name in files_below(&self.path)? {
                    let to = dir.join(&name);
                    if let Some(sub) = to.parent().filter(|p| !p.is_dir()) {
                        std::fs::create_dir_all(sub).map_err(|e| disk_error(sub, e))?;
                    }
                    std::fs::rename(self.path.join(&name), &to).map_err(|e| Error::io(&to, e))?;
                }
                std::fs::remove_dir_all(&self.path).map_err(|e| Error::io(&self.path, e))?;
            }
            Commit::Upload(url) => {
                let mut names = files_below(&self.path)?;
                // Data files in name order, then `_`-names (`_manifest.json`): a reader that
                // waits for the manifest finds every file it lists.
                names.sort_by_key(|n| (n.starts_with('_'), n.clone()));
                for name in names {
                    store::upload_file(&self.path.join(&name), &format!("{url}/{name}"))?;
                }
                std::fs::remove_dir_all(&self.path).map_err(|e| Error::io(&self.path, e))?;
            }
        }
        cleanup::forget(&self.path);
        self.done = true;
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_dir_all(&self.path);
            cleanup::forget(&self.path);
        }
    }
}

/// Every file under `root`, as paths relative to it joined with `/`, in name order.
fn files_below(root: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut dirs = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let entry = entry.map_err(|e| Error::io(&dir, e))?;
            let name = format!("{rel}{}", entry.file_name().to_string_lossy());
            if entry.file_type().map_err(|e| Error::io(&dir, e))?.is_dir() {
                dirs.push((entry.path(), format!("{name}/")));
            } else {
                out.push(name);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The first entry of a directory, if any.
fn first_entry(dir: &Path) -> Result<Option<String>> {
    let mut entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    match entries.next() {
        Some(e) => Ok(Some(e.map_err(|e| Error::io(dir, e))?.file_name().to_string_lossy().into_owned())),
        None => Ok(None),
    }
}

/// Refuse to write when `dir` holds a staging folder (`prefix<pid>`) that a killed run left.
fn refuse_leftover(dir: &Path, prefix: &str, target: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    for entry in entries {
        let name = entry.map_err(|e| Error::io(dir, e))?.file_name().to_string_lossy().into_owned();
        if name.strip_prefix(prefix).is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())) {
            return Err(Error::data(format!(
                "{}: holds {name}, left by a run that was killed or is still running (process {}); remove it \
                 (rm -rf {}) and rerun, so no partial result is mixed into {}",
                dir.display(),
                &name[prefix.len()..],
                dir.join(&name).display(),
                target.display()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The names the scripts clean up after a killed run (`scripts/pipeline.sh`,
    /// `scripts/pipeline.mk`: `.DIR.probe-staging-*` beside DIR, `DIR/.probe-staging-*` inside),
    /// and a leftover of that name is what a rerun refuses.
    #[test]
    fn staging_folders_have_the_names_the_scripts_remove() {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("train");
        let s = Staging::whole_dir(&out).unwrap();
        let name = s.path().file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(s.path().parent().unwrap(), std::fs::canonicalize(root.path()).unwrap());
        assert_eq!(name, format!(".train.probe-staging-{}", std::process::id()));
        drop(s);
        std::fs::create_dir(root.path().join(".train.probe-staging-4242")).unwrap();
        let e = Staging::whole_dir(&out).err().unwrap().to_string();
        assert!(e.contains(".train.probe-staging-4242"), "{e}");

        let files = root.path().join("work");
        std::fs::create_dir(&files).unwrap();
        let s = Staging::files_in(&files).unwrap();
        let name = s.path().file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(name, format!(".probe-staging-{}", std::process::id()));
    }
}
