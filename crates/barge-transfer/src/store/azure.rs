//! `AzureBlob`: a blob in Azure Blob Storage (or Azurite), on `azure_storage_blob`. The only file that names its types.
//!
//! Reads are the SDK's parallel ranged download, pinned to the blob's ETag,
//! going on where a body breaks off.
//! Writes stream into staged blocks (several in flight) and become visible
//! only with the final, conditional commit of the block list.

use std::collections::HashMap;
use std::num::NonZero;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use azure_core::http::{Etag, RequestContent, StatusCode, Url};
use azure_storage_blob::models::{
    BlobClientDeleteOptions, BlobClientDownloadOptions, BlobClientGetPropertiesResultHeaders,
    BlockBlobClientCommitBlockListOptions, BlockBlobClientStageBlockFromUrlOptions, BlockBlobClientStageBlockOptions,
    BlockListType, BlockLookupList, HttpRange,
};
use azure_storage_blob::{BlobClient, BlockBlobClient};
use futures::TryStreamExt;
use md5::Digest as _;
use tokio::io::AsyncReadExt;
use tokio::task::JoinSet;

use super::url::BlobUrl;
use super::{BlobInfo, BlobSink, BlobStore, BlockCopy, CopyBlocks, Expect};
use crate::bench::Timings;
use crate::io::ByteStream;
use crate::{Result, TransferError};

/// The default block (and download partition) size.
pub const BLOCK_SIZE: usize = 8 << 20;
/// Ranged download size, the default block size: a relayed block of that
/// size is one request, not two (the service, and Azurite even more,
/// pays per request: 4 MiB partitions made a relayed copy 1.45× and a
/// download 1.8× slower against Azurite). `concurrency` of these are in
/// memory at once.
const DOWNLOAD_PARTITION: usize = 8 << 20;
/// Memory for relayed blocks in flight during a copy.
const RELAY_BUDGET: u64 = 64 << 20;
/// Azure's limit of blocks in one blob.
pub const MAX_BLOCKS: u64 = 50_000;

pub struct AzureBlob {
    url: BlobUrl,
    client: Arc<BlobClient>,
    concurrency: usize,
    /// Where each staged block's time goes, when someone measures (`bench`, `copy`'s figures).
    timings: Option<Arc<Timings>>,
    /// A block size chosen by the caller instead of [`block_size_for`]'s.
    block_size: Option<u64>,
}

/// What an operation needed, to name the SAS permission it lacks.
#[derive(Clone, Copy)]
pub enum Need {
    Read,
    Write,
    Delete,
}

impl Need {
    fn letter(self) -> char {
        match self {
            Need::Read => 'r',
            Need::Write => 'w',
            Need::Delete => 'd',
        }
    }
}

impl AzureBlob {
    pub fn new(url: BlobUrl, concurrency: usize) -> Result<AzureBlob> {
        let u = Url::parse(&url.expose()).map_err(|e| TransferError::InvalidLocation(format!("{url}: {e}")))?;
        let opts =
            azure_storage_blob::BlobClientOptions { client_options: client_options(&url)?, ..Default::default() };
        let client = BlobClient::new(u, None, Some(opts))
            .map_err(|_| TransferError::InvalidLocation(format!("{url}: not a usable blob URL")))?;
        Ok(AzureBlob {
            url,
            client: Arc::new(client),
            concurrency: concurrency.max(1),
            timings: None,
            block_size: None,
        })
    }

    /// Record how long each staged block (a write's, a copy's) takes into `timings`.
    pub fn with_timings(mut self, timings: Arc<Timings>) -> AzureBlob {
        self.timings = Some(timings);
        self
    }

    /// Write and copy in blocks of `size` bytes (raised where a blob would need more than 50,000).
    pub fn with_block_size(mut self, size: u64) -> AzureBlob {
        self.block_size = Some(size);
        self
    }

    /// The block size a blob of `size` bytes is written and copied in, unless one is chosen.
    pub fn default_block_size(size: u64) -> u64 {
        block_size_for(size)
    }

    /// The block size for a blob of `size` bytes.
    fn block_size(&self, size: u64) -> u64 {
        match self.block_size {
            Some(b) => b.max(min_block_size(size)),
            None => block_size_for(size),
        }
    }

    pub fn url(&self) -> &BlobUrl {
        &self.url
    }

    /// Turn an SDK error into one that names the cause and never the SAS.
    pub fn map_err(&self, doing: &str, need: Need, e: azure_core::Error) -> TransferError {
        map_err(&self.url, doing, need, e)
    }
}

pub fn map_err(url: &BlobUrl, doing: &str, need: Need, e: azure_core::Error) -> TransferError {
    let status = e.http_status();
    let code = match e.kind() {
        azure_core::error::ErrorKind::HttpResponse { error_code, .. } => error_code.clone().unwrap_or_default(),
        _ => String::new(),
    };
    match status {
        Some(StatusCode::Forbidden) | Some(StatusCode::Unauthorized) => {
            if !url.has_sas() {
                return TransferError::NoSas { doing: doing.to_string(), url: url.to_string() };
            }
            if let Some(se) = url.sas_expiry() {
                if se.as_str() < super::url::rfc3339(SystemTime::now()).as_str() {
                    return TransferError::Auth(format!("{doing} {url}: the SAS expired at {se}; make a new one"));
                }
            }
            if let Some(sp) = url.sas_permissions() {
                if !sp.contains(need.letter()) {
                    return TransferError::Auth(format!(
                        "{doing} {url}: the SAS lacks the '{}' permission (it has '{sp}')",
                        need.letter()
                    ));
                }
            }
            TransferError::Auth(format!("{doing} {url}: access denied ({code}); check the SAS"))
        }
        Some(StatusCode::NotFound) if code == "ContainerNotFound" => TransferError::NotFound(format!(
            "container {} of account {} ({doing} {url})",
            url.container(),
            url.account()
        )),
        Some(StatusCode::NotFound) => TransferError::NotFound(format!("blob {url}")),
        Some(StatusCode::Conflict) | Some(StatusCode::PreconditionFailed) if code == "BlobAlreadyExists" => {
            TransferError::Exists(url.to_string())
        }
        Some(StatusCode::PreconditionFailed) | Some(StatusCode::Conflict) => {
            TransferError::Changed(format!("{url} changed during the operation ({code}); nothing was committed"))
        }
        Some(s) => TransferError::Storage(format!("{doing} {url}: HTTP {} {code}", u16::from(s))),
        None => match network_failure(&e) {
            Some(why) => TransferError::Storage(format!("{doing} {url}: {why}")),
            None => TransferError::Storage(format!("{doing} {url}: {}", kind_text(&e))),
        },
    }
}

