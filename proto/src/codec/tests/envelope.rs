//! Envelope tests: the Debezium-shaped JSON (schemaless and with Kafka Connect schemas) and
//! the split of key changes into delete + tombstone + create.

use super::*;

#[test]
fn debezium_envelope_for_an_update() {
    let t = sample_transaction();
    let envelopes = transaction_to_json(&t);
    assert_eq!(envelopes.len(), 1);
    assert_eq!(
        envelopes[0],
        json!({
            "before": {"id": 1, "t": "old", "e": "new"},
            "after": {"id": 1, "t": "n\u{e9}w", "e": "sold"},
            "source": {
                "version": env!("CARGO_PKG_VERSION"),
                "connector": "fleetsync",
                "name": "db1",
                "server_id": 7,
                "server_uuid": "",
                "gtid": "0-7-100",
                "file": "binlog.000003",
                "pos": 1234,
                "row": 0,
                "db": "shop",
                "table": "items",
                "ts_ms": 1_700_000_000_123u64,
                "snapshot": "false",
                "txn_id": 100
            },
            "op": "u",
            "ts_ms": 1_700_000_000_123u64
        })
    );
    let record = t.records().next().unwrap();
    assert_eq!(record_key_json(&record), json!({"id": 1}));
}

#[test]
fn envelope_ops_and_snapshot_flag() {
    let mut t = sample_transaction();
    t.gtid = None;
    let row = t.changes[0].after.clone();
    t.changes = vec![
        RowChange {
            table: 0,
            op: Op::Insert,
            before: None,
            after: row.clone(),
        },
        RowChange {
            table: 0,
            op: Op::Delete,
            before: row.clone(),
            after: None,
        },
        RowChange {
            table: 0,
            op: Op::Snapshot,
            before: None,
            after: row,
        },
        RowChange {
            table: 9,
            op: Op::Insert,
            before: None,
            after: None,
        },
    ];
    let envs = transaction_to_json(&t);
    assert_eq!(envs.len(), 3, "changes of unknown tables are skipped");
    let ops: Vec<&str> = envs.iter().map(|e| e["op"].as_str().unwrap()).collect();
    assert_eq!(ops, ["c", "d", "r"]);
    assert_eq!(envs[0]["before"], J::Null);
    assert_eq!(envs[1]["after"], J::Null);
    assert_eq!(envs[1]["source"]["row"], json!(1));
    assert_eq!(envs[0]["source"]["gtid"], J::Null);
    let snaps: Vec<&str> = envs
        .iter()
        .map(|e| e["source"]["snapshot"].as_str().unwrap())
        .collect();
    assert_eq!(snaps, ["false", "false", "true"]);
    let delete = t.records().nth(1).unwrap();
    assert_eq!(record_key_json(&delete), json!({"id": 1}));
}

#[test]
fn rows_round_trip_and_reject_mismatched_objects() {
    let t = sample_transaction();
    let cols = &t.tables[0].columns;
    let row = t.changes[0].after.clone().unwrap();
    let j = row_to_json(cols, &row);
    assert_eq!(row_from_json(&j, cols).unwrap(), row);

    let err = row_from_json(&json!({"id": 1, "t": "x"}), cols)
        .unwrap_err()
        .to_string();
    assert_eq!(err, "invalid JSON row: missing column `e`");
    let err = row_from_json(&json!({"id": 1, "t": "x", "e": "", "zz": 1}), cols).unwrap_err();
    assert_eq!(err.to_string(), "invalid JSON row: unknown column `zz`");
    assert!(row_from_json(&json!([1]), cols).is_err());
}

/// A key change goes out as delete (+ tombstone) of the old key and create of the new one,
/// as Debezium's MariaDB connector sends it; an update that keeps the key is one envelope.
#[test]
fn debezium_messages_split_key_changes() {
    let t = sample_transaction();
    let r = t.records().next().unwrap();
    let same_key = debezium_messages(&r, false);
    assert_eq!(same_key.len(), 1);
    assert_eq!(same_key[0].1.as_ref().unwrap()["op"], "u");

    let mut t2 = t.clone();
    if let Some(after) = t2.changes[0].after.as_mut() {
        after[0] = Value::Int(2);
    }
    let r = t2.records().next().unwrap();
    let msgs = debezium_messages(&r, false);
    assert_eq!(msgs.len(), 3);
    assert_eq!(msgs[0].0, json!({"id": 1}));
    assert_eq!(msgs[0].1.as_ref().unwrap()["op"], "d");
    assert_eq!(msgs[0].1.as_ref().unwrap()["after"], J::Null);
    assert_eq!(msgs[1], (json!({"id": 1}), None));
    assert_eq!(msgs[2].0, json!({"id": 2}));
    assert_eq!(msgs[2].1.as_ref().unwrap()["op"], "c");
    assert_eq!(msgs[2].1.as_ref().unwrap()["before"], J::Null);
}

/// With schemas: `{"schema", "payload"}`, an envelope schema named `...Envelope` (how
/// Debezium's sinks recognise change events), the key as a struct of the key columns.
#[test]
fn connect_envelope_has_schema_and_payload() {
    let t = sample_transaction();
    let r = t.records().next().unwrap();
    let v = record_to_connect_json(&r);
    assert_eq!(v["schema"]["name"], "fleetsync.db1.shop.items.Envelope");
    let fields: Vec<&str> = v["schema"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["before", "after", "source", "op", "ts_ms"]);
    assert_eq!(v["payload"]["op"], "u");
    assert_eq!(v["payload"]["source"]["table"], "items");
    let k = record_key_connect_json(&r);
    assert_eq!(k["schema"]["name"], "fleetsync.db1.shop.items.Key");
    assert_eq!(k["schema"]["fields"][0]["field"], "id");
    // The sample's id is BIGINT UNSIGNED: a Decimal (scale 0) of 1, in key and row alike.
    assert_eq!(k["payload"], json!({"id": "AQ=="}));
    assert_eq!(v["payload"]["after"]["id"], "AQ==");
    // Without schemas: the old form, unchanged.
    assert_eq!(debezium_value(&r, false), record_to_json(&r));
}
