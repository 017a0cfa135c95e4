//! The barge catalog (`barge-catalog.json`) and the bundle's entry plan derived from it.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::oci::{Descriptor, Index, REF_NAME};
use crate::{BundleError, Digest, Platform};

pub const CATALOG_NAME: &str = "barge-catalog.json";
pub const OCI_LAYOUT_NAME: &str = "oci-layout";
pub const INDEX_NAME: &str = "index.json";
pub const OCI_LAYOUT_JSON: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
/// The newest catalog version this barge reads and writes: 2 when some
/// artifact is a sparse index (it lists `platforms`), else 1, so that bundles
/// of whole artifacts stay readable by a barge that knows only version 1.
pub const FORMAT_VERSION: u32 = 3;
/// The version of a catalog that lists platforms (a sparse index) but no delta.
pub const FORMAT_VERSION_SPARSE: u32 = 2;
/// The version of a catalog whose artifacts are all whole.
pub const FORMAT_VERSION_WHOLE: u32 = 1;

/// What a blob is to the artifacts that use it; it decides the blob's place in the bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobKind {
    Manifest,
    Config,
    Layer,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Blob {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
    pub kind: BlobKind,
}

/// One exported artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Artifact {
    /// The artifact as the user wrote it.
    pub request: String,
    /// The registry it was exported from (`docker.io`, `127.0.0.1:5000`);
    /// absent in bundles written before barge recorded it per artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
    /// The repository path within that registry; import writes the artifact
    /// there (or where `--prefix`/`--map` place it).
    pub repository: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    /// Every manifest the artifact brings, in push order: children before the
    /// index that lists them; the artifact's own manifest is last.
    pub manifests: Vec<Digest>,
    /// Every config and layer its manifests name.
    pub blobs: Vec<Digest>,
    /// The platforms selected from a multi-platform index (`os/arch[/variant]`);
    /// empty means all. When set, the index travels unchanged but only the
    /// children of these platforms (a sparse index).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<String>,
}

impl Artifact {
    /// The name it has in the bundle's `index.json`: `repo:tag`, or `repo@digest` without a tag.
    pub fn ref_name(&self) -> String {
        match &self.tag {
            Some(t) => format!("{}:{t}", self.repository),
            None => format!("{}@{}", self.repository, self.digest),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Catalog {
    pub format_version: u32,
    pub tool: String,
    /// RFC 3339; taken from the images, never the clock, so re-exports are identical.
    pub created: String,
    pub source_registry: String,
    pub artifacts: Vec<Artifact>,
    /// Every blob in the bundle, in bundle order.
    pub blobs: Vec<Blob>,
    /// Present in a delta bundle (version 3): what it was cut against and the
    /// configs and layers it leaves out because the far side holds them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<Delta>,
}

/// A delta bundle's dependencies: the blobs it leaves out, and what said the
/// far side holds them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delta {
    pub against: Against,
    /// Configs and layers the artifacts use that the bundle does not carry,
    /// ordered as `blobs` would be (configs, then layers, each by digest).
    pub omitted: Vec<Omitted>,
}

/// What a delta was cut against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Against {
    pub kind: AgainstKind,
    /// For an inventory, the sha256 of its file; for a bundle, the sha256 of
    /// its `barge-catalog.json` (the same whether the bundle or only its
    /// catalog, from `barge inspect --catalog`, was given).
    pub digest: Digest,
    /// An inventory's registry and the time it was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taken: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgainstKind {
    Inventory,
    Bundle,
}

/// A blob a delta leaves out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Omitted {
    #[serde(flatten)]
    pub blob: Blob,
    /// A repository of the far side that holds it (from an inventory), to
    /// mount it from when the artifact's own repository lacks it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
}

/// One entry of a bundle, in the order it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Planned {
    Dir(String),
    File {
        name: &'static str,
        bytes: Vec<u8>,
    },
    /// `catalog.blobs[i]`.
    Blob(usize),
}

