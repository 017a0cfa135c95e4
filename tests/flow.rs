//! End to end on local directories: export → copy → import, with skopeo as the judge of what arrived.

mod common;

use barge_bundle::Digest;
use common::*;

fn export(w: &Work, to: &str, extra: &[&str]) -> Run {
    let reg = w.reg("src");
    let to = w.s(to);
    let mut args = vec!["export", "--output", "json", "--registry", &reg, "--to", &to];
    args.extend_from_slice(extra);
    args.extend_from_slice(&SAMPLES);
    barge_ok(&args, 0)
}

#[test]
fn round_trip_is_byte_identical_for_skopeo() {
    let w = Work::new();
    export(&w, "store-a/bundle", &[]);
    barge_ok(&["copy", &w.s("store-a/bundle"), &w.s("store-b/bundle")], 0);
    let r = barge_ok(&["import", "--output", "json", &w.s("store-b/bundle"), "--registry", &w.reg("dst")], 0);
    assert_eq!(r.json()["artifacts"].as_array().unwrap().len(), 3);
    for (repo, tag) in [("samples/hello-world", "v1"), ("samples/multiarch", "v1"), ("library/tools", "latest")] {
        let src = skopeo_raw(&format!("oci:{}/{repo}:{tag}", w.s("src")));
        let dst = skopeo_raw(&format!("oci:{}/{repo}:{tag}", w.s("dst")));
        assert_eq!(src, dst, "{repo}:{tag} differs after the round trip");
    }
    // The whole index travelled: skopeo can copy every platform out of the target.
    let out = skopeo(&[
        "copy",
        "--all",
        &format!("oci:{}/samples/multiarch:v1", w.s("dst")),
        &format!("oci:{}:x", w.s("check")),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn skopeo_reads_a_bundle_as_an_oci_archive() {
    let w = Work::new();
    export(&w, "store-a/bundle.tar", &[]);
    for name in ["samples/multiarch:v1", "samples/hello-world:v1"] {
        let out = skopeo(&[
            "copy",
            "--all",
            &format!("oci-archive:{}:{name}", w.s("store-a/bundle.tar")),
            &format!("oci:{}:x", w.s(&format!("sk-{}", name.replace(['/', ':'], "-")))),
        ]);
        assert!(out.status.success(), "skopeo copy {name}: {}", String::from_utf8_lossy(&out.stderr));
        let raw = skopeo_raw(&format!("oci-archive:{}:{name}", w.s("store-a/bundle.tar")));
        let (repo, tag) = name.rsplit_once(':').unwrap();
        assert_eq!(raw, skopeo_raw(&format!("oci:{}/{repo}:{tag}", w.s("src"))));
    }
}

#[test]
fn re_export_gives_the_same_catalog_digest() {
    let w = Work::new();
    for compress in [&[][..], &["--compress", "zstd"][..]] {
        let a = export(&w, "store-a/one", &[&["--overwrite"], compress].concat()).json();
        // The same artifacts in another order.
        let reg = w.reg("src");
        let to = w.s("store-a/two");
        let mut args = vec!["export", "--output", "json", "--overwrite", "--registry", &reg, "--to", &to];
        args.extend_from_slice(compress);
        args.extend(SAMPLES.iter().rev());
        let b = barge_ok(&args, 0).json();
        assert_eq!(a["catalogDigest"], b["catalogDigest"], "compress {compress:?}");
        assert_eq!(std::fs::read(w.path("store-a/one")).unwrap(), std::fs::read(w.path("store-a/two")).unwrap());
        barge_ok(&["verify", &w.s("store-a/one"), "--catalog-digest", a["catalogDigest"].as_str().unwrap()], 0);
    }
}

#[test]
fn zstd_bundles_import() {
    let w = Work::new();
    export(&w, "store-a/b.zst", &["--compress", "zstd"]);
    let head = std::fs::read(w.path("store-a/b.zst")).unwrap();
    assert_eq!(&head[..4], &[0x28, 0xB5, 0x2F, 0xFD]);
    barge_ok(&["import", &w.s("store-a/b.zst"), "--registry", &w.reg("dst")], 0);
    assert_eq!(
        skopeo_raw(&format!("oci:{}/samples/multiarch:v1", w.s("src"))),
        skopeo_raw(&format!("oci:{}/samples/multiarch:v1", w.s("dst")))
    );
}

#[test]
fn export_refuses_an_existing_bundle_without_overwrite() {
    let w = Work::new();
    std::fs::write(w.path("store-a/bundle"), b"precious").unwrap();
    let r = barge(&["export", "--registry", &w.reg("src"), "--to", &w.s("store-a/bundle"), "samples/hello-world:v1"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--overwrite"), "{}", r.stderr);
    assert_eq!(std::fs::read(w.path("store-a/bundle")).unwrap(), b"precious");
    barge_ok(
        &[
            "export",
            "--overwrite",
            "--registry",
            &w.reg("src"),
            "--to",
            &w.s("store-a/bundle"),
            "samples/hello-world:v1",
        ],
        0,
    );
    barge_ok(&["verify", &w.s("store-a/bundle")], 0);
}

#[test]
fn too_many_artifacts_is_refused_before_anything_happens() {
    let w = Work::new();
    let names: Vec<String> = (0..51).map(|i| format!("repo{i}:v1")).collect();
    let reg = w.reg("src");
    let to = w.s("store-a/bundle");
    let mut args = vec!["export", "--registry", &reg, "--to", &to];
    args.extend(names.iter().map(String::as_str));
    let r = barge(&args);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("51 artifacts") && r.stderr.contains("limit of 50"), "{}", r.stderr);
    assert!(snapshot(&w.path("store-a")).is_empty());
    let r =
        barge(&["export", "--max-artifacts", "2", "--registry", &reg, "--to", &to, SAMPLES[0], SAMPLES[1], SAMPLES[2]]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("limit of 2"), "{}", r.stderr);
    let r = barge(&["export", "--registry", &reg, "--to", &to, "Bad/Name:v1"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("Bad/Name:v1") && r.stderr.contains("lowercase"), "{}", r.stderr);
}

#[test]
fn continue_on_errors_exports_the_rest() {
    let w = Work::new();
    let reg = w.reg("src");
    let to = w.s("store-a/bundle");
    let r = barge(&["export", "--registry", &reg, "--to", &to, "samples/hello-world:v1", "samples/missing:v1"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("samples/missing:v1"), "{}", r.stderr);
    assert!(snapshot(&w.path("store-a")).is_empty(), "a failed export left files");
    let r = barge_ok(
        &[
            "export",
            "--output",
            "json",
            "--continue-on-errors",
            "--registry",
            &reg,
            "--to",
            &to,
            "samples/hello-world:v1",
            "samples/missing:v1",
        ],
        6,
    );
    let failed: Vec<_> =
        r.json()["artifacts"].as_array().unwrap().iter().filter(|a| a["status"] == "Failed").cloned().collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["artifact"], "samples/missing:v1");
    barge_ok(&["import", &to, "--registry", &w.reg("dst")], 0);
    skopeo_raw(&format!("oci:{}/samples/hello-world:v1", w.s("dst")));
}

#[test]
fn overwrite_tags_is_checked_before_any_write() {
    let w = Work::new();
    export(&w, "store-a/bundle", &[]);
    // The target already has samples/hello-world:v1 pointing at another image.
    barge_fixtures::samples(&w.path("dst")).unwrap();
    let other = barge_fixtures::write_image(
        &w.path("dst"),
        "samples/hello-world",
        &barge_fixtures::Image::new(vec![barge_fixtures::Layer { seed: 99, size: 10 }]),
    )
    .unwrap();
    barge_fixtures::tag(&w.path("dst"), "samples/hello-world", "v1", &other).unwrap();
    std::fs::remove_dir_all(w.path("dst/samples/multiarch")).unwrap();
    let before = snapshot(&w.path("dst"));
    let bundle = w.s("store-a/bundle");
    let r = barge(&["import", &bundle, "--registry", &w.reg("dst")]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("samples/hello-world:v1") && r.stderr.contains("--overwrite-tags"), "{}", r.stderr);
    assert_eq!(before, snapshot(&w.path("dst")), "a refused import wrote something");

    // With ContinueOnErrors the tag is kept, the rest arrive, exit 6.
    let r = barge_ok(&["import", "--output", "json", "--continue-on-errors", &bundle, "--registry", &w.reg("dst")], 6);
    let j = r.json();
    let status = |name: &str| {
        j["artifacts"].as_array().unwrap().iter().find(|a| a["artifact"] == name).unwrap()["status"].clone()
    };
    assert_eq!(status("samples/hello-world:v1"), "Failed");
    assert_eq!(status("samples/multiarch:v1"), "Succeeded");
    assert_eq!(status("library/tools:latest"), "Unchanged");
    let kept = skopeo_raw(&format!("oci:{}/samples/hello-world:v1", w.s("dst")));
    assert_ne!(kept, skopeo_raw(&format!("oci:{}/samples/hello-world:v1", w.s("src"))));

    // With OverwriteTags the tag moves.
    barge_ok(&["import", "--overwrite-tags", &bundle, "--registry", &w.reg("dst")], 0);
    assert_eq!(
        skopeo_raw(&format!("oci:{}/samples/hello-world:v1", w.s("dst"))),
        skopeo_raw(&format!("oci:{}/samples/hello-world:v1", w.s("src")))
    );
}

#[test]
fn re_import_uploads_nothing_and_delete_source_works() {
    let w = Work::new();
    export(&w, "store-a/bundle", &[]);
    let bundle = w.s("store-a/bundle");
    let first = barge_ok(&["import", "--output", "json", &bundle, "--registry", &w.reg("dst")], 0).json();
    assert!(first["blobsUploaded"].as_u64().unwrap() > 0);
    assert!(first["blobsMounted"].as_u64().unwrap() > 0, "the shared layer should be linked, not written twice");
    let before = snapshot(&w.path("dst"));
    let again = barge_ok(
        &["import", "--output", "json", "--delete-source-blob-on-success", &bundle, "--registry", &w.reg("dst")],
        0,
    )
    .json();
    assert_eq!(again["blobsUploaded"], 0);
    assert_eq!(again["manifestsPushed"], 0);
    assert_eq!(before, snapshot(&w.path("dst")));
    assert_eq!(again["sourceDeleted"], true);
    assert!(!w.path("store-a/bundle").exists());
}

#[test]
fn wrong_catalog_digest_imports_nothing() {
    let w = Work::new();
    export(&w, "store-a/bundle", &[]);
    let wrong = format!("sha256:{}", "0".repeat(64));
    let r = barge(&["import", "--catalog-digest", &wrong, &w.s("store-a/bundle"), "--registry", &w.reg("dst")]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains(&wrong), "{}", r.stderr);
    for repo in ["samples/hello-world", "samples/multiarch", "library/tools"] {
        assert!(!w.path(&format!("dst/{repo}/index.json")).exists(), "{repo} was tagged");
    }
    // A local bundle is checked before anything is written: not a blob arrived.
    assert!(snapshot(&w.path("dst")).is_empty(), "{:?}", snapshot(&w.path("dst")));
    // The right digest imports, and is reported.
    let right = barge_bundle::Digest::sha256_of(&std::fs::read(w.path("store-a/bundle")).unwrap()).to_string();
    let args =
        ["import", "--output", "json", "--catalog-digest", &right, &w.s("store-a/bundle"), "--registry", &w.reg("dst")];
    assert_eq!(barge_ok(&args, 0).json()["catalogDigest"], right);
}

#[test]
fn copy_checks_and_refuses_to_overwrite() {
    let w = Work::new();
    export(&w, "store-a/bundle", &[]);
    std::fs::write(w.path("store-b/bundle"), b"old").unwrap();
    let r = barge(&["copy", &w.s("store-a/bundle"), &w.s("store-b/bundle")]);
    assert_eq!(r.code, 2);
    assert_eq!(std::fs::read(w.path("store-b/bundle")).unwrap(), b"old");
    let r = barge_ok(&["copy", "--output", "json", "--overwrite", &w.s("store-a/bundle"), &w.s("store-b/bundle")], 0);
    assert_eq!(std::fs::read(w.path("store-b/bundle")).unwrap(), std::fs::read(w.path("store-a/bundle")).unwrap());
    assert!(r.json()["sha256"].as_str().unwrap().starts_with("sha256:"));
    let leftovers: Vec<_> =
        snapshot(&w.path("store-b")).into_iter().filter(|(p, _)| p.to_string_lossy().contains("barge-tmp")).collect();
    assert!(leftovers.is_empty());
    let r = barge(&["copy", &w.s("store-a/nope"), &w.s("store-b/x")]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("store-a/nope") && r.stderr.contains("not found"), "{}", r.stderr);
}

#[test]
fn json_errors_are_one_object_on_stdout() {
    let w = Work::new();
    let r = barge(&["verify", "--output", "json", &w.s("nothing-here")]);
    assert_eq!(r.code, 1);
    let j = r.json();
    assert_eq!(j["exitCode"], 1);
    assert!(j["error"].as_str().unwrap().contains("nothing-here"));
    // Usage errors too: one object, exit 2, nothing on stderr.
    for args in [&["--output", "json", "export", "--registry", "x"][..], &["--output=json", "nosuch"][..]] {
        let r = barge(args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert_eq!(r.json()["exitCode"], 2, "{args:?}");
        assert!(!r.json()["error"].as_str().unwrap().is_empty());
        assert!(r.stderr.is_empty(), "{args:?}: {}", r.stderr);
    }
    let help = barge(&["--help"]);
    assert_eq!(help.code, 0);
    assert!(
        help.stdout.contains("Exit codes: 0 success") && help.stdout.contains("130 interrupted"),
        "{}",
        help.stdout
    );
}

#[test]
fn digest_only_artifacts_travel_untagged() {
    let w = Work::new();
    let raw = skopeo_raw(&format!("oci:{}/samples/multiarch:v1", w.s("src")));
    let digest = format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&raw)));
    let artifact = format!("samples/multiarch@{digest}");
    barge_ok(&["export", "--registry", &w.reg("src"), "--to", &w.s("store-a/b"), &artifact], 0);
    // skopeo finds it in the bundle by its digest name.
    assert_eq!(skopeo_raw(&format!("oci-archive:{}:{artifact}", w.s("store-a/b"))), raw);
    let r = barge_ok(&["import", "--output", "json", &w.s("store-a/b"), "--registry", &w.reg("dst")], 0);
    assert_eq!(r.json()["artifacts"][0]["artifact"], artifact);
    // skopeo's oci: cannot name an untagged manifest, so read the layout: an
    // untagged root entry in index.json, and the manifest's bytes unchanged.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.path("dst/samples/multiarch/index.json")).unwrap()).unwrap();
    let entry = &index["manifests"][0];
    assert_eq!(entry["digest"], digest);
    assert!(entry.get("annotations").is_none());
    let hex = digest.trim_start_matches("sha256:");
    assert_eq!(std::fs::read(w.path(&format!("dst/samples/multiarch/blobs/sha256/{hex}"))).unwrap(), raw);
    // A digest that does not exist is named in the error.
    let missing = format!("samples/multiarch@sha256:{}", "0".repeat(64));
    let r = barge(&["export", "--registry", &w.reg("src"), "--to", &w.s("store-a/c"), &missing]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains(&missing), "{}", r.stderr);
}

/// An error's cause is printed once, not once per layer that carried it.
#[test]
fn a_cause_is_said_once() {
    let w = Work::new();
    let r =
        barge_ok(&["export", "--registry", &w.reg("src"), "--to", &w.s("store-a/x"), "samples/hello-world:nope"], 1);
    assert_eq!(r.stderr.matches("not found").count(), 1, "{}", r.stderr);
    assert!(r.stderr.starts_with("barge: error: artifact samples/hello-world:nope: tag \"nope\""), "{}", r.stderr);
}

/// Run barge with `stdin` as its standard input; returns exit code, stdout bytes, stderr.
fn barge_piped(args: &[&str], stdin: &[u8]) -> (i32, Vec<u8>, String) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_barge"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    (out.status.code().unwrap_or(-1), out.stdout, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// `export --to -` writes the bundle to standard output (the summary to
/// standard error); `verify -` and `import -` read it from standard input in
/// one pass, verified as it passes; a cut stream imports nothing.
#[test]
fn bundles_stream_through_standard_output_and_input() {
    let w = Work::new();
    let mut args = vec!["export", "--registry"];
    let reg = w.reg("src");
    args.push(&reg);
    args.extend(["--to", "-"]);
    args.extend(SAMPLES);
    let (code, bundle, err) = barge_piped(&args, b"");
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("catalogDigest: sha256:"), "the summary goes to stderr: {err}");
    let digest = format!("sha256:{}", sha256_hex(&bundle));
    assert!(err.contains(&digest), "the reported digest is the stream's: {err}");
    // The same bytes as a file export.
    let mut file_args = vec!["export", "--registry", &reg, "--to"];
    let file = w.s("store-a/file.tar");
    file_args.push(&file);
    file_args.extend(SAMPLES);
    barge_ok(&file_args, 0);
    assert_eq!(std::fs::read(&file).unwrap(), bundle);

    let (code, out, err) = barge_piped(&["verify", "-", "--catalog-digest", &digest], &bundle);
    assert_eq!(code, 0, "{err}");
    assert!(String::from_utf8_lossy(&out).contains(&digest));
    let dst = w.reg("dst");
    let (code, _, err) = barge_piped(&["import", "-", "--registry", &dst, "--catalog-digest", &digest], &bundle);
    assert_eq!(code, 0, "{err}");
    for s in SAMPLES {
        let tag = if s.contains(':') { s.to_string() } else { format!("{s}:latest") };
        assert_eq!(skopeo_raw(&format!("{dst}/{tag}")), skopeo_raw(&format!("{reg}/{tag}")), "{tag}");
    }

    let cut = &bundle[..bundle.len() / 2];
    let dst2 = w.reg("dst-cut");
    let (code, _, err) = barge_piped(&["import", "-", "--registry", &dst2], cut);
    assert_eq!(code, 3, "{err}");
    let tagged: Vec<_> = snapshot(&w.path("dst-cut")).into_iter().filter(|(p, _)| p.ends_with("index.json")).collect();
    assert!(tagged.is_empty(), "a cut stream tagged {tagged:?}");
    let (code, _, err) = barge_piped(&["import", "-", "--registry", &dst2, "--delete-source-blob-on-success"], &bundle);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot be deleted"), "{err}");
    let (code, _, err) = barge_piped(&["copy", "-", &w.s("store-b/x.tar")], &bundle);
    assert_eq!(code, 2, "{err}");
}

/// `watch --output json` prints one JSON object per event, as it happens.
#[test]
fn watch_prints_json_lines() {
    let w = Work::new();
    let (state, inbox) = (w.s("state"), w.s("inbox"));
    std::fs::create_dir_all(&inbox).unwrap();
    let bundle = format!("{inbox}/b.tar");
    barge_ok(&["export", "--registry", &w.reg("src"), "--to", &bundle, "samples/hello-world:v1"], 0);
    std::fs::write(format!("{inbox}/notes.txt"), b"not a bundle").unwrap();
    let create =
        ["pipeline", "import", "create", "imp", "--registry", &w.reg("dst"), "--storage-container-uri", &inbox];
    barge_ok(&[&create[..], &["--state", &state]].concat(), 0);
    let r = barge_ok(&["--output", "json", "watch", "--once", "--state", &state], 0);
    let lines: Vec<serde_json::Value> = r.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let run = lines.iter().find(|l| l["event"] == "run").unwrap_or_else(|| panic!("{}", r.stdout));
    assert_eq!((run["blob"].as_str(), run["status"].as_str()), (Some("b.tar"), Some("Succeeded")), "{run}");
    assert!(lines.iter().any(|l| l["event"] == "notABundle" && l["blob"] == "notes.txt"), "{}", r.stdout);
    // The last line is the summary, with the exit code.
    assert_eq!(lines.last().unwrap()["exitCode"], 0);
}

/// Shell completions and man pages come from the same definitions as the parser.
#[test]
fn completions_and_man_pages() {
    for shell in ["bash", "zsh", "fish"] {
        let r = barge_ok(&["completions", shell], 0);
        assert!(r.stdout.contains("barge") && r.stdout.contains("export"), "{shell}: {}", r.stdout);
    }
    let man = barge_ok(&["man"], 0);
    assert!(man.stdout.starts_with(".ie") && man.stdout.contains(".TH barge 1"), "{}", man.stdout);
    let export = barge_ok(&["man", "export"], 0);
    assert!(export.stdout.contains(".TH barge-export 1") && export.stdout.contains("\\-\\-to"), "{}", export.stdout);
    let r = barge_ok(&["man", "nosuch"], 2);
    assert!(r.stderr.contains("nosuch"), "{}", r.stderr);
}

/// Without a terminal, progress is a status line on stderr (bytes, share,
/// rate, eta) every BARGE_STATUS_SECONDS; `--quiet` prints none.
#[test]
fn progress_without_a_terminal_is_a_status_line() {
    let w = Work::new();
    let bundle = w.s("store-a/b.tar");
    barge_ok(&["export", "--registry", &w.reg("src"), "--to", &bundle, "samples/hello-world:v1"], 0);
    let r = barge_with(&["import", &bundle, "--registry", &w.reg("dst")], &[("BARGE_STATUS_SECONDS", "0")], "");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let line = r.stderr.lines().find(|l| l.starts_with("barge: importing: ")).unwrap_or_else(|| panic!("{}", r.stderr));
    assert!(line.contains(" of ") && line.contains("%") && line.contains("/s"), "{line}");
    let q =
        barge_with(&["import", "--quiet", &bundle, "--registry", &w.reg("dst2")], &[("BARGE_STATUS_SECONDS", "0")], "");
    assert_eq!(q.code, 0, "{}", q.stderr);
    assert!(!q.stderr.contains("barge: importing"), "{}", q.stderr);
}

/// `--prefix` and `--map` place the artifacts where asked: skopeo finds each at its new path with its digest,
/// `--output json` names it as `target`; a placement that gives a bad name, or two artifacts one tag, writes nothing.
#[test]
fn prefix_and_map_place_the_artifacts() {
    let w = Work::new();
    export(&w, "store-a/bundle", &[]);
    let bundle = w.s("store-a/bundle");
    let import = |dst: &str, extra: &[&str], code: i32| {
        let reg = w.reg(dst);
        let mut args = vec!["import", "--output", "json", &bundle, "--registry", &reg];
        args.extend_from_slice(extra);
        barge_ok(&args, code)
    };
    let placed = [
        (
            "dst-prefix",
            &["--prefix", "mirror/team"][..],
            [
                "mirror/team/samples/hello-world:v1",
                "mirror/team/samples/multiarch:v1",
                "mirror/team/library/tools:latest",
            ],
        ),
        (
            "dst-map",
            &["--map", "samples=apps", "--map", "samples/multiarch=multi", "--map", "library=", "--prefix", "p"][..],
            ["p/apps/hello-world:v1", "p/multi:v1", "p/tools:latest"],
        ),
    ];
    for (dst, extra, targets) in placed {
        let j = import(dst, extra, 0).json();
        let artifacts = j["artifacts"].as_array().unwrap();
        for (source, target) in
            ["samples/hello-world:v1", "samples/multiarch:v1", "library/tools:latest"].iter().zip(targets)
        {
            let a = artifacts.iter().find(|a| a["artifact"] == *source).unwrap_or_else(|| panic!("{source}: {j}"));
            assert_eq!(a["target"], target, "{j}");
            let raw = skopeo_raw(&format!("oci:{}/{target}", w.s(dst)));
            assert_eq!(raw, skopeo_raw(&format!("oci:{}/{source}", w.s("src"))), "{extra:?}: {target}");
            assert_eq!(a["digest"], format!("sha256:{}", sha256_hex(&raw)), "{j}");
        }
        assert!(!w.path(dst).join("samples").exists(), "{extra:?}: something was written under the bundle's names");
    }
    // The text output says where each went; a re-import finds them there.
    let r = barge_ok(&["import", &bundle, "--registry", &w.reg("dst-prefix"), "--prefix", "mirror/team"], 0);
    assert!(r.stdout.contains("unchanged samples/multiarch:v1 -> mirror/team/samples/multiarch:v1"), "{}", r.stdout);
    // Without a placement, `target` is the bundle's own name and the text is as it was.
    let r = barge_ok(&["import", &bundle, "--registry", &w.reg("dst-plain")], 0);
    assert!(r.stdout.contains("imported  samples/hello-world:v1 sha256:") && !r.stdout.contains("->"), "{}", r.stdout);

    // Refused before any write, exit 2, naming the artifact, the name and the map.
    for (extra, wants) in [
        (
            &["--map", "samples/hello-world="][..],
            &["samples/hello-world:v1", "samples/hello-world=", "empty repository name"][..],
        ),
        (
            &["--map", "samples/hello-world=x", "--map", "samples/multiarch=x"][..],
            &["x:v1", "samples/hello-world=x", "samples/multiarch=x", "different digests"][..],
        ),
        (&["--map", "samples=Apps"][..], &["samples=Apps", "lowercase"][..]),
        (&["--prefix", "/abs"][..], &["prefix", "/abs"][..]),
    ] {
        let r = import("dst-refused", extra, 2);
        let error = r.json()["error"].as_str().unwrap_or_default().to_string();
        for want in wants {
            assert!(error.contains(want) && !error.contains('\n'), "{extra:?}: {want}: {}", r.stdout);
        }
        assert!(snapshot(&w.path("dst-refused")).is_empty(), "{extra:?}: a refused import wrote something");
    }
}

/// The flow on `oci:` layouts: export and import the samples; change
/// one image (a new tag sharing its base layer); a delta against what the
/// target holds carries only the new blobs; it imports (blobs already there
/// are neither expected nor written) and skopeo reads every tag; placed under
/// a prefix, its left-out blobs are linked from where the target holds them;
/// into an empty layout it is refused (exit 3) before any write, listing the
/// missing blobs and naming the inventory.
#[test]
fn a_delta_imports_where_its_blobs_are_and_is_refused_where_they_are_not() {
    use common::delta::{delta_of, held_after, inventory_of};
    let w = Work::new();
    export(&w, "store-a/first", &[]);
    barge_ok(&["import", &w.s("store-a/first"), "--registry", &w.reg("dst")], 0);
    let held = held_after(&std::fs::read(w.path("store-a/first")).unwrap());
    // A new image: the base layer of hello-world and tools, and a new one.
    let base = barge_fixtures::Layer { seed: 1, size: 4096 };
    let image = barge_fixtures::Image::new(vec![base, barge_fixtures::Layer { seed: 5, size: 1000 }]);
    let v2 = barge_fixtures::write_image(&w.path("src"), "samples/hello-world", &image).unwrap();
    barge_fixtures::tag(&w.path("src"), "samples/hello-world", "v2", &v2).unwrap();
    export(&w, "store-a/full", &["samples/hello-world:v2"]);
    let full = std::fs::read(w.path("store-a/full")).unwrap();
    let (bytes, catalog) = delta_of(&full, inventory_of(&w.reg("dst")), &held);
    assert_eq!(catalog.omitted().len(), held.len(), "every held blob is left out");
    let new_blobs = catalog.blobs.iter().filter(|b| b.kind != barge_bundle::BlobKind::Manifest).count();
    assert_eq!(new_blobs, 2, "the new layer and config travel: {:?}", catalog.blobs);
    std::fs::write(w.path("store-a/delta"), &bytes).unwrap();
    let delta = w.s("store-a/delta");

    // The catalogDigest of a delta is its file's sha256, checked as for any bundle.
    let digest = format!("sha256:{}", sha256_hex(&bytes));
    let args = ["import", "--output", "json", "--catalog-digest", &digest, &delta, "--registry", &w.reg("dst")];
    let j = barge_ok(&args, 0).json();
    assert_eq!(j["catalogDigest"], digest, "{j}");
    assert_eq!(j["blobsUploaded"], 2, "{j}");
    assert_eq!(j["delta"]["reliedOn"], 1, "v2's base layer: {j}");
    assert_eq!(j["delta"]["omitted"], held.len(), "{j}");
    assert!(j["delta"]["against"].as_str().unwrap().starts_with("inventory sha256:"), "{j}");
    let names = ["samples/hello-world:v1", "samples/hello-world:v2", "samples/multiarch:v1", "library/tools:latest"];
    for (i, name) in names.iter().enumerate() {
        let (src, dst) = (format!("oci:{}/{name}", w.s("src")), format!("oci:{}/{name}", w.s("dst")));
        assert_eq!(skopeo_raw(&src), skopeo_raw(&dst), "{name}");
        let out = skopeo(&["copy", "--all", &dst, &format!("oci:{}:x", w.s(&format!("check-{i}")))]);
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
    }

    // Under a prefix nothing is in the target repositories: every left-out blob is linked from where it is held.
    let r = barge_ok(&["import", &delta, "--registry", &w.reg("dst"), "--prefix", "copy"], 0);
    assert!(r.stdout.contains(&format!("relied on the target for {} of its {} left-out", held.len(), held.len())));
    let copy = format!("oci:{}/copy/samples/hello-world:v2", w.s("dst"));
    let out = skopeo(&["copy", &copy, &format!("oci:{}:x", w.s("check-copy"))]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Into an empty layout: refused, every left-out blob listed (at most ten, then how many more), nothing written.
    std::fs::create_dir_all(w.path("empty")).unwrap();
    let r = barge(&["import", &delta, "--registry", &w.reg("empty")]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    let missing: Vec<&Digest> = held.keys().collect();
    assert!(missing.iter().take(10).all(|d| r.stderr.contains(&d.to_string())), "{}", r.stderr);
    assert!(r.stderr.contains(&format!("inventory sha256:{}", sha256_hex(w.reg("dst").as_bytes()))), "{}", r.stderr);
    assert!(r.stderr.contains(&format!("lacks {} of the blobs", missing.len())), "{}", r.stderr);
    assert!(snapshot(&w.path("empty")).is_empty(), "{:?}", snapshot(&w.path("empty")));
    assert_eq!(std::fs::read_dir(w.path("empty")).unwrap().count(), 0, "a refused delta made a repository");
}
