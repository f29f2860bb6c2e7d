//! Bidirectional groups (`mode = "bidirectional"`) converging, checked against an oracle.
//!
//! * `bidi_converges_newest_wins`, `bidi_converges_source_wins`, `bidi_converges_manual`:
//!   three members in one group on the embedded bus; three seeded writers insert, update
//!   (with `updated_at = NOW(6)`, which may go backwards against a concurrent writer's clock),
//!   delete and re-insert 20 shared keys concurrently for `FLEETSYNC_BIDI_SECS` (default 8)
//!   seconds; `fleetsync run` is SIGKILLed and restarted in the middle. Every write is recorded
//!   with its server and its rank (read back in the same transaction: the row's version
//!   columns, or the tombstone a delete left). After the writers stop, all members must be
//!   identical row by row (version columns included), and every key must be what the oracle
//!   says: the recorded write of the highest rank, absent when that write is a delete.
//!   `FLEETSYNC_STRESS_SEEDS=N` runs seeds 1..=N (default 1) on fresh servers.
//! * `bidi_converges_five_members`: the same with five members under `newest_wins`.
//! * `bidi_converges_newest_wins_kafka`: three members under `newest_wins` over a single-node
//!   Apache Kafka started here, with `fleetsync agent` (all members, one process: it installs
//!   the group) and `fleetsync coordinator` as separate processes; the coordinator is
//!   SIGKILLed and restarted at a third of the run, the agent at two thirds. Same writer, same
//!   checks (the run is parametrised by [`Bus`]). The same for `source_wins`, `manual`
//!   (`bidi_converges_source_wins_kafka`, `_manual_kafka`) and five members
//!   (`bidi_converges_five_members_kafka`); one broker per test.
//! * `bidi_converges_broker_killed`: three members under `newest_wins` over Kafka; at a third
//!   of the run the broker is SIGKILLed and started again [`BROKER_DOWN`] later on its data
//!   dir and ports; the agent and the coordinator keep running and must retry, then resume
//!   (the test requires the coordinator's warning). Same checks.
//! * `bidi_converges_member_killed`: three members under `newest_wins` on the embedded bus;
//!   at a third of the run eu2's mariadbd is SIGKILLed (a crash: InnoDB recovery at the
//!   restart) and started again 3 s later, while the other writers go on and `fleetsync run`
//!   keeps running: its pipelines from and to eu2 lose their connection and must retry by
//!   themselves (the test requires the process alive and its "connection lost" warning). eu2's
//!   writer waits for the server and resumes; it also records each write's number in
//!   `journal.w` (outside the group) in the write's transaction, so a write whose COMMIT got no
//!   answer is counted only if the journal says it committed, and eu2's journal must hold
//!   exactly its recorded writes. Same convergence and oracle checks (the run is parametrised
//!   by [`Fault`]). The same under `source_wins` and `manual`
//!   (`bidi_converges_member_killed_source_wins`, `_manual`), and over Kafka
//!   (`bidi_converges_member_killed_kafka`).
//! * Every `bidi_converges_*` test runs seeds 1..=`FLEETSYNC_STRESS_SEEDS` and prints one
//!   `BIDI_RESULT {json}` line per seed (tests/bench/bidi_stress.sh sums them into one line).
//! * `bidi_sequences` (`bidi/sequences.rs`): the known three-member sequences (a delete
//!   overtaking an update through a third member; an update on a missing row becoming an
//!   insert, or losing to a tombstone), deterministic, in a delivery order fixed with
//!   `fleetsync sync once` per member sync.
//! * `bidi_refusals` (`bidi/setup.rs`): what start-up refuses, with one line naming the problem.
//! * `bidi_member_joins` (`bidi/join.rs`): a third member added to an installed two-member
//!   group (refused with rows in its group tables; with them empty it gets every row).
//! * `bidi_table_created_live` (`bidi/newtable.rs`): a table created on one member while
//!   `fleetsync run` runs gets its versions on all three without a restart, and converges.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use fleetsync_tests::{wait_until, ConfigBuilder, Fleetsync, KafkaCluster, MariaDb};
use mysql_async::prelude::Queryable;
use rand::{Rng, SeedableRng};

