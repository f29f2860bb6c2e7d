//! Row-image decoding: TABLE_MAP + information_schema -> [`TableInfo`]; rows events ->
//! [`fleetsync_proto::Value`]s.
//!
//! Decoding is driven by the TABLE_MAP (the historical truth of how the bytes are laid out);
//! information_schema supplies signedness, character-vs-binary, ENUM/SET members, generated
//! columns and the key, matched by column name. A column the TABLE_MAP has but the current
//! definition lacks (dropped since) is decoded from the TABLE_MAP alone.

use std::io;
use std::sync::Arc;

use fleetsync_proto::{Column, ColumnType, KeyKind, TableSchema, Value};
use mysql_common::binlog::events::{OptionalMetadataField, TableMapEvent};
use mysql_common::binlog::value::BinlogValue;
use mysql_common::constants::ColumnType as My;
use mysql_common::io::ParseBuf;

use crate::schema::InfoTable;

/// How to decode one TABLE_MAP column.
#[derive(Debug, Clone)]
pub struct ColDecode {
    my: My,
    meta: Vec<u8>,
    unsigned: bool,
    ty: ColumnType,
    /// False for generated columns: decoded (to move past the bytes) but not kept.
    keep: bool,
}

/// A decoded TABLE_MAP: the proto schema of kept columns plus per-column decoders.
#[derive(Debug, Clone)]
pub struct TableInfo {
    pub schema: Arc<TableSchema>,
    pub cols: Vec<ColDecode>,
    /// Raw TABLE_MAP identity, to reuse this decoding when the same map repeats.
    pub fingerprint: (Vec<u8>, Vec<u8>),
}

/// Column names from the TABLE_MAP's optional metadata (binlog_row_metadata=FULL).
pub fn tme_column_names(tme: &TableMapEvent<'_>) -> Option<Vec<String>> {
    for field in tme.iter_optional_meta() {
        if let Ok(OptionalMetadataField::ColumnName(names)) = field {
            return names
                .iter_names()
                .map(|n| n.ok().map(|n| n.name().into_owned()))
                .collect();
        }
    }
    None
}

pub fn tme_fingerprint(tme: &TableMapEvent<'_>) -> (Vec<u8>, Vec<u8>) {
    let mut types = Vec::with_capacity(tme.columns_count() as usize);
    for i in 0..tme.columns_count() as usize {
        types.push(
            tme.get_raw_column_type(i)
                .ok()
                .flatten()
                .map(|t| t as u8)
                .unwrap_or(0),
        );
    }
    let mut names = tme.database_name_raw().to_vec();
    names.push(b'.');
    names.extend_from_slice(tme.table_name_raw());
    for i in 0..tme.columns_count() as usize {
        names.extend_from_slice(tme.get_column_metadata(i).unwrap_or(&[]));
    }
    if let Some(cols) = tme_column_names(tme) {
        for c in cols {
            names.push(0);
            names.extend_from_slice(c.as_bytes());
        }
    }
    (types, names)
}

