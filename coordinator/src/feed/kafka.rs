//! The Kafka feed: one consumer per (sync, target), manually assigned to the source's topic
//! partition, starting just after the offset stored in the target (or at the beginning).
//!
//! Offsets are not committed to Kafka for correctness: the offset of each applied
//! transaction's last message is stored in the target in the same transaction as its rows
//! (see the applier), which is what the next start seeks to. The agents publish in Kafka
//! transactions: the feed reads with `isolation.level = read_committed`, so an aborted batch
//! (a fenced zombie's, or a dead publisher's) is never seen. Messages are reassembled into
//! transactions by their `fs-begin`/`fs-end` headers; a transaction cut short (written by an
//! older, non-transactional agent that died mid-way) is dropped when the next `fs-begin`
//! arrives.
//!
//! Loss detection ([`Continuity`]): commit markers and aborted messages take offsets, so
//! offsets are no longer contiguous; every message carries `fs-seq` instead, consecutive
//! across Kafka transactions and takeovers. The feed starts *at* the stored offset (the last
//! applied message, not applied again) to learn the sequence number to expect next.

use fleetsync_config::{Redactor, TableFilter};
use fleetsync_proto::{codec, Transaction};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::FutureExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::{retain_selected, Feed, FeedError, FeedItem};

pub const HEADER_BEGIN: &str = "fs-begin";
pub const HEADER_END: &str = "fs-end";
pub const HEADER_SEQ: &str = "fs-seq";
/// The agent's "no position here" marker (no sync read the server for a while): skipped.
pub const HEADER_RESET: &str = "fs-reset";

pub const METRIC_CONSUMER_LAG: &str = "fleetsync_kafka_consumer_lag_messages";
/// How often the consumer lag is measured (a metadata round-trip to the broker).
const LAG_EVERY: Duration = Duration::from_secs(5);

pub struct KafkaFeed {
    consumer: Arc<StreamConsumer>,
    /// Offset of the next message to read, for the lag gauge.
    next_offset: Arc<AtomicI64>,
    topic: String,
    filter: TableFilter,
    current: Option<Transaction>,
    idle: bool,
    continuity: Continuity,
    /// The stored offset: its message is read for its `fs-seq` only (already applied).
    applied: Option<i64>,
}

/// Where the stream of one topic broke (see [`Continuity::check`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Broken {
    /// Messages without `fs-seq` (older agents, no Kafka transactions) must have contiguous
    /// offsets.
    Offset { expected: i64, found: i64 },
    /// `fs-seq` must go up by one from message to message.
    Seq { expected: u64, found: u64 },
    /// A message without `fs-seq` after numbered ones: an older agent, which no transaction
    /// fences, writes the topic.
    Unnumbered { offset: i64 },
}

/// Checks that no message is missing between two that were read. Pure: unit-tested.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Continuity {
    /// The offset the next message must have, for a message without `fs-seq`, and for the
    /// first message read (`None`: any).
    next_offset: Option<i64>,
    last_seq: Option<u64>,
}

impl Continuity {
    /// Starting at `first_offset`: the first message must be there.
    pub fn starting_at(first_offset: i64) -> Self {
        Continuity {
            next_offset: Some(first_offset),
            last_seq: None,
        }
    }

    /// The message at `offset`, numbered `seq` (its `fs-seq`), comes next.
    pub fn check(&mut self, offset: i64, seq: Option<u64>) -> Result<(), Broken> {
        let first = self.last_seq.is_none();
        match (seq, self.last_seq) {
            (Some(s), Some(l)) if s != l.wrapping_add(1) => {
                return Err(Broken::Seq {
                    expected: l.wrapping_add(1),
                    found: s,
                })
            }
            (None, Some(_)) => return Err(Broken::Unnumbered { offset }),
            _ => {}
        }
        // Offsets decide for unnumbered messages, and for where the first numbered one is.
        if seq.is_none() || first {
            if let Some(n) = self.next_offset {
                if offset != n {
                    return Err(Broken::Offset {
                        expected: n,
                        found: offset,
                    });
                }
            }
        }
        self.next_offset = Some(offset + 1);
        self.last_seq = seq;
        Ok(())
    }
}

