use proptest::prelude::*;
use serde_json::{json, Value as J};

use super::temporal::{civil_from_days, days_from_civil};
use super::*;
use crate::testing::{arb_transaction, arb_typed};
use crate::{
    Column, ColumnType, Gtid, KeyKind, Op, Origin, Position, RowChange, TableSchema, Transaction,
    Value,
};

fn col(name: &str, ty: ColumnType) -> Column {
    Column {
        name: name.into(),
        ty,
        column_type: String::new(),
        unsigned: false,
        nullable: true,
        charset: None,
        enum_values: Vec::new(),
    }
}

fn text_col(charset: &str) -> Column {
    Column {
        charset: Some(charset.into()),
        ..col("t", ColumnType::VarChar)
    }
}

fn labelled(ty: ColumnType, labels: &[&str]) -> Column {
    Column {
        enum_values: labels.iter().map(|s| s.to_string()).collect(),
        ..col("e", ty)
    }
}

/// Equality as the round trip promises it: floats by bits (any NaN equals any NaN), JSON
/// documents semantically.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => {
            x.to_bits() == y.to_bits() || x.is_nan() && y.is_nan()
        }
        (Value::Double(x), Value::Double(y)) => {
            x.to_bits() == y.to_bits() || x.is_nan() && y.is_nan()
        }
        (Value::Json(x), Value::Json(y)) => {
            serde_json::from_str::<J>(x).ok() == serde_json::from_str::<J>(y).ok()
        }
        _ => a == b,
    }
}

fn round_trip(v: &Value, c: &Column) -> Value {
    value_from_json(&value_to_json(v, c), c).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Bus encoding

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn bincode_round_trips(t in arb_transaction()) {
        let bytes = encode_transaction(&t).unwrap();
        prop_assert_eq!(&bytes[..3], b"FS\x01");
        let back = decode_transaction(&bytes).unwrap();
        // Exact, NaN payloads included: the re-encoding is identical.
        prop_assert_eq!(encode_transaction(&back).unwrap(), bytes);
        prop_assert_eq!(format!("{back:?}"), format!("{t:?}"));
    }

    #[test]
    fn decoding_garbage_never_panics(body in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut bytes = b"FS\x01".to_vec();
        bytes.extend_from_slice(&body);
        let _ = decode_transaction(&bytes);
        let _ = decode_transaction(&body);
    }

    #[test]
    fn decoding_corrupted_messages_never_panics(
        t in arb_transaction(), at in any::<prop::sample::Index>(), byte in any::<u8>(),
    ) {
        let mut bytes = encode_transaction(&t).unwrap();
        let i = at.index(bytes.len() - 3) + 3;
        bytes[i] = byte;
        let _ = decode_transaction(&bytes);
        let _ = decode_transaction(&bytes[..i]);
    }
}

fn sample_transaction() -> Transaction {
    let table = TableSchema {
        schema: "shop".into(),
        table: "items".into(),
        columns: vec![
            Column {
                nullable: false,
                unsigned: true,
                ..col("id", ColumnType::BigInt)
            },
            text_col("utf8mb4"),
            labelled(ColumnType::Enum, &["new", "sold"]),
        ],
        key: vec![0],
        key_kind: KeyKind::Primary,
        transactional: true,
    };
    Transaction {
        origin: Origin {
            name: "db1".into(),
            server_id: 7,
            server_uuid: String::new(),
        },
        gtid: Some(Gtid {
            domain: 0,
            server_id: 7,
            seq: 100,
        }),
        position: Position::new("binlog.000003", 1234),
        txn_id: 100,
        commit_ts_ms: 1_700_000_000_123,
        snapshot: false,
        snapshot_done: false,
        tables: vec![table],
        changes: vec![RowChange {
            table: 0,
            op: Op::Update,
            before: Some(vec![
                Value::UInt(1),
                Value::Text(b"old".to_vec()),
                Value::Enum(1),
            ]),
            after: Some(vec![
                Value::UInt(1),
                Value::Text("n\u{e9}w".into()),
                Value::Enum(2),
            ]),
        }],
        ddl: None,
    }
}

