//! `LayoutRegistry` (`oci:PATH`): repository `a/b` is the OCI image layout at `PATH/a/b`, as skopeo's `oci:` writes it.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use barge_bundle::catalog::{expect_digest, OCI_LAYOUT_JSON};
use barge_bundle::oci::{self, Descriptor, Index, REF_NAME};
use barge_bundle::{check_repository, Digest};
use tokio::io::{AsyncRead, AsyncWriteExt, BufWriter};

use super::{RawManifest, Registry, Target};
use crate::io::{blocking, copy_exact, ByteStream, CHUNK};
use crate::report::Silent;
use crate::temp::TempFile;
use crate::{Result, TransferError};

pub struct LayoutRegistry {
    root: PathBuf,
}

impl LayoutRegistry {
    pub fn new(root: PathBuf) -> LayoutRegistry {
        LayoutRegistry { root }
    }

    fn repo_dir(&self, repo: &str) -> Result<PathBuf> {
        // The name grammar admits no "..", no absolute path, no empty component.
        check_repository(repo)
            .map_err(|e| TransferError::InvalidRepository { repo: repo.to_string(), why: e.to_string() })?;
        Ok(self.root.join(repo))
    }

    fn blob_path(&self, repo: &str, digest: &Digest) -> Result<PathBuf> {
        Ok(self.repo_dir(repo)?.join(digest.layout_path()))
    }

    async fn read_index(&self, repo: &str) -> Result<Option<Index>> {
        let path = self.repo_dir(repo)?.join("index.json");
        match tokio::fs::read(&path).await {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| TransferError::InvalidLayout { path: path.display().to_string(), why: e.to_string() }),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(TransferError::io(format!("reading {}", path.display()), e)),
        }
    }

    fn describe(&self, repo: &str) -> String {
        format!("oci:{}/{repo}", self.root.display())
    }

    /// Create the layout's fixed files if this is a new repository.
    async fn ensure_layout(&self, repo: &str) -> Result<PathBuf> {
        let dir = self.repo_dir(repo)?;
        let layout = dir.join("oci-layout");
        if tokio::fs::try_exists(&layout).await.unwrap_or(false) {
            return Ok(dir);
        }
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| TransferError::io(format!("creating {}", dir.display()), e))?;
        write_atomic(&layout, OCI_LAYOUT_JSON.to_vec(), false).await.or_else(ignore_exists)?;
        Ok(dir)
    }

    /// Write a small blob whose digest the caller has checked.
    async fn put_small_blob(&self, repo: &str, digest: &Digest, bytes: &[u8]) -> Result<()> {
        let path = self.blob_path(repo, digest)?;
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Ok(());
        }
        let mut h = digest.hasher();
        h.update(bytes);
        expect_digest(digest, h.finish())?;
        create_parent(&path).await?;
        write_atomic(&path, bytes.to_vec(), false).await.or_else(ignore_exists)
    }
}

fn ignore_exists(e: TransferError) -> Result<()> {
    match e {
        TransferError::Exists(_) => Ok(()),
        e => Err(e),
    }
}

async fn create_parent(path: &Path) -> Result<()> {
    let dir = path.parent().expect("blob paths have a parent");
    tokio::fs::create_dir_all(dir).await.map_err(|e| TransferError::io(format!("creating {}", dir.display()), e))
}

async fn write_atomic(path: &Path, bytes: Vec<u8>, overwrite: bool) -> Result<()> {
    let path = path.to_path_buf();
    blocking("writing a layout file", move || {
        let tmp = TempFile::beside(&path);
        std::fs::write(tmp.path(), &bytes)
            .map_err(|e| TransferError::io(format!("writing {}", tmp.path().display()), e))?;
        tmp.commit(&path, overwrite)
    })
    .await
}

#[async_trait]
impl Registry for LayoutRegistry {
    async fn tags(&self, repo: &str) -> Result<Vec<String>> {
        Ok(self
            .read_index(repo)
            .await?
            .map(|i| i.manifests.iter().filter_map(|d| d.ref_name().map(str::to_string)).collect())
            .unwrap_or_default())
    }

