//! The write-set dispatcher, pure.

use super::{dispatch, Segment, Step, WriteSet};

fn keys(k: &[u64]) -> WriteSet {
    WriteSet::Keys(k.to_vec())
}

#[test]
fn disjoint_transactions_spread_over_lanes_without_waits() {
    let sets = [keys(&[1]), keys(&[2]), keys(&[3]), keys(&[4])];
    let steps = dispatch(&sets, &[1, 1, 1, 1], 4);
    let expected: Vec<Segment> = (0..4)
        .map(|i| Segment {
            txns: i..i + 1,
            after: None,
        })
        .collect();
    assert_eq!(steps, vec![Step::Parallel(expected)]);
}

#[test]
fn a_shared_key_makes_the_later_segment_wait_for_the_latest_earlier_one() {
    // One key (7) updated by transactions 0, 2 and 3: each segment holding it waits for the
    // previous one; segment 1 (key 2) is free.
    let sets = [keys(&[7]), keys(&[2]), keys(&[7, 9]), keys(&[7])];
    let steps = dispatch(&sets, &[1, 1, 1, 1], 4);
    let Step::Parallel(segs) = &steps[0] else {
        panic!("expected a parallel step: {steps:?}");
    };
    let after: Vec<Option<usize>> = segs.iter().map(|s| s.after).collect();
    assert_eq!(after, vec![None, None, Some(0), Some(2)]);
}

#[test]
fn barriers_split_the_run_and_run_alone() {
    let sets = [
        keys(&[1]),
        keys(&[2]),
        WriteSet::Barrier("keyless"),
        keys(&[1]),
        WriteSet::Barrier("snapshot"),
    ];
    let steps = dispatch(&sets, &[1, 1, 1, 1, 1], 2);
    assert_eq!(
        steps,
        vec![
            Step::Parallel(vec![
                Segment {
                    txns: 0..1,
                    after: None
                },
                Segment {
                    txns: 1..2,
                    after: None
                },
            ]),
            Step::Barrier {
                txn: 2,
                reason: "keyless"
            },
            // Key 1 again, but after a barrier: everything before it committed already.
            Step::Parallel(vec![Segment {
                txns: 3..4,
                after: None
            }]),
            Step::Barrier {
                txn: 4,
                reason: "snapshot"
            },
        ]
    );
}

#[test]
fn segments_are_contiguous_cover_every_transaction_once_and_balance_rows() {
    // 10 transactions, one big one: segments follow the rows, never reorder.
    let rows = [100, 1, 1, 1, 1, 1, 1, 1, 1, 1];
    let sets: Vec<WriteSet> = (0..10).map(|i| keys(&[i])).collect();
    let steps = dispatch(&sets, &rows, 4);
    let Step::Parallel(segs) = &steps[0] else {
        panic!("expected a parallel step: {steps:?}");
    };
    let mut next = 0;
    for s in segs {
        assert_eq!(s.txns.start, next, "contiguous: {segs:?}");
        assert!(s.txns.end > s.txns.start);
        next = s.txns.end;
    }
    assert_eq!(next, 10);
    assert_eq!(
        segs[0].txns,
        0..1,
        "the big transaction is a segment of its own"
    );
    assert!(segs.len() <= 4, "{segs:?}");
}

#[test]
fn every_dependency_points_to_an_earlier_intersecting_segment_and_none_is_missed() {
    // A pseudo-random mix; brute-force check of the rule against the definition.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut sets = Vec::new();
    for _ in 0..200 {
        let mut k = Vec::new();
        for _ in 0..3 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            k.push(x % 40);
        }
        k.sort_unstable();
        k.dedup();
        sets.push(WriteSet::Keys(k));
    }
    let rows = vec![1; sets.len()];
    for lanes in [2, 3, 4, 16] {
        let steps = dispatch(&sets, &rows, lanes);
        let Step::Parallel(segs) = &steps[0] else {
            panic!("expected a parallel step");
        };
        let keyset = |s: &Segment| -> std::collections::HashSet<u64> {
            s.txns
                .clone()
                .flat_map(|i| match &sets[i] {
                    WriteSet::Keys(k) => k.clone(),
                    WriteSet::Barrier(_) => Vec::new(),
                })
                .collect()
        };
        for (k, s) in segs.iter().enumerate() {
            let mine = keyset(s);
            let latest = (0..k).rev().find(|&j| !keyset(&segs[j]).is_disjoint(&mine));
            assert_eq!(s.after, latest, "segment {k} with {lanes} lanes");
        }
    }
}

#[test]
fn each_commit_stores_the_offset_of_its_own_last_transaction() {
    use crate::apply::offset_through;
    use crate::apply::tests::txn;
    let batch: Vec<_> = (0..4).map(|n| txn(n, Vec::new(), Vec::new())).collect();
    let base = batch.as_ptr() as usize;
    let offsets = [Some(10), Some(11), None, Some(13)];
    // A commit ending at the first, second, third (offset unknown: the latest before it) and
    // last transaction of the batch.
    let got: Vec<_> = batch
        .iter()
        .map(|t| offset_through(base, &offsets, t))
        .collect();
    assert_eq!(got, vec![Some(10), Some(11), Some(11), Some(13)]);
    // No offsets given (the embedded bus), or a transaction from elsewhere: keep the stored one.
    assert_eq!(offset_through(base, &[], &batch[2]), None);
    let other = txn(9, Vec::new(), Vec::new());
    assert_eq!(offset_through(base, &offsets, &other), None);
}
