//! Reading SQL export files without a server: a statement splitter and a parser for the
//! statement forms `fleetsync export --format sql` writes.
//!
//! Why parse here instead of running the file into a staging database: import must find every
//! problem (a syntax error with its line, a value that does not fit its column) before it
//! writes anything, and report all of them; a server stops at the first error and a staging
//! copy doubles the write volume and shows up in the target's binlog. The statements export
//! writes are few and regular (`SET`, `CREATE DATABASE`, `USE`, `CREATE TABLE`, multi-row
//! `INSERT` of literals), so a small tokenizer covers them exactly; `CREATE TABLE` text is
//! syntax-checked by the target server's own parser with `PREPARE` (which changes nothing).
//!
//! The splitter understands `'...'`, `"..."` and `` `...` `` quoting (backslash escapes and
//! doubled quotes), `-- `, `#` and `/* */` comments, and counts lines. A line comment
//! `-- fleetsync-table: {json}` before any statement is returned as metadata: the header
//! with the exact column types that the rows are typed by.

use std::io::{BufRead, ErrorKind};

use fleetsync_proto::{Column, ColumnType, Value};
use serde_json::Value as J;

/// Prefix of the metadata comment line.
pub const META_PREFIX: &str = "-- fleetsync-table: ";

/// One piece of a SQL file.
#[derive(Debug, PartialEq)]
pub enum Piece {
    /// A statement without its `;` and without comments; `line` is where it starts.
    Stmt { line: u64, text: Vec<u8> },
    /// The text after [`META_PREFIX`].
    Meta { line: u64, text: String },
}

#[derive(Clone, Copy, PartialEq)]
enum State {
    Normal,
    Quote(u8),
    LineComment,
    BlockComment,
}

/// Splits a SQL stream into statements. Reads in blocks, so memory is one statement.
pub struct Splitter<R> {
    r: R,
    buf: Vec<u8>,
    pos: usize,
    eof: bool,
    line: u64,
}

impl<R: BufRead> Splitter<R> {
    pub fn new(r: R) -> Self {
        Splitter {
            r,
            buf: Vec::new(),
            pos: 0,
            eof: false,
            line: 1,
        }
    }

