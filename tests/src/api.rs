//! A small HTTP/1.0 client for fleetsync's API (`/api/v1`), plain or over TLS (trusting only
//! the CA file given), with a bearer token: enough for the API tests, no client library.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

/// One answer: status, `content-type` and body.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

impl ApiResponse {
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_str(&self.body)
            .with_context(|| format!("not JSON ({}): {}", self.status, self.body))
    }
}

/// The API of a fleetsync on 127.0.0.1:`port`.
#[derive(Debug, Clone)]
pub struct ApiClient {
    pub port: u16,
    /// HTTPS, trusting only this CA.
    pub ca: Option<PathBuf>,
}

impl ApiClient {
    pub fn http(port: u16) -> ApiClient {
        ApiClient { port, ca: None }
    }

    pub fn https(port: u16, ca: &Path) -> ApiClient {
        ApiClient {
            port,
            ca: Some(ca.to_path_buf()),
        }
    }

    /// `METHOD path` with `token` (when given) and a JSON `body` (when not empty).
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> Result<ApiResponse> {
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let req = format!(
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n{auth}Content-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await?;
        let raw = match &self.ca {
            None => exchange(tcp, &req).await?,
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_file_iter(ca)
                    .map_err(|e| anyhow!("{}: {e}", ca.display()))?
                {
                    roots.add(cert.map_err(|e| anyhow!("{}: {e}", ca.display()))?)?;
                }
                let config = ClientConfig::builder()
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
                let name = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
                let tls = connector.connect(name, tcp).await?;
                exchange(tls, &req).await?
            }
        };
        parse(&raw)
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Result<ApiResponse> {
        self.request("GET", path, token, "").await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &str) -> Result<ApiResponse> {
        self.request("POST", path, token, body).await
    }
}

/// An answer whose body is bytes (downloads).
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl ApiClient {
    /// `METHOD path` on plain HTTP with a byte `body` of `content_type`; the body as bytes.
    pub async fn request_raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: &[u8],
    ) -> Result<RawResponse> {
        anyhow::ensure!(self.ca.is_none(), "request_raw is plain HTTP only");
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n{auth}Content-Type: {content_type}\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        );
        let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await?;
        tcp.write_all(head.as_bytes()).await?;
        tcp.write_all(body).await?;
        tcp.flush().await?;
        let mut raw = Vec::new();
        tcp.read_to_end(&mut raw).await?;
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .with_context(|| format!("no HTTP response: {:?}", String::from_utf8_lossy(&raw)))?;
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let parsed = parse(&format!("{head}\r\n\r\n"))?;
        Ok(RawResponse {
            status: parsed.status,
            content_type: parsed.content_type,
            body: raw[split + 4..].to_vec(),
        })
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, req: &str) -> Result<String> {
    s.write_all(req.as_bytes()).await?;
    s.flush().await?;
    let mut raw = Vec::new();
    // A TLS peer that closes without close_notify is an error for rustls; the answer is whole.
    match s.read_to_end(&mut raw).await {
        Ok(_) => {}
        Err(e) if !raw.is_empty() && e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Err(e) => return Err(e.into()),
    }
    Ok(String::from_utf8_lossy(&raw).into_owned())
}

fn parse(raw: &str) -> Result<ApiResponse> {
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .with_context(|| format!("no HTTP response: {raw:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("no HTTP status line: {head:?}"))?;
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    Ok(ApiResponse {
        status,
        content_type,
        body: body.to_string(),
    })
}

/// `GET path` on plain HTTP, reading for at most `max` (for the endless `/api/v1/events`
/// stream): the answer so far. Stops early at end of stream or once `enough(body)` holds.
pub async fn read_stream(
    port: u16,
    path: &str,
    token: Option<&str>,
    max: std::time::Duration,
    enough: impl Fn(&str) -> bool,
) -> Result<ApiResponse> {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n{auth}\r\n");
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    tcp.write_all(req.as_bytes()).await?;
    let deadline = tokio::time::Instant::now() + max;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Err(_) => break,
            Ok(r) => r?,
        };
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw);
        if let Some((_, body)) = text.split_once("\r\n\r\n") {
            if enough(body) {
                break;
            }
        }
    }
    parse(&String::from_utf8_lossy(&raw))
}

/// The `event:`/`data:` pairs of a Server-Sent Events body (data parsed as JSON).
pub fn sse_events(body: &str) -> Vec<(String, serde_json::Value)> {
    body.split("\n\n")
        .filter_map(|block| {
            let mut event = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(e) = line.strip_prefix("event:") {
                    event = Some(e.trim().to_string());
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim_start());
                }
            }
            Some((event?, serde_json::from_str(&data).ok()?))
        })
        .collect()
}
