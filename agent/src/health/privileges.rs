//! The `privileges` check: which grants fleetsync needs on this server, parsed from
//! `SHOW GRANTS` (the user's own grants, its active role's and `PUBLIC`'s), and which are
//! missing, each named with the object it is needed on and what for.
//!
//! Needs by role:
//! * a sync's **source** (or a server in no sync, checked as a possible source, then missing
//!   grants only warn): `REPLICATION SLAVE` and `BINLOG MONITOR` (`REPLICATION CLIENT` on
//!   MySQL; `SUPER` accepted as before) on `*.*`, and `SELECT` on every table the syncs read;
//! * a sync's **target**: `SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER` on `fleetsync`
//!   and on every database holding tables the syncs' include patterns select;
//! * the health checks themselves, optional (a check that lacks one is `skipped`): `PROCESS`
//!   (long-running transactions) and `SLAVE MONITOR` (replica status).
//!
//! Database grants may use `LIKE` wildcards (`app\_%`.*), matched as the server does.
//! Column-level grants do not count as table-level ones. Grant lines are parsed for their
//! privileges and object only: the `IDENTIFIED BY PASSWORD` part never reaches the report.

use fleetsync_proto::health::{CheckResult, CheckStatus};
use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use serde_json::{json, Value};

use super::{result, Ctx};
use fleetsync_proto::sql::ident as quoted;

/// What a grant applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Global,
    /// A database name or `LIKE` pattern.
    Database(String),
    Table(String, String),
}

/// One `GRANT ... ON ...` line: upper-case privilege names (column-level ones left out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub privileges: Vec<String>,
    pub scope: Scope,
}

/// The connected user's effective grants.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    pub list: Vec<Grant>,
    /// `CURRENT_USER()` as `'user'@'host'`, for the suggested GRANT statements.
    pub user: String,
}

impl Grants {
    pub async fn load(conn: &mut Conn) -> Result<Grants, mysql_async::Error> {
        let lines: Vec<String> = conn.query("SHOW GRANTS").await?;
        let current: Option<String> = conn.query_first("SELECT CURRENT_USER()").await?;
        let user = current
            .map(|u| match u.rsplit_once('@') {
                Some((n, h)) => format!("'{n}'@'{h}'"),
                None => format!("'{u}'"),
            })
            .unwrap_or_default();
        Ok(Grants {
            list: lines.iter().filter_map(|l| parse_grant(l)).collect(),
            user,
        })
    }

    /// Whether `privilege` (or an equivalent) is held on `db`.`table` (`None`: the whole
    /// database; `db = None`: globally).
    pub fn has(&self, privilege: &str, db: Option<&str>, table: Option<&str>) -> bool {
        let names = equivalents(privilege);
        self.list.iter().any(|g| {
            let covers = match (&g.scope, db, table) {
                (Scope::Global, _, _) => true,
                (Scope::Database(p), Some(d), _) => like(p, d),
                (Scope::Table(gd, gt), Some(d), Some(t)) => gd == d && gt == t,
                _ => false,
            };
            covers
                && g.privileges
                    .iter()
                    .any(|p| p == "ALL PRIVILEGES" || p == "ALL" || names.contains(&p.as_str()))
        })
    }
}

/// Names that grant `privilege` (older names, MySQL names, and `SUPER` where it implied it).
fn equivalents(privilege: &str) -> Vec<&str> {
    match privilege {
        "BINLOG MONITOR" => vec!["BINLOG MONITOR", "REPLICATION CLIENT", "SUPER"],
        "REPLICATION SLAVE" => vec!["REPLICATION SLAVE", "REPLICATION REPLICA"],
        "SLAVE MONITOR" => vec![
            "SLAVE MONITOR",
            "REPLICA MONITOR",
            "REPLICATION CLIENT",
            "SUPER",
        ],
        p => vec![p],
    }
}

/// Parses one `SHOW GRANTS` line; `None` for role grants, `PROXY`, routine grants.
pub fn parse_grant(line: &str) -> Option<Grant> {
    let rest = line.trim().strip_prefix("GRANT ")?;
    let (privs, after) = split_on_keyword(rest)?;
    let (scope, _) = parse_object(after)?;
    let privileges: Vec<String> = split_top_level(privs)
        .into_iter()
        .filter(|p| !p.contains('('))
        .map(|p| p.trim().to_ascii_uppercase())
        .filter(|p| !p.is_empty() && p != "PROXY")
        .collect();
    Some(Grant { privileges, scope })
}

