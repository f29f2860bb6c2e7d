//! Connection options from the configuration: the one place a `[[servers]]` entry becomes
//! `mysql_async::Opts`, so every connection to a server (binlog stream, snapshot, applies,
//! tasks) gets the same TLS settings. Passwords go into `Opts` and nowhere else.
//!
//! TLS (`[[servers]] tls`, as MySQL's `--ssl-mode`):
//!
//! | mode | encrypted | certificate checked |
//! |---|---|---|
//! | `disabled` | no | - |
//! | `preferred` | when the server offers TLS (see [`load_config`]) | no |
//! | `required` | yes, or no connection | no |
//! | `verify_ca` | yes | chains to `tls_ca` (any host name) |
//! | `verify_identity` | yes | chains to `tls_ca` and names the URL's host |
//!
//! Only `tls_ca` is trusted for verification, never the built-in web roots: a server
//! certificate from a public CA for someone else's name must not pass `verify_ca`.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{anyhow, Result};
use fleetsync_config::{Config, Server, TlsMode};

/// How long the `preferred` probe waits for a server before assuming it offers TLS.
const PREFERRED_PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Servers with `tls = "preferred"` found at start to offer no TLS: connected in plain.
static PREFERRED_WITHOUT_TLS: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

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
        .conn_ttl(Some(Duration::from_secs(3600)))
        .ssl_opts(ssl_opts(server, plain_fallback(server)));
    if let Some(pw) = &server.password {
        b = b.pass(Some(pw.clone()));
    }
    Ok(mysql_async::Opts::from(b))
}

/// The TLS options of `server`'s mode (`None`: plain). `preferred` is TLS unless
/// `plain_fallback`.
fn ssl_opts(server: &Server, plain_fallback: bool) -> Option<mysql_async::SslOpts> {
    let unverified = || mysql_async::SslOpts::default().with_danger_accept_invalid_certs(true);
    let verified = || {
        mysql_async::SslOpts::default()
            .with_disable_built_in_roots(true)
            .with_root_certs(server.tls_ca.iter().cloned().map(Into::into).collect())
    };
    let ssl = match server.tls {
        TlsMode::Disabled => return None,
        TlsMode::Preferred if plain_fallback => return None,
        TlsMode::Preferred | TlsMode::Required => unverified(),
        TlsMode::VerifyCa => verified().with_danger_skip_domain_validation(true),
        TlsMode::VerifyIdentity => verified(),
    };
    let identity = match (&server.tls_cert, &server.tls_key) {
        (Some(cert), Some(key)) => Some(mysql_async::ClientIdentity::new(
            cert.clone().into(),
            key.clone().into(),
        )),
        _ => None,
    };
    Some(ssl.with_client_identity(identity))
}

fn plain_fallback(server: &Server) -> bool {
    server.tls == TlsMode::Preferred
        && PREFERRED_WITHOUT_TLS
            .lock()
            .map(|set| set.contains(&server.name))
            .unwrap_or(false)
}

/// `--config` of a command that also runs with `--remote` (where it is not needed).
pub fn need_config(config: &Option<std::path::PathBuf>) -> Result<&Path> {
    config
        .as_deref()
        .ok_or_else(|| anyhow!("--config (or FLEETSYNC_CONFIG) is required (or run against a coordinator with --remote URL)"))
}

pub fn opts_by_name(config: &Config, name: &str) -> Result<mysql_async::Opts> {
    let server = config
        .server(name)
        .ok_or_else(|| anyhow!("no server named {name:?}"))?;
    server_opts(server)
}

