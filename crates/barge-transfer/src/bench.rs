//! `bench`: measure a storage container or a directory as azcopy's benchmark mode does: upload, download, server-side and relayed copy, each its own timed leg.
//!
//! The data is generated (deterministic noise, streamed, never held whole) or
//! read from a given blob. Every leg goes through the code paths the
//! operations use: `BlobStore::create` and commit (as export writes),
//! `read_range` by block-sized ranges in parallel (as copy and import read),
//! `copy_from` (Put Block From URL, or relayed). Everything written lies under
//! `barge-bench-<random>/` and is removed at the end unless kept.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt, TryStreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};

use crate::io::{ByteStream, CHUNK};
use crate::report::Reporter;
use crate::store::{AzureBlob, BlobInfo, BlobStore, BlobUrl, CopyBlocks, Expect, Location, StoreOptions};
use crate::{Result, TransferError};

/// Durations of single blocks (staged, copied or read), pushed by whoever does the work.
#[derive(Debug, Default)]
pub struct Timings {
    durations: Mutex<Vec<Duration>>,
}

impl Timings {
    pub fn new() -> Arc<Timings> {
        Arc::new(Timings::default())
    }

    pub fn record(&self, d: Duration) {
        self.durations.lock().unwrap_or_else(|p| p.into_inner()).push(d);
    }

