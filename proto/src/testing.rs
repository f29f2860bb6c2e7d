//! Proptest strategies for the crate's types, shared by the test modules.

use proptest::collection::{btree_set, vec};
use proptest::option;
use proptest::prelude::*;

use crate::{
    BinlogPosition, Column, ColumnType, Ddl, Gtid, GtidSet, KeyKind, Op, Origin, Position,
    RowChange, TableSchema, Transaction, Value,
};

pub(crate) fn arb_gtid() -> impl Strategy<Value = Gtid> {
    (any::<u32>(), any::<u32>(), any::<u64>()).prop_map(|(domain, server_id, seq)| Gtid {
        domain,
        server_id,
        seq,
    })
}

pub(crate) fn arb_gtid_set() -> impl Strategy<Value = GtidSet> {
    vec(arb_gtid(), 0..5).prop_map(GtidSet::from_iter)
}

/// File names: realistic ones, and odd ones (colons, dots, no numeric suffix), never `@`.
pub(crate) fn arb_file() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u32..2_000_000).prop_map(|n| format!("binlog.{n:06}")),
        "[a-z-]{1,8}\\.[0-9]{1,8}",
        "[a-zA-Z0-9_.:/ -]{0,12}[a-zA-Z0-9_.:/-]",
    ]
}

pub(crate) fn arb_binlog_position() -> impl Strategy<Value = BinlogPosition> {
    (arb_file(), any::<u64>()).prop_map(|(file, pos)| BinlogPosition { file, pos })
}

pub(crate) fn arb_position() -> impl Strategy<Value = Position> {
    (arb_binlog_position(), option::of(arb_gtid_set()))
        .prop_map(|(binlog, gtid)| Position { binlog, gtid })
}

/// Positions drawn from a small pool so that equal and near-equal values are common.
pub(crate) fn arb_position_small() -> impl Strategy<Value = Position> {
    let files = prop_oneof![
        Just("binlog.000009"),
        Just("binlog.000010"),
        Just("binlog.10"),
        Just("mysql-bin.000009"),
        Just("relay"),
        Just("binlog."),
        Just("a.b.3"),
    ];
    let gtid = (0u32..2, 1u32..3, 0u64..3).prop_map(|(domain, server_id, seq)| Gtid {
        domain,
        server_id,
        seq,
    });
    (
        files,
        0u64..3,
        option::of(vec(gtid, 0..3).prop_map(GtidSet::from_iter)),
    )
        .prop_map(|(file, pos, gtid)| Position {
            binlog: BinlogPosition::new(file, pos),
            gtid,
        })
}

fn column(ty: ColumnType, column_type: &str) -> Column {
    Column {
        name: "c".into(),
        ty,
        column_type: column_type.into(),
        unsigned: false,
        nullable: false,
        charset: None,
        enum_values: Vec::new(),
    }
}

/// Distinct labels; sometimes including the empty label MySQL allows.
fn arb_labels(max: usize) -> impl Strategy<Value = Vec<String>> {
    (btree_set("[a-z][a-z ]{0,5}", 1..max), any::<bool>()).prop_map(|(set, with_empty)| {
        let mut labels: Vec<String> = set.into_iter().collect();
        if with_empty {
            labels.insert(labels.len() / 2, String::new());
        }
        labels
    })
}

/// A column of any type, with the attributes that type can have.
pub(crate) fn arb_column() -> BoxedStrategy<Column> {
    use ColumnType::*;
    let ints = (
        prop_oneof![
            Just(TinyInt),
            Just(SmallInt),
            Just(MediumInt),
            Just(Int),
            Just(BigInt)
        ],
        any::<bool>(),
    )
        .prop_map(|(ty, unsigned)| Column {
            unsigned,
            ..column(ty, "int")
        });
    let plain = prop_oneof![
        Just(Decimal),
        Just(Float),
        Just(Double),
        Just(Bit),
        Just(Date),
        Just(Time),
        Just(DateTime),
        Just(Timestamp),
        Just(Year),
        Just(Binary),
        Just(VarBinary),
        Just(Blob),
        Just(Json),
        Just(Geometry),
    ]
    .prop_map(|ty| column(ty, ""));
    let text = (
        prop_oneof![Just(Char), Just(VarChar), Just(Text)],
        prop_oneof![
            Just("latin1"),
            Just("utf8mb4"),
            Just("utf8mb3"),
            Just("ascii")
        ],
    )
        .prop_map(|(ty, cs)| Column {
            charset: Some(cs.into()),
            ..column(ty, "text")
        });
    let enums = (prop_oneof![Just(Enum), Just(Set)], arb_labels(64)).prop_map(|(ty, labels)| {
        let mut labels = labels;
        labels.truncate(64);
        Column {
            enum_values: labels,
            ..column(ty, "enum")
        }
    });
    (prop_oneof![ints, plain, text, enums], any::<bool>())
        .prop_map(|(c, nullable)| Column { nullable, ..c })
        .boxed()
}

