//! `inspect`: what a bundle holds, read from its head alone (layout files, catalog, manifests), wherever it lies.
//!
//! A bundle puts its catalog and every manifest first, so the head says
//! everything about its artifacts. A plain bundle is read by range: a first
//! window, then exactly the rest of the head, whose length the catalog gives
//! ([`barge_bundle::summary::head_len`]). A zstd bundle is decoded from its
//! start, a chunk at a time, until the head has passed. A stream (`-`) is read
//! up to the end of its head and left there, undrained. Everything read goes
//! through the bundle `Reader`, which checks the catalog and every manifest
//! digest (and each artifact's closure, once the first config's header has
//! been read); configs and layers are never read: that is `verify`'s work.

use std::collections::HashMap;

use barge_bundle::reader::{Data, Next, Reader};
use barge_bundle::summary::{head_len, Facts, Summary};
use barge_bundle::zstd_frame::{self, MAX_WINDOW_LOG, ZSTD_MAGIC};
use barge_bundle::{BundleError, Catalog, Digest, Meta};
use tokio::io::AsyncReadExt;
use zstd::stream::raw::{DParameter, Decoder, InBuffer, Operation, OutBuffer};

use crate::io::ByteStream;
use crate::store::{BlobInfo, BlobStore, UNKNOWN_SIZE};
use crate::{Result, TransferError};

/// The first read of a bundle: enough for the catalog of most bundles.
const FIRST_WINDOW: u64 = 64 * 1024;
/// The most read (or decoded) at once.
const MAX_WINDOW: u64 = 4 << 20;

/// What `inspect` found in a bundle's head.
#[derive(Debug, Clone)]
pub struct Inspected {
    pub summary: Summary,
    /// `barge-catalog.json` as stored in the bundle.
    pub catalog_json: Vec<u8>,
    pub compressed: bool,
    /// The bundle's size as stored; `None` for a stream.
    pub size: Option<u64>,
    /// The catalogDigest the store keeps with the blob (export sets it), when it does; not computed.
    pub catalog_digest: Option<Digest>,
    /// Bytes read from the store (compressed bytes for a zstd bundle).
    pub bytes_read: u64,
}

/// Read the head of the bundle in `store` and summarise it.
pub async fn inspect(store: &dyn BlobStore) -> Result<Inspected> {
    let what = store.display();
    let info = store.info().await?.ok_or_else(|| TransferError::NotFound(format!("bundle {what}")))?;
    let catalog_digest = info
        .metadata
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("catalogdigest"))
        .and_then(|(_, v)| Digest::parse(v).ok());
    let size = (info.size != UNKNOWN_SIZE).then_some(info.size);
    let mut head = Head::open(store, info, what).await?;
    let (catalog, catalog_json, facts) = read_head(&mut head).await?;
    Ok(Inspected {
        summary: Summary::new(&catalog, &facts)?,
        catalog_json,
        compressed: head.zstd.is_some(),
        size,
        catalog_digest,
        bytes_read: head.fetched,
    })
}

/// Drive the one bundle reader over the head: up to the first config or layer
/// (or the end of the archive). Returns the checked catalog, its bytes and the facts of every manifest.
async fn read_head(head: &mut Head<'_>) -> Result<(Catalog, Vec<u8>, HashMap<Digest, Facts>)> {
    let mut reader = Reader::new();
    let (mut catalog_json, mut facts) = (None, HashMap::new());
    loop {
        match reader.next() {
            Next::Header => {
                let first = head.taken() == 0;
                let block = head.take(512).await?;
                match reader.header(block.as_slice().try_into().expect("512 bytes")) {
                    // Its first block is no tar header: not a bundle at all (and its bytes are not quoted).
                    Err(BundleError::Corrupt(_) | BundleError::UnsafeEntry { .. }) if first => {
                        return Err(BundleError::Corrupt(format!(
                            "{} is neither a tar archive nor zstd-compressed: not a barge bundle",
                            head.what
                        ))
                        .into())
                    }
                    r => r?,
                }
            }
            Next::Data { len, what } => {
                let data = head.take(len).await?;
                reader.data(&data)?;
                match what {
                    Data::Manifest(i) => {
                        let digest = reader.blob(i).map(|b| b.digest.clone());
                        facts.extend(digest.map(|d| (d, Facts::of(&data))));
                    }
                    Data::Meta(Meta::Catalog) => {
                        if let Some(c) = reader.catalog() {
                            head.head_ends_at(head_len(c));
                        }
                        catalog_json = Some(data);
                    }
                    _ => {}
                }
            }
            Next::Skip { len } => {
                head.take(len).await?;
                reader.skipped()?;
            }
            Next::Blob { .. } | Next::Trailer => break,
        }
    }
    match (reader.catalog(), catalog_json) {
        (Some(c), Some(json)) => Ok((c.clone(), json, facts)),
        _ => Err(BundleError::Corrupt("the bundle has no barge-catalog.json".into()).into()),
    }
}

/// A zstd frame being decoded: the decoder and the compressed bytes it has not taken yet.
struct Zstd {
    decoder: Decoder<'static>,
    pending: Vec<u8>,
    at: usize,
}

