//! Point-in-time recovery: the binlog archiver (`fleetsync backup archive`) and replay of the
//! archive onto another server, compared row by row with the source's state captured at the
//! target time or GTID.
//!
//! The base the replay starts from is the state when archiving began: databases that are
//! empty on both servers (the target's copy created by the test, as a restore would).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context, Result};
use fleetsync_tests::compare::{base_tables, column_names};
use fleetsync_tests::{
    fleetsync::toml_str, fleetsync_cmd, quote_ident, wait_until, ConfigBuilder, Fleetsync, MariaDb,
    Workload,
};
use rand::{Rng, SeedableRng};

use crate::support::{Pair, STOP_TIMEOUT};

/// Every table of a database: columns and rows (raw bytes, sorted).
pub(crate) type DbState = BTreeMap<String, (Vec<String>, Vec<Vec<Option<Vec<u8>>>>)>;

pub(crate) const COVER_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) async fn capture(db: &MariaDb, schema: &str) -> Result<DbState> {
    let mut out = DbState::new();
    for table in base_tables(db, schema).await? {
        let cols = column_names(db, schema, &table).await?;
        let list: Vec<String> = cols.iter().map(|c| quote_ident(c)).collect();
        let sql = format!(
            "SELECT {} FROM {}.{}",
            list.join(", "),
            quote_ident(schema),
            quote_ident(&table)
        );
        let mut rows = db.query_rows(&sql).await?;
        rows.sort();
        out.insert(table, (cols, rows));
    }
    Ok(out)
}

/// Fails with the first difference between two captured states.
pub(crate) fn assert_same(what: &str, want: &DbState, got: &DbState) -> Result<()> {
    let names = |s: &DbState| s.keys().cloned().collect::<Vec<_>>();
    ensure!(
        names(want) == names(got),
        "{what}: tables {:?} vs {:?}",
        names(want),
        names(got)
    );
    for (table, (cols, rows)) in want {
        let (gcols, grows) = &got[table];
        ensure!(
            cols == gcols,
            "{what}: {table} columns {cols:?} vs {gcols:?}"
        );
        if rows != grows {
            let first = rows.iter().zip(grows).position(|(a, b)| a != b);
            bail!(
                "{what}: {table}: {} rows vs {}; first difference at row {first:?}",
                rows.len(),
                grows.len()
            );
        }
    }
    Ok(())
}

pub(crate) struct Pitr {
    pub(crate) pair: Pair,
    pub(crate) config: PathBuf,
    pub(crate) archiver: Fleetsync,
}

impl Pitr {
    /// Servers, a config with `[backup] dir`, `app` created on the source and `bases` on the
    /// target, and a running archiver of `src`.
    pub(crate) async fn start(bases: &[&str], extra: &[&str]) -> Result<Pitr> {
        Pitr::start_with(bases, extra, |dir: &Path| {
            format!(
                "dir = {}\n",
                toml_str(&dir.join("backups").to_string_lossy())
            )
        })
        .await
    }

    /// As [`Pitr::start`], with the `[backup]` lines `backup(test dir)`.
    pub(crate) async fn start_with(
        bases: &[&str],
        extra: &[&str],
        backup: impl FnOnce(&Path) -> String,
    ) -> Result<Pitr> {
        let pair = Pair::start().await?;
        pair.src.exec("CREATE DATABASE app").await?;
        for b in bases {
            pair.dst.exec(&format!("CREATE DATABASE {b}")).await?;
        }
        let text = ConfigBuilder::new(&pair.state_dir())
            .server("src", &pair.src.url_root())
            .server("dst", &pair.dst.url_root())
            .raw(&format!("\n[backup]\n{}", backup(pair.dir.path())))
            .build();
        let config = Fleetsync::write_config(pair.dir.path(), &text)?;
        let mut args = vec!["backup", "archive", "--config"];
        let cfg = config.to_string_lossy().into_owned();
        args.push(&cfg);
        args.extend(["--server", "src"]);
        args.extend(extra);
        let log = pair.dir.path().join("archive.log");
        let archiver =
            Fleetsync::spawn_logged(args.iter().map(Into::into).collect(), &config, &log)?;
        let mut p = Pitr {
            pair,
            config,
            archiver,
        };
        p.wait_status().await?;
        Ok(p)
    }

