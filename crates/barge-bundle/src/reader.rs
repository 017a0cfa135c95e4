//! `Reader`: the one walk over a bundle's tar stream, sans-IO; `verify` and `import` drive it with their own IO.
//!
//! The reader owns the tar header parser and [`BundleCheck`]: it says what
//! comes next ([`Next`]) and takes what the driver read. Every rule (order,
//! padding, the end-of-archive marker, manifest digests, the closure of each
//! artifact) is applied here, so every reader of a bundle applies the same
//! rules. A driver only moves bytes: it reads header blocks and small data
//! whole, passes over padding, and reads or schedules each config and layer,
//! whose digest it checks itself (it may hash them in parallel or while
//! uploading them). After [`Next::Trailer`] the driver checks that only zeros
//! follow, to the end of the (decompressed) stream.

use std::io::Read;

use crate::catalog::{expect_digest, Blob, BlobKind, Catalog};
use crate::check::{BundleCheck, Meta, Role};
use crate::tar::{padding, Headers, Step, BLOCK};
use crate::BundleError;

/// What the driver must do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Read the next 512-byte block and pass it to [`Reader::header`].
    Header,
    /// Read `len` bytes whole and pass them to [`Reader::data`].
    Data { len: u64, what: Data },
    /// Pass over `len` bytes (tar padding or a directory's data), then call [`Reader::skipped`].
    Skip { len: u64 },
    /// Config or layer `catalog().blobs[index]` follows: read or schedule its
    /// `size` bytes, check them against its digest, then call [`Reader::blob_done`].
    Blob { index: usize },
    /// The archive has ended: only zeros may follow, to the end of the stream.
    /// Check that, then call [`Reader::finish`].
    Trailer,
}

/// What a [`Next::Data`] read is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Data {
    Pax,
    Meta(Meta),
    /// `catalog().blobs[i]`, a manifest: the reader checks its digest and what it names.
    Manifest(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    #[default]
    Header,
    /// The first zero block was read; the second must follow.
    SecondEnd,
    Data {
        len: u64,
        what: Data,
        pad: u64,
    },
    Skip(u64),
    Blob {
        index: usize,
        pad: u64,
    },
    Trailer,
}

#[derive(Debug, Default)]
pub struct Reader {
    headers: Headers,
    check: BundleCheck,
    state: State,
}

impl Reader {
    pub fn new() -> Reader {
        Reader::default()
    }

    pub fn next(&self) -> Next {
        match self.state {
            State::Header | State::SecondEnd => Next::Header,
            State::Data { len, what, .. } => Next::Data { len, what },
            State::Skip(len) => Next::Skip { len },
            State::Blob { index, .. } => Next::Blob { index },
            State::Trailer => Next::Trailer,
        }
    }

    /// The catalog, once it has been read and checked.
    pub fn catalog(&self) -> Option<&Catalog> {
        self.check.catalog()
    }

    /// The catalog's blob `index`, as named by [`Next::Blob`] or [`Data::Manifest`].
    pub fn blob(&self, index: usize) -> Option<&Blob> {
        self.catalog().and_then(|c| c.blobs.get(index))
    }

    /// A driver called the wrong method: a bug in barge, reported, never a panic.
    fn misuse(&self, got: &str) -> BundleError {
        BundleError::Corrupt(format!("bundle reader given {got} while it waits for {:?}", self.next()))
    }

    fn skip(len: u64) -> State {
        if len == 0 {
            State::Header
        } else {
            State::Skip(len)
        }
    }

    pub fn header(&mut self, block: &[u8; BLOCK]) -> Result<(), BundleError> {
        self.state = match self.state {
            State::SecondEnd if block.iter().any(|&b| b != 0) => {
                return Err(BundleError::Corrupt("the end-of-archive marker is damaged".into()))
            }
            State::SecondEnd => State::Trailer,
            State::Header => match self.headers.feed(block)? {
                Step::End => State::SecondEnd,
                Step::Pax { size } => State::Data { len: size, what: Data::Pax, pad: padding(size) as u64 },
                Step::Entry(e) => {
                    let pad = padding(e.size) as u64;
                    match self.check.entry(&e)? {
                        Role::Dir => Reader::skip(e.size + pad),
                        Role::Meta(m) => State::Data { len: e.size, what: Data::Meta(m), pad },
                        Role::Blob(i) if self.blob(i).is_some_and(|b| b.kind == BlobKind::Manifest) => {
                            State::Data { len: e.size, what: Data::Manifest(i), pad }
                        }
                        Role::Blob(i) => State::Blob { index: i, pad },
                    }
                }
            },
            _ => return Err(self.misuse("a header")),
        };
        Ok(())
    }

