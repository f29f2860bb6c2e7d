//! `fleetsync agent` and `fleetsync coordinator`: separate processes over Kafka.
//!
//! The agent of a server reads its binlog once and publishes every change of the tables any
//! sync reads from it to `<topic_prefix>.<server>`, in Kafka transactions; it resumes after
//! the last transaction committed in that topic (no state volume; an older agent's sled
//! checkpoint in `state_dir` is read only when the topic holds none). Several agents of one
//! server may run: one is elected to publish, the others stand by
//! (`fleetsync_agent::publish::election`, `docs/agent-failover.md`). The coordinator runs one
//! consumer + applier per (sync, target), starting just after the offset stored in the target.
//!
//! Both follow the definition store (`crate::defs`, the compacted definitions topic) and merge
//! it with their file as `fleetsync run` does: the coordinator's pipelines are kept in step by
//! `run`'s [`Supervisor`], the agent's per-server publishers by [`Publishers`] (a server's
//! publisher restarts from its topic's last committed transaction when its syncs' filters
//! change). Every coordinator
//! runs every sync; a pipeline applies only while it holds its (sync, target) lock on the
//! target (`GET_LOCK`), so one coordinator applies and the others stand by. With
//! `[coordinator] group` the coordinators share the pairs instead (`crate::cgroup`): a
//! pipeline applies only while its member owns the pair, and a new owner fences a previous
//! one that still holds the pair's locks (see [`Pipeline::group_lock`], docs/scaling.md).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use fleetsync_agent::checkpoint::CheckpointStore;
use fleetsync_agent::publish::election::Election;
use fleetsync_agent::publish::kafka::{
    partition_for, publish_reset, KafkaPublisher, KafkaSettings, METRIC_AGENT_FENCED,
    METRIC_AGENT_PUBLISHING,
};
use fleetsync_agent::publish::tail;
use fleetsync_agent::source::{self, snapshot::snapshot, stream::stream, SourceSpec};
use fleetsync_agent::SourceError;
use fleetsync_config::topic_policy::TopicRole;
use fleetsync_config::{BusConfig, BusKind, Config, SyncConfig, TableFilter};
use fleetsync_coordinator::apply::Applier;
use fleetsync_coordinator::feed::kafka::KafkaFeed;
use fleetsync_coordinator::feed::FeedError;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::control::Controls;
use crate::http;
use crate::kafka_topics::{self, TopicError, TopicState};
use crate::opts::{opts_by_name, server_opts};
use crate::pipeline::{Pipeline, Registry};
use crate::preflight::preflight_all;
use crate::run::{shutdown_signal, Shared, Supervisor};

