//! The definition store on Kafka (`[bus] kind = "kafka"`): one compacted topic,
//! `{topic_prefix}.config.definitions` (a server name has no `.`, so no change topic can take
//! this name), with one partition. Each change writes the whole store under one key, so the
//! topic's last applied message is the store, and compaction keeps it (as Kafka Connect's
//! config topic keeps connector configs).
//!
//! Every process of the fleet (coordinators, agents) follows the topic with a [`Reader`]: it
//! reads it from its start to its end when it opens, then live (one poll every [`POLL`]).
//!
//! Concurrent writers (optimistic concurrency; Kafka has no compare-and-set): each write
//! carries, in its header [`BASE_HEADER`], the offset of the applied write it was made from
//! (`-1`: none). Readers apply a write only when its base is the offset of the last write they
//! applied ([`Order::admit`]); a write made from an older state (another one landed in between)
//! is ignored by every reader, so nobody's view diverges, and its writer, which reads its own
//! write back, answers "conflict, retry" and writes the winning store again on top (so that
//! compaction, which keeps the last message of the key, keeps a write of the chain).
//! Messages without the header (older fleetsync) are applied as they come.
//!
//! Passwords in it are sealed as in the file store (`[api] secret_key_file`, the same key on
//! every coordinator). Clients run their blocking calls (metadata, watermarks, reads) off the
//! async runtime.

use std::time::Duration;

