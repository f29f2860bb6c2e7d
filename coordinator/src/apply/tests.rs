//! Tests against a real server, skipped unless `FLEETSYNC_TEST_MARIADB_URL` is set, e.g.
//! `mysql://root@127.0.0.1:23306` (a throwaway instance: the tests create and drop databases).
//! The same server plays source (for `create_missing`) and target; every test uses fresh,
//! randomly named databases and its own sync name.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use fleetsync_config::{ApplyProtocol, TableMap};
use fleetsync_proto::{
    Column, ColumnType, Ddl, KeyKind, Op, Origin, Position, RowChange, TableSchema, Transaction,
    Value,
};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, Row};

use super::*;

const URL_ENV: &str = "FLEETSYNC_TEST_MARIADB_URL";

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub(super) struct Env {
    pub(super) opts: Opts,
    pub(super) admin: Conn,
    pub(super) src: String,
    pub(super) dst: String,
}

impl Env {
    /// `None` (with a message) when no server is configured.
    pub(super) async fn new(test: &str) -> Option<Env> {
        let Ok(url) = std::env::var(URL_ENV) else {
            // Written past the test harness's output capture, in the form scripts/test.sh
            // counts, so a skip is never mistaken for a pass.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: set {URL_ENV} to run it against a MariaDB/MySQL server"
            );
            return None;
        };
        let opts = Opts::from_url(&url).expect("valid test URL");
        let mut admin = Conn::new(opts.clone())
            .await
            .expect("test server reachable");
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let tag = format!(
            "{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst),
            nanos % 100_000
        );
        let (src, dst) = (format!("fs_src_{tag}"), format!("fs_dst_{tag}"));
        admin
            .query_drop(format!("CREATE DATABASE `{src}`"))
            .await
            .expect("create source db");
        Some(Env {
            opts,
            admin,
            src,
            dst,
        })
    }

    pub(super) fn options(&self, create_missing: bool) -> ApplierOptions {
        let map = [(self.src.clone(), self.dst.clone())].into_iter().collect();
        ApplierOptions {
            sync: format!("sync_{}", self.src),
            source: "src1".into(),
            target: "tgt1".into(),
            map: TableMap::new(&map).expect("valid map"),
            create_missing,
            apply_ddl: true,
            mark_writes: false,
            loop_prevention: None,
            conflicts: Default::default(),
            protocol: Default::default(),
            apply_lanes: 1,
            group: None,
        }
    }

    pub(super) async fn applier(&self, create_missing: bool) -> Applier {
        Applier::connect(
            self.opts.clone(),
            self.opts.clone(),
            self.options(create_missing),
        )
        .await
        .expect("connects")
    }

    pub(super) async fn rows(&mut self, sql: &str) -> Vec<Vec<mysql_async::Value>> {
        let rows: Vec<Row> = self.admin.query(sql).await.expect("query");
        rows.into_iter().map(Row::unwrap).collect()
    }

    pub(super) async fn exec(&mut self, sql: &str) {
        self.admin.query_drop(sql).await.expect("statement");
    }

    pub(super) async fn drop_dbs(mut self) {
        let (src, dst) = (self.src.clone(), self.dst.clone());
        self.exec(&format!(
            "DROP DATABASE IF EXISTS `{src}`; DROP DATABASE IF EXISTS `{dst}`"
        ))
        .await;
    }
}

/// A column as the agent describes it: character columns in the test server's default
/// character set (utf8mb4), nullable unless it is part of the key (see [`table`]).
fn col(name: &str, ty: ColumnType) -> Column {
    let character = matches!(
        ty,
        ColumnType::Char | ColumnType::VarChar | ColumnType::Text
    );
    Column {
        name: name.into(),
        ty,
        column_type: String::new(),
        unsigned: false,
        nullable: true,
        charset: character.then(|| "utf8mb4".to_string()),
        enum_values: vec![],
    }
}

pub(super) fn table(
    schema: &str,
    name: &str,
    cols: &[(&str, ColumnType)],
    key: &[u16],
) -> TableSchema {
    TableSchema {
        schema: schema.into(),
        table: name.into(),
        columns: cols
            .iter()
            .enumerate()
            .map(|(i, (n, t))| Column {
                nullable: !key.contains(&(i as u16)),
                ..col(n, *t)
            })
            .collect(),
        key: key.to_vec(),
        key_kind: if key.is_empty() {
            KeyKind::None
        } else {
            KeyKind::Primary
        },
        transactional: true,
    }
}

