//! Point-in-time recovery with the binlog archive in object storage: a real S3-compatible
//! server (SeaweedFS, `fleetsync_tests::s3`), a real MariaDB, the archiver uploading finished
//! segments, and replays from the bucket compared row by row with the source (the helpers of
//! `pitr`). Faults: SIGKILL of the archiver (once with its spool lost), a minute-long upload
//! outage. The secret key never appears in anything the tests capture.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use fleetsync_tests::s3::{S3Server, SECRET_KEY};
use fleetsync_tests::wait_until;
use rand::{Rng, SeedableRng};

use crate::pitr::{assert_same, backup_restore_to_time, capture, replay_phases, Pitr, Writer};
use crate::support::{http_get, STOP_TIMEOUT};

const BUCKET: &str = "fleet-backups";
const PREFIX: &str = "eu1";

async fn start(s3: &S3Server, bases: &[&str], extra: &[&str]) -> Result<Pitr> {
    let backup = s3.backup_toml(BUCKET, PREFIX);
    Pitr::start_with(bases, extra, |_| backup).await
}

/// The port of the archiver's metrics endpoint, from its latest start's log line.
pub(crate) fn metrics_port(p: &Pitr) -> Result<u16> {
    let log = std::fs::read_to_string(p.archiver.log_path())?;
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("binlog archiver running"))
        .context("no 'binlog archiver running' line in the archiver's log")?;
    let at = line.find("127.0.0.1:").context("no metrics address")? + "127.0.0.1:".len();
    let digits: String = line[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    Ok(digits.parse()?)
}

/// The archiver's `/metrics` text.
pub(crate) async fn scrape(p: &Pitr) -> Result<String> {
    let (code, body) = http_get(metrics_port(p)?, "/metrics").await?;
    ensure!(code == 200, "/metrics answered {code}");
    Ok(body)
}

/// The value of the sample of `name` labelled `server="src"`.
pub(crate) fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && l.contains("server=\"src\""))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Fails when the test secret appears in any of `texts`.
fn no_secret(what: &str, texts: &[&str]) -> Result<()> {
    for (i, t) in texts.iter().enumerate() {
        ensure!(
            !t.contains(SECRET_KEY),
            "{what}: the secret key in output {i}"
        );
    }
    Ok(())
}

/// Segment numbers of the bucket's index strictly increase and chain (each starts where the
/// previous ended): no duplicate, no gap. Returns the number of segments.
async fn check_bucket_index(s3: &S3Server) -> Result<usize> {
    let store = s3.store(BUCKET, &format!("{PREFIX}/binlog-archive/src"))?;
    let index: serde_json::Value = serde_json::from_slice(&store.get("index.json").await?)?;
    let segs = index["segments"].as_array().context("segments")?;
    let mut prev: Option<(u64, String)> = None;
    for s in segs {
        let seq = s["seq"].as_u64().context("seq")?;
        let start = s["start"].as_str().context("start")?.to_string();
        if let Some((pseq, plast)) = &prev {
            ensure!(
                seq > *pseq,
                "segment {seq} after {pseq} in the bucket's index"
            );
            ensure!(
                start == *plast,
                "segment {seq} starts at {start}, previous ended at {plast}"
            );
        }
        let file = s["file"].as_str().context("file")?;
        ensure!(
            store.size(file).await?.is_some(),
            "{file} listed but not in the bucket"
        );
        prev = Some((seq, s["last"].as_str().context("last")?.to_string()));
    }
    Ok(segs.len())
}

/// Finished segments left in the spool (uploaded ones are removed).
fn spooled_segments(p: &Pitr) -> usize {
    let dir = p.pair.state_dir().join("binlog-archive-spool/src");
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().ends_with(".zst"))
                .count()
        })
        .unwrap_or(0)
}

