//! Import's pre-flight: what the target has, which tags may move; reads only, decides before any write.

use std::collections::{BTreeMap, BTreeSet};

use barge_bundle::{Catalog, Digest};
use futures::stream::{self, StreamExt};

use super::placement::target_name;
use super::{ImportOptions, PlatformIndex};
use crate::outcome::{ArtifactOutcome, Status};
use crate::registry::Registry;
use crate::{Result, TransferError};

/// What the pre-flight decided, before any write.
pub(super) struct Plan {
    /// Per catalog artifact: the repository it is written to in the target.
    pub(super) targets: Vec<String>,
    /// Per catalog artifact: `None` to import, `Some(status)` when settled already.
    pub(super) settled: Vec<Option<Status>>,
    pub(super) outcomes: BTreeMap<usize, ArtifactOutcome>,
    /// For each blob, the repositories that lack it.
    pub(super) need: BTreeMap<Digest, Vec<String>>,
    pub(super) present: usize,
}

pub(super) async fn preflight(
    registry: &dyn Registry,
    catalog: &Catalog,
    targets: Vec<String>,
    opts: &ImportOptions,
) -> Result<Plan> {
    let mut plan = Plan {
        targets,
        settled: vec![None; catalog.artifacts.len()],
        outcomes: BTreeMap::new(),
        need: BTreeMap::new(),
        present: 0,
    };
    let currents: Vec<Result<Option<Digest>>> = stream::iter(catalog.artifacts.iter().zip(&plan.targets))
        .map(|(a, repo)| async move {
            match &a.tag {
                Some(t) => registry.resolve_tag(repo, t).await,
                None => Ok(registry.has_manifest(repo, &a.digest).await?.then(|| a.digest.clone())),
            }
        })
        .buffered(opts.concurrency.max(1))
        .collect()
        .await;
    for (i, (a, current)) in catalog.artifacts.iter().zip(currents).enumerate() {
        // A rewritten index's digest is known only once its manifests are
        // read: its tag is decided at the write (`set_tag`, same rule).
        if opts.platform_index == PlatformIndex::Rewrite && !a.platforms.is_empty() {
            current?;
            continue;
        }
        match current? {
            Some(d) if d == a.digest => {
                plan.settled[i] = Some(Status::Unchanged);
                plan.outcomes.insert(i, ArtifactOutcome::done(a.ref_name(), d, Status::Unchanged));
            }
            Some(existing) if !opts.overwrite_tags => {
                let reference = target_name(&plan.targets[i], a);
                let e = TransferError::TagExists { reference, existing, wanted: a.digest.clone() };
                if !opts.continue_on_errors {
                    return Err(e);
                }
                plan.settled[i] = Some(Status::Failed);
                plan.outcomes.insert(i, ArtifactOutcome::failed(&a.ref_name(), &e));
            }
            _ => {}
        }
    }
    let pairs: BTreeSet<(Digest, String)> = catalog
        .artifacts
        .iter()
        .zip(plan.settled.iter().zip(&plan.targets))
        .filter(|(_, (s, _))| s.is_none())
        .flat_map(|(a, (_, repo))| a.blobs.iter().map(|d| (d.clone(), repo.clone())))
        .collect();
    let checks: Vec<(Digest, String, Result<bool>)> = stream::iter(pairs)
        .map(|(d, repo)| async move {
            let has = registry.has_blob(&repo, &d).await;
            (d, repo, has)
        })
        .buffer_unordered(opts.concurrency.max(1))
        .collect()
        .await;
    for (d, repo, has) in checks {
        if has? {
            plan.present += 1;
        } else {
            plan.need.entry(d).or_default().push(repo);
        }
    }
    for repos in plan.need.values_mut() {
        repos.sort();
    }
    Ok(plan)
}

impl Plan {
    /// Per catalog artifact, its reference in the target (`repository:tag` or `repository@digest`).
    pub(super) fn target_names(&self, catalog: &Catalog) -> Vec<String> {
        catalog.artifacts.iter().zip(&self.targets).map(|(a, repo)| target_name(repo, a)).collect()
    }
}
