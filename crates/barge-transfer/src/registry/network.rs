//! `NetworkRegistry`: an OCI distribution registry over HTTP(S), on `oci-client`. The only file that names its types.

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
use oci_client::{Client, Reference};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{ConnectOptions, RawManifest, Registry, Target};
use crate::io::ByteStream;
use crate::{Result, TransferError};

const ACCEPT: &[&str] = &[oci::OCI_MANIFEST, oci::OCI_INDEX, oci::DOCKER_MANIFEST, oci::DOCKER_LIST];
const ATTEMPTS: u32 = 5;
const UPLOAD_CHUNK: usize = 256 * 1024;

pub struct NetworkRegistry {
    host: String,
    client: Arc<Client>,
    auth: RegistryAuth,
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
            let data =
                std::fs::read(ca).map_err(|e| TransferError::io(format!("reading --ca-file {}", ca.display()), e))?;
            extra.push(Certificate { encoding: CertificateEncoding::Pem, data });
        }
        let config_for = |plain: bool| ClientConfig {
            protocol: if plain { ClientProtocol::HttpsExcept(vec![host.to_string()]) } else { ClientProtocol::Https },
            extra_root_certificates: extra.clone(),
            use_monolithic_push: true,
            connect_timeout: Some(Duration::from_secs(15)),
            read_timeout: Some(Duration::from_secs(120)),
            platform_resolver: None,
            user_agent: concat!("barge/", env!("CARGO_PKG_VERSION")),
            ..Default::default()
        };
        // Plain HTTP is allowed for loopback and --insecure-registry hosts, but
        // only used when the server does not speak TLS at all.
        let plain_allowed = is_loopback(host) || opts.insecure.iter().any(|h| h == host);
        let plain = plain_allowed && !speaks_tls(host, config_for(false)).await?;
        let config = || config_for(plain);
        let creds = match &opts.credentials {
            Some(c) => Some(c.clone()),
            None => super::credentials::lookup(host, &super::credentials::config_files())?,
        };
        let auth = match creds {
            Some(c) => RegistryAuth::Basic(c.username, c.password.expose().to_string()),
            None => {
                // Anonymous, oci-client asks GET /v2/ before every request to a registry
                // that sends no challenge (it has no token to cache). Ask once: an open
                // registry then gets an empty bearer token, which it ignores, and no probes.
                let probe = Client::new(config());
                let any = Reference::with_tag(host.to_string(), "barge/probe".into(), "latest".into());
                match probe.auth(&any, &RegistryAuth::Anonymous, oci_client::RegistryOperation::Pull).await {
                    Ok(None) => RegistryAuth::Bearer(String::new()),
                    _ => RegistryAuth::Anonymous,
                }
            }
        };
        // A client keeps the first credentials it sees for a host: this one only ever sees these.
        let client = Arc::new(Client::new(config()));
        client.store_auth_if_needed(host, &auth).await;
        Ok(NetworkRegistry { host: host.to_string(), client, auth })
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

    /// Run `op`, retrying what may pass (5xx, 429, dropped or timed-out connections) with backoff.
    async fn retry<T, F, Fut>(&self, what: &str, op: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = std::result::Result<T, OciDistributionError>>,
    {
        let mut delay = Duration::from_millis(200);
        let mut attempt = 1;
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) if attempt < ATTEMPTS && transient(&e) => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                    attempt += 1;
                }
                Err(e) => {
                    let gave_up = transient(&e);
                    return Err(match self.map_err(what, e) {
                        TransferError::Registry(m) if gave_up => {
                            TransferError::Registry(format!("{m} (gave up after {ATTEMPTS} attempts)"))
                        }
                        other => other,
                    });
                }
            }
        }
    }

    fn map_err(&self, what: &str, e: OciDistributionError) -> TransferError {
        let host = &self.host;
        match &e {
            OciDistributionError::UnauthorizedError { .. } | OciDistributionError::AuthenticationFailure(_) => TransferError::Auth(format!(
                "{host} refused access to {what}; give credentials with --username and --password-stdin, docker login, or REGISTRY_AUTH_FILE"
            )),
            OciDistributionError::ImageManifestNotFoundError(_) => TransferError::NotFound(format!("{what} on {host}")),
            OciDistributionError::RegistryError { envelope, .. } => {
                let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
                if codes.iter().any(|c| {
                    matches!(c, OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown | OciErrorCode::BlobUnknown)
                }) {
                    TransferError::NotFound(format!("{what} on {host}"))
                } else if codes.iter().any(|c| matches!(c, OciErrorCode::Denied | OciErrorCode::Unauthorized)) {
                    TransferError::Auth(format!("{host} denied {what}: {envelope}"))
                } else if codes.iter().any(|c| matches!(c, OciErrorCode::DigestInvalid)) {
                    TransferError::Bundle(barge_bundle::BundleError::Corrupt(format!("{host} says the digest of {what} is wrong")))
                } else {
                    TransferError::Registry(format!("{host}: {what}: {envelope}"))
                }
            }
            OciDistributionError::ServerError { code: 404, .. } => TransferError::NotFound(format!("{what} on {host}")),
            OciDistributionError::ServerError { code, message, .. } if *code == 429 || *code >= 500 => {
                let said = if message.trim().is_empty() { String::new() } else { format!(": {}", message.trim()) };
                TransferError::Registry(format!("{host} answered HTTP {code} for {what}{said}"))
            }
            OciDistributionError::ServerError { code: 401 | 403, .. } => {
                TransferError::Auth(format!("{host} refused access to {what}; check the credentials and their permissions"))
            }
            OciDistributionError::RequestError(r) if is_tls(r as &(dyn std::error::Error + 'static)) => TransferError::Tls(format!(
                "TLS with {host} failed ({}); for a private CA pass --ca-file, for a plain-HTTP registry --insecure-registry {host}",
                chain(r)
            )),
            OciDistributionError::RequestError(r) => TransferError::Registry(format!("{host}: {what}: {}", chain(r))),
            OciDistributionError::DigestError(d) => {
                TransferError::Bundle(barge_bundle::BundleError::Corrupt(format!("{host} sent {what} with a wrong digest: {d}")))
            }
            _ => TransferError::Registry(format!("{host}: {what}: {e}")),
        }
    }

    async fn head_manifest(&self, reference: &Reference, what: &str) -> Result<Option<Digest>> {
        match self.retry(what, || self.client.fetch_manifest_digest(reference, &self.auth)).await {
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
}

impl Download {
    async fn next(mut self) -> Option<(std::io::Result<Bytes>, Download)> {
        use futures::StreamExt;
        loop {
            if self.offset >= self.size {
                return None;
            }
            let Some(body) = self.current.as_mut() else {
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

/// Does `host` answer over HTTPS? A request that skips the token dance (an
/// empty bearer token) is sent over HTTPS: any HTTP answer means yes. A
/// certificate that does not check means the server speaks TLS, and is an
/// error. Any other failure (or no answer within the probe's time) is a no.
async fn speaks_tls(host: &str, https: ClientConfig) -> Result<bool> {
    // A server that neither answers nor closes on a TLS hello must not stall the connect.
    const PROBE: Duration = Duration::from_secs(10);
    let probe = Reference::with_tag(host.to_string(), "barge/probe".into(), "latest".into());
    let auth = RegistryAuth::Bearer(String::new());
    match tokio::time::timeout(PROBE, Client::new(https).fetch_manifest_digest(&probe, &auth)).await {
        Ok(Err(OciDistributionError::RequestError(e))) if chain(&e).to_lowercase().contains("certificate") => {
            let mut cause: &(dyn std::error::Error + 'static) = &e;
            while let Some(c) = cause.source() {
                cause = c;
            }
            Err(TransferError::Tls(format!(
                "{host} speaks TLS with a certificate that does not check ({cause}); for a private CA pass --ca-file"
            )))
        }
        Ok(Err(OciDistributionError::RequestError(_))) | Err(_) => Ok(false),
        Ok(_) => Ok(true),
    }
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
        let (bytes, header_digest) =
            self.retry(&what, || self.client.pull_manifest_raw(&reference, &self.auth, ACCEPT)).await?;
        if bytes.len() as u64 > oci::MAX_MANIFEST_SIZE {
            return Err(TransferError::Registry(format!("{}: {what} is larger than 4 MiB", self.host)));
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
        let first = self.retry(&what, || self.client.pull_blob_stream_partial(&reference, d.as_str(), 0, None)).await?;
        let state = Download {
            client: self.client.clone(),
            reference,
            digest: d,
            offset: 0,
            size,
            current: Some(body(first, 0)),
            failures: 0,
        };
        Ok(Box::new(tokio_util::io::StreamReader::new(Box::pin(futures::stream::unfold(state, Download::next)))))
    }

    async fn has_blob(&self, repo: &str, digest: &Digest) -> Result<bool> {
        let reference = self.repo_ref(repo);
        let d = digest.to_string();
        self.retry(&format!("blob {d} of {repo}"), || self.client.blob_exists(&reference, &d)).await
    }

    async fn push_blob(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        data: &mut (dyn AsyncRead + Send + Unpin),
    ) -> Result<()> {
        let reference = self.repo_ref(repo);
        let (mut tx, rx) = futures::channel::mpsc::channel::<std::result::Result<Bytes, OciDistributionError>>(4);
        let d = digest.to_string();
        let push = self.client.push_blob_stream(&reference, rx, &d, Some(size));
        let pump = async move {
            let mut hasher = digest.hasher();
            let mut left = size;
            let r: Result<()> = async {
                while left > 0 {
                    let mut buf = vec![0u8; (left as usize).min(UPLOAD_CHUNK)];
                    data.read_exact(&mut buf)
                        .await
                        .map_err(|e| TransferError::io(format!("reading blob {digest}"), e))?;
                    hasher.update(&buf);
                    left -= buf.len() as u64;
                    if tx.send(Ok(Bytes::from(buf))).await.is_err() {
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
        pumped?;
        pushed.map(|_| ()).map_err(|e| self.map_err(&format!("upload of blob {digest} to {repo}"), e))
    }

    async fn mount_blob(&self, from: &str, to: &str, digest: &Digest) -> Result<bool> {
        // A refused mount is not an error: the caller uploads instead.
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

    async fn set_tag(&self, repo: &str, tag: Option<&str>, manifest: &RawManifest) -> Result<()> {
        match tag {
            // A PUT by tag stores the manifest and moves the tag in one request.
            Some(t) => self.put_manifest(repo, Target::Tag(t), manifest).await,
            None => self.put_manifest(repo, Target::Digest(&manifest.digest), manifest).await,
        }
    }

    async fn tags(&self, repo: &str) -> Result<Vec<String>> {
        let reference = self.repo_ref(repo);
        match self.retry(&format!("tags of {repo}"), || self.client.list_tags(&reference, &self.auth, None, None)).await
        {
            Ok(t) => Ok(t.tags),
            Err(TransferError::NotFound(_)) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    async fn referrers(&self, repo: &str, digest: &Digest) -> Result<Vec<Descriptor>> {
        let reference = self.reference(repo, Target::Digest(digest));
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

impl NetworkRegistry {
    async fn put_manifest(&self, repo: &str, target: Target<'_>, m: &RawManifest) -> Result<()> {
        let reference = self.reference(repo, target);
        let content_type = http::HeaderValue::from_str(&m.media_type).map_err(|_| {
            TransferError::Registry(format!("manifest {} has an unusable media type {:?}", m.digest, m.media_type))
        })?;
        let body = Bytes::from(m.bytes.clone());
        self.retry(&format!("manifest {repo}@{}", m.digest), || {
            self.client.push_manifest_raw(&reference, body.clone(), content_type.clone())
        })
        .await
        .map(|_| ())
    }
}
