//! `Parts`: a bundle split into parts sized for media (`NAME.part0001`, … and `NAME.parts.json`), presented as one blob.
//!
//! Reads map onto the parts (a range may span several); every part is checked
//! against `parts.json` (present, its size) before the first read, and a part
//! read whole is checked against its sha256 as it passes. Writes roll over to
//! a new part every `part_size` bytes; the parts stay uncommitted (temporary
//! files, staged blocks) until the end, then are committed in order, and
//! `parts.json` last: readers and the import trigger key on it.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use async_trait::async_trait;
use barge_bundle::{Algorithm, Digest, Hasher};
use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::OnceCell;

use super::{AzureBlob, BlobInfo, BlobSink, BlobStore, BlobUrl, Expect, LocalBlob};
use crate::io::{ByteStream, CHUNK};
use crate::{Result, TransferError};

/// How a split bundle's index document ends its name.
pub const PARTS_JSON: &str = ".parts.json";
/// The largest `parts.json` read.
const MAX_DOC: u64 = 16 << 20;

/// `NAME.parts.json`: the parts in order, each one's size and sha256, and the whole bundle's digest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartsDoc {
    pub parts_version: u32,
    /// The sha256 of the parts concatenated: the unsplit bundle's catalogDigest.
    pub catalog_digest: Digest,
    pub size: u64,
    pub part_size: u64,
    pub parts: Vec<PartEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PartEntry {
    pub name: String,
    pub size: u64,
    pub sha256: Digest,
}

/// A name's split-bundle role: `NAME.parts.json` (`None`) or `NAME.partNNNN` (its 1-based number).
pub fn split_name(name: &str) -> Option<(&str, Option<u32>)> {
    if let Some(stem) = name.strip_suffix(PARTS_JSON).filter(|s| !s.is_empty()) {
        return Some((stem, None));
    }
    let (stem, digits) = name.rsplit_once(".part")?;
    let ok = !stem.is_empty() && digits.len() >= 4 && digits.bytes().all(|b| b.is_ascii_digit());
    Some((stem, Some(digits.parse().ok().filter(|n| *n > 0 && ok)?)))
}

/// The name of part `n` (1-based) of `stem`.
pub fn part_name(stem: &str, n: usize) -> String {
    format!("{stem}.part{n:04}")
}

/// Where the parts lie: beside `parts.json`, in its directory or container.
#[derive(Debug, Clone)]
pub enum Beside {
    Local(PathBuf),
    Azure(BlobUrl, usize),
}

impl Beside {
    fn name(&self) -> String {
        match self {
            Beside::Local(p) => p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            Beside::Azure(u, _) => u.blob().rsplit('/').next().unwrap_or_default().to_string(),
        }
    }

    /// The blob `name` in the same directory or container (and virtual directory).
    fn open(&self, name: &str) -> Result<Box<dyn BlobStore>> {
        Ok(match self {
            Beside::Local(p) => Box::new(LocalBlob::new(p.with_file_name(name))),
            Beside::Azure(u, c) => {
                let blob = match u.blob().rsplit_once('/') {
                    Some((dir, _)) => format!("{dir}/{name}"),
                    None => name.to_string(),
                };
                Box::new(AzureBlob::new(u.sibling(&blob), *c)?)
            }
        })
    }
}

/// A split bundle as one blob.
pub struct Parts {
    beside: Beside,
    stem: String,
    json: Box<dyn BlobStore>,
    part_size: Option<u64>,
    loaded: OnceCell<Arc<Loaded>>,
}

struct Loaded {
    doc: PartsDoc,
    parts: Vec<Box<dyn BlobStore>>,
    etags: Vec<String>,
    info: BlobInfo,
}

