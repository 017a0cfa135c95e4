//! A real Azure Blob Storage for tests: Azurite 3.37 (blob service only) on 127.0.0.1 and a free port, two accounts, stopped by PID.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use barge_transfer::store::AccountKey;

pub struct Azurite {
    pub endpoint: String,
    pub src: AccountKey,
    pub dst: AccountKey,
    child: Child,
    _dir: tempfile::TempDir,
}

pub const SRC: &str = "srcacct";

/// A blob's user metadata, sorted by name.
pub type Metadata = Vec<(String, String)>;
pub const DST: &str = "dstacct";

fn azurite_bin() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".work/tools/node_modules/.bin/azurite-blob");
    assert!(p.exists(), "Azurite is not installed: run scripts/deps (scripts/test does)");
    p
}

impl Azurite {
    pub fn start() -> Azurite {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        // Fixed test keys (base64 of 32 bytes): the accounts exist only in this process.
        let (k1, k2) = ("c3JjYWNjdC10ZXN0LWtleS0wMTIzNDU2Nzg5YWJjZGU=", "ZHN0YWNjdC10ZXN0LWtleS0wMTIzNDU2Nzg5YWJjZGU=");
        let child = Command::new(azurite_bin())
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string(), "--location"])
            .arg(dir.path())
            .args(["--disableTelemetry", "--skipApiVersionCheck", "--loose", "--silent"])
            .env("AZURITE_ACCOUNTS", format!("{SRC}:{k1};{DST}:{k2}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start azurite");
        super::reap_after_this_process(&child, dir.path());
        let a = Azurite {
            endpoint: format!("http://127.0.0.1:{port}"),
            src: AccountKey::new(SRC, k1).unwrap(),
            dst: AccountKey::new(DST, k2).unwrap(),
            child,
            _dir: dir,
        };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(30), "azurite did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        a.create_container(SRC, "bundles");
        a.create_container(DST, "bundles");
        a
    }

    pub fn key(&self, account: &str) -> &AccountKey {
        if account == SRC {
            &self.src
        } else {
            &self.dst
        }
    }

    /// Create a container with an account SAS (raw HTTP: the test needs no SDK of its own).
    pub fn create_container(&self, account: &str, container: &str) {
        let sas = self.key(account).account_sas("rwdlac", Duration::from_secs(600));
        let path = format!("/{account}/{container}?restype=container&{}", sas.expose());
        let status = self.raw("PUT", &path);
        assert!(status == 201 || status == 409, "creating {account}/{container}: HTTP {status}");
    }

    fn raw(&self, method: &str, path: &str) -> u16 {
        self.raw_full(method, path).0
    }

    fn raw_full(&self, method: &str, path: &str) -> (u16, String) {
        let host = self.endpoint.trim_start_matches("http://");
        let mut s = TcpStream::connect(host).unwrap();
        write!(s, "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nx-ms-version: 2021-08-06\r\nConnection: close\r\n\r\n").unwrap();
        let mut resp = String::new();
        let _ = s.read_to_string(&mut resp);
        (resp.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0), resp)
    }

    /// A committed blob's bytes and its `x-ms-meta-*` metadata, read with raw HTTP (the judge is not barge).
    pub fn get(&self, account: &str, blob: &str) -> Option<(Vec<u8>, Metadata)> {
        let sas = self.key(account).container_sas("bundles", "racwdl", Duration::from_secs(600));
        let path = format!("/{account}/bundles/{blob}?{}", sas.expose());
        let host = self.endpoint.trim_start_matches("http://");
        let mut s = TcpStream::connect(host).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\nx-ms-version: 2021-08-06\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).unwrap();
        let end = resp.windows(4).position(|w| w == b"\r\n\r\n").expect("an HTTP response") + 4;
        let head = String::from_utf8_lossy(&resp[..end]).into_owned();
        if head.split_whitespace().nth(1) != Some("200") {
            return None;
        }
        let mut meta = Vec::new();
        let mut len = None;
        for line in head.lines().skip(1) {
            let Some((k, v)) = line.split_once(':') else { continue };
            let k = k.trim().to_ascii_lowercase();
            if let Some(name) = k.strip_prefix("x-ms-meta-") {
                meta.push((name.to_string(), v.trim().to_string()));
            }
            if k == "content-length" {
                len = v.trim().parse::<usize>().ok();
            }
        }
        let body = resp[end..].to_vec();
        assert_eq!(Some(body.len()), len, "a short read of {blob}");
        meta.sort();
        Some((body, meta))
    }

    /// How many uncommitted blocks a blob has (for watching a copy in progress).
    pub fn uncommitted_blocks(&self, account: &str, blob: &str) -> usize {
        let sas = self.key(account).container_sas("bundles", "racwdl", Duration::from_secs(600));
        let path = format!("/{account}/bundles/{blob}?comp=blocklist&blocklisttype=uncommitted&{}", sas.expose());
        self.raw_full("GET", &path).1.matches("<Block>").count()
    }

    /// Does the blob exist (committed)?
    pub fn exists(&self, account: &str, blob: &str) -> bool {
        let sas = self.key(account).container_sas("bundles", "racwdl", Duration::from_secs(600));
        self.raw("HEAD", &format!("/{account}/bundles/{blob}?{}", sas.expose())) == 200
    }

    /// The URL of a blob with a container SAS of these permissions (`racwdl` by default).
    pub fn url(&self, account: &str, blob: &str, permissions: &str) -> String {
        let sas = self.key(account).container_sas("bundles", permissions, Duration::from_secs(600));
        format!("{}/{account}/bundles/{blob}?{}", self.endpoint, sas.expose())
    }

    /// Kill the emulator now (SIGKILL), as a storage endpoint that dies.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The URL without any SAS.
    pub fn bare(&self, account: &str, blob: &str) -> String {
        format!("{}/{account}/bundles/{blob}", self.endpoint)
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What [`FaultProxy`] does with one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    Pass,
    /// Answer this status itself; the storage never sees the request.
    Status(u16),
    /// Pass the request on, then close the connection instead of answering: the request took effect, its answer is lost.
    LoseAnswer,
    /// Pass the request on and its answer back, but close the connection halfway through the answer's body.
    CutBody,
}

