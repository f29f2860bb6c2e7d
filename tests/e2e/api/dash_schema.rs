//! The Schema & migrations, Data diff and Health pages in a real browser
//! (web/tests/schema.mjs, Debian's chromium driven by playwright-core) against a live
//! `fleetsync run` with two MariaDB servers. Everything the pages touch lives in databases the
//! sync (`app.*`) does not select, so the sync neither copies nor undoes it:
//! * schema: `m.t` differs on purpose (dst has an extra column and lacks an index); an admin
//!   compares, generates the migration (VERIFIED), applies it (confirmation), sees it in the
//!   history, rolls it back (confirmation), generates and applies it again; here dst's
//!   `SHOW CREATE TABLE m.t` must then equal src's and the history rows must exist;
//! * data: `dd.t` differs on three rows (changed, missing, extra on dst); the admin runs the
//!   data diff, sees the three rows and downloads the repair SQL; here the file must name the
//!   rows, and once run against dst, dst's rows must equal src's row by row;
//! * health: dst's `hx.child` has a foreign key without an index and orphaned rows; the admin
//!   sees the failed check with its evidence and suggestions, previews the fix (ADD INDEX) and
//!   applies it; here the index must exist on dst;
//! * a viewer sees the results and no apply/rollback/fix control.

use anyhow::{ensure, Context, Result};

use super::browser::{finish, Browser};
use crate::support::Pair;

/// `SHOW CREATE TABLE`'s text of `table` on `db`.
async fn create_table(db: &fleetsync_tests::mariadb::MariaDb, table: &str) -> Result<String> {
    let rows = db
        .query_strings(&format!("SHOW CREATE TABLE {table}"))
        .await?;
    rows.first()
        .and_then(|r| r.get(1).cloned().flatten())
        .with_context(|| format!("no SHOW CREATE TABLE {table}"))
}

