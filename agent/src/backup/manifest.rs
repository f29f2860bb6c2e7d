//! The backup manifest: `<dir>/<id>/manifest.json`.
//!
//! Invariants:
//! - It is written once, last of all, when every file of the backup is stored (`status:
//!   complete`): a backup without it is never complete (see [`super::running`] for what is
//!   running and what is left over). Manifests of older versions may say `running` or
//!   `failed`; they are listed as such and never verified or restored.
//! - It is stored atomically (a temporary file renamed locally, one PUT in S3), so it is
//!   never half-written. Pins live beside it (`pin.json`): the manifest is never rewritten.
//! - `checksum` is the SHA-256 of the manifest's canonical JSON (keys sorted, compact, the
//!   `checksum` field removed). [`read`] recomputes it and refuses a manifest that differs.
//!   This catches accidental damage, not a forger (who could recompute it; with encryption
//!   on, altered chunk files still fail authentication).
//! - The manifest is not encrypted: database and table names, row counts and sizes are
//!   readable without the key. The key itself is never in it.

use bytes::Bytes;
use fleetsync_config::Compression;
use fleetsync_store::Store;
use serde::{Deserialize, Serialize};

use super::files::sha256_hex;
use super::running::{self, Running, Unfinished};
use super::BackupError;

/// The manifest format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
pub const MANIFEST_FILE: &str = "manifest.json";
/// Present while a backup is pinned: a separate object, so the manifest stays immutable.
pub const PIN_FILE: &str = "pin.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Running,
    Complete,
    Failed,
}

/// One stored file. `bytes` and `sha256` are of the file as stored (compressed/encrypted).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the backup's directory (`data/app.t.000001.sql.zst`).
    pub name: String,
    pub rows: u64,
    /// INSERT statements (lines) in the plaintext; 0 for schema files.
    pub statements: u64,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatabaseEntry {
    pub name: String,
    pub charset: String,
    pub collation: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TableEntry {
    pub database: String,
    pub table: String,
    pub engine: String,
    /// False for MyISAM/Aria/...: see `notes` for how they were kept consistent.
    pub transactional: bool,
    /// `CREATE TABLE` as `SHOW CREATE TABLE` printed it.
    pub schema_file: FileEntry,
    pub rows: u64,
    pub bytes: u64,
    pub files: Vec<FileEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ViewEntry {
    pub database: String,
    pub view: String,
    /// `CREATE ... VIEW` (no DEFINER: the restoring user becomes the definer).
    pub schema_file: FileEntry,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub id: String,
    /// `backup create --name`: accepted wherever an id is (unique among the backups).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub server: String,
    pub server_version: String,
    pub status: Status,
    #[serde(default)]
    pub error: Option<String>,
    /// RFC 3339, UTC.
    pub started: String,
    #[serde(default)]
    pub finished: Option<String>,
    #[serde(default)]
    pub duration_seconds: Option<f64>,
    /// The snapshot's binlog coordinate, `file:pos@gtid` ([`fleetsync_proto::Position`]).
    #[serde(default)]
    pub position: Option<String>,
    /// How the snapshot was made consistent (`consistent-snapshot`, `flush-tables-read-lock`).
    #[serde(default)]
    pub consistency: String,
    /// `zstd`, `gzip` or `none`.
    pub compression: String,
    pub encrypted: bool,
    pub threads: usize,
    pub databases: Vec<DatabaseEntry>,
    pub tables: Vec<TableEntry>,
    pub views: Vec<ViewEntry>,
    pub total_rows: u64,
    /// Bytes of every file as stored (data and schema).
    pub total_bytes: u64,
    /// Things a reader should know (non-transactional tables, ...).
    #[serde(default)]
    pub notes: Vec<String>,
    #[serde(default)]
    pub checksum: String,
}

pub fn compression_name(c: Compression) -> &'static str {
    match c {
        Compression::Zstd => "zstd",
        Compression::Gzip => "gzip",
        Compression::None => "none",
    }
}

impl Manifest {
    pub fn compression(&self) -> Result<Compression, String> {
        match self.compression.as_str() {
            "zstd" => Ok(Compression::Zstd),
            "gzip" => Ok(Compression::Gzip),
            "none" => Ok(Compression::None),
            other => Err(format!("unknown compression {other:?}")),
        }
    }

    /// The snapshot position, parsed.
    pub fn position(&self) -> Result<Option<fleetsync_proto::Position>, String> {
        self.position
            .as_deref()
            .map(|p| p.parse().map_err(|e| format!("position: {e}")))
            .transpose()
    }

    /// Every stored file (schema files first).
    pub fn files(&self) -> impl Iterator<Item = &FileEntry> {
        self.tables
            .iter()
            .map(|t| &t.schema_file)
            .chain(self.views.iter().map(|v| &v.schema_file))
            .chain(self.tables.iter().flat_map(|t| t.files.iter()))
    }
}

fn canonical_sum(m: &Manifest) -> Result<String, String> {
    let mut v = serde_json::to_value(m).map_err(|e| e.to_string())?;
    if let Some(obj) = v.as_object_mut() {
        obj.remove("checksum");
    }
    let bytes = serde_json::to_vec(&v).map_err(|e| e.to_string())?;
    Ok(sha256_hex(&bytes))
}

/// Refuses backup ids (and names) that could leave the backup location.
pub fn check_id(id: &str) -> Result<(), BackupError> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && !id.contains('/')
        && !id.contains('\\')
        && !id.contains('\0');
    if !ok {
        return Err(BackupError::Refused(format!("invalid backup id {id:?}")));
    }
    Ok(())
}

