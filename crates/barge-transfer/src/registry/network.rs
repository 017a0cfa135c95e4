//! `NetworkRegistry`: an OCI distribution registry over HTTP(S), on `oci-client`. The only file (with its
//! `token` module) that names its types.

mod token;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use barge_bundle::oci::{self, Descriptor};
use barge_bundle::Digest;
use bytes::Bytes;
use futures::SinkExt;
use oci_client::client::{BlobResponse, Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::credentials::Login;
use super::{ConnectOptions, OpenBlob, RawManifest, Registry, Target};
use crate::io::ByteStream;
use crate::{Result, TransferError};

const ACCEPT: &[&str] = &[oci::OCI_MANIFEST, oci::OCI_INDEX, oci::DOCKER_MANIFEST, oci::DOCKER_LIST];
const ATTEMPTS: u32 = 5;
/// No request is tried again later than this after its first attempt began:
/// a registry that accepts connections and never answers costs one read
/// timeout, not one per attempt.
const RETRY_WINDOW: Duration = Duration::from_secs(60);
const UPLOAD_CHUNK: usize = 256 * 1024;

pub struct NetworkRegistry {
    host: String,
    client: Arc<Client>,
    auth: RegistryAuth,
    /// Docker's identity token, when that is the credential: access tokens asked for per repository.
    tokens: Option<Arc<token::Tokens>>,
}

/// Is `host` (`name[:port]`) a loopback address, where plain HTTP is allowed?
pub fn is_loopback(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((n, p)) if p.chars().all(|c| c.is_ascii_digit()) => n,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name == "localhost" || name.parse::<std::net::IpAddr>().map(|ip| ip.is_loopback()).unwrap_or(false)
}

impl NetworkRegistry {
    pub async fn connect(host: &str, opts: &ConnectOptions) -> Result<NetworkRegistry> {
        let mut extra = Vec::new();
        if let Some(ca) = &opts.ca_file {
            let data = std::fs::read(ca)
                .map_err(|e| TransferError::io(format!("reading the CA certificates {}", ca.display()), e))?;
            reqwest::Certificate::from_pem_bundle(&data)
                .map_err(|e| TransferError::InvalidCaFile { path: ca.display().to_string(), why: e.to_string() })?;
            extra.push(Certificate { encoding: CertificateEncoding::Pem, data });
        }
        // Plain HTTP is allowed for loopback and --insecure-registry hosts, but
        // only used when the server does not speak TLS at all.
        let plain_allowed = is_loopback(host) || opts.insecure.iter().any(|h| h == host);
        let probe = probe_client(extra.first().map(|c| c.data.as_slice()))?;
        // Docker Hub's API is not on `docker.io` itself (oci-client knows this for its own requests).
        let api = if host == barge_bundle::DOCKER_HUB { "registry-1.docker.io" } else { host };
        let (plain, challenge) = choose_protocol(&probe, api, plain_allowed).await?;
        let login = match &opts.credentials {
            Some(c) => Some(Login::Password(c.clone())),
            None => super::credentials::lookup(host, &super::credentials::config_files())?,
        };
        let mut tokens = None;
        let auth = match login {
            Some(login) => {
                // oci-client follows the realm of the registry's challenge with these
                // credentials (and barge sends an identity token there): decide here
                // whether that realm may have them.
                let challenge = match challenge {
                    Some(c) => c,
                    None => fetch_challenge(&probe, if plain { "http" } else { "https" }, api).await?,
                };
                check_realm(api, plain_allowed, challenge.as_deref(), &opts.insecure)?;
                match login {
                    Login::Password(c) => RegistryAuth::Basic(c.username, c.password.expose().to_string()),
                    Login::IdentityToken(refresh) => {
                        tokens = Some(Arc::new(token::Tokens::new(host, challenge.as_deref(), refresh, probe)?));
                        // Only the access tokens asked for per repository are sent to the registry.
                        RegistryAuth::Bearer(String::new())
                    }
                }
            }
            None => {
                // Anonymous, oci-client asks GET /v2/ before every request to a registry
                // that sends no Bearer challenge (it has no token to cache). Ask once: a
                // registry open to anyone (2xx), or whose 401 asks for no Bearer token, then
                // gets an empty bearer token, which it ignores, and no probes. Anything else
                // (a Bearer challenge, a redirect, 5xx, no answer in time) stays anonymous:
                // oci-client asks per request and follows what it is told, as before.
                let url = format!("{}://{api}/v2/", if plain { "http" } else { "https" });
                match probe.get(url).send().await {
                    Ok(resp) if needs_no_token(resp.status(), www_authenticate(&resp).as_deref()) => {
                        RegistryAuth::Bearer(String::new())
                    }
                    _ => RegistryAuth::Anonymous,
                }
            }
        };
        // A client keeps the first credentials it sees for a host: this one only ever sees these.
        let config = ClientConfig {
            protocol: if plain { ClientProtocol::HttpsExcept(vec![host.to_string()]) } else { ClientProtocol::Https },
            tls_certs_only: platform_roots()
                .iter()
                .map(|der| Certificate { encoding: CertificateEncoding::Der, data: der.clone() })
                .collect(),
            extra_root_certificates: extra,
            use_monolithic_push: true,
            connect_timeout: Some(Duration::from_secs(15)),
            read_timeout: Some(Duration::from_secs(120)),
            platform_resolver: None,
            user_agent: concat!("barge/", env!("CARGO_PKG_VERSION")),
            ..Default::default()
        };
        let client = Arc::new(Client::new(config));
        client.store_auth_if_needed(host, &auth).await;
        Ok(NetworkRegistry { host: host.to_string(), client, auth, tokens })
    }

    fn reference(&self, repo: &str, target: Target<'_>) -> Reference {
        match target {
            Target::Tag(t) => Reference::with_tag(self.host.clone(), repo.to_string(), t.to_string()),
            Target::Digest(d) => Reference::with_digest(self.host.clone(), repo.to_string(), d.to_string()),
        }
    }

    fn repo_ref(&self, repo: &str) -> Reference {
        Reference::with_tag(self.host.clone(), repo.to_string(), "latest".to_string())
    }

    /// Hold a live access token for `repo` and `access` (with an identity token; else nothing to do).
    async fn authorize(&self, repo: &str, access: RegistryOperation) -> Result<()> {
        match &self.tokens {
            Some(t) => t.ensure(&self.client, repo, access, false).await,
            None => Ok(()),
        }
    }

    /// After a refusal `e` with an identity token: ask for a new access token
    /// once (`renewed` remembers), and say whether to try again.
    async fn renew_after(
        &self,
        e: &OciDistributionError,
        repo: &str,
        access: RegistryOperation,
        renewed: &mut bool,
    ) -> Result<bool> {
        let refused = matches!(
            e,
            OciDistributionError::UnauthorizedError { .. } | OciDistributionError::ServerError { code: 401, .. }
        );
        let Some(t) = self.tokens.as_ref().filter(|_| refused && !*renewed) else { return Ok(false) };
        *renewed = true;
        t.ensure(&self.client, repo, access, true).await?;
        Ok(true)
    }

    /// Run `op` on `repo` with `access`, retrying what may pass (5xx, 429,
    /// dropped or timed-out connections) with backoff, and a refused access
    /// token once with a new one.
    async fn retry<T, F, Fut>(&self, repo: &str, access: RegistryOperation, what: &str, op: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = std::result::Result<T, OciDistributionError>>,
    {
        self.authorize(repo, access).await?;
        let (mut attempt, started) = (1, std::time::Instant::now());
        let mut renewed = false;
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) if self.renew_after(&e, repo, access, &mut renewed).await? => {}
                Err(e) if attempt < ATTEMPTS && transient(&e) && started.elapsed() < RETRY_WINDOW => {
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                Err(e) => {
                    let note = transient(&e).then(|| match attempt {
                        ATTEMPTS => format!("gave up after {ATTEMPTS} attempts"),
                        n => format!("gave up after {n} attempt(s) in {} s", started.elapsed().as_secs()),
                    });
                    return Err(self.final_error(what, e, note));
                }
            }
        }
    }

    /// The error a request ends with; `note` says why it was not tried again.
    fn final_error(&self, what: &str, e: OciDistributionError, note: Option<String>) -> TransferError {
        match (self.map_err(what, e), note) {
            (TransferError::Registry(m), Some(note)) => TransferError::Registry(format!("{m} ({note})")),
            (other, _) => other,
        }
    }

    fn map_err(&self, what: &str, e: OciDistributionError) -> TransferError {
        let host = &self.host;
        match &e {
            OciDistributionError::UnauthorizedError { .. } | OciDistributionError::AuthenticationFailure(_) => {
                TransferError::AccessDenied { host: host.clone(), what: what.to_string() }
            }
            OciDistributionError::ImageManifestNotFoundError(_) => TransferError::NotFound(format!("{what} on {host}")),
            OciDistributionError::RegistryError { envelope, .. } => {
                let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
                if codes.iter().any(|c| matches!(c, OciErrorCode::ManifestBlobUnknown)) {
                    TransferError::ManifestBlobUnknown { host: host.clone(), what: what.to_string() }
                } else if codes.iter().any(|c| {
                    matches!(c, OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown | OciErrorCode::BlobUnknown)
                }) {
                    TransferError::NotFound(format!("{what} on {host}"))
                } else if codes.iter().any(|c| matches!(c, OciErrorCode::Denied | OciErrorCode::Unauthorized)) {
                    TransferError::Auth(format!("{host} denied {what}: {envelope}"))
                } else if codes.iter().any(|c| matches!(c, OciErrorCode::DigestInvalid)) {
                    TransferError::Bundle(barge_bundle::BundleError::Corrupt(format!(
                        "{host} says the digest of {what} is wrong"
                    )))
                } else {
                    TransferError::Registry(format!("{host}: {what}: {envelope}"))
                }
            }
            OciDistributionError::ServerError { code: 404, .. } => TransferError::NotFound(format!("{what} on {host}")),
            // A manifest PUT naming what the registry lacks (distribution: an index without its children).
            OciDistributionError::ServerError { code: 400, message, .. }
                if message.contains("MANIFEST_BLOB_UNKNOWN") =>
            {
                TransferError::ManifestBlobUnknown { host: host.clone(), what: what.to_string() }
            }
            OciDistributionError::ServerError { code, message, .. } if *code == 429 || *code >= 500 => {
                let said = if message.trim().is_empty() { String::new() } else { format!(": {}", message.trim()) };
                TransferError::Registry(format!("{host} answered HTTP {code} for {what}{said}"))
            }
            OciDistributionError::ServerError { code: 401 | 403, .. } => TransferError::Auth(format!(
                "{host} refused access to {what}; check the credentials and their permissions"
            )),
            OciDistributionError::RequestError(r) if is_tls(r as &(dyn std::error::Error + 'static)) => {
                TransferError::TlsFailed { host: host.clone(), cause: chain(r) }
            }
            OciDistributionError::RequestError(r) => TransferError::Registry(format!("{host}: {what}: {}", chain(r))),
            OciDistributionError::DigestError(d) => TransferError::Bundle(barge_bundle::BundleError::Corrupt(format!(
                "{host} sent {what} with a wrong digest: {d}"
            ))),
            _ => TransferError::Registry(format!("{host}: {what}: {e}")),
        }
    }

    async fn head_manifest(&self, reference: &Reference, what: &str) -> Result<Option<Digest>> {
        let fetch = || self.client.fetch_manifest_digest(reference, &self.auth);
        match self.retry(reference.repository(), RegistryOperation::Pull, what, fetch).await {
            Ok(d) => {
                Ok(Some(Digest::parse(&d).map_err(|e| TransferError::Registry(format!("{}: {what}: {e}", self.host)))?))
            }
            Err(TransferError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

type Body = futures::stream::BoxStream<'static, std::io::Result<Bytes>>;

/// The bytes of a blob response from `offset` on: a server that ignored the
/// Range header sends the whole blob, whose first `offset` bytes are dropped.
fn body(resp: BlobResponse, offset: u64) -> Body {
    use futures::StreamExt;
    match resp {
        BlobResponse::Partial(s) => s.stream,
        BlobResponse::Full(s) if offset == 0 => s.stream,
        BlobResponse::Full(s) => {
            let mut skip = offset;
            s.stream
                .filter_map(move |chunk| {
                    let out = match chunk {
                        Ok(mut b) => {
                            let n = (skip as usize).min(b.len());
                            skip -= n as u64;
                            let rest = b.split_off(n);
                            (!rest.is_empty()).then_some(Ok(rest))
                        }
                        Err(e) => Some(Err(e)),
                    };
                    std::future::ready(out)
                })
                .boxed()
        }
    }
}

/// A blob download that resumes with a ranged request where the connection dropped.
struct Download {
    client: Arc<Client>,
    reference: Reference,
    digest: String,
    offset: u64,
    size: u64,
    current: Option<Body>,
    failures: u32,
    tokens: Option<Arc<token::Tokens>>,
}

impl Download {
    async fn next(mut self) -> Option<(std::io::Result<Bytes>, Download)> {
        use futures::StreamExt;
        loop {
            if self.offset >= self.size {
                return None;
            }
            let Some(body) = self.current.as_mut() else {
                if let Some(t) = &self.tokens {
                    // The access token may have expired since the download began.
                    if let Err(e) =
                        t.ensure(&self.client, self.reference.repository(), RegistryOperation::Pull, false).await
                    {
                        return Some((Err(std::io::Error::other(e.to_string())), self));
                    }
                }
                match self
                    .client
                    .pull_blob_stream_partial(&self.reference, self.digest.as_str(), self.offset, None)
                    .await
                {
                    Ok(r) => self.current = Some(body(r, self.offset)),
                    Err(e) => {
                        if !self.failed().await {
                            return Some((
                                Err(std::io::Error::other(format!("resuming blob {}: {e}", self.digest))),
                                self,
                            ));
                        }
                    }
                }
                continue;
            };
            match body.next().await {
                Some(Ok(b)) => {
                    self.offset += b.len() as u64;
                    return Some((Ok(b), self));
                }
                // The connection dropped, or ended before the blob did: go on from here.
                Some(Err(_)) | None => {
                    self.current = None;
                    if !self.failed().await {
                        let msg = format!(
                            "blob {} stopped at byte {} of {} and could not be resumed",
                            self.digest, self.offset, self.size
                        );
                        return Some((Err(std::io::Error::other(msg)), self));
                    }
                }
            }
        }
    }

    /// Count a failure and wait before the next try; false when out of tries.
    async fn failed(&mut self) -> bool {
        self.failures += 1;
        if self.failures >= ATTEMPTS {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100 << self.failures.min(5))).await;
        true
    }
}

fn transient(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::ServerError { code, .. } => *code == 429 || *code >= 500,
        OciDistributionError::RequestError(r) => {
            !is_tls(r) && (r.is_connect() || r.is_timeout() || r.is_request() || r.is_body())
        }
        OciDistributionError::RegistryError { envelope, .. } => {
            envelope.errors.iter().any(|e| matches!(e.code, OciErrorCode::Toomanyrequests))
        }
        _ => false,
    }
}

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// How long a probe at connect may take: a server that neither answers nor
/// closes on a TLS hello must not stall the connect.
const PROBE: Duration = Duration::from_secs(10);

/// The platform's trusted CA roots (DER), read once per process. Left to
/// itself, reqwest reads them again (every file under /etc/ssl/certs) for
/// each client it builds, ~25 ms each, several per connect. Certificates that
/// rustls cannot take are left out, as reqwest's platform verifier does. On
/// Linux that verifier is exactly these roots; elsewhere it is the operating
/// system's own (revocation, policy), so there none are given and it stays.
/// None either when the platform has none: the verifier's own error stands.
fn platform_roots() -> &'static [Vec<u8>] {
    static ROOTS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    ROOTS.get_or_init(|| {
        if !cfg!(target_os = "linux") {
            return Vec::new();
        }
        rustls_native_certs::load_native_certs()
            .certs
            .into_iter()
            .filter(|c| rustls::RootCertStore::empty().add(c.clone()).is_ok())
            .map(|c| c.to_vec())
            .collect()
    })
}

/// The client for the probes at connect (GET /v2/), trusting what oci-client trusts.
fn probe_client(ca_pem: Option<&[u8]>) -> Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .connect_timeout(PROBE)
        .timeout(PROBE)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("barge/", env!("CARGO_PKG_VERSION")));
    if !platform_roots().is_empty() {
        b = b.tls_certs_only(platform_roots().iter().filter_map(|der| reqwest::Certificate::from_der(der).ok()));
    }
    if let Some(pem) = ca_pem {
        // Checked at connect, where the file's name is known.
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| TransferError::InvalidCaFile { path: "the CA certificates".into(), why: e.to_string() })?;
        b = b.tls_certs_merge(certs);
    }
    b.build().map_err(|e| TransferError::Registry(format!("cannot set up an HTTP client: {}", chain(&e))))
}

