//! `fleetsync run`: every configured sync in one process on the embedded bus.
//!
//! Start-up refuses (non-zero exit, one line) on any preflight failure before anything is
//! written. The syncs are the file's and those made over the API (the definition store,
//! `crate::defs`), preflighted alike. Then one [`Pipeline`] per (sync, target) runs until
//! SIGINT/SIGTERM (continuous syncs), or at each occurrence of the sync's `schedule` until the
//! targets reach the source's position of that moment (scheduled syncs). Shutdown cancels them,
//! waits up to [`GRACE`] for in-flight batches to commit, then aborts.
//!
//! The [`Supervisor`] keeps one cancel token and one `JoinSet` per sync: when the API changes
//! the definitions, a new sync starts, a changed one (its definition, or a server it uses)
//! stops and starts again with the new definition, and a deleted one stops. A restart resumes
//! from the targets' progress rows (`fleetsync.sync_state`, written in the same transaction as
//! the applied rows), so nothing is lost or applied twice.
//!
//! `fleetsync coordinator` uses the same [`Supervisor`] with Kafka pipelines
//! ([`Supervisor::with_kafka`]).

use fleetsync_coordinator::gc::Evictions;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use fleetsync_agent::checkpoint::CheckpointStore;
use fleetsync_agent::source;
use fleetsync_config::{parse_schedule, Config, SyncConfig};
use fleetsync_coordinator::apply::{ApplierOptions, GroupTables};
use fleetsync_proto::Position;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::control::Controls;
use crate::http;
use crate::opts::opts_by_name;
use crate::pipeline::{Pipeline, Registry};
use crate::preflight::{preflight_all, source_spec};

/// How long shutdown waits for pipelines to finish their current batch.
const GRACE: Duration = Duration::from_secs(10);
/// `once`/`resnapshot` requests waiting for the supervisor: API calls, a handful at a time.
const OPS_QUEUE: usize = 16;

/// What the API asks of a running sync (see [`SyncRequest`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncOp {
    /// A scheduled sync runs now, as if its schedule fired.
    Once,
    /// Stop the sync, mark its targets for a new snapshot, start it again.
    Resnapshot,
    /// Run the API-made schedule `name` now.
    Trigger,
}

/// A request to the supervisor; the reply is a one-line outcome or refusal.
pub struct SyncRequest {
    /// The sync's name (the schedule's for [`SyncOp::Trigger`]).
    pub sync: String,
    pub op: SyncOp,
    pub reply: tokio::sync::oneshot::Sender<Result<String, OpRefused>>,
}

/// Why the supervisor refused or failed a [`SyncRequest`].
#[derive(Debug, thiserror::Error)]
pub enum OpRefused {
    /// The request does not fit the sync's state (e.g. `once` on a continuous sync).
    #[error("{0}")]
    Conflict(String),
    /// Something failed while carrying it out.
    #[error("{0}")]
    Failed(String),
}

/// What a pipeline shares with the process: its checkpoint store, status registry, controls.
#[derive(Clone)]
pub struct Shared {
    pub checkpoints: Option<CheckpointStore>,
    pub registry: Registry,
    pub controls: Controls,
    /// Members evicted from their group's tombstone GC: their pipelines are refused.
    pub evictions: Evictions,
}

/// The pipeline of (`sync`, `target`); `index` keeps replica server ids distinct.
pub fn build_pipeline(
    config: &Config,
    sync: &SyncConfig,
    target: &str,
    index: usize,
    shared: &Shared,
    until: Option<Position>,
) -> Result<Pipeline> {
    let mut spec = source_spec(config, sync, target, index)?;
    spec.until.clone_from(&until);
    Ok(Pipeline {
        spec,
        target_opts: opts_by_name(config, target)?,
        applier: ApplierOptions {
            sync: sync.name.clone(),
            source: sync.source.clone(),
            target: target.to_string(),
            map: sync.table_map()?,
            create_missing: sync.create_missing,
            apply_ddl: sync.apply_ddl,
            mark_writes: config.loop_prevention(sync, target),
            loop_prevention: sync.loop_prevention,
            conflicts: sync.conflict_policy()?,
            protocol: sync.apply_protocol,
            apply_lanes: sync.apply_lanes,
            group: match &sync.group {
                Some(name) => Some(GroupTables {
                    name: name.clone(),
                    tables: sync.filter()?,
                }),
                None => None,
            },
        },
        // With lanes a batch feeds every lane (about `batch_rows` each) and the queue holds
        // `queue_rows` per lane: memory grows linearly with `apply_lanes`.
        batch_rows: sync.batch_rows.saturating_mul(sync.apply_lanes.max(1)),
        batch_wait: Duration::from_millis(sync.batch_wait_ms),
        queue: sync.queue_transactions,
        queue_rows: sync.queue_rows.saturating_mul(sync.apply_lanes.max(1)),
        queue_bytes: sync.queue_bytes.saturating_mul(sync.apply_lanes.max(1)),
        part_bytes: part_bytes(config, sync),
        checkpoints: shared.checkpoints.clone(),
        registry: shared.registry.clone(),
        group: sync.group.clone(),
        evictions: shared.evictions.clone(),
        kafka: None,
        control: shared.controls.watch(sync.control_name()),
        until,
        finished: AtomicBool::new(false),
        progress: AtomicU64::new(0),
        failed: AtomicBool::new(false),
        cgroup: None,
        held: AtomicBool::new(false),
        fenced: AtomicBool::new(false),
    })
}