/// The SDK's own text could quote the request URL with its SAS: describe the kind only.
fn kind_text(e: &azure_core::Error) -> String {
    let s = format!("{:?}", e.kind());
    super::url::redact(&s)
}

#[async_trait]
impl BlobStore for AzureBlob {
    fn display(&self) -> String {
        self.url.to_string()
    }

    async fn info(&self) -> Result<Option<BlobInfo>> {
        match self.client.get_properties(None).await {
            Ok(r) => {
                let size = r.content_length().ok().flatten().unwrap_or(0);
                let etag = r.etag().ok().flatten().map(|e| e.to_string()).unwrap_or_default();
                let modified = r.last_modified().ok().flatten().map(SystemTime::from);
                let mut metadata: Vec<(String, String)> = r.metadata().unwrap_or_default().into_iter().collect();
                metadata.sort();
                let content_md5 = r.content_md5().ok().flatten();
                Ok(Some(BlobInfo { size, etag, modified, metadata, content_md5 }))
            }
            Err(e) if e.http_status() == Some(StatusCode::NotFound) => {
                // A missing container is worth saying; a missing blob is just "none".
                match self.map_err("reading", Need::Read, e) {
                    TransferError::NotFound(m) if m.starts_with("container") => Err(TransferError::NotFound(m)),
                    _ => Ok(None),
                }
            }
            Err(e) => Err(self.map_err("reading", Need::Read, e)),
        }
    }

    async fn read_range(&self, offset: u64, len: u64, etag: &str) -> Result<ByteStream> {
        if len == 0 {
            // Nothing to read (an empty blob): no range request, which could not express it.
            return Ok(Box::new(tokio::io::empty()));
        }
        let from = Range {
            client: self.client.clone(),
            url: self.url.clone(),
            etag: etag.to_string(),
            parallel: self.concurrency,
        };
        let first = from.open(offset, len).await?;
        let state = Resume { from, at: offset, end: offset + len, body: Some(first), attempt: 1, failing_since: None };
        Ok(Box::new(tokio_util::io::StreamReader::new(Box::pin(futures::stream::unfold(state, Resume::next)))))
    }

    fn rereads_are_cheap(&self) -> bool {
        false
    }

    fn url(&self) -> Option<&BlobUrl> {
        Some(&self.url)
    }

    async fn copy_from(
        &self,
        src: &dyn BlobStore,
        info: &BlobInfo,
        opts: &CopyBlocks,
        reporter: &dyn crate::Reporter,
    ) -> Result<Option<BlockCopy>> {
        self.copy_blocks(src, info, opts, reporter).await.map(Some)
    }

    async fn create(&self, overwrite: bool, size_hint: u64) -> Result<Box<dyn BlobSink>> {
        if !overwrite && self.info().await?.is_some() {
            return Err(TransferError::Exists(self.url.to_string()));
        }
        let (writer, reader) = tokio::io::duplex(1 << 20);
        let client = self.client.clone();
        let url = self.url.clone();
        // Each block in flight is held until staged: three keep the link busy
        // and the memory of an export under 64 MiB.
        let in_flight = self.concurrency.min(3);
        let block_size = self.block_size(size_hint) as usize;
        let timings = self.timings.clone();
        let stager = tokio::spawn(stage_all(client, url, reader, (in_flight, block_size), timings));
        Ok(Box::new(AzureSink {
            writer: Some(writer),
            stager: Some(stager),
            client: self.client.clone(),
            url: self.url.clone(),
            overwrite,
        }))
    }

    async fn put_if(&self, bytes: Vec<u8>, if_match: Option<&str>) -> Result<String> {
        use azure_storage_blob::models::BlockBlobClientUploadOptions;
        let opts = BlockBlobClientUploadOptions {
            if_match: if_match.map(Etag::from),
            if_none_match: if_match.is_none().then(|| Etag::from("*")),
            ..Default::default()
        };
        let len = bytes.len() as u64;
        let r = self.client.block_blob_client().upload(RequestContent::from(bytes), Some(opts)).await;
        match r {
            Ok(r) => Ok(r.etag.map(|e| e.to_string()).unwrap_or_default()),
            Err(e) if matches!(e.http_status(), Some(StatusCode::Conflict) | Some(StatusCode::PreconditionFailed)) => {
                Err(TransferError::Changed(format!("{} was changed by another writer", self.url)))
            }
            Err(e) => Err(self.map_err(&format!("writing {len} bytes to"), Need::Write, e)),
        }
    }

