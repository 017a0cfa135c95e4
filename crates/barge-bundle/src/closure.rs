//! The closure rule: what each artifact brings is derived from its manifests, and the catalog must say exactly that.
//!
//! Pure. [`check`] runs once every manifest of the bundle has been read and
//! hashed (manifests come first in a bundle), before any config or layer, so a
//! catalog that lies about an artifact is refused before an importer writes.
//!
//! An artifact that lists platforms (a sparse index) is walked through
//! [`select_children`] at every index: the children it leaves out are neither
//! required nor allowed among the artifact's manifests.

use std::collections::{BTreeSet, HashMap};

use crate::catalog::{Artifact, Blob, BlobKind, Catalog};
use crate::oci::{Descriptor, Refs};
use crate::platform::select_children;
use crate::{BundleError, Digest, Platform};

/// How deep indexes may nest (an index of indexes of manifests is 2).
const MAX_DEPTH: usize = 8;

/// What one artifact's manifests name, derived by walking them from its root.
#[derive(Default)]
struct Derived<'a> {
    /// Manifests in push order: children before the index that lists them.
    manifests: Vec<&'a Digest>,
    /// (index, child) pairs: the child must be pushed first.
    children: Vec<(&'a Digest, &'a Digest)>,
    configs: BTreeSet<&'a Digest>,
    layers: BTreeSet<&'a Digest>,
}