impl KafkaFeed {
    /// `config` holds bootstrap servers and extra settings; `after` is the stored offset (the
    /// feed starts just after it) or `None` for the beginning of the partition. `redactor`
    /// keeps the settings' secrets out of errors.
    pub fn new(
        mut config: rdkafka::ClientConfig,
        redactor: &Redactor,
        group_id: &str,
        topic: &str,
        partition: i32,
        after: Option<i64>,
        filter: TableFilter,
    ) -> Result<Self, FeedError> {
        let consumer: StreamConsumer = config
            .set("group.id", group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // Never jump silently: an offset the broker no longer has (retention) is an error.
            .set("auto.offset.reset", "error")
            // Only committed Kafka transactions: a fenced or dead agent's are aborted.
            .set("isolation.level", "read_committed")
            // Answer fetches quickly when data arrives (lag), instead of the 500 ms default.
            .set("fetch.wait.max.ms", "50")
            // Bound what librdkafka prefetches: the coordinator's memory stays bounded.
            .set("queued.max.messages.kbytes", "16384")
            // Never create the topic with the broker's defaults: the agent creates it.
            .set("allow.auto.create.topics", "false")
            .create()
            .map_err(|e| FeedError::Bus(redactor.apply(&format!("kafka consumer: {e}"))))?;
        let mut tpl = TopicPartitionList::new();
        // At the stored offset itself: its message gives the `fs-seq` to expect next.
        let offset = match after {
            Some(o) => Offset::Offset(o),
            None => Offset::Beginning,
        };
        tpl.add_partition_offset(topic, partition, offset)
            .map_err(|e| FeedError::Bus(format!("kafka assign {topic}/{partition}: {e}")))?;
        consumer
            .assign(&tpl)
            .map_err(|e| FeedError::Bus(format!("kafka assign {topic}/{partition}: {e}")))?;
        let consumer = Arc::new(consumer);
        let next_offset = Arc::new(AtomicI64::new(after.map_or(0, |o| o + 1)));
        let gauge = metrics::gauge!(
            METRIC_CONSUMER_LAG,
            "topic" => topic.to_string(),
            "partition" => partition.to_string(),
            "group" => group_id.to_string()
        );
        tokio::spawn(measure_lag(
            Arc::downgrade(&consumer),
            topic.to_string(),
            partition,
            next_offset.clone(),
            gauge,
        ));
        Ok(KafkaFeed {
            consumer,
            next_offset,
            topic: topic.to_string(),
            filter,
            current: None,
            idle: false,
            continuity: Continuity::starting_at(after.unwrap_or(0)),
            applied: after,
        })
    }
}

impl KafkaFeed {
    /// Checks that nothing is missing before the message at `offset` numbered `seq`, and
    /// whether it is new (not the already applied message at the stored offset).
    /// (A function of the fields it needs: the message borrows the consumer meanwhile.)
    fn check_continuity(
        continuity: &mut Continuity,
        next_offset: &AtomicI64,
        topic: &str,
        applied: Option<i64>,
        (offset, seq): (i64, Option<u64>),
    ) -> Result<bool, FeedError> {
        let topic = topic.to_string();
        continuity.check(offset, seq).map_err(|b| match b {
            Broken::Offset { expected, found } => FeedError::Gap {
                topic: topic.clone(),
                expected,
                found: format!("offset {found} next"),
            },
            Broken::Seq { expected, found } => FeedError::SeqGap {
                topic: topic.clone(),
                expected: format!("fs-seq {expected}"),
                found: format!("fs-seq {found} at offset {offset}"),
            },
            Broken::Unnumbered { offset } => FeedError::SeqGap {
                topic: topic.clone(),
                expected: "a numbered message (fs-seq)".into(),
                found: format!("one without at offset {offset} (an older agent publishes to this topic: upgrade every agent of the server)"),
            },
        })?;
        next_offset.store(offset + 1, Ordering::Relaxed);
        Ok(applied.is_none_or(|a| offset > a))
    }

    fn receive_error(&self, e: rdkafka::error::KafkaError) -> FeedError {
        use rdkafka::error::{KafkaError, RDKafkaErrorCode};
        match e {
            KafkaError::MessageConsumption(RDKafkaErrorCode::OffsetOutOfRange) => FeedError::Gap {
                topic: self.topic.clone(),
                expected: self.next_offset.load(Ordering::Relaxed),
                found: "it out of range".into(),
            },
            e => FeedError::Bus(format!("kafka receive: {e}")),
        }
    }
}

/// Sets the lag gauge (high watermark minus the next offset to read) every [`LAG_EVERY`]
/// until the feed is dropped. The broker query blocks, so it runs on a blocking thread.
async fn measure_lag(
    consumer: Weak<StreamConsumer>,
    topic: String,
    partition: i32,
    next: Arc<AtomicI64>,
    gauge: metrics::Gauge,
) {
    loop {
        tokio::time::sleep(LAG_EVERY).await;
        let Some(c) = consumer.upgrade() else { return };
        let t = topic.clone();
        let high = tokio::task::spawn_blocking(move || {
            c.fetch_watermarks(&t, partition, Duration::from_secs(2))
                .map(|(_, h)| h)
        })
        .await;
        if let Ok(Ok(high)) = high {
            gauge.set((high - next.load(Ordering::Relaxed)).max(0) as f64);
        }
    }
}

/// The message's `fs-seq` header, if any.
fn seq_of(msg: &rdkafka::message::BorrowedMessage<'_>) -> Option<u64> {
    msg.headers()?
        .iter()
        .find(|h| h.key == HEADER_SEQ)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.parse().ok())
}

