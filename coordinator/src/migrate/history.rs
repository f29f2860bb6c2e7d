//! The migration history on a target server: `fleetsync.schema_migrations`, one row per
//! applied migration. `scope` is the database the migration was applied to (`*` for a
//! whole-server migration). A row's down steps are kept in it, so `migrate rollback` needs no
//! files. Fingerprints ([`super::fingerprint`]) of the schema before and after let apply and
//! rollback refuse when the schema is not what they expect.
//!
//! Generated and versioned migrations share the table: `kind` is `generated` (`migrate
//! apply`), `versioned` (a file of a versioned queue, `version` set, checksum = SHA-256 of the
//! file), `baseline` (`migrate baseline VERSION`: everything up to `version` counts as
//! applied) or `via-sync` (a versioned file that ran at another server and reached this one
//! through a sync; `applied_by` names the sync and that origin). `duration_ms` and `applied_by` (`user@host`) say how long and who. These four
//! columns were added after the first release: [`ensure_table`] adds them to an older table
//! (idempotent; existing rows read as `generated`).
//!
//! Status: `running` (being applied; a crash leaves it so), `applied`, `failed` (a step
//! failed: the schema may be half-way, see `error`), `rolled_back`, `rollback_failed`.

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use serde::Serialize;

/// The history table.
pub const HISTORY_TABLE: &str = "fleetsync.schema_migrations";

const CREATE: &str = "CREATE TABLE IF NOT EXISTS fleetsync.schema_migrations (
  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  scope VARCHAR(255) NOT NULL,
  name VARCHAR(255) NOT NULL,
  checksum VARCHAR(64) NOT NULL,
  before_fingerprint VARCHAR(32) NOT NULL,
  after_fingerprint VARCHAR(32) NOT NULL,
  up_steps LONGTEXT NOT NULL,
  down_steps LONGTEXT NOT NULL,
  status VARCHAR(32) NOT NULL,
  error TEXT NULL,
  applied_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  rolled_back_at DATETIME NULL,
  KEY scope_status (scope, status)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";

/// One row, as `migrate status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryRow {
    pub id: u64,
    pub scope: String,
    pub name: String,
    pub checksum: String,
    pub before_fingerprint: String,
    pub after_fingerprint: String,
    pub status: String,
    pub error: Option<String>,
    pub applied_at: String,
    pub rolled_back_at: Option<String>,
}

/// Creates the `fleetsync` database and the table when missing.
pub async fn ensure_table(conn: &mut Conn) -> Result<(), mysql_async::Error> {
    conn.query_drop("CREATE DATABASE IF NOT EXISTS fleetsync")
        .await?;
    conn.query_drop(CREATE).await?;
    for (column, ddl) in ADDED_COLUMNS {
        let present: Option<u8> = conn
            .exec_first(
                "SELECT 1 FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'fleetsync' \
                 AND TABLE_NAME = 'schema_migrations' AND COLUMN_NAME = ?",
                (column,),
            )
            .await?;
        if present.is_none() {
            conn.query_drop(format!(
                "ALTER TABLE fleetsync.schema_migrations ADD COLUMN {ddl}"
            ))
            .await?;
        }
    }
    Ok(())
}

/// Columns added after the first release (see the module doc), checked one by one so an
/// older table is extended and a current one left alone.
const ADDED_COLUMNS: [(&str, &str); 4] = [
    ("version", "version VARCHAR(64) NULL"),
    ("kind", "kind VARCHAR(16) NOT NULL DEFAULT 'generated'"),
    ("duration_ms", "duration_ms BIGINT UNSIGNED NULL"),
    ("applied_by", "applied_by VARCHAR(255) NULL"),
];

