//! The `BlobStore` trait: one blob in some storage: a local file, a storage account's blob, or a stream (`-`).

mod azure;
mod container;
mod local;
pub mod parts;
mod stdio;
pub mod url;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use barge_bundle::Digest;
use tokio::io::AsyncWrite;

pub use azure::AzureBlob;
pub use container::{open_container, Container, Listed};
pub use local::LocalBlob;
pub use parts::Parts;
pub use stdio::{Stdio, UNKNOWN_SIZE};
pub use url::{AccountKey, BlobUrl};

use crate::io::ByteStream;
use crate::Result;

/// What a store knows about a blob that exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    pub size: u64,
    /// Changes whenever the content does; used to pin a source and for conditional deletes.
    pub etag: String,
    pub modified: Option<SystemTime>,
    /// User metadata, carried by copies.
    pub metadata: Vec<(String, String)>,
    /// The blob's Content-MD5 property, where the store keeps one.
    pub content_md5: Option<Vec<u8>>,
}

/// How to copy block by block.
#[derive(Debug, Clone, Copy, Default)]
pub struct CopyBlocks {
    pub overwrite: bool,
    pub concurrency: usize,
    /// Pass every block through this process even where the service could read the source.
    pub relay: bool,
}

/// How a block-wise copy went.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockCopy {
    pub block_size: u64,
    pub blocks: u64,
    /// Blocks staged by this run (fewer than `blocks` when resuming).
    pub blocks_staged: u64,
    /// Blocks the destination read from the source itself (Put Block From URL).
    pub server_side: u64,
}

/// What a finished write must amount to before it takes its final name.
#[derive(Debug, Clone)]
pub struct Expect {
    pub size: u64,
    /// When set, the written blob is read back and must hash to this.
    pub sha256: Option<Digest>,
    /// Metadata to set on the blob, where the store keeps any.
    pub metadata: Vec<(String, String)>,
    /// The source's Content-MD5: what was written must match it.
    pub md5: Option<Vec<u8>>,
}

/// One blob location.
#[async_trait]
pub trait BlobStore: Send + Sync {
    /// How to show it to the user: never a secret.
    fn display(&self) -> String;

    /// `None` when there is no blob there.
    async fn info(&self) -> Result<Option<BlobInfo>>;

    /// Stream `len` bytes from `offset`, only if the blob still has `etag`
    /// (the one [`info`](Self::info) gave): every read is of one known version.
    async fn read_range(&self, offset: u64, len: u64, etag: &str) -> Result<ByteStream>;

    /// Is reading a part a second time cheap (a local file), or better avoided (the network)?
    fn rereads_are_cheap(&self) -> bool;

    /// The blob's URL, when another server can read it from there (server-side copy).
    fn url(&self) -> Option<&BlobUrl> {
        None
    }

    /// Copy `src` (described by `info`) here in this store's own way, when it
    /// has one (Azure: block by block, server-side where it can, resumable).
    /// `None`: the caller streams the copy itself.
    async fn copy_from(
        &self,
        _src: &dyn BlobStore,
        _info: &BlobInfo,
        _opts: &CopyBlocks,
        _reporter: &dyn crate::Reporter,
    ) -> Result<Option<BlockCopy>> {
        Ok(None)
    }

    /// Start writing a new version. Nothing is visible under the blob's name
    /// until [`BlobSink::commit`]; dropping the sink discards the write.
    /// `size_hint` (the expected size, when known) lets a store pick its block size.
    async fn create(&self, overwrite: bool, size_hint: u64) -> Result<Box<dyn BlobSink>>;

    /// Start writing a new version of exactly `size` bytes by position, in
    /// any order, where this store can (a local file); `None` where it writes
    /// only in sequence. As with [`create`](Self::create), nothing is visible
    /// before [`PositionalSink::commit`], and dropping the sink discards it.
    async fn create_positional(&self, _overwrite: bool, _size: u64) -> Result<Option<Arc<dyn PositionalSink>>> {
        Ok(None)
    }

    /// Delete the blob, only if it still has `if_match` as its etag when given.
    async fn delete(&self, if_match: Option<&str>) -> Result<()>;

