//! `import`: read a bundle in one sequential pass, verify everything, and push it into a registry.
//!
//! Order of effects: pre-flight (tags and existing blobs, no writes) → blobs as
//! they stream past, each checked before it is visible → after the whole
//! bundle has passed, per artifact its manifests (children before the index)
//! and then its tag. The bundle's rules are the bundle [`Reader`]'s, the same
//! `verify` applies: every manifest and every artifact's closure is checked
//! before the first config or layer is written.
//!
//! The phases, one file each: `placement` (where each artifact goes in the
//! target, decided once from the catalog), `preflight` (what is there, what may move; no
//! writes), `pass` (the one sequential pass and its uploader), `publish`
//! (manifests, children first, tags last); `source` is the stream the pass
//! reads. Clean-up (DeleteSourceBlobOnSuccess) ends [`import`].
//!
//! A delta bundle leaves out configs and layers the target holds: the
//! pre-flight finds each one an artifact uses in its target repository (or in
//! another repository that holds it, to mount from) and refuses the import
//! when one is missing, before any write; the pass never expects them; the
//! mounts are made by `publish`, after the whole bundle has passed.

mod pass;
mod placement;
mod preflight;
mod publish;
mod source;

use std::sync::Arc;

use barge_bundle::{Algorithm, BundleError, Digest};

use crate::io::copy_exact;
use crate::outcome::{any_failed, ArtifactOutcome};
use crate::registry::Registry;
use crate::report::Reporter;
use crate::store::{BlobInfo, BlobStore};
use crate::{Result, TransferError};
use pass::{Pass, Passed};
pub use placement::{Map, Placement};
use publish::publish;
pub use publish::PlatformIndex;
use source::Source;

#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    pub overwrite_tags: bool,
    pub continue_on_errors: bool,
    pub delete_source_on_success: bool,
    /// Refuse the bundle unless its sha256 is this (ACR's catalogDigest).
    pub catalog_digest: Option<Digest>,
    /// Report the catalogDigest even when no check asks for it. A stream is
    /// hashed as it passes anyway; a re-readable bundle is then hashed whole first.
    pub report_catalog_digest: bool,
    pub concurrency: usize,
    /// Where the artifacts go in the target: a prefix and repository maps.
    pub placement: Placement,
    /// How an artifact that carries only some platforms of its index is written.
    pub platform_index: PlatformIndex,
    /// The bundle's signature, checked before anything is written.
    pub signature: Option<crate::sign::SignatureCheck>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportReport {
    pub catalog_digest: Option<Digest>,
    pub bundle: String,
    pub artifacts: Vec<ArtifactOutcome>,
    pub blobs_uploaded: usize,
    pub blobs_mounted: usize,
    pub blobs_present: usize,
    pub bytes_uploaded: u64,
    pub manifests_pushed: usize,
    pub source_deleted: bool,
    /// Who signed the bundle, when its signature was checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<crate::sign::Signer>,
    /// Present when the bundle is a delta: what it relied on the target for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta: Option<DeltaReport>,
}

/// What a delta bundle relied on the target for.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeltaReport {
    /// What the delta was cut against, in words: `inventory sha256:… of REGISTRY
    /// taken TIME`, or `bundle whose catalog is sha256:…`.
    pub against: String,
    /// The configs and layers the bundle leaves out.
    pub omitted: usize,
    /// Of those, the ones the imported artifacts use, which the target held
    /// (or held in another repository, to mount from).
    pub relied_on: usize,
    /// Left-out blobs mounted (or, where a mount was refused, copied) from
    /// another repository of the target into one that lacked them.
    pub mounted: usize,
    /// Left-out blobs the target lacks; the artifacts that use them failed
    /// (only with ContinueOnErrors: otherwise the import is refused).
    pub missing: Vec<Digest>,
}

