//! Definitions made over the API: servers and syncs kept in a file store under `state_dir`
//! (`api/definitions.json`), merged with the configuration file's into the effective
//! [`Config`].
//!
//! Why here and not in the config crate: a change is checked with the start-up preflight
//! (`preflight`, `definitions`: connections to the servers), and passwords are sealed with the
//! backup crypto of the agent crate; the config crate stays pure (parse and validate).
//!
//! Invariants:
//! * The file's definitions are read-only here; a name defined in the file cannot be used by an
//!   API definition (a sync name also not as a group's name).
//! * Every change is checked on the merged configuration ([`Config::validate`], and for a sync
//!   the preflight of that sync) before anything is written: a refused change leaves the store
//!   and the running syncs untouched.
//! * The store is replaced atomically (written beside, fsynced, renamed), owner-only.
//! * Passwords are stored sealed with `[api] secret_key_file` (XChaCha20-Poly1305, the
//!   server's name as associated data); without a key file a server with a password is refused.
//!   They are never returned, logged or exported.
//! * Changes are serialised (one at a time); the effective configuration is published on a
//!   watch channel that `fleetsync run`'s supervisor follows (and, on Kafka, the supervisors of
//!   `fleetsync coordinator` and `fleetsync agent`).
//! * On Kafka the store is the definitions topic, read by a thread that follows it for as
//!   long as the [`Defs`] lives; a change is written made from the last applied write (its
//!   base) and takes effect only if no other write landed first (`kafka.rs`): else
//!   [`DefsError::Conflict`], nothing changed.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use fleetsync_agent::backup::crypto::{self, Key};
use fleetsync_agent::owner_only;
use fleetsync_config::{Config, ConfigError, Server, SyncConfig, SyncMode};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::watch;

mod change;
mod export;
mod kafka;
mod plan;
mod schedules;
mod store;

use export::push_fields;
pub use export::without_nulls;
pub use plan::SyncTables;
use plan::{added_tables, sync_tables, uncovered_tables};
use schedules::check_schedules;
pub use schedules::{Schedule, ScheduleKind};
use store::{aad, affected_syncs, field_str, merge, name_of, parse_store, store_text};

