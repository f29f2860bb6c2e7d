//! Reading a source server: preflight checks, the initial snapshot and the binlog stream.
//!
//! Server settings this module needs (checked by [`preflight`], which refuses to start and
//! names the setting otherwise): `log_bin=ON`, `binlog_format=ROW`, `binlog_row_image=FULL`,
//! `binlog_row_metadata=FULL`; privileges `REPLICATION SLAVE` (binlog dump), `BINLOG MONITOR`
//! / `REPLICATION CLIENT` (positions) and `SELECT` on the synced tables (snapshot).

pub mod snapshot;
pub mod stream;
pub mod usable;

// Shared with the coordinator through `fleetsync-mysql`; re-exported at their old paths.
pub use fleetsync_mysql::{decode, schema, tls};

use fleetsync_config::TableFilter;
use fleetsync_proto::{BinlogPosition, GtidSet, Origin, Position};
use mysql_async::prelude::Queryable;

use crate::SourceError;

/// Everything needed to read one source for one subscription.
#[derive(Clone)]
pub struct SourceSpec {
    /// `[[servers]] name`.
    pub name: String,
    pub opts: mysql_async::Opts,
    /// Server id this reader registers with for the binlog dump.
    pub replica_id: u32,
    pub filter: TableFilter,
    /// The sync this reader feeds (for messages).
    pub sync: String,
    pub snapshot_chunk_rows: usize,
    /// Also publish changes written with `skip_replication=1` (fleetsync's own applied writes
    /// in a sync cycle). Off for syncs (no echo loops); on for the PITR archive, which must
    /// hold everything the server's binlog holds.
    pub include_marked: bool,
    /// A one-shot run's end (`sync once`, a scheduled run). Once the stream has read past it,
    /// what it does not send (the server's idle heartbeat, fleetsync's own applied writes,
    /// excluded tables) is published as a position-only heartbeat at once, not after
    /// [`stream::LOOP_HEARTBEAT_EVERY`]: the targets record the end and the run finishes
    /// (in a group, a member's binlog usually ends with the others' applied writes).
    pub until: Option<Position>,
}

/// What preflight learned about the server.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub origin: Origin,
    pub version: String,
    pub is_mariadb: bool,
}

pub async fn connect(spec: &SourceSpec) -> Result<mysql_async::Conn, SourceError> {
    mysql_async::Conn::new(spec.opts.clone())
        .await
        .map_err(|e| connect_error(&spec.name, e))
}

/// A connection error as one line that says what to fix, without the URL or password.
pub fn connect_error(server: &str, e: mysql_async::Error) -> SourceError {
    if let Some(message) = tls::tls_failure(&e) {
        return SourceError::NeedsOperator {
            server: server.to_string(),
            message,
        };
    }
    match &e {
        mysql_async::Error::Io(_) => SourceError::Connection {
            server: server.to_string(),
            message: format!(
                "cannot connect: {} (is the server running and the host:port in its url right?)",
                crate::error::mysql_text(&e)
            ),
        },
        _ => SourceError::from_mysql(server, "connecting", e),
    }
}

/// Checks binlog settings and privileges; refuses with a message naming what to change.
pub async fn preflight(
    conn: &mut mysql_async::Conn,
    spec: &SourceSpec,
) -> Result<ServerInfo, SourceError> {
    let name = spec.name.as_str();
    let needs = |message: String| SourceError::NeedsOperator {
        server: name.to_string(),
        message,
    };
    let row: Option<(u32, String, Option<String>)> = conn
        .query_first("SELECT @@server_id, @@version, @@log_bin")
        .await
        .map_err(|e| SourceError::from_mysql(name, "reading server settings", e))?;
    let Some((server_id, version, log_bin)) = row else {
        return Err(needs("the server returned no settings".into()));
    };
    let is_mariadb = version.to_ascii_lowercase().contains("mariadb");
    if log_bin.as_deref() != Some("1") && log_bin.as_deref() != Some("ON") {
        return Err(needs(
            "the binary log is off: start the server with log_bin (e.g. --log-bin=binlog)".into(),
        ));
    }
    for (var, want) in [
        ("binlog_format", "ROW"),
        ("binlog_row_image", "FULL"),
        ("binlog_row_metadata", "FULL"),
    ] {
        let v: Option<Option<String>> = conn
            .query_first(format!("SELECT @@GLOBAL.{var}"))
            .await
            .map_err(|e| SourceError::from_mysql(name, &format!("reading {var}"), e))?;
        let v = v.flatten().unwrap_or_default();
        if !v.eq_ignore_ascii_case(want) {
            return Err(needs(format!("{var} is {v}, fleetsync needs {var}={want} (SET GLOBAL {var}='{want}' and in the server config)")));
        }
    }
    let uuid = if is_mariadb {
        String::new()
    } else {
        conn.query_first::<String, _>("SELECT @@server_uuid")
            .await
            .ok()
            .flatten()
            .unwrap_or_default()
    };
    check_privileges(conn, name).await?;
    Ok(ServerInfo {
        origin: Origin {
            name: name.to_string(),
            server_id,
            server_uuid: uuid,
        },
        version,
        is_mariadb,
    })
}

