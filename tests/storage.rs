//! The bundle through Azure Blob Storage (Azurite): registry → source account → target account → registry.

mod common;

use common::azurite::{Azurite, DST, SRC};
use common::*;

#[test]
fn export_copy_import_through_two_accounts() {
    let w = Work::new();
    let az = Azurite::start();
    let src_url = az.url(SRC, "transfer/bundle.tar", "racwdl");
    let dst_url = az.url(DST, "transfer/bundle.tar", "racwdl");
    let reg = w.reg("src");
    let mut args = vec!["export", "--output", "json", "--registry", &reg];
    args.extend(["--to", &src_url]);
    args.extend(SAMPLES);
    let e = barge_ok(&args, 0).json();
    let c = barge_ok(&["copy", "--output", "json", "--verify", &src_url, &dst_url], 0).json();
    assert_eq!(c["sha256"], e["catalogDigest"], "{c}");
    assert_eq!(c["verified"], true);
    assert!(c["blocks"]["serverSide"].as_u64().unwrap() >= 1, "Put Block From URL was not used: {c}");
    // The copy's figures: every staged block timed.
    let f = &c["figures"];
    assert_eq!(f["blocks"], c["blocks"]["blocksStaged"], "{c}");
    assert_eq!(f["bytes"], c["size"], "{c}");
    for k in ["seconds", "mbPerS", "blocksPerS", "p50Ms", "p99Ms", "cpuPercent"] {
        assert!(f[k].as_f64().is_some_and(|v| v > 0.0), "{k} of {c}");
    }
    let i = barge_ok(&["import", "--output", "json", &dst_url, "--registry", &w.reg("dst")], 0).json();
    assert_eq!(i["catalogDigest"], e["catalogDigest"]);
    for (repo, tag) in [("samples/hello-world", "v1"), ("samples/multiarch", "v1"), ("library/tools", "latest")] {
        assert_eq!(
            skopeo_raw(&format!("oci:{}/{repo}:{tag}", w.s("src"))),
            skopeo_raw(&format!("oci:{}/{repo}:{tag}", w.s("dst"))),
            "{repo}:{tag}"
        );
    }
    // Exporting again without --overwrite is refused; the blob stays as it was.
    let r = barge(&["export", "--registry", &reg, "--to", &src_url, "samples/hello-world:v1"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--overwrite"), "{}", r.stderr);
    let text = barge_ok(&["copy", "--overwrite", &src_url, &dst_url], 0).stdout;
    assert!(text.contains(" MB/s over ") && text.contains("block latency p50 "), "{text}");
    let again = barge_ok(&["copy", "--output", "json", "--overwrite", &src_url, &w.s("store-b/check")], 0).json();
    assert_eq!(again["sha256"], e["catalogDigest"]);
    // No SAS signature appears in any output.
    for out in [&r.stdout, &r.stderr] {
        assert!(!out.contains("sig="), "{out}");
    }
}

/// A local file of `mib` MiB of noise, uploaded to `blob` in the source account.
fn upload_noise(w: &Work, az: &Azurite, blob: &str, mib: u64, seed: u64) -> String {
    let d = barge_fixtures::write_image(
        &w.path("noise"),
        &format!("n/x{seed}"),
        &barge_fixtures::Image::new(vec![barge_fixtures::Layer { seed, size: mib << 20 }]),
    )
    .unwrap();
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.path(&format!("noise/n/x{seed}/{}", d.digest.layout_path()))).unwrap())
            .unwrap();
    let layer = m["layers"][0]["digest"].as_str().unwrap().replace(':', "/");
    let file = w.s(&format!("noise/n/x{seed}/blobs/{layer}"));
    let url = az.url(SRC, blob, "racwdl");
    barge_ok(&["copy", "--overwrite", &file, &url], 0);
    url
}

#[test]
fn a_killed_copy_resumes_with_the_blocks_it_staged() {
    let w = Work::new();
    let az = Azurite::start();
    let src = upload_noise(&w, &az, "big.bin", 160, 42);
    let dst = az.url(DST, "big.bin", "racwdl");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_barge"))
        .args(["copy", "--concurrency", "1", &src, &dst])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while az.uncommitted_blocks(DST, "big.bin") < 3 {
        assert!(child.try_wait().unwrap().is_none(), "the copy ended before it could be killed");
        assert!(start.elapsed() < std::time::Duration::from_secs(60));
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(!az.exists(DST, "big.bin"), "a killed copy committed something");
    let r = barge_ok(&["copy", "--output", "json", "--verify", &src, &dst], 0).json();
    let (blocks, staged) = (r["blocks"]["blocks"].as_u64().unwrap(), r["blocks"]["blocksStaged"].as_u64().unwrap());
    assert!(staged < blocks, "the second run staged every block again: {r}");
    assert_eq!(r["verified"], true);
    let src_sha = barge_ok(&["copy", "--output", "json", &src, &w.s("store-b/check")], 0).json()["sha256"].clone();
    assert_eq!(r["sha256"], src_sha);
}

#[test]
fn a_source_changed_during_the_copy_commits_nothing() {
    let w = Work::new();
    let az = Azurite::start();
    let src = upload_noise(&w, &az, "moving.bin", 160, 7);
    let dst = az.url(DST, "moving.bin", "racwdl");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_barge"))
        .args(["copy", "--concurrency", "1", &src, &dst])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    while az.uncommitted_blocks(DST, "moving.bin") < 1 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    upload_noise(&w, &az, "moving.bin", 1, 8); // replace the source mid-copy
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("changed during the copy"), "{stderr}");
    assert!(!az.exists(DST, "moving.bin"), "a copy of a changing source was committed");
}

