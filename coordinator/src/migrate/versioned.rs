//! Versioned migrations: a folder of hand-written SQL files applied in order, exactly once
//! per server, with a checksum per applied file. Pure logic only (no I/O but reading the
//! folder): [`load`] reads the queue, [`server_state`] says where a server stands given its
//! recorded history, [`plan_up`] and [`plan_undo`] say what `up`/`undo` will run.
//!
//! Two layouts ([`HistoryMode`]):
//! * `fleetsync`: `V<version>__<name>.sql`, optional `U<version>__<name>.sql` undo. A version
//!   is dotted numbers (`1`, `1.2`, `2024.01.15`), compared number by number (`1.10` > `1.9`,
//!   `1` = `1.0`: a duplicate). Gaps are allowed. Other `.sql` files are refused; other files
//!   are ignored. History: `fleetsync.schema_migrations` (kind `versioned`/`baseline`),
//!   checksum = SHA-256 (hex) of the file's bytes.
//! * `trinitycore`: every `*.sql` file, ordered by file name (TrinityCore names them
//!   `2023_01_01_00_auth.sql`); its version is the name without `.sql`. History: the
//!   database's own `updates` table, hash = SHA-1 (upper-case hex, as TrinityCore writes it)
//!   of the file's bytes. No undo files.
//!
//! Recorded rows are matched to files by version (fleetsync) or file name (TrinityCore).

use std::cmp::Ordering;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha1::Digest as _;

/// Where the history of a queue is kept (and the folder's naming rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HistoryMode {
    Fleetsync,
    TrinityCore,
}

impl std::str::FromStr for HistoryMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fleetsync" => Ok(HistoryMode::Fleetsync),
            "trinitycore" => Ok(HistoryMode::TrinityCore),
            other => Err(format!(
                "unknown history {other:?} (expected fleetsync or trinitycore)"
            )),
        }
    }
}

impl fmt::Display for HistoryMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HistoryMode::Fleetsync => "fleetsync",
            HistoryMode::TrinityCore => "trinitycore",
        })
    }
}

/// A migration's version: dotted numbers (trailing zeros dropped, so `1.0` = `1`) or, in
/// TrinityCore mode, the file name without `.sql` (compared as text).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Version {
    Numbers(Vec<u64>),
    Name(String),
}

impl Version {
    /// Parses a version in `mode`'s syntax (for `--to` and `baseline`).
    pub fn parse(text: &str, mode: HistoryMode) -> Result<Version, String> {
        match mode {
            HistoryMode::Fleetsync => parse_numbers(text),
            HistoryMode::TrinityCore => {
                let name = text.strip_suffix(".sql").unwrap_or(text);
                if name.is_empty() {
                    return Err("an empty version".into());
                }
                Ok(Version::Name(name.to_string()))
            }
        }
    }
}

fn parse_numbers(text: &str) -> Result<Version, String> {
    let mut parts = Vec::new();
    for p in text.split('.') {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "version {text:?} is not dotted numbers (like 3, 1.2 or 2024.01.15)"
            ));
        }
        parts.push(
            p.parse::<u64>()
                .map_err(|_| format!("version {text:?}: {p} is too large"))?,
        );
    }
    while parts.len() > 1 && parts.last() == Some(&0) {
        parts.pop();
    }
    Ok(Version::Numbers(parts))
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Version::Numbers(a), Version::Numbers(b)) => {
                let n = a.len().max(b.len());
                (0..n)
                    .map(|i| {
                        a.get(i)
                            .copied()
                            .unwrap_or(0)
                            .cmp(&b.get(i).copied().unwrap_or(0))
                    })
                    .find(|o| o.is_ne())
                    .unwrap_or(Ordering::Equal)
            }
            (Version::Name(a), Version::Name(b)) => a.cmp(b),
            (Version::Numbers(_), Version::Name(_)) => Ordering::Less,
            (Version::Name(_), Version::Numbers(_)) => Ordering::Greater,
        }
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Version::Numbers(n) => {
                let parts: Vec<String> = n.iter().map(u64::to_string).collect();
                f.write_str(&parts.join("."))
            }
            Version::Name(n) => f.write_str(n),
        }
    }
}

