//! Split bundles (`export --part-size`): parts in local files and in Azurite, imported and judged by skopeo,
//! every damage named with exit 3 and nothing written, `join`, one part verified alone, the watcher.

mod common;

use std::path::Path;
use std::sync::OnceLock;

use common::azurite::{Azurite, DST, SRC};
use common::*;

/// One Azurite for the whole binary.
fn azurite() -> &'static Azurite {
    static AZ: OnceLock<Azurite> = OnceLock::new();
    AZ.get_or_init(Azurite::start)
}

/// The samples plus an image of 2.4 MiB of noise: a bundle of three 1 MiB parts.
fn work() -> Work {
    let w = Work::new();
    let img = barge_fixtures::Image::new(vec![
        barge_fixtures::Layer { seed: 1, size: 1500 << 10 },
        barge_fixtures::Layer { seed: 2, size: 900 << 10 },
    ]);
    let desc = barge_fixtures::write_image(&w.path("src"), "big/app", &img).unwrap();
    barge_fixtures::tag(&w.path("src"), "big/app", "v1", &desc).unwrap();
    w
}

const ARTIFACTS: [&str; 2] = ["big/app:v1", "samples/hello-world:v1"];

/// `barge export` of ARTIFACTS to `to`, with `extra` flags; its JSON report.
fn export(w: &Work, to: &str, extra: &[&str]) -> serde_json::Value {
    let reg = w.reg("src");
    let mut args = vec!["export", "--output", "json", "--registry", &reg, "--to", to];
    args.extend_from_slice(extra);
    args.extend(ARTIFACTS);
    barge_ok(&args, 0).json()
}

/// skopeo reads the same manifests in `oci:DST` as in the source.
fn same_as_source(w: &Work, dst: &str) {
    for a in ARTIFACTS {
        assert_eq!(skopeo_raw(&format!("oci:{}/{a}", w.s("src"))), skopeo_raw(&format!("oci:{}/{a}", w.s(dst))), "{a}");
    }
}

