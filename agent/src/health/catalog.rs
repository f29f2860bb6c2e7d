//! The catalog of user tables the schema and data checks work on, read once per run from
//! information_schema: base tables (engine, estimated rows, size, the comment in which the
//! server reports an unreadable table), columns, indexes and foreign keys.
//!
//! System schemas (`mysql`, `information_schema`, `performance_schema`, `sys`) are left out;
//! fleetsync's own `fleetsync` schema is included (its tables should be healthy too).

use std::collections::BTreeMap;

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

/// `(schema, table)`.
pub type TableKey = (String, String);

/// information_schema.TABLES: schema, name, engine, rows, data length, index length, comment.
type TableRow = (
    String,
    String,
    Option<String>,
    Option<u64>,
    Option<u64>,
    Option<u64>,
    Option<String>,
);
/// information_schema.STATISTICS: schema, table, index, non-unique, type, column, prefix.
type IndexRow = (String, String, String, u64, String, String, Option<u64>);

const USER_SCHEMAS: &str = "NOT IN ('mysql','information_schema','performance_schema','sys')";

#[derive(Debug, Clone, Default)]
pub struct TableInfo {
    pub schema: String,
    pub name: String,
    /// `None` when the server cannot open the table (the reason is in `comment`).
    pub engine: Option<String>,
    /// Estimated rows (exact for MyISAM/Aria, an estimate for InnoDB).
    pub rows: u64,
    /// Data + index bytes.
    pub bytes: u64,
    pub comment: String,
}

#[derive(Debug, Clone, Default)]
pub struct ColumnInfo {
    pub name: String,
    /// `DATA_TYPE`, lower case (`int`, `datetime`, ...).
    pub data_type: String,
    pub nullable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IndexInfo {
    pub name: String,
    pub unique: bool,
    /// `BTREE`, `HASH`, `FULLTEXT`, `SPATIAL`, ...
    pub kind: String,
    /// Columns in order with their prefix length (`None`: whole column).
    pub columns: Vec<(String, Option<u64>)>,
}

impl IndexInfo {
    pub fn is_primary(&self) -> bool {
        self.name == "PRIMARY"
    }

    pub fn column_names(&self) -> Vec<&str> {
        self.columns.iter().map(|(c, _)| c.as_str()).collect()
    }
}

#[derive(Debug, Clone, Default)]
pub struct ForeignKey {
    pub schema: String,
    pub table: String,
    pub name: String,
    pub columns: Vec<String>,
    pub ref_schema: String,
    pub ref_table: String,
    pub ref_columns: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub tables: Vec<TableInfo>,
    pub columns: BTreeMap<TableKey, Vec<ColumnInfo>>,
    pub indexes: BTreeMap<TableKey, Vec<IndexInfo>>,
    pub foreign_keys: Vec<ForeignKey>,
}

impl Catalog {
    pub async fn load(conn: &mut Conn) -> Result<Catalog, mysql_async::Error> {
        let mut c = Catalog::default();
        let rows: Vec<TableRow> = conn
            .query(format!(
                "SELECT TABLE_SCHEMA, TABLE_NAME, ENGINE, TABLE_ROWS, DATA_LENGTH, INDEX_LENGTH, TABLE_COMMENT \
                 FROM information_schema.TABLES WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA {USER_SCHEMAS} \
                 ORDER BY 1, 2"
            ))
            .await?;
        for (schema, name, engine, rows, data, index, comment) in rows {
            c.tables.push(TableInfo {
                schema,
                name,
                engine,
                rows: rows.unwrap_or(0),
                bytes: data.unwrap_or(0).saturating_add(index.unwrap_or(0)),
                comment: comment.unwrap_or_default(),
            });
        }
        c.load_columns(conn).await?;
        c.load_indexes(conn).await?;
        c.load_foreign_keys(conn).await?;
        Ok(c)
    }

    async fn load_columns(&mut self, conn: &mut Conn) -> Result<(), mysql_async::Error> {
        let rows: Vec<(String, String, String, String, String)> = conn
            .query(format!(
                "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, LOWER(DATA_TYPE), IS_NULLABLE \
                 FROM information_schema.COLUMNS WHERE TABLE_SCHEMA {USER_SCHEMAS} \
                 ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION"
            ))
            .await?;
        for (schema, table, name, data_type, nullable) in rows {
            self.columns
                .entry((schema, table))
                .or_default()
                .push(ColumnInfo {
                    name,
                    data_type,
                    nullable: nullable == "YES",
                });
        }
        Ok(())
    }

    async fn load_indexes(&mut self, conn: &mut Conn) -> Result<(), mysql_async::Error> {
        let rows: Vec<IndexRow> = conn
            .query(format!(
                "SELECT TABLE_SCHEMA, TABLE_NAME, INDEX_NAME, NON_UNIQUE, INDEX_TYPE, COLUMN_NAME, SUB_PART \
                 FROM information_schema.STATISTICS WHERE TABLE_SCHEMA {USER_SCHEMAS} \
                 ORDER BY TABLE_SCHEMA, TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX"
            ))
            .await?;
        for (schema, table, index, non_unique, kind, column, sub_part) in rows {
            let list = self.indexes.entry((schema, table)).or_default();
            if list.last().is_none_or(|i| i.name != index) {
                list.push(IndexInfo {
                    name: index,
                    unique: non_unique == 0,
                    kind,
                    columns: Vec::new(),
                });
            }
            if let Some(i) = list.last_mut() {
                i.columns.push((column, sub_part));
            }
        }
        Ok(())
    }

    async fn load_foreign_keys(&mut self, conn: &mut Conn) -> Result<(), mysql_async::Error> {
        let rows: Vec<(String, String, String, String, String, String, String)> = conn
            .query(format!(
                "SELECT k.CONSTRAINT_SCHEMA, k.TABLE_NAME, k.CONSTRAINT_NAME, k.COLUMN_NAME, \
                 k.REFERENCED_TABLE_SCHEMA, k.REFERENCED_TABLE_NAME, k.REFERENCED_COLUMN_NAME \
                 FROM information_schema.KEY_COLUMN_USAGE k \
                 WHERE k.REFERENCED_TABLE_NAME IS NOT NULL AND k.CONSTRAINT_SCHEMA {USER_SCHEMAS} \
                 ORDER BY k.CONSTRAINT_SCHEMA, k.TABLE_NAME, k.CONSTRAINT_NAME, k.ORDINAL_POSITION"
            ))
            .await?;
        for (schema, table, name, column, ref_schema, ref_table, ref_column) in rows {
            let same = self
                .foreign_keys
                .last()
                .is_some_and(|f| f.schema == schema && f.table == table && f.name == name);
            if !same {
                self.foreign_keys.push(ForeignKey {
                    schema,
                    table,
                    name,
                    columns: Vec::new(),
                    ref_schema,
                    ref_table,
                    ref_columns: Vec::new(),
                });
            }
            if let Some(f) = self.foreign_keys.last_mut() {
                f.columns.push(column);
                f.ref_columns.push(ref_column);
            }
        }
        Ok(())
    }

    pub fn table(&self, schema: &str, name: &str) -> Option<&TableInfo> {
        self.tables
            .iter()
            .find(|t| t.schema == schema && t.name == name)
    }

    pub fn indexes_of(&self, schema: &str, table: &str) -> &[IndexInfo] {
        self.indexes
            .get(&(schema.to_string(), table.to_string()))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    pub fn columns_of(&self, schema: &str, table: &str) -> &[ColumnInfo] {
        self.columns
            .get(&(schema.to_string(), table.to_string()))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}