const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long an agent that lost the publisher role waits for its publisher to stop (and its
/// last commit to be accepted or fenced) before dropping it.
const LOST_ROLE_GRACE: Duration = Duration::from_secs(10);

fn kafka_settings(config: &Config) -> Result<KafkaSettings> {
    if config.bus.kind != BusKind::Kafka {
        return Err(anyhow!(
            "bus.kind is \"embedded\": separate agent and coordinator processes need [bus] kind = \"kafka\" and brokers (or use `fleetsync run`)"
        ));
    }
    Ok(KafkaSettings::from_bus(&config.bus))
}

pub async fn agent(
    path: &Path,
    only: Option<&str>,
    start_at: Option<&str>,
    metrics_listen: Option<&str>,
) -> Result<()> {
    let file = crate::opts::load_serving(path, metrics_listen).await?;
    let settings = kafka_settings(&file)?;
    let start_at = match start_at {
        Some(p) => Some(
            p.parse::<fleetsync_proto::Position>()
                .map_err(|e| anyhow!("--start-at: {e}"))?,
        ),
        None => None,
    };
    // The file's syncs are checked first (API-made ones were checked when made).
    preflight_all(&file).await?;
    // Bidirectional groups (file only): versions, tombstones and triggers before anything is
    // read.
    let installed = crate::group::prepare(&file, crate::group::Mode::Install).await?;
    // Before anything is published: the file's topics exist with safe settings, or we stop.
    kafka_topics::prepare(
        &file.bus,
        &change_topics(&file, &sources_of(&file, only)),
        true,
    )
    .await?;
    // The file's definitions and the API's (the definitions topic, followed live).
    let defs = crate::defs::Defs::open_for(file, true).await?;
    let mut changes = defs.subscribe();
    let config = Arc::new((*changes.borrow_and_update().1).clone());
    let sources = sources_of(&config, only);
    if let Some(o) = only {
        if config.server(o).is_none() {
            return Err(anyhow!("--server {o:?}: no such server"));
        }
        if sources.is_empty() {
            tracing::info!(
                server = o,
                "not the source of any sync yet: waiting for one (definitions made over the API)"
            );
        }
    }
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("cannot create state_dir {}", config.state_dir.display()))?;
    // Checkpoints live in the topics; an older agent's sled store is read (never written)
    // when a topic holds no transaction yet: the migration path.
    let store_name = format!("agent-{}", only.unwrap_or("all"));
    let legacy = if config.state_dir.join(format!("{store_name}.sled")).exists() {
        Some(CheckpointStore::open_named(&config.state_dir, &store_name)?)
    } else {
        None
    };
    let cancel = CancellationToken::new();
    let registry: Registry = Arc::new(Mutex::new(Default::default()));
    let addr = http::serve(config.metrics_addr()?, registry.clone(), cancel.clone()).await?;
    crate::health_cmd::spawn_periodic(&config, sources.clone(), cancel.child_token());
    crate::group::spawn_tombstone_gauge(&config, installed, cancel.child_token());
    let names: Vec<&str> = sources.iter().map(String::as_str).collect();
    let _archivers = crate::archive_cmd::spawn_archivers(&config, Some(&names), &cancel)?;
    let _backups = crate::tasks::spawn_backups(config.clone(), sources, cancel.child_token())?;
    let (failed_tx, mut failed) = tokio::sync::mpsc::channel(1);
    let mut publishers = Publishers {
        settings,
        legacy: legacy.clone(),
        registry,
        session_timeout_ms: config.bus.agent_session_timeout_ms,
        only: only.map(str::to_string),
        start_at,
        cancel: cancel.clone(),
        failed: failed_tx,
        running: BTreeMap::new(),
    };
    publishers.reconcile(&config, true).await?;
    tracing::info!(metrics = %addr, agents = publishers.running.len(), "fleetsync agent running");
    let signal = shutdown_signal();
    tokio::pin!(signal);
    let outcome = loop {
        tokio::select! {
            _ = &mut signal => break Ok(()),
            Some(e) = failed.recv() => break Err(e),
            changed = changes.changed() => {
                if changed.is_err() {
                    (&mut signal).await;
                    break Ok(());
                }
                let (generation, next) = changes.borrow_and_update().clone();
                if let Err(e) = publishers.reconcile(&next, false).await {
                    tracing::error!(error = %crate::exit::one_line(e.as_ref()), "agent: a publisher did not start");
                }
                defs.applied(generation);
            }
        }
    };
    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(15), publishers.shutdown()).await;
    if let Some(store) = &legacy {
        store.flush()?;
    }
    outcome
}

/// The topics the agent of `sources` writes.
fn change_topics(config: &Config, sources: &[String]) -> Vec<(String, TopicRole)> {
    let mut topics = Vec::new();
    for server in sources {
        topics.push((config.bus.topic(server), TopicRole::Changes));
        if config.bus.debezium_json {
            topics.push((config.bus.json_topic(server), TopicRole::DebeziumJson));
        }
    }
    topics
}

/// The servers whose binlog this agent publishes: the sources of the syncs (of `only`).
fn sources_of(config: &Config, only: Option<&str>) -> Vec<String> {
    let mut sources: Vec<String> = config
        .syncs
        .iter()
        .map(|s| s.source.clone())
        .filter(|s| only.is_none_or(|o| o == s))
        .collect();
    sources.sort_unstable();
    sources.dedup();
    sources
}

