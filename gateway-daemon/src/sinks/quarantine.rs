//! The quarantine: originals whose verdict is not `clean`, kept with their reports for audit
//! and release.
//!
//! [`QuarantineStore`] is what the CLI, the drop directory, the SMTP relay and the release flow
//! use; [`DirStore`] is the directory backend. The relay reaches it through
//! [`super::vault::Vault`], which adds the metadata index ([`super::index`]).
//!
//! ## On-disk format (`DirStore`)
//! ```text
//! DIR/
//!   mugai-store.json                     present once an encrypted original was stored:
//!                                        {"format":1,"encryption":"xchacha20poly1305",
//!                                         "key_id":"<16 hex>"}
//!   ab/                                  first two hex digits of the SHA-256 (sharding)
//!     ab12…(64 hex)/                     one entry per original, named by its full SHA-256
//!       original                         the original bytes, exactly as received, or sealed:
//!                                        MAGIC || 24-byte nonce || XChaCha20-Poly1305(bytes)
//!       reports/
//!         <report id>.json               one report (CONTRACT.md JSON) per time it was seen
//!       .mugai-tmp-*                     temporary files of writes in progress (ignored)
//!   index.sqlite(-wal, -shm)             the relay's metadata index (see `super::index`)
//! ```
//! The [`QuarantineId`] is the lower-case hex SHA-256 of the original (of the plaintext, also
//! when the store encrypts): storing the same content twice yields the same id and one copy of
//! the bytes, with one report file per report id.
//!
//! ## Encryption at rest
//! A store opened with a [`Key`] ([`DirStore::open_with_key`]) seals every original it writes:
//! the file is [`SEALED_MAGIC`] (8 bytes), a random 24-byte nonce, then the XChaCha20-Poly1305
//! ciphertext and tag, with the id (64 ASCII hex digits) as associated data, so a sealed file
//! moved to another entry does not open. What stays in clear, and why:
//! - The id (directory name) is the SHA-256 of the original. It lets anyone holding a copy of a
//!   file confirm that it was quarantined, and nothing more; the audit log carries the same
//!   hash anyway, and deduplication needs it.
//! - Reports stay JSON: they hold no body content and no envelope (no addresses, no subject),
//!   only names, sizes, hashes, kinds, threats and reasons. The relay's envelope data lives in
//!   the index, which is owner-only like everything here.
//!
//! The key is 32 random bytes in a file of its own ([`load_or_create_key`]); keep it outside
//! the quarantine directory, so that a copy of the directory (a backup, a stolen disk image)
//! is useless without it. `mugai-store.json` records which key (by [`Key::id`], a one-way
//! fingerprint) the store uses: opening with another key fails at once, and a store opened
//! without a key refuses to add clear originals beside sealed ones.
//!
//! Clear and sealed originals are never confused: a sealed file is accepted only when it
//! decrypts under the key with its id and the plaintext hashes to that id; a file is accepted
//! as clear only when its own bytes hash to the id. Entries written before a key was configured
//! stay clear (readable with or without the key) until they are purged.
//!
//! ## Invariants
//! - Every file is written through [`super::atomic::write_atomic`] (temporary file in the same
//!   directory, fsync, rename, fsync the directory): a name that is visible is complete.
//! - An entry exists (for [`QuarantineStore::contains`], [`QuarantineStore::list`],
//!   [`QuarantineStore::get`]) exactly when its `original` file exists. `put` writes the
//!   original first, then the report, and returns only when both are durable.
//! - `get` re-hashes the original (after decrypting) and refuses an entry whose bytes do not
//!   match its id.
//! - `mugai-store.json` is written (durably) before the first sealed original.
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
//! - [`DirStore::remove`] deletes the original first (the entry is gone from then on), then the
//!   rest; a crash in between leaves an entry directory without `original`, which readers treat
//!   as absent and a later `remove` or `put` reuses.
//! - Permission errors, a corrupt entry, a bad id, a missing or wrong key: permanent.
//! - Concurrent `put`s of the same original (several processes or threads) are safe: each
//!   writes its own temporary file and the renames replace identical bytes.