pub(super) fn txn(n: u64, tables: Vec<TableSchema>, changes: Vec<RowChange>) -> Transaction {
    Transaction {
        origin: Origin {
            name: "src1".into(),
            server_id: 1,
            server_uuid: String::new(),
        },
        gtid: None,
        position: Position::new("binlog.000001", 1000 + n),
        txn_id: n,
        commit_ts_ms: 1_700_000_000_000 + n,
        snapshot: false,
        snapshot_done: false,
        tables,
        changes,
        ddl: None,
    }
}

pub(super) fn ins(table: u32, after: Vec<Value>) -> RowChange {
    RowChange {
        table,
        op: Op::Insert,
        before: None,
        after: Some(after),
    }
}

pub(super) fn upd(table: u32, before: Vec<Value>, after: Vec<Value>) -> RowChange {
    RowChange {
        table,
        op: Op::Update,
        before: Some(before),
        after: Some(after),
    }
}

pub(super) fn del(table: u32, before: Vec<Value>) -> RowChange {
    RowChange {
        table,
        op: Op::Delete,
        before: Some(before),
        after: None,
    }
}

pub(super) fn kv(k: i64, v: &str) -> Vec<Value> {
    vec![Value::Int(k), Value::Text(v.as_bytes().to_vec())]
}

pub(super) const KV: &[(&str, ColumnType)] = &[("id", ColumnType::Int), ("v", ColumnType::VarChar)];