async fn check_privileges(conn: &mut mysql_async::Conn, name: &str) -> Result<(), SourceError> {
    let grants: Vec<String> = conn
        .query("SHOW GRANTS FOR CURRENT_USER()")
        .await
        .map_err(|e| SourceError::from_mysql(name, "reading grants", e))?;
    let global: Vec<String> = grants
        .iter()
        .filter(|g| g.contains(" ON *.* "))
        .map(|g| g.to_ascii_uppercase())
        .collect();
    let has = |p: &str| {
        global
            .iter()
            .any(|g| g.contains("ALL PRIVILEGES") || g.contains(p))
    };
    let missing: Vec<&str> = [
        ("REPLICATION SLAVE", "REPLICATION SLAVE"),
        ("BINLOG MONITOR", "BINLOG MONITOR"),
    ]
    .into_iter()
    .filter(|(p, _)| {
        !(has(p) || (*p == "BINLOG MONITOR" && (has("REPLICATION CLIENT") || has("SUPER"))))
    })
    .map(|(_, label)| label)
    .collect();
    if !missing.is_empty() {
        return Err(SourceError::NeedsOperator {
            server: name.to_string(),
            message: format!(
                "missing privilege {}: GRANT {} ON *.* TO the sync user (binlog streaming and positions need it)",
                missing.join(", "),
                missing.join(", ")
            ),
        });
    }
    Ok(())
}

/// The server's current binlog end: file/position and GTID position.
pub async fn current_position(
    conn: &mut mysql_async::Conn,
    server: &str,
) -> Result<Position, SourceError> {
    let row: Option<mysql_async::Row> = conn
        .query_first("SHOW MASTER STATUS")
        .await
        .map_err(|e| SourceError::from_mysql(server, "SHOW MASTER STATUS", e))?;
    let Some(row) = row else {
        return Err(SourceError::NeedsOperator {
            server: server.to_string(),
            message: "SHOW MASTER STATUS is empty: is log_bin on?".into(),
        });
    };
    let file: Option<String> = row.get(0);
    let pos: Option<u64> = row.get(1);
    let gtid: Option<String> = conn
        .query_first("SELECT @@GLOBAL.gtid_binlog_pos")
        .await
        .ok()
        .flatten();
    Ok(Position {
        binlog: BinlogPosition {
            file: file.unwrap_or_default(),
            pos: pos.unwrap_or(4),
        },
        gtid: gtid.and_then(|g| g.parse::<GtidSet>().ok()),
    })
}

/// Fails with [`SourceError::Purged`] if `pos`'s binlog file is no longer on the server.
pub async fn check_available(
    conn: &mut mysql_async::Conn,
    spec: &SourceSpec,
    pos: &Position,
) -> Result<(), SourceError> {
    let logs: Vec<mysql_async::Row> = conn
        .query("SHOW BINARY LOGS")
        .await
        .map_err(|e| SourceError::from_mysql(&spec.name, "SHOW BINARY LOGS", e))?;
    let present = logs
        .iter()
        .any(|r| r.get::<String, _>(0).as_deref() == Some(pos.binlog.file.as_str()));
    if present {
        Ok(())
    } else {
        Err(SourceError::Purged {
            server: spec.name.clone(),
            position: pos.clone(),
            sync: spec.sync.clone(),
        })
    }
}
