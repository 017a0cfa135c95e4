//! The write phase of an export: blobs downloaded side by side, each placed at its own offset in the bundle.
//!
//! Every size is in the catalog, so the bundle's [`Layout`] (every header,
//! every blob's offset) is known before the first byte. Into a local file
//! (`PositionalSink`) each download writes its chunks where they belong, in
//! any order, and a follower thread hashes the written prefix as it grows
//! (from the page cache) for the catalogDigest: nothing is fetched twice and
//! no download waits for another. Everywhere else (storage, a stream, zstd)
//! the chunks go through a window: downloads run at most [`WINDOW`] bytes
//! ahead of what has been written, and the window is written in order. Both
//! give the same bytes as writing the catalog's plan in sequence.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};

use async_trait::async_trait;
use barge_bundle::layout::{Layout, Part};
use barge_bundle::{Algorithm, Blob, Digest, Hasher};
use futures::stream::{self, StreamExt};
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, watch};

use super::{ExportOptions, Plan};
use crate::io::CHUNK;
use crate::report::Reporter;
use crate::set::Sources;
use crate::sink::{BundleWriter, Compression};
use crate::store::{BlobSink, BlobStore, Expect, PositionalSink};
use crate::{Result, TransferError};

/// How far downloads may run ahead of what a sequential sink has taken: the
/// bytes an export into storage, a stream or zstd holds at most (with one
/// chunk per download).
const WINDOW: u64 = 16 << 20;
/// What the follower reads and hashes at a time.
const FOLLOW_CHUNK: usize = 4 << 20;
/// How much the follower hashes before it tells the file that a stretch is
/// final (and may be written back to disk while the downloads go on).
const SETTLE: u64 = 16 << 20;
/// How far downloads into a local file may run ahead of what the follower has
/// hashed. Not memory (the bytes are in the file), but order: a follower
/// left far behind would hash the tail alone after the last download, one
/// core busy and the other idle; kept close, it hashes while they run.
const FOLLOW_LEAD: u64 = 128 << 20;

/// Write the planned bundle into `dest` and commit it: nothing is visible
/// under the destination's name until then. Returns the catalogDigest and the size.
pub(super) async fn write_phase(
    sources: &Sources,
    plan: &Plan,
    dest: &dyn BlobStore,
    opts: &ExportOptions,
    reporter: &dyn Reporter,
) -> Result<(Digest, u64)> {
    let layout = Layout::of(&plan.catalog);
    let job = Job { sources, plan, layout: &layout, concurrency: opts.concurrency.max(1), reporter };
    let file = match opts.compression {
        Compression::None => dest.create_positional(opts.overwrite, layout.size).await?,
        Compression::Zstd => None,
    };
    reporter.start("exporting", Some(plan.catalog.blob_bytes()));
    let done = match file {
        Some(file) => {
            let digest = to_file(&job, file.clone(), &dest.display()).await?;
            file.commit(expect(&digest, layout.size)).await?;
            (digest, layout.size)
        }
        None => {
            let sink = dest.create(opts.overwrite, plan.catalog.blob_bytes()).await?;
            let out = BundleWriter::new(sink, opts.compression, dest.display());
            let (sink, digest, size) = to_stream(&job, out).await?;
            sink.commit(expect(&digest, size)).await?;
            (digest, size)
        }
    };
    reporter.finish();
    Ok(done)
}

/// What the committed bundle must be, and its metadata: as ACR marks its
/// transfer blobs; the digest lets a reader check the bundle without a catalog.
fn expect(catalog_digest: &Digest, size: u64) -> Expect {
    let metadata = vec![
        ("category".to_string(), "acr-transfer-blob".to_string()),
        ("catalogdigest".to_string(), catalog_digest.to_string()),
    ];
    Expect { size, sha256: None, metadata, md5: None }
}

/// What every writer shares.
struct Job<'a> {
    sources: &'a Sources,
    plan: &'a Plan,
    layout: &'a Layout,
    concurrency: usize,
    reporter: &'a dyn Reporter,
}

/// Where the bundle's bytes go, each at its offset.
#[async_trait]
trait Place: Send + Sync {
    /// Put `bytes` at `offset`. Bytes of a download come with the blob's
    /// hasher, which is continued over them and handed back; bytes already
    /// held (headers, manifests) come without one. The buffer comes back
    /// too when the place is done with it, for the next chunk.
    async fn put(
        &self,
        offset: u64,
        bytes: Vec<u8>,
        hasher: Option<Hasher>,
    ) -> Result<(Option<Hasher>, Option<Vec<u8>>)>;
}

