//! The drop directory: files put in `[dropdir] inbox` (from the internet side) come out
//! sanitized in `[dropdir] outbox` (read from the LGWAN side), keeping their subfolders.
//!
//! ## Claim protocol and on-disk layout
//! ```text
//! inbox/sub/a.docm                      dropped by a user; taken once stable
//! work/sub/a.docm                       claimed: renamed here (same file system), in progress
//! work/sub/.mugai-claim-<hash>.json     marker: what is being written for that entry
//! outbox/sub/a.docx                     the safe output (or sub/a.docm.blocked.txt)
//! outbox/sub/a.docx.report.json         its report (in `reports/sub/` when `reports` is set)
//! outbox/sub/.mugai-tmp-*               a write in progress (or left by a crash)
//! ```
//! 1. **Taking a file.** The inbox is watched with inotify (the `notify` crate) and walked
//!    again every `rescan_secs` as a fallback (lost events, queue overflow, folders moved in
//!    whole). Only regular files whose size, mtime and inode stayed the same for
//!    `settle_secs` are taken. Names starting with `.` (files and folders), `*.part`, `*.tmp`
//!    and `~$*` are never taken (uploads in progress, Office lock files).
//! 2. **Claim.** A stable file is renamed from `inbox/REL` to `work/REL` with
//!    `RENAME_NOREPLACE`: the rename is atomic, so a file is either in the inbox or claimed,
//!    never both, and never copied. If `work/REL` exists (the same name is still in progress)
//!    the file waits in the inbox. Start-up refuses a `work` on another file system than the
//!    inbox (a rename there would fail, or worse, become a copy).
//! 3. **Sanitize** through the daemon's transform (the worker pool) on the blocking pool, at
//!    most `max_concurrent` at once. The mode is chosen as `mugai sanitize` chooses it
//!    ([`Mode::detect`]: `.eml` or a sniffed RFC 5322 message is a mail), so the daemon and the
//!    command line give the same output for the same file.
//! 4. **Quarantine** ([`Vault::hold`], source `dropdir`, the relative path as file name) when
//!    the verdict is not `clean`, durable before anything becomes visible in the outbox.
//! 5. **Marker, then output.** The output name is chosen (the outbox's no-clobber rules:
//!    `a (2).docx` on a collision), then the marker is written (fsynced) saying which name,
//!    the SHA-256 of the claimed input and of the bytes about to be written, and the report;
//!    then the output is written atomically ([`write_atomic`]: a dot-prefixed temporary file,
//!    fsync, no-clobber link, directory fsync). A blocked file leaves `NAME.blocked.txt`
//!    (Japanese, then English, with the report id to ask for the original) the same way.
//! 6. The report JSON and one audit line are written, then the work entry is removed (and its
//!    directory fsynced), then the marker.
//!
//! ## Why a marker (idempotence)
//! A crash between the output's rename into place and the removal of the work entry would
//! otherwise process the entry again at start and write a second output (`a (2).docx`).
//! Deterministic output names cannot fix that, because the contract's collision suffixes
//! depend on what else is in the outbox. So the marker records the name and the output's
//! SHA-256 *before* the output is linked: at start, an entry whose marker matches its input
//! (same SHA-256) and whose named output exists with the recorded SHA-256 is only finished
//! (report, audit, cleanup), never written again. A marker that does not match (the output
//! was never linked, or the name was taken by another file meanwhile) is discarded and the
//! entry processed from the start.
//!
//! ## Durability (power cuts, not only `kill -9`)
//! Each step is fsynced before the next becomes visible: the marker (file and folder) before
//! the output, the output (file and folder) before the report, the report before the work
//! entry goes. Two syncs are left out on purpose, because the marker makes them redundant:
//! the claim's rename is not synced by itself (the marker's folder sync, in the same folder,
//! makes it durable before anything is written; a claim lost before that leaves the file in
//! the inbox with nothing written), and the removal of a finished entry is not synced (an
//! entry that comes back finds its marker and its output, and is only finished again). This
//! relies on a rename being one journal transaction (ext4, XFS, btrfs): after a power cut the
//! file is in the inbox or in `work/`, never in both.
//!
//! ## Failure modes
//! - `kill -9` anywhere: the file is in the inbox, or in `work/` (processed again at start),
//!   never lost; the outbox never shows a partial file under a real name: incomplete writes
//!   are hidden `.mugai-tmp-*` files. **LGWAN-side readers must ignore names starting with
//!   `.`** (temporary files are swept at start once older than an hour).
//! - Transient failures (the transform cannot run, the quarantine fails, the outbox is full or
//!   unwritable before the output is visible): the claimed file is renamed back to the inbox
//!   (a numbered name if the user dropped a new file of the same name meanwhile) and retried
//!   after [`RETRY_DELAY`]; logged. After the output is visible, a failure (report or cleanup)
//!   leaves the entry in `work/`, finished by the next rescan.
//! - Symlinks, FIFOs, sockets and devices in the inbox are **left where they are and logged**
//!   (once per path), never opened or moved: the drop directory only ever renames regular
//!   files, so it cannot be made to move or read something outside the inbox. A file swapped
//!   for a symlink between the check and the claim is refused when opened (`O_NOFOLLOW`) and
//!   renamed back.
//! - A crash just after the output was linked and before the entry was removed may write the
//!   audit line twice (the second run cannot tell whether the first one got that far).
//! - SIGTERM: no new file is taken; files in progress finish.
//!
//! ## Other choices
//! - Outputs get the daemon's umask, not the input's permission bits (as `mugai sanitize`
//!   does): the inbox's writer is not the outbox's reader.
//! - The quarantine row of a file ends `delivered` with what was written (`outbox: sub/a.txt`,
//!   `blocked note: …`), or `deferred` with the reason when the file went back to the inbox.
//! - An input over `limits.max_input_bytes` is read only up to the limit (the core blocks it);
//!   that prefix is not quarantined and the note promises nothing.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::ffi::OsStr;
use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, bail};
use sanitizer_core::report::{Report, Verdict};
use sanitizer_core::unicode::normalize_filename;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokio::sync::{Semaphore, mpsc, watch};

use crate::config::DropdirSettings;
use crate::sanitize::{Current, Job, Mode};
use crate::sinks::atomic::{Access, Existing, TEMP_PREFIX, is_transient, sync_dir, write_atomic};
use crate::sinks::audit::{AuditLog, AuditRecord, Durations};
use crate::sinks::index::{HeldItem, HoldStatus};
use crate::sinks::outbox::{MAX_SUFFIX, blocked_note, escape_for_display, suffixed};
use crate::sinks::quarantine::QuarantineId;
use crate::sinks::vault::Vault;
use crate::sources::files::{Follow, read_file};
use crate::sources::smtp::server::RunState;

/// How long a file given back to the inbox after a transient failure waits before it is
/// taken again.
pub const RETRY_DELAY: Duration = Duration::from_secs(10);

/// Files tracked while they settle; a walk stops adding beyond this (the next one finds the
/// rest), so a flood of small files costs bounded memory.
pub const MAX_PENDING: usize = 4096;

/// Prefix of the claim markers in `work/`.
const MARKER_PREFIX: &str = ".mugai-claim-";

/// Temporary files in the outbox older than this are a crash's leftovers.
const TEMP_MAX_AGE: Duration = Duration::from_secs(3600);

/// Whether a file or folder name is never taken from the inbox: dot-names (hidden files,
/// our temporary files), uploads in progress (`*.part`, `*.tmp`) and Office lock files (`~$*`).
pub fn ignored(name: &OsStr) -> bool {
    let n = name.to_string_lossy();
    let lower = n.to_lowercase();
    n.starts_with('.') || n.starts_with("~$") || lower.ends_with(".part") || lower.ends_with(".tmp")
}

/// Whether a relative path (inside the inbox) may be taken: plain components only, none of
/// them [`ignored`].
pub fn takeable(rel: &Path) -> bool {
    let mut any = false;
    for c in rel.components() {
        match c {
            Component::Normal(n) if !ignored(n) => any = true,
            _ => return false,
        }
    }
    any
}

