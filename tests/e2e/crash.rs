//! Crash safety: `fleetsync run` SIGKILLed at random points, five times, under a workload.
//!
//! After the last restart and a quiet period every table must be equal row by row: no row
//! lost and none applied twice (the keyless table turns a replayed insert into a visible
//! duplicate, since the comparison of a keyless table counts identical rows).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use fleetsync_tests::{Fleetsync, Workload};
use rand::{Rng, SeedableRng};

use crate::support::{Pair, STOP_TIMEOUT};

const KILLS: usize = 5;
/// Row changes per table and slice; slices are spaced so fleetsync keeps up in a debug build.
const SLICE: u64 = 200;
const SLICE_PAUSE: Duration = Duration::from_millis(100);
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_run_five_times() -> Result<()> {
    let pair = Pair::start().await?;
    let (src, dst) = (&pair.src, &pair.dst);
    let mut keyed = Workload::new(9);
    let mut keyless = Workload::keyless(10);
    src.exec(&format!(
        "CREATE DATABASE app; {}; {};",
        keyed.create_table_sql("app", "keyed"),
        keyless.create_table_sql("app", "keyless")
    ))
    .await?;
    let pool = src.pool();
    keyed.run(&pool, "app", "keyed", 2_000).await?;
    keyless.run(&pool, "app", "keyless", 2_000).await?;

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (pool, stop) = (pool.clone(), stop.clone());
        tokio::spawn(async move {
            let mut total = 0u64;
            while !stop.load(Ordering::Relaxed) {
                total += keyed.run(&pool, "app", "keyed", SLICE).await?;
                total += keyless.run(&pool, "app", "keyless", SLICE).await?;
                tokio::time::sleep(SLICE_PAUSE).await;
            }
            anyhow::Ok(total)
        })
    };

    let config = pair.config(&["app\\..*"])?;
    let mut fs = Fleetsync::run(&config)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    for kill in 1..=KILLS {
        // Random points: the first kills may land in the snapshot, later ones mid-stream.
        let alive = Duration::from_millis(rng.gen_range(300..4_000));
        tokio::time::sleep(alive).await;
        fs.ensure_running()
            .with_context(|| format!("before kill {kill}"))?;
        fs.kill9()?;
        println!("kill -9 #{kill} after {alive:?}");
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..500))).await;
        fs.restart()?;
    }
    // Some more streaming after the last restart, then quiet.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let written = writer.await.context("workload task panicked")??;
    println!("{written} row changes during the kills");

    fs.wait_synced(src, dst, "app", CATCH_UP_TIMEOUT).await?;
    fs.stop(STOP_TIMEOUT).await?;
    Ok(())
}
