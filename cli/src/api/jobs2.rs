//! The job kinds added after the first six: `health-fix`, `migrate-generate|apply|rollback`,
//! `backup-prune`, `export` (its files downloadable
//! from the job: `GET /api/v1/jobs/{id}/files/{file}` or all as one tar,
//! `GET /api/v1/jobs/{id}/download`) and `import` of an uploaded export (a tar archive of an
//! export directory as the raw request body, the options in the query). Same pattern as
//! [`super::jobs`]: validate, then start the job (202) or answer the plan (`?dry_run=true`,
//! 200); the work is in [`crate::service`].
//!
//! An upload is limited to [`IMPORT_BODY_LIMIT`] (the other routes keep the 64 KiB JSON
//! limit). It is unpacked into `<state_dir>/jobs/uploads/<random>/` before the job starts
//! (a tar that is not an export directory is refused there, 400) and removed when the job
//! ends; only plain files are taken from it, by their last path component, so an entry
//! cannot write outside that directory.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use fleetsync_proto::jobs::{JobKind, JobState};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::backups::{check_file_name, stream_file, stream_tar};
use super::jobs::{no_job, server_exists, side_exists, start, DryRun, JobDoc, JobPlan};
use super::problem::{BodyProblems, ConfirmBodyProblems, DownloadProblems, Problem};
use super::tokens::TokenRecord;
use super::ApiState;
use crate::service::backup::BackupPruneRequest;
use crate::service::health::HealthFixRequest;
use crate::service::migrate::{
    MigrateApplyRequest, MigrateGenerateRequest, MigrateRollbackRequest,
};
use crate::service::transfer::{ExportRequest, Format, ImportRequest, OnConflict};
use crate::service::{UploadDir, UploadedImport};

/// Largest upload of `POST /api/v1/jobs/import` (a tar of an export directory). It is held
/// in memory once while it is unpacked; larger imports run with `fleetsync import` on the
/// coordinator's machine.
pub const IMPORT_BODY_LIMIT: usize = 64 * 1024 * 1024;
/// The operation whose body is an upload (the auth layer's body limit for it).
pub const IMPORT_OPERATION: &str = "start_import_job";

/// The request body limit of an operation: the upload's, or the API's JSON limit.
pub fn body_limit(operation_id: &str) -> usize {
    if operation_id == IMPORT_OPERATION {
        IMPORT_BODY_LIMIT
    } else {
        super::BODY_LIMIT
    }
}

pub(super) fn routes(r: OpenApiRouter<ApiState>) -> OpenApiRouter<ApiState> {
    r.routes(routes!(start_health_fix_job))
        .routes(routes!(start_migrate_generate_job))
        .routes(routes!(start_migrate_apply_job))
        .routes(routes!(start_migrate_rollback_job))
        .routes(routes!(start_backup_prune_job))
        .routes(routes!(start_export_job))
        .routes(routes!(start_import_job))
        .routes(routes!(get_job_file))
        .routes(routes!(download_job_files))
}

fn confirm_needed(what: &str) -> Problem {
    Problem::new(
        StatusCode::CONFLICT,
        "confirm-needed",
        format!("{what}: send \"confirm\": true (or plan first with \"plan_only\": true)"),
    )
    .field("confirm")
}

/// Start a health check with the safe fixes (the report of `fleetsync health --fix --json`).
/// Applying needs `"confirm": true` (409 otherwise); `"plan_only": true` lists the fix
/// statements and changes nothing (`--fix --dry-run`).
#[utoipa::path(post, path = "/api/v1/jobs/health-fix", operation_id = "start_health_fix_job", tag = "jobs",
    security(("bearer" = ["integrity:repair"])),
    params(DryRun),
    request_body(content = HealthFixRequest, example = json!({"server": "src", "plan_only": true})),
    responses((status = 202, body = JobDoc, description = "Started"), (status = 200, body = JobPlan, description = "Dry run"), ConfirmBodyProblems))]
