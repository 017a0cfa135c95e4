//! `import`: read a bundle in one sequential pass, verify everything, and push it into a registry.
//!
//! Order of effects: pre-flight (tags and existing blobs, no writes) → blobs as
//! they stream past, each checked before it is visible → after the whole
//! bundle has passed, per artifact its manifests (children before the index)
//! and then its tag. The bundle's rules are the bundle [`Reader`]'s, the same
//! `verify` applies: every manifest and every artifact's closure is checked
//! before the first config or layer is written.

use std::collections::{BTreeMap, BTreeSet};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_compression::tokio::bufread::ZstdDecoder;
use async_compression::zstd::DParameter;
use barge_bundle::catalog::expect_digest;
use barge_bundle::check::Meta;
use barge_bundle::tar::BLOCK;
use barge_bundle::zstd_frame::{self, MAX_WINDOW_LOG, ZSTD_MAGIC};
use barge_bundle::{Algorithm, Blob, BundleError, Catalog, Data, Digest, Hasher, Next, Reader};
use futures::future::BoxFuture;
use futures::stream::{self, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader, ReadBuf};
use tokio::task::JoinSet;

use crate::io::{copy_exact, read_small, ByteStream, CHUNK};
use crate::outcome::{any_failed, ArtifactOutcome, Status};
use crate::registry::{RawManifest, Registry};
use crate::report::{Reporter, Silent};
use crate::store::{BlobInfo, BlobStore};
use crate::{Result, TransferError};

#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    pub overwrite_tags: bool,
    pub continue_on_errors: bool,
    pub delete_source_on_success: bool,
    /// Refuse the bundle unless its sha256 is this (ACR's catalogDigest).
    pub catalog_digest: Option<Digest>,
    /// Report the catalogDigest even when no check asks for it. A stream is
    /// hashed as it passes anyway; a re-readable bundle is then hashed whole first.
    pub report_catalog_digest: bool,
    pub concurrency: usize,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportReport {
    pub catalog_digest: Option<Digest>,
    pub bundle: String,
    pub artifacts: Vec<ArtifactOutcome>,
    pub blobs_uploaded: usize,
    pub blobs_mounted: usize,
    pub blobs_present: usize,
    pub bytes_uploaded: u64,
    pub manifests_pushed: usize,
    pub source_deleted: bool,
}

/// The raw bundle stream: counted for progress and, when the catalogDigest is
/// not known already, hashed for it.
struct Raw<'a> {
    inner: ByteStream,
    reporter: &'a dyn Reporter,
    hasher: Option<Hasher>,
}

impl AsyncRead for Raw<'_> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let new = &buf.filled()[before..];
        if !new.is_empty() {
            self.reporter.advance(new.len() as u64);
            if let Some(h) = &mut self.hasher {
                h.update(new);
            }
        }
        r
    }
}

/// The decompressed tar stream, and how far into it the reader is.
struct Source<'a> {
    inner: Inner<'a>,
    pos: u64,
}

