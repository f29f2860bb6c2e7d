//! Bidirectional groups before they run: the refusals at start (one line, nothing changed)
//! and the write cost of the version triggers (a benchmark, `#[ignore]`).

use std::time::Instant;

use anyhow::{ensure, Result};
use fleetsync_tests::{fleetsync_cmd, Fleetsync};
use mysql_async::prelude::Queryable;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bidi_refusals() -> Result<()> {
    let servers = start_members(3).await?;
    let dir = tempfile::Builder::new()
        .prefix("fleetsync-bidi-no-")
        .tempdir()?;
    let base = group_config(&dir.path().join("state"), &servers, "newest_wins", None);
    let check = |text: String, want: &'static str| {
        let dir = dir.path().to_path_buf();
        async move {
            let path = Fleetsync::write_config(&dir, &text)?;
            let out = fleetsync_cmd(&["check", "--config", &path.to_string_lossy()]).await?;
            let err = String::from_utf8_lossy(&out.stderr).to_string();
            ensure!(
                !out.status.success(),
                "check accepted a config that needs {want}"
            );
            ensure!(err.contains(want), "wanted {want:?} in: {err}");
            ensure!(err.trim().lines().count() == 1, "not one line: {err}");
            anyhow::Ok(())
        }
    };
    // A keyless table, named.
    servers[0]
        .exec("CREATE TABLE app.nokey (a INT, b INT)")
        .await?;
    for s in &servers[1..] {
        s.exec("CREATE TABLE app.nokey (a INT, b INT)").await?;
    }
    check(base.clone(), "app.nokey").await?;
    // Opted out per table: accepted, and `check` says what it will install.
    let opted = format!("{base}\n[[syncs.tables]]\nname = \"app.nokey\"\nconflict = \"none\"\n");
    let path = Fleetsync::write_config(dir.path(), &opted)?;
    let out = fleetsync_cmd(&["check", "--config", &path.to_string_lossy()]).await?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        text.contains("app.items: will add the invisible version columns"),
        "{text}"
    );
    // Nothing was installed by check.
    let cols = servers[0]
        .query_value("SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_NAME='items' AND COLUMN_NAME LIKE 'fleetsync%'")
        .await?;
    ensure!(cols.as_deref() == Some("0"), "check installed columns");
    // A table missing on one member (named by the override, so the definitions' preflight
    // already finds it: the override names no table of that member).
    servers[2].exec("DROP TABLE app.nokey").await?;
    check(opted.clone(), "no such table on server us1").await?;
    servers[2]
        .exec("CREATE TABLE app.nokey (a INT, b INT)")
        .await?;
    // The same table in a one-way sync between two members.
    let overlap = format!(
        "{opted}\n[[syncs]]\nname = \"extra\"\nsource = \"eu2\"\ntargets = [\"eu1\"]\ninclude = [\"app\\\\.items\"]\n"
    );
    check(overlap, "also in one-way sync extra").await?;
    // A newest_column that cannot be ranked.
    check(
        opted.replace("\"updated_at\"", "\"val\""),
        "newest_column \"val\" is varchar",
    )
    .await?;
    Ok(())
}

/// Write cost of the version triggers: the same single-row inserts, updates and deletes on a
/// group table (triggers) and on an identical table outside the group (none), on one member
/// with `fleetsync run` stopped. A benchmark, not a check: run it with `--ignored`; the
/// figures are in docs/bidirectional.md.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bidi_write_cost() -> Result<()> {
    let servers = start_members(2).await?;
    for s in &servers {
        s.exec("CREATE DATABASE plain; CREATE TABLE plain.items LIKE app.items")
            .await?;
    }
    let dir = tempfile::Builder::new()
        .prefix("fleetsync-bidi-cost-")
        .tempdir()?;
    let config = Fleetsync::write_config(
        dir.path(),
        &group_config(&dir.path().join("state"), &servers, "newest_wins", None),
    )?;
    let out = fleetsync_cmd(&[
        "sync",
        "once",
        "--config",
        &config.to_string_lossy(),
        "realms",
    ])
    .await;
    // `sync once` installs, then runs the group's first member sync once; only the install matters.
    drop(out);
    let n: i32 = crate::support::env_num("FLEETSYNC_BENCH_ROWS", 5000) as i32;
    let mut conn = servers[0].pool().get_conn().await?;
    for round in 0..2 {
        for table in ["app.items", "plain.items"] {
            conn.query_drop(format!("DELETE FROM {table}")).await?;
            let mut figures = Vec::new();
            for (what, sql) in [
                (
                    "insert",
                    format!("INSERT INTO {table} (id, val, updated_at) VALUES (?, 'v', NOW(6))"),
                ),
                (
                    "update",
                    format!("UPDATE {table} SET val = 'w', updated_at = NOW(6) WHERE id = ?"),
                ),
                ("delete", format!("DELETE FROM {table} WHERE id = ?")),
            ] {
                let t = Instant::now();
                for id in 1..=n {
                    conn.exec_drop(sql.as_str(), (id + round * n,)).await?;
                }
                figures.push(format!(
                    "{what} {:.0} rows/s",
                    f64::from(n) / t.elapsed().as_secs_f64()
                ));
            }
            println!(
                "round {round}: {table} ({}): {}",
                if table == "app.items" {
                    "triggers"
                } else {
                    "no triggers"
                },
                figures.join(", ")
            );
        }
    }
    Ok(())
}
