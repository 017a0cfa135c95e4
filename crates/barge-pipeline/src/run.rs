//! Runs: submit (idempotent unless `forceUpdateTag` changes), execute an export or import, and keep the record current.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use barge_transfer::store::{open_container, Container, Lease};
use barge_transfer::{ArtifactOutcome, ConnectOptions, ExportOptions, ImportOptions, RegistryAddr, Reporter, Status};

use crate::resource::{
    ExportOption, ImportOption, Pipeline, PipelineRun, RunProperties, RunRequest, RunResponse, RunStatus, StorageRef,
    TriggerTimestamp,
};
use crate::state::{Kind, StateStore, Version};
use crate::PipelineError;

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct Submit {
    pub name: String,
    pub pipeline: String,
    pub artifacts: Vec<String>,
    pub blob: String,
    pub catalog_digest: Option<String>,
    pub force_update_tag: Option<String>,
    /// Set by the import trigger: when the bundle was seen.
    pub trigger_timestamp: Option<String>,
    /// Run again a record left "Running" by a process that died (the trigger
    /// knows, because it holds the bundle's lease).
    pub rerun_stale: bool,
}

pub fn now() -> String {
    barge_transfer::store::url::rfc3339(SystemTime::now())
}

pub async fn load_pipeline(state: &dyn StateStore, name: &str) -> Result<Pipeline, PipelineError> {
    let (bytes, _) = state.get(Kind::Pipeline, name).await?.ok_or_else(|| {
        PipelineError::NotFound(format!("pipeline {name}; create it with barge pipeline export|import create"))
    })?;
    serde_json::from_slice(&bytes).map_err(|e| PipelineError::State(format!("pipeline {name} is unreadable: {e}")))
}

pub async fn load_run(state: &dyn StateStore, name: &str) -> Result<Option<(PipelineRun, Version)>, PipelineError> {
    match state.get(Kind::Run, name).await? {
        None => Ok(None),
        Some((b, v)) => Ok(Some((
            serde_json::from_slice(&b).map_err(|e| PipelineError::State(format!("run {name} is unreadable: {e}")))?,
            v,
        ))),
    }
}

/// Open a pipeline's container with its SAS read now.
pub fn container(storage: &StorageRef, concurrency: usize) -> Result<Box<dyn Container>, PipelineError> {
    let sas = match &storage.secret_uri {
        Some(r) => Some(crate::secret::SecretRef::parse(r)?.resolve()?),
        None => None,
    };
    Ok(open_container(&storage.uri, sas, concurrency)?)
}

