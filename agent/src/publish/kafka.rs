//! The Kafka publisher.
//!
//! Topic layout: one topic per source server (`<topic_prefix>.<server>`), and all of a
//! server's messages on one partition, chosen by the origin. One message per row change, keyed
//! `origin/schema.table/primary-key` (the row's identity, for log compaction and outside
//! consumers); a transaction is the run of messages from one carrying the `fs-begin` header to
//! one carrying `fs-end` (a transaction without rows, e.g. DDL, a heartbeat or a snapshot
//! marker, is a single message with both). Whole transactions on one partition keep the
//! source's commit order and atomicity without Kafka transactions; the price is that one
//! source's stream is consumed serially (each source has its own topic, so sources scale).
//!
//! Delivery: an idempotent producer (`enable.idempotence`, `acks=all`, neither overridable
//! from `[bus.kafka]`), so retries neither duplicate nor reorder; the topic itself is checked
//! before the producer starts (`min.insync.replicas`, no unclean leader election: see
//! `fleetsync_config::topic_policy`). The agent's checkpoint moves to a transaction's position only when
//! every message of it, and of every earlier transaction, has a successful delivery report.
//! After a crash the agent resumes from its checkpoint and may publish transactions again;
//! consumers drop those by source position.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use fleetsync_config::{redacted_settings, Redactor};
use fleetsync_proto::{codec, Position, Transaction};
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;

use super::Publisher;
use crate::checkpoint::CheckpointStore;
use crate::SourceError;

pub const HEADER_BEGIN: &str = "fs-begin";
pub const HEADER_END: &str = "fs-end";
pub const METRIC_KAFKA_MESSAGES: &str = "fleetsync_kafka_messages_total";

/// Messages awaiting delivery reports before `publish` waits for the oldest: bounds memory.
const MAX_IN_FLIGHT_MESSAGES: usize = 50_000;
/// How long shutdown waits for outstanding deliveries.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// Connection settings for producers and consumers.
#[derive(Clone)]
pub struct KafkaSettings {
    pub brokers: String,
    pub compression: String,
    /// Extra librdkafka properties (`[bus.kafka]` and the SASL password): may hold secrets.
    pub extra: BTreeMap<String, String>,
    /// Scrubs those secrets out of error messages.
    pub redactor: Redactor,
    /// The Debezium JSON topic's messages carry Kafka Connect schemas
    /// (`[bus] debezium_json_schemas`; see `codec::record_to_connect_json`).
    pub debezium_json_schemas: bool,
}

impl std::fmt::Debug for KafkaSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSettings")
            .field("brokers", &self.brokers)
            .field("compression", &self.compression)
            .field("extra", &redacted_settings(&self.extra))
            .field("debezium_json_schemas", &self.debezium_json_schemas)
            .finish_non_exhaustive()
    }
}

impl KafkaSettings {
    /// The settings `[bus]` gives (brokers, compression, `[bus.kafka]` with the SASL password).
    pub fn from_bus(bus: &fleetsync_config::BusConfig) -> KafkaSettings {
        KafkaSettings {
            brokers: bus.brokers.clone().unwrap_or_default(),
            compression: bus.compression.clone(),
            extra: bus.client_settings(),
            redactor: bus.redactor(),
            debezium_json_schemas: bus.debezium_json_schemas,
        }
    }

    pub fn client_config(&self) -> ClientConfig {
        self.over(ClientConfig::new())
    }

    /// `base` with the brokers and `[bus.kafka]` set on top (overriding what `base` tunes).
    fn over(&self, mut c: ClientConfig) -> ClientConfig {
        c.set("bootstrap.servers", &self.brokers);
        for (k, v) in &self.extra {
            c.set(k, v);
        }
        c
    }

    /// The producer's config: fleetsync's tuning (which `[bus.kafka]` may override), then the
    /// settings delivery depends on, which it may not (the config rejects them there).
    fn producer_config(&self) -> ClientConfig {
        let mut tuning = ClientConfig::new();
        tuning
            .set("linger.ms", "5")
            .set("message.timeout.ms", "300000")
            .set("queue.buffering.max.messages", "200000");
        let mut c = self.over(tuning);
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", &self.compression)
            // A deleted topic must not come back with the broker's defaults: the agent
            // creates its topics with explicit settings at start.
            .set("allow.auto.create.topics", "false");
        c
    }
}

/// The partition a server's messages go to: stable across releases (FNV-1a of the name).
pub fn partition_for(server: &str, partitions: i32) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in server.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    (h % partitions.max(1) as u32) as i32
}

struct InFlight {
    position: Position,
    /// Whether acknowledging this transaction may move the checkpoint (not mid-snapshot).
    checkpoint: bool,
    /// Outstanding delivery reports, oldest first.
    deliveries: VecDeque<DeliveryFuture>,
}

