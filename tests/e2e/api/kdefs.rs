//! API-made syncs under the Kafka bus (issue 11, item 3), on Apache Kafka and real MariaDB:
//! two `fleetsync coordinator`s (each with its own API) and one `fleetsync agent`, none of
//! them with a sync in its file.
//!
//! * a sync created over coordinator A's API starts flowing (the agent starts publishing its
//!   source, a coordinator applies) without restarting anything; coordinator B sees it within
//!   [`STALE_BOUND`] (it follows the definitions topic);
//! * an update narrowing its filter takes effect (a row of the table left out stays away);
//! * the agent and coordinator A are SIGKILLed mid-stream while a writer runs (B, standing by,
//!   may take over), then restarted: the target equals the source row by row, a keyless table
//!   included (a change applied twice or lost would show);
//! * two conflicting updates sent at the same moment to A and B: never both refused, when they
//!   race exactly one wins and the other gets 409 `conflict`, and both coordinators then show
//!   the same definitions (the winner's);
//! * deleted over A: gone from B, and the agent stops publishing the source.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use fleetsync_tests::api::ApiClient;
use fleetsync_tests::{wait_synced_procs, wait_until, ConfigBuilder, Fleetsync, KafkaCluster};
use serde_json::{json, Value};

use super::defs::{call, expect};
use super::{create_token, wait_api};
use crate::kafka_rig::{AppWorkload, Writer, CATCH_UP_TIMEOUT, DB};
use crate::support::{dead_port, Pair, SYNC_TIMEOUT};

/// How stale a coordinator's view may be after another one's change (README: the reader polls
/// every 200 ms; the rest is slack for a loaded 2-core machine).
const STALE_BOUND: Duration = Duration::from_secs(3);
/// Rounds of concurrent updates tried until two of them race.
const RACE_ROUNDS: usize = 6;

struct Coordinator {
    fs: Fleetsync,
    api: ApiClient,
    token: String,
}

fn config_text(pair: &Pair, kafka: &KafkaCluster, state: &Path, api_port: Option<u16>) -> String {
    let mut b = ConfigBuilder::new(state)
        .server("src", &pair.src.url_root())
        .server("dst", &pair.dst.url_root())
        .kafka_bus(&kafka.bootstrap(), 1);
    if let Some(port) = api_port {
        b = b.raw(&format!("\n[api]\nlisten = \"127.0.0.1:{port}\"\n"));
    }
    b.build()
}

async fn export(c: &Coordinator) -> Result<String> {
    let r = c
        .api
        .request("GET", "/api/v1/config/export", Some(&c.token), "")
        .await?;
    ensure!(r.status == 200, "export: {} {}", r.status, r.body);
    Ok(r.body)
}

