//! The job manager: runs service calls ([`crate::service`]) as jobs for the API, with live
//! progress, a bounded log, cancellation and a durable record.
//!
//! * A job started through a route whose permission `[api] require_approval` lists starts
//!   `awaiting_approval` and runs only after [`JobManager::approve`] by another token (a
//!   different token name) holding that permission; [`JobManager::reject`] (or a cancel) ends
//!   it `cancelled` without running. The route's permission comes from the auth layer
//!   ([`crate::api::route_permissions`]), so this holds for every kind, none named here. An
//!   awaiting job stays awaiting across a restart (nothing of it has run): its request is
//!   rebuilt from the record when it is approved ([`JobManager::spawn_kind`]).
//! * A job is `queued` until one of [`MAX_RUNNING`] slots is free, then `running`, then
//!   `succeeded` (the task produced its report, whatever its verdict: a diff that found
//!   differences succeeded, its `exit_code` says 1), `failed` (an error, one line) or
//!   `cancelled`.
//! * Each job is kept in memory and in `<state_dir>/jobs/<id>.json` (written when it is
//!   created, started and finished, not at each progress step). At start, jobs that the
//!   record shows `queued` or `running` are marked `failed: interrupted by a restart`. The
//!   newest [`KEEP_FINISHED`] finished jobs are kept.
//! * A job's files (an export's, a migration's, a data diff's `repair.sql`) are in
//!   `<state_dir>/jobs/<id>/`, deleted with its record; uploads (an import's) are in
//!   `<state_dir>/jobs/uploads/`, removed when their job ends and at start.
//! * With the Kafka bus (`fleetsync coordinator`, [`JobManager::share`]) each record is also
//!   shared on the jobs topic ([`crate::api::kstate`]): every replica lists every replica's
//!   jobs (a job runs, and keeps its files, on the replica that started it; another replica
//!   sees it at its state changes), and approving, rejecting or cancelling a job of another
//!   replica is forwarded to it ([`JobManager::forward`]).
//! * Every change is published on [`JobManager::subscribe`] (the API's `/events`): a
//!   `job_state` event for each state change, `job_progress` at most every
//!   [`PROGRESS_EVERY`] per job.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use fleetsync_config::Config;
use fleetsync_proto::jobs::{Approval, Job, JobKind, JobLogLine, JobProgress, JobState};
use serde::Serialize;
use tokio::sync::{broadcast, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::service::{JobRequest, ProgressSink, ServiceError, Tracker};

mod shared;
pub use shared::ForwardError;

/// Jobs that run at once; more wait as `queued` (the machine's connections and CPU are
/// shared with the syncs).
pub const MAX_RUNNING: usize = 2;
/// Lines kept in a job's log (the oldest are dropped).
pub const LOG_LINES: usize = 200;
/// Least time between two `job_progress` events of one job.
pub const PROGRESS_EVERY: Duration = Duration::from_millis(250);
/// Events buffered for slow `/events` readers (a reader that falls further behind misses
/// events and is told so).
pub const EVENT_BUFFER: usize = 1024;
/// Finished jobs kept (in memory and on disk); the oldest beyond this are deleted when a new
/// job starts.
pub const KEEP_FINISHED: usize = 1000;
/// The error of a job that was running when the process stopped.
pub const INTERRUPTED: &str = "interrupted by a restart";

/// One event of `/api/v1/events`.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// `job_state`, `job_progress`, `sync_state`, `conflict` or `health`.
    pub event: &'static str,
    pub data: serde_json::Value,
}

struct Entry {
    job: Job,
    log: VecDeque<JobLogLine>,
    cancel: CancellationToken,
    last_progress: Option<Instant>,
}

/// The jobs of this process.
pub struct JobManager {
    config: Arc<Config>,
    /// Where the configuration of each new run comes from once the API follows the
    /// definitions (servers and syncs made over the API); `config` until then.
    live: std::sync::OnceLock<Arc<crate::defs::Defs>>,
    dir: PathBuf,
    jobs: Mutex<HashMap<String, Entry>>,
    slots: Arc<Semaphore>,
    events: broadcast::Sender<Event>,
    /// The jobs topic, with the Kafka bus.
    shared: std::sync::OnceLock<Arc<crate::api::kstate::KafkaState>>,
}

