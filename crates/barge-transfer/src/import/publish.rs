//! Import's last phase: a delta's mounts, then per artifact its manifests, children first, then its tag; artifacts side by side.
//!
//! An artifact that carries only some platforms of its index (a sparse index)
//! is pushed as it is ([`PlatformIndex::Sparse`]), or as a new index of just
//! those platforms ([`PlatformIndex::Rewrite`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use barge_bundle::oci::{self, Refs};
use barge_bundle::platform::select_children;
use barge_bundle::{Artifact, Catalog, Digest, Platform};
use futures::stream::{self, StreamExt};

use super::preflight::{Mount, Plan};
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
    let refused = mount(registry, &plan.mounts, opts, report).await?;
    let targets = &plan.targets;
    let mut pending: Vec<(usize, &Artifact)> = Vec::new();
    for (i, a) in catalog.artifacts.iter().enumerate().filter(|(i, _)| plan.settled[*i].is_none()) {
        // An artifact whose left-out blob could not be brought into its repository fails; the others go on.
        match a.blobs.iter().find_map(|d| refused.get(&(d.clone(), targets[i].clone()))) {
            Some(e) => {
                outcomes.insert(i, ArtifactOutcome::failed(&a.ref_name(), e));
            }
            None => pending.push((i, a)),
        }
    }
    let published: Vec<(usize, &Artifact, Result<Published>)> = stream::iter(pending)
        .map(|(i, a)| async move { (i, a, publish_one(registry, a, &targets[i], manifests, opts).await) })
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

/// A delta's left-out blobs into the target repositories that lack them, from
/// the repositories that hold them, each once: a mount, or where the registry
/// refuses one, a copy (checked by its upload). Without ContinueOnErrors the
/// first failure ends the import (before any manifest); with it, the failures
/// are returned by (digest, repository), for their artifacts to fail.
async fn mount(
    registry: &dyn Registry,
    mounts: &[Mount],
    opts: &ImportOptions,
    report: &mut ImportReport,
) -> Result<BTreeMap<(Digest, String), TransferError>> {
    let unique: BTreeSet<&Mount> = mounts.iter().collect();
    let done: Vec<(&Mount, Result<bool>)> = stream::iter(unique)
        .map(|m| async move {
            let r = async {
                if registry.mount_blob(&m.from, &m.to, &m.digest).await? {
                    return Ok(true);
                }
                let open = || registry.open_blob(&m.from, &m.digest, m.size);
                registry.push_blob_reopen(&m.to, &m.digest, m.size, &open).await.map(|()| false)
            };
            (m, r.await)
        })
        .buffer_unordered(opts.concurrency.max(1))
        .collect()
        .await;
    let mut refused = BTreeMap::new();
    for (m, r) in done {
        match r {
            Ok(mounted) => {
                if mounted {
                    report.blobs_mounted += 1;
                } else {
                    report.blobs_uploaded += 1;
                    report.bytes_uploaded += m.size;
                }
                if let Some(d) = report.delta.as_mut() {
                    d.mounted += 1;
                }
            }
            Err(e) if opts.continue_on_errors => {
                refused.insert((m.digest.clone(), m.to.clone()), e);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(refused)
}

/// One artifact's manifests, children first, then its tag, in the target
/// repository `repo`. The reader has checked that the catalog's list is
/// exactly what the manifests name.
async fn publish_one(
    registry: &dyn Registry,
    a: &Artifact,
    repo: &str,
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
            TransferError::SparseIndexRefused { host, index: format!("{repo}@{}", m.digest) }
        }
        e => e,
    };
    for m in children {
        registry.push_manifest(repo, m).await.map_err(|e| refused(m, e))?;
    }
    registry.set_tag(repo, a.tag.as_deref(), root, opts.overwrite_tags).await.map_err(|e| refused(root, e))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use barge_bundle::oci::{OCI_INDEX, OCI_MANIFEST};
    use serde_json::json;

    fn raw(media_type: &str, v: serde_json::Value) -> RawManifest {
        let bytes = serde_json::to_vec(&v).unwrap();
        RawManifest { media_type: media_type.into(), digest: Digest::sha256_of(&bytes), bytes }
    }

    fn desc(m: &RawManifest, platform: Option<serde_json::Value>) -> serde_json::Value {
        let mut d = json!({"mediaType": m.media_type, "digest": m.digest, "size": m.bytes.len()});
        if let Some(p) = platform {
            d["platform"] = p;
        }
        d
    }

    /// A nested index is rewritten first and its parent names the new one;
    /// what the selection keeps, and every other field, stays as it was.
    #[test]
    fn rewrite_filters_every_index_children_first() {
        let image = |arch: &str| raw(OCI_MANIFEST, json!({"mediaType": OCI_MANIFEST, "arch": arch}));
        let (amd, arm, plain) = (image("amd64"), image("arm64"), image("none"));
        let index = |children: Vec<serde_json::Value>| {
            raw(
                OCI_INDEX,
                json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children, "annotations": {"k": "v"}}),
            )
        };
        let inner = index(vec![
            desc(&amd, Some(json!({"os": "linux", "architecture": "amd64"}))),
            desc(&arm, Some(json!({"os": "linux", "architecture": "arm64"}))),
        ]);
        let outer = index(vec![desc(&inner, None), desc(&plain, None)]);
        let all: BTreeMap<Digest, RawManifest> =
            [&amd, &arm, &plain, &inner, &outer].into_iter().map(|m| (m.digest.clone(), m.clone())).collect();
        let a = Artifact {
            request: "m/idx:v1".into(),
            registry: None,
            repository: "m/idx".into(),
            tag: Some("v1".into()),
            digest: outer.digest.clone(),
            media_type: OCI_INDEX.into(),
            size: outer.bytes.len() as u64,
            manifests: [&arm, &inner, &plain, &outer].iter().map(|m| m.digest.clone()).collect(),
            blobs: Vec::new(),
            platforms: vec!["linux/arm64".into()],
        };
        let get = |d: &Digest| all.get(d).ok_or_else(|| corrupt("unknown"));
        let out = rewrite(&a, &get).unwrap();
        assert_eq!(out.len(), 4);
        assert_eq!((&out[0], &out[2]), (&arm, &plain), "images are pushed as they are");
        let doc = |m: &RawManifest| serde_json::from_slice::<serde_json::Value>(&m.bytes).unwrap();
        let new_inner = doc(&out[1]);
        assert_eq!(new_inner["manifests"], json!([desc(&arm, Some(json!({"os": "linux", "architecture": "arm64"})))]));
        assert_eq!(new_inner["annotations"], json!({"k": "v"}));
        assert_eq!(out[1].digest, Digest::sha256_of(&out[1].bytes));
        assert_eq!(doc(&out[3])["manifests"], json!([desc(&out[1], None), desc(&plain, None)]));
        assert_ne!(out[3].digest, outer.digest);

        // Nothing left out: nothing rewritten.
        let whole = Artifact { platforms: vec!["linux/amd64".into(), "linux/arm64".into()], ..a.clone() };
        let mut with_amd = whole.manifests.clone();
        with_amd.insert(0, amd.digest.clone());
        let whole = Artifact { manifests: with_amd, ..whole };
        let out = rewrite(&whole, &get).unwrap();
        assert_eq!(out.last(), Some(&outer));
    }
}
