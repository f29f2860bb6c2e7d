//! `POST /api/v1/conflicts/resolve-bulk`: resolves the open conflicts a filter selects by one
//! rule (take incoming, take local, the newer or older value of a column), each through
//! [`service::resolve`] like a single resolution; a dry run lists every conflict it would
//! touch and which side wins.

use std::cmp::Ordering;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use fleetsync_proto::conflicts::Conflict;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::jobs::DryRun;
use super::problem::{from_json_rejection, from_query_rejection, problem_responses, Problem};
use super::ApiState;
use crate::service::conflicts::{self as service, ConflictError, ConflictFilter, Take};

pub(super) fn routes(r: OpenApiRouter<ApiState>) -> OpenApiRouter<ApiState> {
    r.routes(routes!(resolve_bulk))
}

/// Which open conflicts a bulk resolution looks at (all given filters must match).
#[derive(Debug, Default, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct BulkConflictFilter {
    /// Only this target server.
    target: Option<String>,
    /// Only this table (`schema.table`, or a table name in any schema).
    table: Option<String>,
    /// Only conflicts whose incoming change came from this server.
    origin: Option<String>,
    /// Only conflicts of this sync.
    sync: Option<String>,
    /// Only conflicts detected at or after this time (`YYYY-MM-DD HH:MM[:SS]`, as listed).
    #[schema(
        pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([ T][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?Z?)?$"
    )]
    detected_from: Option<String>,
    /// Only conflicts detected before this time.
    #[schema(
        pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([ T][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?Z?)?$"
    )]
    detected_to: Option<String>,
    /// Only these conflicts (`target/id`, e.g. those a dry run listed).
    ids: Option<Vec<String>>,
}

/// What a rule picks (the decision's view of [`BulkRuleDoc`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BulkRuleTake {
    Incoming,
    Local,
    Newer,
    Older,
}

/// A checked rule.
#[derive(Debug, Clone)]
struct BulkRule {
    take: BulkRuleTake,
    /// The column `Newer`/`Older` compare.
    column: Option<String>,
}

/// The rule deciding each conflict (`take`). Its schema is written by hand
/// ([`tagged_body`]): the derived one would let each variant carry any other field.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "take", rename_all = "lowercase", deny_unknown_fields)]
enum BulkRuleDoc {
    /// Always the incoming version.
    Incoming {},
    /// Always the target's own row.
    Local {},
    /// The side whose `column` holds the greater value (an absent row, then NULL, rank lowest).
    Newer {
        /// The column compared (e.g. `updated_at`).
        column: String,
    },
    /// The side whose `column` holds the smaller value (an absent row, then NULL, rank lowest).
    Older {
        /// The column compared.
        column: String,
    },
}

impl utoipa::PartialSchema for BulkRuleDoc {
    fn schema() -> RefOr<Schema> {
        let column = || {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .description(Some("The column compared (e.g. `updated_at`)."))
                .into()
        };
        tagged_body(
            "The rule deciding each conflict.",
            vec![
                ("incoming", "Always the incoming version.", vec![]),
                ("local", "Always the target's own row.", vec![]),
                (
                    "newer",
                    "The side whose `column` holds the greater value (an absent row, then NULL, rank lowest).",
                    vec![("column", column())],
                ),
                (
                    "older",
                    "The side whose `column` holds the smaller value (an absent row, then NULL, rank lowest).",
                    vec![("column", column())],
                ),
            ],
        )
    }
}

impl ToSchema for BulkRuleDoc {
    fn name() -> std::borrow::Cow<'static, str> {
        "BulkRuleDoc".into()
    }
}

/// One variant of a body tagged by `take`: its tag, its description, its required fields.
pub(super) type TaggedVariant<'a> = (&'a str, &'a str, Vec<(&'a str, RefOr<Schema>)>);