/// How long a forwarded approval, rejection or cancel waits for the owner's answer.
pub const FORWARD_WAIT: Duration = Duration::from_secs(10);

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// What a stored record holds: the job and its log.
#[derive(Serialize, serde::Deserialize)]
struct Record {
    job: Job,
    log: Vec<JobLogLine>,
}

impl JobManager {
    /// Loads the records under `<state_dir>/jobs`, marking unfinished ones interrupted.
    /// Jobs started from now on run against `defs`' effective configuration.
    pub fn follow(&self, defs: Arc<crate::defs::Defs>) {
        let _ = self.live.set(defs);
    }

    /// The configuration a job starting now runs against.
    fn current(&self) -> Arc<Config> {
        self.live
            .get()
            .map_or_else(|| self.config.clone(), |d| d.effective())
    }

    pub fn open(config: Arc<Config>) -> Result<Arc<JobManager>> {
        let dir = config.state_dir.join("jobs");
        fleetsync_agent::owner_only::create_dir_all(&dir)
            .with_context(|| format!("cannot create the job directory {}", dir.display()))?;
        // Uploads belong to jobs of the previous process (none survives a restart).
        let uploads = dir.join("uploads");
        if uploads.exists() {
            if let Err(e) = std::fs::remove_dir_all(&uploads) {
                tracing::warn!(dir = %uploads.display(), error = %e, "cannot remove old uploads");
            }
        }
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let m = JobManager {
            config,
            live: std::sync::OnceLock::new(),
            dir,
            jobs: Mutex::new(HashMap::new()),
            slots: Arc::new(Semaphore::new(MAX_RUNNING)),
            events,
            shared: std::sync::OnceLock::new(),
        };
        m.load()?;
        Ok(Arc::new(m))
    }