/// What `GET https://HOST/v2/` told.
#[derive(Debug)]
enum Https {
    /// An HTTP answer: the server speaks TLS. Its authentication challenge, if any.
    Answered(Option<String>),
    /// No answer at all: refused, not resolvable, or nothing in time.
    Unreachable,
    /// Something answered that did not complete a TLS handshake (a plain-HTTP server).
    NoHandshake(String),
}

async fn probe_tls(client: &reqwest::Client, host: &str) -> Result<Https> {
    let e = match client.get(format!("https://{host}/v2/")).send().await {
        Ok(resp) => return Ok(Https::Answered(www_authenticate(&resp))),
        Err(e) => e,
    };
    let text = chain(&e).to_lowercase();
    if text.contains("certificate") {
        return Err(TransferError::UntrustedCertificate { host: host.to_string(), cause: root_cause(&e) });
    }
    let io_kind = {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        let mut kind = None;
        while let Some(c) = cur {
            if let Some(io) = c.downcast_ref::<std::io::Error>() {
                kind = Some(io.kind());
            }
            cur = c.source();
        }
        kind
    };
    use std::io::ErrorKind::*;
    let unreachable = e.is_timeout()
        || matches!(
            io_kind,
            Some(ConnectionRefused | TimedOut | HostUnreachable | NetworkUnreachable | AddrNotAvailable)
        )
        || text.contains("dns error")
        || text.contains("failed to lookup address");
    Ok(if unreachable { Https::Unreachable } else { Https::NoHandshake(root_cause(&e)) })
}

