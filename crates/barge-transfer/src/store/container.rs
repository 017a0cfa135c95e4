//! `Container`: a blob container (a storage container, or a local directory) that can be listed and whose blobs can be leased.

use std::path::PathBuf;

use async_trait::async_trait;

use super::{BlobStore, BlobUrl, LocalBlob};
use crate::{Result, Secret, TransferError};

/// A committed blob as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    pub size: u64,
    pub etag: String,
}

/// Exclusive use of one blob version for a while; gone when released or when its holder dies.
#[async_trait]
pub trait Lease: Send + Sync {
    /// How often [`Lease::renew`] must be called to keep it; `None` when it
    /// lasts as long as its holder.
    fn renew_every(&self) -> Option<std::time::Duration> {
        None
    }

    /// Keep it a while longer; an error means it is lost (broken, or taken by another).
    async fn renew(&self) -> Result<()> {
        Ok(())
    }

    async fn release(self: Box<Self>) -> Result<()>;
}

#[async_trait]
pub trait Container: Send + Sync {
    /// How to show it: never a secret.
    fn display(&self) -> String;

    /// One blob of the container.
    fn blob(&self, name: &str) -> Result<Box<dyn BlobStore>>;

    /// Every committed blob (blobs still being written do not show).
    async fn list(&self) -> Result<Vec<Listed>>;

    /// Take a lease on `name` if it still has `etag` and nobody holds one: `None` otherwise.
    async fn lease(&self, name: &str, etag: &str) -> Result<Option<Box<dyn Lease>>>;
}

/// Open a container from a pipeline's storage URI: a storage container URL
/// (`https://ACCOUNT.blob.core.windows.net/CONTAINER`) or a local directory.
pub fn open_container(uri: &str, sas: Option<Secret>, concurrency: usize) -> Result<Box<dyn Container>> {
    if uri.starts_with("http://") || uri.starts_with("https://") {
        let mut url = BlobUrl::parse(uri)?;
        if !url.blob().is_empty() {
            return Err(TransferError::InvalidLocation(format!(
                "{url} names a blob; a storage container URI ends at the container"
            )));
        }
        if let Some(s) = sas {
            url = url.with_sas(s);
        }
        return Ok(Box::new(super::azure::AzureContainer::new(url, concurrency)?));
    }
    Ok(Box::new(LocalContainer { dir: PathBuf::from(uri) }))
}

struct LocalContainer {
    dir: PathBuf,
}

struct LocalLease {
    _file: std::fs::File,
}

#[async_trait]
impl Lease for LocalLease {
    async fn release(self: Box<Self>) -> Result<()> {
        Ok(()) // closing the file drops the lock
    }
}

#[async_trait]
impl Container for LocalContainer {
    fn display(&self) -> String {
        self.dir.display().to_string()
    }

    fn blob(&self, name: &str) -> Result<Box<dyn BlobStore>> {
        if name.is_empty() || name.split('/').any(|c| c.is_empty() || c == "..") || name.starts_with('.') {
            return Err(TransferError::InvalidLocation(format!("blob name {name:?} is not a plain relative name")));
        }
        Ok(Box::new(LocalBlob::new(self.dir.join(name))))
    }

    async fn list(&self) -> Result<Vec<Listed>> {
        // Like a storage container: every blob, nested names joined with '/'.
        let mut out = Vec::new();
        let mut dirs = vec![String::new()];
        while let Some(prefix) = dirs.pop() {
            let dir = self.dir.join(&prefix);
            let mut rd = match tokio::fs::read_dir(&dir).await {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && prefix.is_empty() => {
                    return Err(TransferError::NotFound(format!("container directory {}", self.dir.display())))
                }
                Err(e) => return Err(TransferError::io(format!("listing {}", dir.display()), e)),
            };
            while let Some(e) =
                rd.next_entry().await.map_err(|e| TransferError::io(format!("listing {}", dir.display()), e))?
            {
                let name = e.file_name().to_string_lossy().into_owned();
                // Hidden names are barge's own temporary files and locks: not blobs.
                if name.starts_with('.') {
                    continue;
                }
                let full = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
                let kind =
                    e.file_type().await.map_err(|e| TransferError::io(format!("listing {}", dir.display()), e))?;
                if kind.is_dir() {
                    dirs.push(full);
                } else if let Some(info) = self.blob(&full)?.info().await? {
                    out.push(Listed { name: full, size: info.size, etag: info.etag });
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn lease(&self, name: &str, etag: &str) -> Result<Option<Box<dyn Lease>>> {
        // A plain relative name; the lock lies beside the blob, hidden (so
        // `list` skips it): `a/b` locks `a/.b.barge-lease`.
        self.blob(name)?;
        let (dir, file) = match name.rsplit_once('/') {
            Some((d, f)) => (self.dir.join(d), f),
            None => (self.dir.clone(), name),
        };
        let lock = dir.join(format!(".{file}.barge-lease"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock)
            .map_err(|e| TransferError::io(format!("creating {}", lock.display()), e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(TransferError::io(format!("locking {}", lock.display()), e))
            }
        }
        match self.blob(name)?.info().await? {
            Some(i) if i.etag == etag => Ok(Some(Box::new(LocalLease { _file: file }))),
            _ => Ok(None),
        }
    }
}
