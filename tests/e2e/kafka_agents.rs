//! Agents over Kafka without a state volume, and agent standby with fencing (three Apache
//! Kafka brokers; see `docs/agent-failover.md`).
//!
//! - `kafka_agent_standby_takes_over_after_kill`: two agents of one server under load; the
//!   publisher is SIGKILLed and the standby takes over from the last committed transaction.
//! - `kafka_agent_stalled_publisher_is_fenced`: the publisher is SIGSTOPped past the session
//!   timeout, the standby takes over; SIGCONTed, the old one is fenced (log line and
//!   `fleetsync_agent_fenced_total`), or sees it lost the election before producing, and
//!   stands by.
//! - `kafka_agent_resumes_from_topic_with_empty_state_dir`: the agent is stopped (SIGTERM,
//!   then SIGKILL), its `state_dir` emptied, and it resumes from the topic (no new snapshot).
//!
//! After each: the coordinator applies everything and the target equals the source row by
//! row (a keyed, a keyless and a MyISAM table, and `hot`, one row every writer transaction
//! updates), and the topic holds one stream: read committed, every message numbered (`fs-seq`)
//! one after the other from 0, transactions never interleaved, positions in order.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use fleetsync_tests::{wait_until, Fleetsync, KafkaOptions};
use mysql_async::prelude::Queryable;
use tokio::task::JoinHandle;

use crate::kafka_rig::{AppWorkload, Rig, Writer, CATCH_UP_TIMEOUT, DB, TOPIC};
use crate::support::{dead_port, http_get, STOP_TIMEOUT};

/// The agents' election session timeout: the broker's smallest (`group.min.session.timeout.ms`).
const SESSION_MS: u64 = 6_000;
/// A takeover must happen within the session timeout plus this (a rebalance, the new
/// producer's `init_transactions`, reading the topic's tail; debug build, 2 busy cores).
const TAKEOVER_SLACK: Duration = Duration::from_secs(30);

/// The rig with the short session timeout, the app tables plus `hot`, and the writers.
async fn setup(seed: u64) -> Result<(Rig, Writer, HotWriter)> {
    let rig = Rig::start_with(KafkaOptions::three(), "").await?;
    let text = std::fs::read_to_string(&rig.config)?;
    ensure!(text.contains("[bus]\n"), "no [bus] in {text}");
    let text = text.replace(
        "[bus]\n",
        &format!("[bus]\nagent_session_timeout_ms = {SESSION_MS}\n"),
    );
    std::fs::write(&rig.config, text)?;
    let pool = rig.pair.src.pool();
    let mut work = AppWorkload::new(seed);
    work.create(&rig.pair.src).await?;
    rig.pair
        .src
        .exec(&format!(
            "CREATE TABLE {DB}.hot (id INT NOT NULL PRIMARY KEY, n BIGINT NOT NULL) ENGINE=InnoDB; \
             INSERT INTO {DB}.hot VALUES (1, 0)"
        ))
        .await?;
    work.run(&pool, 500).await?;
    let writer = Writer::start(pool.clone(), work);
    let hot = HotWriter::start(pool);
    Ok((rig, writer, hot))
}

/// Updates the one row of `hot` in transactions of its own (autocommit), with a short pause,
/// until finished.
struct HotWriter {
    stop: Arc<AtomicBool>,
    task: JoinHandle<Result<u64>>,
}

impl HotWriter {
    fn start(pool: mysql_async::Pool) -> HotWriter {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut n = 0u64;
            let mut conn = pool.get_conn().await?;
            while !flag.load(Ordering::Relaxed) {
                conn.query_drop(format!("UPDATE {DB}.hot SET n = n + 1 WHERE id = 1"))
                    .await?;
                n += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            anyhow::Ok(n)
        });
        HotWriter { stop, task }
    }

    async fn finish(self) -> Result<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.context("hot writer panicked")?
    }
}

/// `fleetsync agent` number `n` with its own log and metrics port.
fn spawn_agent(rig: &Rig, n: u32) -> Result<(Fleetsync, u16)> {
    let port = dead_port()?;
    let log = rig.config.with_file_name(format!("agent-{n}.log"));
    let args = vec![
        "agent".into(),
        "--config".into(),
        rig.config.clone().into_os_string(),
        "--metrics-listen".into(),
        format!("127.0.0.1:{port}").into(),
    ];
    Ok((Fleetsync::spawn_logged(args, &rig.config, &log)?, port))
}

