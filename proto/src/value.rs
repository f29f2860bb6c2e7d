//! The column value model. Every MySQL/MariaDB column type maps to one variant without loss:
//! integers keep their signedness and width is known from the column, DECIMAL stays text,
//! temporal values keep microseconds and zero dates, character data stays in the bytes of the
//! column's character set (so latin1 and utf8mb4 both round-trip byte for byte).

use serde::{Deserialize, Serialize};

/// One column value of a row image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    Null,
    /// TINYINT..BIGINT signed.
    Int(i64),
    /// TINYINT..BIGINT UNSIGNED.
    UInt(u64),
    Float(f32),
    Double(f64),
    /// DECIMAL/NUMERIC as the server prints it (e.g. `-12.3400`): never rounded through a float.
    Decimal(String),
    /// DATE; `0000-00-00` is all zeros.
    Date {
        year: u16,
        month: u8,
        day: u8,
    },
    /// TIME, range -838:59:59.999999 ..= 838:59:59.999999.
    Time {
        negative: bool,
        hours: u32,
        minutes: u8,
        seconds: u8,
        micros: u32,
    },
    /// DATETIME(0..6); zero dates are all zeros.
    DateTime {
        year: u16,
        month: u8,
        day: u8,
        hour: u8,
        minute: u8,
        second: u8,
        micros: u32,
    },
    /// TIMESTAMP(0..6) as seconds since the Unix epoch, UTC; `0` is the zero timestamp.
    Timestamp {
        secs: u64,
        micros: u32,
    },
    /// YEAR: 0 (zero year) or 1901..=2155.
    Year(u16),
    /// CHAR/VARCHAR/TEXT: the bytes in the column's character set (see [`crate::Column::charset`]).
    Text(Vec<u8>),
    /// BINARY/VARBINARY/BLOB.
    Bytes(Vec<u8>),
    /// ENUM: 1-based index into [`crate::Column::enum_values`]; 0 is the empty error value.
    Enum(u16),
    /// SET: bit i set = member i of [`crate::Column::enum_values`].
    Set(u64),
    /// BIT(M), M <= 64, right-aligned.
    Bit(u64),
    /// JSON as text (MySQL's binary JSON is rendered to text; MariaDB's JSON is text already).
    Json(String),
    /// GEOMETRY in the server's internal format: 4-byte little-endian SRID then WKB.
    Geometry(Vec<u8>),
}
