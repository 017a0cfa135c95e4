//! `Stdio`: the location `-`, a bundle read once from standard input or written once to standard output.
//!
//! For a diode, a tape or an `ssh` pipe. A stream is read in one pass and
//! verified as it passes (as a bundle in storage is); its size is known only
//! at its end ([`UNKNOWN_SIZE`]). What is written to standard output cannot be
//! taken back: the bundle is hashed as it is written, its size checked at the
//! end, and a failed export leaves the reader a truncated stream that every
//! barge refuses.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use async_trait::async_trait;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::{BlobInfo, BlobSink, BlobStore, Expect};
use crate::io::ByteStream;
use crate::{Result, TransferError};

/// The size of a blob whose end is known only when it is reached (a stream).
pub const UNKNOWN_SIZE: u64 = u64::MAX;

/// Standard input to read a bundle from, standard output to write one to.
#[derive(Default)]
pub struct Stdio {
    read: AtomicBool,
}

impl Stdio {
    pub fn new() -> Stdio {
        Stdio::default()
    }
}

fn refused(what: &str) -> TransferError {
    TransferError::InvalidLocation(format!("`-` (standard input or output) {what}"))
}

#[async_trait]
impl BlobStore for Stdio {
    fn display(&self) -> String {
        "-".into()
    }

    async fn info(&self) -> Result<Option<BlobInfo>> {
        Ok(Some(BlobInfo {
            size: UNKNOWN_SIZE,
            etag: String::new(),
            modified: None,
            metadata: Vec::new(),
            content_md5: None,
        }))
    }

    async fn read_range(&self, offset: u64, _len: u64, _etag: &str) -> Result<ByteStream> {
        if offset != 0 || self.read.swap(true, Ordering::SeqCst) {
            return Err(refused("is read once, from its start"));
        }
        Ok(Box::new(tokio::io::stdin()))
    }

    fn rereads_are_cheap(&self) -> bool {
        false
    }

    async fn create(&self, _overwrite: bool, _size_hint: u64) -> Result<Box<dyn BlobSink>> {
        Ok(Box::new(StdoutSink { out: tokio::io::stdout(), written: 0 }))
    }

    async fn delete(&self, _if_match: Option<&str>) -> Result<()> {
        Err(refused("cannot be deleted"))
    }

    async fn put_if(&self, _bytes: Vec<u8>, _if_match: Option<&str>) -> Result<String> {
        Err(refused("cannot hold state"))
    }
}

struct StdoutSink {
    out: tokio::io::Stdout,
    written: u64,
}

impl AsyncWrite for StdoutSink {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.out).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.written += n as u64;
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.out).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.out).poll_flush(cx)
    }
}

#[async_trait]
impl BlobSink for StdoutSink {
    /// Flush, and check that exactly the expected bytes went out (a stream
    /// cannot be read back: its digest is the one computed while writing).
    async fn commit(mut self: Box<Self>, expect: Expect) -> Result<()> {
        self.out.flush().await.map_err(|e| TransferError::io("writing to standard output", e))?;
        if self.written != expect.size {
            return Err(TransferError::WrongSize {
                what: "the bundle written to standard output".into(),
                expected: expect.size,
                actual: self.written,
            });
        }
        Ok(())
    }
}
