//! Tombstone GC in a bidirectional group (`tombstone_gc_every`, `tombstone_gc_bound`).
//!
//! * `bidi_gc_purges_and_converges`: the oracle-checked run of `bidi_converges_newest_wins`
//!   (three members, random inserts, updates, deletes and re-inserts, `fleetsync run`
//!   SIGKILLed halfway) with GC rounds every second. After the run: every tombstone is
//!   purged on every member (and was counted as purged), the metrics say so, the floors were
//!   raised; then keys whose tombstones were purged are re-inserted concurrently from every
//!   member, and the members must converge on the write the oracle picks.
//! * `bidi_gc_purges_and_converges_kafka`: the same over Kafka, where GC runs in
//!   `fleetsync coordinator`.
//! * `bidi_gc_waits_for_a_down_member`: with one member's mariadbd SIGKILLed, deletes on
//!   another member leave tombstones that no member purges while it is down (several rounds
//!   pass); once it is back, they are purged everywhere and the members are equal.
//! * `bidi_gc_evicts_past_the_bound`: the same with `tombstone_gc_bound = "4s"`: the down
//!   member is evicted (recorded on the others), the others purge without it, and after its
//!   restart its pipelines are refused with the one-line reason naming it, the bound and the
//!   way back. It is then re-cloned from eu1 (`mariadb-dump --master-data` of `app` and
//!   `fleetsync`, loaded into it) and `fleetsync group readmit` readmits it: writes flow both
//!   ways again and the three members are equal.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use fleetsync_tests::{fleetsync_cmd, wait_until, Fleetsync, MariaDb};
use mysql_async::prelude::Queryable;

use super::*;

/// The group settings of these tests: a round every second.
pub(super) const SETTINGS: &str = "tombstone_gc_every = \"1s\"";

/// Keys of the GC run: more than the other runs' 20, so that a deleted key stays deleted long
/// enough (seconds) for rounds to purge tombstones while the writers go on.
pub(super) const KEYS: i32 = 200;

/// Right after the writers stopped: tombstones were purged while they wrote (`required`: on
/// the embedded bus; over Kafka the coordinator, which runs GC, is restarted at a third of the
/// run and the rounds start over, so purges before the end are not guaranteed).
pub(super) async fn during_run(servers: &[MariaDb], required: bool) -> Result<()> {
    let mut purged = Vec::new();
    for s in servers {
        purged.push(number(s, PURGED).await?);
    }
    println!("gc: purged per member while the writers ran: {purged:?}");
    ensure!(
        !required || purged.iter().all(|p| *p > 0),
        "a member purged nothing during the run: {purged:?}"
    );
    Ok(())
}

const TOMBSTONES: &str = "SELECT COUNT(*) FROM fleetsync.ts_app__items";
const PURGED: &str =
    "SELECT COALESCE(SUM(purged), 0) FROM fleetsync.ts_floor WHERE tombstones = 'ts_app__items'";

async fn number(s: &MariaDb, sql: &str) -> Result<u64> {
    Ok(s.query_value(sql)
        .await?
        .unwrap_or_default()
        .parse()
        .unwrap_or(0))
}

/// The `/metrics` body of a running fleetsync process (its port is in its log).
async fn metrics_body(fs: &Fleetsync) -> Result<String> {
    let log = fs.log_tail(200);
    let port: u16 = log
        .lines()
        .rev()
        .find_map(|l| l.split("metrics=127.0.0.1:").nth(1))
        .and_then(|p| p.split_whitespace().next()?.parse().ok())
        .context("no metrics port in the log yet")?;
    Ok(http_get(port, "/metrics").await?.1)
}

/// One write of `key` on `server` (`val` `None`: a delete) with its rank, read back in the
/// same transaction; `None` when it changed nothing.
async fn write_one(
    pool: &mysql_async::Pool,
    server: &'static str,
    key: i32,
    val: Option<&str>,
) -> Result<Option<Written>> {
    let mut conn = pool.get_conn().await?;
    for _ in 0..20 {
        conn.query_drop("START TRANSACTION").await?;
        let res = match val {
            Some(v) => {
                conn.exec_drop(
                    "INSERT INTO app.items (id, val, updated_at) VALUES (?, ?, NOW(6)) \
                     ON DUPLICATE KEY UPDATE val = VALUES(val), updated_at = VALUES(updated_at)",
                    (key, v),
                )
                .await
            }
            None => {
                conn.exec_drop("DELETE FROM app.items WHERE id = ?", (key,))
                    .await
            }
        };
        match res {
            Err(mysql_async::Error::Server(e)) if e.code == 1213 || e.code == 1205 => {
                conn.query_drop("ROLLBACK").await?;
                continue;
            }
            Err(e) => return Err(e.into()),
            Ok(()) => {}
        }
        if conn.affected_rows() == 0 {
            conn.query_drop("COMMIT").await?;
            return Ok(None);
        }
        let table = if val.is_some() {
            "app.items"
        } else {
            "fleetsync.ts_app__items"
        };
        let row: Option<VersionRow> = conn
            .exec_first(
                format!(
                    "SELECT CAST(fleetsync_rank AS CHAR), fleetsync_version, fleetsync_origin \
                     FROM {table} WHERE id = ?"
                ),
                (key,),
            )
            .await?;
        let w = Written {
            key,
            val: val.map(str::to_string),
            rank: rank_of(row)?,
            server,
        };
        conn.query_drop("COMMIT").await?;
        return Ok(Some(w));
    }
    anyhow::bail!("{server}: write of key {key} deadlocked 20 times")
}

