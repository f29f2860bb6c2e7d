//! Running the `fleetsync` binary under test.
//!
//! The binary is `$FLEETSYNC_BIN`, or `target/<profile>/fleetsync` next to the test executable
//! (`target/<profile>/deps/e2e-…`), so `cargo build --workspace` before `cargo test` is enough.
//! A long-running `fleetsync run` writes stdout and stderr to `fleetsync.log` beside its config
//! (appended across restarts, with a marker line per start) and is SIGKILLed on drop. Other
//! long-running subcommands (`agent`, `coordinator`) go through [`Fleetsync::spawn`], each with
//! its own log file.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::compare::diff_databases;
use crate::mariadb::{file_tail, MariaDb};

/// Default time a one-shot command (`status`, a `run` expected to fail) may take.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(60);
/// Lines of the fleetsync log shown when a wait fails.
const LOG_TAIL_LINES: usize = 40;

/// Path of the fleetsync binary under test.
pub fn fleetsync_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("FLEETSYNC_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let deps = exe.parent().unwrap_or(Path::new("."));
    deps.parent().unwrap_or(deps).join("fleetsync")
}

/// A long-running `fleetsync` process (`run --config FILE`, or any subcommand through
/// [`Fleetsync::spawn`]).
pub struct Fleetsync {
    child: Child,
    config: PathBuf,
    log: PathBuf,
    starts: u32,
    /// The arguments, for restarts.
    args: Vec<OsString>,
    /// What the process is, for messages (`fleetsync run`, `fleetsync agent`, …).
    name: String,
}

impl Fleetsync {
    /// Writes `toml_text` to `dir/fleetsync.toml` and returns its path.
    pub fn write_config(dir: &Path, toml_text: &str) -> Result<PathBuf> {
        let path = dir.join("fleetsync.toml");
        std::fs::write(&path, toml_text).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// Spawns `fleetsync run --config CONFIG` with `RUST_LOG=info` (unless set).
    pub fn run(config: &Path) -> Result<Fleetsync> {
        let log = config.with_file_name("fleetsync.log");
        let args = vec![OsString::from("run"), "--config".into(), config.into()];
        Self::spawn_logged(args, config, &log)
    }

    /// Spawns `fleetsync SUBCOMMAND --config CONFIG [EXTRA...]` (e.g. `agent`, `coordinator`)
    /// with `RUST_LOG=info` (unless set); output goes to `SUBCOMMAND.log` beside the config.
    pub fn spawn(subcommand: &str, config: &Path, extra: &[&str]) -> Result<Fleetsync> {
        let log = config.with_file_name(format!("{subcommand}.log"));
        let mut args = vec![OsString::from(subcommand), "--config".into(), config.into()];
        args.extend(extra.iter().map(OsString::from));
        Self::spawn_logged(args, config, &log)
    }

    /// Spawns `fleetsync ARGS` writing to `log`; `config` is what [`Fleetsync::config`] gives.
    pub fn spawn_logged(args: Vec<OsString>, config: &Path, log: &Path) -> Result<Fleetsync> {
        let name = match args.first() {
            Some(sub) => format!("fleetsync {}", sub.to_string_lossy()),
            None => "fleetsync".to_string(),
        };
        let child = spawn_cmd(&args, log, 1)?;
        Ok(Fleetsync {
            child,
            config: config.to_path_buf(),
            log: log.to_path_buf(),
            starts: 1,
            args,
            name,
        })
    }

    /// What the process is, e.g. `fleetsync agent`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many times the process has been started.
    pub fn starts(&self) -> u32 {
        self.starts
    }

    /// Starts the process again with the same config (after `kill9` or an exit).
    pub fn restart(&mut self) -> Result<()> {
        if self.child.try_wait()?.is_none() {
            bail!(
                "{} (pid {}) is still running; stop it before restarting",
                self.name,
                self.pid()
            );
        }
        self.starts += 1;
        self.child = spawn_cmd(&self.args, &self.log, self.starts)?;
        Ok(())
    }

    /// CPU seconds (user + system) the running process has used so far.
    pub fn cpu_seconds(&self) -> Result<f64> {
        proc_cpu_seconds(self.pid())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn config(&self) -> &Path {
        &self.config
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `n` lines of the log (all starts).
    pub fn log_tail(&self, n: usize) -> String {
        file_tail(&self.log, n)
    }

    /// SIGKILL, then reap the process.
    pub fn kill9(&mut self) -> Result<()> {
        if self.child.try_wait()?.is_none() {
            self.child
                .kill()
                .with_context(|| format!("SIGKILL {}", self.name))?;
        }
        self.child
            .wait()
            .with_context(|| format!("reaping {}", self.name))?;
        Ok(())
    }

    /// Sends SIGTERM (a graceful stop); see [`Fleetsync::wait_exit`].
    pub fn terminate(&mut self) -> Result<()> {
        if self.child.try_wait()?.is_some() {
            return Ok(());
        }
        let pid = i32::try_from(self.pid()).context("pid out of range")?;
        kill(Pid::from_raw(pid), Signal::SIGTERM)
            .with_context(|| format!("SIGTERM {}", self.name))?;
        Ok(())
    }

    /// Waits for the process to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!(
                    "{} (pid {}) still running after {timeout:?}; log tail:\n{}",
                    self.name,
                    self.pid(),
                    self.log_tail(LOG_TAIL_LINES)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM and wait for a clean exit (status 0); SIGKILL and fail if it does not exit
    /// within `timeout`, fail with the log tail if it exits with an error.
    pub async fn stop(&mut self, timeout: Duration) -> Result<ExitStatus> {
        self.terminate()?;
        let status = match self.wait_exit(timeout).await {
            Ok(status) => status,
            Err(e) => {
                let _ = self.kill9();
                let what = format!("{} did not stop on SIGTERM", self.name);
                return Err(e.context(what));
            }
        };
        if !status.success() {
            bail!(
                "{} exited with {status} on SIGTERM; log tail:\n{}",
                self.name,
                self.log_tail(LOG_TAIL_LINES)
            );
        }
        Ok(status)
    }

    /// Fails with the log tail when the process has exited.
    pub fn ensure_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited unexpectedly ({status}); log {}:\n{}",
                self.name,
                self.log.display(),
                self.log_tail(LOG_TAIL_LINES)
            );
        }
        Ok(())
    }