    /// Write a small document whole, only if the blob still has etag
    /// `if_match` (with `None`: only if there is none). `Changed` otherwise.
    /// Returns the new etag. For state that several processes share.
    async fn put_if(&self, bytes: Vec<u8>, if_match: Option<&str>) -> Result<String>;
}

#[async_trait]
pub trait BlobSink: AsyncWrite + Send + Unpin {
    /// Check the written data against `expect` and make it visible. Without
    /// `overwrite` (given to `create`) an existing blob makes this fail with
    /// `Exists` and stay untouched, however late it appeared.
    async fn commit(self: Box<Self>, expect: Expect) -> Result<()>;
}

/// A blob being written by position: several writers at once, each to its
/// own range, in any order; what is written can be read back at once (for
/// a hash that follows the writers). Blocking calls: run them off the runtime.
#[async_trait]
pub trait PositionalSink: Send + Sync {
    fn write_at(&self, offset: u64, bytes: &[u8]) -> std::io::Result<()>;
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()>;
    /// The bytes in `from..upto` are final: the sink may start making them
    /// durable now, so that the commit has less to wait for. A hint: what
    /// fails shows at the commit.
    fn settled(&self, _from: u64, _upto: u64) {}
    /// Check the written data against `expect` and make it visible, as
    /// [`BlobSink::commit`] does. Only the first call commits.
    async fn commit(&self, expect: Expect) -> Result<()>;
}

/// Where a blob is, as the user wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    /// `-`: standard input to read from, standard output to write to.
    Stdio,
    /// A blob in Azure Blob Storage (or Azurite), with its SAS once resolved.
    Azure(BlobUrl),
    /// A split bundle: its `NAME.parts.json` (a `Local` or `Azure` location),
    /// and the part named, when the user named one (`NAME.partNNNN`).
    Parts {
        json: Box<Location>,
        part: Option<u32>,
    },
}

/// Where SAS tokens come from for storage URLs that carry none.
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    /// A file holding a SAS token (with or without a leading `?`).
    pub sas_file: Option<PathBuf>,
    /// Requests in flight per blob.
    pub concurrency: usize,
}

impl Location {
    /// A local path, or a storage URL. A URL without a SAS takes one from
    /// `--sas-file`, `AZURE_STORAGE_SAS_TOKEN`, or signs one with the key in
    /// `AZURE_STORAGE_CONNECTION_STRING` / `AZURE_STORAGE_ACCOUNT` + `AZURE_STORAGE_KEY`.
    pub fn parse(s: &str, opts: &StoreOptions) -> Result<Location> {
        if s.is_empty() {
            return Err(crate::TransferError::InvalidLocation(
                "an empty location was given; name a file path or a storage URL".into(),
            ));
        }
        if s == "-" {
            return Ok(Location::Stdio);
        }
        Ok(Location::parse_one(s, opts)?.recognise_parts())
    }

    fn parse_one(s: &str, opts: &StoreOptions) -> Result<Location> {
        if !(s.starts_with("http://") || s.starts_with("https://")) {
            return Ok(Location::Local(PathBuf::from(s)));
        }
        let url = BlobUrl::parse(s)?;
        if url.blob().is_empty() {
            return Err(crate::TransferError::InvalidLocation(format!("{url} names a container; add the blob name")));
        }
        if url.has_sas() {
            return Ok(Location::Azure(url));
        }
        if let Some(f) = &opts.sas_file {
            let sas = std::fs::read_to_string(f)
                .map_err(|e| crate::TransferError::io(format!("reading the SAS file {}", f.display()), e))?;
            return Ok(Location::Azure(url.with_sas(crate::Secret::new(sas.trim()))));
        }
        if let Ok(sas) = std::env::var("AZURE_STORAGE_SAS_TOKEN") {
            return Ok(Location::Azure(url.with_sas(crate::Secret::new(sas.trim()))));
        }
        let key = match (std::env::var("AZURE_STORAGE_CONNECTION_STRING"), std::env::var("AZURE_STORAGE_KEY")) {
            (Ok(cs), _) => Some(AccountKey::from_connection_string(&cs)?),
            (_, Ok(k)) => Some(AccountKey::new(&std::env::var("AZURE_STORAGE_ACCOUNT").unwrap_or_default(), &k)?),
            _ => None,
        };
        match key {
            Some(k) if k.account == url.account() => {
                let sas = k.container_sas(url.container(), "racwdl", std::time::Duration::from_secs(3600));
                Ok(Location::Azure(url.with_sas(sas)))
            }
            // No SAS at all: the storage says what it thinks, and the error names the fixes.
            _ => Ok(Location::Azure(url)),
        }
    }

