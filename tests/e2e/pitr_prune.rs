//! `[backup] archive_prune = true`: the archiver deletes the archive's segments that no
//! backup of its server needs, behind the oldest complete backup, in a local directory and in
//! a bucket (SeaweedFS). Checked against the archive's own index and objects, `archive
//! status`, the metric and log line, the PITR range check of the oldest backup, orphan
//! cleanup, a SIGKILL and restart of the archiver on its pruned archive, and a restore from
//! the remaining backup to a GTID compared row by row with the source.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use fleetsync_proto::{BinlogPosition, Position};
use fleetsync_store::Store;
use fleetsync_tests::s3::S3Server;
use fleetsync_tests::{fleetsync::toml_str, fleetsync_cmd, wait_until};

use crate::pitr::{assert_same, capture, create_app_backup, Pitr, Writer};
use crate::pitr_s3::{sample, scrape};
use crate::support::STOP_TIMEOUT;

/// How long a pruning pass may take to show: listing every second, a segment a second.
const PRUNE_TIMEOUT: Duration = Duration::from_secs(30);
const METRIC: &str = "fleetsync_pitr_archive_pruned_segments_total";
/// Short segments and a listing every second (the hidden `--prune-seconds`; 60 by default).
const ARCHIVER_ARGS: &[&str] = &["--segment-seconds", "1", "--prune-seconds", "1"];

/// One entry of the archive's `index.json`.
#[derive(Debug, Clone)]
struct Seg {
    seq: u64,
    start: BinlogPosition,
    last: BinlogPosition,
}

async fn index(archive: &Store) -> Result<Vec<Seg>> {
    let v: serde_json::Value = serde_json::from_slice(&archive.get("index.json").await?)?;
    let pos = |s: &serde_json::Value, k: &str| -> Result<BinlogPosition> {
        let p: Position = s[k].as_str().context("position")?.parse()?;
        Ok(p.binlog)
    };
    v["segments"]
        .as_array()
        .context("segments")?
        .iter()
        .map(|s| {
            Ok(Seg {
                seq: s["seq"].as_u64().context("seq")?,
                start: pos(s, "start")?,
                last: pos(s, "last")?,
            })
        })
        .collect()
}

/// Sequence numbers of the finished segment objects in the archive.
async fn segment_objects(archive: &Store) -> Result<Vec<u64>> {
    Ok(archive
        .list("")
        .await?
        .iter()
        .filter_map(|e| {
            let n = e.key.strip_prefix("seg-")?.strip_suffix(".zst")?;
            n.parse().ok()
        })
        .collect())
}

fn seg_name(seq: u64) -> String {
    format!("seg-{seq:010}.zst")
}

/// `backup create` of `app`; returns the id and the manifest's binlog position.
async fn backup(p: &Pitr, root: &Store) -> Result<(String, BinlogPosition)> {
    let id = create_app_backup(p).await?;
    let m: serde_json::Value =
        serde_json::from_slice(&root.get(&format!("{id}/manifest.json")).await?)?;
    let pos: Position = m["position"].as_str().context("position")?.parse()?;
    Ok((id, pos.binlog))
}

/// Waits until the archive's index satisfies `ok`; returns it.
async fn wait_index(archive: &Store, what: &str, ok: impl Fn(&[Seg]) -> bool) -> Result<Vec<Seg>> {
    wait_until(PRUNE_TIMEOUT, what, || async {
        let ix = index(archive).await?;
        ensure!(
            ok(&ix),
            "index now {:?}",
            ix.iter().map(|s| s.seq).collect::<Vec<_>>()
        );
        Ok(())
    })
    .await?;
    index(archive).await
}

/// Whether the index starts with the segment a replay from `pos` needs (or keeps only its
/// last segment): nothing more to prune for `pos`.
fn pruned_to(ix: &[Seg], pos: &BinlogPosition) -> bool {
    ix.first().is_some_and(|f| f.last > *pos || ix.len() == 1)
}

