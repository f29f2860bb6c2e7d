//! Where the coordinator's transactions come from.
//!
//! A [`Feed`] yields whole source transactions in source commit order, each with the bus
//! offset of its last message (Kafka) so the applier can store it with the rows. A feed may
//! yield a transaction again after a restart of its producer (at-least-once); the applier
//! drops it by source position.

pub mod kafka;

use std::future::Future;

use fleetsync_config::TableFilter;
use fleetsync_proto::Transaction;

/// A transaction and the bus offset just after which the next one starts.
#[derive(Debug)]
pub struct FeedItem {
    pub txn: Transaction,
    pub offset: Option<i64>,
    /// A part of a source transaction whose rest follows (the embedded bus only, see
    /// `Applier::apply_part`); Kafka always carries whole transactions.
    pub partial: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("{0}")]
    Bus(String),
    #[error("undecodable message at offset {offset}: {message}")]
    Decode { offset: i64, message: String },
    /// Messages between the last applied one and the next available one are gone (retention,
    /// a broker that lost data): applying on would silently lose changes.
    #[error("the bus lost messages: expected offset {expected} of {topic}, the broker has {found}; the target must be re-synced (`fleetsync resnapshot`, and restart the source's agent with a fresh checkpoint)")]
    Gap {
        topic: String,
        expected: i64,
        found: String,
    },
    /// The agent's message numbers (`fs-seq`) jumped: messages were lost between two
    /// committed ones (Kafka transactions make offsets non-contiguous, so they are checked
    /// instead of offsets).
    #[error("the bus lost messages: expected message {expected} of {topic}, found {found}; the target must be re-synced (`fleetsync resnapshot`)")]
    SeqGap {
        topic: String,
        expected: String,
        found: String,
    },
    /// The topic's settings can lose acknowledged changes (see
    /// `fleetsync_config::topic_policy`): consuming stops until an operator changes them.
    #[error("{0}")]
    UnsafeTopic(String),
}

pub trait Feed: Send {
    /// The next transaction; `Ok(None)` when the feed has ended (its producer stopped).
    fn recv(&mut self) -> impl Future<Output = Result<Option<FeedItem>, FeedError>> + Send;
    /// A transaction if one is ready now, without waiting.
    fn try_recv(&mut self) -> Result<Option<FeedItem>, FeedError>;
    /// Whether nothing is ready now (for lag: caught up with what the bus holds).
    fn is_idle(&self) -> bool;
}

/// Keeps only what `filter` selects: rows of other tables, DDL on other tables and other
/// tables' schemas in a snapshot marker are dropped (a Kafka agent publishes the union of the
/// tables of every sync reading its server).
pub fn retain_selected(txn: &mut Transaction, filter: &TableFilter) {
    let keep: Vec<bool> = txn
        .tables
        .iter()
        .map(|t| filter.matches(&t.schema, &t.table))
        .collect();
    txn.changes
        .retain(|c| keep.get(c.table as usize).copied().unwrap_or(false));
    if txn.snapshot && txn.changes.is_empty() {
        // A snapshot marker lists the tables to prepare: only ours. Indexes are unused here.
        txn.tables.retain(|t| filter.matches(&t.schema, &t.table));
    }
    if let Some(ddl) = &txn.ddl {
        let selected = if ddl.tables.is_empty() {
            ddl.schema.as_deref().is_some_and(|s| filter.matches(s, ""))
        } else {
            ddl.tables.iter().any(|(s, t)| filter.matches(s, t))
        };
        if !selected {
            txn.ddl = None;
        }
    }
}
