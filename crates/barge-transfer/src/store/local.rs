//! `LocalBlob`: a blob that is a local file; writes go to a temporary name and are checked before the rename.

use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_trait::async_trait;
use barge_bundle::{Algorithm, Hasher};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};

use super::{BlobInfo, BlobSink, BlobStore, Expect};
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
        if !overwrite && self.info().await?.is_some() {
            return Err(TransferError::Exists(self.path.display().to_string()));
        }
        let dir = self.path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
        if !tokio::fs::try_exists(dir).await.unwrap_or(false) {
            return Err(TransferError::NotFound(format!("directory {}", dir.display())));
        }
        let tmp = TempFile::beside(&self.path);
        let file = tokio::fs::File::create(tmp.path())
            .await
            .map_err(|e| TransferError::io(format!("creating {}", tmp.path().display()), e))?;
        Ok(Box::new(LocalSink {
            writer: BufWriter::with_capacity(CHUNK, file),
            tmp,
            path: self.path.clone(),
            overwrite,
        }))
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
        let ctx = || format!("writing {}", tmp.path().display());
        writer.flush().await.map_err(|e| TransferError::io(ctx(), e))?;
        let file = writer.into_inner();
        file.sync_all().await.map_err(|e| TransferError::io(ctx(), e))?;
        drop(file);
        let size = tokio::fs::metadata(tmp.path()).await.map_err(|e| TransferError::io(ctx(), e))?.len();
        if size != expect.size {
            return Err(TransferError::Io {
                context: ctx(),
                error: std::io::Error::other(format!("{size} bytes written, {} expected", expect.size)),
            });
        }
        if let Some(want) = &expect.sha256 {
            // Read back what is on disk: the check is of the file, not of the bytes we meant to write.
            let mut f = tokio::fs::File::open(tmp.path()).await.map_err(|e| TransferError::io(ctx(), e))?;
            let mut h = Hasher::new(Algorithm::Sha256);
            let mut buf = vec![0u8; CHUNK];
            loop {
                let n = f.read(&mut buf).await.map_err(|e| TransferError::io(ctx(), e))?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
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
        tokio::task::spawn_blocking(move || tmp.commit(&path, overwrite)).await.expect("rename does not panic")
    }
}
