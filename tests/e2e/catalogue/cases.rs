//! The catalogue's entries. Each starts from [`case`] (the good config, exit code 1, the
//! three passwords never shown) and overrides what it needs. The servers: `src` = a (the
//! source, with `app.t`, `app.u` and the users `syncer` and `reader`), `dst` = b (a target
//! holding `app.t` with other rows and `keep.k`), `nolog` = c (binary log off).

use std::path::Path;

use anyhow::{Context, Result};
use fleetsync_tests::fleetsync::toml_str;

use super::Category::{Config, Data, Http, Servers, Tasks};
use super::Run::{Cli, Http as Get};
use super::{case, Case, Srv, World, READER_PASSWORD, SYNC_PASSWORD, WRONG_PASSWORD};
use crate::support::dead_port;

const CHECK: super::Run = Cli(&["check", "--config", "{config}"]);
const RUN: super::Run = Cli(&["run", "--config", "{config}"]);

/// Every catalogue entry, in the order they run (HTTP last: they share one running sync).
pub fn cases() -> Vec<Case> {
    let mut all = config_cases();
    all.extend(server_cases());
    all.extend(data_cases());
    all.extend(task_cases());
    all.extend(http_cases());
    all
}

/// The good config with `extra` appended (it lands in the `[backup]` section unless it opens
/// a table of its own).
fn good_plus(w: &World, d: &Path, extra: &str) -> String {
    w.good(d) + extra
}

/// The good config with `extra` appended to the `[[syncs]]` entry `s1`.
fn sync_plus(w: &World, d: &Path, extra: &str) -> String {
    w.servers(d)
        .sync("s1", "src", &["dst"], &["app\\..*"], &[])
        .raw(extra)
        .build()
}

