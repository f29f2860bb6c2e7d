//! The binary protocol's side of rendering (`apply_protocol = "binary"`): row statements as
//! prepared statements with `?` placeholders, values bound in binary form.
//!
//! * **Statement shapes.** A multi-row statement is prepared for a fixed number of rows, one
//!   of [`row_classes`] (1 and [`ROWS_PER_STMT`], fewer when the table is so wide that the
//!   placeholders would pass [`MAX_PLACEHOLDERS`]), so a table has at most two shapes per
//!   kind of statement and the connection's statement cache stays small.
//! * **Execution.** The rows of one [`render_part`](super::render_part) call are split into
//!   runs of one class ([`split_rows`]); each run is one `exec_batch` of that statement with
//!   one parameter set per group of rows. On MariaDB, mysql_async sends the sets as one
//!   `COM_STMT_BULK_EXECUTE` (array binding: one round trip for the whole run); elsewhere it
//!   executes them one by one.
//! * **Values** are encoded into the query buffer ([`push_param`]) so that its length still
//!   measures what waits to be sent, and decoded into `mysql_async` values at send time
//!   ([`read_params`]). Integers, ENUM/SET/BIT numbers, FLOAT and DOUBLE go as binary numbers;
//!   character and binary data as raw bytes (the session is `SET NAMES binary`, as for text
//!   literals); DECIMAL, dates and times as the same text the literal holds (the server
//!   converts them exactly as it converts the literal). JSON columns take their placeholder as
//!   `CONVERT(? USING utf8mb4)`, as the text path writes `_utf8mb4'…'`.
//!
//! The statements are the text path's (upsert, plain insert, delete by key): replaying a
//! batch gives the same rows whichever protocol ran it.

use fleetsync_proto::{Column, ColumnType, Value};

use super::sql::{push_value, TableSql, ValueError};

/// Rows of the large statement class.
pub(crate) const ROWS_PER_STMT: usize = 128;
/// The protocol's limit of placeholders in one statement.
pub(crate) const MAX_PLACEHOLDERS: usize = 65_535;

const TAG_NULL: u8 = 0;
const TAG_INT: u8 = 1;
const TAG_UINT: u8 = 2;
const TAG_FLOAT: u8 = 3;
const TAG_DOUBLE: u8 = 4;
const TAG_BYTES: u8 = 5;

/// The statement classes (rows per statement) for a statement with `per_row` placeholders
/// per row, smallest first: `[1, n]` with `n` = [`ROWS_PER_STMT`] or fewer (at least 1) so
/// that `n * per_row` stays within [`MAX_PLACEHOLDERS`].
pub(crate) fn row_classes(per_row: usize) -> [usize; 2] {
    let fit = MAX_PLACEHOLDERS / per_row.max(1);
    [1, ROWS_PER_STMT.min(fit).max(1)]
}

/// Splits `n` rows into runs of `(rows per statement, statements)`, largest class first; the
/// runs cover exactly `n` rows.
pub(crate) fn split_rows(n: usize, classes: [usize; 2]) -> Vec<(usize, usize)> {
    let mut out = Vec::with_capacity(2);
    let mut left = n;
    for &class in classes.iter().rev() {
        let sets = left / class;
        if sets > 0 {
            out.push((class, sets));
            left -= sets * class;
        }
    }
    out
}

/// The placeholder of one column: `CONVERT(? USING utf8mb4)` for JSON, `?` otherwise.
fn placeholder(col: &Column) -> &'static [u8] {
    if col.ty == ColumnType::Json {
        b"CONVERT(? USING utf8mb4)"
    } else {
        b"?"
    }
}

/// `INSERT INTO t (...) VALUES (?,?),(?,?)...` for `rows` rows, with the upsert tail when
/// `upsert`.
pub(crate) fn insert_text(
    sql: &TableSql,
    columns: &[Column],
    rows: usize,
    upsert: bool,
) -> Vec<u8> {
    let mut row = vec![b'('];
    for (i, c) in columns.iter().enumerate() {
        if i > 0 {
            row.push(b',');
        }
        row.extend_from_slice(placeholder(c));
    }
    row.push(b')');
    let mut text = Vec::with_capacity(sql.insert_head.len() + rows * (row.len() + 1) + 64);
    text.extend_from_slice(&sql.insert_head);
    for i in 0..rows {
        if i > 0 {
            text.push(b',');
        }
        text.extend_from_slice(&row);
    }
    if upsert {
        text.extend_from_slice(&sql.upsert_tail);
    }
    text
}

/// `DELETE FROM t WHERE k IN (?,?,...)` (or `(a,b) IN ((?,?),...)`) for `rows` keys.
pub(crate) fn delete_text(
    sql: &TableSql,
    columns: &[Column],
    key: &[usize],
    rows: usize,
) -> Vec<u8> {
    let mut one = Vec::new();
    if key.len() != 1 {
        one.push(b'(');
    }
    for (n, &k) in key.iter().enumerate() {
        if n > 0 {
            one.push(b',');
        }
        one.extend_from_slice(columns.get(k).map_or(b"?" as &[u8], placeholder));
    }
    if key.len() != 1 {
        one.push(b')');
    }
    let mut text = sql.delete_head.clone();
    for i in 0..rows {
        if i > 0 {
            text.push(b',');
        }
        text.extend_from_slice(&one);
    }
    text.push(b')');
    text
}

