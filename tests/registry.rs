//! Export from and import into real registries (Debian's docker-registry), judged by skopeo.

mod common;

use common::registry::TestRegistry;
use common::*;

/// The tags the samples have, and a cosign-style signature of hello-world.
const TAGS: [(&str, &str); 4] =
    [("samples/hello-world", "v1"), ("samples/multiarch", "v1"), ("library/tools", "latest"), ("library/tools", "1.0")];

/// A source registry with the samples pushed by skopeo, plus a `.sig` tag for hello-world.
fn source(w: &Work, reg: &TestRegistry) -> String {
    for (repo, tag) in TAGS {
        reg.push(&w.path("src"), repo, tag);
    }
    let hello = reg.raw("samples/hello-world:v1").unwrap();
    let sig_tag = format!("sha256-{}.sig", sha256_hex(&hello));
    let sig = barge_fixtures::write_image(
        &w.path("src"),
        "samples/hello-world",
        &barge_fixtures::Image::new(vec![barge_fixtures::Layer { seed: 77, size: 300 }]),
    )
    .unwrap();
    barge_fixtures::tag(&w.path("src"), "samples/hello-world", &sig_tag, &sig).unwrap();
    reg.push(&w.path("src"), "samples/hello-world", &sig_tag);
    sig_tag
}

fn export_from(host: &str, w: &Work, to: &str, artifacts: &[&str], extra: &[&str]) -> Run {
    let to = w.s(to);
    let mut args = vec!["export", "--output", "json", "--registry", host, "--to", &to];
    args.extend_from_slice(extra);
    args.extend_from_slice(artifacts);
    barge(&args)
}

