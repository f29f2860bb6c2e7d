//! `fleetsync health`: a healthy server passes every check; a server seeded with problems
//! (a table without a primary key, a duplicate index, a foreign key whose index was dropped
//! under FOREIGN_KEY_CHECKS=0 with orphaned rows, zero dates, a NULL `*_id`, a long-running
//! transaction held open by the test, `binlog_format=STATEMENT`) yields the expected warn and
//! fail entries with evidence; `--fix --dry-run` prints SQL and changes nothing, `--fix --yes`
//! applies only the safe fix; a user lacking grants gets a report naming them; a dead port
//! and a wrong password are a failed `connection` check (critical), not an error; the
//! periodic task of `fleetsync run` exports `fleetsync_health_check_status`.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use fleetsync_tests::fleetsync::toml_str;
use fleetsync_tests::{fleetsync_cmd, Fleetsync, MariaDb};
use mysql_async::prelude::Queryable;
use serde_json::Value;
use tempfile::TempDir;

use crate::support::dead_port;

/// Every check the report must hold, in order.
const CHECKS: [&str; 14] = [
    "connection",
    "privileges",
    "binlog",
    "tables",
    "indexes",
    "foreign_keys",
    "data_integrity",
    "buffer_pool",
    "slow_queries",
    "long_transactions",
    "history_list",
    "disk_space",
    "replication",
    "sync_lag",
];

/// A config with one `[[servers]]` entry per (name, url) plus raw extra TOML.
fn write_config(dir: &Path, servers: &[(&str, &str)], extra: &str) -> Result<PathBuf> {
    let mut text = format!(
        "state_dir = {}\n",
        toml_str(&dir.join("state").to_string_lossy())
    );
    for (name, url) in servers {
        text.push_str(&format!(
            "\n[[servers]]\nname = {}\nurl = {}\n",
            toml_str(name),
            toml_str(url)
        ));
    }
    text.push_str(extra);
    Fleetsync::write_config(dir, &text)
}

async fn health(config: &Path, server: &str, extra: &[&str]) -> Result<Output> {
    let config = config.to_str().context("config path is not UTF-8")?;
    let mut args = vec!["health", "--config", config, "--server", server];
    args.extend_from_slice(extra);
    fleetsync_cmd(&args).await
}

/// Runs `health --json`, checks the exit code and the report's shape, returns the report.
async fn health_json(config: &Path, server: &str, want_code: i32) -> Result<Value> {
    let out = health(config, server, &["--json"]).await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.code() == Some(want_code),
        "health --json exited {:?}, want {want_code}; stderr: {stderr}\nstdout: {stdout}",
        out.status.code()
    );
    let report: Value =
        serde_json::from_str(&stdout).with_context(|| format!("not JSON: {stdout}"))?;
    check_shape(&report)?;
    Ok(report)
}

fn check_shape(report: &Value) -> Result<()> {
    ensure!(
        report["server"].is_string() && report["checked_at"].is_string(),
        "server/checked_at: {report}"
    );
    let status = report["status"].as_str().unwrap_or("");
    ensure!(
        ["healthy", "degraded", "critical"].contains(&status),
        "status {status:?}"
    );
    let checks = report["checks"]
        .as_array()
        .context("checks is not a list")?;
    let names: Vec<&str> = checks.iter().filter_map(|c| c["name"].as_str()).collect();
    ensure!(names == CHECKS, "check names {names:?}");
    for c in checks {
        let s = c["status"].as_str().unwrap_or("");
        ensure!(
            ["pass", "warn", "fail", "skipped"].contains(&s),
            "check status {s:?} in {c}"
        );
        ensure!(
            c["category"].is_string() && c["summary"].is_string(),
            "category/summary: {c}"
        );
        ensure!(
            c["suggestions"].is_array() && c.get("evidence").is_some() && c.get("fix").is_some(),
            "fields: {c}"
        );
    }
    Ok(())
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .and_then(|l| l.iter().find(|c| c["name"] == name))
        .unwrap_or(&Value::Null)
}

