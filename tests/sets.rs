//! Transfer sets: full references and set files drawing from two registries at once (one with basic auth) into a third, judged by skopeo.

mod common;

use std::path::Path;
use std::sync::OnceLock;

use barge_fixtures::{tag, write_image, write_index, Image, Layer};
use common::registry::TestRegistry;
use common::{barge_with, sha256_hex, Run};

/// Two source registries and their content, shared by the tests of this binary.
struct Sources {
    /// Anonymous.
    a: TestRegistry,
    /// Basic auth, its credentials in `docker/config.json` only.
    b: TestRegistry,
    dir: tempfile::TempDir,
}

const USER: (&str, &str) = ("setuser", "set-pass-9f2c");

fn image(seeds: &[u64], arch: &str) -> Image {
    let mut i = Image::new(seeds.iter().map(|&seed| Layer { seed, size: 2048 + seed }).collect());
    i.arch = arch.into();
    i
}

fn put(layout: &Path, reg: &TestRegistry, repo: &str, t: &str, img: &Image) {
    let d = write_image(layout, repo, img).unwrap();
    tag(layout, repo, t, &d).unwrap();
    reg.push(layout, repo, t);
}

fn sources() -> &'static Sources {
    static S: OnceLock<Sources> = OnceLock::new();
    S.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (TestRegistry::start(), TestRegistry::start_with_auth(USER.0, USER.1));
        let la = dir.path().join("layout-a");
        for (t, seed) in [("1.9", 21), ("1.10", 22), ("2.0", 23), ("2.1-rc.1", 24), ("latest", 23)] {
            put(&la, &a, "app/web", t, &image(&[1, seed], "amd64"));
        }
        let d = write_index(&la, "base/multi", &[image(&[31], "amd64"), image(&[32], "arm64")]).unwrap();
        tag(&la, "base/multi", "v1", &d).unwrap();
        a.push(&la, "base/multi", "v1");
        // Same name as in B, other content: a bundle cannot hold both.
        put(&la, &a, "team/api", "v1", &image(&[41], "amd64"));
        let lb = dir.path().join("layout-b");
        // Layer seed 1 is shared with A's app/web: stored once in a bundle.
        put(&lb, &b, "team/api", "v1", &image(&[1, 51], "amd64"));
        put(&lb, &b, "team/api", "v2", &image(&[1, 52], "amd64"));
        let cfg = dir.path().join("docker");
        std::fs::create_dir_all(&cfg).unwrap();
        let auth = common::base64(&format!("{}:{}", USER.0, USER.1));
        std::fs::write(cfg.join("config.json"), format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, b.host))
            .unwrap();
        Sources { a, b, dir }
    })
}

impl Sources {
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![("DOCKER_CONFIG", self.dir.path().join("docker").display().to_string())]
    }

    fn barge(&self, args: &[&str]) -> Run {
        let env = self.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        barge_with(args, &env, "")
    }

    /// The digest of `repo:tag` in registry `reg`, read by skopeo.
    fn digest(reg: &TestRegistry, reference: &str) -> String {
        let raw = reg.raw(reference).unwrap_or_else(|| panic!("{reference} is not in {}", reg.host));
        format!("sha256:{}", sha256_hex(&raw))
    }
}

fn ok(r: Run, code: i32, what: &str) -> Run {
    assert_eq!(r.code, code, "{what}\nstdout: {}\nstderr: {}", r.stdout, r.stderr);
    r
}

