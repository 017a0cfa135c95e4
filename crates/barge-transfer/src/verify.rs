//! `verify` of a bundle wherever it lies: a local file walked by position and hashed in parallel, a stored blob in one pass.
//!
//! Both go through the bundle crate's one reader; a stored blob is read once,
//! pinned to the version `info` gave, and never written or leased.

use std::sync::Arc;

use barge_bundle::{Verified, VerifyOptions};
use tokio_util::io::SyncIoBridge;

use crate::report::Reporter;
use crate::store::Location;
use crate::{BlobStore, Result, TransferError};

/// Verify the bundle at `location` (opened as `store`). The reporter hears of
/// the bytes hashed (a local file) or read (a stream).
pub async fn verify(
    location: &Location,
    store: &dyn BlobStore,
    opts: &VerifyOptions,
    reporter: Arc<dyn Reporter>,
) -> Result<Verified> {
    let what = store.display();
    let info = store.info().await?.ok_or_else(|| TransferError::NotFound(format!("bundle {what}")))?;
    reporter.start("verifying", Some(info.size));
    let opts = opts.clone();
    let progress = reporter.clone();
    let verified = match location {
        Location::Local(path) => {
            let path = path.clone();
            tokio::task::spawn_blocking(move || barge_bundle::verify_file(&path, &opts, &|n| progress.advance(n))).await
        }
        Location::Azure(_) | Location::Stdio | Location::Parts { .. } => {
            let stream = store.read_range(0, info.size, &info.etag).await?;
            let bridge = SyncIoBridge::new(stream);
            tokio::task::spawn_blocking(move || barge_bundle::verify_reader(bridge, &opts, &|n| progress.advance(n)))
                .await
        }
    };
    reporter.finish();
    let verified = verified.map_err(|e| TransferError::io(format!("verifying {what}"), std::io::Error::other(e)))?;
    verified.map_err(|e| match e {
        // An IO failure of the stream carries the store's own error (its kind, its endpoint).
        barge_bundle::BundleError::Io(io) => TransferError::io(format!("reading {what}"), io),
        e => e.into(),
    })
}