/// Version of the store file's format.
const STORE_VERSION: u32 = 1;
/// How long a change waits for `fleetsync run`'s supervisor to have started, restarted or
/// stopped the pipelines it affects: a stop waits up to the run's grace period (10 s) for the
/// batch in flight.
const APPLIED_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Where an effective definition comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    File,
    Api,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::File => "file",
            Origin::Api => "api",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DefsError {
    #[error("no {kind} named {name:?}")]
    NotFound { kind: &'static str, name: String },
    #[error("{kind} {name:?} is defined in the configuration file: read-only over the API")]
    ReadOnly { kind: &'static str, name: String },
    #[error("a {kind} named {name:?} exists already")]
    Exists { kind: &'static str, name: String },
    #[error("{kind} {name:?} is used by {sync}: delete or change it first")]
    InUse {
        kind: &'static str,
        name: String,
        sync: String,
    },
    #[error("{field}: {rule}")]
    Invalid { field: String, rule: String },
    #[error("preflight: {0}")]
    Preflight(String),
    #[error("under the Kafka bus the agent of {server} snapshots that server once, with the tables its syncs select then: {tables} (selected by no other sync of {server}) would get only their later changes through sync {sync:?}, not their existing rows; select only tables that another sync of {server} selects, or use a source no other sync reads")]
    NotSnapshotted {
        sync: String,
        server: String,
        tables: String,
    },
    #[error("the update adds {tables} to sync {sync:?}: their existing rows would not be copied (only later changes flow); send it with ?resnapshot=true to copy every table of the sync again after the update, or put the new tables in a sync of their own")]
    AddsTables { sync: String, tables: String },
    #[error("definition store {place}: {message}")]
    Store { place: String, message: String },
    /// Another process changed the shared store (Kafka) between this change's read and its
    /// write: this one did not take effect.
    #[error("conflict, retry: {0}")]
    Conflict(String),
}

impl DefsError {
    fn invalid(field: impl Into<String>, rule: impl Into<String>) -> Self {
        DefsError::Invalid {
            field: field.into(),
            rule: rule.into(),
        }
    }
}

impl From<ConfigError> for DefsError {
    fn from(e: ConfigError) -> Self {
        match e {
            ConfigError::Invalid { field, rule } => DefsError::Invalid { field, rule },
            other => DefsError::invalid("", other.to_string()),
        }
    }
}

/// A server as stored: its fields as given (no password), and the sealed password.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredServer {
    pub fields: Map<String, Value>,
    /// base64 of the sealed password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_password: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreFile {
    version: u32,
    servers: Vec<StoredServer>,
    /// Each sync's fields as given (a `[[syncs]]` entry), nulls dropped.
    syncs: Vec<Map<String, Value>>,
    /// Cron entries made over the API (no file counterpart).
    #[serde(default)]
    schedules: Vec<Schedule>,
}

/// What a change did (or would do, on a dry run).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Plan {
    /// `create`, `update` or `delete`.
    pub action: String,
    /// `server` or `sync`.
    pub kind: String,
    pub name: String,
    /// True: nothing was changed.
    pub dry_run: bool,
    /// Syncs whose pipelines start, restart or stop because of it (`fleetsync run`).
    pub affected_syncs: Vec<String>,
    /// For a created or changed sync: what its filter selects and what the targets get.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tables: Option<SyncTables>,
}

/// One change of the store.
pub enum Change {
    /// A server's fields (no `password` key) and its new password (`None`: keep the stored
    /// one on an update).
    PutServer {
        create: bool,
        fields: Map<String, Value>,
        password: Option<String>,
    },
    DeleteServer(String),
    PutSync {
        create: bool,
        fields: Map<String, Value>,
    },
    DeleteSync(String),
    PutSchedule {
        create: bool,
        schedule: Schedule,
    },
    DeleteSchedule(String),
}

struct State {
    store: StoreFile,
    schedules: Arc<Vec<Schedule>>,
    effective: Arc<Config>,
}

/// The definition store and the effective configuration.
pub struct Defs {
    /// The configuration file's definitions (loaded, groups expanded).
    file: Config,
    path: PathBuf,
    /// With `[bus] kind = "kafka"`: the compacted topic that holds the store (the file at
    /// `path` is then unused).
    kafka: Option<kafka::KafkaStore>,
    key: Option<Key>,
    state: Mutex<State>,
    /// One change at a time (a change's preflight is async).
    changing: tokio::sync::Mutex<()>,
    /// The effective configuration and its generation (one more per applied change).
    tx: watch::Sender<(u64, Arc<Config>)>,
    /// The generation the supervisor has brought the pipelines to (`fleetsync run` only).
    applied: watch::Sender<u64>,
    supervised: std::sync::atomic::AtomicBool,
    /// `once` and `resnapshot` requests to the supervisor (`fleetsync run` only).
    ops: std::sync::OnceLock<tokio::sync::mpsc::Sender<crate::run::SyncRequest>>,
    /// With Kafka: how far the topic has been read, and what became of the last writes.
    follow: Mutex<Followed>,
    /// The offset after the last message of the topic read (Kafka), for read-your-own-write.
    read_to: watch::Sender<i64>,
}

/// What the reader of the Kafka store has seen (see `kafka.rs`).
#[derive(Default)]
struct Followed {
    /// The base of the next write: the offset of the last applied one (`-1`: none).
    applied: i64,
    /// The last writes read, and what became of them.
    recent: std::collections::VecDeque<(i64, Seen)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// Not applied (made from an older state than the last applied write).
    Ignored,
    /// Applied: the generation of the effective configuration it made.
    Applied(u64),
    /// Applied, but it does not fit this process's configuration file (logged).
    Unusable,
}

/// The reader's thread (Kafka store): applies each write of the chain as it comes, for as long
/// as the [`Defs`] lives.
fn follow(defs: std::sync::Weak<Defs>, mut reader: kafka::Reader) {
    let mut failing = false;
    loop {
        let Some(d) = defs.upgrade() else { return };
        match reader.poll() {
            Ok(None) => failing = false,
            Ok(Some(r)) => {
                failing = false;
                let seen = if r.applied {
                    d.take_write(r.offset, r.text.as_deref())
                } else {
                    if r.text.is_some() {
                        tracing::info!(offset = r.offset, "definition store: a write made from an older state is ignored (it lost a race)");
                    }
                    Seen::Ignored
                };
                if let Ok(mut f) = d.follow.lock() {
                    if r.applied {
                        f.applied = r.offset;
                    }
                    f.recent.push_back((r.offset, seen));
                    while f.recent.len() > RECENT {
                        f.recent.pop_front();
                    }
                }
                d.read_to.send_replace(r.offset + 1);
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "definition store: cannot read the topic; retrying");
                }
                failing = true;
                drop(d);
                std::thread::sleep(kafka::POLL);
            }
        }
    }
}

