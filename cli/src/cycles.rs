//! Tables that one-way syncs write around a cycle of three or more servers: refused by
//! preflight (see [`hand_written_cycles`]).

use std::collections::{BTreeMap, BTreeSet};

type Name = (String, String);

/// One table's flow through one sync: from (source server, table) to (target server, the
/// table's mapped name there).
#[derive(Debug, Clone)]
pub struct Flow {
    pub sync: String,
    /// The group the sync belongs to (`mode = "bidirectional"`), if any.
    pub group: Option<String>,
    pub from: (String, Name),
    pub to: (String, Name),
}

/// Tables written around a cycle of three or more servers by one-way syncs (not one
/// `mode = "bidirectional"` group): one-way syncs keep no row versions or tombstones, so a
/// delete can overtake an update through a third server and the servers diverge for that key.
/// Refused; a cycle of two servers converges and is accepted.
pub fn hand_written_cycles(flows: &[Flow]) -> Vec<String> {
    type Node<'a> = &'a (String, Name);
    let mut next: BTreeMap<Node, Vec<Node>> = BTreeMap::new();
    for f in flows {
        next.entry(&f.from).or_default().push(&f.to);
    }
    let reach = |from: Node| {
        let mut seen: BTreeSet<Node> = Default::default();
        let mut stack = vec![from];
        while let Some(n) = stack.pop() {
            for m in next.get(n).into_iter().flatten() {
                if seen.insert(m) {
                    stack.push(m);
                }
            }
        }
        seen
    };
    let reached: BTreeMap<Node, _> = next.keys().map(|n| (*n, reach(n))).collect();
    let mut done: BTreeSet<Node> = Default::default();
    let mut out = Vec::new();
    for (&n, from_n) in &reached {
        if done.contains(n) {
            continue;
        }
        // The strongly connected component of `n`: nodes it reaches that reach it back.
        let component: Vec<Node> = from_n
            .iter()
            .copied()
            .filter(|m| reached.get(m).is_some_and(|r| r.contains(n)))
            .collect();
        done.extend(component.iter().copied());
        let servers: BTreeSet<&str> = component.iter().map(|(s, _)| s.as_str()).collect();
        if servers.len() < 3 {
            continue;
        }
        let inside: Vec<&Flow> = flows
            .iter()
            .filter(|f| component.contains(&&f.from) && component.contains(&&f.to))
            .collect();
        // One group alone converges. A one-way sync between two members of a group in the
        // component is refused on its own as an overlap (naming the sync): said once, there.
        let mut members: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for f in &inside {
            if let Some(g) = &f.group {
                let m = members.entry(g.as_str()).or_default();
                m.insert(f.from.0.as_str());
                m.insert(f.to.0.as_str());
            }
        }
        let uncovered = inside.iter().filter(|f| f.group.is_none()).any(|f| {
            !members
                .values()
                .any(|m| m.contains(f.from.0.as_str()) && m.contains(f.to.0.as_str()))
        });
        if !uncovered {
            continue;
        }
        let tables: BTreeSet<String> = component
            .iter()
            .map(|(_, (s, t))| format!("{s}.{t}"))
            .collect();
        let syncs: BTreeSet<&str> = inside.iter().map(|f| f.sync.as_str()).collect();
        let servers: Vec<&str> = servers.into_iter().collect();
        out.push(format!(
            "table {} is written around servers {} by one-way syncs {}: with three or more \
             servers a delete can overtake an update through a third server and they diverge \
             for that key (one-way syncs keep no row versions or tombstones); define them as \
             one group: mode = \"bidirectional\", members = [{}]",
            tables.into_iter().collect::<Vec<_>>().join(", "),
            servers.join(", "),
            syncs.into_iter().collect::<Vec<_>>().join(", "),
            servers
                .iter()
                .map(|s| format!("{s:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(sync: &str, group: Option<&str>, from: &str, to: &str) -> Flow {
        let t = ("app".to_string(), "items".to_string());
        Flow {
            sync: sync.into(),
            group: group.map(str::to_string),
            from: (from.into(), t.clone()),
            to: (to.into(), t),
        }
    }

    #[test]
    fn pairs_and_chains_pass_rings_are_refused() {
        let pair = [flow("ab", None, "a", "b"), flow("ba", None, "b", "a")];
        assert!(hand_written_cycles(&pair).is_empty());
        let chain = [flow("ab", None, "a", "b"), flow("bc", None, "b", "c")];
        assert!(hand_written_cycles(&chain).is_empty());
        let ring = [
            flow("ab", None, "a", "b"),
            flow("bc", None, "b", "c"),
            flow("ca", None, "c", "a"),
        ];
        let refused = hand_written_cycles(&ring);
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert!(
            refused[0].contains(
                "table app.items is written around servers a, b, c by one-way syncs ab, bc, ca"
            ),
            "{}",
            refused[0]
        );
        assert!(refused[0].contains("members = [\"a\", \"b\", \"c\"]"));
    }

    #[test]
    fn one_group_passes_a_group_closed_by_a_one_way_sync_does_not() {
        let mut group = Vec::new();
        for (s, t) in [
            ("a", "b"),
            ("a", "c"),
            ("b", "a"),
            ("b", "c"),
            ("c", "a"),
            ("c", "b"),
        ] {
            group.push(flow(&format!("g.{s}"), Some("g"), s, t));
        }
        assert!(hand_written_cycles(&group).is_empty());
        let mixed = [
            flow("g.a", Some("g"), "a", "b"),
            flow("g.b", Some("g"), "b", "a"),
            flow("bc", None, "b", "c"),
            flow("ca", None, "c", "a"),
        ];
        assert_eq!(hand_written_cycles(&mixed).len(), 1);
        // A one-way sync between two members: refused as an overlap elsewhere, not here.
        let mut overlap = group.clone();
        overlap.push(flow("extra", None, "a", "b"));
        assert!(hand_written_cycles(&overlap).is_empty());
    }

    #[test]
    fn renamed_tables_are_followed() {
        let t = |n: &str| ("app".to_string(), n.to_string());
        let f = |sync: &str, from: (&str, &str), to: (&str, &str)| Flow {
            sync: sync.into(),
            group: None,
            from: (from.0.into(), t(from.1)),
            to: (to.0.into(), t(to.1)),
        };
        // a.x -> b.y -> c.y -> a.x is a ring; a.x -> b.x and b.y -> a.y are unrelated tables.
        let ring = [
            f("ab", ("a", "x"), ("b", "y")),
            f("bc", ("b", "y"), ("c", "y")),
            f("ca", ("c", "y"), ("a", "x")),
        ];
        assert_eq!(hand_written_cycles(&ring).len(), 1);
        let apart = [
            f("ab", ("a", "x"), ("b", "x")),
            f("bc", ("b", "y"), ("c", "y")),
            f("ca", ("c", "y"), ("a", "x")),
        ];
        assert!(hand_written_cycles(&apart).is_empty());
    }
}