/// Builds the decoder for a TABLE_MAP, using `info` (the current definition) where it agrees.
pub fn build_table_info(
    tme: &TableMapEvent<'_>,
    info: Option<&InfoTable>,
) -> Result<TableInfo, String> {
    let names = tme_column_names(tme).ok_or_else(|| {
        "the TABLE_MAP event carries no column names: set binlog_row_metadata=FULL".to_string()
    })?;
    let n = tme.columns_count() as usize;
    if names.len() != n {
        return Err(format!(
            "TABLE_MAP has {n} columns but {} names",
            names.len()
        ));
    }
    let mut cols = Vec::with_capacity(n);
    let mut columns = Vec::with_capacity(n);
    for (i, name) in names.iter().enumerate() {
        let my = match tme.get_column_type(i) {
            Ok(Some(t)) => t,
            Ok(None) => return Err(format!("column {name}: no type in TABLE_MAP")),
            Err(e) => return Err(format!("column {name}: {e}")),
        };
        let meta = tme.get_column_metadata(i).unwrap_or(&[]).to_vec();
        let from_map = family_of(my);
        let ic = info.and_then(|t| t.column(name));
        let ty = match ic {
            Some(ic) if compatible(from_map, ic.ty) => ic.ty,
            _ => from_map,
        };
        let unsigned = ic.map(|c| c.unsigned).unwrap_or(false);
        let keep = !ic.is_some_and(|c| c.generated);
        cols.push(ColDecode {
            my,
            meta,
            unsigned,
            ty,
            keep,
        });
        if keep {
            columns.push(Column {
                name: name.clone(),
                ty,
                column_type: ic
                    .filter(|c| c.ty == ty)
                    .map(|c| c.column_type.clone())
                    .unwrap_or_else(|| format!("{ty:?}").to_lowercase()),
                unsigned,
                nullable: ic.map(|c| c.nullable).unwrap_or(true),
                charset: ic.and_then(|c| c.charset.clone()),
                enum_values: ic.map(|c| c.enum_values.clone()).unwrap_or_default(),
            });
        }
    }
    let (key, key_kind) = match info {
        Some(t) if t.key_kind != KeyKind::None => {
            let idx: Option<Vec<u16>> = t
                .key
                .iter()
                .map(|k| {
                    columns
                        .iter()
                        .position(|c| c.name.eq_ignore_ascii_case(k))
                        .map(|p| p as u16)
                })
                .collect();
            match idx {
                Some(idx) => (idx, t.key_kind),
                None => (Vec::new(), KeyKind::None),
            }
        }
        _ => (Vec::new(), KeyKind::None),
    };
    let schema = TableSchema {
        schema: tme.database_name().into_owned(),
        table: tme.table_name().into_owned(),
        columns,
        key,
        key_kind,
        transactional: info.map(|t| t.transactional).unwrap_or(true),
    };
    Ok(TableInfo {
        schema: Arc::new(schema),
        cols,
        fingerprint: tme_fingerprint(tme),
    })
}

/// The value family the TABLE_MAP's wire type decodes to.
fn family_of(my: My) -> ColumnType {
    use ColumnType::*;
    match my {
        My::MYSQL_TYPE_TINY => TinyInt,
        My::MYSQL_TYPE_SHORT => SmallInt,
        My::MYSQL_TYPE_INT24 => MediumInt,
        My::MYSQL_TYPE_LONG => Int,
        My::MYSQL_TYPE_LONGLONG => BigInt,
        My::MYSQL_TYPE_NEWDECIMAL | My::MYSQL_TYPE_DECIMAL => Decimal,
        My::MYSQL_TYPE_FLOAT => Float,
        My::MYSQL_TYPE_DOUBLE => Double,
        My::MYSQL_TYPE_BIT => Bit,
        My::MYSQL_TYPE_DATE | My::MYSQL_TYPE_NEWDATE => Date,
        My::MYSQL_TYPE_TIME | My::MYSQL_TYPE_TIME2 => Time,
        My::MYSQL_TYPE_DATETIME | My::MYSQL_TYPE_DATETIME2 => DateTime,
        My::MYSQL_TYPE_TIMESTAMP | My::MYSQL_TYPE_TIMESTAMP2 => Timestamp,
        My::MYSQL_TYPE_YEAR => Year,
        My::MYSQL_TYPE_ENUM => Enum,
        My::MYSQL_TYPE_SET => Set,
        My::MYSQL_TYPE_JSON => Json,
        My::MYSQL_TYPE_GEOMETRY => Geometry,
        My::MYSQL_TYPE_VARCHAR | My::MYSQL_TYPE_VAR_STRING => VarBinary,
        My::MYSQL_TYPE_STRING => Binary,
        _ => Blob,
    }
}

/// Whether information_schema's family can describe bytes of the TABLE_MAP's family.
fn compatible(from_map: ColumnType, info: ColumnType) -> bool {
    use ColumnType::*;
    let strings = |t| matches!(t, Char | VarChar | Text | Binary | VarBinary | Blob | Json);
    from_map == info
        || (strings(from_map) && strings(info))
        || (from_map == Blob && info == Geometry)
}

