//! `barge bench`: measure a storage container or a directory (upload, download, server-side and relayed copy), as `azcopy bench` does.

use std::time::Duration;

use barge_transfer::bench::{BenchOptions, BenchReport, Figures, Leg};
use barge_transfer::{Location, StoreOptions};

use super::{human, Done, Global};
use crate::progress::Bars;

/// Measure transfer rates to and from storage, block by block.
///
/// Writes `--count` blobs of `--size` bytes of generated noise (or the bytes of
/// `--from`) under `barge-bench-<random>/` in `--to`, reads them back in
/// parallel block-sized ranges, copies them server-side (Put Block From URL)
/// and relayed through this machine, then removes everything it wrote (unless
/// `--keep`). Each leg reports bytes, seconds, MB/s, blocks, blocks per second,
/// p50/p99 block latency and CPU use. A directory has only the upload and
/// download legs.
#[derive(clap::Args)]
pub struct Args {
    /// Where to measure: a storage container URL (https://ACCOUNT.blob.core.windows.net/CONTAINER[/DIR]?SAS;
    /// the SAS needs r, w and d) or a local directory. The bench writes under barge-bench-<random>/ there.
    #[arg(long, value_name = "URL|DIR")]
    to: String,
    /// Use the bytes of this blob or file as the data instead of generated noise (its size replaces --size).
    #[arg(long, value_name = "URL|PATH")]
    from: Option<String>,
    /// Bytes per blob (KB, MB, GB are powers of 1000; KiB, MiB, GiB of 1024).
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    size: u64,
    /// How many blobs to write (azcopy's default is 100 files of 250 MiB; barge moves one bundle, so 1).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1000))]
    count: u64,
    /// Block and read-range size (default: 8 MiB, or larger where a blob would need more than 50,000 blocks).
    #[arg(long, value_name = "SIZE", value_parser = parse_block_size)]
    block_size: Option<u64>,
    /// Blocks or ranged reads in flight.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=256))]
    concurrency: u64,
    /// Leave what the bench wrote in place (it is removed otherwise, also when a leg fails).
    #[arg(long)]
    keep: bool,
}

/// A size in bytes, with an optional unit; more than zero.
pub fn parse_size(s: &str) -> Result<u64, String> {
    match super::parse_bytes(s, "1GiB, 250MB")? {
        0 => Err("the size must be more than 0 bytes".into()),
        b if b > 1 << 40 => Err(format!("{s} is over 1 TiB; a benchmark needs less")),
        b => Ok(b),
    }
}

/// A block size: 64 KiB to 4000 MiB (Azure's largest block).
fn parse_block_size(s: &str) -> Result<u64, String> {
    let b = parse_size(s)?;
    if !(64 << 10..=4000 << 20).contains(&b) {
        return Err(format!("{s}: a block is 64KiB to 4000MiB"));
    }
    Ok(b)
}

/// The process's CPU time (user + system) so far.
#[allow(unsafe_code)]
pub fn cpu_time() -> Option<Duration> {
    // SAFETY: getrusage fills the one rusage it is pointed at and reports
    // whether it did; it is read only when it did.
    let usage = unsafe {
        let mut u = std::mem::MaybeUninit::<libc::rusage>::uninit();
        if libc::getrusage(libc::RUSAGE_SELF, u.as_mut_ptr()) != 0 {
            return None;
        }
        u.assume_init()
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32).saturating_mul(1000));
    Some(tv(usage.ru_utime) + tv(usage.ru_stime))
}

pub async fn run(g: &Global, a: &Args, bars: &Bars) -> anyhow::Result<Done> {
    let store = StoreOptions { sas_file: g.sas_file.clone(), concurrency: a.concurrency as usize };
    let from = a.from.as_deref().map(|f| Location::parse(f, &store)).transpose()?;
    let opts = BenchOptions {
        size: a.size,
        count: a.count,
        block_size: a.block_size,
        concurrency: a.concurrency as usize,
        keep: a.keep,
        from,
        store,
        cpu: Some(cpu_time),
    };
    let r = barge_transfer::bench::bench(&a.to, &opts, bars).await?;
    bars.clear();
    Ok(Done::ok(text(&r), serde_json::to_value(&r)?))
}

fn text(r: &BenchReport) -> String {
    let block = human(r.block_size);
    let mut out = format!(
        "benchmark of {}: {} blob(s) of {} ({} bytes), blocks of {block}, concurrency {}\n\n",
        r.target,
        r.count,
        human(r.size),
        r.size,
        r.concurrency
    );
    out += &format!(
        "{:<17} {:>13} {:>9} {:>9} {:>7} {:>9} {:>9} {:>9} {:>6}\n",
        "leg", "bytes", "seconds", "MB/s", "blocks", "blocks/s", "p50 ms", "p99 ms", "CPU %"
    );
    for leg in &r.legs {
        out += &row(leg);
    }
    out += "\n";
    for leg in r.legs.iter().filter(|l| l.note.is_some()) {
        out += &format!("{}: {}\n", leg.leg, leg.note.as_deref().unwrap_or_default());
    }
    out += &match r.kept {
        true => format!("kept: {}\n", r.target),
        false => format!("removed: {}\n", r.target),
    };
    out
}

fn row(leg: &Leg) -> String {
    let Some(f) = &leg.figures else { return format!("{:<17} {:>13}\n", leg.leg, "n/a") };
    let opt = |v: Option<f64>, p: usize| v.map_or("-".to_string(), |v| format!("{v:.p$}"));
    format!(
        "{:<17} {:>13} {:>9.2} {:>9.1} {:>7} {:>9.1} {:>9} {:>9} {:>6}\n",
        leg.leg,
        f.bytes,
        f.seconds,
        f.mb_per_s,
        f.blocks,
        f.blocks_per_s,
        opt(f.p50_ms, 1),
        opt(f.p99_ms, 1),
        opt(f.cpu_percent, 0)
    )
}

/// One line of figures for a transfer (copy's text output).
pub fn figures_line(f: &Figures) -> String {
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1} ms"));
    let cpu = f.cpu_percent.map_or("-".to_string(), |c| format!("{c:.0}%"));
    let blocks = match f.blocks {
        0 => String::new(),
        n => format!(", {n} blocks ({:.1}/s), block latency p50 {} p99 {}", f.blocks_per_s, ms(f.p50_ms), ms(f.p99_ms)),
    };
    format!("{:.1} MB/s over {:.2} s{blocks}, CPU {cpu}\n", f.mb_per_s, f.seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_with_their_units() {
        assert_eq!(parse_size("4MiB"), Ok(4 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("250MB"), Ok(250_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("0").is_err());
        assert!(parse_size("2TiB").is_err());
        assert!(parse_size("5 parsecs").is_err());
        assert!(parse_block_size("1KiB").is_err());
        assert_eq!(parse_block_size("1MiB"), Ok(1 << 20));
    }

    #[test]
    fn cpu_time_grows() {
        let before = cpu_time().unwrap();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(cpu_time().unwrap() > before);
    }
}
