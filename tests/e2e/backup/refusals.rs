//! Backups that must be refused or must fail cleanly: damaged backups (a missing manifest:
//! leftovers, never listed, removed by prune), wrong or missing keys,
//! missing privileges, existing tables without `--yes`, a target that runs out of space
//! mid-load. Each: a non-zero exit, one error line naming the file (or privilege), and the
//! target unchanged.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_bad_inputs_change_nothing() -> Result<()> {
    let pair = Pair::start().await?;
    let (src, dst) = (&pair.src, &pair.dst);
    load_app(src).await?;
    let config = write_config(&pair, "plain", "chunk_rows = 20\n")?;
    let c = p(&config)?.to_string();
    let dir = backups_dir(&pair);
    dst.exec("CREATE DATABASE keep; USE keep; CREATE TABLE keep.t (id INT PRIMARY KEY); INSERT INTO keep.t VALUES (1)")
        .await?;
    let before = fingerprint(dst).await?;

    // Tampered chunk: one byte changed.
    let id = create(&config, &["app\\..*"]).await?;
    let m = manifest(&pair, &id)?;
    let chunk = m["tables"][1]["files"][0]["name"]
        .as_str()
        .context("file")?
        .to_string();
    let path = dir.join(&id).join(&chunk);
    let mut bytes = std::fs::read(&path)?;
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&path, &bytes)?;
    refused(
        &["backup", "verify", "--config", &c, &id],
        &[&chunk, "checksum mismatch"],
    )
    .await?;
    refused(
        &[
            "backup",
            "restore",
            "--config",
            &c,
            &id,
            "--to-server",
            "dst",
            "--yes",
        ],
        &[&chunk, "checksum mismatch"],
    )
    .await?;

    // Truncated file.
    bytes[mid] ^= 0x40;
    std::fs::write(&path, &bytes[..bytes.len() - 10])?;
    refused(
        &[
            "backup",
            "restore",
            "--config",
            &c,
            &id,
            "--to-server",
            "dst",
            "--yes",
        ],
        &[&chunk, "truncated"],
    )
    .await?;

    // Missing manifest.
    let id2 = create(&config, &["app\\..*"]).await?;
    std::fs::remove_file(dir.join(&id2).join("manifest.json"))?;
    refused(
        &[
            "backup",
            "restore",
            "--config",
            &c,
            &id2,
            "--to-server",
            "dst",
            "--yes",
        ],
        &["manifest.json", "missing"],
    )
    .await?;
    refused(
        &["backup", "verify", "--config", &c, &id2],
        &["manifest.json"],
    )
    .await?;
    // Without its manifest (and no running owner) it is leftovers: never listed, and the
    // next prune removes it.
    let listed = ok(&["backup", "list", "--config", &c]).await?;
    ensure!(!listed.contains(&id2), "list: {listed}");
    let pruned = ok(&["backup", "prune", "--config", &c]).await?;
    ensure!(
        pruned.contains(&format!("deleted {id2}")),
        "prune: {pruned}"
    );
    ensure!(!dir.join(&id2).exists(), "the leftovers of {id2} remain");

    // A point-in-time restore with no binlog archive is refused before anything is loaded.
    let id3 = create(&config, &["app\\..*"]).await?;
    refused(
        &[
            "backup",
            "restore",
            "--config",
            &c,
            &id3,
            "--to-server",
            "dst",
            "--to-time",
            "2030-01-01 00:00:00",
        ],
        &["archive"],
    )
    .await?;

    // A user without CREATE/INSERT on the target.
    dst.exec("CREATE USER 'weak'@'%' IDENTIFIED BY 'weakpw'; GRANT SELECT ON *.* TO 'weak'@'%'")
        .await?;
    let weak = write_config_dst(&pair, "weak", &dst.url_user("weak", "weakpw"), "")?;
    let line = refused(
        &[
            "backup",
            "restore",
            "--config",
            p(&weak)?,
            &id3,
            "--to-server",
            "dst",
            "--yes",
        ],
        &["lacks privileges", "CREATE ON `app`.*", "INSERT ON `app`.*"],
    )
    .await?;
    ensure!(!line.contains("weakpw"), "the error shows the password");

    // Existing tables without --yes (stdin is not a terminal: no prompt).
    dst.exec(
        "CREATE DATABASE app; CREATE TABLE app.dense (x INT); INSERT INTO app.dense VALUES (42)",
    )
    .await?;
    let before_existing = fingerprint(dst).await?;
    refused(
        &[
            "backup",
            "restore",
            "--config",
            &c,
            &id3,
            "--to-server",
            "dst",
        ],
        &["app.dense", "--yes"],
    )
    .await?;
    ensure!(
        fingerprint(dst).await? == before_existing,
        "refused restore changed the target"
    );
    dst.exec("DROP DATABASE app").await?;
    ensure!(
        fingerprint(dst).await? == before,
        "a refused restore changed the target"
    );
    Ok(())
}