    async fn delete(&self, if_match: Option<&str>) -> Result<()> {
        let opts = BlobClientDeleteOptions { if_match: if_match.map(Etag::from), ..Default::default() };
        match self.client.delete(Some(opts)).await {
            Ok(_) => Ok(()),
            Err(e) if e.http_status() == Some(StatusCode::NotFound) => Ok(()),
            Err(e) => Err(self.map_err("deleting", Need::Delete, e)),
        }
    }
}

/// The block size for a blob of `size` bytes: 8 MiB, or larger in whole MiB
/// so that no blob needs more than 50,000 blocks.
pub fn block_size_for(size: u64) -> u64 {
    min_block_size(size).max(BLOCK_SIZE as u64)
}

/// The smallest block size, in whole MiB, that keeps a blob of `size` bytes within 50,000 blocks.
fn min_block_size(size: u64) -> u64 {
    (size.div_ceil(MAX_BLOCKS)).div_ceil(1 << 20) << 20
}

impl AzureBlob {
    /// Copy block by block. Block ids derive from the source's identity (its
    /// name without SAS, ETag, size) and the block index, so a re-run finds the
    /// blocks an interrupted run staged (the uncommitted block list) and stages
    /// only the rest. Each block is read by the storage service from the
    /// source's URL where it can (Put Block From URL), else relayed through
    /// this process. The source is pinned by its ETag; the list is committed
    /// only if the source is unchanged.
    async fn copy_blocks(
        &self,
        src: &dyn BlobStore,
        info: &BlobInfo,
        opts: &CopyBlocks,
        reporter: &dyn crate::Reporter,
    ) -> Result<BlockCopy> {
        use futures::stream::{self, StreamExt};
        use sha2::Digest as _;
        let block_size = self.block_size(info.size);
        let count = info.size.div_ceil(block_size).max(1);
        let identity = sha2::Sha256::digest(format!("{}|{}|{}|{}", src.display(), info.etag, info.size, block_size));
        let prefix = hex::encode(&identity[..10]);
        let ids: Vec<Vec<u8>> = (0..count).map(|i| block_id(&prefix, i)).collect();
        let blocks = Arc::new(self.client.block_blob_client());

        // What an interrupted run already staged, with the right size.
        let staged = already_staged(&blocks, &ids, info.size, block_size).await;
        let missing: Vec<u64> = (0..count).filter(|i| !staged.contains(&ids[*i as usize])).collect();
        reporter.start("copying", Some(info.size));
        reporter.advance((count - missing.len() as u64) * block_size.min(info.size));

        let server_side = std::sync::atomic::AtomicBool::new(src.url().is_some() && !opts.relay);
        let by_server = std::sync::atomic::AtomicU64::new(0);
        let source_url = src.url().map(|u| u.expose());
        // A relayed block is held twice (the download's partitions, then the
        // block to stage): keep at most RELAY_BUDGET in flight, whatever the concurrency.
        let relay_slots = tokio::sync::Semaphore::new((RELAY_BUDGET / (2 * block_size)).max(1) as usize);
        // The first failure ends the copy (the blocks in flight are dropped):
        // a dead endpoint costs one retry budget, not one per block.
        stream::iter(missing.iter().copied())
            .map(|i| {
                let blocks = blocks.clone();
                let id = ids[i as usize].clone();
                let (server_side, by_server, source_url, relay_slots) =
                    (&server_side, &by_server, &source_url, &relay_slots);
                async move {
                    let offset = i * block_size;
                    let len = (info.size - offset).min(block_size);
                    let started = Instant::now();
                    if let (true, Some(url)) = (server_side.load(std::sync::atomic::Ordering::Relaxed), source_url) {
                        if self.stage_from_url(src, info, &blocks, &id, url, (offset, len)).await? {
                            by_server.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            self.timed(started);
                            reporter.advance(len);
                            return Ok(());
                        }
                        // The service cannot read the source: relay this block and those after it.
                        server_side.store(false, std::sync::atomic::Ordering::Relaxed);
                    }
                    let _slot = relay_slots.acquire().await.expect("the semaphore is never closed");
                    // A relayed block's time starts when it may move, not while it waits for memory.
                    let started = Instant::now();
                    self.relay_block(src, info, &blocks, &id, offset, len).await?;
                    self.timed(started);
                    reporter.advance(len);
                    Ok::<(), TransferError>(())
                }
            })
            .buffer_unordered(opts.concurrency.max(1))
            .try_collect::<Vec<()>>()
            .await?;
        self.commit_if_unchanged(src, info, ids, block_size, opts.overwrite).await?;
        reporter.finish();
        Ok(BlockCopy {
            block_size,
            blocks: count,
            blocks_staged: missing.len() as u64,
            server_side: by_server.into_inner(),
        })
    }

    /// One block staged, `started` ago: its time goes to the recorder, if any.
    fn timed(&self, started: Instant) {
        if let Some(t) = &self.timings {
            t.record(started.elapsed());
        }
    }

    /// Stage one block by the service's own copy from `url` (the source's
    /// version pinned by its ETag). `Ok(false)`: the service cannot read the
    /// source (no route, refused, not implemented), so the block is to be relayed.
    async fn stage_from_url(
        &self,
        src: &dyn BlobStore,
        info: &BlobInfo,
        blocks: &BlockBlobClient,
        id: &[u8],
        url: &str,
        (offset, len): (u64, u64),
    ) -> Result<bool> {
        let opts = BlockBlobClientStageBlockFromUrlOptions {
            source_range: Some(HttpRange::new(offset, len)),
            source_if_match: Some(Etag::from(info.etag.clone())),
            ..Default::default()
        };
        match blocks.stage_block_from_url(id, 0, url.to_string(), Some(opts)).await {
            Ok(_) => Ok(true),
            Err(e) if e.http_status() == Some(StatusCode::PreconditionFailed) => {
                Err(TransferError::Changed(format!("{} changed during the copy; nothing was committed", src.display())))
            }
            // No answer from the destination at all: relaying would not help.
            Err(e) if e.http_status().is_none() => Err(self.map_err("writing", Need::Write, e)),
            Err(_) => Ok(false),
        }
    }

