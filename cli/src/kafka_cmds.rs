//! `fleetsync agent` and `fleetsync coordinator`: separate processes over Kafka.
//!
//! The agent of a server reads its binlog once and publishes every change of the tables any
//! sync reads from it to `<topic_prefix>.<server>`; its checkpoint (sled, `state_dir`) moves on
//! delivery reports. The coordinator runs one consumer + applier per (sync, target), starting
//! just after the offset stored in the target.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use fleetsync_agent::checkpoint::CheckpointStore;
use fleetsync_agent::publish::kafka::{partition_for, KafkaPublisher, KafkaSettings};
use fleetsync_agent::source::{self, snapshot::snapshot, stream::stream, SourceSpec};
use fleetsync_agent::SourceError;
use fleetsync_config::topic_policy::TopicRole;
use fleetsync_config::{BusConfig, BusKind, Config, TableFilter};
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
use crate::run::{build_pipeline, shutdown_signal, Shared};

const MAX_BACKOFF: Duration = Duration::from_secs(30);

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
    let config = crate::opts::load_serving(path, metrics_listen).await?;
    let settings = kafka_settings(&config)?;
    preflight_all(&config).await?;
    // Bidirectional groups: versions, tombstones and triggers before anything is read.
    let installed = crate::group::prepare(&config, crate::group::Mode::Install).await?;
    let mut sources: Vec<&str> = config.syncs.iter().map(|s| s.source.as_str()).collect();
    sources.sort_unstable();
    sources.dedup();
    if let Some(o) = only {
        if !sources.contains(&o) {
            return Err(anyhow!(
                "server {o:?} is not the source of any sync: no agent to run"
            ));
        }
        sources.retain(|s| *s == o);
    }
    // Before anything is published: every topic exists with safe settings, or we stop here.
    let mut topics = Vec::new();
    for server in &sources {
        topics.push((config.bus.topic(server), TopicRole::Changes));
        if config.bus.debezium_json {
            topics.push((config.bus.json_topic(server), TopicRole::DebeziumJson));
        }
    }
    kafka_topics::prepare(&config.bus, &topics, true).await?;
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("cannot create state_dir {}", config.state_dir.display()))?;
    let store_name = format!("agent-{}", only.unwrap_or("all"));
    let checkpoints = CheckpointStore::open_named(&config.state_dir, &store_name)?;
    if let Some(p) = start_at {
        let pos: fleetsync_proto::Position = p.parse().map_err(|e| anyhow!("--start-at: {e}"))?;
        for server in &sources {
            let key = format!("agent/{server}");
            if checkpoints.get_key(&key)?.is_none() {
                checkpoints.put_key(&key, &pos)?;
                tracing::info!(server, position = %pos, "no checkpoint: starting at --start-at");
            }
        }
    }
    let cancel = CancellationToken::new();
    let registry: Registry = Arc::new(Mutex::new(Default::default()));
    let addr = http::serve(config.metrics_addr()?, registry, cancel.clone()).await?;
    let checked = sources.iter().map(|s| s.to_string()).collect();
    crate::health_cmd::spawn_periodic(&config, checked, cancel.child_token());
    crate::group::spawn_tombstone_gauge(&config, installed, cancel.child_token());
    let mut tasks = JoinSet::new();
    let _archivers = crate::archive_cmd::spawn_archivers(&config, Some(&sources), &cancel)?;
    let backup_servers: Vec<String> = sources.iter().map(|s| s.to_string()).collect();
    for server in sources {
        let s = config
            .server(server)
            .ok_or_else(|| anyhow!("no server {server:?}"))?;
        let filters: Result<Vec<TableFilter>, _> = config
            .syncs
            .iter()
            .filter(|y| y.source == server)
            .map(|y| y.filter())
            .collect();
        let spec = SourceSpec {
            name: s.name.clone(),
            opts: server_opts(s)?,
            replica_id: s.replica_id("kafka-agent"),
            filter: TableFilter::any_of(filters?),
            sync: "agent".into(),
            snapshot_chunk_rows: config
                .syncs
                .iter()
                .find(|y| y.source == server)
                .map(|y| y.snapshot_chunk_rows)
                .unwrap_or(10_000),
            include_marked: false,
            until: None,
        };
        let topic = config.bus.topic(server);
        let json_topic = config
            .bus
            .debezium_json
            .then(|| config.bus.json_topic(server));
        tasks.spawn(agent_loop(
            spec,
            settings.clone(),
            topic,
            json_topic,
            checkpoints.clone(),
            cancel.child_token(),
        ));
    }
    let _backups = crate::tasks::spawn_backups(
        Arc::new(config.clone()),
        backup_servers,
        cancel.child_token(),
    )?;
    tracing::info!(metrics = %addr, agents = tasks.len(), "fleetsync agent running");
    tokio::select! {
        _ = shutdown_signal() => {}
        r = tasks.join_next() => {
            if let Some(Ok(Err(e))) = r {
                cancel.cancel();
                return Err(e);
            }
        }
    }
    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(15), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    checkpoints.flush()?;
    Ok(())
}