use std::io;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use rand::TryRng;
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
    /// The entry is damaged (bytes do not match the id, unreadable report, a sealed original
    /// that does not open under the store's key).
    #[error("quarantine entry {id} is corrupt: {detail}")]
    Corrupt {
        /// The entry.
        id: QuarantineId,
        /// What is wrong.
        detail: String,
    },
    /// The store encrypts at rest and this operation needs the key it was opened without, or
    /// the key given is not the store's.
    #[error("{0}")]
    Key(String),
    /// The metadata index failed (SQLite).
    #[error("quarantine index {}: {source}", path.display())]
    Index {
        /// The database file.
        path: PathBuf,
        /// The error.
        source: rusqlite::Error,
    },
    /// An item given to the store is not acceptable (a timestamp that is not RFC 3339, an id
    /// that does not match the original).
    #[error("invalid quarantine item: {0}")]
    Invalid(String),
}

impl QuarantineError {
    /// Whether retrying later may succeed: disk full, quota, interrupted, the database full or
    /// busy, or an I/O error inside SQLite (it reports some failed writes only as that). The
    /// relay answers 451 then, and never accepts what it could not keep. Everything else is
    /// permanent.
    pub fn is_transient(&self) -> bool {
        match self {
            QuarantineError::Io { source, .. } => super::atomic::is_transient(source),
            QuarantineError::Index { source, .. } => sqlite_is_transient(source),
            _ => false,
        }
    }
}

/// Whether a SQLite error may go away by itself (see [`QuarantineError::is_transient`]).
fn sqlite_is_transient(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode as C;
    match e {
        rusqlite::Error::SqliteFailure(f, _) => matches!(
            f.code,
            C::DiskFull | C::DatabaseBusy | C::DatabaseLocked | C::SystemIoFailure | C::OutOfMemory
        ),
        _ => false,
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

// ---------------------------------------------------------------------------------------------
// Keys

/// The first bytes of a sealed original: `MUGAIQ`, a zero byte, and the format version (1).
pub const SEALED_MAGIC: &[u8; 8] = b"MUGAIQ\x00\x01";
/// Length of the random nonce that follows [`SEALED_MAGIC`].
const NONCE_LEN: usize = 24;

/// A 256-bit secret key (the quarantine's encryption key, the audit log's address key).
///
/// Its `Debug` shows only [`Key::id`], never the key.
#[derive(Clone, PartialEq, Eq)]
pub struct Key([u8; 32]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key(id {})", self.id())
    }
}

impl Key {
    /// A key with these bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Key {
        Key(bytes)
    }

    /// A new random key from the operating system's generator.
    pub fn generate() -> io::Result<Key> {
        let mut k = [0u8; 32];
        rand::rngs::SysRng
            .try_fill_bytes(&mut k)
            .map_err(|e| io::Error::other(format!("no random numbers from the system: {e}")))?;
        Ok(Key(k))
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A public fingerprint: 16 hex digits of HMAC-SHA256(key, "mugai key id v1"). It says
    /// which key a store was sealed with without revealing anything about the key.
    pub fn id(&self) -> String {
        let mac = self.hmac(b"mugai key id v1");
        hex::encode(mac.get(..8).unwrap_or_default())
    }

    /// HMAC-SHA256 of `data` under this key.
    pub fn hmac(&self, data: &[u8]) -> [u8; 32] {
        // An HMAC key may have any length, so this cannot fail; the fallback keeps the
        // function total without a panic path.
        let Ok(mut mac) = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&self.0) else {
            return [0u8; 32];
        };
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    /// Seals `plain` for the entry `id` (format in the module docs).
    fn seal(&self, id: &QuarantineId, plain: &[u8]) -> io::Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::SysRng
            .try_fill_bytes(&mut nonce)
            .map_err(|e| io::Error::other(format!("no random numbers from the system: {e}")))?;
        let cipher = XChaCha20Poly1305::new(&chacha20poly1305::Key::from(self.0));
        let sealed = cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plain,
                    aad: id.as_str().as_bytes(),
                },
            )
            .map_err(|_| io::Error::other("the original is too large to encrypt"))?;
        let mut out = Vec::with_capacity(SEALED_MAGIC.len() + NONCE_LEN + sealed.len());
        out.extend_from_slice(SEALED_MAGIC);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens a sealed original of entry `id`; `None` when it is not one sealed under this key
    /// for this id (tampered, moved from another entry, another key, or not sealed at all).
    fn open(&self, id: &QuarantineId, file: &[u8]) -> Option<Vec<u8>> {
        let rest = file.strip_prefix(SEALED_MAGIC.as_slice())?;
        let (nonce, sealed) = rest.split_at_checked(NONCE_LEN)?;
        let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
        let cipher = XChaCha20Poly1305::new(&chacha20poly1305::Key::from(self.0));
        cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: sealed,
                    aad: id.as_str().as_bytes(),
                },
            )
            .ok()
    }
}

