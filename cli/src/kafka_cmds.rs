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

pub async fn coordinator(path: &Path, metrics_listen: Option<&str>) -> Result<()> {
    let file = crate::opts::load_serving(path, metrics_listen).await?;
    // The API's tokens and audit log are on the brokers: no replica keeps them on disk.
    let api_state = match &file.api {
        Some(api) => {
            let state = crate::api::kstate::KafkaState::open(&file.bus).await?;
            let tokens = crate::api::tokens::TokenCache::kafka(state.clone());
            crate::api::check_with(api, &tokens)?;
            Some(state)
        }
        None => None,
    };
    let settings = kafka_settings(&file)?;
    // The file's syncs are checked first (API-made ones were checked when made).
    for sync in &file.syncs {
        for target in &sync.targets {
            let conn = mysql_async::Conn::new(opts_by_name(&file, target)?)
                .await
                .map_err(|e| anyhow!("sync {}: {}", sync.name, source::connect_error(target, e)))?;
            let _ = conn.disconnect().await;
        }
    }
    // Refuse unsafe topics before consuming; a topic not created yet (its agent has not run)
    // is waited for by its pipelines (which check it again before each start).
    let topics = kafka_topics::consumed_topics(&file);
    let states = kafka_topics::prepare(&file.bus, &topics, false).await?;
    for ((topic, _), state) in topics.iter().zip(states) {
        if state == TopicState::Missing {
            tracing::warn!(topic = %topic, "topic does not exist yet: waiting for its agent to create it");
        }
    }
    // The file's definitions and the API's (the definitions topic, followed live).
    let defs = crate::defs::Defs::open_for(file, true).await?;
    // Subscribed before the API serves: no change can fall between the start and the loop.
    let mut changes = defs.subscribe();
    let config = Arc::new((*changes.borrow_and_update().1).clone());
    let registry: Registry = Arc::new(Mutex::new(Default::default()));
    let cancel = CancellationToken::new();
    let controls = Controls::default();
    let addr = http::serve(config.metrics_addr()?, registry.clone(), cancel.clone()).await?;
    if let Some(api) = &config.api {
        crate::api::serve(
            config.clone(),
            api,
            registry.clone(),
            controls.clone(),
            defs.clone(),
            api_state,
            cancel.clone(),
        )
        .await?;
    }
    let evictions = fleetsync_coordinator::gc::Evictions::default();
    crate::group::start_gc(&config, &evictions, &cancel).await?;
    let shared = Shared {
        checkpoints: None,
        registry,
        controls,
        evictions,
    };
    // `[coordinator] group`: join the group (its topics, the pairs' slots) before any pipeline
    // starts; without it every coordinator runs every pair (the target's lock decides).
    // SIGTERM while joining (slow brokers) ends the process cleanly too.
    let signal = shutdown_signal();
    tokio::pin!(signal);
    let cgroup = match &config.coordinator.group {
        Some(_) => tokio::select! {
            g = crate::cgroup::Group::join(&config) => Some(g?),
            _ = &mut signal => return Ok(()),
        },
        None => None,
    };
    // The same supervisor as `fleetsync run`: API-made syncs start, restart and stop live.
    let mut supervisor =
        Supervisor::new(shared, cancel.clone(), config.clone()).with_kafka(settings);
    if let Some(g) = &cgroup {
        supervisor = supervisor.with_group(g.membership.clone());
    }
    for sync in &config.syncs {
        supervisor.start(&config, sync)?;
    }
    tracing::info!(metrics = %addr, syncs = config.syncs.len(), "fleetsync coordinator running");
    loop {
        tokio::select! {
            _ = &mut signal => break,
            changed = changes.changed() => {
                if changed.is_err() {
                    (&mut signal).await;
                    break;
                }
                let (generation, next) = changes.borrow_and_update().clone();
                if let Some(g) = &cgroup {
                    // New pairs get their slots before their pipelines start (a pipeline
                    // without a slot would wait in standby until one is registered).
                    if let Err(e) = g.register(&next).await {
                        tracing::error!(error = %crate::exit::one_line(e.as_ref()), "coordinator group: new pairs got no slot");
                    }
                }
                supervisor.reconcile(next).await;
                defs.applied(generation);
            }
        }
    }
    cancel.cancel();
    supervisor.shutdown().await;
    if let Some(g) = cgroup {
        g.leave().await;
    }
    Ok(())
}

