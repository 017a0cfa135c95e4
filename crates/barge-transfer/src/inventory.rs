//! `inventory`: what a target registry holds for some repositories, and the base a delta export is cut against.
//!
//! An inventory is taken from tag lists and manifests (each tag's manifest,
//! indexes walked as export walks them), never by crawling the registry. A
//! delta base is an inventory file or an earlier bundle (or its catalog):
//! the configs and layers the far side is known to hold.

use std::collections::{BTreeMap, BTreeSet};

use barge_bundle::catalog::{Against, AgainstKind};
use barge_bundle::{BlobKind, Catalog, Digest, Inventory, Reference};
use futures::stream::{self, StreamExt};
use tokio::io::AsyncReadExt;

use crate::set::ExportRequest;
use crate::store::{BlobStore, UNKNOWN_SIZE};
use crate::{Registry, Result, TransferError};

/// The largest catalog (or inventory) read whole.
const MAX_DOCUMENT: u64 = 16 << 20;

/// Take the inventory of `repositories` in `registry` (named `name`): every
/// tag's manifest, indexes walked with every platform. A repository the
/// registry does not have is empty; a tag that vanished while being read is
/// skipped; any other failure (credentials, say) is the error.
pub async fn take_inventory(
    registry: &dyn Registry,
    name: &str,
    repositories: Vec<String>,
    taken: &str,
    concurrency: usize,
) -> Result<Inventory> {
    let repositories: BTreeSet<String> = repositories.into_iter().collect();
    let concurrency = concurrency.max(1);
    let listed: Vec<Result<(String, Vec<String>)>> = stream::iter(&repositories)
        .map(|repo| async move { Ok((repo.clone(), registry.tags(repo).await?)) })
        .buffered(concurrency)
        .collect()
        .await;
    let mut requests = Vec::new();
    for l in listed {
        let (repo, mut tags) = l?;
        tags.sort();
        for tag in tags {
            // A tag barge could not name is one it could never have written.
            let Ok(reference) = Reference::from_parts(&repo, Some(&tag), None) else { continue };
            requests.push(ExportRequest {
                request: reference.to_string(),
                registry: name.to_string(),
                reference,
                platforms: Vec::new(),
                referrers: false,
            });
        }
    }
    let mut manifests = Vec::new();
    let mut blobs: BTreeMap<Digest, String> = BTreeMap::new();
    // In repository name order, so each blob keeps the first repository that holds it.
    for (repo, reached) in crate::export::reach(registry, name, requests, concurrency).await {
        match reached {
            Ok((m, b)) => {
                manifests.extend(m);
                for d in b {
                    blobs.entry(d).or_insert_with(|| repo.clone());
                }
            }
            Err(TransferError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Inventory::new(name, taken, repositories.into_iter().collect(), manifests, blobs))
}

/// What a delta export is cut against: the configs and layers the far side
/// holds (each with a repository that holds it, when an inventory says so).
#[derive(Debug, Clone)]
pub struct DeltaBase {
    pub against: Against,
    pub held: BTreeMap<Digest, Option<String>>,
}

impl DeltaBase {
    /// From an inventory file's bytes; it is identified by their sha256.
    pub fn from_inventory(bytes: &[u8]) -> Result<DeltaBase> {
        let (inv, digest) = Inventory::parse(bytes)?;
        Ok(DeltaBase {
            against: Against {
                kind: AgainstKind::Inventory,
                digest,
                registry: Some(inv.registry),
                taken: Some(inv.taken),
            },
            held: inv.blobs.into_iter().map(|(d, r)| (d, Some(r))).collect(),
        })
    }

    /// From an earlier bundle's `barge-catalog.json` bytes: the configs and
    /// layers it carried and those it relied on (a delta's omitted blobs).
    pub fn from_catalog(json: &[u8]) -> Result<DeltaBase> {
        let catalog = Catalog::parse(json)?;
        let carried = catalog.blobs.iter().filter(|b| b.kind != BlobKind::Manifest);
        let held = carried.chain(catalog.omitted().iter().map(|o| &o.blob)).map(|b| (b.digest.clone(), None)).collect();
        let against =
            Against { kind: AgainstKind::Bundle, digest: Digest::sha256_of(json), registry: None, taken: None };
        Ok(DeltaBase { against, held })
    }

    /// From an earlier bundle, or its catalog alone (as `inspect` prints it).
    pub async fn since(store: &dyn BlobStore) -> Result<DeltaBase> {
        DeltaBase::from_catalog(&earlier_catalog(store).await?)
    }
}

/// An earlier bundle's `barge-catalog.json` bytes, from the bundle or from its
/// catalog alone (as `inspect --catalog` prints it), told apart by content: a
/// catalog is JSON, a bundle a tar or zstd stream. A bundle is read only as
/// far as its head.
pub async fn earlier_catalog(store: &dyn BlobStore) -> Result<Vec<u8>> {
    let what = store.display();
    let info = store.info().await?.ok_or_else(|| TransferError::NotFound(format!("earlier bundle {what}")))?;
    if info.size != UNKNOWN_SIZE && info.size <= MAX_DOCUMENT {
        let peek = info.size.min(64);
        let mut first = Vec::new();
        store
            .read_range(0, peek, &info.etag)
            .await?
            .read_to_end(&mut first)
            .await
            .map_err(|e| TransferError::io(format!("reading {what}"), e))?;
        if first.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
            let mut json = Vec::new();
            let mut r = store.read_range(0, info.size, &info.etag).await?;
            r.read_to_end(&mut json).await.map_err(|e| TransferError::io(format!("reading {what}"), e))?;
            return Ok(json);
        }
    }
    Ok(crate::inspect::inspect(store).await?.catalog_json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use barge_bundle::catalog::Against;

    #[test]
    fn an_earlier_catalog_holds_what_it_carried_and_what_it_relied_on() {
        let (catalog, b) = barge_bundle::forge::named(&[
            ("m", BlobKind::Manifest, 10),
            ("c", BlobKind::Config, 5),
            ("l1", BlobKind::Layer, 7),
            ("l2", BlobKind::Layer, 9),
        ]);
        let (c, l2) = (b[1].clone(), b[3].clone());
        let against =
            Against { kind: AgainstKind::Bundle, digest: Digest::sha256_of(b"x"), registry: None, taken: None };
        let delta = catalog.omit(against, &BTreeMap::from([(l2.digest.clone(), None)]));
        let json = delta.to_json();
        let base = DeltaBase::from_catalog(&json).unwrap();
        assert_eq!(base.against.digest, Digest::sha256_of(&json));
        assert_eq!(base.held.len(), 3, "config, carried layer and omitted layer; never the manifest");
        assert!(base.held.contains_key(&l2.digest) && base.held.contains_key(&c.digest));
    }

    /// The size of an inventory of 1,000 artifacts of 8 blobs each (7 layers
    /// and a config), with realistic repository names: what goes on paper.
    #[test]
    fn an_inventory_of_a_thousand_artifacts_is_small() {
        let d = |s: String| Digest::sha256_of(s.as_bytes());
        let repos: Vec<String> = (0..250).map(|i| format!("platform/team-{:02}/service-{i:03}", i % 40)).collect();
        let mut manifests = Vec::new();
        let mut blobs = BTreeMap::new();
        for a in 0..1000 {
            manifests.push(d(format!("manifest {a}")));
            for b in 0..8 {
                blobs.insert(d(format!("blob {a} {b}")), repos[a % repos.len()].clone());
            }
        }
        let inv = Inventory::new("registry.example.internal:5000", "2026-11-30T12:00:00Z", repos, manifests, blobs);
        let bytes = inv.to_json();
        // About 115 bytes a blob (digest and repository), 74 a manifest: 0.9 MB, 0.37 MB gzipped.
        assert_eq!(bytes.len(), 921_889, "the inventory of 1,000 artifacts × 8 blobs");
    }
}
