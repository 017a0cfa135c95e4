//! Platform selection end to end: a sparse index exported from a registry, imported into an `oci:` layout
//! and into distribution 2.8 (refused, then rewritten), judged by skopeo.

mod common;

use common::registry::TestRegistry;
use common::*;
use serde_json::Value;

const MULTI: &str = "samples/multiarch:v1";
const HELLO: &str = "samples/hello-world:v1";

fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(bytes))
}

/// The digest of the index's child for `arch`.
fn child(index: &[u8], arch: &str) -> String {
    let v: Value = serde_json::from_slice(index).unwrap();
    let c = v["manifests"].as_array().unwrap().iter().find(|m| m["platform"]["architecture"] == arch).unwrap();
    c["digest"].as_str().unwrap().to_string()
}

/// `skopeo copy` of one platform of `from` into an `oci:` layout; the digest of what arrived, or skopeo's error.
fn copy_platform(w: &Work, from: &str, arch: &str, name: &str) -> Result<String, String> {
    let to = format!("oci:{}:{arch}", w.s(name));
    let out = skopeo(&[
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        "--override-os",
        "linux",
        "--override-arch",
        arch,
        from,
        &to,
    ]);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(digest_of(&skopeo_raw(&to)))
}

#[test]
fn a_sparse_index_travels_into_layouts_and_is_refused_or_rewritten_by_distribution() {
    let w = Work::new();
    let src = TestRegistry::start();
    src.push(&w.path("src"), "samples/multiarch", "v1");
    src.push(&w.path("src"), "samples/hello-world", "v1");
    let index = src.raw(MULTI).unwrap();
    let (index_digest, arm, amd) = (digest_of(&index), child(&index, "arm64"), child(&index, "amd64"));
    let export = |to: &str, platform: &str| {
        let to = w.s(to);
        barge(&["export", "--registry", &src.host, "--to", &to, "--platform", platform, MULTI, HELLO])
    };

    // (e) A selection the index does not have: the error names what it has; nothing is written
    // (with ContinueOnErrors the other artifact goes alone, exit 6).
    let r = export("store-a/none", "linux/s390x");
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("has no manifest for linux/s390x; it has linux/amd64, linux/arm64"), "{}", r.stderr);
    assert!(!w.path("store-a/none").exists());
    let to = w.s("store-a/skipped");
    let args = ["export", "--output", "json", "--continue-on-errors", "--registry", &src.host, "--to", &to];
    let r = barge(&[&args[..], &["--platform", "linux/s390x", MULTI, HELLO]].concat());
    assert_eq!(r.code, 6, "{}", r.stderr);
    let j = r.json();
    let failed = j["artifacts"].as_array().unwrap().iter().find(|a| a["status"] == "Failed").unwrap();
    assert!(failed["error"].as_str().unwrap().contains("has no manifest for linux/s390x"), "{j}");
    assert_eq!(catalog_of(&std::fs::read(w.path("store-a/skipped")).unwrap()).artifacts.len(), 1);
    let r = export("store-a/none", "linux");
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("\"linux\" is not of the form os/arch[/variant]"), "{}", r.stderr);

    // (a) linux/arm64 only: the bundle verifies, its catalog lists only that child;
    // the single-platform image travels whole.
    let r = export("store-a/arm", "linux/arm64");
    assert_eq!(r.code, 0, "{}", r.stderr);
    barge_ok(&["verify", &w.s("store-a/arm")], 0);
    let catalog = catalog_of(&std::fs::read(w.path("store-a/arm")).unwrap());
    assert_eq!(catalog.format_version, 2);
    let multi = catalog.artifacts.iter().find(|a| a.ref_name() == MULTI).unwrap();
    assert_eq!(multi.platforms, ["linux/arm64"]);
    let manifests: Vec<String> = multi.manifests.iter().map(|d| d.to_string()).collect();
    assert_eq!(manifests, [arm.clone(), index_digest.clone()]);
    assert!(!catalog.blobs.iter().any(|b| b.digest.to_string() == amd), "the amd64 manifest travelled");
    let hello = catalog.artifacts.iter().find(|a| a.ref_name() == HELLO).unwrap();
    assert!(hello.platforms.is_empty());
    assert_eq!(hello.digest.to_string(), digest_of(&src.raw(HELLO).unwrap()));

    // (b) Into an `oci:` layout: the index as it was; skopeo copies arm64 out of it, not amd64.
    barge_ok(&["import", &w.s("store-a/arm"), "--registry", &w.reg("layout")], 0);
    let layout_ref = format!("oci:{}:v1", w.s("layout/samples/multiarch"));
    assert_eq!(digest_of(&skopeo_raw(&layout_ref)), index_digest);
    assert_eq!(copy_platform(&w, &layout_ref, "arm64", "copied-from-layout"), Ok(arm.clone()));
    assert!(copy_platform(&w, &layout_ref, "amd64", "copied-from-layout").is_err(), "amd64 was never carried");

    // (c) Into distribution 2.8: refused with the alternative named (exit 2), the index not tagged;
    // with ContinueOnErrors the image still arrives (exit 6).
    let dst = TestRegistry::start();
    let r = barge(&["import", &w.s("store-a/arm"), "--registry", &dst.host]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("refuses index samples/multiarch@"), "{}", r.stderr);
    assert!(r.stderr.contains("a sparse index"), "{}", r.stderr);
    assert!(r.stderr.trim_end().ends_with("; import with --platform-index rewrite"), "{}", r.stderr);
    assert_eq!(dst.raw(MULTI), None, "the refused index was tagged");
    let r =
        barge(&["import", "--output", "json", "--continue-on-errors", &w.s("store-a/arm"), "--registry", &dst.host]);
    assert_eq!(r.code, 6, "{}", r.stderr);
    let j = r.json();
    let failed: Vec<&Value> = j["artifacts"].as_array().unwrap().iter().filter(|a| a["status"] == "Failed").collect();
    assert_eq!(failed.len(), 1, "{}", r.stdout);
    assert_eq!(failed[0]["artifact"], MULTI);
    assert_eq!(dst.raw(MULTI), None);
    assert!(dst.raw(HELLO).is_some());

    // (d) Rewritten: a new index of arm64 alone, its digest reported next to the original; skopeo pulls it.
    let r = barge_ok(
        &["import", "--output", "json", "--platform-index", "rewrite", &w.s("store-a/arm"), "--registry", &dst.host],
        0,
    );
    let j = r.json();
    let outcome = j["artifacts"].as_array().unwrap().iter().find(|a| a["artifact"] == MULTI).unwrap().clone();
    assert_eq!(outcome["rewrittenFrom"], index_digest.as_str(), "{j}");
    let hello_outcome = j["artifacts"].as_array().unwrap().iter().find(|a| a["artifact"] == HELLO).unwrap();
    assert!(hello_outcome.get("rewrittenFrom").is_none(), "an image is not rewritten: {j}");
    let rewritten = dst.raw(MULTI).unwrap();
    let new_digest = digest_of(&rewritten);
    assert_ne!(new_digest, index_digest);
    assert_eq!(outcome["digest"], new_digest.as_str());
    let listed: Vec<String> = serde_json::from_slice::<Value>(&rewritten).unwrap()["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, std::slice::from_ref(&arm));
    let remote = format!("docker://{}/{MULTI}", dst.host);
    assert_eq!(copy_platform(&w, &remote, "arm64", "copied-from-registry"), Ok(arm.clone()));

    // Again, in text: the same rewritten index, said so; nothing moves.
    let r = barge_ok(&["import", "--platform-index", "rewrite", &w.s("store-a/arm"), "--registry", &dst.host], 0);
    assert!(r.stdout.contains(&format!("rewritten index {new_digest} (was {index_digest})")), "{}", r.stdout);
    assert_eq!(dst.raw(MULTI), Some(rewritten));
}

