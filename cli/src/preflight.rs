//! Checks before anything is written: the configuration, every server's reachability and
//! credentials, the sources' binlog settings and privileges, include patterns that match no
//! table, stored positions the source has purged, and each sync's definition against the
//! source's and targets' tables (`definitions`: per-table overrides, mapping collisions,
//! conflict columns, target tables of another shape). `run` refuses to start on any of them.

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use fleetsync_agent::source::{self, schema::list_tables, SourceSpec};
use fleetsync_config::{Config, SyncConfig};
use fleetsync_coordinator::apply::SnapshotState;

use crate::cycles;
use crate::definitions::{self, Problems};
use crate::opts::{opts_by_name, server_opts};

/// The source reader spec for one (sync, target) subscription.
pub fn source_spec(
    config: &Config,
    sync: &SyncConfig,
    target: &str,
    index: usize,
) -> Result<SourceSpec> {
    let server = config
        .server(&sync.source)
        .ok_or_else(|| anyhow!("sync {}: no server {}", sync.name, sync.source))?;
    let replica_id = match server.replica_server_id {
        Some(base) => base.wrapping_add(index as u32),
        None => server.replica_id(&format!("{}/{}", sync.name, target)),
    };
    Ok(SourceSpec {
        name: server.name.clone(),
        opts: server_opts(server)?,
        replica_id,
        filter: sync.filter()?,
        sync: sync.name.clone(),
        snapshot_chunk_rows: sync.snapshot_chunk_rows,
        include_marked: false,
        until: None,
    })
}

/// Every check of `run` before anything is written. A server that cannot be reached or read
/// stops the checks at once; definition problems (see `definitions`) are collected over every
/// sync and target and returned together as [`Problems`], one line each.
pub async fn preflight_all(config: &Config) -> Result<()> {
    let mut problems = Vec::new();
    let mut flows = Vec::new();
    for sync in &config.syncs {
        let first_target = sync.targets.first().map(String::as_str).unwrap_or("");
        let spec = source_spec(config, sync, first_target, 0)?;
        let ctx = || format!("sync {}", sync.name);
        let mut conn = source::connect(&spec).await.with_context(ctx)?;
        source::preflight(&mut conn, &spec)
            .await
            .with_context(ctx)?;
        let all = list_tables(&mut conn, &spec.name, |_, _| true)
            .await
            .with_context(ctx)?;
        for p in spec.filter.unmatched_includes(&all) {
            problems.push(format!(
                "sync {}: include pattern {p:?} matches no table on server {} (check the schema.table name)",
                sync.name,
                spec.name
            ));
        }
        let included: Vec<(String, String)> = all
            .iter()
            .filter(|(s, t)| spec.filter.matches(s, t))
            .cloned()
            .collect();
        problems.extend(definitions::unknown_overrides(
            sync,
            &spec.name,
            &all,
            &spec.filter,
        ));
        problems.extend(definitions::mapping_collisions(
            sync, &spec.name, &included,
        )?);
        let map = sync.table_map()?;
        for (s, t) in &included {
            for target in &sync.targets {
                flows.push(cycles::Flow {
                    sync: sync.name.clone(),
                    group: sync.group.clone(),
                    from: (sync.source.clone(), (s.clone(), t.clone())),
                    to: (target.clone(), map.target(s, t)),
                });
            }
        }
        let mut defs = definitions::SourceTables::new(&spec.name);
        if !sync.conflict_policy()?.is_none() {
            let mut tables = Vec::new();
            for (s, t) in &included {
                if let Some(def) = defs.get(&mut conn, s, t).await.with_context(ctx)? {
                    tables.push(def.clone());
                }
            }
            let refs: Vec<&_> = tables.iter().collect();
            problems.extend(definitions::missing_conflict_columns(
                sync, &spec.name, &refs,
            )?);
        }
        for target in &sync.targets {
            let opts = opts_by_name(config, target)?;
            let mut tconn = mysql_async::Conn::new(opts)
                .await
                .map_err(|e| anyhow!("{}", source::connect_error(target, e)))
                .with_context(ctx)?;
            let state =
                fleetsync_coordinator::apply::read_state(&mut tconn, &sync.name, &sync.source)
                    .await
                    .map_err(|e| anyhow!("{e}"))
                    .with_context(ctx)?;
            // The target's tables are taken as they are on a first start, and when an
            // interrupted snapshot restarts into the operator's tables; once streaming they
            // follow the source's DDL in stream order (see `definitions`).
            let shapes_matter = match &state {
                None => true,
                Some(s) => s.snapshot == SnapshotState::Running && !sync.create_missing,
            };
            if let Some(state) = state {
                if matches!(state.snapshot, SnapshotState::Done) {
                    source::check_available(&mut conn, &spec, &state.position)
                        .await
                        .with_context(|| format!("sync {} target {target}", sync.name))?;
                }
            }
            if shapes_matter {
                problems.extend(
                    definitions::target_shapes(
                        sync, &included, &mut defs, &mut conn, target, &mut tconn,
                    )
                    .await
                    .with_context(ctx)?,
                );
            }
            let _ = tconn.disconnect().await;
        }
        let _ = conn.disconnect().await;
    }
    problems.extend(cycles::hand_written_cycles(&flows));
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Problems(problems).into())
    }
}

pub async fn check(path: &Path) -> Result<()> {
    let file = crate::opts::load_config(path).await?;
    // What `run` would run: the file's definitions and those made over the API (the file
    // store; with the Kafka bus, API-made syncs do not run, and the file's are checked alone).
    let config = if file.bus.kind == fleetsync_config::BusKind::Kafka {
        file
    } else {
        (*crate::defs::Defs::open(file)?.effective()).clone()
    };
    preflight_all(&config).await?;
    if let Some(api) = &config.api {
        if config.bus.kind == fleetsync_config::BusKind::Kafka {
            // The coordinators' token store: the brokers' topic.
            let state = crate::api::kstate::KafkaState::open_for_tokens(&config.bus).await?;
            let tokens = crate::api::tokens::TokenCache::kafka(state);
            crate::api::check_with(api, &tokens)?;
        } else {
            crate::api::check(&config, api)?;
        }
    }
    for warning in crate::opts::tls_warnings(&config) {
        println!("warning: {warning}");
    }
    crate::group::prepare(&config, crate::group::Mode::Show).await?;
    if config.bus.kind == fleetsync_config::BusKind::Kafka {
        check_topics(&config).await?;
    }
    println!(
        "ok: {} server(s), {} sync(s) checked",
        config.servers.len(),
        config.syncs.len()
    );
    Ok(())
}

/// The Kafka topics of every sync's source: reachable with the configured TLS/SASL settings,
/// and safe (see `kafka_topics`); a missing topic is reported, not created (the agent does).
async fn check_topics(config: &Config) -> Result<()> {
    use crate::kafka_topics::{prepare, TopicState};
    let topics = crate::kafka_topics::consumed_topics(config);
    let states = prepare(&config.bus, &topics, false).await?;
    for ((topic, _), state) in topics.iter().zip(states) {
        match state {
            TopicState::Ready => println!("kafka: topic {topic}: settings safe"),
            TopicState::Missing => {
                println!("kafka: topic {topic}: missing (`fleetsync agent` creates it)")
            }
        }
    }
    Ok(())
}
