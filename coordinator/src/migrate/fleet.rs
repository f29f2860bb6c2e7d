//! Fleet rollout of a versioned queue, pure parts: which servers a `--servers` pattern
//! selects, and how the servers with work are split into canaries and waves.
//!
//! A pattern is a comma-separated list of globs over the `[[servers]] name`s (`*` any run of
//! characters, `?` one character, anything else itself): `realm-*`, `auth,realm-?`. Selected
//! servers are sorted by name; a pattern that selects nothing is an error (a typo must not
//! read as "nothing to do").

/// Whether `name` matches the glob `pattern` (`*`, `?`).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Iterative matcher with one backtrack point for the last `*`.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// The names (sorted, each once) that `pattern` selects among `names`; `None` selects all.
pub fn select<'a>(
    pattern: Option<&str>,
    names: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<String>, String> {
    let names: Vec<&str> = names.into_iter().collect();
    let globs: Vec<&str> = match pattern {
        None => vec!["*"],
        Some(p) => p
            .split(',')
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .collect(),
    };
    if globs.is_empty() {
        return Err("--servers is empty".into());
    }
    let mut out: Vec<String> = names
        .iter()
        .filter(|n| globs.iter().any(|g| glob_match(g, n)))
        .map(|n| n.to_string())
        .collect();
    out.sort();
    out.dedup();
    if out.is_empty() {
        return Err(format!(
            "--servers {:?} matches no server in the config (servers: {})",
            pattern.unwrap_or("*"),
            names.join(", ")
        ));
    }
    Ok(out)
}

/// The rollout order: the first `canaries` of `servers` (already sorted, only those with
/// work) one at a time, then the rest in waves of `wave` servers at once.
pub fn waves(servers: &[String], canaries: usize, wave: usize) -> (Vec<String>, Vec<Vec<String>>) {
    let n = canaries.min(servers.len());
    let (c, rest) = servers.split_at(n);
    let waves = rest.chunks(wave.max(1)).map(<[String]>::to_vec).collect();
    (c.to_vec(), waves)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_a_shell() {
        assert!(glob_match("realm-*", "realm-1"));
        assert!(glob_match("realm-*", "realm-"));
        assert!(!glob_match("realm-*", "auth"));
        assert!(glob_match("r?alm-*-eu", "realm-12-eu"));
        assert!(!glob_match("r?alm-*-eu", "realm-12-us"));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("a*b*c", "aXXbYYbc"));
        assert!(!glob_match("a*b*c", "aXXbYYb"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
    }

    #[test]
    fn select_sorts_dedups_and_refuses_an_empty_match() {
        let names = ["realm-2", "auth", "realm-10", "realm-1"];
        assert_eq!(
            select(Some("realm-*"), names),
            Ok(vec!["realm-1".into(), "realm-10".into(), "realm-2".into()])
        );
        assert_eq!(
            select(Some("auth, realm-1,auth"), names),
            Ok(vec!["auth".into(), "realm-1".into()])
        );
        assert_eq!(select(None, names).map(|v| v.len()), Ok(4));
        let e = select(Some("world-*"), names).err().unwrap_or_default();
        assert!(e.contains("world-*") && e.contains("realm-1"), "{e}");
        assert!(select(Some(" , "), names).is_err());
    }

    #[test]
    fn canaries_then_waves() {
        let s: Vec<String> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|x| x.to_string())
            .collect();
        let (c, w) = waves(&s, 1, 2);
        assert_eq!(c, ["a"]);
        assert_eq!(w, vec![vec!["b", "c"], vec!["d", "e"]]);
        let (c, w) = waves(&s[..2], 3, 2);
        assert_eq!(c, ["a", "b"]);
        assert!(w.is_empty());
        let (c, w) = waves(&s[..3], 0, 0);
        assert!(c.is_empty());
        assert_eq!(w.len(), 3);
    }
}
