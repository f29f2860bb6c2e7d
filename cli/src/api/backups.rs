//! The backup routes (`/api/v1/backups...`): the list (`fleetsync backup list --json`), one
//! backup's manifest, one stored file, the whole backup as one tar stream, and pin/unpin.
//! All work on `[backup] dir` (a directory or a bucket, through the same store) only; they
//! need `backup:create` (a download is the data itself: the roles that may take a backup,
//! and no others, may read one; pinning decides what retention deletes). An id may be a
//! backup's name.
//!
//! A file is named as the manifest names it (`data/app.t.000001.sql.zst`, the `/`
//! percent-encoded in the path) or `manifest.json`. Only names the manifest lists are served:
//! a name with `..`, a leading `/`, a backslash or a NUL is refused (404, saying why) before
//! any lookup, any other unlisted name is 404 too, so no request reaches outside the backup's
//! directory.
//! Objects stream from the store (memory stays one chunk per download, no local copy); the
//! tar is produced as the client reads it, so a slow client slows the reads.

use std::io::Write;
use std::path::{Path as FsPath, PathBuf};

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use fleetsync_agent::backup::{manifest, BackupError, Settings};
use fleetsync_proto::jobs::{BackupListEntry, BackupPinReport};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::jobs::DryRun;
use super::problem::{from_query_rejection, DeniedProblems, DownloadProblems, Problem};
use super::ApiState;

/// Chunks buffered between a tar writer and its client.
const TAR_CHUNKS: usize = 8;
/// Bytes per chunk of a tar stream.
const TAR_CHUNK_BYTES: usize = 64 * 1024;

pub(super) fn routes(r: OpenApiRouter<ApiState>) -> OpenApiRouter<ApiState> {
    r.routes(routes!(list_backups))
        .routes(routes!(get_backup))
        .routes(routes!(get_backup_file))
        .routes(routes!(download_backup))
        .routes(routes!(pin_backup))
        .routes(routes!(unpin_backup))
}

/// One backup of the list (`BackupListEntry`).
#[derive(serde::Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
struct BackupListEntryDoc {
    id: String,
    /// `backup create --name`.
    name: Option<String>,
    /// A pinned backup is never deleted by retention.
    pinned: bool,
    /// `running`, `complete`, `failed` or `unreadable`.
    status: String,
    server: Option<String>,
    started: Option<String>,
    finished: Option<String>,
    duration_seconds: Option<f64>,
    tables: Option<u64>,
    rows: Option<u64>,
    /// Bytes stored (compressed, encrypted).
    bytes: Option<u64>,
    /// The binlog position of the backup's snapshot.
    position: Option<String>,
    encrypted: Option<bool>,
    compression: Option<String>,
    error: Option<String>,
    /// The last `backup verify` of this backup.
    verified: BackupVerifiedDoc,
}

/// The last verification of a backup (`BackupVerified`).
#[derive(serde::Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
struct BackupVerifiedDoc {
    /// `verified`, `failed` or `never`.
    state: String,
    /// When it ended (RFC 3339, UTC).
    at: Option<String>,
    /// Why it failed.
    error: Option<String>,
}

/// The backup settings; 409 when backups are not configured (no `[backup] dir`).
fn settings(s: &ApiState) -> Result<Settings, Problem> {
    Settings::from_config(&s.live().backup)
        .map_err(|e| Problem::new(StatusCode::CONFLICT, "not-configured", e.to_string()))
}

/// A backup's manifest (`id`: its id or name), or 404 (a bad or unknown id) naming the field.
async fn read_manifest(s: &ApiState, id: &str) -> Result<(Settings, manifest::Manifest), Problem> {
    let settings = settings(s)?;
    settings.check().await.map_err(store_problem)?;
    manifest::check_id(id).map_err(|e| Problem::bad_request(e.to_string()).field("id"))?;
    let id = manifest::resolve(&settings.store, id)
        .await
        .map_err(|e| Problem::new(StatusCode::CONFLICT, "unreadable", e.to_string()).field("id"))?;
    let exists = settings
        .store
        .list(&id)
        .await
        .map_err(|e| store_problem(e.into()))?;
    if exists.is_empty() {
        return Err(Problem::not_found(format!("no backup {id:?}")).field("id"));
    }
    let m = manifest::read(&settings.store, &id)
        .await
        .map_err(|e| Problem::new(StatusCode::CONFLICT, "unreadable", e.to_string()).field("id"))?;
    Ok((settings, m))
}

/// The backup location failed (unreachable, refused credentials): 503, one line, no secret.
fn store_problem(e: BackupError) -> Problem {
    Problem::new(StatusCode::SERVICE_UNAVAILABLE, "storage", e.to_string())
}

