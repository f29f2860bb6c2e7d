//! Sync-aware rollout, pure part: which servers receive a migrated database through a sync
//! (one-way, or a bidirectional group's member syncs) and so must get a migration once, at
//! its origin, never a second time directly.
//!
//! The input is the syncs' edges (`source → target`, each carrying the database or not,
//! decided by the caller from the sync's filter). Servers joined by carrying edges form a
//! **component**; its **origin** runs the migration:
//! * the one server of the component that receives the database from no other (a one-way
//!   source);
//! * none such (a bidirectional group, a two-way pair): the first member by name;
//! * several such (two sources feeding the same servers): refused, no origin can be chosen.
//!
//! Every other member is a **receiver**: it waits for the sync that brings the database from
//! its **parent** (the origin, or the receiver before it in a chain `a → b → c`), found by a
//! breadth-first walk from the origin over the carrying edges (ties by name).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// One (sync, target) pipeline, as configured after groups are expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    /// The pipeline's sync name (`realms.eu1` for a group member's sync): the `sync_name` of
    /// its progress row on the target.
    pub sync: String,
    /// What operators call it (the group's name for a group member's sync).
    pub display: String,
    pub source: String,
    pub target: String,
}

/// How a receiver gets the migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub server: String,
    /// The server it receives the database from.
    pub parent: String,
    pub edge: Edge,
}

/// A component of servers joined by carrying syncs: its origin and its receivers in the
/// order they are reached (a parent before its children).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    pub origin: String,
    pub receivers: Vec<Receipt>,
}

/// The components that have at least two servers (a server alone runs its migrations
/// directly). `Err`: a component with several servers that receive the database from none
/// (named in the message).
pub fn components(edges: &[Edge]) -> Result<Vec<Component>, String> {
    let mut adj: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for e in edges {
        adj.entry(&e.source).or_default().insert(&e.target);
        adj.entry(&e.target).or_default().insert(&e.source);
    }
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let mut out = Vec::new();
    for &start in adj.keys() {
        if seen.contains(start) {
            continue;
        }
        // The component (undirected), by name.
        let mut members = BTreeSet::new();
        let mut stack = vec![start];
        while let Some(s) = stack.pop() {
            if members.insert(s) {
                stack.extend(adj.get(s).into_iter().flatten().copied());
            }
        }
        seen.extend(members.iter().copied());
        let roots: Vec<&str> = members
            .iter()
            .copied()
            .filter(|m| !edges.iter().any(|e| e.target == *m))
            .collect();
        let origin = match roots.as_slice() {
            [one] => *one,
            [] => members.iter().next().copied().unwrap_or(start),
            many => {
                return Err(format!(
                    "servers {} each send the database to {} through syncs: fleetsync cannot tell which one should run the migration (apply per server with --servers, or give the database one origin)",
                    many.join(", "),
                    members.iter().copied().collect::<Vec<_>>().join(", ")
                ))
            }
        };
        // Breadth-first from the origin over carrying edges, by name.
        let mut receivers = Vec::new();
        let mut reached = BTreeSet::from([origin]);
        let mut queue = VecDeque::from([origin]);
        while let Some(p) = queue.pop_front() {
            let mut next: Vec<&Edge> = edges.iter().filter(|e| e.source == p).collect();
            next.sort_by(|a, b| (&a.target, &a.sync).cmp(&(&b.target, &b.sync)));
            for e in next {
                if reached.insert(&e.target) {
                    receivers.push(Receipt {
                        server: e.target.clone(),
                        parent: p.to_string(),
                        edge: e.clone(),
                    });
                    queue.push_back(&e.target);
                }
            }
        }
        out.push(Component {
            origin: origin.to_string(),
            receivers,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(sync: &str, display: &str, s: &str, t: &str) -> Edge {
        Edge {
            sync: sync.into(),
            display: display.into(),
            source: s.into(),
            target: t.into(),
        }
    }

    fn group(name: &str, members: &[&str]) -> Vec<Edge> {
        let mut out = Vec::new();
        for m in members {
            for t in members.iter().filter(|t| *t != m) {
                out.push(e(&format!("{name}.{m}"), name, m, t));
            }
        }
        out
    }

    #[test]
    fn one_way_origin_is_the_source() {
        let c = components(&[e("s1", "s1", "src", "dst")]).unwrap_or_default();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].origin, "src");
        assert_eq!(c[0].receivers.len(), 1);
        assert_eq!(c[0].receivers[0].server, "dst");
        assert_eq!(c[0].receivers[0].parent, "src");
    }

    #[test]
    fn a_chain_waits_hop_by_hop() {
        let c = components(&[e("s2", "s2", "b", "c"), e("s1", "s1", "a", "b")]).unwrap_or_default();
        assert_eq!(c[0].origin, "a");
        let r: Vec<(&str, &str, &str)> = c[0]
            .receivers
            .iter()
            .map(|r| (r.server.as_str(), r.parent.as_str(), r.edge.sync.as_str()))
            .collect();
        assert_eq!(r, [("b", "a", "s1"), ("c", "b", "s2")]);
    }

    #[test]
    fn a_group_runs_at_its_first_member() {
        let c =
            components(&group("realms", &["realm-c", "realm-a", "realm-b"])).unwrap_or_default();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].origin, "realm-a");
        let r: Vec<(&str, &str, &str)> = c[0]
            .receivers
            .iter()
            .map(|r| (r.server.as_str(), r.parent.as_str(), r.edge.sync.as_str()))
            .collect();
        assert_eq!(
            r,
            [
                ("realm-b", "realm-a", "realms.realm-a"),
                ("realm-c", "realm-a", "realms.realm-a")
            ]
        );
    }

    #[test]
    fn a_group_feeding_a_one_way_target() {
        let mut edges = group("g", &["m1", "m2"]);
        edges.push(e("out", "out", "m2", "x"));
        let c = components(&edges).unwrap_or_default();
        assert_eq!(c[0].origin, "m1");
        let x = c[0].receivers.iter().find(|r| r.server == "x");
        assert_eq!(x.map(|r| r.parent.as_str()), Some("m2"));
    }

    #[test]
    fn separate_pairs_are_separate_components() {
        let c = components(&[e("s1", "s1", "a", "b"), e("s2", "s2", "c", "d")]).unwrap_or_default();
        assert_eq!(c.len(), 2);
        assert_eq!((c[0].origin.as_str(), c[1].origin.as_str()), ("a", "c"));
    }

    #[test]
    fn two_sources_into_one_target_are_refused() {
        let err = components(&[e("s1", "s1", "a", "t"), e("s2", "s2", "b", "t")])
            .err()
            .unwrap_or_default();
        assert!(err.contains("a, b") && err.contains("cannot tell"), "{err}");
    }
}
