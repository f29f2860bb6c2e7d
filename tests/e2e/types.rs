//! Every column type, byte for byte, through the snapshot and the binlog.
//!
//! `all_types` puts a YEAR before the UNSIGNED columns (MariaDB's TABLE_MAP signedness bitmap is
//! shifted by a YEAR column, see shared/NOTES.md) and `signed_mix` alternates YEAR, signed and
//! unsigned columns with high-bit values, so a decoder taking signedness from the wrong bit
//! shows. The source runs with `--default-time-zone=+05:00` while the target keeps UTC: a sync
//! that moves TIMESTAMPs through a session time zone instead of as instants shows too (the
//! comparison reads both sides in UTC).

use anyhow::{Context, Result};
use fleetsync_tests::{assert_schemas_equal, quote_str, simple_config, status_json, Fleetsync};

use crate::support::{exec_lenient, Pair, SYNC_TIMEOUT};

pub const CREATE_ALL_TYPES: &str = "CREATE TABLE app.all_types (
  id INT NOT NULL PRIMARY KEY,
  y YEAR NULL,
  ti TINYINT NULL, ti_u TINYINT UNSIGNED NULL,
  si SMALLINT NULL, si_u SMALLINT UNSIGNED NULL,
  mi MEDIUMINT NULL, mi_u MEDIUMINT UNSIGNED NULL,
  i INT NULL, i_u INT UNSIGNED NULL,
  bi BIGINT NULL, bi_u BIGINT UNSIGNED NULL,
  dec65 DECIMAL(65,30) NULL, dec10 DECIMAL(10,2) NULL, dec0 DECIMAL(5,0) NULL,
  f FLOAT NULL, dbl DOUBLE NULL,
  dt DATE NULL, tm TIME NULL, tm3 TIME(3) NULL, tm6 TIME(6) NULL,
  dtm DATETIME NULL, dtm3 DATETIME(3) NULL, dtm6 DATETIME(6) NULL,
  ts0 TIMESTAMP NULL DEFAULT NULL, ts6 TIMESTAMP(6) NULL DEFAULT NULL,
  y2 YEAR NULL,
  c CHAR(8) NULL, vc VARCHAR(200) NULL, tx TEXT NULL,
  lvc VARCHAR(200) CHARACTER SET latin1 NULL, lc CHAR(4) CHARACTER SET latin1 NULL,
  bn BINARY(8) NULL, vb VARBINARY(300) NULL, bl BLOB NULL, lbl LONGBLOB NULL,
  en ENUM('a','b','c') NULL, st SET('x','y','z') NULL,
  b1 BIT(1) NULL, b10 BIT(10) NULL, b64 BIT(64) NULL,
  js JSON NULL, geo GEOMETRY NULL, pt POINT NULL, poly POLYGON NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";

const CREATE_SIGNED_MIX: &str = "CREATE TABLE app.signed_mix (
  id BIGINT UNSIGNED NOT NULL PRIMARY KEY, a TINYINT NULL, y YEAR NULL, b TINYINT UNSIGNED NULL,
  c INT NULL, d INT UNSIGNED NULL, y2 YEAR NULL, e BIGINT UNSIGNED NULL, f SMALLINT NULL,
  g MEDIUMINT UNSIGNED NULL
) ENGINE=InnoDB";

const CREATE_CI_KEY: &str = "CREATE TABLE app.ci_key (
  name VARCHAR(32) COLLATE utf8mb4_general_ci NOT NULL, n INT NOT NULL, v VARCHAR(10) NULL,
  PRIMARY KEY (name, n)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";

/// Bytes as a hex literal with a charset introducer (`_latin1 X'..'`).
fn hex_in(charset: &str, bytes: impl IntoIterator<Item = u8>) -> String {
    let hex: String = bytes.into_iter().map(|b| format!("{b:02X}")).collect();
    format!("_{charset} X'{hex}'")
}

fn hex(bytes: impl IntoIterator<Item = u8>) -> String {
    let hex: String = bytes.into_iter().map(|b| format!("{b:02X}")).collect();
    format!("X'{hex}'")
}

const DEC65_MAX: &str = "99999999999999999999999999999999999.999999999999999999999999999999";

