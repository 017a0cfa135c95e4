//! `barge pipeline`: export and import pipelines (ACR's ExportPipeline and ImportPipeline), kept in the state store.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use barge_pipeline::pipelines::{delete_pipeline, list_pipelines, load_document, save_document, save_pipeline};
use barge_pipeline::resource::{
    check_placement, parse_options, ExportOption, ExportProperties, ImportOption, ImportProperties, SourceTrigger,
    StorageRef, Trigger, TriggerStatus, EXPORT_OPTIONS, IMPORT_OPTIONS,
};
use barge_pipeline::{Pipeline, PipelineError, StateStore};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;

use super::Done;

#[derive(Subcommand)]
pub enum PipelineCmd {
    /// Create or replace an export pipeline.
    Export {
        #[command(subcommand)]
        cmd: CreateExport,
    },
    /// Create or replace an import pipeline.
    Import {
        #[command(subcommand)]
        cmd: CreateImport,
    },
    /// Create or replace a pipeline from ACR's JSON (what `az acr export-pipeline show -o json` or
    /// `az acr import-pipeline show -o json` prints, or an ARM template's resource); unknown fields are kept.
    Apply {
        /// The JSON document to apply.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// The registry (HOST[:PORT] or oci:PATH), when the document has no properties.registry
        /// (ACR implies it from the resource's parent).
        #[arg(long)]
        registry: Option<String>,
    },
    /// Every pipeline, one line each.
    List,
    /// The pipeline's document, ACR's shape (what `apply -f` takes back).
    Show {
        /// The pipeline's name.
        name: String,
    },
    /// Delete the pipeline (its runs' records stay).
    Delete {
        /// The pipeline's name.
        name: String,
    },
}

#[derive(Args)]
pub struct Common {
    /// The pipeline's name (letters, digits, dashes).
    name: String,
    /// The registry: HOST[:PORT] or oci:PATH.
    #[arg(long)]
    registry: String,
    /// https://ACCOUNT.blob.core.windows.net/CONTAINER (or a local directory).
    #[arg(long)]
    storage_container_uri: String,
    /// Where the SAS is read at run time: env:NAME or file:PATH (never the SAS itself).
    #[arg(long)]
    secret: Option<String>,
}

