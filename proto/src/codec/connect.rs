//! Column values and schemas in Kafka Connect's JSON form, typed as Debezium's MariaDB
//! connector types them, so that a Kafka Connect sink (Debezium's JDBC sink in particular)
//! can load fleetsync's Debezium JSON topic.
//!
//! Kafka Connect's `JsonConverter` with `schemas.enable=true` writes every key and value as
//! `{"schema": <Connect schema>, "payload": <data>}`. A Connect schema has a primitive `type`
//! (`int16`, `int64`, `bytes`, `string`, `struct`, ...), `optional`, and for logical types a
//! `name` (`org.apache.kafka.connect.data.Decimal`, `io.debezium.time.MicroTime`, ...),
//! `version` and `parameters`. The payload of a logical type is its primitive encoding (a
//! DECIMAL is the base64 of its unscaled big-endian two's-complement integer, a DATE the days
//! since 1970-01-01).
//!
//! The mapping below was taken from what Debezium 3.5's MariaDB connector emits with its
//! defaults (`decimal.handling.mode=precise`, `time.precision.mode=adaptive_time_microseconds`,
//! `binary.handling.mode=bytes`), read from its topic for the e2e all-types table, with one
//! deliberate difference: BIGINT UNSIGNED is a `Decimal` with scale 0 (Debezium's
//! `bigint.unsigned.handling.mode=precise`), because Debezium's default `int64` wraps values
//! above 2^63-1 to negative numbers.
//!
//! | column | Connect type | name (logical type) | payload |
//! |---|---|---|---|
//! | TINYINT, SMALLINT, TINYINT UNSIGNED | int16 | | number |
//! | SMALLINT UNSIGNED, MEDIUMINT (both), INT | int32 | | number |
//! | INT UNSIGNED, BIGINT | int64 | | number |
//! | BIGINT UNSIGNED | bytes | `org.apache.kafka.connect.data.Decimal` (scale 0) | base64 |
//! | DECIMAL(p,s) | bytes | `org.apache.kafka.connect.data.Decimal` (scale s) | base64 |
//! | FLOAT / DOUBLE | float / double | | number |
//! | BIT(1) | boolean | | bool |
//! | BIT(n) | bytes | `io.debezium.data.Bits` (length n) | base64, little-endian |
//! | DATE | int32 | `io.debezium.time.Date` | days since epoch |
//! | TIME | int64 | `io.debezium.time.MicroTime` | microseconds (may be negative or beyond 24 h) |
//! | DATETIME(0..3) | int64 | `io.debezium.time.Timestamp` | ms since epoch, as UTC |
//! | DATETIME(4..6) | int64 | `io.debezium.time.MicroTimestamp` | µs since epoch, as UTC |
//! | TIMESTAMP | string | `io.debezium.time.ZonedTimestamp` | ISO-8601 UTC |
//! | YEAR | int32 | `io.debezium.time.Year` | number |
//! | CHAR/VARCHAR/TEXT | string | | text (latin1 decoded) |
//! | BINARY/VARBINARY/BLOB | bytes | | base64 |
//! | ENUM / SET | string | `io.debezium.data.Enum` / `EnumSet` (`allowed`) | label(s) |
//! | JSON | string | | the JSON text |
//! | POINT | struct {x, y, wkb, srid} | `io.debezium.data.geometry.Point` | |
//! | other GEOMETRY | struct {wkb, srid} | `io.debezium.data.geometry.Geometry` | |
//!
//! **What this form cannot carry** (as with Debezium's own connector): zero dates and dates
//! with a zero month or day (`0000-00-00`, `2024-00-00`), and the zero DATETIME/TIMESTAMP, are
//! `null`; an ENUM's empty error value is `""`. A consumer that needs those exactly must read
//! the schemaless form or the bus topic.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::{json, Map, Value as J};

use super::temporal::{days_from_civil, format_timestamp};
use super::text::{is_latin1, latin1_decode};
use crate::{Column, ColumnType, Value};

const DECIMAL: &str = "org.apache.kafka.connect.data.Decimal";

