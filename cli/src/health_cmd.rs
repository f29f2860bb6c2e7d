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
use fleetsync_agent::health;
use fleetsync_config::Config;
use fleetsync_proto::health::{CheckStatus, FixOutcome, HealthReport};
use tokio_util::sync::CancellationToken;

use crate::service::health::{
    build_target, fix_failed, HealthFixRequest, HealthRequest, EXIT_ERROR,
};
use crate::service::{Quiet, Tracker};

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
            if !args.yes && !args.dry_run {
                return crate::exit::fail(
                    EXIT_ERROR,
                    "--fix with --remote cannot ask: add --yes (or preview with --dry-run)",
                );
            }
            let req = HealthFixRequest {
                server: args.server.clone(),
                plan_only: args.dry_run,
                confirm: args.yes,
            };
            return remote
                .run_job(&req, crate::service::pretty_or(args.json, print_text))
                .await;
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
    let tracker = Tracker::new(std::sync::Arc::new(Quiet));
    let cancel = CancellationToken::new();
    let report = if args.fix {
        let req = HealthFixRequest {
            server: args.server.clone(),
            plan_only: args.dry_run,
            confirm: args.yes,
        };
        crate::service::health::fix(&config, &req, |p| decide(args, p), &tracker, &cancel).await
    } else {
        let req = HealthRequest {
            server: args.server.clone(),
        };
        crate::service::health::run(&config, &req, &tracker, &cancel).await
    }
    .map_err(crate::service::into_anyhow)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_text(&report);
    }
    if fix_failed(&report) {
        return Err(anyhow!(
            "a fix statement failed on server {} (see the report)",
            args.server
        ));
    }
    Ok(crate::service::health::exit_code(&report))
}

/// `--fix` without `--yes`: ask on a terminal (refused elsewhere).
fn decide(args: &HealthArgs, preview: &[FixOutcome]) -> Result<bool> {
    if args.yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        return Err(anyhow!("--fix changes server {}: run it on a terminal to confirm, or add --yes (preview with --dry-run)", args.server));
    }
    let safe: Vec<&FixOutcome> = preview
        .iter()
        .filter(|f| f.note.as_deref() == Some("dry run"))
        .collect();
    eprintln!("fixes to apply on server {}:", args.server);
    for f in &safe {
        eprintln!("  {};", f.sql);
    }
    eprint!("apply {} statement(s)? [y/N] ", safe.len());
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    let yes = matches!(answer.trim(), "y" | "Y" | "yes");
    if !yes {
        eprintln!("nothing applied");
    }
    Ok(yes)
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

/// The latest periodic verdict per server: (status, the checks that warn or fail), read by the
/// API's `health` events ([`latest`]).
static LATEST: std::sync::Mutex<Verdicts> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// Server → (status, the checks that warn or fail).
pub type Verdicts = std::collections::BTreeMap<String, (String, Vec<String>)>;

fn remember(report: &HealthReport) {
    let problems = report
        .checks
        .iter()
        .filter(|c| matches!(c.status, CheckStatus::Warn | CheckStatus::Fail))
        .map(|c| format!("{} ({})", c.name, c.status.as_str()))
        .collect();
    if let Ok(mut latest) = LATEST.lock() {
        latest.insert(
            report.server.clone(),
            (report.status.as_str().to_string(), problems),
        );
    }
}

/// The latest periodic health verdict per server: (status, checks that warn or fail).
pub fn latest() -> Verdicts {
    LATEST.lock().map(|l| l.clone()).unwrap_or_default()
}

/// The health checks of server `name`, recorded in the metrics, logged (a server that
/// cannot be checked is logged too) and kept as its latest verdict.
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
    remember(&report);
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
