//! The SQL format: one `<db>.<table>.sql` per table, loadable by the `mariadb` client.
//!
//! ```text
//! -- fleetsync export of `db`.`t` (format 1)
//! -- fleetsync-table: {TableSchema as JSON}
//! SET NAMES utf8mb4;
//! SET time_zone = '+00:00';
//! SET sql_mode = 'NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION';
//! SET foreign_key_checks = 0;
//! CREATE DATABASE IF NOT EXISTS `db`;
//! USE `db`;
//! CREATE TABLE `t` (...);            -- SHOW CREATE TABLE; left out with --data-only
//! SET NAMES binary;
//! INSERT INTO `t` (`a`,`b`) VALUES
//! (1,'x'),
//! (2,NULL);                          -- one row per line, a new INSERT every ~1 MiB
//! ```
//!
//! Convention: the file selects its own database (`CREATE DATABASE IF NOT EXISTS` + `USE`),
//! so `mariadb < file` loads it as exported; to load under another name use
//! `fleetsync import --rename-db`. `SET NAMES utf8mb4` covers the DDL (its text is UTF-8);
//! the rows follow `SET NAMES binary`, because values are written byte for byte in their
//! column's character set by [`fleetsync_proto::sql::push_value`] (TIMESTAMPs as UTC civil
//! time, hence the time zone; zero dates, hence the non-strict sql_mode).
//!
//! The metadata comment carries the column types the rows are typed by at import; import
//! parses the file itself ([`super::sqlparse`] explains why) and accepts only these forms.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::Path;

use fleetsync_proto::sql::{push_ident, push_row};
use fleetsync_proto::{TableSchema, Value};

use super::sqlparse::{lit_to_value, Cursor, Lit, Piece, Splitter, META_PREFIX};
use super::{
    check_row, display_name, InputError, Loc, RowReader, TableHeader, TableWriter, TransferError,
    FORMAT_VERSION,
};

/// An `INSERT` is closed after the row that makes it this long.
pub const INSERT_BYTES: usize = 1 << 20;

pub struct SqlWriter {
    out: BufWriter<File>,
    path: std::path::PathBuf,
    /// `INSERT INTO `t` (`a`,`b`) VALUES\n`.
    prefix: Vec<u8>,
    stmt_len: usize,
    buf: Vec<u8>,
    bytes: u64,
}

impl SqlWriter {
    pub fn create(path: &Path, header: &TableHeader) -> Result<SqlWriter, TransferError> {
        let file = crate::owner_only::create(path).map_err(|e| TransferError::io(path, e))?;
        let t = &header.table;
        let meta = serde_json::to_string(t).map_err(|e| TransferError::io(path, e))?;
        let mut head = Vec::new();
        head.extend_from_slice(b"-- fleetsync export of ");
        fleetsync_proto::sql::push_table(&mut head, &t.schema, &t.table);
        head.extend_from_slice(
            format!(" (format {FORMAT_VERSION})\n{META_PREFIX}{meta}\n").as_bytes(),
        );
        head.extend_from_slice(
            b"SET NAMES utf8mb4;\nSET time_zone = '+00:00';\n\
              SET sql_mode = 'NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION';\n\
              SET foreign_key_checks = 0;\nCREATE DATABASE IF NOT EXISTS ",
        );
        push_ident(&mut head, &t.schema);
        head.extend_from_slice(b";\nUSE ");
        push_ident(&mut head, &t.schema);
        head.extend_from_slice(b";\n");
        if let Some(create) = &header.create_sql {
            head.extend_from_slice(create.as_bytes());
            head.extend_from_slice(b";\n");
        }
        head.extend_from_slice(b"SET NAMES binary;\n");
        let mut prefix = b"INSERT INTO ".to_vec();
        push_ident(&mut prefix, &t.table);
        prefix.extend_from_slice(b" (");
        for (i, c) in t.columns.iter().enumerate() {
            if i > 0 {
                prefix.push(b',');
            }
            push_ident(&mut prefix, &c.name);
        }
        prefix.extend_from_slice(b") VALUES\n");
        let mut w = SqlWriter {
            out: BufWriter::with_capacity(1 << 20, file),
            path: path.to_path_buf(),
            prefix,
            stmt_len: 0,
            buf: Vec::with_capacity(4096),
            bytes: 0,
        };
        w.put(&head)?;
        Ok(w)
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), TransferError> {
        self.bytes += bytes.len() as u64;
        self.out
            .write_all(bytes)
            .map_err(|e| TransferError::io(&self.path, e))
    }
}

