//! The API's control-plane state on Kafka (`fleetsync coordinator` and `fleetsync token` with
//! `[bus] kind = "kafka"`), so that any number of coordinator replicas serve the same API with
//! nothing on local disk across restarts. (`fleetsync run`, the embedded bus, keeps its files
//! under `state_dir`.)
//!
//! * **Tokens**: the compacted topic `{topic_prefix}.config.tokens` (one partition), one
//!   message per token keyed by the token's SHA-256, its value the [`TokenRecord`] (name, role,
//!   hash, dates; never the token). A revocation writes the record again with `revoked` set;
//!   compaction keeps the last one. Every process reads the topic from its start when it
//!   opens, then follows it live (one poll every [`POLL`]), so a token made or revoked by any
//!   process is seen by every replica within about a second.
//! * **Audit log**: the topic `{topic_prefix}.config.audit` (one partition, so one order;
//!   `cleanup.policy=delete`, `retention.ms` [`AUDIT_RETENTION_MS`] when this creates it). An
//!   entry is written with `acks=all` before the answer leaves. Each replica follows the topic
//!   and keeps its last [`AUDIT_KEPT`] entries in memory: `GET /api/v1/audit` answers from
//!   them on any replica (older entries stay in the topic until its retention ends).
//! * **Jobs**: the compacted topic `{topic_prefix}.config.jobs`. A job runs on the replica
//!   that started it (its files and uploads stay in that replica's scratch `state_dir`);
//!   its owner writes its record (`job/<id>`: replica, job, log) at each state change, so
//!   every replica lists it. An approval, rejection or cancel asked of another replica is
//!   written as a command (`cmd/<id>`) that the owner follows, applies with its own checks,
//!   and answers by writing the record again ([`Command`]).
//!
//! Writers wait for their own reader to pass what they wrote, so a process reads its own
//! writes. Two `token create` of one name at the same moment on two processes can both
//! succeed (Kafka has no compare-and-set); `token revoke` revokes every active token of the
//! name. Blocking calls (metadata, reads) run off the async runtime; the readers are threads.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use fleetsync_config::BusConfig;
use rdkafka::admin::{AdminClient, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use tokio::sync::watch;

use fleetsync_proto::jobs::{Job, JobLogLine};
use serde::{Deserialize, Serialize};

use super::audit::AuditEntry;
use super::tokens::TokenRecord;

/// Suffix of the tokens topic (after `{topic_prefix}.`); a server name has no `.`, so no change
/// topic can take this name.
pub const TOKENS_SUFFIX: &str = "config.tokens";
/// Suffix of the audit topic.
pub const AUDIT_SUFFIX: &str = "config.audit";
/// Suffix of the jobs topic.
pub const JOBS_SUFFIX: &str = "config.jobs";
/// `retention.ms` of the audit topic when fleetsync creates it: 90 days, a common minimum for
/// an audit trail; set the topic's retention to keep more (the brokers then keep it).
pub const AUDIT_RETENTION_MS: i64 = 90 * 24 * 3600 * 1000;
/// Audit entries each replica keeps in memory for `GET /api/v1/audit` (about 10 MB, the size
/// of one rotated file of the file log).
pub const AUDIT_KEPT: usize = 20_000;
/// Longest wait for the brokers (metadata, a read to the end, a write's acknowledgement).
const TIMEOUT: Duration = Duration::from_secs(30);
/// One poll of a reader: how stale a replica's view is, at most, after a write is acknowledged.
pub const POLL: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
#[error("kafka topic {topic}: {message}")]
pub struct StateError {
    topic: String,
    message: String,
}

/// One topic: its name, a producer, and the view its reader thread keeps.
struct Topic {
    name: String,
    config: ClientConfig,
    producer: FutureProducer,
    redactor: fleetsync_config::Redactor,
    /// The offset after the last message read (for read-your-writes).
    read_to: watch::Sender<i64>,
    /// Whether this process follows the topic (a write then waits until it is read back).
    followed: std::sync::atomic::AtomicBool,
}

impl Topic {
    fn fail(&self, m: impl std::fmt::Display) -> StateError {
        StateError {
            topic: self.name.clone(),
            message: self.redactor.apply(&m.to_string()),
        }
    }

    /// Connects and creates the topic when missing (`compact`: compacted, else deleted after
    /// [`AUDIT_RETENTION_MS`]).
    async fn open(bus: &BusConfig, suffix: &str, compact: bool) -> Result<Topic, StateError> {
        let name = format!("{}.{suffix}", bus.topic_prefix);
        let redactor = bus.redactor();
        let fail = |m: String| StateError {
            topic: name.clone(),
            message: redactor.apply(&m),
        };
        let mut config = crate::kafka_topics::client_config(bus);
        config.set("allow.auto.create.topics", "false");
        let (probe, t) = (config.clone(), name.clone());
        let brokers = bus.brokers.clone().unwrap_or_default();
        let exists = tokio::task::spawn_blocking(move || -> Result<bool, String> {
            let consumer: BaseConsumer = probe.create().map_err(|e| e.to_string())?;
            let md = consumer.fetch_metadata(Some(&t), TIMEOUT).map_err(|e| {
                format!(
                    "cannot read the metadata of the brokers {brokers} (are they reachable?): {e}"
                )
            })?;
            Ok(md
                .topics()
                .iter()
                .any(|mt| mt.name() == t && mt.error().is_none() && !mt.partitions().is_empty()))
        })
        .await
        .map_err(|e| fail(e.to_string()))?
        .map_err(fail)?;
        if !exists {
            let admin: AdminClient<DefaultClientContext> =
                config.create().map_err(|e| fail(e.to_string()))?;
            let min_isr = bus.min_insync_replicas().to_string();
            let retention = AUDIT_RETENTION_MS.to_string();
            let mut new = NewTopic::new(&name, 1, TopicReplication::Fixed(bus.replication_factor))
                .set("min.insync.replicas", &min_isr);
            new = if compact {
                new.set("cleanup.policy", "compact")
            } else {
                new.set("cleanup.policy", "delete")
                    .set("retention.ms", &retention)
            };
            crate::kafka_topics::create_if_missing(&admin, &new, TIMEOUT)
                .await
                .map_err(fail)?;
            tokio::task::spawn_blocking(move || drop(admin));
            tracing::info!(topic = %name, "created a control-plane state topic");
        }
        let producer: FutureProducer = config
            .clone()
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .create()
            .map_err(|e| fail(e.to_string()))?;
        let (read_to, _) = watch::channel(0);
        Ok(Topic {
            name,
            config,
            producer,
            redactor,
            read_to,
            followed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Writes one message; returns once the brokers acknowledged it and this process's reader
    /// read past it.
    async fn append(&self, key: &str, payload: &str) -> Result<(), StateError> {
        let record = FutureRecord::to(&self.name).key(key).payload(payload);
        let offset = self
            .producer
            .send(record, TIMEOUT)
            .await
            .map(|d| d.offset)
            .map_err(|(e, _)| self.fail(format!("cannot write: {e}")))?;
        if !self.followed.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
        let mut read = self.read_to.subscribe();
        tokio::time::timeout(TIMEOUT, read.wait_for(|r| *r > offset))
            .await
            .map_err(|_| self.fail("written, but not read back within 30 s"))?
            .map_err(|_| self.fail("its reader stopped"))?;
        Ok(())
    }

    /// A consumer of partition 0 from `start` (`None`: the beginning, else that many messages
    /// before the end), and the end to read to before the view is complete. Blocking.
    fn consumer(&self, last: Option<usize>) -> Result<(BaseConsumer, i64, i64), String> {
        let consumer: BaseConsumer = self
            .config
            .clone()
            .set("group.id", "fleetsync-control-plane")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .create()
            .map_err(|e| e.to_string())?;
        let (low, high) = fleetsync_agent::publish::kafka::watermarks_when_ready(
            &consumer, &self.name, 0, TIMEOUT,
        )
        .map_err(|e| format!("cannot read the topic's offsets: {e}"))?;
        let from = match last {
            None => low,
            Some(n) => start_offset(low, high, n),
        };
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.name, 0, Offset::Offset(from))
            .map_err(|e| e.to_string())?;
        consumer.assign(&tpl).map_err(|e| e.to_string())?;
        Ok((consumer, from, high))
    }
}

/// Where to start reading to get the last `n` messages of a partition `[low, high)`.
fn start_offset(low: i64, high: i64, n: usize) -> i64 {
    let n = i64::try_from(n).unwrap_or(i64::MAX);
    high.saturating_sub(n).max(low)
}

/// The tokens as read from the topic: the last record of each hash, in first-seen order.
#[derive(Debug, Default)]
pub struct TokenView(Vec<TokenRecord>);

impl TokenView {
    /// Applies one message (`None`: a tombstone or an unreadable value, logged by the caller).
    pub fn apply(&mut self, key: &str, record: Option<TokenRecord>) {
        match record {
            Some(r) => match self.0.iter_mut().find(|t| t.sha256 == key) {
                Some(t) => *t = r,
                None => self.0.push(r),
            },
            None => self.0.retain(|t| t.sha256 != key),
        }
    }
}

/// A job's record as shared: which replica runs it, the job, its log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SharedJob {
    pub replica: String,
    pub job: Job,
    pub log: Vec<JobLogLine>,
}

/// What another replica asks of a job's owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Approve,
    Reject,
    Cancel,
}

/// A command for the owner of job `id` (`replica`), by the token `by`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Command {
    pub replica: String,
    pub id: String,
    pub action: Action,
    pub by: String,
}

