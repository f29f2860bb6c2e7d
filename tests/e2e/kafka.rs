//! The Kafka bus: `fleetsync agent` and `fleetsync coordinator` as separate processes, talking
//! only through a broker, against each broker kind (librdkafka's mock cluster and tansu).
//!
//! The source has a keyed InnoDB table, a keyless InnoDB table (a change applied twice shows
//! as a duplicate row there) and a keyed MyISAM table; rows exist before the agent starts
//! (snapshot path) and a workload runs while it streams. Every test ends with the source and
//! the target equal row by row.
//!
//! - `kafka_sync_*`: snapshot + streaming, then a graceful stop and restart of both processes.
//! - `kafka_kill9_agent_and_coordinator_*`: five SIGKILLs of each process, interleaved at random
//!   points, under load: nothing lost, nothing applied twice.
//! - `kafka_target_down_backlog`: the target crashes, the backlog waits in Kafka, the target
//!   comes back and the coordinator catches up.
//! - `kafka_cut_off_from_broker_mock`: the broker refuses every connection for a while (the
//!   mock keeps its data), then comes back.
//! - `kafka_broker_restart_tansu`: the broker is SIGKILLed and restarted on its SQLite storage.
//! - `kafka_harness_self_test`: the broker and server restart helpers themselves.
//!
//! The tansu variants print `SKIPPED <test>: …` and pass when tansu is not installed (or
//! `FLEETSYNC_SKIP_TANSU=1`); `scripts/test.sh` installs it. With
//! `FLEETSYNC_TEST_KEEP_LOGS=DIR`, a failing test leaves its logs, a dump of the topic and the
//! differing rows under DIR.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use fleetsync_tests::{
    wait_synced_procs, wait_until, BrokerKind, ConfigBuilder, Fleetsync, KafkaBroker, MariaDb,
    Workload,
};
use mysql_async::Pool;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tokio::task::JoinHandle;

use crate::support::{Pair, STOP_TIMEOUT};

/// The source server's topic (`<topic_prefix>.<server>`, default prefix).
const TOPIC: &str = "fleetsync.src";
const DB: &str = "app";
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(120);
/// Row changes per table and slice of the background workload, and the pause between slices
/// (spaced so a debug build keeps up on 2 cores).
const SLICE: u64 = 150;
const SLICE_PAUSE: Duration = Duration::from_millis(100);
/// The same for tansu (see [`Writer::start`]).
const TANSU_SLICE: u64 = 30;
const TANSU_SLICE_PAUSE: Duration = Duration::from_millis(200);

/// The three source tables and their workloads.
struct AppWorkload {
    keyed: Workload,
    keyless: Workload,
    myisam: Workload,
}

impl AppWorkload {
    fn new(seed: u64) -> Self {
        AppWorkload {
            keyed: Workload::new(seed),
            keyless: Workload::keyless(seed + 1),
            myisam: Workload::new(seed + 2),
        }
    }

    async fn create(&self, src: &MariaDb) -> Result<()> {
        let myisam = self
            .myisam
            .create_table_sql(DB, "myisam")
            .replace("ENGINE=InnoDB", "ENGINE=MyISAM");
        ensure!(myisam.contains("ENGINE=MyISAM"), "{myisam}");
        src.exec(&format!(
            "CREATE DATABASE {DB}; {}; {}; {};",
            self.keyed.create_table_sql(DB, "keyed"),
            self.keyless.create_table_sql(DB, "keyless"),
            myisam
        ))
        .await
    }

    /// About `changes` row changes on each table; returns the total.
    async fn run(&mut self, pool: &Pool, changes: u64) -> Result<u64> {
        Ok(self.keyed.run(pool, DB, "keyed", changes).await?
            + self.keyless.run(pool, DB, "keyless", changes).await?
            + self.myisam.run(pool, DB, "myisam", changes / 3).await?)
    }
}

/// A workload running in the background until `stop` is set; yields the row changes made.
struct Writer {
    stop: Arc<AtomicBool>,
    task: JoinHandle<Result<u64>>,
}