/// HTTPS where the server speaks it; plain HTTP where that is allowed and TLS
/// is not spoken. A server that answers without TLS where plain HTTP is not
/// allowed is refused at once, naming the flag that allows it. Returns whether
/// to speak plain HTTP, and the challenge of GET /v2/ when the probe got one.
async fn choose_protocol(
    client: &reqwest::Client,
    host: &str,
    plain_allowed: bool,
) -> Result<(bool, Option<Option<String>>)> {
    match probe_tls(client, host).await? {
        Https::Answered(challenge) => Ok((false, Some(challenge))),
        Https::Unreachable => Ok((plain_allowed, None)),
        Https::NoHandshake(_) if plain_allowed => Ok((true, None)),
        Https::NoHandshake(cause) => Err(TransferError::NoTls { host: host.to_string(), cause }),
    }
}

/// The challenge of `GET SCHEME://HOST/v2/`, asked with the usual retries.
async fn fetch_challenge(client: &reqwest::Client, scheme: &str, host: &str) -> Result<Option<String>> {
    let mut attempt = 1;
    loop {
        match client.get(format!("{scheme}://{host}/v2/")).send().await {
            Ok(resp) if resp.status().is_server_error() && attempt < ATTEMPTS => {}
            Ok(resp) => return Ok(www_authenticate(&resp)),
            Err(e) if attempt < ATTEMPTS && (e.is_connect() || e.is_timeout() || e.is_request()) => {}
            Err(e) => {
                return Err(TransferError::Registry(format!(
                    "{host}: asking GET /v2/ for its authentication challenge: {} (gave up after {attempt} attempts)",
                    root_cause(&e)
                )))
            }
        }
        tokio::time::sleep(backoff(attempt)).await;
        attempt += 1;
    }
}