/// [`Config::load`], then the `tls = "preferred"` decision for each such server: one probe
/// connection with TLS; a server that answers that it has no TLS is connected in plain for
/// the rest of the process, any other outcome (TLS works, or the server is unreachable or
/// refuses the login) keeps TLS, and the real connection reports its own error. Decided once
/// per process, so a server that gains or loses TLS is seen at the next start.
pub async fn load_config(path: &Path) -> Result<Config> {
    let config = Config::load(path)?;
    let probes = config
        .servers
        .iter()
        .filter(|s| s.tls == TlsMode::Preferred)
        .map(probe_preferred);
    for (name, offers_tls) in futures_util::future::join_all(probes).await {
        if !offers_tls {
            if let Ok(mut set) = PREFERRED_WITHOUT_TLS.lock() {
                set.insert(name);
            }
        }
    }
    Ok(config)
}

/// `(server name, whether to use TLS)` for a `preferred` server.
async fn probe_preferred(server: &Server) -> (String, bool) {
    let name = server.name.clone();
    let Ok(opts) = server_opts(server) else {
        return (name, true);
    };
    let attempt = tokio::time::timeout(PREFERRED_PROBE_TIMEOUT, mysql_async::Conn::new(opts));
    match attempt.await {
        Ok(Ok(conn)) => {
            let _ = conn.disconnect().await;
            (name, true)
        }
        Ok(Err(mysql_async::Error::Driver(
            mysql_async::DriverError::NoClientSslFlagFromServer,
        ))) => {
            tracing::warn!(server = %name, "tls = \"preferred\": the server offers no TLS, connecting in plain");
            (name, false)
        }
        Ok(Err(_)) | Err(_) => (name, true),
    }
}

/// One line per server whose connections are not verified (for `fleetsync check`).
pub fn tls_warnings(config: &Config) -> Vec<String> {
    config
        .servers
        .iter()
        .filter_map(|s| {
            let what = match s.tls {
                TlsMode::Disabled => "connections are not encrypted",
                TlsMode::Preferred if plain_fallback(s) => {
                    "the server offers no TLS: connections are not encrypted"
                }
                TlsMode::Preferred | TlsMode::Required => {
                    "the server's certificate is not verified (set verify_ca or verify_identity and tls_ca)"
                }
                TlsMode::VerifyCa | TlsMode::VerifyIdentity => return None,
            };
            Some(format!("server {}: tls = \"{}\": {what}", s.name, s.tls))
        })
        .collect()
}

/// The configuration of a long-running command ([`load_config`]), with its
/// `--metrics-listen` override.
pub async fn load_serving(path: &Path, metrics_listen: Option<&str>) -> Result<Config> {
    let mut config = load_config(path).await?;
    if let Some(listen) = metrics_listen {
        config.override_metrics_listen(listen).map_err(|_| {
            anyhow!("--metrics-listen {listen:?}: must be host:port, e.g. 127.0.0.1:9187")
        })?;
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(extra: &str) -> Server {
        let text = format!("[[servers]]\nname = \"a\"\nurl = \"mysql://u:pw@h:1\"\n{extra}");
        let mut c = Config::parse(&text).expect("parses");
        c.servers.remove(0)
    }

    #[test]
    fn modes_map_to_driver_options() {
        assert!(ssl_opts(&server(""), false).is_none());
        let pref = server("tls = \"preferred\"");
        assert!(ssl_opts(&pref, true).is_none());
        let o = ssl_opts(&pref, false).expect("TLS");
        assert!(o.accept_invalid_certs());
        let o = ssl_opts(&server("tls = \"required\""), false).expect("TLS");
        assert!(o.accept_invalid_certs() && o.client_identity().is_none());
        let ca = "tls_ca = \"/ca.pem\"\ntls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"";
        let o = ssl_opts(&server(&format!("tls = \"verify_ca\"\n{ca}")), false).expect("TLS");
        assert!(!o.accept_invalid_certs() && o.skip_domain_validation());
        assert!(o.disable_built_in_roots() && o.root_certs().len() == 1);
        assert!(o.client_identity().is_some());
        let o = ssl_opts(&server(&format!("tls = \"verify_identity\"\n{ca}")), false).expect("TLS");
        assert!(!o.accept_invalid_certs() && !o.skip_domain_validation());
        assert!(o.disable_built_in_roots());
    }
}
