//! The audit log: one JSON line per message the relay answered (and per notable event),
//! hash-chained so that an edited, deleted or reordered line is found by
//! [`verify`] (`mugai audit verify FILE`).
//!
//! It is a product feature for the municipality's auditors, separate from operational logs:
//! what came in, from whom, what was found and done, where the original is kept, what the
//! downstream said, and how long it took.
//!
//! ## Format (JSON Lines, UTF-8, `\n` after every line)
//! ```text
//! {"seq":1,"prev":"000…000","kind":"message","time":"2026-03-01T09:00:00.123Z",
//!  "queue_id":"…","client_ip":"192.0.2.1","mail_from":"a@example.jp",
//!  "rcpt_to":["b@city.example.lg.jp"],"message_id":"<…>","size_in":1234,"size_out":987,
//!  "verdict":"sanitized","items":[{"kind":"ooxml","action":"rebuilt","threats":[…]}],
//!  "original_sha256":"…","quarantine_id":"…","report_id":"…",
//!  "downstream_reply":"250 2.0.0 Ok","durations_ms":{"sanitize":12,"deliver":30,"total":45}}
//! ```
//! - `seq` counts lines from 1; `prev` is the lower-case hex SHA-256 of the previous line's
//!   exact bytes (without its newline), 64 zeros on the first line. Editing a line breaks the
//!   next line's `prev`; deleting or moving lines breaks `seq`.
//! - `kind` says what the line records: `message` ([`AuditRecord`]), `recovered_torn_line`
//!   (below), or any other event name ([`AuditLog::event`]: releases, key changes, ...).
//!   Readers must ignore fields they do not know; new kinds and fields may be added.
//! - Addresses (`mail_from`, `rcpt_to`) are in clear, or `hmac-sha256:<hex>` when
//!   `[audit] address_hmac_key_file` is set: HMAC-SHA256 under that key of the address
//!   lower-cased. A plain hash would not do: addresses are few and guessable (a staff
//!   directory, a partner's domain), so anyone could hash candidates and match them; with a
//!   secret key only its holder can, while equal addresses still give equal values (counts,
//!   correlation, "every message to this person" for whoever holds the key). The null sender
//!   (`<>`, an empty `mail_from`) stays empty.
//!
//! ## Durability, crashes and recovery
//! - One writer per file: [`AuditLog::open`] takes an exclusive `flock` (a second daemon on
//!   the same file is refused). Each line is one `write` on an `O_APPEND` file followed by
//!   `fdatasync`; [`AuditLog::append`] returns when the line is durable.
//! - A failed write or sync (disk full) is undone by truncating back to the last complete
//!   line, so the chain stays intact; if even that fails, the next append first recovers as
//!   below.
//! - A crash mid-write can leave a torn last line (no newline). Opening the log never deletes
//!   it: the writer ends it with a newline and appends a `recovered_torn_line` event listing
//!   the damaged lines (`torn`: their byte counts, SHA-256 and text, lossy UTF-8), chained to
//!   the last good record. [`verify`] accepts damaged lines only when such an event right
//!   after them names them exactly, so the damage stays visible and nothing can be slipped
//!   in silently. A crash during that recovery leaves more damaged lines, which the next open
//!   covers in the same way.
//! - Opening reads only the end of the file (the last good record); the whole chain is
//!   checked by [`verify`].
//!
//! ## Limits of a hash chain
//! Without a secret, whoever can rewrite the file can rebuild the chain from the point they
//! change. And removing lines at the very end leaves a shorter, valid chain. Both are
//! caught by comparing the head (`seq` and hash of the last line, printed by `mugai audit
//! verify`) with a copy kept elsewhere (a daily line in the operational log or syslog, a
//! ticket).

use std::fs::File;
use std::io::{self, BufRead, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use anyhow::Context;
use nix::fcntl::{Flock, FlockArg};
use sanitizer_core::report::{Action, Kind, Report, Verdict, sha256_hex};
use serde::{Deserialize, Serialize};

use super::quarantine::{Key, load_or_create_key, private_dir_all};
use crate::config::AuditSettings;

/// `prev` of the first line.
pub const ZERO_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// `kind` of a message line.
pub const KIND_MESSAGE: &str = "message";
/// `kind` of the line that records damaged lines found at open.
pub const KIND_RECOVERED: &str = "recovered_torn_line";
/// The longest line [`verify`] and the open-time scan read.
const MAX_LINE: u64 = 64 << 20;
/// At most this much of a damaged line's text is copied into the recovery event.
const MAX_TORN_TEXT: usize = 64 << 10;

/// Milliseconds spent on a message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Durations {
    /// Sanitizing.
    pub sanitize: u64,
    /// Delivering downstream.
    pub deliver: u64,
    /// From the end of DATA to our reply.
    pub total: u64,
}

/// One part of a message in the audit line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditItem {
    /// Sniffed kind.
    pub kind: Kind,
    /// What was done.
    pub action: Action,
    /// Threat ids found.
    pub threats: Vec<String>,
}