    /// Commit the copy's blocks, only if the source is still the version they were read from.
    async fn commit_if_unchanged(
        &self,
        src: &dyn BlobStore,
        info: &BlobInfo,
        ids: Vec<Vec<u8>>,
        block_size: u64,
        overwrite: bool,
    ) -> Result<()> {
        // Pinned: commit only what was read from the blob we started from.
        match src.info().await? {
            Some(now) if now.etag == info.etag => {}
            _ => {
                return Err(TransferError::Changed(format!(
                    "{} changed during the copy; nothing was committed",
                    src.display()
                )))
            }
        }
        // The source's Content-MD5 is carried as a property (the service does not check it on commit).
        let sizes = (0..ids.len() as u64).map(|i| (info.size - i * block_size).min(block_size)).collect();
        let commit = Commit {
            ids,
            sizes,
            md5: info.content_md5.clone(),
            metadata: info.metadata.clone(),
            overwrite,
            unique_ids: false,
        };
        commit_blocks(&self.client, &self.url, commit).await?;
        Ok(())
    }

    /// Read one block of `src` through this process and stage it, checked by its MD5.
    async fn relay_block(
        &self,
        src: &dyn BlobStore,
        info: &BlobInfo,
        blocks: &BlockBlobClient,
        id: &[u8],
        offset: u64,
        len: u64,
    ) -> Result<()> {
        let mut r = src.read_range(offset, len, &info.etag).await?;
        let mut buf = Vec::with_capacity(len as usize);
        r.read_to_end(&mut buf).await.map_err(|e| TransferError::io(format!("reading {}", src.display()), e))?;
        if buf.len() as u64 != len {
            return Err(TransferError::Changed(format!(
                "{} changed during the copy; nothing was committed",
                src.display()
            )));
        }
        let md5: [u8; 16] = md5::Md5::digest(&buf).into();
        let opts =
            BlockBlobClientStageBlockOptions { transactional_content_md5: Some(md5.to_vec()), ..Default::default() };
        blocks
            .stage_block(id, len, RequestContent::from(buf), Some(opts))
            .await
            .map_err(|e| self.map_err("writing", Need::Write, e))?;
        Ok(())
    }
}

/// The blocks of `ids` an interrupted run already staged, each with the size it must have.
async fn already_staged(
    blocks: &BlockBlobClient,
    ids: &[Vec<u8>],
    size: u64,
    block_size: u64,
) -> std::collections::HashSet<Vec<u8>> {
    let Ok(r) = blocks.get_block_list(BlockListType::Uncommitted, None).await else { return Default::default() };
    r.into_model()
        .ok()
        .and_then(|l| l.uncommitted_blocks)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|b| Some((b.name?, b.size?)))
        .filter(|(name, got)| {
            let i = ids.iter().position(|id| id == name);
            i.is_some_and(|i| *got as u64 == (size - i as u64 * block_size).min(block_size))
        })
        .map(|(name, _)| name)
        .collect()
}

/// The id of block `index`: all ids of a blob have the same length (a
/// 20-hex-digit prefix, a dash, ten digits), as the service requires of the
/// blocks staged on one blob.
pub fn block_id(prefix: &str, index: u64) -> Vec<u8> {
    format!("{prefix}-{index:010}").into_bytes()
}

/// A block-id prefix no other write shares: from randomness, this process, the time and a
/// counter, hashed to 20 hex digits. Two writers staging into one blob can then
/// never commit each other's blocks (a copy's ids, by contrast, derive from its
/// source so that a re-run resumes).
fn write_prefix() -> String {
    use sha2::Digest as _;
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let now = SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    // The standard library seeds each RandomState from the OS's randomness.
    let random = std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), n);
    let seed = format!("{}|{now}|{n}|{random:x}", std::process::id());
    hex::encode(&sha2::Sha256::digest(seed.as_bytes())[..10])
}

/// What was staged, to be committed and then checked.
struct Staged {
    ids: Vec<Vec<u8>>,
    sizes: Vec<u64>,
    size: u64,
    md5: [u8; 16],
}

