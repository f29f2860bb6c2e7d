//! The Kafka topics fleetsync uses, checked before anything is published or consumed.
//!
//! [`prepare`] reaches the brokers with the configured TLS/SASL settings, creates a missing
//! topic (when asked: the agent does, the coordinator does not) with the `[bus]` topic
//! settings ([`TopicSpec`]: one partition for a change topic, the replication factor,
//! `min.insync.replicas`, retention, no compaction, no unclean leader election), then reads
//! the topic's effective configs (DescribeConfigs) and applies
//! [`fleetsync_config::topic_policy::check_topic`]. Every failure is one line:
//!
//! * unsafe settings ([`TopicError::Unsafe`]): the policy's refusal, with the fix;
//! * brokers that cannot be reached or refuse us ([`TopicError::Unreachable`]): the TLS or
//!   SASL error librdkafka reported (a wrong CA, a wrong password, a plaintext client on a TLS
//!   listener end the wait at once; a broker that is down after [`CONNECT_TIMEOUT`]);
//! * missing permissions or a topic that cannot be created ([`TopicError::NeedsOperator`]).
//!
//! Secrets never reach these messages: each goes through the bus's redactor.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fleetsync_config::topic_policy::{check_topic, ObservedTopic, TopicRole};
use fleetsync_config::{BusConfig, TopicSpec, CHANGE_TOPIC_PARTITIONS};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

/// How long the start-up check keeps trying to reach the brokers: long enough for a broker
/// that is still starting, short enough that a start against a dead address fails visibly.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// One admin request (CreateTopics, DescribeConfigs): brokers answer these in milliseconds.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long each attempt serves the probe's queued events (errors and logs).
const EVENT_DRAIN: Duration = Duration::from_millis(200);
/// One metadata round trip while waiting for the brokers.
const METADATA_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    /// The topic's settings can lose acknowledged changes: the operator must change them.
    #[error("{0}")]
    Unsafe(String),
    /// The brokers cannot be reached or refused the connection (TLS, SASL, down).
    #[error("kafka {brokers}: {message}")]
    Unreachable { brokers: String, message: String },
    /// Missing permissions, or a topic the cluster cannot create as asked.
    #[error("{0}")]
    NeedsOperator(String),
}

/// Whether the topic was there (and passed the policy) or is missing (not created).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicState {
    Ready,
    Missing,
}

/// Records the errors librdkafka reported on its own (connection, TLS, SASL), which a
/// request that merely times out would otherwise hide. All distinct ones are kept: the
/// telling one (a failed handshake) is often followed by a summary ("all brokers down").
#[derive(Default)]
struct ErrorTap {
    /// Distinct errors, oldest first, at most [`ErrorTap::KEEP`].
    seen: Mutex<Vec<(RDKafkaErrorCode, String)>>,
}

impl ClientContext for ErrorTap {
    fn error(&self, error: KafkaError, reason: &str) {
        let code = error
            .rdkafka_error_code()
            .unwrap_or(RDKafkaErrorCode::Unknown);
        self.record(code, reason);
    }

    /// Connection failures librdkafka only logs (facility `FAIL`, e.g. a plaintext client
    /// disconnected by a TLS listener) are recorded like errors; other logs are dropped (the
    /// probe is short-lived and its logs say nothing the error line does not).
    fn log(&self, _level: RDKafkaLogLevel, fac: &str, message: &str) {
        if fac == "FAIL" {
            self.record(RDKafkaErrorCode::BrokerTransportFailure, message);
        }
    }
}

/// The probe is a producer only because a producer's `poll` hands librdkafka's error events
/// to its context (an admin client's are never polled); it never sends.
impl ProducerContext for ErrorTap {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

impl ErrorTap {
    const KEEP: usize = 16;

    fn record(&self, code: RDKafkaErrorCode, reason: &str) {
        // Logs start with librdkafka's thread name, `[thrd:HOST:PORT/bootstrap]: `.
        let reason = match reason
            .strip_prefix("[thrd:")
            .and_then(|r| r.split_once("]: "))
        {
            Some((_, rest)) => rest,
            None => reason,
        };
        if let Ok(mut seen) = self.seen.lock() {
            if seen.len() < Self::KEEP && !seen.iter().any(|(c, r)| *c == code && r == reason) {
                seen.push((code, reason.to_string()));
            }
        }
    }

