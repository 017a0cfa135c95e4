//! ACR's resource model on top of export, copy and import: pipelines, runs, their state, and the import trigger.

#![forbid(unsafe_code)]
// Libraries report through return values and `Reporter`; only the CLI prints.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod basis;
pub mod claim;
pub mod guard;
mod keyvault;
pub mod pipelines;
pub mod resource;
pub mod run;
pub mod secret;
pub mod state;
pub mod watch;

use barge_transfer::{Category, TransferError};
use serde::{Deserialize, Serialize};

pub use guard::Guard;
pub use resource::{Pipeline, PipelineRun, RunStatus};
pub use run::RunOptions;
pub use state::{default_dir, BlobState, Kind, StateStore};

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Secret(String),
    #[error("state store: {0}")]
    State(String),
    #[error(transparent)]
    Transfer(#[from] TransferError),
    /// A run finished as Failed: its record says why, and of which kind.
    #[error("run {run} failed: {message}")]
    Failed { run: String, message: String, kind: ErrorKind },
    /// What protected a run (the trigger's claim on it) was lost, so the run was stopped.
    #[error("{0}")]
    Lost(String),
}

/// What kind of fault failed a run: the same kinds, and so the same exit
/// codes, as `barge export` and `barge import` give for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ErrorKind {
    /// Content that does not match its digest, or a malformed bundle.
    Integrity,
    /// Credentials, permissions, a SAS that lacks a permission.
    Auth,
    /// A request that can never work as given.
    Usage,
    /// A full disk.
    NoSpace,
    /// Anything else.
    Other,
    /// Some artifacts failed (ContinueOnErrors).
    Partial,
}

impl From<Category> for ErrorKind {
    fn from(c: Category) -> ErrorKind {
        match c {
            Category::Usage => ErrorKind::Usage,
            Category::Integrity => ErrorKind::Integrity,
            Category::Auth => ErrorKind::Auth,
            Category::NoSpace => ErrorKind::NoSpace,
            Category::Other => ErrorKind::Other,
        }
    }
}

impl PipelineError {
    /// The kind of fault, whatever layer it came from.
    pub fn kind(&self) -> ErrorKind {
        match self {
            PipelineError::Invalid(_) => ErrorKind::Usage,
            PipelineError::Secret(_) => ErrorKind::Auth,
            PipelineError::Transfer(t) => t.category().into(),
            PipelineError::Failed { kind, .. } => *kind,
            PipelineError::NotFound(_) | PipelineError::Conflict(_) | PipelineError::State(_) => ErrorKind::Other,
            PipelineError::Lost(_) => ErrorKind::Other,
        }
    }
}