/// An HTTP/1.1 proxy in front of Azurite that may fault a request:
/// `fault(n, "METHOD /path?query")` decides for the n-th request (from 0).
pub struct FaultProxy {
    pub endpoint: String,
    pub log: std::sync::Arc<std::sync::Mutex<Vec<(String, Fault)>>>,
}

impl FaultProxy {
    pub fn start(upstream: &str, fault: impl Fn(usize, &str) -> Fault + Send + Sync + 'static) -> FaultProxy {
        use std::sync::{Arc, Mutex};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let log: Arc<Mutex<Vec<(String, Fault)>>> = Arc::default();
        let (upstream, fault, l) = (upstream.trim_start_matches("http://").to_string(), Arc::new(fault), log.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let (upstream, fault, log) = (upstream.clone(), fault.clone(), l.clone());
                std::thread::spawn(move || {
                    let _ = proxy_connection(client, &upstream, &*fault, &log);
                });
            }
        });
        FaultProxy { endpoint, log }
    }

    /// A blob URL through this proxy: `url` (from [`Azurite::url`]) with its endpoint swapped.
    pub fn through(&self, az: &Azurite, url: &str) -> String {
        url.replacen(&az.endpoint, &self.endpoint, 1)
    }
}

/// Read a head and its body (Content-Length or chunked), as raw bytes.
fn read_message(r: &mut impl std::io::BufRead, no_body: bool) -> std::io::Result<Option<Vec<u8>>> {
    let Some((start, headers)) = super::read_head(r)? else { return Ok(None) };
    let mut out = format!("{start}\r\n").into_bytes();
    let (mut len, mut chunked) = (0u64, false);
    for h in &headers {
        out.extend_from_slice(format!("{h}\r\n").as_bytes());
        if let Some((n, v)) = h.split_once(':') {
            let n = n.trim().to_ascii_lowercase();
            if n == "content-length" {
                len = v.trim().parse().unwrap_or(0);
            }
            chunked |= n == "transfer-encoding" && v.trim().eq_ignore_ascii_case("chunked");
        }
    }
    out.extend_from_slice(b"\r\n");
    if no_body {
        return Ok(Some(out));
    }
    if !chunked {
        std::io::copy(&mut r.take(len), &mut out)?;
        return Ok(Some(out));
    }
    loop {
        let mut size = String::new();
        r.read_line(&mut size)?;
        out.extend_from_slice(size.as_bytes());
        let n = u64::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
        std::io::copy(&mut r.take(n + 2), &mut out)?;
        if n == 0 {
            return Ok(Some(out));
        }
    }
}

fn proxy_connection(
    client: TcpStream,
    upstream: &str,
    fault: &(dyn Fn(usize, &str) -> Fault + Send + Sync),
    log: &std::sync::Mutex<Vec<(String, Fault)>>,
) -> std::io::Result<()> {
    let mut from_client = std::io::BufReader::new(client.try_clone()?);
    let mut to_client = client;
    let server = TcpStream::connect(upstream)?;
    let mut from_server = std::io::BufReader::new(server.try_clone()?);
    let mut to_server = server;
    while let Some(request) = read_message(&mut from_client, false)? {
        let line = String::from_utf8_lossy(&request[..request.iter().position(|&b| b == b'\r').unwrap_or(0)]);
        let what = line.rsplit_once(' ').map_or(line.to_string(), |(w, _)| w.to_string());
        let n = log.lock().unwrap().len();
        let f = fault(n, &what);
        log.lock().unwrap().push((what.clone(), f));
        if let Fault::Status(code) = f {
            write!(to_client, "HTTP/1.1 {code} Injected\r\nContent-Length: 0\r\n\r\n")?;
            continue;
        }
        to_server.write_all(&request)?;
        let Some(response) = read_message(&mut from_server, what.starts_with("HEAD "))? else { return Ok(()) };
        if f == Fault::LoseAnswer {
            let _ = to_client.shutdown(std::net::Shutdown::Both);
            return Ok(());
        }
        if f == Fault::CutBody {
            let head = response.windows(4).position(|w| w == b"\r\n\r\n").map_or(response.len(), |i| i + 4);
            to_client.write_all(&response[..head + (response.len() - head) / 2])?;
            let _ = to_client.shutdown(std::net::Shutdown::Both);
            return Ok(());
        }
        to_client.write_all(&response)?;
    }
    Ok(())
}