/// The Connect schema of one column, as a field of a struct (`"field": <column name>`).
pub fn column_schema(col: &Column) -> J {
    let mut f = Map::new();
    let logical = |f: &mut Map<String, J>, ty: &str, name: &str| {
        f.insert("type".into(), ty.into());
        f.insert("name".into(), name.into());
        f.insert("version".into(), 1.into());
    };
    match col.ty {
        ColumnType::TinyInt => {
            f.insert("type".into(), "int16".into());
        }
        ColumnType::SmallInt if !col.unsigned => {
            f.insert("type".into(), "int16".into());
        }
        ColumnType::SmallInt | ColumnType::MediumInt => {
            f.insert("type".into(), "int32".into());
        }
        ColumnType::Int if !col.unsigned => {
            f.insert("type".into(), "int32".into());
        }
        ColumnType::Int => {
            f.insert("type".into(), "int64".into());
        }
        ColumnType::BigInt if !col.unsigned => {
            f.insert("type".into(), "int64".into());
        }
        ColumnType::BigInt => {
            logical(&mut f, "bytes", DECIMAL);
            f.insert(
                "parameters".into(),
                json!({"scale": "0", "connect.decimal.precision": "20"}),
            );
        }
        ColumnType::Decimal => {
            let (p, s) = precision_scale(&col.column_type);
            logical(&mut f, "bytes", DECIMAL);
            f.insert(
                "parameters".into(),
                json!({"scale": s.to_string(), "connect.decimal.precision": p.to_string()}),
            );
        }
        ColumnType::Float => {
            f.insert("type".into(), "float".into());
        }
        ColumnType::Double => {
            f.insert("type".into(), "double".into());
        }
        ColumnType::Bit if bit_length(col) == 1 => {
            f.insert("type".into(), "boolean".into());
        }
        ColumnType::Bit => {
            logical(&mut f, "bytes", "io.debezium.data.Bits");
            f.insert(
                "parameters".into(),
                json!({"length": bit_length(col).to_string()}),
            );
        }
        ColumnType::Date => logical(&mut f, "int32", "io.debezium.time.Date"),
        ColumnType::Time => logical(&mut f, "int64", "io.debezium.time.MicroTime"),
        ColumnType::DateTime if fsp(&col.column_type) <= 3 => {
            logical(&mut f, "int64", "io.debezium.time.Timestamp")
        }
        ColumnType::DateTime => logical(&mut f, "int64", "io.debezium.time.MicroTimestamp"),
        ColumnType::Timestamp => logical(&mut f, "string", "io.debezium.time.ZonedTimestamp"),
        ColumnType::Year => logical(&mut f, "int32", "io.debezium.time.Year"),
        ColumnType::Char | ColumnType::VarChar | ColumnType::Text | ColumnType::Json => {
            f.insert("type".into(), "string".into());
        }
        ColumnType::Binary | ColumnType::VarBinary | ColumnType::Blob => {
            f.insert("type".into(), "bytes".into());
        }
        ColumnType::Enum | ColumnType::Set => {
            let name = if col.ty == ColumnType::Enum {
                "io.debezium.data.Enum"
            } else {
                "io.debezium.data.EnumSet"
            };
            logical(&mut f, "string", name);
            f.insert(
                "parameters".into(),
                json!({"allowed": col.enum_values.join(",")}),
            );
        }
        ColumnType::Geometry => {
            let wkb_srid = [
                json!({"type": "bytes", "optional": false, "field": "wkb"}),
                json!({"type": "int32", "optional": true, "field": "srid"}),
            ];
            if is_point(col) {
                let mut fields = vec![
                    json!({"type": "double", "optional": false, "field": "x"}),
                    json!({"type": "double", "optional": false, "field": "y"}),
                    json!({"type": "bytes", "optional": true, "field": "wkb"}),
                ];
                fields.push(wkb_srid[1].clone());
                logical(&mut f, "struct", "io.debezium.data.geometry.Point");
                f.insert("fields".into(), J::Array(fields));
            } else {
                logical(&mut f, "struct", "io.debezium.data.geometry.Geometry");
                f.insert("fields".into(), J::Array(wkb_srid.to_vec()));
            }
        }
    }
    f.insert("optional".into(), col.nullable.into());
    f.insert("field".into(), col.name.as_str().into());
    J::Object(f)
}

