//! `watch`: the import trigger. Every new or changed bundle in an enabled import pipeline's container is imported exactly once.
//!
//! A run's name derives from (pipeline, blob, ETag), so the run records are
//! the ledger: a blob version with a finished run is done. While importing, a
//! watcher holds the blob's lease, so two watchers never import the same
//! version at once; a record left "Running" by a watcher that died is run
//! again by whoever next holds the lease.

use std::collections::HashSet;
use std::time::Duration;

use barge_bundle::tar::{Headers, Step, BLOCK};
use barge_bundle::ZSTD_MAGIC;
use barge_transfer::store::BlobStore;
use sha2::Digest as _;
use tokio::io::AsyncReadExt;

use crate::guard::Guard;
use crate::resource::{Pipeline, RunStatus, TriggerStatus};
use crate::run::{load_pipeline, load_run, submit, RunOptions, Submit};
use crate::state::{Kind, StateStore};
use crate::PipelineError;

#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// Only these pipelines (all enabled import pipelines when empty).
    pub pipelines: Vec<String>,
    pub interval: Duration,
    pub once: bool,
}

/// The run that imports `blob` at `etag` for `pipeline`.
pub fn run_name(pipeline: &str, blob: &str, etag: &str) -> String {
    let h = sha2::Sha256::digest(format!("{pipeline}\0{blob}\0{etag}"));
    let p: String = pipeline.chars().take(30).collect();
    format!("{p}-{}", hex::encode(&h[..8]))
}

/// Does this blob start like a barge bundle (a tar whose first entry is `oci-layout`, or zstd)?
async fn looks_like_bundle(blob: &dyn BlobStore, size: u64, etag: &str) -> bool {
    if size < 2 * BLOCK as u64 {
        return false;
    }
    let Ok(mut r) = blob.read_range(0, BLOCK as u64, etag).await else { return false };
    let mut head = [0u8; BLOCK];
    if r.read_exact(&mut head).await.is_err() {
        return false;
    }
    if head.starts_with(&ZSTD_MAGIC) {
        return true;
    }
    matches!(Headers::default().feed(&head), Ok(Step::Entry(e)) if e.name == "oci-layout")
}

/// What happened to one blob in one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Imported { pipeline: String, blob: String, run: String, status: RunStatus, message: Option<String> },
    NotABundle { pipeline: String, blob: String },
    PipelineError { pipeline: String, error: String },
}

/// Watch until stopped (or one pass with `once`), telling `report` what happens.
pub async fn watch(
    state: &dyn StateStore,
    opts: &WatchOptions,
    run_opts: &RunOptions,
    report: &(dyn Fn(Event) + Sync),
) -> Result<(), PipelineError> {
    let mut reported = HashSet::new();
    loop {
        let names = if opts.pipelines.is_empty() { state.list(Kind::Pipeline).await? } else { opts.pipelines.clone() };
        for name in names {
            let pipeline = load_pipeline(state, &name).await?;
            let Pipeline::Import { properties, .. } = &pipeline else {
                if !opts.pipelines.is_empty() {
                    return Err(PipelineError::Invalid(format!(
                        "pipeline {name} is an export pipeline; watch takes import pipelines"
                    )));
                }
                continue;
            };
            if properties.trigger.source_trigger.status == TriggerStatus::Disabled {
                continue;
            }
            if let Err(e) = pass(state, &name, &properties.source, run_opts, &mut reported, report).await {
                report(Event::PipelineError { pipeline: name.clone(), error: e.to_string() });
            }
        }
        if opts.once {
            return Ok(());
        }
        tokio::time::sleep(opts.interval).await;
    }
}

async fn pass(
    state: &dyn StateStore,
    pipeline: &str,
    source: &crate::resource::StorageRef,
    run_opts: &RunOptions,
    reported: &mut HashSet<(String, String)>,
    report: &(dyn Fn(Event) + Sync),
) -> Result<(), PipelineError> {
    let container = crate::run::container(source, run_opts.concurrency)?;
    for listed in container.list().await? {
        let name = run_name(pipeline, &listed.name, &listed.etag);
        let finished = |r: &Option<(crate::resource::PipelineRun, _)>| {
            r.as_ref().is_some_and(|(run, _)| run.properties.response.status != RunStatus::Running)
        };
        if finished(&load_run(state, &name).await?) {
            continue;
        }
        let blob = container.blob(&listed.name)?;
        if !looks_like_bundle(blob.as_ref(), listed.size, &listed.etag).await {
            if reported.insert((listed.name.clone(), listed.etag.clone())) {
                report(Event::NotABundle { pipeline: pipeline.to_string(), blob: listed.name.clone() });
            }
            continue;
        }
        let Some(lease) = container.lease(&listed.name, &listed.etag).await? else { continue };
        let guard = Guard::lease(lease);
        // Under the lease: another watcher may have finished it meanwhile.
        if finished(&load_run(state, &name).await?) {
            guard.release().await?;
            continue;
        }
        let s = Submit {
            name: name.clone(),
            pipeline: pipeline.to_string(),
            blob: listed.name.clone(),
            trigger_timestamp: Some(crate::run::now()),
            rerun_stale: true,
            ..Default::default()
        };
        match submit(state, &s, run_opts, Some(guard)).await {
            Ok((run, _)) => report(Event::Imported {
                pipeline: pipeline.to_string(),
                blob: listed.name.clone(),
                run: name,
                status: run.properties.response.status,
                message: run.properties.response.pipeline_run_error_message,
            }),
            // Someone else claimed the record first: theirs to finish.
            Err(PipelineError::Conflict(_)) => {}
            // Stopped without its lease: the next pass (or watcher) runs it again.
            Err(e @ PipelineError::Lost(_)) => {
                report(Event::PipelineError { pipeline: pipeline.to_string(), error: format!("{}: {e}", listed.name) })
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::tests::{setup, tagged};

    /// A bundle under a nested name (`a/b.tar`) in a local container is imported like any other.
    #[tokio::test]
    async fn a_nested_blob_name_is_leased_and_imported() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let state = setup(d).await;
        std::fs::create_dir_all(d.join("bundles/a")).unwrap();
        std::fs::rename(d.join("bundles/b.tar"), d.join("bundles/a/b.tar")).unwrap();
        let opts = WatchOptions { pipelines: vec!["imp".into()], interval: Duration::from_secs(1), once: true };
        let events = std::sync::Mutex::new(Vec::new());
        let report = |e: Event| events.lock().unwrap().push(e);
        watch(&state, &opts, &RunOptions::default(), &report).await.unwrap();
        let events = events.into_inner().unwrap();
        assert!(
            matches!(&events[..], [Event::Imported { blob, status: RunStatus::Succeeded, .. }] if blob == "a/b.tar"),
            "{events:?}"
        );
        assert!(tagged(d));
    }
}