/// What the audit log records about one message (a `message` line; format in the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When the relay answered, RFC 3339 UTC.
    pub time: String,
    /// The relay's queue id for the message (in its `Received:` header and its replies).
    pub queue_id: String,
    /// The SMTP client's address.
    pub client_ip: Option<String>,
    /// The envelope sender, as given (replaced by its HMAC when configured).
    pub mail_from: Option<String>,
    /// The envelope recipients, as given (each replaced by its HMAC when configured).
    pub rcpt_to: Vec<String>,
    /// The `Message-ID` header.
    pub message_id: Option<String>,
    /// Bytes received.
    pub size_in: u64,
    /// Bytes delivered, when something was.
    pub size_out: Option<u64>,
    /// The verdict.
    pub verdict: Verdict,
    /// Each part: kind, action, threats.
    pub items: Vec<AuditItem>,
    /// SHA-256 of the message as received.
    pub original_sha256: String,
    /// Where the original is kept, when it is.
    pub quarantine_id: Option<String>,
    /// The report id (also in `X-Mugai-Report-Id`).
    pub report_id: String,
    /// The downstream's reply.
    pub downstream_reply: Option<String>,
    /// Time spent.
    pub durations_ms: Durations,
}

impl AuditRecord {
    /// A record with what the report says (verdict, items, sizes, hashes, ids) and the time
    /// now; the relay fills in the envelope, the reply and the durations.
    pub fn from_report(report: &Report) -> AuditRecord {
        AuditRecord {
            time: super::report::now_rfc3339(),
            queue_id: String::new(),
            client_ip: None,
            mail_from: None,
            rcpt_to: Vec::new(),
            message_id: None,
            size_in: report.input.size,
            size_out: report.output.as_ref().map(|o| o.size),
            verdict: report.verdict,
            items: report
                .items
                .iter()
                .map(|i| AuditItem {
                    kind: i.kind,
                    action: i.action,
                    threats: i.threats.clone(),
                })
                .collect(),
            original_sha256: report.input.sha256.clone(),
            quarantine_id: report.quarantine_id.clone(),
            report_id: report.id.clone(),
            downstream_reply: None,
            durations_ms: Durations {
                sanitize: report.duration_ms,
                ..Durations::default()
            },
        }
    }
}

/// One line as written: the chain fields, the kind, then the body's fields.
#[derive(Serialize)]
struct Line<'a, T: Serialize> {
    seq: u64,
    prev: &'a str,
    kind: &'a str,
    #[serde(flatten)]
    body: &'a T,
}

/// A damaged line listed in a `recovered_torn_line` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Torn {
    bytes: u64,
    sha256: String,
    text: String,
}

/// The writer's state, behind the log's mutex.
#[derive(Debug)]
struct Writer {
    file: Flock<File>,
    /// `seq` of the last good record (0 = none yet).
    seq: u64,
    /// Hash of the last good record's line ([`ZERO_HASH`] if none).
    prev: String,
    /// File length up to and including the last complete line we know is good.
    len: u64,
    /// A failed write could not be undone: recover before the next line.
    needs_recovery: bool,
}

/// The audit log, open for appending (see the module docs).
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    address_key: Option<Key>,
    writer: Mutex<Writer>,
}

/// The chain fields of a line that is a record.
struct Parsed {
    seq: u64,
    prev: String,
    kind: Option<String>,
    torn: Option<Vec<Torn>>,
}

/// Parses a line as a record: a JSON object with a `seq` number and a 64-hex-digit `prev`.
fn parse_record(line: &[u8]) -> Result<Parsed, String> {
    let v: serde_json::Value = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    let obj = v.as_object().ok_or("not a JSON object")?;
    let seq = obj
        .get("seq")
        .and_then(serde_json::Value::as_u64)
        .ok_or("no seq number")?;
    let prev = obj
        .get("prev")
        .and_then(serde_json::Value::as_str)
        .filter(|p| p.len() == 64 && p.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .ok_or("no prev hash")?
        .to_owned();
    let kind = obj
        .get("kind")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned);
    let torn = obj
        .get("torn")
        .and_then(|t| serde_json::from_value::<Vec<Torn>>(t.clone()).ok());
    Ok(Parsed {
        seq,
        prev,
        kind,
        torn,
    })
}

/// What the end of the file holds.
struct TailScan {
    /// `seq` and line hash of the last good record, and the file offset just after its
    /// newline.
    last: Option<(u64, String, u64)>,
    /// Lines after it that are not records (the last one maybe without a newline).
    damaged: Vec<Vec<u8>>,
    /// The file does not end with a newline.
    missing_newline: bool,
    /// The file's length.
    len: u64,
}

