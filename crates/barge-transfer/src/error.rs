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
/// the library's messages never name a flag; the CLI words the hint.
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
    /// A registry that refuses a sparse index: write a new index of the carried platforms instead.
    PlatformIndexRewrite,
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
    #[error("{given} artifacts {}, more than the limit of {limit}", if *.from_set { "resolved from the set" } else { "given" })]
    TooManyArtifacts { given: usize, limit: usize, from_set: bool },
    /// A transfer set (file) that cannot be used: the whole message, naming the entry and field.
    #[error("{0}")]
    InvalidSet(String),
    /// Two artifacts of one export that would have one name in the bundle.
    #[error("{first} and {second} would both be {name} in the bundle (its names carry no registry)")]
    SameName { name: String, first: String, second: String },
    /// A `--registry` value: the whole message.
    #[error("{0}")]
    InvalidRegistryAddress(String),
    /// A blob location or storage URL (never with its SAS): the whole message.
    #[error("{0}")]
    InvalidLocation(String),
    #[error("repository {repo:?}: {why}")]
    InvalidRepository { repo: String, why: String },
    /// Where import would place an artifact (a map, a prefix, or the name they give): the whole message.
    #[error("{0}")]
    InvalidPlacement(String),
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
    /// A platform selection that keeps none of an index's platforms.
    #[error("index {index} has no manifest for {wanted}; it has {has}")]
    NoPlatform { index: String, wanted: String, has: String },

    // Integrity.
    #[error("{what} {digest} from {source_name} does not match its digest (got {actual})")]
    WrongContent { what: &'static str, digest: Digest, actual: Digest, source_name: String },
    /// Content whose size is not the one its descriptor gives.
    #[error("{what} is {actual} bytes, its descriptor says {expected}")]
    WrongSize { what: String, expected: u64, actual: u64 },
    /// A split bundle whose parts are not the ones its `parts.json` lists (missing, extra, resized, damaged).
    #[error("{0}")]
    BadPart(String),
    /// A delta bundle that leaves out blobs the target neither holds nor can
    /// mount from another of its repositories; `against` says what the delta
    /// was cut against.
    #[error(
        "the bundle is a delta cut against {against}, and the target lacks {} of the blobs it leaves out: {}; \
         import what the delta was cut against first, or a full bundle",
        .missing.len(),
        some_digests(.missing)
    )]
    MissingDependencies { against: String, missing: Vec<Digest> },

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
    /// A registry that refuses a manifest naming a manifest or blob it does not hold.
    #[error("{host} refused {what}: it names a manifest or blob that {host} does not hold")]
    ManifestBlobUnknown { host: String, what: String },
    /// A registry that refuses an index whose other platforms' manifests are absent.
    #[error(
        "{host} refuses index {index}: the bundle carries only some of its platforms (a sparse index) and {host} \
         takes an index only when every manifest it lists is there"
    )]
    SparseIndexRefused { host: String, index: String },

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
    #[error("no space left on the device: {0}")]
    NoSpace(String),
    #[error("{context}: {error}")]
    Io { context: String, error: std::io::Error },
    /// A signing key that cannot sign (unreadable, a passphrase, an agent without it): the whole message.
    #[error("{0}")]
    SigningKey(String),
    /// An allowed-signers file that cannot be used: the whole message, naming the line.
    #[error("{0}")]
    AllowedSigners(String),
    /// A bundle whose signature is required has none beside it.
    #[error("{0} is not signed: no signature beside it")]
    SignatureMissing(String),
    /// A signature that does not admit the bundle: who signed it (as far as known) and why it fails.
    #[error("the signature of {bundle} is refused: signed by {signer}: {why}")]
    SignatureRefused { bundle: String, signer: String, why: String },
    /// A state barge itself should never reach.
    #[error("internal error: {0}")]
    Internal(&'static str),
}

pub type Result<T, E = TransferError> = std::result::Result<T, E>;

/// How many digests a message lists before it says how many more there are.
const LISTED: usize = 10;

