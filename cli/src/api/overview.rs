//! The dashboard's Overview feeds: `GET /api/v1/overview/servers` (every server: reachable,
//! role, binlog position, latest health verdict) and `GET /api/v1/alerts` (the conditions of
//! deploy/prometheus/fleetsync-rules.yml, evaluated in this process, the firing ones).
//!
//! A dashboard polls these every few seconds, so nothing here touches a server on every call:
//! * a server is probed (one connection, `SHOW MASTER STATUS`) at most every [`PROBE_EVERY`],
//!   each probe bounded by [`PROBE_TIMEOUT`]; concurrent callers wait for one probe round;
//! * the open conflicts of the targets are read at most every [`CONFLICTS_EVERY`];
//! * lag alerts are read from the in-memory chart history (`/metrics/summary`, a point every
//!   5 s), health alerts from the periodic health verdicts (`[health] interval_secs`).
//!
//! The caches are per process (statics keyed by server name and address), like the health
//! verdicts they sit next to.

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::Json;
use mysql_async::prelude::Queryable;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::problem::DeniedProblems;
use super::ApiState;
use crate::pipeline::PipelineStatus;
use crate::service::conflicts as conflicts_service;

/// A server is probed at most this often (a dashboard polling every 2 s costs one connection
/// per server per 10 s).
pub const PROBE_EVERY: Duration = Duration::from_secs(10);
/// One probe (connect + `SHOW MASTER STATUS`) gives up after this: an unreachable server must
/// not hold the overview for a TCP timeout.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// The targets' open conflicts are read at most this often for the alerts.
pub const CONFLICTS_EVERY: Duration = Duration::from_secs(10);

/// Lag thresholds and durations of `FleetsyncReplicationLagHigh` (the Prometheus rules').
pub const LAG_WARNING_SECONDS: f64 = 30.0;
pub const LAG_CRITICAL_SECONDS: f64 = 300.0;
pub const LAG_FOR: Duration = Duration::from_secs(300);
/// `FleetsyncSyncFailed` fires after the pipeline is failed this long (the rule's `for: 1m`).
pub const FAILED_FOR: Duration = Duration::from_secs(60);
/// `FleetsyncPipelineDown`: retrying this long (the rule's `fleetsync_pipeline_up == 0` for 5m).
pub const RETRYING_FOR: Duration = Duration::from_secs(300);
/// `FleetsyncHealthCheckFailing` / `Warning`: the periodic verdict failing / warning this long.
pub const HEALTH_FAIL_FOR: Duration = Duration::from_secs(600);
pub const HEALTH_WARN_FOR: Duration = Duration::from_secs(3600);

pub(super) fn routes(r: OpenApiRouter<ApiState>) -> OpenApiRouter<ApiState> {
    r.routes(routes!(servers_overview)).routes(routes!(alerts))
}

/// The position a sync has applied on one of its targets.
#[derive(Debug, Clone, Serialize, ToSchema)]
struct AppliedView {
    sync: String,
    target: String,
    /// The source position last applied on the target (null: none yet in this process).
    position: Option<String>,
    /// The pipeline's state (`not_running`: no pipeline for it in this process).
    state: String,
}

/// The latest health verdict of a server and where it comes from.
#[derive(Debug, Clone, Serialize, ToSchema)]
struct HealthSummary {
    /// The overall verdict: `healthy`, `degraded` (a check warns) or `critical` (a check
    /// fails).
    status: String,
    /// The checks that warn or fail, `name (status)`.
    problems: Vec<String>,
    /// `periodic` (the `[health] interval_secs` checks of this process) or `job` (the newest
    /// finished health job of the server).
    source: String,
    /// The health job, when `source` is `job`.
    job_id: Option<String>,
    /// RFC 3339 time of the checks (null for periodic checks: at most `every_seconds` old).
    checked_at: Option<String>,
    /// Seconds since `checked_at`.
    age_seconds: Option<f64>,
    /// The periodic checks' interval.
    every_seconds: Option<u64>,
}

