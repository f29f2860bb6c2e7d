//! The audit log: one entry per mutating call and per denied call (401, 403), written before
//! the answer leaves, as a JSON line appended to `STATE_DIR/api/audit.jsonl` (owner-only,
//! flushed to disk per entry) and as one structured log line (target `audit`).
//!
//! Rotation: when the file passes [`ROTATE_BYTES`] it becomes `audit.jsonl.1` (older ones
//! shift up to `.{KEEP_ROTATED}`, the oldest is dropped), so the log is bounded on disk at
//! about `ROTATE_BYTES * (KEEP_ROTATED + 1)`. `GET /api/v1/audit` reads the current file and
//! the rotated ones, newest first.
//!
//! With the Kafka bus (`fleetsync coordinator`) entries go to the topic `{topic_prefix}.audit`
//! instead, and `GET /api/v1/audit` reads what this replica followed of it (the last
//! [`super::kstate::AUDIT_KEPT`] entries, whichever replica wrote them; see [`super::kstate`]).
//!
//! Parameters are stored with secrets redacted ([`redact`]): any key that names a password,
//! secret, token or key has its value replaced by `"***"`.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use fleetsync_agent::owner_only;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::kstate::{KafkaState, StateError};

/// Size at which the audit file is rotated: about 50k entries.
pub const ROTATE_BYTES: u64 = 10 * 1024 * 1024;
/// Rotated files kept.
pub const KEEP_ROTATED: usize = 5;
/// Entries `GET /api/v1/audit` returns when no `limit` is given.
pub const DEFAULT_LIMIT: usize = 100;
/// Most entries one `GET /api/v1/audit` returns.
pub const MAX_LIMIT: usize = 1000;

/// One audit entry.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    /// The token's name (`null` when no valid token was presented).
    pub token: Option<String>,
    pub role: Option<String>,
    /// `ip:port` of the client.
    pub client: String,
    pub method: String,
    /// The operation (the OpenAPI `operationId`), or the path for an unknown route.
    pub action: String,
    /// The resource acted on: the request path.
    pub resource: String,
    /// Query and JSON body parameters, secrets redacted.
    #[schema(value_type = Object)]
    pub parameters: Value,
    /// `ok`, `failed` (4xx/5xx from the handler), `dry_run`, `unauthenticated` (401) or
    /// `denied` (403).
    pub outcome: String,
    pub status: u16,
    /// The job started by the call (none yet: jobs are a later slice).
    pub job_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("audit log: {0}")]
    Kafka(#[from] StateError),
}

pub struct AuditLog {
    dir: PathBuf,
    lock: Mutex<()>,
    /// [`ROTATE_BYTES`], smaller in tests.
    rotate_bytes: u64,
    /// The Kafka topic (instead of the files).
    kafka: Option<Arc<KafkaState>>,
}

/// Filters of `GET /api/v1/audit`.
#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    pub token: Option<String>,
    pub action: Option<String>,
    pub outcome: Option<String>,
    /// RFC 3339: entries at or after this time.
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// RFC 3339: entries before this time.
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    pub limit: usize,
}

impl AuditLog {
    /// The log under `STATE_DIR/api/` (created owner-only).
    pub fn open(state_dir: &Path) -> Result<AuditLog, AuditError> {
        let dir = state_dir.join("api");
        owner_only::private_dir(&dir).map_err(|source| AuditError::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(AuditLog {
            dir,
            lock: Mutex::new(()),
            rotate_bytes: ROTATE_BYTES,
            kafka: None,
        })
    }

    /// The log on the Kafka topic of `state`.
    pub fn kafka(state: Arc<KafkaState>) -> AuditLog {
        AuditLog {
            dir: PathBuf::new(),
            lock: Mutex::new(()),
            rotate_bytes: ROTATE_BYTES,
            kafka: Some(state),
        }
    }

    fn file(&self, n: usize) -> PathBuf {
        if n == 0 {
            self.dir.join("audit.jsonl")
        } else {
            self.dir.join(format!("audit.jsonl.{n}"))
        }
    }

    /// Appends `entry` (and logs it). A failure to write is returned: the caller turns it
    /// into a 500 rather than act unaudited. Blocking: call it off the async threads (on the
    /// Kafka topic it waits for the brokers' acknowledgement on the current runtime).
    pub fn record(&self, entry: &AuditEntry) -> Result<(), AuditError> {
        tracing::info!(
            target: "audit",
            token = entry.token.as_deref().unwrap_or("-"),
            role = entry.role.as_deref().unwrap_or("-"),
            client = %entry.client,
            method = %entry.method,
            action = %entry.action,
            resource = %entry.resource,
            parameters = %entry.parameters,
            outcome = %entry.outcome,
            status = entry.status,
            "audit"
        );
        if let Some(k) = &self.kafka {
            return Ok(tokio::runtime::Handle::current().block_on(k.append_audit(entry))?);
        }
        let mut line = serde_json::to_string(entry).unwrap_or_default();
        line.push('\n');
        let _guard = self.lock.lock();
        let path = self.file(0);
        let err = |source| AuditError::Io {
            path: path.clone(),
            source,
        };
        if std::fs::metadata(&path).is_ok_and(|m| m.len() >= self.rotate_bytes) {
            self.rotate().map_err(err)?;
        }
        let mut f = owner_only::options()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(err)?;
        f.write_all(line.as_bytes()).map_err(err)?;
        f.sync_data().map_err(err)
    }

    fn rotate(&self) -> std::io::Result<()> {
        let _ = std::fs::remove_file(self.file(KEEP_ROTATED));
        for n in (0..KEEP_ROTATED).rev() {
            match std::fs::rename(self.file(n), self.file(n + 1)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// Entries matching `filter`, newest first, at most `filter.limit`.
    pub fn query(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, AuditError> {
        if let Some(k) = &self.kafka {
            return Ok(k.audit_newest_first(|e| filter.matches(e), filter.limit));
        }
        let mut out = Vec::new();
        for n in 0..=KEEP_ROTATED {
            let path = self.file(n);
            let f = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(AuditError::Io { path, source }),
            };
            let mut entries: Vec<AuditEntry> = std::io::BufReader::new(f)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| serde_json::from_str(&l).ok())
                .filter(|e| filter.matches(e))
                .collect();
            entries.reverse();
            out.extend(entries);
            if out.len() >= filter.limit {
                break;
            }
        }
        out.truncate(filter.limit);
        Ok(out)
    }
}

impl AuditFilter {
    fn matches(&self, e: &AuditEntry) -> bool {
        self.token
            .as_ref()
            .is_none_or(|t| e.token.as_ref() == Some(t))
            && self.action.as_ref().is_none_or(|a| &e.action == a)
            && self.outcome.as_ref().is_none_or(|o| &e.outcome == o)
            && self
                .since
                .is_none_or(|s| chrono::DateTime::parse_from_rfc3339(&e.time).is_ok_and(|t| t >= s))
            && self
                .until
                .is_none_or(|u| chrono::DateTime::parse_from_rfc3339(&e.time).is_ok_and(|t| t < u))
    }
}

/// Whether a parameter named `key` holds a secret.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "password",
        "passwd",
        "secret",
        "token",
        "key",
        "credential",
        "authorization",
    ]
    .iter()
    .any(|w| k.contains(w))
}

/// `value` with every secret-named field's value replaced by `"***"` (recursively).
pub fn redact(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    if is_secret_key(&k) {
                        (k, Value::String("***".into()))
                    } else {
                        (k, redact(v))
                    }
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(redact).collect()),
        Value::String(s) => Value::String(fleetsync_config::redact_url(&s)),
        v => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_redacted() {
        let v = redact(json!({
            "name": "a",
            "password": "pw1",
            "nested": {"sasl_password": "pw2", "url": "mysql://u:pw3@h:1", "list": [{"api_token": "t"}]},
        }));
        let text = v.to_string();
        for secret in ["pw1", "pw2", "pw3", "\"t\""] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(v["nested"]["url"], "mysql://u:***@h:1");
        assert_eq!(v["name"], "a");
    }