impl TableWriter for SqlWriter {
    fn write_row(&mut self, row: &[Value]) -> Result<(), TransferError> {
        self.buf.clear();
        if self.stmt_len == 0 {
            self.buf.extend_from_slice(&self.prefix);
        } else {
            self.buf.extend_from_slice(b",\n");
        }
        push_row(&mut self.buf, row).map_err(|e| TransferError::io(&self.path, e))?;
        self.stmt_len += self.buf.len();
        if self.stmt_len >= INSERT_BYTES {
            self.buf.extend_from_slice(b";\n");
            self.stmt_len = 0;
        }
        let buf = std::mem::take(&mut self.buf);
        let r = self.put(&buf);
        self.buf = buf;
        r
    }

    fn finish(mut self: Box<Self>) -> Result<u64, TransferError> {
        if self.stmt_len > 0 {
            self.put(b";\n")?;
        }
        self.out
            .flush()
            .map_err(|e| TransferError::io(&self.path, e))?;
        Ok(self.bytes)
    }
}

/// Reads a SQL export file: the header on open, rows on demand.
pub struct SqlReader {
    split: Splitter<BufReader<File>>,
    file: String,
    schema: TableSchema,
    rows: VecDeque<(u64, Result<Vec<Value>, InputError>)>,
    /// An `INSERT` met while reading the header.
    pending: Option<(u64, Vec<u8>)>,
    line: u64,
    done: bool,
}

impl SqlReader {
    pub fn open(path: &Path) -> Result<(TableHeader, SqlReader), InputError> {
        let file = display_name(path);
        let f = File::open(path)
            .map_err(|e| InputError::new(&file, Loc::File, format!("cannot open: {e}")))?;
        let mut split = Splitter::new(BufReader::with_capacity(1 << 20, f));
        let mut schema: Option<TableSchema> = None;
        let mut db: Option<String> = None;
        let mut create_sql = None;
        let err = |line, msg: String| InputError::new(&file, Loc::Line(line), msg);
        let pending = loop {
            let piece = match split.next_piece() {
                None => break None,
                Some(p) => p.map_err(|(l, m)| err(l, m))?,
            };
            let (line, text) = match piece {
                Piece::Meta { line, text } => {
                    let s: TableSchema = serde_json::from_str(&text)
                        .map_err(|e| err(line, format!("invalid fleetsync-table header: {e}")))?;
                    schema = Some(s);
                    continue;
                }
                Piece::Stmt { line, text } => (line, text),
            };
            let Some(s) = &schema else {
                return Err(err(line, format!("no `{}` header before the first statement: not a file written by fleetsync export", META_PREFIX.trim())));
            };
            let mut c = Cursor::new(&text, line);
            match c.word().as_deref() {
                Some("SET") => {}
                Some("CREATE") if c.opt_keyword("DATABASE") => {}
                Some("USE") => db = Some(c.ident().map_err(|(l, m)| err(l, m))?),
                Some("CREATE") if c.opt_keyword("TABLE") => {
                    let (_, name) = c.table_name().map_err(|(l, m)| err(l, m))?;
                    if name != s.table {
                        return Err(err(line, format!("CREATE TABLE of `{name}`, but the header is for `{}`", s.table)));
                    }
                    let text = String::from_utf8(text).map_err(|_| err(line, "CREATE TABLE is not valid UTF-8".into()))?;
                    create_sql = Some((line, text));
                }
                Some("INSERT") => break Some((line, text)),
                _ => return Err(err(line, format!("unsupported statement {}: an export file holds SET, CREATE DATABASE, USE, CREATE TABLE and INSERT", first_words(&text)))),
            }
        };
        let Some(schema) = schema else {
            return Err(err(1, "empty file: no fleetsync-table header".into()));
        };
        if db.as_deref().is_some_and(|d| d != schema.schema) {
            return Err(err(
                1,
                format!(
                    "USE selects another database than the header's `{}`",
                    schema.schema
                ),
            ));
        }
        let header = TableHeader {
            table: schema.clone(),
            create_sql: create_sql.map(|(_, t)| t),
        };
        let reader = SqlReader {
            split,
            file,
            schema,
            rows: VecDeque::new(),
            pending,
            line: 0,
            done: false,
        };
        Ok((header, reader))
    }

