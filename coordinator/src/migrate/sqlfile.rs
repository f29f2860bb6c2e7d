//! Splits SQL text into statements the way the `mariadb` client does: `;` (or the current
//! `DELIMITER`) ends a statement unless it is inside a quoted string, a backquoted name or a
//! comment. `-- ` and `#` comments run to the end of the line; `/* ... */` comments are kept
//! in the statement text (`/*!40101 ... */` carries SQL the server runs).
//!
//! Every statement keeps the line it starts on, for error messages (`file.sql:120`).

/// One statement and the 1-based line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub line: usize,
    pub sql: String,
}

/// The statements of `text` (empty ones dropped; `DELIMITER` lines applied, not returned).
pub fn split(text: &str) -> Vec<Statement> {
    let mut out = Vec::new();
    let mut delimiter = ";".to_string();
    let mut cur = String::new();
    let mut start_line = 1;
    let mut line = 1;
    let bytes: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        // A DELIMITER command at the start of a statement.
        if cur.trim().is_empty() && at_word(&bytes, i, "DELIMITER") {
            let end = bytes[i..]
                .iter()
                .position(|&c| c == '\n')
                .map_or(bytes.len(), |p| i + p);
            let rest: String = bytes[i + 9..end].iter().collect();
            if let Some(d) = rest.split_whitespace().next() {
                delimiter = d.to_string();
            }
            cur.clear();
            i = end;
            continue;
        }
        let line_comment = c == '#'
            || (c == '-'
                && bytes.get(i + 1) == Some(&'-')
                && bytes.get(i + 2).is_none_or(|c| c.is_whitespace()));
        if line_comment {
            i = skip_line(&bytes, i);
            continue;
        }
        if cur.trim().is_empty() && !c.is_whitespace() {
            cur.clear();
            start_line = line;
        }
        match c {
            '\'' | '"' | '`' => {
                let end = quoted_end(&bytes, i, c);
                let piece: String = bytes[i..end].iter().collect();
                line += piece.matches('\n').count();
                cur.push_str(&piece);
                i = end;
                continue;
            }
            '/' if bytes.get(i + 1) == Some(&'*') => {
                let end = find(&bytes, i + 2, "*/").map_or(bytes.len(), |p| p + 2);
                let piece: String = bytes[i..end].iter().collect();
                line += piece.matches('\n').count();
                cur.push_str(&piece);
                i = end;
                continue;
            }
            _ => {}
        }
        if starts_with(&bytes, i, &delimiter) {
            push(&mut out, &mut cur, start_line);
            i += delimiter.chars().count();
            continue;
        }
        if c == '\n' {
            line += 1;
        }
        cur.push(c);
        i += 1;
    }
    push(&mut out, &mut cur, start_line);
    out
}

fn push(out: &mut Vec<Statement>, cur: &mut String, line: usize) {
    let sql = cur.trim();
    if !sql.is_empty() {
        out.push(Statement {
            line,
            sql: sql.to_string(),
        });
    }
    cur.clear();
}

fn at_word(b: &[char], i: usize, word: &str) -> bool {
    let n = word.len();
    i + n <= b.len()
        && b[i..i + n]
            .iter()
            .collect::<String>()
            .eq_ignore_ascii_case(word)
        && b.get(i + n).is_none_or(|c| c.is_whitespace())
}

fn starts_with(b: &[char], i: usize, s: &str) -> bool {
    s.chars().enumerate().all(|(k, c)| b.get(i + k) == Some(&c))
}

fn find(b: &[char], from: usize, s: &str) -> Option<usize> {
    (from..b.len()).find(|&i| starts_with(b, i, s))
}

fn skip_line(b: &[char], i: usize) -> usize {
    b[i..]
        .iter()
        .position(|&c| c == '\n')
        .map_or(b.len(), |p| i + p)
}