/// Cut the stream into blocks and stage them, a few at a time.
async fn stage_all(
    client: Arc<BlobClient>,
    url: BlobUrl,
    mut reader: tokio::io::DuplexStream,
    (in_flight, block_size): (usize, usize),
    timings: Option<Arc<Timings>>,
) -> Result<Staged> {
    let blocks = Arc::new(client.block_blob_client());
    let prefix = write_prefix();
    let mut md5 = md5::Md5::new();
    let (mut ids, mut sizes) = (Vec::new(), Vec::new());
    let mut size = 0u64;
    let mut tasks: JoinSet<Result<()>> = JoinSet::new();
    loop {
        let mut buf = Vec::with_capacity(block_size);
        while buf.len() < block_size {
            let n = (&mut reader)
                .take((block_size - buf.len()) as u64)
                .read_to_end(&mut buf)
                .await
                .map_err(|e| TransferError::io("streaming into blocks", e))?;
            if n == 0 {
                break;
            }
        }
        if buf.is_empty() {
            break;
        }
        md5.update(&buf);
        size += buf.len() as u64;
        let id = block_id(&prefix, ids.len() as u64);
        ids.push(id.clone());
        sizes.push(buf.len() as u64);
        // A failed block ends the staging at once (the pipe breaks, the writer learns why).
        while let Some(r) = tasks.try_join_next() {
            joined(r)?;
        }
        while tasks.len() >= in_flight {
            if let Some(r) = tasks.join_next().await {
                joined(r)?;
            }
        }
        let blocks = blocks.clone();
        let url = url.clone();
        let len = buf.len() as u64;
        let timings = timings.clone();
        tasks.spawn(async move {
            let started = Instant::now();
            // The service checks each block against its MD5.
            let md5: [u8; 16] = md5::Md5::digest(&buf).into();
            let opts = BlockBlobClientStageBlockOptions {
                transactional_content_md5: Some(md5.to_vec()),
                ..Default::default()
            };
            blocks
                .stage_block(&id, len, RequestContent::from(buf), Some(opts))
                .await
                .map_err(|e| map_err(&url, "writing", Need::Write, e))?;
            if let Some(t) = timings {
                t.record(started.elapsed());
            }
            Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        joined(r)?;
    }
    Ok(Staged { ids, sizes, size, md5: md5.finalize().into() })
}

struct AzureSink {
    writer: Option<tokio::io::DuplexStream>,
    /// Taken when its result is: by a write that found the pipe broken, or by the commit.
    stager: Option<tokio::task::JoinHandle<Result<Staged>>>,
    client: Arc<BlobClient>,
    url: BlobUrl,
    overwrite: bool,
}

/// A join error as a transfer error: a staging task never panics, so this is a cancellation.
fn joined<T>(r: std::result::Result<Result<T>, tokio::task::JoinError>) -> Result<T> {
    r.unwrap_or_else(|_| Err(TransferError::Storage("the upload was cancelled".into())))
}

impl AzureSink {
    /// The pipe into the stager broke, so the stager has ended: its error (a
    /// missing 'w', an expired SAS, a dead endpoint) is the one to report, not
    /// the broken pipe. Pending until the stager's result is there.
    fn why_broken(&mut self, cx: &mut std::task::Context<'_>, e: std::io::Error) -> std::task::Poll<std::io::Error> {
        use std::future::Future;
        let Some(stager) = self.stager.as_mut() else { return std::task::Poll::Ready(e) };
        let r = std::task::ready!(std::pin::Pin::new(stager).poll(cx));
        self.stager = None;
        std::task::Poll::Ready(match joined(r) {
            Err(te) => te.into_io(),
            Ok(_) => e,
        })
    }

    fn writer(&mut self) -> std::io::Result<&mut tokio::io::DuplexStream> {
        self.writer.as_mut().ok_or_else(|| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
    }
}

impl Drop for AzureSink {
    /// A sink dropped uncommitted stops staging at once.
    fn drop(&mut self) {
        if let Some(stager) = &self.stager {
            stager.abort();
        }
    }
}

impl tokio::io::AsyncWrite for AzureSink {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = match self.writer() {
            Ok(w) => std::pin::Pin::new(w).poll_write(cx, buf),
            Err(e) => std::task::Poll::Ready(Err(e)),
        };
        match r {
            std::task::Poll::Ready(Err(e)) => self.why_broken(cx, e).map(Err),
            r => r,
        }
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let r = match self.writer() {
            Ok(w) => std::pin::Pin::new(w).poll_flush(cx),
            Err(e) => std::task::Poll::Ready(Err(e)),
        };
        match r {
            std::task::Poll::Ready(Err(e)) => self.why_broken(cx, e).map(Err),
            r => r,
        }
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let r = match self.writer() {
            Ok(w) => std::pin::Pin::new(w).poll_shutdown(cx),
            Err(e) => std::task::Poll::Ready(Err(e)),
        };
        match r {
            std::task::Poll::Ready(Err(e)) => self.why_broken(cx, e).map(Err),
            r => r,
        }
    }
}

#[async_trait]
impl BlobSink for AzureSink {
    async fn commit(mut self: Box<Self>, expect: Expect) -> Result<()> {
        use tokio::io::AsyncWriteExt;
        self.shutdown().await.map_err(|e| TransferError::io("finishing the upload", e))?;
        self.writer = None;
        let Some(stager) = self.stager.take() else {
            return Err(TransferError::Storage(format!("{}: the upload had already failed", self.url)));
        };
        let staged = joined(stager.await)?;
        let url = &self.url;
        if staged.size != expect.size {
            return Err(TransferError::Bundle(barge_bundle::BundleError::Corrupt(format!(
                "{url}: {} bytes staged, {} written; nothing was committed",
                staged.size, expect.size
            ))));
        }
        let commit = Commit {
            ids: staged.ids,
            sizes: staged.sizes,
            md5: Some(staged.md5.to_vec()),
            metadata: expect.metadata,
            overwrite: self.overwrite,
            unique_ids: true,
        };
        commit_blocks(&self.client, url, commit).await
    }
}

/// A block list to commit, and what it must amount to.
pub struct Commit {
    pub ids: Vec<Vec<u8>>,
    /// Each block's size, in the order of `ids`.
    pub sizes: Vec<u64>,
    /// The whole blob's MD5, kept as its Content-MD5 property.
    pub md5: Option<Vec<u8>>,
    pub metadata: Vec<(String, String)>,
    pub overwrite: bool,
    /// Are the ids this write's alone (a nonce prefix), so that finding them
    /// committed proves this write's own commit took effect?
    pub unique_ids: bool,
}

/// Commit a block list (without `overwrite` only if no blob exists:
/// If-None-Match: *), sent with the MD5 of its own body so the service checks
/// it arrived whole; then read the committed list back and check it is the one
/// sent, block by block, and the blob's size is the sum of theirs.
pub async fn commit_blocks(client: &BlobClient, url: &BlobUrl, c: Commit) -> Result<()> {
    use azure_storage_blob::models::BlockBlobClientCommitBlockListResultHeaders;
    let list = BlockLookupList { latest: Some(c.ids.clone()), ..Default::default() };
    let content: RequestContent<BlockLookupList, azure_core::http::XmlFormat> =
        list.try_into().map_err(|_| TransferError::Storage("could not encode the block list".into()))?;
    let body_md5 = match content.body() {
        azure_core::http::Body::Bytes(b) => Some(md5::Md5::digest(b).to_vec()),
        _ => None,
    };
    let opts = BlockBlobClientCommitBlockListOptions {
        if_none_match: (!c.overwrite).then(|| Etag::from("*")),
        blob_content_md5: c.md5,
        transactional_content_md5: body_md5,
        metadata: (!c.metadata.is_empty()).then(|| c.metadata.into_iter().collect::<HashMap<_, _>>()),
        ..Default::default()
    };
    let etag = match client.block_blob_client().commit_block_list(content, Some(opts)).await {
        Ok(r) => r.etag().ok().flatten().map(|e| e.to_string()),
        // A retried commit whose first try took effect (the answer was lost) finds its own list there.
        Err(e) if c.unique_ids && is_conflict(&e) && committed_ids(client).await.as_ref() == Some(&c.ids) => None,
        Err(e) => return Err(commit_error(client, url, c.overwrite, e).await),
    };
    check_committed(client, url, etag, &c.ids, &c.sizes).await
}

fn is_conflict(e: &azure_core::Error) -> bool {
    matches!(e.http_status(), Some(StatusCode::Conflict) | Some(StatusCode::PreconditionFailed))
}

/// The ids of the blob's committed blocks, if it can be read.
async fn committed_ids(client: &BlobClient) -> Option<Vec<Vec<u8>>> {
    let r = client.block_blob_client().get_block_list(BlockListType::Committed, None).await.ok()?;
    let blocks = r.into_model().ok()?.committed_blocks.unwrap_or_default();
    Some(blocks.into_iter().map(|b| b.name.unwrap_or_default()).collect())
}

/// Why a commit failed. A block list the service no longer has means another
/// writer's commit discarded the blocks this one staged.
async fn commit_error(client: &BlobClient, url: &BlobUrl, overwrite: bool, e: azure_core::Error) -> TransferError {
    let status = e.http_status();
    if !overwrite && is_conflict(&e) {
        return TransferError::Exists(url.to_string());
    }
    if status == Some(StatusCode::BadRequest) && error_code(&e) == "InvalidBlockList" {
        if !overwrite && client.get_properties(None).await.is_ok() {
            return TransferError::Exists(url.to_string());
        }
        return TransferError::Changed(format!(
            "another writer committed {url} while this one was writing; nothing of this write was committed; run it again"
        ));
    }
    map_err(url, "committing", Need::Write, e)
}

fn error_code(e: &azure_core::Error) -> String {
    match e.kind() {
        azure_core::error::ErrorKind::HttpResponse { error_code, .. } => error_code.clone().unwrap_or_default(),
        _ => String::new(),
    }
}

/// Read the committed block list back: it must be the one just sent (same
/// blocks, same sizes) and the blob as long as their sum, else the blob is not
/// what was written and the write fails as an integrity error. A blob that
/// another writer has committed since (another ETag) is theirs now and is not
/// judged; a SAS that may not read cannot check.
async fn check_committed(
    client: &BlobClient,
    url: &BlobUrl,
    etag: Option<String>,
    ids: &[Vec<u8>],
    sizes: &[u64],
) -> Result<()> {
    use azure_storage_blob::models::BlockListHeaders;
    let r = match client.block_blob_client().get_block_list(BlockListType::Committed, None).await {
        Ok(r) => r,
        Err(e) if matches!(e.http_status(), Some(StatusCode::Forbidden) | Some(StatusCode::Unauthorized)) => {
            return Ok(())
        }
        Err(e) => return Err(map_err(url, "checking what was committed to", Need::Read, e)),
    };
    let now = r.etag().ok().flatten().map(|e| e.to_string());
    if etag.is_some() && now.is_some() && now != etag {
        return Ok(());
    }
    let length = r.blob_content_length().ok().flatten();
    let committed: Vec<(Vec<u8>, u64)> = r
        .into_model()
        .map_err(|_| TransferError::Storage(format!("{url}: could not read the committed block list")))?
        .committed_blocks
        .unwrap_or_default()
        .into_iter()
        .map(|b| (b.name.unwrap_or_default(), b.size.unwrap_or(-1) as u64))
        .collect();
    let sent: Vec<(Vec<u8>, u64)> = ids.iter().cloned().zip(sizes.iter().copied()).collect();
    let total: u64 = sizes.iter().sum();
    if committed != sent || length.is_some_and(|l| l as u64 != total) {
        let length = length.map_or("an unknown number of".to_string(), |l| l.to_string());
        return Err(TransferError::Bundle(barge_bundle::BundleError::Corrupt(format!(
            "{url}: the committed blob is not what was written ({} blocks, {length} bytes committed; {} blocks, {total} bytes sent); do not use it",
            committed.len(),
            sent.len()
        ))));
    }
    Ok(())
}

/// What a ranged read asks for: one version of one blob (its ETag), in
/// parallel ranged requests delivered in order; a block of the default size
/// is one request.
struct Range {
    client: Arc<BlobClient>,
    url: BlobUrl,
    etag: String,
    parallel: usize,
}

type Body = futures::stream::BoxStream<'static, std::io::Result<bytes::Bytes>>;

impl Range {
    async fn open(&self, offset: u64, len: u64) -> Result<Body> {
        use futures::StreamExt;
        let opts = BlobClientDownloadOptions {
            if_match: Some(Etag::from(self.etag.clone())),
            range: Some(HttpRange::new(offset, len)),
            parallel: NonZero::new(self.parallel),
            partition_size: NonZero::new(DOWNLOAD_PARTITION),
            ..Default::default()
        };
        let r = self.client.download(Some(opts)).await.map_err(|e| map_err(&self.url, "reading", Need::Read, e))?;
        let url = self.url.to_string();
        Ok(r.body
            .map_err(move |e| {
                let why = network_failure(&e).unwrap_or_else(|| "the connection failed".into());
                TransferError::Storage(format!("reading {url}: {why}")).into_io()
            })
            .boxed())
    }
}

/// A ranged read that goes on where its body broke off (a dropped
/// connection after the answer began, which the transport's retry policy
/// never sees): the rest asked for again, same version, within the budget of
/// a request ([`ATTEMPTS`], [`RETRY_WINDOW`]) counted from the first failure
/// since bytes last arrived, so a long read may survive many drops apart.
struct Resume {
    from: Range,
    at: u64,
    end: u64,
    body: Option<Body>,
    attempt: u32,
    failing_since: Option<Instant>,
}

impl Resume {
    async fn next(mut self) -> Option<(std::io::Result<bytes::Bytes>, Resume)> {
        use futures::StreamExt;
        loop {
            if self.at >= self.end {
                return None;
            }
            let Some(body) = self.body.as_mut() else {
                match self.from.open(self.at, self.end - self.at).await {
                    Ok(b) => self.body = Some(b),
                    // The request itself was retried by the policy: its error is final.
                    Err(e) => return Some((Err(e.into_io()), Resume { at: self.end, ..self })),
                }
                continue;
            };
            let failed = match body.next().await {
                Some(Ok(b)) => {
                    if !b.is_empty() {
                        self.at += b.len() as u64;
                        (self.attempt, self.failing_since) = (1, None);
                    }
                    return Some((Ok(b), self));
                }
                Some(Err(e)) => e,
                None => TransferError::Storage(format!("reading {}: the answer ended early", self.from.url)).into_io(),
            };
            self.body = None;
            let since = *self.failing_since.get_or_insert_with(Instant::now);
            if self.attempt >= ATTEMPTS || since.elapsed() >= RETRY_WINDOW {
                return Some((Err(failed), Resume { at: self.end, ..self }));
            }
            tokio::time::sleep(backoff(self.attempt)).await;
            self.attempt += 1;
        }
    }
}

// ---- Network behaviour: timeouts and the retry budget of every storage request ----

/// How long to wait for a TCP (and TLS) connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request waits for its answer to begin, beyond the time its body
/// takes to send at [`MIN_UPLOAD_RATE`].
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// The slowest upload waited for: an 8 MiB block gets 32 s more.
pub const MIN_UPLOAD_RATE: u64 = 256 << 10;
/// A response body that delivers nothing for this long is abandoned.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Tries per request: the first and up to four retries.
pub const ATTEMPTS: u32 = 5;
/// No retry starts later than this after the first try began.
pub const RETRY_WINDOW: Duration = Duration::from_secs(60);
/// Backoff before retry n (1-based): 0.5 s doubling, at most 8 s, plus up to half again of random jitter.
fn backoff(retry: u32) -> Duration {
    let base = Duration::from_millis(500) * 2u32.saturating_pow(retry.saturating_sub(1)).min(16);
    let nanos = SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
    let jitter = (nanos ^ std::process::id().rotate_left(16)) % 1000;
    base + base * jitter / 2000
}

/// The SDK's options for one storage URL: barge's own transport (with the
/// timeouts above) and retry policy (the SDK's is off).
fn client_options(url: &BlobUrl) -> Result<azure_core::http::ClientOptions> {
    let http = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|_| TransferError::Storage("could not build an HTTP client".into()))?;
    let retry: Arc<dyn azure_core::http::policies::Policy> = Arc::new(Retry { endpoint: url.endpoint() });
    Ok(azure_core::http::ClientOptions {
        transport: Some(azure_core::http::Transport::new(Arc::new(Timed { inner: http }))),
        retry: azure_core::http::RetryOptions::none(),
        per_call_policies: vec![retry],
        ..Default::default()
    })
}

/// What ended a request that was retried to the end of its budget; carried
/// inside the SDK's error and turned into the message by [`map_err`].
#[derive(Debug)]
struct GaveUp {
    endpoint: String,
    attempts: u32,
    elapsed: Duration,
    cause: String,
}

impl std::fmt::Display for GaveUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "no answer from {} ({}); gave up after {} attempts in {:.0} s; check that the storage endpoint is up and reachable",
            self.endpoint,
            self.cause,
            self.attempts,
            self.elapsed.as_secs_f64()
        )
    }
}

