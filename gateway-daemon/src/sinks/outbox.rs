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
//! - every write is atomic ([`super::atomic`]): no half-written output under a real name;
//! - the name must be one plain component (the atomic writer refuses `/`, `\\`, `..`, control
//!   characters and empty names whoever chose them); for worker results the parent derives it
//!   itself (`isolate::pool::accept_file`), never from the worker's word.
//!
//! [`Outbox`] is the [`Delivery`] for files: standard output, exactly one named file, or a
//! directory (where a blocked input leaves `NAME.blocked.txt`, bilingual, saying why).

use std::io;
use std::path::{Path, PathBuf};

use sanitizer_core::report::{Action, Report};
use sanitizer_core::unicode::extension;

use super::atomic::{Access, Existing, write_atomic};
use super::{DeliverError, Delivered, Delivery};
use crate::i18n::{threat_en, threat_ja};
use crate::sanitize::{Job, JobOutcome};

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

/// Where an item's output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    /// Standard output.
    Stdout,
    /// Exactly this file (replaced atomically if it exists: the user named it).
    File(PathBuf),
    /// Into this directory (created if missing), never overwriting; a blocked input leaves
    /// `NAME.blocked.txt`.
    Dir(PathBuf),
}

/// The [`Delivery`] for files: writes the output to its [`Dest`], or the blocked note.
#[derive(Debug, Clone)]
pub struct Outbox {
    /// Where this item goes.
    pub dest: Dest,
    /// A quarantine keeps originals: only then does a note promise the original on request.
    pub quarantine: bool,
    /// Permissions of the output: never wider than the input's ([`Access::AtMost`]).
    pub access: Access,
}

impl Delivery for Outbox {
    fn deliver(&mut self, job: &Job, outcome: &mut JobOutcome) -> Result<Delivered, DeliverError> {
        match (&outcome.output, &self.dest) {
            (Some(out), Dest::Stdout) => {
                use std::io::Write;
                let mut so = io::stdout().lock();
                so.write_all(out.bytes())
                    .and_then(|()| so.flush())
                    .map_err(|e| DeliverError::io("standard output", &e))?;
                Ok(Delivered::Stdout)
            }
            // The report keeps the sanitized name (`a.docx`): the user chose the path.
            (Some(out), Dest::File(path)) => write_exact(path, out.bytes(), self.access)
                .map(Delivered::File)
                .map_err(|e| DeliverError::io(path.display(), &e)),
            (Some(out), Dest::Dir(dir)) => {
                let written = std::fs::create_dir_all(dir)
                    .and_then(|()| write_new_with(dir, &out.name, out.bytes(), self.access))
                    .map_err(|e| DeliverError::io(dir.join(&out.name).display(), &e))?;
                // In a directory the report names the file actually written (it may carry a
                // collision suffix).
                if let (Some(info), Some(n)) = (outcome.report.output.as_mut(), written.file_name())
                {
                    info.name = Some(n.to_string_lossy().into_owned());
                }
                Ok(Delivered::File(written))
            }
            (None, Dest::Dir(dir)) => {
                let name = job.name.as_deref().unwrap_or("input");
                let name = sanitizer_core::unicode::normalize_filename(name).name;
                let note = blocked_note(&outcome.report, self.quarantine);
                std::fs::create_dir_all(dir)
                    .and_then(|()| write_blocked_note(dir, &name, &note))
                    .map(Delivered::BlockedNote)
                    .map_err(|e| {
                        DeliverError::io(dir.join(format!("{name}.blocked.txt")).display(), &e)
                    })
            }
            (None, _) => Ok(Delivered::Nothing),
        }
    }
}

/// Writes exactly `path`, atomically, replacing what is there.
pub fn write_exact(path: &Path, bytes: &[u8], access: Access) -> io::Result<PathBuf> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?;
    write_atomic(
        dir,
        &name.to_string_lossy(),
        bytes,
        Existing::Replace,
        access,
    )?;
    Ok(path.to_owned())
}

