//! The `/v1` handlers: sanitizing a file or a message, recent reports, and reading the
//! quarantine.
//!
//! A sanitize request follows the relay's order: sanitize on the blocking pool; hold the
//! original in the quarantine when the verdict is not `clean` (durable before the answer; a
//! transient quarantine failure is 503, never an answer without the original kept); count it
//! in the metrics; one audit line; keep the report for `GET /v1/reports/{id}`; answer
//! (CONTRACT.md: 200 with the safe bytes, 422 with the report when blocked, 503 when
//! transient).
//!
//! Who sees what in the quarantine: approvers and admins see every item; a requester sees the
//! items where one of their addresses is a recipient. A file posted to `/v1/sanitize` is
//! recorded with the poster's addresses as its recipients (it was meant for them), a message
//! posted to `/v1/sanitize/mail` with its `To` and `Cc` addresses.

use std::sync::Arc;
use std::time::Instant;

use base64::Engine as _;
use bytes::Bytes;
use http::header::{CONTENT_DISPOSITION, CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use sanitizer_core::report::Verdict;

use super::{Api, Ctx, Resp, error, json, read_body};
use crate::actor::Role;
use crate::sanitize::{Job, Mode};
use crate::sinks::audit::{AuditRecord, Durations};
use crate::sinks::index::{HeldItem, HoldStatus, Search};
use crate::sinks::quarantine::{QuarantineId, QuarantineStore as _};
use crate::users::normalize_address;

/// Largest output `?format=json` carries (base64 in JSON is for small files).
pub const MAX_JSON_OUTPUT: usize = 8 << 20;
/// Largest page of `GET /v1/quarantine`.
pub const MAX_PAGE: usize = 1000;

type Handled = Result<Resp, Box<Resp>>;

/// The `name=value` pairs of a query string, percent- and `+`-decoded (invalid UTF-8 is
/// replaced, not refused).
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while let Some(&b) = bytes.get(i) {
            match b {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex = bytes
                        .get(i + 1..i + 3)
                        .and_then(|h| std::str::from_utf8(h).ok())
                        .and_then(|h| u8::from_str_radix(h, 16).ok());
                    if let Some(v) = hex {
                        out.push(v);
                        i += 2;
                    } else {
                        out.push(b'%');
                    }
                }
                _ => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// `attachment; filename="ascii fallback"; filename*=UTF-8''percent-encoded` (RFC 6266).
pub fn content_disposition(name: &str) -> String {
    let fallback: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' && c != '%' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for b in name.bytes() {
        // RFC 5987 attr-char.
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

fn bad_request(msg: &str) -> Box<Resp> {
    Box::new(error(StatusCode::BAD_REQUEST, msg))
}

fn unavailable(msg: &str) -> Box<Resp> {
    Box::new(error(StatusCode::SERVICE_UNAVAILABLE, msg))
}

fn internal(msg: &str) -> Box<Resp> {
    Box::new(error(StatusCode::INTERNAL_SERVER_ERROR, msg))
}

/// Headers of a posted message for the index: Message-ID, Subject, From, and the `To`/`Cc`
/// addresses (untrusted text; whoever displays it escapes it).
struct MailSummary {
    message_id: Option<String>,
    subject: Option<String>,
    from: Option<String>,
    recipients: Vec<String>,
}

fn mail_summary(message: &[u8]) -> MailSummary {
    let mut s = MailSummary {
        message_id: None,
        subject: None,
        from: None,
        recipients: Vec::new(),
    };
    let Some(parsed) = mail_parser::MessageParser::default().parse_headers(message) else {
        return s;
    };
    let bound = |v: &str| v.chars().take(998).collect::<String>();
    s.message_id = parsed.message_id().map(bound);
    s.subject = parsed.subject().map(bound);
    s.from = parsed
        .from()
        .and_then(|a| a.first())
        .and_then(|a| a.address().map(bound));
    for list in [parsed.to(), parsed.cc()].into_iter().flatten() {
        for a in list.iter() {
            if let Some(addr) = a.address()
                && s.recipients.len() < 100
            {
                s.recipients.push(bound(addr));
            }
        }
    }
    s
}

/// `POST /v1/sanitize` and `POST /v1/sanitize/mail`.
pub async fn sanitize(
    api: &Arc<Api>,
    ctx: &Ctx,
    req: Request<Incoming>,
    query: &str,
    mode: Mode,
) -> Handled {
    let started = Instant::now();
    let pairs = query_pairs(query);
    let name = param(&pairs, "filename").map(|n| n.chars().take(255).collect::<String>());
    let as_json = match param(&pairs, "format") {
        None => false,
        Some("json") => true,
        Some(other) => return Err(bad_request(&format!("format={other:?}: only json"))),
    };
    let input = read_body(req, api.settings.max_body_bytes).await?;
    let job = Job {
        input,
        name: name.clone(),
        mode,
        password: None,
    };
    let transform = api.shared.transform.get();
    let ran = tokio::task::spawn_blocking(move || {
        let r = transform.run(&job);
        (job, r)
    })
    .await;
    let (job, outcome) = match ran {
        Ok((job, Ok(outcome))) => (job, outcome),
        Ok((_, Err(e))) if e.transient => {
            tracing::warn!(error = %e, "The transform could not run (transient).");
            return Err(unavailable(
                "the sanitizer is busy or unavailable; try again later",
            ));
        }
        Ok((_, Err(e))) => {
            tracing::error!(error = %e, "The transform could not run.");
            return Err(internal("the sanitizer could not run"));
        }
        Err(e) => {
            tracing::error!(error = %e, "The sanitizing task failed.");
            return Err(internal("the sanitizer could not run"));
        }
    };
    let sanitize_took = started.elapsed();
    let mut outcome = outcome;
    let original = job.input;
    let summary = (mode == Mode::Mail).then(|| mail_summary(&original));

    // The original is durable in the quarantine before we answer.
    if outcome.report.verdict != Verdict::Clean {
        let rcpt_to = match &summary {
            Some(s) => s.recipients.clone(),
            None => ctx.actor.addresses.clone(),
        };
        let item = HeldItem {
            client_ip: Some(ctx.client_ip.to_string()),
            rcpt_to,
            message_id: summary.as_ref().and_then(|s| s.message_id.clone()),
            subject: summary.as_ref().and_then(|s| s.subject.clone()),
            header_from: summary.as_ref().and_then(|s| s.from.clone()),
            file_name: name.clone(),
            size: original.len() as u64,
            ..HeldItem::for_report(&outcome.report, "http")
        };
        outcome.report.quarantine_id = Some(QuarantineId::of(&original).to_string());
        let vault = Arc::clone(&api.shared.vault);
        let report = outcome.report.clone();
        let original = original.clone();
        let held = tokio::task::spawn_blocking(move || vault.hold(&original, &item, &report)).await;
        match held {
            Ok(Ok(_)) => {}
            Ok(Err(e)) if e.is_transient() => {
                tracing::error!(report_id = %outcome.report.id, error = %e, "Quarantine failed (transient); answering 503.");
                return Err(unavailable(
                    "the quarantine is unavailable; try again later",
                ));
            }
            Ok(Err(e)) => {
                tracing::error!(report_id = %outcome.report.id, error = %e, "Quarantine failed.");
                return Err(internal("the original could not be kept in the quarantine"));
            }
            Err(e) => {
                tracing::error!(error = %e, "The quarantine task failed.");
                return Err(internal("the original could not be kept in the quarantine"));
            }
        }
    }

    let report = &outcome.report;
    super::metrics::metrics().record("http", mode == Mode::Mail, report, sanitize_took);
    if let Some(audit) = &api.shared.audit {
        let mut record = AuditRecord::from_report(report);
        record.queue_id = format!("http:{}", ctx.actor.name);
        record.client_ip = Some(ctx.client_ip.to_string());
        record.rcpt_to = summary
            .as_ref()
            .map(|s| s.recipients.clone())
            .unwrap_or_default();
        record.mail_from = summary.as_ref().and_then(|s| s.from.clone());
        record.message_id = summary.as_ref().and_then(|s| s.message_id.clone());
        record.size_in = original.len() as u64;
        record.durations_ms = Durations {
            sanitize: u64::try_from(sanitize_took.as_millis()).unwrap_or(u64::MAX),
            deliver: 0,
            total: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        };
        let audit = Arc::clone(audit);
        let wrote = tokio::task::spawn_blocking(move || audit.append(&record)).await;
        if !matches!(wrote, Ok(Ok(()))) {
            tracing::error!(report_id = %report.id, "Could not append to the audit log.");
        }
    }
    let report_json = serde_json::to_value(report).unwrap_or_default();
    api.reports.insert(
        &report.id,
        &ctx.actor.name,
        report_json.clone(),
        Instant::now(),
    );
    tracing::info!(
        report_id = %report.id,
        verdict = report.verdict.as_str(),
        user = %ctx.actor.name,
        size = original.len(),
        ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "HTTP item sanitized."
    );

    let report_id = report.id.clone();
    let verdict = report.verdict.as_str();
    let with_ids = |mut r: Resp| {
        let h = r.headers_mut();
        h.insert(
            HeaderName::from_static("x-mugai-verdict"),
            HeaderValue::from_static(verdict),
        );
        if let Ok(v) = HeaderValue::from_str(&report_id) {
            h.insert(HeaderName::from_static("x-mugai-report-id"), v);
        }
        r
    };
    let Some(output) = outcome.output else {
        return Ok(with_ids(json(
            StatusCode::UNPROCESSABLE_ENTITY,
            &report_json,
        )));
    };
    if as_json {
        if output.bytes().len() > MAX_JSON_OUTPUT {
            return Ok(with_ids(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!(
                    "the output ({} bytes) is over the {MAX_JSON_OUTPUT}-byte limit of \
                     format=json; ask without format=json for the bytes",
                    output.bytes().len()
                ),
            )));
        }
        let b64 = base64::engine::general_purpose::STANDARD.encode(output.bytes());
        return Ok(with_ids(json(
            StatusCode::OK,
            &serde_json::json!({ "report": report_json, "output_base64": b64 }),
        )));
    }
    let mime = HeaderValue::from_str(&output.mime)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    let disposition = HeaderValue::from_str(&content_disposition(&output.name))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    let mut r = Response::new(Full::new(Bytes::from(output.into_bytes())));
    r.headers_mut().insert(CONTENT_TYPE, mime);
    r.headers_mut().insert(CONTENT_DISPOSITION, disposition);
    Ok(with_ids(r))
}

/// `GET /v1/reports/{id}`: a report made in the last `http.report_retention_secs`, for the
/// user who made it, or an approver or admin.
pub fn report(api: &Arc<Api>, ctx: &Ctx, id: &str) -> Handled {
    match api.reports.get(id, Instant::now()) {
        Some((owner, report)) if owner == ctx.actor.name || ctx.sees_all() => {
            Ok(json(StatusCode::OK, &report))
        }
        _ => Ok(error(
            StatusCode::NOT_FOUND,
            "no such report (or it expired: see /v1/quarantine for held items)",
        )),
    }
}

/// Whether `ctx` may see `item`.
fn visible(ctx: &Ctx, item: &HeldItem) -> bool {
    ctx.sees_all()
        || item.rcpt_to.iter().any(|r| {
            let r = normalize_address(r);
            ctx.actor.addresses.contains(&r)
        })
}

/// An index row for the API: the row without its report text, plus the report as JSON when
/// `with_report`.
fn item_json(item: &HeldItem, with_report: bool) -> serde_json::Value {
    let mut v = serde_json::to_value(item).unwrap_or_default();
    if let Some(obj) = v.as_object_mut() {
        obj.remove("report_json");
        if with_report {
            let report = serde_json::from_str::<serde_json::Value>(&item.report_json)
                .unwrap_or(serde_json::Value::Null);
            obj.insert("report".into(), report);
        }
    }
    v
}

fn parse_search(pairs: &[(String, String)]) -> Result<Search, Box<Resp>> {
    let time = |k: &str| -> Result<Option<jiff::Timestamp>, Box<Resp>> {
        param(pairs, k)
            .map(|v| {
                v.parse::<jiff::Timestamp>()
                    .map_err(|_| bad_request(&format!("{k}={v:?}: not an RFC 3339 time")))
            })
            .transpose()
    };
    let num = |k: &str| -> Result<Option<u64>, Box<Resp>> {
        param(pairs, k)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| bad_request(&format!("{k}={v:?}: not a number")))
            })
            .transpose()
    };
    let status = param(pairs, "status")
        .map(|s| HoldStatus::parse(s).ok_or_else(|| bad_request(&format!("status={s:?}: unknown"))))
        .transpose()?;
    let limit = num("limit")?.unwrap_or(100);
    let limit = usize::try_from(limit)
        .unwrap_or(MAX_PAGE)
        .clamp(1, MAX_PAGE);
    Ok(Search {
        sender: param(pairs, "sender").map(str::to_owned),
        recipient: param(pairs, "recipient").map(str::to_owned),
        subject: param(pairs, "subject").map(str::to_owned),
        since: time("since")?,
        until: time("until")?,
        verdict: param(pairs, "verdict").map(str::to_owned),
        threat: param(pairs, "threat").map(str::to_owned),
        status,
        limit,
        offset: num("offset")?.unwrap_or(0),
    })
}

