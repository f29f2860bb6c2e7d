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
