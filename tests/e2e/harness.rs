//! Self-tests of the harness; none of them needs the fleetsync binary.
//!
//! They check that servers start with the settings the other tests rely on, that the
//! comparison sees equality and every kind of difference, that the workload is deterministic
//! and valid SQL, and that the generic generator fills every TrinityCore table.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use fleetsync_tests::fixtures::TRINITYCORE_DATABASES;
use fleetsync_tests::{
    assert_databases_equal, assert_schemas_equal, churn_schema, diff_databases, diff_schemas,
    fill_schema, load_trinitycore, trinitycore_fixtures, wait_until, MariaDb, Workload,
};

use crate::support::{exec_lenient, Pair};
use crate::types::{all_inserts, create_tables};

/// Runs the same deterministic content on both servers of a pair.
async fn same_content(a: &MariaDb, b: &MariaDb) -> Result<()> {
    for db in [a, b] {
        create_tables(db).await?;
        exec_lenient(db, &all_inserts(0)).await?;
        let (mut keyed, mut keyless) = (Workload::new(1), Workload::keyless(2));
        db.exec(&format!(
            "{}; {};",
            keyed.create_table_sql("app", "keyed"),
            keyless.create_table_sql("app", "keyless")
        ))
        .await?;
        keyed.run(&db.pool(), "app", "keyed", 3_000).await?;
        keyless.run(&db.pool(), "app", "keyless", 3_000).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harness_self_test() -> Result<()> {
    let started = Instant::now();
    let pair = Pair::start().await?;
    let (a, b) = (&pair.src, &pair.dst);
    println!("two servers up in {:.2?}", started.elapsed());
    ensure!(a.port() != 3306 && b.port() != 3306 && a.port() != b.port());
    let vars = a.query_strings("SELECT @@log_bin, @@binlog_format, @@binlog_row_metadata, @@server_id, @@gtid_domain_id").await?;
    ensure!(
        vars[0] == ["1", "ROW", "FULL", "1", "1"].map(|s| Some(s.to_string())),
        "{vars:?}"
    );

    same_content(a, b).await?;
    assert_databases_equal(a, b, "app", "app").await?;
    assert_schemas_equal(a, b, "app", "app").await?;
    let keyed_rows = a.count("app", "keyed").await?;
    ensure!(keyed_rows > 500, "the workload left {keyed_rows} rows");

    // Raw bytes: a latin1 0xFF and invalid UTF-8 come back as stored.
    let raw = a
        .query_rows("SELECT lc, vb FROM app.all_types WHERE id = 3")
        .await?;
    ensure!(
        raw[0][0].as_deref() == Some(&[0x81, 0x8D, 0x8F, 0x90][..]),
        "{raw:?}"
    );
    ensure!(
        raw[0][1]
            .as_deref()
            .is_some_and(|v| std::str::from_utf8(v).is_err()),
        "{raw:?}"
    );

    // One changed byte, found with its key.
    b.exec("UPDATE app.all_types SET vb = X'C328FFFE00EDA080F4908081' WHERE id = 3")
        .await?;
    let diff = diff_databases(a, b, "app", "app")
        .await?
        .context("a changed cell must differ")?;
    ensure!(
        diff.contains("all_types") && diff.contains("key (\"3\")"),
        "{diff}"
    );
    b.exec("UPDATE app.all_types SET vb = X'C328FFFE00EDA080F4908080' WHERE id = 3")
        .await?;
    assert_databases_equal(a, b, "app", "app").await?;

    // A duplicate in a keyless table; a missing row in a keyed one.
    b.exec("INSERT INTO app.keyless SELECT * FROM app.keyless LIMIT 1")
        .await?;
    let diff = diff_databases(a, b, "app", "app")
        .await?
        .context("a duplicate must differ")?;
    ensure!(
        diff.contains("keyless") && diff.contains(" times vs "),
        "{diff}"
    );
    b.exec("DELETE FROM app.keyless LIMIT 1; DELETE FROM app.signed_mix WHERE id = 2")
        .await?;
    let diff = diff_databases(a, b, "app", "app")
        .await?
        .context("a missing row must differ")?;
    ensure!(diff.contains("(missing)"), "{diff}");

    // Column and table differences.
    b.exec("ALTER TABLE app.keyed ADD COLUMN extra INT; CREATE TABLE app.only_b (x INT)")
        .await?;
    let diff = diff_schemas(a, b, "app", "app")
        .await?
        .context("schemas must differ")?;
    ensure!(
        diff.contains("keyed columns differ") && diff.contains("only_b only on the second"),
        "{diff}"
    );

    // Users, passwords and SQL files.
    a.create_user("u1", "secret-1", &["SELECT ON app.*"])
        .await?;
    let pool = mysql_async::Pool::new(a.url_user("u1", "secret-1").as_str());
    ensure!(
        mysql_async::prelude::Queryable::query_first::<u64, _>(
            &mut pool.get_conn().await?,
            "SELECT COUNT(*) FROM app.keyed"
        )
        .await?
            == Some(keyed_rows)
    );
    pool.disconnect().await?;
    let file = pair.dir.path().join("load.sql");
    std::fs::write(&file, "CREATE TABLE loaded (v VARCHAR(8)) DEFAULT CHARSET=utf8mb4;\nINSERT INTO loaded VALUES ('😀');\n")?;
    a.load_sql_file_into(Some("app"), &file).await?;
    ensure!(
        a.query_rows("SELECT v FROM app.loaded").await?[0][0].as_deref() == Some("😀".as_bytes())
    );
    std::fs::write(&file, "THIS IS NOT SQL;")?;
    let err = a.load_sql_file(&file).await.expect_err("bad SQL must fail");
    ensure!(format!("{err:#}").contains("syntax"), "{err:#}");

    // Waits time out with the last reason.
    let err = wait_until(Duration::from_millis(300), "never", || async {
        anyhow::bail!("still no")
    })
    .await
    .expect_err("must time out");
    ensure!(format!("{err:#}").contains("still no"), "{err:#}");

    println!("harness self-test took {:.2?}", started.elapsed());
    Ok(())
}

/// The server variants the bad-input tests need actually start with those settings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harness_server_variants() -> Result<()> {
    let started = Instant::now();
    let (off, stmt, minimal) = tokio::join!(
        MariaDb::start_with(11, &["--skip-log-bin"]),
        MariaDb::start_with(12, &["--binlog-format=STATEMENT"]),
        MariaDb::start_with(
            13,
            &[
                "--binlog-row-metadata=MINIMAL",
                "--default-time-zone=+05:00"
            ]
        ),
    );
    let (off, stmt, minimal) = (off?, stmt?, minimal?);
    let q = "SELECT @@log_bin, @@binlog_format, @@binlog_row_metadata, @@global.time_zone";
    let expected = [
        (&off, ["0", "ROW", "FULL", "SYSTEM"]),
        (&stmt, ["1", "STATEMENT", "FULL", "SYSTEM"]),
        (&minimal, ["1", "ROW", "MINIMAL", "+05:00"]),
    ];
    for (server, want) in expected {
        let got = server.query_strings(q).await?;
        ensure!(
            got == vec![want.map(|s| Some(s.to_string())).to_vec()],
            "{got:?} != {want:?}"
        );
    }
    ensure!(off.binlog_position().await.is_err(), "binlog must be off");
    let data_dir = off.data_dir().to_path_buf();
    drop(off);
    ensure!(!data_dir.exists(), "the data dir must go with the server");
    println!("three server variants checked in {:.2?}", started.elapsed());
    Ok(())
}

/// The generic generator puts rows in every TrinityCore base table and changes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harness_trinitycore_generator() -> Result<()> {
    let Some(fixtures) = trinitycore_fixtures("harness_trinitycore_generator") else {
        return Ok(());
    };
    let started = Instant::now();
    let db = MariaDb::start(21).await?;
    load_trinitycore(&db, &fixtures).await?;
    println!("fixtures loaded in {:.2?}", started.elapsed());
    for (i, (schema, _)) in TRINITYCORE_DATABASES.iter().enumerate() {
        let report = fill_schema(&db, schema, 1, 3, i as u64).await?;
        ensure!(
            report.empty.is_empty(),
            "{schema}: empty tables {:?}",
            report.empty
        );
        churn_schema(&db, schema, 100, i as u64).await?;
        println!("{schema}: {} tables filled and changed", report.tables);
    }
    println!("generator run in {:.2?}", started.elapsed());
    Ok(())
}