    /// Makes `n` bytes from `pos` available if the stream has them.
    fn fill(&mut self, n: usize) -> std::io::Result<()> {
        while self.buf.len() - self.pos < n && !self.eof {
            if self.pos > 0 {
                self.buf.drain(..self.pos);
                self.pos = 0;
            }
            let chunk = match self.r.fill_buf() {
                Ok(c) => c,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if chunk.is_empty() {
                self.eof = true;
            } else {
                let len = chunk.len();
                self.buf.extend_from_slice(chunk);
                self.r.consume(len);
            }
        }
        Ok(())
    }

    fn peek(&mut self, k: usize) -> std::io::Result<Option<u8>> {
        self.fill(k + 1)?;
        Ok(self.buf.get(self.pos + k).copied())
    }

    fn bump(&mut self) -> Option<u8> {
        let b = self.buf.get(self.pos).copied()?;
        self.pos += 1;
        if b == b'\n' {
            self.line += 1;
        }
        Some(b)
    }

    /// The next piece; `Err((line, message))` for an I/O error or an unterminated quote or
    /// comment (after which the stream is over).
    pub fn next_piece(&mut self) -> Option<Result<Piece, (u64, String)>> {
        match self.scan() {
            Ok(p) => p.map(Ok),
            Err(e) => Some(Err(e)),
        }
    }

    fn scan(&mut self) -> Result<Option<Piece>, (u64, String)> {
        let io = |line: u64| move |e: std::io::Error| (line, format!("cannot read: {e}"));
        let mut text = Vec::new();
        let mut start = 0u64;
        let mut state = State::Normal;
        let mut opened = 0u64;
        let mut comment = Vec::new();
        loop {
            let Some(b) = self.peek(0).map_err(io(self.line))? else {
                return match state {
                    State::Quote(q) => Err((
                        opened,
                        format!("unterminated {} starting here", quote_name(q)),
                    )),
                    State::BlockComment => {
                        Err((opened, "unterminated /* comment starting here".into()))
                    }
                    _ if text.is_empty() => Ok(None),
                    _ => Ok(Some(Piece::Stmt { line: start, text })),
                };
            };
            let line = self.line;
            self.bump();
            match state {
                State::Quote(q) => {
                    text.push(b);
                    if b == b'\\' && q != b'`' {
                        self.peek(0).map_err(io(line))?;
                        if let Some(n) = self.bump() {
                            text.push(n);
                        }
                    } else if b == q {
                        if self.peek(0).map_err(io(line))? == Some(q) {
                            self.bump();
                            text.push(q);
                        } else {
                            state = State::Normal;
                        }
                    }
                }
                State::LineComment => {
                    if b == b'\n' {
                        state = State::Normal;
                        if text.is_empty() {
                            if let Some(meta) = comment.strip_prefix(&META_PREFIX.as_bytes()[2..]) {
                                let meta = String::from_utf8(meta.to_vec()).map_err(|_| {
                                    (line, "metadata comment is not UTF-8".to_string())
                                })?;
                                return Ok(Some(Piece::Meta { line, text: meta }));
                            }
                        }
                    } else if text.is_empty() && comment.len() < 1 << 24 {
                        comment.push(b);
                    }
                }
                State::BlockComment => {
                    if b == b'*' && self.peek(0).map_err(io(line))? == Some(b'/') {
                        self.bump();
                        state = State::Normal;
                        text.push(b' ');
                    }
                }
                State::Normal => match b {
                    b';' if !text.is_empty() => return Ok(Some(Piece::Stmt { line: start, text })),
                    b';' => {}
                    b'#' => {
                        comment.clear();
                        state = State::LineComment;
                    }
                    b'-' if self.peek(0).map_err(io(line))? == Some(b'-')
                        && self
                            .peek(1)
                            .map_err(io(line))?
                            .is_none_or(|c| c.is_ascii_whitespace()) =>
                    {
                        self.bump();
                        comment.clear();
                        state = State::LineComment;
                    }
                    b'/' if self.peek(0).map_err(io(line))? == Some(b'*') => {
                        self.bump();
                        opened = line;
                        state = State::BlockComment;
                    }
                    _ if text.is_empty() && b.is_ascii_whitespace() => {}
                    _ => {
                        if text.is_empty() {
                            start = line;
                        }
                        if matches!(b, b'\'' | b'"' | b'`') {
                            opened = line;
                            state = State::Quote(b);
                        }
                        text.push(b);
                    }
                },
            }
        }
    }
}

fn quote_name(q: u8) -> &'static str {
    match q {
        b'\'' => "'string'",
        b'"' => "\"string\"",
        _ => "`identifier`",
    }
}

/// A literal in a `VALUES` tuple, before it is typed by its column.
#[derive(Debug, Clone, PartialEq)]
pub enum Lit {
    Null,
    /// Number text as written (`-12`, `1.5e0`, `99.90`).
    Num(String),
    /// A quoted string's bytes after unescaping (any `_charset` introducer dropped).
    Str(Vec<u8>),
    /// `X'..'` or `0x..`.
    Hex(Vec<u8>),
    /// `b'0101'`.
    Bits(u64),
}

/// A statement being parsed, with line tracking.
pub struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
    pub line: u64,
}

pub type ParseResult<T> = Result<T, (u64, String)>;