/// Archive to the bucket; replay from the bucket to a time and to a GTID: equal to the source.
/// A tampered segment in the bucket is refused before anything changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pitr_s3_replay_to_time_and_to_gtid() -> Result<()> {
    let s3 = S3Server::start(&[BUCKET]).await?;
    let mut p = start(&s3, &["app_t", "app_g"], &["--segment-seconds", "2"]).await?;
    let status = p.wait_status().await?;
    ensure!(
        status["location"].as_str() == Some("s3://fleet-backups/eu1/binlog-archive/src"),
        "status: {status}"
    );
    let from = status["start"]
        .as_str()
        .context("status start")?
        .to_string();
    let (gtid_a, [out_t, out_g]) = replay_phases(&p, &from).await?;
    let segments = check_bucket_index(&s3).await?;
    ensure!(segments >= 2, "{segments} segments in the bucket");
    ensure!(
        spooled_segments(&p) <= 1,
        "uploaded segments stay in the spool"
    );
    let metrics = scrape(&p).await?;
    let lag = sample(&metrics, "fleetsync_pitr_archive_lag_seconds").context("no lag gauge")?;
    ensure!(lag < 30.0, "lag {lag} s while idle with 2 s segments");
    let status = p.status().await?.to_string();
    p.archiver.stop(STOP_TIMEOUT).await?;

    // A tampered object in the bucket: refused with one line before anything is changed.
    let archive = s3.store(BUCKET, &format!("{PREFIX}/binlog-archive/src"))?;
    let index: serde_json::Value = serde_json::from_slice(&archive.get("index.json").await?)?;
    // The first segment with transactions (earlier ones hold heartbeats at the start
    // position, which a replay from there skips unread).
    let first = index["segments"]
        .as_array()
        .context("segments")?
        .iter()
        .find(|s| s["transactions"].as_u64() > Some(0))
        .and_then(|s| s["file"].as_str())
        .context("a segment with transactions")?
        .to_string();
    let mut bytes = archive.get(&first).await?.to_vec();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    archive.put(&first, bytes.into()).await?;
    let out = p
        .replay(
            &from,
            &["--to-gtid", &gtid_a, "--rename-db", "app=app_x", "--yes"],
        )
        .await?;
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    ensure!(
        !out.status.success(),
        "a replay of a tampered segment succeeded"
    );
    ensure!(err.contains("checksum mismatch"), "tampered segment: {err}");
    ensure!(
        p.pair
            .dst
            .query_strings("SHOW DATABASES LIKE 'app_x'")
            .await?
            .is_empty(),
        "a refused replay created app_x"
    );
    let log = std::fs::read_to_string(p.archiver.log_path())?;
    no_secret("archiver", &[&log, &metrics, &status, &out_t, &out_g, &err])
}

/// SIGKILL the archiver four times while the source is written (segments roll and upload
/// every second, so kills land mid-stream and mid-upload), once also losing its spool: the
/// bucket's archive replays to exactly the source (no gap, no duplicate: the keyless table
/// would show a replayed insert) and its index has no duplicate segment; a dangling multipart
/// upload's marker is cleaned up at the next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pitr_s3_archiver_kill9_and_lost_spool() -> Result<()> {
    let s3 = S3Server::start(&[BUCKET]).await?;
    let mut p = start(
        &s3,
        &["app"],
        &["--segment-mb", "1", "--segment-seconds", "1"],
    )
    .await?;
    let from = p.wait_status().await?["start"]
        .as_str()
        .context("status start")?
        .to_string();
    let src = &p.pair.src;
    let writer = Writer::start(src, 31, 100, Duration::from_millis(50)).await?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(17);
    let spool = p.pair.state_dir().join("binlog-archive-spool");
    let archive = s3.store(BUCKET, &format!("{PREFIX}/binlog-archive/src"))?;
    for round in 0..4 {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(1_200..2_500))).await;
        p.archiver.ensure_running()?;
        p.archiver.kill9()?;
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..800))).await;
        if round == 1 {
            // What a kill during a multipart upload leaves: the marker of its upload.
            archive
                .put(
                    ".multipart-seg-0000999999.zst",
                    b"no-such-upload-id".to_vec().into(),
                )
                .await?;
        }
        if round == 2 {
            // A lost disk: the archiver resumes from the bucket's end, from the server.
            std::fs::remove_dir_all(&spool)?;
        }
        p.archiver.restart()?;
    }
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    writer.finish().await?;
    let gtid = src.gtid_binlog_pos().await?;
    p.wait_covers_gtid(&gtid).await?;
    let segments = check_bucket_index(&s3).await?;
    ensure!(segments >= 4, "expected several segments: {segments}");
    let markers: Vec<String> = archive
        .list("")
        .await?
        .into_iter()
        .map(|e| e.key)
        .filter(|k| k.contains(".multipart-"))
        .collect();
    ensure!(markers.is_empty(), "dangling uploads left: {markers:?}");
    p.replay_ok(&from, &["--to-gtid", &gtid, "--yes"]).await?;
    assert_same(
        "restore from the bucket after kills",
        &capture(src, "app").await?,
        &capture(&p.pair.dst, "app").await?,
    )?;
    p.archiver.stop(STOP_TIMEOUT).await?;
    let log = std::fs::read_to_string(p.archiver.log_path())?;
    ensure!(
        log.contains("the archive spool is behind the bucket"),
        "the lost spool was not noticed"
    );
    ensure!(
        log.contains("aborted multipart uploads"),
        "the dangling upload was not aborted"
    );
    no_secret("archiver", &[&log])
}

