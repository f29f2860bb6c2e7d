//! The later job kinds and the backup routes over the API, against a real `fleetsync run`:
//!
//! * `export`: the job's report equals `fleetsync export --json` for the same request; each
//!   file downloaded from the job (`/jobs/{id}/files/{file}`, and all of them as one tar from
//!   `/jobs/{id}/download`) equals the CLI's file byte for byte (`export.json` modulo its
//!   times);
//! * `import` of that tar uploaded: the plan-only job's report equals `fleetsync import
//!   --dry-run --json`, the real import loads the rows; a malformed upload (a wrong-typed
//!   value) gives the same report as the CLI (file, line, column; exit code 1) and writes
//!   nothing; a body that is not a tar, and a tar entry with `..`, are refused (400);
//! * backups: `GET /backups` equals `fleetsync backup list --json`, `GET /backups/{id}` is
//!   the manifest, every file downloaded (alone and in the tar) has the manifest's SHA-256,
//!   a `{file}` with `..` or an absolute path is refused before any lookup (404) and an unlisted one is 404;
//! * `backup-prune`: refused without `confirm` (409), the plan-only job's report equals
//!   `fleetsync backup prune --dry-run --json`, the real prune deletes what the plan said.
//!
//! Migrations, health fixes and repair SQL as jobs: `jobs_migrate.rs`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{ensure, Context, Result};
use fleetsync_tests::api::ApiClient;
use serde_json::{json, Value};

use super::jobs::{cli, finished, same_as_cli, start, strip};
use super::tarfiles::{check_backup_downloads, make_tar, manifest_sums, untar};
use crate::support::Pair;

fn read_dir_files(dir: &Path) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        out.insert(
            e.file_name().to_string_lossy().into_owned(),
            std::fs::read(e.path())?,
        );
    }
    Ok(out)
}

fn without_times(manifest: &[u8]) -> Result<Value> {
    let mut v: Value = serde_json::from_slice(manifest)?;
    strip(&mut v, &["started_at", "finished_at"]);
    Ok(v)
}

/// Starts a job, expecting it to be refused with `status`; the problem.
pub(super) async fn refused(
    api: &ApiClient,
    token: &str,
    path: &str,
    body: &Value,
    status: u16,
) -> Result<Value> {
    let r = api.post(path, Some(token), &body.to_string()).await?;
    ensure!(
        r.status == status,
        "{path}: {} (expected {status}) {}",
        r.status,
        r.body
    );
    r.json()
}

async fn upload(
    api: &ApiClient,
    token: &str,
    query: &str,
    tar: &[u8],
) -> Result<fleetsync_tests::api::RawResponse> {
    api.request_raw(
        "POST",
        &format!("/api/v1/jobs/import?{query}"),
        Some(token),
        "application/x-tar",
        tar,
    )
    .await
}

