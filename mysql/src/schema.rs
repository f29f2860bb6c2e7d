//! Table definitions from `information_schema`, cached per table.
//!
//! The binlog's TABLE_MAP event says how each column is encoded; this cache adds what it
//! cannot be trusted with or does not carry: signedness (MariaDB's TABLE_MAP signedness bitmap
//! is shifted when a table has a YEAR column, NOTES.md), character vs binary strings, ENUM/SET
//! members, nullability, generated columns, the identifying key and the engine.

use std::collections::HashMap;
use std::sync::Arc;

use fleetsync_proto::{ColumnType, KeyKind};
use mysql_async::prelude::Queryable;

use crate::SourceError;

/// One column as information_schema describes it now.
#[derive(Debug, Clone)]
pub struct InfoColumn {
    pub name: String,
    pub ty: ColumnType,
    pub column_type: String,
    pub unsigned: bool,
    pub nullable: bool,
    pub charset: Option<String>,
    pub enum_values: Vec<String>,
    /// VIRTUAL/STORED generated: never written to targets.
    pub generated: bool,
}

/// A table as information_schema describes it now.
#[derive(Debug, Clone)]
pub struct InfoTable {
    pub schema: String,
    pub table: String,
    pub columns: Vec<InfoColumn>,
    /// Names of the identifying key's columns, in key order.
    pub key: Vec<String>,
    pub key_kind: KeyKind,
    pub transactional: bool,
}

impl InfoTable {
    pub fn column(&self, name: &str) -> Option<&InfoColumn> {
        self.columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }
}

/// Cache of [`InfoTable`]s, invalidated on DDL.
#[derive(Default)]
pub struct SchemaCache {
    tables: HashMap<(String, String), Option<Arc<InfoTable>>>,
}

impl SchemaCache {
    pub fn invalidate(&mut self) {
        self.tables.clear();
    }

    /// The table's current definition; `None` if it no longer exists.
    pub async fn get(
        &mut self,
        conn: &mut mysql_async::Conn,
        server: &str,
        schema: &str,
        table: &str,
    ) -> Result<Option<Arc<InfoTable>>, SourceError> {
        let key = (schema.to_string(), table.to_string());
        if let Some(t) = self.tables.get(&key) {
            return Ok(t.clone());
        }
        let t = load_table(conn, server, schema, table).await?.map(Arc::new);
        self.tables.insert(key, t.clone());
        Ok(t)
    }
}

type ColumnRow = (String, String, String, String, Option<String>, String);

/// Reads one table's definition.
pub async fn load_table(
    conn: &mut mysql_async::Conn,
    server: &str,
    schema: &str,
    table: &str,
) -> Result<Option<InfoTable>, SourceError> {
    read_table(conn, schema, table).await.map_err(|e| {
        SourceError::from_mysql(
            server,
            &format!("reading the definition of {schema}.{table}"),
            e,
        )
    })
}

/// [`load_table`] on any server (the applier reads its targets' tables with it), keeping the
/// client's error for the caller to classify.
pub async fn read_table(
    conn: &mut mysql_async::Conn,
    schema: &str,
    table: &str,
) -> Result<Option<InfoTable>, mysql_async::Error> {
    let engine: Option<Option<String>> = conn
        .exec_first(
            "SELECT ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND TABLE_TYPE = 'BASE TABLE'",
            (schema, table),
        )
        .await?;
    let Some(engine) = engine else {
        return Ok(None);
    };
    let rows: Vec<ColumnRow> = conn
        .exec(
            "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, CHARACTER_SET_NAME, EXTRA \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
            (schema, table),
        )
        .await?;
    let columns: Vec<InfoColumn> = rows
        .into_iter()
        .map(|(name, data_type, column_type, nullable, charset, extra)| {
            let ty = column_family(&data_type, charset.as_deref());
            let lower = column_type.to_ascii_lowercase();
            let enum_values = if matches!(ty, ColumnType::Enum | ColumnType::Set) {
                parse_enum_values(&column_type)
            } else {
                Vec::new()
            };
            let extra = extra.to_ascii_uppercase();
            InfoColumn {
                name,
                ty,
                unsigned: lower.contains("unsigned"),
                nullable: nullable == "YES",
                charset: charset.filter(|c| c != "binary"),
                enum_values,
                generated: extra.contains("GENERATED")
                    || extra.contains("PERSISTENT")
                    || extra.contains("VIRTUAL"),
                column_type,
            }
        })
        .collect();
    let stats: Vec<(String, i64, String)> = conn
        .exec(
            "SELECT INDEX_NAME, NON_UNIQUE, COLUMN_NAME FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY INDEX_NAME = 'PRIMARY' DESC, INDEX_NAME, SEQ_IN_INDEX",
            (schema, table),
        )
        .await?;
    let (key, key_kind) = choose_key(&columns, &stats);
    let transactional = !matches!(
        engine.as_deref().map(str::to_ascii_lowercase).as_deref(),
        Some("myisam" | "aria" | "memory" | "csv" | "archive" | "merge" | "mrg_myisam")
    );
    Ok(Some(InfoTable {
        schema: schema.to_string(),
        table: table.to_string(),
        columns,
        key,
        key_kind,
        transactional,
    }))
}