use crate::support::{http_get, wait_pings_everywhere, Procs, STOP_TIMEOUT};

mod gc;
mod join;
mod newtable;
mod sequences;
mod setup;
mod writer;

use writer::*;

const TABLE_SQL: &str = "CREATE DATABASE IF NOT EXISTS app; CREATE TABLE app.items (\
    id INT NOT NULL PRIMARY KEY, val VARCHAR(64) NOT NULL, \
    updated_at DATETIME(6) NOT NULL) ENGINE=InnoDB; \
    CREATE TABLE app.ping (id INT NOT NULL PRIMARY KEY) ENGINE=InnoDB";

const KEYS: i32 = 20;

const NAMES: [&str; 5] = ["eu1", "eu2", "us1", "us2", "ap1"];

/// The group's config: the contract, with `conflict` set to `strategy`; over
/// `broker` (a `[bus]` of kind kafka) when given, else on the embedded bus.
fn group_config(
    state: &std::path::Path,
    servers: &[MariaDb],
    strategy: &str,
    broker: Option<&KafkaCluster>,
) -> String {
    group_config_with(state, servers, strategy, broker, "")
}

/// [`group_config`] with `extra` lines in the group's `[[syncs]]` entry.
fn group_config_with(
    state: &std::path::Path,
    servers: &[MariaDb],
    strategy: &str,
    broker: Option<&KafkaCluster>,
    extra: &str,
) -> String {
    let urls: Vec<String> = servers.iter().map(MariaDb::url_root).collect();
    group_config_urls_with(state, &urls, strategy, broker, extra)
}

/// [`group_config`] with the members' URLs given (member `i` is `NAMES[i]`).
fn group_config_urls(
    state: &std::path::Path,
    urls: &[String],
    strategy: &str,
    broker: Option<&KafkaCluster>,
) -> String {
    group_config_urls_with(state, urls, strategy, broker, "")
}

/// [`group_config_urls`] with `extra` lines in the group's `[[syncs]]` entry.
fn group_config_urls_with(
    state: &std::path::Path,
    urls: &[String],
    strategy: &str,
    broker: Option<&KafkaCluster>,
    extra: &str,
) -> String {
    let mut cfg = ConfigBuilder::new(state);
    for (n, url) in NAMES.iter().zip(urls) {
        cfg = cfg.server(n, url);
    }
    if let Some(b) = broker {
        cfg = cfg.kafka_bus(&b.bootstrap(), b.node_count());
    }
    let members: Vec<String> = NAMES[..urls.len()]
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect();
    let members = members.join(", ");
    cfg.raw(&format!(
        "\n[[syncs]]\nname = \"realms\"\nmode = \"bidirectional\"\nmembers = [{members}]\n\
         conflict = \"{strategy}\"\nnewest_column = \"updated_at\"\npriority = [{members}]\n\
         include = [\"app\\\\..*\"]\nbatch_wait_ms = 5\n{extra}\n\
         [[syncs.tables]]\nname = \"app.ping\"\nconflict = \"manual\"\n"
    ))
    .build()
}

async fn start_members(n: usize) -> Result<Vec<MariaDb>> {
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        set.spawn(async move { (i, MariaDb::start(11 + i as u32).await) });
    }
    let mut started = Vec::new();
    while let Some(r) = set.join_next().await {
        started.push(r?);
    }
    started.sort_by_key(|(i, _)| *i);
    let servers = started
        .into_iter()
        .map(|(_, s)| s)
        .collect::<Result<Vec<_>>>()?;
    for s in &servers {
        s.exec(TABLE_SQL).await?;
    }
    Ok(servers)
}

/// Which bus a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bus {
    /// `fleetsync run`, in-process bus.
    Embedded,
    /// `fleetsync agent` (all members) and `fleetsync coordinator` as separate processes over
    /// a single-node Apache Kafka started here.
    Kafka,
}

