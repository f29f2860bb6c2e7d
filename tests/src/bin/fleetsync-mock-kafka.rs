//! librdkafka's mock Kafka cluster as its own process, for tests: agents and coordinators
//! connect to it over TCP like to any broker.
//!
//! Usage: `fleetsync-mock-kafka [--brokers N] [TOPIC...]`. Creates the topics (one partition
//! each; the mock's admin CreateTopics times out, so topics are made here), prints
//! `bootstrap=<host:port,...>` on one line of stdout, and serves until stdin closes or it is
//! killed.
//!
//! Commands on stdin, one a line, for fault tests (the data stays, unlike a restart of this
//! process, which loses everything the in-memory cluster held):
//! - `down [ID]`: the broker (all when no id) drops its connections and refuses new ones;
//! - `up [ID]`: it accepts connections again.
//!
//! Each command is answered on stdout with `ok <command>` or `error <command>: <reason>`.

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
        let Ok(line) = line else { break };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let mut words = line.split_whitespace();
        let verb = words.next().unwrap_or_default();
        let id = match words.next().map(str::parse::<i32>) {
            None => Ok(-1),
            Some(Ok(id)) => Ok(id),
            Some(Err(e)) => Err(format!("bad broker id: {e}")),
        };
        let result = id.and_then(|id| match verb {
            "down" => cluster.broker_down(id).map_err(|e| e.to_string()),
            "up" => cluster.broker_up(id).map_err(|e| e.to_string()),
            other => Err(format!("unknown command {other:?} (down [ID], up [ID])")),
        });
        let _ = match result {
            Ok(()) => writeln!(out, "ok {line}"),
            Err(e) => writeln!(out, "error {line}: {e}"),
        };
        let _ = out.flush();
    }
    drop(cluster);
    std::process::ExitCode::SUCCESS
}
