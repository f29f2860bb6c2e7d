//! Definitions made over the API against a real `fleetsync run` (issue 11, items 2, 3, 8):
//!
//! * a server (with a password, sealed with `[api] secret_key_file`) and a sync created over
//!   the API: rows flow to the target without a restart; the password is `"***"` in answers
//!   and absent in clear from the store, the log and the audit log;
//! * invalid definitions (unknown server, a file sync's name, a bad pattern, an unknown field,
//!   a dry run, a delete without `confirm`) are refused (4xx problem) or change nothing, and the
//!   store file keeps its bytes;
//! * an update of the sync's filter takes effect (a table left out stops flowing);
//! * after a restart the API's definitions are back and running, rows equal row by row;
//! * the export is TOML that `fleetsync check` accepts once the password is filled in;
//! * a delete with `?confirm=true` stops the sync's pipelines.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use fleetsync_tests::api::{ApiClient, ApiResponse};
use fleetsync_tests::{fleetsync_cmd, wait_until, Fleetsync};
use serde_json::{json, Value};

use super::{create_token, is_problem, wait_api};
use crate::support::{dead_port, Pair, SYNC_TIMEOUT};

/// The API-made server's password: must never be shown or stored in clear.
const DEFS_SECRET: &str = "Defs-Secret-7c2a";

pub(super) async fn call(
    api: &ApiClient,
    token: &str,
    method: &str,
    path: &str,
    body: &Value,
    answers: &mut Vec<String>,
) -> Result<ApiResponse> {
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let r = api.request(method, path, Some(token), &body).await?;
    answers.push(r.body.clone());
    Ok(r)
}

pub(super) async fn expect(
    api: &ApiClient,
    token: &str,
    method: &str,
    path: &str,
    body: &Value,
    status: u16,
    answers: &mut Vec<String>,
) -> Result<Value> {
    let r = call(api, token, method, path, body, answers).await?;
    ensure!(
        r.status == status,
        "{method} {path}: {} (expected {status}) {}",
        r.status,
        r.body
    );
    if status >= 400 {
        ensure!(is_problem(&r), "{method} {path}: not a problem: {}", r.body);
    }
    if r.body.is_empty() {
        return Ok(Value::Null);
    }
    r.json()
}

/// Rows the writer of app.nokey inserts while the sync restarts.
const WRITES: i64 = 300;

/// app.nokey's values, sorted (a keyless table: duplicates count).
async fn keyless(db: &fleetsync_tests::MariaDb) -> Result<Vec<Vec<Option<String>>>> {
    db.query_strings("SELECT v FROM app.nokey ORDER BY v").await
}