/// A key read from its file, and whether the file was just created.
#[derive(Debug, Clone)]
pub struct LoadedKey {
    /// The key.
    pub key: Key,
    /// The file did not exist and was created with a new random key (worth a log line: the
    /// operator should back it up).
    pub created: bool,
}

/// Reads a key file: 64 hex digits (the 32 key bytes), optionally followed by a newline or
/// other trailing white space. Hex rather than raw bytes so that the key can be made with
/// `openssl rand -hex 32`, backed up on paper or in a password manager, and checked by eye.
///
/// The file must be a regular file that neither group nor others may read or write: a key
/// others can read protects nothing, so it is refused rather than used.
pub fn load_key(path: &Path) -> anyhow::Result<Key> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => anyhow::bail!(
            "key file {} does not exist: the first run that stores an original with this \
             configuration creates it, or make it with (umask 077; openssl rand -hex 32 > {})",
            path.display(),
            path.display()
        ),
        Err(e) => anyhow::bail!("key file {}: {e}", path.display()),
    };
    if !meta.is_file() {
        anyhow::bail!("key file {} is not a regular file", path.display());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            anyhow::bail!(
                "key file {} may be read or written by group or others (mode {mode:04o}); \
                 make it owner-only: chmod 600 {}",
                path.display(),
                path.display()
            );
        }
    }
    let text = std::fs::read(path)
        .map_err(|e| anyhow::anyhow!("key file {}: cannot read it: {e}", path.display()))?;
    let digits = text.trim_ascii_end();
    let mut key = [0u8; 32];
    if digits.len() != 64 || hex::decode_to_slice(digits, &mut key).is_err() {
        anyhow::bail!(
            "key file {} must hold exactly 64 hex digits (32 bytes; make one with \
             openssl rand -hex 32)",
            path.display()
        );
    }
    Ok(Key(key))
}

/// Reads the key file at `path` ([`load_key`]), or creates it (mode 0600, a new random key,
/// missing parent directories 0700) when it does not exist. Two processes creating it at once
/// end up with the same key: the file is linked into place without replacing.
pub fn load_or_create_key(path: &Path) -> anyhow::Result<LoadedKey> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        _ => {
            return Ok(LoadedKey {
                key: load_key(path)?,
                created: false,
            });
        }
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        anyhow::bail!("key file {} needs a file name", path.display());
    };
    private_dir_all(&dir).map_err(|e| {
        anyhow::anyhow!(
            "key file {}: cannot create {}: {e}",
            path.display(),
            dir.display()
        )
    })?;
    let key = Key::generate()?;
    let mut text = hex::encode(key.0);
    text.push('\n');
    match write_atomic(&dir, name, text.as_bytes(), Existing::Keep, Access::Private) {
        Ok(_) => Ok(LoadedKey { key, created: true }),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(LoadedKey {
            key: load_key(path)?,
            created: false,
        }),
        Err(e) => anyhow::bail!("key file {}: cannot create it: {e}", path.display()),
    }
}

// ---------------------------------------------------------------------------------------------
// The directory store

