//! `copy`: move one blob between two locations (like azcopy), checked before it takes its name.

use barge_bundle::{Algorithm, Digest, Hasher};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::bench::{CpuClock, Figures, Stopwatch, Timings};
use crate::io::{copy_exact, CHUNK};
use crate::report::Reporter;
use crate::store::{BlobStore, BlockCopy, CopyBlocks, Expect, Parts};
use crate::{Result, TransferError};

/// azcopy's `--overwrite` values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Overwrite {
    /// An existing destination is refused and left alone.
    #[default]
    False,
    True,
    /// Replace only a destination older than the source; otherwise skip.
    IfSourceNewer,
}

#[derive(Debug, Clone, Default)]
pub struct CopyOptions {
    pub overwrite: Overwrite,
    /// Read the destination back and check its sha256 against the source's.
    pub verify: bool,
    pub concurrency: usize,
    /// Copy through this process even where the storage service could read the source.
    pub relay: bool,
    /// Where the destination records each block's time (see `bench::open_timed`), for the report's figures.
    pub timings: Option<std::sync::Arc<Timings>>,
    /// The process's CPU time, for the report's figures.
    pub cpu: Option<CpuClock>,
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CopyReport {
    pub source: String,
    pub destination: String,
    pub size: u64,
    /// Known when the bytes passed through barge, or with `--verify`.
    pub sha256: Option<Digest>,
    /// The destination was newer and `if-source-newer` left it alone.
    pub skipped: bool,
    pub verified: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocks: Option<BlockCopy>,
    /// Throughput, blocks per second, block latency and CPU of the transfer (not of `verify`'s read-back).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub figures: Option<Figures>,
}

pub async fn copy(
    src: &dyn BlobStore,
    dst: &dyn BlobStore,
    opts: &CopyOptions,
    reporter: &dyn Reporter,
) -> Result<CopyReport> {
    let info = src.info().await?.ok_or_else(|| TransferError::NotFound(src.display()))?;
    let existing = dst.info().await?;
    // A stream (`-`) has no size until its end: it is for export --to - and import -.
    if info.size == crate::store::UNKNOWN_SIZE
        || existing.as_ref().is_some_and(|e| e.size == crate::store::UNKNOWN_SIZE)
    {
        return Err(TransferError::InvalidLocation(
            "copy moves a stored blob to another; a stream (`-`) is for export --to - and import -".into(),
        ));
    }
    let mut report = CopyReport {
        source: src.display(),
        destination: dst.display(),
        size: info.size,
        sha256: None,
        skipped: false,
        verified: false,
        blocks: None,
        figures: None,
    };
    if let Some(existing) = existing {
        match opts.overwrite {
            Overwrite::False => return Err(TransferError::Exists(dst.display())),
            Overwrite::IfSourceNewer if (info.modified <= existing.modified) => {
                report.skipped = true;
                return Ok(report);
            }
            _ => {}
        }
    }
    let overwrite = opts.overwrite != Overwrite::False;
    let blocks = CopyBlocks { overwrite, concurrency: opts.concurrency, relay: opts.relay };
    let watch = Stopwatch::start(opts.cpu);
    let moved = match dst.copy_from(src, &info, &blocks, reporter).await? {
        Some(blocks) => {
            // Blocks an earlier run staged were not moved now (the last block may be short).
            let moved = info.size.min(blocks.blocks_staged * blocks.block_size);
            report.blocks = Some(blocks);
            moved
        }
        None => {
            report.sha256 = Some(stream(src, dst, &info, overwrite, reporter).await?);
            info.size
        }
    };
    report.figures = Some(figures(&watch, moved, opts));
    if opts.verify {
        let want = match &report.sha256 {
            Some(d) => d.clone(),
            None => hash_all(src).await?,
        };
        let got = hash_all(dst).await?;
        if got != want {
            return Err(TransferError::WrongContent {
                what: "copy",
                digest: want,
                actual: got,
                source_name: dst.display(),
            });
        }
        report.sha256 = Some(got);
        report.verified = true;
    }
    Ok(report)
}

/// A split bundle to another: every part (each as `copy` moves a blob, checked
/// against its sha256 where the bytes pass through), then `parts.json`, last.
pub async fn copy_parts(src: &Parts, dst: &Parts, opts: &CopyOptions, reporter: &dyn Reporter) -> Result<CopyReport> {
    let info = src.info().await?.ok_or_else(|| TransferError::NotFound(src.display()))?;
    let doc = src.doc().await?;
    if opts.overwrite == Overwrite::False && dst.json().info().await?.is_some() {
        return Err(TransferError::Exists(dst.display()));
    }
    let renamed = Parts::renamed(&doc, dst.stem());
    let watch = Stopwatch::start(opts.cpu);
    let mut verified = opts.verify;
    for (from, to) in doc.parts.iter().zip(&renamed.parts) {
        let r = copy(src.part(&from.name)?.as_ref(), dst.part(&to.name)?.as_ref(), opts, reporter).await?;
        if r.sha256.as_ref().is_some_and(|d| d != &from.sha256) {
            return Err(TransferError::BadPart(format!(
                "part {} is damaged: its sha256 differs from what {} says",
                r.source,
                src.display()
            )));
        }
        verified &= r.verified;
    }
    dst.write_doc(&renamed, opts.overwrite != Overwrite::False, info.metadata).await?;
    Ok(CopyReport {
        source: src.display(),
        destination: dst.display(),
        size: doc.size,
        sha256: Some(doc.catalog_digest),
        skipped: false,
        verified,
        blocks: None,
        figures: Some(figures(&watch, doc.size, opts)),
    })
}

fn figures(watch: &Stopwatch, bytes: u64, opts: &CopyOptions) -> Figures {
    let latencies = opts.timings.as_ref().map(|t| t.take()).unwrap_or_default();
    watch.figures(bytes, &latencies)
}

/// The copy through this process, for destinations without a way of their own.
async fn stream(
    src: &dyn BlobStore,
    dst: &dyn BlobStore,
    info: &crate::BlobInfo,
    overwrite: bool,
    reporter: &dyn Reporter,
) -> Result<Digest> {
    let mut sink = dst.create(overwrite, info.size).await?;
    let mut reader = src.read_range(0, info.size, &info.etag).await?;
    reporter.start("copying", Some(info.size));
    let sha256 = copy_exact(&mut reader, &mut sink, info.size, Algorithm::Sha256, &src.display(), reporter).await?;
    sink.flush().await.map_err(|e| TransferError::io(format!("writing {}", dst.display()), e))?;
    // The source must not have changed while it was read.
    if src.info().await?.map(|i| i.etag) != Some(info.etag.clone()) {
        return Err(TransferError::Changed(format!("{} changed during the copy; nothing was written", src.display())));
    }
    sink.commit(Expect {
        size: info.size,
        sha256: Some(sha256.clone()),
        metadata: info.metadata.clone(),
        md5: info.content_md5.clone(),
    })
    .await?;
    reporter.finish();
    Ok(sha256)
}

async fn hash_all(b: &dyn BlobStore) -> Result<Digest> {
    let info = b.info().await?.ok_or_else(|| TransferError::NotFound(b.display()))?;
    let mut r = b.read_range(0, info.size, &info.etag).await?;
    let mut h = Hasher::new(Algorithm::Sha256);
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = r.read(&mut buf).await.map_err(|e| TransferError::io(format!("reading {}", b.display()), e))?;
        if n == 0 {
            return Ok(h.finish());
        }
        h.update(&buf[..n]);
    }
}