/// The output folder for a file at `rel` (relative to the inbox): `base` joined with each
/// parent folder's name normalised like output names (controls, `..`, reserved device names
/// and separators cannot survive). `None` when `rel` is not a plain relative path.
pub fn out_dir_for(base: &Path, rel: &Path) -> Option<PathBuf> {
    let parent = rel.parent()?;
    let mut dir = base.to_owned();
    for c in parent.components() {
        match c {
            Component::Normal(n) => dir.push(normalize_filename(&n.to_string_lossy()).name),
            _ => return None,
        }
    }
    Some(dir)
}

/// What is known of a file while it settles: it is taken once this stayed the same for
/// `settle_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    size: u64,
    mtime: Option<SystemTime>,
    ino: u64,
}

impl Seen {
    /// From a file's metadata.
    pub fn of(meta: &std::fs::Metadata) -> Seen {
        Seen {
            size: meta.len(),
            mtime: meta.modified().ok(),
            ino: meta.ino(),
        }
    }
}

/// Files seen in the inbox, waiting to be stable (see [`Settle::observe`] and
/// [`Settle::due`]).
#[derive(Debug, Default)]
pub struct Settle {
    pending: BTreeMap<PathBuf, (Seen, Instant)>,
}

impl Settle {
    /// Records a sighting of `rel` at `now`: its settling time restarts when it changed.
    /// Returns false (nothing recorded) when [`MAX_PENDING`] files are already tracked.
    pub fn observe(&mut self, rel: &Path, seen: Seen, now: Instant) -> bool {
        let full = self.pending.len() >= MAX_PENDING;
        match self.pending.get_mut(rel) {
            Some(entry) => {
                if entry.0 != seen {
                    *entry = (seen, now);
                }
                true
            }
            None if full => false,
            None => {
                self.pending.insert(rel.to_owned(), (seen, now));
                true
            }
        }
    }

    /// Files unchanged since at least `settle` before `now`, in path order, at most `limit`.
    /// They still have to be looked at once more ([`Settle::confirm`]) before being claimed.
    pub fn due(&self, now: Instant, settle: Duration, limit: usize) -> Vec<PathBuf> {
        self.pending
            .iter()
            .filter(|(_, (_, since))| now.saturating_duration_since(*since) >= settle)
            .take(limit)
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// Whether `rel`, looked at again (`now_seen`; `None` = gone or not a file), is still what
    /// settled: then it is forgotten (the caller claims it). Otherwise its settling restarts
    /// (or it is forgotten when gone).
    pub fn confirm(&mut self, rel: &Path, now_seen: Option<Seen>, now: Instant) -> bool {
        let Some(seen) = now_seen else {
            self.pending.remove(rel);
            return false;
        };
        match self.pending.get_mut(rel) {
            Some(entry) if entry.0 == seen => {
                self.pending.remove(rel);
                true
            }
            Some(entry) => {
                *entry = (seen, now);
                false
            }
            None => false,
        }
    }

    /// Forgets `rel`.
    pub fn forget(&mut self, rel: &Path) {
        self.pending.remove(rel);
    }

    /// How many files are settling.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether no file is settling.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

/// What one walk of a folder found.
#[derive(Debug, Default)]
pub struct Walked {
    /// Regular files that may be taken, with what they look like now.
    pub files: Vec<(PathBuf, Seen)>,
    /// Symlinks, FIFOs, sockets and devices: never opened (logged by the caller).
    pub special: Vec<(PathBuf, &'static str)>,
    /// The walk stopped at its limit: more files are there.
    pub truncated: bool,
}

/// Walks `root` without following symlinks, skipping [`ignored`] names, one directory listing
/// at a time, and stops after `limit` files (the next walk finds the rest): only paths and
/// metadata are held, never contents.
pub fn walk(root: &Path, limit: usize) -> Walked {
    let mut out = Walked::default();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel_dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(root.join(&rel_dir)) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if ignored(&name) {
                continue;
            }
            let rel = rel_dir.join(&name);
            let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
                continue;
            };
            let ft = meta.file_type();
            if ft.is_dir() {
                stack.push(rel);
            } else if ft.is_file() {
                if out.files.len() >= limit {
                    out.truncated = true;
                    return out;
                }
                out.files.push((rel, Seen::of(&meta)));
            } else {
                out.special
                    .push((rel, crate::sources::files::describe_type(ft)));
            }
        }
    }
    out
}

/// Renames `from` to `to` unless `to` exists (`EEXIST` then); atomic.
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    nix::fcntl::renameat2(
        nix::fcntl::AT_FDCWD,
        from,
        nix::fcntl::AT_FDCWD,
        to,
        nix::fcntl::RenameFlags::RENAME_NOREPLACE,
    )
    .map_err(io::Error::from)
}

/// Hex SHA-256.
fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// What the marker of a work entry records (see the module docs).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Marker {
    /// The entry's path relative to `work/` (for people; lossy).
    rel_path: String,
    /// SHA-256 of the claimed input.
    input_sha256: String,
    /// The name written in the output folder (the output or the blocked note).
    written: String,
    /// SHA-256 of the bytes written there.
    written_sha256: String,
    /// The report, as it will be written (output name and quarantine id set).
    report: Report,
    /// Short id of this file job (audit `queue_id`, logs).
    queue_id: String,
    /// Milliseconds spent sanitizing.
    sanitize_ms: u64,
}

/// How one claimed file ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finished {
    /// An output or a blocked note is in the outbox (this path); the work entry is gone.
    Done {
        /// What was written in the outbox.
        written: PathBuf,
        /// The verdict.
        verdict: Verdict,
    },
    /// Could not be done now; the file is back in the inbox (or, failing that, still in
    /// `work/`) and will be tried again.
    Retry(String),
    /// The output is visible but the entry could not be finished (report, cleanup): it stays
    /// in `work/` with its marker and the next rescan finishes it.
    Unfinished(String),
    /// Nothing to do: `work/` has no such entry (another run of the loop finished it).
    Gone,
}

/// The drop directory's folders and the pieces it hands files to.
pub struct Dropdir {
    inbox: PathBuf,
    outbox: PathBuf,
    work: PathBuf,
    reports: Option<PathBuf>,
    max_input: u64,
    transform: Arc<Current>,
    vault: Arc<Vault>,
    audit: Option<Arc<AuditLog>>,
}

impl std::fmt::Debug for Dropdir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dropdir")
            .field("inbox", &self.inbox)
            .field("outbox", &self.outbox)
            .field("work", &self.work)
            .field("reports", &self.reports)
            .finish_non_exhaustive()
    }
}

/// Whether `a` is `b` or inside it (both canonical).
fn within(a: &Path, b: &Path) -> bool {
    a.starts_with(b)
}

