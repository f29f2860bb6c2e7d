//! `[bus]` and `[bus.kafka]`: which bus carries change records, and how fleetsync talks to
//! Kafka.
//!
//! * `[bus.kafka]` is a free map of librdkafka settings (TLS, SASL, tuning) passed to every
//!   producer, consumer and admin client. Keys that would weaken delivery (`acks` other than
//!   `all`, `enable.idempotence = false`) and keys fleetsync sets itself (`group.id`, offsets,
//!   `bootstrap.servers`, compression, transactions) are rejected by [`BusConfig::validate`].
//! * The SASL password can sit in the map (`sasl.password`), but belongs in a file
//!   (`sasl_password_file`) or an environment variable (`sasl_password_env`,
//!   `FLEETSYNC_BUS_SASL_PASSWORD`); see [`BusConfig::resolve_password`].
//! * Secrets (every key in [`is_secret_key`]) never leave this module in clear: `Debug` hides
//!   them and [`Redactor`] scrubs their values out of any message quoting a setting (librdkafka
//!   errors do).
//! * Topics fleetsync creates get the settings of [`TopicSpec`] (typed keys with defaults
//!   below); an existing topic is checked against them by [`crate::topic_policy`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

use crate::ConfigError;

/// Prefix of the per-server change topics.
pub const DEFAULT_TOPIC_PREFIX: &str = "fleetsync";
/// Replicas of each topic fleetsync creates: three survive one broker lost while a second is
/// down for maintenance, the usual production floor. A single-broker cluster (development,
/// tests) must say `replication_factor = 1` explicitly: no silent downgrade.
pub const DEFAULT_REPLICATION_FACTOR: i32 = 3;
/// With `acks=all`, a write is acknowledged once this many replicas hold it. Two (when there
/// are at least two replicas) means an acknowledged change survives the loss of any one
/// broker; one replica would acknowledge writes held by a single disk.
pub const DEFAULT_MIN_INSYNC_REPLICAS: i32 = 2;
/// Seven days (Kafka's own default): long enough for a target or coordinator to be down over a
/// long weekend, short enough that the topic's disk use stays bounded. A target that falls
/// further behind is not silently skipped: the coordinator stops with a gap error and the
/// target is re-synced. `-1` keeps changes forever.
pub const DEFAULT_RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;
/// Partitions of a change topic: one, so a source's transactions keep their commit order.
pub const CHANGE_TOPIC_PARTITIONS: i32 = 1;
/// How long the agents of one server wait for a silent publisher before a standby takes over
/// (the session timeout of their election group). Ten seconds: a dead or stopped publisher is
/// replaced within about that, while a busy 2-core machine's scheduling hiccups (well under a
/// second) never cause a needless takeover. The broker bounds it by its
/// `group.min.session.timeout.ms` (6 s by default) and `group.max.session.timeout.ms`.
pub const DEFAULT_AGENT_SESSION_TIMEOUT_MS: u64 = 10_000;

/// Which bus carries change records between agents and coordinators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BusKind {
    /// In-process channels: `fleetsync run`, one machine, nothing to install.
    #[default]
    Embedded,
    /// Kafka: `fleetsync agent` and `fleetsync coordinator` as separate processes.
    Kafka,
}

