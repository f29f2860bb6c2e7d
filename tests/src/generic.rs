//! Rows for any schema: values generated per column from information_schema.COLUMNS.
//!
//! Used on schemas we did not write (the TrinityCore fixtures): every base table, keyless and
//! MyISAM ones included, gets a few valid rows, then updates and deletes. Statements run with
//! `sql_mode=''` and `foreign_key_checks=0` and use `INSERT IGNORE`/`UPDATE IGNORE`, so a value
//! that collides with a unique key or does not fit is skipped or clamped rather than failing the
//! load. Primary- and unique-key columns get values derived from the row number so rows differ.
//! Auto-increment and generated columns are left to the server.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::compare::base_tables;
use crate::mariadb::{hex_literal, quote_ident, quote_str, MariaDb};

/// Session settings for generated statements.
const SESSION: &str = "SET SESSION sql_mode = ''; SET SESSION foreign_key_checks = 0;";

/// One column as information_schema.COLUMNS describes it.
#[derive(Debug, Clone)]
pub struct ColumnInfo {
    pub name: String,
    /// Lower-case DATA_TYPE, e.g. `int`, `varchar`.
    pub data_type: String,
    /// Full COLUMN_TYPE, e.g. `int(10) unsigned`, `enum('a','b')`.
    pub column_type: String,
    pub nullable: bool,
    pub max_len: Option<u64>,
    pub precision: Option<u64>,
    pub scale: Option<u64>,
    pub charset: Option<String>,
    /// COLUMN_KEY: `PRI`, `UNI`, `MUL` or empty.
    pub key: String,
    /// EXTRA: `auto_increment`, `VIRTUAL GENERATED`, …
    pub extra: String,
}

impl ColumnInfo {
    /// Whether values must differ between rows.
    pub fn is_unique_key(&self) -> bool {
        self.key == "PRI" || self.key == "UNI"
    }

    /// Whether the server fills the column itself.
    pub fn is_server_filled(&self) -> bool {
        let extra = self.extra.to_ascii_lowercase();
        extra.contains("auto_increment") || extra.contains("generated")
    }

    fn unsigned(&self) -> bool {
        self.column_type.to_ascii_lowercase().contains("unsigned")
    }
}

/// Columns of every base table of `schema`, by table name.
pub async fn schema_columns(
    db: &MariaDb,
    schema: &str,
) -> Result<BTreeMap<String, Vec<ColumnInfo>>> {
    let sql = format!(
        "SELECT c.TABLE_NAME, c.COLUMN_NAME, LOWER(c.DATA_TYPE), c.COLUMN_TYPE, c.IS_NULLABLE, \
         c.CHARACTER_MAXIMUM_LENGTH, c.NUMERIC_PRECISION, c.NUMERIC_SCALE, c.CHARACTER_SET_NAME, \
         c.COLUMN_KEY, c.EXTRA FROM information_schema.COLUMNS c JOIN information_schema.TABLES t \
         ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME \
         WHERE c.TABLE_SCHEMA = {} AND t.TABLE_TYPE = 'BASE TABLE' \
         ORDER BY c.TABLE_NAME, c.ORDINAL_POSITION",
        quote_str(schema)
    );
    let mut out: BTreeMap<String, Vec<ColumnInfo>> = BTreeMap::new();
    for row in db.query_strings(&sql).await? {
        let text = |i: usize| row.get(i).cloned().flatten();
        let num = |i: usize| text(i).and_then(|v| v.parse::<u64>().ok());
        let col = ColumnInfo {
            name: text(1).unwrap_or_default(),
            data_type: text(2).unwrap_or_default(),
            column_type: text(3).unwrap_or_default(),
            nullable: text(4).as_deref() == Some("YES"),
            max_len: num(5),
            precision: num(6),
            scale: num(7),
            charset: text(8),
            key: text(9).unwrap_or_default(),
            extra: text(10).unwrap_or_default(),
        };
        out.entry(text(0).unwrap_or_default())
            .or_default()
            .push(col);
    }
    Ok(out)
}

/// What [`fill_schema`] did.
#[derive(Debug, Default)]
pub struct FillReport {
    pub tables: usize,
    /// Tables still without a row afterwards.
    pub empty: Vec<String>,
}

