//! The Kafka feed: one consumer per (sync, target), manually assigned to the source's topic
//! partition, starting just after the offset stored in the target (or at the beginning).
//!
//! Offsets are not committed to Kafka for correctness: the offset of each applied
//! transaction's last message is stored in the target in the same transaction as its rows
//! (see the applier), which is what the next start seeks to. Kafka transactions are not used.
//! Messages are reassembled into transactions by their `fs-begin`/`fs-end` headers; a
//! transaction cut short (its producer died mid-way and published it again from the start) is
//! dropped when the next `fs-begin` arrives.

use fleetsync_config::TableFilter;
use fleetsync_proto::{codec, Transaction};
use futures_util::FutureExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::{retain_selected, Feed, FeedError, FeedItem};

pub const HEADER_BEGIN: &str = "fs-begin";
pub const HEADER_END: &str = "fs-end";

pub struct KafkaFeed {
    consumer: StreamConsumer,
    filter: TableFilter,
    current: Option<Transaction>,
    idle: bool,
}

impl KafkaFeed {
    /// `config` holds bootstrap servers and extra settings; `after` is the stored offset (the
    /// feed starts just after it) or `None` for the beginning of the partition.
    pub fn new(
        mut config: rdkafka::ClientConfig,
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
            .set("auto.offset.reset", "earliest")
            // Bound what librdkafka prefetches: the coordinator's memory stays bounded.
            .set("queued.max.messages.kbytes", "16384")
            .create()
            .map_err(|e| FeedError::Bus(format!("kafka consumer: {e}")))?;
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
        Ok(KafkaFeed {
            consumer,
            filter,
            current: None,
            idle: false,
        })
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
            let msg = next.map_err(|e| FeedError::Bus(format!("kafka receive: {e}")))?;
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
