//! Writer and reader against a temp directory: order, rolls, crash leftovers, damage.

use std::io::Write;

use fleetsync_proto::{Ddl, Gtid, GtidSet, Origin, Position, Transaction};

use super::writer::test_options;
use super::*;

fn txn(n: u64, heartbeat: bool) -> Transaction {
    let gtid = Gtid {
        domain: 0,
        server_id: 1,
        seq: n,
    };
    Transaction {
        origin: Origin {
            name: "s".into(),
            server_id: 1,
            server_uuid: String::new(),
        },
        gtid: (!heartbeat).then_some(gtid),
        position: Position {
            binlog: fleetsync_proto::BinlogPosition::new("binlog.000001", 1000 + n * 100),
            gtid: Some(GtidSet::from_iter([gtid])),
        },
        txn_id: n,
        commit_ts_ms: 1_700_000_000_000 + n * 1000,
        snapshot: false,
        snapshot_done: false,
        tables: Vec::new(),
        changes: Vec::new(),
        ddl: (!heartbeat).then(|| Ddl {
            schema: Some("app".into()),
            tables: vec![("app".into(), format!("t{n}"))],
            statement: format!("CREATE TABLE t{n} (id INT PRIMARY KEY)"),
        }),
    }
}

/// A fresh directory under the system temp dir (removed when dropped).
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let p =
            std::env::temp_dir().join(format!("fleetsync-archive-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        TempDir(p)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn start() -> Position {
    Position::new("binlog.000001", 1000)
}

fn read_all(dir: &Path) -> Vec<u64> {
    let archive = Archive::open(dir, "s").unwrap();
    let mut seen = Vec::new();
    archive
        .scan(&start().binlog, |t| {
            seen.push(t.txn_id);
            Ok(Flow::Continue)
        })
        .unwrap();
    seen
}

#[tokio::test]
async fn writes_rolls_and_reads_back_in_order() {
    let tmp = TempDir::new("rolls");
    let dir = tmp.path().join("a");
    let mut w = ArchiveWriter::open(&dir, "s", test_options()).unwrap();
    assert_eq!(w.resume_position().unwrap(), None);
    w.begin(&start(), 0).unwrap();
    for n in 1..=20 {
        w.append(txn(n, n % 5 == 0)).await.unwrap();
    }
    drop(w);
    let index = Index::load(&dir, "s").unwrap();
    assert!(
        index.segments.len() >= 3,
        "{} segments",
        index.segments.len()
    );
    assert_eq!(read_all(&dir), (1..=20).collect::<Vec<_>>());
    let cov = Archive::open(&dir, "s").unwrap().coverage().unwrap();
    assert_eq!(cov.start, start());
    assert_eq!(cov.end.binlog.pos, 3000);
    assert_eq!(cov.transactions, 16);
    // Reopening resumes after the last record and keeps appending without a gap.
    let mut w = ArchiveWriter::open(&dir, "s", test_options()).unwrap();
    let resume = w.resume_position().unwrap().unwrap();
    assert_eq!(resume.binlog.pos, 3000);
    w.begin(&resume, 0).unwrap();
    for n in 21..=25 {
        w.append(txn(n, false)).await.unwrap();
    }
    drop(w);
    assert_eq!(read_all(&dir), (1..=25).collect::<Vec<_>>());
}

#[tokio::test]
async fn torn_tail_and_roll_leftovers_are_recovered() {
    let tmp = TempDir::new("torn");
    let dir = tmp.path().join("a");
    let opts = ArchiveOptions {
        segment_bytes: 1 << 20,
        ..test_options()
    };
    let mut w = ArchiveWriter::open(&dir, "s", opts.clone()).unwrap();
    w.begin(&start(), 0).unwrap();
    for n in 1..=4 {
        w.append(txn(n, false)).await.unwrap();
    }
    drop(w);
    let open = dir.join(format::open_name(1));
    // A torn frame: a length and part of a payload.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&open)
        .unwrap();
    f.write_all(&[200, 0, 0, 0, 1, 2, 3]).unwrap();
    drop(f);
    // A compressed segment whose roll never reached the index.
    std::fs::write(dir.join(format::finished_name(1)), b"junk").unwrap();
    // The reader stops before the torn frame.
    assert_eq!(read_all(&dir), vec![1, 2, 3, 4]);
    let mut w = ArchiveWriter::open(&dir, "s", opts).unwrap();
    assert!(!dir.join(format::finished_name(1)).exists());
    let resume = w.resume_position().unwrap().unwrap();
    assert_eq!(resume.binlog.pos, 1400);
    w.begin(&resume, 0).unwrap();
    w.append(txn(5, false)).await.unwrap();
    drop(w);
    assert_eq!(read_all(&dir), vec![1, 2, 3, 4, 5]);
}

#[tokio::test]
async fn damaged_or_missing_segments_are_refused() {
    let tmp = TempDir::new("damaged");
    let dir = tmp.path().join("a");
    let mut w = ArchiveWriter::open(&dir, "s", test_options()).unwrap();
    w.begin(&start(), 0).unwrap();
    for n in 1..=12 {
        w.append(txn(n, false)).await.unwrap();
    }
    drop(w);
    let index = Index::load(&dir, "s").unwrap();
    let seg = dir.join(&index.segments[1].file);
    let mut bytes = std::fs::read(&seg).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&seg, &bytes).unwrap();
    let archive = Archive::open(&dir, "s").unwrap();
    let err = archive
        .scan(&start().binlog, |_| Ok(Flow::Continue))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("checksum mismatch") && err.contains(&index.segments[1].file),
        "{err}"
    );
    std::fs::remove_file(&seg).unwrap();
    let err = Archive::open(&dir, "s").err().unwrap().to_string();
    assert!(err.contains("segment missing"), "{err}");
}