/// Where the pipeline of (`sync`, `target`) reads from under `fleetsync coordinator`.
pub fn feed_spec(
    config: &Config,
    settings: &KafkaSettings,
    sync: &SyncConfig,
    target: &str,
) -> Result<KafkaFeedSpec> {
    Ok(KafkaFeedSpec {
        bus: config.bus.clone(),
        settings: settings.clone(),
        topic: config.bus.topic(&sync.source),
        partition: partition_for(&sync.source, 1),
        group: format!("fleetsync.{}.{}", sync.name, target),
        filter: sync.filter()?,
    })
}

/// Checks the topic before a pipeline consumes it: unsafe settings stop the pipeline
/// ([`FeedError::UnsafeTopic`]); a missing topic or unreachable brokers are retried.
async fn check_feed_topic(feed: &KafkaFeedSpec) -> Result<()> {
    let topics = [(feed.topic.clone(), TopicRole::Changes)];
    match kafka_topics::prepare(&feed.bus, &topics, false).await {
        Ok(states) if states.first() == Some(&TopicState::Missing) => Err(anyhow!(
            "topic {} does not exist yet: start the agent of its server, which creates it",
            feed.topic
        )),
        Ok(_) => Ok(()),
        Err(TopicError::Unsafe(line)) => Err(FeedError::UnsafeTopic(line).into()),
        Err(e) => Err(e.into()),
    }
}

/// How long one attempt to take a pipeline's lock on its target waits (`GET_LOCK`).
const LOCK_WAIT_SECS: u32 = 2;
/// Coordinator groups: how often a fenced pipeline looks whether the pair's lock was let go.
const FENCED_RECHECK: Duration = Duration::from_secs(1);

impl Pipeline {
    /// Takes the named lock of this (sync, target) on the target (`GET_LOCK`, held by the
    /// returned connection, released when it closes — also when the process dies), waiting
    /// while another coordinator holds it. `None`: cancelled while waiting.
    async fn apply_lock(&self, cancel: &CancellationToken) -> Result<Option<mysql_async::Conn>> {
        use mysql_async::prelude::Queryable;
        let name = lock_name(&self.applier.sync, &self.applier.target);
        let mut conn = mysql_async::Conn::new(self.target_opts.clone()).await?;
        let mut told = false;
        loop {
            let got: Option<Option<i64>> = tokio::select! {
                biased;
                _ = cancel.cancelled() => return Ok(None),
                r = conn.exec_first("SELECT GET_LOCK(?, ?)", (&name, LOCK_WAIT_SECS)) => r?,
            };
            if got.flatten() == Some(1) {
                if told {
                    tracing::info!(sync = %self.applier.sync, target = %self.applier.target, "took over applying");
                }
                return Ok(Some(conn));
            }
            if !told {
                tracing::info!(sync = %self.applier.sync, target = %self.applier.target, "another coordinator applies this sync to this target: standing by");
                self.update(|s| s.state = "standby".into());
                told = true;
            }
        }
    }

