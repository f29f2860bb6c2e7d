//! Where the agent's transactions go.

use std::future::Future;

use fleetsync_proto::Transaction;
use tokio::sync::mpsc;

use crate::SourceError;

/// A sink for source transactions.
///
/// Contract:
/// * `publish` is called in source commit order, one call at a time (never overlapping).
/// * When `publish` returns `Ok`, the bus holds the transaction: for the embedded bus that
///   means it is queued in memory (bounded; `publish` waits while the queue is full, which is
///   how a slow consumer slows this reader and no other); for Kafka, that the broker has
///   acknowledged it.
/// * Acceptance is not durability of the effect: the agent's checkpoint moves only when the
///   consumer acknowledges the applied position (embedded bus) or on delivery reports (Kafka),
///   so after a crash the agent resumes from an acknowledged position and transactions after
///   it may be published again. Consumers drop those by position (at-least-once delivery,
///   exactly-once effect).
pub trait Publisher: Send {
    fn publish(&mut self, txn: Transaction)
        -> impl Future<Output = Result<(), SourceError>> + Send;
}

/// The in-process bus: a bounded channel to one consumer.
pub struct EmbeddedPublisher {
    tx: mpsc::Sender<Transaction>,
}

impl EmbeddedPublisher {
    /// A publisher and the receiving end, holding at most `capacity` transactions.
    pub fn channel(capacity: usize) -> (EmbeddedPublisher, mpsc::Receiver<Transaction>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (EmbeddedPublisher { tx }, rx)
    }
}

impl Publisher for EmbeddedPublisher {
    async fn publish(&mut self, txn: Transaction) -> Result<(), SourceError> {
        self.tx
            .send(txn)
            .await
            .map_err(|_| SourceError::PublisherClosed)
    }
}
