//! `fleetsync health`: the health checks of one server, on demand (the checks run in
//! [`crate::service::health`], shared with the API's `health` job; `--remote` runs that job on
//! a coordinator), and the periodic health task of `fleetsync run` / `fleetsync agent`
//! (`[health] interval_secs`).
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
use fleetsync_agent::health::{self, HealthTarget};
use fleetsync_config::Config;
use fleetsync_proto::health::{CheckStatus, HealthReport};
use tokio_util::sync::CancellationToken;

use crate::service::health::{build_target, HealthRequest, EXIT_ERROR};
use crate::service::{Quiet, ServiceError, Tracker};

#[derive(clap::Args)]
pub struct HealthArgs {
    #[arg(long, env = "FLEETSYNC_CONFIG")]
    pub config: Option<PathBuf>,
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

pub async fn run(args: HealthArgs, remote: Option<crate::remote::Remote>) -> Result<()> {
    if let Some(remote) = remote {
        if args.fix {
            return crate::exit::fail(EXIT_ERROR, "--fix is not available with --remote");
        }
        let req = HealthRequest {
            server: args.server.clone(),
        };
        return remote
            .run_job(&req, crate::service::pretty_or(args.json, print_text))
            .await;
    }
    match check(&args).await {
        Ok(0) => Ok(()),
        Ok(code) => Err(Exit(code).into()),
        Err(e) => {
            eprintln!("error: {}", crate::exit::one_line(e.as_ref()));
            Err(Exit(EXIT_ERROR).into())
        }
    }
}

async fn check(args: &HealthArgs) -> Result<u8> {
    let config = crate::opts::load_config(crate::opts::need_config(&args.config)?).await?;
    let req = HealthRequest {
        server: args.server.clone(),
    };
    let tracker = Tracker::new(std::sync::Arc::new(Quiet));
    let mut report =
        crate::service::health::run(&config, &req, &tracker, &CancellationToken::new())
            .await
            .map_err(|e| match e {
                ServiceError::Failed(e) => e,
                ServiceError::Cancelled => anyhow!("cancelled"),
            })?;
    if args.fix {
        let target = build_target(&config, &args.server).await?;
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
    Ok(crate::service::health::exit_code(&report))
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

fn label(s: CheckStatus) -> &'static str {
    match s {
        CheckStatus::Pass => "PASS",
        CheckStatus::Warn => "WARN",
        CheckStatus::Fail => "FAIL",
        CheckStatus::Skipped => "SKIP",
    }
}

pub fn print_text(report: &HealthReport) {
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
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => return,
                    _ = check_once(&config, name) => {}
                }
            }
        }
    });
}

/// The health checks of server `name`, recorded in the metrics and logged (a server that
/// cannot be checked is logged too).
pub async fn check_once(config: &Config, name: &str) {
    let report = match build_target(config, name).await {
        Ok(t) => health::run_checks(&t, &config.health).await,
        Err(e) => {
            tracing::warn!(server = %name, error = %crate::exit::one_line(e.as_ref()), "health: cannot check server");
            return;
        }
    };
    health::record_metrics(&report);
    log_report(&report);
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