impl Dropdir {
    /// Checks and prepares the folders of `settings` (created when missing): inbox, outbox and
    /// work must be distinct and not inside one another, and `work` must be on the inbox's
    /// file system (claims are renames).
    pub fn open(
        settings: &DropdirSettings,
        max_input: u64,
        transform: Arc<Current>,
        vault: Arc<Vault>,
        audit: Option<Arc<AuditLog>>,
    ) -> anyhow::Result<Dropdir> {
        let mut canon = Vec::new();
        for (key, p) in [
            ("inbox", &settings.inbox),
            ("outbox", &settings.outbox),
            ("work", &settings.work),
        ] {
            if p.as_os_str().is_empty() {
                bail!("dropdir.{key} is not set");
            }
            std::fs::create_dir_all(p)
                .with_context(|| format!("dropdir.{key} {}: cannot create it", p.display()))?;
            let c = std::fs::canonicalize(p)
                .with_context(|| format!("dropdir.{key} {}", p.display()))?;
            canon.push((key, c));
        }
        let reports = if settings.reports.as_os_str().is_empty() {
            None
        } else {
            std::fs::create_dir_all(&settings.reports).with_context(|| {
                format!(
                    "dropdir.reports {}: cannot create it",
                    settings.reports.display()
                )
            })?;
            let c = std::fs::canonicalize(&settings.reports)
                .with_context(|| format!("dropdir.reports {}", settings.reports.display()))?;
            canon.push(("reports", c));
            Some(settings.reports.clone())
        };
        for (i, (ka, a)) in canon.iter().enumerate() {
            for (kb, b) in canon.iter().skip(i + 1) {
                // Reports may share the outbox (that is the default: beside each output).
                let allowed = matches!((*ka, *kb), ("outbox", "reports")) && within(b, a);
                if (within(a, b) || within(b, a)) && !allowed {
                    bail!(
                        "dropdir.{ka} ({}) and dropdir.{kb} ({}) overlap: originals, work in \
                         progress and safe outputs must live in separate folders",
                        a.display(),
                        b.display()
                    );
                }
            }
        }
        let dev = |p: &Path| std::fs::metadata(p).map(|m| m.dev());
        let (inbox_dev, work_dev) = (
            dev(&settings.inbox).context("dropdir.inbox")?,
            dev(&settings.work).context("dropdir.work")?,
        );
        if inbox_dev != work_dev {
            bail!(
                "dropdir.work ({}) is not on the same file system as dropdir.inbox ({}): files \
                 are claimed by renaming them, which only works within one file system",
                settings.work.display(),
                settings.inbox.display()
            );
        }
        // Canonical paths from here on: inotify reports events under the absolute path, and
        // a relative inbox (`mugai-data/inbox` in the bundled configuration) would match none.
        let canonical = |key: &str| {
            canon
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, c)| c.clone())
                .unwrap_or_default()
        };
        Ok(Dropdir {
            inbox: canonical("inbox"),
            outbox: canonical("outbox"),
            work: canonical("work"),
            reports: reports.map(|_| canonical("reports")),
            max_input,
            transform,
            vault,
            audit,
        })
    }

    /// The inbox.
    pub fn inbox(&self) -> &Path {
        &self.inbox
    }

    /// Claims `inbox/rel` by renaming it to `work/rel`. `AlreadyExists` when the same path is
    /// still in progress; `NotFound` when it went away.
    pub fn claim(&self, rel: &Path) -> io::Result<()> {
        if !takeable(rel) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a path the drop directory takes",
            ));
        }
        let to = self.work.join(rel);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)?;
        }
        // No fsync here: the marker written into the same folder before any output syncs it
        // (see "Durability" in the module docs).
        rename_noreplace(&self.inbox.join(rel), &to)
    }

    /// [`Dropdir::claim`], then checks the claimed file is still what settled (`seen`); if a
    /// writer changed it at the last moment it goes straight back (`Interrupted`).
    pub fn claim_settled(&self, rel: &Path, seen: Seen) -> io::Result<()> {
        self.claim(rel)?;
        let now = std::fs::symlink_metadata(self.work.join(rel)).map(|m| Seen::of(&m))?;
        if now != seen {
            self.unclaim(rel)?;
            return Err(io::Error::new(
                io::ErrorKind::Interrupted,
                "changed while being claimed",
            ));
        }
        Ok(())
    }

    /// Gives `work/rel` back to the inbox (under a numbered name if the inbox has a new file
    /// of that name) and drops its marker. Returns where it went.
    pub fn unclaim(&self, rel: &Path) -> io::Result<PathBuf> {
        let from = self.work.join(rel);
        let name = rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
        let dir = match rel.parent() {
            Some(p) => self.inbox.join(p),
            None => self.inbox.clone(),
        };
        std::fs::create_dir_all(&dir)?;
        let mut result = Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "no free name in the inbox",
        ));
        for n in 1..=MAX_SUFFIX {
            let to = if n == 1 {
                self.inbox.join(rel)
            } else {
                dir.join(suffixed(&name, n))
            };
            match rename_noreplace(&from, &to) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    result = Err(e);
                    break;
                }
                Ok(()) => {
                    result = Ok(to);
                    break;
                }
            }
        }
        let to = result?;
        sync_dir(&dir)?;
        let _ = std::fs::remove_file(self.marker_path(rel));
        self.prune_work_dirs(rel);
        Ok(to)
    }

    /// The marker of `work/rel`.
    fn marker_path(&self, rel: &Path) -> PathBuf {
        let name = rel.file_name().unwrap_or_default();
        let hash = sha256_hex(name.as_encoded_bytes());
        let file = format!("{MARKER_PREFIX}{}.json", hash.get(..32).unwrap_or(&hash));
        match rel.parent() {
            Some(p) => self.work.join(p).join(file),
            None => self.work.join(file),
        }
    }

    /// Removes the empty folders of `work/` on `rel`'s way up (not `work/` itself).
    fn prune_work_dirs(&self, rel: &Path) {
        let mut cur = rel.parent();
        while let Some(p) = cur {
            if p.as_os_str().is_empty() || std::fs::remove_dir(self.work.join(p)).is_err() {
                break;
            }
            cur = p.parent();
        }
    }

    /// Entries in `work/` (left by a crash, or not finished), relative paths, sorted.
    pub fn leftovers(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = walk(&self.work, usize::MAX)
            .files
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        v.sort();
        v
    }

    /// At start only, before any claim (a marker being written would look stale): removes
    /// temporary files from `work/`, and markers whose entry is gone (a crash between the
    /// removal of an entry and of its marker). Returns the entries, as [`Dropdir::leftovers`].
    pub fn recover(&self) -> Vec<PathBuf> {
        let entries: HashSet<PathBuf> = self.leftovers().into_iter().collect();
        let wanted: HashSet<PathBuf> = entries.iter().map(|r| self.marker_path(r)).collect();
        let mut dirs = vec![self.work.clone()];
        while let Some(dir) = dirs.pop() {
            let Ok(list) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in list.flatten() {
                let name = e.file_name();
                let n = name.to_string_lossy();
                let path = e.path();
                let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
                if is_dir && !n.starts_with('.') {
                    dirs.push(path);
                } else if (n.starts_with(TEMP_PREFIX) || n.starts_with(MARKER_PREFIX))
                    && !is_dir
                    && !wanted.contains(&path)
                {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let mut v: Vec<PathBuf> = entries.into_iter().collect();
        v.sort();
        v
    }

    /// Removes temporary files older than an hour from the outbox (and the reports folder):
    /// writes a crash interrupted.
    pub fn sweep_outbox(&self) -> usize {
        let mut removed = 0;
        let mut dirs = vec![self.outbox.clone()];
        dirs.extend(self.reports.clone());
        while let Some(dir) = dirs.pop() {
            let Ok(list) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in list.flatten() {
                let Ok(meta) = std::fs::symlink_metadata(e.path()) else {
                    continue;
                };
                if meta.is_dir() {
                    dirs.push(e.path());
                } else if meta.is_file()
                    && e.file_name().to_string_lossy().starts_with(TEMP_PREFIX)
                    && meta
                        .modified()
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .is_some_and(|age| age > TEMP_MAX_AGE)
                    && std::fs::remove_file(e.path()).is_ok()
                {
                    removed += 1;
                }
            }
        }
        removed
    }

    /// Processes the claimed entry `work/rel` to the end (see the module docs); blocking.
    /// Whatever happens, the file is not lost: it ends as an output or a blocked note, back in
    /// the inbox, or still in `work/`.
    pub fn process(&self, rel: &Path) -> Finished {
        self.process_then(rel, || {})
    }

    /// [`Dropdir::process`], calling `sanitized` as soon as the transform is done (or was not
    /// needed): the loop's sanitizing slot is free from then on, while this file's writes
    /// (quarantine, output, report) go on.
    pub fn process_then(&self, rel: &Path, sanitized: impl FnOnce()) -> Finished {
        if let Err(e) = std::fs::symlink_metadata(self.work.join(rel))
            && e.kind() == io::ErrorKind::NotFound
        {
            return Finished::Gone;
        }
        let finished = self.process_inner(rel, sanitized);
        if let Finished::Retry(reason) = &finished {
            match self.unclaim(rel) {
                Ok(back) => tracing::warn!(
                    path = %shown(rel),
                    back = %shown(back.strip_prefix(&self.inbox).unwrap_or(&back)),
                    reason = %reason,
                    "File given back to the inbox; it will be tried again."
                ),
                Err(e) => tracing::error!(
                    path = %shown(rel),
                    reason = %reason,
                    error = %e,
                    "File could not be given back to the inbox; it stays in the work folder and is tried again at the next rescan."
                ),
            }
        }
        finished
    }

    fn process_inner(&self, rel: &Path, sanitized: impl FnOnce()) -> Finished {
        let started = Instant::now();
        let path = self.work.join(rel);
        let item = match read_file(&path, self.max_input, Follow::Walked) {
            Ok(item) => item,
            Err(e) => return Finished::Retry(format!("cannot read it: {e}")),
        };
        let input_sha = match &item.real {
            Some((_, sha)) => sha.clone(),
            None => sha256_hex(&item.bytes),
        };
        let Some(out_dir) = out_dir_for(&self.outbox, rel) else {
            return Finished::Retry("not a relative path".into());
        };

        // A marker whose output is in place: a crash came after the output; only finish.
        if let Some(marker) = self.resumable(rel, &out_dir, &input_sha) {
            tracing::info!(path = %shown(rel), queue_id = %marker.queue_id, "Finishing a file whose output was written before a restart.");
            return self.finish(rel, &out_dir, &marker, started);
        }
        let _ = std::fs::remove_file(self.marker_path(rel));

        let rel_text = rel.to_string_lossy().into_owned();
        let queue_id = queue_id();
        let job = Job {
            mode: Mode::detect(item.name.as_deref(), &item.bytes),
            input: item.bytes,
            name: item.name,
            password: None,
        };
        let ran = self.transform.get().run(&job);
        sanitized();
        let mut outcome = match ran {
            Ok(o) => o,
            Err(e) => {
                let kind = if e.transient {
                    "transient"
                } else {
                    "permanent"
                };
                return Finished::Retry(format!("the sanitizer could not run ({kind}): {e}"));
            }
        };
        let sanitize_ms = ms(started.elapsed());
        if let Some((size, sha)) = &item.real {
            outcome.report.input.size = *size;
            outcome.report.input.sha256.clone_from(sha);
        }

        // The original is durable in the quarantine before anything is visible.
        if outcome.report.verdict != Verdict::Clean && !item.truncated {
            let held = HeldItem {
                file_name: Some(rel_text.clone()),
                size: job.input.len() as u64,
                ..HeldItem::for_report(&outcome.report, "dropdir")
            };
            outcome.report.quarantine_id = Some(QuarantineId::of(&job.input).to_string());
            if let Err(e) = self.vault.hold(&job.input, &held, &outcome.report) {
                let kind = if e.is_transient() {
                    "transient"
                } else {
                    "permanent"
                };
                tracing::error!(path = %shown(&rel_text), error = %e, "Quarantine failed ({kind}).");
                return Finished::Retry(format!("quarantine failed ({kind}): {e}"));
            }
        }

        drop(job);
        let held = outcome.report.quarantine_id.is_some();
        let report_id = outcome.report.id.clone();
        let finished = self.write_out(
            rel,
            &out_dir,
            outcome,
            &input_sha,
            queue_id,
            sanitize_ms,
            started,
        );
        if held && let Finished::Retry(reason) = &finished {
            // The row says why the file is not out yet (it comes back with a new report).
            if let Err(e) = self
                .vault
                .set_delivery(&report_id, HoldStatus::Deferred, reason)
            {
                tracing::warn!(error = %e, "Cannot mark the quarantine row deferred.");
            }
        }
        finished
    }

    /// Writes the marker, then the output or the blocked note, then finishes.
    #[expect(
        clippy::too_many_arguments,
        reason = "one private step of process_inner"
    )]
    fn write_out(
        &self,
        rel: &Path,
        out_dir: &Path,
        outcome: crate::sanitize::JobOutcome,
        input_sha: &str,
        queue_id: String,
        sanitize_ms: u64,
        started: Instant,
    ) -> Finished {
        let rel_text = rel.to_string_lossy().into_owned();
        // What to write: the output, or the note saying why there is none.
        let (base, bytes, blocked) = match &outcome.output {
            Some(out) => (out.name.clone(), out.bytes().to_vec(), false),
            None => {
                let name = rel
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let note = blocked_note(&outcome.report, outcome.report.quarantine_id.is_some());
                (normalize_filename(&name).name, note.into_bytes(), true)
            }
        };
        if let Err(e) = std::fs::create_dir_all(out_dir) {
            return Finished::Retry(format!("outbox {}: {e}", out_dir.display()));
        }
        let written_sha256 = sha256_hex(&bytes);
        for n in 1..=MAX_SUFFIX {
            let candidate = if blocked {
                format!("{}.blocked.txt", suffixed(&base, n))
            } else {
                suffixed(&base, n)
            };
            if std::fs::symlink_metadata(out_dir.join(&candidate)).is_ok() {
                continue;
            }
            let mut report = outcome.report.clone();
            if let Some(info) = report.output.as_mut() {
                info.name = Some(candidate.clone());
            }
            let marker = Marker {
                rel_path: rel_text.clone(),
                input_sha256: input_sha.to_owned(),
                written: candidate.clone(),
                written_sha256: written_sha256.clone(),
                report,
                queue_id: queue_id.clone(),
                sanitize_ms,
            };
            if let Err(e) = self.write_marker(rel, &marker) {
                return Finished::Retry(format!("cannot write the claim marker: {e}"));
            }
            match write_atomic(out_dir, &candidate, &bytes, Existing::Keep, Access::Umask) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    let kind = if is_transient(&e) {
                        "transient"
                    } else {
                        "permanent"
                    };
                    return Finished::Retry(format!(
                        "cannot write {} ({kind}): {e}",
                        out_dir.join(&candidate).display()
                    ));
                }
                Ok(_) => return self.finish(rel, out_dir, &marker, started),
            }
        }
        Finished::Retry(format!(
            "{MAX_SUFFIX} files named like {base:?} are already in the outbox"
        ))
    }

    fn write_marker(&self, rel: &Path, marker: &Marker) -> io::Result<()> {
        let path = self.marker_path(rel);
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "marker path"));
        };
        let json = serde_json::to_vec(marker).map_err(io::Error::other)?;
        write_atomic(
            dir,
            &name.to_string_lossy(),
            &json,
            Existing::Replace,
            Access::Private,
        )
        .map(drop)
    }

    /// The marker of `rel` when its output is already in place (see the module docs).
    fn resumable(&self, rel: &Path, out_dir: &Path, input_sha: &str) -> Option<Marker> {
        let text = std::fs::read(self.marker_path(rel)).ok()?;
        let marker: Marker = serde_json::from_slice(&text).ok()?;
        if marker.input_sha256 != input_sha {
            return None;
        }
        let written = std::fs::read(out_dir.join(&marker.written)).ok()?;
        (sha256_hex(&written) == marker.written_sha256).then_some(marker)
    }

    /// The output is in place: report, audit line, then the work entry and its marker go.
    fn finish(&self, rel: &Path, out_dir: &Path, marker: &Marker, started: Instant) -> Finished {
        let written = out_dir.join(&marker.written);
        let out_rel = written
            .strip_prefix(&self.outbox)
            .unwrap_or(&written)
            .to_string_lossy()
            .into_owned();
        let cx = crate::sinks::report::Context {
            input_path: Some(marker.rel_path.clone()),
            output_path: marker.report.output.is_some().then(|| out_rel.clone()),
        };
        let line = crate::sinks::report::line(&marker.report, &cx);
        let stem = marker
            .written
            .strip_suffix(".blocked.txt")
            .unwrap_or(&marker.written);
        let report_dir = match &self.reports {
            Some(r) => out_dir_for(r, rel).unwrap_or_else(|| r.clone()),
            None => out_dir.to_owned(),
        };
        if let Err(e) = write_report(&report_dir, stem, &marker.report.id, &line) {
            tracing::error!(path = %shown(rel), error = %e, "Cannot write the report; the file stays in the work folder.");
            return Finished::Unfinished(format!("report: {e}"));
        }
        if marker.report.quarantine_id.is_some() {
            // The safe version (or the note) is out: the row is no longer waiting.
            let what = if marker.report.output.is_some() {
                "outbox"
            } else {
                "blocked note"
            };
            let reply = format!("{what}: {out_rel}");
            if let Err(e) =
                self.vault
                    .set_delivery(&marker.report.id, HoldStatus::Delivered, &reply)
            {
                tracing::warn!(path = %shown(rel), error = %e, "Cannot record the delivery in the quarantine index.");
            }
        }
        if let Some(audit) = &self.audit {
            let mut record = AuditRecord::from_report(&marker.report);
            record.queue_id.clone_from(&marker.queue_id);
            let total = ms(started.elapsed());
            record.durations_ms = Durations {
                sanitize: marker.sanitize_ms,
                deliver: total.saturating_sub(marker.sanitize_ms),
                total,
            };
            if let Err(e) = audit.append(&record) {
                tracing::error!(path = %shown(rel), error = %e, "Cannot append to the audit log.");
            }
        }
        // Not synced: an entry that comes back after a power cut finds its marker and output
        // and is only finished again.
        let entry = self.work.join(rel);
        if let Err(e) = std::fs::remove_file(&entry) {
            tracing::error!(path = %shown(rel), error = %e, "Cannot remove the finished file from the work folder.");
            return Finished::Unfinished(format!("cleanup: {e}"));
        }
        let _ = std::fs::remove_file(self.marker_path(rel));
        self.prune_work_dirs(rel);
        tracing::info!(
            queue_id = %marker.queue_id,
            path = %shown(rel),
            output = %shown(&out_rel),
            verdict = marker.report.verdict.as_str(),
            report_id = %marker.report.id,
            ms = ms(started.elapsed()),
            "file"
        );
        Finished::Done {
            written,
            verdict: marker.report.verdict,
        }
    }
}

