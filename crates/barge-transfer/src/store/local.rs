//! `LocalBlob`: a blob that is a local file; writes go to a temporary name and are checked before the rename.

use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use async_trait::async_trait;
use barge_bundle::{Algorithm, Hasher};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};

use super::{BlobInfo, BlobSink, BlobStore, Expect, PositionalSink};
use crate::io::{ByteStream, CHUNK};
use crate::temp::TempFile;
use crate::{Result, TransferError};

pub struct LocalBlob {
    path: PathBuf,
}

impl LocalBlob {
    pub fn new(path: PathBuf) -> LocalBlob {
        LocalBlob { path }
    }
}

fn etag_of(m: &std::fs::Metadata) -> String {
    format!("{:x}-{:x}-{:x}-{:x}", m.ino(), m.size(), m.mtime(), m.mtime_nsec())
}

#[async_trait]
impl BlobStore for LocalBlob {
    fn display(&self) -> String {
        self.path.display().to_string()
    }

    async fn info(&self) -> Result<Option<BlobInfo>> {
        match tokio::fs::metadata(&self.path).await {
            Ok(m) if m.is_file() => Ok(Some(BlobInfo {
                size: m.len(),
                etag: etag_of(&m),
                modified: m.modified().ok(),
                metadata: Vec::new(),
                content_md5: None,
            })),
            Ok(_) => Err(TransferError::NotAFile(self.path.display().to_string())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(TransferError::io(format!("reading {}", self.path.display()), e)),
        }
    }

    async fn read_range(&self, offset: u64, len: u64, etag: &str) -> Result<ByteStream> {
        use tokio::io::AsyncSeekExt;
        let ctx = || format!("reading {}", self.path.display());
        let mut f = tokio::fs::File::open(&self.path).await.map_err(|e| TransferError::io(ctx(), e))?;
        let m = f.metadata().await.map_err(|e| TransferError::io(ctx(), e))?;
        if etag_of(&m) != etag {
            return Err(TransferError::Changed(format!(
                "{} changed while it was read; nothing was committed",
                self.path.display()
            )));
        }
        f.seek(std::io::SeekFrom::Start(offset)).await.map_err(|e| TransferError::io(ctx(), e))?;
        // Callers read in large pieces (1 MiB, 256 KiB); tokio buffers each read itself.
        Ok(Box::new(f.take(len)))
    }

    fn rereads_are_cheap(&self) -> bool {
        true
    }

    async fn create(&self, overwrite: bool, _size_hint: u64) -> Result<Box<dyn BlobSink>> {
        let (tmp, file) = self.start(overwrite).await?;
        Ok(Box::new(LocalSink {
            writer: BufWriter::with_capacity(CHUNK, file),
            tmp,
            path: self.path.clone(),
            overwrite,
        }))
    }

    async fn create_positional(&self, overwrite: bool, size: u64) -> Result<Option<Arc<dyn PositionalSink>>> {
        let (tmp, file) = self.start(overwrite).await?;
        let file = file.into_std().await;
        let ctx = || format!("creating {}", tmp.path().display());
        // The whole size at once: writers fill it in any order. So the commit's
        // size check cannot tell a hole from data; that every byte was written
        // is for the writer to know (export's follower hashes up to the end).
        file.set_len(size).map_err(|e| TransferError::io(ctx(), e))?;
        let done = Mutex::new(Some((tmp, self.path.clone(), overwrite)));
        Ok(Some(Arc::new(PositionalFile { file: Arc::new(file), done })))
    }

    async fn put_if(&self, bytes: Vec<u8>, if_match: Option<&str>) -> Result<String> {
        let path = self.path.clone();
        let lock_path = self.lock_path();
        let if_match = if_match.map(str::to_string);
        tokio::task::spawn_blocking(move || {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| TransferError::io(format!("creating {}", dir.display()), e))?;
            }
            let lock = std::fs::File::create(&lock_path)
                .map_err(|e| TransferError::io(format!("locking {}", path.display()), e))?;
            lock.lock().map_err(|e| TransferError::io(format!("locking {}", path.display()), e))?;
            let current = match std::fs::metadata(&path) {
                Ok(m) => Some(etag_of(&m)),
                Err(e) if e.kind() == ErrorKind::NotFound => None,
                Err(e) => return Err(TransferError::io(format!("reading {}", path.display()), e)),
            };
            if current.as_deref() != if_match.as_deref() {
                return Err(TransferError::Changed(format!("{} was changed by another writer", path.display())));
            }
            let tmp = TempFile::beside(&path);
            std::fs::write(tmp.path(), &bytes)
                .map_err(|e| TransferError::io(format!("writing {}", path.display()), e))?;
            tmp.commit(&path, true)?;
            let m =
                std::fs::metadata(&path).map_err(|e| TransferError::io(format!("reading {}", path.display()), e))?;
            Ok(etag_of(&m))
        })
        .await
        .expect("a small write does not panic")
    }

    async fn delete(&self, if_match: Option<&str>) -> Result<()> {
        if let Some(etag) = if_match {
            match self.info().await? {
                Some(i) if i.etag == etag => {}
                Some(_) => {
                    return Err(TransferError::Changed(format!(
                        "{} changed since it was read; not deleted",
                        self.path.display()
                    )))
                }
                None => return Ok(()),
            }
        }
        match tokio::fs::remove_file(&self.path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(TransferError::io(format!("deleting {}", self.path.display()), e)),
        }
    }
}

