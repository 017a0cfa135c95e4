//! `barge inspect`: what a bundle holds (artifacts, platforms, referrers, sizes, sharing), read from its head alone.

use barge_bundle::oci::{DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use barge_bundle::summary::ArtifactSummary;
use barge_transfer::Inspected;
use serde_json::json;

use super::{human, Done, Global};

#[derive(clap::Args)]
pub struct Args {
    /// A file path, a storage URL (its SAS as for import: `r` is enough), or `-` for standard
    /// input (read up to the end of the bundle's head, the rest left unread).
    bundle: String,
    /// Print only the bundle's raw barge-catalog.json.
    #[arg(long)]
    catalog: bool,
}

/// Said with every result: inspect is not verify.
const HEAD_ONLY: &str = "only the head was read and checked (the catalog and every manifest digest); \
configs and layers were not read: `barge verify` checks the whole bundle";

pub async fn run(g: &Global, a: &Args) -> anyhow::Result<Done> {
    let store = g.store(&a.bundle, 1)?;
    // Named as the store shows it: a storage URL without its query.
    let shown = store.display();
    let i = barge_transfer::inspect(store.as_ref()).await?;
    if a.catalog {
        let text = String::from_utf8_lossy(&i.catalog_json).into_owned();
        let catalog: serde_json::Value = serde_json::from_slice(&i.catalog_json)?;
        return Ok(Done::ok(text, json!({"bundle": shown, "catalog": catalog})));
    }
    Ok(Done::ok(text(&shown, &i), to_json(&shown, &i)))
}

fn to_json(shown: &str, i: &Inspected) -> serde_json::Value {
    let mut v = serde_json::to_value(&i.summary).unwrap_or_default();
    v["bundle"] = json!(shown);
    v["compression"] = json!(if i.compressed { "zstd" } else { "none" });
    v["size"] = json!(i.size);
    v["catalogDigest"] = json!(i.catalog_digest);
    v["headBytesRead"] = json!(i.bytes_read);
    v["checked"] = json!(HEAD_ONLY);
    v
}

fn text(shown: &str, i: &Inspected) -> String {
    let s = &i.summary;
    let compression = if i.compressed { "zstd" } else { "none (plain tar)" };
    let size = i.size.map_or("unknown (a stream)".to_string(), |n| format!("{} ({n} bytes)", human(n)));
    let digest = match &i.catalog_digest {
        Some(d) => format!("{d} (as recorded with the blob)"),
        None => "not computed; `barge verify` computes it".into(),
    };
    let mut out = format!(
        "Bundle:          {shown}\nFormat:          barge bundle version {}, compression {compression}\n\
         Size:            {size}\nCatalog digest:  {digest}\nCreated:         {} by {}\n\
         Source:          {}\n\n",
        s.format_version,
        s.created,
        s.tool,
        s.source_registries.join(", ")
    );
    out += &table(&s.artifacts);
    let t = &s.totals;
    out += &format!(
        "\n{} artifact(s), {} blob(s), {}; {} blob(s) ({}) shared by more than one artifact, {} saved by storing each once.\n",
        t.artifacts,
        t.blobs,
        human(t.bytes),
        t.shared_blobs,
        human(t.shared_bytes),
        human(t.saved_bytes)
    );
    if s.artifacts.iter().any(|a| a.sparse) {
        out += "* a sparse index: only the platforms selected at export travel, the index unchanged.\n";
    }
    out += &format!("Read {} of the bundle: {HEAD_ONLY}.\n", human(i.bytes_read));
    out
}

/// A short name for a manifest media type.
fn kind(media_type: &str) -> &str {
    match media_type {
        OCI_MANIFEST => "oci image",
        OCI_INDEX => "oci index",
        DOCKER_MANIFEST => "docker image",
        DOCKER_LIST => "docker list",
        other => other,
    }
}

/// A reference for the table: a digest in a cosign or tag-schema tag
/// (`sha256-<64 hex>`) cut to 12 hex digits (JSON has it whole).
fn short(reference: &str) -> String {
    let Some(at) = reference.rfind(":sha256-") else { return reference.to_string() };
    let hex = &reference[at + 8..];
    let len = hex.chars().take_while(char::is_ascii_hexdigit).count();
    if len != 64 {
        return reference.to_string();
    }
    format!("{}{}…{}", &reference[..at + 8], &hex[..12], &hex[64..])
}

/// One row per artifact, and one line under it per referrer.
fn table(artifacts: &[ArtifactSummary]) -> String {
    let header = ["REFERENCE", "DIGEST", "TYPE", "PLATFORMS", "BLOBS", "SIZE", "REFERRERS"].map(String::from);
    let rows: Vec<[String; 7]> = artifacts
        .iter()
        .map(|a| {
            let digest = format!("{}:{}", a.digest.algorithm().name(), &a.digest.hex()[..12]);
            let mut platforms = if a.platforms.is_empty() { "-".to_string() } else { a.platforms.join(",") };
            if a.sparse {
                platforms += "*";
            }
            [
                short(&a.reference),
                digest,
                kind(&a.media_type).to_string(),
                platforms,
                a.blobs.to_string(),
                human(a.bytes),
                a.referrers.len().to_string(),
            ]
        })
        .collect();
    let mut widths = header.clone().map(|h| h.len());
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |r: &[String; 7]| {
        let cells: Vec<String> = r.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        format!("{}\n", cells.join("  ").trim_end())
    };
    let mut out = line(&header);
    for (r, a) in rows.iter().zip(artifacts) {
        out += &line(r);
        for referrer in &a.referrers {
            out += &format!("  <- {}\n", short(referrer));
        }
    }
    out
}
