//! Interop with a consumer nobody here wrote: Debezium's JDBC sink connector (3.5.0.Final,
//! under Kafka Connect 4.1.1 standalone) reads fleetsync's Debezium JSON topic
//! (`debezium_json = true`, `debezium_json_schemas = true`) from Apache Kafka 4.4.0 and
//! writes a MariaDB target; the target must then equal the source row by row, byte for byte,
//! across every column type of `types.rs`'s `all_types` table (plus `signed_mix` and
//! `ci_key`), through fleetsync's snapshot and the binlog (inserts, updates, a key change,
//! deletes).
//!
//! Only `fleetsync agent` runs: the sink is the consumer. The target tables are created up
//! front with the source's DDL (`schema.evolution=none`), so the comparison is about values,
//! not about the sink's type mapping for new tables.
//!
//! **What Debezium's model cannot carry**, so the rows here avoid it (see
//! [`DEBEZIUM_LIMITS`]): TIME values below 00:00 or from 24:00 on (the JDBC sink binds
//! `io.debezium.time.MicroTime` as a `java.time.LocalTime`; one such value stops its task,
//! as it does on Debezium's own MariaDB connector's topic: checked by hand with Debezium 3.5),
//! zero dates and dates with a zero month or day (`null` in Debezium's logical types), and an
//! ENUM's empty error value. And multi-byte BIT values: Debezium's `io.debezium.data.Bits` is
//! little-endian (Debezium's MariaDB connector sends BIT(10) `0x155` as `55 01`, and so does
//! fleetsync), but the JDBC sink 3.5's MySQL/MariaDB `BitType` binds those bytes unchanged,
//! i.e. big-endian: `55 01` becomes `0x5501` ("Data too long" for BIT(10)) and a BIT(64)
//! `b'1010'` silently becomes `0x0A00000000000000`. fleetsync's own targets carry all of these
//! (`types.rs`).
//!
//! Needs `java` and `mvn` (the jars are fetched once into a cache by `tests/kafka/fetch.sh`);
//! without them the test prints `SKIPPED debezium_jdbc_sink_loads_fleetsync_json: <reason>`
//! and passes.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use fleetsync_tests::connect::{java_tools_missing, KafkaConnect};
use fleetsync_tests::{diff_databases, ConfigBuilder, Fleetsync, KafkaCluster, KafkaOptions};

use crate::support::{exec_lenient, Pair, STOP_TIMEOUT};
use crate::types::{all_inserts, create_tables, edge_rows, insert_row};

/// How long the sink may take to bring the target level with the source (JVM start-up of
/// Kafka Connect and Hibernate included: ~20-40 s on 2 cores).
const SINK_TIMEOUT: Duration = Duration::from_secs(240);

/// Values of `types.rs`'s edge rows that Debezium's logical types cannot carry, and the
/// in-range value each is replaced with here: `(column, replacement, why)`.
const DEBEZIUM_LIMITS: &[(&str, &str, &str)] = &[
    (
        "tm",
        "'23:59:59'",
        "TIME outside 00:00..24:00 stops the JDBC sink's task (LocalTime)",
    ),
    (
        "tm3",
        "'00:00:00.001'",
        "TIME outside 00:00..24:00 stops the JDBC sink's task (LocalTime)",
    ),
    (
        "tm6",
        "'12:30:00.500000'",
        "TIME outside 00:00..24:00 stops the JDBC sink's task (LocalTime)",
    ),
    (
        "dt",
        "'2024-02-29'",
        "zero dates and zero-in-date are null in io.debezium.time.Date",
    ),
    (
        "dtm",
        "'2024-02-29 12:34:56'",
        "zero DATETIME is null in io.debezium.time.Timestamp",
    ),
    (
        "dtm3",
        "'1970-01-01 00:00:00.001'",
        "zero DATETIME is null in io.debezium.time.Timestamp",
    ),
    (
        "dtm6",
        "'1969-12-31 23:59:59.999999'",
        "zero DATETIME is null in MicroTimestamp",
    ),
    (
        "ts0",
        "'2001-02-03 04:05:06'",
        "the zero TIMESTAMP is null in ZonedTimestamp",
    ),
    (
        "ts6",
        "'2001-02-03 04:05:06.000007'",
        "the zero TIMESTAMP is null in ZonedTimestamp",
    ),
    (
        "en",
        "'a'",
        "an ENUM's empty error value ('') is refused by a strict-mode INSERT",
    ),
    (
        "b10",
        "b'0'",
        "the sink binds io.debezium.data.Bits' little-endian bytes as big-endian",
    ),
    (
        "b64",
        "b'0'",
        "the sink binds io.debezium.data.Bits' little-endian bytes as big-endian",
    ),
];