/// What a run SIGKILLs in the middle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// fleetsync's processes, each started again half a second later.
    Fleetsync,
    /// Member `i`'s mariadbd at a third of the run, started again [`MEMBER_DOWN`] later;
    /// fleetsync keeps running and must recover by itself.
    Member(usize),
    /// The Kafka broker (one node) at a third of the run, started again [`BROKER_DOWN`] later
    /// on the same data dir and ports; the agent and the coordinator keep running and must
    /// retry, then resume.
    Broker,
}

/// How long a killed broker stays down.
const BROKER_DOWN: Duration = Duration::from_secs(4);

/// What one seed did, for the stress summary (`BIDI_RESULT` lines, read by
/// tests/bench/bidi_stress.sh): filled in as the run goes, so a failed run reports what it got
/// to.
#[derive(Debug, Default)]
struct Outcome {
    writes: usize,
    deletes: usize,
    conflicts: u64,
    /// The members ended unequal, or equal but not as the oracle says.
    diverged: bool,
}

/// How long a killed member's server stays down.
const MEMBER_DOWN: Duration = Duration::from_secs(3);

/// One variant of the convergence run.
#[derive(Debug, Clone, Copy)]
struct Variant<'a> {
    strategy: &'a str,
    members: usize,
    bus: Bus,
    fault: Fault,
    /// Tombstone GC every second (see `gc`).
    gc: bool,
}