/// The rows a requester may see that match `search`, newest first, paged. The index matches
/// recipients by substring, so each of the requester's addresses is searched and the rows
/// are kept only on an exact (case-insensitive) match.
pub(crate) fn requester_search(
    index: &dyn crate::sinks::index::QuarantineIndex,
    ctx: &Ctx,
    search: &Search,
) -> Result<(Vec<HeldItem>, u64), crate::sinks::quarantine::QuarantineError> {
    const PAGE: usize = 500;
    let want = usize::try_from(search.offset)
        .unwrap_or(usize::MAX)
        .saturating_add(search.limit)
        .min(Search::MAX_LIMIT);
    let mut found: Vec<HeldItem> = Vec::new();
    for addr in &ctx.actor.addresses {
        if let Some(r) = &search.recipient
            && !addr.contains(&r.to_ascii_lowercase())
        {
            continue;
        }
        let mut s = search.clone();
        s.recipient = Some(addr.clone());
        s.limit = PAGE;
        s.offset = 0;
        let mut kept = 0;
        loop {
            let rows = index.search(&s)?;
            let n = rows.len();
            for row in rows {
                if visible(ctx, &row) && !found.iter().any(|f| f.report_id == row.report_id) {
                    found.push(row);
                    kept += 1;
                }
            }
            if n < PAGE || kept >= want {
                break;
            }
            s.offset += PAGE as u64;
        }
    }
    found.sort_by(|a, b| b.received_at.cmp(&a.received_at));
    let total = found.len() as u64;
    let page = found
        .into_iter()
        .skip(usize::try_from(search.offset).unwrap_or(usize::MAX))
        .take(search.limit)
        .collect();
    Ok((page, total))
}