/// Writes `range` into the spool's archive (rolling tiny segments) and returns its index.
async fn spool_some(spool: &Path, range: std::ops::RangeInclusive<u64>) -> Index {
    let mut w = ArchiveWriter::open(spool, "s", test_options()).unwrap();
    let from = w.resume_position().unwrap().unwrap_or_else(start);
    w.begin(&from, 0).unwrap();
    for n in range {
        w.append(txn(n, false)).await.unwrap();
    }
    drop(w);
    Index::load(spool, "s").unwrap()
}

fn zst_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".zst"))
        })
        .count()
}

/// The uploader against a store on a local directory (the same code path as a bucket):
/// segments then the index are uploaded and leave the spool; uploading again (a crash between
/// the object and the index) adds no duplicate; a lost spool resumes from the bucket's end; a
/// spool that disagrees with the bucket is refused.
#[tokio::test]
async fn uploader_reconciles_spool_and_bucket() {
    let tmp = TempDir::new("upload");
    let (spool, bucket) = (tmp.path().join("spool"), tmp.path().join("bucket"));
    let store = fleetsync_store::Store::local(&bucket);
    let local = spool_some(&spool, 1..=12).await;
    assert!(local.segments.len() >= 3);
    // A crash after the first segment's object, before the index.
    let first = &local.segments[0].file;
    store.put_file(first, &spool.join(first)).await.unwrap();
    let mut up = Uploader::new(store.clone(), &spool, "s");
    up.reconcile().await.unwrap();
    up.upload_pending().await.unwrap();
    let uploaded = Index::load(&bucket, "s").unwrap();
    assert_eq!(
        uploaded.segments, local.segments,
        "no duplicate, nothing missing"
    );
    assert_eq!(zst_files(&spool), 0, "uploaded segments leave the spool");
    assert_eq!(
        up.uploaded().get(),
        local.segments.last().unwrap().last_commit_ms
    );
    let finished: u64 = local.segments.iter().map(|e| e.records).sum();
    assert_eq!(read_all(&bucket), (1..=finished).collect::<Vec<_>>());

    // A restart with nothing new: the same index.
    let mut up = Uploader::new(store.clone(), &spool, "s");
    up.reconcile().await.unwrap();
    up.upload_pending().await.unwrap();
    assert_eq!(Index::load(&bucket, "s").unwrap().segments, local.segments);

    // A lost spool resumes from the bucket's end (the open segment's records are read from
    // the server again).
    std::fs::remove_dir_all(&spool).unwrap();
    let mut up = Uploader::new(store.clone(), &spool, "s");
    up.reconcile().await.unwrap();
    let w = ArchiveWriter::open(&spool, "s", test_options()).unwrap();
    assert_eq!(
        w.resume_position().unwrap(),
        Some(local.segments.last().unwrap().last_pos().unwrap())
    );
    drop(w);
    let more = spool_some(&spool, finished + 1..=finished + 8).await;
    up.upload_pending().await.unwrap();
    assert_eq!(Index::load(&bucket, "s").unwrap().segments, more.segments);
    let all: u64 = more.segments.iter().map(|e| e.records).sum();
    assert_eq!(read_all(&bucket), (1..=all).collect::<Vec<_>>());

    // A bucket that disagrees with the spool: refused.
    let mut other = Index::load(&bucket, "s").unwrap();
    other.segments.last_mut().unwrap().sha256 = "00".into();
    writer::store_index(&other, &bucket).unwrap();
    let err = Uploader::new(store, &spool, "s")
        .reconcile()
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("disagree"), "{err}");
}