/// Decodes one row image. `present` marks the columns in the image (all of them with
/// binlog_row_image=FULL). Returns the kept columns' values in table order.
pub fn decode_image(
    buf: &mut ParseBuf<'_>,
    present: &[bool],
    info: &TableInfo,
) -> io::Result<Vec<Value>> {
    let n_present = present.iter().filter(|p| **p).count();
    let nulls: &[u8] = buf.parse(n_present.div_ceil(8))?;
    let mut out = Vec::with_capacity(info.schema.columns.len());
    for (image_idx, (i, col)) in info.cols.iter().enumerate().enumerate() {
        if !present.get(i).copied().unwrap_or(false) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "row image lacks a column: binlog_row_image must be FULL",
            ));
        }
        let is_null = nulls
            .get(image_idx / 8)
            .is_some_and(|b| b & (1 << (image_idx % 8)) != 0);
        let v = if is_null {
            Value::Null
        } else {
            decode_value(buf, col)?
        };
        if col.keep {
            out.push(v);
        }
    }
    Ok(out)
}

fn decode_value(buf: &mut ParseBuf<'_>, c: &ColDecode) -> io::Result<Value> {
    if c.my == My::MYSQL_TYPE_YEAR {
        // mysql_common maps 0 to 1900; the zero year must stay 0.
        let b: &[u8] = buf.parse(1)?;
        let y = u16::from(b.first().copied().unwrap_or(0));
        return Ok(Value::Year(if y == 0 { 0 } else { 1900 + y }));
    }
    if c.my == My::MYSQL_TYPE_INT24 {
        // mysql_common's signed 24-bit read does not sign-extend: decode it here.
        let b: &[u8] = buf.parse(3)?;
        let raw = u32::from(b[0]) | (u32::from(b[1]) << 8) | (u32::from(b[2]) << 16);
        return Ok(if c.unsigned {
            Value::UInt(u64::from(raw))
        } else {
            Value::Int(i64::from(((raw << 8) as i32) >> 8))
        });
    }
    // The value parser ties the metadata's lifetime to the buffer's: parse from a re-borrowed
    // view and advance the caller's buffer by what was consumed.
    let data: &[u8] = buf.0;
    let mut view = ParseBuf(data);
    let bv: BinlogValue<'_> = view.parse((c.my, c.meta.as_slice(), c.unsigned, false))?;
    let consumed = data.len() - view.0.len();
    buf.0 = &buf.0[consumed..];
    match bv {
        BinlogValue::Value(v) => from_mysql(c.ty, c.unsigned, v),
        BinlogValue::Jsonb(j) => {
            let json = mysql_common::serde_json::Value::try_from(j)
                .map_err(|e| bad(format!("JSON value: {e}")))?;
            Ok(Value::Json(json.to_string()))
        }
        BinlogValue::JsonDiff(_) => Err(bad(
            "partial JSON updates are not supported: set binlog_row_value_options=''".into(),
        )),
    }
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Converts a driver value (binlog or binary protocol) of a column of family `ty`.
pub fn from_mysql(
    ty: ColumnType,
    unsigned: bool,
    v: mysql_common::value::Value,
) -> io::Result<Value> {
    use mysql_common::value::Value as M;
    use ColumnType as T;
    Ok(match (ty, v) {
        (_, M::NULL) => Value::Null,
        (T::TinyInt | T::SmallInt | T::MediumInt | T::Int | T::BigInt, M::Int(i)) => {
            if unsigned {
                Value::UInt(unsigned_of(i, ty))
            } else {
                Value::Int(i)
            }
        }
        (T::TinyInt | T::SmallInt | T::MediumInt | T::Int | T::BigInt, M::UInt(u)) => {
            if unsigned {
                Value::UInt(u)
            } else {
                Value::Int(u as i64)
            }
        }
        (T::Float, M::Float(f)) => Value::Float(f),
        (T::Float, M::Double(f)) => Value::Float(f as f32),
        (T::Double, M::Double(f)) => Value::Double(f),
        (T::Decimal, M::Bytes(b)) => Value::Decimal(String::from_utf8_lossy(&b).into_owned()),
        (T::Date, M::Date(year, month, day, ..)) => Value::Date { year, month, day },
        (T::DateTime, M::Date(year, month, day, hour, minute, second, micros)) => Value::DateTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
            micros,
        },
        (T::Time, M::Time(negative, days, h, minutes, seconds, micros)) => Value::Time {
            negative,
            hours: days * 24 + u32::from(h),
            minutes,
            seconds,
            micros,
        },
        (T::Timestamp, M::Int(secs)) => Value::Timestamp {
            secs: secs.max(0) as u64,
            micros: 0,
        },
        (T::Timestamp, M::Bytes(b)) => parse_timestamp(&b)?,
        (T::Timestamp, M::Date(y, mo, d, h, mi, s, us)) => Value::Timestamp {
            secs: epoch_secs(y, mo, d, h, mi, s),
            micros: us,
        },
        (T::Year, M::Int(y)) => Value::Year(y as u16),
        (T::Year, M::UInt(y)) => Value::Year(y as u16),
        (T::Enum, M::UInt(i)) => Value::Enum(i as u16),
        (T::Set, M::Int(i)) => Value::Set(i as u64),
        (T::Set, M::UInt(i)) => Value::Set(i),
        (T::Bit, M::Int(i)) => Value::Bit(i as u64),
        (T::Bit, M::UInt(i)) => Value::Bit(i),
        (T::Decimal, M::Int(i)) => Value::Decimal(i.to_string()),
        (T::Decimal, M::UInt(i)) => Value::Decimal(i.to_string()),
        (T::Bit, M::Bytes(b)) => {
            Value::Bit(b.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x)))
        }
        (T::Enum, M::Int(i)) => Value::Enum(i as u16),
        (T::Set, M::Bytes(b)) => Value::Set(
            b.iter()
                .rev()
                .fold(0u64, |acc, x| (acc << 8) | u64::from(*x)),
        ),
        (T::Char | T::VarChar | T::Text, M::Bytes(b)) => Value::Text(b),
        (T::Json, M::Bytes(b)) => Value::Json(String::from_utf8_lossy(&b).into_owned()),
        (T::Geometry, M::Bytes(b)) => Value::Geometry(b),
        (T::Binary | T::VarBinary | T::Blob, M::Bytes(b)) => Value::Bytes(b),
        (ty, v) => return Err(bad(format!("unexpected value {v:?} for a {ty:?} column"))),
    })
}

