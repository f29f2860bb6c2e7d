//! Progress stored on the target, in the `fleetsync` database, so that it commits in the same
//! transaction as the rows it covers.
//!
//! * `fleetsync.sync_state`: one row per (sync, source): the source position after the last
//!   applied transaction (as [`Position`]'s `Display`), the snapshot state, the source commit
//!   time of that transaction and running counts.
//! * `fleetsync.paused_tables`: tables of a sync whose changes are skipped on this target,
//!   with the reason. Names are the **source** schema and table. Deleting a row un-pauses the
//!   table at the next (re)connect; the operator must first bring the table in line (for
//!   example by re-running its snapshot).
//!
//! Both tables are InnoDB: the state row must commit atomically with the rows it covers.

use std::collections::BTreeMap;

use fleetsync_proto::Position;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};

use super::sql::{push_int_literal, push_quoted};
use super::{AppliedState, ApplyError, SnapshotState};

/// Longest position text the `position` column holds.
pub(crate) const MAX_POSITION_LEN: usize = 512;

/// Creates the state database and tables if missing. Idempotent.
pub(crate) const CREATE_STATE_TABLES: &str = "\
CREATE DATABASE IF NOT EXISTS `fleetsync`;
CREATE TABLE IF NOT EXISTS `fleetsync`.`sync_state` (
  `sync_name` VARCHAR(64) NOT NULL,
  `source_name` VARCHAR(64) NOT NULL,
  `position` VARCHAR(512) NOT NULL,
  `snapshot_state` VARCHAR(16) NOT NULL,
  `source_commit_ts_ms` BIGINT UNSIGNED NOT NULL DEFAULT 0,
  `rows_applied` BIGINT UNSIGNED NOT NULL DEFAULT 0,
  `txns_applied` BIGINT UNSIGNED NOT NULL DEFAULT 0,
  `updated_at` TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  `bus_offset` BIGINT NULL,
  PRIMARY KEY (`sync_name`, `source_name`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
ALTER TABLE `fleetsync`.`sync_state` ADD COLUMN IF NOT EXISTS `bus_offset` BIGINT NULL;
CREATE TABLE IF NOT EXISTS `fleetsync`.`paused_tables` (
  `sync_name` VARCHAR(64) NOT NULL,
  `schema_name` VARCHAR(64) NOT NULL,
  `table_name` VARCHAR(64) NOT NULL,
  `reason` TEXT NOT NULL,
  `since` TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  PRIMARY KEY (`sync_name`, `schema_name`, `table_name`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE IF NOT EXISTS `fleetsync`.`loop_marker` (
  `sync_name` VARCHAR(64) NOT NULL,
  `source_name` VARCHAR(64) NOT NULL,
  `transactions` BIGINT UNSIGNED NOT NULL DEFAULT 0,
  PRIMARY KEY (`sync_name`, `source_name`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";

/// Appends the marker-mode loop-prevention write (see `fleetsync_proto::record::LOOP_MARKER_TABLE`):
/// one row per (sync, source), so the table never grows.
pub(crate) fn push_loop_marker(buf: &mut Vec<u8>, sync: &str, source: &str) {
    buf.extend_from_slice(
        b"INSERT INTO `fleetsync`.`loop_marker` (`sync_name`,`source_name`,`transactions`) VALUES (",
    );
    push_quoted(buf, sync.as_bytes());
    buf.push(b',');
    push_quoted(buf, source.as_bytes());
    buf.extend_from_slice(b",1) ON DUPLICATE KEY UPDATE `transactions`=`transactions`+1");
}

/// Error codes meaning "the fleetsync database or table is not there (yet)".
const NO_STATE_CODES: &[u16] = &[
    1049, /* unknown database */
    1146, /* no such table */
];

impl SnapshotState {
    pub fn as_str(self) -> &'static str {
        match self {
            SnapshotState::Running => "running",
            SnapshotState::Done => "done",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "running" => Some(SnapshotState::Running),
            "done" => Some(SnapshotState::Done),
            _ => None,
        }
    }
}

/// A label for the server behind `conn` (host:port, never credentials), for messages of the
/// free functions that have no configured server name.
pub(crate) fn conn_label(conn: &Conn) -> String {
    let o = conn.opts();
    format!("{}:{}", o.ip_or_hostname(), o.tcp_port())
}

/// Appends the statement recording `state` as the progress of (`sync`, `source`).
pub(crate) fn push_state_upsert(
    buf: &mut Vec<u8>,
    sync: &str,
    source: &str,
    position: &str,
    state: &AppliedState,
) {
    buf.extend_from_slice(
        b"INSERT INTO `fleetsync`.`sync_state` (`sync_name`,`source_name`,`position`,\
          `snapshot_state`,`source_commit_ts_ms`,`rows_applied`,`txns_applied`,`bus_offset`,`updated_at`) VALUES (",
    );
    push_quoted(buf, sync.as_bytes());
    buf.push(b',');
    push_quoted(buf, source.as_bytes());
    buf.push(b',');
    push_quoted(buf, position.as_bytes());
    buf.push(b',');
    push_quoted(buf, state.snapshot.as_str().as_bytes());
    buf.push(b',');
    push_int_literal(buf, state.source_commit_ts_ms);
    buf.push(b',');
    push_int_literal(buf, state.rows);
    buf.push(b',');
    push_int_literal(buf, state.txns);
    buf.push(b',');
    match state.bus_offset {
        Some(o) => buf.extend_from_slice(o.to_string().as_bytes()),
        None => buf.extend_from_slice(b"NULL"),
    }
    buf.extend_from_slice(
        b",NOW(6)) ON DUPLICATE KEY UPDATE `position`=VALUES(`position`),`bus_offset`=VALUES(`bus_offset`),\
          `snapshot_state`=VALUES(`snapshot_state`),`source_commit_ts_ms`=VALUES(`source_commit_ts_ms`),\
          `rows_applied`=VALUES(`rows_applied`),`txns_applied`=VALUES(`txns_applied`),\
          `updated_at`=VALUES(`updated_at`)",
    );
}

/// Appends the statement recording (`schema`, `table`) as paused for `sync`.
pub(crate) fn push_pause(buf: &mut Vec<u8>, sync: &str, schema: &str, table: &str, reason: &str) {
    buf.extend_from_slice(
        b"INSERT INTO `fleetsync`.`paused_tables` (`sync_name`,`schema_name`,`table_name`,`reason`,`since`) VALUES (",
    );
    push_quoted(buf, sync.as_bytes());
    buf.push(b',');
    push_quoted(buf, schema.as_bytes());
    buf.push(b',');
    push_quoted(buf, table.as_bytes());
    buf.push(b',');
    push_quoted(buf, reason.as_bytes());
    buf.extend_from_slice(b",NOW(6)) ON DUPLICATE KEY UPDATE `reason`=VALUES(`reason`)");
}

fn text(row: &Row, i: usize) -> Option<String> {
    match row.get_opt::<Vec<u8>, _>(i)? {
        Ok(b) => Some(String::from_utf8_lossy(&b).into_owned()),
        Err(_) => None,
    }
}

fn number(row: &Row, i: usize) -> Option<u64> {
    row.get_opt::<u64, _>(i)?.ok()
}

/// The stored progress of (`sync`, `source`) on the server behind `conn`, or `None` when there
/// is none or the `fleetsync` database or table does not exist. For the `status` command.
pub async fn read_state(
    conn: &mut Conn,
    sync: &str,
    source: &str,
) -> Result<Option<AppliedState>, ApplyError> {
    let label = conn_label(conn);
    read_state_as(conn, &label, sync, source).await
}

pub(crate) async fn read_state_as(
    conn: &mut Conn,
    target: &str,
    sync: &str,
    source: &str,
) -> Result<Option<AppliedState>, ApplyError> {
    let mut q =
        b"SELECT `position`,`snapshot_state`,`source_commit_ts_ms`,`rows_applied`,`txns_applied`,`bus_offset` \
                  FROM `fleetsync`.`sync_state` WHERE `sync_name`="
            .to_vec();
    push_quoted(&mut q, sync.as_bytes());
    q.extend_from_slice(b" AND `source_name`=");
    push_quoted(&mut q, source.as_bytes());
    let rows: Vec<Row> = match conn.query(q).await {
        Ok(rows) => rows,
        Err(mysql_async::Error::Server(e)) if NO_STATE_CODES.contains(&e.code) => return Ok(None),
        Err(source_err) => {
            return Err(ApplyError::Sql {
                target: target.to_owned(),
                context: format!("reading the progress of sync {sync:?} from source {source:?}"),
                source: Box::new(source_err),
            })
        }
    };
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    let bad = |reason: String| ApplyError::State {
        target: target.to_owned(),
        sync: sync.to_owned(),
        source_name: source.to_owned(),
        reason,
    };
    let position_text = text(row, 0).ok_or_else(|| bad("position is not text".into()))?;
    let position = position_text
        .parse::<Position>()
        .map_err(|e| bad(format!("stored position does not parse: {e}")))?;
    let snapshot_text = text(row, 1).unwrap_or_default();
    let snapshot = SnapshotState::parse(&snapshot_text)
        .ok_or_else(|| bad(format!("unknown snapshot state {snapshot_text:?}")))?;
    let num =
        |i: usize, what: &str| number(row, i).ok_or_else(|| bad(format!("{what} is not a number")));
    Ok(Some(AppliedState {
        position,
        snapshot,
        source_commit_ts_ms: num(2, "source_commit_ts_ms")?,
        rows: num(3, "rows_applied")?,
        txns: num(4, "txns_applied")?,
        bus_offset: row
            .get_opt::<Option<i64>, _>(5)
            .and_then(Result::ok)
            .flatten(),
    }))
}

/// Paused tables of `sync`: (source schema, source table) -> reason.
pub(crate) async fn read_paused(
    conn: &mut Conn,
    sync: &str,
) -> Result<BTreeMap<(String, String), String>, mysql_async::Error> {
    let mut q = b"SELECT `schema_name`,`table_name`,`reason` FROM `fleetsync`.`paused_tables` WHERE `sync_name`="
        .to_vec();
    push_quoted(&mut q, sync.as_bytes());
    let rows: Vec<Row> = conn.query(q).await?;
    Ok(rows
        .iter()
        .filter_map(|r| Some(((text(r, 0)?, text(r, 1)?), text(r, 2).unwrap_or_default())))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_statement() {
        let state = AppliedState {
            position: Position::new("binlog.000001", 4),
            snapshot: SnapshotState::Done,
            source_commit_ts_ms: 7,
            rows: 8,
            txns: 9,
            bus_offset: None,
        };
        let mut buf = Vec::new();
        push_state_upsert(&mut buf, "s'1", "src", "binlog.000001:4@0-1-2", &state);
        let s = String::from_utf8_lossy(&buf);
        assert!(
            s.contains(r"VALUES ('s\'1','src','binlog.000001:4@0-1-2','done',7,8,9,NULL,NOW(6))"),
            "{s}"
        );
        buf.clear();
        push_pause(&mut buf, "s", "db", "t", "why");
        assert!(String::from_utf8_lossy(&buf).contains("('s','db','t','why',NOW(6))"));
    }

    #[test]
    fn snapshot_state_text() {
        for s in [SnapshotState::Running, SnapshotState::Done] {
            assert_eq!(SnapshotState::parse(s.as_str()), Some(s));
        }
        assert_eq!(SnapshotState::parse("x"), None);
    }
}