/// The control-plane state of one fleet on its brokers (see the module doc).
pub struct KafkaState {
    /// This process's name among the replicas: `FLEETSYNC_REPLICA` (the chart sets the pod's
    /// name), else the host name, the process id and a random suffix.
    replica: String,
    tokens: Topic,
    audit: Topic,
    jobs: Topic,
    token_view: Mutex<TokenView>,
    audit_view: Mutex<VecDeque<AuditEntry>>,
    job_view: Mutex<std::collections::HashMap<String, SharedJob>>,
    /// Where commands for this replica's jobs go (set by the job manager).
    commands: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<Command>>,
}

/// The environment variable naming this replica (stable across a container's restarts in one
/// pod: its jobs left unfinished are then marked interrupted).
pub const REPLICA_ENV: &str = "FLEETSYNC_REPLICA";

fn replica_name() -> String {
    match std::env::var(REPLICA_ENV) {
        Ok(r) if !r.trim().is_empty() => r.trim().to_string(),
        _ => {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "host".into());
            format!(
                "{host}-{}-{:04x}",
                std::process::id(),
                rand::random::<u16>()
            )
        }
    }
}

impl KafkaState {
    /// Opens (creating when missing) the three topics, reads them to their end, and follows
    /// them.
    pub async fn open(bus: &BusConfig) -> Result<Arc<KafkaState>, StateError> {
        Self::open_following(bus, &[Which::Tokens, Which::Audit, Which::Jobs]).await
    }