/// Splits at the first ` ON ` outside backticks and parentheses.
fn split_on_keyword(s: &str) -> Option<(&str, &str)> {
    let (mut depth, mut quoted) = (0i32, false);
    let bytes = s.as_bytes();
    for i in 0..bytes.len() {
        match bytes[i] {
            b'`' => quoted = !quoted,
            b'(' if !quoted => depth += 1,
            b')' if !quoted => depth -= 1,
            b' ' if !quoted && depth == 0 && s[i..].starts_with(" ON ") => {
                return Some((&s[..i], &s[i + 4..]));
            }
            _ => {}
        }
    }
    None
}

/// Comma-separated items at parenthesis depth 0.
fn split_top_level(s: &str) -> Vec<&str> {
    let (mut out, mut depth, mut start, mut quoted) = (Vec::new(), 0i32, 0, false);
    for (i, c) in s.char_indices() {
        match c {
            '`' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// `*.*`, `` `db`.* ``, `` `db`.`t` `` (bare names too). Routines and users give `None`.
fn parse_object(s: &str) -> Option<(Scope, &str)> {
    let s = s.trim_start();
    let upper = s.to_ascii_uppercase();
    if ["PROCEDURE ", "FUNCTION ", "PACKAGE "]
        .iter()
        .any(|k| upper.starts_with(k))
    {
        return None;
    }
    let (db, rest) = ident(s)?;
    let rest = rest.strip_prefix('.')?;
    let (table, rest) = ident(rest)?;
    let scope = match (db.as_deref(), table.as_deref()) {
        (None, None) => Scope::Global,
        (Some(d), None) => Scope::Database(d.to_string()),
        (Some(d), Some(t)) => Scope::Table(d.to_string(), t.to_string()),
        (None, Some(_)) => return None,
    };
    Some((scope, rest))
}

/// One identifier: `*` gives `None`; backticks with doubled-backtick escapes, or bare.
fn ident(s: &str) -> Option<(Option<String>, &str)> {
    if let Some(rest) = s.strip_prefix('*') {
        return Some((None, rest));
    }
    if let Some(body) = s.strip_prefix('`') {
        let mut name = String::new();
        let mut chars = body.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if c == '`' {
                if chars.peek().map(|(_, n)| *n) == Some('`') {
                    chars.next();
                    name.push('`');
                } else {
                    return Some((Some(name), &body[i + 1..]));
                }
            } else {
                name.push(c);
            }
        }
        return None;
    }
    let end = s.find(['.', ' ']).unwrap_or(s.len());
    (end > 0).then(|| (Some(s[..end].to_string()), &s[end..]))
}

/// SQL `LIKE` with `%`, `_` and `\` escapes, as database grants are matched.
pub fn like(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    like_at(&p, &t)
}

fn like_at(p: &[char], t: &[char]) -> bool {
    match p.first() {
        None => t.is_empty(),
        Some('%') => (0..=t.len()).any(|i| like_at(&p[1..], &t[i..])),
        Some('_') => !t.is_empty() && like_at(&p[1..], &t[1..]),
        Some('\\') if p.len() > 1 => t.first() == Some(&p[1]) && like_at(&p[2..], &t[1..]),
        Some(c) => t.first() == Some(c) && like_at(&p[1..], &t[1..]),
    }
}

/// A missing grant: privilege, object (`*.*`, `` `db`.* ``, `` `db`.`t` ``), what for.
struct Missing {
    privilege: &'static str,
    on: String,
    needed_for: &'static str,
}

const TARGET_PRIVILEGES: &[&str] = &[
    "SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER",
];

fn source_needs(ctx: &Ctx<'_>, out: &mut Vec<Missing>) {
    let g = &ctx.grants;
    for (p, why) in [
        ("REPLICATION SLAVE", "reading the binlog (CDC)"),
        (
            "BINLOG MONITOR",
            "reading binlog positions (SHOW MASTER STATUS)",
        ),
    ] {
        if !g.has(p, None, None) {
            out.push(Missing {
                privilege: p,
                on: "*.*".into(),
                needed_for: why,
            });
        }
    }
    let filter = ctx.target.source_filter.as_ref();
    let mut schemas: Vec<&str> = Vec::new();
    for t in &ctx.catalog.tables {
        let read = filter.is_none_or(|f| f.matches(&t.schema, &t.name)) && t.schema != "fleetsync";
        if !read
            || g.has("SELECT", Some(&t.schema), Some(&t.name))
            || schemas.contains(&t.schema.as_str())
        {
            continue;
        }
        let all_missing = ctx
            .catalog
            .tables
            .iter()
            .filter(|o| o.schema == t.schema)
            .all(|o| !g.has("SELECT", Some(&o.schema), Some(&o.name)));
        if all_missing {
            schemas.push(&t.schema);
            out.push(Missing {
                privilege: "SELECT",
                on: format!("{}.*", quoted(&t.schema)),
                needed_for: "the initial snapshot of synced tables",
            });
        } else {
            out.push(Missing {
                privilege: "SELECT",
                on: format!("{}.{}", quoted(&t.schema), quoted(&t.name)),
                needed_for: "the initial snapshot of synced tables",
            });
        }
    }
}

fn target_needs(ctx: &Ctx<'_>, out: &mut Vec<Missing>) {
    let mut schemas = vec!["fleetsync".to_string()];
    if let Some(f) = &ctx.target.target_filter {
        for t in &ctx.catalog.tables {
            if f.matches(&t.schema, &t.name) && !schemas.contains(&t.schema) {
                schemas.push(t.schema.clone());
            }
        }
    }
    for s in &schemas {
        for p in TARGET_PRIVILEGES {
            if !ctx.grants.has(p, Some(s), None) {
                let why = if s == "fleetsync" {
                    "storing sync progress in the target"
                } else {
                    "applying changes and DDL to synced tables"
                };
                out.push(Missing {
                    privilege: p,
                    on: format!("{}.*", quoted(s)),
                    needed_for: why,
                });
            }
        }
    }
}

/// The `privileges` check.
pub async fn check(_conn: &mut Conn, ctx: &Ctx<'_>) -> CheckResult {
    if ctx.grants.list.is_empty() && ctx.grants.user.is_empty() {
        return result(
            "privileges",
            CheckStatus::Skipped,
            "cannot read SHOW GRANTS",
            Value::Null,
        );
    }
    let t = ctx.target;
    let is_source = t.source_filter.is_some();
    let is_target = t.target_filter.is_some() || !t.target_of.is_empty();
    let mut roles = Vec::new();
    let mut missing = Vec::new();
    if is_source || !is_target {
        roles.push(if is_source {
            "source"
        } else {
            "possible source (in no sync)"
        });
        source_needs(ctx, &mut missing);
    }
    if is_target {
        roles.push("target");
        target_needs(ctx, &mut missing);
    }
    let optional: Vec<Value> = [
        (
            "PROCESS",
            "the long_transactions check (information_schema.INNODB_TRX)",
        ),
        (
            "SLAVE MONITOR",
            "the replication check (SHOW ALL SLAVES STATUS)",
        ),
    ]
    .into_iter()
    .filter(|(p, _)| !ctx.grants.has(p, None, None))
    .map(|(p, why)| json!({"privilege": p, "on": "*.*", "needed_for": why}))
    .collect();
    let evidence = json!({
        "user": ctx.grants.user,
        "roles": roles,
        "grants": ctx.grants.list.iter().map(|g| json!({"privileges": g.privileges, "on": scope_text(&g.scope)})).collect::<Vec<_>>(),
        "missing": missing.iter().map(|m| json!({"privilege": m.privilege, "on": m.on, "needed_for": m.needed_for})).collect::<Vec<_>>(),
        "optional_missing": optional,
    });
    if missing.is_empty() {
        let mut summary = format!(
            "all privileges fleetsync needs as {} are granted",
            roles.join(" and ")
        );
        if !optional.is_empty() {
            summary.push_str(&format!(
                "; {} optional privilege(s) for health checks missing",
                optional.len()
            ));
        }
        return result("privileges", CheckStatus::Pass, summary, evidence);
    }
    let names: Vec<String> = missing
        .iter()
        .map(|m| format!("{} ON {}", m.privilege, m.on))
        .collect();
    let status = if is_source || is_target {
        CheckStatus::Fail
    } else {
        CheckStatus::Warn
    };
    let mut r = result(
        "privileges",
        status,
        format!("missing grant(s): {}", names.join(", ")),
        evidence,
    );
    r.suggestions = grant_statements(&missing, &ctx.grants.user);
    r
}

/// `GRANT a, b ON obj TO user` per object, run by an administrator (never applied by us).
fn grant_statements(missing: &[Missing], user: &str) -> Vec<String> {
    let mut objects: Vec<&str> = Vec::new();
    for m in missing {
        if !objects.contains(&m.on.as_str()) {
            objects.push(&m.on);
        }
    }
    objects
        .iter()
        .map(|o| {
            let privs: Vec<&str> = missing
                .iter()
                .filter(|m| m.on == *o)
                .map(|m| m.privilege)
                .collect();
            format!(
                "as an administrator: GRANT {} ON {o} TO {user}",
                privs.join(", ")
            )
        })
        .collect()
}

fn scope_text(s: &Scope) -> String {
    match s {
        Scope::Global => "*.*".into(),
        Scope::Database(d) => format!("{}.*", quoted(d)),
        Scope::Table(d, t) => format!("{}.{}", quoted(d), quoted(t)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(lines: &[&str]) -> Grants {
        Grants {
            list: lines.iter().filter_map(|l| parse_grant(l)).collect(),
            user: String::new(),
        }
    }

    #[test]
    fn parses_mariadb_grant_lines() {
        let g = parse_grant("GRANT SELECT, REPLICATION SLAVE, BINLOG MONITOR ON *.* TO `rep`@`%` IDENTIFIED BY PASSWORD '*D821'");
        assert_eq!(
            g,
            Some(Grant {
                privileges: vec![
                    "SELECT".into(),
                    "REPLICATION SLAVE".into(),
                    "BINLOG MONITOR".into()
                ],
                scope: Scope::Global
            })
        );
        let g = parse_grant("GRANT SELECT (`id`), INSERT ON `app`.`p` TO `lim`@`%`");
        assert_eq!(
            g,
            Some(Grant {
                privileges: vec!["INSERT".into()],
                scope: Scope::Table("app".into(), "p".into())
            })
        );
        let g = parse_grant("GRANT ALL PRIVILEGES ON `we``ird`.* TO PUBLIC");
        assert_eq!(
            g,
            Some(Grant {
                privileges: vec!["ALL PRIVILEGES".into()],
                scope: Scope::Database("we`ird".into())
            })
        );
        assert_eq!(parse_grant("GRANT `r1` TO `rep`@`%`"), None);
        assert_eq!(
            parse_grant("GRANT EXECUTE ON PROCEDURE `db`.`p` TO `u`@`%`"),
            None
        );
    }

    #[test]
    fn has_follows_scope_wildcards_and_aliases() {
        let g = grants(&[
            "GRANT USAGE ON *.* TO `u`@`%` IDENTIFIED BY PASSWORD '*X'",
            "GRANT SELECT ON `app\\_%`.* TO `u`@`%`",
            "GRANT INSERT ON `x`.`t` TO `u`@`%`",
            "GRANT REPLICATION CLIENT ON *.* TO `r`",
        ]);
        assert!(g.has("SELECT", Some("app_one"), Some("t")));
        assert!(!g.has("SELECT", Some("appXone"), None));
        assert!(!g.has("SELECT", None, None));
        assert!(g.has("INSERT", Some("x"), Some("t")));
        assert!(!g.has("INSERT", Some("x"), None));
        assert!(g.has("BINLOG MONITOR", None, None));
        assert!(!g.has("REPLICATION SLAVE", None, None));
        assert!(
            grants(&["GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` WITH GRANT OPTION"])
                .has("PROCESS", None, None)
        );
    }

    #[test]
    fn like_matches_like_the_server() {
        assert!(like("app%", "app"));
        assert!(like("a_c", "abc"));
        assert!(!like("a\\_c", "abc"));
        assert!(like("a\\_c", "a_c"));
        assert!(!like("app", "apps"));
    }
}