/// `[bus]`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusConfig {
    #[serde(default)]
    pub kind: BusKind,
    /// Kafka bootstrap servers, `host:port[,host:port]`.
    #[serde(default)]
    pub brokers: Option<String>,
    /// Topics are `<topic_prefix>.<server>`: one per source server.
    #[serde(default = "default_topic_prefix")]
    pub topic_prefix: String,
    /// Producer compression: `lz4` (default), `zstd`, `snappy`, `gzip` or `none`.
    #[serde(default = "default_compression")]
    pub compression: String,
    /// Also publish a Debezium-compatible JSON stream to `<topic_prefix>.<server>.json`
    /// (key: the primary-key columns; value: the change envelope; a tombstone after deletes).
    #[serde(default)]
    pub debezium_json: bool,
    /// Write the JSON stream as Kafka Connect's `JsonConverter` does with
    /// `schemas.enable=true`: every key and value as `{"schema": ..., "payload": ...}`, values
    /// typed as Debezium's MariaDB connector types them. Needed by Kafka Connect sinks such
    /// as Debezium's JDBC sink. Off by default: existing consumers read the schemaless form.
    #[serde(default)]
    pub debezium_json_schemas: bool,
    /// Replication factor of the topics fleetsync creates, and the least it accepts on an
    /// existing topic.
    #[serde(default = "default_replication_factor")]
    pub replication_factor: i32,
    /// `min.insync.replicas` of created topics, and the least accepted on existing ones.
    /// Default: [`DEFAULT_MIN_INSYNC_REPLICAS`], or 1 with `replication_factor = 1`.
    #[serde(default)]
    pub min_insync_replicas: Option<i32>,
    /// `retention.ms` of created topics (`-1`: forever).
    #[serde(default = "default_retention_ms")]
    pub retention_ms: i64,
    /// Agent standby: a publisher not heard from for this long is replaced by a standby agent
    /// of the same server (see `docs/agent-failover.md`).
    #[serde(default = "default_agent_session_timeout_ms")]
    pub agent_session_timeout_ms: u64,
    /// Name of an environment variable holding the SASL password.
    #[serde(default)]
    pub sasl_password_env: Option<String>,
    /// A file whose first line is the SASL password.
    #[serde(default)]
    pub sasl_password_file: Option<PathBuf>,
    /// Extra librdkafka settings for producers, consumers and admin clients (TLS, SASL).
    #[serde(default)]
    pub kafka: BTreeMap<String, String>,
    /// The SASL password resolved from `sasl_password_env`/`_file` or
    /// `FLEETSYNC_BUS_SASL_PASSWORD` (see [`BusConfig::resolve_password`]).
    #[serde(skip)]
    pub sasl_password: Option<String>,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            kind: BusKind::Embedded,
            brokers: None,
            topic_prefix: default_topic_prefix(),
            compression: default_compression(),
            debezium_json: false,
            debezium_json_schemas: false,
            replication_factor: DEFAULT_REPLICATION_FACTOR,
            min_insync_replicas: None,
            retention_ms: DEFAULT_RETENTION_MS,
            agent_session_timeout_ms: DEFAULT_AGENT_SESSION_TIMEOUT_MS,
            sasl_password_env: None,
            sasl_password_file: None,
            kafka: BTreeMap::new(),
            sasl_password: None,
        }
    }
}

fn default_topic_prefix() -> String {
    DEFAULT_TOPIC_PREFIX.to_string()
}

/// lz4: fast on both ends, and built into librdkafka (no extra native library).
fn default_compression() -> String {
    "lz4".to_string()
}

fn default_replication_factor() -> i32 {
    DEFAULT_REPLICATION_FACTOR
}

fn default_retention_ms() -> i64 {
    DEFAULT_RETENTION_MS
}

fn default_agent_session_timeout_ms() -> u64 {
    DEFAULT_AGENT_SESSION_TIMEOUT_MS
}

/// Whether a librdkafka setting holds a secret (a password, a private key, a client secret).
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.ends_with("password")
        || k.contains("secret")
        || k == "ssl.key.pem"
        || k == "ssl_key"
        || k == "sasl.oauthbearer.config"
}

/// Settings fleetsync sets itself on its clients: a value in `[bus.kafka]` would be
/// overridden or would break delivery, so it is an error, with what to use instead.
const CONTROLLED: &[(&str, &str)] = &[
    ("bootstrap.servers", "set [bus] brokers instead"),
    ("metadata.broker.list", "set [bus] brokers instead"),
    ("compression.type", "set [bus] compression instead"),
    ("compression.codec", "set [bus] compression instead"),
    ("group.id", "fleetsync names its consumer groups itself"),
    (
        "enable.auto.commit",
        "fleetsync stores offsets in the target, with the rows",
    ),
    (
        "enable.auto.offset.store",
        "fleetsync stores offsets in the target, with the rows",
    ),
    (
        "auto.offset.reset",
        "fleetsync never skips messages it has not applied",
    ),
    (
        "allow.auto.create.topics",
        "fleetsync creates its topics with explicit settings",
    ),
    (
        "transactional.id",
        "fleetsync names each agent's transactional id itself (fleetsync-agent-<server>)",
    ),
    (
        "isolation.level",
        "fleetsync reads only committed Kafka transactions",
    ),
    (
        "session.timeout.ms",
        "set [bus] agent_session_timeout_ms instead",
    ),
];

/// Replaces secret values with `***` in text quoting settings (client errors, logs).
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = secrets.into_iter().filter(|s| !s.is_empty()).collect();
        // Longest first, so a secret containing another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Redactor { secrets }
    }

    /// `text` with every secret value replaced by `***`.
    pub fn apply(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "***");
            }
        }
        out
    }
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets.len())
    }
}

/// `[bus.kafka]` for printing: secret values as `***`.
pub fn redacted_settings(map: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    map.iter()
        .map(|(k, v)| {
            let v = if is_secret_key(k) { "***" } else { v.as_str() };
            (k.clone(), v.to_string())
        })
        .collect()
}

