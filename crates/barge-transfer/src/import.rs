//! `import`: read a bundle in one sequential pass, verify everything, and push it into a registry.
//!
//! Order of effects: pre-flight (tags and existing blobs, no writes) → blobs as
//! they stream past, each checked by the registry before it is visible → after
//! the whole bundle has passed, per artifact its manifests (children before
//! the index) and then its tag.

use std::collections::{BTreeMap, BTreeSet};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_compression::tokio::bufread::ZstdDecoder;
use barge_bundle::catalog::expect_digest;
use barge_bundle::tar::{padding, Headers, Step, BLOCK};
use barge_bundle::{Algorithm, BlobKind, BundleCheck, BundleError, Catalog, Digest, Hasher, Role, ZSTD_MAGIC};
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
        let inner = if head.starts_with(&ZSTD_MAGIC) { Inner::Zstd(ZstdDecoder::new(raw)) } else { Inner::Plain(raw) };
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

    /// Read to the end (what follows the archive must be zeros) and return the
    /// raw stream's digest, if it was hashed.
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
        let mut raw = match self.inner {
            Inner::Plain(r) => r,
            Inner::Zstd(z) => z.into_inner(),
        };
        // Whatever the decoder left unread still belongs to the file's digest.
        tokio::io::copy(&mut raw, &mut tokio::io::sink())
            .await
            .map_err(|e| TransferError::io(format!("reading {what}"), e))?;
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

