//! Bundles built by hand from a catalog and blob contents, for hostile-input tests: any catalog, consistent tar.
//!
//! Test support only: compiled for this crate's tests and, with the `forge`
//! feature, for the workspace's integration tests.

use crate::catalog::Planned;
use crate::oci::{OCI_CONFIG, OCI_INDEX, OCI_LAYER_TAR, OCI_MANIFEST};
use crate::tar::{encode_header, end_of_archive, padding, Kind};
use crate::{Artifact, Blob, BlobKind, Catalog, Digest};
use serde_json::json;

/// A catalog and the content of every blob it may list.
#[derive(Debug, Clone)]
pub struct Forged {
    pub catalog: Catalog,
    pub blobs: Vec<(Digest, Vec<u8>)>,
}

impl Forged {
    /// The bundle's bytes: the catalog's plan, every listed blob with its real
    /// content (so only the catalog can lie), then `extra` raw entries.
    pub fn bundle(&self, extra: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        let file = |out: &mut Vec<u8>, name: &str, data: &[u8]| {
            out.extend(encode_header(name, data.len() as u64, Kind::File));
            out.extend(data);
            out.resize(out.len() + padding(data.len() as u64), 0);
        };
        for p in self.catalog.plan() {
            match p {
                Planned::Dir(n) => out.extend(encode_header(&n, 0, Kind::Dir)),
                Planned::File { name, bytes } => file(&mut out, name, &bytes),
                Planned::Blob(i) => {
                    let b = &self.catalog.blobs[i];
                    let data = self.blobs.iter().find(|(d, _)| d == &b.digest).map(|(_, v)| v.as_slice());
                    file(&mut out, &b.digest.layout_path(), data.unwrap_or(b"unknown blob"));
                }
            }
        }
        for e in extra {
            out.extend(e);
        }
        out.extend(end_of_archive());
        out
    }

    /// The bundle's entries in order (name, data, kind), to reorder, drop or
    /// change before [`Forged::tar`] writes them.
    pub fn entries(&self) -> Vec<(String, Vec<u8>, Kind)> {
        self.catalog
            .plan()
            .into_iter()
            .map(|p| match p {
                Planned::Dir(n) => (n, Vec::new(), Kind::Dir),
                Planned::File { name, bytes } => (name.to_string(), bytes, Kind::File),
                Planned::Blob(i) => {
                    let b = &self.catalog.blobs[i];
                    let data = self.blobs.iter().find(|(d, _)| d == &b.digest).map(|(_, v)| v.clone());
                    (b.digest.layout_path(), data.unwrap_or_default(), Kind::File)
                }
            })
            .collect()
    }

    /// A tar of exactly these entries, ended by the end-of-archive marker.
    pub fn tar(entries: &[(String, Vec<u8>, Kind)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, data, kind) in entries {
            out.extend(encode_header(name, data.len() as u64, *kind));
            out.extend(data);
            out.resize(out.len() + padding(data.len() as u64), 0);
        }
        out.extend(end_of_archive());
        out
    }

    pub fn artifact(&mut self, ref_name: &str) -> &mut Artifact {
        self.catalog.artifacts.iter_mut().find(|a| a.ref_name() == ref_name).expect("artifact in the forge")
    }

    pub fn blob(&mut self, d: &Digest) -> &mut Blob {
        self.catalog.blobs.iter_mut().find(|b| &b.digest == d).expect("blob in the forge")
    }
}

fn blob(data: &[u8], kind: BlobKind, media_type: &str) -> Blob {
    Blob { digest: Digest::sha256_of(data), size: data.len() as u64, media_type: media_type.into(), kind }
}

fn image_manifest(config: &[u8], layers: &[&[u8]]) -> Vec<u8> {
    let layers: Vec<_> = layers
        .iter()
        .map(|l| json!({"mediaType": OCI_LAYER_TAR, "digest": Digest::sha256_of(l), "size": l.len()}))
        .collect();
    serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": Digest::sha256_of(config), "size": config.len()},
        "layers": layers,
    }))
    .unwrap()
}

