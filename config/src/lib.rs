//! fleetsync's configuration: TOML, typed, defaulted, validated.
//!
//! * Unknown keys are rejected (`deny_unknown_fields`), so a typo is an error, not a silent
//!   default.
//! * Every default is a named constant with the reason for its value.
//! * [`Config::validate`] names the field and the rule it breaks.
//! * Environment variables override the file (see [`Config::apply_env`]); passwords can come
//!   from the URL, an environment variable or a file, and are never printed: [`Server`]'s
//!   `Debug` and [`Server::redacted_url`] hide them.

mod api;
mod backup;
mod bus;
mod conflict;
mod coordinator;
mod env;
mod filter;
mod group;
mod health;
mod tls;
pub mod topic_policy;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use api::{ApiConfig, DEFAULT_API_LISTEN, PERMISSION_NAMES};
pub use backup::{BackupConfig, BackupLocation, Compression, Retention};
pub use bus::{
    is_secret_key, redacted_settings, BusConfig, BusKind, Redactor, TopicSpec,
    CHANGE_TOPIC_PARTITIONS, DEFAULT_MIN_INSYNC_REPLICAS, DEFAULT_REPLICATION_FACTOR,
    DEFAULT_RETENTION_MS, DEFAULT_TOPIC_PREFIX,
};
pub use conflict::{ConflictPolicy, ConflictStrategy, TableConflictConfig, TablePolicy};
pub use coordinator::{
    CoordinatorConfig, DEFAULT_SESSION_TIMEOUT_MS, MAX_SESSION_TIMEOUT_MS, MIN_SESSION_TIMEOUT_MS,
};
pub use filter::{TableFilter, TableMap};
pub use group::{parse_duration, SyncMode, DEFAULT_TOMBSTONE_GC_BOUND, DEFAULT_TOMBSTONE_GC_EVERY};
pub use health::HealthConfig;
pub use tls::{TlsMode, DEFAULT_TLS_MODE, TLS_MODES};

/// Where checkpoints live when `state_dir` is not set.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/fleetsync";
/// The Prometheus exporter port registered for fleetsync-like exporters range.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9187";
/// Rows per target transaction: large enough to amortise the commit, small enough that a
/// batch's memory and lock time stay modest.
pub const DEFAULT_BATCH_ROWS: usize = 5_000;
/// How long a partial batch may wait for more rows before it is applied: bounds added lag.
pub const DEFAULT_BATCH_WAIT_MS: u64 = 20;
/// Source transactions buffered per target between agent and coordinator: bounds memory.
pub const DEFAULT_QUEUE_TRANSACTIONS: usize = 1_024;
/// Rows buffered per target between agent and coordinator: with the transaction bound, what
/// bounds the process's memory (a decoded row is a few hundred bytes).
pub const DEFAULT_QUEUE_ROWS: usize = 20_000;
/// Bytes of decoded row changes buffered per target (and per lane) between agent and
/// coordinator, as estimated in memory: the bound that holds for wide rows, where 20,000 rows
/// can be 100 MB. 8 MiB keeps `fleetsync run` with one sync under 64 MiB at full speed (see
/// docs/memory.md); the embedded bus also cuts large source transactions into parts of a
/// quarter of it, and a batch stops growing at it.
pub const DEFAULT_QUEUE_BYTES: usize = 8 << 20;
/// The least `queue_bytes`: below, parts and batches get so small that round trips dominate.
pub const MIN_QUEUE_BYTES: usize = 1 << 20;
/// Rows per primary-key chunk of the initial snapshot.
pub const DEFAULT_SNAPSHOT_CHUNK_ROWS: usize = 10_000;
/// How the applier sends row statements: prepared statements with binary values cost the
/// target server less CPU per row than SQL text (measured: `docs/apply-statements.md`).
pub const DEFAULT_APPLY_PROTOCOL: ApplyProtocol = ApplyProtocol::Binary;