impl Catalog {
    /// Build a catalog in canonical form: artifacts sorted by name (deduplicated),
    /// each one's platforms sorted and deduplicated (written as [`Platform`]
    /// displays them), blobs deduplicated and ordered manifests, configs,
    /// layers, each by digest; version 2 only when some artifact lists platforms.
    pub fn new(
        tool: &str,
        created: &str,
        source_registry: &str,
        mut artifacts: Vec<Artifact>,
        blobs: Vec<Blob>,
    ) -> Catalog {
        artifacts.sort_by_key(|a| a.ref_name());
        artifacts.dedup_by_key(|a| a.ref_name());
        for a in &mut artifacts {
            for p in &mut a.platforms {
                if let Ok(parsed) = p.parse::<Platform>() {
                    *p = parsed.to_string();
                }
            }
            a.platforms.sort();
            a.platforms.dedup();
        }
        let sparse = artifacts.iter().any(|a| !a.platforms.is_empty());
        let mut by_digest: BTreeMap<Digest, Blob> = BTreeMap::new();
        for b in blobs {
            by_digest
                .entry(b.digest.clone())
                .and_modify(|old| {
                    if b.kind < old.kind {
                        *old = b.clone();
                    }
                })
                .or_insert(b);
        }
        let mut blobs: Vec<Blob> = by_digest.into_values().collect();
        blobs.sort_by(|a, b| (a.kind, &a.digest).cmp(&(b.kind, &b.digest)));
        Catalog {
            format_version: if sparse { FORMAT_VERSION_SPARSE } else { FORMAT_VERSION_WHOLE },
            tool: tool.to_string(),
            created: created.to_string(),
            source_registry: source_registry.to_string(),
            artifacts,
            blobs,
            delta: None,
        }
    }

    /// This catalog as a delta: the configs and layers `held` names (digest →
    /// a repository of the far side that holds it, if known) leave the bundle
    /// and are listed as omitted; manifests always travel. Version 3. With
    /// nothing to leave out, the delta is still recorded (the bundle then
    /// depends on nothing, but says what it was cut against).
    pub fn omit(mut self, against: Against, held: &BTreeMap<Digest, Option<String>>) -> Catalog {
        let (omitted, kept): (Vec<Blob>, Vec<Blob>) =
            self.blobs.into_iter().partition(|b| b.kind != BlobKind::Manifest && held.contains_key(&b.digest));
        self.blobs = kept;
        let omitted = omitted
            .into_iter()
            .map(|blob| {
                let repository = held.get(&blob.digest).cloned().flatten();
                Omitted { blob, repository }
            })
            .collect();
        self.delta = Some(Delta { against, omitted });
        self.format_version = FORMAT_VERSION;
        self
    }

    /// The blobs a delta leaves out (none for a whole bundle).
    pub fn omitted(&self) -> &[Omitted] {
        self.delta.as_ref().map(|d| d.omitted.as_slice()).unwrap_or(&[])
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("catalog serializes");
        v.push(b'\n');
        v
    }

