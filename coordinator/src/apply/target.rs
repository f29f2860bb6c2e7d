//! What the applier needs to know about a target table, and creating missing ones from the
//! source's definition.
//!
//! Looked up once per table and cached by the applier; the cache entry is dropped after any
//! DDL naming the table and on reconnect.

use fleetsync_proto::TableSchema;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};

use super::sql::{push_quoted, push_table};

/// A target table as found in information_schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TargetTable {
    /// Column names of each unique index (the primary key included), lower-cased, in index
    /// order.
    pub unique_indexes: Vec<Vec<String>>,
}

impl TargetTable {
    /// True when the only unique index of the target table is exactly `schema`'s key: the
    /// condition for net-effect compaction.
    pub fn key_is_only_unique_index(&self, schema: &TableSchema) -> bool {
        let mut key: Vec<String> = schema
            .key
            .iter()
            .filter_map(|&i| schema.columns.get(usize::from(i)))
            .map(|c| c.name.to_lowercase())
            .collect();
        if key.is_empty() || key.len() != schema.key.len() {
            return false;
        }
        key.sort();
        match self.unique_indexes.as_slice() {
            [only] => {
                let mut cols = only.clone();
                cols.sort();
                cols == key
            }
            _ => false,
        }
    }
}

fn text(row: &Row, i: usize) -> Option<String> {
    match row.get_opt::<Vec<u8>, _>(i)? {
        Ok(b) => Some(String::from_utf8_lossy(&b).into_owned()),
        Err(_) => None,
    }
}

/// Looks `schema`.`table` up on the target; `None` when it does not exist.
pub(crate) async fn inspect(
    conn: &mut Conn,
    schema: &str,
    table: &str,
) -> Result<Option<TargetTable>, mysql_async::Error> {
    let mut where_ = b" WHERE TABLE_SCHEMA=".to_vec();
    push_quoted(&mut where_, schema.as_bytes());
    where_.extend_from_slice(b" AND TABLE_NAME=");
    push_quoted(&mut where_, table.as_bytes());

    let mut q = b"SELECT TABLE_TYPE FROM information_schema.TABLES".to_vec();
    q.extend_from_slice(&where_);
    let found: Vec<Row> = conn.query(q).await?;
    if found.is_empty() {
        return Ok(None);
    }
    let mut q = b"SELECT INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS".to_vec();
    q.extend_from_slice(&where_);
    q.extend_from_slice(b" AND NON_UNIQUE=0 ORDER BY INDEX_NAME, SEQ_IN_INDEX");
    let rows: Vec<Row> = conn.query(q).await?;
    let mut unique_indexes: Vec<Vec<String>> = Vec::new();
    let mut current: Option<String> = None;
    for row in &rows {
        let (Some(index), Some(column)) = (text(row, 0), text(row, 1)) else {
            continue;
        };
        if current.as_deref() != Some(index.as_str()) {
            unique_indexes.push(Vec::new());
            current = Some(index);
        }
        if let Some(cols) = unique_indexes.last_mut() {
            cols.push(column.to_lowercase());
        }
    }
    Ok(Some(TargetTable { unique_indexes }))
}

/// `SHOW CREATE TABLE` of `schema`.`table` on the source.
pub(crate) async fn show_create(
    source: &mut Conn,
    schema: &str,
    table: &str,
) -> Result<Option<String>, mysql_async::Error> {
    let mut q = b"SHOW CREATE TABLE ".to_vec();
    push_table(&mut q, schema, table);
    let rows: Vec<Row> = source.query(q).await?;
    Ok(rows.first().and_then(|r| text(r, 1)))
}

/// Rewrites the head of a `SHOW CREATE TABLE` output, `` CREATE TABLE `name` (...``, into
/// `` CREATE TABLE IF NOT EXISTS `schema`.`table` (...``. `None` when the text is not a plain
/// CREATE TABLE (a view or a sequence, for example).
pub(crate) fn retarget_create(create: &str, schema: &str, table: &str) -> Option<String> {
    let rest = create.trim_start();
    let head = rest.get(..13)?;
    if !head.eq_ignore_ascii_case("CREATE TABLE ") {
        return None;
    }
    let rest = rest.get(13..)?.trim_start();
    let after_name = if let Some(quoted) = rest.strip_prefix('`') {
        // A backtick-quoted name; `` is an escaped backtick.
        let bytes = quoted.as_bytes();
        let mut i = 0;
        loop {
            match bytes.get(i)? {
                b'`' if bytes.get(i + 1) == Some(&b'`') => i += 2,
                b'`' => break quoted.get(i + 1..)?,
                _ => i += 1,
            }
        }
    } else {
        let end = rest.find(|c: char| c.is_whitespace() || c == '(')?;
        rest.get(end..)?
    };
    let mut out = b"CREATE TABLE IF NOT EXISTS ".to_vec();
    push_table(&mut out, schema, table);
    let mut out = String::from_utf8(out).ok()?;
    out.push_str(after_name);
    Some(out)
}

#[cfg(test)]
mod tests {
    use fleetsync_proto::{Column, ColumnType, KeyKind};

    use super::*;

    #[test]
    fn retargets_create_table() {
        let c = "CREATE TABLE `t``x` (\n  `id` int(11) NOT NULL\n) ENGINE=InnoDB";
        assert_eq!(
            retarget_create(c, "db2", "t2").as_deref(),
            Some(
                "CREATE TABLE IF NOT EXISTS `db2`.`t2` (\n  `id` int(11) NOT NULL\n) ENGINE=InnoDB"
            )
        );
        assert_eq!(
            retarget_create("CREATE TABLE t (id int)", "a", "b").as_deref(),
            Some("CREATE TABLE IF NOT EXISTS `a`.`b` (id int)")
        );
        assert_eq!(
            retarget_create("CREATE SEQUENCE `s` start with 1", "a", "b"),
            None
        );
        assert_eq!(
            retarget_create("CREATE ALGORITHM=UNDEFINED VIEW `v` AS select 1", "a", "b"),
            None
        );
        assert_eq!(
            retarget_create("CREATE TABLE `unterminated", "a", "b"),
            None
        );
    }

    fn schema(key: &[u16]) -> TableSchema {
        let col = |n: &str| Column {
            name: n.into(),
            ty: ColumnType::Int,
            column_type: "int".into(),
            unsigned: false,
            nullable: false,
            charset: None,
            enum_values: vec![],
        };
        TableSchema {
            schema: "s".into(),
            table: "t".into(),
            columns: vec![col("Id"), col("b")],
            key: key.to_vec(),
            key_kind: if key.is_empty() {
                KeyKind::None
            } else {
                KeyKind::Primary
            },
            transactional: true,
        }
    }

    #[test]
    fn compaction_condition() {
        let t = |idx: &[&[&str]]| TargetTable {
            unique_indexes: idx
                .iter()
                .map(|i| i.iter().map(|c| c.to_string()).collect())
                .collect(),
        };
        assert!(t(&[&["id"]]).key_is_only_unique_index(&schema(&[0])));
        assert!(t(&[&["b", "id"]]).key_is_only_unique_index(&schema(&[0, 1])));
        assert!(!t(&[&["id"], &["b"]]).key_is_only_unique_index(&schema(&[0])));
        assert!(!t(&[&["b"]]).key_is_only_unique_index(&schema(&[0])));
        assert!(!t(&[]).key_is_only_unique_index(&schema(&[0])));
        assert!(!t(&[&["id"]]).key_is_only_unique_index(&schema(&[])));
        assert!(!t(&[&["id"]]).key_is_only_unique_index(&schema(&[5])));
    }
}
