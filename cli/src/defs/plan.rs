//! The plan's tables of a created or changed sync: what its filter selects on the source and
//! what each target gets, read from the servers at the time of the change.

use fleetsync_config::{Config, SyncConfig};
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
