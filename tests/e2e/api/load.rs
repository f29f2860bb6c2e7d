//! The API under load while a sync catches up: a benchmark (`#[ignore]`), not a test.

use std::time::Duration;

use anyhow::{ensure, Result};
use fleetsync_tests::api::ApiClient;
use fleetsync_tests::Fleetsync;

use crate::support::{dead_port, Pair, SYNC_TIMEOUT};

use super::*;

/// Concurrent API clients during a catch-up.
const LOAD_CLIENTS: usize = 50;
/// Each client's pause between two calls (a dashboard refreshing ten times a second): 50
/// clients make up to 500 calls a second. The tight loop (no pause) is measured too.
const LOAD_THINK: Duration = Duration::from_millis(100);
/// Row changes of each catch-up backlog (`FLEETSYNC_LOAD_BACKLOG` overrides it: a release
/// build catches 60,000 up in about 2 s, too short to compare runs on a noisy machine).
const LOAD_BACKLOG: u64 = 60_000;

fn backlog() -> u64 {
    std::env::var("FLEETSYNC_LOAD_BACKLOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(LOAD_BACKLOG)
}
/// Generous: a debug build on 2 cores shares them with both servers and the clients.
const LOAD_CATCH_UP: Duration = Duration::from_secs(300);
/// Rounds of each kind (alone, polling clients, tight-loop clients).
const LOAD_ROUNDS: usize = 2;
/// What fails the test: far beyond the goals (p99 50 ms, 10 % slower), which a debug
/// build on a shared 2-core machine cannot show reliably, but a stall (a lock held across a
/// request, a disk write in the read path) or a starved sync would pass these.
const LOAD_MAX_P99: Duration = Duration::from_secs(1);
const LOAD_MAX_SLOWDOWN: f64 = 4.0;

/// Writes a backlog while fleetsync is stopped, starts it (and `clients` API clients polling
/// `GET /api/v1/syncs`), and returns the time to catch up, the CPU seconds fleetsync used
/// for it (start included), and the clients' latencies.
async fn timed_catch_up(
    pair: &Pair,
    fs: &mut Fleetsync,
    orders: &mut fleetsync_tests::Workload,
    api: &ApiClient,
    token: &str,
    clients: usize,
    think: Duration,
) -> Result<(Duration, f64, Vec<Duration>)> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    fs.stop(Duration::from_secs(30)).await?;
    orders
        .run(&pair.src.pool(), "app", "orders", backlog())
        .await?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (api, token, stop) = (api.clone(), token.to_string(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = std::time::Instant::now();
                match api.get("/api/v1/syncs", Some(&token)).await {
                    Ok(r) if r.status == 200 => {
                        latencies.push(t.elapsed());
                        tokio::time::sleep(think).await;
                    }
                    // Not listening yet (the restart): try again shortly.
                    _ => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
            latencies
        }));
    }
    let started = std::time::Instant::now();
    fs.restart()?;
    fs.wait_synced(&pair.src, &pair.dst, "app", LOAD_CATCH_UP)
        .await?;
    let took = started.elapsed();
    let cpu = fs.cpu_seconds()?;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await?);
    }
    Ok((took, cpu, latencies))
}

/// The API benchmark, scaled to this machine: 50 concurrent clients polling
/// `GET /api/v1/syncs` (every 100 ms, then in a tight loop) while the sync catches up a
/// backlog, against the same backlog without them. Prints the figures and the goals;
/// fails only far beyond them ([`LOAD_MAX_P99`], [`LOAD_MAX_SLOWDOWN`]).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark (about a minute, figures depend on the machine's load): run with --ignored"]
async fn api_latency_under_catch_up() -> Result<()> {
    let pair = Pair::start().await?;
    let mut orders = fleetsync_tests::Workload::new(0xA91);
    pair.src
        .exec(&format!(
            "CREATE DATABASE app; {};",
            orders.create_table_sql("app", "orders")
        ))
        .await?;
    let api_port = dead_port()?;
    let base = pair.config_listening(&["app\\..*"], dead_port()?)?;
    let text =
        std::fs::read_to_string(&base)? + &format!("\n[api]\nlisten = \"127.0.0.1:{api_port}\"\n");
    let config = Fleetsync::write_config(pair.dir.path(), &text)?;
    let viewer = create_token(&config, "bench", "viewer", None).await?;
    let mut fs = Fleetsync::run(&config)?;
    fs.wait_synced(&pair.src, &pair.dst, "app", SYNC_TIMEOUT)
        .await?;
    let api = ApiClient::http(api_port);
    let zero = Duration::ZERO;
    // Alternating rounds; the fastest of each kind is the least disturbed by whatever else
    // runs on the machine, and latencies are pooled over a kind's rounds.
    let kinds = [
        ("alone", 0, zero),
        ("polling every 100 ms", LOAD_CLIENTS, LOAD_THINK),
        ("in a tight loop", LOAD_CLIENTS, zero),
    ];
    let mut best = [Duration::MAX; 3];
    let mut cpu = [f64::MAX; 3];
    let mut pooled: [Vec<Duration>; 3] = Default::default();
    for _round in 0..LOAD_ROUNDS {
        for (k, (_, clients, think)) in kinds.iter().enumerate() {
            let (took, used, latencies) =
                timed_catch_up(&pair, &mut fs, &mut orders, &api, &viewer, *clients, *think)
                    .await?;
            best[k] = best[k].min(took);
            cpu[k] = cpu[k].min(used);
            pooled[k].extend(latencies);
        }
    }
    fs.stop(Duration::from_secs(30)).await?;
    let mut p99s = [Duration::ZERO; 3];
    for (k, (label, clients, _)) in kinds.iter().enumerate() {
        let slowdown = best[k].as_secs_f64() / best[0].as_secs_f64() - 1.0;
        if *clients == 0 {
            println!(
                "{label}: {} row changes caught up in {:.1?}, fleetsync {:.2} CPU-s (best of {LOAD_ROUNDS})",
                backlog(),
                best[k],
                cpu[k]
            );
            continue;
        }
        let latencies = &mut pooled[k];
        latencies.sort();
        ensure!(
            latencies.len() >= 100,
            "{label}: only {} answers",
            latencies.len()
        );
        let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
        p99s[k] = pct(0.99);
        println!(
            "{clients} clients {label}: caught up in {:.1?} ({:+.0} %), fleetsync {:.2} CPU-s; {} answers of GET /api/v1/syncs: p50 {:.1?}, p99 {:.1?}, max {:.1?}",
            best[k],
            slowdown * 100.0,
            cpu[k],
            latencies.len(),
            pct(0.5),
            pct(0.99),
            pct(1.0)
        );
    }
    let slowdown = best[1].as_secs_f64() / best[0].as_secs_f64() - 1.0;
    println!(
        "goal (issue 11): slowdown < 10 % and p99 < 50 ms; here {:+.0} % and {:.1?}",
        slowdown * 100.0,
        p99s[1]
    );
    ensure!(
        p99s[1] < LOAD_MAX_P99,
        "p99 {:?} is over {LOAD_MAX_P99:?}",
        p99s[1]
    );
    ensure!(
        slowdown < LOAD_MAX_SLOWDOWN,
        "the catch-up slowed by {:.0} %",
        slowdown * 100.0
    );
    Ok(())
}
