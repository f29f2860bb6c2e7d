//! The CSV format: `<db>.<table>.csv` (RFC 4180: comma, `"` quoting, CRLF, a header row of
//! column names) and `<db>.<table>.schema.json` beside it (the [`super::json::JsonHeader`]:
//! schema and `CREATE TABLE`, so import can create the table).
//!
//! Cells are UTF-8 text. Values are rendered as in the JSON format (the value model's JSON
//! rendering: numbers, DECIMAL text, `YYYY-MM-DD HH:MM:SS[.ffffff]`, TIMESTAMP as UTC `...Z`,
//! latin1 text decoded, ENUM/SET labels, JSON document text), except:
//! * `\N` is NULL (an empty cell is the empty string);
//! * a cell that starts with `\` is an escape: `\\...` is the text with the first backslash
//!   removed (so a literal `\N` is written `\\N`), `\base64:...` is a character column's bytes
//!   that are not valid UTF-8, `\#N` is an ENUM/SET number whose label would be ambiguous;
//! * BINARY/VARBINARY/BLOB and GEOMETRY columns are always base64 (standard, padded).

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use fleetsync_proto::{Column, ColumnType, TableSchema, Value};
use serde_json::Value as J;

use super::json::{cell_from_json, cell_to_json, JsonHeader};
use super::{
    check_row, display_name, InputError, Loc, RowReader, TableHeader, TableWriter, TransferError,
};

/// The NULL marker.
pub const NULL: &str = "\\N";
/// What the schema file says about cells.
pub const ENCODING_NOTE: &str = "RFC 4180 with a header row; \\N is NULL; a cell starting with \\ is an escape: \\\\ = a literal leading backslash, \\base64: = non-UTF-8 text bytes, \\# = ENUM/SET number; binary and geometry columns are base64; other values as in the JSON format";

/// A value as a CSV cell.
pub fn encode_cell(v: &Value, col: &Column) -> String {
    let j = match v {
        Value::Null => return NULL.to_string(),
        Value::Json(text) => return escape(text),
        _ => cell_to_json(v, col),
    };
    match j {
        J::String(s) => escape(&s),
        J::Number(n) if matches!(col.ty, ColumnType::Enum | ColumnType::Set) => format!("\\#{n}"),
        J::Number(n) => n.to_string(),
        J::Object(m) => match m.get("base64").and_then(J::as_str) {
            Some(b) => format!("\\base64:{b}"),
            None => escape(&J::Object(m).to_string()),
        },
        other => escape(&other.to_string()),
    }
}

fn escape(s: &str) -> String {
    if s.starts_with('\\') {
        format!("\\{s}")
    } else {
        s.to_string()
    }
}

/// Inverse of [`encode_cell`].
pub fn decode_cell(cell: &str, col: &Column) -> Result<Value, String> {
    if let Some(rest) = cell.strip_prefix('\\') {
        if rest == "N" {
            return Ok(Value::Null);
        }
        if let Some(lit) = rest.strip_prefix('\\') {
            return typed(&format!("\\{lit}"), col);
        }
        if let Some(b64) = rest.strip_prefix("base64:") {
            let j = serde_json::json!({ "base64": b64 });
            return cell_from_json(&j, col);
        }
        if let Some(n) = rest.strip_prefix('#') {
            let n: u64 = n.parse().map_err(|_| format!("invalid escape {cell:?}"))?;
            return cell_from_json(&J::from(n), col);
        }
        return Err(format!(
            "unknown escape {:?} (\\N is NULL; write a leading backslash as \\\\)",
            cell.chars().take(12).collect::<String>()
        ));
    }
    typed(cell, col)
}

fn typed(cell: &str, col: &Column) -> Result<Value, String> {
    match col.ty {
        ColumnType::Json => Ok(Value::Json(cell.to_string())),
        ColumnType::Float | ColumnType::Double => {
            let j = match cell {
                "NaN" | "Infinity" | "-Infinity" => J::String(cell.to_string()),
                _ => match serde_json::from_str::<J>(cell) {
                    Ok(n @ J::Number(_)) => n,
                    _ => return Err(format!("expected a number, found {cell:?}")),
                },
            };
            cell_from_json(&j, col)
        }
        _ => cell_from_json(&J::String(cell.to_string()), col),
    }
}

pub struct CsvWriter {
    w: csv::Writer<BufWriter<File>>,
    path: PathBuf,
    columns: Vec<Column>,
    cells: Vec<String>,
}

impl CsvWriter {
    /// Writes the schema file now and the CSV's header row.
    pub fn create(
        schema_path: &Path,
        path: &Path,
        header: &TableHeader,
        with_rows: bool,
    ) -> Result<Option<CsvWriter>, TransferError> {
        let mut text = serde_json::to_vec_pretty(&JsonHeader::new(header, Some(ENCODING_NOTE)))
            .map_err(|e| TransferError::io(schema_path, e))?;
        text.push(b'\n');
        crate::owner_only::write(schema_path, text)
            .map_err(|e| TransferError::io(schema_path, e))?;
        if !with_rows {
            return Ok(None);
        }
        let file = crate::owner_only::create(path).map_err(|e| TransferError::io(path, e))?;
        let mut w = csv::WriterBuilder::new()
            .terminator(csv::Terminator::CRLF)
            .from_writer(BufWriter::with_capacity(1 << 20, file));
        w.write_record(header.table.columns.iter().map(|c| c.name.as_str()))
            .map_err(|e| TransferError::io(path, e))?;
        Ok(Some(CsvWriter {
            w,
            path: path.to_path_buf(),
            columns: header.table.columns.clone(),
            cells: Vec::new(),
        }))
    }
}

