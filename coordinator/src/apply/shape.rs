//! Whether an existing target table can take what the applier writes for a source table.
//!
//! The applier names every source column (generated ones excepted) in its INSERT, UPDATE and
//! DELETE statements and writes values as the source encodes them: integers as numbers, ENUM
//! and SET as their member index / bitmap, character columns as raw bytes in the source
//! column's character set (the session is `SET NAMES binary`), in a session without strict
//! mode, so a value that does not fit is silently truncated rather than refused. A target
//! table is therefore refused (see [`shape_problems`]) when, for some source column:
//!
//! * the target has no column of that name (case-insensitive), or it is a generated column;
//! * the source column is nullable and the target's is NOT NULL (a single-row insert of NULL
//!   fails);
//! * the two are of different kinds (integer, decimal, floating point, BIT, date/time, YEAR,
//!   character, binary, ENUM, SET, JSON, geometry), except DATE into DATETIME/TIMESTAMP,
//!   FLOAT into DOUBLE and JSON into a character column;
//! * the target is narrower: an integer type whose range does not contain the source's
//!   (signedness included), DECIMAL with fewer integer digits or a smaller scale, fewer
//!   fractional-second digits, DATETIME into TIMESTAMP (a smaller range), DATETIME or TIMESTAMP
//!   into DATE, a shorter BIT, a character or binary column holding fewer bytes
//!   (CHAR/VARCHAR/BINARY/VARBINARY length, or the TEXT/BLOB size class), an ENUM/SET whose
//!   members do not start with the source's members in the same order;
//! * character columns use different character sets (the bytes would be misread), except
//!   `utf8mb3` into `utf8mb4`.
//!
//! Accepted: extra target columns (without strict mode they take their default, or the type's
//! implicit one), wider types, other collations, other column order, other indexes, another
//! engine.

use fleetsync_mysql::schema::{InfoColumn, InfoTable};
use fleetsync_proto::{Column, ColumnType, TableSchema};

/// What is wrong with writing `source`'s rows into `target`: one phrase per column, empty when
/// the target can take them.
pub fn shape_problems(source: &TableSchema, target: &InfoTable) -> Vec<String> {
    source
        .columns
        .iter()
        .filter_map(|c| match target.column(&c.name) {
            None => Some(format!("column `{}` is missing on the target", c.name)),
            Some(t) => column_problem(c, t).map(|why| format!("column `{}`: {why}", c.name)),
        })
        .collect()
}

