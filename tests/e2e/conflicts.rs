//! Conflict resolution between servers that all write through hand-written one-way syncs.
//!
//! * `conflicts_newest_wins_two_servers`: two servers, a one-way sync each way, newest-wins
//!   on `updated_at DATETIME(6)`; two seeded writers insert and update overlapping keys
//!   concurrently for `FLEETSYNC_CONFLICT_SECS` (default 20) seconds; then both must be
//!   identical row by row, and every surviving row must be the written version with the
//!   greatest (updated_at, server id) of its key. `FLEETSYNC_STRESS_SEEDS=N` repeats with seeds
//!   1..=N on fresh servers (default 1). (Groups of any size with deletes: `bidi`.)
//! * `conflicts_newest_wins_two_servers_kafka`: the same over the Kafka bus (Apache Kafka,
//!   one node started by the test): `fleetsync agent` for both sources and
//!   `fleetsync coordinator` as separate processes (one seed, `FLEETSYNC_CONFLICT_SECS`).
//! * `conflicts_three_server_ring_refused`: one-way syncs that write a table around three
//!   servers (no row versions, no tombstones: a delete can overtake an update through the
//!   third server) are refused by `check` and `run`, naming the table, the servers and the
//!   syncs, and nothing is written on any server.
//! * `conflicts_manual_queue`: a conflicting update on two servers parks both versions,
//!   `conflicts list --json` shows them, `conflicts resolve ID --take a` applies a's version.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use fleetsync_tests::{
    diff_databases, fleetsync_cmd, wait_until, ConfigBuilder, Fleetsync, KafkaCluster, MariaDb,
};
use mysql_async::prelude::Queryable;
use rand::{Rng, SeedableRng};

use crate::support::{wait_pings_everywhere, Procs, STOP_TIMEOUT};

const TABLE_SQL: &str = "CREATE DATABASE IF NOT EXISTS app; CREATE TABLE app.items (\
    id INT NOT NULL PRIMARY KEY, val VARCHAR(64) NOT NULL, \
    updated_at DATETIME(6) NOT NULL) ENGINE=InnoDB; \
    CREATE TABLE app.ping (id INT NOT NULL PRIMARY KEY) ENGINE=InnoDB";

const KEYS: i32 = 40;

/// One version written by a writer: key, val, updated_at as text, server id.
type Written = (i32, String, String, u32);

async fn writer(
    db_pool: mysql_async::Pool,
    sid: u32,
    seed: u64,
    secs: u64,
    deletes: bool,
) -> Result<Vec<Written>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed * 1000 + u64::from(sid));
    let mut conn = db_pool.get_conn().await?;
    let mut out = Vec::new();
    let end = Instant::now() + Duration::from_secs(secs);
    let mut n = 0u64;
    while Instant::now() < end {
        n += 1;
        let id: i32 = rng.gen_range(1..=KEYS);
        let val = format!("s{sid}-{n}");
        let op: u32 = rng.gen_range(0..if deletes { 10 } else { 8 });
        conn.query_drop("START TRANSACTION").await?;
        let res = match op {
            0..=2 => {
                conn.exec_drop(
                    "INSERT INTO app.items (id, val, updated_at) VALUES (?, ?, NOW(6))",
                    (id, &val),
                )
                .await
            }
            3..=7 => {
                // A new version is always newer than the one it replaces (causal timestamps).
                conn.exec_drop(
                    "UPDATE app.items SET val = ?, updated_at = GREATEST(NOW(6), updated_at + INTERVAL 1 MICROSECOND) WHERE id = ?",
                    (&val, id),
                )
                .await
            }
            _ => {
                conn.exec_drop("DELETE FROM app.items WHERE id = ?", (id,))
                    .await
            }
        };
        match res {
            Ok(()) if op <= 7 => {
                let ts: Option<String> = conn
                    .exec_first(
                        "SELECT CAST(updated_at AS CHAR) FROM app.items WHERE id = ? AND val = ?",
                        (id, &val),
                    )
                    .await?;
                if let Some(ts) = ts {
                    out.push((id, val, ts, sid));
                }
            }
            Ok(()) => {}
            // Duplicate key (insert of an existing row): expected.
            Err(mysql_async::Error::Server(e)) if e.code == 1062 => {}
            Err(e) => return Err(e.into()),
        }
        conn.query_drop("COMMIT").await?;
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..8))).await;
    }
    Ok(out)
}