    pub fn data(&mut self, bytes: &[u8]) -> Result<(), BundleError> {
        let State::Data { len, what, pad } = self.state else {
            return Err(self.misuse("data"));
        };
        if bytes.len() as u64 != len {
            return Err(BundleError::Truncated("it ends in the middle of an entry".into()));
        }
        match what {
            Data::Pax => self.headers.feed_pax(bytes)?,
            Data::Meta(m) => self.check.meta(m, bytes)?,
            Data::Manifest(i) => self.check.manifest(i, bytes).map(drop)?,
        }
        self.state = Reader::skip(pad);
        Ok(())
    }

    pub fn skipped(&mut self) -> Result<(), BundleError> {
        if !matches!(self.state, State::Skip(_)) {
            return Err(self.misuse("a skip"));
        }
        self.state = State::Header;
        Ok(())
    }

    /// The driver has read blob `index` whole and checked its digest (or will
    /// have, before it trusts the result of [`Reader::finish`]).
    pub fn blob_done(&mut self) -> Result<(), BundleError> {
        let State::Blob { pad, .. } = self.state else {
            return Err(self.misuse("a blob"));
        };
        self.state = Reader::skip(pad);
        Ok(())
    }

    /// The stream has ended after the archive, with only zeros: every listed
    /// blob must have been seen and every artifact's closure must hold.
    pub fn finish(self) -> Result<Catalog, BundleError> {
        match self.state {
            State::Trailer => self.check.finish(),
            State::SecondEnd => Err(BundleError::Truncated("the second end-of-archive block is missing".into())),
            _ => Err(BundleError::Truncated("it ends in the middle of an entry".into())),
        }
    }
}

/// The IO half of a synchronous walk: how a driver reads, passes over and
/// checks the parts of a bundle.
pub trait Walk {
    /// Read exactly `buf.len()` bytes.
    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), BundleError>;
    /// Pass over `n` bytes.
    fn skip(&mut self, n: u64) -> Result<(), BundleError>;
    /// Read or schedule a config or layer and check its digest.
    fn blob(&mut self, index: usize, blob: &Blob) -> Result<(), BundleError>;
    /// Check that only zeros follow, to the end of the stream.
    fn trailer(&mut self) -> Result<(), BundleError>;
}

/// Drive a [`Reader`] over `src` to the end; returns the checked catalog.
pub fn walk(src: &mut dyn Walk) -> Result<Catalog, BundleError> {
    let mut reader = Reader::new();
    let mut block = [0u8; BLOCK];
    loop {
        match reader.next() {
            Next::Header => {
                src.read_exact(&mut block)?;
                reader.header(&block)?;
            }
            Next::Data { len, .. } => {
                let mut data = vec![0u8; len as usize];
                src.read_exact(&mut data)?;
                reader.data(&data)?;
            }
            Next::Skip { len } => {
                src.skip(len)?;
                reader.skipped()?;
            }
            Next::Blob { index } => {
                let blob = reader.blob(index).cloned().ok_or_else(|| BundleError::Corrupt("no such blob".into()))?;
                src.blob(index, &blob)?;
                reader.blob_done()?;
            }
            Next::Trailer => {
                src.trailer()?;
                return reader.finish();
            }
        }
    }
}

const CHUNK: usize = 1 << 20;

/// A bundle read strictly in order (a decompressed stream, a download):
/// every blob is hashed as it passes.
pub struct Sequential<'a, R: Read> {
    pub inner: R,
    pub progress: &'a (dyn Fn(u64) + Sync),
    buf: Vec<u8>,
}

impl<'a, R: Read> Sequential<'a, R> {
    pub fn new(inner: R, progress: &'a (dyn Fn(u64) + Sync)) -> Sequential<'a, R> {
        Sequential { inner, progress, buf: vec![0u8; CHUNK] }
    }
}

impl<R: Read> Walk for Sequential<'_, R> {
    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), BundleError> {
        Ok(self.inner.read_exact(buf)?)
    }

    fn skip(&mut self, n: u64) -> Result<(), BundleError> {
        let copied = std::io::copy(&mut (&mut self.inner).take(n), &mut std::io::sink())?;
        if copied != n {
            return Err(BundleError::Truncated("it ends in the middle of an entry".into()));
        }
        Ok(())
    }

    fn blob(&mut self, _: usize, blob: &Blob) -> Result<(), BundleError> {
        let mut h = blob.digest.hasher();
        let mut left = blob.size;
        while left > 0 {
            let n = (left as usize).min(CHUNK);
            self.inner.read_exact(&mut self.buf[..n])?;
            h.update(&self.buf[..n]);
            (self.progress)(n as u64);
            left -= n as u64;
        }
        expect_digest(&blob.digest, h.finish())
    }

    fn trailer(&mut self) -> Result<(), BundleError> {
        loop {
            let n = self.inner.read(&mut self.buf)?;
            if n == 0 {
                return Ok(());
            }
            if self.buf[..n].iter().any(|&b| b != 0) {
                return Err(BundleError::Corrupt("data after the end of the archive".into()));
            }
        }
    }
}