/// Check every artifact of `catalog` against the manifests in `refs` (every
/// manifest-kind blob of the catalog, parsed), and every blob's kind against
/// the use the manifests make of it.
pub(crate) fn check(catalog: &Catalog, refs: &HashMap<Digest, Refs>) -> Result<(), BundleError> {
    // A delta's omitted blobs are named like carried ones: the far side holds them.
    let every = || catalog.blobs.iter().chain(catalog.omitted().iter().map(|o| &o.blob));
    let blobs: HashMap<&Digest, &Blob> = every().map(|b| (&b.digest, b)).collect();
    let walker = Walker { blobs: &blobs, refs };
    let mut used: HashMap<&Digest, BlobKind> = HashMap::new();
    for a in &catalog.artifacts {
        let root = walker.manifest_blob(&a.digest, || format!("artifact {}", a.ref_name()))?;
        if root.size != a.size || root.media_type != a.media_type {
            return Err(corrupt(format!(
                "artifact {} says {} ({} bytes), but its manifest is {} ({} bytes)",
                a.ref_name(),
                a.media_type,
                a.size,
                root.media_type,
                root.size
            )));
        }
        let selected = a
            .platforms
            .iter()
            .map(|p| p.parse::<Platform>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| corrupt(format!("artifact {}: {e}", a.ref_name())))?;
        let mut d = Derived::default();
        walker.walk(&a.digest, 0, &selected, &mut d)?;
        compare(a, &d)?;
        for m in &d.manifests {
            used.insert(m, BlobKind::Manifest);
        }
        for c in &d.configs {
            used.entry(c).or_insert(BlobKind::Config);
        }
        for l in &d.layers {
            used.entry(l).or_insert(BlobKind::Layer);
        }
    }
    for b in every() {
        match used.get(&b.digest) {
            None => return Err(corrupt(format!("the catalog lists blob {}, which no artifact uses", b.digest))),
            Some(&k) if k != b.kind => {
                return Err(corrupt(format!(
                    "the catalog lists blob {} as a {}, but the manifests use it as a {}",
                    b.digest,
                    kind_name(b.kind),
                    kind_name(k)
                )))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

struct Walker<'a> {
    blobs: &'a HashMap<&'a Digest, &'a Blob>,
    refs: &'a HashMap<Digest, Refs>,
}

impl<'a> Walker<'a> {
    /// The catalog blob for a digest that must be a manifest.
    fn manifest_blob(&self, d: &Digest, owner: impl Fn() -> String) -> Result<&'a Blob, BundleError> {
        let Some(&b) = self.blobs.get(d) else {
            return Err(BundleError::MissingBlob { what: "manifest", owner: owner(), missing: d.clone() });
        };
        if b.kind != BlobKind::Manifest {
            return Err(corrupt(format!(
                "{} names {d} as a manifest, but the catalog lists it as a {}",
                owner(),
                kind_name(b.kind)
            )));
        }
        Ok(b)
    }

    /// The catalog blob a descriptor names, of the size the descriptor says.
    fn described(&self, desc: &Descriptor, owner: &Digest, manifest: bool) -> Result<&'a Blob, BundleError> {
        let b = if manifest {
            self.manifest_blob(&desc.digest, || format!("index {owner}"))?
        } else {
            let Some(&b) = self.blobs.get(&desc.digest) else {
                return Err(BundleError::MissingBlob {
                    what: "manifest",
                    owner: owner.to_string(),
                    missing: desc.digest.clone(),
                });
            };
            if b.kind == BlobKind::Manifest {
                return Err(corrupt(format!("manifest {owner} names manifest {} as a config or layer", b.digest)));
            }
            b
        };
        if b.size != desc.size {
            return Err(corrupt(format!(
                "{owner} says {} is {} bytes, the bundle holds {} bytes",
                desc.digest, desc.size, b.size
            )));
        }
        Ok(b)
    }

    fn walk(
        &self,
        m: &'a Digest,
        depth: usize,
        selected: &[Platform],
        out: &mut Derived<'a>,
    ) -> Result<(), BundleError> {
        if out.manifests.contains(&m) {
            return Ok(());
        }
        if depth > MAX_DEPTH {
            return Err(corrupt(format!("index {m} nests more than {MAX_DEPTH} levels deep")));
        }
        let Some(refs) = self.refs.get(m) else {
            return Err(corrupt(format!("manifest {m} was not read before the configs and layers")));
        };
        match refs {
            Refs::Index { manifests } => {
                for child in select_children(manifests, selected) {
                    let b = self.described(child, m, true)?;
                    out.children.push((m, &b.digest));
                    self.walk(&b.digest, depth + 1, selected, out)?;
                }
            }
            Refs::Image { config, layers } => {
                out.configs.insert(&self.described(config, m, false)?.digest);
                for l in layers {
                    out.layers.insert(&self.described(l, m, false)?.digest);
                }
            }
        }
        out.manifests.push(m);
        Ok(())
    }
}

/// The catalog's word on one artifact against what its manifests say.
fn compare(a: &Artifact, d: &Derived) -> Result<(), BundleError> {
    let listed: BTreeSet<&Digest> = a.manifests.iter().collect();
    let derived: BTreeSet<&Digest> = d.manifests.iter().copied().collect();
    if listed.len() != a.manifests.len() || listed != derived {
        return Err(differs(a, "manifests", &listed, &derived));
    }
    // Push order: a manifest comes after every manifest it lists.
    let position: HashMap<&Digest, usize> = a.manifests.iter().enumerate().map(|(i, d)| (d, i)).collect();
    if let Some((m, c)) = d.children.iter().find(|(m, c)| position[c] > position[m]) {
        return Err(corrupt(format!("artifact {} lists index {m} before its child {c}", a.ref_name())));
    }
    let listed: BTreeSet<&Digest> = a.blobs.iter().collect();
    let derived: BTreeSet<&Digest> = d.configs.union(&d.layers).copied().collect();
    if listed.len() != a.blobs.len() || listed != derived {
        return Err(differs(a, "blobs", &listed, &derived));
    }
    Ok(())
}

fn differs(a: &Artifact, what: &str, listed: &BTreeSet<&Digest>, derived: &BTreeSet<&Digest>) -> BundleError {
    let detail = match (derived.difference(listed).next(), listed.difference(derived).next()) {
        (Some(d), _) => format!("its manifests name {d}, which the catalog omits"),
        (None, Some(d)) => format!("the catalog adds {d}, which its manifests do not name"),
        (None, None) => "the catalog lists one twice".to_string(),
    };
    corrupt(format!("artifact {}: the catalog's {what} differ from its manifests: {detail}", a.ref_name()))
}

fn kind_name(k: BlobKind) -> &'static str {
    match k {
        BlobKind::Manifest => "manifest",
        BlobKind::Config => "config",
        BlobKind::Layer => "layer",
    }
}

fn corrupt(s: String) -> BundleError {
    BundleError::Corrupt(s)
}

#[cfg(test)]
mod tests {
    //! The closure rule for sparse indexes, each case a forged bundle read by the one reader.

