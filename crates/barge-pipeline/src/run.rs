//! Runs: submit (idempotent unless `forceUpdateTag` changes), execute an export or import, and keep the record current.
//!
//! A run is claimed by a conditional write of its record before it does
//! anything. While it works, a `RunContext` carries everything it needs,
//! the guard that protects it (the trigger's claim, see `claim.rs`)
//! included; the guard is released only after the final record is written.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use barge_transfer::store::{open_container, Container};
use barge_transfer::{
    ArtifactOutcome, BlobStore, ConnectOptions, ExportOptions, ImportOptions, RegistryAddr, Reporter, Status,
};

use crate::claim::{Claim, Heartbeat, Stored};
use crate::guard::Guard;
use crate::resource::{
    ExportOption, ExportProperties, ImportOption, ImportProperties, Pipeline, PipelineRun, RunProperties, RunRequest,
    RunResponse, RunStatus, StorageRef, TriggerTimestamp,
};
use crate::state::{Kind, StateStore, Version};
use crate::{ErrorKind, PipelineError};

pub use crate::pipelines::load_pipeline;

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct Submit {
    pub name: String,
    pub pipeline: String,
    pub artifacts: Vec<String>,
    /// Export: a transfer set as a JSON document ([`barge_transfer::SetFile::document`]).
    pub artifact_set: Option<serde_json::Value>,
    /// Export, a delta: the inventory file's bytes (`--have`), kept in the
    /// state store when the run is submitted; or the digest of one kept before
    /// (a run document's `request.have`).
    pub have: Option<Document>,
    /// Export, a delta: an earlier bundle's catalog (`--since`), as `have`.
    pub since: Option<Document>,
    /// Export, a delta: against the catalog an earlier export run kept.
    pub since_run: Option<String>,
    pub blob: String,
    pub catalog_digest: Option<String>,
    pub force_update_tag: Option<String>,
    /// Set by the import trigger: when the bundle was seen.
    pub trigger_timestamp: Option<String>,
    /// Set by the trigger: the take-over timeout. The run is claimed with a
    /// heartbeat in its record, renewed under a [`Claim`] guard every third of
    /// this; a record left "Running" whose heartbeat is older is run again.
    pub claim: Option<Duration>,
}

/// A document a run refers to: given whole (kept on submission) or by the digest it is kept under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Document {
    Bytes(Vec<u8>),
    Digest(String),
}

/// How runs reach registries and storage: the options `barge export` and `barge import` take.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub connect: ConnectOptions,
    /// Blobs transferred at once.
    pub concurrency: usize,
}

impl Default for RunOptions {
    fn default() -> RunOptions {
        RunOptions { connect: ConnectOptions::default(), concurrency: 8 }
    }
}