impl Writer {
    /// The background load for a broker: tansu's SQLite engine takes in far fewer messages a
    /// second than the mock (and answers nothing else while it is behind), so it gets a
    /// lighter load.
    fn start(kind: BrokerKind, pool: Pool, work: AppWorkload) -> Writer {
        match kind {
            BrokerKind::Mock => Self::start_with(pool, work, SLICE, SLICE_PAUSE),
            BrokerKind::Tansu => Self::start_with(pool, work, TANSU_SLICE, TANSU_SLICE_PAUSE),
        }
    }

    /// `slice` row changes per table, then `pause`, until stopped.
    fn start_with(pool: Pool, mut work: AppWorkload, slice: u64, pause: Duration) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let task = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut total = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    total += work.run(&pool, slice).await?;
                    tokio::time::sleep(pause).await;
                }
                anyhow::Ok(total)
            })
        };
        Writer { stop, task }
    }

    async fn finish(self) -> Result<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.context("workload task panicked")?
    }
}

/// A source/target pair, a broker with the source's topic, and the Kafka config.
///
/// With `FLEETSYNC_TEST_KEEP_LOGS=DIR`, a test that fails keeps its agent, coordinator and
/// broker logs and a dump of the topic in a fresh directory under DIR (plus every differing
/// row when a sync wait fails); a test that ends with [`Rig::finish`] keeps nothing.
struct Rig {
    pair: Pair,
    broker: KafkaBroker,
    config: PathBuf,
    /// The test got through [`Rig::finish`].
    done: bool,
    /// Logs were kept already.
    kept: bool,
}

impl Rig {
    /// `None` (after printing `SKIPPED <test>: …`) when the broker kind is not available here.
    async fn start(test: &str, kind: BrokerKind) -> Result<Option<Rig>> {
        Self::start_with(test, kind, "").await
    }

    /// `sync_extra`: raw TOML lines for the `[[syncs]]` entry.
    ///
    /// tansu runs on its SQLite storage: the memory engine of tansu 0.6 answers a fetch from
    /// an offset inside a record batch with the next batch, so a consumer resuming at a stored
    /// offset would skip the rest of that batch (messages lost); the SQLite engine keeps
    /// single records and also survives a broker restart.
    async fn start_with(test: &str, kind: BrokerKind, sync_extra: &str) -> Result<Option<Rig>> {
        if let Some(why) = kind.unavailable() {
            println!("SKIPPED {test}: {why}");
            return Ok(None);
        }
        let broker = async {
            match kind {
                BrokerKind::Mock => KafkaBroker::start_mock(&[TOPIC]).await,
                BrokerKind::Tansu => KafkaBroker::start_tansu_persistent(&[TOPIC]).await,
            }
        };
        let (pair, broker) = tokio::join!(Pair::start(), broker);
        let pair = pair?;
        let broker = match broker {
            Ok(b) => b,
            Err(e) if kind == BrokerKind::Tansu && format!("{e:#}").contains("libsql") => {
                println!(
                    "SKIPPED {test}: tansu was built without SQLite storage \
                     (cargo install ... --features dynostore,libsql): {e:#}"
                );
                return Ok(None);
            }
            Err(e) => return Err(e.context(format!("{} broker", kind.name()))),
        };
        let text = ConfigBuilder::new(&pair.state_dir())
            .server("src", &pair.src.url_root())
            .server("dst", &pair.dst.url_root())
            .sync("s1", "src", &["dst"], &["app\\..*"], &[])
            .raw(sync_extra)
            .kafka_bus(broker.bootstrap())
            .build();
        let config = Fleetsync::write_config(pair.dir.path(), &text)?;
        println!(
            "{} broker at {}, config {}",
            kind.name(),
            broker.bootstrap(),
            config.display()
        );
        Ok(Some(Rig {
            pair,
            broker,
            config,
            done: false,
            kept: false,
        }))
    }

    fn agent(&self) -> Result<Fleetsync> {
        Fleetsync::spawn("agent", &self.config, &[])
    }

