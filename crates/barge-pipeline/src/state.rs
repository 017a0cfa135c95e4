//! `StateStore`: where pipelines and runs live, with conditional updates so that several barge processes agree.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use sha2::Digest as _;

use crate::PipelineError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Pipeline,
    Run,
}

impl Kind {
    fn dir(self) -> &'static str {
        match self {
            Kind::Pipeline => "pipelines",
            Kind::Run => "runs",
        }
    }
}

/// The version of a stored document, for compare-and-swap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version(pub String);

#[async_trait]
pub trait StateStore: Send + Sync {
    async fn get(&self, kind: Kind, name: &str) -> Result<Option<(Vec<u8>, Version)>, PipelineError>;

    /// Write `bytes` if the document is still at `expected` (`None`: only if it
    /// does not exist). `Conflict` otherwise, and nothing is written.
    async fn put(
        &self,
        kind: Kind,
        name: &str,
        bytes: &[u8],
        expected: Option<&Version>,
    ) -> Result<Version, PipelineError>;

    async fn list(&self, kind: Kind) -> Result<Vec<String>, PipelineError>;

    /// `false` when there was nothing to delete.
    async fn delete(&self, kind: Kind, name: &str) -> Result<bool, PipelineError>;
}

/// The embedded default: a directory, every write atomic (temporary name, then
/// rename) and every conditional write under an exclusive lock.
pub struct LocalState {
    dir: PathBuf,
}

impl LocalState {
    pub fn new(dir: PathBuf) -> LocalState {
        LocalState { dir }
    }

    /// `$XDG_STATE_HOME/barge` or `~/.local/state/barge`.
    pub fn default_dir() -> PathBuf {
        match std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
            Some(d) => PathBuf::from(d).join("barge"),
            None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".local/state/barge"),
        }
    }

    fn path(&self, kind: Kind, name: &str) -> Result<PathBuf, PipelineError> {
        crate::resource::check_name(kind.dir().trim_end_matches('s'), name)?;
        Ok(self.dir.join(kind.dir()).join(format!("{name}.json")))
    }

    fn io(&self, what: &str, e: std::io::Error) -> PipelineError {
        PipelineError::State(format!("{what} in {}: {e}", self.dir.display()))
    }

    fn locked<T>(&self, f: impl FnOnce() -> Result<T, PipelineError>) -> Result<T, PipelineError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| self.io("creating the state directory", e))?;
        let lock = std::fs::File::create(self.dir.join(".lock")).map_err(|e| self.io("locking", e))?;
        lock.lock().map_err(|e| self.io("locking", e))?;
        f()
    }
}

fn version_of(bytes: &[u8]) -> Version {
    Version(hex::encode(&sha2::Sha256::digest(bytes)[..12]))
}