fn doc(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn a_split_bundle_in_local_files_verifies_imports_and_joins() {
    let w = work();
    let whole = export(&w, &w.s("store-a/whole.tar"), &[]);
    let split = export(&w, &w.s("store-a/b.tar"), &["--part-size", "1MiB"]);
    assert_eq!(split["catalogDigest"], whole["catalogDigest"], "a split bundle is the unsplit one, cut");
    let d = doc(&w.path("store-a/b.tar.parts.json"));
    assert_eq!(d["partsVersion"], 1);
    assert_eq!(d["catalogDigest"], whole["catalogDigest"]);
    assert_eq!(d["partSize"], 1 << 20);
    let parts = d["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 3, "{d}");
    let bytes = std::fs::read(w.path("store-a/whole.tar")).unwrap();
    let mut at = 0;
    for (i, p) in parts.iter().enumerate() {
        let name = format!("b.tar.part{:04}", i + 1);
        assert_eq!(p["name"], name.as_str());
        let part = std::fs::read(w.path(&format!("store-a/{name}"))).unwrap();
        assert_eq!(part, bytes[at..at + part.len()], "{name} is that stretch of the unsplit bundle");
        assert_eq!(p["sha256"], format!("sha256:{}", sha256_hex(&part)));
        at += part.len();
    }
    assert_eq!(at, bytes.len());
    // No temporary file is left beside the parts.
    let left: Vec<_> = std::fs::read_dir(w.path("store-a")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left.len(), 5, "{left:?}");

    let r = barge_ok(&["verify", "--output", "json", &w.s("store-a/b.tar.parts.json")], 0).json();
    assert_eq!(r["catalogDigest"], whole["catalogDigest"]);
    let r = barge_ok(&["verify", "--output", "json", &w.s("store-a/b.tar.part0002")], 0).json();
    assert_eq!(r["part"], "b.tar.part0002");
    // Imported by its parts.json, and by its first part.
    barge_ok(&["import", &w.s("store-a/b.tar.parts.json"), "--registry", &w.reg("dst")], 0);
    same_as_source(&w, "dst");
    barge_ok(&["import", &w.s("store-a/b.tar.part0001"), "--registry", &w.reg("dst2")], 0);
    same_as_source(&w, "dst2");
    let i = barge_ok(&["inspect", "--output", "json", &w.s("store-a/b.tar.parts.json")], 0).json();
    assert_eq!(i["size"], bytes.len(), "{i}");
    // join gives the unsplit bytes.
    let j = barge_ok(&["join", "--output", "json", &w.s("store-a/b.tar.parts.json"), "--to", &w.s("joined.tar")], 0);
    assert_eq!(j.json()["catalogDigest"], whole["catalogDigest"]);
    assert_eq!(std::fs::read(w.path("joined.tar")).unwrap(), bytes);
    // zstd: split after compression, the same digest as the unsplit compressed bundle.
    let z = export(&w, &w.s("store-b/z.tar.zst"), &["--compress", "zstd"]);
    let zs = export(&w, &w.s("store-b/zs"), &["--compress", "zstd", "--part-size", "1MiB"]);
    assert_eq!(zs["catalogDigest"], z["catalogDigest"]);
    barge_ok(&["import", &w.s("store-b/zs.parts.json"), "--registry", &w.reg("dst3")], 0);
    same_as_source(&w, "dst3");
}

/// Verify and import a damaged split bundle in `dir`: exit 3, `needle` named, no tag written.
fn refused(w: &Work, dir: &str, needle: &str) {
    let json = w.s(&format!("{dir}/b.tar.parts.json"));
    let r = barge(&["verify", &json]);
    assert_eq!(r.code, 3, "verify {dir}: {}", r.stderr);
    assert!(r.stderr.contains(needle), "verify {dir}: {needle:?} not in {}", r.stderr);
    let target = w.path(&format!("dst-{dir}"));
    let r = barge(&["import", &json, "--registry", &format!("oci:{}", target.display())]);
    assert_eq!(r.code, 3, "import {dir}: {}", r.stderr);
    assert!(r.stderr.contains(needle), "import {dir}: {needle:?} not in {}", r.stderr);
    let tagged: Vec<_> = snapshot(&target).into_iter().filter(|(p, _)| p.ends_with("index.json")).collect();
    assert!(tagged.is_empty(), "import of {dir} tagged something: {tagged:?}");
}

#[test]
fn missing_extra_reordered_and_damaged_parts_are_named() {
    let w = work();
    export(&w, &w.s("store-a/b.tar"), &["--part-size", "1MiB"]);
    let copy = |dir: &str| {
        std::fs::create_dir_all(w.path(dir)).unwrap();
        for n in ["b.tar.parts.json", "b.tar.part0001", "b.tar.part0002", "b.tar.part0003"] {
            std::fs::copy(w.path(&format!("store-a/{n}")), w.path(&format!("{dir}/{n}"))).unwrap();
        }
    };
    copy("missing");
    std::fs::remove_file(w.path("missing/b.tar.part0002")).unwrap();
    refused(&w, "missing", "b.tar.part0002");
    copy("extra");
    std::fs::copy(w.path("extra/b.tar.part0003"), w.path("extra/b.tar.part0004")).unwrap();
    refused(&w, "extra", "b.tar.part0004");
    copy("reordered");
    std::fs::rename(w.path("reordered/b.tar.part0001"), w.path("reordered/x")).unwrap();
    std::fs::rename(w.path("reordered/b.tar.part0002"), w.path("reordered/b.tar.part0001")).unwrap();
    std::fs::rename(w.path("reordered/x"), w.path("reordered/b.tar.part0002")).unwrap();
    refused(&w, "reordered", "b.tar.part0001");
    copy("damaged");
    let mut p = std::fs::read(w.path("damaged/b.tar.part0002")).unwrap();
    p[500_000] ^= 1;
    std::fs::write(w.path("damaged/b.tar.part0002"), &p).unwrap();
    refused(&w, "damaged", "b.tar.part0002");
    // The courier's check of one disc: the damaged one alone fails, its neighbour passes.
    let r = barge(&["verify", &w.s("damaged/b.tar.part0002")]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("b.tar.part0002") && r.stderr.contains("sha256"), "{}", r.stderr);
    barge_ok(&["verify", &w.s("damaged/b.tar.part0003")], 0);
    copy("short");
    std::fs::write(w.path("short/b.tar.part0003"), b"short").unwrap();
    refused(&w, "short", "b.tar.part0003");
    // join of a damaged bundle writes nothing.
    let r = barge(&["join", &w.s("damaged/b.tar.parts.json"), "--to", &w.s("joined.tar")]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(!w.path("joined.tar").exists());
}

#[test]
fn a_split_bundle_in_storage_is_copied_imported_and_joined() {
    let w = work();
    let az = azurite();
    let whole = export(&w, &w.s("store-a/whole.tar"), &[]);
    let url = az.url(SRC, "s/b.tar", "racwdl");
    let e = export(&w, &url, &["--part-size", "1MiB"]);
    assert_eq!(e["catalogDigest"], whole["catalogDigest"]);
    let digest = whole["catalogDigest"].as_str().unwrap();
    for n in 1..=3 {
        let (_, meta) = az.get(SRC, &format!("s/b.tar.part{n:04}")).expect("a part blob");
        let get = |k: &str| meta.iter().find(|(m, _)| m == k).map(|(_, v)| v.clone());
        assert_eq!(get("catalogdigest").as_deref(), Some(digest), "{meta:?}");
        assert_eq!(get("partindex"), Some(n.to_string()));
        assert_eq!(get("partcount").as_deref(), Some("3"));
    }
    assert!(!az.exists(SRC, "s/b.tar.part0004"));
    let json = az.url(SRC, "s/b.tar.parts.json", "racwdl");
    barge_ok(&["verify", &json], 0);
    barge_ok(&["verify", &az.url(SRC, "s/b.tar.part0003", "racwdl")], 0);
    // copy of a parts.json carries every part, then the parts.json.
    let dst = az.url(DST, "b.tar.parts.json", "racwdl");
    let c = barge_ok(&["copy", "--output", "json", &json, &dst], 0).json();
    assert_eq!(c["sha256"], digest);
    assert!(az.exists(DST, "b.tar.part0003") && az.exists(DST, "b.tar.parts.json"));
    let i = barge_ok(&["import", "--output", "json", &dst, "--registry", &w.reg("dst")], 0).json();
    assert_eq!(i["catalogDigest"], digest, "{i}");
    same_as_source(&w, "dst");
    barge_ok(&["join", &dst, "--to", &w.s("joined.tar")], 0);
    assert_eq!(std::fs::read(w.path("joined.tar")).unwrap(), std::fs::read(w.path("store-a/whole.tar")).unwrap());
    // A damaged part in storage is named, and nothing is imported.
    let (mut p, _) = az.get(DST, "b.tar.part0002").unwrap();
    p[10] ^= 1;
    std::fs::write(w.path("p2"), &p).unwrap();
    barge_ok(&["copy", "--overwrite", &w.s("p2"), &az.url(DST, "b.tar.part0002", "racwdl")], 0);
    let r = barge(&["import", &dst, "--registry", &w.reg("dst4")]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("b.tar.part0002"), "{}", r.stderr);
    assert!(!r.stderr.contains("sig="), "{}", r.stderr);
    assert!(snapshot(&w.path("dst4")).iter().all(|(p, _)| !p.ends_with("index.json")));
}

#[test]
fn the_watcher_imports_a_split_bundle_once_and_deletes_every_part() {
    let w = work();
    std::fs::create_dir_all(w.path("bundles")).unwrap();
    export(&w, &w.s("bundles/b.tar"), &["--part-size", "1MiB"]);
    let state = w.s("state");
    let (bundles, reg) = (w.s("bundles"), w.reg("dst"));
    let create = ["pipeline", "import", "create", "imp", "--registry", &reg, "--storage-container-uri", &bundles];
    let ok = |args: &[&str]| {
        let r = barge_in(&state, &[], args);
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
        r
    };
    ok(&[&create[..], &["--options", "DeleteSourceBlobOnSuccess"]].concat());
    ok(&["watch", "--once"]);
    ok(&["watch", "--once"]);
    let runs = ok(&["--output", "json", "run", "list"]).json()["runs"].as_array().unwrap().clone();
    assert_eq!(runs.len(), 1, "one run for the parts.json, none for its parts: {runs:?}");
    assert_eq!(runs[0]["properties"]["response"]["status"], "Succeeded", "{runs:?}");
    assert_eq!(runs[0]["properties"]["request"]["source"]["name"], "b.tar.parts.json", "{runs:?}");
    same_as_source(&w, "dst");
    let left: Vec<_> = std::fs::read_dir(w.path("bundles")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "DeleteSourceBlobOnSuccess left {left:?}");
}