/// The bucket is down for a minute while the source keeps writing: the archiver keeps
/// spooling, the lag gauge rises, failures are counted and shown, then it catches up; a
/// replay to a GTID written during the outage equals the source's state then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pitr_s3_upload_outage_then_catch_up() -> Result<()> {
    let mut s3 = S3Server::start(&[BUCKET]).await?;
    let mut p = start(&s3, &["app"], &["--segment-seconds", "2"]).await?;
    let from = p.wait_status().await?["start"]
        .as_str()
        .context("status start")?
        .to_string();
    let src = &p.pair.src;
    // The writer pauses while the test holds its gate (a consistent GTID and state).
    let writer = Writer::start(src, 41, 20, Duration::from_millis(200)).await?;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let before = scrape(&p).await?;
    let lag_before = sample(&before, "fleetsync_pitr_archive_lag_seconds").context("lag")?;
    ensure!(lag_before < 20.0, "lag {lag_before} s before the outage");

    s3.stop().await?;
    let outage = Instant::now();
    tokio::time::sleep(Duration::from_secs(25)).await;
    let (gtid_mid, state_mid) = {
        let _g = writer.gate.lock().await;
        (src.gtid_binlog_pos().await?, capture(src, "app").await?)
    };
    tokio::time::sleep(Duration::from_secs(60).saturating_sub(outage.elapsed())).await;
    p.archiver.ensure_running()?;
    let during = scrape(&p).await?;
    let lag = sample(&during, "fleetsync_pitr_archive_lag_seconds").context("lag")?;
    let pending = sample(&during, "fleetsync_pitr_archive_pending_segments").unwrap_or(0.0);
    let failures = sample(&during, "fleetsync_pitr_archive_upload_failures_total").unwrap_or(0.0);
    ensure!(lag >= 45.0, "lag {lag} s after a minute without uploads");
    ensure!(pending >= 5.0, "{pending} segments pending after a minute");
    ensure!(failures >= 1.0, "no upload failure counted");
    ensure!(
        spooled_segments(&p) >= 5,
        "the archiver did not keep spooling"
    );
    let log = std::fs::read_to_string(p.archiver.log_path())?;
    ensure!(
        log.contains("binlog archive upload failed"),
        "no log line for the failed uploads"
    );

    s3.start_again().await?;
    let caught_up = Instant::now();
    wait_until(
        Duration::from_secs(120),
        "the archive to catch up",
        || async {
            let m = scrape(&p).await?;
            let lag = sample(&m, "fleetsync_pitr_archive_lag_seconds").unwrap_or(f64::MAX);
            ensure!(lag < 15.0, "lag {lag} s");
            Ok(())
        },
    )
    .await?;
    let status = p.status().await?;
    ensure!(
        status["upload"]["pending_segments"].as_u64() <= Some(1),
        "after catching up: {status}"
    );
    eprintln!(
        "outage: lag {lag_before:.1} s before, {lag:.1} s after 60 s down ({pending} segments pending, {failures} failed attempts); caught up {:.1} s after the bucket came back",
        caught_up.elapsed().as_secs_f64()
    );
    writer.finish().await?;
    check_bucket_index(&s3).await?;
    p.replay_ok(&from, &["--to-gtid", &gtid_mid, "--yes"])
        .await?;
    assert_same(
        "restore to a GTID written during the outage",
        &state_mid,
        &capture(&p.pair.dst, "app").await?,
    )?;
    let metrics = scrape(&p).await?;
    p.archiver.stop(STOP_TIMEOUT).await?;
    let log = std::fs::read_to_string(p.archiver.log_path())?;
    let status = status.to_string();
    no_secret("archiver", &[&log, &metrics, &during, &status])
}

