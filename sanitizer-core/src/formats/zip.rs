//! ZIP archives: every member goes through the pipeline, and a new archive is written from the
//! sanitized members.
//!
//! Before anything is expanded: the member count is checked against `max_parts`, duplicate
//! names and overlapping entries (local headers or data shared between central-directory
//! entries, the trick behind non-recursive zip bombs) fail the archive with
//! `archive.overlap`, and any encrypted member (traditional PKWARE encryption, flag bit 0, or
//! WinZip AES, method 99) fails it with `archive.encrypted`: an archive we cannot read whole is
//! never delivered in part. Each member is then expanded through [`read_capped`], stopping at
//! `compressed × max_ratio` (so a bomb member trips `limit.ratio` after at most that many bytes)
//! and at the item's decoded-bytes budget.
//!
//! The rebuilt archive: member names normalised (see `super::archive`), UTF-8 with the UTF-8
//! flag set (Shift_JIS names from Japanese Windows are decoded first), Deflate, permissions 0644,
//! no directory entries (directories are implied by member paths), modification times kept.
//! Links, device files and FIFOs are dropped (`archive.special_file`), setuid/setgid bits
//! reported (`archive.setuid`) and not carried over. The written archive is read back by a
//! fresh reader and checked (`recheck`) before it leaves.

use std::io::{Cursor, Read, Write};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

use super::archive::{KeptMember, MemberPath, Members, decode_zip_name, is_normalized_path};
use crate::error::SanitizeError;
use crate::limits::{LimitKind, read_capped};
use crate::pipeline::{Context, FormatSanitizer, Rebuilt};
use crate::report::{Action, Kind};
use crate::threats;

/// Unix file-type bits in a mode.
const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFLNK: u32 = 0o120_000;
/// setuid, setgid.
const SETID_BITS: u32 = 0o6000;

/// The reason given for encrypted archives (the mail notice builds on it).
pub const ENCRYPTED_REASON: &str =
    "encrypted archive (PPAP): cannot be inspected; ask the administrator to release it";

/// Rebuilds ZIP archives.
#[derive(Debug, Clone, Copy)]
pub struct ZipSanitizer;

impl FormatSanitizer for ZipSanitizer {
    fn name(&self) -> &'static str {
        "zip"
    }

    fn sanitize(&self, input: &[u8], cx: &mut Context<'_>) -> Result<Rebuilt, SanitizeError> {
        let unlocked;
        let input = match cx.archive_password() {
            Some(password) => match decrypt_zip(input, password, cx.budget().limits()) {
                Ok(plain) => {
                    cx.warn(WARN_UNLOCKED);
                    unlocked = plain;
                    unlocked.as_slice()
                }
                Err(UnlockError::WrongPassword) => {
                    cx.warn(WARN_WRONG_PASSWORD);
                    return Err(SanitizeError::Forbidden {
                        threat: threats::ARCHIVE_ENCRYPTED,
                        reason: "encrypted archive (PPAP): the password given does not open it"
                            .into(),
                    });
                }
                Err(UnlockError::Unsupported) => {
                    return Err(SanitizeError::Forbidden {
                        threat: threats::ARCHIVE_ENCRYPTED,
                        reason: "encrypted archive (AES): cannot be unlocked by this version"
                            .into(),
                    });
                }
                // Not encrypted: the password is not needed.
                Err(UnlockError::NotEncrypted) => input,
                Err(UnlockError::Sanitize(e)) => return Err(e),
            },
            None => input,
        };
        let members = read_members(input, cx)?;
        let out = write_zip(&members.kept)?;
        let expected: Vec<&str> = members.kept.iter().map(|m| m.path.as_str()).collect();
        recheck(&out, &expected)?;
        let kept = members.kept.len();
        Ok(
            Rebuilt::new(out, Action::Rebuilt, Kind::Zip, "application/zip")
                .with_threats(members.threats.iter().copied())
                .with_reason(format!(
                    "ZIP rebuilt from sanitized members: {kept} kept, {} removed",
                    members.removed
                ))
                .with_detail(serde_json::json!({
                    "members_kept": kept,
                    "members_removed": members.removed,
                })),
        )
    }
}

/// Report warning: an encrypted ZIP was opened with the password lent in
/// [`crate::Services::archive_password`] and rebuilt like any other.
pub const WARN_UNLOCKED: &str = "archive.unlocked_with_password";
/// Report warning: the password lent does not open the encrypted ZIP (it stays blocked as
/// `archive.encrypted`).
pub const WARN_WRONG_PASSWORD: &str = "archive.wrong_password";

