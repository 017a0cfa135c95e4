//! Signed bundles: barge's SSHSIG signatures checked by `ssh-keygen -Y verify`, ssh-keygen's checked by barge,
//! and every bad signature (unknown key, another bundle, a tampered catalog, none) refused with exit 3, nothing written.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::azurite::{Azurite, DST, SRC};
use common::*;

const IMAGE: &str = "samples/hello-world:v1";

/// `ssh-keygen -t TYPE -N ''` into `dir/NAME` (and `NAME.pub`).
fn keygen(dir: &Path, name: &str, args: &[&str]) -> String {
    let key = dir.join(name).display().to_string();
    let out = Command::new("ssh-keygen").args(args).args(["-N", "", "-q", "-C", name, "-f", &key]).output().unwrap();
    assert!(out.status.success(), "ssh-keygen: {}", String::from_utf8_lossy(&out.stderr));
    key
}

/// An allowed_signers line for the public key of `key`.
fn allowed_line(principal: &str, key: &str) -> String {
    let public = std::fs::read_to_string(format!("{key}.pub")).unwrap();
    format!("{principal} namespaces=\"barge-bundle\" {}\n", public.trim())
}

/// Export IMAGE (or `image`) from the samples into `name` in `store-a`.
fn export(w: &Work, name: &str, image: &str, extra: &[&str]) -> String {
    let (to, reg) = (w.s(&format!("store-a/{name}")), w.reg("src"));
    let mut args = vec!["export", "--registry", &reg, "--to", &to, image];
    args.extend_from_slice(extra);
    barge_ok(&args, 0);
    to
}

/// `ssh-keygen -Y verify` of `bundle.sig` over `bundle.sig.msg`, as the README documents it.
fn ssh_keygen_verify(allowed: &str, principal: &str, bundle: &str) -> std::process::Output {
    let msg = std::fs::File::open(format!("{bundle}.sig.msg")).unwrap();
    Command::new("ssh-keygen")
        .args(["-Y", "verify", "-f", allowed, "-I", principal, "-n", "barge-bundle", "-s", &format!("{bundle}.sig")])
        .stdin(msg)
        .output()
        .unwrap()
}

/// The documented digest check: `sha256sum BUNDLE` equals the statement's catalogDigest.
fn digest_matches_statement(bundle: &str) -> bool {
    let sum = sha256_hex(&std::fs::read(bundle).unwrap());
    let msg = std::fs::read_to_string(format!("{bundle}.sig.msg")).unwrap();
    msg.lines().any(|l| l == format!("catalogDigest sha256:{sum}"))
}

