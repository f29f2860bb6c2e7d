//! Where a versioned queue's history lives on a server ([`Store`]): fleetsync's
//! `fleetsync.schema_migrations` (rows of kind `versioned`/`baseline`, one per run of a file,
//! the latest per version counts) or TrinityCore's own `updates` table in the database the
//! files run in (one row per file name: hash, state `RELEASED`, timestamp, speed in ms), so
//! TrinityCore's updater agrees with what fleetsync applied and vice versa.
//!
//! TrinityCore's table has no failure state: a failed file is reported, not recorded there.

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use super::history;
use super::versioned::{HistoryMode, MigrationFile, Recorded, RecordedStatus, Version};

/// A history read or write failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {0} has no `updates` table (not a TrinityCore database? --history trinitycore needs it)")]
    NoUpdatesTable(String),
    #[error("{what}: {source}")]
    Sql {
        what: &'static str,
        source: mysql_async::Error,
    },
}

fn sql(what: &'static str) -> impl FnOnce(mysql_async::Error) -> StoreError {
    move |source| StoreError::Sql { what, source }
}

/// version, name, checksum, status, error, kind.
type VersionedRow = (
    Option<String>,
    String,
    String,
    String,
    Option<String>,
    String,
);

/// The history of one queue on one server.
#[derive(Debug, Clone)]
pub enum Store {
    /// `fleetsync.schema_migrations`, rows of this scope (the database, or `*`).
    Fleetsync { scope: String },
    /// `<database>.updates`.
    TrinityCore { database: String },
}