    fn load(&self) -> Result<()> {
        let entries = std::fs::read_dir(&self.dir)
            .with_context(|| format!("cannot list {}", self.dir.display()))?;
        let mut jobs = self
            .jobs
            .lock()
            .map_err(|_| anyhow::anyhow!("job table poisoned"))?;
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().and_then(|x| x.to_str()) != Some("json") {
                continue;
            }
            let record: Record = match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "skipping an unreadable job record");
                    continue;
                }
            };
            let mut entry = Entry {
                job: record.job,
                log: record.log.into(),
                cancel: CancellationToken::new(),
                last_progress: None,
            };
            // An awaiting job has not started: it stays awaiting.
            if !entry.job.state.is_final() && entry.job.state != JobState::AwaitingApproval {
                entry.job.state = JobState::Failed;
                entry.job.error = Some(INTERRUPTED.into());
                entry.job.finished_at = Some(now());
                entry.log.push_back(JobLogLine {
                    time: now(),
                    message: format!("failed: {INTERRUPTED}"),
                });
                if let Err(e) = self.write(&entry) {
                    tracing::warn!(job = %entry.job.id, error = %e, "cannot rewrite an interrupted job's record");
                }
            }
            jobs.insert(entry.job.id.clone(), entry);
        }
        Ok(())
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// A job's own directory for the files it produces (created by the task that writes
    /// there; removed with the job's record).
    pub fn files_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    fn write(&self, e: &Entry) -> Result<()> {
        let record = Record {
            job: e.job.clone(),
            log: e.log.iter().cloned().collect(),
        };
        if let Some(k) = self.shared.get() {
            k.publish_job(&record.job.id, Some((&record.job, record.log.clone())));
        }
        let bytes = serde_json::to_vec_pretty(&record)?;
        write_atomic(&self.path(&e.job.id), &bytes)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Publishes an event (nobody listening is fine).
    pub fn publish(&self, event: &'static str, data: serde_json::Value) {
        let _ = self.events.send(Event { event, data });
    }

    /// Every job (with the Kafka bus, every replica's), newest first.
    pub fn list(&self) -> Vec<Job> {
        let mut all: Vec<Job> = self
            .jobs
            .lock()
            .map(|j| j.values().map(|e| e.job.clone()).collect())
            .unwrap_or_default();
        if let Some(k) = self.shared.get() {
            let local: std::collections::HashSet<String> =
                all.iter().map(|j| j.id.clone()).collect();
            all.extend(
                k.remote_jobs()
                    .into_iter()
                    .filter(|r| !local.contains(&r.job.id))
                    .map(|r| r.job),
            );
        }
        all.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        all
    }

    pub fn get(&self, id: &str) -> Option<Job> {
        let local = self.jobs.lock().ok()?.get(id).map(|e| e.job.clone());
        local.or_else(|| self.elsewhere(id).map(|r| r.job))
    }

    pub fn log(&self, id: &str) -> Option<Vec<JobLogLine>> {
        let local = {
            let jobs = self.jobs.lock().ok()?;
            jobs.get(id).map(|e| e.log.iter().cloned().collect())
        };
        local.or_else(|| self.elsewhere(id).map(|r| r.log))
    }

    /// Asks a job to stop (a job awaiting approval ends `cancelled` at once). `None`: no such
    /// job; `Some(false)`: it already finished.
    pub fn cancel(&self, id: &str) -> Option<bool> {
        let awaiting = {
            let jobs = self.jobs.lock().ok()?;
            let e = jobs.get(id)?;
            if e.job.state.is_final() {
                return Some(false);
            }
            e.cancel.cancel();
            e.job.state == JobState::AwaitingApproval
        };
        if awaiting {
            self.finish(id, Outcome::Cancelled);
        }
        Some(true)
    }

    /// Approves a job awaiting approval, by the token `by` (the caller checked that it holds
    /// the job's permission); the job is queued and runs.
    pub fn approve(self: &Arc<Self>, id: &str, by: &str) -> Result<Job, ApprovalError> {
        let job = self.decide(id, by, true)?;
        tracing::info!(job = %id, approved_by = by, created_by = %job.created_by, "job approved");
        if let Err(e) = self.spawn_kind(job.kind, id.to_string(), job.params.clone()) {
            let error = crate::exit::one_line(e.as_ref());
            self.finish(
                id,
                Outcome::Failed {
                    error,
                    exit_code: 1,
                },
            );
        }
        Ok(job)
    }

    /// Rejects a job awaiting approval, by the token `by` (its creator may withdraw it): it
    /// ends `cancelled` without running.
    pub fn reject(&self, id: &str, by: &str) -> Result<Job, ApprovalError> {
        let job = self.decide(id, by, false)?;
        tracing::info!(job = %id, rejected_by = by, created_by = %job.created_by, "job rejected");
        Ok(job)
    }

    /// Whether `by` may approve (`approve`) or reject job `id` now: the job it would decide
    /// (another replica's too: its owner checks again when the decision reaches it).
    pub fn check_decision(&self, id: &str, by: &str, approve: bool) -> Result<Job, ApprovalError> {
        let job = self.get(id).ok_or(ApprovalError::NoJob)?;
        check_decision(&job, by, approve)?;
        Ok(job)
    }

    fn decide(&self, id: &str, by: &str, approve: bool) -> Result<Job, ApprovalError> {
        let mut refusal = None;
        let job = self
            .change(id, true, |e| {
                if let Err(r) = check_decision(&e.job, by, approve) {
                    refusal = Some(r);
                    return;
                }
                let at = now();
                let (created_by, a) = (e.job.created_by.clone(), e.job.approval.as_mut());
                let Some(a) = a else { return };
                if approve {
                    a.approved_by = Some(by.to_string());
                    a.approved_at = Some(at);
                    e.job.state = JobState::Queued;
                    push_log(
                        &mut e.log,
                        format!("approved by {by} (started by {created_by})"),
                    );
                } else {
                    a.rejected_by = Some(by.to_string());
                    a.rejected_at = Some(at.clone());
                    e.job.state = JobState::Cancelled;
                    e.job.error = Some(format!("rejected by {by}"));
                    e.job.finished_at = Some(at);
                    e.cancel.cancel();
                    push_log(
                        &mut e.log,
                        format!("rejected by {by} (started by {created_by})"),
                    );
                }
            })
            .ok_or(ApprovalError::NoJob)?;
        if let Some(r) = refusal {
            return Err(r);
        }
        self.state_event(&job);
        Ok(job)
    }

    /// Runs the job `id` of `kind` from its recorded request (an approved job, also one
    /// approved after a restart). Every kind must be listed here: the match is exhaustive, so
    /// a new [`JobKind`] does not compile until it is.
    fn spawn_kind(
        self: &Arc<Self>,
        kind: JobKind,
        id: String,
        params: serde_json::Value,
    ) -> Result<()> {
        use crate::service::{backup, data_diff, health, migrate, schema_diff, transfer};
        match kind {
            JobKind::Health => self.spawn_from::<health::HealthRequest>(id, params),
            JobKind::SchemaDiff => self.spawn_from::<schema_diff::SchemaDiffRequest>(id, params),
            JobKind::DataDiff => self.spawn_from::<data_diff::DataDiffRequest>(id, params),
            JobKind::BackupCreate => self.spawn_from::<backup::BackupCreateRequest>(id, params),
            JobKind::BackupVerify => self.spawn_from::<backup::BackupVerifyRequest>(id, params),
            JobKind::BackupRestore => self.spawn_from::<backup::BackupRestoreRequest>(id, params),
            JobKind::BackupPrune => self.spawn_from::<backup::BackupPruneRequest>(id, params),
            JobKind::Export => self.spawn_from::<transfer::ExportRequest>(id, params),
            JobKind::Import => self.spawn_from::<crate::service::UploadedImport>(id, params),
            JobKind::HealthFix => self.spawn_from::<health::HealthFixRequest>(id, params),
            JobKind::MigrateGenerate => {
                self.spawn_from::<migrate::MigrateGenerateRequest>(id, params)
            }
            JobKind::MigrateApply => self.spawn_from::<migrate::MigrateApplyRequest>(id, params),
            JobKind::MigrateRollback => {
                self.spawn_from::<migrate::MigrateRollbackRequest>(id, params)
            }
            JobKind::MigrateUp => {
                self.spawn_from::<crate::service::vmigrate::jobs::MigrateUpRequest>(id, params)
            }
            JobKind::MigrateUndo => {
                self.spawn_from::<crate::service::vmigrate::jobs::MigrateUndoRequest>(id, params)
            }
        }
    }

    fn spawn_from<R: JobRequest>(
        self: &Arc<Self>,
        id: String,
        params: serde_json::Value,
    ) -> Result<()> {
        let mut req: R = serde_json::from_value(params)
            .with_context(|| format!("job {id}: its recorded request no longer parses"))?;
        req.unpark(&self.files_dir(&id));
        let cancel = self
            .jobs
            .lock()
            .map_err(|_| anyhow::anyhow!("job table poisoned"))?
            .get(&id)
            .map(|e| e.cancel.clone())
            .ok_or_else(|| anyhow::anyhow!("no job {id}"))?;
        let me = self.clone();
        tokio::spawn(async move { me.drive(id, req, cancel).await });
        Ok(())
    }

    /// Asks every unfinished job to stop (the process is shutting down): a backup that stops
    /// in time removes its directory; one that does not is marked interrupted at the next
    /// start.
    pub fn cancel_all(&self) {
        if let Ok(jobs) = self.jobs.lock() {
            jobs.values()
                .filter(|e| !e.job.state.is_final())
                .for_each(|e| e.cancel.cancel());
        }
    }

    /// Deletes the oldest finished jobs beyond [`KEEP_FINISHED`].
    fn prune(&self, jobs: &mut HashMap<String, Entry>) {
        let mut finished: Vec<(String, String)> = jobs
            .values()
            .filter(|e| e.job.state.is_final())
            .map(|e| (e.job.created_at.clone(), e.job.id.clone()))
            .collect();
        if finished.len() <= KEEP_FINISHED {
            return;
        }
        finished.sort();
        for (_, id) in finished.iter().take(finished.len() - KEEP_FINISHED) {
            jobs.remove(id);
            if let Some(k) = self.shared.get() {
                k.publish_job(id, None);
            }
            if let Err(e) = std::fs::remove_file(self.path(id)) {
                tracing::warn!(job = %id, error = %e, "cannot delete an old job's record");
            }
            let files = self.files_dir(id);
            if files.exists() {
                if let Err(e) = std::fs::remove_dir_all(&files) {
                    tracing::warn!(job = %id, error = %e, "cannot delete an old job's files");
                }
            }
        }
    }

    /// Changes a job under the lock; returns its new state (for the event), and writes the
    /// record when `durable`.
    fn change(&self, id: &str, durable: bool, f: impl FnOnce(&mut Entry)) -> Option<Job> {
        let mut jobs = self.jobs.lock().ok()?;
        let e = jobs.get_mut(id)?;
        f(e);
        if durable {
            if let Err(err) = self.write(e) {
                tracing::error!(job = %id, error = %err, "cannot write the job's record");
            }
        }
        Some(e.job.clone())
    }

    fn state_event(&self, job: &Job) {
        self.publish(
            "job_state",
            serde_json::json!({
                "id": job.id, "kind": job.kind, "state": job.state,
                "error": job.error, "exit_code": job.exit_code, "approval": job.approval,
            }),
        );
    }

    /// The permission among those of the route being served that `[api] require_approval`
    /// lists, if any: a job started now waits for an approval of it.
    pub fn approval_needed(&self) -> Option<String> {
        let api = self.config.api.as_ref()?;
        crate::api::route_permissions()
            .into_iter()
            .map(|p| p.as_str())
            .find(|p| api.needs_approval(p))
            .map(str::to_string)
    }

    /// Starts `req` as a job by `created_by`; returns it at once, `queued`, or
    /// `awaiting_approval` when the route serving this call needs an approval
    /// ([`JobManager::approval_needed`]).
    pub fn start<R: JobRequest>(self: &Arc<Self>, req: R, created_by: &str) -> Result<Job> {
        let approval = self.approval_needed().map(|permission| Approval {
            permission,
            approved_by: None,
            approved_at: None,
            rejected_by: None,
            rejected_at: None,
        });
        let id = format!(
            "{}-{:08x}",
            chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
            rand::random::<u32>()
        );
        let job = Job {
            id: id.clone(),
            kind: R::KIND,
            state: if approval.is_some() {
                JobState::AwaitingApproval
            } else {
                JobState::Queued
            },
            created_by: created_by.to_string(),
            params: serde_json::to_value(&req)?,
            created_at: now(),
            started_at: None,
            finished_at: None,
            progress: JobProgress::default(),
            error: None,
            exit_code: None,
            result: None,
            approval,
        };
        let cancel = CancellationToken::new();
        let entry = Entry {
            job: job.clone(),
            log: VecDeque::new(),
            cancel: cancel.clone(),
            last_progress: None,
        };
        if job.approval.is_some() {
            req.park(&self.files_dir(&id))?;
        }
        self.write(&entry)?;
        {
            let mut jobs = self
                .jobs
                .lock()
                .map_err(|_| anyhow::anyhow!("job table poisoned"))?;
            jobs.insert(id.clone(), entry);
            self.prune(&mut jobs);
        }
        self.state_event(&job);
        if let Some(a) = &job.approval {
            tracing::info!(job = %id, kind = R::KIND.as_str(), created_by, permission = %a.permission, "job awaits approval");
            return Ok(job);
        }
        tracing::info!(job = %id, kind = R::KIND.as_str(), created_by, "job queued");
        let me = self.clone();
        tokio::spawn(async move { me.drive(id, req, cancel).await });
        Ok(job)
    }

    async fn drive<R: JobRequest>(self: Arc<Self>, id: String, req: R, cancel: CancellationToken) {
        let permit = tokio::select! {
            biased;
            _ = cancel.cancelled() => None,
            p = self.slots.clone().acquire_owned() => p.ok(),
        };
        if permit.is_none() {
            self.finish(&id, Outcome::Cancelled);
            return;
        }
        if let Some(job) = self.change(&id, true, |e| {
            e.job.state = JobState::Running;
            e.job.started_at = Some(now());
        }) {
            self.state_event(&job);
        }
        tracing::info!(job = %id, kind = R::KIND.as_str(), "job running");
        let sink: Arc<dyn ProgressSink> = Arc::new(JobSink {
            manager: Arc::downgrade(&self),
            id: id.clone(),
        });
        let tracker = Tracker::for_job(sink, self.files_dir(&id));
        let config = self.current();
        let outcome = match run::<R>(&config, &req, &tracker, &cancel).await {
            Ok((result, exit_code, true)) => Outcome::CancelledWith { result, exit_code },
            Ok((result, exit_code, false)) => Outcome::Done { result, exit_code },
            Err(ServiceError::Cancelled) => Outcome::Cancelled,
            Err(ServiceError::Failed(e)) => Outcome::Failed {
                error: crate::exit::one_line(e.as_ref()),
                exit_code: R::EXIT_ERROR,
            },
        };
        // A task that finished its work just as the cancel came is done, not cancelled.
        self.finish(&id, outcome);
        drop(permit);
    }

    fn finish(&self, id: &str, outcome: Outcome) {
        let job = self.change(id, true, |e| {
            let (state, line) = match outcome {
                Outcome::Done { result, exit_code } => {
                    e.job.result = Some(result);
                    e.job.exit_code = Some(exit_code);
                    (
                        JobState::Succeeded,
                        format!("succeeded (exit code {exit_code})"),
                    )
                }
                Outcome::Failed { error, exit_code } => {
                    e.job.exit_code = Some(exit_code);
                    let line = format!("failed: {error}");
                    e.job.error = Some(error);
                    (JobState::Failed, line)
                }
                Outcome::Cancelled => (JobState::Cancelled, "cancelled".to_string()),
                Outcome::CancelledWith { result, exit_code } => {
                    e.job.result = Some(result);
                    e.job.exit_code = Some(exit_code);
                    (
                        JobState::Cancelled,
                        "cancelled part-way (the report says what ran)".to_string(),
                    )
                }
            };
            e.job.state = state;
            e.job.finished_at = Some(now());
            push_log(&mut e.log, line);
        });
        if let Some(job) = job {
            tracing::info!(job = %id, state = job.state.as_str(), error = job.error.as_deref().unwrap_or(""), "job finished");
            self.publish("job_progress", progress_data(&job));
            self.state_event(&job);
        }
    }
}

