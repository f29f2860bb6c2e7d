//! Approvals, conflicts over the API, the metrics summary and the structured sync status
//! (issue 11, items 2 and 8) against a real `fleetsync run` with `[api] require_approval`:
//!
//! * an owner's restore waits in `awaiting_approval`; the owner approving it gets 403 (audited
//!   as denied), an operator too (lacks `backup:restore`); a restart keeps it awaiting; another
//!   admin approves it, it runs and restores (the audit entry names both tokens); a rejected
//!   restore never runs and changes nothing;
//! * a manual-strategy conflict (the target's row changed by hand, then the source's) is
//!   listed by `GET /api/v1/conflicts` exactly as `fleetsync conflicts list --json` shows it,
//!   got with both versions, resolved (dry run first: nothing changes), the row on the target
//!   is the incoming version, a second resolve is 409, and the SSE `conflict` events show it
//!   recorded and resolved;
//! * `GET /api/v1/metrics/summary` has points with rows/s > 0 during a load; `GET
//!   /api/v1/syncs/s1` shows both lags, throughput and the `failure` field.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use fleetsync_tests::api::{read_stream, sse_events, ApiClient};
use fleetsync_tests::{fleetsync_cmd_with, wait_until};
use serde_json::{json, Value};

use super::jobs::{finished, job};
use crate::support::Pair;

/// Longest wait for a job, a conflict or a metrics point.
const WAIT: Duration = Duration::from_secs(90);

async fn post(api: &ApiClient, path: &str, token: &str, body: &Value) -> Result<(u16, Value)> {
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let r = api.post(path, Some(token), &body).await?;
    let v = r.json().unwrap_or(Value::Null);
    Ok((r.status, v))
}

