//! The CLI's side of the API: one request to the running process's `[api] listen` (plain, or
//! HTTPS verified against `--api-ca`), for `fleetsync sync pause|resume|cancel`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use fleetsync_config::Config;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

/// How the CLI reaches the API (the global `--token` and `--api-ca`).
#[derive(Debug, Clone, Default)]
pub struct ApiArgs {
    /// API token (operator or above for sync control).
    pub token: Option<String>,
    /// PEM file of the CA that signed the API's certificate (with `[api] tls_cert`).
    pub api_ca: Option<PathBuf>,
}

/// `POST path` (no body) to the API of the process running with `config`: the status code
/// and the body.
pub async fn post(
    config: &Config,
    what: &str,
    path: &str,
    args: &ApiArgs,
) -> Result<(u16, String)> {
    let Some(api) = &config.api else {
        return Err(anyhow!("the config has no [api] section: `{what}` goes through the API of the running process (set [api] listen to a fixed port)"));
    };
    let mut addr: SocketAddr = api.addr()?;
    if addr.port() == 0 {
        return Err(anyhow!(
            "api.listen has port 0: set a fixed port so `{what}` can reach the running process"
        ));
    }
    let token = args.token.as_deref().filter(|t| !t.is_empty()).ok_or_else(|| {
        anyhow!("`{what}` needs an API token: --token or FLEETSYNC_TOKEN (see `fleetsync token create`)")
    })?;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| {
        anyhow!("cannot reach the running fleetsync's API at {addr} (api.listen): {e}")
    })?;
    let raw = if api.tls_cert.is_some() {
        let ca = args.api_ca.as_deref().ok_or_else(|| {
            anyhow!("api.tls_cert is set: give the CA that signed the API's certificate with --api-ca or FLEETSYNC_API_CA")
        })?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(ca)?));
        let tls = connector
            .connect(ServerName::IpAddress(addr.ip().into()), tcp)
            .await
            .map_err(|e| anyhow!("TLS to the API at {addr}: {e}"))?;
        exchange(tls, &request).await?
    } else {
        exchange(tcp, &request).await?
    };
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw.as_str(), ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("the API at {addr} sent no HTTP answer"))?;
    Ok((status, body.trim().to_string()))
}

pub fn client_config(ca: &Path) -> Result<ClientConfig> {
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow!("--api-ca {}: not a PEM certificate file: {e}", ca.display()))?;
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| anyhow!("--api-ca {}: {e}", ca.display()))?;
    }
    Ok(ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth())
}

pub async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(s: S, request: &str) -> Result<String> {
    let raw = exchange_bytes(s, request.as_bytes()).await?;
    Ok(String::from_utf8_lossy(&raw).into_owned())
}

/// [`exchange`] with a request and an answer in bytes (uploads, downloads).
pub async fn exchange_bytes<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    request: &[u8],
) -> Result<Vec<u8>> {
    s.write_all(request).await?;
    s.flush().await?;
    let mut raw = Vec::new();
    match s.read_to_end(&mut raw).await {
        Ok(_) => {}
        // A TLS peer closing without close_notify: the answer is whole (Connection: close).
        Err(e) if !raw.is_empty() && e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Err(e) => return Err(e.into()),
    }
    Ok(raw)
}