/// Why [`decrypt_zip`] could not open an encrypted ZIP.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UnlockError {
    /// The password does not open it (ZipCrypto's check byte, or a CRC mismatch after
    /// decryption, which is what a wrong password that passes the 1-in-256 check byte gives).
    #[error("wrong password")]
    WrongPassword,
    /// Nothing in it is encrypted: there is nothing to unlock.
    #[error("the archive is not encrypted")]
    NotEncrypted,
    /// WinZip AES members: not built into this version.
    #[error("AES-encrypted ZIP members are not supported (only ZipCrypto)")]
    Unsupported,
    /// Not a readable ZIP, or over a limit while expanding.
    #[error("{0}")]
    Sanitize(#[from] SanitizeError),
}

/// Opens a ZipCrypto-encrypted ZIP (PPAP) with `password` and returns the same members as a
/// plain, unencrypted ZIP (stored, names as decoded), which then goes through the ordinary
/// ZIP sanitizer like any other archive. Expansion obeys `limits` as the sanitizer's does:
/// member count, `compressed × max_ratio` per member, and the decoded-bytes budget. Directory
/// entries, links and special files are left out (the sanitizer would drop them anyway).
///
/// This is only ever run inside a sandboxed worker: the plain ZIP is an intermediate that
/// never leaves it unsanitized.
pub fn decrypt_zip(
    input: &[u8],
    password: &[u8],
    limits: &crate::limits::Limits,
) -> Result<Vec<u8>, UnlockError> {
    let mut budget = crate::limits::Budget::new(limits);
    let mut archive = ZipArchive::new(Cursor::new(input)).map_err(malformed)?;
    let count = archive.len();
    if count > usize::try_from(limits.max_parts).unwrap_or(usize::MAX) {
        return Err(SanitizeError::limit(
            LimitKind::Parts,
            format!("{count} members, over {}", limits.max_parts),
        )
        .into());
    }
    if archive.has_overlapping_entries().map_err(malformed)? || archive.has_duplicate_names() {
        return Err(SanitizeError::Forbidden {
            threat: threats::ARCHIVE_OVERLAP,
            reason: "ZIP entries overlap or share names".into(),
        }
        .into());
    }
    let mut any_encrypted = false;
    let mut metas = Vec::new();
    for i in 0..count {
        let f = archive.by_index_raw(i).map_err(malformed)?;
        if f.compression() == CompressionMethod::AES {
            return Err(UnlockError::Unsupported);
        }
        any_encrypted |= f.encrypted();
        let regular = !f.is_dir()
            && f.unix_mode()
                .is_none_or(|m| m & S_IFMT == S_IFREG || m & S_IFMT == 0);
        metas.push((
            decode_zip_name(f.name_raw(), f.flags().as_u16() & 0x0800 != 0),
            regular,
            f.encrypted(),
            f.compressed_size(),
            f.last_modified(),
        ));
    }
    if !any_encrypted {
        return Err(UnlockError::NotEncrypted);
    }
    let mut out = ZipWriter::new(Cursor::new(Vec::new()));
    for (i, (name, regular, encrypted, compressed, mtime)) in metas.into_iter().enumerate() {
        budget.check_deadline()?;
        if !regular {
            continue;
        }
        let file = if encrypted {
            archive.by_index_decrypt(i, password)
        } else {
            archive.by_index(i)
        };
        let file = match file {
            Ok(f) => f,
            Err(zip::result::ZipError::InvalidPassword) => return Err(UnlockError::WrongPassword),
            Err(e) => return Err(malformed(e).into()),
        };
        let cap = compressed.saturating_mul(limits.max_ratio).max(64 * 1024);
        let data = match read_capped(file.take(cap.saturating_add(1)), &mut budget) {
            Ok(d) if d.len() as u64 > cap => {
                return Err(SanitizeError::limit(
                    LimitKind::Ratio,
                    format!("member expands beyond {} times its size", limits.max_ratio),
                )
                .into());
            }
            Ok(d) => d,
            Err(e @ SanitizeError::Limit { .. }) => return Err(e.into()),
            // A CRC mismatch after decryption: the password passed the check byte by chance.
            Err(_) if encrypted => return Err(UnlockError::WrongPassword),
            Err(e) => return Err(e.into()),
        };
        let mut options = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Stored)
            .large_file(data.len() as u64 >= u64::from(u32::MAX));
        if let Some(t) = mtime {
            options = options.last_modified_time(t);
        }
        out.start_file(name, options)
            .and_then(|()| out.write_all(&data).map_err(Into::into))
            .map_err(|e| SanitizeError::Malformed(format!("ZIP: cannot rebuild: {e}")))?;
    }
    let cursor = out
        .finish()
        .map_err(|e| SanitizeError::Malformed(format!("ZIP: cannot rebuild: {e}")))?;
    Ok(cursor.into_inner())
}

fn malformed(e: zip::result::ZipError) -> SanitizeError {
    SanitizeError::Malformed(format!("ZIP: {e}"))
}

/// What the central directory says about one entry, copied out before its data is read.
struct EntryMeta {
    name: String,
    is_dir: bool,
    mode: Option<u32>,
    compressed: u64,
    mtime: Option<u64>,
    /// The compression method, when this build cannot decompress it.
    unsupported: Option<CompressionMethod>,
}

