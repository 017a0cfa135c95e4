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

/// ContinueOnErrors where every artifact is refused for lack of credentials:
/// the export fails with the first failure's kind (exit 4, as without
/// ContinueOnErrors), says how to give credentials once, and writes nothing.
#[test]
fn every_artifact_refused_for_credentials_exits_4_with_continue_on_errors() {
    let w = Work::new();
    let reg = TestRegistry::start_with_auth("barge", "s3cret-pass");
    let empty = w.path("no-docker");
    std::fs::create_dir_all(&empty).unwrap();
    let to = w.s("store-a/b");
    let env = [("DOCKER_CONFIG", empty.to_str().unwrap())];
    for extra in [&["--continue-on-errors"][..], &[]] {
        let mut args = vec!["export", "--no-referrers", "--registry", &reg.host, "--to", &to];
        args.extend_from_slice(extra);
        args.extend(["samples/hello-world:v1", "library/tools:latest"]);
        let r = barge_with(&args, &env, "");
        assert_eq!(r.code, 4, "{extra:?}: {}", r.stderr);
        let error = r.stderr.lines().find(|l| l.starts_with("barge: error:")).unwrap_or_default();
        assert_eq!(error.matches("refused access").count(), 1, "{}", r.stderr);
        assert_eq!(error.matches("--password-stdin").count(), 1, "{}", r.stderr);
        assert!(!w.path("store-a/b").exists());
    }
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

/// Two layouts each with `race/app:v1` of different content, exported to two
/// bundles: (bundle path, the tag's manifest digest) for each.
fn two_bundles_one_tag(w: &Work) -> Vec<(String, String)> {
    ["a", "b"]
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let root = w.path(&format!("race-{name}"));
            let image =
                barge_fixtures::Image::new(vec![barge_fixtures::Layer { seed: 200 + i as u64, size: 64 << 10 }]);
            let d = barge_fixtures::write_image(&root, "race/app", &image).unwrap();
            barge_fixtures::tag(&root, "race/app", "v1", &d).unwrap();
            let bundle = w.s(&format!("store-a/race-{name}"));
            let layout = format!("oci:{}", root.display());
            barge_ok(&["export", "--no-referrers", "--registry", &layout, "--to", &bundle, "race/app:v1"], 0);
            let digest = format!("sha256:{}", sha256_hex(&skopeo_raw(&format!("{layout}/race/app:v1"))));
            (bundle, digest)
        })
        .collect()
}

/// Run `barge import BUNDLE --registry TARGET` for each bundle, all at once.
fn imports_at_once(bundles: &[(String, String)], target: &str) -> Vec<Run> {
    let children: Vec<_> = bundles
        .iter()
        .map(|(b, _)| {
            std::process::Command::new(env!("CARGO_BIN_EXE_barge"))
                .args(["import", b, "--registry", target])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            Run {
                code: out.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            }
        })
        .collect()
}

/// Two imports that put different digests under one tag, at once, without
/// --overwrite-tags, into a fresh `oci:` layout each round: the decision is
/// taken under the layout's index lock, so exactly one wins, the other exits
/// 2 naming --overwrite-tags, and the tag is the winner's.
#[test]
fn concurrent_imports_never_move_a_tag_in_a_layout() {
    let w = Work::new();
    let bundles = two_bundles_one_tag(&w);
    let mut at_the_write = 0;
    for round in 0..10 {
        let target = w.reg(&format!("race-dst-{round}"));
        let runs = imports_at_once(&bundles, &target);
        let show = || runs.iter().map(|r| format!("exit {}: {}", r.code, r.stderr.trim())).collect::<Vec<_>>();
        let winners: Vec<usize> = (0..2).filter(|&i| runs[i].code == 0).collect();
        assert_eq!(winners.len(), 1, "round {round}: {:?}", show());
        let (winner, loser) = (winners[0], 1 - winners[0]);
        assert_eq!(runs[loser].code, 2, "round {round}: {:?}", show());
        assert!(runs[loser].stderr.contains("--overwrite-tags"), "round {round}: {:?}", show());
        // The tag write, not the pre-flight, refused it (the pre-flight saw no tag).
        at_the_write += runs[loser].stderr.contains("artifact race/app:v1:") as usize;
        let tag = format!("sha256:{}", sha256_hex(&skopeo_raw(&format!("{target}/race/app:v1"))));
        assert_eq!(tag, bundles[winner].1, "round {round}: the tag is not the winner's");
    }
    eprintln!("{at_the_write} of 10 rounds were decided at the tag write");
}

