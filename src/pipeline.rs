//! The `pipeline`, `run` and `watch` commands: ACR's resource model, stored in a state directory.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use barge_pipeline::resource::{
    parse_options, ExportOption, ExportProperties, ImportOption, ImportProperties, SourceTrigger, StorageRef, Trigger,
    TriggerStatus, EXPORT_OPTIONS, IMPORT_OPTIONS,
};
use barge_pipeline::run::{load_pipeline, load_run, submit, Submit};
use barge_pipeline::watch::{watch, Event, WatchOptions};
use barge_pipeline::{Kind, Pipeline, PipelineError, PipelineRun, RunStatus, StateStore};
use barge_transfer::ConnectOptions;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;

use crate::Done;

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

#[derive(Subcommand)]
pub enum RunCmd {
    /// Submit a run and wait for it. The same properties again do nothing unless --force-update-tag changes.
    Create {
        name: String,
        #[arg(long)]
        pipeline: String,
        /// Export: the artifacts (repo, repo:tag, repo@sha256:...).
        #[arg(long, num_args = 1..)]
        artifacts: Vec<String>,
        /// The blob's name in the pipeline's container (export: written; import: read).
        #[arg(long)]
        blob: String,
        #[arg(long)]
        catalog_digest: Option<String>,
        /// Change it (to the current time, say) to run identical properties again.
        #[arg(long)]
        force_update_tag: Option<String>,
    },
    List,
    /// The run's record; while it runs, its progress.
    Show {
        name: String,
    },
    /// Delete the run's record (not what it transferred).
    Delete {
        name: String,
    },
}

#[derive(Args)]
pub struct WatchArgs {
    /// Only these import pipelines (default: every import pipeline whose source trigger is enabled).
    #[arg(long = "pipeline")]
    pipelines: Vec<String>,
    /// Seconds between passes.
    #[arg(long, default_value_t = 5)]
    interval: u64,
    /// One pass, then exit.
    #[arg(long)]
    once: bool,
}

fn storage(c: &Common) -> StorageRef {
    StorageRef {
        kind: "AzureStorageBlobContainer".into(),
        uri: c.storage_container_uri.clone(),
        secret_uri: c.secret.clone(),
    }
}

async fn save(state: &dyn StateStore, p: Pipeline) -> anyhow::Result<Done> {
    p.check()?;
    let bytes = serde_json::to_vec_pretty(&p)?;
    // Create or replace: read the version first so that a concurrent change is not lost silently.
    let current = state.get(Kind::Pipeline, p.name()).await?.map(|(_, v)| v);
    state.put(Kind::Pipeline, p.name(), &bytes, current.as_ref()).await?;
    Ok(Done {
        text: format!("{} pipeline {} saved\n", p.kind(), p.name()),
        json: serde_json::to_value(&p)?,
        partial: false,
    })
}

pub async fn pipeline(state: &dyn StateStore, cmd: &PipelineCmd) -> anyhow::Result<Done> {
    match cmd {
        PipelineCmd::Export { cmd: CreateExport::Create { common, options } } => {
            let options = parse_options::<ExportOption>("export", EXPORT_OPTIONS, "--options", options)?;
            let properties = ExportProperties { registry: common.registry.clone(), target: storage(common), options };
            save(state, Pipeline::Export { name: common.name.clone(), properties }).await
        }
        PipelineCmd::Import { cmd: CreateImport::Create { common, source_trigger, options } } => {
            let options = parse_options::<ImportOption>("import", IMPORT_OPTIONS, "--options", options)?;
            let status = match source_trigger {
                Trig::Enabled => TriggerStatus::Enabled,
                Trig::Disabled => TriggerStatus::Disabled,
            };
            let properties = ImportProperties {
                registry: common.registry.clone(),
                source: storage(common),
                trigger: Trigger { source_trigger: SourceTrigger { status } },
                options,
            };
            save(state, Pipeline::Import { name: common.name.clone(), properties }).await
        }
        PipelineCmd::Apply { file } => {
            let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
            save(state, Pipeline::from_json(&bytes)?).await
        }
        PipelineCmd::List => {
            let mut text = format!("{:<24} {:<7} {:<40} {}\n", "NAME", "KIND", "STORAGE", "REGISTRY");
            let mut all = Vec::new();
            for name in state.list(Kind::Pipeline).await? {
                let p = load_pipeline(state, &name).await?;
                let (storage, registry) = match &p {
                    Pipeline::Export { properties, .. } => (&properties.target.uri, &properties.registry),
                    Pipeline::Import { properties, .. } => (&properties.source.uri, &properties.registry),
                };
                text += &format!("{:<24} {:<7} {:<40} {}\n", name, p.kind(), storage, registry);
                all.push(serde_json::to_value(&p)?);
            }
            Ok(Done { text, json: json!({ "pipelines": all }), partial: false })
        }
        PipelineCmd::Show { name } => {
            let p = load_pipeline(state, name).await?;
            Ok(Done { text: serde_json::to_string_pretty(&p)? + "\n", json: serde_json::to_value(&p)?, partial: false })
        }
        PipelineCmd::Delete { name } => {
            if !state.delete(Kind::Pipeline, name).await? {
                return Err(PipelineError::NotFound(format!("pipeline {name}")).into());
            }
            Ok(Done { text: format!("deleted pipeline {name}\n"), json: json!({ "deleted": name }), partial: false })
        }
    }
}