    pub(crate) fn cfg(&self) -> String {
        self.config.to_string_lossy().into_owned()
    }

    fn archive_dir(&self) -> PathBuf {
        self.pair.dir.path().join("backups/binlog-archive/src")
    }

    pub(crate) async fn status(&self) -> Result<serde_json::Value> {
        let out = fleetsync_cmd(&[
            "backup",
            "archive",
            "--config",
            &self.cfg(),
            "--server",
            "src",
            "status",
            "--json",
        ])
        .await?;
        ensure!(
            out.status.success(),
            "archive status: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    /// Waits until the archive exists; returns its status.
    pub(crate) async fn wait_status(&mut self) -> Result<serde_json::Value> {
        let deadline = std::time::Instant::now() + COVER_TIMEOUT;
        loop {
            self.archiver.ensure_running()?;
            match self.status().await {
                Ok(s) => return Ok(s),
                Err(e) if std::time::Instant::now() > deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// Waits until the archive holds a record committed after second `t`.
    pub(crate) async fn wait_covers_time(&self, t: i64) -> Result<()> {
        wait_until(COVER_TIMEOUT, "archive passes the target time", || async {
            let s = self.status().await?;
            let end = s["end_commit_ms"].as_i64().unwrap_or(0) / 1000;
            ensure!(end > t, "archive ends at second {end}, target {t}");
            Ok(())
        })
        .await
    }

    /// Waits until the archive's end GTID position is `gtid`.
    pub(crate) async fn wait_covers_gtid(&self, gtid: &str) -> Result<()> {
        wait_until(COVER_TIMEOUT, "archive reaches the GTID", || async {
            let s = self.status().await?;
            ensure!(
                s["end_gtid"].as_str() == Some(gtid),
                "archive at {s}, want {gtid}"
            );
            Ok(())
        })
        .await
    }

    /// Waits until the archive's end GTID position has reached every domain of `gtid`.
    pub(crate) async fn wait_covers_gtid_at_least(&self, gtid: &str) -> Result<()> {
        let goal: fleetsync_proto::GtidSet = gtid.parse()?;
        wait_until(COVER_TIMEOUT, "archive reaches the GTID", || async {
            let s = self.status().await?;
            let end: fleetsync_proto::GtidSet = s["end_gtid"].as_str().unwrap_or("").parse()?;
            ensure!(
                goal.iter()
                    .all(|g| end.get(g.domain).is_some_and(|e| e.seq >= g.seq)),
                "archive at {s}, want {gtid}"
            );
            Ok(())
        })
        .await
    }

    pub(crate) async fn replay(&self, from: &str, extra: &[&str]) -> Result<Output> {
        let cfg = self.cfg();
        let mut args = vec![
            "backup",
            "archive",
            "--config",
            &cfg,
            "--server",
            "src",
            "replay",
            "--to-server",
            "dst",
            "--from",
            from,
        ];
        args.extend(extra);
        fleetsync_cmd(&args).await
    }

    pub(crate) async fn replay_ok(&self, from: &str, extra: &[&str]) -> Result<String> {
        let out = self.replay(from, extra).await?;
        ensure!(
            out.status.success(),
            "replay {extra:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// A keyed and a keyless table in `app`, written by a background task until
/// [`Writer::finish`]: `changes` changes to each per round, `pause` between rounds, no round
/// while the test holds [`Writer::gate`] (for a GTID and a state captured together). The
/// keyless table shows a replayed insert as a duplicate row.
pub(crate) struct Writer {
    stop: Arc<AtomicBool>,
    pub(crate) gate: Arc<tokio::sync::Mutex<()>>,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl Writer {
    /// Creates the tables (workload seeds `seed` and `seed + 1`) and starts writing.
    pub(crate) async fn start(
        src: &MariaDb,
        seed: u64,
        changes: u64,
        pause: Duration,
    ) -> Result<Writer> {
        let mut keyed = Workload::new(seed);
        let mut keyless = Workload::keyless(seed + 1);
        src.exec(&format!(
            "{}; {};",
            keyed.create_table_sql("app", "keyed"),
            keyless.create_table_sql("app", "keyless")
        ))
        .await?;
        let stop = Arc::new(AtomicBool::new(false));
        let gate = Arc::new(tokio::sync::Mutex::new(()));
        let task = {
            let (pool, stop, gate) = (src.pool(), stop.clone(), gate.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    {
                        let _g = gate.lock().await;
                        keyed.run(&pool, "app", "keyed", changes).await?;
                        keyless.run(&pool, "app", "keyless", changes).await?;
                    }
                    tokio::time::sleep(pause).await;
                }
                anyhow::Ok(())
            })
        };
        Ok(Writer { stop, gate, task })
    }

    /// Stops writing; fails with the writer's error, if any.
    pub(crate) async fn finish(self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await?
    }
}

pub(crate) fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Sleeps until the wall clock is at least 200 ms into second `s`.
pub(crate) async fn sleep_into_second(s: i64) {
    loop {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let target = s * 1000 + 200;
        if now >= target {
            return;
        }
        tokio::time::sleep(Duration::from_millis((target - now) as u64)).await;
    }
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of Unix second `t`, formatted by the server.
pub(crate) async fn utc(db: &MariaDb, t: i64) -> Result<String> {
    db.query_value(&format!("SELECT FROM_UNIXTIME({t})"))
        .await?
        .context("FROM_UNIXTIME")
}

pub(crate) const PHASE_A: &str = "USE app;
CREATE TABLE keyed (id INT PRIMARY KEY, v VARCHAR(40), n DECIMAL(12,3), d DATETIME(6), b BLOB);
CREATE TABLE keyless (a INT, b VARCHAR(20));
INSERT INTO keyed SELECT seq, CONCAT('v', seq), seq * 1.5, '2024-01-02 03:04:05.123456' + INTERVAL seq SECOND, UNHEX(HEX(seq)) FROM seq_1_to_200;
INSERT INTO keyless VALUES (1, 'x'), (1, 'x'), (2, 'y'), (3, NULL);
UPDATE keyed SET v = CONCAT(v, '-u') WHERE id % 3 = 0;
DELETE FROM keyed WHERE id % 7 = 0;
DELETE FROM keyless WHERE a = 1 LIMIT 1;
BEGIN; INSERT INTO keyed VALUES (1000, 'txn', 1, NULL, NULL); UPDATE keyed SET n = n + 1 WHERE id < 20; COMMIT;";

/// Ends with writes marked `skip_replication` (as fleetsync's own applied writes on a sync
/// target are): the archive must keep them, they are part of this server's state.
pub(crate) const PHASE_B: &str = "USE app;
ALTER TABLE keyed ADD COLUMN extra INT NOT NULL DEFAULT 7;
INSERT INTO keyed (id, v, extra) VALUES (2000, 'after ddl', 9);
UPDATE keyed SET extra = id WHERE id BETWEEN 100 AND 150;
DELETE FROM keyed WHERE id BETWEEN 180 AND 190;
UPDATE keyless SET b = 'z' WHERE a = 2;
CREATE TABLE later (k VARCHAR(10) PRIMARY KEY, val INT);
INSERT INTO later VALUES ('a', 1), ('b', 2);
SET SESSION skip_replication = 1;
INSERT INTO later VALUES ('marked', 3);
UPDATE keyed SET v = 'written as a sync target would' WHERE id = 1;
SET SESSION skip_replication = 0;";

pub(crate) const PHASE_C: &str = "USE app;
INSERT INTO keyed (id, v) VALUES (3000, 'too late');
UPDATE keyed SET v = 'changed after T' WHERE id < 50;
DELETE FROM later WHERE k = 'a';
DROP TABLE keyless;";

/// Restores to a time and to a GTID position; both equal the source's state then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pitr_replay_to_time_and_to_gtid() -> Result<()> {
    let mut p = Pitr::start(&["app_t", "app_g"], &[]).await?;
    let from = p.wait_status().await?["start"]
        .as_str()
        .context("status start")?
        .to_string();
    replay_phases(&p, &from).await?;
    p.archiver.stop(STOP_TIMEOUT).await?;
    Ok(())
}

/// Writes three phases on the source, then replays the archive from `from` with a dry run
/// (changes nothing), to the time between phases B and C (into `app_t`) and to the GTID
/// after phase A (into `app_g`), each equal to the source's state then. Returns that GTID
/// and the two replays' outputs. For any archive location (`pitr_s3` runs it on a bucket).
pub(crate) async fn replay_phases(p: &Pitr, from: &str) -> Result<(String, [String; 2])> {
    let src = &p.pair.src;
    src.exec(PHASE_A).await?;
    let gtid_a = src.gtid_binlog_pos().await?;
    let state_a = capture(src, "app").await?;
    src.exec(PHASE_B).await?;
    let state_b = capture(src, "app").await?;
    // Every commit so far is at or before second t; the next ones are after it.
    let t = now_secs();
    sleep_into_second(t + 1).await;
    src.exec(PHASE_C).await?;
    p.wait_covers_time(t).await?;
    let to_time = utc(src, t).await?;

    // Dry run: reports, changes nothing.
    let before = capture(&p.pair.dst, "app_t").await?;
    let out = p
        .replay_ok(
            from,
            &[
                "--to-time",
                &to_time,
                "--rename-db",
                "app=app_t",
                "--dry-run",
            ],
        )
        .await?;
    ensure!(out.contains("transactions"), "dry run printed: {out}");
    assert_same(
        "after dry run",
        &before,
        &capture(&p.pair.dst, "app_t").await?,
    )?;

    let out_t = p
        .replay_ok(
            from,
            &["--to-time", &to_time, "--rename-db", "app=app_t", "--yes"],
        )
        .await?;
    assert_same(
        "restore to time",
        &state_b,
        &capture(&p.pair.dst, "app_t").await?,
    )?;

    let out_g = p
        .replay_ok(
            from,
            &["--to-gtid", &gtid_a, "--rename-db", "app=app_g", "--yes"],
        )
        .await?;
    assert_same(
        "restore to GTID",
        &state_a,
        &capture(&p.pair.dst, "app_g").await?,
    )?;
    Ok((gtid_a, [out_t, out_g]))
}

/// SIGKILL the archiver mid-stream three times: the archive still replays to exactly the
/// source (no gap, no duplicate: the keyless table would show a replayed insert).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pitr_archiver_kill9_keeps_archive_whole() -> Result<()> {
    let mut p = Pitr::start(&["app"], &["--segment-mb", "1", "--segment-seconds", "1"]).await?;
    let from = p.wait_status().await?["start"]
        .as_str()
        .context("status start")?
        .to_string();
    let src = &p.pair.src;
    let writer = Writer::start(src, 21, 100, Duration::from_millis(50)).await?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(1_200..2_500))).await;
        p.archiver.ensure_running()?;
        p.archiver.kill9()?;
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..800))).await;
        p.archiver.restart()?;
    }
    // Long enough after the last restart for a segment roll.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    writer.finish().await?;
    let gtid = src.gtid_binlog_pos().await?;
    p.wait_covers_gtid(&gtid).await?;
    let status = p.status().await?;
    ensure!(
        status["finished_segments"].as_u64().unwrap_or(0) >= 2,
        "expected several finished segments: {status}"
    );
    p.replay_ok(&from, &["--to-gtid", &gtid, "--yes"]).await?;
    assert_same(
        "restore to now after kills",
        &capture(src, "app").await?,
        &capture(&p.pair.dst, "app").await?,
    )?;
    p.archiver.stop(STOP_TIMEOUT).await?;
    Ok(())
}

