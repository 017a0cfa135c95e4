//! `TempFile`: a file written under a temporary name beside its final one, removed unless committed;
//! and the sweep that removes the temporary files of barge processes that are gone (kill -9, power loss).
//!
//! A temporary name is `.NAME.barge-tmp-PID-N`: the PID of the process that
//! writes it and a counter. A file of that shape is stale when no process has
//! that PID, or when the process that has it now started after the file was
//! last written (the PID was reused). The first temporary file a process makes
//! in a directory sweeps that directory first, so every writer (bundles,
//! layout blobs, `index.json`, pipeline state) cleans up after a killed
//! predecessor without doing anything itself.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use crate::{Result, TransferError};

/// What every temporary name holds, between the final name and `PID-N`.
pub const MARK: &str = ".barge-tmp-";

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The temporary files of this process that are not yet committed or dropped.
static LIVE: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);

/// The directories this process has swept already.
static SWEPT: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);

fn live() -> MutexGuard<'static, Option<HashSet<PathBuf>>> {
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Owns a temporary path; dropping it removes the file, so an error, a
/// panic or Ctrl-C leaves nothing behind under any name.
#[derive(Debug)]
pub struct TempFile {
    path: Option<PathBuf>,
}

impl TempFile {
    /// A fresh temporary name in the directory of `final_path`. The first
    /// one in a directory removes the stale temporary files there.
    pub fn beside(final_path: &Path) -> TempFile {
        let dir = final_path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        sweep_once(dir);
        let base = final_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!(".{base}{MARK}{}-{n}", std::process::id()));
        live().get_or_insert_with(HashSet::new).insert(path.clone());
        TempFile { path: Some(path) }
    }

    pub fn path(&self) -> &Path {
        self.path.as_deref().expect("a temp file is used only before it is committed")
    }

    /// Give the file its final name. Without `overwrite` the rename is
    /// conditional: an existing file is left alone and `Exists` returned.
    pub fn commit(mut self, final_path: &Path, overwrite: bool) -> Result<()> {
        let Some(tmp) = self.path.take() else {
            return Err(TransferError::Internal("a temporary file was committed twice"));
        };
        let r = if overwrite {
            std::fs::rename(&tmp, final_path)
        } else {
            // link() fails if the final name exists: a conditional create.
            std::fs::hard_link(&tmp, final_path).and_then(|()| std::fs::remove_file(&tmp))
        };
        if r.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        forget(&tmp);
        match r {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(TransferError::Exists(final_path.display().to_string()))
            }
            Err(e) => Err(TransferError::io(format!("renaming into {}", final_path.display()), e)),
        }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            let _ = std::fs::remove_file(&p);
            forget(&p);
        }
    }
}

fn forget(path: &Path) {
    if let Some(set) = live().as_mut() {
        set.remove(path);
    }
}

/// Remove every temporary file this process still has, and make any later
/// [`TempFile::beside`] wait forever: for a process about to exit (on a
/// signal) while some of its threads may still be writing.
pub fn remove_all_and_close() {
    let mut guard = live();
    for p in guard.take().unwrap_or_default() {
        let _ = std::fs::remove_file(p);
    }
    // Hold the lock until the process exits: no new temporary name is handed out.
    std::mem::forget(guard);
}

fn sweep_once(dir: &Path) {
    let key = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let first = SWEPT.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(HashSet::new).insert(key);
    if first {
        sweep(dir);
    }
}

