//! Classifies QUERY events: transaction control, DDL on tables (with the tables it names),
//! data changes logged as statements, or something fleetsync ignores. Only the statement's
//! head is parsed: enough to know which tables a DDL touches so filters and table pauses
//! apply; the statement text itself is forwarded to targets unchanged.
//!
//! A data change (INSERT, REPLACE, UPDATE, DELETE, LOAD DATA) appears as a QUERY event only
//! when the session logged it in statement form (`binlog_format` STATEMENT or MIXED): its rows
//! are then not in the binlog and fleetsync cannot replicate them. [`Statement::Dml`] names
//! the tables such a statement may write, erring on the side of naming too many (aliases and
//! qualified column names of multi-table forms are included): a false match stops a sync
//! visibly, a missed one would lose changes silently.

/// What a QUERY event is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Statement {
    Begin,
    Commit,
    Rollback,
    /// DDL naming these tables as `(schema or None for the default database, table)`.
    TableDdl {
        kind: DdlKind,
        tables: Vec<(Option<String>, String)>,
    },
    /// CREATE/DROP/ALTER DATABASE.
    DatabaseDdl {
        name: String,
    },
    /// A data change in statement form. `tables` are the tables it may write, as
    /// `(schema or None for the default database, table)`; `None` when they cannot be told
    /// (a `SELECT`/`DO` that calls a stored function which writes, a head that is not parsed).
    Dml {
        tables: Option<Vec<(Option<String>, String)>>,
    },
    /// Anything else (views, routines, grants, ...): not replicated.
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DdlKind {
    Create,
    Alter,
    Drop,
    Rename,
    Truncate,
    Index,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(String),
    Quoted(String),
    /// A '...' string literal (its text is not needed).
    Str,
    Dot,
    Comma,
    Other,
}

/// Tokens read from the head of a statement: enough for every DDL head and for the table
/// references of a multi-table UPDATE/DELETE; longer heads make a DML's tables unknown.
const TOKEN_LIMIT: usize = 1024;

fn tokenize(sql: &str, limit: usize) -> Vec<Tok> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() && out.len() < limit {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            i = sql[i + 2..]
                .find("*/")
                .map(|p| i + 2 + p + 2)
                .unwrap_or(b.len());
        } else if c == b'-' && b.get(i + 1) == Some(&b'-') || c == b'#' {
            i = sql[i..].find('\n').map(|p| i + p + 1).unwrap_or(b.len());
        } else if c == b'\'' {
            // A string literal: backslash escapes and doubled quotes stay inside it.
            let mut j = i + 1;
            while j < b.len() {
                if b[j] == b'\\' {
                    j += 2;
                    continue;
                }
                if b[j] == b'\'' {
                    if b.get(j + 1) == Some(&b'\'') {
                        j += 2;
                        continue;
                    }
                    break;
                }
                j += 1;
            }
            out.push(Tok::Str);
            i = j + 1;
        } else if c == b'`' || c == b'"' {
            // Backquotes, or double quotes (identifiers under ANSI_QUOTES; as a string they
            // can only widen a DML's table list, which errs on the safe side).
            let mut s = String::new();
            let mut j = i + 1;
            while j < b.len() {
                if b[j] == c {
                    if b.get(j + 1) == Some(&c) {
                        s.push(c as char);
                        j += 2;
                        continue;
                    }
                    break;
                }
                let ch_len = sql[j..].chars().next().map(char::len_utf8).unwrap_or(1);
                s.push_str(&sql[j..j + ch_len]);
                j += ch_len;
            }
            out.push(Tok::Quoted(s));
            i = j + 1;
        } else if c == b'.' {
            out.push(Tok::Dot);
            i += 1;
        } else if c == b',' {
            out.push(Tok::Comma);
            i += 1;
        } else if c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80 {
            let start = i;
            while i < b.len()
                && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'$' || b[i] >= 0x80)
            {
                i += 1;
            }
            out.push(Tok::Word(sql[start..i].to_string()));
        } else {
            out.push(Tok::Other);
            i += 1;
        }
    }
    out
}

