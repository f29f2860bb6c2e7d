//! The definition checks of preflight: whether each sync's tables, mapping and conflict
//! settings fit the source's tables and the targets' existing tables. Everything is read, nothing
//! written; every problem found is reported (one line each), so that an operator fixes them in
//! one go.
//!
//! Refused, per sync:
//! * a `[[syncs.tables]]` override naming a table that does not exist on the source, or that
//!   the sync does not include;
//! * two included source tables mapped onto one target table (after every `map` rule; a table
//!   that keeps its name counts as mapped onto itself);
//! * an included table with a key whose conflict strategy is `newest-wins` but that has no
//!   `newest_column` (keyless tables get no conflict detection);
//! * an existing target table that cannot take the source table's rows (see the coordinator's
//!   `apply::shape`), checked on a target's first start and when an interrupted initial snapshot
//!   is restarted into the operator's tables (`create_missing = false`). Once a sync is running,
//!   the target's tables follow the source's DDL in stream order, so the source's current shape
//!   says nothing about them: after a source DDL naming a table, the applier checks its target
//!   against the next rows and pauses that table alone when it no longer fits. In a group,
//!   fleetsync's own version columns are left out of the comparison: the install after
//!   preflight adds them to a member that joins an installed group (see `group`).

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use fleetsync_agent::source::schema::{list_tables, load_table, read_table, InfoTable};
use fleetsync_config::{ConflictStrategy, SyncConfig, TableFilter};
use fleetsync_coordinator::versions;
use fleetsync_proto::KeyKind;

/// Problems found by preflight, one line each. `main` prints one `error:` line per problem.
#[derive(Debug)]
pub struct Problems(pub Vec<String>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("\n"))
    }
}

impl std::error::Error for Problems {}

type Name = (String, String);

/// `[[syncs.tables]]` entries naming no included source table.
pub fn unknown_overrides(
    sync: &SyncConfig,
    server: &str,
    all: &[Name],
    filter: &TableFilter,
) -> Vec<String> {
    let mut out = Vec::new();
    for t in &sync.tables {
        let Some((s, n)) = t.name.split_once('.') else {
            continue; // Config::validate refuses it already.
        };
        let why = if !all.iter().any(|(a, b)| a == s && b == n) {
            "no such table on server"
        } else if !filter.matches(s, n) {
            "the sync does not include it (include/exclude) on server"
        } else {
            continue;
        };
        out.push(format!(
            "sync {}: unknown per-table override [[syncs.tables]] name = {:?}: {why} {server} \
             (fix the name, or remove the override)",
            sync.name, t.name
        ));
    }
    out
}

/// Target tables that more than one included source table is mapped onto.
pub fn mapping_collisions(
    sync: &SyncConfig,
    server: &str,
    included: &[Name],
) -> Result<Vec<String>, fleetsync_config::ConfigError> {
    let map = sync.table_map()?;
    let mut onto: BTreeMap<Name, Vec<String>> = BTreeMap::new();
    for (s, t) in included {
        onto.entry(map.target(s, t))
            .or_default()
            .push(format!("{s}.{t}"));
    }
    Ok(onto
        .into_iter()
        .filter(|(_, sources)| sources.len() > 1)
        .map(|((ts, tt), sources)| {
            format!(
                "sync {}: mapping collision: tables {} of server {server} all go to target table \
                 {ts}.{tt} (change `map`, or exclude all but one of them)",
                sync.name,
                sources.join(", ")
            )
        })
        .collect())
}

/// Included keyed tables under `newest-wins` that lack their `newest_column`.
pub fn missing_conflict_columns(
    sync: &SyncConfig,
    server: &str,
    tables: &[&InfoTable],
) -> Result<Vec<String>, fleetsync_config::ConfigError> {
    let policy = sync.conflict_policy()?;
    let mut out = Vec::new();
    for t in tables {
        let p = policy.table(&t.schema, &t.table);
        if p.strategy != ConflictStrategy::NewestWins || t.key_kind == KeyKind::None {
            continue;
        }
        let Some(col) = p.newest_column.as_deref() else {
            continue; // Config::validate refuses it already.
        };
        if t.column(col).is_none() {
            out.push(format!(
                "sync {}: table {}.{} on server {server} has no column `{col}`, the newest_column \
                 of its conflict = \"newest-wins\" (add the column, exclude the table, or give it \
                 another strategy or column in [[syncs.tables]])",
                sync.name, t.schema, t.table
            ));
        }
    }
    Ok(out)
}

/// Source table definitions, read once per preflight.
pub struct SourceTables<'a> {
    pub server: &'a str,
    defs: HashMap<Name, Option<InfoTable>>,
}

impl<'a> SourceTables<'a> {
    pub fn new(server: &'a str) -> Self {
        SourceTables {
            server,
            defs: HashMap::new(),
        }
    }

    pub async fn get(
        &mut self,
        conn: &mut mysql_async::Conn,
        schema: &str,
        table: &str,
    ) -> anyhow::Result<Option<&InfoTable>> {
        let key = (schema.to_string(), table.to_string());
        if !self.defs.contains_key(&key) {
            let def = load_table(conn, self.server, schema, table).await?;
            self.defs.insert(key.clone(), def);
        }
        Ok(self.defs.get(&key).and_then(Option::as_ref))
    }
}

