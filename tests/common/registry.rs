//! A real registry for tests: Debian's `docker-registry` (distribution 2.8) on 127.0.0.1 and a free port, stopped by PID.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{read_head, Head};

pub struct TestRegistry {
    pub host: String,
    child: Child,
    pub creds: Option<(String, String)>,
    dir: tempfile::TempDir,
}

impl TestRegistry {
    /// An anonymous registry.
    pub fn start() -> TestRegistry {
        Self::start_with(None)
    }

    /// A registry that asks for basic auth (bcrypt htpasswd) as `user`/`password`.
    pub fn start_with_auth(user: &str, password: &str) -> TestRegistry {
        Self::start_with(Some((user.to_string(), password.to_string())))
    }

    /// An anonymous registry serving HTTPS with a certificate for 127.0.0.1
    /// signed by a private CA; returns the CA's PEM file too.
    pub fn start_tls() -> (TestRegistry, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        super::private_ca(d);
        let tls = format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            d.join("cert.pem").display(),
            d.join("key.pem").display()
        );
        let ca = d.join("ca.pem");
        (Self::start_in(dir, None, &tls), ca)
    }

    /// A registry that asks for token auth (distribution's `auth.token`) from `service`;
    /// the test helpers (skopeo) use its admin user.
    pub fn start_token_auth(service: &TokenService) -> TestRegistry {
        let auth = format!(
            "auth:\n  token:\n    realm: {}\n    service: {TOKEN_AUDIENCE}\n    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
            service.realm,
            service.cert.display()
        );
        let creds = Some((TOKEN_ADMIN.0.to_string(), TOKEN_ADMIN.1.to_string()));
        Self::start_in(tempfile::tempdir().unwrap(), creds, &auth)
    }

    fn start_with(creds: Option<(String, String)>) -> TestRegistry {
        Self::start_in(tempfile::tempdir().unwrap(), creds, "")
    }

    /// `extra` is appended to the config: `tls` under `http`, or an `auth` section
    /// (then `creds` are only for the helpers, no htpasswd is made).
    fn start_in(dir: tempfile::TempDir, creds: Option<(String, String)>, extra: &str) -> TestRegistry {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let (tls, mut auth) = match extra.starts_with("auth:") {
            true => ("", extra.to_string()),
            false => (extra, String::new()),
        };
        if let Some((u, p)) = creds.as_ref().filter(|_| auth.is_empty()) {
            let out = Command::new("htpasswd")
                .args(["-Bbn", u, p])
                .output()
                .expect("htpasswd must be installed (scripts/test installs apache2-utils)");
            assert!(out.status.success());
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, out.stdout).unwrap();
            auth = format!("auth:\n  htpasswd:\n    realm: barge-test\n    path: {}\n", file.display());
        }
        let config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{tls}{auth}",
            dir.path().join("data").display()
        );
        let cfg = dir.path().join("config.yml");
        std::fs::write(&cfg, config).unwrap();
        let child = Command::new("docker-registry")
            .args(["serve", &cfg.display().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry must be installed (scripts/test installs it)");
        super::reap_after_this_process(&child, dir.path());
        let r = TestRegistry { host: format!("127.0.0.1:{port}"), child, creds, dir };
        r.wait_ready();
        r
    }

    /// Where the registry keeps blob `sha256:<hex>` (to damage it on purpose).
    pub fn blob_file(&self, hex: &str) -> std::path::PathBuf {
        self.dir.path().join(format!("data/docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2]))
    }

    /// Kill the registry and start it again at once on the same port and storage.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let cfg = self.dir.path().join("config.yml");
        self.child = Command::new("docker-registry")
            .args(["serve", &cfg.display().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry restarts");
        super::reap_after_this_process(&self.child, self.dir.path());
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let start = Instant::now();
        loop {
            if let Ok(mut s) = TcpStream::connect(&self.host) {
                let _ = write!(s, "GET /v2/ HTTP/1.0\r\nHost: {}\r\n\r\n", self.host);
                let mut buf = [0u8; 16];
                if s.read(&mut buf).map(|n| n > 0).unwrap_or(false) {
                    return;
                }
            }
            assert!(start.elapsed() < Duration::from_secs(20), "docker-registry did not start on {}", self.host);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn creds_args(&self, flag: &str) -> Vec<String> {
        match &self.creds {
            Some((u, p)) => vec![format!("{flag}={u}:{p}")],
            None => vec![],
        }
    }

    /// Push `oci:DIR/repo:tag` here with `skopeo copy --all`.
    pub fn push(&self, layout_root: &Path, repo: &str, tag: &str) {
        let mut args = vec!["copy".to_string(), "--all".into(), "--quiet".into(), "--dest-tls-verify=false".into()];
        args.extend(self.creds_args("--dest-creds"));
        args.push(format!("oci:{}/{repo}:{tag}", layout_root.display()));
        args.push(format!("docker://{}/{repo}:{tag}", self.host));
        let out = Command::new("skopeo").args(&args).output().unwrap();
        assert!(out.status.success(), "skopeo {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// The raw manifest of `repo:tag` (or `repo@digest`) as skopeo reads it here; None if absent.
    pub fn raw(&self, reference: &str) -> Option<Vec<u8>> {
        let mut args = vec!["inspect".to_string(), "--raw".into(), "--tls-verify=false".into()];
        args.extend(self.creds_args("--creds"));
        args.push(format!("docker://{}/{reference}", self.host));
        let out = Command::new("skopeo").args(&args).output().unwrap();
        out.status.success().then_some(out.stdout)
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP proxy in front of `upstream` that cuts the first response carrying
/// more than `cut_after` bytes, once: a dropped download to be resumed.
pub struct CuttingProxy {
    pub host: String,
    pub cuts: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl CuttingProxy {
    pub fn start(upstream: &str, cut_after: usize) -> CuttingProxy {
        use super::counting::{relay, Pass};
        use std::sync::atomic::{AtomicUsize, Ordering};
        let cuts = std::sync::Arc::new(AtomicUsize::new(0));
        let c = cuts.clone();
        let host = relay(upstream, move || {
            let (cuts, mut total) = (c.clone(), 0);
            move |b: &[u8]| {
                total += b.len();
                match total > cut_after && cuts.fetch_add(1, Ordering::SeqCst) == 0 {
                    true => Pass::Cut(b.len() / 2),
                    false => Pass::On,
                }
            }
        });
        CuttingProxy { host, cuts }
    }
}

/// An HTTP/1.1 proxy in front of `upstream` that reads every request and may
/// answer a blob request itself with an error status instead of passing it on:
/// `refuse(n)` decides for the n-th blob request (from 0). Every blob request
/// is logged with the status the proxy answered (0 when passed on). It may
/// also cut the first uploads (PUT or PATCH with a body): it reads half the
/// body, then drops the connection; `resets` counts those.
pub struct FlakyProxy {
    pub host: String,
    pub log: std::sync::Arc<std::sync::Mutex<Vec<(String, u16)>>>,
    pub resets: std::sync::Arc<std::sync::Mutex<usize>>,
    /// The head of every request passed on or answered, one string each.
    pub heard: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

type Refuse = dyn Fn(usize) -> Option<u16> + Send + Sync;

struct Rules {
    refuse: Box<Refuse>,
    reset_uploads: usize,
    resets: std::sync::Arc<std::sync::Mutex<usize>>,
    log: std::sync::Arc<std::sync::Mutex<Vec<(String, u16)>>>,
    heard: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl FlakyProxy {
    pub fn start(upstream: &str, refuse: impl Fn(usize) -> Option<u16> + Send + Sync + 'static) -> FlakyProxy {
        Self::start_with(upstream, Box::new(refuse), 0)
    }

    /// Pass everything on, but cut the first `n` uploads mid-body.
    pub fn resetting_uploads(upstream: &str, n: usize) -> FlakyProxy {
        Self::start_with(upstream, Box::new(|_| None), n)
    }

    fn start_with(upstream: &str, refuse: Box<Refuse>, reset_uploads: usize) -> FlakyProxy {
        use std::sync::Arc;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let rules = Arc::new(Rules {
            refuse,
            reset_uploads,
            resets: Arc::default(),
            log: Arc::default(),
            heard: Arc::default(),
        });
        let (log, resets, heard) = (rules.log.clone(), rules.resets.clone(), rules.heard.clone());
        let upstream = upstream.to_string();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let (upstream, rules) = (upstream.clone(), rules.clone());
                std::thread::spawn(move || {
                    let _ = serve(client, &upstream, &rules);
                });
            }
        });
        FlakyProxy { host, log, resets, heard }
    }
}

/// A fake registry on 127.0.0.1 that answers every request with 401 and a
/// Bearer challenge naming `realm`, and a recorder on `ip` (a loopback
/// address) that stands for a token service: it keeps the head of every
/// request it gets and answers 401.
pub struct FakeAuth {
    /// `localhost:PORT`: the fake registry.
    pub host: String,
    /// `IP:PORT`: the recorder.
    pub realm_host: String,
    pub received: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl FakeAuth {
    pub fn start(ip: &str) -> FakeAuth {
        use std::sync::{Arc, Mutex};
        let recorder = TcpListener::bind((ip, 0)).unwrap();
        let realm_host = recorder.local_addr().unwrap().to_string();
        let received: Arc<Mutex<Vec<String>>> = Arc::default();
        let r = received.clone();
        answer_all(recorder, move |head| {
            r.lock().unwrap().push(head);
            "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
        });
        let registry = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = registry.local_addr().unwrap().port();
        let challenge = format!(
            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"http://{realm_host}/token\",service=\"fake\"\r\n\
             Docker-Distribution-Api-Version: registry/2.0\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        answer_all(registry, move |_| challenge.clone());
        FakeAuth { host: format!("localhost:{port}"), realm_host, received }
    }
}

/// Answer every connection once: read what comes (up to a blank line, or
/// whatever a non-HTTP client sends first), reply, close.
fn answer_all(l: TcpListener, reply: impl Fn(String) -> String + Send + Sync + 'static) {
    let reply = std::sync::Arc::new(reply);
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { return };
            let reply = reply.clone();
            std::thread::spawn(move || {
                let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while let Ok(n) = c.read(&mut buf) {
                    head.extend_from_slice(&buf[..n]);
                    if n == 0 || head.windows(4).any(|w| w == b"\r\n\r\n") || !head.starts_with(b"G") {
                        break;
                    }
                }
                let _ = c.write_all(reply(String::from_utf8_lossy(&head).into_owned()).as_bytes());
            });
        }
    });
}

fn header<'a>(headers: &'a [String], name: &str) -> Option<&'a str> {
    headers.iter().find_map(|h| {
        let (n, v) = h.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn write_head(w: &mut impl Write, (start, headers): &Head) -> std::io::Result<()> {
    write!(w, "{start}\r\n")?;
    for h in headers {
        write!(w, "{h}\r\n")?;
    }
    write!(w, "\r\n")
}

/// Copy a message body (Content-Length or chunked) from `r` to `w`.
fn relay_body(r: &mut impl std::io::BufRead, w: &mut impl Write, headers: &[String]) -> std::io::Result<()> {
    if header(headers, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            w.write_all(size.as_bytes())?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
            std::io::copy(&mut r.take(n as u64 + 2), w)?;
            if n == 0 {
                return Ok(());
            }
        }
    }
    let n: u64 = header(headers, "content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    std::io::copy(&mut r.take(n), w)?;
    Ok(())
}

fn serve(client: TcpStream, upstream: &str, rules: &Rules) -> std::io::Result<()> {
    let (refuse, log) = (&rules.refuse, &rules.log);
    let mut from_client = std::io::BufReader::new(client.try_clone()?);
    let mut to_client = client;
    let server = TcpStream::connect(upstream)?;
    let mut from_server = std::io::BufReader::new(server.try_clone()?);
    let mut to_server = server;
    while let Some(request) = read_head(&mut from_client)? {
        rules.heard.lock().unwrap().push(format!("{}\n{}", request.0, request.1.join("\n")));
        let mut words = request.0.split(' ');
        let (method, path) = (words.next().unwrap_or("").to_string(), words.next().unwrap_or("").to_string());
        let length: u64 = header(&request.1, "content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        if matches!(method.as_str(), "PUT" | "PATCH") && path.contains("/blobs/uploads/") && length > 1 {
            let mut resets = rules.resets.lock().unwrap();
            if *resets < rules.reset_uploads {
                *resets += 1;
                // Half the body, then the connection is gone (unread data makes it a reset).
                std::io::copy(&mut (&mut from_client).take(length / 2), &mut std::io::sink())?;
                let _ = to_client.shutdown(std::net::Shutdown::Both);
                return Ok(());
            }
        }
        let mut body = Vec::new();
        relay_body(&mut from_client, &mut body, &request.1)?;
        if path.contains("/blobs/sha256:") {
            // One lock for the count, the decision and the record: requests come in parallel.
            let status = {
                let mut log = log.lock().unwrap();
                let status = refuse(log.len());
                log.push((format!("{method} {path}"), status.unwrap_or(0)));
                status
            };
            if let Some(code) = status {
                write!(to_client, "HTTP/1.1 {code} Refused\r\nContent-Length: 0\r\nRetry-After: 0\r\n\r\n")?;
                continue;
            }
        }
        write_head(&mut to_server, &request)?;
        to_server.write_all(&body)?;
        let Some(response) = read_head(&mut from_server)? else { return Ok(()) };
        write_head(&mut to_client, &response)?;
        let code: u16 = response.0.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        if method != "HEAD" && code != 204 && code != 304 {
            relay_body(&mut from_server, &mut to_client, &response.1)?;
        }
    }
    Ok(())
}

/// The token service's issuer and audience (the registry's `service`), and its admin user.
const TOKEN_ISSUER: &str = "barge-test-issuer";
const TOKEN_AUDIENCE: &str = "barge-test";
const TOKEN_ADMIN: (&str, &str) = ("admin", "admin-pass");

/// A token service on 127.0.0.1 for `TestRegistry::start_token_auth`, as ACR's:
/// a `POST` with `grant_type=refresh_token` and its one refresh token, or a
/// `GET` with basic auth as the admin user (skopeo), gets an RS256 JWT for the
/// scopes asked (signed with a key whose self-signed certificate, in the `x5c`
/// header, is the registry's rootcertbundle); anything else gets 401. Every
/// request (head and body) is recorded.
pub struct TokenService {
    /// `http://127.0.0.1:PORT/token`
    pub realm: String,
    pub received: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    cert: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl TokenService {
    pub fn start(refresh_token: &str) -> TokenService {
        use std::sync::{Arc, Mutex};
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl").args(args).current_dir(&d).output().expect("openssl must be installed");
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            out.stdout
        };
        openssl(
            &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "token.key", "-out", "token.pem"]
                .into_iter()
                .chain(["-subj", "/CN=barge test token issuer", "-days", "2"])
                .collect::<Vec<_>>(),
        );
        let der = openssl(&["x509", "-in", "token.pem", "-outform", "DER"]);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let realm = format!("http://{}/token", listener.local_addr().unwrap());
        let received: Arc<Mutex<Vec<String>>> = Arc::default();
        let issuer = Arc::new(Issuer { dir: d.clone(), x5c: b64(&der, STD), refresh: refresh_token.to_string() });
        let r = received.clone();
        std::thread::spawn(move || {
            for c in listener.incoming() {
                let Ok(c) = c else { return };
                let (issuer, r) = (issuer.clone(), r.clone());
                std::thread::spawn(move || {
                    let _ = issuer.serve(c, &r);
                });
            }
        });
        TokenService { realm, received, cert: d.join("token.pem"), _dir: dir }
    }

    /// The requests that asked to exchange a refresh token.
    pub fn exchanges(&self) -> Vec<String> {
        self.received.lock().unwrap().iter().filter(|r| r.contains("grant_type=refresh_token")).cloned().collect()
    }
}

struct Issuer {
    dir: std::path::PathBuf,
    x5c: String,
    refresh: String,
}

impl Issuer {
    fn serve(&self, c: TcpStream, received: &std::sync::Mutex<Vec<String>>) -> std::io::Result<()> {
        let mut from = std::io::BufReader::new(c.try_clone()?);
        let mut to = c;
        while let Some((start, headers)) = read_head(&mut from)? {
            let n: u64 = header(&headers, "content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
            let mut body = String::new();
            (&mut from).take(n).read_to_string(&mut body)?;
            received.lock().unwrap().push(format!("{start}\n{}\n\n{body}", headers.join("\n")));
            let query = start.split(' ').nth(1).and_then(|p| p.split_once('?')).map(|(_, q)| q).unwrap_or("");
            let basic = format!("basic {}", b64(format!("{}:{}", TOKEN_ADMIN.0, TOKEN_ADMIN.1).as_bytes(), STD));
            let admin = header(&headers, "authorization").is_some_and(|a| a.eq_ignore_ascii_case(&basic));
            let form = decode_form(if start.starts_with("POST") { &body } else { query });
            let refresh_ok = form.iter().any(|(k, v)| k == "grant_type" && v == "refresh_token")
                && form.iter().any(|(k, v)| k == "refresh_token" && *v == self.refresh);
            let reply = if admin || refresh_ok {
                let scopes: Vec<&str> =
                    form.iter().filter(|(k, _)| k == "scope").flat_map(|(_, v)| v.split(' ')).collect();
                let jwt = self.sign(&scopes);
                let json = format!(r#"{{"token":"{jwt}","access_token":"{jwt}","expires_in":300}}"#);
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}",
                    json.len()
                )
            } else {
                "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n".to_string()
            };
            to.write_all(reply.as_bytes())?;
        }
        Ok(())
    }

    /// A JWT granting `scopes` (`repository:NAME:ACTIONS`), signed RS256 by openssl.
    fn sign(&self, scopes: &[&str]) -> String {
        let access: Vec<String> = scopes
            .iter()
            .filter_map(|s| {
                let (kind, rest) = s.split_once(':')?;
                let (name, actions) = rest.rsplit_once(':')?;
                let actions: Vec<String> = actions.split(',').map(|a| format!("\"{a}\"")).collect();
                Some(format!(r#"{{"type":"{kind}","name":"{name}","actions":[{}]}}"#, actions.join(",")))
            })
            .collect();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let header = format!(r#"{{"typ":"JWT","alg":"RS256","x5c":["{}"]}}"#, self.x5c);
        let claims = format!(
            r#"{{"iss":"{TOKEN_ISSUER}","sub":"barge","aud":"{TOKEN_AUDIENCE}","exp":{},"nbf":{},"iat":{},"jti":"{}","access":[{}]}}"#,
            now + 300,
            now - 10,
            now - 10,
            now.wrapping_mul(2654435761) ^ std::process::id() as u64,
            access.join(",")
        );
        let input = format!("{}.{}", b64(header.as_bytes(), URL), b64(claims.as_bytes(), URL));
        let file = tempfile::NamedTempFile::new_in(&self.dir).unwrap();
        std::fs::write(file.path(), &input).unwrap();
        let out = Command::new("openssl")
            .args(["dgst", "-sha256", "-binary", "-sign"])
            .arg(self.dir.join("token.key"))
            .arg(file.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "openssl dgst: {}", String::from_utf8_lossy(&out.stderr));
        format!("{input}.{}", b64(&out.stdout, URL))
    }
}

const STD: bool = false;
const URL: bool = true;

/// Base64: standard with padding, or URL-safe without (`url`).
fn b64(data: &[u8], url: bool) -> String {
    let t: &[u8; 64] = if url {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    } else {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    };
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(t[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else if !url {
                out.push('=');
            }
        }
    }
    out
}

/// `a=b&c=d` (`+` and `%XX` decoded) as pairs.
fn decode_form(s: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap_or(b'?'));
                    i += 2;
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    s.split('&').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (decode(k), decode(v))).collect()
}