/// How the applier sends its row statements to a target (`[[syncs]] apply_protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApplyProtocol {
    /// Multi-statement SQL text with every value as a literal (before 2026-12: the only way).
    Text,
    /// Prepared statements (cached per connection), values bound in binary; on MariaDB the
    /// rows of a statement go in one `COM_STMT_BULK_EXECUTE`.
    Binary,
}

impl Default for ApplyProtocol {
    fn default() -> Self {
        DEFAULT_APPLY_PROTOCOL
    }
}

impl ApplyProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            ApplyProtocol::Text => "text",
            ApplyProtocol::Binary => "binary",
        }
    }
}
/// Parallel apply lanes (target connections) per (sync, target). 1 (serial) until the
/// benchmark shows lanes winning on the workloads of `tests/bench` (see docs/apply-lanes.md).
pub const DEFAULT_APPLY_LANES: usize = 1;
/// Most lanes a sync may ask for: each is a target connection and a share of the queue.
pub const MAX_APPLY_LANES: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config: {field}: {rule}")]
    Invalid { field: String, rule: String },
}

impl ConfigError {
    pub(crate) fn invalid(field: impl Into<String>, rule: impl Into<String>) -> Self {
        ConfigError::Invalid {
            field: field.into(),
            rule: rule.into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Checkpoints and other local state.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub servers: Vec<Server>,
    #[serde(default)]
    pub syncs: Vec<SyncConfig>,
    #[serde(default)]
    pub bus: BusConfig,
    /// Backups, the binlog archive for point-in-time recovery.
    #[serde(default)]
    pub backup: BackupConfig,
    /// Health checks: the periodic agent task and the limits of `fleetsync health`.
    #[serde(default)]
    pub health: HealthConfig,
    /// The control-plane REST API; off unless the section is present.
    #[serde(default)]
    pub api: Option<ApiConfig>,
    /// Coordinators sharing the fleet's pairs (`fleetsync coordinator` on Kafka).
    #[serde(default)]
    pub coordinator: CoordinatorConfig,
    /// Versioned migrations run through the API (`migrate-up` / `migrate-undo` jobs).
    #[serde(default)]
    pub migrations: MigrationsConfig,
}

/// `[migrations]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrationsConfig {
    /// The root of the migration folders the API's `migrate-up` / `migrate-undo` jobs may
    /// run: a job's `dir` is relative to it and may not leave it. Unset (the default): those
    /// jobs are refused (a token holder never runs SQL from an arbitrary path).
    #[serde(default)]
    pub dir: Option<PathBuf>,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from(DEFAULT_STATE_DIR)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address of the HTTP listener serving `/metrics` and `/health`.
    #[serde(default = "default_metrics_listen")]
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: default_metrics_listen(),
        }
    }
}

fn default_metrics_listen() -> String {
    DEFAULT_METRICS_LISTEN.to_string()
}