async fn one_seed(seed: u64, secs: u64, v: Variant<'_>, outcome: &mut Outcome) -> Result<()> {
    let Variant {
        strategy,
        members,
        bus,
        fault,
        gc,
    } = v;
    let started = Instant::now();
    let broker = async {
        if bus == Bus::Embedded {
            return Ok(None);
        }
        let k = KafkaCluster::single().await?;
        let topics: Vec<String> = NAMES[..members]
            .iter()
            .map(|n| format!("fleetsync.{n}"))
            .collect();
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        k.create_topics(&topics).await?;
        anyhow::Ok(Some(k))
    };
    let (servers, broker) = tokio::join!(start_members(members), broker);
    let (mut servers, broker) = (servers?, broker?);
    let dir = tempfile::Builder::new()
        .prefix("fleetsync-bidi-")
        .tempdir()?;
    let config = Fleetsync::write_config(
        dir.path(),
        &group_config_with(
            &dir.path().join("state"),
            &servers,
            strategy,
            broker.as_ref(),
            if gc { gc::SETTINGS } else { "" },
        ),
    )?;
    let mut fs = Procs::start(&config, broker)?;
    wait_pings_everywhere(&servers, Duration::from_millis(300), &fs).await?;
    println!(
        "{strategy} seed {seed} ({bus:?}): group up in {:.1?}",
        started.elapsed()
    );

    let t = Instant::now();
    let tasks: Vec<_> = NAMES
        .iter()
        .zip(&servers)
        .enumerate()
        .map(|(i, (n, s))| {
            let survive_kill = fault == Fault::Member(i);
            let keys = if gc { gc::KEYS } else { KEYS };
            tokio::spawn(writer(s.pool(), n, seed, secs, survive_kill, keys))
        })
        .collect();
    // SIGKILL `fleetsync run` mid-run; the restart resumes every pipeline from its target's
    // stored position (and may deliver part of a stream again). Over Kafka: the coordinator
    // at a third of the run (it resumes from its targets' positions and reads part of the
    // topics again), the agent at two thirds (it publishes again from its checkpoint).
    match (fault, bus) {
        // A member's server SIGKILLed (a crash: InnoDB recovery runs at the restart) while
        // the other members' writers go on; its writer resumes once it is back. Every
        // pipeline from or to that member loses its connection and retries.
        (Fault::Member(i), _) => {
            tokio::time::sleep(Duration::from_millis(secs * 333)).await;
            servers[i].kill9()?;
            tokio::time::sleep(MEMBER_DOWN).await;
            servers[i].start_again().await?;
        }
        (Fault::Fleetsync, Bus::Embedded) => {
            tokio::time::sleep(Duration::from_millis(secs * 500)).await;
            fs.kill_restart(0).await?;
        }
        (Fault::Fleetsync, Bus::Kafka) => {
            tokio::time::sleep(Duration::from_millis(secs * 333)).await;
            fs.kill_restart(1).await?;
            tokio::time::sleep(Duration::from_millis(secs * 333)).await;
            fs.kill_restart(0).await?;
        }
        // The broker SIGKILLed under the agent's producers and the coordinator's consumers;
        // started again on its data dir and ports while every writer goes on.
        (Fault::Broker, _) => {
            let broker = fs
                .broker
                .as_mut()
                .context("a broker fault without a broker")?;
            tokio::time::sleep(Duration::from_millis(secs * 333)).await;
            broker.kill9(1)?;
            tokio::time::sleep(BROKER_DOWN).await;
            broker.start_again(1).await?;
        }
    }
    let mut written: Vec<Written> = Vec::new();
    for task in tasks {
        let w = task.await?.with_context(|| {
            let log = fs.log_tail(2000);
            let notable: Vec<&str> = log
                .lines()
                .filter(|l| !l.contains("INFO progress") && !l.contains("Deadlock"))
                .collect();
            format!("a writer failed; fleetsync log:\n{}", notable.join("\n"))
        })?;
        written.extend(w);
    }
    let deletes = written.iter().filter(|w| w.val.is_none()).count();
    (outcome.writes, outcome.deletes) = (written.len(), deletes);
    if gc {
        gc::during_run(&servers, bus == Bus::Embedded).await?;
    }
    if let Fault::Member(i) = fault {
        // The killed member's durable journal (written in each write's transaction) holds
        // exactly the writes recorded for it: none lost with the kill is counted, none that
        // committed is missed.
        let journaled = servers[i]
            .query_value("SELECT COUNT(*) FROM journal.w")
            .await?
            .unwrap_or_default();
        let recorded = written.iter().filter(|w| w.server == NAMES[i]).count();
        ensure!(
            journaled == recorded.to_string(),
            "{}: {journaled} writes in its journal, {recorded} recorded",
            NAMES[i]
        );
    }
    let killed = match fault {
        Fault::Fleetsync => format!("{} fleetsync process(es)", fs.procs.len()),
        Fault::Member(i) => format!("{}'s mariadbd", NAMES[i]),
        Fault::Broker => "the Kafka broker".to_string(),
    };
    println!(
        "{strategy} seed {seed} ({bus:?}): {} writes ({deletes} deletes) in {:.1?}, SIGKILLed {killed}",
        written.len(),
        t.elapsed(),
    );
    fs.ensure_running()?;

    // All members equal, version columns included.
    let t = Instant::now();
    // Over Kafka the backlog drains through the broker's fetch waits: more time, same check.
    let converge_secs = if bus == Bus::Kafka { 90 } else { 60 };
    let converged = converge(&servers, converge_secs).await;
    let conflicts = servers[0]
        .query_value("SELECT COUNT(*) FROM fleetsync.conflict_log")
        .await?
        .unwrap_or_default();
    outcome.conflicts = conflicts.parse().unwrap_or_default();
    outcome.diverged = converged.is_err();
    println!(
        "{strategy} seed {seed} ({bus:?}): converged={} after {:.1?}; conflicts logged on eu1: {conflicts}",
        converged.is_ok(),
        t.elapsed()
    );
    converged.with_context(|| {
        let log = fs.log_tail(400);
        let bad: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .collect();
        format!(
            "{strategy} seed {seed}: diverged; warnings:\n{}",
            bad.join("\n")
        )
    })?;

    if let Fault::Member(i) = fault {
        // fleetsync saw the outage and recovered from it by itself (the same process runs).
        let log = fs.log_tail(20_000);
        let lost: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("WARN") && l.contains(&format!("{}: connection lost", NAMES[i])))
            .collect();
        println!(
            "{strategy} seed {seed} ({bus:?}): fleetsync warned {} time(s) of a lost connection to {}; last: {:?}",
            lost.len(),
            NAMES[i],
            lost.last()
        );
        ensure!(
            !lost.is_empty(),
            "fleetsync never lost its connection to {}",
            NAMES[i]
        );
    }
    if fault == Fault::Broker {
        // The agent and the coordinator saw the broker go (and rode it out: they still run).
        let seen: Vec<String> = fs
            .procs
            .iter()
            .flat_map(|p| {
                let name = p.name().to_string();
                p.log_tail(20_000)
                    .lines()
                    .filter(|l| {
                        (l.contains("WARN") || l.contains("ERROR"))
                            && l.to_ascii_lowercase().contains("kafka")
                    })
                    .map(|l| format!("{name}: {l}"))
                    .collect::<Vec<_>>()
            })
            .collect();
        println!(
            "{strategy} seed {seed} ({bus:?}): {} warning(s) about Kafka while the broker was down; first: {:?}; last: {:?}",
            seen.len(),
            seen.first(),
            seen.last()
        );
        ensure!(
            !seen.is_empty(),
            "neither the agent nor the coordinator noticed the broker's outage"
        );
    }
    let rows = oracle_holds(&servers[0], &written, &format!("{strategy} seed {seed}"))
        .await
        .inspect_err(|_| outcome.diverged = true)?;
    if gc {
        gc::after_run(&servers, &mut written, &fs).await?;
        fs.stop().await?;
        return Ok(());
    }
    fs.stop().await?;
    // `fleetsync_tombstones{sync,server}` counts eu1's tombstones (computed at start), in the
    // process that installs the group (`run`, or the agent).
    let want = servers[0]
        .query_value("SELECT COUNT(*) FROM fleetsync.ts_app__items")
        .await?
        .unwrap_or_default();
    let fs = &mut fs.procs[0];
    fs.restart()?;
    let wanted = |l: &str| {
        l.starts_with("fleetsync_tombstones{")
            && l.contains("server=\"eu1\"")
            && l.contains("sync=\"realms\"")
            && l.ends_with(&format!(" {want}"))
    };
    wait_until(Duration::from_secs(30), "the tombstone gauge", || async {
        let log = fs.log_tail(50);
        let port: u16 = log
            .lines()
            .rev()
            .find_map(|l| l.split("metrics=127.0.0.1:").nth(1))
            .and_then(|p| p.split_whitespace().next()?.parse().ok())
            .context("no metrics port in the log yet")?;
        let (_, body) = http_get(port, "/metrics").await?;
        ensure!(
            body.lines().any(wanted),
            "no fleetsync_tombstones of eu1 = {want} in /metrics: {:?}",
            body.lines()
                .filter(|l| l.contains("tombstones"))
                .collect::<Vec<_>>()
        );
        Ok(())
    })
    .await?;
    fs.stop(STOP_TIMEOUT).await?;
    println!(
        "{strategy} seed {seed} ({bus:?}): {rows} rows identical on {members} members, as the oracle says"
    );
    Ok(())
}

