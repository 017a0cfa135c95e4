//! `barge inventory`: what a target registry holds for some repositories, as the small document `export --have` reads.

use barge_transfer::{Expect, RegistryAddr, SetFile, TransferError};
use serde_json::json;
use tokio::io::AsyncWriteExt;

use super::{human, Connect, Done, Global};

#[derive(clap::Args)]
pub struct Args {
    /// The target registry: HOST[:PORT], or oci:PATH.
    #[arg(long)]
    registry: String,
    /// Take the repositories of this transfer set's entries.
    #[arg(long = "file", short = 'f', value_name = "SET")]
    set: Option<std::path::PathBuf>,
    /// Where to write the inventory: a file, a storage URL, or `-` (standard output).
    #[arg(long)]
    to: String,
    /// Replace an existing inventory.
    #[arg(long)]
    overwrite: bool,
    #[command(flatten)]
    connect: Connect,
    /// Repositories to take (their tags, manifests, configs and layers).
    #[arg(required_unless_present = "set")]
    repositories: Vec<String>,
}

impl Args {
    /// The repositories named and those of the set's entries, checked.
    fn repositories(&self) -> anyhow::Result<Vec<String>> {
        let mut repos = self.repositories.clone();
        if let Some(path) = &self.set {
            let shown = path.display().to_string();
            let bytes = std::fs::read(path).map_err(|e| TransferError::io(format!("reading the set {shown}"), e))?;
            let set = SetFile::parse(&bytes, &shown, Some(&self.registry))?;
            repos.extend(set.entries.iter().map(|e| e.repository.clone()));
        }
        let bad: Vec<String> = repos
            .iter()
            .filter_map(|r| barge_bundle::check_repository(r).err().map(|e| format!("repository {r:?}: {e}")))
            .collect();
        if !bad.is_empty() {
            return Err(TransferError::InvalidArtifacts(bad).into());
        }
        repos.sort();
        repos.dedup();
        Ok(repos)
    }
}

pub async fn run(g: &Global, a: &Args) -> anyhow::Result<Done> {
    let repos = a.repositories()?;
    let dest = g.store(&a.to, 1)?;
    let registry = RegistryAddr::parse(&a.registry)?.open(&a.connect.options()?).await?;
    let taken = barge_transfer::store::url::rfc3339(std::time::SystemTime::now());
    let inv =
        barge_transfer::take_inventory(registry.as_ref(), &a.registry, repos, &taken, a.connect.concurrency).await?;
    let bytes = inv.to_json();
    let digest = barge_bundle::Digest::sha256_of(&bytes);
    let size = bytes.len() as u64;
    let mut sink = dest.create(a.overwrite, size).await?;
    sink.write_all(&bytes).await.map_err(|e| TransferError::io(format!("writing {}", dest.display()), e))?;
    sink.commit(Expect { size, sha256: None, metadata: Vec::new(), md5: None }).await?;
    let json = json!({
        "inventory": dest.display(),
        "digest": digest,
        "size": size,
        "repositories": inv.repositories.len(),
        "manifests": inv.manifests.len(),
        "blobs": inv.blobs.len(),
    });
    // On standard output the document is all there is.
    let text = match a.to.as_str() {
        "-" => String::new(),
        _ => format!(
            "inventory of {} repositories of {} ({} manifests, {} blobs) to {}\ndigest: {digest}\nsize: {size} bytes ({})\n",
            inv.repositories.len(),
            a.registry,
            inv.manifests.len(),
            inv.blobs.len(),
            dest.display(),
            human(size)
        ),
    };
    Ok(Done::ok(text, json))
}
