//! Parallel apply lanes (`apply_lanes = 4`): `fleetsync run` (and, over Apache Kafka,
//! `fleetsync coordinator`) SIGKILLed ten times at random moments while it catches up on a
//! backlog of many small transactions, then row-by-row equality.
//!
//! The backlog is built so that a lane design that loses, skips, duplicates or reorders
//! transactions shows: a keyless table (a replayed insert is a visible duplicate), one row
//! updated by runs of transactions with a non-commutative update (`n = n * 3 + k`: any
//! reordering or replay changes the result), unique-key values moved between rows across
//! transactions (applying the later one first fails with a duplicate key), deleted rows
//! whose unique value is reused by a new row, and foreign-key parent/child inserts and
//! deletes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use fleetsync_tests::fleetsync::simple_config;
use fleetsync_tests::Fleetsync;
use mysql_async::prelude::Queryable;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::support::{dead_port, http_get, Pair, STOP_TIMEOUT};

const KILLS: usize = 10;
/// Source transactions written before fleetsync restarts: the catch-up backlog.
const BACKLOG_TXNS: usize = 6_000;
/// Transactions per slice of the writer running during the kills, and the pause between.
const SLICE_TXNS: usize = 150;
const SLICE_PAUSE: Duration = Duration::from_millis(100);
const SYNC_TIMEOUT: Duration = Duration::from_secs(60);

const SCHEMA: &str = "CREATE DATABASE app;
CREATE TABLE app.items (id INT PRIMARY KEY, code INT NULL, v VARCHAR(40) NOT NULL, n INT NOT NULL,
  UNIQUE KEY uk_code (code), KEY k_n (n)) ENGINE=InnoDB;
CREATE TABLE app.hot (id INT PRIMARY KEY, n BIGINT UNSIGNED NOT NULL) ENGINE=InnoDB;
CREATE TABLE app.parent (id INT PRIMARY KEY, name VARCHAR(20) NOT NULL) ENGINE=InnoDB;
CREATE TABLE app.child (id INT PRIMARY KEY, parent_id INT NOT NULL, v INT NOT NULL,
  FOREIGN KEY (parent_id) REFERENCES app.parent (id)) ENGINE=InnoDB;
CREATE TABLE app.keyless (a INT NOT NULL, b VARCHAR(20) NOT NULL) ENGINE=InnoDB;
INSERT INTO app.hot VALUES (1, 1);";

/// Generates source transactions (SQL text) and remembers what the source holds, so that
/// every generated statement succeeds.
struct Gen {
    rng: StdRng,
    /// items: id -> code (None: NULL), for live rows.
    items: Vec<(i64, Option<i64>)>,
    next_item: i64,
    next_code: i64,
    /// Codes freed by a delete, reused by a later insert.
    free_codes: Vec<i64>,
    /// parent id -> live child ids.
    parents: Vec<(i64, Vec<i64>)>,
    next_parent: i64,
    next_child: i64,
    /// Remaining transactions of a run of `hot` updates.
    hot_run: u32,
}

impl Gen {
    fn new(seed: u64) -> Self {
        Gen {
            rng: StdRng::seed_from_u64(seed),
            items: Vec::new(),
            next_item: 1,
            next_code: 1,
            free_codes: Vec::new(),
            parents: Vec::new(),
            next_parent: 1,
            next_child: 1,
            hot_run: 0,
        }
    }

