//! `GET /api/v1/backup-settings`: the `[backup]` settings a dashboard shows beside the
//! backups (retention, schedule, compression, encryption on or off, binlog archive). No
//! paths, no key material: whether backups are encrypted, never with what.

use axum::extract::State;
use axum::Json;
use fleetsync_config::Compression;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::problem::DeniedProblems;
use super::ApiState;

pub(super) fn routes(r: OpenApiRouter<ApiState>) -> OpenApiRouter<ApiState> {
    r.routes(routes!(get_backup_settings))
}

/// `[backup.retention]`: what `backup prune` (and a scheduled backup) keeps.
#[derive(Serialize, ToSchema)]
struct RetentionDoc {
    /// Keep at most this many complete backups per server (none: no count limit).
    keep_last: Option<usize>,
    /// Delete backups older than this many days (none: no age limit).
    max_age_days: Option<u64>,
}

/// The `[backup]` settings as the running process has them.
#[derive(Serialize, ToSchema)]
struct BackupSettingsDoc {
    /// Whether `[backup] dir` is set (without it the backup routes answer 409).
    configured: bool,
    /// `zstd`, `gzip` or `none`.
    compression: String,
    /// Whether new backups are encrypted (a key file or variable is configured).
    encrypted: bool,
    retention: RetentionDoc,
    /// `[backup] schedule` (cron, UTC) of the file; the API's schedules are `/api/v1/schedules`.
    schedule: Option<String>,
    /// Whether the binlog archive for point-in-time restores is on.
    archive_binlog: bool,
}

/// The `[backup]` settings (retention, schedule, compression, encryption on/off).
#[utoipa::path(get, path = "/api/v1/backup-settings", operation_id = "get_backup_settings", tag = "backups",
    security(("bearer" = ["backup:create"])),
    responses((status = 200, body = BackupSettingsDoc), DeniedProblems))]
async fn get_backup_settings(State(s): State<ApiState>) -> Json<BackupSettingsDoc> {
    let config = s.live();
    let b = &config.backup;
    Json(BackupSettingsDoc {
        configured: b.dir.is_some(),
        compression: match b.compression {
            Compression::Zstd => "zstd",
            Compression::Gzip => "gzip",
            Compression::None => "none",
        }
        .to_string(),
        encrypted: b.encryption_key_file.is_some() || b.encryption_key_env.is_some(),
        retention: RetentionDoc {
            keep_last: b.retention.keep_last,
            max_age_days: b.retention.max_age_days,
        },
        schedule: b.schedule.clone(),
        archive_binlog: b.archive_binlog,
    })
}