impl TableWriter for CsvWriter {
    fn write_row(&mut self, row: &[Value]) -> Result<(), TransferError> {
        self.cells.clear();
        for (v, col) in row.iter().zip(&self.columns) {
            self.cells.push(encode_cell(v, col));
        }
        self.w
            .write_record(&self.cells)
            .map_err(|e| TransferError::io(&self.path, e))
    }

    fn finish(mut self: Box<Self>) -> Result<u64, TransferError> {
        self.w
            .flush()
            .map_err(|e| TransferError::io(&self.path, e))?;
        let len = std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        Ok(len)
    }
}

pub struct CsvReader {
    r: csv::Reader<BufReader<File>>,
    file: String,
    schema: TableSchema,
    record: csv::ByteRecord,
    row: u64,
    /// Line the current record starts on (counted here: the csv crate's positions lag).
    line: u64,
    next_line: u64,
    done: bool,
}

/// Lines a record spans: its terminator plus newlines inside quoted fields.
fn lines_of(r: &csv::ByteRecord) -> u64 {
    1 + r
        .iter()
        .map(|f| f.iter().filter(|&&b| b == b'\n').count() as u64)
        .sum::<u64>()
}

impl CsvReader {
    /// Opens the schema file and, if the export has rows, the CSV (checking its header row).
    pub fn open(
        schema_path: &Path,
        path: Option<&Path>,
    ) -> Result<(TableHeader, Option<CsvReader>), InputError> {
        let sfile = display_name(schema_path);
        let text = std::fs::read(schema_path)
            .map_err(|e| InputError::new(&sfile, Loc::File, format!("cannot read: {e}")))?;
        let header = JsonHeader::parse(&text, &sfile, Loc::File)?;
        let Some(path) = path else {
            return Ok((header, None));
        };
        let file = display_name(path);
        let f = File::open(path)
            .map_err(|e| InputError::new(&file, Loc::File, format!("cannot open: {e}")))?;
        let mut r = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(BufReader::with_capacity(1 << 20, f));
        let mut names = csv::ByteRecord::new();
        let err = |m: String| InputError::new(&file, Loc::Line(1), m);
        match r.read_byte_record(&mut names) {
            Ok(true) => {}
            Ok(false) => return Err(err("empty file: no header row".into())),
            Err(e) => return Err(err(format!("invalid CSV: {e}"))),
        }
        let want: Vec<&[u8]> = header
            .table
            .columns
            .iter()
            .map(|c| c.name.as_bytes())
            .collect();
        let got: Vec<&[u8]> = names.iter().collect();
        if got != want {
            let got: Vec<String> = got
                .iter()
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .collect();
            let want: Vec<&str> = header
                .table
                .columns
                .iter()
                .map(|c| c.name.as_str())
                .collect();
            return Err(err(format!(
                "header row {got:?} is not the table's columns {want:?}"
            )));
        }
        let reader = CsvReader {
            r,
            file,
            schema: header.table.clone(),
            record: csv::ByteRecord::new(),
            row: 0,
            line: 1,
            next_line: 1 + lines_of(&names),
            done: false,
        };
        Ok((header, Some(reader)))
    }

    fn parse_record(&self) -> Result<Vec<Value>, InputError> {
        let loc = Loc::Row {
            row: self.row,
            line: self.line,
        };
        let err = |m: String| InputError::new(&self.file, loc.clone(), m);
        let cols = &self.schema.columns;
        if self.record.len() != cols.len() {
            return Err(err(format!(
                "{} fields, the table has {} columns",
                self.record.len(),
                cols.len()
            )));
        }
        let mut row = Vec::with_capacity(cols.len());
        for (raw, col) in self.record.iter().zip(cols) {
            let cell = std::str::from_utf8(raw).map_err(|e| {
                err(format!(
                    "invalid UTF-8 at byte {} of the field",
                    e.valid_up_to()
                ))
                .column(&col.name)
            })?;
            row.push(decode_cell(cell, col).map_err(|m| err(m).column(&col.name))?);
        }
        check_row(&self.schema, &row).map_err(|(c, m)| err(m).column(c))?;
        Ok(row)
    }
}

impl RowReader for CsvReader {
    fn next_row(&mut self) -> Option<Result<Vec<Value>, InputError>> {
        if self.done {
            return None;
        }
        let line = self.next_line;
        match self.r.read_byte_record(&mut self.record) {
            Ok(false) => {
                self.done = true;
                None
            }
            Ok(true) => {
                self.row += 1;
                self.line = line;
                self.next_line = line + lines_of(&self.record);
                Some(self.parse_record())
            }
            Err(e) => {
                self.row += 1;
                // A broken quote makes the rest unreadable; other errors are per record.
                self.done = !matches!(e.kind(), csv::ErrorKind::UnequalLengths { .. });
                let loc = Loc::Row {
                    row: self.row,
                    line,
                };
                Some(Err(InputError::new(
                    &self.file,
                    loc,
                    format!("invalid CSV: {e}"),
                )))
            }
        }
    }

    fn loc(&self) -> Loc {
        Loc::Row {
            row: self.row,
            line: self.line,
        }
    }
}