    /// Every duration recorded so far; the recorder is empty afterwards.
    pub fn take(&self) -> Vec<Duration> {
        std::mem::take(&mut *self.durations.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// The process's CPU time so far (user + system), as the caller can read it.
pub type CpuClock = fn() -> Option<Duration>;

/// The `p`-th percentile (0 < p ≤ 100) of sorted values, by the nearest-rank rule:
/// the smallest value that at least `p` percent of the values do not exceed.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() || !(p > 0.0 && p <= 100.0) {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// What one transfer amounted to.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Figures {
    pub bytes: u64,
    pub seconds: f64,
    /// Megabytes (10^6 bytes) per second.
    pub mb_per_s: f64,
    /// Blocks staged, copied or read by range.
    pub blocks: u64,
    pub blocks_per_s: f64,
    /// Block latency percentiles, in milliseconds; none without blocks.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// The process's CPU time (user + system) over the wall time, in percent
    /// (200 is two cores busy); none where the caller cannot read it.
    pub cpu_percent: Option<f64>,
}

impl Figures {
    /// The figures of `bytes` in `elapsed`, with one latency per block (pure).
    pub fn new(bytes: u64, elapsed: Duration, latencies: &[Duration], cpu: Option<Duration>) -> Figures {
        let seconds = elapsed.as_secs_f64();
        let per_s = |n: f64| if seconds > 0.0 { n / seconds } else { 0.0 };
        let mut ms: Vec<f64> = latencies.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        ms.sort_by(f64::total_cmp);
        Figures {
            bytes,
            seconds,
            mb_per_s: per_s(bytes as f64 / 1e6),
            blocks: ms.len() as u64,
            blocks_per_s: per_s(ms.len() as f64),
            p50_ms: percentile(&ms, 50.0),
            p99_ms: percentile(&ms, 99.0),
            cpu_percent: cpu.map(|c| per_s(c.as_secs_f64()) * 100.0),
        }
    }
}

/// Wall time and CPU time from a start, for one leg or one copy.
pub struct Stopwatch {
    started: Instant,
    cpu: Option<CpuClock>,
    cpu_start: Option<Duration>,
}

impl Stopwatch {
    pub fn start(cpu: Option<CpuClock>) -> Stopwatch {
        Stopwatch { started: Instant::now(), cpu, cpu_start: cpu.and_then(|c| c()) }
    }

    /// The figures of `bytes` moved since the start.
    pub fn figures(&self, bytes: u64, latencies: &[Duration]) -> Figures {
        let elapsed = self.started.elapsed();
        let cpu = match (self.cpu.and_then(|c| c()), self.cpu_start) {
            (Some(now), Some(then)) => Some(now.saturating_sub(then)),
            _ => None,
        };
        Figures::new(bytes, elapsed, latencies, cpu)
    }
}

/// A store opened so that its block timings go to `timings` (a storage blob; other stores time nothing).
pub fn open_timed(
    location: &Location,
    opts: &StoreOptions,
    timings: Arc<Timings>,
    block_size: Option<u64>,
) -> Result<Box<dyn BlobStore>> {
    match location {
        Location::Azure(u) => {
            let blob = AzureBlob::new(u.clone(), opts.concurrency.max(1))?.with_timings(timings);
            Ok(Box::new(match block_size {
                Some(b) => blob.with_block_size(b),
                None => blob,
            }))
        }
        other => other.open(opts),
    }
}

/// What to measure, and how.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Bytes per blob (ignored with `from`: its size).
    pub size: u64,
    pub count: u64,
    /// Block (and read range) size; `None`: the store's own choice (8 MiB, more for huge blobs).
    pub block_size: Option<u64>,
    pub concurrency: usize,
    /// Leave what was written in place.
    pub keep: bool,
    /// A blob or file whose bytes are the data, instead of generated noise.
    pub from: Option<Location>,
    pub store: StoreOptions,
    pub cpu: Option<CpuClock>,
}

/// One leg: its figures, or why it does not apply.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Leg {
    pub leg: &'static str,
    pub applicable: bool,
    #[serde(flatten)]
    pub figures: Option<Figures>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BenchReport {
    /// Where the data was written (never a SAS).
    pub target: String,
    /// The run's own prefix under the target: `barge-bench-<random>`.
    pub run: String,
    pub size: u64,
    pub count: u64,
    /// The block (and read range) size used.
    pub block_size: u64,
    pub concurrency: usize,
    pub kept: bool,
    pub legs: Vec<Leg>,
}

/// The four legs, in order.
pub const LEGS: [&str; 4] = ["upload", "download", "server-side copy", "relayed copy"];

/// Where the bench writes: a directory, or a container (and virtual directory) of a storage account.
enum Target {
    Local { dir: PathBuf },
    Azure { base: BlobUrl, prefix: String },
}

impl Target {
    /// `to` as a container or directory; `run` is the name of this run's own prefix under it.
    fn parse(to: &str, run: &str, opts: &StoreOptions) -> Result<Target> {
        if !(to.starts_with("http://") || to.starts_with("https://")) {
            let root = PathBuf::from(to);
            if !root.is_dir() {
                return Err(TransferError::NotFound(format!("directory {to} (a benchmark writes into a directory)")));
            }
            return Ok(Target::Local { dir: root.join(run) });
        }
        let given = BlobUrl::parse(to)?;
        let prefix = match given.blob().trim_matches('/') {
            "" => run.to_string(),
            p => format!("{p}/{run}"),
        };
        // The SAS comes as it does for any blob (the URL's, a SAS file, the environment).
        let Location::Azure(base) = Location::parse(&with_blob(to, &format!("{run}/probe")), opts)? else {
            return Err(TransferError::Internal("a storage URL parses as a storage location"));
        };
        if !base.has_sas() {
            return Err(TransferError::NoSas { doing: "writing to".into(), url: given.to_string() });
        }
        Ok(Target::Azure { base, prefix })
    }

    fn display(&self) -> String {
        match self {
            Target::Local { dir } => dir.display().to_string(),
            Target::Azure { base, prefix } => base.sibling(prefix).to_string(),
        }
    }

    fn location(&self, name: &str) -> Location {
        match self {
            Target::Local { dir } => Location::Local(dir.join(name)),
            Target::Azure { base, prefix } => Location::Azure(base.sibling(&format!("{prefix}/{name}"))),
        }
    }

