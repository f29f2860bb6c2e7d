//! The Kafka feed: one consumer per (sync, target), manually assigned to the source's topic
//! partition, starting just after the offset stored in the target (or at the beginning).
//!
//! Offsets are not committed to Kafka for correctness: the offset of each applied
//! transaction's last message is stored in the target in the same transaction as its rows
//! (see the applier), which is what the next start seeks to. Kafka transactions are not used.
//! Messages are reassembled into transactions by their `fs-begin`/`fs-end` headers; a
//! transaction cut short (its producer died mid-way and published it again from the start) is
//! dropped when the next `fs-begin` arrives.

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
            // Answer fetches quickly when data arrives (lag), instead of the 500 ms default.
            .set("fetch.wait.max.ms", "50")
            // Bound what librdkafka prefetches: the coordinator's memory stays bounded.
            .set("queued.max.messages.kbytes", "16384")
            // Never create the topic with the broker's defaults: the agent creates it.
            .set("allow.auto.create.topics", "false")
            .create()
            .map_err(|e| FeedError::Bus(redactor.apply(&format!("kafka consumer: {e}"))))?;
        let mut tpl = TopicPartitionList::new();
        let offset = match after {
            Some(o) => Offset::Offset(o + 1),
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
        })
    }
}

impl KafkaFeed {
    /// Offsets of a partition we write are contiguous (no compaction, no Kafka transactions):
    /// anything else means messages were lost, and applying on would lose changes silently.
    fn check_contiguous(&self, offset: i64) -> Result<(), FeedError> {
        let expected = self.next_offset.load(Ordering::Relaxed);
        if offset != expected {
            return Err(FeedError::Gap {
                topic: self.topic.clone(),
                expected,
                found: format!("offset {offset} next"),
            });
        }
        self.next_offset.store(offset + 1, Ordering::Relaxed);
        Ok(())
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

/// Handles one message; returns a transaction when it completes one.
fn take(
    current: &mut Option<Transaction>,
    filter: &TableFilter,
    msg: &rdkafka::message::BorrowedMessage<'_>,
) -> Result<Option<FeedItem>, FeedError> {
    {
        let offset = msg.offset();
        let (mut begin, mut end) = (false, false);
        if let Some(h) = msg.headers() {
            for header in h.iter() {
                begin |= header.key == HEADER_BEGIN;
                end |= header.key == HEADER_END;
            }
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

impl Feed for KafkaFeed {
    async fn recv(&mut self) -> Result<Option<FeedItem>, FeedError> {
        loop {
            let msg = self
                .consumer
                .recv()
                .await
                .map_err(|e| FeedError::Bus(format!("kafka receive: {e}")))?;
            self.idle = false;
            self.check_contiguous(msg.offset())?;
            let item = take(&mut self.current, &self.filter, &msg)?;
            drop(msg);
            if item.is_some() {
                return Ok(item);
            }
        }
    }

    fn try_recv(&mut self) -> Result<Option<FeedItem>, FeedError> {
        loop {
            let Some(next) = self.consumer.recv().now_or_never() else {
                self.idle = true;
                return Ok(None);
            };
            let msg = next.map_err(|e| self.receive_error(e))?;
            self.check_contiguous(msg.offset())?;
            let item = take(&mut self.current, &self.filter, &msg)?;
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
