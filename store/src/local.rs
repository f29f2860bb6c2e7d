//! The local-directory backend.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::stream::{self, BoxStream, StreamExt};

use crate::{check_key, Entry, StoreError};

#[derive(Debug, Clone)]
pub(crate) struct Local {
    root: PathBuf,
}

impl Local {
    pub(crate) fn new(root: PathBuf) -> Local {
        Local { root }
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    fn fail(&self, key: &str, e: impl std::fmt::Display) -> StoreError {
        StoreError::Failed {
            location: self.root.display().to_string(),
            detail: if key.is_empty() {
                e.to_string()
            } else {
                format!("{key}: {e}")
            },
        }
    }

    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        check_key(key).map_err(|e| self.fail("", e))?;
        Ok(self.root.join(key))
    }

    fn not_found(&self, key: &str) -> StoreError {
        StoreError::NotFound {
            location: self.root.display().to_string(),
            key: key.to_string(),
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| self.fail("", e))?
    }

    pub(crate) async fn check(&self) -> Result<(), StoreError> {
        let (root, me) = (self.root.clone(), self.clone());
        self.blocking(move || create_dirs(&root).map_err(|e| me.fail("", e)))
            .await
    }

    pub(crate) async fn put(&self, key: &str, bytes: Bytes) -> Result<(), StoreError> {
        let path = self.path(key)?;
        let (me, key) = (self.clone(), key.to_string());
        self.blocking(move || write_atomic(&path, &bytes).map_err(|e| me.fail(&key, e)))
            .await
    }

    pub(crate) async fn put_file(&self, key: &str, src: &Path) -> Result<(), StoreError> {
        let path = self.path(key)?;
        let (me, key, src) = (self.clone(), key.to_string(), src.to_path_buf());
        self.blocking(move || {
            let tmp = tmp_path(&path);
            if let Some(d) = path.parent() {
                create_dirs(d).map_err(|e| me.fail(&key, e))?;
            }
            std::fs::copy(&src, &tmp).map_err(|e| me.fail(&key, e))?;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| me.fail(&key, e))?;
            std::fs::File::open(&tmp)
                .and_then(|f| f.sync_all())
                .and_then(|_| std::fs::rename(&tmp, &path))
                .and_then(|_| sync_parent(&path))
                .map_err(|e| me.fail(&key, e))
        })
        .await
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        let path = self.path(key)?;
        let (me, key) = (self.clone(), key.to_string());
        self.blocking(move || match std::fs::read(&path) {
            Ok(b) => Ok(Bytes::from(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(me.not_found(&key)),
            Err(e) => Err(me.fail(&key, e)),
        })
        .await
    }

    pub(crate) async fn get_stream(
        &self,
        key: &str,
    ) -> Result<BoxStream<'static, Result<Bytes, StoreError>>, StoreError> {
        use tokio::io::AsyncReadExt;
        let path = self.path(key)?;
        let file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(self.not_found(key)),
            Err(e) => return Err(self.fail(key, e)),
        };
        let (me, key) = (self.clone(), key.to_string());
        Ok(stream::unfold(Some(file), move |f| {
            let (me, key) = (me.clone(), key.clone());
            async move {
                let mut f = f?;
                let mut buf = vec![0u8; 1 << 20];
                match f.read(&mut buf).await {
                    Ok(0) => None,
                    Ok(n) => {
                        buf.truncate(n);
                        Some((Ok(Bytes::from(buf)), Some(f)))
                    }
                    Err(e) => Some((Err(me.fail(&key, e)), None)),
                }
            }
        })
        .boxed())
    }

    pub(crate) async fn size(&self, key: &str) -> Result<Option<u64>, StoreError> {
        let path = self.path(key)?;
        match tokio::fs::metadata(&path).await {
            Ok(m) if m.is_file() => Ok(Some(m.len())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.fail(key, e)),
        }
    }

    pub(crate) async fn list(&self, prefix: &str) -> Result<Vec<Entry>, StoreError> {
        let prefix = prefix.trim_matches('/').to_string();
        let me = self.clone();
        self.blocking(move || {
            let start = if prefix.is_empty() {
                me.root.clone()
            } else {
                me.path(&prefix)?
            };
            let mut out = Vec::new();
            walk(&me.root, &start, &mut out).map_err(|e| me.fail(&prefix, e))?;
            Ok(out)
        })
        .await
    }

    pub(crate) async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let prefix = prefix.trim_matches('/').to_string();
        let me = self.clone();
        self.blocking(move || {
            let dir = if prefix.is_empty() {
                me.root.clone()
            } else {
                me.path(&prefix)?
            };
            let rd = match std::fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(me.fail(&prefix, e)),
            };
            let mut out = Vec::new();
            for e in rd {
                let e = e.map_err(|e| me.fail(&prefix, e))?;
                if e.file_type().map_err(|x| me.fail(&prefix, x))?.is_dir() {
                    out.push(e.file_name().to_string_lossy().into_owned());
                }
            }
            Ok(out)
        })
        .await
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.fail(key, e)),
        }
    }

    pub(crate) async fn delete_prefix(&self, prefix: &str) -> Result<u64, StoreError> {
        let n = self.list(prefix).await?.len() as u64;
        let path = self.path(prefix.trim_matches('/'))?;
        match tokio::fs::remove_dir_all(&path).await {
            Ok(()) => Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(self.fail(prefix, e)),
        }
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(d) => std::fs::File::open(d)?.sync_all(),
        None => Ok(()),
    }
}

/// Creates `dir` and its missing parents, readable by the owner only (backups hold the data).
fn create_dirs(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Writes `bytes` to `path` through `path.tmp` (mode 0600), fsynced, renamed, directory
/// fsynced.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(d) = path.parent() {
        create_dirs(d)?;
    }
    let tmp = tmp_path(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    sync_parent(path)
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<Entry>) -> std::io::Result<()> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => return Ok(()),
        Err(e) => return Err(e),
    };
    for e in rd {
        let e = e?;
        let ft = e.file_type()?;
        let p = e.path();
        if ft.is_dir() {
            walk(root, &p, out)?;
        } else if ft.is_file() {
            let Ok(rel) = p.strip_prefix(root) else {
                continue;
            };
            let key = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            out.push(Entry {
                key,
                size: e.metadata()?.len(),
            });
        }
    }
    Ok(())
}
