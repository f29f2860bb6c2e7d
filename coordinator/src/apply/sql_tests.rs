use fleetsync_proto::{Column, ColumnType, Value};

use super::*;

fn lit(v: &Value) -> String {
    let mut buf = Vec::new();
    push_value(&mut buf, v).expect("renders");
    String::from_utf8(buf).expect("utf8 in tests")
}

fn col(name: &str) -> Column {
    Column {
        name: name.into(),
        ty: ColumnType::Int,
        column_type: "int(11)".into(),
        unsigned: false,
        nullable: true,
        charset: None,
        enum_values: vec![],
    }
}

#[test]
fn numbers() {
    assert_eq!(lit(&Value::Null), "NULL");
    assert_eq!(
        lit(&Value::Int(-9_223_372_036_854_775_808)),
        "-9223372036854775808"
    );
    assert_eq!(
        lit(&Value::UInt(18_446_744_073_709_551_615)),
        "18446744073709551615"
    );
    assert_eq!(lit(&Value::Double(1.1)), "1.1e0");
    assert_eq!(lit(&Value::Double(1e300)), "1e300");
    assert_eq!(lit(&Value::Double(-0.0)), "-0e0");
    assert_eq!(lit(&Value::Double(5e-324)), "5e-324");
    // The exact double of the f32, so that WHERE f <=> literal matches the stored FLOAT.
    assert_eq!(lit(&Value::Float(1.1)), "1.100000023841858e0");
    assert_eq!(lit(&Value::Float(0.5)), "5e-1");
    assert_eq!(lit(&Value::Float(f32::MAX)), "3.4028234663852886e38");
    assert_eq!(lit(&Value::Decimal("-12.3400".into())), "-12.3400");
    assert_eq!(lit(&Value::Year(0)), "0");
    assert_eq!(lit(&Value::Year(2155)), "2155");
    assert_eq!(lit(&Value::Enum(2)), "2");
    assert_eq!(lit(&Value::Set(5)), "5");
    assert_eq!(lit(&Value::Bit(u64::MAX)), "18446744073709551615");
}

#[test]
fn rejects_what_cannot_be_stored() {
    let mut buf = Vec::new();
    assert!(push_value(&mut buf, &Value::Double(f64::NAN)).is_err());
    assert!(push_value(&mut buf, &Value::Float(f32::INFINITY)).is_err());
    assert!(push_value(&mut buf, &Value::Decimal("1; DROP TABLE x".into())).is_err());
    assert!(push_value(&mut buf, &Value::Decimal(String::new())).is_err());
    assert!(push_value(&mut buf, &Value::Decimal("-".into())).is_err());
    let t = Value::Time {
        negative: false,
        hours: 1,
        minutes: 0,
        seconds: 0,
        micros: 1_000_000,
    };
    assert!(push_value(&mut buf, &t).is_err());
}

#[test]
fn temporal() {
    assert_eq!(
        lit(&Value::Date {
            year: 0,
            month: 0,
            day: 0
        }),
        "'0000-00-00'"
    );
    assert_eq!(
        lit(&Value::Date {
            year: 2024,
            month: 2,
            day: 29
        }),
        "'2024-02-29'"
    );
    let t = Value::Time {
        negative: true,
        hours: 838,
        minutes: 59,
        seconds: 59,
        micros: 1,
    };
    assert_eq!(lit(&t), "'-838:59:59.000001'");
    let t = Value::Time {
        negative: false,
        hours: 1,
        minutes: 2,
        seconds: 3,
        micros: 0,
    };
    assert_eq!(lit(&t), "'01:02:03'");
    let dt = Value::DateTime {
        year: 0,
        month: 0,
        day: 0,
        hour: 0,
        minute: 0,
        second: 0,
        micros: 0,
    };
    assert_eq!(lit(&dt), "'0000-00-00 00:00:00'");
    let dt = Value::DateTime {
        year: 9999,
        month: 12,
        day: 31,
        hour: 23,
        minute: 59,
        second: 59,
        micros: 999_999,
    };
    assert_eq!(lit(&dt), "'9999-12-31 23:59:59.999999'");
    assert_eq!(
        lit(&Value::Timestamp { secs: 0, micros: 0 }),
        "'0000-00-00 00:00:00'"
    );
    assert_eq!(
        lit(&Value::Timestamp { secs: 1, micros: 0 }),
        "'1970-01-01 00:00:01'"
    );
    assert_eq!(
        lit(&Value::Timestamp {
            secs: 2_147_483_647,
            micros: 999_999
        }),
        "'2038-01-19 03:14:07.999999'"
    );
    assert_eq!(
        lit(&Value::Timestamp {
            secs: 951_782_400,
            micros: 5
        }),
        "'2000-02-29 00:00:00.000005'"
    );
    assert_eq!(
        lit(&Value::Timestamp {
            secs: 1_709_251_199,
            micros: 0
        }),
        "'2024-02-29 23:59:59'"
    );
}

