//! The schema diff: every difference between a source and a target snapshot, as a flat list
//! of [`Difference`]s (`fleetsync diff schema` prints it; `--json` serializes it).
//!
//! Matching rules (shared with [`super::plan`]):
//! * Tables, views, triggers, indexes, foreign keys and checks are matched by name; a
//!   [`Hints`] table or column rename matches a target name with a source name.
//! * A target index/foreign key is compared after mapping its column names (and a foreign
//!   key's referenced table) through the renames, so a renamed column does not also show up
//!   as a changed index.
//! * Never compared: `auto_increment`, view definers, the level of CHECK constraints, the
//!   database options when either side has none (a schema file).

use std::collections::BTreeMap;

use fleetsync_proto::schema_model::{
    ColumnDef, DatabaseSchema, ForeignKeyDef, IndexDef, SchemaSnapshot, TableDef, TriggerDef,
};
use serde::Serialize;

use super::render;
use super::{pair_databases, Pairing};

/// Rename hints: names that are the same object on both sides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hints {
    /// (name on the target, name on the source).
    pub tables: Vec<(String, String)>,
    /// (table's name on the source, column name on the target, column name on the source).
    pub columns: Vec<(String, String, String)>,
}

impl Hints {
    /// Parses `--rename-table OLD=NEW` and `--rename-column TABLE.OLD=NEW` values (OLD: the
    /// target's name, NEW and TABLE: the source's).
    pub fn parse(tables: &[String], columns: &[String]) -> Result<Hints, String> {
        let mut hints = Hints::default();
        for t in tables {
            let (old, new) =
                split_pair(t).ok_or_else(|| format!("--rename-table {t:?}: expected OLD=NEW"))?;
            hints.tables.push((old.into(), new.into()));
        }
        for c in columns {
            let parsed = split_pair(c).and_then(|(lhs, new)| {
                let (table, old) = lhs.split_once('.')?;
                (!table.is_empty() && !old.is_empty()).then_some((table, old, new))
            });
            let (table, old, new) =
                parsed.ok_or_else(|| format!("--rename-column {c:?}: expected TABLE.OLD=NEW"))?;
            hints.columns.push((table.into(), old.into(), new.into()));
        }
        Ok(hints)
    }

    /// The hints for the reverse diff (target and source swapped).
    pub fn reversed(&self) -> Hints {
        let tables = self
            .tables
            .iter()
            .map(|(old, new)| (new.clone(), old.clone()))
            .collect();
        let columns = self
            .columns
            .iter()
            .map(|(table, old, new)| {
                let old_table = self
                    .tables
                    .iter()
                    .find(|(_, n)| n == table)
                    .map_or(table.clone(), |(o, _)| o.clone());
                (old_table, new.clone(), old.clone())
            })
            .collect();
        Hints { tables, columns }
    }

    /// The source name of target table `target_name`.
    pub fn table_on_source<'a>(&'a self, target_name: &'a str) -> &'a str {
        self.tables
            .iter()
            .find(|(old, _)| old == target_name)
            .map_or(target_name, |(_, new)| new.as_str())
    }

    /// The source name of column `target_col` of source table `table`.
    pub fn column_on_source<'a>(&'a self, table: &str, target_col: &'a str) -> &'a str {
        self.columns
            .iter()
            .find(|(t, old, _)| t == table && old == target_col)
            .map_or(target_col, |(_, _, new)| new.as_str())
    }
}

fn split_pair(s: &str) -> Option<(&str, &str)> {
    let (a, b) = s.split_once('=')?;
    (!a.is_empty() && !b.is_empty()).then_some((a, b))
}

/// One difference. `source`/`target` describe the object on each side (`None`: absent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    pub database: String,
    /// `database`, `table`, `column`, `index`, `foreign_key`, `check`, `table_option`,
    /// `partitioning`, `view` or `trigger`.
    pub object: &'static str,
    /// The table the object belongs to (its source name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    pub name: String,
    /// `only_in_source`, `only_in_target`, `changed`, `renamed` or `moved` (column order).
    pub kind: &'static str,
    pub source: Option<String>,
    pub target: Option<String>,
}

impl From<&Difference> for fleetsync_proto::jobs::SchemaDifference {
    fn from(x: &Difference) -> Self {
        fleetsync_proto::jobs::SchemaDifference {
            database: x.database.clone(),
            object: x.object.to_string(),
            table: x.table.clone(),
            name: x.name.clone(),
            kind: x.kind.to_string(),
            source: x.source.clone(),
            target: x.target.clone(),
        }
    }
}