    fn coordinator(&self) -> Result<Fleetsync> {
        Fleetsync::spawn("coordinator", &self.config, &[])
    }

    async fn wait_synced(
        &mut self,
        agent: &mut Fleetsync,
        coordinator: &mut Fleetsync,
        timeout: Duration,
    ) -> Result<()> {
        let start = Instant::now();
        let result = wait_synced_procs(
            &mut [agent, coordinator],
            &self.pair.src,
            &self.pair.dst,
            &[DB],
            timeout,
        )
        .await;
        if result.is_err() {
            println!(
                "{} broker log tail:\n{}",
                self.broker.kind().name(),
                self.broker.log_tail(20)
            );
            self.keep_logs().await;
        }
        result?;
        println!("synced after {:.1?}", start.elapsed());
        Ok(())
    }

    /// Keeps the logs, the topic and the row diff (see the type's doc).
    async fn keep_logs(&mut self) {
        let Some(dest) = self.copy_logs() else { return };
        if let Err(e) = self.write_diff(&dest.join("diff.txt")).await {
            println!("cannot write the row diff: {e:#}");
        }
    }

    /// Copies the process and broker logs and dumps the topic into a fresh directory under
    /// `$FLEETSYNC_TEST_KEEP_LOGS` (the test's temp dirs go away when it fails).
    fn copy_logs(&mut self) -> Option<PathBuf> {
        let keep = std::env::var_os("FLEETSYNC_TEST_KEEP_LOGS")?;
        if std::mem::replace(&mut self.kept, true) {
            return None;
        }
        let dest = tempfile::Builder::new()
            .prefix(&format!("kafka-{}-", self.broker.kind().name()))
            .tempdir_in(&keep)
            .map(|d| d.keep());
        let Ok(dest) = dest else {
            println!(
                "cannot create a log directory in {}",
                PathBuf::from(keep).display()
            );
            return None;
        };
        let logs = [
            self.config.with_file_name("agent.log"),
            self.config.with_file_name("coordinator.log"),
            self.broker.log_path().to_path_buf(),
        ];
        for log in &logs {
            if let Some(name) = log.file_name() {
                let _ = std::fs::copy(log, dest.join(name));
            }
        }
        match dump_topic(self.broker.bootstrap(), &dest.join("topic.txt")) {
            Ok(n) => println!("{n} messages of {TOPIC} dumped"),
            Err(e) => println!("cannot dump {TOPIC}: {e:#}"),
        }
        println!("logs kept in {}", dest.display());
        Some(dest)
    }

    /// The end of a test that passed: both processes must exit cleanly on SIGTERM.
    async fn finish(&mut self, agent: &mut Fleetsync, coordinator: &mut Fleetsync) -> Result<()> {
        stop_both(agent, coordinator).await?;
        self.done = true;
        Ok(())
    }

    /// Every differing row of every table (`source count`, `target count`, then the row).
    async fn write_diff(&self, path: &Path) -> Result<()> {
        use std::collections::BTreeMap;
        let mut out = String::new();
        for table in ["keyed", "keyless", "myisam"] {
            let sql = format!(
                "SELECT id, k, s, d, t, HEX(b), COUNT(*) FROM {DB}.{table} \
                 GROUP BY id, k, s, d, t, b ORDER BY id"
            );
            let mut rows: BTreeMap<Vec<Option<String>>, (String, String)> = BTreeMap::new();
            for (side, db) in [(0, &self.pair.src), (1, &self.pair.dst)] {
                for mut r in db.query_strings(&sql).await? {
                    let n = r.pop().flatten().unwrap_or_default();
                    let e = rows.entry(r).or_insert(("0".into(), "0".into()));
                    if side == 0 {
                        e.0 = n;
                    } else {
                        e.1 = n;
                    }
                }
            }
            for (row, (a, b)) in rows {
                if a != b {
                    out.push_str(&format!("{table} src={a} dst={b} {row:?}\n"));
                }
            }
        }
        std::fs::write(path, out)?;
        Ok(())
    }