/// An import pipeline with RewritePlatformIndex: the run record names the rewritten index and the original.
#[test]
fn an_import_run_records_the_rewritten_index() {
    let w = Work::new();
    let az = common::azurite::Azurite::start();
    let (src, dst) = (TestRegistry::start(), TestRegistry::start());
    src.push(&w.path("src"), "samples/multiarch", "v1");
    let index_digest = digest_of(&src.raw(MULTI).unwrap());
    let dst_account = common::azurite::DST;
    let to = az.url(dst_account, "arm.tar", "racwdl");
    barge_ok(&["export", "--registry", &src.host, "--to", &to, "--platform", "linux/arm64", MULTI], 0);
    let sas = format!("?{}", az.url(dst_account, "x", "dlr").split_once('?').unwrap().1);
    let env = vec![("IMPORT_SAS".to_string(), sas)];
    let state = w.s("state");
    let run = |args: &[&str]| {
        let r = barge_in(&state, &env, args);
        assert_eq!(r.code, 0, "barge {args:?}\nstdout: {}\nstderr: {}", r.stdout, r.stderr);
        r
    };
    let container = format!("{}/{dst_account}/bundles", az.endpoint);
    run(&["pipeline", "import", "create", "imp1", "--registry", &dst.host, "--storage-container-uri", &container]
        .into_iter()
        .chain(["--secret", "env:IMPORT_SAS", "--options", "RewritePlatformIndex"])
        .collect::<Vec<_>>());
    run(&["run", "create", "r1", "--pipeline", "imp1", "--blob", "arm.tar"]);
    let rec = run(&["--output", "json", "run", "show", "r1"]).json();
    let artifacts = rec["properties"]["response"]["artifacts"].as_array().unwrap_or_else(|| panic!("{rec}")).clone();
    let multi = artifacts.iter().find(|a| a["artifact"] == MULTI).unwrap();
    assert_eq!(multi["rewrittenFrom"], index_digest.as_str(), "{rec}");
    assert_eq!(multi["digest"], digest_of(&dst.raw(MULTI).unwrap()).as_str(), "{rec}");
}

#[test]
fn a_variant_the_index_leaves_implicit_is_selected_as_skopeo_selects_it() {
    // The fixture's arm64 child names no variant: `linux/arm64/v8` is that child, as skopeo reads it.
    let w = Work::new();
    let arm = child(&skopeo_raw(&format!("oci:{}:v1", w.s("src/samples/multiarch"))), "arm64");
    let bundle = w.s("store-a/v8");
    barge_ok(&["export", "--registry", &w.reg("src"), "--to", &bundle, "--platform", "linux/arm64/v8", MULTI], 0);
    barge_ok(&["verify", &bundle], 0);
    barge_ok(&["import", "--registry", &w.reg("dst"), &bundle], 0);
    let to = format!("oci:{}:v8", w.s("v8"));
    let from = format!("oci:{}:v1", w.s("dst/samples/multiarch"));
    let out = skopeo(&[
        "copy",
        "--quiet",
        "--preserve-digests",
        "--override-arch",
        "arm64",
        "--override-variant",
        "v8",
        &from,
        &to,
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(digest_of(&skopeo_raw(&to)), arm);
}
