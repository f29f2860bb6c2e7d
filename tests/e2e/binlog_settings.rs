//! Server settings flipped while `fleetsync run` streams (issue 9, item 1): a data change the
//! binlog does not fully carry must stop the sync visibly, never be skipped.
//!
//! Each case syncs a table, changes one global setting on the source (`SET GLOBAL` affects
//! sessions opened afterwards), writes from a new connection and checks: the pipeline is
//! `failed` with a reason naming the setting and the binlog position; `/health` is 503;
//! `fleetsync_stream_unusable_events_total{server,reason}` counts it; `fleetsync status` never
//! says `caught up`, neither while the process runs nor after it stopped (the stored position
//! did not move past the event); the change did not reach the target.

use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use fleetsync_tests::{wait_until, Fleetsync, MariaDb};
use mysql_async::prelude::Queryable;

use crate::support::{dead_port, http_get, status_target, Pair, STOP_TIMEOUT, SYNC_TIMEOUT};

/// Time for a running sync to notice an unusable event and report it.
const FAIL_TIMEOUT: Duration = Duration::from_secs(60);

const SETUP: &str = "CREATE DATABASE app; CREATE DATABASE other; \
    CREATE TABLE app.items (id INT PRIMARY KEY, v VARCHAR(20), b BLOB) ENGINE=InnoDB; \
    CREATE TABLE other.t (id INT PRIMARY KEY) ENGINE=InnoDB; \
    INSERT INTO app.items VALUES (1, 'one', 'blob1'), (2, 'two', 'blob2')";

/// A connection opened now (it takes the global binlog settings of this moment).
async fn fresh_conn(db: &MariaDb) -> Result<mysql_async::Conn> {
    let opts = mysql_async::Opts::from_url(&db.url_root())?;
    Ok(mysql_async::Conn::new(opts).await?)
}

/// Starts a synced pair and `fleetsync run` with its listener on a known port.
async fn synced_pair() -> Result<(Pair, Fleetsync, u16, std::path::PathBuf)> {
    let pair = Pair::start().await?;
    pair.src.exec(SETUP).await?;
    let port = dead_port()?;
    let config = pair.config_listening(&["app\\..*"], port)?;
    let mut fs = Fleetsync::run(&config)?;
    fs.wait_synced(&pair.src, &pair.dst, "app", SYNC_TIMEOUT)
        .await?;
    let (code, body) = http_get(port, "/health").await?;
    ensure!(
        code == 200,
        "healthy before the setting changes: {code} {body}"
    );
    Ok((pair, fs, port, config))
}

/// Waits until the pipeline is `failed` naming `setting`, checking on the way that status
/// never says `caught up`; then checks /health, the metric, and status after a stop.
async fn expect_failed(
    pair: &Pair,
    fs: &mut Fleetsync,
    port: u16,
    config: &std::path::Path,
    setting: &str,
) -> Result<()> {
    let binlog = pair.src.binlog_position().await?.0;
    let log = fs.log_path().to_path_buf();
    wait_until(
        FAIL_TIMEOUT,
        &format!("the sync to fail on {setting}"),
        || async {
            let t = status_target(config).await?;
            let state = t["state"].as_str().unwrap_or("");
            ensure!(state != "caught up", "status says caught up: {t}");
            ensure!(state == "failed", "state {state}: {t}");
            let error = t["error"].as_str().unwrap_or("");
            ensure!(
                error.contains(setting) && error.contains(&binlog),
                "the reason names neither {setting} nor the binlog {binlog}: {error}"
            );
            Ok(())
        },
    )
    .await
    .with_context(|| format!("log {}:\n{}", log.display(), fs.log_tail(30)))?;
    fs.ensure_running()?;
    println!(
        "failed as expected: {}",
        status_target(config).await?["error"]
    );
    let (code, body) = http_get(port, "/health").await?;
    ensure!(code == 503, "/health answered {code}: {body}");
    ensure!(
        body.contains("\"failed\"") && body.contains(setting),
        "/health body: {body}"
    );
    let (_, metrics) = http_get(port, "/metrics").await?;
    let counted = metrics.lines().any(|l| {
        l.starts_with("fleetsync_stream_unusable_events_total{")
            && l.contains("server=\"src\"")
            && l.contains(&format!("reason=\"{setting}\""))
            && !l.ends_with(" 0")
    });
    ensure!(
        counted,
        "no unusable-event count for {setting} in:\n{metrics}"
    );
    ensure!(
        metrics.contains("fleetsync_sync_failed{sync=\"s1\",target=\"dst\"} 1"),
        "fleetsync_sync_failed not set:\n{metrics}"
    );
    fs.stop(STOP_TIMEOUT).await?;
    // Without the process, the stored position must still be before the event.
    let t = status_target(config).await?;
    ensure!(t["state"] == "behind", "after the stop: {t}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_format_stops_the_sync() -> Result<()> {
    let (pair, mut fs, port, config) = synced_pair().await?;
    pair.src
        .exec("SET GLOBAL binlog_format = 'STATEMENT'")
        .await?;
    let mut stmt = fresh_conn(&pair.src).await?;
    let format: Option<String> = stmt.query_first("SELECT @@SESSION.binlog_format").await?;
    ensure!(
        format.as_deref() == Some("STATEMENT"),
        "session format {format:?}"
    );
    // A statement on a table the sync does not include stops nothing: a row change logged
    // after it (a ROW session) still arrives.
    stmt.query_drop("INSERT INTO other.t VALUES (1)").await?;
    let mut row = fresh_conn(&pair.src).await?;
    row.query_drop(
        "SET SESSION binlog_format = 'ROW'; INSERT INTO app.items VALUES (3, 'three', NULL)",
    )
    .await?;
    wait_until(
        SYNC_TIMEOUT,
        "the row-format insert after the statement on other.t",
        || async {
            let n = pair.dst.count("app", "items").await.unwrap_or(0);
            ensure!(n == 3, "{n} rows on the target");
            Ok(())
        },
    )
    .await?;
    fs.ensure_running()?;
    // Statement-form changes of an included table: never applied, the sync fails.
    stmt.query_drop("UPDATE app.items SET v = 'changed' WHERE id = 1")
        .await?;
    stmt.query_drop("INSERT INTO app.items VALUES (4, 'four', NULL)")
        .await?;
    expect_failed(&pair, &mut fs, port, &config, "binlog_format").await?;
    let v = pair
        .dst
        .query_value("SELECT v FROM app.items WHERE id = 1")
        .await?;
    if v.as_deref() != Some("one") {
        bail!("the statement-form update reached the target: {v:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minimal_row_image_stops_the_sync() -> Result<()> {
    let (pair, mut fs, port, config) = synced_pair().await?;
    pair.src
        .exec("SET GLOBAL binlog_row_image = 'MINIMAL'")
        .await?;
    let mut conn = fresh_conn(&pair.src).await?;
    conn.query_drop("UPDATE app.items SET v = 'changed' WHERE id = 1")
        .await?;
    expect_failed(&pair, &mut fs, port, &config, "binlog_row_image").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minimal_row_metadata_stops_the_sync() -> Result<()> {
    let (pair, mut fs, port, config) = synced_pair().await?;
    pair.src
        .exec("SET GLOBAL binlog_row_metadata = 'MINIMAL'")
        .await?;
    let mut conn = fresh_conn(&pair.src).await?;
    conn.query_drop("INSERT INTO app.items VALUES (5, 'five', NULL)")
        .await?;
    expect_failed(&pair, &mut fs, port, &config, "binlog_row_metadata").await
}