    /// Parses the next `INSERT` into `self.rows`; false at the end of the file.
    fn parse_next(&mut self) -> bool {
        let (line, text) = match self.pending.take() {
            Some(p) => p,
            None => match self.split.next_piece() {
                None => return false,
                Some(Err((l, m))) => {
                    self.rows
                        .push_back((l, Err(InputError::new(&self.file, Loc::Line(l), m))));
                    return true;
                }
                Some(Ok(Piece::Meta { line, .. })) => {
                    let e = InputError::new(
                        &self.file,
                        Loc::Line(line),
                        "a second fleetsync-table header",
                    );
                    self.rows.push_back((line, Err(e)));
                    return true;
                }
                Some(Ok(Piece::Stmt { line, text })) => (line, text),
            },
        };
        if let Err((l, m)) = self.parse_insert(line, &text) {
            self.rows
                .push_back((l, Err(InputError::new(&self.file, Loc::Line(l), m))));
        }
        true
    }

    fn parse_insert(&mut self, line: u64, text: &[u8]) -> Result<(), (u64, String)> {
        let mut c = Cursor::new(text, line);
        match c.word().as_deref() {
            Some("INSERT") => {}
            Some("SET") => return Ok(()),
            _ => {
                return Err((
                    line,
                    format!(
                        "unsupported statement {} after the rows began",
                        first_words(text)
                    ),
                ))
            }
        }
        c.keyword("INTO")?;
        let (db, name) = c.table_name()?;
        if name != self.schema.table || db.as_ref().is_some_and(|d| *d != self.schema.schema) {
            return c.err(format!(
                "INSERT into `{name}`, but the file is for `{}`",
                self.schema.table
            ));
        }
        if c.eat(b'(') {
            let mut names = Vec::new();
            loop {
                names.push(c.ident()?);
                if !c.eat(b',') {
                    break;
                }
            }
            c.expect(b')', "`)` after the column list")?;
            let want: Vec<&str> = self
                .schema
                .columns
                .iter()
                .map(|c| c.name.as_str())
                .collect();
            if names != want {
                return c.err(format!(
                    "the column list {names:?} is not the table's columns {want:?}"
                ));
            }
        }
        c.keyword("VALUES")?;
        loop {
            c.expect(b'(', "`(` starting a row")?;
            let row_line = c.line;
            let mut lits = Vec::with_capacity(self.schema.columns.len());
            loop {
                lits.push(c.literal()?);
                if !c.eat(b',') {
                    break;
                }
            }
            c.expect(b')', "`,` or `)` after a value")?;
            let row = self.type_row(row_line, lits);
            self.rows.push_back((row_line, row));
            if !c.eat(b',') {
                break;
            }
        }
        if !c.at_end() {
            let found = c.found();
            return c.err(format!(
                "syntax error: expected `,` or `;` after a row, found {found}"
            ));
        }
        Ok(())
    }

    fn type_row(&self, line: u64, lits: Vec<Lit>) -> Result<Vec<Value>, InputError> {
        let err = |m: String| InputError::new(&self.file, Loc::Line(line), m);
        let cols = &self.schema.columns;
        if lits.len() != cols.len() {
            return Err(err(format!(
                "the row has {} values, the table has {} columns",
                lits.len(),
                cols.len()
            )));
        }
        let row = lits
            .into_iter()
            .zip(cols)
            .map(|(l, col)| lit_to_value(l, col).map_err(|m| err(m).column(&col.name)))
            .collect::<Result<Vec<_>, _>>()?;
        check_row(&self.schema, &row).map_err(|(col, m)| err(m).column(col))?;
        Ok(row)
    }
}

impl RowReader for SqlReader {
    fn next_row(&mut self) -> Option<Result<Vec<Value>, InputError>> {
        loop {
            if let Some((line, row)) = self.rows.pop_front() {
                self.line = line;
                return Some(row);
            }
            if self.done || !self.parse_next() {
                self.done = true;
                return None;
            }
        }
    }

    fn loc(&self) -> Loc {
        Loc::Line(self.line)
    }
}

/// The first words of a statement, for messages.
fn first_words(text: &[u8]) -> String {
    let s = String::from_utf8_lossy(&text[..text.len().min(40)]);
    let words: Vec<&str> = s.split_whitespace().take(3).collect();
    format!("\"{}\"", words.join(" "))
}
