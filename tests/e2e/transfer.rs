//! `fleetsync export` / `import`: round trips in all three formats (every column type, the
//! TrinityCore schemas), the `mariadb` client loading a SQL export, the conflict modes, and
//! bad input (a clear error naming file and line/row, non-zero exit, the target unchanged).

use std::path::{Path, PathBuf};
use std::process::Output;

use anyhow::{ensure, Context, Result};
use fleetsync_tests::fixtures::TRINITYCORE_DATABASES;
use fleetsync_tests::{
    assert_databases_equal, assert_schemas_equal, base_tables, fill_schema, fleetsync_cmd,
    load_trinitycore, quote_ident, trinitycore_fixtures, MariaDb,
};

use crate::support::{exec_lenient, Pair};
use crate::types::{all_inserts, create_tables};

const FORMATS: [&str; 3] = ["sql", "json", "csv"];

fn s(p: &Path) -> Result<&str> {
    p.to_str().context("path is not UTF-8")
}

async fn export(config: &Path, format: &str, out: &Path, extra: &[&str]) -> Result<()> {
    let mut args = vec![
        "export",
        "--config",
        s(config)?,
        "--server",
        "src",
        "--format",
        format,
        "--out",
        s(out)?,
    ];
    args.extend_from_slice(extra);
    let out = fleetsync_cmd(&args).await?;
    ensure!(
        out.status.success(),
        "export failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

async fn import(config: &Path, format: &str, dir: &Path, extra: &[&str]) -> Result<Output> {
    let mut args = vec![
        "import",
        "--config",
        s(config)?,
        "--server",
        "dst",
        "--format",
        format,
        "--in",
        s(dir)?,
    ];
    args.extend_from_slice(extra);
    fleetsync_cmd(&args).await
}

async fn import_ok(config: &Path, format: &str, dir: &Path, extra: &[&str]) -> Result<String> {
    let out = import(config, format, dir, extra).await?;
    ensure!(
        out.status.success(),
        "import of {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Every database with every table's checksum: equal before and after = nothing changed.
async fn fingerprint(db: &MariaDb) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for schema in db.user_databases().await? {
        out.push(format!("database {schema}"));
        for t in base_tables(db, &schema).await? {
            let sql = format!(
                "CHECKSUM TABLE {}.{} EXTENDED",
                quote_ident(&schema),
                quote_ident(&t)
            );
            let rows = db.query_strings(&sql).await?;
            out.push(format!("{rows:?}"));
        }
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_all_types_round_trip() -> Result<()> {
    // The source runs in +05:00: TIMESTAMPs must travel as instants, not as local time.
    let pair = Pair::start_with(&["--default-time-zone=+05:00"], &[]).await?;
    let (src, dst) = (&pair.src, &pair.dst);
    create_tables(src).await?;
    exec_lenient(src, &all_inserts(0)).await?;
    let config = pair.config(&["app\\..*"])?;
    for format in FORMATS {
        let dir = pair.dir.path().join(format!("out-{format}"));
        export(&config, format, &dir, &["--include", "app\\..*"]).await?;
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("export.json"))?)?;
        ensure!(
            manifest["tables"].as_array().map(Vec::len) == Some(3),
            "{manifest}"
        );
        ensure!(
            manifest["position"]["file"]
                .as_str()
                .is_some_and(|f| f.starts_with("binlog")),
            "{manifest}"
        );
        let renamed = format!("app_{format}");
        import_ok(
            &config,
            format,
            &dir,
            &["--rename-db", &format!("app={renamed}")],
        )
        .await?;
        assert_databases_equal(src, dst, "app", &renamed)
            .await
            .with_context(|| format!("{format} round trip"))?;
        assert_schemas_equal(src, dst, "app", &renamed).await?;
        println!("{format}: every column type round-trips byte for byte");
    }
    // The SQL export loaded by the mariadb client (each file selects its own database).
    let dir = pair.dir.path().join("out-sql");
    for file in sql_files(&dir)? {
        dst.load_sql_file(&file).await?;
    }
    assert_databases_equal(src, dst, "app", "app").await?;
    assert_schemas_equal(src, dst, "app", "app").await?;
    Ok(())
}

fn sql_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    Ok(files)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_trinitycore_round_trip() -> Result<()> {
    let Some(fixtures) = trinitycore_fixtures("transfer_trinitycore_round_trip") else {
        return Ok(());
    };
    let pair = Pair::start().await?;
    let (src, dst) = (&pair.src, &pair.dst);
    load_trinitycore(src, &fixtures).await?;
    for (i, (db, _)) in TRINITYCORE_DATABASES.iter().enumerate() {
        fill_schema(src, db, 1, 3, 500 + i as u64).await?;
    }
    let config = pair.config(&["auth\\..*", "characters\\..*", "world\\..*"])?;
    for format in FORMATS {
        let started = std::time::Instant::now();
        let dir = pair.dir.path().join(format!("tc-{format}"));
        export(
            &config,
            format,
            &dir,
            &["--include", "(auth|characters|world)\\..*"],
        )
        .await?;
        let renames: Vec<String> = TRINITYCORE_DATABASES
            .iter()
            .map(|(db, _)| format!("{db}={db}_{format}"))
            .collect();
        let mut args = Vec::new();
        for r in &renames {
            args.extend(["--rename-db", r.as_str()]);
        }
        import_ok(&config, format, &dir, &args).await?;
        for (db, _) in TRINITYCORE_DATABASES {
            let renamed = format!("{db}_{format}");
            assert_databases_equal(src, dst, db, &renamed)
                .await
                .with_context(|| format!("{format}: {db}"))?;
            assert_schemas_equal(src, dst, db, &renamed).await?;
        }
        println!(
            "{format}: TrinityCore export + import + compare in {:.1?}",
            started.elapsed()
        );
    }
    Ok(())
}

const CONFLICT_TABLE: &str =
    "CREATE TABLE app.c (id INT PRIMARY KEY, v VARCHAR(10) NOT NULL, n INT NULL) ENGINE=InnoDB";

/// The target's rows of `app.c` as `id:v:n` strings in key order.
async fn conflict_rows(db: &MariaDb) -> Result<Vec<String>> {
    let rows = db
        .query_strings("SELECT id, v, IFNULL(n, 'NULL') FROM app.c ORDER BY id")
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            r.into_iter()
                .map(Option::unwrap_or_default)
                .collect::<Vec<_>>()
                .join(":")
        })
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_conflict_modes() -> Result<()> {
    let pair = Pair::start().await?;
    let (src, dst) = (&pair.src, &pair.dst);
    src.exec(&format!("CREATE DATABASE app; {CONFLICT_TABLE}; INSERT INTO app.c VALUES (1,'new1',1),(2,'new2',NULL),(3,'new3',3)")).await?;
    let config = pair.config(&["app\\..*"])?;
    let target = "CREATE DATABASE IF NOT EXISTS app; DROP TABLE IF EXISTS app.c";
    let seed = "INSERT INTO app.c VALUES (2,'old2',20),(3,'old3',NULL),(9,'keep9',9)";
    for format in FORMATS {
        let dir = pair.dir.path().join(format!("c-{format}"));
        export(&config, format, &dir, &[]).await?;
        let cases: [(&str, &[&str]); 3] = [
            (
                "skip",
                &["1:new1:1", "2:old2:20", "3:old3:NULL", "9:keep9:9"],
            ),
            (
                "replace",
                &["1:new1:1", "2:new2:NULL", "3:new3:3", "9:keep9:9"],
            ),
            (
                "update",
                &["1:new1:1", "2:new2:NULL", "3:new3:3", "9:keep9:9"],
            ),
        ];
        for (mode, want) in cases {
            dst.exec(&format!("{target}; {CONFLICT_TABLE}; {seed}"))
                .await?;
            import_ok(&config, format, &dir, &["--on-conflict", mode]).await?;
            let got = conflict_rows(dst).await?;
            ensure!(
                got == want,
                "{format} --on-conflict {mode}: {got:?}, expected {want:?}"
            );
        }
        // error: a duplicate key fails the import and rolls it all back (row 1 too).
        dst.exec(&format!("{target}; {CONFLICT_TABLE}; {seed}"))
            .await?;
        let before = fingerprint(dst).await?;
        let out = import(&config, format, &dir, &["--on-conflict", "error"]).await?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            !out.status.success(),
            "{format}: a duplicate key must fail the import"
        );
        ensure!(
            stderr.contains("Duplicate entry") && stderr.contains("rolled back"),
            "{stderr}"
        );
        ensure!(
            fingerprint(dst).await? == before,
            "{format}: the failed import changed the target"
        );
        // error mode on an empty target loads everything.
        dst.exec("DROP DATABASE app").await?;
        import_ok(&config, format, &dir, &["--on-conflict", "error"]).await?;
        ensure!(conflict_rows(dst).await? == ["1:new1:1", "2:new2:NULL", "3:new3:3"]);
        println!("{format}: skip, replace, update and error give the expected rows");
    }
    Ok(())
}

/// A bad input must fail with errors on stderr that mention every `needles` group, and must
/// leave the target exactly as it was.
async fn expect_bad(
    pair: &Pair,
    config: &Path,
    format: &str,
    dir: &Path,
    extra: &[&str],
    needles: &[&str],
) -> Result<String> {
    let before = fingerprint(&pair.dst).await?;
    let out = import(config, format, dir, extra).await?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    ensure!(
        !out.status.success(),
        "import of {} must fail; stderr: {stderr}",
        dir.display()
    );
    for n in needles {
        ensure!(
            stderr.contains(n),
            "the error should mention {n:?}: {stderr}"
        );
    }
    ensure!(
        fingerprint(&pair.dst).await? == before,
        "a refused import changed the target: {stderr}"
    );
    println!("refused as expected: {}", stderr.trim());
    Ok(stderr)
}

/// Copies an export dir and edits one file of the copy.
fn corrupt(
    from: &Path,
    to: &Path,
    file: &str,
    edit: impl FnOnce(Vec<u8>) -> Vec<u8>,
) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        std::fs::copy(e.path(), to.join(e.file_name()))?;
    }
    let path = to.join(file);
    let bytes = std::fs::read(&path)?;
    std::fs::write(&path, edit(bytes))?;
    Ok(())
}

