//! fleetsync's MySQL-side code shared by the agent and the coordinator.
//!
//! * [`decode`]: values as the server sends them (binlog row images, binary-protocol rows) to
//!   [`fleetsync_proto::Value`]s.
//! * [`schema`]: table definitions from information_schema (signedness, key, ENUM/SET members).
//! * [`inspect`]: schema snapshots (the full schema model) for diffs and migrations.
//! * [`ddl`]: classifying QUERY events (DDL and the tables it names).
//! * [`datadiff`]: the per-server side of `diff data`: a consistent-snapshot [`datadiff::Session`]
//!   with chunk checksums and row hashes over key ranges.
//! * [`tls`]: TLS failures told apart from lost connections.
//! * [`error`]: [`SourceError`], a server's errors classified once (transient or not).
//! * [`archive`]: reading the binlog archive (format and verifying reader) for PITR.
//!
//! The boundary: code that both sides run against a server (the agent against its source, the
//! coordinator against its targets, or against both for diffs, migrations and PITR) lives here;
//! code only one side runs stays in that side's crate. The agent keeps the binlog stream, the
//! snapshot, checkpoints, publishers, backups (crypto, manifests, the archive *writer* and
//! archiver task), export/import and health checks, and re-exports these modules at their old
//! paths (`fleetsync_agent::datadiff`, `fleetsync_agent::source::schema`, ...). The coordinator
//! depends on this crate and `fleetsync-proto`, never on the agent. No Kafka, sled, backup
//! crypto or CLI dependency belongs here.

pub mod archive;
pub mod datadiff;
pub mod ddl;
pub mod decode;
pub mod error;
pub mod inspect;
pub mod schema;
pub mod tls;

pub use error::SourceError;
