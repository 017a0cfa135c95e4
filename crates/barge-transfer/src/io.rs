//! Async stream helpers: a bounded, hashing copy and a small read.

use barge_bundle::{Algorithm, Digest, Hasher};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::report::Reporter;
use crate::{Result, TransferError};

/// A boxed byte stream, what registries and stores hand out.
pub type ByteStream = Box<dyn AsyncRead + Send + Unpin>;

/// The buffer size of every streamed copy.
pub const CHUNK: usize = 1 << 20;

/// Copy exactly `size` bytes from `r` to `w`, hashing them with `algorithm`.
/// A short source is a truncation error naming `what`.
pub async fn copy_exact(
    r: &mut (dyn AsyncRead + Send + Unpin),
    w: &mut (dyn AsyncWrite + Send + Unpin),
    size: u64,
    algorithm: Algorithm,
    what: &str,
    reporter: &dyn Reporter,
) -> Result<Digest> {
    let mut hasher = Hasher::new(algorithm);
    let mut buf = vec![0u8; CHUNK.min(size.max(1) as usize)];
    let mut left = size;
    while left > 0 {
        let want = (left as usize).min(buf.len());
        let n = r.read(&mut buf[..want]).await.map_err(|e| TransferError::io(format!("reading {what}"), e))?;
        if n == 0 {
            return Err(TransferError::Bundle(barge_bundle::BundleError::Truncated(format!(
                "{what} ends after {} of {size} bytes",
                size - left
            ))));
        }
        hasher.update(&buf[..n]);
        w.write_all(&buf[..n]).await.map_err(|e| TransferError::io(format!("writing {what}"), e))?;
        reporter.advance(n as u64);
        left -= n as u64;
    }
    Ok(hasher.finish())
}

/// Read exactly `size` bytes into memory (for manifests and other small files).
pub async fn read_small(r: &mut (dyn AsyncRead + Send + Unpin), size: u64, what: &str) -> Result<Vec<u8>> {
    let mut v = vec![0u8; size as usize];
    r.read_exact(&mut v).await.map_err(|e| TransferError::io(format!("reading {what}"), e))?;
    Ok(v)
}

/// Run blocking file work on tokio's blocking pool; a task that panicked or
/// was cancelled with the runtime is an error here, never a panic.
pub async fn blocking<T: Send + 'static>(what: &str, f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| TransferError::io(what.to_string(), std::io::Error::other(e)))?
}