enum Inner<'a> {
    Plain(BufReader<Raw<'a>>),
    Zstd(ZstdDecoder<BufReader<Raw<'a>>>),
}

impl<'a> Source<'a> {
    async fn new(stream: ByteStream, hash: bool, reporter: &'a dyn Reporter, what: &str) -> Result<Source<'a>> {
        let hasher = hash.then(|| Hasher::new(Algorithm::Sha256));
        let mut raw = BufReader::with_capacity(CHUNK, Raw { inner: stream, reporter, hasher });
        let head = raw.fill_buf().await.map_err(|e| TransferError::io(format!("reading {what}"), e))?;
        let inner = if head.starts_with(&ZSTD_MAGIC) {
            zstd_frame::check_window(head)?;
            Inner::Zstd(ZstdDecoder::with_params(raw, &[DParameter::window_log_max(MAX_WINDOW_LOG)]))
        } else {
            Inner::Plain(raw)
        };
        Ok(Source { inner, pos: 0 })
    }

    /// The file offset of what comes next, when the stream is the file itself.
    fn file_offset(&self) -> Option<u64> {
        matches!(self.inner, Inner::Plain(_)).then_some(self.pos)
    }

    /// Move `n` bytes ahead in a plain bundle without reading them, by opening
    /// the file again further on (a bundle read that way is not hashed whole).
    /// Returns how many bytes were never read, for the caller to count once
    /// someone else has read them.
    async fn seek_ahead(&mut self, n: u64, store: &dyn BlobStore, info: &BlobInfo) -> Result<u64> {
        let Inner::Plain(raw) = &mut self.inner else {
            // A compressed stream has no file offsets: read through instead.
            skip(self, n).await?;
            return Ok(0);
        };
        let buffered = raw.buffer().len() as u64;
        if n <= buffered {
            raw.consume(n as usize);
            self.pos += n;
            return Ok(0);
        }
        let at = self.pos + n;
        if at > info.size {
            return Err(BundleError::Truncated("it ends in the middle of an entry".into()).into());
        }
        let reporter = raw.get_ref().reporter;
        let rest = store.read_range(at, info.size - at, &info.etag).await?;
        *raw = BufReader::with_capacity(CHUNK, Raw { inner: rest, reporter, hasher: None });
        self.pos = at;
        Ok(n - buffered)
    }

    /// Read to the end (what follows the archive must be zeros, and a zstd
    /// frame must end the file) and return the raw stream's digest, if it was hashed.
    async fn finish(mut self, what: &str) -> Result<Option<Digest>> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = self.read(&mut buf).await.map_err(|e| TransferError::io(format!("reading {what}"), e))?;
            if n == 0 {
                break;
            }
            if buf[..n].iter().any(|&b| b != 0) {
                return Err(BundleError::Corrupt("data after the end of the archive".into()).into());
            }
        }
        let raw = match self.inner {
            Inner::Plain(r) => r,
            Inner::Zstd(z) => {
                let mut raw = z.into_inner();
                let rest = raw.fill_buf().await.map_err(|e| TransferError::io(format!("reading {what}"), e))?;
                if !rest.is_empty() {
                    return Err(BundleError::Corrupt("data after the end of the zstd frame".into()).into());
                }
                raw
            }
        };
        Ok(raw.into_inner().hasher.map(Hasher::finish))
    }
}

impl AsyncRead for Source<'_> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = match &mut this.inner {
            Inner::Plain(r) => Pin::new(r).poll_read(cx, buf),
            Inner::Zstd(z) => match Pin::new(z).poll_read(cx, buf) {
                Poll::Ready(Err(e)) => Poll::Ready(Err(barge_bundle::decode_error(e))),
                other => other,
            },
        };
        this.pos += (buf.filled().len() - before) as u64;
        r
    }
}

/// What the pre-flight decided, before any write.
struct Plan {
    /// Per catalog artifact: `None` to import, `Some(status)` when settled already.
    settled: Vec<Option<Status>>,
    outcomes: BTreeMap<usize, ArtifactOutcome>,
    /// For each blob, the repositories that lack it.
    need: BTreeMap<Digest, Vec<String>>,
    present: usize,
}