pub async fn import(
    source: Arc<dyn BlobStore>,
    registry: Arc<dyn Registry>,
    opts: &ImportOptions,
    reporter: &dyn Reporter,
) -> Result<ImportReport> {
    let what = source.display();
    let info = source.info().await?.ok_or_else(|| TransferError::NotFound(format!("bundle {what}")))?;
    let mut report = ImportReport { bundle: what.clone(), ..Default::default() };
    let signed = check_signature(source.as_ref(), &info, opts, reporter).await?;
    let hashed_first = match &signed {
        Some((_, digest, _)) => Some(digest.clone()),
        None => hash_first(source.as_ref(), &info, opts, reporter).await?,
    };
    reporter.start("importing", Some(info.size).filter(|&s| s != crate::store::UNKNOWN_SIZE));
    // Pinned: the version read is the version a later delete may remove.
    let stream = source.read_range(0, info.size, &info.etag).await?;
    let rereadable = source.rereads_are_cheap();
    let src = Source::new(stream, !rereadable, reporter, &what).await?;
    let pass = Pass::new(source.clone(), &info, registry.clone(), opts, reporter, src, &mut report);
    let Passed { catalog, plan, manifests, digest } = pass.run(&what).await?;
    reporter.finish();
    if let (Some(expected), None) = (&opts.catalog_digest, &hashed_first) {
        let actual = digest.clone().ok_or_else(|| corrupt("a stream that was not hashed"))?;
        if &actual != expected {
            return Err(BundleError::CatalogDigestMismatch { expected: expected.clone(), actual }.into());
        }
    }
    report.catalog_digest = hashed_first.or(digest);
    if let Some((text, d, signer)) = signed {
        // The pass read the version that was hashed; its catalog must be the one whose statement was checked.
        if crate::sign::statement(&catalog, &d) != text {
            let why = "the bundle changed while it was read".to_string();
            return Err(TransferError::SignatureRefused { bundle: what, signer: signer.to_string(), why });
        }
        report.signed_by = Some(signer);
    }
    report.blobs_present = plan.present;
    report.delta = plan.delta.clone();
    let targets = plan.target_names(&catalog);
    publish(registry.as_ref(), &catalog, plan, &manifests, opts, &mut report).await?;
    if report.artifacts.len() != targets.len() {
        return Err(TransferError::Internal("an import reported another number of artifacts than its catalog has"));
    }
    for (outcome, target) in report.artifacts.iter_mut().zip(targets) {
        outcome.target = Some(target);
    }
    if opts.delete_source_on_success && !any_failed(&report.artifacts) {
        match source.delete(Some(&info.etag)).await {
            Ok(()) => report.source_deleted = true,
            // The images are in; a bundle left behind is a warning, not a failure.
            Err(e) => reporter.note(&format!("the bundle was imported but not deleted: {e}")),
        }
    }
    Ok(report)
}

/// With a signature check that applies: the bundle's statement (its catalog read
/// from its head, its bytes hashed, pinned to `info`'s version), checked against
/// the signature before anything is written. Returns the statement and the catalogDigest.
async fn check_signature(
    source: &dyn BlobStore,
    info: &BlobInfo,
    opts: &ImportOptions,
    reporter: &dyn Reporter,
) -> Result<Option<(String, Digest, crate::sign::Signer)>> {
    let Some(check) = opts.signature.as_ref().filter(|c| c.applies()) else { return Ok(None) };
    let what = source.display();
    if check.signature.is_none() {
        return Err(TransferError::SignatureMissing(what));
    }
    if info.size == crate::store::UNKNOWN_SIZE {
        let why = "a signed bundle cannot be checked on standard input before it is written; import it from its file";
        return Err(TransferError::InvalidLocation(why.into()));
    }
    reporter.start("hashing the bundle", Some(info.size));
    let mut whole = source.read_range(0, info.size, &info.etag).await?;
    let actual = copy_exact(&mut whole, &mut tokio::io::sink(), info.size, Algorithm::Sha256, &what, reporter).await?;
    reporter.finish();
    if let Some(expected) = opts.catalog_digest.as_ref().filter(|e| **e != actual) {
        return Err(BundleError::CatalogDigestMismatch { expected: expected.clone(), actual }.into());
    }
    let text = crate::sign::statement_of(source, Some(actual.clone()), reporter).await?;
    let signer = check.allowed.check(&text, check.signature.as_deref(), &what)?;
    Ok(Some((text, actual, signer)))
}

/// The catalogDigest of a re-readable bundle, hashed whole before anything is
/// written, when it is wanted. A stream is hashed by the pass instead, and
/// checked at its end (before any manifest or tag).
async fn hash_first(
    source: &dyn BlobStore,
    info: &BlobInfo,
    opts: &ImportOptions,
    reporter: &dyn Reporter,
) -> Result<Option<Digest>> {
    if !source.rereads_are_cheap() || (opts.catalog_digest.is_none() && !opts.report_catalog_digest) {
        return Ok(None);
    }
    reporter.start("hashing the bundle", Some(info.size));
    let mut whole = source.read_range(0, info.size, &info.etag).await?;
    let what = source.display();
    let actual = copy_exact(&mut whole, &mut tokio::io::sink(), info.size, Algorithm::Sha256, &what, reporter).await?;
    reporter.finish();
    if let Some(expected) = opts.catalog_digest.as_ref().filter(|e| **e != actual) {
        return Err(BundleError::CatalogDigestMismatch { expected: expected.clone(), actual }.into());
    }
    Ok(Some(actual))
}

fn corrupt(what: &str) -> TransferError {
    BundleError::Corrupt(format!("the bundle reader met {what}")).into()
}

#[cfg(test)]
mod tests;