pub struct KafkaPublisher {
    producer: FutureProducer,
    topic: String,
    partition: i32,
    server: String,
    checkpoints: CheckpointStore,
    checkpoint_key: String,
    in_flight: VecDeque<InFlight>,
    in_flight_messages: usize,
    messages: metrics::Counter,
    /// The Debezium-compatible JSON topic, when enabled.
    json_topic: Option<String>,
    /// Keeps secrets out of error messages.
    redactor: Redactor,
    /// Whether its messages carry Kafka Connect schemas.
    json_schemas: bool,
}

impl KafkaPublisher {
    pub fn new(
        settings: &KafkaSettings,
        topic: String,
        server: &str,
        checkpoints: CheckpointStore,
        checkpoint_key: String,
    ) -> Result<Self, SourceError> {
        let producer: FutureProducer =
            settings
                .producer_config()
                .create()
                .map_err(|e| SourceError::NeedsOperator {
                    server: server.to_string(),
                    message: settings.redactor.apply(&format!("kafka producer: {e}")),
                })?;
        Ok(KafkaPublisher {
            producer,
            topic,
            partition: partition_for(server, 1),
            server: server.to_string(),
            checkpoints,
            checkpoint_key,
            in_flight: VecDeque::new(),
            in_flight_messages: 0,
            messages: metrics::counter!(METRIC_KAFKA_MESSAGES, "server" => server.to_string()),
            json_topic: None,
            redactor: settings.redactor.clone(),
            json_schemas: settings.debezium_json_schemas,
        })
    }

    /// Also publish every row change as Debezium-shaped JSON to `topic` (partitioned by key,
    /// as Debezium does), with a tombstone after each delete. Its deliveries count for the
    /// checkpoint like the main topic's.
    pub fn with_json_topic(mut self, topic: Option<String>) -> Self {
        self.json_topic = topic;
        self
    }

    /// Sends one JSON message (key-partitioned), waiting for room when the queue is full.
    async fn send_json(
        &mut self,
        topic: &str,
        key: &[u8],
        payload: Option<&[u8]>,
    ) -> Result<DeliveryFuture, SourceError> {
        loop {
            let mut record = FutureRecord::<[u8], [u8]>::to(topic).key(key);
            if let Some(p) = payload {
                record = record.payload(p);
            }
            match self.producer.send_result(record) {
                Ok(f) => return Ok(f),
                Err((e, _)) if is_queue_full(&e) => {}
                Err((e, _)) => return Err(self.kafka_error("produce", e)),
            }
            self.make_room().await?;
        }
    }

    /// The JSON stream's messages for `txn`: envelope per row, tombstone after deletes.
    async fn publish_json(
        &mut self,
        txn: &Transaction,
        deliveries: &mut VecDeque<DeliveryFuture>,
    ) -> Result<(), SourceError> {
        let Some(topic) = self.json_topic.clone() else {
            return Ok(());
        };
        let mut messages: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
        for r in txn.records() {
            // Tombstones after deletes; a key change as delete + create (as Debezium sends it).
            for (key, value) in codec::debezium_messages(&r, self.json_schemas) {
                let value = value.map(|v| v.to_string().into_bytes());
                messages.push((key.to_string().into_bytes(), value));
            }
        }
        for (key, value) in messages {
            deliveries.push_back(self.send_json(&topic, &key, value.as_deref()).await?);
        }
        Ok(())
    }

    fn kafka_error(&self, what: &str, e: impl std::fmt::Display) -> SourceError {
        SourceError::Connection {
            server: self.server.clone(),
            message: self
                .redactor
                .apply(&format!("kafka {what} on {}: {e}", self.topic)),
        }
    }

