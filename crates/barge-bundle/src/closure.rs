//! The closure rule: what each artifact brings is derived from its manifests, and the catalog must say exactly that.
//!
//! Pure. [`check`] runs once every manifest of the bundle has been read and
//! hashed (manifests come first in a bundle), before any config or layer, so a
//! catalog that lies about an artifact is refused before an importer writes.

use std::collections::{BTreeSet, HashMap};

use crate::catalog::{Artifact, Blob, BlobKind, Catalog};
use crate::oci::{Descriptor, Refs};
use crate::{BundleError, Digest};

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
    let blobs: HashMap<&Digest, &Blob> = catalog.blobs.iter().map(|b| (&b.digest, b)).collect();
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
        let mut d = Derived::default();
        walker.walk(&a.digest, 0, &mut d)?;
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
    for b in &catalog.blobs {
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

    fn walk(&self, m: &'a Digest, depth: usize, out: &mut Derived<'a>) -> Result<(), BundleError> {
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
                for child in manifests {
                    let b = self.described(child, m, true)?;
                    out.children.push((m, &b.digest));
                    self.walk(&b.digest, depth + 1, out)?;
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