#[test]
fn ssh_keygen_checks_barges_signatures_and_barge_checks_ssh_keygens() {
    let w = Work::new();
    let keys = w.path("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let kinds: [(&str, &[&str]); 3] =
        [("ed", &["-t", "ed25519"]), ("ec", &["-t", "ecdsa", "-b", "256"]), ("rsa", &["-t", "rsa", "-b", "2048"])];
    let mut allowed = String::new();
    let mut made = Vec::new();
    for (name, args) in kinds {
        let key = keygen(&keys, name, args);
        allowed += &allowed_line(&format!("{name}@example.org"), &key);
        made.push((name, key));
    }
    let allowed_path = w.s("keys/allowed_signers");
    std::fs::write(&allowed_path, &allowed).unwrap();
    let bundle = export(&w, "b.tar", IMAGE, &[]);
    for (name, key) in &made {
        let r = barge_ok(&["--output", "json", "sign", &bundle, "--key", key], 0);
        assert!(r.json()["signer"]["fingerprint"].as_str().unwrap().starts_with("SHA256:"), "{}", r.stdout);
        let msg = std::fs::read_to_string(format!("{bundle}.sig.msg")).unwrap();
        assert!(msg.starts_with("barge-bundle-signature v1\ncatalogDigest sha256:"), "{msg}");
        assert!(msg.contains(&format!("artifact {IMAGE} sha256:")), "{msg}");
        assert!(digest_matches_statement(&bundle), "{name}: the statement names another digest");
        let out = ssh_keygen_verify(&allowed_path, &format!("{name}@example.org"), &bundle);
        assert!(
            out.status.success(),
            "{name}: ssh-keygen refused barge's signature: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r = barge_ok(&["verify", &bundle, "--allowed-signers", &allowed_path], 0);
        assert!(
            r.stdout.contains("signed by key SHA256:") && r.stdout.contains(&format!("{name}@example.org")),
            "{}",
            r.stdout
        );

        // ssh-keygen's own signature over the same statement, put where barge looks for it.
        let out = Command::new("ssh-keygen")
            .args(["-Y", "sign", "-f", key, "-n", "barge-bundle", &format!("{bundle}.sig.msg")])
            .output()
            .unwrap();
        assert!(out.status.success(), "ssh-keygen -Y sign: {}", String::from_utf8_lossy(&out.stderr));
        std::fs::rename(format!("{bundle}.sig.msg.sig"), format!("{bundle}.sig")).unwrap();
        barge_ok(&["verify", &bundle, "--allowed-signers", &allowed_path], 0);
    }
    // The last signature (ssh-keygen's, RSA) admits an import, judged by skopeo.
    let target = w.path("target");
    let r = barge_ok(
        &[
            "import",
            &bundle,
            "--registry",
            &format!("oci:{}", target.display()),
            "--allowed-signers",
            &allowed_path,
            "--require-signature",
        ],
        0,
    );
    assert!(r.stdout.contains("signed by key SHA256:"), "{}", r.stdout);
    let out = skopeo(&["inspect", "--raw", &format!("oci:{}/samples/hello-world:v1", target.display())]);
    assert!(out.status.success(), "skopeo: {}", String::from_utf8_lossy(&out.stderr));

    // `barge copy` carries the signature with the bundle.
    let copied = w.s("store-b/b.tar");
    let r = barge_ok(&["copy", &bundle, &copied], 0);
    assert!(r.stdout.contains("copied its signature"), "{}", r.stdout);
    barge_ok(&["verify", &copied, "--allowed-signers", &allowed_path], 0);
    // A bundle deleted on success takes its signature with it.
    let registry = format!("oci:{}", w.s("target-2"));
    barge_ok(
        &[
            "import",
            &copied,
            "--registry",
            &registry,
            "--require-signature",
            "--allowed-signers",
            &allowed_path,
            "--delete-source-blob-on-success",
        ],
        0,
    );
    for left in [copied.clone(), format!("{copied}.sig"), format!("{copied}.sig.msg")] {
        assert!(!Path::new(&left).exists(), "{left} is left");
    }
}

/// Verify and import with a required signature: both exit 3 naming `needle`, and the target stays empty.
fn refused(w: &Work, case: &str, bundle: &str, allowed: &str, needle: &str) {
    let r = barge(&["verify", bundle, "--allowed-signers", allowed]);
    assert_eq!(r.code, 3, "{case}: verify: {}", r.stderr);
    assert!(r.stderr.contains(needle), "{case}: verify: expected {needle:?} in {}", r.stderr);
    let target = w.path(&format!("target-{case}"));
    let registry = format!("oci:{}", target.display());
    let r = barge(&["import", bundle, "--registry", &registry, "--allowed-signers", allowed, "--require-signature"]);
    assert_eq!(r.code, 3, "{case}: import: {}", r.stderr);
    assert!(r.stderr.contains(needle), "{case}: import: expected {needle:?} in {}", r.stderr);
    assert!(snapshot(&target).is_empty(), "{case}: the refused import wrote {:?}", snapshot(&target));
}

#[test]
fn bad_signatures_are_refused_before_any_write() {
    let w = Work::new();
    let keys = w.path("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let good = keygen(&keys, "good", &["-t", "ed25519"]);
    let stranger = keygen(&keys, "stranger", &["-t", "ed25519"]);
    let allowed = w.s("keys/allowed_signers");
    std::fs::write(&allowed, allowed_line("ops@example.org", &good)).unwrap();
    let bundle = export(&w, "b.tar", IMAGE, &["--sign-key", &good]);
    barge_ok(&["verify", &bundle, "--allowed-signers", &allowed], 0);
    let sig = std::fs::read(format!("{bundle}.sig")).unwrap();

    // Missing: no signature beside the bundle.
    std::fs::remove_file(format!("{bundle}.sig")).unwrap();
    refused(&w, "missing", &bundle, &allowed, "is not signed");
    // Without --require-signature an unsigned bundle imports.
    let target = format!("oci:{}", w.s("target-optional"));
    barge_ok(&["import", &bundle, "--registry", &target, "--allowed-signers", &allowed], 0);

    // Unknown: a key not in allowed_signers; named by its fingerprint.
    barge_ok(&["sign", &bundle, "--key", &stranger], 0);
    let fp = Command::new("ssh-keygen").args(["-l", "-f", &format!("{stranger}.pub")]).output().unwrap();
    let fp = String::from_utf8_lossy(&fp.stdout).split_whitespace().nth(1).unwrap().to_string();
    refused(&w, "unknown", &bundle, &allowed, &format!("signed by key {fp}: the key is not in the allowed signers"));

    // Another bundle's signature, by an allowed key.
    let other = export(&w, "other.tar", "library/tools", &["--sign-key", &good]);
    std::fs::copy(format!("{other}.sig"), format!("{bundle}.sig")).unwrap();
    refused(&w, "other", &bundle, &allowed, "(ops@example.org): the signature does not match this bundle");

    // A tampered catalog: the bundle re-forged (its catalog's `tool` changed, still a valid bundle).
    std::fs::write(format!("{bundle}.sig"), &sig).unwrap();
    barge_ok(&["verify", &bundle, "--allowed-signers", &allowed], 0);
    let mut bytes = std::fs::read(&bundle).unwrap();
    let at = bytes.windows(11).position(|x| x == b"barge 0.1.0").expect("the catalog names its tool");
    bytes[at..at + 11].copy_from_slice(b"barge 9.9.9");
    std::fs::write(&bundle, &bytes).unwrap();
    barge_ok(&["verify", &bundle], 0);
    refused(&w, "tampered", &bundle, &allowed, "the signature does not match this bundle");

    // Another namespace: ssh-keygen's signature for `file` is not a bundle signature.
    let msg = w.s("store-a/msg");
    std::fs::write(&msg, "anything").unwrap();
    let out = Command::new("ssh-keygen").args(["-Y", "sign", "-f", &good, "-n", "file", &msg]).output().unwrap();
    assert!(out.status.success());
    std::fs::rename(format!("{msg}.sig"), format!("{bundle}.sig")).unwrap();
    refused(&w, "namespace", &bundle, &allowed, "namespace \"file\"");

    // allowed_signers options barge does not honour are refused, naming the line.
    std::fs::write(
        &allowed,
        format!("ops@example.org cert-authority {}", std::fs::read_to_string(format!("{good}.pub")).unwrap()),
    )
    .unwrap();
    let r = barge(&["verify", &bundle, "--allowed-signers", &allowed]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("line 1: cert-authority"), "{}", r.stderr);
}

#[test]
fn an_agent_held_key_signs() {
    let w = Work::new();
    let keys = w.path("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let sock = w.s("agent.sock");
    let mut agent = Command::new("ssh-agent").args(["-D", "-a", &sock]).stdout(Stdio::null()).spawn().unwrap();
    for _ in 0..100 {
        if Path::new(&sock).exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let bundle = export(&w, "b.tar", IMAGE, &[]);
    let mut allowed = String::new();
    for (name, args) in [("ed", &["-t", "ed25519"][..]), ("rsa", &["-t", "rsa", "-b", "2048"][..])] {
        let key = keygen(&keys, name, args);
        allowed += &allowed_line(name, &key);
        std::fs::write(w.path("keys/allowed_signers"), &allowed).unwrap();
        let public = format!("{key}.pub");
        // Not yet in the agent: refused, naming the fix.
        let r = barge_with(&["sign", &bundle, "--key", &public], &[("SSH_AUTH_SOCK", &sock)], "");
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(r.stderr.contains("add it with ssh-add"), "{}", r.stderr);
        let out = Command::new("ssh-add").arg(&key).env("SSH_AUTH_SOCK", &sock).output().unwrap();
        assert!(out.status.success(), "ssh-add: {}", String::from_utf8_lossy(&out.stderr));
        let r = barge_with(&["sign", &bundle, "--key", &public], &[("SSH_AUTH_SOCK", &sock)], "");
        assert_eq!(r.code, 0, "{name}: {}", r.stderr);
        let out = ssh_keygen_verify(&w.s("keys/allowed_signers"), name, &bundle);
        assert!(
            out.status.success(),
            "{name}: ssh-keygen refused the agent's signature: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    agent.kill().unwrap();
    agent.wait().unwrap();
}

#[test]
fn pipelines_sign_exports_and_require_signatures_on_import() {
    let w = Work::new();
    let keys = w.path("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let key = keygen(&keys, "ci", &["-t", "ed25519"]);
    std::fs::write(w.path("keys/allowed_signers"), allowed_line("ci@example.org", &key)).unwrap();
    let state = w.s("state");
    let run = |args: &[&str]| barge_in(&state, &[], args);
    std::fs::create_dir_all(w.path("bundles")).unwrap();
    let (reg, uri) = (w.reg("src"), w.s("bundles"));
    let signing = format!("file:{key}");
    let r = run(&[
        "pipeline",
        "export",
        "create",
        "exp",
        "--registry",
        &reg,
        "--storage-container-uri",
        &uri,
        "--signing-key",
        &signing,
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let allowed = format!("file:{}", w.s("keys/allowed_signers"));
    let target = w.reg("target");
    let r = run(&[
        "pipeline",
        "import",
        "create",
        "imp",
        "--registry",
        &target,
        "--storage-container-uri",
        &uri,
        "--allowed-signers",
        &allowed,
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = run(&["run", "create", "e1", "--pipeline", "exp", "--blob", "s.tar", "--artifacts", IMAGE]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let bundle = w.s("bundles/s.tar");
    let out = ssh_keygen_verify(w.path("keys/allowed_signers").to_str().unwrap(), "ci@example.org", &bundle);
    assert!(out.status.success(), "ssh-keygen refused the run's signature: {}", String::from_utf8_lossy(&out.stderr));

    // An unsigned bundle lands beside it: the trigger imports the signed one and fails the other, saying why.
    std::fs::copy(&bundle, w.path("bundles/u.tar")).unwrap();
    let r = run(&["watch", "--once"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = run(&["--output", "json", "run", "list"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let runs = r.json()["runs"].as_array().unwrap().clone();
    let imports: Vec<_> = runs
        .iter()
        .filter(|r| r["properties"]["request"]["pipelineResourceId"].as_str().is_some_and(|p| p.ends_with("imp")))
        .collect();
    assert_eq!(imports.len(), 2, "{runs:?}");
    for rec in imports {
        let blob = rec["properties"]["request"]["source"]["name"].as_str().unwrap_or_default().to_string();
        let response = &rec["properties"]["response"];
        if blob == "u.tar" {
            assert_eq!(response["status"], "Failed", "{rec}");
            let msg = response["pipelineRunErrorMessage"].as_str().unwrap();
            assert!(msg.contains("is not signed"), "{msg}");
        } else {
            assert_eq!(response["status"], "Succeeded", "{rec}");
        }
    }
    let out = skopeo(&["inspect", "--raw", &format!("oci:{}/samples/hello-world:v1", w.s("target"))]);
    assert!(out.status.success(), "skopeo: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn signatures_travel_through_storage_with_their_bundle() {
    let w = Work::new();
    let keys = w.path("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let key = keygen(&keys, "ops", &["-t", "ed25519"]);
    let allowed = w.s("keys/allowed_signers");
    std::fs::write(&allowed, allowed_line("ops@example.org", &key)).unwrap();
    let az = Azurite::start();
    let (src, dst) = (az.url(SRC, "t/b.tar", "racwdl"), az.url(DST, "t/b.tar", "racwdl"));
    let reg = w.reg("src");
    barge_ok(&["export", "--registry", &reg, "--to", &src, IMAGE, "--sign-key", &key], 0);
    assert!(az.exists(SRC, "t/b.tar.sig") && az.exists(SRC, "t/b.tar.sig.msg"));
    barge_ok(&["verify", &src, "--allowed-signers", &allowed], 0);
    let r = barge_ok(&["copy", &src, &dst], 0);
    assert!(r.stdout.contains("copied its signature"), "{}", r.stdout);
    let target = w.path("target");
    let registry = format!("oci:{}", target.display());
    barge_ok(&["import", &dst, "--registry", &registry, "--allowed-signers", &allowed, "--require-signature"], 0);
    let out = skopeo(&["inspect", "--raw", &format!("oci:{}/samples/hello-world:v1", target.display())]);
    assert!(out.status.success(), "skopeo: {}", String::from_utf8_lossy(&out.stderr));
    // A bundle copied without its signature is refused there, nothing written.
    let bare = az.url(DST, "t/bare.tar", "racwdl");
    let plain = export(&w, "plain.tar", IMAGE, &[]);
    barge_ok(&["copy", &plain, &bare], 0);
    let empty = w.path("target-bare");
    let registry = format!("oci:{}", empty.display());
    let r = barge(&["import", &bare, "--registry", &registry, "--allowed-signers", &allowed, "--require-signature"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("is not signed"), "{}", r.stderr);
    assert!(snapshot(&empty).is_empty());
}

/// A split bundle is signed as one: `NAME.sig` beside its parts, over the
/// catalogDigest of the parts concatenated; ssh-keygen checks it, and an
/// import that requires a signature takes the split bundle by its parts.json.
#[test]
fn a_split_bundle_is_signed_as_one() {
    let w = Work::new();
    let keys = w.path("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let key = keygen(&keys, "ed", &["-t", "ed25519"]);
    let allowed = w.s("allowed");
    std::fs::write(&allowed, allowed_line("courier", &key)).unwrap();
    let to = export(&w, "split", "samples/multiarch:v1", &["--part-size", "1MiB", "--sign-key", &key]);
    let json = format!("{to}.parts.json");
    let out = ssh_keygen_verify(&allowed, "courier", &to);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let parts: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let msg = std::fs::read_to_string(format!("{to}.sig.msg")).unwrap();
    assert!(msg.contains(&format!("catalogDigest {}", parts["catalogDigest"].as_str().unwrap())), "{msg}");
    barge_ok(&["verify", &json, "--allowed-signers", &allowed], 0);
    let dst = w.reg("dst");
    barge_ok(&["import", &json, "--registry", &dst, "--allowed-signers", &allowed, "--require-signature"], 0);
}
