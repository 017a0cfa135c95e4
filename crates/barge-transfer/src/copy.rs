//! `copy`: move one blob between two locations, checked against the source before it takes its name.

use barge_bundle::{Algorithm, Digest};
use tokio::io::AsyncWriteExt;

use crate::io::copy_exact;
use crate::report::Reporter;
use crate::store::{BlobStore, Expect};
use crate::{Result, TransferError};

#[derive(Debug, Clone, Default)]
pub struct CopyOptions {
    pub overwrite: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CopyReport {
    pub source: String,
    pub destination: String,
    pub size: u64,
    pub sha256: Digest,
}

pub async fn copy(
    src: &dyn BlobStore,
    dst: &dyn BlobStore,
    opts: &CopyOptions,
    reporter: &dyn Reporter,
) -> Result<CopyReport> {
    let info = src.info().await?.ok_or_else(|| TransferError::NotFound(src.display()))?;
    let mut sink = dst.create(opts.overwrite).await?;
    let mut reader = src.open().await?;
    reporter.start("copying", Some(info.size));
    let sha256 = copy_exact(&mut reader, &mut sink, info.size, Algorithm::Sha256, &src.display(), reporter).await?;
    sink.flush().await.map_err(|e| TransferError::io(format!("writing {}", dst.display()), e))?;
    // The source must not have changed while it was read.
    if src.info().await?.map(|i| i.etag) != Some(info.etag) {
        return Err(TransferError::Usage(format!("{} changed during the copy; nothing was written", src.display())));
    }
    sink.commit(Expect { size: info.size, sha256: Some(sha256.clone()), metadata: Vec::new() }).await?;
    reporter.finish();
    Ok(CopyReport { source: src.display(), destination: dst.display(), size: info.size, sha256 })
}
