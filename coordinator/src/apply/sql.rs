//! SQL text for the applier: the row statements, rendered straight into one reusable byte
//! buffer. Identifiers and literals come from [`fleetsync_proto::sql`].

use fleetsync_proto::{Column, Value};

pub(crate) use fleetsync_proto::sql::{
    civil_from_days, push_hex, push_ident, push_int_literal, push_quoted, push_row, push_table,
    push_value, table_name, ValueError,
};

/// The key's column list as the left side of an `IN`: `col` for one column, `(a,b)` for
/// several.
pub(crate) fn key_columns(columns: &[Column], key: &[usize]) -> Vec<u8> {
    let mut kc = Vec::new();
    if key.len() != 1 {
        kc.push(b'(');
    }
    for (n, &i) in key.iter().enumerate() {
        if n > 0 {
            kc.push(b',');
        }
        push_ident(&mut kc, &columns[i].name);
    }
    if key.len() != 1 {
        kc.push(b')');
    }
    kc
}

/// Appends the key of `image`: `v` for a one-column key, `(v1,v2)` otherwise.
pub(crate) fn push_key(
    buf: &mut Vec<u8>,
    image: &[Value],
    key: &[usize],
) -> Result<(), ValueError> {
    if key.len() != 1 {
        buf.push(b'(');
    }
    for (n, &i) in key.iter().enumerate() {
        if n > 0 {
            buf.push(b',');
        }
        let v = image
            .get(i)
            .ok_or_else(|| ValueError(format!("key column {i} missing")))?;
        push_value(buf, v)?;
    }
    if key.len() != 1 {
        buf.push(b')');
    }
    Ok(())
}

/// Appends the full-row match of a keyless table: `` `c1` <=> v1 AND ... ``. Character
/// columns are also compared as bytes, so that a row differing only in case or trailing
/// spaces (equal under the column's collation) is not taken for another, as native
/// replication's full-row compare does.
pub(crate) fn push_row_match(
    buf: &mut Vec<u8>,
    columns: &[Column],
    image: &[Value],
) -> Result<(), ValueError> {
    for (i, (col, v)) in columns.iter().zip(image).enumerate() {
        if i > 0 {
            buf.extend_from_slice(b" AND ");
        }
        push_ident(buf, &col.name);
        buf.extend_from_slice(b" <=> ");
        push_value(buf, v)?;
        if let Value::Text(_) = v {
            buf.extend_from_slice(b" AND CAST(");
            push_ident(buf, &col.name);
            buf.extend_from_slice(b" AS BINARY) <=> ");
            push_value(buf, v)?;
        }
    }
    Ok(())
}

/// Appends `` `c1`=v1,`c2`=v2 ``.
pub(crate) fn push_assignments(
    buf: &mut Vec<u8>,
    columns: &[Column],
    image: &[Value],
) -> Result<(), ValueError> {
    for (i, (col, v)) in columns.iter().zip(image).enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        push_ident(buf, &col.name);
        buf.push(b'=');
        push_value(buf, v)?;
    }
    Ok(())
}

/// The parts of a table's statements that do not depend on the row, rendered once per batch.
#[derive(Debug, Clone)]
pub(crate) struct TableSql {
    /// `` `schema`.`table` ``.
    pub name: Vec<u8>,
    /// `` INSERT INTO `s`.`t` (`a`,`b`) VALUES ``.
    pub insert_head: Vec<u8>,
    /// `` ON DUPLICATE KEY UPDATE `b`=VALUES(`b`) ``.
    pub upsert_tail: Vec<u8>,
    /// `` DELETE FROM `s`.`t` WHERE `k` IN ( `` (or `(`k1`,`k2`) IN (`).
    pub delete_head: Vec<u8>,
}

impl TableSql {
    /// The statement that applies a parked version later (`conflicts resolve --take`): an
    /// upsert of `row`, or, for a delete (`None`), a delete of `key_img`'s key.
    pub fn parked_apply(
        &self,
        row: Option<&[Value]>,
        key_img: &[Value],
        key: &[usize],
    ) -> Result<Vec<u8>, ValueError> {
        let mut apply = Vec::new();
        match row {
            Some(row) => {
                apply.extend_from_slice(&self.insert_head);
                push_row(&mut apply, row)?;
                apply.extend_from_slice(&self.upsert_tail);
            }
            None => {
                apply.extend_from_slice(&self.delete_head);
                push_key(&mut apply, key_img, key)?;
                apply.push(b')');
            }
        }
        Ok(apply)
    }

    /// `key` holds indexes into `columns` (empty for a keyless table).
    pub fn new(target_schema: &str, target_table: &str, columns: &[Column], key: &[usize]) -> Self {
        let mut name = Vec::new();
        push_table(&mut name, target_schema, target_table);

        let mut insert_head = b"INSERT INTO ".to_vec();
        insert_head.extend_from_slice(&name);
        insert_head.extend_from_slice(b" (");
        for (i, c) in columns.iter().enumerate() {
            if i > 0 {
                insert_head.push(b',');
            }
            push_ident(&mut insert_head, &c.name);
        }
        insert_head.extend_from_slice(b") VALUES ");

        let mut upsert_tail = b" ON DUPLICATE KEY UPDATE ".to_vec();
        let mut assigned: Vec<&Column> = columns
            .iter()
            .enumerate()
            .filter(|(i, _)| !key.contains(i))
            .map(|(_, c)| c)
            .collect();
        if assigned.is_empty() {
            // Every column is in the key: a no-op assignment keeps the statement valid.
            assigned.extend(key.first().and_then(|&i| columns.get(i)));
        }
        for (i, c) in assigned.iter().enumerate() {
            if i > 0 {
                upsert_tail.push(b',');
            }
            push_ident(&mut upsert_tail, &c.name);
            upsert_tail.extend_from_slice(b"=VALUES(");
            push_ident(&mut upsert_tail, &c.name);
            upsert_tail.push(b')');
        }

        let mut delete_head = b"DELETE FROM ".to_vec();
        delete_head.extend_from_slice(&name);
        delete_head.extend_from_slice(b" WHERE ");
        if key.len() != 1 {
            delete_head.push(b'(');
        }
        for (n, c) in key.iter().filter_map(|&i| columns.get(i)).enumerate() {
            if n > 0 {
                delete_head.push(b',');
            }
            push_ident(&mut delete_head, &c.name);
        }
        if key.len() != 1 {
            delete_head.push(b')');
        }
        delete_head.extend_from_slice(b" IN (");
        TableSql {
            name,
            insert_head,
            upsert_tail,
            delete_head,
        }
    }
}

#[cfg(test)]
#[path = "sql_tests.rs"]
mod tests;
