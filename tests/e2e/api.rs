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

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use fleetsync_tests::api::{ApiClient, ApiResponse};
use fleetsync_tests::{fleetsync_cmd_with, wait_until, Certs, Fleetsync};

use crate::support::{check_refusal, dead_port, Pair, Refusal, SYNC_TIMEOUT};

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
];

/// A password that must never be shown (in a `[[servers]]` URL and in a request body).
const SECRET: &str = "Api-Secret-4e1b9";
/// Time for the API to answer after `fleetsync run` starts.
const API_READY: Duration = Duration::from_secs(60);

/// `fleetsync token create`: the token it prints (stdout, one line).
pub async fn create_token(
    config: &Path,
    name: &str,
    role: &str,
    expires_days: Option<u32>,
) -> Result<String> {
    let config = config.to_str().context("config path is not UTF-8")?;
    let days = expires_days.map(|d| d.to_string());
    let mut args = vec![
        "token", "create", "--config", config, "--name", name, "--role", role,
    ];
    if let Some(d) = &days {
        args.extend(["--expires-days", d.as_str()]);
    }
    let out = fleetsync_cmd_with(&args, &[], Duration::from_secs(30)).await?;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    ensure!(
        out.status.success() && stdout.starts_with("fst_") && !stdout.contains('\n'),
        "token create failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(stdout)
}

async fn wait_api(api: &ApiClient, token: &str) -> Result<()> {
    wait_until(API_READY, "the API to answer", || async {
        let r = api.get("/api/v1/health", Some(token)).await?;
        ensure!(r.status == 200, "{} {}", r.status, r.body);
        Ok(())
    })
    .await
}

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
            let mut url = path.replace("{name}", "s1");
            if method != "get" {
                url.push_str("?dry_run=true");
            }
            let body = op["requestBody"]["content"]["application/json"]["example"].clone();
            let body = if body.is_null() {
                String::new()
            } else {
                body.to_string()
            };
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
                let r = api.request(&upper, &url, token, &body).await?;
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
    let (metrics_port, api_port) = (dead_port()?, dead_port()?);
    let base = pair.config_listening(&["app\\..*"], metrics_port)?;
    // A server no sync uses, whose URL holds a password the API must never show.
    let text = std::fs::read_to_string(&base)?
        + &format!(
            "\n[[servers]]\nname = \"spare\"\nurl = \"mysql://spare:{SECRET}@127.0.0.1:{}\"\n\n[api]\nlisten = \"127.0.0.1:{api_port}\"\n",
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

    // 1. The matrix.
    let calls = rbac_matrix(&api, &doc, &tokens, &mut answers).await?;
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

/// A config with no servers (the API needs none) listening on `listen`.
fn bare_config(dir: &Path, listen: &str, extra: &str) -> Result<std::path::PathBuf> {
    let text = format!(
        "state_dir = {:?}\n[metrics]\nlisten = \"127.0.0.1:0\"\n[api]\nlisten = \"{listen}\"\n{extra}",
        dir.join("state").display().to_string()
    );
    Fleetsync::write_config(dir, &text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_loopback_only_without_tokens_and_tls() -> Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("fleetsync-api-")
        .tempdir()?;
    let port = dead_port()?;

    // No token: a non-loopback listener is refused before anything is written.
    let config = bare_config(dir.path(), &format!("0.0.0.0:{port}"), "")?;
    let config_s = config.to_str().context("config path")?;
    let out = fleetsync_cmd_with(
        &["run", "--config", config_s],
        &[("RUST_LOG", "off")],
        Duration::from_secs(30),
    )
    .await?;
    check_refusal(
        &out,
        &Refusal {
            mentions: &[&["api.listen"], &["loopback"]],
            never: &[],
        },
    )?;
    ensure!(
        !dir.path().join("state").exists(),
        "the refused run created its state dir"
    );
    // With a token it may listen on every interface.
    let owner = create_token(&config, "ops", "owner", None).await?;
    let mut fs = Fleetsync::run(&config)?;
    wait_api(&ApiClient::http(port), &owner).await?;
    fs.stop(Duration::from_secs(30)).await?;

    // HTTPS with the test's certificate; plain HTTP and an untrusting client get nothing.
    let certs = Certs::generate()?;
    let tls_port = dead_port()?;
    let tls = format!(
        "tls_cert = {:?}\ntls_key = {:?}\n",
        certs.server.cert.display().to_string(),
        certs.server.key.display().to_string()
    );
    let config = bare_config(dir.path(), &format!("127.0.0.1:{tls_port}"), &tls)?;
    let mut fs = Fleetsync::run(&config)?;
    let https = ApiClient::https(tls_port, &certs.ca);
    wait_api(&https, &owner).await?;
    let r = https.get("/api/v1/syncs", None).await?;
    ensure!(
        r.status == 401 && is_problem(&r),
        "no token over HTTPS: {r:?}"
    );
    let plain = ApiClient::http(tls_port)
        .get("/api/v1/health", Some(&owner))
        .await;
    ensure!(
        plain.as_ref().map_or(true, |r| r.status != 200),
        "plain HTTP answered on the TLS port: {plain:?}"
    );
    // The CLI over HTTPS: with the CA it reaches the API (which knows no sync s1 here), without
    // it it says what is missing.
    let config_s = config.to_str().context("config path")?;
    let ca = certs.ca.to_str().context("CA path")?;
    let env = [("FLEETSYNC_TOKEN", owner.as_str()), ("RUST_LOG", "off")];
    let out = fleetsync_cmd_with(
        &["sync", "pause", "--config", config_s, "s1", "--api-ca", ca],
        &env,
        Duration::from_secs(30),
    )
    .await?;
    check_refusal(
        &out,
        &Refusal {
            mentions: &[&["404"], &["no sync named"]],
            never: &[&owner],
        },
    )?;
    let out = fleetsync_cmd_with(
        &["sync", "pause", "--config", config_s, "s1"],
        &env,
        Duration::from_secs(30),
    )
    .await?;
    check_refusal(
        &out,
        &Refusal {
            mentions: &[&["--api-ca"]],
            never: &[&owner],
        },
    )?;
    let wrong = ApiClient::https(tls_port, &certs.wrong_ca)
        .get("/api/v1/health", Some(&owner))
        .await;
    ensure!(
        wrong.is_err(),
        "a client trusting another CA got an answer: {wrong:?}"
    );
    fs.stop(Duration::from_secs(30)).await?;

    // A key that does not match the certificate: refused in one line.
    let mismatched = format!(
        "tls_cert = {:?}\ntls_key = {:?}\n",
        certs.server.cert.display().to_string(),
        certs.client.key.display().to_string()
    );
    let config = bare_config(dir.path(), &format!("127.0.0.1:{tls_port}"), &mismatched)?;
    let config_s = config.to_str().context("config path")?;
    let out = fleetsync_cmd_with(
        &["run", "--config", config_s],
        &[("RUST_LOG", "off")],
        Duration::from_secs(30),
    )
    .await?;
    check_refusal(
        &out,
        &Refusal {
            mentions: &[&["api.tls_key"]],
            never: &[],
        },
    )?;
    Ok(())
}

/// schemathesis (tests/api/schemathesis.sh, PyPI, in its own venv) against the API of a
/// `fleetsync run` with a live sync: no 5xx, and every answer as the document says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_schemathesis() -> Result<()> {
    let pair = Pair::start().await?;
    pair.src
        .exec("CREATE DATABASE app; CREATE TABLE app.items (id INT PRIMARY KEY, v VARCHAR(20)); INSERT INTO app.items VALUES (1, 'one')")
        .await?;
    let api_port = dead_port()?;
    let base = pair.config_listening(&["app\\..*"], dead_port()?)?;
    let text =
        std::fs::read_to_string(&base)? + &format!("\n[api]\nlisten = \"127.0.0.1:{api_port}\"\n");
    let config = Fleetsync::write_config(pair.dir.path(), &text)?;
    let owner = create_token(&config, "fuzz", "owner", None).await?;
    let mut fs = Fleetsync::run(&config)?;
    fs.wait_synced(&pair.src, &pair.dst, "app", SYNC_TIMEOUT)
        .await?;
    wait_api(&ApiClient::http(api_port), &owner).await?;
    let script = fleetsync_tests::repo_root().join("tests/api/schemathesis.sh");
    let out = tokio::process::Command::new("bash")
        .arg(&script)
        .arg(format!("http://127.0.0.1:{api_port}"))
        .arg("s1")
        .env("FLEETSYNC_TOKEN", &owner)
        .stdin(std::process::Stdio::null())
        .output();
    let out = tokio::time::timeout(Duration::from_secs(600), out)
        .await
        .context("schemathesis still running after 10 minutes")??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("generated") || l.contains("Seed:"))
        .map(str::trim)
        .collect();
    println!("schemathesis: {}", summary.join(" | "));
    ensure!(
        out.status.success(),
        "schemathesis failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        !fs.log_tail(200).contains("panicked"),
        "fleetsync panicked under schemathesis"
    );
    fs.ensure_running()?;
    fs.stop(Duration::from_secs(30)).await?;
    Ok(())
}

/// Concurrent API clients during a catch-up.
const LOAD_CLIENTS: usize = 50;
/// Each client's pause between two calls (a dashboard refreshing ten times a second): 50
/// clients make up to 500 calls a second. The tight loop (no pause) is measured too.
const LOAD_THINK: Duration = Duration::from_millis(100);
/// Row changes of each catch-up backlog.
const LOAD_BACKLOG: u64 = 60_000;
/// Generous: a debug build on 2 cores shares them with both servers and the clients.
const LOAD_CATCH_UP: Duration = Duration::from_secs(300);
/// Rounds of each kind (alone, polling clients, tight-loop clients).
const LOAD_ROUNDS: usize = 2;
/// What fails the test: far beyond the goals (p99 50 ms, 10 % slower), which a debug
/// build on a shared 2-core machine cannot show reliably, but a stall (a lock held across a
/// request, a disk write in the read path) or a starved sync would pass these.
const LOAD_MAX_P99: Duration = Duration::from_secs(1);
const LOAD_MAX_SLOWDOWN: f64 = 4.0;

/// Writes a backlog while fleetsync is stopped, starts it (and `clients` API clients polling
/// `GET /api/v1/syncs`), and returns the time to catch up and the clients' latencies.
async fn timed_catch_up(
    pair: &Pair,
    fs: &mut Fleetsync,
    orders: &mut fleetsync_tests::Workload,
    api: &ApiClient,
    token: &str,
    clients: usize,
    think: Duration,
) -> Result<(Duration, Vec<Duration>)> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    fs.stop(Duration::from_secs(30)).await?;
    orders
        .run(&pair.src.pool(), "app", "orders", LOAD_BACKLOG)
        .await?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (api, token, stop) = (api.clone(), token.to_string(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = std::time::Instant::now();
                match api.get("/api/v1/syncs", Some(&token)).await {
                    Ok(r) if r.status == 200 => {
                        latencies.push(t.elapsed());
                        tokio::time::sleep(think).await;
                    }
                    // Not listening yet (the restart): try again shortly.
                    _ => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
            latencies
        }));
    }
    let started = std::time::Instant::now();
    fs.restart()?;
    fs.wait_synced(&pair.src, &pair.dst, "app", LOAD_CATCH_UP)
        .await?;
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await?);
    }
    Ok((took, latencies))
}

