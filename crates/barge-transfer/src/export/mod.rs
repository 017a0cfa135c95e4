//! `export`: resolve artifacts in a registry and stream them into one bundle blob.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use barge_bundle::catalog::Against;
use barge_bundle::oci::{self, Refs};
use barge_bundle::platform::{select_children, unmatched};
use barge_bundle::{Artifact, Blob, BlobKind, Catalog, Digest, Platform, Reference};
use futures::stream::{self, StreamExt};

use crate::inventory::DeltaBase;
use crate::outcome::{ArtifactOutcome, Status};
use crate::registry::{RawManifest, Registry, Target};
use crate::report::Reporter;
use crate::set::{ExportRequest, Sources};
use crate::sink::Compression;
use crate::store::BlobStore;
use crate::{Result, TransferError};

mod write;

/// ACR's limit of artifacts per run, barge's default.
pub const DEFAULT_MAX_ARTIFACTS: usize = 50;
/// How deep indexes may nest (an index of indexes of manifests is 2).
const MAX_DEPTH: usize = 4;

#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub max_artifacts: usize,
    pub continue_on_errors: bool,
    /// ACR's OverwriteBlobs.
    pub overwrite: bool,
    pub compression: Compression,
    /// Artifacts resolved, and blobs fetched ahead, at once.
    pub concurrency: usize,
    /// Bring signatures, SBOMs and attestations that refer to the artifacts.
    pub referrers: bool,
    /// Cut a delta: leave out the configs and layers this base says the far side holds.
    pub delta: Option<DeltaBase>,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            max_artifacts: DEFAULT_MAX_ARTIFACTS,
            continue_on_errors: false,
            overwrite: false,
            compression: Compression::None,
            concurrency: 8,
            referrers: true,
            delta: None,
        }
    }
}

/// What an export would carry, without writing it (`--dry-run`).
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportPlan {
    /// Every artifact that resolved (referrers included), as the catalog lists them.
    pub artifacts: Vec<PlannedArtifact>,
    pub blobs: usize,
    pub blob_bytes: u64,
    /// Blobs that more than one artifact uses, stored once.
    pub shared_blobs: Vec<SharedBlob>,
    pub shared_bytes: u64,
    pub source_registries: Vec<String>,
    /// Requests that failed to resolve (skipped under ContinueOnErrors).
    pub failed: Vec<ArtifactOutcome>,
    /// For a delta: what it leaves out and what it was cut against.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta: Option<DeltaSummary>,
}

/// What a delta bundle leaves out (the far side holds it) and what said so.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeltaSummary {
    pub against: Against,
    /// Configs and layers left out.
    pub omitted: usize,
    pub omitted_bytes: u64,
}

