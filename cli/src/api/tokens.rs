//! API tokens: `fleetsync token create|list|revoke`, and their check on every request.
//!
//! A token is `fst_` followed by 43 characters (32 random bytes, base64url). It is printed
//! once, by `token create`; only its SHA-256 is stored (an unsalted hash is enough for 256
//! random bits: there is no dictionary to try). The store is `STATE_DIR/api/tokens.json`,
//! owner-only, replaced atomically (written beside, then renamed), so a running API (which
//! re-reads it when its modification time or size changes) sees a new or revoked token at once,
//! without a restart.
//!
//! With the Kafka bus (`fleetsync coordinator`, and `fleetsync token` on such a config) the
//! records live in a compacted topic instead, followed live by every replica
//! ([`super::kstate`]); still only hashes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use base64::Engine;
use chrono::{DateTime, Utc};
use fleetsync_agent::owner_only;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::kstate::{KafkaState, StateError};
use super::roles::Role;

/// Prefix of every token: recognisable in a leaked file or a secret scanner.
pub const TOKEN_PREFIX: &str = "fst_";
/// Longest `--expires-days`: ten years; a longer life is a token that never expires.
pub const MAX_EXPIRES_DAYS: u32 = 3650;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token store {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("token store {path} is not valid: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("--name {0:?}: must be 1-64 characters of letters, digits, '_', '-' or '.'")]
    BadName(String),
    #[error("--name {0:?}: an active token has this name (revoke it first)")]
    Duplicate(String),
    #[error("--expires-days {0}: must be 1-{MAX_EXPIRES_DAYS}")]
    BadExpiry(u32),
    #[error("no active token named {0:?}")]
    Unknown(String),
    #[error("token store {0}")]
    Kafka(#[from] StateError),
}

/// One stored token (never the token itself).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRecord {
    pub name: String,
    pub role: Role,
    /// Hex SHA-256 of the token.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub sha256: String,
    pub created: DateTime<Utc>,
    pub expires: Option<DateTime<Utc>>,
    pub revoked: Option<DateTime<Utc>>,
}

impl TokenRecord {
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.revoked.is_none() && self.expires.is_none_or(|e| e > now)
    }

    /// `active`, `expired` or `revoked`.
    pub fn state(&self, now: DateTime<Utc>) -> &'static str {
        if self.revoked.is_some() {
            "revoked"
        } else if self.is_active(now) {
            "active"
        } else {
            "expired"
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    tokens: Vec<TokenRecord>,
}

pub fn store_path(state_dir: &Path) -> PathBuf {
    state_dir.join("api").join("tokens.json")
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TokenError + '_ {
    move |source| TokenError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Every stored token (none when the store does not exist).
pub fn load(state_dir: &Path) -> Result<Vec<TokenRecord>, TokenError> {
    let path = store_path(state_dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(&path)(e)),
    };
    let file: TokenFile = serde_json::from_str(&text).map_err(|e| TokenError::Corrupt {
        path: path.clone(),
        message: e.to_string(),
    })?;
    Ok(file.tokens)
}

fn save(state_dir: &Path, tokens: Vec<TokenRecord>) -> Result<(), TokenError> {
    let path = store_path(state_dir);
    let dir = state_dir.join("api");
    owner_only::private_dir(&dir).map_err(io_err(&dir))?;
    let tmp = dir.join("tokens.json.tmp");
    let text =
        serde_json::to_string_pretty(&TokenFile { tokens }).map_err(|e| TokenError::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        })?;
    {
        use std::io::Write;
        let mut f = owner_only::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(text.as_bytes()).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
    }
    std::fs::rename(&tmp, &path).map_err(io_err(&path))
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

pub fn hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A new token for `name` (checked against the `existing` records) and its record.
fn make(
    existing: &[TokenRecord],
    name: &str,
    role: Role,
    expires_days: Option<u32>,
) -> Result<(String, TokenRecord), TokenError> {
    if !valid_name(name) {
        return Err(TokenError::BadName(name.to_string()));
    }
    if let Some(d) = expires_days {
        if d == 0 || d > MAX_EXPIRES_DAYS {
            return Err(TokenError::BadExpiry(d));
        }
    }
    let now = Utc::now();
    if existing.iter().any(|t| t.name == name && t.is_active(now)) {
        return Err(TokenError::Duplicate(name.to_string()));
    }
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let record = TokenRecord {
        name: name.to_string(),
        role,
        sha256: hash(&token),
        created: now,
        expires: expires_days.map(|d| now + chrono::Duration::days(i64::from(d))),
        revoked: None,
    };
    Ok((token, record))
}

/// Creates a token; returns it (to print once) and its record.
pub fn create(
    state_dir: &Path,
    name: &str,
    role: Role,
    expires_days: Option<u32>,
) -> Result<(String, TokenRecord), TokenError> {
    let mut tokens = load(state_dir)?;
    let (token, record) = make(&tokens, name, role, expires_days)?;
    tokens.push(record.clone());
    save(state_dir, tokens)?;
    Ok((token, record))
}

/// Revokes the active token `name`.
pub fn revoke(state_dir: &Path, name: &str) -> Result<TokenRecord, TokenError> {
    let now = Utc::now();
    let mut tokens = load(state_dir)?;
    let t = tokens
        .iter_mut()
        .find(|t| t.name == name && t.is_active(now))
        .ok_or_else(|| TokenError::Unknown(name.to_string()))?;
    t.revoked = Some(now);
    let revoked = t.clone();
    save(state_dir, tokens)?;
    Ok(revoked)
}

/// [`create`] on the Kafka store.
pub async fn create_in(
    state: &KafkaState,
    name: &str,
    role: Role,
    expires_days: Option<u32>,
) -> Result<(String, TokenRecord), TokenError> {
    let (token, record) = make(&state.tokens(), name, role, expires_days)?;
    state.put_token(&record).await?;
    Ok((token, record))
}

/// [`revoke`] on the Kafka store: every active token named `name` (two processes may have
/// made one each at the same moment).
pub async fn revoke_in(state: &KafkaState, name: &str) -> Result<TokenRecord, TokenError> {
    let now = Utc::now();
    let active: Vec<TokenRecord> = state
        .tokens()
        .into_iter()
        .filter(|t| t.name == name && t.is_active(now))
        .collect();
    let mut last = Err(TokenError::Unknown(name.to_string()));
    for mut t in active {
        t.revoked = Some(now);
        state.put_token(&t).await?;
        last = Ok(t);
    }
    last
}

/// Why a presented token was not accepted (all answer 401).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    Missing,
    Unknown,
    Expired,
    Revoked,
}