#[tokio::test]
async fn every_value_type_round_trips() {
    let Some(mut env) = Env::new("every_value_type_round_trips").await else {
        return;
    };
    let src = env.src.clone();
    env.exec(&format!(
        "CREATE TABLE `{src}`.t (id INT PRIMARY KEY, f FLOAT, d DOUBLE, dec1 DECIMAL(12,4), da DATE, \
         ti TIME(6), dt DATETIME(6), ts TIMESTAMP(6) NULL, y YEAR, l VARCHAR(10) CHARACTER SET latin1, \
         u VARCHAR(10) CHARACTER SET utf8mb4, b VARBINARY(10), e ENUM('a','b','c'), s SET('x','y','z'), \
         bi BIT(10), j JSON, g GEOMETRY, n INT UNSIGNED, big BIGINT) ENGINE=InnoDB"
    ))
    .await;
    // The reference row, written by the server from SQL the applier does not produce.
    env.exec(&format!(
        "SET NAMES binary; SET time_zone='+00:00'; SET sql_mode='NO_ENGINE_SUBSTITUTION'; \
         INSERT INTO `{src}`.t VALUES (1, 1.1, 1e300, -12.3400, '0000-00-00', '-838:59:59.000001', \
         '0000-00-00 00:00:00', '0000-00-00 00:00:00', 0, X'E9E8', X'F09F9880', X'00FF27', 'b', 'x,z', \
         b'1111111111', '{{\"a\": \"it''s\"}}', ST_GeomFromText('POINT(1 2)', 4326), 4294967295, -1), \
         (2, -0.5, 5e-324, 99999999.9999, '2024-02-29', '12:00:00', '9999-12-31 23:59:59.999999', \
         '2038-01-19 03:14:07.999999', 2155, 'a\\'b\\\\c', '', '', '', '', 0, '[]', NULL, 0, 0); SET NAMES utf8mb4"
    ))
    .await;
    let cols = [
        ("id", ColumnType::Int),
        ("f", ColumnType::Float),
        ("d", ColumnType::Double),
        ("dec1", ColumnType::Decimal),
        ("da", ColumnType::Date),
        ("ti", ColumnType::Time),
        ("dt", ColumnType::DateTime),
        ("ts", ColumnType::Timestamp),
        ("y", ColumnType::Year),
        ("l", ColumnType::VarChar),
        ("u", ColumnType::VarChar),
        ("b", ColumnType::VarBinary),
        ("e", ColumnType::Enum),
        ("s", ColumnType::Set),
        ("bi", ColumnType::Bit),
        ("j", ColumnType::Json),
        ("g", ColumnType::Geometry),
        ("n", ColumnType::Int),
        ("big", ColumnType::BigInt),
    ];
    let schema = table(&src, "t", &cols, &[0]);
    let zero_dt = Value::DateTime {
        year: 0,
        month: 0,
        day: 0,
        hour: 0,
        minute: 0,
        second: 0,
        micros: 0,
    };
    let mut point = vec![0xe6, 0x10, 0, 0, 1, 1, 0, 0, 0];
    point.extend_from_slice(&1f64.to_le_bytes());
    point.extend_from_slice(&2f64.to_le_bytes());
    let row1 = vec![
        Value::Int(1),
        Value::Float(1.1),
        Value::Double(1e300),
        Value::Decimal("-12.3400".into()),
        Value::Date {
            year: 0,
            month: 0,
            day: 0,
        },
        Value::Time {
            negative: true,
            hours: 838,
            minutes: 59,
            seconds: 59,
            micros: 1,
        },
        zero_dt,
        Value::Timestamp { secs: 0, micros: 0 },
        Value::Year(0),
        Value::Text(vec![0xe9, 0xe8]),
        Value::Text("😀".as_bytes().to_vec()),
        Value::Bytes(vec![0, 0xff, b'\'']),
        Value::Enum(2),
        Value::Set(5),
        Value::Bit(1023),
        Value::Json(r#"{"a": "it's"}"#.into()),
        Value::Geometry(point),
        Value::UInt(4_294_967_295),
        Value::Int(-1),
    ];
    let row2 = vec![
        Value::Int(2),
        Value::Float(-0.5),
        Value::Double(5e-324),
        Value::Decimal("99999999.9999".into()),
        Value::Date {
            year: 2024,
            month: 2,
            day: 29,
        },
        Value::Time {
            negative: false,
            hours: 12,
            minutes: 0,
            seconds: 0,
            micros: 0,
        },
        Value::DateTime {
            year: 9999,
            month: 12,
            day: 31,
            hour: 23,
            minute: 59,
            second: 59,
            micros: 999_999,
        },
        Value::Timestamp {
            secs: 2_147_483_647,
            micros: 999_999,
        },
        Value::Year(2155),
        Value::Text(b"a'b\\c".to_vec()),
        Value::Text(vec![]),
        Value::Bytes(vec![]),
        Value::Enum(0),
        Value::Set(0),
        Value::Bit(0),
        Value::Json("[]".into()),
        Value::Null,
        Value::UInt(0),
        Value::Int(0),
    ];
    let dst = env.dst.clone();
    // Both protocols, each as its own sync into the same (emptied) table.
    for protocol in [ApplyProtocol::Binary, ApplyProtocol::Text] {
        let mut opts = env.options(true);
        opts.protocol = protocol;
        opts.sync = format!("{}_{}", opts.sync, protocol.as_str());
        let mut applier = Applier::connect(env.opts.clone(), env.opts.clone(), opts)
            .await
            .expect("connects");
        env.exec(&format!("DROP TABLE IF EXISTS `{dst}`.t")).await;
        let executed = "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS \
                        WHERE VARIABLE_NAME = 'COM_STMT_EXECUTE'";
        let before = env.rows(executed).await;
        let state = applier
            .apply(&[txn(
                1,
                vec![schema.clone()],
                vec![ins(0, row1.clone()), ins(0, row2.clone())],
            )])
            .await
            .expect("applies");
        assert_eq!(state.rows, 2);
        assert_eq!(state.position, Position::new("binlog.000001", 1001));
        if protocol == ApplyProtocol::Binary {
            assert_ne!(
                env.rows(executed).await,
                before,
                "no prepared statement ran"
            );
        }
        let select = |db: &str| {
            format!(
            "SELECT id, f, d, dec1, da, ti, dt, ts, UNIX_TIMESTAMP(ts), y, HEX(l), HEX(u), HEX(b), e+0, s+0, \
             bi+0, j, HEX(g), n, big FROM `{db}`.t ORDER BY id"
        )
        };
        let expected = env.rows(&select(&src)).await;
        let got = env.rows(&select(&dst)).await;
        assert_eq!(expected.len(), 2);
        assert_eq!(got, expected);
        // Matching a keyless row by its FLOAT value works with the widened literal.
        let found = env
            .rows(&format!(
                "SELECT COUNT(*) FROM `{dst}`.t WHERE f <=> 1.100000023841858e0"
            ))
            .await;
        assert_eq!(found, vec![vec![mysql_async::Value::Bytes(b"1".to_vec())]]);
    }
    env.drop_dbs().await;
}

#[tokio::test]
async fn compaction_replay_and_state() {
    let Some(mut env) = Env::new("compaction_replay_and_state").await else {
        return;
    };
    let (src, dst) = (env.src.clone(), env.dst.clone());
    env.exec(&format!(
        "CREATE TABLE `{src}`.kv (id INT PRIMARY KEY, v VARCHAR(20))"
    ))
    .await;
    let t = table(&src, "kv", KV, &[0]);
    let batch = vec![
        txn(
            1,
            vec![t.clone()],
            vec![ins(0, kv(1, "a")), ins(0, kv(2, "b")), ins(0, kv(3, "c"))],
        ),
        txn(
            2,
            vec![t.clone()],
            vec![upd(0, kv(1, "a"), kv(1, "a2")), del(0, kv(2, "b"))],
        ),
        txn(
            3,
            vec![t.clone()],
            vec![upd(0, kv(3, "c"), kv(30, "c")), ins(0, kv(2, "b2"))],
        ),
        txn(4, vec![t.clone()], vec![upd(0, kv(30, "c"), kv(3, "c3"))]),
    ];
    let mut applier = env.applier(true).await;
    let state = applier.apply(&batch).await.expect("applies");
    assert_eq!(
        (state.rows, state.txns, state.snapshot),
        (8, 4, SnapshotState::Done)
    );
    let content = format!("SELECT id, v FROM `{dst}`.kv ORDER BY id");
    let expect = |v: &[(i64, &str)]| -> Vec<Vec<mysql_async::Value>> {
        v.iter()
            .map(|(k, s)| {
                vec![
                    mysql_async::Value::Bytes(k.to_string().into_bytes()),
                    mysql_async::Value::Bytes(s.as_bytes().to_vec()),
                ]
            })
            .collect()
    };
    assert_eq!(
        env.rows(&content).await,
        expect(&[(1, "a2"), (2, "b2"), (3, "c3")])
    );

    // A replay of the same batch (as after a crash) changes nothing.
    let again = applier.apply(&batch).await.expect("replays");
    assert_eq!(again, state);
    // A new applier (after the old one is gone: it owns the sync on the target) reads the
    // same progress from the target.
    drop(applier);
    let mut fresh = env.applier(true).await;
    assert_eq!(
        fresh.load_state().await.expect("loads"),
        Some(state.clone())
    );
    let opts = env.options(true);
    let read = read_state(&mut env.admin, &opts.sync, &opts.source)
        .await
        .expect("reads");
    assert_eq!(read, Some(state));
    assert_eq!(
        read_state(&mut env.admin, "no such sync", "x")
            .await
            .expect("reads"),
        None
    );
    // Partially replayed batch: only the new transaction applies.
    let more = vec![
        batch[3].clone(),
        txn(5, vec![t.clone()], vec![del(0, kv(1, "a2"))]),
    ];
    let state = fresh.apply(&more).await.expect("applies");
    assert_eq!((state.rows, state.txns), (9, 5));
    assert_eq!(env.rows(&content).await, expect(&[(2, "b2"), (3, "c3")]));
    env.drop_dbs().await;
}

#[tokio::test]
async fn ordered_apply_with_a_second_unique_index_and_keyless_tables() {
    let Some(mut env) = Env::new("ordered_apply").await else {
        return;
    };
    let (src, dst) = (env.src.clone(), env.dst.clone());
    env.exec(&format!(
        "CREATE TABLE `{src}`.u (id INT PRIMARY KEY, v VARCHAR(20) NOT NULL, UNIQUE KEY (v)); \
         CREATE TABLE `{src}`.nk (id INT, v VARCHAR(20)) ENGINE=MyISAM"
    ))
    .await;
    let u = table(&src, "u", KV, &[0]);
    let mut nk = table(&src, "nk", KV, &[]);
    nk.transactional = false;
    let batch = vec![
        txn(
            1,
            vec![u.clone()],
            vec![ins(0, kv(1, "a")), ins(0, kv(2, "b"))],
        ),
        // Swap the unique values through a temporary one: only correct in order.
        txn(
            2,
            vec![u.clone()],
            vec![
                upd(0, kv(1, "a"), kv(1, "tmp")),
                upd(0, kv(2, "b"), kv(2, "a")),
            ],
        ),
        txn(3, vec![u.clone()], vec![upd(0, kv(1, "tmp"), kv(1, "b"))]),
        txn(
            4,
            vec![nk.clone()],
            vec![ins(0, kv(1, "x")), ins(0, kv(1, "x")), ins(0, kv(1, "X"))],
        ),
        txn(
            5,
            vec![nk.clone()],
            vec![upd(0, kv(1, "X"), kv(2, "y")), del(0, kv(1, "x"))],
        ),
    ];
    let mut applier = env.applier(true).await;
    applier.apply(&batch).await.expect("applies");
    let u_rows = env
        .rows(&format!("SELECT id, v FROM `{dst}`.u ORDER BY id"))
        .await;
    assert_eq!(u_rows.len(), 2);
    assert_eq!(u_rows[0][1], mysql_async::Value::Bytes(b"b".to_vec()));
    assert_eq!(u_rows[1][1], mysql_async::Value::Bytes(b"a".to_vec()));
    // "X" differs from "x" only in case: the byte-exact match updated the right row.
    let nk_rows = env
        .rows(&format!("SELECT id, v FROM `{dst}`.nk ORDER BY id, v"))
        .await;
    let flat: Vec<String> = nk_rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|v| String::from_utf8_lossy(&v.as_sql(true).into_bytes()).into_owned())
                .collect()
        })
        .collect();
    assert_eq!(flat, vec!["'1''x'".to_string(), "'2''y'".to_string()]);
    assert_eq!(applier.slow_tables(), vec![format!("{src}.nk")]);
    env.drop_dbs().await;
}

