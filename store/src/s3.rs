//! The S3 backend (any S3-compatible server), through object_store's S3 client.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fleetsync_config::BackupConfig;
use futures_util::stream::{self, BoxStream, StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as ObjectPath;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, RetryConfig};
use tokio::io::AsyncReadExt;

use crate::{
    check_key, marked_key, marker_key, Credentials, Entry, StoreError, MULTIPART_MARKER,
    MULTIPART_THRESHOLD, PARTS_IN_FLIGHT, PART_BYTES,
};

/// How long one request may be retried (server errors, lost connections) before the
/// operation fails: long enough for a server restart, short enough that a dead server is a
/// visible failure rather than a hang.
const RETRY_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_RETRIES: usize = 5;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// One request (a part of at most [`PART_BYTES`], or a whole small object).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone)]
pub(crate) struct S3 {
    client: Arc<AmazonS3>,
    bucket: String,
    prefix: String,
    secrets: Arc<Vec<String>>,
}

impl S3 {
    pub(crate) fn new(
        bucket: &str,
        prefix: &str,
        cfg: &BackupConfig,
        creds: Credentials,
        location: String,
    ) -> Result<S3, StoreError> {
        let env = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
        let region = cfg
            .s3_region
            .clone()
            .or_else(|| env("AWS_REGION"))
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".into());
        // reqwest is built without a provider of its own and needs a process default: a
        // rustls config builder installs the one compiled in (ring, the tree's only one).
        let _ = rustls::ClientConfig::builder();
        let secrets = Arc::new(creds.secrets());
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(region)
            .with_access_key_id(creds.access_key_id)
            .with_secret_access_key(creds.secret_access_key)
            .with_virtual_hosted_style_request(!cfg.s3_path_style)
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(200),
                    max_backoff: Duration::from_secs(5),
                    base: 2.0,
                },
                max_retries: MAX_RETRIES,
                retry_timeout: RETRY_TIMEOUT,
            })
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(true)
                    .with_connect_timeout(CONNECT_TIMEOUT)
                    .with_timeout(REQUEST_TIMEOUT),
            );
        if let Some(t) = creds.session_token {
            b = b.with_token(t);
        }
        if let Some(e) = cfg.s3_endpoint.clone().or_else(|| env("AWS_ENDPOINT_URL")) {
            b = b.with_endpoint(e);
        }
        let client = b.build().map_err(|e| StoreError::Failed {
            location: location.clone(),
            detail: scrub(&secrets, &e.to_string()),
        })?;
        Ok(S3 {
            client: Arc::new(client),
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            secrets,
        })
    }

    pub(crate) fn child(&self, sub: &str) -> S3 {
        let mut s = self.clone();
        s.prefix = crate::join(&[&self.prefix, sub]);
        s
    }

    pub(crate) fn bucket(&self) -> &str {
        &self.bucket
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    fn location(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    fn path(&self, key: &str) -> Result<ObjectPath, StoreError> {
        check_key(key).map_err(|e| StoreError::Failed {
            location: self.location(),
            detail: e,
        })?;
        Ok(ObjectPath::from(crate::join(&[&self.prefix, key]).as_str()))
    }

    fn dir_path(&self, prefix: &str) -> Result<Option<ObjectPath>, StoreError> {
        let prefix = prefix.trim_matches('/');
        if prefix.is_empty() && self.prefix.is_empty() {
            return Ok(None);
        }
        if !prefix.is_empty() {
            check_key(prefix).map_err(|e| StoreError::Failed {
                location: self.location(),
                detail: e,
            })?;
        }
        Ok(Some(ObjectPath::from(
            crate::join(&[&self.prefix, prefix]).as_str(),
        )))
    }

    /// The key of `p` relative to this store's prefix.
    fn rel(&self, p: &ObjectPath) -> String {
        let s = p.as_ref();
        if self.prefix.is_empty() {
            return s.to_string();
        }
        s.strip_prefix(&self.prefix)
            .map(|r| r.trim_start_matches('/').to_string())
            .unwrap_or_else(|| s.to_string())
    }

    /// One line for the operator: classified, scrubbed of credentials.
    fn err(&self, key: &str, e: object_store::Error) -> StoreError {
        let text = scrub(&self.secrets, &e.to_string());
        let location = self.location();
        if text.contains("NoSuchBucket") {
            return StoreError::NoBucket { location };
        }
        let code = [
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "AccessDenied",
        ]
        .into_iter()
        .find(|c| text.contains(c));
        match (&e, code) {
            (object_store::Error::NotFound { .. }, None) => StoreError::NotFound {
                location,
                key: key.to_string(),
            },
            (
                object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. },
                c,
            ) => StoreError::Denied {
                location,
                detail: c.unwrap_or("denied").to_string(),
            },
            (_, Some(c)) => StoreError::Denied {
                location,
                detail: c.to_string(),
            },
            _ => StoreError::Failed {
                location,
                detail: if key.is_empty() {
                    one_line(&text)
                } else {
                    format!("{key}: {}", one_line(&text))
                },
            },
        }
    }

    pub(crate) async fn check(&self) -> Result<(), StoreError> {
        let dir = self.dir_path("")?;
        self.client
            .list_with_delimiter(dir.as_ref())
            .await
            .map(|_| ())
            .map_err(|e| self.err("", e))
    }

    pub(crate) async fn put(&self, key: &str, bytes: Bytes) -> Result<(), StoreError> {
        let path = self.path(key)?;
        if bytes.len() <= MULTIPART_THRESHOLD {
            return self.put_small(key, &path, bytes).await;
        }
        let parts: Vec<Bytes> = (0..bytes.len())
            .step_by(PART_BYTES)
            .map(|at| bytes.slice(at..(at + PART_BYTES).min(bytes.len())))
            .collect();
        self.multipart(key, &path, stream::iter(parts.into_iter().map(Ok)).boxed())
            .await
    }

    async fn put_small(
        &self,
        key: &str,
        path: &ObjectPath,
        bytes: Bytes,
    ) -> Result<(), StoreError> {
        self.client
            .put(path, bytes.into())
            .await
            .map(|_| ())
            .map_err(|e| self.err(key, e))
    }

    pub(crate) async fn put_file(&self, key: &str, src: &Path) -> Result<(), StoreError> {
        let path = self.path(key)?;
        let local = |e: std::io::Error| StoreError::Failed {
            location: self.location(),
            detail: format!("{key}: reading {}: {e}", src.display()),
        };
        let mut file = tokio::fs::File::open(src).await.map_err(local)?;
        let len = file.metadata().await.map_err(local)?.len();
        if len <= MULTIPART_THRESHOLD as u64 {
            let mut buf = Vec::with_capacity(len as usize);
            file.read_to_end(&mut buf).await.map_err(local)?;
            return self.put(key, Bytes::from(buf)).await;
        }
        let location = self.location();
        let (k, s) = (key.to_string(), src.display().to_string());
        let parts = stream::unfold(Some(file), move |f| {
            let (location, k, s) = (location.clone(), k.clone(), s.clone());
            async move {
                let mut f = f?;
                let mut buf = Vec::with_capacity(PART_BYTES);
                let mut chunk = (&mut f).take(PART_BYTES as u64);
                match chunk.read_to_end(&mut buf).await {
                    Ok(0) => None,
                    Ok(_) => Some((Ok(Bytes::from(buf)), Some(f))),
                    Err(e) => Some((
                        Err(StoreError::Failed {
                            location,
                            detail: format!("{k}: reading {s}: {e}"),
                        }),
                        None,
                    )),
                }
            }
        })
        .boxed();
        self.multipart(key, &path, parts).await
    }

    /// A multipart upload of `parts` (in order), recorded by a marker while it runs and
    /// aborted when any part fails.
    async fn multipart(
        &self,
        key: &str,
        path: &ObjectPath,
        parts: BoxStream<'_, Result<Bytes, StoreError>>,
    ) -> Result<(), StoreError> {
        let id = self
            .client
            .create_multipart(path)
            .await
            .map_err(|e| self.err(key, e))?;
        let marker = marker_key(key);
        let id_ref = &id;
        let run = async move {
            let marker = marker_key(key);
            self.put_small(
                &marker,
                &self.path(&marker)?,
                Bytes::from(id_ref.clone().into_bytes()),
            )
            .await?;
            let ids: Vec<PartId> = parts
                .enumerate()
                .map(|(i, part)| async move {
                    let part = part?;
                    self.client
                        .put_part(path, id_ref, i, part.into())
                        .await
                        .map_err(|e| self.err(key, e))
                })
                .buffered(PARTS_IN_FLIGHT)
                .try_collect()
                .await?;
            self.client
                .complete_multipart(path, id_ref, ids)
                .await
                .map_err(|e| self.err(key, e))
        };
        match run.await {
            Ok(_) => self.delete(&marker).await,
            Err(e) => {
                if let Err(a) = self.client.abort_multipart(path, &id).await {
                    tracing::warn!(key, error = %self.err(key, a), "could not abort a multipart upload; the next cleanup retries");
                } else {
                    let _ = self.delete(&marker).await;
                }
                Err(e)
            }
        }
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        let path = self.path(key)?;
        let r = self.client.get(&path).await.map_err(|e| self.err(key, e))?;
        r.bytes().await.map_err(|e| self.err(key, e))
    }

    pub(crate) async fn get_stream(
        &self,
        key: &str,
    ) -> Result<BoxStream<'static, Result<Bytes, StoreError>>, StoreError> {
        let path = self.path(key)?;
        let r = self.client.get(&path).await.map_err(|e| self.err(key, e))?;
        let (me, key) = (self.clone(), key.to_string());
        Ok(r.into_stream().map_err(move |e| me.err(&key, e)).boxed())
    }

    pub(crate) async fn size(&self, key: &str) -> Result<Option<u64>, StoreError> {
        let path = self.path(key)?;
        match self.client.head(&path).await {
            Ok(m) => Ok(Some(m.size)),
            Err(e) => match self.err(key, e) {
                StoreError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    pub(crate) async fn list(&self, prefix: &str) -> Result<Vec<Entry>, StoreError> {
        let dir = self.dir_path(prefix)?;
        let metas: Vec<_> = self
            .client
            .list(dir.as_ref())
            .try_collect()
            .await
            .map_err(|e| self.err(prefix, e))?;
        Ok(metas
            .into_iter()
            .map(|m| Entry {
                key: self.rel(&m.location),
                size: m.size,
            })
            .collect())
    }

    pub(crate) async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let dir = self.dir_path(prefix)?;
        let r = self
            .client
            .list_with_delimiter(dir.as_ref())
            .await
            .map_err(|e| self.err(prefix, e))?;
        Ok(r.common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect())
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        match self.client.delete(&path).await {
            Ok(()) => Ok(()),
            Err(e) => match self.err(key, e) {
                StoreError::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }

    pub(crate) async fn delete_prefix(&self, prefix: &str) -> Result<u64, StoreError> {
        let entries = self.list(prefix).await?;
        // Unfinished uploads first: their parts are invisible to a listing.
        for m in entries.iter().filter(|e| is_marker(&e.key)) {
            let Some(target) = marked_key(&m.key) else {
                continue;
            };
            let id = String::from_utf8_lossy(&self.get(&m.key).await?).into_owned();
            let path = self.path(&target)?;
            match self.client.abort_multipart(&path, &id).await {
                Ok(()) => {}
                Err(e) => match self.err(&target, e) {
                    StoreError::NotFound { .. } => {}
                    other => return Err(other),
                },
            }
        }
        let n = entries.len() as u64;
        stream::iter(entries)
            .map(|e| async move { self.delete(&e.key).await })
            .buffer_unordered(8)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(n)
    }
}

impl S3 {
    /// Aborts the upload every marker under `prefix` records and deletes the markers (the
    /// objects are left alone). Returns the number of markers.
    pub(crate) async fn abort_dangling(&self, prefix: &str) -> Result<u64, StoreError> {
        let entries = self.list(prefix).await?;
        let mut n = 0;
        for m in entries.iter().filter(|e| is_marker(&e.key)) {
            let Some(target) = marked_key(&m.key) else {
                continue;
            };
            let id = String::from_utf8_lossy(&self.get(&m.key).await?).into_owned();
            let path = self.path(&target)?;
            if let Err(e) = self.client.abort_multipart(&path, &id).await {
                match self.err(&target, e) {
                    StoreError::NotFound { .. } => {}
                    other => return Err(other),
                }
            }
            self.delete(&m.key).await?;
            n += 1;
        }
        Ok(n)
    }
}

fn is_marker(key: &str) -> bool {
    key.rsplit('/')
        .next()
        .is_some_and(|n| n.starts_with(MULTIPART_MARKER))
}

/// `text` with every credential value replaced by `***`.
pub(crate) fn scrub(secrets: &[String], text: &str) -> String {
    let mut t = text.to_string();
    for s in secrets {
        t = t.replace(s.as_str(), "***");
    }
    t
}

fn one_line(text: &str) -> String {
    let t = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if t.len() > 400 {
        let mut end = 400;
        while !t.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &t[..end])
    } else {
        t
    }
}
