//! fleetsync agent: one per database server.
//!
//! * [`source`]: reads a MariaDB server: preflight checks, the consistent initial snapshot and
//!   the binlog stream, decoded into [`fleetsync_proto::Transaction`]s.
//! * [`publish`]: where transactions go ([`publish::Publisher`]); the embedded in-process bus.
//! * [`checkpoint`]: the agent's positions, kept in sled.
//! * [`backup`]: backups, restore, point-in-time recovery (agent tasks).
//! * [`inspect`]: schema snapshots (the full schema model) for diffs and migrations.
//! * [`transfer`]: export and import as SQL, JSON or CSV.
//! * [`health`]: health checks of a server (on demand and periodic).
//! * [`datadiff`]: chunk checksums and row hashes over key ranges for `diff data`.
//!
//! [`datadiff`], [`inspect`], [`ddl`], [`error`], `source::{decode, schema, tls}` and the
//! binlog archive's format and reader live in `fleetsync-mysql` (shared with the coordinator,
//! which does not depend on this crate) and are re-exported here at their old paths.

pub mod backup;
pub mod checkpoint;
pub mod health;
pub mod owner_only;
pub mod publish;
pub mod source;
pub mod transfer;

// Shared with the coordinator through `fleetsync-mysql`; re-exported at their old paths.
pub use fleetsync_mysql::{datadiff, ddl, error, inspect, SourceError};