/// The file that says a store seals its originals, and with which key.
const MARKER: &str = "mugai-store.json";

/// What `mugai-store.json` says.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Marker {
    format: u32,
    encryption: String,
    key_id: String,
}

/// The directory backend (format in the module docs).
#[derive(Debug, Clone)]
pub struct DirStore {
    root: PathBuf,
    key: Option<Key>,
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> QuarantineError {
    let path = path.to_owned();
    move |source| QuarantineError::Io { op, path, source }
}

/// Creates `dir` and its missing parents, owner-only (originals may be confidential).
pub(crate) fn private_dir_all(dir: &Path) -> io::Result<()> {
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
    /// Opens (creating if needed) a store rooted at `root`, without a key: originals are
    /// written in clear, and sealed ones cannot be read (see [`DirStore::open_with_key`]).
    pub fn open(root: impl Into<PathBuf>) -> Result<DirStore, QuarantineError> {
        DirStore::open_with_key(root, None)
    }

    /// Opens (creating if needed) a store rooted at `root`. With a key, originals are sealed
    /// when written and opened when read; the key must be the one the store already uses, if
    /// it uses one (`mugai-store.json`). Opening writes nothing but the directory.
    pub fn open_with_key(
        root: impl Into<PathBuf>,
        key: Option<Key>,
    ) -> Result<DirStore, QuarantineError> {
        let root = root.into();
        private_dir_all(&root).map_err(io_err("create", &root))?;
        let store = DirStore { root, key };
        if let (Some(key), Some(marker)) = (&store.key, store.marker()?)
            && marker.key_id != key.id()
        {
            return Err(QuarantineError::Key(format!(
                "the quarantine {} is encrypted with the key whose id is {}, and the key given \
                 has id {}: use the key file it was made with",
                store.root.display(),
                marker.key_id,
                key.id()
            )));
        }
        Ok(store)
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether this handle has a key (writes seal, reads open sealed originals).
    pub fn is_keyed(&self) -> bool {
        self.key.is_some()
    }

    /// Whether the store has sealed originals (its `mugai-store.json` exists).
    pub fn encrypts_at_rest(&self) -> Result<bool, QuarantineError> {
        Ok(self.marker()?.is_some())
    }

    /// Reads `mugai-store.json`, if there is one.
    fn marker(&self) -> Result<Option<Marker>, QuarantineError> {
        let path = self.root.join(MARKER);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("read", &path)(e)),
        };
        match serde_json::from_slice::<Marker>(&bytes) {
            Ok(m) if m.format == 1 && m.encryption == "xchacha20poly1305" => Ok(Some(m)),
            Ok(m) => Err(QuarantineError::Key(format!(
                "{}: format {} with encryption {:?} is not one this mugai knows",
                path.display(),
                m.format,
                m.encryption
            ))),
            Err(e) => Err(QuarantineError::Key(format!(
                "{} is damaged ({e}): it should name the key the originals are sealed with",
                path.display()
            ))),
        }
    }

    /// Makes sure the marker exists before the first sealed original (see the invariants).
    fn ensure_marker(&self, key: &Key) -> Result<(), QuarantineError> {
        if self.marker()?.is_some() {
            return Ok(());
        }
        let marker = Marker {
            format: 1,
            encryption: "xchacha20poly1305".into(),
            key_id: key.id(),
        };
        let json = serde_json::to_vec(&marker)
            .map_err(|e| QuarantineError::Key(format!("store marker does not serialise: {e}")))?;
        match write_atomic(&self.root, MARKER, &json, Existing::Keep, Access::Private) {
            Ok(_) => Ok(()),
            // Another writer made it first: check that it names our key.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match self.marker()? {
                Some(m) if m.key_id == key.id() => Ok(()),
                _ => Err(QuarantineError::Key(format!(
                    "the quarantine {} was just marked with another key",
                    self.root.display()
                ))),
            },
            Err(e) => Err(io_err("write", &self.root.join(MARKER))(e)),
        }
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

