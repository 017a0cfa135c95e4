//! ACR's resource model on top of export, copy and import: pipelines, runs, their state, and the import trigger.

#![forbid(unsafe_code)]
// Libraries report through return values and `Reporter`; only the CLI prints.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod resource;
pub mod run;
pub mod secret;
pub mod state;
pub mod watch;

use barge_transfer::TransferError;

pub use resource::{Pipeline, PipelineRun, RunStatus};
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
}