impl Parts {
    /// The split bundle whose `parts.json` (or any of whose parts) `at` names.
    pub fn new(at: Beside) -> Result<Parts> {
        let name = at.name();
        let Some((stem, _)) = split_name(&name) else {
            return Err(TransferError::InvalidLocation(format!(
                "{name} names neither NAME.parts.json nor NAME.partNNNN"
            )));
        };
        let stem = stem.to_string();
        let json = at.open(&format!("{stem}{PARTS_JSON}"))?;
        Ok(Parts { beside: at, stem, json, part_size: None, loaded: OnceCell::new() })
    }

    /// Written as parts of `part_size` bytes (the last one shorter).
    pub fn with_part_size(mut self, part_size: u64) -> Parts {
        self.part_size = Some(part_size);
        self
    }

    pub fn stem(&self) -> &str {
        &self.stem
    }

    /// One part's store, by its name.
    pub fn part(&self, name: &str) -> Result<Box<dyn BlobStore>> {
        self.beside.open(name)
    }

    /// `parts.json`'s store.
    pub fn json(&self) -> &dyn BlobStore {
        self.json.as_ref()
    }

    /// Read and check `parts.json` alone (no part is looked at).
    pub async fn doc(&self) -> Result<PartsDoc> {
        let what = self.json.display();
        let info = self.json.info().await?.ok_or_else(|| TransferError::NotFound(what.clone()))?;
        if info.size > MAX_DOC {
            return Err(TransferError::BadPart(format!("{what} is {} bytes: not a parts.json", info.size)));
        }
        let mut r = self.json.read_range(0, info.size, &info.etag).await?;
        let bytes = crate::io::read_small(&mut r, info.size, &what).await?;
        let doc: PartsDoc = serde_json::from_slice(&bytes)
            .map_err(|e| TransferError::BadPart(format!("{what} is not a parts.json: {e}")))?;
        self.check_doc(&doc)?;
        Ok(doc)
    }

    fn check_doc(&self, doc: &PartsDoc) -> Result<()> {
        let what = self.json.display();
        let bad = |why: String| Err(TransferError::BadPart(format!("{what}: {why}")));
        if doc.parts_version != 1 {
            return bad(format!("partsVersion {} is not one this barge reads (1)", doc.parts_version));
        }
        if doc.parts.is_empty() || doc.parts.iter().map(|p| p.size).sum::<u64>() != doc.size {
            return bad("its parts do not add up to its size".into());
        }
        for (i, p) in doc.parts.iter().enumerate() {
            if p.name != part_name(&self.stem, i + 1) {
                return bad(format!("part {} is named {}, not {}", i + 1, p.name, part_name(&self.stem, i + 1)));
            }
        }
        Ok(())
    }

    /// Every part present with the size `parts.json` gives, and none beyond them.
    async fn load(&self) -> Result<Arc<Loaded>> {
        self.loaded.get_or_try_init(|| self.load_fresh()).await.cloned()
    }

    async fn load_fresh(&self) -> Result<Arc<Loaded>> {
        let doc = self.doc().await?;
        let json_info = self.json.info().await?.ok_or_else(|| TransferError::NotFound(self.json.display()))?;
        let parts = doc.parts.iter().map(|p| self.part(&p.name)).collect::<Result<Vec<_>>>()?;
        let infos = futures::future::try_join_all(parts.iter().map(|p| p.info())).await?;
        let mut etags = Vec::new();
        for ((entry, info), store) in doc.parts.iter().zip(infos).zip(&parts) {
            let Some(info) = info else {
                return Err(TransferError::BadPart(format!(
                    "part {} of {} is missing (looked for {})",
                    entry.name,
                    self.json.display(),
                    store.display()
                )));
            };
            if info.size != entry.size {
                return Err(TransferError::BadPart(format!(
                    "part {} is {} bytes; {} says {}",
                    store.display(),
                    info.size,
                    self.json.display(),
                    entry.size
                )));
            }
            etags.push(info.etag);
        }
        let extra = self.part(&part_name(&self.stem, doc.parts.len() + 1))?;
        if extra.info().await?.is_some() {
            return Err(TransferError::BadPart(format!(
                "{} lies beside {}, which lists only {} parts",
                extra.display(),
                self.json.display(),
                doc.parts.len()
            )));
        }
        let mut h = Hasher::new(Algorithm::Sha256);
        for e in std::iter::once(&json_info.etag).chain(&etags) {
            h.update(e.as_bytes());
            h.update(b"\0");
        }
        let info = BlobInfo {
            size: doc.size,
            etag: format!("parts-{}", &h.finish().hex()[..32]),
            modified: json_info.modified,
            metadata: vec![
                ("category".into(), "acr-transfer-blob".into()),
                ("catalogdigest".into(), doc.catalog_digest.to_string()),
            ],
            content_md5: None,
        };
        Ok(Arc::new(Loaded { doc, parts, etags, info }))
    }