impl Rejection {
    pub fn detail(self) -> &'static str {
        match self {
            Rejection::Missing => "this route needs an `Authorization: Bearer TOKEN` header",
            Rejection::Unknown => "the bearer token is not valid",
            Rejection::Expired => "the bearer token has expired",
            Rejection::Revoked => "the bearer token has been revoked",
        }
    }
}

/// What tells a changed store apart: modification time and size.
type StoreVersion = (SystemTime, u64);

/// The running API's view of the store: re-read when the file's modification time changes.
pub struct TokenCache {
    state_dir: PathBuf,
    cached: Mutex<(Option<StoreVersion>, Vec<TokenRecord>)>,
    /// The Kafka store, followed live (instead of the file).
    kafka: Option<Arc<KafkaState>>,
}

impl TokenCache {
    pub fn new(state_dir: &Path) -> TokenCache {
        TokenCache {
            state_dir: state_dir.to_path_buf(),
            cached: Mutex::new((None, Vec::new())),
            kafka: None,
        }
    }

    /// The tokens of the Kafka store.
    pub fn kafka(state: Arc<KafkaState>) -> TokenCache {
        TokenCache {
            kafka: Some(state),
            ..TokenCache::new(Path::new(""))
        }
    }

    /// The current tokens; an unreadable store reads as no tokens (every call is refused) and
    /// is logged.
    pub fn tokens(&self) -> Vec<TokenRecord> {
        if let Some(k) = &self.kafka {
            return k.tokens();
        }
        let path = store_path(&self.state_dir);
        let mtime = std::fs::metadata(&path)
            .and_then(|m| Ok((m.modified()?, m.len())))
            .ok();
        let Ok(mut cached) = self.cached.lock() else {
            return Vec::new();
        };
        if cached.0 != mtime || mtime.is_none() {
            match load(&self.state_dir) {
                Ok(t) => *cached = (mtime, t),
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the API token store; refusing every token");
                    *cached = (None, Vec::new());
                }
            }
        }
        cached.1.clone()
    }

    /// Whether any token is active (the loopback-only rule).
    pub fn any_active(&self) -> bool {
        let now = Utc::now();
        self.tokens().iter().any(|t| t.is_active(now))
    }

    /// The record of `presented`, or why it is refused.
    pub fn check(&self, presented: Option<&str>) -> Result<TokenRecord, Rejection> {
        let presented = presented.ok_or(Rejection::Missing)?;
        let digest = hash(presented);
        let now = Utc::now();
        let tokens = self.tokens();
        let t = tokens
            .iter()
            .find(|t| constant_time_eq(t.sha256.as_bytes(), digest.as_bytes()))
            .ok_or(Rejection::Unknown)?;
        if t.revoked.is_some() {
            return Err(Rejection::Revoked);
        }
        if !t.is_active(now) {
            return Err(Rejection::Expired);
        }
        Ok(t.clone())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_check_revoke() {
        let dir = std::env::temp_dir().join(format!("fleetsync-tokens-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (token, rec) = create(&dir, "ci", Role::Operator, Some(1)).expect("create");
        assert!(token.starts_with(TOKEN_PREFIX) && token.len() == 47);
        let text = std::fs::read_to_string(store_path(&dir)).expect("store");
        assert!(!text.contains(&token) && text.contains(&rec.sha256));
        assert!(matches!(
            create(&dir, "ci", Role::Viewer, None),
            Err(TokenError::Duplicate(_))
        ));
        assert!(matches!(
            create(&dir, "a b", Role::Viewer, None),
            Err(TokenError::BadName(_))
        ));
        assert!(matches!(
            create(&dir, "x", Role::Viewer, Some(0)),
            Err(TokenError::BadExpiry(0))
        ));
        let cache = TokenCache::new(&dir);
        assert_eq!(cache.check(Some(&token)).expect("valid").name, "ci");
        assert_eq!(cache.check(None).err(), Some(Rejection::Missing));
        assert_eq!(
            cache.check(Some("fst_nope")).err(),
            Some(Rejection::Unknown)
        );
        revoke(&dir, "ci").expect("revoke");
        // The cache notices the new file even within the same mtime second.
        let cache = TokenCache::new(&dir);
        assert_eq!(cache.check(Some(&token)).err(), Some(Rejection::Revoked));
        assert!(matches!(revoke(&dir, "ci"), Err(TokenError::Unknown(_))));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
