//! Getting an original back: release requests, the two-person approval, delivery of the
//! released original, and purges. The command line (`mugai quarantine request|release|refuse|
//! purge|requests`) and the HTTP API call the same [`Release`] methods with the [`Actor`]
//! they authenticated.
//!
//! ## Rules
//! - **Who may ask.** A requester may ask only for items addressed to one of
//!   `actor.addresses` (an envelope recipient, ASCII case-insensitive); for any other item the
//!   answer is [`ReleaseError::NotFound`], so a requester cannot probe which report ids exist.
//!   Approvers and admins may ask for any item. A reason is required. At most one request per
//!   item is pending at a time.
//! - **On behalf of.** An approver or admin may enter a request for a staff member who phoned
//!   in ([`Release::request_on_behalf`], `mugai quarantine request --as USER`); the row keeps
//!   both names (`requester`, `entered_by`).
//! - **Two persons.** Approving or refusing needs [`Role::may_decide`] and a decider who is
//!   neither the requester nor whoever entered the request — admins included. So one person
//!   can never get an original out alone: at the command line every operator is
//!   `cli:<unix user>`, and a second operator (another Unix account) approves. There is no
//!   release without a request.
//! - **What is released.** Mail: the **original** message as received (decrypted from the
//!   store), with one header added on top, `X-Mugai-Released: by <approver>; request <id>`,
//!   sent through the configured downstream to the original envelope recipients with the
//!   original envelope sender. (Not the sanitized message with the original attached: the
//!   recipient asked for the original, and a rebuilt wrapper would only hide that it is one.)
//!   Files (source `dropdir`, `http`, `cli`: items without envelope recipients): the original
//!   is written to `[http] released_dir` under its (normalised) file name, never overwriting
//!   (`a (2).pdf`).
//! - **Refusal** only closes the request (state `refused`); the item's status is left as it
//!   was, because [`HoldStatus::Refused`] already means "the downstream refused the safe
//!   version", and a refused request may be followed by a new, better-argued one.
//! - **Delivery failure and retry.** Approval is recorded first (`approved`, audit line), then
//!   the original is delivered. If the downstream answers 4xx or cannot be reached (or the
//!   released directory cannot be written), the request stays `approved` with no
//!   `delivered_at` and the reply recorded; calling [`Release::approve`] again for it (`mugai
//!   quarantine release ID` again) retries the delivery only, with the same two-person check
//!   and a new `release_approved` line marked `"retry": true`. A 5xx is recorded the same
//!   way but is permanent ([`ReleaseError::DownstreamRefused`]).
//! - **Purge** (admins only, reason required) deletes an original now and marks every row that
//!   shares it `purged`; pending requests for those rows are refused with the purge's reason.
//!
//! ## PPAP: unlocking with the password ([`Release::unlock_with_password`])
//! An item held for `archive.encrypted` (a password-protected ZIP, alone or attached to a
//! mail) can be opened by whoever may see it, with the password the sender sent separately:
//! the held original is sanitized again **inside a sandboxed worker** with the password lent
//! to the ZIP sanitizer (it travels only in the job sent to the worker, is never logged or
//! stored, and is wiped from memory when dropped), so the archive's members are rebuilt as for
//! any ZIP. A file's sanitized archive is written to `released_dir`; a mail's sanitized
//! message, now carrying the rebuilt archive (and the usual notice for anything removed), is
//! delivered to the original recipients from the original sender with an
//! `X-Mugai-Unlocked: by <user>; report <id>` header on top. No approver is needed because
//! nothing unsanitized crosses. Wrong passwords are counted per item; after
//! [`MAX_UNLOCK_ATTEMPTS`] the item refuses further tries (429) and only a release helps.
//! Only ZipCrypto is supported (AES stays blocked: 422). One password per item: every
//! encrypted ZIP in it is tried with it.
//!
//! ## Audit events (`AuditLog::event`)
//! `release_requested`, `release_approved`, `release_refused`, `release_delivered`,
//! `release_failed`, `quarantine_purged`, `ppap_unlocked`, `ppap_unlock_failed` (never with the
//! password), each with `actor`, `role`, `report_id`, the request
//! id and reason where there is one, and (for deliveries) the downstream's reply or the file
//! written. Addresses go through `AuditLog::address` (HMAC'd when configured). Every event
//! is written before the method returns; an approval's line is written before anything is
//! delivered, and if it cannot be written nothing is delivered.
//!
//! ## Errors and HTTP
//! [`ReleaseError::http_status`] gives the status the API answers with:
//!
//! | error | HTTP |
//! |---|---|
//! | `Invalid` (missing reason, bad id) | 400 |
//! | `Forbidden` (role, own request) | 403 |
//! | `NotFound` (no such item or request, or not the requester's) | 404 |
//! | `Conflict` (already pending, already decided, already released) | 409 |
//! | `Gone` (original purged) | 410 |
//! | `WrongPassword { remaining }`, `Unprocessable` (PPAP cannot be unlocked) | 422 |
//! | `TooManyAttempts` (5 wrong passwords for the item) | 429 |
//! | `DownstreamRefused` (5xx from the LGWAN MTA) | 502 |
//! | `Transient` (downstream 4xx or down, disk full, database busy) | 503 |
//! | `Internal` (damaged store, audit log unwritable) | 500 |
//!
//! All methods block on SQLite and the file system; delivery is `async` (the downstream is).
//! The HTTP API calls them from its tasks (they are short: one small transaction each).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::actor::{Actor, Role};
use crate::sinks::audit::AuditLog;
use crate::sinks::downstream::{Downstream, MailParams};
use crate::sinks::index::{
    AddRequest, HeldItem, HoldStatus, ReleaseRequest, RequestFilter, RequestState,
};
use crate::sinks::quarantine::{QuarantineError, QuarantineId, QuarantineStore};
use crate::sinks::vault::Vault;

/// Wrong passwords accepted per item before unlocking is refused.
pub const MAX_UNLOCK_ATTEMPTS: u32 = 5;

/// What unlocking a PPAP file produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Unlocked {
    /// The report of the sanitized archive (a new report id; the input is the encrypted file).
    pub report: sanitizer_core::Report,
    /// The file written in `released_dir` (files), or the downstream's reply (mail).
    pub written_to: String,
}

/// The header added to a released original.
pub const RELEASED_HEADER: &str = "X-Mugai-Released";

/// Why a release operation failed (see the module docs for the HTTP mapping).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReleaseError {
    /// The input is not acceptable (a missing reason, a malformed id).
    #[error("{0}")]
    Invalid(String),
    /// The actor may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// No such item or request (or not one the actor may see).
    #[error("{0}")]
    NotFound(String),
    /// The item or request is not in a state that allows this.
    #[error("{0}")]
    Conflict(String),
    /// The original was purged.
    #[error("{0}")]
    Gone(String),
    /// The downstream refused the released message for good (5xx).
    #[error("{0}")]
    DownstreamRefused(String),
    /// Retrying later may succeed (downstream 4xx or down, disk full, database busy).
    #[error("{0}")]
    Transient(String),
    /// The password does not open the archive; `remaining` tries are left for this item.
    #[error("wrong password ({remaining} tries left)")]
    WrongPassword {
        /// Tries left before the item is locked against further attempts.
        remaining: u32,
    },
    /// Too many wrong passwords for this item: only an administrator's release helps now.
    #[error("{0}")]
    TooManyAttempts(String),
    /// The content cannot be processed as asked (the archive cannot be unlocked: AES, damaged,
    /// or blocked once opened).
    #[error("{0}")]
    Unprocessable(String),
    /// Anything else (damaged store, audit log unwritable).
    #[error("{0}")]
    Internal(String),
}