#[test]
fn sas_problems_are_named_and_never_shown() {
    let w = Work::new();
    let az = Azurite::start();
    let good = upload_noise(&w, &az, "b.bin", 1, 3);
    // Existing destination without --overwrite: refused, untouched.
    let dst = az.url(DST, "b.bin", "racwdl");
    barge_ok(&["copy", &good, &dst], 0);
    let r = barge(&["copy", &good, &dst]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("already exists") && r.stderr.contains("--overwrite"), "{}", r.stderr);
    // if-source-newer skips a destination that is not older.
    let r = barge_ok(&["copy", "--output", "json", "--overwrite=if-source-newer", &good, &dst], 0);
    assert_eq!(r.json()["skipped"], true);

    // An expired SAS: exit 4, says so.
    let key = az.key(SRC);
    let expired = barge_transfer::store::url::sign_container_sas(
        key.key_bytes(),
        SRC,
        "bundles",
        "racwdl",
        "2020-01-01T00:00:00Z",
        "2020-01-02T00:00:00Z",
    );
    let url = format!("{}?{}", az.bare(SRC, "b.bin"), expired.expose());
    let r = barge(&["copy", &url, &w.s("store-b/x")]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(r.stderr.contains("expired"), "{}", r.stderr);
    // A SAS without write permission: names the letter.
    let read_only = az.url(DST, "c.bin", "rl");
    let r = barge(&["copy", &good, &read_only]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(r.stderr.contains("'w'"), "{}", r.stderr);
    // A planted signature appears in no output, error or not.
    let planted = format!("{}?sv=2021-08-06&sr=c&sp=r&se=2099-01-01&sig=PLANTEDFAKESIGNATURE", az.bare(SRC, "b.bin"));
    for args in [
        vec!["copy", planted.as_str(), "/nonexistent-dir/x"],
        vec!["copy", "--output", "json", planted.as_str(), "/nonexistent-dir/x"],
        vec!["import", planted.as_str(), "--registry", "oci:/tmp/nothing-here"],
        vec!["export", "--registry", "oci:/nonexistent", "--to", planted.as_str(), "a:b"],
    ] {
        let r = barge(&args);
        assert_ne!(r.code, 0);
        assert!(!r.stdout.contains("PLANTED") && !r.stderr.contains("PLANTED"), "{args:?}: {}{}", r.stdout, r.stderr);
    }
    // Container missing: named.
    let r = barge(&["copy", &good, &format!("{}/{}/nocontainer/x?{}", az.endpoint, DST, "sig=x")]);
    assert_ne!(r.code, 0);
    assert!(!r.stderr.contains("sig=x"), "{}", r.stderr);
}

#[test]
fn registry_to_accounts_to_registry_with_relay_and_delete() {
    let w = Work::new();
    let az = Azurite::start();
    let src = common::registry::TestRegistry::start();
    let dst = common::registry::TestRegistry::start();
    for (repo, tag) in [("samples/hello-world", "v1"), ("samples/multiarch", "v1"), ("library/tools", "latest")] {
        src.push(&w.path("src"), repo, tag);
    }
    let a = az.url(SRC, "flow/bundle", "racwdl");
    let b = az.url(DST, "flow/bundle", "racwdl");
    let mut args = vec!["export", "--output", "json", "--registry", &src.host, "--to", &a];
    args.extend(SAMPLES);
    let e = barge_ok(&args, 0).json();
    // Through this machine this time, as when the target cannot reach the source.
    let c = barge_ok(&["copy", "--output", "json", "--relay", &a, &b], 0).json();
    assert_eq!(c["blocks"]["serverSide"], 0, "{c}");
    // Import with a SAS that may read and list but not delete: imported, with a warning naming 'd'.
    let read_only = az.url(DST, "flow/bundle", "rl");
    let r = barge_ok(&["import", &read_only, "--registry", &dst.host, "--delete-source-blob-on-success"], 0);
    assert!(r.stderr.contains("'d'"), "{}", r.stderr);
    assert!(az.exists(DST, "flow/bundle"));
    for (repo, tag) in [("samples/hello-world", "v1"), ("samples/multiarch", "v1"), ("library/tools", "latest")] {
        assert_eq!(dst.raw(&format!("{repo}:{tag}")), src.raw(&format!("{repo}:{tag}")), "{repo}:{tag}");
    }
    // With delete permission the bundle goes after the import.
    let i =
        barge_ok(&["import", "--output", "json", &b, "--registry", &dst.host, "--delete-source-blob-on-success"], 0)
            .json();
    assert_eq!(i["sourceDeleted"], true);
    assert_eq!(i["catalogDigest"], e["catalogDigest"]);
    assert!(!az.exists(DST, "flow/bundle"));
}

/// Add an image with one `mib` MiB layer to the test's source layout as `repo:v1`.
fn add_big_image(w: &Work, repo: &str, mib: u64, seed: u64) {
    let image = barge_fixtures::Image::new(vec![barge_fixtures::Layer { seed, size: mib << 20 }]);
    let d = barge_fixtures::write_image(&w.path("src"), repo, &image).unwrap();
    barge_fixtures::tag(&w.path("src"), repo, "v1", &d).unwrap();
}

fn spawn_export(reg: &str, to: &str, overwrite: bool, artifacts: &[&str]) -> std::process::Child {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_barge"));
    cmd.args(["export", "--output", "json", "--registry", reg, "--to", to]);
    if overwrite {
        cmd.arg("--overwrite");
    }
    cmd.args(artifacts).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    cmd.spawn().unwrap()
}

/// Two exports of different artifact sets into one blob at the same time, many
/// rounds, with and without --overwrite. Whatever each reports, the stored blob
/// is one whole bundle: it verifies, its sha256 is its `catalogdigest` metadata
/// and the digest an export that exited 0 printed; without --overwrite at most
/// one export succeeds and the other is told the blob exists (exit 2).
#[test]
fn concurrent_exports_into_one_blob_store_one_whole_bundle() {
    let w = Work::new();
    let az = Azurite::start();
    // Bundles of several blocks each (8 MiB blocks), so the writers interleave.
    add_big_image(&w, "big/one", 10, 101);
    add_big_image(&w, "big/two", 12, 102);
    let reg = w.reg("src");
    let sets: [&[&str]; 2] =
        [&["samples/hello-world:v1", "big/one:v1"], &["samples/multiarch:v1", "big/two:v1", "library/tools"]];
    for overwrite in [false, true] {
        for round in 0..8 {
            let blob = format!("race/{overwrite}-{round}.tar");
            let url = az.url(SRC, &blob, "racwdl");
            let children = [spawn_export(&reg, &url, overwrite, sets[0]), spawn_export(&reg, &url, overwrite, sets[1])];
            let outs: Vec<_> = children.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
            let mut reported = Vec::new();
            let mut codes = Vec::new();
            for o in &outs {
                let (code, stdout, stderr) = (
                    o.status.code().unwrap_or(-1),
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr),
                );
                codes.push(code);
                if code == 0 {
                    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
                    reported.push(v["catalogDigest"].as_str().unwrap().to_string());
                } else if !overwrite {
                    assert_eq!(code, 2, "round {round}: {stdout}{stderr}");
                    assert!(format!("{stdout}{stderr}").contains("exists"), "round {round}: {stdout}{stderr}");
                } else {
                    // The other writer's commit discarded this one's staged blocks: said, not hidden.
                    assert_eq!(code, 1, "round {round}: {stdout}{stderr}");
                    assert!(format!("{stdout}{stderr}").contains("another writer"), "round {round}: {stdout}{stderr}");
                }
            }
            let ctx = format!("overwrite {overwrite}, round {round}, exit codes {codes:?}");
            eprintln!("{ctx}");
            if !overwrite {
                assert!(reported.len() <= 1, "{ctx}: both exports succeeded without --overwrite");
            }
            let Some((bytes, meta)) = az.get(SRC, &blob) else {
                assert!(reported.is_empty(), "{ctx}: an export exited 0 but no blob was stored");
                continue;
            };
            let actual = format!("sha256:{}", sha256_hex(&bytes));
            let file = w.path(&format!("store-a/race-{overwrite}-{round}.tar"));
            std::fs::write(&file, &bytes).unwrap();
            let v = barge(&["verify", &file.display().to_string()]);
            assert_eq!(v.code, 0, "{ctx}: the stored blob does not verify: {}", v.stderr);
            let meta_digest = meta.iter().find(|(k, _)| k == "catalogdigest").map(|(_, v)| v.clone());
            assert_eq!(meta_digest.as_deref(), Some(actual.as_str()), "{ctx}: content and catalogdigest disagree");
            assert!(!reported.is_empty(), "{ctx}: a blob was stored but no export exited 0");
            assert!(reported.contains(&actual), "{ctx}: stored {actual}, reported {reported:?}");
            if !overwrite {
                assert_eq!(reported, vec![actual.clone()], "{ctx}");
            }
        }
    }
}

/// A storage URL with a (fake) SAS on 127.0.0.1:`port`.
fn url_on(port: u16) -> String {
    format!("http://127.0.0.1:{port}/{SRC}/bundles/x.tar?sv=2021-08-06&sr=c&sp=racwdl&sig=NETWORKSECRET")
}

/// A run against an endpoint that is not there ends within the stated budget,
/// exit 1, naming the endpoint and the attempts, never the SAS.
fn assert_gives_up(args: &[&str], port: u16, limit: std::time::Duration) {
    let start = std::time::Instant::now();
    let r = barge(args);
    let took = start.elapsed();
    eprintln!("barge {:?} gave up after {took:.1?}", args[0]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(took < limit, "took {took:?}: {}", r.stderr);
    assert!(r.stderr.contains(&format!("127.0.0.1:{port}")), "{}", r.stderr);
    assert!(r.stderr.contains("gave up after") && r.stderr.contains("attempts"), "{}", r.stderr);
    assert!(!r.stderr.contains("NETWORKSECRET") && !r.stdout.contains("NETWORKSECRET"), "{}", r.stderr);
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
}

#[test]
fn a_dead_storage_port_fails_within_the_budget_naming_the_endpoint() {
    let w = Work::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = url_on(port);
    let limit = std::time::Duration::from_secs(60);
    assert_gives_up(&["copy", &url, &w.s("store-a/x")], port, limit);
    assert_gives_up(&["export", "--registry", &w.reg("src"), "--to", &url, "samples/hello-world:v1"], port, limit);
}

#[test]
fn a_storage_endpoint_that_never_answers_is_given_up() {
    let w = Work::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accept every connection and hold it open, saying nothing.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming() {
            held.push(s);
        }
    });
    let url = url_on(port);
    // Two answer timeouts (30 s each) and a backoff: the retry window (60 s) is spent.
    assert_gives_up(&["copy", &url, &w.s("store-a/x")], port, std::time::Duration::from_secs(100));
}