/// Writes `m` (with a fresh checksum) as `<id>/manifest.json` of `root` (atomically: the
/// store writes an object whole or not at all).
pub async fn write(root: &Store, m: &mut Manifest) -> Result<(), BackupError> {
    check_id(&m.id)?;
    let key = format!("{}/{MANIFEST_FILE}", m.id);
    m.checksum = canonical_sum(m).map_err(|e| BackupError::object(root, &key, e))?;
    let text =
        serde_json::to_vec_pretty(m).map_err(|e| BackupError::object(root, &key, e.to_string()))?;
    root.put(&key, Bytes::from(text)).await?;
    Ok(())
}

/// Reads and validates the manifest of backup `id` in `root`.
pub async fn read(root: &Store, id: &str) -> Result<Manifest, BackupError> {
    check_id(id)?;
    let key = format!("{id}/{MANIFEST_FILE}");
    let text = match root.get(&key).await {
        Ok(t) => t,
        Err(e) if e.is_not_found() => {
            let any = !root.list(id).await?.is_empty();
            return Err(if any {
                BackupError::object(
                    root,
                    &key,
                    "manifest is missing: the backup is still running, or it is the leftovers of an unfinished one (never complete)",
                )
            } else {
                BackupError::Refused(format!(
                    "no backup {id:?} in {} (see `fleetsync backup list`)",
                    root.describe()
                ))
            });
        }
        Err(e) => return Err(e.into()),
    };
    parse(&root.describe_key(&key), &text, id)
}

fn parse(path: &str, text: &[u8], id: &str) -> Result<Manifest, BackupError> {
    let file = |message: String| BackupError::File {
        path: path.to_string(),
        message,
    };
    let raw: serde_json::Value =
        serde_json::from_slice(text).map_err(|e| file(format!("not valid JSON: {e}")))?;
    let version = raw.get("format_version").and_then(|v| v.as_u64());
    if version != Some(u64::from(FORMAT_VERSION)) {
        return Err(file(format!(
            "manifest format version {version:?}; this build reads version {FORMAT_VERSION}"
        )));
    }
    let m: Manifest =
        serde_json::from_value(raw).map_err(|e| file(format!("invalid manifest: {e}")))?;
    let sum = canonical_sum(&m).map_err(file)?;
    if sum != m.checksum {
        return Err(file(
            "manifest checksum mismatch: the manifest was altered or damaged".into(),
        ));
    }
    if m.id != id {
        return Err(file(format!(
            "manifest is for backup {:?}, not {id:?}",
            m.id
        )));
    }
    Ok(m)
}

/// One entry of [`list`].
#[derive(Debug, Clone)]
pub enum Listed {
    /// A backup with its manifest (complete; `running`/`failed` only for manifests written
    /// by older versions) and whether it is pinned.
    Done {
        manifest: Box<Manifest>,
        pinned: bool,
    },
    /// A backup in progress (no manifest yet, a live owner).
    Running(Running),
    /// A directory whose manifest cannot be read: its id and why.
    Unreadable(String, String),
}

impl Listed {
    pub fn id(&self) -> &str {
        match self {
            Listed::Done { manifest, .. } => &manifest.id,
            Listed::Running(r) => &r.id,
            Listed::Unreadable(id, _) => id,
        }
    }

    fn sort_key(&self) -> (String, String) {
        match self {
            Listed::Done { manifest, .. } => (manifest.started.clone(), manifest.id.clone()),
            Listed::Running(r) => (r.started.clone(), r.id.clone()),
            Listed::Unreadable(id, _) => (String::new(), id.clone()),
        }
    }
}

/// Every backup in `root`, oldest first. Directories without a manifest are listed only
/// when a live backup is writing them (as running); leftovers of dead runs and directories
/// that are not backups (e.g. `binlog-archive`) are not listed.
pub async fn list(root: &Store) -> Result<Vec<Listed>, BackupError> {
    let ids = root.list_dirs("").await?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if check_id(&id).is_err() {
            continue;
        }
        match read(root, &id).await {
            Ok(manifest) => {
                let pinned = is_pinned(&root.child(&id)).await?;
                out.push(Listed::Done {
                    manifest: Box::new(manifest),
                    pinned,
                });
            }
            Err(BackupError::Store(e)) => return Err(BackupError::Store(e)),
            Err(e) => {
                if root.size(&format!("{id}/{MANIFEST_FILE}")).await?.is_some() {
                    out.push(Listed::Unreadable(id, e.to_string()));
                } else if let Unfinished::Running(r) = running::classify(root, &id).await? {
                    out.push(Listed::Running(r));
                }
            }
        }
    }
    out.sort_by_key(Listed::sort_key);
    Ok(out)
}