fn micros() -> impl Strategy<Value = u32> {
    prop_oneof![Just(0u32), 0u32..1_000_000]
}

/// JSON documents (never the top-level literal `null`) in varied spellings.
fn arb_json_text() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(serde_json::Value::from),
        ".*".prop_map(serde_json::Value::from),
    ];
    let doc = leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            vec(("[a-z]{0,4}", inner), 0..4)
                .prop_map(|kv| serde_json::Value::Object(kv.into_iter().collect())),
        ]
    });
    (doc.prop_filter("not null", |d| !d.is_null()), any::<bool>()).prop_map(|(d, pretty)| {
        let text = if pretty {
            serde_json::to_string_pretty(&d)
        } else {
            serde_json::to_string(&d)
        };
        text.unwrap_or_default()
    })
}

/// A value valid for `col` (NULL only if the column is nullable).
pub(crate) fn value_for(col: &Column) -> BoxedStrategy<Value> {
    use ColumnType as T;
    let v: BoxedStrategy<Value> = match col.ty {
        T::TinyInt | T::SmallInt | T::MediumInt | T::Int | T::BigInt => {
            let bits = match col.ty {
                T::TinyInt => 8,
                T::SmallInt => 16,
                T::MediumInt => 24,
                T::Int => 32,
                _ => 64,
            };
            if col.unsigned {
                let max = u64::MAX >> (64 - bits);
                prop_oneof![Just(0), Just(max), 0..=max]
                    .prop_map(Value::UInt)
                    .boxed()
            } else {
                let max = i64::MAX >> (64 - bits);
                let min = -max - 1;
                prop_oneof![Just(min), Just(max), min..=max]
                    .prop_map(Value::Int)
                    .boxed()
            }
        }
        T::Decimal => "-?[0-9]{1,30}(\\.[0-9]{1,30})?"
            .prop_map(Value::Decimal)
            .boxed(),
        T::Float => any::<f32>().prop_map(Value::Float).boxed(),
        T::Double => any::<f64>().prop_map(Value::Double).boxed(),
        T::Bit => any::<u64>().prop_map(Value::Bit).boxed(),
        T::Date => prop_oneof![Just((0, 0, 0)), (0u16..=9999, 0u8..=12, 0u8..=31),]
            .prop_map(|(year, month, day)| Value::Date { year, month, day })
            .boxed(),
        T::Time => (any::<bool>(), 0u32..=838, 0u8..60, 0u8..60, micros())
            .prop_map(|(negative, hours, minutes, seconds, micros)| Value::Time {
                negative,
                hours,
                minutes,
                seconds,
                micros,
            })
            .boxed(),
        T::DateTime => (
            0u16..=9999,
            0u8..=12,
            0u8..=31,
            0u8..24,
            0u8..60,
            0u8..60,
            micros(),
        )
            .prop_map(
                |(year, month, day, hour, minute, second, micros)| Value::DateTime {
                    year,
                    month,
                    day,
                    hour,
                    minute,
                    second,
                    micros,
                },
            )
            .boxed(),
        T::Timestamp => (
            prop_oneof![Just(0u64), 1u64..=u64::from(u32::MAX), any::<u64>()],
            micros(),
        )
            .prop_map(|(secs, micros)| Value::Timestamp { secs, micros })
            .boxed(),
        T::Year => prop_oneof![Just(0u16), 1901u16..=2155]
            .prop_map(Value::Year)
            .boxed(),
        T::Char | T::VarChar | T::Text => prop_oneof![
            any::<String>().prop_map(String::into_bytes),
            vec(any::<u8>(), 0..16),
        ]
        .prop_map(Value::Text)
        .boxed(),
        T::Binary | T::VarBinary | T::Blob => {
            vec(any::<u8>(), 0..16).prop_map(Value::Bytes).boxed()
        }
        T::Geometry => vec(any::<u8>(), 0..32).prop_map(Value::Geometry).boxed(),
        T::Enum => {
            let n = col.enum_values.len() as u16;
            (0..=n + 2).prop_map(Value::Enum).boxed()
        }
        T::Set => {
            let n = col.enum_values.len();
            let mask = if n >= 64 { u64::MAX } else { (1u64 << n) - 1 };
            prop_oneof![4 => any::<u64>().prop_map(move |b| b & mask), 1 => any::<u64>()]
                .prop_map(Value::Set)
                .boxed()
        }
        T::Json => arb_json_text().prop_map(Value::Json).boxed(),
    };
    if col.nullable {
        prop_oneof![1 => Just(Value::Null), 6 => v].boxed()
    } else {
        v
    }
}