/// How many of the last writes [`Followed::recent`] keeps.
const RECENT: usize = 256;

pub fn store_path(state_dir: &Path) -> PathBuf {
    state_dir.join("api").join("definitions.json")
}

impl Defs {
    /// Opens the store of `file.state_dir` (empty when absent) and merges it with `file`.
    /// Fails when the store cannot be read or decrypted, or its definitions no longer fit the
    /// file (e.g. the file now defines a name the API used).
    pub fn open(file: Config) -> Result<Defs, DefsError> {
        let path = store_path(&file.state_dir);
        let place = path.display().to_string();
        let store = match std::fs::read_to_string(&path) {
            Ok(text) => parse_store(&text, &place)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => StoreFile {
                version: STORE_VERSION,
                ..Default::default()
            },
            Err(e) => {
                return Err(DefsError::Store {
                    place,
                    message: e.to_string(),
                })
            }
        };
        Defs::build(file, store, place, None)
    }

    /// The store of `file`'s bus: the compacted Kafka topic with `[bus] kind = "kafka"`
    /// (shared by the coordinators of those brokers; created when missing if `create`, else
    /// taken as empty), else the file under `state_dir`.
    pub async fn open_for(file: Config, create: bool) -> Result<Arc<Defs>, DefsError> {
        if file.bus.kind != fleetsync_config::BusKind::Kafka {
            return Defs::open(file).map(Arc::new);
        }
        let Some(store) = kafka::KafkaStore::open(&file.bus, create).await? else {
            return Defs::build(
                file,
                StoreFile {
                    version: STORE_VERSION,
                    ..Default::default()
                },
                "kafka (no definitions topic yet)".into(),
                None,
            )
            .map(Arc::new);
        };
        let place = store.place();
        let mut reader = store.reader()?;
        // The topic from its start to its end: the applied writes, in order.
        let p = place.clone();
        let (reader, loaded, read_to) = tokio::task::spawn_blocking(move || {
            let end = reader.end()?;
            let deadline = std::time::Instant::now() + kafka::TIMEOUT;
            let (mut last, mut read_to) = (None, 0);
            while read_to < end {
                if std::time::Instant::now() > deadline {
                    return Err(format!(
                        "the topic was not read to its end within {:?}",
                        kafka::TIMEOUT
                    ));
                }
                if let Some(r) = reader.poll()? {
                    read_to = r.offset + 1;
                    if r.applied {
                        last = r.text;
                    }
                }
            }
            Ok((reader, last, read_to))
        })
        .await
        .map_err(|e| DefsError::Store {
            place: p.clone(),
            message: e.to_string(),
        })?
        .map_err(|message| DefsError::Store { place: p, message })?;
        let loaded = match loaded {
            Some(text) => parse_store(&text, &place)?,
            None => StoreFile {
                version: STORE_VERSION,
                ..Default::default()
            },
        };
        let applied = reader.applied();
        let defs = Arc::new(Defs::build(file, loaded, place, Some(store))?);
        if let Ok(mut f) = defs.follow.lock() {
            f.applied = applied;
        }
        defs.read_to.send_replace(read_to);
        let weak = Arc::downgrade(&defs);
        std::thread::Builder::new()
            .name("definitions".into())
            .spawn(move || follow(weak, reader))
            .map_err(|e| DefsError::Store {
                place: "definitions reader".into(),
                message: e.to_string(),
            })?;
        Ok(defs)
    }

