//! Debezium-shaped JSON envelopes for row changes, in two forms:
//!
//! * **schemaless** ([`record_to_json`], [`record_key_json`]): the envelope alone, values as
//!   [`value_to_json`] renders them (dates as strings, ...). What Kafka Connect's
//!   `JsonConverter` writes with `schemas.enable=false`.
//! * **with schemas** ([`record_to_connect_json`], [`record_key_connect_json`]):
//!   `{"schema": ..., "payload": ...}` as `JsonConverter` writes with `schemas.enable=true`
//!   (its default), values typed as Debezium's MariaDB connector types them (see
//!   `connect.rs`). This is what Kafka Connect sinks such as Debezium's JDBC sink need.
//!
//! [`debezium_key`] / [`debezium_value`] pick one by a flag (`[bus] debezium_json_schemas`).

use serde_json::{json, Map, Value as J};

use super::connect::{column_value, struct_schema};
use super::{value_from_json, value_to_json, CodecError};
use crate::{ChangeRecord, Column, Op, Transaction, Value};

/// Value of `source.connector` in every envelope.
pub const CONNECTOR_NAME: &str = "fleetsync";

/// The Debezium envelope of one row change:
///
/// ```json
/// {
///   "before": {"id": 1, "name": "old"} | null,
///   "after":  {"id": 1, "name": "new"} | null,
///   "source": {
///     "version": "<crate version>", "connector": "fleetsync", "name": "<origin name>",
///     "server_id": 1, "server_uuid": "", "gtid": "0-1-100" | null,
///     "file": "binlog.000003", "pos": 1234, "row": 0, "db": "shop", "table": "items",
///     "ts_ms": 1700000000000, "snapshot": "true" | "false", "txn_id": 100
///   },
///   "op": "c" | "u" | "d" | "r",
///   "ts_ms": 1700000000000
/// }
/// ```
///
/// `file`/`pos` are the position just after the transaction (where to resume), `row` the
/// change's order within it, `ts_ms` the commit time on the source, `snapshot` is `"true"`
/// exactly for snapshot reads (`op` `r`). Row images map column names
/// to [`value_to_json`] renderings.
pub fn record_to_json(r: &ChangeRecord<'_>) -> J {
    let image = |img: Option<&[Value]>| img.map_or(J::Null, |v| row_to_json(&r.table.columns, v));
    let snapshot = if r.op == Op::Snapshot {
        "true"
    } else {
        "false"
    };
    let mut source = Map::new();
    source.insert("version".into(), env!("CARGO_PKG_VERSION").into());
    source.insert("connector".into(), CONNECTOR_NAME.into());
    source.insert("name".into(), r.origin.name.as_str().into());
    source.insert("server_id".into(), r.origin.server_id.into());
    source.insert("server_uuid".into(), r.origin.server_uuid.as_str().into());
    source.insert(
        "gtid".into(),
        r.gtid.map_or(J::Null, |g| g.to_string().into()),
    );
    source.insert("file".into(), r.position.binlog.file.as_str().into());
    source.insert("pos".into(), r.position.binlog.pos.into());
    source.insert("row".into(), r.seq.into());
    source.insert("db".into(), r.table.schema.as_str().into());
    source.insert("table".into(), r.table.table.as_str().into());
    source.insert("ts_ms".into(), r.commit_ts_ms.into());
    source.insert("snapshot".into(), snapshot.into());
    source.insert("txn_id".into(), r.txn_id.into());

    let mut envelope = Map::new();
    envelope.insert("before".into(), image(r.before));
    envelope.insert("after".into(), image(r.after));
    envelope.insert("source".into(), J::Object(source));
    envelope.insert("op".into(), op_code(r.op).into());
    envelope.insert("ts_ms".into(), r.commit_ts_ms.into());
    J::Object(envelope)
}

