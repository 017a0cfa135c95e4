//! Offline `verify` of a bundle file: every rule of [`BundleCheck`], every blob's digest, in parallel.
//!
//! An uncompressed bundle is scanned header by header (seeking over data), then
//! its blobs are hashed on several threads with positioned reads. A zstd
//! bundle can only be read in order, so it is checked in one sequential pass.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::catalog::{expect_digest, BlobKind, Catalog};
use crate::check::{BundleCheck, Role};
use crate::digest::{Algorithm, Hasher};
use crate::tar::{padding, Headers, Step, BLOCK};
use crate::{BundleError, Digest};

const CHUNK: usize = 1 << 20;
/// The first bytes of a zstd frame.
pub const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Refuse the bundle unless the sha256 of the whole file is this.
    pub catalog_digest: Option<Digest>,
    /// Hashing threads; 0 means one per core.
    pub threads: usize,
}

#[derive(Debug)]
pub struct Verified {
    pub catalog: Catalog,
    /// The sha256 of the whole file, when it was computed (always for zstd,
    /// and when a catalog digest was given).
    pub catalog_digest: Option<Digest>,
    pub compressed: bool,
    pub file_size: u64,
}

/// Verify the bundle at `path`. `progress` is called with byte counts as they are hashed.
pub fn verify_file(
    path: &Path,
    opts: &VerifyOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Verified, BundleError> {
    let mut file = File::open(path)?;
    let file_size = file.metadata()?.len();
    let mut magic = [0u8; 4];
    let n = file.read(&mut magic)?;
    file.seek(SeekFrom::Start(0))?;
    if n == 4 && magic == ZSTD_MAGIC {
        return verify_zstd(file, file_size, opts, progress);
    }
    verify_plain(file, file_size, opts, progress)
}

struct Job {
    index: usize,
    offset: u64,
}

fn verify_plain(
    mut file: File,
    file_size: u64,
    opts: &VerifyOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Verified, BundleError> {
    // Pass 1: headers, metadata and manifests, in order, seeking over blob data.
    let mut check = BundleCheck::new();
    let mut headers = Headers::default();
    let mut pos = 0u64;
    let mut jobs = Vec::new();
    let mut block = [0u8; BLOCK];
    let read_block = |file: &mut File, pos: u64, block: &mut [u8; BLOCK]| -> Result<(), BundleError> {
        if pos + BLOCK as u64 > file_size {
            return Err(BundleError::Truncated(format!("it ends at byte {file_size}, inside the tar header at {pos}")));
        }
        file.read_exact_at(block, pos)?;
        Ok(())
    };
    loop {
        read_block(&mut file, pos, &mut block)?;
        pos += BLOCK as u64;
        match headers.feed(&block)? {
            Step::End => {
                read_block(&mut file, pos, &mut block)
                    .map_err(|_| BundleError::Truncated("the second end-of-archive block is missing".into()))?;
                if block.iter().any(|&b| b != 0) {
                    return Err(BundleError::Corrupt("the end-of-archive marker is damaged".into()));
                }
                pos += BLOCK as u64;
                break;
            }
            Step::Pax { size } => {
                let data = read_at(&file, pos, size, file_size)?;
                headers.feed_pax(&data)?;
                pos += size + padding(size) as u64;
            }
            Step::Entry(e) => {
                let end = pos + e.size + padding(e.size) as u64;
                if pos + e.size > file_size {
                    return Err(BundleError::Truncated(format!(
                        "entry {} needs {} bytes but the file ends {} bytes in",
                        e.name,
                        e.size,
                        file_size.saturating_sub(pos)
                    )));
                }
                match check.entry(&e)? {
                    Role::Dir => {}
                    Role::Meta(m) => {
                        let data = read_at(&file, pos, e.size, file_size)?;
                        check.meta(m, &data)?;
                    }
                    Role::Blob(i) => {
                        let blob = &check.catalog().expect("blobs follow the catalog").blobs[i];
                        if blob.kind == BlobKind::Manifest {
                            let data = read_at(&file, pos, e.size, file_size)?;
                            let mut h = blob.digest.hasher();
                            h.update(&data);
                            expect_digest(&blob.digest, h.finish())?;
                            check.manifest(i, &data)?;
                            progress(e.size);
                        } else {
                            jobs.push(Job { index: i, offset: pos });
                        }
                    }
                }
                pos = end;
            }
        }
    }
    // Anything after the end marker must be zero padding.
    if file_size > pos {
        let mut rest = vec![0u8; CHUNK];
        let mut at = pos;
        while at < file_size {
            let n = ((file_size - at) as usize).min(CHUNK);
            file.read_exact_at(&mut rest[..n], at)?;
            if rest[..n].iter().any(|&b| b != 0) {
                return Err(BundleError::Corrupt(format!("data after the end of the archive at byte {at}")));
            }
            at += n as u64;
        }
    }
    let catalog = check.finish()?;

    // Pass 2: hash blobs in parallel, largest first; the whole file too if asked.
    jobs.sort_by_key(|j| std::cmp::Reverse(catalog.blobs[j.index].size));
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)
    } else {
        opts.threads
    };
    let next = AtomicUsize::new(0);
    let first_error: Mutex<Option<BundleError>> = Mutex::new(None);
    let whole: Mutex<Option<Digest>> = Mutex::new(None);
    let want_whole = opts.catalog_digest.is_some();
    std::thread::scope(|s| {
        if want_whole {
            s.spawn(|| match hash_range(&file, 0, file_size, Algorithm::Sha256, &|_| {}) {
                Ok(d) => *whole.lock().unwrap() = Some(d),
                Err(e) => {
                    first_error.lock().unwrap().get_or_insert(e);
                }
            });
        }
        for _ in 0..threads {
            s.spawn(|| loop {
                if first_error.lock().unwrap().is_some() {
                    return;
                }
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = jobs.get(k) else { return };
                let blob = &catalog.blobs[job.index];
                let r = hash_range(&file, job.offset, blob.size, blob.digest.algorithm(), progress)
                    .and_then(|d| expect_digest(&blob.digest, d));
                if let Err(e) = r {
                    first_error.lock().unwrap().get_or_insert(e);
                    return;
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().unwrap() {
        return Err(e);
    }
    let catalog_digest = whole.into_inner().unwrap();
    if let (Some(expected), Some(actual)) = (&opts.catalog_digest, &catalog_digest) {
        if expected != actual {
            return Err(BundleError::CatalogDigestMismatch { expected: expected.clone(), actual: actual.clone() });
        }
    }
    Ok(Verified { catalog, catalog_digest, compressed: false, file_size })
}

fn read_at(file: &File, pos: u64, size: u64, file_size: u64) -> Result<Vec<u8>, BundleError> {
    if pos + size > file_size {
        return Err(BundleError::Truncated(format!("entry at byte {pos} runs past the end of the file")));
    }
    let mut data = vec![0u8; size as usize];
    file.read_exact_at(&mut data, pos)?;
    Ok(data)
}

fn hash_range(
    file: &File,
    offset: u64,
    size: u64,
    alg: Algorithm,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Digest, BundleError> {
    let mut h = Hasher::new(alg);
    let mut buf = vec![0u8; CHUNK];
    let mut done = 0u64;
    while done < size {
        let n = ((size - done) as usize).min(CHUNK);
        file.read_exact_at(&mut buf[..n], offset + done)?;
        h.update(&buf[..n]);
        progress(n as u64);
        done += n as u64;
    }
    Ok(h.finish())
}

/// A reader that hashes every byte that passes through it.
struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A zstd decoder whose errors say "bad data" rather than "IO failed".
struct Decoded<R>(R);

impl<R: Read> Read for Decoded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf).map_err(crate::decode_error)
    }
}

fn verify_zstd(
    file: File,
    file_size: u64,
    opts: &VerifyOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Verified, BundleError> {
    let mut raw =
        HashingReader { inner: BufReader::with_capacity(CHUNK, file), hasher: Hasher::new(Algorithm::Sha256) };
    let catalog = {
        let mut dec = Decoded(zstd::stream::read::Decoder::new(&mut raw).map_err(BundleError::Io)?);
        let c = read_sequential(&mut dec, progress)?;
        // Drain the rest of the frame so the file hash covers every byte.
        std::io::copy(&mut dec, &mut std::io::sink())?;
        c
    };
    std::io::copy(&mut raw, &mut std::io::sink())?;
    let actual = raw.hasher.finish();
    if let Some(expected) = &opts.catalog_digest {
        if expected != &actual {
            return Err(BundleError::CatalogDigestMismatch { expected: expected.clone(), actual });
        }
    }
    Ok(Verified { catalog, catalog_digest: Some(actual), compressed: true, file_size })
}

/// Check a bundle read strictly in order from `r` (a decompressed stream).
pub fn read_sequential(r: &mut dyn Read, progress: &(dyn Fn(u64) + Sync)) -> Result<Catalog, BundleError> {
    let mut check = BundleCheck::new();
    let mut headers = Headers::default();
    let mut block = [0u8; BLOCK];
    let mut buf = vec![0u8; CHUNK];
    loop {
        r.read_exact(&mut block)?;
        match headers.feed(&block)? {
            Step::End => {
                r.read_exact(&mut block)
                    .map_err(|_| BundleError::Truncated("the second end-of-archive block is missing".into()))?;
                break;
            }
            Step::Pax { size } => {
                let data = read_vec(r, size)?;
                headers.feed_pax(&data)?;
                skip(r, padding(size) as u64)?;
            }
            Step::Entry(e) => {
                match check.entry(&e)? {
                    Role::Dir => skip(r, e.size)?,
                    Role::Meta(m) => {
                        let data = read_vec(r, e.size)?;
                        check.meta(m, &data)?;
                    }
                    Role::Blob(i) => {
                        let blob = check.catalog().expect("blobs follow the catalog").blobs[i].clone();
                        if blob.kind == BlobKind::Manifest {
                            let data = read_vec(r, e.size)?;
                            let mut h = blob.digest.hasher();
                            h.update(&data);
                            expect_digest(&blob.digest, h.finish())?;
                            check.manifest(i, &data)?;
                        } else {
                            let mut h = blob.digest.hasher();
                            let mut left = e.size;
                            while left > 0 {
                                let n = (left as usize).min(CHUNK);
                                r.read_exact(&mut buf[..n])?;
                                h.update(&buf[..n]);
                                progress(n as u64);
                                left -= n as u64;
                            }
                            expect_digest(&blob.digest, h.finish())?;
                        }
                    }
                }
                skip(r, padding(e.size) as u64)?;
            }
        }
    }
    check.finish()
}

fn read_vec(r: &mut dyn Read, size: u64) -> Result<Vec<u8>, BundleError> {
    let mut v = vec![0u8; size as usize];
    r.read_exact(&mut v)?;
    Ok(v)
}

fn skip(r: &mut dyn Read, n: u64) -> Result<(), BundleError> {
    let copied = std::io::copy(&mut r.take(n), &mut std::io::sink())?;
    if copied != n {
        return Err(BundleError::Truncated("it ends in the middle of an entry".into()));
    }
    Ok(())
}