/// Seconds since the epoch of a UTC civil time; the zero date maps to 0.
fn epoch_secs(y: u16, mo: u8, d: u8, h: u8, mi: u8, s: u8) -> u64 {
    if y == 0 && mo == 0 && d == 0 {
        return 0;
    }
    let days =
        fleetsync_proto::calendar::days_from_civil(i64::from(y), u32::from(mo), u32::from(d));
    (days * 86_400 + i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(s)).max(0) as u64
}

/// A signed reading of an unsigned column narrower than 64 bits.
fn unsigned_of(i: i64, ty: ColumnType) -> u64 {
    match ty {
        ColumnType::TinyInt => u64::from(i as u8),
        ColumnType::SmallInt => u64::from(i as u16),
        ColumnType::MediumInt => (i as u64) & 0xff_ffff,
        ColumnType::Int => u64::from(i as u32),
        _ => i as u64,
    }
}

fn parse_timestamp(b: &[u8]) -> io::Result<Value> {
    let s = std::str::from_utf8(b).map_err(|e| bad(format!("timestamp: {e}")))?;
    let (secs, frac) = s.split_once('.').unwrap_or((s, "0"));
    let secs = secs
        .parse::<u64>()
        .map_err(|e| bad(format!("timestamp {s:?}: {e}")))?;
    let micros = frac
        .parse::<u32>()
        .map_err(|e| bad(format!("timestamp {s:?}: {e}")))?;
    Ok(Value::Timestamp { secs, micros })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsigned_reinterpretation() {
        assert_eq!(unsigned_of(-56, ColumnType::TinyInt), 200);
        assert_eq!(unsigned_of(-1, ColumnType::Int), u64::from(u32::MAX));
        assert_eq!(unsigned_of(-1, ColumnType::MediumInt), 0xff_ffff);
        assert_eq!(unsigned_of(-1, ColumnType::BigInt), u64::MAX);
    }

    #[test]
    fn epoch() {
        assert_eq!(epoch_secs(1970, 1, 1, 0, 0, 1), 1);
        assert_eq!(epoch_secs(2038, 1, 19, 3, 14, 7), 2_147_483_647);
        assert_eq!(epoch_secs(2000, 3, 1, 0, 0, 0), 951_868_800);
    }

    #[test]
    fn timestamps() {
        assert_eq!(
            parse_timestamp(b"12.000500").ok(),
            Some(Value::Timestamp {
                secs: 12,
                micros: 500
            })
        );
        assert_eq!(
            parse_timestamp(b"0").ok(),
            Some(Value::Timestamp { secs: 0, micros: 0 })
        );
    }
}