fn artifact(repo: &str, tag: &str, root: &[u8], media_type: &str, manifests: &[&[u8]], blobs: &[&[u8]]) -> Artifact {
    Artifact {
        request: format!("{repo}:{tag}"),
        registry: None,
        repository: repo.into(),
        tag: Some(tag.into()),
        digest: Digest::sha256_of(root),
        media_type: media_type.into(),
        size: root.len() as u64,
        manifests: manifests.iter().map(|m| Digest::sha256_of(m)).collect(),
        blobs: blobs.iter().map(|b| Digest::sha256_of(b)).collect(),
        platforms: Vec::new(),
    }
}

/// One image, `a/b:v1`, whose manifest names `missing` (5 bytes) as a second layer when given.
pub fn image(missing: Option<&Digest>) -> Forged {
    let (layer, config) = (b"layer-bytes".to_vec(), b"{}".to_vec());
    let mut manifest = image_manifest(&config, &[&layer]);
    if let Some(m) = missing {
        let mut v: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
        v["layers"].as_array_mut().unwrap().push(json!({"mediaType": OCI_LAYER_TAR, "digest": m, "size": 5}));
        manifest = serde_json::to_vec(&v).unwrap();
    }
    let a = artifact("a/b", "v1", &manifest, OCI_MANIFEST, &[&manifest], &[&config, &layer]);
    let blobs = vec![
        blob(&manifest, BlobKind::Manifest, OCI_MANIFEST),
        blob(&config, BlobKind::Config, OCI_CONFIG),
        blob(&layer, BlobKind::Layer, OCI_LAYER_TAR),
    ];
    let catalog = Catalog::new("test", "1970-01-01T00:00:00Z", "oci:x", vec![a], blobs);
    let contents = [manifest, config, layer].into_iter().map(|d| (Digest::sha256_of(&d), d)).collect();
    Forged { catalog, blobs: contents }
}

/// Two artifacts: `a/b:v1`, one image; `m/idx:v1`, an index of two images that
/// share a layer with each other and with `a/b:v1`.
pub fn index() -> Forged {
    let mut f = image(None);
    let shared = b"layer-bytes".to_vec();
    let (amd, arm) = (b"amd64-only layer".to_vec(), b"arm64-only layer".to_vec());
    let (c1, c2) = (br#"{"architecture":"amd64"}"#.to_vec(), br#"{"architecture":"arm64"}"#.to_vec());
    let (m1, m2) = (image_manifest(&c1, &[&shared, &amd]), image_manifest(&c2, &[&shared, &arm]));
    let child = |m: &[u8]| json!({"mediaType": OCI_MANIFEST, "digest": Digest::sha256_of(m), "size": m.len()});
    let idx = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [child(&m1), child(&m2)],
    }))
    .unwrap();
    let a = artifact("m/idx", "v1", &idx, OCI_INDEX, &[&m1, &m2, &idx], &[&c1, &c2, &shared, &amd, &arm]);
    let mut artifacts = f.catalog.artifacts.clone();
    artifacts.push(a);
    let mut blobs = f.catalog.blobs.clone();
    blobs.extend([
        blob(&idx, BlobKind::Manifest, OCI_INDEX),
        blob(&m1, BlobKind::Manifest, OCI_MANIFEST),
        blob(&m2, BlobKind::Manifest, OCI_MANIFEST),
        blob(&c1, BlobKind::Config, OCI_CONFIG),
        blob(&c2, BlobKind::Config, OCI_CONFIG),
        blob(&amd, BlobKind::Layer, OCI_LAYER_TAR),
        blob(&arm, BlobKind::Layer, OCI_LAYER_TAR),
    ]);
    f.catalog = Catalog::new("test", "1970-01-01T00:00:00Z", "oci:x", artifacts, blobs);
    f.blobs.extend([idx, m1, m2, c1, c2, amd, arm].into_iter().map(|d| (Digest::sha256_of(&d), d)));
    f
}

