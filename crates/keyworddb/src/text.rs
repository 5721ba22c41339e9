//! `KeywordDatabase` in protobuf text format, tokenized from a byte stream.
//!
//! Accepted: any layout of whitespace and line breaks, `#` comments, `rows { … }`,
//! `rows: { … }`, `rows < … >` and the list form `rows: [{ … }, { … }]`, `,` or `;` after a
//! field, strings in `"` or `'` with every text-format escape (`\n \t \r \a \b \f \v \\ \' \"
//! \?`, octal `\N` to `\NNN`, hex `\xH` / `\xHH`, `\uXXXX`, `\UXXXXXXXX`), and adjacent strings
//! concatenated. Anything else (an unknown field, a field given twice, a missing `:` before a
//! string, a bad escape, an unbalanced brace) is an error with line and column.

use std::io::{BufRead, BufReader, Read};

use crate::{Error, MAX_FIELD_LEN, Position, Row};

/// A token and where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// A field name.
    Ident(String),
    /// One quoted string, escapes resolved.
    Str(Vec<u8>),
    /// One of `: { } < > [ ] , ;`.
    Punct(u8),
    /// A number or other bare word that is not a name.
    Other(String),
    /// End of input.
    Eof,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("`{s}`"),
            Tok::Str(_) => "a string".into(),
            Tok::Punct(c) => format!("'{}'", *c as char),
            Tok::Other(s) => format!("`{s}`"),
            Tok::Eof => "the end of the file".into(),
        }
    }
}

/// Where the reader is between rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the top level of the `KeywordDatabase` message.
    Top,
    /// Inside `rows: [ … ]`; `need_sep` after a row until `,` is read.
    List { need_sep: bool },
    /// After the end or an error.
    Done,
}

/// Streams the rows of a text-format `KeywordDatabase`.
pub struct TextReader<R: Read> {
    inner: BufReader<R>,
    file: String,
    line: u64,
    col: u64,
    offset: u64,
    peeked: Option<(Tok, Position)>,
    state: State,
    /// Whether a row without `keyword` comes out with an empty keyword (protobuf's default)
    /// instead of ending the stream with an error.
    keyword_optional: bool,
}

type Res<T> = Result<T, Error>;

impl<R: Read> TextReader<R> {
    /// A reader over `inner`; `file` names it in error messages.
    pub fn new(file: &str, inner: R) -> Self {
        TextReader {
            inner: BufReader::with_capacity(64 * 1024, inner),
            file: file.to_string(),
            line: 1,
            col: 1,
            offset: 0,
            peeked: None,
            state: State::Top,
            keyword_optional: false,
        }
    }

    /// Lets a row without `keyword` through with an empty keyword (the protobuf default), for a
    /// caller that skips such rows itself and reads on, instead of ending the stream there.
    pub fn keyword_optional(mut self) -> Self {
        self.keyword_optional = true;
        self
    }

    fn pos(&self) -> Position {
        Position::Text {
            line: self.line,
            col: self.col,
        }
    }

    fn err(&self, position: Position, reason: impl Into<String>) -> Error {
        Error {
            file: self.file.clone(),
            position,
            reason: reason.into(),
        }
    }

    fn peek_byte(&mut self) -> Res<Option<u8>> {
        loop {
            match self.inner.fill_buf() {
                Ok(b) => return Ok(b.first().copied()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.err(self.pos(), format!("read error: {e}"))),
            }
        }
    }

    fn bump(&mut self) -> Res<Option<u8>> {
        let b = self.peek_byte()?;
        if let Some(c) = b {
            self.inner.consume(1);
            self.offset += 1;
            if c == b'\n' {
                self.line += 1;
                self.col = 1;
            } else {
                self.col += 1;
            }
        }
        Ok(b)
    }

