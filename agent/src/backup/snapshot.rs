//! One consistent read view over N connections, without FLUSH TABLES WITH READ LOCK when the
//! server allows.
//!
//! Each connection runs `START TRANSACTION WITH CONSISTENT SNAPSHOT` and then reads
//! `binlog_snapshot_file/position`. MariaDB takes the read view and that binlog coordinate
//! atomically, so connections reporting the same coordinate saw the same committed
//! transactions: their views are identical. When they differ (a commit landed in between),
//! all are rolled back and retried; after [`ATTEMPTS`] the snapshot is taken under a brief
//! FLUSH TABLES WITH READ LOCK (needs RELOAD), or fails with what to do.
//!
//! Caveats (documented in docs/backup.md): a transaction that is not written to the binlog
//! (`sql_log_bin=0`) could commit between two connections' snapshots unseen by this check;
//! non-transactional tables (MyISAM, Aria, ...) are outside any read view, so [`lock_tables`]
//! holds `LOCK TABLES ... READ` on them from before the snapshot until they are dumped.

use std::time::Duration;

use fleetsync_proto::Position;
use futures_util::future::{join_all, try_join_all};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts};

use super::BackupError;
use crate::source::connect_error;
use crate::SourceError;

/// Lock-free attempts before falling back to FLUSH TABLES WITH READ LOCK.
pub const ATTEMPTS: usize = 6;

/// N connections inside transactions that share one read view.
pub struct Snapshot {
    pub conns: Vec<Conn>,
    pub position: Position,
    /// `consistent-snapshot` or `flush-tables-with-read-lock`.
    pub consistency: &'static str,
}

fn mysql_err<'a>(server: &'a str, ctx: &str) -> impl Fn(mysql_async::Error) -> BackupError + 'a {
    let ctx = ctx.to_string();
    move |e| BackupError::Source(SourceError::from_mysql(server, &ctx, e))
}

pub async fn connect(opts: &Opts, server: &str) -> Result<Conn, BackupError> {
    Conn::new(opts.clone())
        .await
        .map_err(|e| BackupError::Source(connect_error(server, e)))
}

/// Opens `n` connections sharing one read view.
pub async fn open(opts: &Opts, server: &str, n: usize) -> Result<Snapshot, BackupError> {
    let mut conns = try_join_all((0..n.max(1)).map(|_| connect(opts, server))).await?;
    for c in &mut conns {
        c.query_drop("SET NAMES binary, time_zone = '+00:00'")
            .await
            .map_err(mysql_err(server, "preparing a backup session"))?;
        c.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .await
            .map_err(mysql_err(server, "preparing a backup session"))?;
    }
    for attempt in 0..ATTEMPTS {
        if let Some(position) = start_all(&mut conns, server).await? {
            return Ok(Snapshot {
                conns,
                position,
                consistency: "consistent-snapshot",
            });
        }
        for c in &mut conns {
            c.query_drop("ROLLBACK")
                .await
                .map_err(mysql_err(server, "retrying the snapshot"))?;
        }
        tracing::debug!(
            server,
            attempt,
            "backup connections saw different binlog positions; retrying"
        );
        tokio::time::sleep(Duration::from_millis(20 * (attempt as u64 + 1))).await;
    }
    let position = under_global_lock(opts, server, &mut conns).await?;
    Ok(Snapshot {
        conns,
        position,
        consistency: "flush-tables-with-read-lock",
    })
}

/// Starts the snapshot on every connection at once; the shared position if they agree.
async fn start_all(conns: &mut [Conn], server: &str) -> Result<Option<Position>, BackupError> {
    let started = join_all(
        conns
            .iter_mut()
            .map(|c| c.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT")),
    )
    .await;
    for r in started {
        r.map_err(mysql_err(server, "starting the consistent snapshot"))?;
    }
    let mut first: Option<Position> = None;
    for c in conns.iter_mut() {
        let p = snapshot_position(c, server).await?;
        match &first {
            None => first = Some(p),
            Some(f) if f.binlog == p.binlog => {}
            Some(_) => return Ok(None),
        }
    }
    Ok(first)
}

async fn under_global_lock(
    opts: &Opts,
    server: &str,
    conns: &mut [Conn],
) -> Result<Position, BackupError> {
    let mut lock = connect(opts, server).await?;
    if let Err(e) = lock.query_drop("FLUSH TABLES WITH READ LOCK").await {
        return Err(BackupError::Refused(format!(
            "server {server}: the {} backup connections kept seeing different binlog positions (the server is busy) and FLUSH TABLES WITH READ LOCK failed ({e}); grant RELOAD to the backup user, retry when the server is quieter, or set [backup] threads = 1",
            conns.len()
        )));
    }
    let result = start_all(conns, server).await;
    let unlocked = lock.query_drop("UNLOCK TABLES").await;
    let _ = lock.disconnect().await;
    unlocked.map_err(mysql_err(server, "UNLOCK TABLES"))?;
    match result? {
        Some(p) => Ok(p),
        None => Err(BackupError::Refused(format!(
            "server {server}: backup connections saw different binlog positions even under FLUSH TABLES WITH READ LOCK"
        ))),
    }
}

/// The binlog coordinate (and GTID position) of this connection's snapshot (the sync's
/// snapshot reads it the same way).
pub async fn snapshot_position(conn: &mut Conn, server: &str) -> Result<Position, BackupError> {
    Ok(crate::source::snapshot::snapshot_position(conn, server).await?)
}

/// Holds `LOCK TABLES ... READ` on `tables` (database, table) on a connection of its own, so
/// non-transactional tables keep the content they had at the snapshot until they are dumped.
/// `Ok(None)` (with a warning) when the user lacks the LOCK TABLES privilege.
pub async fn lock_tables(
    opts: &Opts,
    server: &str,
    tables: &[(String, String)],
) -> Result<Option<Conn>, BackupError> {
    if tables.is_empty() {
        return Ok(None);
    }
    let mut conn = connect(opts, server).await?;
    let mut sql = b"LOCK TABLES ".to_vec();
    for (i, (d, t)) in tables.iter().enumerate() {
        if i > 0 {
            sql.extend_from_slice(b", ");
        }
        fleetsync_proto::sql::push_table(&mut sql, d, t);
        sql.extend_from_slice(b" READ");
    }
    match conn.query_drop(sql.as_slice()).await {
        Ok(()) => Ok(Some(conn)),
        Err(mysql_async::Error::Server(e)) if matches!(e.code, 1044 | 1142 | 1227) => {
            tracing::warn!(server, error = %e.message, "cannot lock the non-transactional tables (grant LOCK TABLES): they are read without a lock and may not match the snapshot position");
            Ok(None)
        }
        Err(e) => Err(mysql_err(server, "locking non-transactional tables")(e)),
    }
}