impl<'a> Cursor<'a> {
    pub fn new(s: &'a [u8], line: u64) -> Self {
        Cursor { s, i: 0, line }
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> usize {
        self.i
    }

    pub fn err<T>(&self, msg: impl Into<String>) -> ParseResult<T> {
        Err((self.line, msg.into()))
    }

    pub fn skip_ws(&mut self) {
        while let Some(&b) = self.s.get(self.i) {
            if !b.is_ascii_whitespace() {
                break;
            }
            if b == b'\n' {
                self.line += 1;
            }
            self.i += 1;
        }
    }

    pub fn at_end(&mut self) -> bool {
        self.skip_ws();
        self.i >= self.s.len()
    }

    pub fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.i).copied()
    }

    /// Consumes `c` if it is next.
    pub fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    pub fn expect(&mut self, c: u8, what: &str) -> ParseResult<()> {
        if self.eat(c) {
            Ok(())
        } else {
            let found = self.found();
            self.err(format!("syntax error: expected {what}, found {found}"))
        }
    }

    /// A short description of what comes next, for messages.
    pub fn found(&mut self) -> String {
        self.skip_ws();
        let rest = &self.s[self.i..];
        if rest.is_empty() {
            return "the end of the statement".into();
        }
        let n = rest.len().min(20);
        format!("\"{}\"", String::from_utf8_lossy(&rest[..n]))
    }

    /// A bare word (letters, digits, `_`, `$`), upper-cased; `None` if none is next.
    pub fn word(&mut self) -> Option<String> {
        self.skip_ws();
        let start = self.i;
        while self
            .s
            .get(self.i)
            .is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'$'))
        {
            self.i += 1;
        }
        (self.i > start)
            .then(|| String::from_utf8_lossy(&self.s[start..self.i]).to_ascii_uppercase())
    }

    /// Consumes the keyword `kw` (case-insensitive) or fails.
    pub fn keyword(&mut self, kw: &str) -> ParseResult<()> {
        let at = self.i;
        match self.word() {
            Some(w) if w == kw => Ok(()),
            _ => {
                self.i = at;
                let found = self.found();
                self.err(format!("syntax error: expected {kw}, found {found}"))
            }
        }
    }

    /// Consumes the keyword `kw` if it is next.
    pub fn opt_keyword(&mut self, kw: &str) -> bool {
        let at = self.i;
        if self.word().as_deref() == Some(kw) {
            true
        } else {
            self.i = at;
            false
        }
    }

    /// A `` `quoted` `` or bare identifier.
    pub fn ident(&mut self) -> ParseResult<String> {
        self.skip_ws();
        if self.s.get(self.i) == Some(&b'`') {
            self.i += 1;
            let mut out = Vec::new();
            loop {
                match self.s.get(self.i) {
                    None => return self.err("syntax error: unterminated `identifier`"),
                    Some(b'`') if self.s.get(self.i + 1) == Some(&b'`') => {
                        out.push(b'`');
                        self.i += 2;
                    }
                    Some(b'`') => {
                        self.i += 1;
                        break;
                    }
                    Some(&b) => {
                        if b == b'\n' {
                            self.line += 1;
                        }
                        out.push(b);
                        self.i += 1;
                    }
                }
            }
            return String::from_utf8(out).or_else(|_| self.err("identifier is not UTF-8"));
        }
        let start = self.i;
        while self
            .s
            .get(self.i)
            .is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'$') || *b >= 0x80)
        {
            self.i += 1;
        }
        if self.i == start {
            let found = self.found();
            return self.err(format!("syntax error: expected a name, found {found}"));
        }
        String::from_utf8(self.s[start..self.i].to_vec())
            .or_else(|_| self.err("identifier is not UTF-8"))
    }

    /// `name` or `db.name`: (db, name).
    pub fn table_name(&mut self) -> ParseResult<(Option<String>, String)> {
        let first = self.ident()?;
        if self.eat(b'.') {
            Ok((Some(first), self.ident()?))
        } else {
            Ok((None, first))
        }
    }

    /// One literal of a `VALUES` tuple.
    pub fn literal(&mut self) -> ParseResult<Lit> {
        let Some(b) = self.peek() else {
            return self.err("syntax error: expected a value, found the end of the statement");
        };
        match b {
            b'\'' | b'"' => Ok(Lit::Str(self.quoted()?)),
            b'_' => {
                self.word();
                if matches!(self.peek(), Some(b'X' | b'x')) {
                    return self.literal();
                }
                match self.peek() {
                    Some(b'\'' | b'"') => Ok(Lit::Str(self.quoted()?)),
                    _ => {
                        let found = self.found();
                        self.err(format!("syntax error: expected a string after the character set introducer, found {found}"))
                    }
                }
            }
            b'X' | b'x' if self.s.get(self.i + 1) == Some(&b'\'') => {
                self.i += 1;
                let body = self.quoted()?;
                let Some(bytes) = unhex(&body) else {
                    return self.err("syntax error: invalid hex literal");
                };
                Ok(Lit::Hex(bytes))
            }
            b'0' if matches!(self.s.get(self.i + 1), Some(b'x')) => {
                self.i += 2;
                let start = self.i;
                while self.s.get(self.i).is_some_and(u8::is_ascii_hexdigit) {
                    self.i += 1;
                }
                unhex(&self.s[start..self.i])
                    .map(Lit::Hex)
                    .ok_or((self.line, "syntax error: invalid hex literal".into()))
            }
            b'b' | b'B' if self.s.get(self.i + 1) == Some(&b'\'') => {
                self.i += 1;
                let body = self.quoted()?;
                let text = String::from_utf8_lossy(&body);
                u64::from_str_radix(&text, 2)
                    .map(Lit::Bits)
                    .or_else(|_| self.err("syntax error: invalid bit literal"))
            }
            b'-' | b'+' | b'.' | b'0'..=b'9' => self.number(),
            _ => match self.word().as_deref() {
                Some("NULL") => Ok(Lit::Null),
                _ => {
                    let found = self.found();
                    self.err(format!("syntax error: expected a value, found {found}"))
                }
            },
        }
    }

    fn number(&mut self) -> ParseResult<Lit> {
        let start = self.i;
        while self
            .s
            .get(self.i)
            .is_some_and(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'))
        {
            self.i += 1;
        }
        let text = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
        let body = text.trim_start_matches(['-', '+']);
        let valid = body
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_digit() || b == b'.')
            && body.parse::<f64>().is_ok();
        if !valid {
            return self.err(format!("syntax error: invalid number {text:?}"));
        }
        Ok(Lit::Num(text))
    }

    /// A quoted string at the cursor, unescaped as MariaDB does with backslash escapes on.
    fn quoted(&mut self) -> ParseResult<Vec<u8>> {
        let q = self.s[self.i];
        let line = self.line;
        self.i += 1;
        let mut out = Vec::new();
        loop {
            let Some(&b) = self.s.get(self.i) else {
                return Err((line, "syntax error: unterminated string".into()));
            };
            self.i += 1;
            match b {
                b'\\' => {
                    let Some(&e) = self.s.get(self.i) else {
                        return Err((line, "syntax error: unterminated string".into()));
                    };
                    self.i += 1;
                    match e {
                        b'0' => out.push(0),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'b' => out.push(8),
                        b'Z' => out.push(0x1a),
                        // The server keeps the backslash of \% and \_ (LIKE patterns).
                        b'%' | b'_' => out.extend_from_slice(&[b'\\', e]),
                        other => {
                            if other == b'\n' {
                                self.line += 1;
                            }
                            out.push(other)
                        }
                    }
                }
                _ if b == q => {
                    if self.s.get(self.i) == Some(&q) {
                        self.i += 1;
                        out.push(q);
                    } else {
                        return Ok(out);
                    }
                }
                _ => {
                    if b == b'\n' {
                        self.line += 1;
                    }
                    out.push(b);
                }
            }
        }
    }
}

