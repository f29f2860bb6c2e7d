//! fleetsync agent: one per database server.
//!
//! * [`source`]: reads a MariaDB server: preflight checks, the consistent initial snapshot and
//!   the binlog stream, decoded into [`fleetsync_proto::Transaction`]s.
//! * [`publish`]: where transactions go ([`publish::Publisher`]); the embedded in-process bus.
//! * [`checkpoint`]: the agent's positions, kept in sled.

pub mod checkpoint;
pub mod ddl;
pub mod error;
pub mod publish;
pub mod source;

pub use error::SourceError;