/// The API benchmark, scaled to this machine: 50 concurrent clients polling
/// `GET /api/v1/syncs` (every 100 ms, then in a tight loop) while the sync catches up a
/// backlog, against the same backlog without them. Prints the figures and the goals;
/// fails only far beyond them ([`LOAD_MAX_P99`], [`LOAD_MAX_SLOWDOWN`]).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark (about a minute, figures depend on the machine's load): run with --ignored"]
async fn api_latency_under_catch_up() -> Result<()> {
    let pair = Pair::start().await?;
    let mut orders = fleetsync_tests::Workload::new(0xA91);
    pair.src
        .exec(&format!(
            "CREATE DATABASE app; {};",
            orders.create_table_sql("app", "orders")
        ))
        .await?;
    let api_port = dead_port()?;
    let base = pair.config_listening(&["app\\..*"], dead_port()?)?;
    let text =
        std::fs::read_to_string(&base)? + &format!("\n[api]\nlisten = \"127.0.0.1:{api_port}\"\n");
    let config = Fleetsync::write_config(pair.dir.path(), &text)?;
    let viewer = create_token(&config, "bench", "viewer", None).await?;
    let mut fs = Fleetsync::run(&config)?;
    fs.wait_synced(&pair.src, &pair.dst, "app", SYNC_TIMEOUT)
        .await?;
    let api = ApiClient::http(api_port);
    let zero = Duration::ZERO;
    // Alternating rounds; the fastest of each kind is the least disturbed by whatever else
    // runs on the machine, and latencies are pooled over a kind's rounds.
    let kinds = [
        ("alone", 0, zero),
        ("polling every 100 ms", LOAD_CLIENTS, LOAD_THINK),
        ("in a tight loop", LOAD_CLIENTS, zero),
    ];
    let mut best = [Duration::MAX; 3];
    let mut pooled: [Vec<Duration>; 3] = Default::default();
    for _round in 0..LOAD_ROUNDS {
        for (k, (_, clients, think)) in kinds.iter().enumerate() {
            let (took, latencies) =
                timed_catch_up(&pair, &mut fs, &mut orders, &api, &viewer, *clients, *think)
                    .await?;
            best[k] = best[k].min(took);
            pooled[k].extend(latencies);
        }
    }
    fs.stop(Duration::from_secs(30)).await?;
    let mut p99s = [Duration::ZERO; 3];
    for (k, (label, clients, _)) in kinds.iter().enumerate() {
        let slowdown = best[k].as_secs_f64() / best[0].as_secs_f64() - 1.0;
        if *clients == 0 {
            println!(
                "{label}: {LOAD_BACKLOG} row changes caught up in {:.1?} (best of {LOAD_ROUNDS})",
                best[k]
            );
            continue;
        }
        let latencies = &mut pooled[k];
        latencies.sort();
        ensure!(
            latencies.len() >= 100,
            "{label}: only {} answers",
            latencies.len()
        );
        let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
        p99s[k] = pct(0.99);
        println!(
            "{clients} clients {label}: caught up in {:.1?} ({:+.0} %); {} answers of GET /api/v1/syncs: p50 {:.1?}, p99 {:.1?}, max {:.1?}",
            best[k],
            slowdown * 100.0,
            latencies.len(),
            pct(0.5),
            pct(0.99),
            pct(1.0)
        );
    }
    let slowdown = best[1].as_secs_f64() / best[0].as_secs_f64() - 1.0;
    println!(
        "goal (issue 11): slowdown < 10 % and p99 < 50 ms; here {:+.0} % and {:.1?}",
        slowdown * 100.0,
        p99s[1]
    );
    ensure!(
        p99s[1] < LOAD_MAX_P99,
        "p99 {:?} is over {LOAD_MAX_P99:?}",
        p99s[1]
    );
    ensure!(
        slowdown < LOAD_MAX_SLOWDOWN,
        "the catch-up slowed by {:.0} %",
        slowdown * 100.0
    );
    Ok(())
}