impl std::error::Error for GaveUp {}

/// A timeout of barge's own, distinguishable from the transport's errors.
#[derive(Debug)]
struct Stalled(&'static str, Duration);

impl std::fmt::Display for Stalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} within {} s", self.0, self.1.as_secs())
    }
}

impl std::error::Error for Stalled {}

/// Retries transport failures (connect, reset, timeout) and 408, 429, 500,
/// 502, 503, 504 with backoff and jitter, within [`ATTEMPTS`] and [`RETRY_WINDOW`].
#[derive(Debug)]
struct Retry {
    endpoint: String,
}

const RETRIED_STATUS: [u16; 6] = [408, 429, 500, 502, 503, 504];

#[async_trait]
impl azure_core::http::policies::Policy for Retry {
    async fn send(
        &self,
        ctx: &azure_core::http::Context,
        request: &mut azure_core::http::Request,
        next: &[Arc<dyn azure_core::http::policies::Policy>],
    ) -> azure_core::http::policies::PolicyResult {
        use azure_core::error::ErrorKind;
        let start = std::time::Instant::now();
        let mut attempt = 1;
        loop {
            if attempt > 1 {
                request.body_mut().reset().await?;
            }
            let r = next[0].send(ctx, request, &next[1..]).await;
            let again = match &r {
                Ok(resp) => RETRIED_STATUS.contains(&u16::from(resp.status())),
                Err(e) => matches!(e.kind(), ErrorKind::Io | ErrorKind::Connection),
            };
            if !again {
                return r;
            }
            if attempt >= ATTEMPTS || start.elapsed() >= RETRY_WINDOW {
                return r.map_err(|e| {
                    let cause = transport_cause(&e);
                    let gave_up =
                        GaveUp { endpoint: self.endpoint.clone(), attempts: attempt, elapsed: start.elapsed(), cause };
                    azure_core::Error::new(ErrorKind::Connection, gave_up)
                });
            }
            tokio::time::sleep(backoff(attempt)).await;
            attempt += 1;
        }
    }
}