impl LocalBlob {
    /// A new temporary file beside the blob, unless the blob exists and may not be replaced.
    async fn start(&self, overwrite: bool) -> Result<(TempFile, tokio::fs::File)> {
        if !overwrite && self.info().await?.is_some() {
            return Err(TransferError::Exists(self.path.display().to_string()));
        }
        let dir = self.path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if !tokio::fs::try_exists(dir).await.unwrap_or(false) {
            return Err(TransferError::NotFound(format!("directory {}", dir.display())));
        }
        let tmp = TempFile::beside(&self.path);
        // Read too: a positional write is hashed back from the file as it grows.
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(tmp.path())
            .await
            .map_err(|e| TransferError::io(format!("creating {}", tmp.path().display()), e))?;
        Ok((tmp, file))
    }

    fn lock_path(&self) -> std::path::PathBuf {
        let name = self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        self.path.with_file_name(format!(".{name}.barge-lock"))
    }
}

struct LocalSink {
    writer: BufWriter<tokio::fs::File>,
    tmp: TempFile,
    path: PathBuf,
    overwrite: bool,
}

impl AsyncWrite for LocalSink {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.writer).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.writer).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.writer).poll_shutdown(cx)
    }
}

#[async_trait]
impl BlobSink for LocalSink {
    async fn commit(self: Box<Self>, expect: Expect) -> Result<()> {
        let LocalSink { mut writer, tmp, path, overwrite } = *self;
        writer.flush().await.map_err(|e| TransferError::io(format!("writing {}", tmp.path().display()), e))?;
        let file = writer.into_inner().into_std().await;
        crate::io::blocking("committing a file", move || finish(&file, tmp, &path, overwrite, &expect)).await
    }
}

/// A file written by position (`pwrite`), shared by every writer.
struct PositionalFile {
    file: Arc<std::fs::File>,
    /// What the commit needs, taken by the first commit.
    done: Mutex<Option<(TempFile, PathBuf, bool)>>,
}

#[async_trait]
impl PositionalSink for PositionalFile {
    fn write_at(&self, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
        self.file.write_all_at(bytes, offset)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn settled(&self, from: u64, upto: u64) {
        // Start the write-back of these pages (the kernel would wait ~30 s,
        // leaving the whole bundle to the commit's fsync). POSIX_FADV_DONTNEED
        // starts it without waiting, and drops only pages already clean.
        #[cfg(target_os = "linux")]
        if let Some(len) = std::num::NonZeroU64::new(upto.saturating_sub(from)) {
            let _ = rustix::fs::fadvise(&*self.file, from, Some(len), rustix::fs::Advice::DontNeed);
        }
        #[cfg(not(target_os = "linux"))]
        let _ = (from, upto);
    }

    async fn commit(&self, expect: Expect) -> Result<()> {
        let taken = self.done.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some((tmp, path, overwrite)) = taken else {
            return Err(TransferError::Internal("a positional file is committed once"));
        };
        let file = self.file.clone();
        crate::io::blocking("committing a file", move || finish(&file, tmp, &path, overwrite, &expect)).await
    }
}

/// Make a written temporary file durable, check it against `expect` (its
/// size; its sha256 read back from disk when asked), then give it its name.
fn finish(file: &std::fs::File, tmp: TempFile, path: &Path, overwrite: bool, expect: &Expect) -> Result<()> {
    let ctx = || format!("writing {}", tmp.path().display());
    file.sync_all().map_err(|e| TransferError::io(ctx(), e))?;
    let size = file.metadata().map_err(|e| TransferError::io(ctx(), e))?.len();
    if size != expect.size {
        return Err(TransferError::Io {
            context: ctx(),
            error: std::io::Error::other(format!("{size} bytes written, {} expected", expect.size)),
        });
    }
    if let Some(want) = &expect.sha256 {
        // Read back what is on disk: the check is of the file, not of the bytes we meant to write.
        let mut h = Hasher::new(Algorithm::Sha256);
        let mut buf = vec![0u8; CHUNK];
        let mut at = 0u64;
        while at < size {
            let n = (size - at).min(CHUNK as u64) as usize;
            file.read_exact_at(&mut buf[..n], at).map_err(|e| TransferError::io(ctx(), e))?;
            h.update(&buf[..n]);
            at += n as u64;
        }
        let got = h.finish();
        if &got != want {
            return Err(TransferError::WrongContent {
                what: "copy of",
                digest: want.clone(),
                actual: got,
                source_name: path.display().to_string(),
            });
        }
    }
    tmp.commit(path, overwrite)
}
