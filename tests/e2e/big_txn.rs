//! Large source transactions in parts (docs/memory.md): `fleetsync run` SIGKILLed several
//! times while it applies source transactions of 20,000 row changes each, which the embedded
//! bus carries in parts applied inside one open target transaction; then row-by-row equality.
//!
//! Each transaction multiplies every row of `app.big` by 3 and adds a constant (a replayed
//! or half-applied transaction changes the result) and appends 10,000 identical rows to a
//! keyless table (a replayed part shows as duplicates). If a part were committed before its
//! transaction's end, a kill between two parts would leave it applied and the restart, which
//! resumes at the transaction's start, would apply it again.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use fleetsync_tests::fleetsync::simple_config;
use fleetsync_tests::Fleetsync;
use mysql_async::prelude::Queryable;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::support::{dead_port, http_get, Pair, STOP_TIMEOUT};

const KILLS: usize = 6;
/// Rows of `app.big`, each updated by every big transaction.
const BIG_ROWS: usize = 10_000;
/// Keyless rows each big transaction inserts.
const KEYLESS_ROWS: usize = 10_000;
/// Big transactions in the backlog.
const BACKLOG_TXNS: usize = 16;
const SYNC_TIMEOUT: Duration = Duration::from_secs(240);

/// `app.seq` holds 1..=KEYLESS_ROWS (the keyless inserts select from it).
const SCHEMA: &str = "CREATE DATABASE app;
CREATE TABLE app.big (id INT PRIMARY KEY, k INT NOT NULL, c VARCHAR(100) NOT NULL,
  n BIGINT UNSIGNED NOT NULL) ENGINE=InnoDB;
CREATE TABLE app.keyless (a INT NOT NULL, b VARCHAR(40) NOT NULL) ENGINE=InnoDB;
CREATE TABLE app.seq (i INT PRIMARY KEY) ENGINE=InnoDB;";

/// One source transaction of `BIG_ROWS + KEYLESS_ROWS` row changes.
fn big_txn(k: u32) -> String {
    format!(
        "START TRANSACTION;
         UPDATE app.big SET n = (n * 3 + {k}) % 1000000007, c = CONCAT(LEFT(c, 90), '{k}');
         INSERT INTO app.keyless SELECT {k}, CONCAT('row of transaction ', {k}) FROM app.seq;
         COMMIT"
    )
}

/// Parts published so far, from `/metrics` (0 while the process is starting).
async fn parts_seen(port: u16) -> u64 {
    match http_get(port, "/metrics").await {
        Ok((200, body)) => body
            .lines()
            .filter(|l| l.starts_with("fleetsync_source_transaction_parts_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64,
        _ => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_during_large_transactions_in_parts() -> Result<()> {
    let pair = Pair::start().await?;
    let (src, dst) = (&pair.src, &pair.dst);
    src.exec(SCHEMA).await?;
    let mut conn = src.pool().get_conn().await?;
    for start in (1..=BIG_ROWS.max(KEYLESS_ROWS)).step_by(1_000) {
        let values: Vec<String> = (start..start + 1_000).map(|i| format!("({i})")).collect();
        conn.query_drop(format!("INSERT INTO app.seq VALUES {}", values.join(",")))
            .await?;
    }
    conn.query_drop(format!(
        "INSERT INTO app.big SELECT i, i % 7, CONCAT('initial ', i), i FROM app.seq WHERE i <= {BIG_ROWS}"
    ))
    .await?;

    let port = dead_port()?;
    let text = simple_config(
        &pair.state_dir(),
        &src.url_root(),
        &dst.url_root(),
        &["app\\..*"],
    )
    .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
    let config = Fleetsync::write_config(pair.dir.path(), &text)?;

    // The snapshot, then a stop: what follows is a backlog of big transactions.
    let mut fs = Fleetsync::run(&config)?;
    fs.wait_synced(src, dst, "app", SYNC_TIMEOUT).await?;
    fs.stop(STOP_TIMEOUT).await?;
    for k in 1..=BACKLOG_TXNS as u32 {
        conn.query_drop(big_txn(k))
            .await
            .with_context(|| format!("big transaction {k}"))?;
    }
    println!(
        "backlog: {BACKLOG_TXNS} source transactions of {} row changes",
        BIG_ROWS + KEYLESS_ROWS
    );

    fs.restart()?;
    let mut rng = StdRng::seed_from_u64(23);
    let mut parts = 0;
    let mut next_k = BACKLOG_TXNS as u32;
    for kill in 1..=KILLS {
        let alive = Duration::from_millis(rng.gen_range(800..3_000));
        tokio::time::sleep(alive).await;
        fs.ensure_running()
            .with_context(|| format!("before kill {kill}"))?;
        parts = parts.max(parts_seen(port).await);
        fs.kill9()?;
        println!("kill -9 #{kill} after {alive:?}");
        // One more big transaction while fleetsync is down.
        next_k += 1;
        conn.query_drop(big_txn(next_k)).await?;
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..300))).await;
        fs.restart()?;
    }
    fs.wait_synced(src, dst, "app", SYNC_TIMEOUT).await?;
    parts = parts.max(parts_seen(port).await);
    fs.stop(STOP_TIMEOUT).await?;
    println!("{next_k} big transactions; parts published (one process's count): {parts}");
    ensure!(
        parts > 0,
        "no source transaction was published in parts: the test did not exercise them"
    );
    Ok(())
}