    fn delivered<E>(
        &self,
        report: Result<rdkafka::producer::future_producer::OwnedDeliveryResult, E>,
    ) -> Result<(), SourceError> {
        match report {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((e, _))) => Err(self.kafka_error("delivery failed", e)),
            Err(_) => Err(self.kafka_error("delivery", "producer dropped the message")),
        }
    }

    fn checkpoint(&self, t: &InFlight) -> Result<(), SourceError> {
        if t.checkpoint {
            self.checkpoints
                .put_key(&self.checkpoint_key, &t.position)
                .map_err(|e| SourceError::NeedsOperator {
                    server: self.server.clone(),
                    message: e.to_string(),
                })?;
        }
        Ok(())
    }

    /// Checkpoints the transactions whose deliveries have all been reported, without waiting.
    fn ack_ready(&mut self) -> Result<(), SourceError> {
        use futures_util::FutureExt;
        loop {
            let Some(front) = self.in_flight.front_mut() else {
                return Ok(());
            };
            let Some(d) = front.deliveries.front_mut() else {
                if let Some(t) = self.in_flight.pop_front() {
                    self.checkpoint(&t)?;
                }
                continue;
            };
            let Some(report) = d.now_or_never() else {
                return Ok(());
            };
            front.deliveries.pop_front();
            self.in_flight_messages -= 1;
            self.delivered(report)?;
        }
    }

    /// Awaits the oldest in-flight transaction's deliveries and checkpoints it.
    async fn ack_oldest(&mut self) -> Result<(), SourceError> {
        let Some(mut t) = self.in_flight.pop_front() else {
            return Ok(());
        };
        self.in_flight_messages -= t.deliveries.len();
        for d in t.deliveries.iter_mut() {
            let report = d.await;
            self.delivered(report)?;
        }
        self.checkpoint(&t)
    }

    /// Sends one message, waiting for room in the producer queue when it is full.
    async fn send(
        &mut self,
        key: &[u8],
        payload: &[u8],
        headers: OwnedHeaders,
    ) -> Result<DeliveryFuture, SourceError> {
        loop {
            let record = FutureRecord::to(&self.topic)
                .partition(self.partition)
                .key(key)
                .payload(payload)
                .headers(headers.clone());
            match self.producer.send_result(record) {
                Ok(f) => return Ok(f),
                Err((e, _)) if is_queue_full(&e) => {}
                Err((e, _)) => return Err(self.kafka_error("produce", e)),
            }
            self.make_room().await?;
        }
    }

    /// The producer queue is full: wait for the oldest deliveries (or a moment, if none are
    /// ours) before trying again.
    async fn make_room(&mut self) -> Result<(), SourceError> {
        if self.in_flight.is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
            Ok(())
        } else {
            self.ack_oldest().await
        }
    }

    /// Waits for every outstanding delivery (off the async runtime: librdkafka's flush
    /// blocks) and checkpoints what was delivered.
    pub async fn flush(&mut self) -> Result<(), SourceError> {
        let producer = self.producer.clone();
        let _ = tokio::task::spawn_blocking(move || producer.flush(Timeout::After(FLUSH_TIMEOUT)))
            .await;
        while !self.in_flight.is_empty() {
            self.ack_oldest().await?;
        }
        Ok(())
    }
}

fn is_queue_full(e: &rdkafka::error::KafkaError) -> bool {
    matches!(
        e,
        rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull)
    )
}

fn headers(begin: bool, end: bool) -> OwnedHeaders {
    let mut h = OwnedHeaders::new_with_capacity(2);
    if begin {
        h = h.insert(Header {
            key: HEADER_BEGIN,
            value: Some("1"),
        });
    }
    if end {
        h = h.insert(Header {
            key: HEADER_END,
            value: Some("1"),
        });
    }
    h
}

/// `origin/schema.table/key-json` for row `i`, `origin` for a transaction without rows.
/// Constant time per row (a scan from the first row made 50k-row transactions quadratic).
fn row_key(txn: &Transaction, i: usize) -> Vec<u8> {
    match txn.record(i) {
        Some(r) => {
            let key = codec::record_key_json(&r);
            format!(
                "{}/{}.{}/{}",
                txn.origin.name, r.table.schema, r.table.table, key
            )
            .into_bytes()
        }
        None => txn.origin.name.clone().into_bytes(),
    }
}

impl Publisher for KafkaPublisher {
    async fn publish(&mut self, txn: Transaction) -> Result<(), SourceError> {
        let checkpoint = !txn.snapshot || txn.snapshot_done;
        let n = txn.changes.len();
        let mut deliveries = VecDeque::with_capacity(n.max(1));
        if n == 0 {
            let payload =
                codec::encode_transaction(&txn).map_err(|e| self.kafka_error("encode", e))?;
            let key = row_key(&txn, 0);
            deliveries.push_back(self.send(&key, &payload, headers(true, true)).await?);
        } else {
            // The first message carries the transaction's table schemas and DDL; the others
            // only their row, referring to those tables by index.
            let mut part = Transaction {
                changes: Vec::with_capacity(1),
                ..txn.clone()
            };
            for (i, change) in txn.changes.iter().enumerate() {
                if i == 1 {
                    part.tables = Vec::new();
                    part.ddl = None;
                }
                part.changes.clear();
                part.changes.push(change.clone());
                let payload =
                    codec::encode_transaction(&part).map_err(|e| self.kafka_error("encode", e))?;
                let key = row_key(&txn, i);
                deliveries.push_back(
                    self.send(&key, &payload, headers(i == 0, i + 1 == n))
                        .await?,
                );
            }
        }
        self.publish_json(&txn, &mut deliveries).await?;
        self.messages.increment(deliveries.len() as u64);
        self.in_flight_messages += deliveries.len();
        self.in_flight.push_back(InFlight {
            position: txn.position.clone(),
            checkpoint,
            deliveries,
        });
        while self.in_flight_messages > MAX_IN_FLIGHT_MESSAGES {
            self.ack_oldest().await?;
        }
        self.ack_ready()
    }
}

impl Drop for KafkaPublisher {
    fn drop(&mut self) {
        // librdkafka's destructor flushes and can block for long: let a blocking thread take it.
        let producer = self.producer.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn_blocking(move || {
                producer.flush(Timeout::After(Duration::from_secs(2))).ok();
                drop(producer);
            });
        }
    }
}