/// Rendered as the report's difference (`diff schema` prints those): one wording.
impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fleetsync_proto::jobs::SchemaDifference::from(self).fmt(f)
    }
}

/// The result of [`diff`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct SchemaDiff {
    pub equal: bool,
    pub differences: Vec<Difference>,
    /// Suggestions, e.g. a table only on one side with the same columns as a table only on
    /// the other (pass a rename hint if it is a rename).
    pub notes: Vec<String>,
}

/// Compares `source` with `target`.
pub fn diff(
    source: &SchemaSnapshot,
    target: &SchemaSnapshot,
    pairing: Pairing,
    hints: &Hints,
) -> SchemaDiff {
    let mut out = SchemaDiff::default();
    let dbs = pair_databases(source, target, pairing);
    for s in &dbs.only_source {
        out.differences.push(db_diff(
            &s.name,
            "only_in_source",
            Some(s.name.clone()),
            None,
        ));
    }
    for t in &dbs.only_target {
        out.differences.push(db_diff(
            &t.name,
            "only_in_target",
            None,
            Some(t.name.clone()),
        ));
    }
    for (s, t) in dbs.pairs {
        diff_database(s, t, hints, &mut out);
    }
    out.equal = out.differences.is_empty();
    out
}

fn db_diff(name: &str, kind: &'static str, s: Option<String>, t: Option<String>) -> Difference {
    Difference {
        database: name.to_string(),
        object: "database",
        table: None,
        name: name.to_string(),
        kind,
        source: s,
        target: t,
    }
}

/// The tables of a database pair: matched (source, target), and those on one side only.
pub(crate) struct TableMatch<'a> {
    pub pairs: Vec<(&'a TableDef, &'a TableDef)>,
    pub only_source: Vec<&'a TableDef>,
    pub only_target: Vec<&'a TableDef>,
}

pub(crate) fn match_tables<'a>(
    s: &'a DatabaseSchema,
    t: &'a DatabaseSchema,
    hints: &Hints,
) -> TableMatch<'a> {
    let mut m = TableMatch {
        pairs: Vec::new(),
        only_source: Vec::new(),
        only_target: Vec::new(),
    };
    for tt in &t.tables {
        match s.table(hints.table_on_source(&tt.name)) {
            Some(st) => m.pairs.push((st, tt)),
            None => m.only_target.push(tt),
        }
    }
    for st in &s.tables {
        if !m.pairs.iter().any(|(p, _)| p.name == st.name) {
            m.only_source.push(st);
        }
    }
    m
}

/// The columns of a table pair: matched (source, target), and those on one side only.
pub(crate) struct ColumnMatch<'a> {
    pub pairs: Vec<(&'a ColumnDef, &'a ColumnDef)>,
    pub only_source: Vec<&'a ColumnDef>,
    pub only_target: Vec<&'a ColumnDef>,
    /// target column name -> source column name, for every matched column.
    pub to_source: BTreeMap<String, String>,
}

pub(crate) fn match_columns<'a>(
    s: &'a TableDef,
    t: &'a TableDef,
    hints: &Hints,
) -> ColumnMatch<'a> {
    let mut m = ColumnMatch {
        pairs: Vec::new(),
        only_source: Vec::new(),
        only_target: Vec::new(),
        to_source: BTreeMap::new(),
    };
    for tc in &t.columns {
        match s.column(hints.column_on_source(&s.name, &tc.name)) {
            Some(sc) => {
                m.to_source.insert(tc.name.clone(), sc.name.clone());
                m.pairs.push((sc, tc));
            }
            None => m.only_target.push(tc),
        }
    }
    for sc in &s.columns {
        if !m.pairs.iter().any(|(p, _)| p.name == sc.name) {
            m.only_source.push(sc);
        }
    }
    m
}

/// Whether two columns differ in anything but their names.
pub(crate) fn column_differs(s: &ColumnDef, t: &ColumnDef) -> bool {
    let mut t = t.clone();
    t.name = s.name.clone();
    *s != t
}

/// A target index with its column names mapped to the source's.
pub(crate) fn map_index(index: &IndexDef, cols: &BTreeMap<String, String>) -> IndexDef {
    let mut i = index.clone();
    for p in &mut i.parts {
        if let Some(n) = cols.get(&p.column) {
            p.column = n.clone();
        }
    }
    i
}

