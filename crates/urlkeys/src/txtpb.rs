//! A small tolerant parser for Apple's text-format `KeywordDatabase`
//! (`rows { keyword: "..." value: "1" }`), fed line by line so files of any size stream.
//!
//! Only `rows` messages and their `keyword` / `value` string fields are interpreted; other
//! scalar fields are skipped. Strings follow protobuf text format: `"` or `'` quoted,
//! escapes `\n \t \r \\ \" \' \a \b \f \v \?`, octal `\NNN`, hex `\xHH`, `\uXXXX`, `\UXXXXXXXX`;
//! adjacent strings concatenate.

/// Streaming parser state; feed lines with [`TxtpbParser::feed_line`].
#[derive(Debug, Default)]
pub struct TxtpbParser {
    depth: u32,
    in_rows: bool,
    pending_field: Option<String>,
    expect_value: bool,
    keyword: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
}

/// One completed `rows` entry or a problem found while parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxtpbEvent {
    /// A row's keyword (UTF-8 checked by the caller) and its value bytes if present.
    Row(Vec<u8>, Option<Vec<u8>>),
    /// A syntax or content problem on this line.
    Error(String),
}

impl TxtpbParser {
    /// A parser at the top level.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses one line; returns the rows completed and errors found on it.
    pub fn feed_line(&mut self, line: &str) -> Vec<TxtpbEvent> {
        let mut ev = Vec::new();
        let b = line.as_bytes();
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            match c {
                b' ' | b'\t' | b'\r' | b',' | b';' => i += 1,
                b'#' => break,
                b':' => {
                    self.expect_value = true;
                    i += 1
                }
                b'{' | b'<' => {
                    self.depth += 1;
                    if self.depth == 1 && self.pending_field.as_deref() == Some("rows") {
                        self.in_rows = true;
                        self.keyword = None;
                        self.value = None;
                    }
                    self.pending_field = None;
                    self.expect_value = false;
                    i += 1
                }
                b'}' | b'>' => {
                    if self.depth == 0 {
                        ev.push(TxtpbEvent::Error("unbalanced '}'".into()));
                    } else {
                        self.depth -= 1;
                        if self.depth == 0 && self.in_rows {
                            self.in_rows = false;
                            match self.keyword.take() {
                                Some(k) => ev.push(TxtpbEvent::Row(k, self.value.take())),
                                None => {
                                    ev.push(TxtpbEvent::Error("rows entry without keyword".into()))
                                }
                            }
                        }
                    }
                    self.pending_field = None;
                    i += 1
                }
                b'"' | b'\'' => match parse_string(b, i) {
                    Ok((bytes, next)) => {
                        self.store(bytes);
                        i = next
                    }
                    Err(e) => {
                        ev.push(TxtpbEvent::Error(e));
                        break;
                    }
                },
                _ if c.is_ascii_alphanumeric()
                    || c == b'_'
                    || c == b'-'
                    || c == b'.'
                    || c == b'+' =>
                {
                    let s = i;
                    while i < b.len()
                        && (b[i].is_ascii_alphanumeric() || b"_-.+[]/".contains(&b[i]))
                    {
                        i += 1
                    }
                    let word = &line[s..i];
                    if self.expect_value {
                        // A bare scalar (number, enum, bool): not interesting, consume it.
                        self.expect_value = false;
                        self.pending_field = None;
                    } else {
                        self.pending_field = Some(word.to_string());
                    }
                }
                _ => {
                    ev.push(TxtpbEvent::Error(format!(
                        "unexpected character {:?}",
                        c as char
                    )));
                    break;
                }
            }
        }
        ev
    }

    fn store(&mut self, bytes: Vec<u8>) {
        if self.in_rows && self.depth == 1 {
            let slot = match self.pending_field.as_deref() {
                Some("keyword") => Some(&mut self.keyword),
                Some("value") => Some(&mut self.value),
                _ => None,
            };
            if let Some(slot) = slot {
                // Adjacent string literals concatenate.
                slot.get_or_insert_with(Vec::new).extend(bytes);
            }
        }
        self.expect_value = false;
    }

    /// Call at end of input: reports an unterminated message.
    pub fn finish(&self) -> Option<String> {
        (self.depth != 0).then(|| "unterminated message at end of file".to_string())
    }
}