/// Inserts `rows` generated rows, numbered from `first_row`, into every base table of `schema`.
pub async fn fill_schema(
    db: &MariaDb,
    schema: &str,
    first_row: u64,
    rows: u64,
    seed: u64,
) -> Result<FillReport> {
    let mut gen = RowGenerator::new(seed);
    let tables = schema_columns(db, schema).await?;
    let mut report = FillReport {
        tables: tables.len(),
        empty: Vec::new(),
    };
    for (table, cols) in &tables {
        let sql = format!(
            "{SESSION}{}",
            gen.insert_sql(schema, table, cols, first_row, rows)
        );
        db.exec(&sql)
            .await
            .with_context(|| format!("filling {schema}.{table}"))?;
    }
    for table in base_tables(db, schema).await? {
        if db.count(schema, &table).await? == 0 {
            report.empty.push(table);
        }
    }
    Ok(report)
}

/// For every base table of `schema`: inserts two rows numbered from `first_row`, updates one
/// row and deletes one row.
pub async fn churn_schema(db: &MariaDb, schema: &str, first_row: u64, seed: u64) -> Result<()> {
    let mut gen = RowGenerator::new(seed);
    for (table, cols) in &schema_columns(db, schema).await? {
        let mut sql = format!(
            "{SESSION}{}",
            gen.insert_sql(schema, table, cols, first_row, 2)
        );
        if let Some(update) = gen.update_sql(schema, table, cols, first_row + 2) {
            sql.push_str(&update);
        }
        sql.push_str(&format!(
            "DELETE FROM {}.{} LIMIT 1;",
            quote_ident(schema),
            quote_ident(table)
        ));
        db.exec(&sql)
            .await
            .with_context(|| format!("changing rows of {schema}.{table}"))?;
    }
    Ok(())
}

/// Seeded generator of SQL literals per column type.
pub struct RowGenerator {
    rng: StdRng,
}

