//! The Kafka bus on Apache Kafka 4.4.0 (one node, started by the test): `fleetsync agent` and
//! `fleetsync coordinator` as separate processes, talking only through the broker.
//!
//! The source has a keyed InnoDB table, a keyless InnoDB table (a change applied twice shows
//! as a duplicate row there) and a keyed MyISAM table; rows exist before the agent starts
//! (snapshot path) and a workload runs while it streams. Every test ends with the source and
//! the target equal row by row.
//!
//! - `kafka_sync`: snapshot + streaming, then a graceful stop and restart of both processes.
//! - `kafka_kill9_agent_and_coordinator`: five SIGKILLs of each process, interleaved at random
//!   points, under load: nothing lost, nothing applied twice.
//! - `kafka_target_down_backlog`: the target crashes, the backlog waits in Kafka, the target
//!   comes back and the coordinator catches up.
//! - `kafka_cut_off_from_broker`: the broker is SIGSTOPped for a while under load (connections
//!   open, nothing answers, like a network partition), then SIGCONTed.
//! - `kafka_broker_restart`: the broker is SIGKILLed under load and restarted on its data, twice.
//! - `kafka_harness_self_test`: the broker, mock and server helpers themselves.
//! - `kafka_secure_self_test`: the TLS/SASL broker variant (`fleetsync_tests::kafka_secure`):
//!   the test CA verifies it, another CA does not, a plaintext client gets nothing from the
//!   TLS port, SCRAM logins work with the right password only.
//!
//! The three-broker cases and the 2-million-row backlog are in `kafka_faults`. With
//! `FLEETSYNC_TEST_KEEP_LOGS=DIR`, a failing test leaves its logs, a dump of the topic and the
//! differing rows under DIR.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use fleetsync_tests::{fleetsync_cmd, wait_until, Fleetsync, KafkaCluster, MariaDb, MockKafka};

use crate::support::{dead_port, http_get};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::kafka_rig::{
    both_alive_for, stop_both, AppWorkload, Rig, Writer, CATCH_UP_TIMEOUT, TOPIC,
};

/// Snapshot + streaming through the broker; then both processes stop gracefully and resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_sync() -> Result<()> {
    let mut rig = Rig::start().await?;
    let pool = rig.pair.src.pool();
    let mut work = AppWorkload::new(21);
    work.create(&rig.pair.src).await?;
    let before = work.run(&pool, 1_000).await?;
    println!("{before} row changes before the agent starts");

    // Two processes on one machine: each gets its own listener from the command line (the
    // config's `[metrics] listen` is 127.0.0.1:0), and a malformed address is refused.
    let refused = fleetsync_cmd(&[
        "coordinator",
        "--config",
        &rig.config.to_string_lossy(),
        "--metrics-listen",
        "nowhere",
    ])
    .await?;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    ensure!(
        !refused.status.success() && stderr.contains("--metrics-listen"),
        "a malformed --metrics-listen was not refused: {stderr}"
    );
    let (agent_port, coordinator_port) = (dead_port()?, dead_port()?);
    let agent_listen = format!("127.0.0.1:{agent_port}");
    let coordinator_listen = format!("127.0.0.1:{coordinator_port}");
    let mut agent = Fleetsync::spawn("agent", &rig.config, &["--metrics-listen", &agent_listen])?;
    let mut coordinator = Fleetsync::spawn(
        "coordinator",
        &rig.config,
        &["--metrics-listen", &coordinator_listen],
    )?;
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
    for (who, port) in [("agent", agent_port), ("coordinator", coordinator_port)] {
        let (code, body) = http_get(port, "/metrics").await?;
        ensure!(
            code == 200 && body.contains("fleetsync_"),
            "{who} --metrics-listen 127.0.0.1:{port}: HTTP {code}"
        );
    }
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Victim {
    Agent,
    Coordinator,
}

/// Five SIGKILLs of each process, in random order at random points, under load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_kill9_agent_and_coordinator() -> Result<()> {
    const KILLS_EACH: usize = 5;
    // Small snapshot chunks stretch the snapshot, so the first kill can land in it.
    let mut rig = Rig::start_with(
        fleetsync_tests::KafkaOptions::single(),
        "snapshot_chunk_rows = 50\n",
    )
    .await?;
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