/// Runs one server's agent until cancelled; a purged checkpoint ends it with an error.
async fn agent_loop(
    spec: SourceSpec,
    settings: KafkaSettings,
    topic: String,
    json_topic: Option<String>,
    checkpoints: CheckpointStore,
    cancel: CancellationToken,
) -> Result<()> {
    let key = format!("agent/{}", spec.name);
    let mut backoff = Duration::from_secs(1);
    loop {
        let result = agent_once(
            &spec,
            &settings,
            (&topic, json_topic.as_deref()),
            &checkpoints,
            &key,
            &cancel,
        )
        .await;
        if cancel.is_cancelled() {
            return Ok(());
        }
        match result {
            // A purged position or an event the binlog cannot carry (statement format, partial
            // row image): retrying reads the same thing again, so stop with the reason.
            Err(e)
                if crate::failure::classify_source(&e).class
                    == crate::failure::ErrorClass::Definite =>
            {
                return Err(e.into())
            }
            Err(e) => {
                tracing::warn!(server = %spec.name, error = %e, retry_in = ?backoff, "agent failed, retrying")
            }
            Ok(()) => tracing::warn!(server = %spec.name, "binlog stream ended, reconnecting"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn agent_once(
    spec: &SourceSpec,
    settings: &KafkaSettings,
    (topic, json_topic): (&str, Option<&str>),
    checkpoints: &CheckpointStore,
    key: &str,
    cancel: &CancellationToken,
) -> Result<(), SourceError> {
    let mut publisher = KafkaPublisher::new(
        settings,
        topic.to_string(),
        &spec.name,
        checkpoints.clone(),
        key.to_string(),
    )?
    .with_json_topic(json_topic.map(str::to_string));
    let mut conn = source::connect(spec).await?;
    let info = source::preflight(&mut conn, spec).await?;
    let stored = checkpoints
        .get_key(key)
        .map_err(|e| SourceError::NeedsOperator {
            server: spec.name.clone(),
            message: e.to_string(),
        })?;
    let result = async {
        let from = match stored {
            Some(p) => {
                source::check_available(&mut conn, spec, &p).await?;
                p
            }
            None => match snapshot(spec, &info, &mut publisher, cancel).await? {
                Some(p) => p,
                None => return Ok(()),
            },
        };
        let _ = conn.disconnect().await;
        stream(spec, &info, from, &mut publisher, cancel).await
    }
    .await;
    // Deliver and checkpoint what was published, whatever ended the stream.
    let flushed = publisher.flush().await;
    result.and(flushed)
}

pub async fn coordinator(path: &Path, metrics_listen: Option<&str>) -> Result<()> {
    let config = crate::opts::load_serving(path, metrics_listen).await?;
    if let Some(api) = &config.api {
        crate::api::check(&config, api)?;
    }
    let settings = kafka_settings(&config)?;
    for sync in &config.syncs {
        for target in &sync.targets {
            let conn = mysql_async::Conn::new(opts_by_name(&config, target)?)
                .await
                .map_err(|e| anyhow!("sync {}: {}", sync.name, source::connect_error(target, e)))?;
            let _ = conn.disconnect().await;
        }
    }
    // Refuse unsafe topics before consuming; a topic not created yet (its agent has not run)
    // is waited for by its pipelines.
    let topics = kafka_topics::consumed_topics(&config);
    let states = kafka_topics::prepare(&config.bus, &topics, false).await?;
    for ((topic, _), state) in topics.iter().zip(states) {
        if state == TopicState::Missing {
            tracing::warn!(topic = %topic, "topic does not exist yet: waiting for its agent to create it");
        }
    }
    let registry: Registry = Arc::new(Mutex::new(Default::default()));
    let cancel = CancellationToken::new();
    let controls = Controls::default();
    let addr = http::serve(config.metrics_addr()?, registry.clone(), cancel.clone()).await?;
    if let Some(api) = &config.api {
        let shared = Arc::new(config.clone());
        // The definition store (a compacted topic) and its routes work here; API-made syncs
        // do not run in this mode (README: "API-made definitions").
        let defs = crate::defs::Defs::open_for(config.clone(), true).await?;
        crate::api::serve(
            shared,
            api,
            registry.clone(),
            controls.clone(),
            defs,
            cancel.clone(),
        )
        .await?;
    }
    let evictions = fleetsync_coordinator::gc::Evictions::default();
    crate::group::start_gc(&config, &evictions, &cancel).await?;
    let mut tasks = JoinSet::new();
    for sync in &config.syncs {
        for target in &sync.targets {
            let shared = Shared {
                checkpoints: None,
                registry: registry.clone(),
                controls: controls.clone(),
                evictions: evictions.clone(),
            };
            let pipeline = build_pipeline(&config, sync, target, 0, &shared, None)?;
            let feed = KafkaFeedSpec {
                bus: config.bus.clone(),
                settings: settings.clone(),
                topic: config.bus.topic(&sync.source),
                partition: partition_for(&sync.source, 1),
                group: format!("fleetsync.{}.{}", sync.name, target),
                filter: sync.filter()?,
            };
            let pipeline = Pipeline {
                kafka: Some(feed),
                ..pipeline
            };
            tasks.spawn(pipeline.run(cancel.child_token()));
        }
    }
    tracing::info!(metrics = %addr, pipelines = tasks.len(), "fleetsync coordinator running");
    shutdown_signal().await;
    cancel.cancel();
    if tokio::time::timeout(Duration::from_secs(10), async {
        while tasks.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tasks.abort_all();
    }
    Ok(())
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
    /// One connection + feed attempt: consume after the offset stored in the target.
    pub async fn kafka_once(&self, feed: &KafkaFeedSpec, cancel: &CancellationToken) -> Result<()> {
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
        let result = self.apply_loop(&mut applier, &mut kafka, cancel).await;
        // librdkafka's consumer close can block for long: drop it off the runtime.
        tokio::task::spawn_blocking(move || drop(kafka));
        result
    }
}
