//! Pipelines, runs and the import trigger, on Azurite and real registries: ACR's walk-through, end to end.

mod common;

use std::path::Path;

use common::azurite::{Azurite, DST, SRC};
use common::registry::TestRegistry;
use common::*;

struct Env {
    w: Work,
    az: Azurite,
    state: String,
    env: Vec<(String, String)>,
}

impl Env {
    fn new() -> Env {
        let w = Work::new();
        let az = Azurite::start();
        let state = w.s("state");
        // Container SAS tokens, as ACR's walk-through makes them (with the leading '?'):
        // `alrw` for export, `dlr` for import, nothing more.
        let export_sas = format!("?{}", az.url(SRC, "x", "alrw").split_once('?').unwrap().1);
        let import_sas = format!("?{}", az.url(DST, "x", "dlr").split_once('?').unwrap().1);
        let env = vec![("EXPORT_SAS".to_string(), export_sas), ("IMPORT_SAS".to_string(), import_sas)];
        Env { w, az, state, env }
    }

    fn barge(&self, args: &[&str]) -> Run {
        barge_in(&self.state, &self.env, args)
    }

    fn ok(&self, args: &[&str]) -> Run {
        let r = self.barge(args);
        assert_eq!(r.code, 0, "barge {args:?}\nstdout: {}\nstderr: {}", r.stdout, r.stderr);
        r
    }

    fn container(&self, account: &str) -> String {
        format!("{}/{account}/bundles", self.az.endpoint)
    }

    fn runs(&self) -> Vec<serde_json::Value> {
        self.ok(&["--output", "json", "run", "list"]).json()["runs"].as_array().unwrap().clone()
    }
}

fn pipelines(e: &Env, src: &str, dst: &str, import_options: &[&str]) {
    let (srcc, dstc) = (e.container(SRC), e.container(DST));
    e.ok(&[
        "pipeline",
        "export",
        "create",
        "exp1",
        "--registry",
        src,
        "--storage-container-uri",
        &srcc,
        "--secret",
        "env:EXPORT_SAS",
        "--options",
        "OverwriteBlobs",
        "ContinueOnErrors",
    ]);
    let mut args = vec![
        "pipeline",
        "import",
        "create",
        "imp1",
        "--registry",
        dst,
        "--storage-container-uri",
        &dstc,
        "--secret",
        "env:IMPORT_SAS",
    ];
    if !import_options.is_empty() {
        args.push("--options");
        args.extend_from_slice(import_options);
    }
    e.ok(&args);
}