/// A transport error in a few words, never the transport's own text (it quotes the URL and its SAS).
fn transport_cause(e: &azure_core::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(st) = s.downcast_ref::<Stalled>() {
            return st.to_string();
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return io.kind().to_string();
        }
        let text = s.to_string();
        if text.contains("timed out") {
            return format!("no connection within {} s", CONNECT_TIMEOUT.as_secs());
        }
        if text.contains("closed") {
            return "the connection was closed".into();
        }
        source = s.source();
    }
    "the connection failed".into()
}

/// The transport with barge's timeouts around it: the answer must begin within
/// [`ANSWER_TIMEOUT`] (plus the upload's time), and the body must not stall for
/// [`IDLE_TIMEOUT`].
#[derive(Debug)]
struct Timed {
    inner: reqwest::Client,
}

#[async_trait]
impl azure_core::http::HttpClient for Timed {
    async fn execute_request(
        &self,
        request: &azure_core::http::Request,
    ) -> azure_core::Result<azure_core::http::AsyncRawResponse> {
        use azure_core::error::ErrorKind;
        use futures::StreamExt;
        let upload = request.body().len().unwrap_or(0);
        let limit = ANSWER_TIMEOUT + Duration::from_secs(upload / MIN_UPLOAD_RATE);
        let inner: &dyn azure_core::http::HttpClient = &self.inner;
        let r = tokio::time::timeout(limit, inner.execute_request(request))
            .await
            .map_err(|_| azure_core::Error::new(ErrorKind::Io, Stalled("no answer", limit)))??;
        let (status, headers, body) = r.deconstruct();
        let body = futures::stream::unfold(Some(body), |body| async move {
            let mut body = body?;
            match tokio::time::timeout(IDLE_TIMEOUT, body.next()).await {
                Ok(Some(item)) => Some((item, Some(body))),
                Ok(None) => None,
                Err(_) => {
                    let stalled = Stalled("the download stalled: no data", IDLE_TIMEOUT);
                    Some((Err(azure_core::Error::new(ErrorKind::Io, stalled)), None))
                }
            }
        });
        Ok(azure_core::http::AsyncRawResponse::new(status, headers, Box::pin(body)))
    }
}

