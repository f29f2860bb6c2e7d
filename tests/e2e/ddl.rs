//! Schema changes mid-stream: each DDL is followed by row changes that must keep flowing, and
//! the target's tables and columns must end up as the source's.

use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use fleetsync_tests::{diff_databases, diff_schemas, wait_until, Fleetsync, MariaDb, Workload};

use crate::support::{Pair, STOP_TIMEOUT, SYNC_TIMEOUT};

/// Row changes after each step.
const CHANGES_PER_STEP: u64 = 300;

/// Waits until both the rows and the table/column definitions of `app` match.
async fn wait_rows_and_schema(
    fs: &mut Fleetsync,
    src: &MariaDb,
    dst: &MariaDb,
    step: &str,
) -> Result<()> {
    fs.wait_synced(src, dst, "app", SYNC_TIMEOUT)
        .await
        .with_context(|| format!("rows after {step}"))?;
    let waited = wait_until(
        Duration::from_secs(30),
        &format!("schema after {step}"),
        || async { schema_and_rows_equal(src, dst).await },
    )
    .await;
    waited.map_err(|e| anyhow!("{e:#}\nfleetsync log:\n{}", fs.log_tail(40)))
}

async fn schema_and_rows_equal(src: &MariaDb, dst: &MariaDb) -> Result<()> {
    if let Some(diff) = diff_schemas(src, dst, "app", "app").await? {
        return Err(anyhow!(diff));
    }
    if let Some(diff) = diff_databases(src, dst, "app", "app").await? {
        return Err(anyhow!(diff));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alter_table_mid_stream() -> Result<()> {
    let pair = Pair::start().await?;
    let (src, dst) = (&pair.src, &pair.dst);
    let pool = src.pool();
    let mut items = Workload::new(77);
    src.exec(&format!(
        "CREATE DATABASE app; {};",
        items.create_table_sql("app", "items")
    ))
    .await?;
    items.run(&pool, "app", "items", 500).await?;

    let config = pair.config(&["app\\..*"])?;
    let mut fs = Fleetsync::run(&config)?;
    wait_rows_and_schema(&mut fs, src, dst, "the snapshot").await?;

    let steps: [(&str, &str); 7] = [
        (
            "ADD COLUMN",
            "ALTER TABLE app.items ADD COLUMN extra VARCHAR(20) NULL DEFAULT 'x', \
             ADD COLUMN mid INT NOT NULL DEFAULT 7 AFTER k; \
             UPDATE app.items SET extra = CONCAT('e', id), mid = id % 1000 WHERE id % 3 = 0;",
        ),
        (
            "MODIFY COLUMN",
            "ALTER TABLE app.items MODIFY COLUMN k BIGINT NULL, MODIFY COLUMN s VARCHAR(200) NULL; \
             UPDATE app.items SET k = k * 1000000, s = CONCAT(IFNULL(s, ''), REPEAT('ü', 100)) \
             WHERE id % 5 = 0;",
        ),
        ("DROP COLUMN", "ALTER TABLE app.items DROP COLUMN mid;"),
        (
            "CREATE TABLE",
            "CREATE TABLE app.fresh (id INT PRIMARY KEY, v VARCHAR(10), u INT UNSIGNED); \
             INSERT INTO app.fresh VALUES (1, 'a', 4294967295), (2, NULL, 0), (3, 'c', 3);",
        ),
        (
            "RENAME TABLE",
            "RENAME TABLE app.fresh TO app.renamed; \
             INSERT INTO app.renamed VALUES (4, 'd', 4); UPDATE app.renamed SET v = 'b' WHERE id = 2;",
        ),
        ("DROP TABLE", "DROP TABLE app.renamed;"),
        (
            // Several versions of one table in one stretch of binlog, nobody waiting in between.
            "a burst of ALTERs",
            "ALTER TABLE app.items ADD COLUMN burst1 INT NULL; \
             INSERT INTO app.items (id, k, burst1) VALUES (1000001, 1, 1); \
             ALTER TABLE app.items ADD COLUMN burst2 DATETIME(6) NULL FIRST; \
             INSERT INTO app.items (id, burst1, burst2) VALUES (1000002, 2, '2024-01-01 00:00:00.5'); \
             ALTER TABLE app.items DROP COLUMN burst1; \
             UPDATE app.items SET burst2 = NOW(6) WHERE id >= 1000001;",
        ),
    ];
    for (step, sql) in steps {
        src.exec(sql)
            .await
            .with_context(|| format!("source: {step}"))?;
        items.run(&pool, "app", "items", CHANGES_PER_STEP).await?;
        wait_rows_and_schema(&mut fs, src, dst, step).await?;
        println!("{step}: rows and schema equal");
    }
    fs.stop(STOP_TIMEOUT).await?;
    Ok(())
}
