//! `barge export`: artifacts from a registry into one bundle (ACR: an ExportPipeline run).

use barge_transfer::{
    any_failed, Compression, DeltaBase, ExportOptions, ExportRequest, RegistryAddr, SetFile, Sources, Status,
    TransferError, DEFAULT_MAX_ARTIFACTS,
};
use clap::ValueEnum;

use super::{human, Connect, Done, Global};
use crate::progress::Bars;

#[derive(clap::Args)]
pub struct Args {
    /// Source registry: HOST[:PORT], or oci:PATH (a directory of OCI layouts,
    /// one per repository). Artifacts are then short names (repo:tag). Without
    /// it, artifacts are full references (docker.io/library/alpine:3.20,
    /// ghcr.io/org/app@sha256:..., alpine), from as many registries as named.
    #[arg(long)]
    registry: Option<String>,
    /// Sign the bundle when it is written: NAME.sig (and its statement NAME.sig.msg) beside it.
    /// KEY as for `barge sign --key`: a private key file, or a public key the ssh-agent holds.
    #[arg(long, value_name = "KEY")]
    sign_key: Option<std::path::PathBuf>,
    /// A transfer set: a YAML or JSON file listing artifacts by registry,
    /// repository, tags, tag pattern, digests and platforms (see README).
    #[arg(long = "file", short = 'f', value_name = "SET")]
    set: Option<std::path::PathBuf>,
    /// Keep only these platforms of multi-platform indexes (os/arch[/variant],
    /// repeatable); a set entry's own `platforms` win. The index travels as it
    /// is, with only the selected platforms' manifests (a sparse index).
    #[arg(long = "platform", value_name = "OS/ARCH[/VARIANT]")]
    platforms: Vec<barge_bundle::Platform>,
    /// Resolve the artifacts and print what the bundle would hold (artifacts,
    /// blobs, bytes, shared blobs); write nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    connect: Connect,
    /// Leave out signatures, SBOMs and attestations that refer to the artifacts.
    #[arg(long)]
    no_referrers: bool,
    /// Where to write the bundle: a file, a storage URL, or `-` (standard
    /// output, for a diode, a tape or an ssh pipe; the summary then goes to
    /// standard error).
    #[arg(long, required_unless_present = "dry_run")]
    to: Option<String>,
    /// Replace an existing bundle (ACR's OverwriteBlobs).
    #[arg(long)]
    overwrite: bool,
    /// Export the artifacts that work when some fail (exit 6); a set entry
    /// that matches nothing is skipped too.
    #[arg(long)]
    continue_on_errors: bool,
    /// The most artifacts one export takes (counted after a set's patterns are expanded).
    #[arg(long, default_value_t = DEFAULT_MAX_ARTIFACTS)]
    max_artifacts: usize,
    /// Compress the whole bundle.
    #[arg(long, value_enum)]
    compress: Option<Compress>,
    /// Cut a delta: leave out the configs and layers this inventory (from
    /// `barge inventory` of the target) says the target holds. Manifests always travel.
    #[arg(long, value_name = "INVENTORY", conflicts_with = "since")]
    have: Option<std::path::PathBuf>,
    /// Cut a delta against an earlier bundle (a file or storage URL) or its
    /// catalog (as `barge inspect --catalog` prints it): leave out the configs
    /// and layers it carried or relied on.
    #[arg(long, value_name = "BUNDLE|CATALOG")]
    since: Option<String>,
    /// Artifacts: with --registry, repo (means :latest), repo:tag,
    /// repo@sha256:...; without, full references.
    #[arg(required_unless_present = "set")]
    artifacts: Vec<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Compress {
    Zstd,
}

impl Args {
    /// The bundle goes to standard output.
    pub fn writes_stdout(&self) -> bool {
        self.to.as_deref() == Some("-")
    }

    /// The set file, if any, checked (pure; read once).
    fn set_file(&self) -> anyhow::Result<Option<SetFile>> {
        let Some(path) = &self.set else { return Ok(None) };
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| TransferError::io(format!("reading the set {shown}"), e))?;
        Ok(Some(SetFile::parse(&bytes, &shown, self.registry.as_deref())?))
    }