    /// Skips whitespace and `#` comments.
    fn skip_space(&mut self) -> Res<()> {
        while let Some(c) = self.peek_byte()? {
            match c {
                b' ' | b'\t' | b'\r' | b'\n' | 0x0b | 0x0c => {
                    self.bump()?;
                }
                b'#' => {
                    while let Some(c) = self.bump()? {
                        if c == b'\n' {
                            break;
                        }
                    }
                }
                _ if self.offset == 0 && c == 0xef => {
                    // A UTF-8 byte-order mark at the very start.
                    self.bump()?;
                    for expected in [0xbb, 0xbf] {
                        if self.bump()? != Some(expected) {
                            return Err(self.err(self.pos(), "unexpected byte at the start"));
                        }
                    }
                }
                _ => break,
            }
        }
        Ok(())
    }

    fn lex(&mut self) -> Res<(Tok, Position)> {
        self.skip_space()?;
        let start = self.pos();
        let Some(c) = self.peek_byte()? else {
            return Ok((Tok::Eof, start));
        };
        let tok = match c {
            b':' | b'{' | b'}' | b'<' | b'>' | b'[' | b']' | b',' | b';' => {
                self.bump()?;
                Tok::Punct(c)
            }
            b'"' | b'\'' => Tok::Str(self.string(start)?),
            c if c.is_ascii_alphabetic() || c == b'_' => Tok::Ident(self.word()?),
            c if c.is_ascii_digit() || c == b'-' || c == b'+' || c == b'.' => {
                Tok::Other(self.word()?)
            }
            c => {
                let shown = show_byte(c, "'", "'", "");
                return Err(self.err(start, format!("unexpected character {shown}")));
            }
        };
        Ok((tok, start))
    }

