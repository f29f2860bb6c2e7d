//! Jobs over the API against a real `fleetsync run` (issue 11: jobs, `/events`, remote CLI):
//!
//! * each wired kind (health, schema diff, data diff, backup create, verify, restore) started
//!   with `POST /api/v1/jobs/{kind}`, followed to the end, its report compared with the CLI's
//!   `--json` report for the same request (modulo times and ids), and its exit code too;
//!   a restore (plan and real, to a renamed database), refused without `confirm` when it
//!   would replace tables;
//! * `/api/v1/events` delivers `job_progress` and `job_state` events for a job;
//! * a backup cancelled while it dumps ends `cancelled` and leaves no backup directory;
//! * `fleetsync --remote URL --token T status --json` prints what the local command prints
//!   (modulo lag and times), remote `diff schema` the same bytes and exit code; 401, 403 and
//!   an unreachable coordinator are one line without the token;
//! * `sync_state` events for a pause and a resume; the job id in the start's audit entry;
//! * a job running when the process is killed shows `failed: interrupted by a restart` after
//!   the restart.

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use fleetsync_tests::api::{read_stream, sse_events, ApiClient};
use fleetsync_tests::{fleetsync_cmd_with, wait_until};
use serde_json::{json, Value};

use crate::support::{dead_port, Pair};

/// Longest a job of this test may take.
const JOB_TIMEOUT: Duration = Duration::from_secs(120);
/// Rows of the table that makes a backup long enough to cancel in the middle.
const BIG_ROWS: u64 = 200_000;

/// Starts a job; its id.
pub(super) async fn start(
    api: &ApiClient,
    token: &str,
    kind: &str,
    body: &Value,
) -> Result<String> {
    let r = api
        .post(
            &format!("/api/v1/jobs/{kind}"),
            Some(token),
            &body.to_string(),
        )
        .await?;
    ensure!(r.status == 202, "start {kind}: {} {}", r.status, r.body);
    let job = r.json()?;
    ensure!(
        job["state"] == "queued" || job["state"] == "running",
        "{job}"
    );
    job["id"].as_str().map(str::to_string).context("no job id")
}

pub(super) async fn job(api: &ApiClient, token: &str, id: &str) -> Result<Value> {
    let r = api.get(&format!("/api/v1/jobs/{id}"), Some(token)).await?;
    ensure!(r.status == 200, "job {id}: {} {}", r.status, r.body);
    r.json()
}

