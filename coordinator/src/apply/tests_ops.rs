//! More tests against a real server (see `tests` for the setup): how failures are reported
//! and recovered from, and throughput.

use std::time::Instant;

use fleetsync_config::ApplyProtocol;
use fleetsync_proto::{ColumnType, Value};
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use super::tests::{ins, kv, table, txn, upd, Env, KV};
use super::*;

#[tokio::test]
async fn lost_connection_is_transient_and_retry_applies_once() {
    let Some(mut env) = Env::new("lost_connection").await else {
        return;
    };
    let (src, dst) = (env.src.clone(), env.dst.clone());
    env.exec(&format!(
        "CREATE TABLE `{src}`.kv (id INT PRIMARY KEY, v VARCHAR(20))"
    ))
    .await;
    let t = table(&src, "kv", KV, &[0]);
    let mut applier = env.applier(true).await;
    let first = vec![txn(1, vec![t.clone()], vec![ins(0, kv(1, "a"))])];
    applier.apply(&first).await.expect("applies");
    let id = applier.conn.id();
    env.exec(&format!("KILL CONNECTION {id}")).await;
    let batch = vec![
        txn(1, vec![t.clone()], vec![ins(0, kv(1, "a"))]),
        txn(2, vec![t.clone()], vec![ins(0, kv(2, "b"))]),
    ];
    let err = applier.apply(&batch).await.expect_err("connection is gone");
    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains("tgt1"), "{err}");
    applier.reconnect().await.expect("reconnects");
    let state = applier.apply(&batch).await.expect("retry applies");
    assert_eq!((state.txns, state.rows), (2, 2));
    let n = env.rows(&format!("SELECT COUNT(*) FROM `{dst}`.kv")).await;
    assert_eq!(n, vec![vec![mysql_async::Value::Bytes(b"2".to_vec())]]);
    env.drop_dbs().await;
}

#[tokio::test]
async fn failing_statement_is_identified() {
    let Some(env) = Env::new("failing_statement_is_identified").await else {
        return;
    };
    let mut conn = Conn::new(env.opts.clone()).await.expect("connects");
    for (sql, failed) in [
        ("DO nope", 0),
        ("DO 1; DO nope; DO 3", 1),
        ("DO 1; DO 2; DO 3; DO nope", 3),
    ] {
        let mut q = exec::QueryBuf::default();
        for (i, s) in sql.split("; ").enumerate() {
            q.push(
                exec::Mark::Rows {
                    slot: i as u32,
                    first: 0,
                    last: 0,
                },
                s.as_bytes(),
            );
        }
        let (index, e) = exec::run(&mut conn, &q).await.expect_err("fails");
        assert_eq!(
            (index, super::error::server_code(&e)),
            (failed, Some(1054)),
            "{sql}"
        );
        // The connection is usable afterwards.
        conn.query_drop("DO 1").await.expect("usable");
    }
    let mut ok = exec::QueryBuf::default();
    ok.push(exec::Mark::Control("a"), b"DO 1");
    ok.push(exec::Mark::Control("b"), b"SELECT 1");
    exec::run(&mut conn, &ok).await.expect("runs");
    env.drop_dbs().await;
}

/// A buffer mixing text and prepared statements (binary protocol) runs them in order, splits
/// rows into 128- and 1-row executions, and names the failing statement.
#[tokio::test]
async fn mixed_text_and_prepared_statements() {
    let Some(mut env) = Env::new("mixed_text_and_prepared").await else {
        return;
    };
    let dst = env.dst.clone();
    env.exec(&format!(
        "CREATE DATABASE IF NOT EXISTS `{dst}`; CREATE TABLE `{dst}`.kv (id INT PRIMARY KEY, v VARCHAR(20))"
    ))
    .await;
    let schema = table(&dst, "kv", KV, &[0]);
    let images: Vec<Vec<Value>> = (0..300).map(|i| kv(i, "x")).collect();
    let rows: Vec<batch::RowRef<'_>> = images
        .iter()
        .enumerate()
        .map(|(i, image)| batch::RowRef {
            image,
            before: None,
            txn: i as u32,
        })
        .collect();
    let stmt = batch::Stmt {
        slot: 3,
        kind: batch::StmtKind::Upsert,
        rows,
    };
    let mut conn = Conn::new(env.opts.clone()).await.expect("connects");
    for (table_name, fails) in [("missing", true), ("kv", false)] {
        let slot = exec::SlotSql {
            columns: &schema.columns,
            key: &[0],
            sql: sql::TableSql::new(&dst, table_name, &schema.columns, &[0]),
        };
        let mut q = exec::QueryBuf::new(ApplyProtocol::Binary);
        q.push(exec::Mark::Control("first"), b"DO 1");
        let next = exec::render_part(&mut q, &stmt, 0, &slot).expect("renders");
        assert_eq!(next, 300);
        q.push(exec::Mark::Control("after"), b"SET @after_rows = 1");
        // DO 1, 2 x 128 rows, 44 x 1 row, the SET.
        assert_eq!(q.marks.len(), 4, "{:?}", q.marks);
        assert_eq!(
            q.marks[1],
            exec::Mark::Rows {
                slot: 3,
                first: 0,
                last: 255
            }
        );
        assert_eq!(
            q.marks[2],
            exec::Mark::Rows {
                slot: 3,
                first: 256,
                last: 299
            }
        );
        conn.query_drop("SET @after_rows = 0").await.expect("set");
        let result = exec::run(&mut conn, &q).await;
        let after: Option<i64> = conn.query_first("SELECT @after_rows").await.expect("reads");
        if fails {
            let (index, e) = result.expect_err("no such table");
            assert_eq!((index, super::error::server_code(&e)), (1, Some(1146)));
            assert_eq!(after, Some(0), "a statement after the failing one ran");
        } else {
            result.expect("runs");
            assert_eq!(after, Some(1));
        }
    }
    let n = env.rows(&format!("SELECT COUNT(*) FROM `{dst}`.kv")).await;
    assert_eq!(n, vec![vec![mysql_async::Value::Bytes(b"300".to_vec())]]);
    env.drop_dbs().await;
}