use fleetsync_config::BusConfig;
use rdkafka::admin::{AdminClient, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use super::DefsError;

/// The one key of the topic's messages.
const KEY: &str = "definitions";
/// Longest wait for the brokers (metadata, a read to the end, a write's acknowledgement).
pub(super) const TIMEOUT: Duration = Duration::from_secs(30);
/// One poll of the reader: how stale a process's view of the topic can be, at most (plus the
/// brokers' delivery), once a write is acknowledged.
pub const POLL: Duration = Duration::from_millis(200);
/// The header that carries a write's base offset (decimal).
const BASE_HEADER: &str = "fleetsync-base";
/// Compaction leaves a message at least this long (topic setting `min.compaction.lag.ms`), so
/// that a losing write's writer has time to write the winning store on top of it.
const COMPACTION_LAG_MS: &str = "3600000";

pub struct KafkaStore {
    topic: String,
    config: ClientConfig,
    producer: FutureProducer,
    redactor: fleetsync_config::Redactor,
}

impl KafkaStore {
    /// Connects and, when missing and `create`, creates the topic (compacted, one partition,
    /// the bus's replication settings). `None`: missing, and not to be created.
    pub async fn open(bus: &BusConfig, create: bool) -> Result<Option<KafkaStore>, DefsError> {
        let topic = format!("{}.config.definitions", bus.topic_prefix);
        let redactor = bus.redactor();
        let fail = |m: String| DefsError::Store {
            place: format!("kafka topic {topic}"),
            message: redactor.apply(&m),
        };
        let mut config = crate::kafka_topics::client_config(bus);
        config.set("allow.auto.create.topics", "false");
        let probe = config.clone();
        let t = topic.clone();
        let exists = tokio::task::spawn_blocking(move || -> Result<bool, String> {
            let consumer: BaseConsumer = probe.create().map_err(|e| e.to_string())?;
            let md = consumer
                .fetch_metadata(Some(&t), TIMEOUT)
                .map_err(|e| format!("cannot read the brokers' metadata: {e}"))?;
            Ok(md
                .topics()
                .iter()
                .any(|mt| mt.name() == t && mt.error().is_none() && !mt.partitions().is_empty()))
        })
        .await
        .map_err(|e| fail(e.to_string()))?
        .map_err(fail)?;
        if !exists && !create {
            return Ok(None);
        }
        if !exists {
            let admin: AdminClient<DefaultClientContext> =
                config.create().map_err(|e| fail(e.to_string()))?;
            let min_isr = bus.min_insync_replicas().to_string();
            let new = NewTopic::new(&topic, 1, TopicReplication::Fixed(bus.replication_factor))
                .set("cleanup.policy", "compact")
                .set("min.compaction.lag.ms", COMPACTION_LAG_MS)
                .set("min.insync.replicas", &min_isr);
            crate::kafka_topics::create_if_missing(&admin, &new, TIMEOUT)
                .await
                .map_err(fail)?;
            tokio::task::spawn_blocking(move || drop(admin));
            tracing::info!(topic = %topic, "created the definition store's topic");
        }
        let producer: FutureProducer = config
            .clone()
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .create()
            .map_err(|e| fail(e.to_string()))?;
        Ok(Some(KafkaStore {
            topic,
            config,
            producer,
            redactor,
        }))
    }

    pub fn place(&self) -> String {
        format!("kafka topic {}", self.topic)
    }

    fn fail(&self, m: String) -> DefsError {
        DefsError::Store {
            place: self.place(),
            message: self.redactor.apply(&m),
        }
    }

    /// A reader of the topic from its start (blocking calls: run it off the runtime).
    pub fn reader(&self) -> Result<Reader, DefsError> {
        Reader::new(&self.config, &self.topic).map_err(|m| self.fail(m))
    }

    /// The offset the next write will take (the topic's high watermark).
    pub async fn end(&self) -> Result<i64, DefsError> {
        let (config, topic) = (self.config.clone(), self.topic.clone());
        tokio::task::spawn_blocking(move || -> Result<i64, String> {
            let consumer: BaseConsumer = config.create().map_err(|e| e.to_string())?;
            let (_, high) = fleetsync_agent::publish::kafka::watermarks_when_ready(
                &consumer, &topic, 0, TIMEOUT,
            )
            .map_err(|e| format!("cannot read the topic's offsets: {e}"))?;
            Ok(high)
        })
        .await
        .map_err(|e| self.fail(e.to_string()))?
        .map_err(|m| self.fail(m))
    }

    /// Writes `text` as the store, made from the applied write at offset `base` (`-1`: none);
    /// returns its offset once the brokers acknowledged it (`acks=all`). Whether it took
    /// effect is for the readers to say ([`Order::admit`]).
    pub async fn save(&self, text: &str, base: i64) -> Result<i64, DefsError> {
        let base = base.to_string();
        let headers = OwnedHeaders::new().insert(Header {
            key: BASE_HEADER,
            value: Some(base.as_bytes()),
        });
        let record = FutureRecord::to(&self.topic)
            .key(KEY)
            .payload(text)
            .headers(headers);
        self.producer
            .send(record, TIMEOUT)
            .await
            .map(|d| d.offset)
            .map_err(|(e, _)| self.fail(format!("cannot write the store: {e}")))
    }
}

/// Which writes of the topic are applied: the chain of writes each made from the previous one.
///
/// A write whose base is older than the first offset read (compacted away) cannot be checked
/// against the chain directly; it is applied when its base is newer than the base of the last
/// applied write (it was made after that one: the loser of a race has the same base as the
/// winner). Pure: unit-tested below.
#[derive(Debug, Default, Clone)]
pub struct Order {
    first: Option<i64>,
    applied: Option<i64>,
    applied_base: Option<i64>,
}

impl Order {
    /// Whether the write at `offset` made from `base` (`None`: no header) is applied; if so,
    /// it becomes the last applied one.
    pub fn admit(&mut self, offset: i64, base: Option<i64>) -> bool {
        let first = *self.first.get_or_insert(offset);
        let ok = match base {
            None => true,
            Some(b) if Some(b) == self.applied => true,
            Some(b) => b < first && self.applied_base.is_none_or(|ab| b > ab),
        };
        if ok {
            self.applied = Some(offset);
            self.applied_base = base;
        }
        ok
    }

    /// The offset of the last applied write (`-1`: none): the base of the next write.
    pub fn applied(&self) -> i64 {
        self.applied.unwrap_or(-1)
    }
}

/// One message of the topic, as read.
pub struct Record {
    pub offset: i64,
    /// The store's text (`None`: a message without a value).
    pub text: Option<String>,
    /// Applied by every reader ([`Order::admit`]).
    pub applied: bool,
}

/// Reads the topic from its start, in order; each message is judged by [`Order`].
pub struct Reader {
    consumer: BaseConsumer,
    order: Order,
    topic: String,
}

impl Reader {
    fn new(config: &ClientConfig, topic: &str) -> Result<Reader, String> {
        let consumer: BaseConsumer = config
            .clone()
            .set("group.id", "fleetsync-definitions")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .create()
            .map_err(|e| e.to_string())?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Beginning)
            .map_err(|e| e.to_string())?;
        consumer.assign(&tpl).map_err(|e| e.to_string())?;
        Ok(Reader {
            consumer,
            order: Order::default(),
            topic: topic.to_string(),
        })
    }

    /// The topic's end (high watermark).
    pub fn end(&self) -> Result<i64, String> {
        fleetsync_agent::publish::kafka::watermarks_when_ready(
            &self.consumer,
            &self.topic,
            0,
            TIMEOUT,
        )
        .map(|(_, high)| high)
        .map_err(|e| format!("cannot read the topic's offsets: {e}"))
    }

    /// The next message, waiting up to [`POLL`] (`None`: none yet).
    pub fn poll(&mut self) -> Result<Option<Record>, String> {
        match self.consumer.poll(POLL) {
            None => Ok(None),
            Some(Err(e)) => Err(format!("cannot read the topic: {e}")),
            Some(Ok(m)) => {
                if m.key() != Some(KEY.as_bytes()) {
                    return Ok(Some(Record {
                        offset: m.offset(),
                        text: None,
                        applied: false,
                    }));
                }
                let base = m.headers().and_then(|h| {
                    h.iter()
                        .find(|h| h.key == BASE_HEADER)
                        .and_then(|h| h.value)
                        .and_then(|v| std::str::from_utf8(v).ok())
                        .and_then(|v| v.parse::<i64>().ok())
                });
                let applied = self.order.admit(m.offset(), base);
                Ok(Some(Record {
                    offset: m.offset(),
                    text: m.payload().map(|p| String::from_utf8_lossy(p).into_owned()),
                    applied,
                }))
            }
        }
    }

    /// The base of the next write.
    pub fn applied(&self) -> i64 {
        self.order.applied()
    }
}

