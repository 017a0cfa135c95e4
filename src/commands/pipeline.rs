//! `barge pipeline`: export and import pipelines (ACR's ExportPipeline and ImportPipeline), kept in the state store.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use barge_pipeline::pipelines::{delete_pipeline, list_pipelines, load_pipeline, save_pipeline};
use barge_pipeline::resource::{
    parse_options, ExportOption, ExportProperties, ImportOption, ImportProperties, SourceTrigger, StorageRef, Trigger,
    TriggerStatus, EXPORT_OPTIONS, IMPORT_OPTIONS,
};
use barge_pipeline::{Pipeline, StateStore};
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
    /// Create or replace a pipeline from a JSON document shaped like ACR's.
    Apply {
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    List,
    Show {
        name: String,
    },
    Delete {
        name: String,
    },
}

#[derive(Args)]
pub struct Common {
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
    Create {
        #[command(flatten)]
        common: Common,
        /// OverwriteBlobs, ContinueOnErrors.
        #[arg(long, num_args = 1..)]
        options: Vec<String>,
    },
}

#[derive(Subcommand)]
pub enum CreateImport {
    Create {
        #[command(flatten)]
        common: Common,
        #[arg(long, value_enum, default_value_t = Trig::Enabled)]
        source_trigger: Trig,
        /// OverwriteTags, DeleteSourceBlobOnSuccess, ContinueOnErrors.
        #[arg(long, num_args = 1..)]
        options: Vec<String>,
    },
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

fn export_pipeline(common: &Common, options: &[String]) -> anyhow::Result<Pipeline> {
    let options = parse_options::<ExportOption>("export", EXPORT_OPTIONS, "--options", options)?;
    let properties = ExportProperties { registry: common.registry.clone(), target: storage(common), options };
    Ok(Pipeline::Export { name: common.name.clone(), properties })
}

fn import_pipeline(common: &Common, trigger: Trig, options: &[String]) -> anyhow::Result<Pipeline> {
    let options = parse_options::<ImportOption>("import", IMPORT_OPTIONS, "--options", options)?;
    let status = match trigger {
        Trig::Enabled => TriggerStatus::Enabled,
        Trig::Disabled => TriggerStatus::Disabled,
    };
    let properties = ImportProperties {
        registry: common.registry.clone(),
        source: storage(common),
        trigger: Trigger { source_trigger: SourceTrigger { status } },
        options,
    };
    Ok(Pipeline::Import { name: common.name.clone(), properties })
}

fn from_file(file: &Path) -> anyhow::Result<Pipeline> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    Ok(Pipeline::from_json(&bytes)?)
}

/// Create or replace (the library checks it first).
async fn save(state: &dyn StateStore, p: Pipeline) -> anyhow::Result<Done> {
    save_pipeline(state, &p).await?;
    Ok(Done::ok(format!("{} pipeline {} saved\n", p.kind(), p.name()), serde_json::to_value(&p)?))
}

pub async fn run(state: &dyn StateStore, cmd: &PipelineCmd) -> anyhow::Result<Done> {
    match cmd {
        PipelineCmd::Export { cmd: CreateExport::Create { common, options } } => {
            save(state, export_pipeline(common, options)?).await
        }
        PipelineCmd::Import { cmd: CreateImport::Create { common, source_trigger, options } } => {
            save(state, import_pipeline(common, *source_trigger, options)?).await
        }
        PipelineCmd::Apply { file } => save(state, from_file(file)?).await,
        PipelineCmd::List => list(state).await,
        PipelineCmd::Show { name } => {
            let p = load_pipeline(state, name).await?;
            Ok(Done::ok(serde_json::to_string_pretty(&p)? + "\n", serde_json::to_value(&p)?))
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
        all.push(serde_json::to_value(&p)?);
    }
    Ok(Done::ok(text, json!({ "pipelines": all })))
}
