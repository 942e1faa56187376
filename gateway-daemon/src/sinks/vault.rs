//! The vault: the quarantine as the relay (and later the drop directory and HTTP) uses it, the
//! originals in a [`DirStore`] (sealed at rest when a key is configured) and one row per held
//! item in the [`SqliteIndex`], behind one blocking, thread-safe API. The daemon calls it
//! through `spawn_blocking`.
//!
//! ## Layout
//! Everything lives in `[quarantine] dir` (see [`super::quarantine`] and [`super::index`]):
//! ```text
//! DIR/
//!   mugai-store.json        which key seals the originals (once one is sealed)
//!   ab/ab12…/original       the original (sealed when keyed), content-addressed
//!   ab/ab12…/reports/*.json its reports
//!   index.sqlite(-wal,-shm) one row per held item (envelope, subject, status, ...)
//! ```
//! The key file (`[quarantine] key_file`) should live elsewhere (see the quarantine docs).
//!
//! ## What the relay calls, in order
//! 1. At start: [`Vault::open`]; [`DirStore::sweep_temp`] through [`Vault::store`];
//!    [`Vault::recover_interrupted`] (before accepting mail).
//! 2. For each message whose verdict is not `clean`: [`Vault::hold`] before delivering and
//!    before answering 250. An error that [`QuarantineError::is_transient`] calls for 451; any
//!    error means the message must not be accepted.
//! 3. After the downstream answers: [`Vault::set_delivery`] (`Delivered`, `Deferred`,
//!    `Refused`) with its reply.
//! 4. Periodically (daily): [`Vault::purge_expired`].
//!
//! ## Invariants
//! - `hold` returns only when the original, its report and its row are durable (each layer
//!   fsyncs; see their docs). The original is written before the row, so a row never names
//!   an original that was not stored.
//! - A purge never deletes an original while a hold of the same content is between storing it
//!   and writing its row: holds share a gate that a purge takes alone, and the purge asks the
//!   index again under the gate.
//! - Rows outlive their originals: a purged original leaves its rows, marked `purged`.
//!
//! ## Failure modes and recovery
//! - A crash inside `hold` after the original but before the row leaves an original without a
//!   row. The sender got no 250 and retries (a new report, a new row, the same original). If it
//!   never does, [`Vault::purge_expired`] removes such originals once their file is older than
//!   the retention, as it does for originals the command line stored (`--quarantine`).
//! - A crash after `hold` but before `set_delivery` leaves a row `held`;
//!   [`Vault::recover_interrupted`] marks those `deferred` at the next start.
//! - A crash inside a purge leaves originals deleted whose rows are not yet `purged`; the next
//!   purge finds them again and finishes.
//! - Disk full anywhere (ENOSPC, EDQUOT, SQLITE_FULL) is a transient error: nothing was
//!   accepted, and the retry starts from scratch (storing an existing original is a no-op).

use std::path::Path;
use std::sync::{PoisonError, RwLock};

use anyhow::Context;
use sanitizer_core::Report;

use super::index::{HeldItem, HoldStatus, QuarantineIndex, RequestIndex, SqliteIndex};
use super::quarantine::{
    DirStore, QuarantineError, QuarantineId, QuarantineStore, load_or_create_key,
};
use crate::config::QuarantineSettings;

/// How many expired originals a purge deletes per turn of the gate (holds wait at most that
/// long).
const PURGE_BATCH: usize = 64;

/// The quarantine's store and index together (see the module docs).
#[derive(Debug)]
pub struct Vault {
    store: DirStore,
    index: SqliteIndex,
    retention_days: u32,
    /// Shared by holds, taken alone by a purge (see the invariants).
    gate: RwLock<()>,
}

impl Vault {
    /// Opens the vault in `settings.dir` (required): the store, sealed with the key in
    /// `settings.key_file` when one is set (the file is created, 0600, when missing), and the
    /// index (created and migrated when needed).
    pub fn open(settings: &QuarantineSettings) -> anyhow::Result<Vault> {
        let dir = &settings.dir;
        if dir.as_os_str().is_empty() {
            anyhow::bail!(
                "[quarantine] dir is not set: the relay keeps every original that is not clean \
                 and needs a directory for them"
            );
        }
        let key = if settings.key_file.as_os_str().is_empty() {
            None
        } else {
            let loaded = load_or_create_key(&settings.key_file).context("[quarantine] key_file")?;
            if loaded.created {
                tracing::warn!(
                    key_file = %settings.key_file.display(),
                    key_id = %loaded.key.id(),
                    "Created a new quarantine key: back it up, the originals cannot be read without it."
                );
            }
            if inside(&settings.key_file, dir) {
                tracing::warn!(
                    key_file = %settings.key_file.display(),
                    dir = %dir.display(),
                    "The quarantine key is inside the quarantine directory: a copy of the directory then carries its key."
                );
            }
            Some(loaded.key)
        };
        let store = DirStore::open_with_key(dir, key)
            .with_context(|| format!("quarantine {}", dir.display()))?;
        let index = SqliteIndex::open(dir)
            .with_context(|| format!("quarantine index in {}", dir.display()))?;
        Ok(Vault {
            store,
            index,
            retention_days: settings.retention_days,
            gate: RwLock::new(()),
        })
    }

