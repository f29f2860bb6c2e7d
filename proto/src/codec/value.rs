//! One column value <-> JSON, typed by its [`Column`].

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::{Map, Value as J};

use super::temporal::{
    format_date, format_datetime, format_time, format_timestamp, parse_date, parse_datetime,
    parse_time, parse_timestamp, DateTimeParts,
};
use super::text::{is_latin1, latin1_decode, latin1_encode};
use super::CodecError;
use crate::{Column, ColumnType, Value};

/// Renders one value as JSON. `col` supplies the character set of text and the ENUM/SET labels.
///
/// | value | JSON |
/// |---|---|
/// | `Null` | `null` |
/// | `Int`, `UInt`, `Year`, `Bit` | number (64-bit exact) |
/// | `Float`, `Double` | number; NaN and infinities as `"NaN"`, `"Infinity"`, `"-Infinity"` |
/// | `Decimal` | string, the exact text |
/// | `Date` | `"YYYY-MM-DD"` (zero date `"0000-00-00"`) |
/// | `Time` | `"[-]HH:MM:SS[.ffffff]"` (hours may exceed 99) |
/// | `DateTime` | `"YYYY-MM-DD HH:MM:SS[.ffffff]"` |
/// | `Timestamp` | `"YYYY-MM-DDTHH:MM:SS[.ffffff]Z"` in UTC (zero: `"0000-00-00T00:00:00Z"`) |
/// | `Text` | string: latin1 columns decode as MySQL's latin1 (cp1252, the five undefined bytes as U+0081, U+008D, U+008F, U+0090, U+009D), so every byte string is representable; other character sets: the text if the bytes are valid UTF-8, else `{"base64": "..."}` |
/// | `Bytes`, `Geometry` | base64 string (standard alphabet, padded) |
/// | `Enum` | the label (`""` for index 0); a number if the label would be ambiguous or is missing |
/// | `Set` | comma-joined labels in member order (`""` for none); a number if that would be ambiguous |
/// | `Json` | the document itself if the text parses as JSON, else the text as a string |
///
/// Fractions are printed as six digits and only when the microseconds are not zero.
///
/// [`value_from_json`] inverts this exactly for values valid for `col`, with two exceptions
/// inherent to embedding JSON documents in JSON: a JSON column holding the JSON literal `null`
/// renders as `null` and reads back as SQL NULL, and a JSON column whose text is not valid JSON
/// reads back as a JSON string literal. JSON documents otherwise round-trip semantically, not
/// textually (whitespace, key order and number spelling are normalised), so JSON columns must
/// be compared as parsed documents.
pub fn value_to_json(v: &Value, col: &Column) -> J {
    match v {
        Value::Null => J::Null,
        Value::Int(i) => J::from(*i),
        Value::UInt(u) | Value::Bit(u) => J::from(*u),
        Value::Float(f) => float_to_json(*f),
        Value::Double(d) => double_to_json(*d),
        Value::Decimal(s) => J::String(s.clone()),
        Value::Date { year, month, day } => J::String(format_date(*year, *month, *day)),
        Value::Time {
            negative,
            hours,
            minutes,
            seconds,
            micros,
        } => J::String(format_time(*negative, *hours, *minutes, *seconds, *micros)),
        Value::DateTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
            micros,
        } => J::String(format_datetime(&DateTimeParts {
            year: *year,
            month: *month,
            day: *day,
            hour: *hour,
            minute: *minute,
            second: *second,
            micros: *micros,
        })),
        Value::Timestamp { secs, micros } => J::String(format_timestamp(*secs, *micros)),
        Value::Year(y) => J::from(*y),
        Value::Text(bytes) => text_to_json(bytes, col),
        Value::Bytes(bytes) | Value::Geometry(bytes) => J::String(BASE64.encode(bytes)),
        Value::Enum(idx) => enum_to_json(*idx, &col.enum_values),
        Value::Set(bits) => set_to_json(*bits, &col.enum_values),
        Value::Json(text) => {
            serde_json::from_str::<J>(text).unwrap_or_else(|_| J::String(text.clone()))
        }
    }
}