/// Uploads `tar` as an import job and waits for it; the finished job.
async fn import_job(api: &ApiClient, token: &str, query: &str, tar: &[u8]) -> Result<Value> {
    let r = upload(api, token, query, tar).await?;
    ensure!(r.status == 202, "import upload: {} {}", r.status, r.text());
    let job: Value = serde_json::from_slice(&r.body)?;
    let id = job["id"].as_str().context("no job id")?;
    finished(api, token, id).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_export_import_prune_and_backup_downloads() -> Result<()> {
    let pair = Pair::start().await?;
    pair.src
        .exec(
            "CREATE DATABASE app; CREATE TABLE app.items (id INT PRIMARY KEY, v VARCHAR(20)); \
             INSERT INTO app.items VALUES (1, 'one'), (2, 'two'), (3, NULL)",
        )
        .await?;
    let super::Stack {
        config,
        mut fs,
        api,
        backup_dir,
        tokens,
        ..
    } = super::start_stack(
        &pair,
        "[backup]\ndir = {backup_dir}\n\n[backup.retention]\nkeep_last = 1\n",
        "",
        &[("ops", "operator"), ("adm", "admin")],
    )
    .await?;
    let cfg = config.to_str().context("config path")?;
    let api_port = api.port;
    let [operator, admin] =
        <[String; 2]>::try_from(tokens).map_err(|_| anyhow::anyhow!("2 tokens"))?;

    // 1. Export: the job's report is the CLI's; its files are the CLI's files.
    let out = pair.dir.path().join("cli-export");
    let out_s = out.to_str().context("path")?;
    let exported = same_as_cli(
        &api,
        &operator,
        "export",
        json!({"server": "src", "format": "json", "include": ["app\\.items"]}),
        &[
            "export",
            "--config",
            cfg,
            "--server",
            "src",
            "--format",
            "json",
            "--out",
            out_s,
            "--include",
            "app\\.items",
            "--json",
        ],
        &[],
    )
    .await?;
    let job_id = exported["id"].as_str().context("job id")?.to_string();
    let cli_files = read_dir_files(&out)?;
    let listed: Vec<String> = exported["result"]["files"]
        .as_array()
        .context("files")?
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    ensure!(
        listed == {
            let mut v: Vec<String> = cli_files.keys().cloned().collect();
            v.sort_by_key(|n| n != "export.json");
            v
        },
        "the job lists {listed:?}, the CLI wrote {:?}",
        cli_files.keys()
    );
    let mut downloaded = BTreeMap::new();
    for name in &listed {
        let r = api
            .request_raw(
                "GET",
                &format!("/api/v1/jobs/{job_id}/files/{name}"),
                Some(&operator),
                "application/json",
                b"",
            )
            .await?;
        ensure!(r.status == 200, "file {name}: {} {}", r.status, r.text());
        downloaded.insert(name.clone(), r.body);
    }
    for (name, local) in &cli_files {
        let got = downloaded.get(name).context("missing download")?;
        if name == "export.json" {
            ensure!(
                without_times(got)? == without_times(local)?,
                "export.json differs"
            );
        } else {
            ensure!(
                got == local,
                "{name}: the job's file differs from the CLI's"
            );
        }
    }
    let r = api
        .request_raw(
            "GET",
            &format!("/api/v1/jobs/{job_id}/download"),
            Some(&operator),
            "application/json",
            b"",
        )
        .await?;
    ensure!(
        r.status == 200 && r.content_type == "application/x-tar",
        "download: {} {}",
        r.status,
        r.content_type
    );
    let export_tar = r.body.clone();
    let tarred = untar(&export_tar)?;
    for (name, data) in &downloaded {
        ensure!(
            tarred.get(&format!("{job_id}/{name}")) == Some(data),
            "{name}: the tar's copy differs"
        );
    }
    println!(
        "export: {} files downloaded, equal to the CLI's byte for byte (export.json modulo times), and in the tar",
        downloaded.len()
    );
    for bad in ["..%2F..%2Fjobs", "%2Fetc%2Fpasswd", "a%5Cb"] {
        let r = api
            .get(
                &format!("/api/v1/jobs/{job_id}/files/{bad}"),
                Some(&operator),
            )
            .await?;
        ensure!(
            r.status == 404 && r.body.contains("no `..`"),
            "{bad}: {} {}",
            r.status,
            r.body
        );
    }
    let r = api
        .get(
            &format!("/api/v1/jobs/{job_id}/files/other.json"),
            Some(&operator),
        )
        .await?;
    ensure!(
        r.status == 404,
        "unlisted job file: {} {}",
        r.status,
        r.body
    );

    // 2. Import of the uploaded tar: plan equals the CLI's dry run, then a real load.
    let tar = export_tar;
    let query = "server=dst&format=json&rename_db=app%3Dapp_i";
    let plan = import_job(&api, &admin, &format!("{query}&plan_only=true"), &tar).await?;
    let (code, stdout, stderr) = cli(
        &[
            "import",
            "--config",
            cfg,
            "--server",
            "dst",
            "--format",
            "json",
            "--in",
            out_s,
            "--rename-db",
            "app=app_i",
            "--dry-run",
            "--json",
        ],
        &[],
    )
    .await?;
    let local: Value =
        serde_json::from_str(&stdout).with_context(|| format!("{stdout} {stderr}"))?;
    ensure!(
        plan["state"] == "succeeded"
            && plan["result"] == local
            && code == 0
            && plan["exit_code"] == 0,
        "import plan: job {plan}\ncli ({code}) {local}"
    );
    let done = import_job(&api, &admin, query, &tar).await?;
    ensure!(
        done["state"] == "succeeded" && done["exit_code"] == 0,
        "import: {done}"
    );
    ensure!(
        pair.dst.count("app_i", "items").await? == 3,
        "the import did not load 3 rows"
    );
    println!(
        "import: the plan-only job equals the CLI's --dry-run --json; the upload loaded 3 rows"
    );

    // A malformed upload: the same problems as the CLI's (file, line, column), nothing written.
    let mut bad_files = cli_files.clone();
    let data = bad_files
        .get_mut("app.items.jsonl")
        .context("no app.items.jsonl")?;
    let text = String::from_utf8(data.clone())?;
    ensure!(text.contains("\"id\":2"), "unexpected JSON export: {text}");
    *data = text.replace("\"id\":2", "\"id\":\"two\"").into_bytes();
    let bad_dir = pair.dir.path().join("bad-export");
    std::fs::create_dir_all(&bad_dir)?;
    for (name, data) in &bad_files {
        std::fs::write(bad_dir.join(name), data)?;
    }
    let bad_query = "server=dst&format=json&rename_db=app%3Dapp_bad";
    let failed = import_job(&api, &admin, bad_query, &make_tar(&bad_files, None)?).await?;
    let (code, stdout, stderr) = cli(
        &[
            "import",
            "--config",
            cfg,
            "--server",
            "dst",
            "--format",
            "json",
            "--in",
            bad_dir.to_str().context("path")?,
            "--rename-db",
            "app=app_bad",
            "--json",
        ],
        &[],
    )
    .await?;
    let local: Value =
        serde_json::from_str(&stdout).with_context(|| format!("{stdout} {stderr}"))?;
    let errors = failed["result"]["errors"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    ensure!(
        failed["result"] == local && code == 1 && failed["exit_code"] == 1 && !errors.is_empty(),
        "malformed import: job {failed}\ncli ({code}) {local}"
    );
    ensure!(
        errors[0]["file"] == "app.items.jsonl"
            && errors[0]["line"] == 3
            && errors[0]["column"] == "id",
        "the problem does not name file, line 3 and column id: {}",
        errors[0]
    );
    let exists = pair
        .dst
        .query_value(
            "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'app_bad'",
        )
        .await?;
    ensure!(
        exists.as_deref() == Some("0"),
        "a malformed import created app_bad"
    );
    println!(
        "malformed import: {} (as the CLI's, exit code 1), nothing written",
        errors[0]["text"]
    );
    // The remote CLI: the same report and files as the local commands.
    let url = format!("http://127.0.0.1:{api_port}");
    let remote_out = pair.dir.path().join("remote-export");
    let (code, out, err) = cli(
        &[
            "--remote",
            &url,
            "--token",
            &operator,
            "export",
            "--server",
            "src",
            "--format",
            "json",
            "--out",
            remote_out.to_str().context("path")?,
            "--include",
            "app\\.items",
            "--json",
        ],
        &[],
    )
    .await?;
    ensure!(
        code == 0 && serde_json::from_str::<Value>(&out)? == exported["result"],
        "remote export: {code} {out} {err}"
    );
    let remote_files = read_dir_files(&remote_out)?;
    ensure!(
        remote_files.len() == cli_files.len()
            && remote_files.get("app.items.jsonl") == cli_files.get("app.items.jsonl"),
        "remote export files differ from the local ones"
    );
    let bad_s = bad_dir.to_str().context("path")?;
    let import_args = |json: bool| {
        let mut a = vec![
            "import",
            "--server",
            "dst",
            "--format",
            "json",
            "--in",
            bad_s,
            "--rename-db",
            "app=app_bad",
        ];
        if json {
            a.push("--json");
        }
        a
    };
    for json in [true, false] {
        let mut remote_args = vec!["--remote", url.as_str(), "--token", admin.as_str()];
        remote_args.extend(import_args(json));
        let remote = cli(&remote_args, &[]).await?;
        let mut local_args = import_args(json);
        local_args.extend(["--config", cfg]);
        let local = cli(&local_args, &[]).await?;
        ensure!(
            remote == local && remote.0 == 1,
            "remote import (json {json}) differs from the local one:\nremote {remote:?}\nlocal {local:?}"
        );
    }
    println!("remote CLI: export (report and files) and a malformed import (output, exit code 1) as local");
    let r = upload(&api, &admin, query, b"this is not a tar archive, just text").await?;
    ensure!(
        r.status == 400 && r.text().contains("\"body\""),
        "not a tar: {} {}",
        r.status,
        r.text()
    );
    let mut evil = make_tar(
        &BTreeMap::from([("xxxxxxxxxxx".to_string(), b"boom".to_vec())]),
        None,
    )?;
    // Rename the entry to `../escape` in its header (the tar crate refuses to write it).
    evil[..11].copy_from_slice(b"../escape\0\0");
    let sum: u32 = evil[..512]
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(*b)
            }
        })
        .sum();
    evil[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let r = upload(&api, &admin, query, &evil).await?;
    ensure!(
        r.status == 400 && r.text().contains(".."),
        "a `..` entry: {} {}",
        r.status,
        r.text()
    );
    let state = pair.dir.path().join("state");
    ensure!(
        !state.join("jobs").join("escape").exists() && !state.join("escape").exists(),
        "the `..` entry was written"
    );
    let r = upload(&api, &operator, query, &tar).await?;
    ensure!(r.status == 403, "an operator may not import: {}", r.status);

    // 3. Backups: list, manifest, files and the tar, against the manifest's checksums.
    let mut ids = Vec::new();
    for _ in 0..2 {
        let id = start(
            &api,
            &operator,
            "backup-create",
            &json!({"server": "src", "include": ["app\\..*"]}),
        )
        .await?;
        let j = finished(&api, &operator, &id).await?;
        ensure!(j["state"] == "succeeded", "backup: {j}");
        ids.push(j["result"]["id"].as_str().context("backup id")?.to_string());
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    }
    let listed = api.get("/api/v1/backups", Some(&operator)).await?;
    let (code, stdout, _) = cli(&["backup", "list", "--config", cfg, "--json"], &[]).await?;
    ensure!(
        code == 0
            && listed.status == 200
            && listed.json()? == serde_json::from_str::<Value>(&stdout)?,
        "GET /backups differs from `backup list --json`:\n{}\n{stdout}",
        listed.body
    );
    let id = &ids[0];
    let m = api
        .get(&format!("/api/v1/backups/{id}"), Some(&operator))
        .await?;
    let on_disk: Value =
        serde_json::from_slice(&std::fs::read(backup_dir.join(id).join("manifest.json"))?)?;
    ensure!(
        m.status == 200 && m.json()? == on_disk,
        "manifest: {} {}",
        m.status,
        m.body
    );
    let sums = manifest_sums(&on_disk)?;
    ensure!(sums.len() >= 2, "too few files in the manifest: {sums:?}");
    check_backup_downloads(&api, &operator, id, &sums).await?;
    println!("backups: list equals the CLI's, {} files (alone and in the tar) match the manifest's SHA-256", sums.len());
    for bad in [
        "..%2F..%2Fconfig.toml",
        "%2Fetc%2Fpasswd",
        "data%2F..%2F..%2Fx",
        ".",
    ] {
        let r = api
            .get(
                &format!("/api/v1/backups/{id}/files/{bad}"),
                Some(&operator),
            )
            .await?;
        ensure!(
            r.status == 404 && r.body.contains("no `..`"),
            "{bad}: {} {}",
            r.status,
            r.body
        );
    }
    let r = api
        .get(
            &format!("/api/v1/backups/{id}/files/data%2Fnot-listed.sql"),
            Some(&operator),
        )
        .await?;
    ensure!(
        r.status == 404,
        "unlisted backup file: {} {}",
        r.status,
        r.body
    );
    let r = api.get("/api/v1/backups/..", Some(&operator)).await?;
    ensure!(
        r.status == 400 || r.status == 404,
        "backup id `..`: {} {}",
        r.status,
        r.body
    );
    let r = api
        .get(
            "/api/v1/backups",
            Some(&super::create_token(&config, "v", "viewer", None).await?),
        )
        .await?;
    ensure!(
        r.status == 403,
        "a viewer may not list backups: {}",
        r.status
    );

    // 4. Prune (keep_last = 1): refused without confirm; the plan is the CLI's; then real.
    refused(
        &api,
        &operator,
        "/api/v1/jobs/backup-prune",
        &json!({}),
        409,
    )
    .await?;
    let plan = same_as_cli(
        &api,
        &operator,
        "backup-prune",
        json!({"plan_only": true}),
        &["backup", "prune", "--config", cfg, "--dry-run", "--json"],
        &[],
    )
    .await?;
    let doomed: Vec<&str> = plan["result"]["deleted"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["id"].as_str())
        .collect();
    ensure!(doomed == [ids[0].as_str()], "prune plan: {plan}");
    let url = format!("http://127.0.0.1:{api_port}");
    let (code, out, _) = cli(
        &[
            "--remote",
            &url,
            "--token",
            &operator,
            "backup",
            "prune",
            "--dry-run",
            "--json",
        ],
        &[],
    )
    .await?;
    ensure!(
        code == 0 && serde_json::from_str::<Value>(&out)? == plan["result"],
        "remote prune --dry-run: {code} {out}"
    );
    let id2 = start(&api, &operator, "backup-prune", &json!({"confirm": true})).await?;
    let pruned = finished(&api, &operator, &id2).await?;
    ensure!(
        pruned["state"] == "succeeded"
            && pruned["result"]["deleted"] == plan["result"]["deleted"]
            && pruned["result"]["dry_run"] == false,
        "prune: {pruned}"
    );
    ensure!(
        !backup_dir.join(&ids[0]).exists() && backup_dir.join(&ids[1]).exists(),
        "prune deleted the wrong backups"
    );
    println!("prune: the plan equals the CLI's --dry-run --json; the job deleted {doomed:?}");
    fs.stop(std::time::Duration::from_secs(30)).await?;
    Ok(())
}