/// Existing tables of `target` that cannot take the rows of the included source tables mapped
/// onto them.
pub async fn target_shapes(
    sync: &SyncConfig,
    included: &[Name],
    source: &mut SourceTables<'_>,
    source_conn: &mut mysql_async::Conn,
    target: &str,
    target_conn: &mut mysql_async::Conn,
) -> anyhow::Result<Vec<String>> {
    let map = sync.table_map()?;
    let existing = list_tables(target_conn, target, |_, _| true).await?;
    let mut out = Vec::new();
    for (s, t) in included {
        let (ts, tt) = map.target(s, t);
        if !existing.iter().any(|(a, b)| *a == ts && *b == tt) {
            continue;
        }
        let Some(src) = source.get(source_conn, s, t).await? else {
            continue;
        };
        let mut src = src.to_schema();
        if sync.group.is_some() {
            // fleetsync's own version columns are installed on every member right after
            // preflight (`group::prepare`): a member joining an installed group lacks them
            // until then, and that is no reason to refuse it.
            src.columns
                .retain(|c| !versions::VERSION_COLUMNS.contains(&c.name.as_str()));
        }
        let found = read_table(target_conn, &ts, &tt).await.map_err(|e| {
            anyhow::anyhow!("server {target}: reading the definition of {ts}.{tt}: {e}")
        })?;
        let Some(dst) = found else { continue };
        let problems = fleetsync_coordinator::apply::shape_problems(&src, &dst);
        if !problems.is_empty() {
            out.push(format!(
                "sync {}: target table {ts}.{tt} on server {target} cannot take the rows of \
                 {s}.{t} from server {}: {} (alter or drop the target table, or change `map`)",
                sync.name,
                source.server,
                problems.join("; ")
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetsync_agent::source::schema::InfoColumn;
    use fleetsync_config::Config;

    fn sync(extra: &str) -> SyncConfig {
        let text = format!(
            "[[servers]]\nname = \"a\"\nurl = \"mysql://u@h:1\"\n[[servers]]\nname = \"b\"\n\
             url = \"mysql://u@h:2\"\n[[syncs]]\nname = \"s\"\nsource = \"a\"\ntargets = [\"b\"]\n{extra}"
        );
        let c = Config::parse(&text).expect("parses");
        c.validate().expect("valid");
        c.syncs[0].clone()
    }

    fn names(list: &[&str]) -> Vec<Name> {
        list.iter()
            .filter_map(|n| n.split_once('.'))
            .map(|(s, t)| (s.to_string(), t.to_string()))
            .collect()
    }

    #[test]
    fn collisions_after_every_map_rule() {
        let s =
            sync("map = { \"app\" = \"dst\", \"app.t2\" = \"dst.t1\", \"other.t1\" = \"x.y\" }\n");
        let included = names(&["app.t1", "app.t2", "app.t3", "dst.t3", "other.t1"]);
        let p = mapping_collisions(&s, "a", &included).expect("map");
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p[0].contains("app.t1, app.t2") && p[0].contains("dst.t1"),
            "{p:?}"
        );
        assert!(
            p[1].contains("app.t3, dst.t3") && p[1].contains("dst.t3"),
            "{p:?}"
        );
        assert!(mapping_collisions(&sync(""), "a", &included)
            .expect("map")
            .is_empty());
    }

    #[test]
    fn overrides_must_name_included_tables() {
        let s = sync(
            "exclude = [\"app\\\\.secret\"]\n[[syncs.tables]]\nname = \"app.t\"\nconflict = \"manual\"\n\
             [[syncs.tables]]\nname = \"app.nope\"\nconflict = \"manual\"\n\
             [[syncs.tables]]\nname = \"app.secret\"\nconflict = \"manual\"\n",
        );
        let all = names(&["app.t", "app.secret"]);
        let p = unknown_overrides(&s, "a", &all, &s.filter().expect("filter"));
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p[0].contains("app.nope") && p[0].contains("no such table"),
            "{p:?}"
        );
        assert!(
            p[1].contains("app.secret") && p[1].contains("does not include"),
            "{p:?}"
        );
    }

    #[test]
    fn newest_column_must_exist_on_keyed_tables() {
        let s = sync(
            "conflict = \"newest-wins\"\nnewest_column = \"updated_at\"\n\
             [[syncs.tables]]\nname = \"app.log\"\nconflict = \"target-wins\"\n\
             [[syncs.tables]]\nname = \"app.v\"\nnewest_column = \"version\"\n",
        );
        let col = |n: &str| InfoColumn {
            name: n.into(),
            ty: fleetsync_proto::ColumnType::Int,
            column_type: "int(11)".into(),
            unsigned: false,
            nullable: false,
            charset: None,
            enum_values: vec![],
            generated: false,
        };
        let t = |name: &str, cols: &[&str], key: KeyKind| InfoTable {
            schema: "app".into(),
            table: name.into(),
            columns: cols.iter().map(|c| col(c)).collect(),
            key: vec!["id".into()],
            key_kind: key,
            transactional: true,
        };
        let tables = [
            t("ok", &["id", "Updated_At"], KeyKind::Primary),
            t("bad", &["id"], KeyKind::Primary),
            t("keyless", &["id"], KeyKind::None),
            t("log", &["id"], KeyKind::Primary),
            t("v", &["id", "updated_at"], KeyKind::Primary),
        ];
        let refs: Vec<&InfoTable> = tables.iter().collect();
        let p = missing_conflict_columns(&s, "a", &refs).expect("policy");
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p[0].contains("app.bad") && p[0].contains("`updated_at`"),
            "{p:?}"
        );
        assert!(
            p[1].contains("app.v") && p[1].contains("`version`"),
            "{p:?}"
        );
    }
}