/// Reads the end of `file` back to the last good record (growing the window as needed, up to
/// [`MAX_LINE`] × 4).
fn scan_tail(file: &mut File) -> io::Result<TailScan> {
    let len = file.seek(SeekFrom::End(0))?;
    let mut window: u64 = 64 << 10;
    loop {
        let start = len.saturating_sub(window);
        file.seek(SeekFrom::Start(start))?;
        let mut buf = Vec::new();
        Read::by_ref(file).take(len - start).read_to_end(&mut buf)?;
        let missing_newline = !buf.is_empty() && !buf.ends_with(b"\n");
        // Complete lines with their end offsets; the bytes after the last newline are a torn
        // tail. When the window does not start at the file's start, its first piece may be
        // the end of a longer line: skip it.
        let mut lines: Vec<(&[u8], u64)> = Vec::new();
        let mut offset = start;
        let mut pieces = buf.split(|b| *b == b'\n').peekable();
        let mut first = true;
        let mut tail: &[u8] = &[];
        while let Some(piece) = pieces.next() {
            let end = offset + piece.len() as u64 + 1;
            if pieces.peek().is_none() {
                tail = piece;
                break;
            }
            if !(first && start > 0) {
                lines.push((piece, end));
            }
            first = false;
            offset = end;
        }
        let good = lines.iter().rposition(|(l, _)| parse_record(l).is_ok());
        if good.is_some() || start == 0 {
            let mut damaged: Vec<Vec<u8>> = Vec::new();
            let after = good.map_or(0, |i| i + 1);
            for (l, _) in lines.iter().skip(after) {
                damaged.push(l.to_vec());
            }
            if !tail.is_empty() {
                damaged.push(tail.to_vec());
            }
            let last = match good.and_then(|i| lines.get(i)) {
                Some((l, end)) => {
                    let p = parse_record(l).map_err(io::Error::other)?;
                    Some((p.seq, sha256_hex(l), *end))
                }
                None => None,
            };
            return Ok(TailScan {
                last,
                damaged,
                missing_newline,
                len,
            });
        }
        if window >= MAX_LINE * 4 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "no valid audit record in the last 256 MiB; check it with `mugai audit verify`",
            ));
        }
        window *= 4;
    }
}

impl AuditLog {
    /// Opens the log named by `settings` for appending, continuing its chain (`None` when
    /// `settings.file` is empty). Creates the file (0600) and its directory when missing,
    /// refuses a second writer, loads (or creates) the address key, and recovers a torn end
    /// (module docs).
    pub fn open(settings: &AuditSettings) -> anyhow::Result<Option<AuditLog>> {
        if settings.file.as_os_str().is_empty() {
            return Ok(None);
        }
        let path = settings.file.clone();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            private_dir_all(dir)
                .with_context(|| format!("audit log directory {}", dir.display()))?;
        }
        let mut o = std::fs::OpenOptions::new();
        o.read(true).append(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            o.mode(0o600);
        }
        let file = o
            .open(&path)
            .with_context(|| format!("audit log {}", path.display()))?;
        if !file.metadata()?.is_file() {
            anyhow::bail!("audit log {} is not a regular file", path.display());
        }
        let file = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
            anyhow::anyhow!(
                "audit log {}: another process is writing it ({e}); is another mugai serve \
                 running with the same [audit] file?",
                path.display()
            )
        })?;
        let address_key = if settings.address_hmac_key_file.as_os_str().is_empty() {
            None
        } else {
            let loaded = load_or_create_key(&settings.address_hmac_key_file)
                .context("[audit] address_hmac_key_file")?;
            if loaded.created {
                tracing::warn!(
                    key_file = %settings.address_hmac_key_file.display(),
                    "Created a new audit address key: back it up, addresses in the audit log can be matched only with it."
                );
            }
            Some(loaded.key)
        };
        let mut writer = Writer {
            file,
            seq: 0,
            prev: ZERO_HASH.to_owned(),
            len: 0,
            needs_recovery: false,
        };
        recover(&mut writer, &path).with_context(|| format!("audit log {}", path.display()))?;
        Ok(Some(AuditLog {
            path,
            address_key,
            writer: Mutex::new(writer),
        }))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `seq` and hash of the last line written (the head to keep a copy of elsewhere).
    pub fn head(&self) -> (u64, String) {
        let w = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        (w.seq, w.prev.clone())
    }

    /// An address as the log records it: as given, or `hmac-sha256:<hex>` of its lower-cased
    /// form under the address key (module docs). Empty stays empty (the null sender).
    pub fn address(&self, address: &str) -> String {
        match &self.address_key {
            Some(key) if !address.is_empty() => format!(
                "hmac-sha256:{}",
                hex::encode(key.hmac(address.to_lowercase().as_bytes()))
            ),
            _ => address.to_owned(),
        }
    }

    /// Appends a `message` line; returns when it is durable.
    pub fn append(&self, rec: &AuditRecord) -> Result<(), io::Error> {
        let mut rec = rec.clone();
        rec.mail_from = rec.mail_from.map(|a| self.address(&a));
        rec.rcpt_to = rec.rcpt_to.iter().map(|a| self.address(a)).collect();
        self.write_line(KIND_MESSAGE, &rec)
    }

    /// Appends an event line of `kind` (lower-case letters, digits and `_`; not `message` or
    /// `recovered_torn_line`) with `fields`, plus `time` (now) unless given. `seq`, `prev` and
    /// `kind` may not be among the fields. Returns when the line is durable.
    pub fn event(
        &self,
        kind: &str,
        mut fields: serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), io::Error> {
        let bad_kind = kind.is_empty()
            || !kind
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            || kind == KIND_MESSAGE
            || kind == KIND_RECOVERED;
        if bad_kind {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("audit event kind {kind:?} is not allowed"),
            ));
        }
        if let Some(k) = ["seq", "prev", "kind"]
            .iter()
            .find(|k| fields.contains_key(**k))
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("audit event field {k:?} is reserved"),
            ));
        }
        fields
            .entry("time")
            .or_insert_with(|| serde_json::Value::String(super::report::now_rfc3339()));
        self.write_line(kind, &fields)
    }

    fn write_line<T: Serialize>(&self, kind: &str, body: &T) -> Result<(), io::Error> {
        let mut w = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        if w.needs_recovery {
            recover(&mut w, &self.path)?;
        }
        let seq = w.seq + 1;
        let line = serde_json::to_string(&Line {
            seq,
            prev: &w.prev,
            kind,
            body,
        })
        .map_err(io::Error::other)?;
        commit(&mut w, seq, line)
    }
}

