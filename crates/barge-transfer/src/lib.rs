//! Registries, blob stores, and the three operations built on them: export, copy, import.
//!
//! Each external system is one trait (`Registry`, `BlobStore`) with
//! implementations that share every code path above them. Progress goes out
//! through `Reporter`; nothing here prints.

#![forbid(unsafe_code)]
// Libraries report through return values and `Reporter`; only the CLI prints.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod bench;
mod copy;
mod error;
mod export;
mod import;
mod inspect;
mod inventory;
pub mod io;
mod outcome;
pub mod registry;
mod report;
mod secret;
mod set;
pub mod sign;
mod sink;
pub mod store;
pub mod temp;
mod verify;

pub use copy::{copy, copy_parts, CopyOptions, CopyReport, Overwrite};
pub use error::{Category, Hint, Result, TransferError};
pub use export::{
    check_limit, dry_run, export, parse_artifacts, DeltaSummary, ExportOptions, ExportPlan, ExportReport,
    PlannedArtifact, SharedBlob, DEFAULT_MAX_ARTIFACTS,
};
pub use import::{import, DeltaReport, ImportOptions, ImportReport, Map, Placement, PlatformIndex};
pub use inspect::{inspect, Inspected};
pub use inventory::{earlier_catalog, take_inventory, DeltaBase};
pub use outcome::{any_failed, ArtifactOutcome, Status};
pub use registry::{ConnectOptions, Credentials, RawManifest, Registry, RegistryAddr, Target};
pub use report::{Reporter, Silent};
pub use secret::Secret;
pub use set::{registry_key, requests_from_names, resolve as resolve_set, Entry, ExportRequest, SetFile, Sources};
pub use sign::{AllowedSigners, SignatureCheck, Signer, SigningKey};
pub use sink::Compression;
pub use store::{BlobInfo, BlobSink, BlobStore, BlobUrl, Expect, Location, Parts, StoreOptions};
pub use verify::verify;
