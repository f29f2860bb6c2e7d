//! The `disk_space` check: free space on the filesystems of the server's data directory, its
//! binlog directory and `[backup] dir`.
//!
//! The server's directories are measured with statvfs only when the server runs on this
//! machine: its host is a loopback address (or a socket) and its `@@datadir` is visible here
//! and looks like a data directory (holds `mysql/` or `ibdata1`). For a remote server they
//! are listed as skipped (free space there is not visible from here). A local backup directory
//! is measured (fleetsync writes it); when it does not exist yet, its nearest existing parent
//! is. A bucket (`[backup] dir = "s3://..."`) has no free space to measure: the caller passes
//! no backup directory then, and it is not listed.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use fleetsync_proto::health::{CheckResult, CheckStatus};
use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use serde_json::{json, Value};

use super::{result, Ctx};

/// Free space of one filesystem.
#[derive(Debug, Clone, Copy)]
pub struct Space {
    pub total_bytes: u64,
    pub free_bytes: u64,
}

impl Space {
    pub fn free_pct(&self) -> f64 {
        if self.total_bytes == 0 {
            return 100.0;
        }
        self.free_bytes as f64 * 100.0 / self.total_bytes as f64
    }
}

/// statvfs of `path` (free = blocks available to unprivileged users).
pub fn space(path: &Path) -> Result<Space, String> {
    let s =
        nix::sys::statvfs::statvfs(path).map_err(|e| format!("statvfs {}: {e}", path.display()))?;
    let frag = s.fragment_size() as u64;
    Ok(Space {
        total_bytes: (s.blocks() as u64).saturating_mul(frag),
        free_bytes: (s.blocks_available() as u64).saturating_mul(frag),
    })
}

fn is_local_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn looks_like_datadir(dir: &Path) -> bool {
    dir.join("mysql").is_dir() || dir.join("ibdata1").is_file()
}

fn existing_ancestor(path: &Path) -> Option<PathBuf> {
    path.ancestors().find(|p| p.exists()).map(Path::to_path_buf)
}

/// `disk_space`.
pub async fn disk_space(conn: &mut Conn, ctx: &Ctx<'_>) -> Result<CheckResult, mysql_async::Error> {
    let row: Option<(String, Option<String>)> = conn
        .query_first("SELECT @@datadir, @@log_bin_basename")
        .await?;
    let (datadir, binlog_base) = row.unwrap_or_default();
    let host = ctx.target.opts.ip_or_hostname().to_string();
    let datadir = PathBuf::from(datadir);
    let local = ctx.target.opts.socket().is_some()
        || (is_local_host(&host) && looks_like_datadir(&datadir));
    let mut dirs: Vec<(&str, PathBuf, bool)> = vec![("data", datadir.clone(), local)];
    if let Some(base) = binlog_base.filter(|b| !b.is_empty()) {
        let base = PathBuf::from(base);
        let dir = base.parent().map(Path::to_path_buf).unwrap_or(base);
        dirs.push((
            "binlog",
            if dir.is_relative() {
                datadir.join(dir)
            } else {
                dir
            },
            local,
        ));
    }
    if let Some(b) = &ctx.target.backup_dir {
        dirs.push(("backup", b.clone(), true));
    }
    let (warn, fail) = (ctx.cfg.disk_warn_free_pct, ctx.cfg.disk_fail_free_pct);
    let mut entries: Vec<Value> = Vec::new();
    // Worst status among the directories measured; `None`: none could be measured.
    let mut worst: Option<CheckStatus> = None;
    let note = |w: &mut Option<CheckStatus>, s: CheckStatus| *w = Some(w.map_or(s, |x| x.max(s)));
    let mut findings = Vec::new();
    for (role, path, measurable) in dirs {
        if !measurable {
            entries.push(json!({"directory": role, "path": path, "status": "skipped",
                                "reason": format!("server {host} is not on this machine (or its data directory is not visible here)")}));
            continue;
        }
        let measured = existing_ancestor(&path)
            .ok_or_else(|| format!("{} does not exist", path.display()))
            .and_then(|p| space(&p));
        match measured {
            Ok(s) => {
                let pct = s.free_pct();
                let status = if pct < fail {
                    CheckStatus::Fail
                } else if pct < warn {
                    CheckStatus::Warn
                } else {
                    CheckStatus::Pass
                };
                if status != CheckStatus::Pass {
                    findings.push(format!(
                        "{role} directory {}: {:.1}% free",
                        path.display(),
                        pct
                    ));
                }
                note(&mut worst, status);
                entries.push(json!({"directory": role, "path": path, "status": status, "total_bytes": s.total_bytes,
                                    "free_bytes": s.free_bytes, "free_pct": (pct * 100.0).round() / 100.0}));
            }
            Err(e) => {
                note(&mut worst, CheckStatus::Warn);
                findings.push(format!("{role} directory: {e}"));
                entries
                    .push(json!({"directory": role, "path": path, "status": "warn", "error": e}));
            }
        }
    }
    let worst = worst.unwrap_or(CheckStatus::Skipped);
    let evidence =
        json!({"directories": entries, "warn_below_free_pct": warn, "fail_below_free_pct": fail});
    let summary = match worst {
        CheckStatus::Skipped => {
            format!("skipped: server {host} is remote, free space not visible here")
        }
        CheckStatus::Pass => {
            let parts: Vec<String> = entries
                .iter()
                .filter_map(|e| {
                    e["free_pct"]
                        .as_f64()
                        .map(|p| format!("{} {p:.1}% free", e["directory"].as_str().unwrap_or("")))
                })
                .collect();
            parts.join(", ")
        }
        _ => findings.join("; "),
    };
    let mut r = result("disk_space", worst, summary, evidence);
    if matches!(worst, CheckStatus::Warn | CheckStatus::Fail) {
        r.suggestions.push(
            "free space: purge old binlogs (PURGE BINARY LOGS, or binlog_expire_logs_seconds), prune backups (fleetsync backup prune), or grow the filesystem".into(),
        );
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_local() {
        assert!(is_local_host("127.0.0.1") && is_local_host("::1") && is_local_host("LOCALHOST"));
        assert!(!is_local_host("db1.example.com") && !is_local_host("10.0.0.5"));
    }

    #[test]
    fn space_of_an_existing_directory() {
        let s = space(Path::new("/")).unwrap_or_else(|e| panic!("{e}"));
        assert!(s.total_bytes > 0 && s.free_bytes <= s.total_bytes);
        let pct = s.free_pct();
        assert!((0.0..=100.0).contains(&pct));
        assert_eq!(
            existing_ancestor(Path::new("/no/such/dir/here")),
            Some(PathBuf::from("/"))
        );
    }
}
