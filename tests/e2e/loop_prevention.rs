//! Loop prevention in a two-server loop (syncs `ab` and `ba`), in both modes:
//! `loop_prevention = "skip_replication"` (MariaDB's session flag) and `"marker"` (a row in
//! `fleetsync.loop_marker` in every applied transaction and a comment on applied DDL: what
//! MySQL 8, which has no `skip_replication`, needs; tested here on MariaDB).
//!
//! A write reaches the other server exactly once and never comes back: after writes on `a`
//! only, sync `ba` has applied no row to `a` (and the reverse); an `ALTER TABLE` on `a` reaches
//! `b` and is not run on `a` a second time; the binlogs stop growing once both sides settle.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use fleetsync_tests::{diff_databases, wait_until, ConfigBuilder, Fleetsync, MariaDb};

use crate::support::STOP_TIMEOUT;

const SETTLE: Duration = Duration::from_secs(60);

async fn rows_applied(server: &MariaDb, sync: &str) -> Result<u64> {
    let sql = format!("SELECT rows_applied FROM fleetsync.sync_state WHERE sync_name = '{sync}'");
    Ok(server
        .query_value(&sql)
        .await?
        .context("no progress row")?
        .parse()?)
}

async fn marker_transactions(server: &MariaDb) -> Result<u64> {
    Ok(server
        .query_value("SELECT COALESCE(SUM(transactions), 0) FROM fleetsync.loop_marker")
        .await?
        .unwrap_or_default()
        .parse()?)
}

/// How many times `needle` was logged as a statement in `server`'s binlogs.
async fn statements_logged(server: &MariaDb, needle: &str) -> Result<usize> {
    let mut n = 0;
    for log in server.query_strings("SHOW BINARY LOGS").await? {
        let name = log[0].clone().unwrap_or_default();
        let events = server
            .query_strings(&format!("SHOW BINLOG EVENTS IN '{name}'"))
            .await?;
        n += events
            .iter()
            .filter(|e| {
                e.last()
                    .cloned()
                    .flatten()
                    .unwrap_or_default()
                    .contains(needle)
            })
            .count();
    }
    Ok(n)
}

/// The tables written (from TABLE_MAP events) and the number of transactions (XIDs) logged
/// by `server` since `from`.
async fn logged_since(server: &MariaDb, from: &(String, u64)) -> Result<(Vec<String>, usize)> {
    let events = server
        .query_strings(&format!(
            "SHOW BINLOG EVENTS IN '{}' FROM {}",
            from.0, from.1
        ))
        .await?;
    let mut tables = Vec::new();
    let mut xids = 0;
    for e in &events {
        let kind = e.get(2).cloned().flatten().unwrap_or_default();
        let info = e.last().cloned().flatten().unwrap_or_default();
        if kind == "Xid" {
            xids += 1;
        }
        if kind == "Table_map" {
            if let Some(t) = info.split('(').nth(1) {
                let t = t.trim_end_matches(')').to_string();
                if !tables.contains(&t) {
                    tables.push(t);
                }
            }
        }
    }
    Ok((tables, xids))
}

async fn wait_equal(a: &MariaDb, b: &MariaDb, what: &str) -> Result<()> {
    wait_until(SETTLE, what, || async {
        match diff_databases(a, b, "app", "app").await? {
            Some(d) => anyhow::bail!("{d}"),
            None => Ok(()),
        }
    })
    .await
}