impl Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One migration file of the folder.
#[derive(Debug, Clone, Serialize)]
pub struct MigrationFile {
    pub version: Version,
    /// The file name (`V3__add_index.sql`, `2024_01_01_00_auth.sql`).
    pub file_name: String,
    #[serde(skip)]
    pub path: PathBuf,
    /// SHA-256 hex (fleetsync) or upper-case SHA-1 hex (TrinityCore) of the bytes.
    pub checksum: String,
    /// The `U` file undoing it (fleetsync mode).
    #[serde(skip)]
    pub undo: Option<PathBuf>,
}

/// The folder's files, in the order they apply.
#[derive(Debug, Clone)]
pub struct Queue {
    pub mode: HistoryMode,
    pub dir: PathBuf,
    pub files: Vec<MigrationFile>,
}

/// A folder that cannot be used as a queue (nothing applied).
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: {why}")]
    BadName { file: String, why: String },
    #[error("{a} and {b} have the same version {version}")]
    Duplicate {
        a: String,
        b: String,
        version: String,
    },
    #[error("{file} undoes version {version}, which has no V file")]
    OrphanUndo { file: String, version: String },
}

/// SHA-256 hex of `bytes` (the fleetsync history's checksum).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex_upper(&sha2::Sha256::digest(bytes)).to_ascii_lowercase()
}

/// Upper-case SHA-1 hex of `bytes`, as TrinityCore's updater writes it in `updates.hash`.
pub fn sha1_hex_upper(bytes: &[u8]) -> String {
    hex_upper(&sha1::Sha1::digest(bytes))
}

fn hex_upper(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 15)]));
    }
    s
}

/// The checksum `mode` records for a file's bytes.
pub fn checksum(mode: HistoryMode, bytes: &[u8]) -> String {
    match mode {
        HistoryMode::Fleetsync => sha256_hex(bytes),
        HistoryMode::TrinityCore => sha1_hex_upper(bytes),
    }
}

/// A fleetsync file name split: (`V` or `U`, version, description).
pub fn parse_file_name(name: &str) -> Result<(char, Version, String), String> {
    let stem = name
        .strip_suffix(".sql")
        .ok_or_else(|| "not a .sql file".to_string())?;
    let kind = stem.chars().next().unwrap_or(' ');
    if kind != 'V' && kind != 'U' {
        return Err("expected V<version>__<name>.sql or U<version>__<name>.sql".into());
    }
    let Some((version, desc)) = stem[1..].split_once("__") else {
        return Err("expected V<version>__<name>.sql (two underscores after the version)".into());
    };
    if desc.is_empty() {
        return Err("the name after the version is empty".into());
    }
    Ok((kind, parse_numbers(version)?, desc.to_string()))
}

/// Reads the queue in `dir`.
pub fn load(dir: &Path, mode: HistoryMode) -> Result<Queue, QueueError> {
    let io = |source| QueueError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sql"))
        .collect();
    names.sort();
    let mut files: Vec<MigrationFile> = Vec::new();
    let mut undos: Vec<(Version, String)> = Vec::new();
    for name in names {
        let path = dir.join(&name);
        let (kind, version) = match mode {
            HistoryMode::TrinityCore => (
                'V',
                Version::parse(&name, mode).map_err(|why| QueueError::BadName {
                    file: name.clone(),
                    why,
                })?,
            ),
            HistoryMode::Fleetsync => {
                let (k, v, _) = parse_file_name(&name).map_err(|why| QueueError::BadName {
                    file: name.clone(),
                    why,
                })?;
                (k, v)
            }
        };
        if kind == 'U' {
            if let Some((_, other)) = undos.iter().find(|(v, _)| *v == version) {
                return Err(QueueError::Duplicate {
                    a: other.clone(),
                    b: name,
                    version: version.to_string(),
                });
            }
            undos.push((version, name));
            continue;
        }
        if let Some(other) = files.iter().find(|f| f.version == version) {
            return Err(QueueError::Duplicate {
                a: other.file_name.clone(),
                b: name,
                version: version.to_string(),
            });
        }
        let bytes = std::fs::read(&path).map_err(|source| QueueError::Io {
            path: path.clone(),
            source,
        })?;
        files.push(MigrationFile {
            version,
            checksum: checksum(mode, &bytes),
            file_name: name,
            path,
            undo: None,
        });
    }
    for (version, name) in undos {
        let Some(f) = files.iter_mut().find(|f| f.version == version) else {
            return Err(QueueError::OrphanUndo {
                file: name,
                version: version.to_string(),
            });
        };
        f.undo = Some(dir.join(name));
    }
    files.sort_by(|a, b| a.version.cmp(&b.version));
    Ok(Queue {
        mode,
        dir: dir.to_path_buf(),
        files,
    })
}

