//! TrinityCore mode through a one-way sync (see the parent module).

use super::*;

/// A TrinityCore-style `updates` table (the shape TrinityCore's updater reads and writes).
const UPDATES_SQL: &str = "CREATE DATABASE auth; CREATE TABLE auth.updates (\
    name VARCHAR(200) NOT NULL PRIMARY KEY, hash CHAR(40) DEFAULT '', \
    state ENUM('RELEASED','ARCHIVED') NOT NULL DEFAULT 'RELEASED', \
    timestamp TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, \
    speed INT UNSIGNED NOT NULL DEFAULT 0) ENGINE=InnoDB";

/// TrinityCore mode through a one-way sync: the update runs once at the source; the
/// receiver's `updates` row arrives through the sync when the sync selects `auth.updates`
/// (the source's row, its speed included), else fleetsync writes it (speed 0).
async fn trinitycore_via_sync(carry_updates: bool) -> Result<()> {
    let pair = Pair::start().await?;
    let (src, dst) = (&pair.src, &pair.dst);
    for db in [src, dst] {
        db.exec(UPDATES_SQL).await?;
    }
    src.exec(
        "CREATE TABLE auth.realmlist (id INT NOT NULL PRIMARY KEY, name VARCHAR(32) NOT NULL); \
         INSERT INTO auth.realmlist VALUES (1, 'one'), (2, 'two'), (3, 'three')",
    )
    .await?;
    let exclude: &[&str] = if carry_updates {
        &[]
    } else {
        &["auth\\.updates"]
    };
    let text = ConfigBuilder::new(&pair.state_dir())
        .server("src", &src.url_root())
        .server("dst", &dst.url_root())
        .sync("s1", "src", &["dst"], &["auth\\..*"], exclude)
        .build();
    let cfg = Fleetsync::write_config(pair.dir.path(), &text)?;
    let dir = pair.dir.path().join("updates").join("auth");
    let file = "2024_05_01_00_auth.sql";
    // Run twice on a server, `flag` would be 2; the sleep shows in `speed`.
    write(
        &dir,
        file,
        "ALTER TABLE realmlist ADD COLUMN flag INT NOT NULL DEFAULT 0;\nUPDATE realmlist SET flag = flag + 1;\nSELECT SLEEP(0.1);\n",
    )?;
    let hash = crate::vmigrate::hash_tool("sha1sum", &dir.join(file))?.to_uppercase();
    let mut fsp = Fleetsync::run(&cfg)?;
    wait_until(SYNC_TIMEOUT, "realmlist on dst", || async {
        ensure!(dst.count("auth", "realmlist").await? == 3, "not yet");
        Ok(())
    })
    .await?;
    let common = [
        "--config",
        p(&cfg),
        "--dir",
        p(&dir),
        "--history",
        "trinitycore",
        "--servers",
        "src,dst",
    ];
    let (code, rep, err) = fs_json(&["up", "--yes", "--sync-timeout", "60"], &common).await?;
    let d = server(&rep, "dst");
    ensure!(
        code == 0
            && server(&rep, "src")["outcome"] == "applied"
            && d["outcome"] == "applied"
            && d["via"]["sync"] == "s1"
            && d["applied"][0] == file,
        "up: exit {code}: {rep} {err}\n{}",
        fsp.log_tail(30)
    );
    for (name, db) in [("src", src), ("dst", dst)] {
        let flags = db
            .query_value("SELECT COUNT(*) FROM auth.realmlist WHERE flag = 1")
            .await?;
        ensure!(
            flags.as_deref() == Some("3"),
            "{name}: {flags:?} rows with flag = 1 (ran twice or not at all)"
        );
        let row = db
            .query_strings(&format!(
                "SELECT hash, state FROM auth.updates WHERE name = '{file}'"
            ))
            .await?;
        ensure!(
            row == [vec![Some(hash.clone()), Some("RELEASED".to_string())]],
            "{name}: updates row {row:?}, want the sha1sum {hash}"
        );
    }
    let q = format!("SELECT speed FROM auth.updates WHERE name = '{file}'");
    let (s_speed, d_speed) = (src.query_value(&q).await?, dst.query_value(&q).await?);
    if carry_updates {
        ensure!(
            s_speed == d_speed,
            "dst's row must be src's, carried: speed {d_speed:?} vs {s_speed:?}"
        );
    } else {
        ensure!(
            d_speed.as_deref() == Some("0"),
            "dst's row is fleetsync's: speed {d_speed:?}"
        );
    }
    let (code, rep, err) = fs_json(&["up", "--yes"], &common).await?;
    ensure!(
        code == 0
            && server(&rep, "src")["outcome"] == "up_to_date"
            && server(&rep, "dst")["outcome"] == "up_to_date",
        "second up: exit {code}: {rep} {err}"
    );
    sync_clean(&fsp, &[("dst", dst)]).await?;
    fsp.stop(STOP_TIMEOUT).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vmigrate_via_sync_trinitycore_updates_carried() -> Result<()> {
    trinitycore_via_sync(true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vmigrate_via_sync_trinitycore_updates_not_carried() -> Result<()> {
    trinitycore_via_sync(false).await
}