/// `GET /v1/quarantine?...`: index search, newest first.
pub async fn quarantine_list(api: &Arc<Api>, ctx: &Ctx, query: &str) -> Handled {
    let search = parse_search(&query_pairs(query))?;
    let vault = Arc::clone(&api.shared.vault);
    let ctx2 = ctx.clone();
    let found = tokio::task::spawn_blocking(move || {
        let index = vault.index();
        if ctx2.sees_all() {
            let rows = index.search(&search)?;
            let total = index.count(&search)?;
            Ok((rows, total))
        } else {
            requester_search(index, &ctx2, &search)
        }
    })
    .await
    .map_err(|e| internal(&format!("search failed: {e}")))?;
    let (rows, total) = found.map_err(|e| {
        tracing::error!(error = %e, "Quarantine search failed.");
        if e.is_transient() {
            unavailable("the quarantine index is busy; try again later")
        } else {
            internal("the quarantine index could not be searched")
        }
    })?;
    let items: Vec<serde_json::Value> = rows.iter().map(|r| item_json(r, false)).collect();
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "total": total, "items": items }),
    ))
}

/// The index row for `report_id`, if `ctx` may see it (404 alike when missing or not theirs,
/// so ids of others' items cannot be probed).
async fn visible_row(api: &Arc<Api>, ctx: &Ctx, report_id: &str) -> Result<HeldItem, Box<Resp>> {
    if !sanitizer_core::report::is_valid_report_id(report_id) {
        return Err(Box::new(error(StatusCode::NOT_FOUND, "no such item")));
    }
    let vault = Arc::clone(&api.shared.vault);
    let id = report_id.to_owned();
    let row = tokio::task::spawn_blocking(move || vault.index().get(&id))
        .await
        .map_err(|e| internal(&format!("lookup failed: {e}")))?
        .map_err(|e| {
            if e.is_transient() {
                unavailable("the quarantine index is busy; try again later")
            } else {
                internal("the quarantine index could not be read")
            }
        })?;
    match row {
        Some(item) if visible(ctx, &item) => Ok(item),
        _ => Err(Box::new(error(StatusCode::NOT_FOUND, "no such item"))),
    }
}