/// The schema of a body tagged by `take`: one object per variant (`take`, its required
/// fields, no other field), as serde's `#[serde(tag = "take", deny_unknown_fields)]` reads it.
pub(super) fn tagged_body(description: &str, variants: Vec<TaggedVariant<'_>>) -> RefOr<Schema> {
    let mut one_of = OneOfBuilder::new().description(Some(description));
    for (take, doc, fields) in variants {
        let mut o = ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(doc))
            .property(
                "take",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some([take])),
            )
            .required("take")
            .additional_properties(Some(AdditionalProperties::FreeForm(false)));
        for (name, schema) in fields {
            o = o.property(name, schema).required(name);
        }
        one_of = one_of.item(o);
    }
    RefOr::T(Schema::OneOf(one_of.build()))
}

/// The body of a bulk resolution.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct BulkResolveRequest {
    #[serde(default)]
    filter: BulkConflictFilter,
    rule: BulkRuleDoc,
    /// Required (409 without) unless `?dry_run=true`: resolving writes on the targets.
    #[serde(default)]
    confirm: bool,
}

/// One conflict of a bulk resolution.
#[derive(Debug, Serialize, ToSchema)]
struct BulkResolveItem {
    target: String,
    id: u64,
    /// `schema.table`.
    table: String,
    #[schema(value_type = Object)]
    key: Value,
    origin: String,
    detected_at: String,
    /// `incoming` or `local` (null: skipped before a side was picked).
    winner: Option<String>,
    /// `resolved`, `would_resolve` (dry run), `skipped` or `failed`.
    outcome: String,
    /// Why it was skipped or failed.
    reason: Option<String>,
    /// The compared column's value on each side (`newer`/`older` rules).
    incoming_value: Option<Value>,
    local_value: Option<Value>,
}

/// What a bulk resolution did (or, for a dry run, would do).
#[derive(Debug, Serialize, ToSchema)]
struct BulkResolveReport {
    dry_run: bool,
    /// Conflicts the filter selected.
    matched: usize,
    /// Resolved (dry run: would be resolved).
    resolved: usize,
    skipped: usize,
    failed: usize,
    items: Vec<BulkResolveItem>,
}

problem_answers! {
    /// A bulk resolution (409: `confirm` missing; 502: a target could not be read).
    BulkResolveProblems: 400, 401, 403, 404, 409, 413, 415, 422, 502;
}

/// Resolve the open conflicts `filter` selects by `rule`, each like
/// `POST /conflicts/{target}/{id}/resolve` (its own transaction). Needs `"confirm": true`
/// (409 without) unless `?dry_run=true`, which lists every conflict it would touch and which
/// side wins, writing nothing. A conflict the rule cannot decide (the column NULL or absent on
/// both sides, equal values, values that do not compare) is skipped with the reason.
#[utoipa::path(post, path = "/api/v1/conflicts/resolve-bulk", operation_id = "resolve_conflicts_bulk", tag = "conflicts",
    security(("bearer" = ["conflicts:resolve"])),
    params(DryRun),
    request_body(content = BulkResolveRequest, example = json!({"filter": {"table": "app.items"}, "rule": {"take": "newer", "column": "updated_at"}, "confirm": true})),
    responses((status = 200, body = BulkResolveReport), BulkResolveProblems))]