    /// A SAS that says what it allows must allow what the bench does: read, write, and delete unless kept.
    fn check_permissions(&self, keep: bool) -> Result<()> {
        let Target::Azure { base, prefix } = self else { return Ok(()) };
        let Some(sp) = base.sas_permissions() else { return Ok(()) };
        let need = if keep { "rw" } else { "rwd" };
        match need.chars().find(|c| !sp.contains(*c)) {
            Some(c) => Err(TransferError::Auth(format!(
                "benchmarking {}: the SAS lacks the '{c}' permission (it has '{sp}'); the benchmark writes, reads back{}",
                base.sibling(prefix),
                if keep { "" } else { " and deletes" }
            ))),
            None => Ok(()),
        }
    }
}

/// A storage URL with `rel` appended to its path, its query (the SAS) kept.
fn with_blob(url: &str, rel: &str) -> String {
    let (path, query) = url.split_once('?').map_or((url, None), |(p, q)| (p, Some(q)));
    let mut s = format!("{}/{rel}", path.trim_end_matches('/'));
    if let Some(q) = query {
        s.push('?');
        s.push_str(q);
    }
    s
}

/// A name no other run shares: `barge-bench-` and 12 hex digits from randomness, the process and the time.
fn run_name() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let random = std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), now);
    format!("barge-bench-{:012x}", (random ^ u64::from(std::process::id())) & 0xffff_ffff_ffff)
}

/// What the run wrote, removed when it ends unless kept. A local file is
/// removed even when the run is dropped (Ctrl-C); a blob needs the network,
/// so only a run that ends removes its blobs.
struct Written {
    target_dir: Option<PathBuf>,
    files: Vec<PathBuf>,
    stores: Vec<Box<dyn BlobStore>>,
    keep: bool,
}

impl Written {
    fn add(&mut self, location: &Location, store: Box<dyn BlobStore>) {
        if let Location::Local(p) = location {
            self.files.push(p.clone());
        }
        self.stores.push(store);
    }

    /// Remove everything written; the first failure is returned, after trying them all.
    async fn remove(&mut self) -> Result<()> {
        let mut first = None;
        for s in std::mem::take(&mut self.stores) {
            if let Err(e) = s.delete(None).await {
                first.get_or_insert(e);
            }
        }
        self.remove_local();
        first.map_or(Ok(()), Err)
    }

    fn remove_local(&mut self) {
        for f in std::mem::take(&mut self.files) {
            let _ = std::fs::remove_file(f);
        }
        if let Some(d) = self.target_dir.take() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

impl Drop for Written {
    fn drop(&mut self) {
        if !self.keep {
            self.remove_local();
        }
    }
}

/// A phase name of the bench's own around a reporter (copy calls its phase "copying").
struct Phase<'a> {
    inner: &'a dyn Reporter,
    name: &'static str,
}

impl Reporter for Phase<'_> {
    fn start(&self, _phase: &str, total: Option<u64>) {
        self.inner.start(self.name, total)
    }
    fn advance(&self, bytes: u64) {
        self.inner.advance(bytes)
    }
    fn note(&self, message: &str) {
        self.inner.note(message)
    }
    fn finish(&self) {}
}

/// Run the benchmark against `to` (a container URL, or a directory).
pub async fn bench(to: &str, opts: &BenchOptions, reporter: &dyn Reporter) -> Result<BenchReport> {
    let run = run_name();
    let target = Target::parse(to, &run, &opts.store)?;
    target.check_permissions(opts.keep)?;
    let source = match &opts.from {
        Some(l) => {
            let s = l.open(&opts.store)?;
            let info = s.info().await?.ok_or_else(|| TransferError::NotFound(s.display()))?;
            Some((s, info))
        }
        None => None,
    };
    let size = source.as_ref().map_or(opts.size, |(_, i)| i.size);
    let mut written = Written {
        target_dir: match &target {
            Target::Local { dir } => Some(dir.clone()),
            Target::Azure { .. } => None,
        },
        files: Vec::new(),
        stores: Vec::new(),
        keep: opts.keep,
    };
    if let Target::Local { dir } = &target {
        std::fs::create_dir(dir).map_err(|e| TransferError::io(format!("creating {}", dir.display()), e))?;
    }
    let legs = legs(&target, opts, size, source.as_ref().map(|(s, i)| (s.as_ref(), i)), &mut written, reporter).await;
    let cleaned = if opts.keep { Ok(()) } else { written.remove().await };
    let legs = legs?;
    cleaned?;
    Ok(BenchReport {
        target: target.display(),
        run,
        size,
        count: opts.count,
        block_size: opts.block_size.unwrap_or(AzureBlob::default_block_size(size)),
        concurrency: opts.concurrency,
        kept: opts.keep,
        legs,
    })
}

