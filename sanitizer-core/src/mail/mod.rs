//! Mail: an untrusted RFC 5322 message in, a newly built safe message out (メールテキスト化).
//!
//! The output is never an edited copy. It is written from scratch by `build`:
//! - **Headers**: only allow-listed fields, decoded and re-encoded (`headers`); trace fields
//!   (`Received`, trusted `Authentication-Results`) kept; inbound `X-Mugai-*` dropped;
//!   `MIME-Version: 1.0`, `X-Mugai-Sanitized` and `X-Mugai-Report-Id` added.
//! - **Body**: one `text/plain; charset=utf-8` part. The text/plain alternative is used unless
//!   it is empty or a stub ("HTMLメールです"); otherwise the HTML is converted to text. Nothing of
//!   the HTML survives. Links are rewritten by the link policy; bidi/zero-width controls removed.
//!   Inline PGP blocks are removed. The body is quoted-printable or base64, with CRLF lines.
//! - **Notice**: a delimited block at the top of the body, Japanese then English, from the
//!   policy's templates, listing every part that was removed or converted (`notice`). No
//!   notice when nothing changed.
//! - **Attachments** (and inline non-body parts, nested messages, calendars): each goes through
//!   [`Context::sanitize_child`] as `attachment[n]/name`; what survives is attached (base64, or
//!   7bit for a nested message we rebuilt); what is removed is listed in the notice.
//! - **Structure**: `multipart/mixed` (body first) when anything is attached, else a single
//!   `text/plain`. `multipart/signed` keeps the signed content and drops the signature
//!   (`mail.signature`); S/MIME and PGP encrypted content is removed (`mail.encrypted`).
//!
//! ## `X-Mugai-Sanitized` tokens
//! Space-separated, in the order of this table; the header is absent when nothing changed.
//! | token | meaning |
//! |---|---|
//! | `CHG_TEXT` | the HTML body was converted to text, or the HTML alternative dropped |
//! | `DEL_ATTACH` | a part was removed (attachment, encrypted part, over a limit) |
//! | `CHG_ATTACH` | an attachment was converted, rasterized or rebuilt with content removed |
//! | `REP_LINK` | links in the body or the Subject were defanged or removed |
//! | `DEL_SIGN` | a signature was removed |
//! | `DEL_HEADER` | a forged `X-Mugai-*` header, a second `From`, or a structured header that does not parse was dropped |
//! | `CHG_HEADER` | invisible or bidi controls were removed from header or body text |
//!
//! ## Report paths
//! - `body`: the text body, `kept`, or `converted_to_text` with `html.body`;
//!   `body/links` (`link.rewritten`, with a count), `body/pgp`, `body/signature`;
//! - `header/<Name>`: bidi controls, duplicate From, forged `X-Mugai-*`, a structured field
//!   dropped because it does not parse (`mail.header_dropped`), links rewritten in the Subject
//!   (`link.rewritten`, with a count);
//! - `attachment[n]/<name>`: every non-body part, numbered in document order; items inside a
//!   part continue its path (a nested message's: `attachment[2]/fwd.eml/body`);
//! - `attachment[*]`: the summary once the part limit tripped; `part[<id>]`: a subtree cut at
//!   the depth limit;
//! - `message`: unparseable (`mail.unparseable`: no header block at the start, or a binary
//!   one, see `parse::unparseable`), or CRLF mixed with bare CR/LF
//!   (`mail.bare_line_ending`).
//!
//! ## Decisions
//! - When text/plain is delivered in place of an HTML alternative, the body is recorded as
//!   `converted_to_text` (`html.body`): the recipient does not get the HTML version. The
//!   dropped HTML is not scanned, so its threats are not itemised.
//! - Further inline text parts (mailing-list footers, HTML fragments) are appended to the body
//!   after a separator line rather than attached.
//! - Attachment names are written twice: RFC 2231 `filename*` (standard) and an RFC 2047
//!   `name=` on Content-Type, which older Japanese clients read.
//! - A rebuilt nested message is attached as `7bit` `message/rfc822` (RFC 2046 forbids base64
//!   there) when it is ASCII with CRLF lines ≤ 998 octets, which our own output always is;
//!   anything else is attached base64.
//! - The body is quoted-printable when mostly ASCII, else base64; both keep `.` and `From `
//!   lines and bare CR/LF off the wire.
//!
//! ## Limits
//! Decoded part bodies are charged to the budget; the deadline is checked per part; attachments
//! are counted by `sanitize_child`, and the body's own text parts (inline text appended to the
//! body included) are charged to the same part limit; once it trips the rest are summarised as
//! one "N more parts removed" entry (`attachment[*]`, `limit.parts`). MIME nesting beyond `limits.max_depth` (counting the depth of
//! the message itself) is removed with `limit.depth`. mail-parser parses nesting iteratively;
//! what would recurse per level (transfer-encoded nested messages, dropping the result) is
//! avoided in `parse`, so 25,000 levels in any syntax neither overflow the stack nor take long
//! (tested). Multipart bodies are walked to the depth limit (at most 64 levels).
//!
//! ## Failure
//! A message is never blocked: a top-level message that cannot be parsed (no header block at
//! its start, or a binary one: `parse::unparseable`; or mail-parser cannot read it) becomes a
//! notice-only message (`mail.unparseable`), as does any error or panic (`notice_only`). The
//! notice-only message copies no raw header text; its trace fields (`Received`, trusted
//! `Authentication-Results`) are kept as in any message, reduced to printable ASCII and refolded.