async fn start_health_fix_job(
    State(s): State<ApiState>,
    token: Option<Extension<TokenRecord>>,
    q: Result<Query<DryRun>, QueryRejection>,
    body: Result<Json<HealthFixRequest>, JsonRejection>,
) -> Result<Response, Problem> {
    start(&s, token, q, body, |r| {
        server_exists(&s, &r.server, "server")?;
        if !r.plan_only && !r.confirm {
            return Err(confirm_needed("health fixes change the server"));
        }
        Ok(())
    })
}

/// A migration target: `SERVER` or `SERVER/DATABASE` of a configured server.
fn migration_target(s: &ApiState, target: &str) -> Result<(), Problem> {
    match crate::diff_cmd::Side::parse(target) {
        crate::diff_cmd::Side::File(_) => Err(Problem::bad_request(format!(
            "target {target:?}: a migration's target must be SERVER or SERVER/DATABASE"
        ))
        .field("target")),
        other => server_exists(s, other.server().unwrap_or_default(), "target"),
    }
}

/// Start generating a migration (the report of `fleetsync migrate generate --json`): the
/// steps that make the target's schema equal the source's, verified on scratch copies. The
/// files (`migration.json`, `up.sql`, `down.sql`, `report.txt`) land in the job's own
/// directory (`GET /api/v1/jobs/{id}/files/{file}`); `migrate-apply` takes the job's id.
#[utoipa::path(post, path = "/api/v1/jobs/migrate-generate", operation_id = "start_migrate_generate_job", tag = "jobs",
    security(("bearer" = ["migration:read"])),
    params(DryRun),
    request_body(content = MigrateGenerateRequest, example = json!({"source": "src/app", "target": "dst/app"})),
    responses((status = 202, body = JobDoc, description = "Started"), (status = 200, body = JobPlan, description = "Dry run"), BodyProblems))]
async fn start_migrate_generate_job(
    State(s): State<ApiState>,
    token: Option<Extension<TokenRecord>>,
    q: Result<Query<DryRun>, QueryRejection>,
    body: Result<Json<MigrateGenerateRequest>, JsonRejection>,
) -> Result<Response, Problem> {
    start(&s, token, q, body, |r| {
        side_exists(&s, &r.source, "source")?;
        migration_target(&s, &r.target)
    })
}

/// Start applying the migration a succeeded `migrate_generate` job wrote (the report of
/// `fleetsync migrate apply --json`). Needs `"confirm": true` (409 otherwise); refused when
/// the migration is not verified, its files were changed, or the target's schema is no longer
/// the one it was generated for (the job fails, nothing changed).
#[utoipa::path(post, path = "/api/v1/jobs/migrate-apply", operation_id = "start_migrate_apply_job", tag = "jobs",
    security(("bearer" = ["migration:execute"])),
    params(DryRun),
    request_body(content = MigrateApplyRequest, example = json!({"target": "dst/app", "migration_job": "20260101T000000Z-0a1b2c3d", "confirm": true})),
    responses((status = 202, body = JobDoc, description = "Started"), (status = 200, body = JobPlan, description = "Dry run"), ConfirmBodyProblems))]
async fn start_migrate_apply_job(
    State(s): State<ApiState>,
    token: Option<Extension<TokenRecord>>,
    q: Result<Query<DryRun>, QueryRejection>,
    body: Result<Json<MigrateApplyRequest>, JsonRejection>,
) -> Result<Response, Problem> {
    start(&s, token, q, body, |r| {
        migration_target(&s, &r.target)?;
        let generated = s
            .jobs
            .get(&r.migration_job)
            .filter(|j| j.kind == JobKind::MigrateGenerate && j.state == JobState::Succeeded);
        if generated.is_none() {
            return Err(Problem::not_found(format!(
                "no succeeded migrate_generate job {:?}",
                r.migration_job
            ))
            .field("migration_job"));
        }
        if !r.confirm {
            return Err(confirm_needed("migrate apply changes the target's schema"));
        }
        Ok(())
    })
}