/// Waits until no member holds a tombstone; returns the purged count per member.
async fn all_purged(servers: &[MariaDb], secs: u64) -> Result<Vec<u64>> {
    wait_until(
        Duration::from_secs(secs),
        "every tombstone to be purged",
        || async {
            for (n, s) in NAMES.iter().zip(servers) {
                let left = number(s, TOMBSTONES).await?;
                ensure!(left == 0, "{n} still holds {left} tombstone(s)");
            }
            Ok(())
        },
    )
    .await?;
    let mut out = Vec::new();
    for s in servers {
        out.push(number(s, PURGED).await?);
    }
    Ok(out)
}

/// After the oracle-checked run (`one_seed` with `gc`): see the module docs.
pub(super) async fn after_run(
    servers: &[MariaDb],
    written: &mut Vec<Written>,
    fs: &Procs,
) -> Result<()> {
    let deletes = written.iter().filter(|w| w.val.is_none()).count() as u64;
    let purged = all_purged(servers, 60).await?;
    println!("gc: {deletes} deletes written; purged per member: {purged:?}; 0 tombstones left");
    for (n, p) in NAMES.iter().zip(&purged) {
        ensure!(*p > 0, "{n} purged nothing");
    }
    // The floors were raised (a purge keeps the highest purged rank).
    for (n, s) in NAMES.iter().zip(servers) {
        let v = number(
            s,
            "SELECT fleetsync_version FROM fleetsync.ts_floor WHERE tombstones = 'ts_app__items'",
        )
        .await?;
        ensure!(v > 0, "{n}: floor not raised");
    }
    // The metrics of the process that runs GC (`run`, or the coordinator over Kafka): purged
    // total, tombstones back to 0, round age.
    let gc_proc = fs.procs.last().context("no fleetsync process")?;
    wait_until(Duration::from_secs(15), "the GC metrics", || async {
        let body = metrics_body(gc_proc).await?;
        let line = |prefix: &str| {
            body.lines()
                .find(|l| {
                    l.starts_with(prefix) && l.contains("sync=\"realms\"") && !l.contains("us1")
                })
                .map(str::to_string)
        };
        let purged = line("fleetsync_tombstones_purged_total{")
            .context("no fleetsync_tombstones_purged_total")?;
        let n: f64 = purged.rsplit(' ').next().unwrap_or("0").parse()?;
        ensure!(n > 0.0, "{purged}");
        let gauge = body
            .lines()
            .find(|l| l.starts_with("fleetsync_tombstones{") && l.contains("server=\"eu1\""))
            .context("no fleetsync_tombstones of eu1")?;
        ensure!(gauge.ends_with(" 0"), "{gauge}");
        let age = line("fleetsync_tombstone_gc_last_round_seconds{")
            .context("no fleetsync_tombstone_gc_last_round_seconds")?;
        let age: f64 = age.rsplit(' ').next().unwrap_or("x").parse()?;
        ensure!(age < 10.0, "last round {age}s ago");
        Ok(())
    })
    .await?;

    // Keys whose tombstones were purged (deleted now if too few are absent), re-inserted
    // concurrently from every member.
    let present: Vec<i32> = servers[0]
        .query_strings("SELECT id FROM app.items")
        .await?
        .iter()
        .filter_map(|r| r[0].as_deref()?.parse().ok())
        .collect();
    let mut keys: Vec<i32> = (1..=KEYS).filter(|k| !present.contains(k)).collect();
    if keys.len() < 3 {
        for (i, k) in (1..=3).enumerate() {
            let n = i % servers.len();
            written.extend(write_one(&servers[n].pool(), NAMES[n], k, None).await?);
            keys.push(k);
        }
        converge(servers, 30).await?;
        all_purged(servers, 60).await?;
    }
    keys.sort_unstable();
    keys.dedup();
    keys.truncate(20);
    let mut tasks = Vec::new();
    for (n, s) in NAMES.iter().zip(servers) {
        let pool = s.pool();
        let keys = keys.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for k in keys {
                out.extend(write_one(&pool, n, k, Some(&format!("{n}-again-{k}"))).await?);
            }
            anyhow::Ok(out)
        }));
    }
    let mut again = 0;
    for t in tasks {
        let w = t.await??;
        again += w.len();
        written.extend(w);
    }
    converge(servers, 30).await?;
    oracle_holds(&servers[0], written, "after re-inserting purged keys").await?;
    println!(
        "gc: {again} re-inserts of {} purged key(s) from {} members converged as the oracle says",
        keys.len(),
        servers.len()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bidi_gc_purges_and_converges() -> Result<()> {
    seeds("newest_wins", 3, Bus::Embedded, Fault::Fleetsync, true).await
}

/// The same over Kafka: GC runs in `fleetsync coordinator` (SIGKILLed and restarted at a
/// third of the run, the agent at two thirds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bidi_gc_purges_and_converges_kafka() -> Result<()> {
    seeds("newest_wins", 3, Bus::Kafka, Fault::Fleetsync, true).await
}

