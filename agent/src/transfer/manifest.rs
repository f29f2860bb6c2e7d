//! `export.json`: what an export directory holds.
//!
//! Written last by export (so a directory without it is an incomplete export) and read first
//! by import, which refuses a directory without it, of another format or version, with a
//! listed file missing, or with a file it does not list.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Content, Format, InputError, Loc, TransferError, FORMAT_VERSION, MANIFEST_FILE};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`FORMAT_VERSION`] of the files.
    pub fleetsync_export: u32,
    /// `[[servers]] name` the rows were read from.
    pub server: String,
    pub format: Format,
    pub content: Content,
    /// Binlog coordinate of the consistent snapshot the rows were read in.
    pub position: SnapshotPosition,
    /// UTC, RFC 3339.
    pub started_at: String,
    pub finished_at: String,
    pub rows: u64,
    pub bytes: u64,
    pub tables: Vec<TableEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotPosition {
    pub file: String,
    pub pos: u64,
    /// MariaDB GTID position (`D-S-N[,...]`), when the server has one.
    pub gtid: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableEntry {
    pub schema: String,
    pub table: String,
    pub rows: u64,
    /// File names relative to the directory (CSV: the schema file, then the rows).
    pub files: Vec<String>,
}

impl Manifest {
    /// Reads and checks `dir/export.json` against the `format` the caller asked for.
    pub fn read(dir: &Path, format: Format) -> Result<Manifest, TransferError> {
        let path = dir.join(MANIFEST_FILE);
        let err =
            |loc, msg: String| TransferError::Input(vec![InputError::new(MANIFEST_FILE, loc, msg)]);
        if !dir.is_dir() {
            return Err(TransferError::io(dir, "not a directory"));
        }
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(err(
                    Loc::File,
                    format!(
                        "missing in {}: not a complete fleetsync export directory",
                        dir.display()
                    ),
                ))
            }
            Err(e) => return Err(TransferError::io(&path, e)),
        };
        let m: Manifest = serde_json::from_slice(&text)
            .map_err(|e| err(Loc::Line(e.line() as u64), format!("invalid manifest: {e}")))?;
        if m.fleetsync_export != FORMAT_VERSION {
            return Err(err(
                Loc::File,
                format!(
                    "format version {} is not supported (this build reads {FORMAT_VERSION})",
                    m.fleetsync_export
                ),
            ));
        }
        if m.format != format {
            return Err(err(
                Loc::File,
                format!(
                    "the export is in {} format, not {} (use --format {})",
                    m.format.name(),
                    format.name(),
                    m.format.name()
                ),
            ));
        }
        Ok(m)
    }

    pub fn write(&self, dir: &Path) -> Result<(), TransferError> {
        let path = dir.join(MANIFEST_FILE);
        let mut text = serde_json::to_vec_pretty(self).map_err(|e| TransferError::io(&path, e))?;
        text.push(b'\n');
        crate::owner_only::write(&path, text).map_err(|e| TransferError::io(&path, e))
    }
}