fn www_authenticate(resp: &reqwest::Response) -> Option<String> {
    // The first challenge, as oci-client reads it.
    resp.headers().get(http::header::WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// Whether an answer to `GET /v2/` says that no token is needed: the registry
/// is open to anyone, or refuses without a Bearer challenge (Basic alone).
fn needs_no_token(status: reqwest::StatusCode, challenge: Option<&str>) -> bool {
    let bearer = challenge.is_some_and(has_bearer_challenge);
    (status.is_success() || status == reqwest::StatusCode::UNAUTHORIZED) && !bearer
}

/// Whether a `WWW-Authenticate` value holds a Bearer challenge with a realm,
/// among any others (`Basic realm="x", Bearer realm="…"`), as oci-client reads it.
fn has_bearer_challenge(value: &str) -> bool {
    let lower = value.to_ascii_lowercase();
    lower.match_indices("bearer ").any(|(i, _)| {
        let before = lower[..i].trim_end();
        (before.is_empty() || before.ends_with(',')) && bearer_realm(&value[i..]).is_some()
    })
}

/// The `realm` of a `Bearer` challenge.
fn bearer_realm(challenge: &str) -> Option<String> {
    bearer_param(challenge, "realm")
}

/// A parameter (`realm`, `service`) of a `Bearer` challenge.
fn bearer_param(challenge: &str, name: &str) -> Option<String> {
    let (scheme, mut rest) = challenge.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    loop {
        rest = rest.trim_start_matches([' ', ',']);
        let (key, after) = rest.split_once('=')?;
        let (value, next) = match after.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted.find('"')?;
                (&quoted[..end], &quoted[end + 1..])
            }
            None => after.split_once(',').unwrap_or((after, "")),
        };
        if key.trim().eq_ignore_ascii_case(name) {
            return Some(value.trim().to_string());
        }
        rest = next;
    }
}