/// Parts of a large source transaction are a quarter of the queue's byte bound: the queue
/// then holds several, and one part never fills it alone.
const PARTS_PER_QUEUE: usize = 4;

/// The part size for a sync's large source transactions on the embedded bus (see
/// docs/memory.md), or `None` where whole transactions are needed: parallel lanes (a
/// transaction's write set is dispatched whole), conflict detection and bidirectional groups
/// (they read and decide per transaction), and any sync whose source is also a target of a
/// sync (fleetsync's own applied transactions on it are recognised only at their end in
/// `marker` mode; parting one before would echo it).
fn part_bytes(config: &Config, sync: &SyncConfig) -> Option<usize> {
    let written_by_fleetsync = config
        .syncs
        .iter()
        .any(|s| s.targets.iter().any(|t| t == &sync.source));
    let whole = sync.apply_lanes > 1
        || sync.group.is_some()
        || sync
            .conflict_policy()
            .map_or(true, |c| !c.is_none() || c.group)
        || written_by_fleetsync;
    (!whole).then(|| (sync.queue_bytes / PARTS_PER_QUEUE).max(1))
}

/// The source's current binlog end: what a one-shot run must reach.
pub async fn source_end(config: &Config, sync: &SyncConfig) -> Result<Position> {
    let spec = source_spec(config, sync, "", 0)?;
    let mut conn = source::connect(&spec).await?;
    let pos = source::current_position(&mut conn, &spec.name).await?;
    let _ = conn.disconnect().await;
    Ok(pos)
}

pub async fn run(path: &Path, metrics_listen: Option<&str>) -> Result<()> {
    let file = crate::opts::load_serving(path, metrics_listen).await?;
    if let Some(api) = &file.api {
        crate::api::check(&file, api)?;
    }
    // `run` is the embedded bus: its store is the file under state_dir.
    let defs = Arc::new(crate::defs::Defs::open(file)?);
    // Subscribed before the API serves: no change can fall between the start and the loop.
    let mut changes = defs.subscribe();
    let config = (*changes.borrow_and_update().1).clone();
    preflight_all(&config).await?;
    let installed = crate::group::prepare(&config, crate::group::Mode::Install).await?;
    fleetsync_agent::owner_only::private_dir(&config.state_dir)
        .with_context(|| format!("cannot create state_dir {}", config.state_dir.display()))?;
    let shared = Shared {
        checkpoints: Some(CheckpointStore::open(&config.state_dir)?),
        registry: Arc::new(Mutex::new(Default::default())),
        controls: Controls::default(),
        evictions: Evictions::default(),
    };
    let cancel = CancellationToken::new();
    crate::group::start_gc(&config, &shared.evictions, &cancel).await?;
    let server = http::serve(
        config.metrics_addr()?,
        shared.registry.clone(),
        cancel.clone(),
    )
    .await?;
    if let Some(api) = &config.api {
        let (registry, controls) = (shared.registry.clone(), shared.controls.clone());
        let snapshot = Arc::new(config.clone());
        crate::api::serve(
            snapshot,
            api,
            registry,
            controls,
            defs.clone(),
            None,
            cancel.clone(),
        )
        .await?;
    }
    let all: Vec<String> = config.servers.iter().map(|s| s.name.clone()).collect();
    crate::health_cmd::spawn_periodic(&config, all, cancel.child_token());
    crate::group::spawn_tombstone_gauge(&config, installed, cancel.child_token());
    let _archivers = crate::archive_cmd::spawn_archivers(&config, None, &cancel)?;
    let config = Arc::new(config);
    let mut supervisor = Supervisor::new(shared.clone(), cancel.clone(), config.clone());
    for sync in &config.syncs {
        supervisor.start(&config, sync)?;
    }
    let servers = config.servers.iter().map(|s| s.name.clone()).collect();
    let _backups = crate::tasks::spawn_backups(config.clone(), servers, cancel.child_token())?;
    tracing::info!(syncs = config.syncs.len(), metrics = %server, "fleetsync running");
    let (ops_tx, mut ops) = tokio::sync::mpsc::channel(OPS_QUEUE);
    defs.attach_ops(ops_tx.clone());
    let mut schedules = Schedules::new(defs.clone(), ops_tx, cancel.clone());
    schedules.reconcile();
    let signal = shutdown_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            _ = &mut signal => break,
            Some(req) = ops.recv() => {
                let answer = match req.op {
                    SyncOp::Once => supervisor.once(&req.sync),
                    SyncOp::Resnapshot => supervisor.resnapshot(&req.sync).await,
                    SyncOp::Trigger => schedules.trigger(&req.sync),
                };
                let _ = req.reply.send(answer);
            }
            changed = changes.changed() => {
                if changed.is_err() {
                    (&mut signal).await;
                    break;
                }
                let (generation, next) = changes.borrow_and_update().clone();
                supervisor.reconcile(next).await;
                schedules.reconcile();
                defs.applied(generation);
            }
        }
    }
    tracing::info!("shutting down");
    cancel.cancel();
    supervisor.shutdown().await;
    if let Some(store) = &shared.checkpoints {
        store.flush()?;
    }
    Ok(())
}