#[cfg(test)]
mod tests {
    use super::Order;

    #[test]
    fn the_loser_of_a_race_is_ignored_by_every_reader() {
        // Writes at 0 (base -1), 1 (base 0) and 2 (base 0: raced with 1), 3 (base 1: the
        // loser's writer writing the winner's store again).
        let mut o = Order::default();
        assert!(o.admit(0, Some(-1)));
        assert!(o.admit(1, Some(0)));
        assert!(!o.admit(2, Some(0)));
        assert!(o.admit(3, Some(1)));
        assert_eq!(o.applied(), 3);
        // Two first writes racing: only the first one counts.
        let mut o = Order::default();
        assert!(o.admit(0, Some(-1)));
        assert!(!o.admit(1, Some(-1)));
        assert_eq!(o.applied(), 0);
    }

    #[test]
    fn after_compaction_the_same_writes_win() {
        // 1 and 2 raced from 0 (compacted away); 3 was written on top of 1.
        let mut o = Order::default();
        assert!(o.admit(1, Some(0)));
        assert!(!o.admit(2, Some(0)));
        assert!(o.admit(3, Some(1)));
        // Only the loser and the write on top of the winner are left.
        let mut o = Order::default();
        assert!(o.admit(2, Some(0)));
        assert!(o.admit(3, Some(1)));
        assert_eq!(o.applied(), 3);
        // Only the last one.
        let mut o = Order::default();
        assert!(o.admit(3, Some(1)));
        assert!(!o.admit(4, Some(1)));
        assert!(o.admit(5, Some(3)));
    }

    #[test]
    fn messages_without_a_base_are_applied() {
        let mut o = Order::default();
        assert!(o.admit(0, None));
        assert!(o.admit(1, None));
        assert!(o.admit(2, Some(1)));
        assert!(!o.admit(3, Some(1)));
    }
}