/// Every server of `names` syncs `app` to every other one by a one-way sync, newest-wins on
/// `app.items.updated_at`.
fn mesh(dir: &tempfile::TempDir, names: &[&str], servers: &[MariaDb]) -> ConfigBuilder {
    let mut cfg = ConfigBuilder::new(&dir.path().join("state"));
    for (n, s) in names.iter().zip(servers) {
        cfg = cfg.server(n, &s.url_root());
    }
    for src in names {
        for dst in names.iter().filter(|d| *d != src) {
            cfg = cfg.sync(&format!("{src}{dst}"), src, &[dst], &["app\\..*"], &[]).raw(
                "batch_wait_ms = 5\n[[syncs.tables]]\nname = \"app.items\"\nconflict = \"newest-wins\"\nnewest_column = \"updated_at\"\n",
            );
        }
    }
    cfg
}

/// `kafka`: over a single-node Apache Kafka (agents + coordinator) instead of the embedded
/// bus (`fleetsync run`).
async fn one_seed(seed: u64, secs: u64, kafka: bool) -> Result<()> {
    let started = Instant::now();
    let broker = async {
        if !kafka {
            return Ok(None);
        }
        let k = KafkaCluster::single().await?;
        k.create_topics(&["fleetsync.a", "fleetsync.b"]).await?;
        anyhow::Ok(Some(k))
    };
    let (a, b, broker) = tokio::join!(MariaDb::start(1), MariaDb::start(2), broker);
    let servers = [a?, b?];
    let broker = broker?;
    let dir = tempfile::Builder::new()
        .prefix("fleetsync-conflicts-")
        .tempdir()?;
    for s in &servers {
        s.exec(TABLE_SQL).await?;
    }
    let mut cfg = mesh(&dir, &["a", "b"], &servers);
    if let Some(b) = &broker {
        cfg = cfg.kafka_bus(&b.bootstrap(), b.node_count());
    }
    let config = Fleetsync::write_config(dir.path(), &cfg.build())?;
    let mut fs = Procs::start(&config, broker)?;
    wait_pings_everywhere(&servers, Duration::from_millis(500), &fs).await?;
    println!(
        "seed {seed}: servers and pipelines up in {:.1?}",
        started.elapsed()
    );

    let t = Instant::now();
    let mut tasks = Vec::new();
    for s in &servers {
        tasks.push(tokio::spawn(writer(
            s.pool(),
            s.server_id(),
            seed,
            secs,
            false,
        )));
    }
    let mut written: Vec<Written> = Vec::new();
    for task in tasks {
        written.extend(task.await??);
    }
    println!(
        "seed {seed}: {} versions written in {:.1?}",
        written.len(),
        t.elapsed()
    );
    fs.ensure_running()?;

    let t = Instant::now();
    // Over Kafka the backlog drains through the broker's fetch waits: more time, same check.
    let converge_secs = if fs.broker.is_some() { 180 } else { 60 };
    let converged = wait_until(
        Duration::from_secs(converge_secs),
        "the servers to converge",
        || async {
            for other in &servers[1..] {
                if let Some(d) = diff_databases(&servers[0], other, "app", "app").await? {
                    anyhow::bail!("{d}");
                }
            }
            Ok(())
        },
    )
    .await;
    let conflicts = servers[0]
        .query_value("SELECT COUNT(*) FROM fleetsync.conflict_log")
        .await?
        .unwrap_or_default();
    println!(
        "seed {seed}: converged={} after {:.1?}; conflicts decided on a: {conflicts}",
        converged.is_ok(),
        t.elapsed()
    );
    converged
        .with_context(|| format!("seed {seed}: servers diverged; logs:\n{}", fs.log_tail(25)))?;

    // Every surviving row is the greatest written version of its key.
    let mut best: HashMap<i32, (String, u32, String)> = HashMap::new();
    for (id, val, ts, sid) in &written {
        let e = best.entry(*id).or_insert((ts.clone(), *sid, val.clone()));
        if (ts, sid) > (&e.0, &e.1) {
            *e = (ts.clone(), *sid, val.clone());
        }
    }
    let rows = servers[0]
        .query_strings("SELECT id, val, CAST(updated_at AS CHAR) FROM app.items ORDER BY id")
        .await?;
    let mut wrong = Vec::new();
    for r in &rows {
        let id: i32 = r[0].as_deref().unwrap_or("0").parse()?;
        let val = r[1].clone().unwrap_or_default();
        if let Some((ts, sid, bval)) = best.get(&id) {
            if *bval != val {
                wrong.push(format!(
                    "key {id}: survivor {val} ({:?}), greatest written {bval} ({ts}, server {sid})",
                    r[2]
                ));
            }
        }
    }
    ensure!(wrong.is_empty(), "seed {seed}: {}", wrong.join("; "));
    fs.stop().await?;
    println!("seed {seed}: {} rows identical on both servers", rows.len());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_newest_wins_two_servers() -> Result<()> {
    let seeds = crate::support::env_num("FLEETSYNC_STRESS_SEEDS", 1);
    let secs = crate::support::env_num("FLEETSYNC_CONFLICT_SECS", 20);
    let mut failed = Vec::new();
    for seed in 1..=seeds {
        if let Err(e) = one_seed(seed, secs, false).await {
            println!("seed {seed} FAILED: {e:#}");
            failed.push(seed);
        }
    }
    ensure!(failed.is_empty(), "seeds {failed:?} of 1..={seeds} failed");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_newest_wins_two_servers_kafka() -> Result<()> {
    let secs = crate::support::env_num("FLEETSYNC_CONFLICT_SECS", 20);
    one_seed(1, secs, true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_three_server_ring_refused() -> Result<()> {
    let (a, b, c) = tokio::join!(MariaDb::start(1), MariaDb::start(2), MariaDb::start(3));
    let servers = [a?, b?, c?];
    for s in &servers {
        s.exec(TABLE_SQL).await?;
    }
    let dir = tempfile::Builder::new()
        .prefix("fleetsync-ring-")
        .tempdir()?;
    let names = ["a", "b", "c"];
    let config = Fleetsync::write_config(dir.path(), &mesh(&dir, &names, &servers).build())?;
    let config = config.to_string_lossy();
    for cmd in ["check", "run"] {
        let out = fleetsync_cmd(&[cmd, "--config", &config]).await?;
        let said = String::from_utf8_lossy(&out.stderr);
        ensure!(
            out.status.code() == Some(1),
            "{cmd} exit {:?}: {said}",
            out.status
        );
        for part in [
            "table app.items is written around servers a, b, c by one-way syncs ab, ac, ba, bc, ca, cb",
            "mode = \"bidirectional\", members = [\"a\", \"b\", \"c\"]",
        ] {
            ensure!(said.contains(part), "{cmd} does not say {part:?}: {said}");
        }
        // `app.ping` flows around the ring too: named on its own line.
        ensure!(said.contains("table app.ping is written around"), "{said}");
    }
    for s in &servers {
        let fleetsync_db: Option<String> = s
            .query_value(
                "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'fleetsync'",
            )
            .await?;
        ensure!(
            fleetsync_db.as_deref() == Some("0"),
            "server {} got a fleetsync database from a refused start",
            s.server_id()
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_manual_queue() -> Result<()> {
    let (a, b) = tokio::join!(MariaDb::start(1), MariaDb::start(2));
    let (a, b) = (a?, b?);
    let dir = tempfile::Builder::new()
        .prefix("fleetsync-manual-")
        .tempdir()?;
    for s in [&a, &b] {
        s.exec("CREATE DATABASE app; CREATE TABLE app.inventory (id INT PRIMARY KEY, qty INT NOT NULL)")
            .await?;
    }
    let text = ConfigBuilder::new(&dir.path().join("state"))
        .server("a", &a.url_root())
        .server("b", &b.url_root())
        .sync("ab", "a", &["b"], &["app\\..*"], &[])
        .raw("[[syncs.tables]]\nname = \"app.inventory\"\nconflict = \"manual\"\n")
        .sync("ba", "b", &["a"], &["app\\..*"], &[])
        .raw("conflict = \"manual\"\n")
        .build();
    let config = Fleetsync::write_config(dir.path(), &text)?;
    let cfg = config.to_string_lossy().into_owned();
    let mut fs = Fleetsync::run(&config)?;
    a.exec("INSERT INTO app.inventory VALUES (1, 0)").await?;
    wait_until(Duration::from_secs(90), "row 1 on b", || async {
        ensure!(b.count("app", "inventory").await? == 1);
        Ok(())
    })
    .await
    .with_context(|| fs.log_tail(40))?;
    // Both servers change the row while fleetsync is stopped: a conflict on each side.
    fs.stop(STOP_TIMEOUT).await?;
    a.exec("UPDATE app.inventory SET qty = 10 WHERE id = 1")
        .await?;
    b.exec("UPDATE app.inventory SET qty = 20 WHERE id = 1")
        .await?;
    fs.restart()?;
    let list = || async {
        let out = fleetsync_cmd(&["conflicts", "list", "--config", &cfg, "--json"]).await?;
        ensure!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        Ok(v.as_array().cloned().unwrap_or_default())
    };
    wait_until(Duration::from_secs(60), "two parked conflicts", || async {
        ensure!(list().await?.len() == 2);
        Ok(())
    })
    .await
    .with_context(|| fs.log_tail(40))?;
    let open = list().await?;
    let on_b = open
        .iter()
        .find(|c| c["target"] == "b")
        .context("a conflict on b")?;
    ensure!(
        on_b["incoming"]["qty"] == 10 && on_b["local"]["qty"] == 20,
        "{on_b}"
    );
    ensure!(on_b["origin"] == "a" && on_b["key"]["id"] == 1, "{on_b}");
    // Nothing was applied: each side kept its own row.
    ensure!(
        b.query_value("SELECT qty FROM app.inventory")
            .await?
            .as_deref()
            == Some("20")
    );
    ensure!(
        a.query_value("SELECT qty FROM app.inventory")
            .await?
            .as_deref()
            == Some("10")
    );
    let id = on_b["id"].to_string();
    let out = fleetsync_cmd(&[
        "conflicts",
        "resolve",
        "--config",
        &cfg,
        &id,
        "--take",
        "a",
        "--target",
        "b",
    ])
    .await?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        b.query_value("SELECT qty FROM app.inventory")
            .await?
            .as_deref()
            == Some("10")
    );
    let on_a = open
        .iter()
        .find(|c| c["target"] == "a")
        .context("a conflict on a")?;
    let id = on_a["id"].to_string();
    let out = fleetsync_cmd(&[
        "conflicts",
        "resolve",
        "--config",
        &cfg,
        &id,
        "--take",
        "a",
        "--target",
        "a",
    ])
    .await?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // b's resolution replicates to a, which already holds that version: no new conflict.
    tokio::time::sleep(Duration::from_secs(2)).await;
    ensure!(list().await?.is_empty(), "{:?}", list().await?);
    ensure!(diff_databases(&a, &b, "app", "app").await?.is_none());
    let log = b
        .query_value("SELECT COUNT(*) FROM fleetsync.conflict_log WHERE outcome = 'parked'")
        .await?;
    ensure!(log.as_deref() == Some("1"), "{log:?}");
    fs.stop(STOP_TIMEOUT).await?;
    Ok(())
}