/// Writes the report as `dir/STEM.report.json`, never over another file: an existing report
/// with the same id is ours (a resumed entry); another file there gets the report a numbered
/// name (`STEM.report (2).json`).
fn write_report(dir: &Path, stem: &str, id: &str, line: &str) -> io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let body = format!("{line}\n");
    for n in 1..=MAX_SUFFIX {
        let name = if n == 1 {
            format!("{stem}.report.json")
        } else {
            format!("{stem}.report ({n}).json")
        };
        match write_atomic(dir, &name, body.as_bytes(), Existing::Keep, Access::Umask) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let ours = std::fs::read(dir.join(&name))
                    .ok()
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                    .is_some_and(|v| v.get("id").and_then(|i| i.as_str()) == Some(id));
                if ours {
                    return Ok(dir.join(name));
                }
            }
            other => return other,
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "no free name for the report",
    ))
}

/// A path for logs: lossy, with controls and bidi characters escaped.
fn shown(p: impl AsRef<Path>) -> String {
    escape_for_display(&p.as_ref().to_string_lossy())
}

/// A short id for one file job (audit `queue_id`, logs).
fn queue_id() -> String {
    let n: u64 = rand::random();
    format!("D{:011X}", n & 0xFFF_FFFF_FFFF)
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The loop's timing, from `[dropdir]`.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How long a file must stay unchanged.
    pub settle: Duration,
    /// Between full walks of the inbox (and of `work/`).
    pub rescan: Duration,
    /// Files processed at once.
    pub max_concurrent: usize,
}