#[tokio::test]
async fn ddl_runs_once_and_replays_harmlessly() {
    let Some(mut env) = Env::new("ddl_runs_once").await else {
        return;
    };
    let (src, dst) = (env.src.clone(), env.dst.clone());
    env.exec(&format!(
        "CREATE TABLE `{src}`.kv (id INT PRIMARY KEY, v VARCHAR(20))"
    ))
    .await;
    let t = table(&src, "kv", KV, &[0]);
    let mut alter = txn(2, vec![], vec![]);
    alter.ddl = Some(Ddl {
        schema: Some(src.clone()),
        tables: vec![(src.clone(), "kv".into())],
        statement: "ALTER TABLE kv ADD COLUMN w INT".into(),
    });
    let wide = table(&src, "kv", &[KV[0], KV[1], ("w", ColumnType::Int)], &[0]);
    let batch = vec![
        txn(1, vec![t.clone()], vec![ins(0, kv(1, "a"))]),
        alter.clone(),
        txn(
            3,
            vec![wide.clone()],
            vec![ins(
                0,
                vec![Value::Int(2), Value::Text(b"b".to_vec()), Value::Int(7)],
            )],
        ),
    ];
    let mut applier = env.applier(true).await;
    let state = applier.apply(&batch).await.expect("applies");
    assert_eq!(state.txns, 3);
    let w = env
        .rows(&format!("SELECT w FROM `{dst}`.kv WHERE id = 2"))
        .await;
    assert_eq!(w, vec![vec![mysql_async::Value::Bytes(b"7".to_vec())]]);
    // Crash between the DDL and its progress update: the statement runs again.
    let sync = env.options(true).sync;
    env.exec(&format!(
        "UPDATE fleetsync.sync_state SET position='binlog.000001:1001' WHERE sync_name='{sync}'"
    ))
    .await;
    drop(applier);
    let mut again = env.applier(true).await;
    again
        .apply(&batch)
        .await
        .expect("replayed DDL counts as done");
    // A DDL that cannot follow a table rename pauses the table; its rows are skipped.
    let renamed: std::collections::BTreeMap<String, String> =
        [(format!("{src}.kv"), format!("{dst}.other"))]
            .into_iter()
            .collect();
    let mut opts = env.options(false);
    opts.sync.push_str("_2");
    opts.map = TableMap::new(&renamed).expect("map");
    let mut paused = Applier::connect(env.opts.clone(), env.opts.clone(), opts)
        .await
        .expect("connects");
    let state = paused.apply(&batch).await.expect("applies with pauses");
    assert_eq!(state.position, batch[2].position);
    assert_eq!(state.rows, 0);
    let p = paused.paused_tables();
    assert_eq!(p.len(), 1);
    assert!(
        p[0].1.contains("does not exist (create_missing is off)"),
        "{p:?}"
    );
    env.drop_dbs().await;
}

