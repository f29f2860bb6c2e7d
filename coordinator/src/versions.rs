//! Row versions and tombstones on the members of a bidirectional group (see `apply::rank`).
//!
//! What fleetsync installs on every member, for every table of the group with conflict
//! detection (at `fleetsync run` start; `fleetsync check` prints it without installing):
//!
//! * three **INVISIBLE** columns on the table (`SELECT *` and `INSERT` without a column list do
//!   not see them): `fleetsync_rank DECIMAL(65,6)`, `fleetsync_version BIGINT UNSIGNED`,
//!   `fleetsync_origin INT UNSIGNED`: the rank of the write that made the row. Added at the
//!   end of the table (an instant `ALTER` on InnoDB). They are in the binlog's row images, so a
//!   change record carries its version from the same binlog event as the row.
//! * a **tombstone table** `fleetsync`.`ts_<schema>__<table>` (hashed when too long): the key
//!   columns (same types and collations) and the rank of the delete, plus `deleted_at`.
//! * three **triggers** (`BEFORE INSERT`, `BEFORE UPDATE`, `AFTER DELETE`) that give a
//!   member's *own* writes their rank in the same statement (so atomically): the successor of
//!   the row's (or tombstone's) rank, `origin = @@server_id`; a delete leaves a tombstone; a
//!   key-changing update is a delete of the old key (tombstone) and an insert of the new one.
//!   They do nothing in fleetsync's apply sessions (`@fleetsync_applier` is set there): the
//!   applier writes the incoming rank itself, in the same target transaction as the row.
//!
//! Not covered by triggers: `TRUNCATE` (DDL: applied on every member, leaves no tombstones)
//! and foreign-key cascades (refused here: a cascading foreign key into a group table).
//! Installing is idempotent (columns `IF NOT EXISTS`; a trigger is replaced only when its body
//! changed, e.g. a new `priority`: `CREATE OR REPLACE` is a drop and a create, and a local
//! write in between gets no version, so change a group's settings with its writers stopped). The
//! session is marked `skip_replication=1`, so the other members' readers skip these
//! statements: every member installs its own.

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use fleetsync_config::{ConflictPolicy, ConflictStrategy};

use crate::apply::rank::{format_decimal, parse_decimal, priority_base, Rank};

/// The rank columns (see the module docs).
pub const RANK_COLUMN: &str = "fleetsync_rank";
pub const VERSION_COLUMN: &str = "fleetsync_version";
pub const ORIGIN_COLUMN: &str = "fleetsync_origin";
/// The three columns above: what the install adds to a group table.
pub const VERSION_COLUMNS: [&str; 3] = [RANK_COLUMN, VERSION_COLUMN, ORIGIN_COLUMN];
/// The table of the members' GC floors (`fleetsync`.`ts_floor`): per tombstone table, the
/// highest rank its purges removed (see `gc`). A row per tombstone table exists from the
/// install on (rank NULL, version 0: the same as no predecessor), so the triggers' locking
/// read always finds one.
pub const FLOOR_TABLE: &str = "ts_floor";
/// Creates [`FLOOR_TABLE`] (idempotent).
pub const CREATE_FLOOR_TABLE: &str = "CREATE TABLE IF NOT EXISTS `fleetsync`.`ts_floor` (\
    `tombstones` VARCHAR(64) NOT NULL PRIMARY KEY, `fleetsync_rank` DECIMAL(65,6) NULL, \
    `fleetsync_version` BIGINT UNSIGNED NOT NULL DEFAULT 0, `fleetsync_origin` INT UNSIGNED NOT NULL DEFAULT 0, \
    `sync_name` VARCHAR(64) NOT NULL DEFAULT '', \
    `purged` BIGINT UNSIGNED NOT NULL DEFAULT 0, `raised_at` TIMESTAMP(6) NULL) ENGINE=InnoDB";
/// The session variable that tells the triggers a write is fleetsync's own apply.
pub const APPLIER_VARIABLE: &str = "@fleetsync_applier";

/// MariaDB's "command denied" errors: the install needs ALTER, TRIGGER and CREATE.
const DENIED_CODES: &[u16] = &[1044, 1142, 1227];

