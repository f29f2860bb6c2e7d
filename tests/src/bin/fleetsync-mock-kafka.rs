//! librdkafka's mock Kafka cluster as its own process, for tests: agents and coordinators
//! connect to it over TCP like to any broker.
//!
//! Usage: `fleetsync-mock-kafka [--brokers N] [TOPIC...]`. Creates the topics (one partition
//! each; the mock's admin CreateTopics times out, so topics are made here), prints
//! `bootstrap=<host:port,...>` on one line of stdout, and serves until stdin closes or it is
//! killed.

use std::io::{BufRead, Write};

fn main() -> std::process::ExitCode {
    let mut brokers = 1;
    let mut topics = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--brokers" {
            brokers = args.next().and_then(|n| n.parse().ok()).unwrap_or(1);
        } else {
            topics.push(a);
        }
    }
    let cluster = match rdkafka::mocking::MockCluster::new(brokers) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: cannot start the mock cluster: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    for t in &topics {
        if let Err(e) = cluster.create_topic(t, 1, 1) {
            eprintln!("error: cannot create topic {t}: {e}");
            return std::process::ExitCode::FAILURE;
        }
    }
    let mut out = std::io::stdout();
    let _ = writeln!(out, "bootstrap={}", cluster.bootstrap_servers());
    let _ = out.flush();
    // Serve until stdin closes (the test harness drops its end) or a signal ends us.
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        if line.is_err() {
            break;
        }
    }
    drop(cluster);
    std::process::ExitCode::SUCCESS
}