/// The agent's publishers, one per source server, kept in step with the definitions: a server
/// that becomes a source starts publishing, one whose syncs' filters or connection changed
/// restarts (after its topic's last committed transaction: nothing lost, nothing published
/// twice), one no sync reads from any more stops.
struct Publishers {
    settings: KafkaSettings,
    /// An older agent's sled checkpoints (read only when a topic holds no transaction).
    legacy: Option<CheckpointStore>,
    /// Each server's publisher state (`standby`, `streaming`, `retrying`) for `/health`.
    registry: Registry,
    session_timeout_ms: u64,
    only: Option<String>,
    /// `--start-at`: where a server whose topic holds no transaction (and no older sled
    /// checkpoint) starts.
    start_at: Option<fleetsync_proto::Position>,
    cancel: CancellationToken,
    /// A publisher that stopped for good (a purged position...) ends the agent.
    failed: tokio::sync::mpsc::Sender<anyhow::Error>,
    running: BTreeMap<String, (u64, CancellationToken, JoinSet<()>)>,
}

/// What a server's publisher is made from: the server, the filters and chunk size of the
/// syncs that read it, the JSON topic.
fn publisher_fingerprint(config: &Config, server: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    if let Some(s) = config.server(server) {
        crate::run::hash_server(s, &mut h);
    }
    for y in config.syncs.iter().filter(|y| y.source == server) {
        format!("{:?}{:?}{}", y.include, y.exclude, y.snapshot_chunk_rows).hash(&mut h);
    }
    config.bus.debezium_json.hash(&mut h);
    h.finish()
}