/// The first few digests, then "and N more".
fn some_digests(digests: &[Digest]) -> String {
    let shown: Vec<String> = digests.iter().take(LISTED).map(Digest::to_string).collect();
    match digests.len().saturating_sub(LISTED) {
        0 => shown.join(", "),
        more => format!("{} and {more} more", shown.join(", ")),
    }
}

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
            | E::InvalidSet(_)
            | E::SameName { .. }
            | E::InvalidRegistryAddress(_)
            | E::InvalidLocation(_)
            | E::InvalidRepository { .. }
            | E::InvalidPlacement(_)
            | E::InvalidCaFile { .. }
            | E::InvalidDockerConfig(_)
            | E::InvalidAccountKey(_)
            | E::ManifestTooLarge { .. }
            | E::InvalidManifest { .. }
            | E::IndexTooDeep { .. }
            | E::InvalidLayout { .. }
            | E::NotAFile(_)
            | E::NoPlatform { .. }
            | E::SparseIndexRefused { .. }
            | E::Exists(_)
            | E::SigningKey(_)
            | E::AllowedSigners(_)
            | E::TagExists { .. } => Category::Usage,
            E::WrongContent { .. }
            | E::WrongSize { .. }
            | E::BadPart(_)
            | E::MissingDependencies { .. }
            | E::SignatureMissing(_)
            | E::SignatureRefused { .. } => Category::Integrity,
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
            E::NotFound(_)
            | E::ManifestBlobUnknown { .. }
            | E::Changed(_)
            | E::Registry(_)
            | E::Storage(_)
            | E::Io { .. }
            | E::Internal(_) => Category::Other,
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
            E::SparseIndexRefused { .. } => Some(Hint::PlatformIndexRewrite),
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

    /// The position of each variant in [`every_variant`]: exhaustive, so a new
    /// variant does not compile until it has a place, and the table below
    /// fails until it has a row.
    fn variant_index(e: &TransferError) -> usize {
        use TransferError as E;
        match e {
            E::Bundle(_) => 0,
            E::NoArtifacts => 1,
            E::InvalidArtifacts(_) => 2,
            E::TooManyArtifacts { .. } => 3,
            E::InvalidRegistryAddress(_) => 4,
            E::InvalidLocation(_) => 5,
            E::InvalidRepository { .. } => 6,
            E::InvalidCaFile { .. } => 7,
            E::InvalidDockerConfig(_) => 8,
            E::InvalidAccountKey(_) => 9,
            E::ManifestTooLarge { .. } => 10,
            E::InvalidManifest { .. } => 11,
            E::IndexTooDeep { .. } => 12,
            E::InvalidLayout { .. } => 13,
            E::NotAFile(_) => 14,
            E::WrongContent { .. } => 15,
            E::WrongSize { .. } => 16,
            E::Exists(_) => 17,
            E::TagExists { .. } => 18,
            E::Changed(_) => 19,
            E::NotFound(_) => 20,
            E::Artifact { .. } => 21,
            E::NothingExported(_) => 22,
            E::Permission(_) => 23,
            E::ReadOnly(_) => 24,
            E::AccessDenied { .. } => 25,
            E::NoSas { .. } => 26,
            E::Auth(_) => 27,
            E::TlsFailed { .. } => 28,
            E::UntrustedCertificate { .. } => 29,
            E::NoTls { .. } => 30,
            E::PlainHttpRealm { .. } => 31,
            E::Registry(_) => 32,
            E::Storage(_) => 33,
            E::NoSpace(_) => 34,
            E::Io { .. } => 35,
            E::Internal(_) => 36,
            E::InvalidSet(_) => 37,
            E::SameName { .. } => 38,
            E::InvalidPlacement(_) => 39,
            E::NoPlatform { .. } => 40,
            E::ManifestBlobUnknown { .. } => 41,
            E::SparseIndexRefused { .. } => 42,
            E::MissingDependencies { .. } => 43,
            E::BadPart(_) => 44,
            E::SigningKey(_) => 45,
            E::AllowedSigners(_) => 46,
            E::SignatureMissing(_) => 47,
            E::SignatureRefused { .. } => 48,
        }
    }
    const VARIANTS: usize = 49;

    /// One error of every variant (two of the wrappers and of `Bundle`), its category and hint.
    fn every_variant() -> Vec<(TransferError, Category, Option<Hint>)> {
        use Category::*;
        use TransferError as E;
        let d = Digest::sha256_of(b"a");
        let d2 = Digest::sha256_of(b"b");
        let host = "reg.example:5000".to_string();
        let s = |t: &str| t.to_string();
        let denied = || E::AccessDenied { host: host.clone(), what: s("manifest a/b:1") };
        vec![
            (E::Bundle(BundleError::Corrupt(s("x"))), Integrity, None),
            (E::Bundle(BundleError::Io(std::io::Error::other("x"))), Other, None),
            (E::NoArtifacts, Usage, None),
            (E::InvalidArtifacts(vec![s("Bad/Name: lowercase"), s("x:: no")]), Usage, None),
            (E::TooManyArtifacts { given: 51, limit: 50, from_set: false }, Usage, Some(Hint::MaxArtifacts)),
            (E::TooManyArtifacts { given: 51, limit: 50, from_set: true }, Usage, Some(Hint::MaxArtifacts)),
            (E::InvalidSet(s("set.yaml: artifacts[1].tagPattern: unclosed group")), Usage, None),
            (E::SameName { name: s("a/b:1"), first: s("r1/a/b:1"), second: s("r2/a/b:1") }, Usage, None),
            (E::InvalidRegistryAddress(s("registry \"a/b\" is neither")), Usage, None),
            (E::InvalidLocation(s("https://x/c: no container")), Usage, None),
            (E::InvalidRepository { repo: s("A"), why: s("lowercase") }, Usage, None),
            (E::InvalidPlacement(s("map \"a=B\": the destination \"B\": lowercase")), Usage, None),
            (E::InvalidCaFile { path: s("/ca.pem"), why: s("no PEM") }, Usage, None),
            (E::InvalidDockerConfig(s("config.json is not a valid docker config")), Usage, None),
            (E::InvalidAccountKey(s("the key is not base64")), Usage, None),
            (E::ManifestTooLarge { what: s("manifest a:1 on reg") }, Usage, None),
            (E::InvalidManifest { what: s("manifest x in a"), why: s("not JSON") }, Usage, None),
            (E::IndexTooDeep { index: s("x in a"), limit: 4 }, Usage, None),
            (E::InvalidLayout { path: s("/l/index.json"), why: s("EOF") }, Usage, None),
            (E::NotAFile(s("/tmp")), Usage, None),
            (
                E::WrongContent { what: "blob", digest: d.clone(), actual: d2.clone(), source_name: s("r") },
                Integrity,
                None,
            ),
            (E::WrongSize { what: s("blob x"), expected: 1, actual: 2 }, Integrity, None),
            (E::BadPart(s("part b.part0002 of b.parts.json is missing")), Integrity, None),
            (E::Exists(s("/b")), Usage, Some(Hint::Overwrite)),
            (
                E::TagExists { reference: s("a:1"), existing: d.clone(), wanted: d2.clone() },
                Usage,
                Some(Hint::OverwriteTags),
            ),
            (E::Changed(s("/b changed since it was read; not deleted")), Other, None),
            (E::NotFound(s("manifest a:1")), Other, None),
            (denied().for_artifact("a/b:1"), Auth, Some(Hint::Credentials)),
            (E::Exists(s("/b")).for_artifact("a/b:1"), Usage, Some(Hint::Overwrite)),
            (E::NothingExported(Box::new(denied().for_artifact("a/b:1"))), Auth, Some(Hint::Credentials)),
            (E::NothingExported(Box::new(E::NotFound(s("a:1")))), Other, None),
            (E::Permission(s("writing /x")), Auth, None),
            (E::ReadOnly(s("writing /x")), Auth, None),
            (denied(), Auth, Some(Hint::Credentials)),
            (E::NoSas { doing: s("reading"), url: s("https://a.blob.core.windows.net/c/b") }, Auth, Some(Hint::Sas)),
            (E::Auth(s("the SAS expired")), Auth, None),
            (E::TlsFailed { host: host.clone(), cause: s("eof") }, Auth, Some(Hint::CaFileOrInsecure(host.clone()))),
            (E::UntrustedCertificate { host: host.clone(), cause: s("unknown issuer") }, Auth, Some(Hint::CaFile)),
            (E::NoTls { host: host.clone(), cause: s("bad record") }, Auth, Some(Hint::InsecureRegistry(host.clone()))),
            (
                E::PlainHttpRealm { host: host.clone(), realm_host: s("auth.lan:80") },
                Auth,
                Some(Hint::InsecureRealm(s("auth.lan:80"))),
            ),
            (E::Registry(s("reg answered HTTP 500")), Other, None),
            (E::Storage(s("writing x: HTTP 500")), Other, None),
            (E::NoSpace(s("/b")), NoSpace, None),
            (E::Io { context: s("reading /x"), error: std::io::Error::other("x") }, Other, None),
            (E::Internal("a temporary file was committed twice"), Other, None),
            (
                E::NoPlatform {
                    index: s("sha256:x in a"),
                    wanted: s("linux/s390x"),
                    has: s("linux/amd64, linux/arm64"),
                },
                Usage,
                None,
            ),
            (E::ManifestBlobUnknown { host: host.clone(), what: s("manifest a@sha256:x") }, Other, None),
            (
                E::SparseIndexRefused { host: host.clone(), index: s("a@sha256:x") },
                Usage,
                Some(Hint::PlatformIndexRewrite),
            ),
            (
                E::MissingDependencies { against: s("bundle whose catalog is sha256:x"), missing: vec![d.clone()] },
                Integrity,
                None,
            ),
            (E::SigningKey(s("signing key k: has a passphrase")), Usage, None),
            (E::AllowedSigners(s("f line 1: no key")), Usage, None),
            (E::SignatureMissing(s("b.tar")), Integrity, None),
            (E::SignatureRefused { bundle: s("b.tar"), signer: s("key SHA256:x"), why: s("unknown") }, Integrity, None),
            (
                E::SparseIndexRefused { host: host.clone(), index: s("a@sha256:x") }.for_artifact("a:1"),
                Usage,
                Some(Hint::PlatformIndexRewrite),
            ),
        ]
    }

    #[test]
    fn every_variant_has_its_category_and_hint_and_names_no_flag() {
        let table = every_variant();
        let mut seen = [false; VARIANTS];
        for (e, category, hint) in &table {
            seen[variant_index(e)] = true;
            assert_eq!(e.category(), *category, "{e}");
            assert_eq!(e.hint(), *hint, "{e}");
            let text = e.to_string();
            assert!(!text.contains("--"), "a library message names a flag: {text}");
            assert!(!text.contains('\n'), "{text}");
        }
        let missing: Vec<usize> = (0..VARIANTS).filter(|i| !seen[*i]).collect();
        assert!(missing.is_empty(), "variants without a row: {missing:?}");
    }

    /// Each hint in the CLI's words: the phrase the library's messages used to end with.
    /// The hint survives however many wrappers carry the error.
    #[test]
    fn a_wrapped_error_keeps_its_hint() {
        let e = TransferError::NothingExported(Box::new(
            TransferError::AccessDenied { host: "h:1".into(), what: "manifest a/b:1".into() }.for_artifact("a/b:1"),
        ));
        assert_eq!(e.hint(), Some(Hint::Credentials));
        assert_eq!(
            e.to_string(),
            "no artifact could be exported; the first failure: artifact a/b:1: h:1 refused access to manifest a/b:1"
        );
        assert_eq!(TransferError::NotFound("x".into()).hint(), None);
    }

    /// A refused delta lists the first ten missing digests and counts the rest.
    #[test]
    fn missing_dependencies_are_listed_ten_at_most() {
        let missing: Vec<Digest> = (0..12u8).map(|i| Digest::sha256_of(&[i])).collect();
        let against = "inventory sha256:x of reg:5000 taken 2026-11-30T00:00:00Z".to_string();
        let e = TransferError::MissingDependencies { against: against.clone(), missing: missing.clone() };
        let text = e.to_string();
        assert!(text.contains(&against), "{text}");
        assert!(text.contains("lacks 12 of the blobs"), "{text}");
        assert!(text.contains(&missing[9].to_string()) && !text.contains(&missing[10].to_string()), "{text}");
        assert!(text.contains("and 2 more"), "{text}");
        let two = TransferError::MissingDependencies { against, missing: missing[..2].to_vec() }.to_string();
        assert!(two.contains(&format!("{}, {};", missing[0], missing[1])), "{two}");
    }

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