/// The target crashes; changes pile up in Kafka while it is down (the agent keeps publishing,
/// the coordinator keeps retrying); the target comes back and the coordinator catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_target_down_backlog() -> Result<()> {
    const DOWN_FOR: Duration = Duration::from_secs(8);
    let mut rig = Rig::start().await?;
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
    let high_before = rig.kafka.high_watermark(TOPIC, 0).await?;
    let writer = Writer::start(pool.clone(), work);
    both_alive_for(&mut agent, &mut coordinator, DOWN_FOR, "target down").await?;
    let written = writer.finish().await?;
    // The backlog really is in the topic, waiting.
    let high = rig.kafka.high_watermark(TOPIC, 0).await?;
    println!("{written} row changes while the target was down; topic {high_before} -> {high}");
    ensure!(
        high > high_before,
        "nothing was published while the target was down"
    );

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

/// The broker is SIGSTOPped under load (agent and coordinator both cut off: connections stay
/// open and nothing answers), then SIGCONTed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_cut_off_from_broker() -> Result<()> {
    const DOWN_FOR: Duration = Duration::from_secs(10);
    let mut rig = Rig::start().await?;
    // Streaming before the cut: something reached the target through the broker.
    let (writer, mut agent, mut coordinator) = rig.streaming(51).await?;

    rig.kafka.pause(1)?;
    println!("broker paused (SIGSTOP)");
    let down_since = Instant::now();
    let mut offset_mid_outage = None;
    while down_since.elapsed() < DOWN_FOR {
        tokio::time::sleep(Duration::from_millis(500)).await;
        agent.ensure_running().context("agent, broker paused")?;
        coordinator
            .ensure_running()
            .context("coordinator, broker paused")?;
        if offset_mid_outage.is_none() && down_since.elapsed() >= DOWN_FOR / 2 {
            offset_mid_outage = Some(rig.stored_offset().await?);
        }
    }
    // Nothing reaches the target in the second half of the outage: the cut is real.
    let offset_end_outage = rig.stored_offset().await?;
    ensure!(
        offset_mid_outage == Some(offset_end_outage),
        "the target kept receiving changes with the broker paused: stored offset \
         {offset_mid_outage:?} -> {offset_end_outage}"
    );
    rig.kafka.resume(1)?;
    println!("broker resumed (SIGCONT)");
    // Both reconnect by themselves: the target moves on while the writer still runs.
    wait_until(CATCH_UP_TIMEOUT, "the target to move on", || async {
        ensure!(rig.stored_offset().await? > offset_end_outage);
        Ok(())
    })
    .await?;
    let written = writer.finish().await?;
    println!("{written} row changes during the test");
    rig.wait_synced(&mut agent, &mut coordinator, CATCH_UP_TIMEOUT)
        .await?;
    rig.finish(&mut agent, &mut coordinator).await
}