#[derive(Subcommand)]
pub enum CreateExport {
    /// Create or replace the export pipeline NAME.
    Create {
        #[command(flatten)]
        common: Common,
        /// OverwriteBlobs, ContinueOnErrors.
        #[arg(long, num_args = 1..)]
        options: Vec<String>,
        /// Sign every run's bundle with the OpenSSH private key read at run time from this
        /// secret reference (env:NAME, file:PATH or a Key Vault secret URL).
        #[arg(long, value_name = "REF")]
        signing_key: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum CreateImport {
    /// Create or replace the import pipeline NAME.
    Create {
        #[command(flatten)]
        common: Common,
        /// Whether `barge watch` imports what lands in the container (ACR's source trigger).
        #[arg(long, value_enum, default_value_t = Trig::Enabled)]
        source_trigger: Trig,
        /// OverwriteTags, DeleteSourceBlobOnSuccess, ContinueOnErrors, RewritePlatformIndex.
        #[arg(long, num_args = 1..)]
        options: Vec<String>,
        #[command(flatten)]
        placement: PlacementArgs,
        /// Require every bundle to be signed by one of these keys (ssh-keygen's allowed_signers
        /// format): `file:PATH`, read at run time, or the lines themselves.
        #[arg(long, value_name = "file:PATH|LINES")]
        allowed_signers: Option<String>,
    },
}

/// Where an import pipeline's runs write the artifacts (properties.repositoryPrefix and repositoryMap).
#[derive(Args)]
pub struct PlacementArgs {
    /// Put every artifact under this repository path, as `barge import --prefix`.
    #[arg(long, value_name = "PATH")]
    prefix: Option<String>,
    /// Rewrite repository paths starting with SRC to start with DST, as `barge import --map`; repeatable.
    #[arg(long = "map", value_name = "SRC=DST")]
    maps: Vec<String>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Trig {
    Enabled,
    Disabled,
}

fn storage(c: &Common) -> StorageRef {
    StorageRef {
        kind: "AzureStorageBlobContainer".into(),
        uri: c.storage_container_uri.clone(),
        secret_uri: c.secret.clone(),
    }
}

fn export_pipeline(common: &Common, options: &[String], signing_key: Option<&String>) -> anyhow::Result<Pipeline> {
    let options = parse_options::<ExportOption>("export", EXPORT_OPTIONS, "--options", options)?;
    let properties = ExportProperties {
        registry: common.registry.clone(),
        target: storage(common),
        options,
        signing_key: signing_key.cloned(),
    };
    Ok(Pipeline::Export { name: common.name.clone(), properties })
}

fn import_pipeline(
    common: &Common,
    trigger: Trig,
    options: &[String],
    placement: &PlacementArgs,
    allowed_signers: Option<&String>,
) -> anyhow::Result<Pipeline> {
    let options = parse_options::<ImportOption>("import", IMPORT_OPTIONS, "--options", options)?;
    check_placement(placement.prefix.as_deref(), &placement.maps, "--prefix", "--map")?;
    let status = match trigger {
        Trig::Enabled => TriggerStatus::Enabled,
        Trig::Disabled => TriggerStatus::Disabled,
    };
    let properties = ImportProperties {
        registry: common.registry.clone(),
        source: storage(common),
        trigger: Trigger { source_trigger: SourceTrigger { status } },
        options,
        repository_prefix: placement.prefix.clone(),
        repository_map: placement.maps.clone(),
        allowed_signers: allowed_signers.cloned(),
    };
    Ok(Pipeline::Import { name: common.name.clone(), properties })
}

/// Apply a document: checked, then stored whole.
async fn apply(state: &dyn StateStore, file: &Path, registry: Option<&str>) -> anyhow::Result<Done> {
    let mut bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    // What `show --output json` printed: its exitCode is barge's envelope, not the resource's.
    if let Ok(serde_json::Value::Object(mut m)) = serde_json::from_slice(&bytes) {
        if m.remove("exitCode").is_some() {
            bytes = serde_json::to_vec(&m)?;
        }
    }
    if registry.is_none() {
        no_registry(&bytes)?;
    }
    let (p, doc) = Pipeline::from_document(&bytes, registry)?;
    save_document(state, &p, &doc).await?;
    Ok(Done::ok(format!("{} pipeline {} saved\n", p.kind(), p.name()), doc))
}

/// A document without properties.registry needs --registry: say so, with the registry its id names.
fn no_registry(bytes: &[u8]) -> Result<(), PipelineError> {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(bytes) else { return Ok(()) };
    // ARM nests the properties; az prints them flattened into the top level.
    let has = match v.get("properties") {
        Some(p) => p.get("registry").is_some(),
        None => !v.is_object() || v.get("registry").is_some(),
    };
    if has {
        return Ok(());
    }
    let example = match barge_pipeline::resource::acr_registry(&v) {
        Some(r) => format!(" (the id names ACR registry {r}: --registry {}.azurecr.io, say)", r.to_ascii_lowercase()),
        None => String::new(),
    };
    Err(PipelineError::Invalid(format!(
        "the pipeline document names no registry: give --registry HOST[:PORT] or oci:PATH{example}, \
         or add properties.registry to the document"
    )))
}

/// Create or replace (the library checks it first).
async fn save(state: &dyn StateStore, p: Pipeline) -> anyhow::Result<Done> {
    save_pipeline(state, &p).await?;
    Ok(Done::ok(format!("{} pipeline {} saved\n", p.kind(), p.name()), serde_json::to_value(&p)?))
}

pub async fn run(state: &dyn StateStore, cmd: &PipelineCmd) -> anyhow::Result<Done> {
    match cmd {
        PipelineCmd::Export { cmd: CreateExport::Create { common, options, signing_key } } => {
            save(state, export_pipeline(common, options, signing_key.as_ref())?).await
        }
        PipelineCmd::Import {
            cmd: CreateImport::Create { common, source_trigger, options, placement, allowed_signers },
        } => save(state, import_pipeline(common, *source_trigger, options, placement, allowed_signers.as_ref())?).await,
        PipelineCmd::Apply { file, registry } => apply(state, file, registry.as_deref()).await,
        PipelineCmd::List => list(state).await,
        PipelineCmd::Show { name } => {
            let doc = load_document(state, name).await?;
            Ok(Done::ok(serde_json::to_string_pretty(&doc)? + "\n", doc))
        }
        PipelineCmd::Delete { name } => {
            delete_pipeline(state, name).await?;
            Ok(Done::ok(format!("deleted pipeline {name}\n"), json!({ "deleted": name })))
        }
    }
}

async fn list(state: &dyn StateStore) -> anyhow::Result<Done> {
    let mut text = format!("{:<24} {:<7} {:<40} {}\n", "NAME", "KIND", "STORAGE", "REGISTRY");
    let mut all = Vec::new();
    for p in list_pipelines(state).await? {
        let (storage, registry) = match &p {
            Pipeline::Export { properties, .. } => (&properties.target.uri, &properties.registry),
            Pipeline::Import { properties, .. } => (&properties.source.uri, &properties.registry),
        };
        text += &format!("{:<24} {:<7} {:<40} {}\n", p.name(), p.kind(), storage, registry);
        all.push(load_document(state, p.name()).await?);
    }
    Ok(Done::ok(text, json!({ "pipelines": all })))
}
