//! The quarantine: originals whose verdict is not `clean`, kept with their reports for audit
//! and release.
//!
//! [`QuarantineStore`] is what the CLI, the drop directory, the SMTP relay and the release flow
//! use; [`DirStore`] is the directory backend.
//!
//! ## On-disk format (`DirStore`)
//! ```text
//! DIR/
//!   ab/                                  first two hex digits of the SHA-256 (sharding)
//!     ab12…(64 hex)/                     one entry per original, named by its full SHA-256
//!       original                         the original bytes, exactly as received
//!       reports/
//!         <report id>.json               one report (CONTRACT.md JSON) per time it was seen
//!       .mugai-tmp-*                     temporary files of writes in progress (ignored)
//! ```
//! The [`QuarantineId`] is the lower-case hex SHA-256 of the original: storing the same content
//! twice yields the same id and one copy of the bytes, with one report file per report id.
//!
//! ## Invariants
//! - Every file is written through [`super::atomic::write_atomic`] (temporary file in the same
//!   directory, fsync, rename, fsync the directory): a name that is visible is complete.
//! - An entry exists (for [`QuarantineStore::contains`], [`QuarantineStore::list`],
//!   [`QuarantineStore::get`]) exactly when its `original` file exists. `put` writes the
//!   original first, then the report, and returns only when both are durable.
//! - `get` re-hashes the original and refuses an entry whose bytes do not match its id.
//! - Files are owner-only (0600), directories the store creates 0700: originals may be
//!   confidential as well as hostile.
//! - Ids and report ids are validated before they become path components (no traversal).
//!
//! ## Failure modes
//! - Disk full, quota, interruption: [`QuarantineError::is_transient`] is true; the caller
//!   should defer the item (SMTP 451, leave the drop-directory file) and retry. No partial entry
//!   becomes visible; a crash may leave `.mugai-tmp-*` files, which readers ignore and
//!   [`DirStore::sweep_temp`] removes.
//! - A crash between the original and its report leaves an entry with fewer reports; a retried
//!   `put` completes it (writing the same original again is harmless: same bytes, atomic rename).
//! - Permission errors, a corrupt entry, a bad id: permanent.
//! - Concurrent `put`s of the same original (several processes or threads) are safe: each
//!   writes its own temporary file and the renames replace identical bytes.

use std::io;
use std::path::{Path, PathBuf};

use sanitizer_core::Report;
use sanitizer_core::report::sha256_hex;

use super::atomic::{Access, Existing, TEMP_PREFIX, sync_dir, write_atomic};

/// The id of a quarantined original: the lower-case hex SHA-256 of its bytes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QuarantineId(String);

impl QuarantineId {
    /// The id that `original` is (or would be) stored under.
    pub fn of(original: &[u8]) -> QuarantineId {
        QuarantineId(sha256_hex(original))
    }

