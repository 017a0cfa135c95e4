//! Per-artifact outcomes that export and import report, for ContinueOnErrors and the summary.

use barge_bundle::Digest;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// Transferred.
    Succeeded,
    /// Already there exactly as the bundle has it: nothing written.
    Unchanged,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactOutcome {
    /// The artifact as requested (export) or as named in the bundle (import).
    pub artifact: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ArtifactOutcome {
    pub fn failed(artifact: &str, error: &crate::TransferError) -> ArtifactOutcome {
        ArtifactOutcome {
            artifact: artifact.to_string(),
            digest: None,
            status: Status::Failed,
            error: Some(error.to_string()),
        }
    }
}

/// True when some artifacts failed (the caller exits with "partial success").
pub fn any_failed(outcomes: &[ArtifactOutcome]) -> bool {
    outcomes.iter().any(|o| o.status == Status::Failed)
}