    /// [`open`](Self::open) for `fleetsync token`: follows only the tokens (the audit and
    /// jobs topics are written, not read).
    pub async fn open_for_tokens(bus: &BusConfig) -> Result<Arc<KafkaState>, StateError> {
        Self::open_following(bus, &[Which::Tokens]).await
    }

    async fn open_following(
        bus: &BusConfig,
        topics: &[Which],
    ) -> Result<Arc<KafkaState>, StateError> {
        let (tokens, audit, jobs) = tokio::try_join!(
            Topic::open(bus, TOKENS_SUFFIX, true),
            Topic::open(bus, AUDIT_SUFFIX, false),
            Topic::open(bus, JOBS_SUFFIX, true)
        )?;
        let state = Arc::new(KafkaState {
            replica: replica_name(),
            tokens,
            audit,
            jobs,
            token_view: Mutex::new(TokenView::default()),
            audit_view: Mutex::new(VecDeque::new()),
            job_view: Mutex::new(Default::default()),
            commands: std::sync::OnceLock::new(),
        });
        for &which in topics {
            state
                .topic(which)
                .followed
                .store(true, std::sync::atomic::Ordering::Relaxed);
            let (tx, rx) = std::sync::mpsc::channel();
            let weak = Arc::downgrade(&state);
            let topic = state.topic(which);
            let name = format!("kstate-{}", topic.name);
            let consumer = {
                let last = (which == Which::Audit).then_some(AUDIT_KEPT);
                let s = state.clone();
                tokio::task::spawn_blocking(move || s.topic(which).consumer(last))
                    .await
                    .map_err(|e| topic.fail(e))?
                    .map_err(|m| topic.fail(m))?
            };
            std::thread::Builder::new()
                .name(name)
                .spawn(move || follow(weak, which, consumer, tx))
                .map_err(|e| topic.fail(e))?;
            // Read to the end before serving.
            let done = tokio::task::spawn_blocking(move || rx.recv_timeout(TIMEOUT))
                .await
                .map_err(|e| topic.fail(e))?;
            match done {
                Ok(Ok(())) => {}
                Ok(Err(m)) => return Err(topic.fail(m)),
                Err(_) => return Err(topic.fail("not read to its end within 30 s")),
            }
        }
        Ok(state)
    }

