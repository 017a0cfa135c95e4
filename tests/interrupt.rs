//! Interrupted and killed runs: Ctrl-C and SIGTERM exit 130 at once, quietly and leaving no file
//! behind; what kill -9 leaves is removed by the next run, which then gives the same result.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::azurite::{Azurite, SRC};
use common::*;

const BIG: &str = "big/image:v1";

/// A layout with `big/image:v1` (four 64 MiB layers), generated once and kept
/// under the target directory: it is deterministic, so later runs reuse it.
fn big_layout() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("interrupt-big-v1");
        if dir.join("big/image/index.json").exists() {
            return dir;
        }
        let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("interrupt-big-{}", std::process::id()));
        let layers = (0..4).map(|i| barge_fixtures::Layer { seed: 40 + i, size: 64 << 20 }).collect();
        let d = barge_fixtures::write_image(&tmp, "big/image", &barge_fixtures::Image::new(layers)).unwrap();
        barge_fixtures::tag(&tmp, "big/image", "v1", &d).unwrap();
        if std::fs::rename(&tmp, &dir).is_err() {
            std::fs::remove_dir_all(&tmp).unwrap(); // another test binary won the race
        }
        dir
    })
}

/// The next of a xorshift sequence: random moments, reproducible from the seed a failure prints.
fn xorshift(rng: &mut u64) -> u64 {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    *rng
}

fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_barge"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run barge")
}

/// Every temporary file (`barge-tmp`) under `dir`, with its size.
fn temp_files(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else if e.file_name().to_string_lossy().contains("barge-tmp") {
                out.push((e.path(), m.len()));
            }
        }
    }
    out
}

