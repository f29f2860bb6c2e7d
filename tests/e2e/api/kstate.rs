//! The API's control-plane state on Kafka (issue 16, item 3: no state volume), on Apache
//! Kafka and real MariaDB: two `fleetsync coordinator` replicas of one configuration (each
//! with its own API port and an EMPTY, fresh `state_dir`):
//!
//! * `fleetsync token create` with unreachable brokers fails with one line naming them;
//! * a token made by `fleetsync token create` before either runs works on both; one made
//!   while they run works on both within [`STALE_BOUND`];
//! * an audited call on A (a viewer's refused write) appears in `GET /api/v1/audit` on B;
//! * a token revoked by `fleetsync token revoke` is refused by both within [`STALE_BOUND`];
//! * jobs (`[api] require_approval = ["validation:run"]`): a health job started on A is
//!   listed on B, approved over B by another token (forwarded to A, which runs it), and B
//!   sees it succeed; its files asked of B answer 409 `job-elsewhere`; a second one is
//!   cancelled over B;
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
        .raw(&format!(
            "\n[api]\nlisten = \"127.0.0.1:{port}\"\nrequire_approval = [\"validation:run\"]\n"
        ))
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

/// How long a health job may take on a loaded machine.
const JOB_TIMEOUT: Duration = Duration::from_secs(60);

/// Starts a health job of `src` on `r`, which waits for an approval.
async fn start_awaiting(r: &Replica, token: &str) -> Result<String> {
    let started = r
        .api
        .post("/api/v1/jobs/health", Some(token), r#"{"server": "src"}"#)
        .await?;
    ensure!(
        started.status == 202,
        "start: {} {}",
        started.status,
        started.body
    );
    let j = started.json()?;
    ensure!(j["state"] == "awaiting_approval", "{j}");
    j["id"].as_str().map(str::to_string).context("no job id")
}

async fn job(r: &Replica, token: &str, id: &str) -> Result<Value> {
    let got = r
        .api
        .get(&format!("/api/v1/jobs/{id}"), Some(token))
        .await?;
    ensure!(got.status == 200, "job {id}: {} {}", got.status, got.body);
    got.json()
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
    // Brokers unreachable: `token create` fails with one line naming them, prints no token
    // and writes nothing.
    let dead_dir = pair.dir.path().join("dead");
    std::fs::create_dir_all(&dead_dir)?;
    let dead = ConfigBuilder::new(&dead_dir.join("state"))
        .server("src", &pair.src.url_root())
        .kafka_bus(&format!("127.0.0.1:{}", dead_port()?), 1)
        .build();
    let dead = Fleetsync::write_config(&dead_dir, &dead)?;
    let out = fleetsync_cmd_with(
        &[
            "token",
            "create",
            "--config",
            dead.to_str().context("path")?,
            "--name",
            "x",
            "--role",
            "viewer",
        ],
        &[],
        Duration::from_secs(90),
    )
    .await?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success()
            && out.stdout.is_empty()
            && stderr.contains("cannot read the metadata of the brokers 127.0.0.1:"),
        "token create with unreachable brokers: {:?} {stderr}",
        out.status
    );
    ensure!(!dead_dir.join("state").exists(), "it wrote a state_dir");

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

    // Jobs: started on A by an operator, approved over B by the owner, run on A.
    let op = create_token(&a.config, "op", "operator", None).await?;
    wait_status(&[&a, &b], &op, 200, "the operator token on both").await?;
    let id = start_awaiting(&a, &op).await?;
    wait_until(STALE_BOUND, "A's job listed on B", || async {
        let j = job(&b, &owner, &id).await?;
        ensure!(j["state"] == "awaiting_approval", "{j}");
        Ok(())
    })
    .await?;
    let asked = Instant::now();
    let approved = b
        .api
        .post(&format!("/api/v1/jobs/{id}/approve"), Some(&owner), "")
        .await?;
    ensure!(
        approved.status == 200 && approved.json()?["allowed"] == true,
        "approve over B: {} {}",
        approved.status,
        approved.body
    );
    wait_until(JOB_TIMEOUT, "the approved job done, seen on B", || async {
        let j = job(&b, &owner, &id).await?;
        ensure!(j["state"] == "succeeded", "{j}");
        Ok(())
    })
    .await?;
    println!(
        "a job of A approved over B: succeeded, seen on B, {:?} after the approval",
        asked.elapsed()
    );
    let on_a = job(&a, &owner, &id).await?;
    ensure!(
        on_a["state"] == "succeeded" && on_a["approval"]["approved_by"] == "owner",
        "on A: {on_a}"
    );
    let files = b
        .api
        .get(&format!("/api/v1/jobs/{id}/download"), Some(&owner))
        .await?;
    ensure!(
        files.status == 409 && files.body.contains("job-elsewhere"),
        "files over B: {} {}",
        files.status,
        files.body
    );
    // A second one, cancelled over B.
    let id2 = start_awaiting(&a, &op).await?;
    wait_until(STALE_BOUND, "the second job listed on B", || async {
        job(&b, &owner, &id2).await.map(|_| ())
    })
    .await?;
    let cancel = b
        .api
        .post(&format!("/api/v1/jobs/{id2}/cancel"), Some(&owner), "")
        .await?;
    ensure!(
        cancel.status == 200,
        "cancel over B: {} {}",
        cancel.status,
        cancel.body
    );
    wait_until(STALE_BOUND, "the job cancelled on A", || async {
        let j = job(&a, &owner, &id2).await?;
        ensure!(j["state"] == "cancelled", "{j}");
        Ok(())
    })
    .await?;

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
    ensure!(made.len() == 3, "token_create entries on A: {made:?}");
    // The jobs A ran before losing its disk are still listed (from the jobs topic).
    for j in [&id, &id2] {
        job(&a, &owner, j)
            .await
            .context("a job lost with A's state_dir")?;
    }
    // A token made with B's configuration after the wipe works on both.
    let late = create_token(&b.config, "late", "operator", Some(1)).await?;
    wait_status(&[&a, &b], &late, 200, "a token made after the wipe").await?;
    nothing_on_disk(&a.state)?;
    Ok(())
}
