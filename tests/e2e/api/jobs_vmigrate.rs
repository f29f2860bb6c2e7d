//! Versioned migrations as jobs against a real `fleetsync run` with the API and a real
//! MariaDB: `migrate-up` with a token holding `migration:execute` runs a V file (the table
//! exists, the history row is applied, the job's report names the file, progress events
//! arrived); a viewer is refused (403); a `dir` with `..` or absolute is refused (400) and
//! nothing runs; `migrate-undo` (`migration:rollback`, gated by `[api] require_approval`)
//! waits for a second admin's approval, then runs the U file; `fleetsync --remote URL migrate
//! up --yes` runs the up job again, and refuses a `--dir` outside the root; without
//! `[migrations] dir` both jobs are refused (409).

use anyhow::{ensure, Context, Result};
use fleetsync_tests::api::{read_stream, sse_events};
use serde_json::{json, Value};

use super::jobs::{cli, finished, start};
use super::jobs2::refused;
use crate::support::Pair;

const JOB_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_versioned_migrate_up_and_undo_jobs() -> Result<()> {
    let pair = Pair::start().await?;
    // The stack's sync needs a table to sync; the migrations run in `vm` on dst only.
    pair.src
        .exec("CREATE DATABASE app; CREATE TABLE app.items (id INT PRIMARY KEY)")
        .await?;
    pair.dst.exec("CREATE DATABASE vm").await?;
    let root = pair.dir.path().join("migrations");
    let mig = root.join("vm");
    std::fs::create_dir_all(&mig)?;
    std::fs::write(
        mig.join("V1__create_items.sql"),
        "CREATE TABLE items (id INT PRIMARY KEY, note VARCHAR(20));\n",
    )?;
    std::fs::write(mig.join("U1__create_items.sql"), "DROP TABLE items;\n")?;
    // A folder outside the root whose file must never run.
    let outside = pair.dir.path().join("outside");
    std::fs::create_dir_all(&outside)?;
    std::fs::write(
        outside.join("V1__evil.sql"),
        "CREATE TABLE evil (id INT PRIMARY KEY);\n",
    )?;
    let sections = format!("[migrations]\ndir = {:?}\n", root.display().to_string());
    let super::Stack {
        mut fs,
        api,
        api_port,
        tokens,
        ..
    } = super::start_stack(
        &pair,
        &sections,
        "require_approval = [\"migration:rollback\"]\n",
        &[("adm", "admin"), ("adm2", "admin"), ("view", "viewer")],
    )
    .await?;
    let [admin, admin2, viewer] =
        <[String; 3]>::try_from(tokens).map_err(|_| anyhow::anyhow!("3 tokens"))?;
    let items = || async {
        pair.dst
            .query_value("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA='vm' AND TABLE_NAME IN ('items', 'evil')")
            .await
    };

    // Refusals: nothing runs.
    let up = json!({"dir": "vm", "servers": "dst", "database": "vm", "confirm": true});
    let p = refused(&api, &viewer, "/api/v1/jobs/migrate-up", &up, 403).await?;
    println!("viewer: {p}");
    for dir in [
        "../outside",
        "vm/../../outside",
        outside.to_str().context("path")?,
    ] {
        let body = json!({"dir": dir, "servers": "dst", "database": "vm", "confirm": true});
        let p = refused(&api, &admin, "/api/v1/jobs/migrate-up", &body, 400).await?;
        ensure!(
            p["detail"]
                .as_str()
                .is_some_and(|d| d.contains("[migrations] dir")),
            "dir {dir}: {p}"
        );
    }
    let p = refused(
        &api,
        &admin,
        "/api/v1/jobs/migrate-up",
        &json!({"dir": "vm", "servers": "dst", "database": "vm"}),
        409,
    )
    .await?;
    ensure!(
        p["detail"].as_str().is_some_and(|d| d.contains("confirm")),
        "{p}"
    );
    ensure!(
        items().await?.as_deref() == Some("0"),
        "a refused job ran SQL"
    );

    // The up job, with its events.
    let stream_token = viewer.clone();
    let events = tokio::spawn(async move {
        read_stream(
            api_port,
            "/api/v1/events",
            Some(&stream_token),
            JOB_TIMEOUT,
            |body| body.contains("\"migrate_up\"") && body.contains("\"succeeded\""),
        )
        .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let id = start(&api, &admin, "migrate-up", &up).await?;
    let j = finished(&api, &admin, &id).await?;
    ensure!(
        j["state"] == "succeeded"
            && j["kind"] == "migrate_up"
            && j["result"]["servers"][0]["server"] == "dst"
            && j["result"]["servers"][0]["outcome"] == "applied"
            && j["result"]["servers"][0]["applied"] == json!(["V1__create_items.sql"])
            && j["result"]["servers"][0]["at_version"] == "1",
        "up job: {j}"
    );
    ensure!(
        j["progress"]["tables_done"].as_u64() >= Some(1),
        "up progress: {}",
        j["progress"]
    );
    let stream = events.await.context("event reader")??;
    let evs = sse_events(&stream.body);
    let progress = evs
        .iter()
        .filter(|(e, d)| e == "job_progress" && d["id"] == id.as_str())
        .count();
    ensure!(progress >= 1, "no progress event for job {id}");
    ensure!(
        pair.dst
            .query_value("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA='vm' AND TABLE_NAME='items'")
            .await?
            .as_deref()
            == Some("1"),
        "the up job did not create vm.items"
    );
    let row = pair
        .dst
        .query_strings("SELECT version, status FROM fleetsync.schema_migrations WHERE name = 'V1__create_items.sql'")
        .await?;
    ensure!(
        row == vec![vec![Some("1".to_string()), Some("applied".to_string())]],
        "history: {row:?}"
    );
    println!("up: {progress} progress event(s), history {row:?}");

    // The undo job waits for a second admin's approval, then runs the U file.
    let undo = json!({"dir": "vm", "servers": "dst", "database": "vm", "confirm": true});
    refused(&api, &viewer, "/api/v1/jobs/migrate-undo", &undo, 403).await?;
    let r = api
        .post("/api/v1/jobs/migrate-undo", Some(&admin), &undo.to_string())
        .await?;
    ensure!(r.status == 202, "undo: {} {}", r.status, r.body);
    let j: Value = r.json()?;
    ensure!(
        j["state"] == "awaiting_approval" && j["approval"]["permission"] == "migration:rollback",
        "a gated undo: {j}"
    );
    let id = j["id"].as_str().context("id")?.to_string();
    ensure!(
        items().await?.as_deref() == Some("1"),
        "the undo ran before its approval"
    );
    let r = api
        .post(&format!("/api/v1/jobs/{id}/approve"), Some(&admin2), "")
        .await?;
    ensure!(r.status == 200, "approve: {} {}", r.status, r.body);
    let j = finished(&api, &admin, &id).await?;
    ensure!(
        j["state"] == "succeeded"
            && j["result"]["action"] == "undo"
            && j["result"]["servers"][0]["files"] == json!(["V1__create_items.sql"]),
        "undo job: {j}"
    );
    ensure!(items().await?.as_deref() == Some("0"), "undo left vm.items");
    println!(
        "undo: approved by a second admin, vm.items dropped: {}",
        j["result"]
    );

    // The remote CLI: `migrate up --yes --remote` runs the same job (dir relative to the root).
    let url = format!("http://127.0.0.1:{api_port}");
    let (code, out, err) = cli(
        &[
            "--remote",
            &url,
            "--token",
            &admin,
            "migrate",
            "up",
            "--dir",
            "vm",
            "--servers",
            "dst",
            "--database",
            "vm",
            "--yes",
            "--json",
        ],
        &[],
    )
    .await?;
    let rep: Value = serde_json::from_str(&out).with_context(|| format!("{code} {out} {err}"))?;
    ensure!(
        code == 0
            && rep["servers"][0]["applied"] == json!(["V1__create_items.sql"])
            && items().await?.as_deref() == Some("1"),
        "remote up: {code} {out} {err}"
    );
    let (code, out, err) = cli(
        &[
            "--remote",
            &url,
            "--token",
            &admin,
            "migrate",
            "up",
            "--dir",
            "../outside",
            "--servers",
            "dst",
            "--database",
            "vm",
            "--yes",
        ],
        &[],
    )
    .await?;
    ensure!(
        code != 0 && err.contains("[migrations] dir") && items().await?.as_deref() == Some("1"),
        "remote up outside the root: {code} {out} {err}"
    );
    println!(
        "remote CLI: up applied V1 again; ../outside refused: {}",
        err.trim()
    );
    fs.stop(std::time::Duration::from_secs(30)).await?;
    Ok(())
}

/// The history rows of scope `vm` on `db`: (version, status), oldest first.
async fn vm_history(db: &fleetsync_tests::MariaDb) -> Result<Vec<(String, String)>> {
    let rows = db
        .query_strings(
            "SELECT version, status FROM fleetsync.schema_migrations WHERE scope = 'vm' ORDER BY id",
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let mut it = r.into_iter();
            (
                it.next().flatten().unwrap_or_default(),
                it.next().flatten().unwrap_or_default(),
            )
        })
        .collect())
}

