//! A retry loop is not a state (issue 9, item 3): a pipeline that keeps failing with the same
//! non-transient error becomes `failed` within bounded time, with the reason in `status`,
//! `/health` and `fleetsync_sync_failed`, and recovers once the cause is fixed; a transient
//! fault (the target server restarted) is retried without ever being reported as `failed`.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use fleetsync_tests::{wait_until, Fleetsync};

use crate::support::{dead_port, http_get, status_target, Pair, STOP_TIMEOUT, SYNC_TIMEOUT};

/// How long the target stays down: several transient retries (1 s, 2 s, 4 s backoff).
const OUTAGE: Duration = Duration::from_secs(10);
/// Bound for `failed` after the first error: FAIL_AFTER (5) attempts with 1+2+4+8 s between
/// them is ~15 s; the rest is slack for a loaded machine.
const FAIL_BOUND: Duration = Duration::from_secs(60);
/// Bound for recovery after the fix: a failed pipeline retries every 30 s.
const RECOVER_BOUND: Duration = Duration::from_secs(75);
/// Error kinds the supervisor may log while the target is down (see cli/src/failure.rs).
const TRANSIENT_KINDS: &[&str] = &[
    "apply:transient",
    "source:connection",
    "source:publisher_closed",
];

const SETUP: &str = "CREATE DATABASE app; \
    CREATE TABLE app.items (id INT PRIMARY KEY, v VARCHAR(20)) ENGINE=InnoDB; \
    INSERT INTO app.items VALUES (1, 'one'), (2, 'two')";

async fn health(port: u16) -> Result<(u16, String)> {
    http_get(port, "/health").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_column_error_fails_and_target_restart_does_not() -> Result<()> {
    let mut pair = Pair::start().await?;
    pair.src.exec(SETUP).await?;
    let port = dead_port()?;
    let config = pair.config_listening(&["app\\..*"], port)?;
    let mut fs = Fleetsync::run(&config)?;
    fs.wait_synced(&pair.src, &pair.dst, "app", SYNC_TIMEOUT)
        .await?;

    // 1. Transient: the target goes away and comes back. Retried, never `failed`.
    pair.dst.stop(STOP_TIMEOUT).await?;
    pair.src
        .exec("INSERT INTO app.items VALUES (10, 'ten')")
        .await?;
    let outage_end = Instant::now() + OUTAGE;
    while Instant::now() < outage_end {
        fs.ensure_running()?;
        let (_, body) = health(port).await?;
        ensure!(
            !body.contains("\"failed\""),
            "failed during a target restart: {body}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    pair.dst.start_again().await?;
    fs.wait_synced(&pair.src, &pair.dst, "app", SYNC_TIMEOUT)
        .await?;
    wait_until(SYNC_TIMEOUT, "/health 200 after the restart", || async {
        let (code, body) = health(port).await?;
        ensure!(code == 200, "{code} {body}");
        Ok(())
    })
    .await?;
    let log = std::fs::read_to_string(fs.log_path())?;
    let retries: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("pipeline failed") || l.contains("pipeline still failed"))
        .collect();
    ensure!(
        !retries.is_empty(),
        "no retry logged while the target was down:\n{log}"
    );
    for line in &retries {
        ensure!(
            line.contains("retrying") && TRANSIENT_KINDS.iter().any(|k| line.contains(k)),
            "not classified as a transient retry: {line}"
        );
    }
    println!("{} transient retries during the outage", retries.len());

    // 2. Not transient: the target column was renamed, every insert fails with 1054.
    pair.dst
        .exec("ALTER TABLE app.items CHANGE v v_renamed VARCHAR(20)")
        .await?;
    pair.src
        .exec("INSERT INTO app.items VALUES (20, 'twenty')")
        .await?;
    let started = Instant::now();
    wait_until(FAIL_BOUND, "the pipeline to be failed", || async {
        let t = status_target(&config).await?;
        ensure!(t["state"] == "failed", "{t}");
        let error = t["error"].as_str().unwrap_or("");
        ensure!(error.contains("Unknown column"), "reason: {error}");
        Ok(())
    })
    .await
    .with_context(|| format!("log:\n{}", fs.log_tail(30)))?;
    println!("failed after {:?}", started.elapsed());
    fs.ensure_running()?;
    let (code, body) = health(port).await?;
    ensure!(
        code == 503 && body.contains("\"failed\"") && body.contains("Unknown column"),
        "/health: {code} {body}"
    );
    let (_, metrics) = http_get(port, "/metrics").await?;
    ensure!(
        metrics.contains("fleetsync_sync_failed{sync=\"s1\",target=\"dst\"} 1"),
        "fleetsync_sync_failed:\n{metrics}"
    );

    // 3. The fix is picked up by the retries; progress clears `failed`.
    pair.dst
        .exec("ALTER TABLE app.items CHANGE v_renamed v VARCHAR(20)")
        .await?;
    fs.wait_synced(&pair.src, &pair.dst, "app", RECOVER_BOUND)
        .await?;
    wait_until(SYNC_TIMEOUT, "/health 200 after the fix", || async {
        let (code, body) = health(port).await?;
        ensure!(code == 200, "{code} {body}");
        Ok(())
    })
    .await?;
    let (_, metrics) = http_get(port, "/metrics").await?;
    ensure!(
        metrics.contains("fleetsync_sync_failed{sync=\"s1\",target=\"dst\"} 0"),
        "fleetsync_sync_failed not cleared:\n{metrics}"
    );
    wait_until(SYNC_TIMEOUT, "status caught up after the fix", || async {
        let t = status_target(&config).await?;
        ensure!(t["state"] == "caught up", "{t}");
        Ok(())
    })
    .await?;
    fs.stop(STOP_TIMEOUT).await?;
    Ok(())
}
