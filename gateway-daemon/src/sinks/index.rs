//! The quarantine's metadata index: one row per held message or file, so that an operator can
//! find what was held (by sender, recipient, subject, date, verdict, threat, delivery status)
//! without opening originals, and so that retention can be enforced.
//!
//! [`QuarantineIndex`] is the seam (a PostgreSQL index could sit behind it for several relays);
//! [`SqliteIndex`] is the one built today.
//!
//! ## On-disk format (`SqliteIndex`)
//! `DIR/index.sqlite` beside the originals (plus SQLite's `-wal` and `-shm` files), owner-only
//! (0600; SQLite gives its side files the database's mode):
//! ```text
//! schema_version(version)                one row per migration applied (1, 2, ...)
//! held(id INTEGER PRIMARY KEY,           one row per report id (per time an item was held)
//!      report_id UNIQUE, quarantine_id, received_at (RFC 3339 as given), received_ms,
//!      source, client_ip, helo, mail_from, rcpt_to (JSON array), message_id, subject,
//!      header_from, file_name, size, verdict, threats (JSON array), report_json,
//!      status, downstream_reply, updated_ms)
//! held_rcpt(held, rcpt)                  each recipient, ASCII-lower-cased, for searching
//! held_threat(threat, held)              each threat id, for searching
//! release_requests(id INTEGER PRIMARY KEY, report_id, requester, entered_by, reason,
//!      created_at, state (pending|approved|refused), decided_by, decision_reason,
//!      decided_at, delivered_at, delivery_reply)   (schema 2; crate::release)
//! unlock_failures(report_id PRIMARY KEY, failures)  wrong PPAP passwords per item (schema 2)
//! ```
//! At most one `pending` request per report id (a partial unique index); a request moves
//! `pending` → `approved` or `refused` once, by a conditional update, so two deciders racing
//! cannot both win. `approved` with `delivered_at` NULL is a release still to be delivered.
//! Indexes: by time (newest first), by status and by verdict (each with time, so a filtered
//! page is read in order), by quarantine id (retention), and the two side tables by their
//! first column. Addresses and subjects are stored exactly as given: they are data, and
//! whoever displays them escapes them.
//!
//! ## Invariants
//! - Journal mode WAL with `synchronous = FULL`: a transaction is durable (its WAL frames
//!   fsynced) when `insert`, `insert_many` or `set_delivery` returns.
//! - A row and its side rows are written in one transaction: all or nothing.
//! - Migrations run in one immediate transaction at open and are idempotent; an index made by
//!   a newer Mugai (a schema version this one does not know) is refused, not altered.
//! - Inserting a report id that is already present keeps the existing row (a retried hold is
//!   harmless).
//! - Rows are never deleted: purging an original marks its rows `purged`.
//!
//! ## Failure modes
//! - A crash loses at most the transaction in flight (SQLite rolls it back on the next open).
//! - Database full (`SQLITE_FULL`: disk full or quota), busy or locked past the busy timeout
//!   (another process holds it), or an I/O error: [`QuarantineError::is_transient`].
//! - Values read back that do not decode (a damaged or hand-edited database): an error naming
//!   the column, never a panic.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use rusqlite::types::{Type, Value};
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};
use serde::{Deserialize, Serialize};

use super::quarantine::{QuarantineError, QuarantineId};

/// Where a held item stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldStatus {
    /// Stored; the safe version has not been handed downstream yet.
    Held,
    /// The safe version was accepted downstream.
    Delivered,
    /// Delivery failed for now (the sender was told 451 and will retry, or the relay stopped
    /// before the downstream answered).
    Deferred,
    /// The original was released to its recipient after review.
    Released,
    /// Downstream refused the safe version for good (5xx).
    Refused,
    /// The original was deleted by retention; the row stays for the record.
    Purged,
}

impl HoldStatus {
    /// Every status.
    pub const ALL: [HoldStatus; 6] = [
        HoldStatus::Held,
        HoldStatus::Delivered,
        HoldStatus::Deferred,
        HoldStatus::Released,
        HoldStatus::Refused,
        HoldStatus::Purged,
    ];

    /// The stored name (`held`, `delivered`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            HoldStatus::Held => "held",
            HoldStatus::Delivered => "delivered",
            HoldStatus::Deferred => "deferred",
            HoldStatus::Released => "released",
            HoldStatus::Refused => "refused",
            HoldStatus::Purged => "purged",
        }
    }

    /// The status with this stored name.
    pub fn parse(s: &str) -> Option<HoldStatus> {
        HoldStatus::ALL.into_iter().find(|h| h.as_str() == s)
    }
}

impl std::fmt::Display for HoldStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One held message or file: what the index keeps about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldItem {
    /// The report id (unique per time an item was seen).
    pub report_id: String,
    /// The original's quarantine id (its SHA-256).
    pub quarantine_id: String,
    /// When the item was received, RFC 3339 (UTC, e.g. `2026-11-26T01:00:00.123Z`).
    pub received_at: String,
    /// Where it came from: `smtp`, `dropdir`, `http` or `cli`.
    pub source: String,
    /// The SMTP client's address.
    pub client_ip: Option<String>,
    /// The SMTP client's HELO/EHLO name.
    pub helo: Option<String>,
    /// The envelope sender (MAIL FROM), as given.
    pub mail_from: Option<String>,
    /// The envelope recipients (RCPT TO), as given.
    pub rcpt_to: Vec<String>,
    /// The `Message-ID` header.
    pub message_id: Option<String>,
    /// The `Subject` header, decoded.
    pub subject: Option<String>,
    /// The `From` header, decoded.
    pub header_from: Option<String>,
    /// The file name (files, not mail).
    pub file_name: Option<String>,
    /// The original's size in bytes.
    pub size: u64,
    /// The verdict (`sanitized`, `blocked`, ...).
    pub verdict: String,
    /// Every threat id in the report.
    pub threats: Vec<String>,
    /// The report (CONTRACT.md JSON).
    pub report_json: String,
    /// Where the item stands.
    pub status: HoldStatus,
    /// The downstream's last reply (`250 2.0.0 Ok: queued as ...`), once there is one.
    pub downstream_reply: Option<String>,
}

