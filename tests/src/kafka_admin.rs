//! Questions and orders for any Kafka broker, by bootstrap address, through librdkafka (the
//! client fleetsync itself uses): the brokers the cluster reports, a partition's leader and
//! in-sync replicas, whether a topic exists, high watermarks, topic creation with settings, and
//! a small producer.
//!
//! librdkafka calls block (and a client's destructor can block for seconds), so every call
//! runs on tokio's blocking pool with a fresh client that is dropped there too.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

/// How long one metadata or watermark request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A topic to create: name, partitions, replication factor and topic-level settings
/// (`retention.ms`, `min.insync.replicas`, ...).
#[derive(Debug, Clone)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub replication: i32,
    pub configs: Vec<(String, String)>,
}

impl TopicSpec {
    pub fn new(name: &str, partitions: i32, replication: i32) -> Self {
        TopicSpec {
            name: name.to_string(),
            partitions,
            replication,
            configs: Vec::new(),
        }
    }

    pub fn config(mut self, key: &str, value: &str) -> Self {
        self.configs.push((key.to_string(), value.to_string()));
        self
    }
}

/// A partition as the cluster's metadata describes it (broker ids; leader -1 when none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionState {
    pub leader: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

fn client_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        // A dead node in the bootstrap list must not hold a request up for long.
        .set("socket.connection.setup.timeout.ms", "3000")
        .set("log_level", "3");
    c
}

/// Runs a blocking librdkafka call off the async runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| anyhow!("Kafka client task failed: {e}"))?
}

/// The ids of the brokers the cluster's metadata lists (registered and not fenced), sorted;
/// an error when no answer comes within `timeout`.
pub async fn broker_ids(bootstrap: &str, timeout: Duration) -> Result<Vec<i32>> {
    let bootstrap = bootstrap.to_string();
    blocking(move || {
        let consumer: BaseConsumer = client_config(&bootstrap).create()?;
        let md = consumer
            .fetch_metadata(None, timeout)
            .with_context(|| format!("metadata from {bootstrap}"))?;
        let mut ids: Vec<i32> = md.brokers().iter().map(|b| b.id()).collect();
        ids.sort_unstable();
        Ok(ids)
    })
    .await
}

/// Leader, replicas and ISR of `topic`'s `partition`.
pub async fn partition_state(
    bootstrap: &str,
    topic: &str,
    partition: i32,
) -> Result<PartitionState> {
    let (bootstrap, topic) = (bootstrap.to_string(), topic.to_string());
    blocking(move || {
        let consumer: BaseConsumer = client_config(&bootstrap).create()?;
        let md = consumer
            .fetch_metadata(Some(&topic), REQUEST_TIMEOUT)
            .with_context(|| format!("metadata of {topic} from {bootstrap}"))?;
        let t = md
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .with_context(|| format!("no metadata for topic {topic}"))?;
        if let Some(e) = t.error() {
            bail!("topic {topic}: {:?}", RDKafkaErrorCode::from(e));
        }
        let p = t
            .partitions()
            .iter()
            .find(|p| p.id() == partition)
            .with_context(|| format!("{topic} has no partition {partition}"))?;
        let mut isr = p.isr().to_vec();
        isr.sort_unstable();
        let mut replicas = p.replicas().to_vec();
        replicas.sort_unstable();
        Ok(PartitionState {
            leader: p.leader(),
            replicas,
            isr,
        })
    })
    .await
}

/// Whether `topic` exists (with at least one partition). The question itself never creates
/// it, also on a broker that auto-creates topics (`allow.auto.create.topics=false`).
pub async fn topic_exists(bootstrap: &str, topic: &str) -> Result<bool> {
    let (bootstrap, topic) = (bootstrap.to_string(), topic.to_string());
    blocking(move || {
        let consumer: BaseConsumer = client_config(&bootstrap)
            .set("allow.auto.create.topics", "false")
            .create()?;
        let md = consumer
            .fetch_metadata(Some(&topic), REQUEST_TIMEOUT)
            .with_context(|| format!("metadata of {topic} from {bootstrap}"))?;
        Ok(md
            .topics()
            .iter()
            .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty()))
    })
    .await
}

/// The high watermark (the next offset to be written, i.e. the count of messages when
/// nothing was deleted) of `topic`'s `partition`, as its leader reports it.
pub async fn high_watermark(bootstrap: &str, topic: &str, partition: i32) -> Result<i64> {
    let (bootstrap, topic) = (bootstrap.to_string(), topic.to_string());
    blocking(move || {
        let consumer: BaseConsumer = client_config(&bootstrap).create()?;
        let (_, high) = consumer
            .fetch_watermarks(&topic, partition, REQUEST_TIMEOUT)
            .with_context(|| format!("watermarks of {topic}/{partition} from {bootstrap}"))?;
        Ok(high)
    })
    .await
}

/// Creates the topics; one that exists already is an error unless `exist_ok`.
pub async fn create_topics(bootstrap: &str, topics: &[TopicSpec], exist_ok: bool) -> Result<()> {
    if topics.is_empty() {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> = client_config(bootstrap)
        .create()
        .context("creating a Kafka admin client")?;
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| {
            let mut n = NewTopic::new(
                &t.name,
                t.partitions,
                TopicReplication::Fixed(t.replication),
            );
            for (k, v) in &t.configs {
                n = n.set(k, v);
            }
            n
        })
        .collect();
    let opts = AdminOptions::new()
        .operation_timeout(Some(REQUEST_TIMEOUT))
        .request_timeout(Some(REQUEST_TIMEOUT));
    let result = async {
        let results = admin
            .create_topics(new.iter(), &opts)
            .await
            .context("CreateTopics")?;
        for r in results {
            match r {
                Ok(_) => {}
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) if exist_ok => {}
                Err((t, code)) => bail!("creating topic {t}: {code}"),
            }
        }
        anyhow::Ok(())
    }
    .await;
    drop(new);
    let _ = tokio::task::spawn_blocking(move || drop(admin)).await;
    result
}

/// Produces `payloads` to partition 0 of `topic` with `acks=all` and waits for every
/// delivery (for harness self-tests: fleetsync's own producer is what the e2e tests exercise).
pub async fn produce(bootstrap: &str, topic: &str, payloads: Vec<Vec<u8>>) -> Result<()> {
    let (bootstrap, topic) = (bootstrap.to_string(), topic.to_string());
    blocking(move || {
        let producer: BaseProducer = client_config(&bootstrap)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", "30000")
            .create()?;
        for p in &payloads {
            producer
                .send(BaseRecord::<(), [u8]>::to(&topic).partition(0).payload(p))
                .map_err(|(e, _)| anyhow!("producing to {topic}: {e}"))?;
        }
        producer
            .flush(Duration::from_secs(30))
            .with_context(|| format!("flushing to {topic}"))?;
        Ok(())
    })
    .await
}