    /// One source transaction.
    fn txn(&mut self) -> String {
        let mut body = String::new();
        if self.hot_run > 0 {
            self.hot_run -= 1;
            let k = self.rng.gen_range(0..1000);
            body.push_str(&format!(
                "UPDATE app.hot SET n = (n * 3 + {k}) % 1000000007 WHERE id = 1;"
            ));
        } else {
            match self.rng.gen_range(0..100) {
                0..=29 => self.insert_items(&mut body),
                30..=44 => self.move_code(&mut body),
                45..=54 => self.delete_item(&mut body),
                55..=59 => self.hot_run = self.rng.gen_range(10..40),
                60..=74 => self.family(&mut body),
                75..=89 => self.keyless(&mut body),
                _ => {
                    // Several tables in one transaction.
                    self.insert_items(&mut body);
                    self.family(&mut body);
                    self.keyless(&mut body);
                }
            }
            if body.is_empty() {
                body.push_str("UPDATE app.hot SET n = (n * 3 + 1) % 1000000007 WHERE id = 1;");
            }
        }
        format!("START TRANSACTION; {body} COMMIT")
    }

    fn insert_items(&mut self, body: &mut String) {
        let n = self.rng.gen_range(1..=5);
        let mut values = Vec::new();
        for _ in 0..n {
            let id = self.next_item;
            self.next_item += 1;
            let code = match self.free_codes.pop() {
                Some(c) => c,
                None => {
                    self.next_code += 1;
                    self.next_code
                }
            };
            let v = self.rng.gen_range(0..1_000_000);
            values.push(format!("({id}, {code}, 'v{v}', {})", v % 97));
            self.items.push((id, Some(code)));
        }
        body.push_str(&format!(
            "INSERT INTO app.items (id, code, v, n) VALUES {};",
            values.join(",")
        ));
    }

    /// Moves a unique code from one row to another (the first gives it up first).
    fn move_code(&mut self, body: &mut String) {
        if self.items.len() < 2 {
            return;
        }
        let a = self.rng.gen_range(0..self.items.len());
        let b = self.rng.gen_range(0..self.items.len());
        let (ida, code) = self.items[a];
        let Some(code) = code else { return };
        if a == b {
            body.push_str(&format!("UPDATE app.items SET n = n + 1 WHERE id = {ida};"));
            return;
        }
        let (idb, old_b) = self.items[b];
        body.push_str(&format!(
            "UPDATE app.items SET code = NULL, n = n + 1 WHERE id = {ida};\
             UPDATE app.items SET code = {code}, v = CONCAT(v, 'm') WHERE id = {idb};"
        ));
        self.items[a].1 = None;
        self.items[b].1 = Some(code);
        if let Some(old) = old_b {
            self.free_codes.push(old);
        }
    }

    fn delete_item(&mut self, body: &mut String) {
        if self.items.is_empty() {
            return;
        }
        let i = self.rng.gen_range(0..self.items.len());
        let (id, code) = self.items.swap_remove(i);
        body.push_str(&format!("DELETE FROM app.items WHERE id = {id};"));
        if let Some(c) = code {
            self.free_codes.push(c);
        }
    }

    /// A new parent with children, children added to an existing parent, or a family removed.
    fn family(&mut self, body: &mut String) {
        match self.rng.gen_range(0..3) {
            0 | 1 if !self.parents.is_empty() && self.rng.gen_bool(0.5) => {
                let i = self.rng.gen_range(0..self.parents.len());
                let pid = self.parents[i].0;
                let cid = self.next_child;
                self.next_child += 1;
                body.push_str(&format!(
                    "INSERT INTO app.child VALUES ({cid}, {pid}, {});",
                    self.rng.gen_range(0..100)
                ));
                self.parents[i].1.push(cid);
            }
            0 | 1 => {
                let pid = self.next_parent;
                self.next_parent += 1;
                body.push_str(&format!("INSERT INTO app.parent VALUES ({pid}, 'p{pid}');"));
                let mut kids = Vec::new();
                for _ in 0..self.rng.gen_range(0..3) {
                    let cid = self.next_child;
                    self.next_child += 1;
                    body.push_str(&format!("INSERT INTO app.child VALUES ({cid}, {pid}, 0);"));
                    kids.push(cid);
                }
                self.parents.push((pid, kids));
            }
            _ => {
                if self.parents.is_empty() {
                    return;
                }
                let i = self.rng.gen_range(0..self.parents.len());
                let (pid, kids) = self.parents.swap_remove(i);
                for c in kids {
                    body.push_str(&format!("DELETE FROM app.child WHERE id = {c};"));
                }
                body.push_str(&format!("DELETE FROM app.parent WHERE id = {pid};"));
            }
        }
    }

