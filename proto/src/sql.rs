//! SQL text for values: identifiers and literals, rendered straight into one reusable byte
//! buffer (no allocation per value). Shared by the applier, backups and exports, so that every
//! path writes a value the same, exact way.
//!
//! The session runs with `SET NAMES binary`, so a quoted literal is taken byte for byte:
//! character data is already in the bytes of its column's character set (latin1 and utf8mb4
//! alike) and the server copies it into the column unchanged. With `time_zone='+00:00'`, a
//! TIMESTAMP is written as the UTC civil time of its epoch seconds.
//!
//! Literal forms (checked against MariaDB 10.11):
//! * FLOAT is written as the exact double of the f32 in exponent form (`1.100000023841858e0`):
//!   it stores the same f32, and unlike the short form (`1.1e0`) it also compares equal to the
//!   stored FLOAT in a `WHERE` (the server compares FLOAT as a double).
//! * DOUBLE uses Rust's shortest round-trip form, in exponent form so that the server reads an
//!   approximate-value literal, never a 300-digit DECIMAL.
//! * ENUM, SET and BIT are written as their numbers (index, bitmask, value).
//! * GEOMETRY is a hex literal of the server's internal format (SRID + WKB), which the
//!   server accepts as is.
//! * Zero dates (`'0000-00-00'`) are accepted because the session's sql_mode is not strict.

use std::io::Write as _;

use crate::Value;

/// Why a value cannot be rendered as a literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError(pub String);

impl std::fmt::Display for ValueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ValueError {}

/// Appends `` `name` ``, doubling any backtick inside.
pub fn push_ident(buf: &mut Vec<u8>, name: &str) {
    buf.push(b'`');
    for &b in name.as_bytes() {
        if b == b'`' {
            buf.push(b'`');
        }
        buf.push(b);
    }
    buf.push(b'`');
}

/// `` `name` `` as a string, doubling any backtick inside (for text that is built with
/// `format!`; [`push_ident`] appends to a byte buffer).
pub fn ident(name: &str) -> String {
    let mut buf = Vec::with_capacity(name.len() + 2);
    push_ident(&mut buf, name);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Appends `` `schema`.`table` ``.
pub fn push_table(buf: &mut Vec<u8>, schema: &str, table: &str) {
    push_ident(buf, schema);
    buf.push(b'.');
    push_ident(buf, table);
}

/// `` `schema`.`table` `` as a string, for messages.
pub fn table_name(schema: &str, table: &str) -> String {
    let mut buf = Vec::with_capacity(schema.len() + table.len() + 5);
    push_table(&mut buf, schema, table);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Appends a quoted string literal with `\0 ' \ \n \r \x1a` escaped; every other byte is
/// copied as is (the session character set is binary). Needs a sql_mode without
/// NO_BACKSLASH_ESCAPES, which the applier's session guarantees.
pub fn push_quoted(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.reserve(bytes.len() + 2);
    buf.push(b'\'');
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc = match b {
            0 => b'0',
            b'\'' => b'\'',
            b'\\' => b'\\',
            b'\n' => b'n',
            b'\r' => b'r',
            0x1a => b'Z',
            _ => continue,
        };
        buf.extend_from_slice(&bytes[start..i]);
        buf.push(b'\\');
        buf.push(esc);
        start = i + 1;
    }
    buf.extend_from_slice(&bytes[start..]);
    buf.push(b'\'');
}

/// Appends a decimal integer.
pub fn push_int_literal(buf: &mut Vec<u8>, n: u64) {
    push_int(buf, n);
}

fn push_int(buf: &mut Vec<u8>, n: impl itoa::Integer) {
    let mut b = itoa::Buffer::new();
    buf.extend_from_slice(b.format(n).as_bytes());
}

/// Appends `n` with at least `width` digits, zero-padded.
fn push_padded(buf: &mut Vec<u8>, n: u64, width: usize) {
    let mut b = itoa::Buffer::new();
    let s = b.format(n);
    for _ in s.len()..width {
        buf.push(b'0');
    }
    buf.extend_from_slice(s.as_bytes());
}

/// Appends `.ffffff` when `micros` is not zero.
fn push_micros(buf: &mut Vec<u8>, micros: u32) -> Result<(), ValueError> {
    if micros > 999_999 {
        return Err(ValueError(format!("microseconds {micros} out of range")));
    }
    if micros != 0 {
        buf.push(b'.');
        push_padded(buf, u64::from(micros), 6);
    }
    Ok(())
}

fn push_date(buf: &mut Vec<u8>, year: u64, month: u8, day: u8) {
    push_padded(buf, year, 4);
    buf.push(b'-');
    push_padded(buf, u64::from(month), 2);
    buf.push(b'-');
    push_padded(buf, u64::from(day), 2);
}

fn push_hms(buf: &mut Vec<u8>, hours: u64, minutes: u8, seconds: u8) {
    push_padded(buf, hours, 2);
    buf.push(b':');
    push_padded(buf, u64::from(minutes), 2);
    buf.push(b':');
    push_padded(buf, u64::from(seconds), 2);
}

/// Days since 1970-01-01 to the proleptic Gregorian (year, month, day).
pub fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let (year, month, day) = crate::calendar::civil_from_days(days);
    (year, month as u8, day as u8)
}