/// A column and a value valid for it.
pub(crate) fn arb_typed() -> impl Strategy<Value = (Column, Value)> {
    arb_column().prop_flat_map(|c| value_for(&c).prop_map(move |v| (c.clone(), v)))
}

pub(crate) fn arb_table() -> impl Strategy<Value = TableSchema> {
    (
        vec(arb_column(), 1..6),
        0u8..3,
        any::<bool>(),
        "[a-z]{1,8}",
        "[a-z_]{1,8}",
    )
        .prop_map(|(mut columns, kind, transactional, schema, table)| {
            for (i, c) in columns.iter_mut().enumerate() {
                c.name = format!("c{i}");
            }
            let (key, key_kind) = match kind {
                0 => (vec![0], KeyKind::Primary),
                1 => (vec![0], KeyKind::UniqueNotNull),
                _ => (vec![], KeyKind::None),
            };
            TableSchema {
                schema,
                table,
                columns,
                key,
                key_kind,
                transactional,
            }
        })
}

pub(crate) fn arb_row(t: &TableSchema) -> BoxedStrategy<Vec<Value>> {
    t.columns.iter().map(value_for).collect::<Vec<_>>().boxed()
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        Just(Op::Insert),
        Just(Op::Update),
        Just(Op::Delete),
        Just(Op::Snapshot)
    ]
}

fn arb_change(tables: Vec<TableSchema>) -> impl Strategy<Value = RowChange> {
    (0..tables.len()).prop_flat_map(move |i| {
        let t = &tables[i];
        (arb_op(), option::of(arb_row(t)), option::of(arb_row(t))).prop_map(
            move |(op, before, after)| RowChange {
                table: i as u32,
                op,
                before,
                after,
            },
        )
    })
}

fn arb_ddl() -> impl Strategy<Value = Ddl> {
    (
        option::of("[a-z]{1,6}"),
        vec(("[a-z]{1,6}", "[a-z]{1,6}"), 0..3),
        ".{0,40}",
    )
        .prop_map(|(schema, tables, statement)| Ddl {
            schema,
            tables,
            statement,
        })
}

pub(crate) fn arb_transaction() -> impl Strategy<Value = Transaction> {
    vec(arb_table(), 1..4)
        .prop_flat_map(|tables| {
            let changes = vec(arb_change(tables.clone()), 0..6);
            let origin = ("[a-z0-9-]{1,10}", any::<u32>(), "[0-9a-f-]{0,36}").prop_map(
                |(name, server_id, server_uuid)| Origin {
                    name,
                    server_id,
                    server_uuid,
                },
            );
            (
                Just(tables),
                changes,
                origin,
                option::of(arb_gtid()),
                arb_position(),
                any::<u64>(),
                any::<u64>(),
                any::<(bool, bool)>(),
                option::of(arb_ddl()),
            )
        })
        .prop_map(
            |(tables, changes, origin, gtid, position, txn_id, commit_ts_ms, snap, ddl)| {
                Transaction {
                    origin,
                    gtid,
                    position,
                    txn_id,
                    commit_ts_ms,
                    snapshot: snap.0,
                    snapshot_done: snap.1,
                    tables,
                    changes,
                    ddl,
                }
            },
        )
}