/// Every backup in `[backup] dir`, oldest first (what `fleetsync backup list --json` prints).
#[utoipa::path(get, path = "/api/v1/backups", operation_id = "list_backups", tag = "backups",
    security(("bearer" = ["backup:create"])),
    responses((status = 200, body = Vec<BackupListEntryDoc>), (status = 409, body = Problem, content_type = "application/problem+json", description = "No `[backup] dir` configured"), DeniedProblems))]
async fn list_backups(State(s): State<ApiState>) -> Result<Json<Vec<BackupListEntry>>, Problem> {
    settings(&s)?;
    let config = s.live();
    let list = crate::service::backup::list(&config)
        .await
        .map_err(|e| Problem::internal(crate::exit::one_line(e.as_ref())))?;
    Ok(Json(list))
}

/// One backup's manifest (`manifest.json`: tables, files with their SHA-256, position; no
/// secrets: a manifest never holds credentials or keys).
#[utoipa::path(get, path = "/api/v1/backups/{id}", operation_id = "get_backup", tag = "backups",
    security(("bearer" = ["backup:create"])),
    params(("id" = String, Path, description = "The backup's id")),
    responses((status = 200, body = Object, description = "The manifest"), (status = 409, body = Problem, content_type = "application/problem+json", description = "The manifest cannot be read, or no `[backup] dir` is configured"), DownloadProblems))]
async fn get_backup(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let (_, m) = read_manifest(&s, &id).await?;
    Ok(Json(m).into_response())
}

/// Refuses a file name that could leave its directory, before any lookup (404, `field:
/// file`: there is no such file; a 400 would call a well-formed path parameter invalid).
pub(super) fn check_file_name(name: &str) -> Result<(), Problem> {
    let bad = name.is_empty()
        || name.starts_with('/')
        || name.contains('\\')
        || name.contains('\0')
        || name
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        return Err(Problem::not_found(format!(
            "file {name:?}: not a file name of this resource (no `..`, no absolute path)"
        ))
        .field("file"));
    }
    Ok(())
}

/// One stored file of a backup, as stored (compressed, maybe encrypted), streamed. Its SHA-256
/// is in the manifest. `file`: the manifest's name (percent-encode the `/`) or `manifest.json`.
#[utoipa::path(get, path = "/api/v1/backups/{id}/files/{file}", operation_id = "get_backup_file", tag = "backups",
    security(("bearer" = ["backup:create"])),
    params(("id" = String, Path, description = "The backup's id"),
        ("file" = String, Path, description = "A file name as the manifest lists it, e.g. `data%2Fapp.t.000001.sql.zst`, or `manifest.json`")),
    responses((status = 200, body = String, content_type = "application/octet-stream", description = "The file's bytes"),
        (status = 409, body = Problem, content_type = "application/problem+json", description = "The manifest cannot be read, or no `[backup] dir` is configured"), DownloadProblems))]
async fn get_backup_file(
    State(s): State<ApiState>,
    Path((id, file)): Path<(String, String)>,
) -> Result<Response, Problem> {
    check_file_name(&file)?;
    let (settings, m) = read_manifest(&s, &id).await?;
    let listed = file == manifest::MANIFEST_FILE || m.files().any(|f| f.name == file);
    if !listed {
        return Err(Problem::not_found(format!("backup {id} has no file {file:?}")).field("file"));
    }
    let backup = settings.backup(&m.id).map_err(store_problem)?;
    let len = backup
        .size(&file)
        .await
        .map_err(|e| store_problem(e.into()))?
        .ok_or_else(|| {
            Problem::not_found(format!("{file}: missing from the store")).field("file")
        })?;
    let body = backup
        .get_stream(&file)
        .await
        .map_err(|e| store_problem(e.into()))?;
    let stream = futures_util::StreamExt::map(body, |r| {
        r.map_err(|e| std::io::Error::other(e.to_string()))
    });
    Ok(octet_stream(Body::from_stream(stream), Some(len), &file))
}

/// A whole backup as one tar archive (`<id>/manifest.json`, then every stored file under
/// `<id>/`), streamed; unpack it into `[backup] dir` to restore from it elsewhere.
#[utoipa::path(get, path = "/api/v1/backups/{id}/download", operation_id = "download_backup", tag = "backups",
    security(("bearer" = ["backup:create"])),
    params(("id" = String, Path, description = "The backup's id")),
    responses((status = 200, body = String, content_type = "application/x-tar", description = "A tar archive of the backup's directory"),
        (status = 409, body = Problem, content_type = "application/problem+json", description = "The manifest cannot be read, or no `[backup] dir` is configured"), DownloadProblems))]
async fn download_backup(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let (_, m) = read_manifest(&s, &id).await?;
    let config = s.live();
    let (_, stream) = crate::service::backup::download(&config, &m.id)
        .await
        .map_err(|e| {
            Problem::internal(crate::exit::one_line(
                crate::service::into_anyhow(e).as_ref(),
            ))
        })?;
    let mut resp = Body::from_stream(stream).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-tar"),
    );
    Ok(resp)
}