#[test]
fn registry_to_registry_with_signatures_and_shared_layers() {
    let w = Work::new();
    let src = TestRegistry::start();
    let dst = TestRegistry::start();
    let sig_tag = source(&w, &src);
    let r = export_from(&src.host, &w, "store-a/bundle", &SAMPLES, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let artifacts: Vec<String> =
        r.json()["artifacts"].as_array().unwrap().iter().map(|a| a["artifact"].as_str().unwrap().to_string()).collect();
    assert!(
        artifacts.contains(&format!("samples/hello-world:{sig_tag}")),
        "the signature did not travel: {artifacts:?}"
    );

    let r = barge_ok(&["import", "--output", "json", &w.s("store-a/bundle"), "--registry", &dst.host], 0);
    let j = r.json();
    assert!(j["blobsMounted"].as_u64().unwrap() >= 1, "the layer shared by two repositories was uploaded twice: {j}");
    for (repo, tag) in [("samples/hello-world", "v1"), ("samples/multiarch", "v1"), ("library/tools", "latest")] {
        let want = src.raw(&format!("{repo}:{tag}")).unwrap();
        assert_eq!(dst.raw(&format!("{repo}:{tag}")).as_ref(), Some(&want), "{repo}:{tag}");
    }
    assert_eq!(dst.raw(&format!("samples/hello-world:{sig_tag}")), src.raw(&format!("samples/hello-world:{sig_tag}")));
    // Every platform of the index arrived.
    let out = skopeo(&[
        "copy",
        "--all",
        "--src-tls-verify=false",
        &format!("docker://{}/samples/multiarch:v1", dst.host),
        &format!("oci:{}:x", w.s("check")),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Re-import: nothing uploaded, exit 0.
    let again = barge_ok(&["import", "--output", "json", &w.s("store-a/bundle"), "--registry", &dst.host], 0).json();
    assert_eq!(again["blobsUploaded"], 0, "{again}");
    assert_eq!(again["manifestsPushed"], 0, "{again}");

    // --no-referrers leaves the signature out.
    let r = export_from(&src.host, &w, "store-a/plain", &["samples/hello-world:v1"], &["--no-referrers"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["artifacts"].as_array().unwrap().len(), 1);
}

#[test]
fn digests_tags_and_continue_on_errors() {
    let w = Work::new();
    let src = TestRegistry::start();
    let dst = TestRegistry::start();
    source(&w, &src);
    let digest = format!("sha256:{}", sha256_hex(&src.raw("samples/multiarch:v1").unwrap()));
    let by_digest = format!("samples/multiarch@{digest}");
    let r = export_from(&src.host, &w, "store-a/b", &[&by_digest, "samples/hello-world:v1", "samples/nope:v1"], &[]);
    assert_eq!(r.code, 1, "a missing artifact stops the export: {}", r.stderr);
    assert!(r.stdout.contains("samples/nope:v1"), "{}", r.stdout);
    let r = export_from(
        &src.host,
        &w,
        "store-a/b",
        &[&by_digest, "samples/hello-world:v1", "samples/nope:v1"],
        &["--continue-on-errors", "--no-referrers"],
    );
    assert_eq!(r.code, 6, "{}", r.stderr);
    barge_ok(&["import", &w.s("store-a/b"), "--registry", &dst.host], 0);
    assert_eq!(dst.raw(&by_digest), src.raw(&by_digest));
    assert_eq!(dst.raw("samples/hello-world:v1"), src.raw("samples/hello-world:v1"));
}

#[test]
fn overwrite_tags_against_a_registry() {
    let w = Work::new();
    let src = TestRegistry::start();
    let dst = TestRegistry::start();
    source(&w, &src);
    let r = export_from(&src.host, &w, "store-a/b", &["samples/hello-world:v1", "library/tools"], &["--no-referrers"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // The target's hello-world:v1 is another image.
    let other = barge_fixtures::write_image(
        &w.path("other"),
        "samples/hello-world",
        &barge_fixtures::Image::new(vec![barge_fixtures::Layer { seed: 55, size: 100 }]),
    )
    .unwrap();
    barge_fixtures::tag(&w.path("other"), "samples/hello-world", "v1", &other).unwrap();
    dst.push(&w.path("other"), "samples/hello-world", "v1");
    let before = dst.raw("samples/hello-world:v1").unwrap();

    let r = barge(&["import", &w.s("store-a/b"), "--registry", &dst.host]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--overwrite-tags"), "{}", r.stderr);
    assert_eq!(dst.raw("samples/hello-world:v1").unwrap(), before, "the tag moved");
    assert!(dst.raw("library/tools:latest").is_none(), "a refused import wrote library/tools");

    barge_ok(&["import", "--overwrite-tags", &w.s("store-a/b"), "--registry", &dst.host], 0);
    assert_eq!(dst.raw("samples/hello-world:v1"), src.raw("samples/hello-world:v1"));
    assert_eq!(dst.raw("library/tools:latest"), src.raw("library/tools:latest"));
}

#[test]
fn basic_auth_from_docker_config_and_password_stdin() {
    let w = Work::new();
    let reg = TestRegistry::start_with_auth("barge", "s3cret-pass");
    for (repo, tag) in TAGS {
        reg.push(&w.path("src"), repo, tag);
    }
    // No credentials: exit 4, a message that says how to give them.
    let empty = w.path("no-docker");
    std::fs::create_dir_all(&empty).unwrap();
    let to = w.s("store-a/b");
    let args = ["export", "--no-referrers", "--registry", &reg.host, "--to", &to, "samples/hello-world:v1"];
    let r = barge_with(&args, &[("DOCKER_CONFIG", empty.to_str().unwrap())], "");
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(r.stderr.contains("--password-stdin"), "{}", r.stderr);

    // docker's config.json with an auths entry for this host only.
    let cfg = w.path("docker");
    std::fs::create_dir_all(&cfg).unwrap();
    let auth = base64_encode("barge:s3cret-pass");
    std::fs::write(
        cfg.join("config.json"),
        format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}},"elsewhere.example":{{"auth":"eDp5"}}}}}}"#, reg.host),
    )
    .unwrap();
    let r = barge_with(&args, &[("DOCKER_CONFIG", cfg.to_str().unwrap())], "");
    assert_eq!(r.code, 0, "{}", r.stderr);

    // --username with --password-stdin; the password appears in no output.
    let args = [
        "import",
        "--output",
        "json",
        &to,
        "--registry",
        &reg.host,
        "--username",
        "barge",
        "--password-stdin",
        "--overwrite-tags",
    ];
    let r = barge_with(&args, &[("DOCKER_CONFIG", empty.to_str().unwrap())], "s3cret-pass\n");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stdout.contains("s3cret") && !r.stderr.contains("s3cret"));

    // A credential helper, named per host (credHelpers) or for every host
    // (credsStore): asked with the host on stdin, and only for this host.
    let bin = w.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-bargetest");
    let asked = w.path("asked");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread host\necho \"$host\" >> {}\n\
             if [ \"$host\" = {} ]; then echo '{{\"ServerURL\":\"'$host'\",\"Username\":\"barge\",\"Secret\":\"s3cret-pass\"}}'; \
             else echo 'credentials not found in native keychain'; exit 1; fi\n",
            asked.display(),
            reg.host
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let export =
        ["export", "--no-referrers", "--overwrite", "--registry", &reg.host, "--to", &to, "samples/hello-world:v1"];
    for config in
        [format!(r#"{{"credHelpers":{{"{}":"bargetest"}}}}"#, reg.host), r#"{"credsStore":"bargetest"}"#.into()]
    {
        std::fs::write(cfg.join("config.json"), &config).unwrap();
        let r = barge_with(&export, &[("DOCKER_CONFIG", cfg.to_str().unwrap()), ("PATH", &path)], "");
        assert_eq!(r.code, 0, "{config}: {}", r.stderr);
        assert!(!r.stdout.contains("s3cret") && !r.stderr.contains("s3cret"));
    }
    let asked = std::fs::read_to_string(&asked).unwrap();
    assert!(!asked.is_empty() && asked.lines().all(|h| h == reg.host), "the helper was asked for {asked:?}");
}

fn base64_encode(s: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn a_registry_serving_wrong_content_is_an_integrity_error() {
    let w = Work::new();
    let src = TestRegistry::start();
    src.push(&w.path("src"), "samples/hello-world", "v1");
    // Damage a layer inside the registry's storage, keeping its size.
    let manifest: serde_json::Value = serde_json::from_slice(&src.raw("samples/hello-world:v1").unwrap()).unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string();
    let file = src.blob_file(&layer);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[700] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();
    let r = export_from(&src.host, &w, "store-a/b", &["samples/hello-world:v1"], &[]);
    assert_eq!(r.code, 3, "{}", r.stdout);
    assert!(r.stdout.contains(&layer), "{}", r.stdout);
    assert!(snapshot(&w.path("store-a")).is_empty(), "a bundle was written from bad content");
}

#[test]
fn a_dropped_download_resumes_where_it_stopped() {
    let w = Work::new();
    let src = TestRegistry::start();
    let big = barge_fixtures::write_image(
        &w.path("src"),
        "big/one",
        &barge_fixtures::Image::new(vec![barge_fixtures::Layer { seed: 8, size: 24 << 20 }]),
    )
    .unwrap();
    barge_fixtures::tag(&w.path("src"), "big/one", "v1", &big).unwrap();
    src.push(&w.path("src"), "big/one", "v1");
    let direct = export_from(&src.host, &w, "store-a/direct", &["big/one:v1"], &[]);
    assert_eq!(direct.code, 0, "{}", direct.stdout);
    let proxy = common::registry::CuttingProxy::start(&src.host, 4 << 20);
    let to = w.s("store-a/proxied");
    let r = barge(&["export", "--output", "json", "--registry", &proxy.host, "--to", &to, "big/one:v1"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(proxy.cuts.load(std::sync::atomic::Ordering::SeqCst) >= 1, "the proxy never cut a download");
    // Same content (the catalogs differ only in the source registry's name), every digest checked.
    assert_eq!(r.json()["blobBytes"], direct.json()["blobBytes"]);
    barge_ok(&["verify", &to], 0);
}

/// Layers larger than import reads whole go up from their own byte range, in
/// the background, and are still checked: a damaged one is refused with exit 3
/// before the registry commits it, and nothing is tagged.
#[test]
fn large_layers_are_uploaded_by_offset_and_checked() {
    let w = Work::new();
    let src = TestRegistry::start();
    let shared = barge_fixtures::Layer { seed: 90, size: 3 << 20 };
    for (i, repo) in ["large/one", "large/two"].into_iter().enumerate() {
        let own = barge_fixtures::Layer { seed: 91 + i as u64, size: 2 << 20 };
        let d =
            barge_fixtures::write_image(&w.path("src"), repo, &barge_fixtures::Image::new(vec![shared, own])).unwrap();
        barge_fixtures::tag(&w.path("src"), repo, "v1", &d).unwrap();
        src.push(&w.path("src"), repo, "v1");
    }
    let r = export_from(&src.host, &w, "store-a/large", &["large/one:v1", "large/two:v1"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);

    let dst = TestRegistry::start();
    let j = barge_ok(&["import", "--output", "json", &w.s("store-a/large"), "--registry", &dst.host], 0).json();
    assert_eq!(j["blobsMounted"], 1, "{j}");
    for repo in ["large/one", "large/two"] {
        assert_eq!(dst.raw(&format!("{repo}:v1")), src.raw(&format!("{repo}:v1")), "{repo}");
    }

    // Flip one byte near the end of the largest layer (the shared one, sent by offset).
    let mut bytes = std::fs::read(w.path("store-a/large")).unwrap();
    let catalog = catalog_of(&bytes);
    let large = catalog.blobs.iter().max_by_key(|b| b.size).unwrap();
    assert!(large.size > 3 << 20, "{}", large.size);
    let (at, size) = entry_offset(&bytes, &large.digest.layout_path());
    bytes[at + size - 10] ^= 0x01;
    std::fs::write(w.path("store-a/damaged"), &bytes).unwrap();
    let clean = TestRegistry::start();
    let r = barge(&["import", &w.s("store-a/damaged"), "--registry", &clean.host]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    // barge's own check found it (the registry's would say its digest is wrong), and it never landed.
    assert!(r.stderr.contains("does not match its digest"), "{}", r.stderr);
    assert!(r.stderr.contains(&large.digest.to_string()), "{}", r.stderr);
    assert!(!clean.blob_file(large.digest.hex()).exists(), "the damaged layer was committed");
    for repo in ["large/one", "large/two"] {
        assert_eq!(clean.raw(&format!("{repo}:v1")), None, "{repo} was tagged from a damaged bundle");
    }
    // Whatever the registry did commit is what its name says.
    let blobs = clean.blob_file("00").parent().unwrap().parent().unwrap().parent().unwrap().to_path_buf();
    for (path, data) in snapshot(&blobs) {
        let hex = path.parent().unwrap().file_name().unwrap().to_str().unwrap().to_string();
        assert_eq!(sha256_hex(&data), hex, "the registry holds damaged content at {}", path.display());
    }
}

/// HTTPS is used wherever the registry speaks it, loopback included: a
/// certificate from a private CA is refused (exit 4, naming --ca-file) until
/// --ca-file names the CA.
#[test]
fn a_tls_registry_needs_its_ca() {
    let w = Work::new();
    let (src, ca) = TestRegistry::start_tls();
    src.push(&w.path("src"), "samples/hello-world", "v1");
    let r = export_from(&src.host, &w, "store-a/tls", &["samples/hello-world:v1"], &[]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(r.stdout.contains("--ca-file"), "{}", r.stdout);
    assert!(!w.path("store-a/tls").exists());

    let ca = ca.display().to_string();
    let r = export_from(&src.host, &w, "store-a/tls", &["samples/hello-world:v1"], &["--ca-file", &ca]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (dst, _) = TestRegistry::start_tls();
    // Each registry has its own CA; the target's is refused with the source's.
    let r = barge(&["import", &w.s("store-a/tls"), "--registry", &dst.host, "--ca-file", &ca]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert_eq!(dst.raw("samples/hello-world:v1"), None);
}

/// How many times each blob request was made, most first.
fn attempts(proxy: &common::registry::FlakyProxy) -> Vec<(String, usize)> {
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for (request, _) in proxy.log.lock().unwrap().iter() {
        *counts.entry(request.clone()).or_default() += 1;
    }
    let mut v: Vec<_> = counts.into_iter().collect();
    v.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    v
}

/// 503 and 429 are retried with backoff, a bounded number of times; other
/// 4xx are final at once.
#[test]
fn transient_refusals_are_retried_and_others_are_not() {
    let w = Work::new();
    let src = TestRegistry::start();
    src.push(&w.path("src"), "samples/hello-world", "v1");
    let direct = export_from(&src.host, &w, "store-a/direct", &["samples/hello-world:v1"], &[]);
    assert_eq!(direct.code, 0, "{}", direct.stdout);

    // Three 503s and two 429s, then the registry answers: the export goes through.
    let flaky = common::registry::FlakyProxy::start(&src.host, |n| match n {
        0..=2 => Some(503),
        3..=4 => Some(429),
        _ => None,
    });
    let r = export_from(&flaky.host, &w, "store-a/flaky", &["samples/hello-world:v1"], &[]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(r.json()["blobBytes"], direct.json()["blobBytes"]);
    barge_ok(&["verify", &w.s("store-a/flaky")], 0);
    let refused = flaky.log.lock().unwrap().iter().filter(|(_, s)| *s != 0).count();
    assert_eq!(refused, 5);

    // A registry that keeps answering 503: each blob is asked for at most 5 times, then it fails.
    let down = common::registry::FlakyProxy::start(&src.host, |_| Some(503));
    let r = export_from(&down.host, &w, "store-a/down", &["samples/hello-world:v1"], &[]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stdout.contains("503"), "{}", r.stdout);
    assert_eq!(attempts(&down)[0].1, 5, "{:?}", attempts(&down));
    assert!(!w.path("store-a/down").exists());

    // 403 is final: no blob is asked for twice.
    let denied = common::registry::FlakyProxy::start(&src.host, |_| Some(403));
    let r = export_from(&denied.host, &w, "store-a/denied", &["samples/hello-world:v1"], &[]);
    assert_eq!(r.code, 4, "{}", r.stdout);
    assert_eq!(attempts(&denied)[0].1, 1, "{:?}", attempts(&denied));
}
