//! TAR archives (ustar, GNU, PAX): every regular member goes through the pipeline, and a new
//! archive is written from the sanitized members.
//!
//! Symbolic links, hard links, device files, FIFOs and sparse files are dropped
//! (`archive.special_file`); setuid/setgid bits are reported (`archive.setuid`) and not carried
//! over. The rebuilt archive is GNU format (long names through GNU long-name records), every
//! member a regular file with mode 0644, owner and group 0 and no owner names, modification
//! times kept; directories are implied by member paths. Names are normalised as for ZIP
//! (see `super::archive`). The written archive is read back and checked (`recheck`).
//!
//! TAR is not compressed, so each member's size is bounded by the input; members are still read
//! through [`read_capped`] so they count against the item's decoded-bytes budget.

use std::io::Cursor;

use tar::{Archive, Builder, EntryType, Header};

use super::archive::{KeptMember, MemberPath, Members, decode_name, is_normalized_path};
use crate::error::SanitizeError;
use crate::limits::{LimitKind, read_capped};
use crate::pipeline::{Context, FormatSanitizer, Rebuilt};
use crate::report::{Action, Kind};
use crate::threats;

/// setuid, setgid.
const SETID_BITS: u32 = 0o6000;

/// Rebuilds TAR archives.
#[derive(Debug, Clone, Copy)]
pub struct TarSanitizer;

impl FormatSanitizer for TarSanitizer {
    fn name(&self) -> &'static str {
        "tar"
    }

    fn sanitize(&self, input: &[u8], cx: &mut Context<'_>) -> Result<Rebuilt, SanitizeError> {
        let members = read_members(input, cx)?;
        let out = write_tar(&members.kept)?;
        let expected: Vec<&str> = members.kept.iter().map(|m| m.path.as_str()).collect();
        recheck(&out, &expected)?;
        let kept = members.kept.len();
        Ok(
            Rebuilt::new(out, Action::Rebuilt, Kind::Tar, "application/x-tar")
                .with_threats(members.threats.iter().copied())
                .with_reason(format!(
                    "TAR rebuilt from sanitized members: {kept} kept, {} removed",
                    members.removed
                ))
                .with_detail(serde_json::json!({
                    "members_kept": kept,
                    "members_removed": members.removed,
                })),
        )
    }
}

fn malformed(e: std::io::Error) -> SanitizeError {
    SanitizeError::Malformed(format!("TAR: {e}"))
}

fn read_members(input: &[u8], cx: &mut Context<'_>) -> Result<Members, SanitizeError> {
    let mut archive = Archive::new(Cursor::new(input));
    let max_parts = cx.budget().limits().max_parts;
    let mut members = Members::default();
    let mut seen: u32 = 0;
    for entry in archive.entries().map_err(malformed)? {
        cx.budget().check_deadline()?;
        let mut entry = entry.map_err(malformed)?;
        seen = seen.saturating_add(1);
        if seen > max_parts {
            return Err(SanitizeError::limit(
                LimitKind::Parts,
                format!("more than {max_parts} members"),
            ));
        }
        let path = MemberPath::parse(&decode_name(&entry.path_bytes()));
        let header = entry.header();
        let mode = header.mode().unwrap_or(0);
        let mtime = header.mtime().ok();
        match header.entry_type() {
            EntryType::Regular | EntryType::Continuous => {}
            EntryType::Directory | EntryType::XGlobalHeader | EntryType::XHeader => {
                for t in &path.threats {
                    members.threat(t);
                }
                continue;
            }
            EntryType::Symlink => {
                members.drop_member(
                    cx,
                    &path,
                    threats::ARCHIVE_SPECIAL_FILE,
                    "symbolic link dropped",
                );
                continue;
            }
            EntryType::Link => {
                members.drop_member(
                    cx,
                    &path,
                    threats::ARCHIVE_SPECIAL_FILE,
                    "hard link dropped",
                );
                continue;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                members.drop_member(
                    cx,
                    &path,
                    threats::ARCHIVE_SPECIAL_FILE,
                    "device file or FIFO dropped",
                );
                continue;
            }
            _ => {
                members.drop_member(
                    cx,
                    &path,
                    threats::ARCHIVE_SPECIAL_FILE,
                    "member of an unsupported type (sparse or vendor-specific) dropped",
                );
                continue;
            }
        }
        if mode & SETID_BITS != 0 {
            members.threat(threats::ARCHIVE_SETUID);
        }
        if path.file.is_empty() {
            continue;
        }
        let data = match read_capped(&mut entry, cx.budget()) {
            Ok(d) => d,
            Err(e @ SanitizeError::Limit { .. }) => return Err(e),
            Err(e) => return Err(SanitizeError::Malformed(format!("TAR member: {e}"))),
        };
        members.sanitize(cx, &path, &data, mtime)?;
    }
    Ok(members)
}

