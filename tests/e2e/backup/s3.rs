//! Backups in a bucket: `[backup] dir = "s3://fleet-backups/eu1"` on a real S3-compatible
//! server (SeaweedFS, `fleetsync_tests::s3::S3Server`) and real MariaDB servers.
//!
//! * Round trip create -> list -> verify -> restore from the bucket, row by row; named and
//!   pinned backups against `prune` (keep_last); `backup download` of one backup as a tar
//!   stream checked against the manifest's SHA-256s. Credentials from the environment.
//! * Faults: wrong credentials and a missing bucket refused at start (one line, nothing
//!   written); the S3 server stopped mid-backup (a clean failure, nothing listed, leftovers
//!   removed by the next run); SIGKILL mid multipart upload (the next run removes the
//!   leftovers, marker included, and a new backup restores equal); a tampered object refused
//!   by verify and restore with the target unchanged.
//!
//! Every captured output is checked for the secret key.

use std::time::Instant;

use fleetsync_store::Store;
use fleetsync_tests::s3::{S3Server, SECRET_KEY};
use sha2::{Digest, Sha256};

use super::*;

const BUCKET: &str = "fleet-backups";
const PREFIX: &str = "eu1";

/// Writes `NAME.toml`: servers `src` and `dst`, `[backup]` from `backup` (the s3 lines) and
/// `extra`.
fn write_s3_config(pair: &Pair, name: &str, backup: &str, extra: &str) -> Result<PathBuf> {
    let dir = pair.dir.path();
    let text = format!(
        "state_dir = {}\n\n[[servers]]\nname = \"src\"\nurl = {}\n\n[[servers]]\nname = \"dst\"\nurl = {}\n\n[backup]\n{backup}{extra}\n",
        toml_str(&dir.join("state").to_string_lossy()),
        toml_str(&pair.src.url_root()),
        toml_str(&pair.dst.url_root()),
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Runs fleetsync, recording stdout and stderr in `seen` (checked for the secret at the end).
struct Runner {
    env: Vec<(&'static str, &'static str)>,
    seen: Vec<String>,
}

impl Runner {
    fn new(env: &[(&'static str, &'static str)]) -> Runner {
        let mut all = vec![("RUST_LOG", "info")];
        all.extend_from_slice(env);
        Runner {
            env: all,
            seen: Vec::new(),
        }
    }

    async fn run(&mut self, args: &[&str]) -> Result<Output> {
        let out = fleetsync_cmd_with(args, &self.env, CMD_TIMEOUT).await?;
        self.seen
            .push(String::from_utf8_lossy(&out.stdout).into_owned());
        self.seen
            .push(String::from_utf8_lossy(&out.stderr).into_owned());
        Ok(out)
    }

    async fn ok(&mut self, args: &[&str]) -> Result<String> {
        let out = self.run(args).await?;
        ensure!(
            out.status.success(),
            "`fleetsync {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A command that must fail with one `error:` line containing every needle.
    async fn refused(&mut self, args: &[&str], needles: &[&str]) -> Result<String> {
        let out = self.run(args).await?;
        refusal(args, &out, needles)
    }

    /// `backup create --json` (with `extra` flags): the JSON report.
    async fn create(&mut self, config: &Path, extra: &[&str]) -> Result<serde_json::Value> {
        let mut args = vec![
            "backup",
            "create",
            "--config",
            p(config)?,
            "--server",
            "src",
            "--json",
        ];
        args.extend(extra);
        let out = self.ok(&args).await?;
        let v: serde_json::Value =
            serde_json::from_str(out.trim()).with_context(|| format!("create printed {out:?}"))?;
        ensure!(v["status"] == "complete", "status in {v}");
        Ok(v)
    }

    fn assert_no_secret(&self) -> Result<()> {
        for s in &self.seen {
            ensure!(
                !s.contains(SECRET_KEY),
                "the secret key appears in an output:\n{s}"
            );
        }
        Ok(())
    }
}

/// The ids in `backup list --json`, with status, name and pinned.
async fn listed(r: &mut Runner, c: &str) -> Result<Vec<(String, String, Option<String>, bool)>> {
    let out = r.ok(&["backup", "list", "--config", c, "--json"]).await?;
    let v: serde_json::Value = serde_json::from_str(&out)?;
    Ok(v.as_array()
        .context("list")?
        .iter()
        .map(|b| {
            (
                b["id"].as_str().unwrap_or_default().to_string(),
                b["status"].as_str().unwrap_or_default().to_string(),
                b["name"].as_str().map(str::to_string),
                b["pinned"].as_bool().unwrap_or_default(),
            )
        })
        .collect())
}

/// Keys of every object of backup `id` in the bucket.
async fn objects(store: &Store, id: &str) -> Result<Vec<String>> {
    Ok(store.list(id).await?.into_iter().map(|e| e.key).collect())
}

async fn manifest_of(store: &Store, id: &str) -> Result<serde_json::Value> {
    Ok(serde_json::from_slice(
        &store.get(&format!("{id}/manifest.json")).await?,
    )?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_s3_round_trip_pins_download() -> Result<()> {
    let s3 = S3Server::start(&[BUCKET]).await?;
    let store = s3.store(BUCKET, PREFIX)?;
    let pair = Pair::start().await?;
    let (src, dst) = (&pair.src, &pair.dst);
    load_app(src).await?;
    // Credentials from the environment (no s3_credentials_file).
    let backup = format!(
        "dir = \"s3://{BUCKET}/{PREFIX}\"\ns3_endpoint = \"{}\"\ns3_region = \"us-east-1\"\ns3_path_style = true\n",
        s3.endpoint()
    );
    let config = write_s3_config(
        &pair,
        "s3",
        &backup,
        "chunk_rows = 7\nthreads = 3\nretention = { keep_last = 1 }\n",
    )?;
    let c = p(&config)?.to_string();
    let mut r = Runner::new(&s3.credential_env());

    let first = r
        .create(
            &config,
            &["--include", "app\\..*", "--name", "first", "--pin"],
        )
        .await?;
    ensure!(
        first["name"] == "first" && first["pinned"] == true,
        "{first}"
    );
    ensure!(
        first["dir"]
            .as_str()
            .is_some_and(|d| d.starts_with("s3://fleet-backups/eu1/")),
        "{first}"
    );
    let id1 = first["id"].as_str().context("id")?.to_string();
    let id2 = r.create(&config, &["--include", "app\\..*"]).await?["id"]
        .as_str()
        .context("id")?
        .to_string();
    let id3 = r.create(&config, &["--include", "app\\..*"]).await?["id"]
        .as_str()
        .context("id")?
        .to_string();
    // The manifest is in the bucket, and every file it lists; no in-progress object is left.
    let m1 = manifest_of(&store, &id1).await?;
    ensure!(m1["name"] == "first" && m1["status"] == "complete", "{m1}");
    let keys = objects(&store, &id1).await?;
    ensure!(keys.iter().any(|k| k.ends_with("/pin.json")), "{keys:?}");
    ensure!(
        !keys.iter().any(|k| k.ends_with("running.json")),
        "{keys:?}"
    );
    ensure!(
        keys.iter().filter(|k| k.contains("/data/")).count() > 10,
        "{keys:?}"
    );

    let list = listed(&mut r, &c).await?;
    ensure!(
        list == vec![
            (id1.clone(), "complete".into(), Some("first".into()), true),
            (id2.clone(), "complete".into(), None, false),
            (id3.clone(), "complete".into(), None, false),
        ],
        "list: {list:?}"
    );
    // By name.
    let v = r.ok(&["backup", "verify", "--config", &c, "first"]).await?;
    ensure!(v.contains(&id1) && v.contains("verified"), "verify: {v}");
    let shown = r.ok(&["backup", "show", "--config", &c, "first"]).await?;
    ensure!(
        shown.contains("pinned: yes") && shown.contains("verified: verified"),
        "show: {shown}"
    );
    r.ok(&[
        "backup",
        "restore",
        "--config",
        &c,
        "first",
        "--to-server",
        "dst",
    ])
    .await?;
    assert_app_equal(src, dst, "app").await?;

    // keep_last = 1: the pinned backup is kept and not counted; id3 is the newest unpinned.
    let pruned = r.ok(&["backup", "prune", "--config", &c]).await?;
    ensure!(
        // Ids taken in the same second differ by a suffix (`ID-2`): match whole ids.
        pruned.contains(&format!("deleted {id2}:")) && !pruned.contains(&format!("{id1}:")),
        "prune: {pruned}"
    );
    ensure!(
        objects(&store, &id2).await?.is_empty(),
        "{id2} left objects"
    );
    r.ok(&["backup", "unpin", "--config", &c, "first"]).await?;
    let pruned = r.ok(&["backup", "prune", "--config", &c]).await?;
    ensure!(
        pruned.contains(&format!("deleted {id1}")),
        "prune after unpin: {pruned}"
    );
    ensure!(
        objects(&store, &id1).await?.is_empty(),
        "{id1} left objects"
    );
    r.ok(&["backup", "pin", "--config", &c, &id3]).await?;
    let list = listed(&mut r, &c).await?;
    ensure!(
        list == vec![(id3.clone(), "complete".into(), None, true)],
        "list: {list:?}"
    );

    // Download: a tar stream whose members match the manifest's sizes and SHA-256s.
    let tar_path = pair.dir.path().join("b.tar");
    r.ok(&[
        "backup",
        "download",
        "--config",
        &c,
        &id3,
        "--out",
        p(&tar_path)?,
    ])
    .await?;
    let m3 = manifest_of(&store, &id3).await?;
    let mut want: std::collections::BTreeMap<String, String> = std::collections::BTreeMap::new();
    for t in m3["tables"].as_array().context("tables")? {
        let files = t["files"].as_array().context("files")?.iter();
        for f in files.chain(std::iter::once(&t["schema_file"])) {
            want.insert(
                format!("{id3}/{}", f["name"].as_str().context("name")?),
                f["sha256"].as_str().context("sha")?.to_string(),
            );
        }
    }
    for v in m3["views"].as_array().context("views")? {
        let f = &v["schema_file"];
        want.insert(
            format!("{id3}/{}", f["name"].as_str().context("name")?),
            f["sha256"].as_str().context("sha")?.to_string(),
        );
    }
    let mut got = std::collections::BTreeMap::new();
    let mut archive = tar::Archive::new(std::fs::File::open(&tar_path)?);
    let mut saw_manifest = false;
    for e in archive.entries()? {
        let mut e = e?;
        let path = e.path()?.to_string_lossy().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data)?;
        if path == format!("{id3}/manifest.json") {
            let m: serde_json::Value = serde_json::from_slice(&data)?;
            ensure!(m == m3, "the tar's manifest differs from the bucket's");
            saw_manifest = true;
            continue;
        }
        let sum: String = Sha256::digest(&data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        got.insert(path, sum);
    }
    ensure!(saw_manifest, "no manifest in the tar");
    ensure!(got == want, "tar members/SHA-256 differ from the manifest");
    // The same to stdout.
    let out = r
        .run(&["backup", "download", "--config", &c, "first", "--out", "-"])
        .await?;
    ensure!(!out.status.success(), "a deleted backup was downloaded");
    let out = r
        .run(&["backup", "download", "--config", &c, &id3, "--out", "-"])
        .await?;
    ensure!(
        out.status.success() && out.stdout.len() as u64 == std::fs::metadata(&tar_path)?.len(),
        "stdout download: {} bytes",
        out.stdout.len()
    );
    r.assert_no_secret()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_s3_refusals_and_tampering() -> Result<()> {
    let s3 = S3Server::start(&[BUCKET]).await?;
    let store = s3.store(BUCKET, PREFIX)?;
    let pair = Pair::start().await?;
    let (src, dst) = (&pair.src, &pair.dst);
    load_app(src).await?;
    let mut r = Runner::new(&[]);

    // Wrong secret and a missing bucket: refused at start, one line, nothing written.
    let wrong = pair.dir.path().join("wrong-creds");
    std::fs::write(
        &wrong,
        "[default]\naws_access_key_id = fleetsync-test-key\naws_secret_access_key = wrong-secret-77\n",
    )?;
    let bad_creds = s3.backup_toml(BUCKET, PREFIX).replace(
        &s3.credentials_file().display().to_string(),
        &wrong.display().to_string(),
    );
    let cw = write_s3_config(&pair, "wrong", &bad_creds, "")?;
    let no_bucket = write_s3_config(
        &pair,
        "nobucket",
        &s3.backup_toml("no-such-bucket", PREFIX),
        "",
    )?;
    for (cfg, needle) in [(&cw, "access denied"), (&no_bucket, "does not exist")] {
        let cfg = p(cfg)?;
        for args in [
            vec!["backup", "create", "--config", cfg, "--server", "src"],
            vec!["backup", "list", "--config", cfg],
            vec!["backup", "prune", "--config", cfg],
            vec!["backup", "verify", "--config", cfg, "x"],
        ] {
            let line = r.refused(&args, &[needle]).await?;
            ensure!(!line.contains("wrong-secret-77"), "{line}");
        }
    }
    ensure!(
        store.list("").await?.is_empty(),
        "a refused command wrote to the bucket"
    );

    // A tampered object: same size, other bytes. Verify and restore refuse, naming it; the
    // target is unchanged (the database is not created).
    let config = write_s3_config(
        &pair,
        "ok",
        &s3.backup_toml(BUCKET, PREFIX),
        "chunk_rows = 20\n",
    )?;
    let c = p(&config)?.to_string();
    let id = r.create(&config, &["--include", "app\\..*"]).await?["id"]
        .as_str()
        .context("id")?
        .to_string();
    let m = manifest_of(&store, &id).await?;
    let chunk = m["tables"][1]["files"][0]["name"]
        .as_str()
        .context("file")?
        .to_string();
    let key = format!("{id}/{chunk}");
    let mut bytes = store.get(&key).await?.to_vec();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    store.put(&key, bytes.into()).await?;
    let before = fingerprint(dst).await?;
    r.refused(
        &["backup", "verify", "--config", &c, &id],
        &[&chunk, "checksum mismatch", "s3://"],
    )
    .await?;
    r.refused(
        &[
            "backup",
            "restore",
            "--config",
            &c,
            &id,
            "--to-server",
            "dst",
            "--yes",
        ],
        &[&chunk, "checksum mismatch"],
    )
    .await?;
    ensure!(
        fingerprint(dst).await? == before,
        "a refused restore changed the target"
    );
    ensure!(
        !dst.user_databases().await?.contains(&"app".to_string()),
        "app was created"
    );
    let list = listed(&mut r, &c).await?;
    ensure!(list.len() == 1 && list[0].1 == "complete", "{list:?}");
    r.assert_no_secret()
}

/// Starts `fleetsync backup create` in the background (stdout/stderr piped).
fn spawn_create(config: &Path) -> Result<tokio::process::Child> {
    Ok(
        tokio::process::Command::new(fleetsync_tests::fleetsync::fleetsync_bin())
            .args([
                "backup",
                "create",
                "--config",
                p(config)?,
                "--server",
                "src",
                "--include",
                "big\\..*",
            ])
            .env("RUST_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?,
    )
}

/// Waits until some object of the bucket matches `pred`; the backup id it belongs to.
async fn wait_for_object(
    store: &Store,
    child: &mut tokio::process::Child,
    what: &str,
    pred: impl Fn(&str) -> bool,
) -> Result<String> {
    let start = Instant::now();
    loop {
        if let Some(e) = store.list("").await?.into_iter().find(|e| pred(&e.key)) {
            return Ok(e.key.split('/').next().unwrap_or_default().to_string());
        }
        if let Some(st) = child.try_wait()? {
            bail!("the backup ended ({st}) before {what} appeared: give it more data");
        }
        ensure!(start.elapsed() < CMD_TIMEOUT, "no {what} in the bucket");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_s3_outage_and_kill_leave_nothing() -> Result<()> {
    let mut s3 = S3Server::start(&[BUCKET]).await?;
    let store = s3.store(BUCKET, PREFIX)?;
    let pair = Pair::start().await?;
    let (src, dst) = (&pair.src, &pair.dst);
    // Many small files (outage case) and a few rows of 100 KiB (one file above the multipart
    // threshold).
    src.exec(
        "CREATE DATABASE big; USE big; \
         CREATE TABLE big.many (id INT PRIMARY KEY, v VARCHAR(200)); \
         INSERT INTO big.many SELECT seq, REPEAT(CHAR(65 + seq % 26), 150) FROM seq_1_to_200000; \
         CREATE TABLE big.wide (id INT PRIMARY KEY, v LONGTEXT); \
         INSERT INTO big.wide SELECT seq, REPEAT(MD5(seq), 3200) FROM seq_1_to_400;",
    )
    .await?;
    let mut r = Runner::new(&[]);

    // (a) The S3 server stops mid-backup: a clean failure, nothing listed, leftovers removed
    // by the next run.
    let small = write_s3_config(
        &pair,
        "small",
        &s3.backup_toml(BUCKET, PREFIX),
        "chunk_rows = 500\nthreads = 1\n",
    )?;
    let mut child = spawn_create(&small)?;
    let failed_id =
        wait_for_object(&store, &mut child, "data files", |k| k.contains("/data/")).await?;
    s3.stop().await?;
    let out = tokio::time::timeout(CMD_TIMEOUT, child.wait_with_output()).await??;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    r.seen.push(stderr.clone());
    ensure!(
        !out.status.success(),
        "the backup succeeded without its store"
    );
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    ensure!(errors.len() == 1, "expected one error line:\n{stderr}");
    println!("failed as expected: {}", errors[0]);
    s3.start_again().await?;
    ensure!(
        listed(&mut r, p(&small)?).await?.is_empty(),
        "a failed backup is listed"
    );
    // It could not delete its objects with the server down: leftovers (dead owner).
    let left = objects(&store, &failed_id).await?;
    println!("{} objects left by the failed backup", left.len());
    let dry = r
        .ok(&["backup", "prune", "--config", p(&small)?, "--dry-run"])
        .await?;
    ensure!(
        left.is_empty() || dry.contains(&format!("would delete {failed_id}")),
        "prune --dry-run: {dry}"
    );

    // (c) SIGKILL during a multipart upload; then the next create removes the leftovers.
    let wide = write_s3_config(
        &pair,
        "wide",
        &s3.backup_toml(BUCKET, PREFIX),
        "compression = \"none\"\nchunk_rows = 100000\nthreads = 1\n",
    )?;
    let mut child = spawn_create(&wide)?;
    let failed_prefix = format!("{failed_id}/");
    let killed_id = wait_for_object(&store, &mut child, "a multipart marker", |k| {
        k.contains("/.multipart-") && !k.starts_with(&failed_prefix)
    })
    .await?;
    child.start_kill()?;
    let _ = child.wait().await?;
    let killed = objects(&store, &killed_id).await?;
    ensure!(
        killed.iter().any(|k| k.contains(".multipart-")),
        "{killed:?}"
    );
    ensure!(
        listed(&mut r, p(&wide)?).await?.is_empty(),
        "a killed backup is listed"
    );

    let done = r.create(&wide, &["--include", "big\\..*"]).await?;
    let id = done["id"].as_str().context("id")?.to_string();
    ensure!(
        objects(&store, &killed_id).await?.is_empty(),
        "the killed backup's leftovers remain"
    );
    ensure!(
        objects(&store, &failed_id).await?.is_empty(),
        "the failed backup's leftovers remain"
    );
    let m = manifest_of(&store, &id).await?;
    let biggest = m["tables"]
        .as_array()
        .context("tables")?
        .iter()
        .flat_map(|t| t["files"].as_array().cloned().unwrap_or_default())
        .filter_map(|f| f["bytes"].as_u64())
        .max()
        .unwrap_or(0);
    ensure!(
        biggest > fleetsync_store::MULTIPART_THRESHOLD as u64,
        "no file above the multipart threshold ({biggest} bytes)"
    );
    let list = listed(&mut r, p(&wide)?).await?;
    ensure!(list.len() == 1 && list[0].0 == id, "list: {list:?}");
    r.ok(&[
        "backup",
        "restore",
        "--config",
        p(&wide)?,
        &id,
        "--to-server",
        "dst",
    ])
    .await?;
    assert_databases_equal(src, dst, "big", "big").await?;
    r.assert_no_secret()
}

/// The API on a bucket: list with `name`/`pinned`, pin and unpin, one object and the tar
/// download streamed from the bucket (checked against the manifest's SHA-256s); no answer
/// carries the secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_s3_api_pin_and_download() -> Result<()> {
    let s3 = S3Server::start(&[BUCKET]).await?;
    let store = s3.store(BUCKET, PREFIX)?;
    let pair = Pair::start().await?;
    pair.src
        .exec(
            "CREATE DATABASE app; CREATE TABLE app.items (id INT PRIMARY KEY, v VARCHAR(20)); \
             INSERT INTO app.items VALUES (1, 'one'), (2, 'two'), (3, NULL)",
        )
        .await?;
    let crate::api::Stack {
        config,
        mut fs,
        api,
        tokens,
        ..
    } = crate::api::start_stack(
        &pair,
        &format!("[backup]\n{}", s3.backup_toml(BUCKET, PREFIX)),
        "",
        &[("ops", "operator")],
    )
    .await?;
    let token = tokens.first().context("token")?.clone();
    let mut r = Runner::new(&[]);
    let id = r.create(&config, &["--name", "viaapi"]).await?["id"]
        .as_str()
        .context("id")?
        .to_string();
    let mut bodies = Vec::new();

    let list = api.get("/api/v1/backups", Some(&token)).await?;
    bodies.push(list.body.clone());
    let v = list.json()?;
    ensure!(
        list.status == 200
            && v[0]["id"] == id.as_str()
            && v[0]["name"] == "viaapi"
            && v[0]["pinned"] == false,
        "list: {} {}",
        list.status,
        list.body
    );
    let pinned = api
        .post("/api/v1/backups/viaapi/pin", Some(&token), "")
        .await?;
    bodies.push(pinned.body.clone());
    ensure!(
        pinned.status == 200
            && pinned.json()?["pinned"] == true
            && pinned.json()?["id"] == id.as_str(),
        "pin: {} {}",
        pinned.status,
        pinned.body
    );
    ensure!(
        store.size(&format!("{id}/pin.json")).await?.is_some(),
        "no pin.json"
    );
    let v = api.get("/api/v1/backups", Some(&token)).await?.json()?;
    ensure!(v[0]["pinned"] == true, "list after pin: {v}");
    let m = manifest_of(&store, &id).await?;
    let manifest = api
        .get(&format!("/api/v1/backups/{id}"), Some(&token))
        .await?;
    bodies.push(manifest.body.clone());
    ensure!(
        manifest.status == 200 && manifest.json()? == m,
        "manifest: {}",
        manifest.status
    );

    let sums = crate::api::tarfiles::manifest_sums(&m)?;
    crate::api::tarfiles::check_backup_downloads(&api, &token, &id, &sums).await?;

    let unpinned = api
        .post(&format!("/api/v1/backups/{id}/unpin"), Some(&token), "")
        .await?;
    bodies.push(unpinned.body.clone());
    ensure!(
        unpinned.status == 200 && unpinned.json()?["pinned"] == false,
        "unpin: {}",
        unpinned.body
    );
    ensure!(
        store.size(&format!("{id}/pin.json")).await?.is_none(),
        "pin.json left"
    );
    let missing = api
        .post("/api/v1/backups/nope/pin", Some(&token), "")
        .await?;
    ensure!(
        missing.status == 404,
        "pin of an unknown backup: {} {}",
        missing.status,
        missing.body
    );
    for b in &bodies {
        ensure!(
            !b.contains(SECRET_KEY),
            "an API answer shows the secret: {b}"
        );
    }
    fs.stop(STOP_TIMEOUT).await?;
    r.assert_no_secret()
}
