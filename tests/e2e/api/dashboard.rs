//! The web dashboard (docs/dashboard.md) in a real browser: web/tests/dashboard.mjs drives
//! Debian's chromium (playwright-core) against a live `fleetsync run` with two MariaDB servers
//! while this test keeps writing rows to the source: an operator logs in, sees the sync stream
//! and its rows/s move, pauses and resumes it, opens a job's log; a viewer sees no control.
//! Screenshots go to target/dashboard-screenshots/.
//!
//! Needs what scripts/test.sh installs: chromium, web/node_modules (`npm ci`) and a binary
//! built after `npm run build` (it embeds web/dist). Without them the test fails and says so.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use fleetsync_tests::api::ApiClient;
use fleetsync_tests::Fleetsync;

use super::browser::Browser;
use crate::support::{dead_port, Pair, SYNC_TIMEOUT};

use super::*;

/// Schema diffs wait for a second person's approval: such a job stays active until the UI
/// cancels it.
const APPROVAL: &str = "require_approval = [\"migration:read\"]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_chromium() -> Result<()> {
    let browser = Browser::ready()?;
    let pair = Pair::start().await?;
    pair.src
        .exec("CREATE DATABASE app; CREATE TABLE app.items (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(20)); INSERT INTO app.items (v) VALUES ('one')")
        .await?;
    let api_port = dead_port()?;
    let base = pair.config_listening(&["app\\..*"], dead_port()?)?;
    let text = std::fs::read_to_string(&base)?
        + &format!("\n[api]\nlisten = \"127.0.0.1:{api_port}\"\n{APPROVAL}");
    let config = Fleetsync::write_config(pair.dir.path(), &text)?;
    let operator = create_token(&config, "ops-ui", "operator", None).await?;
    let viewer = create_token(&config, "look-ui", "viewer", None).await?;
    let mut fs = Fleetsync::run(&config)?;
    fs.wait_synced(&pair.src, &pair.dst, "app", SYNC_TIMEOUT)
        .await?;
    let api = ApiClient::http(api_port);
    wait_api(&api, &operator).await?;

    // A job for the Jobs page (its log is what the script opens).
    let job = api
        .post(
            "/api/v1/jobs/health",
            Some(&operator),
            r#"{"server": "src"}"#,
        )
        .await?;
    ensure!(job.status == 202, "health job: {} {}", job.status, job.body);
    // Two jobs waiting for an approval: the operator cancels one in the browser, the viewer
    // must be offered no cancel for the other.
    let mut waiting = Vec::new();
    for _ in 0..2 {
        let r = api
            .post(
                "/api/v1/jobs/schema-diff",
                Some(&operator),
                r#"{"source": "src/app", "target": "dst/app"}"#,
            )
            .await?;
        ensure!(
            r.status == 202 && r.json()?["state"] == "awaiting_approval",
            "schema diff job: {} {}",
            r.status,
            r.body
        );
        waiting.push(r.json()?["id"].as_str().context("job id")?.to_string());
    }

    // Rows keep arriving while the browser watches: a few a second, until the script ends.
    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let (pool, writing) = (pair.src.pool(), writing.clone());
        tokio::spawn(async move {
            use mysql_async::prelude::Queryable;
            let mut conn = pool.get_conn().await?;
            while writing.load(Ordering::Relaxed) {
                conn.query_drop("INSERT INTO app.items (v) VALUES ('a'), ('b'), ('c'), ('d')")
                    .await?;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            drop(conn);
            pool.disconnect().await?;
            anyhow::Ok(())
        })
    };

    let result = browser
        .run_script(
            "dashboard.mjs",
            api_port,
            &[
                ("OPERATOR_TOKEN", &operator),
                ("VIEWER_TOKEN", &viewer),
                ("SYNC", "s1"),
                ("TARGET", "dst"),
            ],
            &fs,
        )
        .await;
    writing.store(false, Ordering::Relaxed);
    writer.await??;
    result?;
    // One job waiting for an approval was cancelled in the browser, the other still waits.
    let mut states = Vec::new();
    for id in &waiting {
        let job = api
            .get(&format!("/api/v1/jobs/{id}"), Some(&operator))
            .await?;
        states.push(
            job.json()?["state"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    states.sort();
    ensure!(
        states == ["awaiting_approval", "cancelled"],
        "the jobs waiting for an approval: {states:?}"
    );
    browser.ensure_screenshots(&[
        "overview-operator",
        "overview-paused",
        "jobs-operator",
        "overview-viewer",
    ])?;
    // The UI's calls went through the API and were audited: the pause and the resume.
    let audit = api
        .get(
            "/api/v1/audit?action=pause_sync",
            Some(&create_token(&config, "audit-ui", "owner", None).await?),
        )
        .await?;
    ensure!(
        audit.status == 200 && audit.body.contains("ops-ui"),
        "the UI's pause is not in the audit log: {}",
        audit.body
    );
    ensure!(
        !fs.log_tail(500).contains(&operator) && !fs.log_tail(500).contains(&viewer),
        "a token is in fleetsync's log"
    );
    fs.ensure_running()?;
    fs.stop(Duration::from_secs(30)).await?;
    Ok(())
}
