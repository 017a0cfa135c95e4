//! The bundle stream an import reads: raw bytes counted (and hashed when wanted), then zstd-decoded if the bundle is compressed.

use std::pin::Pin;
use std::task::{Context, Poll};

use async_compression::tokio::bufread::ZstdDecoder;
use async_compression::zstd::DParameter;
use barge_bundle::zstd_frame::{self, MAX_WINDOW_LOG, ZSTD_MAGIC};
use barge_bundle::{Algorithm, BundleError, Digest, Hasher};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader, ReadBuf};

use crate::io::{ByteStream, CHUNK};
use crate::report::Reporter;
use crate::store::{BlobInfo, BlobStore};
use crate::{Result, TransferError};

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
pub(super) struct Source<'a> {
    inner: Inner<'a>,
    pos: u64,
}

enum Inner<'a> {
    Plain(BufReader<Raw<'a>>),
    Zstd(ZstdDecoder<BufReader<Raw<'a>>>),
}

impl<'a> Source<'a> {
    pub(super) async fn new(
        stream: ByteStream,
        hash: bool,
        reporter: &'a dyn Reporter,
        what: &str,
    ) -> Result<Source<'a>> {
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
    pub(super) fn file_offset(&self) -> Option<u64> {
        matches!(self.inner, Inner::Plain(_)).then_some(self.pos)
    }

    /// Move `n` bytes ahead in a plain bundle without reading them, by opening
    /// the file again further on (a bundle read that way is not hashed whole).
    /// Returns how many bytes were never read, for the caller to count once
    /// someone else has read them.
    pub(super) async fn seek_ahead(&mut self, n: u64, store: &dyn BlobStore, info: &BlobInfo) -> Result<u64> {
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
    pub(super) async fn finish(mut self, what: &str) -> Result<Option<Digest>> {
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

pub(super) async fn skip(r: &mut (dyn AsyncRead + Send + Unpin), n: u64) -> Result<()> {
    let copied = tokio::io::copy(&mut r.take(n), &mut tokio::io::sink())
        .await
        .map_err(|e| TransferError::from(BundleError::from(e)))?;
    if copied != n {
        return Err(BundleError::Truncated("it ends in the middle of an entry".into()).into());
    }
    Ok(())
}