async fn legs(
    target: &Target,
    opts: &BenchOptions,
    size: u64,
    source: Option<(&dyn BlobStore, &BlobInfo)>,
    written: &mut Written,
    reporter: &dyn Reporter,
) -> Result<Vec<Leg>> {
    let data: Vec<Location> = (0..opts.count).map(|i| target.location(&format!("data-{i}"))).collect();
    let upload = upload(target, opts, &data, size, source, written, reporter).await?;
    let download = download(opts, &data, reporter).await?;
    let mut legs = vec![upload, download];
    for (leg, relay) in [(LEGS[2], false), (LEGS[3], true)] {
        legs.push(copy_leg(target, opts, &data, (leg, relay), written, reporter).await?);
    }
    Ok(legs)
}

fn timed_store(l: &Location, opts: &BenchOptions, timings: &Arc<Timings>) -> Result<Box<dyn BlobStore>> {
    open_timed(l, &opts.store, timings.clone(), opts.block_size)
}

/// Write every blob (several at once), as export writes a bundle.
async fn upload(
    target: &Target,
    opts: &BenchOptions,
    data: &[Location],
    size: u64,
    source: Option<(&dyn BlobStore, &BlobInfo)>,
    written: &mut Written,
    reporter: &dyn Reporter,
) -> Result<Leg> {
    let timings = Timings::new();
    let block = opts.block_size.unwrap_or(AzureBlob::default_block_size(size));
    let mut stores = Vec::new();
    for l in data {
        stores.push(timed_store(l, opts, &timings)?);
        // Registered before the first byte: a failed run removes a blob committed before the failure.
        written.add(l, timed_store(l, opts, &timings)?);
    }
    let phase = Phase { inner: reporter, name: "bench: upload" };
    phase.start("", Some(size * opts.count));
    let watch = Stopwatch::start(opts.cpu);
    // Each blob keeps up to three blocks in flight (as an export does): that many blobs at once fill the concurrency.
    let at_once = (opts.concurrency / 3).max(1);
    let own: Vec<Vec<Duration>> = stream::iter(stores.iter().enumerate())
        .map(|(i, store)| {
            let phase = &phase;
            async move {
                let reader: ByteStream = match source {
                    Some((s, info)) => s.read_range(0, size, &info.etag).await?,
                    None => Box::new(Noise::new(i as u64, size)),
                };
                write_blob(store.as_ref(), reader, size, block, phase).await
            }
        })
        .buffer_unordered(at_once)
        .try_collect()
        .await?;
    let staged = timings.take();
    // A store that stages blocks timed them; a file is timed block by block as it is written.
    let latencies = if staged.is_empty() { own.concat() } else { staged };
    let figures = watch.figures(size * opts.count, &latencies);
    reporter.finish();
    let note = matches!(target, Target::Local { .. }).then(|| "written to a file, synced before it is renamed".into());
    Ok(Leg { leg: LEGS[0], applicable: true, figures: Some(figures), note })
}

/// One blob written from `reader` and committed; the time of each block's worth of writes.
async fn write_blob(
    store: &dyn BlobStore,
    mut reader: ByteStream,
    size: u64,
    block: u64,
    reporter: &dyn Reporter,
) -> Result<Vec<Duration>> {
    let mut sink = store.create(false, size).await?;
    let mut buf = vec![0u8; CHUNK];
    let (mut done, mut in_block, mut times) = (0u64, 0u64, Vec::new());
    let mut started = Instant::now();
    let what = || format!("writing {}", store.display());
    while done < size {
        let want = (size - done).min(block - in_block).min(CHUNK as u64) as usize;
        let n = reader.read(&mut buf[..want]).await.map_err(|e| TransferError::io("reading the data", e))?;
        if n == 0 {
            return Err(TransferError::Changed("the data ended early: the source changed while it was read".into()));
        }
        sink.write_all(&buf[..n]).await.map_err(|e| TransferError::io(what(), e))?;
        (done, in_block) = (done + n as u64, in_block + n as u64);
        reporter.advance(n as u64);
        if in_block == block || done == size {
            times.push(started.elapsed());
            (started, in_block) = (Instant::now(), 0);
        }
    }
    sink.flush().await.map_err(|e| TransferError::io(what(), e))?;
    sink.commit(Expect { size, sha256: None, metadata: Vec::new(), md5: None }).await?;
    Ok(times)
}

