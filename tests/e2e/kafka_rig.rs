//! The rig the Kafka e2e tests share: a source/target pair, an Apache Kafka cluster with the
//! source's topic, the fleetsync config, the source tables and their workload, and what a
//! failing test leaves behind (`FLEETSYNC_TEST_KEEP_LOGS`).
//!
//! The source has a keyed InnoDB table, a keyless InnoDB table (a change applied twice shows
//! as a duplicate row there) and a keyed MyISAM table.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use fleetsync_tests::{
    wait_synced_procs, wait_until, ConfigBuilder, Fleetsync, KafkaCluster, KafkaOptions, MariaDb,
    Workload,
};
use mysql_async::Pool;
use tokio::task::JoinHandle;

use crate::support::{Pair, STOP_TIMEOUT};

/// The source server's topic (`<topic_prefix>.<server>`, default prefix).
pub const TOPIC: &str = "fleetsync.src";
pub const DB: &str = "app";
pub const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(180);
/// Row changes per table and slice of the background workload, and the pause between slices
/// (spaced so a debug build keeps up on 2 cores: about 1,500 row changes a second).
const SLICE: u64 = 150;
const SLICE_PAUSE: Duration = Duration::from_millis(100);

/// The three source tables and their workloads.
pub struct AppWorkload {
    keyed: Workload,
    keyless: Workload,
    myisam: Workload,
}

impl AppWorkload {
    pub fn new(seed: u64) -> Self {
        AppWorkload {
            keyed: Workload::new(seed),
            keyless: Workload::keyless(seed + 1),
            myisam: Workload::new(seed + 2),
        }
    }

    pub async fn create(&self, src: &MariaDb) -> Result<()> {
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
    pub async fn run(&mut self, pool: &Pool, changes: u64) -> Result<u64> {
        Ok(self.keyed.run(pool, DB, "keyed", changes).await?
            + self.keyless.run(pool, DB, "keyless", changes).await?
            + self.myisam.run(pool, DB, "myisam", changes / 3).await?)
    }
}

/// A workload running in the background until `stop` is set; yields the row changes made.
pub struct Writer {
    stop: Arc<AtomicBool>,
    task: JoinHandle<Result<u64>>,
}

impl Writer {
    /// The background load: [`SLICE`] row changes per table, then [`SLICE_PAUSE`], until
    /// stopped.
    pub fn start(pool: Pool, work: AppWorkload) -> Writer {
        Self::start_with(pool, work, SLICE, SLICE_PAUSE)
    }

    /// `slice` row changes per table, then `pause`, until stopped.
    pub fn start_with(pool: Pool, mut work: AppWorkload, slice: u64, pause: Duration) -> Writer {
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

    pub async fn finish(self) -> Result<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.context("workload task panicked")?
    }
}

/// A source/target pair, an Apache Kafka cluster with the source's topic, and the Kafka
/// config.
///
/// With `FLEETSYNC_TEST_KEEP_LOGS=DIR`, a test that fails keeps its agent, coordinator and
/// broker logs and a dump of the topic in a fresh directory under DIR (plus every differing
/// row when a sync wait fails); a test that ends with [`Rig::finish`] keeps nothing.
pub struct Rig {
    pub pair: Pair,
    pub kafka: KafkaCluster,
    pub config: PathBuf,
    /// The test got through [`Rig::finish`].
    done: bool,
    /// Logs were kept already.
    kept: bool,
}

impl Rig {
    /// A single-node cluster.
    pub async fn start() -> Result<Rig> {
        Self::start_with(KafkaOptions::single(), "").await
    }

    /// A cluster built with `opts`; `sync_extra`: raw TOML lines for the `[[syncs]]` entry.
    /// The servers and the cluster start concurrently; the source's topic is created with the
    /// harness's settings ([`KafkaCluster::topic_spec`]) before any fleetsync process runs.
    pub async fn start_with(opts: KafkaOptions, sync_extra: &str) -> Result<Rig> {
        let (pair, kafka) = tokio::join!(Pair::start(), KafkaCluster::start(opts));
        let (pair, kafka) = (pair?, kafka?);
        kafka.create_topics(&[TOPIC]).await?;
        let text = ConfigBuilder::new(&pair.state_dir())
            .server("src", &pair.src.url_root())
            .server("dst", &pair.dst.url_root())
            .sync("s1", "src", &["dst"], &["app\\..*"], &[])
            .raw(sync_extra)
            .kafka_bus(&kafka.bootstrap(), kafka.node_count())
            .build();
        let config = Fleetsync::write_config(pair.dir.path(), &text)?;
        println!(
            "Kafka ({} node(s)) at {}, config {}",
            kafka.node_count(),
            kafka.bootstrap(),
            config.display()
        );
        Ok(Rig {
            pair,
            kafka,
            config,
            done: false,
            kept: false,
        })
    }

