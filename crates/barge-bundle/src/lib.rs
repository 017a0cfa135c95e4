//! The barge bundle format: the one file that carries artifacts across the gap.
//!
//! This crate does no network IO and has no async runtime: it defines the
//! checked types (`Digest`, `Reference`), the tar codec, the catalog, the rules
//! a bundle must follow (`BundleCheck`) and offline verification. See
//! `docs/bundle-format.md` for the on-disk contract.

pub mod catalog;
pub mod check;
mod digest;
mod error;
pub mod oci;
mod reference;
pub mod tar;
pub mod verify;

pub use catalog::{Artifact, Blob, BlobKind, Catalog};
pub use check::{BundleCheck, Meta, Role};
pub use digest::{Algorithm, Digest, DigestError, Hasher};
pub use error::{decode_error, BundleError};
pub use reference::{check_repository, check_tag, Reference, ReferenceError};
pub use verify::{verify_file, Verified, VerifyOptions, ZSTD_MAGIC};