/// The rows of `all_types` as (column, SQL literal) lists; columns not named are NULL.
/// The fifth row is all NULL.
#[rustfmt::skip]
pub fn edge_rows() -> Vec<Vec<(&'static str, String)>> {
    let s = |v: &str| v.to_string();
    let all_bytes = hex(0..=255u8);
    vec![
        // Minimum values.
        vec![
            ("y", s("1901")), ("ti", s("-128")), ("ti_u", s("0")), ("si", s("-32768")),
            ("si_u", s("0")), ("mi", s("-8388608")), ("mi_u", s("0")), ("i", s("-2147483648")),
            ("i_u", s("0")), ("bi", s("-9223372036854775808")), ("bi_u", s("0")),
            ("dec65", format!("-{DEC65_MAX}")), ("dec10", s("-99999999.99")), ("dec0", s("-99999")),
            ("f", s("-3.4e38")), ("dbl", s("-1.7976931348623157e308")), ("dt", s("'1000-01-01'")),
            ("tm", s("'-838:59:59'")), ("tm3", s("'-838:59:59.999'")),
            ("tm6", s("'-838:59:59.999999'")), ("dtm", s("'1000-01-01 00:00:00'")),
            ("dtm3", s("'1000-01-01 00:00:00.000'")), ("dtm6", s("'1000-01-01 00:00:00.000000'")),
            ("ts0", s("'1970-01-01 00:00:01'")), ("ts6", s("'1970-01-01 00:00:01.000000'")),
            ("y2", s("2155")), ("c", s("''")), ("vc", s("''")), ("tx", s("''")),
            ("lvc", s("''")), ("lc", s("''")), ("bn", s("X'00'")), ("vb", s("X''")),
            ("bl", s("X''")), ("lbl", s("X''")), ("en", s("'a'")), ("st", s("''")),
            ("b1", s("b'0'")), ("b10", s("b'0'")), ("b64", s("b'0'")), ("js", s("'[]'")),
            ("geo", s("ST_GeomFromText('POINT(0 0)')")), ("pt", s("ST_GeomFromText('POINT(0 0)')")),
            ("poly", s("ST_GeomFromText('POLYGON((0 0,1 0,1 1,0 0))')")),
        ],
        // Maximum values, 4-byte UTF-8, every byte value.
        vec![
            ("y", s("2155")), ("ti", s("127")), ("ti_u", s("255")), ("si", s("32767")),
            ("si_u", s("65535")), ("mi", s("8388607")), ("mi_u", s("16777215")),
            ("i", s("2147483647")), ("i_u", s("4294967295")), ("bi", s("9223372036854775807")),
            ("bi_u", s("18446744073709551615")), ("dec65", s(DEC65_MAX)), ("dec10", s("99999999.99")),
            ("dec0", s("99999")), ("f", s("3.4e38")), ("dbl", s("1.7976931348623157e308")),
            ("dt", s("'9999-12-31'")), ("tm", s("'838:59:59'")), ("tm3", s("'838:59:59.999'")),
            ("tm6", s("'838:59:59.999999'")), ("dtm", s("'9999-12-31 23:59:59'")),
            ("dtm3", s("'9999-12-31 23:59:59.999'")), ("dtm6", s("'9999-12-31 23:59:59.999999'")),
            ("ts0", s("'2038-01-19 03:14:07'")), ("ts6", s("'2038-01-19 03:14:07.999999'")),
            ("y2", s("1901")), ("c", quote_str("😀🚀é中x")), ("vc", quote_str(&"😀€ß中\u{10FFFF}".repeat(20))),
            ("tx", quote_str("line1\nline2\ttab 'quote' \\backslash 👨‍👩‍👧")),
            ("lvc", hex_in("latin1", 0xA0..=0xFFu8)), ("lc", hex_in("latin1", [0xFF, 0xFE, 0xE9, 0xA0])),
            ("bn", s("X'FFFFFFFFFFFFFFFF'")), ("vb", all_bytes.clone()), ("bl", all_bytes.clone()),
            ("lbl", hex((0..4096u32).map(|i| (i * 7 % 256) as u8))), ("en", s("'c'")),
            ("st", s("'x,y,z'")), ("b1", s("b'1'")), ("b10", s("b'1111111111'")),
            ("b64", format!("b'{}'", "1".repeat(64))),
            ("js", quote_str(r#"{"a": [1, 2.5, -3e10, "é😀", null, true, false], "b": {"c": "\u0000\"\\"}}"#)),
            ("geo", s("ST_GeomFromText('POLYGON((0 0,10 0,10 10,0 10,0 0),(2 2,3 2,3 3,2 2))', 4326)")),
            ("pt", s("ST_GeomFromText('POINT(-1.5 1e-10)', 4326)")),
            ("poly", s("ST_GeomFromText('POLYGON((0 0,10 0,10 10,0 10,0 0),(2 2,3 2,3 3,2 2))')")),
        ],
        // High-bit unsigned values, -1, zero dates, negative zero, small magnitudes.
        vec![
            ("y", s("0")), ("ti", s("-1")), ("ti_u", s("128")), ("si", s("-1")), ("si_u", s("32768")),
            ("mi", s("-1")), ("mi_u", s("8388608")), ("i", s("-1")), ("i_u", s("2147483648")),
            ("bi", s("-1")), ("bi_u", s("9223372036854775808")),
            ("dec65", s("-0.000000000000000000000000000001")), ("dec10", s("-0.01")), ("dec0", s("0")),
            ("f", s("-0.0")), ("dbl", s("2.2250738585072014e-308")), ("dt", s("'0000-00-00'")),
            ("tm", s("'-00:00:01'")), ("tm3", s("'-00:00:00.001'")), ("tm6", s("'-00:00:00.000001'")),
            ("dtm", s("'0000-00-00 00:00:00'")), ("dtm3", s("'0000-00-00 00:00:00.000'")),
            ("dtm6", s("'0000-00-00 00:00:00.000000'")), ("ts0", s("'0000-00-00 00:00:00'")),
            ("ts6", s("'0000-00-00 00:00:00.000000'")), ("c", s("' a'")), ("vc", s("'trailing  '")),
            ("tx", s("'nul\\0inside'")), ("lvc", hex_in("latin1", 0x80..=0x9Fu8)),
            ("lc", hex_in("latin1", [0x81, 0x8D, 0x8F, 0x90])), ("bn", s("'a'")),
            ("vb", s("X'C328FFFE00EDA080F4908080'")), ("bl", s("X'00'")), ("lbl", s("X'FF'")),
            ("en", s("'not-a-member'")), ("st", s("'z,x'")), ("b1", s("b'1'")),
            ("b10", s("b'1000000000'")), ("b64", format!("b'1{}'", "0".repeat(63))),
            ("js", quote_str("\"😀\"")),
            ("geo", s("ST_GeomFromText('MULTIPOINT(1 2,3 4)')")),
            ("pt", s("ST_GeomFromText('POINT(1e300 -1e-300)')")),
            ("poly", s("ST_GeomFromText('POLYGON((0 0,4 0,4 4,0 4,0 0))', 3857)")),
        ],
        // Ordinary values: TIME beyond 24 h, zero-in-date, fractions, DST-ambiguous instants.
        vec![
            ("y", s("2024")), ("ti", s("42")), ("ti_u", s("200")), ("si", s("-1234")), ("si_u", s("60000")),
            ("mi", s("-70000")), ("mi_u", s("9000000")), ("i", s("123456789")), ("i_u", s("3000000000")),
            ("bi", s("-1234567890123")), ("bi_u", s("12345678901234567890")), ("dec65", s("1.5")),
            ("dec10", s("12345.67")), ("dec0", s("-5")), ("f", s("0.1")), ("dbl", s("0.1")),
            ("dt", s("'2024-00-00'")), ("tm", s("'25:00:00'")), ("tm3", s("'100:30:00.5'")),
            ("tm6", s("'-100:30:00.500000'")), ("dtm", s("'2024-02-29 12:34:56'")),
            ("dtm3", s("'2024-02-29 12:34:56.789'")), ("dtm6", s("'2024-02-29 12:34:56.000001'")),
            ("ts0", s("'2024-03-31 01:30:00'")), ("ts6", s("'2024-10-27 01:30:00.123456'")),
            ("y2", s("1999")), ("c", quote_str("中文")), ("vc", quote_str("Grüße, мир, 世界")),
            ("tx", quote_str(&"long text ".repeat(500))), ("lvc", quote_str("café")),
            ("lc", quote_str("Åß")), ("bn", s("X'0102'")), ("vb", s("X'80'")),
            ("bl", hex((0..=255u8).rev())), ("lbl", s("X'00FF00FF'")), ("en", s("'b'")),
            ("st", s("'y'")), ("b1", s("b'0'")), ("b10", s("b'0101010101'")),
            ("b64", s("b'1010'")), ("js", s("'{\"n\": 1}'")),
            ("geo", s("ST_GeomFromText('LINESTRING(0 0,1 1,2 0)')")),
            ("pt", s("ST_GeomFromText('POINT(3 4)')")),
            ("poly", s("ST_GeomFromText('POLYGON((1 1,2 1,2 2,1 1))')")),
        ],
        // All NULL.
        vec![],
    ]
}

/// `INSERT INTO app.all_types (id, cols...) VALUES (...)`.
pub fn insert_row(id: i64, row: &[(&str, String)]) -> String {
    let cols: Vec<&str> = row.iter().map(|(c, _)| *c).collect();
    let vals: Vec<&str> = row.iter().map(|(_, v)| v.as_str()).collect();
    let sep = if cols.is_empty() { "" } else { ", " };
    format!(
        "INSERT INTO app.all_types (id{sep}{}) VALUES ({id}{sep}{});",
        cols.join(", "),
        vals.join(", ")
    )
}

/// `UPDATE app.all_types SET ... WHERE id = ID` with `row`'s values (and NULL elsewhere).
fn update_row(id: i64, row: &[(&str, String)]) -> String {
    let names = edge_rows()[0].iter().map(|(c, _)| *c).collect::<Vec<_>>();
    let sets: Vec<String> = names
        .iter()
        .map(|c| {
            let v = row
                .iter()
                .find(|(n, _)| n == c)
                .map_or("NULL", |(_, v)| v.as_str());
            format!("{c} = {v}")
        })
        .collect();
    format!(
        "UPDATE app.all_types SET {} WHERE id = {id};",
        sets.join(", ")
    )
}

/// All rows of all three tables, ids of `all_types` starting at `base + 1`.
pub fn all_inserts(base: i64) -> String {
    let mut sql = String::new();
    for (i, row) in edge_rows().iter().enumerate() {
        sql.push_str(&insert_row(base + i as i64 + 1, row));
    }
    // Ids 1..3 (+ 10 * base) and the largest BIGINT UNSIGNED (- base).
    let b = base as u64;
    let mix = [
        (
            b * 10 + 1,
            "-1, 2000, 255, -2147483648, 4294967295, 1999, 18446744073709551615, -32768, 16777215",
        ),
        (
            b * 10 + 2,
            "127, 0, 128, -1, 2147483648, 2155, 9223372036854775808, 32767, 8388608",
        ),
        (b * 10 + 3, "NULL, NULL, 0, 0, 0, NULL, 0, 0, 0"),
        (u64::MAX - b, "-128, 1901, 200, 1, 1, 1901, 1, -1, 1"),
    ];
    for (id, rest) in mix {
        sql.push_str(&format!(
            "INSERT INTO app.signed_mix VALUES ({id}, {rest});"
        ));
    }
    sql.push_str(&format!(
        "INSERT INTO app.ci_key VALUES ('abc{base}', 1, 'x'), ('ÀÉ{base}', 2, NULL), ('z{base}', 3, 'zz');"
    ));
    sql
}

pub async fn create_tables(pair_src: &fleetsync_tests::MariaDb) -> Result<()> {
    pair_src
        .exec(&format!(
            "CREATE DATABASE app; {CREATE_ALL_TYPES}; {CREATE_SIGNED_MIX}; {CREATE_CI_KEY};"
        ))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_column_types_byte_exact() -> Result<()> {
    let pair = Pair::start_with(&["--default-time-zone=+05:00"], &[]).await?;
    let (src, dst) = (&pair.src, &pair.dst);
    create_tables(src).await?;
    // Snapshot path: rows that exist before fleetsync starts.
    exec_lenient(src, &all_inserts(0)).await?;

    let config = pair.config(&["app\\..*"])?;
    let mut fs = Fleetsync::run(&config)?;
    fs.wait_synced(src, dst, "app", SYNC_TIMEOUT)
        .await
        .context("after the snapshot")?;

    // Binlog path: the same rows again, then updates (whole-row, to NULL, of the key) and
    // deletes.
    exec_lenient(src, &all_inserts(100)).await?;
    let rows = edge_rows();
    let mut sql = String::from("START TRANSACTION;");
    sql.push_str(&update_row(1, &rows[1]));
    sql.push_str(&update_row(2, &rows[4]));
    sql.push_str(&update_row(105, &rows[2]));
    sql.push_str("UPDATE app.all_types SET id = 1000 WHERE id = 3;");
    sql.push_str("UPDATE app.all_types SET vc = CONCAT(IFNULL(vc, ''), '✓'), ti_u = 255 - IFNULL(ti_u, 0) WHERE id > 100;");
    sql.push_str("DELETE FROM app.all_types WHERE id IN (4, 104);");
    sql.push_str("UPDATE app.signed_mix SET b = 255, d = 4294967295, e = 18446744073709551615, y = 0 WHERE id = 1;");
    sql.push_str("DELETE FROM app.signed_mix WHERE id = 3;");
    sql.push_str("UPDATE app.ci_key SET name = 'ABC0' WHERE name = 'abc0' AND n = 1;");
    sql.push_str("COMMIT;");
    exec_lenient(src, &sql).await?;
    fs.wait_synced(src, dst, "app", SYNC_TIMEOUT)
        .await
        .context("after binlog changes")?;
    assert_schemas_equal(src, dst, "app", "app").await?;

    check_status(&config).await?;
    fs.stop(crate::support::STOP_TIMEOUT).await?;
    Ok(())
}

/// `fleetsync status --json` names the sync and target and reports positions.
async fn check_status(config: &std::path::Path) -> Result<()> {
    let status = status_json(config).await?;
    let sync = &status["syncs"][0];
    anyhow::ensure!(
        sync["name"] == "s1" && sync["source"] == "src",
        "unexpected status: {status}"
    );
    let target = &sync["targets"][0];
    anyhow::ensure!(target["name"] == "dst", "unexpected status: {status}");
    for field in ["applied_position", "state"] {
        anyhow::ensure!(
            target[field].as_str().is_some_and(|s| !s.is_empty()),
            "status target.{field} should be a non-empty string: {status}"
        );
    }
    anyhow::ensure!(
        sync["source_position"]
            .as_str()
            .is_some_and(|s| s.contains(':')),
        "status source_position should be file:pos@gtid: {status}"
    );
    anyhow::ensure!(
        target["warnings"].is_array(),
        "status warnings should be a list: {status}"
    );
    Ok(())
}

/// The snapshot pages by key in the key's collation order: with tiny chunks, character keys
/// whose byte order differs from their collation order (mixed case, accents, latin1) are
/// all copied, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_pages_collated_keys() -> Result<()> {
    let pair = Pair::start().await?;
    let (src, dst) = (&pair.src, &pair.dst);
    let mut sql = String::from(
        "CREATE DATABASE app;
         CREATE TABLE app.ci (k VARCHAR(20) COLLATE utf8mb4_general_ci NOT NULL PRIMARY KEY, n INT);
         CREATE TABLE app.l1 (k VARCHAR(20) CHARACTER SET latin1 COLLATE latin1_swedish_ci NOT NULL PRIMARY KEY, n INT);
         CREATE TABLE app.comp (a INT NOT NULL, k VARCHAR(20) COLLATE utf8mb4_unicode_ci NOT NULL, n INT, PRIMARY KEY (a, k));",
    );
    let words = [
        "apple", "Banana", "cherry", "Äpfel", "zebra", "Zoo", "éclair", "Ecole", "b_", "B-", "ÿ",
        "_x",
    ];
    for (i, w) in words.iter().enumerate() {
        for j in 0..5 {
            let k = format!("{w}{j}");
            sql.push_str(&format!(
                "INSERT INTO app.ci VALUES ('{k}', {i}); INSERT INTO app.l1 VALUES ('{k}', {i}); \
                 INSERT INTO app.comp VALUES ({}, '{k}', {i});",
                j % 2
            ));
        }
    }
    src.exec(&sql).await?;
    let text = simple_config(
        &pair.state_dir(),
        &src.url_root(),
        &dst.url_root(),
        &["app\\..*"],
    ) + "snapshot_chunk_rows = 3\n";
    let config = Fleetsync::write_config(pair.dir.path(), &text)?;
    let mut fs = Fleetsync::run(&config)?;
    fs.wait_synced(src, dst, "app", SYNC_TIMEOUT)
        .await
        .context("after a snapshot in 3-row chunks")?;
    fs.stop(crate::support::STOP_TIMEOUT).await?;
    Ok(())
}
