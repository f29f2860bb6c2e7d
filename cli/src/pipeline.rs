//! One subscription: a source's changes for one sync applied to one target.
//!
//! The agent half (snapshot + binlog stream) publishes into a bounded in-process channel (the
//! embedded bus); the coordinator half drains it into batches and applies them with the
//! target's [`Applier`]. Each (sync, target) pair runs its own reader from its own applied
//! position, so a slow or down target only ever holds back itself, and memory is bounded by
//! the channel (`queue_transactions`) plus one batch (`batch_rows`).
//!
//! Delivery: the reader may re-publish transactions after a restart (it resumes from the
//! target's applied position, stored in the target in the same transaction as the rows); the
//! applier skips what it already holds. The agent's sled checkpoint follows the acknowledged
//! (applied) position.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Result};
use fleetsync_agent::checkpoint::CheckpointStore;
use fleetsync_agent::publish::{EmbeddedPublisher, EmbeddedReceiver};
use fleetsync_agent::source::{
    self, snapshot::snapshot, stream::now_ms, stream::stream, SourceSpec,
};
use fleetsync_agent::SourceError;
use fleetsync_coordinator::apply::{Applier, ApplierOptions, SnapshotState};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub const METRIC_LAG: &str = "fleetsync_replication_lag_seconds";
pub const METRIC_PIPELINE_UP: &str = "fleetsync_pipeline_up";
pub const METRIC_PIPELINE_RESTARTS: &str = "fleetsync_pipeline_restarts_total";

/// Longest wait between retries after a failure.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Serialize, Default)]
pub struct PipelineStatus {
    pub sync: String,
    pub source: String,
    pub target: String,
    pub state: String,
    pub error: Option<String>,
    pub applied_position: Option<String>,
    pub lag_seconds: f64,
    pub rows_applied: u64,
    pub slow_tables: Vec<String>,
    pub paused_tables: Vec<(String, String)>,
}

pub type Registry = Arc<Mutex<BTreeMap<String, PipelineStatus>>>;

pub struct Pipeline {
    pub spec: SourceSpec,
    pub target_opts: mysql_async::Opts,
    pub applier: ApplierOptions,
    pub batch_rows: usize,
    pub batch_wait: Duration,
    pub queue: usize,
    pub queue_rows: usize,
    pub checkpoints: CheckpointStore,
    pub registry: Registry,
}

impl Pipeline {
    fn key(&self) -> String {
        format!("{}/{}", self.applier.sync, self.applier.target)
    }

    fn update(&self, f: impl FnOnce(&mut PipelineStatus)) {
        if let Ok(mut reg) = self.registry.lock() {
            let entry = reg.entry(self.key()).or_insert_with(|| PipelineStatus {
                sync: self.applier.sync.clone(),
                source: self.applier.source.clone(),
                target: self.applier.target.clone(),
                ..Default::default()
            });
            f(entry);
        }
    }