impl HeldItem {
    /// A row for `report`'s item from `source`, received now: report id, size, verdict and
    /// threats from the report, status `held`; the caller fills in what it knows of the
    /// envelope, headers or file name.
    pub fn for_report(report: &sanitizer_core::Report, source: &str) -> HeldItem {
        HeldItem {
            report_id: report.id.clone(),
            quarantine_id: String::new(),
            received_at: jiff::Timestamp::now().to_string(),
            source: source.to_owned(),
            client_ip: None,
            helo: None,
            mail_from: None,
            rcpt_to: Vec::new(),
            message_id: None,
            subject: None,
            header_from: None,
            file_name: None,
            size: report.input.size,
            verdict: report.verdict.as_str().to_owned(),
            threats: report.threats().into_iter().map(str::to_owned).collect(),
            report_json: String::new(),
            status: HoldStatus::Held,
            downstream_reply: None,
        }
    }
}

/// A search: every filter given must match; rows come newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Search {
    /// Part of the envelope sender or of the `From` header (ASCII case-insensitive).
    pub sender: Option<String>,
    /// Part of any envelope recipient (ASCII case-insensitive).
    pub recipient: Option<String>,
    /// Part of the subject (ASCII case-insensitive).
    pub subject: Option<String>,
    /// Received at or after this time.
    pub since: Option<jiff::Timestamp>,
    /// Received before this time.
    pub until: Option<jiff::Timestamp>,
    /// This verdict exactly.
    pub verdict: Option<String>,
    /// This threat id exactly, in the item's threats.
    pub threat: Option<String>,
    /// This status.
    pub status: Option<HoldStatus>,
    /// At most this many rows (capped at [`Search::MAX_LIMIT`]).
    pub limit: usize,
    /// Skip this many rows first (paging).
    pub offset: u64,
}

impl Search {
    /// The largest page a search returns.
    pub const MAX_LIMIT: usize = 10_000;
}

impl Default for Search {
    fn default() -> Search {
        Search {
            sender: None,
            recipient: None,
            subject: None,
            since: None,
            until: None,
            verdict: None,
            threat: None,
            status: None,
            limit: 100,
            offset: 0,
        }
    }
}

/// Metadata about held items (format and invariants of the SQLite one in the module docs).
pub trait QuarantineIndex: Send + Sync {
    /// Adds one row; durable when it returns. A report id already present is kept as it was.
    fn insert(&self, item: &HeldItem) -> Result<(), QuarantineError> {
        self.insert_many(std::slice::from_ref(item))
    }
    /// Adds rows in one transaction (all or none); durable when it returns.
    fn insert_many(&self, items: &[HeldItem]) -> Result<(), QuarantineError>;
    /// Records the outcome of delivery (or a release) for a report id.
    fn set_delivery(
        &self,
        report_id: &str,
        status: HoldStatus,
        reply: Option<&str>,
    ) -> Result<(), QuarantineError>;
    /// The row for a report id.
    fn get(&self, report_id: &str) -> Result<Option<HeldItem>, QuarantineError>;
    /// Rows matching `search`, newest first, paged.
    fn search(&self, search: &Search) -> Result<Vec<HeldItem>, QuarantineError>;
    /// How many rows match `search` (its limit and offset ignored).
    fn count(&self, search: &Search) -> Result<u64, QuarantineError>;
    /// Quarantine ids whose every row was received before `cutoff` and which still have a row
    /// not marked purged, oldest first, at most `limit`.
    fn expired(
        &self,
        cutoff: jiff::Timestamp,
        limit: usize,
    ) -> Result<Vec<QuarantineId>, QuarantineError>;
    /// Marks every row of `id` purged; returns how many changed.
    fn mark_purged(&self, id: &QuarantineId) -> Result<usize, QuarantineError>;
    /// Whether any row refers to `id`.
    fn knows(&self, id: &QuarantineId) -> Result<bool, QuarantineError>;
    /// Turns every row still `held` into `deferred` with `reply`: for start-up, when no hold
    /// is in flight, so rows left by a crash between hold and delivery do not look pending
    /// forever (the sender got no 250 and retries). Returns how many.
    fn interrupt_held(&self, reply: &str) -> Result<usize, QuarantineError>;
}

/// Where a release request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    /// Waiting for an approver.
    Pending,
    /// Approved (delivered once `delivered_at` is set).
    Approved,
    /// Refused by an approver.
    Refused,
}

impl RequestState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Pending => "pending",
            RequestState::Approved => "approved",
            RequestState::Refused => "refused",
        }
    }

    /// The state with this stored name.
    pub fn parse(s: &str) -> Option<RequestState> {
        [
            RequestState::Pending,
            RequestState::Approved,
            RequestState::Refused,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

/// A request to release a held original (see `crate::release`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRequest {
    /// The request's number.
    pub id: i64,
    /// The held item.
    pub report_id: String,
    /// Who wants it released.
    pub requester: String,
    /// Who entered the request (the requester, or an operator acting on their behalf).
    pub entered_by: String,
    /// Why (required).
    pub reason: String,
    /// When it was made, RFC 3339.
    pub created_at: String,
    /// Where it stands.
    pub state: RequestState,
    /// Who approved or refused it.
    pub decided_by: Option<String>,
    /// Why they did.
    pub decision_reason: Option<String>,
    /// When, RFC 3339.
    pub decided_at: Option<String>,
    /// When the released original was accepted downstream or written, RFC 3339.
    pub delivered_at: Option<String>,
    /// The downstream's reply, or the file written, for the last delivery attempt.
    pub delivery_reply: Option<String>,
}

/// Which release requests to list; every filter given must match; newest first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestFilter {
    /// This state.
    pub state: Option<RequestState>,
    /// This held item.
    pub report_id: Option<String>,
    /// Made by (or on behalf of) this user.
    pub requester: Option<String>,
    /// At most this many (0 = 100; capped at [`Search::MAX_LIMIT`]).
    pub limit: usize,
    /// Skip this many first.
    pub offset: u64,
}

/// What [`RequestIndex::add_request`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddRequest {
    /// The new request.
    Added(ReleaseRequest),
    /// Nothing: this request is already pending for the item.
    AlreadyPending(ReleaseRequest),
}

