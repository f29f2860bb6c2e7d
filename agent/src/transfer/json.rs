//! The JSON format: JSON Lines, one `<db>.<table>.jsonl` per table, written as rows stream in.
//!
//! ```text
//! {"fleetsync_export":1,"table":{TableSchema},"create_sql":"CREATE TABLE ..."}
//! {"id":1,"name":"x","created":"2024-01-02 03:04:05","blob":"AAE="}
//! ...
//! ```
//!
//! Line 1 is the header; every further line is one row: an object of every column (in table
//! order), each value rendered by [`fleetsync_proto::codec::value_to_json`], the change-record
//! value model (integers exact, DECIMAL as a string, TIMESTAMP as UTC `...Z`, binary as
//! base64, latin1 text decoded, non-UTF-8 text as `{"base64": ...}`, ENUM/SET by label).
//! One exception, for byte-exactness: a JSON column holds its document *text* as a JSON
//! string (the value model embeds the parsed document, which normalises spaces and number
//! spelling, and cannot tell a JSON `null` document from SQL NULL). Import also accepts an
//! embedded document for a JSON column (stored as its compact text).

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use fleetsync_proto::codec::{value_from_json, value_to_json};
use fleetsync_proto::{Column, ColumnType, TableSchema, Value};
use serde::{Deserialize, Serialize};
use serde_json::Value as J;

use super::{
    check_row, display_name, InputError, Loc, RowReader, TableHeader, TableWriter, TransferError,
    FORMAT_VERSION,
};

/// The header line (also the CSV schema file, with `csv` set).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonHeader {
    pub fleetsync_export: u32,
    pub table: TableSchema,
    pub create_sql: Option<String>,
    /// CSV only: how cells are encoded (for people; import follows the fixed rules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csv: Option<String>,
}

impl JsonHeader {
    pub fn new(h: &TableHeader, csv: Option<&str>) -> Self {
        JsonHeader {
            fleetsync_export: FORMAT_VERSION,
            table: h.table.clone(),
            create_sql: h.create_sql.clone(),
            csv: csv.map(str::to_owned),
        }
    }

    /// Parses a header, checking the version.
    pub fn parse(bytes: &[u8], file: &str, loc: Loc) -> Result<TableHeader, InputError> {
        let h: JsonHeader = serde_json::from_slice(bytes)
            .map_err(|e| InputError::new(file, loc.clone(), format!("invalid header: {e}")))?;
        if h.fleetsync_export != FORMAT_VERSION {
            return Err(InputError::new(
                file,
                loc,
                format!("format version {} is not supported", h.fleetsync_export),
            ));
        }
        Ok(TableHeader {
            table: h.table,
            create_sql: h.create_sql,
        })
    }
}

/// One value as JSON for this format (see the module docs for the JSON-column rule).
pub fn cell_to_json(v: &Value, col: &Column) -> J {
    match v {
        Value::Json(text) => J::String(text.clone()),
        _ => value_to_json(v, col),
    }
}

/// Inverse of [`cell_to_json`].
pub fn cell_from_json(j: &J, col: &Column) -> Result<Value, String> {
    match (col.ty, j) {
        (_, J::Null) => Ok(Value::Null),
        (ColumnType::Json, J::String(s)) => Ok(Value::Json(s.clone())),
        (ColumnType::Json, other) => Ok(Value::Json(other.to_string())),
        _ => value_from_json(j, col).map_err(short_error),
    }
}

/// A value error without the column name (the caller's [`InputError`] carries it).
pub fn short_error(e: fleetsync_proto::CodecError) -> String {
    match e {
        fleetsync_proto::CodecError::InvalidValue {
            column_type,
            expected,
            found,
            ..
        } => format!("{column_type}: expected {expected}, found {found}"),
        other => other.to_string(),
    }
}

pub struct JsonWriter {
    out: BufWriter<File>,
    path: PathBuf,
    columns: Vec<Column>,
    buf: Vec<u8>,
    bytes: u64,
}

