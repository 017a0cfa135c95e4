//! Offline `verify` of a bundle: every rule of the bundle [`Reader`], every blob's digest; in parallel for a plain file.
//!
//! An uncompressed file is walked header by header (seeking over data), then
//! its blobs are hashed on several threads with positioned reads. A zstd file,
//! or any stream (a download), can only be read in order, so it is walked in
//! one sequential pass ([`verify_reader`]). Both apply the same reader.
//!
//! Where a cached plain file's time goes (measured, `benches/local.py`): about
//! three quarters in sha256 itself (`sha2`'s SHA-NI code runs at `openssl speed
//! -evp sha256`'s one-core rate), most of the rest in the kernel's copy from the
//! page cache into the read buffer. That copy is kept cheap by reading 256 KiB
//! at a time into one buffer per thread, reused, so the bytes the hash reads are
//! still in the core's L2 cache (per CPU-second, 1 MiB reads measured about 3%
//! slower, 2 MiB about 5%; a memory map about 20% slower: the hash then waits
//! on DRAM). One sha256 stream leaves the SHA unit idle between dependent
//! rounds, so each thread hashes two blobs at once (`barge_sha::update_two`,
//! interleaved SHA-NI), which lifts the bytes hashed per CPU-second.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::catalog::{expect_digest, Blob, Catalog};
use crate::digest::{Algorithm, Hasher};
use crate::reader::{walk, Sequential, Walk};
use crate::zstd_frame::{self, MAX_WINDOW_LOG, ZSTD_MAGIC};
use crate::{BundleError, Digest};

const CHUNK: usize = 1 << 20;

/// The read size when hashing a plain file by position (a multiple of 64, the
/// sha256 block): buffers and hash states fit in one core's L2 cache. Memory
/// is `threads × 2 × READ` (two lanes a thread).
const READ: usize = 256 << 10;

/// The blobs a delta leaves out that `held` (an inventory's blobs) does not
/// name: the dependencies that inventory does not satisfy. Pure.
pub fn unmet<'a, V>(catalog: &'a Catalog, held: &std::collections::BTreeMap<Digest, V>) -> Vec<&'a Blob> {
    catalog.omitted().iter().map(|o| &o.blob).filter(|b| !held.contains_key(&b.digest)).collect()
}

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
    /// The sha256 of the whole file, when it was computed (always for a
    /// stream or zstd, and when a catalog digest was given).
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
    let file = File::open(path)?;
    let file_size = file.metadata()?.len();
    let mut magic = [0u8; 4];
    let n = file.read_at(&mut magic, 0)?;
    if n == 4 && magic == ZSTD_MAGIC {
        return verify_reader(file, opts, progress);
    }
    verify_plain(file, file_size, opts, progress)
}

/// Verify a bundle read once, in order, from `r` (zstd or plain): the whole
/// stream is hashed for its catalogDigest as it passes.
pub fn verify_reader(
    r: impl Read,
    opts: &VerifyOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Verified, BundleError> {
    let mut raw = BufReader::with_capacity(CHUNK, Counted { inner: r, hasher: Hasher::new(Algorithm::Sha256), n: 0 });
    let head = raw.fill_buf()?;
    let compressed = head.starts_with(&ZSTD_MAGIC);
    let catalog = if compressed {
        zstd_frame::check_window(head)?;
        let mut dec = zstd::stream::read::Decoder::with_buffer(raw)?.single_frame();
        dec.window_log_max(MAX_WINDOW_LOG)?;
        let mut seq = Sequential::new(Decoded(dec), progress);
        let catalog = walk(&mut seq)?;
        raw = seq.inner.0.finish();
        if !raw.fill_buf()?.is_empty() {
            return Err(BundleError::Corrupt("data after the end of the zstd frame".into()));
        }
        catalog
    } else {
        let mut seq = Sequential::new(&mut raw, progress);
        walk(&mut seq)?
    };
    let counted = raw.into_inner();
    let actual = counted.hasher.finish();
    if let Some(expected) = opts.catalog_digest.as_ref().filter(|e| **e != actual) {
        return Err(BundleError::CatalogDigestMismatch { expected: expected.clone(), actual });
    }
    Ok(Verified { catalog, catalog_digest: Some(actual), compressed, file_size: counted.n })
}

/// Reads a plain file by position: headers and small data as the walk asks,
/// configs and layers only noted, to be hashed in parallel afterwards.
struct Positioned<'a> {
    file: &'a File,
    pos: u64,
    size: u64,
    jobs: Vec<Job>,
}

