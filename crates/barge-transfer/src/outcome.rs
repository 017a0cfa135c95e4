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
    /// Import: where it was written in the target, `repository:tag` or
    /// `repository@digest` (another name than `artifact` under a prefix or a map).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    pub status: Status,
    /// The index in the bundle, when import wrote a new one of just the
    /// carried platforms (`digest` is then the new index's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewritten_from: Option<Digest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What the user can do about the failure, for the CLI to word.
    #[serde(skip)]
    pub hint: Option<crate::Hint>,
}

impl ArtifactOutcome {
    /// A transfer that worked (`Succeeded`) or had nothing to do (`Unchanged`).
    pub fn done(artifact: String, digest: Digest, status: Status) -> ArtifactOutcome {
        ArtifactOutcome {
            artifact,
            digest: Some(digest),
            target: None,
            status,
            rewritten_from: None,
            error: None,
            hint: None,
        }
    }

    pub fn failed(artifact: &str, error: &crate::TransferError) -> ArtifactOutcome {
        ArtifactOutcome {
            artifact: artifact.to_string(),
            digest: None,
            target: None,
            status: Status::Failed,
            rewritten_from: None,
            error: Some(error.to_string()),
            hint: error.hint(),
        }
    }
}

/// True when some artifacts failed (the caller exits with "partial success").
pub fn any_failed(outcomes: &[ArtifactOutcome]) -> bool {
    outcomes.iter().any(|o| o.status == Status::Failed)
}