/// `[backup] archive_binlog = true` with a bucket: `fleetsync run` spools and uploads its
/// source's archive with the bucket's default segment age (a minute), and the insert
/// becomes replayable from the bucket within about that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pitr_s3_run_archives_to_the_bucket() -> Result<()> {
    let s3 = S3Server::start(&[BUCKET]).await?;
    let pair = crate::support::Pair::start().await?;
    pair.src
        .exec("CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY)")
        .await?;
    let text = fleetsync_tests::ConfigBuilder::new(&pair.state_dir())
        .server("src", &pair.src.url_root())
        .server("dst", &pair.dst.url_root())
        .sync("s1", "src", &["dst"], &["app\\..*"], &[])
        .raw(&format!(
            "\n[backup]\n{}archive_binlog = true\n",
            s3.backup_toml(BUCKET, PREFIX)
        ))
        .build();
    let config = fleetsync_tests::Fleetsync::write_config(pair.dir.path(), &text)?;
    let mut run = fleetsync_tests::Fleetsync::run(&config)?;
    let cfg = config.to_string_lossy().into_owned();
    let status = || async {
        let out = fleetsync_tests::fleetsync_cmd(&[
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
    pair.src.exec("INSERT INTO app.t VALUES (1), (2)").await?;
    let gtid = pair.src.gtid_binlog_pos().await?;
    let started = Instant::now();
    let reached = wait_until(
        Duration::from_secs(150),
        "the insert to reach the bucket",
        || async {
            let s = status().await?;
            ensure!(
                s["end_gtid"].as_str() == Some(gtid.as_str()),
                "archive at {s}"
            );
            Ok(())
        },
    )
    .await;
    if let Err(e) = reached {
        let log = std::fs::read_to_string(run.log_path()).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(e.context(format!("fleetsync run's log ends:\n{}", tail.join("\n"))));
    }
    run.ensure_running()?;
    ensure!(
        pair.state_dir().join("binlog-archive-spool/src").is_dir(),
        "no spool under the state dir"
    );
    eprintln!(
        "the insert was in the bucket {:.0} s after its commit (default segment age 60 s)",
        started.elapsed().as_secs_f64()
    );
    run.stop(STOP_TIMEOUT).await?;
    let log = std::fs::read_to_string(run.log_path())?;
    no_secret("fleetsync run", &[&log])
}

/// The operator's path with everything in the bucket: `backup create` to the bucket while the
/// archiver uploads, then `backup restore ID --to-time T` reads the backup and the archive
/// from the bucket; the result equals the source at T row by row, and a time before the
/// backup is refused before anything is loaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pitr_s3_backup_restore_to_time() -> Result<()> {
    let s3 = S3Server::start(&[BUCKET]).await?;
    let mut p = start(&s3, &[], &["--segment-seconds", "2"]).await?;
    backup_restore_to_time(&mut p).await?;
    let text = std::fs::read_to_string(p.pair.dir.path().join("archive.log"))?;
    no_secret("the archiver's log", &[&text])
}