/// The running syncs of `fleetsync run` (and of `fleetsync coordinator`, whose pipelines
/// read the Kafka bus): per sync, a cancel token and its tasks.
pub(crate) struct Supervisor {
    shared: Shared,
    /// `fleetsync coordinator`: every pipeline consumes its source's topic (a scheduled sync
    /// runs continuously there, as the file's always did).
    kafka: Option<fleetsync_agent::publish::kafka::KafkaSettings>,
    /// `[coordinator] group`: pipelines apply only the pairs this member owns.
    cgroup: Option<Arc<crate::cgroup::Membership>>,
    cancel: CancellationToken,
    /// The configuration the running syncs were started from.
    config: Arc<Config>,
    running: BTreeMap<String, Running>,
    /// Per sync, its first pipeline index and target count (replica server ids stay distinct
    /// and, across a restart of the same sync, the same).
    indexes: HashMap<String, (usize, usize)>,
    next_index: usize,
}

struct Running {
    fingerprint: u64,
    cancel: CancellationToken,
    tasks: JoinSet<()>,
    /// A scheduled sync's "run now" (`None`: continuous).
    trigger: Option<Arc<tokio::sync::Notify>>,
}

/// What a sync's pipelines are built from: its definition, its servers, its loop marking.
/// Kept in memory only (a password counts through its hash).
fn fingerprint(config: &Config, sync: &SyncConfig) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    format!("{sync:?}").hash(&mut h);
    for name in std::iter::once(&sync.source).chain(&sync.targets) {
        if let Some(s) = config.server(name) {
            hash_server(s, &mut h);
        }
    }
    for t in &sync.targets {
        config.loop_prevention(sync, t).hash(&mut h);
    }
    h.finish()
}

/// What connections to `s` are made from (a password counts through its hash).
pub(crate) fn hash_server(s: &fleetsync_config::Server, h: &mut impl std::hash::Hasher) {
    use std::hash::Hash;
    s.url.hash(h);
    s.password.hash(h);
    format!(
        "{:?}{:?}{:?}{:?}{:?}",
        s.tls, s.tls_ca, s.tls_cert, s.tls_key, s.replica_server_id
    )
    .hash(h);
}