async fn get(api: &ApiClient, path: &str, token: &str) -> Result<Value> {
    let r = api.get(path, Some(token)).await?;
    ensure!(r.status == 200, "GET {path}: {} {}", r.status, r.body);
    r.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_approvals_conflicts_and_metrics_summary() -> Result<()> {
    let pair = Pair::start().await?;
    pair.src
        .exec(
            "CREATE DATABASE app; CREATE TABLE app.items (id INT PRIMARY KEY, v VARCHAR(20)); \
             INSERT INTO app.items VALUES (1, 'one'), (2, 'two'); \
             CREATE TABLE app.inv (id INT PRIMARY KEY, qty INT NOT NULL); \
             INSERT INTO app.inv VALUES (1, 0); \
             CREATE TABLE app.load (id INT PRIMARY KEY, v VARCHAR(40))",
        )
        .await?;
    let super::Stack {
        config,
        mut fs,
        api,
        tokens,
        ..
    } = super::start_stack(
        &pair,
        "[[syncs.tables]]\nname = \"app.inv\"\nconflict = \"manual\"\n\n[backup]\ndir = {backup_dir}\n",
        "require_approval = [\"backup:restore\"]\n",
        &[
            ("boss", "owner"),
            ("second", "admin"),
            ("ops", "operator"),
            ("watch", "viewer"),
        ],
    )
    .await?;
    let cfg = config.to_str().context("config path")?;
    let api_port = api.port;
    let [boss, second, ops, viewer] =
        <[String; 4]>::try_from(tokens).map_err(|_| anyhow::anyhow!("4 tokens"))?;

    // 1. Approvals. A backup to restore from (backup:create is not gated).
    let (code, b) = post(
        &api,
        "/api/v1/jobs/backup-create",
        &ops,
        &json!({"server": "src", "include": ["app\\.items"]}),
    )
    .await?;
    ensure!(code == 202 && b["state"] == "queued", "backup: {code} {b}");
    let b = finished(&api, &ops, b["id"].as_str().context("id")?).await?;
    ensure!(b["state"] == "succeeded", "backup: {b}");
    let backup = b["result"]["id"].as_str().context("backup id")?.to_string();

    let restore =
        |db: &str| json!({"id": backup, "to_server": "dst", "rename_db": [format!("app={db}")]});
    let (code, plan) = post(
        &api,
        "/api/v1/jobs/backup-restore?dry_run=true",
        &boss,
        &restore("app_r"),
    )
    .await?;
    ensure!(
        code == 200 && plan["needs_approval"] == "backup:restore",
        "dry run: {code} {plan}"
    );
    let (code, j) = post(
        &api,
        "/api/v1/jobs/backup-restore",
        &boss,
        &restore("app_r"),
    )
    .await?;
    ensure!(
        code == 202
            && j["state"] == "awaiting_approval"
            && j["approval"]["permission"] == "backup:restore",
        "a gated restore: {code} {j}"
    );
    let id = j["id"].as_str().context("id")?.to_string();
    let listed = get(&api, "/api/v1/jobs", &viewer).await?;
    ensure!(
        listed.as_array().is_some_and(|l| l
            .iter()
            .any(|j| j["id"] == id.as_str() && j["state"] == "awaiting_approval")),
        "GET /jobs: {listed}"
    );
    let approve = format!("/api/v1/jobs/{id}/approve");
    let (code, p) = post(&api, &approve, &boss, &Value::Null).await?;
    ensure!(
        code == 403
            && p["detail"]
                .as_str()
                .is_some_and(|d| d.contains("another token")),
        "self-approval: {code} {p}"
    );
    let (code, p) = post(&api, &approve, &ops, &Value::Null).await?;
    ensure!(code == 403, "an operator approved a restore: {code} {p}");
    let (code, p) = post(
        &api,
        &format!("{approve}?dry_run=true"),
        &second,
        &Value::Null,
    )
    .await?;
    ensure!(
        code == 200 && p["allowed"] == true && p["state"] == "awaiting_approval",
        "approve dry run: {code} {p}"
    );
    let denied = get(
        &api,
        "/api/v1/audit?action=approve_job&outcome=denied",
        &boss,
    )
    .await?;
    ensure!(
        denied.as_array().is_some_and(|d| d
            .iter()
            .any(|e| e["token"] == "boss" && e["status"] == 403 && e["job_id"] == id.as_str())),
        "the self-approval is not audited as denied: {denied}"
    );
    ensure!(
        pair.dst
            .query_value("SHOW DATABASES LIKE 'app_r'")
            .await?
            .is_none(),
        "the restore ran before its approval"
    );

    // A restart keeps it waiting (it has not started).
    fs.stop(Duration::from_secs(30)).await?;
    fs.restart()?;
    super::wait_api(&api, &viewer).await?;
    let j = job(&api, &viewer, &id).await?;
    ensure!(
        j["state"] == "awaiting_approval" && j["started_at"].is_null(),
        "after a restart: {j}"
    );
    let (code, p) = post(&api, &approve, &second, &Value::Null).await?;
    ensure!(
        code == 200 && p["state"] == "queued",
        "approval: {code} {p}"
    );
    let j = finished(&api, &viewer, &id).await?;
    ensure!(
        j["state"] == "succeeded" && j["approval"]["approved_by"] == "second",
        "the approved restore: {j}"
    );
    ensure!(
        pair.dst.count("app_r", "items").await? == 2,
        "app_r.items not restored"
    );
    let ok = get(&api, "/api/v1/audit?action=approve_job&outcome=ok", &boss).await?;
    ensure!(
        ok[0]["token"] == "second"
            && ok[0]["job_id"] == id.as_str()
            && ok[0]["parameters"]["detail"]["created_by"] == "boss",
        "the approval's audit entry: {}",
        ok[0]
    );
    // Rejected: never runs, nothing changes.
    let (_, j) = post(
        &api,
        "/api/v1/jobs/backup-restore",
        &boss,
        &restore("app_x"),
    )
    .await?;
    let rid = j["id"].as_str().context("id")?.to_string();
    let (code, p) = post(
        &api,
        &format!("/api/v1/jobs/{rid}/reject"),
        &second,
        &Value::Null,
    )
    .await?;
    ensure!(
        code == 200 && p["state"] == "cancelled",
        "reject: {code} {p}"
    );
    let (code, _) = post(
        &api,
        &format!("/api/v1/jobs/{rid}/approve"),
        &second,
        &Value::Null,
    )
    .await?;
    ensure!(code == 409, "approving a rejected job: {code}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let j = job(&api, &viewer, &rid).await?;
    ensure!(
        j["state"] == "cancelled"
            && j["started_at"].is_null()
            && j["approval"]["rejected_by"] == "second",
        "the rejected restore: {j}"
    );
    ensure!(
        pair.dst
            .query_value("SHOW DATABASES LIKE 'app_x'")
            .await?
            .is_none(),
        "the rejected restore changed the target"
    );
    // The remote CLI says that its restore waits, and follows it once approved.
    let url = format!("http://127.0.0.1:{api_port}");
    let remote = {
        let (url, boss, backup) = (url.clone(), boss.clone(), backup.clone());
        tokio::spawn(async move {
            fleetsync_cmd_with(
                &[
                    "--remote",
                    &url,
                    "--token",
                    &boss,
                    "backup",
                    "restore",
                    &backup,
                    "--to-server",
                    "dst",
                    "--rename-db",
                    "app=app_q",
                    "--json",
                ],
                &[],
                WAIT,
            )
            .await
        })
    };
    let mut waiting = None;
    wait_until(
        WAIT,
        "the remote CLI's restore to await approval",
        || async {
            let l = get(&api, "/api/v1/jobs", &viewer).await?;
            let found = l.as_array().and_then(|l| {
                l.iter().find(|j| {
                    j["state"] == "awaiting_approval" && j["params"]["rename_db"][0] == "app=app_q"
                })
            });
            ensure!(found.is_some(), "not yet");
            Ok(())
        },
    )
    .await?;
    let l = get(&api, "/api/v1/jobs", &viewer).await?;
    if let Some(j) = l.as_array().and_then(|l| {
        l.iter().find(|j| {
            j["state"] == "awaiting_approval" && j["params"]["rename_db"][0] == "app=app_q"
        })
    }) {
        waiting = j["id"].as_str().map(str::to_string);
    }
    let qid = waiting.context("the remote CLI's job")?;
    // Give the CLI time to see the waiting state before the approval.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (code, p) = post(
        &api,
        &format!("/api/v1/jobs/{qid}/approve"),
        &second,
        &Value::Null,
    )
    .await?;
    ensure!(code == 200, "approving the remote CLI's job: {code} {p}");
    let out = remote.await.context("remote CLI")??;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.success()
            && stderr.contains(&format!("job {qid} awaits approval"))
            && !stderr.contains(&boss),
        "remote restore: {} {stderr}",
        out.status
    );
    ensure!(
        pair.dst.count("app_q", "items").await? == 2,
        "app_q.items not restored"
    );
    println!("approvals: waited across a restart, self-approval 403, approved by another admin and restored; a rejected restore never ran");

    // 2. Conflicts, with the event stream open.
    let reader = {
        let token = viewer.clone();
        tokio::spawn(async move {
            read_stream(api_port, "/api/v1/events", Some(&token), WAIT, |body| {
                body.contains("\"event\":\"resolved\"")
            })
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    pair.dst
        .exec("UPDATE app.inv SET qty = 20 WHERE id = 1")
        .await?;
    pair.src
        .exec("UPDATE app.inv SET qty = 10 WHERE id = 1")
        .await?;
    wait_until(WAIT, "a parked conflict", || async {
        let l = get(&api, "/api/v1/conflicts", &viewer).await?;
        ensure!(l.as_array().map_or(0, Vec::len) == 1, "{l}");
        Ok(())
    })
    .await
    .with_context(|| fs.log_tail(40))?;
    let listed = get(
        &api,
        "/api/v1/conflicts?table=app.inv&target=dst&sync=s1",
        &viewer,
    )
    .await?;
    let out =
        fleetsync_cmd_with(&["conflicts", "list", "--config", cfg, "--json"], &[], WAIT).await?;
    let cli: Value = serde_json::from_slice(&out.stdout)
        .with_context(|| String::from_utf8_lossy(&out.stderr).into_owned())?;
    ensure!(
        listed == cli,
        "API and CLI lists differ:\napi: {listed}\ncli: {cli}"
    );
    let c = &listed[0];
    ensure!(
        c["incoming"]["qty"] == 10
            && c["local"]["qty"] == 20
            && c["origin"] == "src"
            && c["status"] == "open",
        "{c}"
    );
    let none = get(&api, "/api/v1/conflicts?sync=nope", &viewer).await?;
    ensure!(none == json!([]), "filter by sync: {none}");
    let r = api
        .get("/api/v1/conflicts?status=bogus", Some(&viewer))
        .await?;
    ensure!(
        r.status == 400 && r.json()?["field"] == "status",
        "a bad status filter: {} {}",
        r.status,
        r.body
    );
    let cid = c["id"].as_u64().context("conflict id")?;
    let one = get(&api, &format!("/api/v1/conflicts/dst/{cid}"), &viewer).await?;
    ensure!(one == *c, "GET one: {one} vs {c}");
    let resolve = format!("/api/v1/conflicts/dst/{cid}/resolve");
    let (code, plan) = post(
        &api,
        &format!("{resolve}?dry_run=true"),
        &ops,
        &json!({"take": "incoming"}),
    )
    .await?;
    ensure!(
        code == 200 && plan["dry_run"] == true && plan["statement"].is_string(),
        "resolve dry run: {code} {plan}"
    );
    ensure!(
        pair.dst
            .query_value("SELECT qty FROM app.inv")
            .await?
            .as_deref()
            == Some("20")
    );
    let (code, _) = post(&api, &resolve, &viewer, &json!({"take": "incoming"})).await?;
    ensure!(code == 403, "a viewer resolved: {code}");
    let (code, done) = post(&api, &resolve, &ops, &json!({"take": "incoming"})).await?;
    ensure!(
        code == 200 && done["resolution"] == "took src (incoming)",
        "resolve: {code} {done}"
    );
    ensure!(
        pair.dst
            .query_value("SELECT qty FROM app.inv")
            .await?
            .as_deref()
            == Some("10"),
        "the target's row is not the incoming version"
    );
    let (code, _) = post(&api, &resolve, &ops, &json!({"take": "local"})).await?;
    ensure!(code == 409, "resolving twice: {code}");
    let resolved = get(&api, "/api/v1/conflicts?status=resolved", &viewer).await?;
    ensure!(resolved[0]["status"] == "resolved", "{resolved}");
    let stream = reader.await.context("event reader")??;
    let events: Vec<Value> = sse_events(&stream.body)
        .into_iter()
        .filter(|(e, _)| e == "conflict")
        .map(|(_, d)| d)
        .collect();
    ensure!(
        events
            .iter()
            .any(|d| d["event"] == "recorded" && d["id"] == cid && d["local"]["qty"] == 20)
            && events.iter().any(|d| d["event"] == "resolved"
                && d["id"] == cid
                && d["resolution"] == "took src (incoming)"),
        "conflict events: {events:?}"
    );
    println!("conflicts: listed as the CLI lists them, both versions, resolved to the incoming row; events {events:?}");

    // 3. The metrics summary during a load, and the sync's status.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (src, stop) = (pair.src.pool(), stop.clone());
        tokio::spawn(async move {
            use mysql_async::prelude::Queryable;
            let mut conn = src.get_conn().await?;
            conn.query_drop("USE app").await?;
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                conn.query_drop(format!(
                    "INSERT INTO app.load SELECT seq + {}, 'x' FROM seq_1_to_500",
                    n * 500
                ))
                .await?;
                n += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            anyhow::Ok(n * 500)
        })
    };
    let summary = || async {
        let m = get(&api, "/api/v1/metrics/summary", &viewer).await?;
        let points = m["series"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["sync"] == "s1" && s["target"] == "dst"))
            .and_then(|s| s["points"].as_array().cloned())
            .unwrap_or_default();
        let best = points
            .iter()
            .filter_map(|p| p["rows_per_second"].as_f64())
            .fold(0.0, f64::max);
        anyhow::Ok((points.len(), best, m["interval_seconds"].clone()))
    };
    let seen = wait_until(WAIT, "rows/s > 0 in the metrics summary", || async {
        let (points, best, _) = summary().await?;
        ensure!(best > 0.0, "{points} points, best {best} rows/s");
        Ok(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let rows = load.await.context("load")??;
    seen?;
    let (points, best, interval) = summary().await?;
    println!("metrics summary: {points} points every {interval} s, up to {best:.0} rows/s during a load of {rows} rows");
    let s1 = get(&api, "/api/v1/syncs/s1", &viewer).await?;
    let t = &s1["targets"][0];
    ensure!(
        t["lag_seconds"].is_number()
            && t["seconds_since_last_apply"].is_number()
            && t["rows_per_second"].is_number()
            && t.get("failure").is_some_and(Value::is_null),
        "sync status: {t}"
    );
    fs.stop(Duration::from_secs(30)).await?;
    Ok(())
}

/// Parks a manual conflict on `dst` (table `cx.c`, synced with `conflict = "manual"`): the
/// target's row changed by hand, then the source's. Returns `dst/ID` for the RBAC matrix.
pub async fn parked_conflict(pair: &Pair, api: &ApiClient, token: &str) -> Result<String> {
    wait_until(WAIT, "cx.c on dst", || async {
        ensure!(pair.dst.count("cx", "c").await? == 1);
        Ok(())
    })
    .await?;
    pair.dst.exec("UPDATE cx.c SET v = 2 WHERE id = 1").await?;
    pair.src.exec("UPDATE cx.c SET v = 1 WHERE id = 1").await?;
    wait_until(WAIT, "a parked conflict on cx.c", || async {
        let l = get(api, "/api/v1/conflicts?table=cx.c", token).await?;
        ensure!(l.as_array().map_or(0, Vec::len) == 1, "{l}");
        Ok(())
    })
    .await?;
    let l = get(api, "/api/v1/conflicts?table=cx.c", token).await?;
    Ok(format!("dst/{}", l[0]["id"]))
}