/// Why a job cannot be approved or rejected now.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    #[error("no such job")]
    NoJob,
    #[error("job {id} is {state}, not awaiting approval")]
    NotAwaiting { id: String, state: &'static str },
    #[error("job {id} was started by token {by:?}: another token must approve it")]
    OwnJob { id: String, by: String },
}

fn check_decision(job: &Job, by: &str, approve: bool) -> Result<(), ApprovalError> {
    if job.state != JobState::AwaitingApproval || job.approval.is_none() {
        return Err(ApprovalError::NotAwaiting {
            id: job.id.clone(),
            state: job.state.as_str(),
        });
    }
    if approve && job.created_by == by {
        return Err(ApprovalError::OwnJob {
            id: job.id.clone(),
            by: by.to_string(),
        });
    }
    Ok(())
}

enum Outcome {
    Done {
        result: serde_json::Value,
        exit_code: u8,
    },
    Failed {
        error: String,
        exit_code: u8,
    },
    Cancelled,
    /// Stopped part-way by the cancel, with the report of what ran.
    CancelledWith {
        result: serde_json::Value,
        exit_code: u8,
    },
}

fn push_log(log: &mut VecDeque<JobLogLine>, message: String) {
    if log.len() >= LOG_LINES {
        log.pop_front();
    }
    log.push_back(JobLogLine {
        time: now(),
        message,
    });
}