/// Wait until a temporary file of at least `min` bytes is being written under `dir`.
fn wait_for_temp(child: &mut Child, dir: &Path, min: u64) {
    let started = Instant::now();
    while !temp_files(dir).iter().any(|(_, n)| *n >= min) {
        assert!(started.elapsed() < Duration::from_secs(60), "barge never started writing under {}", dir.display());
        assert!(child.try_wait().unwrap().is_none(), "barge finished before it could be interrupted");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Wait until the process has its Ctrl-C handler in place (SigCgt holds SIGINT).
fn wait_for_handler(child: &mut Child) {
    let started = Instant::now();
    loop {
        let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
        let caught = status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
            .unwrap_or(0);
        if caught & (1 << (libc::SIGINT - 1)) != 0 {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "barge never installed its signal handler");
        assert!(child.try_wait().unwrap().is_none(), "barge ended before its signal handler was installed");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap().success();
    assert!(ok, "kill {sig}");
}

/// Wait for the child; its exit code, stderr, and the time it took.
fn finish(child: Child) -> (Option<i32>, String, Duration) {
    let t = Instant::now();
    let out = child.wait_with_output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned(), t.elapsed())
}

#[test]
fn sigterm_mid_export_leaves_nothing() {
    let w = Work::new();
    let reg = format!("oci:{}", big_layout().display());
    let mut child = spawn(&["export", "--registry", &reg, "--to", &w.s("store-a/bundle"), BIG]);
    wait_for_temp(&mut child, &w.path("store-a"), 1 << 20);
    signal(&child, "-TERM");
    let (code, stderr, took) = finish(child);
    assert_eq!(code, Some(130), "{stderr}");
    assert!(took < Duration::from_millis(1500), "SIGTERM took {took:?} to end the export");
    assert!(snapshot(&w.path("store-a")).is_empty(), "an interrupted export left a file");
}

/// kill -9 in the middle of an export, then of an import into an `oci:`
/// layout: each leaves its temporary files, and the same command again
/// succeeds, gives the whole result and removes them.
#[test]
fn kill_9_then_the_same_command_removes_what_it_left() {
    let w = Work::new();
    let reg = format!("oci:{}", big_layout().display());
    let bundle = w.s("store-a/bundle");
    let export = ["export", "--registry", reg.as_str(), "--to", bundle.as_str(), BIG];
    let mut child = spawn(&export);
    wait_for_temp(&mut child, &w.path("store-a"), 16 << 20);
    signal(&child, "-KILL");
    assert_eq!(finish(child).0, None, "kill -9 ends the process by the signal");
    let left = temp_files(&w.path("store-a"));
    assert!(!left.is_empty(), "the killed export left no temporary file to clean up (the test proves nothing)");
    barge_ok(&export, 0);
    barge_ok(&["verify", &bundle], 0);
    assert_eq!(temp_files(&w.path("store-a")), vec![], "the second export left the first one's temporary file");

    let dst = w.reg("dst");
    let import = ["import", bundle.as_str(), "--registry", dst.as_str()];
    let mut child = spawn(&import);
    wait_for_temp(&mut child, &w.path("dst"), 4 << 20);
    signal(&child, "-KILL");
    assert_eq!(finish(child).0, None);
    assert!(!temp_files(&w.path("dst")).is_empty(), "the killed import left no temporary file");
    barge_ok(&import, 0);
    assert_eq!(temp_files(&w.path("dst")), vec![], "the second import left the first one's temporary files");
    assert_eq!(
        skopeo_raw(&format!("{reg}/{BIG}")),
        skopeo_raw(&format!("{dst}/{BIG}")),
        "the imported image differs from the source"
    );
    let copy = skopeo(&["copy", &format!("{dst}/{BIG}"), &format!("dir:{}", w.s("pulled"))]);
    assert!(copy.status.success(), "skopeo could not read the imported image whole");
}

/// An export into a local file writes its blobs side by side, each at its
/// own offset: killed with -9 at random moments it never leaves a file under
/// the bundle's name, and run again to its end it gives exactly the bytes of
/// an export written in sequence (to standard output, through the window).
#[test]
fn kill_9_at_random_moments_of_a_positional_export() {
    let w = Work::new();
    let reg = format!("oci:{}", big_layout().display());
    let bundle = w.path("store-a/bundle");
    let to = bundle.display().to_string();
    let export = ["export", "--registry", reg.as_str(), "--to", to.as_str(), BIG];
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as u64;
    let mut rng = seed | 1;
    let mut killed = 0;
    for round in 0..6 {
        let delay = Duration::from_millis(xorshift(&mut rng) % 800);
        let mut child = spawn(&export);
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_some() {
            let (code, stderr, _) = finish(child);
            assert_eq!(code, Some(0), "round {round} (seed {seed}): {stderr}");
            std::fs::remove_file(&bundle).unwrap();
            continue;
        }
        signal(&child, "-KILL");
        assert_eq!(finish(child).0, None);
        assert!(
            !bundle.exists(),
            "round {round} (seed {seed}, {delay:?} in): a killed export left a file under the bundle's name"
        );
        killed += 1;
    }
    assert!(killed >= 3, "only {killed} of 6 exports were still running at the kill (seed {seed})");
    barge_ok(&export, 0);
    assert_eq!(temp_files(&w.path("store-a")), vec![], "the last export left the killed ones' temporary files");
    let streamed = Command::new(env!("CARGO_BIN_EXE_barge"))
        .args(["export", "--registry", &reg, "--to", "-", BIG])
        .output()
        .unwrap();
    assert!(streamed.status.success(), "{}", String::from_utf8_lossy(&streamed.stderr));
    assert!(
        std::fs::read(&bundle).unwrap() == streamed.stdout,
        "the positional export differs from the sequential one"
    );
}

/// The digest of 4 GiB of zeros (`head -c 4G /dev/zero | sha256sum`).
const ZEROS_4G: &str = "8479e43911dc45e89f934fe48d01297e16f51d17aa561d4d1c216b1ae0fcddca";

/// A valid bundle whose one layer is 4 GiB of zeros, written sparse: it takes
/// no disk and no time to make, and seconds to verify.
fn sparse_bundle(path: &Path) {
    use barge_bundle::catalog::Planned;
    use barge_bundle::oci::{OCI_CONFIG, OCI_LAYER_TAR, OCI_MANIFEST};
    use barge_bundle::tar::{encode_header, end_of_archive, padding, Kind};
    use barge_bundle::{Artifact, Blob, BlobKind, Catalog, Digest};
    use std::io::{Seek, SeekFrom, Write};
    let zeros: u64 = 4 << 30;
    let layer = Digest::parse(&format!("sha256:{ZEROS_4G}")).unwrap();
    let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec();
    let config_d = Digest::sha256_of(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_d.to_string(), "size": config.len()},
        "layers": [{"mediaType": OCI_LAYER_TAR, "digest": layer.to_string(), "size": zeros}],
    }))
    .unwrap();
    let manifest_d = Digest::sha256_of(&manifest);
    let artifact = Artifact {
        request: "big/zeros:v1".into(),
        registry: None,
        repository: "big/zeros".into(),
        tag: Some("v1".into()),
        digest: manifest_d.clone(),
        media_type: OCI_MANIFEST.into(),
        size: manifest.len() as u64,
        manifests: vec![manifest_d.clone()],
        blobs: vec![config_d.clone(), layer.clone()],
        platforms: Vec::new(),
    };
    let blob = |digest: &Digest, size: u64, media_type: &str, kind| Blob {
        digest: digest.clone(),
        size,
        media_type: media_type.into(),
        kind,
    };
    let blobs = vec![
        blob(&manifest_d, manifest.len() as u64, OCI_MANIFEST, BlobKind::Manifest),
        blob(&config_d, config.len() as u64, OCI_CONFIG, BlobKind::Config),
        blob(&layer, zeros, OCI_LAYER_TAR, BlobKind::Layer),
    ];
    let catalog = Catalog::new("barge-test", "2026-01-01T00:00:00Z", "oci:fixture", vec![artifact], blobs);
    let mut f = std::fs::File::create(path).unwrap();
    let put = |f: &mut std::fs::File, name: &str, bytes: &[u8]| {
        f.write_all(&encode_header(name, bytes.len() as u64, Kind::File)).unwrap();
        f.write_all(bytes).unwrap();
        f.write_all(&vec![0; padding(bytes.len() as u64)]).unwrap();
    };
    for p in catalog.plan() {
        match p {
            Planned::File { name, bytes } => put(&mut f, name, &bytes),
            Planned::Dir(name) => f.write_all(&encode_header(&name, 0, Kind::Dir)).unwrap(),
            Planned::Blob(i) => {
                let b = &catalog.blobs[i];
                if b.digest == layer {
                    f.write_all(&encode_header(&b.digest.layout_path(), zeros, Kind::File)).unwrap();
                    f.seek(SeekFrom::Current(zeros as i64)).unwrap(); // a hole: zeros
                } else {
                    put(&mut f, &b.digest.layout_path(), if b.digest == config_d { &config } else { &manifest });
                }
            }
        }
    }
    f.write_all(&end_of_archive()).unwrap();
}