struct Cursor {
    toks: Vec<Tok>,
    pos: usize,
}

impl Cursor {
    fn kw(&mut self, word: &str) -> bool {
        match self.toks.get(self.pos) {
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case(word) => {
                self.pos += 1;
                true
            }
            _ => false,
        }
    }

    fn kws(&mut self, words: &[&str]) -> bool {
        let save = self.pos;
        if words.iter().all(|w| self.kw(w)) {
            return true;
        }
        self.pos = save;
        false
    }

    fn ident(&mut self) -> Option<String> {
        match self.toks.get(self.pos) {
            Some(Tok::Word(w)) | Some(Tok::Quoted(w)) => {
                self.pos += 1;
                Some(w.clone())
            }
            _ => None,
        }
    }

    /// `name` or `schema.name`.
    fn table_name(&mut self) -> Option<(Option<String>, String)> {
        let first = self.ident()?;
        if self.toks.get(self.pos) == Some(&Tok::Dot) {
            self.pos += 1;
            let second = self.ident()?;
            return Some((Some(first), second));
        }
        Some((None, first))
    }

    fn comma(&mut self) -> bool {
        if self.toks.get(self.pos) == Some(&Tok::Comma) {
            self.pos += 1;
            return true;
        }
        false
    }
}

/// Classifies one statement.
pub fn classify(sql: &str) -> Statement {
    let mut c = Cursor {
        toks: tokenize(sql, TOKEN_LIMIT),
        pos: 0,
    };
    if c.kw("BEGIN") || c.kws(&["START", "TRANSACTION"]) || c.kws(&["XA", "START"]) {
        return Statement::Begin;
    }
    if c.kw("COMMIT") || c.kws(&["XA", "COMMIT"]) {
        return Statement::Commit;
    }
    if c.kw("ROLLBACK") {
        return Statement::Rollback;
    }
    let table_list = |c: &mut Cursor, kind| {
        let mut tables = Vec::new();
        while let Some(t) = c.table_name() {
            tables.push(t);
            if !c.comma() {
                break;
            }
        }
        if tables.is_empty() {
            Statement::Other
        } else {
            Statement::TableDdl { kind, tables }
        }
    };
    if c.kw("CREATE") {
        c.kws(&["OR", "REPLACE"]);
        if c.kw("DATABASE") || c.kw("SCHEMA") {
            c.kws(&["IF", "NOT", "EXISTS"]);
            return c
                .ident()
                .map(|name| Statement::DatabaseDdl { name })
                .unwrap_or(Statement::Other);
        }
        c.kw("TEMPORARY");
        if c.kw("TABLE") {
            c.kws(&["IF", "NOT", "EXISTS"]);
            return c
                .table_name()
                .map(|t| Statement::TableDdl {
                    kind: DdlKind::Create,
                    tables: vec![t],
                })
                .unwrap_or(Statement::Other);
        }
        let _ = c.kw("UNIQUE") || c.kw("FULLTEXT") || c.kw("SPATIAL");
        if c.kw("INDEX") {
            return index_target(&mut c);
        }
        return Statement::Other;
    }
    if c.kw("ALTER") {
        if c.kw("DATABASE") || c.kw("SCHEMA") {
            return c
                .ident()
                .map(|name| Statement::DatabaseDdl { name })
                .unwrap_or(Statement::Other);
        }
        c.kw("ONLINE");
        c.kw("IGNORE");
        if c.kw("TABLE") {
            c.kws(&["IF", "EXISTS"]);
            return c
                .table_name()
                .map(|t| Statement::TableDdl {
                    kind: DdlKind::Alter,
                    tables: vec![t],
                })
                .unwrap_or(Statement::Other);
        }
        return Statement::Other;
    }
    if c.kw("DROP") {
        if c.kw("DATABASE") || c.kw("SCHEMA") {
            c.kws(&["IF", "EXISTS"]);
            return c
                .ident()
                .map(|name| Statement::DatabaseDdl { name })
                .unwrap_or(Statement::Other);
        }
        c.kw("TEMPORARY");
        if c.kw("TABLE") {
            c.kws(&["IF", "EXISTS"]);
            return table_list(&mut c, DdlKind::Drop);
        }
        c.kw("ONLINE");
        if c.kw("INDEX") {
            return index_target(&mut c);
        }
        return Statement::Other;
    }
    if c.kws(&["RENAME", "TABLE"]) {
        let mut tables = Vec::new();
        while let Some(from) = c.table_name() {
            if !c.kw("TO") {
                break;
            }
            let Some(to) = c.table_name() else { break };
            tables.push(from);
            tables.push(to);
            if !c.comma() {
                break;
            }
        }
        return if tables.is_empty() {
            Statement::Other
        } else {
            Statement::TableDdl {
                kind: DdlKind::Rename,
                tables,
            }
        };
    }
    if c.kw("TRUNCATE") {
        c.kw("TABLE");
        return table_list(&mut c, DdlKind::Truncate);
    }
    dml(&mut c).unwrap_or(Statement::Other)
}

