//! `KeywordDatabase` in the protobuf binary wire format, read one `rows` entry at a time.
//!
//! The file is a sequence of top-level fields; each `rows` (field 1, length-delimited) holds a
//! `KeywordDatabaseRow` with `keyword` (1) and `value` (2), both length-delimited. As in any
//! protobuf decoder, unknown fields are skipped and a repeated scalar field keeps its last
//! occurrence. A length that runs past the end of the file is a truncation error naming the
//! byte offset.

use std::io::{BufReader, Read};

use crate::{Error, MAX_FIELD_LEN, Position, Row};

/// Largest `rows` entry read into memory: two fields at the limit plus their tags and lengths.
const MAX_ROW_LEN: u64 = 2 * MAX_FIELD_LEN as u64 + 32;

/// Streams the rows of a binary `KeywordDatabase`.
pub struct BinaryReader<R: Read> {
    inner: BufReader<R>,
    file: String,
    offset: u64,
    done: bool,
}

type Res<T> = Result<T, Error>;

/// Wire types of the protobuf encoding.
const VARINT: u64 = 0;
const I64: u64 = 1;
const LEN: u64 = 2;
const I32: u64 = 5;

impl<R: Read> BinaryReader<R> {
    /// A reader over `inner`; `file` names it in error messages.
    pub fn new(file: &str, inner: R) -> Self {
        BinaryReader {
            inner: BufReader::with_capacity(64 * 1024, inner),
            file: file.to_string(),
            offset: 0,
            done: false,
        }
    }

    fn err(&self, offset: u64, reason: impl Into<String>) -> Error {
        Error {
            file: self.file.clone(),
            position: Position::Binary { offset },
            reason: reason.into(),
        }
    }

    /// One byte, or `None` at the end of the file.
    fn byte(&mut self) -> Res<Option<u8>> {
        let mut b = [0u8; 1];
        loop {
            match self.inner.read(&mut b) {
                Ok(0) => return Ok(None),
                Ok(_) => {
                    self.offset += 1;
                    return Ok(Some(b[0]));
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.err(self.offset, format!("read error: {e}"))),
            }
        }
    }

    /// A varint; `None` only when the file ends cleanly before its first byte.
    fn varint(&mut self, what: &str) -> Res<Option<u64>> {
        let start = self.offset;
        let mut v = 0u64;
        for i in 0..10 {
            let Some(b) = self.byte()? else {
                if i == 0 {
                    return Ok(None);
                }
                return Err(self.err(start, format!("truncated {what}: the file ends inside it")));
            };
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(Some(v));
            }
        }
        Err(self.err(
            start,
            format!("malformed {what}: varint longer than 10 bytes"),
        ))
    }

    fn read_exact(&mut self, buf: &mut [u8], start: u64, what: &str) -> Res<()> {
        let mut got = 0;
        while got < buf.len() {
            match self.inner.read(&mut buf[got..]) {
                Ok(0) => {
                    return Err(self.err(
                        start,
                        format!(
                            "truncated {what}: needs {} bytes, the file ends after {got}",
                            buf.len()
                        ),
                    ));
                }
                Ok(n) => {
                    got += n;
                    self.offset += n as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.err(self.offset, format!("read error: {e}"))),
            }
        }
        Ok(())
    }

    /// Skips an unknown top-level field's payload.
    fn skip(&mut self, wire: u64, at: u64) -> Res<()> {
        let n = match wire {
            VARINT => {
                self.varint("unknown field")?
                    .ok_or_else(|| self.err(at, "truncated unknown field"))?;
                return Ok(());
            }
            I64 => 8,
            I32 => 4,
            LEN => self
                .varint("field length")?
                .ok_or_else(|| self.err(at, "truncated field length"))?,
            w => return Err(self.err(at, format!("unsupported wire type {w}"))),
        };
        let copied = std::io::copy(&mut self.inner.by_ref().take(n), &mut std::io::sink())
            .map_err(|e| self.err(at, format!("read error: {e}")))?;
        self.offset += copied;
        if copied < n {
            return Err(self.err(
                at,
                format!("truncated field: needs {n} bytes, the file ends after {copied}"),
            ));
        }
        Ok(())
    }

    fn step(&mut self) -> Res<Option<Row>> {
        loop {
            let at = self.offset;
            let Some(tag) = self.varint("field tag")? else {
                return Ok(None);
            };
            let (field, wire) = (tag >> 3, tag & 7);
            if field == 0 {
                return Err(self.err(at, "malformed field tag 0 (not a KeywordDatabase?)"));
            }
            if field != 1 {
                self.skip(wire, at)?;
                continue;
            }
            if wire != LEN {
                return Err(self.err(at, format!("`rows` has wire type {wire}, expected 2")));
            }
            let len = self
                .varint("row length")?
                .ok_or_else(|| self.err(at, "truncated row: the file ends after its tag"))?;
            if len > MAX_ROW_LEN {
                return Err(self.err(
                    at,
                    format!("row of {len} bytes is larger than the {MAX_ROW_LEN}-byte limit"),
                ));
            }
            let body_at = self.offset;
            let mut body = vec![0u8; len as usize];
            self.read_exact(&mut body, at, "row")?;
            return decode_row(&body, body_at)
                .map(|(keyword, value)| {
                    Some(Row {
                        keyword,
                        value,
                        position: Position::Binary { offset: at },
                    })
                })
                .map_err(|(off, reason)| self.err(off, reason));
        }
    }
}