/// Loads a dump of `from`'s `app` and `fleetsync` databases into `into`; returns the binlog
/// position of `from` the dump is consistent with (`--master-data`).
async fn reclone(from: &MariaDb, into: &MariaDb) -> Result<String> {
    let dump = tokio::process::Command::new("mariadb-dump")
        .args([
            "--host=127.0.0.1",
            &format!("--port={}", from.port()),
            "--user=root",
            "--single-transaction",
            "--master-data=2",
            "--databases",
            "app",
            "fleetsync",
        ])
        .output()
        .await
        .context("running mariadb-dump")?;
    ensure!(
        dump.status.success(),
        "mariadb-dump: {}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let text = String::from_utf8_lossy(&dump.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("CHANGE MASTER TO MASTER_LOG_FILE="))
        .context("no CHANGE MASTER line in the dump")?;
    let field = |name: &str| -> Option<String> {
        let rest = line.split(name).nth(1)?;
        Some(
            rest.trim_start_matches('=')
                .trim_start_matches('\'')
                .split(['\'', ',', ';'])
                .next()?
                .to_string(),
        )
    };
    let pos = format!(
        "{}:{}",
        field("MASTER_LOG_FILE").context("no file")?,
        field("MASTER_LOG_POS").context("no position")?
    );
    let mut load = tokio::process::Command::new("mariadb")
        .args([
            "--host=127.0.0.1",
            &format!("--port={}", into.port()),
            "--user=root",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("running mariadb")?;
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = load.stdin.take().context("no stdin")?;
        stdin
            .write_all(b"DROP DATABASE IF EXISTS app; DROP DATABASE IF EXISTS fleetsync;\n")
            .await?;
        stdin.write_all(&dump.stdout).await?;
    }
    let out = load.wait_with_output().await?;
    ensure!(
        out.status.success(),
        "loading the dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(pos)
}

/// Three members with GC every second (and `extra` settings), up and pinging; ten rows
/// written on eu1 and seen everywhere.
async fn group_with_rows(
    extra: &str,
) -> Result<(
    Vec<MariaDb>,
    tempfile::TempDir,
    std::path::PathBuf,
    Fleetsync,
)> {
    let servers = start_members(3).await?;
    let dir = tempfile::Builder::new()
        .prefix("fleetsync-bidi-gc-")
        .tempdir()?;
    let config = Fleetsync::write_config(
        dir.path(),
        &group_config_with(
            &dir.path().join("state"),
            &servers,
            "newest_wins",
            None,
            &format!("{SETTINGS}\n{extra}"),
        ),
    )?;
    let fs = Fleetsync::run(&config)?;
    for k in 100..110 {
        servers[0]
            .exec(&format!(
                "INSERT INTO app.items (id, val, updated_at) VALUES ({k}, 'v', NOW(6))"
            ))
            .await?;
    }
    wait_until(
        Duration::from_secs(60),
        "the rows on every member",
        || async {
            for s in &servers {
                ensure!(s.count("app", "items").await? == 10, "rows missing");
            }
            Ok(())
        },
    )
    .await
    .with_context(|| fs.log_tail(40))?;
    Ok((servers, dir, config, fs))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bidi_gc_waits_for_a_down_member() -> Result<()> {
    let (mut servers, _dir, _config, mut fs) = group_with_rows("").await?;
    servers[2].kill9()?;
    servers[0]
        .exec("DELETE FROM app.items WHERE id >= 100")
        .await?;
    wait_until(Duration::from_secs(30), "the deletes on eu2", || async {
        ensure!(servers[1].count("app", "items").await? == 0, "rows left");
        Ok(())
    })
    .await?;
    // Several rounds while us1 is down: nothing may be purged.
    tokio::time::sleep(Duration::from_secs(6)).await;
    for (n, s) in NAMES.iter().zip(&servers).take(2) {
        let left = number(s, TOMBSTONES).await?;
        let purged = number(s, PURGED).await?;
        println!("gc with us1 down: {n} holds {left} tombstones, purged {purged}");
        ensure!(
            left == 10 && purged == 0,
            "{n} purged while us1 was down: {left} left, {purged} purged"
        );
    }
    servers[2].start_again().await?;
    let purged = all_purged(&servers, 60)
        .await
        .with_context(|| fs.log_tail(60))?;
    println!("gc after us1 came back: purged per member {purged:?}");
    converge(&servers, 30).await?;
    ensure!(
        servers[2].count("app", "items").await? == 0,
        "us1 kept deleted rows"
    );
    fs.ensure_running()?;
    fs.stop(STOP_TIMEOUT).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bidi_gc_evicts_past_the_bound() -> Result<()> {
    let (mut servers, _dir, config, mut fs) =
        group_with_rows("tombstone_gc_bound = \"4s\"").await?;
    servers[2].kill9()?;
    servers[0]
        .exec("DELETE FROM app.items WHERE id >= 100")
        .await?;
    // us1 blocks the rounds for longer than the bound: evicted on eu1 and eu2, which then
    // purge without it.
    wait_until(Duration::from_secs(40), "eviction and purge", || async {
        for (n, s) in NAMES.iter().zip(&servers).take(2) {
            let evicted = number(
                s,
                "SELECT COUNT(*) FROM fleetsync.gc_evicted WHERE sync_name = 'realms' AND member = 'us1'",
            )
            .await?;
            ensure!(evicted == 1, "us1 not recorded as evicted on {n}");
            let left = number(s, TOMBSTONES).await?;
            ensure!(left == 0, "{n} still holds {left} tombstones");
        }
        Ok(())
    })
    .await
    .with_context(|| fs.log_tail(60))?;
    let purged = [
        number(&servers[0], PURGED).await?,
        number(&servers[1], PURGED).await?,
    ];
    println!("gc: us1 evicted; eu1, eu2 purged {purged:?}");
    // Back, but refused: its pipelines fail with the one-line reason, and it keeps the rows.
    servers[2].start_again().await?;
    let refused = |log: String| {
        log.lines()
            .find(|l| {
                l.contains("pipeline failed")
                    && l.contains("member us1 of group realms was evicted from tombstone GC")
            })
            .map(str::to_string)
    };
    wait_until(Duration::from_secs(30), "the refusal", || async {
        refused(fs.log_tail(400))
            .map(|_| ())
            .context("no refusal in the log yet")
    })
    .await?;
    let refusal = refused(fs.log_tail(400)).unwrap_or_default();
    println!("gc: refusal: {refusal}");
    for want in [
        "tombstone_gc_bound (4s)",
        "re-clone",
        "fleetsync group readmit",
    ] {
        ensure!(refusal.contains(want), "{want} missing in: {refusal}");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    ensure!(
        servers[2].count("app", "items").await? == 10,
        "a refused pipeline changed us1"
    );
    // Re-clone us1 from eu1 as the docs say (`app` and `fleetsync`, with eu1's binlog
    // position), then readmit it.
    let pos = reclone(&servers[0], &servers[2]).await?;
    println!("gc: us1 re-cloned from eu1 at {pos}");
    let out = fleetsync_cmd(&[
        "group",
        "readmit",
        "--config",
        &config.to_string_lossy(),
        "--sync",
        "realms",
        "--member",
        "us1",
        "--from",
        "eu1",
        "--position",
        &pos,
    ])
    .await?;
    ensure!(
        out.status.success(),
        "readmit failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Readmitted: new writes flow again both ways.
    servers[2]
        .exec("INSERT INTO app.items (id, val, updated_at) VALUES (200, 'us1', NOW(6))")
        .await?;
    servers[0]
        .exec("INSERT INTO app.items (id, val, updated_at) VALUES (201, 'eu1', NOW(6))")
        .await?;
    converge(&servers, 60)
        .await
        .with_context(|| fs.log_tail(60))?;
    ensure!(
        servers[1].count("app", "items").await? == 2,
        "rows after readmit"
    );
    fs.ensure_running()?;
    fs.stop(STOP_TIMEOUT).await?;
    Ok(())
}