    pub fn agent(&self) -> Result<Fleetsync> {
        Fleetsync::spawn("agent", &self.config, &[])
    }

    pub fn coordinator(&self) -> Result<Fleetsync> {
        Fleetsync::spawn("coordinator", &self.config, &[])
    }

    /// The usual start of a fault test: the app tables with 1,000 changes made before, a
    /// background writer (workload `seed`), the agent and the coordinator, returned once a
    /// first transaction has reached the target through the broker.
    pub async fn streaming(&self, seed: u64) -> Result<(Writer, Fleetsync, Fleetsync)> {
        let pool = self.pair.src.pool();
        let mut work = AppWorkload::new(seed);
        work.create(&self.pair.src).await?;
        work.run(&pool, 1_000).await?;
        let writer = Writer::start(pool, work);
        let agent = self.agent()?;
        let coordinator = self.coordinator()?;
        wait_until(CATCH_UP_TIMEOUT, "a first stored offset", || async {
            ensure!(self.stored_offset().await? > 0);
            Ok(())
        })
        .await?;
        Ok((writer, agent, coordinator))
    }

    /// Waits until the source and the target are equal row by row (failing early if either
    /// process exits); on failure prints the broker logs and keeps the logs.
    pub async fn wait_synced(
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
            println!("{}", self.kafka.log_tail(20));
            self.keep_logs().await;
        }
        result?;
        println!("synced after {:.1?}", start.elapsed());
        Ok(())
    }

    /// Keeps the logs, the topic and the row diff (see the type's doc).
    pub async fn keep_logs(&mut self) {
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
            .prefix("kafka-")
            .tempdir_in(&keep)
            .map(|d| d.keep());
        let Ok(dest) = dest else {
            println!(
                "cannot create a log directory in {}",
                PathBuf::from(keep).display()
            );
            return None;
        };
        for log in ["agent.log", "coordinator.log"] {
            let _ = std::fs::copy(self.config.with_file_name(log), dest.join(log));
        }
        for (i, log) in self.kafka.log_paths().iter().enumerate() {
            let _ = std::fs::copy(log, dest.join(format!("kafka-node-{}.log", i + 1)));
        }
        match dump_topic(&self.kafka.bootstrap(), &dest.join("topic.txt")) {
            Ok(n) => println!("{n} messages of {TOPIC} dumped"),
            Err(e) => println!("cannot dump {TOPIC}: {e:#}"),
        }
        println!("logs kept in {}", dest.display());
        Some(dest)
    }

    /// The end of a test that passed: both processes must exit cleanly on SIGTERM.
    pub async fn finish(
        &mut self,
        agent: &mut Fleetsync,
        coordinator: &mut Fleetsync,
    ) -> Result<()> {
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
    pub async fn stored_offset(&self) -> Result<i64> {
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

/// Checks every half second for `outage` that neither process has exited (`what` names the
/// fault in the error).
pub async fn both_alive_for(
    agent: &mut Fleetsync,
    coordinator: &mut Fleetsync,
    outage: Duration,
    what: &str,
) -> Result<()> {
    let since = Instant::now();
    while since.elapsed() < outage {
        tokio::time::sleep(Duration::from_millis(500)).await;
        agent
            .ensure_running()
            .with_context(|| format!("agent, {what}"))?;
        coordinator
            .ensure_running()
            .with_context(|| format!("coordinator, {what}"))?;
    }
    Ok(())
}

/// Both processes must exit cleanly on SIGTERM.
pub async fn stop_both(agent: &mut Fleetsync, coordinator: &mut Fleetsync) -> Result<()> {
    coordinator.stop(STOP_TIMEOUT).await?;
    agent.stop(STOP_TIMEOUT).await?;
    Ok(())
}