fn expect_status(report: &Value, name: &str, want: &str) -> Result<()> {
    let c = check(report, name);
    ensure!(c["status"] == want, "check {name}: want {want}, got {c:#}");
    Ok(())
}

#[tokio::test]
async fn health_healthy_server_passes() -> Result<()> {
    let db = MariaDb::start(41).await?;
    db.exec(
        "CREATE DATABASE app; \
         CREATE TABLE app.parent (id INT PRIMARY KEY, name VARCHAR(20) NOT NULL) ENGINE=InnoDB; \
         CREATE TABLE app.child (id INT PRIMARY KEY, parent_id INT NOT NULL, born DATE NULL, \
           CONSTRAINT fk_child FOREIGN KEY (parent_id) REFERENCES app.parent (id)) ENGINE=InnoDB; \
         INSERT INTO app.parent VALUES (1, 'a'), (2, 'b'); \
         INSERT INTO app.child VALUES (1, 1, '2020-02-29'), (2, 2, NULL)",
    )
    .await?;
    let dir = TempDir::new()?;
    let backup = dir.path().join("backups");
    // The machine's own free space is not this test's subject: thresholds at 0 % make the
    // disk check pass anywhere; the same check with a 100 % threshold must warn (below).
    let extra = format!(
        "\n[backup]\ndir = {}\n\n[health]\ndisk_warn_free_pct = 0\ndisk_fail_free_pct = 0\n",
        toml_str(&backup.to_string_lossy())
    );
    let config = write_config(dir.path(), &[("db", &db.url_root())], &extra)?;
    let full = dir.path().join("full");
    std::fs::create_dir_all(&full)?;
    let strict = write_config(
        &full,
        &[("db", &db.url_root())],
        &extra.replace("disk_warn_free_pct = 0", "disk_warn_free_pct = 100"),
    )?;
    let warned = health_json(&strict, "db", 1).await?;
    expect_status(&warned, "disk_space", "warn")?;
    let report = health_json(&config, "db", 0).await?;
    ensure!(report["status"] == "healthy", "{report:#}");
    for name in CHECKS {
        expect_status(&report, name, "pass")?;
    }
    let conn = &check(&report, "connection")["evidence"];
    ensure!(
        conn["version"].as_str().unwrap_or("").contains("MariaDB"),
        "{conn}"
    );
    let dirs = check(&report, "disk_space")["evidence"]["directories"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let roles: Vec<&str> = dirs
        .iter()
        .filter_map(|d| d["directory"].as_str())
        .collect();
    ensure!(
        roles == ["data", "binlog", "backup"],
        "disk directories {roles:?}"
    );
    ensure!(
        check(&report, "tables")["evidence"]["checked_quick"] == 2,
        "{}",
        check(&report, "tables")
    );
    let text = health(&config, "db", &[]).await?;
    let stdout = String::from_utf8_lossy(&text.stdout);
    ensure!(
        text.status.code() == Some(0) && stdout.contains("overall: healthy"),
        "{stdout}"
    );
    Ok(())
}

/// The seeded problems; the long transaction is held on `hold` by the caller.
async fn seed_problems(db: &MariaDb) -> Result<()> {
    db.exec(
        "SET SESSION sql_mode = ''; CREATE DATABASE app; \
         CREATE TABLE app.nopk (a INT, b INT) ENGINE=InnoDB; \
         INSERT INTO app.nopk VALUES (1, 2); \
         CREATE TABLE app.dup (id INT PRIMARY KEY, x INT, KEY x1 (x), KEY x2 (x)) ENGINE=InnoDB; \
         CREATE TABLE app.parent (id INT PRIMARY KEY) ENGINE=InnoDB; \
         INSERT INTO app.parent VALUES (1); \
         CREATE TABLE app.child (id INT PRIMARY KEY, parent_id INT, \
           CONSTRAINT fk_parent FOREIGN KEY (parent_id) REFERENCES app.parent (id)) ENGINE=InnoDB; \
         SET SESSION foreign_key_checks = 0; \
         ALTER TABLE app.child DROP INDEX fk_parent; \
         INSERT INTO app.child VALUES (1, 1), (2, 42), (3, 42), (4, 43), (5, NULL); \
         SET SESSION foreign_key_checks = 1; \
         CREATE TABLE app.events (id INT PRIMARY KEY, at DATETIME NOT NULL, day DATE NULL, user_id INT NULL) ENGINE=InnoDB; \
         INSERT INTO app.events VALUES (1, '0000-00-00 00:00:00', '2020-00-10', NULL), \
           (2, '2024-01-01 10:00:00', '2024-01-01', 7), (3, '2024-01-01 10:00:00', NULL, NULL); \
         CREATE TABLE app.ledger (id INT PRIMARY KEY, v INT) ENGINE=InnoDB; \
         SET GLOBAL binlog_format = 'STATEMENT'",
    )
    .await
}

#[tokio::test]
async fn health_finds_seeded_problems_and_fixes_only_safe_ones() -> Result<()> {
    let db = MariaDb::start(42).await?;
    seed_problems(&db).await?;
    // A transaction left open: it has written a row, so InnoDB lists it in INNODB_TRX.
    let mut hold = db.pool().get_conn().await?;
    hold.query_drop("START TRANSACTION").await?;
    hold.query_drop("INSERT INTO app.ledger VALUES (1, 1)")
        .await?;
    let dir = TempDir::new()?;
    let other = format!("mysql://root@127.0.0.1:{}", dead_port()?);
    let extra = "\n[[syncs]]\nname = \"s1\"\nsource = \"db\"\ntargets = [\"other\"]\ninclude = [\"app\\\\..*\"]\n\
                 \n[health]\nlong_transaction_secs = 1\n";
    let config = write_config(
        dir.path(),
        &[("db", &db.url_root()), ("other", &other)],
        extra,
    )?;
    tokio::time::sleep(Duration::from_millis(2100)).await;

    let report = health_json(&config, "db", 2).await?;
    ensure!(report["status"] == "critical", "{report:#}");
    expect_status(&report, "connection", "pass")?;
    expect_status(&report, "privileges", "pass")?;
    // The server is a sync's source: a statement-based binlog is a failure.
    expect_status(&report, "binlog", "fail")?;
    ensure!(check(&report, "binlog")["evidence"]["binlog_format"] == "STATEMENT");
    ensure!(check(&report, "binlog")["fix"]["safe"] == false);

    expect_status(&report, "indexes", "warn")?;
    let ev = &check(&report, "indexes")["evidence"];
    ensure!(
        ev["tables_without_primary_key"]
            .to_string()
            .contains("app.nopk"),
        "{ev}"
    );
    let redundant = ev["redundant_indexes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    ensure!(
        redundant.len() == 1 && redundant[0]["index"] == "x2" && redundant[0]["covered_by"] == "x1",
        "redundant: {redundant:?}"
    );
    let unindexed = ev["foreign_keys_without_index"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    ensure!(
        unindexed.len() == 1 && unindexed[0]["constraint"] == "fk_parent",
        "{unindexed:?}"
    );
    let fix = &check(&report, "indexes")["fix"];
    ensure!(
        fix["safe"] == true && fix["sql"].to_string().contains("ADD INDEX"),
        "{fix}"
    );

    expect_status(&report, "foreign_keys", "fail")?;
    let orphaned = &check(&report, "foreign_keys")["evidence"]["orphaned"][0];
    ensure!(orphaned["orphaned_rows"] == 3, "{orphaned}");
    let keys = orphaned["missing_parent_keys"].to_string();
    ensure!(keys.contains("42") && keys.contains("43"), "{keys}");

    expect_status(&report, "data_integrity", "warn")?;
    let ev = &check(&report, "data_integrity")["evidence"];
    let dates = ev["invalid_dates"].as_array().cloned().unwrap_or_default();
    let cols: Vec<(&str, u64)> = dates
        .iter()
        .map(|d| {
            (
                d["column"].as_str().unwrap_or(""),
                d["invalid_values"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    ensure!(cols == [("at", 1), ("day", 1)], "invalid dates {cols:?}");
    let nulls = ev["nulls_in_not_null_intended_columns"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    ensure!(
        nulls.len() == 1 && nulls[0]["column"] == "user_id" && nulls[0]["null_values"] == 2,
        "nulls {nulls:?} (child.parent_id is a foreign key: optional by design)"
    );

    expect_status(&report, "long_transactions", "warn")?;
    let hold_id = hold.id();
    let trx = check(&report, "long_transactions")["evidence"]["transactions"].to_string();
    ensure!(
        trx.contains(&format!("\"thread_id\":{hold_id}")),
        "thread {hold_id} not in {trx}"
    );

    dry_run_changes_nothing(&db, &config).await?;
    fix_applies_only_the_safe_fix(&db, &config).await?;
    hold.query_drop("ROLLBACK").await?;
    drop(hold);
    Ok(())
}

async fn fingerprint(db: &MariaDb) -> Result<String> {
    let create = db.query_strings("SHOW CREATE TABLE app.child").await?;
    let format = db.query_value("SELECT @@GLOBAL.binlog_format").await?;
    let dup = db.query_strings("SHOW CREATE TABLE app.dup").await?;
    Ok(format!("{create:?} {dup:?} {format:?}"))
}

async fn dry_run_changes_nothing(db: &MariaDb, config: &Path) -> Result<()> {
    let before = fingerprint(db).await?;
    let out = health(config, "db", &["--fix", "--dry-run"]).await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.code() == Some(2),
        "dry run exit {:?}: {stdout}",
        out.status.code()
    );
    ensure!(
        stdout.contains(
            "[dry run] ALTER TABLE `app`.`child` ADD INDEX `fk_parent_idx` (`parent_id`)"
        ),
        "dry run must print the safe fix: {stdout}"
    );
    ensure!(
        stdout.contains("SET GLOBAL binlog_format = 'ROW'"),
        "the unsafe fix is listed: {stdout}"
    );
    ensure!(
        fingerprint(db).await? == before,
        "--fix --dry-run changed the server"
    );
    // --fix without --yes and without a terminal refuses and changes nothing.
    let out = health(config, "db", &["--fix"]).await?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.code() == Some(3) && stderr.contains("--yes"),
        "{stderr}"
    );
    ensure!(
        fingerprint(db).await? == before,
        "--fix without confirmation changed the server"
    );
    Ok(())
}

async fn fix_applies_only_the_safe_fix(db: &MariaDb, config: &Path) -> Result<()> {
    let out = health(config, "db", &["--fix", "--yes", "--json"]).await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value =
        serde_json::from_str(&stdout).with_context(|| format!("not JSON: {stdout}"))?;
    check_shape(&report)?;
    let applied: Vec<&str> = report["fixes"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter(|f| f["applied"] == true)
                .filter_map(|f| f["sql"].as_str())
                .collect()
        })
        .unwrap_or_default();
    ensure!(
        applied.len() == 1 && applied[0].contains("ADD INDEX `fk_parent_idx`"),
        "applied {applied:?}"
    );
    let create = db.query_strings("SHOW CREATE TABLE app.child").await?;
    ensure!(
        format!("{create:?}").contains("KEY `fk_parent_idx` (`parent_id`)"),
        "{create:?}"
    );
    let unindexed = &check(&report, "indexes")["evidence"]["foreign_keys_without_index"];
    ensure!(
        unindexed.as_array().is_some_and(|l| l.is_empty()),
        "after the fix: {unindexed}"
    );
    ensure!(
        db.query_value("SELECT @@GLOBAL.binlog_format")
            .await?
            .as_deref()
            == Some("STATEMENT")
    );
    ensure!(db
        .query_strings("SHOW CREATE TABLE app.dup")
        .await?
        .iter()
        .flatten()
        .flatten()
        .any(|s| s.contains("KEY `x2`")));
    Ok(())
}

#[tokio::test]
async fn health_reports_missing_grants_and_unreachable_servers() -> Result<()> {
    let db = MariaDb::start(43).await?;
    db.exec("CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY) ENGINE=InnoDB")
        .await?;
    db.create_user("lim", "limpw", &["SELECT ON app.*"]).await?;
    let dir = TempDir::new()?;
    let dead = format!("mysql://root:s3cret-dead@127.0.0.1:{}", dead_port()?);
    let wrong = db.url_user("lim", "wrong-s3cret");
    let servers = [
        ("lim", db.url_user("lim", "limpw")),
        ("dead", dead),
        ("wrong", wrong),
        ("other", db.url_root()),
    ];
    let servers: Vec<(&str, &str)> = servers.iter().map(|(n, u)| (*n, u.as_str())).collect();
    let extra = "\n[[syncs]]\nname = \"s1\"\nsource = \"lim\"\ntargets = [\"other\"]\ninclude = [\"app\\\\..*\"]\n";
    let config = write_config(dir.path(), &servers, extra)?;

    let report = health_json(&config, "lim", 2).await?;
    expect_status(&report, "connection", "pass")?;
    expect_status(&report, "privileges", "fail")?;
    let p = check(&report, "privileges");
    let missing: Vec<&str> = p["evidence"]["missing"]
        .as_array()
        .map(|l| l.iter().filter_map(|m| m["privilege"].as_str()).collect())
        .unwrap_or_default();
    ensure!(
        missing == ["REPLICATION SLAVE", "BINLOG MONITOR"],
        "missing {missing:?}"
    );
    let summary = p["summary"].as_str().unwrap_or("");
    ensure!(
        summary.contains("REPLICATION SLAVE") && summary.contains("BINLOG MONITOR"),
        "{summary}"
    );
    // Checks that need PROCESS / SLAVE MONITOR say so instead of failing.
    expect_status(&report, "long_transactions", "skipped")?;
    ensure!(check(&report, "long_transactions")["summary"]
        .to_string()
        .contains("PROCESS"));
    expect_status(&report, "replication", "skipped")?;

    for (server, code) in [("dead", Value::Null), ("wrong", Value::from(1045))] {
        let out = health(&config, server, &["--json"]).await?;
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        ensure!(!all.contains("s3cret"), "a password leaked: {all}");
        ensure!(
            out.status.code() == Some(2),
            "{server}: exit {:?}: {all}",
            out.status.code()
        );
        let report: Value = serde_json::from_slice(&out.stdout)?;
        check_shape(&report)?;
        ensure!(report["status"] == "critical", "{report:#}");
        expect_status(&report, "connection", "fail")?;
        ensure!(
            check(&report, "connection")["evidence"]["error_code"] == code,
            "{report:#}"
        );
        for name in &CHECKS[1..] {
            expect_status(&report, name, "skipped")?;
        }
    }
    let out = health(&config, "nosuch", &[]).await?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.code() == Some(3) && stderr.contains("nosuch"),
        "unknown server: {stderr}"
    );
    Ok(())
}

/// GET `path` from 127.0.0.1:`port` (HTTP/1.0, whole body).
async fn http_get(port: u16, path: &str) -> Result<String> {
    Ok(crate::support::http_get(port, path).await?.1)
}

#[tokio::test]
async fn health_periodic_task_exports_the_metric() -> Result<()> {
    let db = MariaDb::start(44).await?;
    db.exec("CREATE DATABASE app; CREATE TABLE app.nopk (a INT) ENGINE=InnoDB")
        .await?;
    let dir = TempDir::new()?;
    let port = dead_port()?;
    let extra =
        format!("\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n\n[health]\ninterval_secs = 1\n");
    let config = write_config(dir.path(), &[("db", &db.url_root())], &extra)?;
    let mut run = Fleetsync::run(&config)?;
    let want = "fleetsync_health_check_status{server=\"db\",check=\"indexes\"} 1";
    let mut last = String::new();
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        run.ensure_running()?;
        if let Ok(body) = http_get(port, "/metrics").await {
            if body.contains(want) {
                ensure!(
                    body.contains(
                        "fleetsync_health_check_status{server=\"db\",check=\"connection\"} 0"
                    ),
                    "{body}"
                );
                run.stop(Duration::from_secs(30)).await?;
                return Ok(());
            }
            last = body;
        }
    }
    bail!(
        "no {want} in /metrics after 30 s:\n{last}\nlog:\n{}",
        run.log_tail(40)
    )
}
