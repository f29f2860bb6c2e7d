//! `backup verify`: proves a backup is intact and readable, without touching any server.
//!
//! Every object the manifest lists is read as a stream (no local copy, from a directory or a
//! bucket alike), its size and SHA-256 checked against the manifest, then it is decrypted
//! (with the configured key) and decompressed, and each data file is checked to hold whole
//! `INSERT` statements, one per line, as many as the manifest says. `threads` objects are in
//! flight at once (memory: `threads` objects of at most one data file each); the first
//! failure in manifest order is reported naming the object.

use std::collections::HashSet;

use fleetsync_store::Store;
use futures_util::{StreamExt, TryStreamExt};

use super::files::{check_framing, read_plain};
use super::manifest::{FileEntry, Manifest, Status};
use super::{BackupError, Settings};

/// What verification covered.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct VerifyReport {
    pub files: usize,
    pub bytes: u64,
    pub rows: u64,
    pub statements: u64,
}

/// Verifies backup `m` stored in `settings.store`.
pub async fn verify(m: &Manifest, settings: &Settings) -> Result<VerifyReport, BackupError> {
    verify_with(m, settings, &|| false).await
}

/// [`verify`], asking `cancelled` before each object: once it answers true, no further
/// object is read and the result is [`BackupError::Cancelled`].
pub async fn verify_with(
    m: &Manifest,
    settings: &Settings,
    cancelled: &(dyn Fn() -> bool + Sync),
) -> Result<VerifyReport, BackupError> {
    let backup = settings.backup(&m.id)?;
    if m.status != Status::Complete {
        return Err(BackupError::Refused(format!(
            "backup {} has status {:?}{}: it is not a complete backup",
            m.id,
            m.status,
            m.error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        )));
    }
    let files: Vec<&FileEntry> = m.files().collect();
    let data: HashSet<&str> = m
        .tables
        .iter()
        .flat_map(|t| t.files.iter().map(|f| f.name.as_str()))
        .collect();
    let codec = settings.codec_for(m)?;
    let threads = settings.threads.max(1);
    let work: Vec<(FileEntry, bool)> = files
        .iter()
        .map(|f| ((*f).clone(), data.contains(f.name.as_str())))
        .collect();
    futures_util::stream::iter(work)
        .map(|(f, is_data)| {
            let (backup, codec) = (backup.clone(), codec.clone());
            let stop = cancelled();
            async move {
                if stop {
                    return Err(BackupError::Cancelled);
                }
                check_object(&backup, &f, &codec, is_data).await
            }
        })
        .buffered(threads)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(VerifyReport {
        files: files.len(),
        bytes: files.iter().map(|f| f.bytes).sum(),
        rows: m.total_rows,
        statements: files.iter().map(|f| f.statements).sum(),
    })
}

/// Size, checksum, decoding and framing (data) or `CREATE` (schema) of one object.
async fn check_object(
    backup: &Store,
    f: &FileEntry,
    codec: &super::files::Codec,
    is_data: bool,
) -> Result<(), BackupError> {
    let plain = read_plain(backup, f, codec, is_data).await?;
    if is_data {
        check_framing(&plain, f.statements).map_err(|e| BackupError::object(backup, &f.name, e))
    } else if plain.starts_with(b"CREATE ") {
        Ok(())
    } else {
        Err(BackupError::object(
            backup,
            &f.name,
            "not a CREATE statement (damaged schema file)",
        ))
    }
}