impl DeltaSummary {
    fn of(catalog: &Catalog) -> Option<DeltaSummary> {
        let d = catalog.delta.as_ref()?;
        Some(DeltaSummary {
            against: d.against.clone(),
            omitted: d.omitted.len(),
            omitted_bytes: d.omitted.iter().map(|o| o.blob.size).sum(),
        })
    }
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedArtifact {
    pub request: String,
    pub registry: Option<String>,
    pub reference: String,
    pub digest: Digest,
    pub media_type: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<String>,
    pub blobs: usize,
    pub bytes: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SharedBlob {
    pub digest: Digest,
    pub size: u64,
    /// The artifacts (catalog names) that use it.
    pub used_by: Vec<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportReport {
    pub catalog_digest: Digest,
    pub bundle: String,
    pub size: u64,
    pub blobs: usize,
    pub blob_bytes: u64,
    pub artifacts: Vec<ArtifactOutcome>,
    /// For a delta: what it leaves out and what it was cut against.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta: Option<DeltaSummary>,
    /// The artifacts the bundle holds: fewer than the succeeded requests when
    /// two of them name one artifact (`hello` and `hello:latest`, or one
    /// repository of one registry by two of its names).
    pub artifacts_in_bundle: usize,
    /// The bundle's `barge-catalog.json`, as written (for a pipeline run to keep).
    #[serde(skip)]
    pub catalog_json: Vec<u8>,
}

/// One artifact resolved to everything it needs.
struct Resolved {
    request: String,
    /// The key of the registry it is read from, in [`Sources`].
    registry: String,
    /// Whether to look for what refers to it.
    referrers: bool,
    artifact: Artifact,
    manifests: Vec<RawManifest>,
    /// Configs and layers with the repository to read each from.
    blobs: Vec<(Blob, String)>,
    created: Option<String>,
    /// What the Referrers API lists for each of the artifact's manifests.
    api_referrers: Vec<(Digest, Vec<oci::Descriptor>)>,
}

/// Check the artifact list before anything is fetched: the limit, then every name.
pub fn parse_artifacts(artifacts: &[String], max: usize) -> Result<Vec<Reference>> {
    if artifacts.is_empty() {
        return Err(TransferError::NoArtifacts);
    }
    if artifacts.len() > max {
        return Err(TransferError::TooManyArtifacts { given: artifacts.len(), limit: max, from_set: false });
    }
    let mut bad = Vec::new();
    let mut refs = Vec::new();
    for a in artifacts {
        match Reference::parse(a) {
            Ok(r) => refs.push(r),
            Err(e) => bad.push(e.to_string()),
        }
    }
    if !bad.is_empty() {
        return Err(TransferError::InvalidArtifacts(bad));
    }
    Ok(refs)
}

/// The limit of one export (ACR's per-run limit unless raised), applied to
/// the requests as resolved: a set's patterns expanded, referrers not counted.
pub fn check_limit(requests: &[ExportRequest], max: usize, from_set: bool) -> Result<()> {
    if requests.is_empty() {
        return Err(TransferError::NoArtifacts);
    }
    if requests.len() > max {
        return Err(TransferError::TooManyArtifacts { given: requests.len(), limit: max, from_set });
    }
    Ok(())
}

/// Export in three phases: resolve (the artifacts and what refers to them),
/// plan (the catalog, every blob once), write (the planned entries, streamed
/// into the destination, committed at the end).
pub async fn export(
    sources: &Sources,
    requests: Vec<ExportRequest>,
    dest: &dyn BlobStore,
    opts: &ExportOptions,
    reporter: &dyn Reporter,
) -> Result<ExportReport> {
    check_limit(&requests, opts.max_artifacts, false)?;
    // A stream (`-`) holds no earlier bundle to protect.
    let existing = dest.info().await?.filter(|i| i.size != crate::store::UNKNOWN_SIZE);
    if !opts.overwrite && existing.is_some() {
        return Err(TransferError::Exists(dest.display()));
    }
    let (plan, mut outcomes) = resolve_and_plan(sources, requests, opts, reporter).await?;
    outcomes.extend(plan.succeeded.iter().cloned());
    let (catalog_digest, size) = write::write_phase(sources, &plan, dest, opts, reporter).await?;
    Ok(ExportReport {
        catalog_digest,
        bundle: dest.display(),
        size,
        blobs: plan.catalog.blobs.len(),
        blob_bytes: plan.catalog.blob_bytes(),
        artifacts: outcomes,
        delta: DeltaSummary::of(&plan.catalog),
        artifacts_in_bundle: plan.catalog.artifacts.len(),
        catalog_json: plan.catalog.to_json(),
    })
}

/// What an export of `requests` would carry, resolved and planned, nothing written.
pub async fn dry_run(
    sources: &Sources,
    requests: Vec<ExportRequest>,
    opts: &ExportOptions,
    reporter: &dyn Reporter,
) -> Result<ExportPlan> {
    check_limit(&requests, opts.max_artifacts, false)?;
    let (plan, failed) = resolve_and_plan(sources, requests, opts, reporter).await?;
    Ok(plan.summary(failed))
}

/// Resolve every request (each registry's at once, side by side) and plan
/// the bundle; the failures that ContinueOnErrors skipped come back as outcomes.
async fn resolve_and_plan(
    sources: &Sources,
    requests: Vec<ExportRequest>,
    opts: &ExportOptions,
    reporter: &dyn Reporter,
) -> Result<(Plan, Vec<ArtifactOutcome>)> {
    let mut by_registry: BTreeMap<String, Vec<ExportRequest>> = BTreeMap::new();
    for r in requests {
        by_registry.entry(r.registry.clone()).or_default().push(r);
    }
    reporter.start("resolving artifacts", None);
    let groups = by_registry.into_iter().map(|(key, reqs)| async move {
        let registry = sources.get(&key)?;
        Ok::<_, TransferError>(resolve_phase(registry.as_ref(), &key, reqs, opts).await)
    });
    let mut results = Vec::new();
    for group in futures::future::join_all(groups).await {
        results.extend(group?);
    }
    reporter.finish();
    let (resolved, outcomes) = keep_resolved(results, opts.continue_on_errors, reporter)?;
    let mut plan = Plan::new(resolved)?;
    if let Some(base) = &opts.delta {
        // Omitted blobs leave `catalog.blobs`, so nothing is fetched or written for them.
        plan.catalog = plan.catalog.omit(base.against.clone(), &base.held);
    }
    Ok((plan, outcomes))
}

/// Resolve the requested artifacts of one registry and, where asked, what
/// refers to them; the tag listings (for cosign's tags and the tag schema)
/// go on while the artifacts resolve.
async fn resolve_phase(
    registry: &dyn Registry,
    key: &str,
    requests: Vec<ExportRequest>,
    opts: &ExportOptions,
) -> Vec<(String, Result<Resolved>)> {
    let look =
        Look { concurrency: opts.concurrency.max(1), check_blobs: opts.continue_on_errors, referrers: opts.referrers };
    let any_referrers = opts.referrers && requests.iter().any(|r| r.referrers);
    let repos: BTreeSet<String> =
        requests.iter().filter(|r| r.referrers).map(|r| r.reference.repository().to_string()).collect();
    let tag_lists = async {
        if !any_referrers {
            return HashMap::new();
        }
        stream::iter(repos)
            .map(|repo| async move {
                let tags = registry.tags(&repo).await.unwrap_or_default().into_iter().collect();
                (repo, tags)
            })
            .buffer_unordered(look.concurrency)
            .collect::<HashMap<String, HashSet<String>>>()
            .await
    };
    let (mut results, tags) = tokio::join!(resolve_all(registry, key, requests, look), tag_lists);
    if any_referrers {
        let found = find_referrers(registry, key, &results, &tags, look).await;
        results.extend(found);
    }
    results
}

/// The artifacts that resolved, and an outcome for each that did not. The
/// first failure ends the export unless ContinueOnErrors; when nothing
/// resolved, the first failure is the error, its kind kept.
fn keep_resolved(
    results: Vec<(String, Result<Resolved>)>,
    continue_on_errors: bool,
    reporter: &dyn Reporter,
) -> Result<(Vec<Resolved>, Vec<ArtifactOutcome>)> {
    let mut outcomes = Vec::new();
    let mut resolved = Vec::new();
    let mut first_error = None;
    for (request, r) in results {
        match r {
            Ok(res) => resolved.push(res),
            Err(e) => {
                let e = e.for_artifact(&request);
                if !continue_on_errors {
                    return Err(e);
                }
                reporter.note(&format!("skipping: {e}"));
                outcomes.push(ArtifactOutcome::failed(&request, &e));
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(first) if resolved.is_empty() => Err(TransferError::NothingExported(Box::new(first))),
        _ => Ok((resolved, outcomes)),
    }
}

/// What the bundle will hold: the catalog, the manifests (held whole), and
/// the repository to read every other blob from.
struct Plan {
    catalog: Catalog,
    manifests: BTreeMap<Digest, RawManifest>,
    /// Where to read each config and layer: the registry's key and the repository.
    sources: BTreeMap<Digest, (String, String)>,
    succeeded: Vec<ArtifactOutcome>,
}

impl Plan {
    /// Gather every blob once, remembering where to read it and what it is.
    /// Two artifacts that would share a name in the bundle but differ are refused.
    fn new(resolved: Vec<Resolved>) -> Result<Plan> {
        let mut names: BTreeMap<String, &Resolved> = BTreeMap::new();
        for r in &resolved {
            let name = r.artifact.ref_name();
            if let Some(first) = names.get(&name) {
                if first.artifact.digest != r.artifact.digest {
                    return Err(TransferError::SameName {
                        name,
                        first: first.request.clone(),
                        second: r.request.clone(),
                    });
                }
            }
            names.entry(name).or_insert(r);
        }
        let mut manifests: BTreeMap<Digest, RawManifest> = BTreeMap::new();
        let mut sources: BTreeMap<Digest, (String, String)> = BTreeMap::new();
        let mut blobs = Vec::new();
        let registries: BTreeSet<&str> = resolved.iter().map(|r| r.registry.as_str()).collect();
        let source_registry = registries.into_iter().collect::<Vec<_>>().join(", ");
        for r in &resolved {
            for m in &r.manifests {
                blobs.push(Blob {
                    digest: m.digest.clone(),
                    size: m.bytes.len() as u64,
                    media_type: m.media_type.clone(),
                    kind: BlobKind::Manifest,
                });
                manifests.entry(m.digest.clone()).or_insert_with(|| m.clone());
            }
            for (b, repo) in &r.blobs {
                blobs.push(b.clone());
                sources.entry(b.digest.clone()).or_insert_with(|| (r.registry.clone(), repo.clone()));
            }
        }
        let created =
            resolved.iter().filter_map(|r| r.created.clone()).max().unwrap_or_else(|| "1970-01-01T00:00:00Z".into());
        let succeeded = resolved
            .iter()
            .map(|r| ArtifactOutcome::done(r.request.clone(), r.artifact.digest.clone(), Status::Succeeded))
            .collect();
        let catalog = Catalog::new(
            concat!("barge ", env!("CARGO_PKG_VERSION")),
            &created,
            &source_registry,
            resolved.into_iter().map(|r| r.artifact).collect(),
            blobs,
        );
        Ok(Plan { catalog, manifests, sources, succeeded })
    }

    /// What the bundle would hold, for a dry run.
    fn summary(&self, failed: Vec<ArtifactOutcome>) -> ExportPlan {
        let c = &self.catalog;
        // An artifact's bytes count what a delta leaves out too: it is still what the artifact is.
        let omitted = c.omitted().iter().map(|o| &o.blob);
        let sizes: BTreeMap<&Digest, u64> = c.blobs.iter().chain(omitted).map(|b| (&b.digest, b.size)).collect();
        let mut users: BTreeMap<&Digest, Vec<String>> = BTreeMap::new();
        let artifacts = c
            .artifacts
            .iter()
            .map(|a| {
                let mine: BTreeSet<&Digest> = a.manifests.iter().chain(&a.blobs).collect();
                for d in &mine {
                    users.entry(d).or_default().push(a.ref_name());
                }
                PlannedArtifact {
                    request: a.request.clone(),
                    registry: a.registry.clone(),
                    reference: a.ref_name(),
                    digest: a.digest.clone(),
                    media_type: a.media_type.clone(),
                    platforms: a.platforms.clone(),
                    blobs: mine.len(),
                    bytes: mine.iter().map(|d| sizes[d]).sum(),
                }
            })
            .collect();
        let shared_blobs: Vec<SharedBlob> = users
            .into_iter()
            .filter(|(_, u)| u.len() > 1)
            .map(|(d, used_by)| SharedBlob { digest: d.clone(), size: sizes[d], used_by })
            .collect();
        let mut source_registries: Vec<String> = c.artifacts.iter().filter_map(|a| a.registry.clone()).collect();
        source_registries.sort();
        source_registries.dedup();
        ExportPlan {
            artifacts,
            blobs: c.blobs.len(),
            blob_bytes: c.blob_bytes(),
            shared_bytes: shared_blobs.iter().map(|b| b.size).sum(),
            shared_blobs,
            source_registries,
            failed,
            delta: DeltaSummary::of(c),
        }
    }
}

/// How resolution looks at each artifact.
#[derive(Debug, Clone, Copy)]
struct Look {
    concurrency: usize,
    /// Confirm every blob is there (HEAD), so ContinueOnErrors can skip a broken artifact.
    check_blobs: bool,
    /// Ask the Referrers API about every manifest.
    referrers: bool,
}

/// Resolve requests concurrently, keeping their order.
async fn resolve_all(
    registry: &dyn Registry,
    key: &str,
    requests: Vec<ExportRequest>,
    look: Look,
) -> Vec<(String, Result<Resolved>)> {
    stream::iter(requests)
        .map(|r| async move {
            let res = resolve(registry, key, &r, look).await;
            (r.request, res)
        })
        .buffered(look.concurrency)
        .collect()
        .await
}

/// What each request reaches, walked as export walks (every platform its
/// request selects, no referrers, no blob checked): its repository, and its
/// manifests and its configs and layers; in request order. For `inventory`.
pub(crate) async fn reach(
    registry: &dyn Registry,
    key: &str,
    requests: Vec<ExportRequest>,
    concurrency: usize,
) -> Vec<(String, Result<(Vec<Digest>, Vec<Digest>)>)> {
    let look = Look { concurrency: concurrency.max(1), check_blobs: false, referrers: false };
    let repos: Vec<String> = requests.iter().map(|r| r.reference.repository().to_string()).collect();
    let resolved = resolve_all(registry, key, requests, look).await;
    repos
        .into_iter()
        .zip(resolved)
        .map(|(repo, (_, r))| (repo, r.map(|r| (r.artifact.manifests, r.artifact.blobs))))
        .collect()
}

/// What refers to the resolved artifacts, resolved in turn: cosign's
/// `sha256-<hex>.sig/.att/.sbom` tags and the `sha256-<hex>` tag-schema index
/// (from the tag listings), and what the Referrers API listed during
/// resolution, except for subjects whose tag-schema index already brings
/// them. Best effort: a registry that will not list is skipped.
async fn find_referrers(
    registry: &dyn Registry,
    key: &str,
    resolved: &[(String, Result<Resolved>)],
    tags: &HashMap<String, HashSet<String>>,
    look: Look,
) -> Vec<(String, Result<Resolved>)> {
    let all: Vec<&Resolved> = resolved.iter().filter_map(|(_, r)| r.as_ref().ok()).collect();
    let mut known: HashSet<Digest> = all.iter().flat_map(|r| r.artifact.manifests.iter().cloned()).collect();
    let ok: Vec<&Resolved> = all.into_iter().filter(|r| r.referrers).collect();
    // A referrer is named as its subject was: in full when the subject was.
    let request = |parent: &Resolved, reference: Reference| ExportRequest {
        request: match parent.request.starts_with(&format!("{key}/")) {
            true => format!("{key}/{reference}"),
            false => reference.to_string(),
        },
        registry: key.to_string(),
        reference,
        platforms: Vec::new(),
        referrers: false,
    };
    let mut wanted = HashSet::new();
    let (mut by_tag, mut by_api) = (Vec::new(), Vec::new());
    let none = HashSet::new();
    for r in &ok {
        let repo = r.artifact.repository.as_str();
        let repo_tags = tags.get(repo).unwrap_or(&none);
        for d in &r.artifact.manifests {
            let base = format!("{}-{}", d.algorithm().name(), d.hex());
            for suffix in ["", ".sig", ".att", ".sbom"] {
                let tag = format!("{base}{suffix}");
                if repo_tags.contains(&tag) && wanted.insert(format!("{repo}:{tag}")) {
                    if let Ok(reference) = Reference::from_parts(repo, Some(&tag), None) {
                        by_tag.push(request(r, reference));
                    }
                }
            }
        }
        for (subject, descs) in &r.api_referrers {
            let schema_tag = format!("{}-{}", subject.algorithm().name(), subject.hex());
            if repo_tags.contains(&schema_tag) {
                continue; // the tag-schema index, travelling by tag, names these already
            }
            for desc in descs {
                if known.insert(desc.digest.clone()) {
                    if let Ok(reference) = Reference::from_parts(repo, None, Some(desc.digest.clone())) {
                        by_api.push(request(r, reference));
                    }
                }
            }
        }
    }
    let look = Look { referrers: false, ..look };
    // Referrers travel whole: an index among them lists referrers, not platforms.
    let (mut found, api) =
        tokio::join!(resolve_all(registry, key, by_tag, look), resolve_all(registry, key, by_api, look));
    found.extend(api);
    found
}

/// Resolve one artifact: fetch its manifests (an index with every child the
/// request's platform selection keeps) and list its blobs. With `check_blobs`,
/// every blob is confirmed present (HEAD) so that a broken artifact fails here,
/// where ContinueOnErrors can skip it, rather than in the middle of writing
/// the bundle.
async fn resolve(registry: &dyn Registry, key: &str, req: &ExportRequest, look: Look) -> Result<Resolved> {
    let (request, r, platforms) = (req.request.as_str(), &req.reference, req.platforms.as_slice());
    let repo = r.repository();
    let root = registry.manifest(repo, Target::of(r)).await?;
    let mut manifests = Vec::new();
    let mut blobs: Vec<(Blob, String)> = Vec::new();
    let mut seen = HashSet::new();
    let walked = Walked { manifests: &mut manifests, blobs: &mut blobs, seen: &mut seen };
    walk(registry, repo, root.clone(), 0, platforms, walked).await?;
    let present: Vec<Result<bool>> = match look.check_blobs {
        true => stream::iter(&blobs).map(|(b, _)| registry.has_blob(repo, &b.digest)).buffered(8).collect().await,
        false => Vec::new(),
    };
    for ((b, _), has) in blobs.iter().zip(present) {
        if !has? {
            return Err(TransferError::NotFound(format!("blob {} in {}/{repo}", b.digest, registry.name())));
        }
    }
    let created = annotation(&root.bytes, "org.opencontainers.image.created");
    let artifact = Artifact {
        request: request.to_string(),
        registry: Some(key.to_string()),
        repository: repo.to_string(),
        tag: r.tag().map(str::to_string),
        digest: root.digest.clone(),
        media_type: root.media_type.clone(),
        size: root.bytes.len() as u64,
        manifests: manifests.iter().map(|m| m.digest.clone()).collect(),
        blobs: blobs.iter().map(|(b, _)| b.digest.clone()).collect(),
        // A sparse index says which platforms it carries; an image is whole whatever the selection.
        platforms: match oci::is_index_type(&root.media_type) {
            true => platforms.iter().map(Platform::to_string).collect(),
            false => Vec::new(),
        },
    };
    let api_referrers = match look.referrers && req.referrers {
        true => {
            stream::iter(&artifact.manifests)
                .map(|d| async move { (d.clone(), registry.referrers(repo, d).await.unwrap_or_default()) })
                .buffered(look.concurrency)
                .collect()
                .await
        }
        false => Vec::new(),
    };
    Ok(Resolved {
        request: request.to_string(),
        registry: key.to_string(),
        referrers: req.referrers,
        artifact,
        manifests,
        blobs,
        created,
        api_referrers,
    })
}

/// What a walk gathers: the manifests in push order, the configs and layers
/// (with the repository to read each from), the manifests seen.
struct Walked<'a> {
    manifests: &'a mut Vec<RawManifest>,
    blobs: &'a mut Vec<(Blob, String)>,
    seen: &'a mut HashSet<Digest>,
}

/// Post-order walk: children are pushed before the index that lists them. At
/// every index only the children `platforms` selects are walked; a selection
/// that keeps none of an index's platforms is an error naming those it has.
fn walk<'a>(
    registry: &'a dyn Registry,
    repo: &'a str,
    m: RawManifest,
    depth: usize,
    platforms: &'a [Platform],
    out: Walked<'a>,
) -> futures::future::BoxFuture<'a, Result<()>> {
    Box::pin(async move {
        let Walked { manifests, blobs, seen } = out;
        if !seen.insert(m.digest.clone()) {
            return Ok(());
        }
        let refs = oci::parse_refs(&m.media_type, &m.bytes).map_err(|e| TransferError::InvalidManifest {
            what: format!("manifest {} in {repo}", m.digest),
            why: e.to_string(),
        })?;
        match refs {
            Refs::Image { config, layers } => {
                let mut add = |d: &oci::Descriptor, kind| {
                    if !blobs.iter().any(|(b, _)| b.digest == d.digest) {
                        blobs.push((
                            Blob { digest: d.digest.clone(), size: d.size, media_type: d.media_type.clone(), kind },
                            repo.to_string(),
                        ));
                    }
                };
                add(&config, BlobKind::Config);
                for l in &layers {
                    add(l, BlobKind::Layer);
                }
            }
            Refs::Index { manifests: children } => {
                if depth >= MAX_DEPTH {
                    return Err(TransferError::IndexTooDeep {
                        index: format!("{} in {repo}", m.digest),
                        limit: MAX_DEPTH,
                    });
                }
                if let Some(has) = unmatched(&children, platforms) {
                    return Err(TransferError::NoPlatform {
                        index: format!("{} in {repo}", m.digest),
                        wanted: platforms.iter().map(Platform::to_string).collect::<Vec<_>>().join(", "),
                        has: has.join(", "),
                    });
                }
                for c in select_children(&children, platforms) {
                    let child = registry.manifest(repo, Target::Digest(&c.digest)).await?;
                    if child.bytes.len() as u64 != c.size {
                        return Err(TransferError::WrongSize {
                            what: format!("manifest {} (listed in index {} in {repo})", c.digest, m.digest),
                            expected: c.size,
                            actual: child.bytes.len() as u64,
                        });
                    }
                    let walked = Walked { manifests: &mut *manifests, blobs: &mut *blobs, seen: &mut *seen };
                    walk(registry, repo, child, depth + 1, platforms, walked).await?;
                }
            }
        }
        manifests.push(m);
        Ok(())
    })
}

fn annotation(bytes: &[u8], key: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    v.get("annotations")?.get(key)?.as_str().map(str::to_string)
}
