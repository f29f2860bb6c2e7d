//! `backup verify`: proves a backup is intact and readable, without touching any server.
//!
//! Phase 1 needs no key: every file listed in the manifest exists with the recorded size and
//! SHA-256. Phase 2 decrypts (with the configured key) and decompresses every file, and
//! checks that each data file is whole `INSERT` statements, one per line, as many as the
//! manifest says. The first failure is reported naming the file. Files are processed on
//! `threads` OS threads (this is CPU work: hashing, decryption, decompression).

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::files::{check_framing, read_checked, read_plain};
use super::manifest::{self, FileEntry, Manifest, Status};
use super::{BackupError, Settings};

/// What verification covered.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct VerifyReport {
    pub files: usize,
    pub bytes: u64,
    pub rows: u64,
    pub statements: u64,
}

/// Verifies backup `m` stored under `dir`.
pub fn verify(dir: &Path, m: &Manifest, settings: &Settings) -> Result<VerifyReport, BackupError> {
    verify_with(dir, m, settings, &|| false)
}

/// [`verify`], asking `cancelled` before each file: once it answers true, no further file is
/// read and the result is [`BackupError::Cancelled`].
pub fn verify_with(
    dir: &Path,
    m: &Manifest,
    settings: &Settings,
    cancelled: &(dyn Fn() -> bool + Sync),
) -> Result<VerifyReport, BackupError> {
    let check = || {
        if cancelled() {
            Err(BackupError::Cancelled)
        } else {
            Ok(())
        }
    };
    let root = manifest::backup_dir(dir, &m.id)?;
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
    let data: std::collections::HashSet<&str> = m
        .tables
        .iter()
        .flat_map(|t| t.files.iter().map(|f| f.name.as_str()))
        .collect();
    let threads = settings.threads.max(1);
    par_each(&files, threads, |f| {
        check()?;
        read_checked(&root, f).map(|_| ())
    })?;
    let codec = settings.codec_for(m)?;
    par_each(&files, threads, |f| {
        check()?;
        let is_data = data.contains(f.name.as_str());
        let plain = read_plain(&root, f, &codec, is_data)?;
        if is_data {
            check_framing(&plain, f.statements)
                .map_err(|e| BackupError::file(&root.join(&f.name), e))
        } else if plain.starts_with(b"CREATE ") {
            Ok(())
        } else {
            Err(BackupError::file(
                &root.join(&f.name),
                "not a CREATE statement (damaged schema file)",
            ))
        }
    })?;
    Ok(VerifyReport {
        files: files.len(),
        bytes: files.iter().map(|f| f.bytes).sum(),
        rows: m.total_rows,
        statements: files.iter().map(|f| f.statements).sum(),
    })
}

/// Runs `f` on every item on `threads` threads; the error of the lowest-indexed failing item.
pub fn par_each<T: Sync>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> Result<(), BackupError> + Sync,
) -> Result<(), BackupError> {
    let next = AtomicUsize::new(0);
    let errors: Mutex<Vec<(usize, BackupError)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads.min(items.len()).max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i) else { return };
                if let Err(e) = f(item) {
                    if let Ok(mut errs) = errors.lock() {
                        errs.push((i, e));
                    }
                    // Stop handing out work.
                    next.store(items.len(), Ordering::Relaxed);
                    return;
                }
            });
        }
    });
    let mut errs = errors.into_inner().unwrap_or_default();
    errs.sort_by_key(|(i, _)| *i);
    match errs.into_iter().next() {
        Some((_, e)) => Err(e),
        None => Ok(()),
    }
}