    /// The reports stored for an entry, ordered by report id, without reading the original
    /// (so this works without the key).
    pub fn reports(&self, id: &QuarantineId) -> Result<Vec<Report>, QuarantineError> {
        if !self.contains(id)? {
            return Err(QuarantineError::NotFound(id.clone()));
        }
        self.read_reports(id)
    }

    fn read_reports(&self, id: &QuarantineId) -> Result<Vec<Report>, QuarantineError> {
        let rdir = self.entry_dir(id).join("reports");
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
        Ok(reports)
    }

    /// The original of an entry, opened and checked against its id (see the module docs on
    /// telling clear and sealed originals apart).
    fn read_original(&self, id: &QuarantineId) -> Result<Vec<u8>, QuarantineError> {
        let path = self.entry_dir(id).join("original");
        let file = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(QuarantineError::NotFound(id.clone()));
            }
            Err(e) => return Err(io_err("read", &path)(e)),
        };
        if file.starts_with(SEALED_MAGIC) {
            if let Some(key) = &self.key
                && let Some(plain) = key.open(id, &file)
            {
                return if QuarantineId::of(&plain) == *id {
                    Ok(plain)
                } else {
                    Err(QuarantineError::Corrupt {
                        id: id.clone(),
                        detail: "the decrypted original does not match its SHA-256".into(),
                    })
                };
            }
            // A clear original may itself begin with the magic: its own hash says so.
            if QuarantineId::of(&file) == *id {
                return Ok(file);
            }
            return Err(match &self.key {
                Some(_) => QuarantineError::Corrupt {
                    id: id.clone(),
                    detail: "the encrypted original does not open with the key for this entry \
                             (altered, or moved from another entry)"
                        .into(),
                },
                None => QuarantineError::Key(format!(
                    "quarantine entry {id} is encrypted at rest; give its key (the \
                     configuration's [quarantine] key_file, e.g. with --config FILE)"
                )),
            });
        }
        if QuarantineId::of(&file) != *id {
            return Err(QuarantineError::Corrupt {
                id: id.clone(),
                detail: "original does not match its SHA-256".into(),
            });
        }
        Ok(file)
    }

    /// Deletes an entry: the original first (from then on the entry does not exist), then its
    /// reports and directory. Returns whether there was an original. Durable on return.
    pub fn remove(&self, id: &QuarantineId) -> Result<bool, QuarantineError> {
        let dir = self.entry_dir(id);
        let original = dir.join("original");
        let existed = match std::fs::remove_file(&original) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(io_err("remove", &original)(e)),
        };
        if existed {
            sync_dir(&dir).map_err(io_err("fsync", &dir))?;
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(existed),
            Err(e) => return Err(io_err("remove", &dir)(e)),
        }
        if let Some(shard) = dir.parent() {
            sync_dir(shard).map_err(io_err("fsync", shard))?;
        }
        Ok(existed)
    }
}