struct Job {
    index: usize,
    offset: u64,
}

impl Positioned<'_> {
    fn advance(&mut self, n: u64) -> Result<u64, BundleError> {
        let at = self.pos;
        if at.saturating_add(n) > self.size {
            return Err(BundleError::Truncated(format!(
                "an entry at byte {at} needs {n} bytes, but the file ends at byte {}",
                self.size
            )));
        }
        self.pos += n;
        Ok(at)
    }
}

impl Walk for Positioned<'_> {
    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), BundleError> {
        let at = self.advance(buf.len() as u64)?;
        Ok(self.file.read_exact_at(buf, at)?)
    }

    fn skip(&mut self, n: u64) -> Result<(), BundleError> {
        self.advance(n).map(drop)
    }

    fn blob(&mut self, index: usize, blob: &Blob) -> Result<(), BundleError> {
        let offset = self.advance(blob.size)?;
        self.jobs.push(Job { index, offset });
        Ok(())
    }

    fn trailer(&mut self) -> Result<(), BundleError> {
        let mut rest = vec![0u8; CHUNK.min((self.size - self.pos) as usize)];
        while self.pos < self.size {
            let n = ((self.size - self.pos) as usize).min(CHUNK);
            self.file.read_exact_at(&mut rest[..n], self.pos)?;
            if rest[..n].iter().any(|&b| b != 0) {
                return Err(BundleError::Corrupt(format!("data after the end of the archive at byte {}", self.pos)));
            }
            self.pos += n as u64;
        }
        Ok(())
    }
}

fn verify_plain(
    file: File,
    file_size: u64,
    opts: &VerifyOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Verified, BundleError> {
    // Pass 1: headers, metadata and manifests, in order, seeking over blob data.
    let mut walker = Positioned { file: &file, pos: 0, size: file_size, jobs: Vec::new() };
    let catalog = walk(&mut walker)?;
    let mut jobs = walker.jobs;

    // Pass 2: hash blobs in parallel, largest first; the whole file too if asked.
    jobs.sort_by_key(|j| std::cmp::Reverse(catalog.blobs[j.index].size));
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)
    } else {
        opts.threads
    };
    let catalog_digest =
        hash_blobs(&file, file_size, &catalog, &jobs, threads, opts.catalog_digest.is_some(), progress)?;
    if let (Some(expected), Some(actual)) = (&opts.catalog_digest, &catalog_digest) {
        if expected != actual {
            return Err(BundleError::CatalogDigestMismatch { expected: expected.clone(), actual: actual.clone() });
        }
    }
    Ok(Verified { catalog, catalog_digest, compressed: false, file_size })
}