/// The broker is SIGKILLed under load and restarted on its data, twice: agent and coordinator
/// reconnect, and nothing is lost or applied twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_broker_restart() -> Result<()> {
    const DOWN_FOR: Duration = Duration::from_secs(5);
    let mut rig = Rig::start().await?;
    let (writer, mut agent, mut coordinator) = rig.streaming(61).await?;

    for round in 1..=2 {
        let high_before = rig.kafka.high_watermark(TOPIC, 0).await?;
        rig.kafka.kill9(1)?;
        println!("broker killed (round {round}) at offset {high_before}");
        both_alive_for(&mut agent, &mut coordinator, DOWN_FOR, "broker down").await?;
        let restart = Instant::now();
        rig.kafka.start_again(1).await?;
        let high_after = rig.kafka.high_watermark(TOPIC, 0).await?;
        println!(
            "broker restarted (round {round}) in {:.1?} at offset {high_after}",
            restart.elapsed()
        );
        ensure!(
            high_after >= high_before,
            "the broker lost messages in the restart: offset {high_before} -> {high_after}"
        );
        // The agent reconnects by itself and publishes what piled up.
        let back = Instant::now();
        wait_until(CATCH_UP_TIMEOUT, "the agent to publish again", || async {
            let high = rig.kafka.high_watermark(TOPIC, 0).await?;
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

/// The support library's broker and restart helpers: a single Apache Kafka node takes a topic
/// with settings and messages, keeps them through SIGKILL + restart and through SIGSTOP +
/// SIGCONT; the mock answers `down`/`up`; a MariaDB killed and started again keeps its data
/// and port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_harness_self_test() -> Result<()> {
    use fleetsync_tests::kafka_admin;
    // How long the checks that expect no answer wait for one.
    const SHORT: Duration = Duration::from_secs(2);

    let (kafka, mock) = tokio::join!(KafkaCluster::single(), MockKafka::start(&[TOPIC]));
    let (mut kafka, mut mock) = (kafka?, mock?);
    ensure!(
        kafka.bootstrap().starts_with("127.0.0.1:"),
        "{}",
        kafka.bootstrap()
    );
    ensure!(
        kafka.bootstrap_for("SSL").is_err(),
        "no SSL listener was asked for"
    );
    kafka.create_topics(&[TOPIC, "fleetsync.other"]).await?;
    ensure!(
        kafka.create_topics(&[TOPIC]).await.is_err(),
        "creating an existing topic must fail"
    );
    ensure!(
        kafka.high_watermark("fleetsync.other", 0).await? == 0,
        "fresh topic not empty"
    );
    ensure!(kafka.leader_of(TOPIC, 0).await? == Some(1));
    let state = kafka.partition_state(TOPIC, 0).await?;
    ensure!(state.replicas == [1] && state.isr == [1], "{state:?}");
    let messages: Vec<Vec<u8>> = (0..3).map(|i| format!("m{i}").into_bytes()).collect();
    kafka_admin::produce(&kafka.bootstrap(), TOPIC, messages).await?;
    ensure!(
        kafka.high_watermark(TOPIC, 0).await? == 3,
        "3 messages produced"
    );

    kafka.kill9(1)?;
    ensure!(
        kafka_admin::broker_ids(&kafka.bootstrap(), SHORT)
            .await
            .is_err(),
        "metadata answered with the only node killed"
    );
    kafka.start_again(1).await?;
    ensure!(
        kafka.high_watermark(TOPIC, 0).await? == 3,
        "messages lost in the restart"
    );
    kafka.pause(1)?;
    ensure!(
        kafka_admin::broker_ids(&kafka.bootstrap(), SHORT)
            .await
            .is_err(),
        "a paused node answered"
    );
    kafka.resume(1)?;
    ensure!(
        kafka.high_watermark(TOPIC, 0).await? == 3,
        "messages lost in the pause"
    );
    kafka.ensure_running()?;

    mock.down().await?;
    mock.up().await?;
    ensure!(
        kafka_admin::high_watermark(mock.bootstrap(), TOPIC, 0).await? == 0,
        "mock topic not empty after down/up"
    );

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

/// The TLS/SASL broker variant: TLS verified with the test CA and refused with another CA; a
/// plaintext librdkafka client gets no metadata from the TLS port; a SCRAM-SHA-512 login over
/// SASL_SSL works with the right password and fails with a wrong one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_secure_self_test() -> Result<()> {
    use fleetsync_tests::kafka_admin;
    use fleetsync_tests::kafka_secure::{SecureKafka, SASL_LISTENER, SSL_LISTENER};

    let secure = SecureKafka::start(&[("alice", "alice-secret")]).await?;
    for listener in [SSL_LISTENER, SASL_LISTENER] {
        ensure!(
            secure.tls_handshake_ok(listener, &secure.certs.ca).await?,
            "{listener}: TLS not verified with the test CA"
        );
        ensure!(
            !secure
                .tls_handshake_ok(listener, &secure.certs.wrong_ca)
                .await?,
            "{listener}: TLS verified with a CA that signed nothing"
        );
    }
    let plain = kafka_admin::broker_ids(&secure.ssl_bootstrap()?, Duration::from_secs(3)).await;
    ensure!(
        plain.is_err(),
        "a plaintext client got metadata from the TLS port: {plain:?}"
    );
    // The harness's own PLAINTEXT listener still answers.
    ensure!(
        kafka_admin::broker_ids(&secure.kafka.bootstrap(), Duration::from_secs(10)).await? == [1]
    );
    let id = secure.java_sasl_login("alice", "alice-secret").await?;
    println!("SASL_SSL login as alice: cluster {id}");
    // Refused for the password, not for anything else (a timeout would also be an error).
    match secure.java_sasl_login("alice", "wrong").await {
        Ok(id) => anyhow::bail!("a wrong password logged in (cluster {id})"),
        Err(e) => ensure!(
            format!("{e:#}").contains("Authentication failed"),
            "a wrong password failed for another reason: {e:#}"
        ),
    }
    Ok(())
}
