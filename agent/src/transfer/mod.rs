//! Export and import of tables as SQL, JSON or CSV files (`fleetsync export` / `import`).
//!
//! # Directory layout (one export = one directory)
//!
//! * `export.json`: the manifest ([`manifest::Manifest`]): server, format, content, the binlog
//!   position of the snapshot the rows were read in, time, and per table its rows and files.
//! * one data file per table, named `<db>.<table>.<ext>` with every byte outside
//!   `[A-Za-z0-9_$-]` of a name written as `%XX` ([`file_stem`]):
//!   * SQL (`.sql`, [`sql`]): `SET` lines, `CREATE DATABASE IF NOT EXISTS`/`USE`, the
//!     `CREATE TABLE` of `SHOW CREATE TABLE`, multi-row `INSERT`s of about 1 MiB, one row per
//!     line. Loadable with `mariadb < file` (the file selects its own database).
//!   * JSON (`.jsonl`, [`json`]): JSON Lines; the first line is the header (schema and
//!     `CREATE TABLE`), every further line one row object.
//!   * CSV (`.csv` + `.schema.json`, [`csv`]): RFC 4180 rows with a header row; the schema and
//!     `CREATE TABLE` beside it.
//!
//! # Invariants
//!
//! * Export reads every table inside one `START TRANSACTION WITH CONSISTENT SNAPSHOT`
//!   (MariaDB: lock-free, and the snapshot's binlog coordinate is recorded), over the binary
//!   protocol, decoded by [`crate::source::decode::from_mysql`] into the exact value model.
//! * Every format round-trips every value byte for byte: export value -> file -> import value
//!   is the identity, and import writes values with [`fleetsync_proto::sql::push_value`] on a
//!   `SET NAMES binary`, UTC session, like the applier.
//! * Import validates everything before it writes anything ([`import`]); a bad input changes
//!   nothing. The load itself runs in one transaction (see [`import`] for the guarantee).

pub mod csv;
pub mod export;
pub mod import;
pub mod json;
pub mod manifest;
pub mod sql;
mod sqlparse;
mod target;

use std::fmt;
use std::path::Path;

use fleetsync_proto::{TableSchema, Value};
use serde::{Deserialize, Serialize};

pub use export::{export, ExportOptions};
pub use import::{import, ImportOptions, ImportReport};

/// Name of the manifest file in an export directory.
pub const MANIFEST_FILE: &str = "export.json";
/// Version of the file formats written here; import refuses other versions.
pub const FORMAT_VERSION: u32 = 1;
/// Errors reported per file before the rest of that file's errors are only counted.
pub const MAX_ERRORS_PER_FILE: usize = 1000;

/// Metric: rows written by `fleetsync export`.
pub const METRIC_EXPORT_ROWS: &str = "fleetsync_export_rows_total";
/// Metric: rows loaded by `fleetsync import`.
pub const METRIC_IMPORT_ROWS: &str = "fleetsync_import_rows_total";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Sql,
    Json,
    Csv,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Sql => "sql",
            Format::Json => "json",
            Format::Csv => "csv",
        }
    }

    /// Extension of the data file.
    pub fn ext(self) -> &'static str {
        match self {
            Format::Sql => "sql",
            Format::Json => "jsonl",
            Format::Csv => "csv",
        }
    }
}

/// What an export holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Content {
    Both,
    SchemaOnly,
    DataOnly,
}

impl Content {
    pub fn schema(self) -> bool {
        self != Content::DataOnly
    }

    pub fn data(self) -> bool {
        self != Content::SchemaOnly
    }
}

/// What import does with a row whose key already exists in the target table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnConflict {
    /// Keep the target's row (`ON DUPLICATE KEY UPDATE` with a no-op, not `INSERT IGNORE`,
    /// which would also hide other errors).
    Skip,
    /// `REPLACE`: delete the conflicting row(s), insert the file's.
    Replace,
    /// `ON DUPLICATE KEY UPDATE` every non-key column with the file's value.
    Update,
    /// A duplicate key fails the import, which is rolled back.
    Error,
}

/// The first part of every table file: what the rows are.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TableHeader {
    /// Columns in file order (generated columns are not exported: the target computes them).
    pub table: TableSchema,
    /// `SHOW CREATE TABLE` text; `None` in a data-only export.
    pub create_sql: Option<String>,
}

/// Where in an input file a problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loc {
    File,
    Line(u64),
    /// CSV: data row (1 = the first row after the header) and the line it starts on.
    Row {
        row: u64,
        line: u64,
    },
}

/// One problem with the input: file, place, column and what is wrong. Displayed on one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    pub file: String,
    pub loc: Loc,
    pub column: Option<String>,
    pub message: String,
}

