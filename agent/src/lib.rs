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

pub mod backup;
pub mod checkpoint;
pub mod datadiff;
pub mod ddl;
pub mod error;
pub mod health;
pub mod inspect;
pub mod owner_only;
pub mod publish;
pub mod source;
pub mod transfer;

pub use error::SourceError;
