//! Import's one sequential pass: the bundle reader says what comes next; the pass reads it and uploads what the target lacks.

use std::collections::BTreeMap;
use std::sync::Arc;

use barge_bundle::catalog::expect_digest;
use barge_bundle::check::Meta;
use barge_bundle::tar::BLOCK;
use barge_bundle::{Blob, BundleError, Catalog, Data, Digest, Next, Reader};
use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::task::JoinSet;

use super::preflight::{preflight, Plan};
use super::source::{skip, Source};
use super::{corrupt, ImportOptions, ImportReport};
use crate::io::{copy_exact, read_small, ByteStream};
use crate::registry::{RawManifest, Registry};
use crate::report::{Reporter, Silent};
use crate::store::{BlobInfo, BlobStore};
use crate::{Result, TransferError};

/// Blobs up to this size are read whole, checked, and uploaded in the
/// background while the stream goes on; larger ones stream straight through.
const SMALL_BLOB: u64 = 1 << 20;

/// What storing one blob took.
#[derive(Default)]
struct Stored {
    uploaded: usize,
    mounted: usize,
    bytes: u64,
    /// Bundle bytes the main pass sought over, counted for progress once uploaded.
    unread: u64,
}

/// Where an upload's bytes come from.
enum Body<'a> {
    /// Read once, as the pass goes (an upload that fails is replayed only as far as the registry keeps it).
    Stream(&'a mut (dyn AsyncRead + Send + Unpin)),
    /// Held whole (a small blob, already checked): every attempt starts afresh.
    Bytes(bytes::Bytes),
    /// A byte range of a re-readable bundle, pinned to its ETag: every attempt reads it again.
    Range { store: Arc<dyn BlobStore>, at: u64, etag: String },
}

/// Upload a blob to the first repository that lacks it, then mount it into
/// the others (uploading again where a mount is refused). An upload from a
/// source that can be opened again is retried from its first byte.
async fn store_blob(registry: &dyn Registry, repos: &[String], blob: &Blob, body: Body<'_>) -> Result<Stored> {
    let mut s = Stored::default();
    let Some((first, rest)) = repos.split_first() else { return Ok(s) };
    let (digest, size) = (&blob.digest, blob.size);
    match body {
        Body::Stream(data) => registry.push_blob(first, digest, size, data).await?,
        Body::Bytes(bytes) => {
            let open = move || -> BoxFuture<'_, Result<ByteStream>> {
                let b = bytes.clone();
                Box::pin(async move { Ok(Box::new(std::io::Cursor::new(b)) as ByteStream) })
            };
            registry.push_blob_reopen(first, digest, size, &open).await?
        }
        Body::Range { store, at, etag } => {
            let open = || store.read_range(at, size, &etag);
            registry.push_blob_reopen(first, digest, size, &open).await?
        }
    }
    s.uploaded += 1;
    s.bytes += size;
    for other in rest {
        if registry.mount_blob(first, other, digest).await? {
            s.mounted += 1;
        } else {
            let open = || registry.open_blob(first, digest, size);
            registry.push_blob_reopen(other, digest, size, &open).await?;
            s.uploaded += 1;
            s.bytes += size;
        }
    }
    Ok(s)
}

impl ImportReport {
    fn add(&mut self, s: Stored, reporter: &dyn Reporter) {
        reporter.advance(s.unread);
        self.blobs_uploaded += s.uploaded;
        self.blobs_mounted += s.mounted;
        self.bytes_uploaded += s.bytes;
    }
}

/// The one sequential pass: the bundle [`Reader`] says what comes next, the
/// pass reads it, and uploads what the target lacks.
pub(super) struct Pass<'a> {
    source: Arc<dyn BlobStore>,
    info: &'a BlobInfo,
    registry: Arc<dyn Registry>,
    opts: &'a ImportOptions,
    reporter: &'a dyn Reporter,
    src: Source<'a>,
    reader: Reader,
    plan: Option<Plan>,
    manifests: BTreeMap<Digest, RawManifest>,
    uploads: JoinSet<Result<Stored>>,
    report: &'a mut ImportReport,
}

/// What the pass leaves for the publish step.
pub(super) struct Passed {
    pub(super) catalog: Catalog,
    pub(super) plan: Plan,
    pub(super) manifests: BTreeMap<Digest, RawManifest>,
    /// The raw stream's sha256, when the pass hashed it.
    pub(super) digest: Option<Digest>,
}