#[test]
fn decode_rejects_bad_headers() {
    let good = encode_transaction(&sample_transaction()).unwrap();
    assert_eq!(decode_transaction(&good).unwrap(), sample_transaction());

    let mut wrong = good.clone();
    wrong[0] = b'X';
    let err = decode_transaction(&wrong).unwrap_err();
    assert!(
        matches!(&err, CodecError::BadMagic { found } if found == b"XS"),
        "{err}"
    );
    assert!(err.to_string().contains("magic"), "{err}");
    assert!(matches!(
        decode_transaction(b"{}"),
        Err(CodecError::BadMagic { .. })
    ));
    assert!(matches!(
        decode_transaction(b"X"),
        Err(CodecError::BadMagic { .. })
    ));

    let mut future = good.clone();
    future[2] = BUS_FORMAT_VERSION + 1;
    let err = decode_transaction(&future).unwrap_err();
    assert!(
        matches!(
            err,
            CodecError::UnsupportedVersion {
                found: 2,
                supported: [1]
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "unsupported fleetsync bus format version 2; this build reads version(s) [1]"
    );
    let mut zero = good.clone();
    zero[2] = 0;
    assert!(matches!(
        decode_transaction(&zero),
        Err(CodecError::UnsupportedVersion { found: 0, .. })
    ));

    for short in [&b""[..], b"F", b"FS"] {
        assert!(
            matches!(decode_transaction(short), Err(CodecError::Truncated { .. })),
            "{short:?}"
        );
    }
    assert!(matches!(
        decode_transaction(&good[..good.len() - 1]),
        Err(CodecError::Decode { version: 1, .. })
    ));
    let mut long = good.clone();
    long.extend_from_slice(b"xy");
    assert!(matches!(
        decode_transaction(&long),
        Err(CodecError::TrailingBytes {
            version: 1,
            extra: 2
        })
    ));
}

#[test]
fn huge_length_prefix_is_rejected_without_allocating() {
    // Origin.name claims u64::MAX / 2 bytes (varint 0xFD = u64 follows).
    let mut bytes = b"FS\x01\xFD".to_vec();
    bytes.extend_from_slice(&(u64::MAX / 2).to_le_bytes());
    bytes.extend_from_slice(b"abc");
    let err = decode_transaction(&bytes).unwrap_err();
    assert!(
        matches!(
            err,
            CodecError::Decode {
                source: bincode::error::DecodeError::LimitExceeded,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn dense_messages_stay_within_the_decode_limit() {
    // Empty strings and small integers are where bincode's accounting charges the most per
    // byte on the wire (8 for a 1-byte length prefix); try sizes around every limit tier.
    for n in [
        0usize, 1, 200, 255, 256, 257, 4_000, 4_096, 4_200, 65_000, 70_000, 300_000,
    ] {
        let mut t = sample_transaction();
        t.ddl = Some(crate::Ddl {
            schema: Some(String::new()),
            tables: vec![(String::new(), String::new()); n],
            statement: String::new(),
        });
        t.changes[0].after = Some(vec![Value::UInt(0); n]);
        t.changes[0].before = Some(vec![Value::Null; n]);
        let bytes = encode_transaction(&t).unwrap();
        assert_eq!(decode_transaction(&bytes).unwrap(), t, "n = {n}");
    }
}

// ---------------------------------------------------------------------------------------------
// Values <-> JSON

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn values_round_trip_through_json((c, v) in arb_typed()) {
        let j = value_to_json(&v, &c);
        let back = value_from_json(&j, &c);
        prop_assert!(back.is_ok(), "{:?} -> {} -> {:?}", v, j, back);
        let back = back.unwrap();
        prop_assert!(same(&v, &back), "{:?} -> {} -> {:?}", v, j, back);
        // And through JSON text, as an export file would.
        let reparsed: J = serde_json::from_str(&j.to_string()).unwrap();
        let back = value_from_json(&reparsed, &c).unwrap();
        prop_assert!(same(&v, &back), "{:?} -> {} -> {:?} (text)", v, j, back);
    }

    #[test]
    fn latin1_round_trips_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let c = text_col("latin1");
        let j = value_to_json(&Value::Text(bytes.clone()), &c);
        prop_assert!(j.is_string());
        prop_assert_eq!(round_trip(&Value::Text(bytes.clone()), &c), Value::Text(bytes));
    }

    #[test]
    fn civil_conversion_round_trips(days in 0u64..=(u64::MAX / 86_400)) {
        let (y, m, d) = civil_from_days(days);
        prop_assert!((1..=12).contains(&m) && (1..=31).contains(&d));
        prop_assert_eq!(days_from_civil(y as i64, m, d), days as i64);
    }
}

#[test]
fn latin1_is_cp1252_with_mysql_extras() {
    let c = text_col("latin1");
    let all: Vec<u8> = (0..=255).collect();
    let j = value_to_json(&Value::Text(all.clone()), &c);
    let s = j.as_str().unwrap();
    assert_eq!(s.chars().count(), 256);
    assert_eq!(s.chars().nth(0x80), Some('\u{20AC}'));
    assert_eq!(s.chars().nth(0x81), Some('\u{81}'));
    assert_eq!(s.chars().nth(0x9F), Some('\u{178}'));
    assert_eq!(s.chars().nth(0xE9), Some('\u{E9}'));
    assert_eq!(round_trip(&Value::Text(all.clone()), &c), Value::Text(all));
    assert_eq!(
        value_to_json(&Value::Text(b"caf\xe9 \x80".to_vec()), &c),
        json!("caf\u{e9} \u{20ac}")
    );

    let err = value_from_json(&json!("\u{4e2d}"), &c)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("column `t`") && err.contains("U+4E2D"),
        "{err}"
    );
    let err = value_from_json(&json!("\u{80}"), &c)
        .unwrap_err()
        .to_string();
    assert!(err.contains("U+0080"), "{err}");
}

#[test]
fn invalid_utf8_text_uses_base64_object() {
    let c = text_col("utf8mb4");
    let v = Value::Text(vec![b'a', 0xFF, 0xFE]);
    assert_eq!(value_to_json(&v, &c), json!({"base64": "Yf/+"}));
    assert_eq!(round_trip(&v, &c), v);
    assert_eq!(
        value_to_json(&Value::Text("\u{1F600}".into()), &c),
        json!("\u{1F600}")
    );
    let err = value_from_json(&json!({"base64": "!!"}), &c)
        .unwrap_err()
        .to_string();
    assert!(err.contains("valid base64"), "{err}");
}

#[test]
fn exact_renderings() {
    let cases: Vec<(Value, Column, J)> = vec![
        (Value::Null, col("x", ColumnType::Int), J::Null),
        (
            Value::Int(i64::MIN),
            col("x", ColumnType::BigInt),
            json!(i64::MIN),
        ),
        (
            Value::UInt(u64::MAX),
            Column {
                unsigned: true,
                ..col("x", ColumnType::BigInt)
            },
            json!(u64::MAX),
        ),
        (Value::Float(0.1), col("x", ColumnType::Float), json!(0.1)),
        (
            Value::Float(f32::NAN),
            col("x", ColumnType::Float),
            json!("NaN"),
        ),
        (
            Value::Double(f64::INFINITY),
            col("x", ColumnType::Double),
            json!("Infinity"),
        ),
        (
            Value::Double(f64::NEG_INFINITY),
            col("x", ColumnType::Double),
            json!("-Infinity"),
        ),
        (
            Value::Decimal("-12.3400".into()),
            col("x", ColumnType::Decimal),
            json!("-12.3400"),
        ),
        (
            Value::Date {
                year: 0,
                month: 0,
                day: 0,
            },
            col("x", ColumnType::Date),
            json!("0000-00-00"),
        ),
        (
            Value::Date {
                year: 2024,
                month: 2,
                day: 29,
            },
            col("x", ColumnType::Date),
            json!("2024-02-29"),
        ),
        (
            Value::Time {
                negative: true,
                hours: 838,
                minutes: 59,
                seconds: 59,
                micros: 0,
            },
            col("x", ColumnType::Time),
            json!("-838:59:59"),
        ),
        (
            Value::Time {
                negative: false,
                hours: 1,
                minutes: 2,
                seconds: 3,
                micros: 450,
            },
            col("x", ColumnType::Time),
            json!("01:02:03.000450"),
        ),
        (
            Value::Time {
                negative: true,
                hours: 0,
                minutes: 0,
                seconds: 0,
                micros: 500_000,
            },
            col("x", ColumnType::Time),
            json!("-00:00:00.500000"),
        ),
        (
            Value::DateTime {
                year: 0,
                month: 0,
                day: 0,
                hour: 0,
                minute: 0,
                second: 0,
                micros: 0,
            },
            col("x", ColumnType::DateTime),
            json!("0000-00-00 00:00:00"),
        ),
        (
            Value::DateTime {
                year: 2023,
                month: 11,
                day: 14,
                hour: 22,
                minute: 13,
                second: 20,
                micros: 1,
            },
            col("x", ColumnType::DateTime),
            json!("2023-11-14 22:13:20.000001"),
        ),
        (
            Value::Timestamp { secs: 0, micros: 0 },
            col("x", ColumnType::Timestamp),
            json!("0000-00-00T00:00:00Z"),
        ),
        (
            Value::Timestamp {
                secs: 1_700_000_000,
                micros: 123_456,
            },
            col("x", ColumnType::Timestamp),
            json!("2023-11-14T22:13:20.123456Z"),
        ),
        (
            Value::Timestamp {
                secs: 2_147_483_647,
                micros: 0,
            },
            col("x", ColumnType::Timestamp),
            json!("2038-01-19T03:14:07Z"),
        ),
        (
            Value::Timestamp {
                secs: 951_782_400,
                micros: 0,
            },
            col("x", ColumnType::Timestamp),
            json!("2000-02-29T00:00:00Z"),
        ),
        (Value::Year(2155), col("x", ColumnType::Year), json!(2155)),
        (
            Value::Bytes(vec![0, 1, 2, 255]),
            col("x", ColumnType::Blob),
            json!("AAEC/w=="),
        ),
        (
            Value::Geometry(vec![0; 4]),
            col("x", ColumnType::Geometry),
            json!("AAAAAA=="),
        ),
        (Value::Bit(5), col("x", ColumnType::Bit), json!(5)),
        (
            Value::Enum(2),
            labelled(ColumnType::Enum, &["a", "b"]),
            json!("b"),
        ),
        (
            Value::Enum(0),
            labelled(ColumnType::Enum, &["a", "b"]),
            json!(""),
        ),
        (
            Value::Enum(0),
            labelled(ColumnType::Enum, &["", "b"]),
            json!(0),
        ),
        (
            Value::Enum(1),
            labelled(ColumnType::Enum, &["", "b"]),
            json!(""),
        ),
        (
            Value::Enum(9),
            labelled(ColumnType::Enum, &["a", "b"]),
            json!(9),
        ),
        (
            Value::Set(0b101),
            labelled(ColumnType::Set, &["a", "b", "c"]),
            json!("a,c"),
        ),
        (
            Value::Set(0),
            labelled(ColumnType::Set, &["a", "b", "c"]),
            json!(""),
        ),
        (
            Value::Set(0b1000),
            labelled(ColumnType::Set, &["a", "b", "c"]),
            json!(8),
        ),
        (
            Value::Json("{\"a\": [1, 2.5, null]}".into()),
            col("x", ColumnType::Json),
            json!({"a": [1, 2.5, null]}),
        ),
        (
            Value::Json("not json".into()),
            col("x", ColumnType::Json),
            json!("not json"),
        ),
    ];
    for (v, c, expected) in cases {
        assert_eq!(value_to_json(&v, &c), expected, "{v:?}");
        let back = value_from_json(&expected, &c).unwrap();
        if !matches!(v, Value::Json(_)) {
            assert!(same(&back, &v), "{expected} -> {back:?}, want {v:?}");
        }
    }
    // JSON columns: normalised text, same document.
    let c = col("x", ColumnType::Json);
    assert_eq!(
        round_trip(&Value::Json("{ \"b\" : 1 ,\"a\":[true] }".into()), &c),
        Value::Json("{\"a\":[true],\"b\":1}".into())
    );
}

#[test]
fn lenient_inputs() {
    let dt = col("x", ColumnType::DateTime);
    assert_eq!(
        value_from_json(&json!("2024-01-02T03:04:05.5"), &dt).unwrap(),
        Value::DateTime {
            year: 2024,
            month: 1,
            day: 2,
            hour: 3,
            minute: 4,
            second: 5,
            micros: 500_000
        }
    );
    let ts = col("x", ColumnType::Timestamp);
    assert_eq!(
        value_from_json(&json!("1970-01-01T00:00:01Z"), &ts).unwrap(),
        Value::Timestamp { secs: 1, micros: 0 }
    );
    let big = col("x", ColumnType::BigInt);
    assert_eq!(value_from_json(&json!("-5"), &big).unwrap(), Value::Int(-5));
    let dec = col("x", ColumnType::Decimal);
    assert_eq!(
        value_from_json(&json!(1.5), &dec).unwrap(),
        Value::Decimal("1.5".into())
    );
    let set = labelled(ColumnType::Set, &["a", "b"]);
    assert_eq!(value_from_json(&json!(3), &set).unwrap(), Value::Set(3));
}

#[test]
fn errors_name_the_column_and_expectation() {
    let tiny = Column {
        column_type: "tinyint(4)".into(),
        ..col("age", ColumnType::TinyInt)
    };
    let err = value_from_json(&json!(300), &tiny).unwrap_err();
    assert_eq!(
        err.to_string(),
        "column `age` (tinyint(4)): expected an integer from -128 to 127, found number 300"
    );
    let utiny = Column {
        unsigned: true,
        ..tiny.clone()
    };
    assert!(value_from_json(&json!(-1), &utiny)
        .unwrap_err()
        .to_string()
        .contains("from 0 to 255"));

    let checks: Vec<(Column, J, &str)> = vec![
        (
            col("d", ColumnType::Date),
            json!("2024/01/01"),
            "YYYY-MM-DD",
        ),
        (col("d", ColumnType::Time), json!("12:00"), "HH:MM:SS"),
        (
            col("d", ColumnType::Timestamp),
            json!("2024-02-30T00:00:00Z"),
            "UTC timestamp",
        ),
        (
            col("d", ColumnType::Timestamp),
            json!("1969-12-31T23:59:59Z"),
            "UTC timestamp",
        ),
        (
            col("d", ColumnType::Timestamp),
            json!("2024-01-01 00:00:00"),
            "UTC timestamp",
        ),
        (col("d", ColumnType::Decimal), json!("1e5"), "decimal"),
        (col("d", ColumnType::Decimal), json!("1."), "decimal"),
        (col("d", ColumnType::Float), json!(1e300), "FLOAT range"),
        (col("d", ColumnType::Double), json!("inf"), "DOUBLE"),
        (col("d", ColumnType::Blob), json!("not base64!"), "base64"),
        (col("d", ColumnType::Year), json!(70000), "year"),
        (
            labelled(ColumnType::Enum, &["a"]),
            json!("b"),
            "labels [\"a\"]",
        ),
        (
            labelled(ColumnType::Set, &["a"]),
            json!("a,b"),
            "members of [\"a\"]",
        ),
        (text_col("utf8mb4"), json!(5), "a string"),
    ];
    for (c, j, want) in checks {
        let err = value_from_json(&j, &c).unwrap_err().to_string();
        assert!(
            err.contains(&format!("column `{}`", c.name)) && err.contains(want),
            "{j}: {err}"
        );
    }
    let long = "x".repeat(500);
    let err = value_from_json(&json!(long), &col("d", ColumnType::Date))
        .unwrap_err()
        .to_string();
    assert!(err.len() < 200 && err.ends_with('…'), "{err}");
}

// Envelopes (Debezium JSON, Kafka Connect schemas): their own file.
mod envelope;
