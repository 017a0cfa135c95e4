//! The inventory: what a target registry holds, as a small deterministic document carried back across the gap.
//!
//! Pure. `barge inventory` takes one (from tag lists and manifests of the
//! repositories concerned); `barge export --have` leaves out the configs and
//! layers it names; `barge verify --have` checks a delta's dependencies
//! against it. Its identity is the sha256 of its file.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{BundleError, Digest};

pub const INVENTORY_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Inventory {
    pub inventory_version: u32,
    /// The registry it describes, as named when it was taken.
    pub registry: String,
    /// RFC 3339, when it was taken.
    pub taken: String,
    /// The repositories whose tags were read.
    pub repositories: Vec<String>,
    /// Every manifest (images and indexes) those tags reach, sorted.
    pub manifests: Vec<Digest>,
    /// Every config and layer those manifests name, each with the first
    /// repository (in name order) that holds it.
    pub blobs: BTreeMap<Digest, String>,
}

impl Inventory {
    /// The canonical form: repositories and manifests sorted and deduplicated.
    pub fn new(
        registry: &str,
        taken: &str,
        mut repositories: Vec<String>,
        mut manifests: Vec<Digest>,
        blobs: BTreeMap<Digest, String>,
    ) -> Inventory {
        repositories.sort();
        repositories.dedup();
        manifests.sort();
        manifests.dedup();
        Inventory {
            inventory_version: INVENTORY_VERSION,
            registry: registry.to_string(),
            taken: taken.to_string(),
            repositories,
            manifests,
            blobs,
        }
    }

    /// The file's bytes: compact JSON, one line, keys in a fixed order.
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).expect("an inventory serializes");
        v.push(b'\n');
        v
    }

    /// Parse an inventory file; its digest is the sha256 of `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<(Inventory, Digest), BundleError> {
        let bad = |why: String| BundleError::Corrupt(format!("inventory: {why}"));
        let inv: Inventory = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        if inv.inventory_version != INVENTORY_VERSION {
            return Err(bad(format!(
                "inventoryVersion {} is not {INVENTORY_VERSION}; take it again with this barge",
                inv.inventory_version
            )));
        }
        if let Some(r) = inv.blobs.values().chain(&inv.repositories).find(|r| crate::check_repository(r).is_err()) {
            return Err(bad(format!("names repository {r:?}")));
        }
        Ok((inv, Digest::sha256_of(bytes)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inventory_round_trips_and_is_identified_by_its_bytes() {
        let d = |b: &[u8]| Digest::sha256_of(b);
        let blobs = BTreeMap::from([(d(b"l1"), "a/b".to_string()), (d(b"c1"), "a/b".to_string())]);
        let inv = Inventory::new(
            "reg:5000",
            "2026-11-30T00:00:00Z",
            vec!["z".into(), "a/b".into()],
            vec![d(b"m2"), d(b"m1")],
            blobs,
        );
        let bytes = inv.to_json();
        let (back, digest) = Inventory::parse(&bytes).unwrap();
        assert_eq!(back, inv);
        assert_eq!(digest, d(&bytes));
        assert_eq!(back.repositories, ["a/b", "z"]);
        assert_eq!(bytes, back.to_json(), "deterministic");
        assert!(Inventory::parse(b"{}").is_err());
        let newer = String::from_utf8(bytes).unwrap().replace("\"inventoryVersion\":1", "\"inventoryVersion\":2");
        assert!(Inventory::parse(newer.as_bytes()).unwrap_err().to_string().contains("take it again"));
    }
}