/// The same race against a real registry. Distribution has no conditional tag
/// write, so the tag is read again just before the PUT and just after it, and
/// a window of one round trip remains: asserted is only what holds every
/// round (the last writer's read after its write sees its own). At least one
/// import succeeds; every import exits 0 or 2 (naming --overwrite-tags); the
/// tag is the digest of an import that exited 0, never of one that exited 2.
#[test]
fn concurrent_imports_into_a_registry_never_leave_a_refused_tag() {
    let w = Work::new();
    let bundles = two_bundles_one_tag(&w);
    let (mut refused, mut both) = (0, 0);
    for round in 0..10 {
        let reg = TestRegistry::start();
        let runs = imports_at_once(&bundles, &reg.host);
        let show = || runs.iter().map(|r| format!("exit {}: {}", r.code, r.stderr.trim())).collect::<Vec<_>>();
        let tag = format!("sha256:{}", sha256_hex(&reg.raw("race/app:v1").expect("the tag exists")));
        assert!(runs.iter().any(|r| r.code == 0), "round {round}: {:?}", show());
        for (run, (_, digest)) in runs.iter().zip(&bundles) {
            match run.code {
                0 => {}
                2 => {
                    assert!(run.stderr.contains("--overwrite-tags"), "round {round}: {:?}", show());
                    assert_ne!(&tag, digest, "round {round}: a refused import moved the tag: {:?}", show());
                    refused += 1;
                }
                _ => panic!("round {round}: {:?}", show()),
            }
        }
        assert!(
            runs.iter().zip(&bundles).any(|(r, (_, d))| r.code == 0 && *d == tag),
            "round {round}: the tag {tag} is not what a successful import wrote: {:?}",
            show()
        );
        both += runs.iter().all(|r| r.code == 0) as usize;
    }
    eprintln!("10 rounds: {refused} refused, {both} where both succeeded (the window)");
}

/// Basic credentials follow a Bearer realm only over HTTPS, or over plain HTTP
/// to the registry's own (loopback or --insecure-registry) host or a realm host
/// named with --insecure-registry: a loopback registry naming a plain-HTTP
/// realm on another host is refused (exit 4, naming that host, no secret),
/// and the realm hears nothing.
#[test]
fn credentials_never_follow_a_plain_http_realm_to_another_host() {
    let w = Work::new();
    let fake = common::registry::FakeAuth::start("127.0.0.2");
    let empty = w.path("no-docker");
    std::fs::create_dir_all(&empty).unwrap();
    let env = [("DOCKER_CONFIG", empty.to_str().unwrap())];
    let to = w.s("store-a/realm");
    let mut args = vec!["export", "--registry", &fake.host, "--to", &to, "--username", "barge", "--password-stdin"];
    args.push("samples/hello-world:v1");
    let r = barge_with(&args, &env, "s3cret-realm\n");
    assert!(fake.received.lock().unwrap().is_empty(), "the realm was asked: {:?}", fake.received.lock().unwrap());
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(r.stderr.contains(&format!("--insecure-registry {}", fake.realm_host)), "{}", r.stderr);
    assert!(!r.stderr.contains("s3cret") && !r.stdout.contains("s3cret"), "{}", r.stderr);

    // Named insecure, the realm gets them (which is what the recorder would have seen above).
    let realm = format!("--insecure-registry={}", fake.realm_host);
    args.insert(1, &realm);
    let r = barge_with(&args, &env, "s3cret-realm\n");
    assert_ne!(r.code, 0, "{}", r.stderr);
    let basic = format!("basic {}", base64_encode("barge:s3cret-realm")).to_lowercase();
    let heard = fake.received.lock().unwrap().join("\n").to_lowercase();
    assert!(heard.contains(&basic), "the realm did not get the credentials: {heard}");
}