async fn rows_of(db: &fleetsync_tests::mariadb::MariaDb) -> Result<Vec<Vec<Option<String>>>> {
    db.query_strings("SELECT id, name, qty FROM dd.t ORDER BY id")
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_datadiff_health_pages_in_chromium() -> Result<()> {
    let browser = Browser::ready()?;
    let pair = Pair::start().await?;
    let rows: Vec<String> = (1..=20)
        .map(|i| format!("({i}, 'n{i}', {})", i * 10))
        .collect();
    let dd = format!(
        "CREATE DATABASE dd; CREATE TABLE dd.t (id INT PRIMARY KEY, name VARCHAR(20), qty INT); \
         INSERT INTO dd.t VALUES {}",
        rows.join(", ")
    );
    pair.src
        .exec(&format!(
            "CREATE DATABASE app; CREATE TABLE app.items (id INT PRIMARY KEY, v VARCHAR(20)); \
             INSERT INTO app.items VALUES (1, 'one'); \
             CREATE DATABASE m; CREATE TABLE m.t (id INT PRIMARY KEY, v VARCHAR(20), KEY v_idx (v)); \
             INSERT INTO m.t VALUES (1, 'x'); {dd}"
        ))
        .await?;
    pair.dst
        .exec(&format!(
            "CREATE DATABASE m; CREATE TABLE m.t (id INT PRIMARY KEY, v VARCHAR(20), extra INT NULL); \
             INSERT INTO m.t VALUES (1, 'x', NULL); {dd}; \
             UPDATE dd.t SET qty = 999 WHERE id = 3; DELETE FROM dd.t WHERE id = 5; \
             INSERT INTO dd.t VALUES (99, 'stray', 0); \
             CREATE DATABASE hx; CREATE TABLE hx.parent (id INT PRIMARY KEY) ENGINE=InnoDB; \
             INSERT INTO hx.parent VALUES (1); \
             CREATE TABLE hx.child (id INT PRIMARY KEY, parent_id INT, \
               CONSTRAINT fk_parent FOREIGN KEY (parent_id) REFERENCES hx.parent (id)) ENGINE=InnoDB; \
             SET SESSION foreign_key_checks = 0; \
             ALTER TABLE hx.child DROP INDEX fk_parent; \
             INSERT INTO hx.child VALUES (1, 1), (2, 42), (3, 43); \
             SET SESSION foreign_key_checks = 1"
        ))
        .await?;
    ensure!(
        create_table(&pair.src, "m.t").await? != create_table(&pair.dst, "m.t").await?,
        "m.t must differ before the test"
    );
    let stack = super::start_stack(
        &pair,
        "",
        "",
        &[("ui-admin", "admin"), ("ui-look", "viewer")],
    )
    .await?;
    let (admin, viewer) = (&stack.tokens[0], &stack.tokens[1]);
    let repair_out = pair.dir.path().join("downloaded-repair.sql");
    let repair_s = repair_out.to_str().context("path")?;

    browser
        .run_script(
            "schema.mjs",
            stack.api_port,
            &[
                ("ADMIN_TOKEN", admin),
                ("VIEWER_TOKEN", viewer),
                ("REPAIR_OUT", repair_s),
            ],
            &stack.fs,
        )
        .await?;

    // Schema: dst's table is now src's, and dst's history holds the rolled-back migration and
    // the one applied after it. The migration
    // names the index type (`USING BTREE`, InnoDB's default, which SHOW CREATE TABLE then
    // prints): the same index, so that clause is left out of the comparison.
    let (s, d) = (
        create_table(&pair.src, "m.t").await?,
        create_table(&pair.dst, "m.t")
            .await?
            .replace(" USING BTREE", ""),
    );
    ensure!(s == d, "m.t after the migration:\nsrc: {s}\ndst: {d}");
    let history = pair
        .dst
        .query_strings("SELECT scope, status FROM fleetsync.schema_migrations ORDER BY id")
        .await?;
    ensure!(
        history
            == [
                [Some("m".to_string()), Some("rolled_back".to_string())],
                [Some("m".to_string()), Some("applied".to_string())]
            ],
        "dst's migration history: {history:?}"
    );

    // The history route the page reads: the viewer's answer, and bad input (nothing read).
    let r = stack
        .api
        .get("/api/v1/migrations?server=dst&database=m", Some(viewer))
        .await?;
    let h = r.json()?;
    ensure!(
        r.status == 200
            && h["target"] == "dst/m"
            && h["matches_last_applied"] == true
            && h["migrations"][0]["status"] == "rolled_back"
            && h["migrations"][1]["status"] == "applied",
        "GET /api/v1/migrations: {} {}",
        r.status,
        r.body
    );
    for (query, status, field) in [
        ("server=nope", 404, "server"),
        ("server=dst&database=nosuchdb", 404, "database"),
        ("server=dst&database=a%2Fb", 404, "database"),
        ("server=dst&database=", 400, "database"),
        ("server=dst&database=%F0%9F%98%80", 404, "database"),
        ("server=dst&bogus=1", 400, "bogus"),
        ("database=m", 400, "server"),
    ] {
        let r = stack
            .api
            .get(&format!("/api/v1/migrations?{query}"), Some(viewer))
            .await?;
        ensure!(
            r.status == status && r.json()?["field"] == field,
            "GET /api/v1/migrations?{query}: {} {}",
            r.status,
            r.body
        );
    }

    // Data: the downloaded repair SQL names the three rows and, run on dst, makes dd.t equal.
    let sql = std::fs::read_to_string(&repair_out)
        .with_context(|| format!("the downloaded {}", repair_out.display()))?;
    for needle in ["`dd`.`t`", "'n3'", "'n5'", "99"] {
        ensure!(sql.contains(needle), "repair SQL lacks {needle:?}:\n{sql}");
    }
    let statements = sql
        .lines()
        .filter(|l| {
            let l = l.trim_start().to_ascii_uppercase();
            l.starts_with("REPLACE")
                || l.starts_with("INSERT")
                || l.starts_with("DELETE")
                || l.starts_with("UPDATE")
        })
        .count();
    ensure!(
        statements >= 2,
        "repair SQL has {statements} row statement(s):\n{sql}"
    );
    ensure!(
        rows_of(&pair.src).await? != rows_of(&pair.dst).await?,
        "the repair SQL must be a download only (dst changed before it was run)"
    );
    pair.dst.load_sql_file(&repair_out).await?;
    let (s, d) = (rows_of(&pair.src).await?, rows_of(&pair.dst).await?);
    ensure!(s.len() == 20, "src dd.t: {s:?}");
    for (a, b) in s.iter().zip(&d) {
        ensure!(a == b, "dd.t after the repair SQL: src {a:?} dst {b:?}");
    }
    ensure!(
        s.len() == d.len(),
        "dd.t: src {} rows, dst {}",
        s.len(),
        d.len()
    );

    // Health: the safe fix applied in the browser added the foreign key's index.
    let child = create_table(&pair.dst, "hx.child").await?;
    ensure!(
        child.contains("KEY `fk_parent_idx` (`parent_id`)"),
        "hx.child after the fix: {child}"
    );

    browser.ensure_screenshots(&[
        "schema-diff",
        "schema-migration",
        "schema-history",
        "schema-dark",
        "schema-phone",
        "datadiff-results",
        "health-failed",
        "health-fix-preview",
        "schema-viewer",
    ])?;
    finish(stack.fs, &[admin, viewer]).await?;
    Ok(())
}