/// The host name of `name[:port]`, without brackets, lowercased.
fn host_name(host: &str) -> String {
    let name = match host.rsplit_once(':') {
        Some((n, p)) if p.chars().all(|c| c.is_ascii_digit()) && (!n.contains(':') || n.ends_with(']')) => n,
        _ => host,
    };
    name.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase()
}

/// Credentials go to the registry and to the token realm its challenge names
/// (how token auth works: docker.io's realm is another host). Over HTTPS they
/// may go to any realm; over plain HTTP only to the registry's own host where
/// plain HTTP is allowed for it (loopback or --insecure-registry), or to a
/// realm host named with --insecure-registry itself.
fn check_realm(host: &str, plain_allowed: bool, challenge: Option<&str>, insecure: &[String]) -> Result<()> {
    let Some(realm) = challenge.and_then(bearer_realm) else { return Ok(()) };
    let refuse = |what: String| {
        TransferError::Auth(format!(
            "{host} asks for credentials to be sent to {what}; barge sends them there only over HTTPS"
        ))
    };
    let url = url::Url::parse(&realm).map_err(|_| refuse("a token service that is not a URL".into()))?;
    let realm_name = url.host_str().unwrap_or("").trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    let realm_host = match url.port() {
        Some(p) => format!("{}:{p}", url.host_str().unwrap_or("")),
        None => url.host_str().unwrap_or("").to_string(),
    };
    match url.scheme() {
        "https" => return Ok(()),
        "http" => {}
        other => return Err(refuse(format!("the token service {realm_host} over {other}"))),
    }
    let own_host = realm_name == host_name(host) && plain_allowed;
    let named = insecure.iter().any(|h| h.eq_ignore_ascii_case(&realm_host) || h.eq_ignore_ascii_case(&realm_name));
    if own_host || named {
        return Ok(());
    }
    Err(TransferError::PlainHttpRealm { host: host.to_string(), realm_host })
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(c) = cause.source() {
        cause = c;
    }
    cause.to_string()
}

fn backoff(attempt: u32) -> Duration {
    (Duration::from_millis(200) * 2u32.pow(attempt.saturating_sub(1).min(5))).min(Duration::from_secs(5))
}