impl ReleaseError {
    /// The HTTP status for this error.
    pub fn http_status(&self) -> u16 {
        match self {
            ReleaseError::Invalid(_) => 400,
            ReleaseError::Forbidden(_) => 403,
            ReleaseError::NotFound(_) => 404,
            ReleaseError::Conflict(_) => 409,
            ReleaseError::Gone(_) => 410,
            ReleaseError::WrongPassword { .. } | ReleaseError::Unprocessable(_) => 422,
            ReleaseError::TooManyAttempts(_) => 429,
            ReleaseError::DownstreamRefused(_) => 502,
            ReleaseError::Transient(_) => 503,
            ReleaseError::Internal(_) => 500,
        }
    }
}

impl From<QuarantineError> for ReleaseError {
    fn from(e: QuarantineError) -> ReleaseError {
        match e {
            e if e.is_transient() => ReleaseError::Transient(e.to_string()),
            QuarantineError::NotFound(id) => {
                ReleaseError::Gone(format!("the original {id} is no longer in the quarantine"))
            }
            QuarantineError::NoSuchReport(r) => ReleaseError::NotFound(format!("no item {r}")),
            QuarantineError::InvalidId(r) => {
                ReleaseError::Invalid(format!("not a report id: {r:?}"))
            }
            e => ReleaseError::Internal(e.to_string()),
        }
    }
}

/// Which request a decision is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A request by its number.
    Request(i64),
    /// The newest request for this report id.
    Report(String),
}

impl Target {
    /// A request number (digits only, short) or else a report id.
    pub fn parse(s: &str) -> Target {
        match s.parse::<i64>() {
            Ok(n) if s.len() < 16 && s.bytes().all(|b| b.is_ascii_digit()) => Target::Request(n),
            _ => Target::Report(s.to_owned()),
        }
    }
}

/// What an approval did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    /// The request, as it now stands (`approved`, `delivered_at` set).
    pub request: ReleaseRequest,
    /// Where the original went: the downstream's reply, or the file written.
    pub delivered_to: String,
}

/// The release service: the vault, the audit log, the downstream and the released directory.
#[derive(Debug, Clone)]
pub struct Release {
    vault: Arc<Vault>,
    audit: Option<Arc<AuditLog>>,
    downstream: Option<Downstream>,
    released_dir: PathBuf,
    /// Requests whose original is being delivered right now (shared by clones).
    delivering: ClaimSet<i64>,
    /// Held items being unlocked with a PPAP password right now (shared by clones).
    unlocking: ClaimSet<String>,
}

/// Keys claimed by a delivery under way (see [`Delivering`]).
type ClaimSet<K> = Arc<std::sync::Mutex<std::collections::HashSet<K>>>;

/// A request (or held item) claimed for delivery: while it lives, no other approval, retry or
/// unlock of the same key can start a second delivery. Released on drop, whatever happened.
struct Delivering<K: std::hash::Hash + Eq + Clone> {
    set: ClaimSet<K>,
    key: K,
}

impl<K: std::hash::Hash + Eq + Clone> Delivering<K> {
    /// Claims `key`; `None` when a delivery of it is already under way.
    fn claim(set: &ClaimSet<K>, key: K) -> Option<Delivering<K>> {
        let mut guard = set
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        guard.insert(key.clone()).then(|| Delivering {
            set: Arc::clone(set),
            key,
        })
    }
}

impl<K: std::hash::Hash + Eq + Clone> Drop for Delivering<K> {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.key);
    }
}

fn reason_of(reason: &str) -> Result<&str, ReleaseError> {
    let r = reason.trim();
    if r.is_empty() {
        return Err(ReleaseError::Invalid("a reason is required".into()));
    }
    if r.chars().count() > 2000 {
        return Err(ReleaseError::Invalid(
            "the reason is longer than 2000 characters".into(),
        ));
    }
    Ok(r)
}

/// Whether `item` is addressed to one of `addresses` (ASCII case-insensitive).
fn addressed_to(item: &HeldItem, addresses: &[String]) -> bool {
    item.rcpt_to
        .iter()
        .any(|r| addresses.iter().any(|a| a.eq_ignore_ascii_case(r)))
}

/// A mail item (delivered to its recipients) rather than a file (written to `released_dir`).
/// Only what the relay received is a mail with an envelope to deliver to: an item posted to
/// the HTTP API carries its poster's addresses (so they can see it) and a dropped file may be
/// an `.eml`, but neither came with an envelope, so both are released as files.
fn is_mail(item: &HeldItem) -> bool {
    item.source == "smtp" && !item.rcpt_to.is_empty()
}

