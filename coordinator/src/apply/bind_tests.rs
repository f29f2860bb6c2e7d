use super::*;

fn col(name: &str, ty: ColumnType) -> Column {
    Column {
        name: name.into(),
        ty,
        column_type: String::new(),
        unsigned: false,
        nullable: true,
        charset: None,
        enum_values: vec![],
    }
}

#[test]
fn classes_respect_the_placeholder_limit() {
    assert_eq!(row_classes(4), [1, ROWS_PER_STMT]);
    assert_eq!(row_classes(0), [1, ROWS_PER_STMT]);
    // 1000 columns: 65 rows fit in 65,535 placeholders.
    assert_eq!(row_classes(1000), [1, 65]);
    assert_eq!(row_classes(70_000), [1, 1]);
    for per_row in [1, 7, 30, 511, 512, 513, 4096, 65_535] {
        let [_, big] = row_classes(per_row);
        assert!(big * per_row <= MAX_PLACEHOLDERS, "{per_row}");
    }
}

#[test]
fn split_covers_every_row_largest_first() {
    assert_eq!(split_rows(0, [1, 128]), vec![]);
    assert_eq!(split_rows(1, [1, 128]), vec![(1, 1)]);
    assert_eq!(split_rows(128, [1, 128]), vec![(128, 1)]);
    assert_eq!(split_rows(300, [1, 128]), vec![(128, 2), (1, 44)]);
    assert_eq!(split_rows(5, [1, 1]), vec![(1, 5)]);
    for n in 0..600 {
        let runs = split_rows(n, [1, 65]);
        assert_eq!(runs.iter().map(|(c, s)| c * s).sum::<usize>(), n);
        assert!(runs.len() <= 2);
    }
}

fn table() -> (TableSql, Vec<Column>) {
    let cols = vec![
        col("id", ColumnType::Int),
        col("doc", ColumnType::Json),
        col("n`x", ColumnType::VarChar),
    ];
    (TableSql::new("s", "t", &cols, &[0]), cols)
}

#[test]
fn statement_texts() {
    let (sql, cols) = table();
    assert_eq!(
        String::from_utf8_lossy(&insert_text(&sql, &cols, 2, true)),
        "INSERT INTO `s`.`t` (`id`,`doc`,`n``x`) VALUES (?,CONVERT(? USING utf8mb4),?),\
         (?,CONVERT(? USING utf8mb4),?) ON DUPLICATE KEY UPDATE `doc`=VALUES(`doc`),\
         `n``x`=VALUES(`n``x`)"
    );
    assert_eq!(
        String::from_utf8_lossy(&insert_text(&sql, &cols, 1, false)),
        "INSERT INTO `s`.`t` (`id`,`doc`,`n``x`) VALUES (?,CONVERT(? USING utf8mb4),?)"
    );
    assert_eq!(
        String::from_utf8_lossy(&delete_text(&sql, &cols, &[0], 3)),
        "DELETE FROM `s`.`t` WHERE `id` IN (?,?,?)"
    );
    let two = TableSql::new("s", "t", &cols, &[0, 2]);
    assert_eq!(
        String::from_utf8_lossy(&delete_text(&two, &cols, &[0, 2], 2)),
        "DELETE FROM `s`.`t` WHERE (`id`,`n``x`) IN ((?,?),(?,?))"
    );
}

#[test]
fn params_round_trip_as_the_literals_say() {
    use mysql_async::Value as V;
    let values = vec![
        Value::Null,
        Value::Int(-5),
        Value::UInt(u64::MAX),
        Value::Float(1.1),
        Value::Double(-2.5e300),
        Value::Decimal("-12.340".into()),
        Value::Date {
            year: 2024,
            month: 2,
            day: 29,
        },
        Value::Time {
            negative: true,
            hours: 838,
            minutes: 59,
            seconds: 58,
            micros: 12,
        },
        Value::DateTime {
            year: 0,
            month: 0,
            day: 0,
            hour: 0,
            minute: 0,
            second: 0,
            micros: 0,
        },
        Value::Timestamp {
            secs: 86_400,
            micros: 500_000,
        },
        Value::Timestamp { secs: 0, micros: 0 },
        Value::Year(2155),
        Value::Text(b"a'b\\\0".to_vec()),
        Value::Bytes(vec![0, 255, 39]),
        Value::Enum(3),
        Value::Set(5),
        Value::Bit(1 << 63),
        Value::Json("{\"a\": \"\u{e9}\"}".into()),
        Value::Geometry(vec![0, 0, 0, 0, 1]),
    ];
    let mut buf = Vec::new();
    for v in &values {
        push_param(&mut buf, v).expect("encodes");
    }
    buf.extend_from_slice(b"rest");
    let (got, rest) = read_params(&buf, values.len()).expect("decodes");
    assert_eq!(rest, b"rest");
    let b = |s: &str| V::Bytes(s.as_bytes().to_vec());
    assert_eq!(
        got,
        vec![
            V::NULL,
            V::Int(-5),
            V::UInt(u64::MAX),
            V::Float(1.1),
            V::Double(-2.5e300),
            b("-12.340"),
            b("2024-02-29"),
            b("-838:59:58.000012"),
            b("0000-00-00 00:00:00"),
            b("1970-01-02 00:00:00.500000"),
            b("0000-00-00 00:00:00"),
            V::UInt(2155),
            V::Bytes(b"a'b\\\0".to_vec()),
            V::Bytes(vec![0, 255, 39]),
            V::UInt(3),
            V::UInt(5),
            V::UInt(1 << 63),
            b("{\"a\": \"\u{e9}\"}"),
            V::Bytes(vec![0, 0, 0, 0, 1]),
        ]
    );
}

#[test]
fn bad_values_and_short_buffers_are_errors() {
    let mut buf = Vec::new();
    assert!(push_param(&mut buf, &Value::Double(f64::NAN)).is_err());
    assert!(push_param(&mut buf, &Value::Float(f32::INFINITY)).is_err());
    assert!(push_param(&mut buf, &Value::Decimal("1; DROP".into())).is_err());
    let mut buf = Vec::new();
    push_param(&mut buf, &Value::Bytes(vec![1, 2, 3])).expect("encodes");
    assert!(read_params(&buf[..buf.len() - 1], 1).is_err());
    assert!(read_params(&buf, 2).is_err());
    assert!(read_params(&[9], 1).is_err());
}
