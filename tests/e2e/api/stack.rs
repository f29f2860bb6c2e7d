//! Starting a `fleetsync run` with `[api]` for the API tests: tokens made with `fleetsync
//! token create`, the stack of `pair`'s sync, the wait for the API to answer.

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use fleetsync_tests::api::ApiClient;
use fleetsync_tests::{fleetsync_cmd_with, wait_until, Fleetsync};

/// Time for the API to answer after `fleetsync run` starts.
const API_READY: Duration = Duration::from_secs(60);

/// `fleetsync token create`: the token it prints (stdout, one line).
pub async fn create_token(
    config: &Path,
    name: &str,
    role: &str,
    expires_days: Option<u32>,
) -> Result<String> {
    let config = config.to_str().context("config path is not UTF-8")?;
    let days = expires_days.map(|d| d.to_string());
    let mut args = vec![
        "token", "create", "--config", config, "--name", name, "--role", role,
    ];
    if let Some(d) = &days {
        args.extend(["--expires-days", d.as_str()]);
    }
    let out = fleetsync_cmd_with(&args, &[], Duration::from_secs(30)).await?;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    ensure!(
        out.status.success() && stdout.starts_with("fst_") && !stdout.contains('\n'),
        "token create failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(stdout)
}

/// A `fleetsync run` with `[api]` for the API tests: `pair`'s sync of `app.*`.
pub struct Stack {
    pub config: std::path::PathBuf,
    pub fs: Fleetsync,
    pub api: ApiClient,
    /// The `[api] listen` port (the dashboard is at `http://127.0.0.1:{api_port}/`).
    pub api_port: u16,
    /// `pair.dir/backups`, what `{backup_dir}` in the sections stands for.
    pub backup_dir: std::path::PathBuf,
    /// The tokens asked for, in order.
    pub tokens: Vec<String>,
}

/// Starts [`Stack`]: `sections` (TOML after the sync; `{backup_dir}` is replaced by the
/// quoted backup directory) and `[api]` with `api_lines`; the `tokens` (name, role) are made
/// before the start; returns once the target is synced and the API answers.
pub async fn start_stack(
    pair: &crate::support::Pair,
    sections: &str,
    api_lines: &str,
    tokens: &[(&str, &str)],
) -> Result<Stack> {
    let (metrics_port, api_port) = (crate::support::dead_port()?, crate::support::dead_port()?);
    let base = pair.config_listening(&["app\\..*"], metrics_port)?;
    let backup_dir = pair.dir.path().join("backups");
    let sections = sections.replace(
        "{backup_dir}",
        &format!("{:?}", backup_dir.display().to_string()),
    );
    let text = std::fs::read_to_string(&base)?
        + "\n"
        + &sections
        + &format!("\n[api]\nlisten = \"127.0.0.1:{api_port}\"\n{api_lines}");
    let config = Fleetsync::write_config(pair.dir.path(), &text)?;
    let mut made = Vec::new();
    for (name, role) in tokens {
        made.push(create_token(&config, name, role, None).await?);
    }
    let mut fs = Fleetsync::run(&config)?;
    fs.wait_synced(&pair.src, &pair.dst, "app", crate::support::SYNC_TIMEOUT)
        .await?;
    let api = ApiClient::http(api_port);
    let any = made.first().context("a stack needs a token")?;
    wait_api(&api, any).await?;
    Ok(Stack {
        config,
        fs,
        api,
        api_port,
        backup_dir,
        tokens: made,
    })
}

pub(super) async fn wait_api(api: &ApiClient, token: &str) -> Result<()> {
    wait_until(API_READY, "the API to answer", || async {
        let r = api.get("/api/v1/health", Some(token)).await?;
        ensure!(r.status == 200, "{} {}", r.status, r.body);
        Ok(())
    })
    .await
}
