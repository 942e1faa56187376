//! Crash-safe file writes, shared by the outbox and the quarantine.
//!
//! Every file this crate writes goes through [`write_atomic`]: the bytes go to a temporary file
//! in the destination directory (so the final rename never crosses a file system), the file is
//! fsynced, renamed onto its final name, and the directory is fsynced so the rename itself is
//! durable. A reader therefore sees either no file or the complete file, never a prefix; a crash
//! can at worst leave a hidden `.mugai-tmp-*` file behind, never a truncated file under a real
//! name.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Prefix of temporary files; readers ignore names that start with it.
pub const TEMP_PREFIX: &str = ".mugai-tmp-";

/// What to do when the final name already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Replace it atomically (the caller asked for exactly this path).
    Replace,
    /// Fail with [`io::ErrorKind::AlreadyExists`] and leave it untouched.
    Keep,
}

/// Who may read the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Owner only (0600): quarantined originals and their reports.
    Private,
    /// What the user's umask allows (0666 & !umask): outputs meant for people.
    Umask,
    /// What the umask allows and never more than these permission bits (0666 & bits & !umask):
    /// an output gets no wider permissions than the input it was made from.
    AtMost(u32),
}

/// Writes `bytes` to `dir/name` atomically and durably (see the module docs).
///
/// With [`Existing::Keep`] an existing file is never replaced, even by a concurrent writer:
/// the final step is a no-clobber link, not a rename.
pub fn write_atomic(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    existing: Existing,
    access: Access,
) -> io::Result<PathBuf> {
    check_name(name)?;
    let mut builder = tempfile::Builder::new();
    builder.prefix(TEMP_PREFIX);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        match access {
            Access::Umask => {
                builder.permissions(std::fs::Permissions::from_mode(0o666));
            }
            Access::AtMost(bits) => {
                builder.permissions(std::fs::Permissions::from_mode(0o666 & bits));
            }
            Access::Private => {}
        }
    }
    #[cfg(not(unix))]
    let _ = access;
    let mut tmp = builder.tempfile_in(dir)?;
    tmp.as_file_mut().write_all(bytes)?;
    tmp.as_file_mut().sync_all()?;
    let target = dir.join(name);
    let persisted = match existing {
        Existing::Replace => tmp.persist(&target),
        Existing::Keep => tmp.persist_noclobber(&target),
    };
    // On error the temporary file is dropped (and deleted) with the PersistError.
    persisted.map_err(|e| e.error)?;
    sync_dir(dir)?;
    Ok(target)
}

/// Refuses a `name` that is not one plain component of `dir`: empty, `.` or `..`, containing
/// `/` or `\\` (so no absolute path either), or any control character (C0, DEL, C1). Every write
/// checks this, whoever chose the name: a name that reaches here from a worker process or an
/// archive must never leave the directory (defence in depth; callers derive names themselves).
pub fn check_name(name: &str) -> io::Result<()> {
    let bad = name.is_empty()
        || name == "."
        || name == ".."
        || name.contains(['/', '\\'])
        || name.chars().any(char::is_control);
    if bad {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "refusing to write a file named {:?}",
                name.escape_debug().to_string()
            ),
        ));
    }
    Ok(())
}

