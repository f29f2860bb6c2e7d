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
//!
//! The tansu variants print `SKIPPED: …` and pass when tansu is not installed (or
//! `FLEETSYNC_SKIP_TANSU=1`); `scripts/test.sh` installs it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use fleetsync_tests::{
    wait_synced_procs, BrokerKind, ConfigBuilder, Fleetsync, KafkaBroker, MariaDb, Workload,
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
    fn start(pool: Pool, mut work: AppWorkload) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let task = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut total = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    total += work.run(&pool, SLICE).await?;
                    tokio::time::sleep(SLICE_PAUSE).await;
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
struct Rig {
    pair: Pair,
    broker: KafkaBroker,
    config: PathBuf,
}

impl Rig {
    /// `None` (after printing `SKIPPED: …`) when the broker kind is not available here.
    async fn start(kind: BrokerKind) -> Result<Option<Rig>> {
        Self::start_with(kind, false).await
    }

    /// `persistent`: tansu with SQLite storage, so the broker can be restarted.
    async fn start_with(kind: BrokerKind, persistent: bool) -> Result<Option<Rig>> {
        if let Some(why) = kind.unavailable() {
            println!("SKIPPED: {why}");
            return Ok(None);
        }
        let broker = async {
            if persistent {
                KafkaBroker::start_tansu_persistent(&[TOPIC]).await
            } else {
                KafkaBroker::start(kind, &[TOPIC]).await
            }
        };
        let (pair, broker) = tokio::join!(Pair::start(), broker);
        let (pair, broker) = (
            pair?,
            broker.with_context(|| format!("{} broker", kind.name()))?,
        );
        let text = ConfigBuilder::new(&pair.state_dir())
            .server("src", &pair.src.url_root())
            .server("dst", &pair.dst.url_root())
            .sync("s1", "src", &["dst"], &["app\\..*"], &[])
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
        }
        result?;
        println!("synced after {:.1?}", start.elapsed());
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

/// Both processes must exit cleanly on SIGTERM.
async fn stop_both(agent: &mut Fleetsync, coordinator: &mut Fleetsync) -> Result<()> {
    coordinator.stop(STOP_TIMEOUT).await?;
    agent.stop(STOP_TIMEOUT).await?;
    Ok(())
}

/// Snapshot + streaming through the broker; then both processes stop gracefully and resume.
async fn kafka_sync(kind: BrokerKind) -> Result<()> {
    let Some(mut rig) = Rig::start(kind).await? else {
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
    stop_both(&mut agent, &mut coordinator).await
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
    const KILLS_EACH: usize = 5;
    let Some(mut rig) = Rig::start(kind).await? else {
        return Ok(());
    };
    let pool = rig.pair.src.pool();
    let mut work = AppWorkload::new(31);
    work.create(&rig.pair.src).await?;
    work.run(&pool, 2_000).await?;
    let writer = Writer::start(pool.clone(), work);

    let mut agent = rig.agent()?;
    let mut coordinator = rig.coordinator()?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut victims = vec![Victim::Agent; KILLS_EACH];
    victims.extend([Victim::Coordinator; KILLS_EACH]);
    victims.shuffle(&mut rng);
    // The first kill always hits the agent early, so one lands in the snapshot.
    if let Some(i) = victims.iter().position(|v| *v == Victim::Agent) {
        victims.swap(0, i);
    }
    for (n, victim) in victims.iter().enumerate() {
        let alive = Duration::from_millis(rng.gen_range(300..3_000));
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
    println!("{written} row changes during the kills");
    rig.wait_synced(&mut agent, &mut coordinator, CATCH_UP_TIMEOUT)
        .await?;
    stop_both(&mut agent, &mut coordinator).await
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
    const DOWN_FOR: Duration = Duration::from_secs(8);
    let Some(mut rig) = Rig::start(BrokerKind::Mock).await? else {
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
    let writer = Writer::start(pool.clone(), work);
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
    stop_both(&mut agent, &mut coordinator).await
}

/// The broker refuses every connection for a while under load (agent and coordinator both cut
/// off; the mock keeps its data), then comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_cut_off_from_broker_mock() -> Result<()> {
    const DOWN_FOR: Duration = Duration::from_secs(10);
    let Some(mut rig) = Rig::start(BrokerKind::Mock).await? else {
        return Ok(());
    };
    let pool = rig.pair.src.pool();
    let mut work = AppWorkload::new(51);
    work.create(&rig.pair.src).await?;
    work.run(&pool, 1_000).await?;
    let writer = Writer::start(pool.clone(), work);
    let mut agent = rig.agent()?;
    let mut coordinator = rig.coordinator()?;
    tokio::time::sleep(Duration::from_secs(3)).await;

    rig.broker.down().await?;
    println!("broker down");
    let down_since = Instant::now();
    while down_since.elapsed() < DOWN_FOR {
        tokio::time::sleep(Duration::from_millis(500)).await;
        agent.ensure_running().context("agent, broker down")?;
        coordinator
            .ensure_running()
            .context("coordinator, broker down")?;
    }
    rig.broker.up().await?;
    println!("broker up");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let written = writer.finish().await?;
    println!("{written} row changes during the test");
    rig.wait_synced(&mut agent, &mut coordinator, CATCH_UP_TIMEOUT)
        .await?;
    stop_both(&mut agent, &mut coordinator).await
}

/// The broker is SIGKILLed under load and restarted on its storage (tansu with SQLite): agent
/// and coordinator reconnect and nothing is lost or applied twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_broker_restart_tansu() -> Result<()> {
    const DOWN_FOR: Duration = Duration::from_secs(5);
    let mut rig = match Rig::start_with(BrokerKind::Tansu, true).await {
        Ok(Some(rig)) => rig,
        Ok(None) => return Ok(()),
        Err(e) if format!("{e:#}").contains("libsql") => {
            println!("SKIPPED: tansu was built without SQLite storage (--features libsql): {e:#}");
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let pool = rig.pair.src.pool();
    let mut work = AppWorkload::new(61);
    work.create(&rig.pair.src).await?;
    work.run(&pool, 1_000).await?;
    let writer = Writer::start(pool.clone(), work);
    let mut agent = rig.agent()?;
    let mut coordinator = rig.coordinator()?;
    tokio::time::sleep(Duration::from_secs(3)).await;

    for round in 1..=2 {
        rig.broker.kill9()?;
        println!("broker killed (round {round})");
        let down_since = Instant::now();
        while down_since.elapsed() < DOWN_FOR {
            tokio::time::sleep(Duration::from_millis(500)).await;
            agent.ensure_running().context("agent, broker down")?;
            coordinator
                .ensure_running()
                .context("coordinator, broker down")?;
        }
        rig.broker.start_again().await?;
        println!("broker restarted (round {round})");
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let written = writer.finish().await?;
    println!("{written} row changes during the test");
    rig.wait_synced(&mut agent, &mut coordinator, CATCH_UP_TIMEOUT)
        .await?;
    stop_both(&mut agent, &mut coordinator).await
}