    /// Stores the original (encrypted when keyed) and the index row; durable when it returns.
    ///
    /// `item.quarantine_id` may be empty (it is filled with the original's SHA-256) or must be
    /// that hash; `item.report_id` must be `report.id`; an empty `item.report_json` is filled
    /// with `report` as JSON.
    pub fn hold(
        &self,
        original: &[u8],
        item: &HeldItem,
        report: &Report,
    ) -> Result<QuarantineId, QuarantineError> {
        let id = QuarantineId::of(original);
        if !item.quarantine_id.is_empty() && item.quarantine_id != id.as_str() {
            return Err(QuarantineError::Invalid(format!(
                "quarantine_id {} is not the SHA-256 of the original ({id})",
                item.quarantine_id
            )));
        }
        if item.report_id != report.id {
            return Err(QuarantineError::Invalid(format!(
                "report_id {:?} is not the report's id {:?}",
                item.report_id, report.id
            )));
        }
        let mut row = item.clone();
        row.quarantine_id = id.to_string();
        if row.report_json.is_empty() {
            row.report_json = report.to_json_line();
        }
        let _gate = self.gate.read().unwrap_or_else(PoisonError::into_inner);
        let stored = self.store.put(original, report)?;
        self.index.insert(&row)?;
        Ok(stored)
    }

    /// Records what became of a held item: its delivery (`Delivered`, `Deferred`, `Refused`)
    /// or a release, with the downstream's reply ("" keeps the last one).
    pub fn set_delivery(
        &self,
        report_id: &str,
        status: HoldStatus,
        reply: &str,
    ) -> Result<(), QuarantineError> {
        let reply = (!reply.is_empty()).then_some(reply);
        self.index.set_delivery(report_id, status, reply)
    }

    /// At start-up, before any hold: rows still `held` belong to messages whose sender got no
    /// reply (the relay stopped in between) and will retry; they become `deferred`. Returns
    /// how many.
    pub fn recover_interrupted(&self) -> Result<usize, QuarantineError> {
        let n = self
            .index
            .interrupt_held("interrupted: mugai stopped before the downstream answered")?;
        if n > 0 {
            tracing::info!(
                rows = n,
                "Held items left by an interrupted run marked deferred."
            );
        }
        Ok(n)
    }

