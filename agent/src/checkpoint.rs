//! The agent's checkpoints, kept in sled under `state_dir`.
//!
//! One key per subscription (`sync/target`): the source position up to which the consumer has
//! acknowledged. It is written only after the acknowledgement, so it never runs ahead of what
//! targets hold; targets keep their own applied position in the same transaction as the rows,
//! which is authoritative when the two differ.

use std::path::Path;

use fleetsync_proto::Position;

/// sled's page cache: small, the store holds a handful of keys.
const CACHE_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Clone)]
pub struct CheckpointStore {
    db: sled::Db,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint store {path}: {source}")]
    Open { path: String, source: sled::Error },
    #[error("checkpoint store: {0}")]
    Io(#[from] sled::Error),
    #[error("checkpoint store: corrupt entry {key}: {message}")]
    Corrupt { key: String, message: String },
}

impl CheckpointStore {
    pub fn open(dir: &Path) -> Result<Self, CheckpointError> {
        Self::open_named(dir, "checkpoints")
    }

    /// A store in `dir/<name>.sled` (one process may hold a sled store at a time). `dir` and
    /// the store are made owner-only (0700/0600, see [`crate::owner_only`]): sled creates its
    /// files with the process umask, so their modes are tightened after opening, and the
    /// store's directory keeps files sled adds later out of other users' reach.
    pub fn open_named(dir: &Path, name: &str) -> Result<Self, CheckpointError> {
        let path = dir.join(format!("{name}.sled"));
        let open_error = |e: std::io::Error| CheckpointError::Open {
            path: path.display().to_string(),
            source: sled::Error::Io(e),
        };
        crate::owner_only::private_dir(dir).map_err(open_error)?;
        crate::owner_only::private_dir(&path).map_err(open_error)?;
        let db = sled::Config::new()
            .path(&path)
            .cache_capacity(CACHE_BYTES)
            .open()
            .map_err(|source| CheckpointError::Open {
                path: path.display().to_string(),
                source,
            })?;
        crate::owner_only::restrict_tree(&path).map_err(open_error)?;
        Ok(CheckpointStore { db })
    }

    fn key(sync: &str, target: &str) -> String {
        format!("ckpt/{sync}/{target}")
    }

    pub fn get(&self, sync: &str, target: &str) -> Result<Option<Position>, CheckpointError> {
        let key = Self::key(sync, target);
        match self.db.get(key.as_bytes())? {
            None => Ok(None),
            Some(v) => {
                let s = String::from_utf8_lossy(&v).into_owned();
                s.parse::<Position>()
                    .map(Some)
                    .map_err(|e| CheckpointError::Corrupt {
                        key,
                        message: e.to_string(),
                    })
            }
        }
    }

    /// Records an acknowledged position. Durable once sled flushes (at most ~0.5 s later, or
    /// at [`CheckpointStore::flush`]); losing the tail only means resuming a little earlier.
    pub fn put(&self, sync: &str, target: &str, pos: &Position) -> Result<(), CheckpointError> {
        self.db.insert(
            Self::key(sync, target).as_bytes(),
            pos.to_string().as_bytes(),
        )?;
        Ok(())
    }

    /// A position under an arbitrary key (e.g. `agent/<server>` for a Kafka agent).
    pub fn get_key(&self, key: &str) -> Result<Option<Position>, CheckpointError> {
        match self.db.get(key.as_bytes())? {
            None => Ok(None),
            Some(v) => {
                let s = String::from_utf8_lossy(&v).into_owned();
                s.parse::<Position>()
                    .map(Some)
                    .map_err(|e| CheckpointError::Corrupt {
                        key: key.to_string(),
                        message: e.to_string(),
                    })
            }
        }
    }

    pub fn put_key(&self, key: &str, pos: &Position) -> Result<(), CheckpointError> {
        self.db.insert(key.as_bytes(), pos.to_string().as_bytes())?;
        Ok(())
    }

    pub fn remove_key(&self, key: &str) -> Result<(), CheckpointError> {
        self.db.remove(key.as_bytes())?;
        self.db.flush()?;
        Ok(())
    }

    pub fn remove(&self, sync: &str, target: &str) -> Result<(), CheckpointError> {
        self.db.remove(Self::key(sync, target).as_bytes())?;
        self.db.flush()?;
        Ok(())
    }

    pub fn flush(&self) -> Result<(), CheckpointError> {
        self.db.flush()?;
        Ok(())
    }
}