impl RowGenerator {
    pub fn new(seed: u64) -> Self {
        RowGenerator {
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// `INSERT IGNORE INTO schema.table (...) VALUES (...), ...;` for rows `first..first+rows`.
    pub fn insert_sql(
        &mut self,
        schema: &str,
        table: &str,
        cols: &[ColumnInfo],
        first: u64,
        rows: u64,
    ) -> String {
        let cols: Vec<&ColumnInfo> = cols.iter().filter(|c| !c.is_server_filled()).collect();
        let target = format!("{}.{}", quote_ident(schema), quote_ident(table));
        if cols.is_empty() {
            let values = vec!["()"; rows as usize].join(", ");
            return format!("INSERT IGNORE INTO {target} VALUES {values};");
        }
        let names: Vec<String> = cols.iter().map(|c| quote_ident(&c.name)).collect();
        let tuples: Vec<String> = (first..first + rows)
            .map(|row| {
                let values: Vec<String> = cols.iter().map(|c| self.value(c, row)).collect();
                format!("({})", values.join(", "))
            })
            .collect();
        format!(
            "INSERT IGNORE INTO {target} ({}) VALUES {};",
            names.join(", "),
            tuples.join(", ")
        )
    }

    /// `UPDATE IGNORE … SET col = v LIMIT 1;` on a non-key column, or on a key column (moving
    /// the row to key `row`) when every column is a key; `None` when nothing can be set.
    pub fn update_sql(
        &mut self,
        schema: &str,
        table: &str,
        cols: &[ColumnInfo],
        row: u64,
    ) -> Option<String> {
        let settable: Vec<&ColumnInfo> = cols.iter().filter(|c| !c.is_server_filled()).collect();
        let plain: Vec<&ColumnInfo> = settable
            .iter()
            .copied()
            .filter(|c| !c.is_unique_key())
            .collect();
        let pool = if plain.is_empty() { &settable } else { &plain };
        let col = *pool.get(self.rng.gen_range(0..pool.len().max(1)))?;
        Some(format!(
            "UPDATE IGNORE {}.{} SET {} = {} LIMIT 1;",
            quote_ident(schema),
            quote_ident(table),
            quote_ident(&col.name),
            self.value(col, row)
        ))
    }

    /// A SQL literal for `col` in row number `row`.
    pub fn value(&mut self, col: &ColumnInfo, row: u64) -> String {
        if col.nullable && !col.is_unique_key() && self.rng.gen_bool(0.15) {
            return "NULL".to_string();
        }
        let key = col.is_unique_key().then_some(row);
        let r = &mut self.rng;
        match col.data_type.as_str() {
            "tinyint" => int_value(r, col, 8, key),
            "smallint" => int_value(r, col, 16, key),
            "mediumint" => int_value(r, col, 24, key),
            "int" | "integer" => int_value(r, col, 32, key),
            "bigint" => int_value(r, col, 64, key),
            "decimal" | "numeric" => decimal_value(r, col, key),
            "float" => format!(
                "{:.2}",
                r.gen_range(-100_000.0f32..100_000.0) + key.unwrap_or(0) as f32
            ),
            "double" | "real" => format!(
                "{:.6e}",
                r.gen_range(-1.0e12f64..1.0e12) + key.unwrap_or(0) as f64
            ),
            "char" | "varchar" => {
                let max = col.max_len.unwrap_or(16).min(24) as usize;
                quote_str(&text_value(r, col, max, key))
            }
            "tinytext" | "text" | "mediumtext" | "longtext" => {
                let max = (col.max_len.unwrap_or(255) / 4).min(100) as usize;
                quote_str(&text_value(r, col, max, key))
            }
            "binary" | "varbinary" => {
                let max = col.max_len.unwrap_or(16).min(32) as usize;
                hex_literal(&bytes_value(r, max, key))
            }
            "tinyblob" | "blob" | "mediumblob" | "longblob" => {
                hex_literal(&bytes_value(r, 64, key))
            }
            "date" => format!("'{}'", date(r, 1000, 9999)),
            "datetime" => format!("'{} {}'", date(r, 1000, 9999), clock(r)),
            "timestamp" => format!("'{} {}'", date(r, 1971, 2037), clock(r)),
            "time" => format!(
                "'{}{}:{:02}:{:02}'",
                sign(r),
                r.gen_range(0..839),
                r.gen_range(0..60),
                r.gen_range(0..60)
            ),
            "year" => r.gen_range(1901..=2155).to_string(),
            "enum" => enum_value(r, col, key),
            "set" => set_value(r, col),
            "bit" => bit_value(r, col, key),
            "point" | "geometry" => format!(
                "ST_GeomFromText('POINT({} {})')",
                r.gen_range(-180..180),
                r.gen_range(-90..90)
            ),
            "linestring" => "ST_GeomFromText('LINESTRING(0 0, 1 1, 2 0)')".to_string(),
            "polygon" => "ST_GeomFromText('POLYGON((0 0, 4 0, 4 4, 0 4, 0 0))')".to_string(),
            _ if col.nullable => "NULL".to_string(),
            _ => "DEFAULT".to_string(),
        }
    }
}

fn sign(r: &mut StdRng) -> &'static str {
    if r.gen_bool(0.3) {
        "-"
    } else {
        ""
    }
}

/// A value of a `bits`-wide integer column: the row number for keys, else random, edges often.
fn int_value(r: &mut StdRng, col: &ColumnInfo, bits: u32, key: Option<u64>) -> String {
    let (min, max): (i128, i128) = if col.unsigned() {
        (0, (1i128 << bits) - 1)
    } else {
        (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
    };
    if let Some(row) = key {
        return (i128::from(row) % (max + 1)).to_string();
    }
    match r.gen_range(0..10) {
        0 => min.to_string(),
        1 => max.to_string(),
        _ => r.gen_range(min..=max).to_string(),
    }
}

fn decimal_value(r: &mut StdRng, col: &ColumnInfo, key: Option<u64>) -> String {
    let precision = col.precision.unwrap_or(10).clamp(1, 65) as usize;
    let scale = col.scale.unwrap_or(0).min(30) as usize;
    let int_digits = precision.saturating_sub(scale).min(18);
    let int_part = match key {
        Some(row) if int_digits > 0 => row % 10u64.pow(int_digits as u32),
        _ if int_digits > 0 => r.gen_range(0..10u64.pow(int_digits as u32)),
        _ => 0,
    };
    let frac: String = (0..scale)
        .map(|_| char::from(b'0' + r.gen_range(0..10u8)))
        .collect();
    let neg = key.is_none() && !col.unsigned() && r.gen_bool(0.3);
    let sign = if neg { "-" } else { "" };
    if scale == 0 {
        format!("{sign}{int_part}")
    } else {
        format!("{sign}{int_part}.{frac}")
    }
}

/// Random text fitting `max` characters in the column's charset; keys start with the row number.
fn text_value(r: &mut StdRng, col: &ColumnInfo, max: usize, key: Option<u64>) -> String {
    let charset = col.charset.as_deref().unwrap_or("utf8mb4");
    let alphabet: &[char] = match charset {
        "utf8mb4" => &['a', 'Z', '7', ' ', '\'', '\\', 'é', '中', '😀'],
        "utf8mb3" | "utf8" | "ucs2" | "utf16" | "utf32" => {
            &['a', 'Z', '7', ' ', '\'', '\\', 'é', '中']
        }
        "latin1" => &['a', 'Z', '7', ' ', '\'', '\\', 'é', 'ß'],
        _ => &['a', 'Z', '7', ' ', '-', '_'],
    };
    let mut s = key.map(|row| format!("k{row}_")).unwrap_or_default();
    let len = r.gen_range(0..=max);
    s.extend((0..len).map(|_| alphabet[r.gen_range(0..alphabet.len())]));
    s.chars().take(max.max(1)).collect()
}

fn bytes_value(r: &mut StdRng, max: usize, key: Option<u64>) -> Vec<u8> {
    let mut bytes = key
        .map(|row| row.to_be_bytes().to_vec())
        .unwrap_or_default();
    let len = r.gen_range(0..=max);
    bytes.extend((0..len).map(|_| r.gen::<u8>()));
    if key.is_some() {
        // Keep the distinguishing low bytes of the row number when the column is short.
        let skip = bytes.len().saturating_sub(max.max(1)).min(8);
        bytes.drain(..skip);
    }
    bytes.truncate(max.max(1));
    bytes
}

fn date(r: &mut StdRng, from: u32, to: u32) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        r.gen_range(from..=to),
        r.gen_range(1..=12),
        r.gen_range(1..=28)
    )
}