impl<'a> Pass<'a> {
    pub(super) fn new(
        source: Arc<dyn BlobStore>,
        info: &'a BlobInfo,
        registry: Arc<dyn Registry>,
        opts: &'a ImportOptions,
        reporter: &'a dyn Reporter,
        src: Source<'a>,
        report: &'a mut ImportReport,
    ) -> Pass<'a> {
        let (reader, plan, manifests, uploads) = (Reader::new(), None, BTreeMap::new(), JoinSet::new());
        Pass { source, info, registry, opts, reporter, src, reader, plan, manifests, uploads, report }
    }

    pub(super) async fn run(mut self, what: &str) -> Result<Passed> {
        let read_err = |e: std::io::Error| TransferError::from(BundleError::from(e));
        let mut block = [0u8; BLOCK];
        loop {
            match self.reader.next() {
                Next::Header => {
                    self.src.read_exact(&mut block).await.map_err(read_err)?;
                    self.reader.header(&block)?;
                }
                Next::Data { len, what } => {
                    let data = read_small(&mut self.src, len, "a bundle entry").await?;
                    self.reader.data(&data)?;
                    self.took(what, data).await?;
                }
                Next::Skip { len } => {
                    skip(&mut self.src, len).await?;
                    self.reader.skipped()?;
                }
                Next::Blob { index } => {
                    let blob = self.reader.blob(index).cloned().ok_or_else(|| corrupt("a blob the catalog lacks"))?;
                    self.blob(blob).await?;
                    self.reader.blob_done()?;
                }
                Next::Trailer => break,
            }
        }
        let digest = self.src.finish(what).await?;
        let catalog = self.reader.finish()?;
        while let Some(r) = self.uploads.join_next().await {
            self.report.add(joined(r)?, self.reporter);
        }
        let plan = self.plan.ok_or_else(|| corrupt("a bundle without a catalog"))?;
        Ok(Passed { catalog, plan, manifests: self.manifests, digest })
    }

    /// What the reader accepted: the catalog starts the pre-flight, a manifest is kept for publishing.
    async fn took(&mut self, what: Data, bytes: Vec<u8>) -> Result<()> {
        match what {
            Data::Meta(Meta::Catalog) => {
                let catalog = self.reader.catalog().ok_or_else(|| corrupt("a catalog that did not parse"))?;
                // Where each artifact goes, decided once, before the pre-flight reads the target.
                let targets = self.opts.placement.targets(catalog)?;
                self.plan = Some(preflight(self.registry.as_ref(), catalog, targets, self.opts).await?);
            }
            Data::Manifest(i) => {
                let b = self.reader.blob(i).ok_or_else(|| corrupt("a manifest the catalog lacks"))?;
                let m = RawManifest { media_type: b.media_type.clone(), digest: b.digest.clone(), bytes };
                self.manifests.insert(b.digest.clone(), m);
            }
            Data::Pax | Data::Meta(_) => {}
        }
        Ok(())
    }

    /// A config or layer: check it, and upload it where the target lacks it.
    /// Small blobs are read whole and checked here; large ones, where reading
    /// again is cheap, are read from their own byte range, which this pass then
    /// seeks over. Both upload in the background, checked by their upload,
    /// while this pass goes on. Anything else streams through.
    async fn blob(&mut self, blob: Blob) -> Result<()> {
        let plan = self.plan.as_ref().ok_or_else(|| corrupt("a blob before the catalog"))?;
        let repos = plan.need.get(&blob.digest).cloned().unwrap_or_default();
        let name = format!("blob {}", blob.digest);
        if repos.is_empty() {
            let got =
                copy_exact(&mut self.src, &mut tokio::io::sink(), blob.size, blob.digest.algorithm(), &name, &Silent)
                    .await?;
            return Ok(expect_digest(&blob.digest, got)?);
        }
        let (body, unread) = if blob.size <= SMALL_BLOB {
            let bytes = read_small(&mut self.src, blob.size, &name).await?;
            let mut h = blob.digest.hasher();
            h.update(&bytes);
            expect_digest(&blob.digest, h.finish())?;
            (Body::Bytes(bytes.into()), 0)
        } else if let (Some(at), true) = (self.src.file_offset(), self.source.rereads_are_cheap()) {
            let etag = self.info.etag.clone();
            let unread = self.src.seek_ahead(blob.size, self.source.as_ref(), self.info).await?;
            (Body::Range { store: self.source.clone(), at, etag }, unread)
        } else {
            let s = store_blob(self.registry.as_ref(), &repos, &blob, Body::Stream(&mut self.src)).await?;
            self.report.add(s, self.reporter);
            return Ok(());
        };
        while self.uploads.len() >= self.opts.concurrency.max(1) {
            if let Some(done) = self.uploads.join_next().await {
                self.report.add(joined(done)?, self.reporter);
            }
        }
        let registry = self.registry.clone();
        self.uploads.spawn(async move {
            let mut s = store_blob(registry.as_ref(), &repos, &blob, body).await?;
            s.unread = unread;
            Ok(s)
        });
        Ok(())
    }
}

/// An upload task's result; a task that panicked is an error, never a panic here.
fn joined(r: std::result::Result<Result<Stored>, tokio::task::JoinError>) -> Result<Stored> {
    r.map_err(|e| TransferError::io("uploading a blob", std::io::Error::other(e.to_string())))?
}
