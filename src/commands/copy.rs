//! `barge copy`: a bundle (any blob) from one location to another, checked before it takes its name.

use barge_transfer::{CopyOptions, CopyReport, Location, Overwrite};
use clap::ValueEnum;

use super::{human, Done, Global};
use crate::progress::Bars;

#[derive(clap::Args)]
pub struct Args {
    /// The blob to copy: a file path or a storage URL (https://ACCOUNT.blob.core.windows.net/CONTAINER/BLOB?SAS).
    source: String,
    /// Where to copy it: a file or a storage URL (in another account, say).
    destination: String,
    /// Replace an existing destination: true (a bare --overwrite), false, or
    /// if-source-newer; azcopy's spellings too (`--overwrite true`, `ifSourceNewer`).
    #[arg(long, value_enum, ignore_case = true, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true")]
    overwrite: OverwriteArg,
    /// Read the destination back and check its sha256 against the source's.
    #[arg(long)]
    verify: bool,
    /// Pass the data through this machine even where the target service could read the source itself.
    #[arg(long)]
    relay: bool,
    /// Blocks or requests in flight.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
}

#[derive(Clone, Copy, ValueEnum)]
enum OverwriteArg {
    True,
    False,
    #[value(alias = "ifsourcenewer")]
    IfSourceNewer,
}

/// azcopy writes `--overwrite true` with a space; clap reads a value only
/// after `=` (a bare `--overwrite` means true and must not swallow SRC), so
/// a following word that is an overwrite value is joined to it.
pub fn azcopy_spellings(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    if args.get(1).and_then(|a| a.to_str()) != Some("copy") {
        return args;
    }
    let is_value = |a: &std::ffi::OsString| {
        a.to_str().is_some_and(|v| {
            ["true", "false", "ifsourcenewer", "if-source-newer"].contains(&v.to_ascii_lowercase().as_str())
        })
    };
    let mut out = Vec::with_capacity(args.len());
    let mut it = args.into_iter().peekable();
    while let Some(a) = it.next() {
        if a == "--overwrite" && it.peek().is_some_and(is_value) {
            let mut joined = std::ffi::OsString::from("--overwrite=");
            joined.push(it.next().unwrap_or_default());
            out.push(joined);
        } else {
            out.push(a);
        }
    }
    out
}

pub async fn run(g: &Global, a: &Args, bars: &Bars) -> anyhow::Result<Done> {
    let overwrite = match a.overwrite {
        OverwriteArg::True => Overwrite::True,
        OverwriteArg::False => Overwrite::False,
        OverwriteArg::IfSourceNewer => Overwrite::IfSourceNewer,
    };
    let timings = barge_transfer::bench::Timings::new();
    let opts = CopyOptions {
        overwrite,
        verify: a.verify,
        concurrency: a.concurrency,
        relay: a.relay,
        timings: Some(timings.clone()),
        cpu: Some(super::bench::cpu_time),
    };
    let store_opts = barge_transfer::StoreOptions { sas_file: g.sas_file.clone(), concurrency: a.concurrency };
    let (from, to) = (Location::parse(&a.source, &store_opts)?, Location::parse(&a.destination, &store_opts)?);
    if let (Location::Parts { .. }, Location::Parts { part: None, .. }) = (&from, &to) {
        // A split bundle to a split bundle: its parts, then its parts.json.
        let (src, dst) = (from.open_parts(&store_opts)?, to.open_parts(&store_opts)?);
        let r = barge_transfer::copy_parts(&src, &dst, &opts, bars).await?;
        return Ok(Done::ok(text(&r), serde_json::to_value(&r)?));
    }
    // To one part (NAME.partNNNN): that blob alone, from one part or any blob.
    let (from, to) = match to.part_alone() {
        Some(to) => (from.part_alone().unwrap_or(from), to),
        None => (from, to),
    };
    let src = from.open(&store_opts)?;
    // Its staged blocks are timed for the report's figures.
    let dst = barge_transfer::bench::open_timed(&to, &store_opts, timings, None)?;
    // A signature travels with its bundle, ahead of it where nothing is replaced by mistake, so
    // that an import trigger never sees the bundle without it.
    let first = matches!(overwrite, Overwrite::True) || dst.info().await?.is_none();
    let mut carried = first && barge_transfer::sign::carry(&from, &to, &store_opts).await?;
    let r = barge_transfer::copy(src.as_ref(), dst.as_ref(), &opts, bars).await?;
    if !first && !r.skipped {
        carried = barge_transfer::sign::carry(&from, &to, &store_opts).await?;
    }
    let mut text = text(&r);
    if carried {
        text += &format!("copied its signature to {}{}\n", r.destination, barge_transfer::sign::SIG_SUFFIX);
    }
    let mut json = serde_json::to_value(&r)?;
    json["signatureCopied"] = carried.into();
    Ok(Done::ok(text, json))
}

fn text(r: &CopyReport) -> String {
    let mut text = if r.skipped {
        format!("skipped {}: {} is not older (--overwrite=if-source-newer)\n", r.source, r.destination)
    } else {
        format!("copied {} to {} ({})\n", r.source, r.destination, human(r.size))
    };
    if let Some(b) = &r.blocks {
        text += &format!(
            "{} blocks of {}: {} staged now ({} server-side), {} already staged\n",
            b.blocks,
            human(b.block_size),
            b.blocks_staged,
            b.server_side,
            b.blocks - b.blocks_staged
        );
    }
    if let Some(d) = &r.sha256 {
        text += &format!("sha256: {d}{}\n", if r.verified { " (read back and verified)" } else { "" });
    }
    if let Some(f) = &r.figures {
        text += &super::bench::figures_line(f);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::azcopy_spellings;

    fn joined(args: &[&str]) -> Vec<String> {
        let os = args.iter().map(std::ffi::OsString::from).collect();
        azcopy_spellings(os).into_iter().map(|a| a.into_string().unwrap()).collect()
    }

    #[test]
    fn azcopy_spellings_are_read_as_azcopy_writes_them() {
        assert_eq!(
            joined(&["barge", "copy", "a", "b", "--overwrite", "true"]),
            ["barge", "copy", "a", "b", "--overwrite=true"]
        );
        assert_eq!(
            joined(&["barge", "copy", "--overwrite", "ifSourceNewer", "a", "b"]),
            ["barge", "copy", "--overwrite=ifSourceNewer", "a", "b"]
        );
        // A bare --overwrite keeps the operands that follow it.
        assert_eq!(joined(&["barge", "copy", "--overwrite", "a", "b"]), ["barge", "copy", "--overwrite", "a", "b"]);
        // Only copy is touched.
        assert_eq!(joined(&["barge", "export", "--overwrite", "true"]), ["barge", "export", "--overwrite", "true"]);
    }
}