#[test]
fn a_storage_endpoint_killed_mid_copy_ends_the_copy() {
    let w = Work::new();
    let mut az = Azurite::start();
    let src = upload_noise(&w, &az, "dying.bin", 48, 9);
    let dst = az.url(DST, "dying.bin", "racwdl");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_barge"))
        .args(["copy", "--relay", "--concurrency", "1", &src, &dst])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    while az.uncommitted_blocks(DST, "dying.bin") < 1 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    az.kill();
    let start = std::time::Instant::now();
    let out = child.wait_with_output().unwrap();
    let took = start.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("the copy ended {took:.1?} after the storage endpoint died");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(took < std::time::Duration::from_secs(60), "took {took:?}: {stderr}");
    let endpoint = az.endpoint.trim_start_matches("http://");
    assert!(stderr.contains(endpoint) && stderr.contains("gave up after"), "{stderr}");
    assert!(!stderr.contains("sig="), "{stderr}");
}

/// A read from storage whose body breaks off after its answer began (a
/// dropped connection, not a refused request) goes on where it stopped: a
/// relayed copy whose first three block reads are cut halfway, and a download
/// to a file whose first two reads are, both arrive whole.
#[test]
fn a_read_cut_mid_body_goes_on_where_it_stopped() {
    use common::azurite::{Fault, FaultProxy};
    let w = Work::new();
    let az = Azurite::start();
    let src = upload_noise(&w, &az, "cut.bin", 20, 13);
    let (original, _) = az.get(SRC, "cut.bin").unwrap();
    let cutting = |first: usize| {
        let reads = std::sync::atomic::AtomicUsize::new(0);
        FaultProxy::start(&az.endpoint, move |_, what| {
            let read = what.starts_with("GET ") && what.contains("/srcacct/") && !what.contains("comp=");
            match read && reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < first {
                true => Fault::CutBody,
                false => Fault::Pass,
            }
        })
    };
    let cuts = |p: &FaultProxy| p.log.lock().unwrap().iter().filter(|(_, f)| *f == Fault::CutBody).count();

    let proxy = cutting(3);
    barge_ok(&["copy", "--relay", &proxy.through(&az, &src), &az.url(DST, "cut.bin", "racwdl")], 0);
    assert!(az.get(DST, "cut.bin").unwrap().0 == original, "the relayed copy differs from its source");
    assert_eq!(cuts(&proxy), 3, "{:?}", proxy.log.lock().unwrap());

    let proxy = cutting(2);
    barge_ok(&["copy", &proxy.through(&az, &src), &w.s("local.bin")], 0);
    assert!(std::fs::read(w.path("local.bin")).unwrap() == original, "the download differs from its source");
    assert_eq!(cuts(&proxy), 2, "{:?}", proxy.log.lock().unwrap());
}

