//! `BundleWriter`: the bundle's tar stream on its way into a blob sink, optionally zstd, hashed as it goes.

use std::pin::Pin;
use std::task::{Context, Poll};

use async_compression::tokio::write::ZstdEncoder;
use barge_bundle::{Algorithm, Digest, Hasher};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::store::BlobSink;
use crate::{Result, TransferError};

/// Whole-bundle compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    None,
    Zstd,
}

/// Hashes and counts what is written to the sink: the bundle's catalogDigest and size.
struct Hashed {
    sink: Box<dyn BlobSink>,
    hasher: Hasher,
    count: u64,
}

impl AsyncWrite for Hashed {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.sink).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            this.hasher.update(&buf[..*n]);
            this.count += *n as u64;
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.sink).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.sink).poll_shutdown(cx)
    }
}

pub struct BundleWriter {
    inner: Inner,
    what: String,
}

enum Inner {
    Plain(Hashed),
    Zstd(ZstdEncoder<Hashed>),
}

/// `log2` of the zstd window barge writes with.
const WRITE_WINDOW_LOG: u32 = 21;
const _: () = assert!(WRITE_WINDOW_LOG <= barge_bundle::zstd_frame::MAX_WINDOW_LOG);

impl BundleWriter {
    pub fn new(sink: Box<dyn BlobSink>, compression: Compression, what: String) -> BundleWriter {
        let hashed = Hashed { sink, hasher: Hasher::new(Algorithm::Sha256), count: 0 };
        let inner = match compression {
            Compression::None => Inner::Plain(hashed),
            // zstd's default level with a 2 MiB window, well inside what readers accept
            // (barge_bundle::zstd_frame::MAX_WINDOW), so memory stays bounded on both sides.
            Compression::Zstd => Inner::Zstd(ZstdEncoder::with_quality_and_params(
                hashed,
                async_compression::Level::Default,
                &[async_compression::zstd::CParameter::window_log(WRITE_WINDOW_LOG)],
            )),
        };
        BundleWriter { inner, what }
    }

    pub async fn write(&mut self, bytes: &[u8]) -> Result<()> {
        match self.write_all(bytes).await {
            Ok(()) => Ok(()),
            Err(e) => Err(TransferError::io(format!("writing {}", self.what), e)),
        }
    }

    /// Finish the stream; the sink is returned with the bundle's digest and size, not yet committed.
    pub async fn finish(self) -> Result<(Box<dyn BlobSink>, Digest, u64)> {
        let what = self.what;
        let hashed = match self.inner {
            Inner::Plain(mut h) => {
                h.flush().await.map_err(|e| TransferError::io(format!("writing {what}"), e))?;
                h
            }
            Inner::Zstd(mut z) => {
                z.shutdown().await.map_err(|e| TransferError::io(format!("writing {what}"), e))?;
                z.into_inner()
            }
        };
        Ok((hashed.sink, hashed.hasher.finish(), hashed.count))
    }
}

impl AsyncWrite for BundleWriter {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match &mut self.inner {
            Inner::Plain(h) => Pin::new(h).poll_write(cx, buf),
            Inner::Zstd(z) => Pin::new(z).poll_write(cx, buf),
        }
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.inner {
            Inner::Plain(h) => Pin::new(h).poll_flush(cx),
            Inner::Zstd(z) => Pin::new(z).poll_flush(cx),
        }
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.inner {
            Inner::Plain(h) => Pin::new(h).poll_shutdown(cx),
            Inner::Zstd(z) => Pin::new(z).poll_shutdown(cx),
        }
    }
}