fn write_tar(kept: &[KeptMember]) -> Result<Vec<u8>, SanitizeError> {
    let fail = |e: std::io::Error| SanitizeError::Internal(format!("writing TAR: {e}"));
    let mut b = Builder::new(Vec::new());
    for m in kept {
        let mut h = Header::new_gnu();
        h.set_entry_type(EntryType::Regular);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(m.mtime.unwrap_or(0));
        h.set_size(m.bytes.len() as u64);
        b.append_data(&mut h, m.path.as_str(), m.bytes.as_slice())
            .map_err(fail)?;
    }
    b.into_inner().map_err(fail)
}

/// Reads our own output back: exactly the expected members, in order, each a regular 0644 file
/// with a normalised UTF-8 name and no link target.
pub(crate) fn recheck(out: &[u8], expected: &[&str]) -> Result<(), SanitizeError> {
    let bad = |why: String| SanitizeError::Recheck(format!("rebuilt TAR: {why}"));
    let mut a = Archive::new(Cursor::new(out));
    let mut n = 0usize;
    for entry in a.entries().map_err(|e| bad(e.to_string()))? {
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        let name = String::from_utf8(entry.path_bytes().into_owned())
            .map_err(|_| bad("non-UTF-8 name".into()))?;
        if !is_normalized_path(&name) || expected.get(n) != Some(&name.as_str()) {
            return Err(bad(format!("unexpected member name {name:?}")));
        }
        let h = entry.header();
        if h.entry_type() != EntryType::Regular
            || h.mode().ok() != Some(0o644)
            || entry.link_name_bytes().is_some()
        {
            return Err(bad(format!("{name:?} is not a plain 0644 file")));
        }
        std::io::copy(&mut entry, &mut std::io::sink()).map_err(|e| bad(e.to_string()))?;
        n = n.saturating_add(1);
    }
    if n != expected.len() {
        return Err(bad(format!("{n} members, expected {}", expected.len())));
    }
    Ok(())
}