/// What the inotify thread tells the loop.
struct Events {
    rx: mpsc::Receiver<PathBuf>,
    rescan: Arc<AtomicBool>,
    _watcher: Option<notify::RecommendedWatcher>,
}

/// Starts inotify on the inbox (recursive). Paths come through a bounded channel; when it is
/// full, or a folder appears, the loop is asked for a full rescan instead. Without inotify
/// (limits, unsupported file system) the periodic rescan does the work alone.
fn watch_inbox(inbox: &Path) -> Events {
    use notify::Watcher as _;
    let (tx, rx) = mpsc::channel(1024);
    let rescan = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&rescan);
    let handler = move |res: notify::Result<notify::Event>| match res {
        Ok(ev) => {
            for p in ev.paths {
                if tx.try_send(p).is_err() {
                    flag.store(true, Ordering::Relaxed);
                }
            }
        }
        Err(_) => flag.store(true, Ordering::Relaxed),
    };
    let watcher = match notify::recommended_watcher(handler) {
        Ok(mut w) => match w.watch(inbox, notify::RecursiveMode::Recursive) {
            Ok(()) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "Cannot watch the inbox with inotify; relying on rescans.");
                None
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "No inotify; relying on rescans.");
            None
        }
    };
    Events {
        rx,
        rescan,
        _watcher: watcher,
    }
}