/// Throughput of a streaming workload: 200k row changes in transactions of 10 (inserts, then
/// updates of the same rows), compacted per batch of 500 transactions. Prints rows/s.
#[tokio::test]
async fn streaming_throughput() {
    let Some(mut env) = Env::new("streaming_throughput").await else {
        return;
    };
    let (src, dst) = (env.src.clone(), env.dst.clone());
    env.exec(&format!(
        "CREATE TABLE `{src}`.orders (id BIGINT PRIMARY KEY, customer INT, status VARCHAR(20), \
         amount DECIMAL(10,2), created DATETIME(6))"
    ))
    .await;
    let cols = [
        ("id", ColumnType::BigInt),
        ("customer", ColumnType::Int),
        ("status", ColumnType::VarChar),
        ("amount", ColumnType::Decimal),
        ("created", ColumnType::DateTime),
    ];
    let t = table(&src, "orders", &cols, &[0]);
    let row = |id: i64, status: &str| {
        vec![
            Value::Int(id),
            Value::Int(id % 1000),
            Value::Text(status.as_bytes().to_vec()),
            Value::Decimal(format!("{}.{:02}", id % 10_000, id % 100)),
            Value::DateTime {
                year: 2024,
                month: 5,
                day: 1,
                hour: 12,
                minute: 30,
                second: 15,
                micros: 123_456,
            },
        ]
    };
    let mut txns = Vec::new();
    for n in 0..20_000u64 {
        let base = (n as i64 / 2) * 10;
        let changes = if n % 2 == 0 {
            (base..base + 10).map(|id| ins(0, row(id, "new"))).collect()
        } else {
            (base..base + 10)
                .map(|id| upd(0, row(id, "new"), row(id, "paid")))
                .collect()
        };
        txns.push(txn(n + 1, vec![t.clone()], changes));
    }
    let mut applier = env.applier(true).await;
    let started = Instant::now();
    for batch in txns.chunks(500) {
        applier.apply(batch).await.expect("applies");
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "streaming apply: 200000 row changes in {secs:.2}s ({:.0} rows/s)",
        200_000.0 / secs
    );
    let paid = env
        .rows(&format!(
            "SELECT COUNT(*) FROM `{dst}`.orders WHERE status = 'paid'"
        ))
        .await;
    assert_eq!(
        paid,
        vec![vec![mysql_async::Value::Bytes(b"100000".to_vec())]]
    );
    env.drop_dbs().await;
}

/// A batch committed in several target transactions (rows, then a DDL, then rows) that fails
/// in its last part: the stored bus offset must be the one of the last *committed*
/// transaction, or a Kafka consumer restarting from it would skip the failed part.
#[tokio::test]
async fn each_commit_of_a_batch_stores_its_own_bus_offset() {
    let Some(mut env) = Env::new("own_bus_offset").await else {
        return;
    };
    let (src, dst) = (env.src.clone(), env.dst.clone());
    env.exec(&format!(
        "CREATE TABLE `{src}`.kv (id INT PRIMARY KEY, v VARCHAR(20))"
    ))
    .await;
    // The target refuses row 2, after the batch's first two commits.
    env.exec(&format!(
        "CREATE DATABASE IF NOT EXISTS `{dst}`;
         CREATE TABLE `{dst}`.kv (id INT PRIMARY KEY, v VARCHAR(20));
         CREATE TRIGGER `{dst}`.refuse BEFORE INSERT ON `{dst}`.kv FOR EACH ROW
         IF NEW.id = 2 THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused'; END IF"
    ))
    .await;
    let t = table(&src, "kv", KV, &[0]);
    let mut alter = txn(2, vec![], vec![]);
    alter.ddl = Some(fleetsync_proto::Ddl {
        schema: Some(src.clone()),
        tables: vec![(src.clone(), "kv".into())],
        statement: "ALTER TABLE kv ADD INDEX iv (v)".into(),
    });
    let bad = txn(3, vec![t.clone()], vec![ins(0, kv(2, "b"))]);
    let batch = vec![txn(1, vec![t], vec![ins(0, kv(1, "a"))]), alter, bad];
    let mut applier = env.applier(true).await;
    applier.set_bus_offsets(vec![Some(10), Some(11), Some(12)]);
    applier
        .apply(&batch)
        .await
        .expect_err("the last part fails");
    let sync = env.options(true).sync;
    let stored = env
        .rows(&format!(
            "SELECT bus_offset FROM fleetsync.sync_state WHERE sync_name = '{sync}'"
        ))
        .await;
    assert_eq!(
        stored,
        vec![vec![mysql_async::Value::Bytes(b"11".to_vec())]],
        "stored offset after rows + DDL committed and the last part failed"
    );
    env.drop_dbs().await;
}
