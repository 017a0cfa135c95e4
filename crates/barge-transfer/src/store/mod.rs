//! The `BlobStore` trait: one blob in some storage (a local file now, a storage account later).

mod local;

use std::path::PathBuf;
use std::time::SystemTime;

use async_trait::async_trait;
use barge_bundle::Digest;
use tokio::io::AsyncWrite;

pub use local::LocalBlob;

use crate::io::ByteStream;
use crate::Result;

/// What a store knows about a blob that exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    pub size: u64,
    /// Changes whenever the content does; used to pin a source and for conditional deletes.
    pub etag: String,
    pub modified: Option<SystemTime>,
}

/// What a finished write must amount to before it takes its final name.
#[derive(Debug, Clone)]
pub struct Expect {
    pub size: u64,
    /// When set, the written blob is read back and must hash to this.
    pub sha256: Option<Digest>,
}

/// One blob location.
#[async_trait]
pub trait BlobStore: Send + Sync {
    /// How to show it to the user: never a secret.
    fn display(&self) -> String;

    /// `None` when there is no blob there.
    async fn info(&self) -> Result<Option<BlobInfo>>;

    /// Stream the blob from the start.
    async fn open(&self) -> Result<ByteStream>;

    /// Stream `len` bytes from `offset`, when reading a part again is cheap
    /// (a local file); `None` where the store would rather be read once.
    async fn open_range(&self, offset: u64, len: u64) -> Result<Option<ByteStream>>;

    /// Start writing a new version. Nothing is visible under the blob's name
    /// until [`BlobSink::commit`]; dropping the sink discards the write.
    async fn create(&self, overwrite: bool) -> Result<Box<dyn BlobSink>>;

    /// Delete the blob, only if it still has `if_match` as its etag when given.
    async fn delete(&self, if_match: Option<&str>) -> Result<()>;
}

#[async_trait]
pub trait BlobSink: AsyncWrite + Send + Unpin {
    /// Check the written data against `expect` and make it visible. Without
    /// `overwrite` (given to `create`) an existing blob makes this fail with
    /// `Exists` and stay untouched, however late it appeared.
    async fn commit(self: Box<Self>, expect: Expect) -> Result<()>;
}

/// Where a blob is, as the user wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
}

impl Location {
    pub fn parse(s: &str) -> Result<Location> {
        if s.is_empty() {
            return Err(crate::TransferError::Usage("an empty location was given; name a file path".into()));
        }
        if s.starts_with("http://") || s.starts_with("https://") {
            return Err(crate::TransferError::Usage(
                "storage URLs are not supported by this build; give a local file path".into(),
            ));
        }
        Ok(Location::Local(PathBuf::from(s)))
    }

    pub fn open(&self) -> Box<dyn BlobStore> {
        match self {
            Location::Local(p) => Box::new(LocalBlob::new(p.clone())),
        }
    }
}