    /// Removes originals whose every row is older than `retention_days` (rows kept, status
    /// Purged), and originals without any row whose file is that old (stored by the command
    /// line, or left by a crash inside a hold). Returns how many originals were removed.
    /// With `retention_days = 0` nothing is ever removed.
    pub fn purge_expired(&self, now: jiff::Timestamp) -> Result<usize, QuarantineError> {
        if self.retention_days == 0 {
            return Ok(0);
        }
        let keep = jiff::SignedDuration::from_hours(i64::from(self.retention_days) * 24);
        let cutoff = now.checked_sub(keep).unwrap_or(jiff::Timestamp::MIN);
        let mut removed = 0;
        loop {
            let _gate = self.gate.write().unwrap_or_else(PoisonError::into_inner);
            let ids = self.index.expired(cutoff, PURGE_BATCH)?;
            if ids.is_empty() {
                break;
            }
            for id in &ids {
                if self.store.remove(id)? {
                    removed += 1;
                }
                self.index.mark_purged(id)?;
            }
        }
        for id in self.store.list()? {
            let old = self
                .store
                .stored_at(&id)
                .and_then(|t| jiff::Timestamp::try_from(t).ok())
                .is_some_and(|t| t < cutoff);
            if !old {
                continue;
            }
            let _gate = self.gate.write().unwrap_or_else(PoisonError::into_inner);
            if !self.index.knows(&id)? && self.store.remove(&id)? {
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::info!(
                removed,
                retention_days = self.retention_days,
                "Expired originals purged from the quarantine."
            );
        }
        Ok(removed)
    }

    /// Removes one original now (an operator's purge, `crate::release::Release::purge`) and
    /// marks every row that refers to it purged, under the same gate as the retention purge
    /// (a concurrent hold of the same content is never half undone). Returns whether there
    /// was an original and how many rows changed.
    pub fn purge_now(&self, id: &QuarantineId) -> Result<(bool, usize), QuarantineError> {
        let _gate = self.gate.write().unwrap_or_else(PoisonError::into_inner);
        let removed = self.store.remove(id)?;
        let rows = self.index.mark_purged(id)?;
        Ok((removed, rows))
    }

    /// Release requests and unlock attempts (`crate::release`).
    pub fn requests(&self) -> &dyn RequestIndex {
        &self.index
    }

    /// The originals.
    pub fn store(&self) -> &DirStore {
        &self.store
    }

    /// The metadata index.
    pub fn index(&self) -> &dyn QuarantineIndex {
        &self.index
    }
}

/// Whether `path` lies inside `dir` (lexically, after making both absolute).
fn inside(path: &Path, dir: &Path) -> bool {
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
    abs(path).starts_with(abs(dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::testfs::{Tmpfs, is_root};
    use sanitizer_core::{Policy, sanitize_file};
    use std::path::PathBuf;

    fn settings(dir: &Path, key: Option<PathBuf>, days: u32) -> QuarantineSettings {
        QuarantineSettings {
            dir: dir.to_owned(),
            key_file: key.unwrap_or_default(),
            retention_days: days,
        }
    }

    fn report_for(bytes: &[u8]) -> Report {
        sanitize_file(bytes, Some("x.exe"), &Policy::default()).report
    }

    fn item_for(report: &Report, at: &str) -> HeldItem {
        HeldItem {
            report_id: report.id.clone(),
            quarantine_id: String::new(),
            received_at: at.into(),
            source: "smtp".into(),
            client_ip: Some("192.0.2.1".into()),
            helo: Some("mx.example.jp".into()),
            mail_from: Some("a@example.jp".into()),
            rcpt_to: vec!["b@city.example.lg.jp".into()],
            message_id: Some("<1@example.jp>".into()),
            subject: Some("請求書".into()),
            header_from: Some("a@example.jp".into()),
            file_name: None,
            size: 10,
            verdict: "blocked".into(),
            threats: report.threats().iter().map(|t| t.to_string()).collect(),
            report_json: String::new(),
            status: HoldStatus::Held,
            downstream_reply: None,
        }
    }

    fn is_send_sync<T: Send + Sync>() {}

    #[test]
    fn the_vault_is_shareable_between_threads() {
        is_send_sync::<Vault>();
    }

    #[test]
    fn hold_stores_sealed_original_and_row_then_delivery_is_recorded() {
        let d = tempfile::tempdir().unwrap();
        let q = d.path().join("q");
        let key = d.path().join("etc/quarantine.key");
        let vault = Vault::open(&settings(&q, Some(key.clone()), 90)).unwrap();
        assert!(key.is_file(), "key created");
        let original = b"MZ evil attachment";
        let report = report_for(original);
        let item = item_for(&report, "2026-03-01T09:00:00Z");
        let id = vault.hold(original, &item, &report).unwrap();
        assert_eq!(id, QuarantineId::of(original));

        let file = std::fs::read(vault.store().entry_dir(&id).join("original")).unwrap();
        assert!(file.starts_with(crate::sinks::quarantine::SEALED_MAGIC));
        assert_eq!(vault.store().get(&id).unwrap().original, original);
        let row = vault.index().get(&report.id).unwrap().unwrap();
        assert_eq!(row.quarantine_id, id.as_str());
        assert_eq!(row.status, HoldStatus::Held);
        assert_eq!(row.subject.as_deref(), Some("請求書"));
        let stored: Report = serde_json::from_str(&row.report_json).unwrap();
        assert_eq!(stored, report);

        vault
            .set_delivery(&report.id, HoldStatus::Delivered, "250 2.0.0 Ok: queued")
            .unwrap();
        let row = vault.index().get(&report.id).unwrap().unwrap();
        assert_eq!(row.status, HoldStatus::Delivered);
        assert_eq!(
            row.downstream_reply.as_deref(),
            Some("250 2.0.0 Ok: queued")
        );

        // Reopened with the same key file: the same key, everything still there.
        drop(vault);
        let vault = Vault::open(&settings(&q, Some(key), 90)).unwrap();
        assert_eq!(vault.store().get(&id).unwrap().original, original);
        // Mismatched item fields are refused before anything is written.
        let other = report_for(b"MZ other");
        let mut wrong = item_for(&other, "2026-03-01T09:00:00Z");
        wrong.quarantine_id = id.to_string();
        assert!(matches!(
            vault.hold(b"MZ other", &wrong, &other),
            Err(QuarantineError::Invalid(_))
        ));
        assert!(matches!(
            vault.hold(
                b"MZ other",
                &item_for(&report, "2026-03-01T09:00:00Z"),
                &other
            ),
            Err(QuarantineError::Invalid(_))
        ));
        assert!(
            !vault
                .store()
                .contains(&QuarantineId::of(b"MZ other"))
                .unwrap()
        );
    }

    #[test]
    fn open_needs_a_directory_and_a_private_key() {
        let err = Vault::open(&settings(Path::new(""), None, 90)).unwrap_err();
        assert!(format!("{err:#}").contains("[quarantine] dir"), "{err:#}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let d = tempfile::tempdir().unwrap();
            let key = d.path().join("k");
            std::fs::write(&key, "00".repeat(32)).unwrap();
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
            let err = Vault::open(&settings(&d.path().join("q"), Some(key), 90)).unwrap_err();
            assert!(format!("{err:#}").contains("chmod 600"), "{err:#}");
        }
    }

    #[test]
    fn purge_removes_only_originals_whose_every_row_expired() {
        let d = tempfile::tempdir().unwrap();
        let q = d.path().join("q");
        let vault = Vault::open(&settings(&q, None, 30)).unwrap();
        let old = b"MZ old";
        let shared = b"MZ shared";
        let r_old = report_for(old);
        let r_shared_old = report_for(shared);
        let r_shared_new = report_for(shared);
        let a = vault
            .hold(old, &item_for(&r_old, "2026-01-01T00:00:00Z"), &r_old)
            .unwrap();
        let b = vault
            .hold(
                shared,
                &item_for(&r_shared_old, "2026-01-01T00:00:00Z"),
                &r_shared_old,
            )
            .unwrap();
        vault
            .hold(
                shared,
                &item_for(&r_shared_new, "2026-03-01T00:00:00Z"),
                &r_shared_new,
            )
            .unwrap();
        // Stored by the command line (no row): its file's age decides.
        let cli = vault
            .store()
            .put(b"MZ cli", &report_for(b"MZ cli"))
            .unwrap();

        let now: jiff::Timestamp = "2026-03-10T00:00:00Z".parse().unwrap();
        assert_eq!(vault.purge_expired(now).unwrap(), 1);
        assert!(!vault.store().contains(&a).unwrap());
        assert!(vault.store().contains(&b).unwrap(), "a recent row keeps it");
        assert!(vault.store().contains(&cli).unwrap(), "its file is new");
        let row = vault.index().get(&r_old.id).unwrap().unwrap();
        assert_eq!(row.status, HoldStatus::Purged, "the row stays");
        assert_eq!(
            vault.index().get(&r_shared_old.id).unwrap().unwrap().status,
            HoldStatus::Held
        );
        // Idempotent.
        assert_eq!(vault.purge_expired(now).unwrap(), 0);

        // Far later everything goes, the command line's original too.
        let later: jiff::Timestamp = std::time::SystemTime::now()
            .checked_add(std::time::Duration::from_secs(40 * 86_400))
            .unwrap()
            .try_into()
            .unwrap();
        assert_eq!(vault.purge_expired(later).unwrap(), 2);
        assert!(vault.store().list().unwrap().is_empty());
        assert_eq!(
            vault.index().get(&r_shared_new.id).unwrap().unwrap().status,
            HoldStatus::Purged
        );

        // Retention 0 keeps everything forever.
        let forever = Vault::open(&settings(&d.path().join("q2"), None, 0)).unwrap();
        let r = report_for(old);
        forever
            .hold(old, &item_for(&r, "2000-01-01T00:00:00Z"), &r)
            .unwrap();
        assert_eq!(forever.purge_expired(later).unwrap(), 0);
    }

    #[test]
    fn a_purge_never_removes_what_a_concurrent_hold_just_stored() {
        let d = tempfile::tempdir().unwrap();
        let vault = Vault::open(&settings(d.path(), None, 1)).unwrap();
        let original = b"MZ raced";
        let now = jiff::Timestamp::now();
        let old_at = now
            .checked_sub(jiff::SignedDuration::from_hours(24 * 10))
            .unwrap()
            .to_string();
        let r0 = report_for(original);
        vault.hold(original, &item_for(&r0, &old_at), &r0).unwrap();
        // Holds of the same content race with purges; after each hold returns, its original
        // must be readable.
        std::thread::scope(|s| {
            let purger = s.spawn(|| {
                for _ in 0..50 {
                    vault.purge_expired(now).unwrap();
                }
            });
            for _ in 0..50 {
                let r = report_for(original);
                let at = jiff::Timestamp::now().to_string();
                let id = vault.hold(original, &item_for(&r, &at), &r).unwrap();
                assert_eq!(vault.store().get(&id).unwrap().original, original);
            }
            purger.join().unwrap();
        });
    }

    #[test]
    fn interrupted_holds_become_deferred() {
        let d = tempfile::tempdir().unwrap();
        let vault = Vault::open(&settings(d.path(), None, 90)).unwrap();
        let r = report_for(b"MZ x");
        vault
            .hold(b"MZ x", &item_for(&r, "2026-03-01T00:00:00Z"), &r)
            .unwrap();
        drop(vault);
        let vault = Vault::open(&settings(d.path(), None, 90)).unwrap();
        assert_eq!(vault.recover_interrupted().unwrap(), 1);
        assert_eq!(
            vault.index().get(&r.id).unwrap().unwrap().status,
            HoldStatus::Deferred
        );
        assert_eq!(vault.recover_interrupted().unwrap(), 0);
    }

    #[test]
    fn a_full_database_is_transient_and_the_retry_succeeds() {
        let d = tempfile::tempdir().unwrap();
        let vault = Vault::open(&settings(d.path(), None, 90)).unwrap();
        vault.index.cap_at_current_size().unwrap();
        let original = b"MZ big report";
        let r = report_for(original);
        let mut item = item_for(&r, "2026-03-01T00:00:00Z");
        // Larger than the free space in the database's pages: it needs new ones.
        item.report_json = format!("{{\"pad\":\"{}\"}}", "x".repeat(64 * 1024));
        let err = vault.hold(original, &item, &r).unwrap_err();
        assert!(err.is_transient(), "{err}");
        assert!(err.to_string().contains("full"), "{err}");
        assert!(vault.index().get(&r.id).unwrap().is_none(), "no row");

        // Space again (a new connection has no cap): the same hold now succeeds.
        drop(vault);
        let vault = Vault::open(&settings(d.path(), None, 90)).unwrap();
        vault.hold(original, &item, &r).unwrap();
        assert!(vault.index().get(&r.id).unwrap().is_some());
    }

    #[test]
    fn a_full_disk_is_transient_and_nothing_is_half_stored() {
        let Some(fs) = Tmpfs::mount("1m") else {
            // Not allowed to mount here: the same errors the kernel would give, through the
            // same mapping.
            assert!(!is_root(), "running as root, a tmpfs must mount");
            eprintln!("NOTICE: cannot mount a tmpfs without root; checking injected ENOSPC/EDQUOT");
            for errno in [libc::ENOSPC, libc::EDQUOT] {
                let e = QuarantineError::Io {
                    op: "write",
                    path: PathBuf::from("/q/original"),
                    source: std::io::Error::from_raw_os_error(errno),
                };
                assert!(e.is_transient(), "{e}");
            }
            return;
        };
        let q = fs.path().join("q");
        let vault = Vault::open(&settings(&q, None, 90)).unwrap();
        let filler = fs.fill();
        let original: Vec<u8> = b"MZ".iter().copied().chain([7u8; 64 * 1024]).collect();
        let r = report_for(&original);
        let item = item_for(&r, "2026-03-01T00:00:00Z");
        let err = vault.hold(&original, &item, &r).unwrap_err();
        assert!(err.is_transient(), "{err}");
        let id = QuarantineId::of(&original);
        assert!(!vault.store().contains(&id).unwrap(), "no partial entry");
        assert!(vault.index().get(&r.id).unwrap().is_none(), "no row");

        // Space again: the retry stores it whole.
        std::fs::remove_file(filler).unwrap();
        vault.store().sweep_temp(std::time::Duration::ZERO).unwrap();
        assert_eq!(vault.hold(&original, &item, &r).unwrap(), id);
        assert_eq!(vault.store().get(&id).unwrap().original, original);
        drop(vault);
    }
}