fn read_members(input: &[u8], cx: &mut Context<'_>) -> Result<Members, SanitizeError> {
    let mut archive = ZipArchive::new(Cursor::new(input)).map_err(malformed)?;
    let count = archive.len();
    let max_parts = cx.budget().limits().max_parts;
    if count > usize::try_from(max_parts).unwrap_or(usize::MAX) {
        return Err(SanitizeError::limit(
            LimitKind::Parts,
            format!("{count} members, over {max_parts}"),
        ));
    }
    if archive.has_duplicate_names() {
        return Err(SanitizeError::Forbidden {
            threat: threats::ARCHIVE_OVERLAP,
            reason: "ZIP with duplicate member names (extractors disagree on which one wins)"
                .into(),
        });
    }
    // Encryption first: one unreadable member makes the whole archive uninspectable.
    let mut metas = Vec::new();
    for i in 0..count {
        let f = archive.by_index_raw(i).map_err(malformed)?;
        if f.encrypted() || f.compression() == CompressionMethod::AES {
            return Err(SanitizeError::Forbidden {
                threat: threats::ARCHIVE_ENCRYPTED,
                reason: ENCRYPTED_REASON.into(),
            });
        }
        metas.push(EntryMeta {
            name: decode_zip_name(f.name_raw(), f.flags().as_u16() & 0x0800 != 0),
            is_dir: f.is_dir(),
            // The zip crate clears setuid/setgid bits in `unix_mode`; we want to see them.
            mode: match f.external_attributes() >> 16 {
                m if m != 0 && f.system() == zip::System::Unix => Some(m),
                _ => f.unix_mode(),
            },
            compressed: f.compressed_size(),
            mtime: f.last_modified().and_then(zip_time_to_unix),
            unsupported: Some(f.compression())
                .filter(|m| !zip::SUPPORTED_COMPRESSION_METHODS.contains(m)),
        });
    }
    if archive.has_overlapping_entries().map_err(malformed)? {
        return Err(SanitizeError::Forbidden {
            threat: threats::ARCHIVE_OVERLAP,
            reason: "ZIP entries overlap (shared local headers or data: a zip bomb construction)"
                .into(),
        });
    }

    let ratio = cx.budget().limits().max_ratio;
    let mut members = Members::default();
    for (i, meta) in metas.iter().enumerate() {
        cx.budget().check_deadline()?;
        let path = MemberPath::parse(&meta.name);
        let file_type = meta.mode.map_or(S_IFREG, |m| m & S_IFMT);
        if meta.is_dir || file_type == S_IFDIR {
            for t in &path.threats {
                members.threat(t);
            }
            continue;
        }
        if file_type != S_IFREG && file_type != 0 {
            let what = if file_type == S_IFLNK {
                "symbolic link dropped"
            } else {
                "special file (device, FIFO or socket) dropped"
            };
            members.drop_member(cx, &path, threats::ARCHIVE_SPECIAL_FILE, what);
            continue;
        }
        if meta.mode.is_some_and(|m| m & SETID_BITS != 0) {
            members.threat(threats::ARCHIVE_SETUID);
        }
        if path.file.is_empty() {
            continue;
        }
        if let Some(method) = meta.unsupported {
            // Stored and Deflate cover what mail clients and Windows write; Deflate64, bzip2,
            // LZMA, zstd and the legacy methods are not built in.
            let reason = format!(
                "compression method {} is not supported",
                method_name(method)
            );
            members.drop_member(cx, &path, threats::UNSUPPORTED_FORMAT, &reason);
            continue;
        }
        let data = match archive.by_index(i) {
            Ok(file) => {
                // Never more than max_ratio times the compressed size (or 64 KiB, below which
                // ratios are not judged), and never more than the decoded-bytes budget.
                let cap = meta.compressed.saturating_mul(ratio).max(64 * 1024);
                match read_capped(file.take(cap.saturating_add(1)), cx.budget()) {
                    Ok(d) if d.len() as u64 > cap => {
                        return Err(SanitizeError::limit(
                            LimitKind::Ratio,
                            format!(
                                "member {} expands beyond {ratio} times its compressed size",
                                path.report_segment()
                            ),
                        ));
                    }
                    Ok(d) => d,
                    Err(e @ SanitizeError::Limit { .. }) => return Err(e),
                    Err(e) => {
                        members.drop_member(cx, &path, threats::PARSE_FAILED, &e.to_string());
                        continue;
                    }
                }
            }
            Err(e) => {
                let reason = format!("member cannot be read: {e}");
                members.drop_member(cx, &path, threats::UNSUPPORTED_FORMAT, &reason);
                continue;
            }
        };
        cx.budget()
            .check_ratio(meta.compressed, data.len() as u64)?;
        members.sanitize(cx, &path, &data, meta.mtime)?;
    }
    Ok(members)
}