/// Why target column `t` cannot take source column `s`'s values, if it cannot.
fn column_problem(s: &Column, t: &InfoColumn) -> Option<String> {
    let decl = || {
        format!(
            "{} on the source, {} on the target",
            s.column_type, t.column_type
        )
    };
    if t.generated {
        return Some("is a generated column on the target".into());
    }
    if s.nullable && !t.nullable {
        return Some("nullable on the source, NOT NULL on the target".into());
    }
    let (sk, tk) = (kind(s.ty), kind(t.ty));
    let convertible = matches!(
        (s.ty, t.ty),
        (
            ColumnType::Date,
            ColumnType::DateTime | ColumnType::Timestamp
        ) | (ColumnType::Float, ColumnType::Double)
            | (
                ColumnType::Json,
                ColumnType::Char | ColumnType::VarChar | ColumnType::Text
            )
    );
    if sk != tk && !convertible {
        return Some(format!("another kind of value ({})", decl()));
    }
    let narrower = match sk {
        Kind::Integer => {
            let (lo, hi) = int_range(s.ty, s.unsigned);
            let (tlo, thi) = int_range(t.ty, t.unsigned);
            lo < tlo || hi > thi
        }
        Kind::Decimal => {
            let (sp, ss) = decimal_size(&s.column_type);
            let (tp, ts) = decimal_size(&t.column_type);
            sp - ss > tp - ts || ss > ts
        }
        Kind::Bit => length(&s.column_type).unwrap_or(1) > length(&t.column_type).unwrap_or(1),
        Kind::Temporal | Kind::Time => {
            let lossy = matches!(
                (s.ty, t.ty),
                (
                    ColumnType::DateTime | ColumnType::Timestamp,
                    ColumnType::Date
                ) | (ColumnType::DateTime, ColumnType::Timestamp)
            );
            lossy
                || (sk == tk
                    && length(&s.column_type).unwrap_or(0) > length(&t.column_type).unwrap_or(0))
        }
        Kind::Character if sk == tk => {
            if !same_charset(s.charset.as_deref(), t.charset.as_deref()) {
                return Some(format!(
                    "character set {} on the source, {} on the target (values are written as the source's bytes)",
                    s.charset.as_deref().unwrap_or("binary"),
                    t.charset.as_deref().unwrap_or("binary")
                ));
            }
            max_bytes(s.ty, &s.column_type, s.charset.as_deref())
                > max_bytes(t.ty, &t.column_type, t.charset.as_deref())
        }
        Kind::Binary => {
            max_bytes(s.ty, &s.column_type, None) > max_bytes(t.ty, &t.column_type, None)
        }
        Kind::Enum | Kind::Set => !t.enum_values.starts_with(&s.enum_values),
        Kind::Geometry => {
            let base = |d: &str| {
                d.split(['(', ' '])
                    .next()
                    .unwrap_or("")
                    .to_ascii_lowercase()
            };
            base(&t.column_type) != "geometry" && base(&t.column_type) != base(&s.column_type)
        }
        _ => false,
    };
    narrower.then(|| format!("the target is narrower ({})", decl()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Integer,
    Decimal,
    Floating,
    Bit,
    Temporal,
    Time,
    Year,
    Character,
    Binary,
    Enum,
    Set,
    Json,
    Geometry,
}

fn kind(ty: ColumnType) -> Kind {
    use ColumnType::*;
    match ty {
        TinyInt | SmallInt | MediumInt | Int | BigInt => Kind::Integer,
        Decimal => Kind::Decimal,
        Float | Double => Kind::Floating,
        Bit => Kind::Bit,
        Date | DateTime | Timestamp => Kind::Temporal,
        Time => Kind::Time,
        Year => Kind::Year,
        Char | VarChar | Text => Kind::Character,
        Binary | VarBinary | Blob => Kind::Binary,
        Enum => Kind::Enum,
        Set => Kind::Set,
        Json => Kind::Json,
        Geometry => Kind::Geometry,
    }
}

/// The value range of an integer type.
fn int_range(ty: ColumnType, unsigned: bool) -> (i128, i128) {
    let bits = match ty {
        ColumnType::TinyInt => 8,
        ColumnType::SmallInt => 16,
        ColumnType::MediumInt => 24,
        ColumnType::Int => 32,
        _ => 64,
    };
    if unsigned {
        (0, (1i128 << bits) - 1)
    } else {
        (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
    }
}

/// The first number in parentheses of a declaration: `varchar(20)` → 20, `datetime(6)` → 6.
fn length(column_type: &str) -> Option<u64> {
    let open = column_type.find('(')?;
    let rest = &column_type[open + 1..];
    let end = rest.find([')', ','])?;
    rest[..end].trim().parse().ok()
}

/// (precision, scale) of `decimal(p,s)`; MySQL's default is (10, 0).
fn decimal_size(column_type: &str) -> (i64, i64) {
    let Some(open) = column_type.find('(') else {
        return (10, 0);
    };
    let inner = column_type[open + 1..].split(')').next().unwrap_or("");
    let mut parts = inner.split(',').map(|p| p.trim().parse::<i64>().ok());
    let p = parts.next().flatten().unwrap_or(10);
    let s = parts.next().flatten().unwrap_or(0);
    (p, s)
}

fn same_charset(s: Option<&str>, t: Option<&str>) -> bool {
    let norm = |c: Option<&str>| match c.map(str::to_ascii_lowercase).as_deref() {
        Some("utf8" | "utf8mb3") => "utf8mb3".to_string(),
        Some(other) => other.to_string(),
        None => "binary".to_string(),
    };
    let (s, t) = (norm(s), norm(t));
    s == t || (s == "utf8mb3" && t == "utf8mb4")
}

/// Most bytes per character of the common character sets (4 when unknown: conservative for a
/// source, and the same on both sides when the sets are equal).
fn mb_max(charset: Option<&str>) -> u64 {
    match charset.map(str::to_ascii_lowercase).as_deref() {
        None | Some("binary" | "latin1" | "latin2" | "ascii" | "cp1250" | "cp1251" | "cp1252") => 1,
        Some("ucs2") => 2,
        Some("utf8" | "utf8mb3" | "ujis" | "eucjpms") => 3,
        _ => 4,
    }
}

/// Most bytes a character or binary column holds.
fn max_bytes(ty: ColumnType, column_type: &str, charset: Option<&str>) -> u64 {
    let lower = column_type.to_ascii_lowercase();
    let class = |prefix: &str| lower.starts_with(prefix);
    match ty {
        ColumnType::Text | ColumnType::Blob => {
            if class("tiny") {
                255
            } else if class("medium") {
                16_777_215
            } else if class("long") {
                4_294_967_295
            } else {
                65_535
            }
        }
        _ => length(&lower).unwrap_or(1) * mb_max(charset),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetsync_mysql::schema::column_family;
    use fleetsync_proto::KeyKind;

    /// A column as information_schema would describe `decl` (DATA_TYPE is its first word).
    fn info(name: &str, decl: &str, charset: Option<&str>, nullable: bool) -> InfoColumn {
        let data_type = decl.split(['(', ' ']).next().unwrap_or("");
        let ty = column_family(data_type, charset);
        InfoColumn {
            name: name.into(),
            ty,
            column_type: decl.into(),
            unsigned: decl.contains("unsigned"),
            nullable,
            charset: charset.map(Into::into),
            enum_values: fleetsync_mysql::schema::parse_enum_values(decl),
            generated: false,
        }
    }

    fn table(cols: Vec<InfoColumn>) -> InfoTable {
        InfoTable {
            schema: "s".into(),
            table: "t".into(),
            columns: cols,
            key: vec![],
            key_kind: KeyKind::None,
            transactional: true,
        }
    }

    /// Problems of writing a one-column source `s` into a target with columns `t`.
    fn check(s: InfoColumn, t: Vec<InfoColumn>) -> Vec<String> {
        shape_problems(&table(vec![s]).to_schema(), &table(t))
    }

    const U8: Option<&str> = Some("utf8mb4");

    #[test]
    fn harmless_differences_are_accepted() {
        let ok = |s: InfoColumn, t: InfoColumn| {
            let p = check(
                s.clone(),
                vec![t.clone(), info("extra", "int(11)", None, false)],
            );
            assert!(p.is_empty(), "{s:?} -> {t:?}: {p:?}");
        };
        ok(
            info("v", "varchar(10)", U8, true),
            info("V", "varchar(20)", U8, true),
        );
        ok(
            info("v", "varchar(10)", U8, false),
            info("v", "text", U8, true),
        );
        ok(
            info("v", "varchar(10)", Some("utf8mb3"), true),
            info("v", "varchar(10)", U8, true),
        );
        ok(
            info("i", "int(11)", None, false),
            info("i", "bigint(20)", None, false),
        );
        ok(
            info("i", "int(10) unsigned", None, false),
            info("i", "bigint(20)", None, false),
        );
        ok(
            info("i", "smallint(5) unsigned", None, false),
            info("i", "int(11)", None, false),
        );
        ok(
            info("d", "decimal(10,2)", None, false),
            info("d", "decimal(12,4)", None, false),
        );
        ok(
            info("d", "date", None, false),
            info("d", "datetime(6)", None, false),
        );
        ok(
            info("d", "datetime(3)", None, false),
            info("d", "datetime(6)", None, false),
        );
        ok(
            info("f", "float", None, false),
            info("f", "double", None, false),
        );
        ok(
            info("e", "enum('a','b')", U8, false),
            info("e", "enum('a','b','c')", U8, false),
        );
        ok(
            info("b", "varbinary(8)", None, false),
            info("b", "blob", None, false),
        );
        ok(
            info("g", "point", None, false),
            info("g", "geometry", None, false),
        );
    }

    #[test]
    fn identical_columns_are_accepted() {
        let decls: &[(&str, Option<&str>)] = &[
            ("tinyint(4)", None),
            ("bigint(20) unsigned", None),
            ("decimal(65,30)", None),
            ("float", None),
            ("bit(64)", None),
            ("date", None),
            ("time(6)", None),
            ("timestamp(3)", None),
            ("year(4)", None),
            ("char(3)", Some("latin1")),
            ("varchar(255)", U8),
            ("longtext", U8),
            ("binary(16)", None),
            ("mediumblob", None),
            ("enum('x','y')", U8),
            ("set('a','b','c')", U8),
            ("json", U8),
            ("point", None),
        ];
        for (decl, charset) in decls {
            for nullable in [false, true] {
                let c = info("c", decl, *charset, nullable);
                let p = check(c.clone(), vec![c]);
                assert!(p.is_empty(), "{decl}: {p:?}");
            }
        }
    }

    #[test]
    fn what_the_applier_cannot_write_is_refused() {
        let bad = |s: InfoColumn, t: InfoColumn, word: &str| {
            let p = check(s.clone(), vec![t.clone()]);
            assert!(
                p.len() == 1 && p[0].contains(word),
                "{s:?} -> {t:?}: expected {word:?}, got {p:?}"
            );
        };
        bad(
            info("v", "varchar(10)", U8, true),
            info("w", "varchar(10)", U8, true),
            "missing",
        );
        bad(
            info("v", "varchar(10)", U8, true),
            info("v", "varchar(10)", U8, false),
            "NOT NULL",
        );
        bad(
            info("v", "varchar(10)", U8, false),
            info("v", "int(11)", None, false),
            "kind",
        );
        bad(
            info("i", "int(11)", None, false),
            info("i", "datetime", None, false),
            "kind",
        );
        bad(
            info("i", "bigint(20)", None, false),
            info("i", "int(11)", None, false),
            "narrower",
        );
        bad(
            info("i", "int(10) unsigned", None, false),
            info("i", "int(11)", None, false),
            "narrower",
        );
        bad(
            info("v", "varchar(20)", U8, false),
            info("v", "varchar(10)", U8, false),
            "narrower",
        );
        bad(
            info("v", "text", U8, false),
            info("v", "varchar(100)", U8, false),
            "narrower",
        );
        bad(
            info("v", "varchar(10)", U8, false),
            info("v", "varchar(10)", Some("latin1"), false),
            "character set",
        );
        bad(
            info("d", "decimal(12,2)", None, false),
            info("d", "decimal(10,2)", None, false),
            "narrower",
        );
        bad(
            info("d", "decimal(10,4)", None, false),
            info("d", "decimal(12,2)", None, false),
            "narrower",
        );
        bad(
            info("t", "datetime(6)", None, false),
            info("t", "datetime", None, false),
            "narrower",
        );
        bad(
            info("t", "datetime", None, false),
            info("t", "timestamp", None, false),
            "narrower",
        );
        bad(
            info("t", "datetime", None, false),
            info("t", "date", None, false),
            "narrower",
        );
        bad(
            info("e", "enum('a','b')", U8, false),
            info("e", "enum('b','a')", U8, false),
            "narrower",
        );
        bad(
            info("b", "blob", None, false),
            info("b", "tinyblob", None, false),
            "narrower",
        );
        bad(
            info("g", "point", None, false),
            info("g", "polygon", None, false),
            "narrower",
        );
        let mut generated = info("v", "int(11)", None, true);
        generated.generated = true;
        bad(info("v", "int(11)", None, true), generated, "generated");
    }

    #[test]
    fn generated_source_columns_are_not_written() {
        let mut g = info("g", "int(11)", None, true);
        g.generated = true;
        let source = table(vec![info("id", "int(11)", None, false), g]).to_schema();
        let target = table(vec![info("id", "int(11)", None, false)]);
        assert!(shape_problems(&source, &target).is_empty());
    }
}
