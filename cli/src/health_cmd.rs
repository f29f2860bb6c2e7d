//! `fleetsync health`: the health checks of one server, on demand, and the periodic health
//! task of `fleetsync run` / `fleetsync agent` (`[health] interval_secs`).
//!
//! Exit codes of `fleetsync health` (the Nagios convention): 0 healthy, 1 degraded,
//! 2 critical (an unreachable server is a failed `connection` check, hence 2), 3 when the
//! command itself could not do its job (unreadable config, unknown server, `--fix` refused or
//! a fix statement failed). clap's own usage errors exit 2 before anything runs.
//!
//! `--fix` applies only the fixes marked safe (today: indexes for foreign keys, added
//! online), after printing them and asking, unless `--yes`; `--fix --dry-run` prints them
//! and changes nothing. Fixes marked unsafe are listed for review and never run.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Result};
use fleetsync_agent::health::{self, HealthTarget, TargetOf};
use fleetsync_agent::source;
use fleetsync_config::{Config, TableFilter};
use fleetsync_proto::health::{CheckStatus, HealthReport, Overall};
use tokio_util::sync::CancellationToken;

use crate::opts::{opts_by_name, server_opts};

/// How long reading a sync source's position (for the target's lag) may take.
const SOURCE_POSITION_TIMEOUT: Duration = Duration::from_secs(5);
/// Exit code when the command could not do its job.
const EXIT_ERROR: u8 = 3;

#[derive(clap::Args)]
pub struct HealthArgs {
    #[arg(long, env = "FLEETSYNC_CONFIG")]
    pub config: PathBuf,
    /// The server to check (`[[servers]] name`).
    #[arg(long)]
    pub server: String,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Apply the safe fixes (asks first unless --yes).
    #[arg(long)]
    pub fix: bool,
    /// With --fix: print the fix SQL and change nothing.
    #[arg(long, requires = "fix")]
    pub dry_run: bool,
    /// Do not ask for confirmation before applying fixes.
    #[arg(long)]
    pub yes: bool,
}

pub use crate::exit::Exit;

pub async fn run(args: HealthArgs) -> Result<()> {
    match check(&args).await {
        Ok(Overall::Healthy) => Ok(()),
        Ok(Overall::Degraded) => Err(Exit(1).into()),
        Ok(Overall::Critical) => Err(Exit(2).into()),
        Err(e) => {
            eprintln!("error: {}", crate::exit::one_line(e.as_ref()));
            Err(Exit(EXIT_ERROR).into())
        }
    }
}

async fn check(args: &HealthArgs) -> Result<Overall> {
    let config = crate::opts::load_config(&args.config).await?;
    let target = build_target(&config, &args.server).await?;
    let mut report = health::run_checks(&target, &config.health).await;
    if args.fix {
        report = fix(args, &target, &config, report).await?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_text(&report);
    }
    let failed_fix = report
        .fixes
        .iter()
        .any(|f| f.note.as_deref().is_some_and(|n| n.starts_with("failed")));
    if failed_fix {
        return Err(anyhow!(
            "a fix statement failed on server {} (see the report)",
            args.server
        ));
    }
    Ok(report.status)
}

/// `--fix`: preview (dry run), ask, apply the safe fixes, then check again.
async fn fix(
    args: &HealthArgs,
    target: &HealthTarget,
    config: &Config,
    report: HealthReport,
) -> Result<HealthReport> {
    let preview = health::apply_fixes(target, &report, false)
        .await
        .map_err(|e| anyhow!(e))?;
    let safe = preview
        .iter()
        .filter(|f| f.note.as_deref() == Some("dry run"))
        .count();
    if args.dry_run || safe == 0 {
        return Ok(HealthReport {
            fixes: preview,
            ..report
        });
    }
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            return Err(anyhow!("--fix changes server {}: run it on a terminal to confirm, or add --yes (preview with --dry-run)", args.server));
        }
        eprintln!("fixes to apply on server {}:", args.server);
        for f in preview
            .iter()
            .filter(|f| f.note.as_deref() == Some("dry run"))
        {
            eprintln!("  {};", f.sql);
        }
        eprint!("apply {safe} statement(s)? [y/N] ");
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            eprintln!("nothing applied");
            return Ok(HealthReport {
                fixes: preview,
                ..report
            });
        }
    }
    let outcomes = health::apply_fixes(target, &report, true)
        .await
        .map_err(|e| anyhow!(e))?;
    let after = health::run_checks(target, &config.health).await;
    Ok(HealthReport {
        fixes: outcomes,
        ..after
    })
}