    /// The Kafka offset the coordinator stored in the target with the rows.
    async fn stored_offset(&self) -> Result<i64> {
        let v = self
            .pair
            .dst
            .query_value("SELECT bus_offset FROM fleetsync.sync_state WHERE sync_name = 's1'")
            .await?
            .context("no bus_offset stored in the target's fleetsync.sync_state")?;
        v.parse()
            .with_context(|| format!("bus_offset {v:?} is not a number"))
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if !self.done {
            self.copy_logs();
        }
    }
}

/// Writes one line per message of [`TOPIC`]: offset, `B`/`E` for the transaction begin/end
/// headers, the transaction's position, id and GTID, then each row change as `op table id`
/// (the first column of the row image). For failure analysis.
fn dump_topic(bootstrap: &str, path: &Path) -> Result<usize> {
    use std::io::Write;

    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers, Message};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "fleetsync-test-dump")
        .set("enable.auto.commit", "false")
        .create()?;
    let (_, high) = consumer.fetch_watermarks(TOPIC, 0, Duration::from_secs(10))?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(TOPIC, 0, Offset::Beginning)?;
    consumer.assign(&tpl)?;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let (mut next, mut count) = (0i64, 0usize);
    let mut tables: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while next < high && Instant::now() < deadline {
        let Some(msg) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let msg = msg?;
        let (mut begin, mut end) = ("-", "-");
        if let Some(h) = msg.headers() {
            for header in h.iter() {
                match header.key {
                    "fs-begin" => begin = "B",
                    "fs-end" => end = "E",
                    _ => {}
                }
            }
        }
        let line = describe_message(msg.payload().unwrap_or_default(), &mut tables);
        writeln!(out, "{} {begin}{end} {line}", msg.offset())?;
        next = msg.offset() + 1;
        count += 1;
    }
    out.flush()?;
    drop(out);
    Ok(count)
}

/// One bus message as text; `tables` holds the table names of the transaction's first message
/// (later messages refer to them by index).
fn describe_message(payload: &[u8], tables: &mut Vec<String>) -> String {
    let t = match fleetsync_proto::codec::decode_transaction(payload) {
        Ok(t) => t,
        Err(e) => return format!("undecodable: {e}"),
    };
    if !t.tables.is_empty() {
        *tables = t.tables.iter().map(|s| s.table.clone()).collect();
    }
    let changes: Vec<String> = t
        .changes
        .iter()
        .map(|c| {
            let image = c.after.as_ref().or(c.before.as_ref());
            let cell = |i: usize| {
                image
                    .and_then(|v| v.get(i))
                    .map_or(String::new(), |v| format!("{v:?}"))
            };
            let table = tables.get(c.table as usize).map_or("?", |s| s.as_str());
            format!("{:?} {table} id={} k={}", c.op, cell(0), cell(1))
        })
        .collect();
    format!(
        "pos={} txn={} snap={} ddl={} [{}]",
        t.position,
        t.txn_id,
        t.snapshot,
        t.ddl.is_some(),
        changes.join(", ")
    )
}

/// Both processes must exit cleanly on SIGTERM.
async fn stop_both(agent: &mut Fleetsync, coordinator: &mut Fleetsync) -> Result<()> {
    coordinator.stop(STOP_TIMEOUT).await?;
    agent.stop(STOP_TIMEOUT).await?;
    Ok(())
}

