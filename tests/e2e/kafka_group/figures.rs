//! `kafka_group_throughput_figures` (ignored, a benchmark): the same backlog applied by 1, 2
//! and 3 members of one group; rows/s and CPU per row per member (docs/scaling.md).

use super::*;

/// Row changes written to the source for each member count (each is applied to both targets):
/// 20 to 40 s of catch-up per member count on 2 shared cores, debug build.
/// `FLEETSYNC_BENCH_ROWS` overrides it.
const BENCH_ROWS: u64 = 60_000;
/// Statements' batches sent to the source in one query while the backlog is written.
const BACKLOG_BATCH: usize = 20;
/// The agent has published the backlog when the topic's end stays put this long.
const PUBLISHED_QUIET: Duration = Duration::from_secs(3);
const BENCH_POLL: Duration = Duration::from_millis(100);

fn bench_rows() -> u64 {
    std::env::var("FLEETSYNC_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(BENCH_ROWS)
        .max(1_000)
}

/// CPU seconds the whole machine has spent busy since boot (all cores, `/proc/stat`): what
/// other processes used meanwhile is this minus ours.
fn machine_busy_seconds() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat.lines().next().context("empty /proc/stat")?;
    let ticks: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(str::parse::<f64>)
        .collect::<Result<_, _>>()?;
    // user nice system idle iowait irq softirq steal: all but idle and iowait.
    let busy: f64 = ticks
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| v)
        .sum();
    Ok(busy / 100.0)
}

/// Each database's `hot` counter on `db` (one more per transaction written to that database).
async fn hot_counts(db: &MariaDb) -> Result<Vec<u64>> {
    let sql = (0..SYNCS)
        .map(|i| format!("SELECT {i}, n FROM app{i}.hot WHERE id = 1"))
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let mut out = vec![0; SYNCS];
    for r in db.query_strings(&sql).await? {
        if let (Some(Some(i)), Some(Some(n))) = (r.first(), r.get(1)) {
            let i: usize = i.parse()?;
            *out.get_mut(i).context("hot index")? = n.parse()?;
        }
    }
    Ok(out)
}

/// The targets' `Questions` and `Com_select` status counters, summed (what the members and
/// this test's polling asked them).
async fn target_queries(dsts: &[MariaDb]) -> Result<(u64, u64)> {
    let mut out = (0, 0);
    for dst in dsts {
        for r in dst
            .query_strings(
                "SELECT VARIABLE_NAME, VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME IN ('QUESTIONS', 'COM_SELECT')",
            )
            .await?
        {
            if let (Some(Some(name)), Some(Some(v))) = (r.first(), r.get(1)) {
                let v: u64 = v.parse()?;
                if name.eq_ignore_ascii_case("questions") {
                    out.0 += v;
                } else {
                    out.1 += v;
                }
            }
        }
    }
    Ok(out)
}

fn cpu_sum(pids: &[u32]) -> Result<f64> {
    pids.iter().map(|p| proc_cpu_seconds(*p)).sum()
}

