//! The Kafka publisher.
//!
//! Topic layout: one topic per source server (`<topic_prefix>.<server>`), and all of a
//! server's messages on one partition, chosen by the origin. One message per row change, keyed
//! `origin/schema.table/primary-key` (the row's identity, for log compaction and outside
//! consumers); a transaction is the run of messages from one carrying the `fs-begin` header to
//! one carrying `fs-end` (a transaction without rows, e.g. DDL, a heartbeat or a snapshot
//! marker, is a single message with both). Whole transactions on one partition keep the
//! source's commit order; the price is that one source's stream is consumed serially (each
//! source has its own topic, so sources scale).
//!
//! Delivery: a transactional producer (`transactional.id = fleetsync-agent-<server>`, which
//! implies the idempotent producer; `acks=all`, neither overridable from `[bus.kafka]`), so
//! retries neither duplicate nor reorder; the topic itself is checked before the producer
//! starts (`min.insync.replicas`, no unclean leader election: see
//! `fleetsync_config::topic_policy`). Whole source transactions are grouped into Kafka
//! transactions (committed after [`TXN_LINGER`] or [`TXN_MAX_MESSAGES`], and when the source
//! goes idle), so a source transaction is visible to `read_committed` consumers entirely or
//! not at all. The resume position is not kept on disk: it is the last committed source
//! transaction in the topic itself, read back by [`super::tail`] after `init_transactions` —
//! which fences any older producer of the same server (KIP-98): a zombie publisher can no
//! longer commit, and its open transaction is aborted. Every message carries `fs-seq`, a
//! number continued across takeovers, by which consumers detect lost messages (offsets are
//! no longer contiguous: commit markers and aborted messages take offsets too).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fleetsync_config::{redacted_settings, Redactor};
use fleetsync_proto::{codec, Transaction};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;

use super::Publisher;
use crate::SourceError;

pub const HEADER_BEGIN: &str = "fs-begin";
pub const HEADER_END: &str = "fs-end";
/// The message's number in its server's stream: consecutive across Kafka transactions and
/// takeovers (the new publisher continues after the last committed one).
pub const HEADER_SEQ: &str = "fs-seq";
/// A message that only says "no position here": written when no sync reads the server any
/// more, so that the next sync of it starts with a snapshot (see [`publish_reset`]).
pub const HEADER_RESET: &str = "fs-reset";
pub const METRIC_KAFKA_MESSAGES: &str = "fleetsync_kafka_messages_total";
/// Times this agent found its producer fenced by another agent of the same server.
pub const METRIC_AGENT_FENCED: &str = "fleetsync_agent_fenced_total";
/// 1 while this agent publishes its server's binlog, 0 while it stands by.
pub const METRIC_AGENT_PUBLISHING: &str = "fleetsync_agent_publishing";

/// How long a Kafka transaction stays open collecting source transactions. Each commit costs
/// a round trip to the transaction coordinator and a marker per partition: 100 ms amortises
/// that over many small source transactions while adding at most 100 ms of latency.
pub const TXN_LINGER: Duration = Duration::from_millis(100);
/// A Kafka transaction is committed once it holds this many messages, whatever its age: bounds
/// the work lost (published again by the next publisher) when a publisher dies.
pub const TXN_MAX_MESSAGES: usize = 20_000;
/// How long `init_transactions` and `commit_transaction` may take (broker round trips; a
/// takeover waits here for the previous owner's transaction to be aborted).
const TXN_TIMEOUT: Duration = Duration::from_secs(60);
/// `transaction.timeout.ms`: the broker aborts a transaction left open this long by a dead
/// publisher (a standby's `init_transactions` aborts it at once). librdkafka requires it to be
/// at least `message.timeout.ms` (300 s, which lets a publisher ride out a broker outage), and
/// brokers accept up to `transaction.max.timeout.ms` (15 min by default).
const TXN_BROKER_TIMEOUT_MS: &str = "300000";

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
    fn producer_config(&self, transactional_id: &str) -> ClientConfig {
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
            .set("allow.auto.create.topics", "false")
            .set("transactional.id", transactional_id)
            .set("transaction.timeout.ms", TXN_BROKER_TIMEOUT_MS);
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

/// The transactional id of a server's publisher: every agent of one server uses the same, so
/// the one that starts publishing fences the others.
pub fn transactional_id(server: &str) -> String {
    format!("fleetsync-agent-{server}")
}

/// Whether a Kafka error says another producer with our transactional id took over.
pub fn is_fenced(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(C::Fenced | C::ProducerFenced | C::InvalidProducerEpoch)
    )
}