/// Pass 2 of a plain file: every blob of `jobs` (largest first) hashed and
/// checked on `threads` threads, and the whole file's sha256 when `want_whole`.
fn hash_blobs(
    file: &File,
    file_size: u64,
    catalog: &Catalog,
    jobs: &[Job],
    threads: usize,
    want_whole: bool,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Option<Digest>, BundleError> {
    // The whole file's sha256 is one sequential stream, as long as all the
    // blobs together: it takes a thread of its own, and the blobs the others,
    // so no more threads run than were asked for (on two cores: one each).
    let blob_threads = if want_whole { threads.saturating_sub(1).max(1) } else { threads.max(1) };
    let next = AtomicUsize::new(0);
    // The first failure is kept; the other threads see `stop` and give up.
    let first_error: Mutex<Option<BundleError>> = Mutex::new(None);
    let stop = AtomicBool::new(false);
    let fail = |e: BundleError| {
        first_error.lock().unwrap().get_or_insert(e);
        stop.store(true, Ordering::Relaxed);
    };
    let whole: Mutex<Option<Digest>> = Mutex::new(None);
    std::thread::scope(|s| {
        if want_whole {
            s.spawn(|| {
                let mut buf = vec![0u8; READ];
                match hash_range(file, 0, file_size, Algorithm::Sha256, &mut buf, &|_| {}, &stop) {
                    Ok(d) => *whole.lock().unwrap() = d,
                    Err(e) => fail(e),
                }
            });
        }
        for _ in 0..blob_threads {
            s.spawn(|| {
                let queue = Queue { file, catalog, jobs, next: &next, progress, stop: &stop };
                queue.hash_in_two_lanes().unwrap_or_else(fail);
            });
        }
    });
    if let Some(e) = first_error.into_inner().unwrap() {
        return Err(e);
    }
    Ok(whole.into_inner().unwrap())
}

/// What a blob thread of [`hash_blobs`] shares with the others: the jobs
/// (largest first), the next one to take, progress and the stop flag.
struct Queue<'a> {
    file: &'a File,
    catalog: &'a Catalog,
    jobs: &'a [Job],
    next: &'a AtomicUsize,
    progress: &'a (dyn Fn(u64) + Sync),
    stop: &'a AtomicBool,
}

/// A sha256 blob being hashed in one of a thread's two lanes.
struct Lane<'a> {
    blob: &'a Blob,
    offset: u64,
    done: u64,
    state: barge_sha::State,
}

impl<'a> Queue<'a> {
    /// Hash and check blobs until the queue is empty, another thread failed,
    /// or one of this thread's blobs did. Two sha256 blobs at a time, one per
    /// lane, so `barge_sha::update_two` can hash both streams interleaved (the
    /// SHA unit idles between the rounds of one stream); each lane reads
    /// `READ` bytes into its own buffer, reused: memory is 2 × `READ`.
    fn hash_in_two_lanes(&self) -> Result<(), BundleError> {
        let mut bufs = [vec![0u8; READ], vec![0u8; READ]];
        let mut lanes: [Option<Lane<'a>>; 2] = [None, None];
        loop {
            for (lane, buf) in lanes.iter_mut().zip(&mut bufs) {
                if lane.is_none() {
                    *lane = self.next_sha256(buf)?;
                }
            }
            if self.stop.load(Ordering::Relaxed) || lanes.iter().all(Option::is_none) {
                return Ok(());
            }
            // Each lane's next read; `whole` is its full 64-byte blocks (all
            // of it but at a blob's end, as `READ` is a multiple of 64).
            let mut n = [0usize; 2];
            for ((lane, buf), n) in lanes.iter().zip(&mut bufs).zip(&mut n) {
                if let Some(l) = lane {
                    *n = ((l.blob.size - l.done) as usize).min(READ);
                    self.file.read_exact_at(&mut buf[..*n], l.offset + l.done)?;
                }
            }
            let whole = n.map(|n| n / 64 * 64);
            let mut common = 0;
            if let [Some(a), Some(b)] = &mut lanes {
                common = whole[0].min(whole[1]);
                barge_sha::update_two(&mut a.state, &bufs[0][..common], &mut b.state, &bufs[1][..common]);
            }
            for (i, lane) in lanes.iter_mut().enumerate() {
                let Some(l) = lane else { continue };
                l.state.update_blocks(&bufs[i][common..whole[i]]);
                l.done += n[i] as u64;
                (self.progress)(n[i] as u64);
                if l.done == l.blob.size {
                    let Some(l) = lane.take() else { continue };
                    let actual = Digest::sha256_from_bytes(&l.state.finish(&bufs[i][whole[i]..n[i]]));
                    expect_digest(&l.blob.digest, actual)?;
                }
            }
        }
    }

    /// The next sha256 blob to hash in a lane; a sha512 blob met on the way is
    /// hashed and checked here, alone, with `buf`. `None` when the queue is
    /// empty or another thread failed.
    fn next_sha256(&self, buf: &mut [u8]) -> Result<Option<Lane<'a>>, BundleError> {
        while !self.stop.load(Ordering::Relaxed) {
            let Some(job) = self.jobs.get(self.next.fetch_add(1, Ordering::Relaxed)) else { break };
            let blob = &self.catalog.blobs[job.index];
            match blob.digest.algorithm() {
                Algorithm::Sha256 => {
                    return Ok(Some(Lane { blob, offset: job.offset, done: 0, state: barge_sha::State::new() }))
                }
                alg => match hash_range(self.file, job.offset, blob.size, alg, buf, self.progress, self.stop)? {
                    Some(d) => expect_digest(&blob.digest, d)?,
                    None => break,
                },
            }
        }
        Ok(None)
    }
}