    /// Parse and check internal consistency: every digest an artifact names is a listed blob.
    pub fn parse(bytes: &[u8]) -> Result<Catalog, BundleError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Version {
            format_version: u32,
        }
        let v: Version =
            serde_json::from_slice(bytes).map_err(|e| BundleError::Corrupt(format!("{CATALOG_NAME}: {e}")))?;
        if v.format_version > FORMAT_VERSION {
            return Err(BundleError::UnsupportedVersion(v.format_version));
        }
        let c: Catalog =
            serde_json::from_slice(bytes).map_err(|e| BundleError::Corrupt(format!("{CATALOG_NAME}: {e}")))?;
        let mut listed = BTreeSet::new();
        for b in c.blobs.iter().chain(c.omitted().iter().map(|o| &o.blob)) {
            if !listed.insert(&b.digest) {
                return Err(BundleError::Corrupt(format!("{CATALOG_NAME} lists blob {} twice", b.digest)));
            }
        }
        check_delta(&c)?;
        // Manifests first: a reader has them all before the first config or layer.
        if c.blobs.windows(2).any(|w| w[0].kind != BlobKind::Manifest && w[1].kind == BlobKind::Manifest) {
            return Err(BundleError::Corrupt(format!("{CATALOG_NAME} lists a manifest after a config or layer")));
        }
        let mut names = BTreeSet::new();
        for a in &c.artifacts {
            if !names.insert(a.ref_name()) {
                return Err(BundleError::Corrupt(format!("{CATALOG_NAME} lists artifact {} twice", a.ref_name())));
            }
            crate::reference::check_repository(&a.repository)
                .map_err(|e| BundleError::Corrupt(format!("{CATALOG_NAME}: artifact {:?}: {e}", a.request)))?;
            if let Some(t) = &a.tag {
                crate::reference::check_tag(t).map_err(|e| BundleError::Corrupt(format!("{CATALOG_NAME}: {e}")))?;
            }
            check_platforms(a, c.format_version)?;
            if a.manifests.last() != Some(&a.digest) {
                return Err(BundleError::Corrupt(format!(
                    "{CATALOG_NAME}: artifact {} does not end its manifest list with its own digest",
                    a.ref_name()
                )));
            }
            for d in a.manifests.iter().chain(&a.blobs) {
                if !listed.contains(d) {
                    return Err(BundleError::MissingBlob { what: "artifact", owner: a.ref_name(), missing: d.clone() });
                }
            }
        }
        Ok(c)
    }

    /// The bundle's `index.json`: one descriptor per artifact, named by `ref_name`.
    pub fn index(&self) -> Index {
        let mut index = Index::empty();
        for a in &self.artifacts {
            let mut d = Descriptor::new(&a.media_type, a.digest.clone(), a.size);
            d.annotations = Some(BTreeMap::from([(REF_NAME.to_string(), a.ref_name())]));
            index.manifests.push(d);
        }
        index
    }

    pub fn index_json(&self) -> Vec<u8> {
        serde_json::to_vec(&self.index()).expect("index serializes")
    }

    /// Check that a bundle's `index.json` says what this catalog says.
    pub fn check_index(&self, index: &Index) -> Result<(), BundleError> {
        let mine = self.index();
        if mine.manifests.len() != index.manifests.len() {
            return Err(BundleError::Corrupt(format!(
                "index.json names {} artifacts, the catalog {}",
                index.manifests.len(),
                mine.manifests.len()
            )));
        }
        for (a, b) in mine.manifests.iter().zip(&index.manifests) {
            if a.digest != b.digest || a.ref_name() != b.ref_name() || a.size != b.size {
                return Err(BundleError::Corrupt(format!(
                    "index.json entry {:?} ({}) differs from the catalog's {:?} ({})",
                    b.ref_name().unwrap_or(""),
                    b.digest,
                    a.ref_name().unwrap_or(""),
                    a.digest
                )));
            }
        }
        Ok(())
    }

    /// The entries of the bundle in the order they are written.
    pub fn plan(&self) -> Vec<Planned> {
        let mut out = vec![
            Planned::File { name: OCI_LAYOUT_NAME, bytes: OCI_LAYOUT_JSON.to_vec() },
            Planned::File { name: INDEX_NAME, bytes: self.index_json() },
            Planned::File { name: CATALOG_NAME, bytes: self.to_json() },
            Planned::Dir("blobs/".into()),
        ];
        let algs: BTreeSet<_> = self.blobs.iter().map(|b| b.digest.algorithm().name()).collect();
        out.extend(algs.into_iter().map(|a| Planned::Dir(format!("blobs/{a}/"))));
        out.extend((0..self.blobs.len()).map(Planned::Blob));
        out
    }

    /// Total bytes of blob content.
    pub fn blob_bytes(&self) -> u64 {
        self.blobs.iter().map(|b| b.size).sum()
    }
}