/// Fsyncs a directory so that entries created or renamed in it survive a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Whether an I/O error is transient (worth retrying later: disk full, quota, interrupted)
/// rather than permanent (permission denied, not a directory, ...).
pub fn is_transient(e: &io::Error) -> bool {
    use io::ErrorKind as K;
    matches!(
        e.kind(),
        K::StorageFull
            | K::QuotaExceeded
            | K::Interrupted
            | K::WouldBlock
            | K::TimedOut
            | K::ResourceBusy
            | K::OutOfMemory
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn writes_complete_file_and_leaves_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let p = write_atomic(d.path(), "a.txt", b"hello", Existing::Keep, Access::Umask).unwrap();
        assert_eq!(std::fs::read(p).unwrap(), b"hello");
        assert_eq!(names(d.path()), vec!["a.txt"]);
    }

    #[test]
    fn keep_never_overwrites() {
        let d = tempfile::tempdir().unwrap();
        write_atomic(d.path(), "a.txt", b"first", Existing::Keep, Access::Umask).unwrap();
        let err =
            write_atomic(d.path(), "a.txt", b"second", Existing::Keep, Access::Umask).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(d.path().join("a.txt")).unwrap(), b"first");
        assert_eq!(names(d.path()), vec!["a.txt"], "no temp file left behind");
    }

    #[test]
    fn replace_replaces() {
        let d = tempfile::tempdir().unwrap();
        write_atomic(
            d.path(),
            "a.txt",
            b"first",
            Existing::Replace,
            Access::Umask,
        )
        .unwrap();
        write_atomic(
            d.path(),
            "a.txt",
            b"second",
            Existing::Replace,
            Access::Umask,
        )
        .unwrap();
        assert_eq!(std::fs::read(d.path().join("a.txt")).unwrap(), b"second");
    }

    #[test]
    fn failure_leaves_nothing_visible() {
        let d = tempfile::tempdir().unwrap();
        let missing = d.path().join("no-such-dir");
        assert!(write_atomic(&missing, "a.txt", b"x", Existing::Keep, Access::Umask).is_err());
        assert!(names(d.path()).is_empty());
    }

    #[cfg(unix)]
    #[test]
    fn private_files_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = write_atomic(d.path(), "q", b"x", Existing::Keep, Access::Private).unwrap();
        assert_eq!(p.metadata().unwrap().permissions().mode() & 0o777, 0o600);

        // Outputs get the same mode as any file the user creates (0666 & !umask).
        let p = write_atomic(d.path(), "o", b"x", Existing::Keep, Access::Umask).unwrap();
        std::fs::write(d.path().join("plain"), b"x").unwrap();
        let mode = |p: &Path| p.metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&p), mode(&d.path().join("plain")));
    }

    #[test]
    fn names_that_leave_the_directory_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let sub = d.path().join("out");
        std::fs::create_dir(&sub).unwrap();
        let abs = d.path().join("abs.txt");
        for name in [
            "../x",
            "..",
            ".",
            "",
            "a/b",
            "a\\b",
            abs.to_str().unwrap(),
            "a\nReason: forged",
            "a\u{1b}[31m",
            "a\u{7f}",
            "a\u{9b}",
            "a\0b",
        ] {
            for existing in [Existing::Keep, Existing::Replace] {
                let err = write_atomic(&sub, name, b"x", existing, Access::Umask).unwrap_err();
                assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{name:?}");
            }
        }
        assert!(names(&sub).is_empty());
        assert_eq!(names(d.path()), vec!["out"]);
        // Ordinary names, dots inside included, still work.
        assert!(write_atomic(&sub, "a..b 見積書.txt", b"x", Existing::Keep, Access::Umask).is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn outputs_are_never_wider_than_their_input() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let mode = |p: &Path| p.metadata().unwrap().permissions().mode() & 0o777;
        let p = write_atomic(d.path(), "a", b"x", Existing::Keep, Access::AtMost(0o600)).unwrap();
        assert_eq!(mode(&p), 0o600);
        let p = write_atomic(d.path(), "b", b"x", Existing::Keep, Access::AtMost(0o4755)).unwrap();
        assert_eq!(mode(&p) & 0o7111, 0, "no execute or setuid bits");
        let p = write_atomic(d.path(), "c", b"x", Existing::Replace, Access::AtMost(0)).unwrap();
        assert_eq!(mode(&p), 0);
    }

    #[test]
    fn transient_kinds() {
        assert!(is_transient(&io::Error::from(io::ErrorKind::StorageFull)));
        assert!(!is_transient(&io::Error::from(
            io::ErrorKind::PermissionDenied
        )));
    }
}
