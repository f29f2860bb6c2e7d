//! The definition store on Kafka (`[bus] kind = "kafka"`): one compacted topic,
//! `{topic_prefix}.config.definitions` (a server name has no `.`, so no change topic can take
//! this name), with one partition. Each change writes the whole store under one key, so the
//! topic's last message is the store, and compaction keeps it (as Kafka Connect's config topic
//! keeps connector configs). The coordinators of the same brokers share it: each reads the
//! latest at start and before each change (two changes made at the same moment on two
//! coordinators: the later write wins).
//!
//! Passwords in it are sealed as in the file store (`[api] secret_key_file`, the same key on
//! every coordinator). Clients run their blocking calls (metadata, watermarks, the read) off
//! the async runtime.

use std::time::{Duration, Instant};

use fleetsync_config::BusConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use super::DefsError;

/// The one key of the topic's messages.
const KEY: &str = "definitions";
/// Longest wait for the brokers (metadata, a read to the end, a write's acknowledgement).
const TIMEOUT: Duration = Duration::from_secs(30);
/// One poll of the reader.
const POLL: Duration = Duration::from_millis(200);

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
                .set("min.insync.replicas", &min_isr);
            let opts = AdminOptions::new().operation_timeout(Some(TIMEOUT));
            let created = admin
                .create_topics([&new], &opts)
                .await
                .map_err(|e| fail(format!("cannot create the topic: {e}")))?;
            for r in created {
                match r {
                    Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                    Err((_, code)) => return Err(fail(format!("cannot create the topic: {code}"))),
                }
            }
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

    /// The latest store written (`None`: nothing yet).
    pub async fn load(&self) -> Result<Option<String>, DefsError> {
        let (config, topic) = (self.config.clone(), self.topic.clone());
        tokio::task::spawn_blocking(move || read_last(&config, &topic))
            .await
            .map_err(|e| self.fail(e.to_string()))?
            .map_err(|m| self.fail(m))
    }

    /// Writes `text` as the store; returns once the brokers acknowledged it (`acks=all`).
    pub async fn save(&self, text: &str) -> Result<(), DefsError> {
        let record = FutureRecord::to(&self.topic).key(KEY).payload(text);
        self.producer
            .send(record, TIMEOUT)
            .await
            .map(|_| ())
            .map_err(|(e, _)| self.fail(format!("cannot write the store: {e}")))
    }
}

/// Reads the topic from its start to its end; the last value under [`KEY`].
fn read_last(config: &ClientConfig, topic: &str) -> Result<Option<String>, String> {
    let consumer: BaseConsumer = config
        .clone()
        .set("group.id", "fleetsync-definitions")
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| e.to_string())?;
    let (low, high) = consumer
        .fetch_watermarks(topic, 0, TIMEOUT)
        .map_err(|e| format!("cannot read the topic's offsets: {e}"))?;
    if high <= low {
        return Ok(None);
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .map_err(|e| e.to_string())?;
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + TIMEOUT;
    let mut last = None;
    while Instant::now() < deadline {
        match consumer.poll(POLL) {
            None => continue,
            Some(Err(e)) => return Err(format!("cannot read the topic: {e}")),
            Some(Ok(m)) => {
                if m.key() == Some(KEY.as_bytes()) {
                    last = m.payload().map(|p| String::from_utf8_lossy(p).into_owned());
                }
                if m.offset() >= high - 1 {
                    return Ok(last);
                }
            }
        }
    }
    Err(format!(
        "the topic was not read to its end within {TIMEOUT:?}"
    ))
}