fn config_cases() -> Vec<Case> {
    vec![
        Case {
            mentions: &[&["cannot read config file"], &["no-such.toml"]],
            ..case(
                "config file missing",
                Config,
                Cli(&["check", "--config", "{dir}/no-such.toml"]),
            )
        },
        Case {
            config: |w, d| w.good(d).replacen("[[syncs]]", "[[syncs]\nname = \"x", 1),
            mentions: &[&["line"], &["toml", "expected", "invalid", "unclosed"]],
            ..case("TOML syntax error", Config, CHECK)
        },
        Case {
            config: |w, d| {
                w.good(d)
                    .replacen("state_dir", "stat_dir = \"/tmp\"\nstate_dir", 1)
            },
            mentions: &[&["stat_dir"], &["unknown"]],
            ..case("unknown top-level key", Config, CHECK)
        },
        Case {
            config: |w, d| {
                w.good(d)
                    .replacen("[metrics]\n", "[metrics]\nlisten_port = 9187\n", 1)
            },
            mentions: &[&["listen_port"], &["unknown"]],
            ..case("unknown key in [metrics]", Config, CHECK)
        },
        Case {
            config: |w, d| src_with(w, d, &[("passwrod", "\"Sync-Pass-7f3a\"")]),
            mentions: &[&["passwrod"], &["unknown"]],
            ..case("unknown key in [[servers]]", Config, CHECK)
        },
        Case {
            config: |w, d| sync_plus(w, d, "inlcude = [\"app\\\\.t\"]\n"),
            mentions: &[&["inlcude"], &["unknown"]],
            ..case("unknown key in [[syncs]]", Config, CHECK)
        },
        Case {
            config: |w, d| {
                sync_plus(
                    w,
                    d,
                    "conflict = \"manual\"\n[[syncs.tables]]\nname = \"app.t\"\nstrategy = \"manual\"\n",
                )
            },
            mentions: &[&["strategy"], &["unknown"]],
            ..case("unknown key in [[syncs.tables]]", Config, CHECK)
        },
        Case {
            config: |w, d| good_plus(w, d, "\n[bus]\nkind = \"embedded\"\nbroker = \"k:9092\"\n"),
            mentions: &[&["broker"], &["unknown"]],
            ..case("unknown key in [bus]", Config, CHECK)
        },
        Case {
            config: |w, d| good_plus(w, d, "compresion = \"zstd\"\n"),
            mentions: &[&["compresion"], &["unknown"]],
            ..case("unknown key in [backup]", Config, CHECK)
        },
        Case {
            config: |w, d| good_plus(w, d, "\n[health]\ninterval = 60\n"),
            mentions: &[&["interval"], &["unknown"]],
            ..case("unknown key in [health]", Config, CHECK)
        },
        Case {
            config: |w, d| sync_plus(w, d, "batch_rows = \"many\"\n"),
            mentions: &[&["batch_rows", "line"], &["invalid type", "expected"]],
            ..case("value of the wrong type", Config, CHECK)
        },
        Case {
            config: |w, d| {
                w.servers(d)
                    .server("src", &w.b.url_root())
                    .sync("s1", "src", &["dst"], &["app\\..*"], &[])
                    .build()
            },
            mentions: &[&["duplicate server name"], &["src"]],
            ..case("duplicate server names", Config, CHECK)
        },
        Case {
            config: |w, d| {
                w.servers(d)
                    .sync("s1", "src", &["dst"], &["app\\..*"], &[])
                    .sync("s1", "src", &["nolog"], &["app\\..*"], &[])
                    .build()
            },
            mentions: &[&["duplicate sync name"], &["s1"]],
            ..case("duplicate sync names", Config, CHECK)
        },
        Case {
            config: |w, d| plain(w, d).server("bad name", &w.a.url_root()).build(),
            mentions: &[&["servers[3].name"], &["letters, digits"]],
            ..case("server name with a space", Config, CHECK)
        },
        Case {
            config: |w, d| {
                w.servers(d)
                    .sync("s1", "ghost", &["dst"], &["app\\..*"], &[])
                    .build()
            },
            mentions: &[&["source"], &["ghost"]],
            ..case("sync source names no server", Config, CHECK)
        },
        Case {
            config: |w, d| {
                w.servers(d)
                    .sync("s1", "src", &["dst", "phantom"], &["app\\..*"], &[])
                    .build()
            },
            mentions: &[&["targets"], &["phantom"]],
            ..case("sync target names no server", Config, CHECK)
        },
        Case {
            config: |w, d| {
                w.servers(d)
                    .sync("s1", "src", &["src"], &["app\\..*"], &[])
                    .build()
            },
            mentions: &[&["targets"], &["sync's source"]],
            ..case("sync source is its own target", Config, CHECK)
        },
        Case {
            config: |w, d| {
                w.servers(d)
                    .sync("s1", "src", &[], &["app\\..*"], &[])
                    .build()
            },
            mentions: &[&["targets"], &["at least one"]],
            ..case("sync without targets", Config, CHECK)
        },
        Case {
            config: |w, d| {
                w.servers(d)
                    .sync("s1", "src", &["dst"], &["app\\.(t"], &[])
                    .build()
            },
            mentions: &[&["include"], &["regex", "unclosed", "group"]],
            ..case("invalid include regex", Config, CHECK)
        },
        Case {
            config: |w, d| sync_plus(w, d, "map = { \"app\" = \"other.t\" }\n"),
            mentions: &[&["map"], &["schema to a schema"]],
            ..case("map mixes a schema and a table", Config, CHECK)
        },
        Case {
            config: |w, d| sync_plus(w, d, "batch_rows = 0\n"),
            mentions: &[&["batch_rows"], &["between 1"]],
            ..case("batch_rows zero", Config, CHECK)
        },
        Case {
            config: |w, d| sync_plus(w, d, "schedule = \"every tuesday\"\n"),
            mentions: &[&["schedule"], &["cron"]],
            ..case("sync schedule not cron", Config, CHECK)
        },
        Case {
            config: |w, d| good_plus(w, d, "schedule = \"61 * * * *\"\n"),
            mentions: &[&["backup.schedule"], &["cron"]],
            ..case("backup schedule out of range", Config, CHECK)
        },
        Case {
            config: |w, d| w.good(d).replacen("127.0.0.1:0", "localhost-no-port", 1),
            mentions: &[&["metrics.listen"], &["host:port"]],
            ..case("metrics listen not host:port", Config, CHECK)
        },
        Case {
            config: |w, d| good_plus(w, d, "\n[bus]\nkind = \"rabbitmq\"\n"),
            mentions: &[&["rabbitmq"], &["kind", "variant", "expected"]],
            ..case("unknown bus kind", Config, CHECK)
        },
        Case {
            config: |w, d| good_plus(w, d, "\n[bus]\nkind = \"kafka\"\n"),
            mentions: &[&["bus.brokers"], &["required"]],
            ..case("kafka bus without brokers", Config, CHECK)
        },
        Case {
            config: |w, d| {
                good_plus(
                    w,
                    d,
                    "\n[bus]\nkind = \"kafka\"\nbrokers = \"127.0.0.1:1\"\n[bus.kafka]\nacks = \"1\"\n",
                )
            },
            mentions: &[&["acks"], &["all"]],
            ..case("kafka acks weakened", Config, CHECK)
        },
        Case {
            config: |w, d| src_with(w, d, &[("password_env", "\"FLEETSYNC_CATALOGUE_UNSET\"")]),
            mentions: &[
                &["password_env"],
                &["FLEETSYNC_CATALOGUE_UNSET"],
                &["not set"],
            ],
            ..case("password_env names an unset variable", Config, CHECK)
        },
        Case {
            config: |w, d| {
                let f = toml_str(&d.join("no-password-file").to_string_lossy());
                src_with(w, d, &[("password_file", f.as_str())])
            },
            mentions: &[&["password_file"], &["no-password-file"]],
            ..case("password_file missing", Config, CHECK)
        },
        Case {
            config: |w, d| {
                plain(w, d)
                    .server("pg", "postgres://root@127.0.0.1:5432")
                    .build()
            },
            mentions: &[&["url"], &["mysql://"]],
            ..case("server URL of another scheme", Config, CHECK)
        },
        Case {
            config: |w, d| sync_plus(w, d, "conflict = \"loudest-wins\"\n"),
            mentions: &[&["conflict"], &["loudest-wins"], &["newest-wins"]],
            ..case("unknown conflict strategy", Config, CHECK)
        },
        Case {
            config: |w, d| sync_plus(w, d, "conflict = \"newest-wins\"\n"),
            mentions: &[&["newest_column"], &["required"]],
            ..case("newest-wins without newest_column", Config, CHECK)
        },
        Case {
            config: |w, d| {
                sync_plus(
                    w,
                    d,
                    "conflict = \"source-wins\"\npriority = [\"src\", \"mars\"]\n",
                )
            },
            mentions: &[&["priority"], &["mars"]],
            ..case("priority names an unknown server", Config, CHECK)
        },
        Case {
            config: |w, d| good_plus(w, d, "zstd_level = 25\n"),
            mentions: &[&["zstd_level"], &["1 to 19"]],
            ..case("backup zstd_level out of range", Config, CHECK)
        },
        Case {
            config: |w, d| good_plus(w, d, "retention = { keep_last = 0 }\n"),
            mentions: &[&["keep_last"], &["at least 1"]],
            ..case("backup retention keeps nothing", Config, CHECK)
        },
        Case {
            config: |w, d| good_plus(w, d, "\n[health]\ninterval_secs = 0\n"),
            mentions: &[&["interval_secs"], &["at least 1"]],
            ..case("health interval zero", Config, CHECK)
        },
        Case {
            // state_dir is a regular file: nothing can be stored there.
            files: |_, d| Ok(std::fs::write(d.join("state"), "not a directory\n")?),
            mentions: &[&["state"], &["directory", "not a dir", "exists", "create"]],
            ..case("state_dir is a file", Config, RUN)
        },
        Case {
            env: &[("FLEETSYNC_METRICS_LISTEN", "nowhere")],
            mentions: &[&["metrics.listen"], &["host:port"]],
            ..case("environment override malformed", Config, CHECK)
        },
        Case {
            expect: 2,
            mentions: &[&["--config"]],
            ..case("command without --config", Config, Cli(&["check"]))
        },
    ]
}