/// Writes `line` (and its newline) as record `seq`, durably; on failure undoes it.
fn commit(w: &mut Writer, seq: u64, line: String) -> io::Result<()> {
    let hash = sha256_hex(line.as_bytes());
    let mut bytes = line.into_bytes();
    bytes.push(b'\n');
    let written = (&*w.file)
        .write_all(&bytes)
        .and_then(|()| w.file.sync_data());
    match written {
        Ok(()) => {
            w.seq = seq;
            w.prev = hash;
            w.len += bytes.len() as u64;
            Ok(())
        }
        Err(e) => {
            // Take back whatever part of the line reached the file, so the chain stays whole.
            let undone = w.file.set_len(w.len).and_then(|()| w.file.sync_data());
            if undone.is_err() {
                w.needs_recovery = true;
            }
            Err(e)
        }
    }
}

/// Finds where the chain ends and, if damaged lines follow it, records them (module docs).
fn recover(w: &mut Writer, path: &Path) -> io::Result<()> {
    let scan = scan_tail(&mut w.file)?;
    let (seq, prev, good_end) = scan.last.clone().unwrap_or((0, ZERO_HASH.to_owned(), 0));
    w.seq = seq;
    w.prev = prev;
    w.len = scan.len;
    w.needs_recovery = false;
    if scan.damaged.is_empty() {
        return Ok(());
    }
    // A last line that lacks only its newline and continues the chain is complete: end it.
    if let [only] = scan.damaged.as_slice()
        && scan.missing_newline
        && let Ok(p) = parse_record(only)
        && p.seq == w.seq + 1
        && p.prev == w.prev
    {
        (&*w.file).write_all(b"\n")?;
        w.file.sync_data()?;
        w.seq = p.seq;
        w.prev = sha256_hex(only);
        w.len = scan.len + 1;
        return Ok(());
    }
    let torn: Vec<Torn> = scan
        .damaged
        .iter()
        .map(|l| Torn {
            bytes: l.len() as u64,
            sha256: sha256_hex(l),
            text: String::from_utf8_lossy(l.get(..MAX_TORN_TEXT).unwrap_or(l)).into_owned(),
        })
        .collect();
    tracing::error!(
        path = %path.display(),
        lines = torn.len(),
        after_seq = w.seq,
        good_bytes = good_end,
        "Audit log ended in damaged lines (a crash mid-write); they are kept and a recovery line records them."
    );
    if scan.missing_newline {
        (&*w.file).write_all(b"\n")?;
        w.len += 1;
    }
    let mut body = serde_json::Map::new();
    body.insert(
        "time".into(),
        serde_json::Value::String(super::report::now_rfc3339()),
    );
    body.insert(
        "torn".into(),
        serde_json::to_value(&torn).map_err(io::Error::other)?,
    );
    let seq = w.seq + 1;
    let line = serde_json::to_string(&Line {
        seq,
        prev: &w.prev,
        kind: KIND_RECOVERED,
        body: &body,
    })
    .map_err(io::Error::other)?;
    commit(w, seq, line)
}

/// What [`verify`] found in an intact log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifySummary {
    /// Lines in the file.
    pub lines: u64,
    /// Records (lines in the chain).
    pub records: u64,
    /// Damaged lines that a `recovered_torn_line` event accounts for.
    pub recovered_lines: u64,
    /// `seq` of the last record (0 for an empty log).
    pub last_seq: u64,
    /// SHA-256 of the last record's line ([`ZERO_HASH`] for an empty log).
    pub head: String,
}

