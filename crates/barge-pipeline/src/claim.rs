//! `Claim`: the trigger's hold on a run, in the state store: a heartbeat in the run's record, taken over once it is older than the timeout.
//!
//! A watcher claims a run by a conditional write of its record (the name
//! derives from pipeline, blob and ETag, so every watcher competes for the
//! same record, and only one write wins). While it imports, it keeps a
//! heartbeat in the record: the [`Guard`](crate::Guard) renews it every third
//! of the timeout by another conditional write. A record still "Running"
//! whose heartbeat is older than the timeout was left by a watcher that died
//! (or stalled): another watcher claims it over the version it read and runs
//! the import again. The stalled one's next renewal then fails its
//! compare-and-swap: its claim is lost, and its work stops. Only the state
//! store is written, never the bundle's container, so an import SAS of `dlr`
//! (ACR's) is enough. Clocks of watchers that share a state store must agree
//! to well within the timeout.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::guard::Hold;
use crate::resource::{PipelineRun, RunStatus};
use crate::state::{Kind, StateStore, Version};
use crate::PipelineError;

/// How long a heartbeat may go unrenewed before another watcher takes the run over.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Overrides [`DEFAULT_TIMEOUT`], in seconds (tests use a few).
pub const TIMEOUT_ENV: &str = "BARGE_WATCH_TAKEOVER_SECS";

/// The take-over timeout: `$BARGE_WATCH_TAKEOVER_SECS`, or [`DEFAULT_TIMEOUT`].
pub fn timeout() -> Result<Duration, PipelineError> {
    match std::env::var(TIMEOUT_ENV) {
        Err(_) => Ok(DEFAULT_TIMEOUT),
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(s) if s > 0 => Ok(Duration::from_secs(s)),
            _ => Err(PipelineError::Invalid(format!(
                "{TIMEOUT_ENV}={v}: not a number of seconds above 0; unset it for the default ({} s)",
                DEFAULT_TIMEOUT.as_secs()
            ))),
        },
    }
}

/// Who holds a run, and when they last said so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Heartbeat {
    /// `host:pid`.
    pub runner: String,
    /// RFC 3339, for people.
    pub time: String,
    /// Milliseconds since the epoch, for the take-over rule.
    pub unix_ms: u64,
}

impl Heartbeat {
    pub fn now() -> Heartbeat {
        let t = SystemTime::now();
        Heartbeat {
            runner: crate::run::runner(),
            time: barge_transfer::store::url::rfc3339(t),
            unix_ms: t.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0),
        }
    }

    /// How long ago it was renewed (zero if in the future).
    pub fn age(&self) -> Duration {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        Duration::from_millis(now.saturating_sub(self.unix_ms))
    }
}

/// A run record as stored: the run (ACR's shape) and, while a watcher holds it, its heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stored {
    #[serde(flatten)]
    pub run: PipelineRun,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat: Option<Heartbeat>,
}

impl Stored {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a run serializes")
    }

    /// Finished (Succeeded or Failed): nothing more to do.
    pub fn finished(&self) -> bool {
        self.run.properties.response.status != RunStatus::Running
    }

    /// "Running", but nobody has renewed its heartbeat for `timeout` (or it has none): free to take over.
    pub fn abandoned(&self, timeout: Duration) -> bool {
        !self.finished() && self.heartbeat.as_ref().is_none_or(|h| h.age() >= timeout)
    }
}

/// The stored record of run `name`, with its heartbeat.
pub async fn load(state: &dyn StateStore, name: &str) -> Result<Option<(Stored, Version)>, PipelineError> {
    match state.get(Kind::Run, name).await? {
        None => Ok(None),
        Some((b, v)) => Ok(Some((
            serde_json::from_slice(&b).map_err(|e| PipelineError::State(format!("run {name} is unreadable: {e}")))?,
            v,
        ))),
    }
}

/// A claimed run's hold: renewing it writes a new heartbeat over the version
/// this process last wrote (shared with the run, which writes its progress
/// and its final record over the same version).
pub struct Claim {
    pub state: Arc<dyn StateStore>,
    pub name: String,
    pub version: Arc<Mutex<Version>>,
    pub every: Duration,
}