/// A set file with exact tags, a tag pattern cut to the latest two versions,
/// a digest, from two registries; a dry run says what it resolves to; the
/// bundle imported into a third registry has every digest skopeo reads at the sources.
#[test]
fn a_set_from_two_registries_lands_in_a_third() {
    let s = sources();
    let work = tempfile::tempdir().unwrap();
    let v2 = Sources::digest(&s.b, "team/api:v2");
    let set = work.path().join("set.yaml");
    std::fs::write(
        &set,
        format!(
            r#"# kept in git, diffed in review
artifacts:
  - registry: {a}
    repository: app/web
    tagPattern: "^[0-9]+\\.[0-9]+$"
    latest: 2
  - registry: {a}
    repository: base/multi
    tags: ["v1"]
    platforms: ["linux/arm64"]
  - registry: {b}
    repository: team/api
    tags: [v1]
    digests: ["{v2}"]
"#,
            a = s.a.host,
            b = s.b.host
        ),
    )
    .unwrap();
    let set = set.to_str().unwrap();

    let r = ok(s.barge(&["export", "-f", set, "--dry-run", "--output", "json"]), 0, "dry run");
    let plan = r.json();
    let names: Vec<&str> =
        plan["artifacts"].as_array().unwrap().iter().map(|a| a["request"].as_str().unwrap()).collect();
    let (a, b) = (&s.a.host, &s.b.host);
    assert_eq!(
        names,
        [
            format!("{a}/app/web:1.10"),
            format!("{a}/app/web:2.0"),
            format!("{a}/base/multi:v1"),
            format!("{b}/team/api:v1"),
            format!("{b}/team/api@{v2}"),
        ]
    );
    assert_eq!(plan["sourceRegistries"].as_array().unwrap().len(), 2);
    // Layer seed 1 is in app/web and team/api: stored once, named as shared.
    assert!(
        plan["sharedBlobs"].as_array().unwrap().iter().any(|b| b["usedBy"].as_array().unwrap().len() >= 3),
        "{plan}"
    );
    assert!(plan["sharedBytes"].as_u64().unwrap() > 0);
    let text = ok(s.barge(&["export", "-f", set, "--dry-run"]), 0, "dry run text").stdout;
    assert!(text.starts_with("would export 5 artifact(s) from "), "{text}");
    assert!(std::fs::read_dir(work.path()).unwrap().count() == 1, "a dry run writes nothing");

    let bundle = work.path().join("set.tar");
    let bundle = bundle.to_str().unwrap();
    let r = ok(s.barge(&["export", "-f", set, "--to", bundle, "--output", "json"]), 0, "export");
    assert_eq!(r.json()["artifacts"].as_array().unwrap().len(), 5);
    let catalog = common::catalog_of(&std::fs::read(bundle).unwrap());
    let registries: std::collections::BTreeSet<&str> =
        catalog.artifacts.iter().map(|a| a.registry.as_deref().unwrap()).collect();
    assert_eq!(registries, [a.as_str(), b.as_str()].into_iter().collect());

    // The index travels sparse: only the arm64 child.
    let multi = catalog.artifacts.iter().find(|a| a.repository == "base/multi").unwrap();
    assert_eq!(multi.platforms, ["linux/arm64"]);
    let src_index: serde_json::Value = serde_json::from_slice(&s.a.raw("base/multi:v1").unwrap()).unwrap();
    let child = |index: &serde_json::Value, arch: &str| {
        let m = index["manifests"].as_array().unwrap();
        m.iter().find(|c| c["platform"]["architecture"] == arch).map(|c| c["digest"].as_str().unwrap().to_string())
    };
    let arm = child(&src_index, "arm64").unwrap();
    assert_eq!(multi.manifests.len(), 2, "the arm64 child and the index");
    assert!(multi.manifests.iter().any(|d| d.to_string() == arm));

    // distribution 2.8 wants every child of an index: the index is written anew
    // with the selected platform; everything lands under a prefix, B's team/ mapped.
    let t = TestRegistry::start();
    let map = format!("{b}/team=teams");
    let r = s.barge(&[
        "import",
        bundle,
        "--registry",
        &t.host,
        "--platform-index",
        "rewrite",
        "--prefix",
        "mirror",
        "--map",
        &map,
        "--output",
        "json",
    ]);
    let report = ok(r, 0, "import").json();
    let targets: Vec<&str> =
        report["artifacts"].as_array().unwrap().iter().map(|a| a["target"].as_str().unwrap()).collect();
    assert_eq!(
        targets,
        [
            "mirror/app/web:1.10".to_string(),
            "mirror/app/web:2.0".into(),
            "mirror/base/multi:v1".into(),
            "mirror/teams/api:v1".into(),
            format!("mirror/teams/api@{v2}"),
        ]
    );
    for (src, reference, there) in [
        (&s.a, "app/web:1.10", "mirror/app/web:1.10"),
        (&s.a, "app/web:2.0", "mirror/app/web:2.0"),
        (&s.b, "team/api:v1", "mirror/teams/api:v1"),
        (&s.b, &*format!("team/api@{v2}"), &*format!("mirror/teams/api@{v2}")),
    ] {
        assert_eq!(Sources::digest(&t, there), Sources::digest(src, reference), "{reference}");
    }
    assert!(t.raw("mirror/app/web:1.9").is_none() && t.raw("mirror/app/web:2.1-rc.1").is_none(), "the latest two only");
    let index: serde_json::Value = serde_json::from_slice(&t.raw("mirror/base/multi:v1").unwrap()).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(child(&index, "arm64").unwrap(), arm);
    let multi_out = report["artifacts"].as_array().unwrap().iter().find(|a| a["target"] == "mirror/base/multi:v1");
    assert_eq!(multi_out.unwrap()["rewrittenFrom"], src_index_digest(&s.a));
    assert_eq!(Sources::digest(&t, &format!("mirror/base/multi@{arm}")), arm, "skopeo pulls the selected platform");
    let out = common::skopeo(&[
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        "--override-arch",
        "arm64",
        &format!("docker://{}/mirror/base/multi:v1", t.host),
        &format!("oci:{}:pulled", work.path().join("pulled").display()),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn src_index_digest(a: &TestRegistry) -> String {
    Sources::digest(a, "base/multi:v1")
}

/// Full references on the command line, from both registries, credentials per host.
#[test]
fn full_references_from_two_registries() {
    let s = sources();
    let work = tempfile::tempdir().unwrap();
    let bundle = work.path().join("refs.tar");
    let bundle = bundle.to_str().unwrap();
    let (web, api) = (format!("{}/app/web:2.0", s.a.host), format!("{}/team/api:v2", s.b.host));
    ok(s.barge(&["export", "--no-referrers", "--to", bundle, &web, &api]), 0, "export");
    let t = TestRegistry::start();
    ok(s.barge(&["import", bundle, "--registry", &t.host]), 0, "import");
    assert_eq!(Sources::digest(&t, "app/web:2.0"), Sources::digest(&s.a, "app/web:2.0"));
    assert_eq!(Sources::digest(&t, "team/api:v2"), Sources::digest(&s.b, "team/api:v2"));

    // One name in the bundle for two different artifacts: refused before anything is written.
    let clash = [format!("{}/team/api:v1", s.a.host), format!("{}/team/api:v1", s.b.host)];
    let to = work.path().join("clash.tar");
    let r = ok(s.barge(&["export", "--to", to.to_str().unwrap(), &clash[0], &clash[1]]), 2, "clash");
    assert!(r.stderr.contains("would both be team/api:v1"), "{}", r.stderr);
    assert!(!to.exists());

    // --username names one registry; two need a docker config.
    let env = s.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let args = ["export", "--to", to.to_str().unwrap(), "--username", "u", "--password-stdin", &web, &api];
    let r = barge_with(&args, &env, "pw\n");
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("docker config"), "{}", r.stderr);
}

/// A set that matches nothing, or more than the limit, is refused naming why;
/// ContinueOnErrors skips the entry that matched nothing.
#[test]
fn sets_that_cannot_be_exported_say_why() {
    let s = sources();
    let work = tempfile::tempdir().unwrap();
    let set = work.path().join("set.json");
    let write = |body: String| std::fs::write(&set, body).unwrap();
    let set_s = set.to_str().unwrap();
    let to = work.path().join("b.tar");
    let to_s = to.to_str().unwrap();

    write(format!(
        r#"{{"artifacts": [{{"registry": "{a}", "repository": "app/web", "tagPattern": "^9\\."}},
                           {{"registry": "{a}", "repository": "app/web", "tags": ["1.9"]}}]}}"#,
        a = s.a.host
    ));
    let r = ok(s.barge(&["export", "-f", set_s, "--to", to_s]), 1, "nothing matched");
    assert!(r.stderr.contains("artifacts[0]") && r.stderr.contains("^9\\\\."), "{}", r.stderr);
    assert!(!to.exists());
    let r = ok(s.barge(&["export", "-f", set_s, "--to", to_s, "--continue-on-errors"]), 6, "skipped");
    assert!(r.stdout.contains("failed: ") && r.stdout.contains("artifacts[0]"), "{}", r.stdout);
    assert_eq!(common::catalog_of(&std::fs::read(&to).unwrap()).artifacts.len(), 1);
    std::fs::remove_file(&to).unwrap();

    write(format!(r#"{{"artifacts": [{{"registry": "{}", "repository": "app/web", "tagPattern": "."}}]}}"#, s.a.host));
    let r = ok(s.barge(&["export", "-f", set_s, "--to", to_s, "--max-artifacts", "3"]), 2, "limit");
    assert!(r.stderr.contains("5 artifacts resolved from the set, more than the limit of 3"), "{}", r.stderr);
    assert!(r.stderr.contains("--max-artifacts"), "{}", r.stderr);

    write("artifacts:\n  - repository: app/web\n    tagz: [x]\n".into());
    let r = ok(s.barge(&["export", "-f", set_s, "--to", to_s]), 2, "typo");
    assert!(r.stderr.contains("unknown field `tagz`"), "{}", r.stderr);
    assert!(!to.exists());
}
