//! Backups: `fleetsync backup create|list|verify|restore|prune|keygen` against real servers
//! (in a bucket: [`s3`]).
//!
//! * Round trips (backup -> restore into another server, also with `--rename-db`), compared
//!   row by row and by schema: every column type plus keyless, composite-key, string-key,
//!   MyISAM tables and a view, chunked small so every table spans several files
//!   (`chunk_rows = 7`); the same encrypted + gzip; the TrinityCore schemas with rows.
//! * Bad input: a tampered chunk, a truncated file, a missing manifest, a wrong key, a missing
//!   key, a user without the needed privileges, existing tables without `--yes`: each a
//!   non-zero exit with a one-line error naming the file (or table, privilege), and the target
//!   unchanged.
//! * Out of space mid-load (a target with a small fixed InnoDB system tablespace): the error
//!   names the data file and line, and the target is unchanged (tables --yes would replace,
//!   a database the restore would create, no staging tables left); the same backup with
//!   foreign keys then restores over its own source (the foreign-key swap path).
//! * Retention (`prune` with `keep_last`), and scheduled backups in `fleetsync run` with their
//!   metrics.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use fleetsync_tests::fixtures::TRINITYCORE_DATABASES;
use fleetsync_tests::{
    assert_databases_equal, assert_schemas_equal, fill_schema, fleetsync_cmd_with,
    load_trinitycore, trinitycore_fixtures, wait_until, Fleetsync, MariaDb,
};

use fleetsync_tests::fleetsync::toml_str;

use crate::support::{dead_port, exec_lenient, Pair, STOP_TIMEOUT};
use crate::types::{all_inserts, create_tables};

mod refusals;
mod s3;

const CMD_TIMEOUT: Duration = Duration::from_secs(180);

/// Writes `NAME.toml` in the pair's dir: servers `src` and `dst`, `[backup]` with `extra`.
fn write_config(pair: &Pair, name: &str, extra: &str) -> Result<PathBuf> {
    write_config_dst(pair, name, &pair.dst.url_root(), extra)
}