/// One artifact, `m/multi:v1`: an index of a linux/amd64 image, a
/// linux/arm64/v8 image and BuildKit's attestation manifest of the amd64 one.
/// With `platforms`, a sparse export of it: the catalog lists those platforms
/// and only the children they keep (written out here, not derived by the rule
/// under test), each with its blobs.
pub fn multi(platforms: &[&str]) -> Forged {
    let (c_amd, c_arm) =
        (br#"{"architecture":"amd64","os":"linux"}"#.to_vec(), br#"{"architecture":"arm64"}"#.to_vec());
    let (l_amd, l_arm) = (b"multi amd64 layer".to_vec(), b"multi arm64 layer".to_vec());
    let (c_att, l_att) = (br#"{"architecture":"unknown","os":"unknown"}"#.to_vec(), b"in-toto statement".to_vec());
    let (amd, arm, att) =
        (image_manifest(&c_amd, &[&l_amd]), image_manifest(&c_arm, &[&l_arm]), image_manifest(&c_att, &[&l_att]));
    let child = |m: &[u8], platform: serde_json::Value| json!({"mediaType": OCI_MANIFEST, "digest": Digest::sha256_of(m), "size": m.len(), "platform": platform});
    let mut att_child = child(&att, json!({"os": "unknown", "architecture": "unknown"}));
    att_child["annotations"] = json!({
        "vnd.docker.reference.type": "attestation-manifest",
        "vnd.docker.reference.digest": Digest::sha256_of(&amd),
    });
    let idx = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            child(&amd, json!({"os": "linux", "architecture": "amd64"})),
            child(&arm, json!({"os": "linux", "architecture": "arm64", "variant": "v8"})),
            att_child,
        ],
    }))
    .unwrap();
    let all = platforms.is_empty();
    let with_amd = all || platforms.contains(&"linux/amd64");
    let with_arm = all || platforms.iter().any(|p| p.starts_with("linux/arm64"));
    let (mut manifests, mut used): (Vec<&[u8]>, Vec<&[u8]>) = (Vec::new(), Vec::new());
    let mut blobs = vec![blob(&idx, BlobKind::Manifest, OCI_INDEX)];
    let mut keep = |parts: [&Vec<u8>; 3]| {
        blobs.push(blob(parts[0], BlobKind::Manifest, OCI_MANIFEST));
        blobs.push(blob(parts[1], BlobKind::Config, OCI_CONFIG));
        blobs.push(blob(parts[2], BlobKind::Layer, OCI_LAYER_TAR));
    };
    if with_amd {
        keep([&amd, &c_amd, &l_amd]);
        keep([&att, &c_att, &l_att]);
        manifests.extend([amd.as_slice(), att.as_slice()]);
        used.extend([c_amd.as_slice(), l_amd.as_slice(), c_att.as_slice(), l_att.as_slice()]);
    }
    if with_arm {
        keep([&arm, &c_arm, &l_arm]);
        manifests.push(&arm);
        used.extend([c_arm.as_slice(), l_arm.as_slice()]);
    }
    manifests.push(&idx);
    let mut a = artifact("m/multi", "v1", &idx, OCI_INDEX, &manifests, &used);
    a.platforms = platforms.iter().map(|p| p.to_string()).collect();
    let catalog = Catalog::new("test", "1970-01-01T00:00:00Z", "oci:x", vec![a], blobs);
    let contents = [idx.clone(), amd.clone(), arm.clone(), att.clone(), c_amd, c_arm, c_att, l_amd, l_arm, l_att];
    Forged { catalog, blobs: contents.into_iter().map(|d| (Digest::sha256_of(&d), d)).collect() }
}

/// A catalog of one artifact `a:1` over named stand-in blobs (content is the
/// name; sizes as given), the first of them its manifest: for tests of catalog
/// arithmetic (deltas, inventories) that need no bundle. Returns the blobs too.
pub fn named(blobs: &[(&str, BlobKind, u64)]) -> (Catalog, Vec<Blob>) {
    let blobs: Vec<Blob> = blobs
        .iter()
        .map(|&(name, kind, size)| Blob {
            digest: Digest::sha256_of(name.as_bytes()),
            size,
            media_type: "x".into(),
            kind,
        })
        .collect();
    let root = &blobs[0];
    let artifact = Artifact {
        request: "a:1".into(),
        registry: None,
        repository: "a".into(),
        tag: Some("1".into()),
        digest: root.digest.clone(),
        media_type: "x".into(),
        size: root.size,
        manifests: vec![root.digest.clone()],
        blobs: blobs[1..].iter().map(|b| b.digest.clone()).collect(),
        platforms: Vec::new(),
    };
    (Catalog::new("t", "2026-01-01T00:00:00Z", "r", vec![artifact], blobs.clone()), blobs)
}