    fn labels(&self) -> [(&'static str, String); 2] {
        [
            ("sync", self.applier.sync.clone()),
            ("target", self.applier.target.clone()),
        ]
    }

    /// Runs until cancelled, retrying failures with backoff. A purged position stops it.
    pub async fn run(self, cancel: CancellationToken) {
        let mut backoff = Duration::from_secs(1);
        self.update(|s| s.state = "starting".into());
        loop {
            let result = self.run_once(&cancel).await;
            metrics::gauge!(METRIC_PIPELINE_UP, &self.labels()).set(0.0);
            if cancel.is_cancelled() {
                self.update(|s| s.state = "stopped".into());
                return;
            }
            let err = match result {
                Ok(()) => anyhow!("stream ended"),
                Err(e) => e,
            };
            let msg = format!("{err:#}");
            let purged = err
                .downcast_ref::<SourceError>()
                .is_some_and(|e| matches!(e, SourceError::Purged { .. }));
            if purged {
                tracing::error!(sync = %self.applier.sync, target = %self.applier.target, error = %msg, "pipeline stopped");
                self.update(|s| {
                    s.state = "failed".into();
                    s.error = Some(msg);
                });
                return;
            }
            tracing::warn!(sync = %self.applier.sync, target = %self.applier.target, error = %msg, retry_in = ?backoff, "pipeline failed, retrying");
            metrics::counter!(METRIC_PIPELINE_RESTARTS, &self.labels()).increment(1);
            self.update(|s| {
                s.state = "retrying".into();
                s.error = Some(msg);
            });
            tokio::select! {
                _ = cancel.cancelled() => { self.update(|s| s.state = "stopped".into()); return; }
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    async fn run_once(&self, cancel: &CancellationToken) -> Result<()> {
        let mut applier = Applier::connect(
            self.target_opts.clone(),
            self.spec.opts.clone(),
            self.applier.clone(),
        )
        .await
        .map_err(|e| anyhow!("{e}"))?;
        let state = applier.load_state().await.map_err(|e| anyhow!("{e}"))?;
        let resume = match state {
            Some(s) if matches!(s.snapshot, SnapshotState::Done) => Some(s.position),
            _ => None,
        };
        self.update(|s| {
            s.state = if resume.is_some() {
                "streaming".into()
            } else {
                "snapshotting".into()
            };
            s.error = None;
        });
        let child = cancel.child_token();
        let (mut publisher, rx) = EmbeddedPublisher::channel(self.queue, self.queue_rows);
        let spec = self.spec.clone();
        let agent_cancel = child.clone();
        let agent = tokio::spawn(async move {
            let mut conn = source::connect(&spec).await?;
            let info = source::preflight(&mut conn, &spec).await?;
            let from = match resume {
                Some(p) => {
                    source::check_available(&mut conn, &spec, &p).await?;
                    p
                }
                None => match snapshot(&spec, &info, &mut publisher, &agent_cancel).await? {
                    Some(p) => p,
                    None => return Ok(()),
                },
            };
            let _ = conn.disconnect().await;
            stream(&spec, &info, from, &mut publisher, &agent_cancel).await
        });
        metrics::gauge!(METRIC_PIPELINE_UP, &self.labels()).set(1.0);
        let applied = self.apply_loop(&mut applier, rx, &child).await;
        child.cancel();
        let agent_result = agent.await;
        let _ = self.checkpoints.flush();
        applied?;
        match agent_result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.into()),
            Err(e) => Err(anyhow!("agent task failed: {e}")),
        }
    }

    /// Drains the channel into batches and applies them until the channel closes (the agent
    /// stopped: its error is reported by the caller) or cancellation.
    async fn apply_loop(
        &self,
        applier: &mut Applier,
        mut rx: EmbeddedReceiver,
        cancel: &CancellationToken,
    ) -> Result<()> {
        let lag = metrics::gauge!(METRIC_LAG, &self.labels());
        let mut rows_applied = 0u64;
        loop {
            let first = tokio::select! {
                biased;
                _ = cancel.cancelled() => return Ok(()),
                t = rx.recv() => match t { Some(t) => t, None => return Ok(()) },
            };
            if first.snapshot && first.txn_id == 0 && !first.snapshot_done {
                applier
                    .begin_snapshot(&first.position, &first.tables)
                    .await
                    .map_err(|e| anyhow!("{e}"))?;
                self.update(|s| s.state = "snapshotting".into());
                continue;
            }
            let mut batch = vec![first];
            let mut rows = batch[0].len();
            let deadline = tokio::time::Instant::now() + self.batch_wait;
            while rows < self.batch_rows {
                match rx.try_recv() {
                    Ok(t) => {
                        rows += t.len().max(1);
                        batch.push(t);
                    }
                    Err(mpsc::error::TryRecvError::Empty) => {
                        if rows >= self.batch_rows / 16 || self.batch_wait.is_zero() {
                            break;
                        }
                        match tokio::time::timeout_at(deadline, rx.recv()).await {
                            Ok(Some(t)) => {
                                rows += t.len().max(1);
                                batch.push(t);
                            }
                            _ => break,
                        }
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => break,
                }
            }
            let state = applier.apply(&batch).await.map_err(|e| anyhow!("{e}"))?;
            if let Err(e) =
                self.checkpoints
                    .put(&self.applier.sync, &self.applier.target, &state.position)
            {
                tracing::warn!(error = %e, "cannot store checkpoint");
            }
            let lag_s = if rx.is_empty() {
                now_ms().saturating_sub(state.source_commit_ts_ms) as f64 / 1000.0
            } else {
                now_ms().saturating_sub(state.source_commit_ts_ms).max(1) as f64 / 1000.0
            };
            lag.set(lag_s);
            rows_applied += rows as u64;
            let snapshotting = matches!(state.snapshot, SnapshotState::Running);
            let (slow, paused) = (applier.slow_tables(), applier.paused_tables());
            self.update(|s| {
                s.state = if snapshotting {
                    "snapshotting".into()
                } else {
                    "streaming".into()
                };
                s.applied_position = Some(state.position.to_string());
                s.lag_seconds = lag_s;
                s.rows_applied = rows_applied;
                s.slow_tables = slow;
                s.paused_tables = paused;
            });
        }
    }
}