    /// Parses an id given by a user or a report: exactly 64 lower-case hex digits.
    pub fn parse(s: &str) -> Result<QuarantineId, QuarantineError> {
        if s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(QuarantineId(s.to_owned()))
        } else {
            Err(QuarantineError::InvalidId(s.to_owned()))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for QuarantineId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a quarantine operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QuarantineError {
    /// The file system failed.
    #[error("quarantine I/O error ({op} {}): {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// Where.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// No entry with this id.
    #[error("no quarantine entry {0}")]
    NotFound(QuarantineId),
    /// Not a valid quarantine id or report id.
    #[error("invalid quarantine or report id {0:?}")]
    InvalidId(String),
    /// No entry has a report with this id.
    #[error("no quarantine entry has report {0}")]
    NoSuchReport(String),
    /// The entry is damaged (bytes do not match the id, unreadable report).
    #[error("quarantine entry {id} is corrupt: {detail}")]
    Corrupt {
        /// The entry.
        id: QuarantineId,
        /// What is wrong.
        detail: String,
    },
}

impl QuarantineError {
    /// Whether retrying later may succeed (disk full, quota, interrupted). Everything else is
    /// permanent.
    pub fn is_transient(&self) -> bool {
        match self {
            QuarantineError::Io { source, .. } => super::atomic::is_transient(source),
            _ => false,
        }
    }
}

/// A quarantined original with every report stored for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The id (SHA-256 of the original).
    pub id: QuarantineId,
    /// The original bytes.
    pub original: Vec<u8>,
    /// Its reports, ordered by report id.
    pub reports: Vec<Report>,
}

/// Where originals whose verdict is not `clean` are kept.
pub trait QuarantineStore: Send + Sync {
    /// Stores `original` with `report`; returns its id. Idempotent for the same content: the
    /// bytes are stored once, each distinct report id once.
    fn put(&self, original: &[u8], report: &Report) -> Result<QuarantineId, QuarantineError>;
    /// The original and its reports.
    fn get(&self, id: &QuarantineId) -> Result<Entry, QuarantineError>;
    /// Whether an entry exists.
    fn contains(&self, id: &QuarantineId) -> Result<bool, QuarantineError>;
    /// Every entry id, sorted.
    fn list(&self) -> Result<Vec<QuarantineId>, QuarantineError>;
}

/// The directory backend (format in the module docs).
#[derive(Debug, Clone)]
pub struct DirStore {
    root: PathBuf,
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> QuarantineError {
    let path = path.to_owned();
    move |source| QuarantineError::Io { op, path, source }
}

/// Creates `dir` and its missing parents, owner-only (originals may be confidential).
fn private_dir_all(dir: &Path) -> io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
}

/// Report ids become file names: only what a UUID or ULID contains (the core's rule).
use sanitizer_core::report::is_valid_report_id as valid_report_id;

impl DirStore {
    /// Opens (creating if needed) a store rooted at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<DirStore, QuarantineError> {
        let root = root.into();
        private_dir_all(&root).map_err(io_err("create", &root))?;
        Ok(DirStore { root })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Removes temporary files left by crashed writers that are older than `min_age` (younger
    /// ones may belong to a write in progress in another process). Returns how many were
    /// removed. Meant for daemon start-up; readers ignore such files anyway.
    pub fn sweep_temp(&self, min_age: std::time::Duration) -> Result<usize, QuarantineError> {
        let now = std::time::SystemTime::now();
        let mut removed = 0;
        let mut stack = vec![(self.root.clone(), 0u8)];
        while let Some((dir, depth)) = stack.pop() {
            let entries = std::fs::read_dir(&dir).map_err(io_err("list", &dir))?;
            for e in entries {
                let e = e.map_err(io_err("list", &dir))?;
                let path = e.path();
                let Ok(meta) = std::fs::symlink_metadata(&path) else {
                    continue;
                };
                // root/shard/entry/reports: nothing deeper is ours.
                if meta.is_dir() && depth < 3 {
                    stack.push((path, depth.saturating_add(1)));
                } else if meta.is_file()
                    && e.file_name().to_string_lossy().starts_with(TEMP_PREFIX)
                    && meta
                        .modified()
                        .ok()
                        .and_then(|m| now.duration_since(m).ok())
                        .is_some_and(|age| age >= min_age)
                {
                    std::fs::remove_file(&path).map_err(io_err("remove", &path))?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// Finds an entry by the SHA-256 of its original or by the id of one of its reports (the
    /// id a notice or `NAME.blocked.txt` quotes).
    pub fn find(&self, key: &str) -> Result<QuarantineId, QuarantineError> {
        let key = key.trim();
        if key.len() == 64
            && let Ok(id) = QuarantineId::parse(&key.to_ascii_lowercase())
        {
            return if self.contains(&id)? {
                Ok(id)
            } else {
                Err(QuarantineError::NotFound(id))
            };
        }
        if !valid_report_id(key) {
            return Err(QuarantineError::InvalidId(key.to_owned()));
        }
        let file = format!("{key}.json");
        for id in self.list()? {
            if self.entry_dir(&id).join("reports").join(&file).is_file() {
                return Ok(id);
            }
        }
        Err(QuarantineError::NoSuchReport(key.to_owned()))
    }

    /// When an entry's original was stored (its file's modification time).
    pub fn stored_at(&self, id: &QuarantineId) -> Option<std::time::SystemTime> {
        std::fs::metadata(self.entry_dir(id).join("original"))
            .and_then(|m| m.modified())
            .ok()
    }

    /// The directory of an entry.
    pub fn entry_dir(&self, id: &QuarantineId) -> PathBuf {
        let shard = id.as_str().get(..2).unwrap_or("00");
        self.root.join(shard).join(id.as_str())
    }
}

impl QuarantineStore for DirStore {
    fn put(&self, original: &[u8], report: &Report) -> Result<QuarantineId, QuarantineError> {
        if !valid_report_id(&report.id) {
            return Err(QuarantineError::InvalidId(report.id.clone()));
        }
        let id = QuarantineId::of(original);
        let dir = self.entry_dir(&id);
        let reports = dir.join("reports");
        private_dir_all(&reports).map_err(io_err("create", &reports))?;
        // Make the new directories themselves durable: each one's entry lives in its parent.
        for d in [
            Some(reports.as_path()),
            Some(dir.as_path()),
            dir.parent(),
            Some(self.root.as_path()),
        ]
        .into_iter()
        .flatten()
        {
            sync_dir(d).map_err(io_err("fsync", d))?;
        }
        if !dir.join("original").exists() {
            write_atomic(
                &dir,
                "original",
                original,
                Existing::Replace,
                Access::Private,
            )
            .map_err(io_err("write", &dir.join("original")))?;
        }
        let json = serde_json::to_vec_pretty(report).map_err(|e| QuarantineError::Corrupt {
            id: id.clone(),
            detail: format!("report does not serialise: {e}"),
        })?;
        let name = format!("{}.json", report.id);
        write_atomic(&reports, &name, &json, Existing::Replace, Access::Private)
            .map_err(io_err("write", &reports.join(&name)))?;
        tracing::debug!(id = %id, report = %report.id, "Original quarantined.");
        Ok(id)
    }

    fn get(&self, id: &QuarantineId) -> Result<Entry, QuarantineError> {
        let dir = self.entry_dir(id);
        let path = dir.join("original");
        let original = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(QuarantineError::NotFound(id.clone()));
            }
            Err(e) => return Err(io_err("read", &path)(e)),
        };
        if QuarantineId::of(&original) != *id {
            return Err(QuarantineError::Corrupt {
                id: id.clone(),
                detail: "original does not match its SHA-256".into(),
            });
        }
        let rdir = dir.join("reports");
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&rdir) {
            Ok(it) => it
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.extension().is_some_and(|e| e == "json")
                        && !p
                            .file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with(TEMP_PREFIX))
                })
                .collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_err("list", &rdir)(e)),
        };
        files.sort();
        let mut reports = Vec::with_capacity(files.len());
        for f in files {
            let text = std::fs::read(&f).map_err(io_err("read", &f))?;
            let r: Report =
                serde_json::from_slice(&text).map_err(|e| QuarantineError::Corrupt {
                    id: id.clone(),
                    detail: format!("{}: {e}", f.display()),
                })?;
            reports.push(r);
        }
        Ok(Entry {
            id: id.clone(),
            original,
            reports,
        })
    }

    fn contains(&self, id: &QuarantineId) -> Result<bool, QuarantineError> {
        let path = self.entry_dir(id).join("original");
        match std::fs::metadata(&path) {
            Ok(m) => Ok(m.is_file()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err("stat", &path)(e)),
        }
    }

    fn list(&self) -> Result<Vec<QuarantineId>, QuarantineError> {
        let mut out = Vec::new();
        let shards = std::fs::read_dir(&self.root).map_err(io_err("list", &self.root))?;
        for shard in shards {
            let shard = shard.map_err(io_err("list", &self.root))?.path();
            if !shard.is_dir() {
                continue;
            }
            let entries = std::fs::read_dir(&shard).map_err(io_err("list", &shard))?;
            for e in entries {
                let e = e.map_err(io_err("list", &shard))?;
                let Ok(id) = QuarantineId::parse(&e.file_name().to_string_lossy()) else {
                    continue;
                };
                if self.contains(&id)? {
                    out.push(id);
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sanitizer_core::{Policy, sanitize_file};

    fn report_for(bytes: &[u8]) -> Report {
        sanitize_file(bytes, Some("x.exe"), &Policy::default()).report
    }

    /// Every file under `dir`, relative.
    fn walk(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_owned()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn put_get_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let store = DirStore::open(d.path()).unwrap();
        let original = b"MZ\x90\0evil";
        let mut report = report_for(original);
        report.quarantine_id = Some(QuarantineId::of(original).to_string());
        let id = store.put(original, &report).unwrap();
        assert_eq!(id, QuarantineId::of(original));
        assert!(store.contains(&id).unwrap());
        let entry = store.get(&id).unwrap();
        assert_eq!(entry.original, original);
        assert_eq!(entry.reports, vec![report]);
        assert_eq!(store.list().unwrap(), vec![id.clone()]);
        let hex = id.as_str();
        let shard = hex.get(..2).unwrap();
        assert!(d.path().join(shard).join(hex).join("original").is_file());
    }

    #[test]
    fn same_content_is_stored_once_with_each_report() {
        let d = tempfile::tempdir().unwrap();
        let store = DirStore::open(d.path()).unwrap();
        let original = b"MZ same bytes";
        let r1 = report_for(original);
        let r2 = report_for(original);
        assert_ne!(r1.id, r2.id);
        let a = store.put(original, &r1).unwrap();
        let b = store.put(original, &r1).unwrap();
        let c = store.put(original, &r2).unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        let entry = store.get(&a).unwrap();
        assert_eq!(entry.reports.len(), 2);
        let files = walk(d.path());
        assert_eq!(files.len(), 3, "one original and two reports: {files:?}");
        assert_eq!(files.iter().filter(|f| f.ends_with("original")).count(), 1);
    }

    #[test]
    fn no_temporary_files_remain_and_partial_writes_are_invisible() {
        let d = tempfile::tempdir().unwrap();
        let store = DirStore::open(d.path()).unwrap();
        let original = b"MZ partial";
        let id = QuarantineId::of(original);
        // A crash mid-write leaves only a temporary file: the entry does not exist.
        let dir = store.entry_dir(&id);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{TEMP_PREFIX}crashed")), b"MZ par").unwrap();
        assert!(!store.contains(&id).unwrap());
        assert!(store.list().unwrap().is_empty());
        assert!(matches!(store.get(&id), Err(QuarantineError::NotFound(_))));
        // A successful put leaves no temporary file of its own.
        store.put(original, &report_for(original)).unwrap();
        let temps: Vec<String> = walk(d.path())
            .into_iter()
            .filter(|f| f.contains(TEMP_PREFIX))
            .collect();
        assert_eq!(
            temps,
            vec![format!(
                "{}/{}/{TEMP_PREFIX}crashed",
                id.as_str().get(..2).unwrap(),
                id
            )]
        );
        assert_eq!(store.get(&id).unwrap().original, original);
    }

    #[test]
    fn sweep_removes_only_old_temporary_files() {
        let d = tempfile::tempdir().unwrap();
        let store = DirStore::open(d.path()).unwrap();
        let id = store.put(b"MZ keep", &report_for(b"MZ keep")).unwrap();
        let stale = store.entry_dir(&id).join(format!("{TEMP_PREFIX}stale"));
        std::fs::write(&stale, b"MZ ke").unwrap();
        // Too young: may be a write in progress.
        assert_eq!(
            store
                .sweep_temp(std::time::Duration::from_secs(3600))
                .unwrap(),
            0
        );
        assert!(stale.exists());
        assert_eq!(store.sweep_temp(std::time::Duration::ZERO).unwrap(), 1);
        assert!(!stale.exists());
        assert_eq!(store.get(&id).unwrap().original, b"MZ keep");
        assert_eq!(store.get(&id).unwrap().reports.len(), 1);
    }

    #[test]
    fn corrupt_entries_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let store = DirStore::open(d.path()).unwrap();
        let id = store.put(b"MZ one", &report_for(b"MZ one")).unwrap();
        std::fs::write(store.entry_dir(&id).join("original"), b"MZ two").unwrap();
        let err = store.get(&id).unwrap_err();
        assert!(matches!(err, QuarantineError::Corrupt { .. }), "{err}");
        assert!(!err.is_transient());
    }

    #[test]
    fn ids_are_validated() {
        assert!(QuarantineId::parse("../../etc/passwd").is_err());
        assert!(QuarantineId::parse(&"A".repeat(64)).is_err());
        assert!(QuarantineId::parse(&"a".repeat(64)).is_ok());
        let d = tempfile::tempdir().unwrap();
        let store = DirStore::open(d.path()).unwrap();
        let mut r = report_for(b"MZ");
        r.id = "../escape".into();
        assert!(matches!(
            store.put(b"MZ", &r),
            Err(QuarantineError::InvalidId(_))
        ));
        assert!(walk(d.path()).is_empty());
    }

    #[test]
    fn concurrent_puts_of_the_same_original() {
        let d = tempfile::tempdir().unwrap();
        let store = DirStore::open(d.path()).unwrap();
        let original: Vec<u8> = b"MZ"
            .iter()
            .copied()
            .chain((0..50_000).map(|i| i as u8))
            .collect();
        let reports: Vec<Report> = (0..8).map(|_| report_for(&original)).collect();
        let ids: Vec<QuarantineId> = std::thread::scope(|s| {
            let handles: Vec<_> = reports
                .iter()
                .map(|r| s.spawn(|| store.put(&original, r).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(ids.iter().all(|i| *i == ids[0]));
        let entry = store.get(&ids[0]).unwrap();
        assert_eq!(entry.original, original);
        assert_eq!(entry.reports.len(), 8);
        assert!(walk(d.path()).iter().all(|f| !f.contains(TEMP_PREFIX)));
    }

    #[test]
    fn disk_errors_say_transient_or_permanent() {
        let full = QuarantineError::Io {
            op: "write",
            path: PathBuf::from("/q"),
            source: io::Error::from(io::ErrorKind::StorageFull),
        };
        assert!(full.is_transient());
        let denied = QuarantineError::Io {
            op: "write",
            path: PathBuf::from("/q"),
            source: io::Error::from(io::ErrorKind::PermissionDenied),
        };
        assert!(!denied.is_transient());
    }
}