    /// Polls until `db` is equal row by row on both servers, failing early if the process
    /// exits; on timeout the error holds the last diff and the log tail.
    pub async fn wait_synced(
        &mut self,
        source: &MariaDb,
        target: &MariaDb,
        db: &str,
        timeout: Duration,
    ) -> Result<()> {
        self.wait_synced_dbs(source, target, &[db], timeout).await
    }

    /// [`Fleetsync::wait_synced`] for several databases at once.
    pub async fn wait_synced_dbs(
        &mut self,
        source: &MariaDb,
        target: &MariaDb,
        dbs: &[&str],
        timeout: Duration,
    ) -> Result<()> {
        wait_synced_procs(&mut [self], source, target, dbs, timeout).await
    }
}

/// Polls until every database of `dbs` is equal row by row on both servers, failing early if
/// any of `procs` exits (e.g. an agent and a coordinator); on timeout the error holds the last
/// diff and each process's log tail.
pub async fn wait_synced_procs(
    procs: &mut [&mut Fleetsync],
    source: &MariaDb,
    target: &MariaDb,
    dbs: &[&str],
    timeout: Duration,
) -> Result<()> {
    let start = Instant::now();
    let mut poll = Duration::from_millis(100);
    loop {
        for p in procs.iter_mut() {
            p.ensure_running()?;
        }
        let last = match diff_all(source, target, dbs).await {
            Ok(None) => return Ok(()),
            Ok(Some(diff)) => diff,
            // A table renamed or dropped under the check: try again.
            Err(e) => format!("{e:#}"),
        };
        if start.elapsed() >= timeout {
            let logs: Vec<String> = procs
                .iter()
                .map(|p| {
                    format!(
                        "{} log {}:\n{}",
                        p.name(),
                        p.log_path().display(),
                        p.log_tail(LOG_TAIL_LINES)
                    )
                })
                .collect();
            bail!("not synced after {timeout:?}: {last}\n{}", logs.join("\n"));
        }
        tokio::time::sleep(poll).await;
        poll = (poll * 2).min(Duration::from_secs(1));
    }
}

/// CPU seconds (user + system) process `pid` has used so far, from `/proc/<pid>/stat` (in
/// USER_HZ = 100 ticks a second on Linux): a fleetsync process, a mariadbd or a Kafka node.
pub fn proc_cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks = |i: usize| -> Result<f64> {
        Ok(fields.get(i).context("short /proc stat")?.parse::<f64>()?)
    };
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

impl Drop for Fleetsync {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn diff_all(source: &MariaDb, target: &MariaDb, dbs: &[&str]) -> Result<Option<String>> {
    let mut diffs = Vec::new();
    for db in dbs {
        if let Some(d) = diff_databases(source, target, db, db).await? {
            diffs.push(d);
        }
    }
    Ok((!diffs.is_empty()).then(|| diffs.join("\n")))
}

fn spawn_cmd(args: &[OsString], log: &Path, start: u32) -> Result<Child> {
    use std::io::Write;
    let mut out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    writeln!(out, "===== fleetsync test harness: start #{start} =====")?;
    let err = out.try_clone()?;
    let bin = fleetsync_bin();
    let mut cmd = Command::new(&bin);
    cmd.args(args);
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "info");
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .with_context(|| format!("spawning {} (build it with cargo build)", bin.display()))
}

