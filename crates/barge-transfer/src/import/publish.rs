//! Import's last phase: per artifact its manifests, children first, then its tag; artifacts side by side.
//!
//! An artifact that carries only some platforms of its index (a sparse index)
//! is pushed as it is ([`PlatformIndex::Sparse`]), or as a new index of just
//! those platforms ([`PlatformIndex::Rewrite`]).

use std::collections::{BTreeMap, HashMap};

use barge_bundle::oci::{self, Refs};
use barge_bundle::platform::select_children;
use barge_bundle::{Artifact, Catalog, Digest, Platform};
use futures::stream::{self, StreamExt};

use super::preflight::Plan;
use super::{corrupt, ImportOptions, ImportReport};
use crate::outcome::{ArtifactOutcome, Status};
use crate::registry::{RawManifest, Registry};
use crate::{Result, TransferError};

/// How an artifact that carries only some platforms of its index is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PlatformIndex {
    /// The index as the bundle has it (its digest and signatures stay valid);
    /// a registry that wants every child of an index refuses it.
    #[default]
    Sparse,
    /// A new index of just the carried platforms (nested indexes too), pushed
    /// after its children and tagged: a new digest, reported as such.
    Rewrite,
}

/// What one artifact's publication wrote.
struct Published {
    manifests: usize,
    /// The digest the tag now names: the artifact's own, or its rewritten index's.
    root: Digest,
}

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
    let pending: Vec<(usize, &Artifact)> =
        catalog.artifacts.iter().enumerate().filter(|(i, _)| plan.settled[*i].is_none()).collect();
    let published: Vec<(usize, &Artifact, Result<Published>)> = stream::iter(pending)
        .map(|(i, a)| async move { (i, a, publish_one(registry, a, manifests, opts).await) })
        .buffer_unordered(opts.concurrency.max(1))
        .collect()
        .await;
    for (i, a, r) in published {
        match r {
            Ok(p) => {
                report.manifests_pushed += p.manifests;
                let mut outcome = ArtifactOutcome::done(a.ref_name(), p.root.clone(), Status::Succeeded);
                outcome.rewritten_from = (p.root != a.digest).then(|| a.digest.clone());
                outcomes.insert(i, outcome);
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

/// One artifact's manifests, children first, then its tag. The reader has
/// checked that the catalog's list is exactly what the manifests name.
async fn publish_one(
    registry: &dyn Registry,
    a: &Artifact,
    manifests: &BTreeMap<Digest, RawManifest>,
    opts: &ImportOptions,
) -> Result<Published> {
    let get = |d: &Digest| manifests.get(d).ok_or_else(|| corrupt("an artifact whose manifest was not read"));
    let sparse = !a.platforms.is_empty();
    let list: Vec<RawManifest> = match (sparse, opts.platform_index) {
        (true, PlatformIndex::Rewrite) => rewrite(a, &get)?,
        _ => a.manifests.iter().map(|d| get(d).cloned()).collect::<Result<_>>()?,
    };
    let Some((root, children)) = list.split_last() else {
        return Err(corrupt("an artifact without manifests"));
    };
    let refused = |m: &RawManifest, e: TransferError| match e {
        TransferError::ManifestBlobUnknown { host, .. } if sparse && oci::is_index_type(&m.media_type) => {
            TransferError::SparseIndexRefused { host, index: format!("{}@{}", a.repository, m.digest) }
        }
        e => e,
    };
    for m in children {
        registry.push_manifest(&a.repository, m).await.map_err(|e| refused(m, e))?;
    }
    registry.set_tag(&a.repository, a.tag.as_deref(), root, opts.overwrite_tags).await.map_err(|e| refused(root, e))?;
    Ok(Published { manifests: list.len(), root: root.digest.clone() })
}

/// A sparse artifact's manifests in push order, each index rewritten to list
/// only the children its platforms select (a nested index's descriptor
/// updated to its rewritten form); everything else in each index is kept.
fn rewrite<'a>(a: &Artifact, get: &dyn Fn(&Digest) -> Result<&'a RawManifest>) -> Result<Vec<RawManifest>> {
    let selected = a
        .platforms
        .iter()
        .map(|p| p.parse::<Platform>())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| corrupt(&format!("an artifact whose platforms do not parse ({e})")))?;
    let mut rewritten: HashMap<Digest, RawManifest> = HashMap::new();
    let mut out = Vec::new();
    for d in &a.manifests {
        let m = get(d)?;
        let Ok(Refs::Index { manifests: children }) = oci::parse_refs(&m.media_type, &m.bytes) else {
            out.push(m.clone());
            continue;
        };
        let kept = select_children(&children, &selected);
        let mut doc: serde_json::Value =
            serde_json::from_slice(&m.bytes).map_err(|_| corrupt("an index that is not JSON"))?;
        let entries = doc.get("manifests").and_then(|v| v.as_array()).cloned().unwrap_or_default();
        let mut changed = kept.len() != children.len();
        let mut list = Vec::new();
        for (c, mut entry) in children.iter().zip(entries) {
            if !kept.iter().any(|k| std::ptr::eq(*k, c)) {
                continue;
            }
            if let Some(new) = rewritten.get(&c.digest) {
                entry["digest"] = serde_json::json!(new.digest);
                entry["size"] = serde_json::json!(new.bytes.len());
                changed = true;
            }
            list.push(entry);
        }
        if !changed {
            out.push(m.clone());
            continue;
        }
        doc["manifests"] = serde_json::Value::Array(list);
        let bytes = serde_json::to_vec(&doc).expect("an index serializes");
        let new = RawManifest { media_type: m.media_type.clone(), digest: Digest::sha256_of(&bytes), bytes };
        rewritten.insert(d.clone(), new.clone());
        out.push(new);
    }
    Ok(out)
}