/// A target foreign key with its columns, referenced table and referenced columns mapped to
/// the source's names.
pub(crate) fn map_foreign_key(
    fk: &ForeignKeyDef,
    cols: &BTreeMap<String, String>,
    target_db: &DatabaseSchema,
    source_db: &DatabaseSchema,
    hints: &Hints,
) -> ForeignKeyDef {
    let mut f = fk.clone();
    for c in &mut f.columns {
        if let Some(n) = cols.get(c) {
            *c = n.clone();
        }
    }
    if f.ref_schema.is_none() {
        let new_table = hints.table_on_source(&fk.ref_table).to_string();
        if let (Some(rt), Some(rs)) = (target_db.table(&fk.ref_table), source_db.table(&new_table))
        {
            let ref_cols = match_columns(rs, rt, hints).to_source;
            for c in &mut f.ref_columns {
                if let Some(n) = ref_cols.get(c) {
                    *c = n.clone();
                }
            }
        }
        f.ref_table = new_table;
    }
    f
}

fn diff_database(s: &DatabaseSchema, t: &DatabaseSchema, hints: &Hints, out: &mut SchemaDiff) {
    let db = s.name.clone();
    let push = |out: &mut SchemaDiff, object, table: Option<&str>, name: &str, kind, a, b| {
        out.differences.push(Difference {
            database: db.clone(),
            object,
            table: table.map(str::to_string),
            name: name.to_string(),
            kind,
            source: a,
            target: b,
        })
    };
    if let (Some(sc), Some(tc)) = (&s.collation, &t.collation) {
        if sc != tc || s.charset != t.charset {
            let show = |d: &DatabaseSchema| format!("{:?} {:?}", d.charset, d.collation);
            push(
                out,
                "database",
                None,
                &db,
                "changed",
                Some(show(s)),
                Some(show(t)),
            );
        }
    }
    let m = match_tables(s, t, hints);
    for st in &m.only_source {
        push(
            out,
            "table",
            None,
            &st.name,
            "only_in_source",
            Some(st.name.clone()),
            None,
        );
    }
    for tt in &m.only_target {
        push(
            out,
            "table",
            None,
            &tt.name,
            "only_in_target",
            None,
            Some(tt.name.clone()),
        );
    }
    for (st, tt) in &m.pairs {
        if st.name != tt.name {
            let (a, b) = (Some(st.name.clone()), Some(tt.name.clone()));
            push(out, "table", None, &st.name, "renamed", a, b);
        }
        out.differences.extend(diff_table(&db, s, t, st, tt, hints));
    }
    suggest_renames(&m, out);
    diff_views(&db, s, t, out);
    diff_triggers(&db, s, t, hints, out);
}

/// Notes for tables only on one side each with identical columns: probably a rename.
fn suggest_renames(m: &TableMatch<'_>, out: &mut SchemaDiff) {
    for st in &m.only_source {
        for tt in &m.only_target {
            if st.columns == tt.columns {
                out.notes.push(format!(
                    "table {} (target) and {} (source) have the same columns: if it is a rename, pass --rename-table {}={}",
                    tt.name, st.name, tt.name, st.name
                ));
            }
        }
    }
}

/// Every difference inside one matched table pair.
pub(crate) fn diff_table(
    db: &str,
    sdb: &DatabaseSchema,
    tdb: &DatabaseSchema,
    s: &TableDef,
    t: &TableDef,
    hints: &Hints,
) -> Vec<Difference> {
    let mut out = Vec::new();
    let mut push = |object, name: &str, kind, a: Option<String>, b: Option<String>| {
        out.push(Difference {
            database: db.to_string(),
            object,
            table: Some(s.name.clone()),
            name: name.to_string(),
            kind,
            source: a,
            target: b,
        })
    };
    let cm = match_columns(s, t, hints);
    for c in &cm.only_source {
        push(
            "column",
            &c.name,
            "only_in_source",
            Some(render::column(c)),
            None,
        );
    }
    for c in &cm.only_target {
        push(
            "column",
            &c.name,
            "only_in_target",
            None,
            Some(render::column(c)),
        );
    }
    for (sc, tc) in &cm.pairs {
        if sc.name != tc.name {
            push(
                "column",
                &sc.name,
                "renamed",
                Some(sc.name.clone()),
                Some(tc.name.clone()),
            );
        }
        if column_differs(sc, tc) {
            push(
                "column",
                &sc.name,
                "changed",
                Some(render::column(sc)),
                Some(render::column(tc)),
            );
        }
    }
    let common_s: Vec<&str> = s
        .columns
        .iter()
        .filter(|c| cm.pairs.iter().any(|(p, _)| p.name == c.name))
        .map(|c| c.name.as_str())
        .collect();
    let common_t: Vec<&str> = t
        .columns
        .iter()
        .filter_map(|c| cm.to_source.get(&c.name).map(String::as_str))
        .collect();
    if common_s != common_t {
        push(
            "column",
            "(order)",
            "moved",
            Some(common_s.join(", ")),
            Some(common_t.join(", ")),
        );
    }
    let t_indexes: Vec<IndexDef> = t
        .indexes
        .iter()
        .map(|i| map_index(i, &cm.to_source))
        .collect();
    diff_named(
        &s.indexes,
        &t_indexes,
        |i| &i.name,
        render::index,
        |n, k, a, b| push("index", n, k, a, b),
    );
    let t_fks: Vec<ForeignKeyDef> = t
        .foreign_keys
        .iter()
        .map(|f| map_foreign_key(f, &cm.to_source, tdb, sdb, hints))
        .collect();
    diff_named(
        &s.foreign_keys,
        &t_fks,
        |f| &f.name,
        render::foreign_key,
        |n, k, a, b| push("foreign_key", n, k, a, b),
    );
    diff_named(
        &s.checks,
        &t.checks,
        |c| &c.name,
        render::check,
        |n, k, a, b| push("check", n, k, a, b),
    );
    for (name, a, b) in option_differences(s, t) {
        push("table_option", name, "changed", a, b);
    }
    if s.partitioning != t.partitioning {
        push(
            "partitioning",
            &s.name,
            "changed",
            s.partitioning.clone(),
            t.partitioning.clone(),
        );
    }
    out
}