/// The index after the closing quote (a doubled quote or, outside backquotes, a backslash
/// escape does not close it).
fn quoted_end(b: &[char], start: usize, q: char) -> usize {
    let mut i = start + 1;
    while i < b.len() {
        if b[i] == '\\' && q != '`' {
            i += 2;
            continue;
        }
        if b[i] == q {
            if b.get(i + 1) == Some(&q) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    b.len()
}

/// What a statement does to the session's database, when it is `USE`, `CREATE DATABASE` or
/// `DROP DATABASE` (a schema file loaded into a scratch database skips these).
pub fn is_database_statement(sql: &str) -> bool {
    let words: Vec<String> = sql
        .split_whitespace()
        .take(2)
        .map(|w| w.to_ascii_uppercase())
        .collect();
    match words.as_slice() {
        [w, ..] if w == "USE" => true,
        [a, b] if (a == "CREATE" || a == "DROP") && (b == "DATABASE" || b == "SCHEMA") => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_delimiters_outside_quotes_and_comments() {
        let text = "-- a comment; still\nCREATE TABLE `a;b` (x varchar(3) DEFAULT ';');\n\
                    /*!40101 SET x=1 */;\n# hash; comment\nINSERT INTO t VALUES ('it''s;', \"q\\\";\");\n";
        let st = split(text);
        let sqls: Vec<&str> = st.iter().map(|s| s.sql.as_str()).collect();
        assert_eq!(
            sqls,
            [
                "CREATE TABLE `a;b` (x varchar(3) DEFAULT ';')",
                "/*!40101 SET x=1 */",
                "INSERT INTO t VALUES ('it''s;', \"q\\\";\")"
            ]
        );
        assert_eq!(st[0].line, 2);
        assert_eq!(st[2].line, 5);
    }

    #[test]
    fn delimiter_command_changes_the_delimiter() {
        let text = "DELIMITER ;;\nCREATE TRIGGER t BEFORE INSERT ON x FOR EACH ROW BEGIN SET @a=1; SET @b=2; END;;\nDELIMITER ;\nSELECT 1;";
        let st = split(text);
        assert_eq!(st.len(), 2, "{st:?}");
        assert!(st[0].sql.ends_with("SET @b=2; END"));
        assert_eq!(st[1].sql, "SELECT 1");
        assert_eq!(st[1].line, 4);
        assert!(is_database_statement("use foo"));
        assert!(is_database_statement("CREATE DATABASE x"));
        assert!(!is_database_statement("CREATE TABLE x (a int)"));
    }

    #[test]
    fn trinitycore_style_update_with_a_procedure() {
        // The shape of TrinityCore's update files: comments, DROP ... IF EXISTS, a procedure
        // between DELIMITER $$ lines whose body has `;`, strings and comments holding `;` and
        // the delimiter, and a CALL after it.
        let text = "-- TDB 2024 auth update; adds a column\n\
                    DROP PROCEDURE IF EXISTS `add_col`;\n\
                    DELIMITER $$\n\
                    CREATE PROCEDURE `add_col`() BEGIN\n\
                      /* a comment; with $$ inside */\n\
                      IF NOT EXISTS (SELECT * FROM information_schema.COLUMNS WHERE COLUMN_NAME = 'x;$$') THEN\n\
                        ALTER TABLE `t` ADD `x` int; -- trailing; comment\n\
                      END IF;\n\
                    END$$\n\
                    DELIMITER ;\n\
                    CALL `add_col`();\n\
                    DROP PROCEDURE `add_col`;\n\
                    INSERT INTO t (s) VALUES ('a\\\\'), ('b;c'), (\"d\\\"e;\");";
        let st = split(text);
        let sqls: Vec<&str> = st.iter().map(|s| s.sql.as_str()).collect();
        assert_eq!(sqls.len(), 5, "{sqls:#?}");
        assert_eq!(sqls[0], "DROP PROCEDURE IF EXISTS `add_col`");
        assert!(
            sqls[1].starts_with("CREATE PROCEDURE `add_col`() BEGIN"),
            "{}",
            sqls[1]
        );
        assert!(
            sqls[1].contains("'x;$$'") && sqls[1].ends_with("END IF;\nEND"),
            "{}",
            sqls[1]
        );
        assert!(
            !sqls[1].contains("trailing"),
            "line comments are dropped: {}",
            sqls[1]
        );
        assert_eq!(sqls[2], "CALL `add_col`()");
        assert_eq!(sqls[3], "DROP PROCEDURE `add_col`");
        assert!(sqls[4].ends_with("(\"d\\\"e;\")"), "{}", sqls[4]);
        assert_eq!((st[0].line, st[1].line, st[2].line), (2, 4, 11));
    }
}