/// A database server.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    pub name: String,
    /// `mysql://user[:password]@host:port`.
    pub url: String,
    /// Name of an environment variable holding the password (overrides the URL's).
    #[serde(default)]
    pub password_env: Option<String>,
    /// A file whose first line is the password (overrides the URL's).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Replica server id the agent registers with when reading the binlog; must be unique
    /// among the source's replicas. Default: derived from the server name.
    #[serde(default)]
    pub replica_server_id: Option<u32>,
    /// TLS to this server, for every connection fleetsync makes to it (binlog stream,
    /// snapshots, applies, tasks): see [`TlsMode`]; default [`DEFAULT_TLS_MODE`].
    #[serde(default)]
    pub tls: TlsMode,
    /// PEM file of the CA(s) the server's certificate must chain to (`verify_ca`,
    /// `verify_identity`); the only roots trusted, not the system's.
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
    /// PEM client certificate (chain), for servers that require one (`REQUIRE X509`).
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert` (unencrypted; keep the file readable by fleetsync only).
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Resolved password (from env or file), filled in by [`Config::load`].
    #[serde(skip)]
    pub password: Option<String>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("name", &self.name)
            .field("url", &self.redacted_url())
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// The URL with any password replaced by `***`: safe for logs and errors.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }

    /// Replica server id used for binlog streaming: configured, or a stable hash of the name
    /// in a range unlikely to collide with real server ids.
    pub fn replica_id(&self, salt: &str) -> u32 {
        if let Some(id) = self.replica_server_id {
            return id;
        }
        // FNV-1a: stable across releases, unlike std's hasher.
        let mut h: u32 = 0x811c_9dc5;
        for b in self.name.bytes().chain(salt.bytes()) {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
        0x4000_0000 | (h & 0x3fff_ffff)
    }
}

/// Replaces the password of a `scheme://user:password@host` URL with `***`.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let Some(at) = rest.rfind('@') else {
        return url.to_string();
    };
    let userinfo = &rest[..at];
    match userinfo.find(':') {
        Some(colon) => format!(
            "{}://{}:***@{}",
            &url[..scheme_end],
            &userinfo[..colon],
            &rest[at + 1..]
        ),
        None => url.to_string(),
    }
}

/// One sync: a source server replicated to one or more targets.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    pub name: String,
    /// `one_way` (default: `source` to `targets`) or `bidirectional` (`members`).
    #[serde(default)]
    pub mode: SyncMode,
    /// One-way: the server whose changes are sent. For a member of an expanded bidirectional
    /// group (see [`Config::expand_groups`]): that member.
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub targets: Vec<String>,
    /// Bidirectional: every member is source and target of every other member.
    #[serde(default)]
    pub members: Vec<String>,
    /// Set on the one-way syncs a bidirectional group expands into: the group's name (what
    /// `fleetsync sync pause` and the conflict settings refer to).
    #[serde(skip)]
    pub group: Option<String>,
    /// `schema.table` regexes (anchored); empty = every non-system table.
    #[serde(default)]
    pub include: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Table mapping: `"schema" = "other_schema"` or `"schema.table" = "schema2.table2"`.
    #[serde(default)]
    pub map: BTreeMap<String, String>,
    /// Create missing databases and tables on targets from the source's definition.
    #[serde(default = "yes")]
    pub create_missing: bool,
    /// Follow DDL seen in the binlog on the targets (false: pause the table instead).
    #[serde(default = "yes")]
    pub apply_ddl: bool,
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
    #[serde(default = "default_batch_wait_ms")]
    pub batch_wait_ms: u64,
    #[serde(default = "default_queue")]
    pub queue_transactions: usize,
    #[serde(default = "default_queue_rows")]
    pub queue_rows: usize,
    /// Bytes of decoded rows buffered between reader and applier (see [`DEFAULT_QUEUE_BYTES`]).
    #[serde(default = "default_queue_bytes")]
    pub queue_bytes: usize,
    #[serde(default = "default_chunk")]
    pub snapshot_chunk_rows: usize,
    /// How row statements are sent to the targets: `binary` (prepared statements) or `text`.
    #[serde(default)]
    pub apply_protocol: ApplyProtocol,
    /// Parallel target connections per (sync, target); 1 = serial (see docs/apply-lanes.md).
    #[serde(default = "default_apply_lanes")]
    pub apply_lanes: usize,
    /// Cron expression (5 fields, or 6 with seconds): instead of streaming continuously, run
    /// the sync at each occurrence until the targets reach the source's position at that
    /// moment. `None`: continuous.
    #[serde(default)]
    pub schedule: Option<String>,
    /// Conflict strategy: `none` (default), `source-wins`, `target-wins`, `newest-wins` or
    /// `manual` (checked by [`Config::validate`]).
    #[serde(default)]
    pub conflict: Option<String>,
    /// For `source-wins`: server names, the earlier wins.
    #[serde(default)]
    pub priority: Vec<String>,
    /// For `newest-wins`: the column whose greater value wins.
    #[serde(default)]
    pub newest_column: Option<String>,
    /// `[[syncs.tables]]`: per-table conflict overrides.
    #[serde(default)]
    pub tables: Vec<TableConflictConfig>,
    /// How the applier marks its writes when they must not be published again (a loop back
    /// to the source). Unset: `skip_replication` on MariaDB targets, `marker` elsewhere.
    #[serde(default)]
    pub loop_prevention: Option<LoopPrevention>,
    /// Bidirectional groups: how often a tombstone GC round starts (`"5m"`, `"30s"`; see
    /// `group::DEFAULT_TOMBSTONE_GC_EVERY`). Unset: the default.
    #[serde(default)]
    pub tombstone_gc_every: Option<String>,
    /// Bidirectional groups: how long a member may block GC rounds (down, or its pipelines
    /// failing) before it is evicted (`"7d"`; see `group::DEFAULT_TOMBSTONE_GC_BOUND`).
    #[serde(default)]
    pub tombstone_gc_bound: Option<String>,
}