/// Start rolling back the target's latest applied migration (the report of `fleetsync
/// migrate rollback --json`). Needs `"confirm": true` (409 otherwise).
#[utoipa::path(post, path = "/api/v1/jobs/migrate-rollback", operation_id = "start_migrate_rollback_job", tag = "jobs",
    security(("bearer" = ["migration:rollback"])),
    params(DryRun),
    request_body(content = MigrateRollbackRequest, example = json!({"target": "dst/app", "confirm": true})),
    responses((status = 202, body = JobDoc, description = "Started"), (status = 200, body = JobPlan, description = "Dry run"), ConfirmBodyProblems))]
async fn start_migrate_rollback_job(
    State(s): State<ApiState>,
    token: Option<Extension<TokenRecord>>,
    q: Result<Query<DryRun>, QueryRejection>,
    body: Result<Json<MigrateRollbackRequest>, JsonRejection>,
) -> Result<Response, Problem> {
    start(&s, token, q, body, |r| {
        migration_target(&s, &r.target)?;
        if !r.confirm {
            return Err(confirm_needed(
                "migrate rollback changes the target's schema",
            ));
        }
        Ok(())
    })
}

/// Start a prune of the backups outside `[backup.retention]` (the report of `fleetsync backup
/// prune --json`). Deleting needs `"confirm": true`; `"plan_only": true` lists what would
/// be deleted.
#[utoipa::path(post, path = "/api/v1/jobs/backup-prune", operation_id = "start_backup_prune_job", tag = "jobs",
    security(("bearer" = ["backup:create"])),
    params(DryRun),
    request_body(content = BackupPruneRequest, example = json!({"plan_only": true})),
    responses((status = 202, body = JobDoc, description = "Started"), (status = 200, body = JobPlan, description = "Dry run"), ConfirmBodyProblems))]
async fn start_backup_prune_job(
    State(s): State<ApiState>,
    token: Option<Extension<TokenRecord>>,
    q: Result<Query<DryRun>, QueryRejection>,
    body: Result<Json<BackupPruneRequest>, JsonRejection>,
) -> Result<Response, Problem> {
    start(&s, token, q, body, |r| {
        if !r.plan_only && !r.confirm {
            return Err(confirm_needed("backup prune deletes backups"));
        }
        Ok(())
    })
}

/// Start an export of tables into files (the report of `fleetsync export --json`). The
/// files land in the job's own directory: `GET /api/v1/jobs/{id}/files/{file}` (names in
/// the report's `files`) or `GET /api/v1/jobs/{id}/download` (all, as a tar).
#[utoipa::path(post, path = "/api/v1/jobs/export", operation_id = "start_export_job", tag = "jobs",
    security(("bearer" = ["backup:create"])),
    params(DryRun),
    request_body(content = ExportRequest, example = json!({"server": "src", "format": "sql", "include": ["app\\..*"]})),
    responses((status = 202, body = JobDoc, description = "Started"), (status = 200, body = JobPlan, description = "Dry run"), BodyProblems))]
async fn start_export_job(
    State(s): State<ApiState>,
    token: Option<Extension<TokenRecord>>,
    q: Result<Query<DryRun>, QueryRejection>,
    body: Result<Json<ExportRequest>, JsonRejection>,
) -> Result<Response, Problem> {
    start(&s, token, q, body, |r| {
        server_exists(&s, &r.server, "server")?;
        crate::service::transfer::export_filter(r)
            .map_err(|(field, m)| Problem::bad_request(format!("{field}: {m}")).field(field))?;
        if r.schema_only && r.data_only {
            return Err(
                Problem::bad_request("schema_only and data_only exclude each other")
                    .field("data_only"),
            );
        }
        Ok(())
    })
}

/// The options of an import (the query of `POST /api/v1/jobs/import`).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ImportQuery {
    /// `[[servers]] name` of the target.
    server: String,
    /// The export's format.
    #[param(inline)]
    format: Format,
    /// `OLD=NEW[,OLD=NEW...]`: import database OLD as NEW.
    #[serde(default)]
    rename_db: Option<String>,
    /// What to do with a row whose key exists on the target (default `error`: the import
    /// fails and is rolled back). `replace` and `update` overwrite rows: they need `confirm`.
    #[serde(default)]
    #[param(inline)]
    on_conflict: OnConflict,
    /// Validate against the target and report; change nothing (as `--dry-run`).
    #[serde(default)]
    plan_only: bool,
    /// Keep foreign-key checks on during the load.
    #[serde(default)]
    fk_checks: bool,
    /// Needed with `on_conflict=replace|update`.
    #[serde(default)]
    confirm: bool,
    /// Check the options and the upload, start nothing.
    #[serde(default)]
    dry_run: bool,
}