/// One value as the payload of [`column_schema`]'s type. Values the type cannot carry (zero
/// dates) are `null`; see the module documentation.
pub fn column_value(v: &Value, col: &Column) -> J {
    match v {
        Value::Null => J::Null,
        Value::Int(i) => J::from(*i),
        Value::UInt(u) if col.ty == ColumnType::BigInt => decimal_bytes(&u.to_string(), 0),
        Value::UInt(u) => J::from(*u),
        Value::Bit(u) if bit_length(col) == 1 => J::Bool(*u != 0),
        Value::Bit(u) => {
            let len = bit_length(col).div_ceil(8).clamp(1, 8);
            J::String(BASE64.encode(&u.to_le_bytes()[..len]))
        }
        Value::Float(f) => J::from(f64::from(*f)),
        Value::Double(d) => J::from(*d),
        Value::Decimal(s) => decimal_bytes(s, precision_scale(&col.column_type).1),
        Value::Date { year, month, day } => {
            if *month == 0 || *day == 0 {
                return J::Null;
            }
            J::from(days_from_civil(
                i64::from(*year),
                u32::from(*month),
                u32::from(*day),
            ))
        }
        Value::Time {
            negative,
            hours,
            minutes,
            seconds,
            micros,
        } => {
            let secs = i64::from(*hours) * 3600 + i64::from(*minutes) * 60 + i64::from(*seconds);
            let us = secs * 1_000_000 + i64::from(*micros);
            J::from(if *negative { -us } else { us })
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
            if *month == 0 || *day == 0 {
                return J::Null;
            }
            let days = days_from_civil(i64::from(*year), u32::from(*month), u32::from(*day));
            let secs = days * 86_400
                + i64::from(*hour) * 3600
                + i64::from(*minute) * 60
                + i64::from(*second);
            if fsp(&col.column_type) <= 3 {
                J::from(secs * 1000 + i64::from(*micros) / 1000)
            } else {
                J::from(secs * 1_000_000 + i64::from(*micros))
            }
        }
        Value::Timestamp { secs, micros } => {
            if *secs == 0 && *micros == 0 {
                return J::Null;
            }
            J::String(format_timestamp(*secs, *micros))
        }
        Value::Year(y) => J::from(*y),
        Value::Text(bytes) => {
            if is_latin1(col.charset.as_deref()) {
                J::String(latin1_decode(bytes))
            } else {
                J::String(String::from_utf8_lossy(bytes).into_owned())
            }
        }
        Value::Bytes(bytes) => J::String(BASE64.encode(bytes)),
        Value::Enum(idx) => {
            let label = usize::from(*idx)
                .checked_sub(1)
                .and_then(|i| col.enum_values.get(i));
            J::String(label.cloned().unwrap_or_default())
        }
        Value::Set(bits) => {
            let members: Vec<&str> = (0..64)
                .filter(|i| bits & (1u64 << i) != 0)
                .filter_map(|i| col.enum_values.get(i).map(String::as_str))
                .collect();
            J::String(members.join(","))
        }
        Value::Json(text) => J::String(text.clone()),
        Value::Geometry(bytes) => geometry(bytes, is_point(col)),
    }
}

/// A struct schema named `name` with the given columns as fields.
pub fn struct_schema<'a>(
    name: &str,
    optional: bool,
    columns: impl IntoIterator<Item = &'a Column>,
) -> J {
    let fields: Vec<J> = columns.into_iter().map(column_schema).collect();
    json!({"type": "struct", "fields": fields, "optional": optional, "name": name})
}

/// MariaDB's internal geometry (4-byte little-endian SRID, then WKB) as Debezium's
/// `Geometry` or `Point` struct; SRID 0 is `null`, as Debezium sends it.
fn geometry(bytes: &[u8], point: bool) -> J {
    let (srid, wkb) = match bytes.split_first_chunk::<4>() {
        Some((srid, wkb)) => (u32::from_le_bytes(*srid), wkb),
        None => (0, bytes),
    };
    let srid = if srid == 0 { J::Null } else { J::from(srid) };
    let mut m = Map::new();
    if point {
        let (x, y) = point_xy(wkb).unwrap_or((0.0, 0.0));
        m.insert("x".into(), J::from(x));
        m.insert("y".into(), J::from(y));
    }
    m.insert("wkb".into(), J::String(BASE64.encode(wkb)));
    m.insert("srid".into(), srid);
    J::Object(m)
}