    /// What a delta is cut against (`--have`, `--since`), read once.
    async fn delta_base(&self, g: &Global) -> anyhow::Result<Option<DeltaBase>> {
        if let Some(path) = &self.have {
            let shown = path.display();
            let bytes =
                std::fs::read(path).map_err(|e| TransferError::io(format!("reading the inventory {shown}"), e))?;
            return Ok(Some(DeltaBase::from_inventory(&bytes)?));
        }
        match &self.since {
            Some(old) => Ok(Some(DeltaBase::since(g.store(old, 1)?.as_ref()).await?)),
            None => Ok(None),
        }
    }
}

/// A delta's line of the summary: what it leaves out and what it was cut against.
pub fn delta_text(d: &barge_transfer::DeltaSummary) -> String {
    format!(
        "delta: {} blobs ({}) left out, cut against {}\n",
        d.omitted,
        human(d.omitted_bytes),
        against_words(&d.against)
    )
}

/// What a delta was cut against, in the words import uses:
/// "inventory sha256:… of REGISTRY taken TIME" or "bundle whose catalog is sha256:…".
pub fn against_words(a: &barge_bundle::catalog::Against) -> String {
    match a.kind {
        barge_bundle::catalog::AgainstKind::Inventory => format!(
            "inventory {} of {} taken {}",
            a.digest,
            a.registry.as_deref().unwrap_or("-"),
            a.taken.as_deref().unwrap_or("-")
        ),
        barge_bundle::catalog::AgainstKind::Bundle => format!("bundle whose catalog is {}", a.digest),
    }
}

/// Open every registry the requests (and the set) read from, each once, side by side.
async fn open_sources(names: Vec<String>, connect: &barge_transfer::ConnectOptions) -> anyhow::Result<Sources> {
    let opened = futures::future::join_all(names.iter().map(|n| async move {
        let registry = RegistryAddr::parse(n)?.open(connect).await?;
        Ok::<_, TransferError>((n.clone(), registry))
    }))
    .await;
    let mut sources = Sources::new();
    for r in opened {
        let (name, registry) = r?;
        sources.insert(&name, registry);
    }
    Ok(sources)
}

/// The requests of the command line and the set, the set's patterns expanded
/// against its registries (tag lists read only where needed).
async fn requests(
    a: &Args,
    sources: &Sources,
    set: Option<&SetFile>,
) -> anyhow::Result<(Vec<ExportRequest>, Vec<barge_transfer::ArtifactOutcome>)> {
    let referrers = !a.no_referrers;
    let mut requests = barge_transfer::requests_from_names(&a.artifacts, a.registry.as_deref(), referrers)?;
    for r in &mut requests {
        r.platforms = a.platforms.clone();
    }
    let mut skipped = Vec::new();
    if let Some(set) = set {
        let concurrency = a.connect.concurrency;
        let (more, failed) =
            barge_transfer::resolve_set(set, sources, &a.platforms, referrers, a.continue_on_errors, concurrency)
                .await?;
        requests.extend(more);
        skipped = failed.into_iter().map(|(name, e)| barge_transfer::ArtifactOutcome::failed(&name, &e)).collect();
    }
    barge_transfer::check_limit(&requests, a.max_artifacts, set.is_some())?;
    Ok((requests, skipped))
}