/// Requests the archive cannot serve, and a damaged archive: a clear error, a non-zero exit,
/// and the target unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pitr_bad_input_changes_nothing() -> Result<()> {
    let mut p = Pitr::start(&["app"], &["--segment-seconds", "1"]).await?;
    let from = p.wait_status().await?["start"]
        .as_str()
        .context("status start")?
        .to_string();
    let src = &p.pair.src;
    src.exec("USE app; CREATE TABLE t (id INT PRIMARY KEY, v INT); INSERT INTO t VALUES (1, 1)")
        .await?;
    let t_early = now_secs();
    for round in 0..3 {
        sleep_into_second(now_secs() + 1).await;
        src.exec(&format!(
            "INSERT INTO app.t VALUES ({}, {round})",
            round + 10
        ))
        .await?;
    }
    let gtid = src.gtid_binlog_pos().await?;
    p.wait_covers_gtid(&gtid).await?;
    let end = p.status().await?["end"]
        .as_str()
        .context("status end")?
        .to_string();
    p.archiver.stop(STOP_TIMEOUT).await?;
    p.pair
        .dst
        .exec("CREATE TABLE app.marker (id INT PRIMARY KEY); INSERT INTO app.marker VALUES (42)")
        .await?;
    let before = capture(&p.pair.dst, "app").await?;
    let early = utc(src, t_early).await?;

    let cases: Vec<(&str, String, Vec<String>)> = vec![
        (
            "position before the archive",
            "binlog.000001:4".into(),
            vec!["--to-gtid".into(), gtid.clone()],
        ),
        (
            "time after the archive",
            from.clone(),
            vec!["--to-time".into(), "2100-01-01 00:00:00".into()],
        ),
        (
            "GTID after the archive",
            from.clone(),
            vec!["--to-gtid".into(), "0-1-999999".into()],
        ),
        (
            "time before the start",
            end.clone(),
            vec!["--to-time".into(), early],
        ),
        (
            "bad time",
            from.clone(),
            vec!["--to-time".into(), "noon".into()],
        ),
    ];
    let expected = [
        "after the start position",
        "before the target time",
        "before GTID position",
        "already includes transactions committed after the target time",
        "expected `YYYY-MM-DD HH:MM:SS`",
    ];
    for ((what, start, args), want) in cases.iter().zip(expected) {
        let err = expect_refusal(&p, what, start, args, &before).await?;
        ensure!(err.contains(want), "{what}: expected {want:?} in: {err}");
    }
    // A damaged segment, then a missing one.
    let seg = first_segment(&p.archive_dir())?;
    let mut bytes = std::fs::read(&seg)?;
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&seg, &bytes)?;
    let to = vec!["--to-gtid".to_string(), gtid.clone()];
    let err = expect_refusal(&p, "damaged segment", &from, &to, &before).await?;
    ensure!(err.contains("checksum mismatch"), "damaged segment: {err}");
    std::fs::remove_file(&seg)?;
    let err = expect_refusal(&p, "missing segment", &from, &to, &before).await?;
    ensure!(err.contains("segment missing"), "missing segment: {err}");
    Ok(())
}