/// A new history row with status `running`; returns its id.
#[allow(clippy::too_many_arguments)]
pub async fn insert(
    conn: &mut Conn,
    scope: &str,
    name: &str,
    checksum: &str,
    before: &str,
    after: &str,
    up_json: &str,
    down_json: &str,
) -> Result<u64, mysql_async::Error> {
    conn.exec_drop(
        "INSERT INTO fleetsync.schema_migrations (scope, name, checksum, before_fingerprint, \
         after_fingerprint, up_steps, down_steps, status) VALUES (?, ?, ?, ?, ?, ?, ?, 'running')",
        (scope, name, checksum, before, after, up_json, down_json),
    )
    .await?;
    Ok(conn.last_insert_id().unwrap_or(0))
}

/// Sets a row's status, error and (when given) after-fingerprint; `rolled_back` also sets
/// `rolled_back_at`.
pub async fn set_status(
    conn: &mut Conn,
    id: u64,
    status: &str,
    error: Option<&str>,
    after: Option<&str>,
) -> Result<(), mysql_async::Error> {
    conn.exec_drop(
        "UPDATE fleetsync.schema_migrations SET status = ?, error = ?, \
         after_fingerprint = COALESCE(?, after_fingerprint), \
         rolled_back_at = IF(? = 'rolled_back', NOW(), rolled_back_at) WHERE id = ?",
        (status, error, after, status, id),
    )
    .await
}

/// Records how long a generated migration's run took and who ran it (`applied_by`).
pub async fn set_run_info(
    conn: &mut Conn,
    id: u64,
    duration_ms: u64,
    applied_by: &str,
) -> Result<(), mysql_async::Error> {
    conn.exec_drop(
        "UPDATE fleetsync.schema_migrations SET duration_ms = ?, applied_by = ? WHERE id = ?",
        (duration_ms, applied_by, id),
    )
    .await
}

const COLUMNS: &str = "id, scope, name, checksum, before_fingerprint, after_fingerprint, status, \
                       error, CAST(applied_at AS CHAR), CAST(rolled_back_at AS CHAR)";

fn row_of(r: mysql_async::Row) -> Option<HistoryRow> {
    Some(HistoryRow {
        id: r.get(0)?,
        scope: r.get(1)?,
        name: r.get(2)?,
        checksum: r.get(3)?,
        before_fingerprint: r.get(4)?,
        after_fingerprint: r.get(5)?,
        status: r.get(6)?,
        error: r.get(7)?,
        applied_at: r.get(8)?,
        rolled_back_at: r.get(9)?,
    })
}

/// The rows of `scope` (every scope when `None`), oldest first. No table: no rows.
pub async fn list(
    conn: &mut Conn,
    scope: Option<&str>,
) -> Result<Vec<HistoryRow>, mysql_async::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM fleetsync.schema_migrations WHERE ? IS NULL OR scope = ? ORDER BY id"
    );
    match conn
        .exec::<mysql_async::Row, _, _>(sql, (scope, scope))
        .await
    {
        Ok(rows) => Ok(rows.into_iter().filter_map(row_of).collect()),
        Err(mysql_async::Error::Server(e)) if e.code == 1146 || e.code == 1049 => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// The latest `applied` generated row of `scope` and its down steps (JSON). Versioned and
/// baseline rows keep no steps (`up_steps` empty) and are left out.
pub async fn last_applied(
    conn: &mut Conn,
    scope: &str,
) -> Result<Option<(HistoryRow, String)>, mysql_async::Error> {
    let sql = format!(
        "SELECT {COLUMNS}, down_steps FROM fleetsync.schema_migrations \
         WHERE scope = ? AND status = 'applied' AND up_steps <> '' ORDER BY id DESC LIMIT 1"
    );
    let row: Option<mysql_async::Row> = match conn.exec_first(sql, (scope,)).await {
        Ok(r) => r,
        Err(mysql_async::Error::Server(e)) if e.code == 1146 || e.code == 1049 => None,
        Err(e) => return Err(e),
    };
    Ok(row.and_then(|r| {
        let down: String = r.get(10)?;
        Some((row_of(r)?, down))
    }))
}