/// Runs the drop directory until `state` leaves `Running`, then lets the files in progress
/// finish. Entries left in `work/` by an earlier run are processed first.
pub async fn run(dropdir: Arc<Dropdir>, timing: Timing, mut state: watch::Receiver<RunState>) {
    let mut events = watch_inbox(&dropdir.inbox);
    let slots = Arc::new(Semaphore::new(timing.max_concurrent.max(1)));
    // A file holds its slot while it is read and sanitized; its writes (quarantine, output,
    // report: mostly waiting for fsync) overlap the next file's sanitizing, up to this many
    // files in all.
    let max_in_flight = timing.max_concurrent.max(1).saturating_mul(2);
    // Rung when a slot is freed mid-task, so the next file starts without waiting for a tick.
    let freed = Arc::new(tokio::sync::Notify::new());
    let mut settle = Settle::default();
    let mut redo: VecDeque<PathBuf> = VecDeque::new();
    let mut in_flight: HashMap<PathBuf, tokio::task::Id> = HashMap::new();
    let mut more = false;
    let mut backoff: BTreeMap<PathBuf, Instant> = BTreeMap::new();
    let mut warned: HashSet<PathBuf> = HashSet::new();
    let mut tasks: tokio::task::JoinSet<(PathBuf, TaskEnd)> = tokio::task::JoinSet::new();
    let tick_every = (timing.settle / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut tick = tokio::time::interval(tick_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rescan = tokio::time::interval(timing.rescan.max(Duration::from_secs(1)));
    rescan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_walk: Option<Instant> = None;

    let step = |settle: &mut Settle,
                redo: &mut VecDeque<PathBuf>,
                in_flight: &mut HashMap<PathBuf, tokio::task::Id>,
                backoff: &mut BTreeMap<PathBuf, Instant>,
                tasks: &mut tokio::task::JoinSet<(PathBuf, TaskEnd)>| {
        let now = Instant::now();
        backoff.retain(|_, until| *until > now);
        // Leftovers of `work/` first, then stable inbox files.
        while let Some(rel) = redo.front().cloned() {
            if in_flight.len() >= max_in_flight {
                return;
            }
            let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
                return;
            };
            redo.pop_front();
            if !in_flight.contains_key(&rel) {
                launch(&dropdir, rel, None, (permit, &freed), tasks, in_flight);
            }
        }
        let free = slots.available_permits();
        if free == 0 {
            return;
        }
        let limit = free.saturating_mul(4).saturating_add(backoff.len());
        for rel in settle.due(now, timing.settle, limit) {
            if backoff.contains_key(&rel) {
                continue;
            }
            if in_flight.len() >= max_in_flight {
                return;
            }
            let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
                return;
            };
            let now_seen = std::fs::symlink_metadata(dropdir.inbox.join(&rel))
                .ok()
                .filter(|m| m.is_file())
                .map(|m| Seen::of(&m));
            if !settle.confirm(&rel, now_seen, now) {
                continue;
            }
            if in_flight.contains_key(&rel) {
                // The same name is still in progress: look again later.
                if let Some(s) = now_seen {
                    settle.observe(&rel, s, now);
                }
                continue;
            }
            launch(&dropdir, rel, now_seen, (permit, &freed), tasks, in_flight);
        }
    };

    // Start: what an earlier run left in `work/`, then the inbox as it is.
    let d = Arc::clone(&dropdir);
    if let Ok(left) = tokio::task::spawn_blocking(move || d.recover()).await {
        if !left.is_empty() {
            tracing::info!(
                files = left.len(),
                "Processing files left in the work folder by an earlier run."
            );
        }
        redo.extend(left);
    }
    let mut walking: Option<tokio::task::JoinHandle<(Walked, Vec<PathBuf>)>> = None;
    let mut want_walk = true;

    loop {
        if *state.borrow() != RunState::Running {
            break;
        }
        if events.rescan.swap(false, Ordering::Relaxed) {
            want_walk = true;
        }
        // The last walk stopped at the limit: walk again once half of it is taken.
        if more && settle.len() < MAX_PENDING / 2 {
            more = false;
            want_walk = true;
        }
        let walk_allowed = last_walk.is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        if want_walk && walking.is_none() && walk_allowed {
            want_walk = false;
            last_walk = Some(Instant::now());
            let d = Arc::clone(&dropdir);
            let room = MAX_PENDING.saturating_sub(settle.len());
            walking = Some(tokio::task::spawn_blocking(move || {
                (walk(&d.inbox, room), d.leftovers())
            }));
        }
        tokio::select! {
            changed = state.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            Some(path) = events.rx.recv() => {
                let now = Instant::now();
                let mut batch = vec![path];
                while let Ok(p) = events.rx.try_recv() {
                    batch.push(p);
                    if batch.len() >= 1024 { break; }
                }
                for p in batch {
                    let Ok(rel) = p.strip_prefix(&dropdir.inbox).map(Path::to_path_buf) else {
                        continue;
                    };
                    if !takeable(&rel) {
                        continue;
                    }
                    match std::fs::symlink_metadata(&p) {
                        Ok(m) if m.is_file() => {
                            if !settle.observe(&rel, Seen::of(&m), now) {
                                want_walk = true;
                            }
                        }
                        // A folder moved in whole brings files no event announced.
                        Ok(m) if m.is_dir() => want_walk = true,
                        Ok(m) => warn_special(&mut warned, &rel, crate::sources::files::describe_type(m.file_type())),
                        Err(_) => settle.forget(&rel),
                    }
                }
            }
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                match joined {
                    Ok((rel, end)) => {
                        in_flight.remove(&rel);
                        let now = Instant::now();
                        match end {
                            TaskEnd::Finished(Finished::Retry(_)) => {
                                backoff.insert(rel, now + RETRY_DELAY);
                            }
                            TaskEnd::Finished(_) => {}
                            TaskEnd::NotClaimed(e) => {
                                // Still there (changed at the last moment, or the same name
                                // still being finished in `work/`): it settles again.
                                if let Ok(m) = std::fs::symlink_metadata(dropdir.inbox.join(&rel))
                                    && m.is_file()
                                {
                                    settle.observe(&rel, Seen::of(&m), now);
                                }
                                if !matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::AlreadyExists | io::ErrorKind::Interrupted) {
                                    backoff.insert(rel.clone(), now + RETRY_DELAY);
                                    tracing::warn!(path = %shown(&rel), error = %e, "Cannot claim a file; it stays in the inbox.");
                                }
                            }
                        }
                    }
                    Err(e) => {
                        // A panic: the entry stays in `work/`; the next rescan finds it.
                        tracing::error!(error = %e, "A drop-directory task failed; its file stays in the work folder.");
                        let id = e.id();
                        in_flight.retain(|_, t| *t != id);
                    }
                }
                step(&mut settle, &mut redo, &mut in_flight, &mut backoff, &mut tasks);
            }
            done = async {
                match walking.as_mut() {
                    Some(h) => h.await.ok(),
                    None => std::future::pending().await,
                }
            }, if walking.is_some() => {
                walking = None;
                if let Some((found, left)) = done {
                    let now = Instant::now();
                    more = found.truncated;
                    for (rel, seen) in found.files {
                        if !in_flight.contains_key(&rel) {
                            settle.observe(&rel, seen, now);
                        }
                    }
                    for (rel, what) in found.special {
                        warn_special(&mut warned, &rel, what);
                    }
                    for rel in left {
                        if !in_flight.contains_key(&rel) && !redo.contains(&rel) {
                            redo.push_back(rel);
                        }
                    }
                }
                step(&mut settle, &mut redo, &mut in_flight, &mut backoff, &mut tasks);
            }
            _ = tick.tick() => {
                step(&mut settle, &mut redo, &mut in_flight, &mut backoff, &mut tasks);
            }
            () = freed.notified() => {
                step(&mut settle, &mut redo, &mut in_flight, &mut backoff, &mut tasks);
            }
            _ = rescan.tick() => want_walk = true,
        }
    }
    if let Some(h) = walking {
        h.abort();
    }
    if !tasks.is_empty() {
        tracing::info!(
            files = tasks.len(),
            "Drop directory stopping: finishing the files in progress."
        );
    }
    while tasks.join_next().await.is_some() {}
    tracing::info!("Drop directory stopped.");
}

/// How a task of the loop ended.
#[derive(Debug)]
enum TaskEnd {
    /// The entry was processed.
    Finished(Finished),
    /// The inbox file was not claimed (`Interrupted`: it changed at the last moment and was
    /// put back at once).
    NotClaimed(io::Error),
}

/// On the blocking pool, holding `permit` until the transform is done: claims `inbox/rel` when `claim` says what the
/// settled file looked like (and puts it straight back if the claimed file is not that),
/// then processes `work/rel`.
fn launch(
    dropdir: &Arc<Dropdir>,
    rel: PathBuf,
    claim: Option<Seen>,
    (permit, freed): (tokio::sync::OwnedSemaphorePermit, &Arc<tokio::sync::Notify>),
    tasks: &mut tokio::task::JoinSet<(PathBuf, TaskEnd)>,
    in_flight: &mut HashMap<PathBuf, tokio::task::Id>,
) {
    let d = Arc::clone(dropdir);
    let key = rel.clone();
    let freed = Arc::clone(freed);
    let handle = tasks.spawn_blocking(move || {
        let end = match claim.map(|seen| d.claim_settled(&rel, seen)) {
            Some(Err(e)) => TaskEnd::NotClaimed(e),
            Some(Ok(())) | None => TaskEnd::Finished(d.process_then(&rel, move || {
                drop(permit);
                freed.notify_one();
            })),
        };
        (rel, end)
    });
    in_flight.insert(key, handle.id());
}

