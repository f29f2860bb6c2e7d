//! The migration plan: [`Step`]s that turn the target's schema into the source's.
//!
//! Order (each phase over every database before the next):
//! 1. `pre`: drop the foreign keys that change, go away, or use a column or index that
//!    changes (they are re-created in phase 8); drop views and triggers that go away or change;
//!    change database options.
//! 2. drop tables that are only on the target (their foreign keys are gone after phase 1).
//! 3. rename tables (hints).
//! 4. create tables only on the source (without foreign keys).
//! 5. remove partitioning from tables whose partitioning changes.
//! 6. one `ALTER TABLE` per changed table: drop checks, indexes, columns; rename, add and
//!    modify columns (positions spelled out so the column order ends equal); add indexes and
//!    checks; table options.
//! 7. partition tables whose partitioning changed.
//! 8. add foreign keys (new, changed, or dropped in phase 1).
//! 9. create or replace views (dependencies first), then create triggers (in their order).
//!
//! The plan does not depend on the data; what the data can refuse (a NOT NULL, a UNIQUE, a
//! narrower type, a foreign key) is found by running the plan on a scratch copy with the data
//! ([`super::exec::verify`]). Steps that lose data carry a `warning`.

use std::collections::{BTreeMap, BTreeSet};

use fleetsync_proto::schema_model::{
    DatabaseSchema, SchemaSnapshot, TableDef, TriggerDef, ViewDef,
};
use serde::{Deserialize, Serialize};

use super::diff::{
    column_differs, map_foreign_key, map_index, map_trigger, match_columns, match_tables,
    option_differences, Hints,
};
use super::render::{self, ident};
use super::{pair_databases, Pairing};

/// One statement of a migration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Step {
    /// `sql` runs with `database` (its name on the target) as the default database.
    Sql {
        database: String,
        sql: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        warning: Option<String>,
    },
    CreateDatabase {
        name: String,
        charset: Option<String>,
        collation: Option<String>,
    },
    DropDatabase {
        name: String,
    },
}

impl Step {
    pub fn warning(&self) -> Option<String> {
        match self {
            Step::Sql { warning, .. } => warning.clone(),
            Step::DropDatabase { name } => Some(format!("drops database {name} and all its data")),
            Step::CreateDatabase { .. } => None,
        }
    }
}

#[derive(Default)]
struct Phases {
    pre: Vec<Step>,
    drop_tables: Vec<Step>,
    renames: Vec<Step>,
    creates: Vec<Step>,
    unpartition: Vec<Step>,
    alters: Vec<Step>,
    partition: Vec<Step>,
    add_fks: Vec<Step>,
    views: Vec<Step>,
    triggers: Vec<Step>,
}

