//! `barge run`: pipeline runs (ACR's PipelineRun): submit one and wait for it, list, show, delete.

use std::path::PathBuf;

use anyhow::Context as _;
use barge_pipeline::resource::{run_submission, RUN_TYPE};
use barge_pipeline::run::{failure, load_run, submit, Document, Submit};
use barge_pipeline::{Kind, PipelineError, PipelineRun, RunStatus, StateStore};
use clap::Subcommand;
use serde_json::json;

use super::{Connect, Done};

// Parsed once per process: the size of a variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum RunCmd {
    /// Submit a run and wait for it. The same properties again do nothing unless --force-update-tag changes.
    Create {
        /// The run's name.
        name: String,
        /// The pipeline to run.
        #[arg(long)]
        pipeline: String,
        /// Export: the artifacts (repo, repo:tag, repo@sha256:...).
        #[arg(long, num_args = 1..)]
        artifacts: Vec<String>,
        /// Export: a transfer set (YAML or JSON, as `barge export -f` takes),
        /// kept with the run as `request.artifactSet` and expanded when it runs;
        /// entries that name no registry read from the pipeline's.
        #[arg(long, value_name = "SET")]
        artifacts_file: Option<PathBuf>,
        /// Export, a delta: leave out the configs and layers this inventory
        /// (`barge inventory`) says the far side holds. Kept in the state store.
        #[arg(long, value_name = "FILE", conflicts_with_all = ["since", "since_run"])]
        have: Option<PathBuf>,
        /// Export, a delta: leave out what this earlier bundle (a file or
        /// storage URL, or its catalog from `barge inspect --catalog`) carried.
        #[arg(long, value_name = "BUNDLE|CATALOG", conflicts_with = "since_run")]
        since: Option<String>,
        /// Export, a delta: leave out what the earlier export run RUN carried
        /// (every export run keeps its catalog in the state store).
        #[arg(long, value_name = "RUN")]
        since_run: Option<String>,
        /// The blob's name in the pipeline's container (export: written; import: read).
        #[arg(long)]
        blob: String,
        /// Import: refuse the bundle unless its sha256 is this (ACR's catalogDigest).
        #[arg(long)]
        catalog_digest: Option<String>,
        /// Change it (to the current time, say) to run identical properties again.
        #[arg(long)]
        force_update_tag: Option<String>,
        #[command(flatten)]
        connect: Connect,
    },
    /// Submit a run from ACR's JSON (a pipelineRuns resource, as `az acr pipeline-run show -o json`
    /// prints it or an ARM template holds it) and wait for it, as create does.
    Apply {
        /// The JSON document to apply.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        #[command(flatten)]
        connect: Connect,
    },
    /// Every run, one line each.
    List,
    /// The run's record, ACR's shape; while it runs, its progress.
    Show {
        /// The run's name.
        name: String,
    },
    /// Delete the run's record (not what it transferred).
    Delete {
        /// The run's name.
        name: String,
    },
}

pub async fn run(state: &dyn StateStore, cmd: &RunCmd) -> anyhow::Result<Done> {
    match cmd {
        RunCmd::Create {
            name,
            pipeline,
            artifacts,
            artifacts_file,
            have,
            since,
            since_run,
            blob,
            catalog_digest,
            force_update_tag,
            connect,
        } => {
            let have = match have {
                Some(f) => Some(Document::Bytes(std::fs::read(f).map_err(|e| {
                    barge_transfer::TransferError::io(format!("reading the inventory {}", f.display()), e)
                })?)),
                None => None,
            };
            let since = match since {
                Some(b) => Some(Document::Bytes(catalog_of(b).await?)),
                None => None,
            };
            let artifact_set = match artifacts_file {
                Some(f) => Some(barge_transfer::SetFile::document(f)?),
                None => None,
            };
            let s = Submit {
                name: name.clone(),
                pipeline: pipeline.clone(),
                artifacts: artifacts.clone(),
                artifact_set,
                have,
                since,
                since_run: since_run.clone(),
                blob: blob.clone(),
                catalog_digest: catalog_digest.clone(),
                force_update_tag: force_update_tag.clone(),
                ..Default::default()
            };
            create(state, &s, connect).await
        }
        RunCmd::Apply { file, connect } => {
            let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
            create(state, &run_submission(&bytes)?, connect).await
        }
        RunCmd::List => list(state).await,
        RunCmd::Show { name } => {
            let (run, _) =
                load_run(state, name).await?.ok_or_else(|| PipelineError::NotFound(format!("run {name}")))?;
            let doc = document(&run)?;
            let mut text = serde_json::to_string_pretty(&doc)? + "\n";
            if run.properties.response.status == RunStatus::Running {
                text += &format!("running: {}% done\n", run.properties.response.progress.percentage);
            }
            Ok(Done::ok(text, doc))
        }
        RunCmd::Delete { name } => {
            if !state.delete(Kind::Run, name).await? {
                return Err(PipelineError::NotFound(format!("run {name}")).into());
            }
            Ok(Done::ok(format!("deleted run {name}\n"), json!({ "deleted": name })))
        }
    }
}

/// Submit, wait, and fail with the kind of fault the record names (its exit code).
async fn create(state: &dyn StateStore, s: &Submit, connect: &Connect) -> anyhow::Result<Done> {
    let (run, executed) = submit(state, s, &connect.run_options()?, None).await?;
    let mut text = describe(&run);
    if !executed {
        text = format!(
            "run {} already has these properties; nothing to do (change --force-update-tag to run it again)\n",
            s.name
        ) + &text;
    }
    if let Some(e) = failure(&run) {
        return Err(e.into());
    }
    let partial = barge_transfer::any_failed(&run.properties.response.artifacts);
    Ok(Done { text, json: document(&run)?, partial })
}

/// The record as ACR shapes a pipelineRuns resource (`type` first), which `run apply -f` takes back.
fn document(run: &PipelineRun) -> anyhow::Result<serde_json::Value> {
    let mut doc = serde_json::Map::new();
    doc.insert("type".into(), RUN_TYPE.into());
    if let serde_json::Value::Object(m) = serde_json::to_value(run)? {
        doc.extend(m);
    }
    Ok(serde_json::Value::Object(doc))
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

async fn list(state: &dyn StateStore) -> anyhow::Result<Done> {
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
        all.push(document(&run)?);
    }
    Ok(Done::ok(text, json!({ "runs": all })))
}

/// The catalog of an earlier bundle (a file or storage URL), or a catalog file
/// as `barge inspect --catalog` writes it.
async fn catalog_of(given: &str) -> anyhow::Result<Vec<u8>> {
    let opts = barge_transfer::StoreOptions::default();
    let store = barge_transfer::Location::parse(given, &opts)?.open(&opts)?;
    Ok(barge_transfer::earlier_catalog(store.as_ref()).await?)
}