/// The envelope of [`record_to_json`] with its Kafka Connect schema:
/// `{"schema": <Envelope struct>, "payload": <envelope>}`.
///
/// The schema is named like Debezium's: `fleetsync.<origin>.<db>.<table>.Envelope` (a name
/// ending in `.Envelope` is how Debezium's sinks recognise a change event), with row structs
/// `...Value` for `before`/`after` and `io.debezium.connector.fleetsync.Source` for `source`.
/// Row values are typed as in `connect.rs` (days, microseconds, Decimal bytes, ...), so the
/// payload's row images differ from the schemaless form's; `source`, `op` and `ts_ms` are the
/// same. Built per record: it costs more than the schemaless form (measured in the benchmark).
pub fn record_to_connect_json(r: &ChangeRecord<'_>) -> J {
    let base = schema_base(r);
    let row_schema = struct_schema(&format!("{base}.Value"), true, &r.table.columns);
    let mut before_schema = row_schema.clone();
    before_schema["field"] = "before".into();
    let mut after_schema = row_schema;
    after_schema["field"] = "after".into();
    let schema = json!({
        "type": "struct",
        "optional": false,
        "name": format!("{base}.Envelope"),
        "version": 1,
        "fields": [
            before_schema,
            after_schema,
            source_schema(),
            {"type": "string", "optional": false, "field": "op"},
            {"type": "int64", "optional": true, "field": "ts_ms"},
        ],
    });
    let image = |img: Option<&[Value]>| img.map_or(J::Null, |v| connect_row(&r.table.columns, v));
    let mut payload = record_to_json(r);
    if let J::Object(m) = &mut payload {
        m.insert("before".into(), image(r.before));
        m.insert("after".into(), image(r.after));
    }
    json!({"schema": schema, "payload": payload})
}

/// The key of [`record_key_json`] with its Kafka Connect schema (a struct of the key columns
/// named `fleetsync.<origin>.<db>.<table>.Key`), values typed as in
/// [`record_to_connect_json`].
pub fn record_key_connect_json(r: &ChangeRecord<'_>) -> J {
    let image = match r.op {
        Op::Delete => r.before,
        _ => r.after.or(r.before),
    };
    let mut cols = Vec::new();
    let mut payload = Map::new();
    if let Some(image) = image {
        for &i in &r.table.key {
            let i = usize::from(i);
            if let (Some(col), Some(v)) = (r.table.columns.get(i), image.get(i)) {
                cols.push(col);
                payload.insert(col.name.clone(), column_value(v, col));
            }
        }
    }
    let schema = struct_schema(&format!("{}.Key", schema_base(r)), false, cols);
    json!({"schema": schema, "payload": payload})
}

/// The Debezium JSON key of a row change: [`record_key_connect_json`] when `schemas`, else
/// [`record_key_json`].
pub fn debezium_key(r: &ChangeRecord<'_>, schemas: bool) -> J {
    if schemas {
        record_key_connect_json(r)
    } else {
        record_key_json(r)
    }
}

/// The Debezium JSON value of a row change: [`record_to_connect_json`] when `schemas`, else
/// [`record_to_json`].
pub fn debezium_value(r: &ChangeRecord<'_>, schemas: bool) -> J {
    if schemas {
        record_to_connect_json(r)
    } else {
        record_to_json(r)
    }
}

/// The messages of one row change on the Debezium JSON topic, as Debezium's MySQL and
/// MariaDB connectors send them: `(key, value)` pairs, a `None` value being a tombstone.
///
/// * insert, snapshot read: the envelope;
/// * delete: the envelope, then a tombstone for its key (so that compaction can drop it);
/// * update that keeps the key: the envelope;
/// * update that changes the key (any byte of a key column, so `abc` -> `ABC` too): a delete
///   of the old key (`op` `d`, `before` = old row) and its tombstone, then a create of the
///   new key (`op` `c`, `after` = new row). A sink that upserts by key (Debezium's JDBC sink)
///   would otherwise keep the old row next to the new one.
pub fn debezium_messages(r: &ChangeRecord<'_>, schemas: bool) -> Vec<(J, Option<J>)> {
    let key_changed = r.op == Op::Update
        && match (r.before, r.after) {
            (Some(b), Some(a)) => r.table.key.iter().any(|&i| {
                let i = usize::from(i);
                b.get(i) != a.get(i)
            }),
            _ => false,
        };
    let mut out = Vec::with_capacity(3);
    if key_changed {
        let delete = ChangeRecord {
            op: Op::Delete,
            after: None,
            ..r.clone()
        };
        let create = ChangeRecord {
            op: Op::Insert,
            before: None,
            ..r.clone()
        };
        let old_key = debezium_key(&delete, schemas);
        out.push((old_key.clone(), Some(debezium_value(&delete, schemas))));
        out.push((old_key, None));
        out.push((
            debezium_key(&create, schemas),
            Some(debezium_value(&create, schemas)),
        ));
        return out;
    }
    let key = debezium_key(r, schemas);
    out.push((key.clone(), Some(debezium_value(r, schemas))));
    if r.op == Op::Delete {
        out.push((key, None));
    }
    out
}