fn read(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[async_trait]
impl StateStore for LocalState {
    async fn get(&self, kind: Kind, name: &str) -> Result<Option<(Vec<u8>, Version)>, PipelineError> {
        let path = self.path(kind, name)?;
        Ok(read(&path).map_err(|e| self.io("reading", e))?.map(|b| {
            let v = version_of(&b);
            (b, v)
        }))
    }

    async fn put(
        &self,
        kind: Kind,
        name: &str,
        bytes: &[u8],
        expected: Option<&Version>,
    ) -> Result<Version, PipelineError> {
        let path = self.path(kind, name)?;
        self.locked(|| {
            let current = read(&path).map_err(|e| self.io("reading", e))?.map(|b| version_of(&b));
            if current.as_ref() != expected {
                return Err(PipelineError::Conflict(format!(
                    "{} {name} was changed by another barge",
                    kind.dir().trim_end_matches('s')
                )));
            }
            let dir = path.parent().expect("state paths have a parent");
            std::fs::create_dir_all(dir).map_err(|e| self.io("creating", e))?;
            let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
            std::fs::write(&tmp, bytes).map_err(|e| self.io("writing", e))?;
            std::fs::rename(&tmp, &path).map_err(|e| self.io("writing", e))?;
            Ok(version_of(bytes))
        })
    }

    async fn list(&self, kind: Kind) -> Result<Vec<String>, PipelineError> {
        let dir = self.dir.join(kind.dir());
        let mut names = Vec::new();
        match std::fs::read_dir(&dir) {
            Ok(rd) => {
                for e in rd.flatten() {
                    let n = e.file_name().to_string_lossy().into_owned();
                    if let Some(stem) = n.strip_suffix(".json").filter(|s| !s.starts_with('.')) {
                        names.push(stem.to_string());
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(self.io("listing", e)),
        }
        names.sort();
        Ok(names)
    }

    async fn delete(&self, kind: Kind, name: &str) -> Result<bool, PipelineError> {
        let path = self.path(kind, name)?;
        self.locked(|| match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.io("deleting", e)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn compare_and_swap() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalState::new(dir.path().to_path_buf());
        let v1 = s.put(Kind::Run, "r1", b"one", None).await.unwrap();
        assert!(matches!(s.put(Kind::Run, "r1", b"again", None).await, Err(PipelineError::Conflict(_))));
        let v2 = s.put(Kind::Run, "r1", b"two", Some(&v1)).await.unwrap();
        assert!(matches!(s.put(Kind::Run, "r1", b"three", Some(&v1)).await, Err(PipelineError::Conflict(_))));
        assert_eq!(s.get(Kind::Run, "r1").await.unwrap().unwrap(), (b"two".to_vec(), v2));
        assert_eq!(s.list(Kind::Run).await.unwrap(), vec!["r1"]);
        assert!(s.delete(Kind::Run, "r1").await.unwrap());
        assert!(!s.delete(Kind::Run, "r1").await.unwrap());
    }
}

/// State in a storage container, shared by barge processes on several
/// machines: one blob per document (`pipelines/NAME.json`, `runs/NAME.json`),
/// versions are ETags, and every write is conditional (If-Match, or
/// If-None-Match: * to create).
pub struct BlobState {
    container: Box<dyn barge_transfer::store::Container>,
}

impl BlobState {
    pub fn new(container: Box<dyn barge_transfer::store::Container>) -> BlobState {
        BlobState { container }
    }

    fn blob(&self, kind: Kind, name: &str) -> Result<Box<dyn barge_transfer::BlobStore>, PipelineError> {
        crate::resource::check_name(kind.dir().trim_end_matches('s'), name)?;
        Ok(self.container.blob(&format!("{}/{name}.json", kind.dir()))?)
    }
}

#[async_trait]
impl StateStore for BlobState {
    async fn get(&self, kind: Kind, name: &str) -> Result<Option<(Vec<u8>, Version)>, PipelineError> {
        use tokio::io::AsyncReadExt;
        let blob = self.blob(kind, name)?;
        let Some(info) = blob.info().await? else { return Ok(None) };
        let mut r = blob.read_range(0, info.size, &info.etag).await?;
        let mut bytes = Vec::with_capacity(info.size as usize);
        r.read_to_end(&mut bytes)
            .await
            .map_err(|e| PipelineError::State(format!("reading {}: {e}", blob.display())))?;
        Ok(Some((bytes, Version(info.etag))))
    }

    async fn put(
        &self,
        kind: Kind,
        name: &str,
        bytes: &[u8],
        expected: Option<&Version>,
    ) -> Result<Version, PipelineError> {
        match self.blob(kind, name)?.put_if(bytes.to_vec(), expected.map(|v| v.0.as_str())).await {
            Ok(etag) => Ok(Version(etag)),
            Err(barge_transfer::TransferError::Changed(_)) | Err(barge_transfer::TransferError::Exists(_)) => {
                Err(PipelineError::Conflict(format!(
                    "{} {name} was changed by another barge",
                    kind.dir().trim_end_matches('s')
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn list(&self, kind: Kind) -> Result<Vec<String>, PipelineError> {
        let prefix = format!("{}/", kind.dir());
        Ok(self
            .container
            .list()
            .await?
            .into_iter()
            .filter_map(|l| l.name.strip_prefix(&prefix).and_then(|n| n.strip_suffix(".json")).map(str::to_string))
            .collect())
    }

    async fn delete(&self, kind: Kind, name: &str) -> Result<bool, PipelineError> {
        let blob = self.blob(kind, name)?;
        if blob.info().await?.is_none() {
            return Ok(false);
        }
        blob.delete(None).await?;
        Ok(true)
    }
}