    fn topic(&self, which: Which) -> &Topic {
        match which {
            Which::Tokens => &self.tokens,
            Which::Audit => &self.audit,
            Which::Jobs => &self.jobs,
        }
    }

    /// This process's replica name.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// Publishes the record of one of this replica's jobs (`None`: it was deleted). Does not
    /// wait: a failed delivery is logged.
    pub fn publish_job(&self, id: &str, record: Option<(&Job, Vec<JobLogLine>)>) {
        let key = format!("job/{id}");
        let text = record.and_then(|(job, log)| {
            serde_json::to_string(&SharedJob {
                replica: self.replica.clone(),
                job: job.clone(),
                log,
            })
            .ok()
        });
        let rec = FutureRecord::<String, String>::to(&self.jobs.name).key(&key);
        let rec = match &text {
            Some(t) => rec.payload(t),
            None => rec,
        };
        match self.jobs.producer.send_result(rec) {
            Ok(delivery) => {
                if let Ok(h) = tokio::runtime::Handle::try_current() {
                    let id = id.to_string();
                    h.spawn(async move {
                        if !matches!(delivery.await, Ok(Ok(_))) {
                            tracing::warn!(job = %id, "cannot share the job's record on the jobs topic");
                        }
                    });
                }
            }
            Err((e, _)) => {
                tracing::warn!(job = %id, error = %e, "cannot share the job's record on the jobs topic")
            }
        }
    }