impl fmt::Debug for BusConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BusConfig")
            .field("kind", &self.kind)
            .field("brokers", &self.brokers)
            .field("topic_prefix", &self.topic_prefix)
            .field("compression", &self.compression)
            .field("debezium_json", &self.debezium_json)
            .field("debezium_json_schemas", &self.debezium_json_schemas)
            .field("replication_factor", &self.replication_factor)
            .field("min_insync_replicas", &self.min_insync_replicas())
            .field("retention_ms", &self.retention_ms)
            .field("agent_session_timeout_ms", &self.agent_session_timeout_ms)
            .field("sasl_password_env", &self.sasl_password_env)
            .field("sasl_password_file", &self.sasl_password_file)
            .field("kafka", &redacted_settings(&self.kafka))
            .finish_non_exhaustive()
    }
}

/// The settings of the topics fleetsync creates, and the floor it accepts on existing ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicSpec {
    pub replication_factor: i32,
    pub min_insync_replicas: i32,
    pub retention_ms: i64,
}

impl TopicSpec {
    /// Topic-level configs for CreateTopics. The change topic is never compacted (the
    /// coordinator requires contiguous offsets) and never elects an out-of-sync leader.
    pub fn create_configs(&self) -> Vec<(&'static str, String)> {
        vec![
            ("cleanup.policy", "delete".into()),
            ("retention.ms", self.retention_ms.to_string()),
            ("retention.bytes", "-1".into()),
            ("min.insync.replicas", self.min_insync_replicas.to_string()),
            ("unclean.leader.election.enable", "false".into()),
            // Keep the producer's compression: no recompression on the broker.
            ("compression.type", "producer".into()),
        ]
    }
}

impl BusConfig {
    /// The topic carrying `server`'s changes.
    pub fn topic(&self, server: &str) -> String {
        format!("{}.{}", self.topic_prefix, server)
    }

    /// The Debezium-compatible JSON topic of `server`.
    pub fn json_topic(&self, server: &str) -> String {
        format!("{}.{}.json", self.topic_prefix, server)
    }

    /// `min_insync_replicas`, or its default for the replication factor.
    pub fn min_insync_replicas(&self) -> i32 {
        self.min_insync_replicas
            .unwrap_or(DEFAULT_MIN_INSYNC_REPLICAS.min(self.replication_factor))
    }

    pub fn topic_spec(&self) -> TopicSpec {
        TopicSpec {
            replication_factor: self.replication_factor,
            min_insync_replicas: self.min_insync_replicas(),
            retention_ms: self.retention_ms,
        }
    }

    /// `[bus.kafka]` plus the resolved SASL password: what every Kafka client gets.
    pub fn client_settings(&self) -> BTreeMap<String, String> {
        let mut map = self.kafka.clone();
        if let Some(pw) = &self.sasl_password {
            map.insert("sasl.password".into(), pw.clone());
        }
        map
    }

    /// Scrubs every secret of the client settings out of messages.
    pub fn redactor(&self) -> Redactor {
        let in_map = self.kafka.iter().filter(|(k, _)| is_secret_key(k));
        Redactor::new(
            in_map
                .map(|(_, v)| v.clone())
                .chain(self.sasl_password.clone()),
        )
    }

    /// Reads the SASL password from `sasl_password_env` or `sasl_password_file` (a password
    /// from `FLEETSYNC_BUS_SASL_PASSWORD`, set by `apply_env`, wins).
    pub(crate) fn resolve_password(&mut self) -> Result<(), ConfigError> {
        if self.sasl_password.is_some() {
            return Ok(());
        }
        if let Some(var) = &self.sasl_password_env {
            let value = std::env::var(var).map_err(|_| {
                ConfigError::invalid(
                    "bus.sasl_password_env",
                    format!("environment variable {var} is not set"),
                )
            })?;
            self.sasl_password = Some(value);
        } else if let Some(file) = &self.sasl_password_file {
            let text = std::fs::read_to_string(file).map_err(|e| {
                ConfigError::invalid(
                    "bus.sasl_password_file",
                    format!("cannot read {}: {e}", file.display()),
                )
            })?;
            self.sasl_password = Some(text.lines().next().unwrap_or("").to_string());
        }
        Ok(())
    }

