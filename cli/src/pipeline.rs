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
use fleetsync_coordinator::apply::{Applier, ApplierOptions, SnapshotState};
use fleetsync_coordinator::feed::{Feed, FeedError, FeedItem};
use fleetsync_proto::{Position, Transaction};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::sync::watch;

use crate::control::Control;
use crate::failure::{self, RetryPolicy, Verdict};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

pub const METRIC_LAG: &str = "fleetsync_replication_lag_seconds";
pub const METRIC_PIPELINE_UP: &str = "fleetsync_pipeline_up";
pub const METRIC_PIPELINE_RESTARTS: &str = "fleetsync_pipeline_restarts_total";
/// 1 while a (sync, target) pipeline is `failed` (see [`crate::failure`]), else 0.
pub const METRIC_SYNC_FAILED: &str = "fleetsync_sync_failed";

/// How often a running pipeline logs its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Serialize, Default)]
pub struct PipelineStatus {
    pub sync: String,
    pub source: String,
    pub target: String,
    pub state: String,
    pub error: Option<String>,
    /// The structured form of `error` (code, retryable, since, hint) for the API.
    pub failure: Option<failure::Failure>,
    pub applied_position: Option<String>,
    pub lag_seconds: f64,
    /// Wall-clock time (ms since the epoch) of the last applied batch.
    pub last_applied_ms: Option<u64>,
    pub rows_applied: u64,
    pub slow_tables: Vec<String>,
    pub paused_tables: Vec<(String, String)>,
    /// Coordinator groups: the member applying this pair when it is this process (its
    /// member id), `None` otherwise (see `state`: `standby` when another member owns it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// While the initial snapshot is applied: its progress (`None` otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotProgress>,
}

/// How far the initial snapshot has been applied to a target, as its pipeline sees the
/// snapshot's chunks arrive (tables come in the order of the snapshot's marker).
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct SnapshotProgress {
    pub tables_total: u64,
    /// Tables whose copy is complete (every table before the one being copied).
    pub tables_done: u64,
    /// The table being copied (`schema.table`).
    pub table: Option<String>,
    /// Snapshot rows applied so far.
    pub rows: u64,
    /// The source's estimate of the snapshot's rows (information_schema `TABLE_ROWS`, an
    /// InnoDB estimate); `None` when it could not be read.
    pub rows_estimate: Option<u64>,
    /// When the snapshot's marker arrived (ms since the epoch).
    pub started_ms: u64,
}

impl SnapshotProgress {
    /// Seconds left at the rate so far, from the row estimate (`None`: no estimate or no rate).
    pub fn eta_seconds(&self, now_ms: u64) -> Option<f64> {
        let total = self.rows_estimate?;
        let elapsed = now_ms.saturating_sub(self.started_ms) as f64 / 1000.0;
        if self.rows == 0 || elapsed <= 0.0 {
            return None;
        }
        let left = total.saturating_sub(self.rows) as f64;
        Some(left / (self.rows as f64 / elapsed))
    }

    /// Counts the snapshot rows of `batch`; `order` is the marker's table list.
    fn count(&mut self, batch: &[Transaction], order: &[String]) {
        for txn in batch.iter().filter(|t| t.snapshot) {
            self.rows += txn.changes.len() as u64;
            if let Some(t) = txn.tables.first() {
                let name = format!("{}.{}", t.schema, t.table);
                if let Some(i) = order.iter().position(|n| *n == name) {
                    self.tables_done = self.tables_done.max(i as u64);
                }
                self.table = Some(name);
            }
            if txn.snapshot_done {
                self.tables_done = self.tables_total;
                self.table = None;
            }
        }
    }
}

/// How long the snapshot's row estimate may take before the pipeline goes on without it.
const ESTIMATE_TIMEOUT: Duration = Duration::from_secs(5);