/// Upload a blob to the first repository that lacks it, then mount it into
/// the others (uploading again where a mount is refused).
async fn store_blob(
    registry: &dyn Registry,
    repos: &[String],
    digest: &Digest,
    size: u64,
    data: &mut (dyn AsyncRead + Send + Unpin),
) -> Result<Stored> {
    let mut s = Stored::default();
    let Some((first, rest)) = repos.split_first() else { return Ok(s) };
    registry.push_blob(first, digest, size, data).await?;
    s.uploaded += 1;
    s.bytes += size;
    for other in rest {
        if registry.mount_blob(first, other, digest).await? {
            s.mounted += 1;
        } else {
            let mut r = registry.open_blob(first, digest, size).await?;
            registry.push_blob(other, digest, size, &mut r).await?;
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
    source: &dyn BlobStore,
    registry: Arc<dyn Registry>,
    opts: &ImportOptions,
    reporter: &dyn Reporter,
) -> Result<ImportReport> {
    let concurrency = opts.concurrency.max(1);
    let mut uploads: JoinSet<Result<Stored>> = JoinSet::new();
    let what = source.display();
    let info = source.info().await?.ok_or_else(|| TransferError::NotFound(format!("bundle {what}")))?;
    let mut report = ImportReport { bundle: what.clone(), ..Default::default() };
    // The catalogDigest: a stream is hashed as the pass reads it, and checked
    // at its end (before any manifest or tag). A re-readable bundle, whose pass
    // seeks over large blobs, is hashed whole first when the digest is wanted,
    // and checked before anything is written.
    let rereadable = source.rereads_are_cheap();
    let mut hashed_first = None;
    if rereadable && (opts.catalog_digest.is_some() || opts.report_catalog_digest) {
        reporter.start("hashing the bundle", Some(info.size));
        let mut whole = source.read_range(0, info.size, &info.etag).await?;
        let actual =
            copy_exact(&mut whole, &mut tokio::io::sink(), info.size, Algorithm::Sha256, &what, reporter).await?;
        reporter.finish();
        if let Some(expected) = opts.catalog_digest.as_ref().filter(|e| **e != actual) {
            return Err(BundleError::CatalogDigestMismatch { expected: expected.clone(), actual }.into());
        }
        hashed_first = Some(actual);
    }
    reporter.start("importing", Some(info.size));
    // Pinned: the version read is the version a later delete may remove.
    let stream = source.read_range(0, info.size, &info.etag).await?;
    let mut src = Source::new(stream, !rereadable, reporter, &what).await?;

    let mut check = BundleCheck::new();
    let mut headers = Headers::default();
    let mut block = [0u8; BLOCK];
    let mut plan: Option<Plan> = None;
    let mut manifests: BTreeMap<Digest, RawManifest> = BTreeMap::new();
    let read_err = |e: std::io::Error| TransferError::from(BundleError::from(e));
    loop {
        src.read_exact(&mut block).await.map_err(read_err)?;
        match headers.feed(&block)? {
            Step::End => {
                src.read_exact(&mut block)
                    .await
                    .map_err(|_| BundleError::Truncated("the second end-of-archive block is missing".into()))?;
                break;
            }
            Step::Pax { size } => {
                let data = read_small(&mut src, size, "PAX header").await?;
                headers.feed_pax(&data)?;
                skip(&mut src, padding(size) as u64).await?;
            }
            Step::Entry(e) => {
                match check.entry(&e)? {
                    Role::Dir => skip(&mut src, e.size).await?,
                    Role::Meta(m) => {
                        let data = read_small(&mut src, e.size, &e.name).await?;
                        check.meta(m, &data)?;
                        if let Some(c) = check.catalog() {
                            plan = Some(preflight(registry.as_ref(), c, opts).await?);
                        }
                    }
                    Role::Blob(i) => {
                        let blob = check.catalog().expect("blobs follow the catalog").blobs[i].clone();
                        if blob.kind == BlobKind::Manifest {
                            let bytes = read_small(&mut src, blob.size, &e.name).await?;
                            let mut h = blob.digest.hasher();
                            h.update(&bytes);
                            expect_digest(&blob.digest, h.finish())?;
                            check.manifest(i, &bytes)?;
                            manifests.insert(
                                blob.digest.clone(),
                                RawManifest { media_type: blob.media_type.clone(), digest: blob.digest.clone(), bytes },
                            );
                        } else {
                            let plan = plan.as_ref().expect("the plan is made when the catalog is read");
                            let repos = plan.need.get(&blob.digest).cloned().unwrap_or_default();
                            if repos.is_empty() {
                                let what = format!("blob {}", blob.digest);
                                let got = copy_exact(
                                    &mut src,
                                    &mut tokio::io::sink(),
                                    blob.size,
                                    blob.digest.algorithm(),
                                    &what,
                                    &Silent,
                                )
                                .await?;
                                expect_digest(&blob.digest, got)?;
                            } else {
                                // Small blobs are read whole and checked here; large ones, where reading
                                // again is cheap, are read from their own byte range, which this pass then
                                // seeks over. Both upload in the background, checked by their upload, while
                                // this pass goes on. Anything else streams through.
                                let background: Option<(ByteStream, u64)> = if blob.size <= SMALL_BLOB {
                                    let bytes = read_small(&mut src, blob.size, &e.name).await?;
                                    let mut h = blob.digest.hasher();
                                    h.update(&bytes);
                                    expect_digest(&blob.digest, h.finish())?;
                                    Some((Box::new(std::io::Cursor::new(bytes)), 0))
                                } else if let (Some(at), true) = (src.file_offset(), rereadable) {
                                    let ranged = source.read_range(at, blob.size, &info.etag).await?;
                                    Some((ranged, src.seek_ahead(blob.size, source, &info).await?))
                                } else {
                                    None
                                };
                                match background {
                                    Some((mut data, unread)) => {
                                        while uploads.len() >= concurrency {
                                            let done = uploads.join_next().await.expect("non-empty");
                                            report.add(done.expect("upload task does not panic")?, reporter);
                                        }
                                        let registry = registry.clone();
                                        uploads.spawn(async move {
                                            let mut s = store_blob(
                                                registry.as_ref(),
                                                &repos,
                                                &blob.digest,
                                                blob.size,
                                                &mut data,
                                            )
                                            .await?;
                                            s.unread = unread;
                                            Ok(s)
                                        });
                                    }
                                    None => report.add(
                                        store_blob(registry.as_ref(), &repos, &blob.digest, blob.size, &mut src)
                                            .await?,
                                        reporter,
                                    ),
                                }
                            }
                        }
                    }
                }
                skip(&mut src, padding(e.size) as u64).await?;
            }
        }
    }
    let catalog = check.finish()?;
    let digest = src.finish(&what).await?;
    while let Some(r) = uploads.join_next().await {
        report.add(r.expect("upload task does not panic")?, reporter);
    }
    reporter.finish();
    if let (Some(expected), None) = (&opts.catalog_digest, &hashed_first) {
        let actual = digest.clone().expect("a bundle not hashed first is hashed by the pass");
        if expected != &actual {
            return Err(BundleError::CatalogDigestMismatch { expected: expected.clone(), actual }.into());
        }
    }
    report.catalog_digest = hashed_first.or(digest);
    let plan = plan.expect("a checked bundle has a catalog");
    report.blobs_present = plan.present;

    // The whole bundle has passed: per artifact its manifests (children first),
    // then its tag; artifacts side by side.
    let mut outcomes = plan.outcomes;
    let manifests = &manifests;
    let pending: Vec<(usize, &barge_bundle::Artifact)> =
        catalog.artifacts.iter().enumerate().filter(|(i, _)| plan.settled[*i].is_none()).collect();
    let published: Vec<(usize, &barge_bundle::Artifact, Result<usize>)> = stream::iter(pending)
        .map(|(i, a)| {
            let registry = registry.as_ref();
            async move {
                let r = async {
                    let (root, children) = a.manifests.split_last().expect("a catalog artifact lists its own manifest");
                    for d in children {
                        registry.push_manifest(&a.repository, &manifests[d]).await?;
                    }
                    registry.set_tag(&a.repository, a.tag.as_deref(), &manifests[root], opts.overwrite_tags).await?;
                    Ok(a.manifests.len())
                }
                .await;
                (i, a, r)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    for (i, a, r) in published {
        match r {
            Ok(n) => {
                report.manifests_pushed += n;
                outcomes.insert(
                    i,
                    ArtifactOutcome {
                        artifact: a.ref_name(),
                        digest: Some(a.digest.clone()),
                        status: Status::Succeeded,
                        error: None,
                    },
                );
            }
            Err(e) if opts.continue_on_errors => {
                outcomes.insert(i, ArtifactOutcome::failed(&a.ref_name(), &e));
            }
            Err(e) => return Err(e.for_artifact(&a.ref_name())),
        }
    }
    report.artifacts = outcomes.into_values().collect();

    if opts.delete_source_on_success && !any_failed(&report.artifacts) {
        match source.delete(Some(&info.etag)).await {
            Ok(()) => report.source_deleted = true,
            // The images are in; a bundle left behind is a warning, not a failure.
            Err(e) => reporter.note(&format!("the bundle was imported but not deleted: {e}")),
        }
    }
    Ok(report)
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