async fn preflight(registry: &dyn Registry, catalog: &Catalog, opts: &ImportOptions) -> Result<Plan> {
    let mut plan = Plan {
        settled: vec![None; catalog.artifacts.len()],
        outcomes: BTreeMap::new(),
        need: BTreeMap::new(),
        present: 0,
    };
    let currents: Vec<Result<Option<Digest>>> = stream::iter(&catalog.artifacts)
        .map(|a| async move {
            match &a.tag {
                Some(t) => registry.resolve_tag(&a.repository, t).await,
                None => Ok(registry.has_manifest(&a.repository, &a.digest).await?.then(|| a.digest.clone())),
            }
        })
        .buffered(opts.concurrency.max(1))
        .collect()
        .await;
    for (i, (a, current)) in catalog.artifacts.iter().zip(currents).enumerate() {
        match current? {
            Some(d) if d == a.digest => {
                plan.settled[i] = Some(Status::Unchanged);
                plan.outcomes.insert(
                    i,
                    ArtifactOutcome { artifact: a.ref_name(), digest: Some(d), status: Status::Unchanged, error: None },
                );
            }
            Some(existing) if !opts.overwrite_tags => {
                let e = TransferError::TagExists { reference: a.ref_name(), existing, wanted: a.digest.clone() };
                if !opts.continue_on_errors {
                    return Err(e);
                }
                plan.settled[i] = Some(Status::Failed);
                plan.outcomes.insert(i, ArtifactOutcome::failed(&a.ref_name(), &e));
            }
            _ => {}
        }
    }
    let pairs: BTreeSet<(Digest, String)> = catalog
        .artifacts
        .iter()
        .zip(&plan.settled)
        .filter(|(_, s)| s.is_none())
        .flat_map(|(a, _)| a.blobs.iter().map(|d| (d.clone(), a.repository.clone())))
        .collect();
    let checks: Vec<(Digest, String, Result<bool>)> = stream::iter(pairs)
        .map(|(d, repo)| async move {
            let has = registry.has_blob(&repo, &d).await;
            (d, repo, has)
        })
        .buffer_unordered(opts.concurrency.max(1))
        .collect()
        .await;
    for (d, repo, has) in checks {
        if has? {
            plan.present += 1;
        } else {
            plan.need.entry(d).or_default().push(repo);
        }
    }
    for repos in plan.need.values_mut() {
        repos.sort();
    }
    Ok(plan)
}

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

pub async fn import(
    source: Arc<dyn BlobStore>,
    registry: Arc<dyn Registry>,
    opts: &ImportOptions,
    reporter: &dyn Reporter,
) -> Result<ImportReport> {
    let what = source.display();
    let info = source.info().await?.ok_or_else(|| TransferError::NotFound(format!("bundle {what}")))?;
    let mut report = ImportReport { bundle: what.clone(), ..Default::default() };
    let hashed_first = hash_first(source.as_ref(), &info, opts, reporter).await?;
    reporter.start("importing", Some(info.size));
    // Pinned: the version read is the version a later delete may remove.
    let stream = source.read_range(0, info.size, &info.etag).await?;
    let rereadable = source.rereads_are_cheap();
    let src = Source::new(stream, !rereadable, reporter, &what).await?;
    let pass = Pass {
        source: source.clone(),
        info: &info,
        registry: registry.clone(),
        opts,
        reporter,
        src,
        reader: Reader::new(),
        plan: None,
        manifests: BTreeMap::new(),
        uploads: JoinSet::new(),
        report: &mut report,
    };
    let Passed { catalog, plan, manifests, digest } = pass.run(&what).await?;
    reporter.finish();
    if let (Some(expected), None) = (&opts.catalog_digest, &hashed_first) {
        let actual = digest.clone().ok_or_else(|| corrupt("a stream that was not hashed"))?;
        if &actual != expected {
            return Err(BundleError::CatalogDigestMismatch { expected: expected.clone(), actual }.into());
        }
    }
    report.catalog_digest = hashed_first.or(digest);
    report.blobs_present = plan.present;
    publish(registry.as_ref(), &catalog, plan, &manifests, opts, &mut report).await?;
    if opts.delete_source_on_success && !any_failed(&report.artifacts) {
        match source.delete(Some(&info.etag)).await {
            Ok(()) => report.source_deleted = true,
            // The images are in; a bundle left behind is a warning, not a failure.
            Err(e) => reporter.note(&format!("the bundle was imported but not deleted: {e}")),
        }
    }
    Ok(report)
}

/// The catalogDigest of a re-readable bundle, hashed whole before anything is
/// written, when it is wanted. A stream is hashed by the pass instead, and
/// checked at its end (before any manifest or tag).
async fn hash_first(
    source: &dyn BlobStore,
    info: &BlobInfo,
    opts: &ImportOptions,
    reporter: &dyn Reporter,
) -> Result<Option<Digest>> {
    if !source.rereads_are_cheap() || (opts.catalog_digest.is_none() && !opts.report_catalog_digest) {
        return Ok(None);
    }
    reporter.start("hashing the bundle", Some(info.size));
    let mut whole = source.read_range(0, info.size, &info.etag).await?;
    let what = source.display();
    let actual = copy_exact(&mut whole, &mut tokio::io::sink(), info.size, Algorithm::Sha256, &what, reporter).await?;
    reporter.finish();
    if let Some(expected) = opts.catalog_digest.as_ref().filter(|e| **e != actual) {
        return Err(BundleError::CatalogDigestMismatch { expected: expected.clone(), actual }.into());
    }
    Ok(Some(actual))
}