    /// The records of other replicas' jobs.
    pub fn remote_jobs(&self) -> Vec<SharedJob> {
        self.job_view
            .lock()
            .map(|v| {
                v.values()
                    .filter(|j| j.replica != self.replica)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The records this replica's name holds on the topic.
    pub fn own_jobs(&self) -> Vec<SharedJob> {
        self.job_view
            .lock()
            .map(|v| {
                v.values()
                    .filter(|j| j.replica == self.replica)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The record of job `id` as shared (any replica's).
    pub fn shared_job(&self, id: &str) -> Option<SharedJob> {
        self.job_view.lock().ok()?.get(id).cloned()
    }

    /// Asks the owner of a job for `action`.
    pub async fn send_command(&self, cmd: &Command) -> Result<(), StateError> {
        let text = serde_json::to_string(cmd).map_err(|e| self.jobs.fail(e))?;
        self.jobs.append(&format!("cmd/{}", cmd.id), &text).await
    }

    /// Where the commands for this replica's jobs go from now on.
    pub fn take_commands(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<Command>> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        self.commands.set(tx).ok().map(|()| rx)
    }

    /// Every token record.
    pub fn tokens(&self) -> Vec<TokenRecord> {
        self.token_view
            .lock()
            .map(|v| v.0.clone())
            .unwrap_or_default()
    }

    /// Writes `record` (a new token, or one revoked).
    pub async fn put_token(&self, record: &TokenRecord) -> Result<(), StateError> {
        let text = serde_json::to_string(record).map_err(|e| self.tokens.fail(e))?;
        self.tokens.append(&record.sha256, &text).await
    }

    /// Appends an audit entry.
    pub async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StateError> {
        let text = serde_json::to_string(entry).map_err(|e| self.audit.fail(e))?;
        self.audit.append("audit", &text).await
    }

    /// The audit entries kept in memory, newest first, matching `keep`, at most `limit`.
    pub fn audit_newest_first(
        &self,
        keep: impl Fn(&AuditEntry) -> bool,
        limit: usize,
    ) -> Vec<AuditEntry> {
        self.audit_view
            .lock()
            .map(|v| {
                v.iter()
                    .rev()
                    .filter(|e| keep(e))
                    .take(limit)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Tokens,
    Audit,
    Jobs,
}

/// The reader thread of one topic: applies each message to the view; says on `ready` once it
/// read to the end it started from (or why it could not); ends when the state is dropped.
fn follow(
    state: Weak<KafkaState>,
    which: Which,
    (consumer, start, end): (BaseConsumer, i64, i64),
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) {
    let mut ready = Some(ready);
    let mut failing = false;
    let started = Instant::now();
    if start >= end {
        if let Some(r) = ready.take() {
            let _ = r.send(Ok(()));
        }
    }
    loop {
        let Some(s) = state.upgrade() else { return };
        match consumer.poll(POLL) {
            None => {
                // The end may be past the last message left (compaction, control records).
                let at = consumer.position().ok().and_then(|p| {
                    p.find_partition(&s.topic(which).name, 0)
                        .and_then(|e| e.offset().to_raw())
                });
                if at.is_some_and(|a| a >= end) {
                    if let Some(r) = ready.take() {
                        let _ = r.send(Ok(()));
                    }
                }
            }
            Some(Err(e)) => {
                if !failing {
                    tracing::warn!(topic = %s.topic(which).name, error = %s.topic(which).redactor.apply(&e.to_string()), "control-plane state: cannot read the topic; retrying");
                }
                failing = true;
                if started.elapsed() > TIMEOUT {
                    if let Some(r) = ready.take() {
                        let _ = r.send(Err(format!("cannot read the topic: {e}")));
                    }
                }
                drop(s);
                std::thread::sleep(POLL);
                continue;
            }
            Some(Ok(m)) => {
                failing = false;
                let key = m.key().map(String::from_utf8_lossy).unwrap_or_default();
                let payload = m.payload();
                match which {
                    Which::Tokens => {
                        let record = payload.and_then(|p| serde_json::from_slice(p).ok());
                        if payload.is_some() && record.is_none() {
                            tracing::warn!(
                                offset = m.offset(),
                                "tokens topic: a message that is not a token record; ignored"
                            );
                        }
                        if let Ok(mut v) = s.token_view.lock() {
                            v.apply(&key, record);
                        }
                    }
                    Which::Jobs => apply_job_message(&s, &key, payload, next_is_live(&ready)),
                    Which::Audit => {
                        if let Some(e) = payload.and_then(|p| serde_json::from_slice(p).ok()) {
                            if let Ok(mut v) = s.audit_view.lock() {
                                v.push_back(e);
                                while v.len() > AUDIT_KEPT {
                                    v.pop_front();
                                }
                            }
                        }
                    }
                }
                let next = m.offset() + 1;
                s.topic(which).read_to.send_replace(next);
                if next >= end {
                    if let Some(r) = ready.take() {
                        let _ = r.send(Ok(()));
                    }
                }
            }
        }
    }
}

/// Whether the reader has read to the end it started from (commands read before are old).
fn next_is_live(ready: &Option<std::sync::mpsc::Sender<Result<(), String>>>) -> bool {
    ready.is_none()
}

/// One message of the jobs topic: a job's record (or its deletion), or a command, passed on
/// when it is for this replica and read live.
fn apply_job_message(s: &KafkaState, key: &str, payload: Option<&[u8]>, live: bool) {
    let cmd = match s.job_view.lock() {
        Ok(mut v) => job_message(&mut v, &s.replica, key, payload, live),
        Err(_) => None,
    };
    if let (Some(cmd), Some(tx)) = (cmd, s.commands.get()) {
        let _ = tx.send(cmd);
    }
}

/// Applies one message of the jobs topic to `view`; returns the command it carries when it is
/// for `replica` and `live` (commands read while catching up are old: their sender gave up).
/// Pure: unit-tested below.
fn job_message(
    view: &mut std::collections::HashMap<String, SharedJob>,
    replica: &str,
    key: &str,
    payload: Option<&[u8]>,
    live: bool,
) -> Option<Command> {
    if let Some(id) = key.strip_prefix("job/") {
        match payload.and_then(|p| serde_json::from_slice::<SharedJob>(p).ok()) {
            Some(r) => {
                view.insert(id.to_string(), r);
            }
            None => {
                view.remove(id);
            }
        }
        return None;
    }
    if !key.starts_with("cmd/") || !live {
        return None;
    }
    payload
        .and_then(|p| serde_json::from_slice::<Command>(p).ok())
        .filter(|c| c.replica == replica)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::roles::Role;

    fn record(name: &str, sha: &str, revoked: bool) -> TokenRecord {
        TokenRecord {
            name: name.into(),
            role: Role::Viewer,
            sha256: sha.into(),
            created: chrono::Utc::now(),
            expires: None,
            revoked: revoked.then(chrono::Utc::now),
        }
    }

    #[test]
    fn the_last_record_of_a_hash_wins() {
        let mut v = TokenView::default();
        v.apply("h1", Some(record("a", "h1", false)));
        v.apply("h2", Some(record("b", "h2", false)));
        v.apply("h1", Some(record("a", "h1", true)));
        assert_eq!(v.0.len(), 2);
        assert!(v.0[0].revoked.is_some() && v.0[1].revoked.is_none());
        v.apply("h2", None);
        assert_eq!(v.0.len(), 1);
    }

    #[test]
    fn the_audit_reader_starts_at_most_n_before_the_end() {
        assert_eq!(start_offset(0, 10, 20_000), 0);
        assert_eq!(start_offset(5, 10, 3), 7);
        assert_eq!(start_offset(100, 50_000, 20_000), 30_000);
        assert_eq!(start_offset(0, 0, 5), 0);
    }

    fn shared(replica: &str, id: &str) -> Vec<u8> {
        let job = Job {
            id: id.into(),
            kind: fleetsync_proto::jobs::JobKind::Health,
            state: fleetsync_proto::jobs::JobState::AwaitingApproval,
            created_by: "op".into(),
            params: serde_json::json!({}),
            created_at: "2026-12-07T00:00:00.000Z".into(),
            started_at: None,
            finished_at: None,
            progress: Default::default(),
            error: None,
            exit_code: None,
            result: None,
            approval: None,
        };
        serde_json::to_vec(&SharedJob {
            replica: replica.into(),
            job,
            log: Vec::new(),
        })
        .expect("json")
    }

    #[test]
    fn job_records_and_commands() {
        let mut v = Default::default();
        assert!(job_message(&mut v, "me", "job/j1", Some(&shared("other", "j1")), false).is_none());
        assert_eq!(v["j1"].replica, "other");
        // A tombstone deletes it; an unreadable record too (never a stale one).
        job_message(&mut v, "me", "job/j1", None, true);
        assert!(v.is_empty());
        let cmd = |replica: &str| {
            serde_json::to_vec(&Command {
                replica: replica.into(),
                id: "j2".into(),
                action: Action::Approve,
                by: "owner".into(),
            })
            .expect("json")
        };
        // Only commands for this replica, read live.
        let got = job_message(&mut v, "me", "cmd/j2", Some(&cmd("me")), true);
        assert!(got.is_some_and(|c| c.action == Action::Approve && c.by == "owner"));
        assert!(job_message(&mut v, "me", "cmd/j2", Some(&cmd("other")), true).is_none());
        assert!(job_message(&mut v, "me", "cmd/j2", Some(&cmd("me")), false).is_none());
        assert!(job_message(&mut v, "me", "cmd/j2", Some(b"garbage"), true).is_none());
        assert!(v.is_empty(), "a command is not a job record");
    }
}
