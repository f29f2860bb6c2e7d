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
