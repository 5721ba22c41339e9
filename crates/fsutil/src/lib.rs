//! Atomic, durable file writes: the one `write_atomic` of the workspace (key files, ACME
//! state, dataset records). A temporary file in the target's directory is written, synced and
//! renamed over the target, then the directory is synced, so a reader or a crash sees the old
//! file or the new one, never a mix.

use std::fs;
use std::io::{self, Write as _};
use std::path::Path;

/// Writes `bytes` to `path` atomically, readable by everyone (mode 0644 before the umask on
/// Unix). Creates missing parent directories.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_with_mode(path, bytes, 0o644)
}

/// Writes `bytes` to `path` atomically, readable by the owner only (mode 0600 on Unix, also
/// while it is being written). Creates missing parent directories. For secrets.
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_with_mode(path, bytes, 0o600)
}

/// Writes `bytes` to a new file at `path` and syncs it, without a temporary file or a
/// directory sync: not atomic on its own. For files inside a staging folder that is synced
/// and published as a whole afterwards (a dataset version), where a crash discards the folder.
pub fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn write_with_mode(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other(format!("{} has no file name", path.display())))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let result = (|| {
        let mut f = options.open(&tmp)?;
        #[cfg(unix)]
        {
            // `mode` only applies on creation; a leftover temporary file must be tightened too.
            use std::os::unix::fs::PermissionsExt as _;
            f.set_permissions(fs::Permissions::from_mode(mode))?;
        }
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        // Makes the rename itself survive a crash; not every platform can open a directory.
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh temporary directory and the path `name` inside it.
    fn temp_path(name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        (dir, path)
    }

    #[test]
    fn replaces_the_file_and_leaves_no_temporary_file() {
        let (_dir, path) = temp_path("sub/out.txt");
        write_atomic(&path, b"old").unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["out.txt"]);
    }

    #[cfg(unix)]
    #[test]
    fn private_files_are_owner_only_even_over_a_leftover_temporary_file() {
        use std::os::unix::fs::PermissionsExt as _;
        let (dir, path) = temp_path("key");
        let leftover = dir.path().join(format!(".key.tmp{}", std::process::id()));
        fs::write(&leftover, b"stale").unwrap();
        fs::set_permissions(&leftover, fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&path, b"secret").unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(fs::read(&path).unwrap(), b"secret");
        assert!(!leftover.exists());
    }

    #[test]
    fn a_synced_write_creates_a_new_file_only() {
        let (_dir, path) = temp_path("f");
        write_synced(&path, b"one").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"one");
        assert!(
            write_synced(&path, b"two").is_err(),
            "never over an existing file"
        );
        assert_eq!(fs::read(&path).unwrap(), b"one");
    }

    #[test]
    fn a_path_without_a_file_name_is_an_error() {
        assert!(write_atomic(Path::new("/"), b"x").is_err());
    }
}