/// Parses a quoted string starting at `b[start]`; returns the bytes and the index after it.
fn parse_string(b: &[u8], start: usize) -> Result<(Vec<u8>, usize), String> {
    let q = b[start];
    let mut out = Vec::new();
    let mut i = start + 1;
    while i < b.len() {
        let c = b[i];
        if c == q {
            return Ok((out, i + 1));
        }
        if c != b'\\' {
            out.push(c);
            i += 1;
            continue;
        }
        let e = *b.get(i + 1).ok_or("dangling backslash")?;
        i += 2;
        match e {
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'a' => out.push(7),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'v' => out.push(11),
            b'\\' | b'\'' | b'"' | b'?' => out.push(e),
            b'0'..=b'7' => {
                let mut v = u32::from(e - b'0');
                for _ in 0..2 {
                    match b.get(i) {
                        Some(d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1
                        }
                        _ => break,
                    }
                }
                out.push(u8::try_from(v).map_err(|_| "octal escape out of range")?);
            }
            b'x' | b'X' => {
                let s = i;
                while i < b.len() && i - s < 2 && b[i].is_ascii_hexdigit() {
                    i += 1
                }
                let h = std::str::from_utf8(&b[s..i]).map_err(|_| "bad hex escape")?;
                out.push(u8::from_str_radix(h, 16).map_err(|_| "bad hex escape")?);
            }
            b'u' | b'U' => {
                let n = if e == b'u' { 4 } else { 8 };
                let h = b.get(i..i + n).ok_or("short unicode escape")?;
                let h = std::str::from_utf8(h).map_err(|_| "bad unicode escape")?;
                let cp = u32::from_str_radix(h, 16).map_err(|_| "bad unicode escape")?;
                let ch = char::from_u32(cp).ok_or("unicode escape is not a scalar value")?;
                let mut buf = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                i += n;
            }
            other => return Err(format!("unknown escape \\{}", other as char)),
        }
    }
    Err("unterminated string".into())
}

/// Parses a whole text-format `KeywordDatabase` held in memory (for tests and small files):
/// the keywords in order, or the first error with its 1-based line.
pub fn parse_txtpb(text: &str) -> Result<Vec<Vec<u8>>, (usize, String)> {
    let mut p = TxtpbParser::new();
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        for e in p.feed_line(line) {
            match e {
                TxtpbEvent::Row(k, _) => out.push(k),
                TxtpbEvent::Error(m) => return Err((n + 1, m)),
            }
        }
    }
    match p.finish() {
        Some(m) => Err((text.lines().count(), m)),
        None => Ok(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_and_escapes() {
        let t = "# comment\nrows { keyword: \"example.com\" value: \"1\" }\nrows {\n  keyword: 'a\\x41\\101\\u00e9\\\"' \"tail\"\n  value: \"\\001\"\n  other: 7\n}\nrows <keyword: \"b.com\">\n";
        let k = parse_txtpb(t).unwrap();
        assert_eq!(
            k,
            vec![
                b"example.com".to_vec(),
                "aAAé\"tail".as_bytes().to_vec(),
                b"b.com".to_vec()
            ]
        );
    }

    #[test]
    fn errors() {
        assert_eq!(
            parse_txtpb("rows { keyword: \"abc").unwrap_err().1,
            "unterminated string"
        );
        assert!(
            parse_txtpb("rows { value: \"1\" }")
                .unwrap_err()
                .1
                .contains("without keyword")
        );
        assert!(
            parse_txtpb("rows { keyword: \"a\"")
                .unwrap_err()
                .1
                .contains("unterminated message")
        );
        assert!(
            parse_txtpb("rows { keyword: \"\\q\" }")
                .unwrap_err()
                .1
                .contains("unknown escape")
        );
    }
}
