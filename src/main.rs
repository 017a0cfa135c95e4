//! The `barge` command line: parses arguments, calls one library operation, prints its report.
//!
//! `anyhow` lives only here; the libraries return typed errors whose category
//! decides the exit code (see README: "Exit codes").

mod pipeline;
mod progress;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use barge_bundle::{BundleError, Digest, VerifyOptions};
use barge_transfer::{
    any_failed, Category, Compression, ConnectOptions, CopyOptions, Credentials, ExportOptions, ImportOptions,
    Location, Overwrite, RegistryAddr, Secret, Status, StoreOptions, TransferError, DEFAULT_MAX_ARTIFACTS,
};
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::json;

use progress::Bars;

/// Carry OCI artifacts across an air gap: export them into one bundle, copy it, import it verified.
#[derive(Parser)]
#[command(name = "barge", version, about, max_term_width = 100)]
struct Cli {
    /// How to print the result: text for people, json for one summary object on stdout.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    output: Output,
    /// Print nothing but errors (and the JSON summary with --output json).
    #[arg(long, short, global = true)]
    quiet: bool,
    /// Where pipelines and runs are kept: a directory (default:
    /// $XDG_STATE_HOME/barge), or a storage container URL that several
    /// machines share (its SAS from --state-secret).
    #[arg(long, global = true, env = "BARGE_STATE", value_name = "DIR|URL")]
    state: Option<String>,
    /// Where the SAS of a --state container is read: env:NAME or file:PATH.
    #[arg(long, global = true, value_name = "REF")]
    state_secret: Option<String>,
    /// A file holding the SAS token for storage URLs that carry none
    /// (also: AZURE_STORAGE_SAS_TOKEN, AZURE_STORAGE_CONNECTION_STRING).
    #[arg(long, global = true, value_name = "PATH")]
    sas_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// How to reach and log in to a network registry.
#[derive(clap::Args)]
struct Connect {
    /// Reach this registry (HOST[:PORT]) over plain HTTP; loopback addresses always may be.
    #[arg(long = "insecure-registry", value_name = "HOST")]
    insecure: Vec<String>,
    /// Trust the CA certificates in this PEM file as well.
    #[arg(long, value_name = "PEM")]
    ca_file: Option<PathBuf>,
    /// Log in as this user; the password is read from stdin (--password-stdin).
    #[arg(long, requires = "password_stdin")]
    username: Option<String>,
    /// Read the password for --username from standard input.
    #[arg(long, requires = "username")]
    password_stdin: bool,
    /// Blobs transferred at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
}

impl Connect {
    fn options(&self) -> anyhow::Result<ConnectOptions> {
        let credentials = match &self.username {
            Some(u) => {
                let mut p = String::new();
                std::io::stdin().read_line(&mut p).context("reading the password from stdin")?;
                let p = p.trim_end_matches(['\n', '\r']);
                anyhow::ensure!(!p.is_empty(), "--password-stdin read an empty password");
                Some(Credentials { username: u.clone(), password: Secret::new(p) })
            }
            None => None,
        };
        Ok(ConnectOptions { insecure: self.insecure.clone(), ca_file: self.ca_file.clone(), credentials })
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Export artifacts from a registry into one bundle (ACR: ExportPipeline run).
    Export {
        /// Source registry: HOST[:PORT], or oci:PATH (a directory of OCI layouts, one per repository).
        #[arg(long)]
        registry: String,
        #[command(flatten)]
        connect: Connect,
        /// Leave out signatures, SBOMs and attestations that refer to the artifacts.
        #[arg(long)]
        no_referrers: bool,
        /// Where to write the bundle.
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
        /// Artifacts: repo (means :latest), repo:tag, repo@sha256:...
        #[arg(required = true)]
        artifacts: Vec<String>,
    },
    /// Import a bundle into a registry, verifying every digest (ACR: ImportPipeline run).
    Import {
        /// The bundle to import.
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
    },
    /// Copy a bundle (any blob) from one location to another, checked before it takes its name.
    Copy {
        /// A file path or a storage URL (https://ACCOUNT.blob.core.windows.net/CONTAINER/BLOB?SAS).
        source: String,
        destination: String,
        /// Replace an existing destination: true (a bare --overwrite), false, or if-source-newer.
        #[arg(long, value_enum, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true")]
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
    },
    /// Export and import pipelines (ACR's ExportPipeline and ImportPipeline).
    Pipeline {
        #[command(subcommand)]
        cmd: pipeline::PipelineCmd,
    },
    /// Pipeline runs (ACR's PipelineRun).
    Run {
        #[command(subcommand)]
        cmd: pipeline::RunCmd,
    },
    /// The import trigger: import every new bundle that lands in an enabled import pipeline's container.
    Watch(pipeline::WatchArgs),
    /// Check a bundle offline: every digest, every reference, no unsafe entry.
    Verify {
        /// A file path or a storage URL (its SAS as for import: in the URL, --sas-file or the environment).
        bundle: String,
        /// Also require the sha256 of the whole file to be this.
        #[arg(long, value_parser = parse_digest)]
        catalog_digest: Option<Digest>,
        /// Hashing threads (default: one per core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum OverwriteArg {
    True,
    False,
    IfSourceNewer,
}

#[derive(Clone, Copy, ValueEnum)]
enum Compress {
    Zstd,
}

fn parse_digest(s: &str) -> Result<Digest, String> {
    Digest::parse(s).map_err(|e| e.to_string())
}

impl Cli {
    /// Pipelines and runs: in a storage container (`--state URL`) or a directory.
    fn state_store(&self) -> anyhow::Result<Box<dyn barge_pipeline::StateStore>> {
        let location = match &self.state {
            Some(s) => s.clone(),
            None => barge_pipeline::default_dir().display().to_string(),
        };
        let remote = location.starts_with("http://") || location.starts_with("https://");
        let sas = match (&self.state_secret, remote) {
            (Some(r), true) => Some(barge_pipeline::secret::SecretRef::parse(r)?.resolve()?),
            _ => None,
        };
        if !remote {
            std::fs::create_dir_all(&location).with_context(|| format!("creating the state directory {location}"))?;
        }
        let container = barge_transfer::store::open_container(&location, sas, 4)?;
        Ok(Box::new(barge_pipeline::BlobState::new(container)))
    }

    fn store(&self, location: &str, concurrency: usize) -> anyhow::Result<Box<dyn barge_transfer::BlobStore>> {
        let opts = StoreOptions { sas_file: self.sas_file.clone(), concurrency };
        Ok(Location::parse(location, &opts)?.open(&opts)?)
    }
}

/// What a command prints on success, and whether it was complete.
pub(crate) struct Done {
    text: String,
    json: serde_json::Value,
    partial: bool,
}

const EXIT_OTHER: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_INTEGRITY: u8 = 3;
const EXIT_AUTH: u8 = 4;
const EXIT_NO_SPACE: u8 = 5;
const EXIT_PARTIAL: u8 = 6;
const EXIT_INTERRUPTED: u8 = 130;

fn category_code(c: Category) -> u8 {
    match c {
        Category::Usage => EXIT_USAGE,
        Category::Integrity => EXIT_INTEGRITY,
        Category::Auth => EXIT_AUTH,
        Category::NoSpace => EXIT_NO_SPACE,
        Category::Other => EXIT_OTHER,
    }
}

fn exit_code(e: &anyhow::Error) -> u8 {
    if let Some(t) = e.downcast_ref::<TransferError>() {
        return category_code(t.category());
    }
    if let Some(p) = e.downcast_ref::<barge_pipeline::PipelineError>() {
        use barge_pipeline::PipelineError as P;
        return match p {
            P::Invalid(_) => EXIT_USAGE,
            P::Secret(_) => EXIT_AUTH,
            P::Transfer(t) => category_code(t.category()),
            P::NotFound(_) | P::Conflict(_) | P::State(_) => EXIT_OTHER,
        };
    }
    if let Some(b) = e.downcast_ref::<BundleError>() {
        return match b {
            BundleError::Io(io) if permission(io) => EXIT_AUTH,
            BundleError::Io(_) => EXIT_OTHER,
            _ => EXIT_INTEGRITY,
        };
    }
    // A plain IO error (reading a file named on the command line, say).
    if e.chain().filter_map(|c| c.downcast_ref::<std::io::Error>()).any(permission) {
        return EXIT_AUTH;
    }
    EXIT_OTHER
}

/// EACCES and EROFS alike: the caller may not write (or read) there.
fn permission(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem)
}

async fn run(cli: &Cli, bars: &Bars) -> anyhow::Result<Done> {
    match &cli.command {
        Command::Export {
            registry,
            connect,
            no_referrers,
            to,
            overwrite,
            continue_on_errors,
            max_artifacts,
            compress,
            artifacts,
        } => {
            barge_transfer::parse_artifacts(artifacts, *max_artifacts)?;
            let registry = RegistryAddr::parse(registry)?.open(&connect.options()?).await?;
            let dest = cli.store(to, connect.concurrency)?;
            let opts = ExportOptions {
                max_artifacts: *max_artifacts,
                continue_on_errors: *continue_on_errors,
                overwrite: *overwrite,
                compression: if compress.is_some() { Compression::Zstd } else { Compression::None },
                concurrency: connect.concurrency,
                referrers: !no_referrers,
            };
            let r = barge_transfer::export(registry, artifacts, dest.as_ref(), &opts, bars).await?;
            let mut text = format!(
                "exported {}, {} blobs ({}), to {}\ncatalogDigest: {}\n",
                artifacts_exported(&r.artifacts),
                r.blobs,
                human(r.blob_bytes),
                r.bundle,
                r.catalog_digest
            );
            for a in r.artifacts.iter().filter(|a| a.status == Status::Failed) {
                text += &format!("failed: {}\n", a.error.as_deref().unwrap_or(&a.artifact));
            }
            Ok(Done { text, partial: any_failed(&r.artifacts), json: serde_json::to_value(&r)? })
        }
        Command::Import {
            source,
            registry,
            connect,
            overwrite_tags,
            continue_on_errors,
            delete_source_blob_on_success,
            catalog_digest,
        } => {
            let registry = RegistryAddr::parse(registry)?.open_for_writing(&connect.options()?).await?;
            let src = cli.store(source, connect.concurrency)?;
            let opts = ImportOptions {
                overwrite_tags: *overwrite_tags,
                continue_on_errors: *continue_on_errors,
                delete_source_on_success: *delete_source_blob_on_success,
                catalog_digest: catalog_digest.clone(),
                // A local bundle is hashed whole only for --catalog-digest; a stream always is.
                report_catalog_digest: false,
                concurrency: connect.concurrency,
            };
            let r = barge_transfer::import(src.into(), registry, &opts, bars).await?;
            let mut text = String::new();
            for a in &r.artifacts {
                let status = match a.status {
                    Status::Succeeded => "imported ",
                    Status::Unchanged => "unchanged",
                    Status::Failed => "failed   ",
                };
                text += &format!("{status} {}", a.artifact);
                if let Some(e) = &a.error {
                    text += &format!(": {e}");
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
            if let Some(d) = &r.catalog_digest {
                text += &format!("catalogDigest: {d}\n");
            }
            if r.source_deleted {
                text += &format!("deleted {}\n", r.bundle);
            }
            Ok(Done { text, partial: any_failed(&r.artifacts), json: serde_json::to_value(&r)? })
        }
        Command::Copy { source, destination, overwrite, verify, relay, concurrency } => {
            let overwrite = match overwrite {
                OverwriteArg::True => Overwrite::True,
                OverwriteArg::False => Overwrite::False,
                OverwriteArg::IfSourceNewer => Overwrite::IfSourceNewer,
            };
            let src = cli.store(source, *concurrency)?;
            let dst = cli.store(destination, *concurrency)?;
            let r = barge_transfer::copy(
                src.as_ref(),
                dst.as_ref(),
                &CopyOptions { overwrite, verify: *verify, concurrency: *concurrency, relay: *relay },
                bars,
            )
            .await?;
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
            Ok(Done { text, partial: false, json: serde_json::to_value(&r)? })
        }
        Command::Pipeline { cmd } => pipeline::pipeline(cli.state_store()?.as_ref(), cmd).await,
        Command::Run { cmd } => pipeline::run(cli.state_store()?.as_ref(), cmd, &ConnectOptions::default()).await,
        Command::Watch(args) => {
            pipeline::watch_cmd(cli.state_store()?.as_ref(), args, &ConnectOptions::default(), cli.quiet).await
        }
        Command::Verify { bundle, catalog_digest, threads } => {
            let opts = VerifyOptions { catalog_digest: catalog_digest.clone(), threads: *threads };
            let store_opts = StoreOptions { sas_file: cli.sas_file.clone(), concurrency: 1 };
            let location = Location::parse(bundle, &store_opts)?;
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
            Ok(Done { text, partial: false, json })
        }
    }
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

fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Set once the outcome is decided: a task that panics after this (one
/// that sees its sibling cancelled while the process ends) has nothing to say.
static ENDING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Report panics as the default hook does, except while the process ends.
fn quiet_panics_when_ending() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !ENDING.load(std::sync::atomic::Ordering::SeqCst) {
            default(info);
        }
    }));
}

/// Ctrl-C or SIGTERM. The handlers are installed when this is called, before
/// the operation starts, so a signal never falls on the default action.
fn interrupted() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}

/// Large buffers (blocks, partitions) come and go on many threads. glibc would
/// raise its mmap threshold after the first free and then keep such buffers in
/// per-thread arenas, so RSS would grow with the thread count; a fixed
/// threshold returns them to the system when freed. The workspace's only
/// `unsafe` (the libraries forbid it).
#[allow(unsafe_code)]
fn bound_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
    }
}