    /// Check one part (1-based `n`) alone against `parts.json`: present, its size, its sha256.
    pub async fn verify_part(&self, n: u32, reporter: &dyn crate::Reporter) -> Result<PartEntry> {
        let doc = self.doc().await?;
        let name = part_name(&self.stem, n as usize);
        let Some(entry) = doc.parts.get(n as usize - 1).cloned() else {
            return Err(TransferError::BadPart(format!(
                "{name} is not a part of {}, which lists {} parts",
                self.json.display(),
                doc.parts.len()
            )));
        };
        check_part(self.part(&name)?.as_ref(), &entry, &self.json.display(), reporter).await?;
        Ok(entry)
    }

    /// Check every part's sha256 against `parts.json`, in order.
    pub async fn verify_parts(&self, reporter: &dyn crate::Reporter) -> Result<PartsDoc> {
        let loaded = self.load().await?;
        for (entry, store) in loaded.doc.parts.iter().zip(&loaded.parts) {
            check_part(store.as_ref(), entry, &self.json.display(), reporter).await?;
        }
        Ok(loaded.doc.clone())
    }

    /// Write `doc` as this bundle's `parts.json` (the last write of a split bundle).
    pub async fn write_doc(&self, doc: &PartsDoc, overwrite: bool, metadata: Vec<(String, String)>) -> Result<()> {
        let mut bytes = serde_json::to_vec_pretty(doc).map_err(|_| TransferError::Internal("parts.json"))?;
        bytes.push(b'\n');
        let mut sink = self.json.create(overwrite, bytes.len() as u64).await?;
        let what = || format!("writing {}", self.json.display());
        sink.write_all(&bytes).await.map_err(|e| TransferError::io(what(), e))?;
        sink.flush().await.map_err(|e| TransferError::io(what(), e))?;
        sink.commit(Expect { size: bytes.len() as u64, sha256: None, metadata, md5: None }).await
    }

    /// This bundle's `parts.json` with its parts renamed after `stem`.
    pub fn renamed(doc: &PartsDoc, stem: &str) -> PartsDoc {
        let mut doc = doc.clone();
        for (i, p) in doc.parts.iter_mut().enumerate() {
            p.name = part_name(stem, i + 1);
        }
        doc
    }
}