pub struct KafkaPublisher {
    producer: FutureProducer,
    topic: String,
    partition: i32,
    server: String,
    /// `fs-seq` of the next message.
    next_seq: u64,
    /// When the open Kafka transaction began (`None`: none open).
    open_since: Option<tokio::time::Instant>,
    open_messages: usize,
    /// Delivery reports of the open Kafka transaction, oldest first.
    deliveries: VecDeque<DeliveryFuture>,
    /// Set when the producer was fenced by another agent of the server (shared with the
    /// caller, which then stands by instead of retrying).
    fenced: Arc<AtomicBool>,
    messages: metrics::Counter,
    /// The Debezium-compatible JSON topic, when enabled.
    json_topic: Option<String>,
    /// Keeps secrets out of error messages.
    redactor: Redactor,
    /// Whether its messages carry Kafka Connect schemas.
    json_schemas: bool,
}

impl KafkaPublisher {
    /// A transactional producer for `server`, after `init_transactions`: from here on no
    /// older producer of the server can commit, and its open transaction is aborted.
    /// `next_seq` continues the topic's `fs-seq` (see [`super::tail`]).
    pub async fn new(
        settings: &KafkaSettings,
        topic: String,
        server: &str,
        fenced: Arc<AtomicBool>,
    ) -> Result<Self, SourceError> {
        let producer: FutureProducer = settings
            .producer_config(&transactional_id(server))
            .create()
            .map_err(|e| SourceError::NeedsOperator {
                server: server.to_string(),
                message: settings.redactor.apply(&format!("kafka producer: {e}")),
            })?;
        let init = producer.clone();
        let inited = tokio::task::spawn_blocking(move || {
            init.init_transactions(Timeout::After(TXN_TIMEOUT))
        })
        .await
        .map_err(|e| SourceError::Connection {
            server: server.to_string(),
            message: format!("kafka init_transactions: {e}"),
        })?;
        inited.map_err(|e| SourceError::Connection {
            server: server.to_string(),
            message: settings
                .redactor
                .apply(&format!("kafka init_transactions on {topic}: {e}")),
        })?;
        Ok(KafkaPublisher {
            producer,
            topic,
            partition: partition_for(server, 1),
            server: server.to_string(),
            next_seq: 0,
            open_since: None,
            open_messages: 0,
            deliveries: VecDeque::new(),
            fenced,
            messages: metrics::counter!(METRIC_KAFKA_MESSAGES, "server" => server.to_string()),
            json_topic: None,
            redactor: settings.redactor.clone(),
            json_schemas: settings.debezium_json_schemas,
        })
    }

    /// The `fs-seq` of the first message this publisher sends.
    pub fn with_next_seq(mut self, next_seq: u64) -> Self {
        self.next_seq = next_seq;
        self
    }