/// Waits until every member holds the same `app.items`, version columns included.
async fn converge(servers: &[MariaDb], secs: u64) -> Result<()> {
    let dump = "SELECT id, val, CAST(updated_at AS CHAR), CAST(fleetsync_rank AS CHAR), \
                fleetsync_version, fleetsync_origin FROM app.items ORDER BY id";
    wait_until(
        Duration::from_secs(secs),
        "the members to converge",
        || async {
            let first = servers[0].query_strings(dump).await?;
            for (n, s) in NAMES.iter().zip(servers).skip(1) {
                let other = s.query_strings(dump).await?;
                if first != other {
                    let only: Vec<_> = first.iter().filter(|r| !other.contains(r)).collect();
                    let theirs: Vec<_> = other.iter().filter(|r| !first.contains(r)).collect();
                    anyhow::bail!("{} and {n} differ: {only:?} vs {theirs:?}", NAMES[0]);
                }
            }
            Ok(())
        },
    )
    .await
}

/// The oracle: per key, the recorded write of the highest rank is what `server` holds (absent
/// for a delete). Returns the number of rows.
async fn oracle_holds(server: &MariaDb, written: &[Written], what: &str) -> Result<usize> {
    let mut best: HashMap<i32, &Written> = HashMap::new();
    for w in written {
        let e = best.entry(w.key).or_insert(w);
        if w.rank > e.rank {
            *e = w;
        }
    }
    let rows = server
        .query_strings("SELECT id, val FROM app.items ORDER BY id")
        .await?;
    let mut actual: HashMap<i32, String> = HashMap::new();
    for r in &rows {
        let id: i32 = r[0].as_deref().unwrap_or("0").parse()?;
        actual.insert(id, r[1].clone().unwrap_or_default());
    }
    let mut wrong = Vec::new();
    for (key, w) in &best {
        let want = w.val.clone();
        let got = actual.get(key).cloned();
        if want != got {
            wrong.push(format!(
                "key {key}: members hold {got:?}, the oracle says {want:?} (written on {} with {:?})",
                w.server, w.rank
            ));
        }
    }
    wrong.sort();
    ensure!(wrong.is_empty(), "{what}: {}", wrong.join("; "));
    Ok(rows.len())
}

