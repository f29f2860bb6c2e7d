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

    /// Whether this bus takes a source transaction in parts, and of about how many bytes
    /// (see [`Transaction::mem_bytes`]): `None` (the default) = whole transactions only. Only
    /// the embedded bus says yes, when the consumer applies parts inside one open target
    /// transaction (see docs/memory.md).
    fn part_bytes(&self) -> Option<usize> {
        None
    }

    /// Accepts one part of a source transaction whose rest follows: every part but the last
    /// goes here, the last through [`Publisher::publish`]. Parts carry the transaction's GTID
    /// and id, the tables so far, only their own rows, and the position of their last event
    /// (between the previous transaction's end and this one's). Called in order, never
    /// overlapping, and only when [`Publisher::part_bytes`] is `Some`.
    fn publish_part(
        &mut self,
        txn: Transaction,
    ) -> impl Future<Output = Result<(), SourceError>> + Send {
        let _ = txn;
        async { Err(SourceError::PublisherClosed) }
    }
}

/// The in-process bus: a channel to one consumer, bounded in transactions, in rows and in
/// bytes (a single source transaction can hold many rows; the row and byte bounds are what
/// bound memory). With parts on, no item is larger than about the part size, so the bounds
/// hold; without, one larger transaction still passes alone.
pub struct EmbeddedPublisher {
    tx: mpsc::Sender<Queued>,
    rows: Arc<Semaphore>,
    max_rows: u32,
    kib: Arc<Semaphore>,
    max_kib: u32,
    part_bytes: Option<usize>,
}

/// One item of the embedded bus.
pub struct Queued {
    pub txn: Transaction,
    /// A part of a source transaction whose rest follows (see [`Publisher::publish_part`]).
    pub partial: bool,
    rows: u32,
    kib: u32,
}

/// The consumer end of the embedded bus.
pub struct EmbeddedReceiver {
    rx: mpsc::Receiver<Queued>,
    rows: Arc<Semaphore>,
    kib: Arc<Semaphore>,
}

/// Units a transaction counts for against a bound of `max` (at least 1, at most the bound, so
/// one larger item still passes alone).
fn weight(units: usize, max: u32) -> u32 {
    (units.max(1) as u64).min(u64::from(max)) as u32
}

impl EmbeddedPublisher {
    /// A publisher and its receiver, holding at most `capacity` transactions, about
    /// `max_rows` rows and about `max_bytes` bytes of row changes; `part_bytes`: take large
    /// source transactions in parts of about this size (`None`: whole).
    pub fn channel(
        capacity: usize,
        max_rows: usize,
        max_bytes: usize,
        part_bytes: Option<usize>,
    ) -> (EmbeddedPublisher, EmbeddedReceiver) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let max_rows = max_rows.clamp(1, u32::MAX as usize >> 4) as u32;
        let max_kib = (max_bytes / 1024).clamp(1, u32::MAX as usize >> 4) as u32;
        let rows = Arc::new(Semaphore::new(max_rows as usize));
        let kib = Arc::new(Semaphore::new(max_kib as usize));
        (
            EmbeddedPublisher {
                tx,
                rows: rows.clone(),
                max_rows,
                kib: kib.clone(),
                max_kib,
                part_bytes: part_bytes.map(|b| b.max(1)),
            },
            EmbeddedReceiver { rx, rows, kib },
        )
    }

    async fn send(&mut self, txn: Transaction, partial: bool) -> Result<(), SourceError> {
        let rows = weight(txn.changes.len(), self.max_rows);
        let kib = weight(txn.mem_bytes() / 1024, self.max_kib);
        // One publisher: taking the two bounds one after the other cannot deadlock.
        self.rows
            .acquire_many(rows)
            .await
            .map_err(|_| SourceError::PublisherClosed)?
            .forget();
        match self.kib.acquire_many(kib).await {
            Ok(p) => p.forget(),
            Err(_) => return Err(SourceError::PublisherClosed),
        }
        let item = Queued {
            txn,
            partial,
            rows,
            kib,
        };
        self.tx
            .send(item)
            .await
            .map_err(|_| SourceError::PublisherClosed)
    }
}

impl Publisher for EmbeddedPublisher {
    async fn publish(&mut self, txn: Transaction) -> Result<(), SourceError> {
        self.send(txn, false).await
    }

    fn part_bytes(&self) -> Option<usize> {
        self.part_bytes
    }