    pub fn open(&self, opts: &StoreOptions) -> Result<Box<dyn BlobStore>> {
        Ok(match self {
            Location::Local(p) => Box::new(LocalBlob::new(p.clone())),
            Location::Stdio => Box::new(Stdio::new()),
            Location::Azure(u) => Box::new(AzureBlob::new(u.clone(), opts.concurrency.max(1))?),
            Location::Parts { .. } => Box::new(self.open_parts(opts)?),
        })
    }

    /// The last name of a file path or a blob.
    fn name(&self) -> Option<String> {
        match self {
            Location::Local(p) => p.file_name().map(|n| n.to_string_lossy().into_owned()),
            Location::Azure(u) => u.blob().rsplit('/').next().map(str::to_string),
            Location::Stdio | Location::Parts { .. } => None,
        }
    }

    /// `NAME.parts.json` or `NAME.partNNNN` names a split bundle.
    fn recognise_parts(self) -> Location {
        let Some(name) = self.name() else { return self };
        match parts::split_name(&name) {
            Some((stem, part)) => {
                let json = self.sibling(&format!("{stem}{}", parts::PARTS_JSON));
                Location::Parts { json: Box::new(json), part }
            }
            None => self,
        }
    }

    /// Another name in the same directory or container (and virtual directory).
    fn sibling(&self, name: &str) -> Location {
        match self {
            Location::Local(p) => Location::Local(p.with_file_name(name)),
            Location::Azure(u) => Location::Azure(u.sibling(&match u.blob().rsplit_once('/') {
                Some((dir, _)) => format!("{dir}/{name}"),
                None => name.to_string(),
            })),
            other => other.clone(),
        }
    }

    /// This location as a split bundle to write: `NAME` becomes `NAME.parts.json` (and its parts).
    pub fn split(self) -> Result<Location> {
        match self {
            Location::Parts { part: None, .. } => Ok(self),
            Location::Local(_) | Location::Azure(_) => {
                let name = self.name().unwrap_or_default();
                Ok(Location::Parts {
                    json: Box::new(self.sibling(&format!("{name}{}", parts::PARTS_JSON))),
                    part: None,
                })
            }
            Location::Parts { .. } | Location::Stdio => Err(crate::TransferError::InvalidLocation(
                "a split bundle is written to a file or blob name (NAME, or NAME.parts.json), not a part or a stream"
                    .into(),
            )),
        }
    }

    /// The one part this location names (`NAME.partNNNN`), as a plain blob.
    pub fn part_alone(&self) -> Option<Location> {
        let Location::Parts { json, part: Some(n) } = self else { return None };
        let name = json.name()?;
        let stem = name.strip_suffix(parts::PARTS_JSON)?;
        Some(json.sibling(&parts::part_name(stem, *n as usize)))
    }

    /// The split bundle this location names.
    pub fn open_parts(&self, opts: &StoreOptions) -> Result<Parts> {
        let Location::Parts { json, .. } = self else {
            return Err(crate::TransferError::InvalidLocation("not a split bundle (NAME.parts.json)".into()));
        };
        let beside = match json.as_ref() {
            Location::Local(p) => parts::Beside::Local(p.clone()),
            Location::Azure(u) => parts::Beside::Azure(u.clone(), opts.concurrency.max(1)),
            _ => return Err(crate::TransferError::Internal("a split bundle lies in a file or a blob")),
        };
        Parts::new(beside)
    }
}