async fn resolve_bulk(
    State(s): State<ApiState>,
    q: Result<Query<DryRun>, QueryRejection>,
    body: Result<Json<BulkResolveRequest>, JsonRejection>,
) -> Result<Json<BulkResolveReport>, Problem> {
    let dry_run = q.map_err(from_query_rejection)?.0.dry_run;
    let req = body.map_err(from_json_rejection)?.0;
    let rule = checked_rule(&req.rule)?;
    let from = req
        .filter
        .detected_from
        .as_deref()
        .map(|t| time_bound(t, "filter.detected_from"))
        .transpose()?;
    let to = req
        .filter
        .detected_to
        .as_deref()
        .map(|t| time_bound(t, "filter.detected_to"))
        .transpose()?;
    if !dry_run && !req.confirm {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "confirm-required",
            "resolving conflicts in bulk writes on the targets: add \"confirm\": true (or ?dry_run=true to preview)",
        )
        .field("confirm"));
    }
    let config = s.live();
    let listing = ConflictFilter {
        sync: req.filter.sync.clone(),
        target: req.filter.target.clone(),
        table: req.filter.table.clone(),
        status: Some("open".into()),
    };
    let open = service::list(&config, &listing)
        .await
        .map_err(super::conflicts::problem)?;
    let selected: Vec<Conflict> = open
        .into_iter()
        .filter(|c| req.filter.origin.as_ref().is_none_or(|o| *o == c.origin))
        .filter(|c| {
            from.as_ref()
                .is_none_or(|f| normal_time(&c.detected_at) >= *f)
        })
        .filter(|c| to.as_ref().is_none_or(|t| normal_time(&c.detected_at) < *t))
        .filter(|c| {
            req.filter.ids.as_ref().is_none_or(|ids| {
                ids.iter()
                    .any(|i| i.split_once('/') == Some((c.target.as_str(), &c.id.to_string())))
            })
        })
        .collect();
    let mut report = BulkResolveReport {
        dry_run,
        matched: selected.len(),
        resolved: 0,
        skipped: 0,
        failed: 0,
        items: Vec::new(),
    };
    for c in selected {
        let (incoming_value, local_value) = match &rule {
            BulkRule {
                column: Some(col), ..
            } => (
                Some(side_value(&c.incoming, col)),
                Some(side_value(&c.local, col)),
            ),
            _ => (None, None),
        };
        let mut item = BulkResolveItem {
            target: c.target.clone(),
            id: c.id,
            table: format!("{}.{}", c.schema, c.table),
            key: c.key.clone(),
            origin: c.origin.clone(),
            detected_at: c.detected_at.clone(),
            winner: None,
            outcome: "skipped".into(),
            reason: None,
            incoming_value,
            local_value,
        };
        match decide(&rule, &c) {
            Err(reason) => {
                item.reason = Some(reason);
                report.skipped += 1;
            }
            Ok(take) => {
                item.winner = Some(take.as_str().to_string());
                match service::resolve(&config, &c.target, c.id, take, dry_run).await {
                    Ok(_) => {
                        item.outcome = if dry_run { "would_resolve" } else { "resolved" }.into();
                        report.resolved += 1;
                    }
                    Err(e @ ConflictError::NotOpen { .. }) => {
                        item.reason = Some(e.to_string());
                        report.skipped += 1;
                    }
                    Err(e) => {
                        item.outcome = "failed".into();
                        item.reason = Some(match &e {
                            ConflictError::Other(inner) => crate::exit::one_line(inner.as_ref()),
                            other => other.to_string(),
                        });
                        report.failed += 1;
                    }
                }
            }
        }
        report.items.push(item);
    }
    Ok(Json(report))
}

fn checked_rule(rule: &BulkRuleDoc) -> Result<BulkRule, Problem> {
    let (take, column) = match rule {
        BulkRuleDoc::Incoming {} => (BulkRuleTake::Incoming, None),
        BulkRuleDoc::Local {} => (BulkRuleTake::Local, None),
        BulkRuleDoc::Newer { column } => (BulkRuleTake::Newer, Some(column)),
        BulkRuleDoc::Older { column } => (BulkRuleTake::Older, Some(column)),
    };
    if column.is_some_and(|c| c.is_empty()) {
        return Err(Problem::bad_request(
            "rule.column: newer and older compare a column: name it (e.g. updated_at)",
        )
        .field("rule.column"));
    }
    Ok(BulkRule {
        take,
        column: column.cloned(),
    })
}

