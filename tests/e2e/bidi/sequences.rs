//! The known three-member sequences, end to end and deterministic (no random writer): eu1 = A,
//! eu2 = B, us1 = C, under `newest_wins` with explicit `updated_at` values.
//!
//! Delivery order is controlled with `fleetsync sync once realms.<member>` (one member's
//! binlog to every other member, up to its end at start, then exit), run step by step with no
//! `fleetsync run` in between. To deliver a member's writes to some members but not to C, the
//! same `sync once` runs with a second config in which `us1` names a decoy server (same
//! `server_id`, the installed tables copied from eu1, no other role; `realms.us1` is never run
//! with it): the other members get the writes, C does not,
//! and C's stored position for that member sync stays where it was, so a later `sync once`
//! with the real config delivers them to C, after whatever was delivered to C in between.
//! (Product controls pause whole groups only; a per-target pause was not needed for this.)
//!
//! * (a) a delete overtaking an update through a third member: B updates k; A receives it; A
//!   deletes k; A's delete reaches C before B's update. C must keep the tombstone and reject
//!   the update (an update on a missing row that loses to the tombstone); all end without k.
//!   Without tombstones C would apply the update as an insert and keep k alone.
//! * (b) an update on a row C never had (A's insert has not reached it) is applied as an
//!   insert; A's insert, arriving afterwards, loses to it. All end with B's value. Without the
//!   update-as-insert, C would end with A's value.
//! * (c) an update on a row C deleted, ranked above C's delete: applied as an insert over the
//!   tombstone; C's delete, arriving at A and B afterwards, loses. All end with B's value.
//!
//! Each case checks the intermediate state on C right after the decisive delivery, then that
//! all members are equal row by row (version columns included) and tombstones agree.

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use fleetsync_tests::{fleetsync_cmd, Fleetsync, MariaDb};

use super::*;

/// The three members, C's decoy, and the two configs.
struct Rig {
    servers: Vec<MariaDb>,
    /// us1's stand-in in `without_c`.
    decoy: MariaDb,
    /// The real group.
    real: PathBuf,
    /// The group with `us1` pointing at the decoy.
    without_c: PathBuf,
    _dir: tempfile::TempDir,
}

/// A key's row on one member: (val, updated_at, rank, version, origin); `None` when absent.
type RowState = Option<Vec<Option<String>>>;