/// Appends `v` as an encoded parameter (see the module docs for the forms).
pub(crate) fn push_param(buf: &mut Vec<u8>, v: &Value) -> Result<(), ValueError> {
    match v {
        Value::Null => buf.push(TAG_NULL),
        Value::Int(n) => {
            buf.push(TAG_INT);
            buf.extend_from_slice(&n.to_le_bytes());
        }
        Value::UInt(n) => push_uint(buf, *n),
        Value::Year(y) => push_uint(buf, u64::from(*y)),
        Value::Enum(i) => push_uint(buf, u64::from(*i)),
        Value::Set(bits) | Value::Bit(bits) => push_uint(buf, *bits),
        Value::Float(f) => {
            if !f.is_finite() {
                return Err(ValueError(format!(
                    "{f} cannot be stored in a FLOAT/DOUBLE column"
                )));
            }
            buf.push(TAG_FLOAT);
            buf.extend_from_slice(&f.to_le_bytes());
        }
        Value::Double(d) => {
            if !d.is_finite() {
                return Err(ValueError(format!(
                    "{d} cannot be stored in a FLOAT/DOUBLE column"
                )));
            }
            buf.push(TAG_DOUBLE);
            buf.extend_from_slice(&d.to_le_bytes());
        }
        Value::Text(b) | Value::Bytes(b) | Value::Geometry(b) => push_bytes(buf, b),
        Value::Json(s) => push_bytes(buf, s.as_bytes()),
        Value::Decimal(_)
        | Value::Date { .. }
        | Value::Time { .. }
        | Value::DateTime { .. }
        | Value::Timestamp { .. } => {
            // The literal's text: a DECIMAL as is, the temporal types between quotes (which
            // hold no other quote).
            buf.push(TAG_BYTES);
            let len_at = buf.len();
            buf.extend_from_slice(&[0; 4]);
            let start = buf.len();
            push_value(buf, v)?;
            if buf.get(start) == Some(&b'\'') && buf.last() == Some(&b'\'') {
                buf.pop();
                buf.remove(start);
            }
            let len = u32::try_from(buf.len() - start)
                .map_err(|_| ValueError("value longer than 4 GiB".into()))?;
            buf[len_at..start].copy_from_slice(&len.to_le_bytes());
        }
    }
    Ok(())
}

fn push_uint(buf: &mut Vec<u8>, n: u64) {
    buf.push(TAG_UINT);
    buf.extend_from_slice(&n.to_le_bytes());
}

fn push_bytes(buf: &mut Vec<u8>, b: &[u8]) {
    buf.push(TAG_BYTES);
    // A row value longer than 4 GiB cannot reach a server (max_allowed_packet <= 1 GiB).
    let len = u32::try_from(b.len()).unwrap_or(u32::MAX);
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&b[..len as usize]);
}

/// Decodes `count` parameters from the front of `bytes` (written by [`push_param`]); returns
/// them and the bytes after them.
pub(crate) fn read_params(
    mut bytes: &[u8],
    count: usize,
) -> Result<(Vec<mysql_async::Value>, &[u8]), String> {
    use mysql_async::Value as V;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let (&tag, rest) = bytes
            .split_first()
            .ok_or_else(|| "parameter buffer ends early".to_string())?;
        let take = |rest: &[u8], n: usize| -> Result<([u8; 8], usize), String> {
            let mut a = [0u8; 8];
            let src = rest.get(..n).ok_or("parameter buffer ends early")?;
            a[..n].copy_from_slice(src);
            Ok((a, n))
        };
        let (v, used) = match tag {
            TAG_NULL => (V::NULL, 0),
            TAG_INT => {
                let (a, n) = take(rest, 8)?;
                (V::Int(i64::from_le_bytes(a)), n)
            }
            TAG_UINT => {
                let (a, n) = take(rest, 8)?;
                (V::UInt(u64::from_le_bytes(a)), n)
            }
            TAG_FLOAT => {
                let (a, n) = take(rest, 4)?;
                (V::Float(f32::from_le_bytes([a[0], a[1], a[2], a[3]])), n)
            }
            TAG_DOUBLE => {
                let (a, n) = take(rest, 8)?;
                (V::Double(f64::from_le_bytes(a)), n)
            }
            TAG_BYTES => {
                let (a, _) = take(rest, 4)?;
                let len = u32::from_le_bytes([a[0], a[1], a[2], a[3]]) as usize;
                let data = rest.get(4..4 + len).ok_or("parameter buffer ends early")?;
                (V::Bytes(data.to_vec()), 4 + len)
            }
            other => return Err(format!("unknown parameter tag {other}")),
        };
        out.push(v);
        bytes = rest.get(used..).unwrap_or_default();
    }
    Ok((out, bytes))
}

#[cfg(test)]
#[path = "bind_tests.rs"]
mod tests;
