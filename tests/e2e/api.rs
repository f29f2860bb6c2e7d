//! The control-plane API (issue 11, first slice) against a running `fleetsync run`:
//!
//! * the RBAC matrix: every operation of the served OpenAPI document, called with a token of
//!   each role and with none, must answer exactly as the role table below says (200 when the
//!   role holds every permission the operation names, 403 when not, 401 without a token). It
//!   reads the routes from the document, so it grows with the API; mutating calls are sent with
//!   `?dry_run=true` and must change nothing;
//! * audit entries for allowed and denied calls (with the client, token name and role);
//! * a real pause (API) and resume (`fleetsync sync resume` with `FLEETSYNC_TOKEN`);
//! * token expiry and revocation (401), secrets never in answers, the audit log or the log;
//! * the loopback-only rule without tokens, and HTTPS with a certificate made by the test.
//!
//! The role table is the README's, written out here on purpose: the server's own table
//! (cli/src/api/roles.rs) is what is under test.

use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use fleetsync_tests::api::{ApiClient, ApiResponse};
use fleetsync_tests::{fleetsync_cmd_with, wait_until, Fleetsync};

use crate::support::{check_refusal, dead_port, Pair, Refusal, SYNC_TIMEOUT};

mod browser;
mod dash_backups;
mod dash_conflicts;
mod dash_schema;
mod dash_syncs;
mod dashboard;
mod defs;
mod gov;
mod jobs;
pub(crate) mod jobs2;
mod jobs_migrate;
mod jobs_vmigrate;
mod kdefs;
mod kstate;
mod load;
mod serving;
mod stack;
pub(crate) mod tarfiles;

use stack::wait_api;
pub use stack::{create_token, start_stack, Stack};

/// The documented role table: role → permissions.
const ROLES: &[(&str, &[&str])] = &[
    (
        "owner",
        &[
            "servers:read",
            "servers:write",
            "syncs:read",
            "syncs:write",
            "syncs:control",
            "backup:create",
            "backup:restore",
            "migration:read",
            "migration:execute",
            "migration:rollback",
            "validation:run",
            "integrity:repair",
            "conflicts:resolve",
            "schedule:manage",
            "audit:read",
            "tokens:manage",
        ],
    ),
    (
        "admin",
        &[
            "servers:read",
            "servers:write",
            "syncs:read",
            "syncs:write",
            "syncs:control",
            "backup:create",
            "backup:restore",
            "migration:read",
            "migration:execute",
            "migration:rollback",
            "validation:run",
            "integrity:repair",
            "conflicts:resolve",
            "schedule:manage",
            "audit:read",
        ],
    ),
    (
        "operator",
        &[
            "servers:read",
            "syncs:read",
            "migration:read",
            "syncs:control",
            "backup:create",
            "validation:run",
            "conflicts:resolve",
        ],
    ),
    ("viewer", &["servers:read", "syncs:read", "migration:read"]),
];