/// Handles one message; returns a transaction when it completes one.
fn take(
    current: &mut Option<Transaction>,
    filter: &TableFilter,
    msg: &rdkafka::message::BorrowedMessage<'_>,
) -> Result<Option<FeedItem>, FeedError> {
    {
        let offset = msg.offset();
        let (mut begin, mut end, mut reset) = (false, false, false);
        if let Some(h) = msg.headers() {
            for header in h.iter() {
                begin |= header.key == HEADER_BEGIN;
                end |= header.key == HEADER_END;
                reset |= header.key == HEADER_RESET;
            }
        }
        if reset {
            *current = None;
            return Ok(None);
        }
        let payload = msg.payload().unwrap_or_default();
        let part = codec::decode_transaction(payload).map_err(|e| FeedError::Decode {
            offset,
            message: e.to_string(),
        })?;
        if begin {
            if current.is_some() {
                tracing::debug!(
                    offset,
                    "dropping a transaction cut short by a producer restart"
                );
            }
            *current = Some(part);
        } else if let Some(cur) = current.as_mut() {
            cur.changes.extend(part.changes);
        } else {
            // Started in the middle of a transaction (retention cut it): skip to the next.
            return Ok(None);
        }
        if !end {
            return Ok(None);
        }
        let Some(mut txn) = current.take() else {
            return Ok(None);
        };
        retain_selected(&mut txn, filter);
        Ok(Some(FeedItem {
            txn,
            offset: Some(offset),
            partial: false,
        }))
    }
}

impl KafkaFeed {
    /// One received message: checked for continuity (a message already applied is skipped)
    /// and added to the transaction being reassembled; a completed transaction is returned.
    fn accept(
        &mut self,
        msg: &rdkafka::message::BorrowedMessage<'_>,
    ) -> Result<Option<FeedItem>, FeedError> {
        if !Self::check_continuity(
            &mut self.continuity,
            &self.next_offset,
            &self.topic,
            self.applied,
            (msg.offset(), seq_of(msg)),
        )? {
            return Ok(None);
        }
        take(&mut self.current, &self.filter, msg)
    }
}

impl Feed for KafkaFeed {
    async fn recv(&mut self) -> Result<Option<FeedItem>, FeedError> {
        // Messages borrow the consumer, not `self`, so each can be handled by `accept`.
        let consumer = self.consumer.clone();
        loop {
            let msg = consumer
                .recv()
                .await
                .map_err(|e| FeedError::Bus(format!("kafka receive: {e}")))?;
            self.idle = false;
            let item = self.accept(&msg)?;
            drop(msg);
            if item.is_some() {
                return Ok(item);
            }
        }
    }

    fn try_recv(&mut self) -> Result<Option<FeedItem>, FeedError> {
        let consumer = self.consumer.clone();
        loop {
            let Some(next) = consumer.recv().now_or_never() else {
                self.idle = true;
                return Ok(None);
            };
            let msg = next.map_err(|e| self.receive_error(e))?;
            let item = self.accept(&msg)?;
            drop(msg);
            if item.is_some() {
                return Ok(item);
            }
        }
    }

    fn is_idle(&self) -> bool {
        self.idle
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_messages_may_skip_offsets_but_not_numbers() {
        // Resumed at offset 10 (the last applied message, numbered 4); commit markers at 12
        // and 15 take offsets.
        let mut c = Continuity::starting_at(10);
        assert_eq!(c.check(10, Some(4)), Ok(()));
        assert_eq!(c.check(11, Some(5)), Ok(()));
        assert_eq!(c.check(13, Some(6)), Ok(()));
        assert_eq!(c.check(14, Some(7)), Ok(()));
        // Number 8 is missing: lost, whatever the offsets say.
        assert_eq!(
            c.check(16, Some(9)),
            Err(Broken::Seq {
                expected: 8,
                found: 9
            })
        );
    }

    #[test]
    fn a_repeated_number_is_refused() {
        let mut c = Continuity::starting_at(0);
        assert_eq!(c.check(0, Some(0)), Ok(()));
        assert_eq!(
            c.check(2, Some(0)),
            Err(Broken::Seq {
                expected: 1,
                found: 0
            })
        );
    }

    #[test]
    fn the_first_message_must_be_at_the_stored_offset() {
        let mut c = Continuity::starting_at(10);
        assert_eq!(
            c.check(12, Some(4)),
            Err(Broken::Offset {
                expected: 10,
                found: 12
            })
        );
    }

    #[test]
    fn unnumbered_messages_of_older_agents_need_contiguous_offsets() {
        let mut c = Continuity::starting_at(0);
        assert_eq!(c.check(0, None), Ok(()));
        assert_eq!(c.check(1, None), Ok(()));
        assert_eq!(
            c.check(3, None),
            Err(Broken::Offset {
                expected: 2,
                found: 3
            })
        );
        // Upgrade: the first numbered message follows the last unnumbered one at once.
        let mut c = Continuity::starting_at(0);
        assert_eq!(c.check(0, None), Ok(()));
        assert_eq!(c.check(1, Some(0)), Ok(()));
        assert_eq!(c.check(3, Some(1)), Ok(()));
        // An older agent writing again after the upgrade is refused.
        assert_eq!(c.check(4, None), Err(Broken::Unnumbered { offset: 4 }));
    }
}
