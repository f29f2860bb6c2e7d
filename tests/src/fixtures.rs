//! The TrinityCore schema fixtures (auth, characters, world).
//!
//! They are TrinityCore's files under its own licence and are never copied into this
//! repository: tests read them from `$FLEETSYNC_TRINITYCORE_DIR`, by default
//! `<repo root>/../shared/fixtures/trinitycore`, and skip (saying so) when they are absent.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;

use crate::mariadb::{quote_ident, MariaDb};

/// The three TrinityCore databases and their dump files.
pub const TRINITYCORE_DATABASES: [(&str, &str); 3] = [
    ("auth", "auth_database.sql"),
    ("characters", "characters_database.sql"),
    ("world", "world_database.sql"),
];

/// The repository root (the parent of this crate's dir).
pub fn repo_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// Where the fixtures are expected.
pub fn trinitycore_dir() -> PathBuf {
    match std::env::var_os("FLEETSYNC_TRINITYCORE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => repo_root().join("../shared/fixtures/trinitycore"),
    }
}

/// The fixtures dir if every file is there; otherwise prints the SKIPPED line and returns
/// `None` (the caller returns early).
pub fn trinitycore_fixtures(test: &str) -> Option<PathBuf> {
    let dir = trinitycore_dir();
    let complete = TRINITYCORE_DATABASES
        .iter()
        .all(|(_, f)| dir.join(f).is_file());
    if complete {
        Some(dir)
    } else {
        // Straight to stderr, past the test harness's output capture, so the skip shows.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: TrinityCore fixtures not found at {}",
            dir.display()
        );
        None
    }
}

/// Creates the `auth`, `characters` and `world` databases on `db` and loads each dump into
/// its database, like `mariadb DB < file`.
pub async fn load_trinitycore(db: &MariaDb, dir: &std::path::Path) -> Result<()> {
    for (name, file) in TRINITYCORE_DATABASES {
        db.exec(&format!("CREATE DATABASE {}", quote_ident(name)))
            .await?;
        db.load_sql_file_into(Some(name), &dir.join(file)).await?;
    }
    Ok(())
}
