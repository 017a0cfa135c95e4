//! `barge export`: artifacts from a registry into one bundle (ACR: an ExportPipeline run).

use barge_transfer::{any_failed, Compression, ExportOptions, RegistryAddr, Status, DEFAULT_MAX_ARTIFACTS};
use clap::ValueEnum;

use super::{human, Connect, Done, Global};
use crate::progress::Bars;

#[derive(clap::Args)]
pub struct Args {
    /// Source registry: HOST[:PORT], or oci:PATH (a directory of OCI layouts, one per repository).
    #[arg(long)]
    registry: String,
    #[command(flatten)]
    connect: Connect,
    /// Leave out signatures, SBOMs and attestations that refer to the artifacts.
    #[arg(long)]
    no_referrers: bool,
    /// Where to write the bundle: a file, a storage URL, or `-` (standard
    /// output, for a diode, a tape or an ssh pipe; the summary then goes to
    /// standard error).
    #[arg(long)]
    to: String,
    /// Replace an existing bundle (ACR's OverwriteBlobs).
    #[arg(long)]
    overwrite: bool,
    /// Export the artifacts that work when some fail (exit 6).
    #[arg(long)]
    continue_on_errors: bool,
    /// The most artifacts one export takes.
    #[arg(long, default_value_t = DEFAULT_MAX_ARTIFACTS)]
    max_artifacts: usize,
    /// Compress the whole bundle.
    #[arg(long, value_enum)]
    compress: Option<Compress>,
    /// Take only this platform of a multi-platform index, os/arch[/variant]
    /// (repeatable): the index travels unchanged with only these platforms'
    /// manifests and blobs. A single-platform image travels as it is.
    #[arg(long = "platform", value_name = "OS/ARCH[/VARIANT]")]
    platforms: Vec<barge_bundle::Platform>,
    /// Artifacts: repo (means :latest), repo:tag, repo@sha256:...
    #[arg(required = true)]
    artifacts: Vec<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Compress {
    Zstd,
}

impl Args {
    /// The bundle goes to standard output.
    pub fn writes_stdout(&self) -> bool {
        self.to == "-"
    }
}

pub async fn run(g: &Global, a: &Args, bars: &Bars) -> anyhow::Result<Done> {
    barge_transfer::parse_artifacts(&a.artifacts, a.max_artifacts)?;
    if a.writes_stdout() && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        let why = "`--to -` writes the bundle to standard output, which is a terminal; redirect it or pipe it";
        return Err(barge_transfer::TransferError::InvalidLocation(why.into()).into());
    }
    let registry = RegistryAddr::parse(&a.registry)?.open(&a.connect.options()?).await?;
    let dest = g.store(&a.to, a.connect.concurrency)?;
    let opts = ExportOptions {
        max_artifacts: a.max_artifacts,
        continue_on_errors: a.continue_on_errors,
        overwrite: a.overwrite,
        compression: if a.compress.is_some() { Compression::Zstd } else { Compression::None },
        concurrency: a.connect.concurrency,
        referrers: !a.no_referrers,
        platforms: a.platforms.clone(),
    };
    let r = barge_transfer::export(registry, &a.artifacts, dest.as_ref(), &opts, bars).await?;
    let mut text = format!(
        "exported {}, {} blobs ({}), to {}\ncatalogDigest: {}\n",
        artifacts_exported(&r.artifacts),
        r.blobs,
        human(r.blob_bytes),
        r.bundle,
        r.catalog_digest
    );
    for a in r.artifacts.iter().filter(|a| a.status == Status::Failed) {
        text += &format!("failed: {}", a.error.as_deref().unwrap_or(&a.artifact));
        text += &a.hint.as_ref().map(|h| format!("; {}\n", crate::hint::text(h))).unwrap_or_else(|| "\n".into());
    }
    Ok(Done { text, partial: any_failed(&r.artifacts), json: serde_json::to_value(&r)? })
}

/// "N artifact(s)", and how many requests they answer when two spellings
/// (`hello`, `hello:latest`) name one artifact.
fn artifacts_exported(outcomes: &[barge_transfer::ArtifactOutcome]) -> String {
    let ok: Vec<&str> = outcomes.iter().filter(|a| a.status != Status::Failed).map(|a| a.artifact.as_str()).collect();
    let distinct: std::collections::BTreeSet<String> = ok
        .iter()
        .map(|a| match barge_bundle::Reference::parse(a) {
            Ok(r) => match (r.tag(), r.digest()) {
                (Some(t), _) => format!("{}:{t}", r.repository()),
                (None, Some(d)) => format!("{}@{d}", r.repository()),
                (None, None) => format!("{}:latest", r.repository()),
            },
            Err(_) => a.to_string(),
        })
        .collect();
    if distinct.len() == ok.len() {
        format!("{} artifact(s)", ok.len())
    } else {
        format!("{} artifact(s) ({} requests)", distinct.len(), ok.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use barge_transfer::ArtifactOutcome;

    fn ok(artifact: &str) -> ArtifactOutcome {
        ArtifactOutcome {
            artifact: artifact.into(),
            digest: None,
            status: Status::Succeeded,
            rewritten_from: None,
            error: None,
            hint: None,
        }
    }

    #[test]
    fn two_spellings_of_one_artifact_are_counted_honestly() {
        assert_eq!(artifacts_exported(&[ok("hello"), ok("hello:latest")]), "1 artifact(s) (2 requests)");
        assert_eq!(artifacts_exported(&[ok("hello"), ok("hello:v1")]), "2 artifact(s)");
        let d = "sha256:78644e707286c9e72732b53620dd16d1ec0430b58761fa73926efd29d4d8dfcc";
        assert_eq!(
            artifacts_exported(&[ok(&format!("a@{d}")), ok(&format!("a@{d}")), ok("a")]),
            "2 artifact(s) (3 requests)"
        );
        let mut failed = ok("hello:latest");
        failed.status = Status::Failed;
        assert_eq!(artifacts_exported(&[ok("hello"), failed]), "1 artifact(s)");
    }
}