/// `YYYY-MM-DD[ HH:MM[:SS[.ffffff]]]` (a `T` separator and a trailing `Z` accepted), as the
/// text compared with the listed `detected_at`.
fn time_bound(t: &str, field: &str) -> Result<String, Problem> {
    let n = normal_time(t);
    let b = n.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    let ok = digits(0..4)
        && b.get(4) == Some(&b'-')
        && digits(5..7)
        && b.get(7) == Some(&b'-')
        && digits(8..10)
        && (b.len() == 10
            || (b.len() >= 16
                && b.get(10) == Some(&b' ')
                && digits(11..13)
                && b.get(13) == Some(&b':')
                && digits(14..16)));
    if ok {
        Ok(n)
    } else {
        Err(Problem::bad_request(format!(
            "{field} {t:?}: must be a time like 2026-01-31 13:45:00"
        ))
        .field(field))
    }
}

fn normal_time(t: &str) -> String {
    t.trim().trim_end_matches('Z').replacen('T', " ", 1)
}

/// A side's value of `col`: the row's value (null when NULL or the row is absent).
fn side_value(img: &Value, col: &str) -> Value {
    img.get(col).cloned().unwrap_or(Value::Null)
}

/// The side `rule` picks for `c`, or why it cannot decide.
fn decide(rule: &BulkRule, c: &Conflict) -> Result<Take, String> {
    let col = match (rule.take, &rule.column) {
        (BulkRuleTake::Incoming, _) => return Ok(Take::Incoming),
        (BulkRuleTake::Local, _) => return Ok(Take::Local),
        (_, Some(col)) => col,
        (_, None) => return Err("the rule names no column".into()),
    };
    // Absent row < NULL < any value.
    let rank = |img: &Value| -> Result<(u8, Option<Value>), String> {
        match img {
            Value::Null => Ok((0, None)),
            Value::Object(o) => match o.get(col) {
                None => Err(format!("the table has no column {col}")),
                Some(Value::Null) => Ok((1, None)),
                Some(v) => Ok((2, Some(v.clone()))),
            },
            _ => Err("the conflict's rows are not readable".into()),
        }
    };
    let (ri, vi) = rank(&c.incoming)?;
    let (rl, vl) = rank(&c.local)?;
    let order = match (vi, vl) {
        (Some(a), Some(b)) => cmp_json(&a, &b)
            .ok_or_else(|| format!("the values of {col} cannot be compared ({a} and {b})"))?,
        _ if ri == rl => {
            return Err(if ri == 0 {
                "the row is absent on both sides".into()
            } else {
                format!("{col} is null on both sides")
            })
        }
        _ => ri.cmp(&rl),
    };
    let order = if rule.take == BulkRuleTake::Older {
        order.reverse()
    } else {
        order
    };
    match order {
        Ordering::Greater => Ok(Take::Incoming),
        Ordering::Less => Ok(Take::Local),
        Ordering::Equal => Err(format!("{col} is equal on both sides")),
    }
}