#[derive(Debug, thiserror::Error)]
pub enum VersionsError {
    #[error("server {server}: {context}: {source}")]
    Sql {
        server: String,
        context: String,
        source: Box<mysql_async::Error>,
    },
    #[error("server {server}: {reason}")]
    Refused { server: String, reason: String },
}

/// One key column of a group table.
#[derive(Debug, Clone)]
struct KeyCol {
    name: String,
    column_type: String,
    collation: Option<String>,
}

/// What will be installed on one member for one table.
#[derive(Debug, Clone)]
pub struct TablePlan {
    pub schema: String,
    pub table: String,
    /// `schema.table` of the tombstone table.
    pub tombstones: String,
    /// `(what, sql)`.
    pub statements: Vec<(String, String)>,
}

/// The name of the tombstone table of `schema`.`table` (in the `fleetsync` database).
pub fn tombstone_table(schema: &str, table: &str) -> String {
    short("ts_", schema, table)
}

/// `prefix` + `schema__table`, or `prefix` + a hash when that is longer than 64 characters.
fn short(prefix: &str, schema: &str, table: &str) -> String {
    let name = format!("{prefix}{schema}__{table}");
    if name.len() <= 64 {
        return name;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in schema.bytes().chain([0u8]).chain(table.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{prefix}{h:016x}")
}

/// `fleetsync_<kind>_<table>`, or a hash of the table name when that is too long.
fn trigger_name(kind: &str, table: &str) -> String {
    let name = format!("fleetsync_{kind}_{table}");
    if name.len() <= 64 {
        name
    } else {
        short(&format!("fleetsync_{kind}_"), "", table)
    }
}

/// A SQL string literal.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

fn ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

fn sql_err(server: &str, context: String) -> impl FnOnce(mysql_async::Error) -> VersionsError + '_ {
    move |e| VersionsError::Sql {
        server: server.to_string(),
        context,
        source: Box::new(e),
    }
}

/// The numeric encoding of `newest_column` in trigger SQL (`v` is `NEW.col`), by its
/// information_schema DATA_TYPE; `None` for types newest_wins cannot rank in a group.
fn encode_newest(data_type: &str, v: &str) -> Option<String> {
    Some(match data_type {
        "tinyint" | "smallint" | "mediumint" | "int" | "bigint" | "decimal" | "year" => {
            format!("CAST({v} AS DECIMAL(65,6))")
        }
        "date" | "datetime" => {
            format!("CAST(DATE_FORMAT({v}, '%Y%m%d%H%i%s.%f') AS DECIMAL(65,6))")
        }
        "timestamp" => format!("CAST(UNIX_TIMESTAMP({v}) AS DECIMAL(65,6))"),
        _ => return None,
    })
}

/// `max(base, pred)` with NULL lowest, as in `Rank::successor`.
fn inherit(base: &str, pred: &str) -> String {
    format!(
        "CASE WHEN ({base}) IS NULL THEN {pred} WHEN {pred} IS NULL OR ({base}) > {pred} THEN ({base}) ELSE {pred} END"
    )
}

/// Plans the install on member `server` (the fleetsync name `member`) for `tables`, the
/// group's tables on it. Refuses, naming each table: keyless tables with conflict detection,
/// a `newest_column` that is missing or of a type that cannot be ranked, cascading foreign
/// keys into a group table.
pub async fn plan_member(
    conn: &mut Conn,
    server: &str,
    member: &str,
    tables: &[(String, String)],
    policy: &ConflictPolicy,
) -> Result<Vec<TablePlan>, VersionsError> {
    let mut plans = Vec::new();
    let mut keyless = Vec::new();
    let mut refused = Vec::new();
    for (schema, table) in tables {
        let p = policy.table(schema, table);
        if p.strategy == ConflictStrategy::None {
            continue;
        }
        let info = fleetsync_mysql::schema::load_table(conn, server, schema, table)
            .await
            .map_err(|e| VersionsError::Refused {
                server: server.to_string(),
                reason: e.to_string(),
            })?;
        let Some(info) = info else { continue };
        if info.key.is_empty() {
            keyless.push(format!("{schema}.{table}"));
            continue;
        }
        let cols: Vec<(String, String, String, Option<String>)> = conn
            .exec(
                "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, COLLATION_NAME FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
                (schema, table),
            )
            .await
            .map_err(sql_err(server, format!("reading the columns of {schema}.{table}")))?;
        let key: Vec<KeyCol> = info
            .key
            .iter()
            .filter_map(|k| {
                cols.iter().find(|c| &c.0 == k).map(|c| KeyCol {
                    name: c.0.clone(),
                    column_type: c.2.clone(),
                    collation: c.3.clone(),
                })
            })
            .collect();
        let base = match p.strategy {
            ConflictStrategy::NewestWins => {
                let name = p.newest_column.as_deref().unwrap_or_default();
                let found = cols.iter().find(|c| c.0.eq_ignore_ascii_case(name));
                match found.and_then(|c| encode_newest(&c.1, &format!("NEW.{}", ident(&c.0)))) {
                    Some(e) => e,
                    None => {
                        refused.push(format!(
                            "{schema}.{table} (newest_column {name:?} {})",
                            match found {
                                Some(c) => format!(
                                    "is {}: newest_wins in a group needs an integer, DECIMAL, YEAR, DATE, DATETIME or TIMESTAMP column",
                                    c.1
                                ),
                                None => "does not exist".into(),
                            }
                        ));
                        continue;
                    }
                }
            }
            ConflictStrategy::SourceWins => format_decimal(priority_base(&policy.priority, member)),
            _ => "NULL".to_string(),
        };
        plans.push(table_plan(schema, table, &key, &base));
    }
    if !keyless.is_empty() {
        return Err(VersionsError::Refused {
            server: server.to_string(),
            reason: format!(
                "tables without a primary key (or a UNIQUE key over NOT NULL columns) cannot have \
                 conflict detection in a bidirectional group: {}; add a key, or opt each one out \
                 with [[syncs.tables]] name = \"schema.table\", conflict = \"none\" (its rows are \
                 then applied as they come, with no convergence guarantee)",
                keyless.join(", ")
            ),
        });
    }
    if !refused.is_empty() {
        return Err(VersionsError::Refused {
            server: server.to_string(),
            reason: refused.join("; "),
        });
    }
    let cascades = cascading_fks(conn, server, &plans).await?;
    if !cascades.is_empty() {
        return Err(VersionsError::Refused {
            server: server.to_string(),
            reason: format!(
                "foreign keys with ON DELETE/UPDATE CASCADE or SET NULL into tables of a bidirectional \
                 group change rows without triggers or binlog row events (no versions, no tombstones): {}; \
                 use RESTRICT/NO ACTION and delete the children explicitly",
                cascades.join(", ")
            ),
        });
    }
    Ok(plans)
}

/// Foreign keys (as `child -> parent`) whose delete or update rule cascades into a planned
/// table, or out of one.
async fn cascading_fks(
    conn: &mut Conn,
    server: &str,
    plans: &[TablePlan],
) -> Result<Vec<String>, VersionsError> {
    let rows: Vec<(String, String, String, String)> = conn
        .query(
            "SELECT CONSTRAINT_SCHEMA, TABLE_NAME, UNIQUE_CONSTRAINT_SCHEMA, REFERENCED_TABLE_NAME \
             FROM information_schema.REFERENTIAL_CONSTRAINTS \
             WHERE DELETE_RULE IN ('CASCADE','SET NULL','SET DEFAULT') OR UPDATE_RULE IN ('CASCADE','SET NULL','SET DEFAULT')",
        )
        .await
        .map_err(sql_err(server, "reading foreign keys".into()))?;
    let planned = |s: &str, t: &str| plans.iter().any(|p| p.schema == s && p.table == t);
    Ok(rows
        .into_iter()
        .filter(|(cs, ct, ps, pt)| planned(cs, ct) || planned(ps, pt))
        .map(|(cs, ct, ps, pt)| format!("{cs}.{ct} -> {ps}.{pt}"))
        .collect())
}

fn table_plan(schema: &str, table: &str, key: &[KeyCol], base: &str) -> TablePlan {
    let t = format!("{}.{}", ident(schema), ident(table));
    let ts_name = tombstone_table(schema, table);
    let ts = format!("`fleetsync`.{}", ident(&ts_name));
    let (rank, ver, origin) = (
        ident(RANK_COLUMN),
        ident(VERSION_COLUMN),
        ident(ORIGIN_COLUMN),
    );
    let mut statements = vec![
        (
            format!("add the invisible version columns to {schema}.{table}"),
            format!(
                "ALTER TABLE {t} ADD COLUMN IF NOT EXISTS {rank} DECIMAL(65,6) NULL INVISIBLE, \
                 ADD COLUMN IF NOT EXISTS {ver} BIGINT UNSIGNED NULL INVISIBLE, \
                 ADD COLUMN IF NOT EXISTS {origin} INT UNSIGNED NULL INVISIBLE"
            ),
        ),
        (format!("create the tombstone table fleetsync.{ts_name}"), {
            let mut cols = String::new();
            for k in key {
                cols.push_str(&format!("{} {}", ident(&k.name), k.column_type));
                if let Some(c) = &k.collation {
                    cols.push_str(&format!(" COLLATE {c}"));
                }
                cols.push_str(" NOT NULL, ");
            }
            let pk: Vec<String> = key.iter().map(|k| ident(&k.name)).collect();
            format!(
                "CREATE TABLE IF NOT EXISTS {ts} ({cols}{rank} DECIMAL(65,6) NULL, \
                     {ver} BIGINT UNSIGNED NOT NULL, {origin} INT UNSIGNED NOT NULL, \
                     `deleted_at` TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), \
                     PRIMARY KEY ({}), KEY `deleted_at` (`deleted_at`)) ENGINE=InnoDB",
                pk.join(",")
            )
        }),
    ];
    let key_match = |side: &str| -> String {
        key.iter()
            .map(|k| format!("{0} <=> {side}.{0}", ident(&k.name)))
            .collect::<Vec<_>>()
            .join(" AND ")
    };
    let same_key = key
        .iter()
        .map(|k| format!("NEW.{0} <=> OLD.{0}", ident(&k.name)))
        .collect::<Vec<_>>()
        .join(" AND ");
    let key_cols = key
        .iter()
        .map(|k| ident(&k.name))
        .collect::<Vec<_>>()
        .join(",");
    let old_keys = key
        .iter()
        .map(|k| format!("OLD.{}", ident(&k.name)))
        .collect::<Vec<_>>()
        .join(",");
    let tombstone_old = format!(
        "INSERT INTO {ts} ({key_cols},{rank},{ver},{origin},`deleted_at`) VALUES ({old_keys}, OLD.{rank}, \
         COALESCE(OLD.{ver}, 0) + 1, @@server_id, SYSDATE(6)) ON DUPLICATE KEY UPDATE {rank}=VALUES({rank}), \
         {ver}=VALUES({ver}), {origin}=VALUES({origin}), `deleted_at`=VALUES(`deleted_at`)"
    );
    // The predecessor of a write on a key: its tombstone, or when it has none the member's
    // GC floor for the table (what it purged; see `gc`). Both are locking reads: under
    // REPEATABLE READ a plain read would use the transaction's snapshot and could miss a
    // purge that committed since (the purge holds the floor row exclusively while it raises
    // it and deletes the tombstones).
    let read_new = format!(
        "SELECT MAX({rank}), MAX({ver}) INTO pr, pv FROM {ts} WHERE {} FOR UPDATE; \
         IF pv IS NULL THEN SELECT MAX({rank}), MAX({ver}) INTO pr, pv FROM `fleetsync`.`{FLOOR_TABLE}` \
         WHERE `tombstones` = {} LOCK IN SHARE MODE; END IF; DELETE FROM {ts} WHERE {};",
        key_match("NEW"),
        quote(&ts_name),
        key_match("NEW")
    );
    let set_new = format!(
        "SET NEW.{rank} = {}; SET NEW.{ver} = COALESCE(pv, 0) + 1; SET NEW.{origin} = @@server_id;",
        inherit(base, "pr")
    );
    // Trigger names are per schema: `fleetsync_bi__<table>` (hashed when too long).
    let trigger = |kind: &str| format!("{}.{}", ident(schema), ident(&trigger_name(kind, table)));
    statements.push((
        format!("create trigger BEFORE INSERT on {schema}.{table}"),
        format!(
            "CREATE OR REPLACE TRIGGER {} BEFORE INSERT ON {t} FOR EACH ROW BEGIN \
             DECLARE pr DECIMAL(65,6) DEFAULT NULL; DECLARE pv BIGINT UNSIGNED DEFAULT NULL; \
             IF {APPLIER_VARIABLE} IS NULL THEN {read_new} {set_new} END IF; END",
            trigger("bi")
        ),
    ));
    statements.push((
        format!("create trigger BEFORE UPDATE on {schema}.{table}"),
        format!(
            "CREATE OR REPLACE TRIGGER {} BEFORE UPDATE ON {t} FOR EACH ROW BEGIN \
             DECLARE pr DECIMAL(65,6) DEFAULT NULL; DECLARE pv BIGINT UNSIGNED DEFAULT NULL; \
             IF {APPLIER_VARIABLE} IS NULL THEN \
               IF {same_key} THEN SET pr = OLD.{rank}; SET pv = OLD.{ver}; \
               ELSE {tombstone_old}; {read_new} END IF; \
               {set_new} \
             END IF; END",
            trigger("bu")
        ),
    ));
    statements.push((
        format!("create trigger AFTER DELETE on {schema}.{table}"),
        format!(
            "CREATE OR REPLACE TRIGGER {} AFTER DELETE ON {t} FOR EACH ROW BEGIN \
             IF {APPLIER_VARIABLE} IS NULL THEN {tombstone_old}; END IF; END",
            trigger("ad")
        ),
    ));
    TablePlan {
        schema: schema.to_string(),
        table: table.to_string(),
        tombstones: format!("fleetsync.{ts_name}"),
        statements,
    }
}

/// The highest rank that the member behind `conn` records for the tombstone table `tombstones`
/// (a name from [`tombstone_table`]): its tombstones and its GC floor; `None` when it records
/// neither (or only NULL-ranked ones, which rank as no predecessor).
pub async fn highest_recorded(
    conn: &mut Conn,
    server: &str,
    tombstones: &str,
) -> Result<Option<Rank>, VersionsError> {
    let ts = tombstones.replace('`', "``");
    let order =
        "ORDER BY `fleetsync_rank` DESC, `fleetsync_version` DESC, `fleetsync_origin` DESC LIMIT 1";
    let mut best: Option<Rank> = None;
    for sql in [
        format!(
            "SELECT CAST(`fleetsync_rank` AS CHAR), `fleetsync_version`, `fleetsync_origin` \
             FROM `fleetsync`.`{ts}` {order}"
        ),
        format!(
            "SELECT CAST(`fleetsync_rank` AS CHAR), `fleetsync_version`, `fleetsync_origin` \
             FROM `fleetsync`.`{FLOOR_TABLE}` WHERE `tombstones` = {} {order}",
            quote(tombstones)
        ),
    ] {
        let row: Option<(Option<String>, u64, u32)> =
            conn.query_first(sql).await.map_err(sql_err(
                server,
                format!("reading the highest rank of fleetsync.{tombstones}"),
            ))?;
        let Some((primary, version, origin)) = row else {
            continue;
        };
        let primary = match primary {
            Some(p) => Some(parse_decimal(&p).ok_or_else(|| VersionsError::Refused {
                server: server.to_string(),
                reason: format!("bad rank {p:?} in fleetsync.{tombstones}"),
            })?),
            None => None,
        };
        best = best.max(Some(Rank {
            primary,
            version,
            origin,
        }));
    }
    Ok(best)
}

/// Raises the GC floor of `tombstones` on the member behind `conn` to `rank` (kept when it is
/// already at or above it). For a member joining an installed group: the other members'
/// tombstones and purges are not copied to it, and its own writes to a key it holds no record
/// of take the floor as predecessor, so with the others' highest rank as its floor they rank
/// above every delete it never saw. Written with `skip_replication=1` (each member's own).
pub async fn raise_floor(
    conn: &mut Conn,
    server: &str,
    tombstones: &str,
    rank: Rank,
) -> Result<(), VersionsError> {
    let mine = highest_recorded(conn, server, tombstones).await?;
    if mine.is_some_and(|m| m >= rank) {
        return Ok(());
    }
    let primary = rank.primary.map_or("NULL".to_string(), format_decimal);
    // Only ever raised: GC (in another process, over Kafka) may have raised it meanwhile.
    // A NULL primary ranks lowest: below the sentinel no encoded primary reaches (~1e32).
    let lowest = "-10000000000000000000000000000000000000000";
    conn.query_drop(format!(
        "SET SESSION skip_replication=1; UPDATE `fleetsync`.`{FLOOR_TABLE}` SET `fleetsync_rank` = {primary}, \
         `fleetsync_version` = {v}, `fleetsync_origin` = {o}, `raised_at` = NOW(6) WHERE `tombstones` = {t} \
         AND (COALESCE(`fleetsync_rank`, {lowest}), COALESCE(`fleetsync_version`, 0), COALESCE(`fleetsync_origin`, 0)) \
         < (COALESCE({primary}, {lowest}), {v}, {o})",
        v = rank.version,
        o = rank.origin,
        t = quote(tombstones)
    ))
    .await
    .map_err(sql_err(server, format!("raising the GC floor of fleetsync.{tombstones}")))
}

/// Runs `plans` of `group` on `server` (idempotent; see the module docs).
pub async fn install(
    conn: &mut Conn,
    server: &str,
    group: &str,
    plans: &[TablePlan],
) -> Result<(), VersionsError> {
    conn.query_drop("SET SESSION skip_replication=1; CREATE DATABASE IF NOT EXISTS `fleetsync`")
        .await
        .map_err(sql_err(server, "preparing the install session".into()))?;
    conn.query_drop(CREATE_FLOOR_TABLE)
        .await
        .map_err(sql_err(server, "creating fleetsync.ts_floor".into()))?;
    conn.query_drop(crate::gc::CREATE_EVICTED_TABLE)
        .await
        .map_err(sql_err(server, "creating fleetsync.gc_evicted".into()))?;
    for p in plans {
        let ts_name = p.tombstones.trim_start_matches("fleetsync.");
        conn.query_drop(format!(
            "INSERT INTO `fleetsync`.`{FLOOR_TABLE}` (`tombstones`, `sync_name`) VALUES ({}, {}) \
             ON DUPLICATE KEY UPDATE `sync_name` = VALUES(`sync_name`)",
            quote(ts_name),
            quote(group)
        ))
        .await
        .map_err(sql_err(
            server,
            format!("creating the GC floor of {}", p.tombstones),
        ))?;
        // A trigger already there with the same body is kept: `CREATE OR REPLACE` drops it
        // first, and a local write in between would get no version.
        let existing: Vec<String> = conn
            .exec(
                "SELECT ACTION_STATEMENT FROM information_schema.TRIGGERS                  WHERE EVENT_OBJECT_SCHEMA = ? AND EVENT_OBJECT_TABLE = ?",
                (&p.schema, &p.table),
            )
            .await
            .map_err(sql_err(server, format!("reading the triggers of {}.{}", p.schema, p.table)))?;
        for (what, sql) in &p.statements {
            let body = sql.split_once(" FOR EACH ROW ").map(|(_, b)| b);
            if body.is_some_and(|b| existing.iter().any(|e| e == b)) {
                continue;
            }
            if let Err(e) = conn.query_drop(sql.as_str()).await {
                if let mysql_async::Error::Server(se) = &e {
                    if DENIED_CODES.contains(&se.code) {
                        return Err(VersionsError::Refused {
                            server: server.to_string(),
                            reason: format!(
                                "cannot {what}: {} (a bidirectional group needs ALTER and TRIGGER on \
                                 {schema}.* and CREATE on fleetsync.*, e.g. GRANT ALTER, TRIGGER ON `{schema}`.* TO ...)",
                                se.message,
                                schema = p.schema
                            ),
                        });
                    }
                }
                return Err(sql_err(server, what.clone())(e));
            }
        }
    }
    Ok(())
}

/// Counter: group tables whose row versions, tombstone table and triggers were installed on a
/// member while running (a table created by DDL after the start). Labels `sync` (the group),
/// `server`.
pub const METRIC_LIVE_INSTALLS: &str = "fleetsync_group_live_installs_total";

/// Serializes [`install_live`] in this process: the appliers of one origin (one per other
/// member) all install on it, and two installs racing past the trigger check would both
/// `CREATE OR REPLACE` (a drop and a create: a local write in between gets no version).
static LIVE_INSTALL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Installs the row versions of group `group` for `schema`.`table` on `server` (its member
/// name), with the same plan and install as at start, when the table is there and lacks the
/// version columns or its triggers: a table created by DDL while `fleetsync run` runs.
/// `Ok(true)` when it installed; `Ok(false)` when there was nothing to do (no such table,
/// already installed, `conflict = "none"`). Refuses what [`plan_member`] refuses (a keyless
/// table, ...): the group's pipelines then keep refusing the table's rows.
pub async fn install_live(
    opts: &mysql_async::Opts,
    server: &str,
    group: &str,
    schema: &str,
    table: &str,
    policy: &ConflictPolicy,
) -> Result<bool, VersionsError> {
    if policy.table(schema, table).strategy == ConflictStrategy::None {
        return Ok(false);
    }
    let _one = LIVE_INSTALL.lock().await;
    let mut conn = Conn::new(opts.clone())
        .await
        .map_err(sql_err(server, "connecting".into()))?;
    let result = install_live_on(&mut conn, server, group, schema, table, policy).await;
    let _ = conn.disconnect().await;
    let done = result?;
    if done {
        metrics::counter!(METRIC_LIVE_INSTALLS, "sync" => group.to_string(), "server" => server.to_string())
            .increment(1);
        tracing::info!(
            group,
            server,
            table = %format!("{schema}.{table}"),
            "row versions, tombstones and triggers installed on a table created while running"
        );
    }
    Ok(done)
}

/// The named lock (`GET_LOCK`) that serializes live installs on a member across processes.
const LIVE_LOCK: &str = "fleetsync.versions_install";
/// How long a live install waits for another one on the same member: an install takes well
/// under a second; after this it goes on anyway (the trigger check still keeps most races safe).
const LIVE_LOCK_WAIT_SECS: u32 = 30;

async fn install_live_on(
    conn: &mut Conn,
    server: &str,
    group: &str,
    schema: &str,
    table: &str,
    policy: &ConflictPolicy,
) -> Result<bool, VersionsError> {
    // Another process (a coordinator of a coordinator group owning another pair from this
    // member) may install the same table now: one at a time per member.
    let locked: Option<Option<u8>> = conn
        .query_first(format!(
            "SELECT GET_LOCK({}, {LIVE_LOCK_WAIT_SECS})",
            quote(LIVE_LOCK)
        ))
        .await
        .map_err(sql_err(server, "taking the install lock".into()))?;
    if locked.flatten() != Some(1) {
        tracing::warn!(
            server,
            "the install lock was not granted in time: installing without it"
        );
    }
    let found: Option<(u64, u64)> = conn
        .exec_first(
            "SELECT (SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? \
             AND TABLE_NAME = ? AND COLUMN_NAME = ?), (SELECT COUNT(*) FROM information_schema.TRIGGERS \
             WHERE EVENT_OBJECT_SCHEMA = ? AND EVENT_OBJECT_TABLE = ? AND TRIGGER_NAME LIKE 'fleetsync\\_%')",
            (schema, table, RANK_COLUMN, schema, table),
        )
        .await
        .map_err(sql_err(server, format!("reading the version columns of {schema}.{table}")))?;
    if found.is_some_and(|(cols, triggers)| cols == 1 && triggers >= 3) {
        return Ok(false);
    }
    let list = [(schema.to_string(), table.to_string())];
    let plans = plan_member(conn, server, server, &list, policy).await?;
    if plans.is_empty() {
        return Ok(false);
    }
    install(conn, server, group, &plans).await?;
    Ok(true)
}
