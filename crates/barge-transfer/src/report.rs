//! `Reporter`: how the library tells its caller about progress; only the CLI draws anything.

/// Progress callbacks. Every method has an empty default, so a reporter
/// implements only what it shows.
pub trait Reporter: Send + Sync {
    /// A phase begins; `total` is its size in bytes when known.
    fn start(&self, _phase: &str, _total: Option<u64>) {}
    /// `bytes` more bytes of the current phase are done.
    fn advance(&self, _bytes: u64) {}
    /// A warning or a line worth telling the user (never a secret).
    fn note(&self, _message: &str) {}
    /// The current phase is over.
    fn finish(&self) {}
}

/// A reporter that shows nothing.
pub struct Silent;

impl Reporter for Silent {}