/// The primary key, else the first UNIQUE key whose columns are all NOT NULL.
fn choose_key(columns: &[InfoColumn], stats: &[(String, i64, String)]) -> (Vec<String>, KeyKind) {
    let mut indexes: Vec<(&str, bool, Vec<String>)> = Vec::new();
    for (name, non_unique, col) in stats {
        match indexes.last_mut() {
            Some((n, _, cols)) if *n == name.as_str() => cols.push(col.clone()),
            _ => indexes.push((name.as_str(), *non_unique == 0, vec![col.clone()])),
        }
    }
    if let Some((_, _, cols)) = indexes.iter().find(|(n, _, _)| *n == "PRIMARY") {
        return (cols.clone(), KeyKind::Primary);
    }
    let not_null = |c: &String| {
        columns
            .iter()
            .any(|ic| &ic.name == c && !ic.nullable && !ic.generated)
    };
    match indexes
        .iter()
        .find(|(_, unique, cols)| *unique && cols.iter().all(not_null))
    {
        Some((_, _, cols)) => (cols.clone(), KeyKind::UniqueNotNull),
        None => (Vec::new(), KeyKind::None),
    }
}

/// Maps information_schema's DATA_TYPE to the value model's family.
pub fn column_family(data_type: &str, charset: Option<&str>) -> ColumnType {
    use ColumnType::*;
    let binary = charset.is_none() || charset == Some("binary");
    match data_type.to_ascii_lowercase().as_str() {
        "tinyint" | "bool" | "boolean" => TinyInt,
        "smallint" => SmallInt,
        "mediumint" => MediumInt,
        "int" | "integer" => Int,
        "bigint" => BigInt,
        "decimal" | "numeric" => Decimal,
        "float" => Float,
        "double" | "real" => Double,
        "bit" => Bit,
        "date" => Date,
        "time" => Time,
        "datetime" => DateTime,
        "timestamp" => Timestamp,
        "year" => Year,
        "char" if binary => Binary,
        "char" => Char,
        "varchar" if binary => VarBinary,
        "varchar" => VarChar,
        "binary" => Binary,
        "varbinary" => VarBinary,
        "tinytext" | "text" | "mediumtext" | "longtext" if binary => Blob,
        "tinytext" | "text" | "mediumtext" | "longtext" => Text,
        "tinyblob" | "blob" | "mediumblob" | "longblob" => Blob,
        "enum" => Enum,
        "set" => Set,
        "json" => Json,
        "geometry" | "point" | "linestring" | "polygon" | "multipoint" | "multilinestring"
        | "multipolygon" | "geometrycollection" | "geomcollection" => Geometry,
        _ => Blob,
    }
}

/// Parses the members of `enum('a','b''c')` / `set(...)`.
pub fn parse_enum_values(column_type: &str) -> Vec<String> {
    let Some(open) = column_type.find('(') else {
        return Vec::new();
    };
    let body = &column_type[open + 1..];
    let mut out = Vec::new();
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\'' {
            continue;
        }
        let mut s = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\'' if chars.peek() == Some(&'\'') => {
                    chars.next();
                    s.push('\'');
                }
                '\'' => break,
                '\\' => {
                    if let Some(n) = chars.next() {
                        s.push(n);
                    }
                }
                c => s.push(c),
            }
        }
        out.push(s);
    }
    out
}

/// Every base table on the server whose `schema.table` passes `keep`.
pub async fn list_tables(
    conn: &mut mysql_async::Conn,
    server: &str,
    keep: impl Fn(&str, &str) -> bool,
) -> Result<Vec<(String, String)>, SourceError> {
    let rows: Vec<(String, String)> = conn
        .query(
            "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_TYPE = 'BASE TABLE' \
             AND TABLE_SCHEMA NOT IN ('mysql','information_schema','performance_schema','sys') ORDER BY 1, 2",
        )
        .await
        .map_err(|e| SourceError::from_mysql(server, "listing tables", e))?;
    Ok(rows.into_iter().filter(|(s, t)| keep(s, t)).collect())
}

impl InfoTable {
    /// The wire schema: generated columns left out (targets compute their own), key by index.
    pub fn to_schema(&self) -> fleetsync_proto::TableSchema {
        let kept: Vec<&InfoColumn> = self.columns.iter().filter(|c| !c.generated).collect();
        let columns: Vec<fleetsync_proto::Column> = kept
            .iter()
            .map(|c| fleetsync_proto::Column {
                name: c.name.clone(),
                ty: c.ty,
                column_type: c.column_type.clone(),
                unsigned: c.unsigned,
                nullable: c.nullable,
                charset: c.charset.clone(),
                enum_values: c.enum_values.clone(),
            })
            .collect();
        let key: Option<Vec<u16>> = self
            .key
            .iter()
            .map(|k| columns.iter().position(|c| &c.name == k).map(|p| p as u16))
            .collect();
        let (key, key_kind) = match key {
            Some(k) if self.key_kind != KeyKind::None => (k, self.key_kind),
            _ => (Vec::new(), KeyKind::None),
        };
        fleetsync_proto::TableSchema {
            schema: self.schema.clone(),
            table: self.table.clone(),
            columns,
            key,
            key_kind,
            transactional: self.transactional,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_values_parse_quotes() {
        assert_eq!(
            parse_enum_values("enum('a','b''c','d,e')"),
            vec!["a", "b'c", "d,e"]
        );
        assert_eq!(parse_enum_values("set('x')"), vec!["x"]);
    }

    #[test]
    fn families() {
        assert_eq!(
            column_family("varchar", Some("latin1")),
            ColumnType::VarChar
        );
        assert_eq!(column_family("varchar", None), ColumnType::VarBinary);
        assert_eq!(column_family("longtext", Some("utf8mb4")), ColumnType::Text);
        assert_eq!(column_family("point", None), ColumnType::Geometry);
    }
}
