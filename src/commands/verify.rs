//! `barge verify`: a bundle checked offline: every digest, every reference, no unsafe entry.

use barge_bundle::{Digest, VerifyOptions};
use barge_transfer::{Location, StoreOptions};
use serde_json::json;

use super::{human, parse_digest, Done, Global};
use crate::progress::Bars;

#[derive(clap::Args)]
pub struct Args {
    /// A file path or a storage URL (its SAS as for import: in the URL, --sas-file or the environment).
    bundle: String,
    /// Also require the sha256 of the whole file to be this.
    #[arg(long, value_parser = parse_digest)]
    catalog_digest: Option<Digest>,
    /// Hashing threads (default: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

pub async fn run(g: &Global, a: &Args, bars: &Bars) -> anyhow::Result<Done> {
    let opts = VerifyOptions { catalog_digest: a.catalog_digest.clone(), threads: a.threads };
    let store_opts = StoreOptions { sas_file: g.sas_file.clone(), concurrency: 1 };
    let location = Location::parse(&a.bundle, &store_opts)?;
    let store = location.open(&store_opts)?;
    // Named as the store shows it: a storage URL without its query.
    let shown = store.display();
    let started = std::time::Instant::now();
    let v = barge_transfer::verify(&location, store.as_ref(), &opts, std::sync::Arc::new(bars.clone())).await?;
    bars.clear();
    let secs = started.elapsed().as_secs_f64();
    let mut text = format!(
        "OK {}: {} artifacts, {} blobs, {} verified in {:.2}s\n",
        shown,
        v.catalog.artifacts.len(),
        v.catalog.blobs.len(),
        human(v.catalog.blob_bytes()),
        secs
    );
    if let Some(d) = &v.catalog_digest {
        text += &format!("catalogDigest: {d}\n");
    }
    let json = json!({
        "bundle": shown,
        "artifacts": v.catalog.artifacts.iter().map(|a| json!({"artifact": a.ref_name(), "digest": a.digest})).collect::<Vec<_>>(),
        "blobs": v.catalog.blobs.len(),
        "blobBytes": v.catalog.blob_bytes(),
        "catalogDigest": v.catalog_digest,
        "compressed": v.compressed,
        "seconds": secs,
    });
    Ok(Done::ok(text, json))
}