/// Bytes of every member of a TAR (for tests of other modules).
#[cfg(test)]
pub(crate) fn list(bytes: &[u8]) -> Vec<(String, Vec<u8>, u32)> {
    use std::io::Read;
    let mut a = Archive::new(Cursor::new(bytes));
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
            let mode = e.header().mode().unwrap();
            let mut v = Vec::new();
            e.read_to_end(&mut v).unwrap();
            (name, v, mode)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;
    use crate::report::Verdict;
    use crate::sanitize_file;

    const HTML: &[u8] = b"<html><body><p>Hello <script>alert(1)</script>world</p></body></html>";

    fn header(kind: EntryType, mode: u32, size: u64) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h
    }

    /// A tar with every kind of hostile member; names are written raw (the tar crate refuses
    /// `..` through its path setters).
    fn hostile_tar() -> Vec<u8> {
        let mut b = Builder::new(Vec::new());
        let mut h = header(EntryType::Symlink, 0o777, 0);
        h.set_link_name("/etc/passwd").unwrap();
        b.append_data(&mut h, "link.html", &[][..]).unwrap();
        let mut h = header(EntryType::Link, 0o644, 0);
        h.set_link_name("link.html").unwrap();
        b.append_data(&mut h, "hard.html", &[][..]).unwrap();
        let mut h = header(EntryType::Char, 0o666, 0);
        b.append_data(&mut h, "null", &[][..]).unwrap();
        let mut h = header(EntryType::Fifo, 0o666, 0);
        b.append_data(&mut h, "fifo", &[][..]).unwrap();
        let mut h = header(EntryType::Regular, 0o4755, HTML.len() as u64);
        b.append_data(&mut h, "suid.html", HTML).unwrap();
        let mut h = header(EntryType::Regular, 0o644, HTML.len() as u64);
        h.as_old_mut().name[..15].copy_from_slice(b"../../evil.html");
        h.set_cksum();
        b.append(&h, HTML).unwrap();
        let mut h = header(EntryType::Regular, 0o755, 20);
        b.append_data(&mut h, "run.sh", &b"#!/bin/sh\nrm -rf ~\n\n"[..])
            .unwrap();
        b.into_inner().unwrap()
    }

    #[test]
    fn links_devices_setuid_and_traversal() {
        let tar = hostile_tar();
        let out = sanitize_file(&tar, Some("h.tar"), &Policy::default());
        assert_eq!(out.report.verdict, Verdict::Sanitized);
        let file = out.output.expect("kept");
        assert_eq!(file.kind, Kind::Tar);
        let members = list(file.bytes.as_slice());
        let names: Vec<&str> = members.iter().map(|m| m.0.as_str()).collect();
        assert_eq!(names, ["suid.txt", "evil.txt"]);
        assert!(members.iter().all(|m| m.2 == 0o644));
        let threats = out.report.threats();
        for t in [
            threats::ARCHIVE_SPECIAL_FILE,
            threats::ARCHIVE_SETUID,
            threats::ARCHIVE_PATH_TRAVERSAL,
            threats::SCRIPT,
        ] {
            assert!(threats.contains(&t), "{t} missing from {threats:?}");
        }
    }

    #[test]
    fn long_and_japanese_names_survive() {
        let long = format!("{}/資料/{}.html", "d".repeat(120), "見積".repeat(30));
        let mut b = Builder::new(Vec::new());
        let mut h = header(EntryType::Regular, 0o644, HTML.len() as u64);
        b.append_data(&mut h, &long, HTML).unwrap();
        let tar = b.into_inner().unwrap();
        let out = sanitize_file(&tar, Some("l.tar"), &Policy::default());
        let members = list(out.output.expect("kept").bytes.as_slice());
        assert_eq!(members[0].0, long.replace(".html", ".txt"));
    }

    #[test]
    fn device_names_and_non_text_extensions_are_renamed() {
        let mut b = Builder::new(Vec::new());
        for (name, data) in [
            ("Nul.txt", &b"a"[..]),
            ("com3/prn", b"b"),
            ("readme.nfo", b"plain notes"),
        ] {
            let mut h = header(EntryType::Regular, 0o644, data.len() as u64);
            b.append_data(&mut h, name, data).unwrap();
        }
        let tar = b.into_inner().unwrap();
        let out = sanitize_file(&tar, Some("r.tar"), &Policy::default());
        let names: Vec<String> = list(out.output.expect("kept").bytes.as_slice())
            .into_iter()
            .map(|m| m.0)
            .collect();
        assert_eq!(names, ["Nul_.txt", "com3_/prn_.txt", "readme.nfo.txt"]);
    }

    #[test]
    fn member_limit_trips() {
        let mut b = Builder::new(Vec::new());
        for i in 0..5 {
            let mut h = header(EntryType::Regular, 0o644, HTML.len() as u64);
            b.append_data(&mut h, format!("{i}.html"), HTML).unwrap();
        }
        let tar = b.into_inner().unwrap();
        let mut policy = Policy::default();
        policy.limits.max_parts = 3;
        let out = sanitize_file(&tar, Some("m.tar"), &policy);
        assert!(out.output.is_none());
        assert!(out.report.threats().contains(&threats::LIMIT_PARTS));
    }

    #[test]
    fn recheck_rejects_links_and_bad_names() {
        let mut b = Builder::new(Vec::new());
        let mut h = header(EntryType::Symlink, 0o644, 0);
        h.set_link_name("/etc/passwd").unwrap();
        b.append_data(&mut h, "a.txt", &[][..]).unwrap();
        let t = b.into_inner().unwrap();
        assert!(matches!(
            recheck(&t, &["a.txt"]),
            Err(SanitizeError::Recheck(_))
        ));
        let ours = write_tar(&[]).unwrap();
        assert!(recheck(&ours, &[]).is_ok());
        assert!(matches!(
            recheck(&ours, &["a.txt"]),
            Err(SanitizeError::Recheck(_))
        ));
    }
}