async fn rows(db: &fleetsync_tests::MariaDb, table: &str) -> Result<Vec<Vec<Option<String>>>> {
    db.query_strings(&format!("SELECT * FROM {table} ORDER BY id"))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_definitions_live_store_and_export() -> Result<()> {
    let pair = Pair::start().await?;
    pair.src
        .exec(
            "CREATE DATABASE app; CREATE TABLE app.items (id INT PRIMARY KEY, v VARCHAR(20)); \
             CREATE TABLE app.other (id INT PRIMARY KEY, v VARCHAR(20)); CREATE TABLE app.nokey (v INT); \
             INSERT INTO app.items VALUES (1, 'one'), (2, 'two'); INSERT INTO app.other VALUES (1, 'x'); \
             CREATE DATABASE marks; CREATE TABLE marks.m (id INT PRIMARY KEY)",
        )
        .await?;
    // The API-made server reaches the target as a user with a password.
    pair.dst
        .create_user("fsapi", DEFS_SECRET, &["ALL PRIVILEGES ON *.*"])
        .await?;
    let (metrics_port, api_port) = (dead_port()?, dead_port()?);
    let base = pair.config_listening(&["marks\\..*"], metrics_port)?;
    let key = pair.dir.path().join("secret.key");
    std::fs::write(&key, "7".repeat(64))?;
    let file_text = std::fs::read_to_string(&base)?;
    let text = file_text.clone()
        + &format!(
            "\n[api]\nlisten = \"127.0.0.1:{api_port}\"\nsecret_key_file = {:?}\n",
            key.display().to_string()
        );
    let config = Fleetsync::write_config(pair.dir.path(), &text)?;
    let owner = create_token(&config, "defs-owner", "owner", None).await?;
    let viewer = create_token(&config, "defs-viewer", "viewer", None).await?;
    let mut fs = Fleetsync::run(&config)?;
    let api = ApiClient::http(api_port);
    wait_api(&api, &owner).await?;
    let store = pair.state_dir().join("api").join("definitions.json");
    let mut answers = Vec::new();
    let a = &mut answers;
    let port = pair.dst.port();
    let server = json!({"name": "dst2", "url": format!("mysql://fsapi@127.0.0.1:{port}"),
        "password": DEFS_SECRET, "tls": "disabled"});

    // 1. Dry runs change nothing; a viewer may not write.
    let plan = expect(
        &api,
        &owner,
        "POST",
        "/api/v1/servers?dry_run=true",
        &server,
        200,
        a,
    )
    .await?;
    ensure!(
        plan["dry_run"] == true && plan["action"] == "create",
        "{plan}"
    );
    ensure!(!store.exists(), "a dry run wrote the store");
    expect(&api, &viewer, "POST", "/api/v1/servers", &server, 403, a).await?;

    // 2. The server, then the sync: rows flow without a restart.
    expect(&api, &owner, "POST", "/api/v1/servers", &server, 200, a).await?;
    let got = expect(
        &api,
        &viewer,
        "GET",
        "/api/v1/servers/dst2",
        &Value::Null,
        200,
        a,
    )
    .await?;
    ensure!(got["password"] == "***" && got["origin"] == "api", "{got}");
    let test = expect(
        &api,
        &owner,
        "POST",
        "/api/v1/servers/dst2/test",
        &Value::Null,
        200,
        a,
    )
    .await?;
    ensure!(
        test["checks"][0]["check"] == "connect" && test["checks"][0]["ok"] == true,
        "{test}"
    );
    let sync =
        json!({"name": "api1", "source": "src", "targets": ["dst2"], "include": ["app\\..*"]});
    let plan = expect(
        &api,
        &owner,
        "POST",
        "/api/v1/syncs?dry_run=true",
        &sync,
        200,
        a,
    )
    .await?;
    ensure!(plan["affected_syncs"] == json!(["api1"]), "{plan}");
    // The plan: the filter's tables on the source, keyless ones, what the target gets.
    ensure!(
        plan["tables"]["matched"] == json!(["app.items", "app.nokey", "app.other"])
            && plan["tables"]["keyless"] == json!(["app.nokey"])
            && plan["tables"]["targets"][0]["to_create"]
                == json!(["app.items", "app.nokey", "app.other"]),
        "{plan}"
    );
    let r = call(&api, &owner, "GET", "/api/v1/syncs/api1", &Value::Null, a).await?;
    ensure!(r.status == 404, "a dry run created the sync: {}", r.body);
    expect(&api, &owner, "POST", "/api/v1/syncs", &sync, 200, a).await?;
    pair.src
        .exec("INSERT INTO app.items VALUES (3, 'three'); INSERT INTO app.other VALUES (2, 'y')")
        .await?;
    wait_until(SYNC_TIMEOUT, "app.* on the target", || async {
        ensure!(rows(&pair.dst, "app.items").await? == rows(&pair.src, "app.items").await?);
        ensure!(rows(&pair.dst, "app.other").await? == rows(&pair.src, "app.other").await?);
        Ok(())
    })
    .await?;
    let view = expect(
        &api,
        &viewer,
        "GET",
        "/api/v1/syncs/api1",
        &Value::Null,
        200,
        a,
    )
    .await?;
    ensure!(view["origin"] == "api", "{view}");
    let listed = expect(&api, &viewer, "GET", "/api/v1/syncs", &Value::Null, 200, a).await?;
    ensure!(
        listed.as_array().map(Vec::len) == Some(2),
        "file sync and API sync expected: {listed}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&store)?.permissions().mode() & 0o777;
        ensure!(mode == 0o600, "the store has mode {mode:o}");
    }

    // 3. Refusals leave the store's bytes as they are.
    let before = std::fs::read(&store)?;
    let refusals: Vec<(&str, &str, Value, u16, Option<&str>)> = vec![
        (
            "POST",
            "/api/v1/syncs",
            json!({"name": "bad1", "source": "nowhere", "targets": ["dst2"]}),
            400,
            None,
        ),
        (
            "POST",
            "/api/v1/syncs",
            json!({"name": "s1", "source": "src", "targets": ["dst2"]}),
            409,
            Some("name"),
        ),
        (
            "POST",
            "/api/v1/syncs",
            json!({"name": "bad2", "source": "src", "targets": ["dst2"], "include": ["app\\.("]}),
            400,
            None,
        ),
        (
            "POST",
            "/api/v1/syncs",
            json!({"name": "bad3", "source": "src", "targets": ["dst2"], "includes": ["x"]}),
            422,
            Some("includes"),
        ),
        (
            "POST",
            "/api/v1/syncs",
            json!({"name": "bad4", "source": "src", "targets": ["dst2"], "include": ["nosuch\\.t"]}),
            422,
            None,
        ),
        (
            "PUT",
            "/api/v1/syncs/s1",
            json!({"source": "src", "targets": ["dst"]}),
            409,
            Some("name"),
        ),
        (
            "DELETE",
            "/api/v1/syncs/api1",
            Value::Null,
            409,
            Some("confirm"),
        ),
        ("DELETE", "/api/v1/servers/dst2", Value::Null, 409, None),
        (
            "DELETE",
            "/api/v1/servers/src",
            Value::Null,
            409,
            Some("name"),
        ),
        (
            "POST",
            "/api/v1/servers",
            json!({"name": "dst3", "url": format!("mysql://fsapi:{DEFS_SECRET}@127.0.0.1:{port}")}),
            400,
            Some("url"),
        ),
        (
            "PUT",
            "/api/v1/syncs/api1?dry_run=true",
            json!({"source": "src", "targets": ["dst2"], "include": ["app\\.items"]}),
            200,
            None,
        ),
    ];
    for (method, path, body, status, field) in &refusals {
        let p = expect(&api, &owner, method, path, body, *status, a).await?;
        if let Some(f) = field {
            ensure!(
                p["field"] == *f,
                "{method} {path}: field {} (expected {f})",
                p["field"]
            );
        }
    }
    ensure!(
        std::fs::read(&store)? == before,
        "a refused change or dry run changed the store"
    );
    println!(
        "{} refused or dry-run changes left the store as it was",
        refusals.len()
    );

    // 4. An update takes effect without a restart: app.other stops flowing. A writer inserts
    // into the keyless app.nokey meanwhile: the restart loses and repeats none of its rows
    // (a repeated row of a keyless table would show as a duplicate).
    let writer = {
        let pool = pair.src.pool();
        tokio::spawn(async move {
            use mysql_async::prelude::Queryable;
            let mut conn = pool.get_conn().await?;
            for v in 1..=WRITES {
                conn.exec_drop("INSERT INTO app.nokey VALUES (?)", (v,))
                    .await?;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            anyhow::Ok(())
        })
    };
    let narrow = json!({"source": "src", "targets": ["dst2"], "include": ["app\\.(items|nokey)"]});
    expect(&api, &owner, "PUT", "/api/v1/syncs/api1", &narrow, 200, a).await?;
    writer.await??;
    wait_until(SYNC_TIMEOUT, "the updated sync streaming", || async {
        let v = expect(
            &api,
            &viewer,
            "GET",
            "/api/v1/syncs/api1",
            &Value::Null,
            200,
            &mut Vec::new(),
        )
        .await?;
        ensure!(v["targets"][0]["state"] == "streaming", "{v}");
        Ok(())
    })
    .await?;
    pair.src
        .exec("INSERT INTO app.other VALUES (3, 'z'); INSERT INTO app.items VALUES (4, 'four')")
        .await?;
    wait_until(SYNC_TIMEOUT, "app.items row 4", || async {
        ensure!(rows(&pair.dst, "app.items").await? == rows(&pair.src, "app.items").await?);
        Ok(())
    })
    .await?;
    ensure!(
        pair.dst.count("app", "other").await? == 2,
        "app.other still flows after the update left it out"
    );
    wait_until(SYNC_TIMEOUT, "app.nokey equal after the update", || async {
        ensure!(keyless(&pair.dst).await? == keyless(&pair.src).await?);
        Ok(())
    })
    .await?;
    // Widening the filter again: app.other's rows written while it was left out would never
    // be copied, so the update is refused (store untouched) unless it re-snapshots the sync.
    let wide = json!({"source": "src", "targets": ["dst2"], "include": ["app\\..*"]});
    let refused = expect(&api, &owner, "PUT", "/api/v1/syncs/api1", &wide, 409, a).await?;
    ensure!(
        refused["field"] == "resnapshot"
            && refused["detail"]
                .as_str()
                .is_some_and(|d| d.contains("app.other")),
        "{refused}"
    );
    expect(
        &api,
        &owner,
        "PUT",
        "/api/v1/syncs/api1?resnapshot=true",
        &wide,
        200,
        a,
    )
    .await?;
    wait_until(
        SYNC_TIMEOUT,
        "app.other copied by the re-snapshot",
        || async {
            ensure!(rows(&pair.dst, "app.other").await? == rows(&pair.src, "app.other").await?);
            ensure!(rows(&pair.dst, "app.items").await? == rows(&pair.src, "app.items").await?);
            ensure!(keyless(&pair.dst).await? == keyless(&pair.src).await?);
            Ok(())
        },
    )
    .await?;
    println!(
        "app.nokey: {} rows written across the update's restart, none lost or repeated",
        keyless(&pair.src).await?.len()
    );

    // 5. The export round-trips through `fleetsync check` once the password is filled in.
    let r = call(
        &api,
        &viewer,
        "GET",
        "/api/v1/config/export",
        &Value::Null,
        a,
    )
    .await?;
    ensure!(
        r.status == 200 && r.content_type.starts_with("application/toml"),
        "{} {}",
        r.status,
        r.body
    );
    ensure!(
        r.body.contains("name = \"api1\"") && r.body.contains("name = \"dst2\""),
        "{}",
        r.body
    );
    let pw = pair.dir.path().join("dst2.pw");
    std::fs::write(&pw, DEFS_SECRET)?;
    let exported = r.body.replace(
        "# password: not exported (set password_env or password_file)",
        &format!("password_file = {:?}", pw.display().to_string()),
    );
    let check_dir = pair.dir.path().join("check");
    std::fs::create_dir_all(&check_dir)?;
    // Its own state_dir: `check` merges the store of its state_dir, where these live already.
    let live_state = pair.state_dir().display().to_string();
    ensure!(
        file_text.contains(&live_state),
        "no state_dir in {file_text}"
    );
    let own_state = check_dir.join("state").display().to_string();
    let check_text = format!("{}\n{exported}", file_text.replace(&live_state, &own_state));
    let check_config = Fleetsync::write_config(&check_dir, &check_text)?;
    let out = fleetsync_cmd(&["check", "--config", &check_config.display().to_string()]).await?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(
        out.status.success() && stdout.contains("ok: 3 server(s), 2 sync(s) checked"),
        "fleetsync check refused the export: {stdout}{}\n{exported}",
        String::from_utf8_lossy(&out.stderr)
    );
    // `check` on the running config counts the store's definitions too.
    let out = fleetsync_cmd(&["check", "--config", &config.display().to_string()]).await?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(
        out.status.success() && stdout.contains("ok: 3 server(s), 2 sync(s) checked"),
        "check of the running config: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // 6. A restart: the API's definitions are back and running.
    fs.stop(Duration::from_secs(30)).await?;
    pair.src
        .exec(
            "INSERT INTO app.items VALUES (5, 'five'); INSERT INTO app.nokey VALUES (1000), (1000)",
        )
        .await?;
    fs.restart()?;
    wait_api(&api, &owner).await?;
    let view = expect(
        &api,
        &viewer,
        "GET",
        "/api/v1/syncs/api1",
        &Value::Null,
        200,
        a,
    )
    .await?;
    ensure!(view["origin"] == "api", "{view}");
    pair.src
        .exec(
            "UPDATE app.items SET v = 'uno' WHERE id = 1; INSERT INTO app.items VALUES (6, 'six')",
        )
        .await?;
    wait_until(
        SYNC_TIMEOUT,
        "app.items equal after the restart",
        || async {
            ensure!(rows(&pair.dst, "app.items").await? == rows(&pair.src, "app.items").await?);
            ensure!(keyless(&pair.dst).await? == keyless(&pair.src).await?);
            Ok(())
        },
    )
    .await?;
    println!(
        "after the restart app.items equal row by row ({} rows)",
        pair.src.count("app", "items").await?
    );

    // 7. Re-snapshot (confirm needed) repairs a target row changed behind fleetsync's back;
    // `once` runs a scheduled sync now.
    pair.dst.exec("DELETE FROM app.items WHERE id = 2").await?;
    expect(
        &api,
        &owner,
        "POST",
        "/api/v1/syncs/api1/resnapshot",
        &Value::Null,
        409,
        a,
    )
    .await?;
    let r = expect(
        &api,
        &owner,
        "POST",
        "/api/v1/syncs/api1/resnapshot?confirm=true",
        &Value::Null,
        200,
        a,
    )
    .await?;
    ensure!(r["action"] == "resnapshot" && r["dry_run"] == false, "{r}");
    wait_until(
        SYNC_TIMEOUT,
        "app.items reloaded by the re-snapshot",
        || async {
            ensure!(rows(&pair.dst, "app.items").await? == rows(&pair.src, "app.items").await?);
            Ok(())
        },
    )
    .await?;
    pair.src
        .exec("CREATE DATABASE sched; CREATE TABLE sched.t (id INT PRIMARY KEY); INSERT INTO sched.t VALUES (1), (2)")
        .await?;
    let yearly = json!({"name": "api2", "source": "src", "targets": ["dst2"], "include": ["sched\\..*"], "schedule": "0 0 1 1 *"});
    expect(&api, &owner, "POST", "/api/v1/syncs", &yearly, 200, a).await?;
    expect(
        &api,
        &owner,
        "POST",
        "/api/v1/syncs/api1/once",
        &Value::Null,
        409,
        a,
    )
    .await?;
    let r = expect(
        &api,
        &owner,
        "POST",
        "/api/v1/syncs/api2/once",
        &Value::Null,
        200,
        a,
    )
    .await?;
    ensure!(r["action"] == "once", "{r}");
    wait_until(SYNC_TIMEOUT, "sched.t copied by the run", || async {
        ensure!(rows(&pair.dst, "sched.t").await? == rows(&pair.src, "sched.t").await?);
        Ok(())
    })
    .await?;
    // A schedule made over the API runs the scheduled sync when triggered; it may not name a
    // continuous sync, and keeps its sync from being deleted.
    let bad = json!({"name": "every-api1", "cron": "0 0 1 1 *", "kind": "sync", "target": "api1"});
    let p = expect(&api, &owner, "POST", "/api/v1/schedules", &bad, 400, a).await?;
    ensure!(p["field"] == "schedules.every-api1.target", "{p}");
    let sched =
        json!({"name": "every-api2", "cron": "0 0 1 1 *", "kind": "sync", "target": "api2"});
    expect(&api, &owner, "POST", "/api/v1/schedules", &sched, 200, a).await?;
    let listed = expect(
        &api,
        &viewer,
        "GET",
        "/api/v1/schedules",
        &Value::Null,
        200,
        a,
    )
    .await?;
    ensure!(listed == json!([sched]), "{listed}");
    pair.src.exec("INSERT INTO sched.t VALUES (3)").await?;
    let r = expect(
        &api,
        &owner,
        "POST",
        "/api/v1/schedules/every-api2/trigger",
        &Value::Null,
        200,
        a,
    )
    .await?;
    ensure!(r["action"] == "trigger", "{r}");
    wait_until(
        SYNC_TIMEOUT,
        "sched.t row 3 copied by the triggered schedule",
        || async {
            ensure!(rows(&pair.dst, "sched.t").await? == rows(&pair.src, "sched.t").await?);
            Ok(())
        },
    )
    .await?;
    expect(
        &api,
        &owner,
        "DELETE",
        "/api/v1/syncs/api2?confirm=true",
        &Value::Null,
        409,
        a,
    )
    .await?;
    expect(
        &api,
        &owner,
        "DELETE",
        "/api/v1/schedules/every-api2",
        &Value::Null,
        200,
        a,
    )
    .await?;
    expect(
        &api,
        &owner,
        "DELETE",
        "/api/v1/syncs/api2?confirm=true",
        &Value::Null,
        200,
        a,
    )
    .await?;

    // 8. A confirmed delete stops the pipelines (a row after it does not arrive, while the
    // file's sync still runs).
    let plan = expect(
        &api,
        &owner,
        "DELETE",
        "/api/v1/syncs/api1?confirm=true",
        &Value::Null,
        200,
        a,
    )
    .await?;
    ensure!(
        plan["action"] == "delete" && plan["dry_run"] == false,
        "{plan}"
    );
    expect(
        &api,
        &viewer,
        "GET",
        "/api/v1/syncs/api1",
        &Value::Null,
        404,
        a,
    )
    .await?;
    wait_until(SYNC_TIMEOUT, "api1's pipelines gone", || async {
        let h = expect(
            &api,
            &viewer,
            "GET",
            "/api/v1/health",
            &Value::Null,
            200,
            &mut Vec::new(),
        )
        .await?;
        ensure!(!h.to_string().contains("api1"), "{h}");
        Ok(())
    })
    .await?;
    pair.src
        .exec("INSERT INTO app.items VALUES (7, 'seven'); INSERT INTO marks.m VALUES (1)")
        .await?;
    wait_until(SYNC_TIMEOUT, "the file sync's marker row", || async {
        ensure!(pair.dst.count("marks", "m").await? == 1);
        Ok(())
    })
    .await?;
    ensure!(
        pair.dst.count("app", "items").await? == 6,
        "a deleted sync still applied rows"
    );
    expect(
        &api,
        &owner,
        "DELETE",
        "/api/v1/servers/dst2",
        &Value::Null,
        200,
        a,
    )
    .await?;

    // 9. The password: never in an answer, the store, the log or the audit log.
    let audit = call(
        &api,
        &owner,
        "GET",
        "/api/v1/audit?limit=1000",
        &Value::Null,
        a,
    )
    .await?;
    ensure!(audit.status == 200, "{}", audit.body);
    fs.stop(Duration::from_secs(30)).await?;
    let mut places: Vec<(String, String)> = answers
        .iter()
        .enumerate()
        .map(|(i, a)| (format!("answer {i}"), a.clone()))
        .collect();
    // Every file of STATE_DIR/api: the store, the audit log, the token store.
    for entry in std::fs::read_dir(pair.state_dir().join("api"))? {
        let p = entry?.path();
        places.push((p.display().to_string(), std::fs::read_to_string(&p)?));
    }
    places.push(("log".into(), std::fs::read_to_string(fs.log_path())?));
    for (place, text) in &places {
        ensure!(!text.contains(DEFS_SECRET), "{place} shows the password");
    }
    let log = std::fs::read_to_string(fs.log_path())?;
    ensure!(
        log.contains("definition changed over the API")
            && log.contains("stopping sync (definition changed or deleted)"),
        "no log lines for the changes and the restart"
    );
    println!(
        "the password is in none of {} answers and files",
        places.len()
    );
    let _ = std::fs::read(&key).context("key")?;
    Ok(())
}