/// Whether `value` (an SQL literal from `edge_rows`) of `column` is outside Debezium's model.
fn beyond_debezium(column: &str, value: &str) -> bool {
    let v = value.trim_matches('\'');
    match column {
        "tm" | "tm3" | "tm6" => {
            let hours: i64 = v
                .split(':')
                .next()
                .and_then(|h| h.parse().ok())
                .unwrap_or(0);
            v.starts_with('-') || hours >= 24
        }
        "dt" | "dtm" | "dtm3" | "dtm6" => v.starts_with("0000") || v.contains("-00"),
        "ts0" | "ts6" => v.starts_with("0000"),
        "en" => v == "not-a-member",
        // Only values whose bytes read the same in either order survive the sink.
        "b10" | "b64" => v != "b'0'" && value != format!("b'{}'", "1".repeat(64)),
        _ => false,
    }
}

/// `types.rs`'s edge rows with the values of [`DEBEZIUM_LIMITS`] replaced.
fn representable_rows() -> Vec<Vec<(&'static str, String)>> {
    edge_rows()
        .into_iter()
        .map(|row| {
            row.into_iter()
                .map(|(c, v)| {
                    if beyond_debezium(c, &v) {
                        let repl = DEBEZIUM_LIMITS
                            .iter()
                            .find(|(col, _, _)| *col == c)
                            .map_or("NULL", |(_, r, _)| r);
                        (c, repl.to_string())
                    } else {
                        (c, v)
                    }
                })
                .collect()
        })
        .collect()
}

