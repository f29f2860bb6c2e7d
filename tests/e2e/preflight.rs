//! Preflight of sync definitions: `fleetsync check` and `fleetsync run` refuse, one line per
//! problem and all problems at once, a definition the applier could not carry out (mapping
//! collisions, target tables of another shape, missing conflict columns, unknown per-table
//! overrides, a priority naming none of the sync's servers), before writing anything; a
//! harmless shape difference is accepted; a source DDL that a running target table no longer
//! fits pauses that table alone.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, ensure, Context, Result};
use fleetsync_tests::{fleetsync_cmd_with, wait_until, ConfigBuilder, Fleetsync, MariaDb};

use crate::support::{assert_target_untouched, Pair, REFUSE_TIMEOUT, STOP_TIMEOUT, SYNC_TIMEOUT};

/// The source's tables: `app.t1` and `app.t2` of one shape, `app.u` with an `updated_at`.
const SOURCE_TABLES: &str = "CREATE DATABASE app; \
    CREATE TABLE app.t1 (id INT PRIMARY KEY, v VARCHAR(20) NOT NULL); \
    CREATE TABLE app.t2 (id INT PRIMARY KEY, v VARCHAR(20) NOT NULL); \
    CREATE TABLE app.u (id INT PRIMARY KEY, n INT, updated_at DATETIME(6)); \
    INSERT INTO app.t1 VALUES (1, 'one'), (2, 'two'); INSERT INTO app.t2 VALUES (3, 'three'); \
    INSERT INTO app.u VALUES (1, 1, NOW(6));";

/// A config of sync `s1` (`src` → `dst`, tables `app.*`) with `extra` raw TOML lines added to
/// the sync (and possibly `[[syncs.tables]]` entries after them).
fn config(pair: &Pair, name: &str, extra: &str) -> Result<PathBuf> {
    let text = ConfigBuilder::new(&pair.state_dir())
        .server("src", &pair.src.url_root())
        .server("dst", &pair.dst.url_root())
        .sync("s1", "src", &["dst"], &["app\\..*"], &[])
        .raw(extra)
        .build();
    let dir = pair.dir.path().join(name);
    std::fs::create_dir_all(&dir)?;
    Fleetsync::write_config(&dir, &text)
}

/// `fleetsync check` and `fleetsync run` must both exit non-zero with exactly one stderr line
/// per entry of `expected`, each entry's words (case-insensitive) all in its line, in order.
async fn refuse_both(config: &Path, expected: &[&[&str]]) -> Result<()> {
    let config_s = config.to_str().context("config path")?;
    for command in ["check", "run"] {
        let out = fleetsync_cmd_with(
            &[command, "--config", config_s],
            &[("RUST_LOG", "off")],
            REFUSE_TIMEOUT,
        )
        .await
        .with_context(|| format!("fleetsync {command} must refuse"))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            !out.status.success(),
            "fleetsync {command} succeeded on a bad definition; stderr:\n{stderr}"
        );
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        ensure!(
            lines.len() == expected.len(),
            "fleetsync {command}: expected {} error line(s), got:\n{stderr}",
            expected.len()
        );
        for (line, words) in lines.iter().zip(expected) {
            let lower = line.to_lowercase();
            for w in *words {
                ensure!(
                    lower.contains(&w.to_lowercase()),
                    "fleetsync {command}: {w:?} missing from: {line}"
                );
            }
            println!("{command} refused: {line}");
        }
    }
    Ok(())
}

