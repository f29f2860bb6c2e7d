//! Data diff (`fleetsync diff data`): two servers with the same tables (int, varchar and
//! composite primary keys, a keyless table with a unique NOT NULL key, one with no key at all,
//! and the every-column-type table of `types.rs`); rows altered on the target in known ways
//! must be found exactly (no more, no fewer); the repair SQL makes the target equal; the
//! too-large-table and missing-privilege cases give clear answers.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use fleetsync_tests::{assert_databases_equal, fleetsync_cmd_with, ConfigBuilder, Fleetsync};

use crate::support::{exec_lenient, Pair};
use crate::types::{all_inserts, create_tables};

const CMD_TIMEOUT: Duration = Duration::from_secs(120);

/// The extra tables, created and filled identically on both sides. `app.ints` (integer key:
/// spans and per-bucket checksums) and `app.vbig` (character key: ranges cut at real keys)
/// have 5000 rows: more than the drill-down's row-level threshold, so a differing chunk is
/// bucketed or split first.
fn extra_tables() -> String {
    let mut sql = String::from(
        "USE app; CREATE TABLE app.ints (id INT NOT NULL PRIMARY KEY, v VARCHAR(20) COLLATE utf8mb4_general_ci NULL, f FLOAT NULL, d DOUBLE NULL) ENGINE=InnoDB;
         INSERT INTO app.ints SELECT seq, CONCAT('v', seq), seq / 7, seq / 3 FROM seq_1_to_5000;
         UPDATE app.ints SET v = 'abc' WHERE id = 10;
         UPDATE app.ints SET v = NULL WHERE id = 50;
         CREATE TABLE app.vpk (k VARCHAR(20) COLLATE utf8mb4_general_ci NOT NULL PRIMARY KEY, v INT NOT NULL) ENGINE=InnoDB;
         INSERT INTO app.vpk SELECT CONCAT('k', seq), seq FROM seq_1_to_300;
         CREATE TABLE app.comp (a INT NOT NULL, b VARCHAR(10) NOT NULL, c INT NULL, PRIMARY KEY (a, b)) ENGINE=InnoDB;
         INSERT INTO app.comp SELECT seq % 10, CONCAT('b', seq), seq FROM seq_1_to_400;
         CREATE TABLE app.uniq (a INT NOT NULL, b INT NOT NULL, v VARCHAR(10) NULL, UNIQUE KEY ab (a, b)) ENGINE=InnoDB;
         INSERT INTO app.uniq SELECT seq, seq * 2, 'u' FROM seq_1_to_200;
         CREATE TABLE app.nokey (a INT NULL, b VARCHAR(10) NULL) ENGINE=InnoDB;
         INSERT INTO app.nokey VALUES (1, 'x'), (1, 'x'), (2, NULL), (3, ''), (4, 'y');
         CREATE TABLE app.vbig (k VARCHAR(20) NOT NULL PRIMARY KEY, v INT NOT NULL) ENGINE=InnoDB;
         INSERT INTO app.vbig SELECT CONCAT('r', LPAD(seq, 5, '0')), seq FROM seq_1_to_5000;
         CREATE TABLE app.wide (id BIGINT NOT NULL PRIMARY KEY, v INT NOT NULL) ENGINE=InnoDB;
         INSERT INTO app.wide VALUES (-9223372036854775808, 1), (-5, 2), (0, 3), (7, 4), (9223372036854775807, 5);",
    );
    sql.push_str("ANALYZE TABLE app.ints, app.vbig;");
    sql
}

/// The changes made on the target only, and the keys each must be reported under.
const TARGET_CHANGES: &str = "
    UPDATE app.ints SET v = 'ABC' WHERE id = 10;
    UPDATE app.ints SET v = 'v20 ' WHERE id = 20;
    UPDATE app.ints SET f = f + 0.001 WHERE id = 30;
    DELETE FROM app.ints WHERE id = 40;
    UPDATE app.ints SET v = '' WHERE id = 50;
    UPDATE app.ints SET d = d + 1e-12 WHERE id = 4321;
    INSERT INTO app.ints VALUES (9000, 'new', 1, 1);
    DELETE FROM app.vpk WHERE k = 'k1';
    INSERT INTO app.vpk VALUES ('newkey', 1);
    UPDATE app.vpk SET v = -2 WHERE k = 'k2';
    UPDATE app.vpk SET k = 'K3' WHERE k = 'k3';
    UPDATE app.comp SET c = -1 WHERE a = 1 AND b = 'b1';
    UPDATE app.uniq SET v = NULL WHERE a = 2;
    DELETE FROM app.nokey WHERE a = 1 LIMIT 1;
    INSERT INTO app.nokey VALUES (5, 'z');
    UPDATE app.all_types SET tm6 = '-100:30:00.500001' WHERE id = 4;
    UPDATE app.all_types SET c = '' WHERE id = 5;
    DELETE FROM app.signed_mix WHERE id = 2;
    UPDATE app.vbig SET v = 0 WHERE k = 'r04000';
    DELETE FROM app.vbig WHERE k = 'r00100';
    INSERT INTO app.vbig VALUES ('r02500x', 1);
    UPDATE app.wide SET v = 0 WHERE id = -9223372036854775808;
    DELETE FROM app.wide WHERE id = 9223372036854775807;
    INSERT INTO app.wide VALUES (-6, 9);