/// The one sequential pass: the bundle [`Reader`] says what comes next, the
/// pass reads it, and uploads what the target lacks.
struct Pass<'a> {
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
struct Passed {
    catalog: Catalog,
    plan: Plan,
    manifests: BTreeMap<Digest, RawManifest>,
    /// The raw stream's sha256, when the pass hashed it.
    digest: Option<Digest>,
}

impl Pass<'_> {
    async fn run(mut self, what: &str) -> Result<Passed> {
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
                self.plan = Some(preflight(self.registry.as_ref(), catalog, self.opts).await?);
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

fn corrupt(what: &str) -> TransferError {
    BundleError::Corrupt(format!("the bundle reader met {what}")).into()
}

/// An upload task's result; a task that panicked is an error, never a panic here.
fn joined(r: std::result::Result<Result<Stored>, tokio::task::JoinError>) -> Result<Stored> {
    r.map_err(|e| TransferError::io("uploading a blob", std::io::Error::other(e.to_string())))?
}

/// The whole bundle has passed: per artifact its manifests (children first),
/// then its tag; artifacts side by side.
async fn publish(
    registry: &dyn Registry,
    catalog: &Catalog,
    plan: Plan,
    manifests: &BTreeMap<Digest, RawManifest>,
    opts: &ImportOptions,
    report: &mut ImportReport,
) -> Result<()> {
    let mut outcomes = plan.outcomes;
    let pending: Vec<(usize, &barge_bundle::Artifact)> =
        catalog.artifacts.iter().enumerate().filter(|(i, _)| plan.settled[*i].is_none()).collect();
    let published: Vec<(usize, &barge_bundle::Artifact, Result<usize>)> = stream::iter(pending)
        .map(|(i, a)| async move { (i, a, publish_one(registry, a, manifests, opts).await) })
        .buffer_unordered(opts.concurrency.max(1))
        .collect()
        .await;
    for (i, a, r) in published {
        match r {
            Ok(n) => {
                report.manifests_pushed += n;
                let outcome = ArtifactOutcome {
                    artifact: a.ref_name(),
                    digest: Some(a.digest.clone()),
                    status: Status::Succeeded,
                    error: None,
                };
                outcomes.insert(i, outcome);
            }
            Err(e) if opts.continue_on_errors => {
                outcomes.insert(i, ArtifactOutcome::failed(&a.ref_name(), &e));
            }
            Err(e) => return Err(e.for_artifact(&a.ref_name())),
        }
    }
    report.artifacts = outcomes.into_values().collect();
    Ok(())
}

/// One artifact's manifests, children first, then its tag. The reader has
/// checked that the catalog's list is exactly what the manifests name.
async fn publish_one(
    registry: &dyn Registry,
    a: &barge_bundle::Artifact,
    manifests: &BTreeMap<Digest, RawManifest>,
    opts: &ImportOptions,
) -> Result<usize> {
    let get = |d: &Digest| manifests.get(d).ok_or_else(|| corrupt("an artifact whose manifest was not read"));
    let Some((root, children)) = a.manifests.split_last() else {
        return Err(corrupt("an artifact without manifests"));
    };
    for d in children {
        registry.push_manifest(&a.repository, get(d)?).await?;
    }
    registry.set_tag(&a.repository, a.tag.as_deref(), get(root)?, opts.overwrite_tags).await?;
    Ok(a.manifests.len())
}

async fn skip(r: &mut (dyn AsyncRead + Send + Unpin), n: u64) -> Result<()> {
    let copied = tokio::io::copy(&mut r.take(n), &mut tokio::io::sink())
        .await
        .map_err(|e| TransferError::from(BundleError::from(e)))?;
    if copied != n {
        return Err(BundleError::Truncated("it ends in the middle of an entry".into()).into());
    }
    Ok(())
}
