//! `GET /api/v1/metrics/summary`: a short in-memory history for charts, per (sync, target)
//! pipeline of this process: both lags and rows/s, one point per throughput sample (the
//! sampler of `routes::spawn_throughput`, every 5 s), for the last hour. Memory is bounded:
//! [`HISTORY_POINTS`] points per pipeline, and pipelines no longer registered are dropped.
//! The history starts empty at each start (it is a chart feed, not a record: Prometheus
//! keeps the long one from `/metrics`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::problem::DeniedProblems;
use super::ApiState;
use crate::pipeline::PipelineStatus;

/// How long the history reaches back.
pub const HISTORY_WINDOW: Duration = Duration::from_secs(3600);

/// Points kept per pipeline: the window at the sampling interval (one hour of 5 s samples).
pub const HISTORY_POINTS: usize =
    (HISTORY_WINDOW.as_secs() / super::routes::THROUGHPUT_EVERY.as_secs()) as usize;

pub(super) fn routes(r: OpenApiRouter<ApiState>) -> OpenApiRouter<ApiState> {
    r.routes(routes!(metrics_summary))
}

/// One sample of a pipeline.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Point {
    /// RFC 3339 time of the sample.
    time: String,
    /// Commit-time lag: source commit to target apply of the last applied transaction.
    lag_seconds: f64,
    /// Seconds since the last applied batch (null: none since the start).
    seconds_since_last_apply: Option<f64>,
    /// Rows applied per second since the previous sample.
    rows_per_second: f64,
    /// Rows applied since the start (a counter).
    rows_applied: u64,
    /// The pipeline's state at the sample (`streaming`, `retrying`, `failed`, ...).
    state: String,
}

/// The history of one (sync, target) pipeline, oldest point first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Series {
    sync: String,
    target: String,
    points: Vec<Point>,
}

/// The chart feed.
#[derive(Debug, Serialize, ToSchema)]
pub struct MetricsSummary {
    /// Seconds between two points.
    interval_seconds: u64,
    /// Seconds the history reaches back (at most; less after a start).
    window_seconds: u64,
    series: Vec<Series>,
}

/// The points of one pipeline.
struct Track {
    sync: String,
    target: String,
    points: VecDeque<Point>,
}

/// A pipeline's lag history: (sync, target, [(RFC 3339 time, lag_seconds)] oldest first).
pub(super) type LagTrail = (String, String, Vec<(String, f64)>);

/// The points of every pipeline, keyed `sync/target`.
#[derive(Default)]
pub struct History(Mutex<BTreeMap<String, Track>>);

impl History {
    /// Records one point per pipeline of `list` (with `rates`, rows/s keyed `sync/target`),
    /// drops the oldest beyond [`HISTORY_POINTS`] and the pipelines no longer listed.
    pub fn record(&self, list: &[PipelineStatus], rates: &HashMap<String, f64>) {
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let now_ms = fleetsync_agent::source::stream::now_ms();
        let Ok(mut all) = self.0.lock() else { return };
        all.retain(|k, _| {
            list.iter()
                .any(|p| format!("{}/{}", p.sync, p.target) == *k)
        });
        for p in list {
            let key = format!("{}/{}", p.sync, p.target);
            let Track { points, .. } = all.entry(key.clone()).or_insert_with(|| Track {
                sync: p.sync.clone(),
                target: p.target.clone(),
                points: VecDeque::new(),
            });
            if points.len() >= HISTORY_POINTS {
                points.pop_front();
            }
            points.push_back(Point {
                time: time.clone(),
                lag_seconds: p.lag_seconds,
                seconds_since_last_apply: p
                    .last_applied_ms
                    .map(|t| now_ms.saturating_sub(t) as f64 / 1000.0),
                rows_per_second: rates.get(&key).copied().unwrap_or(0.0),
                rows_applied: p.rows_applied,
                state: p.state.clone(),
            });
        }
    }

    /// Per pipeline: (sync, target, [(time, lag_seconds)] oldest first), for the in-process
    /// lag alerts (`api::overview`).
    pub(super) fn lags(&self) -> Vec<LagTrail> {
        self.0
            .lock()
            .map(|all| {
                all.values()
                    .map(|t| {
                        let points = t.points.iter().map(|p| (p.time.clone(), p.lag_seconds));
                        (t.sync.clone(), t.target.clone(), points.collect())
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn snapshot(&self) -> Vec<Series> {
        self.0
            .lock()
            .map(|all| {
                all.values()
                    .map(|t| Series {
                        sync: t.sync.clone(),
                        target: t.target.clone(),
                        points: t.points.iter().cloned().collect(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The last hour of lag and rows/s per (sync, target) of this process, one point every 5 s,
/// for charts (in memory: empty after a start, filling as samples are taken).
#[utoipa::path(get, path = "/api/v1/metrics/summary", operation_id = "metrics_summary", tag = "syncs",
    security(("bearer" = ["syncs:read"])),
    responses((status = 200, body = MetricsSummary), DeniedProblems))]
async fn metrics_summary(State(s): State<ApiState>) -> Json<MetricsSummary> {
    Json(MetricsSummary {
        interval_seconds: super::routes::THROUGHPUT_EVERY.as_secs(),
        window_seconds: HISTORY_WINDOW.as_secs(),
        series: s.history.snapshot(),
    })
}

/// How often the periodic health verdicts are compared for `health` events.
pub const HEALTH_EVENTS_EVERY: Duration = Duration::from_secs(1);

/// Publishes `health` events: `{server, status, previous, problems}` when the periodic health
/// checks (`[health] interval_secs`) give a server another status than before.
pub fn spawn_health_events(
    s: ApiState,
    every: Duration,
    cancel: tokio_util::sync::CancellationToken,
) {
    tokio::spawn(async move {
        let mut last: BTreeMap<String, String> = BTreeMap::new();
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            for (server, (status, problems)) in crate::health_cmd::latest() {
                let previous = last.insert(server.clone(), status.clone());
                if previous.as_ref() != Some(&status) {
                    s.jobs.publish(
                        "health",
                        serde_json::json!({"server": server, "status": status, "previous": previous, "problems": problems}),
                    );
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(sync: &str, rows: u64) -> PipelineStatus {
        PipelineStatus {
            sync: sync.into(),
            target: "t".into(),
            state: "streaming".into(),
            rows_applied: rows,
            ..Default::default()
        }
    }

    /// Points are bounded per pipeline, and a pipeline gone from the registry is dropped.
    #[test]
    fn history_is_bounded() {
        let h = History::default();
        let rates = HashMap::from([("a/t".to_string(), 12.5)]);
        for i in 0..(HISTORY_POINTS as u64 + 10) {
            h.record(&[status("a", i), status("b", i)], &rates);
        }
        let series = h.snapshot();
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].points.len(), HISTORY_POINTS);
        assert_eq!(series[0].points[0].rows_applied, 10);
        assert_eq!(series[0].points[0].rows_per_second, 12.5);
        assert_eq!(series[1].points[0].rows_per_second, 0.0);
        h.record(&[status("a", 1)], &rates);
        assert_eq!(h.snapshot().len(), 1);
    }
}