fn write_config_dst(pair: &Pair, name: &str, dst_url: &str, extra: &str) -> Result<PathBuf> {
    let dir = pair.dir.path();
    let text = format!(
        "state_dir = {}\n\n[[servers]]\nname = \"src\"\nurl = {}\n\n[[servers]]\nname = \"dst\"\nurl = {}\n\n[backup]\ndir = {}\n{extra}\n",
        toml_str(&dir.join("state").to_string_lossy()),
        toml_str(&pair.src.url_root()),
        toml_str(dst_url),
        toml_str(&dir.join("backups").to_string_lossy()),
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

fn backups_dir(pair: &Pair) -> PathBuf {
    pair.dir.path().join("backups")
}

async fn fleetsync(args: &[&str]) -> Result<Output> {
    fleetsync_cmd_with(args, &[("RUST_LOG", "warn")], CMD_TIMEOUT).await
}

/// Runs a command that must succeed; its stdout.
pub(crate) async fn ok(args: &[&str]) -> Result<String> {
    let out = fleetsync(args).await?;
    ensure!(
        out.status.success(),
        "`fleetsync {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command that must fail with a one-line error containing every string of `needles`;
/// the error line.
async fn refused(args: &[&str], needles: &[&str]) -> Result<String> {
    let out = fleetsync(args).await?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    ensure!(
        !out.status.success(),
        "`fleetsync {}` succeeded on bad input; stdout: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout)
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    ensure!(lines.len() == 1, "expected one error line, got:\n{stderr}");
    for n in needles {
        ensure!(
            lines[0].contains(n),
            "the error should mention {n:?}: {}",
            lines[0]
        );
    }
    println!("refused as expected: {}", lines[0]);
    Ok(lines[0].to_string())
}

fn p(path: &Path) -> Result<&str> {
    path.to_str().context("path is not UTF-8")
}

/// `backup create --json`: the new backup's id.
async fn create(config: &Path, include: &[&str]) -> Result<String> {
    let mut args = vec![
        "backup",
        "create",
        "--config",
        p(config)?,
        "--server",
        "src",
        "--json",
    ];
    for i in include {
        args.extend(["--include", i]);
    }
    let out = ok(&args).await?;
    let v: serde_json::Value =
        serde_json::from_str(out.trim()).with_context(|| format!("create printed {out:?}"))?;
    let id = v["id"]
        .as_str()
        .context("no id in create's JSON")?
        .to_string();
    ensure!(v["status"] == "complete", "status in {v}");
    Ok(id)
}

async fn restore(config: &Path, id: &str, extra: &[&str]) -> Result<String> {
    let mut args = vec![
        "backup",
        "restore",
        "--config",
        p(config)?,
        id,
        "--to-server",
        "dst",
    ];
    args.extend(extra);
    ok(&args).await
}

fn manifest(pair: &Pair, id: &str) -> Result<serde_json::Value> {
    let path = backups_dir(pair).join(id).join("manifest.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    Ok(serde_json::from_str(&text)?)
}

/// Every user table on `db` with its CHECKSUM TABLE: to prove a refused restore changed nothing.
async fn fingerprint(db: &MariaDb) -> Result<Vec<String>> {
    let rows = db
        .query_strings(
            "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA NOT IN \
             ('mysql','information_schema','performance_schema','sys') ORDER BY 1, 2",
        )
        .await?;
    let mut out = Vec::new();
    for r in rows {
        let (s, t) = (
            r[0].clone().unwrap_or_default(),
            r[1].clone().unwrap_or_default(),
        );
        let sum = db
            .query_strings(&format!("CHECKSUM TABLE `{s}`.`{t}`"))
            .await
            .map(|r| format!("{:?}", r.first().and_then(|r| r.get(1).cloned())))
            .unwrap_or_else(|_| "view".into());
        out.push(format!("{s}.{t}={sum}"));
    }
    Ok(out)
}

/// The `app` database: every column type, plus tables that exercise each chunking path.
async fn load_app(src: &MariaDb) -> Result<()> {
    create_tables(src).await?;
    exec_lenient(src, &all_inserts(0)).await?;
    exec_lenient(src, &all_inserts(100)).await?;
    let mut sql = String::from(
        "CREATE TABLE app.keyless (a INT NULL, b VARCHAR(20) NULL) ENGINE=InnoDB;
         CREATE TABLE app.composite (a INT NOT NULL, b VARCHAR(10) COLLATE utf8mb4_general_ci NOT NULL, v DOUBLE, PRIMARY KEY (a, b));
         CREATE TABLE app.skey (k VARCHAR(20) COLLATE utf8mb4_unicode_ci NOT NULL PRIMARY KEY, n INT);
         CREATE TABLE app.sparse (id BIGINT UNSIGNED NOT NULL PRIMARY KEY, v TEXT);
         CREATE TABLE app.dense (id INT NOT NULL AUTO_INCREMENT PRIMARY KEY, v VARCHAR(30), g INT AS (id * 2) VIRTUAL);
         CREATE TABLE app.my (id INT NOT NULL PRIMARY KEY, t VARCHAR(10)) ENGINE=MyISAM DEFAULT CHARSET=latin1;
         CREATE VIEW app.v_dense AS SELECT id, v FROM app.dense WHERE id < 10;",
    );
    for i in 0..60 {
        sql.push_str(&format!(
            "INSERT INTO app.keyless VALUES ({}, 'row {i}'), ({}, NULL);",
            i % 5,
            i % 5
        ));
        sql.push_str(&format!(
            "INSERT INTO app.composite VALUES ({}, 'k{i}', {i}.5), ({}, 'K{i}x', NULL);",
            i % 4,
            i % 4
        ));
        sql.push_str(&format!(
            "INSERT INTO app.skey VALUES ('Key-{i:03}', {i}), ('é{i}', NULL);"
        ));
        sql.push_str(&format!(
            "INSERT INTO app.sparse VALUES ({}, 'line\\n{i}');",
            (i as u64) * 307_445_734_561_825_860 + 1
        ));
        sql.push_str(&format!(
            "INSERT INTO app.dense (id, v) VALUES ({}, 'v{i}'), ({}, 'w{i}');",
            2 * i + 1,
            2 * i + 2
        ));
        sql.push_str(&format!("INSERT INTO app.my VALUES ({i}, 'é{i}');"));
    }
    exec_lenient(src, &sql).await
}

async fn assert_app_equal(src: &MariaDb, dst: &MariaDb, dst_db: &str) -> Result<()> {
    assert_databases_equal(src, dst, "app", dst_db).await?;
    assert_schemas_equal(src, dst, "app", dst_db).await?;
    let n = dst
        .query_value(&format!("SELECT COUNT(*) FROM `{dst_db}`.v_dense"))
        .await?;
    ensure!(
        n.as_deref() == Some("9"),
        "view v_dense in {dst_db}: {n:?} rows"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_round_trip_all_types() -> Result<()> {
    let pair = Pair::start_with(&["--default-time-zone=+05:00"], &[]).await?;
    let (src, dst) = (&pair.src, &pair.dst);
    load_app(src).await?;
    let config = write_config(&pair, "plain", "chunk_rows = 7\nthreads = 3\n")?;
    let id = create(&config, &["app\\..*"]).await?;
    ensure!(id.starts_with("src-"), "id {id}");
    let m = manifest(&pair, &id)?;
    ensure!(m["status"] == "complete" && m["encrypted"] == false, "{m}");
    let position: fleetsync_proto::Position = m["position"]
        .as_str()
        .context("no position")?
        .parse()
        .map_err(|e| anyhow::anyhow!("manifest position: {e}"))?;
    ensure!(position.gtid.is_some(), "position without GTID: {position}");
    let tables = m["tables"].as_array().context("tables")?;
    for t in tables {
        if t["rows"].as_u64() > Some(7) {
            ensure!(
                t["files"].as_array().map_or(0, Vec::len) > 1,
                "{}.{} was not split into several files",
                t["database"],
                t["table"]
            );
        }
    }
    // A plain chunk is ordinary SQL: `zstd -dc FILE | mariadb DB` loads it.
    let dense = tables
        .iter()
        .find(|t| t["table"] == "dense")
        .context("no app.dense in the manifest")?;
    let root = backups_dir(&pair).join(&id);
    let schema = root.join(dense["schema_file"]["name"].as_str().context("schema")?);
    let file = root.join(dense["files"][0]["name"].as_str().context("file")?);
    dst.exec("CREATE DATABASE viacli").await?;
    let cli = format!(
        "mariadb --no-defaults -h127.0.0.1 -P{} -uroot viacli",
        dst.port()
    );
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{cli} < '{}' && zstd -dc '{}' | {cli}",
            schema.display(),
            file.display()
        ))
        .status()?;
    ensure!(
        status.success(),
        "loading a chunk with zstd -dc | mariadb failed"
    );
    let n = dst.count("viacli", "dense").await?;
    ensure!(
        Some(n) == dense["files"][0]["rows"].as_u64(),
        "{n} rows via the client"
    );
    dst.exec("DROP DATABASE viacli").await?;

    let listed = ok(&["backup", "list", "--config", p(&config)?, "--json"]).await?;
    ensure!(listed.contains(&id), "list: {listed}");
    ok(&["backup", "verify", "--config", p(&config)?, &id]).await?;

    let plan = restore(&config, &id, &["--dry-run"]).await?;
    ensure!(plan.contains("table app.all_types"), "dry run: {plan}");
    ensure!(
        dst.user_databases().await?.is_empty(),
        "dry run changed the target"
    );

    restore(&config, &id, &[]).await?;
    assert_app_equal(src, dst, "app").await?;
    restore(&config, &id, &["--rename-db", "app=app2"]).await?;
    assert_app_equal(src, dst, "app2").await?;
    // Restoring again over existing tables needs --yes.
    refused(
        &[
            "backup",
            "restore",
            "--config",
            p(&config)?,
            &id,
            "--to-server",
            "dst",
        ],
        &["already exist", "app.all_types", "--yes"],
    )
    .await?;
    exec_lenient(dst, "DELETE FROM app.dense WHERE id < 5").await?;
    restore(&config, &id, &["--yes"]).await?;
    assert_app_equal(src, dst, "app").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_encrypted_gzip_and_keys() -> Result<()> {
    let pair = Pair::start().await?;
    let (src, dst) = (&pair.src, &pair.dst);
    load_app(src).await?;
    let key = pair.dir.path().join("backup.key");
    ok(&["backup", "keygen", "--out", p(&key)?]).await?;
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key)?.permissions());
    ensure!(mode & 0o777 == 0o600, "key file mode {mode:o}");
    let key_text = std::fs::read_to_string(&key)?.trim().to_string();
    let config = write_config(
        &pair,
        "enc",
        &format!(
            "compression = \"gzip\"\nchunk_rows = 20\nencryption_key_file = {}\n",
            toml_str(&key.to_string_lossy())
        ),
    )?;
    let id = create(&config, &["app\\..*"]).await?;
    let m = manifest(&pair, &id)?;
    ensure!(m["encrypted"] == true && m["compression"] == "gzip", "{m}");
    let text = std::fs::read_to_string(backups_dir(&pair).join(&id).join("manifest.json"))?;
    ensure!(!text.contains(&key_text), "the manifest holds the key");
    let name = m["tables"][0]["files"][0]["name"]
        .as_str()
        .context("file")?;
    ensure!(name.ends_with(".sql.gz.enc"), "file {name}");
    let raw = std::fs::read(backups_dir(&pair).join(&id).join(name))?;
    ensure!(raw.starts_with(b"FSBKENC"), "not encrypted: {name}");
    ok(&["backup", "verify", "--config", p(&config)?, &id]).await?;
    restore(&config, &id, &["--rename-db", "app=restored"]).await?;
    assert_app_equal(src, dst, "restored").await?;
    let before = fingerprint(dst).await?;

    // Wrong key: verification and restore fail naming a file; the key never shows.
    let wrong = pair.dir.path().join("wrong.key");
    ok(&["backup", "keygen", "--out", p(&wrong)?]).await?;
    let wrong_config = write_config(
        &pair,
        "wrong",
        &format!(
            "compression = \"gzip\"\nencryption_key_file = {}\n",
            toml_str(&wrong.to_string_lossy())
        ),
    )?;
    let line = refused(
        &["backup", "verify", "--config", p(&wrong_config)?, &id],
        &["wrong encryption key", &id],
    )
    .await?;
    ensure!(!line.contains(&key_text), "the error shows the key");
    refused(
        &[
            "backup",
            "restore",
            "--config",
            p(&wrong_config)?,
            &id,
            "--to-server",
            "dst",
            "--yes",
        ],
        &["wrong encryption key", &id],
    )
    .await?;
    // Missing key.
    let nokey = write_config(&pair, "nokey", "")?;
    refused(
        &[
            "backup",
            "restore",
            "--config",
            p(&nokey)?,
            &id,
            "--to-server",
            "dst",
            "--yes",
        ],
        &["encrypted", "no key"],
    )
    .await?;
    let gone = write_config(
        &pair,
        "gone",
        &format!(
            "encryption_key_file = {}\n",
            toml_str(&pair.dir.path().join("absent.key").to_string_lossy())
        ),
    )?;
    refused(
        &["backup", "verify", "--config", p(&gone)?, &id],
        &["absent.key"],
    )
    .await?;
    ensure!(
        fingerprint(dst).await? == before,
        "a refused restore changed the target"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_prune_keep_last() -> Result<()> {
    // The ids on lines starting with `verb` (ids share prefixes: match whole words).
    fn names<'a>(out: &'a str, verb: &str) -> Vec<&'a str> {
        out.lines()
            .filter_map(|l| l.strip_prefix(verb)?.split_whitespace().next())
            .map(|w| w.trim_end_matches(':'))
            .collect()
    }
    let pair = Pair::start().await?;
    pair.src
        .exec("CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY); INSERT INTO app.t VALUES (1),(2)")
        .await?;
    let config = write_config(&pair, "prune", "retention = { keep_last = 2 }\n")?;
    let c = p(&config)?.to_string();
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(create(&config, &[]).await?);
    }
    let mut sorted = ids.clone();
    sorted.sort();
    ensure!(
        sorted == ids && ids[0] != ids[2],
        "ids not distinct/ordered: {ids:?}"
    );
    let dry = ok(&["backup", "prune", "--config", &c, "--dry-run"]).await?;
    ensure!(
        names(&dry, "would delete") == [ids[0].as_str()],
        "dry run: {dry}"
    );
    ensure!(backups_dir(&pair).join(&ids[0]).exists(), "dry run deleted");
    let out = ok(&["backup", "prune", "--config", &c]).await?;
    ensure!(names(&out, "deleted") == [ids[0].as_str()], "prune: {out}");
    ensure!(!backups_dir(&pair).join(&ids[0]).exists(), "not deleted");
    let listed = ok(&["backup", "list", "--config", &c, "--json"]).await?;
    let v: serde_json::Value = serde_json::from_str(&listed)?;
    let left: Vec<&str> = v
        .as_array()
        .context("list")?
        .iter()
        .filter_map(|b| b["id"].as_str())
        .collect();
    ensure!(left == [ids[1].as_str(), ids[2].as_str()], "left {left:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_scheduled_in_run_with_metrics() -> Result<()> {
    let pair = Pair::start().await?;
    pair.src
        .exec("CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY); INSERT INTO app.t VALUES (1),(2),(3)")
        .await?;
    let port = dead_port()?;
    let config = write_config(
        &pair,
        "sched",
        &format!("schedule = \"*/2 * * * * *\"\nretention = {{ keep_last = 2 }}\n\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
    )?;
    let mut fs = Fleetsync::run(&config)?;
    let dir = backups_dir(&pair);
    let complete = || {
        std::fs::read_dir(&dir)
            .map(|d| {
                d.flatten()
                    .filter(|e| {
                        std::fs::read_to_string(e.path().join("manifest.json"))
                            .is_ok_and(|t| t.contains("\"status\": \"complete\""))
                    })
                    .count()
            })
            .unwrap_or(0)
    };
    wait_until(
        Duration::from_secs(60),
        "two complete scheduled backups",
        || async {
            ensure!(complete() >= 2, "{} complete so far", complete());
            Ok(())
        },
    )
    .await
    .with_context(|| fs.log_tail(30))?;
    let body = http_get(port, "/metrics").await?;
    for metric in [
        "fleetsync_backup_last_success_timestamp_seconds{server=\"src\"}",
        "fleetsync_backup_duration_seconds{server=\"dst\"}",
        "fleetsync_backup_bytes{server=\"src\"}",
        "fleetsync_backup_rows{server=\"src\"} 3",
    ] {
        ensure!(body.contains(metric), "metrics lack {metric}:\n{body}");
    }
    // Retention runs after each scheduled backup: keep_last = 2, plus one maybe in progress.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let src_backups = std::fs::read_dir(&dir)?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("src-"))
        .count();
    ensure!(
        src_backups <= 3,
        "{src_backups} backups of src kept with keep_last = 2"
    );
    fs.stop(STOP_TIMEOUT).await?;
    Ok(())
}

async fn http_get(port: u16, path: &str) -> Result<String> {
    Ok(crate::support::http_get(port, path).await?.1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_trinitycore_round_trip() -> Result<()> {
    let Some(fixtures) = trinitycore_fixtures("backup_trinitycore_round_trip") else {
        return Ok(());
    };
    let pair = Pair::start().await?;
    let (src, dst) = (&pair.src, &pair.dst);
    load_trinitycore(src, &fixtures).await?;
    for (i, (db, _)) in TRINITYCORE_DATABASES.iter().enumerate() {
        let report = fill_schema(src, db, 1, 12, 500 + i as u64).await?;
        if !report.empty.is_empty() {
            bail!("{db}: tables left empty: {:?}", report.empty);
        }
    }
    let config = write_config(&pair, "tc", "chunk_rows = 5\n")?;
    let id = create(&config, &[]).await?;
    restore(&config, &id, &[]).await?;
    for (db, _) in TRINITYCORE_DATABASES {
        assert_databases_equal(src, dst, db, db).await?;
        assert_schemas_equal(src, dst, db, db).await?;
    }
    // And one database under a new name.
    restore(
        &config,
        &id,
        &["--rename-db", "characters=characters_copy", "--yes"],
    )
    .await?;
    assert_databases_equal(src, dst, "characters", "characters_copy").await?;
    assert_schemas_equal(src, dst, "characters", "characters_copy").await?;
    Ok(())
}