fn main() -> ExitCode {
    bound_allocator();
    let cli = Cli::parse();
    quiet_panics_when_ending();
    let bars = Bars::new(cli.quiet || cli.output == Output::Json);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let signalled = {
        let _ctx = rt.enter();
        interrupted()
    };
    let signalled = match signalled {
        Ok(s) => s,
        Err(e) => {
            eprintln!("barge: error: installing the Ctrl-C and SIGTERM handlers: {e}");
            return ExitCode::from(EXIT_OTHER);
        }
    };
    let result = rt.block_on(async {
        tokio::select! {
            r = run(&cli, &bars) => Some(r),
            _ = signalled => None,
        }
    });
    // The operation is dropped by now, and with it the temporary files it held.
    ENDING.store(true, std::sync::atomic::Ordering::SeqCst);
    bars.clear();
    let (code, outcome) = match result {
        None => (EXIT_INTERRUPTED, Err("interrupted; nothing was left half-written".to_string())),
        Some(Ok(done)) => (if done.partial { EXIT_PARTIAL } else { 0 }, Ok(done)),
        Some(Err(e)) => (exit_code(&e), Err(barge_transfer::Hint::with_hint(format!("{e:#}"), e.chain()))),
    };
    if code == EXIT_INTERRUPTED {
        // Tasks and blocking threads (hashing, a write in flight) may still
        // hold temporary files: remove them now, then end without waiting.
        barge_transfer::temp::remove_all_and_close();
    }
    print_outcome(&cli, code, outcome);
    let _ = std::io::Write::flush(&mut std::io::stdout());
    if code == EXIT_INTERRUPTED {
        std::process::exit(code.into());
    }
    // Let what is still running drop its temporary files, but never wait long.
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    barge_transfer::temp::remove_all_and_close();
    ExitCode::from(code)
}

fn print_outcome(cli: &Cli, code: u8, outcome: Result<Done, String>) {
    match (cli.output, outcome) {
        (Output::Json, Ok(done)) => {
            let mut v = done.json;
            v["exitCode"] = json!(code);
            println!("{v}");
        }
        (Output::Json, Err(msg)) => println!("{}", json!({"error": msg, "exitCode": code})),
        (Output::Text, Ok(done)) => {
            if !cli.quiet || done.partial {
                print!("{}", done.text);
            }
        }
        (Output::Text, Err(msg)) => eprintln!("barge: error: {msg}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use barge_transfer::ArtifactOutcome;

    fn ok(artifact: &str) -> ArtifactOutcome {
        ArtifactOutcome { artifact: artifact.into(), digest: None, status: Status::Succeeded, error: None }
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
