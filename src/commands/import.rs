//! `barge import`: a bundle into a registry, every digest verified (ACR: an ImportPipeline run).

use barge_bundle::Digest;
use barge_transfer::{any_failed, ImportOptions, ImportReport, Map, Placement, PlatformIndex, RegistryAddr, Status};

use super::{human, parse_digest, Connect, Done, Global};
use crate::progress::Bars;

#[derive(clap::Args)]
pub struct Args {
    /// The bundle to import: a file, a storage URL, or `-` (standard input,
    /// read once and verified as it passes, like a bundle in storage).
    source: String,
    /// Target registry: HOST[:PORT] or oci:PATH.
    #[arg(long)]
    registry: String,
    #[command(flatten)]
    connect: Connect,
    /// Move tags that exist at another digest (ACR's OverwriteTags).
    #[arg(long)]
    overwrite_tags: bool,
    /// Import the artifacts that work when some fail (exit 6).
    #[arg(long)]
    continue_on_errors: bool,
    /// Delete the bundle after every artifact was imported.
    #[arg(long)]
    delete_source_blob_on_success: bool,
    /// Refuse the bundle unless its sha256 is this.
    #[arg(long, value_parser = parse_digest)]
    catalog_digest: Option<Digest>,
    /// Put every artifact under this repository path (`mirror` makes `library/alpine` `mirror/library/alpine`).
    #[arg(long, value_name = "PATH")]
    prefix: Option<String>,
    /// Rewrite repository paths that start with SRC (whole components) to start with DST; repeatable, the longest
    /// match wins. A SRC that starts with a registry host (`docker.io/library=hub`) matches only artifacts exported
    /// from that registry. Applied before --prefix.
    #[arg(long = "map", value_name = "SRC=DST", value_parser = parse_map)]
    maps: Vec<Map>,
    /// How to write an index of which the bundle carries only some platforms:
    /// as it is (`sparse`: its digest and signatures stay valid), or as a new
    /// index of just those platforms (`rewrite`: a new digest, reported).
    #[arg(long, value_enum, default_value = "sparse")]
    platform_index: IndexMode,
    /// Check the signature beside the bundle (NAME.sig) against these keys (ssh-keygen's
    /// allowed_signers format) before anything is written; without --require-signature, only if there is one.
    #[arg(long, value_name = "FILE")]
    allowed_signers: Option<std::path::PathBuf>,
    /// Refuse a bundle that has no valid signature by a key of --allowed-signers (exit 3).
    #[arg(long, requires = "allowed_signers")]
    require_signature: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum IndexMode {
    Sparse,
    Rewrite,
}

fn parse_map(s: &str) -> Result<Map, String> {
    Map::parse(s).map_err(|e| e.to_string())
}

pub async fn run(g: &Global, a: &Args, bars: &Bars) -> anyhow::Result<Done> {
    if a.source == "-" && a.delete_source_blob_on_success {
        let why = "standard input (`-`) cannot be deleted; drop --delete-source-blob-on-success";
        return Err(barge_transfer::TransferError::InvalidLocation(why.into()).into());
    }
    let placement = Placement::new(a.prefix.as_deref(), a.maps.clone())?;
    let signature = match a.allowed_signers.as_deref().map(super::sign::allowed_signers).transpose()? {
        Some(allowed) => {
            let opts = barge_transfer::StoreOptions { sas_file: g.sas_file.clone(), concurrency: 1 };
            let location = barge_transfer::Location::parse(&a.source, &opts)?;
            Some(barge_transfer::SignatureCheck::beside(&location, &opts, allowed, a.require_signature).await?)
        }
        None => None,
    };
    let registry = RegistryAddr::parse(&a.registry)?.open_for_writing(&a.connect.options()?).await?;
    let src = g.store(&a.source, a.connect.concurrency)?;
    let opts = ImportOptions {
        overwrite_tags: a.overwrite_tags,
        continue_on_errors: a.continue_on_errors,
        delete_source_on_success: a.delete_source_blob_on_success,
        catalog_digest: a.catalog_digest.clone(),
        // A local bundle is hashed whole only for --catalog-digest; a stream always is.
        report_catalog_digest: false,
        concurrency: a.connect.concurrency,
        placement,
        platform_index: match a.platform_index {
            IndexMode::Sparse => PlatformIndex::Sparse,
            IndexMode::Rewrite => PlatformIndex::Rewrite,
        },
        signature,
    };
    let r = match barge_transfer::import(src.into(), registry, &opts, bars).await {
        Ok(r) => r,
        // A split bundle's damage is named by its part.
        Err(e) => return Err(g.explain(&a.source, e).await.into()),
    };
    if r.source_deleted && a.source != "-" {
        // The bundle is gone: its signature beside it goes too (a failure here is only a warning).
        let store_opts = barge_transfer::StoreOptions { sas_file: g.sas_file.clone(), concurrency: 1 };
        let location = barge_transfer::Location::parse(&a.source, &store_opts)?;
        if let Err(e) = barge_transfer::sign::delete_beside(&location, &store_opts).await {
            barge_transfer::Reporter::note(bars, &format!("the bundle was deleted but not its signature: {e}"));
        }
    }
    Ok(Done { text: text(&r), partial: any_failed(&r.artifacts), json: serde_json::to_value(&r)? })
}

fn text(r: &ImportReport) -> String {
    let mut text = String::new();
    for a in &r.artifacts {
        let status = match a.status {
            Status::Succeeded => "imported ",
            Status::Unchanged => "unchanged",
            Status::Failed => "failed   ",
        };
        text += &format!("{status} {}", a.artifact);
        if let Some(t) = a.target.as_ref().filter(|t| **t != a.artifact) {
            text += &format!(" -> {t}");
        }
        if let Some(e) = &a.error {
            text += &format!(": {e}");
        } else if let (Some(d), Some(was)) = (&a.digest, &a.rewritten_from) {
            text += &format!(" rewritten index {d} (was {was})");
        } else if let Some(d) = &a.digest {
            text += &format!(" {d}");
        }
        text.push('\n');
    }
    text += &format!(
        "{} blobs uploaded ({}), {} mounted, {} already present; {} manifests pushed\n",
        r.blobs_uploaded,
        human(r.bytes_uploaded),
        r.blobs_mounted,
        r.blobs_present,
        r.manifests_pushed
    );
    if let Some(d) = &r.delta {
        text += &format!(
            "delta cut against {}: relied on the target for {} of its {} left-out blobs ({} mounted from another \
             repository)\n",
            d.against, d.relied_on, d.omitted, d.mounted
        );
        if !d.missing.is_empty() {
            let missing: Vec<String> = d.missing.iter().map(|m| m.to_string()).collect();
            text += &format!("missing in the target ({}): {}\n", missing.len(), missing.join(", "));
        }
    }
    if let Some(d) = &r.catalog_digest {
        text += &format!("catalogDigest: {d}\n");
    }
    if let Some(s) = &r.signed_by {
        text += &format!("signed by {s}\n");
    }
    if r.source_deleted {
        text += &format!("deleted {}\n", r.bundle);
    }
    text
}