/// Every piece of the layout into `place`: the bytes held already first,
/// then the downloads, `concurrency` at once, started in bundle order.
async fn fill(place: &dyn Place, job: &Job<'_>) -> Result<()> {
    let catalog = &job.plan.catalog;
    let mut downloads = Vec::new();
    for piece in &job.layout.pieces {
        match &piece.part {
            Part::Bytes(b) => {
                place.put(piece.offset, b.clone(), None).await?;
            }
            Part::Blob(i) => {
                let b = &catalog.blobs[*i];
                match job.plan.manifests.get(&b.digest) {
                    Some(m) => {
                        place.put(piece.offset, m.bytes.clone(), None).await?;
                        job.reporter.advance(b.size);
                    }
                    None => downloads.push((piece.offset, b)),
                }
            }
        }
    }
    let mut running =
        stream::iter(downloads).map(|(offset, b)| fetch(place, job, b, offset)).buffer_unordered(job.concurrency);
    while let Some(r) = running.next().await {
        r?;
    }
    Ok(())
}

/// Download one config or layer into its place, chunk by chunk, hashing it
/// as it streams; a blob that is not what its digest says fails the export.
async fn fetch(place: &dyn Place, job: &Job<'_>, b: &Blob, offset: u64) -> Result<()> {
    let (registry_name, repo) = &job.plan.sources[&b.digest];
    let registry = job.sources.get(registry_name)?;
    let mut r = registry.open_blob(repo, &b.digest, b.size).await?;
    let what = format!("blob {} of {repo}", b.digest);
    let mut hasher = Some(b.digest.hasher());
    let mut spare: Option<Vec<u8>> = None;
    let mut at = 0u64;
    while at < b.size {
        let mut buf = spare.take().unwrap_or_default();
        buf.resize((b.size - at).min(CHUNK as u64) as usize, 0);
        let mut filled = 0;
        while filled < buf.len() {
            let n = r.read(&mut buf[filled..]).await.map_err(|e| TransferError::io(format!("reading {what}"), e))?;
            if n == 0 {
                return Err(TransferError::Bundle(barge_bundle::BundleError::Truncated(format!(
                    "{what} ends after {} of {} bytes",
                    at + filled as u64,
                    b.size
                ))));
            }
            filled += n;
        }
        (hasher, spare) = place.put(offset + at, buf, hasher).await?;
        job.reporter.advance(filled as u64);
        at += filled as u64;
    }
    let actual = hasher.ok_or(TransferError::Internal("a download's hasher comes back"))?.finish();
    if actual != b.digest {
        return Err(TransferError::WrongContent {
            what: "blob",
            digest: b.digest.clone(),
            actual,
            source_name: format!("{registry_name}/{repo}"),
        });
    }
    Ok(())
}

/// Positional writes into a local file; the follower hashes the prefix.
async fn to_file(job: &Job<'_>, file: Arc<dyn PositionalSink>, what: &str) -> Result<Digest> {
    let prefix = Arc::new(Prefix::default());
    // However this ends (an error, or the export dropped), the follower stops.
    let _stop = StopFollower(prefix.clone());
    let (hashed_tx, hashed) = watch::channel(0u64);
    let follower = tokio::task::spawn_blocking({
        let (file, prefix, size, what) = (file.clone(), prefix.clone(), job.layout.size, what.to_string());
        move || follow(&*file, &prefix, size, &what, &hashed_tx)
    });
    let place = FilePlace { file, prefix: prefix.clone(), hashed, what: what.to_string() };
    let filled = fill(&place, job).await;
    if filled.is_err() {
        prefix.stop();
    }
    let followed =
        follower.await.map_err(|e| TransferError::io(format!("hashing {what}"), std::io::Error::other(e)))?;
    match (filled, followed) {
        (Ok(()), followed) => followed,
        // The follower's own failure (a read of the file) is why the writers stopped waiting for it.
        (Err(TransferError::Internal(_)), Err(e)) if !matches!(e, TransferError::Internal(_)) => Err(e),
        (Err(e), _) => Err(e),
    }
}

struct FilePlace {
    file: Arc<dyn PositionalSink>,
    prefix: Arc<Prefix>,
    /// How far the follower has hashed.
    hashed: watch::Receiver<u64>,
    what: String,
}

#[async_trait]
impl Place for FilePlace {
    async fn put(
        &self,
        offset: u64,
        bytes: Vec<u8>,
        hasher: Option<Hasher>,
    ) -> Result<(Option<Hasher>, Option<Vec<u8>>)> {
        if hasher.is_some() {
            // A download waits while it is too far ahead of the follower; the
            // chunk that continues the written prefix always goes.
            let end = offset + bytes.len() as u64;
            let mut hashed = self.hashed.clone();
            hashed
                .wait_for(|h| end <= h + FOLLOW_LEAD || offset <= self.prefix.upto())
                .await
                .map_err(|_| TransferError::Internal("the bundle's follower stopped"))?;
        }
        let (file, prefix, what) = (self.file.clone(), self.prefix.clone(), self.what.clone());
        // The blob's hash and the write, off the runtime, on as many threads as there are downloads.
        crate::io::blocking("writing the bundle", move || {
            let mut hasher = hasher;
            if let Some(h) = &mut hasher {
                h.update(&bytes);
            }
            file.write_at(offset, &bytes).map_err(|e| TransferError::io(format!("writing {what}"), e))?;
            prefix.done(offset, bytes.len() as u64);
            Ok((hasher, Some(bytes)))
        })
        .await
    }
}

