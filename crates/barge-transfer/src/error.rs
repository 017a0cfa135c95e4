//! `TransferError`: what export, import and copy report, and the category each error falls in.

use barge_bundle::{BundleError, Digest};

/// The kind of failure, which the CLI turns into an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    /// Bad arguments or input that can never work as given.
    Usage,
    /// Content that does not match its digest, or a malformed bundle.
    Integrity,
    /// Credentials or permissions.
    Auth,
    /// The disk is full.
    NoSpace,
    /// Anything else (a missing artifact, an IO failure).
    Other,
}

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error("{0}")]
    Usage(String),
    #[error("{given} artifacts given, more than the limit of {limit}; split the export or raise --max-artifacts")]
    TooManyArtifacts { given: usize, limit: usize },
    #[error("{0} already exists; pass --overwrite to replace it")]
    Exists(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("tag {reference} already points to {existing}, not {wanted}; pass --overwrite-tags to move it")]
    TagExists { reference: String, existing: Digest, wanted: Digest },
    #[error("{what} {digest} from {source_name} does not match its digest (got {actual})")]
    WrongContent { what: &'static str, digest: Digest, actual: Digest, source_name: String },
    // The cause is part of the message, not a `source`: a chain prints it once.
    #[error("artifact {name}: {error}")]
    Artifact { name: String, error: Box<TransferError> },
    #[error("no artifact could be exported; the first failure: {0}")]
    NothingExported(Box<TransferError>),
    #[error("permission denied: {0}")]
    Permission(String),
    #[error("{0}: the file system is read-only")]
    ReadOnly(String),
    #[error("{0}")]
    Auth(String),
    #[error("{0}")]
    Tls(String),
    #[error("registry error: {0}")]
    Registry(String),
    #[error("storage error: {0}")]
    Storage(String),
    #[error("{0}")]
    Changed(String),
    #[error("no space left writing {0}")]
    NoSpace(String),
    #[error("{context}: {error}")]
    Io { context: String, error: std::io::Error },
}

pub type Result<T, E = TransferError> = std::result::Result<T, E>;

impl TransferError {
    pub fn category(&self) -> Category {
        match self {
            TransferError::Bundle(b) if b.is_integrity() => Category::Integrity,
            TransferError::Bundle(_) => Category::Other,
            TransferError::Usage(_) | TransferError::TooManyArtifacts { .. } => Category::Usage,
            TransferError::Exists(_) | TransferError::TagExists { .. } => Category::Usage,
            TransferError::WrongContent { .. } => Category::Integrity,
            TransferError::Artifact { error, .. } | TransferError::NothingExported(error) => error.category(),
            TransferError::Permission(_)
            | TransferError::ReadOnly(_)
            | TransferError::Auth(_)
            | TransferError::Tls(_) => Category::Auth,
            TransferError::NoSpace(_) => Category::NoSpace,
            TransferError::NotFound(_)
            | TransferError::Io { .. }
            | TransferError::Registry(_)
            | TransferError::Storage(_)
            | TransferError::Changed(_) => Category::Other,
        }
    }

    /// Wrap an IO error with what was being done, sorting out full disks and
    /// permissions. An error that a byte stream carried up from a lower layer
    /// (see [`TransferError::into_io`]) comes back as it was, its category kept.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> TransferError {
        let source = match source.downcast::<TransferError>() {
            Ok(carried) => return carried,
            Err(source) => source,
        };
        let context = context.into();
        match source.kind() {
            std::io::ErrorKind::StorageFull => TransferError::NoSpace(context),
            std::io::ErrorKind::PermissionDenied => TransferError::Permission(context),
            // EROFS is a permission of the mount, not of the file: the same category as EACCES.
            std::io::ErrorKind::ReadOnlyFilesystem => TransferError::ReadOnly(context),
            std::io::ErrorKind::UnexpectedEof => {
                TransferError::Bundle(BundleError::Truncated(format!("{context}: the data ends early")))
            }
            std::io::ErrorKind::InvalidData => {
                TransferError::Bundle(BundleError::Corrupt(format!("{context}: {source}")))
            }
            _ => TransferError::Io { context, error: source },
        }
    }

    /// Carry this error through a byte stream, to be taken out again by [`TransferError::io`].
    pub fn into_io(self) -> std::io::Error {
        std::io::Error::other(self)
    }

    pub fn for_artifact(self, name: &str) -> TransferError {
        TransferError::Artifact { name: name.to_string(), error: Box::new(self) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_file_system_is_a_permission_problem() {
        let erofs = std::io::Error::from_raw_os_error(30); // EROFS on Linux
        assert_eq!(erofs.kind(), std::io::ErrorKind::ReadOnlyFilesystem);
        let e = TransferError::io("writing /mnt/ro/bundle", erofs);
        assert_eq!(e.category(), Category::Auth);
        assert_eq!(e.to_string(), "writing /mnt/ro/bundle: the file system is read-only");
        let eacces = TransferError::io("writing /x", std::io::Error::from_raw_os_error(13));
        assert_eq!(eacces.category(), e.category());
        // Carried through a byte stream, it keeps its category.
        let carried =
            TransferError::io("outer", TransferError::io("inner", std::io::Error::from_raw_os_error(30)).into_io());
        assert_eq!(carried.category(), Category::Auth);
    }
}
