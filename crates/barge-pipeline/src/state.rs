//! `StateStore`: where pipelines and runs live, with conditional updates so that several barge processes agree.

use async_trait::async_trait;

use crate::PipelineError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Pipeline,
    Run,
    /// An inventory a run is cut against, under (part of) its digest.
    Inventory,
    /// A bundle's catalog: an export run's, under the run's name, or one a run
    /// is cut against, under (part of) its digest.
    Catalog,
}

impl Kind {
    fn dir(self) -> &'static str {
        match self {
            Kind::Pipeline => "pipelines",
            Kind::Run => "runs",
            Kind::Inventory => "inventories",
            Kind::Catalog => "catalogs",
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

    /// The same store, for a task that outlives this borrow (a claim's heartbeat).
    fn shared(&self) -> std::sync::Arc<dyn StateStore>;
}

/// The default state directory: `$XDG_STATE_HOME/barge` or `~/.local/state/barge`.
pub fn default_dir() -> std::path::PathBuf {
    match std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        Some(d) => std::path::PathBuf::from(d).join("barge"),
        None => std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".local/state/barge"),
    }
}

/// State in a container: a storage container that barge processes on several
/// machines share, or a local directory (the embedded default). One blob per
/// document (`pipelines/NAME.json`, `runs/NAME.json`); versions are ETags and
/// every write is conditional (If-Match, or If-None-Match: * to create), an
/// atomic rename under a lock in a directory.
#[derive(Clone)]
pub struct BlobState {
    container: std::sync::Arc<dyn barge_transfer::store::Container>,
}

impl BlobState {
    pub fn new(container: Box<dyn barge_transfer::store::Container>) -> BlobState {
        BlobState { container: container.into() }
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

    fn shared(&self) -> std::sync::Arc<dyn StateStore> {
        std::sync::Arc::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn compare_and_swap_in_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let container = barge_transfer::store::open_container(&dir.path().display().to_string(), None, 1).unwrap();
        let s = BlobState::new(container);
        let v1 = s.put(Kind::Run, "r1", b"one", None).await.unwrap();
        assert!(matches!(s.put(Kind::Run, "r1", b"again", None).await, Err(PipelineError::Conflict(_))));
        let v2 = s.put(Kind::Run, "r1", b"two", Some(&v1)).await.unwrap();
        assert!(matches!(s.put(Kind::Run, "r1", b"three", Some(&v1)).await, Err(PipelineError::Conflict(_))));
        assert_eq!(s.get(Kind::Run, "r1").await.unwrap().unwrap(), (b"two".to_vec(), v2));
        s.put(Kind::Pipeline, "p1", b"{}", None).await.unwrap();
        assert_eq!(s.list(Kind::Run).await.unwrap(), vec!["r1"]);
        assert_eq!(s.list(Kind::Pipeline).await.unwrap(), vec!["p1"]);
        assert!(s.delete(Kind::Run, "r1").await.unwrap());
        assert!(!s.delete(Kind::Run, "r1").await.unwrap());
    }
}