#[tokio::test]
async fn errors_name_table_and_position_and_roll_back() {
    let Some(mut env) = Env::new("errors_name_table").await else {
        return;
    };
    let (src, dst) = (env.src.clone(), env.dst.clone());
    env.exec(&format!("CREATE TABLE `{src}`.a (id INT PRIMARY KEY, v VARCHAR(20)); CREATE TABLE `{src}`.b (id INT PRIMARY KEY, v VARCHAR(20))")).await;
    let a = table(&src, "a", KV, &[0]);
    let bad = table(&src, "b", &[KV[0], ("nope", ColumnType::Int)], &[0]);
    let mut applier = env.applier(true).await;
    let batch = vec![
        txn(1, vec![a.clone()], vec![ins(0, kv(1, "a"))]),
        txn(
            2,
            vec![bad],
            vec![ins(0, vec![Value::Int(1), Value::Int(1)])],
        ),
    ];
    let err = applier.apply(&batch).await.expect_err("unknown column");
    let msg = err.to_string();
    assert!(!err.is_transient(), "{msg}");
    assert_eq!(err.server_code(), Some(1054), "{msg}");
    assert!(
        msg.contains("tgt1")
            && msg.contains(&format!("`{dst}`.`b`"))
            && msg.contains("binlog.000001:1002"),
        "{msg}"
    );
    // Rolled back: the first table's row is not there and no progress was recorded.
    let n = env.rows(&format!("SELECT COUNT(*) FROM `{dst}`.a")).await;
    assert_eq!(n, vec![vec![mysql_async::Value::Bytes(b"0".to_vec())]]);
    assert_eq!(applier.load_state().await.expect("loads"), None);
    env.drop_dbs().await;
}

