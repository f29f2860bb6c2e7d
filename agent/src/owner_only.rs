//! Files and directories fleetsync creates at rest are its owner's only: directories 0700,
//! files 0600. That covers the state dir and its sled checkpoint stores, backups, binlog
//! archives, exports and data-diff repair scripts: they hold row data and positions, and the
//! process umask (often 022) is not trusted to be strict enough.
//!
//! Every such creation goes through this module. Modes are given at creation (no window in
//! which another user could open the file) and set again on files that already existed, since
//! a mode only applies when a file is created. Directories the operator names that already
//! exist (a shared backup volume) are left as they are; only `state_dir`, which fleetsync owns,
//! is tightened when found looser ([`private_dir`]). Non-Unix systems get the plain calls.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

/// Mode of directories fleetsync creates.
pub const DIR_MODE: u32 = 0o700;
/// Mode of files fleetsync creates.
pub const FILE_MODE: u32 = 0o600;

/// `create_dir_all` with every created component 0700.
pub fn create_dir_all(path: &Path) -> io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, DIR_MODE);
    b.create(path)
}

/// `create_dir` (fails when it exists) with mode 0700.
pub fn create_dir(path: &Path) -> io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, DIR_MODE);
    b.create(path)
}

/// A directory fleetsync owns (the state dir, a sled store): created 0700, or made 0700 when
/// it exists with a looser mode.
pub fn private_dir(path: &Path) -> io::Result<()> {
    create_dir_all(path)?;
    set_mode(path, DIR_MODE)
}

/// `OpenOptions` whose created files get mode 0600; add the access flags.
pub fn options() -> OpenOptions {
    let mut o = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, FILE_MODE);
    o
}

/// `File::create` with mode 0600 (also on a file that existed before).
pub fn create(path: &Path) -> io::Result<File> {
    let f = options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))?;
    }
    Ok(f)
}

/// `fs::write` with mode 0600.
pub fn write(path: &Path, contents: impl AsRef<[u8]>) -> io::Result<()> {
    use std::io::Write;
    create(path)?.write_all(contents.as_ref())
}

/// Makes everything under `root` (included) owner-only: for stores whose files a library
/// creates (sled), after opening them.
pub fn restrict_tree(root: &Path) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(root)?;
    if meta.is_dir() {
        set_mode(root, DIR_MODE)?;
        for entry in std::fs::read_dir(root)? {
            restrict_tree(&entry?.path())?;
        }
        Ok(())
    } else if meta.is_file() {
        set_mode(root, FILE_MODE)
    } else {
        Ok(())
    }
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let current = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if current == mode {
        return Ok(());
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> io::Result<()> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    #[test]
    fn created_owner_only() {
        let dir = std::env::temp_dir().join(format!("fleetsync-owner-only-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let nested = dir.join("a/b");
        create_dir_all(&nested).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(mode(&dir), DIR_MODE);
        assert_eq!(mode(&nested), DIR_MODE);
        let f = nested.join("f");
        std::fs::write(&f, b"loose").unwrap_or_else(|e| panic!("{e}"));
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644))
            .unwrap_or_else(|e| panic!("{e}"));
        write(&f, b"tight").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(mode(&f), FILE_MODE, "an existing file is tightened");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("{e}"));
        private_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(mode(&dir), DIR_MODE);
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644))
            .unwrap_or_else(|e| panic!("{e}"));
        restrict_tree(&dir).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(mode(&f), FILE_MODE);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
