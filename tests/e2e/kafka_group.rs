//! Coordinator groups (`[coordinator] group`) on a three-broker Apache Kafka cluster: several
//! `fleetsync coordinator` processes on one config share 12 (sync, target) pairs (6 syncs from
//! one source, each to 2 targets).
//!
//! - `kafka_group_kill`: three members under load, a random one SIGKILLed every few seconds and
//!   restarted after; the takeover time of each of its pairs is measured.
//! - `kafka_group_stall`: the owner of a busy pair SIGSTOPped past the session timeout; another
//!   member applies the pair (fencing the stalled one's connections); SIGCONT, and the stalled
//!   member must log that it was fenced.
//! - `kafka_group_rolling_restart`: every member SIGTERMed and restarted in turn under load.
//! - `kafka_group_scale`: 1 → 3 → 1 members under load, the spread checked at 3 (4 pairs each).
//! - `kafka_group_throughput_figures` (ignored, a benchmark: `--ignored`): the same backlog
//!   applied by 1, 2 and 3 members; rows/s and CPU per row per member (docs/scaling.md).
//!
//! After each, every target equals the source row by row: a keyed table, a keyless table (a
//! transaction applied twice shows as a duplicate row) and a table whose one row every
//! transaction updates. `FLEETSYNC_STRESS_SEEDS=N` makes the kill and stall runs N times
//! longer. Takeover figures are printed as one JSON line starting with `takeover:`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use fleetsync_tests::{
    proc_cpu_seconds, status_json, wait_synced_procs, wait_until, ConfigBuilder, Fleetsync,
    KafkaCluster, MariaDb, Workload,
};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rand::{Rng, SeedableRng};
use tempfile::TempDir;
use tokio::task::JoinHandle;

const SYNCS: usize = 6;
const TARGETS: [&str; 2] = ["dst1", "dst2"];
const TOPIC: &str = "fleetsync.src";
/// The broker's lowest allowed session timeout: the fastest takeover.
const SESSION_MS: u64 = 6_000;
/// A pair must be applied again within the session timeout plus this.
const TAKEOVER_SLACK: Duration = Duration::from_secs(30);
const CATCH_UP: Duration = Duration::from_secs(180);
const STOP_TIMEOUT: Duration = Duration::from_secs(40);