/// An upload cut mid-body is sent again from the blob's start: the import
/// succeeds and skopeo reads the image whole.
#[test]
fn an_upload_reset_mid_blob_is_retried() {
    let w = Work::new();
    let bundle = w.s("store-a/hello");
    barge_ok(&["export", "--registry", &w.reg("src"), "--to", &bundle, "samples/hello-world:v1"], 0);
    let dst = TestRegistry::start();
    let proxy = common::registry::FlakyProxy::resetting_uploads(&dst.host, 1);
    barge_ok(&["import", &bundle, "--registry", &proxy.host], 0);
    assert_eq!(*proxy.resets.lock().unwrap(), 1, "the proxy cut no upload");
    let out = skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{}/samples/hello-world:v1", dst.host),
        &format!("oci:{}:x", w.s("check")),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        dst.raw("samples/hello-world:v1").unwrap(),
        skopeo_raw(&format!("{}/samples/hello-world:v1", w.reg("src")))
    );
}

/// Large layers of a local bundle go up from their own byte range: an upload
/// cut past what a one-pass stream could replay is read again from the
/// bundle and sent from its start.
#[test]
fn a_large_layer_cut_mid_upload_is_read_again_and_resent() {
    let w = Work::new();
    let layers =
        vec![barge_fixtures::Layer { seed: 17, size: 3 << 20 }, barge_fixtures::Layer { seed: 18, size: 6 << 20 }];
    let d = barge_fixtures::write_image(&w.path("src"), "large/cut", &barge_fixtures::Image::new(layers)).unwrap();
    barge_fixtures::tag(&w.path("src"), "large/cut", "v1", &d).unwrap();
    let bundle = w.s("store-a/large");
    barge_ok(&["export", "--registry", &w.reg("src"), "--to", &bundle, "large/cut:v1"], 0);
    let dst = TestRegistry::start();
    let proxy = common::registry::FlakyProxy::resetting_uploads(&dst.host, 3);
    barge_ok(&["import", &bundle, "--registry", &proxy.host], 0);
    assert_eq!(*proxy.resets.lock().unwrap(), 3, "the proxy cut fewer uploads than asked");
    let out = skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{}/large/cut:v1", dst.host),
        &format!("oci:{}:x", w.s("check")),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A registry killed and restarted while an import uploads: the import
/// retries within its budget and ends whole. Rounds whose import had already
/// ended when the registry went down do not count; at least one must.
#[test]
fn an_import_outlives_a_registry_restart() {
    let w = Work::new();
    let layers: Vec<_> = (0..4).map(|i| barge_fixtures::Layer { seed: 40 + i, size: 12 << 20 }).collect();
    let d = barge_fixtures::write_image(&w.path("src"), "big/restart", &barge_fixtures::Image::new(layers)).unwrap();
    barge_fixtures::tag(&w.path("src"), "big/restart", "v1", &d).unwrap();
    let bundle = w.s("store-a/restart");
    barge_ok(&["export", "--registry", &w.reg("src"), "--to", &bundle, "big/restart:v1"], 0);
    let mut hit = 0;
    for (round, delay_ms) in [150u64, 300, 600].into_iter().enumerate() {
        let mut dst = TestRegistry::start();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_barge"))
            .args(["import", &bundle, "--registry", &dst.host])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let running = child.try_wait().unwrap().is_none();
        dst.restart();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "round {round}: {}", String::from_utf8_lossy(&out.stderr));
        hit += usize::from(running);
        let check = w.s(&format!("check-{round}"));
        let copied = skopeo(&[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{}/big/restart:v1", dst.host),
            &format!("oci:{check}:x"),
        ]);
        assert!(copied.status.success(), "round {round}: {}", String::from_utf8_lossy(&copied.stderr));
    }
    assert!(hit > 0, "no import was still running when its registry restarted");
}