fn describe(run: &PipelineRun) -> String {
    let r = &run.properties.response;
    let mut s = format!("run {}: {:?}", run.name, r.status);
    if let Some(d) = &r.catalog_digest {
        s += &format!(", catalogDigest {d}");
    }
    if !r.imported_artifacts.is_empty() {
        s += &format!(", imported {}", r.imported_artifacts.join(" "));
    }
    if let Some(m) = &r.pipeline_run_error_message {
        s += &format!("\n  pipelineRunErrorMessage: {m}");
    }
    s + "\n"
}

pub async fn run(state: &dyn StateStore, cmd: &RunCmd, connect: &ConnectOptions) -> anyhow::Result<Done> {
    match cmd {
        RunCmd::Create { name, pipeline, artifacts, blob, catalog_digest, force_update_tag } => {
            let s = Submit {
                name: name.clone(),
                pipeline: pipeline.clone(),
                artifacts: artifacts.clone(),
                blob: blob.clone(),
                catalog_digest: catalog_digest.clone(),
                force_update_tag: force_update_tag.clone(),
                ..Default::default()
            };
            let (run, executed) = submit(state, &s, connect, None).await?;
            let mut text = describe(&run);
            if !executed {
                text = format!("run {name} already has these properties; nothing to do (change --force-update-tag to run it again)\n") + &text;
            }
            let r = &run.properties.response;
            if r.status == RunStatus::Failed {
                anyhow::bail!("run {name} failed: {}", r.pipeline_run_error_message.as_deref().unwrap_or("no message"));
            }
            let partial = barge_transfer::any_failed(&r.artifacts);
            Ok(Done { text, json: serde_json::to_value(&run)?, partial })
        }
        RunCmd::List => {
            let mut text =
                format!("{:<30} {:<18} {:<10} {:>4} {:<21} {}\n", "NAME", "PIPELINE", "STATUS", "%", "START", "ERROR");
            let mut all = Vec::new();
            for name in state.list(Kind::Run).await? {
                let Some((run, _)) = load_run(state, &name).await? else { continue };
                let r = &run.properties.response;
                let mut err = r.pipeline_run_error_message.clone().unwrap_or_default();
                if err.chars().count() > 80 {
                    err = err.chars().take(77).collect::<String>() + "...";
                }
                text += &format!(
                    "{:<30} {:<18} {:<10} {:>4} {:<21} {}\n",
                    run.name,
                    run.properties.request.pipeline_resource_id,
                    format!("{:?}", r.status),
                    r.progress.percentage,
                    r.start_time,
                    err
                );
                all.push(serde_json::to_value(&run)?);
            }
            Ok(Done { text, json: json!({ "runs": all }), partial: false })
        }
        RunCmd::Show { name } => {
            let (run, _) =
                load_run(state, name).await?.ok_or_else(|| PipelineError::NotFound(format!("run {name}")))?;
            let mut text = serde_json::to_string_pretty(&run)? + "\n";
            if run.properties.response.status == RunStatus::Running {
                text += &format!("running: {}% done\n", run.properties.response.progress.percentage);
            }
            Ok(Done { text, json: serde_json::to_value(&run)?, partial: false })
        }
        RunCmd::Delete { name } => {
            if !state.delete(Kind::Run, name).await? {
                return Err(PipelineError::NotFound(format!("run {name}")).into());
            }
            Ok(Done { text: format!("deleted run {name}\n"), json: json!({ "deleted": name }), partial: false })
        }
    }
}

pub async fn watch_cmd(
    state: &dyn StateStore,
    args: &WatchArgs,
    connect: &ConnectOptions,
    quiet: bool,
) -> anyhow::Result<Done> {
    let opts = WatchOptions {
        pipelines: args.pipelines.clone(),
        interval: Duration::from_secs(args.interval.max(1)),
        once: args.once,
    };
    let events = std::sync::Mutex::new(Vec::new());
    let report = |e: Event| {
        let line = match &e {
            Event::Imported { pipeline, blob, run, status, message } => {
                format!(
                    "{pipeline}: {blob}: run {run} {status:?}{}",
                    message.as_deref().map(|m| format!(": {m}")).unwrap_or_default()
                )
            }
            Event::NotABundle { pipeline, blob } => format!("{pipeline}: {blob}: not a barge bundle; skipped"),
            Event::PipelineError { pipeline, error } => format!("{pipeline}: {error}"),
        };
        if !quiet {
            eprintln!("{line}");
        }
        events.lock().unwrap().push(line);
    };
    watch(state, &opts, connect, &report).await?;
    let events = events.into_inner().unwrap();
    Ok(Done { text: String::new(), json: json!({ "events": events }), partial: false })
}