/// The plain state_dir + `[metrics]` + the three servers, no sync.
fn plain(w: &World, d: &Path) -> fleetsync_tests::ConfigBuilder {
    w.servers(d)
}

/// The good config with extra keys on server `src`.
fn src_with(w: &World, d: &Path, extra: &[(&str, &str)]) -> String {
    fleetsync_tests::ConfigBuilder::new(&d.join("state"))
        .server_with("src", &w.a.url_root(), extra)
        .server("dst", &w.b.url_root())
        .sync("s1", "src", &["dst"], &["app\\..*"], &[])
        .build()
}

fn server_cases() -> Vec<Case> {
    vec![
        Case {
            config: |w, d| {
                let port = dead_port().unwrap_or(1);
                w.sync_from(d, &format!("mysql://root@127.0.0.1:{port}"))
            },
            mentions: &[&["src"], &["connect", "refused", "unreachable"]],
            ..case("source unreachable", Servers, RUN)
        },
        Case {
            config: |w, d| {
                let port = dead_port().unwrap_or(1);
                w.servers(d)
                    .server("down", &format!("mysql://root@127.0.0.1:{port}"))
                    .sync("s1", "src", &["down"], &["app\\..*"], &[])
                    .build()
            },
            mentions: &[&["down"], &["connect", "refused", "unreachable"]],
            ..case("target unreachable", Servers, RUN)
        },
        Case {
            config: |w, d| w.sync_from(d, &w.a.url_user("syncer", WRONG_PASSWORD)),
            mentions: &[&["syncer"], &["access denied", "password"]],
            ..case("wrong password", Servers, RUN)
        },
        Case {
            config: |w, d| {
                src_with(w, d, &[("password_env", "\"FLEETSYNC_CATALOGUE_PW\"")])
                    .replace(&w.a.url_root(), &w.a.url_root().replace("root@", "syncer@"))
            },
            env: &[("FLEETSYNC_CATALOGUE_PW", WRONG_PASSWORD)],
            mentions: &[&["syncer"], &["access denied", "password"]],
            ..case("wrong password from password_env", Servers, CHECK)
        },
        Case {
            config: |w, d| w.sync_from(d, &w.a.url_user("nobody", "Nobody-Pass-1")),
            mentions: &[&["nobody"], &["access denied"]],
            never: &["Nobody-Pass-1", SYNC_PASSWORD],
            ..case("unknown user", Servers, CHECK)
        },
        Case {
            config: |w, d| w.sync_from(d, &w.a.url_user("reader", READER_PASSWORD)),
            mentions: &[&["replication slave", "binlog monitor", "privilege"]],
            ..case("missing replication privileges", Servers, RUN)
        },
        Case {
            config: |w, d| w.sync_from(d, &w.c.url_root()),
            mentions: &[&["binary log", "log_bin"], &["off"]],
            ..case("binlog off on the source", Servers, RUN)
        },
        Case {
            setup_sql: &[(Srv::A, "SET GLOBAL binlog_format = 'STATEMENT'")],
            cleanup_sql: &[(Srv::A, "SET GLOBAL binlog_format = 'ROW'")],
            mentions: &[&["binlog_format"], &["row"]],
            ..case("binlog_format STATEMENT", Servers, RUN)
        },
        Case {
            setup_sql: &[(Srv::A, "SET GLOBAL binlog_row_image = 'MINIMAL'")],
            cleanup_sql: &[(Srv::A, "SET GLOBAL binlog_row_image = 'FULL'")],
            mentions: &[&["binlog_row_image"], &["full"]],
            ..case("binlog_row_image MINIMAL", Servers, CHECK)
        },
        Case {
            setup_sql: &[(Srv::A, "SET GLOBAL binlog_row_metadata = 'MINIMAL'")],
            cleanup_sql: &[(Srv::A, "SET GLOBAL binlog_row_metadata = 'FULL'")],
            mentions: &[&["binlog_row_metadata"], &["full"]],
            ..case("binlog_row_metadata MINIMAL", Servers, RUN)
        },
        Case {
            config: |w, d| {
                w.servers(d)
                    .sync("s1", "src", &["dst"], &["app\\.no_such_table"], &[])
                    .build()
            },
            mentions: &[&["no_such_table"], &["matches no table"]],
            ..case("include matches no table", Servers, RUN)
        },
        Case {
            config: |w, d| w.sync_from(d, &format!("{}/no_such_db", w.a.url_root())),
            mentions: &[&["no_such_db"], &["unknown database", "database"]],
            ..case("unknown database in the URL", Servers, CHECK)
        },
    ]
}

