//! Versioned migrations (`fleetsync migrate new|status --dir|up|undo|repair|baseline`) on real
//! servers: the queue on one server (history rows, an edited file refused until repair, a
//! failing file stopping the queue with its statement index, undo, baseline, an older history
//! table extended), TrinityCore mode on the fixtures' auth database (its own `updates` table,
//! hashes checked with `sha1sum`), and a rollout over three servers (canary, wave, halt,
//! resume).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use fleetsync_tests::{
    assert_schemas_equal, fleetsync_cmd_with, trinitycore_fixtures, ConfigBuilder, Fleetsync,
    MariaDb,
};
use mysql_async::prelude::Queryable;
use serde_json::Value;

const CMD_TIMEOUT: Duration = Duration::from_secs(120);

/// `fleetsync ARGS`: (exit code, stdout, stderr).
pub(crate) async fn fs(args: &[&str]) -> Result<(i32, String, String)> {
    let out = fleetsync_cmd_with(args, &[], CMD_TIMEOUT).await?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// `fleetsync migrate SUB [ARGS] COMMON... --json`: (exit code, JSON, stderr).
pub(crate) async fn fs_json(sub: &[&str], common: &[&str]) -> Result<(i32, Value, String)> {
    let mut args = vec!["migrate"];
    args.extend_from_slice(sub);
    args.extend_from_slice(common);
    args.push("--json");
    let (code, out, err) = fs(&args).await?;
    let json = serde_json::from_str(&out)
        .with_context(|| format!("migrate {sub:?} printed no JSON (exit {code}): {out} {err}"))?;
    Ok((code, json, err))
}

pub(crate) fn p(path: &Path) -> &str {
    path.to_str().unwrap_or("")
}

pub(crate) fn write(dir: &Path, name: &str, text: &str) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(name), text).with_context(|| format!("writing {name}"))
}

/// `sha1sum`/`sha256sum FILE`'s hash (computed outside fleetsync).
pub(crate) fn hash_tool(tool: &str, file: &Path) -> Result<String> {
    let out = std::process::Command::new(tool)
        .arg(file)
        .output()
        .with_context(|| format!("running {tool}"))?;
    ensure!(out.status.success(), "{tool} failed");
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.split_whitespace().next().unwrap_or("").to_string())
}

pub(crate) fn server(st: &Value, name: &str) -> Value {
    st["servers"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["server"] == name))
        .cloned()
        .unwrap_or(Value::Null)
}

async fn has_column(db: &MariaDb, schema: &str, table: &str, column: &str) -> Result<bool> {
    Ok(db
        .query_value(&format!(
            "SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = '{schema}' \
             AND TABLE_NAME = '{table}' AND COLUMN_NAME = '{column}'"
        ))
        .await?
        .as_deref()
        == Some("1"))
}

async fn has_table(db: &MariaDb, schema: &str, table: &str) -> Result<bool> {
    Ok(db
        .query_value(&format!(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{schema}' \
             AND TABLE_NAME = '{table}'"
        ))
        .await?
        .as_deref()
        == Some("1"))
}

/// The `fleetsync.schema_migrations` table as the first release created it (no version,
/// kind, duration_ms, applied_by), with one generated migration's row.
const OLD_HISTORY: &str = "CREATE DATABASE fleetsync; CREATE TABLE fleetsync.schema_migrations (
  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, scope VARCHAR(255) NOT NULL,
  name VARCHAR(255) NOT NULL, checksum VARCHAR(64) NOT NULL,
  before_fingerprint VARCHAR(32) NOT NULL, after_fingerprint VARCHAR(32) NOT NULL,
  up_steps LONGTEXT NOT NULL, down_steps LONGTEXT NOT NULL, status VARCHAR(32) NOT NULL,
  error TEXT NULL, applied_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  rolled_back_at DATETIME NULL, KEY scope_status (scope, status)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
