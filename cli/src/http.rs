//! The metrics listener (`[metrics] listen`), open for probes and scrapers: `/metrics`
//! (Prometheus text) and `/health` (200 when every pipeline is starting, snapshotting or
//! streaming; 503 otherwise, with `status` "failed" when a pipeline is `failed` and "degraded"
//! when one is retrying, paused or stopped; JSON body either way, with each pipeline's sync,
//! target, state, error and structured `failure`). Nothing here changes anything or needs a token; control and the
//! full status are on the API (`[api] listen`, see [`crate::api`]).

use std::net::SocketAddr;

use anyhow::{Context, Result};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

use crate::pipeline::Registry;

/// Bucket bounds for `fleetsync_apply_batch_seconds`: 1 ms .. 30 s.
const BATCH_SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Clone)]
struct AppState {
    prometheus: PrometheusHandle,
    registry: Registry,
}

fn install_recorder() -> Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()),
            BATCH_SECONDS_BUCKETS,
        )
        .context("configuring metric buckets")?
        .install_recorder()
        .context("installing the metrics recorder")?;
    describe();
    Ok(handle)
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "fleetsync_binlog_events_total",
        "Binlog events read, per source server."
    );
    describe_counter!(
        "fleetsync_source_transactions_total",
        "Source transactions published, per source server."
    );
    describe_counter!(
        fleetsync_agent::source::stream::METRIC_SOURCE_PARTS,
        "Parts of large source transactions published before their end (embedded bus), per source server."
    );
    describe_counter!(
        "fleetsync_snapshot_rows_total",
        "Rows read by initial snapshots, per source server."
    );
    describe_counter!(
        "fleetsync_apply_rows_total",
        "Row changes applied, per sync and target."
    );
    describe_histogram!(
        "fleetsync_apply_batch_seconds",
        "Time to apply one batch (one target transaction)."
    );
    describe_gauge!(
        "fleetsync_replication_lag_seconds",
        "Source commit time to target apply time of the last applied transaction."
    );
    describe_gauge!(
        "fleetsync_pipeline_up",
        "1 while a (sync, target) pipeline is connected and running."
    );
    describe_counter!(
        "fleetsync_loop_suppressed_events_total",
        "Binlog events not published because fleetsync itself applied them (loop prevention)."
    );
    describe_counter!(
        "fleetsync_kafka_messages_total",
        "Messages produced to Kafka, per source server."
    );
    describe_gauge!(
        "fleetsync_kafka_consumer_lag_messages",
        "Messages in the partition not yet read by the coordinator, per topic, partition and group."
    );
    describe_counter!(
        "fleetsync_pipeline_restarts_total",
        "Pipeline restarts after a failure."
    );
    describe_gauge!(
        crate::pipeline::METRIC_SYNC_FAILED,
        "1 while a (sync, target) pipeline is failed: a definite error, or the same non-transient error several times in a row (see status for the reason)."
    );
    describe_counter!(
        crate::api::METRIC_API_REQUESTS,
        "Calls to the API's documented routes, per operation and HTTP status (refusals included)."
    );
    describe_histogram!(
        crate::api::METRIC_API_SECONDS,
        "Time to answer an API call, per operation."
    );
    describe_counter!(
        fleetsync_agent::source::usable::METRIC_UNUSABLE_EVENTS,
        "Binlog events of included tables that cannot be replicated (statement-format DML, partial row image, no column names), per source server and reason (the server setting at fault). The sync stops at the first."
    );
    describe_counter!(
        crate::cgroup::METRIC_FENCED,
        "Pairs this coordinator stopped applying because another member of its group took them over and ended its target connections, per sync and target."
    );
    describe_gauge!(
        crate::cgroup::METRIC_OWNED_PAIRS,
        "(sync, target) pairs this coordinator owns in its coordinator group."
    );
}

/// Binds the listener and serves until cancelled; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    registry: Registry,
    cancel: CancellationToken,
) -> Result<SocketAddr> {
    let prometheus = install_recorder()?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("metrics.listen: cannot listen on {addr}"))?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/health", get(health_handler))
        .with_state(AppState {
            prometheus,
            registry,
        });
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { cancel.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "metrics listener failed");
        }
    });
    Ok(bound)
}

async fn metrics_handler(State(s): State<AppState>) -> impl IntoResponse {
    s.prometheus.run_upkeep();
    (
        [("content-type", "text/plain; version=0.0.4")],
        s.prometheus.render(),
    )
}

async fn health_handler(State(s): State<AppState>) -> impl IntoResponse {
    let list: Vec<crate::pipeline::PipelineStatus> = s
        .registry
        .lock()
        .map(|r| r.values().cloned().collect())
        .unwrap_or_default();
    let healthy = list.iter().all(|p| {
        p.state == "streaming"
            || p.state == "snapshotting"
            || p.state == "starting"
            || p.state == "standby"
    });
    let failed = list.iter().any(|p| p.state == "failed");
    let body = serde_json::json!({
        "status": if healthy { "ok" } else if failed { "failed" } else { "degraded" },
        "pipelines": list.iter().map(|p| serde_json::json!({"sync": p.sync, "target": p.target, "state": p.state, "owner": p.owner, "error": p.error, "failure": p.failure})).collect::<Vec<_>>(),
    });
    (
        if healthy {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        Json(body),
    )
}
