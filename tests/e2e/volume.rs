//! Volume: 100k row changes in multi-row transactions while fleetsync streams.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use fleetsync_tests::{status_json, Fleetsync, Workload};

use crate::support::{Pair, STOP_TIMEOUT, SYNC_TIMEOUT};

/// Row changes made while fleetsync runs.
const CHANGES: u64 = 100_000;
/// Row changes made before it starts (the snapshot).
const SNAPSHOT_CHANGES: u64 = 10_000;
/// Generous: a debug build on 2 cores shares them with both servers.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_k_mixed_changes() -> Result<()> {
    let pair = Pair::start().await?;
    let (src, dst) = (&pair.src, &pair.dst);
    let mut orders = Workload::new(0x100_000);
    let mut events = Workload::keyless(0x100_001);
    src.exec(&format!(
        "CREATE DATABASE app; {}; {};",
        orders.create_table_sql("app", "orders"),
        events.create_table_sql("app", "events")
    ))
    .await?;
    let pool = src.pool();
    orders.run(&pool, "app", "orders", SNAPSHOT_CHANGES).await?;
    events
        .run(&pool, "app", "events", SNAPSHOT_CHANGES / 10)
        .await?;

    let config = pair.config(&["app\\..*"])?;
    let mut fs = Fleetsync::run(&config)?;
    fs.wait_synced(src, dst, "app", SYNC_TIMEOUT)
        .await
        .context("after the snapshot")?;

    // 90% on the keyed table, 10% on the keyless one, interleaved in slices.
    let started = Instant::now();
    let mut done = 0;
    while done < CHANGES {
        done += orders.run(&pool, "app", "orders", 9_000).await?;
        done += events.run(&pool, "app", "events", 1_000).await?;
    }
    let written = started.elapsed();
    fs.wait_synced(src, dst, "app", CATCH_UP_TIMEOUT)
        .await
        .context("after 100k changes")?;
    println!(
        "{done} row changes in {} transactions written in {written:.1?}, equal on the target after {:.1?}",
        orders.transactions + events.transactions,
        started.elapsed()
    );
    println!("status: {}", status_json(&config).await?);
    fs.stop(STOP_TIMEOUT).await?;
    Ok(())
}
