//! `Container`: a blob container (a storage container, or a local directory) whose committed blobs can be listed.

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

#[async_trait]
pub trait Container: Send + Sync {
    /// How to show it: never a secret.
    fn display(&self) -> String;

    /// One blob of the container; a `NAME.parts.json` is the split bundle it describes.
    fn blob(&self, name: &str) -> Result<Box<dyn BlobStore>>;

    /// Every committed blob (blobs still being written do not show).
    async fn list(&self) -> Result<Vec<Listed>>;
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

#[async_trait]
impl Container for LocalContainer {
    fn display(&self) -> String {
        self.dir.display().to_string()
    }

    fn blob(&self, name: &str) -> Result<Box<dyn BlobStore>> {
        if name.is_empty() || name.split('/').any(|c| c.is_empty() || c == "..") || name.starts_with('.') {
            return Err(TransferError::InvalidLocation(format!("blob name {name:?} is not a plain relative name")));
        }
        let path = self.dir.join(name);
        if name.ends_with(super::parts::PARTS_JSON) {
            return Ok(Box::new(super::Parts::new(super::parts::Beside::Local(path))?));
        }
        Ok(Box::new(LocalBlob::new(path)))
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
}