impl JsonWriter {
    pub fn create(path: &Path, header: &TableHeader) -> Result<JsonWriter, TransferError> {
        let file = crate::owner_only::create(path).map_err(|e| TransferError::io(path, e))?;
        let mut w = JsonWriter {
            out: BufWriter::with_capacity(1 << 20, file),
            path: path.to_path_buf(),
            columns: header.table.columns.clone(),
            buf: Vec::new(),
            bytes: 0,
        };
        let mut line = serde_json::to_vec(&JsonHeader::new(header, None))
            .map_err(|e| TransferError::io(path, e))?;
        line.push(b'\n');
        w.put(&line)?;
        Ok(w)
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), TransferError> {
        self.bytes += bytes.len() as u64;
        self.out
            .write_all(bytes)
            .map_err(|e| TransferError::io(&self.path, e))
    }
}

impl TableWriter for JsonWriter {
    fn write_row(&mut self, row: &[Value]) -> Result<(), TransferError> {
        // Written field by field to keep the table's column order.
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        buf.push(b'{');
        for (i, (col, v)) in self.columns.iter().zip(row).enumerate() {
            if i > 0 {
                buf.push(b',');
            }
            let r = serde_json::to_writer(&mut buf, &col.name).and_then(|()| {
                buf.push(b':');
                serde_json::to_writer(&mut buf, &cell_to_json(v, col))
            });
            r.map_err(|e| TransferError::io(&self.path, e))?;
        }
        buf.extend_from_slice(b"}\n");
        let r = self.put(&buf);
        self.buf = buf;
        r
    }

    fn finish(mut self: Box<Self>) -> Result<u64, TransferError> {
        self.out
            .flush()
            .map_err(|e| TransferError::io(&self.path, e))?;
        Ok(self.bytes)
    }
}

pub struct JsonReader {
    r: BufReader<File>,
    file: String,
    schema: TableSchema,
    line: u64,
    buf: Vec<u8>,
    /// A read error ends the file.
    failed: bool,
}

impl JsonReader {
    pub fn open(path: &Path) -> Result<(TableHeader, JsonReader), InputError> {
        let file = display_name(path);
        let f = File::open(path)
            .map_err(|e| InputError::new(&file, Loc::File, format!("cannot open: {e}")))?;
        let mut r = BufReader::with_capacity(1 << 20, f);
        let mut buf = Vec::new();
        r.read_until(b'\n', &mut buf)
            .map_err(|e| InputError::new(&file, Loc::Line(1), format!("cannot read: {e}")))?;
        if buf.iter().all(u8::is_ascii_whitespace) {
            return Err(InputError::new(
                &file,
                Loc::Line(1),
                "empty file: no header line",
            ));
        }
        let header = JsonHeader::parse(&buf, &file, Loc::Line(1))?;
        let reader = JsonReader {
            r,
            file,
            schema: header.table.clone(),
            line: 1,
            buf,
            failed: false,
        };
        Ok((header, reader))
    }

    fn parse_row(&self) -> Result<Vec<Value>, InputError> {
        let err = |m: String| InputError::new(&self.file, Loc::Line(self.line), m);
        let j: J =
            serde_json::from_slice(&self.buf).map_err(|e| err(format!("invalid JSON: {e}")))?;
        let J::Object(obj) = j else {
            return Err(err("a row must be a JSON object".into()));
        };
        let cols = &self.schema.columns;
        if let Some(k) = obj.keys().find(|k| !cols.iter().any(|c| &c.name == *k)) {
            return Err(err(format!("unknown column `{k}`")));
        }
        let row = cols
            .iter()
            .map(|col| {
                let v = obj
                    .get(&col.name)
                    .ok_or_else(|| err("missing".into()).column(&col.name))?;
                cell_from_json(v, col).map_err(|m| err(m).column(&col.name))
            })
            .collect::<Result<Vec<_>, _>>()?;
        check_row(&self.schema, &row).map_err(|(c, m)| err(m).column(c))?;
        Ok(row)
    }
}

impl RowReader for JsonReader {
    fn next_row(&mut self) -> Option<Result<Vec<Value>, InputError>> {
        if self.failed {
            return None;
        }
        loop {
            self.buf.clear();
            self.line += 1;
            match self.r.read_until(b'\n', &mut self.buf) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => {
                    let e = InputError::new(
                        &self.file,
                        Loc::Line(self.line),
                        format!("cannot read: {e}"),
                    );
                    return Some(Err(e));
                }
            }
            if !self.buf.iter().all(u8::is_ascii_whitespace) {
                return Some(self.parse_row());
            }
        }
    }

    fn loc(&self) -> Loc {
        Loc::Line(self.line)
    }
}