    async fn referrers(&self, _repo: &str, _digest: &Digest) -> Result<Vec<Descriptor>> {
        // A layout has no Referrers API; tag-schema referrers are found through tags().
        Ok(Vec::new())
    }

    fn name(&self) -> String {
        format!("oci:{}", self.root.display())
    }

    async fn manifest(&self, repo: &str, target: Target<'_>) -> Result<RawManifest> {
        let index = self.read_index(repo).await?;
        let Some(index) = index else {
            return Err(TransferError::NotFound(format!("repository {}", self.describe(repo))));
        };
        let (digest, listed_type) = match target {
            Target::Tag(t) => {
                let d = index
                    .manifests
                    .iter()
                    .rev()
                    .find(|d| d.ref_name() == Some(t))
                    .ok_or_else(|| TransferError::NotFound(format!("tag {t:?} in {}", self.describe(repo))))?;
                (d.digest.clone(), Some(d.media_type.clone()))
            }
            Target::Digest(d) => {
                let listed = index.manifests.iter().find(|m| &m.digest == d).map(|m| m.media_type.clone());
                (d.clone(), listed)
            }
        };
        let path = self.blob_path(repo, &digest)?;
        let meta = match tokio::fs::metadata(&path).await {
            Ok(m) => m,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(TransferError::NotFound(format!("manifest {digest} in {}", self.describe(repo))))
            }
            Err(e) => return Err(TransferError::io(format!("reading {}", path.display()), e)),
        };
        if meta.len() > oci::MAX_MANIFEST_SIZE {
            return Err(TransferError::ManifestTooLarge {
                what: format!("manifest {digest} in {}", self.describe(repo)),
            });
        }
        let bytes =
            tokio::fs::read(&path).await.map_err(|e| TransferError::io(format!("reading {}", path.display()), e))?;
        let mut h = digest.hasher();
        h.update(&bytes);
        let actual = h.finish();
        if actual != digest {
            return Err(TransferError::WrongContent {
                what: "manifest",
                digest,
                actual,
                source_name: self.describe(repo),
            });
        }
        let media_type = oci::declared_media_type(&bytes, listed_type.as_deref().unwrap_or(oci::OCI_MANIFEST));
        Ok(RawManifest { media_type, digest, bytes })
    }

    async fn resolve_tag(&self, repo: &str, tag: &str) -> Result<Option<Digest>> {
        Ok(self
            .read_index(repo)
            .await?
            .and_then(|i| i.manifests.iter().rev().find(|d| d.ref_name() == Some(tag)).map(|d| d.digest.clone())))
    }

    async fn open_blob(&self, repo: &str, digest: &Digest, size: u64) -> Result<ByteStream> {
        let path = self.blob_path(repo, digest)?;
        let file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(TransferError::NotFound(format!("blob {digest} in {}", self.describe(repo))))
            }
            Err(e) => return Err(TransferError::io(format!("opening {}", path.display()), e)),
        };
        let len = file.metadata().await.map_err(|e| TransferError::io(format!("reading {}", path.display()), e))?.len();
        if len != size {
            return Err(TransferError::WrongSize {
                what: format!("blob {digest} in {}", self.describe(repo)),
                expected: size,
                actual: len,
            });
        }
        Ok(Box::new(tokio::io::BufReader::with_capacity(CHUNK, file)))
    }

    async fn has_blob(&self, repo: &str, digest: &Digest) -> Result<bool> {
        Ok(tokio::fs::try_exists(self.blob_path(repo, digest)?).await.unwrap_or(false))
    }

    async fn push_blob(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        data: &mut (dyn AsyncRead + Send + Unpin),
    ) -> Result<()> {
        self.ensure_layout(repo).await?;
        let path = self.blob_path(repo, digest)?;
        create_parent(&path).await?;
        let tmp = TempFile::beside(&path);
        let file = tokio::fs::File::create(tmp.path())
            .await
            .map_err(|e| TransferError::io(format!("creating {}", tmp.path().display()), e))?;
        let mut w = BufWriter::with_capacity(CHUNK, file);
        let actual = copy_exact(data, &mut w, size, digest.algorithm(), &format!("blob {digest}"), &Silent).await?;
        expect_digest(digest, actual)?;
        w.flush().await.map_err(|e| TransferError::io(format!("writing {}", tmp.path().display()), e))?;
        drop(w);
        blocking("renaming a blob", move || tmp.commit(&path, false).or_else(ignore_exists)).await
    }

    async fn mount_blob(&self, from: &str, to: &str, digest: &Digest) -> Result<bool> {
        let src = self.blob_path(from, digest)?;
        let dst = self.blob_path(to, digest)?;
        if !tokio::fs::try_exists(&src).await.unwrap_or(false) {
            return Ok(false);
        }
        self.ensure_layout(to).await?;
        create_parent(&dst).await?;
        match tokio::fs::hard_link(&src, &dst).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(true),
            // Another file system, or links not allowed: the caller uploads instead.
            Err(_) => Ok(false),
        }
    }

    async fn has_manifest(&self, repo: &str, digest: &Digest) -> Result<bool> {
        self.has_blob(repo, digest).await
    }

    async fn push_manifest(&self, repo: &str, manifest: &RawManifest) -> Result<()> {
        self.ensure_layout(repo).await?;
        self.put_small_blob(repo, &manifest.digest, &manifest.bytes).await
    }

    async fn set_tag(&self, repo: &str, tag: Option<&str>, manifest: &RawManifest, overwrite: bool) -> Result<()> {
        let dir = self.ensure_layout(repo).await?;
        self.put_small_blob(repo, &manifest.digest, &manifest.bytes).await?;
        let tag = tag.map(str::to_string);
        let repo = repo.to_string();
        let desc = {
            let mut d = Descriptor::new(&manifest.media_type, manifest.digest.clone(), manifest.bytes.len() as u64);
            if let Some(t) = &tag {
                d.annotations = Some(BTreeMap::from([(REF_NAME.to_string(), t.clone())]));
            }
            d
        };
        // index.json is shared by every writer of the repository: change it under a lock.
        blocking("updating index.json", move || -> Result<()> {
            let lock_path = dir.join(".barge-index.lock");
            let lock = std::fs::File::create(&lock_path)
                .map_err(|e| TransferError::io(format!("creating {}", lock_path.display()), e))?;
            lock.lock().map_err(|e| TransferError::io(format!("locking {}", lock_path.display()), e))?;
            let path = dir.join("index.json");
            let mut index = match std::fs::read(&path) {
                Ok(b) => serde_json::from_slice::<Index>(&b).map_err(|e| TransferError::InvalidLayout {
                    path: path.display().to_string(),
                    why: e.to_string(),
                })?,
                Err(e) if e.kind() == ErrorKind::NotFound => Index::empty(),
                Err(e) => return Err(TransferError::io(format!("reading {}", path.display()), e)),
            };
            match &tag {
                Some(t) => {
                    // Decided here, under the lock: what the pre-flight saw may have changed since.
                    let current = index.manifests.iter().rev().find(|d| d.ref_name() == Some(t.as_str()));
                    if let Some(existing) = current.filter(|d| !overwrite && d.digest != desc.digest) {
                        return Err(TransferError::TagExists {
                            reference: format!("{repo}:{t}"),
                            existing: existing.digest.clone(),
                            wanted: desc.digest.clone(),
                        });
                    }
                    index.manifests.retain(|d| d.ref_name() != Some(t.as_str()));
                }
                None => {
                    if index.manifests.iter().any(|d| d.digest == desc.digest) {
                        return Ok(());
                    }
                }
            }
            index.manifests.push(desc);
            let tmp = TempFile::beside(&path);
            std::fs::write(tmp.path(), serde_json::to_vec(&index).expect("index serializes"))
                .map_err(|e| TransferError::io(format!("writing {}", tmp.path().display()), e))?;
            tmp.commit(&path, true)
        })
        .await
    }
}
