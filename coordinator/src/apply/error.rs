//! [`ApplyError`] and its one classification: transient (reconnect and retry the same batch)
//! or definite (retrying cannot help: an operator must look).
//!
//! Messages name the target server, the table and the source position where they are known.
//! They never contain connection options: `mysql_async::Opts` may hold a password, so it is
//! never formatted anywhere in this module.

/// Server error codes after which the same batch can simply be retried, on a new connection.
const TRANSIENT_SERVER_CODES: &[u16] = &[
    1040, // ER_CON_COUNT_ERROR: too many connections
    1053, // ER_SERVER_SHUTDOWN
    1152, // ER_ABORTING_CONNECTION
    1159, // ER_NET_READ_INTERRUPTED
    1161, // ER_NET_WRITE_INTERRUPTED
    1180, // ER_ERROR_DURING_COMMIT
    1203, // ER_TOO_MANY_USER_CONNECTIONS
    1205, // ER_LOCK_WAIT_TIMEOUT
    1213, // ER_LOCK_DEADLOCK
    1317, // ER_QUERY_INTERRUPTED (KILL QUERY)
    1637, // ER_TOO_MANY_CONCURRENT_TRXS
    1927, // ER_CONNECTION_KILLED (MariaDB)
    1969, // ER_STATEMENT_TIMEOUT (MariaDB max_statement_time)
    2006, // CR_SERVER_GONE_ERROR
    2013, // CR_SERVER_LOST
    4031, // ER_CLIENT_INTERACTION_TIMEOUT (MySQL 8)
];

/// Why applying failed. See [`ApplyError::is_transient`] for what the caller should do.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The target could not be reached or refused the session setup.
    #[error("target {target}: cannot connect: {source}")]
    Connect {
        target: String,
        #[source]
        source: Box<mysql_async::Error>,
    },
    /// A statement failed on the target. `context` says what was being done: the table and
    /// the source position(s) involved.
    #[error("target {target}: {context}: {source}")]
    Sql {
        target: String,
        context: String,
        #[source]
        source: Box<mysql_async::Error>,
    },
    /// Reading a table definition from the source (for `create_missing`) failed.
    #[error(
        "source {source_name}: reading the definition of {table} for target {target}: {source}"
    )]
    Source {
        source_name: String,
        target: String,
        table: String,
        #[source]
        source: Box<mysql_async::Error>,
    },
    /// A change cannot be turned into SQL: a missing row image, a row whose width differs from
    /// its table schema, an invalid DECIMAL text, ...
    #[error("target {target}: table {table} at source position {position}: {reason}")]
    InvalidChange {
        target: String,
        table: String,
        position: String,
        reason: String,
    },
    /// The progress row stored on the target cannot be read or written.
    #[error("target {target}: progress of sync {sync:?} from source {source_name:?}: {reason}")]
    State {
        target: String,
        sync: String,
        source_name: String,
        reason: String,
    },
}

impl ApplyError {
    /// True when reconnecting and retrying the same batch may succeed: the connection was lost,
    /// the server went away or is shutting down, a lock wait timed out or a deadlock was
    /// detected. Everything else (bad SQL, a missing column, an invalid value, a corrupt state
    /// row) is definite: retrying the same batch would fail the same way.
    pub fn is_transient(&self) -> bool {
        match self {
            ApplyError::Connect { source, .. } => match &**source {
                // Wrong credentials or an unknown database do not fix themselves.
                mysql_async::Error::Server(e) => is_transient_code(e.code),
                // Nor does a certificate that does not verify, or a server without TLS.
                e if fleetsync_mysql::tls::tls_failure(e).is_some() => false,
                _ => true,
            },
            ApplyError::Sql { source, .. } | ApplyError::Source { source, .. } => {
                is_transient_mysql(source)
            }
            ApplyError::InvalidChange { .. } | ApplyError::State { .. } => false,
        }
    }

    /// A short label for the `kind` of the errors metric.
    pub fn kind(&self) -> &'static str {
        match self {
            e if e.is_transient() => "transient",
            ApplyError::Connect { .. } => "connect",
            ApplyError::Sql { .. } => "sql",
            ApplyError::Source { .. } => "source",
            ApplyError::InvalidChange { .. } => "invalid_change",
            ApplyError::State { .. } => "state",
        }
    }

    /// The server error code, when the error came from a server.
    pub fn server_code(&self) -> Option<u16> {
        match self {
            ApplyError::Connect { source, .. }
            | ApplyError::Sql { source, .. }
            | ApplyError::Source { source, .. } => server_code(source),
            _ => None,
        }
    }
}

pub(crate) fn server_code(e: &mysql_async::Error) -> Option<u16> {
    match e {
        mysql_async::Error::Server(e) => Some(e.code),
        _ => None,
    }
}

fn is_transient_code(code: u16) -> bool {
    TRANSIENT_SERVER_CODES.contains(&code)
}

/// Connection-level failures are transient; of the driver's own errors only those that mean a
/// broken or confused connection are (a packet too large for `max_allowed_packet` is not).
pub(crate) fn is_transient_mysql(e: &mysql_async::Error) -> bool {
    use mysql_async::DriverError as D;
    match e {
        mysql_async::Error::Io(_) => true,
        mysql_async::Error::Server(e) => is_transient_code(e.code),
        mysql_async::Error::Driver(d) => matches!(
            d,
            D::ConnectionClosed
                | D::PacketOutOfOrder
                | D::UnexpectedPacket { .. }
                | D::PoolDisconnected
                | D::BadCompressedPacketHeader
        ),
        mysql_async::Error::Other(_) | mysql_async::Error::Url(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: u16) -> mysql_async::Error {
        mysql_async::Error::Server(mysql_async::ServerError {
            code,
            message: "m".into(),
            state: "HY000".into(),
        })
    }

    fn sql(code: u16) -> ApplyError {
        ApplyError::Sql {
            target: "t1".into(),
            context: "c".into(),
            source: Box::new(server(code)),
        }
    }

    #[test]
    fn classification() {
        assert!(sql(1213).is_transient());
        assert!(sql(1205).is_transient());
        assert!(!sql(1054).is_transient());
        assert!(!sql(1146).is_transient());
        assert_eq!(sql(1054).kind(), "sql");
        assert_eq!(sql(1213).kind(), "transient");
        assert_eq!(sql(1054).server_code(), Some(1054));
        let closed = ApplyError::Sql {
            target: "t1".into(),
            context: "c".into(),
            source: Box::new(mysql_async::Error::Driver(
                mysql_async::DriverError::ConnectionClosed,
            )),
        };
        assert!(closed.is_transient());
        let denied = ApplyError::Connect {
            target: "t1".into(),
            source: Box::new(server(1045)),
        };
        assert!(!denied.is_transient());
        let refused = ApplyError::Connect {
            target: "t1".into(),
            source: Box::new(mysql_async::Error::Io(mysql_async::IoError::Io(
                std::io::Error::other("x"),
            ))),
        };
        assert!(refused.is_transient());
    }

    #[test]
    fn messages_name_target_and_position() {
        let e = ApplyError::InvalidChange {
            target: "t1".into(),
            table: "`db`.`t`".into(),
            position: "binlog.000001:4".into(),
            reason: "r".into(),
        };
        let s = e.to_string();
        assert!(s.contains("t1") && s.contains("`db`.`t`") && s.contains("binlog.000001:4"));
    }
}