/// Runs seeds 1..=`FLEETSYNC_STRESS_SEEDS` (default 1) of one variant, each on fresh servers,
/// and prints one `BIDI_RESULT {json}` line per seed (tests/bench/bidi_stress.sh sums them).
async fn seeds(strategy: &str, members: usize, bus: Bus, fault: Fault, gc: bool) -> Result<()> {
    let n = crate::support::env_num("FLEETSYNC_STRESS_SEEDS", 1);
    let secs = crate::support::env_num("FLEETSYNC_BIDI_SECS", 8);
    let variant = format!(
        "{strategy}/{members}/{bus:?}/{fault:?}{}",
        if gc { "/gc" } else { "" }
    );
    let v = Variant {
        strategy,
        members,
        bus,
        fault,
        gc,
    };
    let mut failed = Vec::new();
    for seed in 1..=n {
        let t = Instant::now();
        let mut o = Outcome::default();
        let res = one_seed(seed, secs, v, &mut o).await;
        println!(
            "BIDI_RESULT {}",
            serde_json::json!({
                "variant": variant, "seed": seed, "ok": res.is_ok(), "writes": o.writes,
                "deletes": o.deletes, "conflicts": o.conflicts, "diverged": o.diverged,
                "secs": (t.elapsed().as_secs_f64() * 10.0).round() / 10.0,
            })
        );
        if let Err(e) = res {
            println!("{strategy} seed {seed} FAILED: {e:#}");
            failed.push(seed);
        }
    }
    ensure!(
        failed.is_empty(),
        "{variant}: seeds {failed:?} of 1..={n} failed"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bidi_converges_newest_wins() -> Result<()> {
    seeds("newest_wins", 3, Bus::Embedded, Fault::Fleetsync, false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bidi_converges_source_wins() -> Result<()> {
    seeds("source-wins", 3, Bus::Embedded, Fault::Fleetsync, false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bidi_converges_manual() -> Result<()> {
    seeds("manual", 3, Bus::Embedded, Fault::Fleetsync, false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bidi_converges_five_members() -> Result<()> {
    seeds("newest_wins", 5, Bus::Embedded, Fault::Fleetsync, false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bidi_converges_newest_wins_kafka() -> Result<()> {
    seeds("newest_wins", 3, Bus::Kafka, Fault::Fleetsync, false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bidi_converges_source_wins_kafka() -> Result<()> {
    seeds("source_wins", 3, Bus::Kafka, Fault::Fleetsync, false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bidi_converges_manual_kafka() -> Result<()> {
    seeds("manual", 3, Bus::Kafka, Fault::Fleetsync, false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bidi_converges_five_members_kafka() -> Result<()> {
    seeds("newest_wins", 5, Bus::Kafka, Fault::Fleetsync, false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bidi_converges_broker_killed() -> Result<()> {
    seeds("newest_wins", 3, Bus::Kafka, Fault::Broker, false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bidi_converges_member_killed() -> Result<()> {
    seeds("newest_wins", 3, Bus::Embedded, Fault::Member(1), false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bidi_converges_member_killed_source_wins() -> Result<()> {
    seeds("source_wins", 3, Bus::Embedded, Fault::Member(1), false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bidi_converges_member_killed_manual() -> Result<()> {
    seeds("manual", 3, Bus::Embedded, Fault::Member(1), false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bidi_converges_member_killed_kafka() -> Result<()> {
    seeds("newest_wins", 3, Bus::Kafka, Fault::Member(1), false).await
}