/// Item 6 of issue 16: for 1, 2 and 3 members of one group, a fresh backlog of the same size
/// (published by the agent while no coordinator runs), then that many members started at once;
/// the time until every pair caught up, the fleet's rows/s, and each member's CPU and share.
/// Prints one JSON line per member count (`{"benchmark":"coordinator_group",...}`) and a table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark (about 4 minutes): run with --ignored"]
async fn kafka_group_throughput_figures() -> Result<()> {
    let seed = 16;
    let rows = bench_rows();
    let pairs = SYNCS * TARGETS.len();
    let mut fleet = Fleet::start(seed).await?;
    let mut agent = fleet.agent()?;
    // A first member applies the snapshot, so each round starts from equal targets.
    fleet.add_member()?;
    fleet.wait_all_owned(&[0], Duration::from_secs(120)).await?;
    fleet.wait_synced(&mut agent, &[0]).await?;
    fleet.members[0].stop(STOP_TIMEOUT).await?;
    fleet.members.clear();

    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut works: Vec<(Workload, Workload)> = (0..SYNCS as u64)
        .map(|i| {
            (
                Workload::new(seed * 100 + i),
                Workload::keyless(seed * 100 + 50 + i),
            )
        })
        .collect();
    let target_pids: Vec<u32> = fleet.dsts.iter().map(MariaDb::pid).collect();
    let broker_pids: Vec<u32> = (1..=fleet.kafka.node_count() as i32)
        .map(|n| fleet.kafka.pid(n))
        .collect::<Result<_>>()?;
    let mut table = Vec::new();
    for n in 1..=3usize {
        // The backlog, published by the agent while no member runs.
        let hw0 = fleet.kafka.high_watermark(TOPIC, 0).await?;
        let pool = fleet.src.pool();
        let mut written = 0u64;
        while written < rows {
            let mut sql = String::new();
            for _ in 0..BACKLOG_BATCH {
                written += load_round(&mut works, &mut rng, &mut sql);
            }
            use mysql_async::prelude::Queryable;
            let mut conn = pool.get_conn().await?;
            conn.query_drop(sql).await?;
        }
        let expected = hot_counts(&fleet.src).await?;
        let mut hw = fleet.kafka.high_watermark(TOPIC, 0).await?;
        let mut quiet = Instant::now();
        let publish = Instant::now();
        while hw == hw0 || quiet.elapsed() < PUBLISHED_QUIET {
            agent.ensure_running()?;
            ensure!(
                publish.elapsed() < CATCH_UP,
                "the agent did not publish the backlog in {CATCH_UP:?}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
            let now = fleet.kafka.high_watermark(TOPIC, 0).await?;
            if now != hw {
                hw = now;
                quiet = Instant::now();
            }
        }
        println!(
            "{n} member(s): {written} row changes on the source, {} records published",
            hw - hw0
        );

        // That many members at once; every pair polled until its target's `hot` counters
        // equal the source's (each transaction bumps one, and a pair applies in order).
        let (agent0, targets0, brokers0, busy0) = (
            agent.cpu_seconds()?,
            cpu_sum(&target_pids)?,
            cpu_sum(&broker_pids)?,
            machine_busy_seconds()?,
        );
        let queries0 = target_queries(&fleet.dsts).await?;
        let mut last = fleet.progress("rows_applied").await?;
        let t0 = Instant::now();
        for _ in 0..n {
            fleet.add_member()?;
        }
        let live: Vec<usize> = (0..n).collect();
        // Rows applied by each member: each poll's progress of a pair goes to its owner then.
        let mut rows_by = vec![0u64; n];
        let mut rows_unowned = 0u64;
        let mut pairs_max = vec![0usize; n];
        let mut first_applied: Option<f64> = None;
        let mut caught_up = vec![false; pairs];
        loop {
            agent.ensure_running()?;
            for i in &live {
                fleet.members[*i]
                    .ensure_running()
                    .with_context(|| format!("member {i}"))?;
            }
            let (owners, applied) = (fleet.owners().await?, fleet.progress("rows_applied").await?);
            for (i, max) in pairs_max.iter_mut().enumerate() {
                *max = (*max).max(owners.values().filter(|o| **o == Some(i)).count());
            }
            for (pair, count) in &applied {
                let delta = count.saturating_sub(last.get(pair).copied().unwrap_or(0));
                if delta == 0 {
                    continue;
                }
                first_applied.get_or_insert(t0.elapsed().as_secs_f64());
                match owners.get(pair).copied().flatten() {
                    Some(o) if o < n => rows_by[o] += delta,
                    _ => rows_unowned += delta,
                }
            }
            last = applied;
            for (t, dst) in fleet.dsts.iter().enumerate() {
                let hot = hot_counts(dst).await.unwrap_or_default();
                for (i, want) in expected.iter().enumerate() {
                    if hot.get(i) == Some(want) {
                        caught_up[t * SYNCS + i] = true;
                    }
                }
            }
            if caught_up.iter().all(|c| *c) {
                break;
            }
            ensure!(
                t0.elapsed() < CATCH_UP,
                "{n} member(s): pairs caught up {caught_up:?} after {CATCH_UP:?}\n{}",
                fleet.logs()
            );
            tokio::time::sleep(BENCH_POLL).await;
        }
        let secs = t0.elapsed().as_secs_f64();
        let member_cpu: Vec<f64> = fleet
            .members
            .iter()
            .map(|m| m.cpu_seconds())
            .collect::<Result<_>>()?;
        let targets_cpu = cpu_sum(&target_pids)? - targets0;
        let brokers_cpu = cpu_sum(&broker_pids)? - brokers0;
        let busy = machine_busy_seconds()? - busy0;
        let queries = target_queries(&fleet.dsts).await?;
        let owners = fleet.owners().await?;
        // Applied row changes: each source change once per target.
        let applied_rows = written * TARGETS.len() as u64;
        let counted: u64 = rows_by.iter().sum::<u64>() + rows_unowned;
        let total_cpu: f64 = member_cpu.iter().sum();
        let apply_s = secs - first_applied.unwrap_or(0.0);
        let per_member: Vec<serde_json::Value> = (0..n)
            .map(|i| {
                let rows_i = rows_by[i] as f64;
                serde_json::json!({
                    "member": i,
                    "pairs_at_end": owners.values().filter(|o| **o == Some(i)).count(),
                    "pairs_max": pairs_max[i],
                    "rows_applied": rows_by[i],
                    "cpu_s": member_cpu[i],
                    "cpu_us_per_row": if rows_i > 0.0 { member_cpu[i] / rows_i * 1e6 } else { f64::NAN },
                })
            })
            .collect();
        let result = serde_json::json!({
            "members": n,
            "pairs": pairs,
            "source_row_changes": written,
            "applied_row_changes": applied_rows,
            "catch_up_s": secs,
            "first_applied_s": first_applied,
            "rows_per_s": applied_rows as f64 / secs,
            "apply_s": apply_s,
            "rows_per_s_applying": applied_rows as f64 / apply_s,
            "rows_counted_by_targets": counted,
            "rows_unattributed": rows_unowned,
            "per_member": per_member,
            "members_cpu_s": total_cpu,
            "cpu_us_per_row_total": total_cpu / applied_rows as f64 * 1e6,
            "targets_mariadbd_cpu_s": targets_cpu,
            "targets_questions": queries.0 - queries0.0,
            "targets_com_select": queries.1 - queries0.1,
            "brokers_cpu_s": brokers_cpu,
            "agent_cpu_s": agent.cpu_seconds()? - agent0,
            "machine_busy_cpu_s": busy,
            "other_processes_cpu_s": busy - total_cpu - targets_cpu - brokers_cpu,
            "cores": std::thread::available_parallelism().map(usize::from).unwrap_or(0),
        });
        let text = result.to_string();
        println!(
            "{{\"benchmark\":\"coordinator_group\",{}",
            text.strip_prefix('{').unwrap_or(&text)
        );
        let share = |f: &dyn Fn(&serde_json::Value) -> String| {
            result["per_member"]
                .as_array()
                .map(|a| a.iter().map(f).collect::<Vec<_>>().join(" / "))
                .unwrap_or_default()
        };
        table.push(format!(
            "| {n} | {secs:.1} | {:.1} | {:.0} | {:.0} | {} | {} | {} | {:.0} | {targets_cpu:.1} | {brokers_cpu:.1} | {:.1} |",
            first_applied.unwrap_or(f64::NAN),
            applied_rows as f64 / secs,
            applied_rows as f64 / apply_s,
            share(&|m| format!("{} (max {})", m["pairs_at_end"], m["pairs_max"])),
            share(&|m| format!("{:.1}", m["cpu_s"].as_f64().unwrap_or(f64::NAN))),
            share(&|m| format!("{:.0}", m["cpu_us_per_row"].as_f64().unwrap_or(f64::NAN))),
            total_cpu / applied_rows as f64 * 1e6,
            busy - total_cpu - targets_cpu - brokers_cpu,
        ));

        // Row by row, then the members go (the next backlog is built with none running).
        fleet.wait_synced(&mut agent, &live).await?;
        for i in live {
            fleet.members[i].stop(STOP_TIMEOUT).await?;
        }
        fleet.members.clear();
    }
    println!(
        "\n| members | catch-up s | first row s | rows/s | rows/s after the first row | pairs per member at the end | CPU s per member | CPU µs/row per member | CPU µs/row, all members | targets' mariadbd CPU s | brokers' CPU s | other processes' CPU s |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n{}",
        table.join("\n")
    );
    agent.stop(STOP_TIMEOUT).await?;
    Ok(())
}
