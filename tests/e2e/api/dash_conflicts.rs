//! The Conflicts page in chromium (web/tests/conflicts.mjs) against a live `fleetsync run`
//! whose sync parks conflicts of `app.items` (`conflict = "manual"`): six rows are changed on
//! the target, then on the source, so six conflicts are parked. In the browser a viewer sees
//! the three images and no resolve control; an operator opens conflict 1 (the differing
//! columns marked), takes the incoming version, writes a merged row for conflict 2 (val
//! edited, qty from the local row, updated_at from the incoming one), previews the bulk rule
//! "the newer updated_at" (exactly conflicts 3-6, winners incoming, incoming, local, local) and
//! applies it. Then every target row is checked in SQL against what was chosen, and no
//! conflict is left open.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use fleetsync_tests::wait_until;

use super::browser::Browser;
use crate::support::Pair;

/// A source row as first written: (id, val, qty, updated_at).
const ROWS: [(u32, &str, u32, &str); 6] = [
    (1, "one", 1, "2026-01-01 00:00:00.000000"),
    (2, "two", 2, "2026-01-01 00:00:00.000000"),
    (3, "three", 3, "2026-01-01 00:00:00.000000"),
    (4, "four", 4, "2026-01-01 00:00:00.000000"),
    (5, "five", 5, "2026-01-01 00:00:00.000000"),
    (6, "six", 6, "2026-01-01 00:00:00.000000"),
];

/// The target's own change of row `id` (val, qty, updated_at): rows 5 and 6 newer than the
/// source's change, the others older.
fn local(id: u32) -> (String, u32, String) {
    let day = if id >= 5 { 20 } else { 5 };
    (
        format!("dst-{id}"),
        100 + id,
        format!("2026-02-{day:02} 00:00:00.000000"),
    )
}

