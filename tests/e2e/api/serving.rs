//! The API's serving rules: loopback only without tokens, HTTPS with a certificate made by
//! the test, and schemathesis against the live document.

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use fleetsync_tests::api::ApiClient;
use fleetsync_tests::{fleetsync_cmd_with, Certs, Fleetsync};

use crate::support::{check_refusal, dead_port, expect_refusal, Pair, Refusal, SYNC_TIMEOUT};

use super::*;

/// A config with no servers (the API needs none) listening on `listen`.
fn bare_config(dir: &Path, listen: &str, extra: &str) -> Result<std::path::PathBuf> {
    let text = format!(
        "state_dir = {:?}\n[metrics]\nlisten = \"127.0.0.1:0\"\n[api]\nlisten = \"{listen}\"\n{extra}",
        dir.join("state").display().to_string()
    );
    Fleetsync::write_config(dir, &text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_loopback_only_without_tokens_and_tls() -> Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("fleetsync-api-")
        .tempdir()?;
    let port = dead_port()?;

    // No token: a non-loopback listener is refused before anything is written.
    let config = bare_config(dir.path(), &format!("0.0.0.0:{port}"), "")?;
    expect_refusal(
        &config,
        &Refusal {
            mentions: &[&["api.listen"], &["loopback"]],
            never: &[],
        },
    )
    .await?;
    ensure!(
        !dir.path().join("state").exists(),
        "the refused run created its state dir"
    );
    // With a token it may listen on every interface.
    let owner = create_token(&config, "ops", "owner", None).await?;
    let mut fs = Fleetsync::run(&config)?;
    wait_api(&ApiClient::http(port), &owner).await?;
    fs.stop(Duration::from_secs(30)).await?;

    // HTTPS with the test's certificate; plain HTTP and an untrusting client get nothing.
    let certs = Certs::generate()?;
    let tls_port = dead_port()?;
    let tls = format!(
        "tls_cert = {:?}\ntls_key = {:?}\n",
        certs.server.cert.display().to_string(),
        certs.server.key.display().to_string()
    );
    let config = bare_config(dir.path(), &format!("127.0.0.1:{tls_port}"), &tls)?;
    let mut fs = Fleetsync::run(&config)?;
    let https = ApiClient::https(tls_port, &certs.ca);
    wait_api(&https, &owner).await?;
    let r = https.get("/api/v1/syncs", None).await?;
    ensure!(
        r.status == 401 && is_problem(&r),
        "no token over HTTPS: {r:?}"
    );
    let plain = ApiClient::http(tls_port)
        .get("/api/v1/health", Some(&owner))
        .await;
    ensure!(
        plain.as_ref().map_or(true, |r| r.status != 200),
        "plain HTTP answered on the TLS port: {plain:?}"
    );
    // The CLI over HTTPS: with the CA it reaches the API (which knows no sync s1 here), without
    // it it says what is missing.
    let config_s = config.to_str().context("config path")?;
    let ca = certs.ca.to_str().context("CA path")?;
    let env = [("FLEETSYNC_TOKEN", owner.as_str()), ("RUST_LOG", "off")];
    let out = fleetsync_cmd_with(
        &["sync", "pause", "--config", config_s, "s1", "--api-ca", ca],
        &env,
        Duration::from_secs(30),
    )
    .await?;
    check_refusal(
        &out,
        &Refusal {
            mentions: &[&["404"], &["no sync named"]],
            never: &[&owner],
        },
    )?;
    let out = fleetsync_cmd_with(
        &["sync", "pause", "--config", config_s, "s1"],
        &env,
        Duration::from_secs(30),
    )
    .await?;
    check_refusal(
        &out,
        &Refusal {
            mentions: &[&["--api-ca"]],
            never: &[&owner],
        },
    )?;
    let wrong = ApiClient::https(tls_port, &certs.wrong_ca)
        .get("/api/v1/health", Some(&owner))
        .await;
    ensure!(
        wrong.is_err(),
        "a client trusting another CA got an answer: {wrong:?}"
    );
    fs.stop(Duration::from_secs(30)).await?;

    // A key that does not match the certificate: refused in one line.
    let mismatched = format!(
        "tls_cert = {:?}\ntls_key = {:?}\n",
        certs.server.cert.display().to_string(),
        certs.client.key.display().to_string()
    );
    let config = bare_config(dir.path(), &format!("127.0.0.1:{tls_port}"), &mismatched)?;
    expect_refusal(
        &config,
        &Refusal {
            mentions: &[&["api.tls_key"]],
            never: &[],
        },
    )
    .await?;
    Ok(())
}

/// schemathesis (tests/api/schemathesis.sh, PyPI, in its own venv) against the API of a
/// `fleetsync run` with a live sync: no 5xx, and every answer as the document says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_schemathesis() -> Result<()> {
    let pair = Pair::start().await?;
    pair.src
        .exec("CREATE DATABASE app; CREATE TABLE app.items (id INT PRIMARY KEY, v VARCHAR(20)); INSERT INTO app.items VALUES (1, 'one')")
        .await?;
    let api_port = dead_port()?;
    let base = pair.config_listening(&["app\\..*"], dead_port()?)?;
    let text =
        std::fs::read_to_string(&base)? + &format!("\n[api]\nlisten = \"127.0.0.1:{api_port}\"\n");
    let config = Fleetsync::write_config(pair.dir.path(), &text)?;
    let owner = create_token(&config, "fuzz", "owner", None).await?;
    let mut fs = Fleetsync::run(&config)?;
    fs.wait_synced(&pair.src, &pair.dst, "app", SYNC_TIMEOUT)
        .await?;
    wait_api(&ApiClient::http(api_port), &owner).await?;
    let script = fleetsync_tests::repo_root().join("tests/api/schemathesis.sh");
    let out = tokio::process::Command::new("bash")
        .arg(&script)
        .arg(format!("http://127.0.0.1:{api_port}"))
        .arg("s1")
        .env("FLEETSYNC_TOKEN", &owner)
        .stdin(std::process::Stdio::null())
        .output();
    let out = tokio::time::timeout(Duration::from_secs(600), out)
        .await
        .context("schemathesis still running after 10 minutes")??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("generated") || l.contains("Seed:"))
        .map(str::trim)
        .collect();
    println!("schemathesis: {}", summary.join(" | "));
    ensure!(
        out.status.success(),
        "schemathesis failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        !fs.log_tail(200).contains("panicked"),
        "fleetsync panicked under schemathesis"
    );
    fs.ensure_running()?;
    fs.stop(Duration::from_secs(30)).await?;
    Ok(())
}