/// Compares two name-sorted lists; calls `emit(name, kind, source, target)`.
fn diff_named<T: PartialEq>(
    s: &[T],
    t: &[T],
    name: impl Fn(&T) -> &String,
    show: impl Fn(&T) -> String,
    mut emit: impl FnMut(&str, &'static str, Option<String>, Option<String>),
) {
    for a in s {
        match t.iter().find(|b| name(b) == name(a)) {
            None => emit(name(a), "only_in_source", Some(show(a)), None),
            Some(b) if a != b => emit(name(a), "changed", Some(show(a)), Some(show(b))),
            Some(_) => {}
        }
    }
    for b in t {
        if !s.iter().any(|a| name(a) == name(b)) {
            emit(name(b), "only_in_target", None, Some(show(b)));
        }
    }
}

/// (option, source value, target value) for each differing table option.
pub(crate) fn option_differences(
    s: &TableDef,
    t: &TableDef,
) -> Vec<(&'static str, Option<String>, Option<String>)> {
    let (so, to) = (&s.options, &t.options);
    let mut out = Vec::new();
    let mut cmp = |name, a: &Option<String>, b: &Option<String>| {
        if a != b {
            out.push((name, a.clone(), b.clone()));
        }
    };
    cmp("engine", &so.engine, &to.engine);
    cmp("charset", &so.charset, &to.charset);
    cmp("collation", &so.collation, &to.collation);
    cmp("row_format", &so.row_format, &to.row_format);
    cmp(
        "comment",
        &Some(so.comment.clone()),
        &Some(to.comment.clone()),
    );
    out
}

fn diff_views(db: &str, s: &DatabaseSchema, t: &DatabaseSchema, out: &mut SchemaDiff) {
    let mut items = Vec::new();
    diff_named(
        &s.views,
        &t.views,
        |v| &v.name,
        render::view_summary,
        |n, k, a, b| items.push((n.to_string(), k, a, b)),
    );
    for (name, kind, a, b) in items {
        out.differences.push(Difference {
            database: db.to_string(),
            object: "view",
            table: None,
            name,
            kind,
            source: a,
            target: b,
        });
    }
}

/// A trigger with its table mapped to the source's name.
pub(crate) fn map_trigger(tr: &TriggerDef, hints: &Hints) -> TriggerDef {
    let mut t = tr.clone();
    t.table = hints.table_on_source(&tr.table).to_string();
    t
}

fn diff_triggers(
    db: &str,
    s: &DatabaseSchema,
    t: &DatabaseSchema,
    hints: &Hints,
    out: &mut SchemaDiff,
) {
    let mapped: Vec<TriggerDef> = t.triggers.iter().map(|tr| map_trigger(tr, hints)).collect();
    let mut items = Vec::new();
    diff_named(
        &s.triggers,
        &mapped,
        |tr| &tr.name,
        render::trigger_summary,
        |n, k, a, b| items.push((n.to_string(), k, a, b)),
    );
    for (name, kind, a, b) in items {
        out.differences.push(Difference {
            database: db.to_string(),
            object: "trigger",
            table: None,
            name,
            kind,
            source: a,
            target: b,
        });
    }
}
