//! The Backups and Export / Import pages in a real browser (web/tests/backups.mjs, see
//! docs/dashboard.md): an admin takes a backup of `src` (tables `app\..*`), verifies it (the
//! list shows it verified), downloads it, restores it to `dst` as `app_restored` through the
//! wizard (dry-run plan first, typed confirmation), adds a backup schedule, previews a prune,
//! exports `app.*` as CSV and downloads it, uploads a malformed CSV export (the validation
//! report names file, line and column; nothing is written), then uploads the downloaded export
//! tar, validates it and imports it as `app_imported`. A viewer sees neither page's
//! controls. This side checks the results in SQL and in the downloaded files.

use std::collections::BTreeMap;
use std::io::Read;

use anyhow::{ensure, Context, Result};

use super::browser::{finish, Browser};
use super::jobs::{cli, finished, start};
use super::start_stack;
use crate::support::Pair;

/// Rows in `app.items` on the source.
const ROWS: usize = 40;

/// The entries of a tar archive: name → bytes.
fn untar(path: &std::path::Path) -> Result<BTreeMap<String, Vec<u8>>> {
    let file = std::fs::File::open(path).with_context(|| format!("{}", path.display()))?;
    let mut out = BTreeMap::new();
    for entry in tar::Archive::new(file).entries()? {
        let mut entry = entry?;
        let name = entry.path()?.display().to_string();
        let mut data = Vec::new();
        entry.read_to_end(&mut data)?;
        out.insert(name, data);
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_and_transfer_in_chromium() -> Result<()> {
    let browser = Browser::ready()?;
    let pair = Pair::start().await?;
    let values: Vec<String> = (1..=ROWS)
        .map(|i| {
            format!(
                "({i}, 'item {i}', {i}.25, '2026-01-{:02} 10:00:0{}')",
                i % 28 + 1,
                i % 10
            )
        })
        .collect();
    pair.src
        .exec(&format!(
            "CREATE DATABASE app; CREATE TABLE app.items (id INT PRIMARY KEY, v VARCHAR(40), \
             price DECIMAL(10,2), at DATETIME); INSERT INTO app.items VALUES {}",
            values.join(",")
        ))
        .await?;
    let stack = start_stack(
        &pair,
        "[backup]\ndir = {backup_dir}\nretention = { keep_last = 5 }\n",
        "",
        &[("admin-ui", "admin"), ("look-ui", "viewer")],
    )
    .await?;
    let (admin, viewer) = (&stack.tokens[0], &stack.tokens[1]);
    let cfg = stack.config.to_str().context("config path")?;

    // A malformed CSV export for the upload: the CLI's export with row 3's id made a word.
    let export_dir = pair.dir.path().join("cli-export");
    let (code, _, stderr) = cli(
        &[
            "export",
            "--config",
            cfg,
            "--server",
            "src",
            "--format",
            "csv",
            "--out",
            export_dir.to_str().context("path")?,
            "--include",
            "app\\..*",
        ],
        &[],
    )
    .await?;
    ensure!(code == 0, "fleetsync export: {stderr}");
    let csv_path = export_dir.join("app.items.csv");
    let csv = std::fs::read_to_string(&csv_path)?;
    let bad_dir = pair.dir.path().join("bad-export");
    std::fs::create_dir_all(&bad_dir)?;
    let mut upload = Vec::new();
    for entry in std::fs::read_dir(&export_dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .context("name")?
            .to_string();
        let mut data = std::fs::read(&path)?;
        if name == "app.items.csv" {
            ensure!(csv.contains("\r\n3,"), "unexpected CSV export: {csv}");
            data = csv.replacen("\r\n3,", "\r\nthree,", 1).into_bytes();
        }
        let target = bad_dir.join(&name);
        std::fs::write(&target, data)?;
        upload.push(target.display().to_string());
    }
    let downloads = pair.dir.path().join("downloads");
    std::fs::create_dir_all(&downloads)?;
    let dst_before = pair
        .dst
        .query_strings("SELECT * FROM app.items ORDER BY id")
        .await?;

    let started = std::time::Instant::now();
    browser
        .run_script(
            "backups.mjs",
            stack.api_port,
            &[
                ("ADMIN_TOKEN", admin),
                ("VIEWER_TOKEN", viewer),
                ("ROWS", &ROWS.to_string()),
                ("DOWNLOADS", &downloads.display().to_string()),
                ("UPLOAD_FILES", &upload.join("\n")),
                ("BAD_FILE", "app.items.csv"),
                ("BAD_LINE", "4"),
                ("BAD_COLUMN", "id"),
            ],
            &stack.fs,
        )
        .await?;
    println!("browser script: {:.1} s", started.elapsed().as_secs_f64());

    // The restore: app_restored on dst equals app on src, row by row.
    let src_rows = pair
        .src
        .query_strings("SELECT * FROM app.items ORDER BY id")
        .await?;
    let restored = pair
        .dst
        .query_strings("SELECT * FROM app_restored.items ORDER BY id")
        .await?;
    ensure!(src_rows.len() == ROWS, "source rows: {}", src_rows.len());
    ensure!(
        restored == src_rows,
        "the restored rows differ from the source's:\n{restored:?}\n{src_rows:?}"
    );
    // The downloaded export, uploaded again: app_imported on dst equals app on src.
    let imported = pair
        .dst
        .query_strings("SELECT * FROM app_imported.items ORDER BY id")
        .await?;
    ensure!(
        imported == src_rows,
        "the imported rows differ from the source's:\n{imported:?}"
    );
    // The backup: listed once, verified, its download holds the manifest and every file.
    let list = stack
        .api
        .get("/api/v1/backups", Some(admin))
        .await?
        .json()?;
    let backups = list.as_array().context("backup list")?;
    ensure!(backups.len() == 1, "backups: {list}");
    let id = backups[0]["id"].as_str().context("id")?;
    ensure!(
        backups[0]["verified"]["state"] == "verified" && backups[0]["verified"]["at"].is_string(),
        "the backup is not listed as verified: {}",
        backups[0]
    );
    let tar = untar(&downloads.join("backup.tar"))?;
    let manifest: serde_json::Value = serde_json::from_slice(
        tar.get(&format!("{id}/manifest.json"))
            .context("no manifest in the downloaded backup")?,
    )?;
    ensure!(manifest["id"] == id, "downloaded manifest: {manifest}");
    ensure!(
        tar.len() > 1,
        "the downloaded backup holds no data file: {:?}",
        tar.keys()
    );
    // The export: the downloaded tar's CSV equals the CLI's export byte for byte.
    let export = untar(&downloads.join("export.tar"))?;
    let got = export
        .iter()
        .find(|(k, _)| k.ends_with("/app.items.csv"))
        .map(|(_, v)| v.clone())
        .context("no app.items.csv in the downloaded export")?;
    ensure!(
        got == csv.as_bytes(),
        "the downloaded CSV differs from the CLI's export"
    );
    ensure!(
        csv.matches("\r\n").count() == ROWS + 1,
        "the CSV has not a header and {ROWS} rows"
    );
    // The malformed import wrote nothing.
    let created = pair
        .dst
        .query_value(
            "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'app_bad'",
        )
        .await?;
    ensure!(
        created.as_deref() == Some("0"),
        "the malformed import created app_bad"
    );
    ensure!(
        pair.dst
            .query_strings("SELECT * FROM app.items ORDER BY id")
            .await?
            == dst_before,
        "dst's app.items changed"
    );
    // The schedule made in the browser is stored.
    let schedules = stack.api.get("/api/v1/schedules", Some(admin)).await?;
    ensure!(
        schedules.body.contains("\"ui-nightly\"") && schedules.body.contains("\"backup\""),
        "the schedule made in the browser: {}",
        schedules.body
    );
    // A damaged backup: the next verify fails, and the list says so (with the reason).
    let data_file = manifest["tables"]
        .as_array()
        .and_then(|t| t.first())
        .and_then(|t| t["files"].as_array())
        .and_then(|f| f.first())
        .and_then(|f| f["name"].as_str())
        .with_context(|| format!("no data file in the manifest: {manifest}"))?;
    let path = stack.backup_dir.join(id).join(data_file);
    let mut bytes = std::fs::read(&path)?;
    let last = bytes.len().checked_sub(1).context("empty data file")?;
    bytes[last] ^= 0xff;
    std::fs::write(&path, bytes)?;
    let job = start(
        &stack.api,
        admin,
        "backup-verify",
        &serde_json::json!({ "id": id }),
    )
    .await?;
    let job = finished(&stack.api, admin, &job).await?;
    ensure!(
        job["state"] == "failed",
        "verify of a damaged backup: {job}"
    );
    let list = stack
        .api
        .get("/api/v1/backups", Some(admin))
        .await?
        .json()?;
    let verified = &list[0]["verified"];
    ensure!(
        verified["state"] == "failed"
            && verified["error"]
                .as_str()
                .is_some_and(|e| e.contains(data_file)),
        "a failed verify is not listed as failed with its reason: {verified}"
    );
    browser.ensure_screenshots(&[
        "backups-admin",
        "backups-restore-plan",
        "backups-dark",
        "backups-phone",
        "backups-viewer",
        "transfer-export",
        "transfer-validation",
        "transfer-viewer",
    ])?;
    finish(stack.fs, &[admin, viewer]).await?;
    println!(
        "backup {id}: verified, downloaded ({} files), restored as app_restored ({ROWS} rows equal); CSV export downloaded equal to the CLI's; malformed import refused, nothing written; the downloaded export imported ({ROWS} rows equal); a damaged copy listed as failed",
        tar.len()
    );
    Ok(())
}
