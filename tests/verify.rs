//! `barge verify` and `barge import` against damaged and hostile bundles: exit 3, nothing written.

mod common;

use barge_bundle::catalog::{Planned, OCI_LAYOUT_JSON};
use barge_bundle::oci::{OCI_CONFIG, OCI_LAYER_TAR, OCI_MANIFEST};
use barge_bundle::tar::{encode_header, end_of_archive, padding, Kind, BLOCK};
use barge_bundle::{Artifact, Blob, BlobKind, Catalog, Digest};
use common::*;

/// Export the samples and return the bundle's bytes.
fn good_bundle(w: &Work) -> Vec<u8> {
    let mut args = vec!["export".to_string(), "--registry".into(), w.reg("src"), "--to".into(), w.s("store-a/good")];
    args.extend(SAMPLES.iter().map(|s| s.to_string()));
    barge_ok(&args.iter().map(String::as_str).collect::<Vec<_>>(), 0);
    std::fs::read(w.path("store-a/good")).unwrap()
}

/// Verify and import `bytes`; both must fail with exit 3 and a message containing `needle`,
/// and the import must leave no tag behind.
fn assert_rejected(w: &Work, name: &str, bytes: &[u8], needle: &str) {
    let path = w.path(&format!("store-a/{name}"));
    std::fs::write(&path, bytes).unwrap();
    let p = path.display().to_string();
    let r = barge(&["verify", &p]);
    assert_eq!(r.code, 3, "verify {name}: {}", r.stderr);
    assert!(r.stderr.contains(needle), "verify {name}: expected {needle:?} in {}", r.stderr);
    let target = w.path(&format!("dst-{name}"));
    let r = barge(&["import", &p, "--registry", &format!("oci:{}", target.display())]);
    assert_eq!(r.code, 3, "import {name}: {}", r.stderr);
    let tagged: Vec<_> = snapshot(&target).into_iter().filter(|(p, _)| p.ends_with("index.json")).collect();
    assert!(tagged.is_empty(), "import of {name} tagged something: {tagged:?}");
}

#[test]
fn a_good_bundle_verifies_and_reports_its_digest() {
    let w = Work::new();
    let bytes = good_bundle(&w);
    let r = barge_ok(
        &[
            "verify",
            "--output",
            "json",
            &w.s("store-a/good"),
            "--catalog-digest",
            &Digest::sha256_of(&bytes).to_string(),
        ],
        0,
    );
    assert_eq!(r.json()["catalogDigest"], Digest::sha256_of(&bytes).to_string());
    assert_eq!(r.json()["artifacts"].as_array().unwrap().len(), 3);
}

#[test]
fn truncated_bundles_are_rejected() {
    let w = Work::new();
    let bytes = good_bundle(&w);
    let (layer_at, _) = {
        let c = catalog_of(&bytes);
        let layer = c.blobs.iter().find(|b| b.kind == BlobKind::Layer).unwrap().digest.layout_path();
        entry_offset(&bytes, &layer)
    };
    for (i, cut) in [bytes.len() - 1, bytes.len() - 2 * BLOCK, layer_at + 100, 700].into_iter().enumerate() {
        assert_rejected(&w, &format!("cut{i}"), &bytes[..cut], "truncated");
    }
}

#[test]
fn one_flipped_byte_in_a_layer_is_found() {
    let w = Work::new();
    let mut bytes = good_bundle(&w);
    let c = catalog_of(&bytes);
    let layer = c.blobs.iter().find(|b| b.kind == BlobKind::Layer).unwrap();
    let (at, size) = entry_offset(&bytes, &layer.digest.layout_path());
    bytes[at + size / 2] ^= 0x01;
    assert_rejected(&w, "flipped", &bytes, &layer.digest.to_string());
}

#[test]
fn a_wrong_catalog_digest_is_refused() {
    let w = Work::new();
    good_bundle(&w);
    let wrong = format!("sha256:{}", "1".repeat(64));
    let r = barge(&["verify", &w.s("store-a/good"), "--catalog-digest", &wrong]);
    assert_eq!(r.code, 3);
    assert!(r.stderr.contains(&wrong), "{}", r.stderr);
}