fn first_segment(dir: &Path) -> Result<PathBuf> {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "zst"))
        .collect();
    segs.sort();
    segs.into_iter()
        .next()
        .context("no finished segment in the archive")
}

/// Runs a replay (with `--yes`) that must fail; returns its error line.
async fn expect_refusal(
    p: &Pitr,
    what: &str,
    from: &str,
    args: &[String],
    before: &DbState,
) -> Result<String> {
    let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
    all.push("--yes");
    let out = p.replay(from, &all).await?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success(), "{what}: replay succeeded");
    let err = stderr.trim().lines().last().unwrap_or_default().to_string();
    ensure!(
        err.starts_with("error: "),
        "{what}: expected an error line, got: {stderr}"
    );
    assert_same(what, before, &capture(&p.pair.dst, "app").await?)?;
    Ok(err)
}

/// `[backup] archive_binlog = true` makes `fleetsync run` archive its sources' binlogs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pitr_run_archives_when_configured() -> Result<()> {
    let pair = Pair::start().await?;
    pair.src
        .exec("CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY)")
        .await?;
    let backup_dir = pair.dir.path().join("backups");
    let text = ConfigBuilder::new(&pair.state_dir())
        .server("src", &pair.src.url_root())
        .server("dst", &pair.dst.url_root())
        .sync("s1", "src", &["dst"], &["app\\..*"], &[])
        .raw(&format!(
            "\n[backup]\ndir = {}\narchive_binlog = true\n",
            toml_str(&backup_dir.to_string_lossy())
        ))
        .build();
    let config = Fleetsync::write_config(pair.dir.path(), &text)?;
    let mut run = Fleetsync::run(&config)?;
    let cfg = config.to_string_lossy().into_owned();
    let status = || async {
        let out = fleetsync_cmd(&[
            "backup", "archive", "--config", &cfg, "--server", "src", "status", "--json",
        ])
        .await?;
        ensure!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        anyhow::Ok(serde_json::from_slice::<serde_json::Value>(&out.stdout)?)
    };
    wait_until(COVER_TIMEOUT, "the archive to exist", || async {
        status().await.map(|_| ())
    })
    .await?;
    run.ensure_running()?;
    pair.src.exec("INSERT INTO app.t VALUES (1), (2)").await?;
    let gtid = pair.src.gtid_binlog_pos().await?;
    wait_until(COVER_TIMEOUT, "the insert to be archived", || async {
        let s = status().await?;
        ensure!(
            s["end_gtid"].as_str() == Some(gtid.as_str()),
            "archive at {s}"
        );
        ensure!(s["transactions"].as_u64() >= Some(1), "archive at {s}");
        Ok(())
    })
    .await?;
    run.stop(STOP_TIMEOUT).await?;
    Ok(())
}