/// Remove the stale temporary files directly in `dir` (see the module
/// documentation); returns how many were removed. A directory that cannot be
/// read is left as it is.
pub fn sweep(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut removed = 0;
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(temp_pid) else { continue };
        let Ok(meta) = e.metadata() else { continue };
        if meta.is_file() && is_stale(pid, meta.modified().ok()) && std::fs::remove_file(e.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// [`sweep`] `root` and every directory below it, to `depth` levels (an `oci:`
/// layout root: repositories, nested names, `blobs/sha256`).
pub fn sweep_tree(root: &Path, depth: usize) -> usize {
    let mut removed = sweep(root);
    if depth == 0 {
        return removed;
    }
    let Ok(entries) = std::fs::read_dir(root) else { return removed };
    for e in entries.flatten() {
        // file_type() does not follow symbolic links: a link is never walked.
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            removed += sweep_tree(&e.path(), depth - 1);
        }
    }
    removed
}

/// The PID in a temporary name `.NAME.barge-tmp-PID-N`, if `name` is one.
fn temp_pid(name: &str) -> Option<u32> {
    if !name.starts_with('.') {
        return None;
    }
    let (_, tail) = name.rsplit_once(MARK)?;
    let (pid, n) = tail.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(pid) || !digits(n) {
        return None;
    }
    pid.parse().ok()
}

/// Whether a temporary file of `pid`, last written at `modified`, belongs to no running process.
fn is_stale(pid: u32, modified: Option<SystemTime>) -> bool {
    if pid == std::process::id() {
        return false; // ours: dropped or committed by us
    }
    if !Path::new("/proc/self").exists() {
        return false; // no way to tell: keep it
    }
    match process(pid) {
        Proc::Gone => true,
        Proc::Unknown => false,
        // The PID was reused if its holder started after the file was last written
        // (slack for the boot time, which is in whole seconds).
        Proc::Started(started) => modified.is_some_and(|m| m + Duration::from_secs(2) < started),
    }
}

enum Proc {
    /// No such process, or a zombie (it writes nothing any more).
    Gone,
    Started(SystemTime),
    /// It exists, but /proc did not say when it started.
    Unknown,
}

/// Whether process `pid` runs and since when, from /proc (Linux).
fn process(pid: u32) -> Proc {
    let stat = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Proc::Gone,
        Err(_) => return Proc::Unknown,
    };
    // The command name may hold spaces and parentheses: fields follow the last ')'.
    let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else { return Proc::Unknown };
    let fields: Vec<&str> = after.split_whitespace().collect();
    if matches!(fields.first(), Some(&("Z" | "X"))) {
        return Proc::Gone;
    }
    // Field 22 (starttime, in clock ticks since boot) is the 20th after the name.
    let ticks: Option<u64> = fields.get(19).and_then(|t| t.parse().ok());
    let boot: Option<u64> = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("btime ").and_then(|v| v.trim().parse().ok())));
    match (ticks, boot) {
        // USER_HZ is 100 on every Linux architecture barge builds for.
        (Some(t), Some(b)) => {
            Proc::Started(SystemTime::UNIX_EPOCH + Duration::from_secs(b) + Duration::from_millis(t * 10))
        }
        _ => Proc::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(temp_pid(".bundle.barge-tmp-123-4"), Some(123));
        assert_eq!(temp_pid(".a.barge-tmp-b.barge-tmp-77-0"), Some(77));
        assert_eq!(temp_pid("bundle.barge-tmp-123-4"), None);
        assert_eq!(temp_pid(".bundle.barge-tmp-123"), None);
        assert_eq!(temp_pid(".bundle.barge-tmp-12x-4"), None);
        assert_eq!(temp_pid(".bundle.barge-lock"), None);
    }

    #[test]
    fn sweeps_the_dead_keeps_the_living() {
        let dir = tempfile::tempdir().unwrap();
        // A process that is gone: a child that has exited and been reaped.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let stale = dir.path().join(format!(".b{MARK}{dead}-0"));
        std::fs::write(&stale, b"x").unwrap();
        // A living process that started before its file was written: kept.
        let mut sleeper = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let living = dir.path().join(format!(".b{MARK}{}-0", sleeper.id()));
        std::fs::write(&living, b"x").unwrap();
        // The PID of a process that started after the file was last written: reused, so stale.
        let reused = dir.path().join(format!(".c{MARK}{}-1", sleeper.id()));
        std::fs::write(&reused, b"x").unwrap();
        let old = std::fs::File::options().write(true).open(&reused).unwrap();
        old.set_modified(SystemTime::now() - Duration::from_secs(3600)).unwrap();
        // Ours and foreign names are never touched.
        let ours = dir.path().join(format!(".d{MARK}{}-9", std::process::id()));
        let other = dir.path().join("plain-file");
        std::fs::write(&ours, b"x").unwrap();
        std::fs::write(&other, b"x").unwrap();
        assert_eq!(sweep(dir.path()), 2);
        sleeper.kill().unwrap();
        sleeper.wait().unwrap();
        assert!(!stale.exists() && !reused.exists());
        assert!(living.exists() && ours.exists() && other.exists());
    }

    #[test]
    fn drop_removes_and_commit_forgets() {
        let dir = tempfile::tempdir().unwrap();
        let t = TempFile::beside(&dir.path().join("f"));
        std::fs::write(t.path(), b"x").unwrap();
        let p = t.path().to_path_buf();
        assert!(live().as_ref().unwrap().contains(&p));
        drop(t);
        assert!(!p.exists() && !live().as_ref().unwrap().contains(&p));
        let t = TempFile::beside(&dir.path().join("h"));
        std::fs::write(t.path(), b"y").unwrap();
        let p = t.path().to_path_buf();
        t.commit(&dir.path().join("h"), false).unwrap();
        assert!(!p.exists() && !live().as_ref().unwrap().contains(&p));
        assert_eq!(std::fs::read(dir.path().join("h")).unwrap(), b"y");
    }
}