impl InputError {
    pub fn new(file: &str, loc: Loc, message: impl Into<String>) -> Self {
        InputError {
            file: file.to_string(),
            loc,
            column: None,
            message: message.into(),
        }
    }

    pub fn column(mut self, column: &str) -> Self {
        self.column = Some(column.to_string());
        self
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        match self.loc {
            Loc::File => {}
            Loc::Line(l) => write!(f, ": line {l}")?,
            Loc::Row { row, line } => write!(f, ": row {row} (line {line})")?,
        }
        if let Some(c) = &self.column {
            write!(f, ": column `{c}`")?;
        }
        let message = self.message.replace(['\n', '\r'], " ");
        write!(f, ": {message}")
    }
}

/// Errors of export and import.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The input files (or options) are bad; every problem found, in file order.
    #[error("{}", summarize(.0))]
    Input(Vec<InputError>),
    /// A server refused or failed; the message names the server and what was being done.
    #[error("{0}")]
    Server(String),
    /// A local file could not be read or written.
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    /// The cancellation token fired (checked between tables): an export's directory is left
    /// incomplete (no `export.json`) for the caller to remove; an import rolled back and
    /// dropped what it created.
    #[error("cancelled")]
    Cancelled,
}

/// Where an export or import reports its progress (the service layer's tracker).
pub trait Progress: Send + Sync {
    /// The number of tables to do.
    fn tables(&self, n: usize);
    /// One more table done: its rows and bytes.
    fn table_done(&self, rows: u64, bytes: u64);
}

fn summarize(errors: &[InputError]) -> String {
    match errors {
        [one] => one.to_string(),
        _ => format!(
            "{} problems in the input (each listed above); nothing was changed",
            errors.len()
        ),
    }
}

impl TransferError {
    pub fn io(path: &Path, e: impl fmt::Display) -> Self {
        TransferError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        }
    }

    pub fn server(server: &str, what: &str, e: impl fmt::Display) -> Self {
        TransferError::Server(format!("server {server}: {what}: {e}"))
    }
}

/// Reads the rows of one table file, in file order.
pub trait RowReader: Send {
    /// The next row, a problem with it, or `None` at the end. After an error the reader goes
    /// on with the next row where the format allows it (so that every problem is reported).
    fn next_row(&mut self) -> Option<Result<Vec<Value>, InputError>>;
    /// Where the row last returned is (for errors raised by the server while loading it).
    fn loc(&self) -> Loc;
}

/// Writes the rows of one table file.
pub trait TableWriter: Send {
    fn write_row(&mut self, row: &[Value]) -> Result<(), TransferError>;
    /// Flushes and closes; returns the bytes written.
    fn finish(self: Box<Self>) -> Result<u64, TransferError>;
}

/// `<db>.<table>` with each byte outside `[A-Za-z0-9_$-]` as `%XX`, so that the dot between
/// them is unambiguous and any name makes a portable file name.
pub fn file_stem(schema: &str, table: &str) -> String {
    let enc = |s: &str| {
        let mut out = String::with_capacity(s.len());
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'$' | b'-') {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    };
    format!("{}.{}", enc(schema), enc(table))
}

/// The data files of one table in `format` (CSV adds the schema file first).
pub fn table_files(format: Format, schema: &str, table: &str) -> Vec<String> {
    let stem = file_stem(schema, table);
    match format {
        Format::Csv => vec![format!("{stem}.schema.json"), format!("{stem}.csv")],
        _ => vec![format!("{stem}.{}", format.ext())],
    }
}

/// A file name relative to the export dir, for messages.
pub(crate) fn display_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// The checks every format shares once a row is typed: NULL only where the column allows it.
/// `Err((column, message))`.
pub(crate) fn check_row<'a>(t: &'a TableSchema, row: &[Value]) -> Result<(), (&'a str, String)> {
    for (col, v) in t.columns.iter().zip(row) {
        if !col.nullable && *v == Value::Null {
            return Err((&col.name, "NULL in a NOT NULL column".into()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_stems_are_unambiguous() {
        assert_eq!(file_stem("app", "t_1"), "app.t_1");
        assert_eq!(file_stem("a.b", "c/d"), "a%2Eb.c%2Fd");
        assert_eq!(file_stem("é", "x y"), "%C3%A9.x%20y");
    }

    #[test]
    fn errors_print_on_one_line() {
        let e = InputError::new("a.csv", Loc::Row { row: 3, line: 4 }, "bad\nvalue").column("c");
        assert_eq!(
            e.to_string(),
            "a.csv: row 3 (line 4): column `c`: bad value"
        );
        let e = InputError::new("t.sql", Loc::Line(7), "syntax");
        assert_eq!(e.to_string(), "t.sql: line 7: syntax");
    }
}