/// For the RBAC matrix: a backup and a finished export job, and the concrete URL (and body)
/// of each operation that needs them (template path, URL, body).
pub async fn matrix_resources(
    api: &ApiClient,
    operator: &str,
) -> Result<Vec<(&'static str, String, String)>> {
    let id = start(api, operator, "backup-create", &json!({"server": "src"})).await?;
    let j = finished(api, operator, &id).await?;
    ensure!(j["state"] == "succeeded", "backup: {j}");
    let backup = j["result"]["id"].as_str().context("backup id")?.to_string();
    let m = api
        .get(&format!("/api/v1/backups/{backup}"), Some(operator))
        .await?
        .json()?;
    let file = m["tables"][0]["schema_file"]["name"]
        .as_str()
        .context("no file in the backup")?
        .replace('/', "%2F");
    let id = start(
        api,
        operator,
        "export",
        &json!({"server": "src", "format": "json"}),
    )
    .await?;
    let j = finished(api, operator, &id).await?;
    ensure!(j["state"] == "succeeded", "export: {j}");
    let r = api
        .request_raw(
            "GET",
            &format!("/api/v1/jobs/{id}/download"),
            Some(operator),
            "application/json",
            b"",
        )
        .await?;
    ensure!(r.status == 200, "export download: {}", r.status);
    let gen = start(
        api,
        operator,
        "migrate-generate",
        &json!({"source": "src/app", "target": "dst/app"}),
    )
    .await?;
    let j = finished(api, operator, &gen).await?;
    ensure!(j["state"] == "succeeded", "migrate generate: {j}");
    // The tar of a JSON export of ASCII rows is ASCII (the matrix sends bodies as text).
    let upload = String::from_utf8(r.body).context("the export tar is not text")?;
    Ok(vec![
        (
            "/api/v1/backups/{id}",
            format!("/api/v1/backups/{backup}"),
            String::new(),
        ),
        (
            "/api/v1/backups/{id}/files/{file}",
            format!("/api/v1/backups/{backup}/files/{file}"),
            String::new(),
        ),
        (
            "/api/v1/backups/{id}/download",
            format!("/api/v1/backups/{backup}/download"),
            String::new(),
        ),
        (
            "/api/v1/backups/{id}/pin",
            format!("/api/v1/backups/{backup}/pin?dry_run=true"),
            String::new(),
        ),
        (
            "/api/v1/backups/{id}/unpin",
            format!("/api/v1/backups/{backup}/unpin?dry_run=true"),
            String::new(),
        ),
        (
            "/api/v1/jobs/{id}/files/{file}",
            format!("/api/v1/jobs/{id}/files/export.json"),
            String::new(),
        ),
        (
            "/api/v1/jobs/{id}/download",
            format!("/api/v1/jobs/{id}/download"),
            String::new(),
        ),
        (
            "/api/v1/jobs/migrate-apply",
            "/api/v1/jobs/migrate-apply?dry_run=true".to_string(),
            json!({"target": "dst/app", "migration_job": gen, "confirm": true}).to_string(),
        ),
        (
            "/api/v1/jobs/import",
            "/api/v1/jobs/import?server=dst&format=json&dry_run=true".to_string(),
            upload,
        ),
    ])
}