/// The agent's publisher state for server `src` on `/health` ("" before it has one).
async fn agent_state(port: u16) -> Result<String> {
    let (code, body) = http_get(port, "/health").await?;
    let v: serde_json::Value =
        serde_json::from_str(&body).with_context(|| format!("/health {code}: {body}"))?;
    ensure!(
        code == 200 || code == 503,
        "/health answered {code}: {body}"
    );
    let state = v["pipelines"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["sync"] == "agent/src"))
        .and_then(|p| p["state"].as_str())
        .unwrap_or_default()
        .to_string();
    // A standby agent is healthy, not a failure.
    if state == "standby" {
        ensure!(
            code == 200,
            "a standby agent's /health answered {code}: {body}"
        );
    }
    Ok(state)
}

async fn wait_state(
    agent: &mut Fleetsync,
    port: u16,
    want: &[&str],
    timeout: Duration,
) -> Result<()> {
    let mut last = String::new();
    let what = format!("{} to be {want:?}", agent.name());
    let start = Instant::now();
    while start.elapsed() < timeout {
        agent.ensure_running()?;
        if let Ok(s) = agent_state(port).await {
            if want.contains(&s.as_str()) {
                return Ok(());
            }
            last = s;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!(
        "timed out after {timeout:?} waiting for {what}: state {last:?}; log:\n{}",
        agent.log_tail(30)
    )
}

fn signal(p: &Fleetsync, sig: nix::sys::signal::Signal) -> Result<()> {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(p.pid() as i32), sig)
        .with_context(|| format!("{sig} to {}", p.name()))
}

/// The topic read committed from the beginning: every message numbered `fs-seq` 0, 1, 2, …
/// (none lost, none twice), transactions whole and never interleaved, positions in order.
/// Returns the number of messages.
fn check_one_stream(bootstrap: &str) -> Result<usize> {
    use fleetsync_proto::Position;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers, Message};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "fleetsync-test-stream-check")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(TOPIC, 0, Offset::Beginning)?;
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let (mut count, mut open, mut last_end): (usize, bool, Option<Position>) = (0, false, None);
    loop {
        ensure!(Instant::now() < deadline, "reading {TOPIC} timed out");
        let msg = match consumer.poll(Duration::from_millis(500)) {
            None => continue,
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => break,
            Some(r) => r?,
        };
        let (mut begin, mut end, mut seq) = (false, false, None);
        if let Some(h) = msg.headers() {
            for header in h.iter() {
                match header.key {
                    "fs-begin" => begin = true,
                    "fs-end" => end = true,
                    "fs-seq" => {
                        seq = header
                            .value
                            .and_then(|v| std::str::from_utf8(v).ok())
                            .and_then(|v| v.parse::<u64>().ok())
                    }
                    _ => {}
                }
            }
        }
        let at = msg.offset();
        ensure!(
            seq == Some(count as u64),
            "offset {at}: fs-seq {seq:?}, expected {count} (a lost or repeated message)"
        );
        ensure!(
            begin != open,
            "offset {at}: begin={begin} while a transaction is {} (interleaved or cut short)",
            if open { "open" } else { "closed" }
        );
        open = !end;
        if end {
            let t = fleetsync_proto::codec::decode_transaction(msg.payload().unwrap_or_default())
                .with_context(|| format!("offset {at}"))?;
            if let Some(prev) = &last_end {
                // Snapshot chunks share the snapshot's position, and a heartbeat may repeat
                // the last one; a position going back means a stream published twice.
                ensure!(
                    t.position >= *prev,
                    "offset {at}: position {} after {prev} (a stream published twice)",
                    t.position
                );
            }
            last_end = Some(t.position);
        }
        count += 1;
    }
    ensure!(!open, "the topic ends inside a transaction");
    ensure!(count > 0, "{TOPIC} is empty");
    Ok(count)
}