fn q(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// The name used in the name label of the `baseline` row.
pub const BASELINE_NAME: &str = "<< baseline >>";

impl Store {
    pub fn mode(&self) -> HistoryMode {
        match self {
            Store::Fleetsync { .. } => HistoryMode::Fleetsync,
            Store::TrinityCore { .. } => HistoryMode::TrinityCore,
        }
    }

    /// Takes the server's lock for this queue (`GET_LOCK`, held until the connection
    /// closes), so two `up`/`undo` runs never apply the same file at once. `false`: another
    /// session holds it.
    pub async fn lock(&self, conn: &mut Conn) -> Result<bool, StoreError> {
        let key = match self {
            Store::Fleetsync { scope } => format!("fleetsync_migrate:{scope}"),
            Store::TrinityCore { database } => format!("fleetsync_migrate_tc:{database}"),
        };
        // Lock names are at most 64 characters.
        let key: String = key.chars().take(64).collect();
        let got: Option<Option<i64>> = conn
            .exec_first("SELECT GET_LOCK(?, 0)", (key,))
            .await
            .map_err(sql("taking the migration lock"))?;
        Ok(got.flatten() == Some(1))
    }

    /// Makes the history writable: creates/extends fleetsync's table, or checks that the
    /// `updates` table exists.
    pub async fn prepare(&self, conn: &mut Conn) -> Result<(), StoreError> {
        match self {
            Store::Fleetsync { .. } => history::ensure_table(conn)
                .await
                .map_err(sql("creating the history table")),
            Store::TrinityCore { database } => {
                let found: Option<u8> = conn
                    .exec_first(
                        "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? \
                         AND TABLE_NAME = 'updates'",
                        (database,),
                    )
                    .await
                    .map_err(sql("looking for the updates table"))?;
                found
                    .map(|_| ())
                    .ok_or_else(|| StoreError::NoUpdatesTable(database.clone()))
            }
        }
    }

    /// The recorded rows, the latest per version. No fleetsync table yet: none.
    pub async fn recorded(&self, conn: &mut Conn) -> Result<Vec<Recorded>, StoreError> {
        match self {
            Store::Fleetsync { scope } => {
                let rows: Vec<VersionedRow> = match conn
                    .exec(
                        "SELECT version, name, checksum, status, error, kind \
                             FROM fleetsync.schema_migrations WHERE scope = ? \
                             AND kind IN ('versioned', 'baseline', 'via-sync') ORDER BY id",
                        (scope,),
                    )
                    .await
                {
                    Ok(r) => r,
                    // No database, no table, or a table from before `kind`: no rows.
                    Err(mysql_async::Error::Server(e))
                        if e.code == 1146 || e.code == 1049 || e.code == 1054 =>
                    {
                        Vec::new()
                    }
                    Err(e) => return Err(sql("reading the migration history")(e)),
                };
                let mut out: Vec<Recorded> = Vec::new();
                for (version, name, checksum, status, error, kind) in rows {
                    let Some(version) =
                        version.and_then(|v| Version::parse(&v, HistoryMode::Fleetsync).ok())
                    else {
                        continue;
                    };
                    let status = match (kind.as_str(), status.as_str()) {
                        ("baseline", "applied") => RecordedStatus::Baseline,
                        ("baseline", _) => continue,
                        (_, "applied") => RecordedStatus::Applied,
                        (_, "failed") => RecordedStatus::Failed,
                        (_, "running") => RecordedStatus::Failed,
                        _ => RecordedStatus::RolledBack,
                    };
                    let error = match (status, error) {
                        (RecordedStatus::Failed, None) => Some(
                            "interrupted: fleetsync stopped while applying it (status running); the file may be half-applied".into(),
                        ),
                        (_, e) => e,
                    };
                    let r = Recorded {
                        version,
                        name,
                        checksum,
                        status,
                        error,
                    };
                    let baseline = r.status == RecordedStatus::Baseline;
                    out.retain(|o| {
                        o.version != r.version || (o.status == RecordedStatus::Baseline) != baseline
                    });
                    out.push(r);
                }
                Ok(out)
            }
            Store::TrinityCore { database } => {
                self.prepare(conn).await?;
                let rows: Vec<(String, Option<String>)> = conn
                    .query(format!("SELECT name, hash FROM {}.updates", q(database)))
                    .await
                    .map_err(sql("reading the updates table"))?;
                Ok(rows
                    .into_iter()
                    .filter_map(|(name, hash)| {
                        Some(Recorded {
                            version: Version::parse(&name, HistoryMode::TrinityCore).ok()?,
                            name,
                            checksum: hash.unwrap_or_default(),
                            status: RecordedStatus::Applied,
                            error: None,
                        })
                    })
                    .collect())
            }
        }
    }

    /// Before a file runs: a `running` row (fleetsync); its id.
    pub async fn start(
        &self,
        conn: &mut Conn,
        file: &MigrationFile,
        applied_by: &str,
    ) -> Result<Option<u64>, StoreError> {
        let Store::Fleetsync { scope } = self else {
            return Ok(None);
        };
        conn.exec_drop(
            "INSERT INTO fleetsync.schema_migrations (scope, name, checksum, before_fingerprint, \
             after_fingerprint, up_steps, down_steps, status, version, kind, applied_by) \
             VALUES (?, ?, ?, '', '', '', '', 'running', ?, 'versioned', ?)",
            (
                scope,
                &file.file_name,
                &file.checksum,
                file.version.to_string(),
                applied_by,
            ),
        )
        .await
        .map_err(sql("recording the migration"))?;
        Ok(conn.last_insert_id())
    }

    /// After a file ran: `applied` (fleetsync) or its `updates` row (TrinityCore).
    pub async fn applied(
        &self,
        conn: &mut Conn,
        id: Option<u64>,
        file: &MigrationFile,
        duration_ms: u64,
    ) -> Result<(), StoreError> {
        match self {
            Store::Fleetsync { .. } => conn
                .exec_drop(
                    "UPDATE fleetsync.schema_migrations SET status = 'applied', error = NULL, \
                     duration_ms = ? WHERE id = ?",
                    (duration_ms, id),
                )
                .await
                .map_err(sql("recording the migration as applied")),
            Store::TrinityCore { database } => conn
                .exec_drop(
                    format!(
                        "INSERT INTO {}.updates (name, hash, state, speed) VALUES (?, ?, 'RELEASED', ?) \
                         ON DUPLICATE KEY UPDATE hash = VALUES(hash), state = 'RELEASED', \
                         speed = VALUES(speed), timestamp = CURRENT_TIMESTAMP",
                        q(database)
                    ),
                    (&file.file_name, &file.checksum, duration_ms.min(u64::from(u32::MAX))),
                )
                .await
                .map_err(sql("recording the update in the updates table")),
        }
    }

    /// A file that reached this server through a sync (it ran at `origin`): fleetsync records
    /// an `applied` row of kind `via-sync` whose `applied_by` names the sync and the origin;
    /// TrinityCore mode writes the `updates` row unless the sync carries that table (then the
    /// origin's row arrived with the rows: `carried_history`).
    pub async fn via_sync(
        &self,
        conn: &mut Conn,
        file: &MigrationFile,
        note: &str,
        carried_history: bool,
    ) -> Result<(), StoreError> {
        match self {
            Store::Fleetsync { scope } => conn
                .exec_drop(
                    "INSERT INTO fleetsync.schema_migrations (scope, name, checksum, \
                     before_fingerprint, after_fingerprint, up_steps, down_steps, status, version, \
                     kind, duration_ms, applied_by) \
                     VALUES (?, ?, ?, '', '', '', '', 'applied', ?, 'via-sync', 0, ?)",
                    (
                        scope,
                        &file.file_name,
                        &file.checksum,
                        file.version.to_string(),
                        note,
                    ),
                )
                .await
                .map_err(sql("recording the migration as received through the sync")),
            Store::TrinityCore { .. } if carried_history => Ok(()),
            Store::TrinityCore { .. } => self.applied(conn, None, file, 0).await,
        }
    }

    /// After a file failed: `failed` with the error (fleetsync; TrinityCore keeps nothing).
    pub async fn failed(
        &self,
        conn: &mut Conn,
        id: Option<u64>,
        error: &str,
        duration_ms: u64,
    ) -> Result<(), StoreError> {
        if !matches!(self, Store::Fleetsync { .. }) {
            return Ok(());
        }
        conn.exec_drop(
            "UPDATE fleetsync.schema_migrations SET status = 'failed', error = ?, duration_ms = ? \
             WHERE id = ?",
            (error, duration_ms, id),
        )
        .await
        .map_err(sql("recording the failure"))
    }

    /// After a file's undo ran: its applied row becomes `rolled_back`.
    pub async fn undone(&self, conn: &mut Conn, file: &MigrationFile) -> Result<(), StoreError> {
        let Store::Fleetsync { scope } = self else {
            return Ok(());
        };
        conn.exec_drop(
            "UPDATE fleetsync.schema_migrations SET status = 'rolled_back', rolled_back_at = NOW() \
             WHERE scope = ? AND kind IN ('versioned', 'via-sync') AND version = ? AND status = 'applied'",
            (scope, file.version.to_string()),
        )
        .await
        .map_err(sql("recording the undo"))
    }

    /// An undo that reached this server through a sync (the U file ran once, at the origin
    /// `note` names): the applied row becomes `rolled_back`, as after a direct undo, and a row
    /// of kind `via-sync`, status `rolled_back`, whose `applied_by` is `note`, records how the
    /// undo arrived. One transaction: both or neither.
    pub async fn undone_via_sync(
        &self,
        conn: &mut Conn,
        file: &MigrationFile,
        note: &str,
    ) -> Result<(), StoreError> {
        let Store::Fleetsync { scope } = self else {
            return Ok(());
        };
        let what = "recording the undo received through the sync";
        let mut tx = conn
            .start_transaction(mysql_async::TxOpts::default())
            .await
            .map_err(sql(what))?;
        tx.exec_drop(
            "UPDATE fleetsync.schema_migrations SET status = 'rolled_back', rolled_back_at = NOW() \
             WHERE scope = ? AND kind IN ('versioned', 'via-sync') AND version = ? AND status = 'applied'",
            (scope, file.version.to_string()),
        )
        .await
        .map_err(sql(what))?;
        tx.exec_drop(
            "INSERT INTO fleetsync.schema_migrations (scope, name, checksum, before_fingerprint, \
             after_fingerprint, up_steps, down_steps, status, version, kind, duration_ms, \
             applied_by, rolled_back_at) \
             VALUES (?, ?, ?, '', '', '', '', 'rolled_back', ?, 'via-sync', 0, ?, NOW())",
            (
                scope,
                &file.file_name,
                &file.checksum,
                file.version.to_string(),
                note,
            ),
        )
        .await
        .map_err(sql(what))?;
        tx.commit().await.map_err(sql(what))
    }

    /// `repair`: the applied row of `file` takes the file's current checksum.
    pub async fn repair(&self, conn: &mut Conn, file: &MigrationFile) -> Result<(), StoreError> {
        match self {
            Store::Fleetsync { scope } => conn
                .exec_drop(
                    "UPDATE fleetsync.schema_migrations SET checksum = ? WHERE scope = ? \
                     AND kind IN ('versioned', 'via-sync') AND version = ? AND status = 'applied'",
                    (&file.checksum, scope, file.version.to_string()),
                )
                .await
                .map_err(sql("repairing the checksum")),
            Store::TrinityCore { database } => conn
                .exec_drop(
                    format!("UPDATE {}.updates SET hash = ? WHERE name = ?", q(database)),
                    (&file.checksum, &file.file_name),
                )
                .await
                .map_err(sql("repairing the hash")),
        }
    }

    /// `baseline VERSION`: fleetsync records one `baseline` row; TrinityCore records each
    /// file up to it (`files`) as applied in 0 ms, as its updater does for a fresh import.
    pub async fn baseline(
        &self,
        conn: &mut Conn,
        version: &Version,
        files: &[&MigrationFile],
        applied_by: &str,
    ) -> Result<(), StoreError> {
        match self {
            Store::Fleetsync { scope } => conn
                .exec_drop(
                    "INSERT INTO fleetsync.schema_migrations (scope, name, checksum, \
                     before_fingerprint, after_fingerprint, up_steps, down_steps, status, version, \
                     kind, duration_ms, applied_by) \
                     VALUES (?, ?, '', '', '', '', '', 'applied', ?, 'baseline', 0, ?)",
                    (scope, BASELINE_NAME, version.to_string(), applied_by),
                )
                .await
                .map_err(sql("recording the baseline")),
            Store::TrinityCore { .. } => {
                for f in files {
                    self.applied(conn, None, f, 0).await?;
                }
                Ok(())
            }
        }
    }
}
