//! The API's control-plane state on Kafka (issue 16, item 3: no state volume), on Apache
//! Kafka and real MariaDB: two `fleetsync coordinator` replicas of one configuration (each
//! with its own API port and an EMPTY, fresh `state_dir`):
//!
//! * a token made by `fleetsync token create` before either runs works on both; one made
//!   while they run works on both within [`STALE_BOUND`];
//! * an audited call on A (a viewer's refused write) appears in `GET /api/v1/audit` on B;
//! * a token revoked by `fleetsync token revoke` is refused by both within [`STALE_BOUND`];
//! * neither replica wrote a token or audit file under its `state_dir`;
//! * A SIGKILLed, its `state_dir` wiped, restarted: it still knows every token (the revoked
//!   one refused) and shows the audit entries written before.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use fleetsync_tests::api::ApiClient;
use fleetsync_tests::{fleetsync_cmd_with, wait_until, ConfigBuilder, Fleetsync, KafkaCluster};
use serde_json::Value;

use super::{create_token, wait_api};
use crate::support::{dead_port, Pair};

/// How long a replica may take to see another process's token change or audit entry (README:
/// each replica polls the topics every 200 ms; the rest is slack for a loaded 2-core machine).
const STALE_BOUND: Duration = Duration::from_secs(3);

struct Replica {
    fs: Fleetsync,
    api: ApiClient,
    config: std::path::PathBuf,
    state: std::path::PathBuf,
}

fn config_text(pair: &Pair, kafka: &KafkaCluster, state: &Path, port: u16) -> String {
    ConfigBuilder::new(state)
        .server("src", &pair.src.url_root())
        .server("dst", &pair.dst.url_root())
        .kafka_bus(&kafka.bootstrap(), 1)
        .raw(&format!("\n[api]\nlisten = \"127.0.0.1:{port}\"\n"))
        .build()
}

/// The status `token` gets from `/api/v1/health` on `r`.
async fn status_with(r: &Replica, token: &str) -> Result<u16> {
    Ok(r.api.get("/api/v1/health", Some(token)).await?.status)
}

/// Waits until `token` gets `want` on every replica; returns how long that took.
async fn wait_status(
    replicas: &[&Replica],
    token: &str,
    want: u16,
    what: &str,
) -> Result<Duration> {
    let start = Instant::now();
    wait_until(STALE_BOUND, what, || async {
        for (i, r) in replicas.iter().enumerate() {
            let got = status_with(r, token).await?;
            ensure!(got == want, "replica {i}: {got}, expected {want}");
        }
        Ok(())
    })
    .await?;
    Ok(start.elapsed())
}

async fn audit(r: &Replica, owner: &str, query: &str) -> Result<Vec<Value>> {
    let a = r
        .api
        .get(&format!("/api/v1/audit?{query}"), Some(owner))
        .await?;
    ensure!(a.status == 200, "audit: {} {}", a.status, a.body);
    Ok(a.json()?.as_array().cloned().unwrap_or_default())
}