/// Stops the writers, waits until the target equals the source, checks the topic.
async fn settle(
    rig: &mut Rig,
    writer: Writer,
    hot: HotWriter,
    agent: &mut Fleetsync,
    coordinator: &mut Fleetsync,
) -> Result<()> {
    let written = writer.finish().await?;
    let hot_updates = hot.finish().await?;
    println!("{written} row changes and {hot_updates} updates of the hot row during the test");
    rig.wait_synced(agent, coordinator, CATCH_UP_TIMEOUT)
        .await?;
    let n = rig
        .pair
        .dst
        .query_value(&format!("SELECT n FROM {DB}.hot"))
        .await?;
    ensure!(
        n.as_deref() == Some(hot_updates.to_string().as_str()),
        "hot row on the target: {n:?}, {hot_updates} updates made"
    );
    let bootstrap = rig.kafka.bootstrap();
    let messages = tokio::task::spawn_blocking(move || check_one_stream(&bootstrap)).await??;
    println!("{messages} messages in {TOPIC}: one stream, numbered without a gap");
    Ok(())
}

fn log_count(log: &Path, needle: &str) -> Result<usize> {
    Ok(std::fs::read_to_string(log)?.matches(needle).count())
}

/// Two agents for one server; SIGKILL the publisher; the standby takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_agent_standby_takes_over_after_kill() -> Result<()> {
    let (mut rig, writer, hot) = setup(81).await?;
    let (mut a, port_a) = spawn_agent(&rig, 1)?;
    wait_state(
        &mut a,
        port_a,
        &["snapshotting", "streaming"],
        CATCH_UP_TIMEOUT,
    )
    .await?;
    let (mut b, port_b) = spawn_agent(&rig, 2)?;
    wait_state(&mut b, port_b, &["standby"], CATCH_UP_TIMEOUT).await?;
    let mut coordinator = rig.coordinator()?;
    wait_until(CATCH_UP_TIMEOUT, "a first stored offset", || async {
        ensure!(rig.stored_offset().await? > 0);
        Ok(())
    })
    .await?;
    // Both ran a while: the standby stays standby while the publisher lives.
    tokio::time::sleep(Duration::from_secs(3)).await;
    ensure!(agent_state(port_b).await? == "standby", "b left standby");
    ensure!(
        agent_state(port_a).await? == "streaming",
        "a does not stream"
    );

    a.kill9()?;
    let killed = Instant::now();
    wait_state(
        &mut b,
        port_b,
        &["streaming"],
        Duration::from_millis(SESSION_MS) + TAKEOVER_SLACK,
    )
    .await?;
    println!(
        "standby streams {:.1?} after the publisher's SIGKILL (session timeout {SESSION_MS} ms)",
        killed.elapsed()
    );
    ensure!(
        log_count(b.log_path(), "initial snapshot started")? == 0,
        "the standby took a new snapshot instead of resuming:\n{}",
        b.log_tail(30)
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    settle(&mut rig, writer, hot, &mut b, &mut coordinator).await?;
    rig.finish(&mut b, &mut coordinator).await
}

