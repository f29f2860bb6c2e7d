//! The catalogue's config and server entries: malformed or inconsistent configuration
//! (checked by `fleetsync check` or refused by `fleetsync run` before anything is written),
//! and servers that cannot be used (unreachable, wrong credentials, missing privileges,
//! binlog settings, include patterns matching no table).

use std::path::Path;

use fleetsync_tests::fleetsync::toml_str;

use super::Category::{Config, Servers};
use super::Run::Cli;
use super::{case, Case, Srv, World, READER_PASSWORD, SYNC_PASSWORD, WRONG_PASSWORD};
use crate::support::dead_port;

const CHECK: super::Run = Cli(&["check", "--config", "{config}"]);
const RUN: super::Run = Cli(&["run", "--config", "{config}"]);
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

pub fn config_cases() -> Vec<Case> {
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
            // The misspelt key's value is a password: the error must not echo it.
            config: |w, d| src_with(w, d, &[("passwrod", &toml_str(SYNC_PASSWORD))]),
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
            one_line: false,
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

pub fn server_cases() -> Vec<Case> {
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
            never: &[
                "Nobody-Pass-1",
                SYNC_PASSWORD,
                WRONG_PASSWORD,
                READER_PASSWORD,
            ],
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
        // Definitions that only the servers can judge (the preflight): refused by `check`
        // and `run` before anything is written.
        Case {
            config: |w, d| {
                sync_plus(
                    w,
                    d,
                    "map = { \"app.t\" = \"app.x\", \"app.u\" = \"app.x\" }\n",
                )
            },
            mentions: &[&["app.x"], &["app.t"], &["app.u"]],
            ..case("map sends two tables onto one", Config, CHECK)
        },
        Case {
            config: |w, d| sync_plus(w, d, "map = { \"app.t\" = \"keep.k\" }\n"),
            mentions: &[&["keep.k"], &["column", "shape"]],
            ..case("map onto a target table of another shape", Config, RUN)
        },
        Case {
            config: |w, d| {
                sync_plus(
                    w,
                    d,
                    "conflict = \"newest-wins\"\nnewest_column = \"changed_at\"\n",
                )
            },
            mentions: &[&["changed_at"], &["app.t", "app.u"]],
            // One line per table lacking the column (app.t and app.u).
            one_line: false,
            ..case(
                "newest_column missing from an included table",
                Config,
                CHECK,
            )
        },
        Case {
            config: |w, d| {
                sync_plus(
                    w,
                    d,
                    "conflict = \"manual\"\n[[syncs.tables]]\nname = \"app.nope\"\nconflict = \"target-wins\"\n",
                )
            },
            mentions: &[&["app.nope"], &["override", "tables"]],
            ..case("per-table override of an unknown table", Config, CHECK)
        },
        Case {
            config: |w, d| {
                w.servers(d)
                    .server("spare", &w.b.url_root())
                    .sync("s1", "src", &["dst"], &["app\\..*"], &[])
                    .raw("conflict = \"source-wins\"\npriority = [\"spare\"]\n")
                    .build()
            },
            mentions: &[&["priority"], &["none of the sync's servers"]],
            ..case("priority names none of the sync's servers", Config, CHECK)
        },
        Case {
            config: |w, d| sync_plus(w, d, "loop_prevention = \"sometimes\"\n"),
            mentions: &[&["sometimes"], &["skip_replication"], &["marker"]],
            ..case("unknown loop_prevention", Config, CHECK)
        },
        Case {
            mentions: &[&["--metrics-listen"], &["host:port"]],
            ..case(
                "malformed --metrics-listen",
                Config,
                Cli(&["run", "--config", "{config}", "--metrics-listen", "nowhere"]),
            )
        },
        // TLS settings: refused before any connection.
        Case {
            config: |w, d| src_with(w, d, &[("tls", "\"sometimes\"")]),
            mentions: &[&["line 9"], &["sometimes"], &["verify_ca"]],
            ..case("unknown tls mode", Config, CHECK)
        },
        Case {
            config: |w, d| src_with(w, d, &[("tls", "\"verify_ca\"")]),
            mentions: &[&["tls_ca"], &["verify_ca"]],
            ..case("verify_ca without tls_ca", Config, CHECK)
        },
        Case {
            config: |w, d| {
                let ca = format!("\"{}/no-such-ca.pem\"", d.display());
                src_with(w, d, &[("tls", "\"verify_ca\""), ("tls_ca", &ca)])
            },
            mentions: &[&["tls_ca"], &["no-such-ca.pem"]],
            ..case("tls_ca file missing", Config, CHECK)
        },
        Case {
            config: |w, d| {
                let cert = format!("\"{}/client.pem\"", d.display());
                src_with(w, d, &[("tls", "\"required\""), ("tls_cert", &cert)])
            },
            mentions: &[&["tls_cert"], &["tls_key"]],
            ..case("tls_cert without tls_key", Config, CHECK)
        },
    ]
}