/// Waits until `file`'s latest history row on `db` is `status` (the job is inside that file).
async fn wait_status(db: &fleetsync_tests::MariaDb, file: &str, status: &str) -> Result<()> {
    fleetsync_tests::wait_until(JOB_TIMEOUT, &format!("{file} {status}"), || async {
        let s = db
            .query_value(&format!(
                "SELECT status FROM fleetsync.schema_migrations WHERE scope = 'vm' \
                 AND name = '{file}' ORDER BY id DESC LIMIT 1"
            ))
            .await?;
        ensure!(s.as_deref() == Some(status), "{file}: {s:?}");
        Ok(())
    })
    .await
}

/// Cancelling a running `migrate-up` job stops it between files: the file running when the
/// cancel came (a `SELECT SLEEP(3)`) completes and is recorded, the later ones never run, the
/// job ends `cancelled` with the report of what ran. The same for `migrate-undo --to 1`: the
/// U file running (U3, which sleeps) completes, the older one (V2) stays applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_versioned_migrate_jobs_cancel_between_files() -> Result<()> {
    let pair = Pair::start().await?;
    pair.src
        .exec("CREATE DATABASE app; CREATE TABLE app.items (id INT PRIMARY KEY)")
        .await?;
    pair.dst.exec("CREATE DATABASE vm").await?;
    let root = pair.dir.path().join("migrations");
    let mig = root.join("vm");
    std::fs::create_dir_all(&mig)?;
    let files = [
        (
            "V1__a.sql",
            "CREATE TABLE a (id INT PRIMARY KEY);\n",
            "DROP TABLE a;\n",
        ),
        (
            "V2__slow.sql",
            "CREATE TABLE b (id INT PRIMARY KEY);\nSELECT SLEEP(3);\n",
            "DROP TABLE b;\n",
        ),
        (
            "V3__c.sql",
            "CREATE TABLE c (id INT PRIMARY KEY);\n",
            "DROP TABLE c;\nSELECT SLEEP(3);\n",
        ),
        (
            "V4__d.sql",
            "CREATE TABLE d (id INT PRIMARY KEY);\n",
            "DROP TABLE d;\n",
        ),
    ];
    for (name, up, undo) in files {
        std::fs::write(mig.join(name), up)?;
        std::fs::write(mig.join(format!("U{}", &name[1..])), undo)?;
    }
    let sections = format!("[migrations]\ndir = {:?}\n", root.display().to_string());
    let super::Stack {
        mut fs,
        api,
        tokens,
        ..
    } = super::start_stack(&pair, &sections, "", &[("adm", "admin")]).await?;
    let admin = tokens.first().context("a token")?.clone();
    let tables = || async {
        pair.dst
            .query_strings(
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'vm' \
                 ORDER BY TABLE_NAME",
            )
            .await
            .map(|rows| {
                rows.into_iter()
                    .filter_map(|r| r.into_iter().next().flatten())
                    .collect::<Vec<String>>()
            })
    };

    // Up: cancelled while V2 sleeps.
    let body = json!({"dir": "vm", "servers": "dst", "database": "vm", "confirm": true});
    let id = start(&api, &admin, "migrate-up", &body).await?;
    wait_status(&pair.dst, "V2__slow.sql", "running").await?;
    let r = api
        .post(&format!("/api/v1/jobs/{id}/cancel"), Some(&admin), "")
        .await?;
    ensure!(r.status == 200, "cancel: {} {}", r.status, r.body);
    let j = finished(&api, &admin, &id).await?;
    let s = &j["result"]["servers"][0];
    ensure!(
        j["state"] == "cancelled"
            && j["result"]["cancelled"] == true
            && s["outcome"] == "cancelled"
            && s["applied"] == json!(["V1__a.sql", "V2__slow.sql"])
            && s["at_version"] == "2",
        "cancelled up job: {j}"
    );
    ensure!(
        j["result"]["halted"]
            .as_str()
            .is_some_and(|h| h.contains("cancelled")),
        "the report does not say it was cancelled: {j}"
    );
    let h = vm_history(&pair.dst).await?;
    ensure!(
        h == [
            ("1".to_string(), "applied".to_string()),
            ("2".into(), "applied".into())
        ],
        "history after the cancelled up: {h:?}"
    );
    ensure!(
        tables().await? == ["a", "b"],
        "tables: {:?}",
        tables().await?
    );
    println!(
        "up cancelled during V2: V1, V2 applied, V3, V4 not run: {}",
        j["result"]
    );

    // Up again runs the rest.
    let id = start(&api, &admin, "migrate-up", &body).await?;
    let j = finished(&api, &admin, &id).await?;
    ensure!(
        j["state"] == "succeeded"
            && j["result"]["servers"][0]["applied"] == json!(["V3__c.sql", "V4__d.sql"]),
        "resumed up job: {j}"
    );

    // Undo down to 1: cancelled while U3 sleeps (after U4); U2 never runs.
    let undo = json!({"dir": "vm", "servers": "dst", "database": "vm", "to": "1", "confirm": true});
    let id = start(&api, &admin, "migrate-undo", &undo).await?;
    wait_until_undoing_v3(&pair.dst).await?;
    let r = api
        .post(&format!("/api/v1/jobs/{id}/cancel"), Some(&admin), "")
        .await?;
    ensure!(r.status == 200, "cancel undo: {} {}", r.status, r.body);
    let j = finished(&api, &admin, &id).await?;
    let s = &j["result"]["servers"][0];
    ensure!(
        j["state"] == "cancelled"
            && j["result"]["cancelled"] == true
            && s["files"] == json!(["V4__d.sql", "V3__c.sql"])
            && s["route"] == "direct"
            && s["at_version"] == "2",
        "cancelled undo job: {j}"
    );
    ensure!(
        tables().await? == ["a", "b"],
        "tables: {:?}",
        tables().await?
    );
    let applied = pair
        .dst
        .query_strings(
            "SELECT version FROM fleetsync.schema_migrations WHERE scope = 'vm' AND status = 'applied' ORDER BY id",
        )
        .await?;
    ensure!(
        applied == [vec![Some("1".to_string())], vec![Some("2".to_string())]],
        "applied after the cancelled undo: {applied:?}"
    );
    println!(
        "undo cancelled during U3: V4, V3 undone, V2 stays: {}",
        j["result"]
    );
    fs.stop(std::time::Duration::from_secs(30)).await?;
    Ok(())
}

/// Waits until the undo job runs U3 (`c` is gone: its DROP ran, its SLEEP runs; V3's row is
/// marked rolled back only after the file).
async fn wait_until_undoing_v3(db: &fleetsync_tests::MariaDb) -> Result<()> {
    fleetsync_tests::wait_until(JOB_TIMEOUT, "U3 running", || async {
        let c = db
            .query_value(
                "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'vm' \
                 AND TABLE_NAME = 'c'",
            )
            .await?;
        ensure!(c.as_deref() == Some("0"), "c still there");
        Ok(())
    })
    .await
}