/// The source's estimate of the rows of `tables` (information_schema), best effort.
async fn estimate_rows(opts: &mysql_async::Opts, tables: &[String]) -> Option<u64> {
    use mysql_async::prelude::Queryable;
    let work = async {
        let mut conn = mysql_async::Conn::new(opts.clone()).await.ok()?;
        let mut total = 0u64;
        for name in tables {
            let (schema, table) = name.split_once('.')?;
            let n: Option<Option<u64>> = conn
                .exec_first(
                    "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                    (schema, table),
                )
                .await
                .ok()?;
            total += n.flatten().unwrap_or(0);
        }
        let _ = conn.disconnect().await;
        Some(total)
    };
    tokio::time::timeout(ESTIMATE_TIMEOUT, work)
        .await
        .ok()
        .flatten()
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
    /// Bytes of decoded rows the queue holds (`queue_bytes`, per lane); batches stop growing
    /// at it too.
    pub queue_bytes: usize,
    /// Take large source transactions in parts of about this many bytes, applied in one open
    /// target transaction (`None`: whole transactions; see docs/memory.md).
    pub part_bytes: Option<usize>,
    /// The agent's checkpoint store (embedded bus only).
    pub checkpoints: Option<CheckpointStore>,
    pub registry: Registry,
    /// The bidirectional group of the sync, if any, and its members evicted from tombstone GC
    /// (a pipeline from or to one is refused; see `fleetsync_coordinator::gc`).
    pub group: Option<String>,
    pub evictions: fleetsync_coordinator::gc::Evictions,
    /// Consume from Kafka instead of running the source reader in-process.
    pub kafka: Option<crate::kafka_cmds::KafkaFeedSpec>,
    /// Pause/resume/cancel from the sync manager.
    pub control: watch::Receiver<Control>,
    /// One-shot or scheduled run: stop once the applied position reaches this.
    pub until: Option<Position>,
    /// Set when the pipeline stopped on purpose (reached `until`, or cancelled).
    pub finished: AtomicBool,
    /// Batches applied since start: tells the retry policy that an attempt made progress.
    pub progress: AtomicU64,
    /// Whether the pipeline is `failed` (see [`Pipeline::run`]).
    pub failed: AtomicBool,
    /// `[coordinator] group`: the membership that says whether this member owns the pair.
    pub cgroup: Option<Arc<crate::cgroup::Membership>>,
    /// Coordinator groups: this pipeline held the pair's lock since it last got the pair.
    pub held: AtomicBool,
    /// Coordinator groups: another member took the pair over (see `crate::kafka_cmds`).
    pub fenced: AtomicBool,
}

impl Pipeline {
    fn key(&self) -> String {
        format!("{}/{}", self.applier.sync, self.applier.target)
    }