fn is_decimal_text(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().any(|b| b.is_ascii_digit())
        && s.bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
}

/// Appends `v` as a SQL literal (see the module docs for the forms).
pub fn push_value(buf: &mut Vec<u8>, v: &Value) -> Result<(), ValueError> {
    match v {
        Value::Null => buf.extend_from_slice(b"NULL"),
        Value::Int(n) => push_int(buf, *n),
        Value::UInt(n) => push_int(buf, *n),
        Value::Float(f) => push_double(buf, f64::from(*f))?,
        Value::Double(d) => push_double(buf, *d)?,
        Value::Decimal(s) => {
            if !is_decimal_text(s) {
                return Err(ValueError(format!("invalid DECIMAL text {s:?}")));
            }
            buf.extend_from_slice(s.as_bytes());
        }
        Value::Date { year, month, day } => {
            buf.push(b'\'');
            push_date(buf, u64::from(*year), *month, *day);
            buf.push(b'\'');
        }
        Value::Time {
            negative,
            hours,
            minutes,
            seconds,
            micros,
        } => {
            buf.push(b'\'');
            if *negative {
                buf.push(b'-');
            }
            push_hms(buf, u64::from(*hours), *minutes, *seconds);
            push_micros(buf, *micros)?;
            buf.push(b'\'');
        }
        Value::DateTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
            micros,
        } => {
            buf.push(b'\'');
            push_date(buf, u64::from(*year), *month, *day);
            buf.push(b' ');
            push_hms(buf, u64::from(*hour), *minute, *second);
            push_micros(buf, *micros)?;
            buf.push(b'\'');
        }
        Value::Timestamp { secs, micros } => push_timestamp(buf, *secs, *micros)?,
        Value::Year(y) => push_int(buf, *y),
        Value::Text(b) | Value::Bytes(b) => push_quoted(buf, b),
        Value::Enum(i) => push_int(buf, *i),
        Value::Set(bits) | Value::Bit(bits) => push_int(buf, *bits),
        // MySQL 8 refuses binary-charset strings for JSON columns; MariaDB's JSON is utf8mb4
        // LONGTEXT. The introducer makes the literal utf8mb4 for both.
        Value::Json(s) => {
            buf.extend_from_slice(b"_utf8mb4");
            push_quoted(buf, s.as_bytes());
        }
        Value::Geometry(b) => push_hex(buf, b),
    }
    Ok(())
}

fn push_double(buf: &mut Vec<u8>, d: f64) -> Result<(), ValueError> {
    if !d.is_finite() {
        return Err(ValueError(format!(
            "{d} cannot be stored in a FLOAT/DOUBLE column"
        )));
    }
    // Writing to a Vec cannot fail.
    let _ = write!(buf, "{d:e}");
    Ok(())
}

fn push_timestamp(buf: &mut Vec<u8>, secs: u64, micros: u32) -> Result<(), ValueError> {
    if secs == 0 && micros == 0 {
        buf.extend_from_slice(b"'0000-00-00 00:00:00'");
        return Ok(());
    }
    let days = i64::try_from(secs / 86_400)
        .map_err(|_| ValueError(format!("TIMESTAMP {secs} out of range")))?;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    buf.push(b'\'');
    push_date(buf, year.unsigned_abs(), month, day);
    buf.push(b' ');
    push_hms(buf, rem / 3_600, ((rem / 60) % 60) as u8, (rem % 60) as u8);
    push_micros(buf, micros)?;
    buf.push(b'\'');
    Ok(())
}

/// Appends `X'hex'`.
pub fn push_hex(buf: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    buf.reserve(bytes.len() * 2 + 3);
    buf.extend_from_slice(b"X'");
    for &b in bytes {
        buf.push(HEX[usize::from(b >> 4)]);
        buf.push(HEX[usize::from(b & 0xf)]);
    }
    buf.push(b'\'');
}

/// Appends `(v1,v2,...)`.
pub fn push_row(buf: &mut Vec<u8>, image: &[Value]) -> Result<(), ValueError> {
    buf.push(b'(');
    for (i, v) in image.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        push_value(buf, v)?;
    }
    buf.push(b')');
    Ok(())
}
