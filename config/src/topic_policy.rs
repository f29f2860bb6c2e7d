//! Whether an existing Kafka topic can carry fleetsync's changes without losing acknowledged
//! data: one pure function, [`check_topic`], over what the broker reports (partitions,
//! replicas, and the topic's effective configs from DescribeConfigs).
//!
//! The agent runs it before publishing and the coordinator before consuming; either refuses
//! to start on a refusal, with the returned line. Rules (a refusal names the setting and the
//! fix):
//!
//! * `unclean.leader.election.enable=true`: an out-of-sync replica may become leader and
//!   truncate changes every in-sync replica had acknowledged.
//! * fewer replicas than `bus.replication_factor`.
//! * `min.insync.replicas` < 2 while there is more than one replica (with `acks=all` a change
//!   is acknowledged once one broker holds it), below `bus.min_insync_replicas`, or above the
//!   replica count (no write could ever be acknowledged: a hang, not a loss, refused as well).
//! * change topic only: `cleanup.policy` containing `compact` (compaction deletes older
//!   changes of a row before a target applied them, and leaves offset gaps the coordinator
//!   treats as loss), and more than one partition (a server's changes are ordered on one).
//!
//! Short retention is a warning, not a refusal: a target that falls behind it is stopped with
//! a gap error, never silently skipped.

use std::collections::BTreeMap;

use crate::bus::{TopicSpec, CHANGE_TOPIC_PARTITIONS};

/// What a topic carries: the rules differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicRole {
    /// `<prefix>.<server>`: fleetsync's own change stream, read by the coordinator.
    Changes,
    /// `<prefix>.<server>.json`: the Debezium-shaped stream for outside consumers
    /// (partitioned by key, like Debezium's; compaction is the consumer's choice).
    DebeziumJson,
}

/// A topic as the broker describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObservedTopic {
    pub partitions: usize,
    /// Fewest replicas of any partition.
    pub replication_factor: i32,
    /// Effective topic configs (broker defaults included), by name.
    pub configs: BTreeMap<String, String>,
}

/// Kafka's defaults for configs a broker did not report.
const KAFKA_DEFAULT_MIN_ISR: i32 = 1;

/// `Ok(warnings)` when `observed` is safe for `role` under `wanted`, else the one-line
/// refusal.
pub fn check_topic(
    topic: &str,
    role: TopicRole,
    observed: &ObservedTopic,
    wanted: &TopicSpec,
) -> Result<Vec<String>, String> {
    let get = |k: &str| {
        observed
            .configs
            .get(k)
            .map(|v| v.trim().to_ascii_lowercase())
    };
    let fix = |setting: &str| {
        format!("kafka-configs.sh --alter --entity-type topics --entity-name {topic} --add-config {setting}")
    };
    if get("unclean.leader.election.enable").as_deref() == Some("true") {
        return Err(format!(
            "topic {topic}: unclean.leader.election.enable=true lets an out-of-sync replica become leader and drop acknowledged changes; set it to false ({})",
            fix("unclean.leader.election.enable=false")
        ));
    }
    let rf = observed.replication_factor;
    if rf < wanted.replication_factor {
        return Err(format!(
            "topic {topic}: replication factor {rf} is below bus.replication_factor = {}; add replicas (kafka-reassign-partitions.sh) or, on a smaller cluster, lower bus.replication_factor",
            wanted.replication_factor
        ));
    }
    let min_isr = match get("min.insync.replicas") {
        None => KAFKA_DEFAULT_MIN_ISR,
        Some(v) => v
            .parse::<i32>()
            .map_err(|_| format!("topic {topic}: cannot read min.insync.replicas = {v:?}"))?,
    };
    if rf > 1 && min_isr < 2 {
        return Err(format!(
            "topic {topic}: min.insync.replicas={min_isr} with {rf} replicas acknowledges a change held by one broker only; set it to 2 or more ({})",
            fix("min.insync.replicas=2")
        ));
    }
    if min_isr < wanted.min_insync_replicas {
        return Err(format!(
            "topic {topic}: min.insync.replicas={min_isr} is below bus.min_insync_replicas = {}; raise it ({})",
            wanted.min_insync_replicas,
            fix(&format!("min.insync.replicas={}", wanted.min_insync_replicas))
        ));
    }
    if min_isr > rf {
        return Err(format!(
            "topic {topic}: min.insync.replicas={min_isr} exceeds its {rf} replicas: no change could ever be acknowledged; lower it ({})",
            fix(&format!("min.insync.replicas={rf}"))
        ));
    }
    if role == TopicRole::Changes {
        if let Some(policy) = get("cleanup.policy").filter(|p| p.contains("compact")) {
            return Err(format!(
                "topic {topic}: cleanup.policy={policy} compacts the change topic, which deletes changes before targets apply them and leaves offset gaps; set cleanup.policy=delete ({})",
                fix("cleanup.policy=delete")
            ));
        }
        if observed.partitions != CHANGE_TOPIC_PARTITIONS as usize {
            return Err(format!(
                "topic {topic}: {} partitions; fleetsync keeps a server's changes in commit order on {CHANGE_TOPIC_PARTITIONS} partition: recreate the topic with 1 partition (or delete it, and the agent creates it)",
                observed.partitions
            ));
        }
    }
    Ok(retention_warnings(topic, &get, wanted))
}

