//! The barge bundle format: the one file that carries artifacts across the gap.
//!
//! This crate does no network IO and has no async runtime: it defines the
//! checked types (`Digest`, `Reference`), the tar codec, the catalog, the rules
//! a bundle must follow (`BundleCheck`) and offline verification. See
//! `docs/bundle-format.md` for the on-disk contract.

#![forbid(unsafe_code)]
// Libraries report through return values and `Reporter`; only the CLI prints.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod catalog;
pub mod check;
mod closure;
mod digest;
mod error;
#[cfg(any(test, feature = "forge"))]
pub mod forge;
pub mod inventory;
pub mod layout;
pub mod oci;
pub mod platform;
pub mod reader;
mod reference;
pub mod summary;
pub mod tar;
pub mod verify;
pub mod zstd_frame;

pub use catalog::{Against, AgainstKind, Artifact, Blob, BlobKind, Catalog, Delta, Omitted};
pub use check::{BundleCheck, Meta, Role};
pub use digest::{Algorithm, Digest, DigestError, Hasher};
pub use error::{decode_error, BundleError};
pub use inventory::Inventory;
pub use platform::{Platform, PlatformError};
pub use reader::{Data, Next, Reader};
pub use reference::{
    check_registry, check_repository, check_tag, split_registry, FullReference, Reference, ReferenceError, DOCKER_HUB,
};
pub use summary::{Facts, Summary};
pub use verify::{verify_file, verify_reader, Verified, VerifyOptions};
pub use zstd_frame::ZSTD_MAGIC;
