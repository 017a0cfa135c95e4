//! Import's pre-flight: what the target has, which tags may move, whether a delta's left-out blobs are there; reads only, decides before any write.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use barge_bundle::{Against, AgainstKind, Artifact, Catalog, Digest, Omitted};
use futures::stream::{self, StreamExt};

use super::placement::target_name;
use super::{DeltaReport, ImportOptions, PlatformIndex};
use crate::error::Category;
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
    /// A delta's left-out blobs to bring into a target repository from another
    /// one that holds them; done only after the whole bundle has passed.
    pub(super) mounts: Vec<Mount>,
    /// For a delta: what it relied on the target for.
    pub(super) delta: Option<DeltaReport>,
}

/// A left-out blob that the target holds in `from` but not in `to`, where an artifact needs it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Mount {
    pub(super) digest: Digest,
    pub(super) size: u64,
    pub(super) from: String,
    pub(super) to: String,
}

/// Where the target holds a left-out blob, seen from one target repository.
enum Found {
    /// In the repository itself.
    Here,
    /// In another repository, to mount from.
    In(String),
    Nowhere,
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
        mounts: Vec::new(),
        delta: None,
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
    // A delta's dependencies first: an artifact that lacks one is settled
    // (failed) before any of its blobs is planned for upload.
    dependencies(registry, catalog, opts, &mut plan).await?;
    let omitted: BTreeSet<&Digest> = catalog.omitted().iter().map(|o| &o.blob.digest).collect();
    let pairs: BTreeSet<(Digest, String)> = pending(catalog, &plan)
        .into_iter()
        .flat_map(|(_, a, repo)| a.blobs.iter().map(move |d| (d.clone(), repo.clone())))
        .filter(|(d, _)| !omitted.contains(d))
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

/// The artifacts still to import, each with its index and target repository.
fn pending<'c>(catalog: &'c Catalog, plan: &Plan) -> Vec<(usize, &'c Artifact, String)> {
    let settled = |i: &usize| plan.settled[*i].is_none();
    catalog
        .artifacts
        .iter()
        .enumerate()
        .filter(|(i, _)| settled(i))
        .map(|(i, a)| (i, a, plan.targets[i].clone()))
        .collect()
}

/// Each (left-out blob, target repository) pair the artifacts still to import use.
fn dependency_pairs<'c>(
    catalog: &'c Catalog,
    plan: &Plan,
    omitted: &HashMap<&Digest, &Omitted>,
) -> BTreeSet<(&'c Digest, String)> {
    pending(catalog, plan)
        .into_iter()
        .flat_map(|(_, a, repo)| a.blobs.iter().filter(|d| omitted.contains_key(d)).map(move |d| (d, repo.clone())))
        .collect()
}

/// A delta's left-out blobs, for every artifact still to import: each must be
/// in the artifact's target repository, or in a repository of the target that
/// the catalog names for it (as named, or placed like an artifact), to be
/// mounted once the bundle has passed. Reads only. Without ContinueOnErrors
/// one missing blob refuses the import; with it, the artifacts that lack one
/// fail and the others go on.
async fn dependencies(registry: &dyn Registry, catalog: &Catalog, opts: &ImportOptions, plan: &mut Plan) -> Result<()> {
    let Some(delta) = &catalog.delta else { return Ok(()) };
    let omitted: HashMap<&Digest, &Omitted> = delta.omitted.iter().map(|o| (&o.blob.digest, o)).collect();
    let (omitted, source_registry) = (&omitted, catalog.source_registry.as_str());
    let found: Vec<((&Digest, String), Result<Found>)> = stream::iter(dependency_pairs(catalog, plan, omitted))
        .map(|(d, repo)| async move {
            let f = find(registry, &opts.placement, source_registry, omitted[d], &repo).await;
            ((d, repo), f)
        })
        .buffer_unordered(opts.concurrency.max(1))
        .collect()
        .await;
    let mut found: BTreeMap<(&Digest, String), Found> =
        found.into_iter().map(|(k, f)| f.map(|f| (k, f))).collect::<Result<_>>()?;
    let against = against_words(&delta.against);
    let mut missing_all = BTreeSet::new();
    for (i, a, repo) in pending(catalog, plan) {
        let lacks = |d: &&Digest| matches!(found.get(&(*d, repo.clone())), Some(Found::Nowhere));
        let missing: Vec<Digest> = a.blobs.iter().filter(lacks).cloned().collect();
        if missing.is_empty() {
            continue;
        }
        missing_all.extend(missing.iter().cloned());
        let e = TransferError::MissingDependencies { against: against.clone(), missing };
        plan.settled[i] = Some(Status::Failed);
        plan.outcomes.insert(i, ArtifactOutcome::failed(&a.ref_name(), &e));
    }
    let missing: Vec<Digest> = missing_all.into_iter().collect();
    if !missing.is_empty() && !opts.continue_on_errors {
        return Err(TransferError::MissingDependencies { against, missing });
    }
    // What the artifacts still to import rely on, and the mounts they need.
    let mut relied = BTreeSet::new();
    for (digest, to) in dependency_pairs(catalog, plan, omitted) {
        match found.remove(&(digest, to.clone())) {
            Some(Found::Here) => plan.present += 1,
            Some(Found::In(from)) => {
                plan.mounts.push(Mount { digest: digest.clone(), size: omitted[digest].blob.size, from, to })
            }
            _ => continue,
        }
        relied.insert(digest);
    }
    let omitted = delta.omitted.len();
    plan.delta = Some(DeltaReport { against, omitted, relied_on: relied.len(), mounted: 0, missing });
    Ok(())
}

/// Where the target holds a left-out blob for repository `repo`: there, or
/// in the repository the catalog names for it (as the target names it, or
/// placed like an artifact of the bundle). A repository that will not say
/// (access refused) is one it cannot be mounted from.
async fn find(
    registry: &dyn Registry,
    placement: &super::Placement,
    source_registry: &str,
    o: &Omitted,
    repo: &str,
) -> Result<Found> {
    let digest = &o.blob.digest;
    if registry.has_blob(repo, digest).await? {
        return Ok(Found::Here);
    }
    let Some(named) = &o.repository else { return Ok(Found::Nowhere) };
    let mut candidates = vec![named.clone()];
    if let Some(placed) = placement.repository(Some(source_registry), named) {
        candidates.push(placed);
    }
    for from in candidates.into_iter().filter(|c| c != repo) {
        match registry.has_blob(&from, digest).await {
            Ok(true) => return Ok(Found::In(from)),
            Ok(false) => {}
            Err(e) if e.category() == Category::Auth => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Found::Nowhere)
}

/// What a delta was cut against, in words for messages and the report.
pub(super) fn against_words(a: &Against) -> String {
    match a.kind {
        AgainstKind::Inventory => {
            let mut s = format!("inventory {}", a.digest);
            if let Some(r) = &a.registry {
                s += &format!(" of {r}");
            }
            if let Some(t) = &a.taken {
                s += &format!(" taken {t}");
            }
            s
        }
        AgainstKind::Bundle => format!("bundle whose catalog is {}", a.digest),
    }
}

impl Plan {
    /// Per catalog artifact, its reference in the target (`repository:tag` or `repository@digest`).
    pub(super) fn target_names(&self, catalog: &Catalog) -> Vec<String> {
        catalog.artifacts.iter().zip(&self.targets).map(|(a, repo)| target_name(repo, a)).collect()
    }
}