impl Rig {
    async fn start() -> Result<Rig> {
        let (servers, decoy) = tokio::join!(start_members(3), async {
            // us1's server_id (start_members gives member i the id 11 + i).
            let d = MariaDb::start(13).await?;
            d.exec(TABLE_SQL).await?;
            anyhow::Ok(d)
        });
        let (servers, decoy) = (servers?, decoy?);
        let dir = tempfile::Builder::new()
            .prefix("fleetsync-bidi-seq-")
            .tempdir()?;
        let urls: Vec<String> = servers.iter().map(MariaDb::url_root).collect();
        let real_dir = dir.path().join("real");
        let decoy_dir = dir.path().join("without-c");
        std::fs::create_dir_all(&real_dir)?;
        std::fs::create_dir_all(&decoy_dir)?;
        let real = Fleetsync::write_config(
            &real_dir,
            &group_config_urls(&real_dir.join("state"), &urls, "newest_wins", None),
        )?;
        let mut decoy_urls = urls.clone();
        decoy_urls[2] = decoy.url_root();
        let without_c = Fleetsync::write_config(
            &decoy_dir,
            &group_config_urls(&decoy_dir.join("state"), &decoy_urls, "newest_wins", None),
        )?;
        let rig = Rig {
            servers,
            decoy,
            real,
            without_c,
            _dir: dir,
        };
        // Installs the group and takes every pipeline's initial snapshot (empty tables). Never
        // `realms` or `realms.us1` with the decoy: its binlog would move us1's stored positions
        // on the others.
        rig.once_real("realms").await?;
        // The decoy gets the installed tables from eu1 (version columns, tombstone tables):
        // preflight refuses a member without the version columns when the others have them,
        // before the install that would add them (a member added to an installed group).
        let copy = |schema: &'static str, table: String| {
            let (from, to) = (&rig.servers[0], &rig.decoy);
            async move {
                let create = from
                    .query_strings(&format!("SHOW CREATE TABLE `{schema}`.`{table}`"))
                    .await?;
                let create = create
                    .first()
                    .and_then(|r| r.get(1).cloned().flatten())
                    .with_context(|| format!("no CREATE TABLE for {schema}.{table}"))?;
                to.exec(&format!(
                    "CREATE DATABASE IF NOT EXISTS `{schema}`; USE `{schema}`; \
                     DROP TABLE IF EXISTS `{table}`; {create}"
                ))
                .await
            }
        };
        for t in ["items", "ping"] {
            copy("app", t.to_string()).await?;
        }
        let tombs = rig.servers[0]
            .query_strings(
                "SELECT table_name FROM information_schema.tables \
                 WHERE table_schema = 'fleetsync' AND table_name LIKE 'ts\\_%'",
            )
            .await?;
        for t in tombs
            .into_iter()
            .filter_map(|r| r.into_iter().next().flatten())
        {
            copy("fleetsync", t).await?;
        }
        rig.once_without_c("realms.eu1").await?;
        rig.once_without_c("realms.eu2").await?;
        Ok(rig)
    }

    async fn once(config: &Path, sync: &str) -> Result<()> {
        let t = Instant::now();
        let out =
            fleetsync_cmd(&["sync", "once", "--config", &config.to_string_lossy(), sync]).await?;
        if !out.status.success() {
            bail!(
                "`fleetsync sync once {sync}` failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        println!(
            "sync once {sync}: {:.1?}\n{}",
            t.elapsed(),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    /// Delivers `sync`'s pending writes to every member (`realms`: every member's).
    async fn once_real(&self, sync: &str) -> Result<()> {
        Self::once(&self.real, sync).await
    }

    /// Delivers `sync`'s pending writes to every member but C.
    async fn once_without_c(&self, sync: &str) -> Result<()> {
        Self::once(&self.without_c, sync).await
    }

    fn member(&self, name: &str) -> Result<&MariaDb> {
        let i = NAMES
            .iter()
            .position(|n| *n == name)
            .with_context(|| format!("no member {name}"))?;
        Ok(&self.servers[i])
    }

    async fn row(&self, name: &str, key: i32) -> Result<RowState> {
        let rows = self
            .member(name)?
            .query_strings(&format!(
                "SELECT val, CAST(updated_at AS CHAR), CAST(fleetsync_rank AS CHAR), \
                 fleetsync_version, fleetsync_origin FROM app.items WHERE id = {key}"
            ))
            .await?;
        Ok(rows.into_iter().next())
    }

    async fn tombstone(&self, name: &str, key: i32) -> Result<RowState> {
        let rows = self
            .member(name)?
            .query_strings(&format!(
                "SELECT CAST(fleetsync_rank AS CHAR), fleetsync_version, fleetsync_origin \
                 FROM fleetsync.ts_app__items WHERE id = {key}"
            ))
            .await?;
        Ok(rows.into_iter().next())
    }

    async fn val(&self, name: &str, key: i32) -> Result<Option<String>> {
        Ok(self.row(name, key).await?.and_then(|r| r[0].clone()))
    }

    /// Delivers everything pending, then requires every member to hold `want` for `key`
    /// (`None`: absent), rows and tombstones identical, version columns included.
    async fn settled(&self, key: i32, want: Option<&str>) -> Result<()> {
        self.once_real("realms").await?;
        let (row0, ts0) = (
            self.row(NAMES[0], key).await?,
            self.tombstone(NAMES[0], key).await?,
        );
        for n in &NAMES[..3] {
            let (row, ts) = (self.row(n, key).await?, self.tombstone(n, key).await?);
            let got = row.as_ref().and_then(|r| r[0].as_deref());
            ensure!(
                got == want,
                "key {key}: {n} holds {got:?}, expected {want:?} (row {row:?}, tombstone {ts:?})"
            );
            ensure!(
                row == row0 && ts == ts0,
                "key {key}: {n} differs from {}: {row:?}/{ts:?} vs {row0:?}/{ts0:?}",
                NAMES[0]
            );
        }
        ensure!(
            want.is_some() || ts0.is_some(),
            "key {key}: deleted everywhere but no tombstone"
        );
        Ok(())
    }

    async fn exec(&self, name: &str, sql: &str) -> Result<()> {
        self.member(name)?
            .exec(sql)
            .await
            .with_context(|| format!("{name}: {sql}"))
    }
}

/// (a) A delete overtaking an update through a third member.
async fn delete_overtakes_update(rig: &Rig) -> Result<()> {
    let k = 1;
    rig.exec(
        "eu1",
        &format!("INSERT INTO app.items VALUES ({k}, 'a0', '2026-01-01 00:00:01')"),
    )
    .await?;
    rig.once_real("realms.eu1").await?;
    ensure!(
        rig.val("us1", k).await?.as_deref() == Some("a0"),
        "setup: us1 lacks a0"
    );
    // B updates k; only A receives it.
    rig.exec(
        "eu2",
        &format!(
            "UPDATE app.items SET val = 'b1', updated_at = '2026-01-01 00:00:02' WHERE id = {k}"
        ),
    )
    .await?;
    rig.once_without_c("realms.eu2").await?;
    ensure!(
        rig.val("eu1", k).await?.as_deref() == Some("b1"),
        "eu1 did not get b1"
    );
    ensure!(
        rig.val("us1", k).await?.as_deref() == Some("a0"),
        "us1 got b1 too early"
    );
    // A deletes k (its delete succeeds B's update); the delete reaches C first.
    rig.exec("eu1", &format!("DELETE FROM app.items WHERE id = {k}"))
        .await?;
    rig.once_real("realms.eu1").await?;
    ensure!(
        rig.val("us1", k).await?.is_none(),
        "us1 did not apply the delete"
    );
    // B's update arrives at C on a missing row: it loses to the tombstone.
    rig.once_real("realms.eu2").await?;
    let c = rig.row("us1", k).await?;
    ensure!(
        c.is_none(),
        "us1 applied B's older update over the tombstone: {c:?}"
    );
    rig.settled(k, None).await
}

/// (b) An update on a row C never had, applied as an insert; the insert arriving later loses.
async fn update_on_missing_row_inserts(rig: &Rig) -> Result<()> {
    let k = 2;
    rig.exec(
        "eu1",
        &format!("INSERT INTO app.items VALUES ({k}, 'a0', '2026-01-01 00:00:01')"),
    )
    .await?;
    rig.once_without_c("realms.eu1").await?;
    ensure!(
        rig.val("eu2", k).await?.as_deref() == Some("a0"),
        "eu2 did not get a0"
    );
    ensure!(rig.val("us1", k).await?.is_none(), "us1 got a0 too early");
    rig.exec(
        "eu2",
        &format!(
            "UPDATE app.items SET val = 'b1', updated_at = '2026-01-01 00:00:02' WHERE id = {k}"
        ),
    )
    .await?;
    rig.once_real("realms.eu2").await?;
    let c = rig.val("us1", k).await?;
    ensure!(
        c.as_deref() == Some("b1"),
        "us1 did not apply the update on its missing row as an insert: {c:?}"
    );
    rig.once_real("realms.eu1").await?;
    let c = rig.val("us1", k).await?;
    ensure!(
        c.as_deref() == Some("b1"),
        "A's older insert replaced B's update on us1: {c:?}"
    );
    rig.settled(k, Some("b1")).await
}

/// (c) An update on a row C deleted, ranked above the delete: it replaces the tombstone; C's
/// delete loses on A and B.
async fn update_beats_older_tombstone(rig: &Rig) -> Result<()> {
    let k = 3;
    rig.exec(
        "eu1",
        &format!("INSERT INTO app.items VALUES ({k}, 'a0', '2026-01-01 00:00:01')"),
    )
    .await?;
    rig.once_real("realms.eu1").await?;
    // Concurrent: C deletes k (rank: the insert's primary), B updates it to a newer time.
    rig.exec("us1", &format!("DELETE FROM app.items WHERE id = {k}"))
        .await?;
    rig.exec(
        "eu2",
        &format!(
            "UPDATE app.items SET val = 'b1', updated_at = '2026-01-01 00:00:02' WHERE id = {k}"
        ),
    )
    .await?;
    rig.once_real("realms.eu2").await?;
    let c = rig.val("us1", k).await?;
    ensure!(
        c.as_deref() == Some("b1"),
        "us1 kept its older tombstone over B's update: {c:?}"
    );
    rig.once_real("realms.us1").await?;
    for n in ["eu1", "eu2"] {
        let v = rig.val(n, k).await?;
        ensure!(
            v.as_deref() == Some("b1"),
            "{n} applied C's older delete: {v:?}"
        );
    }
    rig.settled(k, Some("b1")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bidi_sequences() -> Result<()> {
    let t = Instant::now();
    let rig = Rig::start().await?;
    let mut failed = Vec::new();
    for (name, res) in [
        (
            "(a) delete overtaking an update",
            delete_overtakes_update(&rig).await,
        ),
        (
            "(b) update on a missing row",
            update_on_missing_row_inserts(&rig).await,
        ),
        (
            "(c) update over an older tombstone",
            update_beats_older_tombstone(&rig).await,
        ),
    ] {
        match res {
            Ok(()) => println!("{name}: as expected"),
            Err(e) => {
                println!("{name}: FAILED: {e:#}");
                failed.push(format!("{name}: {e:#}"));
            }
        }
    }
    println!("bidi_sequences: {:.1?}", t.elapsed());
    ensure!(failed.is_empty(), "{}", failed.join("; "));
    Ok(())
}
