//! The `fleetsync` library: everything the `fleetsync` binary does (`main.rs` only parses
//! arguments, dispatches to a command here and renders the one error report).
//!
//! # Layering
//!
//! * **Service layer** ([`service`]): one library function per operation (health, schema
//!   and data diff, backup create/verify/restore/prune, export/import, migrations, conflicts),
//!   taking a typed request (`fleetsync_proto::requests`), a progress [`service::Tracker`]
//!   and a cancellation token, and returning the typed report (`fleetsync_proto::jobs`,
//!   `fleetsync_proto::health`, `fleetsync_proto::datadiff`). No printing, no HTTP.
//! * **Jobs** ([`jobs`]): runs service calls as jobs for the API (queue, progress, log,
//!   approval, durable record).
//! * **Thin adapters** on top, which call the service layer and never re-implement it: the
//!   CLI commands (`*_cmd.rs`, [`status`], [`conflicts`], ...: parse, call, print text or
//!   `--json`) and the API handlers ([`api`]: JSON in, a job or a report out). The remote CLI
//!   ([`remote`]) sends the same typed requests to a coordinator's API.
//! * The sync runtime ([`run`], [`kafka_cmds`], [`manager`]) wires the agent and coordinator
//!   crates into pipelines and serves the API and `/metrics`.

pub mod api;
mod archive_cmd;
pub mod backup_cmd;
pub mod cgroup;
pub mod conflicts;
mod control;
mod cycles;
mod datadiff_cmd;
pub mod definitions;
mod defs;
pub mod diff_cmd;
pub mod exit;
mod failure;
pub mod group;
pub mod health_cmd;
mod http;
pub mod jobs;
pub mod kafka_cmds;
mod kafka_topics;
pub mod manager;
pub mod migrate_cmd;
mod opts;
mod pipeline;
pub mod preflight;
pub mod remote;
pub mod run;
pub mod service;
pub mod status;
pub mod tail;
mod tasks;
pub mod token_cmd;
pub mod transfer_cmd;
pub mod vmigrate_cmd;