/// Polls a job until it is in a final state.
pub(super) async fn finished(api: &ApiClient, token: &str, id: &str) -> Result<Value> {
    let deadline = std::time::Instant::now() + JOB_TIMEOUT;
    loop {
        let j = job(api, token, id).await?;
        if ["succeeded", "failed", "cancelled"].contains(&j["state"].as_str().unwrap_or("")) {
            return Ok(j);
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "job {id} still {} after {JOB_TIMEOUT:?}",
            j["state"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A finished health job's id (for the RBAC matrix's `{id}`).
pub async fn finished_job(api: &ApiClient, token: &str) -> Result<String> {
    let id = start(api, token, "health", &json!({"server": "src"})).await?;
    finished(api, token, &id).await?;
    Ok(id)
}

/// `fleetsync ARGS`: (exit code, stdout, stderr).
pub(super) async fn cli(args: &[&str], env: &[(&str, &str)]) -> Result<(i32, String, String)> {
    let out = fleetsync_cmd_with(args, env, JOB_TIMEOUT).await?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Removes the keys that differ between two runs of the same request (times, ids, paths).
pub(super) fn strip(v: &mut Value, keys: &[&str]) {
    match v {
        Value::Object(m) => {
            m.retain(|k, _| !keys.contains(&k.as_str()));
            m.values_mut().for_each(|x| strip(x, keys));
        }
        Value::Array(a) => a.iter_mut().for_each(|x| strip(x, keys)),
        _ => {}
    }
}

/// Runs a job and the CLI for the same request and compares their reports and exit codes.
pub(super) async fn same_as_cli(
    api: &ApiClient,
    token: &str,
    kind: &str,
    body: Value,
    args: &[&str],
    ignore: &[&str],
) -> Result<Value> {
    let id = start(api, token, kind, &body).await?;
    let j = finished(api, token, &id).await?;
    ensure!(j["state"] == "succeeded", "{kind} job: {j}");
    let (code, stdout, stderr) = cli(args, &[]).await?;
    let mut local: Value = serde_json::from_str(&stdout)
        .with_context(|| format!("{kind} CLI --json: {stdout} {stderr}"))?;
    let mut remote = j["result"].clone();
    strip(&mut local, ignore);
    strip(&mut remote, ignore);
    ensure!(
        local == remote,
        "{kind}: the job's report differs from the CLI's:\njob: {remote}\ncli: {local}"
    );
    ensure!(
        j["exit_code"].as_i64() == Some(i64::from(code)),
        "{kind}: job exit code {} vs CLI {code}",
        j["exit_code"]
    );
    println!("{kind}: job report equals the CLI's --json (exit code {code})");
    Ok(j)
}

fn backups(dir: &Path) -> Result<Vec<String>> {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    Ok(names)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_jobs_events_remote_cli_and_restart() -> Result<()> {
    let pair = Pair::start().await?;
    pair.src
        .exec(
            "CREATE DATABASE app; CREATE TABLE app.items (id INT PRIMARY KEY, v VARCHAR(20)); \
             INSERT INTO app.items VALUES (1, 'one'), (2, 'two'); \
             CREATE TABLE app.big (id INT PRIMARY KEY, v VARCHAR(200))",
        )
        .await?;
    for part in 0..BIG_ROWS / 20_000 {
        pair.src
            .exec(&format!(
                "USE app; INSERT INTO app.big SELECT seq + {}, REPEAT('x', 150) FROM seq_1_to_20000",
                part * 20_000
            ))
            .await?;
    }
    let super::Stack {
        config,
        mut fs,
        api,
        backup_dir,
        tokens,
        ..
    } = super::start_stack(
        &pair,
        "[backup]\ndir = {backup_dir}\nchunk_rows = 500\nthreads = 2\n",
        "",
        &[
            ("ops", "operator"),
            ("watch", "viewer"),
            ("auditor", "admin"),
        ],
    )
    .await?;
    let cfg = config.to_str().context("config path")?;
    let api_port = api.port;
    let [operator, viewer, admin] =
        <[String; 3]>::try_from(tokens).map_err(|_| anyhow::anyhow!("3 tokens"))?;

    // The event stream, read while the jobs below run (a viewer may read it).
    let stream_token = viewer.clone();
    let events = tokio::spawn(async move {
        read_stream(
            api_port,
            "/api/v1/events",
            Some(&stream_token),
            JOB_TIMEOUT,
            |body| body.contains("\"backup_create\"") && body.contains("\"cancelled\""),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    // 1. Each kind: the job's report is the CLI's --json report.
    // Health reads live state (free disk space on a shared machine, lag): a check may flip
    // between the job and the CLI run, so a mismatch is tried once more.
    let health_args = ["health", "--config", cfg, "--server", "src", "--json"];
    let ignore = [
        "checked_at",
        "duration_ms",
        "evidence",
        "summary",
        "suggestions",
    ];
    let health = match same_as_cli(
        &api,
        &operator,
        "health",
        json!({"server": "src"}),
        &health_args,
        &ignore,
    )
    .await
    {
        Ok(j) => j,
        Err(e) => {
            println!("health: retrying once after: {e}");
            same_as_cli(
                &api,
                &operator,
                "health",
                json!({"server": "src"}),
                &health_args,
                &ignore,
            )
            .await?
        }
    };
    ensure!(health["created_by"] == "ops", "{health}");
    let not_passing: Vec<String> = health["result"]["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["status"] != "pass")
        .map(|c| format!("{} {}: {}", c["name"], c["status"], c["summary"]))
        .collect();
    println!("health of src: {not_passing:?}");
    same_as_cli(
        &api,
        &operator,
        "schema-diff",
        json!({"source": "src/app", "target": "dst/app"}),
        &[
            "diff", "schema", "--config", cfg, "src/app", "dst/app", "--json",
        ],
        &[],
    )
    .await?;
    same_as_cli(
        &api,
        &operator,
        "data-diff",
        json!({"source": "src/app", "target": "dst/app"}),
        &[
            "diff", "data", "--config", cfg, "src/app", "dst/app", "--json",
        ],
        &["seconds"],
    )
    .await?;
    let created = same_as_cli(
        &api,
        &operator,
        "backup-create",
        json!({"server": "src", "include": ["app\\.items"]}),
        &[
            "backup",
            "create",
            "--config",
            cfg,
            "--server",
            "src",
            "--include",
            "app\\.items",
            "--json",
        ],
        &["id", "dir", "duration_seconds", "position"],
    )
    .await?;
    let audit = api
        .get("/api/v1/audit?action=start_backup_create_job", Some(&admin))
        .await?
        .json()?;
    ensure!(
        audit[0]["job_id"] == created["id"] && audit[0]["token"] == "ops",
        "the audit entry of the start has no job id: {}",
        audit[0]
    );
    let backup_id = created["result"]["id"]
        .as_str()
        .context("backup id")?
        .to_string();
    same_as_cli(
        &api,
        &operator,
        "backup-verify",
        json!({"id": backup_id}),
        &["backup", "verify", "--config", cfg, &backup_id, "--json"],
        &[],
    )
    .await?;

    // Restore: the plan, a real restore, and a refusal to replace without `confirm`.
    same_as_cli(
        &api,
        &admin,
        "backup-restore",
        json!({"id": backup_id, "to_server": "dst", "rename_db": ["app=app_r"], "plan_only": true}),
        &[
            "backup",
            "restore",
            "--config",
            cfg,
            &backup_id,
            "--to-server",
            "dst",
            "--rename-db",
            "app=app_r",
            "--dry-run",
            "--json",
        ],
        &[],
    )
    .await?;
    same_as_cli(
        &api,
        &admin,
        "backup-restore",
        json!({"id": backup_id, "to_server": "dst", "rename_db": ["app=app_r"]}),
        &[
            "backup",
            "restore",
            "--config",
            cfg,
            &backup_id,
            "--to-server",
            "dst",
            "--rename-db",
            "app=app_r2",
            "--json",
        ],
        &["seconds", "databases", "target_database"],
    )
    .await?;
    ensure!(
        pair.dst.count("app_r", "items").await? == 2,
        "app_r.items not restored"
    );
    let body = json!({"id": backup_id, "to_server": "dst", "rename_db": ["app=app_r"]});
    let id = start(&api, &admin, "backup-restore", &body).await?;
    let j = finished(&api, &admin, &id).await?;
    ensure!(
        j["state"] == "failed"
            && j["exit_code"] == 1
            && j["error"]
                .as_str()
                .is_some_and(|e| e.contains("already exist")),
        "a restore over existing tables without confirm: {j}"
    );
    let mut body = body;
    body["confirm"] = json!(true);
    let id = start(&api, &admin, "backup-restore", &body).await?;
    let j = finished(&api, &admin, &id).await?;
    ensure!(j["state"] == "succeeded", "a confirmed restore: {j}");
    let r = api
        .post(
            "/api/v1/jobs/backup-restore",
            Some(&operator),
            &body.to_string(),
        )
        .await?;
    ensure!(
        r.status == 403,
        "an operator started a restore: {} {}",
        r.status,
        r.body
    );
    println!("restore: plan and restore equal the CLI's; replacing needs confirm; an operator is refused");

    // 2. Cancel a backup in the middle: cancelled, and no directory left behind.
    let before = backups(&backup_dir)?;
    let id = start(
        &api,
        &operator,
        "backup-create",
        &json!({"server": "src", "include": ["app\\.big"]}),
    )
    .await?;
    wait_until(JOB_TIMEOUT, "the backup to dump rows", || async {
        let j = job(&api, &operator, &id).await?;
        ensure!(
            j["progress"]["rows"].as_u64().unwrap_or(0) > 0
                || j["state"] != "running" && j["state"] != "queued",
            "{}",
            j["progress"]
        );
        Ok(())
    })
    .await?;
    let r = api
        .post(&format!("/api/v1/jobs/{id}/cancel"), Some(&viewer), "")
        .await?;
    ensure!(
        r.status == 403,
        "a viewer cancelled a job: {} {}",
        r.status,
        r.body
    );
    let r = api
        .post(&format!("/api/v1/jobs/{id}/cancel"), Some(&operator), "")
        .await?;
    ensure!(r.status == 200, "cancel: {} {}", r.status, r.body);
    let j = finished(&api, &operator, &id).await?;
    ensure!(
        j["state"] == "cancelled",
        "the cancelled backup ended {}: {j}",
        j["state"]
    );
    let rows = j["progress"]["rows"].as_u64().unwrap_or(0);
    ensure!(
        rows < BIG_ROWS,
        "the backup finished ({rows} rows) before the cancel"
    );
    let after = backups(&backup_dir)?;
    ensure!(
        before == after,
        "the cancelled backup left files: {before:?} -> {after:?}"
    );
    let log = api
        .get(&format!("/api/v1/jobs/{id}/log"), Some(&viewer))
        .await?;
    ensure!(
        log.status == 200 && log.body.contains("cancelled"),
        "log: {}",
        log.body
    );
    println!("cancel: backup stopped after {rows} of {BIG_ROWS} rows, no directory left");

    // 3. The events of that job.
    let stream = events.await.context("event reader")??;
    ensure!(
        stream.content_type.starts_with("text/event-stream"),
        "{}",
        stream.content_type
    );
    let evs = sse_events(&stream.body);
    let progress = evs
        .iter()
        .filter(|(e, d)| e == "job_progress" && d["id"] == id.as_str())
        .count();
    let states: Vec<&str> = evs
        .iter()
        .filter(|(e, d)| e == "job_state" && d["id"] == id.as_str())
        .filter_map(|(_, d)| d["state"].as_str())
        .collect();
    ensure!(
        progress >= 1 && states.contains(&"running") && states.contains(&"cancelled"),
        "events of job {id}: {progress} progress, states {states:?}"
    );
    println!(
        "events: {} in all, {progress} progress events and states {states:?} for the cancelled job",
        evs.len()
    );

    // 4. The remote CLI.
    let url = format!("http://127.0.0.1:{api_port}");
    let (lcode, local, lerr) = cli(&["status", "--config", cfg, "--json"], &[]).await?;
    let (rcode, remote, rerr) = cli(
        &["--remote", &url, "--token", &viewer, "status", "--json"],
        &[],
    )
    .await?;
    ensure!(
        lcode == 0 && rcode == 0,
        "status: local {lcode} {lerr}, remote {rcode} {rerr}"
    );
    let times = [
        "lag_seconds",
        "lag_ms",
        "seconds_since_last_apply",
        "last_applied_ms",
        "behind",
        "lag",
    ];
    let (mut l, mut r): (Value, Value) = (
        serde_json::from_str(&local)?,
        serde_json::from_str(&remote)?,
    );
    strip(&mut l, &times);
    strip(&mut r, &times);
    ensure!(l == r, "remote status differs:\nlocal: {l}\nremote: {r}");
    let (lcode, local, _) = cli(
        &[
            "diff", "schema", "--config", cfg, "src/app", "dst/app", "--json",
        ],
        &[],
    )
    .await?;
    let (rcode, remote, _) = cli(
        &["diff", "schema", "src/app", "dst/app", "--json"],
        &[
            ("FLEETSYNC_REMOTE", url.as_str()),
            ("FLEETSYNC_TOKEN", operator.as_str()),
        ],
    )
    .await?;
    ensure!(
        lcode == rcode && local == remote,
        "remote diff schema: {rcode} {remote} vs local {lcode} {local}"
    );
    let (code, out, err) = cli(
        &["--remote", &url, "--token", "fst_wrong", "status", "--json"],
        &[],
    )
    .await?;
    ensure!(
        code == 1
            && out.is_empty()
            && err.trim().lines().count() == 1
            && err.contains("401")
            && !err.contains("fst_wrong"),
        "bad token: {code} {err}"
    );
    let (code, _, err) = cli(
        &[
            "--remote", &url, "--token", &viewer, "backup", "create", "--server", "src",
        ],
        &[],
    )
    .await?;
    ensure!(
        code == 1
            && err.trim().lines().count() == 1
            && err.contains("403")
            && !err.contains(&viewer),
        "viewer backup: {code} {err}"
    );
    let dead = format!("http://127.0.0.1:{}", dead_port()?);
    let (code, _, err) = cli(&["--remote", &dead, "--token", &viewer, "status"], &[]).await?;
    ensure!(
        code == 1 && err.trim().lines().count() == 1 && err.contains("cannot reach"),
        "unreachable: {code} {err}"
    );
    println!("remote CLI: status --json equals the local one; 401, 403, unreachable are one line");

    // 5. Sync state changes on the event stream: a pause and a resume of s1.
    let reader = {
        let token = viewer.clone();
        tokio::spawn(async move {
            read_stream(
                api_port,
                "/api/v1/events",
                Some(&token),
                JOB_TIMEOUT,
                |body| body.contains("\"control\":\"running\",\"previous\":\"paused\""),
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    for action in ["pause", "resume"] {
        let r = api
            .post(&format!("/api/v1/syncs/s1/{action}"), Some(&operator), "")
            .await?;
        ensure!(r.status == 200, "{action}: {} {}", r.status, r.body);
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    let stream = reader.await.context("event reader")??;
    let sync_events: Vec<Value> = sse_events(&stream.body)
        .into_iter()
        .filter(|(e, _)| e == "sync_state")
        .map(|(_, d)| d)
        .collect();
    ensure!(
        sync_events
            .iter()
            .any(|d| d["sync"] == "s1" && d["control"] == "paused")
            && sync_events.iter().any(|d| d["sync"] == "s1"
                && d["control"] == "running"
                && d["previous"] == "paused"),
        "sync_state events: {sync_events:?}"
    );
    println!(
        "events: {} sync_state events for a pause and a resume",
        sync_events.len()
    );

    // 6. A restart marks a running job interrupted.
    let id = start(
        &api,
        &operator,
        "data-diff",
        &json!({"source": "src/app", "target": "dst/app", "chunk_time_ms": 1}),
    )
    .await?;
    wait_until(JOB_TIMEOUT, "the data diff to run", || async {
        let j = job(&api, &operator, &id).await?;
        ensure!(j["state"] == "running", "{}", j["state"]);
        Ok(())
    })
    .await?;
    fs.kill9()?;
    fs.restart()?;
    super::wait_api(&api, &viewer).await?;
    let j = job(&api, &viewer, &id).await?;
    ensure!(
        j["state"] == "failed" && j["error"] == "interrupted by a restart",
        "after the restart: {j}"
    );
    let listed = api.get("/api/v1/jobs", Some(&viewer)).await?.json()?;
    ensure!(
        listed.as_array().map_or(0, Vec::len) >= 7,
        "jobs after the restart: {listed}"
    );
    println!("restart: the running data diff is `failed: interrupted by a restart`");
    fs.stop(Duration::from_secs(30)).await?;
    Ok(())
}