/// A source that can be opened again is sent again from its start whatever
/// its size; a one-pass stream only while what was sent of it is still kept
/// (2 MiB), and otherwise the error says why it was not retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_uploads_retry_from_a_source_opened_again() {
    use barge_transfer::{ConnectOptions, RegistryAddr};
    let dst = TestRegistry::start();
    let data: Vec<u8> = (0..5u32 << 20).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let digest = barge_bundle::Digest::parse(&format!("sha256:{}", sha256_hex(&data))).unwrap();
    let size = data.len() as u64;

    let proxy = common::registry::FlakyProxy::resetting_uploads(&dst.host, 1);
    let reg = RegistryAddr::parse(&proxy.host).unwrap().open(&ConnectOptions::default()).await.unwrap();
    let opened = std::sync::atomic::AtomicUsize::new(0);
    type Opened<'a> = std::pin::Pin<
        Box<dyn std::future::Future<Output = barge_transfer::Result<barge_transfer::io::ByteStream>> + Send + 'a>,
    >;
    let open = || -> Opened<'_> {
        opened.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let bytes = data.clone();
        Box::pin(async move { Ok(Box::new(std::io::Cursor::new(bytes)) as barge_transfer::io::ByteStream) })
    };
    reg.push_blob_reopen("big/blob", &digest, size, &open).await.unwrap();
    assert_eq!(*proxy.resets.lock().unwrap(), 1);
    assert_eq!(opened.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert_eq!(sha256_hex(&std::fs::read(dst.blob_file(digest.hex())).unwrap()), digest.hex());

    let proxy = common::registry::FlakyProxy::resetting_uploads(&dst.host, 1);
    let reg = RegistryAddr::parse(&proxy.host).unwrap().open(&ConnectOptions::default()).await.unwrap();
    let e = reg.push_blob("big/other", &digest, size, &mut std::io::Cursor::new(data.clone())).await.unwrap_err();
    assert!(e.to_string().contains("not retried"), "{e}");
}