#[test]
fn acr_walkthrough_export_copy_and_the_trigger_imports() {
    let e = Env::new();
    let src = TestRegistry::start();
    let dst = TestRegistry::start();
    for (repo, tag) in [("samples/hello-world", "v1"), ("samples/multiarch", "v1")] {
        src.push(&e.w.path("src"), repo, tag);
    }
    pipelines(&e, &src.host, &dst.host, &["OverwriteTags", "DeleteSourceBlobOnSuccess"]);
    // An option of the other kind is refused.
    let dstc = e.container(DST);
    let r = e.barge(&[
        "pipeline",
        "import",
        "create",
        "bad",
        "--registry",
        &dst.host,
        "--storage-container-uri",
        &dstc,
        "--secret",
        "env:IMPORT_SAS",
        "--options",
        "OverwriteBlobs",
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("OverwriteBlobs"), "{}", r.stderr);

    let run = |tag: Option<&str>| {
        let mut a = vec![
            "--output",
            "json",
            "run",
            "create",
            "run1",
            "--pipeline",
            "exp1",
            "--blob",
            "myblob",
            "--artifacts",
            "samples/hello-world:v1",
            "samples/multiarch:v1",
        ];
        if let Some(t) = tag {
            a.extend(["--force-update-tag", t]);
        }
        e.ok(&a).json()
    };
    let first = run(None);
    let resp = &first["properties"]["response"];
    assert_eq!(resp["status"], "Succeeded", "{first}");
    assert!(resp["catalogDigest"].as_str().unwrap().starts_with("sha256:"));
    assert!(resp["finishTime"].is_string() && resp["startTime"].is_string());
    // Identical properties: nothing happens.
    let again = run(None);
    assert_eq!(again["properties"]["response"]["startTime"], resp["startTime"]);
    assert_eq!(again["properties"]["response"]["finishTime"], resp["finishTime"]);
    // A new forceUpdateTag runs it again.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let forced = run(Some("2026-11-29T10:00:00Z"));
    assert_ne!(forced["properties"]["response"]["startTime"], resp["startTime"]);

    // A pipeline kept in a file, shaped like ACR's, with its trigger disabled: watch leaves it alone.
    let doc = serde_json::json!({
        "type": "importPipelines",
        "name": "imp2",
        "properties": {
            "registry": dst.host,
            "source": {"type": "AzureStorageBlobContainer", "uri": e.container(DST), "secretUri": "env:IMPORT_SAS"},
            "trigger": {"sourceTrigger": {"status": "Disabled"}},
            "options": ["OverwriteTags"]
        }
    });
    std::fs::write(e.w.path("imp2.json"), doc.to_string()).unwrap();
    e.ok(&["pipeline", "apply", "-f", &e.w.s("imp2.json")]);
    let shown = e.ok(&["--output", "json", "pipeline", "show", "imp2"]).json();
    assert_eq!(shown["properties"]["trigger"]["sourceTrigger"]["status"], "Disabled");
    assert!(e.ok(&["pipeline", "list"]).stdout.contains("imp2"));

    // Copy between the accounts (as azcopy would), then the trigger imports without being asked.
    barge_ok(&["copy", &e.az.url(SRC, "myblob", "racwdl"), &e.az.url(DST, "myblob", "racwdl")], 0);
    // An import SAS without read (`dl`): the watcher says which letter is missing, claims nothing, deletes nothing.
    let mut e = e;
    let dl = sas(&e, DST, "dl");
    let dlr = std::mem::replace(&mut e.env[1].1, dl);
    // One pass that failed is an error for `--once` (a script must see it).
    let r = e.barge(&["watch", "--once"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("myblob") && r.stderr.contains("'r'"), "{}", r.stderr);
    assert!(!r.stderr.contains("sig="), "{}", r.stderr);
    assert!(e.runs().iter().all(|r| r["properties"]["request"]["pipelineResourceId"] != "imp1"));
    assert!(e.az.exists(DST, "myblob"));
    e.env[1].1 = dlr;
    e.ok(&["watch", "--once"]);
    let imports: Vec<_> =
        e.runs().into_iter().filter(|r| r["properties"]["request"]["pipelineResourceId"] == "imp1").collect();
    assert_eq!(imports.len(), 1, "{imports:?}");
    let r = &imports[0]["properties"]["response"];
    assert_eq!(r["status"], "Succeeded", "{r}");
    assert!(r["trigger"]["sourceTrigger"]["timestamp"].is_string(), "{r}");
    assert_eq!(r["catalogDigest"], resp["catalogDigest"], "re-exports are byte-identical");
    assert_eq!(r["importedArtifacts"].as_array().unwrap().len(), 2, "{r}");
    for name in ["samples/hello-world:v1", "samples/multiarch:v1"] {
        assert_eq!(dst.raw(name), src.raw(name), "{name}");
    }
    assert!(!e.az.exists(DST, "myblob"), "DeleteSourceBlobOnSuccess did not delete the bundle");
    // Nothing new: another pass imports nothing.
    e.ok(&["watch", "--once"]);
    assert_eq!(e.runs().iter().filter(|r| r["properties"]["request"]["pipelineResourceId"] == "imp1").count(), 1);
    // run list has an error-message column; deleting a run deletes only its record.
    let table = e.ok(&["run", "list"]).stdout;
    assert!(table.contains("ERROR") && table.contains("run1"), "{table}");
    e.ok(&["run", "delete", "run1"]);
    assert!(dst.raw("samples/hello-world:v1").is_some());
}

/// A watcher process on the shared state, with the take-over timeout in seconds.
fn watcher(e: &Env, args: &[&str], takeover: u64) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_barge"));
    c.args(["--state", &e.state]).args(args).envs(e.env.clone()).env("BARGE_WATCH_TAKEOVER_SECS", takeover.to_string());
    c
}

/// Two watchers at once, ACR's SAS on the bundles (`dlr`) and a state container granted only `rwl`:
/// every bundle is imported by exactly one of them, in every round.
#[test]
fn two_watchers_import_five_bundles_once_each() {
    let mut e = Env::new();
    let dst = TestRegistry::start();
    pipelines(&e, "oci:/unused", &dst.host, &[]);
    // Five bundles, five images, straight into the target container.
    let mut digests = Vec::new();
    for i in 0..5 {
        let d = barge_fixtures::write_image(
            &e.w.path("five"),
            &format!("five/img{i}"),
            &barge_fixtures::Image::new(vec![barge_fixtures::Layer { seed: 500 + i, size: 2 << 20 }]),
        )
        .unwrap();
        barge_fixtures::tag(&e.w.path("five"), &format!("five/img{i}"), "v1", &d).unwrap();
        digests.push(d.digest.to_string());
        let reg = format!("oci:{}", e.w.s("five"));
        let to = e.az.url(DST, &format!("b{i}.tar"), "racwdl");
        barge_ok(&["export", "--registry", &reg, "--to", &to, &format!("five/img{i}:v1")], 0);
    }
    let bundles: Vec<_> = (0..5).map(|i| e.az.get(DST, &format!("b{i}.tar")).unwrap().0).collect();
    // The state in a storage container, granted `rwl`: the only thing the watchers write.
    e.az.create_container(DST, "state");
    let state_sas = e.az.key(DST).container_sas("state", "rwl", std::time::Duration::from_secs(600));
    e.env.push(("STATE_SAS".into(), state_sas.expose().to_string()));
    let local = e.state.clone();
    e.state = format!("{}/{DST}/state", e.az.endpoint);
    for round in 0..3 {
        // A new import pipeline each round: new run names, the same five bundles.
        let p = format!("imp-r{round}");
        let dstc = e.container(DST);
        let args = ["pipeline", "import", "create", &p, "--registry", &dst.host, "--storage-container-uri", &dstc];
        e.ok(&[&["--state-secret", "env:STATE_SAS"][..], &args, &["--secret", "env:IMPORT_SAS"]].concat());
        let spawn = || {
            watcher(&e, &["--state-secret", "env:STATE_SAS", "watch", "--once", "--pipeline", &p], 60)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (a, b) = (spawn(), spawn());
        let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
        let said = format!("{}{}", String::from_utf8_lossy(&a.stderr), String::from_utf8_lossy(&b.stderr));
        assert!(a.status.success() && b.status.success(), "round {round}: {said}");
        // Each bundle was imported by one watcher, once, with nothing left for another pass.
        for i in 0..5 {
            let n =
                said.lines().filter(|l| l.contains(&format!(": b{i}.tar: run ")) && l.contains("Succeeded")).count();
            assert_eq!(n, 1, "round {round}: b{i}.tar imported {n} times: {said}");
        }
        assert_eq!(said.lines().count(), 5, "round {round}: {said}");
        let runs: Vec<_> = e.ok(&["--state-secret", "env:STATE_SAS", "--output", "json", "run", "list"]).json()["runs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["properties"]["request"]["pipelineResourceId"] == p.as_str())
            .cloned()
            .collect();
        assert_eq!(runs.len(), 5, "round {round}: {runs:#?}");
        for r in &runs {
            let resp = &r["properties"]["response"];
            assert_eq!(resp["status"], "Succeeded", "round {round}: {resp}");
            // The run that wrote the tag is the one on record (a second import would say Unchanged);
            // later rounds find the tags in place.
            let expected = if round == 0 { "Succeeded" } else { "Unchanged" };
            assert_eq!(resp["artifacts"][0]["status"], expected, "round {round}: {resp}");
            assert!(resp.get("runner").is_none() && r.get("heartbeat").is_none(), "round {round}: {r}");
            let i: usize = r["properties"]["request"]["source"]["name"].as_str().unwrap()[1..2].parse().unwrap();
            assert_eq!(resp["artifacts"][0]["digest"], digests[i].as_str(), "round {round}: {resp}");
        }
        for (i, digest) in digests.iter().enumerate() {
            let m = dst.raw(&format!("five/img{i}:v1")).expect("imported");
            assert_eq!(&format!("sha256:{}", sha256_hex(&m)), digest, "round {round}");
        }
        // The bundles are as they were: nothing wrote to them.
        for (i, bytes) in bundles.iter().enumerate() {
            assert_eq!(&e.az.get(DST, &format!("b{i}.tar")).unwrap().0, bytes, "round {round}");
        }
    }
    assert!(!Path::new(&local).join("runs").exists(), "the watchers wrote local state");
}

/// A watcher killed (SIGKILL) mid-import leaves its record "Running" with a
/// heartbeat: another watcher leaves it alone while the heartbeat is fresh, takes
/// it over once it is older than the timeout, and imports the bundle once.
#[test]
fn a_killed_watcher_is_taken_over_after_the_timeout_and_imports_exactly_once() {
    let e = Env::new();
    let dst = TestRegistry::start();
    pipelines(&e, "oci:/unused", &dst.host, &[]);
    let d = barge_fixtures::write_image(
        &e.w.path("big"),
        "big/img",
        &barge_fixtures::Image::new(vec![barge_fixtures::Layer { seed: 77, size: 200 << 20 }]),
    )
    .unwrap();
    barge_fixtures::tag(&e.w.path("big"), "big/img", "v1", &d).unwrap();
    let to = e.az.url(DST, "big.tar", "racwdl");
    barge_ok(&["export", "--registry", &format!("oci:{}", e.w.s("big")), "--to", &to, "big/img:v1"], 0);
    const TAKEOVER: u64 = 4;
    let mut child = watcher(&e, &["watch", "--interval", "1"], TAKEOVER)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while !running(&e.w.path("state/runs")) {
        assert!(start.elapsed() < std::time::Duration::from_secs(60), "the watcher never started the import");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let record = || -> serde_json::Value {
        let is_record = |n: &str| !n.starts_with('.') && n.ends_with(".json");
        let mut files = std::fs::read_dir(e.w.path("state/runs")).unwrap().flatten();
        let f = files.find(|f| is_record(&f.file_name().to_string_lossy())).unwrap();
        serde_json::from_slice(&std::fs::read(f.path()).unwrap()).unwrap()
    };
    let first = record();
    let runner = first["heartbeat"]["runner"].as_str().expect("a heartbeat").to_string();
    assert!(runner.ends_with(&format!(":{}", child.id())), "{first:#}");
    // The heartbeat moves on while the import runs (renewed every third of the timeout).
    let beat = |r: &serde_json::Value| r["heartbeat"]["unixMs"].as_u64().unwrap();
    while beat(&record()) == beat(&first) {
        assert!(start.elapsed() < std::time::Duration::from_secs(60), "the heartbeat was never renewed");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // A second watcher while the first is alive: it leaves the run alone.
    let r = watcher(&e, &["watch", "--once"], TAKEOVER).output().unwrap();
    assert!(r.status.success() && r.stderr.is_empty(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(record()["heartbeat"]["runner"], runner.as_str(), "a live watcher's run was taken over");
    child.kill().unwrap(); // SIGKILL, mid-import, holding the claim
    child.wait().unwrap();
    let killed = std::time::Instant::now();
    // What a watcher killed while it writes its record leaves: a temporary file under its (dead) PID.
    let left = e.w.path(&format!("state/runs/.killed.json.barge-tmp-{}-0", child.id()));
    std::fs::write(&left, b"{\"half\":").unwrap();
    // Right after the kill the heartbeat is fresh: not taken over yet.
    let r = watcher(&e, &["watch", "--once"], TAKEOVER).output().unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let rec = record();
    assert_eq!(rec["properties"]["response"]["status"], "Running", "{rec:#}");
    assert_eq!(rec["heartbeat"]["runner"], runner.as_str(), "taken over before the timeout");
    // Once the heartbeat is older than the timeout, the next watcher takes it over, once.
    loop {
        let r = watcher(&e, &["watch", "--once"], TAKEOVER).output().unwrap();
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        let runs = e.runs();
        assert_eq!(runs.len(), 1, "{runs:#?}");
        if runs[0]["properties"]["response"]["status"] == "Succeeded" {
            assert!(killed.elapsed() >= std::time::Duration::from_secs(TAKEOVER - 1), "taken over too early");
            break;
        }
        assert!(killed.elapsed() < std::time::Duration::from_secs(90), "never taken over: {:#}", runs[0]);
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let done = record();
    assert!(done.get("heartbeat").is_none(), "{done:#}");
    assert_ne!(done["properties"]["response"]["startTime"], first["properties"]["response"]["startTime"]);
    e.ok(&["watch", "--once"]);
    assert_eq!(e.runs().len(), 1);
    assert_eq!(sha256_hex(&dst.raw("big/img:v1").unwrap()), d.digest.to_string().trim_start_matches("sha256:"));
    assert!(!left.exists(), "the restarted watcher left the killed one's temporary file");
}

fn running(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|rd| rd.flatten().any(|f| std::fs::read_to_string(f.path()).is_ok_and(|s| s.contains("\"Running\""))))
        .unwrap_or(false)
}

#[test]
fn failed_runs_say_why() {
    let e = Env::new();
    let src = TestRegistry::start();
    let dst = TestRegistry::start();
    src.push(&e.w.path("src"), "samples/hello-world", "v1");
    pipelines(&e, &src.host, &dst.host, &[]);
    // A misspelled artifact.
    let r = e.barge(&["run", "create", "bad1", "--pipeline", "exp1", "--blob", "b", "--artifacts", "Samples/Hello:v1"]);
    assert_ne!(r.code, 0);
    let rec = e.ok(&["--output", "json", "run", "show", "bad1"]).json();
    let msg = rec["properties"]["response"]["pipelineRunErrorMessage"].as_str().unwrap().to_string();
    assert!(msg.contains("Samples/Hello:v1"), "{msg}");
    assert_eq!(rec["properties"]["response"]["status"], "Failed");

    // An import SAS without read permission: the message names the letter.
    e.ok(&["run", "create", "good", "--pipeline", "exp1", "--blob", "b.tar", "--artifacts", "samples/hello-world:v1"]);
    barge_ok(&["copy", &e.az.url(SRC, "b.tar", "racwdl"), &e.az.url(DST, "b.tar", "racwdl")], 0);
    let no_read = format!("?{}", e.az.url(DST, "x", "l").split_once('?').unwrap().1);
    let mut env = Env { env: vec![("IMPORT_SAS".into(), no_read)], ..e };
    let r = env.barge(&["run", "create", "imp-nr", "--pipeline", "imp1", "--blob", "b.tar"]);
    assert_ne!(r.code, 0);
    let rec = env.ok(&["--output", "json", "run", "show", "imp-nr"]).json();
    let msg = rec["properties"]["response"]["pipelineRunErrorMessage"].as_str().unwrap().to_string();
    assert!(msg.contains("'r'"), "{msg}");

    // A tag that exists elsewhere, without OverwriteTags.
    let other = barge_fixtures::write_image(
        &env.w.path("other"),
        "samples/hello-world",
        &barge_fixtures::Image::new(vec![barge_fixtures::Layer { seed: 66, size: 100 }]),
    )
    .unwrap();
    barge_fixtures::tag(&env.w.path("other"), "samples/hello-world", "v1", &other).unwrap();
    dst.push(&env.w.path("other"), "samples/hello-world", "v1");
    env.env = vec![("IMPORT_SAS".into(), format!("?{}", env.az.url(DST, "x", "racwdl").split_once('?').unwrap().1))];
    let r = env.barge(&["run", "create", "imp-tag", "--pipeline", "imp1", "--blob", "b.tar"]);
    assert_ne!(r.code, 0);
    let rec = env.ok(&["--output", "json", "run", "show", "imp-tag"]).json();
    let msg = rec["properties"]["response"]["pipelineRunErrorMessage"].as_str().unwrap().to_string();
    assert!(msg.contains("samples/hello-world:v1") && msg.contains("already points"), "{msg}");
    // The secret never reaches the state.
    for f in std::fs::read_dir(env.w.path("state/runs"))
        .unwrap()
        .chain(std::fs::read_dir(env.w.path("state/pipelines")).unwrap())
    {
        let text = std::fs::read_to_string(f.unwrap().path()).unwrap();
        assert!(!text.contains("sig="), "{text}");
    }
}

#[test]
fn state_shared_in_a_storage_container() {
    let mut e = Env::new();
    e.az.create_container(DST, "state");
    // A container SAS for the state container.
    let sas = e.az.key(DST).container_sas("state", "racwdl", std::time::Duration::from_secs(600));
    e.env.push(("STATE_SAS".into(), sas.expose().to_string()));
    let url = format!("{}/{DST}/state", e.az.endpoint);
    e.state = url.clone();
    let shared = |args: &[&str]| {
        let mut full = vec!["--state-secret", "env:STATE_SAS"];
        full.extend_from_slice(args);
        e.ok(&full)
    };
    let reg = e.w.reg("src");
    let srcc = e.container(SRC);
    shared(&[
        "pipeline",
        "export",
        "create",
        "exp1",
        "--registry",
        &reg,
        "--storage-container-uri",
        &srcc,
        "--secret",
        "env:EXPORT_SAS",
    ]);
    // Two processes submit the same run at once: it runs once.
    let spawn = || {
        let env: Vec<(String, String)> = e.env.clone();
        std::process::Command::new(env!("CARGO_BIN_EXE_barge"))
            .args(["--state", &url, "--state-secret", "env:STATE_SAS", "--output", "json", "run", "create", "r1"])
            .args(["--pipeline", "exp1", "--blob", "shared.tar", "--artifacts", "samples/hello-world:v1"])
            .envs(env)
            .output()
            .unwrap()
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(spawn);
        let b = s.spawn(spawn);
        (a.join().unwrap(), b.join().unwrap())
    });
    let outs = [String::from_utf8_lossy(&a.stdout).to_string(), String::from_utf8_lossy(&b.stdout).to_string()];
    let started: Vec<_> = outs
        .iter()
        .filter_map(|o| serde_json::from_str::<serde_json::Value>(o.trim()).ok())
        .filter_map(|j| j["properties"]["response"]["startTime"].as_str().map(str::to_string))
        .collect();
    // Either both report the same (single) run, or the loser was told another barge holds it.
    assert!(started.windows(2).all(|w| w[0] == w[1]), "{outs:?}");
    assert!(
        !started.is_empty(),
        "{outs:?} {:?} {:?}",
        String::from_utf8_lossy(&a.stderr),
        String::from_utf8_lossy(&b.stderr)
    );
    // Another machine sees the run in the shared state.
    let list = shared(&["--output", "json", "run", "list"]).json();
    assert_eq!(list["runs"][0]["name"], "r1");
    assert_eq!(list["runs"][0]["properties"]["response"]["status"], "Succeeded", "{list}");
}

/// A pipeline that could never run is refused when it is saved (exit 2, the
/// field named, nothing stored), and a value in the wrong field, a SAS say,
/// is never printed back.
#[test]
fn bad_pipelines_are_refused_at_apply_without_echoing_values() {
    let w = Work::new();
    let state = w.s("state");
    let target =
        serde_json::json!({"uri": "https://acct.blob.core.windows.net/bundles", "secretUri": "env:EXPORT_SAS"});
    let doc = |registry: serde_json::Value, target: serde_json::Value, options: serde_json::Value| {
        serde_json::json!({"type": "exportPipelines", "name": "exp1",
            "properties": {"registry": registry, "target": target, "options": options}})
    };
    let sas = "sv=2024-05-04&ss=b&sig=SECRETVALUE";
    let cases = [
        (doc("127.0.0.1:5000".into(), target.clone(), sas.into()), "properties.options"),
        (doc("127.0.0.1:5000".into(), target.clone(), serde_json::json!([sas])), "properties.options[0]"),
        (doc(serde_json::json!({"sig": sas}), target.clone(), serde_json::json!([])), "properties.registry"),
        (doc("127.0.0.1:5000".into(), sas.into(), serde_json::json!([])), "properties.target"),
        (doc("UPPER:BAD:PORT".into(), target.clone(), serde_json::json!([])), "properties.registry"),
        (doc("127.0.0.1:99999".into(), target.clone(), serde_json::json!([])), "properties.registry"),
        (doc("127.0.0.1:5000".into(), serde_json::json!({"uri": "ht!tp://x"}), serde_json::json!([])), "uri"),
    ];
    for (i, (d, field)) in cases.iter().enumerate() {
        let file = w.path(&format!("p{i}.json"));
        std::fs::write(&file, d.to_string()).unwrap();
        for output in ["text", "json"] {
            let r =
                barge(&["--state", &state, "--output", output, "pipeline", "apply", "-f", &file.display().to_string()]);
            let all = format!("{}{}", r.stdout, r.stderr);
            assert_eq!(r.code, 2, "case {i} ({output}): {all}");
            assert!(all.contains(field), "case {i} ({output}) does not name {field}: {all}");
            assert!(
                !all.contains("SECRETVALUE") && !all.contains("sig="),
                "case {i} ({output}) printed the value: {all}"
            );
        }
    }
    // The command line goes through the same checks.
    for (registry, uri, options) in [
        ("UPPER:BAD:PORT", "https://acct.blob.core.windows.net/bundles", "OverwriteBlobs"),
        ("127.0.0.1:5000", "ht!tp://x", "OverwriteBlobs"),
        ("127.0.0.1:5000", "https://acct.blob.core.windows.net/bundles", sas),
    ] {
        let r = barge(&[
            "--state",
            &state,
            "pipeline",
            "export",
            "create",
            "exp2",
            "--registry",
            registry,
            "--storage-container-uri",
            uri,
            "--secret",
            "env:EXPORT_SAS",
            "--options",
            options,
        ]);
        assert_eq!(r.code, 2, "{registry} {uri}: {}", r.stderr);
        assert!(!r.stderr.contains("SECRETVALUE"), "{}", r.stderr);
    }
    let listed = barge_ok(&["--state", &state, "--output", "json", "pipeline", "list"], 0).json();
    assert_eq!(listed["pipelines"], serde_json::json!([]), "a refused pipeline was stored");
    // The same document with its fields right is saved.
    std::fs::write(
        w.path("good.json"),
        doc("127.0.0.1:5000".into(), target, serde_json::json!(["OverwriteBlobs"])).to_string(),
    )
    .unwrap();
    barge_ok(&["--state", &state, "pipeline", "apply", "-f", &w.s("good.json")], 0);
}

/// A container SAS for the pipelines' containers, with these permissions (and ACR's leading '?').
fn sas(e: &Env, account: &str, permissions: &str) -> String {
    format!("?{}", e.az.url(account, "x", permissions).split_once('?').unwrap().1)
}

/// The record's error kind and message.
fn error_of(e: &Env, run: &str) -> (String, String) {
    let rec = e.ok(&["--output", "json", "run", "show", run]).json();
    let r = &rec["properties"]["response"];
    assert_eq!(r["status"], "Failed", "{rec}");
    (
        r["pipelineRunErrorKind"].as_str().unwrap_or_else(|| panic!("no pipelineRunErrorKind: {rec}")).to_string(),
        r["pipelineRunErrorMessage"].as_str().unwrap().to_string(),
    )
}

/// `barge run create` fails with the exit code `barge export`/`import` give
/// for the same fault, and the record names its kind.
#[test]
fn a_failed_run_exits_as_export_and_import_would_and_its_record_names_the_kind() {
    let mut e = Env::new();
    let src = TestRegistry::start();
    let dst = TestRegistry::start();
    src.push(&e.w.path("src"), "samples/hello-world", "v1");
    pipelines(&e, &src.host, &dst.host, &[]);

    // ContinueOnErrors with one artifact missing: partial, 6.
    let args = ["run", "create", "part", "--pipeline", "exp1", "--blob", "p.tar", "--artifacts"];
    let r = e.barge(&[&args[..], &["samples/hello-world:v1", "samples/nothere:v1"]].concat());
    assert_eq!(r.code, 6, "{}", r.stderr);
    assert!(r.stderr.contains("run part failed: samples/nothere:v1"), "{}", r.stderr);
    assert_eq!(error_of(&e, "part").0, "partial");

    // A damaged bundle: 3, as `barge import` gives.
    barge_ok(&["export", "--registry", &e.w.reg("src"), "--to", &e.w.s("good.tar"), "samples/hello-world:v1"], 0);
    let mut bytes = std::fs::read(e.w.path("good.tar")).unwrap();
    let large = catalog_of(&bytes).blobs.iter().max_by_key(|b| b.size).unwrap().clone();
    let (at, size) = entry_offset(&bytes, &large.digest.layout_path());
    bytes[at + size / 2] ^= 0x01;
    std::fs::write(e.w.path("bad.tar"), &bytes).unwrap();
    barge_ok(&["import", &e.w.s("bad.tar"), "--registry", &e.w.reg("judge")], 3);
    barge_ok(&["copy", &e.w.s("bad.tar"), &e.az.url(DST, "bad.tar", "racwdl")], 0);
    let r = e.barge(&["run", "create", "imp-bad", "--pipeline", "imp1", "--blob", "bad.tar"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("run imp-bad failed:") && r.stderr.contains("does not match its digest"), "{}", r.stderr);
    let (kind, _) = error_of(&e, "imp-bad");
    assert_eq!(kind, "integrity");
    let shown = e.ok(&["run", "show", "imp-bad"]).stdout;
    assert!(shown.contains("\"pipelineRunErrorKind\": \"integrity\""), "{shown}");
    assert_eq!(dst.raw("samples/hello-world:v1"), None);

    // An export SAS without 'w' (ACR's least-privilege `alrw` minus `w`): 4, as `barge export` gives.
    e.env = vec![("EXPORT_SAS".into(), sas(&e, SRC, "ral")), ("IMPORT_SAS".into(), sas(&e, DST, "racwdl"))];
    let run =
        ["run", "create", "exp-ro", "--pipeline", "exp1", "--blob", "ro.tar", "--artifacts", "samples/hello-world:v1"];
    let r = e.barge(&run);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(r.stderr.contains("lacks the 'w' permission") && !r.stderr.contains("sig="), "{}", r.stderr);
    let (kind, msg) = error_of(&e, "exp-ro");
    assert_eq!(kind, "auth", "{msg}");
    // The same as JSON: the error and the exit code.
    let j = e.barge(&[&["--output", "json"][..], &run].concat());
    assert_eq!(j.code, 4);
    assert_eq!(j.json()["exitCode"], 4);
}

/// `run` and `watch` take the registry options `export` and `import` take:
/// a pipeline reaches a registry with a private CA given `--ca-file`, and is
/// refused (exit 4) without it.
#[test]
fn a_pipeline_reaches_a_registry_with_a_private_ca() {
    let e = Env::new();
    let (src, src_ca) = TestRegistry::start_tls();
    let (dst, dst_ca) = TestRegistry::start_tls();
    src.push(&e.w.path("src"), "samples/hello-world", "v1");
    pipelines(&e, &src.host, &dst.host, &[]);
    let (src_ca, dst_ca) = (src_ca.display().to_string(), dst_ca.display().to_string());
    let export =
        ["run", "create", "x", "--pipeline", "exp1", "--blob", "t.tar", "--artifacts", "samples/hello-world:v1"];

    let r = e.barge(&export);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert_eq!(error_of(&e, "x").0, "auth");
    assert!(!e.az.exists(SRC, "t.tar"));
    let r = e.ok(&[&["--output", "json"][..], &export, &["--ca-file", &src_ca, "--force-update-tag", "1"]].concat());
    assert_eq!(r.json()["properties"]["response"]["status"], "Succeeded", "{}", r.stdout);
    assert!(e.az.exists(SRC, "t.tar"));

    barge_ok(&["copy", &e.az.url(SRC, "t.tar", "racwdl"), &e.az.url(DST, "t.tar", "racwdl")], 0);
    let r = e.barge(&["run", "create", "i", "--pipeline", "imp1", "--blob", "t.tar"]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert_eq!(error_of(&e, "i").0, "auth");
    assert_eq!(dst.raw("samples/hello-world:v1"), None);
    // The source's CA does not vouch for the target.
    let import_with = |ca: &str, tag: &str| {
        e.barge(&[
            "run",
            "create",
            "i",
            "--pipeline",
            "imp1",
            "--blob",
            "t.tar",
            "--ca-file",
            ca,
            "--force-update-tag",
            tag,
        ])
    };
    let r = import_with(&src_ca, "1");
    assert_eq!(r.code, 4, "{}", r.stderr);
    let r = import_with(&dst_ca, "2");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(dst.raw("samples/hello-world:v1"), src.raw("samples/hello-world:v1"));

    // The trigger too.
    e.ok(&["watch", "--once", "--ca-file", &dst_ca]);
    let watched: Vec<_> = e
        .runs()
        .into_iter()
        .filter(|r| r["properties"]["response"]["trigger"]["sourceTrigger"]["timestamp"].is_string())
        .collect();
    assert_eq!(watched.len(), 1, "{watched:#?}");
    assert_eq!(watched[0]["properties"]["response"]["status"], "Succeeded", "{:#}", watched[0]);
}

/// An import pipeline's repositoryPrefix and repositoryMap (az's flat shape, stored nested): the trigger's run
/// places the artifact there, and its record names where. Bad values and an export pipeline that has them are
/// refused, naming the field; `pipeline import create` takes them as --prefix and --map.
#[test]
fn an_import_pipeline_places_artifacts_under_its_prefix_and_maps() {
    let w = Work::new();
    let state = w.s("state");
    let ok = |args: &[&str]| {
        let r = barge_in(&state, &[], args);
        assert_eq!(r.code, 0, "barge {args:?}\nstdout: {}\nstderr: {}", r.stdout, r.stderr);
        r
    };
    std::fs::create_dir_all(w.path("bundles")).unwrap();
    barge_ok(&["export", "--registry", &w.reg("src"), "--to", &w.s("bundles/b.tar"), "samples/hello-world:v1"], 0);
    let doc = |kind: &str, placement: serde_json::Value| {
        let mut d = serde_json::json!({"type": kind, "name": "imp", "registry": w.reg("dst"),
            "source": {"type": "AzureStorageBlobContainer", "uri": w.s("bundles")},
            "target": {"type": "AzureStorageBlobContainer", "uri": w.s("bundles")}});
        d.as_object_mut().unwrap().extend(placement.as_object().unwrap().clone());
        std::fs::write(w.path("p.json"), d.to_string()).unwrap();
        barge_in(&state, &[], &["pipeline", "apply", "-f", &w.s("p.json")])
    };
    for (kind, placement, field) in [
        ("importPipelines", serde_json::json!({"repositoryMap": ["samples=Apps"]}), "properties.repositoryMap[0]"),
        ("importPipelines", serde_json::json!({"repositoryMap": "samples=apps"}), "properties.repositoryMap"),
        ("importPipelines", serde_json::json!({"repositoryPrefix": "/x"}), "properties.repositoryPrefix"),
        ("exportPipelines", serde_json::json!({"repositoryPrefix": "mirror"}), "properties.repositoryPrefix"),
    ] {
        let r = doc(kind, placement.clone());
        assert_eq!(r.code, 2, "{placement}: {}", r.stderr);
        assert!(r.stderr.contains(field), "{placement}: {}", r.stderr);
    }
    let r = barge_in(&state, &[], &["pipeline", "list"]);
    assert!(!r.stdout.contains("imp"), "a refused pipeline was stored: {}", r.stdout);
    let r =
        doc("importPipelines", serde_json::json!({"repositoryPrefix": "mirror", "repositoryMap": ["samples=apps"]}));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let shown = ok(&["--output", "json", "pipeline", "show", "imp"]).json();
    assert_eq!(shown["properties"]["repositoryPrefix"], "mirror", "{shown}");
    assert_eq!(shown["properties"]["repositoryMap"], serde_json::json!(["samples=apps"]), "{shown}");

    ok(&["watch", "--once"]);
    let target = "mirror/apps/hello-world:v1";
    let raw = skopeo_raw(&format!("oci:{}/{target}", w.s("dst")));
    assert_eq!(raw, skopeo_raw(&format!("oci:{}/samples/hello-world:v1", w.s("src"))));
    assert!(!w.path("dst/samples").exists());
    let runs = ok(&["--output", "json", "run", "list"]).json();
    let resp = &runs["runs"][0]["properties"]["response"];
    assert_eq!(resp["status"], "Succeeded", "{runs}");
    assert_eq!(resp["importedArtifacts"], serde_json::json!([target]), "{resp}");
    assert_eq!(resp["artifacts"][0]["artifact"], "samples/hello-world:v1", "{resp}");
    assert_eq!(resp["artifacts"][0]["target"], target, "{resp}");

    // The command line: the same checks, the same fields.
    let create = |extra: &[&str]| {
        let (reg, uri) = (w.reg("dst2"), w.s("bundles"));
        let mut args =
            vec!["pipeline", "import", "create", "imp2", "--registry", &reg, "--storage-container-uri", &uri];
        args.extend_from_slice(extra);
        barge_in(&state, &[], &args)
    };
    let r = create(&["--map", "samples"]);
    assert!(r.code == 2 && r.stderr.contains("--map") && r.stderr.contains("SRC=DST"), "{}", r.stderr);
    assert_eq!(create(&["--prefix", "m", "--map", "a=b", "--map", "c="]).code, 0);
    let shown = ok(&["--output", "json", "pipeline", "show", "imp2"]).json();
    assert_eq!(shown["properties"]["repositoryPrefix"], "m", "{shown}");
    assert_eq!(shown["properties"]["repositoryMap"], serde_json::json!(["a=b", "c="]), "{shown}");
}

/// An export pipeline `exp` from the sample registry into the directory
/// `bundles` (a container on local disk); the state directory it is kept in.
fn local_export_pipeline(w: &Work) -> String {
    let state = w.s("state");
    std::fs::create_dir_all(w.path("bundles")).unwrap();
    let (reg, uri) = (w.reg("src"), w.s("bundles"));
    let args = ["pipeline", "export", "create", "exp", "--registry", &reg, "--storage-container-uri", &uri];
    let r = barge_in(&state, &[], &args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    state
}

/// An export run takes a transfer set (`--artifacts-file`): kept with the run
/// as `request.artifactSet`, expanded against the pipeline's registry when it
/// runs; a bad set is refused before any record is written.
#[test]
fn an_export_run_takes_a_set_file() {
    let w = Work::new();
    let state = local_export_pipeline(&w);
    let run = |args: &[&str]| barge_in(&state, &[], args);
    std::fs::write(
        w.path("set.yaml"),
        "artifacts:\n  - repository: library/tools\n    tagPattern: \"^1\\\\.\"\n  - repository: samples/multiarch\n    tags: [v1]\n    platforms: [linux/arm64]\n",
    )
    .unwrap();
    std::fs::write(w.path("bad.yaml"), "artifacts:\n  - repository: library/tools\n    platforms: [arm64]\n").unwrap();
    let r =
        run(&["run", "create", "bad", "--pipeline", "exp", "--blob", "bad.tar", "--artifacts-file", &w.s("bad.yaml")]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("artifactSet: artifacts[0].platforms[0]"), "{}", r.stderr);
    let set = w.s("set.yaml");
    let r = run(&[
        "--output",
        "json",
        "run",
        "create",
        "r1",
        "--pipeline",
        "exp",
        "--blob",
        "s.tar",
        "--artifacts-file",
        &set,
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let record = r.json();
    assert_eq!(record["properties"]["request"]["artifactSet"]["artifacts"][0]["tagPattern"], "^1\\.", "{record}");
    assert_eq!(record["properties"]["request"]["target"]["name"], "s.tar", "{record}");
    let done: Vec<&str> = record["properties"]["response"]["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["artifact"].as_str().unwrap())
        .collect();
    assert_eq!(done.len(), 2, "{record}");
    let catalog = catalog_of(&std::fs::read(w.path("bundles/s.tar")).unwrap());
    let names: Vec<String> = catalog.artifacts.iter().map(|a| a.ref_name()).collect();
    assert_eq!(names, ["library/tools:1.0", "samples/multiarch:v1"]);
    assert_eq!(catalog.artifacts[1].platforms, ["linux/arm64"]);
    let runs = run(&["--output", "json", "run", "list"]).json();
    assert_eq!(runs["runs"].as_array().unwrap().len(), 1, "the refused run left no record: {runs}");
}

/// A scheduled export ships deltas by itself: each export run keeps its
/// catalog in the state store, and the next run names it (`--since-run`);
/// the run record says what it was cut against.
#[test]
fn an_export_run_is_cut_against_an_earlier_run() {
    let w = Work::new();
    let state = local_export_pipeline(&w);
    let run = |args: &[&str]| barge_in(&state, &[], args);
    let create = |name: &str, extra: &[&str], artifacts: &[&str]| {
        let blob = format!("{name}.tar");
        let mut args = vec!["--output", "json", "run", "create", name, "--pipeline", "exp", "--blob", &blob];
        args.extend_from_slice(extra);
        args.push("--artifacts");
        args.extend_from_slice(artifacts);
        run(&args)
    };
    let r = create("r1", &[], &["samples/hello-world:v1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let first = catalog_of(&std::fs::read(w.path("bundles/r1.tar")).unwrap());
    let r = create("r2", &["--since-run", "r1"], &["samples/hello-world:v1", "library/tools:1.0"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["properties"]["request"]["sinceRun"], "r1", "{}", r.stdout);
    let bytes = std::fs::read(w.path("bundles/r2.tar")).unwrap();
    let second = catalog_of(&bytes);
    let delta = second.delta.as_ref().expect("the second run is a delta");
    let (at, len) = entry_offset(&std::fs::read(w.path("bundles/r1.tar")).unwrap(), "barge-catalog.json");
    let r1 = std::fs::read(w.path("bundles/r1.tar")).unwrap();
    assert_eq!(delta.against.digest.to_string(), format!("sha256:{}", sha256_hex(&r1[at..at + len])));
    let carried_before: std::collections::BTreeSet<_> =
        first.blobs.iter().filter(|b| b.kind != barge_bundle::BlobKind::Manifest).map(|b| &b.digest).collect();
    let omitted: std::collections::BTreeSet<_> = delta.omitted.iter().map(|o| &o.blob.digest).collect();
    assert_eq!(omitted, carried_before, "what r1 carried is left out");
    assert!(second.blobs.iter().all(|b| !omitted.contains(&b.digest)));
    assert_eq!(second.artifacts.len(), 2, "manifests always travel");

    // Naming a run that kept no catalog fails the run and says why; a run is cut against one thing only.
    let r = create("r3", &["--since-run", "nope"], &["samples/hello-world:v1"]);
    assert_ne!(r.code, 0);
    assert!(r.json()["error"].as_str().unwrap().contains("the catalog of run nope"), "{}", r.stdout);
    let r = create("r4", &["--since-run", "r1", "--have", "x.json"], &["samples/hello-world:v1"]);
    assert_eq!(r.code, 2, "{}", r.stderr);

    // An inventory (`--have`) is kept in the state store by its digest; the run names only that.
    let have = w.s("have.json");
    let r = run(&["inventory", "--registry", &w.reg("src"), "samples/hello-world", "--to", &have]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let digest = format!("sha256:{}", sha256_hex(&std::fs::read(&have).unwrap()));
    let r = create("r5", &["--have", &have], &["samples/hello-world:v1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["properties"]["request"]["have"], digest.as_str(), "{}", r.stdout);
    let c = catalog_of(&std::fs::read(w.path("bundles/r5.tar")).unwrap());
    let d = c.delta.expect("a delta");
    assert_eq!((d.against.kind, d.against.digest.to_string()), (barge_bundle::AgainstKind::Inventory, digest));
    assert!(c.blobs.iter().all(|b| b.kind == barge_bundle::BlobKind::Manifest), "the source holds every blob");
}