/// Logs a symlink or special file in the inbox once per path (they are left where they are).
fn warn_special(warned: &mut HashSet<PathBuf>, rel: &Path, what: &str) {
    if warned.len() < MAX_PENDING && warned.insert(rel.to_owned()) {
        tracing::warn!(path = %shown(rel), kind = what, "Not a regular file: left in the inbox, never opened.");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sanitize::InProcess;
    use sanitizer_core::Policy;

    struct Fixture {
        _dir: tempfile::TempDir,
        root: PathBuf,
        dropdir: Dropdir,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        let settings = DropdirSettings {
            enabled: true,
            inbox: root.join("inbox"),
            outbox: root.join("outbox"),
            work: root.join("work"),
            ..DropdirSettings::default()
        };
        let vault = Vault::open(&crate::config::QuarantineSettings {
            dir: root.join("q"),
            ..crate::config::QuarantineSettings::default()
        })
        .unwrap();
        let transform = Arc::new(Current::new(Arc::new(InProcess::new(Policy::default()))));
        let dropdir = Dropdir::open(&settings, 1 << 20, transform, Arc::new(vault), None).unwrap();
        Fixture {
            _dir: dir,
            root,
            dropdir,
        }
    }

    fn put(root: &Path, rel: &str, bytes: &[u8]) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }

    /// Every non-directory under `dir`, relative, sorted.
    fn files(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = walk_all(dir)
            .into_iter()
            .map(|p| p.strip_prefix(dir).unwrap().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn walk_all(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let Ok(list) = std::fs::read_dir(dir) else {
            return out;
        };
        for e in list.flatten() {
            if e.file_type().unwrap().is_dir() {
                out.extend(walk_all(&e.path()));
            } else {
                out.push(e.path());
            }
        }
        out
    }

    #[test]
    fn names_that_are_never_taken() {
        for n in [
            ".hidden",
            "x.part",
            "X.PART",
            "a.tmp",
            "~$doc.docx",
            ".mugai-tmp-1",
        ] {
            assert!(ignored(OsStr::new(n)), "{n}");
        }
        for n in ["a.pdf", "part", "a.partial", "tmp.txt", "見積書.docx"] {
            assert!(!ignored(OsStr::new(n)), "{n}");
        }
        assert!(takeable(Path::new("sub/a.pdf")));
        assert!(!takeable(Path::new(".git/a.pdf")));
        assert!(!takeable(Path::new("sub/../a.pdf")));
        assert!(!takeable(Path::new("/etc/passwd")));
        assert!(!takeable(Path::new("")));
    }

    #[test]
    fn output_folders_are_normalised() {
        let base = Path::new("/out");
        assert_eq!(
            out_dir_for(base, Path::new("a/b/c.pdf")),
            Some(PathBuf::from("/out/a/b"))
        );
        assert_eq!(out_dir_for(base, Path::new("c.pdf")), Some(base.into()));
        assert_eq!(
            out_dir_for(base, Path::new("con/x\u{1b}[31m/c.pdf")),
            Some(PathBuf::from("/out/con_/x_[31m"))
        );
        assert_eq!(out_dir_for(base, Path::new("../c.pdf")), None);
        assert_eq!(out_dir_for(base, Path::new("/etc/c.pdf")), None);
    }

    #[test]
    fn a_file_is_taken_only_once_it_stopped_changing() {
        let mut s = Settle::default();
        let t0 = Instant::now();
        let settle = Duration::from_secs(2);
        let a = Path::new("a.pdf");
        let v1 = Seen {
            size: 10,
            mtime: None,
            ino: 1,
        };
        let v2 = Seen { size: 20, ..v1 };
        assert!(s.observe(a, v1, t0));
        assert!(s.due(t0 + Duration::from_secs(1), settle, 10).is_empty());
        // It grew: the clock starts again.
        assert!(s.observe(a, v2, t0 + Duration::from_secs(1)));
        assert!(s.due(t0 + Duration::from_secs(2), settle, 10).is_empty());
        assert_eq!(s.due(t0 + Duration::from_secs(3), settle, 10), vec![a]);
        // Changed again at the last look: not taken, waits again.
        assert!(!s.confirm(a, Some(v1), t0 + Duration::from_secs(3)));
        assert!(s.due(t0 + Duration::from_secs(4), settle, 10).is_empty());
        assert!(s.confirm(a, Some(v1), t0 + Duration::from_secs(5)));
        assert!(s.is_empty());
        // Gone: forgotten.
        s.observe(a, v1, t0);
        assert!(!s.confirm(a, None, t0 + settle));
        assert!(s.is_empty());
        // A rename to another inode is a change too.
        s.observe(a, v1, t0);
        assert!(!s.confirm(a, Some(Seen { ino: 2, ..v1 }), t0 + settle));
    }

    #[test]
    fn walks_skip_ignored_and_special_files_and_stop_at_the_limit() {
        let f = fixture();
        let inbox = f.root.join("inbox");
        put(&inbox, "a.txt", b"a");
        put(&inbox, "sub/b.txt", b"b");
        put(&inbox, "sub/c.part", b"c");
        put(&inbox, ".hidden/d.txt", b"d");
        put(&inbox, "~$lock.docx", b"x");
        std::os::unix::fs::symlink("/etc/passwd", inbox.join("link.txt")).unwrap();
        nix::unistd::mkfifo(&inbox.join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let w = walk(&inbox, 100);
        let mut got: Vec<_> = w.files.iter().map(|(p, _)| p.clone()).collect();
        got.sort();
        assert_eq!(got, [PathBuf::from("a.txt"), PathBuf::from("sub/b.txt")]);
        let mut special: Vec<_> = w.special.iter().map(|(p, k)| (p.clone(), *k)).collect();
        special.sort();
        assert_eq!(
            special,
            [
                (PathBuf::from("fifo"), "a FIFO"),
                (PathBuf::from("link.txt"), "a symbolic link")
            ]
        );
        assert!(!w.truncated);
        let w = walk(&inbox, 1);
        assert_eq!(w.files.len(), 1);
        assert!(w.truncated);
    }

    #[test]
    fn claim_and_unclaim_never_overwrite() {
        let f = fixture();
        let inbox = f.root.join("inbox");
        let work = f.root.join("work");
        put(&inbox, "sub/a.txt", b"first");
        f.dropdir.claim(Path::new("sub/a.txt")).unwrap();
        assert_eq!(std::fs::read(work.join("sub/a.txt")).unwrap(), b"first");
        assert!(!inbox.join("sub/a.txt").exists());
        // The same name dropped again while the first is in progress waits in the inbox.
        put(&inbox, "sub/a.txt", b"second");
        let e = f.dropdir.claim(Path::new("sub/a.txt")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(inbox.join("sub/a.txt")).unwrap(), b"second");
        // Giving the first back keeps both.
        let back = f.dropdir.unclaim(Path::new("sub/a.txt")).unwrap();
        assert_eq!(back, inbox.join("sub/a (2).txt"));
        assert_eq!(std::fs::read(back).unwrap(), b"first");
        assert_eq!(std::fs::read(inbox.join("sub/a.txt")).unwrap(), b"second");
        assert!(files(&work).is_empty(), "{:?}", files(&work));
        // Symlinks and dot-paths are not claimed.
        std::os::unix::fs::symlink("/etc/passwd", inbox.join("l.txt")).unwrap();
        assert!(f.dropdir.claim(Path::new("../x")).is_err());
        assert!(f.dropdir.claim(Path::new(".x")).is_err());
    }

    #[test]
    fn a_file_changed_while_claimed_goes_straight_back() {
        let f = fixture();
        let inbox = f.root.join("inbox");
        put(&inbox, "a.txt", b"one");
        let settled = Seen::of(&std::fs::metadata(inbox.join("a.txt")).unwrap());
        std::fs::write(inbox.join("a.txt"), b"one and more").unwrap();
        let e = f
            .dropdir
            .claim_settled(Path::new("a.txt"), settled)
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::Interrupted);
        assert_eq!(std::fs::read(inbox.join("a.txt")).unwrap(), b"one and more");
        assert!(files(&f.root.join("work")).is_empty());
        // Unchanged: claimed. Processed twice (a stale rescan): the second finds nothing.
        let settled = Seen::of(&std::fs::metadata(inbox.join("a.txt")).unwrap());
        f.dropdir
            .claim_settled(Path::new("a.txt"), settled)
            .unwrap();
        assert!(matches!(
            f.dropdir.process(Path::new("a.txt")),
            Finished::Done { .. }
        ));
        assert_eq!(f.dropdir.process(Path::new("a.txt")), Finished::Gone);
    }

    #[test]
    fn a_symlink_swapped_in_is_never_read_and_goes_back() {
        let f = fixture();
        let work = f.root.join("work");
        std::fs::write(f.root.join("secret"), b"secret").unwrap();
        std::os::unix::fs::symlink(f.root.join("secret"), work.join("s.txt")).unwrap();
        let done = f.dropdir.process(Path::new("s.txt"));
        assert!(matches!(done, Finished::Retry(_)), "{done:?}");
        assert!(f.root.join("inbox/s.txt").symlink_metadata().is_ok());
        assert!(files(&f.root.join("outbox")).is_empty());
    }

    #[test]
    fn files_come_out_sanitized_with_reports_notes_and_quarantine() {
        let f = fixture();
        let work = f.root.join("work");
        let outbox = f.root.join("outbox");
        put(
            &work,
            "dept/page.html",
            b"<html><script>alert(1)</script><p>Hi</p></html>",
        );
        put(&work, "dept/setup.exe", b"MZ\x90\0");
        put(&work, "note.txt", b"hello");
        for rel in f.dropdir.leftovers() {
            assert!(matches!(f.dropdir.process(&rel), Finished::Done { .. }));
        }
        assert_eq!(
            files(&outbox),
            [
                "dept/page.txt",
                "dept/page.txt.report.json",
                "dept/setup.exe.blocked.txt",
                "dept/setup.exe.report.json",
                "note.txt",
                "note.txt.report.json",
            ]
        );
        let text = std::fs::read_to_string(outbox.join("dept/page.txt")).unwrap();
        assert!(text.contains("Hi") && !text.contains("alert"), "{text}");
        let note = std::fs::read_to_string(outbox.join("dept/setup.exe.blocked.txt")).unwrap();
        let report: serde_json::Value = serde_json::from_slice(
            &std::fs::read(outbox.join("dept/setup.exe.report.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(report["verdict"], "blocked");
        assert_eq!(report["input"]["path"], "dept/setup.exe");
        assert!(note.contains(report["id"].as_str().unwrap()), "{note}");
        assert!(note.contains("隔離保管"), "{note}");
        let rows = f
            .dropdir
            .vault
            .index()
            .search(&crate::sinks::index::Search::default())
            .unwrap();
        assert!(rows.iter().all(|r| r.status == HoldStatus::Delivered));
        assert!(
            rows.iter().any(|r| r.downstream_reply.as_deref()
                == Some("blocked note: dept/setup.exe.blocked.txt")),
            "{rows:?}"
        );
        let mut held: Vec<_> = rows
            .iter()
            .map(|r| (r.source.as_str(), r.file_name.clone().unwrap()))
            .collect();
        held.sort();
        assert_eq!(
            held,
            [
                ("dropdir", "dept/page.html".to_owned()),
                ("dropdir", "dept/setup.exe".to_owned())
            ]
        );
        assert!(files(&work).is_empty(), "{:?}", files(&work));
    }

    #[test]
    fn a_crash_after_the_output_never_writes_it_twice() {
        let f = fixture();
        let work = f.root.join("work");
        let outbox = f.root.join("outbox");
        put(&work, "sub/a.html", b"<p>one</p><script>x()</script>");
        // Run to the end, then put the entry and its marker back as a crash would leave them.
        let marker_path = f.dropdir.marker_path(Path::new("sub/a.html"));
        let saved = {
            // Process, capturing the marker just before it is removed: replay by hand.
            assert!(matches!(
                f.dropdir.process(Path::new("sub/a.html")),
                Finished::Done { .. }
            ));
            let out = std::fs::read(outbox.join("sub/a.txt")).unwrap();
            let report: Report = serde_json::from_slice(
                &std::fs::read(outbox.join("sub/a.txt.report.json")).unwrap(),
            )
            .unwrap();
            Marker {
                rel_path: "sub/a.html".into(),
                input_sha256: sha256_hex(b"<p>one</p><script>x()</script>"),
                written: "a.txt".into(),
                written_sha256: sha256_hex(&out),
                report,
                queue_id: "DTEST".into(),
                sanitize_ms: 1,
            }
        };
        // The crash: the output is in place, the report not yet, the entry still in `work/`.
        std::fs::remove_file(outbox.join("sub/a.txt.report.json")).unwrap();
        put(&work, "sub/a.html", b"<p>one</p><script>x()</script>");
        std::fs::write(&marker_path, serde_json::to_vec(&saved).unwrap()).unwrap();
        assert_eq!(f.dropdir.leftovers(), [PathBuf::from("sub/a.html")]);
        let done = f.dropdir.process(Path::new("sub/a.html"));
        assert_eq!(
            done,
            Finished::Done {
                written: outbox.join("sub/a.txt"),
                verdict: Verdict::Sanitized
            }
        );
        assert_eq!(files(&outbox), ["sub/a.txt", "sub/a.txt.report.json"]);
        assert!(files(&work).is_empty(), "{:?}", files(&work));

        // A marker whose output never made it (crash before the link): processed again.
        put(&work, "sub/a.html", b"<p>one</p><script>x()</script>");
        let stale = Marker {
            written: "a (2).txt".into(),
            ..saved.clone()
        };
        std::fs::write(&marker_path, serde_json::to_vec(&stale).unwrap()).unwrap();
        f.dropdir.process(Path::new("sub/a.html"));
        assert_eq!(
            files(&outbox),
            [
                "sub/a (2).txt",
                "sub/a (2).txt.report.json",
                "sub/a.txt",
                "sub/a.txt.report.json"
            ]
        );
        // A marker of another input with the same name: not trusted.
        put(&work, "sub/a.html", b"<p>two</p>");
        std::fs::write(&marker_path, serde_json::to_vec(&saved).unwrap()).unwrap();
        f.dropdir.process(Path::new("sub/a.html"));
        assert!(files(&outbox).contains(&"sub/a (3).txt".to_owned()));
    }

    #[test]
    fn restart_recovery_finds_work_entries_and_sweeps_stale_markers() {
        let f = fixture();
        let work = f.root.join("work");
        put(&work, "x/y/a.txt", b"a");
        put(&work, "b.txt", b"b");
        // A marker whose entry is gone (crash between removing the entry and the marker).
        std::fs::write(work.join(format!("{MARKER_PREFIX}0123.json")), b"{}").unwrap();
        std::fs::write(work.join(format!("{TEMP_PREFIX}abc")), b"half").unwrap();
        let left = f.dropdir.recover();
        assert_eq!(left, [PathBuf::from("b.txt"), PathBuf::from("x/y/a.txt")]);
        assert_eq!(files(&work), ["b.txt", "x/y/a.txt"]);
        for rel in left {
            f.dropdir.process(&rel);
        }
        assert!(files(&work).is_empty());
        assert!(!work.join("x").exists(), "empty work folders are removed");
        assert_eq!(
            files(&f.root.join("outbox")),
            [
                "b.txt",
                "b.txt.report.json",
                "x/y/a.txt",
                "x/y/a.txt.report.json"
            ]
        );
    }

    #[test]
    fn overlapping_folders_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let vault = Arc::new(
            Vault::open(&crate::config::QuarantineSettings {
                dir: d.path().join("q"),
                ..crate::config::QuarantineSettings::default()
            })
            .unwrap(),
        );
        let t = Arc::new(Current::new(Arc::new(InProcess::new(Policy::default()))));
        let bad = DropdirSettings {
            inbox: d.path().join("in"),
            outbox: d.path().join("in/out"),
            work: d.path().join("work"),
            ..DropdirSettings::default()
        };
        let e = Dropdir::open(&bad, 1, Arc::clone(&t), Arc::clone(&vault), None).unwrap_err();
        assert!(format!("{e:#}").contains("overlap"), "{e:#}");
        // Another file system: /dev/shm is tmpfs where it exists.
        let shm = Path::new("/dev/shm");
        if shm.is_dir()
            && std::fs::metadata(shm).unwrap().dev() != std::fs::metadata(d.path()).unwrap().dev()
        {
            let w = tempfile::tempdir_in(shm).unwrap();
            let bad = DropdirSettings {
                inbox: d.path().join("in2"),
                outbox: d.path().join("out2"),
                work: w.path().join("work"),
                ..DropdirSettings::default()
            };
            let e = Dropdir::open(&bad, 1, t, vault, None).unwrap_err();
            assert!(format!("{e:#}").contains("same file system"), "{e:#}");
        }
    }
}