/// `[IF [NOT] EXISTS] index_name ON table`.
fn index_target(c: &mut Cursor) -> Statement {
    c.kws(&["IF", "NOT", "EXISTS"]);
    c.kws(&["IF", "EXISTS"]);
    if c.ident().is_none() || !c.kw("ON") {
        return Statement::Other;
    }
    c.table_name()
        .map(|t| Statement::TableDdl {
            kind: DdlKind::Index,
            tables: vec![t],
        })
        .unwrap_or(Statement::Other)
}

/// Words that can stand where a multi-table UPDATE/DELETE names tables but are not tables.
const NOT_TABLES: &[&str] = &[
    "AS",
    "JOIN",
    "INNER",
    "LEFT",
    "RIGHT",
    "OUTER",
    "CROSS",
    "NATURAL",
    "STRAIGHT_JOIN",
    "ON",
    "USING",
    "AND",
    "OR",
    "NOT",
    "XOR",
    "IN",
    "IS",
    "NULL",
    "LIKE",
    "BETWEEN",
    "FROM",
    "LOW_PRIORITY",
    "QUICK",
    "IGNORE",
    "USE",
    "FORCE",
    "INDEX",
    "KEY",
    "FOR",
    "PARTITION",
    "LATERAL",
    "SELECT",
    "WHERE",
    "TRUE",
    "FALSE",
];

/// A data change in statement form, when the statement is one (see [`Statement::Dml`]).
fn dml(c: &mut Cursor) -> Option<Statement> {
    let unknown = Some(Statement::Dml { tables: None });
    // `WITH cte AS (...) <verb> ...`: parse from the verb (a plain SELECT is not a change).
    if c.kw("WITH") {
        let verb = c.toks[c.pos..].iter().position(|t| {
            matches!(t, Tok::Word(w) if ["INSERT", "REPLACE", "UPDATE", "DELETE"]
                .iter()
                .any(|v| w.eq_ignore_ascii_case(v)))
        })?;
        c.pos += verb;
    }
    if c.kw("INSERT") || c.kw("REPLACE") {
        for modifier in ["LOW_PRIORITY", "DELAYED", "HIGH_PRIORITY", "IGNORE", "INTO"] {
            c.kw(modifier);
        }
        return Some(match c.table_name() {
            Some(t) => Statement::Dml {
                tables: Some(vec![t]),
            },
            None => Statement::Dml { tables: None },
        });
    }
    if c.kw("UPDATE") {
        return Some(Statement::Dml {
            tables: table_refs(c, &["SET"], false),
        });
    }
    if c.kw("DELETE") {
        // Single- and multi-table forms: every name before the conditions.
        return Some(Statement::Dml {
            tables: table_refs(c, &["WHERE", "ORDER", "LIMIT", "RETURNING"], true),
        });
    }
    if c.kw("LOAD") {
        if !(c.kw("DATA") || c.kw("XML")) {
            return None;
        }
        let into = c.toks[c.pos..]
            .windows(2)
            .position(|w| matches!(w, [Tok::Word(a), Tok::Word(b)] if a.eq_ignore_ascii_case("INTO") && b.eq_ignore_ascii_case("TABLE")));
        let Some(into) = into else { return unknown };
        c.pos += into + 2;
        return Some(Statement::Dml {
            tables: c.table_name().map(|t| vec![t]),
        });
    }
    // In the binlog, SELECT/DO only appear when they called a stored function that wrote.
    if c.kw("SELECT") || c.kw("DO") {
        return unknown;
    }
    None
}

