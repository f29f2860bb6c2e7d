//! Runs one versioned migration file on a server: its statements ([`super::sqlfile::split`])
//! in order on one connection.
//!
//! MariaDB/MySQL DDL is not transactional (each DDL statement commits on its own), so a file
//! that fails half-way leaves its earlier statements done: the failure says which statement
//! failed (1-based index, line) and how many ran before it, and the caller records that in the
//! history. A file whose statements are all data changes (INSERT, UPDATE, DELETE, REPLACE,
//! SELECT, SET) runs inside one transaction and is rolled back on failure (on InnoDB; MyISAM
//! tables ignore transactions).

use std::time::Instant;

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use super::sqlfile::{split, Statement};

/// A file that ran to its end.
#[derive(Debug, Clone)]
pub struct FileRun {
    pub statements: usize,
    pub duration_ms: u64,
}

/// A file that stopped at a statement.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", self.describe())]
pub struct FileFailure {
    /// 1-based index of the failed statement (0: before any, e.g. `USE db` failed).
    pub statement: usize,
    pub total: usize,
    pub line: usize,
    /// The server's error, one line.
    pub error: String,
    /// The statements ran in one transaction that was rolled back.
    pub rolled_back: bool,
    pub duration_ms: u64,
}

impl FileFailure {
    /// One line: the statement, the server's error and what was left half-done.
    pub fn describe(&self) -> String {
        let done = self.statement.saturating_sub(1);
        let left = if self.rolled_back {
            "the file ran in one transaction, rolled back: nothing changed".to_string()
        } else if done == 0 {
            "no statement of the file ran before it".to_string()
        } else {
            format!(
                "statements 1-{done} ran and stay applied (DDL is not transactional): the server is half-way through this file"
            )
        };
        format!(
            "statement {} of {} (line {}) failed: {}; {left}",
            self.statement, self.total, self.line, self.error
        )
    }
}

/// Whether a statement only changes data (so a file of them can run in a transaction).
fn is_data_statement(sql: &str) -> bool {
    let first = sql
        .split(|c: char| c.is_whitespace() || c == '(')
        .find(|w| !w.is_empty())
        .unwrap_or("")
        .to_ascii_uppercase();
    matches!(
        first.as_str(),
        "INSERT" | "UPDATE" | "DELETE" | "REPLACE" | "SELECT" | "SET"
    )
}

/// The server's error as the `mariadb` client prints it (`ERROR 1146 (42S02): ...`), on one
/// line.
fn one_line(e: &mysql_async::Error) -> String {
    let text = match e {
        mysql_async::Error::Server(s) => format!("ERROR {} ({}): {}", s.code, s.state, s.message),
        other => other.to_string(),
    };
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Runs `text` (a whole file) in `database` (a `USE` first when given).
pub async fn run_file(
    conn: &mut Conn,
    database: Option<&str>,
    text: &str,
) -> Result<FileRun, FileFailure> {
    let started = Instant::now();
    let statements: Vec<Statement> = split(text);
    let total = statements.len();
    let ms = |s: Instant| u64::try_from(s.elapsed().as_millis()).unwrap_or(u64::MAX);
    let fail = |statement: usize, line: usize, error: String, rolled_back: bool| FileFailure {
        statement,
        total,
        line,
        error,
        rolled_back,
        duration_ms: ms(started),
    };
    if let Some(db) = database {
        let use_db = format!("USE `{}`", db.replace('`', "``"));
        if let Err(e) = conn.query_drop(use_db).await {
            return Err(fail(0, 0, one_line(&e), false));
        }
    }
    let transactional = total > 0 && statements.iter().all(|s| is_data_statement(&s.sql));
    if transactional {
        if let Err(e) = conn.query_drop("START TRANSACTION").await {
            return Err(fail(0, 0, one_line(&e), false));
        }
    }
    for (i, s) in statements.iter().enumerate() {
        if let Err(e) = conn.query_drop(s.sql.as_str()).await {
            let rolled_back = transactional && conn.query_drop("ROLLBACK").await.is_ok();
            return Err(fail(i + 1, s.line, one_line(&e), rolled_back));
        }
    }
    if transactional {
        if let Err(e) = conn.query_drop("COMMIT").await {
            return Err(fail(total, 0, one_line(&e), true));
        }
    }
    Ok(FileRun {
        statements: total,
        duration_ms: ms(started),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_statements_are_recognised() {
        assert!(is_data_statement("insert into t values (1)"));
        assert!(is_data_statement("  UPDATE t SET a = 1"));
        assert!(is_data_statement("SELECT(1)"));
        assert!(!is_data_statement("ALTER TABLE t ADD c int"));
        assert!(!is_data_statement(
            "CREATE PROCEDURE p() BEGIN UPDATE t SET a=1; END"
        ));
        assert!(!is_data_statement("CALL p()"));
    }

    #[test]
    fn failure_says_what_was_left_half_done() {
        let f = FileFailure {
            statement: 3,
            total: 4,
            line: 12,
            error: "ERROR 1146 (42S02): Table 'app.nope' doesn't exist".into(),
            rolled_back: false,
            duration_ms: 5,
        };
        let s = f.to_string();
        assert!(
            s.starts_with("statement 3 of 4 (line 12) failed: ERROR 1146"),
            "{s}"
        );
        assert!(s.contains("statements 1-2 ran and stay applied"), "{s}");
        let f = FileFailure {
            rolled_back: true,
            ..f
        };
        assert!(f.to_string().contains("rolled back: nothing changed"));
    }
}