/// Waits until both coordinators export the same definitions containing `needle`.
async fn same_view(a: &Coordinator, b: &Coordinator, needle: &str) -> Result<Duration> {
    let start = Instant::now();
    wait_until(
        STALE_BOUND,
        "both coordinators showing the same definitions",
        || async {
            let (x, y) = (export(a).await?, export(b).await?);
            ensure!(x == y, "A:\n{x}\nB:\n{y}");
            ensure!(x.contains(needle), "no {needle:?} in\n{x}");
            Ok(())
        },
    )
    .await?;
    Ok(start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_kafka_definitions_live() -> Result<()> {
    let (pair, kafka) = tokio::join!(Pair::start(), KafkaCluster::single());
    let (pair, kafka) = (pair?, kafka?);
    let mut work = AppWorkload::new(31);
    work.create(&pair.src).await?;
    pair.src
        .exec("CREATE DATABASE other; CREATE TABLE other.t (id INT PRIMARY KEY, v INT); INSERT INTO other.t VALUES (1, 1), (2, 2)")
        .await?;
    let pool = pair.src.pool();
    work.run(&pool, 300).await?;

    let mut coordinators = Vec::new();
    for name in ["a", "b"] {
        let state = pair.dir.path().join(format!("state-{name}"));
        let dir = pair.dir.path().join(format!("coordinator-{name}"));
        std::fs::create_dir_all(&dir)?;
        let port = dead_port()?;
        let config =
            Fleetsync::write_config(&dir, &config_text(&pair, &kafka, &state, Some(port)))?;
        let token = create_token(&config, &format!("owner-{name}"), "owner", None).await?;
        let fs = Fleetsync::spawn("coordinator", &config, &[])?;
        let api = ApiClient::http(port);
        wait_api(&api, &token).await?;
        coordinators.push(Coordinator { fs, api, token });
    }
    let agent_dir = pair.dir.path().join("agent");
    std::fs::create_dir_all(&agent_dir)?;
    let agent_config = Fleetsync::write_config(
        &agent_dir,
        &config_text(&pair, &kafka, &agent_dir.join("state"), None),
    )?;
    let mut agent = Fleetsync::spawn("agent", &agent_config, &[])?;
    let [mut a, mut b]: [Coordinator; 2] = coordinators
        .try_into()
        .map_err(|_| anyhow::anyhow!("two coordinators"))?;
    let answers = &mut Vec::new();

    // Created over A: B sees it, rows flow (snapshot, then the binlog) without a restart.
    let sync = json!({"name": "k1", "source": "src", "targets": ["dst"],
        "include": ["app\\..*", "other\\..*"]});
    expect(
        &a.api,
        &a.token,
        "POST",
        "/api/v1/syncs",
        &sync,
        200,
        answers,
    )
    .await?;
    let seen = same_view(&a, &b, "name = \"k1\"").await?;
    println!("coordinator B saw A's new sync after {seen:?}");
    let writer = Writer::start(pool.clone(), work);
    wait_until(
        SYNC_TIMEOUT,
        "rows of the API-made sync on the target",
        || async {
            ensure!(pair.dst.count(DB, "keyed").await? > 0, "app.keyed empty");
            ensure!(
                pair.dst.count("other", "t").await? == 2,
                "other.t not copied"
            );
            Ok(())
        },
    )
    .await
    .with_context(|| {
        format!(
            "agent log:\n{}\nA log:\n{}",
            agent.log_tail(40),
            a.fs.log_tail(40)
        )
    })?;

    // Narrowed (over B): `other` is left out.
    let narrow =
        json!({"name": "k1", "source": "src", "targets": ["dst"], "include": ["app\\..*"]});
    expect(
        &b.api,
        &b.token,
        "PUT",
        "/api/v1/syncs/k1",
        &narrow,
        200,
        answers,
    )
    .await?;
    let seen = same_view(&a, &b, "include = [\"app\\\\..*\"]").await?;
    println!("coordinator A saw B's update after {seen:?}");
    // `other` is selected by no sync of src now: rows written to it from here on reach no
    // topic's snapshot, so a sync selecting it (a new one, or k1 widened again) is refused,
    // naming the table, and nothing changes.
    let widen = json!({"name": "k1", "source": "src", "targets": ["dst"],
        "include": ["app\\..*", "other\\..*"]});
    let k2 = json!({"name": "k2", "source": "src", "targets": ["dst"], "include": ["other\\..*"]});
    for (method, path, body) in [
        ("PUT", "/api/v1/syncs/k1", &widen),
        ("POST", "/api/v1/syncs", &k2),
    ] {
        let refused = expect(&a.api, &a.token, method, path, body, 409, answers).await?;
        ensure!(
            refused["type"]
                .as_str()
                .is_some_and(|t| t.ends_with("not-snapshotted"))
                && refused["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("other.t")),
            "{method} {path}: {refused}"
        );
    }
    same_view(&a, &b, "include = [\"app\\\\..*\"]").await?;

    // SIGKILL the agent and A mid-stream; B may take over meanwhile.
    tokio::time::sleep(Duration::from_secs(2)).await;
    agent.kill9()?;
    a.fs.kill9()?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    agent.restart()?;
    a.fs.restart()?;
    wait_api(&a.api, &a.token).await?;
    pair.src.exec("INSERT INTO other.t VALUES (3, 3)").await?;
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Two conflicting updates at once: one wins, the other is told to retry.
    let mut raced = 0;
    for round in 0..RACE_ROUNDS {
        let body = |rows: usize| {
            json!({"name": "k1", "source": "src", "targets": ["dst"], "include": ["app\\..*"],
                "batch_rows": rows})
        };
        let (x, y) = (body(500 + round), body(700 + round));
        let (mut la, mut lb) = (Vec::new(), Vec::new());
        let (ra, rb) = tokio::join!(
            call(&a.api, &a.token, "PUT", "/api/v1/syncs/k1", &x, &mut la),
            call(&b.api, &b.token, "PUT", "/api/v1/syncs/k1", &y, &mut lb)
        );
        let (ra, rb) = (ra?, rb?);
        println!("round {round}: A {} B {}", ra.status, rb.status);
        let needle = match (ra.status, rb.status) {
            (200, 409) => format!("batch_rows = {}", 500 + round),
            (409, 200) => format!("batch_rows = {}", 700 + round),
            // One after the other (no race): the later one is the state, on both.
            (200, 200) => "batch_rows = ".to_string(),
            other => bail!("round {round}: {other:?}: A {} / B {}", ra.body, rb.body),
        };
        for r in [&ra, &rb] {
            if r.status == 409 {
                ensure!(r.body.contains("conflict"), "{}", r.body);
                raced += 1;
            }
        }
        same_view(&a, &b, &needle).await?;
    }
    println!("{raced} of {RACE_ROUNDS} rounds raced");
    ensure!(
        raced > 0,
        "no round of concurrent updates raced: the 409 path was not exercised"
    );

    let changes = writer.finish().await?;
    println!("{changes} row changes by the writer");
    wait_synced_procs(
        &mut [&mut agent, &mut a.fs, &mut b.fs],
        &pair.src,
        &pair.dst,
        &[DB],
        CATCH_UP_TIMEOUT,
    )
    .await?;
    let other = pair
        .dst
        .query_strings("SELECT id FROM other.t ORDER BY id")
        .await?;
    ensure!(
        other == vec![vec![Some("1".to_string())], vec![Some("2".to_string())]],
        "other.t on the target after the filter left it out: {other:?}"
    );
    // Deleted: both coordinators drop it, the agent stops publishing its source.
    expect(
        &a.api,
        &a.token,
        "DELETE",
        "/api/v1/syncs/k1?confirm=true",
        &serde_json::Value::Null,
        200,
        answers,
    )
    .await?;
    wait_until(STALE_BOUND, "k1 gone from B", || async {
        let r = b
            .api
            .request("GET", "/api/v1/syncs/k1", Some(&b.token), "")
            .await?;
        ensure!(r.status == 404, "{} {}", r.status, r.body);
        Ok(())
    })
    .await?;
    wait_until(SYNC_TIMEOUT, "the agent stopping its publisher", || async {
        let log = agent.log_tail(200);
        ensure!(log.contains("stopping the publisher"), "{log}");
        Ok(())
    })
    .await?;
    for c in [&mut a, &mut b] {
        c.fs.stop(Duration::from_secs(30)).await?;
    }
    agent.stop(Duration::from_secs(30)).await?;
    Ok(())
}

/// `fleetsync coordinator` (Kafka bus): the definitions live in the compacted topic
/// `fleetsync.config.definitions`, shared by two coordinators (each sees and builds on the
/// other's changes, and after a restart), none in the local file; its API-made syncs run
/// there (waiting for their agent here: see `api::kdefs` for rows flowing) and `resnapshot`
/// answers 409.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_definitions_under_coordinator() -> Result<()> {
    let (pair, kafka) = tokio::join!(Pair::start(), fleetsync_tests::KafkaCluster::single());
    let (pair, kafka) = (pair?, kafka?);
    pair.src
        .exec("CREATE DATABASE app; CREATE TABLE app.items (id INT PRIMARY KEY)")
        .await?;
    // Two coordinators: own state_dir and API port, the same brokers.
    let mut coordinators = Vec::new();
    for (i, state) in [pair.state_dir(), pair.dir.path().join("state-b")]
        .iter()
        .enumerate()
    {
        let api_port = dead_port()?;
        let text = fleetsync_tests::ConfigBuilder::new(state)
            .server("src", &pair.src.url_root())
            .server("dst", &pair.dst.url_root())
            .kafka_bus(&kafka.bootstrap(), 1)
            .raw(&format!("\n[api]\nlisten = \"127.0.0.1:{api_port}\"\n"))
            .build();
        let dir = pair.dir.path().join(format!("coordinator-{i}"));
        std::fs::create_dir_all(&dir)?;
        let config = Fleetsync::write_config(&dir, &text)?;
        // Tokens are shared through Kafka (one name, one active token fleet-wide): each
        // coordinator's owner token gets its own name.
        let owner = create_token(&config, &format!("coord-owner-{i}"), "owner", None).await?;
        let fs = Fleetsync::spawn("coordinator", &config, &[])?;
        let api = ApiClient::http(api_port);
        if let Err(e) = wait_api(&api, &owner).await {
            bail!("{e:#}\n--- coordinator log ---\n{}", fs.log_tail(80));
        }
        coordinators.push((fs, api, owner, state.clone()));
    }
    let a = &mut Vec::new();
    let port = pair.dst.port();
    let (api_a, owner_a) = (&coordinators[0].1, coordinators[0].2.as_str());
    let (api_b, owner_b) = (&coordinators[1].1, coordinators[1].2.as_str());
    let server =
        json!({"name": "dst2", "url": format!("mysql://root@127.0.0.1:{port}"), "tls": "disabled"});
    expect(api_a, owner_a, "POST", "/api/v1/servers", &server, 200, a).await?;
    // B builds on A's server: it reads the shared store before its change.
    let sync =
        json!({"name": "api1", "source": "src", "targets": ["dst2"], "include": ["app\\..*"]});
    let p = expect(api_b, owner_b, "POST", "/api/v1/syncs", &sync, 200, a).await?;
    ensure!(p["tables"]["matched"] == json!(["app.items"]), "{p}");
    let bad = json!({"name": "bad", "source": "nowhere", "targets": ["dst2"]});
    expect(api_a, owner_a, "POST", "/api/v1/syncs", &bad, 400, a).await?;
    // A sees B's sync after its next change (a schedule of it) and after a restart.
    let sched = json!({"name": "h", "cron": "0 0 1 1 *", "kind": "health", "target": "dst2"});
    expect(api_a, owner_a, "POST", "/api/v1/schedules", &sched, 200, a).await?;
    expect(
        api_a,
        owner_a,
        "DELETE",
        "/api/v1/servers/dst2",
        &Value::Null,
        409,
        a,
    )
    .await?;
    let p = expect(
        api_a,
        owner_a,
        "POST",
        "/api/v1/syncs/api1/resnapshot?confirm=true",
        &Value::Null,
        409,
        a,
    )
    .await?;
    ensure!(
        p["detail"]
            .as_str()
            .is_some_and(|d| d.contains("fleetsync run")),
        "{p}"
    );
    for (fs, api, owner, state) in coordinators.iter_mut() {
        fs.stop(Duration::from_secs(30)).await?;
        fs.restart()?;
        if let Err(e) = wait_api(api, owner).await {
            bail!("{e:#}\n--- coordinator log ---\n{}", fs.log_tail(80));
        }
        let v = expect(
            api,
            owner,
            "GET",
            "/api/v1/syncs/api1",
            &Value::Null,
            200,
            a,
        )
        .await?;
        // The sync runs under the coordinator now (waiting for its source's agent here, or
        // standing by while the other coordinator applies it).
        ensure!(
            v["origin"] == "api" && v["targets"][0]["state"] != "not_running",
            "{v}"
        );
        let s = expect(
            api,
            owner,
            "GET",
            "/api/v1/servers/dst2",
            &Value::Null,
            200,
            a,
        )
        .await?;
        ensure!(s["origin"] == "api", "{s}");
        let l = expect(api, owner, "GET", "/api/v1/schedules", &Value::Null, 200, a).await?;
        ensure!(l == json!([sched]), "{l}");
        ensure!(
            !state.join("api").join("definitions.json").exists(),
            "the Kafka-mode coordinator wrote the local store"
        );
    }
    for (fs, ..) in coordinators.iter_mut() {
        fs.stop(Duration::from_secs(30)).await?;
    }
    Ok(())
}