/// Read every blob back by block-sized ranges, several at once, to nowhere.
async fn download(opts: &BenchOptions, data: &[Location], reporter: &dyn Reporter) -> Result<Leg> {
    // Each range in two parallel partitions at most: the memory held stays near
    // 2 × concurrency partitions, whatever the block size.
    let store = StoreOptions { concurrency: 2, ..opts.store.clone() };
    let mut blobs = Vec::new();
    for l in data {
        let s = l.open(&store)?;
        let info = s.info().await?.ok_or_else(|| TransferError::NotFound(s.display()))?;
        blobs.push((s, info));
    }
    let total: u64 = blobs.iter().map(|(_, i)| i.size).sum();
    let ranges: Vec<(usize, u64, u64)> = blobs
        .iter()
        .enumerate()
        .flat_map(|(b, (_, info))| {
            let block = opts.block_size.unwrap_or(AzureBlob::default_block_size(info.size));
            (0..info.size.div_ceil(block)).map(move |k| (b, k * block, (info.size - k * block).min(block)))
        })
        .collect();
    reporter.start("bench: download", Some(total));
    let watch = Stopwatch::start(opts.cpu);
    let latencies: Vec<Duration> = stream::iter(ranges)
        .map(|(b, offset, len)| {
            let (store, info) = &blobs[b];
            async move {
                let started = Instant::now();
                let mut r = store.read_range(offset, len, &info.etag).await?;
                drain(&mut r, len, &store.display(), reporter).await?;
                Ok::<_, TransferError>(started.elapsed())
            }
        })
        .buffer_unordered(opts.concurrency.max(1))
        .try_collect()
        .await?;
    let figures = watch.figures(total, &latencies);
    reporter.finish();
    Ok(Leg { leg: LEGS[1], applicable: true, figures: Some(figures), note: None })
}

/// Read exactly `len` bytes and drop them.
async fn drain(r: &mut ByteStream, len: u64, what: &str, reporter: &dyn Reporter) -> Result<()> {
    let mut buf = vec![0u8; CHUNK.min(len.max(1) as usize)];
    let mut left = len;
    while left > 0 {
        let n = r.read(&mut buf).await.map_err(|e| TransferError::io(format!("reading {what}"), e))?;
        if n == 0 {
            return Err(TransferError::Changed(format!("{what} ended {left} bytes early while it was read")));
        }
        left = left.saturating_sub(n as u64);
        reporter.advance(n as u64);
    }
    Ok(())
}