/// The upload: a tar archive of an export directory.
#[derive(ToSchema)]
#[schema(format = Binary)]
#[allow(dead_code)]
struct TarUpload(String);

/// What an import's dry run checked.
#[derive(Serialize, ToSchema)]
struct ImportPlan {
    dry_run: bool,
    kind: String,
    #[schema(value_type = Object)]
    params: serde_json::Value,
    /// The files of the uploaded export directory.
    files: Vec<String>,
    /// Bytes uploaded.
    bytes: u64,
}

/// Unpacks the uploaded tar into a new directory under `uploads` (`<state_dir>/jobs/uploads/`); the
/// directory (removed when the returned guard goes) and the file names.
fn unpack(uploads: &std::path::Path, body: &[u8]) -> Result<(UploadDir, Vec<String>), Problem> {
    let bad = |m: String| Problem::bad_request(m).field("body");
    if body.is_empty() {
        return Err(bad(
            "the body must be a tar archive of an export directory (it is empty)".into(),
        ));
    }
    let dir = uploads.join(format!("{:016x}", rand::random::<u64>()));
    fleetsync_agent::owner_only::create_dir_all(&dir)
        .map_err(|e| Problem::internal(format!("cannot create {}: {e}", dir.display())))?;
    let guard = UploadDir(dir.clone());
    let mut names = Vec::new();
    let mut archive = tar::Archive::new(body);
    let entries = archive
        .entries()
        .map_err(|e| bad(format!("the body is not a tar archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("the body is not a tar archive: {e}")))?;
        let kind = entry.header().entry_type();
        let path = entry
            .path()
            .map_err(|e| bad(format!("a tar entry has a bad name: {e}")))?
            .into_owned();
        let shown = path.display().to_string();
        if kind.is_dir() {
            continue;
        }
        if !kind.is_file() {
            return Err(bad(format!(
                "tar entry {shown:?}: only plain files are accepted"
            )));
        }
        let parts: Vec<_> = path.components().collect();
        let plain = parts
            .iter()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !plain || parts.len() > 2 || check_file_name(name).is_err() {
            return Err(bad(format!(
                "tar entry {shown:?}: expected the files of one export directory (no `..`, no absolute or nested paths)"
            )));
        }
        if names.iter().any(|n| n == name) {
            return Err(bad(format!(
                "tar entry {shown:?}: {name} is in the archive twice"
            )));
        }
        let target = dir.join(name);
        let mut out = std::fs::File::create(&target)
            .map_err(|e| Problem::internal(format!("cannot write {}: {e}", target.display())))?;
        std::io::copy(&mut entry, &mut out)
            .map_err(|e| bad(format!("tar entry {shown:?} cannot be read: {e}")))?;
        names.push(name.to_string());
    }
    if !names
        .iter()
        .any(|n| n == fleetsync_agent::transfer::MANIFEST_FILE)
    {
        return Err(bad(format!(
            "the archive has no {}: it must hold an export directory (what `fleetsync export` writes)",
            fleetsync_agent::transfer::MANIFEST_FILE
        )));
    }
    Ok((guard, names))
}

/// Start an import of an uploaded export (the report of `fleetsync import --json`). The
/// body (`application/octet-stream`, any content type is read the same) is a tar archive of an export directory (what `GET /api/v1/jobs/{id}/download` of
/// an export job returns, or `tar -cf - -C DIR .`), at most 64 MiB. Everything is validated
/// before anything is written: problems are in the report's `errors` (file, line, column)
/// with exit code 1, and nothing was written.
#[utoipa::path(post, path = "/api/v1/jobs/import", operation_id = "start_import_job", tag = "jobs",
    security(("bearer" = ["backup:restore"])),
    params(ImportQuery),
    request_body(content = TarUpload, content_type = "application/octet-stream", description = "A tar archive of an export directory"),
    responses((status = 202, body = JobDoc, description = "Started"), (status = 200, body = ImportPlan, description = "Dry run"), ConfirmBodyProblems))]
