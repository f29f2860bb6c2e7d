//! fleetsync's wire contract: change records, positions, the column value model and their
//! encodings. This crate is pure data: no async runtime, no database client, no bus client.
//!
//! * [`value`]: [`Value`], one variant per family of MySQL/MariaDB column types, exact.
//! * [`schema`]: [`TableSchema`] / [`Column`]: what a row image's columns are.
//! * [`position`]: [`BinlogPosition`], [`Gtid`], [`GtidSet`], [`Position`]: ordered,
//!   printable and parseable source coordinates.
//! * [`record`]: [`Transaction`] (what travels on the bus) and [`RowChange`].
//! * [`codec`]: the versioned bincode encoding for the bus and the Debezium-shaped JSON
//!   encoding for people and outside consumers.
//! * [`schema_model`]: a database's full schema (tables, indexes, keys, views, triggers)
//!   for schema diffs and migrations.
//! * [`sql`]: identifiers and exact SQL literals for values.
//! * [`health`]: health reports (checks with evidence, overall status, fixes).
//! * [`datadiff`]: key ranges, chunk checksums and the data diff report.
//! * [`jobs`]: control-plane jobs (state, progress, log) and the reports of the tasks that run
//!   as jobs (schema diff, backup create/verify/restore).
//! * [`requests`]: the typed requests of those tasks (what the CLI passes to the service
//!   layer and the API's `POST /api/v1/jobs/{kind}` takes).

pub mod calendar;
pub mod codec;
pub mod conflicts;
pub mod datadiff;
pub mod health;
pub mod jobs;
pub mod position;
pub mod record;
pub mod requests;
pub mod schema;
pub mod schema_model;
pub mod sql;
pub mod value;

#[cfg(test)]
mod testing;

pub use codec::CodecError;
pub use position::{BinlogPosition, Gtid, GtidSet, ParseError, Position};
pub use record::{ChangeRecord, Ddl, Op, Origin, RowChange, Transaction};
pub use schema::{Column, ColumnType, KeyKind, TableSchema};
pub use value::Value;
