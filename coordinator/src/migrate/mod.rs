//! Schema diffs and verified migrations.
//!
//! * [`diff`]: compares two [`SchemaSnapshot`]s (taken by `fleetsync_mysql::inspect`) and
//!   lists every difference; rename [`Hints`] pair tables and columns that would otherwise
//!   show as one dropped and one added.
//! * [`plan`]: the migration: [`Step`]s that make the target's schema equal the source's, in a
//!   safe order (foreign keys dropped before the columns and indexes they use and re-created
//!   after; views and triggers dropped early and created last). The down migration is the
//!   plan of the reverse diff.
//! * [`render`]: the DDL text of columns, indexes, keys, tables, views and triggers.
//! * [`exec`]: runs steps (with a database-name mapping, so the same steps run on a scratch
//!   copy), loads `.sql` schema files into scratch databases, and [`exec::verify`]s a
//!   migration on scratch copies of the target.
//! * [`sqlfile`]: splits SQL text into statements (quotes, comments, `DELIMITER`).
//! * [`history`]: the `fleetsync.schema_migrations` table on a target.
//! * Versioned migrations (hand-written files applied in order, once per server):
//!   [`versioned`] (the folder, versions, where a server stands, what `up`/`undo` run),
//!   [`queue_store`] (their history: fleetsync's table or TrinityCore's `updates`),
//!   [`runfile`] (one file's statements on a server), [`fleet`] (`--servers` patterns,
//!   canaries and waves).
//!
//! Pairing: a side is a whole server (every user database, paired by name) or one database
//! (paired with the other side's one database whatever the names). Steps name the database
//! they run in by its name on the target; unqualified object names inside steps resolve in
//! that database.

pub mod diff;
pub mod exec;
pub mod fleet;
pub mod history;
pub mod plan;
pub mod queue_store;
pub mod render;
pub mod runfile;
pub mod sqlfile;
pub mod topology;
pub mod versioned;

pub use diff::{diff, Difference, Hints, SchemaDiff};
pub use plan::{plan, Step};

use fleetsync_proto::schema_model::{DatabaseSchema, SchemaSnapshot};

/// How the databases of the two sides are paired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pairing {
    /// Both sides are one database: they are paired whatever their names.
    Single,
    /// Both sides are whole servers: databases are paired by name.
    ByName,
}

/// The paired databases of two snapshots and those on one side only.
pub struct DbPairs<'a> {
    pub pairs: Vec<(&'a DatabaseSchema, &'a DatabaseSchema)>,
    pub only_source: Vec<&'a DatabaseSchema>,
    pub only_target: Vec<&'a DatabaseSchema>,
}

/// Pairs the databases of `source` and `target` (see [`Pairing`]).
pub fn pair_databases<'a>(
    source: &'a SchemaSnapshot,
    target: &'a SchemaSnapshot,
    pairing: Pairing,
) -> DbPairs<'a> {
    let mut out = DbPairs {
        pairs: Vec::new(),
        only_source: Vec::new(),
        only_target: Vec::new(),
    };
    if pairing == Pairing::Single {
        match (source.databases.first(), target.databases.first()) {
            (Some(s), Some(t)) => out.pairs.push((s, t)),
            (Some(s), None) => out.only_source.push(s),
            (None, Some(t)) => out.only_target.push(t),
            (None, None) => {}
        }
        return out;
    }
    for s in &source.databases {
        match target.databases.iter().find(|t| t.name == s.name) {
            Some(t) => out.pairs.push((s, t)),
            None => out.only_source.push(s),
        }
    }
    for t in &target.databases {
        if !source.databases.iter().any(|s| s.name == t.name) {
            out.only_target.push(t);
        }
    }
    out
}

/// A stable 64-bit fingerprint of a snapshot (FNV-1a over its JSON): what the history table
/// records before and after a migration. With [`Pairing::Single`] the database name is left
/// out, so a copy under another name has the same fingerprint. `auto_increment` is left out.
pub fn fingerprint(snapshot: &SchemaSnapshot, pairing: Pairing) -> String {
    let mut s = snapshot.clone();
    for db in &mut s.databases {
        if pairing == Pairing::Single {
            db.name.clear();
        }
        for t in &mut db.tables {
            t.auto_increment = None;
        }
    }
    let json = serde_json::to_string(&s).unwrap_or_default();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in json.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}