/// How a chain is broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Broken {
    /// Not a record (bad JSON, or no `seq`/`prev`), and no recovery event accounts for it.
    #[error("not a valid audit record ({0}), and no recovery line after it accounts for it")]
    NotARecord(String),
    /// The file ends without a newline.
    #[error(
        "the last line is incomplete (no newline): the writer stopped mid-line; the next \
         `mugai serve` start records the recovery"
    )]
    Incomplete,
    /// Longer than any line Mugai writes.
    #[error("longer than {MAX_LINE} bytes")]
    TooLong,
    /// `seq` jumps forward and the missing ones appear nowhere later.
    #[error("seq {found} where {expected} was expected: {} line(s) before it were deleted", found.saturating_sub(*expected))]
    Deleted {
        /// The seq that should have come.
        expected: u64,
        /// The seq found.
        found: u64,
    },
    /// `seq` is out of order.
    #[error("seq {found} where {expected} was expected: lines were reordered or duplicated{}",
        .expected_at.map(|l| format!(" (seq {expected} is on line {l})")).unwrap_or_default())]
    Reordered {
        /// The seq that should have come.
        expected: u64,
        /// The seq found.
        found: u64,
        /// The line where the expected seq is, if it is later in the file.
        expected_at: Option<u64>,
    },
    /// `prev` is not the hash of the line before.
    #[error(
        "its prev is not the SHA-256 of line {previous}: line {previous} was changed, or lines \
         were inserted or removed between them"
    )]
    PrevMismatch {
        /// The line before, whose hash does not match.
        previous: u64,
    },
    /// The first record does not start the chain.
    #[error("the first record's prev is not 64 zeros: lines before it were removed")]
    FirstPrevNotZero,
    /// A recovery event does not match the damaged lines before it.
    #[error("a recovery line lists {claimed} damaged line(s) that are not the {found} before it")]
    RecoveryMismatch {
        /// Lines the event lists.
        claimed: usize,
        /// Damaged lines actually before it.
        found: usize,
    },
}

/// Why [`verify`] failed.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The chain is broken at `line` (1-based).
    #[error("line {line}: {reason}")]
    Broken {
        /// The first line found bad.
        line: u64,
        /// Why.
        reason: Broken,
    },
}

/// Checks the whole chain of the log at `path` (format in the module docs); names the first
/// bad line and why.
pub fn verify(path: &Path) -> Result<VerifySummary, VerifyError> {
    let io_err = |source| VerifyError::Io {
        path: path.to_owned(),
        source,
    };
    let broken = |line, reason| Err(VerifyError::Broken { line, reason });
    let mut reader = io::BufReader::new(File::open(path).map_err(io_err)?);
    let mut s = VerifySummary {
        lines: 0,
        records: 0,
        recovered_lines: 0,
        last_seq: 0,
        head: ZERO_HASH.to_owned(),
    };
    // The line of the last record (a recovery line's prev skips the damaged lines).
    let mut last_record_line = 0;
    // Damaged lines waiting for a recovery event: (line number, SHA-256, why).
    let mut pending: Vec<(u64, String, String)> = Vec::new();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader
            .by_ref()
            .take(MAX_LINE + 1)
            .read_until(b'\n', &mut buf)
            .map_err(io_err)?;
        if n == 0 {
            break;
        }
        s.lines += 1;
        let Some(line) = buf.strip_suffix(b"\n") else {
            return broken(
                s.lines,
                if n as u64 > MAX_LINE {
                    Broken::TooLong
                } else {
                    Broken::Incomplete
                },
            );
        };
        let p = match parse_record(line) {
            Ok(p) => p,
            Err(why) => {
                pending.push((s.lines, sha256_hex(line), why));
                continue;
            }
        };
        if p.kind.as_deref() == Some(KIND_RECOVERED) {
            let claimed = p.torn.unwrap_or_default();
            let matches = claimed.len() == pending.len()
                && claimed
                    .iter()
                    .zip(&pending)
                    .all(|(t, (_, hash, _))| t.sha256 == *hash);
            if !matches {
                if let Some((at, _, why)) = pending.first() {
                    return broken(*at, Broken::NotARecord(why.clone()));
                }
                return broken(
                    s.lines,
                    Broken::RecoveryMismatch {
                        claimed: claimed.len(),
                        found: pending.len(),
                    },
                );
            }
            s.recovered_lines += pending.len() as u64;
            pending.clear();
        } else if let Some((at, _, why)) = pending.first() {
            return broken(*at, Broken::NotARecord(why.clone()));
        }
        let expected = s.last_seq + 1;
        if p.seq > expected {
            let at = find_seq(&mut reader, expected, s.lines).map_err(io_err)?;
            return broken(
                s.lines,
                match at {
                    Some(l) => Broken::Reordered {
                        expected,
                        found: p.seq,
                        expected_at: Some(l),
                    },
                    None => Broken::Deleted {
                        expected,
                        found: p.seq,
                    },
                },
            );
        }
        if p.seq < expected {
            return broken(
                s.lines,
                Broken::Reordered {
                    expected,
                    found: p.seq,
                    expected_at: None,
                },
            );
        }
        if p.prev != s.head {
            return broken(
                s.lines,
                if s.records == 0 {
                    Broken::FirstPrevNotZero
                } else {
                    Broken::PrevMismatch {
                        previous: last_record_line,
                    }
                },
            );
        }
        last_record_line = s.lines;
        s.records += 1;
        s.last_seq = p.seq;
        s.head = sha256_hex(line);
    }
    if let Some((at, _, why)) = pending.first() {
        return broken(*at, Broken::NotARecord(why.clone()));
    }
    Ok(s)
}