/// How much of the bundle is written from its first byte on, and the
/// stretches written beyond that; the follower waits on it.
#[derive(Default)]
struct Prefix {
    state: Mutex<Written>,
    grew: Condvar,
}

#[derive(Default)]
struct Written {
    upto: u64,
    /// Written stretches past `upto`: start to end.
    beyond: BTreeMap<u64, u64>,
    stopped: bool,
}

impl Prefix {
    fn lock(&self) -> std::sync::MutexGuard<'_, Written> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn done(&self, offset: u64, len: u64) {
        if len == 0 {
            return;
        }
        let mut w = self.lock();
        w.beyond.insert(offset, offset + len);
        let before = w.upto;
        let mut upto = before;
        while let Some(end) = w.beyond.remove(&upto) {
            upto = end;
        }
        w.upto = upto;
        if upto != before {
            self.grew.notify_all();
        }
    }

    fn upto(&self) -> u64 {
        self.lock().upto
    }

    fn stop(&self) {
        self.lock().stopped = true;
        self.grew.notify_all();
    }

    /// Wait until more than `at` bytes from the start are written; `None` once stopped.
    fn wait_past(&self, at: u64) -> Option<u64> {
        let mut w = self.lock();
        loop {
            if w.stopped {
                return None;
            }
            if w.upto > at {
                return Some(w.upto);
            }
            w = self.grew.wait(w).unwrap_or_else(|p| p.into_inner());
        }
    }
}

struct StopFollower(Arc<Prefix>);

impl Drop for StopFollower {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// The catalogDigest: the file's sha256, read back from the page cache as
/// its written prefix grows (a blocking thread).
fn follow(
    file: &dyn PositionalSink,
    prefix: &Prefix,
    size: u64,
    what: &str,
    hashed: &watch::Sender<u64>,
) -> Result<Digest> {
    let mut h = Hasher::new(Algorithm::Sha256);
    let mut buf = vec![0u8; FOLLOW_CHUNK];
    let (mut at, mut settled) = (0u64, 0u64);
    while at < size {
        let Some(upto) = prefix.wait_past(at) else {
            return Err(TransferError::Internal("the bundle's writers stopped"));
        };
        while at < upto {
            let n = (upto - at).min(FOLLOW_CHUNK as u64) as usize;
            file.read_at(at, &mut buf[..n]).map_err(|e| TransferError::io(format!("reading {what}"), e))?;
            h.update(&buf[..n]);
            at += n as u64;
            hashed.send_replace(at);
            if at - settled >= SETTLE {
                file.settled(settled, at);
                settled = at;
            }
        }
    }
    Ok(h.finish())
}

/// Into a sequential sink through the window; the `BundleWriter` hashes what it writes.
async fn to_stream(job: &Job<'_>, mut out: BundleWriter) -> Result<(Box<dyn BlobSink>, Digest, u64)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let (base_tx, base) = watch::channel(0u64);
    let place = StreamPlace { tx, base };
    tokio::try_join!(fill(&place, job), drain(rx, base_tx, &mut out, job.layout.size))?;
    out.finish().await
}

struct StreamPlace {
    tx: mpsc::UnboundedSender<(u64, Vec<u8>)>,
    /// How much the sink has taken.
    base: watch::Receiver<u64>,
}

#[async_trait]
impl Place for StreamPlace {
    async fn put(
        &self,
        offset: u64,
        bytes: Vec<u8>,
        hasher: Option<Hasher>,
    ) -> Result<(Option<Hasher>, Option<Vec<u8>>)> {
        let mut hasher = hasher;
        if let Some(h) = &mut hasher {
            h.update(&bytes);
            // A download waits while it is too far ahead; the one at the front always fits.
            let end = offset + bytes.len() as u64;
            let mut base = self.base.clone();
            base.wait_for(|b| offset <= *b || end <= *b + WINDOW)
                .await
                .map_err(|_| TransferError::Internal("the bundle's sink stopped"))?;
        }
        if !bytes.is_empty() {
            self.tx.send((offset, bytes)).map_err(|_| TransferError::Internal("the bundle's sink stopped"))?;
        }
        Ok((hasher, None))
    }
}

/// Write what has arrived in order, as soon as it continues what is written.
async fn drain(
    mut rx: mpsc::UnboundedReceiver<(u64, Vec<u8>)>,
    base: watch::Sender<u64>,
    out: &mut BundleWriter,
    size: u64,
) -> Result<()> {
    let mut waiting: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut at = 0u64;
    while at < size {
        let Some((offset, bytes)) = rx.recv().await else {
            return Err(TransferError::Internal("the bundle's writers stopped"));
        };
        waiting.insert(offset, bytes);
        while let Some(b) = waiting.remove(&at) {
            out.write(&b).await?;
            at += b.len() as u64;
        }
        base.send_replace(at);
    }
    Ok(())
}