/// Orders two values of one column as they appear in a conflict's images: numbers
/// numerically (also numeric strings: DECIMAL), other strings (temporal values included, a
/// `T`/`Z` form equal to a space form) bytewise. `None`: they do not compare.
fn cmp_json(a: &Value, b: &Value) -> Option<Ordering> {
    let num = |v: &Value| match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    };
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => Some(x.cmp(&y)),
            _ => match (x.as_u64(), y.as_u64()) {
                (Some(x), Some(y)) => Some(x.cmp(&y)),
                _ => x.as_f64()?.partial_cmp(&y.as_f64()?),
            },
        },
        (Value::String(x), Value::String(y)) => match (num(a), num(b)) {
            (Some(p), Some(q)) => p.partial_cmp(&q),
            _ => Some(normal_time(x).cmp(&normal_time(y))),
        },
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn conflict(incoming: Value, local: Value) -> Conflict {
        Conflict {
            target: "b".into(),
            id: 1,
            sync: "ab".into(),
            schema: "app".into(),
            table: "items".into(),
            key: json!({"id": 1}),
            incoming,
            local,
            before: Value::Null,
            before_recorded: true,
            origin: "a".into(),
            source_position: String::new(),
            detected_at: "2026-01-01 00:00:00.000000".into(),
            status: "open".into(),
            resolution: None,
            resolved_at: None,
        }
    }

    fn rule(take: BulkRuleTake, column: Option<&str>) -> BulkRule {
        BulkRule {
            take,
            column: column.map(str::to_string),
        }
    }

    #[test]
    fn newer_and_older_pick_by_the_column() {
        let newer = rule(BulkRuleTake::Newer, Some("u"));
        let older = rule(BulkRuleTake::Older, Some("u"));
        let c = conflict(
            json!({"u": "2026-01-02 00:00:00.000001"}),
            json!({"u": "2026-01-02T00:00:00Z"}),
        );
        assert_eq!(decide(&newer, &c), Ok(Take::Incoming));
        assert_eq!(decide(&older, &c), Ok(Take::Local));
        let c = conflict(json!({"u": 9}), json!({"u": 10}));
        assert_eq!(decide(&newer, &c), Ok(Take::Local));
        // DECIMAL text compares numerically, not bytewise.
        let c = conflict(json!({"u": "9.5"}), json!({"u": "10.0"}));
        assert_eq!(decide(&newer, &c), Ok(Take::Local));
        // Absent < NULL < value.
        let c = conflict(Value::Null, json!({"u": null}));
        assert_eq!(decide(&newer, &c), Ok(Take::Local));
        let c = conflict(json!({"u": null}), json!({"u": 1}));
        assert_eq!(decide(&newer, &c), Ok(Take::Local));
        assert_eq!(decide(&older, &c), Ok(Take::Incoming));
    }

    #[test]
    fn undecidable_conflicts_say_why() {
        let newer = rule(BulkRuleTake::Newer, Some("u"));
        let cases = [
            (json!({"u": null}), json!({"u": null}), "null on both sides"),
            (Value::Null, Value::Null, "absent on both sides"),
            (json!({"u": 3}), json!({"u": 3}), "equal"),
            (
                json!({"u": 3}),
                json!({"u": {"a": 1}}),
                "cannot be compared",
            ),
            (json!({"v": 3}), json!({"v": 4}), "no column u"),
        ];
        for (i, l, want) in cases {
            let e = decide(&newer, &conflict(i, l)).expect_err("undecidable");
            assert!(e.contains(want), "{e}");
        }
        let any = conflict(Value::Null, Value::Null);
        assert_eq!(
            decide(&rule(BulkRuleTake::Incoming, None), &any),
            Ok(Take::Incoming)
        );
        assert_eq!(
            decide(&rule(BulkRuleTake::Local, None), &any),
            Ok(Take::Local)
        );
    }

    #[test]
    fn rules_and_times_are_checked() {
        let doc = |j: Value| serde_json::from_value::<BulkRuleDoc>(j);
        let newer = doc(json!({"take": "newer", "column": "u"})).expect("valid");
        assert!(checked_rule(&newer).is_ok_and(|r| r.column.as_deref() == Some("u")));
        let empty = doc(json!({"take": "older", "column": ""})).expect("schema-invalid only");
        assert!(checked_rule(&empty).is_err());
        assert!(doc(json!({"take": "newer"})).is_err());
        assert!(doc(json!({"take": "local", "column": "u"})).is_err());
        assert!(doc(json!({"take": "sideways"})).is_err());
        assert_eq!(
            time_bound("2026-01-31T13:45:00Z", "f").ok().as_deref(),
            Some("2026-01-31 13:45:00")
        );
        assert!(time_bound("2026-01-31", "f").is_ok());
        assert!(time_bound("yesterday", "f").is_err());
        assert!(time_bound("2026-01-31 1", "f").is_err());
    }
}