async fn token_cmd(args: &[&str]) -> Result<()> {
    let out = fleetsync_cmd_with(args, &[], Duration::from_secs(60)).await?;
    ensure!(
        out.status.success(),
        "fleetsync {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// No token or audit file under `state` (the point of keeping them on the brokers).
fn nothing_on_disk(state: &Path) -> Result<()> {
    for f in ["tokens.json", "audit.jsonl"] {
        let p = state.join("api").join(f);
        ensure!(!p.exists(), "{} exists in Kafka mode", p.display());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_kafka_control_plane_state() -> Result<()> {
    let (pair, kafka) = tokio::join!(Pair::start(), KafkaCluster::single());
    let (pair, kafka) = (pair?, kafka?);
    let mut replicas = Vec::new();
    for name in ["a", "b"] {
        let state = pair.dir.path().join(format!("state-{name}"));
        let dir = pair.dir.path().join(format!("coordinator-{name}"));
        std::fs::create_dir_all(&dir)?;
        let port = dead_port()?;
        let config = Fleetsync::write_config(&dir, &config_text(&pair, &kafka, &state, port))?;
        replicas.push((config, state, port));
    }
    // Made before anything runs, with A's configuration (the brokers' topic, not a file).
    let owner = create_token(&replicas[0].0, "owner", "owner", None).await?;
    nothing_on_disk(&replicas[0].1)?;
    let mut running = Vec::new();
    for (config, state, port) in replicas {
        let fs = Fleetsync::spawn("coordinator", &config, &[])?;
        let api = ApiClient::http(port);
        wait_api(&api, &owner)
            .await
            .with_context(|| format!("log:\n{}", fs.log_tail(40)))?;
        running.push(Replica {
            fs,
            api,
            config,
            state,
        });
    }
    let [mut a, b]: [Replica; 2] = running
        .try_into()
        .map_err(|_| anyhow::anyhow!("two replicas"))?;

    // Made while both run, with B's configuration: works on both.
    let viewer = create_token(&b.config, "viewer", "viewer", None).await?;
    let took = wait_status(&[&a, &b], &viewer, 200, "the new token accepted by both").await?;
    println!("a token made with B's configuration worked on both after {took:?}");

    // A viewer's write on A is refused and audited; B's audit log shows it.
    let denied = a
        .api
        .post("/api/v1/syncs/nosuch/pause", Some(&viewer), "")
        .await?;
    ensure!(
        denied.status == 403,
        "viewer pause: {} {}",
        denied.status,
        denied.body
    );
    let start = Instant::now();
    wait_until(STALE_BOUND, "A's audit entry on B", || async {
        let seen = audit(&b, &owner, "token=viewer&outcome=denied").await?;
        ensure!(
            seen.iter()
                .any(|e| e["resource"] == "/api/v1/syncs/nosuch/pause"),
            "{seen:?}"
        );
        Ok(())
    })
    .await?;
    println!("A's audit entry was read on B after {:?}", start.elapsed());

    // Revoked with A's configuration: refused by both.
    let a_config = a.config.to_str().context("config path")?.to_string();
    token_cmd(&["token", "revoke", "--config", &a_config, "--name", "viewer"]).await?;
    let took = wait_status(&[&a, &b], &viewer, 401, "the revoked token refused by both").await?;
    println!("a revoked token was refused by both after {took:?}");
    let revokes = audit(&b, &owner, "action=token_revoke").await?;
    ensure!(
        revokes.iter().any(|e| e["parameters"]["name"] == "viewer"),
        "no token_revoke entry on B: {revokes:?}"
    );
    for r in [&a, &b] {
        nothing_on_disk(&r.state)?;
    }

    // A loses its disk: SIGKILL, wipe state_dir, restart. Everything is still there.
    a.fs.kill9()?;
    std::fs::remove_dir_all(&a.state).context("wiping A's state_dir")?;
    a.fs.restart()?;
    wait_api(&a.api, &owner)
        .await
        .with_context(|| format!("A after the wipe:\n{}", a.fs.log_tail(40)))?;
    ensure!(
        status_with(&a, &viewer).await? == 401,
        "the revoked token works on A after its wipe"
    );
    let seen = audit(&a, &owner, "token=viewer&outcome=denied").await?;
    ensure!(
        seen.iter()
            .any(|e| e["resource"] == "/api/v1/syncs/nosuch/pause"),
        "A lost the audit entry with its state_dir: {seen:?}"
    );
    let made = audit(&a, &owner, "action=token_create").await?;
    ensure!(made.len() == 2, "token_create entries on A: {made:?}");
    // A token made with B's configuration after the wipe works on both.
    let late = create_token(&b.config, "late", "operator", Some(1)).await?;
    wait_status(&[&a, &b], &late, 200, "a token made after the wipe").await?;
    nothing_on_disk(&a.state)?;
    Ok(())
}
