//! The backup manifest: `<dir>/<id>/manifest.json`.
//!
//! Invariants:
//! - It is written when a backup starts (`status: running`), and again, last of all, when it
//!   ends (`complete` or `failed`). A crashed backup therefore never looks complete.
//! - It is written to a temporary name, synced and renamed, so it is never half-written.
//! - `checksum` is the SHA-256 of the manifest's canonical JSON (keys sorted, compact, the
//!   `checksum` field removed). [`read`] recomputes it and refuses a manifest that differs.
//!   This catches accidental damage, not a forger (who could recompute it; with encryption
//!   on, altered chunk files still fail authentication).
//! - The manifest is not encrypted: database and table names, row counts and sizes are
//!   readable without the key. The key itself is never in it.

use std::path::{Path, PathBuf};

use fleetsync_config::Compression;
use serde::{Deserialize, Serialize};

use super::files::sha256_hex;
use super::BackupError;

/// The manifest format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
pub const MANIFEST_FILE: &str = "manifest.json";

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

/// The directory of backup `id`, refusing ids that could leave `dir`.
pub fn backup_dir(dir: &Path, id: &str) -> Result<PathBuf, BackupError> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && !id.contains('/')
        && !id.contains('\\')
        && !id.contains('\0');
    if !ok {
        return Err(BackupError::Refused(format!("invalid backup id {id:?}")));
    }
    Ok(dir.join(id))
}

/// Writes `m` (with a fresh checksum) to `<root>/manifest.json`.
pub fn write(root: &Path, m: &mut Manifest) -> Result<(), BackupError> {
    let path = root.join(MANIFEST_FILE);
    m.checksum = canonical_sum(m).map_err(|e| BackupError::file(&path, e))?;
    let text = serde_json::to_vec_pretty(m).map_err(|e| BackupError::file(&path, e.to_string()))?;
    let tmp = root.join(format!("{MANIFEST_FILE}.tmp"));
    let io = |e: std::io::Error| BackupError::file(&path, format!("cannot write: {e}"));
    crate::owner_only::write(&tmp, &text).map_err(io)?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)
}

/// Reads and validates the manifest of backup `id` in `dir`.
pub fn read(dir: &Path, id: &str) -> Result<Manifest, BackupError> {
    let root = backup_dir(dir, id)?;
    let path = root.join(MANIFEST_FILE);
    if !root.is_dir() {
        return Err(BackupError::Refused(format!(
            "no backup {id:?} in {} (see `fleetsync backup list`)",
            dir.display()
        )));
    }
    let text = std::fs::read(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            BackupError::file(
                &path,
                "manifest is missing: the backup is incomplete or damaged",
            )
        } else {
            BackupError::file(&path, format!("cannot read: {e}"))
        }
    })?;
    parse(&path, &text, id)
}

fn parse(path: &Path, text: &[u8], id: &str) -> Result<Manifest, BackupError> {
    let raw: serde_json::Value = serde_json::from_slice(text)
        .map_err(|e| BackupError::file(path, format!("not valid JSON: {e}")))?;
    let version = raw.get("format_version").and_then(|v| v.as_u64());
    if version != Some(u64::from(FORMAT_VERSION)) {
        return Err(BackupError::file(
            path,
            format!(
                "manifest format version {version:?}; this build reads version {FORMAT_VERSION}"
            ),
        ));
    }
    let m: Manifest = serde_json::from_value(raw)
        .map_err(|e| BackupError::file(path, format!("invalid manifest: {e}")))?;
    let sum = canonical_sum(&m).map_err(|e| BackupError::file(path, e))?;
    if sum != m.checksum {
        return Err(BackupError::file(
            path,
            "manifest checksum mismatch: the manifest was altered or damaged",
        ));
    }
    if m.id != id {
        return Err(BackupError::file(
            path,
            format!("manifest is for backup {:?}, not {id:?}", m.id),
        ));
    }
    Ok(m)
}

/// A backup's manifest, or its id and why it cannot be read.
pub type Listed = Result<Manifest, (String, String)>;

/// Every backup in `dir`, oldest first: `Ok(manifest)` or, for a directory whose manifest
/// cannot be read, `Err((id, error))`. Directories without any manifest that do not look
/// like backups (e.g. `binlog-archive`) are skipped.
pub fn list(dir: &Path) -> Result<Vec<Listed>, BackupError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(BackupError::file(dir, format!("cannot list: {e}"))),
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(id) = path
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
        else {
            continue;
        };
        if !path.is_dir() {
            continue;
        }
        let looks_like_backup = path.join(MANIFEST_FILE).exists() || path.join("data").is_dir();
        if !looks_like_backup {
            continue;
        }
        out.push(read(dir, &id).map_err(|e| (id, e.to_string())));
    }
    out.sort_by_key(sort_key);
    Ok(out)
}

fn sort_key(r: &Listed) -> (String, String) {
    match r {
        Ok(m) => (m.started.clone(), m.id.clone()),
        Err((id, _)) => (String::new(), id.clone()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample(id: &str, started: &str) -> Manifest {
        Manifest {
            format_version: FORMAT_VERSION,
            id: id.into(),
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

    #[test]
    fn write_read_and_tamper() -> Result<(), BackupError> {
        let dir = std::env::temp_dir().join(format!("fs-manifest-test-{}", std::process::id()));
        let root = dir.join("b1");
        crate::owner_only::create_dir_all(&root)
            .map_err(|e| BackupError::file(&root, e.to_string()))?;
        let mut m = sample("b1", "2024-01-01T00:00:00Z");
        write(&root, &mut m)?;
        let back = read(&dir, "b1")?;
        assert_eq!(back.checksum, m.checksum);
        let path = root.join(MANIFEST_FILE);
        let text =
            std::fs::read_to_string(&path).map_err(|e| BackupError::file(&path, e.to_string()))?;
        std::fs::write(
            &path,
            text.replace("\"total_rows\": 0", "\"total_rows\": 5"),
        )
        .map_err(|e| BackupError::file(&path, e.to_string()))?;
        let err = read(&dir, "b1")
            .map(|_| ())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("checksum mismatch"), "{err}");
        assert!(backup_dir(&dir, "../x").is_err());
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }
}
