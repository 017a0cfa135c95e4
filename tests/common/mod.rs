//! Shared helpers for the integration tests: run the real binary, make fixtures, ask skopeo.

#![allow(dead_code)]

pub mod azurite;
pub mod counting;
pub mod delta;
pub mod registry;

use barge_bundle::tar::{padding, BLOCK};
use barge_bundle::Catalog;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }
}

pub fn barge(args: &[&str]) -> Run {
    let out: Output = Command::new(env!("CARGO_BIN_EXE_barge")).args(args).output().expect("run barge");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Run barge and require the exit code, showing its output when it differs.
pub fn barge_ok(args: &[&str], code: i32) -> Run {
    let r = barge(args);
    assert_eq!(r.code, code, "barge {args:?}\nstdout: {}\nstderr: {}", r.stdout, r.stderr);
    r
}

/// A temporary workspace with the sample registry generated in `src/`.
pub struct Work {
    pub dir: tempfile::TempDir,
}

impl Work {
    pub fn new() -> Work {
        let dir = tempfile::tempdir().expect("tempdir");
        barge_fixtures::samples(&dir.path().join("src")).expect("fixtures");
        std::fs::create_dir_all(dir.path().join("store-a")).unwrap();
        std::fs::create_dir_all(dir.path().join("store-b")).unwrap();
        Work { dir }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn s(&self, rel: &str) -> String {
        self.path(rel).display().to_string()
    }

    pub fn reg(&self, rel: &str) -> String {
        format!("oci:{}", self.s(rel))
    }
}

pub const SAMPLES: [&str; 3] = ["samples/hello-world:v1", "samples/multiarch:v1", "library/tools"];

/// The raw manifest skopeo reads for an `oci:` image reference.
pub fn skopeo_raw(image: &str) -> Vec<u8> {
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", image])
        .output()
        .expect("skopeo must be installed (scripts/test installs it)");
    assert!(out.status.success(), "skopeo inspect --raw {image}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

pub fn skopeo(args: &[&str]) -> Output {
    Command::new("skopeo").args(args).output().expect("skopeo must be installed (scripts/test installs it)")
}

/// Every file under `dir`, with its content, for "nothing was written" checks.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    if !dir.exists() {
        return out;
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let c = std::fs::read(&p).unwrap();
                out.push((p, c));
            }
        }
    }
    out.sort();
    out
}

/// Run barge with extra environment variables and something on stdin.
pub fn barge_with(args: &[&str], env: &[(&str, &str)], stdin: &str) -> Run {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_barge"))
        .args(args)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run barge");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(data))
}

/// Offset of the data of the tar entry named `name`.
pub fn entry_offset(bundle: &[u8], name: &str) -> (usize, usize) {
    let mut pos = 0;
    loop {
        let h = &bundle[pos..pos + BLOCK];
        let n = String::from_utf8_lossy(&h[..100]).trim_end_matches('\0').to_string();
        let size = usize::from_str_radix(String::from_utf8_lossy(&h[124..135]).trim_end_matches('\0'), 8).unwrap();
        if n == name {
            return (pos + BLOCK, size);
        }
        pos += BLOCK + size + padding(size as u64);
    }
}

/// The catalog of a bundle's bytes.
pub fn catalog_of(bytes: &[u8]) -> Catalog {
    let (at, size) = entry_offset(bytes, "barge-catalog.json");
    Catalog::parse(&bytes[at..at + size]).unwrap()
}

/// An HTTP message head: the start line and the header lines.
pub type Head = (String, Vec<String>);

/// Read an HTTP head (start line and header lines, trimmed); None at a clean end of stream.
pub fn read_head(r: &mut impl std::io::BufRead) -> std::io::Result<Option<Head>> {
    let mut start = String::new();
    if r.read_line(&mut start)? == 0 {
        return Ok(None);
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line)?;
        let line = line.trim_end().to_string();
        if line.is_empty() {
            return Ok(Some((start.trim_end().to_string(), headers)));
        }
        headers.push(line);
    }
}

/// A private CA and a leaf certificate for 127.0.0.1 signed by it, made with
/// openssl in `dir`: `ca.pem`, `cert.pem`, `key.pem` (P-256, two days).
pub fn private_ca(dir: &Path) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl must be installed (scripts/deps installs it)");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    let ca_subject = ["-subj", "/CN=barge test CA", "-days", "2"];
    openssl(&[&["req", "-x509", "-keyout", "ca.key", "-out", "ca.pem"][..], &ec, &ca_subject].concat());
    let ext = "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n";
    std::fs::write(dir.join("leaf.ext"), ext).unwrap();
    openssl(&[&["req"][..], &ec, &["-keyout", "key.pem", "-out", "leaf.csr", "-subj", "/CN=127.0.0.1"]].concat());
    let sign = ["x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial"];
    openssl(&[&sign[..], &["-out", "cert.pem", "-days", "2", "-extfile", "leaf.ext"]].concat());
}

/// Run barge with `--state STATE` and the environment `env` (pipelines and runs).
pub fn barge_in(state: &str, env: &[(String, String)], args: &[&str]) -> Run {
    let mut full = vec!["--state", state];
    full.extend_from_slice(args);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    barge_with(&full, &env, "")
}

/// Standard base64, for docker config `auth` entries.
pub fn base64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Stop `child` (by its PID) and remove `dir` once this test process has
/// ended, however it ends: a server shared by a whole test binary lives in a
/// `static`, which is never dropped. A small `sh` watches this process's PID;
/// it kills the child only if that PID is still the server of `dir` (its
/// command line names it), never a process that reused the number.
pub fn reap_after_this_process(child: &std::process::Child, dir: &Path) {
    let script = format!(
        "while kill -0 {me} 2>/dev/null; do sleep 1; done; \
         grep -qaF '{dir}' /proc/{child}/cmdline 2>/dev/null && kill {child}; rm -rf '{dir}'",
        me = std::process::id(),
        child = child.id(),
        dir = dir.display()
    );
    let _ = std::process::Command::new("sh")
        .args(["-c", &script])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
}
