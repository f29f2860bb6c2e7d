//! TLS to the databases (`[[servers]] tls`, `tls_ca`, `tls_cert`, `tls_key`) against MariaDB
//! servers started with the test's own certificates (`MariaDb::start_tls`: `--ssl-cert`,
//! `--ssl-key`, `--ssl-ca`, `--require-secure-transport=ON`).
//!
//! - `tls_verify_ca_sync_and_diff`: source and target both require TLS and a client
//!   certificate (`REQUIRE X509`); a snapshot, then streamed changes, reach the target with
//!   `tls = "verify_ca"`, and `fleetsync diff data` runs over the same connections.
//! - `tls_modes_and_refusals`: a plain source and a TLS target: `preferred` falls back to plain
//!   on the plain server; a wrong CA, `disabled` against a server requiring TLS, and `required`
//!   against a server without TLS are refused with a one-line error (and `run` writes nothing);
//!   `verify_identity` accepts 127.0.0.1 and localhost and refuses a certificate for another
//!   name, which `verify_ca` still accepts.

use std::path::Path;

use anyhow::{ensure, Context, Result};
use fleetsync_tests::fleetsync::toml_str;
use fleetsync_tests::{
    assert_tables_equal, fleetsync_cmd_with, Certs, ConfigBuilder, Fleetsync, MariaDb,
};

use crate::support::{
    assert_target_untouched, check_refusal, expect_refusal, Refusal, SOURCE_ID, STOP_TIMEOUT,
    SYNC_TIMEOUT, TARGET_ID,
};

/// The user fleetsync logs in as; it must present a client certificate.
const USER: &str = "fs";
const PASSWORD: &str = "tls-secret-9";

