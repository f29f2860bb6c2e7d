//! Parts of a large source transaction applied in one open target transaction
//! (`Applier::apply_part`), against a real server (skipped without
//! `FLEETSYNC_TEST_MARIADB_URL`).

use fleetsync_proto::{ColumnType, Transaction};

use super::tests::{ins, kv, table, txn, Env, KV};
use super::*;

/// Transaction `n`'s part (or end) at `pos`, inserting `ids` into table 0 of `tables`.
fn at(n: u64, pos: u64, tables: &[TableSchema], ids: &[(u32, i64)]) -> Transaction {
    let changes = ids
        .iter()
        .map(|&(t, id)| ins(t, kv(id, &format!("v{id}"))))
        .collect();
    Transaction {
        position: Position::new("binlog.000001", pos),
        ..txn(n, tables.to_vec(), changes)
    }
}

async fn ids(env: &mut Env, table: &str) -> Vec<i64> {
    let dst = env.dst.clone();
    env.rows(&format!("SELECT id FROM `{dst}`.`{table}` ORDER BY id"))
        .await
        .into_iter()
        .filter_map(|r| match r.first() {
            Some(mysql_async::Value::Int(i)) => Some(*i),
            Some(mysql_async::Value::Bytes(b)) => std::str::from_utf8(b).ok()?.parse().ok(),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn parts_commit_only_with_the_end_of_their_transaction() {
    let Some(mut env) = Env::new("parts_commit_only_with_the_end_of_their_transaction").await
    else {
        return;
    };
    let src = env.src.clone();
    env.exec(&format!(
        "CREATE TABLE `{src}`.a (id INT PRIMARY KEY, v VARCHAR(20)); \
         CREATE TABLE `{src}`.b (id INT PRIMARY KEY, v VARCHAR(20))"
    ))
    .await;
    let a = table(&src, "a", KV, &[0]);
    let b = table(
        &src,
        "b",
        &[("id", ColumnType::Int), ("v", ColumnType::VarChar)],
        &[0],
    );
    let mut applier = env.applier(true).await;
    let state = applier
        .apply(&[at(1, 1001, std::slice::from_ref(&a), &[(0, 1)])])
        .await;
    assert_eq!(
        state.expect("applied").position,
        Position::new("binlog.000001", 1001)
    );

    // Transaction 5 in three pieces; its second part is the first to touch `b`, which is
    // missing on the target: created aside, without committing the open transaction.
    let state = applier
        .apply_part(&[at(5, 1003, std::slice::from_ref(&a), &[(0, 2), (0, 3)])])
        .await
        .expect("first part");
    assert_eq!(
        state.position,
        Position::new("binlog.000001", 1001),
        "nothing stored yet"
    );
    assert_eq!(
        ids(&mut env, "a").await,
        vec![1],
        "a part is not visible before the end"
    );
    applier
        .apply_part(&[at(5, 1006, &[a.clone(), b.clone()], &[(1, 10), (0, 4)])])
        .await
        .expect("second part");
    assert_eq!(ids(&mut env, "a").await, vec![1]);
    assert_eq!(
        ids(&mut env, "b").await,
        Vec::<i64>::new(),
        "b created, still empty"
    );
    let state = applier
        .apply(&[
            at(5, 1010, &[a.clone(), b.clone()], &[(0, 5)]),
            at(6, 1020, std::slice::from_ref(&a), &[(0, 6)]),
        ])
        .await
        .expect("end");
    assert_eq!(state.position, Position::new("binlog.000001", 1020));
    assert_eq!(state.txns, 3, "parts are not counted as transactions");
    assert_eq!(state.rows, 7);
    assert_eq!(ids(&mut env, "a").await, vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(ids(&mut env, "b").await, vec![10]);
    env.drop_dbs().await;
}

#[tokio::test]
async fn a_transaction_cut_short_rolls_its_parts_back() {
    let Some(mut env) = Env::new("a_transaction_cut_short_rolls_its_parts_back").await else {
        return;
    };
    let src = env.src.clone();
    env.exec(&format!(
        "CREATE TABLE `{src}`.a (id INT PRIMARY KEY, v VARCHAR(20))"
    ))
    .await;
    let a = table(&src, "a", KV, &[0]);
    let mut applier = env.applier(true).await;
    applier
        .apply(&[at(1, 1001, std::slice::from_ref(&a), &[(0, 1)])])
        .await
        .expect("applied");
    applier
        .apply_part(&[at(5, 1003, std::slice::from_ref(&a), &[(0, 2)])])
        .await
        .expect("part");
    // Another transaction instead of transaction 5's rest: refused, the part rolled back.
    let refused = applier
        .apply(&[at(6, 1020, std::slice::from_ref(&a), &[(0, 6)])])
        .await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(ids(&mut env, "a").await, vec![1]);
    // The same part sent again (a restarted reader) after one was applied: refused too.
    applier
        .apply_part(&[at(5, 1003, std::slice::from_ref(&a), &[(0, 2)])])
        .await
        .expect("part");
    let again = applier
        .apply_part(&[at(5, 1003, std::slice::from_ref(&a), &[(0, 2)])])
        .await;
    assert!(again.is_err(), "{again:?}");
    // Nothing stays open: the whole transaction applies from its start.
    let state = applier
        .apply(&[
            at(5, 1003, std::slice::from_ref(&a), &[(0, 2)]),
            at(5, 1010, std::slice::from_ref(&a), &[(0, 3)]),
        ])
        .await
        .expect("whole");
    assert_eq!(state.position, Position::new("binlog.000001", 1010));
    assert_eq!(ids(&mut env, "a").await, vec![1, 2, 3]);
    env.drop_dbs().await;
}
