//! `Summary`: what a bundle holds, derived from its catalog and its manifests alone (what `barge inspect` shows); pure.
//!
//! The catalog and every manifest come first in a bundle, so a reader that
//! stops before the first config or layer ([`head_len`] says where) knows
//! every artifact, its platforms, its referrers and the bytes it brings.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use crate::catalog::{BlobKind, Catalog, Planned};
use crate::oci::Descriptor;
use crate::tar::{encode_header, padding, Kind};
use crate::{BundleError, Digest};

/// What one manifest says that a summary needs: its `subject`, and the
/// children of an index with their platforms. Kept instead of the manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    pub subject: Option<Digest>,
    /// An index's children: digest and `os/arch[/variant]` (when the descriptor names one).
    pub children: Vec<(Digest, Option<String>)>,
}

impl Facts {
    /// Read from a manifest's bytes (already checked by the bundle reader);
    /// what does not parse is simply absent.
    pub fn of(bytes: &[u8]) -> Facts {
        #[derive(serde::Deserialize)]
        struct Doc {
            #[serde(default)]
            subject: Option<Descriptor>,
            #[serde(default)]
            manifests: Vec<Descriptor>,
        }
        let Ok(doc) = serde_json::from_slice::<Doc>(bytes) else { return Facts::default() };
        let children = doc.manifests.into_iter().map(|d| (d.digest, d.platform.as_ref().and_then(platform))).collect();
        Facts { subject: doc.subject.map(|s| s.digest), children }
    }
}

/// `os/arch[/variant]` of an OCI platform object.
fn platform(v: &serde_json::Value) -> Option<String> {
    let os = v.get("os")?.as_str()?;
    let arch = v.get("architecture")?.as_str()?;
    Some(match v.get("variant").and_then(|x| x.as_str()) {
        Some(var) if !var.is_empty() => format!("{os}/{arch}/{var}"),
        _ => format!("{os}/{arch}"),
    })
}

/// How many bytes of a plain bundle hold everything [`Summary`] needs: the
/// layout files, the catalog, every manifest, and the header of the first
/// config or layer (where the reader learns the manifests have ended).
/// Computed from the catalog alone: every header and its padding are fixed.
pub fn head_len(catalog: &Catalog) -> u64 {
    let mut n = 0u64;
    for p in catalog.plan() {
        let (name, size, kind) = match p {
            Planned::Dir(name) => (name, 0, Kind::Dir),
            Planned::File { name, bytes } => (name.to_string(), bytes.len() as u64, Kind::File),
            Planned::Blob(i) => {
                let b = &catalog.blobs[i];
                let header = encode_header(&b.digest.layout_path(), b.size, Kind::File).len() as u64;
                if b.kind != BlobKind::Manifest {
                    return n + header;
                }
                n += header + b.size + padding(b.size) as u64;
                continue;
            }
        };
        n += encode_header(&name, size, kind).len() as u64 + size + padding(size) as u64;
    }
    // No config or layer at all: the two end-of-archive blocks follow.
    n + 1024
}

/// One artifact as a person (or a script) wants to see it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactSummary {
    /// `registry/repository:tag` (or `@digest`); without the registry in bundles that do not record it.
    pub reference: String,
    pub registry: Option<String>,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Digest,
    pub media_type: String,
    /// An index's children present in the bundle, by platform (sorted, unique).
    pub platforms: Vec<String>,
    /// The platforms selected at export (the catalog's `platforms`): the index travels sparse.
    pub selected_platforms: Vec<String>,
    pub sparse: bool,
    /// Its manifests, configs and layers (each once).
    pub blobs: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Other artifacts of the bundle that refer to this one (by `subject`, or a
    /// cosign `sha256-<hex>.sig/.att/.sbom` or tag-schema `sha256-<hex>` tag).
    pub referrers: Vec<String>,
    /// The artifacts this one refers to.
    pub refers_to: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    pub artifacts: usize,
    pub blobs: usize,
    pub bytes: u64,
    /// Blobs that more than one artifact uses, and their bytes (stored once).
    pub shared_blobs: usize,
    pub shared_bytes: u64,
    /// What storing each blob once saved: the artifacts' bytes added up, less the bundle's.
    pub saved_bytes: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub format_version: u32,
    pub tool: String,
    pub created: String,
    /// The catalog's `sourceRegistry`.
    pub source_registry: String,
    /// Every registry the artifacts came from (the catalog's for those that do not say).
    pub source_registries: Vec<String>,
    pub artifacts: Vec<ArtifactSummary>,
    pub totals: Totals,
}