fn unhex(h: &[u8]) -> Option<Vec<u8>> {
    if !h.len().is_multiple_of(2) {
        return None;
    }
    let d = |c: u8| char::from(c).to_digit(16).map(|v| v as u8);
    h.chunks(2)
        .map(|p| Some(d(p[0])? << 4 | d(p[1])?))
        .collect()
}

/// Types a literal by its column: the inverse of `push_value` for every value it writes.
pub fn lit_to_value(lit: Lit, col: &Column) -> Result<Value, String> {
    use ColumnType as T;
    let text = |b: &[u8]| {
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| "the text is not valid UTF-8".to_string())
    };
    let via_json =
        |j: J| fleetsync_proto::codec::value_from_json(&j, col).map_err(|e| e.to_string());
    let wrong = |what: &str| Err(format!("expected {what} for a {} column", col.column_type));
    match (col.ty, lit) {
        (_, Lit::Null) => Ok(Value::Null),
        (T::Float, Lit::Num(n)) => {
            let d: f64 = n.parse().map_err(|_| format!("invalid number {n:?}"))?;
            let f = d as f32;
            if f.is_infinite() {
                return Err(format!("{n} is outside the FLOAT range"));
            }
            Ok(Value::Float(f))
        }
        (T::Double, Lit::Num(n)) => n
            .parse::<f64>()
            .ok()
            .filter(|d| d.is_finite())
            .map(Value::Double)
            .ok_or_else(|| format!("invalid DOUBLE {n:?}")),
        (T::Enum | T::Set | T::Bit | T::Year, Lit::Num(n)) => match n.parse::<u64>() {
            Ok(u) => via_json(J::from(u)),
            Err(_) => wrong("an unsigned integer"),
        },
        (T::Bit | T::Enum | T::Set, Lit::Bits(u)) => via_json(J::from(u)),
        (T::Enum | T::Set, Lit::Str(s)) => via_json(J::String(text(&s)?)),
        (
            T::TinyInt | T::SmallInt | T::MediumInt | T::Int | T::BigInt | T::Decimal,
            Lit::Num(n),
        ) => via_json(J::String(n)),
        (
            T::TinyInt | T::SmallInt | T::MediumInt | T::Int | T::BigInt | T::Decimal | T::Year,
            Lit::Str(s),
        ) => via_json(J::String(text(&s)?)),
        (T::Date | T::Time | T::DateTime, Lit::Str(s)) => via_json(J::String(text(&s)?)),
        (T::Timestamp, Lit::Str(s)) => {
            let t = text(&s)?;
            let iso = match t.split_once(' ') {
                Some((d, tm)) => format!("{d}T{tm}Z"),
                None => return wrong("'YYYY-MM-DD HH:MM:SS[.ffffff]'"),
            };
            via_json(J::String(iso)).map_err(|_| format!("invalid TIMESTAMP {t:?}"))
        }
        (T::Char | T::VarChar | T::Text, Lit::Str(s) | Lit::Hex(s)) => Ok(Value::Text(s)),
        (T::Binary | T::VarBinary | T::Blob, Lit::Str(s) | Lit::Hex(s)) => Ok(Value::Bytes(s)),
        (T::Geometry, Lit::Hex(s) | Lit::Str(s)) => Ok(Value::Geometry(s)),
        (T::Json, Lit::Str(s)) => Ok(Value::Json(text(&s)?)),
        (_, lit) => wrong(match lit {
            Lit::Num(_) => "not a number",
            Lit::Hex(_) | Lit::Bits(_) => "not a hex or bit literal",
            _ => "not a string",
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pieces(text: &str) -> Vec<Piece> {
        let mut s = Splitter::new(text.as_bytes());
        let mut out = Vec::new();
        while let Some(p) = s.next_piece() {
            out.push(p.unwrap());
        }
        out
    }

    #[test]
    fn splits_statements_with_quotes_and_comments() {
        let p = pieces("-- fleetsync-table: {\"a\":1}\nSET x=1;\n# c\nINSERT INTO t VALUES ('a;b', \"c\\\";\", `d;`) /* ; */;\n\n-- end\n");
        assert_eq!(
            p,
            vec![
                Piece::Meta {
                    line: 1,
                    text: "{\"a\":1}".into()
                },
                Piece::Stmt {
                    line: 2,
                    text: b"SET x=1".to_vec()
                },
                Piece::Stmt {
                    line: 4,
                    text: b"INSERT INTO t VALUES ('a;b', \"c\\\";\", `d;`)  ".to_vec()
                },
            ]
        );
    }

    #[test]
    fn unterminated_string_names_its_line() {
        let mut s = Splitter::new("SELECT 1;\nINSERT 'abc;\n\n".as_bytes());
        assert!(s.next_piece().unwrap().is_ok());
        assert_eq!(s.next_piece().unwrap().unwrap_err().0, 2);
    }

    #[test]
    fn literals_unescape() {
        let mut c = Cursor::new(
            b"('a\\'b\\\\\\0\\n', X'00FF', -1.5e0, NULL, _utf8mb4'{}', b'101', 0x0A)",
            1,
        );
        c.expect(b'(', "(").unwrap();
        let mut lits = Vec::new();
        loop {
            lits.push(c.literal().unwrap());
            if !c.eat(b',') {
                break;
            }
        }
        c.expect(b')', ")").unwrap();
        assert_eq!(
            lits,
            vec![
                Lit::Str(b"a'b\\\0\n".to_vec()),
                Lit::Hex(vec![0, 255]),
                Lit::Num("-1.5e0".into()),
                Lit::Null,
                Lit::Str(b"{}".to_vec()),
                Lit::Bits(5),
                Lit::Hex(vec![10]),
            ]
        );
    }

    #[test]
    fn bad_values_are_errors() {
        let mut c = Cursor::new(b"(1 'a')", 3);
        c.expect(b'(', "(").unwrap();
        c.literal().unwrap();
        let e = c.expect(b',', "`,` or `)`").unwrap_err();
        assert_eq!(e.0, 3);
        assert!(e.1.contains("expected `,` or `)`"), "{}", e.1);
    }
}
