//! Pruning the binlog archive behind the oldest backup (`[backup] archive_prune = true`).
//!
//! A replay from a backup needs the archive from the segment that holds the backup's binlog
//! position on (`Archive::scan` skips every segment that ends at or before it). So the
//! segments before that one, for the **oldest complete backup** of the archived server, are
//! needed by no backup and can go. [`watch_floor`] finds that backup once at start and then
//! every [`DEFAULT_PRUNE_EVERY`] and publishes its position (the "floor"); the one writer of
//! each index applies it, so no other process rewrites an index behind a writer's back:
//! * a local archive: the [`ArchiveWriter`](super::ArchiveWriter) itself, between two appends;
//! * an archive in a bucket: the [`Uploader`](super::Uploader), between two uploads.
//!
//! Rules (the pure part, [`prunable`] and [`orphans`], is unit-tested):
//! * Only complete backups of the server count, pinned ones included; backups in progress,
//!   leftovers of dead runs, unreadable manifests and backups without a binlog position do
//!   not. No complete backup of the server: nothing is pruned.
//! * The index's last entry is never pruned: it carries the sequence number the writer
//!   continues from and the position the archive resumes at.
//! * Crash safety: the shortened index is stored first (atomically), then the segment files
//!   or objects are deleted. A crash in between leaves *orphans*: segment files below the
//!   index's first entry, which the next pass deletes. A segment above the index's last
//!   entry is never touched (in a bucket: uploaded, its index entry not written yet).
//!
//! A pass that prunes logs one line (segments, bytes, the new first position) and adds to
//! [`METRIC_ARCHIVE_PRUNED_SEGMENTS`]. A failed pass is logged and retried at the next floor
//! (archiving goes on).

use std::time::Duration;

use fleetsync_mysql::archive::format::parse_name;
use fleetsync_proto::{BinlogPosition, Position};
use fleetsync_store::Store;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{Index, IndexEntry, METRIC_ARCHIVE_PRUNED_SEGMENTS};
use crate::backup::manifest::{self, Listed, Status};
use crate::backup::BackupError;

/// How often the backups are listed for pruning: a minute keeps the listing (a GET of every
/// manifest, in a bucket) cheap, and the archive shrinks soon after `backup prune`.
pub const DEFAULT_PRUNE_EVERY: Duration = Duration::from_secs(60);

/// The oldest complete backup of the archived server: the archive must reach back to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Floor {
    pub backup: String,
    pub position: Position,
}

/// What the writer of an index receives: the latest floor (`None`: prune nothing).
pub type FloorRx = watch::Receiver<Option<Floor>>;

/// How many leading entries of `segments` no replay from `floor` or later needs: those
/// before the first segment that ends after `floor`, never the last entry. Pure.
pub fn prunable(segments: &[IndexEntry], floor: &BinlogPosition) -> Result<usize, String> {
    let Some(keep_last) = segments.len().checked_sub(1) else {
        return Ok(0);
    };
    let mut needed = segments.len();
    for (i, e) in segments.iter().enumerate() {
        if e.last_pos()?.binlog > *floor {
            needed = i;
            break;
        }
    }
    Ok(needed.min(keep_last))
}

/// The finished-segment names among `names` whose sequence number is below the index's first
/// entry (left by a pass interrupted between the index and the deletes). Never one at or
/// above the first entry; none when the index is empty. Pure.
pub fn orphans<'a>(names: impl IntoIterator<Item = &'a str>, index: &Index) -> Vec<String> {
    let Some(first) = index.segments.first().map(|e| e.seq) else {
        return Vec::new();
    };
    names
        .into_iter()
        .filter(|n| matches!(parse_name(n), Some((seq, true)) if seq < first))
        .map(str::to_string)
        .collect()
}

/// The oldest (lowest binlog position) complete backup of `server` in `root` (pinned ones
/// included), if any.
pub async fn oldest_backup(root: &Store, server: &str) -> Result<Option<Floor>, BackupError> {
    let mut floor: Option<Floor> = None;
    for l in manifest::list(root).await? {
        let Listed::Done { manifest: m, .. } = l else {
            continue;
        };
        if m.status != Status::Complete || m.server != server {
            continue;
        }
        let Some(position) = m
            .position()
            .map_err(|e| BackupError::object(root, &format!("{}/manifest.json", m.id), e))?
        else {
            continue;
        };
        if floor
            .as_ref()
            .is_none_or(|f| position.binlog < f.position.binlog)
        {
            floor = Some(Floor {
                backup: m.id.clone(),
                position,
            });
        }
    }
    Ok(floor)
}