async fn start_import_job(
    State(s): State<ApiState>,
    token: Option<Extension<TokenRecord>>,
    q: Result<Query<ImportQuery>, QueryRejection>,
    body: Body,
) -> Result<Response, Problem> {
    let q = q.map_err(super::problem::from_query_rejection)?.0;
    server_exists(&s, &q.server, "server")?;
    let rename_db: Vec<String> = q
        .rename_db
        .as_deref()
        .filter(|r| !r.is_empty())
        .map(|r| r.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    crate::service::backup::parse_renames(&rename_db)
        .map_err(|e| Problem::bad_request(e.to_string()).field("rename_db"))?;
    let overwrites = matches!(q.on_conflict, OnConflict::Replace | OnConflict::Update);
    if overwrites && !q.plan_only && !q.confirm {
        return Err(confirm_needed("on_conflict=replace|update overwrites rows"));
    }
    let bytes = axum::body::to_bytes(body, IMPORT_BODY_LIMIT)
        .await
        .map_err(|_| {
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                format!("the upload is over {IMPORT_BODY_LIMIT} bytes"),
            )
        })?;
    let request = ImportRequest {
        server: q.server,
        format: q.format,
        rename_db,
        on_conflict: q.on_conflict,
        plan_only: q.plan_only,
        fk_checks: q.fk_checks,
    };
    let uploads = s.config.state_dir.join("jobs").join("uploads");
    let body_bytes = bytes.clone();
    let (upload, files) = tokio::task::spawn_blocking(move || unpack(&uploads, &body_bytes))
        .await
        .map_err(|e| Problem::internal(e.to_string()))??;
    if q.dry_run {
        let plan = ImportPlan {
            dry_run: true,
            kind: JobKind::Import.as_str().to_string(),
            params: serde_json::to_value(&request).map_err(|e| Problem::internal(e.to_string()))?,
            files,
            bytes: bytes.len() as u64,
        };
        return Ok(Json(plan).into_response());
    }
    let req = UploadedImport {
        request,
        upload: Some(Arc::new(upload)),
    };
    super::jobs::accepted(&s, req, token)
}

/// The files a succeeded job wrote into its own directory (an export's files, a data
/// diff's `repair.sql`, a migration's files), sorted; 404 when it has none.
fn job_files(s: &ApiState, id: &str) -> Result<Vec<String>, Problem> {
    if let Some(other) = s.jobs.elsewhere(id) {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "job-elsewhere",
            format!(
                "job {id} ran on replica {}: its files are there (ask that replica's API)",
                other.replica
            ),
        )
        .field("id"));
    }
    let job = s.jobs.get(id).ok_or_else(|| no_job(id))?;
    let none = || {
        Problem::not_found(format!(
            "job {id} has no files (a succeeded job that wrote some has)"
        ))
        .field("id")
    };
    if job.state != JobState::Succeeded {
        return Err(none());
    }
    let mut files: Vec<String> = std::fs::read_dir(s.jobs.files_dir(id))
        .map_err(|_| none())?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect();
    files.sort();
    Ok(files)
}

/// One file a succeeded job wrote (an export's files, as its report's `files` lists them; a
/// data diff's `repair.sql`), streamed.
#[utoipa::path(get, path = "/api/v1/jobs/{id}/files/{file}", operation_id = "get_job_file", tag = "jobs",
    security(("bearer" = ["backup:create"])),
    params(("id" = String, Path, description = "The job's id"),
        ("file" = String, Path, description = "A file the job wrote, e.g. `export.json` or `repair.sql`")),
    responses((status = 200, body = String, content_type = "application/octet-stream", description = "The file's bytes"), DownloadProblems))]