/// The bundle's first bytes, fetched as they are needed.
struct Head<'a> {
    store: &'a dyn BlobStore,
    info: BlobInfo,
    what: String,
    /// A stream (`-`) read once from its start; `None`: read by range.
    stream: Option<ByteStream>,
    /// Raw bytes fetched so far (the offset of the next range).
    fetched: u64,
    /// How much to fetch next, at least (a plain bundle's head, once known).
    window: u64,
    zstd: Option<Zstd>,
    /// Tar bytes fetched (or decoded) and not taken yet: `buf[at..]`.
    buf: Vec<u8>,
    at: usize,
    taken: u64,
}

impl<'a> Head<'a> {
    async fn open(store: &'a dyn BlobStore, info: BlobInfo, what: String) -> Result<Head<'a>> {
        let stream =
            if info.size == UNKNOWN_SIZE { Some(store.read_range(0, UNKNOWN_SIZE, &info.etag).await?) } else { None };
        let mut head = Head {
            store,
            info,
            what,
            stream,
            fetched: 0,
            window: FIRST_WINDOW,
            zstd: None,
            buf: Vec::new(),
            at: 0,
            taken: 0,
        };
        let mut first = head.raw(FIRST_WINDOW).await?;
        // Enough to tell a zstd frame and read its header, unless the bundle is shorter.
        while first.len() < zstd_frame::HEADER_MAX {
            let more = head.raw(FIRST_WINDOW).await?;
            if more.is_empty() {
                break;
            }
            first.extend_from_slice(&more);
        }
        if first.starts_with(&ZSTD_MAGIC) {
            zstd_frame::check_window(&first)?;
            let mut decoder = Decoder::new().map_err(BundleError::from)?;
            decoder.set_parameter(DParameter::WindowLogMax(MAX_WINDOW_LOG)).map_err(BundleError::from)?;
            head.zstd = Some(Zstd { decoder, pending: first, at: 0 });
        } else {
            head.buf = first;
        }
        Ok(head)
    }

    /// The head ends `len` bytes into the tar: a plain bundle fetches the rest of it at once.
    fn head_ends_at(&mut self, len: u64) {
        if self.zstd.is_none() {
            self.window = len.saturating_sub(self.fetched).min(MAX_WINDOW);
        }
    }

    /// Up to `want` more raw bytes from the store; empty at its end.
    async fn raw(&mut self, want: u64) -> Result<Vec<u8>> {
        let want = want.min(MAX_WINDOW);
        let mut out = Vec::new();
        let read = match &mut self.stream {
            // What the stream has now (a pipe may not have a whole window yet); nothing only at its end.
            Some(s) => {
                out.resize(want as usize, 0);
                let n = s.read(&mut out).await;
                out.truncate(*n.as_ref().unwrap_or(&0));
                n
            }
            None => {
                let len = want.min(self.info.size.saturating_sub(self.fetched));
                if len == 0 {
                    return Ok(out);
                }
                let mut s = self.store.read_range(self.fetched, len, &self.info.etag).await?;
                s.read_to_end(&mut out).await
            }
        };
        read.map_err(|e| TransferError::io(format!("reading {}", self.what), e))?;
        self.fetched += out.len() as u64;
        Ok(out)
    }

    /// How many tar bytes have been taken so far.
    fn taken(&self) -> u64 {
        self.taken
    }

    /// The next `n` bytes of the tar.
    async fn take(&mut self, n: u64) -> Result<Vec<u8>> {
        let n = usize::try_from(n).map_err(|_| BundleError::Corrupt("an entry larger than memory".into()))?;
        while self.buf.len() - self.at < n {
            self.buf.drain(..self.at);
            self.at = 0;
            let missing = (n - self.buf.len()) as u64;
            let more = if self.zstd.is_some() {
                self.decode().await?
            } else {
                let chunk = self.raw(missing.max(self.window)).await?;
                self.buf.extend_from_slice(&chunk);
                !chunk.is_empty()
            };
            if !more {
                return Err(BundleError::Truncated("it ends before its catalog and manifests do".into()).into());
            }
        }
        self.at += n;
        self.taken += n as u64;
        Ok(self.buf[self.at - n..self.at].to_vec())
    }

    /// Decode up to one window more of the frame into `buf`; false when the frame (or the file) has ended.
    async fn decode(&mut self) -> Result<bool> {
        if self.zstd.as_ref().is_some_and(|z| z.at == z.pending.len()) {
            let chunk = self.raw(FIRST_WINDOW).await?;
            if chunk.is_empty() {
                return Ok(false);
            }
            let z = self.zstd.as_mut().expect("a zstd bundle");
            (z.pending, z.at) = (chunk, 0);
        }
        let z = self.zstd.as_mut().expect("a zstd bundle");
        let mut out = vec![0u8; 256 * 1024];
        let mut input = InBuffer::around(&z.pending[z.at..]);
        let mut output = OutBuffer::around(out.as_mut_slice());
        let left =
            z.decoder.run(&mut input, &mut output).map_err(|e| BundleError::from(barge_bundle::decode_error(e)))?;
        let produced = output.pos();
        z.at += input.pos();
        self.buf.extend_from_slice(&out[..produced]);
        // The frame ended (`left == 0`) with nothing more: the tar ended early.
        Ok(produced > 0 || left != 0)
    }
}