/// A `GaveUp` or `Stalled` anywhere in an SDK error's chain, as text.
fn network_failure(e: &azure_core::Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(g) = s.downcast_ref::<GaveUp>() {
            return Some(g.to_string());
        }
        if let Some(st) = s.downcast_ref::<Stalled>() {
            return Some(st.to_string());
        }
        source = s.source();
    }
    None
}

/// A storage container: listing.
pub struct AzureContainer {
    url: BlobUrl,
    client: azure_storage_blob::BlobContainerClient,
    concurrency: usize,
}

impl AzureContainer {
    pub fn new(url: BlobUrl, concurrency: usize) -> Result<AzureContainer> {
        let u = Url::parse(&url.expose()).map_err(|e| TransferError::InvalidLocation(format!("{url}: {e}")))?;
        let opts = azure_storage_blob::BlobContainerClientOptions {
            client_options: client_options(&url)?,
            ..Default::default()
        };
        let client = azure_storage_blob::BlobContainerClient::new(u, None, Some(opts))
            .map_err(|_| TransferError::InvalidLocation(format!("{url}: not a usable container URL")))?;
        Ok(AzureContainer { url, client, concurrency })
    }
}

#[async_trait]
impl super::container::Container for AzureContainer {
    fn display(&self) -> String {
        self.url.to_string()
    }

    fn blob(&self, name: &str) -> Result<Box<dyn BlobStore>> {
        if name.ends_with(super::parts::PARTS_JSON) {
            let at = super::parts::Beside::Azure(self.url.sibling(name), self.concurrency);
            return Ok(Box::new(super::Parts::new(at)?));
        }
        Ok(Box::new(AzureBlob::new(self.url.sibling(name), self.concurrency)?))
    }

    async fn list(&self) -> Result<Vec<super::container::Listed>> {
        use futures::StreamExt;
        let mut pager = self.client.list_blobs(None).map_err(|e| map_err(&self.url, "listing", Need::Read, e))?;
        let mut out = Vec::new();
        while let Some(item) = pager.next().await {
            let item = item.map_err(|e| map_err(&self.url, "listing", Need::Read, e))?;
            let (Some(name), Some(props)) = (item.name, item.properties) else { continue };
            let etag = props.etag.map(|e| e.to_string()).unwrap_or_default();
            out.push(super::container::Listed { name, size: props.content_length.unwrap_or(0), etag });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}
