//! Source errors, classified once: [`SourceError::is_transient`] decides retry vs stop.

use fleetsync_proto::Position;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The connection dropped or the server is restarting: reconnect with backoff.
    #[error("server {server}: connection lost: {message}")]
    Connection { server: String, message: String },
    /// The operator must change something; the message says what.
    #[error("server {server}: {message}")]
    NeedsOperator { server: String, message: String },
    /// The position to resume from is gone from the server's binlog.
    #[error("server {server}: binlog position {position} is no longer on the server (purged); re-snapshot with `fleetsync resnapshot --config FILE --sync {sync}`")]
    Purged {
        server: String,
        position: Position,
        sync: String,
    },
    /// A row event could not be decoded.
    #[error("server {server}: cannot decode {what} at {position}: {message}")]
    Decode {
        server: String,
        position: String,
        what: String,
        message: String,
    },
    /// The binlog does not carry the rows of a change to an included table, because a server
    /// setting was changed while streaming (see `source::usable`). Replicating on would lose
    /// that change silently, so the stream stops before the event.
    #[error("server {server}: unusable binlog event at {position}: {detail}; fleetsync needs {setting}={want}: set it on the server (SET GLOBAL {setting}='{want}' and in its config), then re-sync the target (`fleetsync resnapshot --config FILE --sync {sync}`): this event's changes are not in the binlog", want = required_value(setting))]
    Unusable {
        server: String,
        sync: String,
        /// Binlog file:offset where the event starts, and the transaction's GTID if known.
        position: String,
        /// The server setting at fault: `binlog_format`, `binlog_row_image` or
        /// `binlog_row_metadata` (also the `reason` label of the metric).
        setting: &'static str,
        detail: String,
    },
    /// The downstream bus went away (shutdown).
    #[error("publisher closed")]
    PublisherClosed,
}

/// The value fleetsync needs for a binlog setting named in [`SourceError::Unusable`].
pub fn required_value(setting: &str) -> &'static str {
    if setting == "binlog_format" {
        "ROW"
    } else {
        "FULL"
    }
}

impl SourceError {
    pub fn is_transient(&self) -> bool {
        matches!(self, SourceError::Connection { .. })
    }

    /// Maps a driver error: network and server-gone errors are transient; everything else
    /// needs an operator and keeps the server's message (never the URL or password).
    pub fn from_mysql(server: &str, context: &str, e: mysql_async::Error) -> SourceError {
        let text = mysql_text(&e);
        use mysql_async::Error as E;
        if let Some(message) = crate::tls::tls_failure(&e) {
            return SourceError::NeedsOperator {
                server: server.to_string(),
                message: format!("{context}: {message}"),
            };
        }
        match &e {
            E::Io(_) | E::Driver(mysql_async::DriverError::ConnectionClosed) => {
                SourceError::Connection {
                    server: server.to_string(),
                    message: format!("{context}: {text}"),
                }
            }
            E::Server(s)
                if matches!(
                    s.code,
                    1053 | 1077 | 1152 | 1158 | 1159 | 1160 | 1161 | 2006 | 2013 | 1927
                ) =>
            {
                SourceError::Connection {
                    server: server.to_string(),
                    message: format!("{context}: {e}"),
                }
            }
            // MariaDB also answers 1045 to a plain connection when it requires TLS
            // (require_secure_transport, REQUIRE SSL/X509), so the hint names both causes.
            E::Server(s) if matches!(s.code, 1045) => SourceError::NeedsOperator {
                server: server.to_string(),
                message: format!(
                    "{context}: access denied: check the user name and password, and whether \
                     the server requires TLS or a client certificate (the tls, tls_cert and \
                     tls_key settings) ({})",
                    s.message
                ),
            },
            // MySQL: ER_SECURE_TRANSPORT_REQUIRED.
            E::Server(s) if s.code == 3159 => SourceError::NeedsOperator {
                server: server.to_string(),
                message: format!(
                    "{context}: the server requires TLS (require_secure_transport): set tls \
                     ({})",
                    s.message
                ),
            },
            E::Server(s) if matches!(s.code, 1227 | 1044 | 1142 | 1143) => {
                SourceError::NeedsOperator {
                    server: server.to_string(),
                    message: format!("{context}: missing privilege: {}", s.message),
                }
            }
            _ => SourceError::NeedsOperator {
                server: server.to_string(),
                message: format!("{context}: {e}"),
            },
        }
    }
}

/// A client error's text, each level once: mysql_async nests an I/O error as
/// "Input/output error: Input/output error: `<cause>`".
pub fn mysql_text(e: &mysql_async::Error) -> String {
    match e {
        mysql_async::Error::Io(mysql_async::IoError::Io(io)) => format!("input/output error: {io}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod text_tests {
    #[test]
    fn io_errors_are_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        let e = mysql_async::Error::Io(mysql_async::IoError::Io(io));
        let text = super::mysql_text(&e);
        assert_eq!(text, "input/output error: Connection refused");
    }
}
