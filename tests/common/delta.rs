//! Delta bundles for the import tests, cut by hand from a full bundle (what `export --have` would write): its catalog with `Catalog::omit`, the same blob bytes.

use std::collections::BTreeMap;

use barge_bundle::forge::Forged;
use barge_bundle::{Against, AgainstKind, BlobKind, Catalog, Digest};

use super::{catalog_of, entry_offset};

/// Configs and layers, each with the repository that holds it (the first by name, as an inventory says).
pub type Held = BTreeMap<Digest, Option<String>>;

/// What the target holds after importing the bundle `full`: every config and
/// layer of its artifacts, each with the first repository (by name) that has it.
pub fn held_after(full: &[u8]) -> Held {
    let catalog = catalog_of(full);
    let kind = |d: &Digest| catalog.blobs.iter().find(|b| &b.digest == d).map(|b| b.kind);
    let mut artifacts: Vec<_> = catalog.artifacts.iter().collect();
    artifacts.sort_by(|a, b| a.repository.cmp(&b.repository));
    let mut held = Held::new();
    for a in artifacts {
        for d in a.blobs.iter().filter(|d| kind(d) != Some(BlobKind::Manifest)) {
            held.entry(d.clone()).or_insert_with(|| Some(a.repository.clone()));
        }
    }
    held
}

/// The inventory a delta of these tests was cut against: `registry`, taken at a fixed time.
pub fn inventory_of(registry: &str) -> Against {
    Against {
        kind: AgainstKind::Inventory,
        digest: Digest::sha256_of(registry.as_bytes()),
        registry: Some(registry.to_string()),
        taken: Some("2026-11-30T10:00:00Z".into()),
    }
}

/// The plain bundle `full` as a delta that leaves out what `held` names; returns it and its catalog.
pub fn delta_of(full: &[u8], against: Against, held: &Held) -> (Vec<u8>, Catalog) {
    let catalog = catalog_of(full).omit(against, held);
    let blobs = catalog
        .blobs
        .iter()
        .map(|b| {
            let (at, size) = entry_offset(full, &b.digest.layout_path());
            (b.digest.clone(), full[at..at + size].to_vec())
        })
        .collect();
    let forged = Forged { catalog: catalog.clone(), blobs };
    (forged.bundle(&[]), catalog)
}