fn is_tls(e: &(dyn std::error::Error + 'static)) -> bool {
    let s = chain(e).to_lowercase();
    s.contains("certificate") || s.contains("tls") || s.contains("ssl") || s.contains("handshake")
}

#[async_trait]
impl Registry for NetworkRegistry {
    fn name(&self) -> String {
        self.host.clone()
    }

    async fn manifest(&self, repo: &str, target: Target<'_>) -> Result<RawManifest> {
        let reference = self.reference(repo, target);
        let what = match target {
            Target::Tag(t) => format!("manifest {repo}:{t}"),
            Target::Digest(d) => format!("manifest {repo}@{d}"),
        };
        let (bytes, header_digest) = self
            .retry(repo, RegistryOperation::Pull, &what, || {
                self.client.pull_manifest_raw(&reference, &self.auth, ACCEPT)
            })
            .await?;
        if bytes.len() as u64 > oci::MAX_MANIFEST_SIZE {
            return Err(TransferError::ManifestTooLarge { what: format!("{what} on {}", self.host) });
        }
        let actual = Digest::sha256_of(&bytes);
        let expected = match target {
            Target::Digest(d) => Some(d.clone()),
            Target::Tag(_) => Digest::parse(&header_digest).ok(),
        };
        if let Some(expected) = expected.filter(|e| e.algorithm() == actual.algorithm()) {
            if expected != actual {
                return Err(TransferError::WrongContent {
                    what: "manifest",
                    digest: expected,
                    actual,
                    source_name: self.host.clone(),
                });
            }
        }
        let fallback = if serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v.get("manifests").cloned())
            .is_some()
        {
            oci::OCI_INDEX
        } else {
            oci::OCI_MANIFEST
        };
        let media_type = oci::declared_media_type(&bytes, fallback);
        Ok(RawManifest { media_type, digest: actual, bytes: bytes.to_vec() })
    }

    async fn resolve_tag(&self, repo: &str, tag: &str) -> Result<Option<Digest>> {
        self.head_manifest(&self.reference(repo, Target::Tag(tag)), &format!("tag {repo}:{tag}")).await
    }

    async fn open_blob(&self, repo: &str, digest: &Digest, size: u64) -> Result<ByteStream> {
        let reference = self.repo_ref(repo);
        let d = digest.to_string();
        let what = format!("blob {d} of {repo}");
        // Open once here so that a missing blob or a refusal is reported now, not mid-stream.
        let first = self
            .retry(repo, RegistryOperation::Pull, &what, || {
                self.client.pull_blob_stream_partial(&reference, d.as_str(), 0, None)
            })
            .await?;
        let state = Download {
            client: self.client.clone(),
            reference,
            digest: d,
            offset: 0,
            size,
            current: Some(body(first, 0)),
            failures: 0,
            tokens: self.tokens.clone(),
        };
        Ok(Box::new(tokio_util::io::StreamReader::new(Box::pin(futures::stream::unfold(state, Download::next)))))
    }

    async fn has_blob(&self, repo: &str, digest: &Digest) -> Result<bool> {
        let reference = self.repo_ref(repo);
        let d = digest.to_string();
        self.retry(repo, RegistryOperation::Pull, &format!("blob {d} of {repo}"), || {
            self.client.blob_exists(&reference, &d)
        })
        .await
    }

    async fn push_blob(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        data: &mut (dyn AsyncRead + Send + Unpin),
    ) -> Result<()> {
        // A one-pass source: what was read is kept (up to REPLAY bytes) so that
        // a failed upload can be sent again from the start.
        let mut replay = Replay::new(data, true);
        let what = format!("upload of blob {digest} to {repo}");
        let mut attempt = 1;
        let mut renewed = false;
        loop {
            self.authorize(repo, RegistryOperation::Push).await?;
            let e = match self.upload(repo, digest, size, &mut replay).await {
                Ok(()) => return Ok(()),
                Err(Failed::Final(e)) => return Err(e),
                Err(Failed::Registry(e)) => e,
            };
            if self.renew_after(&e, repo, RegistryOperation::Push, &mut renewed).await? && replay.rewind() {
                continue;
            }
            let note = match (transient(&e), attempt < ATTEMPTS, replay.rewind()) {
                (false, _, _) => None,
                (true, true, true) => {
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                    continue;
                }
                (true, false, _) => Some(format!("gave up after {ATTEMPTS} attempts")),
                (true, true, false) => {
                    Some("not retried: more than 2 MiB of this one-pass stream was sent; run the import again".into())
                }
            };
            return Err(self.final_error(&what, e, note));
        }
    }

    async fn push_blob_reopen(&self, repo: &str, digest: &Digest, size: u64, open: &OpenBlob<'_>) -> Result<()> {
        let what = format!("upload of blob {digest} to {repo}");
        let mut attempt = 1;
        let mut renewed = false;
        loop {
            self.authorize(repo, RegistryOperation::Push).await?;
            let mut data = open().await?;
            let e = match self.upload(repo, digest, size, &mut Replay::new(&mut data, false)).await {
                Ok(()) => return Ok(()),
                Err(Failed::Final(e)) => return Err(e),
                Err(Failed::Registry(e)) => e,
            };
            if self.renew_after(&e, repo, RegistryOperation::Push, &mut renewed).await? {
                continue;
            }
            if transient(&e) && attempt < ATTEMPTS {
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
                continue;
            }
            let note = transient(&e).then(|| format!("gave up after {ATTEMPTS} attempts"));
            return Err(self.final_error(&what, e, note));
        }
    }

    async fn mount_blob(&self, from: &str, to: &str, digest: &Digest) -> Result<bool> {
        // A refused mount is not an error: the caller uploads instead.
        match &self.tokens {
            Some(t) => t.for_mount(&self.client, from, to).await?,
            None => self.authorize(to, RegistryOperation::Push).await?,
        }
        Ok(self.client.mount_blob(&self.repo_ref(to), &self.repo_ref(from), &digest.to_string()).await.is_ok()
            && self.has_blob(to, digest).await?)
    }

    async fn has_manifest(&self, repo: &str, digest: &Digest) -> Result<bool> {
        Ok(self
            .head_manifest(&self.reference(repo, Target::Digest(digest)), &format!("manifest {repo}@{digest}"))
            .await?
            .is_some())
    }

    async fn push_manifest(&self, repo: &str, manifest: &RawManifest) -> Result<()> {
        self.put_manifest(repo, Target::Digest(&manifest.digest), manifest).await
    }

    async fn set_tag(&self, repo: &str, tag: Option<&str>, manifest: &RawManifest, overwrite: bool) -> Result<()> {
        match tag {
            // A PUT by tag stores the manifest and moves the tag in one request.
            Some(t) => {
                if overwrite {
                    return self.put_manifest(repo, Target::Tag(t), manifest).await;
                }
                // The pre-flight's decision, checked again just before the write.
                // Distribution has no conditional tag PUT: a writer between this
                // HEAD and the PUT (one round trip) can still be overwritten.
                self.tag_is_free(repo, t, manifest).await?;
                self.put_manifest(repo, Target::Tag(t), manifest).await?;
                // And after it: of two writers in that window, the one whose
                // tag did not stay says so instead of reporting success.
                self.tag_is_free(repo, t, manifest).await
            }
            None => self.put_manifest(repo, Target::Digest(&manifest.digest), manifest).await,
        }
    }

    async fn tags(&self, repo: &str) -> Result<Vec<String>> {
        let reference = self.repo_ref(repo);
        let list = || self.client.list_tags(&reference, &self.auth, None, None);
        match self.retry(repo, RegistryOperation::Pull, &format!("tags of {repo}"), list).await {
            Ok(t) => Ok(t.tags),
            Err(TransferError::NotFound(_)) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    async fn referrers(&self, repo: &str, digest: &Digest) -> Result<Vec<Descriptor>> {
        let reference = self.reference(repo, Target::Digest(digest));
        self.authorize(repo, RegistryOperation::Pull).await?;
        let index = match self.client.pull_referrers(&reference, None).await {
            Ok(i) => i,
            // No Referrers API and no tag-schema index: nothing refers to it.
            Err(_) => return Ok(Vec::new()),
        };
        Ok(index
            .manifests
            .into_iter()
            .filter_map(|m| Some(Descriptor::new(&m.media_type, Digest::parse(&m.digest).ok()?, m.size as u64)))
            .collect())
    }
}

/// How one upload attempt failed: for a reason that another attempt cannot
/// change (the data is wrong or unreadable), or with the registry's error.
enum Failed {
    Final(TransferError),
    Registry(OciDistributionError),
}

/// The most of a one-pass source kept for sending again.
const REPLAY: u64 = 2 << 20;

/// A blob's data for upload attempts: read from `source` in chunks, each kept
/// while the whole fits in REPLAY bytes (when `keep`), so that `rewind` can
/// start the next attempt from the first byte.
struct Replay<'a> {
    source: &'a mut (dyn AsyncRead + Send + Unpin),
    kept: Vec<Bytes>,
    kept_bytes: u64,
    keeping: bool,
    next: usize,
}

impl<'a> Replay<'a> {
    fn new(source: &'a mut (dyn AsyncRead + Send + Unpin), keep: bool) -> Replay<'a> {
        Replay { source, kept: Vec::new(), kept_bytes: 0, keeping: keep, next: 0 }
    }

    /// The next chunk: a kept one, else up to `max` new bytes from the source.
    async fn chunk(&mut self, max: u64) -> std::io::Result<Bytes> {
        if let Some(b) = self.kept.get(self.next) {
            self.next += 1;
            return Ok(b.clone());
        }
        let mut buf = vec![0u8; max.min(UPLOAD_CHUNK as u64) as usize];
        self.source.read_exact(&mut buf).await?;
        let b = Bytes::from(buf);
        if self.keeping && self.kept_bytes + b.len() as u64 <= REPLAY {
            self.kept.push(b.clone());
            self.kept_bytes += b.len() as u64;
            self.next += 1;
        } else {
            self.keeping = false;
            self.kept = Vec::new();
            self.next = 0;
        }
        Ok(b)
    }

    /// Start again from the first byte; false when that is no longer kept.
    fn rewind(&mut self) -> bool {
        self.next = 0;
        self.keeping
    }
}

impl NetworkRegistry {
    /// One monolithic upload of `size` bytes from `data`, hashed on the way:
    /// a blob that does not hash to `digest` is aborted before the registry commits it.
    async fn upload(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        data: &mut Replay<'_>,
    ) -> std::result::Result<(), Failed> {
        let reference = self.repo_ref(repo);
        let (mut tx, rx) = futures::channel::mpsc::channel::<std::result::Result<Bytes, OciDistributionError>>(4);
        let d = digest.to_string();
        let push = self.client.push_blob_stream(&reference, rx, &d, Some(size));
        let pump = async move {
            let mut hasher = digest.hasher();
            let mut left = size;
            let r: Result<()> = async {
                while left > 0 {
                    let buf =
                        data.chunk(left).await.map_err(|e| TransferError::io(format!("reading blob {digest}"), e))?;
                    hasher.update(&buf);
                    left -= buf.len() as u64;
                    if tx.send(Ok(buf)).await.is_err() {
                        return Ok(()); // the upload ended early; its error says why
                    }
                }
                barge_bundle::catalog::expect_digest(digest, hasher.finish())?;
                Ok(())
            }
            .await;
            if let Err(e) = &r {
                // Abort the request body so the registry never commits the blob.
                let _ = tx.send(Err(OciDistributionError::GenericError(Some(e.to_string())))).await;
            }
            r
        };
        let (pushed, pumped) = tokio::join!(push, pump);
        pumped.map_err(Failed::Final)?;
        pushed.map(|_| ()).map_err(Failed::Registry)
    }

    /// Fails with `TagExists` when `repo:tag` points to something other than `manifest`.
    async fn tag_is_free(&self, repo: &str, tag: &str, manifest: &RawManifest) -> Result<()> {
        match self.resolve_tag(repo, tag).await?.filter(|d| d != &manifest.digest) {
            Some(existing) => Err(TransferError::TagExists {
                reference: format!("{repo}:{tag}"),
                existing,
                wanted: manifest.digest.clone(),
            }),
            None => Ok(()),
        }
    }

    async fn put_manifest(&self, repo: &str, target: Target<'_>, m: &RawManifest) -> Result<()> {
        let reference = self.reference(repo, target);
        let content_type = http::HeaderValue::from_str(&m.media_type).map_err(|_| {
            TransferError::Registry(format!("manifest {} has an unusable media type {:?}", m.digest, m.media_type))
        })?;
        let body = Bytes::from(m.bytes.clone());
        self.retry(repo, RegistryOperation::Push, &format!("manifest {repo}@{}", m.digest), || {
            self.client.push_manifest_raw(&reference, body.clone(), content_type.clone())
        })
        .await
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A plain-HTTP server on 127.0.0.1 that answers anything with 400, as
    /// distribution answers a TLS hello.
    fn plain_server() -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let host = l.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(mut c) = c else { return };
                let mut buf = [0u8; 1024];
                let _ = c.read(&mut buf);
                let _ = c.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            }
        });
        host
    }

    #[tokio::test]
    async fn plain_http_where_not_allowed_fails_at_once_naming_the_flag() {
        let host = plain_server();
        let client = probe_client(None).unwrap();
        let started = std::time::Instant::now();
        // As for a registry addressed by a name that is not loopback.
        let e = choose_protocol(&client, &host, false).await.unwrap_err();
        assert_eq!(e.category(), crate::Category::Auth, "{e}");
        assert!(matches!(e, TransferError::NoTls { .. }), "{e}");
        assert!(!e.to_string().contains("--"), "{e}");
        assert_eq!(e.hint(), Some(crate::Hint::InsecureRegistry(host.clone())));
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        // Where plain HTTP is allowed, it is chosen.
        assert!(matches!(choose_protocol(&client, &host, true).await, Ok((true, None))));
        // Nothing listening: no verdict yet (the requests that follow retry and report).
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
        assert!(matches!(choose_protocol(&client, &closed, false).await, Ok((false, None))));
    }

    #[test]
    fn bearer_realms_are_read() {
        let c = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io""#;
        assert_eq!(bearer_realm(c).as_deref(), Some("https://auth.docker.io/token"));
        let c = r#"bearer service="x", realm="http://127.0.0.2:9/t?a=b,c""#;
        assert_eq!(bearer_realm(c).as_deref(), Some("http://127.0.0.2:9/t?a=b,c"));
        assert_eq!(bearer_realm(r#"Basic realm="x""#), None);
        assert_eq!(bearer_param(c, "service").as_deref(), Some("x"));
        assert_eq!(bearer_param(r#"Bearer realm="r""#, "service"), None);
        assert_eq!(bearer_realm("Bearer"), None);
    }

    #[test]
    fn a_token_is_needed_where_a_bearer_challenge_is_anywhere() {
        use reqwest::StatusCode as S;
        let bearer = r#"Bearer realm="https://auth.example/token",service="r""#;
        let both = r#"Basic realm="x", Bearer realm="https://auth.example/token",service="r""#;
        assert!(has_bearer_challenge(bearer) && has_bearer_challenge(both));
        assert!(!has_bearer_challenge(r#"Basic realm="bearer thing""#) && !has_bearer_challenge("Bearer"));
        // Open, or Basic alone: no token. A Bearer challenge anywhere, a redirect, or a 5xx: ask per request.
        assert!(needs_no_token(S::OK, None) && needs_no_token(S::UNAUTHORIZED, Some(r#"Basic realm="x""#)));
        assert!(!needs_no_token(S::UNAUTHORIZED, Some(both)) && !needs_no_token(S::UNAUTHORIZED, Some(bearer)));
        assert!(!needs_no_token(S::FOUND, None) && !needs_no_token(S::SERVICE_UNAVAILABLE, None));
    }

    #[test]
    fn credentials_follow_a_realm_over_plain_http_only_where_allowed() {
        let ch = |realm: &str| format!(r#"Bearer realm="{realm}",service="s""#);
        let ok = |host: &str, allowed: bool, realm: &str, insecure: &[&str]| {
            let insecure: Vec<String> = insecure.iter().map(|s| s.to_string()).collect();
            check_realm(host, allowed, Some(&ch(realm)), &insecure)
        };
        // HTTPS realms anywhere (docker.io's realm is another host); no challenge, nothing to decide.
        assert!(ok("registry-1.docker.io", false, "https://auth.docker.io/token", &[]).is_ok());
        assert!(check_realm("reg.example", false, None, &[]).is_ok());
        assert!(check_realm("reg.example", false, Some(r#"Basic realm="r""#), &[]).is_ok());
        // Plain HTTP to the registry's own host, where that host may be spoken to in plain HTTP.
        assert!(ok("localhost:5000", true, "http://localhost:5001/token", &[]).is_ok());
        assert!(ok("reg.lan:5000", true, "http://REG.lan/token", &["reg.lan:5000"]).is_ok());
        // ... but not where it may not, nor to another host, loopback or not.
        for (host, allowed, realm) in [
            ("reg.example", false, "http://reg.example/token"),
            ("localhost:5000", true, "http://127.0.0.2:5001/token"),
            ("127.0.0.1:5000", true, "http://auth.example/token?secret=s3cret"),
            ("reg.lan:5000", true, "http://auth.lan:8080/token"),
        ] {
            let e = ok(host, allowed, realm, &[]).unwrap_err();
            assert_eq!(e.category(), crate::Category::Auth, "{e}");
            let realm_host = url::Url::parse(realm).unwrap();
            let named = match realm_host.port() {
                Some(p) => format!("{}:{p}", realm_host.host_str().unwrap()),
                None => realm_host.host_str().unwrap().to_string(),
            };
            assert!(!e.to_string().contains("--"), "{e}");
            assert_eq!(e.hint(), Some(crate::Hint::InsecureRealm(named.clone())), "{e}");
            assert!(!e.to_string().contains("s3cret"), "{e}");
        }
        // A realm host named with --insecure-registry may have them.
        assert!(ok("reg.lan:5000", true, "http://auth.lan:8080/token", &["auth.lan:8080"]).is_ok());
        assert!(ok("reg.lan:5000", true, "ftp://reg.lan/token", &[]).is_err());
    }
}
