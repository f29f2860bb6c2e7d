//! Sync-aware `migrate up` on real servers with `fleetsync run` carrying the database: the
//! files run once, at the origin (a one-way sync's source; a bidirectional group's first
//! member by name), and reach the other servers through the sync, a backfill as row changes
//! applied once; the receivers' history says so (`via-sync`). A stopped sync makes the wait
//! time out with the receivers left pending; `up` again records them once the sync is back.
//! TrinityCore mode: the receiver's `updates` row comes through the sync when the sync
//! selects the table, else fleetsync writes it. `undo` mirrors `up`: the U file runs once,
//! at the origin (a second run on a receiver would fail on its DROP or undo a backfill
//! twice), the receivers' history records it (`via-sync`); a stopped sync times out naming
//! the receiver, and `undo` again records it without running more at the origin.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Result};
use fleetsync_tests::{
    diff_databases, diff_schemas, wait_until, ConfigBuilder, Fleetsync, MariaDb,
};

use crate::support::{Pair, STOP_TIMEOUT, SYNC_TIMEOUT};
use crate::vmigrate::{fs, fs_json, p, server, write};

mod trinitycore;

/// V1 creates a table and adds a column; V2 backfills both: run twice on a server, its
/// INSERT ... SELECT fails on duplicate keys and its UPDATE doubles `doubled`.
const V1: &str =
    "CREATE TABLE app.totals (id INT NOT NULL PRIMARY KEY, total INT NOT NULL) ENGINE=InnoDB;\n\
                  ALTER TABLE app.counters ADD COLUMN doubled INT NOT NULL DEFAULT 0;\n";
const V2: &str = "INSERT INTO app.totals (id, total) SELECT id, n FROM app.counters;\n\
                  UPDATE app.counters SET doubled = doubled + n, updated_at = NOW(6);\n";

/// The group's V1: `totals` also needs the group's `newest_column`. The table is made while
/// `fleetsync run` runs: its version columns are installed live on every member as the
/// CREATE reaches it through the group (V2's INSERT ... SELECT may run on the origin before
/// its own install: those rows have no versions and are applied as they come).
const V1_GROUP: &str = "CREATE TABLE app.totals (id INT NOT NULL PRIMARY KEY, \
    total INT NOT NULL, updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)) ENGINE=InnoDB;\n\
    ALTER TABLE app.counters ADD COLUMN doubled INT NOT NULL DEFAULT 0;\n";

const ROWS: u64 = 50;

const TABLE_SQL: &str = "CREATE DATABASE app; CREATE TABLE app.counters (\
    id INT NOT NULL PRIMARY KEY, n INT NOT NULL, updated_at DATETIME(6) NOT NULL) ENGINE=InnoDB";

async fn fill(db: &MariaDb) -> Result<()> {
    let values: Vec<String> = (1..=ROWS)
        .map(|i| format!("({i}, {}, NOW(6))", i * 3))
        .collect();
    db.exec(&format!(
        "INSERT INTO app.counters (id, n, updated_at) VALUES {}",
        values.join(", ")
    ))
    .await
}

/// The migration ran once on `db` (whichever way it got there): every row's `doubled` is
/// `n`, `totals` has exactly one row per counter, with its `n`.
async fn ran_once(name: &str, db: &MariaDb) -> Result<()> {
    let bad = db
        .query_value("SELECT COUNT(*) FROM app.counters WHERE doubled <> n")
        .await?;
    ensure!(
        bad.as_deref() == Some("0"),
        "{name}: {bad:?} rows with doubled <> n (a backfill ran twice or not at all)"
    );
    let totals = db.count("app", "totals").await?;
    ensure!(
        totals == ROWS,
        "{name}: {totals} rows in app.totals, expected {ROWS}"
    );
    let wrong = db
        .query_value(
            "SELECT COUNT(*) FROM app.totals t JOIN app.counters c USING (id) WHERE t.total <> c.n",
        )
        .await?;
    ensure!(
        wrong.as_deref() == Some("0"),
        "{name}: {wrong:?} totals differ from their counter"
    );
    Ok(())
}

