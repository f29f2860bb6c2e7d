//! Checks before anything is written: the configuration, every server's reachability and
//! credentials, the sources' binlog settings and privileges, include patterns that match no
//! table, and stored positions the source has purged. `run` refuses to start on any of them.

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use fleetsync_agent::source::{self, schema::list_tables, SourceSpec};
use fleetsync_config::{Config, SyncConfig};

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
    })
}

pub async fn preflight_all(config: &Config) -> Result<()> {
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
        if let Some(p) = spec.filter.unmatched_includes(&all).first() {
            return Err(anyhow!(
                "sync {}: include pattern {p:?} matches no table on server {} (check the schema.table name)",
                sync.name,
                spec.name
            ));
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
            if let Some(state) = state {
                if matches!(
                    state.snapshot,
                    fleetsync_coordinator::apply::SnapshotState::Done
                ) {
                    source::check_available(&mut conn, &spec, &state.position)
                        .await
                        .with_context(|| format!("sync {} target {target}", sync.name))?;
                }
            }
            let _ = tconn.disconnect().await;
        }
        let _ = conn.disconnect().await;
    }
    Ok(())
}

pub async fn check(path: &Path) -> Result<()> {
    let config = Config::load(path)?;
    preflight_all(&config).await?;
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