/// Copies `from` (a directory tree) to `to`.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let target = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_tree(&e.path(), &target)?;
        } else {
            std::fs::copy(e.path(), &target)?;
        }
    }
    Ok(())
}

/// The shared good backup, copied into the case's `[backup] dir`; the path of its first
/// data file.
fn copy_backup(w: &World, d: &Path) -> Result<std::path::PathBuf> {
    let id = &w.backup_id;
    let to = d.join("backups").join(id);
    copy_tree(&w.pristine().join("backups").join(id), &to)?;
    let mut data: Vec<_> = std::fs::read_dir(to.join("data"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    data.sort();
    data.into_iter()
        .next()
        .context("the backup has no data file")
}

/// The shared good export in `format`, copied to `<case dir>/in`, with `edit` applied to
/// the file named `file` (its bytes in, bytes out).
fn copy_export(
    w: &World,
    d: &Path,
    format: &str,
    file: &str,
    edit: fn(String) -> String,
) -> Result<()> {
    let to = d.join("in");
    copy_tree(&w.pristine().join(format!("export-{format}")), &to)?;
    let path = to.join(file);
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    let edited = edit(text.clone());
    anyhow::ensure!(edited != text, "the edit of {file} changed nothing");
    std::fs::write(&path, edited)?;
    Ok(())
}

const RESTORE: super::Run = Cli(&[
    "backup",
    "restore",
    "--config",
    "{config}",
    "{backup}",
    "--to-server",
    "nolog",
    "--yes",
]);

fn data_cases() -> Vec<Case> {
    vec![
        Case {
            files: |w, d| {
                let chunk = copy_backup(w, d)?;
                let mut bytes = std::fs::read(&chunk)?;
                let mid = bytes.len() / 2;
                bytes[mid] ^= 0x40;
                Ok(std::fs::write(&chunk, bytes)?)
            },
            mentions: &[&["data/"], &["checksum mismatch"]],
            ..case("restore of a backup with a flipped byte", Data, RESTORE)
        },
        Case {
            files: |w, d| {
                let chunk = copy_backup(w, d)?;
                let bytes = std::fs::read(&chunk)?;
                Ok(std::fs::write(&chunk, &bytes[..bytes.len() / 2])?)
            },
            mentions: &[&["data/"], &["truncated"]],
            ..case(
                "verify of a truncated backup",
                Data,
                Cli(&["backup", "verify", "--config", "{config}", "{backup}"]),
            )
        },
        Case {
            files: |w, d| {
                copy_backup(w, d)?;
                Ok(std::fs::remove_file(
                    d.join("backups").join(&w.backup_id).join("manifest.json"),
                )?)
            },
            mentions: &[&["manifest.json"], &["missing"]],
            ..case("restore of a backup without manifest", Data, RESTORE)
        },
        Case {
            files: |w, d| copy_backup(w, d).map(drop),
            mentions: &[&["20000101-000000"], &["no backup", "not found", "missing"]],
            ..case(
                "restore of an unknown backup id",
                Data,
                Cli(&[
                    "backup",
                    "restore",
                    "--config",
                    "{config}",
                    "20000101-000000",
                    "--to-server",
                    "nolog",
                    "--yes",
                ]),
            )
        },
        Case {
            files: |w, d| copy_backup(w, d).map(drop),
            mentions: &[&["app.t"], &["--yes"]],
            ..case(
                "restore over existing tables without --yes",
                Data,
                Cli(&[
                    "backup",
                    "restore",
                    "--config",
                    "{config}",
                    "{backup}",
                    "--to-server",
                    "dst",
                ]),
            )
        },
        Case {
            files: |w, d| copy_backup(w, d).map(drop),
            mentions: &[&["archive"]],
            ..case(
                "point-in-time restore without an archive",
                Data,
                Cli(&[
                    "backup",
                    "restore",
                    "--config",
                    "{config}",
                    "{backup}",
                    "--to-server",
                    "nolog",
                    "--to-time",
                    "2000-01-01 00:00:00",
                    "--yes",
                ]),
            )
        },
        Case {
            files: |w, d| copy_backup(w, d).map(drop),
            mentions: &[&["to-time", "to_time"], &["yesterday"]],
            ..case(
                "point-in-time restore to a malformed time",
                Data,
                Cli(&[
                    "backup",
                    "restore",
                    "--config",
                    "{config}",
                    "{backup}",
                    "--to-server",
                    "nolog",
                    "--to-time",
                    "yesterday",
                    "--yes",
                ]),
            )
        },
        Case {
            files: |w, d| {
                copy_export(w, d, "csv", "app.t.csv", |t| {
                    t.replacen("2,two,20", "2,two", 1)
                })
            },
            mentions: &[&["app.t.csv"], &["row 2"], &["fields"]],
            ..case(
                "import of a CSV row with a missing field",
                Data,
                Cli(&[
                    "import", "--config", "{config}", "--server", "nolog", "--format", "csv",
                    "--in", "{dir}/in",
                ]),
            )
        },
        Case {
            files: |w, d| {
                copy_export(w, d, "json", "app.t.jsonl", |t| {
                    t.replacen("\"n\":20", "\"n\":\"twenty\"", 1)
                })
            },
            mentions: &[&["app.t.jsonl"], &["column `n`"], &["integer"]],
            ..case(
                "import of a JSON value of the wrong type",
                Data,
                Cli(&[
                    "import", "--config", "{config}", "--server", "nolog", "--format", "json",
                    "--in", "{dir}/in",
                ]),
            )
        },
        Case {
            files: |w, d| {
                copy_export(w, d, "sql", "app.t.sql", |t| {
                    t.replacen("(2,'two',20),", "(2,'two',20)", 1)
                })
            },
            mentions: &[&["app.t.sql"], &["line"], &["syntax"]],
            ..case(
                "import of a SQL file with a syntax error",
                Data,
                Cli(&[
                    "import", "--config", "{config}", "--server", "nolog", "--format", "sql",
                    "--in", "{dir}/in",
                ]),
            )
        },
        Case {
            files: |w, d| {
                copy_export(w, d, "json", "app.t.jsonl", |t| {
                    t[..t.len().min(30)].to_string()
                })
            },
            mentions: &[&["app.t.jsonl"], &["header"]],
            ..case(
                "import of a cut JSON file",
                Data,
                Cli(&[
                    "import", "--config", "{config}", "--server", "nolog", "--format", "json",
                    "--in", "{dir}/in",
                ]),
            )
        },
        Case {
            files: |w, d| copy_export(w, d, "json", "app.t.jsonl", |t| t + "{\"id\":"),
            mentions: &[&["app.t.jsonl"], &["line"]],
            ..case(
                "import of a JSON file with a broken last row",
                Data,
                Cli(&[
                    "import", "--config", "{config}", "--server", "nolog", "--format", "json",
                    "--in", "{dir}/in",
                ]),
            )
        },
        Case {
            files: |w, d| copy_export(w, d, "json", "export.json", |t| t.replacen("{", "[", 1)),
            mentions: &[&["export.json"]],
            ..case(
                "import with a malformed manifest",
                Data,
                Cli(&[
                    "import", "--config", "{config}", "--server", "nolog", "--format", "json",
                    "--in", "{dir}/in",
                ]),
            )
        },
        Case {
            files: |w, d| copy_tree(&w.pristine().join("export-csv"), &d.join("in")),
            mentions: &[&["ghost"], &["no database"]],
            ..case(
                "import renaming a database the export lacks",
                Data,
                Cli(&[
                    "import",
                    "--config",
                    "{config}",
                    "--server",
                    "nolog",
                    "--format",
                    "csv",
                    "--in",
                    "{dir}/in",
                    "--rename-db",
                    "ghost=x",
                ]),
            )
        },
        Case {
            files: |w, d| copy_tree(&w.pristine().join("export-csv"), &d.join("in")),
            // Both tables exist on b (a table the import creates is dropped again on
            // failure, but its CREATE and DROP stay in the binlog: see the README).
            setup_sql: &[(
                Srv::B,
                "CREATE TABLE app.u (k VARCHAR(10) PRIMARY KEY, at DATETIME(6)); \
                 INSERT INTO app.t VALUES (2, 'b-two', 0)",
            )],
            cleanup_sql: &[(Srv::B, "DROP TABLE app.u; DELETE FROM app.t WHERE id = 2")],
            mentions: &[&["app.t"], &["exists", "conflict", "duplicate"]],
            ..case(
                "import of rows that exist (on-conflict error)",
                Data,
                Cli(&[
                    "import", "--config", "{config}", "--server", "dst", "--format", "csv", "--in",
                    "{dir}/in",
                ]),
            )
        },
        Case {
            mentions: &[&["no-such-dir"]],
            ..case(
                "import from a missing directory",
                Data,
                Cli(&[
                    "import",
                    "--config",
                    "{config}",
                    "--server",
                    "nolog",
                    "--format",
                    "sql",
                    "--in",
                    "{dir}/no-such-dir",
                ]),
            )
        },
        Case {
            files: |w, d| copy_tree(&w.pristine().join("export-sql"), &d.join("in")),
            mentions: &[&["format", "json"]],
            ..case(
                "import of SQL files as JSON",
                Data,
                Cli(&[
                    "import", "--config", "{config}", "--server", "nolog", "--format", "json",
                    "--in", "{dir}/in",
                ]),
            )
        },
    ]
}

fn task_cases() -> Vec<Case> {
    vec![
        Case {
            mentions: &[&["nosuch"], &["no table", "matches no", "nothing"]],
            ..case(
                "export of an unknown table",
                Tasks,
                Cli(&[
                    "export",
                    "--config",
                    "{config}",
                    "--server",
                    "src",
                    "--format",
                    "sql",
                    "--out",
                    "{dir}/out",
                    "--include",
                    "app\\.nosuch",
                ]),
            )
        },
        Case {
            mentions: &[&["mars"], &["no server"]],
            ..case(
                "export from an unknown server",
                Tasks,
                Cli(&[
                    "export",
                    "--config",
                    "{config}",
                    "--server",
                    "mars",
                    "--format",
                    "sql",
                    "--out",
                    "{dir}/out",
                ]),
            )
        },
        Case {
            files: |_, d| {
                std::fs::create_dir_all(d.join("out"))?;
                Ok(std::fs::write(
                    d.join("out").join("precious.txt"),
                    "keep me\n",
                )?)
            },
            mentions: &[&["out"], &["not empty", "exists"]],
            ..case(
                "export into a non-empty directory",
                Tasks,
                Cli(&[
                    "export",
                    "--config",
                    "{config}",
                    "--server",
                    "src",
                    "--format",
                    "json",
                    "--out",
                    "{dir}/out",
                ]),
            )
        },
        Case {
            mentions: &[&["mars"]],
            expect: 2,
            ..case(
                "diff data with an unknown server",
                Tasks,
                Cli(&["diff", "data", "--config", "{config}", "src", "mars"]),
            )
        },
        Case {
            mentions: &[&["nosuchdb"]],
            expect: 2,
            ..case(
                "diff schema with an unknown database",
                Tasks,
                Cli(&[
                    "diff",
                    "schema",
                    "--config",
                    "{config}",
                    "src/app",
                    "dst/nosuchdb",
                ]),
            )
        },
        Case {
            mentions: &[&["no-such.sql"]],
            expect: 2,
            ..case(
                "diff schema with a missing schema file",
                Tasks,
                Cli(&[
                    "diff",
                    "schema",
                    "--config",
                    "{config}",
                    "{dir}/no-such.sql",
                    "dst/app",
                ]),
            )
        },
        Case {
            mentions: &[&["no-such-migration"]],
            expect: 2,
            ..case(
                "migrate apply of a missing directory",
                Tasks,
                Cli(&[
                    "migrate",
                    "apply",
                    "--config",
                    "{config}",
                    "--target",
                    "dst",
                    "{dir}/no-such-migration",
                    "--yes",
                ]),
            )
        },
        Case {
            mentions: &[&["no applied migration"]],
            expect: 2,
            ..case(
                "migrate rollback with nothing applied",
                Tasks,
                Cli(&[
                    "migrate", "rollback", "--config", "{config}", "--target", "dst", "--yes",
                ]),
            )
        },
        Case {
            mentions: &[&["mars"]],
            expect: 3,
            ..case(
                "health of an unknown server",
                Tasks,
                Cli(&["health", "--config", "{config}", "--server", "mars"]),
            )
        },
        Case {
            mentions: &[&["4242"]],
            ..case(
                "conflicts resolve of an unknown id",
                Tasks,
                Cli(&[
                    "conflicts",
                    "resolve",
                    "--config",
                    "{config}",
                    "4242",
                    "--take",
                    "src",
                ]),
            )
        },
        Case {
            mentions: &[&["nosync"]],
            ..case(
                "resnapshot of an unknown sync",
                Tasks,
                Cli(&[
                    "resnapshot",
                    "--config",
                    "{config}",
                    "--sync",
                    "nosync",
                    "--yes",
                ]),
            )
        },
        Case {
            mentions: &[&["--yes", "confirm"]],
            ..case(
                "resnapshot without confirmation",
                Tasks,
                Cli(&["resnapshot", "--config", "{config}", "--sync", "s1"]),
            )
        },
        Case {
            mentions: &[&["nosync"]],
            ..case(
                "sync once of an unknown sync",
                Tasks,
                Cli(&["sync", "once", "--config", "{config}", "nosync"]),
            )
        },
        Case {
            mentions: &[&["mars"]],
            ..case(
                "tail of an unknown server",
                Tasks,
                Cli(&["tail", "--config", "{config}", "--server", "mars"]),
            )
        },
        Case {
            mentions: &[&["mars"]],
            ..case(
                "backup of an unknown server",
                Tasks,
                Cli(&[
                    "backup", "create", "--config", "{config}", "--server", "mars",
                ]),
            )
        },
        Case {
            config: |w, d| {
                w.servers(d)
                    .sync("s1", "src", &["dst"], &["app\\..*"], &[])
                    .build()
            },
            mentions: &[&["backup.dir"], &["required"]],
            ..case(
                "backup without [backup] dir",
                Tasks,
                Cli(&[
                    "backup", "create", "--config", "{config}", "--server", "src",
                ]),
            )
        },
        Case {
            files: |_, d| Ok(std::fs::write(d.join("existing.key"), "0123\n")?),
            mentions: &[&["existing.key"], &["exists"]],
            ..case(
                "backup keygen over an existing file",
                Tasks,
                Cli(&["backup", "keygen", "--out", "{dir}/existing.key"]),
            )
        },
        Case {
            mentions: &[&["port", "listen", "fixed"]],
            ..case(
                "sync pause without a fixed listener",
                Tasks,
                Cli(&["sync", "pause", "--config", "{config}", "s1"]),
            )
        },
    ]
}

fn http_cases() -> Vec<Case> {
    vec![
        Case {
            expect: 404,
            ..case(
                "GET of an unknown route",
                Http,
                Get("GET", "/no/such/route", ""),
            )
        },
        Case {
            expect: 404,
            mentions: &[&["no sync named"], &["ghost"]],
            ..case(
                "POST pause of an unknown sync",
                Http,
                Get("POST", "/api/syncs/ghost/pause", ""),
            )
        },
        Case {
            expect: 404,
            mentions: &[&["no sync named"]],
            ..case(
                "POST cancel of an unknown sync",
                Http,
                Get("POST", "/api/syncs/ghost/cancel", ""),
            )
        },
        Case {
            expect: 400,
            mentions: &[&["pause, resume or cancel"]],
            ..case(
                "POST of an unknown action",
                Http,
                Get("POST", "/api/syncs/s1/explode", ""),
            )
        },
        Case {
            expect: 405,
            ..case(
                "GET of a POST-only route",
                Http,
                Get("GET", "/api/syncs/s1/pause", ""),
            )
        },
        Case {
            expect: 405,
            ..case(
                "POST to /metrics",
                Http,
                Get("POST", "/metrics", "{\"reset\": true}"),
            )
        },
        Case {
            expect: 200,
            mentions: &[&["fleetsync_"]],
            ..case(
                "metrics never show the password",
                Http,
                Get("GET", "/metrics", ""),
            )
        },
        Case {
            expect: 200,
            mentions: &[&["streaming"]],
            ..case(
                "status never shows the password",
                Http,
                Get("GET", "/api/status", ""),
            )
        },
        Case {
            mentions: &[&["ghost"]],
            ..case(
                "sync pause of an unknown sync (CLI)",
                Http,
                Cli(&["sync", "pause", "--config", "{http_config}", "ghost"]),
            )
        },
    ]
}
