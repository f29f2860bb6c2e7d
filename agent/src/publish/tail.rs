//! Where a Kafka agent resumes: read back from the tail of its own change topic.
//!
//! The topic is the agent's checkpoint (no state volume): after `init_transactions` (which
//! fences and aborts any older producer of the server), the last committed message ending a
//! source transaction (`fs-end`) carries that transaction's position, and the last committed
//! message carries the last `fs-seq`. Read with `isolation.level = read_committed`, so an
//! aborted batch (a zombie's, or one cut short by a crash) is not seen. Only the tail is read:
//! a window before the end, widened until it holds an `fs-end` (or reaches the beginning).
//!
//! The verdict:
//! * the last complete transaction is a streamed one or a finished snapshot: resume just
//!   after its position;
//! * it is a chunk of an unfinished snapshot: no position (the snapshot starts again, as with
//!   no checkpoint);
//! * it is followed by a reset marker (`fs-reset`: no sync read the server for a while): no
//!   position (the next sync of the server starts with a snapshot);
//! * the topic holds no complete transaction: no position (the caller may fall back to an
//!   older sled checkpoint, `--start-at`, or a snapshot).

use std::time::{Duration, Instant};

use fleetsync_proto::{codec, Position};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::kafka::{KafkaSettings, HEADER_END, HEADER_RESET, HEADER_SEQ};
use crate::SourceError;

/// Messages read in the first window before the end; widened ×16 while it holds no `fs-end`.
const FIRST_WINDOW: i64 = 1_000;
/// How long reading the tail may take in all (broker round trips; a large window).
const TAIL_TIMEOUT: Duration = Duration::from_secs(120);

/// What the tail of a change topic says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tail {
    /// Where to resume (just after this position); `None`: see the module doc.
    pub resume: Option<Position>,
    /// Whether the topic holds a complete committed transaction (the verdict is the topic's).
    pub complete: bool,
    /// The last committed message's `fs-seq` (`None`: none, or written by an older agent).
    pub last_seq: Option<u64>,
}

impl Tail {
    /// The `fs-seq` the next publisher starts at.
    pub fn next_seq(&self) -> u64 {
        self.last_seq.map_or(0, |s| s + 1)
    }
}

/// One message's part in the verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailMessage {
    pub seq: Option<u64>,
    /// For a message ending a transaction: its position, and whether resuming after it is
    /// allowed (not inside an unfinished snapshot).
    pub end: Option<(Position, bool)>,
    /// A reset marker (`fs-reset`): no position, the next publisher snapshots.
    pub reset: bool,
}

/// Folds the messages of a window (in offset order) into the verdict. Pure: unit-tested.
pub fn verdict(messages: &[TailMessage]) -> Tail {
    let mut tail = Tail::default();
    for m in messages {
        tail.last_seq = m.seq;
        if m.reset {
            tail.complete = true;
            tail.resume = None;
        }
        if let Some((p, resumable)) = &m.end {
            tail.complete = true;
            tail.resume = resumable.then(|| p.clone());
        }
    }
    tail
}