/// How fleetsync's own applied writes are recognised by the target's agent (no echo loops).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoopPrevention {
    /// MariaDB's session flag `skip_replication`: every event of the session carries it.
    #[serde(alias = "skip-replication")]
    SkipReplication,
    /// A row written to `fleetsync.loop_marker` in every applied transaction (and a comment
    /// prefix on applied DDL): works on MySQL, which has no `skip_replication`.
    Marker,
}

fn yes() -> bool {
    true
}
fn default_batch_rows() -> usize {
    DEFAULT_BATCH_ROWS
}
fn default_batch_wait_ms() -> u64 {
    DEFAULT_BATCH_WAIT_MS
}
fn default_queue() -> usize {
    DEFAULT_QUEUE_TRANSACTIONS
}
fn default_queue_rows() -> usize {
    DEFAULT_QUEUE_ROWS
}
fn default_queue_bytes() -> usize {
    DEFAULT_QUEUE_BYTES
}
fn default_chunk() -> usize {
    DEFAULT_SNAPSHOT_CHUNK_ROWS
}
fn default_apply_lanes() -> usize {
    DEFAULT_APPLY_LANES
}

impl SyncConfig {
    pub fn filter(&self) -> Result<TableFilter, ConfigError> {
        TableFilter::new(&self.include, &self.exclude).map_err(|(i, e)| {
            ConfigError::invalid(format!("syncs.{}.include/exclude[{i}]", self.name), e)
        })
    }

    pub fn table_map(&self) -> Result<TableMap, ConfigError> {
        TableMap::new(&self.map)
            .map_err(|e| ConfigError::invalid(format!("syncs.{}.map", self.name), e))
    }
}