pub fn now() -> String {
    barge_transfer::store::url::rfc3339(SystemTime::now())
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

/// A run that finished as Failed, as an error of the kind its record names.
pub fn failure(run: &PipelineRun) -> Option<PipelineError> {
    let r = &run.properties.response;
    (r.status == RunStatus::Failed).then(|| PipelineError::Failed {
        run: run.name.clone(),
        message: r.pipeline_run_error_message.clone().unwrap_or_else(|| "no message".into()),
        kind: r.pipeline_run_error_kind.unwrap_or(ErrorKind::Other),
    })
}

/// Submit a run and execute it, under `guard` if one is given. An identical
/// submission (same request, same forceUpdateTag) returns the existing record
/// with `false` and does nothing. A run whose guard is lost is stopped and
/// its record left "Running", as a process that died leaves it.
pub async fn submit(
    state: &dyn StateStore,
    s: &Submit,
    opts: &RunOptions,
    guard: Option<Guard>,
) -> Result<(PipelineRun, bool), PipelineError> {
    let (pipeline, request) = prepare(state, s).await?;
    let existing = crate::claim::load(state, &s.name).await?;
    if let Some((stored, _)) = &existing {
        let (run, stale) = (&stored.run, s.claim.is_some_and(|t| stored.abandoned(t)));
        if run.properties.request == request && run.properties.force_update_tag == s.force_update_tag && !stale {
            return Ok((run.clone(), false));
        }
    }
    let run = new_record(s, request);
    // Claim the run: only one process gets to write this version.
    let first = Stored { run, heartbeat: s.claim.map(|_| Heartbeat::now()) };
    let version = state.put(Kind::Run, &s.name, &first.to_json(), existing.as_ref().map(|(_, v)| v)).await?;
    let version = Arc::new(tokio::sync::Mutex::new(version));
    let guard = match (guard, s.claim) {
        (None, Some(timeout)) => Some(Guard::new(Box::new(Claim {
            state: state.shared(),
            name: s.name.clone(),
            version: version.clone(),
            every: (timeout / 3).max(Duration::from_millis(100)),
        }))),
        (guard, _) => guard,
    };
    let ctx = RunContext { state, submit: s, opts, pipeline, guard, progress: Arc::default(), run: first.run, version };
    ctx.run_to_end().await
}

/// The pipeline and the request, checked before anything is written.
async fn prepare(state: &dyn StateStore, s: &Submit) -> Result<(Pipeline, RunRequest), PipelineError> {
    crate::resource::check_name("run", &s.name)?;
    let pipeline = load_pipeline(state, &s.pipeline).await?;
    match &pipeline {
        Pipeline::Export { .. } if s.artifacts.is_empty() && s.artifact_set.is_none() => {
            return Err(PipelineError::Invalid(format!("export pipeline {}: the run names no artifacts", s.pipeline)))
        }
        Pipeline::Export { properties, .. } => {
            // Checked now, so a bad set is refused before a record is written; expanded when the run runs.
            if let Some(set) = &s.artifact_set {
                run_set(set, &properties.registry)?;
            }
            if [s.have.is_some(), s.since.is_some(), s.since_run.is_some()].iter().filter(|x| **x).count() > 1 {
                return Err(PipelineError::Invalid("a run is cut against one of have, since or sinceRun".into()));
            }
        }
        Pipeline::Import { .. }
            if !s.artifacts.is_empty()
                || s.artifact_set.is_some()
                || s.have.is_some()
                || s.since.is_some()
                || s.since_run.is_some() =>
        {
            return Err(PipelineError::Invalid(format!(
                "import pipeline {}: a run imports one blob and names no artifacts",
                s.pipeline
            )))
        }
        _ => {}
    }
    if s.blob.is_empty() {
        return Err(PipelineError::Invalid("the run names no blob (its name in the pipeline's container)".into()));
    }
    let kept = |d: barge_bundle::Digest| d.to_string();
    let have = match &s.have {
        Some(Document::Bytes(b)) => Some(kept(crate::basis::keep_inventory(state, b).await?)),
        Some(Document::Digest(d)) => Some(d.clone()),
        None => None,
    };
    let since = match &s.since {
        Some(Document::Bytes(b)) => Some(kept(crate::basis::keep_catalog(state, b).await?)),
        Some(Document::Digest(d)) => Some(d.clone()),
        None => None,
    };
    let request = RunRequest {
        pipeline_resource_id: s.pipeline.clone(),
        artifacts: s.artifacts.clone(),
        artifact_set: s.artifact_set.clone(),
        have,
        since,
        since_run: s.since_run.clone(),
        blob: s.blob.clone(),
        catalog_digest: s.catalog_digest.clone(),
    };
    Ok((pipeline, request))
}

/// A new record, "Running", naming this process.
fn new_record(s: &Submit, request: RunRequest) -> PipelineRun {
    PipelineRun {
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
                runner: Some(runner()),
                ..Default::default()
            },
        },
    }
}

