//! What every archive and container sanitizer shares: member-name normalisation (including
//! Shift_JIS names from Japanese Windows), the per-member trip through
//! [`Context::sanitize_child`], name de-duplication, and the rule that a bomb-like limit tripped
//! by a member fails the whole container.
//!
//! Invariants:
//! - A member path in a rebuilt archive is relative, `/`-separated, has no `.`/`..` or empty
//!   components, no control, bidi or reserved characters ([`is_normalized_path`]), and is unique
//!   (case-insensitively) within the archive.
//! - Member bytes in a rebuilt archive are only ever [`SafeBytes`] from the pipeline.

use crate::error::SanitizeError;
use crate::limits::LimitKind;
use crate::pipeline::{Context, PartInput, PartOutcome, SafeBytes};
use crate::report::{Action, Kind, ReportItem};
use crate::threats;
use crate::unicode::{is_invisible_control, normalize_filename};

pub(crate) mod outlook;

/// Most directory levels kept in a member path; deeper ones are flattened into the last kept
/// level (legitimate archives are nowhere near this).
const MAX_DIR_LEVELS: usize = 32;

/// Decodes a raw member name: UTF-8 when it is valid UTF-8 (the ZIP UTF-8 flag, Info-ZIP on
/// Unix and macOS, every TAR we write), else Shift_JIS/CP932, which is what Windows in Japan
/// writes without setting the flag. Undecodable bytes become U+FFFD, never raw bytes.
pub(crate) fn decode_name(raw: &[u8]) -> String {
    match std::str::from_utf8(raw) {
        Ok(s) => s.to_owned(),
        Err(_) => {
            let (text, _, _) = encoding_rs::SHIFT_JIS.decode(raw);
            text.into_owned()
        }
    }
}

/// Decodes a ZIP member name. With the UTF-8 flag (general-purpose bit 11, also set by the zip
/// reader when an Info-ZIP Unicode Path field applies) it is UTF-8. Without it, the name is in
/// the writer's legacy code page, which for the archives we see is CP932 (Japanese Windows):
/// a name that decodes as CP932 without error is taken as CP932, even when its bytes happen
/// to be valid UTF-8 too (half-width katakana `ﾃｽﾄｱ` is the bytes of `ýı` in UTF-8). Two
/// exceptions keep UTF-8 written without the flag readable: pure ASCII, and valid UTF-8 made
/// only of 3- and 4-byte sequences (every kana and kanji), which CP932 text almost never is.
/// Anything else is [`decode_name`].
pub(crate) fn decode_zip_name(raw: &[u8], utf8_flag: bool) -> String {
    if utf8_flag || raw.is_ascii() {
        return decode_name(raw);
    }
    if let Ok(s) = std::str::from_utf8(raw)
        && s.chars().all(|c| c.is_ascii() || c.len_utf8() >= 3)
    {
        return s.to_owned();
    }
    let (text, had_errors) = encoding_rs::SHIFT_JIS.decode_without_bom_handling(raw);
    if had_errors {
        decode_name(raw)
    } else {
        text.into_owned()
    }
}

/// A member path split into safe directory components and the untrusted last component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MemberPath {
    /// Normalised directory components.
    pub(crate) dirs: Vec<String>,
    /// The last component as given (bidi controls kept, so that the pipeline reports them).
    pub(crate) file: String,
    /// Threats found in the path itself (traversal, absolute path, drive letter).
    pub(crate) threats: Vec<&'static str>,
}

impl MemberPath {
    /// Splits and normalises `raw` (already decoded).
    pub(crate) fn parse(raw: &str) -> MemberPath {
        let mut found = Vec::new();
        let unified = raw.replace('\\', "/");
        let mut rest = unified.as_str();
        // Drive letters (`C:/x`, `C:x`) and absolute or UNC paths are escapes from the
        // extraction folder.
        let bytes = rest.as_bytes();
        if bytes.len() >= 2
            && bytes.first().is_some_and(u8::is_ascii_alphabetic)
            && bytes.get(1) == Some(&b':')
        {
            rest = rest.get(2..).unwrap_or_default();
            found.push(threats::ARCHIVE_PATH_TRAVERSAL);
        }
        if rest.starts_with('/') && !found.contains(&threats::ARCHIVE_PATH_TRAVERSAL) {
            found.push(threats::ARCHIVE_PATH_TRAVERSAL);
        }
        let mut parts: Vec<&str> = Vec::new();
        for c in rest.split('/') {
            match c {
                "" | "." => {}
                ".." => {
                    if !found.contains(&threats::ARCHIVE_PATH_TRAVERSAL) {
                        found.push(threats::ARCHIVE_PATH_TRAVERSAL);
                    }
                }
                other => parts.push(other),
            }
        }
        let file = parts.pop().unwrap_or_default().to_owned();
        let mut dirs: Vec<String> = Vec::new();
        for d in parts {
            let n = normalize_filename(d);
            for t in n.threats {
                if t != threats::FILENAME_PATH && !found.contains(&t) {
                    found.push(t);
                }
            }
            if dirs.len() < MAX_DIR_LEVELS {
                dirs.push(tidy(&n.name));
            }
        }
        MemberPath {
            dirs,
            file,
            threats: found,
        }
    }

