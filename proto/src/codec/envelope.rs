//! Debezium-shaped JSON envelopes for row changes.

use serde_json::{Map, Value as J};

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