/// The operator's path: a backup taken while the archiver runs, then
/// `backup restore ID --to-time T`: the base from the backup, the archive replayed up to T;
/// the result equals the source's state at T row by row. A time before the backup is refused
/// before anything is loaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pitr_backup_restore_to_time() -> Result<()> {
    backup_restore_to_time(&mut Pitr::start(&[], &[]).await?).await
}

/// `backup create --json` of src's `app` database; returns the backup's id.
pub(crate) async fn create_app_backup(p: &Pitr) -> Result<String> {
    let out = fleetsync_cmd(&[
        "backup",
        "create",
        "--config",
        &p.cfg(),
        "--server",
        "src",
        "--include",
        "app\\..*",
        "--json",
    ])
    .await?;
    ensure!(
        out.status.success(),
        "backup create failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("create printed {:?}", String::from_utf8_lossy(&out.stdout)))?;
    Ok(created["id"]
        .as_str()
        .context("id in create's JSON")?
        .to_string())
}

/// The body of [`pitr_backup_restore_to_time`], for any `[backup] dir` (a local directory
/// or a bucket: `pitr_s3`).
pub(crate) async fn backup_restore_to_time(p: &mut Pitr) -> Result<()> {
    let src = &p.pair.src;
    src.exec(PHASE_A).await?;
    let id = create_app_backup(p).await?;
    let before_backup = now_secs() - 1;
    src.exec(PHASE_B).await?;
    let state_b = capture(src, "app").await?;
    let t = now_secs();
    sleep_into_second(t + 1).await;
    src.exec(PHASE_C).await?;
    p.wait_covers_time(t).await?;
    let to_time = utc(src, t).await?;
    let cfg = p.cfg();
    let restore = |extra: Vec<String>| {
        let mut args: Vec<String> = [
            "backup",
            "restore",
            "--config",
            &cfg,
            &id,
            "--to-server",
            "dst",
            "--rename-db",
            "app=app_r",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra);
        async move {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            fleetsync_cmd(&refs).await
        }
    };

    // A target time before the backup: refused, nothing created.
    let early = utc(src, before_backup - 5).await?;
    let out = restore(vec!["--to-time".into(), early, "--yes".into()]).await?;
    ensure!(
        !out.status.success(),
        "restore to a time before the backup succeeded"
    );
    let dbs = p
        .pair
        .dst
        .query_strings("SHOW DATABASES LIKE 'app_r'")
        .await?;
    ensure!(dbs.is_empty(), "a refused restore created app_r");

    let out = restore(vec!["--to-time".into(), to_time, "--yes".into()]).await?;
    ensure!(
        out.status.success(),
        "restore --to-time failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_same(
        "backup + replay to time",
        &state_b,
        &capture(&p.pair.dst, "app_r").await?,
    )?;
    p.archiver.stop(STOP_TIMEOUT).await?;
    Ok(())
}
