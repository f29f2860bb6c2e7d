//! Tar archives and backup downloads in the API tests: unpack and build tars, and check a
//! backup's downloads (each file alone and the whole tar) against its manifest's SHA-256.

use std::collections::BTreeMap;
use std::io::Read;

use anyhow::{ensure, Context, Result};
use fleetsync_tests::api::ApiClient;
use serde_json::Value;
use sha2::Digest;

fn sha256(b: &[u8]) -> String {
    sha2::Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// The regular files of a tar archive: last path component → bytes.
pub fn untar(bytes: &[u8]) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut archive = tar::Archive::new(bytes);
    for e in archive.entries()? {
        let mut e = e?;
        if !e.header().entry_type().is_file() {
            continue;
        }
        let path = e.path()?.into_owned();
        let mut data = Vec::new();
        e.read_to_end(&mut data)?;
        out.insert(path.display().to_string(), data);
    }
    Ok(out)
}

/// The SHA-256 of every file a backup's manifest (as JSON) lists, by file name.
pub fn manifest_sums(m: &Value) -> Result<BTreeMap<String, String>> {
    let mut sums = BTreeMap::new();
    for t in m["tables"].as_array().context("tables")? {
        for f in
            std::iter::once(&t["schema_file"]).chain(t["files"].as_array().into_iter().flatten())
        {
            sums.insert(
                f["name"].as_str().context("name")?.to_string(),
                f["sha256"].as_str().context("sha")?.to_string(),
            );
        }
    }
    Ok(sums)
}

/// Every file of backup `id`, alone (`/files/{name}`) and in the whole backup's tar
/// (`/download`), has its manifest's SHA-256 (`sums`), and the tar holds the manifest.
pub async fn check_backup_downloads(
    api: &ApiClient,
    token: &str,
    id: &str,
    sums: &BTreeMap<String, String>,
) -> Result<()> {
    for (name, sum) in sums {
        let enc = name.replace('/', "%2F");
        let r = api
            .request_raw(
                "GET",
                &format!("/api/v1/backups/{id}/files/{enc}"),
                Some(token),
                "application/json",
                b"",
            )
            .await?;
        ensure!(
            r.status == 200 && &sha256(&r.body) == sum,
            "{name}: {} or checksum differs",
            r.status
        );
    }
    let r = api
        .request_raw(
            "GET",
            &format!("/api/v1/backups/{id}/download"),
            Some(token),
            "application/json",
            b"",
        )
        .await?;
    ensure!(r.status == 200, "backup download: {}", r.status);
    let tarred = untar(&r.body)?;
    for (name, sum) in sums {
        let data = tarred
            .get(&format!("{id}/{name}"))
            .with_context(|| format!("{name} not in the tar"))?;
        ensure!(
            &sha256(data) == sum,
            "{name}: the tar's copy has another checksum"
        );
    }
    ensure!(
        tarred.contains_key(&format!("{id}/manifest.json")),
        "no manifest in the tar"
    );
    Ok(())
}

/// A tar of `files` (name → bytes), each under `prefix/` when given.
pub fn make_tar(files: &BTreeMap<String, Vec<u8>>, prefix: Option<&str>) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o600);
        let path = match prefix {
            Some(p) => format!("{p}/{name}"),
            None => name.clone(),
        };
        b.append_data(&mut h, path, data.as_slice())?;
    }
    Ok(b.into_inner()?)
}
