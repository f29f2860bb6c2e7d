//! A member joining an installed group (`bidi_member_joins`).
//!
//! Two members (eu1, eu2) under `newest_wins` run with inserts, updates and deletes (so they
//! hold tombstones); `fleetsync run` is stopped. A third member (us1) with the same tables is
//! added to the config:
//! * with a row in `app.items`, start-up refuses it with one line naming the member and the
//!   table, and changes nothing on any member (no version columns, tombstone tables or
//!   triggers on us1; eu1 and eu2 untouched);
//! * with the tables empty, it joins: preflight accepts it although its tables lack the
//!   version columns the others have (installed right after preflight), it gets every row,
//!   version columns included, and concurrent writes on all three members converge (a
//!   deterministic set: conflicting updates with explicit `updated_at`, a delete on us1 of a
//!   key it received, inserts from every member).

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use fleetsync_tests::{fleetsync_cmd, wait_until, Fleetsync, MariaDb};

use super::*;

/// Rows, version columns included, of `app.items` on `s`.
const DUMP: &str = "SELECT id, val, CAST(updated_at AS CHAR), CAST(fleetsync_rank AS CHAR), \
                    fleetsync_version, fleetsync_origin FROM app.items ORDER BY id";

/// What fleetsync installed on `s`: version columns, tombstone rows and triggers (counts).
async fn installed(s: &MariaDb) -> Result<Vec<Option<String>>> {
    let mut out = Vec::new();
    for sql in [
        "SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'app' AND COLUMN_NAME LIKE 'fleetsync%'",
        "SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE EVENT_OBJECT_SCHEMA = 'app'",
        "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'fleetsync' AND TABLE_NAME LIKE 'ts%'",
    ] {
        out.push(s.query_value(sql).await?);
    }
    Ok(out)
}