/// One claimed run while it executes: what it runs, its record, and what protects it.
struct RunContext<'a> {
    state: &'a dyn StateStore,
    submit: &'a Submit,
    opts: &'a RunOptions,
    pipeline: Pipeline,
    /// Released only after the final record is written; dropped early, it
    /// gives its hold back by itself.
    guard: Option<Guard>,
    progress: Arc<Tracker>,
    run: PipelineRun,
    /// The record's version: every write is conditional on it. Shared with
    /// the claim, whose heartbeat writes over it too.
    version: Arc<tokio::sync::Mutex<Version>>,
}

/// What a finished operation hands back to its run.
struct Outcome {
    artifacts: Vec<ArtifactOutcome>,
    imported: Vec<String>,
    catalog_digest: Option<String>,
    /// DeleteSourceBlobOnSuccess: the bundle and the version that was imported,
    /// deleted once the record is final and the guard released.
    delete: Option<(Arc<dyn BlobStore>, String)>,
}

impl RunContext<'_> {
    async fn run_to_end(mut self) -> Result<(PipelineRun, bool), PipelineError> {
        let outcome = self.execute().await;
        if let Err(e @ PipelineError::Lost(_)) = outcome {
            // Another watcher holds the run now: the record is theirs to write.
            return Err(e);
        }
        let delete = self.record(outcome);
        self.write().await?;
        if let Some(g) = self.guard.take() {
            // The record is final: nothing is left to renew.
            let _ = g.release().await;
        }
        if let Some((source, etag)) = delete {
            // Only the version that was imported; a SAS without 'd' leaves it, and says so.
            if let Err(e) = source.delete(Some(&etag)).await {
                self.run.properties.response.pipeline_run_error_message =
                    Some(format!("imported, but the bundle was not deleted: {e}"));
                self.write().await?;
            }
        }
        Ok((self.run, true))
    }

    /// Run the operation, under the guard, while writing its progress into the record every half second.
    async fn execute(&mut self) -> Result<Outcome, PipelineError> {
        let RunContext { state, submit, opts, pipeline, guard, progress, run, version } = self;
        let request = run.properties.request.clone();
        let work = operate(*state, pipeline, submit, &request, opts, progress.clone());
        let guarded = async {
            match guard.as_ref() {
                Some(g) => g.protect(work).await?,
                None => work.await,
            }
        };
        tokio::pin!(guarded);
        loop {
            tokio::select! {
                r = &mut guarded => return r,
                _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {
                    let pct = progress.percentage();
                    if pct != run.properties.response.progress.percentage {
                        run.properties.response.progress.percentage = pct;
                        // A conflict here is the claim's to report (its renewal fails).
                        let _ = write(*state, submit, run, version).await;
                    }
                }
            }
        }
    }

    /// Put the outcome into the record (not yet written); what to delete afterwards.
    fn record(&mut self, outcome: Result<Outcome, PipelineError>) -> Option<(Arc<dyn BlobStore>, String)> {
        let resp = &mut self.run.properties.response;
        resp.finish_time = Some(now());
        resp.runner = None;
        let o = match outcome {
            Ok(o) => o,
            Err(e) => {
                resp.status = RunStatus::Failed;
                resp.pipeline_run_error_message = Some(e.to_string());
                resp.pipeline_run_error_kind = Some(e.kind());
                return None;
            }
        };
        resp.artifacts = o.artifacts;
        resp.imported_artifacts = o.imported;
        resp.catalog_digest = o.catalog_digest;
        resp.progress.percentage = "100".into();
        let failed = barge_transfer::any_failed(&resp.artifacts);
        resp.status =
            if failed && resp.imported_artifacts.is_empty() { RunStatus::Failed } else { RunStatus::Succeeded };
        if !failed {
            return o.delete;
        }
        let errors: Vec<String> = resp
            .artifacts
            .iter()
            .filter(|a| a.status == Status::Failed)
            .map(|a| format!("{}: {}", a.artifact, a.error.as_deref().unwrap_or("")))
            .collect();
        resp.pipeline_run_error_message = Some(errors.join("; "));
        resp.pipeline_run_error_kind = Some(ErrorKind::Partial);
        None
    }

    /// Write the record over the version this run last wrote.
    async fn write(&mut self) -> Result<(), PipelineError> {
        write(self.state, self.submit, &self.run, &self.version).await
    }
}