async fn restore(p: &Pitr, id: &str, gtid: &str, extra: &[&str]) -> Result<String> {
    let cfg = p.cfg();
    let mut args = vec![
        "backup",
        "restore",
        "--config",
        &cfg,
        id,
        "--to-server",
        "dst",
        "--rename-db",
        "app=app_r",
        "--to-gtid",
        gtid,
    ];
    args.extend(extra);
    let out = fleetsync_cmd(&args).await?;
    ensure!(
        out.status.success(),
        "restore {id} {extra:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The scenario, for any `[backup] dir` (`root`: the backups' root as a store).
async fn prune_behind_oldest_backup(p: &mut Pitr, root: &Store) -> Result<()> {
    let archive = root.child("binlog-archive/src");
    let writer = Writer::start(&p.pair.src, 91, 4, Duration::from_millis(150)).await?;
    let first_seq =
        wait_index(&archive, "three finished segments", |ix| ix.len() >= 3).await?[0].seq;

    // Backup 1: the archive is pruned up to the segment a replay from it starts in.
    let (id1, pos1) = backup(p, root).await?;
    let ix = wait_index(&archive, "pruned behind backup 1", |ix| {
        ix[0].seq > first_seq && pruned_to(ix, &pos1)
    })
    .await?;
    ensure!(
        ix[0].start <= pos1,
        "the archive starts at {} after backup 1's position {pos1}",
        ix[0].start
    );
    // The PITR range check of the oldest backup still passes.
    let gtid_now = p.pair.src.gtid_binlog_pos().await?;
    p.wait_covers_gtid_at_least(&gtid_now).await?;
    let dry = restore(p, &id1, &gtid_now, &["--dry-run"]).await?;
    ensure!(dry.contains("transactions"), "dry run printed: {dry}");

    // A few segments, backup 2, a few more; then retention deletes backup 1.
    let base = ix.last().map_or(0, |s| s.seq);
    wait_index(&archive, "segments after backup 1", |ix| {
        ix.last().is_some_and(|s| s.seq >= base + 3)
    })
    .await?;
    let (id2, pos2) = backup(p, root).await?;
    ensure!(pos2 > pos1, "backup 2 at {pos2}, backup 1 at {pos1}");
    let base = index(&archive).await?.last().map_or(0, |s| s.seq);
    wait_index(&archive, "segments after backup 2", |ix| {
        ix.last().is_some_and(|s| s.seq >= base + 2)
    })
    .await?;
    let before = index(&archive).await?;
    ensure!(
        before[0].start <= pos1,
        "pruned past backup 1 while it exists"
    );
    let out = fleetsync_cmd(&["backup", "prune", "--config", &p.cfg()]).await?;
    ensure!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains(&id1),
        "backup prune: {} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let ix = wait_index(&archive, "pruned behind backup 2", |ix| {
        ix[0].start > pos1 && pruned_to(ix, &pos2)
    })
    .await?;
    ensure!(
        ix[0].start <= pos2,
        "the archive starts at {} after backup 2's position {pos2}",
        ix[0].start
    );
    ensure!(ix[0].seq > before[0].seq, "the first segment did not move");
    // `archive status` shows where the archive now starts.
    let status = p.status().await?;
    let start: Position = status["start"].as_str().context("start")?.parse()?;
    ensure!(
        status["first_segment"].as_u64() == Some(ix[0].seq)
            && start.binlog == ix[0].start
            && status["start_commit_ms"].as_u64().unwrap_or(0) > 0,
        "status {status} vs first segment {:?}",
        ix[0]
    );
    // Every segment before the first is gone from the archive's storage.
    let objects = segment_objects(&archive).await?;
    ensure!(
        objects.iter().all(|&s| s >= ix[0].seq),
        "segments below {} left: {objects:?}",
        ix[0].seq
    );

    // Orphans (a pass interrupted between the index and the deletes): one below the first
    // entry goes at the next pass; one above the last entry (an uploaded segment whose index
    // entry is not written yet) stays.
    let copy = archive.get(&seg_name(ix[0].seq)).await?;
    let (low, high) = (ix[0].seq - 1, ix.last().map_or(0, |s| s.seq) + 1000);
    archive.put(&seg_name(low), copy.clone()).await?;
    archive.put(&seg_name(high), copy).await?;
    wait_until(PRUNE_TIMEOUT, "the orphan removed", || async {
        let objects = segment_objects(&archive).await?;
        ensure!(!objects.contains(&low), "orphan {low} still there");
        Ok(())
    })
    .await?;
    ensure!(
        segment_objects(&archive).await?.contains(&high),
        "segment {high} above the index's last was removed"
    );
    archive.delete(&seg_name(high)).await?;
    let pruned = sample(&scrape(p).await?, METRIC).unwrap_or(0.0);
    ensure!(
        pruned >= (ix[0].seq - first_seq) as f64,
        "{METRIC} = {pruned}, {} segments pruned",
        ix[0].seq - first_seq
    );
    let log = std::fs::read_to_string(p.archiver.log_path())?;
    ensure!(
        log.contains("binlog archive pruned behind the oldest backup"),
        "no prune line in the archiver's log"
    );

    // SIGKILL and a restart: the archiver resumes on the pruned index (with a bucket, its
    // spool's index still lists the pruned segments) and keeps the archive whole.
    p.archiver.kill9()?;
    p.archiver.restart()?;

    // PITR from backup 2 to a GTID: row by row equal to the source then.
    let (gtid, state) = {
        let _g = writer.gate.lock().await;
        (
            p.pair.src.gtid_binlog_pos().await?,
            capture(&p.pair.src, "app").await?,
        )
    };
    writer.finish().await?;
    p.wait_covers_gtid_at_least(&gtid).await?;
    restore(p, &id2, &gtid, &["--yes"]).await?;
    assert_same(
        "backup 2 + pruned archive to GTID",
        &state,
        &capture(&p.pair.dst, "app_r").await?,
    )?;
    p.archiver.stop(STOP_TIMEOUT).await?;
    Ok(())
}

/// A local archive: `[backup] dir` a directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pitr_archive_prune_local() -> Result<()> {
    let mut p = Pitr::start_with(&[], ARCHIVER_ARGS, |dir| {
        format!(
            "dir = {}\narchive_prune = true\nretention = {{ keep_last = 1 }}\n",
            toml_str(&dir.join("backups").to_string_lossy())
        )
    })
    .await?;
    let root = Store::local(p.pair.dir.path().join("backups"));
    prune_behind_oldest_backup(&mut p, &root).await
}

/// The archive in a bucket: the uploader prunes the bucket's index and objects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pitr_archive_prune_s3() -> Result<()> {
    const BUCKET: &str = "fleet-backups";
    const PREFIX: &str = "eu1";
    let s3 = S3Server::start(&[BUCKET]).await?;
    let backup = format!(
        "{}archive_prune = true\nretention = {{ keep_last = 1 }}\n",
        s3.backup_toml(BUCKET, PREFIX)
    );
    let mut p = Pitr::start_with(&[], ARCHIVER_ARGS, |_| backup).await?;
    let root = s3.store(BUCKET, PREFIX)?;
    prune_behind_oldest_backup(&mut p, &root).await
}