    /// Also publish every row change as Debezium-shaped JSON to `topic` (partitioned by key,
    /// as Debezium does), with a tombstone after each delete, in the same Kafka transactions.
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
    async fn publish_json(&mut self, txn: &Transaction) -> Result<(), SourceError> {
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
            let d = self.send_json(&topic, &key, value.as_deref()).await?;
            self.deliveries.push_back(d);
            self.open_messages += 1;
        }
        Ok(())
    }

    /// A Kafka error as a source error; a fencing error also marks the publisher fenced.
    fn kafka_error(&self, what: &str, e: rdkafka::error::KafkaError) -> SourceError {
        use rdkafka::producer::Producer;
        use rdkafka::types::RDKafkaErrorCode as C;
        // A fenced transactional producer may report the generic `_FATAL` on a produce;
        // librdkafka keeps the underlying cause as the client's fatal error.
        let fatal_fenced = e.rdkafka_error_code() == Some(C::Fatal)
            && matches!(
                self.producer.client().fatal_error(),
                Some((C::Fenced | C::ProducerFenced | C::InvalidProducerEpoch, _))
            );
        if is_fenced(&e) || fatal_fenced {
            self.fenced.store(true, Ordering::SeqCst);
        }
        self.error(what, e)
    }

    fn error(&self, what: &str, e: impl std::fmt::Display) -> SourceError {
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
            Err(_) => Err(self.error("delivery", "producer dropped the message")),
        }
    }

    /// Checks the delivery reports already in, without waiting: a failed one fails early.
    fn check_ready(&mut self) -> Result<(), SourceError> {
        use futures_util::FutureExt;
        while let Some(d) = self.deliveries.front_mut() {
            let Some(report) = d.now_or_never() else {
                return Ok(());
            };
            self.deliveries.pop_front();
            self.delivered(report)?;
        }
        Ok(())
    }

    /// Sends one message to the change topic, waiting for room in the producer queue.
    async fn send(
        &mut self,
        key: &[u8],
        payload: &[u8],
        begin: bool,
        end: bool,
    ) -> Result<(), SourceError> {
        let headers = headers(begin, end, self.next_seq);
        loop {
            let record = FutureRecord::to(&self.topic)
                .partition(self.partition)
                .key(key)
                .payload(payload)
                .headers(headers.clone());
            match self.producer.send_result(record) {
                Ok(f) => {
                    self.deliveries.push_back(f);
                    self.next_seq += 1;
                    self.open_messages += 1;
                    return Ok(());
                }
                Err((e, _)) if is_queue_full(&e) => {}
                Err((e, _)) => return Err(self.kafka_error("produce", e)),
            }
            self.make_room().await?;
        }
    }

    /// The producer queue is full: wait for the oldest delivery (or a moment, if none is
    /// ours) before trying again.
    async fn make_room(&mut self) -> Result<(), SourceError> {
        match self.deliveries.pop_front() {
            None => {
                tokio::time::sleep(Duration::from_millis(5)).await;
                Ok(())
            }
            Some(d) => {
                let report = d.await;
                self.delivered(report)
            }
        }
    }

    /// Opens a Kafka transaction unless one is open.
    fn begin(&mut self) -> Result<(), SourceError> {
        if self.open_since.is_none() {
            self.producer
                .begin_transaction()
                .map_err(|e| self.kafka_error("begin transaction", e))?;
            self.open_since = Some(tokio::time::Instant::now());
            self.open_messages = 0;
        }
        Ok(())
    }

    /// Commits the open Kafka transaction (off the async runtime: librdkafka's commit blocks
    /// until every message is delivered and the markers are written). On an error the
    /// transaction is not committed: the caller drops this publisher and the next one resumes
    /// from what the topic holds.
    pub async fn commit(&mut self) -> Result<(), SourceError> {
        if self.open_since.is_none() {
            return Ok(());
        }
        let producer = self.producer.clone();
        let committed = tokio::task::spawn_blocking(move || {
            producer.commit_transaction(Timeout::After(TXN_TIMEOUT))
        })
        .await
        .map_err(|e| self.error("commit", e))?;
        self.open_since = None;
        if let Err(e) = committed {
            return Err(self.kafka_error("commit", e));
        }
        while let Some(d) = self.deliveries.pop_front() {
            let report = d.await;
            self.delivered(report)?;
        }
        Ok(())
    }

    /// Publishes a reset marker (no payload, `fs-reset`) in a transaction of its own.
    async fn reset(&mut self) -> Result<(), SourceError> {
        self.begin()?;
        let seq = self.next_seq.to_string();
        let headers = OwnedHeaders::new_with_capacity(2)
            .insert(Header {
                key: HEADER_SEQ,
                value: Some(seq.as_str()),
            })
            .insert(Header {
                key: HEADER_RESET,
                value: Some("1"),
            });
        let record = FutureRecord::<[u8], [u8]>::to(&self.topic)
            .partition(self.partition)
            .key(self.server.as_bytes())
            .headers(headers);
        match self.producer.send_result(record) {
            Ok(f) => self.deliveries.push_back(f),
            Err((e, _)) => return Err(self.kafka_error("produce", e)),
        }
        self.next_seq += 1;
        self.commit().await
    }

    /// Commits what was published (shutdown, or the end of a stream).
    pub async fn flush(&mut self) -> Result<(), SourceError> {
        self.commit().await
    }
}