/// Pin a backup (id or name): retention never deletes it. The manifest is not changed (a
/// separate `pin.json` marks it).
#[utoipa::path(post, path = "/api/v1/backups/{id}/pin", operation_id = "pin_backup", tag = "backups",
    security(("bearer" = ["backup:create"])),
    params(("id" = String, Path, description = "The backup's id or name"), DryRun),
    responses((status = 200, body = BackupPinDoc), (status = 409, body = Problem, content_type = "application/problem+json", description = "The manifest cannot be read, or no `[backup] dir` is configured"), DownloadProblems))]
async fn pin_backup(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    q: Result<Query<DryRun>, QueryRejection>,
) -> Result<Json<BackupPinReport>, Problem> {
    let dry_run = q.map_err(from_query_rejection)?.0.dry_run;
    set_pin(&s, &id, true, dry_run).await
}

/// Unpin a backup (id or name): retention applies to it again.
#[utoipa::path(post, path = "/api/v1/backups/{id}/unpin", operation_id = "unpin_backup", tag = "backups",
    security(("bearer" = ["backup:create"])),
    params(("id" = String, Path, description = "The backup's id or name"), DryRun),
    responses((status = 200, body = BackupPinDoc), (status = 409, body = Problem, content_type = "application/problem+json", description = "The manifest cannot be read, or no `[backup] dir` is configured"), DownloadProblems))]
async fn unpin_backup(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    q: Result<Query<DryRun>, QueryRejection>,
) -> Result<Json<BackupPinReport>, Problem> {
    let dry_run = q.map_err(from_query_rejection)?.0.dry_run;
    set_pin(&s, &id, false, dry_run).await
}

/// Pins or unpins; with `dry_run`, checks the backup exists and answers what it would become.
async fn set_pin(
    s: &ApiState,
    id: &str,
    pin: bool,
    dry_run: bool,
) -> Result<Json<BackupPinReport>, Problem> {
    let (_, m) = read_manifest(s, id).await?;
    if dry_run {
        return Ok(Json(BackupPinReport {
            id: m.id.clone(),
            name: m.name.clone(),
            pinned: pin,
        }));
    }
    let config = s.live();
    let r = crate::service::backup::set_pinned(&config, &m.id, pin)
        .await
        .map_err(|e| {
            Problem::new(
                StatusCode::CONFLICT,
                "refused",
                crate::exit::one_line(crate::service::into_anyhow(e).as_ref()),
            )
        })?;
    Ok(Json(r))
}

/// The answer of pin/unpin (`BackupPinReport`).
#[derive(serde::Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
struct BackupPinDoc {
    id: String,
    name: Option<String>,
    pinned: bool,
}

/// `path` as an `application/octet-stream` answer named `name`, streamed.
pub(super) async fn stream_file(path: &FsPath, name: &str) -> Result<Response, Problem> {
    let f = tokio::fs::File::open(path)
        .await
        .map_err(|e| Problem::not_found(format!("{name}: cannot be read: {e}")).field("file"))?;
    let len = f.metadata().await.map(|m| m.len()).ok();
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(f));
    Ok(octet_stream(body, len, name))
}

/// `body` as an `application/octet-stream` answer named `name` (attachment).
fn octet_stream(body: Body, len: Option<u64>, name: &str) -> Response {
    let mut resp = body.into_response();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Some(len) = len {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    let base = name.rsplit('/').next().unwrap_or(name);
    let disposition = format!("attachment; filename=\"{}\"", base.replace('"', "_"));
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}

/// Sends what a tar writer writes as body chunks (an error once the client is gone).
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client gone"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= TAR_CHUNK_BYTES {
            self.send()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

fn write_tar(
    w: ChannelWriter,
    root: &FsPath,
    prefix: &str,
    names: &[String],
) -> std::io::Result<()> {
    let mut tar = tar::Builder::new(w);
    for name in names {
        let mut f = std::fs::File::open(root.join(name))?;
        let meta = f.metadata()?;
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(meta.len());
        h.set_mode(0o600);
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        h.set_mtime(mtime);
        tar.append_data(&mut h, format!("{prefix}/{name}"), &mut f)?;
    }
    let mut w = tar.into_inner()?;
    w.flush()
}

/// The files `names` (relative to `root`) as a tar archive under `prefix/`, streamed. A file
/// that cannot be read ends the stream early (the client sees a truncated archive, and the
/// error is logged): the status line has left already.
pub(super) fn stream_tar(root: PathBuf, prefix: String, names: Vec<String>) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel(TAR_CHUNKS);
    tokio::task::spawn_blocking(move || {
        let w = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(TAR_CHUNK_BYTES),
        };
        if let Err(e) = write_tar(w, &root, &prefix, &names) {
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                tracing::warn!(dir = %root.display(), error = %e, "tar download stopped");
                let _ = tx.blocking_send(Err(e));
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    let mut resp = Body::from_stream(stream).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-tar"),
    );
    resp
}
