//! `barge inspect` of local bundles: plain and zstd, an index and a cosign referrer, text and JSON; bad heads exit 3.

mod common;

use common::*;

/// The samples and a cosign-style signature of hello-world (a `sha256-<hex>.sig` tag), exported plain and zstd.
fn bundles(w: &Work) -> (String, String) {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.path("src/samples/hello-world/index.json")).unwrap()).unwrap();
    let hello = index["manifests"][0]["digest"].as_str().unwrap().replace(':', "-");
    let sig = barge_fixtures::write_image(
        &w.path("src"),
        "samples/hello-world",
        &barge_fixtures::Image::new(vec![barge_fixtures::Layer { seed: 77, size: 300 }]),
    )
    .unwrap();
    barge_fixtures::tag(&w.path("src"), "samples/hello-world", &format!("{hello}.sig"), &sig).unwrap();
    let (plain, zstd) = (w.s("store-a/bundle.tar"), w.s("store-a/bundle.tar.zst"));
    for (to, extra) in [(&plain, None), (&zstd, Some("--compress=zstd"))] {
        let reg = w.reg("src");
        let mut args = vec!["export", "--registry", &reg, "--to", to];
        args.extend(extra);
        args.extend(SAMPLES);
        barge_ok(&args, 0);
    }
    (plain, zstd)
}

#[test]
fn plain_and_zstd_bundles_show_artifacts_platforms_referrers_and_sharing() {
    let w = Work::new();
    let (plain, zstd) = bundles(&w);
    let mut seen = Vec::new();
    // The one blob two artifacts use, from the catalog itself.
    let c = catalog_of(&std::fs::read(&plain).unwrap());
    let blobs_of = |name: &str| c.artifacts.iter().find(|a| a.ref_name() == name).unwrap().blobs.clone();
    let tools = blobs_of("library/tools:latest");
    let both: Vec<_> = blobs_of("samples/hello-world:v1").into_iter().filter(|d| tools.contains(d)).collect();
    assert_eq!(both.len(), 1);
    let shared = c.blobs.iter().find(|b| b.digest == both[0]).unwrap().size;
    for (bundle, compression) in [(&plain, "none"), (&zstd, "zstd")] {
        let j = barge_ok(&["inspect", "--output", "json", bundle], 0).json();
        assert_eq!(j["compression"], compression, "{j}");
        assert_eq!(j["formatVersion"], 1);
        assert_eq!(j["size"], std::fs::metadata(bundle).unwrap().len());
        assert_eq!(j["catalogDigest"], serde_json::Value::Null, "a local file keeps no catalogDigest: {j}");
        let artifacts = j["artifacts"].as_array().unwrap();
        assert_eq!(artifacts.len(), 4, "{j}");
        let by_repo = |repo: &str, tag: &str| {
            artifacts.iter().find(|a| a["repository"] == repo && a["tag"].as_str().unwrap().starts_with(tag)).unwrap()
        };
        let multi = by_repo("samples/multiarch", "v1");
        assert_eq!(multi["mediaType"], "application/vnd.oci.image.index.v1+json");
        assert_eq!(multi["platforms"], serde_json::json!(["linux/amd64", "linux/arm64"]));
        assert_eq!(multi["sparse"], false);
        let (hello, sig) = (by_repo("samples/hello-world", "v1"), by_repo("samples/hello-world", "sha256-"));
        assert_eq!(hello["referrers"], serde_json::json!([sig["reference"]]), "{j}");
        assert_eq!(sig["refersTo"], serde_json::json!([hello["reference"]]), "{j}");
        assert!(hello["reference"].as_str().unwrap().ends_with("/samples/hello-world:v1"), "{j}");
        // hello-world and tools share their base layer: stored once.
        let t = &j["totals"];
        assert_eq!(t["sharedBlobs"], 1, "{j}");
        assert_eq!(t["sharedBytes"], shared, "{j}");
        assert_eq!(t["savedBytes"], shared);
        let sum: u64 = artifacts.iter().map(|a| a["bytes"].as_u64().unwrap()).sum();
        assert_eq!(sum - t["bytes"].as_u64().unwrap(), shared);
        assert!(j["checked"].as_str().unwrap().contains("barge verify"));
        seen.push(j["artifacts"].clone());
    }
    assert_eq!(seen[0], seen[1], "plain and zstd bundles of the same artifacts look the same");

    let text = barge_ok(&["inspect", &plain], 0).stdout;
    for needle in [
        "compression none",
        "samples/multiarch:v1",
        "oci index  linux/amd64,linux/arm64",
        "  <- ",
        "1 blob(s) (5.5 KiB) shared by more than one artifact",
        "not computed; `barge verify` computes it",
        "`barge verify` checks the whole bundle",
    ] {
        assert!(text.contains(needle), "{needle:?} not in:\n{text}");
    }
    assert!(barge_ok(&["inspect", &zstd], 0).stdout.contains("compression zstd"));

    // --catalog prints the bundle's own barge-catalog.json, byte for byte.
    let c = barge_ok(&["inspect", "--catalog", &plain], 0).stdout;
    let (at, len) = entry_offset(&std::fs::read(&plain).unwrap(), "barge-catalog.json");
    assert_eq!(c.as_bytes(), &std::fs::read(&plain).unwrap()[at..at + len]);
}

