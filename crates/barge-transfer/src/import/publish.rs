//! Import's last phase: per artifact its manifests, children first, then its tag; artifacts side by side.

use std::collections::BTreeMap;

use barge_bundle::{Catalog, Digest};
use futures::stream::{self, StreamExt};

use super::preflight::Plan;
use super::{corrupt, ImportOptions, ImportReport};
use crate::outcome::{ArtifactOutcome, Status};
use crate::registry::{RawManifest, Registry};
use crate::Result;

/// The whole bundle has passed: per artifact its manifests (children first),
/// then its tag; artifacts side by side.
pub(super) async fn publish(
    registry: &dyn Registry,
    catalog: &Catalog,
    plan: Plan,
    manifests: &BTreeMap<Digest, RawManifest>,
    opts: &ImportOptions,
    report: &mut ImportReport,
) -> Result<()> {
    let mut outcomes = plan.outcomes;
    let pending: Vec<(usize, &barge_bundle::Artifact)> =
        catalog.artifacts.iter().enumerate().filter(|(i, _)| plan.settled[*i].is_none()).collect();
    let targets = &plan.targets;
    let published: Vec<(usize, &barge_bundle::Artifact, Result<usize>)> = stream::iter(pending)
        .map(|(i, a)| async move { (i, a, publish_one(registry, a, &targets[i], manifests, opts).await) })
        .buffer_unordered(opts.concurrency.max(1))
        .collect()
        .await;
    for (i, a, r) in published {
        match r {
            Ok(n) => {
                report.manifests_pushed += n;
                outcomes.insert(i, ArtifactOutcome::done(a.ref_name(), a.digest.clone(), Status::Succeeded));
            }
            Err(e) if opts.continue_on_errors => {
                outcomes.insert(i, ArtifactOutcome::failed(&a.ref_name(), &e));
            }
            Err(e) => return Err(e.for_artifact(&a.ref_name())),
        }
    }
    report.artifacts = outcomes.into_values().collect();
    Ok(())
}

/// One artifact's manifests, children first, then its tag, in the target
/// repository `repo`. The reader has checked that the catalog's list is
/// exactly what the manifests name.
async fn publish_one(
    registry: &dyn Registry,
    a: &barge_bundle::Artifact,
    repo: &str,
    manifests: &BTreeMap<Digest, RawManifest>,
    opts: &ImportOptions,
) -> Result<usize> {
    let get = |d: &Digest| manifests.get(d).ok_or_else(|| corrupt("an artifact whose manifest was not read"));
    let Some((root, children)) = a.manifests.split_last() else {
        return Err(corrupt("an artifact without manifests"));
    };
    for d in children {
        registry.push_manifest(repo, get(d)?).await?;
    }
    registry.set_tag(repo, a.tag.as_deref(), get(root)?, opts.overwrite_tags).await?;
    Ok(a.manifests.len())
}
