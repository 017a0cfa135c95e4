//! `BundleError`: what can be wrong with a bundle, in the bundle layer's own words.

use crate::Digest;

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("bundle is truncated: {0}")]
    Truncated(String),
    #[error("unsafe entry {name:?} in bundle: {why}")]
    UnsafeEntry { name: String, why: String },
    #[error("entry {0:?} is not listed in the bundle's catalog")]
    Unlisted(String),
    #[error("entry {0:?} appears twice in the bundle")]
    Duplicate(String),
    #[error("blob {expected} does not match its digest (content hashes to {actual})")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("blob {digest} is {actual} bytes, the catalog says {expected}")]
    SizeMismatch { digest: Digest, expected: u64, actual: u64 },
    #[error("{what} {owner} refers to {missing}, which the bundle does not contain")]
    MissingBlob { what: &'static str, owner: String, missing: Digest },
    #[error("bundle digest is {actual}, but the catalogDigest given is {expected}")]
    CatalogDigestMismatch { expected: Digest, actual: Digest },
    #[error("bundle format version {0} is newer than this barge understands ({max}); upgrade barge", max = crate::catalog::FORMAT_VERSION)]
    UnsupportedVersion(u32),
    #[error("corrupt bundle: {0}")]
    Corrupt(String),
    #[error("reading bundle: {0}")]
    // Part of the message, not a `source`: a chain prints it once.
    Io(std::io::Error),
}

impl From<std::io::Error> for BundleError {
    fn from(e: std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::UnexpectedEof => BundleError::Truncated("it ends in the middle of an entry".into()),
            std::io::ErrorKind::InvalidData => BundleError::Corrupt(e.to_string()),
            _ => BundleError::Io(e),
        }
    }
}

/// Mark a decompressor's error as bad data (its own errors say "Other").
pub fn decode_error(e: std::io::Error) -> std::io::Error {
    match e.kind() {
        std::io::ErrorKind::Other | std::io::ErrorKind::InvalidData => {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("zstd stream: {e}"))
        }
        _ => e,
    }
}

impl BundleError {
    /// True when the bundle's content is wrong, as opposed to failing to read it.
    pub fn is_integrity(&self) -> bool {
        !matches!(self, BundleError::Io(_))
    }
}