/// One server as the Overview shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
struct ServerOverview {
    name: String,
    /// Whether the last probe connected and read the binlog position.
    reachable: bool,
    /// Why not, in words (null when reachable).
    error: Option<String>,
    /// RFC 3339 time of the last probe (probes are at most every 10 s).
    probed_at: String,
    /// The server's current binlog end, `file:pos` (null: unreachable or no binlog).
    binlog_position: Option<String>,
    /// Its GTID position (`@@gtid_binlog_pos`).
    gtid_position: Option<String>,
    /// The syncs reading from it.
    source_of: Vec<String>,
    /// The syncs writing to it.
    target_of: Vec<String>,
    /// For each sync reading from it: the position applied on each target.
    applied: Vec<AppliedView>,
    /// The latest health verdict (null: never checked).
    health: Option<HealthSummary>,
}

/// The servers' overview.
#[derive(Debug, Serialize, ToSchema)]
struct ServersOverview {
    /// Seconds between two probes of a server.
    probe_every_seconds: u64,
    servers: Vec<ServerOverview>,
}

/// One probe's result.
#[derive(Debug, Clone)]
struct Probe {
    at: Instant,
    probed_at: String,
    error: Option<String>,
    binlog: Option<String>,
    gtid: Option<String>,
}

/// Probes by `name address`, refreshed by whoever finds them stale (one round at a time).
static PROBES: LazyLock<tokio::sync::Mutex<HashMap<String, Probe>>> =
    LazyLock::new(Default::default);

async fn probe(config: &fleetsync_config::Config, name: &str) -> Probe {
    let probed_at = now_rfc3339();
    let attempt = async {
        let opts = crate::opts::opts_by_name(config, name).map_err(|e| e.to_string())?;
        let mut conn = mysql_async::Conn::new(opts)
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let pos = fleetsync_agent::source::current_position(&mut conn, name)
            .await
            .map_err(|e| e.to_string());
        let _ = conn.disconnect().await;
        pos
    };
    let (error, binlog, gtid) = match tokio::time::timeout(PROBE_TIMEOUT, attempt).await {
        Ok(Ok(p)) => (
            None,
            Some(p.binlog.to_string()),
            p.gtid.map(|g| g.to_string()),
        ),
        Ok(Err(e)) => (Some(e), None, None),
        Err(_) => (
            Some(format!(
                "no answer within {} s",
                PROBE_TIMEOUT.as_secs_f64()
            )),
            None,
            None,
        ),
    };
    Probe {
        at: Instant::now(),
        probed_at,
        error,
        binlog,
        gtid,
    }
}