    fn word(&mut self) -> Res<String> {
        let mut s = String::new();
        while let Some(c) = self.peek_byte()? {
            if c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-' | b'+') {
                s.push(c as char);
                self.bump()?;
            } else {
                break;
            }
        }
        Ok(s)
    }

    /// One quoted string starting at the quote; escapes resolved.
    fn string(&mut self, start: Position) -> Res<Vec<u8>> {
        let quote = self.bump()?.expect("caller peeked a quote");
        let mut out = Vec::new();
        loop {
            let here = self.pos();
            let Some(c) = self.bump()? else {
                return Err(self.err(start, "unterminated string: the file ends inside it"));
            };
            match c {
                b'\n' => {
                    return Err(self.err(
                        start,
                        "unterminated string: line break inside a string (write \\n)",
                    ));
                }
                c if c == quote => return Ok(out),
                b'\\' => self.escape(here, &mut out)?,
                c => out.push(c),
            }
            if out.len() > MAX_FIELD_LEN {
                return Err(self.err(start, format!("string longer than {MAX_FIELD_LEN} bytes")));
            }
        }
    }

    fn hex_digits(&mut self, max: usize) -> Res<(u32, usize)> {
        let mut v = 0u32;
        let mut n = 0;
        while n < max {
            match self.peek_byte()?.and_then(|c| (c as char).to_digit(16)) {
                Some(d) => {
                    v = v * 16 + d;
                    n += 1;
                    self.bump()?;
                }
                None => break,
            }
        }
        Ok((v, n))
    }

    /// Resolves the escape after a backslash at `at`.
    fn escape(&mut self, at: Position, out: &mut Vec<u8>) -> Res<()> {
        let Some(c) = self.bump()? else {
            return Err(self.err(at, "unterminated string: the file ends after '\\'"));
        };
        let simple = match c {
            b'n' => Some(b'\n'),
            b't' => Some(b'\t'),
            b'r' => Some(b'\r'),
            b'a' => Some(0x07),
            b'b' => Some(0x08),
            b'f' => Some(0x0c),
            b'v' => Some(0x0b),
            b'\\' | b'\'' | b'"' | b'?' => Some(c),
            _ => None,
        };
        if let Some(b) = simple {
            out.push(b);
            return Ok(());
        }
        match c {
            b'0'..=b'7' => {
                let mut v = u32::from(c - b'0');
                for _ in 0..2 {
                    match self.peek_byte()? {
                        Some(d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            self.bump()?;
                        }
                        _ => break,
                    }
                }
                let b = u8::try_from(v).map_err(|_| {
                    self.err(
                        at,
                        format!("octal escape \\{v:o} is above \\377 (one byte)"),
                    )
                })?;
                out.push(b);
            }
            b'x' | b'X' => {
                let (v, n) = self.hex_digits(2)?;
                if n == 0 {
                    return Err(self.err(at, "bad escape: \\x needs one or two hex digits"));
                }
                out.push(v as u8);
            }
            b'u' | b'U' => {
                let want = if c == b'u' { 4 } else { 8 };
                let (v, n) = self.hex_digits(want)?;
                if n != want {
                    return Err(self.err(
                        at,
                        format!("bad escape: \\{} needs {want} hex digits", c as char),
                    ));
                }
                let ch = char::from_u32(v).ok_or_else(|| {
                    self.err(
                        at,
                        format!("bad escape: U+{v:04X} is not a Unicode scalar value"),
                    )
                })?;
                let mut buf = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
            }
            c => {
                let shown = show_byte(c, "\\", "", "\\ followed by ");
                return Err(self.err(at, format!("bad escape {shown}")));
            }
        }
        Ok(())
    }

    fn next_tok(&mut self) -> Res<(Tok, Position)> {
        match self.peeked.take() {
            Some(t) => Ok(t),
            None => self.lex(),
        }
    }

    fn peek_tok(&mut self) -> Res<&Tok> {
        if self.peeked.is_none() {
            self.peeked = Some(self.lex()?);
        }
        Ok(&self.peeked.as_ref().expect("just filled").0)
    }

    /// The value of a `bytes` field after its name: `:` and one or more adjacent strings.
    fn bytes_field(&mut self, name: &str) -> Res<Vec<u8>> {
        let (t, p) = self.next_tok()?;
        if t != Tok::Punct(b':') {
            return Err(self.err(
                p,
                format!("expected ':' after `{name}`, found {}", t.describe()),
            ));
        }
        let (t, p) = self.next_tok()?;
        let Tok::Str(mut s) = t else {
            return Err(self.err(
                p,
                format!(
                    "expected a quoted string for `{name}`, found {}",
                    t.describe()
                ),
            ));
        };
        while matches!(self.peek_tok()?, Tok::Str(_)) {
            let (Tok::Str(more), p) = self.next_tok()? else {
                unreachable!("peeked a string")
            };
            s.extend_from_slice(&more);
            if s.len() > MAX_FIELD_LEN {
                return Err(self.err(p, format!("`{name}` longer than {MAX_FIELD_LEN} bytes")));
            }
        }
        Ok(s)
    }

    /// A row's fields up to the closing `close`, the opening bracket having been read at `open`.
    fn row_body(&mut self, open: Position, close: u8) -> Res<Row> {
        let mut keyword: Option<Vec<u8>> = None;
        let mut value: Option<Vec<u8>> = None;
        loop {
            let (t, p) = self.next_tok()?;
            match t {
                Tok::Punct(c) if c == close => break,
                Tok::Punct(b',' | b';') => {}
                Tok::Ident(name) if name == "keyword" || name == "value" => {
                    let slot = if name == "keyword" {
                        &mut keyword
                    } else {
                        &mut value
                    };
                    if slot.is_some() {
                        return Err(self.err(p, format!("`{name}` given twice in one row")));
                    }
                    let v = self.bytes_field(&name)?;
                    if name == "keyword" {
                        keyword = Some(v);
                    } else {
                        value = Some(v);
                    }
                }
                Tok::Ident(name) => {
                    return Err(self.err(
                        p,
                        format!(
                            "unknown field `{name}` in a row (a KeywordDatabaseRow has only \
                             `keyword` and `value`)"
                        ),
                    ));
                }
                Tok::Eof => {
                    return Err(self.err(
                        open,
                        format!(
                            "unbalanced braces: the row opened here is not closed with '{}' \
                             before the end of the file",
                            close as char
                        ),
                    ));
                }
                t => {
                    return Err(self.err(
                        p,
                        format!(
                            "expected `keyword`, `value` or '{}', found {}",
                            close as char,
                            t.describe()
                        ),
                    ));
                }
            }
        }
        let keyword = match keyword {
            Some(k) => k,
            None if self.keyword_optional => Vec::new(),
            None => return Err(self.err(open, "row without a `keyword`")),
        };
        Ok(Row {
            keyword,
            value: value.unwrap_or_default(),
            position: open,
        })
    }

    fn closing(open: u8) -> u8 {
        if open == b'<' { b'>' } else { b'}' }
    }

    fn step(&mut self) -> Res<Option<Row>> {
        loop {
            match self.state {
                State::Done => return Ok(None),
                State::List { need_sep } => {
                    let (t, p) = self.next_tok()?;
                    match t {
                        Tok::Punct(b']') => self.state = State::Top,
                        Tok::Punct(b',') if need_sep => {
                            self.state = State::List { need_sep: false }
                        }
                        Tok::Punct(c @ (b'{' | b'<')) if !need_sep => {
                            let row = self.row_body(p, Self::closing(c))?;
                            self.state = State::List { need_sep: true };
                            return Ok(Some(row));
                        }
                        Tok::Eof => {
                            return Err(
                                self.err(p, "unbalanced brackets: the file ends inside `rows: [`")
                            );
                        }
                        t => {
                            let want = if need_sep { "',' or ']'" } else { "'{' or ']'" };
                            return Err(self.err(
                                p,
                                format!(
                                    "expected {want} in the `rows` list, found {}",
                                    t.describe()
                                ),
                            ));
                        }
                    }
                }
                State::Top => {
                    let (t, p) = self.next_tok()?;
                    match t {
                        Tok::Eof => {
                            self.state = State::Done;
                            return Ok(None);
                        }
                        Tok::Punct(b',' | b';') => {}
                        Tok::Ident(name) if name == "rows" => {
                            let (mut t, mut p) = self.next_tok()?;
                            if t == Tok::Punct(b':') {
                                (t, p) = self.next_tok()?;
                            }
                            match t {
                                Tok::Punct(c @ (b'{' | b'<')) => {
                                    return self.row_body(p, Self::closing(c)).map(Some);
                                }
                                Tok::Punct(b'[') => {
                                    self.state = State::List { need_sep: false };
                                }
                                t => {
                                    return Err(self.err(
                                        p,
                                        format!(
                                            "expected '{{' or ': [' after `rows`, found {}",
                                            t.describe()
                                        ),
                                    ));
                                }
                            }
                        }
                        Tok::Ident(name) => {
                            return Err(self.err(
                                p,
                                format!(
                                    "unknown field `{name}` (a KeywordDatabase has only `rows`)"
                                ),
                            ));
                        }
                        Tok::Punct(c @ (b'}' | b'>' | b']')) => {
                            return Err(self.err(
                                p,
                                format!("unbalanced braces: '{}' closes nothing", c as char),
                            ));
                        }
                        t => {
                            return Err(
                                self.err(p, format!("expected `rows`, found {}", t.describe()))
                            );
                        }
                    }
                }
            }
        }
    }
}

impl<R: Read> Iterator for TextReader<R> {
    type Item = Result<Row, Error>;

    /// The next row; after an error, `None`.
    fn next(&mut self) -> Option<Self::Item> {
        match self.step() {
            Ok(r) => r.map(Ok),
            Err(e) => {
                self.state = State::Done;
                Some(Err(e))
            }
        }
    }
}

/// Byte `c` for an error message: `{open}c{close}` when it is a printable ASCII character, else
/// `{lead}byte 0x..`.
fn show_byte(c: u8, open: &str, close: &str, lead: &str) -> String {
    if c.is_ascii_graphic() {
        format!("{open}{}{close}", c as char)
    } else {
        format!("{lead}byte 0x{c:02x}")
    }
}
