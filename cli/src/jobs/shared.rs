//! Jobs across replicas on the Kafka bus: this replica's records shared on the jobs topic
//! ([`crate::api::kstate`]), other replicas' jobs looked up, and approve/reject/cancel
//! forwarded to the replica that runs a job.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::*;

impl JobManager {
    /// Shares this replica's jobs on the jobs topic of `state` from now on, takes the commands
    /// other replicas send for them, and marks interrupted the unfinished jobs that the topic
    /// shows under this replica's name but that this process does not know (a restart with
    /// a fresh `state_dir` under the same `FLEETSYNC_REPLICA`).
    pub fn share(self: &Arc<Self>, state: Arc<crate::api::kstate::KafkaState>) {
        let Some(mut commands) = state.take_commands() else {
            return;
        };
        if self.shared.set(state.clone()).is_err() {
            return;
        }
        if let Ok(mut jobs) = self.jobs.lock() {
            for e in jobs.values() {
                state.publish_job(&e.job.id, Some((&e.job, e.log.iter().cloned().collect())));
            }
            for shared in state.own_jobs() {
                if jobs.contains_key(&shared.job.id) || shared.job.state.is_final() {
                    continue;
                }
                let mut entry = Entry {
                    job: shared.job,
                    log: shared.log.into(),
                    cancel: CancellationToken::new(),
                    last_progress: None,
                };
                entry.job.state = JobState::Failed;
                entry.job.error = Some(INTERRUPTED.into());
                entry.job.finished_at = Some(now());
                push_log(&mut entry.log, format!("failed: {INTERRUPTED}"));
                if let Err(e) = self.write(&entry) {
                    tracing::warn!(job = %entry.job.id, error = %e, "cannot write an interrupted job's record");
                }
                jobs.insert(entry.job.id.clone(), entry);
            }
        }
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            while let Some(cmd) = commands.recv().await {
                let Some(me) = me.upgrade() else { return };
                me.apply_command(cmd);
            }
        });
    }

    /// The shared record of job `id` when another replica runs it (Kafka bus).
    pub fn elsewhere(&self, id: &str) -> Option<crate::api::kstate::SharedJob> {
        if self.jobs.lock().ok()?.contains_key(id) {
            return None;
        }
        let k = self.shared.get()?;
        k.shared_job(id).filter(|r| r.replica != k.replica())
    }

    /// Applies a command another replica sent for one of this replica's jobs (checked here
    /// as if asked here; a refusal is logged and leaves the job as it is, which the sender
    /// sees).
    fn apply_command(self: &Arc<Self>, cmd: crate::api::kstate::Command) {
        use crate::api::kstate::Action;
        let result = match cmd.action {
            Action::Approve => self.approve(&cmd.id, &cmd.by).map(|_| ()),
            Action::Reject => self.reject(&cmd.id, &cmd.by).map(|_| ()),
            Action::Cancel => match self.cancel(&cmd.id) {
                Some(_) => Ok(()),
                None => Err(ApprovalError::NoJob),
            },
        };
        match result {
            Ok(()) => {
                tracing::info!(job = %cmd.id, action = ?cmd.action, by = %cmd.by, "applied a command from another replica")
            }
            Err(e) => {
                tracing::warn!(job = %cmd.id, action = ?cmd.action, by = %cmd.by, error = %e, "refused a command from another replica")
            }
        }
    }

    /// Sends `action` on job `id` to the replica that runs it and, when `wait`, waits (up to
    /// [`FORWARD_WAIT`]) for its record to change; returns the job as it then is.
    pub async fn forward(
        &self,
        id: &str,
        action: crate::api::kstate::Action,
        by: &str,
        wait: bool,
    ) -> Result<Job, ForwardError> {
        let before = self.elsewhere(id).ok_or(ForwardError::NoJob)?;
        let k = self.shared.get().ok_or(ForwardError::NoJob)?;
        let cmd = crate::api::kstate::Command {
            replica: before.replica.clone(),
            id: id.to_string(),
            action,
            by: by.to_string(),
        };
        k.send_command(&cmd)
            .await
            .map_err(|e| ForwardError::Topic(e.to_string()))?;
        if !wait {
            return Ok(before.job);
        }
        let deadline = Instant::now() + FORWARD_WAIT;
        loop {
            if let Some(now) = self.elsewhere(id) {
                if now.job.state != before.job.state {
                    return Ok(now.job);
                }
            }
            if Instant::now() > deadline {
                return Err(ForwardError::NoAnswer {
                    replica: before.replica,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Why a command forwarded to another replica did not take effect.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("no such job")]
    NoJob,
    #[error("cannot send the command to the job's replica: {0}")]
    Topic(String),
    #[error("replica {replica}, which runs this job, did not act on the request within 10 s (it may be down, or it refused it: see its log)")]
    NoAnswer { replica: String },
}