impl QuarantineStore for DirStore {
    fn put(&self, original: &[u8], report: &Report) -> Result<QuarantineId, QuarantineError> {
        if !valid_report_id(&report.id) {
            return Err(QuarantineError::InvalidId(report.id.clone()));
        }
        match &self.key {
            Some(key) => self.ensure_marker(key)?,
            None if self.marker()?.is_some() => {
                return Err(QuarantineError::Key(format!(
                    "the quarantine {} encrypts originals at rest; give its key (the \
                     configuration's [quarantine] key_file) rather than store this one in clear",
                    self.root.display()
                )));
            }
            None => {}
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
        let original_path = dir.join("original");
        if !original_path.exists() {
            let sealed;
            let bytes = match &self.key {
                Some(key) => {
                    sealed = key
                        .seal(&id, original)
                        .map_err(io_err("encrypt", &original_path))?;
                    sealed.as_slice()
                }
                None => original,
            };
            write_atomic(&dir, "original", bytes, Existing::Replace, Access::Private)
                .map_err(io_err("write", &original_path))?;
        }
        let json = serde_json::to_vec_pretty(report).map_err(|e| QuarantineError::Corrupt {
            id: id.clone(),
            detail: format!("report does not serialise: {e}"),
        })?;
        let name = format!("{}.json", report.id);
        write_atomic(&reports, &name, &json, Existing::Replace, Access::Private)
            .map_err(io_err("write", &reports.join(&name)))?;
        tracing::debug!(id = %id, report = %report.id, sealed = self.key.is_some(), "Original quarantined.");
        Ok(id)
    }

    fn get(&self, id: &QuarantineId) -> Result<Entry, QuarantineError> {
        let original = self.read_original(id)?;
        let reports = self.read_reports(id)?;
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

    fn key(n: u8) -> Key {
        Key::from_bytes([n; 32])
    }

    #[test]
    fn sealed_round_trip_and_nothing_in_clear_on_disk() {
        let d = tempfile::tempdir().unwrap();
        let store = DirStore::open_with_key(d.path(), Some(key(7))).unwrap();
        let original = b"MZ\x90\0 secret payload \xe8\xa6\x8b\xe7\xa9\x8d".repeat(100);
        let report = report_for(&original);
        let id = store.put(&original, &report).unwrap();
        // The id is the plaintext's hash: deduplication is unchanged.
        assert_eq!(id, QuarantineId::of(&original));
        let file = std::fs::read(store.entry_dir(&id).join("original")).unwrap();
        assert!(file.starts_with(SEALED_MAGIC));
        assert_eq!(
            file.len(),
            SEALED_MAGIC.len() + NONCE_LEN + original.len() + 16 /* Poly1305 tag */
        );
        assert!(
            !file
                .windows(b"secret payload".len())
                .any(|w| w == b"secret payload"),
            "plaintext visible on disk"
        );
        let entry = store.get(&id).unwrap();
        assert_eq!(entry.original, original);
        assert_eq!(entry.reports, vec![report.clone()]);
        assert!(store.encrypts_at_rest().unwrap());
        // Storing again keeps the one sealed copy; a second store of the same content with
        // another report only adds the report.
        let before = std::fs::read(store.entry_dir(&id).join("original")).unwrap();
        store.put(&original, &report_for(&original)).unwrap();
        assert_eq!(
            std::fs::read(store.entry_dir(&id).join("original")).unwrap(),
            before
        );
        assert_eq!(store.get(&id).unwrap().reports.len(), 2);
        // Two seals of the same bytes differ (random nonces).
        let k = key(7);
        assert_ne!(k.seal(&id, &original).unwrap(), before);
    }

    #[test]
    fn tampered_or_swapped_sealed_originals_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let store = DirStore::open_with_key(d.path(), Some(key(1))).unwrap();
        let a = store.put(b"MZ first", &report_for(b"MZ first")).unwrap();
        let b = store.put(b"MZ second", &report_for(b"MZ second")).unwrap();
        let path_a = store.entry_dir(&a).join("original");
        let path_b = store.entry_dir(&b).join("original");
        let sealed_a = std::fs::read(&path_a).unwrap();
        let sealed_b = std::fs::read(&path_b).unwrap();

        // One flipped bit in the ciphertext.
        let mut flipped = sealed_a.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        std::fs::write(&path_a, &flipped).unwrap();
        let err = store.get(&a).unwrap_err();
        assert!(matches!(err, QuarantineError::Corrupt { .. }), "{err}");
        assert!(!err.is_transient());

        // B's sealed file moved into A's entry: the id is the associated data.
        std::fs::write(&path_a, &sealed_b).unwrap();
        assert!(matches!(
            store.get(&a),
            Err(QuarantineError::Corrupt { .. })
        ));

        // Restored, it opens again; B was never touched.
        std::fs::write(&path_a, &sealed_a).unwrap();
        assert_eq!(store.get(&a).unwrap().original, b"MZ first");
        assert_eq!(store.get(&b).unwrap().original, b"MZ second");
    }

    #[test]
    fn clear_and_sealed_stores_are_not_confused() {
        let d = tempfile::tempdir().unwrap();
        // A clear store with an original that happens to start with the magic.
        let clear = DirStore::open(d.path()).unwrap();
        let mut tricky = SEALED_MAGIC.to_vec();
        tricky.extend_from_slice(&[0u8; 64]);
        let t = clear.put(&tricky, &report_for(&tricky)).unwrap();
        let plain = clear.put(b"MZ plain", &report_for(b"MZ plain")).unwrap();
        assert!(!clear.encrypts_at_rest().unwrap());

        // A key configured later: old entries stay readable, new ones are sealed.
        let keyed = DirStore::open_with_key(d.path(), Some(key(2))).unwrap();
        assert_eq!(keyed.get(&t).unwrap().original, tricky);
        assert_eq!(keyed.get(&plain).unwrap().original, b"MZ plain");
        let sealed = keyed.put(b"MZ sealed", &report_for(b"MZ sealed")).unwrap();
        assert!(keyed.encrypts_at_rest().unwrap());

        // Without the key: clear entries still read, the sealed one says what is missing, and
        // nothing new may be added in clear.
        let nokey = DirStore::open(d.path()).unwrap();
        assert_eq!(nokey.get(&t).unwrap().original, tricky);
        let err = nokey.get(&sealed).unwrap_err();
        assert!(matches!(err, QuarantineError::Key(_)), "{err}");
        assert!(err.to_string().contains("key_file"), "{err}");
        assert_eq!(nokey.reports(&sealed).unwrap().len(), 1);
        let err = nokey
            .put(b"MZ clear now", &report_for(b"MZ clear now"))
            .unwrap_err();
        assert!(matches!(err, QuarantineError::Key(_)), "{err}");
        assert!(!nokey.contains(&QuarantineId::of(b"MZ clear now")).unwrap());

        // Another key is refused at open, naming both key ids.
        let err = DirStore::open_with_key(d.path(), Some(key(3))).unwrap_err();
        assert!(matches!(err, QuarantineError::Key(_)), "{err}");
        assert!(err.to_string().contains(&key(2).id()), "{err}");
    }

    #[test]
    fn remove_deletes_the_entry() {
        let d = tempfile::tempdir().unwrap();
        let store = DirStore::open(d.path()).unwrap();
        let id = store.put(b"MZ gone", &report_for(b"MZ gone")).unwrap();
        assert!(store.remove(&id).unwrap());
        assert!(!store.contains(&id).unwrap());
        assert!(walk(d.path()).is_empty());
        assert!(!store.remove(&id).unwrap());
    }

    #[cfg(unix)]
    #[test]
    fn key_files_are_created_private_and_refused_when_shared() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("keys/quarantine.key");
        let first = load_or_create_key(&path).unwrap();
        assert!(first.created);
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.trim_end().len(), 64);
        assert_eq!(text.trim_end(), hex::encode(first.key.as_bytes()));
        let again = load_or_create_key(&path).unwrap();
        assert!(!again.created);
        assert_eq!(again.key, first.key);
        assert!(!format!("{:?}", first.key).contains(&text.trim_end()[..16]));

        // Readable by the group: refused, with the fix in the message.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = format!("{:#}", load_key(&path).unwrap_err());
        assert!(err.contains("chmod 600"), "{err}");
        let err = format!("{:#}", load_or_create_key(&path).unwrap_err());
        assert!(err.contains("chmod 600"), "{err}");

        // Not 64 hex digits: refused. Missing: load_key says how to make one.
        let bad = d.path().join("bad.key");
        std::fs::write(&bad, "abcd\n").unwrap();
        std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(format!("{:#}", load_key(&bad).unwrap_err()).contains("64 hex digits"));
        let err = format!("{:#}", load_key(&d.path().join("none.key")).unwrap_err());
        assert!(err.contains("openssl rand -hex 32"), "{err}");

        // A hand-made key (openssl rand -hex 32, upper case, CRLF) is accepted.
        let hand = d.path().join("hand.key");
        std::fs::write(&hand, format!("{}\r\n", "AB".repeat(32))).unwrap();
        std::fs::set_permissions(&hand, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(load_key(&hand).unwrap(), Key::from_bytes([0xab; 32]));
    }
}