/// x and y of a WKB POINT (byte order, type 1, two doubles).
fn point_xy(wkb: &[u8]) -> Option<(f64, f64)> {
    let (&order, rest) = wkb.split_first()?;
    let (ty, rest) = rest.split_first_chunk::<4>()?;
    let (x, rest) = rest.split_first_chunk::<8>()?;
    let (y, _) = rest.split_first_chunk::<8>()?;
    let little = order == 1;
    let u32_of = |b: [u8; 4]| {
        if little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let f64_of = |b: [u8; 8]| {
        if little {
            f64::from_le_bytes(b)
        } else {
            f64::from_be_bytes(b)
        }
    };
    (u32_of(*ty) == 1).then(|| (f64_of(*x), f64_of(*y)))
}

fn is_point(col: &Column) -> bool {
    col.column_type.trim().eq_ignore_ascii_case("point")
}

/// `(precision, scale)` of `decimal(p,s)`; MariaDB's defaults (10, 0) when absent.
fn precision_scale(column_type: &str) -> (u32, u32) {
    let args = type_args(column_type);
    let mut it = args.split(',').map(|s| s.trim().parse::<u32>().ok());
    let p = it.next().flatten().unwrap_or(10);
    let s = it.next().flatten().unwrap_or(0);
    (p, s)
}

/// Fractional-second digits of `datetime(n)` / `time(n)`; 0 when absent.
fn fsp(column_type: &str) -> u32 {
    type_args(column_type).trim().parse().unwrap_or(0)
}

/// `M` of `bit(M)`; 1 when absent.
fn bit_length(col: &Column) -> usize {
    type_args(&col.column_type).trim().parse().unwrap_or(1)
}

/// What is between the first `(` and the following `)` of a column type, or "".
fn type_args(column_type: &str) -> &str {
    column_type
        .split_once('(')
        .and_then(|(_, rest)| rest.split_once(')'))
        .map_or("", |(args, _)| args)
}

/// A decimal string (`-12.34`) at `scale` as Connect's `Decimal` payload: base64 of the
/// unscaled value as a minimal big-endian two's-complement integer (Java's
/// `BigInteger.toByteArray`). Extra fraction digits are cut, missing ones padded with zeros.
fn decimal_bytes(s: &str, scale: u32) -> J {
    let (negative, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let scale = scale as usize;
    let mut unscaled: Vec<u8> = int.bytes().chain(frac.bytes().take(scale)).collect();
    unscaled.extend(std::iter::repeat_n(b'0', scale.saturating_sub(frac.len())));

    // Magnitude in base 256, big-endian: multiply by 10 and add each digit.
    let mut mag: Vec<u8> = vec![0];
    for d in unscaled.iter().filter(|b| b.is_ascii_digit()) {
        let mut carry = u32::from(d - b'0');
        for byte in mag.iter_mut().rev() {
            let x = u32::from(*byte) * 10 + carry;
            *byte = (x & 0xFF) as u8;
            carry = x >> 8;
        }
        while carry > 0 {
            mag.insert(0, (carry & 0xFF) as u8);
            carry >>= 8;
        }
    }
    while mag.len() > 1 && mag[0] == 0 {
        mag.remove(0);
    }
    let zero = mag.iter().all(|&b| b == 0);
    let mut out = mag;
    if negative && !zero {
        // Two's complement: invert and add one.
        for b in out.iter_mut() {
            *b = !*b;
        }
        for b in out.iter_mut().rev() {
            let (v, overflow) = b.overflowing_add(1);
            *b = v;
            if !overflow {
                break;
            }
        }
        if out[0] & 0x80 == 0 {
            out.insert(0, 0xFF);
        }
    } else if out[0] & 0x80 != 0 {
        out.insert(0, 0x00);
    }
    J::String(BASE64.encode(out))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn col(name: &str, ty: ColumnType, column_type: &str) -> Column {
        Column {
            name: name.into(),
            ty,
            column_type: column_type.into(),
            unsigned: column_type.contains("unsigned"),
            nullable: true,
            charset: None,
            enum_values: vec![],
        }
    }

    fn b64(j: &J) -> Vec<u8> {
        BASE64.decode(j.as_str().unwrap()).unwrap()
    }

    /// The byte strings Java's `BigInteger.toByteArray` gives (as seen in Debezium's topic).
    #[test]
    fn decimals_are_minimal_twos_complement() {
        assert_eq!(b64(&decimal_bytes("12345.67", 2)), [0x12, 0xD6, 0x87]);
        assert_eq!(b64(&decimal_bytes("-5", 0)), [0xFB]);
        assert_eq!(b64(&decimal_bytes("0", 0)), [0x00]);
        assert_eq!(b64(&decimal_bytes("-0.00", 2)), [0x00]);
        assert_eq!(b64(&decimal_bytes("128", 0)), [0x00, 0x80]);
        assert_eq!(b64(&decimal_bytes("-128", 0)), [0x80]);
        assert_eq!(b64(&decimal_bytes("-129", 0)), [0xFF, 0x7F]);
        assert_eq!(b64(&decimal_bytes("-256", 0)), [0xFF, 0x00]);
        assert_eq!(b64(&decimal_bytes("1.5", 3)), [0x05, 0xDC]);
        // What Debezium sent for DECIMAL(65,30) 1.5.
        assert_eq!(
            decimal_bytes("1.500000000000000000000000000000", 30),
            J::String("Eu7C6zhpr2TfYAAAAA==".into())
        );
        assert_eq!(
            b64(&decimal_bytes("18446744073709551615", 0)),
            [0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]
        );
    }

    /// Values as Debezium 3.5's MariaDB connector sent them for the same rows.
    #[test]
    fn values_match_debezium() {
        let v = |v: Value, c: &Column| column_value(&v, c);
        let dt6 = col("d", ColumnType::DateTime, "datetime(6)");
        let dt0 = col("d", ColumnType::DateTime, "datetime");
        let dtv = |micros| Value::DateTime {
            year: 2024,
            month: 2,
            day: 29,
            hour: 12,
            minute: 34,
            second: 56,
            micros,
        };
        assert_eq!(v(dtv(1), &dt6), json!(1709210096000001i64));
        assert_eq!(v(dtv(0), &dt0), json!(1709210096000i64));
        let date = col("d", ColumnType::Date, "date");
        let d = |year, month, day| Value::Date { year, month, day };
        assert_eq!(v(d(2024, 2, 28), &date), json!(19781));
        assert_eq!(v(d(2024, 0, 0), &date), J::Null);
        let time = col("t", ColumnType::Time, "time(6)");
        let t = Value::Time {
            negative: true,
            hours: 100,
            minutes: 30,
            seconds: 0,
            micros: 500_000,
        };
        assert_eq!(v(t, &time), json!(-361800500000i64));
        let b10 = col("b", ColumnType::Bit, "bit(10)");
        assert_eq!(v(Value::Bit(0x155), &b10), json!("VQE="));
        let b64c = col("b", ColumnType::Bit, "bit(64)");
        assert_eq!(v(Value::Bit(10), &b64c), json!("CgAAAAAAAAA="));
        let b1 = col("b", ColumnType::Bit, "bit(1)");
        assert_eq!(v(Value::Bit(1), &b1), json!(true));
        let ts = col("t", ColumnType::Timestamp, "timestamp(6)");
        let tsv = Value::Timestamp {
            secs: 1_729_974_600,
            micros: 123_456,
        };
        assert_eq!(v(tsv, &ts), json!("2024-10-26T20:30:00.123456Z"));
        assert_eq!(v(Value::Timestamp { secs: 0, micros: 0 }, &ts), J::Null);
        let mut pt = col("p", ColumnType::Geometry, "point");
        pt.nullable = false;
        let mut bytes = 4326u32.to_le_bytes().to_vec();
        bytes.push(1);
        bytes.extend(1u32.to_le_bytes());
        bytes.extend(3.0f64.to_le_bytes());
        bytes.extend(4.0f64.to_le_bytes());
        assert_eq!(
            v(Value::Geometry(bytes), &pt),
            json!({"x": 3.0, "y": 4.0, "wkb": "AQEAAAAAAAAAAAAIQAAAAAAAABBA", "srid": 4326})
        );
        assert_eq!(
            column_schema(&pt)["name"],
            "io.debezium.data.geometry.Point"
        );
        assert_eq!(column_schema(&pt)["optional"], false);
    }

    #[test]
    fn integer_schemas_follow_debezium() {
        let ty = |t, ct| column_schema(&col("c", t, ct))["type"].clone();
        assert_eq!(ty(ColumnType::TinyInt, "tinyint(3) unsigned"), "int16");
        assert_eq!(ty(ColumnType::SmallInt, "smallint(6)"), "int16");
        assert_eq!(ty(ColumnType::SmallInt, "smallint(5) unsigned"), "int32");
        assert_eq!(ty(ColumnType::MediumInt, "mediumint(8) unsigned"), "int32");
        assert_eq!(ty(ColumnType::Int, "int(11)"), "int32");
        assert_eq!(ty(ColumnType::Int, "int(10) unsigned"), "int64");
        assert_eq!(ty(ColumnType::BigInt, "bigint(20)"), "int64");
        let bu = column_schema(&col("c", ColumnType::BigInt, "bigint(20) unsigned"));
        assert_eq!(bu["name"], DECIMAL);
        assert_eq!(bu["parameters"]["scale"], "0");
        let dec = column_schema(&col("c", ColumnType::Decimal, "decimal(65,30)"));
        assert_eq!(dec["parameters"]["scale"], "30");
        assert_eq!(dec["parameters"]["connect.decimal.precision"], "65");
    }
}