fn progress_data(job: &Job) -> serde_json::Value {
    serde_json::json!({ "id": job.id, "kind": job.kind, "state": job.state, "progress": job.progress })
}

/// Runs the service call of `R`: its report as JSON, the CLI's exit code for it, and whether
/// a cancel stopped it part-way ([`JobRequest::cancelled`]).
async fn run<R: JobRequest>(
    config: &Config,
    req: &R,
    tracker: &Arc<Tracker>,
    cancel: &CancellationToken,
) -> Result<(serde_json::Value, u8, bool), ServiceError> {
    let report = req.run(config, tracker, cancel).await?;
    let code = R::exit_code(&report);
    let cancelled = R::cancelled(&report);
    let value = serde_json::to_value(&report).map_err(anyhow::Error::from)?;
    Ok((value, code, cancelled))
}

/// A job's progress and log lines, into the manager.
struct JobSink {
    manager: std::sync::Weak<JobManager>,
    id: String,
}

impl ProgressSink for JobSink {
    fn progress(&self, p: &JobProgress) {
        let Some(m) = self.manager.upgrade() else {
            return;
        };
        let mut publish = false;
        let job = m.change(&self.id, false, |e| {
            e.job.progress = p.clone();
            let due = e
                .last_progress
                .is_none_or(|t| t.elapsed() >= PROGRESS_EVERY);
            if due {
                e.last_progress = Some(Instant::now());
                publish = true;
            }
        });
        if let (true, Some(job)) = (publish, job) {
            m.publish("job_progress", progress_data(&job));
        }
    }

    fn log(&self, message: &str) {
        if let Some(m) = self.manager.upgrade() {
            m.change(&self.id, false, |e| {
                push_log(&mut e.log, message.to_string())
            });
        }
    }
}

/// Writes `path` by a rename, so a crash leaves the old record or the new one.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    fleetsync_agent::owner_only::write(&tmp, bytes)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests;
