use fleetsync_proto::{Op, Value};

use super::*;

fn r(k: i64, v: &str) -> Vec<Value> {
    vec![Value::Int(k), Value::Text(v.as_bytes().to_vec())]
}

fn keyed(compact: bool) -> SlotPlan {
    SlotPlan {
        width: 2,
        key: vec![0],
        compact,
    }
}

fn keyless() -> SlotPlan {
    SlotPlan {
        width: 2,
        key: vec![],
        compact: false,
    }
}

fn ins(slot: u32, txn: u32, after: &[Value]) -> Change<'_> {
    Change {
        slot,
        txn,
        op: Op::Insert,
        before: None,
        after: Some(after),
    }
}

fn upd<'a>(slot: u32, txn: u32, before: &'a [Value], after: &'a [Value]) -> Change<'a> {
    Change {
        slot,
        txn,
        op: Op::Update,
        before: Some(before),
        after: Some(after),
    }
}

fn del(slot: u32, txn: u32, before: &[Value]) -> Change<'_> {
    Change {
        slot,
        txn,
        op: Op::Delete,
        before: Some(before),
        after: None,
    }
}

/// `(slot, kind, [(key, text)])` of a statement, for compact assertions.
type Shape = (u32, StmtKind, Vec<(i64, String)>);

fn shape(stmts: &[Stmt<'_>]) -> Vec<Shape> {
    stmts
        .iter()
        .map(|s| {
            let rows = s
                .rows
                .iter()
                .map(|row| match (&row.image[0], &row.image[1]) {
                    (Value::Int(k), Value::Text(t)) => {
                        (*k, String::from_utf8_lossy(t).into_owned())
                    }
                    other => panic!("unexpected row {other:?}"),
                })
                .collect();
            (s.slot, s.kind, rows)
        })
        .collect()
}

fn rows(v: &[(i64, &str)]) -> Vec<(i64, String)> {
    v.iter().map(|(k, t)| (*k, t.to_string())).collect()
}

#[test]
fn compaction_keeps_the_last_change_per_key() {
    let (a1, a2, a3, b1, c1, c9) = (
        r(1, "a"),
        r(1, "a2"),
        r(1, "a3"),
        r(2, "b"),
        r(3, "c"),
        r(9, "c"),
    );
    let changes = vec![
        ins(0, 0, &a1),
        ins(0, 0, &b1),
        upd(0, 1, &a1, &a2),
        del(0, 2, &b1),
        ins(0, 3, &c1),
        upd(0, 4, &a2, &a3),
        upd(0, 5, &c1, &c9), // key change: 3 is deleted, 9 upserted
    ];
    let stmts = plan(&[keyed(true)], changes).expect("plans");
    assert_eq!(
        shape(&stmts),
        vec![
            (0, StmtKind::DeleteKeys, rows(&[(2, "b"), (3, "c")])),
            (0, StmtKind::Upsert, rows(&[(1, "a3"), (9, "c")])),
        ]
    );
    // Row provenance is kept for error messages.
    assert_eq!(stmts[1].rows[0].txn, 4);
}

#[test]
fn compaction_reinsert_after_delete_is_an_upsert() {
    let (a1, a2) = (r(1, "a"), r(1, "b"));
    let stmts = plan(&[keyed(true)], vec![del(0, 0, &a1), ins(0, 1, &a2)]).expect("plans");
    assert_eq!(
        shape(&stmts),
        vec![(0, StmtKind::Upsert, rows(&[(1, "b")]))]
    );
    let stmts = plan(&[keyed(true)], vec![ins(0, 0, &a2), del(0, 1, &a1)]).expect("plans");
    assert_eq!(
        shape(&stmts),
        vec![(0, StmtKind::DeleteKeys, rows(&[(1, "a")]))]
    );
}

#[test]
fn key_swap_through_compaction() {
    // 1 -> 2 then 2 -> 1: the final row is key 1; key 2 is deleted before.
    let (x1, x2, x1b) = (r(1, "x"), r(2, "x"), r(1, "y"));
    let stmts = plan(
        &[keyed(true)],
        vec![upd(0, 0, &x1, &x2), upd(0, 1, &x2, &x1b)],
    )
    .expect("plans");
    assert_eq!(
        shape(&stmts),
        vec![
            (0, StmtKind::DeleteKeys, rows(&[(2, "x")])),
            (0, StmtKind::Upsert, rows(&[(1, "y")]))
        ]
    );
}

#[test]
fn ordered_groups_only_consecutive_runs() {
    let (a, b, c, a2) = (r(1, "a"), r(2, "b"), r(3, "c"), r(1, "a2"));
    let changes = vec![
        ins(0, 0, &a),
        ins(0, 0, &b),
        del(0, 1, &a),
        ins(1, 1, &c), // another table breaks the run
        ins(0, 2, &c),
        upd(0, 2, &c, &a2), // key change 3 -> 1
        upd(0, 3, &a2, &a2),
    ];
    let stmts = plan(&[keyed(false), keyed(false)], changes).expect("plans");
    assert_eq!(
        shape(&stmts),
        vec![
            (0, StmtKind::Upsert, rows(&[(1, "a"), (2, "b")])),
            (0, StmtKind::DeleteKeys, rows(&[(1, "a")])),
            (1, StmtKind::Upsert, rows(&[(3, "c")])),
            (0, StmtKind::Upsert, rows(&[(3, "c")])),
            (0, StmtKind::DeleteKeys, rows(&[(3, "c")])),
            (0, StmtKind::Upsert, rows(&[(1, "a2"), (1, "a2")])),
        ]
    );
}

#[test]
fn compacted_tables_come_after_ordered_ones() {
    let (a, b) = (r(1, "a"), r(2, "b"));
    let stmts = plan(
        &[keyed(true), keyed(false)],
        vec![ins(0, 0, &a), ins(1, 0, &b)],
    )
    .expect("plans");
    assert_eq!(
        shape(&stmts),
        vec![
            (1, StmtKind::Upsert, rows(&[(2, "b")])),
            (0, StmtKind::Upsert, rows(&[(1, "a")]))
        ]
    );
}

#[test]
fn keyless_is_row_by_row() {
    let (a, b, a2) = (r(1, "a"), r(1, "a"), r(1, "z"));
    let snap = Change {
        slot: 0,
        txn: 0,
        op: Op::Snapshot,
        before: None,
        after: Some(&a),
    };
    let changes = vec![
        snap,
        ins(0, 0, &b),
        upd(0, 1, &a, &a2),
        del(0, 1, &b),
        del(0, 2, &b),
        ins(0, 3, &a),
    ];
    let stmts = plan(&[keyless()], changes).expect("plans");
    let kinds: Vec<(StmtKind, usize)> = stmts.iter().map(|s| (s.kind, s.rows.len())).collect();
    assert_eq!(
        kinds,
        vec![
            (StmtKind::Insert, 2),
            (StmtKind::UpdateRow, 1),
            (StmtKind::DeleteRow, 1),
            (StmtKind::DeleteRow, 1),
            (StmtKind::Insert, 1),
        ]
    );
    assert!(stmts[1].rows[0].before.is_some());
}

#[test]
fn malformed_changes_are_errors() {
    let a = r(1, "a");
    let short = vec![Value::Int(1)];
    let no_after = Change {
        slot: 0,
        txn: 3,
        op: Op::Insert,
        before: None,
        after: None,
    };
    let e = plan(&[keyed(true)], vec![no_after]).expect_err("no image");
    assert_eq!((e.slot, e.txn), (0, 3));
    assert!(plan(&[keyed(false)], vec![ins(0, 0, &short)]).is_err());
    assert!(plan(&[keyed(false)], vec![ins(5, 0, &a)]).is_err());
    let bad_key = SlotPlan {
        width: 2,
        key: vec![4],
        compact: true,
    };
    assert!(plan(&[bad_key], vec![ins(0, 0, &a)]).is_err());
}
