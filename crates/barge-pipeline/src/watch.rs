//! `watch`: the import trigger. Every new or changed bundle in an enabled import pipeline's container is imported exactly once.
//!
//! A run's name derives from (pipeline, blob, ETag), so the run records are
//! the ledger: a blob version with a finished run is done. A watcher claims
//! a run by a conditional write of its record and keeps a heartbeat in it
//! while importing (`claim.rs`), so two watchers never import the same
//! version at once; a record left "Running" by a watcher that died is taken
//! over, once its heartbeat is older than the timeout
//! (`BARGE_WATCH_TAKEOVER_SECS`, 60 s by default), by the next watcher to
//! see it. Nothing is written to the bundle's container (ACR's import SAS,
//! `dlr`, is enough); only DeleteSourceBlobOnSuccess deletes the bundle.
//! A split bundle is imported when its `NAME.parts.json` lands (it is
//! written after every part), through `Parts`; its parts are skipped.

use std::collections::HashSet;
use std::time::Duration;

use barge_bundle::tar::{Headers, Step, BLOCK};
use barge_bundle::ZSTD_MAGIC;
use barge_transfer::store::{parts, BlobStore};
use sha2::Digest as _;
use tokio::io::AsyncReadExt;

use crate::resource::{Pipeline, RunStatus, TriggerStatus};
use crate::run::{load_pipeline, submit, RunOptions, Submit};
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
/// A blob that cannot be read (a SAS without `r`, say) is an error, not "no".
async fn looks_like_bundle(blob: &dyn BlobStore, size: u64, etag: &str) -> Result<bool, PipelineError> {
    if size < 2 * BLOCK as u64 {
        return Ok(false);
    }
    let mut r = match blob.read_range(0, BLOCK as u64, etag).await {
        Ok(r) => r,
        // Replaced or deleted since it was listed: the next pass sees the new version.
        Err(barge_transfer::TransferError::Changed(_)) => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    let mut head = [0u8; BLOCK];
    if r.read_exact(&mut head).await.is_err() {
        return Ok(false);
    }
    if head.starts_with(&ZSTD_MAGIC) {
        return Ok(true);
    }
    Ok(matches!(Headers::default().feed(&head), Ok(Step::Entry(e)) if e.name == "oci-layout"))
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
    let timeout = crate::claim::timeout()?;
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
            let source = &properties.source;
            if let Err(e) = pass(state, &name, source, run_opts, timeout, &mut reported, report).await {
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
    timeout: Duration,
    reported: &mut HashSet<(String, String)>,
    report: &(dyn Fn(Event) + Sync),
) -> Result<(), PipelineError> {
    let container = crate::run::container(source, run_opts.concurrency)?;
    for listed in container.list().await? {
        // A bundle's signature and statement (NAME.sig, NAME.sig.msg) are read by its import, never imported.
        if barge_transfer::sign::is_side_file(&listed.name) {
            continue;
        }
        // A split bundle is imported once, when its parts.json (written last) lands; its parts are not bundles.
        if matches!(parts::split_name(&listed.name), Some((_, Some(_)))) {
            continue;
        }
        let split = listed.name.ends_with(parts::PARTS_JSON);
        let name = run_name(pipeline, &listed.name, &listed.etag);
        // Done, or held by a live watcher: nothing to do here.
        if let Some((stored, _)) = crate::claim::load(state, &name).await? {
            if !stored.abandoned(timeout) {
                continue;
            }
        }
        let blob = container.blob(&listed.name)?;
        // A split bundle (its parts checked when the import reads them) is judged by the run.
        if !split && !looks_like_bundle(blob.as_ref(), listed.size, &listed.etag).await? {
            if reported.insert((listed.name.clone(), listed.etag.clone())) {
                report(Event::NotABundle { pipeline: pipeline.to_string(), blob: listed.name.clone() });
            }
            continue;
        }
        let s = Submit {
            name: name.clone(),
            pipeline: pipeline.to_string(),
            blob: listed.name.clone(),
            trigger_timestamp: Some(crate::run::now()),
            claim: Some(timeout),
            ..Default::default()
        };
        // The claim is a conditional write of the record: one watcher wins it.
        match submit(state, &s, run_opts, None).await {
            // Claimed (and finished, or still held) by another watcher meanwhile.
            Ok((_, false)) => {}
            Ok((run, true)) => report(Event::Imported {
                pipeline: pipeline.to_string(),
                blob: listed.name.clone(),
                run: name,
                status: run.properties.response.status,
                message: run.properties.response.pipeline_run_error_message,
            }),
            // Someone else claimed the record first: theirs to finish.
            Err(PipelineError::Conflict(_)) => {}
            // Taken over by another watcher (this one stalled past the timeout): theirs now.
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
    async fn a_nested_blob_name_is_claimed_and_imported() {
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