    pub(crate) fn update(&self, f: impl FnOnce(&mut PipelineStatus)) {
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

    /// Runs until cancelled. Errors go through [`failure::classify`] and one
    /// [`RetryPolicy`]: transient ones are retried with backoff (`retrying`), the same
    /// non-transient error [`failure::FAIL_AFTER`] times in a row makes the pipeline `failed`
    /// (it keeps retrying at the backoff cap; an applied batch clears it), a definite error
    /// (purged position, bus gap, unusable binlog event) makes it `failed` and stops it.
    pub async fn run(self, cancel: CancellationToken) {
        let mut policy = RetryPolicy::default();
        self.update(|s| s.state = "starting".into());
        loop {
            let progress_before = self.progress.load(Ordering::Relaxed);
            let result = self.run_once(&cancel).await;
            metrics::gauge!(METRIC_PIPELINE_UP, &self.labels()).set(0.0);
            if self.finished.load(Ordering::Relaxed) && result.is_ok() {
                return;
            }
            if cancel.is_cancelled() {
                self.update(|s| s.state = "stopped".into());
                return;
            }
            let err = match result {
                Ok(()) => anyhow!("stream ended"),
                Err(e) => e,
            };
            if self.progress.load(Ordering::Relaxed) != progress_before {
                policy.progress();
            }
            let class = failure::classify(&err);
            let msg = format!("{err:#}");
            metrics::counter!(METRIC_PIPELINE_RESTARTS, &self.labels()).increment(1);
            let wait = match policy.next(&class) {
                Verdict::Stop => {
                    self.fail(&msg, &class, true);
                    return;
                }
                // A one-shot or scheduled run ends here (`sync once` exits non-zero with the
                // reason); a continuous one keeps retrying so a fix is picked up.
                Verdict::Failed(_) if self.until.is_some() => {
                    self.fail(&msg, &class, true);
                    return;
                }
                Verdict::Failed(wait) => {
                    self.fail(&msg, &class, false);
                    wait
                }
                Verdict::Retry(wait) => {
                    tracing::warn!(sync = %self.applier.sync, target = %self.applier.target, error = %msg, kind = %class.kind, retry_in = ?wait, "pipeline failed, retrying");
                    let failed = self.failed.load(Ordering::Relaxed);
                    self.update(|s| {
                        // A failed pipeline stays `failed` until it makes progress.
                        if !failed {
                            s.state = "retrying".into();
                            s.failure =
                                Some(failure::Failure::new(&class, &msg, s.failure.as_ref()));
                            s.error = Some(msg);
                        }
                    });
                    wait
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => { self.update(|s| s.state = "stopped".into()); return; }
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Marks the pipeline `failed` (status, gauge, one error log per failure).
    fn fail(&self, msg: &str, class: &failure::Classified, stops: bool) {
        let was_failed = self.failed.swap(true, Ordering::Relaxed);
        metrics::gauge!(METRIC_SYNC_FAILED, &self.labels()).set(1.0);
        if !was_failed || stops {
            tracing::error!(sync = %self.applier.sync, target = %self.applier.target, error = %msg, kind = %class.kind, retrying = !stops, "pipeline failed");
        } else {
            tracing::warn!(sync = %self.applier.sync, target = %self.applier.target, error = %msg, kind = %class.kind, "pipeline still failed, retrying");
        }
        self.update(|s| {
            s.state = "failed".into();
            s.error = Some(msg.to_string());
            s.failure = Some(failure::Failure::new(class, msg, s.failure.as_ref()));
        });
    }

    /// Records an applied batch: progress resets the retry policy and clears `failed`.
    fn made_progress(&self) {
        self.progress.fetch_add(1, Ordering::Relaxed);
        if self.failed.swap(false, Ordering::Relaxed) {
            metrics::gauge!(METRIC_SYNC_FAILED, &self.labels()).set(0.0);
            tracing::info!(sync = %self.applier.sync, target = %self.applier.target, "pipeline recovered");
            self.update(|s| {
                s.error = None;
                s.failure = None;
            });
        }
    }

    /// Refuses to run from or to a member evicted from its group's tombstone GC.
    pub(crate) fn refuse_evicted(&self) -> Result<()> {
        let Some(group) = &self.group else {
            return Ok(());
        };
        match self
            .evictions
            .refusal(group, &self.applier.source, &self.applier.target)
        {
            Some(msg) => Err(anyhow!(msg)),
            None => Ok(()),
        }
    }

    async fn run_once(&self, cancel: &CancellationToken) -> Result<()> {
        self.refuse_evicted()?;
        if let Some(feed) = &self.kafka {
            return self.kafka_once(feed, cancel).await;
        }
        let mut applier = Applier::connect(
            self.target_opts.clone(),
            self.spec.opts.clone(),
            self.applier.clone(),
        )
        .await?;
        let state = applier.load_state().await?;
        let resume = match state {
            Some(s) if matches!(s.snapshot, SnapshotState::Done) => Some(s.position),
            _ => None,
        };
        let failed = self.failed.load(Ordering::Relaxed);
        self.update(|s| {
            // `failed` (and its reason) stays until a batch is applied.
            if !failed {
                s.state = if resume.is_some() {
                    "streaming".into()
                } else {
                    "snapshotting".into()
                };
                s.error = None;
                s.failure = None;
            }
        });
        let child = cancel.child_token();
        let (mut publisher, rx) = EmbeddedPublisher::channel(
            self.queue,
            self.queue_rows,
            self.queue_bytes,
            self.part_bytes,
        );
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
        let applied = self
            .apply_loop(&mut applier, &mut EmbeddedFeed(rx), &child)
            .await;
        child.cancel();
        let agent_result = agent.await;
        if let Some(store) = &self.checkpoints {
            let _ = store.flush();
        }
        applied?;
        match agent_result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.into()),
            Err(e) => Err(anyhow!("agent task failed: {e}")),
        }
    }

    /// Drains the feed into batches and applies them until the feed ends (the producer
    /// stopped: its error is reported by the caller) or cancellation. A snapshot marker is
    /// never batched with other transactions: it prepares the target tables first.
    pub async fn apply_loop<F: Feed>(
        &self,
        applier: &mut Applier,
        feed: &mut F,
        cancel: &CancellationToken,
    ) -> Result<()> {
        let lag = metrics::gauge!(METRIC_LAG, &self.labels());
        let mut rows_applied = 0u64;
        let mut stash: Option<FeedItem> = None;
        let mut last_progress = std::time::Instant::now();
        let is_marker = |t: &Transaction| t.snapshot && t.txn_id == 0 && !t.snapshot_done;
        let mut control = self.control.clone();
        // The snapshot's tables in copy order, and its progress (while one is applied).
        let mut snapshot_order: Vec<String> = Vec::new();
        let mut progress: Option<SnapshotProgress> = None;
        loop {
            if !self.wait_while_paused(&mut control, cancel).await {
                return Ok(());
            }
            let first = match stash.take() {
                Some(item) => item,
                None => tokio::select! {
                    biased;
                    _ = cancel.cancelled() => return Ok(()),
                    t = feed.recv() => match t? { Some(t) => t, None => return Ok(()) },
                },
            };
            if is_marker(&first.txn) {
                applier.set_bus_offset(first.offset);
                applier
                    .begin_snapshot(&first.txn.position, &first.txn.tables)
                    .await?;
                snapshot_order = first
                    .txn
                    .tables
                    .iter()
                    .map(|t| format!("{}.{}", t.schema, t.table))
                    .collect();
                let p = SnapshotProgress {
                    tables_total: snapshot_order.len() as u64,
                    rows_estimate: estimate_rows(&self.spec.opts, &snapshot_order).await,
                    started_ms: now_ms(),
                    ..Default::default()
                };
                progress = Some(p.clone());
                self.update(|s| {
                    s.state = "snapshotting".into();
                    s.snapshot = Some(p);
                });
                continue;
            }
            let mut offsets = vec![first.offset];
            let mut rows = first.txn.len().max(1);
            let mut bytes = first.txn.mem_bytes();
            // A batch ends at a part: the rest of its source transaction comes in later ones.
            let mut partial = first.partial;
            let mut batch = vec![first.txn];
            let deadline = tokio::time::Instant::now() + self.batch_wait;
            while !partial && rows < self.batch_rows && bytes < self.queue_bytes {
                let next = match feed.try_recv()? {
                    Some(t) => Some(t),
                    None if rows >= self.batch_rows / 16 || self.batch_wait.is_zero() => None,
                    None => match tokio::time::timeout_at(deadline, feed.recv()).await {
                        Ok(t) => t?,
                        Err(_) => None,
                    },
                };
                let Some(item) = next else { break };
                if is_marker(&item.txn) {
                    stash = Some(item);
                    break;
                }
                rows += item.txn.len().max(1);
                offsets.push(item.offset);
                bytes += item.txn.mem_bytes();
                partial = item.partial;
                batch.push(item.txn);
            }
            // An eviction while running stops the pipeline before it applies more.
            self.refuse_evicted()?;
            applier.set_bus_offsets(offsets);
            let state = if partial {
                applier.apply_part(&batch).await?
            } else {
                applier.apply(&batch).await?
            };
            self.made_progress();
            if let Some(store) = &self.checkpoints {
                if let Err(e) = store.put(&self.applier.sync, &self.applier.target, &state.position)
                {
                    tracing::warn!(error = %e, "cannot store checkpoint");
                }
            }
            let behind_ms = now_ms().saturating_sub(state.source_commit_ts_ms);
            let lag_s = if feed.is_idle() {
                behind_ms
            } else {
                behind_ms.max(1)
            } as f64
                / 1000.0;
            lag.set(lag_s);
            rows_applied += rows as u64;
            let snapshotting = matches!(state.snapshot, SnapshotState::Running);
            if let Some(p) = progress.as_mut() {
                p.count(&batch, &snapshot_order);
            }
            if !snapshotting {
                progress = None;
            }
            if !snapshotting && self.until.as_ref().is_some_and(|u| &state.position >= u) {
                self.finished.store(true, Ordering::Relaxed);
                let position = state.position.to_string();
                let total = rows_applied + rows as u64;
                self.update(|s| {
                    s.state = "done".into();
                    s.applied_position = Some(position);
                    s.lag_seconds = 0.0;
                    s.rows_applied = total;
                });
                return Ok(());
            }
            if last_progress.elapsed() >= PROGRESS_EVERY {
                last_progress = std::time::Instant::now();
                tracing::info!(
                    sync = %self.applier.sync,
                    target = %self.applier.target,
                    position = %state.position,
                    rows = rows_applied,
                    lag_seconds = lag_s,
                    "progress"
                );
            }
            let (slow, paused) = (applier.slow_tables(), applier.paused_tables());
            self.update(|s| {
                s.state = if snapshotting {
                    "snapshotting".into()
                } else {
                    "streaming".into()
                };
                s.applied_position = Some(state.position.to_string());
                s.lag_seconds = lag_s;
                s.last_applied_ms = Some(now_ms());
                s.rows_applied = rows_applied;
                s.slow_tables = slow;
                s.paused_tables = paused;
                s.snapshot = progress.clone();
            });
        }
    }
}

impl Pipeline {
    /// Blocks while the sync is paused. `false` when the pipeline must stop (cancelled by the
    /// sync manager, or shutdown).
    async fn wait_while_paused(
        &self,
        control: &mut watch::Receiver<Control>,
        cancel: &CancellationToken,
    ) -> bool {
        loop {
            let c = *control.borrow_and_update();
            match c {
                Control::Running => return true,
                Control::Cancelled => {
                    self.finished.store(true, Ordering::Relaxed);
                    self.update(|s| s.state = "cancelled".into());
                    return false;
                }
                Control::Paused => {
                    self.update(|s| s.state = "paused".into());
                    tokio::select! {
                        _ = cancel.cancelled() => return false,
                        changed = control.changed() => if changed.is_err() { return false },
                    }
                }
            }
        }
    }
}

/// The embedded bus's receiver as a coordinator [`Feed`].
pub struct EmbeddedFeed(pub EmbeddedReceiver);

impl Feed for EmbeddedFeed {
    async fn recv(&mut self) -> Result<Option<FeedItem>, FeedError> {
        Ok(self.0.recv().await.map(|q| FeedItem {
            txn: q.txn,
            offset: None,
            partial: q.partial,
        }))
    }

    fn try_recv(&mut self) -> Result<Option<FeedItem>, FeedError> {
        Ok(self.0.try_recv().ok().map(|q| FeedItem {
            txn: q.txn,
            offset: None,
            partial: q.partial,
        }))
    }

    fn is_idle(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod snapshot_progress_tests {
    use super::SnapshotProgress;
    use fleetsync_proto::{KeyKind, Op, Origin, Position, RowChange, TableSchema, Transaction};

    fn chunk(table: Option<&str>, rows: usize, done: bool) -> Transaction {
        let tables = table
            .map(|t| {
                vec![TableSchema {
                    schema: "app".into(),
                    table: t.into(),
                    columns: Vec::new(),
                    key: Vec::new(),
                    key_kind: KeyKind::None,
                    transactional: true,
                }]
            })
            .unwrap_or_default();
        Transaction {
            origin: Origin {
                name: "src".into(),
                server_id: 1,
                server_uuid: String::new(),
            },
            gtid: None,
            position: Position::new("binlog.000001", 4),
            txn_id: 1,
            commit_ts_ms: 0,
            snapshot: true,
            snapshot_done: done,
            tables,
            changes: (0..rows)
                .map(|_| RowChange {
                    table: 0,
                    op: Op::Snapshot,
                    before: None,
                    after: Some(Vec::new()),
                })
                .collect(),
            ddl: None,
        }
    }

    /// Tables done follow the marker's order (an empty table sends no chunk: it still counts
    /// once a later table starts); the last chunk completes them all.
    #[test]
    fn counts_rows_and_tables_in_marker_order() {
        let order: Vec<String> = ["app.a", "app.empty", "app.c"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut p = SnapshotProgress {
            tables_total: 3,
            ..Default::default()
        };
        p.count(
            &[chunk(Some("a"), 10, false), chunk(Some("a"), 5, false)],
            &order,
        );
        assert_eq!((p.tables_done, p.rows), (0, 15));
        assert_eq!(p.table.as_deref(), Some("app.a"));
        p.count(&[chunk(Some("c"), 7, false)], &order);
        assert_eq!((p.tables_done, p.rows), (2, 22));
        p.count(&[chunk(None, 0, true)], &order);
        assert_eq!((p.tables_done, p.rows, p.table.clone()), (3, 22, None));
    }

    /// The ETA is the rows left at the rate so far; none without an estimate or rows.
    #[test]
    fn eta_from_rate_and_estimate() {
        let p = SnapshotProgress {
            tables_total: 3,
            rows: 1000,
            rows_estimate: Some(4000),
            started_ms: 10_000,
            ..Default::default()
        };
        // 1000 rows in 2 s: 3000 left at 500 rows/s.
        assert_eq!(p.eta_seconds(12_000), Some(6.0));
        assert_eq!(
            SnapshotProgress {
                rows: 0,
                ..p.clone()
            }
            .eta_seconds(12_000),
            None
        );
        assert_eq!(
            SnapshotProgress {
                rows_estimate: None,
                ..p
            }
            .eta_seconds(12_000),
            None
        );
    }
}