/// Release requests and unlock attempts, kept beside the rows they refer to (small on
/// purpose: the rules live in `crate::release`, the index only stores and moves states
/// atomically).
pub trait RequestIndex: Send + Sync {
    /// Adds a pending request unless one is pending for the same report id.
    fn add_request(
        &self,
        report_id: &str,
        requester: &str,
        entered_by: &str,
        reason: &str,
    ) -> Result<AddRequest, QuarantineError>;
    /// One request.
    fn get_request(&self, id: i64) -> Result<Option<ReleaseRequest>, QuarantineError>;
    /// The newest request for a report id.
    fn latest_request(&self, report_id: &str) -> Result<Option<ReleaseRequest>, QuarantineError>;
    /// Requests matching `filter`, newest first.
    fn list_requests(&self, filter: &RequestFilter)
    -> Result<Vec<ReleaseRequest>, QuarantineError>;
    /// Moves a request from `pending` to `state` (approved or refused); false when it was not
    /// pending any more (someone else decided first).
    fn decide_request(
        &self,
        id: i64,
        state: RequestState,
        decided_by: &str,
        reason: &str,
    ) -> Result<bool, QuarantineError>;
    /// Records a delivery attempt of an approved request: `delivered` sets `delivered_at`.
    fn record_delivery(&self, id: i64, delivered: bool, reply: &str)
    -> Result<(), QuarantineError>;
    /// Adds one to the wrong-password count of a report id; returns the new count.
    fn add_unlock_failure(&self, report_id: &str) -> Result<u32, QuarantineError>;
    /// The wrong-password count of a report id.
    fn unlock_failures(&self, report_id: &str) -> Result<u32, QuarantineError>;
}

/// The SQLite index at `DIR/index.sqlite`.
#[derive(Debug)]
pub struct SqliteIndex {
    path: PathBuf,
    conn: Mutex<Connection>,
}

/// The index file's name inside the quarantine directory.
pub const INDEX_FILE: &str = "index.sqlite";

/// Each migration, in order; `schema_version` records which have run.
const MIGRATIONS: &[&str] = &[
    // 1: the held table and its search indexes.
    "CREATE TABLE IF NOT EXISTS held (
        id INTEGER PRIMARY KEY,
        report_id TEXT NOT NULL UNIQUE,
        quarantine_id TEXT NOT NULL,
        received_at TEXT NOT NULL,
        received_ms INTEGER NOT NULL,
        source TEXT NOT NULL,
        client_ip TEXT,
        helo TEXT,
        mail_from TEXT,
        rcpt_to TEXT NOT NULL,
        message_id TEXT,
        subject TEXT,
        header_from TEXT,
        file_name TEXT,
        size INTEGER NOT NULL,
        verdict TEXT NOT NULL,
        threats TEXT NOT NULL,
        report_json TEXT NOT NULL,
        status TEXT NOT NULL,
        downstream_reply TEXT,
        updated_ms INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS held_by_time ON held(received_ms, id);
    CREATE INDEX IF NOT EXISTS held_by_status ON held(status, received_ms, id);
    CREATE INDEX IF NOT EXISTS held_by_verdict ON held(verdict, received_ms, id);
    CREATE INDEX IF NOT EXISTS held_by_quarantine ON held(quarantine_id, received_ms);
    CREATE TABLE IF NOT EXISTS held_rcpt (
        held INTEGER NOT NULL REFERENCES held(id),
        rcpt TEXT NOT NULL,
        PRIMARY KEY (held, rcpt)
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS held_threat (
        threat TEXT NOT NULL,
        held INTEGER NOT NULL REFERENCES held(id),
        PRIMARY KEY (threat, held)
    ) WITHOUT ROWID;",
    // 2: release requests (crate::release) and wrong-password counts for PPAP unlocking.
    "CREATE TABLE IF NOT EXISTS release_requests (
        id INTEGER PRIMARY KEY,
        report_id TEXT NOT NULL,
        requester TEXT NOT NULL,
        entered_by TEXT NOT NULL,
        reason TEXT NOT NULL,
        created_at TEXT NOT NULL,
        state TEXT NOT NULL,
        decided_by TEXT,
        decision_reason TEXT,
        decided_at TEXT,
        delivered_at TEXT,
        delivery_reply TEXT
    );
    CREATE UNIQUE INDEX IF NOT EXISTS release_one_pending
        ON release_requests(report_id) WHERE state = 'pending';
    CREATE INDEX IF NOT EXISTS release_by_report ON release_requests(report_id, id);
    CREATE INDEX IF NOT EXISTS release_by_state ON release_requests(state, id);
    CREATE TABLE IF NOT EXISTS unlock_failures (
        report_id TEXT PRIMARY KEY,
        failures INTEGER NOT NULL
    ) WITHOUT ROWID;",
];

/// The columns of `held` a [`HeldItem`] is read from, in [`row_to_item`]'s order.
const COLUMNS: &str = "report_id, quarantine_id, received_at, source, client_ip, helo, \
     mail_from, rcpt_to, message_id, subject, header_from, file_name, size, verdict, threats, \
     report_json, status, downstream_reply";

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// A JSON array of strings from a column, or a conversion error naming the column.
fn json_list(row: &Row<'_>, idx: usize) -> rusqlite::Result<Vec<String>> {
    let text: String = row.get(idx)?;
    serde_json::from_str(&text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e)))
}

fn row_to_item(row: &Row<'_>) -> rusqlite::Result<HeldItem> {
    let status: String = row.get(16)?;
    let status = HoldStatus::parse(&status).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            16,
            Type::Text,
            format!("unknown status {status:?}").into(),
        )
    })?;
    Ok(HeldItem {
        report_id: row.get(0)?,
        quarantine_id: row.get(1)?,
        received_at: row.get(2)?,
        source: row.get(3)?,
        client_ip: row.get(4)?,
        helo: row.get(5)?,
        mail_from: row.get(6)?,
        rcpt_to: json_list(row, 7)?,
        message_id: row.get(8)?,
        subject: row.get(9)?,
        header_from: row.get(10)?,
        file_name: row.get(11)?,
        size: {
            let n: i64 = row.get(12)?;
            u64::try_from(n).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(12, Type::Integer, Box::new(e))
            })?
        },
        verdict: row.get(13)?,
        threats: json_list(row, 14)?,
        report_json: row.get(15)?,
        status,
        downstream_reply: row.get(17)?,
    })
}