/// Submit a run and execute it. An identical submission (same request, same
/// forceUpdateTag) returns the existing record with `false` and does nothing.
pub async fn submit(
    state: &dyn StateStore,
    s: &Submit,
    connect: &ConnectOptions,
    lease: Option<Box<dyn Lease>>,
) -> Result<(PipelineRun, bool), PipelineError> {
    crate::resource::check_name("run", &s.name)?;
    let pipeline = load_pipeline(state, &s.pipeline).await?;
    let request = RunRequest {
        pipeline_resource_id: s.pipeline.clone(),
        artifacts: s.artifacts.clone(),
        blob: s.blob.clone(),
        catalog_digest: s.catalog_digest.clone(),
    };
    match &pipeline {
        Pipeline::Export { .. } if s.artifacts.is_empty() => {
            return Err(PipelineError::Invalid(format!("export pipeline {} needs --artifacts", s.pipeline)))
        }
        Pipeline::Import { .. } if !s.artifacts.is_empty() => {
            return Err(PipelineError::Invalid(format!(
                "import pipeline {} takes no --artifacts; name the --blob",
                s.pipeline
            )))
        }
        _ => {}
    }
    if s.blob.is_empty() {
        return Err(PipelineError::Invalid("a run needs --blob, the blob's name in the pipeline's container".into()));
    }
    let existing = load_run(state, &s.name).await?;
    if let Some((run, _)) = &existing {
        let stale = s.rerun_stale && run.properties.response.status == RunStatus::Running;
        if run.properties.request == request && run.properties.force_update_tag == s.force_update_tag && !stale {
            return Ok((run.clone(), false));
        }
    }
    let mut run = PipelineRun {
        name: s.name.clone(),
        properties: RunProperties {
            request,
            force_update_tag: s.force_update_tag.clone(),
            response: RunResponse {
                status: RunStatus::Running,
                progress: crate::resource::Progress { percentage: "0".into() },
                start_time: now(),
                trigger: crate::resource::TriggerInfo {
                    source_trigger: s.trigger_timestamp.clone().map(|timestamp| TriggerTimestamp { timestamp }),
                },
                runner: Some(format!("{}:{}", hostname(), std::process::id())),
                ..Default::default()
            },
        },
    };
    // Claim the run: only one process gets to write this version.
    let mut version = state.put(Kind::Run, &s.name, &to_json(&run), existing.as_ref().map(|(_, v)| v)).await?;

    let progress = Arc::new(Tracker::default());
    let outcome = execute(&pipeline, s, connect, progress, lease, state, &mut run, &mut version).await;
    let resp = &mut run.properties.response;
    resp.finish_time = Some(now());
    resp.runner = None;
    match outcome {
        Ok(()) => {
            let failed = barge_transfer::any_failed(&resp.artifacts);
            resp.status =
                if failed && resp.imported_artifacts.is_empty() { RunStatus::Failed } else { RunStatus::Succeeded };
            resp.progress.percentage = "100".into();
            // A failure's errors take the place of a warning.
            if failed {
                let errors: Vec<String> = resp
                    .artifacts
                    .iter()
                    .filter(|a| a.status == Status::Failed)
                    .map(|a| format!("{}: {}", a.artifact, a.error.as_deref().unwrap_or("")))
                    .collect();
                resp.pipeline_run_error_message = Some(errors.join("; "));
            }
        }
        Err(e) => {
            resp.status = RunStatus::Failed;
            resp.pipeline_run_error_message = Some(e.to_string());
        }
    }
    state.put(Kind::Run, &s.name, &to_json(&run), Some(&version)).await?;
    Ok((run, true))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

pub fn to_json(run: &PipelineRun) -> Vec<u8> {
    serde_json::to_vec_pretty(run).expect("a run serializes")
}

/// Bytes done of bytes expected, fed by the library's progress callbacks.
#[derive(Default)]
struct Tracker {
    done: AtomicU64,
    total: AtomicU64,
}

impl Reporter for Tracker {
    fn start(&self, _phase: &str, total: Option<u64>) {
        if let Some(t) = total {
            self.total.store(t, Ordering::Relaxed);
            self.done.store(0, Ordering::Relaxed);
        }
    }
    fn advance(&self, bytes: u64) {
        self.done.fetch_add(bytes, Ordering::Relaxed);
    }
}

impl Tracker {
    fn percentage(&self) -> String {
        let (d, t) = (self.done.load(Ordering::Relaxed), self.total.load(Ordering::Relaxed));
        match (d.min(t) * 100).checked_div(t) {
            Some(p) => p.min(99).to_string(),
            None => "0".into(),
        }
    }
}

/// Run the operation while writing the progress into the record every half second.
#[allow(clippy::too_many_arguments)]
async fn execute(
    pipeline: &Pipeline,
    s: &Submit,
    connect: &ConnectOptions,
    progress: Arc<Tracker>,
    lease: Option<Box<dyn Lease>>,
    state: &dyn StateStore,
    run: &mut PipelineRun,
    version: &mut Version,
) -> Result<(), PipelineError> {
    let work = operate(pipeline, s, connect, progress.clone(), lease);
    tokio::pin!(work);
    let result = loop {
        tokio::select! {
            r = &mut work => break r,
            _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {
                let pct = progress.percentage();
                if pct != run.properties.response.progress.percentage {
                    run.properties.response.progress.percentage = pct;
                    if let Ok(v) = state.put(Kind::Run, &s.name, &to_json(run), Some(version)).await {
                        *version = v;
                    }
                }
            }
        }
    };
    let (artifacts, imported, digest, warning) = result?;
    let resp = &mut run.properties.response;
    resp.artifacts = artifacts;
    resp.imported_artifacts = imported;
    resp.catalog_digest = digest;
    resp.pipeline_run_error_message = warning;
    Ok(())
}

/// Per-artifact results, what was imported, the catalogDigest, and a warning.
type Outcome = (Vec<ArtifactOutcome>, Vec<String>, Option<String>, Option<String>);

async fn operate(
    pipeline: &Pipeline,
    s: &Submit,
    connect: &ConnectOptions,
    progress: Arc<Tracker>,
    lease: Option<Box<dyn Lease>>,
) -> Result<Outcome, PipelineError> {
    let concurrency = 8;
    match pipeline {
        Pipeline::Export { properties, .. } => {
            let registry = RegistryAddr::parse(&properties.registry)?.open(connect).await?;
            let dest = container(&properties.target, concurrency)?.blob(&s.blob)?;
            let opts = ExportOptions {
                overwrite: properties.options.contains(&ExportOption::OverwriteBlobs),
                continue_on_errors: properties.options.contains(&ExportOption::ContinueOnErrors),
                concurrency,
                ..Default::default()
            };
            let r = barge_transfer::export(registry, &s.artifacts, dest.as_ref(), &opts, progress.as_ref()).await?;
            Ok((r.artifacts, Vec::new(), Some(r.catalog_digest.to_string()), None))
        }
        Pipeline::Import { properties, .. } => {
            let registry = RegistryAddr::parse(&properties.registry)?.open_for_writing(connect).await?;
            let source: std::sync::Arc<dyn barge_transfer::BlobStore> =
                container(&properties.source, concurrency)?.blob(&s.blob)?.into();
            let info =
                source.info().await?.ok_or_else(|| PipelineError::NotFound(format!("blob {}", source.display())))?;
            let catalog_digest = match &s.catalog_digest {
                Some(d) => Some(barge_bundle::Digest::parse(d).map_err(|e| PipelineError::Invalid(e.to_string()))?),
                None => None,
            };
            let delete = properties.options.contains(&ImportOption::DeleteSourceBlobOnSuccess);
            let opts = ImportOptions {
                overwrite_tags: properties.options.contains(&ImportOption::OverwriteTags),
                continue_on_errors: properties.options.contains(&ImportOption::ContinueOnErrors),
                // Deleted below, once a lease is given back.
                delete_source_on_success: false,
                catalog_digest,
                // The run record names the bundle it imported.
                report_catalog_digest: true,
                concurrency,
            };
            let r = barge_transfer::import(source.clone(), registry, &opts, progress.as_ref()).await;
            if let Some(l) = lease {
                l.release().await?;
            }
            let r = r?;
            let mut warning = None;
            if delete && !barge_transfer::any_failed(&r.artifacts) {
                // Only the version that was imported; a SAS without 'd' leaves it, and says so.
                if let Err(e) = source.delete(Some(&info.etag)).await {
                    warning = Some(format!("imported, but the bundle was not deleted: {e}"));
                }
            }
            let imported =
                r.artifacts.iter().filter(|a| a.status != Status::Failed).map(|a| a.artifact.clone()).collect();
            Ok((r.artifacts, imported, r.catalog_digest.map(|d| d.to_string()), warning))
        }
    }
}