/// Copy every blob to a second one in the same place, by the destination's own block copy.
async fn copy_leg(
    target: &Target,
    opts: &BenchOptions,
    data: &[Location],
    (leg, relay): (&'static str, bool),
    written: &mut Written,
    reporter: &dyn Reporter,
) -> Result<Leg> {
    if let Target::Local { .. } = target {
        let note = Some("not applicable: a directory has no block copy of its own".to_string());
        return Ok(Leg { leg, applicable: false, figures: None, note });
    }
    let timings = Timings::new();
    let blocks = CopyBlocks { overwrite: false, concurrency: opts.concurrency.max(1), relay };
    let phase = Phase { inner: reporter, name: if relay { "bench: relayed copy" } else { "bench: server-side copy" } };
    let name = if relay { "relayed" } else { "copied" };
    let mut pairs = Vec::new();
    for (i, l) in data.iter().enumerate() {
        let src = l.open(&opts.store)?;
        let info = src.info().await?.ok_or_else(|| TransferError::NotFound(src.display()))?;
        let to = target.location(&format!("{name}-{i}"));
        written.add(&to, timed_store(&to, opts, &timings)?);
        pairs.push((src, info, timed_store(&to, opts, &timings)?));
    }
    let watch = Stopwatch::start(opts.cpu);
    let (mut bytes, mut by_server, mut staged) = (0, 0, 0);
    for (src, info, dst) in &pairs {
        let Some(c) = dst.copy_from(src.as_ref(), info, &blocks, &phase).await? else {
            let note = Some("not applicable: this store has no block copy of its own".to_string());
            return Ok(Leg { leg, applicable: false, figures: None, note });
        };
        (bytes, by_server, staged) = (bytes + info.size, by_server + c.server_side, staged + c.blocks_staged);
    }
    let figures = watch.figures(bytes, &timings.take());
    reporter.finish();
    let note = match (relay, by_server) {
        (false, n) if n < staged => {
            Some(format!("the service could not read the source: {} of {staged} blocks were relayed", staged - n))
        }
        (true, _) => Some("every block read and staged through this process".into()),
        _ => Some("every block read by the service from the source (Put Block From URL)".into()),
    };
    Ok(Leg { leg, applicable: true, figures: Some(figures), note })
}

/// Deterministic noise: a fixed pseudo-random pattern, read with an offset that
/// differs per blob; its period is no power of two, so no two blocks are alike.
struct Noise {
    pattern: Arc<[u8]>,
    at: usize,
    left: u64,
}

/// The pattern's length: 1 MiB and a prime's worth more.
const PERIOD: usize = (1 << 20) + 4093;

impl Noise {
    fn new(blob: u64, size: u64) -> Noise {
        static PATTERN: std::sync::OnceLock<Arc<[u8]>> = std::sync::OnceLock::new();
        let pattern = PATTERN.get_or_init(|| noise_pattern(0x9e37_79b9_7f4a_7c15)).clone();
        Noise { pattern, at: (blob as usize * 7919) % PERIOD, left: size }
    }
}

/// `PERIOD` bytes of xorshift64* output from `seed` (pure).
fn noise_pattern(seed: u64) -> Arc<[u8]> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(PERIOD + 8);
    while out.len() < PERIOD {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(PERIOD);
    out.into()
}

impl AsyncRead for Noise {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let n = (buf.remaining() as u64).min(self.left).min((PERIOD - self.at) as u64) as usize;
        let at = self.at;
        buf.put_slice(&self.pattern[at..at + n]);
        self.at = (at + n) % PERIOD;
        self.left -= n as u64;
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&[7.0], 50.0), Some(7.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[1.0, 2.0], 50.0), Some(1.0));
        assert_eq!(percentile(&[1.0, 2.0], 99.0), Some(2.0));
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 50.0), Some(2.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&v, 0.0), None);
    }

    #[test]
    fn figures_are_rates_over_the_wall_time() {
        let ms = |n| Duration::from_millis(n);
        let f = Figures::new(10_000_000, Duration::from_secs(2), &[ms(30), ms(10), ms(20), ms(40)], Some(ms(500)));
        assert_eq!(f.mb_per_s, 5.0);
        assert_eq!((f.blocks, f.blocks_per_s), (4, 2.0));
        assert_eq!((f.p50_ms, f.p99_ms), (Some(20.0), Some(40.0)));
        assert_eq!(f.cpu_percent, Some(25.0));
        let none = Figures::new(0, Duration::ZERO, &[], None);
        assert_eq!((none.mb_per_s, none.blocks, none.p50_ms, none.cpu_percent), (0.0, 0, None, None));
    }

    #[test]
    fn a_storage_url_gets_the_name_before_its_sas() {
        assert_eq!(
            with_blob("https://a.blob.core.windows.net/c?sv=1&sig=x", "r/d"),
            "https://a.blob.core.windows.net/c/r/d?sv=1&sig=x"
        );
        assert_eq!(with_blob("http://127.0.0.1:1/acct/c/dir/", "r/d"), "http://127.0.0.1:1/acct/c/dir/r/d");
    }

    #[tokio::test]
    async fn noise_is_deterministic_and_differs_per_blob() {
        let read = |blob, size| async move {
            let mut v = Vec::new();
            Noise::new(blob, size).read_to_end(&mut v).await.unwrap();
            v
        };
        let a = read(0, 3 << 20).await;
        assert_eq!(a.len(), 3 << 20);
        assert_eq!(a, read(0, 3 << 20).await);
        assert_ne!(a[..1 << 20], a[1 << 20..2 << 20]);
        assert_ne!(a[..4096], read(1, 4096).await[..]);
    }

    #[test]
    fn run_names_differ() {
        assert!(run_name().starts_with("barge-bench-"));
        assert_ne!(run_name(), run_name());
    }
}