/// `kind` of every history row of the queue on `db`, by version.
async fn kinds(db: &MariaDb) -> Result<Vec<(String, String)>> {
    let rows = db
        .query_strings(
            "SELECT version, kind FROM fleetsync.schema_migrations WHERE scope = 'app' \
             AND status = 'applied' ORDER BY version, id",
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let mut it = r.into_iter();
            (
                it.next().flatten().unwrap_or_default(),
                it.next().flatten().unwrap_or_default(),
            )
        })
        .collect())
}

/// No table paused and no duplicate-key failure in fleetsync's log.
async fn sync_clean(fs: &Fleetsync, receivers: &[(&str, &MariaDb)]) -> Result<()> {
    for (name, db) in receivers {
        let paused = db
            .query_value("SELECT COUNT(*) FROM fleetsync.paused_tables")
            .await?;
        ensure!(
            paused.as_deref() == Some("0"),
            "{name}: {paused:?} paused tables"
        );
    }
    let log = std::fs::read_to_string(fs.log_path()).unwrap_or_default();
    ensure!(
        !log.contains("Duplicate entry") && !log.contains("1062"),
        "fleetsync's log shows a duplicate-key failure:\n{}",
        fs.log_tail(40)
    );
    Ok(())
}

/// Plan, apply and check V1, V2 over `origin` and its `receivers` (`sync`: the sync's name as
/// the plan prints it); then `up` again has nothing to do.
async fn roll_out(
    common: &[&str],
    fs_proc: &Fleetsync,
    origin: (&str, &MariaDb),
    receivers: &[(&str, &MariaDb)],
    sync: &str,
) -> Result<()> {
    // The plan names the route.
    let mut args = vec!["migrate", "up"];
    args.extend_from_slice(common);
    let (code, out, err) = fs(&args).await?;
    ensure!(code == 0, "plan: exit {code}: {out} {err}");
    for (name, _) in receivers {
        let want = format!(
            "{name} (via sync {sync} from {}): will receive V1__create.sql, V2__backfill.sql",
            origin.0
        );
        ensure!(out.contains(&want), "plan lacks {want:?}:\n{out}");
    }
    ensure!(
        out.contains(&format!(
            "{}: will run V1__create.sql, V2__backfill.sql",
            origin.0
        )) || out.contains(&format!(
            "{} (canary): will run V1__create.sql, V2__backfill.sql",
            origin.0
        )),
        "plan lacks the origin's run:\n{out}"
    );
    // Under the test's command timeout, so that a stuck wait reports.
    let (code, rep, err) = fs_json(&["up", "--yes", "--sync-timeout", "60"], common).await?;
    ensure!(
        code == 0,
        "up: exit {code}: {rep} {err}\n{}",
        fs_proc.log_tail(40)
    );
    let o = server(&rep, origin.0);
    ensure!(
        o["outcome"] == "applied" && o["applied"].as_array().map(Vec::len) == Some(2),
        "origin: {o}"
    );
    for (name, db) in receivers {
        let r = server(&rep, name);
        ensure!(
            r["outcome"] == "applied"
                && r["via"]["origin"] == origin.0
                && r["via"]["sync"] == sync
                && r["schema_differences"] == 0
                && r["applied"].as_array().map(Vec::len) == Some(2),
            "{name}: {r}"
        );
        if let Some(d) = diff_schemas(origin.1, db, "app", "app").await? {
            anyhow::bail!("{name}: schema differs from {}: {d}", origin.0);
        }
        if let Some(d) = diff_databases(origin.1, db, "app", "app").await? {
            anyhow::bail!("{name}: rows differ from {}: {d}", origin.0);
        }
        ran_once(name, db).await?;
        let k = kinds(db).await?;
        ensure!(
            k == [
                ("1".to_string(), "via-sync".to_string()),
                ("2".into(), "via-sync".into())
            ],
            "{name}: history {k:?}"
        );
    }
    ran_once(origin.0, origin.1).await?;
    let k = kinds(origin.1).await?;
    ensure!(
        k == [
            ("1".to_string(), "versioned".to_string()),
            ("2".into(), "versioned".into())
        ],
        "{}: history {k:?}",
        origin.0
    );
    sync_clean(fs_proc, receivers).await?;
    // Every member's status shows both applied.
    let (_, st, _) = fs_json(&["status"], common).await?;
    for name in std::iter::once(origin.0).chain(receivers.iter().map(|r| r.0)) {
        let s = server(&st, name);
        ensure!(
            s["applied"] == 2 && s["pending"] == 0 && s["at_version"] == "2",
            "status {name}: {s}"
        );
    }
    // Nothing to do anywhere.
    let (code, rep, err) = fs_json(&["up", "--yes"], common).await?;
    ensure!(code == 0, "second up: exit {code}: {rep} {err}");
    for name in std::iter::once(origin.0).chain(receivers.iter().map(|r| r.0)) {
        ensure!(
            server(&rep, name)["outcome"] == "up_to_date",
            "second up, {name}: {rep}"
        );
    }
    Ok(())
}