fn clock(r: &mut StdRng) -> String {
    format!(
        "{:02}:{:02}:{:02}.{:06}",
        r.gen_range(0..24),
        r.gen_range(0..60),
        r.gen_range(0..60),
        r.gen_range(0..1_000_000)
    )
}

/// The quoted members of `enum('a','b')` / `set('a','b')`, unescaped.
pub fn type_members(column_type: &str) -> Vec<String> {
    let Some(start) = column_type.find('(') else {
        return Vec::new();
    };
    let body = column_type[start + 1..].trim_end_matches(')');
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_quote = false;
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, in_quote) {
            ('\'', false) => in_quote = true,
            ('\'', true) if chars.peek() == Some(&'\'') => {
                chars.next();
                cur.push('\'');
            }
            ('\'', true) => {
                in_quote = false;
                out.push(std::mem::take(&mut cur));
            }
            (c, true) => cur.push(c),
            _ => {}
        }
    }
    out
}

fn enum_value(r: &mut StdRng, col: &ColumnInfo, key: Option<u64>) -> String {
    let members = type_members(&col.column_type);
    if members.is_empty() {
        return "DEFAULT".to_string();
    }
    let i = key.map_or_else(
        || r.gen_range(0..members.len()),
        |row| (row as usize) % members.len(),
    );
    quote_str(&members[i])
}

fn set_value(r: &mut StdRng, col: &ColumnInfo) -> String {
    let chosen: Vec<String> = type_members(&col.column_type)
        .into_iter()
        .filter(|_| r.gen_bool(0.5))
        .collect();
    quote_str(&chosen.join(","))
}

fn bit_value(r: &mut StdRng, col: &ColumnInfo, key: Option<u64>) -> String {
    let bits = col.precision.unwrap_or(1).clamp(1, 64) as u32;
    let mask = if bits == 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    let v = key.unwrap_or_else(|| r.gen::<u64>()) & mask;
    format!("b'{v:b}'")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(data_type: &str, column_type: &str) -> ColumnInfo {
        ColumnInfo {
            name: "c".into(),
            data_type: data_type.into(),
            column_type: column_type.into(),
            nullable: false,
            max_len: Some(4),
            precision: Some(5),
            scale: Some(2),
            charset: Some("latin1".into()),
            key: String::new(),
            extra: String::new(),
        }
    }

    #[test]
    fn members_parse_quotes() {
        assert_eq!(
            type_members("enum('a','it''s','b,c')"),
            ["a", "it's", "b,c"]
        );
        assert!(type_members("int(11)").is_empty());
    }

    #[test]
    fn values_fit_their_types() {
        let mut g = RowGenerator::new(3);
        for _ in 0..200 {
            let v: i128 = g
                .value(&col("tinyint", "tinyint(3) unsigned"), 0)
                .parse()
                .expect("int");
            assert!((0..=255).contains(&v));
            let d = g.value(&col("decimal", "decimal(5,2)"), 0);
            assert!(d.trim_start_matches('-').len() <= 6, "{d}");
            let s = g.value(&col("varchar", "varchar(4)"), 0);
            assert!(s.chars().count() <= 4 + 2 + 4, "{s}");
        }
        let mut key = col("smallint", "smallint(6)");
        key.key = "PRI".into();
        assert_eq!(g.value(&key, 70_000), (70_000 % 32_768).to_string());
    }
}