    /// Checks every `[bus]` rule that needs no broker.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.kind == BusKind::Kafka
            && self.brokers.as_deref().is_none_or(|b| b.trim().is_empty())
        {
            return Err(ConfigError::invalid(
                "bus.brokers",
                "required when bus.kind = \"kafka\"",
            ));
        }
        if !["lz4", "zstd", "snappy", "gzip", "none"].contains(&self.compression.as_str()) {
            return Err(ConfigError::invalid(
                "bus.compression",
                "must be lz4, zstd, snappy, gzip or none",
            ));
        }
        if self.topic_prefix.is_empty()
            || !self
                .topic_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err(ConfigError::invalid(
                "bus.topic_prefix",
                "must be letters, digits, '.', '_' or '-'",
            ));
        }
        self.validate_topic_settings()?;
        self.validate_kafka_map()
    }

    fn validate_topic_settings(&self) -> Result<(), ConfigError> {
        if !(1..=32).contains(&self.replication_factor) {
            return Err(ConfigError::invalid(
                "bus.replication_factor",
                "must be between 1 and 32 (3 in production; 1 only for a single-broker cluster)",
            ));
        }
        let min_isr = self.min_insync_replicas();
        if min_isr < 1 || min_isr > self.replication_factor {
            return Err(ConfigError::invalid(
                "bus.min_insync_replicas",
                format!(
                    "must be between 1 and bus.replication_factor ({})",
                    self.replication_factor
                ),
            ));
        }
        if self.replication_factor > 1 && min_isr < 2 {
            return Err(ConfigError::invalid(
                "bus.min_insync_replicas",
                "must be at least 2 when replication_factor > 1: with 1, an acknowledged change can be held by one broker only",
            ));
        }
        if !(1_000..=1_800_000).contains(&self.agent_session_timeout_ms) {
            return Err(ConfigError::invalid(
                "bus.agent_session_timeout_ms",
                "must be between 1000 and 1800000 (and within the brokers' group.min/max.session.timeout.ms)",
            ));
        }
        if self.retention_ms != -1 && self.retention_ms < 3_600_000 {
            return Err(ConfigError::invalid(
                "bus.retention_ms",
                "must be -1 (forever) or at least 3600000 (one hour)",
            ));
        }
        Ok(())
    }

    fn validate_kafka_map(&self) -> Result<(), ConfigError> {
        if self.sasl_password_env.is_some() && self.sasl_password_file.is_some() {
            return Err(ConfigError::invalid(
                "bus",
                "set at most one of sasl_password_env and sasl_password_file",
            ));
        }
        let typed_password = self.sasl_password_env.is_some() || self.sasl_password_file.is_some();
        for (key, value) in &self.kafka {
            let field = format!("bus.kafka.{key:?}");
            let k = key.to_ascii_lowercase();
            let v = value.trim().to_ascii_lowercase();
            match k.as_str() {
                "acks" | "request.required.acks" if v != "all" && v != "-1" => {
                    return Err(ConfigError::invalid(
                        field,
                        "must be \"all\" (or -1): a change is checkpointed only when every in-sync replica holds it",
                    ));
                }
                "enable.idempotence" if v != "true" => {
                    return Err(ConfigError::invalid(
                        field,
                        "must be true: without it a retried send can duplicate or reorder changes",
                    ));
                }
                "sasl.password" if typed_password => {
                    return Err(ConfigError::invalid(
                        field,
                        "set either this or bus.sasl_password_file/sasl_password_env, not both",
                    ));
                }
                _ => {
                    if let Some((_, why)) = CONTROLLED.iter().find(|(c, _)| *c == k) {
                        return Err(ConfigError::invalid(
                            field,
                            format!("is set by fleetsync: {why}"),
                        ));
                    }
                }
            }
        }
        self.validate_security()
    }

    /// `security.protocol` and SASL: a value librdkafka would reject later, or SASL without
    /// its credentials, fails here with the field named.
    fn validate_security(&self) -> Result<(), ConfigError> {
        let get = |k: &str| self.kafka.get(k).map(|v| v.trim().to_ascii_lowercase());
        let protocol = get("security.protocol").unwrap_or_else(|| "plaintext".into());
        if !["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"].contains(&protocol.as_str()) {
            return Err(ConfigError::invalid(
                "bus.kafka.\"security.protocol\"",
                "must be plaintext, ssl, sasl_plaintext or sasl_ssl",
            ));
        }
        if !protocol.starts_with("sasl_") {
            return Ok(());
        }
        let mechanism = get("sasl.mechanisms")
            .or_else(|| get("sasl.mechanism"))
            .unwrap_or_else(|| "gssapi".into());
        if !["plain", "scram-sha-256", "scram-sha-512"].contains(&mechanism.as_str()) {
            return Err(ConfigError::invalid(
                "bus.kafka.\"sasl.mechanisms\"",
                "must be SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN (fleetsync is built without Kerberos)",
            ));
        }
        if self.kafka.get("sasl.username").is_none_or(|u| u.is_empty()) {
            return Err(ConfigError::invalid(
                "bus.kafka.\"sasl.username\"",
                format!("required with security.protocol = {protocol}"),
            ));
        }
        let has_password = self.kafka.contains_key("sasl.password")
            || self.sasl_password_env.is_some()
            || self.sasl_password_file.is_some()
            || self.sasl_password.is_some();
        if !has_password {
            return Err(ConfigError::invalid(
                "bus.sasl_password_file",
                format!(
                    "a SASL password is required with security.protocol = {protocol}: set bus.sasl_password_file, bus.sasl_password_env or FLEETSYNC_BUS_SASL_PASSWORD"
                ),
            ));
        }
        Ok(())
    }
}