/// Ctrl-C while `verify` hashes a large bundle ends it within a second or so,
/// not when hashing ends, and prints no panic.
#[test]
fn ctrl_c_ends_verify_at_once() {
    let w = Work::new();
    let bundle = w.path("store-a/zeros.tar");
    sparse_bundle(&bundle);
    let mut child = spawn(&["verify", "--threads", "1", &bundle.display().to_string()]);
    wait_for_handler(&mut child);
    // Into the hashing: 4 GiB take seconds at any speed this machine has.
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().unwrap().is_none(), "verify ended before the signal");
    signal(&child, "-INT");
    let (code, stderr, took) = finish(child);
    assert_eq!(code, Some(130), "{stderr}");
    eprintln!("Ctrl-C ended verify in {took:?}");
    assert!(took < Duration::from_millis(1500), "Ctrl-C took {took:?} to end verify");
    assert!(!stderr.contains("panic"), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
}

/// Ctrl-C at random moments of exports into storage and into a local file:
/// every round exits 130 within a second, prints no panic, leaves no temporary file.
#[test]
fn ctrl_c_at_random_moments_of_an_export() {
    let w = Work::new();
    let az = Azurite::start();
    let reg = format!("oci:{}", big_layout().display());
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as u64;
    let mut rng = seed | 1;
    let mut interrupted = 0;
    for round in 0..8 {
        let delay = Duration::from_millis(xorshift(&mut rng) % 900);
        let to = if round % 2 == 0 { az.url(SRC, &format!("round-{round}"), "racwdl") } else { w.s("store-a/bundle") };
        let mut child = spawn(&["export", "--overwrite", "--registry", &reg, "--to", &to, BIG]);
        wait_for_handler(&mut child);
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_some() {
            let (code, stderr, _) = finish(child);
            assert_eq!(code, Some(0), "round {round} (seed {seed}): {stderr}");
            continue;
        }
        signal(&child, "-INT");
        let (code, stderr, took) = finish(child);
        let what = format!("round {round} (seed {seed}, {delay:?} in, to {})", to.split('?').next().unwrap());
        assert!(!stderr.contains("panic"), "{what}: {stderr}");
        if code == Some(0) {
            continue; // it finished between the look and the signal
        }
        assert_eq!(code, Some(130), "{what}: {stderr}");
        assert!(!stderr.contains("panic"), "{what}: {stderr}");
        assert!(took < Duration::from_millis(1000), "{what}: Ctrl-C took {took:?}");
        eprintln!("{what}: exit 130 in {took:?}");
        assert_eq!(temp_files(&w.path("store-a")), vec![], "{what}: a temporary file was left");
        interrupted += 1;
    }
    assert!(interrupted >= 4, "only {interrupted} of 8 exports were still running at the signal (seed {seed})");
}