/// Runs `fleetsync ARGS` to completion with [`CMD_TIMEOUT`].
pub async fn fleetsync_cmd(args: &[&str]) -> Result<Output> {
    fleetsync_cmd_with(args, &[], CMD_TIMEOUT).await
}

/// Runs `fleetsync ARGS` with extra environment variables; kills it and fails after `timeout`.
pub async fn fleetsync_cmd_with(
    args: &[&str],
    env: &[(&str, &str)],
    timeout: Duration,
) -> Result<Output> {
    let bin = fleetsync_bin();
    let mut cmd = tokio::process::Command::new(&bin);
    cmd.args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd
        .spawn()
        .with_context(|| format!("spawning {} (build it with cargo build)", bin.display()))?;
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(out) => Ok(out?),
        Err(_) => Err(anyhow!(
            "`fleetsync {}` still running after {timeout:?}",
            args.join(" ")
        )),
    }
}

/// Parses `fleetsync status --config CONFIG --json`.
pub async fn status_json(config: &Path) -> Result<serde_json::Value> {
    let config = config.to_str().context("config path is not UTF-8")?;
    let out = fleetsync_cmd(&["status", "--config", config, "--json"]).await?;
    if !out.status.success() {
        bail!(
            "fleetsync status failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "fleetsync status printed invalid JSON: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// A TOML basic string.
pub fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn toml_list(items: &[&str]) -> String {
    let items: Vec<String> = items.iter().map(|s| toml_str(s)).collect();
    format!("[{}]", items.join(", "))
}

/// Builds a fleetsync config in the documented format.
#[derive(Debug, Clone)]
pub struct ConfigBuilder {
    text: String,
}

impl ConfigBuilder {
    /// `state_dir` and a `[metrics]` section on a port the OS picks.
    pub fn new(state_dir: &Path) -> Self {
        let text = format!(
            "state_dir = {}\n\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
            toml_str(&state_dir.to_string_lossy())
        );
        ConfigBuilder { text }
    }

    /// A `[[servers]]` entry.
    pub fn server(self, name: &str, url: &str) -> Self {
        self.server_with(name, url, &[])
    }

    /// A `[[servers]]` entry with extra raw `key = value` lines (values already TOML).
    pub fn server_with(mut self, name: &str, url: &str, extra: &[(&str, &str)]) -> Self {
        self.text.push_str(&format!(
            "\n[[servers]]\nname = {}\nurl = {}\n",
            toml_str(name),
            toml_str(url)
        ));
        for (k, v) in extra {
            self.text.push_str(&format!("{k} = {v}\n"));
        }
        self
    }

    /// A `[[syncs]]` entry; `exclude` is left out when empty.
    pub fn sync(
        mut self,
        name: &str,
        source: &str,
        targets: &[&str],
        include: &[&str],
        exclude: &[&str],
    ) -> Self {
        self.text.push_str(&format!(
            "\n[[syncs]]\nname = {}\nsource = {}\ntargets = {}\ninclude = {}\n",
            toml_str(name),
            toml_str(source),
            toml_list(targets),
            toml_list(include)
        ));
        if !exclude.is_empty() {
            self.text
                .push_str(&format!("exclude = {}\n", toml_list(exclude)));
        }
        self
    }

    /// A `[bus]` section for Kafka (`topic_prefix` and `compression` left at their defaults:
    /// topics are `fleetsync.<server>`). `replication_factor`: the cluster's node count, 1 or
    /// 3 (fleetsync refuses a topic with fewer replicas than configured, and never lowers it).
    pub fn kafka_bus(mut self, brokers: &str, replication_factor: usize) -> Self {
        self.text.push_str(&format!(
            "\n[bus]\nkind = \"kafka\"\nbrokers = {}\nreplication_factor = {replication_factor}\n",
            toml_str(brokers)
        ));
        self
    }

    /// Appends raw TOML text.
    pub fn raw(mut self, text: &str) -> Self {
        self.text.push_str(text);
        self
    }

    pub fn build(self) -> String {
        self.text
    }
}

/// The usual one-source, one-target config: servers `src` and `dst`, sync `s1`.
pub fn simple_config(
    state_dir: &Path,
    source_url: &str,
    target_url: &str,
    include: &[&str],
) -> String {
    ConfigBuilder::new(state_dir)
        .server("src", source_url)
        .server("dst", target_url)
        .sync("s1", "src", &["dst"], include, &[])
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_strings_escape_backslashes() {
        assert_eq!(toml_str(r"app\..*"), r#""app\\..*""#);
        let cfg = simple_config(Path::new("/s"), "mysql://a", "mysql://b", &[r"app\..*"]);
        assert!(cfg.contains("include = [\"app\\\\..*\"]"), "{cfg}");
        assert!(cfg.contains("targets = [\"dst\"]"), "{cfg}");
    }
}
