//! Test support for fleetsync's end-to-end tests: private MariaDB servers, byte-exact
//! table comparison, a runner for the `fleetsync` binary, workload generators, Apache Kafka
//! clusters (one node or three, started from Maven-fetched jars: `kafka_setup`, `kafka`; with
//! TLS, SASL and ACLs: `kafka_secure`; test certificates: `certs`), Kafka Connect with Debezium's connectors on such a
//! cluster (`connect`), librdkafka's mock cluster for quick checks (`kafka_mock`) and the
//! TrinityCore fixtures, a small client for fleetsync's API (`api`), and a real S3-compatible
//! server (SeaweedFS, `s3`).
//!
//! Every helper talks to servers it started itself (127.0.0.1, OS-assigned ports, temp data
//! dirs): a MariaDB already running on 3306 is never touched. Waits poll a condition with a
//! timeout instead of sleeping.

pub mod api;
pub mod certs;
pub mod compare;
pub mod connect;
pub mod fixtures;
pub mod fleetsync;
pub mod generic;
pub mod kafka;
pub mod kafka_admin;
pub mod kafka_mock;
pub mod kafka_secure;
pub mod kafka_setup;
pub mod mariadb;
pub mod ports;
pub mod s3;
pub mod wait;
pub mod workload;

pub use certs::{Certs, KeyPair};
pub use compare::{
    assert_databases_equal, assert_schemas_equal, assert_tables_equal, base_tables, diff_databases,
    diff_schemas, diff_tables,
};
pub use fixtures::{load_trinitycore, repo_root, trinitycore_dir, trinitycore_fixtures};
pub use fleetsync::{
    fleetsync_bin, fleetsync_cmd, fleetsync_cmd_with, proc_cpu_seconds, simple_config, status_json,
    wait_synced_procs, ConfigBuilder, Fleetsync,
};
pub use generic::{churn_schema, fill_schema, RowGenerator};
pub use kafka::KafkaCluster;
pub use kafka_admin::{PartitionState, TopicSpec};
pub use kafka_mock::MockKafka;
pub use kafka_secure::{secure_options, SecureKafka};
pub use kafka_setup::{KafkaOptions, Listener, ScramUser};
pub use mariadb::{hex_literal, quote_ident, quote_str, MariaDb};
pub use ports::{free_port, free_ports};
pub use s3::S3Server;
pub use wait::{wait_synced, wait_until};
pub use workload::Workload;