    fn build(
        file: Config,
        store: StoreFile,
        place: String,
        kafka: Option<kafka::KafkaStore>,
    ) -> Result<Defs, DefsError> {
        let path = store_path(&file.state_dir);
        let key = match file.api.as_ref().and_then(|a| a.secret_key_file.as_ref()) {
            Some(f) => {
                Some(Key::from_file(f).map_err(|m| DefsError::invalid("api.secret_key_file", m))?)
            }
            None => None,
        };
        // Named after the store: the file may have taken a name the API used since.
        let in_store = |e: DefsError| DefsError::Store {
            place: place.clone(),
            message: format!("its definitions no longer fit the configuration: {e}"),
        };
        let effective = merge(&file, &store, key.as_ref()).map_err(in_store)?;
        check_schedules(&effective, &store.schedules).map_err(in_store)?;
        let (tx, _) = watch::channel((0, Arc::new(effective.clone())));
        let (applied, _) = watch::channel(0);
        Ok(Defs {
            file,
            path,
            kafka,
            key,
            state: Mutex::new(State {
                schedules: Arc::new(store.schedules.clone()),
                store,
                effective: Arc::new(effective),
            }),
            changing: tokio::sync::Mutex::new(()),
            tx,
            applied,
            supervised: std::sync::atomic::AtomicBool::new(false),
            ops: std::sync::OnceLock::new(),
            follow: Mutex::new(Followed {
                applied: -1,
                ..Default::default()
            }),
            read_to: watch::channel(0).0,
        })
    }

    /// The effective configuration: the file's definitions and the API's.
    pub fn effective(&self) -> Arc<Config> {
        self.state
            .lock()
            .map(|s| s.effective.clone())
            .unwrap_or_else(|p| p.into_inner().effective.clone())
    }

    /// The schedules made over the API.
    pub fn schedules(&self) -> Arc<Vec<Schedule>> {
        self.state
            .lock()
            .map(|s| s.schedules.clone())
            .unwrap_or_else(|p| p.into_inner().schedules.clone())
    }

    /// Follows the effective configuration (a new value after each applied change), for the
    /// supervisor of `fleetsync run`, which reports each generation it has applied with
    /// [`Defs::applied`]: a change answers once its pipelines started, restarted or stopped.
    pub fn subscribe(&self) -> watch::Receiver<(u64, Arc<Config>)> {
        self.supervised
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.tx.subscribe()
    }

    /// Where `once` and `resnapshot` requests go (set by `fleetsync run`'s supervisor).
    pub fn attach_ops(&self, tx: tokio::sync::mpsc::Sender<crate::run::SyncRequest>) {
        let _ = self.ops.set(tx);
    }

    /// The supervisor's request channel; `None` outside `fleetsync run`.
    pub fn ops(&self) -> Option<tokio::sync::mpsc::Sender<crate::run::SyncRequest>> {
        self.ops.get().cloned()
    }

    /// The supervisor brought the pipelines to generation `generation`.
    pub fn applied(&self, generation: u64) {
        self.applied.send_replace(generation);
    }

    /// An API-made sync's fields as stored (`None`: no such sync made over the API).
    pub fn api_sync_fields(&self, name: &str) -> Option<Map<String, Value>> {
        let state = self.state.lock().ok()?;
        state
            .store
            .syncs
            .iter()
            .find(|m| m.get("name").and_then(Value::as_str) == Some(name))
            .cloned()
    }

    pub fn server_origin(&self, name: &str) -> Origin {
        if self.file.server(name).is_some() {
            Origin::File
        } else {
            Origin::Api
        }
    }

    pub fn sync_origin(&self, name: &str) -> Origin {
        if self.file.syncs.iter().any(|s| s.name == name) {
            Origin::File
        } else {
            Origin::Api
        }
    }

