//! The manual conflict queue (`conflict = "manual"`, the `fleetsync.conflicts` table the
//! applier writes on each target) as `fleetsync conflicts list --json` and the API show it,
//! and the typed requests of a listing and a resolution.

use serde::{Deserialize, Serialize};

/// One parked conflict: the incoming change's version and the target's own row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conflict {
    /// The server holding it (ids are per target).
    pub target: String,
    pub id: u64,
    pub sync: String,
    pub schema: String,
    pub table: String,
    /// The row's key, column → value.
    pub key: serde_json::Value,
    /// The incoming change's final image (null: the change deleted the row).
    pub incoming: serde_json::Value,
    /// The target's row when the change arrived (null: it had none).
    pub local: serde_json::Value,
    /// The before image both sides started from: the incoming change's expected row (null:
    /// the change created the row, or `before_recorded` is false).
    #[serde(default)]
    pub before: serde_json::Value,
    /// False for conflicts parked before the before image was recorded.
    #[serde(default)]
    pub before_recorded: bool,
    /// The server the incoming change came from.
    pub origin: String,
    pub source_position: String,
    pub detected_at: String,
    /// `open` or `resolved`.
    pub status: String,
    /// How it was resolved, e.g. `took a (incoming)`, `kept b (local)`.
    #[serde(default)]
    pub resolution: Option<String>,
    #[serde(default)]
    pub resolved_at: Option<String>,
}

/// `conflicts resolve` / `POST /api/v1/conflicts/{target}/{id}/resolve`: what was (or, for
/// a dry run, would be) done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConflictResolution {
    pub target: String,
    pub id: u64,
    /// `incoming` (the parked change is applied on the target) or `local` (the target's row is
    /// kept; only the conflict is marked resolved).
    pub take: String,
    /// The server the incoming version came from.
    pub origin: String,
    /// The resolution recorded, e.g. `took a (incoming)`.
    pub resolution: String,
    /// The statement run on the target (taking the incoming version), null when keeping the
    /// local row. It holds row values, never credentials.
    pub statement: Option<String>,
    pub dry_run: bool,
}

/// A resolution's choice: one side, or a merged row written on the target.
#[derive(Debug, Clone, PartialEq)]
pub enum Choice {
    Take(Take),
    /// A full row (column → value, as in `incoming`/`local`) upserted on the target; its key
    /// must be the conflict's key.
    Merged(serde_json::Map<String, serde_json::Value>),
}

impl Choice {
    /// The name in JSON (`take`): `incoming`, `local` or `merged`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Choice::Take(t) => t.as_str(),
            Choice::Merged(_) => "merged",
        }
    }
}

/// Which side a resolution keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Take {
    /// The parked incoming version is applied on the target.
    Incoming,
    /// The target's own row stays.
    Local,
}

impl Take {
    /// The name in JSON and in the resolution record.
    pub fn as_str(self) -> &'static str {
        match self {
            Take::Incoming => "incoming",
            Take::Local => "local",
        }
    }
}

/// Filters of a listing (`conflicts list`, `GET /api/v1/conflicts`); `status` is `open`
/// (the default), `resolved` or `all`.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct ConflictFilter {
    pub sync: Option<String>,
    pub target: Option<String>,
    /// `schema.table`, or a table name in any schema.
    pub table: Option<String>,
    pub status: Option<String>,
}