/// Write a bundle by hand from a catalog and blob contents, plus extra raw entries at the end.
fn build(catalog: &Catalog, blobs: &[(Digest, Vec<u8>)], extra: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in catalog.plan() {
        match p {
            Planned::Dir(n) => out.extend(encode_header(&n, 0, Kind::Dir)),
            Planned::File { name, bytes } => {
                out.extend(encode_header(name, bytes.len() as u64, Kind::File));
                out.extend(&bytes);
                out.resize(out.len() + padding(bytes.len() as u64), 0);
            }
            Planned::Blob(i) => {
                let b = &catalog.blobs[i];
                let data = &blobs.iter().find(|(d, _)| d == &b.digest).unwrap().1;
                out.extend(encode_header(&b.digest.layout_path(), data.len() as u64, Kind::File));
                out.extend(data);
                out.resize(out.len() + padding(data.len() as u64), 0);
            }
        }
    }
    for e in extra {
        out.extend(e);
    }
    out.extend(end_of_archive());
    out
}

/// A one-image catalog whose manifest names `missing` as a second layer when given.
fn tiny(missing: Option<&Digest>) -> (Catalog, Vec<(Digest, Vec<u8>)>) {
    let layer = b"layer-bytes".to_vec();
    let config = b"{}".to_vec();
    let (ld, cd) = (Digest::sha256_of(&layer), Digest::sha256_of(&config));
    let mut layers = vec![serde_json::json!({"mediaType": OCI_LAYER_TAR, "digest": ld, "size": layer.len()})];
    if let Some(m) = missing {
        layers.push(serde_json::json!({"mediaType": OCI_LAYER_TAR, "digest": m, "size": 5}));
    }
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": cd, "size": config.len()},
        "layers": layers,
    }))
    .unwrap();
    let md = Digest::sha256_of(&manifest);
    let artifact = Artifact {
        request: "a/b:v1".into(),
        repository: "a/b".into(),
        tag: Some("v1".into()),
        digest: md.clone(),
        media_type: OCI_MANIFEST.into(),
        size: manifest.len() as u64,
        manifests: vec![md.clone()],
        blobs: vec![cd.clone(), ld.clone()],
    };
    let blob = |d: &Digest, data: &[u8], kind, mt: &str| Blob {
        digest: d.clone(),
        size: data.len() as u64,
        media_type: mt.into(),
        kind,
    };
    let catalog = Catalog::new(
        "test",
        "1970-01-01T00:00:00Z",
        "oci:x",
        vec![artifact],
        vec![
            blob(&md, &manifest, BlobKind::Manifest, OCI_MANIFEST),
            blob(&cd, &config, BlobKind::Config, OCI_CONFIG),
            blob(&ld, &layer, BlobKind::Layer, OCI_LAYER_TAR),
        ],
    );
    (catalog, vec![(md, manifest), (cd, config), (ld, layer)])
}

#[test]
fn a_hand_built_bundle_is_accepted() {
    let w = Work::new();
    let (c, blobs) = tiny(None);
    std::fs::write(w.path("store-a/tiny"), build(&c, &blobs, &[])).unwrap();
    barge_ok(&["verify", &w.s("store-a/tiny")], 0);
    barge_ok(&["import", &w.s("store-a/tiny"), "--registry", &w.reg("dst")], 0);
}

#[test]
fn a_manifest_naming_a_missing_blob_is_rejected() {
    let w = Work::new();
    let missing = Digest::sha256_of(b"not in the bundle");
    let (c, blobs) = tiny(Some(&missing));
    assert_rejected(&w, "missing", &build(&c, &blobs, &[]), &missing.to_string());
}