    /// The API's definitions as TOML (`[[servers]]` and `[[syncs]]` entries). Passwords are
    /// omitted: a comment names each server that has one.
    pub fn export_toml(&self) -> String {
        let store = self
            .state
            .lock()
            .map(|s| s.store.clone())
            .unwrap_or_else(|p| p.into_inner().store.clone());
        let mut out = String::from(
            "# fleetsync: definitions made over the API (GET /api/v1/config/export).\n\
             # Passwords are not exported: give each server marked below one\n\
             # (password_env, password_file, or in the url) before using this file.\n",
        );
        for s in &store.servers {
            out.push_str("\n[[servers]]\n");
            if s.sealed_password.is_some() {
                out.push_str("# password: not exported (set password_env or password_file)\n");
            }
            push_fields(&mut out, &s.fields);
        }
        for s in &store.syncs {
            out.push_str("\n[[syncs]]\n");
            push_fields(&mut out, s);
        }
        out
    }

    /// Checks `change` on the merged configuration and, unless `dry_run`, stores it and
    /// publishes the new effective configuration. `preflight` runs for a created or updated
    /// sync (the start-up checks of that sync, against the servers).
    pub async fn apply(&self, change: Change, dry_run: bool) -> Result<Plan, DefsError> {
        self.apply_with(change, dry_run, false).await
    }

    /// [`Defs::apply`]; `adds_tables`: an update of a running sync may make its filter select
    /// tables it did not (else refused: the snapshot was taken without them, so their
    /// existing rows would never be copied — the caller re-snapshots the sync after it).
    pub async fn apply_with(
        &self,
        change: Change,
        dry_run: bool,
        adds_tables: bool,
    ) -> Result<Plan, DefsError> {
        let _one = self.changing.lock().await;
        // Another process may have changed the shared store: read the topic to its end first.
        let base = match &self.kafka {
            Some(k) => {
                let end = k.end().await?;
                self.read_until(end, k).await?;
                self.follow.lock().map(|f| f.applied).unwrap_or(-1)
            }
            None => -1,
        };
        let mut store = self.snapshot_store();
        let old = self.effective();
        let (action, kind, name) = self.change_store(&mut store, change)?;
        let effective = merge(&self.file, &store, self.key.as_ref())?;
        check_schedules(&effective, &store.schedules)?;
        let affected = if kind == "schedule" {
            Vec::new()
        } else {
            affected_syncs(&old, &effective, &name, kind)
        };
        let mut tables = None;
        if kind == "sync" && action != "delete" {
            let mut probe = effective.clone();
            probe.syncs.retain(|s| s.name == name);
            crate::preflight::preflight_all(&probe)
                .await
                .map_err(|e| DefsError::Preflight(crate::exit::one_line(e.as_ref())))?;
            if let Some(sync) = probe.syncs.first() {
                let now = sync_tables(&probe, sync)
                    .await
                    .map_err(|e| DefsError::Preflight(crate::exit::one_line(e.as_ref())))?;
                if self.kafka.is_some() {
                    // The agent snapshots a source once: no re-snapshot over the API there.
                    uncovered_tables(&old, &name, &now).await?;
                } else if action == "update" && !adds_tables {
                    added_tables(&old, &name, &now).await?;
                }
                tables = Some(now);
            }
        }
        if !dry_run {
            let mut acks = self.applied.subscribe();
            let generation = match &self.kafka {
                // The reader applies it (or not: another write landed first).
                Some(k) => self.write_kafka(k, &store, base).await?,
                None => {
                    self.save(&store)?;
                    self.publish(store, Arc::new(effective))
                }
            };
            tracing::info!(kind, name = %name, action, "definition changed over the API");
            if self.supervised.load(std::sync::atomic::Ordering::Relaxed) {
                let done = tokio::time::timeout(APPLIED_WAIT, acks.wait_for(|g| *g >= generation));
                if done.await.is_err() {
                    tracing::warn!(name = %name, "the pipelines did not follow the change within {APPLIED_WAIT:?}; they will");
                }
            }
        }
        Ok(Plan {
            action: action.into(),
            kind: kind.into(),
            name,
            dry_run,
            affected_syncs: affected,
            tables,
        })
    }