/// A delta is only in a version-3 catalog, and leaves out only configs and layers.
fn check_delta(c: &Catalog) -> Result<(), BundleError> {
    let Some(d) = &c.delta else { return Ok(()) };
    if c.format_version < FORMAT_VERSION {
        return Err(BundleError::Corrupt(format!(
            "{CATALOG_NAME} has a delta, which formatVersion {} does not have",
            c.format_version
        )));
    }
    if let Some(o) = d.omitted.iter().find(|o| o.blob.kind == BlobKind::Manifest) {
        return Err(BundleError::Corrupt(format!(
            "{CATALOG_NAME} leaves out manifest {}; a delta carries every manifest",
            o.blob.digest
        )));
    }
    if let Some(r) =
        d.omitted.iter().filter_map(|o| o.repository.as_deref()).find(|r| crate::check_repository(r).is_err())
    {
        return Err(BundleError::Corrupt(format!("{CATALOG_NAME}: an omitted blob names repository {r:?}")));
    }
    Ok(())
}

/// An artifact's platforms parse, and only a version-2 catalog lists them
/// (an older reader would take the sparse index for a whole one).
fn check_platforms(a: &Artifact, format_version: u32) -> Result<(), BundleError> {
    if !a.platforms.is_empty() && format_version < FORMAT_VERSION_SPARSE {
        return Err(BundleError::Corrupt(format!(
            "{CATALOG_NAME}: artifact {} lists platforms, which formatVersion {format_version} does not have",
            a.ref_name()
        )));
    }
    for p in &a.platforms {
        p.parse::<Platform>()
            .map_err(|e| BundleError::Corrupt(format!("{CATALOG_NAME}: artifact {}: {e}", a.ref_name())))?;
    }
    Ok(())
}