/// Reads the tail of `topic`/`partition` (blocking: call off the async runtime).
pub fn read_tail_blocking(
    settings: &KafkaSettings,
    server: &str,
    topic: &str,
    partition: i32,
) -> Result<Tail, SourceError> {
    let err = |what: &str, e: &dyn std::fmt::Display| SourceError::Connection {
        server: server.to_string(),
        message: settings
            .redactor
            .apply(&format!("kafka {what} on {topic}: {e}")),
    };
    let consumer: BaseConsumer = settings
        .client_config()
        .set("group.id", format!("fleetsync.agent.{server}.tail"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        .set("allow.auto.create.topics", "false")
        .create()
        .map_err(|e| err("tail consumer", &e))?;
    let deadline = Instant::now() + TAIL_TIMEOUT;
    let (low, high) =
        super::kafka::watermarks_when_ready(&consumer, topic, partition, Duration::from_secs(10))
            .map_err(|e| err("watermarks", &e))?;
    if high <= low {
        return Ok(Tail::default());
    }
    let mut window = FIRST_WINDOW;
    loop {
        let start = (high - window).max(low);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(start))
            .map_err(|e| err("assign", &e))?;
        consumer.assign(&tpl).map_err(|e| err("assign", &e))?;
        let mut messages = Vec::new();
        loop {
            if Instant::now() > deadline {
                return Err(err("reading the tail", &"timed out"));
            }
            match consumer.poll(Duration::from_millis(500)) {
                None => continue,
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => break,
                Some(Err(e)) => return Err(err("reading the tail", &e)),
                Some(Ok(msg)) => messages.push(
                    tail_message(&msg)
                        .map_err(|e| err(&format!("decoding offset {}", msg.offset()), &e))?,
                ),
            }
        }
        let tail = verdict(&messages);
        if tail.complete || start == low {
            return Ok(tail);
        }
        window = window.saturating_mul(16);
    }
}

/// The verdict's view of one message.
fn tail_message(msg: &rdkafka::message::BorrowedMessage<'_>) -> Result<TailMessage, String> {
    let (mut end, mut seq, mut reset) = (false, None, false);
    if let Some(h) = msg.headers() {
        for header in h.iter() {
            end |= header.key == HEADER_END;
            reset |= header.key == HEADER_RESET;
            if header.key == HEADER_SEQ {
                seq = header
                    .value
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .and_then(|v| v.parse::<u64>().ok());
            }
        }
    }
    let end = if end {
        let part = codec::decode_transaction(msg.payload().unwrap_or_default())
            .map_err(|e| e.to_string())?;
        let resumable = !part.snapshot || part.snapshot_done;
        Some((part.position, resumable))
    } else {
        None
    };
    Ok(TailMessage { seq, end, reset })
}

/// [`read_tail_blocking`] on a blocking thread.
pub async fn read_tail(
    settings: &KafkaSettings,
    server: &str,
    topic: &str,
    partition: i32,
) -> Result<Tail, SourceError> {
    let (settings, s, t) = (settings.clone(), server.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || read_tail_blocking(&settings, &s, &t, partition))
        .await
        .map_err(|e| SourceError::Connection {
            server: server.to_string(),
            message: format!("reading the tail of {topic}: {e}"),
        })?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(n: u64) -> Position {
        format!("binlog.000001:{n}").parse().expect("position")
    }

    fn msg(seq: u64, end: Option<(u64, bool)>) -> TailMessage {
        TailMessage {
            seq: Some(seq),
            end: end.map(|(p, r)| (pos(p), r)),
            reset: false,
        }
    }

    #[test]
    fn empty_window_has_no_verdict() {
        assert_eq!(verdict(&[]), Tail::default());
        assert_eq!(Tail::default().next_seq(), 0);
    }

    #[test]
    fn resumes_after_the_last_complete_transaction() {
        // Two transactions, then a third cut short (published by an older, non-transactional
        // agent that died mid-way): resume after the second; the sequence goes on after the
        // last message.
        let t = verdict(&[
            msg(7, Some((100, true))),
            msg(8, None),
            msg(9, Some((200, true))),
            msg(10, None),
        ]);
        assert_eq!(t.resume, Some(pos(200)));
        assert!(t.complete);
        assert_eq!(t.next_seq(), 11);
    }

    #[test]
    fn unfinished_snapshot_means_no_position() {
        let t = verdict(&[msg(0, Some((100, false))), msg(1, Some((100, false)))]);
        assert!(t.complete);
        assert_eq!(t.resume, None);
        assert_eq!(t.next_seq(), 2);
        // A finished snapshot is a position.
        let t = verdict(&[msg(0, Some((100, false))), msg(1, Some((100, true)))]);
        assert_eq!(t.resume, Some(pos(100)));
    }

    #[test]
    fn a_reset_marker_means_no_position_until_a_new_transaction() {
        let reset = TailMessage {
            seq: Some(3),
            end: None,
            reset: true,
        };
        let t = verdict(&[msg(2, Some((100, true))), reset.clone()]);
        assert!(t.complete);
        assert_eq!(t.resume, None);
        assert_eq!(t.next_seq(), 4);
        // The snapshot after it, finished, is a position again.
        let t = verdict(&[reset, msg(4, Some((300, false))), msg(5, Some((300, true)))]);
        assert_eq!(t.resume, Some(pos(300)));
    }

    #[test]
    fn messages_of_older_agents_have_no_sequence() {
        let t = verdict(&[TailMessage {
            seq: None,
            end: Some((pos(5), true)),
            reset: false,
        }]);
        assert_eq!(t.resume, Some(pos(5)));
        assert_eq!(t.last_seq, None);
        assert_eq!(t.next_seq(), 0);
    }
}