pub(crate) fn write_zip(kept: &[KeptMember]) -> Result<Vec<u8>, SanitizeError> {
    let fail = |e: &dyn std::fmt::Display| SanitizeError::Internal(format!("writing ZIP: {e}"));
    let mut w = ZipWriter::new(Cursor::new(Vec::new()));
    for m in kept {
        let time = m
            .mtime
            .and_then(unix_to_zip_time)
            .unwrap_or_else(zip::DateTime::default_for_write);
        let options = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            .unix_permissions(0o644)
            .last_modified_time(time);
        w.start_file(m.path.as_str(), options)
            .map_err(|e| fail(&e))?;
        w.write_all(m.bytes.as_slice()).map_err(|e| fail(&e))?;
    }
    Ok(w.finish().map_err(|e| fail(&e))?.into_inner())
}

/// Reads our own output back with a fresh reader: exactly the expected members, in order, each
/// a plain unencrypted 0644 file with a normalised UTF-8 name, nothing overlapping.
pub(crate) fn recheck(out: &[u8], expected: &[&str]) -> Result<(), SanitizeError> {
    let bad = |why: String| SanitizeError::Recheck(format!("rebuilt ZIP: {why}"));
    let mut a = ZipArchive::new(Cursor::new(out)).map_err(|e| bad(e.to_string()))?;
    if a.len() != expected.len() {
        return Err(bad(format!(
            "{} members, expected {}",
            a.len(),
            expected.len()
        )));
    }
    if a.has_duplicate_names() || a.has_overlapping_entries().unwrap_or(true) {
        return Err(bad("duplicate or overlapping entries".into()));
    }
    for (i, want) in expected.iter().enumerate() {
        let f = a.by_index_raw(i).map_err(|e| bad(e.to_string()))?;
        let name = std::str::from_utf8(f.name_raw()).map_err(|_| bad("non-UTF-8 name".into()))?;
        if !is_normalized_path(name) || name != *want {
            return Err(bad(format!("unexpected member name {name:?}")));
        }
        if f.encrypted() || f.is_dir() || f.is_symlink() {
            return Err(bad(format!("{name:?} is not a plain file")));
        }
        if f.unix_mode()
            .is_some_and(|m| m & (S_IFMT | 0o7777) != S_IFREG | 0o644)
        {
            return Err(bad(format!("{name:?} has unexpected mode")));
        }
    }
    Ok(())
}

/// ZIP (MS-DOS) time, taken as UTC, to seconds since the epoch.
fn zip_time_to_unix(t: zip::DateTime) -> Option<u64> {
    let days = days_from_civil(
        i64::from(t.year()),
        i64::from(t.month()),
        i64::from(t.day()),
    );
    let secs = days
        .checked_mul(86_400)?
        .checked_add(i64::from(t.hour()) * 3600 + i64::from(t.minute()) * 60)?
        .checked_add(i64::from(t.second()))?;
    u64::try_from(secs).ok()
}