    fn keyless(&mut self, body: &mut String) {
        let a = self.rng.gen_range(0..20);
        if self.rng.gen_bool(0.2) {
            body.push_str(&format!("DELETE FROM app.keyless WHERE a = {a} LIMIT 1;"));
        } else {
            // Identical rows on purpose: duplicates must stay exactly as many.
            body.push_str(&format!(
                "INSERT INTO app.keyless VALUES ({a}, 'k{a}'), ({a}, 'k{a}');"
            ));
        }
    }
}

async fn write_txns(conn: &mut mysql_async::Conn, gen: &mut Gen, n: usize) -> Result<()> {
    for _ in 0..n {
        let sql = gen.txn();
        conn.query_drop(&sql)
            .await
            .with_context(|| format!("source transaction {sql}"))?;
    }
    Ok(())
}

/// Writes slices of source transactions until `stop`; returns how many it wrote.
fn keep_writing(
    mut conn: mysql_async::Conn,
    mut gen: Gen,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Result<usize>> {
    tokio::spawn(async move {
        let mut total = 0;
        while !stop.load(Ordering::Relaxed) {
            write_txns(&mut conn, &mut gen, SLICE_TXNS).await?;
            total += SLICE_TXNS;
            tokio::time::sleep(SLICE_PAUSE).await;
        }
        Ok(total)
    })
}

/// Whether `/metrics` shows a second lane at work and a keyless barrier (ignored while the
/// process is starting).
async fn lanes_seen(port: u16) -> (bool, bool) {
    match http_get(port, "/metrics").await {
        Ok((200, body)) => (
            body.lines().any(|l| {
                l.starts_with("fleetsync_apply_lane_busy_ratio") && l.contains("lane=\"2\"")
            }),
            body.lines().any(|l| {
                l.starts_with("fleetsync_apply_barrier_total") && l.contains("reason=\"keyless\"")
            }),
        ),
        _ => (false, false),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_lanes_ten_times_during_catch_up() -> Result<()> {
    let pair = Pair::start().await?;
    let (src, dst) = (&pair.src, &pair.dst);
    src.exec(SCHEMA).await?;
    let port = dead_port()?;
    let text = simple_config(
        &pair.state_dir(),
        &src.url_root(),
        &dst.url_root(),
        &["app\\..*"],
    )
    .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"))
    .replace("[[syncs]]\n", "[[syncs]]\napply_lanes = 4\n");
    ensure!(text.contains("apply_lanes = 4"), "config: {text}");
    let config = Fleetsync::write_config(pair.dir.path(), &text)?;

    // The snapshot of the (almost empty) tables, then a stop: what follows is a backlog.
    let mut fs = Fleetsync::run(&config)?;
    fs.wait_synced(src, dst, "app", SYNC_TIMEOUT).await?;
    fs.stop(STOP_TIMEOUT).await?;

    let mut gen = Gen::new(13);
    let mut conn = src.pool().get_conn().await?;
    write_txns(&mut conn, &mut gen, BACKLOG_TXNS).await?;
    println!("backlog: {BACKLOG_TXNS} source transactions");

    let stop = Arc::new(AtomicBool::new(false));
    let writer = keep_writing(conn, gen, stop.clone());

    fs.restart()?;
    let mut rng = StdRng::seed_from_u64(17);
    let (mut parallel, mut keyless) = (false, false);
    for kill in 1..=KILLS {
        let alive = Duration::from_millis(rng.gen_range(400..2_500));
        tokio::time::sleep(alive).await;
        fs.ensure_running()
            .with_context(|| format!("before kill {kill}"))?;
        let seen = lanes_seen(port).await;
        parallel |= seen.0;
        keyless |= seen.1;
        fs.kill9()?;
        println!("kill -9 #{kill} after {alive:?}");
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..300))).await;
        fs.restart()?;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let written = writer.await.context("writer task panicked")??;
    println!("{written} source transactions during the kills");

    fs.wait_synced(src, dst, "app", SYNC_TIMEOUT).await?;
    let seen = lanes_seen(port).await;
    parallel |= seen.0;
    keyless |= seen.1;
    fs.stop(STOP_TIMEOUT).await?;
    ensure!(
        parallel,
        "no lane other than the first was ever busy: the lanes were not exercised"
    );
    ensure!(keyless, "the keyless table never acted as a barrier");
    Ok(())
}

/// The same backlog over Apache Kafka (one node): `fleetsync agent` keeps publishing while
/// `fleetsync coordinator` with `apply_lanes = 4` is SIGKILLed ten times at random moments,
/// then row-by-row equality. The coordinator's position is the Kafka offset stored in the
/// target with the rows, so a kill between two lanes' commits must neither repeat nor skip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_kafka_coordinator_lanes_ten_times() -> Result<()> {
    use crate::kafka_rig::Rig;
    use fleetsync_tests::KafkaOptions;

    let mut rig = Rig::start_with(KafkaOptions::single(), "apply_lanes = 4\n").await?;
    rig.pair.src.exec(SCHEMA).await?;
    // The coordinator gets its own copy of the config with a known metrics port (the agent
    // keeps an OS-picked one).
    let port = dead_port()?;
    let text = std::fs::read_to_string(&rig.config)?;
    ensure!(text.contains("apply_lanes = 4"), "config: {text}");
    let coordinator_config = rig.config.with_file_name("coordinator.toml");
    std::fs::write(
        &coordinator_config,
        text.replacen("127.0.0.1:0", &format!("127.0.0.1:{port}"), 1),
    )?;

    let mut agent = rig.agent()?;
    let mut coordinator = Fleetsync::spawn("coordinator", &coordinator_config, &[])?;
    rig.wait_synced(&mut agent, &mut coordinator, SYNC_TIMEOUT)
        .await?;
    // A backlog in the topic while no coordinator runs.
    coordinator.stop(STOP_TIMEOUT).await?;
    let mut gen = Gen::new(29);
    let mut conn = rig.pair.src.pool().get_conn().await?;
    write_txns(&mut conn, &mut gen, BACKLOG_TXNS).await?;
    println!("backlog: {BACKLOG_TXNS} source transactions");

    let stop = Arc::new(AtomicBool::new(false));
    let writer = keep_writing(conn, gen, stop.clone());

    coordinator.restart()?;
    let mut rng = StdRng::seed_from_u64(31);
    let (mut parallel, mut keyless) = (false, false);
    for kill in 1..=KILLS {
        let alive = Duration::from_millis(rng.gen_range(700..3_000));
        tokio::time::sleep(alive).await;
        agent
            .ensure_running()
            .with_context(|| format!("agent before kill {kill}"))?;
        coordinator
            .ensure_running()
            .with_context(|| format!("coordinator before kill {kill}"))?;
        let seen = lanes_seen(port).await;
        parallel |= seen.0;
        keyless |= seen.1;
        coordinator.kill9()?;
        println!("coordinator kill -9 #{kill} after {alive:?}");
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..300))).await;
        coordinator.restart()?;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let written = writer.await.context("writer task panicked")??;
    println!("{written} source transactions during the kills");

    rig.wait_synced(&mut agent, &mut coordinator, SYNC_TIMEOUT)
        .await?;
    let seen = lanes_seen(port).await;
    parallel |= seen.0;
    keyless |= seen.1;
    rig.finish(&mut agent, &mut coordinator).await?;
    ensure!(
        parallel,
        "no lane other than the first was ever busy: the lanes were not exercised"
    );
    ensure!(keyless, "the keyless table never acted as a barrier");
    Ok(())
}