/// Inserts of the representable rows (ids `base+1..`) and of `types.rs`'s other two tables.
fn inserts(base: i64) -> String {
    let mut sql: String = representable_rows()
        .iter()
        .enumerate()
        .map(|(i, row)| insert_row(base + i as i64 + 1, row))
        .collect();
    // signed_mix and ci_key from types.rs (no limits apply to them).
    let others = all_inserts(base);
    sql.extend(
        others
            .split_inclusive(';')
            .filter(|s| !s.contains("app.all_types")),
    );
    sql
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debezium_jdbc_sink_loads_fleetsync_json() -> Result<()> {
    const TEST: &str = "debezium_jdbc_sink_loads_fleetsync_json";
    if let Some(reason) = java_tools_missing() {
        println!("SKIPPED {TEST}: {reason}");
        return Ok(());
    }
    // Topics may be auto-created on this broker (the harness's default is off): the sink's
    // consumer may ask for fleetsync's topic before the agent has created it.
    let kafka =
        KafkaCluster::start(KafkaOptions::single().property("auto.create.topics.enable", "true"))
            .await?;
    let pair = Pair::start_with(&["--default-time-zone=+05:00"], &[]).await?;
    let (src, dst) = (&pair.src, &pair.dst);
    create_tables(src).await?;
    create_tables(dst).await?;
    // Snapshot path: rows that exist before the agent starts.
    exec_lenient(src, &inserts(0)).await?;

    let config = ConfigBuilder::new(&pair.state_dir())
        .server("src", &src.url_root())
        .server("dst", &dst.url_root())
        .sync("s1", "src", &["dst"], &["app\\..*"], &[])
        .kafka_bus(&kafka.bootstrap(), 1)
        .raw("debezium_json = true\ndebezium_json_schemas = true\n")
        .build();
    let config = Fleetsync::write_config(pair.dir.path(), &config)?;
    let mut agent = Fleetsync::spawn("agent", &config, &[])?;

    let mut sink = KafkaConnect::start(
        &kafka,
        &[
            ("name", "fleetsync-jdbc-sink".into()),
            (
                "connector.class",
                "io.debezium.connector.jdbc.JdbcSinkConnector".into(),
            ),
            ("tasks.max", "1".into()),
            ("topics", "fleetsync.src.json".into()),
            (
                "connection.url",
                format!("jdbc:mariadb://127.0.0.1:{}/app", dst.port()),
            ),
            ("connection.username", "root".into()),
            ("connection.password", String::new()),
            ("insert.mode", "upsert".into()),
            ("delete.enabled", "true".into()),
            ("primary.key.mode", "record_key".into()),
            ("schema.evolution", "none".into()),
            // One topic holds every table of the server: the table comes from `source`.
            ("collection.name.format", "${source.table}".into()),
            ("use.time.zone", "UTC".into()),
        ],
    )
    .await?;
    wait_sink(
        &kafka,
        &mut agent,
        &mut sink,
        src,
        dst,
        "after the snapshot",
    )
    .await?;

    // Binlog path: more rows, whole-row updates (also to NULL), a key change, deletes.
    exec_lenient(src, &inserts(100)).await?;
    let rows = representable_rows();
    let mut sql = String::from("START TRANSACTION;");
    sql.push_str(&insert_row(1000, &rows[1]).replace("INSERT", "REPLACE"));
    sql.push_str("UPDATE app.all_types SET id = 2000 WHERE id = 3;");
    sql.push_str("UPDATE app.all_types SET vc = CONCAT(IFNULL(vc, ''), '✓'), ti_u = 255 - IFNULL(ti_u, 0) WHERE id > 100;");
    sql.push_str("UPDATE app.all_types SET dec65 = NULL, js = NULL, geo = NULL WHERE id = 2;");
    sql.push_str("DELETE FROM app.all_types WHERE id IN (4, 104);");
    sql.push_str("UPDATE app.signed_mix SET b = 255, d = 4294967295, e = 18446744073709551615, y = 0 WHERE id = 1;");
    sql.push_str("DELETE FROM app.signed_mix WHERE id = 3;");
    sql.push_str("UPDATE app.ci_key SET name = 'ABC0' WHERE name = 'abc0' AND n = 1;");
    sql.push_str("COMMIT;");
    exec_lenient(src, &sql).await?;
    wait_sink(
        &kafka,
        &mut agent,
        &mut sink,
        src,
        dst,
        "after binlog changes",
    )
    .await?;
    agent.stop(STOP_TIMEOUT).await?;
    Ok(())
}

/// Waits until every table of `app` on the target equals the source's, failing early if the
/// agent or the sink's task dies.
async fn wait_sink(
    kafka: &KafkaCluster,
    agent: &mut Fleetsync,
    sink: &mut KafkaConnect,
    src: &fleetsync_tests::MariaDb,
    dst: &fleetsync_tests::MariaDb,
    when: &str,
) -> Result<()> {
    let t0 = Instant::now();
    loop {
        agent
            .ensure_running()
            .with_context(|| format!("{when}: agent log:\n{}", agent.log_tail(30)))?;
        sink.ensure_healthy().with_context(|| when.to_string())?;
        let diff = diff_databases(src, dst, "app", "app").await?;
        let Some(diff) = diff else {
            return Ok(());
        };
        if t0.elapsed() > SINK_TIMEOUT {
            let messages = kafka.high_watermark_if_exists("fleetsync.src.json").await;
            bail!(
                "{when}: the target still differs after {SINK_TIMEOUT:?} (messages in \
                 fleetsync.src.json: {messages:?}):\n{diff}\nKafka Connect log:\n{}",
                sink.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