    /// Coordinator groups: takes the pair's lock while this member owns the pair, fencing a
    /// previous owner that still holds it (a stalled or half-open process): every connection
    /// holding the pair's lock or its applier's locks is ended (`KILL CONNECTION`), which
    /// rolls back its open transaction and frees the locks. Once the pair's lock is ours,
    /// holders of the applier's locks left over from a previous owner are ended too, so that
    /// the applier (which reads the stored position only after taking its own lock) starts at
    /// once. `None`: cancelled, the pair was revoked, or this pipeline was fenced (it held the
    /// lock since it got the pair and another member holds it now: it drops the pair and
    /// never fences back; see [`Pipeline::wait_owned`]).
    async fn group_lock(
        &self,
        member: &crate::cgroup::Membership,
        cancel: &CancellationToken,
    ) -> Result<Option<mysql_async::Conn>> {
        use mysql_async::prelude::Queryable;
        let (sync, target) = (&self.applier.sync, &self.applier.target);
        let key = crate::cgroup::pair_key(sync, target);
        let name = lock_name(sync, target);
        let applier_locks = fleetsync_coordinator::apply::owner_locks(sync, &self.applier.source);
        let mut conn = mysql_async::Conn::new(self.target_opts.clone()).await?;
        let me = u64::from(conn.id());
        // The first try does not wait: a holder is fenced at once (the group already waited
        // the session timeout); after a fence, the wait lets the ended connection go. A
        // pipeline that held the lock waits too: its own previous connection may still be
        // closing, which must not look like being fenced.
        let mut wait = if self.held.load(Ordering::SeqCst) {
            LOCK_WAIT_SECS
        } else {
            0
        };
        loop {
            if !member.owns(&key) {
                return Ok(None);
            }
            let got: Option<Option<i64>> = tokio::select! {
                biased;
                _ = cancel.cancelled() => return Ok(None),
                r = conn.exec_first("SELECT GET_LOCK(?, ?)", (&name, wait)) => r?,
            };
            wait = LOCK_WAIT_SECS;
            if got.flatten() == Some(1) {
                self.held.store(true, Ordering::SeqCst);
                let n = kill_holders(&mut conn, &applier_locks, me).await?;
                if n > 0 {
                    tracing::warn!(sync = %sync, target = %target, connections = n, "fenced a previous owner's applier connections on the target");
                }
                record_owner(&mut conn, sync, target, &member.member).await?;
                tracing::info!(sync = %sync, target = %target, member = %member.member, "owner of this pair: applying");
                return Ok(Some(conn));
            }
            if self.held.swap(false, Ordering::SeqCst) {
                // We held the lock since we got the pair; someone else holds it now: another
                // member took the pair over and ended our connections.
                self.fenced.store(true, Ordering::SeqCst);
                metrics::counter!(crate::cgroup::METRIC_FENCED, "sync" => sync.clone(), "target" => target.clone()).increment(1);
                tracing::warn!(sync = %sync, target = %target, member = %member.member, "fenced: another coordinator of the group took this pair over; dropping it");
                return Ok(None);
            }
            let locks: Vec<String> = std::iter::once(name.clone())
                .chain(applier_locks.iter().cloned())
                .collect();
            let n = kill_holders(&mut conn, &locks, me).await?;
            tracing::warn!(sync = %sync, target = %target, connections = n, "the pair's previous owner still holds its lock on the target: fencing it (ended its connections)");
        }
    }

    /// Coordinator groups: waits until this member owns the pair (`standby` meanwhile). A
    /// fenced pipeline waits until the pair is revoked (the group caught up: it is `standby`
    /// again) or its lock is let go (the member that fenced it stopped while this one still
    /// owns the pair); it never fences back. `false`: cancelled.
    async fn wait_owned(
        &self,
        member: &crate::cgroup::Membership,
        cancel: &CancellationToken,
    ) -> Result<bool> {
        use mysql_async::prelude::Queryable;
        let key = crate::cgroup::pair_key(&self.applier.sync, &self.applier.target);
        let mut owned = member.subscribe();
        let mut shown = String::new();
        loop {
            let ours = owned.borrow_and_update().contains(&key);
            if !ours {
                self.held.store(false, Ordering::SeqCst);
                self.fenced.store(false, Ordering::SeqCst);
            }
            let fenced = self.fenced.load(Ordering::SeqCst);
            if ours && fenced {
                let name = lock_name(&self.applier.sync, &self.applier.target);
                let mut conn = mysql_async::Conn::new(self.target_opts.clone()).await?;
                let holder: Option<Option<u64>> =
                    conn.exec_first("SELECT IS_USED_LOCK(?)", (&name,)).await?;
                let _ = conn.disconnect().await;
                if holder.flatten().is_none() {
                    tracing::info!(sync = %self.applier.sync, target = %self.applier.target, "the member that fenced this pair let it go: applying it again");
                    self.fenced.store(false, Ordering::SeqCst);
                    return Ok(true);
                }
            } else if ours {
                return Ok(true);
            }
            let state = if fenced { "fenced" } else { "standby" };
            if shown != state {
                shown = state.to_string();
                self.update(|s| {
                    s.state = state.into();
                    s.owner = None;
                    s.error = None;
                    s.failure = None;
                });
            }
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return Ok(false),
                changed = owned.changed() => if changed.is_err() { return Ok(false) },
                _ = tokio::time::sleep(FENCED_RECHECK), if fenced => {}
            }
        }
    }
}