/// Every refusal kind in turn against one pair of servers; the target never changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_refuses_bad_definitions() -> Result<()> {
    let pair = Pair::start().await?;
    pair.src.exec(SOURCE_TABLES).await?;
    // An operator's table of another shape on the target, and a database to keep as it is.
    pair.dst
        .exec(
            "CREATE DATABASE other; \
             CREATE TABLE other.y (id INT PRIMARY KEY, v INT NOT NULL, note TEXT); \
             INSERT INTO other.y VALUES (7, 7, 'keep');",
        )
        .await?;
    let before = pair.dst.user_databases().await?;

    // Two source tables mapped onto one target table (one renamed onto the other's name).
    let c = config(&pair, "collision", "map = { \"app.t2\" = \"app.t1\" }\n")?;
    refuse_both(&c, &[&["s1", "collision", "app.t1, app.t2", "src", "map"]]).await?;

    // A map onto an existing target table of another shape.
    let c = config(&pair, "shape", "map = { \"app.t1\" = \"other.y\" }\n")?;
    let words: &[&str] = &["s1", "other.y", "dst", "app.t1", "column `v`", "kind"];
    refuse_both(&c, &[words]).await?;

    // newest-wins on a table without its newest_column.
    let c = config(
        &pair,
        "newest",
        "conflict = \"newest-wins\"\nnewest_column = \"updated_at\"\n",
    )?;
    refuse_both(
        &c,
        &[
            &["s1", "app.t1", "src", "`updated_at`"],
            &["s1", "app.t2", "src", "`updated_at`"],
        ],
    )
    .await?;

    // A per-table override naming no table of the sync.
    let c = config(
        &pair,
        "override",
        "[[syncs.tables]]\nname = \"app.nope\"\nconflict = \"manual\"\n",
    )?;
    refuse_both(
        &c,
        &[&["s1", "unknown per-table override", "app.nope", "src"]],
    )
    .await?;

    // A priority naming none of the sync's servers (a static check).
    let c = config(
        &pair,
        "priority",
        "conflict = \"source-wins\"\npriority = [\"other\"]\n\n[[servers]]\nname = \"other\"\nurl = \"mysql://root@127.0.0.1:1\"\n",
    )?;
    refuse_both(&c, &[&["syncs.s1.priority", "none of the sync's servers"]]).await?;

    // Everything at once: every problem reported, one line each.
    let c = config(
        &pair,
        "all",
        "map = { \"app.t2\" = \"app.t1\", \"app.u\" = \"other.y\" }\n\
         conflict = \"newest-wins\"\nnewest_column = \"updated_at\"\n\
         [[syncs.tables]]\nname = \"app.gone\"\nconflict = \"manual\"\n",
    )?;
    refuse_both(
        &c,
        &[
            &["unknown per-table override", "app.gone"],
            &["collision", "app.t1, app.t2"],
            &["app.t1", "`updated_at`"],
            &["app.t2", "`updated_at`"],
            &["other.y", "app.u", "column `n`"],
        ],
    )
    .await?;

    assert_target_untouched(&pair.dst, &before).await?;
    let kept = pair.dst.query_strings("SELECT * FROM other.y").await?;
    ensure!(
        kept == vec![vec![
            Some("7".into()),
            Some("7".into()),
            Some("keep".into())
        ]],
        "the operator's table changed: {kept:?}"
    );
    Ok(())
}

/// The bidirectional case of the bug report: two syncs in opposite directions under
/// newest-wins, a table without the column included on both sides: both syncs are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_refuses_bidirectional_table_without_newest_column() -> Result<()> {
    let pair = Pair::start().await?;
    let tables = "CREATE DATABASE app; \
        CREATE TABLE app.u (id INT PRIMARY KEY, n INT, updated_at DATETIME(6)); \
        CREATE TABLE app.plain (id INT PRIMARY KEY, n INT);";
    pair.src.exec(tables).await?;
    pair.dst.exec(tables).await?;
    let before = pair.dst.user_databases().await?;
    let newest = "conflict = \"newest-wins\"\nnewest_column = \"updated_at\"\n";
    let text = ConfigBuilder::new(&pair.state_dir())
        .server("src", &pair.src.url_root())
        .server("dst", &pair.dst.url_root())
        .sync("ab", "src", &["dst"], &["app\\..*"], &[])
        .raw(newest)
        .sync("ba", "dst", &["src"], &["app\\..*"], &[])
        .raw(newest)
        .build();
    let c = Fleetsync::write_config(pair.dir.path(), &text)?;
    refuse_both(
        &c,
        &[
            &["sync ab", "app.plain", "server src", "`updated_at`"],
            &["sync ba", "app.plain", "server dst", "`updated_at`"],
        ],
    )
    .await?;
    assert_target_untouched(&pair.dst, &before).await?;
    let src_dbs = pair.src.user_databases().await?;
    ensure!(
        !src_dbs.iter().any(|d| d == "fleetsync"),
        "the source got a fleetsync database: {src_dbs:?}"
    );
    Ok(())
}