/// The permission of each operation as the README documents it (`[]`: any valid token). The
/// document must agree for these; an operation not listed here is still called with every
/// role (against the permission its document entry names) and reported as not pinned.
const PINNED: &[(&str, &[&str])] = &[
    ("openapi", &[]),
    ("health", &[]),
    ("list_syncs", &["syncs:read"]),
    ("get_sync", &["syncs:read"]),
    ("pause_sync", &["syncs:control"]),
    ("resume_sync", &["syncs:control"]),
    ("cancel_sync", &["syncs:control"]),
    ("bulk_pause_syncs", &["syncs:control"]),
    ("bulk_resume_syncs", &["syncs:control"]),
    ("list_servers", &["servers:read"]),
    ("list_audit", &["audit:read"]),
    ("start_health_job", &["validation:run"]),
    ("start_schema_diff_job", &["migration:read"]),
    ("start_data_diff_job", &["validation:run"]),
    ("start_backup_create_job", &["backup:create"]),
    ("start_backup_verify_job", &["backup:create"]),
    ("start_backup_restore_job", &["backup:restore"]),
    ("list_jobs", &[]),
    ("get_job", &[]),
    ("get_job_log", &[]),
    ("cancel_job", &["validation:run"]),
    ("events", &[]),
    ("get_status", &["syncs:read"]),
    ("approve_job", &[]),
    ("reject_job", &[]),
    ("list_conflicts", &["syncs:read"]),
    ("get_conflict", &["syncs:read"]),
    ("resolve_conflict", &["conflicts:resolve"]),
    ("metrics_summary", &["syncs:read"]),
    ("start_health_fix_job", &["integrity:repair"]),
    ("start_migrate_generate_job", &["migration:read"]),
    ("start_migrate_apply_job", &["migration:execute"]),
    ("start_migrate_rollback_job", &["migration:rollback"]),
    ("list_backups", &["backup:create"]),
    ("get_backup", &["backup:create"]),
    ("get_backup_file", &["backup:create"]),
    ("download_backup", &["backup:create"]),
    ("start_backup_prune_job", &["backup:create"]),
    ("start_export_job", &["backup:create"]),
    ("start_import_job", &["backup:restore"]),
    ("get_job_file", &["backup:create"]),
    ("download_job_files", &["backup:create"]),
    ("get_server", &["servers:read"]),
    ("create_server", &["servers:write"]),
    ("update_server", &["servers:write"]),
    ("delete_server", &["servers:write"]),
    ("test_server", &["servers:write"]),
    ("create_sync", &["syncs:write"]),
    ("update_sync", &["syncs:write"]),
    ("delete_sync", &["syncs:write"]),
    ("export_config", &["servers:read", "syncs:read"]),
    ("sync_once", &["syncs:control"]),
    ("resnapshot_sync", &["syncs:control"]),
    ("list_schedules", &["syncs:read"]),
    ("get_schedule", &["syncs:read"]),
    ("create_schedule", &["schedule:manage"]),
    ("update_schedule", &["schedule:manage"]),
    ("delete_schedule", &["schedule:manage"]),
    ("trigger_schedule", &["schedule:manage"]),
    ("whoami", &[]),
    ("get_sync_definition", &["syncs:read"]),
    ("servers_overview", &["servers:read"]),
    ("list_alerts", &["syncs:read"]),
    ("get_backup_settings", &["backup:create"]),
    ("list_migrations", &["migration:read"]),
    ("resolve_conflicts_bulk", &["conflicts:resolve"]),
];

/// A password that must never be shown (in a `[[servers]]` URL and in a request body).
const SECRET: &str = "Api-Secret-4e1b9";
fn is_problem(r: &ApiResponse) -> bool {
    r.content_type == "application/problem+json"
        && r.json().is_ok_and(|p| {
            ["type", "title", "detail"].iter().all(|k| p[k].is_string())
                && p["status"].as_u64() == Some(u64::from(r.status))
        })
}