/// Text safe inside a header value: printable ASCII only (others become `?`), bounded.
fn header_safe(s: &str) -> String {
    s.chars()
        .take(200)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// The original with the release header on top, in the message's own line ending.
pub fn with_released_header(original: &[u8], approver: &str, request: i64) -> Vec<u8> {
    with_header(
        original,
        &format!(
            "{RELEASED_HEADER}: by {}; request {request}",
            header_safe(approver)
        ),
    )
}

/// `message` with the header line `line` (already safe) on top, in its own line ending.
fn with_header(message: &[u8], line: &str) -> Vec<u8> {
    let eol: &[u8] = if message.windows(2).any(|w| w == b"\r\n") {
        b"\r\n"
    } else {
        b"\n"
    };
    let mut out = line.as_bytes().to_vec();
    out.extend_from_slice(eol);
    out.extend_from_slice(message);
    out
}

impl Release {
    /// The service over `vault`, writing events to `audit`, delivering mail through
    /// `downstream` (None: mail releases fail with `Internal`), and files into `released_dir`.
    pub fn new(
        vault: Arc<Vault>,
        audit: Option<Arc<AuditLog>>,
        downstream: Option<Downstream>,
        released_dir: PathBuf,
    ) -> Release {
        Release {
            vault,
            audit,
            downstream,
            released_dir,
            delivering: Arc::default(),
            unlocking: Arc::default(),
        }
    }

    /// The service as `mugai serve` wires it: the daemon's vault and audit log, a downstream
    /// from `[downstream]`, and `[http] released_dir`.
    pub fn from_shared(shared: &crate::serve::Shared) -> anyhow::Result<Release> {
        let downstream = Downstream::new(&shared.config.downstream, &shared.hostname)?;
        Ok(Release::new(
            shared.vault.clone(),
            shared.audit.clone(),
            Some(downstream),
            shared.config.http.released_dir.clone(),
        ))
    }

    /// The vault.
    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    fn event(&self, kind: &str, actor: &Actor, fields: Value) -> Result<(), ReleaseError> {
        let mut map = Map::new();
        map.insert("actor".into(), Value::from(actor.name.clone()));
        map.insert("role".into(), Value::from(actor.role.as_str()));
        if let Value::Object(f) = fields {
            map.extend(f);
        }
        match &self.audit {
            Some(a) => a.event(kind, map).map_err(|e| {
                tracing::error!(kind, error = %e, "The audit log could not be written.");
                ReleaseError::Internal(format!("the audit log could not be written: {e}"))
            }),
            None => {
                tracing::warn!(kind, actor = %actor.name, "Release event without an audit log configured.");
                Ok(())
            }
        }
    }

    /// The held item, as `actor` may see it (requesters only their own: else NotFound).
    pub fn item_for(&self, actor: &Actor, report_id: &str) -> Result<HeldItem, ReleaseError> {
        let not_found = || ReleaseError::NotFound(format!("no held item {report_id}"));
        if !sanitizer_core::report::is_valid_report_id(report_id) {
            return Err(ReleaseError::Invalid(format!(
                "not a report id: {report_id:?}"
            )));
        }
        let item = self.vault.index().get(report_id)?.ok_or_else(not_found)?;
        if actor.role == Role::Requester && !addressed_to(&item, &actor.addresses) {
            return Err(not_found());
        }
        Ok(item)
    }

    /// Asks for the release of `report_id`'s original (module docs: who may ask).
    pub fn request(
        &self,
        actor: &Actor,
        report_id: &str,
        reason: &str,
    ) -> Result<ReleaseRequest, ReleaseError> {
        self.add(actor, &actor.name, report_id, reason)
    }

    /// An approver or admin enters a request for `requester` (a staff member who phoned in).
    /// Neither of them may then approve it.
    pub fn request_on_behalf(
        &self,
        actor: &Actor,
        requester: &str,
        report_id: &str,
        reason: &str,
    ) -> Result<ReleaseRequest, ReleaseError> {
        if !actor.role.may_decide() {
            return Err(ReleaseError::Forbidden(
                "only approvers and admins may enter a request for someone else".into(),
            ));
        }
        let requester = requester.trim();
        if requester.is_empty() || requester.chars().any(char::is_control) {
            return Err(ReleaseError::Invalid(
                "the requester's name is empty".into(),
            ));
        }
        self.add(actor, requester, report_id, reason)
    }

    fn add(
        &self,
        actor: &Actor,
        requester: &str,
        report_id: &str,
        reason: &str,
    ) -> Result<ReleaseRequest, ReleaseError> {
        let reason = reason_of(reason)?;
        let item = self.item_for(actor, report_id)?;
        match item.status {
            HoldStatus::Purged => {
                return Err(ReleaseError::Gone(format!(
                    "the original of {report_id} was purged"
                )));
            }
            HoldStatus::Released => {
                return Err(ReleaseError::Conflict(format!(
                    "{report_id} was already released"
                )));
            }
            _ => {}
        }
        if let Some(last) = self.vault.requests().latest_request(report_id)?
            && last.state == RequestState::Approved
        {
            return Err(ReleaseError::Conflict(format!(
                "request {} for {report_id} is already approved{}",
                last.id,
                if last.delivered_at.is_none() {
                    " and waits for its delivery to be retried"
                } else {
                    ""
                }
            )));
        }
        let req =
            match self
                .vault
                .requests()
                .add_request(report_id, requester, &actor.name, reason)?
            {
                AddRequest::Added(r) => r,
                AddRequest::AlreadyPending(p) => {
                    return Err(ReleaseError::Conflict(format!(
                        "request {} for {report_id} is already pending",
                        p.id
                    )));
                }
            };
        self.event(
            "release_requested",
            actor,
            json!({
                "request_id": req.id,
                "report_id": report_id,
                "quarantine_id": item.quarantine_id,
                "requester": req.requester,
                "reason": reason,
            }),
        )?;
        tracing::info!(request = req.id, report = %report_id, "Release requested.");
        Ok(req)
    }

    /// The request a decision is about, checked against the two-person rule.
    fn decidable(&self, actor: &Actor, target: &Target) -> Result<ReleaseRequest, ReleaseError> {
        if !actor.role.may_decide() {
            return Err(ReleaseError::Forbidden(
                "only approvers and admins may approve or refuse releases".into(),
            ));
        }
        let req = match target {
            Target::Request(id) => self.vault.requests().get_request(*id)?,
            Target::Report(r) => self.vault.requests().latest_request(r)?,
        }
        .ok_or_else(|| {
            ReleaseError::NotFound(match target {
                Target::Request(id) => format!("no release request {id}"),
                Target::Report(r) => format!(
                    "no release request for {r}: a release needs a request by someone else \
                     first (mugai quarantine request)"
                ),
            })
        })?;
        if req.requester == actor.name || req.entered_by == actor.name {
            return Err(ReleaseError::Forbidden(format!(
                "request {} was made by {}{}: someone else must decide it (two-person rule)",
                req.id,
                req.requester,
                if req.entered_by != req.requester {
                    format!(" (entered by {})", req.entered_by)
                } else {
                    String::new()
                }
            )));
        }
        Ok(req)
    }

    /// Approves a pending request and delivers the original (module docs); for a request
    /// approved earlier whose delivery failed, retries the delivery.
    pub async fn approve(
        &self,
        actor: &Actor,
        target: &Target,
        reason: &str,
    ) -> Result<Released, ReleaseError> {
        let reason = reason_of(reason)?;
        let req = self.decidable(actor, target)?;
        // One delivery per request at a time: two approvers clicking together, or a retry while
        // the first delivery still waits on the downstream, must not send the original twice.
        // The daemon is the only process that releases while it runs (it holds the audit log's
        // lock), so an in-process claim is enough.
        let Some(_claim) = Delivering::claim(&self.delivering, req.id) else {
            return Err(ReleaseError::Conflict(format!(
                "request {} is being delivered right now",
                req.id
            )));
        };
        // Read the state again under the claim: a delivery that finished just before it counts.
        let req = self
            .vault
            .requests()
            .get_request(req.id)?
            .ok_or_else(|| ReleaseError::NotFound(format!("no request {}", req.id)))?;
        let retry = match req.state {
            RequestState::Pending => false,
            RequestState::Approved if req.delivered_at.is_none() => true,
            RequestState::Approved => {
                return Err(ReleaseError::Conflict(format!(
                    "request {} was already approved and delivered",
                    req.id
                )));
            }
            RequestState::Refused => {
                return Err(ReleaseError::Conflict(format!(
                    "request {} was refused by {}",
                    req.id,
                    req.decided_by.as_deref().unwrap_or("-")
                )));
            }
        };
        let item = self
            .vault
            .index()
            .get(&req.report_id)?
            .ok_or_else(|| ReleaseError::NotFound(format!("no held item {}", req.report_id)))?;
        if item.status == HoldStatus::Purged {
            return Err(ReleaseError::Gone(format!(
                "the original of {} was purged",
                req.report_id
            )));
        }
        let qid = QuarantineId::parse(&item.quarantine_id)?;
        // Read the original before deciding: a missing key or damaged entry should not leave
        // an approval that can never be delivered.
        let original = self.vault.store().get(&qid)?.original;
        if !retry
            && !self.vault.requests().decide_request(
                req.id,
                RequestState::Approved,
                &actor.name,
                reason,
            )?
        {
            return Err(ReleaseError::Conflict(format!(
                "request {} was decided by someone else meanwhile",
                req.id
            )));
        }
        self.event(
            "release_approved",
            actor,
            json!({
                "request_id": req.id,
                "report_id": req.report_id,
                "quarantine_id": item.quarantine_id,
                "requester": req.requester,
                "request_reason": req.reason,
                "reason": reason,
                "retry": retry,
            }),
        )?;
        let outcome = if is_mail(&item) {
            self.deliver_mail(&item, &original, &actor.name, req.id)
                .await
        } else {
            self.write_file(&item, &original)
        };
        match outcome {
            Ok(to) => {
                self.vault.requests().record_delivery(req.id, true, &to)?;
                self.vault
                    .set_delivery(&req.report_id, HoldStatus::Released, "")?;
                self.event(
                    "release_delivered",
                    actor,
                    json!({
                        "request_id": req.id,
                        "report_id": req.report_id,
                        "rcpt_to": item.rcpt_to.iter().map(|a| self.address(a)).collect::<Vec<_>>(),
                        "delivered_to": to,
                    }),
                )?;
                tracing::info!(request = req.id, report = %req.report_id, "Original released.");
                let request = self
                    .vault
                    .requests()
                    .get_request(req.id)?
                    .ok_or_else(|| ReleaseError::Internal("the request vanished".into()))?;
                Ok(Released {
                    request,
                    delivered_to: to,
                })
            }
            Err(e) => {
                self.vault
                    .requests()
                    .record_delivery(req.id, false, &e.to_string())?;
                self.event(
                    "release_failed",
                    actor,
                    json!({
                        "request_id": req.id,
                        "report_id": req.report_id,
                        "error": e.to_string(),
                        "transient": matches!(e, ReleaseError::Transient(_)),
                    }),
                )?;
                tracing::warn!(request = req.id, report = %req.report_id, error = %e, "A released original could not be delivered; retry with the same approval.");
                Err(e)
            }
        }
    }

    fn address(&self, a: &str) -> String {
        self.audit
            .as_ref()
            .map_or_else(|| a.to_owned(), |l| l.address(a))
    }

    /// Refuses a pending request.
    pub fn refuse(
        &self,
        actor: &Actor,
        target: &Target,
        reason: &str,
    ) -> Result<ReleaseRequest, ReleaseError> {
        let reason = reason_of(reason)?;
        let req = self.decidable(actor, target)?;
        if req.state != RequestState::Pending
            || !self.vault.requests().decide_request(
                req.id,
                RequestState::Refused,
                &actor.name,
                reason,
            )?
        {
            return Err(ReleaseError::Conflict(format!(
                "request {} is not pending",
                req.id
            )));
        }
        self.event(
            "release_refused",
            actor,
            json!({
                "request_id": req.id,
                "report_id": req.report_id,
                "requester": req.requester,
                "reason": reason,
            }),
        )?;
        self.vault
            .requests()
            .get_request(req.id)?
            .ok_or_else(|| ReleaseError::Internal("the request vanished".into()))
    }

    /// Requests matching `filter`; a requester sees only their own.
    pub fn list_requests(
        &self,
        actor: &Actor,
        filter: &RequestFilter,
    ) -> Result<Vec<ReleaseRequest>, ReleaseError> {
        let mut f = filter.clone();
        if actor.role == Role::Requester {
            f.requester = Some(actor.name.clone());
        }
        Ok(self.vault.requests().list_requests(&f)?)
    }

    /// Deletes `report_id`'s original now (admins only), marking every row sharing it purged
    /// and refusing their pending requests. Returns how many rows were marked.
    pub fn purge(
        &self,
        actor: &Actor,
        report_id: &str,
        reason: &str,
    ) -> Result<usize, ReleaseError> {
        if actor.role != Role::Admin {
            return Err(ReleaseError::Forbidden("only admins may purge".into()));
        }
        let reason = reason_of(reason)?;
        let item = self.item_for(actor, report_id)?;
        if item.status == HoldStatus::Purged {
            return Err(ReleaseError::Gone(format!(
                "the original of {report_id} was already purged"
            )));
        }
        let qid = QuarantineId::parse(&item.quarantine_id)?;
        let (removed, rows) = self.vault.purge_now(&qid)?;
        let pending = self.vault.requests().list_requests(&RequestFilter {
            state: Some(RequestState::Pending),
            limit: crate::sinks::index::Search::MAX_LIMIT,
            ..RequestFilter::default()
        })?;
        let mut refused = Vec::new();
        for p in pending {
            let shares = self
                .vault
                .index()
                .get(&p.report_id)?
                .is_some_and(|i| i.quarantine_id == item.quarantine_id);
            if shares
                && self.vault.requests().decide_request(
                    p.id,
                    RequestState::Refused,
                    &actor.name,
                    &format!("original purged: {reason}"),
                )?
            {
                refused.push(p.id);
            }
        }
        self.event(
            "quarantine_purged",
            actor,
            json!({
                "report_id": report_id,
                "quarantine_id": item.quarantine_id,
                "original_removed": removed,
                "rows": rows,
                "requests_refused": refused,
                "reason": reason,
            }),
        )?;
        Ok(rows)
    }

    /// The job that sanitizes `report_id`'s original again, for a reviewer's preview of its
    /// sanitized form (the console's page pictures): the same visibility rules as
    /// [`Release::item_for`]; a purged original is [`ReleaseError::Gone`]. The original never
    /// leaves this process except into a sandboxed worker.
    pub fn preview_job(
        &self,
        actor: &Actor,
        report_id: &str,
    ) -> Result<crate::sanitize::Job, ReleaseError> {
        use crate::sanitize::{Job, Mode};
        let item = self.item_for(actor, report_id)?;
        if item.status == HoldStatus::Purged {
            return Err(ReleaseError::Gone(format!(
                "the original of {report_id} was purged"
            )));
        }
        let qid = QuarantineId::parse(&item.quarantine_id)?;
        let original = self.vault.store().get(&qid)?.original;
        Ok(Job {
            input: original,
            name: item.file_name.clone(),
            mode: if is_mail(&item) {
                Mode::Mail
            } else {
                Mode::File
            },
            password: None,
        })
    }

    /// Opens a blocked PPAP archive with its password: the held item (a file, or a mail with
    /// the archive attached) is sanitized again in a worker (`transform`) with the password
    /// lent to the ZIP sanitizer. A file's sanitized archive is written to `released_dir`; a
    /// mail's sanitized message (the archive now rebuilt inside it) is delivered to the
    /// original recipients through the downstream, with an `X-Mugai-Unlocked` header on top
    /// (module docs).
    pub async fn unlock_with_password(
        &self,
        actor: &Actor,
        report_id: &str,
        password: crate::sanitize::Password,
        transform: Arc<dyn crate::sanitize::Transform>,
    ) -> Result<Unlocked, ReleaseError> {
        use crate::sanitize::{Job, Mode, WARN_UNLOCKED, WARN_WRONG_PASSWORD};
        let item = self.item_for(actor, report_id)?;
        if item.status == HoldStatus::Purged {
            return Err(ReleaseError::Gone(format!(
                "the original of {report_id} was purged"
            )));
        }
        if !item.threats.iter().any(|t| t == "archive.encrypted") {
            return Err(ReleaseError::Conflict(format!(
                "{report_id} was not held for an encrypted archive: there is nothing to unlock"
            )));
        }
        // Two unlocks of one item at once would deliver its contents twice (and count one
        // wrong password twice); the second waits for nothing and is told so.
        let Some(_claim) = Delivering::claim(&self.unlocking, report_id.to_owned()) else {
            return Err(ReleaseError::Conflict(format!(
                "{report_id} is being unlocked right now"
            )));
        };
        if self.vault.requests().unlock_failures(report_id)? >= MAX_UNLOCK_ATTEMPTS {
            return Err(ReleaseError::TooManyAttempts(format!(
                "{MAX_UNLOCK_ATTEMPTS} wrong passwords were given for {report_id}: ask for a \
                 release instead"
            )));
        }
        let qid = QuarantineId::parse(&item.quarantine_id)?;
        let original = self.vault.store().get(&qid)?.original;
        let mail = is_mail(&item);
        let job = Job {
            input: original,
            name: item.file_name.clone(),
            mode: if mail { Mode::Mail } else { Mode::File },
            password: Some(password),
        };
        // The worker pool blocks while its worker runs.
        let outcome = tokio::task::spawn_blocking(move || transform.run(&job))
            .await
            .map_err(|e| ReleaseError::Internal(format!("the unlock task failed: {e}")))?
            .map_err(|e| {
                if e.transient {
                    ReleaseError::Transient(e.message)
                } else {
                    ReleaseError::Internal(e.message)
                }
            })?;
        let warned = |w: &str| outcome.report.warnings.iter().any(|x| x == w);
        if warned(WARN_WRONG_PASSWORD) && !warned(WARN_UNLOCKED) {
            let failures = self.vault.requests().add_unlock_failure(report_id)?;
            self.event(
                "ppap_unlock_failed",
                actor,
                json!({"report_id": report_id, "why": "wrong_password", "failures": failures}),
            )?;
            let remaining = MAX_UNLOCK_ATTEMPTS.saturating_sub(failures);
            if remaining == 0 {
                return Err(ReleaseError::TooManyAttempts(format!(
                    "wrong password; {MAX_UNLOCK_ATTEMPTS} wrong passwords were given for \
                     {report_id}: ask for a release instead"
                )));
            }
            return Err(ReleaseError::WrongPassword { remaining });
        }
        let output = match outcome.output.as_ref() {
            Some(o) if warned(WARN_UNLOCKED) => o,
            _ => {
                let why = outcome
                    .report
                    .items
                    .iter()
                    .rev()
                    .find(|i| i.action == sanitizer_core::Action::Removed)
                    .map_or_else(|| "blocked".to_owned(), |i| i.reason.clone());
                self.event(
                    "ppap_unlock_failed",
                    actor,
                    json!({"report_id": report_id, "why": why, "unlock_report_id": outcome.report.id}),
                )?;
                return Err(ReleaseError::Unprocessable(format!(
                    "the archive could not be unlocked and sanitized: {why}"
                )));
            }
        };
        let delivered = if mail {
            let message = with_header(
                output.bytes(),
                &format!(
                    "X-Mugai-Unlocked: by {}; report {}",
                    header_safe(&actor.name),
                    header_safe(report_id)
                ),
            );
            self.send(&item, &message).await
        } else {
            write_released(&self.released_dir, &output.name, output.bytes())
        };
        let written_to = match delivered {
            Ok(to) => to,
            Err(e) => {
                self.event(
                    "ppap_unlock_failed",
                    actor,
                    json!({"report_id": report_id, "why": e.to_string(), "unlock_report_id": outcome.report.id}),
                )?;
                return Err(e);
            }
        };
        self.event(
            "ppap_unlocked",
            actor,
            json!({
                "report_id": report_id,
                "unlock_report_id": outcome.report.id,
                "verdict": outcome.report.verdict.as_str(),
                "threats": outcome.report.threats(),
                "output_sha256": sanitizer_core::report::sha256_hex(output.bytes()),
                "delivered_to": written_to,
            }),
        )?;
        Ok(Unlocked {
            report: outcome.report,
            written_to,
        })
    }

    async fn deliver_mail(
        &self,
        item: &HeldItem,
        original: &[u8],
        approver: &str,
        request: i64,
    ) -> Result<String, ReleaseError> {
        let message = with_released_header(original, approver, request);
        self.send(item, &message).await
    }

    /// Sends `message` to `item`'s envelope recipients, from its envelope sender.
    async fn send(&self, item: &HeldItem, message: &[u8]) -> Result<String, ReleaseError> {
        let Some(downstream) = &self.downstream else {
            return Err(ReleaseError::Internal(
                "no downstream configured to deliver a released message".into(),
            ));
        };
        let from = item.mail_from.as_deref().unwrap_or("");
        let params = MailParams {
            eight_bit: message.iter().any(|b| *b > 127),
            smtputf8: !from.is_ascii() || item.rcpt_to.iter().any(|r| !r.is_ascii()),
            size: u64::try_from(message.len()).ok(),
        };
        let fail = |what: &str, reply: &crate::sources::smtp::session::Reply| {
            let text = format!("downstream {what}: {}", reply.lines.join(" / "));
            if (500..600).contains(&reply.code) {
                ReleaseError::DownstreamRefused(format!("{} {text}", reply.code))
            } else {
                ReleaseError::Transient(format!("{} {text}", reply.code))
            }
        };
        let (reply, tx) = downstream.begin(from, &params).await;
        let Some(mut tx) = tx else {
            return Err(fail("MAIL", &reply));
        };
        let mut refused = Vec::new();
        let mut accepted = 0usize;
        let mut last_refusal = None;
        for r in &item.rcpt_to {
            let reply = tx.rcpt(r).await;
            if reply.is_positive() {
                accepted += 1;
            } else {
                refused.push(r.clone());
                last_refusal = Some(reply);
            }
        }
        if accepted == 0 {
            tx.abort().await;
            return Err(match last_refusal {
                Some(reply) => fail("RCPT", &reply),
                None => ReleaseError::Internal("the item has no recipient".into()),
            });
        }
        let reply = tx.data(message).await;
        if !reply.is_positive() {
            return Err(fail("DATA", &reply));
        }
        let mut text = format!("{} {}", reply.code, reply.lines.join(" / "));
        if !refused.is_empty() {
            text.push_str(&format!(
                " (refused recipients: {})",
                refused
                    .iter()
                    .map(|r| self.address(r))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        Ok(text)
    }

    fn write_file(&self, item: &HeldItem, original: &[u8]) -> Result<String, ReleaseError> {
        let name = sanitizer_core::unicode::normalize_filename(
            item.file_name.as_deref().unwrap_or(&item.report_id),
        )
        .name;
        write_released(&self.released_dir, &name, original)
    }
}

/// Writes a released file under `dir` (created when missing), never overwriting.
fn write_released(dir: &Path, name: &str, bytes: &[u8]) -> Result<String, ReleaseError> {
    let io = |e: std::io::Error| {
        let text = format!("released_dir {}: {e}", dir.display());
        if crate::sinks::atomic::is_transient(&e) {
            ReleaseError::Transient(text)
        } else {
            ReleaseError::Internal(text)
        }
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let path = crate::sinks::outbox::write_new(dir, name, bytes).map_err(io)?;
    Ok(path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AuditSettings, DownstreamKind, DownstreamSettings, QuarantineSettings};
    use sanitizer_core::{Policy, Report, sanitize_file};

    const MAIL: &[u8] = b"From: a@example.jp\r\nTo: staff@city.example.lg.jp\r\n\
Subject: invoice\r\n\r\nsee attachment\r\n";

    struct Fixture {
        _dir: tempfile::TempDir,
        release: Release,
        audit_file: PathBuf,
        delivered: PathBuf,
        released: PathBuf,
    }

    fn fixture() -> Fixture {
        let d = tempfile::tempdir().unwrap();
        let vault = Vault::open(&QuarantineSettings {
            dir: d.path().join("q"),
            key_file: d.path().join("q.key"),
            retention_days: 0,
        })
        .unwrap();
        let audit_file = d.path().join("audit.jsonl");
        let audit = AuditLog::open(&AuditSettings {
            file: audit_file.clone(),
            address_hmac_key_file: PathBuf::new(),
        })
        .unwrap()
        .unwrap();
        let delivered = d.path().join("delivered");
        let downstream = Downstream::new(
            &DownstreamSettings {
                kind: DownstreamKind::Dir,
                dir: delivered.clone(),
                ..DownstreamSettings::default()
            },
            "mugai.test",
        )
        .unwrap();
        let released = d.path().join("released");
        Fixture {
            release: Release::new(
                Arc::new(vault),
                Some(Arc::new(audit)),
                Some(downstream),
                released.clone(),
            ),
            _dir: d,
            audit_file,
            delivered,
            released,
        }
    }

    fn report(bytes: &[u8]) -> Report {
        sanitize_file(bytes, Some("x.exe"), &Policy::default()).report
    }

    /// Holds `original` as mail to `rcpt` (or as a file named `file` when `rcpt` is empty).
    fn hold(f: &Fixture, original: &[u8], rcpt: &[&str], file: Option<&str>) -> String {
        let r = report(original);
        let item = HeldItem {
            report_id: r.id.clone(),
            quarantine_id: String::new(),
            received_at: "2026-03-01T09:00:00Z".into(),
            source: if rcpt.is_empty() { "dropdir" } else { "smtp" }.into(),
            client_ip: None,
            helo: None,
            mail_from: (!rcpt.is_empty()).then(|| "a@example.jp".into()),
            rcpt_to: rcpt.iter().map(|s| (*s).to_owned()).collect(),
            message_id: None,
            subject: None,
            header_from: None,
            file_name: file.map(str::to_owned),
            size: original.len() as u64,
            verdict: "sanitized".into(),
            threats: vec![],
            report_json: String::new(),
            status: HoldStatus::Delivered,
            downstream_reply: None,
        };
        f.release.vault().hold(original, &item, &r).unwrap();
        r.id
    }

    fn user(name: &str, role: Role, addresses: &[&str]) -> Actor {
        Actor {
            name: name.into(),
            role,
            addresses: addresses.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn events(f: &Fixture) -> Vec<Value> {
        std::fs::read_to_string(&f.audit_file)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn requesters_see_and_request_only_their_own_items() {
        let f = fixture();
        let mine = hold(&f, MAIL, &["Staff@City.example.lg.jp"], None);
        let other = hold(&f, b"MZ other", &["boss@city.example.lg.jp"], None);
        let staff = user("staff", Role::Requester, &["staff@city.example.lg.jp"]);

        let err = f.release.request(&staff, &other, "need it").unwrap_err();
        assert!(matches!(err, ReleaseError::NotFound(_)), "{err}");
        assert_eq!(err.http_status(), 404);
        let err = f.release.request(&staff, &mine, "  ").unwrap_err();
        assert_eq!(err.http_status(), 400, "reason required");
        assert_eq!(
            f.release
                .request(&staff, "../etc", "x")
                .unwrap_err()
                .http_status(),
            400
        );

        let req = f.release.request(&staff, &mine, "取引先の見積書").unwrap();
        assert_eq!(req.state, RequestState::Pending);
        assert_eq!(req.requester, "staff");
        let err = f.release.request(&staff, &mine, "again").unwrap_err();
        assert_eq!(err.http_status(), 409, "one pending request per item");

        // An approver may ask for any item; the requester lists only their own requests.
        let boss = user("boss", Role::Approver, &[]);
        f.release.request(&boss, &other, "audit").unwrap();
        let listed = f
            .release
            .list_requests(&staff, &RequestFilter::default())
            .unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].report_id, mine);
        assert_eq!(
            f.release
                .list_requests(&boss, &RequestFilter::default())
                .unwrap()
                .len(),
            2
        );
        let ev = events(&f);
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0]["kind"], "release_requested");
        assert_eq!(ev[0]["actor"], "staff");
        assert_eq!(ev[0]["reason"], "取引先の見積書");
    }

    #[test]
    fn nobody_decides_their_own_request_not_even_an_admin() {
        let f = fixture();
        let id = hold(&f, MAIL, &["staff@city.example.lg.jp"], None);
        let admin = user("cli:root", Role::Admin, &[]);
        let req = f.release.request(&admin, &id, "for myself").unwrap();
        let rt = rt();
        let err = rt
            .block_on(f.release.approve(&admin, &Target::Request(req.id), "ok"))
            .unwrap_err();
        assert!(matches!(err, ReleaseError::Forbidden(_)), "{err}");
        assert_eq!(err.http_status(), 403);
        assert_eq!(
            f.release
                .refuse(&admin, &Target::Report(id.clone()), "no")
                .unwrap_err()
                .http_status(),
            403
        );
        // Entered on behalf of someone else: the one who entered it cannot decide it either.
        let f2 = fixture();
        let id2 = hold(&f2, MAIL, &["staff@city.example.lg.jp"], None);
        let req2 = f2
            .release
            .request_on_behalf(&admin, "staff", &id2, "phoned in")
            .unwrap();
        assert_eq!(req2.entered_by, "cli:root");
        let err = rt
            .block_on(f2.release.approve(&admin, &Target::Request(req2.id), "ok"))
            .unwrap_err();
        assert_eq!(err.http_status(), 403, "{err}");
        // A requester cannot decide anything, nor enter requests for others.
        let staff = user("staff", Role::Requester, &["staff@city.example.lg.jp"]);
        assert_eq!(
            f2.release
                .refuse(&staff, &Target::Request(req2.id), "x")
                .unwrap_err()
                .http_status(),
            403
        );
        assert_eq!(
            f2.release
                .request_on_behalf(&staff, "boss", &id2, "x")
                .unwrap_err()
                .http_status(),
            403
        );
        // Nothing was delivered.
        assert!(std::fs::read_dir(&f.delivered).unwrap().next().is_none());
    }

    #[test]
    fn an_approved_mail_release_delivers_the_original_to_its_recipients() {
        let f = fixture();
        let id = hold(
            &f,
            MAIL,
            &["staff@city.example.lg.jp", "soumu@city.example.lg.jp"],
            None,
        );
        let staff = user("staff", Role::Requester, &["staff@city.example.lg.jp"]);
        let boss = user("boss", Role::Approver, &[]);
        let req = f
            .release
            .request(&staff, &id, "取引先から確認済み")
            .unwrap();
        let rt = rt();
        let done = rt
            .block_on(
                f.release
                    .approve(&boss, &Target::Report(id.clone()), "確認した"),
            )
            .unwrap();
        assert_eq!(done.request.state, RequestState::Approved);
        assert_eq!(done.request.decided_by.as_deref(), Some("boss"));
        assert!(done.request.delivered_at.is_some());
        assert!(
            done.delivered_to.starts_with("250"),
            "{}",
            done.delivered_to
        );

        // The downstream directory got the original, the header on top, to both recipients.
        let mut eml = None;
        let mut envelope = None;
        for e in std::fs::read_dir(&f.delivered).unwrap() {
            let p = e.unwrap().path();
            if p.to_string_lossy().ends_with(".envelope.json") {
                envelope = Some(std::fs::read(&p).unwrap());
            } else if p.extension().is_some_and(|x| x == "eml") {
                eml = Some(std::fs::read(&p).unwrap());
            }
        }
        let eml = eml.unwrap();
        let head = format!("X-Mugai-Released: by boss; request {}\r\n", req.id);
        assert!(eml.starts_with(head.as_bytes()));
        assert_eq!(&eml[head.len()..], MAIL, "the original, byte for byte");
        let env: Value = serde_json::from_slice(&envelope.unwrap()).unwrap();
        assert_eq!(env["from"], "a@example.jp");
        assert_eq!(
            env["to"],
            json!(["staff@city.example.lg.jp", "soumu@city.example.lg.jp"])
        );

        let item = f.release.vault().index().get(&id).unwrap().unwrap();
        assert_eq!(item.status, HoldStatus::Released);
        // Decided and delivered: a second approval is a conflict, a new request too.
        assert_eq!(
            rt.block_on(f.release.approve(&boss, &Target::Request(req.id), "again"))
                .unwrap_err()
                .http_status(),
            409
        );
        assert_eq!(
            f.release
                .request(&staff, &id, "again")
                .unwrap_err()
                .http_status(),
            409
        );
        let kinds: Vec<String> = events(&f)
            .iter()
            .map(|e| e["kind"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            kinds,
            ["release_requested", "release_approved", "release_delivered"]
        );
        let ev = events(&f);
        assert_eq!(ev[1]["actor"], "boss");
        assert_eq!(ev[1]["reason"], "確認した");
        assert_eq!(ev[1]["request_reason"], "取引先から確認済み");
        crate::sinks::audit::verify(&f.audit_file).unwrap();
    }

    #[test]
    fn a_file_release_lands_in_released_dir_without_overwriting() {
        let f = fixture();
        let id = hold(&f, b"MZ the file", &[], Some("../見積書.xlsm"));
        std::fs::create_dir_all(&f.released).unwrap();
        std::fs::write(f.released.join("見積書.xlsm"), b"older").unwrap();
        let admin = user("cli:alice", Role::Admin, &[]);
        let other = user("cli:bob", Role::Admin, &[]);
        f.release
            .request(&admin, &id, "needed for the meeting")
            .unwrap();
        let done = rt()
            .block_on(f.release.approve(&other, &Target::Report(id.clone()), "ok"))
            .unwrap();
        assert!(
            done.delivered_to.ends_with("見積書 (2).xlsm"),
            "{}",
            done.delivered_to
        );
        assert_eq!(
            std::fs::read(f.released.join("見積書 (2).xlsm")).unwrap(),
            b"MZ the file"
        );
        assert_eq!(
            std::fs::read(f.released.join("見積書.xlsm")).unwrap(),
            b"older"
        );
    }

    #[test]
    fn refusal_closes_the_request_and_a_new_one_may_follow() {
        let f = fixture();
        let id = hold(&f, MAIL, &["staff@city.example.lg.jp"], None);
        let staff = user("staff", Role::Requester, &["staff@city.example.lg.jp"]);
        let boss = user("boss", Role::Approver, &[]);
        let req = f.release.request(&staff, &id, "please").unwrap();
        let refused = f
            .release
            .refuse(&boss, &Target::Request(req.id), "マクロ付きは不可")
            .unwrap();
        assert_eq!(refused.state, RequestState::Refused);
        assert_eq!(refused.decision_reason.as_deref(), Some("マクロ付きは不可"));
        assert_eq!(
            f.release
                .refuse(&boss, &Target::Request(req.id), "again")
                .unwrap_err()
                .http_status(),
            409
        );
        let err = rt()
            .block_on(f.release.approve(&boss, &Target::Request(req.id), "ok"))
            .unwrap_err();
        assert_eq!(err.http_status(), 409);
        assert!(std::fs::read_dir(&f.delivered).unwrap().next().is_none());
        // The item's status is not touched by a refusal; a new request is possible.
        assert_eq!(
            f.release.vault().index().get(&id).unwrap().unwrap().status,
            HoldStatus::Delivered
        );
        f.release
            .request(&staff, &id, "the sender confirmed")
            .unwrap();
        assert_eq!(events(&f)[1]["kind"], "release_refused");
    }

    /// While one delivery of a request is under way, a second approval or retry of it is
    /// refused (409) instead of sending the original twice; once it ends, the retry works.
    #[test]
    fn one_delivery_per_request_at_a_time() {
        let f = fixture();
        let id = hold(&f, b"MZ file", &[], Some("a.exe"));
        let a = user("alice", Role::Approver, &[]);
        let b = user("bob", Role::Approver, &[]);
        let c = user("carol", Role::Admin, &[]);
        let req = f.release.request(&a, &id, "needed").unwrap();
        let rt = rt();
        let busy = Delivering::claim(&f.release.delivering, req.id).unwrap();
        assert!(Delivering::claim(&f.release.delivering, req.id).is_none());
        for who in [&b, &c] {
            let err = rt
                .block_on(f.release.approve(who, &Target::Request(req.id), "ok"))
                .unwrap_err();
            assert_eq!(err.http_status(), 409, "{err}");
        }
        assert_eq!(
            f.release
                .vault()
                .requests()
                .get_request(req.id)
                .unwrap()
                .unwrap()
                .state,
            RequestState::Pending,
            "a refused attempt decides nothing"
        );
        drop(busy);
        rt.block_on(f.release.approve(&b, &Target::Request(req.id), "ok"))
            .unwrap();
        let again = rt
            .block_on(f.release.approve(&c, &Target::Request(req.id), "ok"))
            .unwrap_err();
        assert_eq!(again.http_status(), 409, "delivered already: {again}");
        assert!(f.release.delivering.lock().unwrap().is_empty());
    }

    #[test]
    fn a_failed_delivery_stays_approved_and_the_retry_delivers() {
        let f = fixture();
        let id = hold(&f, b"MZ file", &[], Some("a.exe"));
        // The released directory cannot be created (a file is in the way).
        std::fs::write(&f.released, b"not a directory").unwrap();
        let a = user("alice", Role::Approver, &[]);
        let b = user("bob", Role::Approver, &[]);
        let req = f.release.request(&a, &id, "needed").unwrap();
        let rt = rt();
        let err = rt
            .block_on(f.release.approve(&b, &Target::Request(req.id), "ok"))
            .unwrap_err();
        assert!(matches!(err, ReleaseError::Internal(_)), "{err}");
        let r = f
            .release
            .vault()
            .requests()
            .get_request(req.id)
            .unwrap()
            .unwrap();
        assert_eq!(r.state, RequestState::Approved);
        assert!(r.delivered_at.is_none());
        assert!(r.delivery_reply.is_some());
        assert_ne!(
            f.release.vault().index().get(&id).unwrap().unwrap().status,
            HoldStatus::Released
        );
        // Fixed; the same approval again delivers (the requester still may not).
        std::fs::remove_file(&f.released).unwrap();
        assert_eq!(
            rt.block_on(f.release.approve(&a, &Target::Request(req.id), "retry"))
                .unwrap_err()
                .http_status(),
            403
        );
        rt.block_on(f.release.approve(&b, &Target::Request(req.id), "retry"))
            .unwrap();
        assert_eq!(std::fs::read(f.released.join("a.exe")).unwrap(), b"MZ file");
        let kinds: Vec<String> = events(&f)
            .iter()
            .map(|e| e["kind"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            kinds,
            [
                "release_requested",
                "release_approved",
                "release_failed",
                "release_approved",
                "release_delivered"
            ]
        );
        assert_eq!(events(&f)[3]["retry"], true);
    }

    #[test]
    fn purge_removes_the_original_and_refuses_pending_requests() {
        let f = fixture();
        let id = hold(&f, MAIL, &["staff@city.example.lg.jp"], None);
        let staff = user("staff", Role::Requester, &["staff@city.example.lg.jp"]);
        let boss = user("boss", Role::Approver, &[]);
        let admin = user("cli:root", Role::Admin, &[]);
        let req = f.release.request(&staff, &id, "please").unwrap();
        assert_eq!(
            f.release.purge(&boss, &id, "x").unwrap_err().http_status(),
            403
        );
        assert_eq!(
            f.release.purge(&admin, &id, "").unwrap_err().http_status(),
            400
        );
        assert_eq!(f.release.purge(&admin, &id, "情報漏えい対応").unwrap(), 1);
        let qid = QuarantineId::of(MAIL);
        assert!(!f.release.vault().store().contains(&qid).unwrap());
        assert_eq!(
            f.release.vault().index().get(&id).unwrap().unwrap().status,
            HoldStatus::Purged
        );
        let r = f
            .release
            .vault()
            .requests()
            .get_request(req.id)
            .unwrap()
            .unwrap();
        assert_eq!(r.state, RequestState::Refused);
        assert_eq!(
            f.release
                .purge(&admin, &id, "again")
                .unwrap_err()
                .http_status(),
            410
        );
        assert_eq!(
            f.release
                .request(&staff, &id, "please")
                .unwrap_err()
                .http_status(),
            410
        );
        let ev = events(&f);
        let last = ev.last().unwrap();
        assert_eq!(last["kind"], "quarantine_purged");
        assert_eq!(last["reason"], "情報漏えい対応");
        assert_eq!(last["requests_refused"], json!([req.id]));
    }

    /// A ZipCrypto PPAP archive made now with the zip crate's writer.
    fn ppap(password: &[u8]) -> Vec<u8> {
        use std::io::Write;
        use zip::unstable::write::FileOptionsExt;
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let o = zip::write::SimpleFileOptions::default()
            .with_deprecated_encryption(password)
            .unwrap();
        w.start_file("見積書.html", o).unwrap();
        w.write_all("<p>見積書</p><script>x()</script>".as_bytes())
            .unwrap();
        w.finish().unwrap().into_inner()
    }

    /// Holds a blocked PPAP file as the drop directory would.
    fn hold_ppap(f: &Fixture, zip: &[u8]) -> String {
        let r = sanitize_file(zip, Some("ppap.zip"), &Policy::default()).report;
        assert!(r.threats().contains(&"archive.encrypted"));
        let item = HeldItem {
            report_id: r.id.clone(),
            quarantine_id: String::new(),
            received_at: "2026-03-01T09:00:00Z".into(),
            source: "dropdir".into(),
            client_ip: None,
            helo: None,
            mail_from: None,
            rcpt_to: vec![],
            message_id: None,
            subject: None,
            header_from: None,
            file_name: Some("ppap.zip".into()),
            size: zip.len() as u64,
            verdict: "blocked".into(),
            threats: r.threats().iter().map(|t| (*t).to_owned()).collect(),
            report_json: String::new(),
            status: HoldStatus::Held,
            downstream_reply: None,
        };
        f.release.vault().hold(zip, &item, &r).unwrap();
        r.id
    }

    #[test]
    fn a_ppap_file_unlocks_with_its_password_and_comes_out_sanitized() {
        use crate::sanitize::{InProcess, Password};
        let f = fixture();
        let t: Arc<dyn crate::sanitize::Transform> = Arc::new(InProcess::new(Policy::default()));
        let rt = rt();
        let id = hold_ppap(&f, &ppap(b"himitsu"));
        let staff = user("staff", Role::Approver, &[]);
        let err = rt
            .block_on(f.release.unlock_with_password(
                &staff,
                &id,
                Password::new("wrong".into()),
                t.clone(),
            ))
            .unwrap_err();
        assert!(
            matches!(err, ReleaseError::WrongPassword { remaining: 4 }),
            "{err}"
        );
        assert_eq!(err.http_status(), 422);
        // While another unlock of the item runs, a second one is refused and counts nothing.
        let busy = Delivering::claim(&f.release.unlocking, id.clone()).unwrap();
        let err = rt
            .block_on(f.release.unlock_with_password(
                &staff,
                &id,
                Password::new("himitsu".into()),
                t.clone(),
            ))
            .unwrap_err();
        assert_eq!(err.http_status(), 409, "{err}");
        drop(busy);
        let done = rt
            .block_on(f.release.unlock_with_password(
                &staff,
                &id,
                Password::new("himitsu".into()),
                t.clone(),
            ))
            .unwrap();
        assert!(done.written_to.ends_with("ppap.zip"), "{}", done.written_to);
        let bytes = std::fs::read(&done.written_to).unwrap();
        let mut a = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
        assert_eq!(a.len(), 1);
        let mut m = a.by_index(0).unwrap();
        assert!(!m.encrypted());
        assert_eq!(m.name().unwrap(), "見積書.txt");
        let mut text = String::new();
        std::io::Read::read_to_string(&mut m, &mut text).unwrap();
        assert!(text.contains("見積書") && !text.contains("x()"), "{text}");
        assert!(
            done.report
                .warnings
                .iter()
                .any(|w| w == crate::sanitize::WARN_UNLOCKED)
        );
        // The audit log names the events, never the password.
        let log = std::fs::read_to_string(&f.audit_file).unwrap();
        assert!(log.contains("ppap_unlock_failed") && log.contains("ppap_unlocked"));
        assert!(!log.contains("himitsu") && !log.contains("wrong\""));
        crate::sinks::audit::verify(&f.audit_file).unwrap();
    }

    #[test]
    fn wrong_passwords_are_limited_per_item_and_only_locked_zips_unlock() {
        use crate::sanitize::{InProcess, Password};
        let f = fixture();
        let t: Arc<dyn crate::sanitize::Transform> = Arc::new(InProcess::new(Policy::default()));
        let rt = rt();
        let id = hold_ppap(&f, &ppap(b"right"));
        let a = user("a", Role::Approver, &[]);
        for left in (1..MAX_UNLOCK_ATTEMPTS).rev() {
            let e = rt
                .block_on(f.release.unlock_with_password(
                    &a,
                    &id,
                    Password::new("nope".into()),
                    t.clone(),
                ))
                .unwrap_err();
            assert!(matches!(e, ReleaseError::WrongPassword { remaining } if remaining == left));
        }
        let e = rt
            .block_on(f.release.unlock_with_password(
                &a,
                &id,
                Password::new("nope".into()),
                t.clone(),
            ))
            .unwrap_err();
        assert_eq!(e.http_status(), 429);
        // Even the right password is refused now.
        let e = rt
            .block_on(f.release.unlock_with_password(
                &a,
                &id,
                Password::new("right".into()),
                t.clone(),
            ))
            .unwrap_err();
        assert_eq!(e.http_status(), 429);
        // A requester cannot try on items not addressed to them (files have no recipients).
        let staff = user("s", Role::Requester, &["s@city.example.lg.jp"]);
        let id2 = hold_ppap(&f, &ppap(b"other"));
        assert_eq!(
            rt.block_on(f.release.unlock_with_password(
                &staff,
                &id2,
                Password::new("other".into()),
                t.clone()
            ))
            .unwrap_err()
            .http_status(),
            404
        );
        // Nothing to unlock in an item that was not held for an encrypted archive.
        let mail = hold(&f, MAIL, &["s@city.example.lg.jp"], None);
        assert_eq!(
            rt.block_on(f.release.unlock_with_password(
                &a,
                &mail,
                Password::new("x".into()),
                t.clone()
            ))
            .unwrap_err()
            .http_status(),
            409
        );
        assert!(format!("{:?}", Password::new("secret".into())) == "[redacted]");
    }

    #[test]
    fn a_ppap_mail_unlocks_and_goes_to_its_recipients_sanitized() {
        use crate::sanitize::{InProcess, Password};
        use sanitizer_core::sanitize_mail;
        let f = fixture();
        let zip = ppap(b"pw-0601");
        let mut b64 = String::new();
        {
            // Standard base64, 76 columns.
            const T: &[u8; 64] =
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            let mut line = 0;
            for c in zip.chunks(3) {
                let n = (u32::from(c[0]) << 16)
                    | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                    | u32::from(*c.get(2).unwrap_or(&0));
                for i in 0..4 {
                    let ch = if i <= c.len() {
                        T[((n >> (18 - 6 * i)) & 63) as usize] as char
                    } else {
                        '='
                    };
                    b64.push(ch);
                }
                line += 4;
                if line >= 76 {
                    b64.push_str("\r\n");
                    line = 0;
                }
            }
        }
        let mail = format!(
            "From: a@example.jp\r\nTo: staff@city.example.lg.jp\r\nSubject: quote\r\n\
             MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
             --b\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nSee the zip.\r\n\
             --b\r\nContent-Type: application/zip; name=\"quote.zip\"\r\n\
             Content-Disposition: attachment; filename=\"quote.zip\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{b64}\r\n--b--\r\n"
        )
        .into_bytes();
        let r = sanitize_mail(&mail, &Policy::default()).report;
        assert!(
            r.threats().contains(&"archive.encrypted"),
            "{:?}",
            r.threats()
        );
        let item = HeldItem {
            report_id: r.id.clone(),
            quarantine_id: String::new(),
            received_at: "2026-03-01T09:00:00Z".into(),
            source: "smtp".into(),
            client_ip: None,
            helo: None,
            mail_from: Some("a@example.jp".into()),
            rcpt_to: vec!["staff@city.example.lg.jp".into()],
            message_id: None,
            subject: Some("quote".into()),
            header_from: None,
            file_name: None,
            size: mail.len() as u64,
            verdict: "sanitized".into(),
            threats: r.threats().iter().map(|t| (*t).to_owned()).collect(),
            report_json: String::new(),
            status: HoldStatus::Delivered,
            downstream_reply: None,
        };
        f.release.vault().hold(&mail, &item, &r).unwrap();
        let staff = user("staff", Role::Requester, &["staff@city.example.lg.jp"]);
        let t: Arc<dyn crate::sanitize::Transform> = Arc::new(InProcess::new(Policy::default()));
        let rt = rt();
        let done = rt
            .block_on(f.release.unlock_with_password(
                &staff,
                &r.id,
                Password::new("pw-0601".into()),
                t,
            ))
            .unwrap();
        assert!(done.written_to.starts_with("250"), "{}", done.written_to);
        let eml = std::fs::read_dir(&f.delivered)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|x| x == "eml"))
            .unwrap();
        let bytes = std::fs::read(eml).unwrap();
        let head = format!("X-Mugai-Unlocked: by staff; report {}\r\n", r.id);
        assert!(bytes.starts_with(head.as_bytes()));
        let msg = mail_parser::MessageParser::default().parse(&bytes).unwrap();
        let att = msg
            .attachments()
            .next()
            .expect("the rebuilt zip is attached");
        let mut a = zip::ZipArchive::new(std::io::Cursor::new(att.contents().to_vec())).unwrap();
        let mut m = a.by_index(0).unwrap();
        assert!(!m.encrypted());
        let mut text = String::new();
        std::io::Read::read_to_string(&mut m, &mut text).unwrap();
        assert!(text.contains("見積書") && !text.contains("x()"), "{text}");
        let log = std::fs::read_to_string(&f.audit_file).unwrap();
        assert!(log.contains("ppap_unlocked") && !log.contains("pw-0601"));
    }

    #[test]
    fn the_release_header_cannot_be_split_and_keeps_the_line_ending() {
        let m = with_released_header(b"Subject: x\n\nbody\n", "evil\r\nBcc: x", 7);
        assert!(m.starts_with(b"X-Mugai-Released: by evil??Bcc: x; request 7\nSubject"));
        assert_eq!(Target::parse("42"), Target::Request(42));
        assert_eq!(
            Target::parse("01JD0000000000000000000000"),
            Target::Report("01JD0000000000000000000000".into())
        );
    }
}
