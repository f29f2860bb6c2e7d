//! Where the agent's transactions go.

use std::future::Future;
use std::sync::Arc;

use fleetsync_proto::Transaction;
use tokio::sync::{mpsc, Semaphore};

use crate::SourceError;

/// A sink for source transactions.
///
/// Contract:
/// * `publish` is called in source commit order, one call at a time (never overlapping).
/// * When `publish` returns `Ok`, the bus holds the transaction: for the embedded bus that
///   means it is queued in memory (bounded; `publish` waits while the queue is full, which is
///   how a slow consumer slows this reader and no other); for Kafka, that it is in the open Kafka transaction, which commits within
///   [`kafka::TXN_LINGER`] (the reader calls [`Publisher::idle`] when the source is quiet).
/// * Acceptance is not durability of the effect: the agent's checkpoint moves only when the
///   consumer acknowledges the applied position (embedded bus), so after a crash the agent
///   resumes from an acknowledged position and transactions after it may be published again.
///   Consumers drop those by position (at-least-once delivery, exactly-once effect). Over
///   Kafka the resume position is the last committed transaction in the topic itself: nothing
///   is published twice there, and nothing uncommitted is ever visible.
pub trait Publisher: Send {
    fn publish(&mut self, txn: Transaction)
        -> impl Future<Output = Result<(), SourceError>> + Send;

    /// When the reader should call [`Publisher::idle`] if no transaction comes before it
    /// (`None`: never). Lets a batching publisher end its batch when the source goes quiet.
    fn idle_deadline(&self) -> Option<tokio::time::Instant> {
        None
    }

    /// Called at [`Publisher::idle_deadline`] while no transaction came.
    fn idle(&mut self) -> impl Future<Output = Result<(), SourceError>> + Send {
        async { Ok(()) }
    }
}

/// The in-process bus: a channel to one consumer, bounded both in transactions and in rows
/// (a single source transaction can hold many rows; the row bound is what bounds memory).
pub struct EmbeddedPublisher {
    tx: mpsc::Sender<(Transaction, u32)>,
    rows: Arc<Semaphore>,
    max_rows: u32,
}

/// The consumer end of the embedded bus.
pub struct EmbeddedReceiver {
    rx: mpsc::Receiver<(Transaction, u32)>,
    rows: Arc<Semaphore>,
}

/// Rows a transaction counts for against the queue's row bound (at least 1, at most the bound,
/// so one huge transaction still passes alone).
fn weight(txn: &Transaction, max_rows: u32) -> u32 {
    (txn.changes.len().max(1) as u64).min(u64::from(max_rows)) as u32
}

impl EmbeddedPublisher {
    /// A publisher and its receiver, holding at most `capacity` transactions and about
    /// `max_rows` rows.
    pub fn channel(capacity: usize, max_rows: usize) -> (EmbeddedPublisher, EmbeddedReceiver) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let max_rows = max_rows.clamp(1, u32::MAX as usize >> 4) as u32;
        let rows = Arc::new(Semaphore::new(max_rows as usize));
        (
            EmbeddedPublisher {
                tx,
                rows: rows.clone(),
                max_rows,
            },
            EmbeddedReceiver { rx, rows },
        )
    }
}

impl Publisher for EmbeddedPublisher {
    async fn publish(&mut self, txn: Transaction) -> Result<(), SourceError> {
        let w = weight(&txn, self.max_rows);
        let permit = self
            .rows
            .acquire_many(w)
            .await
            .map_err(|_| SourceError::PublisherClosed)?;
        permit.forget();
        self.tx
            .send((txn, w))
            .await
            .map_err(|_| SourceError::PublisherClosed)
    }
}

impl EmbeddedReceiver {
    fn release(&self, item: Option<(Transaction, u32)>) -> Option<Transaction> {
        item.map(|(t, w)| {
            self.rows.add_permits(w as usize);
            t
        })
    }

    /// The next transaction; `None` once the publisher is gone and the queue is empty.
    pub async fn recv(&mut self) -> Option<Transaction> {
        let item = self.rx.recv().await;
        self.release(item)
    }

    pub fn try_recv(&mut self) -> Result<Transaction, mpsc::error::TryRecvError> {
        let (t, w) = self.rx.try_recv()?;
        self.rows.add_permits(w as usize);
        Ok(t)
    }

    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }
}

impl Drop for EmbeddedReceiver {
    fn drop(&mut self) {
        // Wake a publisher waiting for room: it then fails on the closed channel.
        self.rows.close();
    }
}

pub mod election;
pub mod kafka;
pub mod tail;
