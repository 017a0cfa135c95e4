//! The resources, shaped like ACR's: ExportPipeline, ImportPipeline, PipelineRun; parsed and checked without IO.

use serde::{Deserialize, Serialize};

use crate::PipelineError;

/// Names of pipelines and runs: what ACR allows (letters, digits, dashes; 5-50 for pipelines, up to 50 here for both).
pub fn check_name(kind: &str, name: &str) -> Result<(), PipelineError> {
    let ok = !name.is_empty()
        && name.len() <= 50
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if !ok {
        return Err(PipelineError::Invalid(format!(
            "{kind} name {name:?} must be 1-50 letters, digits, '-' or '_', starting with a letter or digit"
        )));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExportOption {
    OverwriteBlobs,
    ContinueOnErrors,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImportOption {
    OverwriteTags,
    DeleteSourceBlobOnSuccess,
    ContinueOnErrors,
}

/// Parse ACR option names for a pipeline of `kind`; an option of the other kind is named in the error.
pub fn parse_options<T: for<'de> Deserialize<'de>>(
    kind: &str,
    allowed: &str,
    names: &[String],
) -> Result<Vec<T>, PipelineError> {
    names
        .iter()
        .map(|n| {
            serde_json::from_value(serde_json::Value::String(n.clone())).map_err(|_| {
                PipelineError::Invalid(format!(
                    "option {n:?} does not belong to an {kind} pipeline (options: {allowed})"
                ))
            })
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum TriggerStatus {
    #[default]
    Enabled,
    Disabled,
}

/// Where the bundles go or come from, and where the SAS for it is read at run time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageRef {
    /// ACR's type name for a storage container.
    #[serde(rename = "type", default = "container_type")]
    pub kind: String,
    /// `https://ACCOUNT.blob.core.windows.net/CONTAINER` (or a local directory).
    pub uri: String,
    /// `env:NAME` or `file:PATH`: a reference to the SAS, never the SAS (ACR:
    /// keyVaultUri). Optional for a local directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_uri: Option<String>,
}

fn container_type() -> String {
    "AzureStorageBlobContainer".into()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceTrigger {
    pub status: TriggerStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Trigger {
    pub source_trigger: SourceTrigger,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportProperties {
    /// The registry artifacts are exported from (ACR: the registry the pipeline lives in).
    pub registry: String,
    pub target: StorageRef,
    #[serde(default)]
    pub options: Vec<ExportOption>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportProperties {
    pub registry: String,
    pub source: StorageRef,
    #[serde(default = "enabled")]
    pub trigger: Trigger,
    #[serde(default)]
    pub options: Vec<ImportOption>,
}

fn enabled() -> Trigger {
    Trigger { source_trigger: SourceTrigger { status: TriggerStatus::Enabled } }
}

/// A pipeline as stored and as `pipeline apply -f` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Pipeline {
    #[serde(rename = "exportPipelines")]
    Export { name: String, properties: ExportProperties },
    #[serde(rename = "importPipelines")]
    Import { name: String, properties: ImportProperties },
}

impl Pipeline {
    pub fn name(&self) -> &str {
        match self {
            Pipeline::Export { name, .. } | Pipeline::Import { name, .. } => name,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Pipeline::Export { .. } => "export",
            Pipeline::Import { .. } => "import",
        }
    }

    /// Parse a document as ACR shapes it; checks names, options and references.
    pub fn from_json(bytes: &[u8]) -> Result<Pipeline, PipelineError> {
        let v: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| PipelineError::Invalid(format!("pipeline document: {e}")))?;
        // Check option names first so that a misplaced one gets a clear message.
        let kind = v.get("type").and_then(|t| t.as_str()).unwrap_or_default().to_string();
        let names: Vec<String> = v
            .pointer("/properties/options")
            .and_then(|o| o.as_array())
            .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        match kind.as_str() {
            "exportPipelines" => drop(parse_options::<ExportOption>("export", EXPORT_OPTIONS, &names)?),
            "importPipelines" => drop(parse_options::<ImportOption>("import", IMPORT_OPTIONS, &names)?),
            other => {
                return Err(PipelineError::Invalid(format!(
                    "pipeline document has type {other:?}; it must be \"exportPipelines\" or \"importPipelines\""
                )))
            }
        }
        let p: Pipeline =
            serde_json::from_value(v).map_err(|e| PipelineError::Invalid(format!("pipeline document: {e}")))?;
        p.check()?;
        Ok(p)
    }

    pub fn check(&self) -> Result<(), PipelineError> {
        check_name("pipeline", self.name())?;
        let storage = match self {
            Pipeline::Export { properties, .. } => &properties.target,
            Pipeline::Import { properties, .. } => &properties.source,
        };
        if let Some(s) = &storage.secret_uri {
            crate::secret::SecretRef::parse(s)?;
        } else if storage.uri.starts_with("http") {
            return Err(PipelineError::Invalid(format!(
                "pipeline {} needs a secret reference (env:NAME or file:PATH) for {}",
                self.name(),
                storage.uri.split('?').next().unwrap_or_default()
            )));
        }
        if storage.uri.contains('?') {
            return Err(PipelineError::Invalid(format!(
                "pipeline {}: the storage URI must not carry a SAS; give a secret reference instead",
                self.name()
            )));
        }
        Ok(())
    }
}

pub const EXPORT_OPTIONS: &str = "OverwriteBlobs, ContinueOnErrors";
pub const IMPORT_OPTIONS: &str = "OverwriteTags, DeleteSourceBlobOnSuccess, ContinueOnErrors";

/// What a run asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRequest {
    pub pipeline_resource_id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<String>,
    /// Export: the blob written. Import: the blob read.
    pub blob: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_digest: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum RunStatus {
    #[default]
    Running,
    Succeeded,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    pub percentage: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct TriggerInfo {
    pub source_trigger: Option<TriggerTimestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct TriggerTimestamp {
    pub timestamp: String,
}

/// ACR's run response, plus a result per artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RunResponse {
    pub status: RunStatus,
    pub progress: Progress,
    pub start_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_time: Option<String>,
    #[serde(default)]
    pub imported_artifacts: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_digest: Option<String>,
    #[serde(default)]
    pub trigger: TriggerInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline_run_error_message: Option<String>,
    /// Per artifact: name, digest, status, error.
    #[serde(default)]
    pub artifacts: Vec<barge_transfer::ArtifactOutcome>,
    /// The process running it (`host:pid`), while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunProperties {
    pub request: RunRequest,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_update_tag: Option<String>,
    #[serde(default)]
    pub response: RunResponse,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineRun {
    pub name: String,
    pub properties: RunProperties,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acr_shaped_documents() {
        let doc = br#"{"type":"importPipelines","name":"imp1","properties":{"registry":"127.0.0.1:5000",
            "source":{"type":"AzureStorageBlobContainer","uri":"https://a.blob.core.windows.net/c","secretUri":"env:IMPORT_SAS"},
            "trigger":{"sourceTrigger":{"status":"Disabled"}},"options":["OverwriteTags","DeleteSourceBlobOnSuccess"]}}"#;
        let p = Pipeline::from_json(doc).unwrap();
        match &p {
            Pipeline::Import { properties, .. } => {
                assert_eq!(properties.trigger.source_trigger.status, TriggerStatus::Disabled);
                assert_eq!(
                    properties.options,
                    vec![ImportOption::OverwriteTags, ImportOption::DeleteSourceBlobOnSuccess]
                );
            }
            _ => panic!(),
        }
        let bad = br#"{"type":"importPipelines","name":"imp1","properties":{"registry":"r","source":{"uri":"x","secretUri":"env:A"},"options":["OverwriteBlobs"]}}"#;
        let e = Pipeline::from_json(bad).unwrap_err().to_string();
        assert!(e.contains("OverwriteBlobs") && e.contains("import"), "{e}");
        let secret = br#"{"type":"exportPipelines","name":"e1","properties":{"registry":"r","target":{"uri":"x","secretUri":"sv=2021&sig=abc"}}}"#;
        assert!(Pipeline::from_json(secret).is_err());
    }
}