async fn one_mode(mode: &str) -> Result<()> {
    let (a, b) = tokio::join!(MariaDb::start(1), MariaDb::start(2));
    let (a, b) = (a?, b?);
    let table = "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(20))";
    a.exec(table).await?;
    b.exec(table).await?;
    let dir = tempfile::Builder::new()
        .prefix("fleetsync-loop-")
        .tempdir()?;
    let setting = format!("batch_wait_ms = 5\nloop_prevention = \"{mode}\"\n");
    let text = ConfigBuilder::new(&dir.path().join("state"))
        .server("a", &a.url_root())
        .server("b", &b.url_root())
        .sync("ab", "a", &["b"], &["app\\..*"], &[])
        .raw(&setting)
        .sync("ba", "b", &["a"], &["app\\..*"], &[])
        .raw(&setting)
        .build();
    let config = Fleetsync::write_config(dir.path(), &text)?;
    let mut fs = Fleetsync::run(&config)?;
    let result = async {
        wait_until(SETTLE, "both pipelines to record progress", || async {
            rows_applied(&a, "ba").await?;
            rows_applied(&b, "ab").await?;
            Ok(())
        })
        .await?;

        // Writes on a only: they reach b, and nothing is applied back to a.
        for i in 0..50 {
            a.exec(&format!(
                "INSERT INTO app.t VALUES ({i}, 'a{i}'); UPDATE app.t SET v = 'a{i}x' WHERE id = {i}"
            ))
            .await?;
        }
        a.exec("DELETE FROM app.t WHERE id < 10").await?;
        wait_equal(&a, &b, "a's writes to reach b").await?;
        let back_to_a = rows_applied(&a, "ba").await?;
        ensure!(back_to_a == 0, "{back_to_a} row changes came back to a (an echo)");

        // Writes on b only: they reach a, and nothing goes back to b beyond a's own rows.
        let before = rows_applied(&b, "ab").await?;
        for i in 100..150 {
            b.exec(&format!("INSERT INTO app.t VALUES ({i}, 'b{i}')"))
                .await?;
        }
        wait_equal(&a, &b, "b's writes to reach a").await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let after = rows_applied(&b, "ab").await?;
        ensure!(after == before, "{} row changes came back to b (an echo)", after - before);

        // DDL on a runs on b once and is not applied to a again.
        a.exec("ALTER TABLE app.t ADD COLUMN c INT NULL").await?;
        wait_until(SETTLE, "the new column on b", || async {
            let n = b
                .query_value("SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = 'app' AND table_name = 't' AND column_name = 'c'")
                .await?;
            ensure!(n.as_deref() == Some("1"));
            Ok(())
        })
        .await?;
        b.exec("INSERT INTO app.t VALUES (200, 'b200', 7)").await?;
        wait_equal(&a, &b, "a row with the new column to reach a").await?;
        let alters = statements_logged(&a, "ADD COLUMN c").await?;
        ensure!(alters == 1, "a logged the ALTER {alters} times (an echo)");
        let log = std::fs::read_to_string(fs.log_path())?;
        ensure!(
            log.contains("applying DDL sync=ab") && !log.contains("applying DDL sync=ba"),
            "the ALTER went a -> b -> a (an echo): {}",
            fs.log_tail(20)
        );

        // Settled: nothing of the user's tables is logged any more on either server (what
        // still grows is fleetsync's own progress rows: position heartbeats, at most one per
        // `LOOP_HEARTBEAT_EVERY` per direction).
        let (pa, pb) = (a.binlog_position().await?, b.binlog_position().await?);
        tokio::time::sleep(Duration::from_secs(4)).await;
        for (name, server, from) in [("a", &a, pa), ("b", &b, pb)] {
            let (tables, transactions) = logged_since(server, &from).await?;
            println!("{name}: {transactions} transaction(s) logged while idle, tables {tables:?}");
            ensure!(
                tables.iter().all(|t| t.starts_with("fleetsync.")),
                "{name} still logs user tables while idle (an echo): {tables:?}"
            );
            ensure!(transactions <= 2, "{name}: {transactions} transactions while idle");
        }
        // The mode in force is the one configured.
        let markers = marker_transactions(&a).await? + marker_transactions(&b).await?;
        match mode {
            "marker" => ensure!(markers > 0, "marker mode wrote no loop marker"),
            _ => ensure!(markers == 0, "skip_replication mode wrote {markers} loop markers"),
        }
        println!("loop_prevention = {mode}: no echo; {markers} marker writes");
        anyhow::Ok(())
    }
    .await;
    let result = result.with_context(|| fs.log_tail(30));
    fs.stop(STOP_TIMEOUT).await?;
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loop_prevention_marker() -> Result<()> {
    one_mode("marker").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loop_prevention_skip_replication() -> Result<()> {
    one_mode("skip_replication").await
}
