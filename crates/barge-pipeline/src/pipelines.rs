//! Pipelines in the state store: load, create or replace, list, delete.
//!
//! A pipeline is stored as the document it was applied from (ACR's shape,
//! unknown fields kept), normalized; `Pipeline` is its typed part.

use serde_json::Value;

use crate::resource::Pipeline;
use crate::state::{Kind, StateStore};
use crate::PipelineError;

pub async fn load_pipeline(state: &dyn StateStore, name: &str) -> Result<Pipeline, PipelineError> {
    serde_json::from_value(load_document(state, name).await?)
        .map_err(|e| PipelineError::State(format!("pipeline {name} is unreadable: {e}")))
}

/// The pipeline's whole document, as `pipeline show` prints it.
pub async fn load_document(state: &dyn StateStore, name: &str) -> Result<Value, PipelineError> {
    let (bytes, _) = state.get(Kind::Pipeline, name).await?.ok_or_else(|| {
        PipelineError::NotFound(format!("pipeline {name}; create it with barge pipeline export|import create"))
    })?;
    serde_json::from_slice(&bytes).map_err(|e| PipelineError::State(format!("pipeline {name} is unreadable: {e}")))
}

/// Create or replace a pipeline, checked first. The current version is read
/// before the write, so a change made meanwhile by another barge is a
/// `Conflict`, never lost silently.
pub async fn save_pipeline(state: &dyn StateStore, p: &Pipeline) -> Result<(), PipelineError> {
    let doc = serde_json::to_value(p).map_err(|e| PipelineError::State(format!("pipeline {}: {e}", p.name())))?;
    save_document(state, p, &doc).await
}

/// Create or replace a pipeline from its document (what `Pipeline::from_document` gives).
pub async fn save_document(state: &dyn StateStore, p: &Pipeline, doc: &Value) -> Result<(), PipelineError> {
    p.check()?;
    let bytes =
        serde_json::to_vec_pretty(doc).map_err(|e| PipelineError::State(format!("pipeline {}: {e}", p.name())))?;
    let current = state.get(Kind::Pipeline, p.name()).await?.map(|(_, v)| v);
    state.put(Kind::Pipeline, p.name(), &bytes, current.as_ref()).await?;
    Ok(())
}

/// Every pipeline, by name.
pub async fn list_pipelines(state: &dyn StateStore) -> Result<Vec<Pipeline>, PipelineError> {
    let mut out = Vec::new();
    for name in state.list(Kind::Pipeline).await? {
        out.push(load_pipeline(state, &name).await?);
    }
    Ok(out)
}

/// Delete a pipeline's resource (not its runs): `NotFound` when there is none.
pub async fn delete_pipeline(state: &dyn StateStore, name: &str) -> Result<(), PipelineError> {
    if !state.delete(Kind::Pipeline, name).await? {
        return Err(PipelineError::NotFound(format!("pipeline {name}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::{ExportProperties, StorageRef};
    use crate::BlobState;

    fn export(name: &str, registry: &str) -> Pipeline {
        let target = StorageRef {
            kind: "AzureStorageBlobContainer".into(),
            uri: "https://acct.blob.core.windows.net/bundles".into(),
            secret_uri: Some("env:EXPORT_SAS".into()),
        };
        Pipeline::Export {
            name: name.into(),
            properties: ExportProperties { registry: registry.into(), target, options: vec![], signing_key: None },
        }
    }

    #[tokio::test]
    async fn create_replace_list_delete() {
        let dir = tempfile::tempdir().unwrap();
        let container = barge_transfer::store::open_container(&dir.path().display().to_string(), None, 1).unwrap();
        let s = BlobState::new(container);
        save_pipeline(&s, &export("exp1", "127.0.0.1:5000")).await.unwrap();
        save_pipeline(&s, &export("exp1", "127.0.0.1:5001")).await.unwrap();
        let Pipeline::Export { properties, .. } = load_pipeline(&s, "exp1").await.unwrap() else { panic!() };
        assert_eq!(properties.registry, "127.0.0.1:5001", "replaced");
        // Refused by its checks: nothing stored.
        assert!(matches!(save_pipeline(&s, &export("exp2", "UPPER:BAD:PORT")).await, Err(PipelineError::Invalid(_))));
        assert_eq!(list_pipelines(&s).await.unwrap().len(), 1);
        delete_pipeline(&s, "exp1").await.unwrap();
        assert!(matches!(delete_pipeline(&s, "exp1").await, Err(PipelineError::NotFound(_))));
        assert!(matches!(load_pipeline(&s, "exp1").await, Err(PipelineError::NotFound(_))));
    }
}