/// Waits until `sql` on `db` returns `want` (first column of the first row).
async fn wait_value(db: &MariaDb, sql: &str, want: &str, fs: &Fleetsync) -> Result<()> {
    let waited = wait_until(SYNC_TIMEOUT, sql, || async {
        let got = db.query_value(sql).await?;
        ensure!(got.as_deref() == Some(want), "{sql}: {got:?}, want {want}");
        Ok(())
    })
    .await;
    waited.map_err(|e| anyhow!("{e:#}\nfleetsync log:\n{}", fs.log_tail(40)))
}

/// A target table with extra columns and a wider VARCHAR is accepted and synced; a later
/// source DDL it cannot follow (a column the target already has with another type) pauses that
/// table alone, with the reason in `status`, while the other table keeps flowing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_accepts_harmless_shape_and_pauses_table_on_later_ddl() -> Result<()> {
    let pair = Pair::start().await?;
    pair.src.exec(SOURCE_TABLES).await?;
    pair.dst
        .exec(
            "CREATE DATABASE app; \
             CREATE TABLE app.t1 (id INT PRIMARY KEY, v VARCHAR(40) NOT NULL, \
               c VARCHAR(5) NULL, added TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP);",
        )
        .await?;
    let c = config(&pair, "run", "")?;
    let out = fleetsync_cmd_with(
        &["check", "--config", c.to_str().context("path")?],
        &[("RUST_LOG", "off")],
        REFUSE_TIMEOUT,
    )
    .await?;
    ensure!(
        out.status.success(),
        "check refused a harmless shape difference: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut fs = Fleetsync::run(&c)?;
    wait_value(
        &pair.dst,
        "SELECT GROUP_CONCAT(v ORDER BY id) FROM app.t1",
        "one,two",
        &fs,
    )
    .await?;
    wait_value(&pair.dst, "SELECT COUNT(*) FROM app.t2", "1", &fs).await?;

    // The target already has a `c`: the DDL counts as done there, but its VARCHAR(5) cannot
    // take the source's DATETIME values.
    pair.src
        .exec(
            "ALTER TABLE app.t1 ADD COLUMN c DATETIME NULL; \
             INSERT INTO app.t1 VALUES (10, 'ten', '2024-05-06 07:08:09'); \
             INSERT INTO app.t2 VALUES (11, 'eleven');",
        )
        .await?;
    wait_value(&pair.dst, "SELECT COUNT(*) FROM app.t2", "2", &fs).await?;
    let waited = wait_until(SYNC_TIMEOUT, "app.t1 paused in status", || async {
        let status = crate::support::status_target(&c).await?.to_string();
        ensure!(
            status.contains("app.t1 is paused") && status.contains("column `c`"),
            "not paused yet: {status}"
        );
        Ok(())
    })
    .await;
    waited.map_err(|e| anyhow!("{e:#}\nfleetsync log:\n{}", fs.log_tail(40)))?;
    let t1 = pair.dst.count("app", "t1").await?;
    ensure!(t1 == 2, "rows of the paused table reached the target: {t1}");
    // The pipeline goes on: later rows of the other table still arrive.
    pair.src
        .exec("INSERT INTO app.t2 VALUES (12, 'twelve');")
        .await?;
    wait_value(&pair.dst, "SELECT COUNT(*) FROM app.t2", "3", &fs).await?;
    fs.ensure_running()?;
    fs.stop(STOP_TIMEOUT).await?;
    Ok(())
}