    /// The error that explains a failure best, and whether it is definitive (see
    /// [`is_definitive`]): a definitive one, else the first that is not the summary "all
    /// brokers are down".
    fn explain(&self) -> Option<(bool, String)> {
        let seen = self.seen.lock().ok()?;
        if let Some((_, r)) = seen.iter().find(|(c, r)| is_definitive(*c, r)) {
            return Some((true, r.clone()));
        }
        seen.iter()
            .find(|(c, _)| *c != RDKafkaErrorCode::AllBrokersDown)
            .or(seen.first())
            .map(|(_, r)| (false, r.clone()))
    }
}

/// Errors that no amount of waiting fixes: a certificate, a password, a protocol mismatch.
fn is_definitive(code: RDKafkaErrorCode, reason: &str) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::Authentication
            | RDKafkaErrorCode::SSL
            | RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::UnsupportedSASLMechanism
            | RDKafkaErrorCode::IllegalSASLState
            | RDKafkaErrorCode::InvalidArgument
    ) || reason.contains("security.protocol")
        || is_protocol_mismatch(reason)
}

/// A Kafka broker always answers ApiVersion, the first request on a connection: a listener
/// that hangs up instead expects another protocol (TLS, usually). librdkafka says so only for
/// some disconnect messages, so the hint is added here.
fn is_protocol_mismatch(reason: &str) -> bool {
    reason.contains("Disconnected") && reason.contains("state APIVERSION_QUERY")
}

/// `reason` with a hint where librdkafka gives none.
fn with_hint(reason: &str) -> String {
    if is_protocol_mismatch(reason) && !reason.contains("security.protocol") {
        format!("{reason}: the listener expects another protocol (TLS?); check [bus.kafka] security.protocol")
    } else {
        reason.to_string()
    }
}

/// A client config for `bus`: brokers plus `[bus.kafka]` and the SASL password.
/// The change topics the coordinator consumes: one per sync source, sorted, each once.
pub fn consumed_topics(config: &fleetsync_config::Config) -> Vec<(String, TopicRole)> {
    let mut topics: Vec<(String, TopicRole)> = config
        .syncs
        .iter()
        .map(|s| (config.bus.topic(&s.source), TopicRole::Changes))
        .collect();
    topics.sort_by(|a, b| a.0.cmp(&b.0));
    topics.dedup();
    topics
}

pub fn client_config(bus: &BusConfig) -> ClientConfig {
    fleetsync_agent::publish::kafka::KafkaSettings::from_bus(bus).client_config()
}

/// Makes sure each of `topics` is safe to use (see the module doc); creates missing ones when
/// `create` is set. Returns each topic's state, in order.
pub async fn prepare(
    bus: &BusConfig,
    topics: &[(String, TopicRole)],
    create: bool,
) -> Result<Vec<TopicState>, TopicError> {
    let redactor = bus.redactor();
    let brokers = bus.brokers.clone().unwrap_or_default();
    let unreachable = |message: String| TopicError::Unreachable {
        brokers: brokers.clone(),
        message: redactor.apply(&message),
    };
    let mut config = client_config(bus);
    // Never let a metadata request create a topic with the broker's defaults.
    config.set("allow.auto.create.topics", "false");
    let admin: AdminClient<DefaultClientContext> = config
        .create()
        .map_err(|e| unreachable(format!("cannot create a client: {e}")))?;
    // Info: connection failures are logged at that level (with no `log` logger installed,
    // rdkafka would ask librdkafka for errors only).
    let probe: BaseProducer<ErrorTap> = config
        .clone()
        .set_log_level(RDKafkaLogLevel::Info)
        .create_with_context(ErrorTap::default())
        .map_err(|e| unreachable(format!("cannot create a client: {e}")))?;
    let clients = Clients {
        admin,
        probe: Arc::new(probe),
    };
    let result = async {
        let mut states = Vec::with_capacity(topics.len());
        for (topic, role) in topics {
            let spec = bus.topic_spec();
            let state = prepare_one(&clients, topic, *role, &spec, create, &unreachable).await?;
            states.push(state);
        }
        Ok(states)
    }
    .await
    .map_err(|e| match e {
        TopicError::Unsafe(m) => TopicError::Unsafe(redactor.apply(&m)),
        TopicError::NeedsOperator(m) => TopicError::NeedsOperator(redactor.apply(&m)),
        e => e,
    });
    // The admin client's destructor can block: leave it to a blocking thread.
    tokio::task::spawn_blocking(move || drop(clients));
    result
}

/// An admin client for CreateTopics/DescribeConfigs, and a probe for metadata that also
/// collects librdkafka's error events (see [`ErrorTap`]).
struct Clients {
    admin: AdminClient<DefaultClientContext>,
    probe: Arc<BaseProducer<ErrorTap>>,
}