#[test]
fn civil_dates() {
    assert_eq!(civil_from_days(0), (1970, 1, 1));
    assert_eq!(civil_from_days(-1), (1969, 12, 31));
    assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    assert_eq!(civil_from_days(2_932_896), (9999, 12, 31));
    // Every day of 1970..2100 follows the previous one.
    let mut prev = civil_from_days(0);
    for d in 1..47_482 {
        let cur = civil_from_days(d);
        let next_day = (prev.0, prev.1, prev.2 + 1);
        let next_month = (prev.0, prev.1 + 1, 1);
        let next_year = (prev.0 + 1, 1, 1);
        assert!(
            cur == next_day || cur == next_month || cur == next_year,
            "{prev:?} -> {cur:?}"
        );
        prev = cur;
    }
    assert_eq!(prev, (2099, 12, 31));
}

#[test]
fn strings_are_byte_exact() {
    assert_eq!(lit(&Value::Text(b"it's".to_vec())), r"'it\'s'");
    assert_eq!(
        lit(&Value::Text(b"a\\b\nc\rd\0e\x1af".to_vec())),
        r"'a\\b\nc\rd\0e\Zf'"
    );
    assert_eq!(lit(&Value::Text(Vec::new())), "''");
    // latin1 bytes stay bytes.
    let mut buf = Vec::new();
    push_value(&mut buf, &Value::Text(vec![0xe9, b'\'', 0xff])).expect("renders");
    assert_eq!(buf, b"'\xe9\\'\xff'");
    assert_eq!(lit(&Value::Bytes(vec![0, 1, b'"'])), "'\\0\x01\"'");
    assert_eq!(
        lit(&Value::Json(r#"{"a":"it's"}"#.into())),
        r#"_utf8mb4'{"a":"it\'s"}'"#
    );
    assert_eq!(
        lit(&Value::Geometry(vec![0xe6, 0x10, 0, 0, 1])),
        "X'E610000001'"
    );
    assert_eq!(lit(&Value::Geometry(vec![])), "X''");
}

#[test]
fn identifiers() {
    let mut buf = Vec::new();
    push_table(&mut buf, "my`db", "t");
    assert_eq!(buf, b"`my``db`.`t`");
    assert_eq!(table_name("a", "b`"), "`a`.`b```");
}

#[test]
fn table_statements() {
    let cols = [col("id"), col("a"), col("b")];
    let t = TableSql::new("db", "t", &cols, &[0]);
    assert_eq!(
        t.insert_head,
        b"INSERT INTO `db`.`t` (`id`,`a`,`b`) VALUES "
    );
    assert_eq!(
        t.upsert_tail,
        b" ON DUPLICATE KEY UPDATE `a`=VALUES(`a`),`b`=VALUES(`b`)"
    );
    assert_eq!(t.delete_head, b"DELETE FROM `db`.`t` WHERE `id` IN (");
    let t = TableSql::new("db", "t", &cols[..2], &[0, 1]);
    assert_eq!(t.upsert_tail, b" ON DUPLICATE KEY UPDATE `id`=VALUES(`id`)");
    assert_eq!(t.delete_head, b"DELETE FROM `db`.`t` WHERE (`id`,`a`) IN (");

    let row = [Value::Int(1), Value::Text(b"x".to_vec()), Value::Null];
    let mut buf = Vec::new();
    push_row(&mut buf, &row).expect("renders");
    assert_eq!(buf, b"(1,'x',NULL)");
    buf.clear();
    push_key(&mut buf, &row, &[0]).expect("renders");
    assert_eq!(buf, b"1");
    buf.clear();
    push_key(&mut buf, &row, &[1, 0]).expect("renders");
    assert_eq!(buf, b"('x',1)");
    assert!(push_key(&mut buf, &row, &[7]).is_err());
    buf.clear();
    push_row_match(&mut buf, &cols, &row).expect("renders");
    assert_eq!(
        String::from_utf8_lossy(&buf),
        "`id` <=> 1 AND `a` <=> 'x' AND CAST(`a` AS BINARY) <=> 'x' AND `b` <=> NULL"
    );
    buf.clear();
    push_assignments(&mut buf, &cols, &row).expect("renders");
    assert_eq!(buf, b"`id`=1,`a`='x',`b`=NULL");
}