/// Snapshot + streaming through the broker; then both processes stop gracefully and resume.
async fn kafka_sync(kind: BrokerKind) -> Result<()> {
    const TEST: &str = "kafka_sync";
    let Some(mut rig) = Rig::start(&format!("{TEST}_{}", kind.name()), kind).await? else {
        return Ok(());
    };
    let pool = rig.pair.src.pool();
    let mut work = AppWorkload::new(21);
    work.create(&rig.pair.src).await?;
    let before = work.run(&pool, 1_000).await?;
    println!("{before} row changes before the agent starts");

    let mut agent = rig.agent()?;
    let mut coordinator = rig.coordinator()?;
    let mut during = 0;
    for _ in 0..5 {
        during += work.run(&pool, 200).await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("{during} row changes while streaming");
    rig.wait_synced(&mut agent, &mut coordinator, CATCH_UP_TIMEOUT)
        .await?;
    let offset = rig.stored_offset().await?;
    ensure!(offset > 0, "stored Kafka offset {offset}");
    stop_both(&mut agent, &mut coordinator).await?;

    // Writes while both are down, then a graceful resume from the checkpoint and the offset.
    let after = work.run(&pool, 500).await?;
    agent.restart()?;
    coordinator.restart()?;
    println!("{after} row changes while stopped; restarted");
    rig.wait_synced(&mut agent, &mut coordinator, CATCH_UP_TIMEOUT)
        .await?;
    let resumed = rig.stored_offset().await?;
    ensure!(
        resumed > offset,
        "the stored offset did not move on: {offset} -> {resumed}"
    );
    rig.finish(&mut agent, &mut coordinator).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_sync_mock() -> Result<()> {
    kafka_sync(BrokerKind::Mock).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_sync_tansu() -> Result<()> {
    kafka_sync(BrokerKind::Tansu).await
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Victim {
    Agent,
    Coordinator,
}

/// Five SIGKILLs of each process, in random order at random points, under load.
async fn kafka_kill9(kind: BrokerKind) -> Result<()> {
    const TEST: &str = "kafka_kill9_agent_and_coordinator";
    const KILLS_EACH: usize = 5;
    let test = format!("{TEST}_{}", kind.name());
    // Small snapshot chunks stretch the snapshot, so the first kill can land in it.
    let Some(mut rig) = Rig::start_with(&test, kind, "snapshot_chunk_rows = 50\n").await? else {
        return Ok(());
    };
    let pool = rig.pair.src.pool();
    let mut work = AppWorkload::new(31);
    work.create(&rig.pair.src).await?;
    work.run(&pool, 2_000).await?;
    let writer = Writer::start(rig.broker.kind(), pool.clone(), work);

    let mut agent = rig.agent()?;
    let mut coordinator = rig.coordinator()?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut victims = vec![Victim::Agent; KILLS_EACH];
    victims.extend([Victim::Coordinator; KILLS_EACH]);
    victims.shuffle(&mut rng);
    // The first kill hits the agent early, in its initial snapshot or just after.
    if let Some(i) = victims.iter().position(|v| *v == Victim::Agent) {
        victims.swap(0, i);
    }
    for (n, victim) in victims.iter().enumerate() {
        let alive = if n == 0 {
            Duration::from_millis(rng.gen_range(150..600))
        } else {
            Duration::from_millis(rng.gen_range(300..3_000))
        };
        tokio::time::sleep(alive).await;
        agent
            .ensure_running()
            .with_context(|| format!("before kill {}", n + 1))?;
        coordinator
            .ensure_running()
            .with_context(|| format!("before kill {}", n + 1))?;
        let p = match victim {
            Victim::Agent => &mut agent,
            Victim::Coordinator => &mut coordinator,
        };
        p.kill9()?;
        println!("kill -9 #{} of {} after {alive:?}", n + 1, p.name());
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..500))).await;
        p.restart()?;
    }
    // Some more streaming after the last restart, then quiet.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let written = writer.finish().await?;
    let agent_log = std::fs::read_to_string(agent.log_path()).unwrap_or_default();
    println!(
        "{written} row changes during the kills; the agent started {} snapshots",
        agent_log.matches("initial snapshot started").count()
    );
    rig.wait_synced(&mut agent, &mut coordinator, CATCH_UP_TIMEOUT)
        .await?;
    rig.finish(&mut agent, &mut coordinator).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_kill9_agent_and_coordinator_mock() -> Result<()> {
    kafka_kill9(BrokerKind::Mock).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_kill9_agent_and_coordinator_tansu() -> Result<()> {
    kafka_kill9(BrokerKind::Tansu).await
}

/// The target crashes; changes pile up in Kafka while it is down (the agent keeps publishing,
/// the coordinator keeps retrying); the target comes back and the coordinator catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_target_down_backlog() -> Result<()> {
    const TEST: &str = "kafka_target_down_backlog";
    const DOWN_FOR: Duration = Duration::from_secs(8);
    let Some(mut rig) = Rig::start(TEST, BrokerKind::Mock).await? else {
        return Ok(());
    };
    let pool = rig.pair.src.pool();
    let mut work = AppWorkload::new(41);
    work.create(&rig.pair.src).await?;
    work.run(&pool, 500).await?;
    let mut agent = rig.agent()?;
    let mut coordinator = rig.coordinator()?;
    rig.wait_synced(&mut agent, &mut coordinator, CATCH_UP_TIMEOUT)
        .await?;
    let offset_before = rig.stored_offset().await?;

    rig.pair.dst.kill9()?;
    println!("target killed");
    let writer = Writer::start(rig.broker.kind(), pool.clone(), work);
    let down_since = Instant::now();
    while down_since.elapsed() < DOWN_FOR {
        tokio::time::sleep(Duration::from_millis(500)).await;
        agent.ensure_running().context("agent, target down")?;
        coordinator
            .ensure_running()
            .context("coordinator, target down")?;
    }
    let written = writer.finish().await?;
    println!("{written} row changes while the target was down");

    rig.pair.dst.start_again().await?;
    println!("target back");
    rig.wait_synced(&mut agent, &mut coordinator, CATCH_UP_TIMEOUT)
        .await?;
    let offset_after = rig.stored_offset().await?;
    ensure!(
        offset_after > offset_before,
        "the stored offset did not move on: {offset_before} -> {offset_after}"
    );
    rig.finish(&mut agent, &mut coordinator).await
}

/// The broker refuses every connection for a while under load (agent and coordinator both cut
/// off; the mock keeps its data), then comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_cut_off_from_broker_mock() -> Result<()> {
    const TEST: &str = "kafka_cut_off_from_broker_mock";
    const DOWN_FOR: Duration = Duration::from_secs(10);
    let Some(mut rig) = Rig::start(TEST, BrokerKind::Mock).await? else {
        return Ok(());
    };
    let pool = rig.pair.src.pool();
    let mut work = AppWorkload::new(51);
    work.create(&rig.pair.src).await?;
    work.run(&pool, 1_000).await?;
    let writer = Writer::start(rig.broker.kind(), pool.clone(), work);
    let mut agent = rig.agent()?;
    let mut coordinator = rig.coordinator()?;
    tokio::time::sleep(Duration::from_secs(3)).await;

    rig.broker.down().await?;
    println!("broker down");
    let down_since = Instant::now();
    let mut offset_mid_outage = None;
    while down_since.elapsed() < DOWN_FOR {
        tokio::time::sleep(Duration::from_millis(500)).await;
        agent.ensure_running().context("agent, broker down")?;
        coordinator
            .ensure_running()
            .context("coordinator, broker down")?;
        if offset_mid_outage.is_none() && down_since.elapsed() >= DOWN_FOR / 2 {
            offset_mid_outage = Some(rig.stored_offset().await?);
        }
    }
    // Nothing reaches the target in the second half of the outage: the cut is real.
    let offset_end_outage = rig.stored_offset().await?;
    ensure!(
        offset_mid_outage == Some(offset_end_outage),
        "the target kept receiving changes with the broker down: stored offset \
         {offset_mid_outage:?} -> {offset_end_outage}"
    );
    rig.broker.up().await?;
    println!("broker up");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let written = writer.finish().await?;
    println!("{written} row changes during the test");
    rig.wait_synced(&mut agent, &mut coordinator, CATCH_UP_TIMEOUT)
        .await?;
    rig.finish(&mut agent, &mut coordinator).await
}

/// The broker is SIGKILLed under load and restarted on its storage (tansu with SQLite): agent
/// and coordinator reconnect and nothing is lost or applied twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_broker_restart_tansu() -> Result<()> {
    const TEST: &str = "kafka_broker_restart_tansu";
    const DOWN_FOR: Duration = Duration::from_secs(5);
    let Some(mut rig) = Rig::start(TEST, BrokerKind::Tansu).await? else {
        return Ok(());
    };
    let pool = rig.pair.src.pool();
    let mut work = AppWorkload::new(61);
    work.create(&rig.pair.src).await?;
    work.run(&pool, 1_000).await?;
    let writer = Writer::start(BrokerKind::Tansu, pool.clone(), work);
    let mut agent = rig.agent()?;
    let mut coordinator = rig.coordinator()?;
    tokio::time::sleep(Duration::from_secs(3)).await;

    for round in 1..=2 {
        let high_before = rig.broker.high_watermark(TOPIC).await?;
        rig.broker.kill9()?;
        println!("broker killed (round {round}) at offset {high_before}");
        let down_since = Instant::now();
        while down_since.elapsed() < DOWN_FOR {
            tokio::time::sleep(Duration::from_millis(500)).await;
            agent.ensure_running().context("agent, broker down")?;
            coordinator
                .ensure_running()
                .context("coordinator, broker down")?;
        }
        rig.broker.start_again().await?;
        let high_after = rig.broker.high_watermark(TOPIC).await?;
        println!("broker restarted (round {round}) at offset {high_after}");
        ensure!(
            high_after >= high_before,
            "the broker lost messages in the restart: offset {high_before} -> {high_after}"
        );
        // The agent reconnects by itself and publishes what piled up.
        let back = Instant::now();
        wait_until(CATCH_UP_TIMEOUT, "the agent to publish again", || async {
            let high = rig.broker.high_watermark(TOPIC).await?;
            ensure!(high > high_after, "still at offset {high}");
            Ok(())
        })
        .await?;
        println!("agent publishing again after {:.1?}", back.elapsed());
    }
    let written = writer.finish().await?;
    println!("{written} row changes during the test");
    rig.wait_synced(&mut agent, &mut coordinator, CATCH_UP_TIMEOUT)
        .await?;
    rig.finish(&mut agent, &mut coordinator).await
}

