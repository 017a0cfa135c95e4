//! `barge verify`: a bundle checked offline: every digest, every reference, no unsafe entry.

use anyhow::Context as _;
use barge_bundle::{Digest, VerifyOptions};
use barge_transfer::{Location, SignatureCheck, StoreOptions, TransferError};
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
    /// For a delta bundle: also check that this inventory (`barge inventory`
    /// of the target) holds every blob the bundle leaves out.
    #[arg(long, value_name = "INVENTORY")]
    have: Option<std::path::PathBuf>,
    /// Also check the signature beside the bundle (NAME.sig) against these keys
    /// (ssh-keygen's allowed_signers format); a missing, unknown or invalid one fails (exit 3).
    #[arg(long, value_name = "FILE")]
    allowed_signers: Option<std::path::PathBuf>,
}

/// The inventory of `--have`, read and parsed before the bundle is read.
fn read_have(a: &Args) -> anyhow::Result<Option<(barge_bundle::Inventory, Digest)>> {
    let Some(path) = &a.have else { return Ok(None) };
    let shown = path.display();
    let bytes = std::fs::read(path).map_err(|e| TransferError::io(format!("reading the inventory {shown}"), e))?;
    Ok(Some(barge_bundle::Inventory::parse(&bytes)?))
}

pub async fn run(g: &Global, a: &Args, bars: &Bars) -> anyhow::Result<Done> {
    let have = read_have(a)?;
    let allowed = a.allowed_signers.as_deref().map(super::sign::allowed_signers).transpose()?;
    let store_opts = StoreOptions { sas_file: g.sas_file.clone(), concurrency: 1 };
    let location = Location::parse(&a.bundle, &store_opts)?;
    if let Location::Parts { part, .. } = &location {
        let parts = location.open_parts(&store_opts)?;
        match part {
            Some(n) => return verify_part(&parts, *n, bars).await,
            // Each part against its sha256 first, so a damaged or reordered one is named.
            None => parts.verify_parts(bars).await?,
        };
    }
    let check = match allowed {
        Some(allowed) => Some(SignatureCheck::beside(&location, &store_opts, allowed, true).await?),
        None => None,
    };
    let opts = VerifyOptions { catalog_digest: a.catalog_digest.clone(), threads: a.threads };
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
    let signer = match &check {
        Some(c) => {
            // A plain file's verify computes no catalogDigest unless asked: then it is hashed here.
            let statement = match &v.catalog_digest {
                Some(d) => barge_transfer::sign::statement(&v.catalog, d),
                None => barge_transfer::sign::statement_of(store.as_ref(), None, bars).await?,
            };
            bars.clear();
            let signer = c.allowed.check(&statement, c.signature.as_deref(), &shown)?;
            text += &format!("signed by {signer}\n");
            Some(signer)
        }
        None => None,
    };
    let delta = dependencies(&v.catalog, have.as_ref(), &mut text)?;
    let json = json!({
        "delta": delta,
        "have": have.as_ref().map(|(_, d)| d),
        "signedBy": signer,
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

/// A delta's dependencies, told (and, with `--have`, checked against the inventory): its JSON.
fn dependencies(
    catalog: &barge_bundle::Catalog,
    have: Option<&(barge_bundle::Inventory, barge_bundle::Digest)>,
    text: &mut String,
) -> anyhow::Result<Option<serde_json::Value>> {
    let delta = catalog.delta.as_ref().map(|d| {
        let bytes: u64 = d.omitted.iter().map(|o| o.blob.size).sum();
        *text += &format!(
            "delta: depends on {} blobs ({}) it leaves out, cut against {}\n",
            d.omitted.len(),
            human(bytes),
            super::export::against_words(&d.against)
        );
        json!({"against": d.against, "omitted": d.omitted.len(), "omittedBytes": bytes})
    });
    if let Some((inv, digest)) = have {
        let missing = barge_bundle::verify::unmet(catalog, &inv.blobs);
        if !missing.is_empty() {
            // The inventory stands for the target: the message is import's own.
            let against = catalog.delta.as_ref().map(|d| super::export::against_words(&d.against));
            return Err(TransferError::MissingDependencies {
                against: against.unwrap_or_default(),
                missing: missing.iter().map(|b| b.digest.clone()).collect(),
            })
            .context(format!("checking against inventory {digest} of {} taken {}", inv.registry, inv.taken));
        }
        *text += &format!("dependencies: all held per inventory {digest}\n");
    }
    Ok(delta)
}

/// `NAME.partNNNN` alone, against the `parts.json` beside it: a courier's check of one disc.
async fn verify_part(parts: &barge_transfer::Parts, n: u32, bars: &Bars) -> anyhow::Result<Done> {
    let entry = parts.verify_part(n, bars).await?;
    bars.clear();
    let text = format!(
        "OK part {} of {}: {}, sha256 {} as listed\n",
        entry.name,
        barge_transfer::BlobStore::display(parts),
        human(entry.size),
        entry.sha256
    );
    let json = json!({"part": entry.name, "parts": barge_transfer::BlobStore::display(parts), "size": entry.size, "sha256": entry.sha256});
    Ok(Done::ok(text, json))
}
