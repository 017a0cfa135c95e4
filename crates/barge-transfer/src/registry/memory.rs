//! `MemoryRegistry`: a registry in memory, for unit tests of what export and import decide and in what order they write.
//!
//! It keeps every rule the trait states (content is checked against its
//! digest, a manifest's references must be present, a tag moves only with
//! `overwrite`), logs every write in order, and can be told to refuse tags of
//! one repository, so preflight decisions, tag ordering and ContinueOnErrors
//! are tested without a server.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use async_trait::async_trait;
use barge_bundle::oci::{parse_refs, Descriptor, Refs};
use barge_bundle::Digest;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{RawManifest, Registry, Target};
use crate::io::ByteStream;
use crate::{Result, TransferError};

/// One write, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    Blob(String, Digest),
    Mount(String, Digest),
    Manifest(String, Digest),
    Tag(String, Option<String>, Digest),
}

#[derive(Default)]
struct Repo {
    blobs: BTreeMap<Digest, Vec<u8>>,
    manifests: BTreeMap<Digest, RawManifest>,
    tags: BTreeMap<String, Digest>,
}

#[derive(Default)]
pub struct MemoryRegistry {
    repos: Mutex<BTreeMap<String, Repo>>,
    writes: Mutex<Vec<Write>>,
    refuse_tags_in: Mutex<BTreeSet<String>>,
}

impl MemoryRegistry {
    pub fn new() -> MemoryRegistry {
        MemoryRegistry::default()
    }

    /// Every write so far, in order.
    pub fn writes(&self) -> Vec<Write> {
        self.writes.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// From now on, refuse every tag write in `repo` (a registry error).
    pub fn refuse_tags_in(&self, repo: &str) {
        self.refuse_tags_in.lock().unwrap_or_else(|e| e.into_inner()).insert(repo.to_string());
    }

    fn with<T>(&self, repo: &str, f: impl FnOnce(&mut Repo) -> T) -> T {
        let mut repos = self.repos.lock().unwrap_or_else(|e| e.into_inner());
        f(repos.entry(repo.to_string()).or_default())
    }

    fn log(&self, w: Write) {
        self.writes.lock().unwrap_or_else(|e| e.into_inner()).push(w);
    }

    /// Every digest `m` names must be in `repo` already.
    fn check_refs(&self, repo: &str, m: &RawManifest) -> Result<()> {
        let refs = parse_refs(&m.media_type, &m.bytes).map_err(|e| TransferError::Registry(e.to_string()))?;
        let missing = self.with(repo, |r| match &refs {
            Refs::Image { config, layers } => std::iter::once(config)
                .chain(layers)
                .find(|d| !r.blobs.contains_key(&d.digest))
                .map(|d| d.digest.clone()),
            Refs::Index { manifests } => {
                manifests.iter().find(|d| !r.manifests.contains_key(&d.digest)).map(|d| d.digest.clone())
            }
        });
        match missing {
            Some(d) => Err(TransferError::Registry(format!("manifest {} names {d}, which {repo} lacks", m.digest))),
            None => Ok(()),
        }
    }
}

#[async_trait]
impl Registry for MemoryRegistry {
    fn name(&self) -> String {
        "memory".into()
    }

    async fn manifest(&self, repo: &str, target: Target<'_>) -> Result<RawManifest> {
        self.with(repo, |r| {
            let digest = match target {
                Target::Tag(t) => r.tags.get(t).cloned(),
                Target::Digest(d) => Some(d.clone()),
            };
            digest.and_then(|d| r.manifests.get(&d).cloned())
        })
        .ok_or_else(|| TransferError::NotFound(format!("manifest {target:?} in memory/{repo}")))
    }

    async fn resolve_tag(&self, repo: &str, tag: &str) -> Result<Option<Digest>> {
        Ok(self.with(repo, |r| r.tags.get(tag).cloned()))
    }

    async fn open_blob(&self, repo: &str, digest: &Digest, _size: u64) -> Result<ByteStream> {
        let data = self.with(repo, |r| r.blobs.get(digest).cloned());
        let data = data.ok_or_else(|| TransferError::NotFound(format!("blob {digest} in memory/{repo}")))?;
        Ok(Box::new(std::io::Cursor::new(data)))
    }

    async fn has_blob(&self, repo: &str, digest: &Digest) -> Result<bool> {
        Ok(self.with(repo, |r| r.blobs.contains_key(digest)))
    }

    async fn push_blob(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        data: &mut (dyn AsyncRead + Send + Unpin),
    ) -> Result<()> {
        let mut v = Vec::new();
        data.take(size).read_to_end(&mut v).await.map_err(|e| TransferError::io(format!("blob {digest}"), e))?;
        let actual = Digest::sha256_of(&v);
        if v.len() as u64 != size || &actual != digest {
            return Err(TransferError::WrongContent {
                what: "blob",
                digest: digest.clone(),
                actual,
                source_name: "the upload".into(),
            });
        }
        self.with(repo, |r| r.blobs.insert(digest.clone(), v));
        self.log(Write::Blob(repo.into(), digest.clone()));
        Ok(())
    }

    async fn mount_blob(&self, from: &str, to: &str, digest: &Digest) -> Result<bool> {
        let Some(data) = self.with(from, |r| r.blobs.get(digest).cloned()) else { return Ok(false) };
        self.with(to, |r| r.blobs.insert(digest.clone(), data));
        self.log(Write::Mount(to.into(), digest.clone()));
        Ok(true)
    }

    async fn has_manifest(&self, repo: &str, digest: &Digest) -> Result<bool> {
        Ok(self.with(repo, |r| r.manifests.contains_key(digest)))
    }

    async fn push_manifest(&self, repo: &str, manifest: &RawManifest) -> Result<()> {
        self.check_refs(repo, manifest)?;
        self.with(repo, |r| r.manifests.insert(manifest.digest.clone(), manifest.clone()));
        self.log(Write::Manifest(repo.into(), manifest.digest.clone()));
        Ok(())
    }

    async fn set_tag(&self, repo: &str, tag: Option<&str>, manifest: &RawManifest, overwrite: bool) -> Result<()> {
        if self.refuse_tags_in.lock().unwrap_or_else(|e| e.into_inner()).contains(repo) {
            return Err(TransferError::Registry(format!("memory/{repo} refuses tags")));
        }
        self.check_refs(repo, manifest)?;
        let wanted = manifest.digest.clone();
        self.with(repo, |r| {
            if let Some(t) = tag {
                match r.tags.get(t) {
                    Some(existing) if !overwrite && existing != &wanted => {
                        return Err(TransferError::TagExists {
                            reference: format!("{repo}:{t}"),
                            existing: existing.clone(),
                            wanted: wanted.clone(),
                        })
                    }
                    _ => r.tags.insert(t.to_string(), wanted.clone()),
                };
            }
            r.manifests.insert(wanted.clone(), manifest.clone());
            Ok(())
        })?;
        self.log(Write::Tag(repo.into(), tag.map(str::to_string), wanted));
        Ok(())
    }

    async fn tags(&self, repo: &str) -> Result<Vec<String>> {
        Ok(self.with(repo, |r| r.tags.keys().cloned().collect()))
    }

    async fn referrers(&self, _repo: &str, _digest: &Digest) -> Result<Vec<Descriptor>> {
        Ok(Vec::new())
    }
}