/// The position after test transaction `n` (see [`txn`]).
fn pos_of(n: u64) -> Position {
    txn(n, false).position
}

fn floor_at(n: u64) -> prune::Floor {
    prune::Floor {
        backup: format!("b{n}"),
        position: pos_of(n),
    }
}

/// The records a replay from `from` reads (after it), by transaction number.
fn read_after(dir: &Path, from: u64) -> Vec<u64> {
    let archive = Archive::open(dir, "s").unwrap();
    let mut seen = Vec::new();
    archive
        .scan(&pos_of(from).binlog, |t| {
            if t.position.binlog > pos_of(from).binlog {
                seen.push(t.txn_id);
            }
            Ok(Flow::Continue)
        })
        .unwrap();
    seen
}

fn seqs(dir: &Path) -> Vec<u64> {
    let mut v: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            format::parse_name(&e.unwrap().file_name().to_string_lossy())
                .and_then(|(seq, done)| done.then_some(seq))
        })
        .collect();
    v.sort_unstable();
    v
}

/// A local archive pruned by its writer: the index first, then the files; what is left still
/// covers a replay from the floor; orphans below the first entry go at the next pass, a file
/// above the last entry stays.
#[tokio::test]
async fn writer_prunes_behind_the_floor() {
    let tmp = TempDir::new("prune");
    let dir = tmp.path().join("a");
    let mut w = ArchiveWriter::open(&dir, "s", test_options()).unwrap();
    w.begin(&start(), 0).unwrap();
    for n in 1..=20 {
        w.append(txn(n, false)).await.unwrap();
    }
    drop(w);
    let before = Index::load(&dir, "s").unwrap();
    assert!(before.segments.len() >= 5, "{}", before.segments.len());

    let (tx, rx) = tokio::sync::watch::channel(None);
    let mut w = ArchiveWriter::open(&dir, "s", test_options()).unwrap();
    w.prune_with(rx);
    let resume = w.resume_position().unwrap().unwrap();
    w.begin(&resume, 0).unwrap();
    // No backup: nothing pruned.
    tx.send_replace(None);
    w.append(txn(21, false)).await.unwrap();
    assert_eq!(
        Index::load(&dir, "s").unwrap().segments[0],
        before.segments[0]
    );

    tx.send_replace(Some(floor_at(12)));
    w.append(txn(22, false)).await.unwrap();
    let after = Index::load(&dir, "s").unwrap();
    let first = &after.segments[0];
    assert!(first.seq > before.segments[0].seq, "nothing pruned");
    assert!(first.start_pos().unwrap().binlog <= pos_of(12).binlog);
    assert!(first.last_pos().unwrap().binlog > pos_of(12).binlog);
    assert_eq!(seqs(&dir)[0], first.seq, "pruned files are gone");
    assert_eq!(read_after(&dir, 12), (13..=22).collect::<Vec<_>>());

    // Orphans (a pass interrupted after the index): below the first entry removed at the next
    // pass; above the last entry kept.
    let last = after.segments.last().unwrap().seq;
    let some = dir.join(&first.file);
    std::fs::copy(&some, dir.join(format::finished_name(first.seq - 1))).unwrap();
    std::fs::copy(&some, dir.join(format::finished_name(last + 50))).unwrap();
    tx.send_replace(Some(floor_at(12)));
    w.append(txn(23, false)).await.unwrap();
    let now = seqs(&dir);
    assert!(!now.contains(&(first.seq - 1)), "orphan kept: {now:?}");
    assert!(
        now.contains(&(last + 50)),
        "a segment above the index removed"
    );
    std::fs::remove_file(dir.join(format::finished_name(last + 50))).unwrap();

    // A floor past every finished segment keeps the last one (the chain's end); the pass runs
    // before the append, which may roll another segment.
    let last = Index::load(&dir, "s").unwrap().segments.last().unwrap().seq;
    tx.send_replace(Some(floor_at(1000)));
    w.append(txn(24, false)).await.unwrap();
    drop(w);
    let index = Index::load(&dir, "s").unwrap();
    assert_eq!(index.segments[0].seq, last);
    assert_eq!(seqs(&dir)[0], last);
    // And the archive reopens and continues from there.
    let mut w = ArchiveWriter::open(&dir, "s", test_options()).unwrap();
    let resume = w.resume_position().unwrap().unwrap();
    w.begin(&resume, 0).unwrap();
    w.append(txn(25, false)).await.unwrap();
    drop(w);
    let kept_from = index.segments[0].start_pos().unwrap();
    let cov = Archive::open(&dir, "s").unwrap().coverage().unwrap();
    assert_eq!(cov.start, kept_from);
    assert_eq!(cov.end.binlog, pos_of(25).binlog);
}

