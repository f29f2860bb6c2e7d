//! What the columns of a row image are. Sent with each transaction so that every record is
//! self-describing (column names and types), as the bus contract requires.

use serde::{Deserialize, Serialize};

/// Column type family; the exact declaration is in [`Column::column_type`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ColumnType {
    TinyInt,
    SmallInt,
    MediumInt,
    Int,
    BigInt,
    Decimal,
    Float,
    Double,
    Bit,
    Date,
    Time,
    DateTime,
    Timestamp,
    Year,
    Char,
    VarChar,
    Text,
    Binary,
    VarBinary,
    Blob,
    Enum,
    Set,
    Json,
    Geometry,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    pub ty: ColumnType,
    /// Full declaration as in information_schema.COLUMNS.COLUMN_TYPE, e.g. `int(10) unsigned`.
    pub column_type: String,
    pub unsigned: bool,
    pub nullable: bool,
    /// Character set of character columns (`utf8mb4`, `latin1`, ...); `None` otherwise.
    pub charset: Option<String>,
    /// ENUM/SET members in declaration order; empty otherwise.
    pub enum_values: Vec<String>,
}

/// How rows of a table are identified on a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyKind {
    Primary,
    /// A UNIQUE key whose columns are all NOT NULL, used when there is no primary key.
    UniqueNotNull,
    /// No usable key: rows are matched by their full before-image.
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSchema {
    pub schema: String,
    pub table: String,
    pub columns: Vec<Column>,
    /// Indexes into `columns` of the identifying key (empty when `key_kind` is `None`).
    pub key: Vec<u16>,
    pub key_kind: KeyKind,
    /// False for MyISAM, Aria and other engines that ignore transactions.
    pub transactional: bool,
}