/// A SAS without 'w' fails an export the same way whatever its size: exit 4,
/// naming the letter (a large one used to fail with the writer's "broken pipe", exit 1).
#[test]
fn an_export_to_a_read_only_sas_is_refused_the_same_way_at_any_size() {
    let w = Work::new();
    let az = Azurite::start();
    add_big_image(&w, "big/one", 40, 111);
    let ro = az.url(SRC, "ro.tar", "rl");
    let reg = w.reg("src");
    for artifact in ["samples/hello-world:v1", "big/one:v1"] {
        for compression in [None, Some("zstd")] {
            let mut args = vec!["export", "--registry", &reg, "--to", &ro, artifact];
            if let Some(c) = compression {
                args.extend(["--compress", c]);
            }
            let r = barge(&args);
            assert_eq!(r.code, 4, "{artifact} {compression:?}: {}", r.stderr);
            assert!(r.stderr.contains("lacks the 'w' permission"), "{artifact}: {}", r.stderr);
            assert!(!r.stderr.contains("broken pipe") && !r.stderr.contains("sig="), "{}", r.stderr);
        }
    }
    assert!(!az.exists(SRC, "ro.tar"));
}

/// An empty blob is a truncated bundle wherever it is read from: exit 3, as the same file locally.
#[test]
fn an_empty_bundle_in_storage_is_an_integrity_error() {
    let w = Work::new();
    let az = Azurite::start();
    std::fs::write(w.path("empty.tar"), b"").unwrap();
    let url = az.url(SRC, "empty.tar", "racwdl");
    barge_ok(&["copy", &w.s("empty.tar"), &url], 0);
    assert_eq!(az.get(SRC, "empty.tar").unwrap().0.len(), 0);
    let local = barge(&["import", &w.s("empty.tar"), "--registry", &w.reg("dst")]);
    assert_eq!(local.code, 3, "{}", local.stderr);
    let remote = barge(&["import", &url, "--registry", &w.reg("dst")]);
    assert_eq!(remote.code, 3, "{}", remote.stderr);
    assert!(remote.stderr.contains("truncated"), "{}", remote.stderr);
    assert!(!remote.stderr.contains("sig="), "{}", remote.stderr);
    // Nothing was imported.
    assert!(snapshot(&w.path("dst")).is_empty());
}

