//! Kafka cases the stand-in brokers could not carry, on Apache Kafka.
//!
//! - `kafka_leader_kill_three_brokers`: a three-node cluster (replication factor 3,
//!   `min.insync.replicas=2`, no unclean election). Under load, the leader of the source
//!   topic's partition is SIGKILLed, then the new leader: with one node of three left, nothing
//!   can be written (too few in-sync replicas, and no controller quorum), so the agent has to
//!   wait and retry. Both come back; the target must equal the source row by row (the keyless
//!   table shows a duplicate).
//! - `kafka_backlog_2m_rows`: the coordinator is down while the agent publishes 2,000,000 row
//!   changes (a few big `INSERT … SELECT` / `UPDATE` / `DELETE` statements on the source);
//!   then the coordinator starts and catches up, its resident memory sampled from
//!   `/proc/<pid>/status` the whole time and held to [`BACKLOG_RSS_LIMIT_MIB`].

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use fleetsync_tests::{wait_until, KafkaOptions, MariaDb};

use crate::kafka_rig::{both_alive_for, Rig, CATCH_UP_TIMEOUT, DB, TOPIC};

/// How long a leader election after a SIGKILL may take: the controller fences a dead broker
/// after `broker.session.timeout.ms` (4 s in the harness), then elects from the ISR.
const ELECTION_TIMEOUT: Duration = Duration::from_secs(90);

/// Two leaders of the source topic's partition SIGKILLed in turn under load, then restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_leader_kill_three_brokers() -> Result<()> {
    const OUTAGE: Duration = Duration::from_secs(5);
    let mut rig = Rig::start_with(KafkaOptions::three(), "").await?;
    let state = rig.kafka.partition_state(TOPIC, 0).await?;
    ensure!(state.replicas == [1, 2, 3], "{TOPIC} replicas {state:?}");
    let (writer, mut agent, mut coordinator) = rig.streaming(71).await?;

    // First victim: the leader, mid-stream.
    let first = rig
        .kafka
        .wait_leader(TOPIC, 0, |_| true, ELECTION_TIMEOUT)
        .await?;
    let high = rig.kafka.high_watermark(TOPIC, 0).await?;
    rig.kafka.kill9(first)?;
    let killed = Instant::now();
    println!("killed leader node {first} at offset {high}");
    let second = rig
        .kafka
        .wait_leader(TOPIC, 0, |l| l != first, ELECTION_TIMEOUT)
        .await?;
    println!("node {second} leads after {:.1?}", killed.elapsed());
    // The stream goes on through the new leader (two in-sync replicas left).
    let high_second = rig.kafka.high_watermark(TOPIC, 0).await?;
    wait_until(
        CATCH_UP_TIMEOUT,
        "the agent to publish to the new leader",
        || async {
            let now = rig.kafka.high_watermark(TOPIC, 0).await?;
            ensure!(now > high_second, "still at offset {now}");
            Ok(())
        },
    )
    .await?;
    agent.ensure_running()?;
    coordinator.ensure_running()?;

    // Second victim: the new leader. One node left: no write can be acknowledged.
    let high = rig.kafka.high_watermark(TOPIC, 0).await?;
    rig.kafka.kill9(second)?;
    println!("killed the new leader node {second} at offset {high}; one node left");
    both_alive_for(&mut agent, &mut coordinator, OUTAGE, "two brokers down").await?;
    for node in [first, second] {
        let t = Instant::now();
        rig.kafka.start_again(node).await?;
        println!("node {node} back in {:.1?}", t.elapsed());
    }
    rig.kafka
        .wait_in_sync(TOPIC, 0, ELECTION_TIMEOUT)
        .await
        .with_context(|| rig.kafka.log_tail(20))?;
    let high_back = rig.kafka.high_watermark(TOPIC, 0).await?;
    ensure!(
        high_back >= high,
        "acknowledged messages lost: offset {high} -> {high_back}"
    );
    wait_until(CATCH_UP_TIMEOUT, "the agent to publish again", || async {
        let now = rig.kafka.high_watermark(TOPIC, 0).await?;
        ensure!(now > high_back, "still at offset {now}");
        Ok(())
    })
    .await?;
    let written = writer.finish().await?;
    println!("{written} row changes during the test");
    rig.wait_synced(&mut agent, &mut coordinator, CATCH_UP_TIMEOUT)
        .await?;
    rig.finish(&mut agent, &mut coordinator).await
}