mod body;
pub(crate) mod build;
mod charset;
mod headers;
pub(crate) mod jis;
mod notice;
mod parse;
#[cfg(test)]
mod tests;
mod walk;

use std::panic::{AssertUnwindSafe, catch_unwind};

use mail_parser::MessageParser;

use self::notice::{Entry, Notice, Token};
use self::walk::Walker;
use crate::error::SanitizeError;
use crate::pipeline::{Context, FormatSanitizer, Rebuilt};
use crate::report::{Action, Kind, ReportItem};
use crate::threats;

/// Report warning: a text part's declared Japanese charset did not fit its bytes (an
/// `iso-2022-jp` label on Shift_JIS, `shift_jis` on UTF-8, ...); it was decoded as what reads
/// cleanly instead. The text is delivered as UTF-8 either way.
pub const WARN_CHARSET_MISLABELLED: &str = "mail.charset_mislabelled";

/// Sanitizes nested messages (message/rfc822 parts) through the pipeline.
#[derive(Debug, Clone, Copy)]
pub struct MailSanitizer;

impl FormatSanitizer for MailSanitizer {
    fn name(&self) -> &'static str {
        "mail"
    }

    fn sanitize(&self, input: &[u8], cx: &mut Context<'_>) -> Result<Rebuilt, SanitizeError> {
        let bytes = sanitize_message(input, cx)?;
        Ok(Rebuilt::new(
            bytes,
            Action::Rebuilt,
            Kind::Mail,
            "message/rfc822",
        ))
    }
}

/// Builds the safe message for `input` (top level, or a nested message via [`MailSanitizer`]).
pub(crate) fn sanitize_message(
    input: &[u8],
    cx: &mut Context<'_>,
) -> Result<Vec<u8>, SanitizeError> {
    cx.budget().check_deadline()?;
    let structural = parse::hide_transfer_encodings(input);
    let parsed = if parse::unparseable(input) {
        None
    } else {
        MessageParser::default().parse(structural.as_ref())
    };
    let Some(msg) = parsed else {
        if cx.depth() == 0 {
            let err = SanitizeError::Malformed("no RFC 5322 header could be read".into());
            cx.record(ReportItem {
                path: "message".into(),
                kind: Kind::Mail,
                action: Action::Removed,
                threats: vec![threats::MAIL_UNPARSEABLE.to_owned()],
                reason: "the message could not be parsed; only a notice is delivered".into(),
                detail: None,
            });
            return Ok(notice_only(input, &err, cx));
        }
        return Err(SanitizeError::Malformed(
            "nested message could not be parsed".into(),
        ));
    };
    if mixed_line_endings(input) {
        let path = if cx.path().is_empty() {
            "message".to_owned()
        } else {
            format!("{}/message", cx.path())
        };
        cx.record(ReportItem {
            path,
            kind: Kind::Mail,
            action: Action::Converted,
            threats: vec![threats::MAIL_BARE_LINE_ENDING.to_owned()],
            reason: "bare CR or LF among CRLF line ends (SMTP smuggling pattern); the output has \
                     CRLF only"
                .into(),
            detail: None,
        });
    }
    let parsed = parse::Parsed::new(msg);
    let Some(msg) = parsed.get() else {
        return Err(SanitizeError::Internal("parsed message vanished".into()));
    };
    let mut w = Walker::new(cx, msg);
    w.walk(0, 0)?;
    Ok(w.finish())
}

