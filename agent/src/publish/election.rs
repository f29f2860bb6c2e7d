//! Which of a server's agents publishes: Kafka's group protocol elects one.
//!
//! Every agent of a server joins the consumer group `fleetsync.agent.<server>` on the
//! server's change topic (one partition), with the cooperative-sticky assignor: the member
//! the partition is assigned to publishes, the others stand by. The partition stays with its
//! owner while it heartbeats (sticky, so a member that joins later never takes it over); a
//! member that dies or stops (SIGSTOP, a long pause) is evicted after the group's session
//! timeout (`[bus] agent_session_timeout_ms`) and the partition moves to a standby. Nothing is
//! read through this membership: the assigned partition is paused at once.
//!
//! The election alone does not make publishing safe: a stopped owner wakes up still believing
//! it is elected until its next heartbeat. Safety comes from the transactional producer (the
//! new owner's `init_transactions` fences the old one, see [`super::kafka`]); the election
//! only keeps the agents from fencing each other in turn.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::ClientContext;
use tokio::sync::watch;

use super::kafka::KafkaSettings;
use crate::SourceError;

/// How often the membership thread polls (serves rebalances; heartbeats run on librdkafka's
/// own thread).
const POLL_EVERY: Duration = Duration::from_millis(200);

/// This agent's membership in its server's election group; leaves it when dropped.
pub struct Election {
    elected: watch::Receiver<bool>,
    stop: Arc<AtomicBool>,
}

struct ElectionContext {
    elected: watch::Sender<bool>,
}

impl ClientContext for ElectionContext {}

impl ConsumerContext for ElectionContext {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        // Cooperative rebalancing: an assignment or revocation lists only what changes.
        match rebalance {
            Rebalance::Assign(tpl) if tpl.count() > 0 => {
                self.elected.send_replace(true);
            }
            Rebalance::Revoke(tpl) if tpl.count() > 0 => {
                self.elected.send_replace(false);
            }
            _ => {}
        }
    }
}

impl Election {
    /// Joins the election of `server`'s publisher (group `fleetsync.agent.<server>` on
    /// `topic`). The membership runs on its own thread (librdkafka's calls block).
    pub fn join(
        settings: &KafkaSettings,
        server: &str,
        topic: &str,
        session_timeout_ms: u64,
    ) -> Result<Election, SourceError> {
        let (tx, rx) = watch::channel(false);
        let heartbeat_ms = (session_timeout_ms / 5).max(100);
        let consumer: BaseConsumer<ElectionContext> = settings
            .client_config()
            .set("group.id", format!("fleetsync.agent.{server}"))
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("session.timeout.ms", session_timeout_ms.to_string())
            .set("heartbeat.interval.ms", heartbeat_ms.to_string())
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // Nothing is read: start at the end, fetch little, and pause at once.
            .set("auto.offset.reset", "latest")
            .set("queued.max.messages.kbytes", "64")
            .set("allow.auto.create.topics", "false")
            .create_with_context(ElectionContext { elected: tx })
            .map_err(|e| SourceError::NeedsOperator {
                server: server.to_string(),
                message: settings
                    .redactor
                    .apply(&format!("kafka election consumer: {e}")),
            })?;
        consumer
            .subscribe(&[topic])
            .map_err(|e| SourceError::Connection {
                server: server.to_string(),
                message: format!("kafka election: subscribing to {topic}: {e}"),
            })?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let name = server.to_string();
        std::thread::Builder::new()
            .name(format!("election-{server}"))
            .spawn(move || {
                while !stopped.load(Ordering::SeqCst) {
                    if let Some(Err(e)) = consumer.poll(POLL_EVERY) {
                        tracing::debug!(server = %name, error = %e, "agent election");
                    }
                    if let Ok(a) = consumer.assignment() {
                        if a.count() > 0 {
                            let _ = consumer.pause(&a);
                        }
                    }
                }
                // Leave the group now (not after the session timeout): a standby takes over
                // at once after a clean stop.
                consumer.unsubscribe();
                drop(consumer);
            })
            .map_err(|e| SourceError::NeedsOperator {
                server: server.to_string(),
                message: format!("agent election thread: {e}"),
            })?;
        Ok(Election { elected: rx, stop })
    }

    /// True while this agent is the elected publisher.
    pub fn elected(&self) -> watch::Receiver<bool> {
        self.elected.clone()
    }
}

impl Drop for Election {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}
