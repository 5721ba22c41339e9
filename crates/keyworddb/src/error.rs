//! Errors with the position they were found at.

/// Where in a file something was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// The file as a whole (opening or reading it).
    File,
    /// A text-format position: 1-based line and column (column counted in bytes).
    Text {
        /// Line, from 1.
        line: u64,
        /// Column, from 1.
        col: u64,
    },
    /// A binary-format position: byte offset from the start of the file.
    Binary {
        /// Offset in bytes, from 0.
        offset: u64,
    },
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Position::File => Ok(()),
            Position::Text { line, col } => write!(f, "{line}:{col}"),
            Position::Binary { offset } => write!(f, "byte {offset}"),
        }
    }
}

/// A malformed or unreadable keyword database.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}{}: {reason}", file, if matches!(position, Position::File) { "" } else { ":" }, position)]
pub struct Error {
    /// The file as named by the caller.
    pub file: String,
    /// Where the problem is.
    pub position: Position,
    /// What is wrong, for a person.
    pub reason: String,
}