/// The support library's broker and restart helpers: the mock answers `down`/`up`, tansu (when
/// installed) takes topics, and a MariaDB killed and started again keeps its data and port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_harness_self_test() -> Result<()> {
    let mut mock = KafkaBroker::start_mock(&[TOPIC]).await?;
    ensure!(
        mock.bootstrap().starts_with("127.0.0.1:"),
        "{}",
        mock.bootstrap()
    );
    ensure!(
        mock.high_watermark(TOPIC).await? == 0,
        "fresh topic not empty"
    );
    mock.down().await?;
    mock.up().await?;
    ensure!(
        mock.high_watermark(TOPIC).await? == 0,
        "topic gone after down/up"
    );
    ensure!(
        mock.start_again().await.is_err(),
        "a mock must refuse start_again (it would come back empty)"
    );

    match BrokerKind::Tansu.unavailable() {
        Some(why) => println!("tansu part skipped: {why}"),
        None => {
            let tansu = KafkaBroker::start_tansu(&[TOPIC, "fleetsync.other"]).await?;
            ensure!(tansu.high_watermark("fleetsync.other").await? == 0);
            ensure!(tansu.kind() == BrokerKind::Tansu);
        }
    }

    let mut db = MariaDb::start(7).await?;
    let port = db.port();
    db.exec(
        "CREATE DATABASE h; CREATE TABLE h.t (id INT PRIMARY KEY); INSERT INTO h.t VALUES (1),(2)",
    )
    .await?;
    db.kill9()?;
    ensure!(!db.is_running(), "still running after kill9");
    db.start_again().await?;
    ensure!(db.port() == port);
    ensure!(db.count("h", "t").await? == 2, "rows lost in the restart");
    db.stop(Duration::from_secs(30)).await?;
    db.start_again().await?;
    ensure!(
        db.count("h", "t").await? == 2,
        "rows lost in the clean restart"
    );
    Ok(())
}