    fn entry(i: usize) -> AuditEntry {
        AuditEntry {
            time: chrono::Utc::now().to_rfc3339(),
            token: Some(format!("t{}", i % 2)),
            role: Some("owner".into()),
            client: "127.0.0.1:1".into(),
            method: "POST".into(),
            action: "pause_sync".into(),
            resource: "/api/v1/syncs/s1/pause".into(),
            parameters: json!({"i": i}),
            outcome: "ok".into(),
            status: 200,
            job_id: None,
        }
    }

    #[test]
    fn appends_queries_newest_first_and_rotates() {
        let dir = std::env::temp_dir().join(format!("fleetsync-audit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let log = AuditLog::open(&dir).expect("open");
        for i in 0..5 {
            log.record(&entry(i)).expect("record");
        }
        log.rotate().expect("rotate");
        for i in 5..8 {
            log.record(&entry(i)).expect("record");
        }
        let all = log
            .query(&AuditFilter {
                limit: 100,
                ..Default::default()
            })
            .expect("query");
        let order: Vec<u64> = all
            .iter()
            .filter_map(|e| e.parameters["i"].as_u64())
            .collect();
        assert_eq!(order, vec![7, 6, 5, 4, 3, 2, 1, 0]);
        let t1 = log
            .query(&AuditFilter {
                token: Some("t1".into()),
                limit: 2,
                ..Default::default()
            })
            .expect("query");
        assert_eq!(t1.len(), 2);
        assert!(t1.iter().all(|e| e.token.as_deref() == Some("t1")));
        // A time range: `since` at or after, `until` before.
        let at = |e: &AuditEntry| chrono::DateTime::parse_from_rfc3339(&e.time).expect("time");
        let (newest, oldest) = (at(&all[0]).to_utc(), at(&all[7]).to_utc());
        let none_before = log
            .query(&AuditFilter {
                until: Some(oldest),
                limit: 100,
                ..Default::default()
            })
            .expect("query");
        assert!(none_before.is_empty());
        let range = log
            .query(&AuditFilter {
                since: Some(oldest),
                until: Some(newest + chrono::Duration::milliseconds(1)),
                limit: 100,
                ..Default::default()
            })
            .expect("query");
        assert_eq!(range.len(), 8);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn rotation_by_size_keeps_a_bounded_number_of_files() {
        let dir = std::env::temp_dir().join(format!("fleetsync-audit-rot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut log = AuditLog::open(&dir).expect("open");
        log.rotate_bytes = 1000;
        for i in 0..200 {
            log.record(&entry(i)).expect("record");
        }
        let mut files: Vec<String> = std::fs::read_dir(dir.join("api"))
            .expect("dir")
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect();
        files.sort();
        assert_eq!(files.len(), KEEP_ROTATED + 1, "{files:?}");
        for f in &files {
            let len = std::fs::metadata(dir.join("api").join(f))
                .expect("meta")
                .len();
            assert!(len < 1000 + 400, "{f}: {len} bytes");
        }
        // The newest entry is first, the oldest ones are gone.
        let all = log
            .query(&AuditFilter {
                limit: MAX_LIMIT,
                ..Default::default()
            })
            .expect("query");
        assert_eq!(all[0].parameters["i"], 199);
        assert!(all.len() < 200 && all.iter().all(|e| e.parameters["i"] != 0));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