/// `fleetsync.<origin>.<db>.<table>`: the prefix of the Connect schema names of a table.
fn schema_base(r: &ChangeRecord<'_>) -> String {
    format!(
        "{CONNECTOR_NAME}.{}.{}.{}",
        r.origin.name, r.table.schema, r.table.table
    )
}

fn connect_row(columns: &[Column], values: &[Value]) -> J {
    let row = columns
        .iter()
        .zip(values)
        .map(|(col, v)| (col.name.clone(), column_value(v, col)))
        .collect::<Map<_, _>>();
    J::Object(row)
}

/// The Connect schema of the `source` block written by [`record_to_json`].
fn source_schema() -> J {
    let f = |ty: &str, optional: bool, field: &str| json!({"type": ty, "optional": optional, "field": field});
    json!({
        "type": "struct",
        "optional": false,
        "name": "io.debezium.connector.fleetsync.Source",
        "field": "source",
        "fields": [
            f("string", false, "version"),
            f("string", false, "connector"),
            f("string", false, "name"),
            f("int64", false, "server_id"),
            f("string", false, "server_uuid"),
            f("string", true, "gtid"),
            f("string", false, "file"),
            f("int64", false, "pos"),
            f("int32", false, "row"),
            f("string", false, "db"),
            f("string", false, "table"),
            f("int64", false, "ts_ms"),
            f("string", false, "snapshot"),
            f("int64", false, "txn_id"),
        ],
    })
}

/// The row's identifying key as an object of key columns (after image, or before image for
/// deletes); `{}` when the table has no usable key.
pub fn record_key_json(r: &ChangeRecord<'_>) -> J {
    let image = match r.op {
        Op::Delete => r.before,
        _ => r.after.or(r.before),
    };
    let mut key = Map::new();
    if let Some(image) = image {
        for &i in &r.table.key {
            let i = usize::from(i);
            if let (Some(col), Some(v)) = (r.table.columns.get(i), image.get(i)) {
                key.insert(col.name.clone(), value_to_json(v, col));
            }
        }
    }
    J::Object(key)
}

/// One envelope per row change of `t`, in order (see [`record_to_json`]).
pub fn transaction_to_json(t: &Transaction) -> Vec<J> {
    t.records().map(|r| record_to_json(&r)).collect()
}

/// A row image as an object of column name to [`value_to_json`] rendering. Values beyond the
/// last column (a malformed image) are left out.
pub fn row_to_json(columns: &[Column], values: &[Value]) -> J {
    let row = columns
        .iter()
        .zip(values)
        .map(|(col, v)| (col.name.clone(), value_to_json(v, col)))
        .collect::<Map<_, _>>();
    J::Object(row)
}

/// Inverse of [`row_to_json`]: every column must be present, and no other key.
pub fn row_from_json(j: &J, columns: &[Column]) -> Result<Vec<Value>, CodecError> {
    let row_err = |reason: String| CodecError::InvalidRow { reason };
    let obj = j
        .as_object()
        .ok_or_else(|| row_err("a row must be a JSON object".into()))?;
    if let Some(k) = obj.keys().find(|k| !columns.iter().any(|c| &c.name == *k)) {
        return Err(row_err(format!("unknown column `{k}`")));
    }
    columns
        .iter()
        .map(|col| {
            let v = obj
                .get(&col.name)
                .ok_or_else(|| row_err(format!("missing column `{}`", col.name)))?;
            value_from_json(v, col)
        })
        .collect()
}

fn op_code(op: Op) -> &'static str {
    match op {
        Op::Insert => "c",
        Op::Update => "u",
        Op::Delete => "d",
        Op::Snapshot => "r",
    }
}