async fn get_job_file(
    State(s): State<ApiState>,
    Path((id, file)): Path<(String, String)>,
) -> Result<Response, Problem> {
    check_file_name(&file)?;
    let files = job_files(&s, &id)?;
    if !files.contains(&file) {
        return Err(Problem::not_found(format!("job {id} has no file {file:?}")).field("file"));
    }
    stream_file(&s.jobs.files_dir(&id).join(&file), &file).await
}

/// Every file a succeeded job wrote as one tar archive (entries `<id>/<file>`); an export
/// job's is the upload `POST /api/v1/jobs/import` takes.
#[utoipa::path(get, path = "/api/v1/jobs/{id}/download", operation_id = "download_job_files", tag = "jobs",
    security(("bearer" = ["backup:create"])),
    params(("id" = String, Path, description = "The job's id")),
    responses((status = 200, body = String, content_type = "application/x-tar", description = "A tar archive of the job's files"), DownloadProblems))]
async fn download_job_files(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let files = job_files(&s, &id)?;
    Ok(stream_tar(s.jobs.files_dir(&id), id, files))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar with entries (name, type, data); names are written into the header as given
    /// (the tar crate refuses to write `..` itself).
    fn tar_of(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, kind, data) in entries {
            let mut h = tar::Header::new_old();
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_entry_type(*kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o600);
            h.set_cksum();
            out.extend_from_slice(h.as_bytes());
            out.extend_from_slice(data);
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
        out.resize(out.len() + 1024, 0);
        out
    }

    #[test]
    fn uploads_are_flat_export_directories_and_nothing_escapes() {
        let base = std::env::temp_dir().join(format!("fs-upload-{}", rand::random::<u32>()));
        let root = base.join("uploads");
        let file = tar::EntryType::Regular;
        let ok = tar_of(&[
            ("x/", tar::EntryType::Directory, b""),
            ("x/export.json", file, b"{}"),
            ("x/app.t.jsonl", file, b"1"),
        ]);
        let (dir, names) = unpack(&root, &ok).expect("a valid upload");
        assert_eq!(names, ["export.json", "app.t.jsonl"]);
        assert_eq!(
            std::fs::read(dir.0.join("app.t.jsonl")).ok(),
            Some(b"1".to_vec())
        );
        let path = dir.0.clone();
        drop(dir);
        assert!(!path.exists(), "the upload is removed with its guard");
        for (what, body) in [
            ("empty", Vec::new()),
            ("not a tar", b"plain text, not an archive".repeat(40)),
            ("dot-dot", tar_of(&[("../export.json", file, b"{}")])),
            ("absolute", tar_of(&[("/tmp/export.json", file, b"{}")])),
            ("nested", tar_of(&[("a/b/export.json", file, b"{}")])),
            (
                "link",
                tar_of(&[("export.json", tar::EntryType::Symlink, b"")]),
            ),
            (
                "twice",
                tar_of(&[("export.json", file, b"{}"), ("a/export.json", file, b"{}")]),
            ),
            ("no manifest", tar_of(&[("app.t.jsonl", file, b"1")])),
        ] {
            let e = unpack(&root, &body).err();
            assert!(
                e.as_ref()
                    .is_some_and(|p| p.status == 400 && p.field.as_deref() == Some("body")),
                "{what}: {e:?}"
            );
        }
        // Nothing was left behind, inside or outside the uploads directory.
        let left = std::fs::read_dir(&root).map(|d| d.count()).unwrap_or(0);
        assert_eq!(left, 0);
        assert!(
            !base.join("export.json").exists(),
            "`../export.json` was written"
        );
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn file_names_that_could_leave_the_directory_are_refused() {
        for bad in [
            "",
            "..",
            ".",
            "../x",
            "a/../../x",
            "/etc/passwd",
            "a\\b",
            "a//b",
            "x\0",
        ] {
            assert!(check_file_name(bad).is_err(), "{bad:?}");
        }
        for good in ["manifest.json", "data/app.t.000001.sql.zst", "export.json"] {
            assert!(check_file_name(good).is_ok(), "{good:?}");
        }
    }
}