fn stress() -> u32 {
    std::env::var("FLEETSYNC_STRESS_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1)
}

fn dbs() -> Vec<String> {
    (0..SYNCS).map(|i| format!("app{i}")).collect()
}

/// The source, two targets, the cluster, the config and the members.
struct Fleet {
    src: MariaDb,
    dsts: Vec<MariaDb>,
    kafka: KafkaCluster,
    dir: TempDir,
    config: PathBuf,
    members: Vec<Fleetsync>,
}

impl Fleet {
    async fn start(seed: u64) -> Result<Fleet> {
        let (src, d1, d2, kafka) = tokio::join!(
            MariaDb::start(1),
            MariaDb::start(2),
            MariaDb::start(3),
            KafkaCluster::three()
        );
        let (src, kafka) = (src?, kafka?);
        let dsts = vec![d1?, d2?];
        kafka.create_topics(&[TOPIC]).await?;
        let dir = tempfile::Builder::new()
            .prefix("fleetsync-e2e-cgroup-")
            .tempdir()?;
        let mut b = ConfigBuilder::new(&dir.path().join("state"))
            .server("src", &src.url_root())
            .server("dst1", &dsts[0].url_root())
            .server("dst2", &dsts[1].url_root());
        for (i, db) in dbs().iter().enumerate() {
            b = b.sync(
                &format!("s{i}"),
                "src",
                &TARGETS,
                &[&format!("{db}\\..*")],
                &[],
            );
        }
        let text = b
            .kafka_bus(&kafka.bootstrap(), kafka.node_count())
            .raw(&format!(
                "\n[coordinator]\ngroup = \"g{seed}\"\nsession_timeout_ms = {SESSION_MS}\n"
            ))
            .build();
        let config = Fleetsync::write_config(dir.path(), &text)?;
        // The tables (with a first load) exist before the agent: they come in its snapshot.
        let mut sql = String::new();
        for db in dbs() {
            sql.push_str(&format!(
                "CREATE DATABASE {db}; {}; {}; CREATE TABLE {db}.hot (id INT NOT NULL PRIMARY KEY, n BIGINT NOT NULL) ENGINE=InnoDB; INSERT INTO {db}.hot VALUES (1, 0);",
                Workload::new(0).create_table_sql(&db, "keyed"),
                Workload::keyless(0).create_table_sql(&db, "keyless"),
            ));
        }
        src.exec(&sql).await?;
        Ok(Fleet {
            src,
            dsts,
            kafka,
            dir,
            config,
            members: Vec::new(),
        })
    }

    fn agent(&self) -> Result<Fleetsync> {
        Fleetsync::spawn("agent", &self.config, &[])
    }

    /// Starts member `i` (its own log).
    fn add_member(&mut self) -> Result<usize> {
        let i = self.members.len();
        let log = self.dir.path().join(format!("coordinator-{i}.log"));
        let args: Vec<OsString> = vec![
            "coordinator".into(),
            "--config".into(),
            self.config.clone().into(),
        ];
        self.members
            .push(Fleetsync::spawn_logged(args, &self.config, &log)?);
        Ok(i)
    }

    fn member_of_pid(&self, pid: u32) -> Option<usize> {
        self.members.iter().position(|m| m.pid() == pid)
    }

    /// Each pair's owner as the targets record it (the rule `fleetsync status` uses: the
    /// recorded member, while its connection holds the pair's lock): member index, or `None`.
    async fn owners(&self) -> Result<BTreeMap<String, Option<usize>>> {
        let mut out = BTreeMap::new();
        for (t, dst) in TARGETS.iter().zip(&self.dsts) {
            let rows = dst
                .query_strings(&format!(
                    "SELECT sync_name, member, connection_id = IS_USED_LOCK(CONCAT('fleetsync.apply.', sync_name, '.{t}')) FROM fleetsync.pair_owner WHERE target = '{t}'"
                ))
                .await
                .unwrap_or_default();
            for i in 0..SYNCS {
                out.insert(format!("s{i}/{t}"), None);
            }
            for r in rows {
                let (Some(Some(sync)), Some(Some(member)), Some(live)) =
                    (r.first(), r.get(1), r.get(2))
                else {
                    continue;
                };
                if live.as_deref() != Some("1") {
                    continue;
                }
                let pid = member
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.parse::<u32>().ok());
                out.insert(
                    format!("{sync}/{t}"),
                    pid.and_then(|p| self.member_of_pid(p)),
                );
            }
        }
        Ok(out)
    }

    /// Transactions applied per pair (the targets' progress rows).
    async fn applied(&self) -> Result<BTreeMap<String, u64>> {
        self.progress("txns_applied").await
    }

    /// A counter of the targets' progress rows per pair: `txns_applied` (every source
    /// transaction the pair went past, those its filter drops included) or `rows_applied`.
    async fn progress(&self, column: &str) -> Result<BTreeMap<String, u64>> {
        let mut out = BTreeMap::new();
        for (t, dst) in TARGETS.iter().zip(&self.dsts) {
            let rows = dst
                .query_strings(&format!(
                    "SELECT sync_name, {column} FROM fleetsync.sync_state"
                ))
                .await
                .unwrap_or_default();
            for r in rows {
                if let (Some(Some(s)), Some(Some(n))) = (r.first(), r.get(1)) {
                    out.insert(format!("{s}/{t}"), n.parse().unwrap_or(0));
                }
            }
        }
        Ok(out)
    }

    /// Waits until every pair is owned by one of `live` members; returns the owners.
    async fn wait_all_owned(
        &mut self,
        live: &[usize],
        timeout: Duration,
    ) -> Result<BTreeMap<String, usize>> {
        let start = Instant::now();
        loop {
            for i in live {
                self.members[*i]
                    .ensure_running()
                    .with_context(|| format!("member {i}"))?;
            }
            let owners = self.owners().await?;
            let owned: BTreeMap<String, usize> = owners
                .iter()
                .filter_map(|(p, o)| o.filter(|m| live.contains(m)).map(|m| (p.clone(), m)))
                .collect();
            if owned.len() == SYNCS * TARGETS.len() {
                return Ok(owned);
            }
            if start.elapsed() > timeout {
                bail!(
                    "not every pair owned by {live:?} after {timeout:?}: {owners:?}\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until every pair is owned by `live` members, 4 each (12 pairs over 3).
    async fn wait_balanced(
        &mut self,
        live: &[usize],
        timeout: Duration,
    ) -> Result<BTreeMap<String, usize>> {
        let start = Instant::now();
        loop {
            let owners = self.wait_all_owned(live, timeout).await?;
            let per: Vec<usize> = live
                .iter()
                .map(|m| owners.values().filter(|o| *o == m).count())
                .collect();
            let (lo, hi) = (per.iter().min(), per.iter().max());
            if lo.zip(hi).is_some_and(|(lo, hi)| hi - lo <= 1) {
                return Ok(owners);
            }
            if start.elapsed() > timeout {
                bail!(
                    "pairs per member {per:?} after {timeout:?}\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn logs(&self) -> String {
        self.members
            .iter()
            .enumerate()
            .map(|(i, m)| {
                format!(
                    "member {i} log {}:\n{}",
                    m.log_path().display(),
                    m.log_tail(15)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Every target equal to the source, row by row, with the agent and `live` members up.
    async fn wait_synced(&mut self, agent: &mut Fleetsync, live: &[usize]) -> Result<()> {
        let dbs = dbs();
        let names: Vec<&str> = dbs.iter().map(String::as_str).collect();
        let start = Instant::now();
        for dst in &self.dsts {
            let mut procs: Vec<&mut Fleetsync> = vec![&mut *agent];
            for (i, m) in self.members.iter_mut().enumerate() {
                if live.contains(&i) {
                    procs.push(m);
                }
            }
            wait_synced_procs(&mut procs, &self.src, dst, &names, CATCH_UP).await?;
        }
        println!(
            "every target equals the source after {:.1?}",
            start.elapsed()
        );
        Ok(())
    }

    /// Times from `t0` (a member killed or stopped) until each of `pairs` is owned by another
    /// member and that member applied its first transaction.
    async fn takeover(&self, victim: usize, pairs: &[String], t0: Instant) -> Result<Vec<f64>> {
        let limit = Duration::from_millis(SESSION_MS) + TAKEOVER_SLACK;
        let mut since_owner: BTreeMap<String, u64> = BTreeMap::new();
        let mut done: BTreeMap<String, f64> = BTreeMap::new();
        while done.len() < pairs.len() {
            if t0.elapsed() > limit {
                bail!(
                    "pairs {:?} of member {victim} not applied by another member {limit:?} after it went away (done: {done:?})\n{}",
                    pairs, self.logs()
                );
            }
            let (owners, applied) = (self.owners().await?, self.applied().await?);
            for p in pairs {
                if done.contains_key(p) {
                    continue;
                }
                let n = applied.get(p).copied().unwrap_or(0);
                match owners.get(p).copied().flatten() {
                    Some(o) if o != victim => match since_owner.get(p) {
                        Some(&before) if n > before => {
                            done.insert(p.clone(), t0.elapsed().as_secs_f64());
                        }
                        Some(_) => {}
                        None => {
                            since_owner.insert(p.clone(), n);
                        }
                    },
                    _ => {}
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(done.into_values().collect())
    }
}

impl Drop for Fleet {
    /// With `FLEETSYNC_TEST_KEEP_LOGS=DIR`: the members' and the agent's logs are copied to a
    /// fresh directory under DIR (the test's temp dir goes away).
    fn drop(&mut self) {
        let Some(keep) = std::env::var_os("FLEETSYNC_TEST_KEEP_LOGS") else {
            return;
        };
        let Ok(dest) = tempfile::Builder::new()
            .prefix("cgroup-")
            .tempdir_in(&keep)
            .map(|d| d.keep())
        else {
            return;
        };
        if let Ok(entries) = std::fs::read_dir(self.dir.path()) {
            for e in entries.flatten() {
                if e.path().extension().is_some_and(|x| x == "log") {
                    let _ = std::fs::copy(e.path(), dest.join(e.file_name()));
                }
            }
        }
        println!("logs kept in {}", dest.display());
    }
}

/// The background load: on each of the six databases, transactions on the keyed and the
/// keyless table, every one also updating the single row of `hot`.
struct Writer {
    stop: Arc<AtomicBool>,
    task: JoinHandle<Result<u64>>,
}

impl Writer {
    fn start(src: &MariaDb, seed: u64) -> Writer {
        let pool = src.pool();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let task = tokio::spawn(async move {
            use mysql_async::prelude::Queryable;
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut works: Vec<(Workload, Workload)> = (0..SYNCS as u64)
                .map(|i| {
                    (
                        Workload::new(seed * 100 + i),
                        Workload::keyless(seed * 100 + 50 + i),
                    )
                })
                .collect();
            let mut total = 0u64;
            while !s.load(Ordering::Relaxed) {
                let mut sql = String::new();
                total += load_round(&mut works, &mut rng, &mut sql);
                let mut conn = pool.get_conn().await?;
                conn.query_drop(sql).await?;
                drop(conn);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            anyhow::Ok(total)
        });
        Writer { stop, task }
    }

    async fn finish(self) -> Result<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.context("writer panicked")?
    }
}

/// Appends to `sql` one transaction per table of each of the six databases (1 to 8 rows, and
/// every one updates that database's `hot` row); returns the row changes.
fn load_round(
    works: &mut [(Workload, Workload)],
    rng: &mut rand::rngs::StdRng,
    sql: &mut String,
) -> u64 {
    let mut total = 0;
    for (i, (keyed, keyless)) in works.iter_mut().enumerate() {
        for (w, table) in [(&mut *keyed, "keyed"), (&mut *keyless, "keyless")] {
            let (txn, n) = w.transaction(&format!("app{i}.{table}"), rng.gen_range(1..=8));
            sql.push_str(&txn.replacen(
                "START TRANSACTION;",
                &format!("START TRANSACTION; UPDATE app{i}.hot SET n = n + 1 WHERE id = 1;"),
                1,
            ));
            total += n + 1;
        }
    }
    total
}

fn signal(m: &Fleetsync, sig: Signal) -> Result<()> {
    kill(Pid::from_raw(m.pid() as i32), sig).with_context(|| format!("{sig} to {}", m.pid()))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(kind: &str, mut samples: Vec<f64>) {
    samples.sort_by(|a, b| a.total_cmp(b));
    println!(
        "takeover: {}",
        serde_json::json!({
            "kind": kind,
            "session_timeout_s": SESSION_MS as f64 / 1000.0,
            "samples": samples.len(),
            "p50_s": percentile(&samples, 50.0),
            "p99_s": percentile(&samples, 99.0),
            "max_s": samples.last(),
        })
    );
}

async fn stop_all(fleet: &mut Fleet, agent: &mut Fleetsync, live: &[usize]) -> Result<()> {
    for (i, m) in fleet.members.iter_mut().enumerate() {
        if live.contains(&i) {
            m.stop(STOP_TIMEOUT)
                .await
                .with_context(|| format!("member {i}"))?;
        }
    }
    agent.stop(STOP_TIMEOUT).await?;
    Ok(())
}

/// (a) Three members, a random one SIGKILLed every few seconds under load and restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_group_kill() -> Result<()> {
    let seed = 11;
    let mut fleet = Fleet::start(seed).await?;
    let mut agent = fleet.agent()?;
    for _ in 0..3 {
        fleet.add_member()?;
    }
    let writer = Writer::start(&fleet.src, seed);
    fleet
        .wait_all_owned(&[0, 1, 2], Duration::from_secs(120))
        .await?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut samples = Vec::new();
    for round in 0..3 * stress() {
        let owners = fleet
            .wait_balanced(&[0, 1, 2], Duration::from_secs(60))
            .await?;
        let victim = rng.gen_range(0..3);
        let pairs: Vec<String> = owners
            .iter()
            .filter(|(_, m)| **m == victim)
            .map(|(p, _)| p.clone())
            .collect();
        fleet.members[victim].kill9()?;
        let t0 = Instant::now();
        println!("round {round}: SIGKILLed member {victim}, owner of {pairs:?}");
        let times = fleet.takeover(victim, &pairs, t0).await?;
        println!("round {round}: taken over in {times:?} s");
        samples.extend(times);
        tokio::time::sleep(Duration::from_secs(rng.gen_range(1..3))).await;
        fleet.members[victim].restart()?;
    }
    fleet
        .wait_all_owned(&[0, 1, 2], Duration::from_secs(60))
        .await?;
    let written = writer.finish().await?;
    println!("{written} row changes during the test");
    fleet.wait_synced(&mut agent, &[0, 1, 2]).await?;
    report("kill", samples);
    stop_all(&mut fleet, &mut agent, &[0, 1, 2]).await
}

/// (b) The owner of a busy pair SIGSTOPped past the session timeout: another member applies
/// the pair; after SIGCONT the stalled member reports that it was fenced, and nothing was
/// applied twice (the keyless tables equal).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_group_stall() -> Result<()> {
    let seed = 12;
    let mut fleet = Fleet::start(seed).await?;
    let mut agent = fleet.agent()?;
    for _ in 0..3 {
        fleet.add_member()?;
    }
    let writer = Writer::start(&fleet.src, seed);
    let mut samples = Vec::new();
    for round in 0..2 * stress() {
        let owners = fleet
            .wait_balanced(&[0, 1, 2], Duration::from_secs(120))
            .await?;
        let victim = (round as usize) % 3;
        let pairs: Vec<String> = owners
            .iter()
            .filter(|(_, m)| **m == victim)
            .map(|(p, _)| p.clone())
            .collect();
        ensure!(
            !pairs.is_empty(),
            "member {victim} owns nothing: {owners:?}"
        );
        let fenced_before = fleet.members[victim]
            .log_tail(100_000)
            .matches("fenced: another coordinator")
            .count();
        signal(&fleet.members[victim], Signal::SIGSTOP)?;
        let t0 = Instant::now();
        println!("round {round}: SIGSTOPped member {victim}, owner of {pairs:?}");
        let times = fleet.takeover(victim, &pairs, t0).await;
        // Whatever happened, the member runs again.
        signal(&fleet.members[victim], Signal::SIGCONT)?;
        let times = times?;
        println!("round {round}: taken over in {times:?} s; SIGCONT");
        samples.extend(times);
        wait_until(
            Duration::from_secs(30),
            "the stalled member to report it was fenced",
            || async {
                let n = fleet.members[victim]
                    .log_tail(100_000)
                    .matches("fenced: another coordinator")
                    .count();
                ensure!(
                    n > fenced_before,
                    "no new fenced line in member {victim}'s log"
                );
                Ok(())
            },
        )
        .await
        .with_context(|| fleet.logs())?;
        fleet.members[victim].ensure_running()?;
    }
    fleet
        .wait_all_owned(&[0, 1, 2], Duration::from_secs(60))
        .await?;
    let written = writer.finish().await?;
    println!("{written} row changes during the test");
    fleet.wait_synced(&mut agent, &[0, 1, 2]).await?;
    report("stall", samples);
    stop_all(&mut fleet, &mut agent, &[0, 1, 2]).await
}

/// (c) Every member SIGTERMed and restarted in turn under load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_group_rolling_restart() -> Result<()> {
    let seed = 13;
    let mut fleet = Fleet::start(seed).await?;
    let mut agent = fleet.agent()?;
    for _ in 0..3 {
        fleet.add_member()?;
    }
    let writer = Writer::start(&fleet.src, seed);
    fleet
        .wait_balanced(&[0, 1, 2], Duration::from_secs(120))
        .await?;
    for i in 0..3 {
        let t = Instant::now();
        fleet.members[i].stop(STOP_TIMEOUT).await?;
        println!("member {i} stopped in {:.1?}", t.elapsed());
        let others: Vec<usize> = (0..3).filter(|j| *j != i).collect();
        fleet
            .wait_all_owned(&others, Duration::from_secs(60))
            .await?;
        println!(
            "member {i}'s pairs taken over {:.1?} after its stop began",
            t.elapsed()
        );
        fleet.members[i].restart()?;
        // Back in the group: it owns something again before the next one goes.
        wait_until(
            Duration::from_secs(60),
            "the restarted member to own pairs",
            || async {
                let owners = fleet.owners().await?;
                ensure!(owners.values().any(|o| *o == Some(i)), "{owners:?}");
                Ok(())
            },
        )
        .await?;
    }
    fleet
        .wait_all_owned(&[0, 1, 2], Duration::from_secs(60))
        .await?;
    let written = writer.finish().await?;
    println!("{written} row changes during the test");
    fleet.wait_synced(&mut agent, &[0, 1, 2]).await?;
    stop_all(&mut fleet, &mut agent, &[0, 1, 2]).await
}

/// (d) One member, then three (each owns a third: 4 pairs), then one again, under load;
/// `fleetsync status --json` names each pair's owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_group_scale() -> Result<()> {
    let seed = 14;
    let mut fleet = Fleet::start(seed).await?;
    let mut agent = fleet.agent()?;
    fleet.add_member()?;
    let writer = Writer::start(&fleet.src, seed);
    fleet.wait_all_owned(&[0], Duration::from_secs(120)).await?;
    fleet.add_member()?;
    fleet.add_member()?;
    let start = Instant::now();
    wait_until(
        Duration::from_secs(90),
        "4 pairs on each of 3 members",
        || async {
            let owners = fleet.owners().await?;
            let mut count = [0usize; 3];
            for o in owners.values().flatten() {
                count[*o] += 1;
            }
            ensure!(count == [4, 4, 4], "pairs per member {count:?}");
            Ok(())
        },
    )
    .await
    .with_context(|| fleet.logs())?;
    println!(
        "spread 4/4/4 {:.1?} after two members joined",
        start.elapsed()
    );
    // The contract's view: `status --json` names the same owners.
    let status = status_json(&fleet.config).await?;
    let mut named = 0;
    for sync in status["syncs"].as_array().context("syncs")? {
        for t in sync["targets"].as_array().context("targets")? {
            let owner = t["owner"]
                .as_str()
                .with_context(|| format!("no owner in {t}"))?;
            ensure!(owner.contains(':'), "owner {owner:?}");
            named += 1;
        }
    }
    ensure!(named == SYNCS * TARGETS.len(), "{named} owners in {status}");
    for i in [1, 2] {
        fleet.members[i].stop(STOP_TIMEOUT).await?;
    }
    fleet.wait_all_owned(&[0], Duration::from_secs(60)).await?;
    let written = writer.finish().await?;
    println!("{written} row changes during the test");
    fleet.wait_synced(&mut agent, &[0]).await?;
    stop_all(&mut fleet, &mut agent, &[0]).await
}

/// The throughput benchmark (`kafka_group_throughput_figures`, ignored).
mod figures;
