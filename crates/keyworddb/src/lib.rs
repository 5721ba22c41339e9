//! Streaming readers for Apple's `KeywordDatabase` (swift-homomorphic-encryption-protobuf,
//! `apple.swift_homomorphic_encryption.pir.v1`):
//!
//! ```text
//! message KeywordDatabaseRow { bytes keyword = 1; bytes value = 2; }
//! message KeywordDatabase { repeated KeywordDatabaseRow rows = 1; }
//! ```
//!
//! Both the protobuf text format ([`TextReader`]) and the binary wire format
//! ([`BinaryReader`]) are read row by row from any [`std::io::Read`], so a file with a hundred
//! million rows never has to fit in memory. Rows come out exactly as stored: keyword and value
//! bytes are never normalised. Every error names the position (line and column, or byte
//! offset) and the reason.
#![forbid(unsafe_code)]

mod binary;
mod error;
mod text;

pub use binary::{BinaryReader, encode as encode_binary};
pub use error::{Error, Position};
pub use text::TextReader;

use std::path::Path;

/// Longest keyword or value a reader accepts (bytes); longer fields are an error rather than
/// an allocation of whatever size a corrupt file claims. Apple's own limit on a stored value
/// (the 16-bit length of a hash-bucket entry) is smaller and is checked by the caller.
pub const MAX_FIELD_LEN: usize = 1 << 20;

/// One row of a keyword database, with where it started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The keyword bytes, exactly as stored.
    pub keyword: Vec<u8>,
    /// The value bytes, exactly as stored (empty when the row has no `value`).
    pub value: Vec<u8>,
    /// Where the row starts in its file.
    pub position: Position,
}

/// The two encodings of a `KeywordDatabase` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Protobuf text format (`.txtpb`, `.textproto`, `.pbtxt`).
    Text,
    /// Protobuf binary wire format (`.binpb`, `.pb`).
    Binary,
}

impl Encoding {
    /// The encoding a file name's extension stands for, or `None` when it names neither.
    pub fn from_path(path: &Path) -> Option<Encoding> {
        match path.extension()?.to_str()? {
            "txtpb" | "textproto" | "pbtxt" | "textpb" => Some(Encoding::Text),
            "binpb" | "pb" => Some(Encoding::Binary),
            _ => None,
        }
    }
}

/// A row iterator over either encoding.
pub enum Reader<R: std::io::Read> {
    /// Text format.
    Text(TextReader<R>),
    /// Binary format.
    Binary(BinaryReader<R>),
}

impl<R: std::io::Read> Reader<R> {
    /// A reader of `encoding` over `inner`; `file` names the source in error messages.
    pub fn new(encoding: Encoding, file: &str, inner: R) -> Self {
        match encoding {
            Encoding::Text => Reader::Text(TextReader::new(file, inner)),
            Encoding::Binary => Reader::Binary(BinaryReader::new(file, inner)),
        }
    }
}

impl<R: std::io::Read> Iterator for Reader<R> {
    type Item = Result<Row, Error>;
    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Reader::Text(r) => r.next(),
            Reader::Binary(r) => r.next(),
        }
    }
}

/// Opens `path` as a keyword database in the encoding its extension names.
pub fn open(path: &Path) -> Result<Reader<std::fs::File>, Error> {
    let file = path.display().to_string();
    let encoding = Encoding::from_path(path).ok_or_else(|| Error {
        file: file.clone(),
        position: Position::File,
        reason: "not a keyword database: expected a .txtpb or .binpb file name".into(),
    })?;
    let f = std::fs::File::open(path).map_err(|e| Error {
        file: file.clone(),
        position: Position::File,
        reason: format!("cannot open: {e}"),
    })?;
    Ok(Reader::new(encoding, &file, f))
}