/// Ends every connection but `me` that holds one of `locks` on the target. A connection gone
/// meanwhile is fine. Ending another user's connection needs `CONNECTION ADMIN` (MariaDB
/// 10.5+) or `SUPER`; every coordinator of a group uses the same user in practice.
async fn kill_holders(conn: &mut mysql_async::Conn, locks: &[String], me: u64) -> Result<usize> {
    use mysql_async::prelude::Queryable;
    let mut killed = 0;
    for name in locks {
        let holder: Option<Option<u64>> =
            conn.exec_first("SELECT IS_USED_LOCK(?)", (name,)).await?;
        let Some(id) = holder.flatten().filter(|id| *id != me) else {
            continue;
        };
        match conn.query_drop(format!("KILL CONNECTION {id}")).await {
            Ok(()) => killed += 1,
            // ER_NO_SUCH_THREAD: it went away by itself.
            Err(mysql_async::Error::Server(e)) if e.code == 1094 => {}
            Err(e) => {
                return Err(anyhow!(
                    "cannot end the previous owner's connection {id} (it holds {name}): {e}; the coordinators must connect as the same user, or have CONNECTION ADMIN"
                ))
            }
        }
    }
    Ok(killed)
}

/// The pair's owner as `fleetsync status` shows it: written by the owner on its lock
/// connection, believed only while that connection holds the pair's lock.
const OWNER_TABLE: &str = "CREATE DATABASE IF NOT EXISTS fleetsync; \
    CREATE TABLE IF NOT EXISTS fleetsync.pair_owner (sync_name VARCHAR(64) NOT NULL, \
    target VARCHAR(64) NOT NULL, member VARCHAR(255) NOT NULL, connection_id BIGINT UNSIGNED NOT NULL, \
    since_ms BIGINT UNSIGNED NOT NULL, PRIMARY KEY (sync_name, target)) ENGINE=InnoDB";

async fn record_owner(
    conn: &mut mysql_async::Conn,
    sync: &str,
    target: &str,
    member: &str,
) -> Result<()> {
    use mysql_async::prelude::Queryable;
    conn.query_drop(OWNER_TABLE).await?;
    conn.exec_drop(
        "REPLACE INTO fleetsync.pair_owner VALUES (?, ?, ?, CONNECTION_ID(), ?)",
        (
            sync,
            target,
            member,
            fleetsync_agent::source::stream::now_ms(),
        ),
    )
    .await?;
    Ok(())
}

/// The member applying (`sync`, `target`) according to the target: the recorded owner while
/// its connection holds the pair's lock; `None` when nobody holds it (or it is unknown).
pub async fn owner_of(conn: &mut mysql_async::Conn, sync: &str, target: &str) -> Option<String> {
    use mysql_async::prelude::Queryable;
    let name = lock_name(sync, target);
    let row: Option<(String, Option<u64>, Option<u64>)> = conn
        .exec_first(
            "SELECT member, connection_id, IS_USED_LOCK(?) FROM fleetsync.pair_owner WHERE sync_name = ? AND target = ?",
            (&name, sync, target),
        )
        .await
        .ok()
        .flatten();
    let (member, recorded, holder) = row?;
    (recorded.is_some() && recorded == holder).then_some(member)
}