    async fn publish_part(&mut self, txn: Transaction) -> Result<(), SourceError> {
        if self.part_bytes.is_none() {
            return Err(SourceError::PublisherClosed);
        }
        self.send(txn, true).await
    }
}

impl EmbeddedReceiver {
    fn release(&self, item: Queued) -> Queued {
        self.rows.add_permits(item.rows as usize);
        self.kib.add_permits(item.kib as usize);
        item
    }

    /// The next item; `None` once the publisher is gone and the queue is empty.
    pub async fn recv(&mut self) -> Option<Queued> {
        let item = self.rx.recv().await?;
        Some(self.release(item))
    }

    pub fn try_recv(&mut self) -> Result<Queued, mpsc::error::TryRecvError> {
        let item = self.rx.try_recv()?;
        Ok(self.release(item))
    }

    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }
}

impl Drop for EmbeddedReceiver {
    fn drop(&mut self) {
        // Wake a publisher waiting for room: it then fails on the closed channel.
        self.rows.close();
        self.kib.close();
    }
}

pub mod election;
pub mod kafka;
pub mod tail;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use fleetsync_proto::{BinlogPosition, Op, Origin, Position, RowChange, Transaction, Value};

    use super::{EmbeddedPublisher, Publisher};

    /// A transaction of `rows` inserts, each holding one `bytes`-byte text value.
    fn txn(rows: usize, bytes: usize) -> Transaction {
        Transaction {
            origin: Origin {
                name: "s".into(),
                server_id: 1,
                server_uuid: String::new(),
            },
            gtid: None,
            position: Position {
                binlog: BinlogPosition::new("binlog.000001", 4),
                gtid: None,
            },
            txn_id: 1,
            commit_ts_ms: 0,
            snapshot: false,
            snapshot_done: false,
            tables: Vec::new(),
            changes: (0..rows)
                .map(|_| RowChange {
                    table: 0,
                    op: Op::Insert,
                    before: None,
                    after: Some(vec![Value::Text(vec![b'x'; bytes])]),
                })
                .collect(),
            ddl: None,
        }
    }

    #[test]
    fn mem_bytes_counts_heap_values() {
        let small = txn(10, 10).mem_bytes();
        let wide = txn(10, 10_000).mem_bytes();
        assert!(wide - small >= 10 * (10_000 - 10), "{small} {wide}");
        assert!(wide < 10 * 11_000, "{wide}");
    }

    #[tokio::test]
    async fn the_byte_bound_holds_back_the_publisher_until_the_consumer_takes() {
        // 1 MiB bound, rows and transactions plenty: two ~600 KiB transactions do not fit.
        let (mut tx, mut rx) = EmbeddedPublisher::channel(100, 1_000_000, 1 << 20, None);
        tx.publish(txn(60, 10_000)).await.expect("published");
        let second = tokio::time::timeout(Duration::from_millis(200), tx.publish(txn(60, 10_000)));
        assert!(
            second.await.is_err(),
            "the second transaction fit the byte bound"
        );
        let first = rx.recv().await.expect("an item");
        assert!(!first.partial);
        assert_eq!(first.txn.changes.len(), 60);
        tokio::time::timeout(Duration::from_secs(5), tx.publish(txn(60, 10_000)))
            .await
            .expect("room after the consumer took one")
            .expect("published");
        // One transaction larger than the whole bound still passes alone.
        rx.recv().await.expect("an item");
        tokio::time::timeout(Duration::from_secs(5), tx.publish(txn(300, 10_000)))
            .await
            .expect("a larger transaction passes alone")
            .expect("published");
    }

    #[tokio::test]
    async fn parts_are_flagged_and_only_taken_when_asked_for() {
        let (mut whole, _rx) = EmbeddedPublisher::channel(10, 1_000, 1 << 20, None);
        assert_eq!(whole.part_bytes(), None);
        assert!(whole.publish_part(txn(1, 1)).await.is_err());

        let (mut tx, mut rx) = EmbeddedPublisher::channel(10, 1_000, 1 << 20, Some(1 << 18));
        assert_eq!(tx.part_bytes(), Some(1 << 18));
        tx.publish_part(txn(2, 1)).await.expect("published");
        tx.publish(txn(1, 1)).await.expect("published");
        assert!(rx.recv().await.expect("an item").partial);
        assert!(!rx.try_recv().expect("an item").partial);
    }
}