/// Write `run` over `version`, with a fresh heartbeat while a claimed run is "Running".
async fn write(
    state: &dyn StateStore,
    s: &Submit,
    run: &PipelineRun,
    version: &tokio::sync::Mutex<Version>,
) -> Result<(), PipelineError> {
    let mut v = version.lock().await;
    let running = run.properties.response.status == RunStatus::Running;
    let stored = Stored { run: run.clone(), heartbeat: (s.claim.is_some() && running).then(Heartbeat::now) };
    *v = state.put(Kind::Run, &s.name, &stored.to_json(), Some(&v)).await?;
    Ok(())
}

/// This process, as `host:pid`.
pub fn runner() -> String {
    format!("{}:{}", hostname(), std::process::id())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
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

async fn operate(
    state: &dyn StateStore,
    pipeline: &Pipeline,
    s: &Submit,
    request: &RunRequest,
    opts: &RunOptions,
    progress: Arc<Tracker>,
) -> Result<Outcome, PipelineError> {
    match pipeline {
        Pipeline::Export { properties, .. } => export(state, properties, s, request, opts, progress.as_ref()).await,
        Pipeline::Import { properties, .. } => import(properties, s, opts, progress.as_ref()).await,
    }
}

async fn export(
    state: &dyn StateStore,
    properties: &ExportProperties,
    s: &Submit,
    request: &RunRequest,
    opts: &RunOptions,
    progress: &Tracker,
) -> Result<Outcome, PipelineError> {
    let basis = crate::basis::load_basis(
        state,
        request.have.as_deref(),
        request.since.as_deref(),
        request.since_run.as_deref(),
    )
    .await?;
    let registry = RegistryAddr::parse(&properties.registry)?.open(&opts.connect).await?;
    let dest = container(&properties.target, opts.concurrency)?.blob(&s.blob)?;
    let export_opts = ExportOptions {
        delta: basis,
        overwrite: properties.options.contains(&ExportOption::OverwriteBlobs),
        continue_on_errors: properties.options.contains(&ExportOption::ContinueOnErrors),
        concurrency: opts.concurrency,
        ..Default::default()
    };
    let key = barge_transfer::registry_key(&properties.registry);
    let mut requests = barge_transfer::requests_from_names(&s.artifacts, Some(&key), true)?;
    let mut sources = barge_transfer::Sources::one(&key, registry);
    let mut skipped = Vec::new();
    if let Some(set) = &s.artifact_set {
        let set = run_set(set, &properties.registry)?;
        for name in set.registries().into_iter().filter(|n| *n != key) {
            sources.insert(&name, RegistryAddr::parse(&name)?.open(&opts.connect).await?);
        }
        let (more, failed) =
            barge_transfer::resolve_set(&set, &sources, &[], true, export_opts.continue_on_errors, opts.concurrency)
                .await?;
        requests.extend(more);
        skipped = failed.into_iter().map(|(name, e)| ArtifactOutcome::failed(&name, &e)).collect();
    }
    barge_transfer::check_limit(&requests, export_opts.max_artifacts, s.artifact_set.is_some())?;
    let mut r = barge_transfer::export(&sources, requests, dest.as_ref(), &export_opts, progress).await?;
    r.artifacts.splice(0..0, skipped);
    // Kept for later runs to be cut against (`sinceRun`): the catalog as the bundle holds it.
    crate::basis::keep_run_catalog(state, &s.name, &r.catalog_json).await?;
    if let Some(reference) = &properties.signing_key {
        sign_run(reference, &properties.target, &s.blob, dest.as_ref(), &r.catalog_digest, opts, progress).await?;
    }
    Ok(Outcome {
        artifacts: r.artifacts,
        imported: Vec::new(),
        catalog_digest: Some(r.catalog_digest.to_string()),
        delete: None,
    })
}

/// Sign an export run's bundle with the pipeline's `signingKey`: `NAME.sig` and `NAME.sig.msg` beside it.
async fn sign_run(
    reference: &str,
    target: &StorageRef,
    blob: &str,
    bundle: &dyn BlobStore,
    digest: &barge_bundle::Digest,
    opts: &RunOptions,
    progress: &Tracker,
) -> Result<(), PipelineError> {
    let secret = crate::secret::SecretRef::parse(reference)?.resolve()?;
    let name = std::path::Path::new("the pipeline's signingKey");
    let agent = std::env::var_os("SSH_AUTH_SOCK").filter(|s| !s.is_empty()).map(std::path::PathBuf::from);
    let key = barge_transfer::SigningKey::from_text(secret.expose(), name, agent.as_deref())?;
    let side = container(target, opts.concurrency)?;
    let msg = side.blob(&format!("{blob}{}", barge_transfer::sign::MSG_SUFFIX))?;
    let sig = side.blob(&format!("{blob}{}", barge_transfer::sign::SIG_SUFFIX))?;
    barge_transfer::sign::sign_stores(bundle, msg.as_ref(), sig.as_ref(), &key, Some(digest.clone()), progress).await?;
    Ok(())
}

/// A run's transfer set, checked against its pipeline's registry.
fn run_set(set: &serde_json::Value, registry: &str) -> Result<barge_transfer::SetFile, PipelineError> {
    let bytes = serde_json::to_vec(set).map_err(|_| PipelineError::Invalid("the run's artifactSet".into()))?;
    Ok(barge_transfer::SetFile::parse(&bytes, "the run's artifactSet", Some(registry))?)
}

async fn import(
    properties: &ImportProperties,
    s: &Submit,
    opts: &RunOptions,
    progress: &Tracker,
) -> Result<Outcome, PipelineError> {
    let registry = RegistryAddr::parse(&properties.registry)?.open_for_writing(&opts.connect).await?;
    let source: Arc<dyn BlobStore> = container(&properties.source, opts.concurrency)?.blob(&s.blob)?.into();
    let info = source.info().await?.ok_or_else(|| PipelineError::NotFound(format!("blob {}", source.display())))?;
    let catalog_digest = match &s.catalog_digest {
        Some(d) => Some(barge_bundle::Digest::parse(d).map_err(|e| PipelineError::Invalid(e.to_string()))?),
        None => None,
    };
    let signature = match properties.allowed_signers()? {
        Some(allowed) => {
            let sig = container(&properties.source, opts.concurrency)?.blob(&format!(
                "{}{}",
                s.blob,
                barge_transfer::sign::SIG_SUFFIX
            ))?;
            let signature = barge_transfer::sign::read_text(sig.as_ref()).await?;
            Some(barge_transfer::SignatureCheck { allowed: Arc::new(allowed), required: true, signature })
        }
        None => None,
    };
    let import_opts = ImportOptions {
        signature,
        overwrite_tags: properties.options.contains(&ImportOption::OverwriteTags),
        continue_on_errors: properties.options.contains(&ImportOption::ContinueOnErrors),
        // Deleted by the run, once its record is final and its claim given back.
        delete_source_on_success: false,
        catalog_digest,
        // The run record names the bundle it imported.
        report_catalog_digest: true,
        concurrency: opts.concurrency,
        placement: properties.placement()?,
        platform_index: match properties.options.contains(&ImportOption::RewritePlatformIndex) {
            true => barge_transfer::PlatformIndex::Rewrite,
            false => barge_transfer::PlatformIndex::Sparse,
        },
    };
    let r = barge_transfer::import(source.clone(), registry, &import_opts, progress).await?;
    let delete = properties.options.contains(&ImportOption::DeleteSourceBlobOnSuccess).then_some((source, info.etag));
    // Named as they are in the target (where a prefix or a map placed them).
    let imported = r
        .artifacts
        .iter()
        .filter(|a| a.status != Status::Failed)
        .map(|a| a.target.clone().unwrap_or_else(|| a.artifact.clone()))
        .collect();
    Ok(Outcome { artifacts: r.artifacts, imported, catalog_digest: r.catalog_digest.map(|d| d.to_string()), delete })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::guard::tests::{Fake, FakeHold};
    use crate::guard::Hold;
    use crate::resource::{SourceTrigger, Trigger, TriggerStatus};
    use crate::BlobState;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    fn local(dir: &Path) -> StorageRef {
        StorageRef { kind: "AzureStorageBlobContainer".into(), uri: dir.display().to_string(), secret_uri: None }
    }

    /// A state directory with an export pipeline (`oci:layouts` to `bundles/`) that has written
    /// `b.tar` (one 32 MiB layer), and an import pipeline from `bundles/` into `oci:target`.
    pub(crate) async fn setup(d: &Path) -> BlobState {
        let img = barge_fixtures::Image::new(vec![barge_fixtures::Layer { seed: 9, size: 32 << 20 }]);
        let desc = barge_fixtures::write_image(&d.join("layouts"), "big/img", &img).unwrap();
        barge_fixtures::tag(&d.join("layouts"), "big/img", "v1", &desc).unwrap();
        for sub in ["bundles", "target", "state"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let state = BlobState::new(open_container(&d.join("state").display().to_string(), None, 1).unwrap());
        let registry = |p: &str| format!("oci:{}", d.join(p).display());
        let exp = Pipeline::Export {
            name: "exp".into(),
            properties: ExportProperties {
                registry: registry("layouts"),
                target: local(&d.join("bundles")),
                options: vec![],
                signing_key: None,
            },
        };
        let trigger = Trigger { source_trigger: SourceTrigger { status: TriggerStatus::Enabled } };
        let imp = Pipeline::Import {
            name: "imp".into(),
            properties: ImportProperties {
                registry: registry("target"),
                source: local(&d.join("bundles")),
                trigger,
                options: vec![],
                repository_prefix: None,
                repository_map: vec![],
                allowed_signers: None,
            },
        };
        crate::pipelines::save_pipeline(&state, &exp).await.unwrap();
        crate::pipelines::save_pipeline(&state, &imp).await.unwrap();
        let s = Submit {
            name: "exp".into(),
            pipeline: "exp".into(),
            artifacts: vec!["big/img:v1".into()],
            blob: "b.tar".into(),
            ..Default::default()
        };
        let (run, executed) = submit(&state, &s, &RunOptions::default(), None).await.unwrap();
        assert!(executed && run.properties.response.status == RunStatus::Succeeded, "{run:?}");
        state
    }

    fn import(name: &str) -> Submit {
        Submit {
            name: name.into(),
            pipeline: "imp".into(),
            blob: "b.tar".into(),
            claim: Some(Duration::from_millis(1)),
            ..Default::default()
        }
    }

    pub(crate) fn tagged(d: &Path) -> bool {
        std::fs::read_to_string(d.join("target/big/img/index.json")).is_ok_and(|s| s.contains("\"v1\""))
    }

    async fn status(state: &BlobState, name: &str) -> RunStatus {
        load_run(state, name).await.unwrap().unwrap().0.properties.response.status
    }

    #[tokio::test]
    async fn a_lost_claim_stops_the_import_and_leaves_the_run_to_be_run_again() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let state = setup(d).await;
        for round in 0..3 {
            let f = Arc::new(Fake { fail_at: Some(1), ..Default::default() });
            let guard = Guard::new(Box::new(FakeHold(f.clone(), Duration::from_millis(1))));
            let name = format!("imp-lost-{round}");
            match submit(&state, &import(&name), &RunOptions::default(), Some(guard)).await {
                Err(PipelineError::Lost(m)) => assert!(m.contains("claim was lost"), "{m}"),
                other => panic!("round {round}: the import went on without its claim: {other:?}"),
            }
            assert!(!tagged(d), "round {round}: the stopped import wrote its tag");
            assert_eq!(status(&state, &name).await, RunStatus::Running, "round {round}");
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert_eq!(f.renewals.load(Ordering::SeqCst), 1, "round {round}: renewals went on");
            assert!(f.released.load(Ordering::SeqCst), "round {round}: the claim was not given back");
            assert_eq!(Arc::strong_count(&f), 1, "round {round}: something still holds the claim");
        }
        // The next watcher takes the abandoned record over and runs it again, to the end.
        let (run, executed) = submit(&state, &import("imp-lost-0"), &RunOptions::default(), None).await.unwrap();
        assert!(executed && run.properties.response.status == RunStatus::Succeeded, "{run:?}");
        assert!(tagged(d));
    }

    /// A hold that, when released, notes whether the run's record was final by then.
    struct Watchful {
        record: PathBuf,
        final_at_release: Arc<AtomicBool>,
        renewals: Arc<AtomicU64>,
    }

    #[async_trait::async_trait]
    impl Hold for Watchful {
        fn renew_every(&self) -> Option<Duration> {
            Some(Duration::from_millis(2))
        }
        async fn renew(&self) -> Result<(), PipelineError> {
            self.renewals.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        async fn release(&self) -> Result<(), PipelineError> {
            let text = std::fs::read_to_string(&self.record).unwrap();
            self.final_at_release.store(text.contains("\"Succeeded\""), Ordering::SeqCst);
            Ok(())
        }
    }

    #[tokio::test]
    async fn the_guard_is_released_after_the_final_record_and_no_renewer_outlives_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let state = setup(d).await;
        let (final_at_release, renewals) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let hold = Watchful {
            record: d.join("state/runs/imp-ok.json"),
            final_at_release: final_at_release.clone(),
            renewals: renewals.clone(),
        };
        let (run, _) =
            submit(&state, &import("imp-ok"), &RunOptions::default(), Some(Guard::new(Box::new(hold)))).await.unwrap();
        assert_eq!(run.properties.response.status, RunStatus::Succeeded);
        assert!(final_at_release.load(Ordering::SeqCst), "the claim was given back before the record was final");
        assert!(renewals.load(Ordering::SeqCst) > 0, "the guard never renewed");
        let n = renewals.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(renewals.load(Ordering::SeqCst), n, "a renewer outlived the run");
        assert_eq!(Arc::strong_count(&renewals), 1, "something still holds the claim");

        // An early error (an export pipeline's run that names no artifacts) drops the guard: renewal stops there too.
        let f = Arc::new(Fake::default());
        let guard = Guard::new(Box::new(FakeHold(f.clone(), Duration::from_millis(2))));
        let s = Submit { name: "early".into(), pipeline: "exp".into(), blob: "x".into(), ..Default::default() };
        assert!(matches!(
            submit(&state, &s, &RunOptions::default(), Some(guard)).await,
            Err(PipelineError::Invalid(_))
        ));
        tokio::time::sleep(Duration::from_millis(20)).await;
        let n = f.renewals.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(f.renewals.load(Ordering::SeqCst), n, "a renewer outlived the run");
        assert!(f.released.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn a_damaged_bundle_fails_its_run_with_the_integrity_kind() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let state = setup(d).await;
        let bundle = d.join("bundles/b.tar");
        let mut bytes = std::fs::read(&bundle).unwrap();
        let n = bytes.len();
        bytes[n / 2] ^= 0x55; // inside the 32 MiB layer
        std::fs::write(&bundle, bytes).unwrap();
        let (run, _) = submit(&state, &import("imp-bad"), &RunOptions::default(), None).await.unwrap();
        let e = failure(&run).expect("a failed run");
        assert_eq!(e.kind(), ErrorKind::Integrity, "{e}");
        assert_eq!(run.properties.response.pipeline_run_error_kind, Some(ErrorKind::Integrity));
        assert!(!tagged(d));
    }
}