/// `GET /v1/quarantine/{report_id}`: the row and its report.
pub async fn quarantine_item(api: &Arc<Api>, ctx: &Ctx, report_id: &str) -> Handled {
    let item = visible_row(api, ctx, report_id).await?;
    Ok(json(StatusCode::OK, &item_json(&item, true)))
}

/// `GET /v1/quarantine/{report_id}/original`: the decrypted original (approvers and admins),
/// recorded in the audit log as `original_downloaded` before it is sent.
pub async fn quarantine_original(api: &Arc<Api>, ctx: &Ctx, report_id: &str) -> Handled {
    ctx.require(&[Role::Approver, Role::Admin])?;
    let item = visible_row(api, ctx, report_id).await?;
    let qid = QuarantineId::parse(&item.quarantine_id)
        .map_err(|_| internal("the index row names no valid original"))?;
    let vault = Arc::clone(&api.shared.vault);
    let got = tokio::task::spawn_blocking(move || vault.store().get(&qid))
        .await
        .map_err(|e| internal(&format!("read failed: {e}")))?;
    let entry = match got {
        Ok(e) => e,
        Err(e) if e.is_transient() => {
            return Err(unavailable(
                "the quarantine is unavailable; try again later",
            ));
        }
        Err(e) => {
            tracing::warn!(report_id, error = %e, "Original not readable.");
            return Err(Box::new(error(
                StatusCode::GONE,
                "the original is no longer available (purged or unreadable)",
            )));
        }
    };
    if let Some(audit) = &api.shared.audit {
        let mut fields = serde_json::Map::new();
        fields.insert("report_id".into(), item.report_id.clone().into());
        fields.insert("quarantine_id".into(), item.quarantine_id.clone().into());
        fields.insert("user".into(), ctx.actor.name.clone().into());
        fields.insert("role".into(), ctx.actor.role.as_str().into());
        fields.insert("client_ip".into(), ctx.client_ip.to_string().into());
        let audit = Arc::clone(audit);
        let wrote =
            tokio::task::spawn_blocking(move || audit.event("original_downloaded", fields)).await;
        if !matches!(wrote, Ok(Ok(()))) {
            tracing::error!(
                report_id,
                "Could not record the download in the audit log; refused."
            );
            return Err(unavailable("the audit log is unavailable; try again later"));
        }
    }
    tracing::info!(report_id, user = %ctx.actor.name, "Original downloaded.");
    let name = item
        .file_name
        .clone()
        .unwrap_or_else(|| format!("{}.eml", item.report_id));
    let mut r = Response::new(Full::new(Bytes::from(entry.original)));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(v) = HeaderValue::from_str(&content_disposition(&name)) {
        r.headers_mut().insert(CONTENT_DISPOSITION, v);
    }
    r.headers_mut().insert(
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_decode() {
        let p = query_pairs("filename=%E8%AB%8B%E6%B1%82+%E6%9B%B8.pdf&format=json&x&bad=%zz%4");
        assert_eq!(param(&p, "filename"), Some("請求 書.pdf"));
        assert_eq!(param(&p, "format"), Some("json"));
        assert_eq!(param(&p, "x"), None);
        assert_eq!(param(&p, "bad"), Some("%zz%4"));
    }

    #[test]
    fn content_disposition_is_rfc6266() {
        assert_eq!(
            content_disposition("請求.txt"),
            "attachment; filename=\"__.txt\"; filename*=UTF-8''%E8%AB%8B%E6%B1%82.txt"
        );
        assert_eq!(
            content_disposition("a \"b\".txt"),
            "attachment; filename=\"a _b_.txt\"; filename*=UTF-8''a%20%22b%22.txt"
        );
    }
}