/// Every `name` or `schema.name` from here to the first of `stops` (or the end when
/// `end_ok`): a superset of the tables of a table-reference list. `None` when the list runs
/// past the tokens read.
fn table_refs(
    c: &mut Cursor,
    stops: &[&str],
    end_ok: bool,
) -> Option<Vec<(Option<String>, String)>> {
    let is_stop =
        |t: &Tok| matches!(t, Tok::Word(w) if stops.iter().any(|s| w.eq_ignore_ascii_case(s)));
    let mut tables = Vec::new();
    let mut found_stop = false;
    while let Some(t) = c.toks.get(c.pos) {
        if is_stop(t) {
            found_stop = true;
            break;
        }
        let name = match t {
            Tok::Word(w) if NOT_TABLES.iter().any(|k| w.eq_ignore_ascii_case(k)) => None,
            Tok::Word(w) | Tok::Quoted(w) => Some(w.clone()),
            _ => None,
        };
        c.pos += 1;
        let Some(first) = name else { continue };
        if c.toks.get(c.pos) == Some(&Tok::Dot) {
            if let Some(Tok::Word(second) | Tok::Quoted(second)) = c.toks.get(c.pos + 1) {
                tables.push((Some(first), second.clone()));
                c.pos += 2;
                continue;
            }
            // `t.*` in a multi-table DELETE: `t` is a table (or an alias).
            c.pos += 1;
        }
        tables.push((None, first));
    }
    let complete = found_stop || (end_ok && c.toks.len() < TOKEN_LIMIT);
    (complete && !tables.is_empty()).then_some(tables)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables(s: &str) -> Vec<(Option<String>, String)> {
        match classify(s) {
            Statement::TableDdl { tables, .. } => tables,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn control() {
        assert_eq!(classify("BEGIN"), Statement::Begin);
        assert_eq!(classify("COMMIT"), Statement::Commit);
        assert_eq!(classify("ROLLBACK"), Statement::Rollback);
    }

    #[test]
    fn table_ddl() {
        assert_eq!(
            tables("CREATE TABLE IF NOT EXISTS `a b`.t (x int)"),
            vec![(Some("a b".into()), "t".into())]
        );
        assert_eq!(
            tables("alter online table t add column y int"),
            vec![(None, "t".into())]
        );
        assert_eq!(
            tables("DROP TABLE IF EXISTS `t1`,db.t2 /* generated by server */"),
            vec![(None, "t1".into()), (Some("db".into()), "t2".into())]
        );
        assert_eq!(tables("RENAME TABLE a TO b, x.c TO x.d").len(), 4);
        assert_eq!(
            tables("CREATE UNIQUE INDEX i ON db.t (x)"),
            vec![(Some("db".into()), "t".into())]
        );
        assert_eq!(tables("/* c */ TRUNCATE TABLE t"), vec![(None, "t".into())]);
        assert_eq!(
            tables("CREATE OR REPLACE TABLE t (x int)"),
            vec![(None, "t".into())]
        );
    }

    #[test]
    fn others() {
        assert_eq!(
            classify("CREATE DATABASE IF NOT EXISTS app"),
            Statement::DatabaseDdl { name: "app".into() }
        );
        assert_eq!(classify("CREATE VIEW v AS SELECT 1"), Statement::Other);
        assert_eq!(classify("GRANT ALL ON *.* TO x"), Statement::Other);
    }

    fn dml_tables(s: &str) -> Option<Vec<(Option<String>, String)>> {
        match classify(s) {
            Statement::Dml { tables } => tables,
            other => panic!("{s}: {other:?}"),
        }
    }

    fn t(schema: Option<&str>, table: &str) -> (Option<String>, String) {
        (schema.map(str::to_string), table.to_string())
    }

    #[test]
    fn dml_single_table() {
        assert_eq!(
            dml_tables("INSERT INTO app.items (id, v) VALUES (1, 'x')"),
            Some(vec![t(Some("app"), "items")])
        );
        assert_eq!(
            dml_tables("insert low_priority ignore `items` set v = 'INTO x.y'"),
            Some(vec![t(None, "items")])
        );
        assert_eq!(
            dml_tables("REPLACE app.items SELECT * FROM other.src"),
            Some(vec![t(Some("app"), "items")])
        );
        assert_eq!(
            dml_tables("UPDATE items SET v = 'it''s' WHERE id = 1"),
            Some(vec![t(None, "items")])
        );
        assert_eq!(
            dml_tables("/* app */ DELETE QUICK FROM app.items WHERE id IN (1, 2)"),
            Some(vec![t(Some("app"), "items")])
        );
        assert_eq!(
            dml_tables("DELETE FROM items"),
            Some(vec![t(None, "items")])
        );
        assert_eq!(
            dml_tables("LOAD DATA LOCAL INFILE '/tmp/into table x.y' REPLACE INTO TABLE app.items FIELDS TERMINATED BY ','"),
            Some(vec![t(Some("app"), "items")])
        );
    }

    #[test]
    fn dml_multi_table_names_every_candidate() {
        let got = dml_tables(
            "UPDATE app.a AS x JOIN other.b y ON x.id = y.id SET x.v = y.v WHERE y.k = 1",
        )
        .unwrap_or_default();
        for want in [t(Some("app"), "a"), t(Some("other"), "b"), t(None, "x")] {
            assert!(got.contains(&want), "{want:?} missing from {got:?}");
        }
        let got =
            dml_tables("DELETE a.*, b FROM app.a, app.b WHERE a.id = b.id").unwrap_or_default();
        assert!(
            got.contains(&t(None, "a")) && got.contains(&t(Some("app"), "b")),
            "{got:?}"
        );
        let got = dml_tables("DELETE FROM a USING app.a JOIN app.b").unwrap_or_default();
        assert!(got.contains(&t(Some("app"), "a")), "{got:?}");
        assert_eq!(
            dml_tables("WITH c AS (SELECT 1) UPDATE app.a SET v = 1"),
            Some(vec![t(Some("app"), "a")])
        );
    }

    #[test]
    fn dml_unknown_tables() {
        assert_eq!(dml_tables("SELECT app.f(1)"), None);
        assert_eq!(dml_tables("DO app.f(1)"), None);
        // An UPDATE whose SET lies beyond the tokens read.
        let long = format!("UPDATE {} SET v = 1", vec!["a"; TOKEN_LIMIT].join(", "));
        assert_eq!(dml_tables(&long), None);
    }

    #[test]
    fn not_dml() {
        assert_eq!(
            classify("WITH c AS (SELECT 1) SELECT * FROM c"),
            Statement::Other
        );
        assert_eq!(classify("SET @x = 1"), Statement::Other);
        assert_eq!(classify("LOAD INDEX INTO CACHE t"), Statement::Other);
        assert_eq!(classify("FLUSH TABLES"), Statement::Other);
    }
}