";

fn config(pair: &Pair, src_url: &str) -> Result<PathBuf> {
    let text = ConfigBuilder::new(&pair.state_dir())
        .server("src", src_url)
        .server("dst", &pair.dst.url_root())
        .build();
    Fleetsync::write_config(pair.dir.path(), &text)
}

/// `fleetsync diff data --config CFG src/app dst/app EXTRA...`: (exit code, stdout, stderr).
async fn diff_data(cfg: &Path, extra: &[&str]) -> Result<(i32, String, String)> {
    let cfg = cfg.to_str().context("config path")?;
    let mut args = vec!["diff", "data", "--config", cfg, "src/app", "dst/app"];
    args.extend_from_slice(extra);
    let out = fleetsync_cmd_with(&args, &[], CMD_TIMEOUT).await?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

async fn diff_json(cfg: &Path, extra: &[&str]) -> Result<(i32, serde_json::Value)> {
    let mut args = vec!["--json"];
    args.extend_from_slice(extra);
    let (code, out, err) = diff_data(cfg, &args).await?;
    let json = serde_json::from_str(&out)
        .with_context(|| format!("no JSON (exit {code}): {out} {err}"))?;
    Ok((code, json))
}

/// The keys of one kind of one table, as compact JSON strings.
fn keys(report: &serde_json::Value, table: &str, kind: &str) -> Result<BTreeSet<String>> {
    let t = report["tables"]
        .as_array()
        .context("tables")?
        .iter()
        .find(|t| t["table"] == table)
        .with_context(|| format!("table {table} in {report}"))?;
    Ok(t[kind]
        .as_array()
        .with_context(|| format!("{table}.{kind}"))?
        .iter()
        .map(|k| k.to_string())
        .collect())
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

async fn setup(pair: &Pair) -> Result<()> {
    for db in [&pair.src, &pair.dst] {
        create_tables(db).await?;
        exec_lenient(db, &all_inserts(0)).await?;
        exec_lenient(db, &extra_tables()).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_diff_finds_exact_rows_and_repairs() -> Result<()> {
    let pair = Pair::start().await?;
    setup(&pair).await?;
    let cfg = config(&pair, &pair.src.url_root())?;
    let (code, out, err) = diff_data(&cfg, &[]).await?;
    ensure!(
        code == 0 && out.contains("EQUAL"),
        "equal servers: exit {code}: {out} {err}"
    );
    let (code, _, err) = diff_data(&cfg, &["src/app"]).await?;
    ensure!(
        code == 2,
        "an extra argument is an error: exit {code}: {err}"
    );

    exec_lenient(&pair.dst, TARGET_CHANGES).await?;
    let (code, report) = diff_json(&cfg, &[]).await?;
    ensure!(code == 1, "different servers: exit {code}: {report}");
    let expect = [
        (
            "ints",
            "different",
            set(&[
                r#"{"id":10}"#,
                r#"{"id":20}"#,
                r#"{"id":30}"#,
                r#"{"id":50}"#,
                r#"{"id":4321}"#,
            ]),
        ),
        ("ints", "only_in_source", set(&[r#"{"id":40}"#])),
        ("ints", "only_in_target", set(&[r#"{"id":9000}"#])),
        ("vpk", "different", set(&[r#"{"k":"k2"}"#, r#"{"k":"k3"}"#])),
        ("vpk", "only_in_source", set(&[r#"{"k":"k1"}"#])),
        ("vpk", "only_in_target", set(&[r#"{"k":"newkey"}"#])),
        ("comp", "different", set(&[r#"{"a":1,"b":"b1"}"#])),
        ("uniq", "different", set(&[r#"{"a":2,"b":4}"#])),
        ("nokey", "only_in_source", set(&[r#"{"a":1,"b":"x"}"#])),
        ("nokey", "only_in_target", set(&[r#"{"a":5,"b":"z"}"#])),
        (
            "all_types",
            "different",
            set(&[r#"{"id":4}"#, r#"{"id":5}"#]),
        ),
        ("signed_mix", "only_in_source", set(&[r#"{"id":2}"#])),
        ("vbig", "different", set(&[r#"{"k":"r04000"}"#])),
        ("vbig", "only_in_source", set(&[r#"{"k":"r00100"}"#])),
        ("vbig", "only_in_target", set(&[r#"{"k":"r02500x"}"#])),
        // Integer spans over the whole signed BIGINT range (no overflow in `k - lo`).
        (
            "wide",
            "different",
            set(&[r#"{"id":-9223372036854775808}"#]),
        ),
        (
            "wide",
            "only_in_source",
            set(&[r#"{"id":9223372036854775807}"#]),
        ),
        ("wide", "only_in_target", set(&[r#"{"id":-6}"#])),
        ("ci_key", "different", set(&[])),
    ];
    for (table, kind, want) in &expect {
        let got = keys(&report, table, kind)?;
        ensure!(&got == want, "{table}.{kind}: got {got:?}, want {want:?}");
    }
    let total: usize = expect.iter().map(|(_, _, w)| w.len()).sum();
    ensure!(
        report["differing_rows"] == total as u64,
        "differing_rows: {report}"
    );
    let methods: Vec<(String, String)> = report["tables"]
        .as_array()
        .context("tables")?
        .iter()
        .map(|t| (t["table"].to_string(), t["method"].to_string()))
        .collect();
    for (table, method) in [
        ("uniq", "unique_key"),
        ("nokey", "whole_table"),
        ("ints", "primary_key"),
    ] {
        ensure!(
            methods.contains(&(format!("\"{table}\""), format!("\"{method}\""))),
            "{table} compared by {method}: {methods:?}"
        );
    }

    // Repair: the generated SQL makes the target equal.
    let repair = pair.dir.path().join("repair.sql");
    let (code, _, err) =
        diff_data(&cfg, &["--repair-sql", repair.to_str().context("path")?]).await?;
    ensure!(code == 1, "diff with --repair-sql: exit {code}: {err}");
    pair.dst.load_sql_file(&repair).await?;
    let (code, out, err) = diff_data(&cfg, &[]).await?;
    ensure!(code == 0, "after repair: exit {code}: {out} {err}");
    assert_databases_equal(&pair.src, &pair.dst, "app", "app").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_diff_limits_and_privileges() -> Result<()> {
    let pair = Pair::start().await?;
    setup(&pair).await?;
    let cfg = config(&pair, &pair.src.url_root())?;

    // Too large: skipped with the reason, exit 3 (equality not claimed).
    let (code, report) = diff_json(&cfg, &["--max-table-rows", "1000"]).await?;
    ensure!(
        code == 3,
        "skipped table, nothing else different: exit {code}: {report}"
    );
    let ints = report["tables"]
        .as_array()
        .context("tables")?
        .iter()
        .find(|t| t["table"] == "ints")
        .context("ints")?;
    let reason = ints["skipped"].as_str().unwrap_or("");
    ensure!(
        ints["status"] == "skipped" && reason.contains("> --max-table-rows 1000"),
        "{ints}"
    );
    ensure!(
        report["equal"] == false && report["complete"] == false,
        "{report}"
    );
    ensure!(
        report["skipped_tables"] == serde_json::json!(["app.ints", "app.vbig"]),
        "{report}"
    );
    // A difference elsewhere still exits 1.
    exec_lenient(&pair.dst, "UPDATE app.vpk SET v = 0 WHERE k = 'k9';").await?;
    let (code, _, _) = diff_data(&cfg, &["--max-table-rows", "1000"]).await?;
    ensure!(code == 1, "difference plus skipped table: exit {code}");
    // A time budget that runs out.
    let (code, out, _) = diff_data(
        &cfg,
        &["--max-table-seconds", "0", "--include", "app\\.ints"],
    )
    .await?;
    ensure!(
        code == 3 && out.contains("--max-table-seconds 0"),
        "time budget: exit {code}: {out}"
    );

    // Privileges: no REPLICATION CLIENT for the lag check; no SELECT on a column.
    pair.src
        .create_user("ro", "pw", &["SELECT ON app.*"])
        .await?;
    let cfg = config(&pair, &pair.src.url_user("ro", "pw"))?;
    let (code, _, err) = diff_data(&cfg, &[]).await?;
    ensure!(
        code == 2 && err.contains("REPLICATION CLIENT") && err.contains("--max-lag 0"),
        "missing REPLICATION CLIENT: exit {code}: {err}"
    );
    pair.src
        .exec("REVOKE SELECT ON app.* FROM 'ro'@'%'; GRANT SELECT ON app.vpk TO 'ro'@'%'; GRANT INSERT ON app.ints TO 'ro'@'%';")
        .await?;
    let (code, _, err) =
        diff_data(&cfg, &["--max-lag", "0", "--include", "app\\.(ints|vpk)"]).await?;
    ensure!(
        code == 2 && err.contains("missing privilege SELECT") && err.contains("ints"),
        "missing SELECT: exit {code}: {err}"
    );
    Ok(())
}