/// The name of the next file `migrate new NAME` creates (fleetsync: `V<n+1>__name.sql` after
/// the highest version's first number; TrinityCore: `YYYY_MM_DD_NN_name.sql` for `today`
/// (`YYYY_MM_DD`), NN the next free number of that day).
pub fn next_file_name(queue: &Queue, name: &str, today: &str) -> Result<String, String> {
    let clean: String = name
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if clean.trim_matches('_').is_empty() {
        return Err(format!("migration name {name:?} has no letters or digits"));
    }
    match queue.mode {
        HistoryMode::Fleetsync => {
            let next = queue
                .files
                .iter()
                .filter_map(|f| match &f.version {
                    Version::Numbers(n) => n.first().copied(),
                    Version::Name(_) => None,
                })
                .max()
                .map_or(1, |m| m + 1);
            Ok(format!("V{next}__{clean}.sql"))
        }
        HistoryMode::TrinityCore => {
            let n = (0..100)
                .find(|n| {
                    let prefix = format!("{today}_{n:02}_");
                    !queue.files.iter().any(|f| f.file_name.starts_with(&prefix))
                })
                .ok_or_else(|| format!("100 updates already dated {today}"))?;
            Ok(format!("{today}_{n:02}_{clean}.sql"))
        }
    }
}

/// One recorded row of a server's history for this queue (the latest row per version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub version: Version,
    pub name: String,
    pub checksum: String,
    pub status: RecordedStatus,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordedStatus {
    Applied,
    /// `baseline VERSION`: every version up to it counts as applied.
    Baseline,
    Failed,
    /// Undone (or a crash left it `running`): runs again at the next `up`.
    RolledBack,
}

/// Where one file stands on a server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum FileState {
    Applied,
    /// At or below the server's baseline: never run, counted as applied.
    Baseline,
    /// Applied, but the file changed since: refused until `repair`.
    Edited {
        recorded: String,
        current: String,
    },
    /// Its last run failed (with the error recorded): `up` runs it again.
    Failed {
        error: String,
    },
    Pending,
}

impl FileState {
    pub fn is_applied(&self) -> bool {
        matches!(
            self,
            FileState::Applied | FileState::Baseline | FileState::Edited { .. }
        )
    }
}

/// A server's standing against the queue.
#[derive(Debug, Clone)]
pub struct ServerState {
    /// One per queue file, same order.
    pub files: Vec<FileState>,
    pub baseline: Option<Version>,
    /// Applied rows whose file is not in the folder (e.g. TrinityCore's archived updates).
    pub applied_without_file: Vec<String>,
}

impl ServerState {
    /// The highest applied (or baselined) version, the server's "at version".
    pub fn at_version(&self, queue: &Queue) -> Option<Version> {
        let from_files = queue
            .files
            .iter()
            .zip(&self.files)
            .filter(|(_, s)| s.is_applied())
            .map(|(f, _)| f.version.clone())
            .max();
        from_files.max(self.baseline.clone())
    }
}

