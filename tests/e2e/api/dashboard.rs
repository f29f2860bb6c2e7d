//! The web dashboard (docs/dashboard.md) in a real browser: web/tests/dashboard.mjs drives
//! Debian's chromium (playwright-core) against a live `fleetsync run` with two MariaDB servers
//! while this test keeps writing rows to the source: an operator logs in, sees the sync stream
//! and its rows/s move, pauses and resumes it, opens a job's log; a viewer sees no control.
//! Screenshots go to target/dashboard-screenshots/.
//!
//! The Overview's feeds too: a conflict parked on purpose (table `app.inv`, `conflict =
//! "manual"`) must show as a firing alert and an open conflict, the lag chart must draw points,
//! the servers must show reachable with their binlog positions. A backup the operator requests
//! waits for a second person (`backup:create` needs an approval here): the operator's own
//! approval is refused, the owner approves it in the browser and it runs. The owner finds the
//! UI's pause on the Audit page with filters; the Overview is shot in the dark theme (axe there
//! too); a keyboard-only walkthrough logs in and pauses/resumes the sync.
//!
//! Needs what scripts/test.sh installs: chromium, web/node_modules (`npm ci`) and a binary
//! built after `npm run build` (it embeds web/dist). Without them the test fails and says so.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use fleetsync_tests::api::ApiClient;
use fleetsync_tests::Fleetsync;

use super::browser::{finish, Browser, Writer};
use crate::support::{dead_port, Pair, SYNC_TIMEOUT};

use super::*;

/// Schema diffs wait for a second person's approval: such a job stays active until the UI
/// cancels it. Backups too: the owner approves the operator's in the browser.
const APPROVAL: &str = "require_approval = [\"migration:read\", \"backup:create\"]\n";

/// `app.inv` parks its conflicts for a person to decide (the seeded alert).
const MANUAL: &str = "[[syncs.tables]]\nname = \"app.inv\"\nconflict = \"manual\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_chromium() -> Result<()> {
    let browser = Browser::ready()?;
    let pair = Pair::start().await?;
    pair.src
        .exec("CREATE DATABASE app; CREATE TABLE app.items (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(20)); INSERT INTO app.items (v) VALUES ('one'); \
               CREATE TABLE app.inv (id INT PRIMARY KEY, qty INT NOT NULL); INSERT INTO app.inv VALUES (1, 0)")
        .await?;
    let api_port = dead_port()?;
    let base = pair.config_listening(&["app\\..*"], dead_port()?)?;
    let backups = pair.dir.path().join("backups");
    let text = std::fs::read_to_string(&base)?
        + &format!(
            "\n{MANUAL}\n[backup]\ndir = {:?}\n\n[api]\nlisten = \"127.0.0.1:{api_port}\"\n{APPROVAL}",
            backups.display().to_string()
        );
    let config = Fleetsync::write_config(pair.dir.path(), &text)?;
    let operator = create_token(&config, "ops-ui", "operator", None).await?;
    let viewer = create_token(&config, "look-ui", "viewer", None).await?;
    let owner = create_token(&config, "boss-ui", "owner", None).await?;
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

    // A backup requested by the operator: it waits for the owner's approval in the browser.
    let r = api
        .post(
            "/api/v1/jobs/backup-create",
            Some(&operator),
            r#"{"server": "src", "include": ["app\\.inv"]}"#,
        )
        .await?;
    ensure!(
        r.status == 202 && r.json()?["state"] == "awaiting_approval",
        "backup job: {} {}",
        r.status,
        r.body
    );
    let backup_job = r.json()?["id"].as_str().context("job id")?.to_string();
    // A conflict parked on purpose: the target's row changed by hand, then the source's.
    park_conflict(&pair, &api, &operator).await?;

    // Rows keep arriving while the browser watches: a few a second, until the script ends.
    let writer = Writer::start(
        pair.src.pool(),
        "INSERT INTO app.items (v) VALUES ('a'), ('b'), ('c'), ('d')",
        Duration::from_millis(100),
    );

    let result = browser
        .run_script(
            "dashboard.mjs",
            api_port,
            &[
                ("OPERATOR_TOKEN", &operator),
                ("VIEWER_TOKEN", &viewer),
                ("OWNER_TOKEN", &owner),
                ("APPROVE_JOB", &backup_job),
                ("SYNC", "s1"),
                ("TARGET", "dst"),
            ],
            &fs,
        )
        .await;
    writer.stop().await?;
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
        "overview-dark",
        "jobs-approved",
        "audit-owner",
        "audit-dark",
        "overview-keyboard",
    ])?;
    // The owner's approval in the browser let the operator's backup run.
    let job = api
        .get(&format!("/api/v1/jobs/{backup_job}"), Some(&owner))
        .await?
        .json()?;
    ensure!(
        job["state"] == "succeeded"
            && job["created_by"] == "ops-ui"
            && job["approval"]["approved_by"] == "boss-ui",
        "the approved backup: {job}"
    );
    // The conflict the alert was about is still parked on the target, the row as it was set
    // there by hand.
    let open = pair
        .dst
        .query_value("SELECT COUNT(*) FROM fleetsync.conflicts WHERE status = 'open'")
        .await?;
    let qty = pair
        .dst
        .query_value("SELECT qty FROM app.inv WHERE id = 1")
        .await?;
    ensure!(
        open.as_deref() == Some("1") && qty.as_deref() == Some("2"),
        "the parked conflict on dst: {open:?} open, qty {qty:?}"
    );
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
    // The operator's own approval was refused (audited as denied), the owner's accepted.
    let decisions = api
        .get("/api/v1/audit?action=approve_job", Some(&owner))
        .await?
        .json()?;
    let outcomes: Vec<(String, String)> = decisions
        .as_array()
        .context("audit entries")?
        .iter()
        .map(|e| {
            (
                e["token"].as_str().unwrap_or_default().to_string(),
                e["outcome"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    ensure!(
        outcomes.contains(&("ops-ui".into(), "denied".into()))
            && outcomes.contains(&("boss-ui".into(), "ok".into())),
        "the approvals in the audit log: {outcomes:?}"
    );
    finish(fs, &[&operator, &viewer, &owner]).await
}

/// Parks a manual conflict on `dst` (table `app.inv`): the target's row changed by hand, then
/// the source's; returns once the API lists it.
async fn park_conflict(pair: &Pair, api: &ApiClient, token: &str) -> Result<()> {
    let wait = Duration::from_secs(60);
    fleetsync_tests::wait_until(wait, "app.inv on dst", || async {
        ensure!(pair.dst.count("app", "inv").await? == 1);
        Ok(())
    })
    .await?;
    pair.dst
        .exec("UPDATE app.inv SET qty = 2 WHERE id = 1")
        .await?;
    pair.src
        .exec("UPDATE app.inv SET qty = 1 WHERE id = 1")
        .await?;
    fleetsync_tests::wait_until(wait, "a parked conflict on app.inv", || async {
        let l = api
            .get("/api/v1/conflicts?table=app.inv", Some(token))
            .await?;
        ensure!(
            l.status == 200 && l.json()?.as_array().map_or(0, Vec::len) == 1,
            "{}",
            l.body
        );
        Ok(())
    })
    .await
}