/// The digest a cosign or tag-schema tag names: `sha256-<hex>[.sig|.att|.sbom]`.
fn tag_subject(tag: &str) -> Option<Digest> {
    let base = [".sig", ".att", ".sbom"].iter().find_map(|s| tag.strip_suffix(s)).unwrap_or(tag);
    let (alg, hex) = base.split_once('-')?;
    Digest::parse(&format!("{alg}:{hex}")).ok()
}

impl Summary {
    /// The summary of `catalog`, given the [`Facts`] of its manifests (by
    /// digest). Refused when its artifacts refer to one another more than
    /// [`MAX_LINKS`] times: a hostile catalog could otherwise make every
    /// artifact a referrer of every other (a list that grows as the square).
    pub fn new(catalog: &Catalog, facts: &HashMap<Digest, Facts>) -> Result<Summary, BundleError> {
        let sizes: HashMap<&Digest, u64> = catalog.blobs.iter().map(|b| (&b.digest, b.size)).collect();
        let mut uses: HashMap<&Digest, usize> = HashMap::new();
        let mut artifacts = Vec::new();
        for a in &catalog.artifacts {
            let mine: BTreeSet<&Digest> = a.manifests.iter().chain(&a.blobs).collect();
            for d in &mine {
                *uses.entry(d).or_default() += 1;
            }
            let reference = match &a.registry {
                Some(r) => format!("{r}/{}", a.ref_name()),
                None => a.ref_name(),
            };
            let platforms: BTreeSet<String> = a
                .manifests
                .iter()
                .filter_map(|m| facts.get(m))
                .flat_map(|f| &f.children)
                .filter(|(d, _)| a.manifests.contains(d))
                .filter_map(|(_, p)| p.clone())
                .collect();
            artifacts.push(ArtifactSummary {
                reference,
                registry: a.registry.clone(),
                repository: a.repository.clone(),
                tag: a.tag.clone(),
                digest: a.digest.clone(),
                media_type: a.media_type.clone(),
                platforms: platforms.into_iter().collect(),
                selected_platforms: a.platforms.clone(),
                sparse: !a.platforms.is_empty(),
                blobs: mine.len(),
                bytes: mine.iter().map(|d| sizes.get(d).copied().unwrap_or(0)).sum(),
                referrers: Vec::new(),
                refers_to: Vec::new(),
            });
        }
        link_referrers(catalog, facts, &mut artifacts)?;
        let shared: Vec<u64> =
            catalog.blobs.iter().filter(|b| uses.get(&b.digest) > Some(&1)).map(|b| b.size).collect();
        let totals = Totals {
            artifacts: artifacts.len(),
            blobs: catalog.blobs.len(),
            bytes: catalog.blob_bytes(),
            shared_blobs: shared.len(),
            shared_bytes: shared.iter().sum(),
            saved_bytes: artifacts.iter().map(|a| a.bytes).sum::<u64>().saturating_sub(catalog.blob_bytes()),
        };
        let mut registries: BTreeSet<String> = catalog.artifacts.iter().filter_map(|a| a.registry.clone()).collect();
        if catalog.artifacts.iter().any(|a| a.registry.is_none()) || catalog.artifacts.is_empty() {
            registries.insert(catalog.source_registry.clone());
        }
        Ok(Summary {
            format_version: catalog.format_version,
            tool: catalog.tool.clone(),
            created: catalog.created.clone(),
            source_registry: catalog.source_registry.clone(),
            source_registries: registries.into_iter().collect(),
            artifacts,
            totals,
        })
    }
}