impl Claim {
    fn taken(&self) -> PipelineError {
        PipelineError::Conflict(format!("run {} was taken over by another watcher", self.name))
    }
}

#[async_trait]
impl Hold for Claim {
    fn renew_every(&self) -> Option<Duration> {
        Some(self.every)
    }

    async fn renew(&self) -> Result<(), PipelineError> {
        let mut ours = self.version.lock().await;
        let Some((mut stored, v)) = load(self.state.as_ref(), &self.name).await? else {
            return Err(PipelineError::Conflict(format!("run {} was deleted", self.name)));
        };
        if v != *ours || stored.finished() {
            return Err(self.taken());
        }
        stored.heartbeat = Some(Heartbeat::now());
        match self.state.put(Kind::Run, &self.name, &stored.to_json(), Some(&ours)).await {
            Ok(v) => {
                *ours = v;
                Ok(())
            }
            Err(PipelineError::Conflict(_)) => Err(self.taken()),
            Err(e) => Err(e),
        }
    }

    /// Nothing to give back: the final record has no heartbeat, and a record
    /// left "Running" is taken over once its heartbeat is old.
    async fn release(&self) -> Result<(), PipelineError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::{RunProperties, RunRequest, RunResponse};
    use crate::BlobState;

    fn record(status: RunStatus, heartbeat: Option<Heartbeat>) -> Stored {
        let response = RunResponse { status, ..Default::default() };
        let properties = RunProperties { request: request(), force_update_tag: None, response };
        Stored { run: PipelineRun { name: "r".into(), properties }, heartbeat }
    }

    fn request() -> RunRequest {
        RunRequest {
            pipeline_resource_id: "p".into(),
            artifacts: vec![],
            artifact_set: None,
            have: None,
            since: None,
            since_run: None,
            blob: "b".into(),
            catalog_digest: None,
        }
    }

    fn aged(ms: u64) -> Heartbeat {
        let mut h = Heartbeat::now();
        h.unix_ms -= ms;
        h
    }

    #[test]
    fn only_a_running_record_with_an_old_heartbeat_is_abandoned() {
        let t = Duration::from_secs(3);
        assert!(!record(RunStatus::Running, Some(aged(1000))).abandoned(t));
        assert!(record(RunStatus::Running, Some(aged(3000))).abandoned(t));
        assert!(record(RunStatus::Running, None).abandoned(t));
        assert!(!record(RunStatus::Succeeded, Some(aged(10_000))).abandoned(t));
        assert!(!record(RunStatus::Failed, None).abandoned(t));
        // A clock ahead of ours: not old.
        let mut ahead = Heartbeat::now();
        ahead.unix_ms += 60_000;
        assert!(!record(RunStatus::Running, Some(ahead)).abandoned(t));
    }

    /// Renewals move the heartbeat on; once another watcher has written the record, the next renewal fails, naming the run.
    #[tokio::test]
    async fn a_renewal_after_a_take_over_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let container = barge_transfer::store::open_container(&dir.path().display().to_string(), None, 1).unwrap();
        let state = BlobState::new(container);
        for round in 0..10 {
            let name = format!("r{round}");
            let v = state.put(Kind::Run, &name, &record(RunStatus::Running, Some(aged(5000))).to_json(), None).await;
            let version = Arc::new(Mutex::new(v.unwrap()));
            let claim = Claim { state: state.shared(), name: name.clone(), version, every: Duration::from_secs(1) };
            claim.renew().await.unwrap();
            let (stored, v) = load(&state, &name).await.unwrap().unwrap();
            assert!(stored.heartbeat.as_ref().unwrap().age() < Duration::from_secs(2), "round {round}");
            assert!(!stored.abandoned(Duration::from_secs(3)), "round {round}");
            // Another watcher takes it over.
            state
                .put(Kind::Run, &name, &record(RunStatus::Running, Some(Heartbeat::now())).to_json(), Some(&v))
                .await
                .unwrap();
            match claim.renew().await {
                Err(PipelineError::Conflict(m)) => assert!(m.contains(&name) && m.contains("taken over"), "{m}"),
                other => panic!("round {round}: renewed after a take-over: {other:?}"),
            }
        }
    }
}