    /// The normalised path with `file_name` (already normalised by the pipeline) as last
    /// component.
    pub(crate) fn join(&self, file_name: &str) -> String {
        let mut s = String::new();
        for d in &self.dirs {
            s.push_str(d);
            s.push('/');
        }
        s.push_str(file_name);
        s
    }

    /// The path used in the report for this member (file name normalised, type unchanged).
    pub(crate) fn report_segment(&self) -> String {
        self.join(&normalize_filename(&self.file).name)
    }
}

/// A normalised name that also survived truncation: no trailing dots or spaces (Windows drops
/// them, so two members could collide), never empty.
fn tidy(name: &str) -> String {
    let t = name.trim_end_matches(['.', ' ']);
    if t.is_empty() {
        "attachment".to_owned()
    } else {
        t.to_owned()
    }
}

/// Whether `p` is a path we would write: relative, `/`-separated, no empty, `.` or `..`
/// components, no control, bidi or Windows-reserved characters, no trailing dot or space.
pub(crate) fn is_normalized_path(p: &str) -> bool {
    !p.is_empty()
        && p.split('/').all(|c| {
            !c.is_empty()
                && c != "."
                && c != ".."
                && !c.ends_with(['.', ' '])
                && !c.starts_with(['.', ' '])
                && !c.chars().any(|ch| {
                    ch.is_control()
                        || is_invisible_control(ch)
                        || matches!(ch, '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|')
                })
        })
}

/// One member that survived, ready to be written into the rebuilt archive.
#[derive(Debug, Clone)]
pub(crate) struct KeptMember {
    /// Normalised, unique path.
    pub(crate) path: String,
    /// Sanitized bytes.
    pub(crate) bytes: SafeBytes,
    /// Modification time in seconds since the Unix epoch, when known.
    pub(crate) mtime: Option<u64>,
}

/// Collects the members of one container as they go through the pipeline.
#[derive(Debug, Default)]
pub(crate) struct Members {
    /// Members that survived, in input order.
    pub(crate) kept: Vec<KeptMember>,
    /// Threats found in the container itself (paths, links, setuid bits).
    pub(crate) threats: Vec<&'static str>,
    /// Members removed (by the pipeline or by the container).
    pub(crate) removed: usize,
    seen: std::collections::HashSet<String>,
}

/// Limits whose trip in a member means the container is a bomb: the container fails with the
/// same limit, so a bomb inside an archive blocks the archive instead of arriving trimmed.
const BOMB_LIMITS: &[LimitKind] = &[
    LimitKind::Ratio,
    LimitKind::DecodedBytes,
    LimitKind::Depth,
    LimitKind::Parts,
    LimitKind::OutputBytes,
    LimitKind::Deadline,
];

impl Members {
    /// Adds a container-level threat once.
    pub(crate) fn threat(&mut self, t: &'static str) {
        if !self.threats.contains(&t) {
            self.threats.push(t);
        }
    }

    /// Records a member the container drops itself (a link, a device file) in the report.
    pub(crate) fn drop_member(
        &mut self,
        cx: &mut Context<'_>,
        path: &MemberPath,
        threat: &'static str,
        reason: &str,
    ) {
        self.threat(threat);
        self.removed = self.removed.saturating_add(1);
        let item_path = format!("{}/{}", cx.path(), path.report_segment());
        cx.record(ReportItem {
            path: item_path,
            kind: Kind::Unknown,
            action: Action::Removed,
            threats: vec![threat.to_owned()],
            reason: reason.to_owned(),
            detail: None,
        });
    }

