//! `TransferError`: what export, import and copy report, the category each error falls in, and the hint the CLI may add.

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

/// What the user can do about an error, in terms of the CLI's own options:
/// the library's messages never name a flag; the CLI adds [`Hint::cli_text`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hint {
    /// Replacing an existing blob is allowed only when asked for.
    Overwrite,
    /// Moving an existing tag is allowed only when asked for.
    OverwriteTags,
    /// More artifacts than the limit of one export.
    MaxArtifacts,
    /// The registry wants credentials.
    Credentials,
    /// A certificate that does not check: a private CA must be named.
    CaFile,
    /// A TLS failure with this host: a private CA, or a plain-HTTP registry.
    CaFileOrInsecure(String),
    /// This host answers without TLS: plain HTTP must be allowed for it.
    InsecureRegistry(String),
    /// A token service on this host over plain HTTP: it must be allowed as insecure.
    InsecureRealm(String),
    /// A storage URL with no SAS.
    Sas,
}

impl Hint {
    /// The hint as the `barge` CLI words it, to follow the message after "; ".
    pub fn cli_text(&self) -> String {
        match self {
            Hint::Overwrite => "pass --overwrite to replace it".into(),
            Hint::OverwriteTags => "pass --overwrite-tags to move it".into(),
            Hint::MaxArtifacts => "split the export or raise --max-artifacts".into(),
            Hint::Credentials => {
                "give credentials with --username and --password-stdin, docker login, or REGISTRY_AUTH_FILE".into()
            }
            Hint::CaFile => "for a private CA pass --ca-file".into(),
            Hint::CaFileOrInsecure(host) => {
                format!("for a private CA pass --ca-file, for a plain-HTTP registry --insecure-registry {host}")
            }
            Hint::InsecureRegistry(host) => {
                format!("if it is a plain-HTTP registry on a network you trust, pass --insecure-registry {host}")
            }
            Hint::InsecureRealm(host) => format!("if that network is trusted, pass --insecure-registry {host}"),
            Hint::Sas => "add one to the URL, AZURE_STORAGE_SAS_TOKEN or --sas-file".into(),
        }
    }