/// The WHERE clause and its parameters for a search.
fn where_clause(s: &Search) -> (String, Vec<Value>) {
    let mut conds: Vec<&str> = Vec::new();
    let mut params: Vec<Value> = Vec::new();
    if let Some(v) = &s.sender {
        conds.push("(instr(lower(mail_from), ?) > 0 OR instr(lower(header_from), ?) > 0)");
        let needle = v.to_ascii_lowercase();
        params.push(Value::Text(needle.clone()));
        params.push(Value::Text(needle));
    }
    if let Some(v) = &s.recipient {
        conds.push("id IN (SELECT held FROM held_rcpt WHERE instr(rcpt, ?) > 0)");
        params.push(Value::Text(v.to_ascii_lowercase()));
    }
    if let Some(v) = &s.subject {
        conds.push("instr(lower(subject), ?) > 0");
        params.push(Value::Text(v.to_ascii_lowercase()));
    }
    if let Some(t) = s.since {
        conds.push("received_ms >= ?");
        params.push(Value::Integer(t.as_millisecond()));
    }
    if let Some(t) = s.until {
        conds.push("received_ms < ?");
        params.push(Value::Integer(t.as_millisecond()));
    }
    if let Some(v) = &s.verdict {
        conds.push("verdict = ?");
        params.push(Value::Text(v.clone()));
    }
    if let Some(v) = &s.threat {
        conds.push("id IN (SELECT held FROM held_threat WHERE threat = ?)");
        params.push(Value::Text(v.clone()));
    }
    if let Some(v) = s.status {
        conds.push("status = ?");
        params.push(Value::Text(v.as_str().to_owned()));
    }
    let clause = if conds.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conds.join(" AND "))
    };
    (clause, params)
}

impl SqliteIndex {
    /// Opens (creating and migrating if needed) the index in the quarantine directory `dir`.
    pub fn open(dir: &Path) -> Result<SqliteIndex, QuarantineError> {
        let path = dir.join(INDEX_FILE);
        let err = |source| QuarantineError::Index {
            path: path.clone(),
            source,
        };
        // Owner-only from the start (SQLite gives the -wal and -shm files the same mode).
        {
            let mut o = std::fs::OpenOptions::new();
            o.create(true).append(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                o.mode(0o600);
            }
            o.open(&path).map_err(|source| QuarantineError::Io {
                op: "create",
                path: path.clone(),
                source,
            })?;
        }
        let mut conn = Connection::open(&path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(err)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = %path.display(), mode = %mode, "The quarantine index could not switch to WAL mode.");
        }
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
            .map_err(err)?;
        migrate(&mut conn).map_err(|e| match e {
            Migrate::Sql(source) => err(source),
            Migrate::Newer(v) => QuarantineError::Invalid(format!(
                "{} has schema version {v}, newer than this mugai knows ({}): use the newer \
                 mugai, or restore the index from a backup",
                path.display(),
                MIGRATIONS.len()
            )),
        })?;
        Ok(SqliteIndex {
            path,
            conn: Mutex::new(conn),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version the database is at.
    pub fn schema_version(&self) -> Result<u32, QuarantineError> {
        self.with(|c| {
            c.query_row(
                "SELECT coalesce(max(version), 0) FROM schema_version",
                [],
                |r| r.get(0),
            )
        })
    }

    /// Runs `f` on the connection (one user at a time), mapping SQLite errors.
    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, QuarantineError> {
        // A panic while the lock was held left no transaction open (dropping a Transaction
        // rolls it back), so the connection is still usable.
        let mut conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut conn).map_err(|source| QuarantineError::Index {
            path: self.path.clone(),
            source,
        })
    }

    /// Caps the database at its current size, so that the next write that needs a new page
    /// fails with `SQLITE_FULL` as on a full disk (tests only).
    #[cfg(test)]
    pub(crate) fn cap_at_current_size(&self) -> Result<(), QuarantineError> {
        self.with(|c| {
            let pages: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0))?;
            c.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))
        })
    }

    /// The query plan SQLite picks for a search (tests check it uses the indexes).
    #[cfg(test)]
    pub(crate) fn plan(&self, search: &Search) -> Result<String, QuarantineError> {
        let (clause, params) = where_clause(search);
        let sql = format!(
            "EXPLAIN QUERY PLAN SELECT {COLUMNS} FROM held {clause} \
             ORDER BY received_ms DESC, id DESC LIMIT 10"
        );
        self.with(|c| {
            let mut st = c.prepare(&sql)?;
            let rows = st.query_map(rusqlite::params_from_iter(params), |r| {
                r.get::<_, String>(3)
            })?;
            let mut out = String::new();
            for r in rows {
                out.push_str(&r?);
                out.push('\n');
            }
            Ok(out)
        })
    }
}

/// Why migrating failed.
enum Migrate {
    Sql(rusqlite::Error),
    Newer(i64),
}

impl From<rusqlite::Error> for Migrate {
    fn from(e: rusqlite::Error) -> Migrate {
        Migrate::Sql(e)
    }
}