/// Why an item was blocked, in English: the reason of its first removed part.
pub fn block_reason(report: &Report) -> &str {
    report
        .items
        .iter()
        .find(|i| i.action == Action::Removed)
        .map_or("could not be made safe", |i| i.reason.as_str())
}

/// The threat id that best explains a block (see [`crate::i18n::best_threat`]), among the
/// threats of the removed parts.
pub fn block_threat(report: &Report) -> Option<&str> {
    let ids: Vec<&str> = report
        .items
        .iter()
        .filter(|i| i.action == Action::Removed)
        .flat_map(|i| i.threats.iter())
        .map(String::as_str)
        .collect();
    crate::i18n::best_threat(&ids)
}

/// Text from a file or a report made safe to show: control characters (C0, C1, DEL) and
/// bidirectional or invisible format characters become `\u{..}` escapes, so a name cannot
/// move the cursor, recolour the terminal, start a new line or reverse the text around it.
pub fn escape_for_display(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() || sanitizer_core::unicode::is_invisible_control(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// The text of `NAME.blocked.txt`: Japanese, then English; the file name, the reason (as a
/// sentence and as threat ids) and the report id. It promises the original on request only
/// when a quarantine keeps it.
pub fn blocked_note(report: &Report, quarantine: bool) -> String {
    let name = escape_for_display(report.input.name.as_deref().unwrap_or("(no name)"));
    let threats = report.threats().join(", ");
    let threats = if threats.is_empty() {
        "-".to_owned()
    } else {
        threats
    };
    let threat = block_threat(report).unwrap_or("");
    let reason_en = escape_for_display(block_reason(report));
    let id = &report.id;
    let mut ja = format!(
        "このファイルは無害化できなかったため出力していません（Mugai）。\n\n\
         ファイル名：{name}\n\
         理由：{}（{threats}）\n\
         レポート ID：{id}\n",
        threat_ja(threat)
    );
    let mut en = format!(
        "This file was blocked by Mugai: it could not be made safe.\n\n\
         File: {name}\n\
         Reason: {} ({reason_en})\n\
         Threats: {threats}\n\
         Report ID: {id}\n",
        threat_en(threat)
    );
    if quarantine {
        ja.push_str(
            "原本は隔離保管されています。必要な場合は、このレポート ID を添えて\
             情報システム担当に原本の確認を依頼してください。\n",
        );
        en.push_str(
            "The original is kept in quarantine; to ask for it, give your IT section the \
             report ID above.\n",
        );
    }
    format!("{ja}\n{en}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_escapes_controls_and_bidi() {
        assert_eq!(escape_for_display("a\x1b[31mb"), "a\\u{1b}[31mb");
        assert_eq!(escape_for_display("x\nReason: ok"), "x\\u{a}Reason: ok");
        assert_eq!(
            escape_for_display("evil\u{202E}fdp.exe"),
            "evil\\u{202e}fdp.exe"
        );
        assert_eq!(escape_for_display("見積書.pdf"), "見積書.pdf");
    }

    #[test]
    fn blocked_note_is_bilingual_and_promises_only_with_quarantine() {
        let out = sanitizer_core::sanitize_file(
            b"MZ\x90\0",
            Some("a\nReason: fine.exe"),
            &sanitizer_core::Policy::default(),
        );
        let note = blocked_note(&out.report, false);
        assert!(note.starts_with("このファイルは無害化できなかったため出力していません"));
        assert!(note.contains("理由：ファイル名が実行ファイル"), "{note}");
        assert!(note.contains("This file was blocked"));
        assert!(!note.contains("隔離"));
        assert!(!note.contains("quarantine"));
        // The embedded newline cannot forge a line of its own.
        assert!(!note.lines().any(|l| l == "Reason: fine.exe"));
        let note = blocked_note(&out.report, true);
        assert!(note.contains("隔離保管") && note.contains("quarantine"));
    }

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
