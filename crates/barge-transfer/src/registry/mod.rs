//! The `Registry` trait: what export reads from and import writes to, whatever the registry is.

pub mod credentials;
mod layout;
mod memory;
mod network;

use std::path::PathBuf;

use async_trait::async_trait;
use barge_bundle::oci::Descriptor;
use barge_bundle::{Digest, Reference};
use tokio::io::AsyncRead;

pub use credentials::Credentials;
pub use layout::LayoutRegistry;
pub use memory::{MemoryRegistry, Write};
pub use network::{is_loopback, NetworkRegistry};

use crate::io::ByteStream;
use crate::{Result, TransferError};

/// Opens a blob's data from its first byte, as often as it is called.
pub type OpenBlob<'a> = dyn Fn() -> futures::future::BoxFuture<'a, Result<ByteStream>> + Send + Sync + 'a;

/// A manifest or index as raw bytes: never re-serialised, so its digest holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawManifest {
    pub media_type: String,
    pub digest: Digest,
    pub bytes: Vec<u8>,
}

/// A manifest named by tag or by digest.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    Tag(&'a str),
    Digest(&'a Digest),
}

impl<'a> Target<'a> {
    /// The digest if the reference pins one, else its tag.
    pub fn of(r: &'a Reference) -> Target<'a> {
        match (r.digest(), r.tag()) {
            (Some(d), _) => Target::Digest(d),
            (None, Some(t)) => Target::Tag(t),
            (None, None) => Target::Tag("latest"),
        }
    }
}

/// One registry. Every operation names its repository; implementations check
/// every digest they are handed content for before making it visible.
#[async_trait]
pub trait Registry: Send + Sync {
    /// How the user named it (for messages and the catalog); never a secret.
    fn name(&self) -> String;

    /// Fetch a manifest; its bytes are checked against the digest when the target is one.
    async fn manifest(&self, repo: &str, target: Target<'_>) -> Result<RawManifest>;

    /// What a tag points to now, if it exists.
    async fn resolve_tag(&self, repo: &str, tag: &str) -> Result<Option<Digest>>;

    /// Stream a blob of known size. The caller hashes and checks it.
    async fn open_blob(&self, repo: &str, digest: &Digest, size: u64) -> Result<ByteStream>;

    async fn has_blob(&self, repo: &str, digest: &Digest) -> Result<bool>;

    /// Store exactly `size` bytes read from `data` as blob `digest`; content
    /// that does not hash to `digest` is refused and never becomes visible.
    async fn push_blob(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        data: &mut (dyn AsyncRead + Send + Unpin),
    ) -> Result<()>;

    /// Make a blob that `from` has available in `to` without sending it again.
    /// `Ok(false)` when the registry cannot; the caller then uploads it.
    async fn mount_blob(&self, from: &str, to: &str, digest: &Digest) -> Result<bool>;

    async fn has_manifest(&self, repo: &str, digest: &Digest) -> Result<bool>;

    /// Store a manifest by digest (every blob it names must already be there).
    async fn push_manifest(&self, repo: &str, manifest: &RawManifest) -> Result<()>;

    /// Like [`Registry::push_blob`], from a source that `open` gives afresh
    /// (from the blob's first byte) each time it is called: an upload that
    /// fails on the way is tried again from the start, within the retry budget.
    async fn push_blob_reopen(&self, repo: &str, digest: &Digest, size: u64, open: &OpenBlob<'_>) -> Result<()> {
        let mut data = open().await?;
        self.push_blob(repo, digest, size, &mut data).await
    }

    /// Store `manifest` (every manifest and blob it names must be there
    /// already) and point `tag` at it; with no tag, record it as a root of
    /// the repository (what a digest-only artifact needs). Unless `overwrite`,
    /// a tag that points elsewhere at the moment of the write is left alone
    /// and the call fails with [`TransferError::TagExists`]: `LayoutRegistry`
    /// decides under its index lock; `NetworkRegistry` reads the tag just
    /// before the write and again after it (distribution has no conditional
    /// tag write, so a window of one round trip remains).
    async fn set_tag(&self, repo: &str, tag: Option<&str>, manifest: &RawManifest, overwrite: bool) -> Result<()>;

    /// Every tag of the repository (empty when it does not exist).
    async fn tags(&self, repo: &str) -> Result<Vec<String>>;

    /// Manifests whose `subject` is `digest`, from the Referrers API (or its
    /// tag-schema fallback). Empty where the registry has no such notion.
    async fn referrers(&self, repo: &str, digest: &Digest) -> Result<Vec<Descriptor>>;
}

/// How to reach a network registry.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// Hosts (`name[:port]`) to reach over plain HTTP although not loopback.
    pub insecure: Vec<String>,
    /// A PEM file of extra CA certificates.
    pub ca_file: Option<PathBuf>,
    /// Credentials given on the command line; otherwise docker's config files are read.
    pub credentials: Option<Credentials>,
}

/// Where a registry is, as given to `--registry`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryAddr {
    /// `oci:PATH`: a directory of OCI image layouts, one per repository.
    Layout(PathBuf),
    /// `HOST[:PORT]`, optionally written `docker://HOST[:PORT]`: an OCI distribution registry.
    Network(String),
}

