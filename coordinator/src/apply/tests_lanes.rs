//! Parallel lanes against a real server (skipped without `FLEETSYNC_TEST_MARIADB_URL`).

use std::time::{Duration, Instant};

use fleetsync_proto::{ColumnType, Transaction};
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use super::tests::{ins, kv, table, txn, upd, Env, KV};
use super::*;

/// 60 transactions: inserts of ids 1..=60, and an update of id 1 in every third one (one
/// key changed by many transactions in a row across segments).
fn batch(schema: &TableSchema, from: u64) -> Vec<Transaction> {
    (from..from + 60)
        .map(|n| {
            let id = n as i64;
            let mut changes = vec![ins(0, kv(id, &format!("v{n}")))];
            if n % 3 == 0 && n > from {
                changes.push(upd(0, kv(1, "old"), kv(1, &format!("hot{n}"))));
            }
            txn(n, vec![schema.clone()], changes)
        })
        .collect()
}

async fn lane_applier(env: &Env) -> Applier {
    let mut opts = env.options(true);
    opts.apply_lanes = 4;
    Applier::connect(env.opts.clone(), env.opts.clone(), opts)
        .await
        .expect("connects")
}

async fn check(env: &mut Env, last: u64, state: &AppliedState) {
    let dst = env.dst.clone();
    let rows = env
        .rows(&format!("SELECT id, v FROM `{dst}`.t ORDER BY id"))
        .await;
    assert_eq!(rows.len() as u64, last, "one row per inserted id");
    let hot: Vec<Vec<mysql_async::Value>> = env
        .rows(&format!("SELECT v FROM `{dst}`.t WHERE id = 1"))
        .await;
    let last_hot = (1..=last).rev().find(|n| n % 3 == 0 && *n > 1).unwrap_or(0);
    assert_eq!(
        hot,
        vec![vec![mysql_async::Value::Bytes(
            format!("hot{last_hot}").into_bytes()
        )]],
        "the hot row has the last update"
    );
    assert_eq!(state.position, Position::new("binlog.000001", 1000 + last));
    assert_eq!(state.txns, last);
}

#[tokio::test]
async fn lanes_apply_like_serial_and_store_the_last_position() {
    let Some(mut env) = Env::new("lanes_apply_like_serial_and_store_the_last_position").await
    else {
        return;
    };
    let src = env.src.clone();
    env.exec(&format!(
        "CREATE TABLE `{src}`.t (id INT PRIMARY KEY, v VARCHAR(20)) ENGINE=InnoDB"
    ))
    .await;
    let schema = table(&src, "t", KV, &[0]);
    let mut applier = lane_applier(&env).await;
    let b = batch(&schema, 1);
    let state = applier.apply(&b).await.expect("applies");
    check(&mut env, 60, &state).await;
    // Replayed (a restart): nothing changes, nothing fails.
    let again = applier.apply(&b).await.expect("replay skipped");
    assert_eq!(again, state);
    check(&mut env, 60, &again).await;
    drop(applier);
    env.drop_dbs().await;
}

#[tokio::test]
async fn a_lock_wait_between_lanes_falls_back_to_serial_without_loss() {
    let Some(mut env) =
        Env::new("a_lock_wait_between_lanes_falls_back_to_serial_without_loss").await
    else {
        return;
    };
    let src = env.src.clone();
    let dst = env.dst.clone();
    env.exec(&format!(
        "CREATE TABLE `{src}`.t (id INT PRIMARY KEY, v VARCHAR(20)) ENGINE=InnoDB"
    ))
    .await;
    let schema = table(
        &src,
        "t",
        &[("id", ColumnType::Int), ("v", ColumnType::VarChar)],
        &[0],
    );
    let mut applier = lane_applier(&env).await;
    let first = batch(&schema, 1);
    applier.apply(&first).await.expect("first batch");
    // Another client locks the row the first segment of the next batch writes (id 61), for
    // longer than a lane's lock wait timeout: the first segment fails with 1205 while later
    // lanes wait for their turn; the group must be re-run serially, nothing lost or doubled.
    let mut locker = Conn::new(env.opts.clone()).await.expect("locker connects");
    locker
        .query_drop(format!(
            "START TRANSACTION; INSERT INTO `{dst}`.t VALUES (61, 'locker')"
        ))
        .await
        .expect("lock taken");
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(
            u64::from(lanes::LANE_LOCK_WAIT_SECS) + 2,
        ))
        .await;
        locker.query_drop("ROLLBACK").await.expect("lock released");
        locker
    });
    let second: Vec<Transaction> = batch(&schema, 61);
    let started = Instant::now();
    let state = applier
        .apply(&second)
        .await
        .expect("applies after the wait");
    assert!(
        started.elapsed() >= Duration::from_secs(u64::from(lanes::LANE_LOCK_WAIT_SECS)),
        "the first segment waited for the lock: {:?}",
        started.elapsed()
    );
    drop(release.await.expect("release task"));
    check(&mut env, 120, &state).await;
    drop(applier);
    env.drop_dbs().await;
}