/// A raw header with any name and type flag, checksummed.
fn raw_header(name: &str, size: u64, flag: u8) -> Vec<u8> {
    let mut h = encode_header("placeholder", size, Kind::File);
    h[..100].fill(0);
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[156] = flag;
    if flag == b'2' {
        h[157..157 + 11].copy_from_slice(b"/etc/passwd");
    }
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

#[test]
fn unsafe_and_unlisted_entries_are_rejected() {
    let w = Work::new();
    let (c, blobs) = tiny(None);
    let with_data = |name: &str| {
        let mut e = raw_header(name, 4, b'0');
        e.extend(b"evil");
        e.resize(e.len() + padding(4), 0);
        e
    };
    let cases = [
        ("dotdot", with_data("../../etc/evil"), "'..'"),
        ("absolute", with_data("/etc/evil"), "absolute path"),
        ("symlink", raw_header("blobs/sha256/link", 0, b'2'), "symbolic link"),
        ("hardlink", raw_header("blobs/sha256/hard", 0, b'1'), "hard link"),
        ("device", raw_header("dev", 0, b'3'), "device"),
        ("unlisted", with_data("extra.txt"), "not listed"),
        ("duplicate", with_data("oci-layout"), "twice"),
    ];
    for (name, entry, needle) in cases {
        assert_rejected(&w, name, &build(&c, &blobs, &[entry]), needle);
    }
    // An unsafe entry first of all is refused before anything else is read.
    let mut first = raw_header("../x", 0, b'0');
    first.extend(encode_header("oci-layout", OCI_LAYOUT_JSON.len() as u64, Kind::File));
    first.extend(OCI_LAYOUT_JSON);
    first.resize(first.len() + padding(OCI_LAYOUT_JSON.len() as u64), 0);
    first.extend(end_of_archive());
    assert_rejected(&w, "first", &first, "'..'");
}

#[test]
fn a_damaged_zstd_bundle_is_rejected() {
    let w = Work::new();
    let mut args = vec![
        "export".to_string(),
        "--compress".into(),
        "zstd".into(),
        "--registry".into(),
        w.reg("src"),
        "--to".into(),
        w.s("store-a/z"),
    ];
    args.extend(SAMPLES.iter().map(|s| s.to_string()));
    barge_ok(&args.iter().map(String::as_str).collect::<Vec<_>>(), 0);
    barge_ok(&["verify", &w.s("store-a/z")], 0);
    let mut bytes = std::fs::read(w.path("store-a/z")).unwrap();
    assert_rejected(&w, "zcut", &bytes[..bytes.len() * 2 / 3], "");
    let mut frame = bytes.clone();
    frame[4] ^= 0xff;
    assert_rejected(&w, "zframe", &frame, "zstd stream");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    assert_rejected(&w, "zflip", &bytes, "");
}

/// Layers above the size that import reads whole are uploaded from their own
/// byte range while the main pass seeks over them; they are still checked.
#[test]
fn large_layers_read_by_offset_are_checked() {
    let w = Work::new();
    let layers =
        vec![barge_fixtures::Layer { seed: 7, size: 3 << 20 }, barge_fixtures::Layer { seed: 8, size: 5 << 20 }];
    let d = barge_fixtures::write_image(&w.path("src"), "large/image", &barge_fixtures::Image::new(layers)).unwrap();
    barge_fixtures::tag(&w.path("src"), "large/image", "v1", &d).unwrap();
    barge_ok(&["export", "--registry", &w.reg("src"), "--to", &w.s("store-a/large"), "large/image:v1"], 0);
    let bytes = std::fs::read(w.path("store-a/large")).unwrap();
    let digest = Digest::sha256_of(&bytes).to_string();

    // A local bundle is hashed whole only when a catalogDigest is to be checked, and first.
    let plain = barge_ok(&["import", "--output", "json", &w.s("store-a/large"), "--registry", &w.reg("dst-plain")], 0);
    assert!(plain.json()["catalogDigest"].is_null(), "{}", plain.stdout);
    let asked = barge_ok(
        &[
            "import",
            "--output",
            "json",
            &w.s("store-a/large"),
            "--registry",
            &w.reg("dst-asked"),
            "--catalog-digest",
            &digest,
        ],
        0,
    );
    assert_eq!(asked.json()["catalogDigest"], digest);
    for dst in ["dst-plain", "dst-asked"] {
        let got = skopeo_raw(&format!("oci:{}/large/image:v1", w.s(dst)));
        assert_eq!(got, skopeo_raw(&format!("oci:{}/large/image:v1", w.s("src"))));
    }

    let c = catalog_of(&bytes);
    let large = c.blobs.iter().max_by_key(|b| b.size).unwrap();
    assert!(large.size > 4 << 20, "{}", large.size);
    let (at, size) = entry_offset(&bytes, &large.digest.layout_path());
    let mut flipped = bytes.clone();
    flipped[at + size - 10] ^= 0x01;
    assert_rejected(&w, "large-flipped", &flipped, &large.digest.to_string());
    assert_rejected(&w, "large-cut", &bytes[..at + size / 2], "truncated");
    assert_rejected(&w, "large-cut-after", &bytes[..at + size + 1], "truncated");
}