impl Config {
    /// Reads, parses, applies environment overrides, resolves passwords and validates.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Config::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        })?;
        config.apply_env(std::env::vars())?;
        config.resolve_passwords()?;
        config.validate()?;
        config.expand_groups();
        Ok(config)
    }

    /// Parses TOML text. The error is one line naming the position and the problem.
    pub fn parse(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| {
            let msg = e.message().trim().to_string();
            match e.span() {
                Some(span) => {
                    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                    format!("line {line}: {msg}")
                }
                None => msg,
            }
        })
    }

    /// Whether changes applied by `sync` on `target` must be marked so that they are not
    /// published again: true when some chain of syncs leads from `target` back to the sync's
    /// source (a bidirectional or multi-primary loop). A plain cascade (A -> B -> C) is not
    /// marked, so B forwards what it receives from A.
    pub fn loop_prevention(&self, sync: &SyncConfig, target: &str) -> bool {
        let mut seen = HashSet::new();
        let mut stack = vec![target];
        while let Some(server) = stack.pop() {
            if server == sync.source {
                return true;
            }
            if !seen.insert(server) {
                continue;
            }
            for s in self.syncs.iter().filter(|s| s.source == server) {
                stack.extend(s.targets.iter().map(String::as_str));
            }
        }
        false
    }

    pub fn server(&self, name: &str) -> Option<&Server> {
        self.servers.iter().find(|s| s.name == name)
    }

    /// A command-line `--metrics-listen` (it overrides the file and `FLEETSYNC_METRICS_LISTEN`):
    /// checked like the file's value.
    pub fn override_metrics_listen(&mut self, listen: &str) -> Result<(), ConfigError> {
        self.metrics.listen = listen.to_string();
        self.metrics_addr().map(|_| ())
    }

    pub fn metrics_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.metrics.listen.parse().map_err(|_| {
            ConfigError::invalid("metrics.listen", "must be host:port, e.g. 127.0.0.1:9187")
        })
    }

    fn resolve_passwords(&mut self) -> Result<(), ConfigError> {
        for (i, s) in self.servers.iter_mut().enumerate() {
            if let Some(var) = &s.password_env {
                let value = std::env::var(var).map_err(|_| {
                    ConfigError::invalid(
                        format!("servers[{i}].password_env"),
                        format!("environment variable {var} is not set"),
                    )
                })?;
                s.password = Some(value);
            } else if let Some(file) = &s.password_file {
                let text = std::fs::read_to_string(file).map_err(|e| {
                    ConfigError::invalid(
                        format!("servers[{i}].password_file"),
                        format!("cannot read {}: {e}", file.display()),
                    )
                })?;
                s.password = Some(text.lines().next().unwrap_or("").to_string());
            }
        }
        self.bus.resolve_password()
    }

    /// Checks every rule that does not need a server connection.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.metrics_addr()?;
        if let Some(api) = &self.api {
            api.validate()?;
        }
        self.backup.validate()?;
        self.health.validate()?;
        self.bus.validate()?;
        self.coordinator.validate()?;
        if let Some(d) = &self.migrations.dir {
            if !d.is_absolute() {
                return Err(ConfigError::invalid(
                    "migrations.dir",
                    "must be an absolute path",
                ));
            }
        }
        if self.coordinator.group.is_some() && self.bus.kind != BusKind::Kafka {
            return Err(ConfigError::invalid(
                "coordinator.group",
                "needs [bus] kind = \"kafka\" (coordinators share pairs through a Kafka group)",
            ));
        }
        let mut names = HashSet::new();
        for (i, s) in self.servers.iter().enumerate() {
            let field = format!("servers[{i}]");
            if !valid_name(&s.name) {
                return Err(ConfigError::invalid(
                    format!("{field}.name"),
                    "must be 1-64 characters of letters, digits, '_' or '-'",
                ));
            }
            if !names.insert(s.name.as_str()) {
                return Err(ConfigError::invalid(
                    format!("{field}.name"),
                    format!("duplicate server name {:?}", s.name),
                ));
            }
            if !s.url.starts_with("mysql://") {
                return Err(ConfigError::invalid(
                    format!("{field}.url"),
                    "must start with mysql:// (e.g. mysql://user@127.0.0.1:3306)",
                ));
            }
            if s.password_env.is_some() && s.password_file.is_some() {
                return Err(ConfigError::invalid(
                    field,
                    "set at most one of password_env and password_file",
                ));
            }
            tls::validate_server_tls(s)?;
        }
        let mut sync_names = HashSet::new();
        for (i, s) in self.syncs.iter().enumerate() {
            let field = format!("syncs[{i}]");
            // An expanded group member's name is `group.member` (see `expand_groups`).
            if s.group.is_none() && !valid_name(&s.name) {
                return Err(ConfigError::invalid(
                    format!("{field}.name"),
                    "must be 1-64 characters of letters, digits, '_' or '-'",
                ));
            }
            if !sync_names.insert(s.name.as_str()) {
                return Err(ConfigError::invalid(
                    format!("{field}.name"),
                    format!("duplicate sync name {:?}", s.name),
                ));
            }
            if s.mode == SyncMode::Bidirectional {
                self.validate_group(&field, s)?;
            } else if !s.members.is_empty() {
                return Err(ConfigError::invalid(
                    format!("{field}.members"),
                    "only for mode = \"bidirectional\" (a one-way sync has source and targets)",
                ));
            } else if s.tombstone_gc_every.is_some() || s.tombstone_gc_bound.is_some() {
                return Err(ConfigError::invalid(
                    format!("{field}.tombstone_gc_every/tombstone_gc_bound"),
                    "only for mode = \"bidirectional\" (a one-way sync keeps no tombstones)",
                ));
            } else if s.source.is_empty() {
                return Err(ConfigError::invalid(
                    format!("{field}.source"),
                    "required (or mode = \"bidirectional\" with members)",
                ));
            } else if self.server(&s.source).is_none() {
                return Err(ConfigError::invalid(
                    format!("{field}.source"),
                    format!("no server named {:?} in [[servers]]", s.source),
                ));
            }
            if s.mode == SyncMode::OneWay && s.targets.is_empty() {
                return Err(ConfigError::invalid(
                    format!("{field}.targets"),
                    "must name at least one server",
                ));
            }
            let mut seen = HashSet::new();
            for t in &s.targets {
                if self.server(t).is_none() {
                    return Err(ConfigError::invalid(
                        format!("{field}.targets"),
                        format!("no server named {t:?} in [[servers]]"),
                    ));
                }
                if t == &s.source {
                    return Err(ConfigError::invalid(
                        format!("{field}.targets"),
                        format!("{t:?} is the sync's source"),
                    ));
                }
                if !seen.insert(t) {
                    return Err(ConfigError::invalid(
                        format!("{field}.targets"),
                        format!("{t:?} listed twice"),
                    ));
                }
            }
            if s.batch_rows == 0 || s.batch_rows > 1_000_000 {
                return Err(ConfigError::invalid(
                    format!("{field}.batch_rows"),
                    "must be between 1 and 1000000",
                ));
            }
            if s.queue_transactions == 0 {
                return Err(ConfigError::invalid(
                    format!("{field}.queue_transactions"),
                    "must be at least 1",
                ));
            }
            if s.queue_rows == 0 {
                return Err(ConfigError::invalid(
                    format!("{field}.queue_rows"),
                    "must be at least 1",
                ));
            }
            if s.queue_bytes < MIN_QUEUE_BYTES {
                return Err(ConfigError::invalid(
                    format!("{field}.queue_bytes"),
                    format!("must be at least {MIN_QUEUE_BYTES} (1 MiB)"),
                ));
            }
            if s.snapshot_chunk_rows == 0 {
                return Err(ConfigError::invalid(
                    format!("{field}.snapshot_chunk_rows"),
                    "must be at least 1",
                ));
            }
            if s.apply_lanes == 0 || s.apply_lanes > MAX_APPLY_LANES {
                return Err(ConfigError::invalid(
                    format!("{field}.apply_lanes"),
                    format!("must be between 1 and {MAX_APPLY_LANES}"),
                ));
            }
            if s.apply_lanes > 1
                && (s.mode == SyncMode::Bidirectional || !s.conflict_policy()?.is_none())
            {
                return Err(ConfigError::invalid(
                    format!("{field}.apply_lanes"),
                    "must be 1 for a bidirectional sync or one with conflict detection \
                     (their ordering rules are not proven safe with parallel lanes)",
                ));
            }
            if let Some(expr) = &s.schedule {
                parse_schedule(expr)
                    .map_err(|e| ConfigError::invalid(format!("{field}.schedule"), e))?;
            }
            s.filter()?;
            s.table_map()?;
        }
        self.validate_conflicts()?;
        Ok(())
    }
}

/// Parses a cron expression (seconds optional).
pub fn parse_schedule(expr: &str) -> Result<croner::Cron, String> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .build()
        .parse(expr)
        .map_err(|e| format!("invalid cron expression {expr:?}: {e}"))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests;