/// Stops the tasks of `what` (already cancelled): waits up to [`GRACE`], then aborts them.
pub(crate) async fn drain(what: &str, tasks: &mut JoinSet<()>) {
    let drained =
        tokio::time::timeout(GRACE, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!("{what}: tasks did not stop within {GRACE:?}; aborting them");
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
}

impl Supervisor {
    pub(crate) fn new(shared: Shared, cancel: CancellationToken, config: Arc<Config>) -> Self {
        Supervisor {
            shared,
            kafka: None,
            cgroup: None,
            cancel,
            config,
            running: BTreeMap::new(),
            indexes: HashMap::new(),
            next_index: 0,
        }
    }

    /// Every pipeline reads the Kafka bus (`fleetsync coordinator`).
    pub(crate) fn with_kafka(
        mut self,
        settings: fleetsync_agent::publish::kafka::KafkaSettings,
    ) -> Self {
        self.kafka = Some(settings);
        self
    }

    /// Kafka pipelines apply only the pairs this member of a coordinator group owns.
    pub(crate) fn with_group(mut self, membership: Arc<crate::cgroup::Membership>) -> Self {
        self.cgroup = Some(membership);
        self
    }

    /// Starts `sync`'s pipelines (or its schedule).
    pub(crate) fn start(&mut self, config: &Arc<Config>, sync: &SyncConfig) -> Result<()> {
        let n = sync.targets.len();
        let index = match self.indexes.get(&sync.name) {
            Some(&(base, len)) if n <= len => base,
            _ => {
                let base = self.next_index;
                self.next_index += n;
                self.indexes.insert(sync.name.clone(), (base, n));
                base
            }
        };
        let cancel = self.cancel.child_token();
        let mut tasks = JoinSet::new();
        let mut trigger = None;
        if let Some(settings) = &self.kafka {
            for target in &sync.targets {
                let p = build_pipeline(config, sync, target, index, &self.shared, None)?;
                let feed = crate::kafka_cmds::feed_spec(config, settings, sync, target)?;
                let p = Pipeline {
                    kafka: Some(feed),
                    cgroup: self.cgroup.clone(),
                    ..p
                };
                tasks.spawn(p.run(cancel.clone()));
            }
        } else if let Some(expr) = &sync.schedule {
            let cron =
                parse_schedule(expr).map_err(|e| anyhow!("syncs.{}.schedule: {e}", sync.name))?;
            let now = Arc::new(tokio::sync::Notify::new());
            trigger = Some(now.clone());
            tasks.spawn(scheduled(
                config.clone(),
                sync.clone(),
                cron,
                index,
                self.shared.clone(),
                cancel.clone(),
                now,
            ));
        } else {
            let mut pipelines = Vec::new();
            for (i, target) in sync.targets.iter().enumerate() {
                pipelines.push(build_pipeline(
                    config,
                    sync,
                    target,
                    index + i,
                    &self.shared,
                    None,
                )?);
            }
            for p in pipelines {
                tasks.spawn(p.run(cancel.clone()));
            }
        }
        self.running.insert(
            sync.name.clone(),
            Running {
                fingerprint: fingerprint(config, sync),
                cancel,
                tasks,
                trigger,
            },
        );
        self.config = config.clone();
        Ok(())
    }

    /// A scheduled sync runs now (a run in progress finishes first).
    fn once(&mut self, name: &str) -> Result<String, OpRefused> {
        let r = self
            .running
            .get(name)
            .ok_or_else(|| OpRefused::Conflict(format!("sync {name:?} does not run here")))?;
        match &r.trigger {
            Some(t) => {
                t.notify_one();
                Ok(format!("sync {name}: a run to the source's current end starts now"))
            }
            None => Err(OpRefused::Conflict(format!(
                "sync {name:?} runs continuously: `once` is for scheduled syncs (pause/resume it instead)"
            ))),
        }
    }

    /// Stops `name`, marks its targets for a new snapshot (the progress rows, the
    /// checkpoints), starts it again: its tables are reloaded from the source.
    async fn resnapshot(&mut self, name: &str) -> Result<String, OpRefused> {
        let config = self.config.clone();
        let sync = config
            .syncs
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| OpRefused::Conflict(format!("sync {name:?} does not run here")))?;
        self.stop(name).await;
        let mut failed = Vec::new();
        for target in &sync.targets {
            if let Err(e) = crate::status::mark_for_resnapshot(&config, sync, target).await {
                failed.push(crate::exit::one_line(e.as_ref()));
            }
            if let Some(store) = &self.shared.checkpoints {
                let _ = store.remove(&sync.name, target);
            }
        }
        tracing::info!(sync = %name, "re-snapshot requested over the API: restarting the sync");
        let started = self.start(&config, sync);
        if let Err(e) = started {
            failed.push(crate::exit::one_line(e.as_ref()));
        }
        if failed.is_empty() {
            Ok(format!(
                "sync {name}: re-snapshotting {} from {}",
                sync.targets.join(", "),
                sync.source
            ))
        } else {
            Err(OpRefused::Failed(failed.join("; ")))
        }
    }

    /// Stops `name`'s pipelines: cancel, wait up to [`GRACE`], abort.
    async fn stop(&mut self, name: &str) {
        let Some(mut r) = self.running.remove(name) else {
            return;
        };
        r.cancel.cancel();
        drain(&format!("sync {name}"), &mut r.tasks).await;
        if let Ok(mut reg) = self.shared.registry.lock() {
            reg.retain(|_, p| p.sync != name);
        }
    }

    /// Brings the running syncs to `next`: stops deleted and changed ones, starts new and
    /// changed ones. A sync that fails to start is logged (the change was preflighted).
    pub(crate) async fn reconcile(&mut self, next: Arc<Config>) {
        let wanted: HashMap<&str, &SyncConfig> =
            next.syncs.iter().map(|s| (s.name.as_str(), s)).collect();
        let stale: Vec<String> = self
            .running
            .iter()
            .filter(|(name, r)| match wanted.get(name.as_str()) {
                None => true,
                Some(sync) => fingerprint(&next, sync) != r.fingerprint,
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in &stale {
            tracing::info!(sync = %name, "stopping sync (definition changed or deleted)");
            self.stop(name).await;
            if !wanted.contains_key(name.as_str()) {
                // A sync made again under this name starts running, not paused or cancelled.
                self.shared
                    .controls
                    .set(name, crate::control::Control::Running);
            }
        }
        for sync in &next.syncs {
            if self.running.contains_key(&sync.name) {
                continue;
            }
            tracing::info!(sync = %sync.name, "starting sync");
            if let Err(e) = self.start(&next, sync) {
                tracing::error!(sync = %sync.name, error = %crate::exit::one_line(e.as_ref()), "sync did not start");
            }
        }
        self.config = next;
    }

    /// Shutdown: every sync cancelled (the parent token), drained within [`GRACE`].
    pub(crate) async fn shutdown(mut self) {
        self.cancel.cancel();
        let all = std::mem::take(&mut self.running);
        let drained = tokio::time::timeout(GRACE, async {
            for (_, mut r) in all {
                while r.tasks.join_next().await.is_some() {}
            }
        })
        .await;
        if drained.is_err() {
            // Dropping a JoinSet aborts what is left in it.
            tracing::warn!("pipelines did not stop within {GRACE:?}; aborting them");
        }
    }
}

/// The schedules made over the API (`crate::defs::Schedule`), one task each: at each
/// occurrence of its cron expression, or when triggered, it runs its backup, health check or
/// sync with the configuration of that moment. A run that fails is logged; the next occurrence
/// runs as usual. A changed schedule's task is replaced, a deleted one's stopped.
struct Schedules {
    defs: Arc<crate::defs::Defs>,
    ops: tokio::sync::mpsc::Sender<SyncRequest>,
    cancel: CancellationToken,
    running: HashMap<
        String,
        (
            crate::defs::Schedule,
            CancellationToken,
            Arc<tokio::sync::Notify>,
        ),
    >,
}

impl Schedules {
    fn new(
        defs: Arc<crate::defs::Defs>,
        ops: tokio::sync::mpsc::Sender<SyncRequest>,
        cancel: CancellationToken,
    ) -> Self {
        Schedules {
            defs,
            ops,
            cancel,
            running: HashMap::new(),
        }
    }

    fn reconcile(&mut self) {
        let wanted = self.defs.schedules();
        self.running.retain(|name, (s, cancel, _)| {
            let keep = wanted.iter().any(|w| w == s);
            if !keep {
                tracing::info!(schedule = %name, "schedule stopped (changed or deleted)");
                cancel.cancel();
            }
            keep
        });
        for s in wanted.iter() {
            if self.running.contains_key(&s.name) {
                continue;
            }
            let Ok(cron) = parse_schedule(&s.cron) else {
                continue; // Checked when stored.
            };
            let cancel = self.cancel.child_token();
            let now = Arc::new(tokio::sync::Notify::new());
            tokio::spawn(run_schedule(
                s.clone(),
                cron,
                self.defs.clone(),
                self.ops.clone(),
                cancel.clone(),
                now.clone(),
            ));
            tracing::info!(schedule = %s.name, cron = %s.cron, kind = s.kind.as_str(), target = %s.target, "schedule started");
            self.running
                .insert(s.name.clone(), (s.clone(), cancel, now));
        }
    }

    fn trigger(&self, name: &str) -> Result<String, OpRefused> {
        let (_, _, now) = self
            .running
            .get(name)
            .ok_or_else(|| OpRefused::Conflict(format!("schedule {name:?} does not run here")))?;
        now.notify_one();
        Ok(format!(
            "schedule {name}: runs now (a run in progress finishes first)"
        ))
    }
}

async fn run_schedule(
    s: crate::defs::Schedule,
    cron: croner::Cron,
    defs: Arc<crate::defs::Defs>,
    ops: tokio::sync::mpsc::Sender<SyncRequest>,
    cancel: CancellationToken,
    run_now: Arc<tokio::sync::Notify>,
) {
    use crate::defs::ScheduleKind;
    loop {
        let now = chrono::Utc::now();
        let Ok(next) = cron.find_next_occurrence(&now, false) else {
            tracing::error!(schedule = %s.name, "schedule has no next occurrence; stopping it");
            return;
        };
        let wait = (next - now).to_std().unwrap_or(Duration::ZERO);
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = run_now.notified() => tracing::info!(schedule = %s.name, "schedule triggered over the API"),
            _ = tokio::time::sleep(wait) => {}
        }
        let config = defs.effective();
        let target = s.target.clone();
        let run = async {
            match s.kind {
                ScheduleKind::Backup => crate::tasks::run_once(&config, &[target]).await,
                ScheduleKind::Health => crate::health_cmd::check_once(&config, &target).await,
                ScheduleKind::Sync => {
                    let (reply, answer) = tokio::sync::oneshot::channel();
                    let req = SyncRequest {
                        sync: target.clone(),
                        op: SyncOp::Once,
                        reply,
                    };
                    let outcome = match ops.send(req).await {
                        Ok(()) => answer
                            .await
                            .map_err(|_| OpRefused::Failed("shutting down".into())),
                        Err(_) => Err(OpRefused::Failed("shutting down".into())),
                    };
                    match outcome {
                        Ok(Ok(m)) => tracing::info!(schedule = %s.name, "{m}"),
                        Ok(Err(e)) | Err(e) => {
                            tracing::warn!(schedule = %s.name, error = %e, "scheduled sync run refused")
                        }
                    }
                }
            }
        };
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = run => {}
        }
    }
}