    /// Makes `store` + `effective` the current definitions; returns its generation.
    fn publish(&self, store: StoreFile, effective: Arc<Config>) -> u64 {
        if let Ok(mut s) = self.state.lock() {
            s.schedules = Arc::new(store.schedules.clone());
            s.store = store;
            s.effective = effective.clone();
        }
        let generation = self.tx.borrow().0 + 1;
        self.tx.send_replace((generation, effective));
        generation
    }

    /// Waits until the reader has read the topic up to `end` (exclusive).
    async fn read_until(&self, end: i64, k: &kafka::KafkaStore) -> Result<(), DefsError> {
        let mut rx = self.read_to.subscribe();
        tokio::time::timeout(kafka::TIMEOUT, rx.wait_for(|r| *r >= end))
            .await
            .map(|_| ())
            .map_err(|_| DefsError::Store {
                place: k.place(),
                message: format!(
                    "the topic was not read up to offset {end} within {:?}",
                    kafka::TIMEOUT
                ),
            })
    }

    /// Writes `store` made from `base`, reads it back: its generation when applied, else
    /// [`DefsError::Conflict`] (after writing the winning store again on top of it, so that
    /// compaction keeps a write of the chain).
    async fn write_kafka(
        &self,
        k: &kafka::KafkaStore,
        store: &StoreFile,
        base: i64,
    ) -> Result<u64, DefsError> {
        let offset = k.save(&store_text(store, &k.place())?, base).await?;
        self.read_until(offset + 1, k).await?;
        let outcome = self.outcome(offset);
        if let Some(Seen::Applied(generation)) = outcome {
            return Ok(generation);
        }
        if outcome == Some(Seen::Unusable) {
            // Applied by the others, but this process could not use it (its file changed?).
            return Err(DefsError::Store {
                place: k.place(),
                message: "the change was written but does not fit this process's configuration file (see its log)".into(),
            });
        }
        tracing::warn!(
            offset,
            base,
            "a definition change lost a race with another writer: not applied"
        );
        for _ in 0..3 {
            let winner = self.snapshot_store();
            let on = self.follow.lock().map(|f| f.applied).unwrap_or(-1);
            let again = k.save(&store_text(&winner, &k.place())?, on).await?;
            self.read_until(again + 1, k).await?;
            if self.outcome(again).is_some_and(|o| o != Seen::Ignored) {
                break;
            }
        }
        Err(DefsError::Conflict(
            "another coordinator changed the definitions at the same time; nothing was changed: read them again and retry".into(),
        ))
    }

    /// What became of the write at `offset` (`None`: not read, or too long ago).
    fn outcome(&self, offset: i64) -> Option<Seen> {
        let f = self.follow.lock().ok()?;
        f.recent.iter().find(|(o, _)| *o == offset).map(|(_, s)| *s)
    }

    /// An applied write of the Kafka store: parsed, merged with the file, published.
    fn take_write(&self, offset: i64, text: Option<&str>) -> Seen {
        let place = format!("kafka offset {offset}");
        let store = match text {
            Some(t) => parse_store(t, &place),
            // A tombstone: no definitions.
            None => Ok(StoreFile {
                version: STORE_VERSION,
                ..Default::default()
            }),
        };
        let merged = store.and_then(|store| {
            let effective = merge(&self.file, &store, self.key.as_ref())?;
            check_schedules(&effective, &store.schedules)?;
            Ok((store, effective))
        });
        match merged {
            Ok((store, effective)) => {
                let generation = self.publish(store, Arc::new(effective));
                tracing::info!(offset, generation, "definitions changed (definition store)");
                Seen::Applied(generation)
            }
            Err(e) => {
                tracing::error!(offset, error = %e, "the definition store's latest write does not fit this configuration file: keeping the previous definitions");
                Seen::Unusable
            }
        }
    }

    fn snapshot_store(&self) -> StoreFile {
        self.state
            .lock()
            .map(|s| s.store.clone())
            .unwrap_or_else(|p| p.into_inner().store.clone())
    }
}

#[cfg(test)]
mod tests;