/// `-` reads the head of standard input and stops there.
#[test]
fn a_stream_is_read_up_to_its_head() {
    let w = Work::new();
    let (plain, zstd) = bundles(&w);
    for bundle in [plain, zstd] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_barge"))
            .args(["inspect", "--output", "json", "-"])
            .stdin(std::fs::File::open(&bundle).unwrap())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(j["size"], serde_json::Value::Null);
        assert_eq!(j["artifacts"].as_array().unwrap().len(), 4);
    }
    // A writer that keeps the pipe open after the bundle: inspect ends once the head has passed.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_barge"))
        .args(["inspect", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let bytes = std::fs::read(w.path("store-a/bundle.tar")).unwrap();
    let writer = std::thread::spawn(move || {
        let _ = std::io::Write::write_all(&mut stdin, &bytes);
        std::thread::sleep(std::time::Duration::from_secs(20));
    });
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < std::time::Duration::from_secs(10), "inspect waited for the stream's end");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("samples/multiarch:v1"));
    drop(writer); // detached: it ends with the test process
}

#[test]
fn a_damaged_head_or_a_file_that_is_no_bundle_exits_3_in_one_line() {
    let w = Work::new();
    let (plain, _) = bundles(&w);
    let bytes = std::fs::read(&plain).unwrap();
    let (at, len) = entry_offset(&bytes, "barge-catalog.json");
    let first_manifest = catalog_of(&bytes).blobs[0].digest.layout_path();
    let (m_at, _) = entry_offset(&bytes, &first_manifest);
    let mut cases: Vec<(&str, Vec<u8>, &str)> = Vec::new();
    let mut catalog = bytes.clone();
    catalog[at + len / 2] = b'#';
    cases.push(("damaged catalog", catalog, "corrupt bundle"));
    let mut manifest = bytes.clone();
    manifest[m_at + 10] ^= 1;
    cases.push(("damaged manifest", manifest, "does not match its digest"));
    cases.push(("cut in the catalog", bytes[..at + len / 2].to_vec(), "truncated"));
    cases.push(("empty", Vec::new(), "truncated"));
    cases.push(("not a bundle", b"hello, this is text\n".repeat(100), "not a barge bundle"));
    for (name, data, needle) in cases {
        let path = w.path("store-b/bad");
        std::fs::write(&path, data).unwrap();
        let r = barge(&["inspect", &path.display().to_string()]);
        assert_eq!(r.code, 3, "{name}: {}", r.stderr);
        assert!(r.stderr.contains(needle), "{name}: {}", r.stderr);
        assert_eq!(r.stderr.trim_end().lines().count(), 1, "{name}: {}", r.stderr);
        assert!(r.stdout.is_empty(), "{name}: {}", r.stdout);
    }
    let r = barge(&["inspect", &w.s("store-b/missing")]);
    assert_eq!(r.code, barge(&["verify", &w.s("store-b/missing")]).code, "a missing file: as verify says");
    assert!(r.stderr.contains("not found"), "{}", r.stderr);
}

/// A head longer than the first window (a catalog and a manifest of 1600
/// layers): a plain bundle is read exactly up to its first config's header,
/// a zstd one decoded across several reads; the layers are never read.
#[test]
fn a_long_head_is_read_to_its_end_and_no_further() {
    let w = Work::new();
    let layers = (0..1600).map(|seed| barge_fixtures::Layer { seed: 1000 + seed, size: 2048 }).collect();
    let d = barge_fixtures::write_image(&w.path("src"), "many/layers", &barge_fixtures::Image::new(layers)).unwrap();
    barge_fixtures::tag(&w.path("src"), "many/layers", "v1", &d).unwrap();
    let reg = w.reg("src");
    let (plain, zstd) = (w.s("store-a/many.tar"), w.s("store-a/many.tar.zst"));
    barge_ok(&["export", "--registry", &reg, "--to", &plain, "many/layers:v1"], 0);
    barge_ok(&["export", "--registry", &reg, "--compress=zstd", "--to", &zstd, "many/layers:v1"], 0);
    let bytes = std::fs::read(&plain).unwrap();
    let c = catalog_of(&bytes);
    let first_config = c.blobs.iter().find(|b| b.kind != barge_bundle::BlobKind::Manifest).unwrap();
    let (head_end, _) = entry_offset(&bytes, &first_config.digest.layout_path());
    assert!(head_end > 128 << 10, "the head ({head_end} bytes) is longer than the first window");
    let j = barge_ok(&["inspect", "--output", "json", &plain], 0).json();
    assert_eq!(j["headBytesRead"], head_end as u64, "{}", j["headBytesRead"]);
    assert_eq!(j["artifacts"][0]["blobs"], 1602);
    let z = barge_ok(&["inspect", "--output", "json", &zstd], 0).json();
    let zsize = std::fs::metadata(&zstd).unwrap().len();
    assert!(z["headBytesRead"].as_u64().unwrap() < zsize, "{} of {zsize}", z["headBytesRead"]);
    assert!(z["headBytesRead"].as_u64().unwrap() > 64 << 10, "the compressed head took several reads");
    assert_eq!(z["artifacts"], j["artifacts"]);
}