/// Publishes the floor of `server` (backups in `root`) into `tx` at once and then every
/// `every`, until cancelled. A listing that fails publishes `None` (prune nothing) and is
/// logged.
pub async fn watch_floor(
    root: Store,
    server: String,
    every: Duration,
    tx: watch::Sender<Option<Floor>>,
    cancel: CancellationToken,
) {
    loop {
        let floor = match oldest_backup(&root, &server).await {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(server, error = %e, "cannot list the backups to prune the binlog archive; pruning nothing this time");
                None
            }
        };
        // A new value every pass, so the writer runs a pass (orphans too) every `every`.
        tx.send_replace(floor);
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// The floor to prune to now: `Some` when a new one was published since the last call (or
/// `due`) and it names a backup.
pub(super) fn take_floor(rx: &mut FloorRx, due: &mut bool) -> Option<Floor> {
    let changed = rx.has_changed().unwrap_or(false);
    if !changed && !*due {
        return None;
    }
    let floor = rx.borrow_and_update().clone();
    // Before the first listing the value is `None`: stay due until one arrives.
    if changed || floor.is_some() {
        *due = false;
    }
    floor
}

/// The one place a pruning pass is logged and counted.
pub(super) fn report(
    server: &str,
    place: &str,
    floor: &Floor,
    gone: &[IndexEntry],
    orphans: usize,
    index: &Index,
) {
    let n = gone.len() + orphans;
    if n == 0 {
        return;
    }
    metrics::counter!(METRIC_ARCHIVE_PRUNED_SEGMENTS, "server" => server.to_string())
        .increment(n as u64);
    let bytes: u64 = gone.iter().map(|e| e.bytes).sum();
    let first = index.segments.first();
    tracing::info!(
        server,
        archive = place,
        segments = gone.len(),
        orphans,
        bytes,
        first_segment = first.map_or(0, |e| e.seq),
        first_position = first.map_or("", |e| e.start.as_str()),
        oldest_backup = %floor.backup,
        backup_position = %floor.position,
        "binlog archive pruned behind the oldest backup"
    );
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn entry(seq: u64, start: u64, last: u64) -> IndexEntry {
        IndexEntry {
            seq,
            file: fleetsync_mysql::archive::format::finished_name(seq),
            start: format!("binlog.000001:{start}"),
            first: format!("binlog.000001:{}", start + 1),
            last: format!("binlog.000001:{last}"),
            first_commit_ms: 0,
            last_commit_ms: 0,
            records: 1,
            transactions: 1,
            raw_bytes: 10,
            bytes: 5,
            sha256: String::new(),
        }
    }

    /// Segments 1..=4 covering (100, 200], (200, 300], (300, 400], (400, 500].
    fn four() -> Vec<IndexEntry> {
        (1..=4).map(|i| entry(i, i * 100, i * 100 + 100)).collect()
    }

    fn at(pos: u64) -> BinlogPosition {
        BinlogPosition::new("binlog.000001", pos)
    }

    #[test]
    fn keeps_the_segment_a_replay_from_the_floor_starts_in() {
        let segs = four();
        // Before the archive, or inside its first segment: nothing goes.
        assert_eq!(prunable(&segs, &at(50)).unwrap(), 0);
        assert_eq!(prunable(&segs, &at(150)).unwrap(), 0);
        // Exactly at a segment's end: that segment is not read by the replay, so it goes.
        assert_eq!(prunable(&segs, &at(200)).unwrap(), 1);
        assert_eq!(prunable(&segs, &at(201)).unwrap(), 1);
        assert_eq!(prunable(&segs, &at(399)).unwrap(), 2);
        // Past every finished segment (the floor is in the open one): all but the last.
        assert_eq!(prunable(&segs, &at(500)).unwrap(), 3);
        assert_eq!(prunable(&segs, &at(9999)).unwrap(), 3);
        // A later binlog file is after every position of an earlier one.
        assert_eq!(
            prunable(&segs, &BinlogPosition::new("binlog.000002", 4)).unwrap(),
            3
        );
        assert_eq!(prunable(&[], &at(9999)).unwrap(), 0);
        assert_eq!(prunable(&segs[..1], &at(9999)).unwrap(), 0);
        // What is kept still covers a replay from the floor: it starts at or before it.
        for pos in [50, 150, 200, 250, 300, 450, 500, 600] {
            let n = prunable(&segs, &at(pos)).unwrap();
            let first = segs[n].start_pos().unwrap().binlog;
            assert!(first <= at(pos) || n == 0, "floor {pos}: kept from {first}");
        }
        let mut bad = four();
        bad[0].last = "nonsense".into();
        assert!(prunable(&bad, &at(300)).is_err());
    }

    #[test]
    fn orphans_are_below_the_first_entry_only() {
        let mut index = Index::empty("s");
        index.segments = four()[2..].to_vec(); // 3 and 4 remain
        let names = [
            "seg-0000000001.zst",
            "seg-0000000002.zst",
            "seg-0000000003.zst",
            "seg-0000000004.zst",
            "seg-0000000005.zst", // uploaded, its index entry not written yet
            "seg-0000000002.open",
            "index.json",
            "seg-2.zst",
        ];
        assert_eq!(
            orphans(names, &index),
            vec!["seg-0000000001.zst", "seg-0000000002.zst"]
        );
        assert!(orphans(names, &Index::empty("s")).is_empty());
    }

    #[tokio::test]
    async fn a_floor_is_taken_once_per_publication() {
        let (tx, mut rx) = watch::channel(None);
        let mut due = true;
        // Nothing listed yet: nothing to do, still due.
        assert_eq!(take_floor(&mut rx, &mut due), None);
        assert!(due);
        let f = Floor {
            backup: "b1".into(),
            position: Position::new("binlog.000001", 300),
        };
        tx.send_replace(Some(f.clone()));
        assert_eq!(take_floor(&mut rx, &mut due), Some(f.clone()));
        assert_eq!(take_floor(&mut rx, &mut due), None);
        tx.send_replace(Some(f.clone()));
        assert_eq!(take_floor(&mut rx, &mut due), Some(f));
    }
}