/// Decodes a `KeywordDatabaseRow` whose first byte is at file offset `base`.
fn decode_row(b: &[u8], base: u64) -> Result<(Vec<u8>, Vec<u8>), (u64, String)> {
    let mut i = 0usize;
    let mut keyword = None;
    let mut value = None;
    let varint = |i: &mut usize| -> Result<u64, (u64, String)> {
        let start = *i;
        let mut v = 0u64;
        for k in 0..10 {
            let Some(&byte) = b.get(*i) else {
                return Err((base + start as u64, "truncated varint inside a row".into()));
            };
            *i += 1;
            v |= u64::from(byte & 0x7f) << (7 * k);
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err((base + start as u64, "malformed varint inside a row".into()))
    };
    while i < b.len() {
        let at = i;
        let tag = varint(&mut i)?;
        let (field, wire) = (tag >> 3, tag & 7);
        let payload = match wire {
            VARINT => {
                varint(&mut i)?;
                None
            }
            I64 | I32 => {
                i += if wire == I64 { 8 } else { 4 };
                None
            }
            LEN => {
                let n = varint(&mut i)? as usize;
                let end = i.checked_add(n).filter(|&e| e <= b.len()).ok_or_else(|| {
                    (
                        base + at as u64,
                        format!("field {field} claims {n} bytes, more than its row holds"),
                    )
                })?;
                let s = &b[i..end];
                i = end;
                Some(s)
            }
            w => return Err((base + at as u64, format!("unsupported wire type {w}"))),
        };
        if i > b.len() {
            return Err((base + at as u64, format!("field {field} runs past its row")));
        }
        match (field, payload) {
            (1, Some(s)) => keyword = Some(s.to_vec()),
            (2, Some(s)) => value = Some(s.to_vec()),
            (1 | 2, None) => {
                return Err((
                    base + at as u64,
                    format!(
                        "`{}` has wire type {wire}, expected 2 (bytes)",
                        if field == 1 { "keyword" } else { "value" }
                    ),
                ));
            }
            _ => {}
        }
    }
    let keyword = keyword.ok_or_else(|| (base, "row without a `keyword`".to_string()))?;
    Ok((keyword, value.unwrap_or_default()))
}

impl<R: Read> Iterator for BinaryReader<R> {
    type Item = Result<Row, Error>;

    /// The next row; after an error, `None`.
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.step() {
            Ok(Some(r)) => Some(Ok(r)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Encodes rows as a binary `KeywordDatabase` (for tests and conversions).
pub fn encode(rows: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    let mut out = Vec::new();
    let mut row = Vec::new();
    for (k, v) in rows {
        row.clear();
        row.push(0x0a);
        varint(&mut row, k.len() as u64);
        row.extend_from_slice(k);
        row.push(0x12);
        varint(&mut row, v.len() as u64);
        row.extend_from_slice(v);
        out.push(0x0a);
        varint(&mut out, row.len() as u64);
        out.extend_from_slice(&row);
    }
    out
}
