//! `barge export`: artifacts from a registry into one bundle (ACR: an ExportPipeline run).

use barge_transfer::BlobStore;
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
    /// Split the bundle into parts of this size for media (`4GiB`, `4700MB`,
    /// `700MiB`; MB = 10^6 bytes, rounded down to a multiple of 512, at least
    /// 1 MiB): NAME.part0001, … and NAME.parts.json, written last.
    #[arg(long, value_name = "SIZE", value_parser = parse_part_size)]
    part_size: Option<u64>,
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

/// `--to` as a split bundle: NAME (or NAME.parts.json) becomes NAME.partNNNN and NAME.parts.json.
fn split_store(g: &Global, to: &str, part_size: u64, concurrency: usize) -> anyhow::Result<Box<dyn BlobStore>> {
    let opts = barge_transfer::StoreOptions { sas_file: g.sas_file.clone(), concurrency };
    let parts = barge_transfer::Location::parse(to, &opts)?.split()?.open_parts(&opts)?;
    Ok(Box::new(parts.with_part_size(part_size)))
}

/// A part size: bytes, or with a unit (KB, MB, GB, TB are powers of 1000; KiB, MiB, GiB, TiB of 1024),
/// rounded down to a multiple of 512 (a tar block, a disc sector), so a part still fits the medium; at least 1 MiB.
pub fn parse_part_size(s: &str) -> Result<u64, String> {
    let bytes = super::parse_bytes(s, "4GiB, 4700MB")? / 512 * 512;
    if bytes < 1 << 20 {
        return Err(format!("{s} is under 1 MiB; a part is at least 1 MiB (1048576 bytes)"));
    }
    Ok(bytes)
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
        Ok(Some(SetFile::read(path, self.registry.as_deref())?))
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
    mut requests: Vec<ExportRequest>,
    sources: &Sources,
    set: Option<&SetFile>,
) -> anyhow::Result<(Vec<ExportRequest>, Vec<barge_transfer::ArtifactOutcome>)> {
    let referrers = !a.no_referrers;
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
        Some(to) if !a.dry_run => Some(match a.part_size {
            Some(n) => split_store(g, to, n, a.connect.concurrency)?,
            None => g.store(to, a.connect.concurrency)?,
        }),
        _ => None,
    };
    let delta = a.delta_base(g).await?;
    let sources = open_sources(names, &connect).await?;
    let (requests, skipped) = requests(a, named, &sources, set.as_ref()).await?;
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
        artifacts_exported(&r.artifacts, r.artifacts_in_bundle),
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
        let signer = sign(g, a, to, key, &r.catalog_digest, bars, &mut text).await?;
        json["signedBy"] = serde_json::to_value(&signer)?;
    }
    Ok(Done { text, partial: any_failed(&r.artifacts), json })
}

/// Sign the bundle just written at `to` (its parts.json when split): `NAME.sig` beside it.
async fn sign(
    g: &Global,
    a: &Args,
    to: &str,
    key: &barge_transfer::sign::SigningKey,
    catalog_digest: &barge_bundle::Digest,
    bars: &Bars,
    text: &mut String,
) -> anyhow::Result<barge_transfer::sign::Signer> {
    let opts = barge_transfer::StoreOptions { sas_file: g.sas_file.clone(), concurrency: 1 };
    let location = barge_transfer::Location::parse(to, &opts)?;
    let location = if a.part_size.is_some() { location.split()? } else { location };
    let signer = barge_transfer::sign::sign_bundle(&location, &opts, key, Some(catalog_digest.clone()), bars).await?;
    let sig = barge_transfer::sign::beside(&location, barge_transfer::sign::SIG_SUFFIX)?.open(&opts)?.display();
    *text += &format!("signed with {signer}: {sig}\n");
    Ok(signer)
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

/// "N artifact(s)" (what the bundle holds), and how many requests they
/// answer when two of them name one artifact (`hello`, `hello:latest`; one
/// registry by two names).
fn artifacts_exported(outcomes: &[barge_transfer::ArtifactOutcome], in_bundle: usize) -> String {
    let ok = outcomes.iter().filter(|a| a.status != Status::Failed).count();
    if in_bundle == ok {
        format!("{ok} artifact(s)")
    } else {
        format!("{in_bundle} artifact(s) ({ok} requests)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use barge_transfer::ArtifactOutcome;

    #[test]
    fn part_sizes_read_as_media_sizes() {
        assert_eq!(parse_part_size("4GiB"), Ok(4 << 30));
        // 4.7 GB is not a whole number of 512-byte sectors: rounded down, it still fits the disc.
        assert_eq!(parse_part_size("4700MB"), Ok(4_700_000_000 / 512 * 512));
        assert_eq!(parse_part_size("700MiB"), Ok(700 << 20));
        assert_eq!(parse_part_size("1048576"), Ok(1 << 20));
        assert!(parse_part_size("1000KB").is_err(), "under 1 MiB");
        assert_eq!(parse_part_size("1048577"), Ok(1 << 20));
        assert!(parse_part_size("4 parsecs").is_err());
        assert!(parse_part_size("GiB").is_err());
    }

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
        assert_eq!(artifacts_exported(&[ok("hello"), ok("hello:latest")], 1), "1 artifact(s) (2 requests)");
        assert_eq!(artifacts_exported(&[ok("hello"), ok("hello:v1")], 2), "2 artifact(s)");
        // One repository of one registry by two of its names: one artifact in the bundle.
        let two = [ok("127.0.0.1:5000/team/x:1"), ok("localhost:5000/team/x:1")];
        assert_eq!(artifacts_exported(&two, 1), "1 artifact(s) (2 requests)");
        let mut failed = ok("hello:latest");
        failed.status = Status::Failed;
        assert_eq!(artifacts_exported(&[ok("hello"), failed], 1), "1 artifact(s)");
    }
}