/// `fleetsync ARGS` with logging off: (success, stdout, stderr).
async fn fleetsync(args: &[&str]) -> Result<(bool, String, String)> {
    let out =
        fleetsync_cmd_with(args, &[("RUST_LOG", "off")], crate::support::REFUSE_TIMEOUT).await?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// `fleetsync check --config CONFIG`: the stdout, or the failure with its stderr.
async fn check_ok(config: &Path) -> Result<String> {
    let config = config.to_str().context("config path")?;
    let (ok, out, err) = fleetsync(&["check", "--config", config]).await?;
    ensure!(ok, "fleetsync check failed: {err}");
    Ok(out)
}

/// `fleetsync check` must fail with one line naming `server` (or another word every such
/// line holds) and one of `words`.
async fn check_refused(config: &Path, server: &str, words: &[&str]) -> Result<String> {
    let config_s = config.to_str().context("config path")?;
    let out = fleetsync_cmd_with(
        &["check", "--config", config_s],
        &[("RUST_LOG", "off")],
        crate::support::REFUSE_TIMEOUT,
    )
    .await?;
    check_refusal(
        &out,
        &Refusal {
            mentions: &[&[server], words],
            never: &[PASSWORD],
        },
    )
}

/// A path as a TOML string.
fn toml_path(p: &Path) -> String {
    toml_str(&p.to_string_lossy())
}

/// `tls`, `tls_ca` and the client certificate of `certs`, as `server_with` lines.
fn tls_lines<'a>(
    mode: &'a str,
    ca: &'a str,
    cert: &'a str,
    key: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("tls", mode),
        ("tls_ca", ca),
        ("tls_cert", cert),
        ("tls_key", key),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_verify_ca_sync_and_diff() -> Result<()> {
    let certs = tokio::task::spawn_blocking(Certs::generate).await??;
    let (src, dst) = tokio::join!(
        MariaDb::start_tls(SOURCE_ID, &certs, &[]),
        MariaDb::start_tls(TARGET_ID, &certs, &[])
    );
    let (src, dst) = (src.context("source")?, dst.context("target")?);
    for db in [&src, &dst] {
        db.create_user(USER, PASSWORD, &["ALL PRIVILEGES ON *.*"])
            .await?;
        db.exec(&format!("ALTER USER '{USER}'@'%' REQUIRE X509"))
            .await?;
    }
    src.exec(
        "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(40)); \
         INSERT INTO app.t VALUES (1, 'snapshot-1'), (2, 'snapshot-2'), (3, 'snapshot-3')",
    )
    .await?;
    let dir = tempfile::Builder::new()
        .prefix("fleetsync-e2e-tls-")
        .tempdir()?;
    let (ca, cert, key) = (
        toml_path(&certs.ca),
        toml_path(&certs.client.cert),
        toml_path(&certs.client.key),
    );
    let lines = tls_lines("\"verify_ca\"", &ca, &cert, &key);
    let text = ConfigBuilder::new(&dir.path().join("state"))
        .server_with("src", &src.url_user(USER, PASSWORD), &lines)
        .server_with("dst", &dst.url_user(USER, PASSWORD), &lines)
        .sync("s1", "src", &["dst"], &["app\\..*"], &[])
        .build();
    let config = Fleetsync::write_config(dir.path(), &text)?;

    let out = check_ok(&config).await?;
    ensure!(
        !out.contains("warning"),
        "verified servers must not be warned about: {out}"
    );
    let accepts_before = ssl_accepts(&src).await?;
    let mut fs = Fleetsync::run(&config)?;
    fs.wait_synced(&src, &dst, "app", SYNC_TIMEOUT).await?;
    src.exec("INSERT INTO app.t VALUES (4, 'streamed'); UPDATE app.t SET v = 'changed' WHERE id = 1; DELETE FROM app.t WHERE id = 2")
        .await?;
    fs.wait_synced(&src, &dst, "app", SYNC_TIMEOUT).await?;
    assert_tables_equal(&src, &dst, "app", "app", "t").await?;
    ensure!(dst.count("app", "t").await? == 3, "rows after streaming");
    // The server counted TLS handshakes for fleetsync's sessions (the server refuses plain
    // ones anyway: require_secure_transport, REQUIRE X509).
    let accepts_after = ssl_accepts(&src).await?;
    ensure!(
        accepts_after > accepts_before,
        "no TLS handshake on the source ({accepts_before} -> {accepts_after})"
    );
    let status = fs.stop(STOP_TIMEOUT).await?;
    ensure!(
        status.success(),
        "fleetsync run exit {status}: {}",
        fs.log_tail(30)
    );

    // A task over the same connection settings: the data diff finds both sides equal.
    let cfg = config.to_str().context("config path")?;
    let (ok, out, err) =
        fleetsync(&["diff", "data", "--config", cfg, "src/app", "dst/app"]).await?;
    ensure!(ok, "diff data over TLS failed: {out} {err}");
    Ok(())
}

async fn ssl_accepts(db: &MariaDb) -> Result<u64> {
    let rows = db
        .query_strings("SHOW GLOBAL STATUS LIKE 'Ssl_accepts'")
        .await?;
    let value = rows
        .first()
        .and_then(|r| r.get(1).cloned().flatten())
        .context("no Ssl_accepts status")?;
    Ok(value.parse()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_modes_and_refusals() -> Result<()> {
    let certs = tokio::task::spawn_blocking(Certs::generate).await??;
    let (src, dst) = tokio::join!(
        MariaDb::start(SOURCE_ID),
        MariaDb::start_tls(TARGET_ID, &certs, &[])
    );
    let (src, dst) = (src.context("source")?, dst.context("target")?);
    dst.create_user(USER, PASSWORD, &["ALL PRIVILEGES ON *.*"])
        .await?;
    src.exec("CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY); INSERT INTO app.t VALUES (1)")
        .await?;
    let before = dst.user_databases().await?;
    let dir = tempfile::Builder::new()
        .prefix("fleetsync-e2e-tls-")
        .tempdir()?;
    let (ca, wrong_ca) = (toml_path(&certs.ca), toml_path(&certs.wrong_ca));
    let dst_url = dst.url_user(USER, PASSWORD);
    let dst_localhost = dst_url.replace("127.0.0.1", "localhost");
    let config = |src_mode: &str, dst_url: &str, dst_lines: &[(&str, &str)]| {
        let text = ConfigBuilder::new(&dir.path().join("state"))
            .server_with("src", &src.url_root(), &[("tls", src_mode)])
            .server_with("dst", dst_url, dst_lines)
            .sync("s1", "src", &["dst"], &["app\\..*"], &[])
            .build();
        Fleetsync::write_config(dir.path(), &text)
    };

    // preferred on a server without TLS: plain; required on the TLS server: encrypted,
    // unverified (and said so).
    let cfg = config("\"preferred\"", &dst_url, &[("tls", "\"required\"")])?;
    let out = check_ok(&cfg).await?;
    ensure!(
        out.contains("server src: tls = \"preferred\": the server offers no TLS")
            && out.contains(
                "server dst: tls = \"required\": the server's certificate is not verified"
            ),
        "check should warn about both servers: {out}"
    );

    // preferred on the server that requires TLS: TLS (a plain session would be refused).
    check_ok(&config(
        "\"preferred\"",
        &dst_url,
        &[("tls", "\"preferred\"")],
    )?)
    .await?;

    // Bad settings are refused before any connection, naming the server and the key.
    let not_pem = dir.path().join("not-a-cert.pem");
    std::fs::write(&not_pem, "hello\n")?;
    for (lines, words) in [
        (vec![("tls", "\"on\"")], ["verify_identity", "line"]),
        (
            vec![("tls", "\"verify_ca\"")],
            ["servers.dst.tls_ca", "needs tls_ca"],
        ),
        (
            vec![("tls", "\"verify_ca\""), ("tls_ca", &toml_path(&not_pem))],
            ["servers.dst.tls_ca", "not valid PEM"],
        ),
    ] {
        let cfg = config("\"disabled\"", &dst_url, &lines)?;
        check_refused(&cfg, words[0], &[words[1]]).await?;
    }

    // A wrong CA: check and run refuse, naming the server and the certificate; nothing written.
    let cfg = config(
        "\"preferred\"",
        &dst_url,
        &[("tls", "\"verify_ca\""), ("tls_ca", &wrong_ca)],
    )?;
    let line = check_refused(&cfg, "dst", &["certificate"]).await?;
    ensure!(
        line.contains("tls_ca"),
        "the error should point at tls_ca: {line}"
    );
    expect_refusal(
        &cfg,
        &Refusal {
            mentions: &[&["dst"], &["certificate"], &["TLS"]],
            never: &[PASSWORD],
        },
    )
    .await?;
    assert_target_untouched(&dst, &before).await?;

    // Plain to a server that requires TLS; TLS required from a server that has none.
    let cfg = config("\"preferred\"", &dst_url, &[("tls", "\"disabled\"")])?;
    check_refused(&cfg, "dst", &["secure transport", "TLS"]).await?;
    let cfg = config("\"required\"", &dst_url, &[("tls", "\"required\"")])?;
    check_refused(&cfg, "src", &["offers no TLS"]).await?;

    // verify_identity: the certificate names 127.0.0.1 and localhost.
    let identity = [("tls", "\"verify_identity\""), ("tls_ca", ca.as_str())];
    check_ok(&config("\"disabled\"", &dst_url, &identity)?).await?;
    check_ok(&config("\"disabled\"", &dst_localhost, &identity)?).await?;

    // The server switches to a certificate (same CA) for another name: verify_identity
    // refuses it, verify_ca (chain only) still accepts it.
    let other = certs.issue_server("db-other", "DNS:db.invalid")?;
    std::fs::copy(&other.cert, &certs.server.cert)?;
    std::fs::copy(&other.key, &certs.server.key)?;
    dst.exec("FLUSH SSL").await?;
    let line = check_refused(
        &config("\"disabled\"", &dst_url, &identity)?,
        "dst",
        &["certificate"],
    )
    .await?;
    ensure!(
        line.contains("db.invalid") || line.contains("name"),
        "{line}"
    );
    let chain_only = [("tls", "\"verify_ca\""), ("tls_ca", ca.as_str())];
    check_ok(&config("\"disabled\"", &dst_url, &chain_only)?).await?;
    assert_target_untouched(&dst, &before).await?;
    Ok(())
}