/// Reads one value written by [`value_to_json`] back. `col.ty` (and `col.unsigned` for
/// integers) decides the [`Value`] variant; JSON `null` is SQL NULL for every type. Integers
/// are range-checked against the column type. Beyond what [`value_to_json`] writes, integer
/// columns also accept decimal strings, DECIMAL accepts numbers, DATETIME accepts a `T`
/// separator, and text/binary columns accept the `{"base64": "..."}` form.
pub fn value_from_json(j: &J, col: &Column) -> Result<Value, CodecError> {
    if j.is_null() {
        return Ok(Value::Null);
    }
    let err = |expected: String| CodecError::InvalidValue {
        column: col.name.clone(),
        column_type: if col.column_type.is_empty() {
            format!("{:?}", col.ty)
        } else {
            col.column_type.clone()
        },
        expected,
        found: describe(j),
    };
    let s = j.as_str();
    let v = match col.ty {
        ColumnType::TinyInt
        | ColumnType::SmallInt
        | ColumnType::MediumInt
        | ColumnType::Int
        | ColumnType::BigInt => {
            let (min, max, umax) = int_range(col.ty);
            if col.unsigned {
                let u = json_u64(j).filter(|&u| u <= umax);
                Value::UInt(u.ok_or_else(|| err(format!("an integer from 0 to {umax}")))?)
            } else {
                let i = json_i64(j).filter(|i| (min..=max).contains(i));
                Value::Int(i.ok_or_else(|| err(format!("an integer from {min} to {max}")))?)
            }
        }
        ColumnType::Decimal => {
            let text = match j {
                J::String(s) => Some(s.clone()),
                J::Number(n) => Some(n.to_string()),
                _ => None,
            };
            let text = text.filter(|t| is_decimal(t));
            Value::Decimal(text.ok_or_else(|| err("a decimal string like \"-12.340\"".into()))?)
        }
        ColumnType::Float => {
            let d = json_float(j).ok_or_else(|| err(float_expected("FLOAT")))?;
            let f = d as f32;
            if f.is_infinite() && d.is_finite() {
                return Err(err("a number within FLOAT range".into()));
            }
            Value::Float(f)
        }
        ColumnType::Double => {
            Value::Double(json_float(j).ok_or_else(|| err(float_expected("DOUBLE")))?)
        }
        ColumnType::Bit => {
            Value::Bit(json_u64(j).ok_or_else(|| err("an unsigned 64-bit integer".into()))?)
        }
        ColumnType::Year => {
            let y = json_u64(j).and_then(|u| u16::try_from(u).ok());
            Value::Year(y.ok_or_else(|| err("a year number".into()))?)
        }
        ColumnType::Date => {
            let d = s
                .and_then(parse_date)
                .ok_or_else(|| err("a date \"YYYY-MM-DD\"".into()))?;
            Value::Date {
                year: d.0,
                month: d.1,
                day: d.2,
            }
        }
        ColumnType::Time => {
            let t = s
                .and_then(parse_time)
                .ok_or_else(|| err("a time \"[-]HH:MM:SS[.ffffff]\"".into()))?;
            Value::Time {
                negative: t.0,
                hours: t.1,
                minutes: t.2,
                seconds: t.3,
                micros: t.4,
            }
        }
        ColumnType::DateTime => {
            let p = s
                .and_then(parse_datetime)
                .ok_or_else(|| err("a datetime \"YYYY-MM-DD HH:MM:SS[.ffffff]\"".into()))?;
            Value::DateTime {
                year: p.year,
                month: p.month,
                day: p.day,
                hour: p.hour,
                minute: p.minute,
                second: p.second,
                micros: p.micros,
            }
        }
        ColumnType::Timestamp => {
            let (secs, micros) = s
                .and_then(parse_timestamp)
                .ok_or_else(|| err("a UTC timestamp \"YYYY-MM-DDTHH:MM:SS[.ffffff]Z\"".into()))?;
            Value::Timestamp { secs, micros }
        }
        ColumnType::Char | ColumnType::VarChar | ColumnType::Text => {
            if let Some(bytes) = base64_object(j) {
                Value::Text(bytes.ok_or_else(|| err("valid base64 in {\"base64\": ...}".into()))?)
            } else if is_latin1(col.charset.as_deref()) {
                let s = s.ok_or_else(|| err("a string".into()))?;
                let bytes = latin1_encode(s).map_err(|c| {
                    err(format!(
                        "text representable in latin1 (U+{:04X} is not)",
                        u32::from(c)
                    ))
                })?;
                Value::Text(bytes)
            } else {
                let s = s.ok_or_else(|| err("a string or {\"base64\": ...}".into()))?;
                Value::Text(s.as_bytes().to_vec())
            }
        }
        ColumnType::Binary | ColumnType::VarBinary | ColumnType::Blob => {
            Value::Bytes(json_bytes(j).ok_or_else(|| err("a base64 string".into()))?)
        }
        ColumnType::Geometry => {
            Value::Geometry(json_bytes(j).ok_or_else(|| err("a base64 string".into()))?)
        }
        ColumnType::Enum => {
            let labels = &col.enum_values;
            let idx = match j {
                J::String(s) => match labels.iter().position(|l| l == s) {
                    Some(i) => u16::try_from(i + 1).ok(),
                    None if s.is_empty() => Some(0),
                    None => None,
                },
                _ => json_u64(j).and_then(|u| u16::try_from(u).ok()),
            };
            Value::Enum(
                idx.ok_or_else(|| err(format!("one of the labels {labels:?} or an index")))?,
            )
        }
        ColumnType::Set => {
            let labels = &col.enum_values;
            let bits = match j {
                J::String(s) if s.is_empty() => Some(0),
                J::String(s) => s.split(',').try_fold(0u64, |acc, member| {
                    let i = labels
                        .iter()
                        .position(|l| l == member)
                        .filter(|&i| i < 64)?;
                    Some(acc | 1 << i)
                }),
                _ => json_u64(j),
            };
            Value::Set(bits.ok_or_else(|| {
                err(format!(
                    "comma-separated members of {labels:?} or a bit mask"
                ))
            })?)
        }
        ColumnType::Json => Value::Json(j.to_string()),
    };
    Ok(v)
}