/// The bucket's archive pruned by the uploader: the index first, then the objects; orphans
/// below the first entry go, an object above the last stays; a restarted uploader reconciles
/// the (unpruned) spool index with the pruned bucket and keeps uploading.
#[tokio::test]
async fn uploader_prunes_the_bucket() {
    let tmp = TempDir::new("prune-up");
    let (spool, bucket) = (tmp.path().join("spool"), tmp.path().join("bucket"));
    let store = fleetsync_store::Store::local(&bucket);
    let local = spool_some(&spool, 1..=16).await;
    let mut up = Uploader::new(store.clone(), &spool, "s");
    up.reconcile().await.unwrap();
    up.upload_pending().await.unwrap();
    assert_eq!(Index::load(&bucket, "s").unwrap().segments, local.segments);

    let last = local.segments.last().unwrap().seq;
    up.prune_to(&floor_at(9)).await.unwrap();
    let pruned = Index::load(&bucket, "s").unwrap();
    let first = &pruned.segments[0];
    assert!(first.seq > local.segments[0].seq, "nothing pruned");
    assert!(first.start_pos().unwrap().binlog <= pos_of(9).binlog);
    assert!(first.last_pos().unwrap().binlog > pos_of(9).binlog);
    assert_eq!(seqs(&bucket)[0], first.seq, "pruned objects are gone");
    assert_eq!(
        read_after(&bucket, 9),
        (10..=local_records(&local)).collect::<Vec<_>>()
    );

    std::fs::copy(
        bucket.join(&first.file),
        bucket.join(format::finished_name(first.seq - 1)),
    )
    .unwrap();
    std::fs::copy(
        bucket.join(&first.file),
        bucket.join(format::finished_name(last + 1)),
    )
    .unwrap();
    up.prune_to(&floor_at(9)).await.unwrap();
    let now = seqs(&bucket);
    assert!(!now.contains(&(first.seq - 1)), "orphan kept: {now:?}");
    assert!(
        now.contains(&(last + 1)),
        "an uploaded, not yet indexed segment removed"
    );

    // A restart: the spool's index still lists the pruned segments; no disagreement.
    let mut up = Uploader::new(store.clone(), &spool, "s");
    up.reconcile().await.unwrap();
    // The open segment holds records after the finished ones: continue after the last.
    let w = ArchiveWriter::open(&spool, "s", test_options()).unwrap();
    let n = (w.resume_position().unwrap().unwrap().binlog.pos - 1000) / 100;
    drop(w);
    let more = spool_some(&spool, n + 1..=n + 8).await;
    up.upload_pending().await.unwrap();
    let uploaded = Index::load(&bucket, "s").unwrap();
    assert_eq!(uploaded.segments[0], pruned.segments[0]);
    assert_eq!(uploaded.segments.last(), more.segments.last());
    assert_eq!(
        read_after(&bucket, 9),
        (10..=local_records(&more)).collect::<Vec<_>>()
    );
    // A lost spool is seeded with the pruned index and resumes from the bucket's end.
    std::fs::remove_dir_all(&spool).unwrap();
    let mut up = Uploader::new(store, &spool, "s");
    up.reconcile().await.unwrap();
    let w = ArchiveWriter::open(&spool, "s", test_options()).unwrap();
    assert_eq!(
        w.resume_position().unwrap(),
        Some(more.segments.last().unwrap().last_pos().unwrap())
    );
}

fn local_records(index: &Index) -> u64 {
    index.segments.iter().map(|e| e.records).sum()
}