/// Compare what a blob hashed to with what it should be.
pub fn expect_digest(expected: &Digest, actual: Digest) -> Result<(), BundleError> {
    if &actual != expected {
        return Err(BundleError::DigestMismatch { expected: expected.clone(), actual });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! Every refusal of `Catalog::parse`, each by a catalog that breaks only that rule.

    use super::Catalog;
    use crate::forge;
    use serde_json::{json, Value};

    #[test]
    fn every_catalog_rule_refuses_what_breaks_it() {
        let good: Value = serde_json::from_slice(&forge::index().catalog.to_json()).unwrap();
        type Break = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(&str, Break, &str)> = vec![
            ("newer version", Box::new(|c| c["formatVersion"] = json!(4)), "newer than this barge understands (3)"),
            (
                "delta in version 1",
                Box::new(
                    |c| c["delta"] = json!({"against": {"kind": "bundle", "digest": format!("sha256:{}", "0".repeat(64))}, "omitted": []}),
                ),
                "has a delta, which formatVersion 1 does not have",
            ),
            (
                "a manifest left out",
                Box::new(|c| {
                    let m = c["blobs"].as_array_mut().unwrap().remove(0);
                    c["formatVersion"] = json!(3);
                    c["delta"] = json!({"against": {"kind": "bundle", "digest": format!("sha256:{}", "0".repeat(64))}, "omitted": [m]});
                }),
                "a delta carries every manifest",
            ),
            (
                "a blob both carried and left out",
                Box::new(|c| {
                    let n = c["blobs"].as_array().unwrap().len();
                    let b = c["blobs"][n - 1].clone();
                    c["formatVersion"] = json!(3);
                    c["delta"] = json!({"against": {"kind": "bundle", "digest": format!("sha256:{}", "0".repeat(64))}, "omitted": [b]});
                }),
                "lists blob",
            ),
            (
                "platforms in version 1",
                Box::new(|c| c["artifacts"][1]["platforms"] = json!(["linux/amd64"])),
                "lists platforms, which formatVersion 1 does not have",
            ),
            (
                "bad platform",
                Box::new(|c| {
                    c["formatVersion"] = json!(2);
                    c["artifacts"][1]["platforms"] = json!(["linux"]);
                }),
                "artifact m/idx:v1: platform \"linux\" is not of the form os/arch[/variant]",
            ),
            (
                "blob twice",
                Box::new(|c| {
                    let b = c["blobs"][0].clone();
                    c["blobs"].as_array_mut().unwrap().push(b);
                }),
                "lists blob",
            ),
            (
                "manifest after a layer",
                Box::new(|c| {
                    let b = c["blobs"].as_array_mut().unwrap().remove(0);
                    c["blobs"].as_array_mut().unwrap().push(b);
                }),
                "manifest after a config or layer",
            ),
            (
                "artifact twice",
                Box::new(|c| {
                    let a = c["artifacts"][0].clone();
                    c["artifacts"].as_array_mut().unwrap().push(a);
                }),
                "lists artifact a/b:v1 twice",
            ),
            ("bad repository", Box::new(|c| c["artifacts"][0]["repository"] = json!("A/B")), "artifact"),
            ("bad tag", Box::new(|c| c["artifacts"][0]["tag"] = json!("-bad")), "tag"),
            (
                "own digest not last",
                Box::new(|c| c["artifacts"][1]["manifests"].as_array_mut().unwrap().reverse()),
                "does not end its manifest list",
            ),
            (
                "unlisted digest",
                Box::new(|c| {
                    c["artifacts"][0]["blobs"].as_array_mut().unwrap().push(json!(format!("sha256:{}", "1".repeat(64))))
                }),
                "which the bundle does not contain",
            ),
            ("bad digest", Box::new(|c| c["blobs"][0]["digest"] = json!("sha256:XYZ")), "barge-catalog.json"),
            ("missing field", Box::new(|c| drop(c.as_object_mut().unwrap().remove("blobs"))), "missing field"),
            ("unknown kind", Box::new(|c| c["blobs"][0]["kind"] = json!("sbom")), "unknown variant"),
        ];
        for (name, change, needle) in cases {
            let mut c = good.clone();
            change(&mut c);
            let err = Catalog::parse(&serde_json::to_vec(&c).unwrap()).expect_err(name).to_string();
            assert!(err.contains(needle), "{name}: {err:?} does not say {needle:?}");
        }
        assert!(Catalog::parse(b"not json").is_err());
        Catalog::parse(&serde_json::to_vec(&good).unwrap()).expect("the untouched catalog parses");
    }

    #[test]
    fn new_is_canonical() {
        let f = forge::index();
        let mut artifacts = f.catalog.artifacts.clone();
        artifacts.reverse();
        artifacts.push(artifacts[0].clone());
        let mut blobs = f.catalog.blobs.clone();
        blobs.reverse();
        let again = Catalog::new("test", "1970-01-01T00:00:00Z", "oci:x", artifacts, blobs);
        assert_eq!(again, f.catalog, "sorting and deduplication give the same catalog");
        assert_eq!(Catalog::parse(&again.to_json()).unwrap(), again);
        assert_eq!(again.format_version, 1, "whole artifacts only: version 1, which older barge reads");

        // Platforms sorted, deduplicated; any platform makes it version 2.
        let mut artifacts = f.catalog.artifacts.clone();
        artifacts[1].platforms = vec!["linux/arm64".into(), "linux/amd64".into(), "linux/arm64".into()];
        let sparse = Catalog::new("test", "1970-01-01T00:00:00Z", "oci:x", artifacts, f.catalog.blobs.clone());
        assert_eq!(sparse.artifacts[1].platforms, ["linux/amd64", "linux/arm64"]);
        assert_eq!(sparse.format_version, 2);
        assert_eq!(Catalog::parse(&sparse.to_json()).unwrap(), sparse);
    }
}
