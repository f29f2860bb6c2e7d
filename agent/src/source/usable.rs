//! What the binlog must carry for a change to be replicated, checked on every event of an
//! included table (server settings can change at any time: `SET GLOBAL` only affects
//! sessions opened afterwards, so preflight at start-up is not enough).
//!
//! * `binlog_format=ROW`: a data change logged as a statement (STATEMENT, or MIXED for "safe"
//!   statements) carries no rows; [`statement_table`] tells whether one touches an included
//!   table.
//! * `binlog_row_image=FULL`: MINIMAL and NOBLOB leave columns out of the before/after images
//!   ([`full_image`]); the applier needs every column to find and write rows.
//! * `binlog_row_metadata=FULL`: without it the TABLE_MAP lacks column names, and rows
//!   cannot be matched to columns safely after a schema change.
//!
//! An event that fails a check stops the stream with [`crate::SourceError::Unusable`] before
//! its transaction is published, so no checkpoint or target position moves past it.
//! Statements on fleetsync's own schema and on excluded tables are never a reason to stop
//! (`TableFilter::matches` excludes system schemas and `fleetsync`).

use fleetsync_config::TableFilter;

use crate::ddl::Statement;

/// Unusable events seen, per source server and reason (the server setting at fault).
pub const METRIC_UNUSABLE_EVENTS: &str = "fleetsync_stream_unusable_events_total";

pub const BINLOG_FORMAT: &str = "binlog_format";
pub const BINLOG_ROW_IMAGE: &str = "binlog_row_image";
pub const BINLOG_ROW_METADATA: &str = "binlog_row_metadata";

/// For a statement-form data change that may write an included table, that table as
/// `schema.table` (or a description when its tables cannot be told); `None` when the
/// statement is not a data change or touches only excluded tables.
pub fn statement_table(
    statement: &Statement,
    default_schema: &str,
    filter: &TableFilter,
) -> Option<String> {
    let Statement::Dml { tables } = statement else {
        return None;
    };
    let Some(tables) = tables else {
        return Some("tables that cannot be told from the statement".into());
    };
    tables.iter().find_map(|(schema, table)| {
        let schema = schema.as_deref().unwrap_or(default_schema);
        filter
            .matches(schema, table)
            .then(|| format!("{schema}.{table}"))
    })
}

/// Whether a row image holds every one of the table's `columns` (absent images, such as the
/// before image of an insert, are fine).
pub fn full_image(present: Option<&[bool]>, columns: usize) -> bool {
    present.is_none_or(|bits| bits.len() >= columns && bits.iter().take(columns).all(|b| *b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ddl::classify;

    fn filter() -> TableFilter {
        TableFilter::new(&["app\\..*".to_string()], &["app\\.skip".to_string()])
            .unwrap_or_else(|e| panic!("filter: {e:?}"))
    }

    fn table(sql: &str, default: &str) -> Option<String> {
        statement_table(&classify(sql), default, &filter())
    }

    #[test]
    fn statements_on_included_tables() {
        assert_eq!(
            table("INSERT INTO app.t VALUES (1)", ""),
            Some("app.t".into())
        );
        assert_eq!(table("UPDATE t SET v = 2", "app"), Some("app.t".into()));
        assert_eq!(
            table("DELETE FROM o.x USING o.x JOIN app.t", "o"),
            Some("app.t".into())
        );
        assert!(table("SELECT f()", "o").is_some());
    }

    #[test]
    fn statements_that_do_not_stop_anything() {
        for (sql, default) in [
            ("BEGIN", "app"),
            ("COMMIT", "app"),
            ("INSERT INTO other.t VALUES (1)", "app"),
            ("UPDATE t SET v = 1", "other"),
            ("INSERT INTO app.skip VALUES (1)", ""),
            ("INSERT INTO fleetsync.sync_state VALUES (1)", "app"),
            ("ALTER TABLE app.t ADD COLUMN c INT", ""),
            ("CREATE VIEW app.v AS SELECT 1", ""),
        ] {
            assert_eq!(table(sql, default), None, "{sql}");
        }
    }

    #[test]
    fn images() {
        assert!(full_image(None, 3));
        assert!(full_image(Some(&[true, true, true]), 3));
        assert!(!full_image(Some(&[true, false, true]), 3));
        assert!(!full_image(Some(&[true, true]), 3));
    }
}