fn float_to_json(f: f32) -> J {
    if !f.is_finite() {
        return non_finite(f64::from(f));
    }
    // The shortest decimal that reads back as this f32 (0.1, not 0.10000000149011612), if it
    // survives the trip through f64; the exact widening otherwise.
    let short: f64 = f.to_string().parse().unwrap_or(f64::from(f));
    let d = if (short as f32).to_bits() == f.to_bits() {
        short
    } else {
        f64::from(f)
    };
    J::from(d)
}

fn double_to_json(d: f64) -> J {
    if d.is_finite() {
        J::from(d)
    } else {
        non_finite(d)
    }
}

fn non_finite(d: f64) -> J {
    let s = if d.is_nan() {
        "NaN"
    } else if d > 0.0 {
        "Infinity"
    } else {
        "-Infinity"
    };
    J::String(s.to_owned())
}

fn float_expected(ty: &str) -> String {
    format!("a number (or \"NaN\", \"Infinity\", \"-Infinity\") for {ty}")
}

fn text_to_json(bytes: &[u8], col: &Column) -> J {
    if is_latin1(col.charset.as_deref()) {
        return J::String(latin1_decode(bytes));
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => J::String(s.to_owned()),
        Err(_) => {
            let mut m = Map::new();
            m.insert("base64".to_owned(), J::String(BASE64.encode(bytes)));
            J::Object(m)
        }
    }
}

/// `Some(decoded)` if `j` is `{"base64": <string>}` (`Some(None)` when the base64 is invalid).
fn base64_object(j: &J) -> Option<Option<Vec<u8>>> {
    let m = j.as_object().filter(|m| m.len() == 1)?;
    let s = m.get("base64")?.as_str()?;
    Some(BASE64.decode(s).ok())
}

fn json_bytes(j: &J) -> Option<Vec<u8>> {
    match j {
        J::String(s) => BASE64.decode(s).ok(),
        _ => base64_object(j).flatten(),
    }
}

/// Label for an ENUM index when it reads back unambiguously, else the index as a number.
fn enum_to_json(idx: u16, labels: &[String]) -> J {
    let label = match usize::from(idx).checked_sub(1) {
        None => (!labels.iter().any(String::is_empty)).then_some(""),
        Some(i) => labels
            .get(i)
            .filter(|l| labels.iter().position(|x| x == *l) == Some(i))
            .map(String::as_str),
    };
    label.map_or_else(|| J::from(idx), |l| J::String(l.to_owned()))
}

/// Comma-joined SET members when they read back unambiguously, else the bit mask as a number.
fn set_to_json(bits: u64, labels: &[String]) -> J {
    let mut members = Vec::new();
    for i in (0..64).filter(|i| bits & (1u64 << i) != 0) {
        match labels.get(i) {
            Some(l)
                if !l.is_empty()
                    && !l.contains(',')
                    && labels.iter().position(|x| x == l) == Some(i) =>
            {
                members.push(l.as_str())
            }
            _ => return J::from(bits),
        }
    }
    J::String(members.join(","))
}

fn json_i64(j: &J) -> Option<i64> {
    match j {
        J::Number(n) => n.as_i64(),
        J::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn json_u64(j: &J) -> Option<u64> {
    match j {
        J::Number(n) => n.as_u64(),
        J::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn json_float(j: &J) -> Option<f64> {
    match j {
        J::Number(n) => n.as_f64(),
        J::String(s) => match s.as_str() {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}

/// `-?digits[.digits]`, as the server prints DECIMAL values.
fn is_decimal(s: &str) -> bool {
    let body = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = match body.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (body, None),
    };
    let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
    digits(int) && frac.is_none_or(digits)
}

/// (signed min, signed max, unsigned max) of an integer column type.
fn int_range(ty: ColumnType) -> (i64, i64, u64) {
    match ty {
        ColumnType::TinyInt => (i8::MIN.into(), i8::MAX.into(), u8::MAX.into()),
        ColumnType::SmallInt => (i16::MIN.into(), i16::MAX.into(), u16::MAX.into()),
        ColumnType::MediumInt => (-(1 << 23), (1 << 23) - 1, (1 << 24) - 1),
        ColumnType::Int => (i32::MIN.into(), i32::MAX.into(), u32::MAX.into()),
        _ => (i64::MIN, i64::MAX, u64::MAX),
    }
}

/// Short description of a JSON value for error messages.
fn describe(j: &J) -> String {
    let kind = match j {
        J::Null => "null",
        J::Bool(_) => "boolean",
        J::Number(_) => "number",
        J::String(_) => "string",
        J::Array(_) => "array",
        J::Object(_) => "object",
    };
    let text = j.to_string();
    let mut short: String = text.chars().take(64).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    format!("{kind} {short}")
}