/// Matches `recorded` (latest row per version, any order) to the queue's files.
pub fn server_state(queue: &Queue, recorded: &[Recorded]) -> ServerState {
    let baseline = recorded
        .iter()
        .filter(|r| r.status == RecordedStatus::Baseline)
        .map(|r| r.version.clone())
        .max();
    let files = queue
        .files
        .iter()
        .map(|f| {
            match recorded
                .iter()
                .find(|r| r.version == f.version && r.status != RecordedStatus::Baseline)
            {
                Some(r) if r.status == RecordedStatus::Applied => {
                    if r.checksum.eq_ignore_ascii_case(&f.checksum) {
                        FileState::Applied
                    } else {
                        FileState::Edited {
                            recorded: r.checksum.clone(),
                            current: f.checksum.clone(),
                        }
                    }
                }
                Some(r) if r.status == RecordedStatus::Failed => FileState::Failed {
                    error: r.error.clone().unwrap_or_default(),
                },
                _ if baseline.as_ref().is_some_and(|b| f.version <= *b) => FileState::Baseline,
                _ => FileState::Pending,
            }
        })
        .collect();
    let applied_without_file = recorded
        .iter()
        .filter(|r| r.status == RecordedStatus::Applied)
        .filter(|r| !queue.files.iter().any(|f| f.version == r.version))
        .map(|r| r.name.clone())
        .collect();
    ServerState {
        files,
        baseline,
        applied_without_file,
    }
}

/// Why `up` or `undo` refuses to run anything on a server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("{file} was edited after it was applied (checksum recorded {recorded}, file now {current}); review the change, then run `migrate repair`")]
    Edited {
        file: String,
        recorded: String,
        current: String,
    },
    #[error(
        "{file} has no undo file (U{version}__...sql) or it has no statements; nothing undone"
    )]
    NoUndo { file: String, version: String },
    #[error("version {0} is at or below the server's baseline: it was never run here and cannot be undone")]
    BelowBaseline(String),
    #[error("TrinityCore's updates have no undo files; nothing undone")]
    NoUndoInTrinityCore,
    #[error("no version {0} in the folder")]
    UnknownVersion(String),
}

/// The refusal for an edited applied file, if any.
fn edited(queue: &Queue, state: &ServerState) -> Result<(), PlanError> {
    for (f, s) in queue.files.iter().zip(&state.files) {
        if let FileState::Edited { recorded, current } = s {
            return Err(PlanError::Edited {
                file: f.file_name.clone(),
                recorded: recorded.clone(),
                current: current.clone(),
            });
        }
    }
    Ok(())
}

/// The indexes (into `queue.files`) `up` runs, in order: pending and failed files up to and
/// including `to`. Refused while an applied file was edited.
pub fn plan_up(
    queue: &Queue,
    state: &ServerState,
    to: Option<&Version>,
) -> Result<Vec<usize>, PlanError> {
    edited(queue, state)?;
    if let Some(v) = to {
        if !queue.files.iter().any(|f| f.version == *v) {
            return Err(PlanError::UnknownVersion(v.to_string()));
        }
    }
    Ok(queue
        .files
        .iter()
        .zip(&state.files)
        .enumerate()
        .filter(|(_, (f, s))| {
            matches!(s, FileState::Pending | FileState::Failed { .. })
                && to.is_none_or(|v| f.version <= *v)
        })
        .map(|(i, _)| i)
        .collect())
}

/// The indexes `undo` runs, newest first: every applied file above `to`, or (no `to`) the
/// newest applied file. Refused when one of them has no undo file, is below the baseline, or
/// an applied file was edited. `has_statements` tells whether an undo file has any.
pub fn plan_undo(
    queue: &Queue,
    state: &ServerState,
    to: Option<&Version>,
    has_statements: impl Fn(&Path) -> bool,
) -> Result<Vec<usize>, PlanError> {
    if queue.mode == HistoryMode::TrinityCore {
        return Err(PlanError::NoUndoInTrinityCore);
    }
    edited(queue, state)?;
    if let (Some(v), Some(b)) = (to, &state.baseline) {
        if v < b {
            return Err(PlanError::BelowBaseline(b.to_string()));
        }
    }
    let mut applied: Vec<usize> = (0..queue.files.len())
        .filter(|&i| state.files[i] == FileState::Applied)
        .filter(|&i| to.is_none_or(|v| queue.files[i].version > *v))
        .collect();
    applied.reverse();
    if to.is_none() {
        applied.truncate(1);
    }
    for &i in &applied {
        let f = &queue.files[i];
        if !f.undo.as_deref().is_some_and(&has_statements) {
            return Err(PlanError::NoUndo {
                file: f.file_name.clone(),
                version: f.version.to_string(),
            });
        }
    }
    Ok(applied)
}

#[cfg(test)]
mod tests;
