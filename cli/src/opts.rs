//! Connection options from the configuration. Passwords go into `Opts` and nowhere else.

use std::time::Duration;

use anyhow::{anyhow, Result};
use fleetsync_config::{Config, Server};

pub fn server_opts(server: &Server) -> Result<mysql_async::Opts> {
    let opts = mysql_async::Opts::from_url(&server.url).map_err(|_| {
        anyhow!(
            "server {}: url {} is not a valid mysql:// URL",
            server.name,
            server.redacted_url()
        )
    })?;
    let mut b = mysql_async::OptsBuilder::from_opts(opts)
        .prefer_socket(false)
        .tcp_nodelay(true)
        .tcp_keepalive(Some(Duration::from_secs(30)))
        .wait_timeout(Some(28_800))
        .conn_ttl(Some(Duration::from_secs(3600)));
    if let Some(pw) = &server.password {
        b = b.pass(Some(pw.clone()));
    }
    Ok(mysql_async::Opts::from(b))
}

/// The configuration of a long-running command, with its `--metrics-listen` override.
pub fn load_config(path: &std::path::Path, metrics_listen: Option<&str>) -> Result<Config> {
    let mut config = Config::load(path)?;
    if let Some(listen) = metrics_listen {
        config.override_metrics_listen(listen).map_err(|_| {
            anyhow!("--metrics-listen {listen:?}: must be host:port, e.g. 127.0.0.1:9187")
        })?;
    }
    Ok(config)
}

pub fn opts_by_name(config: &Config, name: &str) -> Result<mysql_async::Opts> {
    let server = config
        .server(name)
        .ok_or_else(|| anyhow!("no server named {name:?}"))?;
    server_opts(server)
}