/// The permissions an operation of the document needs (its `bearer` scopes).
fn scopes(op: &serde_json::Value) -> Option<Vec<String>> {
    op["security"].as_array()?.iter().find_map(|req| {
        req.get("bearer")?.as_array().map(|s| {
            s.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
    })
}

/// One row of the matrix: (method, path, role or "none") → (expected, got).
struct Call {
    method: String,
    path: String,
    who: &'static str,
    expected: u16,
    got: u16,
}

/// Calls every operation with every role and without a token; returns the calls.
async fn rbac_matrix(
    api: &ApiClient,
    doc: &serde_json::Value,
    tokens: &[(&'static str, String)],
    job_id: &str,
    conflict: &str,
    concrete: &[(&str, String, String)],
    answers: &mut Vec<String>,
) -> Result<Vec<Call>> {
    let mut calls = Vec::new();
    let paths = doc["paths"]
        .as_object()
        .context("no paths in the document")?;
    for (path, item) in paths {
        for method in ["get", "put", "post", "delete", "patch"] {
            let Some(op) = item.get(method) else { continue };
            let Some(needs) = scopes(op) else {
                bail!("{method} {path} declares no bearer security requirement");
            };
            let id = op["operationId"].as_str().unwrap_or("");
            match PINNED.iter().find(|(p, _)| *p == id) {
                Some((_, pinned)) => ensure!(
                    needs == pinned.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
                    "{method} {path} ({id}) needs {needs:?} in the document, the README says {pinned:?}"
                ),
                None => println!("not pinned: {method} {path} ({id}) needs {needs:?}"),
            }
            // A server's routes on the API-made server, a sync's definition routes on the
            // API-made sync (the file's are read-only): both made before the matrix.
            let name = match (method, path.as_str()) {
                (_, p) if p.starts_with("/api/v1/servers/{name}") => "apisrv",
                ("put" | "delete", "/api/v1/syncs/{name}") => "apisync",
                (_, "/api/v1/syncs/{name}/once" | "/api/v1/syncs/{name}/resnapshot") => "apisync",
                (_, p) if p.starts_with("/api/v1/schedules/{name}") => "apisched",
                _ => "s1",
            };
            let mut url = path
                .replace("{target}/{id}", conflict)
                .replace("{name}", name)
                .replace("{id}", job_id);
            // The migration history of a real target (its `server` is required).
            if path == "/api/v1/migrations" {
                url.push_str("?server=dst&database=app");
            }
            if method != "get" {
                url.push_str("?dry_run=true");
            }
            let body = op["requestBody"]["content"]["application/json"]["example"].clone();
            let mut body = if body.is_null() {
                String::new()
            } else {
                body.to_string()
            };
            // Paths that need a real resource of their own (a backup, an export job), and
            // bodies that are not JSON (an upload).
            if let Some((_, u, b)) = concrete.iter().find(|(p, _, _)| p == path) {
                url = u.clone();
                if !b.is_empty() {
                    body = b.clone();
                }
            }
            let upper = method.to_ascii_uppercase();
            for (who, token) in tokens
                .iter()
                .map(|(w, t)| (*w, Some(t.as_str())))
                .chain([("none", None)])
            {
                let expected = match ROLES.iter().find(|(r, _)| *r == who) {
                    None => 401,
                    Some((_, perms)) if needs.iter().all(|n| perms.contains(&n.as_str())) => 200,
                    Some(_) => 403,
                };
                let r = if id == "events" {
                    // An endless stream: its status and first bytes are enough.
                    fleetsync_tests::api::read_stream(
                        api.port,
                        &url,
                        token,
                        Duration::from_millis(500),
                        |_| false,
                    )
                    .await?
                } else {
                    api.request(&upper, &url, token, &body).await?
                };
                if r.status >= 400 {
                    ensure!(
                        is_problem(&r),
                        "{upper} {url} as {who}: not problem+json: {r:?}"
                    );
                }
                answers.push(r.body);
                calls.push(Call {
                    method: upper.clone(),
                    path: path.clone(),
                    who,
                    expected,
                    got: r.status,
                });
            }
        }
    }
    Ok(calls)
}

async fn audit(api: &ApiClient, owner: &str, query: &str) -> Result<Vec<serde_json::Value>> {
    let r = api
        .get(&format!("/api/v1/audit?{query}"), Some(owner))
        .await?;
    ensure!(
        r.status == 200,
        "audit query {query}: {} {}",
        r.status,
        r.body
    );
    Ok(r.json()?.as_array().cloned().unwrap_or_default())
}

async fn control_of(api: &ApiClient, token: &str) -> Result<serde_json::Value> {
    let r = api.get("/api/v1/syncs/s1", Some(token)).await?;
    ensure!(
        r.status == 200,
        "GET /api/v1/syncs/s1: {} {}",
        r.status,
        r.body
    );
    r.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_rbac_matrix_audit_tokens_and_secrets() -> Result<()> {
    let pair = Pair::start().await?;
    pair.src
        .exec("CREATE DATABASE app; CREATE TABLE app.items (id INT PRIMARY KEY, v VARCHAR(20)); INSERT INTO app.items VALUES (1, 'one')")
        .await?;
    // A table with manual conflicts, for the `/conflicts/{target}/{id}` routes.
    pair.src
        .exec("CREATE DATABASE cx; CREATE TABLE cx.c (id INT PRIMARY KEY, v INT); INSERT INTO cx.c VALUES (1, 0)")
        .await?;
    let (metrics_port, api_port) = (dead_port()?, dead_port()?);
    let base = pair.config_listening(&["app\\..*", "cx\\..*"], metrics_port)?;
    // A server no sync uses, whose URL holds a password the API must never show.
    let backups = pair.dir.path().join("backups").display().to_string();
    // The versioned-migration root, with the folder the jobs' examples name (dry runs only).
    let migrations = pair.dir.path().join("migrations");
    std::fs::create_dir_all(migrations.join("app"))?;
    let migrations = migrations.display().to_string();
    let text = std::fs::read_to_string(&base)?
        + "\n[[syncs.tables]]\nname = \"cx.c\"\nconflict = \"manual\"\n"
        + &format!(
            "\n[[servers]]\nname = \"spare\"\nurl = \"mysql://spare:{SECRET}@127.0.0.1:{}\"\n\n[backup]\ndir = {backups:?}\n\n[migrations]\ndir = {migrations:?}\n\n[api]\nlisten = \"127.0.0.1:{api_port}\"\n",
            dead_port()?
        );
    let config = Fleetsync::write_config(pair.dir.path(), &text)?;
    let mut tokens: Vec<(&'static str, String)> = Vec::new();
    for (role, _) in ROLES {
        tokens.push((
            role,
            create_token(&config, &format!("t-{role}"), role, None).await?,
        ));
    }
    let token = |role: &str| -> String {
        tokens
            .iter()
            .find(|(r, _)| *r == role)
            .map(|(_, t)| t.clone())
            .unwrap_or_default()
    };
    let (owner, admin, operator, viewer) = (
        token("owner"),
        token("admin"),
        token("operator"),
        token("viewer"),
    );
    let expiring = create_token(&config, "expiring", "viewer", Some(1)).await?;
    let mut fs = Fleetsync::run(&config)?;
    fs.wait_synced(&pair.src, &pair.dst, "app", SYNC_TIMEOUT)
        .await?;
    let api = ApiClient::http(api_port);
    wait_api(&api, &viewer).await?;
    let mut answers = Vec::new();

    // The document: OpenAPI 3.1, served to any valid token.
    let r = api.get("/api/v1/openapi.json", Some(&viewer)).await?;
    ensure!(r.status == 200, "openapi.json: {} {}", r.status, r.body);
    let doc = r.json()?;
    ensure!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "not OpenAPI 3.1: {}",
        doc["openapi"]
    );

    // 1. The matrix (job routes on a real, finished job; definition routes on an API-made
    // server and a scheduled API-made sync, which does not run during the test).
    let job_id = jobs::finished_job(&api, &operator).await?;
    for (path, body) in [
        (
            "/api/v1/servers",
            r#"{"name": "apisrv", "url": "mysql://nobody@127.0.0.1:1", "tls": "disabled"}"#,
        ),
        (
            "/api/v1/syncs",
            r#"{"name": "apisync", "source": "src", "targets": ["dst"], "include": ["app\\..*"], "schedule": "0 0 1 1 *"}"#,
        ),
        (
            "/api/v1/schedules",
            r#"{"name": "apisched", "cron": "0 0 1 1 *", "kind": "health", "target": "src"}"#,
        ),
    ] {
        let r = api.post(path, Some(&owner), body).await?;
        ensure!(r.status == 200, "POST {path}: {} {}", r.status, r.body);
    }
    let conflict = gov::parked_conflict(&pair, &api, &viewer).await?;
    let concrete = jobs2::matrix_resources(&api, &operator).await?;
    let calls = rbac_matrix(
        &api,
        &doc,
        &tokens,
        &job_id,
        &conflict,
        &concrete,
        &mut answers,
    )
    .await?;
    let operations = calls.len() / (ROLES.len() + 1);
    let wrong: Vec<String> = calls
        .iter()
        .filter(|c| c.expected != c.got)
        .map(|c| {
            format!(
                "{} {} as {}: {} (expected {})",
                c.method, c.path, c.who, c.got, c.expected
            )
        })
        .collect();
    let allowed = calls.iter().filter(|c| c.got == 200).count();
    let forbidden = calls.iter().filter(|c| c.got == 403).count();
    let unauthenticated = calls.iter().filter(|c| c.got == 401).count();
    println!(
        "RBAC matrix: {operations} operations x {} callers = {} calls: {allowed} allowed, {forbidden} forbidden, {unauthenticated} unauthenticated, {} wrong",
        ROLES.len() + 1,
        calls.len(),
        wrong.len()
    );
    ensure!(
        wrong.is_empty(),
        "the RBAC matrix differs:\n{}",
        wrong.join("\n")
    );
    ensure!(
        operations >= 11,
        "only {operations} operations in the document"
    );
    // Counted per operation and status on /metrics.
    let (_, metrics) = crate::support::http_get(metrics_port, "/metrics").await?;
    ensure!(
        metrics.contains("fleetsync_api_requests_total{operation=\"pause_sync\",status=\"403\"}")
            && metrics.contains("fleetsync_api_request_seconds"),
        "API metrics missing:\n{metrics}"
    );
    // The dry runs changed nothing.
    let s1 = control_of(&api, &viewer).await?;
    ensure!(
        s1["control"] == "running",
        "a dry run changed the sync: {s1}"
    );

    // 2. Every refusal and every allowed mutation of the matrix is in the audit log.
    let denied = audit(&api, &owner, "outcome=denied&limit=1000").await?;
    let unauth = audit(&api, &owner, "outcome=unauthenticated&limit=1000").await?;
    let dry = audit(&api, &owner, "outcome=dry_run&limit=1000").await?;
    let allowed_posts = calls
        .iter()
        .filter(|c| c.got == 200 && c.method != "GET")
        .count();
    ensure!(
        denied.len() == forbidden && unauth.len() == unauthenticated && dry.len() == allowed_posts,
        "audit: {} denied (expected {forbidden}), {} unauthenticated (expected {unauthenticated}), {} dry runs (expected {allowed_posts})",
        denied.len(),
        unauth.len(),
        dry.len()
    );
    let viewer_pause = denied
        .iter()
        .find(|e| e["action"] == "pause_sync" && e["token"] == "t-viewer")
        .context("no audit entry for the viewer's denied pause")?;
    ensure!(
        viewer_pause["role"] == "viewer"
            && viewer_pause["status"] == 403
            && viewer_pause["client"]
                .as_str()
                .is_some_and(|c| c.starts_with("127.0.0.1:"))
            && viewer_pause["resource"] == "/api/v1/syncs/s1/pause",
        "incomplete audit entry: {viewer_pause}"
    );

    // 3. A real pause over the API, and a resume with the CLI.
    let r = api
        .post("/api/v1/syncs/s1/pause", Some(&operator), "")
        .await?;
    ensure!(r.status == 200, "pause: {} {}", r.status, r.body);
    wait_until(SYNC_TIMEOUT, "s1 paused", || async {
        let s = control_of(&api, &viewer).await?;
        ensure!(
            s["control"] == "paused" && s["targets"][0]["state"] == "paused",
            "{s}"
        );
        Ok(())
    })
    .await?;
    let config_s = config.to_str().context("config path")?;
    let out = fleetsync_cmd_with(
        &["sync", "resume", "--config", config_s, "s1"],
        &[("FLEETSYNC_TOKEN", operator.as_str())],
        Duration::from_secs(30),
    )
    .await?;
    ensure!(
        out.status.success(),
        "sync resume: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    pair.src
        .exec("INSERT INTO app.items VALUES (2, 'two')")
        .await?;
    fs.wait_synced(&pair.src, &pair.dst, "app", SYNC_TIMEOUT)
        .await?;
    for action in ["pause_sync", "resume_sync"] {
        let e = audit(&api, &owner, &format!("action={action}&outcome=ok")).await?;
        ensure!(
            e.first()
                .is_some_and(|e| e["token"] == "t-operator" && e["role"] == "operator"),
            "no ok audit entry for {action}: {e:?}"
        );
    }
    // Without a token the CLI says so in one line.
    let out = fleetsync_cmd_with(
        &["sync", "pause", "--config", config_s, "s1"],
        &[("RUST_LOG", "off")],
        Duration::from_secs(30),
    )
    .await?;
    check_refusal(
        &out,
        &Refusal {
            mentions: &[&["FLEETSYNC_TOKEN"]],
            never: &[],
        },
    )?;

    // 4. Bulk: all or nothing; secrets in a body are redacted in the audit log.
    let r = api
        .post(
            "/api/v1/bulk/syncs/pause",
            Some(&operator),
            "{\"syncs\": [\"s1\", \"ghost\"]}",
        )
        .await?;
    ensure!(
        r.status == 404 && r.json()?["field"] == "syncs[1]",
        "bulk with ghost: {r:?}"
    );
    ensure!(
        control_of(&api, &viewer).await?["control"] == "running",
        "a refused bulk call paused s1"
    );
    let body = format!("{{\"syncs\": [\"s1\"], \"password\": \"{SECRET}\"}}");
    let r = api
        .post("/api/v1/bulk/syncs/pause", Some(&operator), &body)
        .await?;
    ensure!(r.status == 422 && is_problem(&r), "unknown field: {r:?}");
    answers.push(r.body);
    let e = audit(
        &api,
        &owner,
        "action=bulk_pause_syncs&outcome=failed&limit=1",
    )
    .await?;
    ensure!(
        e.first()
            .is_some_and(|e| e["parameters"]["body"]["password"] == "***"),
        "the body's password is not redacted in the audit log: {e:?}"
    );
    let big = format!("{{\"syncs\": [\"{}\"]}}", "x".repeat(100_000));
    let r = api
        .post("/api/v1/bulk/syncs/pause", Some(&owner), &big)
        .await?;
    ensure!(
        r.status == 413 && is_problem(&r),
        "oversized body: {} {}",
        r.status,
        r.body
    );

    // 5. Servers: the password is "***".
    let r = api.get("/api/v1/servers", Some(&viewer)).await?;
    let spare = r.json()?.as_array().cloned().unwrap_or_default();
    let spare = spare
        .iter()
        .find(|s| s["name"] == "spare")
        .context("no spare server")?;
    ensure!(spare["password"] == "***", "{spare}");
    answers.push(r.body);

    // 6. Expiry and revocation: 401 at once, in the running process.
    ensure!(
        api.get("/api/v1/syncs", Some(&expiring)).await?.status == 200,
        "fresh token refused"
    );
    let store = pair.state_dir().join("api").join("tokens.json");
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&store)?)?;
    for t in v["tokens"].as_array_mut().context("tokens")? {
        if t["name"] == "expiring" {
            t["expires"] = serde_json::json!("2020-01-01T00:00:00Z");
        }
    }
    std::fs::write(&store, serde_json::to_string(&v)?)?;
    let r = api.get("/api/v1/syncs", Some(&expiring)).await?;
    ensure!(
        r.status == 401 && r.body.contains("expired"),
        "expired token: {r:?}"
    );
    let out = fleetsync_cmd_with(
        &["token", "revoke", "--config", config_s, "--name", "t-admin"],
        &[],
        Duration::from_secs(30),
    )
    .await?;
    ensure!(
        out.status.success(),
        "revoke: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = api.get("/api/v1/syncs", Some(&admin)).await?;
    ensure!(
        r.status == 401 && r.body.contains("revoked"),
        "revoked token: {r:?}"
    );
    // Token management from the CLI is audited too.
    let revoked = audit(&api, &owner, "action=token_revoke").await?;
    let created = audit(&api, &owner, "action=token_create&limit=1000").await?;
    ensure!(
        revoked
            .first()
            .is_some_and(|e| e["parameters"]["name"] == "t-admin" && e["client"] == "local-cli")
            && created.len() == ROLES.len() + 1,
        "token audit: {revoked:?} {created:?}"
    );
    let out = fleetsync_cmd_with(
        &["token", "list", "--config", config_s, "--json"],
        &[],
        Duration::from_secs(30),
    )
    .await?;
    let list: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let state = |n: &str| {
        list.as_array()
            .and_then(|l| l.iter().find(|t| t["name"] == n))
            .map(|t| t["state"].clone())
    };
    ensure!(
        state("t-admin") == Some("revoked".into())
            && state("expiring") == Some("expired".into())
            && state("t-owner") == Some("active".into()),
        "token list: {list}"
    );

    // 7. Per-target figures, and a structured failure: a renamed target column makes every
    // insert fail with 1054 (needs an operator; retried), shown as `failure`.
    let t = control_of(&api, &viewer).await?["targets"][0].clone();
    ensure!(
        t["rows_applied"].as_u64().is_some_and(|r| r >= 1)
            && t["seconds_since_last_apply"]
                .as_f64()
                .is_some_and(|s| s < 600.0)
            && t["lag_seconds"].is_number()
            && t["rows_per_second"].is_number()
            && t["failure"].is_null(),
        "target figures: {t}"
    );
    pair.dst
        .exec("ALTER TABLE app.items CHANGE v v_renamed VARCHAR(20)")
        .await?;
    pair.src
        .exec("INSERT INTO app.items VALUES (3, 'three')")
        .await?;
    wait_until(
        SYNC_TIMEOUT,
        "a structured failure in /api/v1/syncs",
        || async {
            let r = api.get("/api/v1/syncs", Some(&viewer)).await?;
            let f = r.json()?[0]["targets"][0]["failure"].clone();
            ensure!(
                f["code"] == "apply:sql:1054"
                    && f["retryable"] == true
                    && f["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("Unknown column"))
                    && f["hint"].is_string()
                    && f["since"].as_str().is_some_and(|s| s.ends_with('Z')),
                "failure: {f}"
            );
            Ok(())
        },
    )
    .await?;
    // The open /health and `fleetsync status` carry the same structured failure.
    let (_, health) = crate::support::http_get(metrics_port, "/health").await?;
    ensure!(
        health.contains("\"code\":\"apply:sql:1054\""),
        "/health: {health}"
    );
    let t = crate::support::status_target(&config).await?;
    ensure!(t["failure"]["code"] == "apply:sql:1054", "status: {t}");
    pair.dst
        .exec("ALTER TABLE app.items CHANGE v_renamed v VARCHAR(20)")
        .await?;
    fs.wait_synced(&pair.src, &pair.dst, "app", SYNC_TIMEOUT)
        .await?;
    wait_until(SYNC_TIMEOUT, "the failure cleared", || async {
        let t = control_of(&api, &viewer).await?["targets"][0].clone();
        ensure!(t["failure"].is_null() && t["state"] == "streaming", "{t}");
        Ok(())
    })
    .await?;

    // 8. No secret anywhere: answers, audit log, token store, process log, token list.
    let mut places: Vec<(String, String)> = answers
        .into_iter()
        .enumerate()
        .map(|(i, a)| (format!("answer {i}"), a))
        .collect();
    let api_dir = pair.state_dir().join("api");
    for entry in std::fs::read_dir(&api_dir)? {
        let p = entry?.path();
        places.push((p.display().to_string(), std::fs::read_to_string(&p)?));
    }
    places.push((
        "fleetsync.log".into(),
        std::fs::read_to_string(fs.log_path())?,
    ));
    places.push((
        "token list".into(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ));
    let mut secrets: Vec<&str> = tokens.iter().map(|(_, t)| t.as_str()).collect();
    secrets.extend([SECRET, expiring.as_str()]);
    for (place, text) in &places {
        for s in &secrets {
            ensure!(
                !text.contains(s),
                "{place} shows a secret ({}…)",
                &s[..6.min(s.len())]
            );
        }
    }
    println!("no secret in {} answers and files", places.len());
    #[cfg(unix)]
    for f in ["tokens.json", "audit.jsonl"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(api_dir.join(f))?.permissions().mode() & 0o777;
        ensure!(mode == 0o600, "{f} has mode {mode:o}");
    }
    fs.stop(Duration::from_secs(30)).await?;
    Ok(())
}