/// `pin.json`: present while a backup is pinned.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pin {
    /// RFC 3339, UTC.
    pub at: String,
}

/// True when the backup (the store rooted at it) is pinned.
pub async fn is_pinned(backup: &Store) -> Result<bool, BackupError> {
    Ok(backup.size(PIN_FILE).await?.is_some())
}

/// Pins (`pin`) or unpins a backup (the store rooted at it). The manifest is not touched.
pub async fn set_pinned(backup: &Store, pin: bool) -> Result<(), BackupError> {
    if pin {
        let p = Pin {
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        };
        let json = serde_json::to_vec_pretty(&p)
            .map_err(|e| BackupError::object(backup, PIN_FILE, e.to_string()))?;
        backup.put(PIN_FILE, Bytes::from(json)).await?;
    } else {
        backup.delete(PIN_FILE).await?;
    }
    Ok(())
}

/// Checks a backup name given to `backup create --name`: 1-64 ASCII letters, digits, `.`,
/// `_`, `-`, not starting with `.` (a name is accepted wherever an id is).
pub fn check_name(name: &str) -> Result<(), BackupError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(BackupError::Refused(format!(
            "backup name {name:?}: use 1-64 letters, digits, '.', '_' or '-' (not starting with '.')"
        )))
    }
}

/// The id of the backup named or identified by `id_or_name` (an id wins over a name).
pub async fn resolve(root: &Store, id_or_name: &str) -> Result<String, BackupError> {
    check_id(id_or_name)?;
    if root
        .size(&format!("{id_or_name}/{MANIFEST_FILE}"))
        .await?
        .is_some()
    {
        return Ok(id_or_name.to_string());
    }
    let named: Vec<String> = list(root)
        .await?
        .into_iter()
        .filter_map(|l| match l {
            Listed::Done { manifest, .. } if manifest.name.as_deref() == Some(id_or_name) => {
                Some(manifest.id)
            }
            _ => None,
        })
        .collect();
    match named.as_slice() {
        [id] => Ok(id.clone()),
        [] => Ok(id_or_name.to_string()),
        many => Err(BackupError::Refused(format!(
            "name {id_or_name:?} is used by {} backups ({}): give the id",
            many.len(),
            many.join(", ")
        ))),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample(id: &str, started: &str) -> Manifest {
        Manifest {
            format_version: FORMAT_VERSION,
            id: id.into(),
            name: None,
            server: "src".into(),
            server_version: "10.11".into(),
            status: Status::Complete,
            error: None,
            started: started.into(),
            finished: None,
            duration_seconds: None,
            position: Some("binlog.000001:4".into()),
            consistency: String::new(),
            compression: "zstd".into(),
            encrypted: false,
            threads: 2,
            databases: Vec::new(),
            tables: Vec::new(),
            views: Vec::new(),
            total_rows: 0,
            total_bytes: 0,
            notes: Vec::new(),
            checksum: String::new(),
        }
    }

    #[tokio::test]
    async fn write_read_and_tamper() -> Result<(), BackupError> {
        let dir = std::env::temp_dir().join(format!("fs-manifest-test-{}", std::process::id()));
        let store = Store::local(&dir);
        let mut m = sample("b1", "2024-01-01T00:00:00Z");
        m.name = Some("nightly".into());
        write(&store, &mut m).await?;
        let back = read(&store, "b1").await?;
        assert_eq!(back.checksum, m.checksum);
        assert_eq!(resolve(&store, "nightly").await?, "b1");
        assert!(!is_pinned(&store.child("b1")).await?);
        set_pinned(&store.child("b1"), true).await?;
        assert!(matches!(
            list(&store).await?.as_slice(),
            [Listed::Done { pinned: true, .. }]
        ));
        set_pinned(&store.child("b1"), false).await?;
        assert!(!is_pinned(&store.child("b1")).await?);
        let path = dir.join("b1").join(MANIFEST_FILE);
        let text =
            std::fs::read_to_string(&path).map_err(|e| BackupError::file(&path, e.to_string()))?;
        std::fs::write(
            &path,
            text.replace("\"total_rows\": 0", "\"total_rows\": 5"),
        )
        .map_err(|e| BackupError::file(&path, e.to_string()))?;
        let err = read(&store, "b1")
            .await
            .map(|_| ())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("checksum mismatch"), "{err}");
        assert!(check_id("../x").is_err());
        assert!(check_name("ok-name_1.2").is_ok());
        assert!(check_name("../x").is_err());
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }
}