/// Brings the schema up to date in one immediate transaction (see the module docs).
fn migrate(conn: &mut Connection) -> Result<(), Migrate> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")?;
    let current: i64 = tx.query_row(
        "SELECT coalesce(max(version), 0) FROM schema_version",
        [],
        |r| r.get(0),
    )?;
    let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    if current > known {
        return Err(Migrate::Newer(current));
    }
    for (version, sql) in (1i64..).zip(MIGRATIONS.iter()) {
        if version > current {
            tx.execute_batch(sql)?;
            tx.execute("INSERT INTO schema_version (version) VALUES (?)", [version])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// Checks what becomes a row; returns the received time in milliseconds and the size.
fn validate(item: &HeldItem) -> Result<(i64, i64), QuarantineError> {
    if !sanitizer_core::report::is_valid_report_id(&item.report_id) {
        return Err(QuarantineError::InvalidId(item.report_id.clone()));
    }
    QuarantineId::parse(&item.quarantine_id)?;
    let t: jiff::Timestamp = item.received_at.parse().map_err(|e| {
        QuarantineError::Invalid(format!(
            "received_at {:?} is not an RFC 3339 time: {e}",
            item.received_at
        ))
    })?;
    let size = i64::try_from(item.size)
        .map_err(|_| QuarantineError::Invalid(format!("size {} too large", item.size)))?;
    Ok((t.as_millisecond(), size))
}

fn to_json(list: &[String]) -> String {
    serde_json::Value::from(list.to_vec()).to_string()
}

impl QuarantineIndex for SqliteIndex {
    fn insert_many(&self, items: &[HeldItem]) -> Result<(), QuarantineError> {
        let checked: Vec<(i64, i64)> = items.iter().map(validate).collect::<Result<_, _>>()?;
        let now = now_ms();
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            {
                let mut row = tx.prepare_cached(
                    "INSERT INTO held (report_id, quarantine_id, received_at, received_ms, \
                     source, client_ip, helo, mail_from, rcpt_to, message_id, subject, \
                     header_from, file_name, size, verdict, threats, report_json, status, \
                     downstream_reply, updated_ms) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, \
                     ?16, ?17, ?18, ?19, ?20) ON CONFLICT (report_id) DO NOTHING",
                )?;
                let mut rcpt = tx
                    .prepare_cached("INSERT OR IGNORE INTO held_rcpt (held, rcpt) VALUES (?, ?)")?;
                let mut threat = tx.prepare_cached(
                    "INSERT OR IGNORE INTO held_threat (threat, held) VALUES (?, ?)",
                )?;
                for (item, (ms, size)) in items.iter().zip(checked) {
                    let added = row.execute(params![
                        item.report_id,
                        item.quarantine_id,
                        item.received_at,
                        ms,
                        item.source,
                        item.client_ip,
                        item.helo,
                        item.mail_from,
                        to_json(&item.rcpt_to),
                        item.message_id,
                        item.subject,
                        item.header_from,
                        item.file_name,
                        size,
                        item.verdict,
                        to_json(&item.threats),
                        item.report_json,
                        item.status.as_str(),
                        item.downstream_reply,
                        now,
                    ])?;
                    if added == 0 {
                        continue;
                    }
                    let id = tx.last_insert_rowid();
                    for r in &item.rcpt_to {
                        rcpt.execute(params![id, r.to_ascii_lowercase()])?;
                    }
                    for t in &item.threats {
                        threat.execute(params![t, id])?;
                    }
                }
            }
            tx.commit()
        })
    }

    fn set_delivery(
        &self,
        report_id: &str,
        status: HoldStatus,
        reply: Option<&str>,
    ) -> Result<(), QuarantineError> {
        let changed = self.with(|c| {
            c.execute(
                "UPDATE held SET status = ?, downstream_reply = coalesce(?, downstream_reply), \
                 updated_ms = ? WHERE report_id = ?",
                params![status.as_str(), reply, now_ms(), report_id],
            )
        })?;
        if changed == 0 {
            return Err(QuarantineError::NoSuchReport(report_id.to_owned()));
        }
        Ok(())
    }

    fn get(&self, report_id: &str) -> Result<Option<HeldItem>, QuarantineError> {
        self.with(|c| {
            c.query_row(
                &format!("SELECT {COLUMNS} FROM held WHERE report_id = ?"),
                [report_id],
                row_to_item,
            )
            .optional()
        })
    }

    fn search(&self, search: &Search) -> Result<Vec<HeldItem>, QuarantineError> {
        let (clause, mut params) = where_clause(search);
        let limit = search.limit.min(Search::MAX_LIMIT);
        params.push(Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
        params.push(Value::Integer(
            i64::try_from(search.offset).unwrap_or(i64::MAX),
        ));
        let sql = format!(
            "SELECT {COLUMNS} FROM held {clause} ORDER BY received_ms DESC, id DESC \
             LIMIT ? OFFSET ?"
        );
        self.with(|c| {
            let mut st = c.prepare_cached(&sql)?;
            let rows = st.query_map(rusqlite::params_from_iter(params), row_to_item)?;
            rows.collect()
        })
    }

    fn count(&self, search: &Search) -> Result<u64, QuarantineError> {
        let (clause, params) = where_clause(search);
        let sql = format!("SELECT count(*) FROM held {clause}");
        let n: i64 =
            self.with(|c| c.query_row(&sql, rusqlite::params_from_iter(params), |r| r.get(0)))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn expired(
        &self,
        cutoff: jiff::Timestamp,
        limit: usize,
    ) -> Result<Vec<QuarantineId>, QuarantineError> {
        let ids: Vec<String> = self.with(|c| {
            let mut st = c.prepare_cached(
                "SELECT quarantine_id FROM held GROUP BY quarantine_id \
                 HAVING max(received_ms) < ? AND sum(status <> 'purged') > 0 \
                 ORDER BY max(received_ms) LIMIT ?",
            )?;
            let rows = st.query_map(
                params![
                    cutoff.as_millisecond(),
                    i64::try_from(limit).unwrap_or(i64::MAX)
                ],
                |r| r.get(0),
            )?;
            rows.collect()
        })?;
        ids.iter().map(|s| QuarantineId::parse(s)).collect()
    }

    fn mark_purged(&self, id: &QuarantineId) -> Result<usize, QuarantineError> {
        self.with(|c| {
            c.execute(
                "UPDATE held SET status = 'purged', updated_ms = ? \
                 WHERE quarantine_id = ? AND status <> 'purged'",
                params![now_ms(), id.as_str()],
            )
        })
    }

    fn knows(&self, id: &QuarantineId) -> Result<bool, QuarantineError> {
        self.with(|c| {
            c.query_row(
                "SELECT EXISTS (SELECT 1 FROM held WHERE quarantine_id = ?)",
                [id.as_str()],
                |r| r.get(0),
            )
        })
    }

    fn interrupt_held(&self, reply: &str) -> Result<usize, QuarantineError> {
        self.with(|c| {
            c.execute(
                "UPDATE held SET status = 'deferred', downstream_reply = ?, updated_ms = ? \
                 WHERE status = 'held'",
                params![reply, now_ms()],
            )
        })
    }
}

const REQUEST_COLUMNS: &str = "id, report_id, requester, entered_by, reason, created_at, state, \
     decided_by, decision_reason, decided_at, delivered_at, delivery_reply";

fn now_rfc3339() -> String {
    jiff::Timestamp::now().to_string()
}

fn row_to_request(row: &Row<'_>) -> rusqlite::Result<ReleaseRequest> {
    let state: String = row.get(6)?;
    let state = RequestState::parse(&state).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            6,
            Type::Text,
            format!("unknown request state {state:?}").into(),
        )
    })?;
    Ok(ReleaseRequest {
        id: row.get(0)?,
        report_id: row.get(1)?,
        requester: row.get(2)?,
        entered_by: row.get(3)?,
        reason: row.get(4)?,
        created_at: row.get(5)?,
        state,
        decided_by: row.get(7)?,
        decision_reason: row.get(8)?,
        decided_at: row.get(9)?,
        delivered_at: row.get(10)?,
        delivery_reply: row.get(11)?,
    })
}

