//! A table created in a group while `fleetsync run` runs (`bidi_table_created_live`).
//!
//! Three members under `newest_wins` run; on eu1 `app.newt` is created and written at once
//! (inserts, an update, a delete: made before any install, so without versions). The DDL
//! reaches eu2 and us1 through the group, and fleetsync installs the version columns, the
//! tombstone table and the triggers on all three without a restart (same pid, same start
//! count, the install's log line). Then eu2 and us1 write the table concurrently, two keys on
//! both (a conflict each: the members must agree on one winner), and eu1 updates a key it wrote before its
//! install. All three must end identical row by row (version columns included) and hold the
//! expected rows: the unversioned writes applied in order, the ranked ones winning by rank.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use fleetsync_tests::{wait_until, Fleetsync, MariaDb};

use super::*;

const NEWT: &str = "CREATE TABLE app.newt (id INT NOT NULL PRIMARY KEY, val VARCHAR(64) NOT NULL, \
    updated_at DATETIME(6) NOT NULL) ENGINE=InnoDB";

const NEWT_DUMP: &str = "SELECT id, val, CAST(updated_at AS CHAR), CAST(fleetsync_rank AS CHAR), \
    fleetsync_version, fleetsync_origin FROM app.newt ORDER BY id";

/// `newt`'s version columns, triggers and tombstone table on `s` (counts).
async fn newt_installed(s: &MariaDb) -> Result<[Option<String>; 3]> {
    Ok([
        s.query_value(
            "SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'app' \
             AND TABLE_NAME = 'newt' AND COLUMN_NAME LIKE 'fleetsync%'",
        )
        .await?,
        s.query_value(
            "SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE EVENT_OBJECT_SCHEMA = 'app' \
             AND EVENT_OBJECT_TABLE = 'newt'",
        )
        .await?,
        s.query_value(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'fleetsync' \
             AND TABLE_NAME = 'ts_app__newt'",
        )
        .await?,
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bidi_table_created_live() -> Result<()> {
    let servers = start_members(3).await?;
    let dir = tempfile::Builder::new()
        .prefix("fleetsync-bidi-newt-")
        .tempdir()?;
    let state = dir.path().join("state");
    let cfg = Fleetsync::write_config(
        dir.path(),
        &group_config(&state, &servers, "newest_wins", None),
    )?;
    let mut fs = Fleetsync::run(&cfg)?;
    let (pid, starts) = (fs.pid(), fs.starts());
    wait_until(Duration::from_secs(30), "the group's install", || async {
        for s in &servers {
            let n = s
                .query_value("SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE EVENT_OBJECT_SCHEMA = 'app'")
                .await?;
            ensure!(n.as_deref() == Some("6"), "triggers not installed yet");
        }
        Ok(())
    })
    .await
    .with_context(|| fs.log_tail(40))?;
    // Created and written on eu1 in one multi-statement query, microseconds apart: before
    // fleetsync can read the DDL and install on eu1, so these writes have no versions.
    servers[0]
        .exec(&format!(
            "{NEWT}; INSERT INTO app.newt VALUES (1,'a1','2026-01-01'),(2,'a2','2026-01-01'),\
             (3,'a3','2026-01-01'),(4,'a4','2026-01-01'),(5,'a5','2026-01-01'); \
             UPDATE app.newt SET val = 'a2u' WHERE id = 2; DELETE FROM app.newt WHERE id = 3"
        ))
        .await?;
    wait_until(
        Duration::from_secs(60),
        "newt's versions installed on every member",
        || async {
            for (n, s) in NAMES.iter().zip(&servers) {
                let have = newt_installed(s).await?;
                let want = [Some("3"), Some("3"), Some("1")];
                ensure!(
                    have.iter().map(Option::as_deref).eq(want),
                    "{n}: newt's version columns, triggers, tombstone table: {have:?}"
                );
            }
            Ok(())
        },
    )
    .await
    .with_context(|| fs.log_tail(40))?;
    // eu1's rows on the others first (the keys the next writes update must be there).
    wait_until(
        Duration::from_secs(60),
        "eu1's newt rows everywhere",
        || async {
            for (n, s) in NAMES.iter().zip(&servers) {
                let ids = s
                    .query_strings("SELECT id FROM app.newt ORDER BY id")
                    .await?;
                let ids: Vec<String> = ids
                    .into_iter()
                    .filter_map(|r| r.into_iter().next().flatten())
                    .collect();
                ensure!(ids == ["1", "2", "4", "5"], "{n}: newt ids {ids:?}");
            }
            Ok(())
        },
    )
    .await
    .with_context(|| fs.log_tail(40))?;
    // Ranked writes on eu2 and us1 at the same time, two keys on both; eu1 updates a key it
    // wrote before its install.
    let (b, c, a) = tokio::join!(
        servers[1].exec(
            "UPDATE app.newt SET val = 'b1', updated_at = '2026-04-02' WHERE id = 1; \
             UPDATE app.newt SET val = 'b4', updated_at = '2026-04-01' WHERE id = 4; \
             INSERT INTO app.newt VALUES (10, 'b10', '2026-04-01')"
        ),
        servers[2].exec(
            "UPDATE app.newt SET val = 'c1', updated_at = '2026-04-01' WHERE id = 1; \
             UPDATE app.newt SET val = 'c4', updated_at = '2026-04-02' WHERE id = 4; \
             INSERT INTO app.newt VALUES (11, 'c11', '2026-04-01')"
        ),
        servers[0].exec("UPDATE app.newt SET val = 'a5u', updated_at = '2026-01-02' WHERE id = 5"),
    );
    b?;
    c?;
    a?;
    // Keys 1 and 4: either write may win (a write made after the other arrived inherits its
    // rank and wins); the members must agree on it (checked with the version columns).
    let expected: [(&str, &[&str]); 6] = [
        ("1", &["b1", "c1"]),
        ("2", &["a2u"]),
        ("4", &["b4", "c4"]),
        ("5", &["a5u"]),
        ("10", &["b10"]),
        ("11", &["c11"]),
    ];
    wait_until(
        Duration::from_secs(60),
        "newt to converge on every member",
        || async {
            let first = servers[0].query_strings(NEWT_DUMP).await?;
            for (n, s) in NAMES.iter().zip(&servers).skip(1) {
                let other = s.query_strings(NEWT_DUMP).await?;
                ensure!(first == other, "eu1 and {n} differ: {first:?} vs {other:?}");
            }
            let got: Vec<(String, String)> = first
                .iter()
                .map(|r| {
                    let f = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
                    (f(0), f(1))
                })
                .collect();
            let fits = got.len() == expected.len()
                && got
                    .iter()
                    .zip(&expected)
                    .all(|((k, v), (ek, ev))| k == ek && ev.contains(&v.as_str()));
            ensure!(fits, "newt holds {got:?}, expected {expected:?}");
            Ok(())
        },
    )
    .await
    .with_context(|| fs.log_tail(60))?;
    // The ranked rows carry their versions everywhere; eu1's row 2 (written before its install)
    // has none.
    let ranks = servers[2]
        .query_strings("SELECT id, fleetsync_version IS NULL FROM app.newt ORDER BY id")
        .await?;
    let unversioned: Vec<String> = ranks
        .iter()
        .filter(|r| r.get(1).cloned().flatten().as_deref() == Some("1"))
        .filter_map(|r| r.first().cloned().flatten())
        .collect();
    ensure!(
        unversioned == ["2"],
        "rows without versions on us1: {unversioned:?} (expected only eu1's row 2)"
    );
    fs.ensure_running()?;
    ensure!(
        fs.pid() == pid && fs.starts() == starts,
        "fleetsync run was restarted"
    );
    let log = std::fs::read_to_string(fs.log_path())?;
    let lines = log
        .lines()
        .filter(|l| l.contains("installed on a table created while running"))
        .count();
    ensure!(
        lines == 3,
        "expected one live-install log line per member, got {lines}\n{}",
        fs.log_tail(60)
    );
    fs.stop(STOP_TIMEOUT).await?;
    Ok(())
}