#[tokio::test]
async fn snapshot_restart_and_large_batches() {
    let Some(mut env) = Env::new("snapshot_restart").await else {
        return;
    };
    let (src, dst) = (env.src.clone(), env.dst.clone());
    env.exec(&format!(
        "CREATE TABLE `{src}`.kv (id INT PRIMARY KEY, v VARCHAR(300))"
    ))
    .await;
    let t = table(&src, "kv", KV, &[0]);
    let at = Position::new("binlog.000001", 500);
    let chunk = |from: i64, n: i64, done: bool| {
        let filler = "x".repeat(250);
        let mut c = txn(0, vec![t.clone()], Vec::new());
        c.position = at.clone();
        c.snapshot = true;
        c.snapshot_done = done;
        c.changes = (from..from + n)
            .map(|k| RowChange {
                table: 0,
                op: Op::Snapshot,
                before: None,
                after: Some(kv(k, &filler)),
            })
            .collect();
        c
    };
    let mut applier = env.applier(true).await;
    applier
        .begin_snapshot(&at, std::slice::from_ref(&t))
        .await
        .expect("begins");
    let state = applier
        .apply(&[chunk(0, 100, false)])
        .await
        .expect("applies");
    assert_eq!(state.snapshot, SnapshotState::Running);
    // Interrupted: a new run restarts from scratch.
    drop(applier);
    let mut applier = env.applier(true).await;
    applier
        .begin_snapshot(&at, std::slice::from_ref(&t))
        .await
        .expect("begins again");
    let count = format!("SELECT COUNT(*) FROM `{dst}`.kv");
    assert_eq!(
        env.rows(&count).await,
        vec![vec![mysql_async::Value::Bytes(b"0".to_vec())]]
    );
    // 40k rows of ~260 bytes: several queries of a few MiB in one transaction.
    let started = Instant::now();
    let batch = vec![chunk(0, 20_000, false), chunk(20_000, 20_000, true)];
    let state = applier.apply(&batch).await.expect("applies");
    let secs = started.elapsed().as_secs_f64();
    println!(
        "snapshot apply: 40000 rows in {secs:.2}s ({:.0} rows/s)",
        40_000.0 / secs
    );
    assert_eq!(state.snapshot, SnapshotState::Done);
    assert_eq!(
        env.rows(&count).await,
        vec![vec![mysql_async::Value::Bytes(b"40000".to_vec())]]
    );
    // Streaming changes after the snapshot position apply; older ones are skipped.
    let mut old = txn(0, vec![t.clone()], vec![del(0, kv(1, ""))]);
    old.position = Position::new("binlog.000001", 400);
    let new = txn(1, vec![t.clone()], vec![del(0, kv(2, ""))]);
    applier.apply(&[old, new]).await.expect("applies");
    assert_eq!(
        env.rows(&count).await,
        vec![vec![mysql_async::Value::Bytes(b"39999".to_vec())]]
    );
    env.drop_dbs().await;
}
