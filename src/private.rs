//! Folders and files only their owner can read: the index and the
//! thumbnail cache hold a bucket's keys, labels and pictures, and operators
//! run imgtag on shared hosts. The modes are set at creation, whatever the
//! umask (which can only take bits away from 0700/0600).

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

/// Creates `dir` and any missing parents as 0700. Existing folders are
/// left as they are (they may be the user's own `~/.cache`).
pub fn create_dir(dir: &Path) -> io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
}

/// Creates `path` as 0600 if it does not exist; an existing file is left
/// as it is. Returns whether it was created.
pub fn create_file(path: &Path) -> io::Result<bool> {
    match new_file(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// Creates a new file (failing if it exists) as 0600, for writing.
pub fn new_file(path: &Path) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)
}

/// Takes group and other permissions off a file or folder an older
/// version created readable by all. Best effort: a file that is not ours
/// to change is left as it is.
pub fn restrict(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 && !meta.file_type().is_symlink() {
                let _ =
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700));
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn created_folders_and_files_are_the_owners_only() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        create_dir(&dir).unwrap();
        assert_eq!(mode(&tmp.path().join("a")), 0o700);
        assert_eq!(mode(&dir), 0o700);
        let f = dir.join("f");
        assert!(create_file(&f).unwrap());
        assert!(!create_file(&f).unwrap(), "an existing file is kept");
        assert_eq!(mode(&f), 0o600);
        let old = dir.join("old");
        std::fs::write(&old, "x").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
        restrict(&old);
        assert_eq!(mode(&old), 0o600);
    }
}