async fn exec_all(s: &MariaDb, sqls: &[&str]) -> Result<()> {
    for sql in sqls {
        s.exec(sql).await.with_context(|| sql.to_string())?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bidi_member_joins() -> Result<()> {
    let servers = start_members(3).await?;
    let dir = tempfile::Builder::new()
        .prefix("fleetsync-bidi-join-")
        .tempdir()?;
    let state = dir.path().join("state");
    let two = Fleetsync::write_config(
        dir.path(),
        &group_config(&state, &servers[..2], "newest_wins", None),
    )?;
    let mut fs = Fleetsync::run(&two)?;
    wait_until(
        Duration::from_secs(30),
        "the install on eu1 and eu2",
        || async {
            for s in &servers[..2] {
                let have = installed(s).await?;
                ensure!(
                    have[1].as_deref() == Some("6"),
                    "triggers not installed yet"
                );
            }
            Ok(())
        },
    )
    .await
    .with_context(|| fs.log_tail(40))?;
    exec_all(
        &servers[0],
        &[
            "INSERT INTO app.items VALUES (1,'a1','2026-01-01'),(2,'a2','2026-01-01'),(3,'a3','2026-01-01'),(4,'a4','2026-01-01'),(5,'a5','2026-01-01')",
            "UPDATE app.items SET val = 'a2u', updated_at = '2026-01-02' WHERE id = 2",
            "DELETE FROM app.items WHERE id = 3",
        ],
    )
    .await?;
    exec_all(
        &servers[1],
        &[
            "INSERT INTO app.items VALUES (11,'b11','2026-01-01'),(12,'b12','2026-01-01'),(13,'b13','2026-01-01')",
            "DELETE FROM app.items WHERE id = 13",
        ],
    )
    .await?;
    wait_until(Duration::from_secs(30), "eu1's writes on eu2", || async {
        ensure!(servers[1].count("app", "items").await? == 6, "not yet");
        Ok(())
    })
    .await
    .with_context(|| fs.log_tail(40))?;
    // eu2 edits and deletes rows eu1 wrote.
    exec_all(
        &servers[1],
        &[
            "UPDATE app.items SET val = 'b1', updated_at = '2026-01-03' WHERE id = 1",
            "DELETE FROM app.items WHERE id = 5",
        ],
    )
    .await?;
    converge(&servers[..2], 30)
        .await
        .with_context(|| fs.log_tail(40))?;
    fs.stop(STOP_TIMEOUT).await?;
    // Key 5 was on both when eu2 deleted it: both hold its tombstone. (Keys 3 and 13 were
    // deleted right after their insert: the other member's initial snapshot may have come
    // after the delete, and then it never saw the key at all.)
    for s in &servers[..2] {
        let ts = s
            .query_value("SELECT COUNT(*) FROM fleetsync.ts_app__items WHERE id = 5")
            .await?;
        ensure!(
            ts.as_deref() == Some("1"),
            "no tombstone of key 5 before the join"
        );
    }
    let before: Vec<_> = {
        let mut v = Vec::new();
        for s in &servers[..2] {
            v.push((s.query_strings(DUMP).await?, installed(s).await?));
        }
        v
    };
    ensure!(
        installed(&servers[2]).await? == vec![Some("0".into()), Some("0".into()), Some("0".into())],
        "us1 has fleetsync's objects before joining"
    );

    // us1 joins with a row: refused, nothing changed anywhere.
    let three = Fleetsync::write_config(
        dir.path(),
        &group_config(&state, &servers, "newest_wins", None),
    )?;
    servers[2]
        .exec("INSERT INTO app.items VALUES (3,'old','2025-01-01')")
        .await?;
    let want = "server us1 joins the installed group with rows in app.items:";
    let path = three.to_string_lossy().to_string();
    let out = fleetsync_cmd(&["check", "--config", &path]).await?;
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    ensure!(!out.status.success(), "check accepted us1 with a row");
    ensure!(err.contains(want), "wanted {want:?} in: {err}");
    ensure!(err.trim().lines().count() == 1, "not one line: {err}");
    let out = fleetsync_cmd(&["run", "--config", &path]).await?;
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    ensure!(!out.status.success(), "run accepted us1 with a row");
    ensure!(err.contains(want), "wanted {want:?} in: {err}");
    println!("refused: {}", err.trim());
    for (i, s) in servers[..2].iter().enumerate() {
        let now = (s.query_strings(DUMP).await?, installed(s).await?);
        ensure!(
            now == before[i],
            "{} changed by the refused start",
            NAMES[i]
        );
    }
    ensure!(
        installed(&servers[2]).await? == vec![Some("0".into()), Some("0".into()), Some("0".into())],
        "the refused start installed on us1"
    );
    ensure!(
        servers[2].count("app", "items").await? == 1,
        "us1's row changed"
    );

    // Emptied, us1 joins and gets every row, version columns included.
    servers[2].exec("DELETE FROM app.items").await?;
    let mut fs = Fleetsync::run(&three)?;
    converge(&servers, 30)
        .await
        .with_context(|| fs.log_tail(60))?;
    ensure!(
        servers[2].count("app", "items").await? == 5,
        "us1 did not get the 5 rows"
    );
    let ranked = servers[2]
        .query_value("SELECT COUNT(*) FROM app.items WHERE fleetsync_rank IS NOT NULL AND fleetsync_version > 0")
        .await?;
    ensure!(
        ranked.as_deref() == Some("5"),
        "us1's rows lack versions: {ranked:?}"
    );

    let floor = servers[2]
        .query_value("SELECT COUNT(*) FROM fleetsync.ts_floor WHERE tombstones = 'ts_app__items' AND fleetsync_rank IS NOT NULL AND fleetsync_version > 0")
        .await?;
    ensure!(
        floor.as_deref() == Some("1"),
        "us1's GC floor was not raised"
    );

    // The documented procedure: writers restart once the newcomer's snapshots are done (a
    // delete made while one of them runs can be missed; converged rows alone do not say so,
    // as another member's snapshot may already have brought them).
    wait_until(
        Duration::from_secs(30),
        "every member's snapshots from the others to be done",
        || async {
            for (n, s) in NAMES.iter().zip(&servers) {
                let done = s
                    .query_value(
                        "SELECT COUNT(*) FROM fleetsync.sync_state \
                         WHERE sync_name LIKE 'realms.%' AND snapshot_state = 'done'",
                    )
                    .await?;
                ensure!(done.as_deref() == Some("2"), "{n}: {done:?} of 2 done");
            }
            Ok(())
        },
    )
    .await?;

    // Concurrent writes on all three converge.
    let writes = [
        (
            0,
            "UPDATE app.items SET val = 'c-eu1', updated_at = '2030-01-01' WHERE id = 1",
        ),
        (
            1,
            "UPDATE app.items SET val = 'c-eu2', updated_at = '2031-01-01' WHERE id = 1",
        ),
        (
            2,
            "UPDATE app.items SET val = 'c-us1', updated_at = '2029-01-01' WHERE id = 1",
        ),
        (2, "DELETE FROM app.items WHERE id = 2"),
        (
            0,
            "UPDATE app.items SET val = 'd-eu1', updated_at = '2027-01-01' WHERE id = 4",
        ),
        (
            2,
            "UPDATE app.items SET val = 'd-us1', updated_at = '2032-01-01' WHERE id = 4",
        ),
        (2, "INSERT INTO app.items VALUES (30,'us1','2026-06-01')"),
        (0, "INSERT INTO app.items VALUES (31,'eu1','2026-06-01')"),
        (1, "DELETE FROM app.items WHERE id = 12"),
        // A key deleted before us1 joined (it has no tombstone of it), written back on us1
        // with an older `updated_at`: it must rank above the others' tombstone (us1's GC
        // floor) or eu1 and eu2 reject it while us1 keeps it.
        (2, "INSERT INTO app.items VALUES (5,'back','2020-01-01')"),
    ];
    let mut set = tokio::task::JoinSet::new();
    for (i, sql) in writes {
        let pool = servers[i].pool();
        set.spawn(async move {
            let mut c = pool.get_conn().await?;
            c.query_drop(sql).await?;
            anyhow::Ok(())
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    converge(&servers, 30)
        .await
        .with_context(|| fs.log_tail(60))?;
    let rows = servers[2]
        .query_strings("SELECT id, val FROM app.items ORDER BY id")
        .await?;
    let want: Vec<Vec<Option<String>>> = [
        (1, "c-eu2"),
        (4, "d-us1"),
        (5, "back"),
        (11, "b11"),
        (30, "us1"),
        (31, "eu1"),
    ]
    .iter()
    .map(|(k, v)| vec![Some(k.to_string()), Some(v.to_string())])
    .collect();
    ensure!(rows == want, "after the concurrent writes: {rows:?}");
    let ts = servers[2]
        .query_value("SELECT COUNT(*) FROM fleetsync.ts_app__items WHERE id IN (2, 12)")
        .await?;
    ensure!(
        ts.as_deref() == Some("2"),
        "us1's tombstones of 2 and 12: {ts:?}"
    );
    fs.ensure_running()?;
    fs.stop(STOP_TIMEOUT).await?;
    Ok(())
}