/// Storage answers that fail are retried within the budget: 503s on blocks, and
/// a commit whose answer is lost (it took effect) is recognised as this
/// export's own, not refused as "already exists".
#[test]
fn failed_storage_answers_are_retried_and_a_lost_commit_answer_is_recognised() {
    use common::azurite::{Fault, FaultProxy};
    let w = Work::new();
    let az = Azurite::start();
    add_big_image(&w, "big/one", 20, 121);
    let reg = w.reg("src");
    let lost = std::sync::atomic::AtomicBool::new(false);
    let proxy = FaultProxy::start(&az.endpoint, move |_, what| {
        let commit = what.contains("comp=blocklist") && what.starts_with("PUT ");
        if commit && !lost.swap(true, std::sync::atomic::Ordering::SeqCst) {
            // The first commit goes through but its answer is lost.
            return Fault::LoseAnswer;
        }
        Fault::Pass
    });
    let url = proxy.through(&az, &az.url(SRC, "retried.tar", "racwdl"));
    let e = barge_ok(&["export", "--output", "json", "--registry", &reg, "--to", &url, "big/one:v1"], 0).json();
    let (bytes, meta) = az.get(SRC, "retried.tar").unwrap();
    let digest = format!("sha256:{}", sha256_hex(&bytes));
    assert_eq!(e["catalogDigest"], digest.as_str());
    assert!(meta.contains(&("catalogdigest".to_string(), digest.clone())));
    let commits =
        proxy.log.lock().unwrap().iter().filter(|(w, _)| w.contains("comp=blocklist") && w.starts_with("PUT ")).count();
    assert!(commits >= 2, "the commit was not retried: {:?}", proxy.log.lock().unwrap());

    // Every second block answered 503 once: retried, the export succeeds whole.
    let seen = std::sync::Mutex::new(std::collections::HashSet::new());
    let proxy = FaultProxy::start(&az.endpoint, move |n, what| {
        if what.contains("comp=block&") && n % 2 == 0 && seen.lock().unwrap().insert(what.to_string()) {
            return Fault::Status(503);
        }
        Fault::Pass
    });
    let url = proxy.through(&az, &az.url(SRC, "busy.tar", "racwdl"));
    let e = barge_ok(&["export", "--output", "json", "--registry", &reg, "--to", &url, "big/one:v1"], 0).json();
    let (bytes, _) = az.get(SRC, "busy.tar").unwrap();
    assert_eq!(e["catalogDigest"], format!("sha256:{}", sha256_hex(&bytes)).as_str());
    assert!(proxy.log.lock().unwrap().iter().any(|(_, f)| *f == Fault::Status(503)), "no fault was injected");
}

/// `verify` reads a bundle where it lies in storage, with the least a reader
/// needs (a SAS with `r` alone), applies the same rules as to a file, and
/// never prints the SAS, whether it passes or fails.
#[test]
fn verify_reads_a_bundle_in_storage_and_never_shows_its_sas() {
    let w = Work::new();
    let az = Azurite::start();
    let mut args =
        vec!["export", "--registry", &w.reg("src"), "--to"].into_iter().map(String::from).collect::<Vec<_>>();
    args.push(w.s("good.tar"));
    args.extend(SAMPLES.iter().map(|s| s.to_string()));
    barge_ok(&args.iter().map(String::as_str).collect::<Vec<_>>(), 0);
    let good = std::fs::read(w.path("good.tar")).unwrap();
    let mut damaged = good.clone();
    let n = damaged.len();
    damaged[n * 3 / 4] ^= 1;
    std::fs::write(w.path("damaged.tar"), &damaged).unwrap();
    std::fs::write(w.path("empty.tar"), b"").unwrap();
    for name in ["good.tar", "damaged.tar", "empty.tar"] {
        barge_ok(&["copy", &w.s(name), &az.url(SRC, name, "racwdl")], 0);
    }
    let read_only = |name: &str| az.url(SRC, name, "r");
    let sig = |url: &str| url.split("sig=").nth(1).unwrap().split('&').next().unwrap().to_string();

    let url = read_only("good.tar");
    let r = barge_ok(&["verify", "--output", "json", &url], 0);
    assert_eq!(r.json()["catalogDigest"], format!("sha256:{}", sha256_hex(&good)));
    assert!(!r.stdout.contains(&sig(&url)) && !r.stderr.contains(&sig(&url)), "{}{}", r.stdout, r.stderr);
    for (name, needle) in [("damaged.tar", ""), ("empty.tar", "truncated")] {
        let url = read_only(name);
        let r = barge(&["verify", &url]);
        assert_eq!(r.code, 3, "{name}: {}", r.stderr);
        assert!(r.stderr.contains(needle), "{name}: {}", r.stderr);
        assert!(!r.stdout.contains(&sig(&url)) && !r.stderr.contains(&sig(&url)), "{name}: {}", r.stderr);
    }
}