/// Hash `store` whole and compare it with `entry`.
async fn check_part(store: &dyn BlobStore, entry: &PartEntry, doc: &str, reporter: &dyn crate::Reporter) -> Result<()> {
    let what = store.display();
    let info = store.info().await?.ok_or_else(|| {
        TransferError::BadPart(format!("part {} of {doc} is missing (looked for {what})", entry.name))
    })?;
    if info.size != entry.size {
        return Err(TransferError::BadPart(format!("part {what} is {} bytes; {doc} says {}", info.size, entry.size)));
    }
    let mut r = store.read_range(0, info.size, &info.etag).await?;
    let mut h = Hasher::new(Algorithm::Sha256);
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = r.read(&mut buf).await.map_err(|e| TransferError::io(format!("reading {what}"), e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        reporter.advance(n as u64);
    }
    let got = h.finish();
    if got != entry.sha256 {
        return Err(damaged(&what, doc, &entry.sha256, &got));
    }
    Ok(())
}

fn damaged(what: &str, doc: &str, want: &Digest, got: &Digest) -> TransferError {
    TransferError::BadPart(format!("part {what} is damaged or out of order: its sha256 is {got}, {doc} says {want}"))
}

#[async_trait]
impl BlobStore for Parts {
    fn display(&self) -> String {
        self.json.display()
    }

    async fn info(&self) -> Result<Option<BlobInfo>> {
        if self.json.info().await?.is_none() {
            return Ok(None);
        }
        Ok(Some(self.load().await?.info.clone()))
    }

    async fn read_range(&self, offset: u64, len: u64, etag: &str) -> Result<ByteStream> {
        let loaded = self.load().await?;
        if loaded.info.etag != etag {
            return Err(TransferError::Changed(format!("{} changed while it was read", self.display())));
        }
        let mut segs = VecDeque::new();
        let (end, mut start) = (offset.saturating_add(len).min(loaded.doc.size), 0u64);
        for (i, p) in loaded.doc.parts.iter().enumerate() {
            let (lo, hi) = (offset.max(start), end.min(start + p.size));
            if lo < hi {
                segs.push_back(Seg { part: i, at: lo - start, len: hi - lo });
            }
            start += p.size;
        }
        Ok(Box::new(Chain { loaded, doc: self.display(), segs, cur: None, opening: None }))
    }

    fn rereads_are_cheap(&self) -> bool {
        match &self.beside {
            Beside::Local(_) => true,
            Beside::Azure(..) => false,
        }
    }

    async fn create(&self, overwrite: bool, _size_hint: u64) -> Result<Box<dyn BlobSink>> {
        let Some(part_size) = self.part_size else {
            return Err(TransferError::InvalidLocation(format!(
                "{} names a split bundle; a split bundle is written by an export with a part size",
                self.display()
            )));
        };
        if !overwrite && self.json.info().await?.is_some() {
            return Err(TransferError::Exists(self.display()));
        }
        Ok(Box::new(Split {
            parts: self.fresh()?,
            part_size,
            overwrite,
            done: Vec::new(),
            cur: None,
            opening: None,
            whole: Hasher::new(Algorithm::Sha256),
        }))
    }

    /// `parts.json` first (so no reader takes the rest for a bundle), then every part.
    async fn delete(&self, if_match: Option<&str>) -> Result<()> {
        let loaded = self.load().await?;
        if if_match.is_some_and(|e| e != loaded.info.etag) {
            return Err(TransferError::Changed(format!("{} changed since it was read; not deleted", self.display())));
        }
        self.json.delete(None).await?;
        for (p, etag) in loaded.parts.iter().zip(&loaded.etags) {
            p.delete(Some(etag)).await?;
        }
        Ok(())
    }

    async fn put_if(&self, _bytes: Vec<u8>, _if_match: Option<&str>) -> Result<String> {
        Err(TransferError::InvalidLocation(format!("{} is a split bundle, not a document", self.display())))
    }
}

impl Parts {
    /// The same split bundle, opened again (nothing loaded).
    fn fresh(&self) -> Result<Parts> {
        Ok(Parts {
            beside: self.beside.clone(),
            stem: self.stem.clone(),
            json: self.beside.open(&format!("{}{PARTS_JSON}", self.stem))?,
            part_size: self.part_size,
            loaded: OnceCell::new(),
        })
    }
}

/// A piece of one part.
struct Seg {
    part: usize,
    at: u64,
    len: u64,
}

struct Current {
    stream: ByteStream,
    seg: Seg,
    got: u64,
    /// Set when the piece is the whole part: checked against its sha256 at its end.
    hasher: Option<Hasher>,
}

/// The parts a range spans, each opened when the one before it ends.
struct Chain {
    loaded: Arc<Loaded>,
    doc: String,
    segs: VecDeque<Seg>,
    cur: Option<Current>,
    opening: Option<(BoxFuture<'static, Result<ByteStream>>, Seg)>,
}

impl Chain {
    fn open_next(&mut self) -> bool {
        let Some(seg) = self.segs.pop_front() else { return false };
        let loaded = self.loaded.clone();
        let (i, at, len) = (seg.part, seg.at, seg.len);
        let fut = async move { loaded.parts[i].read_range(at, len, &loaded.etags[i]).await }.boxed();
        self.opening = Some((fut, seg));
        true
    }

    /// The current piece has all its bytes: check the part's sha256 when it was read whole.
    fn finish_piece(&mut self) -> std::io::Result<()> {
        let Some(cur) = self.cur.take() else { return Ok(()) };
        let entry = &self.loaded.doc.parts[cur.seg.part];
        if let Some(h) = cur.hasher {
            let got = h.finish();
            if got != entry.sha256 {
                let what = self.loaded.parts[cur.seg.part].display();
                return Err(damaged(&what, &self.doc, &entry.sha256, &got).into_io());
            }
        }
        Ok(())
    }
}

impl AsyncRead for Chain {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if let Some((fut, _)) = &mut this.opening {
                let stream = ready!(fut.poll_unpin(cx)).map_err(TransferError::into_io)?;
                let (_, seg) = this.opening.take().expect("opening");
                let whole = seg.at == 0 && seg.len == this.loaded.doc.parts[seg.part].size;
                let hasher = whole.then(|| Hasher::new(Algorithm::Sha256));
                this.cur = Some(Current { stream, seg, got: 0, hasher });
            }
            if let Some(cur) = &mut this.cur {
                let before = buf.filled().len();
                let room = (cur.seg.len - cur.got).min(buf.remaining() as u64) as usize;
                let mut piece = ReadBuf::new(buf.initialize_unfilled_to(room));
                ready!(Pin::new(&mut cur.stream).poll_read(cx, &mut piece))?;
                let n = piece.filled().len();
                buf.advance(n);
                if let Some(h) = &mut cur.hasher {
                    h.update(&buf.filled()[before..before + n]);
                }
                cur.got += n as u64;
                if n == 0 && room > 0 {
                    let what = this.loaded.parts[cur.seg.part].display();
                    let e = TransferError::BadPart(format!("part {what} ended early, after {} bytes", cur.got));
                    return Poll::Ready(Err(e.into_io()));
                }
                if cur.got == cur.seg.len {
                    if let Err(e) = this.finish_piece() {
                        // A read that fails hands over no bytes.
                        buf.set_filled(before);
                        return Poll::Ready(Err(e));
                    }
                }
                if n > 0 {
                    return Poll::Ready(Ok(()));
                }
            }
            if !this.open_next() {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

/// The sink of a split write: a part sink at a time, all committed at the end.
struct Split {
    parts: Parts,
    part_size: u64,
    overwrite: bool,
    done: Vec<(Box<dyn BlobSink>, PartEntry)>,
    cur: Option<(Box<dyn BlobSink>, Hasher, u64)>,
    opening: Option<BoxFuture<'static, Result<Box<dyn BlobSink>>>>,
    whole: Hasher,
}

impl Split {
    fn next_name(&self) -> String {
        part_name(&self.parts.stem, self.done.len() + 1)
    }
}

impl AsyncWrite for Split {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        loop {
            if let Some(fut) = &mut this.opening {
                let sink = ready!(fut.poll_unpin(cx)).map_err(TransferError::into_io)?;
                this.opening = None;
                this.cur = Some((sink, Hasher::new(Algorithm::Sha256), 0));
            }
            match &mut this.cur {
                Some((sink, h, written)) if *written < this.part_size => {
                    let room = (this.part_size - *written).min(buf.len() as u64) as usize;
                    let n = ready!(Pin::new(sink).poll_write(cx, &buf[..room]))?;
                    h.update(&buf[..n]);
                    this.whole.update(&buf[..n]);
                    *written += n as u64;
                    return Poll::Ready(Ok(n));
                }
                Some((sink, _, _)) => {
                    // Shut down, not only flushed: a storage sink stages its last block now and
                    // holds no buffer while it waits for the commit at the end.
                    ready!(Pin::new(sink).poll_shutdown(cx))?;
                    let (sink, h, size) = this.cur.take().expect("a full part");
                    let entry = PartEntry { name: this.next_name(), size, sha256: h.finish() };
                    this.done.push((sink, entry));
                }
                None => {
                    let store = this.parts.part(&this.next_name()).map_err(TransferError::into_io)?;
                    let (overwrite, size) = (this.overwrite, this.part_size);
                    this.opening = Some(async move { store.create(overwrite, size).await }.boxed());
                }
            }
        }
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.cur {
            Some((sink, _, _)) => Pin::new(sink).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.poll_flush(cx)
    }
}

#[async_trait]
impl BlobSink for Split {
    async fn commit(self: Box<Self>, expect: Expect) -> Result<()> {
        let Split { parts, part_size, overwrite, mut done, cur, whole, .. } = *self;
        if let Some((mut sink, h, size)) = cur {
            sink.flush().await.map_err(|e| TransferError::io(format!("writing {}", parts.display()), e))?;
            done.push((sink, PartEntry { name: part_name(&parts.stem, done.len() + 1), size, sha256: h.finish() }));
        }
        let size: u64 = done.iter().map(|(_, e)| e.size).sum();
        if size != expect.size || done.is_empty() {
            return Err(TransferError::WrongSize { what: parts.display(), expected: expect.size, actual: size });
        }
        let catalog_digest = whole.finish();
        if expect.sha256.as_ref().is_some_and(|d| d != &catalog_digest) {
            return Err(TransferError::Internal("a split write differs from what was meant"));
        }
        let count = done.len();
        let mut entries = Vec::new();
        for (i, (sink, entry)) in done.into_iter().enumerate() {
            let mut metadata = expect.metadata.clone();
            metadata.push(("partindex".into(), (i + 1).to_string()));
            metadata.push(("partcount".into(), count.to_string()));
            sink.commit(Expect { size: entry.size, sha256: None, metadata, md5: None }).await?;
            entries.push(entry);
        }
        // Parts of an earlier, longer bundle under this name would read as extra parts.
        if overwrite {
            for n in count + 1.. {
                let stale = parts.part(&part_name(&parts.stem, n))?;
                if stale.info().await?.is_none() {
                    break;
                }
                stale.delete(None).await?;
            }
        }
        let doc = PartsDoc { parts_version: 1, catalog_digest, size, part_size, parts: entries };
        parts.write_doc(&doc, overwrite, expect.metadata).await
    }
}

/// An integrity error from reading the bundle at `location`: when it is a split
/// bundle, name the part at fault (a damaged or reordered part shows first as a
/// blob that does not match its digest). Hashes every part, only after a failure.
pub async fn explain(location: &super::Location, opts: &super::StoreOptions, e: TransferError) -> TransferError {
    let named = matches!(e, TransferError::BadPart(_));
    if named || e.category() != crate::Category::Integrity || !matches!(location, super::Location::Parts { .. }) {
        return e;
    }
    let Ok(parts) = location.open_parts(opts) else { return e };
    match parts.verify_parts(&crate::Silent).await {
        Err(bad @ TransferError::BadPart(_)) => bad,
        _ => e,
    }
}

/// Write the split bundle `src` back as one blob at `dst`, checked against its catalogDigest before it takes its name.
pub async fn join(
    src: &Parts,
    dst: &dyn BlobStore,
    overwrite: bool,
    reporter: &dyn crate::Reporter,
) -> Result<(Digest, u64)> {
    let info = src.info().await?.ok_or_else(|| TransferError::NotFound(src.display()))?;
    let want = src.load().await?.doc.catalog_digest.clone();
    if !overwrite && dst.info().await?.is_some() {
        return Err(TransferError::Exists(dst.display()));
    }
    let mut sink = dst.create(overwrite, info.size).await?;
    let mut r = src.read_range(0, info.size, &info.etag).await?;
    reporter.start("joining", Some(info.size));
    let got = crate::io::copy_exact(&mut r, &mut sink, info.size, Algorithm::Sha256, &src.display(), reporter).await?;
    sink.flush().await.map_err(|e| TransferError::io(format!("writing {}", dst.display()), e))?;
    if got != want {
        return Err(TransferError::WrongContent {
            what: "split bundle",
            digest: want,
            actual: got,
            source_name: src.display(),
        });
    }
    sink.commit(Expect { size: info.size, sha256: Some(got.clone()), metadata: info.metadata, md5: None }).await?;
    reporter.finish();
    Ok((got, info.size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_told_apart() {
        assert_eq!(split_name("b.tar.parts.json"), Some(("b.tar", None)));
        assert_eq!(split_name("b.tar.part0003"), Some(("b.tar", Some(3))));
        assert_eq!(split_name("b.tar.part12345"), Some(("b.tar", Some(12345))));
        assert_eq!(split_name("b.tar.part03"), None);
        assert_eq!(split_name("b.tar.part0000"), None);
        assert_eq!(split_name("b.tar"), None);
        assert_eq!(split_name(".parts.json"), None);
        assert_eq!(part_name("x", 2), "x.part0002");
    }

    /// 5000 bytes in parts of 2048 written through the sink, then read back by every kind of range.
    #[tokio::test]
    async fn ranges_map_onto_the_parts_and_a_changed_part_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let at = || Beside::Local(dir.path().join("b.tar.parts.json"));
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        let w = Parts::new(at()).unwrap().with_part_size(2048);
        let mut sink = w.create(false, 0).await.unwrap();
        for chunk in data.chunks(700) {
            sink.write_all(chunk).await.unwrap();
        }
        sink.commit(Expect { size: 5000, sha256: None, metadata: vec![], md5: None }).await.unwrap();
        let parts = Parts::new(at()).unwrap();
        let doc = parts.doc().await.unwrap();
        assert_eq!(doc.parts.iter().map(|p| p.size).collect::<Vec<_>>(), [2048, 2048, 904]);
        assert_eq!(doc.catalog_digest, Digest::sha256_of(&data));
        let info = parts.info().await.unwrap().unwrap();
        for (off, len) in [(0, 5000), (0, 2048), (2000, 100), (2048, 2048), (100, 4500), (4999, 1), (4000, 5000)] {
            let mut got = Vec::new();
            parts.read_range(off, len, &info.etag).await.unwrap().read_to_end(&mut got).await.unwrap();
            let end = (off + len).min(5000) as usize;
            assert_eq!(got, data[off as usize..end], "range {off}+{len}");
        }
        // A part changed in place (same size): read whole, it is named.
        let p2 = dir.path().join("b.tar.part0002");
        let mut bytes = std::fs::read(&p2).unwrap();
        bytes[3] ^= 1;
        std::fs::write(&p2, bytes).unwrap();
        let parts = Parts::new(at()).unwrap();
        let info = parts.info().await.unwrap().unwrap();
        let mut got = Vec::new();
        let e = parts.read_range(0, 5000, &info.etag).await.unwrap().read_to_end(&mut got).await.unwrap_err();
        let e = TransferError::io("reading", e);
        assert!(matches!(&e, TransferError::BadPart(m) if m.contains("b.tar.part0002")), "{e}");
    }
}