async fn prepare_one(
    clients: &Clients,
    topic: &str,
    role: TopicRole,
    spec: &TopicSpec,
    create: bool,
    unreachable: &(dyn Fn(String) -> TopicError + Sync),
) -> Result<TopicState, TopicError> {
    let mut observed = metadata(&clients.probe, topic, unreachable).await?;
    if observed.is_none() {
        if !create {
            return Ok(TopicState::Missing);
        }
        create_topic(&clients.admin, topic, role, spec).await?;
        // A new topic takes a moment to reach every broker's metadata.
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        while observed.is_none() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
            observed = metadata(&clients.probe, topic, unreachable).await?;
        }
    }
    let Some(mut observed) = observed else {
        return Err(TopicError::NeedsOperator(format!(
            "topic {topic}: created, but the brokers do not list it after {REQUEST_TIMEOUT:?}"
        )));
    };
    observed.configs = describe(&clients.admin, topic).await?;
    match check_topic(topic, role, &observed, spec) {
        Ok(warnings) => {
            for w in warnings {
                tracing::warn!(topic, "{w}");
            }
            Ok(TopicState::Ready)
        }
        Err(refusal) => Err(TopicError::Unsafe(refusal)),
    }
}

/// Partitions and replicas of `topic` (`None`: it does not exist), waiting up to
/// [`CONNECT_TIMEOUT`] for the brokers, or less when librdkafka reports a definitive error.
async fn metadata(
    probe: &Arc<BaseProducer<ErrorTap>>,
    topic: &str,
    unreachable: &(dyn Fn(String) -> TopicError + Sync),
) -> Result<Option<ObservedTopic>, TopicError> {
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    loop {
        let p = probe.clone();
        let t = topic.to_string();
        let fetched = tokio::task::spawn_blocking(move || {
            let fetched = p.client().fetch_metadata(Some(&t), METADATA_TIMEOUT);
            // Hand the error events of the attempt to the tap. `poll` takes one event per
            // turn until its deadline, and log events share the queue: poll for a while, not
            // once, or the errors stay queued behind the logs.
            p.poll(EVENT_DRAIN);
            fetched.map(|m| {
                m.topics().iter().find(|mt| mt.name() == t).map(|mt| {
                    let err = mt.error().map(RDKafkaErrorCode::from);
                    let replicas = mt.partitions().iter().map(|p| p.replicas().len());
                    (err, mt.partitions().len(), replicas.min().unwrap_or(0))
                })
            })
        })
        .await
        .map_err(|e| unreachable(format!("metadata task failed: {e}")))?;
        match fetched {
            Ok(None) | Ok(Some((Some(RDKafkaErrorCode::UnknownTopicOrPartition), _, _))) => {
                return Ok(None)
            }
            Ok(Some((Some(RDKafkaErrorCode::TopicAuthorizationFailed), _, _))) => {
                return Err(TopicError::NeedsOperator(format!(
                    "topic {topic}: not authorized to describe it (grant Describe on the topic to fleetsync's principal)"
                )))
            }
            Ok(Some((None, partitions, replicas))) if partitions > 0 => {
                return Ok(Some(ObservedTopic {
                    partitions,
                    replication_factor: i32::try_from(replicas).unwrap_or(i32::MAX),
                    configs: Default::default(),
                }))
            }
            // Leader election in progress, or a topic being created: ask again.
            Ok(Some(_)) => {}
            Err(e) => {
                // The request only timed out; what librdkafka saw on the way says why.
                let tapped = probe.context().explain();
                if let Some((true, reason)) = &tapped {
                    return Err(unreachable(with_hint(reason)));
                }
                if Instant::now() >= deadline {
                    let why = tapped.map_or_else(|| e.to_string(), |(_, reason)| reason);
                    return Err(unreachable(format!(
                        "no broker answered within {CONNECT_TIMEOUT:?}: {why}"
                    )));
                }
            }
        }
        if Instant::now() >= deadline {
            return Err(unreachable(format!(
                "topic {topic} has no partition leaders after {CONNECT_TIMEOUT:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn admin_options() -> AdminOptions {
    AdminOptions::new()
        .operation_timeout(Some(REQUEST_TIMEOUT))
        .request_timeout(Some(REQUEST_TIMEOUT))
}

/// CreateTopics with the spec's settings. A topic created meanwhile by someone else is fine
/// (its settings are checked next).
async fn create_topic(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
    role: TopicRole,
    spec: &TopicSpec,
) -> Result<(), TopicError> {
    let configs = spec.create_configs();
    // The JSON topic is partitioned by row key like Debezium's; one partition keeps it simple
    // to consume in order, and outside consumers can add partitions.
    let partitions = match role {
        TopicRole::Changes | TopicRole::DebeziumJson => CHANGE_TOPIC_PARTITIONS,
    };
    let mut new = NewTopic::new(
        topic,
        partitions,
        TopicReplication::Fixed(spec.replication_factor),
    );
    for (k, v) in &configs {
        new = new.set(k, v);
    }
    let fail =
        |why: String| TopicError::NeedsOperator(format!("cannot create topic {topic}: {why}"));
    let results = tokio::time::timeout(
        REQUEST_TIMEOUT + Duration::from_secs(2),
        admin.create_topics([&new], &admin_options()),
    )
    .await
    .map_err(|_| fail(format!("no answer within {REQUEST_TIMEOUT:?}")))?
    .map_err(|e| fail(e.to_string()))?;
    for r in results {
        match r {
            Ok(_) => {
                tracing::info!(topic, partitions, replication_factor = spec.replication_factor, min_insync_replicas = spec.min_insync_replicas, retention_ms = spec.retention_ms, "created topic");
            }
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, RDKafkaErrorCode::InvalidReplicationFactor)) => {
                return Err(fail(format!(
                    "the cluster has fewer than bus.replication_factor = {} brokers (a single-broker cluster needs replication_factor = 1)",
                    spec.replication_factor
                )))
            }
            Err((_, code @ (RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed))) => {
                return Err(fail(format!(
                    "{code} (grant Create on the topic, or create it as the README's topic settings table says)"
                )))
            }
            Err((_, code)) => return Err(fail(code.to_string())),
        }
    }
    Ok(())
}

/// The topic's effective configs (broker defaults included).
async fn describe(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
) -> Result<std::collections::BTreeMap<String, String>, TopicError> {
    let fail = |why: String| {
        TopicError::NeedsOperator(format!(
            "topic {topic}: cannot read its settings (DescribeConfigs): {why}"
        ))
    };
    let results = tokio::time::timeout(
        REQUEST_TIMEOUT + Duration::from_secs(2),
        admin.describe_configs([&ResourceSpecifier::Topic(topic)], &admin_options()),
    )
    .await
    .map_err(|_| fail(format!("no answer within {REQUEST_TIMEOUT:?}")))?
    .map_err(|e| {
        let hint = match e {
            KafkaError::AdminOp(RDKafkaErrorCode::OperationTimedOut) => {
                " (a broker without the admin API, such as librdkafka's mock cluster, cannot be checked)"
            }
            _ => "",
        };
        fail(format!("{e}{hint}"))
    })?;
    let resource = match results.into_iter().next() {
        Some(Ok(r)) => r,
        Some(Err(
            code @ (RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed),
        )) => {
            return Err(fail(format!(
                "{code}; fleetsync needs DescribeConfigs on its topics to check they cannot lose acknowledged changes"
            )))
        }
        Some(Err(code)) => return Err(fail(code.to_string())),
        None => return Err(fail("the broker returned nothing".into())),
    };
    let configs: std::collections::BTreeMap<String, String> = resource
        .entries
        .into_iter()
        .filter_map(|e| Some((e.name, e.value?)))
        .collect();
    // rdkafka 0.39 drops a resource's own error (e.g. TOPIC_AUTHORIZATION_FAILED when the
    // principal lacks DescribeConfigs) and returns it with no entries: checking an empty map
    // would pass on Kafka's defaults, so the settings the policy reads must be there.
    if let Some(missing) = POLICY_KEYS.iter().find(|k| !configs.contains_key(**k)) {
        return Err(fail(format!(
            "the broker returned no {missing}; fleetsync's principal needs the DescribeConfigs permission on the topic to check that it cannot lose acknowledged changes (not authorized?)"
        )));
    }
    Ok(configs)
}

/// Topic settings [`check_topic`] reads, which DescribeConfigs always returns when allowed.
const POLICY_KEYS: [&str; 3] = [
    "min.insync.replicas",
    "unclean.leader.election.enable",
    "cleanup.policy",
];

/// Creates `topic` unless it exists already (another process may create it at the same
/// moment: `TopicAlreadyExists` is success). The error is one line without the brokers'
/// settings.
pub async fn create_if_missing(
    admin: &AdminClient<DefaultClientContext>,
    topic: &NewTopic<'_>,
    timeout: Duration,
) -> Result<(), String> {
    let opts = AdminOptions::new().operation_timeout(Some(timeout));
    let created = admin
        .create_topics([topic], &opts)
        .await
        .map_err(|e| format!("cannot create the topic: {e}"))?;
    for r in created {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(format!("cannot create the topic: {code}")),
        }
    }
    Ok(())
}