impl Publishers {
    /// Brings the publishers to `config`. `strict` (at start): a topic that cannot be made
    /// safe stops the agent; later, that server's publisher is not started (logged).
    async fn reconcile(&mut self, config: &Config, strict: bool) -> Result<()> {
        let wanted: BTreeMap<String, u64> = sources_of(config, self.only.as_deref())
            .into_iter()
            .map(|s| {
                let f = publisher_fingerprint(config, &s);
                (s, f)
            })
            .collect();
        let stale: Vec<String> = self
            .running
            .iter()
            .filter(|(name, (f, _, _))| wanted.get(*name) != Some(f))
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            if let Some((_, cancel, mut tasks)) = self.running.remove(&name) {
                tracing::info!(server = %name, "stopping the publisher (its syncs changed)");
                cancel.cancel();
                crate::run::drain(&format!("publisher of {name}"), &mut tasks).await;
            }
            if !wanted.contains_key(&name) {
                // No sync reads the server any more: its position goes (a reset marker in its
                // topic, and an older sled checkpoint), so that the next sync of it starts
                // with a snapshot (of that sync's tables) instead of resuming a stream whose
                // snapshot never covered them.
                if let Some(store) = &self.legacy {
                    store.remove_key(&format!("agent/{name}"))?;
                }
                let topic = config.bus.topic(&name);
                if let Err(e) = publish_reset(&self.settings, &topic, &name).await {
                    tracing::warn!(server = %name, error = %e, "could not mark the topic as holding no position: a later sync of this server resumes instead of taking a snapshot");
                }
                if let Ok(mut r) = self.registry.lock() {
                    r.remove(&format!("agent/{name}"));
                }
                tracing::info!(server = %name, "no sync reads the server: its publisher stopped");
            }
        }
        let mut first_error = None;
        for (name, f) in wanted {
            if self.running.contains_key(&name) {
                continue;
            }
            match self.start(config, &name).await {
                Ok((cancel, tasks)) => {
                    self.running.insert(name, (f, cancel, tasks));
                }
                Err(e) if strict => return Err(e),
                Err(e) => {
                    tracing::error!(server = %name, error = %crate::exit::one_line(e.as_ref()), "publisher did not start");
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn start(
        &self,
        config: &Config,
        server: &str,
    ) -> Result<(CancellationToken, JoinSet<()>)> {
        let topics = change_topics(config, &[server.to_string()]);
        kafka_topics::prepare(&config.bus, &topics, true).await?;
        let s = config
            .server(server)
            .ok_or_else(|| anyhow!("no server {server:?}"))?;
        let readers: Vec<&SyncConfig> =
            config.syncs.iter().filter(|y| y.source == server).collect();
        let filters: Result<Vec<TableFilter>, _> = readers.iter().map(|y| y.filter()).collect();
        let spec = SourceSpec {
            name: s.name.clone(),
            opts: server_opts(s)?,
            replica_id: s.replica_id("kafka-agent"),
            filter: TableFilter::any_of(filters?),
            sync: "agent".into(),
            snapshot_chunk_rows: readers
                .first()
                .map(|y| y.snapshot_chunk_rows)
                .unwrap_or(10_000),
            include_marked: false,
            until: None,
        };
        let json_topic = config
            .bus
            .debezium_json
            .then(|| config.bus.json_topic(server));
        let cancel = self.cancel.child_token();
        let mut tasks = JoinSet::new();
        let failed = self.failed.clone();
        let run = agent_loop(
            AgentRun {
                spec,
                settings: self.settings.clone(),
                topic: config.bus.topic(server),
                json_topic,
                legacy: self.legacy.clone(),
                start_at: self.start_at.clone(),
                session_timeout_ms: self.session_timeout_ms,
                registry: self.registry.clone(),
            },
            cancel.clone(),
        );
        tasks.spawn(async move {
            if let Err(e) = run.await {
                let _ = failed.send(e).await;
            }
        });
        tracing::info!(server, "publishing");
        Ok((cancel, tasks))
    }

    async fn shutdown(mut self) {
        for (name, (_, cancel, mut tasks)) in std::mem::take(&mut self.running) {
            cancel.cancel();
            crate::run::drain(&format!("publisher of {name}"), &mut tasks).await;
        }
    }
}

/// What one server's publisher runs with.
struct AgentRun {
    spec: SourceSpec,
    settings: KafkaSettings,
    topic: String,
    json_topic: Option<String>,
    /// An older agent's sled checkpoints, for a topic that holds no transaction yet.
    legacy: Option<CheckpointStore>,
    /// `--start-at`, for a topic that holds no transaction and no sled checkpoint.
    start_at: Option<fleetsync_proto::Position>,
    session_timeout_ms: u64,
    registry: Registry,
}

impl AgentRun {
    /// Shows this server's publisher state on `/health` and in the publishing gauge.
    fn set_state(&self, state: &str, error: Option<String>) {
        let key = format!("agent/{}", self.spec.name);
        if let Ok(mut r) = self.registry.lock() {
            let entry = r.entry(key.clone()).or_default();
            entry.sync = key;
            entry.source = self.spec.name.clone();
            entry.target = self.topic.clone();
            entry.state = state.to_string();
            entry.error = error;
        }
        let publishing = if state == "standby" { 0.0 } else { 1.0 };
        metrics::gauge!(METRIC_AGENT_PUBLISHING, "server" => self.spec.name.clone())
            .set(publishing);
    }

    /// Where the elected publisher starts: the topic's last committed transaction, else an
    /// older sled checkpoint, else `--start-at`; `None` means a snapshot.
    async fn resume(&self) -> Result<(tail::Tail, Option<fleetsync_proto::Position>), SourceError> {
        let partition = partition_for(&self.spec.name, 1);
        let t = tail::read_tail(&self.settings, &self.spec.name, &self.topic, partition).await?;
        if t.complete {
            return Ok((t.clone(), t.resume));
        }
        let legacy = match &self.legacy {
            Some(store) => store
                .get_key(&format!("agent/{}", self.spec.name))
                .map_err(|e| SourceError::NeedsOperator {
                    server: self.spec.name.clone(),
                    message: e.to_string(),
                })?,
            None => None,
        };
        if let Some(p) = legacy {
            tracing::info!(server = %self.spec.name, position = %p, "the topic holds no transaction: resuming from the sled checkpoint in state_dir");
            return Ok((t, Some(p)));
        }
        if let Some(p) = &self.start_at {
            tracing::info!(server = %self.spec.name, position = %p, "the topic holds no transaction: starting at --start-at");
        }
        Ok((t, self.start_at.clone()))
    }
}

/// Runs one server's agent until cancelled: stands by until elected, then publishes until
/// cancelled, fenced or no longer elected. A purged position ends it with an error.
async fn agent_loop(run: AgentRun, cancel: CancellationToken) -> Result<()> {
    let server = run.spec.name.clone();
    let fenced_total = metrics::counter!(METRIC_AGENT_FENCED, "server" => server.clone());
    let mut backoff = Duration::from_secs(1);
    'membership: loop {
        let election = Election::join(&run.settings, &server, &run.topic, run.session_timeout_ms)?;
        let mut elected = election.elected();
        loop {
            if !*elected.borrow() {
                run.set_state("standby", None);
                tracing::info!(server = %server, "standing by: another agent of this server publishes (or the election is under way)");
            }
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                r = elected.wait_for(|e| *e) => if r.is_err() { return Ok(()) },
            }
            run.set_state("starting", None);
            tracing::info!(server = %server, "elected to publish");
            let fenced = Arc::new(AtomicBool::new(false));
            let attempt = cancel.child_token();
            let once = agent_once(&run, &fenced, &attempt);
            tokio::pin!(once);
            let outcome = tokio::select! {
                r = &mut once => Some(r),
                _ = role_lost(&mut elected) => None,
            };
            let (result, lost) = match outcome {
                Some(r) => (r, false),
                None => {
                    // Another agent was elected (this one was stopped past the session
                    // timeout, or cut off): stop reading and try to commit what is open.
                    // Either the commit is fenced (the other has taken over: counted below) or
                    // it lands before the other's `init_transactions`, which then resumes
                    // after it.
                    attempt.cancel();
                    let r = tokio::time::timeout(LOST_ROLE_GRACE, &mut once).await;
                    (r.unwrap_or(Ok(())), true)
                }
            };
            if cancel.is_cancelled() {
                return Ok(());
            }
            if fenced.load(Ordering::SeqCst) {
                // A newer agent of this server took over while this one was stopped or cut
                // off; rejoining the election (as a new member) leaves the partition with it.
                fenced_total.increment(1);
                tracing::warn!(server = %server, "fenced: another agent of this server publishes now; standing by");
                drop(election);
                continue 'membership;
            }
            if lost {
                tracing::warn!(server = %server, "no longer the elected publisher: standing by");
                continue;
            }
            match result {
                // A purged position or an event the binlog cannot carry (statement format,
                // partial row image): retrying reads the same thing again, so stop with the
                // reason.
                Err(e)
                    if crate::failure::classify_source(&e).class
                        == crate::failure::ErrorClass::Definite =>
                {
                    return Err(e.into())
                }
                Err(e) => {
                    run.set_state("retrying", Some(e.to_string()));
                    tracing::warn!(server = %server, error = %e, retry_in = ?backoff, "agent failed, retrying")
                }
                Ok(()) => tracing::warn!(server = %server, "binlog stream ended, reconnecting"),
            }
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// Returns once this agent is no longer the elected publisher.
async fn role_lost(elected: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = elected.wait_for(|e| !*e).await;
}

/// One publishing attempt: fence older producers, resume after the topic's last committed
/// transaction (or snapshot), stream until cancelled or an error.
async fn agent_once(
    run: &AgentRun,
    fenced: &Arc<AtomicBool>,
    cancel: &CancellationToken,
) -> Result<(), SourceError> {
    let spec = &run.spec;
    // `init_transactions` first: from here no older publisher can commit, so the tail read
    // next is final.
    let publisher =
        KafkaPublisher::new(&run.settings, run.topic.clone(), &spec.name, fenced.clone()).await?;
    let (tail, stored) = run.resume().await?;
    let mut publisher = publisher
        .with_next_seq(tail.next_seq())
        .with_json_topic(run.json_topic.clone());
    let mut conn = source::connect(spec).await?;
    let info = source::preflight(&mut conn, spec).await?;
    tracing::info!(server = %spec.name, resume = ?stored.as_ref().map(ToString::to_string), next_seq = tail.next_seq(), "publishing");
    let result = async {
        let from = match stored {
            Some(p) => {
                source::check_available(&mut conn, spec, &p).await?;
                p
            }
            None => {
                run.set_state("snapshotting", None);
                match snapshot(spec, &info, &mut publisher, cancel).await? {
                    Some(p) => p,
                    None => return Ok(()),
                }
            }
        };
        let _ = conn.disconnect().await;
        run.set_state("streaming", None);
        stream(spec, &info, from, &mut publisher, cancel).await
    }
    .await;
    // Commit what was published, whatever ended the stream (an error: nothing more is
    // committed, the next attempt resumes from the topic).
    match result {
        Ok(()) => publisher.flush().await,
        Err(e) => Err(e),
    }
}

mod coordinator;
pub use coordinator::{coordinator, feed_spec, owner_of, KafkaFeedSpec};
