//! The database-encryption key file, in Apple's format (`PIRProcessDatabase`
//! `outputDatabaseEncryptionKeyFilePath`, pir-service-example `databaseEncryptionKeyFilePath`):
//! the 48-byte OPRF private key as lowercase hex, 96 characters, no newline. Reading accepts
//! surrounding whitespace (a trailing newline added by an editor).

use std::path::Path;

use crate::{OprfError, OprfPrivateKey};

fn io(path: &Path, source: std::io::Error) -> OprfError {
    OprfError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Reads and validates a key file.
pub fn read_key_file(path: &Path) -> Result<OprfPrivateKey, OprfError> {
    let text = std::fs::read_to_string(path).map_err(|e| io(path, e))?;
    OprfPrivateKey::from_hex(&text).map_err(|e| match e {
        OprfError::InvalidKey(m) => OprfError::InvalidKey(format!("{}: {m}", path.display())),
        other => other,
    })
}

/// Writes `key` to `path` atomically (a temporary file in the same directory, readable only by
/// the owner on Unix, then renamed over `path`).
pub fn write_key_file(path: &Path, key: &OprfPrivateKey) -> Result<(), OprfError> {
    sift_fsutil::write_private(path, key.to_hex().as_bytes()).map_err(|e| io(path, e))
}
