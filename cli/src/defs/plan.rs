//! The plan's tables of a created or changed sync: what its filter selects on the source and
//! what each target gets, read from the servers at the time of the change; and the refusals
//! of a change whose new tables would never get their existing rows.

use fleetsync_config::{Config, SyncConfig};

use super::DefsError;
use serde::Serialize;

/// The tables of a sync as its servers are now (read at the time of the change).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SyncTables {
    pub source: String,
    /// Source tables the filter selects (`schema.table`).
    pub matched: Vec<String>,
    /// Of those, the ones without a primary or unique key (no conflict detection; updates and
    /// deletes match on every column).
    pub keyless: Vec<String>,
    pub targets: Vec<TargetTables>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TargetTables {
    pub target: String,
    /// Target tables (after `map`) that do not exist yet: created from the source's definition
    /// at the snapshot when `create_missing` (the default), else the snapshot fails on them.
    pub to_create: Vec<String>,
    /// Target tables that exist: their rows are replaced at the initial snapshot.
    pub existing: Vec<String>,
}

/// Reads `sync`'s [`SyncTables`] from its servers.
pub(super) async fn sync_tables(config: &Config, sync: &SyncConfig) -> anyhow::Result<SyncTables> {
    use fleetsync_agent::source::schema::{list_tables, load_table};
    let spec = crate::preflight::source_spec(config, sync, "", 0)?;
    let mut conn = fleetsync_agent::source::connect(&spec).await?;
    let matched = list_tables(&mut conn, &spec.name, |s, t| spec.filter.matches(s, t)).await?;
    let mut keyless = Vec::new();
    for (s, t) in &matched {
        if let Some(def) = load_table(&mut conn, &spec.name, s, t).await? {
            if def.key_kind == fleetsync_proto::KeyKind::None {
                keyless.push(format!("{s}.{t}"));
            }
        }
    }
    let _ = conn.disconnect().await;
    let map = sync.table_map()?;
    let mut targets = Vec::new();
    for target in &sync.targets {
        let mut tconn = mysql_async::Conn::new(crate::opts::opts_by_name(config, target)?)
            .await
            .map_err(|e| {
                anyhow::anyhow!("{}", fleetsync_agent::source::connect_error(target, e))
            })?;
        let existing_all = list_tables(&mut tconn, target, |_, _| true).await?;
        let _ = tconn.disconnect().await;
        let (mut to_create, mut existing) = (Vec::new(), Vec::new());
        for (s, t) in &matched {
            let (ts, tt) = map.target(s, t);
            let name = format!("{ts}.{tt}");
            if existing_all.iter().any(|(a, b)| *a == ts && *b == tt) {
                existing.push(name);
            } else {
                to_create.push(name);
            }
        }
        targets.push(TargetTables {
            target: target.clone(),
            to_create,
            existing,
        });
    }
    Ok(SyncTables {
        source: sync.source.clone(),
        matched: matched.iter().map(|(s, t)| format!("{s}.{t}")).collect(),
        keyless,
        targets,
    })
}

/// Refuses an update of sync `name` whose filter now selects tables (`now`) that the sync
/// in `old` did not (or that come from another source).
pub(super) async fn added_tables(
    old: &Config,
    name: &str,
    now: &SyncTables,
) -> Result<(), DefsError> {
    let Some(before) = old.syncs.iter().find(|y| y.name == name) else {
        return Ok(());
    };
    let had = if before.source == now.source {
        sync_tables(old, before)
            .await
            .map_err(|e| DefsError::Preflight(crate::exit::one_line(e.as_ref())))?
            .matched
    } else {
        Vec::new()
    };
    let added: Vec<&str> = now
        .matched
        .iter()
        .filter(|t| !had.contains(t))
        .map(String::as_str)
        .collect();
    if added.is_empty() {
        return Ok(());
    }
    Err(DefsError::AddsTables {
        sync: name.to_string(),
        tables: added.join(", "),
    })
}

/// Under the Kafka bus: refuses sync `name` (created or changed, selecting `now`) when it
/// selects tables that no other sync of its source selects (nor, for an update, the sync
/// itself before): the source's agent snapshotted the tables its syncs selected when the
/// first of them started, so those tables' existing rows are in no topic. A sync on a source
/// no other sync reads is allowed: the agent snapshots it when it starts reading it.
pub(super) async fn uncovered_tables(
    old: &Config,
    name: &str,
    now: &SyncTables,
) -> Result<(), DefsError> {
    let readers: Vec<&fleetsync_config::SyncConfig> = old
        .syncs
        .iter()
        .filter(|y| y.source == now.source)
        .collect();
    if readers.is_empty() {
        return Ok(());
    }
    let mut covered = std::collections::BTreeSet::new();
    for y in &readers {
        let t = sync_tables(old, y)
            .await
            .map_err(|e| DefsError::Preflight(crate::exit::one_line(e.as_ref())))?;
        covered.extend(t.matched);
    }
    let uncovered: Vec<&str> = now
        .matched
        .iter()
        .filter(|t| !covered.contains(*t))
        .map(String::as_str)
        .collect();
    if uncovered.is_empty() {
        return Ok(());
    }
    Err(DefsError::NotSnapshotted {
        sync: name.to_string(),
        server: now.source.clone(),
        tables: uncovered.join(", "),
    })
}