/// CRLF line ends mixed with a bare CR or LF: how `<LF>.<LF>` and `<CR>.<CR>` smuggling
/// looks. A file with LF line ends throughout is just a Unix file and not reported.
fn mixed_line_endings(input: &[u8]) -> bool {
    let (mut crlf, mut bare) = (false, false);
    let mut i = 0usize;
    while let Some(&b) = input.get(i) {
        match b {
            b'\r' if input.get(i + 1) == Some(&b'\n') => {
                crlf = true;
                i += 1;
            }
            b'\r' | b'\n' => bare = true,
            _ => {}
        }
        if crlf && bare {
            return true;
        }
        i += 1;
    }
    false
}

/// A safe message that carries only the notice, for mail that could not be sanitized. Keeps the
/// original's allow-listed headers when they can be read safely (re-encoded from decoded or
/// parsed values, as in a normal message; trace fields as printable ASCII, refolded, as in a
/// normal message: CONTRACT.md keeps them, and they are the hop count that stops mail loops),
/// else minimal headers; never any of the original body.
pub(crate) fn notice_only(input: &[u8], err: &SanitizeError, cx: &Context<'_>) -> Vec<u8> {
    let policy = cx.policy();
    let recovered = catch_unwind(AssertUnwindSafe(|| {
        let msg = MessageParser::default().parse_headers(input)?;
        let part = msg.parts.first()?;
        let mut out = Vec::new();
        headers::write_headers(&mut out, &part.headers, msg.raw_message(), policy);
        Some(out)
    }))
    .ok()
    .flatten();
    let mut out = recovered.unwrap_or_else(|| {
        let mut v = b"MIME-Version: 1.0\r\n".to_vec();
        build::write_unstructured(
            &mut v,
            "Subject",
            "[Mugai] 無害化通知 / Sanitization notice",
        );
        v
    });
    let mut n = Notice::default();
    n.add(Entry {
        subject_ja: "メール全体".into(),
        subject_en: "the whole message".into(),
        ja: "処理できなかったため本文と添付をすべて削除".into(),
        en: format!(
            "body and attachments removed: the message could not be processed ({})",
            err.threat_id()
        ),
        removed: true,
    });
    n.token(Token::DelAttach);
    n.token(Token::ChgText);
    let body = n.render(&policy.notice, cx.report_id());
    write_trailer_headers(&mut out, &n, cx.report_id());
    write_text_part_headers(&mut out, &body);
    out.extend_from_slice(b"\r\n");
    write_text_body(&mut out, &body);
    out
}

pub(super) fn write_trailer_headers(out: &mut Vec<u8>, n: &Notice, report_id: &str) {
    if let Some(v) = n.header_value() {
        build::write_folded(out, "X-Mugai-Sanitized", &v);
    }
    let rid: String = report_id
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(200)
        .collect();
    build::write_folded(out, "X-Mugai-Report-Id", &rid);
}

/// Whether the body goes out as quoted-printable (mostly ASCII) rather than base64.
fn use_qp(text: &str) -> bool {
    let non_ascii = text.bytes().filter(|b| !b.is_ascii()).count();
    non_ascii * 8 < text.len().max(1)
}

pub(super) fn write_text_part_headers(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(b"Content-Type: text/plain; charset=utf-8\r\n");
    if use_qp(text) {
        out.extend_from_slice(b"Content-Transfer-Encoding: quoted-printable\r\n");
    } else {
        out.extend_from_slice(b"Content-Transfer-Encoding: base64\r\n");
    }
}

/// `text` uses `\n` line ends; the output has CRLF.
pub(super) fn write_text_body(out: &mut Vec<u8>, text: &str) {
    let text = text.trim_end_matches('\n');
    if use_qp(text) {
        build::qp_body(out, text);
    } else {
        let crlf = text.replace('\n', "\r\n");
        build::base64_body(out, crlf.as_bytes());
    }
}