    /// Sends one member through the pipeline and keeps its sanitized form, if any. Fails when
    /// the member tripped a bomb-like limit (see [`BOMB_LIMITS`]).
    pub(crate) fn sanitize(
        &mut self,
        cx: &mut Context<'_>,
        path: &MemberPath,
        bytes: &[u8],
        mtime: Option<u64>,
    ) -> Result<(), SanitizeError> {
        for t in &path.threats {
            self.threat(t);
        }
        let segment = path.report_segment();
        let outcome = cx.sanitize_child(
            &segment,
            PartInput {
                bytes,
                name: Some(&path.file),
                declared_type: None,
            },
        );
        match outcome {
            PartOutcome::Kept(part) => {
                let name = tidy(
                    &part
                        .name
                        .unwrap_or_else(|| normalize_filename(&path.file).name),
                );
                let unique = self.unique_path(path.join(&name));
                self.kept.push(KeptMember {
                    path: unique,
                    bytes: part.bytes,
                    mtime,
                });
                Ok(())
            }
            PartOutcome::Removed(r) => {
                self.removed = self.removed.saturating_add(1);
                for kind in BOMB_LIMITS {
                    if r.threats.contains(&kind.threat_id()) {
                        return Err(SanitizeError::limit(
                            *kind,
                            format!("member {segment}: {}", r.reason),
                        ));
                    }
                }
                Ok(())
            }
        }
    }

    /// `path`, or `path` with ` (2)`, ` (3)`, ... before the extension when an earlier member
    /// already has that name (compared case-insensitively, as Windows would).
    pub(crate) fn unique_path(&mut self, path: String) -> String {
        let (dir, file) = match path.rsplit_once('/') {
            Some((d, f)) => (format!("{d}/"), f.to_owned()),
            None => (String::new(), path.clone()),
        };
        let mut candidate = path.clone();
        let mut n = 2u32;
        while !self.seen.insert(candidate.to_lowercase()) {
            candidate = match file.rsplit_once('.') {
                Some((stem, ext)) if !stem.is_empty() => format!("{dir}{stem} ({n}).{ext}"),
                _ => format!("{dir}{file} ({n})"),
            };
            n = n.saturating_add(1);
        }
        candidate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_and_absolute_paths_are_contained() {
        let p = MemberPath::parse("../../evil.txt");
        assert_eq!(p.join("evil.txt"), "evil.txt");
        assert!(p.threats.contains(&threats::ARCHIVE_PATH_TRAVERSAL));
        let p = MemberPath::parse("/etc/x");
        assert_eq!(p.join("x"), "etc/x");
        assert!(p.threats.contains(&threats::ARCHIVE_PATH_TRAVERSAL));
        let p = MemberPath::parse("C:\\Windows\\a.txt");
        assert_eq!(p.join("a.txt"), "Windows/a.txt");
        assert!(p.threats.contains(&threats::ARCHIVE_PATH_TRAVERSAL));
        let p = MemberPath::parse("docs/./sub/a.txt");
        assert_eq!(p.join("a.txt"), "docs/sub/a.txt");
        assert!(p.threats.is_empty());
    }

    #[test]
    fn zip_names_without_the_utf8_flag_are_cp932() {
        // Half-width katakana in CP932 that is also valid UTF-8 ("ýı.txt").
        let (sjis, _, _) = encoding_rs::SHIFT_JIS.encode("ﾃｽﾄｱ.txt");
        assert!(std::str::from_utf8(&sjis).is_ok());
        assert_eq!(decode_zip_name(&sjis, false), "ﾃｽﾄｱ.txt");
        let (sjis, _, _) = encoding_rs::SHIFT_JIS.encode("見積書/請求書①.txt");
        assert_eq!(decode_zip_name(&sjis, false), "見積書/請求書①.txt");
        // With the flag, or UTF-8 kana/kanji without it, the name is UTF-8.
        assert_eq!(decode_zip_name("ýı.txt".as_bytes(), true), "ýı.txt");
        assert_eq!(
            decode_zip_name("見積書.txt".as_bytes(), false),
            "見積書.txt"
        );
        assert_eq!(decode_zip_name(b"plain.txt", false), "plain.txt");
        // Neither: replacement characters, never raw bytes.
        assert!(decode_zip_name(b"\x81 .txt", false).contains('\u{FFFD}'));
    }

    #[test]
    fn shift_jis_names_decode() {
        let (sjis, _, _) = encoding_rs::SHIFT_JIS.encode("見積書/請求書①.txt");
        assert_eq!(decode_name(&sjis), "見積書/請求書①.txt");
        assert_eq!(decode_name("報告.txt".as_bytes()), "報告.txt");
    }

    #[test]
    fn normalized_paths() {
        assert!(is_normalized_path("a/b.txt"));
        assert!(is_normalized_path("見積書/請求書.txt"));
        assert!(!is_normalized_path("../a"));
        assert!(!is_normalized_path("/a"));
        assert!(!is_normalized_path("a\\b"));
        assert!(!is_normalized_path("a/\u{202E}b"));
        assert!(!is_normalized_path("a//b"));
        // A name cut at the length limit right after a space is tidied, not rejected later.
        let long = format!("{} tail", "x".repeat(119));
        let p = MemberPath::parse(&format!("{long}/f.txt"));
        assert!(is_normalized_path(&p.join("f.txt")), "{:?}", p.dirs);
    }

    #[test]
    fn duplicate_names_get_suffixes() {
        let mut m = Members::default();
        assert_eq!(m.unique_path("a.txt".into()), "a.txt");
        assert_eq!(m.unique_path("A.TXT".into()), "A (2).TXT");
        assert_eq!(m.unique_path("a.txt".into()), "a (3).txt");
        assert_eq!(m.unique_path("README".into()), "README");
        assert_eq!(m.unique_path("readme".into()), "readme (2)");
        assert_eq!(m.unique_path("v1.0/README".into()), "v1.0/README");
        assert_eq!(m.unique_path("v1.0/readme".into()), "v1.0/readme (2)");
    }
}

/// The archive corpus (`corpus/manifest/archives.toml`) run through the library: verdicts,
/// threats, output kinds and names as the manifest says. With `MUGAI_CORPUS_OUT=DIR` the
/// outputs and reports are also written there for `corpus/checks_archives.py DIR`.
#[cfg(test)]
mod corpus {
    use std::path::Path;