impl Phases {
    fn into_steps(self) -> Vec<Step> {
        [
            self.pre,
            self.drop_tables,
            self.renames,
            self.creates,
            self.unpartition,
            self.alters,
            self.partition,
            self.add_fks,
            self.views,
            self.triggers,
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

fn sql(db: &str, text: String) -> Step {
    Step::Sql {
        database: db.to_string(),
        sql: text,
        warning: None,
    }
}

fn sql_warn(db: &str, text: String, warning: String) -> Step {
    Step::Sql {
        database: db.to_string(),
        sql: text,
        warning: Some(warning),
    }
}

/// The steps that make `target` equal `source`. With [`Pairing::Single`] every step runs in
/// the target database's name; use [`retarget`] to run them in another.
pub fn plan(
    source: &SchemaSnapshot,
    target: &SchemaSnapshot,
    pairing: Pairing,
    hints: &Hints,
) -> Vec<Step> {
    let mut ph = Phases::default();
    let dbs = pair_databases(source, target, pairing);
    let empty: Vec<DatabaseSchema> = dbs
        .only_source
        .iter()
        .map(|s| DatabaseSchema {
            name: s.name.clone(),
            charset: s.charset.clone(),
            collation: s.collation.clone(),
            ..Default::default()
        })
        .collect();
    for (s, e) in dbs.only_source.iter().zip(&empty) {
        ph.pre.push(Step::CreateDatabase {
            name: s.name.clone(),
            charset: s.charset.clone(),
            collation: s.collation.clone(),
        });
        plan_database(s, e, hints, &mut ph);
    }
    for t in &dbs.only_target {
        ph.drop_tables.push(Step::DropDatabase {
            name: t.name.clone(),
        });
    }
    for (s, t) in dbs.pairs {
        plan_database(s, t, hints, &mut ph);
    }
    ph.into_steps()
}

/// Makes every SQL step run in `database` (a single-database plan applied under another name).
pub fn retarget(steps: &mut [Step], database: &str) {
    for step in steps {
        if let Step::Sql { database: d, .. } = step {
            *d = database.to_string();
        }
    }
}

/// The columns (source table, source column) whose definition or name changes, and the
/// indexes (source table, columns) that are dropped or changed: foreign keys over them must
/// be dropped first and re-created after.
#[derive(Default)]
struct Touched {
    columns: BTreeSet<(String, String)>,
    indexes: Vec<(String, Vec<String>)>,
}

impl Touched {
    fn hits(&self, table: &str, cols: &[String]) -> bool {
        cols.iter()
            .any(|c| self.columns.contains(&(table.to_string(), c.clone())))
            || self
                .indexes
                .iter()
                .any(|(t, idx)| t == table && idx.len() >= cols.len() && idx[..cols.len()] == *cols)
    }
}

fn touched(s: &DatabaseSchema, t: &DatabaseSchema, hints: &Hints) -> Touched {
    let mut out = Touched::default();
    for (st, tt) in match_tables(s, t, hints).pairs {
        let cm = match_columns(st, tt, hints);
        for (sc, tc) in &cm.pairs {
            if sc.name != tc.name || column_differs(sc, tc) {
                out.columns.insert((st.name.clone(), sc.name.clone()));
            }
        }
        for ti in &tt.indexes {
            let mapped = map_index(ti, &cm.to_source);
            if st.index(&mapped.name) != Some(&mapped) {
                let cols = mapped.parts.iter().map(|p| p.column.clone()).collect();
                out.indexes.push((st.name.clone(), cols));
            }
        }
    }
    out
}

fn plan_database(s: &DatabaseSchema, t: &DatabaseSchema, hints: &Hints, ph: &mut Phases) {
    let db = t.name.as_str();
    if let (Some(sc), Some(tc)) = (&s.collation, &t.collation) {
        if sc != tc || s.charset != t.charset {
            let cs = s.charset.as_deref().unwrap_or("utf8mb4");
            ph.pre.push(sql(
                db,
                format!("ALTER DATABASE CHARACTER SET {cs} COLLATE {sc}"),
            ));
        }
    }
    let m = match_tables(s, t, hints);
    let touched = touched(s, t, hints);
    for tt in &m.only_target {
        drop_foreign_keys(db, &tt.name, tt.foreign_keys.iter().map(|f| &f.name), ph);
        let warning = format!("drops table {} and its rows", tt.name);
        ph.drop_tables.push(sql_warn(
            db,
            format!("DROP TABLE {}", ident(&tt.name)),
            warning,
        ));
    }
    let renames: Vec<String> = m
        .pairs
        .iter()
        .filter(|(st, tt)| st.name != tt.name)
        .map(|(st, tt)| format!("{} TO {}", ident(&tt.name), ident(&st.name)))
        .collect();
    if !renames.is_empty() {
        ph.renames
            .push(sql(db, format!("RENAME TABLE {}", renames.join(", "))));
    }
    for st in &m.only_source {
        ph.creates.push(sql(db, render::create_table(st)));
        add_foreign_keys(db, st, st.foreign_keys.iter(), ph);
    }
    for (st, tt) in &m.pairs {
        plan_foreign_keys(db, s, t, st, tt, hints, &touched, ph);
        plan_table(db, st, tt, hints, ph);
    }
    plan_views(db, s, t, ph);
    plan_triggers(db, s, t, hints, ph);
}

fn drop_foreign_keys<'a>(
    db: &str,
    table: &str,
    names: impl Iterator<Item = &'a String>,
    ph: &mut Phases,
) {
    let clauses: Vec<String> = names
        .map(|n| format!("DROP FOREIGN KEY {}", ident(n)))
        .collect();
    if !clauses.is_empty() {
        ph.pre.push(sql(
            db,
            format!("ALTER TABLE {} {}", ident(table), clauses.join(", ")),
        ));
    }
}

fn add_foreign_keys<'a>(
    db: &str,
    table: &TableDef,
    fks: impl Iterator<Item = &'a fleetsync_proto::schema_model::ForeignKeyDef>,
    ph: &mut Phases,
) {
    let clauses: Vec<String> = fks
        .map(|f| format!("ADD {}", render::foreign_key(f)))
        .collect();
    if !clauses.is_empty() {
        let text = format!("ALTER TABLE {} {}", ident(&table.name), clauses.join(", "));
        ph.add_fks.push(sql(db, text));
    }
}

#[allow(clippy::too_many_arguments)]
fn plan_foreign_keys(
    db: &str,
    sdb: &DatabaseSchema,
    tdb: &DatabaseSchema,
    st: &TableDef,
    tt: &TableDef,
    hints: &Hints,
    touched: &Touched,
    ph: &mut Phases,
) {
    let cols = match_columns(st, tt, hints).to_source;
    let mut drop = Vec::new();
    let mut add = Vec::new();
    for tf in &tt.foreign_keys {
        let mapped = map_foreign_key(tf, &cols, tdb, sdb, hints);
        let same = st.foreign_keys.iter().find(|f| f.name == mapped.name);
        let rebuild = match same {
            Some(sf) if *sf == mapped => {
                touched.hits(&st.name, &sf.columns)
                    || (sf.ref_schema.is_none() && touched.hits(&sf.ref_table, &sf.ref_columns))
            }
            _ => true,
        };
        if rebuild {
            drop.push(&tf.name);
            add.extend(same);
        }
    }
    for sf in &st.foreign_keys {
        if !tt.foreign_keys.iter().any(|f| f.name == sf.name) {
            add.push(sf);
        }
    }
    drop_foreign_keys(db, &tt.name, drop.into_iter(), ph);
    add_foreign_keys(db, st, add.into_iter(), ph);
}

/// The ALTER TABLE (and partitioning statements) of one matched table.
fn plan_table(db: &str, st: &TableDef, tt: &TableDef, hints: &Hints, ph: &mut Phases) {
    let cm = match_columns(st, tt, hints);
    let mut clauses = Vec::new();
    let mut warnings = Vec::new();
    for tc in &tt.checks {
        if st.checks.iter().find(|c| c.name == tc.name) != Some(tc) {
            clauses.push(format!("DROP CONSTRAINT {}", ident(&tc.name)));
        }
    }
    let t_indexes: Vec<_> = tt
        .indexes
        .iter()
        .map(|i| map_index(i, &cm.to_source))
        .collect();
    for ti in &t_indexes {
        if st.index(&ti.name) != Some(ti) {
            clauses.push(render::drop_index(ti));
        }
    }
    for tc in &cm.only_target {
        clauses.push(format!("DROP COLUMN {}", ident(&tc.name)));
        warnings.push(format!(
            "drops column {}.{} and its values",
            st.name, tc.name
        ));
    }
    column_clauses(st, tt, &cm, &mut clauses, &mut warnings);
    for si in &st.indexes {
        if t_indexes.iter().find(|i| i.name == si.name) != Some(si) {
            clauses.push(format!("ADD {}", render::index(si)));
        }
    }
    for sc in &st.checks {
        if tt.checks.iter().find(|c| c.name == sc.name) != Some(sc) {
            clauses.push(format!("ADD {}", render::check(sc)));
        }
    }
    clauses.extend(option_clauses(st, tt));
    let name = ident(&st.name);
    if st.partitioning != tt.partitioning && tt.partitioning.is_some() {
        ph.unpartition
            .push(sql(db, format!("ALTER TABLE {name} REMOVE PARTITIONING")));
    }
    if !clauses.is_empty() {
        let text = format!("ALTER TABLE {name}\n  {}", clauses.join(",\n  "));
        let warning = (!warnings.is_empty()).then(|| warnings.join("; "));
        ph.alters.push(Step::Sql {
            database: db.to_string(),
            sql: text,
            warning,
        });
    }
    if st.partitioning != tt.partitioning {
        if let Some(p) = &st.partitioning {
            ph.partition
                .push(sql(db, format!("ALTER TABLE {name} {p}")));
        }
    }
}

/// ADD / CHANGE / MODIFY clauses in source column order. Simulates the server's column list
/// so that every column whose predecessor differs gets a `FIRST` / `AFTER` position.
fn column_clauses(
    st: &TableDef,
    tt: &TableDef,
    cm: &super::diff::ColumnMatch<'_>,
    clauses: &mut Vec<String>,
    warnings: &mut Vec<String>,
) {
    let mut cur: Vec<String> = tt
        .columns
        .iter()
        .filter_map(|c| cm.to_source.get(&c.name).cloned())
        .collect();
    for (i, sc) in st.columns.iter().enumerate() {
        let pred = i.checked_sub(1).map(|p| st.columns[p].name.clone());
        let position = match &pred {
            None => "FIRST".to_string(),
            Some(p) => format!("AFTER {}", ident(p)),
        };
        let insert_at = pred
            .as_ref()
            .and_then(|p| cur.iter().position(|c| c == p))
            .map_or(0, |i| i + 1);
        let Some((_, tc)) = cm.pairs.iter().find(|(s, _)| s.name == sc.name) else {
            clauses.push(format!("ADD COLUMN {} {position}", render::column(sc)));
            cur.insert(insert_at.min(cur.len()), sc.name.clone());
            continue;
        };
        let idx = cur.iter().position(|c| *c == sc.name).unwrap_or(0);
        let cur_pred = idx.checked_sub(1).map(|p| cur[p].clone());
        let misplaced = cur_pred != pred;
        let changed = column_differs(sc, tc);
        if changed && sc.column_type != tc.column_type {
            warnings.push(format!(
                "changes {}.{} from {} to {} (values are converted; the server may refuse some)",
                st.name, sc.name, tc.column_type, sc.column_type
            ));
        }
        let pos = if misplaced {
            format!(" {position}")
        } else {
            String::new()
        };
        if sc.name != tc.name {
            clauses.push(format!(
                "CHANGE COLUMN {} {}{pos}",
                ident(&tc.name),
                render::column(sc)
            ));
        } else if changed || misplaced {
            clauses.push(format!("MODIFY COLUMN {}{pos}", render::column(sc)));
        }
        if misplaced {
            let name = cur.remove(idx);
            let at = pred
                .as_ref()
                .and_then(|p| cur.iter().position(|c| c == p))
                .map_or(0, |i| i + 1);
            cur.insert(at, name);
        }
    }
}

fn option_clauses(st: &TableDef, tt: &TableDef) -> Vec<String> {
    let diffs = option_differences(st, tt);
    let has = |n: &str| diffs.iter().any(|(name, _, _)| *name == n);
    let o = &st.options;
    let mut out = Vec::new();
    if has("engine") {
        if let Some(e) = &o.engine {
            out.push(format!("ENGINE={e}"));
        }
    }
    if has("charset") || has("collation") {
        if let (Some(cs), Some(c)) = (&o.charset, &o.collation) {
            out.push(format!("DEFAULT CHARSET={cs} COLLATE={c}"));
        }
    }
    if has("row_format") {
        out.push(format!(
            "ROW_FORMAT={}",
            o.row_format.as_deref().unwrap_or("DEFAULT")
        ));
    }
    if has("comment") {
        out.push(format!("COMMENT={}", render::quote(&o.comment)));
    }
    out
}

fn plan_views(db: &str, s: &DatabaseSchema, t: &DatabaseSchema, ph: &mut Phases) {
    for tv in &t.views {
        if s.view(&tv.name).is_none() {
            ph.pre
                .push(sql(db, format!("DROP VIEW IF EXISTS {}", ident(&tv.name))));
        }
    }
    let todo: Vec<&ViewDef> = s
        .views
        .iter()
        .filter(|sv| t.view(&sv.name) != Some(*sv))
        .collect();
    for v in dependency_order(todo) {
        ph.views.push(sql(db, render::create_view(v)));
    }
}

/// Views ordered so that a view comes after the views (of the list) its definition names.
fn dependency_order(mut todo: Vec<&ViewDef>) -> Vec<&ViewDef> {
    let mut out: Vec<&ViewDef> = Vec::new();
    while !todo.is_empty() {
        let names: Vec<String> = todo.iter().map(|v| ident(&v.name)).collect();
        let ready = todo.iter().position(|v| {
            names
                .iter()
                .all(|n| *n == ident(&v.name) || !v.definition.contains(n.as_str()))
        });
        // A cycle (impossible for valid views): emit in name order.
        out.push(todo.remove(ready.unwrap_or(0)));
    }
    out
}

type TriggerGroups = BTreeMap<(String, String, String), Vec<TriggerDef>>;

fn group_triggers(list: impl Iterator<Item = TriggerDef>) -> TriggerGroups {
    let mut groups = TriggerGroups::new();
    for tr in list {
        let key = (tr.table.clone(), tr.timing.clone(), tr.event.clone());
        groups.entry(key).or_default().push(tr);
    }
    for g in groups.values_mut() {
        g.sort_by_key(|t| t.order);
    }
    groups
}

/// Triggers change per (table, timing, event) group: when a group differs in any way, all of
/// the target's triggers of the group are dropped and the source's created in their order.
fn plan_triggers(db: &str, s: &DatabaseSchema, t: &DatabaseSchema, hints: &Hints, ph: &mut Phases) {
    let sg = group_triggers(s.triggers.iter().cloned());
    let tg = group_triggers(t.triggers.iter().map(|tr| map_trigger(tr, hints)));
    let keys: BTreeSet<_> = sg.keys().chain(tg.keys()).cloned().collect();
    for key in keys {
        let (a, b) = (sg.get(&key), tg.get(&key));
        if a == b {
            continue;
        }
        for tr in b.into_iter().flatten() {
            ph.pre.push(sql(
                db,
                format!("DROP TRIGGER IF EXISTS {}", ident(&tr.name)),
            ));
        }
        for tr in a.into_iter().flatten() {
            ph.triggers.push(sql(db, render::create_trigger(tr)));
        }
    }
}
