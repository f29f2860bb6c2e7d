//! Classifies QUERY events: transaction control, DDL on tables (with the tables it names) or
//! something fleetsync ignores. Only the statement's head is parsed: enough to know which
//! tables a DDL touches so filters and table pauses apply; the statement text itself is
//! forwarded to targets unchanged.

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
    Dot,
    Comma,
    Other,
}

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
        } else if c == b'`' {
            let mut s = String::new();
            let mut j = i + 1;
            while j < b.len() {
                if b[j] == b'`' {
                    if b.get(j + 1) == Some(&b'`') {
                        s.push('`');
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
        toks: tokenize(sql, 256),
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
    Statement::Other
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
}