fn queue(dir: &Path, v1: &str) -> Result<()> {
    write(dir, "V1__create.sql", v1)?;
    write(
        dir,
        "U1__create.sql",
        "DROP TABLE app.totals;\nALTER TABLE app.counters DROP COLUMN doubled;\n",
    )?;
    write(dir, "V2__backfill.sql", V2)
}

/// Two servers with the counters table filled, a config syncing `app` from src to dst (sync
/// `s1`), and the migrations folder's path (not created).
async fn one_way_pair() -> Result<(Pair, PathBuf, PathBuf)> {
    let pair = Pair::start().await?;
    let (src, dst) = (&pair.src, &pair.dst);
    src.exec(TABLE_SQL).await?;
    fill(src).await?;
    let text = ConfigBuilder::new(&pair.state_dir())
        .server("src", &src.url_root())
        .server("dst", &dst.url_root())
        .sync("s1", "src", &["dst"], &["app\\..*"], &[])
        .build();
    let cfg = Fleetsync::write_config(pair.dir.path(), &text)?;
    let mig = pair.dir.path().join("migrations");
    Ok((pair, cfg, mig))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vmigrate_via_one_way_sync() -> Result<()> {
    let (pair, cfg, mig) = one_way_pair().await?;
    let (src, dst) = (&pair.src, &pair.dst);
    queue(&mig, V1)?;
    let mut fsp = Fleetsync::run(&cfg)?;
    fsp.wait_synced(src, dst, "app", SYNC_TIMEOUT).await?;
    let common = [
        "--config",
        p(&cfg),
        "--dir",
        p(&mig),
        "--database",
        "app",
        "--servers",
        "src,dst",
    ];

    // Selecting only the receiver is refused: the files must run at the origin.
    let (code, out, err) = fs(&[
        "migrate",
        "up",
        "--yes",
        "--config",
        p(&cfg),
        "--dir",
        p(&mig),
        "--database",
        "app",
        "--servers",
        "dst",
    ])
    .await?;
    ensure!(
        code != 0 && err.contains("select src too"),
        "dst alone: exit {code}: {out} {err}"
    );
    ensure!(!dst_has(dst, "totals").await?, "a refused up changed dst");
    // Selecting only the origin: the plan says dst gets the files through the sync anyway.
    let (code, out, err) = fs(&[
        "migrate",
        "up",
        "--config",
        p(&cfg),
        "--dir",
        p(&mig),
        "--database",
        "app",
        "--servers",
        "src",
    ])
    .await?;
    ensure!(
        code == 0 && out.contains("dst: not selected, receives the files via sync s1 from src"),
        "src alone, plan: exit {code}: {out} {err}"
    );

    roll_out(&common, &fsp, ("src", src), &[("dst", dst)], "s1").await?;

    // The sync stopped: the origin runs V3, the wait times out, dst stays pending.
    fsp.stop(STOP_TIMEOUT).await?;
    write(&mig, "V3__more.sql", "ALTER TABLE app.totals ADD COLUMN note VARCHAR(20) NULL;\nUPDATE app.totals SET total = total + 1;\n")?;
    let (code, rep, err) = fs_json(&["up", "--yes", "--sync-timeout", "3"], &common).await?;
    let d = server(&rep, "dst");
    ensure!(
        code != 0
            && server(&rep, "src")["outcome"] == "applied"
            && d["outcome"] == "failed"
            && d["failed"]["error"]
                .as_str()
                .is_some_and(|e| e.contains("timed out")),
        "stopped sync: exit {code}: {rep} {err}"
    );
    let (_, st, _) = fs_json(&["status"], &common).await?;
    ensure!(
        server(&st, "dst")["pending"] == 1 && server(&st, "src")["pending"] == 0,
        "status after the timeout: {st}"
    );
    // The sync back: `up` records V3 on dst, which got it (and its UPDATE) once.
    let fsp = Fleetsync::run(&cfg)?;
    let (code, rep, err) = fs_json(&["up", "--yes"], &common).await?;
    ensure!(
        code == 0
            && server(&rep, "src")["outcome"] == "up_to_date"
            && server(&rep, "dst")["outcome"] == "applied"
            && server(&rep, "dst")["applied"][0] == "V3__more.sql",
        "resumed: exit {code}: {rep} {err}\n{}",
        fsp.log_tail(30)
    );
    let off = dst
        .query_value("SELECT COUNT(*) FROM app.totals t JOIN app.counters c USING (id) WHERE t.total <> c.n + 1")
        .await?;
    ensure!(
        off.as_deref() == Some("0"),
        "dst: {off:?} totals not incremented exactly once"
    );
    if let Some(d) = diff_databases(src, dst, "app", "app").await? {
        anyhow::bail!("after V3: {d}");
    }
    sync_clean(&fsp, &[("dst", dst)]).await?;
    let mut fsp = fsp;
    fsp.stop(STOP_TIMEOUT).await?;
    Ok(())
}

async fn dst_has(db: &MariaDb, table: &str) -> Result<bool> {
    Ok(db
        .query_value(&format!(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'app' AND TABLE_NAME = '{table}'"
        ))
        .await?
        .as_deref()
        == Some("1"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vmigrate_via_bidirectional_group() -> Result<()> {
    let names = ["realm-a", "realm-b", "realm-c"];
    let (a, b, c) = tokio::join!(MariaDb::start(91), MariaDb::start(92), MariaDb::start(93));
    let dbs = [a?, b?, c?];
    for db in &dbs {
        db.exec(TABLE_SQL).await?;
    }
    let dir = tempfile::Builder::new()
        .prefix("fleetsync-e2e-")
        .tempdir()?;
    let mut cfg = ConfigBuilder::new(&dir.path().join("state"));
    for (n, db) in names.iter().zip(&dbs) {
        cfg = cfg.server(n, &db.url_root());
    }
    // Listed out of name order: the origin is the first by name all the same.
    let text = cfg
        .raw(
            "\n[[syncs]]\nname = \"realms\"\nmode = \"bidirectional\"\n\
             members = [\"realm-c\", \"realm-a\", \"realm-b\"]\nconflict = \"newest_wins\"\n\
             newest_column = \"updated_at\"\ninclude = [\"app\\\\..*\"]\nbatch_wait_ms = 5\n",
        )
        .build();
    let cfg = Fleetsync::write_config(dir.path(), &text)?;
    let mig = dir.path().join("migrations");
    queue(&mig, V1_GROUP)?;
    let mut fsp = Fleetsync::run(&cfg)?;
    // Rows written on one member reach the others.
    fill(&dbs[1]).await?;
    for db in [&dbs[0], &dbs[2]] {
        wait_until(SYNC_TIMEOUT, "the group to carry the rows", || async {
            match diff_databases(&dbs[1], db, "app", "app").await? {
                None => Ok(()),
                Some(d) => Err(anyhow::anyhow!(d)),
            }
        })
        .await?;
    }
    let common = [
        "--config",
        p(&cfg),
        "--dir",
        p(&mig),
        "--database",
        "app",
        "--servers",
        "realm-*",
    ];
    roll_out(
        &common,
        &fsp,
        ("realm-a", &dbs[0]),
        &[("realm-b", &dbs[1]), ("realm-c", &dbs[2])],
        "realms",
    )
    .await?;
    // V1's table got the group's triggers on every member while running (no restart).
    for (name, db) in names.iter().zip(&dbs) {
        let triggers = db
            .query_value(
                "SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE EVENT_OBJECT_SCHEMA = 'app' \
                 AND EVENT_OBJECT_TABLE = 'totals'",
            )
            .await?;
        ensure!(
            triggers.as_deref() == Some("3") && fsp.starts() == 1,
            "{name}: {triggers:?} triggers on app.totals (expected the group's 3, installed live)"
        );
    }
    // Undo V2 over the group: its U file (an UPDATE subtracting the backfill, a DELETE) runs
    // once, at realm-a; a second run on a member would leave `doubled` at -n.
    write(
        &mig,
        "U2__backfill.sql",
        "UPDATE app.counters SET doubled = doubled - n, updated_at = NOW(6);
DELETE FROM app.totals;
",
    )?;
    let (code, rep, err) = fs_json(&["undo", "--sync-timeout", "60"], &common).await?;
    ensure!(
        code == 0 && server(&rep, "realm-a")["route"] == "direct",
        "group undo: exit {code}: {rep} {err}\n{}",
        fsp.log_tail(40)
    );
    for (name, db) in names.iter().zip(&dbs) {
        let s = server(&rep, name);
        ensure!(
            s["files"] == serde_json::json!(["V2__backfill.sql"]) && s["error"].is_null(),
            "group undo, {name}: {rep}"
        );
        if *name != "realm-a" {
            ensure!(
                s["route"] == "via-sync" && s["via"]["origin"] == "realm-a",
                "group undo, {name}: {s}"
            );
        }
        let off = db
            .query_value("SELECT COUNT(*) FROM app.counters WHERE doubled <> 0")
            .await?;
        ensure!(
            off.as_deref() == Some("0") && db.count("app", "totals").await? == 0,
            "{name}: {off:?} rows with doubled <> 0 after the undo (ran twice or not at all)"
        );
        let k = kinds(db).await?;
        ensure!(
            k.len() == 1 && k[0].0 == "1",
            "{name}: applied after the undo {k:?}"
        );
    }
    for db in &dbs[1..] {
        if let Some(d) = diff_databases(&dbs[0], db, "app", "app").await? {
            anyhow::bail!("after the group undo: {d}");
        }
    }
    sync_clean(&fsp, &[("realm-b", &dbs[1]), ("realm-c", &dbs[2])]).await?;
    fsp.stop(STOP_TIMEOUT).await?;
    Ok(())
}

/// Undo through a one-way sync: V1 creates `totals` with a backfill and doubles every `n`; its
/// undo halves `n` and drops `totals`. Run once, at the origin, it reaches the receiver
/// through the sync; run a second time there, the DROP would fail or `n` would be a quarter.
const V1_UNDOABLE: &str =
    "CREATE TABLE app.totals (id INT NOT NULL PRIMARY KEY, total INT NOT NULL) ENGINE=InnoDB;\n\
     INSERT INTO app.totals (id, total) SELECT id, n FROM app.counters;\n\
     UPDATE app.counters SET n = n * 2, updated_at = NOW(6);\n";
const U1_UNDOABLE: &str = "UPDATE app.counters SET n = n DIV 2, updated_at = NOW(6);\n\
                           DROP TABLE app.totals;\n";

/// Every `n` on `db` is `3 * id` times `factor` (the fill's value, doubled once per V1).
async fn n_is(name: &str, db: &MariaDb, factor: u64) -> Result<()> {
    let bad = db
        .query_value(&format!(
            "SELECT COUNT(*) FROM app.counters WHERE n <> id * 3 * {factor}"
        ))
        .await?;
    ensure!(
        bad.as_deref() == Some("0"),
        "{name}: {bad:?} rows with n <> id * 3 * {factor} (V1 or its undo ran twice or not at all)"
    );
    Ok(())
}

/// (kind, status, applied_by) of version 1's rows on `db`, oldest first.
async fn v1_rows(db: &MariaDb) -> Result<Vec<(String, String, String)>> {
    let rows = db
        .query_strings(
            "SELECT kind, status, applied_by FROM fleetsync.schema_migrations WHERE scope = 'app' \
             AND version = '1' ORDER BY id",
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let mut it = r.into_iter().map(|v| v.unwrap_or_default());
            (
                it.next().unwrap_or_default(),
                it.next().unwrap_or_default(),
                it.next().unwrap_or_default(),
            )
        })
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vmigrate_undo_via_one_way_sync() -> Result<()> {
    let (pair, cfg, mig) = one_way_pair().await?;
    let (src, dst) = (&pair.src, &pair.dst);
    write(&mig, "V1__totals.sql", V1_UNDOABLE)?;
    write(&mig, "U1__totals.sql", U1_UNDOABLE)?;
    let mut fsp = Fleetsync::run(&cfg)?;
    fsp.wait_synced(src, dst, "app", SYNC_TIMEOUT).await?;
    let common = [
        "--config",
        p(&cfg),
        "--dir",
        p(&mig),
        "--database",
        "app",
        "--servers",
        "src,dst",
    ];
    let up = || async {
        let (code, rep, err) = fs_json(&["up", "--yes", "--sync-timeout", "60"], &common).await?;
        ensure!(
            code == 0 && server(&rep, "dst")["outcome"] == "applied",
            "up: exit {code}: {rep} {err}"
        );
        for (name, db) in [("src", src), ("dst", dst)] {
            n_is(name, db, 2).await?;
            ensure!(dst_has(db, "totals").await?, "{name}: no totals after up");
        }
        Ok::<(), anyhow::Error>(())
    };
    up().await?;

    // Selecting only the receiver is refused, nothing changes.
    let (code, out, err) = fs(&[
        "migrate",
        "undo",
        "--config",
        p(&cfg),
        "--dir",
        p(&mig),
        "--database",
        "app",
        "--servers",
        "dst",
    ])
    .await?;
    ensure!(
        code != 0 && err.contains("select src too"),
        "undo on dst alone: exit {code}: {out} {err}"
    );
    n_is("dst", dst, 2).await?;
    ensure!(dst_has(dst, "totals").await?, "a refused undo changed dst");

    // Undo over both: the U file runs at src only; dst gets it through the sync.
    let (code, rep, err) = fs_json(&["undo", "--sync-timeout", "60"], &common).await?;
    let (s, d) = (server(&rep, "src"), server(&rep, "dst"));
    ensure!(
        code == 0
            && s["route"] == "direct"
            && s["files"] == serde_json::json!(["V1__totals.sql"])
            && d["route"] == "via-sync"
            && d["via"]["sync"] == "s1"
            && d["via"]["origin"] == "src"
            && d["files"] == serde_json::json!(["V1__totals.sql"])
            && d["schema_differences"] == 0
            && d["error"].is_null(),
        "undo: exit {code}: {rep} {err}\n{}",
        fsp.log_tail(30)
    );
    for (name, db) in [("src", src), ("dst", dst)] {
        n_is(name, db, 1).await?;
        ensure!(!dst_has(db, "totals").await?, "{name}: totals still there");
    }
    if let Some(d) = diff_databases(src, dst, "app", "app").await? {
        anyhow::bail!("after the undo, rows differ: {d}");
    }
    if let Some(d) = diff_schemas(src, dst, "app", "app").await? {
        anyhow::bail!("after the undo, schemas differ: {d}");
    }
    sync_clean(&fsp, &[("dst", dst)]).await?;
    // Histories: src's row rolled back; dst's via-sync row rolled back, and a via-sync row
    // saying the undo came through the sync.
    let h = v1_rows(src).await?;
    ensure!(
        h.len() == 1 && h[0].0 == "versioned" && h[0].1 == "rolled_back",
        "src history: {h:?}"
    );
    let h = v1_rows(dst).await?;
    ensure!(
        h.len() == 2
            && h[0].0 == "via-sync"
            && h[0].1 == "rolled_back"
            && h[0].2.starts_with("via sync s1 from src")
            && h[1].0 == "via-sync"
            && h[1].1 == "rolled_back"
            && h[1].2.starts_with("undone via sync s1 from src"),
        "dst history: {h:?}"
    );
    let (_, st, _) = fs_json(&["status"], &common).await?;
    for name in ["src", "dst"] {
        let s = server(&st, name);
        ensure!(
            s["applied"] == 0 && s["pending"] == 1 && s["at_version"].is_null(),
            "status {name}: {s}"
        );
    }

    // The sync stopped: the undo runs at src, dst's wait times out (named, exit 2) and its
    // history stays applied; with the sync back, `undo` again records it and runs nothing
    // more at src.
    up().await?;
    fsp.stop(STOP_TIMEOUT).await?;
    let (code, rep, err) = fs_json(&["undo", "--sync-timeout", "3"], &common).await?;
    let d = server(&rep, "dst");
    ensure!(
        code != 0
            && server(&rep, "src")["files"] == serde_json::json!(["V1__totals.sql"])
            && d["route"] == "via-sync"
            && d["files"] == serde_json::json!([])
            && d["error"]
                .as_str()
                .is_some_and(|e| e.contains("timed out") && e.contains("on dst")),
        "stopped sync: exit {code}: {rep} {err}"
    );
    let (_, st, _) = fs_json(&["status"], &common).await?;
    ensure!(
        server(&st, "dst")["applied"] == 1 && server(&st, "src")["applied"] == 0,
        "status after the timeout: {st}"
    );
    n_is("dst", dst, 2).await?;
    let fsp = Fleetsync::run(&cfg)?;
    let (code, rep, err) = fs_json(&["undo", "--sync-timeout", "60"], &common).await?;
    ensure!(
        code == 0
            && server(&rep, "src")["files"] == serde_json::json!([])
            && server(&rep, "dst")["files"] == serde_json::json!(["V1__totals.sql"]),
        "resumed undo: exit {code}: {rep} {err}\n{}",
        fsp.log_tail(30)
    );
    for (name, db) in [("src", src), ("dst", dst)] {
        n_is(name, db, 1).await?;
        ensure!(!dst_has(db, "totals").await?, "{name}: totals still there");
    }
    if let Some(d) = diff_databases(src, dst, "app", "app").await? {
        anyhow::bail!("after the resumed undo: {d}");
    }
    // Nothing left to undo; the text report names the route.
    let mut args = vec!["migrate", "undo"];
    args.extend_from_slice(&common);
    let (code, out, err) = fs(&args).await?;
    ensure!(
        code == 0
            && out.contains("src: undo nothing (at version none)")
            && out.contains("dst (via sync s1 from src): undo nothing (at version none)"),
        "undo with nothing applied: exit {code}: {out} {err}"
    );
    sync_clean(&fsp, &[("dst", dst)]).await?;
    let mut fsp = fsp;
    fsp.stop(STOP_TIMEOUT).await?;
    Ok(())
}
