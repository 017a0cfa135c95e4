//! `barge join`: a split bundle (`NAME.parts.json` and its parts) written back as one bundle.

use barge_transfer::{BlobStore, Location, StoreOptions, TransferError};
use serde_json::json;

use super::{human, Done, Global};
use crate::progress::Bars;

#[derive(clap::Args)]
pub struct Args {
    /// The split bundle: NAME.parts.json (or NAME.part0001), a file or a storage URL.
    parts: String,
    /// Where to write the single bundle: a file or a storage URL.
    #[arg(long)]
    to: String,
    /// Replace an existing bundle.
    #[arg(long)]
    overwrite: bool,
    /// Requests in flight.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
}

pub async fn run(g: &Global, a: &Args, bars: &Bars) -> anyhow::Result<Done> {
    let opts = StoreOptions { sas_file: g.sas_file.clone(), concurrency: a.concurrency };
    let from = Location::parse(&a.parts, &opts)?;
    if !matches!(from, Location::Parts { .. }) {
        let why = format!("{} is not a split bundle; join takes NAME.parts.json", a.parts);
        return Err(TransferError::InvalidLocation(why).into());
    }
    let src = from.open_parts(&opts)?;
    let dst = g.store(&a.to, a.concurrency)?;
    let (digest, size) = barge_transfer::store::parts::join(&src, dst.as_ref(), a.overwrite, bars).await?;
    bars.clear();
    let text = format!("joined {} into {} ({})\ncatalogDigest: {digest}\n", src.display(), dst.display(), human(size));
    Ok(Done::ok(text, json!({"parts": src.display(), "bundle": dst.display(), "size": size, "catalogDigest": digest})))
}