/// Retention shorter than configured: changes a stopped target has not applied can be
/// deleted (the coordinator then stops with a gap error rather than skip them).
fn retention_warnings(
    topic: &str,
    get: &dyn Fn(&str) -> Option<String>,
    wanted: &TopicSpec,
) -> Vec<String> {
    let mut warnings = Vec::new();
    if let Some(ms) = get("retention.ms").and_then(|v| v.parse::<i64>().ok()) {
        let shorter = ms != -1 && (wanted.retention_ms == -1 || ms < wanted.retention_ms);
        if shorter {
            warnings.push(format!(
                "topic {topic}: retention.ms={ms} is shorter than bus.retention_ms = {}: a target stopped longer than that must be re-synced",
                wanted.retention_ms
            ));
        }
    }
    if let Some(bytes) = get("retention.bytes").filter(|b| b != "-1") {
        warnings.push(format!(
            "topic {topic}: retention.bytes={bytes} can delete changes a stopped target has not applied (it must then be re-synced)"
        ));
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC3: TopicSpec = TopicSpec {
        replication_factor: 3,
        min_insync_replicas: 2,
        retention_ms: 604_800_000,
    };
    const SPEC1: TopicSpec = TopicSpec {
        replication_factor: 1,
        min_insync_replicas: 1,
        retention_ms: 604_800_000,
    };

    fn topic(partitions: usize, rf: i32, configs: &[(&str, &str)]) -> ObservedTopic {
        let mut all: BTreeMap<String, String> = [
            ("cleanup.policy", "delete"),
            ("min.insync.replicas", "2"),
            ("unclean.leader.election.enable", "false"),
            ("retention.ms", "604800000"),
            ("retention.bytes", "-1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in configs {
            all.insert(k.to_string(), v.to_string());
        }
        ObservedTopic {
            partitions,
            replication_factor: rf,
            configs: all,
        }
    }

    /// (case, role, observed, wanted, Ok(warnings) or Err(words the refusal contains)).
    #[allow(clippy::type_complexity)]
    fn cases() -> Vec<(
        &'static str,
        TopicRole,
        ObservedTopic,
        TopicSpec,
        Result<usize, &'static [&'static str]>,
    )> {
        use TopicRole::*;
        vec![
            (
                "created by fleetsync",
                Changes,
                topic(1, 3, &[]),
                SPEC3,
                Ok(0),
            ),
            (
                "single node",
                Changes,
                topic(1, 1, &[("min.insync.replicas", "1")]),
                SPEC1,
                Ok(0),
            ),
            (
                "more replicas than asked",
                Changes,
                topic(1, 5, &[("min.insync.replicas", "3")]),
                SPEC3,
                Ok(0),
            ),
            (
                "unclean election",
                Changes,
                topic(1, 3, &[("unclean.leader.election.enable", "true")]),
                SPEC3,
                Err(&["unclean.leader.election.enable=true", "set it to false"]),
            ),
            (
                "unclean election, upper case",
                DebeziumJson,
                topic(
                    1,
                    1,
                    &[
                        ("unclean.leader.election.enable", "TRUE"),
                        ("min.insync.replicas", "1"),
                    ],
                ),
                SPEC1,
                Err(&["unclean"]),
            ),
            (
                "too few replicas",
                Changes,
                topic(1, 1, &[("min.insync.replicas", "1")]),
                SPEC3,
                Err(&["replication factor 1", "bus.replication_factor = 3"]),
            ),
            (
                "min isr 1 with 3 replicas",
                Changes,
                topic(1, 3, &[("min.insync.replicas", "1")]),
                SPEC3,
                Err(&["min.insync.replicas=1", "one broker"]),
            ),
            (
                "min isr 1 with 3 replicas, rf 1 asked",
                Changes,
                topic(1, 3, &[("min.insync.replicas", "1")]),
                SPEC1,
                Err(&["min.insync.replicas=1"]),
            ),
            (
                "min isr missing = Kafka's 1",
                Changes,
                ObservedTopic {
                    partitions: 1,
                    replication_factor: 3,
                    configs: BTreeMap::new(),
                },
                SPEC3,
                Err(&["min.insync.replicas=1"]),
            ),
            (
                "min isr below the configured",
                Changes,
                topic(1, 5, &[("min.insync.replicas", "2")]),
                TopicSpec {
                    min_insync_replicas: 3,
                    ..SPEC3
                },
                Err(&["bus.min_insync_replicas = 3"]),
            ),
            (
                "min isr above replicas",
                Changes,
                topic(1, 1, &[("min.insync.replicas", "2")]),
                SPEC1,
                Err(&["exceeds", "could ever"]),
            ),
            (
                "min isr unreadable",
                Changes,
                topic(1, 3, &[("min.insync.replicas", "two")]),
                SPEC3,
                Err(&["cannot read"]),
            ),
            (
                "compacted change topic",
                Changes,
                topic(1, 3, &[("cleanup.policy", "compact")]),
                SPEC3,
                Err(&["cleanup.policy=compact"]),
            ),
            (
                "compact,delete change topic",
                Changes,
                topic(1, 3, &[("cleanup.policy", "compact,delete")]),
                SPEC3,
                Err(&["cleanup.policy=compact,delete"]),
            ),
            (
                "compacted JSON topic",
                DebeziumJson,
                topic(1, 3, &[("cleanup.policy", "compact")]),
                SPEC3,
                Ok(0),
            ),
            (
                "three partitions",
                Changes,
                topic(3, 3, &[]),
                SPEC3,
                Err(&["3 partitions", "1 partition"]),
            ),
            (
                "three partitions, JSON topic",
                DebeziumJson,
                topic(3, 3, &[]),
                SPEC3,
                Ok(0),
            ),
            (
                "short retention warns",
                Changes,
                topic(1, 3, &[("retention.ms", "3600000")]),
                SPEC3,
                Ok(1),
            ),
            (
                "forever is never short",
                Changes,
                topic(1, 3, &[("retention.ms", "-1")]),
                SPEC3,
                Ok(0),
            ),
            (
                "finite under forever warns",
                Changes,
                topic(1, 3, &[]),
                TopicSpec {
                    retention_ms: -1,
                    ..SPEC3
                },
                Ok(1),
            ),
            (
                "size retention warns",
                Changes,
                topic(
                    1,
                    3,
                    &[("retention.bytes", "1073741824"), ("retention.ms", "1000")],
                ),
                SPEC3,
                Ok(2),
            ),
        ]
    }

    #[test]
    fn topic_policy_table() {
        for (case, role, observed, wanted, expect) in cases() {
            let got = check_topic("fleetsync.src", role, &observed, &wanted);
            match (expect, got) {
                (Ok(n), Ok(w)) => assert_eq!(w.len(), n, "{case}: warnings {w:?}"),
                (Err(words), Err(line)) => {
                    assert!(!line.contains('\n'), "{case}: one line: {line}");
                    assert!(line.starts_with("topic fleetsync.src: "), "{case}: {line}");
                    for w in words {
                        assert!(line.contains(w), "{case}: {line:?} lacks {w:?}");
                    }
                }
                (expect, got) => panic!("{case}: expected {expect:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn created_topics_pass_their_own_check() {
        for spec in [
            SPEC1,
            SPEC3,
            TopicSpec {
                retention_ms: -1,
                ..SPEC3
            },
        ] {
            let configs = spec
                .create_configs()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            let observed = ObservedTopic {
                partitions: CHANGE_TOPIC_PARTITIONS as usize,
                replication_factor: spec.replication_factor,
                configs,
            };
            let got = check_topic("t", TopicRole::Changes, &observed, &spec);
            assert_eq!(got, Ok(vec![]), "{spec:?}");
        }
    }
}