    use crate::forge::{self, Forged};
    use crate::reader::{walk, Sequential};
    use crate::Catalog;

    fn read(f: &Forged) -> Result<Catalog, crate::BundleError> {
        walk(&mut Sequential::new(f.bundle(&[]).as_slice(), &|_| {}))
    }

    #[test]
    fn a_sparse_index_brings_exactly_its_selected_children() {
        for selection in
            [&[][..], &["linux/amd64"], &["linux/arm64"], &["linux/arm64/v8"], &["linux/amd64", "linux/arm64"]]
        {
            let f = forge::multi(selection);
            let c = read(&f).unwrap_or_else(|e| panic!("{selection:?}: {e}"));
            assert_eq!(c.format_version, if selection.is_empty() { 1 } else { 2 }, "{selection:?}");
        }
        let full = forge::multi(&[]);
        let arm = forge::multi(&["linux/arm64"]);
        type Lie = Box<dyn Fn(&mut Forged)>;
        let cases: Vec<(&str, Forged, Lie, &str)> = vec![
            (
                "carries an omitted child",
                full.clone(),
                Box::new(|f| f.catalog = relabel(&f.catalog, &["linux/arm64"])),
                "the catalog adds",
            ),
            (
                "omits a selected child",
                arm.clone(),
                Box::new(|f| f.catalog = relabel(&f.catalog, &["linux/amd64"])),
                "which the bundle does not contain",
            ),
            (
                "selects more than it carries",
                arm.clone(),
                Box::new(|f| f.catalog = relabel(&f.catalog, &["linux/amd64", "linux/arm64"])),
                "which the bundle does not contain",
            ),
            (
                "claims to be whole",
                arm.clone(),
                Box::new(|f| f.catalog = relabel(&f.catalog, &[])),
                "which the bundle does not contain",
            ),
            (
                "a variant it does not have",
                arm.clone(),
                Box::new(|f| f.catalog = relabel(&f.catalog, &["linux/arm64/v7"])),
                "the catalog adds",
            ),
        ];
        for (name, mut f, lie, needle) in cases {
            lie(&mut f);
            let err = read(&f).expect_err(name).to_string();
            assert!(err.contains(needle), "{name}: {err:?} does not say {needle:?}");
        }
    }

    #[test]
    fn an_attestation_whose_subject_was_dropped_is_refused() {
        // linux/arm64 selected, but the catalog also carries amd64's attestation (manifest, config, layer).
        let full = forge::multi(&[]);
        let mut f = forge::multi(&["linux/arm64"]);
        let config = crate::Digest::sha256_of(br#"{"architecture":"unknown","os":"unknown"}"#);
        let layer = crate::Digest::sha256_of(b"in-toto statement");
        let names = |d: &crate::Digest| -> bool {
            let (_, bytes) = full.blobs.iter().find(|(x, _)| x == d).unwrap();
            String::from_utf8_lossy(bytes).contains(&config.to_string())
        };
        let att = full.catalog.blobs.iter().find(|b| b.kind == crate::BlobKind::Manifest && names(&b.digest)).unwrap();
        let extra = full.catalog.blobs.iter().filter(|b| [&att.digest, &config, &layer].contains(&&b.digest));
        let mut blobs = f.catalog.blobs.clone();
        blobs.extend(extra.cloned());
        let mut artifacts = f.catalog.artifacts.clone();
        artifacts[0].manifests.insert(0, att.digest.clone());
        artifacts[0].blobs.extend([config, layer]);
        let c = &f.catalog;
        f.catalog = Catalog::new(&c.tool, &c.created, &c.source_registry, artifacts, blobs);
        let err = read(&f).expect_err("an orphan attestation").to_string();
        assert!(err.contains("the catalog adds"), "{err}");
    }

    /// The catalog rebuilt (so its version follows) with other platforms.
    fn relabel(c: &Catalog, platforms: &[&str]) -> Catalog {
        let mut artifacts = c.artifacts.clone();
        artifacts[0].platforms = platforms.iter().map(|p| p.to_string()).collect();
        Catalog::new(&c.tool, &c.created, &c.source_registry, artifacts, c.blobs.clone())
    }
}