/// Reads on to find the line with `seq` (after line `line`); its number if found.
fn find_seq(reader: &mut impl BufRead, seq: u64, mut line: u64) -> io::Result<Option<u64>> {
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if reader
            .by_ref()
            .take(MAX_LINE + 1)
            .read_until(b'\n', &mut buf)?
            == 0
        {
            return Ok(None);
        }
        line += 1;
        let text = buf.strip_suffix(b"\n").unwrap_or(&buf);
        if parse_record(text).is_ok_and(|p| p.seq == seq) {
            return Ok(Some(line));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::testfs::{Tmpfs, is_root};
    use sanitizer_core::{Policy, sanitize_file};

    fn settings(file: &Path) -> AuditSettings {
        AuditSettings {
            file: file.to_owned(),
            address_hmac_key_file: PathBuf::new(),
        }
    }

    fn record(n: u64) -> AuditRecord {
        let report =
            sanitize_file(b"MZ\x90\0 not a program", Some("a.exe"), &Policy::default()).report;
        let mut r = AuditRecord::from_report(&report);
        r.queue_id = format!("Q{n:04}");
        r.client_ip = Some("192.0.2.7".into());
        r.mail_from = Some("Taro@Example.JP".into());
        r.rcpt_to = vec![
            "soumu@city.example.lg.jp".into(),
            "Soumu@City.Example.LG.JP".into(),
        ];
        r.message_id = Some(format!("<{n}@example.jp>"));
        r.downstream_reply = Some("250 2.0.0 Ok: queued".into());
        r.durations_ms = Durations {
            sanitize: 3,
            deliver: 4,
            total: 9,
        };
        r
    }

    /// A log with `n` message lines, closed.
    fn log_with(path: &Path, n: u64) {
        let log = AuditLog::open(&settings(path)).unwrap().unwrap();
        for i in 1..=n {
            log.append(&record(i)).unwrap();
        }
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn write_lines(path: &Path, lines: &[String]) {
        let mut text = lines.join("\n");
        text.push('\n');
        std::fs::write(path, text).unwrap();
    }

    fn broken_at(path: &Path) -> (u64, Broken) {
        match verify(path) {
            Err(VerifyError::Broken { line, reason }) => (line, reason),
            other => panic!("expected a broken chain, got {other:?}"),
        }
    }

    #[test]
    fn no_file_configured_means_no_log() {
        assert!(AuditLog::open(&settings(Path::new(""))).unwrap().is_none());
    }

    #[test]
    fn lines_chain_across_reopens_and_verify() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("logs/audit.jsonl");
        log_with(&path, 3);
        log_with(&path, 2);
        let text = lines(&path);
        assert_eq!(text.len(), 5);
        let first: serde_json::Value = serde_json::from_str(&text[0]).unwrap();
        assert_eq!(first["seq"], 1);
        assert_eq!(first["prev"], ZERO_HASH);
        assert_eq!(first["kind"], "message");
        assert_eq!(first["queue_id"], "Q0001");
        assert_eq!(
            first["mail_from"], "Taro@Example.JP",
            "in clear without a key"
        );
        assert_eq!(first["verdict"], "blocked");
        assert_eq!(first["items"][0]["kind"], "executable");
        assert_eq!(first["durations_ms"]["total"], 9);
        for k in [
            "time",
            "client_ip",
            "rcpt_to",
            "message_id",
            "size_in",
            "size_out",
            "original_sha256",
            "quarantine_id",
            "report_id",
            "downstream_reply",
        ] {
            assert!(first.get(k).is_some(), "{k} missing: {first}");
        }
        for (i, pair) in text.windows(2).enumerate() {
            let next: serde_json::Value = serde_json::from_str(&pair[1]).unwrap();
            assert_eq!(next["seq"], i as u64 + 2);
            assert_eq!(next["prev"], sha256_hex(pair[0].as_bytes()));
        }
        let s = verify(&path).unwrap();
        assert_eq!((s.lines, s.records, s.last_seq), (5, 5, 5));
        assert_eq!(s.head, sha256_hex(text[4].as_bytes()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{mode:o}");
        }
    }

    #[test]
    fn an_empty_log_verifies() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("a.jsonl");
        std::fs::write(&path, "").unwrap();
        let s = verify(&path).unwrap();
        assert_eq!((s.lines, s.last_seq), (0, 0));
        assert_eq!(s.head, ZERO_HASH);
    }

    #[test]
    fn an_edited_line_is_found() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("a.jsonl");
        log_with(&path, 5);
        let mut text = lines(&path);
        text[2] = text[2].replace("\"blocked\"", "\"clean\"");
        write_lines(&path, &text);
        assert_eq!(broken_at(&path), (4, Broken::PrevMismatch { previous: 3 }));
        let msg = verify(&path).unwrap_err().to_string();
        assert!(
            msg.starts_with("line 4: ") && msg.contains("line 3 was changed"),
            "{msg}"
        );
    }

    #[test]
    fn a_deleted_line_is_found() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("a.jsonl");
        log_with(&path, 5);
        let mut text = lines(&path);
        text.remove(1);
        write_lines(&path, &text);
        assert_eq!(
            broken_at(&path),
            (
                2,
                Broken::Deleted {
                    expected: 2,
                    found: 3
                }
            )
        );
        // The first line removed: the chain no longer starts at the beginning.
        let mut text = lines(&path);
        text.remove(0);
        write_lines(&path, &text);
        assert!(matches!(
            broken_at(&path),
            (1, Broken::Deleted { expected: 1, .. })
        ));
    }

    #[test]
    fn reordered_lines_are_found() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("a.jsonl");
        log_with(&path, 5);
        let mut text = lines(&path);
        text.swap(2, 3);
        write_lines(&path, &text);
        assert_eq!(
            broken_at(&path),
            (
                3,
                Broken::Reordered {
                    expected: 3,
                    found: 4,
                    expected_at: Some(4)
                }
            )
        );
        // A line repeated.
        let mut text = lines(&path);
        text.swap(2, 3);
        let dup = text[1].clone();
        text.insert(2, dup);
        write_lines(&path, &text);
        assert!(matches!(
            broken_at(&path),
            (
                3,
                Broken::Reordered {
                    expected: 3,
                    found: 2,
                    ..
                }
            )
        ));
    }

    #[test]
    fn bytes_cut_from_the_middle_are_found() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("a.jsonl");
        log_with(&path, 6);
        let bytes = std::fs::read(&path).unwrap();
        let text = lines(&path);
        let line_start = |i: usize| text[..i].iter().map(|l| l.len() + 1).sum::<usize>();
        let cut = |from: usize, to: usize| {
            let mut c = bytes[..from].to_vec();
            c.extend_from_slice(&bytes[to..]);
            std::fs::write(&path, c).unwrap();
        };
        // From the middle of line 3 to the middle of line 5, leaving broken JSON.
        cut(line_start(2) + 100, line_start(4) + 10);
        let (line, reason) = broken_at(&path);
        assert_eq!(line, 3);
        assert!(matches!(reason, Broken::NotARecord(_)), "{reason}");
        // The same, cut inside both prev hashes: still JSON, but not line 2's successor.
        cut(line_start(2) + 40, line_start(4) + 40);
        assert_eq!(broken_at(&path), (3, Broken::PrevMismatch { previous: 2 }));
    }

    #[test]
    fn a_torn_last_line_is_kept_recorded_and_the_chain_goes_on() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("a.jsonl");
        log_with(&path, 3);
        // A crash in the middle of writing line 3.
        let bytes = std::fs::read(&path).unwrap();
        let text = lines(&path);
        let torn_len = text[0].len() + 1 + text[1].len() + 1 + 50;
        std::fs::write(&path, &bytes[..torn_len]).unwrap();
        assert_eq!(broken_at(&path), (3, Broken::Incomplete));

        let log = AuditLog::open(&settings(&path)).unwrap().unwrap();
        let after = lines(&path);
        assert_eq!(
            after.len(),
            4,
            "the torn line is kept, a recovery line added"
        );
        assert_eq!(after[2], text[2][..50]);
        let rec: serde_json::Value = serde_json::from_str(&after[3]).unwrap();
        assert_eq!(rec["kind"], KIND_RECOVERED);
        assert_eq!(rec["seq"], 3);
        assert_eq!(rec["prev"], sha256_hex(text[1].as_bytes()));
        assert_eq!(rec["torn"][0]["bytes"], 50);
        assert_eq!(
            rec["torn"][0]["sha256"],
            sha256_hex(&text[2].as_bytes()[..50])
        );
        assert_eq!(rec["torn"][0]["text"], &text[2][..50]);
        log.append(&record(4)).unwrap();
        assert_eq!(log.head().0, 4);
        drop(log);
        let s = verify(&path).unwrap();
        assert_eq!(
            (s.lines, s.records, s.recovered_lines, s.last_seq),
            (5, 4, 1, 4)
        );

        // Removing the damaged line afterwards is itself visible.
        let mut text = lines(&path);
        text.remove(2);
        write_lines(&path, &text);
        assert!(matches!(
            broken_at(&path),
            (
                3,
                Broken::RecoveryMismatch {
                    claimed: 1,
                    found: 0
                }
            )
        ));
    }

    #[test]
    fn a_crash_during_recovery_is_recovered_too() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("a.jsonl");
        log_with(&path, 2);
        let good = std::fs::read(&path).unwrap();
        let mut bytes = good.clone();
        bytes.extend_from_slice(b"{\"seq\":3,\"prev\":\"ab");
        // The recovery's own line torn too: its newline written, the event cut short.
        bytes.extend_from_slice(b"\n{\"seq\":3,\"prev\":\"");
        std::fs::write(&path, &bytes).unwrap();
        let log = AuditLog::open(&settings(&path)).unwrap().unwrap();
        log.append(&record(3)).unwrap();
        drop(log);
        let s = verify(&path).unwrap();
        assert_eq!((s.records, s.recovered_lines, s.last_seq), (4, 2, 4));
        assert!(std::fs::read(&path).unwrap().starts_with(&good));
    }

    #[test]
    fn a_last_line_missing_only_its_newline_is_completed() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("a.jsonl");
        log_with(&path, 2);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.pop();
        std::fs::write(&path, &bytes).unwrap();
        let log = AuditLog::open(&settings(&path)).unwrap().unwrap();
        assert_eq!(log.head().0, 2);
        log.append(&record(3)).unwrap();
        drop(log);
        let s = verify(&path).unwrap();
        assert_eq!((s.lines, s.recovered_lines, s.last_seq), (3, 0, 3));
    }

    #[test]
    fn addresses_are_keyed_hashes_when_a_key_is_set() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("a.jsonl");
        let key = d.path().join("addr.key");
        let s = AuditSettings {
            file: path.clone(),
            address_hmac_key_file: key.clone(),
        };
        let log = AuditLog::open(&s).unwrap().unwrap();
        assert!(key.is_file(), "key created");
        log.append(&record(1)).unwrap();
        let mut null_sender = record(2);
        null_sender.mail_from = Some(String::new());
        log.append(&null_sender).unwrap();
        drop(log);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains("Taro") && !text.to_lowercase().contains("soumu"),
            "{text}"
        );
        let v: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let from = v[0]["mail_from"].as_str().unwrap();
        assert!(
            from.starts_with("hmac-sha256:") && from.len() == 12 + 64,
            "{from}"
        );
        // The same mailbox in another case: the same value.
        assert_eq!(v[0]["rcpt_to"][0], v[0]["rcpt_to"][1]);
        assert_ne!(v[0]["rcpt_to"][0], v[0]["mail_from"]);
        // The HMAC under the key, not a plain hash anyone could compute.
        let k = load_key_for_test(&key);
        assert_eq!(
            from,
            format!("hmac-sha256:{}", hex::encode(k.hmac(b"taro@example.jp")))
        );
        assert_ne!(
            from,
            format!("hmac-sha256:{}", sha256_hex(b"taro@example.jp"))
        );
        assert_eq!(v[1]["mail_from"], "");
        assert!(verify(&path).is_ok());
    }

    fn load_key_for_test(path: &Path) -> Key {
        crate::sinks::quarantine::load_key(path).unwrap()
    }

    #[test]
    fn one_writer_per_file() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("a.jsonl");
        let first = AuditLog::open(&settings(&path)).unwrap().unwrap();
        let err = AuditLog::open(&settings(&path)).unwrap_err();
        assert!(format!("{err:#}").contains("another process"), "{err:#}");
        drop(first);
        assert!(AuditLog::open(&settings(&path)).unwrap().is_some());
    }

    #[test]
    fn events_share_the_chain_and_cannot_forge_its_fields() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("a.jsonl");
        let log = AuditLog::open(&settings(&path)).unwrap().unwrap();
        log.append(&record(1)).unwrap();
        let mut f = serde_json::Map::new();
        f.insert("report_id".into(), "r-1".into());
        f.insert("by".into(), "admin".into());
        log.event("release_requested", f.clone()).unwrap();
        for bad in ["message", KIND_RECOVERED, "Release", "", "a-b"] {
            let e = log.event(bad, f.clone()).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad}");
        }
        for reserved in ["seq", "prev", "kind"] {
            let mut g = f.clone();
            g.insert(reserved.into(), 1.into());
            assert!(log.event("release_requested", g).is_err(), "{reserved}");
        }
        // Concurrent appends from several threads keep one chain.
        std::thread::scope(|s| {
            for t in 0..4 {
                let log = &log;
                s.spawn(move || {
                    for i in 0..25 {
                        log.append(&record(t * 100 + i)).unwrap();
                    }
                });
            }
        });
        drop(log);
        let text = lines(&path);
        let ev: serde_json::Value = serde_json::from_str(&text[1]).unwrap();
        assert_eq!(ev["kind"], "release_requested");
        assert_eq!(ev["by"], "admin");
        assert!(ev["time"].is_string());
        let s = verify(&path).unwrap();
        assert_eq!(s.records, 102);
    }

    #[test]
    fn a_write_on_a_full_disk_fails_cleanly_and_the_chain_stays_whole() {
        let Some(fs) = Tmpfs::mount("256k") else {
            assert!(!is_root(), "running as root, a tmpfs must mount");
            eprintln!("NOTICE: cannot mount a tmpfs without root; the undo path is untested here");
            return;
        };
        let path = fs.path().join("audit.jsonl");
        let log = AuditLog::open(&settings(&path)).unwrap().unwrap();
        log.append(&record(1)).unwrap();
        let filler = fs.fill();
        // A line larger than what is left (nothing) fails with the kernel's ENOSPC.
        let mut big = record(2);
        big.rcpt_to = (0..2000)
            .map(|i| format!("user{i}@city.example.lg.jp"))
            .collect();
        let err = log.append(&big).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::StorageFull, "{err}");
        assert!(crate::sinks::atomic::is_transient(&err));
        let s = verify(&path).unwrap();
        assert_eq!((s.lines, s.last_seq), (1, 1), "nothing torn left behind");
        std::fs::remove_file(filler).unwrap();
        log.append(&big).unwrap();
        drop(log);
        assert_eq!(verify(&path).unwrap().last_seq, 2);
    }
}