/// The server and its roles in the configured syncs; reads each source's binlog end for the
/// lag of the syncs that target this server (unreadable sources leave the lag unknown).
pub async fn build_target(config: &Config, name: &str) -> Result<HealthTarget> {
    let server = config
        .server(name)
        .ok_or_else(|| anyhow!("no server named {name:?} in [[servers]]"))?;
    let mut source_filters = Vec::new();
    let mut target_filters = Vec::new();
    let mut target_of = Vec::new();
    for sync in &config.syncs {
        if sync.source == name {
            source_filters.push(sync.filter()?);
        }
        if sync.targets.iter().any(|t| t == name) {
            target_filters.push(sync.filter()?);
            target_of.push(TargetOf {
                sync: sync.name.clone(),
                source: sync.source.clone(),
                source_position: source_position(config, &sync.source).await,
            });
        }
    }
    let any = |f: Vec<TableFilter>| (!f.is_empty()).then(|| TableFilter::any_of(f));
    Ok(HealthTarget {
        name: name.to_string(),
        opts: server_opts(server)?,
        source_filter: any(source_filters),
        target_filter: any(target_filters),
        target_of,
        backup_dir: config.backup.dir.clone(),
    })
}

async fn source_position(config: &Config, source: &str) -> Option<fleetsync_proto::Position> {
    let opts = opts_by_name(config, source).ok()?;
    let read = async {
        let mut conn = mysql_async::Conn::new(opts).await.ok()?;
        let pos = source::current_position(&mut conn, source).await.ok();
        let _ = conn.disconnect().await;
        pos
    };
    tokio::time::timeout(SOURCE_POSITION_TIMEOUT, read)
        .await
        .ok()
        .flatten()
}

fn label(s: CheckStatus) -> &'static str {
    match s {
        CheckStatus::Pass => "PASS",
        CheckStatus::Warn => "WARN",
        CheckStatus::Fail => "FAIL",
        CheckStatus::Skipped => "SKIP",
    }
}

fn print_text(report: &HealthReport) {
    println!(
        "server {}: {} ({} checks in {:.1} s, {})",
        report.server,
        report.status.as_str(),
        report.checks.len(),
        report.duration_ms as f64 / 1000.0,
        report.checked_at
    );
    for c in &report.checks {
        println!("  {}  {:<18} {}", label(c.status), c.name, c.summary);
        for s in &c.suggestions {
            println!("        - {s}");
        }
        if let Some(f) = &c.fix {
            let kind = if f.safe {
                "fix (safe, applied by --fix)"
            } else {
                "fix (review, never applied automatically)"
            };
            for sql in &f.sql {
                println!("        {kind}: {sql};");
            }
        }
    }
    if !report.fixes.is_empty() {
        println!("fixes:");
        for f in &report.fixes {
            let what = if f.applied {
                "applied".to_string()
            } else {
                f.note.clone().unwrap_or_default()
            };
            println!("  [{what}] {};", f.sql);
        }
    }
    println!("overall: {}", report.status.as_str());
}

/// Starts the periodic health task when `[health] interval_secs` is set: every interval,
/// checks each of `servers` in turn, exports `fleetsync_health_check_status{server,check}`
/// and logs the outcome. Stops when `cancel` fires.
pub fn spawn_periodic(config: &Config, servers: Vec<String>, cancel: CancellationToken) {
    let Some(secs) = config.health.interval_secs else {
        return;
    };
    health::describe_metrics();
    let config = config.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(secs));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            for name in &servers {
                let report = match build_target(&config, name).await {
                    Ok(t) => tokio::select! {
                        biased;
                        _ = cancel.cancelled() => return,
                        r = health::run_checks(&t, &config.health) => r,
                    },
                    Err(e) => {
                        tracing::warn!(server = %name, error = %crate::exit::one_line(e.as_ref()), "health: cannot check server");
                        continue;
                    }
                };
                health::record_metrics(&report);
                log_report(&report);
            }
        }
    });
}

fn log_report(report: &HealthReport) {
    let bad: Vec<String> = report
        .checks
        .iter()
        .filter(|c| matches!(c.status, CheckStatus::Warn | CheckStatus::Fail))
        .map(|c| format!("{} ({}): {}", c.name, c.status.as_str(), c.summary))
        .collect();
    if bad.is_empty() {
        tracing::info!(server = %report.server, status = report.status.as_str(), ms = report.duration_ms, "health checks done");
    } else {
        tracing::warn!(server = %report.server, status = report.status.as_str(), problems = %bad.join(" | "), "health checks found problems");
    }
}