/// Runs `sync` at each occurrence of `cron` until the targets reach the source's position of
/// that moment. A failing run is logged and retried at the next occurrence.
async fn scheduled(
    config: Arc<Config>,
    sync: SyncConfig,
    cron: croner::Cron,
    index: usize,
    shared: Shared,
    cancel: CancellationToken,
    run_now: Arc<tokio::sync::Notify>,
) {
    loop {
        let now = chrono::Utc::now();
        let Ok(next) = cron.find_next_occurrence(&now, false) else {
            tracing::error!(sync = %sync.name, "schedule has no next occurrence; stopping it");
            return;
        };
        let wait = (next - now).to_std().unwrap_or(Duration::ZERO);
        tracing::info!(sync = %sync.name, next = %next, "scheduled sync waiting");
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
            _ = run_now.notified() => tracing::info!(sync = %sync.name, "run requested over the API"),
        }
        // A cancel from the sync manager applies to one run: the next occurrence runs again.
        shared
            .controls
            .set(&sync.name, crate::control::Control::Running);
        if let Err(e) = run_once(&config, &sync, index, &shared, &cancel).await {
            tracing::warn!(sync = %sync.name, error = %crate::exit::one_line(e.as_ref()), "scheduled run failed");
        }
    }
}

/// One run of `sync`: every target until it reaches the source's current position.
pub async fn run_once(
    config: &Config,
    sync: &SyncConfig,
    index: usize,
    shared: &Shared,
    cancel: &CancellationToken,
) -> Result<()> {
    let until = source_end(config, sync).await?;
    tracing::info!(sync = %sync.name, until = %until, "sync run started");
    let mut runs = JoinSet::new();
    for (i, target) in sync.targets.iter().enumerate() {
        let pipeline =
            build_pipeline(config, sync, target, index + i, shared, Some(until.clone()))?;
        runs.spawn(pipeline.run(cancel.child_token()));
    }
    while runs.join_next().await.is_some() {}
    tracing::info!(sync = %sync.name, "sync run finished");
    Ok(())
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