/// Row changes the backlog test makes (inserts, then updates, then deletes).
const BACKLOG_INSERTS: u64 = 1_600_000;
const BACKLOG_UPDATES: u64 = 300_000;
const BACKLOG_DELETES: u64 = 100_000;
/// Rows per source statement (and transaction): 10,000-row transactions, as a batch job
/// writes them. (Until the publisher looked each row's message key up in constant time,
/// publishing was quadratic in a transaction's size and this had to stay at 500.)
const BACKLOG_CHUNK: u64 = 10_000;
/// The coordinator's resident memory may not exceed this while it drains the backlog
/// (measured: ~107 MiB peak for a debug build). The backlog is 2,000,000 row changes (~84 MiB
/// on the broker's disk, compressed); held in memory as decoded rows it would take several
/// times this, so a coordinator that read ahead without bound fails here. What the bound
/// allows: librdkafka's prefetch (`queued.max.messages.kbytes` = 16 MiB), the decoded
/// batches in flight, the binary itself.
const BACKLOG_RSS_LIMIT_MIB: u64 = 192;
/// How long the agent may take to publish the backlog, and the coordinator to apply it, in a
/// debug build on 2 shared cores.
const BACKLOG_TIMEOUT: Duration = Duration::from_secs(600);

/// 2,000,000 row changes wait in the topic while the coordinator is down; then it catches up
/// with bounded memory and the target equals the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_backlog_2m_rows() -> Result<()> {
    let mut rig = Rig::start().await?;
    let src = &rig.pair.src;
    src.exec(&format!(
        "CREATE DATABASE {DB}; CREATE TABLE {DB}.bulk (id INT NOT NULL PRIMARY KEY, \
         a INT NOT NULL, b INT NULL) ENGINE=InnoDB"
    ))
    .await?;
    let mut agent = rig.agent()?;
    // The agent streams (its snapshot of the empty table is done) before the bulk starts.
    let high0 = wait_for_messages(&rig, &mut agent, 1, Duration::from_secs(60)).await?;

    let t = Instant::now();
    let statements = backlog_statements();
    // The sequence engine's `seq_*` tables live in the current database.
    let mut sql = format!("USE {DB};");
    for s in &statements {
        sql.push_str(s);
        sql.push(';');
    }
    src.exec(&sql).await?;
    let changes = BACKLOG_INSERTS + BACKLOG_UPDATES + BACKLOG_DELETES;
    println!(
        "{changes} row changes made on the source in {:.1?} ({} statements)",
        t.elapsed(),
        statements.len()
    );
    let want = high0 + i64::try_from(changes)?;
    let t = Instant::now();
    let high = wait_for_messages(&rig, &mut agent, want, BACKLOG_TIMEOUT).await?;
    let backlog_mib = dir_size(rig.kafka.dir())? / (1 << 20);
    println!(
        "agent published the backlog in {:.1?}: topic at offset {high}, ~{backlog_mib} MiB on \
         the broker's disk (compressed)",
        t.elapsed()
    );

    let t = Instant::now();
    let mut coordinator = rig.coordinator()?;
    let pid = coordinator.pid();
    let mut peak_kib = 0u64;
    let expect = rig.pair.src.query_value(CHECKSUM_SQL).await?;
    loop {
        coordinator.ensure_running()?;
        agent.ensure_running()?;
        peak_kib = peak_kib.max(vm_rss_kib(pid)?);
        if rig.pair.dst.query_value(CHECKSUM_SQL).await.ok().flatten() == expect {
            break;
        }
        if t.elapsed() > BACKLOG_TIMEOUT {
            rig.keep_logs().await;
            bail!(
                "the coordinator did not catch up within {BACKLOG_TIMEOUT:?}: target {:?}, \
                 source {expect:?}; log:\n{}",
                rig.pair.dst.query_value(CHECKSUM_SQL).await.ok().flatten(),
                coordinator.log_tail(30)
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let took = t.elapsed();
    println!(
        "coordinator caught up in {took:.1?} ({:.0} row changes/s), peak RSS {} MiB \
         (limit {BACKLOG_RSS_LIMIT_MIB} MiB)",
        changes as f64 / took.as_secs_f64(),
        peak_kib / 1024
    );
    ensure!(
        peak_kib / 1024 <= BACKLOG_RSS_LIMIT_MIB,
        "the coordinator's RSS reached {} MiB catching up a {backlog_mib} MiB backlog \
         (limit {BACKLOG_RSS_LIMIT_MIB} MiB)",
        peak_kib / 1024
    );
    let t = Instant::now();
    compare_bulk(&rig.pair.src, &rig.pair.dst).await?;
    println!(
        "target equals source row by row (checked in {:.1?})",
        t.elapsed()
    );
    rig.finish(&mut agent, &mut coordinator).await
}

/// A cheap whole-table fingerprint to poll on (the row-by-row compare runs once, at the end).
const CHECKSUM_SQL: &str = "SELECT CONCAT(COUNT(*), '/', SUM(id), '/', SUM(a), '/', \
                            COALESCE(SUM(b), 0)) FROM app.bulk";

/// The source statements: inserts from MariaDB's sequence engine, then updates and deletes
/// of id ranges, [`BACKLOG_CHUNK`] rows each (one transaction each, autocommit).
fn backlog_statements() -> Vec<String> {
    let mut out = Vec::new();
    let mut lo = 1;
    while lo <= BACKLOG_INSERTS {
        let hi = (lo + BACKLOG_CHUNK - 1).min(BACKLOG_INSERTS);
        out.push(format!(
            "INSERT INTO {DB}.bulk (id, a, b) SELECT seq, seq * 7 % 1000003, \
             IF(seq % 10 = 0, NULL, seq % 977) FROM seq_{lo}_to_{hi}"
        ));
        lo = hi + 1;
    }
    // Updates and deletes on disjoint id ranges, so each statement changes exactly its rows.
    let mut lo = 1;
    while lo <= BACKLOG_UPDATES {
        let hi = (lo + BACKLOG_CHUNK - 1).min(BACKLOG_UPDATES);
        out.push(format!(
            "UPDATE {DB}.bulk SET a = a + 1, b = NULL WHERE id BETWEEN {lo} AND {hi}"
        ));
        lo = hi + 1;
    }
    let mut lo = BACKLOG_UPDATES + 1;
    let end = BACKLOG_UPDATES + BACKLOG_DELETES;
    while lo <= end {
        let hi = (lo + BACKLOG_CHUNK - 1).min(end);
        out.push(format!(
            "DELETE FROM {DB}.bulk WHERE id BETWEEN {lo} AND {hi}"
        ));
        lo = hi + 1;
    }
    out
}

/// Waits until the topic holds at least `want` messages, failing if the agent exits.
async fn wait_for_messages(
    rig: &Rig,
    agent: &mut fleetsync_tests::Fleetsync,
    want: i64,
    timeout: Duration,
) -> Result<i64> {
    let t = Instant::now();
    loop {
        agent.ensure_running()?;
        let high = rig.kafka.high_watermark(TOPIC, 0).await?;
        if high >= want {
            return Ok(high);
        }
        if t.elapsed() > timeout {
            bail!(
                "the topic holds {high} messages after {timeout:?}, want {want}; agent log:\n{}",
                agent.log_tail(30)
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Row-by-row, byte-exact comparison of `app.bulk`, in id ranges so that neither side's 1.5
/// million rows are held in memory at once.
async fn compare_bulk(src: &MariaDb, dst: &MariaDb) -> Result<()> {
    const RANGE: u64 = 100_000;
    let mut lo = 0;
    while lo <= BACKLOG_INSERTS {
        let sql = format!(
            "SELECT id, a, b FROM {DB}.bulk WHERE id >= {lo} AND id < {} ORDER BY id",
            lo + RANGE
        );
        let (a, b) = tokio::join!(src.query_rows(&sql), dst.query_rows(&sql));
        let (a, b) = (a?, b?);
        if a != b {
            let first = a
                .iter()
                .zip(&b)
                .position(|(x, y)| x != y)
                .unwrap_or(a.len().min(b.len()));
            bail!(
                "{DB}.bulk differs in ids [{lo}, {}): {} source rows vs {} target rows; first \
                 difference at row {first}: {:?} vs {:?}",
                lo + RANGE,
                a.len(),
                b.len(),
                a.get(first),
                b.get(first)
            );
        }
        lo += RANGE;
    }
    Ok(())
}

/// `VmRSS` of a process, in KiB.
fn vm_rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS line")?;
    line.split_whitespace()
        .nth(1)
        .context("empty VmRSS line")?
        .parse()
        .with_context(|| format!("bad VmRSS line {line:?}"))
}

/// Bytes of the regular files under `dir`.
fn dir_size(dir: &std::path::Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_size(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}