    use crate::policy::Policy;
    use crate::report::Kind;
    use crate::sanitize_file;

    #[test]
    fn archive_manifest_holds() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus");
        let text = std::fs::read_to_string(root.join("manifest/archives.toml")).unwrap();
        let manifest: toml::Value = toml::from_str(&text).unwrap();
        let samples = manifest["sample"].as_array().unwrap();
        assert!(samples.len() >= 13);
        let policy = Policy::default();
        // Plain-text members need the text sanitizer; without it they are removed, which
        // turns a "clean" archive into a "sanitized" one but changes nothing else checked here.
        let text_sanitized = crate::formats::sanitizer_for(Kind::Text, &policy).is_some();
        let out_dir = std::env::var_os("MUGAI_CORPUS_OUT");
        for s in samples {
            let file = s["file"].as_str().unwrap();
            let name = Path::new(file).file_name().unwrap().to_str().unwrap();
            let bytes = std::fs::read(root.join(file)).unwrap();
            let out = sanitize_file(&bytes, Some(name), &policy);
            let expect = s["expect"].as_str().unwrap();
            let verdict = out.report.verdict.as_str();
            if expect != "clean" || text_sanitized {
                assert_eq!(verdict, expect, "{file}: {:#?}", out.report.items);
            }
            assert_eq!(out.output.is_none(), expect == "blocked", "{file}");
            for t in s["threats"].as_array().unwrap() {
                let t = t.as_str().unwrap();
                assert!(
                    out.report.threats().contains(&t),
                    "{file}: {t} not in {:?}",
                    out.report.threats()
                );
            }
            if let Some(kind) = s.get("output_kind").and_then(|k| k.as_str()) {
                let got = out.output.as_ref().map(|o| o.kind.as_str());
                assert_eq!(got, Some(kind), "{file}");
            }
            if let Some(n) = s.get("output_name").and_then(|k| k.as_str()) {
                assert_eq!(
                    out.output.as_ref().map(|o| o.name.as_str()),
                    Some(n),
                    "{file}"
                );
            }
            if let (Some(dir), Some(o)) = (&out_dir, &out.output) {
                let dir = Path::new(dir);
                std::fs::create_dir_all(dir).unwrap();
                std::fs::write(dir.join(format!("{name}.out")), o.bytes.as_slice()).unwrap();
                std::fs::write(
                    dir.join(format!("{name}.report.json")),
                    out.report.to_json_line(),
                )
                .unwrap();
            }
        }
    }

    /// Corrupted samples (bytes flipped, truncated) are removed or rebuilt, never a panic or an
    /// internal error: every parser here is bounded and checked.
    #[test]
    fn mutated_samples_fail_cleanly() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/samples/archives");
        let policy = Policy::default();
        let mut x = 0x9E37_79B9_u32;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as usize
        };
        let mut runs = 0;
        for entry in std::fs::read_dir(&root).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            if name.contains("bomb") {
                continue; // each run would expand megabytes; the bomb has its own tests
            }
            let original = std::fs::read(&path).unwrap();
            for round in 0..150 {
                let mut bytes = original.clone();
                if round % 10 == 9 {
                    bytes.truncate(next() % bytes.len());
                } else {
                    for _ in 0..1 + round % 4 {
                        let i = next() % bytes.len();
                        bytes[i] = next() as u8;
                    }
                }
                let out = sanitize_file(&bytes, Some(&name), &policy);
                runs += 1;
                assert!(
                    !out.report
                        .threats()
                        .contains(&crate::threats::INTERNAL_ERROR),
                    "{name} round {round}: {:#?}",
                    out.report.items
                );
            }
        }
        assert!(runs >= 1500);
    }
}