INSERT INTO fleetsync.schema_migrations (scope, name, checksum, before_fingerprint,
  after_fingerprint, up_steps, down_steps, status) VALUES
  ('other', 'gen1', 'abc', 'f0', 'f1', '[]', '[]', 'applied');";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vmigrate_queue_one_server() -> Result<()> {
    let db = MariaDb::start(71).await?;
    let tmp = tempfile::Builder::new()
        .prefix("fleetsync-e2e-")
        .tempdir()?;
    let text = ConfigBuilder::new(&tmp.path().join("state"))
        .server("solo", &db.url_root())
        .build();
    let cfg = Fleetsync::write_config(tmp.path(), &text)?;
    let mig = tmp.path().join("migrations");
    db.exec(&format!("CREATE DATABASE app; {OLD_HISTORY}"))
        .await?;

    write(&mig, "V1__create_items.sql", "-- the first table; with a comment\nCREATE TABLE items (id int PRIMARY KEY, note varchar(50) NOT NULL DEFAULT ';');\n")?;
    write(&mig, "U1__create_items.sql", "DROP TABLE items;\n")?;
    write(&mig, "V2__backfill.sql", "INSERT INTO items VALUES (1, 'a;b'), (2, 'it''s');\nUPDATE items SET note = CONCAT(note, '!') WHERE id = 2;\n")?;
    write(
        &mig,
        "U2__backfill.sql",
        "DELETE FROM items WHERE id IN (1, 2);\n",
    )?;
    let common = ["--config", p(&cfg), "--dir", p(&mig), "--database", "app"];

    // new: the next version and an undo file with no statements.
    let (code, out, err) = fs(&[
        "migrate",
        "new",
        "Add qty",
        "--config",
        p(&cfg),
        "--dir",
        p(&mig),
    ])
    .await?;
    ensure!(code == 0, "migrate new: {out} {err}");
    ensure!(
        mig.join("V3__add_qty.sql").is_file() && mig.join("U3__add_qty.sql").is_file(),
        "migrate new wrote: {out}"
    );
    write(
        &mig,
        "V3__add_qty.sql",
        "ALTER TABLE items ADD COLUMN qty int NOT NULL DEFAULT 0;\n",
    )?;

    let (code, st, err) = fs_json(&["status"], &common).await?;
    ensure!(code == 0, "status: {err}");
    let solo = server(&st, "solo");
    ensure!(
        solo["pending"] == 3 && solo["applied"] == 0,
        "status before: {solo}"
    );

    // Without --yes: the plan only.
    let mut args = vec!["migrate", "up"];
    args.extend_from_slice(&common);
    let (code, out, err) = fs(&args).await?;
    ensure!(
        code == 0 && out.contains("dry run") && out.contains("V1__create_items.sql"),
        "dry run: {out} {err}"
    );
    ensure!(
        !has_table(&db, "app", "items").await?,
        "the dry run created a table"
    );

    // up --to 2.
    let (code, rep, err) = fs_json(&["up", "--yes", "--to", "2"], &common).await?;
    ensure!(code == 0, "up --to 2: {rep} {err}");
    ensure!(
        server(&rep, "solo")["applied"]
            == serde_json::json!(["V1__create_items.sql", "V2__backfill.sql"]),
        "{rep}"
    );
    ensure!(db.count("app", "items").await? == 2, "the backfill ran");
    ensure!(
        db.query_value("SELECT note FROM app.items WHERE id = 2")
            .await?
            .as_deref()
            == Some("it's!")
    );
    // The history row: additive columns on the old table, the old row read as generated.
    let row = db.query_strings("SELECT version, kind, status, duration_ms IS NOT NULL, applied_by <> '', checksum FROM fleetsync.schema_migrations WHERE name = 'V1__create_items.sql'").await?;
    let sha = hash_tool("sha256sum", &mig.join("V1__create_items.sql"))?;
    let expect: Vec<Option<String>> = ["1", "versioned", "applied", "1", "1", sha.as_str()]
        .iter()
        .map(|s| Some(s.to_string()))
        .collect();
    ensure!(row == vec![expect], "history row of V1: {row:?}");
    ensure!(
        db.query_value("SELECT kind FROM fleetsync.schema_migrations WHERE name = 'gen1'")
            .await?
            .as_deref()
            == Some("generated")
    );
    let (code, gen, err) =
        fs_json(&["status", "--target", "solo/app"], &["--config", p(&cfg)]).await?;
    ensure!(
        code == 0 && gen["migrations"].as_array().map(Vec::len) == Some(2),
        "generated status still reads the shared history: {gen} {err}"
    );

    // An applied file edited: refused (naming the file and both checksums) until repair.
    let v1 = mig.join("V1__create_items.sql");
    let mut t = std::fs::read_to_string(&v1)?;
    t.push_str("-- reviewed edit\n");
    std::fs::write(&v1, &t)?;
    let sha_new = hash_tool("sha256sum", &v1)?;
    let mut args = vec!["migrate", "up", "--yes"];
    args.extend_from_slice(&common);
    let (code, out, err) = fs(&args).await?;
    ensure!(
        code == 2 && err.lines().count() == 1,
        "edited file: exit {code}: {out} {err}"
    );
    ensure!(
        err.contains("V1__create_items.sql")
            && err.contains(&sha)
            && err.contains(&sha_new)
            && err.contains("repair"),
        "{err}"
    );
    ensure!(
        !has_column(&db, "app", "items", "qty").await?,
        "V3 ran despite the refusal"
    );
    let (_, st, _) = fs_json(&["status"], &common).await?;
    ensure!(
        server(&st, "solo")["edited"] == 1 && server(&st, "solo")["files"][0]["state"] == "edited",
        "{st}"
    );
    let (code, rep, err) = fs_json(&["repair"], &common).await?;
    ensure!(
        code == 0 && rep["servers"][0]["files"] == serde_json::json!(["V1__create_items.sql"]),
        "repair: {rep} {err}"
    );
    ensure!(db.query_value("SELECT checksum FROM fleetsync.schema_migrations WHERE name = 'V1__create_items.sql' AND status = 'applied'").await?.as_deref() == Some(sha_new.as_str()));
    let (code, rep, err) = fs_json(&["up", "--yes"], &common).await?;
    ensure!(
        code == 0 && server(&rep, "solo")["at_version"] == "3",
        "up after repair: {rep} {err}"
    );
    ensure!(has_column(&db, "app", "items", "qty").await?);

    // undo: V3's U file has no statements yet: refused; filled in: undone.
    let (code, out, err) = fs(&[&["migrate", "undo"][..], &common[..]].concat()).await?;
    ensure!(
        code == 2 && err.contains("V3__add_qty.sql has no undo file"),
        "undo without statements: {out} {err}"
    );
    write(
        &mig,
        "U3__add_qty.sql",
        "ALTER TABLE items DROP COLUMN qty;\n",
    )?;
    let (code, rep, err) = fs_json(&["undo"], &common).await?;
    ensure!(
        code == 0
            && rep["servers"][0]["files"] == serde_json::json!(["V3__add_qty.sql"])
            && rep["servers"][0]["at_version"] == "2",
        "undo: {rep} {err}"
    );
    ensure!(
        !has_column(&db, "app", "items", "qty").await?,
        "undo left qty"
    );

    // A failing file stops the queue: error, statement index and the half-done part recorded.
    write(&mig, "V4__bad.sql", "CREATE TABLE extra (id int PRIMARY KEY);\nINSERT INTO extra VALUES (1);\nALTER TABLE nope ADD COLUMN x int;\n")?;
    write(
        &mig,
        "V5__after.sql",
        "ALTER TABLE items ADD COLUMN y int NULL;\n",
    )?;
    let mut args = vec!["migrate", "up", "--yes"];
    args.extend_from_slice(&common);
    let (code, out, err) = fs(&args).await?;
    ensure!(
        code == 2 && out.contains("FAILED at V4__bad.sql") && out.contains("statement 3 of 3"),
        "failing file: {out} {err}"
    );
    let e = db.query_value("SELECT error FROM fleetsync.schema_migrations WHERE name = 'V4__bad.sql' AND status = 'failed'").await?.unwrap_or_default();
    ensure!(
        e.contains("statement 3 of 3 (line 3)")
            && e.contains("1146")
            && e.contains("statements 1-2 ran"),
        "recorded error: {e}"
    );
    ensure!(
        has_table(&db, "app", "extra").await? && has_column(&db, "app", "items", "qty").await?,
        "V3 and the half of V4 before the failure ran"
    );
    ensure!(
        !has_column(&db, "app", "items", "y").await?,
        "V5 ran after a failed V4"
    );
    let (_, st, _) = fs_json(&["status"], &common).await?;
    ensure!(
        server(&st, "solo")["failed"] == 1 && server(&st, "solo")["pending"] == 1,
        "{st}"
    );
    // Fixed: up continues from V4.
    write(&mig, "V4__bad.sql", "CREATE TABLE IF NOT EXISTS extra (id int PRIMARY KEY);\nINSERT IGNORE INTO extra VALUES (1);\nALTER TABLE items ADD COLUMN x int;\n")?;
    let (code, rep, err) = fs_json(&["up", "--yes"], &common).await?;
    ensure!(
        code == 0
            && server(&rep, "solo")["applied"]
                == serde_json::json!(["V4__bad.sql", "V5__after.sql"]),
        "after the fix: {rep} {err}"
    );
    let (_, st, _) = fs_json(&["status"], &common).await?;
    ensure!(
        server(&st, "solo")["applied"] == 5 && server(&st, "solo")["failed"] == 0,
        "{st}"
    );

    // undo --to 1 refuses (V5 has no undo file) and changes nothing; with it, V5..V2 undone.
    let (code, out, err) =
        fs(&[&["migrate", "undo", "--to", "1"][..], &common[..]].concat()).await?;
    ensure!(
        code == 2
            && err.contains("V5__after.sql has no undo file")
            && has_column(&db, "app", "items", "x").await?,
        "{out} {err}"
    );
    write(&mig, "U5__after.sql", "ALTER TABLE items DROP COLUMN y;\n")?;
    write(
        &mig,
        "U4__bad.sql",
        "ALTER TABLE items DROP COLUMN x;\nDROP TABLE extra;\n",
    )?;
    let (code, rep, err) = fs_json(&["undo", "--to", "1"], &common).await?;
    let undone = serde_json::json!([
        "V5__after.sql",
        "V4__bad.sql",
        "V3__add_qty.sql",
        "V2__backfill.sql"
    ]);
    ensure!(
        code == 0 && rep["servers"][0]["files"] == undone && rep["servers"][0]["at_version"] == "1",
        "undo --to 1: {rep} {err}"
    );
    ensure!(db.count("app", "items").await? == 0 && !has_table(&db, "app", "extra").await?);

    // baseline on a database that already has V1's schema.
    db.exec("CREATE DATABASE app2; CREATE TABLE app2.items (id int PRIMARY KEY, note varchar(50) NOT NULL DEFAULT ';')").await?;
    let common2 = ["--config", p(&cfg), "--dir", p(&mig), "--database", "app2"];
    let (code, rep, err) = fs_json(&["baseline", "1"], &common2).await?;
    ensure!(
        code == 0 && rep["servers"][0]["at_version"] == "1",
        "baseline: {rep} {err}"
    );
    let (code, _, err) = fs(&[&["migrate", "baseline", "1"][..], &common2[..]].concat()).await?;
    ensure!(
        code == 2 && err.contains("already has versioned history"),
        "second baseline: {err}"
    );
    let (_, st, _) = fs_json(&["status"], &common2).await?;
    let s = server(&st, "solo");
    ensure!(
        s["files"][0]["state"] == "baseline" && s["pending"] == 4 && s["baseline"] == "1",
        "{st}"
    );
    let (code, rep, err) = fs_json(&["up", "--yes", "--to", "2"], &common2).await?;
    ensure!(
        code == 0 && server(&rep, "solo")["applied"] == serde_json::json!(["V2__backfill.sql"]),
        "up after baseline: {rep} {err}"
    );
    ensure!(db.count("app2", "items").await? == 2);

    // Another session holds the queue's lock (a concurrent `up`): this run applies nothing.
    let mut held = db.pool().get_conn().await?;
    held.query_drop("SELECT GET_LOCK('fleetsync_migrate:app2', 60)")
        .await?;
    let (code, rep, err) = fs_json(&["up", "--yes"], &common2).await?;
    let s = server(&rep, "solo");
    ensure!(
        code == 2
            && s["failed"]["error"]
                .as_str()
                .is_some_and(|e| e.contains("lock is held"))
            && s["applied"] == serde_json::json!([]),
        "{rep} {err}"
    );
    ensure!(
        !has_column(&db, "app2", "items", "qty").await?,
        "V3 ran without the lock"
    );
    held.query_drop("SELECT RELEASE_LOCK('fleetsync_migrate:app2')")
        .await?;
    drop(held);
    Ok(())
}

