//! The outbox: where sanitized outputs (and `NAME.blocked.txt` notes) are written.
//!
//! Naming rules (CONTRACT.md):
//! - the output takes the name derived from the input's name and the re-checked kind:
//!   normalised, with the extension changed when the type changed (`a.docm` → `a.docx`,
//!   `page.html` → `page.txt`, mail → `.eml`), `.txt` appended to text without a text extension
//!   (`query.iqy` → `query.iqy.txt`), Windows device names suffixed (`CON.txt` → `CON_.txt`);
//! - an existing file is never overwritten: on a collision a numeric suffix is added before the
//!   extension (`a.docx`, `a (2).docx`, `a (3).docx`, ...), decided atomically by the file
//!   system (no-clobber link), so two writers can never pick the same name;
//! - every write is atomic ([`crate::atomic`]): no half-written output under a real name;
//! - the name must be one plain component (the atomic writer refuses `/`, `\\`, `..`, control
//!   characters and empty names whoever chose them); for worker results the parent derives it
//!   itself (`pool::accept_file`), never from the worker's word.

use std::io;
use std::path::{Path, PathBuf};

use sanitizer_core::unicode::extension;

use crate::atomic::{Access, Existing, write_atomic};

/// How many suffixes are tried before giving up (a directory with that many `a (n).txt` files
/// is a misconfiguration, not something to loop over forever).
pub const MAX_SUFFIX: u32 = 10_000;

/// The name with collision suffix `n` (`n` = 1 is the name itself): `a.txt` → `a (2).txt`.
pub fn suffixed(name: &str, n: u32) -> String {
    if n <= 1 {
        return name.to_owned();
    }
    match extension(name).and_then(|e| name.len().checked_sub(e.len() + 1)) {
        Some(cut) => match (name.get(..cut), name.get(cut..)) {
            (Some(stem), Some(ext)) => format!("{stem} ({n}){ext}"),
            _ => format!("{name} ({n})"),
        },
        None => format!("{name} ({n})"),
    }
}

/// Writes `bytes` as `dir/name`, or under the first free suffixed name; never overwrites.
/// Returns the path written.
pub fn write_new(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<PathBuf> {
    write_new_with(dir, name, bytes, Access::Umask)
}

/// [`write_new`] with the given permissions (an output gets no wider ones than its input).
pub fn write_new_with(dir: &Path, name: &str, bytes: &[u8], access: Access) -> io::Result<PathBuf> {
    write_first_free(dir, name, bytes, access, |n| suffixed(name, n))
}

/// Writes the note for a blocked input named `input_name` as `dir/NAME.blocked.txt` (the
/// drop-directory convention), suffixing NAME on a collision (`a (2).exe.blocked.txt`), so the
/// note always ends in `.blocked.txt`. Never overwrites.
pub fn write_blocked_note(dir: &Path, input_name: &str, note: &str) -> io::Result<PathBuf> {
    write_first_free(dir, input_name, note.as_bytes(), Access::Umask, |n| {
        format!("{}.blocked.txt", suffixed(input_name, n))
    })
}

fn write_first_free(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    access: Access,
    candidate: impl Fn(u32) -> String,
) -> io::Result<PathBuf> {
    for n in 1..=MAX_SUFFIX {
        match write_atomic(dir, &candidate(n), bytes, Existing::Keep, access) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            other => return other,
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("{MAX_SUFFIX} files named like {name:?} already exist"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffix_goes_before_the_extension() {
        assert_eq!(suffixed("a.docx", 1), "a.docx");
        assert_eq!(suffixed("a.docx", 2), "a (2).docx");
        assert_eq!(suffixed("README", 3), "README (3)");
        assert_eq!(suffixed("見積書.txt", 2), "見積書 (2).txt");
        assert_eq!(suffixed("x.tar.gz", 2), "x.tar (2).gz");
    }

    #[test]
    fn collisions_get_suffixes_and_nothing_is_overwritten() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a.txt"), b"precious").unwrap();
        let p2 = write_new(d.path(), "a.txt", b"one").unwrap();
        let p3 = write_new(d.path(), "a.txt", b"two").unwrap();
        assert_eq!(p2.file_name().unwrap(), "a (2).txt");
        assert_eq!(p3.file_name().unwrap(), "a (3).txt");
        assert_eq!(std::fs::read(d.path().join("a.txt")).unwrap(), b"precious");
        assert_eq!(std::fs::read(p3).unwrap(), b"two");
    }

    #[test]
    fn blocked_notes_keep_their_suffix() {
        let d = tempfile::tempdir().unwrap();
        let a = write_blocked_note(d.path(), "x.exe", "one").unwrap();
        let b = write_blocked_note(d.path(), "x.exe", "two").unwrap();
        assert_eq!(a.file_name().unwrap(), "x.exe.blocked.txt");
        assert_eq!(b.file_name().unwrap(), "x (2).exe.blocked.txt");
    }
}