/// A docker config as `az acr login` writes it: the null-GUID user and an `identitytoken` for each of `hosts`.
fn write_identity_config(dir: &std::path::Path, token: &str, hosts: &[&str]) {
    std::fs::create_dir_all(dir).unwrap();
    let user = base64_encode("00000000-0000-0000-0000-000000000000:");
    let entries: Vec<String> =
        hosts.iter().map(|h| format!(r#""{h}":{{"auth":"{user}","identitytoken":"{token}"}}"#)).collect();
    std::fs::write(dir.join("config.json"), format!(r#"{{"auths":{{{}}}}}"#, entries.join(","))).unwrap();
}

const REFRESH: &str = "rt-s3cret-4f1d9c";

/// `az acr login` leaves an `identitytoken` (an OAuth2 refresh token, user
/// 00000000-0000-0000-0000-000000000000) in docker's config: barge exchanges it at
/// the registry's token realm for access tokens, as docker does, and sends it
/// nowhere else. Real token auth: distribution verifies the JWTs the service signs.
#[test]
fn an_identity_token_from_az_acr_login_is_exchanged_at_the_realm_only() {
    let w = Work::new();
    let service = common::registry::TokenService::start(REFRESH);
    let (src, dst) = (TestRegistry::start_token_auth(&service), TestRegistry::start_token_auth(&service));
    for (repo, tag) in TAGS {
        src.push(&w.path("src"), repo, tag);
    }
    // Proxies that hear every request barge sends each registry.
    let (src_proxy, dst_proxy) = (
        common::registry::FlakyProxy::start(&src.host, |_| None),
        common::registry::FlakyProxy::start(&dst.host, |_| None),
    );
    let cfg = w.path("docker");
    write_identity_config(&cfg, REFRESH, &[&src_proxy.host, &dst_proxy.host]);
    let env = [("DOCKER_CONFIG", cfg.to_str().unwrap())];
    let to = w.s("store-a/b");
    let mut export = vec!["export", "--no-referrers", "--registry", &src_proxy.host, "--to", &to];
    export.extend(SAMPLES);
    let r = barge_with(&export, &env, "");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stdout.contains(REFRESH) && !r.stderr.contains(REFRESH));
    let import = ["import", "--output", "json", &to, "--registry", &dst_proxy.host];
    let r = barge_with(&import, &env, "");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stdout.contains(REFRESH) && !r.stderr.contains(REFRESH));
    let j = r.json();
    assert!(j["blobsUploaded"].as_u64().unwrap() > 0, "{j}");
    // A layer shared by two repositories is mounted, with a token for both.
    assert!(j["blobsMounted"].as_u64().unwrap() >= 1, "{j}");
    for a in ["samples/hello-world:v1", "samples/multiarch:v1", "library/tools:latest"] {
        assert_eq!(dst.raw(a), src.raw(a), "{a}");
    }
    // The refresh token went to the realm, as a form POST for a repository's scope...
    let exchanges = service.exchanges();
    assert!(exchanges.iter().all(|e| e.starts_with("POST /token ") && e.contains(REFRESH)), "{exchanges:?}");
    assert!(exchanges.iter().any(|e| e.contains("scope=repository%3Asamples%2Fmultiarch%3Apull%2Cpush")));
    assert!(exchanges.iter().all(|e| e.contains("service=barge-test") && e.contains("client_id=barge")));
    let mount = exchanges.iter().any(|e| e.contains("%3Apull%2Cpush+repository%3A"));
    assert!(mount, "no token for a mount: {exchanges:?}");
    // ... and the registries saw only the access tokens.
    for proxy in [&src_proxy, &dst_proxy] {
        let heard = proxy.heard.lock().unwrap().join("\n\n");
        assert!(!heard.contains(REFRESH), "the registry got the refresh token: {heard}");
        assert!(heard.to_lowercase().contains("authorization: bearer ey"), "no access token was sent: {heard}");
    }

    // A wrong refresh token: exit 4 naming the registry; the token is not shown.
    write_identity_config(&cfg, "rt-wrong-77aa", &[&src_proxy.host]);
    let to = w.s("store-a/refused");
    export[5] = &to;
    let r = barge_with(&export, &env, "");
    assert_eq!(r.code, 4, "{}", r.stderr);
    let error = r.stderr.lines().find(|l| l.starts_with("barge: error:")).unwrap_or_default();
    assert!(error.contains(&src_proxy.host) && error.contains("identity token"), "{}", r.stderr);
    assert!(!r.stderr.contains("rt-wrong") && !r.stdout.contains("rt-wrong"), "{}", r.stderr);

    a_refused_access_token_is_asked_for_again_once(&w, &service, &src);
    identity_tokens_stay_with_their_host(&w, &src.host);
}

/// An access token the registry refuses (a 401 where it was accepted before) is asked for again, once.
fn a_refused_access_token_is_asked_for_again_once(
    w: &Work,
    service: &common::registry::TokenService,
    src: &TestRegistry,
) {
    let refusing = common::registry::FlakyProxy::start(&src.host, |n| (n == 0).then_some(401));
    let cfg = w.path("docker-renew");
    write_identity_config(&cfg, REFRESH, &[&refusing.host]);
    let before = service.exchanges().len();
    let to = w.s("store-a/renewed");
    let args = ["export", "--no-referrers", "--registry", &refusing.host, "--to", &to, "samples/hello-world:v1"];
    let r = barge_with(&args, &[("DOCKER_CONFIG", cfg.to_str().unwrap())], "");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let renewed = service.exchanges()[before..].iter().filter(|e| e.contains("hello-world%3Apull&")).count();
    assert_eq!(renewed, 2, "{:?}", &service.exchanges()[before..]);
    assert_eq!(refusing.log.lock().unwrap()[0].1, 401);
}

/// A token for another host is not used (the realm is asked anonymously); one for
/// a registry whose realm is plain HTTP on another host is not sent there.
fn identity_tokens_stay_with_their_host(w: &Work, other_host: &str) {
    let fake = common::registry::FakeAuth::start("127.0.0.2");
    let cfg = w.path("docker-fake");
    let env = [("DOCKER_CONFIG", cfg.to_str().unwrap())];
    let to = w.s("store-a/fake");
    let args = ["export", "--no-referrers", "--registry", &fake.host, "--to", &to, "samples/hello-world:v1"];
    write_identity_config(&cfg, REFRESH, &[other_host]);
    let r = barge_with(&args, &env, "");
    assert_eq!(r.code, 4, "{}", r.stderr);
    let heard = std::mem::take(&mut *fake.received.lock().unwrap()).join("\n");
    assert!(!heard.contains(REFRESH) && !heard.to_lowercase().contains("authorization"), "{heard}");
    write_identity_config(&cfg, REFRESH, &[&fake.host]);
    let r = barge_with(&args, &env, "");
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(r.stderr.contains(&format!("--insecure-registry {}", fake.realm_host)), "{}", r.stderr);
    assert!(fake.received.lock().unwrap().is_empty(), "the realm was asked: {:?}", fake.received.lock().unwrap());
    assert!(!r.stderr.contains(REFRESH) && !r.stdout.contains(REFRESH));
}

/// A delta against a real registry: refused while the registry lacks what it
/// leaves out (exit 3, the missing digests listed, not a blob, manifest or tag
/// written); once the earlier bundle is in, it imports, uploading only the new
/// blobs, and skopeo reads every tag; placed under a prefix, its left-out
/// blobs are mounted from the repositories that hold them.
#[test]
fn a_delta_is_refused_before_any_write_then_imports_once_its_blobs_are_there() {
    use common::delta::{delta_of, held_after, inventory_of};
    let w = Work::new();
    let dst = TestRegistry::start();
    let first = export_from(&w.reg("src"), &w, "store-a/first", &SAMPLES, &[]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let held = held_after(&std::fs::read(w.path("store-a/first")).unwrap());
    let base = barge_fixtures::Layer { seed: 1, size: 4096 };
    let image = barge_fixtures::Image::new(vec![base, barge_fixtures::Layer { seed: 6, size: 1200 }]);
    let v2 = barge_fixtures::write_image(&w.path("src"), "samples/hello-world", &image).unwrap();
    barge_fixtures::tag(&w.path("src"), "samples/hello-world", "v2", &v2).unwrap();
    let mut all = SAMPLES.to_vec();
    all.push("samples/hello-world:v2");
    let r = export_from(&w.reg("src"), &w, "store-a/full", &all, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (bytes, catalog) = delta_of(&std::fs::read(w.path("store-a/full")).unwrap(), inventory_of(&dst.host), &held);
    std::fs::write(w.path("store-a/delta"), bytes).unwrap();
    let delta = w.s("store-a/delta");
    let names = ["samples/hello-world:v1", "samples/hello-world:v2", "samples/multiarch:v1", "library/tools:latest"];

    let r = barge(&["import", "--output", "json", &delta, "--registry", &dst.host]);
    assert_eq!(r.code, 3, "{}", r.stdout);
    let error = r.json()["error"].as_str().unwrap().to_string();
    assert!(held.keys().all(|d| error.contains(&d.to_string())), "{error}");
    assert!(error.contains(&format!("of {} taken", dst.host)), "{error}");
    for name in names {
        assert_eq!(dst.raw(name), None, "{name} arrived from a refused delta");
    }
    for b in catalog.blobs.iter().filter(|b| b.kind != barge_bundle::BlobKind::Manifest) {
        assert!(!dst.blob_file(b.digest.hex()).exists(), "blob {} arrived from a refused delta", b.digest);
    }

    barge_ok(&["import", &w.s("store-a/first"), "--registry", &dst.host], 0);
    let j = barge_ok(&["import", "--output", "json", &delta, "--registry", &dst.host], 0).json();
    assert_eq!((j["blobsUploaded"].as_u64(), j["delta"]["reliedOn"].as_u64()), (Some(2), Some(1)), "{j}");
    for name in names {
        assert_eq!(dst.raw(name), Some(skopeo_raw(&format!("oci:{}/{name}", w.s("src")))), "{name}");
    }
    let out = skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{}/samples/hello-world:v2", dst.host),
        &format!("oci:{}:x", w.s("check")),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let j = barge_ok(&["import", "--output", "json", &delta, "--registry", &dst.host, "--prefix", "copy"], 0).json();
    assert_eq!(j["delta"]["mounted"], held.len() + 1, "the shared base layer goes into two repositories: {j}");
    assert_eq!(dst.raw("copy/samples/multiarch:v1"), dst.raw("samples/multiarch:v1"));
}

#[test]
fn a_dead_source_registry_is_named_and_the_live_ones_export_alone() {
    let w = Work::new();
    let live = TestRegistry::start();
    live.push(&w.path("src"), "samples/hello-world", "v1");
    // A port nothing listens on: bound, then released.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let (good, gone) = (format!("{}/samples/hello-world:v1", live.host), format!("{dead}/team/x:1"));
    let to = w.s("store-a/two");
    let started = std::time::Instant::now();
    let r = barge(&["export", "--to", &to, &good, &gone]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains(&dead) && r.stderr.lines().count() == 1, "{}", r.stderr);
    assert!(!w.path("store-a/two").exists());
    let r = barge(&["export", "--output", "json", "--continue-on-errors", "--to", &to, &good, &gone]);
    assert_eq!(r.code, 6, "{}", r.stderr);
    let failed: Vec<_> =
        r.json()["artifacts"].as_array().unwrap().iter().filter(|a| a["status"] == "Failed").cloned().collect();
    assert!(failed.len() == 1 && failed[0]["error"].as_str().unwrap().contains(&dead), "{failed:?}");
    let c = catalog_of(&std::fs::read(&to).unwrap());
    assert_eq!(c.artifacts.iter().map(|a| a.ref_name()).collect::<Vec<_>>(), ["samples/hello-world:v1"]);
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "{:?}", started.elapsed());
}