/// The source's change of row `id` (the incoming version).
fn incoming(id: u32) -> (String, u32, String) {
    (
        format!("src-{id}"),
        200 + id,
        format!("2026-02-10 00:00:{id:02}.000000"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dash_conflicts_in_chromium() -> Result<()> {
    let browser = Browser::ready()?;
    let pair = Pair::start().await?;
    let values: Vec<String> = ROWS
        .iter()
        .map(|(id, v, q, u)| format!("({id}, '{v}', {q}, '{u}')"))
        .collect();
    pair.src
        .exec(&format!(
            "CREATE DATABASE app; CREATE TABLE app.items (id INT PRIMARY KEY, \
             val VARCHAR(32) NOT NULL, qty INT NOT NULL, updated_at DATETIME(6) NOT NULL); \
             INSERT INTO app.items VALUES {}",
            values.join(",")
        ))
        .await?;
    let stack = super::start_stack(
        &pair,
        "[[syncs.tables]]\nname = \"app.items\"\nconflict = \"manual\"\n",
        "",
        &[("ops-cx", "operator"), ("look-cx", "viewer")],
    )
    .await?;
    let (operator, viewer) = (&stack.tokens[0], &stack.tokens[1]);

    // A target-side change of each row, then the source's: each source change expects the
    // row it started from, finds the target's own version, and is parked.
    for (id, ..) in ROWS {
        let (v, q, u) = local(id);
        pair.dst
            .exec(&format!(
                "UPDATE app.items SET val='{v}', qty={q}, updated_at='{u}' WHERE id={id}"
            ))
            .await?;
    }
    for (id, ..) in ROWS {
        let (v, q, u) = incoming(id);
        pair.src
            .exec(&format!(
                "UPDATE app.items SET val='{v}', qty={q}, updated_at='{u}' WHERE id={id}"
            ))
            .await?;
    }
    let list = || async {
        let r = stack
            .api
            .get("/api/v1/conflicts?table=app.items", Some(viewer))
            .await?;
        ensure!(r.status == 200, "{} {}", r.status, r.body);
        Ok(r.json()?.as_array().cloned().unwrap_or_default())
    };
    wait_until(Duration::from_secs(60), "six parked conflicts", || async {
        ensure!(list().await?.len() == 6);
        Ok(())
    })
    .await
    .with_context(|| stack.fs.log_tail(40))?;
    // Conflict ids by row id, and each records the before image both sides started from.
    let mut ids = Vec::new();
    let parked = list().await?;
    for (id, val, ..) in ROWS {
        let c = parked
            .iter()
            .find(|c| c["key"]["id"] == id)
            .with_context(|| format!("no conflict for row {id}: {parked:?}"))?;
        ensure!(
            c["target"] == "dst" && c["before_recorded"] == true && c["before"]["val"] == val,
            "conflict of row {id}: {c}"
        );
        ids.push(c["id"].as_u64().context("conflict id")?.to_string());
    }

    // Bad input changes nothing (conflict 6 stays open for the bulk rule): a merged row with
    // an unknown column, a changed key, a value the column cannot hold; a row with a side; a
    // bulk call without confirm, a compare rule without a column, a malformed time. `field`
    // empty: a body the document refuses (any field named).
    let c6 = format!("/api/v1/conflicts/dst/{}/resolve", ids[5]);
    let full = |id: u32, qty: &str| {
        format!(
            r#"{{"take": "merged", "row": {{"id": {id}, "val": "x", "qty": {qty}, "updated_at": "2026-01-01 00:00:00"}}}}"#
        )
    };
    let bulk = "/api/v1/conflicts/resolve-bulk";
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            &c6,
            r#"{"take": "merged", "row": {"id": 6, "nope": 1}}"#.into(),
            400,
            "row",
        ),
        (&c6, full(7, "1"), 400, "row"),
        (&c6, full(6, "\"many\""), 400, "row"),
        (
            &c6,
            r#"{"take": "local", "row": {"id": 6}}"#.into(),
            422,
            "",
        ),
        (&c6, r#"{"take": "merged"}"#.into(), 422, ""),
        (
            bulk,
            r#"{"rule": {"take": "local"}}"#.into(),
            409,
            "confirm",
        ),
        (
            bulk,
            r#"{"rule": {"take": "newer"}, "confirm": true}"#.into(),
            422,
            "",
        ),
        (
            bulk,
            r#"{"rule": {"take": "local", "column": "u"}, "confirm": true}"#.into(),
            422,
            "",
        ),
        (
            bulk,
            r#"{"rule": {"take": "older", "column": ""}, "confirm": true}"#.into(),
            400,
            "rule.column",
        ),
        (
            bulk,
            r#"{"rule": {"take": "local"}, "filter": {"detected_from": "soon"}, "confirm": true}"#
                .into(),
            400,
            "filter.detected_from",
        ),
    ];
    for (path, body, status, field) in cases {
        let r = stack.api.post(path, Some(operator), &body).await?;
        ensure!(
            r.status == status && (field.is_empty() || r.json()?["field"] == field),
            "POST {path} {body}: {} {}",
            r.status,
            r.body
        );
    }
    ensure!(list().await?.len() == 6, "bad input resolved a conflict");

    let out = browser
        .run_script(
            "conflicts.mjs",
            stack.api_port,
            &[
                ("OPERATOR_TOKEN", operator),
                ("VIEWER_TOKEN", viewer),
                ("TARGET", "dst"),
                ("CONFLICT_IDS", &ids.join(",")),
            ],
            &stack.fs,
        )
        .await?;
    ensure!(out.contains("conflicts: ok"), "{out}");

    // Row by row, what was chosen: 1 incoming; 2 merged (val edited, qty local, updated_at
    // incoming); 3-4 incoming (newer updated_at); 5-6 local (newer updated_at).
    for (id, ..) in ROWS {
        let want = match id {
            1 | 3 | 4 => incoming(id),
            2 => ("merged-2".to_string(), local(id).1, incoming(id).2),
            _ => local(id),
        };
        let got = pair
            .dst
            .query_strings(&format!(
                "SELECT val, qty, updated_at FROM app.items WHERE id={id}"
            ))
            .await?;
        let want_row = vec![Some(want.0), Some(want.1.to_string()), Some(want.2)];
        ensure!(
            got == vec![want_row.clone()],
            "row {id} on dst: {got:?}, want {want_row:?}"
        );
    }
    let open = pair
        .dst
        .query_value("SELECT COUNT(*) FROM fleetsync.conflicts WHERE status='open'")
        .await?;
    ensure!(
        open.as_deref() == Some("0"),
        "open conflicts left: {open:?}"
    );
    let resolutions = pair
        .dst
        .query_strings("SELECT resolution FROM fleetsync.conflicts ORDER BY id")
        .await?;
    ensure!(
        resolutions.len() == 6
            && resolutions
                .iter()
                .filter(|r| r[0].as_deref() == Some("merged row written on dst"))
                .count()
                == 1,
        "{resolutions:?}"
    );
    Ok(())
}