/// mariadbd options for a target whose InnoDB space runs out after about 3 MB: no
/// file-per-table, and a fixed-size system tablespace (the 12 MB `ibdata1` that
/// mariadb-install-db creates, plus a 4 MB `ibdata2`, neither autoextending).
const TINY_INNODB: [&str; 2] = [
    "--innodb-file-per-table=0",
    "--innodb-data-file-path=ibdata1:12M;ibdata2:4M",
];

/// Target tables named like restore staging tables (there must be none after a restore).
async fn staging_left(db: &MariaDb) -> Result<Vec<Vec<Option<String>>>> {
    db.query_strings(
        "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_NAME LIKE '\\_\\_fs%'",
    )
    .await
}

/// A restore that runs out of space mid-load ("The table ... is full") leaves the target as it
/// was: existing tables it would replace with --yes keep their content, the files loaded
/// before the failure are gone, a database the restore created is dropped again, no staging
/// table is left. The same backup (it has foreign keys) then restores over its own source,
/// which takes the foreign-key swap path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_restore_out_of_space_changes_nothing() -> Result<()> {
    let pair = Pair::start_with(&[], &TINY_INNODB).await?;
    let (src, dst) = (&pair.src, &pair.dst);
    src.exec(
        "CREATE DATABASE big; USE big;
         CREATE TABLE big.small (id INT PRIMARY KEY, v VARCHAR(20));
         CREATE TABLE big.child (id INT PRIMARY KEY, sid INT, CONSTRAINT fk_child_small FOREIGN KEY (sid) REFERENCES big.small (id));
         CREATE TABLE big.wide (id INT PRIMARY KEY, v VARCHAR(1000));
         INSERT INTO big.small SELECT seq, CONCAT('s', seq) FROM seq_1_to_50;
         INSERT INTO big.child SELECT seq, 1 + seq % 50 FROM seq_1_to_200;
         INSERT INTO big.wide SELECT seq, REPEAT(MD5(seq), 30) FROM seq_1_to_8000;",
    )
    .await?;
    dst.exec(
        "CREATE DATABASE keep; USE keep; CREATE TABLE keep.t (id INT PRIMARY KEY, v TEXT);
         INSERT INTO keep.t SELECT seq, REPEAT('k', 100) FROM seq_1_to_500;
         CREATE DATABASE big; CREATE TABLE big.small (x INT PRIMARY KEY); INSERT INTO big.small VALUES (42), (43);",
    )
    .await?;
    let config = write_config(&pair, "full", "chunk_rows = 1000\n")?;
    let c = p(&config)?.to_string();
    let id = create(&config, &["big\\..*"]).await?;
    let databases = "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA ORDER BY 1";
    let (before, dbs_before) = (fingerprint(dst).await?, dst.query_strings(databases).await?);
    let args = [
        "backup",
        "restore",
        "--config",
        &c,
        &id,
        "--to-server",
        "dst",
    ];
    let line = refused(
        &[&args[..], &["--yes"]].concat(),
        &["is full", "/data/big.", "line ", "left unchanged"],
    )
    .await?;
    ensure!(line.contains(".sql.zst"), "no data file named: {line}");
    ensure!(
        fingerprint(dst).await? == before,
        "the failed restore changed the target"
    );
    ensure!(
        dst.query_strings(databases).await? == dbs_before,
        "databases changed"
    );
    ensure!(staging_left(dst).await?.is_empty(), "staging tables left");

    // Into a new database: it is dropped again.
    refused(
        &[&args[..], &["--rename-db", "big=fresh"]].concat(),
        &["is full", "left unchanged"],
    )
    .await?;
    ensure!(
        fingerprint(dst).await? == before,
        "the failed restore changed the target"
    );
    ensure!(
        dst.query_strings(databases).await? == dbs_before,
        "database fresh left behind"
    );
    ensure!(staging_left(dst).await?.is_empty(), "staging tables left");

    // The same backup over its own source (foreign keys, tables replaced): equal afterwards,
    // the foreign key back in place.
    let sums = fingerprint(src).await?;
    let self_cfg = write_config_dst(&pair, "self", &src.url_root(), "")?;
    restore(&self_cfg, &id, &["--yes"]).await?;
    ensure!(
        fingerprint(src).await? == sums,
        "restore over the source changed its data"
    );
    ensure!(staging_left(src).await?.is_empty(), "staging tables left");
    let ddl = src.query_strings("SHOW CREATE TABLE big.child").await?;
    let ddl = ddl
        .first()
        .and_then(|r| r.get(1).cloned().flatten())
        .unwrap_or_default();
    ensure!(
        ddl.contains("CONSTRAINT `fk_child_small` FOREIGN KEY (`sid`) REFERENCES `small` (`id`)"),
        "foreign key not restored: {ddl}"
    );
    Ok(())
}