fn unix_to_zip_time(secs: u64) -> Option<zip::DateTime> {
    let days = i64::try_from(secs / 86_400).ok()?;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    zip::DateTime::from_date_and_time(
        u16::try_from(y).ok()?,
        u8::try_from(m).ok()?,
        u8::try_from(d).ok()?,
        u8::try_from(rem / 3600).ok()?,
        u8::try_from(rem % 3600 / 60).ok()?,
        u8::try_from(rem % 60).ok()?,
    )
    .ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01.
pub(crate) fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A compression method for people: `Bzip2 (12)`.
#[allow(
    deprecated,
    reason = "the zip crate has no other way to give the method's number for a message"
)]
fn method_name(method: CompressionMethod) -> String {
    let id = method.to_u16();
    format!("{} ({id})", CompressionMethod::name_from_u16(id))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::policy::Policy;
    use crate::report::Verdict;
    use crate::sanitize_file;

    /// One entry of a hand-made stored ZIP.
    #[derive(Clone, Default)]
    pub(crate) struct RawEntry {
        pub(crate) name: Vec<u8>,
        pub(crate) data: Vec<u8>,
        pub(crate) flags: u16,
        /// Unix mode in the high half of the external attributes (made by Unix).
        pub(crate) mode: Option<u32>,
        /// Point this central entry at an earlier entry's local header.
        pub(crate) same_as: Option<usize>,
    }

    fn put16(v: &mut Vec<u8>, x: u16) {
        v.extend_from_slice(&x.to_le_bytes());
    }
    fn put32(v: &mut Vec<u8>, x: u32) {
        v.extend_from_slice(&x.to_le_bytes());
    }

    /// The header fields the local and the central header share, from "version needed" to the
    /// extra-field length: stored, no extra field, `e`'s flags and name, CRC and sizes of `data`.
    fn put_common(v: &mut Vec<u8>, e: &RawEntry, data: &[u8]) {
        let mut crc = flate2::Crc::new();
        crc.update(data);
        put16(v, 20);
        put16(v, e.flags);
        put16(v, 0);
        put16(v, 0);
        put16(v, 0x21);
        put32(v, crc.sum());
        put32(v, data.len() as u32);
        put32(v, data.len() as u32);
        put16(v, e.name.len() as u16);
        put16(v, 0);
    }

    /// A stored ZIP built byte by byte, for names and flags the zip crate will not write.
    pub(crate) fn raw_zip(entries: &[RawEntry]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut offsets = Vec::new();
        for e in entries {
            if let Some(j) = e.same_as {
                offsets.push(offsets[j]);
                continue;
            }
            offsets.push(out.len() as u32);
            put32(&mut out, 0x0403_4b50);
            put_common(&mut out, e, &e.data);
            out.extend_from_slice(&e.name);
            out.extend_from_slice(&e.data);
        }
        let cd_start = out.len();
        for (e, off) in entries.iter().zip(&offsets) {
            let src = e.same_as.map_or(e, |j| &entries[j]);
            put32(&mut out, 0x0201_4b50);
            put16(&mut out, if e.mode.is_some() { 0x0314 } else { 20 });
            put_common(&mut out, e, &src.data);
            put16(&mut out, 0);
            put16(&mut out, 0);
            put16(&mut out, 0);
            put32(&mut out, e.mode.map_or(0, |m| m << 16));
            put32(&mut out, *off);
            out.extend_from_slice(&e.name);
        }
        let cd_len = out.len() - cd_start;
        put32(&mut out, 0x0605_4b50);
        put16(&mut out, 0);
        put16(&mut out, 0);
        put16(&mut out, entries.len() as u16);
        put16(&mut out, entries.len() as u16);
        put32(&mut out, cd_len as u32);
        put32(&mut out, cd_start as u32);
        put16(&mut out, 0);
        out
    }

    /// A deflated ZIP written with the zip crate.
    pub(crate) fn make_zip(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = ZipWriter::new(Cursor::new(Vec::new()));
        for (name, data) in members {
            w.start_file(*name, SimpleFileOptions::default()).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    /// Names and contents of a ZIP, read with a fresh reader.
    pub(crate) fn list(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut a = ZipArchive::new(Cursor::new(bytes)).unwrap();
        (0..a.len())
            .map(|i| {
                let mut f = a.by_index(i).unwrap();
                let mut v = Vec::new();
                f.read_to_end(&mut v).unwrap();
                (String::from_utf8(f.name_raw().to_vec()).unwrap(), v)
            })
            .collect()
    }

    const HTML: &[u8] = b"<html><body><p>Hello <script>alert(1)</script>world</p></body></html>";

    #[test]
    fn executable_member_is_removed_and_others_rebuilt() {
        let zip = make_zip(&[
            ("setup.exe", b"MZ\x90\0\x03\0\0\0"),
            ("docs/readme.html", HTML),
            ("invoice.pdf.exe", b"harmless bytes, dangerous name"),
        ]);
        let out = sanitize_file(&zip, Some("a.zip"), &Policy::default());
        assert_eq!(out.report.verdict, Verdict::Sanitized);
        let file = out.output.expect("zip kept");
        assert_eq!(file.kind, Kind::Zip);
        let members = list(file.bytes.as_slice());
        let names: Vec<&str> = members.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["docs/readme.txt"]);
        let text = String::from_utf8(members[0].1.clone()).unwrap();
        assert!(text.contains("Hello") && !text.contains("<script"));
        let threats = out.report.threats();
        assert!(threats.contains(&threats::EXECUTABLE));
        assert!(threats.contains(&threats::FILENAME_EXECUTABLE));
        assert!(
            out.report
                .items
                .iter()
                .any(|i| i.path == "a.zip/setup.exe" && i.action == Action::Removed)
        );
    }

    #[test]
    fn traversal_names_are_normalised() {
        let zip = make_zip(&[
            ("../../evil.html", HTML),
            ("/etc/x.html", HTML),
            ("C:\\Users\\a.html", HTML),
        ]);
        let out = sanitize_file(&zip, Some("t.zip"), &Policy::default());
        let file = out.output.expect("kept");
        let names: Vec<String> = list(file.bytes.as_slice())
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["evil.txt", "etc/x.txt", "Users/a.txt"]);
        assert!(
            out.report
                .threats()
                .contains(&threats::ARCHIVE_PATH_TRAVERSAL)
        );
    }

    #[test]
    fn shift_jis_names_come_out_as_utf8() {
        let (name, _, _) = encoding_rs::SHIFT_JIS.encode("資料/見積書①.html");
        let zip = raw_zip(&[RawEntry {
            name: name.into_owned(),
            data: HTML.to_vec(),
            ..RawEntry::default()
        }]);
        let out = sanitize_file(&zip, Some("j.zip"), &Policy::default());
        let file = out.output.expect("kept");
        let mut a = ZipArchive::new(Cursor::new(file.bytes.as_slice())).unwrap();
        let f = a.by_index_raw(0).unwrap();
        assert_eq!(f.name_raw(), "資料/見積書①.txt".as_bytes());
        // The UTF-8 flag (bit 11) is set, so every unzip tool reads the name right.
        assert_eq!(f.name().unwrap(), "資料/見積書①.txt");
    }

    #[test]
    fn cp932_names_that_look_like_utf8_are_cp932() {
        let (name, _, _) = encoding_rs::SHIFT_JIS.encode("ﾃｽﾄｱ.txt");
        let zip = raw_zip(&[RawEntry {
            name: name.into_owned(),
            data: b"hello".to_vec(),
            ..RawEntry::default()
        }]);
        let out = sanitize_file(&zip, Some("j.zip"), &Policy::default());
        let file = out.output.expect("kept");
        let mut a = ZipArchive::new(Cursor::new(file.bytes.as_slice())).unwrap();
        assert_eq!(a.by_index_raw(0).unwrap().name_raw(), "ﾃｽﾄｱ.txt".as_bytes());
    }

    #[test]
    fn windows_device_names_are_renamed() {
        let zip = raw_zip(&[
            RawEntry {
                name: b"CON.txt".to_vec(),
                data: b"a".to_vec(),
                ..RawEntry::default()
            },
            RawEntry {
                name: b"dir/aux/nul".to_vec(),
                data: b"b".to_vec(),
                ..RawEntry::default()
            },
            RawEntry {
                name: b"lpt1 .txt".to_vec(),
                data: b"c".to_vec(),
                ..RawEntry::default()
            },
        ]);
        let out = sanitize_file(&zip, Some("r.zip"), &Policy::default());
        let file = out.output.expect("kept");
        let mut a = ZipArchive::new(Cursor::new(file.bytes.as_slice())).unwrap();
        let names: Vec<String> = (0..a.len())
            .map(|i| String::from_utf8(a.by_index_raw(i).unwrap().name_raw().to_vec()).unwrap())
            .collect();
        assert_eq!(names, ["CON_.txt", "dir/aux_/nul_.txt", "lpt1 _.txt"]);
    }

    #[test]
    fn links_devices_and_setuid_are_handled() {
        let zip = raw_zip(&[
            RawEntry {
                name: b"link".to_vec(),
                data: b"/etc/passwd".to_vec(),
                mode: Some(0o120_777),
                ..RawEntry::default()
            },
            RawEntry {
                name: b"dev".to_vec(),
                mode: Some(0o020_666),
                ..RawEntry::default()
            },
            RawEntry {
                name: b"suid.html".to_vec(),
                data: HTML.to_vec(),
                mode: Some(0o104_755),
                ..RawEntry::default()
            },
        ]);
        let out = sanitize_file(&zip, Some("s.zip"), &Policy::default());
        let file = out.output.expect("kept");
        let mut a = ZipArchive::new(Cursor::new(file.bytes.as_slice())).unwrap();
        assert_eq!(a.len(), 1);
        let f = a.by_index_raw(0).unwrap();
        assert_eq!(f.name_raw(), b"suid.txt");
        assert_eq!(f.unix_mode(), Some(0o100_644));
        let threats = out.report.threats();
        assert!(threats.contains(&threats::ARCHIVE_SPECIAL_FILE));
        assert!(threats.contains(&threats::ARCHIVE_SETUID));
    }

    #[test]
    fn encrypted_zip_is_blocked_with_release_hint() {
        let zip = raw_zip(&[RawEntry {
            name: b"secret.html".to_vec(),
            data: b"\x12\x34ciphertext...".to_vec(),
            flags: 1,
            ..RawEntry::default()
        }]);
        let out = sanitize_file(&zip, Some("ppap.zip"), &Policy::default());
        assert!(out.output.is_none());
        assert_eq!(out.report.verdict, Verdict::Blocked);
        assert!(out.report.threats().contains(&threats::ARCHIVE_ENCRYPTED));
        assert!(out.report.items[0].reason.contains("ask the administrator"));
    }

    /// A ZipCrypto archive made now with the zip crate's writer.
    fn zipcrypto(members: &[(&str, &[u8])], password: &[u8]) -> Vec<u8> {
        use zip::unstable::write::FileOptionsExt;
        let mut w = ZipWriter::new(Cursor::new(Vec::new()));
        for (name, data) in members {
            let o = SimpleFileOptions::default()
                .compression_method(CompressionMethod::Deflated)
                .with_deprecated_encryption(password)
                .unwrap();
            w.start_file(*name, o).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn a_ppap_zip_opens_with_its_password_and_is_then_sanitized_as_usual() {
        let html = b"<html><script>alert(1)</script><p>\xe8\xa6\x8b\xe7\xa9\x8d</p></html>";
        let ppap = zipcrypto(
            &[("見積/quote.html", html), ("run.exe", b"MZ\x90\x00")],
            b"s3cret",
        );
        // Locked: blocked as before.
        let locked = sanitize_file(&ppap, Some("ppap.zip"), &Policy::default());
        assert!(
            locked
                .report
                .threats()
                .contains(&threats::ARCHIVE_ENCRYPTED)
        );
        let limits = Policy::default().limits;
        assert!(matches!(
            decrypt_zip(&ppap, b"wrong", &limits),
            Err(UnlockError::WrongPassword)
        ));
        let plain = decrypt_zip(&ppap, b"s3cret", &limits).unwrap();
        let out = sanitize_file(&plain, Some("ppap.zip"), &Policy::default());
        let bytes = out.output.unwrap().bytes.into_vec();
        let members = list(&bytes);
        let names: Vec<&str> = members.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["見積/quote.txt"],
            "the script gone, the exe removed"
        );
        assert!(String::from_utf8_lossy(&members[0].1).contains("見積"));
        assert!(!String::from_utf8_lossy(&members[0].1).contains("alert"));
        // The same through the pipeline, with the password lent in Services.
        let lent = |pw: &'static [u8]| crate::Services {
            archive_password: Some(pw),
            ocr: None,
            ..crate::Services::default()
        };
        let via =
            crate::sanitize_file_with(&ppap, Some("ppap.zip"), &Policy::default(), lent(b"s3cret"));
        assert!(via.report.warnings.iter().any(|w| w == WARN_UNLOCKED));
        assert_eq!(list(via.output.unwrap().bytes.as_slice()).len(), 1);
        let wrong =
            crate::sanitize_file_with(&ppap, Some("ppap.zip"), &Policy::default(), lent(b"x"));
        assert!(wrong.output.is_none());
        assert!(
            wrong
                .report
                .warnings
                .iter()
                .any(|w| w == WARN_WRONG_PASSWORD)
        );
        assert!(wrong.report.threats().contains(&threats::ARCHIVE_ENCRYPTED));
        // Nothing to unlock in a plain ZIP.
        assert!(matches!(
            decrypt_zip(&make_zip(&[("a.txt", b"x")]), b"pw", &limits),
            Err(UnlockError::NotEncrypted)
        ));
        // Limits hold while decrypting: a member over the decoded-bytes budget.
        let big = zipcrypto(&[("big.txt", &vec![b'a'; 200_000])], b"pw");
        let tight = crate::limits::Limits {
            max_decoded_bytes: 100_000,
            ..limits.clone()
        };
        assert!(matches!(
            decrypt_zip(&big, b"pw", &tight),
            Err(UnlockError::Sanitize(SanitizeError::Limit { .. }))
        ));
    }

    #[test]
    fn winzip_aes_method_is_treated_as_encrypted() {
        let mut zip = raw_zip(&[RawEntry {
            name: b"a.html".to_vec(),
            data: HTML.to_vec(),
            ..RawEntry::default()
        }]);
        // Method 99 (WinZip AES) in both headers, even without the encryption flag.
        zip[8] = 99;
        let central = zip.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
        zip[central + 10] = 99;
        let out = sanitize_file(&zip, Some("aes.zip"), &Policy::default());
        assert!(out.output.is_none());
        assert!(out.report.threats().contains(&threats::ARCHIVE_ENCRYPTED));
    }

    #[test]
    fn overlapping_entries_are_blocked() {
        let zip = raw_zip(&[
            RawEntry {
                name: b"a.html".to_vec(),
                data: HTML.to_vec(),
                ..RawEntry::default()
            },
            RawEntry {
                name: b"b.html".to_vec(),
                same_as: Some(0),
                ..RawEntry::default()
            },
        ]);
        let out = sanitize_file(&zip, Some("o.zip"), &Policy::default());
        assert!(out.output.is_none());
        assert!(out.report.threats().contains(&threats::ARCHIVE_OVERLAP));
    }

    #[test]
    fn ratio_bomb_is_blocked() {
        let zeros = vec![0u8; 20 * 1024 * 1024];
        let zip = make_zip(&[("zeros.html", &zeros)]);
        assert!(zip.len() < 100 * 1024);
        let out = sanitize_file(&zip, Some("bomb.zip"), &Policy::default());
        assert!(out.output.is_none());
        assert!(out.report.threats().contains(&threats::LIMIT_RATIO));
    }

    #[test]
    fn deep_nesting_blocks_the_archive() {
        let mut zip = make_zip(&[("core.html", HTML)]);
        for i in 0..12 {
            zip = make_zip(&[(&format!("level{i}.zip"), &zip)]);
        }
        let out = sanitize_file(&zip, Some("deep.zip"), &Policy::default());
        assert!(out.output.is_none());
        assert!(out.report.threats().contains(&threats::LIMIT_DEPTH));
        // Shallow nesting is fine and keeps its structure.
        let inner = make_zip(&[("core.html", HTML)]);
        let outer = make_zip(&[("inner.zip", &inner)]);
        let out = sanitize_file(&outer, Some("n.zip"), &Policy::default());
        let file = out.output.expect("kept");
        let members = list(file.bytes.as_slice());
        assert_eq!(members[0].0, "inner.zip");
        assert_eq!(list(&members[0].1)[0].0, "core.txt");
    }

    #[test]
    fn member_count_decoded_bytes_and_deadline_limits_trip() {
        let zip = make_zip(&[("a.html", HTML), ("b.html", HTML), ("c.html", HTML)]);
        let mut policy = Policy::default();
        policy.limits.max_parts = 2;
        let out = sanitize_file(&zip, Some("p.zip"), &policy);
        assert!(out.report.threats().contains(&threats::LIMIT_PARTS));
        assert!(out.output.is_none());

        // Incompressible bytes, so the ratio limit stays quiet and the decoded budget trips.
        let mut x = 0x2545_f491_u32;
        let big: Vec<u8> = (0..200_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 24) as u8
            })
            .collect();
        let zip = make_zip(&[("a.html", &big), ("b.html", &big)]);
        let mut policy = Policy::default();
        policy.limits.max_decoded_bytes = 300_000;
        let out = sanitize_file(&zip, Some("d.zip"), &policy);
        assert!(out.report.threats().contains(&threats::LIMIT_DECODED_BYTES));
        assert!(out.output.is_none());

        let mut policy = Policy::default();
        policy.limits.deadline_ms = 0;
        let out = sanitize_file(&zip, Some("t.zip"), &policy);
        assert!(out.report.threats().contains(&threats::LIMIT_DEADLINE));
    }

    #[test]
    fn policy_can_remove_archives() {
        let zip = make_zip(&[("a.html", HTML)]);
        let mut policy = Policy::default();
        policy.archives.rebuild = false;
        let out = sanitize_file(&zip, Some("a.zip"), &policy);
        assert!(out.output.is_none());
        assert!(out.report.threats().contains(&threats::UNSUPPORTED_FORMAT));
    }

    #[test]
    fn unsupported_archives_are_removed() {
        let sevenz = b"7z\xBC\xAF\x27\x1C\0\x04rest of a 7z stub";
        let out = sanitize_file(sevenz, Some("a.7z"), &Policy::default());
        assert!(out.output.is_none());
        assert!(out.report.threats().contains(&threats::UNSUPPORTED_FORMAT));
        let zip = make_zip(&[("inner.7z", sevenz), ("a.html", HTML)]);
        let out = sanitize_file(&zip, Some("z.zip"), &Policy::default());
        let names: Vec<String> = list(out.output.expect("kept").bytes.as_slice())
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["a.txt"]);
    }

    #[test]
    fn members_with_unsupported_compression_are_dropped() {
        let mut zip = raw_zip(&[
            RawEntry {
                name: b"a.html".to_vec(),
                data: HTML.to_vec(),
                ..RawEntry::default()
            },
            RawEntry {
                name: b"b.html".to_vec(),
                data: HTML.to_vec(),
                ..RawEntry::default()
            },
        ]);
        // Mark the second member as bzip2 (method 12) in its local and central headers.
        let local = 30 + 6 + HTML.len();
        zip[local + 8] = 12;
        let central = zip.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
        let second = central + 46 + 6;
        zip[second + 10] = 12;
        let out = sanitize_file(&zip, Some("m.zip"), &Policy::default());
        let names: Vec<String> = list(out.output.expect("kept").bytes.as_slice())
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["a.txt"]);
        assert!(out.report.items.iter().any(|i| i.path == "m.zip/b.html"
            && i.action == Action::Removed
            && i.threats.iter().any(|t| t == threats::UNSUPPORTED_FORMAT)
            // Named for people, not as a Rust value.
            && i.reason == "compression method Bzip2 (12) is not supported"));
    }

    #[test]
    fn recheck_rejects_bad_output() {
        let bad = make_zip(&[("../evil.txt", b"x")]);
        assert!(matches!(
            recheck(&bad, &["../evil.txt"]),
            Err(SanitizeError::Recheck(_))
        ));
        let good = make_zip(&[("a.txt", b"x")]);
        assert!(matches!(
            recheck(&good, &["a.txt", "b.txt"]),
            Err(SanitizeError::Recheck(_))
        ));
        let link = raw_zip(&[RawEntry {
            name: b"a.txt".to_vec(),
            data: b"/etc/passwd".to_vec(),
            mode: Some(0o120_777),
            ..RawEntry::default()
        }]);
        assert!(matches!(
            recheck(&link, &["a.txt"]),
            Err(SanitizeError::Recheck(_))
        ));
        let ours = write_zip(&[]).unwrap();
        assert!(recheck(&ours, &[]).is_ok());
    }

    #[test]
    fn dates_round_trip() {
        for secs in [315_532_800u64, 1_700_000_000, 4_102_444_798] {
            let t = unix_to_zip_time(secs).unwrap();
            assert_eq!(zip_time_to_unix(t), Some(secs));
        }
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
    }
}