/// Pings the lock's connection every [`LOCK_PING`] (every [`GROUP_LOCK_PING`] in a
/// coordinator group: a fenced member notices its ended connection at once); returns when it
/// fails.
async fn keep_lock(conn: &mut mysql_async::Conn, group: bool) -> anyhow::Error {
    use mysql_async::prelude::Queryable;
    let every = if group { GROUP_LOCK_PING } else { LOCK_PING };
    loop {
        tokio::time::sleep(every).await;
        if let Err(e) = conn.ping().await {
            return anyhow!("lost the connection that holds the apply lock on the target: {e}");
        }
    }
}

/// The lock connection's keepalive: far below any server's `wait_timeout`.
const LOCK_PING: Duration = Duration::from_secs(60);
/// The lock connection's ping in a coordinator group.
const GROUP_LOCK_PING: Duration = Duration::from_secs(1);

/// The pair's lock name: at most 64 characters (MariaDB's limit), a hash past that.
fn lock_name(sync: &str, target: &str) -> String {
    let name = format!("fleetsync.apply.{sync}.{target}");
    if name.len() <= 64 {
        return name;
    }
    // A stable hash: every coordinator (any build) must name the same lock.
    use sha2::Digest;
    let digest = sha2::Sha256::digest(name.as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("fleetsync.apply.{hex}")
}

/// Where a Kafka pipeline reads from.
#[derive(Clone)]
pub struct KafkaFeedSpec {
    /// For the topic check before each start.
    pub bus: BusConfig,
    pub settings: KafkaSettings,
    pub topic: String,
    pub partition: i32,
    pub group: String,
    pub filter: TableFilter,
}

impl Pipeline {
    /// Consumes after the offset stored in the target until cancelled or an error. In a
    /// coordinator group, only while this member owns the pair: it waits for ownership, and
    /// a revoke ends the attempt (its target connections close, which frees the locks) and
    /// goes back to waiting.
    pub async fn kafka_once(&self, feed: &KafkaFeedSpec, cancel: &CancellationToken) -> Result<()> {
        let Some(member) = self.cgroup.clone() else {
            return self.kafka_attempt(feed, cancel, None).await;
        };
        let key = crate::cgroup::pair_key(&self.applier.sync, &self.applier.target);
        loop {
            if !self.wait_owned(&member, cancel).await? {
                return Ok(());
            }
            member.activate(&key);
            let result = self.kafka_attempt(feed, cancel, Some(&member)).await;
            member.released(&key);
            self.update(|s| s.owner = None);
            result?;
            if cancel.is_cancelled() {
                return Ok(());
            }
        }
    }

    /// One connection + feed attempt: consume after the offset stored in the target. In a
    /// group, `Ok` also when the pair was revoked or this member was fenced.
    async fn kafka_attempt(
        &self,
        feed: &KafkaFeedSpec,
        cancel: &CancellationToken,
        member: Option<&crate::cgroup::Membership>,
    ) -> Result<()> {
        // One applier per (sync, target) across the fleet: every coordinator follows the same
        // API-made syncs, and the one holding the target's lock applies (the others stand by).
        let lock = match member {
            None => self.apply_lock(cancel).await?,
            Some(m) => self.group_lock(m, cancel).await?,
        };
        let Some(mut lock) = lock else {
            return Ok(());
        };
        if let Some(m) = member {
            let id = m.member.clone();
            self.update(|s| s.owner = Some(id));
        }
        let result = self.attempt_locked(feed, cancel, member, &mut lock).await;
        // In a group, an error under the lock (at any step: a member stalled while starting
        // finds its applier's connection ended) may be another member ending our connections
        // (fencing): if the pair's lock is now held by a connection not ours, drop the pair
        // (never retry into the lock, never fence back). A stalled member that wakes up may
        // see the revoke first: the check is the same.
        let result = match (result, member) {
            (r, Some(m)) if !cancel.is_cancelled() && self.fenced_now(&lock).await => {
                self.held.store(false, Ordering::SeqCst);
                self.fenced.store(true, Ordering::SeqCst);
                metrics::counter!(crate::cgroup::METRIC_FENCED, "sync" => self.applier.sync.clone(), "target" => self.applier.target.clone()).increment(1);
                let why = r.err().map(|e| crate::exit::one_line(e.as_ref()));
                tracing::warn!(sync = %self.applier.sync, target = %self.applier.target, member = %m.member, error = ?why, "fenced: another coordinator of the group took this pair over and ended our connections; dropping it");
                Ok(())
            }
            (r, _) => r,
        };
        let _ = lock.disconnect().await;
        result
    }

    /// The part of an attempt that runs under the pair's lock (`lock`): the applier, the
    /// feed, the apply loop. In a group, `Ok` also when the pair was revoked.
    async fn attempt_locked(
        &self,
        feed: &KafkaFeedSpec,
        cancel: &CancellationToken,
        member: Option<&crate::cgroup::Membership>,
        lock: &mut mysql_async::Conn,
    ) -> Result<()> {
        let mut applier = Applier::connect(
            self.target_opts.clone(),
            self.spec.opts.clone(),
            self.applier.clone(),
        )
        .await?;
        self.refuse_evicted()?;
        let state = applier.load_state().await?;
        let after = state.as_ref().and_then(|s| s.bus_offset);
        check_feed_topic(feed).await?;
        let mut kafka = KafkaFeed::new(
            feed.settings.client_config(),
            &feed.settings.redactor,
            &feed.group,
            &feed.topic,
            feed.partition,
            after,
            feed.filter.clone(),
        )?;
        tracing::info!(sync = %self.applier.sync, target = %self.applier.target, topic = %feed.topic, after = ?after, "consuming");
        // The lock lives as long as its connection: keep it from idling out (`wait_timeout`);
        // a lost lock connection stops applying (the pipeline retries and takes it again).
        let key = crate::cgroup::pair_key(&self.applier.sync, &self.applier.target);
        let result = tokio::select! {
            r = self.apply_loop(&mut applier, &mut kafka, cancel) => r,
            e = keep_lock(lock, member.is_some()) => Err(e),
            _ = revoked(member, &key) => {
                tracing::info!(sync = %self.applier.sync, target = %self.applier.target, "pair revoked: letting go of the target");
                Ok(())
            }
        };
        // The target connections close now (the locks go with them) — also mid-batch: the
        // open transaction rolls back, and the next owner reads the position after the lock.
        drop(applier);
        // librdkafka's consumer close can block for long: drop it off the runtime.
        tokio::task::spawn_blocking(move || drop(kafka));
        result
    }
}

impl Pipeline {
    /// Whether the pair's lock is held by a connection other than `lock` (ours): another
    /// member fenced this one (a member moving the pair normally waits for this one to let
    /// go, so it cannot hold the lock yet). Unknown (the target unreachable) counts as not
    /// fenced.
    async fn fenced_now(&self, lock: &mysql_async::Conn) -> bool {
        use mysql_async::prelude::Queryable;
        let name = lock_name(&self.applier.sync, &self.applier.target);
        let check = async {
            let mut conn = mysql_async::Conn::new(self.target_opts.clone()).await?;
            let holder: Option<Option<u64>> =
                conn.exec_first("SELECT IS_USED_LOCK(?)", (&name,)).await?;
            let _ = conn.disconnect().await;
            anyhow::Ok(holder.flatten())
        };
        match tokio::time::timeout(Duration::from_secs(5), check).await {
            Ok(Ok(holder)) => {
                tracing::debug!(sync = %self.applier.sync, target = %self.applier.target, holder = ?holder, ours = lock.id(), "who holds the pair's lock");
                holder.is_some_and(|id| id != u64::from(lock.id()))
            }
            Ok(Err(e)) => {
                tracing::warn!(sync = %self.applier.sync, target = %self.applier.target, error = %crate::exit::one_line(e.as_ref()), "cannot tell whether another member fenced this one");
                false
            }
            Err(_) => false,
        }
    }
}

/// Resolves when `member` no longer owns `key` (never without a group).
async fn revoked(member: Option<&crate::cgroup::Membership>, key: &str) {
    let Some(m) = member else {
        return std::future::pending().await;
    };
    let mut owned = m.subscribe();
    loop {
        if !owned.borrow_and_update().contains(key) {
            return;
        }
        if owned.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}