/// TrinityCore's `updates` table of the fixtures' auth database drives the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vmigrate_trinitycore_updates() -> Result<()> {
    let Some(fixtures) = trinitycore_fixtures("vmigrate_trinitycore_updates") else {
        return Ok(());
    };
    let db = MariaDb::start(72).await?;
    db.exec("CREATE DATABASE auth").await?;
    db.load_sql_file_into(Some("auth"), &fixtures.join("auth_database.sql"))
        .await?;
    let rows_before = db.count("auth", "updates").await?;
    ensure!(
        rows_before > 100,
        "the fixture's updates table has {rows_before} rows"
    );
    let fixture_hash = db
        .query_value("SELECT hash FROM auth.updates WHERE name = '2024_03_13_00_auth.sql'")
        .await?
        .context("the fixture has 2024_03_13_00_auth.sql")?;

    let tmp = tempfile::Builder::new()
        .prefix("fleetsync-e2e-")
        .tempdir()?;
    let text = ConfigBuilder::new(&tmp.path().join("state"))
        .server("realm", &db.url_root())
        .build();
    let cfg = Fleetsync::write_config(tmp.path(), &text)?;
    // TrinityCore's layout: sql/updates/<database>/; the database defaults to the folder name.
    let dir: PathBuf = tmp.path().join("sql/updates/auth");
    // Same name as a fixture row, other bytes: edited.
    write(
        &dir,
        "2024_03_13_00_auth.sql",
        "-- not TrinityCore's file\nSELECT 1;\n",
    )?;
    // Applied by the game server's updater already (its row written here, hash by sha1sum).
    write(
        &dir,
        "2024_03_20_00_auth.sql",
        "UPDATE realmlist SET name = name;\n",
    )?;
    let applied_hash = hash_tool("sha1sum", &dir.join("2024_03_20_00_auth.sql"))?.to_uppercase();
    db.exec(&format!("INSERT INTO auth.updates (name, hash, state, speed) VALUES ('2024_03_20_00_auth.sql', '{applied_hash}', 'RELEASED', 3)")).await?;
    // New ones; the second needs the first (order) and uses a DELIMITER block.
    write(&dir, "2024_04_01_00_auth.sql", "--\n-- fleet news; a new table\nDROP TABLE IF EXISTS `fleet_news`;\nCREATE TABLE `fleet_news` (`id` int unsigned NOT NULL, `text` varchar(100) NOT NULL, PRIMARY KEY (`id`)) ENGINE=InnoDB;\nINSERT INTO `fleet_news` VALUES (1, 'hello; world'), (2, 'it''s \"quoted\"');\n")?;
    write(&dir, "2024_04_02_00_auth.sql", "DROP PROCEDURE IF EXISTS `fleet_add_col`;\nDELIMITER $$\nCREATE PROCEDURE `fleet_add_col`() BEGIN\n  IF NOT EXISTS (SELECT * FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'fleet_news' AND COLUMN_NAME = 'posted') THEN\n    ALTER TABLE `fleet_news` ADD COLUMN `posted` int unsigned NOT NULL DEFAULT 0; -- new; column\n  END IF;\nEND$$\nDELIMITER ;\nCALL `fleet_add_col`();\nDROP PROCEDURE `fleet_add_col`;\n")?;
    let common = [
        "--config",
        p(&cfg),
        "--dir",
        p(&dir),
        "--history",
        "trinitycore",
    ];

    let (code, st, err) = fs_json(&["status"], &common).await?;
    ensure!(code == 0, "status: {st} {err}");
    let s = server(&st, "realm");
    ensure!(
        s["applied"] == 1 && s["pending"] == 2 && s["edited"] == 1,
        "status: {s}"
    );
    ensure!(
        s["applied_without_file"] == rows_before - 1,
        "fixture rows without a file here: {s}"
    );
    ensure!(
        s["files"][0]["state"] == "edited" && s["files"][0]["recorded"] == fixture_hash.as_str(),
        "{s}"
    );

    // The edited file blocks the queue; the operator drops it from the folder (TrinityCore's
    // own file stays recorded as it was).
    let (code, _, err) = fs(&[&["migrate", "up", "--yes"][..], &common[..]].concat()).await?;
    ensure!(
        code == 2 && err.contains("2024_03_13_00_auth.sql") && err.contains(&fixture_hash),
        "{err}"
    );
    std::fs::remove_file(dir.join("2024_03_13_00_auth.sql"))?;
    let (code, rep, err) = fs_json(&["up", "--yes"], &common).await?;
    let applied = serde_json::json!(["2024_04_01_00_auth.sql", "2024_04_02_00_auth.sql"]);
    ensure!(
        code == 0 && server(&rep, "realm")["applied"] == applied,
        "up: {rep} {err}"
    );
    ensure!(
        has_column(&db, "auth", "fleet_news", "posted").await?,
        "the procedure ran"
    );
    ensure!(
        db.query_value("SELECT text FROM auth.fleet_news WHERE id = 1")
            .await?
            .as_deref()
            == Some("hello; world")
    );
    for name in ["2024_04_01_00_auth.sql", "2024_04_02_00_auth.sql"] {
        let sha = hash_tool("sha1sum", &dir.join(name))?.to_uppercase();
        let row = db
            .query_strings(&format!(
                "SELECT hash, state, speed >= 0 FROM auth.updates WHERE name = '{name}'"
            ))
            .await?;
        ensure!(
            row == vec![vec![
                Some(sha.clone()),
                Some("RELEASED".into()),
                Some("1".into())
            ]],
            "{name}: {row:?} (sha1sum {sha})"
        );
    }
    ensure!(db.count("auth", "updates").await? == rows_before + 3);
    ensure!(
        db.query_value("SELECT hash FROM auth.updates WHERE name = '2024_03_13_00_auth.sql'")
            .await?
            .as_deref()
            == Some(fixture_hash.as_str())
    );
    let (_, st, _) = fs_json(&["status"], &common).await?;
    ensure!(
        server(&st, "realm")["pending"] == 0 && server(&st, "realm")["applied"] == 3,
        "{st}"
    );
    // baseline: a file (by name) recorded with its hash and speed 0, never run.
    write(
        &dir,
        "2024_04_03_00_auth.sql",
        "CREATE TABLE `must_not_exist` (id int);\n",
    )?;
    let (code, rep, err) = fs_json(&["baseline", "2024_04_03_00_auth"], &common).await?;
    ensure!(
        code == 0 && rep["servers"][0]["files"] == serde_json::json!(["2024_04_03_00_auth.sql"]),
        "baseline: {rep} {err}"
    );
    let sha = hash_tool("sha1sum", &dir.join("2024_04_03_00_auth.sql"))?.to_uppercase();
    let row = db
        .query_strings("SELECT hash, speed FROM auth.updates WHERE name = '2024_04_03_00_auth.sql'")
        .await?;
    ensure!(
        row == vec![vec![Some(sha), Some("0".into())]]
            && !has_table(&db, "auth", "must_not_exist").await?,
        "{row:?}"
    );
    // A database without TrinityCore's table: said per server, exit 2.
    let (code, st, _) = fs_json(&["status", "--database", "nosuch"], &common).await?;
    let e = server(&st, "realm")["error"]
        .as_str()
        .unwrap_or("")
        .to_string();
    ensure!(
        code == 2 && e.contains("database nosuch has no `updates` table"),
        "{st}"
    );
    // No undo in TrinityCore mode.
    let (code, _, err) = fs(&[&["migrate", "undo"][..], &common[..]].concat()).await?;
    ensure!(code == 2 && err.contains("no undo"), "{err}");
    ensure!(
        !db.user_databases().await?.iter().any(|d| d == "fleetsync"),
        "TrinityCore mode wrote fleetsync's own history"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vmigrate_fleet_rollout() -> Result<()> {
    let (a, b, c) = tokio::join!(MariaDb::start(73), MariaDb::start(74), MariaDb::start(75));
    let realms = [a?, b?, c?];
    let tmp = tempfile::Builder::new()
        .prefix("fleetsync-e2e-")
        .tempdir()?;
    let mut builder =
        ConfigBuilder::new(&tmp.path().join("state")).server("auth", &realms[0].url_root());
    for (i, r) in realms.iter().enumerate() {
        builder = builder.server(&format!("realm-{}", i + 1), &r.url_root());
        r.exec("CREATE DATABASE app").await?;
    }
    let cfg = Fleetsync::write_config(tmp.path(), &builder.build())?;
    let mig = tmp.path().join("migrations");
    write(&mig, "V1__players.sql", "CREATE TABLE players (id int PRIMARY KEY, name varchar(30) NOT NULL);\nINSERT INTO players VALUES (1, 'ann'), (2, 'bob');\n")?;
    write(
        &mig,
        "V2__audit.sql",
        "CREATE TABLE audit (id bigint PRIMARY KEY, what varchar(40) NOT NULL);\n",
    )?;
    write(
        &mig,
        "V3__index.sql",
        "ALTER TABLE players ADD INDEX k_name (name);\n",
    )?;
    // realm-1 (the canary) already has an `audit` table: V2 fails there.
    realms[0].exec("CREATE TABLE app.audit (id int)").await?;
    let common = [
        "--config",
        p(&cfg),
        "--dir",
        p(&mig),
        "--database",
        "app",
        "--servers",
        "realm-*",
        "--canary",
        "1",
        "--wave",
        "2",
        "--halt-on-error",
    ];

    // The plan: per server, what will run; nothing changes.
    let (code, plan, err) = fs_json(&["up"], &common).await?;
    ensure!(code == 0 && plan["dry_run"] == true, "plan: {plan} {err}");
    ensure!(
        plan["canaries"] == serde_json::json!(["realm-1"])
            && plan["waves"] == serde_json::json!([["realm-2", "realm-3"]]),
        "{plan}"
    );
    ensure!(
        plan["servers"].as_array().map(Vec::len) == Some(3),
        "auth is not selected: {plan}"
    );
    for r in ["realm-1", "realm-2", "realm-3"] {
        ensure!(
            server(&plan, r)["outcome"] == "planned"
                && server(&plan, r)["planned"].as_array().map(Vec::len) == Some(3),
            "{plan}"
        );
    }
    ensure!(
        !has_table(&realms[1], "app", "players").await?,
        "the plan changed a server"
    );

    // The canary fails at V2: halted, the fleet's state printed, the others not started.
    let mut args = vec!["migrate", "up", "--yes"];
    args.extend_from_slice(&common);
    let (code, out, err) = fs(&args).await?;
    eprintln!("migrate up --yes (canary fails):\n{out}");
    ensure!(code == 2, "canary failure: exit {code}: {out} {err}");
    ensure!(
        out.contains("realm-1 (canary): FAILED at V2__audit.sql")
            && out.contains("statement 1 of 1")
            && out.contains("1050"),
        "{out}"
    );
    ensure!(
        out.contains("realm-2 (wave 1): not started")
            && out.contains("realm-3 (wave 1): not started")
            && out.contains("halted: canary realm-1"),
        "{out}"
    );
    ensure!(
        has_table(&realms[0], "app", "players").await?
            && !has_table(&realms[1], "app", "players").await?
            && !has_table(&realms[2], "app", "players").await?
    );

    // Fixed on realm-1; `up` again resumes: realm-1 from V2, the others from V1.
    realms[0].exec("DROP TABLE app.audit").await?;
    let (code, rep, err) = fs_json(&["up", "--yes"], &common).await?;
    ensure!(code == 0 && rep["halted"].is_null(), "resume: {rep} {err}");
    let r1 = server(&rep, "realm-1");
    ensure!(
        r1["role"] == "canary"
            && r1["applied"] == serde_json::json!(["V2__audit.sql", "V3__index.sql"])
            && r1["schema_differences"] == 0,
        "{r1}"
    );
    for r in ["realm-2", "realm-3"] {
        let s = server(&rep, r);
        ensure!(
            s["role"] == "wave 1"
                && s["outcome"] == "applied"
                && s["at_version"] == "3"
                && s["applied"].as_array().map(Vec::len) == Some(3),
            "{s}"
        );
    }
    assert_schemas_equal(&realms[0], &realms[1], "app", "app").await?;
    assert_schemas_equal(&realms[0], &realms[2], "app", "app").await?;

    // A wave server fails (a data file: its transaction rolled back); its queue stops there.
    write(
        &mig,
        "V4__seed.sql",
        "INSERT INTO audit VALUES (1, 'seeded');\nINSERT INTO audit VALUES (2, 'seeded too');\n",
    )?;
    write(
        &mig,
        "V5__more.sql",
        "ALTER TABLE audit ADD COLUMN at datetime NULL;\n",
    )?;
    realms[2]
        .exec("INSERT INTO app.audit VALUES (2, 'already')")
        .await?;
    let (code, rep, err) = fs_json(&["up", "--yes"], &common).await?;
    ensure!(code == 2, "wave failure: {rep} {err}");
    let r3 = server(&rep, "realm-3");
    ensure!(
        r3["outcome"] == "failed"
            && r3["at_version"] == "3"
            && r3["failed"]["file"] == "V4__seed.sql"
            && r3["failed"]["statement"] == 2,
        "{r3}"
    );
    let e = r3["failed"]["error"].as_str().unwrap_or("");
    ensure!(
        e.contains("1062") && e.contains("rolled back: nothing changed"),
        "{e}"
    );
    ensure!(
        realms[2].count("app", "audit").await? == 1
            && !has_column(&realms[2], "app", "audit", "at").await?,
        "realm-3 went past its failure"
    );
    ensure!(
        server(&rep, "realm-2")["outcome"] == "applied"
            && rep["halted"]
                .as_str()
                .is_some_and(|h| h.contains("realm-3")),
        "{rep}"
    );
    let (_, st, _) = fs_json(
        &["status"],
        &[
            "--config",
            p(&cfg),
            "--dir",
            p(&mig),
            "--database",
            "app",
            "--servers",
            "realm-1,realm-3",
        ],
    )
    .await?;
    ensure!(
        server(&st, "realm-3")["failed"] == 1
            && server(&st, "realm-1")["pending"] == 0
            && st["servers"].as_array().map(Vec::len) == Some(2),
        "{st}"
    );

    // Fixed; resumed: only realm-3 has work (it becomes the canary), the others are up to date.
    realms[2].exec("DELETE FROM app.audit WHERE id = 2").await?;
    let (code, rep, err) = fs_json(&["up", "--yes"], &common).await?;
    ensure!(code == 0, "second resume: {rep} {err}");
    ensure!(
        server(&rep, "realm-1")["outcome"] == "up_to_date"
            && server(&rep, "realm-2")["outcome"] == "up_to_date",
        "{rep}"
    );
    ensure!(
        server(&rep, "realm-3")["applied"] == serde_json::json!(["V4__seed.sql", "V5__more.sql"]),
        "{rep}"
    );
    ensure!(realms[2].count("app", "audit").await? == 2);
    assert_schemas_equal(&realms[0], &realms[2], "app", "app").await?;
    Ok(())
}
