//! The dashboard's Servers and Syncs pages in a real browser (web/tests/syncs.mjs, see
//! docs/dashboard.md): with the file's sync `s1` running and a third MariaDB server the file
//! does not know, an admin adds that server from the Servers page (its URL with the password
//! in it), tests its connection (every check ok), adds a second server with a wrong password
//! (the failed check in words) and deletes it; creates a sync from `src` to the new server
//! from the Syncs page after the filter's preview (matched tables, a keyless one), watches
//! rows arrive, pauses and resumes it, widens its filter (refused in words, saved with a
//! re-snapshot) and re-snapshots it. A viewer sees the lists and no control. This side then
//! checks the new server's tables row by row against the source, and the audit log.
//!
//! Needs what scripts/test.sh installs (chromium, web/node_modules, a built dashboard).

use std::time::Duration;

use anyhow::{ensure, Result};
use fleetsync_tests::{wait_until, MariaDb};

use super::browser::{Browser, Writer};
use super::start_stack;
use crate::support::{Pair, SYNC_TIMEOUT};

/// The new server's user password (must never show in the page, answers or the log).
const THIRD_SECRET: &str = "Third-Secret-41d9";
const WRONG_SECRET: &str = "Wrong-Secret-0000";
/// Rows of shop.bulk, which the widened filter adds: enough for its snapshot to take a few
/// seconds (~7 s for 300,000 rows in a debug build here), so the page shows its progress.
const BULK_ROWS: u32 = 300_000;

async fn rows(db: &MariaDb, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
    db.query_strings(sql).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_and_syncs_in_chromium() -> Result<()> {
    let browser = Browser::ready()?;
    let (pair, third) = tokio::join!(Pair::start(), MariaDb::start(63));
    let (pair, third) = (pair?, third?);
    pair.src
        .exec(&format!(
            "CREATE DATABASE app; CREATE TABLE app.items (id INT PRIMARY KEY, v VARCHAR(20)); \
             INSERT INTO app.items VALUES (1, 'one'); CREATE DATABASE shop; \
             CREATE TABLE shop.orders (id INT AUTO_INCREMENT PRIMARY KEY, item VARCHAR(20), qty INT); \
             CREATE TABLE shop.events (at INT, what VARCHAR(20)); \
             CREATE TABLE shop.archive (id INT PRIMARY KEY, note VARCHAR(20)); \
             INSERT INTO shop.orders (item, qty) VALUES ('pen', 1), ('ink', 2), ('pad', 3); \
             INSERT INTO shop.events VALUES (1, 'open'), (1, 'open'), (2, 'close'); \
             INSERT INTO shop.archive VALUES (1, 'old'), (2, 'older'); \
             CREATE TABLE shop.bulk (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(100)); \
             SET SESSION max_recursive_iterations = 1000000; \
             INSERT INTO shop.bulk (v) WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {BULK_ROWS}) \
             SELECT CONCAT(i, REPEAT('x', 80)) FROM n; ANALYZE TABLE shop.bulk",
        ))
        .await?;
    third
        .create_user("fsui", THIRD_SECRET, &["ALL PRIVILEGES ON *.*"])
        .await?;
    let key = pair.dir.path().join("secret.key");
    std::fs::write(&key, "5".repeat(64))?;
    let stack = start_stack(
        &pair,
        "",
        &format!("secret_key_file = {:?}\n", key.display().to_string()),
        &[("admin-ui", "admin"), ("look-ui", "viewer")],
    )
    .await?;
    let (admin, viewer) = (&stack.tokens[0], &stack.tokens[1]);

    // Orders keep coming while the browser watches, until the script ends.
    let writer = Writer::start(
        pair.src.pool(),
        "INSERT INTO shop.orders (item, qty) VALUES ('a', 1), ('b', 2); \
                     INSERT INTO shop.events VALUES (3, 'tick')",
        Duration::from_millis(150),
    );

    let port = third.port();
    let result = browser
        .run_script(
            "syncs.mjs",
            stack.api_port,
            &[
                ("ADMIN_TOKEN", admin),
                ("VIEWER_TOKEN", viewer),
                ("SERVER", "third"),
                (
                    "SERVER_URL",
                    &format!("mysql://fsui:{THIRD_SECRET}@127.0.0.1:{port}"),
                ),
                ("SERVER_PASSWORD", THIRD_SECRET),
                ("BAD_URL", &format!("mysql://fsui@127.0.0.1:{port}")),
                ("BAD_PASSWORD", WRONG_SECRET),
                ("SYNC", "s2"),
            ],
            &stack.fs,
        )
        .await;
    writer.stop().await?;
    result?;

    // The sync made in the browser brought every table of its (widened) filter, row by row.
    for (table, order) in [
        ("shop.orders", "id"),
        ("shop.events", "at, what"),
        ("shop.archive", "id"),
    ] {
        let sql = format!("SELECT * FROM {table} ORDER BY {order}");
        wait_until(
            SYNC_TIMEOUT,
            &format!("{table} on the new server"),
            || async {
                let (want, got) = (rows(&pair.src, &sql).await?, rows(&third, &sql).await?);
                ensure!(
                    want == got,
                    "{} rows on the source, {} on the new server",
                    want.len(),
                    got.len()
                );
                Ok(())
            },
        )
        .await?;
    }
    // shop.bulk (copied by the re-snapshots): compared by count and a checksum of its rows.
    let sum = "SELECT COUNT(*), SUM(CRC32(CONCAT(id, ':', v))) FROM shop.bulk";
    let (want, got) = (rows(&pair.src, sum).await?, rows(&third, sum).await?);
    ensure!(
        want == got,
        "shop.bulk: {want:?} on the source, {got:?} on the new server"
    );
    let orders = third.count("shop", "orders").await?;
    ensure!(
        orders > 3,
        "no order written during the test arrived ({orders})"
    );
    let servers = stack.api.get("/api/v1/servers", Some(viewer)).await?;
    ensure!(
        servers.status == 200
            && servers.body.contains("\"third\"")
            && !servers.body.contains("wrongpw"),
        "servers after the test: {}",
        servers.body
    );
    let owner = super::create_token(&stack.config, "audit-syncs", "owner", None).await?;
    for action in [
        "create_server",
        "test_server",
        "delete_server",
        "create_sync",
        "update_sync",
        "pause_sync",
        "resume_sync",
        "resnapshot_sync",
    ] {
        let audit = stack
            .api
            .get(&format!("/api/v1/audit?action={action}"), Some(&owner))
            .await?;
        ensure!(
            audit.status == 200 && audit.body.contains("admin-ui") && audit.body.contains("\"ok\""),
            "{action} by the UI is not in the audit log: {}",
            audit.body
        );
        ensure!(
            !audit.body.contains(THIRD_SECRET) && !audit.body.contains(WRONG_SECRET),
            "a password is in the audit log"
        );
    }
    let log = stack.fs.log_tail(2000);
    ensure!(
        !log.contains(THIRD_SECRET) && !log.contains(WRONG_SECRET),
        "a password is in fleetsync's log"
    );
    browser.ensure_screenshots(&[
        "servers-test-ok",
        "servers-test-failed",
        "syncs-preview",
        "syncs-streaming",
        "syncs-widened",
        "syncs-snapshot-progress",
        "syncs-dark",
        "syncs-viewer",
        "syncs-phone",
    ])?;
    let mut fs = stack.fs;
    fs.ensure_running()?;
    fs.stop(Duration::from_secs(30)).await?;
    Ok(())
}
