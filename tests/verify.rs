//! `barge verify` and `barge import` against damaged and hostile bundles: exit 3, nothing written.

mod common;

use barge_bundle::catalog::OCI_LAYOUT_JSON;
use barge_bundle::forge;
use barge_bundle::tar::{encode_header, end_of_archive, padding, Kind, BLOCK};
use barge_bundle::{BlobKind, Digest};
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

#[test]
fn a_hand_built_bundle_is_accepted() {
    let w = Work::new();
    std::fs::write(w.path("store-a/tiny"), forge::image(None).bundle(&[])).unwrap();
    barge_ok(&["verify", &w.s("store-a/tiny")], 0);
    barge_ok(&["import", &w.s("store-a/tiny"), "--registry", &w.reg("dst")], 0);
}

#[test]
fn a_manifest_naming_a_missing_blob_is_rejected() {
    let w = Work::new();
    let missing = Digest::sha256_of(b"not in the bundle");
    assert_rejected(&w, "missing", &forge::image(Some(&missing)).bundle(&[]), &missing.to_string());
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
    let f = forge::image(None);
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
        assert_rejected(&w, name, &f.bundle(&[entry]), needle);
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

/// Every catalog that says something its manifests do not is refused by verify
/// and import alike (exit 3), before import writes any blob or tag.
#[test]
fn catalogs_that_disagree_with_their_manifests_are_rejected() {
    let w = Work::new();
    let good = forge::index();
    let dig = |ref_name: &str, f: &forge::Forged| {
        f.catalog.artifacts.iter().find(|a| a.ref_name() == ref_name).unwrap().clone()
    };
    let idx = dig("m/idx:v1", &good);
    let (child, layer) = (idx.manifests[0].clone(), idx.blobs.last().unwrap().clone());
    type Lie = Box<dyn Fn(&mut forge::Forged)>;
    let cases: Vec<(&str, Lie, String)> = vec![
        ("omits-layer", Box::new(|f| f.artifact("a/b:v1").blobs.pop().map(drop).unwrap()), "omits".into()),
        ("omits-child", Box::new(|f| drop(f.artifact("m/idx:v1").manifests.remove(0))), "omits".into()),
        (
            "child-media-type",
            Box::new({
                let c = child.clone();
                move |f| f.blob(&c).media_type = barge_bundle::oci::DOCKER_MANIFEST.into()
            }),
            "declares media type".into(),
        ),
        (
            "child-as-layer",
            Box::new({
                let c = child.clone();
                move |f| {
                    f.blob(&c).kind = BlobKind::Layer;
                    f.catalog.blobs.sort_by_key(|b| b.kind);
                }
            }),
            "lists it as a layer".into(),
        ),
        (
            "manifest-in-blobs",
            Box::new({
                let c = child.clone();
                move |f| f.artifact("m/idx:v1").blobs.push(c.clone())
            }),
            "the catalog adds".into(),
        ),
        (
            "manifest-in-blobs-only",
            Box::new({
                let c = child.clone();
                move |f| {
                    let a = f.artifact("m/idx:v1");
                    a.manifests.retain(|m| m != &c);
                    a.blobs.push(c.clone());
                }
            }),
            "omits".into(),
        ),
        (
            "tag-twice",
            Box::new(|f| {
                let a = f.artifact("a/b:v1").clone();
                f.catalog.artifacts.push(a);
            }),
            "twice".into(),
        ),
        (
            "unused-blob",
            Box::new(|f| {
                let stray = b"stray".to_vec();
                let d = Digest::sha256_of(&stray);
                f.catalog.blobs.push(barge_bundle::Blob {
                    digest: d.clone(),
                    size: 5,
                    media_type: barge_bundle::oci::OCI_LAYER_TAR.into(),
                    kind: BlobKind::Layer,
                });
                f.blobs.push((d, stray));
            }),
            "no artifact uses".into(),
        ),
        (
            "omits-only-use",
            Box::new({
                let l = layer.clone();
                move |f| f.artifact("m/idx:v1").blobs.retain(|b| b != &l)
            }),
            "omits".into(),
        ),
        (
            "layer-as-config",
            Box::new({
                let l = layer.clone();
                move |f| {
                    f.blob(&l).kind = BlobKind::Config;
                    f.catalog.blobs.sort_by_key(|b| b.kind);
                }
            }),
            "as a config, but the manifests use it as a layer".into(),
        ),
        ("artifact-size", Box::new(|f| f.artifact("m/idx:v1").size += 1), "but its manifest is".into()),
    ];
    for (name, lie, needle) in cases {
        let mut f = good.clone();
        lie(&mut f);
        assert_rejected(&w, name, &f.bundle(&[]), &needle);
        let target = w.path(&format!("dst-{name}"));
        let written: Vec<_> = snapshot(&target).into_iter().map(|(p, _)| p).collect();
        assert!(written.is_empty(), "import of {name} wrote {written:?}");
    }
    // The untouched forge imports, and skopeo reads every tag whole.
    std::fs::write(w.path("store-a/forged"), good.bundle(&[])).unwrap();
    barge_ok(&["verify", &w.s("store-a/forged")], 0);
    barge_ok(&["import", &w.s("store-a/forged"), "--registry", &w.reg("dst-forged")], 0);
    for tag in ["a/b:v1", "m/idx:v1"] {
        let out = skopeo(&[
            "copy",
            "--all",
            &format!("oci:{}/{tag}", w.s("dst-forged")),
            &format!("dir:{}", w.s(&format!("read-{}", tag.replace(['/', ':'], "-")))),
        ]);
        assert!(out.status.success(), "skopeo reads {tag}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// Compress `tar` as one zstd frame with a window of `2^window_log`.
fn zstd_of(tar: &[u8], window_log: u32) -> Vec<u8> {
    let mut enc = zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
    enc.long_distance_matching(window_log > 24).unwrap();
    enc.window_log(window_log).unwrap();
    std::io::Write::write_all(&mut enc, tar).unwrap();
    enc.finish().unwrap()
}

/// The zstd rule (one frame, at most a 16 MiB window, nothing after it, only
/// zeros after the archive inside it) holds for verify and import alike.
#[test]
fn zstd_bundles_are_one_bounded_frame() {
    let w = Work::new();
    let tar = good_bundle(&w);
    let whole = zstd_of(&tar, 21);
    std::fs::write(w.path("store-a/z-ok"), &whole).unwrap();
    barge_ok(&["verify", &w.s("store-a/z-ok")], 0);
    barge_ok(&["import", &w.s("store-a/z-ok"), "--registry", &w.reg("dst-z-ok")], 0);

    let mut two = zstd_of(&tar[..tar.len() / 2], 21);
    two.extend(zstd_of(&tar[tar.len() / 2..], 21));
    assert_rejected(&w, "z-two-frames", &two, "truncated");
    let mut after = tar.clone();
    after.extend(b"data after the archive");
    assert_rejected(&w, "z-after-tar", &zstd_of(&after, 21), "data after the end of the archive");
    let mut trailing = whole.clone();
    trailing.extend(zstd_of(b"garbage", 21));
    assert_rejected(&w, "z-trailing-frame", &trailing, "data after the end of the zstd frame");
    let mut junk = whole.clone();
    junk.extend(b"junk");
    assert_rejected(&w, "z-trailing-junk", &junk, "data after the end of the zstd frame");
    assert_rejected(&w, "z-long", &zstd_of(&tar, 27), "128 MiB zstd window");
}