/// `-vv` shows what barge and its libraries do, and never a SAS or a password.
#[test]
fn verbose_logs_never_show_a_secret() {
    let w = Work::new();
    let az = Azurite::start();
    let url = az.url(SRC, "logged.tar", "racwdl");
    let sig = url.split("sig=").nth(1).unwrap().split('&').next().unwrap().to_string();
    let r = barge(&["-vv", "export", "--registry", &w.reg("src"), "--to", &url, "samples/hello-world:v1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("DEBUG"), "-vv logs the libraries' events: {}", r.stderr);
    for s in [sig.as_str(), &percent_encoding::percent_decode_str(&sig).decode_utf8_lossy()] {
        assert!(!r.stderr.contains(s) && !r.stdout.contains(s), "the SAS signature was logged");
    }

    let password = "s3cret-pass-word";
    let reg = common::registry::TestRegistry::start_with_auth("alice", password);
    let basic = base64_of(&format!("alice:{password}"));
    let r = barge_with(
        &["-vv", "import", &url, "--registry", &reg.host, "--username", "alice", "--password-stdin"],
        &[],
        &format!("{password}\n"),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    for s in [password, basic.as_str(), sig.as_str()] {
        assert!(!r.stderr.contains(s) && !r.stdout.contains(s), "a secret was logged");
    }
}

fn base64_of(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// The digest of 1 GiB of zeros (`head -c 1G /dev/zero | sha256sum`).
const ZEROS_1G: &str = "49bc20df15e412a64472421e13fe86ff1c5165e18b2afccf160d4dc19fe68a14";

/// A bundle whose one layer is 1 GiB of zeros: its head (everything before
/// the layer's bytes) and its whole size. The rest is zeros: the layer, then
/// the end-of-archive blocks.
fn zeros_bundle_head() -> (Vec<u8>, u64) {
    use barge_bundle::catalog::Planned;
    use barge_bundle::oci::{OCI_CONFIG, OCI_LAYER_TAR, OCI_MANIFEST};
    use barge_bundle::tar::{encode_header, padding, Kind};
    use barge_bundle::{Artifact, Blob, BlobKind, Catalog, Digest};
    let zeros: u64 = 1 << 30;
    let layer = Digest::parse(&format!("sha256:{ZEROS_1G}")).unwrap();
    let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": Digest::sha256_of(&config), "size": config.len()},
        "layers": [{"mediaType": OCI_LAYER_TAR, "digest": layer, "size": zeros}],
    }))
    .unwrap();
    let md = Digest::sha256_of(&manifest);
    let artifact = Artifact {
        request: "big/zeros:v1".into(),
        registry: Some("registry.example".into()),
        repository: "big/zeros".into(),
        tag: Some("v1".into()),
        digest: md.clone(),
        media_type: OCI_MANIFEST.into(),
        size: manifest.len() as u64,
        manifests: vec![md.clone()],
        blobs: vec![Digest::sha256_of(&config), layer.clone()],
        platforms: Vec::new(),
    };
    let blob = |data: &[u8], media_type: &str, kind| Blob {
        digest: Digest::sha256_of(data),
        size: data.len() as u64,
        media_type: media_type.into(),
        kind,
    };
    let blobs = vec![
        blob(&manifest, OCI_MANIFEST, BlobKind::Manifest),
        blob(&config, OCI_CONFIG, BlobKind::Config),
        Blob { digest: layer.clone(), size: zeros, media_type: OCI_LAYER_TAR.into(), kind: BlobKind::Layer },
    ];
    let catalog = Catalog::new("barge-test", "2026-01-01T00:00:00Z", "registry.example", vec![artifact], blobs);
    let mut head = Vec::new();
    let put = |head: &mut Vec<u8>, name: &str, bytes: &[u8]| {
        head.extend(encode_header(name, bytes.len() as u64, Kind::File));
        head.extend(bytes);
        head.resize(head.len() + padding(bytes.len() as u64), 0);
    };
    for p in catalog.plan() {
        match p {
            Planned::File { name, bytes } => put(&mut head, name, &bytes),
            Planned::Dir(name) => head.extend(encode_header(&name, 0, Kind::Dir)),
            Planned::Blob(i) if catalog.blobs[i].digest == layer => {
                head.extend(encode_header(&layer.layout_path(), zeros, Kind::File));
            }
            Planned::Blob(i) => {
                let b = &catalog.blobs[i];
                put(&mut head, &b.digest.layout_path(), if b.digest == md { &manifest } else { &config });
            }
        }
    }
    let size = head.len() as u64 + zeros + 1024;
    (head, size)
}

/// One raw request to Azurite with a body; returns the status.
fn azurite_put(az: &Azurite, path: &str, headers: &[(&str, String)], body: &[u8]) -> u16 {
    use std::io::{Read, Write};
    let host = az.endpoint.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(host).unwrap();
    let mut req = format!("PUT {path} HTTP/1.1\r\nHost: {host}\r\nx-ms-version: 2021-08-06\r\nConnection: close\r\n");
    for (k, v) in headers {
        req += &format!("{k}: {v}\r\n");
    }
    req += &format!("Content-Length: {}\r\n\r\n", body.len());
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    resp.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// `barge inspect` of a 1 GiB bundle in storage reads its head only: a
/// counting proxy between barge and Azurite measures what Azurite sent.
#[test]
fn inspect_of_a_1_gib_bundle_in_storage_reads_under_1_mib() {
    let az = Azurite::start();
    let (head, size) = zeros_bundle_head();
    // A page blob: 1 GiB of zeros without uploading them; then the head written over its start.
    let sas = az.key(SRC).container_sas("bundles", "racwdl", std::time::Duration::from_secs(600));
    let path = format!("/{SRC}/bundles/big.tar?{}", sas.expose());
    let blob_type = [("x-ms-blob-type", "PageBlob".to_string()), ("x-ms-blob-content-length", size.to_string())];
    assert_eq!(azurite_put(&az, &path, &blob_type, &[]), 201);
    let page = [("x-ms-page-write", "update".to_string()), ("x-ms-range", format!("bytes=0-{}", head.len() - 1))];
    assert_eq!(azurite_put(&az, &format!("{path}&comp=page"), &page, &head), 201);

    let proxy = common::counting::CountingProxy::start(&az.endpoint);
    let url = az.url(SRC, "big.tar", "r").replacen(&az.endpoint, &proxy.endpoint, 1);
    let sig = url.split("sig=").nth(1).unwrap().split('&').next().unwrap().to_string();
    let r = barge_ok(&["inspect", &url], 0);
    assert!(r.stdout.contains("registry.example/big/zeros:v1"), "{}", r.stdout);
    assert!(r.stdout.contains("1.0 GiB"), "{}", r.stdout);
    assert!(r.stdout.contains("barge verify"), "inspect says it is not verify: {}", r.stdout);
    let text_bytes = proxy.bytes();
    eprintln!("inspect read {text_bytes} bytes from Azurite (HTTP headers included)");
    assert!(text_bytes < 1 << 20, "inspect read {text_bytes} bytes from Azurite");
    let j = barge_ok(&["inspect", "--output", "json", &url], 0).json();
    assert_eq!(j["size"], size);
    assert_eq!(j["artifacts"][0]["bytes"].as_u64().unwrap() >> 30, 1, "{j}");
    assert!(j["headBytesRead"].as_u64().unwrap() < 1 << 20, "{j}");
    let all = proxy.bytes();
    assert!(all - text_bytes < 1 << 20, "inspect --output json read {} bytes from Azurite", all - text_bytes);
    for out in [&r.stdout, &r.stderr, &j.to_string()] {
        assert!(!out.contains(&sig) && !out.contains("sig="), "the SAS was shown: {out}");
    }

    // A bundle that export wrote carries its catalogDigest as metadata: inspect shows it, computing nothing.
    let w = Work::new();
    let url = az.url(SRC, "samples.tar", "racwdl");
    let e = barge_ok(&["export", "--output", "json", "--registry", &w.reg("src"), "--to", &url, "library/tools"], 0);
    let j = barge_ok(&["inspect", "--output", "json", &az.url(SRC, "samples.tar", "r")], 0).json();
    assert_eq!(j["catalogDigest"], e.json()["catalogDigest"], "{j}");
}

/// Every blob in a container, committed or not, listed with raw HTTP (the judge is not barge).
fn azurite_list(az: &Azurite, account: &str, container: &str) -> Vec<String> {
    use std::io::{Read, Write};
    let sas = az.key(account).container_sas(container, "rl", std::time::Duration::from_secs(600));
    let path = format!("/{account}/{container}?restype=container&comp=list&include=uncommittedblobs&{}", sas.expose());
    let host = az.endpoint.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(host).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\nx-ms-version: 2021-08-06\r\nConnection: close\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert_eq!(resp.split_whitespace().nth(1), Some("200"), "{resp}");
    resp.split("<Name>").skip(1).filter_map(|n| n.split("</Name>").next()).map(str::to_string).collect()
}

/// `barge bench` measures its four legs with a SAS of r, w and d only, and leaves nothing behind;
/// a directory gets the two legs that apply; a bad target is one line, its exit code, nothing written.
#[test]
fn bench_measures_every_leg_and_removes_what_it_wrote() {
    let az = Azurite::start();
    let sas = az.key(DST).container_sas("bundles", "rwd", std::time::Duration::from_secs(600));
    let container = format!("{}/{DST}/bundles?{}", az.endpoint, sas.expose());
    let args = ["bench", "--output", "json", "--size", "4MiB", "--count", "2", "--block-size", "1MiB"];
    let r = barge_ok(&[&args[..], &["--to", &container]].concat(), 0);
    let j = r.json();
    let legs = j["legs"].as_array().unwrap();
    let names: Vec<&str> = legs.iter().map(|l| l["leg"].as_str().unwrap()).collect();
    assert_eq!(names, ["upload", "download", "server-side copy", "relayed copy"], "{j}");
    for l in legs {
        assert_eq!(l["applicable"], true, "{l}");
        assert_eq!(l["bytes"], 8u64 << 20, "{l}");
        assert_eq!(l["blocks"], 8, "{l}");
        for k in ["seconds", "mbPerS", "blocksPerS", "p50Ms", "p99Ms", "cpuPercent"] {
            assert!(l[k].as_f64().is_some_and(|v| v > 0.0 && v.is_finite()), "{k} of {l}");
        }
        assert!(l["p50Ms"].as_f64() <= l["p99Ms"].as_f64(), "{l}");
    }
    assert!(legs[2]["note"].as_str().unwrap().contains("Put Block From URL"), "{j}");
    assert!(j["run"].as_str().unwrap().starts_with("barge-bench-"), "{j}");
    assert_eq!(azurite_list(&az, DST, "bundles"), Vec::<String>::new(), "the bench left blobs behind");
    let sig = container.split("sig=").nth(1).unwrap().split('&').next().unwrap();
    assert!(!r.stdout.contains(sig) && !r.stderr.contains(sig), "the SAS was shown");

    // The text table, into a virtual directory, kept on request.
    let dir_url = container.replacen("/bundles?", "/bundles/bench/?", 1);
    let r = barge_ok(&["bench", "--size", "2MiB", "--keep", "--to", &dir_url], 0);
    assert!(r.stdout.contains("server-side copy") && r.stdout.contains("MB/s"), "{}", r.stdout);
    let kept = azurite_list(&az, DST, "bundles");
    assert_eq!(kept.len(), 3, "{kept:?}");
    assert!(kept.iter().all(|n| n.starts_with("bench/barge-bench-")), "{kept:?}");

    // A local directory: write and read; the copies do not apply.
    let w = Work::new();
    std::fs::create_dir_all(w.path("bench")).unwrap();
    let j = barge_ok(&[&args[..], &["--to", &w.s("bench")]].concat(), 0).json();
    let legs = j["legs"].as_array().unwrap();
    assert_eq!((legs[0]["applicable"].clone(), legs[1]["applicable"].clone()), (true.into(), true.into()), "{j}");
    assert_eq!((legs[0]["blocks"].clone(), legs[1]["blocks"].clone()), (8.into(), 8.into()), "{j}");
    assert!(legs[2..].iter().all(|l| l["applicable"] == false && l["bytes"].is_null()), "{j}");
    assert_eq!(std::fs::read_dir(w.path("bench")).unwrap().count(), 0, "the bench left files behind");
    // --from: a given file's bytes are the data, its size the size.
    std::fs::write(w.path("data.bin"), vec![7u8; 3_000_000]).unwrap();
    let from = ["bench", "--output", "json", "--from", &w.s("data.bin"), "--to", &w.s("bench")];
    let j = barge_ok(&from, 0).json();
    assert_eq!((j["size"].clone(), j["legs"][1]["bytes"].clone()), (3_000_000.into(), 3_000_000.into()), "{j}");
    assert_eq!(std::fs::read_dir(w.path("bench")).unwrap().count(), 0, "the bench left files behind");

    // No SAS: refused before anything is written (exit 4, the SAS's sources named).
    let bare = format!("{}/{DST}/bundles", az.endpoint);
    let before = azurite_list(&az, DST, "bundles");
    let r = barge(&["bench", "--size", "1MiB", "--to", &bare]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    assert!(r.stderr.contains("SAS"), "{}", r.stderr);
    // A SAS that may not delete: the bench would leave its data, so it does not start.
    let no_d = az.key(DST).container_sas("bundles", "rw", std::time::Duration::from_secs(600));
    let r = barge(&["bench", "--size", "1MiB", "--to", &format!("{}/{DST}/bundles?{}", az.endpoint, no_d.expose())]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(r.stderr.contains("lacks the 'd' permission"), "{}", r.stderr);
    // A container that does not exist: exit 1, named.
    let missing = az.key(DST).container_sas("nosuch", "rwd", std::time::Duration::from_secs(600));
    let r = barge(&["bench", "--size", "1MiB", "--to", &format!("{}/{DST}/nosuch?{}", az.endpoint, missing.expose())]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    assert!(r.stderr.contains("container nosuch"), "{}", r.stderr);
    // A directory that does not exist.
    let r = barge(&["bench", "--size", "1MiB", "--to", &w.s("nowhere")]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(!w.path("nowhere").exists());
    assert_eq!(azurite_list(&az, DST, "bundles"), before, "a refused bench wrote something");
}