fn replace(bytes: Vec<u8>, from: &str, to: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(&bytes).into_owned();
    assert!(text.contains(from), "{from:?} not in the file");
    text.replacen(from, to, 1).into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_bad_input() -> Result<()> {
    let pair = Pair::start().await?;
    let (src, dst) = (&pair.src, &pair.dst);
    src.exec(&format!("CREATE DATABASE app; {CONFLICT_TABLE}; INSERT INTO app.c VALUES (1,'a',1),(2,'b',2),(3,'c',3)")).await?;
    dst.exec(&format!(
        "CREATE DATABASE app; {CONFLICT_TABLE}; INSERT INTO app.c VALUES (2,'keep',0)"
    ))
    .await?;
    let config = pair.config(&["app\\..*"])?;
    let root = pair.dir.path();
    for format in FORMATS {
        export(&config, format, &root.join(format), &[]).await?;
    }
    let on = ["--on-conflict", "replace"];

    // CSV: a row with a missing field (data row 2 is on line 3).
    let d = root.join("csv-count");
    corrupt(&root.join("csv"), &d, "app.c.csv", |b| {
        replace(b, "2,b,2", "2,b")
    })?;
    expect_bad(
        &pair,
        &config,
        "csv",
        &d,
        &on,
        &[
            "app.c.csv: row 2 (line 3)",
            "2 fields, the table has 3 columns",
        ],
    )
    .await?;

    // CSV: invalid UTF-8 in a text cell.
    let d = root.join("csv-utf8");
    corrupt(&root.join("csv"), &d, "app.c.csv", |b| {
        let mut b = replace(b, "3,c,3", "3,c\u{1},3");
        if let Some(p) = b.iter().position(|&x| x == 1) {
            b[p] = 0xFF;
        }
        b
    })?;
    expect_bad(
        &pair,
        &config,
        "csv",
        &d,
        &on,
        &["app.c.csv: row 3 (line 4): column `v`: invalid UTF-8"],
    )
    .await?;

    // JSON: a string where the column is an INT, and a number where it is a VARCHAR.
    let d = root.join("json-types");
    corrupt(&root.join("json"), &d, "app.c.jsonl", |b| {
        replace(b, "\"n\":2", "\"n\":\"two\"")
    })?;
    expect_bad(
        &pair,
        &config,
        "json",
        &d,
        &on,
        &["app.c.jsonl: line 3: column `n`", "expected an integer"],
    )
    .await?;
    let d = root.join("json-types2");
    corrupt(&root.join("json"), &d, "app.c.jsonl", |b| {
        replace(b, "\"v\":\"a\"", "\"v\":17")
    })?;
    expect_bad(
        &pair,
        &config,
        "json",
        &d,
        &on,
        &["app.c.jsonl: line 2: column `v`"],
    )
    .await?;

    // SQL: a missing comma between rows, and a broken CREATE TABLE (checked by the server).
    let d = root.join("sql-syntax");
    corrupt(&root.join("sql"), &d, "app.c.sql", |b| {
        replace(b, "(2,'b',2),", "(2,'b',2)")
    })?;
    // The missing comma shows where row 3 starts: that line is named.
    let text = std::fs::read_to_string(d.join("app.c.sql"))?;
    let line = text
        .lines()
        .position(|l| l.starts_with("(3,"))
        .map(|i| i + 1)
        .context("row 3")?;
    let needle = format!("app.c.sql: line {line}: syntax error");
    expect_bad(&pair, &config, "sql", &d, &on, &[&needle]).await?;
    let d = root.join("sql-create");
    corrupt(&root.join("sql"), &d, "app.c.sql", |b| {
        replace(b, "PRIMARY KEY (`id`)", "PRIMARY KEY (`id`")
    })?;
    dst.exec("DROP DATABASE app").await?;
    expect_bad(
        &pair,
        &config,
        "sql",
        &d,
        &on,
        &["app.c.sql", "CREATE TABLE `c`", "SQL syntax"],
    )
    .await?;
    dst.exec(&format!(
        "CREATE DATABASE app; {CONFLICT_TABLE}; INSERT INTO app.c VALUES (2,'keep',0)"
    ))
    .await?;

    // An unknown file, and a malformed file, in the directory.
    let d = root.join("unknown");
    corrupt(&root.join("json"), &d, "app.c.jsonl", |b| b)?;
    std::fs::write(d.join("notes.txt"), "hello")?;
    expect_bad(
        &pair,
        &config,
        "json",
        &d,
        &on,
        &["notes.txt: unknown file"],
    )
    .await?;
    let d = root.join("malformed");
    corrupt(&root.join("json"), &d, "app.c.jsonl", |b| b[..40].to_vec())?;
    expect_bad(
        &pair,
        &config,
        "json",
        &d,
        &on,
        &["app.c.jsonl: line 1: invalid header"],
    )
    .await?;
    let d = root.join("no-manifest");
    corrupt(&root.join("json"), &d, "app.c.jsonl", |b| b)?;
    std::fs::remove_file(d.join("export.json"))?;
    expect_bad(&pair, &config, "json", &d, &on, &["export.json: missing"]).await?;

    // A dry run reports every problem at once, and the tables it found.
    let d = root.join("many");
    corrupt(&root.join("csv"), &d, "app.c.csv", |b| {
        let b = replace(b, "1,a,1", "1,a,one");
        replace(b, "3,c,3", "3,\\N,3")
    })?;
    std::fs::write(d.join("stray.csv"), "x\r\n")?;
    let mut args = on.to_vec();
    args.extend(["--dry-run", "--rename-db", "nope=x"]);
    let stderr = expect_bad(
        &pair,
        &config,
        "csv",
        &d,
        &args,
        &[
            "app.c.csv: row 1 (line 2): column `n`",
            "app.c.csv: row 3 (line 4): column `v`: NULL in a NOT NULL column",
            "stray.csv: unknown file",
            "--rename-db: \"nope=x\": the export has no database `nope`",
            "4 problems in the input",
        ],
    )
    .await?;
    ensure!(
        stderr.lines().filter(|l| l.starts_with("error: ")).count() == 5,
        "{stderr}"
    );

    // A good dry run changes nothing and reports the table and its rows.
    let before = fingerprint(dst).await?;
    let out = import_ok(
        &config,
        "sql",
        &root.join("sql"),
        &["--dry-run", "--rename-db", "app=fresh"],
    )
    .await?;
    ensure!(
        out.contains("app.c -> fresh.c: 3 rows (new table)"),
        "{out}"
    );
    ensure!(
        fingerprint(dst).await? == before,
        "a dry run changed the target"
    );
    Ok(())
}
