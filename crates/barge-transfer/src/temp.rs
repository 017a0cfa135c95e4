//! `TempFile`: a file written under a temporary name beside its final one, removed unless committed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Result, TransferError};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Owns a temporary path; dropping it removes the file, so an error, a
/// panic or Ctrl-C leaves nothing behind under any name.
#[derive(Debug)]
pub struct TempFile {
    path: Option<PathBuf>,
}

impl TempFile {
    /// A fresh temporary name in the directory of `final_path`.
    pub fn beside(final_path: &Path) -> TempFile {
        let dir = final_path.parent().unwrap_or(Path::new("."));
        let base = final_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!(".{base}.barge-tmp-{}-{n}", std::process::id());
        TempFile { path: Some(dir.join(name)) }
    }

    pub fn path(&self) -> &Path {
        self.path.as_deref().expect("a temp file is used only before it is committed")
    }

    /// Give the file its final name. Without `overwrite` the rename is
    /// conditional: an existing file is left alone and `Exists` returned.
    pub fn commit(mut self, final_path: &Path, overwrite: bool) -> Result<()> {
        let tmp = self.path.take().expect("committed once");
        let r = if overwrite {
            std::fs::rename(&tmp, final_path)
        } else {
            // link() fails if the final name exists: a conditional create.
            std::fs::hard_link(&tmp, final_path).and_then(|()| std::fs::remove_file(&tmp))
        };
        match r {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    Err(TransferError::Exists(final_path.display().to_string()))
                } else {
                    Err(TransferError::io(format!("renaming into {}", final_path.display()), e))
                }
            }
        }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}