impl RegistryAddr {
    pub fn parse(s: &str) -> Result<RegistryAddr> {
        if let Some(p) = s.strip_prefix("oci:") {
            if p.is_empty() {
                return Err(TransferError::InvalidRegistryAddress(
                    "registry \"oci:\" needs a directory: oci:PATH".into(),
                ));
            }
            return Ok(RegistryAddr::Layout(PathBuf::from(p)));
        }
        let host = s.strip_prefix("docker://").unwrap_or(s).trim_end_matches('/');
        let bad = || {
            TransferError::InvalidRegistryAddress(format!(
                "registry {s:?} is neither oci:PATH nor HOST[:PORT] (for example 127.0.0.1:5000 or myregistry.azurecr.io)"
            ))
        };
        let valid = !host.is_empty()
            && !host.contains('/')
            && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
        if !valid {
            return Err(bad());
        }
        // HOST, HOST:PORT, [IPv6] or [IPv6]:PORT.
        let (name, port) = match host.strip_prefix('[') {
            Some(rest) => {
                let (inside, after) = rest.split_once(']').ok_or_else(bad)?;
                let port = match after {
                    "" => None,
                    p => Some(p.strip_prefix(':').ok_or_else(bad)?),
                };
                (inside, port)
            }
            None => match host.split_once(':') {
                Some((n, p)) => (n, Some(p)),
                None => (host, None),
            },
        };
        if name.is_empty() || name.contains(['[', ']']) || (!host.starts_with('[') && name.contains(':')) {
            return Err(bad());
        }
        if let Some(p) = port {
            if !matches!(p.parse::<u32>(), Ok(1..=65535)) || p.starts_with('+') {
                return Err(TransferError::InvalidRegistryAddress(format!(
                    "registry {s:?}: port {p:?} is not a port number (1 to 65535)"
                )));
            }
        }
        Ok(RegistryAddr::Network(host.to_string()))
    }

    /// Open it to write into: an `oci:` layout is first swept of the
    /// temporary files that killed barge processes left in it.
    pub async fn open_for_writing(&self, opts: &ConnectOptions) -> Result<std::sync::Arc<dyn Registry>> {
        if let RegistryAddr::Layout(root) = self {
            let root = root.clone();
            // Repositories nest (a/b/c), each with blobs/sha256 below it.
            let _ = tokio::task::spawn_blocking(move || crate::temp::sweep_tree(&root, 12)).await;
        }
        self.open(opts).await
    }

    pub async fn open(&self, opts: &ConnectOptions) -> Result<std::sync::Arc<dyn Registry>> {
        Ok(match self {
            RegistryAddr::Layout(p) => std::sync::Arc::new(LayoutRegistry::new(p.clone())),
            RegistryAddr::Network(host) => std::sync::Arc::new(NetworkRegistry::connect(host, opts).await?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_outside_the_range_are_refused_naming_the_value() {
        for bad in ["127.0.0.1:99999", "127.0.0.1:0", "reg:65536", "UPPER:BAD:PORT", "reg:", "[::1]:70000", "reg:+80"] {
            let e = RegistryAddr::parse(bad).unwrap_err();
            assert_eq!(e.category(), crate::Category::Usage, "{bad}");
            assert!(e.to_string().contains(bad), "{bad}: {e}");
        }
        let e = RegistryAddr::parse("127.0.0.1:99999").unwrap_err().to_string();
        assert!(e.contains("port \"99999\""), "{e}");
        for good in
            ["127.0.0.1:5000", "reg.example", "reg.example:1", "[::1]:65535", "[::1]", "docker://localhost:5000/"]
        {
            assert!(matches!(RegistryAddr::parse(good), Ok(RegistryAddr::Network(_))), "{good}");
        }
    }
}