/// SIGSTOP the publisher past the session timeout: the standby takes over; SIGCONT: the old
/// publisher is fenced (or sees it lost the election first) and stands by.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_agent_stalled_publisher_is_fenced() -> Result<()> {
    use nix::sys::signal::Signal;
    let (mut rig, writer, hot) = setup(82).await?;
    let (mut a, port_a) = spawn_agent(&rig, 1)?;
    wait_state(
        &mut a,
        port_a,
        &["snapshotting", "streaming"],
        CATCH_UP_TIMEOUT,
    )
    .await?;
    let (mut b, port_b) = spawn_agent(&rig, 2)?;
    wait_state(&mut b, port_b, &["standby"], CATCH_UP_TIMEOUT).await?;
    let mut coordinator = rig.coordinator()?;
    wait_until(CATCH_UP_TIMEOUT, "a first stored offset", || async {
        ensure!(rig.stored_offset().await? > 0);
        Ok(())
    })
    .await?;
    wait_state(&mut a, port_a, &["streaming"], CATCH_UP_TIMEOUT).await?;

    signal(&a, Signal::SIGSTOP)?;
    let stopped = Instant::now();
    let took_over = wait_state(
        &mut b,
        port_b,
        &["streaming"],
        Duration::from_millis(SESSION_MS) + TAKEOVER_SLACK,
    )
    .await;
    if let Err(e) = took_over {
        signal(&a, Signal::SIGCONT)?;
        return Err(e);
    }
    println!(
        "standby streams {:.1?} after the publisher's SIGSTOP (session timeout {SESSION_MS} ms)",
        stopped.elapsed()
    );
    // The standby publishes for a while, then the zombie wakes up. It stands down one of two
    // ways, whichever comes first: its next produce is refused by Kafka (fenced: the
    // transactional id's epoch moved on), or it sees that it lost the election before
    // producing anything. Either way it must not publish again (checked below and by the
    // row-by-row comparison at the end).
    const LOST: &str = "no longer the elected publisher";
    const FENCED: &str = "fenced: another agent of this server publishes now";
    let lost_before = log_count(a.log_path(), LOST)?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    signal(&a, Signal::SIGCONT)?;
    let fenced = || async {
        let (_, metrics) = http_get(port_a, "/metrics").await?;
        anyhow::Ok(metrics.contains("fleetsync_agent_fenced_total{server=\"src\"} 1"))
    };
    wait_until(
        Duration::from_secs(60),
        "the old publisher to be fenced or to stand down",
        || async {
            ensure!(
                fenced().await? || log_count(a.log_path(), LOST)? > lost_before,
                "neither fenced nor stood down yet"
            );
            Ok(())
        },
    )
    .await
    .with_context(|| a.log_tail(30))?;
    let how = if fenced().await? {
        "fenced"
    } else {
        "stood down before producing"
    };
    println!("the woken publisher: {how}");
    if how == "fenced" {
        ensure!(
            log_count(a.log_path(), FENCED)? == 1,
            "the fenced agent's log line:\n{}",
            a.log_tail(30)
        );
    }
    wait_state(&mut a, port_a, &["standby"], CATCH_UP_TIMEOUT).await?;
    // The publisher keeps publishing: the zombie did not take the role back.
    tokio::time::sleep(Duration::from_secs(3)).await;
    ensure!(
        agent_state(port_b).await? == "streaming",
        "b stopped streaming"
    );
    ensure!(agent_state(port_a).await? == "standby", "a left standby");
    settle(&mut rig, writer, hot, &mut b, &mut coordinator).await?;
    a.stop(STOP_TIMEOUT).await?;
    rig.finish(&mut b, &mut coordinator).await
}

/// The agent keeps nothing in `state_dir`: emptied after a clean stop and after a SIGKILL, it
/// resumes after the topic's last committed transaction (no new snapshot, no gap, no
/// duplicate).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_agent_resumes_from_topic_with_empty_state_dir() -> Result<()> {
    let (mut rig, writer, hot) = setup(83).await?;
    let state_dir = rig.pair.state_dir();
    let (mut a, port_a) = spawn_agent(&rig, 1)?;
    let mut coordinator = rig.coordinator()?;
    wait_state(&mut a, port_a, &["streaming"], CATCH_UP_TIMEOUT).await?;
    for (round, kill) in [(1, false), (2, true)] {
        tokio::time::sleep(Duration::from_secs(2)).await;
        if kill {
            a.kill9()?;
        } else {
            a.stop(STOP_TIMEOUT).await?;
        }
        let sled: Vec<_> = std::fs::read_dir(&state_dir)?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".sled"))
            .map(|e| e.file_name())
            .collect();
        ensure!(
            sled.is_empty(),
            "the Kafka agent kept state in state_dir: {sled:?}"
        );
        std::fs::remove_dir_all(&state_dir)?;
        std::fs::create_dir_all(&state_dir)?;
        a.restart()?;
        wait_state(&mut a, port_a, &["streaming"], CATCH_UP_TIMEOUT).await?;
        ensure!(
            log_count(a.log_path(), "initial snapshot started")? == 1,
            "round {round}: a new snapshot instead of resuming from the topic:\n{}",
            a.log_tail(30)
        );
        println!("round {round}: resumed from the topic with an empty state_dir");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    settle(&mut rig, writer, hot, &mut a, &mut coordinator).await?;
    rig.finish(&mut a, &mut coordinator).await
}
