//! fleetsync end-to-end tests: one test binary against real MariaDB servers.
//!
//! Every test starts its own servers (127.0.0.1, OS-assigned ports, temp data dirs) and writes
//! its own config, and drives the `fleetsync` binary (`$FLEETSYNC_BIN`, else
//! `target/<profile>/fleetsync`: run `cargo build --workspace` first; `scripts/test.sh` does).
//! The `harness_*` tests check the support library and need no fleetsync.
//!
//! Modules: `support` (server pair, refusal checks), `harness` (self-tests), `types` (every
//! column type byte for byte), `volume` (100k changes), `crash` (kill -9), `ddl` (schema
//! changes mid-stream), `trinitycore` (a real-world schema), `bad_input` (a purged position), `catalogue` (the bad-input catalogue: every refusal, one table), `kafka`
//! (agent and coordinator as separate processes over Apache Kafka, one node), `kafka_agents`
//! (agent standby, takeover and fencing; resuming from the topic with no state volume), `kafka_faults`
//! (a three-broker cluster losing partition leaders, a 2-million-row backlog), `kafka_rig`
//! (their shared source/target/broker fixture), `kafka_security` (TLS and SASL; unsafe topics
//! and missing permissions refused), `debezium_sink` (Debezium's JDBC sink connector loads
//! fleetsync's Debezium JSON topic into a target: Apache Kafka and Kafka Connect started by the
//! test), `kafka_group` (coordinator groups: members killed, stalled and fenced, restarted in
//! turn, scaled 1 → 3 → 1; takeover figures; an ignored throughput benchmark for 1, 2, 3 members),
//! `backup` (backup -> restore round trips, damaged backups, retention, scheduled backups),
//! `pitr` (binlog archive and point-in-time replay), `pitr_s3` (the archive in a bucket:
//! uploads, kills, an outage), `pitr_failing` (an archiver that cannot archive is reported
//! failing), `pitr_prune` (`archive_prune`: the archive shrinks behind the
//! oldest backup, locally and in a bucket), `transfer` (export/import),
//! `schema_diff` (schema diff and migrations), `vmigrate` (versioned migrations: one server,
//! TrinityCore's `updates` table, a fleet rollout), `vmigrate_sync` (versioned migrations
//! through a one-way sync and a three-member group: run once at the origin, received by the sync), `data_diff` (diff data), `health` (health
//! checks), `preflight` (sync definitions refused before any write),
//! `tls` (TLS to the databases: modes, certificates, refusals), `api` (the control-plane API:
//! RBAC matrix from the OpenAPI document, audit, tokens, loopback rule, HTTPS),
//! `bidi` (bidirectional groups converging, checked against an oracle), `lanes` (`apply_lanes = 4`
//! killed ten times during a catch-up), `big_txn` (source transactions of 20,000 rows carried
//! in parts, killed mid-transaction), `s3` (the backup store against a real S3-compatible
//! server, SeaweedFS, started by the test).

mod api;
mod backup;
mod bad_input;
mod bidi;
mod big_txn;
mod binlog_settings;
mod catalogue;
mod conflicts;
mod crash;
mod data_diff;
mod ddl;
mod debezium_sink;
mod files_at_rest;
mod harness;
mod health;
mod kafka;
mod kafka_agents;
mod kafka_faults;
mod kafka_group;
mod kafka_rig;
mod kafka_security;
mod lanes;
mod loop_prevention;
mod pitr;
mod pitr_failing;
mod pitr_prune;
mod pitr_s3;
mod preflight;
mod retry_state;
mod s3;
mod schema_diff;
mod support;
mod tls;
mod transfer;
mod trinitycore;
mod types;
mod vmigrate;
mod vmigrate_sync;
mod volume;