impl RequestIndex for SqliteIndex {
    fn add_request(
        &self,
        report_id: &str,
        requester: &str,
        entered_by: &str,
        reason: &str,
    ) -> Result<AddRequest, QuarantineError> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let pending = tx
                .query_row(
                    &format!(
                        "SELECT {REQUEST_COLUMNS} FROM release_requests \
                         WHERE report_id = ? AND state = 'pending'"
                    ),
                    [report_id],
                    row_to_request,
                )
                .optional()?;
            if let Some(p) = pending {
                return Ok(AddRequest::AlreadyPending(p));
            }
            tx.execute(
                "INSERT INTO release_requests (report_id, requester, entered_by, reason, \
                 created_at, state) VALUES (?, ?, ?, ?, ?, 'pending')",
                params![report_id, requester, entered_by, reason, now_rfc3339()],
            )?;
            let id = tx.last_insert_rowid();
            let added = tx.query_row(
                &format!("SELECT {REQUEST_COLUMNS} FROM release_requests WHERE id = ?"),
                [id],
                row_to_request,
            )?;
            tx.commit()?;
            Ok(AddRequest::Added(added))
        })
    }

    fn get_request(&self, id: i64) -> Result<Option<ReleaseRequest>, QuarantineError> {
        self.with(|c| {
            c.query_row(
                &format!("SELECT {REQUEST_COLUMNS} FROM release_requests WHERE id = ?"),
                [id],
                row_to_request,
            )
            .optional()
        })
    }

    fn latest_request(&self, report_id: &str) -> Result<Option<ReleaseRequest>, QuarantineError> {
        self.with(|c| {
            c.query_row(
                &format!(
                    "SELECT {REQUEST_COLUMNS} FROM release_requests WHERE report_id = ? \
                     ORDER BY id DESC LIMIT 1"
                ),
                [report_id],
                row_to_request,
            )
            .optional()
        })
    }

    fn list_requests(
        &self,
        filter: &RequestFilter,
    ) -> Result<Vec<ReleaseRequest>, QuarantineError> {
        let mut clauses = Vec::new();
        let mut values: Vec<Value> = Vec::new();
        if let Some(s) = filter.state {
            clauses.push("state = ?");
            values.push(Value::Text(s.as_str().into()));
        }
        if let Some(r) = &filter.report_id {
            clauses.push("report_id = ?");
            values.push(Value::Text(r.clone()));
        }
        if let Some(u) = &filter.requester {
            clauses.push("requester = ?");
            values.push(Value::Text(u.clone()));
        }
        let clause = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        let limit = match filter.limit {
            0 => 100,
            n => n.min(Search::MAX_LIMIT),
        };
        values.push(Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
        values.push(Value::Integer(
            i64::try_from(filter.offset).unwrap_or(i64::MAX),
        ));
        let sql = format!(
            "SELECT {REQUEST_COLUMNS} FROM release_requests {clause} ORDER BY id DESC \
             LIMIT ? OFFSET ?"
        );
        self.with(|c| {
            let mut st = c.prepare_cached(&sql)?;
            let rows = st.query_map(rusqlite::params_from_iter(values), row_to_request)?;
            rows.collect()
        })
    }

    fn decide_request(
        &self,
        id: i64,
        state: RequestState,
        decided_by: &str,
        reason: &str,
    ) -> Result<bool, QuarantineError> {
        if state == RequestState::Pending {
            return Err(QuarantineError::Invalid(
                "a decision is approved or refused, not pending".into(),
            ));
        }
        let n = self.with(|c| {
            c.execute(
                "UPDATE release_requests SET state = ?, decided_by = ?, decision_reason = ?, \
                 decided_at = ? WHERE id = ? AND state = 'pending'",
                params![state.as_str(), decided_by, reason, now_rfc3339(), id],
            )
        })?;
        Ok(n == 1)
    }

    fn record_delivery(
        &self,
        id: i64,
        delivered: bool,
        reply: &str,
    ) -> Result<(), QuarantineError> {
        let at = delivered.then(now_rfc3339);
        self.with(|c| {
            c.execute(
                "UPDATE release_requests SET delivered_at = coalesce(?, delivered_at), \
                 delivery_reply = ? WHERE id = ?",
                params![at, reply, id],
            )
        })?;
        Ok(())
    }

    fn add_unlock_failure(&self, report_id: &str) -> Result<u32, QuarantineError> {
        let n: i64 = self.with(|c| {
            c.query_row(
                "INSERT INTO unlock_failures (report_id, failures) VALUES (?, 1) \
                 ON CONFLICT (report_id) DO UPDATE SET failures = failures + 1 \
                 RETURNING failures",
                [report_id],
                |r| r.get(0),
            )
        })?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    fn unlock_failures(&self, report_id: &str) -> Result<u32, QuarantineError> {
        let n: Option<i64> = self.with(|c| {
            c.query_row(
                "SELECT failures FROM unlock_failures WHERE report_id = ?",
                [report_id],
                |r| r.get(0),
            )
            .optional()
        })?;
        Ok(n.map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qid(n: u32) -> String {
        sanitizer_core::report::sha256_hex(&n.to_be_bytes())
    }

    fn item(n: u32) -> HeldItem {
        HeldItem {
            report_id: format!("r-{n:06}"),
            quarantine_id: qid(n),
            received_at: "2026-01-01T00:00:00Z"
                .parse::<jiff::Timestamp>()
                .unwrap()
                .checked_add(jiff::SignedDuration::from_secs(i64::from(n) * 60))
                .unwrap()
                .to_string(),
            source: "smtp".into(),
            client_ip: Some("192.0.2.10".into()),
            helo: Some("mx.example.jp".into()),
            mail_from: Some(format!("sender{}@Example.JP", n % 7)),
            rcpt_to: vec![
                format!("staff{}@city.example.lg.jp", n % 5),
                "soumu@city.example.lg.jp".into(),
            ],
            message_id: Some(format!("<{n}@example.jp>")),
            subject: Some(format!("見積書 No.{n} <script>")),
            header_from: Some(format!("\"送信者\" <from{}@example.jp>", n % 3)),
            file_name: None,
            size: 1000 + u64::from(n),
            verdict: if n.is_multiple_of(2) {
                "sanitized"
            } else {
                "blocked"
            }
            .into(),
            threats: if n.is_multiple_of(10) {
                vec!["ooxml.vba_macro".into(), "pdf.javascript".into()]
            } else {
                vec!["html.script".into()]
            },
            report_json: format!("{{\"id\":\"r-{n:06}\"}}"),
            status: HoldStatus::Held,
            downstream_reply: None,
        }
    }

    fn ids(rows: &[HeldItem]) -> Vec<&str> {
        rows.iter().map(|r| r.report_id.as_str()).collect()
    }

    #[test]
    fn insert_get_update_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let index = SqliteIndex::open(d.path()).unwrap();
        let a = item(1);
        index.insert(&a).unwrap();
        assert_eq!(index.get("r-000001").unwrap(), Some(a.clone()));
        assert_eq!(index.get("r-404").unwrap(), None);

        // Inserting the same report id again keeps the first row.
        let mut again = a.clone();
        again.subject = Some("changed".into());
        index.insert(&again).unwrap();
        assert_eq!(index.get("r-000001").unwrap(), Some(a.clone()));
        assert_eq!(index.count(&Search::default()).unwrap(), 1);

        index
            .set_delivery("r-000001", HoldStatus::Delivered, Some("250 2.0.0 queued"))
            .unwrap();
        let got = index.get("r-000001").unwrap().unwrap();
        assert_eq!(got.status, HoldStatus::Delivered);
        assert_eq!(got.downstream_reply.as_deref(), Some("250 2.0.0 queued"));
        // A status change without a reply keeps the last reply.
        index
            .set_delivery("r-000001", HoldStatus::Released, None)
            .unwrap();
        let got = index.get("r-000001").unwrap().unwrap();
        assert_eq!(got.status, HoldStatus::Released);
        assert_eq!(got.downstream_reply.as_deref(), Some("250 2.0.0 queued"));
        assert!(matches!(
            index.set_delivery("r-404", HoldStatus::Delivered, None),
            Err(QuarantineError::NoSuchReport(_))
        ));

        // Durable across a reopen.
        drop(index);
        let index = SqliteIndex::open(d.path()).unwrap();
        assert_eq!(
            index.get("r-000001").unwrap().unwrap().status,
            HoldStatus::Released
        );
    }

    #[test]
    fn bad_items_are_refused_whole() {
        let d = tempfile::tempdir().unwrap();
        let index = SqliteIndex::open(d.path()).unwrap();
        let mut bad_time = item(2);
        bad_time.received_at = "yesterday".into();
        let err = index.insert_many(&[item(1), bad_time]).unwrap_err();
        assert!(matches!(err, QuarantineError::Invalid(_)), "{err}");
        let mut bad_id = item(3);
        bad_id.report_id = "../x".into();
        assert!(matches!(
            index.insert(&bad_id),
            Err(QuarantineError::InvalidId(_))
        ));
        let mut bad_q = item(4);
        bad_q.quarantine_id = "nothex".into();
        assert!(index.insert(&bad_q).is_err());
        assert_eq!(
            index.count(&Search::default()).unwrap(),
            0,
            "all or nothing"
        );
    }

    #[test]
    fn filters_combine_and_pages_come_newest_first() {
        let d = tempfile::tempdir().unwrap();
        let index = SqliteIndex::open(d.path()).unwrap();
        let items: Vec<HeldItem> = (1..=40).map(item).collect();
        index.insert_many(&items).unwrap();
        let page = |s: Search| index.search(&s).unwrap();

        let all = page(Search::default());
        assert_eq!(all.len(), 40);
        assert_eq!(all[0].report_id, "r-000040");
        assert_eq!(all[39].report_id, "r-000001");
        let p2 = page(Search {
            limit: 5,
            offset: 5,
            ..Search::default()
        });
        assert_eq!(
            ids(&p2),
            ["r-000035", "r-000034", "r-000033", "r-000032", "r-000031"]
        );

        // Sender: envelope or header, any case.
        let s = page(Search {
            sender: Some("SENDER3@example.jp".into()),
            ..Search::default()
        });
        assert!(!s.is_empty());
        assert!(
            s.iter()
                .all(|r| r.mail_from.as_deref() == Some("sender3@Example.JP"))
        );
        assert_eq!(s.len(), (1..=40).filter(|n| n % 7 == 3).count());
        let s = page(Search {
            sender: Some("from2@".into()),
            ..Search::default()
        });
        assert_eq!(s.len(), (1..=40).filter(|n| n % 3 == 2).count());

        // Recipient, threat, verdict, status, subject, dates together.
        let s = page(Search {
            recipient: Some("STAFF0@city".into()),
            threat: Some("pdf.javascript".into()),
            ..Search::default()
        });
        assert_eq!(ids(&s), ["r-000040", "r-000030", "r-000020", "r-000010"]);
        let s = page(Search {
            verdict: Some("blocked".into()),
            subject: Some("no.1".into()),
            ..Search::default()
        });
        assert_eq!(
            ids(&s),
            [
                "r-000019", "r-000017", "r-000015", "r-000013", "r-000011", "r-000001"
            ]
        );
        // Japanese and markup are data: found as they were given.
        let s = page(Search {
            subject: Some("見積書 No.2 <script>".into()),
            ..Search::default()
        });
        assert_eq!(ids(&s), ["r-000002"]);
        let t = |m: i64| {
            "2026-01-01T00:00:00Z"
                .parse::<jiff::Timestamp>()
                .unwrap()
                .checked_add(jiff::SignedDuration::from_mins(m))
                .unwrap()
        };
        let s = page(Search {
            since: Some(t(10)),
            until: Some(t(13)),
            ..Search::default()
        });
        assert_eq!(ids(&s), ["r-000012", "r-000011", "r-000010"]);
        index
            .set_delivery("r-000012", HoldStatus::Refused, Some("554 no"))
            .unwrap();
        let s = page(Search {
            status: Some(HoldStatus::Refused),
            ..Search::default()
        });
        assert_eq!(ids(&s), ["r-000012"]);
        assert_eq!(
            index
                .count(&Search {
                    status: Some(HoldStatus::Held),
                    ..Search::default()
                })
                .unwrap(),
            39
        );
    }

    #[test]
    fn expiry_purge_and_interrupted_holds() {
        let d = tempfile::tempdir().unwrap();
        let index = SqliteIndex::open(d.path()).unwrap();
        // Two rows share one original: it expires only when both are old.
        let mut shared_new = item(30);
        shared_new.report_id = "r-shared-new".into();
        shared_new.quarantine_id = qid(1);
        index
            .insert_many(&[item(1), item(2), item(3), shared_new])
            .unwrap();
        let cutoff: jiff::Timestamp = "2026-01-01T00:10:00Z".parse().unwrap();
        let expired = index.expired(cutoff, 100).unwrap();
        let want: Vec<QuarantineId> = [2, 3]
            .iter()
            .map(|n| QuarantineId::parse(&qid(*n)).unwrap())
            .collect();
        assert_eq!(expired, want, "oldest first, the shared one kept");
        assert_eq!(index.expired(cutoff, 1).unwrap().len(), 1);
        assert_eq!(index.mark_purged(&want[0]).unwrap(), 1);
        assert_eq!(index.mark_purged(&want[0]).unwrap(), 0);
        assert_eq!(index.expired(cutoff, 100).unwrap(), want[1..]);
        assert_eq!(
            index.get("r-000002").unwrap().unwrap().status,
            HoldStatus::Purged
        );
        assert!(index.knows(&want[0]).unwrap());
        assert!(!index.knows(&QuarantineId::of(b"other")).unwrap());

        assert_eq!(index.interrupt_held("restarted").unwrap(), 3);
        let r = index.get("r-000001").unwrap().unwrap();
        assert_eq!(r.status, HoldStatus::Deferred);
        assert_eq!(r.downstream_reply.as_deref(), Some("restarted"));
        assert_eq!(
            index.get("r-000002").unwrap().unwrap().status,
            HoldStatus::Purged
        );
    }

    #[test]
    fn migrations_are_idempotent_and_newer_schemas_refused() {
        let d = tempfile::tempdir().unwrap();
        let index = SqliteIndex::open(d.path()).unwrap();
        index.insert(&item(1)).unwrap();
        assert_eq!(index.schema_version().unwrap(), 2);
        drop(index);
        let index = SqliteIndex::open(d.path()).unwrap();
        assert_eq!(index.schema_version().unwrap(), 2);
        let rows: i64 = index
            .with(|c| c.query_row("SELECT count(*) FROM schema_version", [], |r| r.get(0)))
            .unwrap();
        assert_eq!(rows, 2);
        assert!(index.get("r-000001").unwrap().is_some());
        index
            .with(|c| c.execute("INSERT INTO schema_version (version) VALUES (99)", []))
            .unwrap();
        drop(index);
        let err = SqliteIndex::open(d.path()).unwrap_err();
        assert!(err.to_string().contains("newer"), "{err}");
    }

    #[test]
    fn requests_are_pending_once_and_decided_once() {
        let d = tempfile::tempdir().unwrap();
        let index = SqliteIndex::open(d.path()).unwrap();
        let AddRequest::Added(a) = index.add_request("r-1", "staff", "staff", "why").unwrap()
        else {
            panic!("not added")
        };
        assert_eq!(a.state, RequestState::Pending);
        assert!(matches!(
            index.add_request("r-1", "other", "other", "too").unwrap(),
            AddRequest::AlreadyPending(p) if p.id == a.id
        ));
        assert!(index.add_request("r-2", "x", "x", "y").is_ok());
        assert!(
            index
                .decide_request(a.id, RequestState::Approved, "boss", "ok")
                .unwrap()
        );
        // The loser of a race changes nothing.
        assert!(
            !index
                .decide_request(a.id, RequestState::Refused, "other", "no")
                .unwrap()
        );
        let got = index.get_request(a.id).unwrap().unwrap();
        assert_eq!(got.state, RequestState::Approved);
        assert_eq!(got.decided_by.as_deref(), Some("boss"));
        index.record_delivery(a.id, false, "451 later").unwrap();
        assert!(
            index
                .get_request(a.id)
                .unwrap()
                .unwrap()
                .delivered_at
                .is_none()
        );
        index.record_delivery(a.id, true, "250 ok").unwrap();
        let got = index.latest_request("r-1").unwrap().unwrap();
        assert!(got.delivered_at.is_some());
        assert_eq!(got.delivery_reply.as_deref(), Some("250 ok"));
        // Decided: a new request may be pending again.
        assert!(matches!(
            index.add_request("r-1", "staff", "staff", "again").unwrap(),
            AddRequest::Added(_)
        ));
        let pending = index
            .list_requests(&RequestFilter {
                state: Some(RequestState::Pending),
                ..RequestFilter::default()
            })
            .unwrap();
        assert_eq!(pending.len(), 2);
        assert_eq!(pending[0].report_id, "r-1", "newest first");
        assert_eq!(index.unlock_failures("r-1").unwrap(), 0);
        assert_eq!(index.add_unlock_failure("r-1").unwrap(), 1);
        assert_eq!(index.add_unlock_failure("r-1").unwrap(), 2);
        assert_eq!(index.unlock_failures("r-1").unwrap(), 2);
    }

    #[cfg(unix)]
    #[test]
    fn the_database_is_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let index = SqliteIndex::open(d.path()).unwrap();
        index.insert(&item(1)).unwrap();
        for name in [INDEX_FILE, "index.sqlite-wal"] {
            let mode = std::fs::metadata(d.path().join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{name}: {mode:o}");
        }
    }

    #[test]
    fn damaged_values_are_errors_not_panics() {
        let d = tempfile::tempdir().unwrap();
        let index = SqliteIndex::open(d.path()).unwrap();
        index.insert(&item(1)).unwrap();
        index
            .with(|c| c.execute("UPDATE held SET rcpt_to = 'not json', status = 'x'", []))
            .unwrap();
        let err = index.get("r-000001").unwrap_err();
        assert!(matches!(err, QuarantineError::Index { .. }), "{err}");
        index
            .with(|c| c.execute("UPDATE held SET rcpt_to = '[]', status = 'lost'", []))
            .unwrap();
        assert!(index.search(&Search::default()).is_err());
    }

    #[test]
    fn a_hundred_thousand_rows_page_through_the_indexes() {
        let d = tempfile::tempdir().unwrap();
        let index = SqliteIndex::open(d.path()).unwrap();
        let items: Vec<HeldItem> = (1..=100_000).map(item).collect();
        index.insert_many(&items).unwrap();
        assert_eq!(index.count(&Search::default()).unwrap(), 100_000);

        let first = index
            .search(&Search {
                limit: 50,
                ..Search::default()
            })
            .unwrap();
        let want: Vec<String> = (99_951..=100_000)
            .rev()
            .map(|n| format!("r-{n:06}"))
            .collect();
        assert_eq!(ids(&first), want);
        let last = index
            .search(&Search {
                limit: 50,
                offset: 99_990,
                ..Search::default()
            })
            .unwrap();
        assert_eq!(last.len(), 10);
        assert_eq!(last[9].report_id, "r-000001");

        let macro_blocked = index
            .search(&Search {
                threat: Some("ooxml.vba_macro".into()),
                status: Some(HoldStatus::Held),
                limit: 3,
                ..Search::default()
            })
            .unwrap();
        assert_eq!(ids(&macro_blocked), ["r-100000", "r-099990", "r-099980"]);

        // The newest-first page is read from the time index in order, not sorted afterwards.
        for s in [
            Search::default(),
            Search {
                status: Some(HoldStatus::Held),
                ..Search::default()
            },
            Search {
                verdict: Some("blocked".into()),
                ..Search::default()
            },
        ] {
            let plan = index.plan(&s).unwrap();
            assert!(plan.contains("USING") && plan.contains("INDEX"), "{plan}");
            assert!(!plan.contains("TEMP B-TREE"), "{s:?}: {plan}");
        }
    }
}