/// The digest of `size` bytes of `file` from `offset`, read `buf.len()` bytes
/// at a time; `None` when `stop` was set (another thread failed) before the end.
fn hash_range(
    file: &File,
    offset: u64,
    size: u64,
    alg: Algorithm,
    buf: &mut [u8],
    progress: &(dyn Fn(u64) + Sync),
    stop: &AtomicBool,
) -> Result<Option<Digest>, BundleError> {
    let mut h = Hasher::new(alg);
    let mut done = 0u64;
    while done < size {
        if stop.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let n = ((size - done) as usize).min(buf.len());
        file.read_exact_at(&mut buf[..n], offset + done)?;
        h.update(&buf[..n]);
        progress(n as u64);
        done += n as u64;
    }
    Ok(Some(h.finish()))
}

/// The raw bundle stream: hashed whole and counted as it is read.
struct Counted<R> {
    inner: R,
    hasher: Hasher,
    n: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.n += n as u64;
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::catalog::{Against, AgainstKind};
    use crate::BlobKind;

    fn written(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, bytes).unwrap();
        f
    }

    #[test]
    fn any_thread_count_gives_the_catalog_digest_of_the_whole_file() {
        let bytes = crate::forge::index().bundle(&[]);
        let whole = Digest::sha256_of(&bytes);
        let f = written(&bytes);
        for threads in [0, 1, 2, 3] {
            let asked = VerifyOptions { catalog_digest: Some(whole.clone()), threads };
            let v = verify_file(f.path(), &asked, &|_| {}).unwrap();
            assert_eq!(v.catalog_digest.as_ref(), Some(&whole), "{threads} threads");
            let plain = VerifyOptions { catalog_digest: None, threads };
            assert_eq!(verify_file(f.path(), &plain, &|_| {}).unwrap().catalog_digest, None);
            let wrong = VerifyOptions { catalog_digest: Some(Digest::sha256_of(b"x")), threads };
            let e = verify_file(f.path(), &wrong, &|_| {}).unwrap_err();
            assert!(matches!(e, BundleError::CatalogDigestMismatch { .. }), "{e}");
        }
    }

    #[test]
    fn a_damaged_layer_is_named_whether_or_not_the_whole_file_is_hashed() {
        let mut bytes = crate::forge::image(None).bundle(&[]);
        let at = bytes.windows(11).position(|w| w == b"layer-bytes").unwrap();
        bytes[at] ^= 1;
        let whole = Digest::sha256_of(&bytes);
        let f = written(&bytes);
        for threads in [1, 2] {
            for catalog_digest in [None, Some(whole.clone())] {
                let e = verify_file(f.path(), &VerifyOptions { catalog_digest, threads }, &|_| {}).unwrap_err();
                assert!(matches!(e, BundleError::DigestMismatch { .. }), "{threads} threads: {e}");
            }
        }
    }

    /// A file of blobs back to back (sizes around the 64-byte block and the
    /// `READ` boundaries, one sha512) and the catalog and jobs that name them.
    fn lined_up() -> (Vec<u8>, Catalog, Vec<Job>) {
        use sha2::Digest as _;
        let sizes = [0, 1, 55, 64, 119, 4096, READ - 1, READ, READ + 65, 2 * READ + 7, 3 * READ, 70_000];
        let (mut bytes, mut blobs, mut offsets) = (Vec::new(), Vec::new(), Vec::new());
        for (i, &size) in sizes.iter().enumerate() {
            let data: Vec<u8> = (0..size).map(|j| (j * 31 + i * 7 + j / 997) as u8).collect();
            let digest = if i == 5 {
                Digest::parse(&format!("sha512:{}", hex::encode(sha2::Sha512::digest(&data)))).unwrap()
            } else {
                Digest::sha256_of(&data)
            };
            offsets.push((digest.clone(), bytes.len() as u64));
            bytes.extend(&data);
            blobs.push(Blob { digest, size: size as u64, media_type: "x".into(), kind: BlobKind::Layer });
        }
        let catalog = Catalog::new("test", "1970-01-01T00:00:00Z", "oci:x", vec![], blobs);
        let mut jobs: Vec<Job> = offsets
            .iter()
            .map(|(d, offset)| Job {
                index: catalog.blobs.iter().position(|b| &b.digest == d).unwrap(),
                offset: *offset,
            })
            .collect();
        jobs.sort_by_key(|j| std::cmp::Reverse(catalog.blobs[j.index].size));
        (bytes, catalog, jobs)
    }

    #[test]
    fn two_lanes_check_every_blob_of_any_size_and_name_a_damaged_one() {
        let (mut bytes, catalog, jobs) = lined_up();
        let f = written(&bytes);
        let file = f.as_file();
        for threads in [1, 2, 3] {
            let hashed = AtomicUsize::new(0);
            let count = |n: u64| {
                hashed.fetch_add(n as usize, Ordering::Relaxed);
            };
            let whole = hash_blobs(file, bytes.len() as u64, &catalog, &jobs, threads, true, &count).unwrap();
            assert_eq!(whole, Some(Digest::sha256_of(&bytes)), "{threads} threads");
            assert_eq!(hashed.into_inner(), bytes.len(), "progress counts every byte once");
        }
        // One byte changed in each blob in turn: that blob, and only it, is named.
        for (k, job) in jobs.iter().enumerate() {
            let blob = &catalog.blobs[job.index];
            if blob.size == 0 {
                continue;
            }
            let at = (job.offset + blob.size - 1 - k as u64 % blob.size) as usize;
            bytes[at] ^= 1;
            let f = written(&bytes);
            for threads in [1, 2] {
                let e = hash_blobs(f.as_file(), bytes.len() as u64, &catalog, &jobs, threads, false, &|_| {});
                match e {
                    Err(BundleError::DigestMismatch { expected, .. }) => assert_eq!(expected, blob.digest),
                    other => panic!("{threads} threads, blob {k}: {other:?}"),
                }
            }
            bytes[at] ^= 1;
        }
    }

    #[test]
    fn unmet_names_the_omitted_blobs_an_inventory_lacks() {
        let (whole, b) =
            crate::forge::named(&[("m", BlobKind::Manifest, 1), ("c", BlobKind::Config, 1), ("l", BlobKind::Layer, 1)]);
        let (c, l) = (b[1].clone(), b[2].clone());
        let none: BTreeMap<Digest, String> = BTreeMap::new();
        assert!(unmet(&whole, &none).is_empty(), "a whole bundle depends on nothing");
        let against =
            Against { kind: AgainstKind::Bundle, digest: Digest::sha256_of(b"x"), registry: None, taken: None };
        let held = BTreeMap::from([(c.digest.clone(), None), (l.digest.clone(), None)]);
        let delta = whole.omit(against, &held);
        let some = BTreeMap::from([(c.digest.clone(), "a".to_string())]);
        assert_eq!(unmet(&delta, &some), [&l]);
        assert_eq!(unmet(&delta, &none).len(), 2);
    }
}