/// The most referrer links (artifact `r` refers to artifact `s`) a summary lists.
pub const MAX_LINKS: usize = 100_000;

/// Fill `referrers` and `refers_to`: artifact `r` refers to artifact `s` of
/// the same repository (of the same registry: where registries keep and
/// look up referrers) when one of `r`'s manifests names one of `s`'s as its
/// subject, or `r`'s tag names one.
fn link_referrers(
    catalog: &Catalog,
    facts: &HashMap<Digest, Facts>,
    out: &mut [ArtifactSummary],
) -> Result<(), BundleError> {
    type Key<'a> = (Option<&'a str>, &'a str, &'a Digest);
    let mut owner: BTreeMap<Key, Vec<usize>> = BTreeMap::new();
    for (i, a) in catalog.artifacts.iter().enumerate() {
        for m in &a.manifests {
            owner.entry((a.registry.as_deref(), &a.repository, m)).or_default().push(i);
        }
    }
    let mut links = BTreeSet::new();
    for (r, a) in catalog.artifacts.iter().enumerate() {
        let by_subject = a.manifests.iter().filter_map(|m| facts.get(m)?.subject.clone());
        let by_tag = a.tag.as_deref().and_then(tag_subject);
        for subject in by_subject.chain(by_tag) {
            for &s in owner.get(&(a.registry.as_deref(), &a.repository, &subject)).into_iter().flatten() {
                if s != r && links.insert((r, s)) && links.len() > MAX_LINKS {
                    return Err(BundleError::Corrupt(format!(
                        "its artifacts refer to one another more than {MAX_LINKS} times; a summary lists fewer"
                    )));
                }
            }
        }
    }
    for (r, s) in links {
        let (rr, sr) = (out[r].reference.clone(), out[s].reference.clone());
        out[s].referrers.push(rr);
        out[r].refers_to.push(sr);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The summary of forged bundles: platforms, sharing, referrers; and `head_len` against a real tar.

    use super::*;
    use crate::forge;
    use crate::reader::{Data, Next, Reader};
    use serde_json::json;

    /// Drive the one reader over `bytes` until the first config or layer, keeping the manifests' facts.
    fn read_head(bytes: &[u8]) -> (Catalog, HashMap<Digest, Facts>, u64) {
        let mut r = Reader::new();
        let (mut pos, mut facts) = (0usize, HashMap::new());
        loop {
            match r.next() {
                Next::Header => {
                    r.header(bytes[pos..pos + 512].try_into().unwrap()).unwrap();
                    pos += 512;
                }
                Next::Data { len, what } => {
                    let data = &bytes[pos..pos + len as usize];
                    if let Data::Manifest(i) = what {
                        facts.insert(r.blob(i).unwrap().digest.clone(), Facts::of(data));
                    }
                    r.data(data).unwrap();
                    pos += len as usize;
                }
                Next::Skip { len } => {
                    r.skipped().unwrap();
                    pos += len as usize;
                }
                Next::Blob { .. } | Next::Trailer => return (r.catalog().unwrap().clone(), facts, pos as u64),
            }
        }
    }

    #[test]
    fn head_len_is_where_the_reader_meets_the_first_config() {
        for f in [forge::image(None), forge::index()] {
            let (catalog, _, at) = read_head(&f.bundle(&[]));
            assert_eq!(head_len(&catalog), at);
        }
    }

    #[test]
    fn an_index_its_platforms_sharing_and_a_referrer() {
        let mut f = forge::index();
        // Give the index's children platforms, and make a/b:v1 a cosign signature of the index.
        let idx_digest = f.catalog.artifacts.iter().find(|a| a.repository == "m/idx").unwrap().digest.clone();
        let idx = f.blobs.iter().find(|(d, _)| *d == idx_digest).unwrap().1.clone();
        let mut v: serde_json::Value = serde_json::from_slice(&idx).unwrap();
        v["manifests"][0]["platform"] = json!({"os": "linux", "architecture": "amd64"});
        v["manifests"][1]["platform"] = json!({"os": "linux", "architecture": "arm64", "variant": "v8"});
        let facts_idx = Facts::of(&serde_json::to_vec(&v).unwrap());
        let facts = HashMap::from([(idx_digest.clone(), facts_idx)]);
        f.artifact("a/b:v1").tag = Some(format!("sha256-{}.sig", idx_digest.hex()));
        f.catalog.artifacts[1].platforms = vec!["linux/amd64".into()];
        // A signature refers to what its own repository holds: in another one it refers to nothing.
        assert!(Summary::new(&f.catalog, &facts).unwrap().artifacts.iter().all(|a| a.referrers.is_empty()));
        f.catalog.artifacts[0].repository = "m/idx".into();
        let s = Summary::new(&f.catalog, &facts).unwrap();
        let (sig, index) = (&s.artifacts[0], &s.artifacts[1]);
        assert_eq!(index.platforms, ["linux/amd64", "linux/arm64/v8"]);
        assert!(index.sparse && !sig.sparse);
        assert_eq!(index.referrers, std::slice::from_ref(&sig.reference));
        assert_eq!(sig.refers_to, std::slice::from_ref(&index.reference));
        assert_eq!(index.blobs, 8);
        // The shared layer is used by both artifacts: stored once.
        assert_eq!(s.totals.shared_blobs, 1);
        assert_eq!(s.totals.shared_bytes, b"layer-bytes".len() as u64);
        assert_eq!(s.totals.saved_bytes, s.totals.shared_bytes);
        assert_eq!(s.totals.bytes, f.catalog.blob_bytes());
        assert_eq!(s.source_registries, ["oci:x"]);
    }

    #[test]
    fn subjects_and_tags_name_their_subjects() {
        let d = Digest::sha256_of(b"m");
        let doc = json!({"schemaVersion": 2, "subject": {"mediaType": "x", "digest": d, "size": 1}, "layers": []});
        assert_eq!(Facts::of(&serde_json::to_vec(&doc).unwrap()).subject, Some(d.clone()));
        for t in [format!("sha256-{}", d.hex()), format!("sha256-{}.att", d.hex())] {
            assert_eq!(tag_subject(&t), Some(d.clone()), "{t}");
        }
        assert_eq!(tag_subject("v1"), None);
        assert_eq!(Facts::of(b"not json"), Facts::default());
    }

    #[test]
    fn artifacts_that_all_refer_to_one_another_are_refused_not_listed() {
        // One manifest under n tags of one repository, each tag also a signature
        // tag of that manifest: n * (n - 1) links.
        let f = forge::image(None);
        let a = f.catalog.artifacts[0].clone();
        let sig = format!("sha256-{}.sig", a.digest.hex());
        let many = |n: usize| {
            let mut c = f.catalog.clone();
            c.artifacts = (0..n)
                .map(|i| {
                    let mut b = a.clone();
                    b.tag = Some(if i == 0 { sig.clone() } else { format!("v{i}") });
                    b
                })
                .collect();
            c
        };
        let s = Summary::new(&many(300), &HashMap::new()).unwrap();
        assert_eq!(s.artifacts.iter().map(|a| a.refers_to.len()).sum::<usize>(), 299);
        // With a subject too, every artifact names every other: refused.
        let subject = json!({"schemaVersion": 2, "subject": {"mediaType": "x", "digest": a.digest, "size": 1}});
        let facts = HashMap::from([(a.digest.clone(), Facts::of(&serde_json::to_vec(&subject).unwrap()))]);
        let e = Summary::new(&many(400), &facts).unwrap_err().to_string();
        assert!(e.contains("refer to one another more than 100000 times"), "{e}");
    }
}