    /// `message` followed by the hint of the first `TransferError` in `chain`, if it has one:
    /// what the CLI prints (`with_hint(format!("{e:#}"), e.chain())` for an `anyhow::Error`).
    pub fn with_hint<'a>(message: String, chain: impl IntoIterator<Item = &'a (dyn std::error::Error + 'static)>) -> String {
        let hint = chain.into_iter().find_map(|c| c.downcast_ref::<TransferError>()).and_then(TransferError::hint);
        match hint {
            Some(h) => format!("{message}; {}", h.cli_text()),
            None => message,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error(transparent)]
    Bundle(#[from] BundleError),

    // Arguments that can never work as given.
    #[error("no artifacts given; name at least one (repo, repo:tag or repo@sha256:...)")]
    NoArtifacts,
    /// Every artifact name that does not parse, each with why.
    #[error("{}", .0.join("; "))]
    InvalidArtifacts(Vec<String>),
    #[error("{given} artifacts given, more than the limit of {limit}")]
    TooManyArtifacts { given: usize, limit: usize },
    /// A `--registry` value: the whole message.
    #[error("{0}")]
    InvalidRegistryAddress(String),
    /// A blob location or storage URL (never with its SAS): the whole message.
    #[error("{0}")]
    InvalidLocation(String),
    #[error("repository {repo:?}: {why}")]
    InvalidRepository { repo: String, why: String },
    /// A CA certificate file that is not PEM.
    #[error("{path} is not a PEM file of certificates: {why}")]
    InvalidCaFile { path: String, why: String },
    /// A docker config file (or one of its entries) that cannot be read as one.
    #[error("{0}")]
    InvalidDockerConfig(String),
    /// A storage account key (or the connection string that should hold one).
    #[error("{0}")]
    InvalidAccountKey(String),

    // What the source holds cannot be carried.
    #[error("{what} is larger than 4 MiB")]
    ManifestTooLarge { what: String },
    #[error("{what}: {why}")]
    InvalidManifest { what: String, why: String },
    #[error("index {index} nests deeper than {limit}")]
    IndexTooDeep { index: String, limit: usize },
    /// A file of an `oci:` layout (its `index.json`) that is not what it should be.
    #[error("{path} is not a valid OCI index: {why}")]
    InvalidLayout { path: String, why: String },
    /// A local blob location that is there but is not a file.
    #[error("{0} is not a regular file")]
    NotAFile(String),

    // Integrity.
    #[error("{what} {digest} from {source_name} does not match its digest (got {actual})")]
    WrongContent { what: &'static str, digest: Digest, actual: Digest, source_name: String },
    /// Content whose size is not the one its descriptor gives.
    #[error("{what} is {actual} bytes, its descriptor says {expected}")]
    WrongSize { what: String, expected: u64, actual: u64 },

    // Decided at the destination.
    #[error("{0} already exists")]
    Exists(String),
    #[error("tag {reference} already points to {existing}, not {wanted}")]
    TagExists { reference: String, existing: Digest, wanted: Digest },
    /// Something changed under an operation that depends on it staying the same (an ETag, a block list).
    #[error("{0}")]
    Changed(String),
    #[error("{0} not found")]
    NotFound(String),

    // Wrappers: the cause is part of the message, not a `source`, so a chain prints it once.
    #[error("artifact {name}: {error}")]
    Artifact { name: String, error: Box<TransferError> },
    /// The first artifact's failure, whose category and hint this keeps.
    #[error("no artifact could be exported; the first failure: {0}")]
    NothingExported(Box<TransferError>),

    // Credentials and permissions.
    #[error("permission denied: {0}")]
    Permission(String),
    #[error("{0}: the file system is read-only")]
    ReadOnly(String),
    /// A registry refused a request for lack of credentials (or of their rights).
    #[error("{host} refused access to {what}")]
    AccessDenied { host: String, what: String },
    /// A storage request refused, and the URL carries no SAS.
    #[error("{doing} {url}: access denied and no SAS was given")]
    NoSas { doing: String, url: String },
    #[error("{0}")]
    Auth(String),
    /// The TLS handshake with a registry failed.
    #[error("TLS with {host} failed ({cause})")]
    TlsFailed { host: String, cause: String },
    /// A registry's certificate that does not check against the trusted roots.
    #[error("{host} speaks TLS with a certificate that does not check ({cause})")]
    UntrustedCertificate { host: String, cause: String },
    /// Something answered without TLS where plain HTTP is not allowed.
    #[error("{host} does not speak TLS ({cause})")]
    NoTls { host: String, cause: String },
    /// A registry's token service over plain HTTP, where credentials may not go.
    #[error(
        "{host} asks for credentials to be sent to the token service {realm_host} over plain HTTP; barge sends them \
         over plain HTTP only to the registry's own host, where that host is loopback or allowed as insecure"
    )]
    PlainHttpRealm { host: String, realm_host: String },

    // Everything else.
    #[error("registry error: {0}")]
    Registry(String),
    #[error("storage error: {0}")]
    Storage(String),
    #[error("no space left writing {0}")]
    NoSpace(String),
    #[error("{context}: {error}")]
    Io { context: String, error: std::io::Error },
    /// A state barge itself should never reach.
    #[error("internal error: {0}")]
    Internal(&'static str),
}

pub type Result<T, E = TransferError> = std::result::Result<T, E>;

impl TransferError {
    pub fn category(&self) -> Category {
        use TransferError as E;
        match self {
            E::Bundle(b) if b.is_integrity() => Category::Integrity,
            E::Bundle(_) => Category::Other,
            E::Artifact { error, .. } | E::NothingExported(error) => error.category(),
            E::NoArtifacts
            | E::InvalidArtifacts(_)
            | E::TooManyArtifacts { .. }
            | E::InvalidRegistryAddress(_)
            | E::InvalidLocation(_)
            | E::InvalidRepository { .. }
            | E::InvalidCaFile { .. }
            | E::InvalidDockerConfig(_)
            | E::InvalidAccountKey(_)
            | E::ManifestTooLarge { .. }
            | E::InvalidManifest { .. }
            | E::IndexTooDeep { .. }
            | E::InvalidLayout { .. }
            | E::NotAFile(_)
            | E::Exists(_)
            | E::TagExists { .. } => Category::Usage,
            E::WrongContent { .. } | E::WrongSize { .. } => Category::Integrity,
            E::Permission(_)
            | E::ReadOnly(_)
            | E::AccessDenied { .. }
            | E::NoSas { .. }
            | E::Auth(_)
            | E::TlsFailed { .. }
            | E::UntrustedCertificate { .. }
            | E::NoTls { .. }
            | E::PlainHttpRealm { .. } => Category::Auth,
            E::NoSpace(_) => Category::NoSpace,
            E::NotFound(_) | E::Changed(_) | E::Registry(_) | E::Storage(_) | E::Io { .. } | E::Internal(_) => {
                Category::Other
            }
        }
    }

    /// What the user can do about it, if the CLI has an option for that.
    pub fn hint(&self) -> Option<Hint> {
        use TransferError as E;
        match self {
            E::Artifact { error, .. } | E::NothingExported(error) => error.hint(),
            E::TooManyArtifacts { .. } => Some(Hint::MaxArtifacts),
            E::Exists(_) => Some(Hint::Overwrite),
            E::TagExists { .. } => Some(Hint::OverwriteTags),
            E::AccessDenied { .. } => Some(Hint::Credentials),
            E::NoSas { .. } => Some(Hint::Sas),
            E::TlsFailed { host, .. } => Some(Hint::CaFileOrInsecure(host.clone())),
            E::UntrustedCertificate { .. } => Some(Hint::CaFile),
            E::NoTls { host, .. } => Some(Hint::InsecureRegistry(host.clone())),
            E::PlainHttpRealm { realm_host, .. } => Some(Hint::InsecureRealm(realm_host.clone())),
            _ => None,
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