/// Marks `server`'s topic as holding no resume position (no sync reads the server any more):
/// the next publisher of it starts with a snapshot, as an agent without a checkpoint did.
/// Fences any publisher of the server still running (they are stopping anyway).
pub async fn publish_reset(
    settings: &KafkaSettings,
    topic: &str,
    server: &str,
) -> Result<(), SourceError> {
    let fenced = Arc::new(AtomicBool::new(false));
    let publisher = KafkaPublisher::new(settings, topic.to_string(), server, fenced).await?;
    let tail = super::tail::read_tail(settings, server, topic, partition_for(server, 1)).await?;
    if tail.complete && tail.resume.is_none() {
        return Ok(());
    }
    publisher.with_next_seq(tail.next_seq()).reset().await
}

fn is_queue_full(e: &rdkafka::error::KafkaError) -> bool {
    matches!(
        e,
        rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull)
    )
}

fn headers(begin: bool, end: bool, seq: u64) -> OwnedHeaders {
    let seq = seq.to_string();
    let mut h = OwnedHeaders::new_with_capacity(3).insert(Header {
        key: HEADER_SEQ,
        value: Some(seq.as_str()),
    });
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
        self.begin()?;
        let n = txn.changes.len();
        let before = self.open_messages;
        if n == 0 {
            let payload = codec::encode_transaction(&txn).map_err(|e| self.error("encode", e))?;
            let key = row_key(&txn, 0);
            self.send(&key, &payload, true, true).await?;
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
                    codec::encode_transaction(&part).map_err(|e| self.error("encode", e))?;
                let key = row_key(&txn, i);
                self.send(&key, &payload, i == 0, i + 1 == n).await?;
            }
        }
        self.publish_json(&txn).await?;
        self.messages
            .increment((self.open_messages - before) as u64);
        self.check_ready()?;
        let due = self.open_since.is_some_and(|t| t.elapsed() >= TXN_LINGER);
        if due || self.open_messages >= TXN_MAX_MESSAGES {
            self.commit().await?;
        }
        Ok(())
    }

    fn idle_deadline(&self) -> Option<tokio::time::Instant> {
        self.open_since.map(|t| t + TXN_LINGER)
    }

    async fn idle(&mut self) -> Result<(), SourceError> {
        self.commit().await
    }
}

impl Drop for KafkaPublisher {
    fn drop(&mut self) {
        // librdkafka's destructor flushes and can block for long: let a blocking thread take
        // it. A transaction still open is not committed: the broker aborts it (at once when
        // the next publisher of the server calls `init_transactions`).
        let producer = self.producer.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn_blocking(move || {
                producer.flush(Timeout::After(Duration::from_secs(2))).ok();
                drop(producer);
            });
        }
    }
}

/// A partition's (low, high) watermarks, retried until `timeout` while the brokers do not
/// know the partition yet: a topic created a moment ago (by this process or another one
/// starting at the same time) answers `UnknownPartition` for a short while. Blocking.
pub fn watermarks_when_ready<C: Consumer>(
    consumer: &C,
    topic: &str,
    partition: i32,
    timeout: Duration,
) -> Result<(i64, i64), KafkaError> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match consumer.fetch_watermarks(topic, partition, left.max(Duration::from_millis(500))) {
            Ok(w) => return Ok(w),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}