/// The probes of every server of `config`, refreshing those older than [`PROBE_EVERY`].
async fn probes(config: &fleetsync_config::Config) -> HashMap<String, Probe> {
    let mut cache = PROBES.lock().await;
    let key = |s: &fleetsync_config::Server| format!("{} {}", s.name, s.redacted_url());
    let stale: Vec<&fleetsync_config::Server> = config
        .servers
        .iter()
        .filter(|s| {
            cache
                .get(&key(s))
                .is_none_or(|p| p.at.elapsed() >= PROBE_EVERY)
        })
        .collect();
    let fresh = futures_util::future::join_all(stale.iter().map(|s| probe(config, &s.name))).await;
    for (s, p) in stale.iter().zip(fresh) {
        cache.insert(key(s), p);
    }
    config
        .servers
        .iter()
        .filter_map(|s| cache.get(&key(s)).map(|p| (s.name.clone(), p.clone())))
        .collect()
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn age_of(time: &str) -> Option<f64> {
    let t = chrono::DateTime::parse_from_rfc3339(time).ok()?;
    Some((chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_milliseconds() as f64 / 1000.0)
}

/// The newest finished health job of `server`: its report's verdict.
fn health_from_jobs(jobs: &[fleetsync_proto::jobs::Job], server: &str) -> Option<HealthSummary> {
    // `list()` is newest first.
    let (job, report) = jobs.iter().find_map(|j| {
        let report = j.result.as_ref()?;
        (j.kind.as_str() == "health" && report["server"] == server).then_some((j, report))
    })?;
    let problems = report["checks"]
        .as_array()
        .map(|checks| {
            checks
                .iter()
                .filter(|c| c["status"] == "warn" || c["status"] == "fail")
                .map(|c| {
                    format!(
                        "{} ({})",
                        c["name"].as_str().unwrap_or("?"),
                        c["status"].as_str().unwrap_or("?")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let checked_at = report["checked_at"].as_str().map(str::to_string);
    Some(HealthSummary {
        status: report["status"].as_str().unwrap_or("unknown").to_string(),
        problems,
        source: "job".into(),
        job_id: Some(job.id.clone()),
        age_seconds: checked_at.as_deref().and_then(age_of),
        checked_at,
        every_seconds: None,
    })
}

/// Every server: reachable, role, binlog position and applied positions, health verdict.
/// Servers are probed at most every 10 s (a cached answer otherwise), each probe bounded by
/// 3 s; the health verdict is the periodic checks' (`[health] interval_secs`) when they are
/// fresher than the newest health job's, else that job's.
#[utoipa::path(get, path = "/api/v1/overview/servers", operation_id = "servers_overview", tag = "servers",
    security(("bearer" = ["servers:read"])),
    responses((status = 200, body = ServersOverview), DeniedProblems))]
async fn servers_overview(State(s): State<ApiState>) -> Json<ServersOverview> {
    let config = s.live();
    let probed = probes(&config).await;
    let live = super::routes::pipelines(&s);
    let periodic = crate::health_cmd::latest();
    let every = config.health.interval_secs;
    let jobs = s.jobs.list();
    let servers = config
        .servers
        .iter()
        .map(|srv| {
            let name = &srv.name;
            let p = probed.get(name);
            let source_of: Vec<String> = config
                .syncs
                .iter()
                .filter(|y| &y.source == name)
                .map(|y| y.name.clone())
                .collect();
            let target_of = config
                .syncs
                .iter()
                .filter(|y| y.targets.contains(name))
                .map(|y| y.name.clone())
                .collect();
            let applied = config
                .syncs
                .iter()
                .filter(|y| &y.source == name)
                .flat_map(|y| {
                    y.targets.iter().map(|t| {
                        let pl = live.iter().find(|p| p.sync == y.name && &p.target == t);
                        AppliedView {
                            sync: y.name.clone(),
                            target: t.clone(),
                            position: pl.and_then(|p| p.applied_position.clone()),
                            state: pl.map_or("not_running".into(), |p| p.state.clone()),
                        }
                    })
                })
                .collect();
            let from_job = health_from_jobs(&jobs, name);
            let from_periodic = periodic.get(name).map(|(status, problems)| HealthSummary {
                status: status.clone(),
                problems: problems.clone(),
                source: "periodic".into(),
                job_id: None,
                checked_at: None,
                age_seconds: None,
                every_seconds: every,
            });
            // A job newer than one periodic interval beats the periodic verdict.
            let job_is_fresher = from_job.as_ref().is_some_and(|j| {
                j.age_seconds
                    .zip(every)
                    .is_some_and(|(age, e)| age < e as f64)
            });
            let health = match (from_periodic, from_job) {
                (_, Some(job)) if job_is_fresher => Some(job),
                (Some(per), _) => Some(per),
                (None, job) => job,
            };
            ServerOverview {
                name: name.clone(),
                reachable: p.is_some_and(|p| p.error.is_none()),
                error: p.map_or(Some("not probed yet".into()), |p| p.error.clone()),
                probed_at: p.map_or_else(now_rfc3339, |p| p.probed_at.clone()),
                binlog_position: p.and_then(|p| p.binlog.clone()),
                gtid_position: p.and_then(|p| p.gtid.clone()),
                source_of,
                target_of,
                applied,
                health,
            }
        })
        .collect();
    Json(ServersOverview {
        probe_every_seconds: PROBE_EVERY.as_secs(),
        servers,
    })
}

/// An alert that is firing.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Alert {
    /// The rule's name (as in deploy/prometheus/fleetsync-rules.yml where it has one).
    name: String,
    /// `critical` or `warning`.
    severity: String,
    /// What it is about: `sync s1 → dst`, `server src`, `target dst`.
    subject: String,
    /// RFC 3339: since when the condition holds (as far as this process saw it).
    since: String,
    summary: String,
    /// What to do about it.
    todo: String,
}

/// The firing alerts, critical first, then oldest first.
#[derive(Debug, Serialize, ToSchema)]
struct AlertsView {
    /// RFC 3339 time of the evaluation.
    evaluated_at: String,
    alerts: Vec<Alert>,
}

fn alert(
    name: &str,
    severity: &str,
    subject: String,
    since: String,
    summary: String,
    todo: &str,
) -> Alert {
    Alert {
        name: name.into(),
        severity: severity.into(),
        subject,
        since,
        summary,
        todo: todo.into(),
    }
}

/// The start of the trailing run of `points` (time, lag) whose lag is above `threshold`, if
/// that run reaches back at least `for_` before the newest point.
pub fn lag_run_since(points: &[(String, f64)], threshold: f64, for_: Duration) -> Option<String> {
    let newest = points.last().filter(|(_, lag)| *lag > threshold)?;
    let start = points
        .iter()
        .rev()
        .take_while(|(_, lag)| *lag > threshold)
        .last()?;
    let parse = |t: &str| chrono::DateTime::parse_from_rfc3339(t).ok();
    let span = parse(&newest.0)? - parse(&start.0)?;
    (span.num_milliseconds() >= for_.as_millis() as i64).then(|| start.0.clone())
}

/// Whether an RFC 3339 `since` is at least `for_` ago.
fn held_for(since: &str, for_: Duration) -> bool {
    age_of(since).is_some_and(|a| a >= for_.as_secs_f64())
}

/// The pipeline rules: failed, retrying long, lag too high.
fn pipeline_alerts(list: &[PipelineStatus], lags: &[super::summary::LagTrail]) -> Vec<Alert> {
    let mut out = Vec::new();
    for p in list {
        let subject = format!("sync {} → {}", p.sync, p.target);
        let since = p.failure.as_ref().map(|f| f.since.clone());
        let what = p.failure.as_ref().map_or_else(
            || p.error.clone().unwrap_or_default(),
            |f| format!("{} ({})", f.message, f.code),
        );
        match p.state.as_str() {
            "failed" if since.as_deref().is_none_or(|s| held_for(s, FAILED_FOR)) => out.push(alert(
                "FleetsyncSyncFailed",
                "critical",
                subject.clone(),
                since.unwrap_or_else(now_rfc3339),
                format!("the pipeline is failed and applies nothing: {what}"),
                "Fix the cause (a grant, a target table, a server setting), then resume the sync, or re-sync the target (fleetsync resnapshot).",
            )),
            "retrying" if since.as_deref().is_some_and(|s| held_for(s, RETRYING_FOR)) => out.push(alert(
                "FleetsyncPipelineDown",
                "critical",
                subject.clone(),
                since.unwrap_or_else(now_rfc3339),
                format!("the pipeline has been retrying for more than {} min: {what}", RETRYING_FOR.as_secs() / 60),
                "Check the server the error names (reachable, grants, binlog settings); fleetsync keeps retrying by itself.",
            )),
            _ => {}
        }
    }
    for (sync, target, points) in lags {
        let subject = format!("sync {sync} → {target}");
        let fired = [
            ("critical", LAG_CRITICAL_SECONDS),
            ("warning", LAG_WARNING_SECONDS),
        ]
        .into_iter()
        .find_map(|(sev, th)| lag_run_since(points, th, LAG_FOR).map(|since| (sev, th, since)));
        if let Some((severity, threshold, since)) = fired {
            let lag = points.last().map_or(0.0, |p| p.1);
            out.push(alert(
                "FleetsyncReplicationLagHigh",
                severity,
                subject,
                since,
                format!("the target is {lag:.0} s behind its source (more than {threshold:.0} s for {} min)", LAG_FOR.as_secs() / 60),
                "Look at the target's load and the apply errors; a paused or slow table shows on the sync's card.",
            ));
        }
    }
    out
}

/// When this process first saw each health condition (`server status`): the periodic verdict
/// has no history of its own.
static HEALTH_SEEN: LazyLock<std::sync::Mutex<HashMap<String, String>>> =
    LazyLock::new(Default::default);

fn health_alerts() -> Vec<Alert> {
    let verdicts = crate::health_cmd::latest();
    let Ok(mut seen) = HEALTH_SEEN.lock() else {
        return Vec::new();
    };
    seen.retain(|k, _| {
        k.split_once(' ')
            .is_some_and(|(server, status)| verdicts.get(server).is_some_and(|v| v.0 == status))
    });
    let mut out = Vec::new();
    for (server, (status, problems)) in verdicts {
        // The verdict is the report's overall status: a failing check makes it `critical`, a
        // warning one `degraded`.
        let (name, severity, for_) = match status.as_str() {
            "critical" => ("FleetsyncHealthCheckFailing", "critical", HEALTH_FAIL_FOR),
            "degraded" => ("FleetsyncHealthCheckWarning", "warning", HEALTH_WARN_FOR),
            _ => continue,
        };
        let since = seen
            .entry(format!("{server} {status}"))
            .or_insert_with(now_rfc3339)
            .clone();
        if held_for(&since, for_) {
            out.push(alert(
                name,
                severity,
                format!("server {server}"),
                since,
                format!("health checks {status}: {}", problems.join(", ")),
                "Open the Health page (or `fleetsync health --server NAME`) for the evidence, suggestions and any fix.",
            ));
        }
    }
    out
}

/// Open conflicts per target: (count, oldest detected_at), read at most every
/// [`CONFLICTS_EVERY`].
type OpenConflicts = BTreeMap<String, (usize, String)>;
static CONFLICTS: LazyLock<tokio::sync::Mutex<Option<(Instant, OpenConflicts)>>> =
    LazyLock::new(Default::default);

async fn open_conflicts(config: &fleetsync_config::Config) -> OpenConflicts {
    let mut cache = CONFLICTS.lock().await;
    if let Some((at, c)) = cache.as_ref() {
        if at.elapsed() < CONFLICTS_EVERY {
            return c.clone();
        }
    }
    let mut out = OpenConflicts::new();
    for target in conflicts_service::targets(config) {
        let read = async {
            let mut conn = conflicts_service::connect(config, &target).await.ok()?;
            // `detected_at` is a TIMESTAMP: read it in UTC, to answer RFC 3339.
            conn.query_drop("SET time_zone = '+00:00'").await.ok()?;
            let open = conflicts_service::query(&mut conn, &target, &Default::default())
                .await
                .ok();
            let _ = conn.disconnect().await;
            open
        };
        let Ok(Some(open)) = tokio::time::timeout(PROBE_TIMEOUT, read).await else {
            continue;
        };
        if let Some(oldest) = open.iter().map(|c| c.detected_at.clone()).min() {
            out.insert(target, (open.len(), utc_rfc3339(&oldest)));
        }
    }
    *cache = Some((Instant::now(), out.clone()));
    out
}

/// A MariaDB `DATETIME` text read in UTC (`2026-01-31 12:00:00.123456`) as RFC 3339; other
/// text as it is.
fn utc_rfc3339(text: &str) -> String {
    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").map_or_else(
        |_| text.to_string(),
        |t| {
            t.and_utc()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        },
    )
}

/// The firing alerts: the conditions of deploy/prometheus/fleetsync-rules.yml evaluated in
/// this process (a failed pipeline for 1 min, retrying for 5 min, lag above 30 s / 300 s for
/// 5 min from the chart history, the periodic health verdict failing for 10 min / warning for
/// 1 h) and open conflicts (`FleetsyncConflictsOpen`, dashboard only). Targets' conflicts are
/// read at most every 10 s.
#[utoipa::path(get, path = "/api/v1/alerts", operation_id = "list_alerts", tag = "syncs",
    security(("bearer" = ["syncs:read"])),
    responses((status = 200, body = AlertsView), DeniedProblems))]
async fn alerts(State(s): State<ApiState>) -> Json<AlertsView> {
    let config = s.live();
    let mut all = pipeline_alerts(&super::routes::pipelines(&s), &s.history.lags());
    all.extend(health_alerts());
    for (target, (n, oldest)) in open_conflicts(&config).await {
        all.push(alert(
            "FleetsyncConflictsOpen",
            "warning",
            format!("target {target}"),
            oldest,
            format!("{n} open conflict(s) wait for a decision: their rows are not applied on {target}"),
            "Open the Conflicts page and resolve each one (take the incoming or keep the local row).",
        ));
    }
    all.sort_by(|a, b| {
        (a.severity != "critical", &a.since).cmp(&(b.severity != "critical", &b.since))
    });
    Json(AlertsView {
        evaluated_at: now_rfc3339(),
        alerts: all,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(lags: &[(u32, f64)]) -> Vec<(String, f64)> {
        lags.iter()
            .map(|(s, l)| (format!("2026-01-01T00:{:02}:{:02}Z", s / 60, s % 60), *l))
            .collect()
    }

    /// Lag fires only when the trailing run above the threshold spans the duration; a dip
    /// restarts it; the run's first point is `since`.
    #[test]
    fn lag_needs_a_long_enough_run() {
        let f = Duration::from_secs(300);
        assert_eq!(
            lag_run_since(&points(&[(0, 40.0), (300, 45.0)]), 30.0, f).as_deref(),
            Some("2026-01-01T00:00:00Z")
        );
        assert_eq!(
            lag_run_since(&points(&[(0, 40.0), (299, 45.0)]), 30.0, f),
            None
        );
        assert_eq!(
            lag_run_since(&points(&[(0, 40.0), (100, 1.0), (400, 45.0)]), 30.0, f),
            None
        );
        assert_eq!(
            lag_run_since(&points(&[(0, 40.0), (400, 45.0), (500, 2.0)]), 30.0, f),
            None
        );
        assert_eq!(lag_run_since(&[], 30.0, f), None);
    }

    #[test]
    fn conflict_times_become_rfc3339() {
        assert_eq!(
            utc_rfc3339("2026-12-07 02:14:25.961015"),
            "2026-12-07T02:14:25.961Z"
        );
        assert_eq!(
            utc_rfc3339("2026-12-07 02:14:25"),
            "2026-12-07T02:14:25.000Z"
        );
        assert_eq!(utc_rfc3339("garbage"), "garbage");
    }

    fn pipeline(state: &str, since: Option<&str>) -> PipelineStatus {
        PipelineStatus {
            sync: "s1".into(),
            target: "dst".into(),
            state: state.into(),
            failure: since.map(|s| crate::failure::Failure {
                code: "source:io".into(),
                message: "connection refused".into(),
                retryable: state == "retrying",
                since: s.into(),
                hint: None,
            }),
            ..Default::default()
        }
    }

    /// Failed fires after 1 min, retrying after 5 min; streaming and paused never.
    #[test]
    fn pipeline_rules() {
        let old = "2020-01-01T00:00:00Z";
        let now = now_rfc3339();
        let names = |list: &[PipelineStatus]| {
            pipeline_alerts(list, &[])
                .into_iter()
                .map(|a| a.name)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(&[pipeline("failed", Some(old))]),
            ["FleetsyncSyncFailed"]
        );
        assert!(names(&[pipeline("failed", Some(&now))]).is_empty());
        assert_eq!(
            names(&[pipeline("retrying", Some(old))]),
            ["FleetsyncPipelineDown"]
        );
        assert!(names(&[pipeline("retrying", Some(&now))]).is_empty());
        assert!(names(&[pipeline("streaming", None), pipeline("paused", None)]).is_empty());
        let lag = vec![(
            "s1".into(),
            "dst".into(),
            points(&[(0, 400.0), (360, 500.0)]),
        )];
        let a = pipeline_alerts(&[], &lag);
        assert_eq!(
            (a[0].name.as_str(), a[0].severity.as_str()),
            ("FleetsyncReplicationLagHigh", "critical")
        );
    }
}