pub async fn run(g: &Global, a: &Args, bars: &Bars) -> anyhow::Result<Done> {
    // Everything that can be checked without a network is checked first.
    let named = barge_transfer::requests_from_names(&a.artifacts, a.registry.as_deref(), !a.no_referrers)?;
    let set = a.set_file()?;
    if set.is_none() {
        barge_transfer::check_limit(&named, a.max_artifacts, false)?;
    }
    if a.writes_stdout() && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        let why = "`--to -` writes the bundle to standard output, which is a terminal; redirect it or pipe it";
        return Err(TransferError::InvalidLocation(why.into()).into());
    }
    let mut names: Vec<String> = named.iter().map(|r| r.registry.clone()).collect();
    names.extend(set.iter().flat_map(|s| s.registries()));
    names.sort();
    names.dedup();
    let connect = a.connect.options()?;
    if connect.credentials.is_some() && names.len() > 1 {
        let why = format!(
            "--username logs in to one registry, and this export reads from {} ({}); keep per-registry credentials in a docker config file (auths) instead",
            names.len(),
            names.join(", ")
        );
        return Err(TransferError::InvalidArtifacts(vec![why]).into());
    }
    if a.sign_key.is_some() && a.writes_stdout() {
        let why = "a bundle written to standard output cannot have a signature beside it; export to a file or URL";
        return Err(TransferError::InvalidLocation(why.into()).into());
    }
    let sign_key = a.sign_key.as_deref().map(super::sign::signing_key).transpose()?;
    let dest = match &a.to {
        Some(to) if !a.dry_run => Some(g.store(to, a.connect.concurrency)?),
        _ => None,
    };
    let delta = a.delta_base(g).await?;
    let sources = open_sources(names, &connect).await?;
    let (requests, skipped) = requests(a, &sources, set.as_ref()).await?;
    let opts = ExportOptions {
        max_artifacts: a.max_artifacts,
        continue_on_errors: a.continue_on_errors,
        overwrite: a.overwrite,
        compression: if a.compress.is_some() { Compression::Zstd } else { Compression::None },
        concurrency: a.connect.concurrency,
        referrers: !a.no_referrers,
        delta,
    };
    let Some(dest) = dest else {
        let mut plan = barge_transfer::dry_run(&sources, requests, &opts, bars).await?;
        plan.failed.splice(0..0, skipped);
        return dry_run_text(plan);
    };
    let mut r = barge_transfer::export(&sources, requests, dest.as_ref(), &opts, bars).await?;
    r.artifacts.splice(0..0, skipped);
    let mut text = format!(
        "exported {}, {} blobs ({}), to {}\ncatalogDigest: {}\n",
        artifacts_exported(&r.artifacts),
        r.blobs,
        human(r.blob_bytes),
        r.bundle,
        r.catalog_digest
    );
    text += &r.delta.as_ref().map(delta_text).unwrap_or_default();
    for a in r.artifacts.iter().filter(|a| a.status == Status::Failed) {
        text += &format!("failed: {}", a.error.as_deref().unwrap_or(&a.artifact));
        text += &a.hint.as_ref().map(|h| format!("; {}\n", crate::hint::text(h))).unwrap_or_else(|| "\n".into());
    }
    let mut json = serde_json::to_value(&r)?;
    if let (Some(key), Some(to)) = (&sign_key, &a.to) {
        let opts = barge_transfer::StoreOptions { sas_file: g.sas_file.clone(), concurrency: 1 };
        let location = barge_transfer::Location::parse(to, &opts)?;
        let signer =
            barge_transfer::sign::sign_bundle(&location, &opts, key, Some(r.catalog_digest.clone()), bars).await?;
        text += &format!("signed with {signer}: {}{}\n", r.bundle, barge_transfer::sign::SIG_SUFFIX);
        json["signedBy"] = serde_json::to_value(&signer)?;
    }
    Ok(Done { text, partial: any_failed(&r.artifacts), json })
}

/// What a dry run found, for people and (as JSON) for machines.
fn dry_run_text(p: barge_transfer::ExportPlan) -> anyhow::Result<Done> {
    let mut text = format!(
        "would export {} artifact(s) from {}: {} blobs, {}",
        p.artifacts.len(),
        if p.source_registries.is_empty() { "-".to_string() } else { p.source_registries.join(", ") },
        p.blobs,
        human(p.blob_bytes)
    );
    if !p.shared_blobs.is_empty() {
        text += &format!(
            " ({} blobs, {}, shared between artifacts and stored once)",
            p.shared_blobs.len(),
            human(p.shared_bytes)
        );
    }
    text += "\n";
    text += &p.delta.as_ref().map(delta_text).unwrap_or_default();
    let width = p.artifacts.iter().map(|a| a.request.len()).max().unwrap_or(0);
    for a in &p.artifacts {
        let platforms = if a.platforms.is_empty() { String::new() } else { format!("  [{}]", a.platforms.join(", ")) };
        text +=
            &format!("  {:width$}  {}  {:>3} blobs  {:>10}{platforms}\n", a.request, a.digest, a.blobs, human(a.bytes));
    }
    for b in &p.shared_blobs {
        text += &format!("  shared {} ({}): {}\n", b.digest, human(b.size), b.used_by.join(", "));
    }
    for f in &p.failed {
        text += &format!("failed: {}", f.error.as_deref().unwrap_or(&f.artifact));
        text += &f.hint.as_ref().map(|h| format!("; {}\n", crate::hint::text(h))).unwrap_or_else(|| "\n".into());
    }
    let partial = !p.failed.is_empty();
    Ok(Done { text, partial, json: serde_json::to_value(&p)? })
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
            target: None,
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
