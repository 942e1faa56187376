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
//! | `REP_LINK` | links in the body were defanged or removed |
//! | `DEL_SIGN` | a signature was removed |
//! | `DEL_HEADER` | a forged `X-Mugai-*` header or a second `From` was dropped |
//! | `CHG_HEADER` | invisible or bidi controls were removed from header or body text |
//!
//! ## Report paths
//! `body` (the text body: `kept`, or `converted_to_text` with `html.body`), `body/links`
//! (`link.rewritten`, with a count), `body/pgp`, `header/<Name>` (bidi controls, duplicate From,
//! forged `X-Mugai-*`), `attachment[n]/<name>` (every non-body part, numbered in document order;
//! items inside a part continue its path), `attachment[*]` (the summary once the part limit
//! tripped), `part[<id>]` (a subtree cut at the depth limit), `message` (unparseable). A nested
//! message's own items continue its attachment path (`attachment[2]/fwd.eml/body`).
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
//! are counted by `sanitize_child`, and once the part limit trips the rest are summarised as one
//! "N more parts removed" entry. MIME nesting beyond `limits.max_depth` (counting the depth of
//! the message itself) is removed with `limit.depth`. mail-parser parses nesting iteratively, so
//! 5,000 levels neither overflow the stack nor take long (tested).
//!
//! ## Failure
//! A message is never blocked: a top-level message mail-parser cannot read at all becomes a
//! notice-only message (`mail.unparseable`), as does any error or panic (`notice_only`).

mod build;
mod charset;
mod headers;
mod notice;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::panic::{AssertUnwindSafe, catch_unwind};

use mail_parser::{Encoding, Message, MessageParser, MessagePart, MimeHeaders, PartType};

use self::notice::{Entry, Notice, Token, removal_reason};
use crate::error::SanitizeError;
use crate::formats::html::html_to_text;
use crate::links::rewrite_links_in_text;
use crate::pipeline::{Context, FormatSanitizer, PartInput, PartOutcome, Rebuilt};
use crate::report::{Action, Kind, ReportItem};
use crate::threats;
use crate::unicode::{clean_text, normalize_filename};

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
    let defused = defuse_nesting(input);
    let Some(msg) = MessageParser::default().parse(defused.as_ref()) else {
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
    let mut w = Walker::new(cx, &msg);
    w.walk(0, 0)?;
    Ok(w.finish())
}

/// A safe message that carries only the notice, for mail that could not be sanitized. Keeps the
/// original's allow-listed headers when they can be read safely, else minimal headers; never
/// any of the original body.
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

fn write_trailer_headers(out: &mut Vec<u8>, n: &Notice, report_id: &str) {
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

fn write_text_part_headers(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(b"Content-Type: text/plain; charset=utf-8\r\n");
    if use_qp(text) {
        out.extend_from_slice(b"Content-Transfer-Encoding: quoted-printable\r\n");
    } else {
        out.extend_from_slice(b"Content-Transfer-Encoding: base64\r\n");
    }
}

/// `text` uses `\n` line ends; the output has CRLF.
fn write_text_body(out: &mut Vec<u8>, text: &str) {
    let text = text.trim_end_matches('\n');
    if use_qp(text) {
        build::qp_body(out, text);
    } else {
        let crlf = text.replace('\n', "\r\n");
        build::base64_body(out, crlf.as_bytes());
    }
}

/// `\r\n` and lone `\r` become `\n`; bidi/zero-width and other controls are removed.
fn normalize_text(s: &str) -> (String, bool) {
    let unified: Cow<'_, str> = if s.contains('\r') {
        Cow::Owned(s.replace("\r\n", "\n").replace('\r', "\n"))
    } else {
        Cow::Borrowed(s)
    };
    clean_text(&unified)
}

/// Where [`rewrite_links_in_text`] ends a URL (it must stay in step with `links.rs`; the
/// equivalence test in `tests.rs` checks that it does).
fn ends_url(c: char) -> bool {
    c.is_whitespace() || "<>\"'「」（）()、。，".contains(c) || !c.is_ascii()
}

/// [`rewrite_links_in_text`] applied segment by segment, each segment ending just after a
/// character that ends a URL. No URL crosses such a character and none starts with one, so the
/// result is the same as for the whole text; but the rewriter re-scans (and lower-cases) the
/// rest of its input after every link, which is quadratic: a 30 KB body with 200 links cost
/// 6 ms, and a hostile 2 MB line of `<http://a` would run for minutes. Per segment it is
/// linear, and segments that cannot hold a link (no `:`, no `www.`) are copied without a call.
fn rewrite_links_linear(text: &str, mode: crate::policy::LinkMode) -> (String, usize) {
    if mode == crate::policy::LinkMode::Keep {
        return (text.to_owned(), 0);
    }
    let mut out = String::with_capacity(text.len() + text.len() / 16);
    let mut count = 0usize;
    let mut copied = 0usize;
    let mut seg_start = 0usize;
    let mut flush = |seg_start: usize, seg_end: usize, copied: &mut usize, out: &mut String| {
        let seg = text.get(seg_start..seg_end).unwrap_or_default();
        let candidate = seg.contains(':')
            || seg
                .as_bytes()
                .windows(4)
                .any(|w| w.eq_ignore_ascii_case(b"www."));
        if candidate {
            out.push_str(text.get(*copied..seg_start).unwrap_or_default());
            let (l, n) = rewrite_links_in_text(seg, mode);
            out.push_str(&l);
            count += n;
            *copied = seg_end;
        }
    };
    for (i, c) in text.char_indices() {
        if ends_url(c) {
            let end = i + c.len_utf8();
            flush(seg_start, end, &mut copied, &mut out);
            seg_start = end;
        }
    }
    flush(seg_start, text.len(), &mut copied, &mut out);
    out.push_str(text.get(copied..).unwrap_or_default());
    (out, count)
}

/// Removes inline PGP armour blocks (encrypted content cannot be inspected).
fn strip_pgp(text: &str) -> Option<String> {
    const BEGIN: &str = "-----BEGIN PGP MESSAGE-----";
    const END: &str = "-----END PGP MESSAGE-----";
    if !text.contains(BEGIN) {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(BEGIN) {
        out.push_str(rest.get(..i).unwrap_or_default());
        out.push_str("[暗号化された内容を削除しました / encrypted content removed]");
        let after = rest.get(i..).unwrap_or_default();
        rest = match after.find(END) {
            Some(j) => after.get(j + END.len()..).unwrap_or_default(),
            None => "",
        };
    }
    out.push_str(rest);
    Some(out)
}

/// Whether a text/plain alternative is empty or only says "view this in HTML".
fn is_stub(text: &str) -> bool {
    let t = text.trim();
    if t.is_empty() {
        return true;
    }
    if t.chars().count() > 200 {
        return false;
    }
    let lower = t.to_lowercase();
    lower.contains("html") || lower.contains("ブラウザ") || lower.contains("browser")
}

#[derive(Debug)]
struct Attachment {
    bytes: Vec<u8>,
    name: String,
    mime: String,
}

/// Where the body text came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodySource {
    Plain,
    /// text/plain chosen, an HTML alternative dropped.
    PlainOverHtml,
    Html,
}

struct Walker<'c, 'a, 'm> {
    cx: &'c mut Context<'a>,
    msg: &'m Message<'m>,
    raw: &'m [u8],
    max_depth: u32,
    body: Option<(String, BodySource)>,
    extra: Vec<String>,
    html_threats: Vec<&'static str>,
    links: usize,
    lossy: bool,
    bidi: bool,
    pgp: bool,
    attachments: Vec<Attachment>,
    notice: Notice,
    n: usize,
    parts_exhausted: bool,
    skipped: usize,
}

/// Lower-case type and subtype (text/plain when absent), with the private subtypes of
/// [`defuse_nesting`] mapped back to their real names.
fn ctype_of(part: &MessagePart<'_>) -> (String, String) {
    match part.content_type() {
        Some(ct) => {
            let t = ct.ctype().to_ascii_lowercase();
            let s = ct.subtype().unwrap_or_default().to_ascii_lowercase();
            let s = match (t.as_str(), s.as_str()) {
                ("message", "x-mug1") => "rfc822".to_owned(),
                ("message", "x-mug2") => "global".to_owned(),
                ("multipart", "x-mugd") => "digest".to_owned(),
                _ => s,
            };
            (t, s)
        }
        None => ("text".into(), "plain".into()),
    }
}

fn transfer_encoding(part: &MessagePart<'_>) -> Encoding {
    match part.content_transfer_encoding().map(str::trim) {
        Some(e) if e.eq_ignore_ascii_case("base64") => Encoding::Base64,
        Some(e) if e.eq_ignore_ascii_case("quoted-printable") => Encoding::QuotedPrintable,
        _ => Encoding::None,
    }
}

fn is_attachment_disposition(part: &MessagePart<'_>) -> bool {
    part.content_disposition()
        .is_some_and(|d| d.is_attachment())
}

impl<'c, 'a, 'm> Walker<'c, 'a, 'm> {
    fn new(cx: &'c mut Context<'a>, msg: &'m Message<'m>) -> Self {
        let limit = cx.policy().limits.max_depth;
        Walker {
            max_depth: limit.saturating_sub(cx.depth()).min(MAX_MIME_DEPTH),
            cx,
            msg,
            raw: msg.raw_message(),
            body: None,
            extra: Vec::new(),
            html_threats: Vec::new(),
            links: 0,
            lossy: false,
            bidi: false,
            pgp: false,
            attachments: Vec::new(),
            notice: Notice::default(),
            n: 0,
            parts_exhausted: false,
            skipped: 0,
        }
    }

    fn path(&self, leaf: &str) -> String {
        if self.cx.path().is_empty() {
            leaf.to_owned()
        } else {
            format!("{}/{}", self.cx.path(), leaf)
        }
    }

    fn record(&mut self, leaf: &str, kind: Kind, action: Action, threats: &[&str], reason: &str) {
        let path = self.path(leaf);
        self.cx.record(ReportItem {
            path,
            kind,
            action,
            threats: threats.iter().map(|t| (*t).to_owned()).collect(),
            reason: reason.to_owned(),
            detail: None,
        });
    }

    /// The transfer-decoded bytes of a part, charged to the budget.
    fn decoded_bytes(&mut self, part: &'m MessagePart<'m>) -> Result<Cow<'m, [u8]>, SanitizeError> {
        let bytes: Cow<'m, [u8]> = match &part.body {
            PartType::Binary(b) | PartType::InlineBinary(b) => Cow::Borrowed(b.as_ref()),
            _ => {
                let raw = self
                    .raw
                    .get(part.offset_body as usize..part.offset_end as usize)
                    .unwrap_or_default();
                // The declared encoding, not mail-parser's verdict: when its strict decoder
                // gave up (broken base64 padding, stray characters) it keeps the encoded text,
                // which our lenient decoders still read.
                match transfer_encoding(part) {
                    Encoding::Base64 => Cow::Owned(charset::base64_decode(raw)),
                    Encoding::QuotedPrintable => Cow::Owned(charset::qp_decode(raw)),
                    Encoding::None => Cow::Borrowed(raw),
                }
            }
        };
        self.cx.budget().charge_decoded(bytes.len() as u64)?;
        Ok(bytes)
    }

    /// The decoded text of a text part, in UTF-8.
    fn text_of(&mut self, part: &'m MessagePart<'m>) -> Result<String, SanitizeError> {
        let label = part
            .content_type()
            .and_then(|ct| ct.attribute("charset"))
            .map(str::to_owned);
        let parsed = match &part.body {
            PartType::Text(t) | PartType::Html(t) => Some(t.as_ref()),
            _ => None,
        };
        // mail-parser already decoded it with the same encoding_rs decoder we would use.
        let fast = match (parsed, label.as_deref()) {
            (Some(t), Some(l)) if !part.is_encoding_problem => {
                let theirs = mail_parser::decoders::charsets::map::charset_decoder(l.as_bytes());
                match charset::plan(Some(l)) {
                    // us-ascii and unknown labels: only when there was nothing to guess.
                    charset::Plan::Guess => t.is_ascii() && !t.contains('\u{1B}'),
                    // With replacement characters, our decoder may do better (mislabelled
                    // mail): take the raw path.
                    _ => theirs.is_some() && !t.contains('\u{FFFD}'),
                }
            }
            (Some(t), None) => !t.contains(['\u{FFFD}', '\u{1B}']),
            _ => false,
        };
        if fast && let Some(t) = parsed {
            self.cx.budget().charge_decoded(t.len() as u64)?;
            return Ok(t.to_owned());
        }
        let bytes = self.decoded_bytes(part)?;
        let d = charset::decode(&bytes, label.as_deref());
        self.lossy |= d.lossy;
        Ok(d.text.into_owned())
    }

    fn walk(&mut self, id: usize, depth: u32) -> Result<(), SanitizeError> {
        self.cx.budget().check_deadline()?;
        let msg = self.msg;
        let Some(part) = msg.parts.get(id) else {
            return Ok(());
        };
        let (ctype, subtype) = ctype_of(part);
        if depth > self.max_depth {
            if !self.charge_own_part() {
                return Ok(());
            }
            self.notice.add(Entry {
                subject_ja: format!("{ctype}/{subtype} の部品"),
                subject_en: format!("a {ctype}/{subtype} part"),
                ja: "入れ子が深すぎるため削除".into(),
                en: "removed: nested too deep".into(),
                removed: true,
            });
            self.notice.token(Token::DelAttach);
            self.record(
                &format!("part[{id}]"),
                Kind::Mail,
                Action::Removed,
                &[threats::LIMIT_DEPTH],
                "MIME parts nested deeper than the depth limit were removed",
            );
            return Ok(());
        }
        // Children always come after their parent in mail-parser's list; requiring it makes
        // the walk terminate whatever the list says.
        let children = |v: &'m [u32]| v.iter().map(|c| *c as usize).filter(move |c| *c > id);
        match (&part.body, ctype.as_str(), subtype.as_str()) {
            (_, "multipart", "encrypted")
            | (_, "application", "pkcs7-mime" | "x-pkcs7-mime" | "pgp-encrypted") => {
                self.remove_special(part, threats::MAIL_ENCRYPTED, Token::DelAttach);
            }
            (_, "application", "pkcs7-signature" | "x-pkcs7-signature" | "pgp-signature") => {
                self.remove_special(part, threats::MAIL_SIGNATURE, Token::DelSign);
            }
            (PartType::Multipart(kids), "multipart", "alternative") => {
                let kids: Vec<usize> = children(kids).collect();
                self.alternative(&kids, depth)?;
            }
            (PartType::Multipart(kids), "multipart", "signed") => {
                // The signed content is walked like any part; the signature part (whatever
                // its position) is removed by its own content type below, or, when its type is
                // one we do not know, by the protocol the container declares.
                let protocol = part
                    .content_type()
                    .and_then(|ct| ct.attribute("protocol"))
                    .map(str::to_ascii_lowercase);
                for c in children(kids) {
                    let Some(child) = msg.parts.get(c) else {
                        continue;
                    };
                    let (t, s) = ctype_of(child);
                    if protocol.as_deref() == Some(&format!("{t}/{s}")) {
                        self.remove_special(child, threats::MAIL_SIGNATURE, Token::DelSign);
                    } else {
                        self.walk(c, depth + 1)?;
                    }
                }
            }
            (PartType::Multipart(kids), _, sub) => {
                let digest = sub == "digest";
                for c in children(kids) {
                    // In a digest, a part without a Content-Type is a message (RFC 2046 5.1.5).
                    if digest
                        && let Some(child) = msg.parts.get(c)
                        && child.content_type().is_none()
                        && !matches!(child.body, PartType::Multipart(_))
                    {
                        if depth + 1 > self.max_depth {
                            self.walk(c, depth + 1)?;
                        } else {
                            self.attach_message(child)?;
                        }
                        continue;
                    }
                    self.walk(c, depth + 1)?;
                }
            }
            (_, "message", "rfc822" | "global") => {
                self.attach_message(part)?;
            }
            (PartType::Text(_) | PartType::Html(_), "text", "plain" | "html")
                if !is_attachment_disposition(part)
                    && (id == 0 || part.attachment_name().is_none()) =>
            {
                let is_html = subtype == "html";
                let text = self.text_of(part)?;
                self.take_text(text, is_html);
            }
            _ => {
                let bytes = match self.decoded_bytes(part) {
                    Ok(b) => b,
                    Err(e @ SanitizeError::Limit { .. }) => {
                        self.remove_over_limit(part, &e);
                        return Ok(());
                    }
                    Err(e) => return Err(e),
                };
                let mut declared = format!("{ctype}/{subtype}");
                if let Some(cs) = part.content_type().and_then(|c| c.attribute("charset")) {
                    let cs: String = cs
                        .chars()
                        .filter(|c| c.is_ascii_alphanumeric() || "-_.:".contains(*c))
                        .take(40)
                        .collect();
                    declared.push_str("; charset=");
                    declared.push_str(&cs);
                }
                let fallback = (ctype == "text" && subtype == "calendar").then_some("invite.ics");
                self.attach(part, &bytes, &declared, fallback);
            }
        }
        Ok(())
    }

    /// A nested message goes through `sanitize_child` (which re-parses it with its own depth).
    fn attach_message(&mut self, part: &'m MessagePart<'m>) -> Result<(), SanitizeError> {
        let bytes = match self.decoded_bytes(part) {
            Ok(b) => b,
            Err(e @ SanitizeError::Limit { .. }) => {
                self.remove_over_limit(part, &e);
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        self.attach(part, &bytes, "message/rfc822", Some("message.eml"));
        Ok(())
    }

    /// Uses a text as the body, or appends it when the body is already chosen.
    fn take_text(&mut self, text: String, is_html: bool) {
        let text = if is_html {
            let h = html_to_text(&text, self.cx.policy());
            for t in h.threats {
                if !self.html_threats.contains(&t) {
                    self.html_threats.push(t);
                }
            }
            self.links += h.links;
            h.text
        } else {
            text
        };
        match &self.body {
            None => {
                let src = if is_html {
                    BodySource::Html
                } else {
                    BodySource::Plain
                };
                self.body = Some((text, src));
            }
            Some(_) => {
                if is_html && !self.html_threats.contains(&threats::HTML_BODY) {
                    self.html_threats.push(threats::HTML_BODY);
                }
                self.extra.push(text);
            }
        }
    }

    fn alternative(&mut self, kids: &[usize], depth: u32) -> Result<(), SanitizeError> {
        let msg = self.msg;
        let is_plain = |c: usize| {
            msg.parts.get(c).is_some_and(|p| {
                ctype_of(p) == ("text".into(), "plain".into()) && !is_attachment_disposition(p)
            })
        };
        let has_html = |c: usize| {
            msg.parts.get(c).is_some_and(|p| {
                let (t, s) = ctype_of(p);
                (t == "text" && s == "html") || (t == "multipart" && s != "alternative")
            })
        };
        let plain = kids.iter().copied().find(|c| is_plain(*c));
        let html = kids.iter().copied().rev().find(|c| has_html(*c));
        let mut used_plain = None;
        if let Some(p) = plain
            && let Some(part) = msg.parts.get(p)
        {
            let text = self.text_of(part)?;
            if html.is_none() || !is_stub(&text) {
                used_plain = Some(p);
                let had_body = self.body.is_some();
                self.take_text(text, false);
                if html.is_some()
                    && !had_body
                    && let Some((_, src)) = &mut self.body
                {
                    *src = BodySource::PlainOverHtml;
                }
            }
        }
        // Other renderings of the same content (the dropped HTML with its inline images, a
        // stub, text/enriched) are not delivered; what is not a rendering (an Outlook
        // text/calendar, an odd attachment) is handled as a part of its own.
        let is_rendering = |c: usize| {
            msg.parts.get(c).is_some_and(|p| {
                let (t, s) = ctype_of(p);
                (t == "text" && s != "calendar") || t == "multipart"
            })
        };
        let chosen = used_plain.or(html);
        for c in kids.iter().copied() {
            if Some(c) == used_plain {
                continue;
            }
            if chosen.is_none() || Some(c) == chosen || !is_rendering(c) {
                self.walk(c, depth + 1)?;
            }
        }
        Ok(())
    }

    /// The part's file name, decoded (RFC 2231/2047, legacy charsets).
    fn name_of(&self, part: &MessagePart<'_>) -> Option<String> {
        headers::part_filename(part, self.raw).or_else(|| {
            part.attachment_name().map(|s| {
                if s.contains("=?") {
                    charset::decode_header(s.as_bytes())
                } else {
                    s.to_owned()
                }
            })
        })
    }

    /// Parts this module removes itself (signatures, encrypted, too deep, over a limit) count
    /// against the part limit like attachments do, so that their report items stay bounded:
    /// once it trips they are only counted in the summary.
    fn charge_own_part(&mut self) -> bool {
        if !self.parts_exhausted && self.cx.budget().charge_part().is_ok() {
            return true;
        }
        self.parts_exhausted = true;
        self.skipped += 1;
        false
    }

    fn remove_over_limit(&mut self, part: &MessagePart<'_>, e: &SanitizeError) {
        if !self.charge_own_part() {
            return;
        }
        self.n += 1;
        let name = self.name_of(part).map(|n| normalize_filename(&n).name);
        let leaf = match &name {
            Some(n) => format!("attachment[{}]/{n}", self.n),
            None => format!("attachment[{}]", self.n),
        };
        let label = name.unwrap_or_else(|| leaf.clone());
        let (ja, en) = removal_reason(&[e.threat_id()]);
        self.notice.add(Entry {
            subject_ja: label.clone(),
            subject_en: label.clone(),
            ja: ja.into(),
            en: en.into(),
            removed: true,
        });
        self.notice.token(Token::DelAttach);
        self.record(
            &leaf,
            Kind::Unknown,
            Action::Removed,
            &[e.threat_id()],
            &e.to_string(),
        );
    }

    fn remove_special(&mut self, part: &MessagePart<'_>, threat: &'static str, token: Token) {
        if !self.charge_own_part() {
            return;
        }
        self.n += 1;
        let name = self
            .name_of(part)
            .map(|n| normalize_filename(&n).name)
            .unwrap_or_else(|| {
                if threat == threats::MAIL_SIGNATURE {
                    "signature".into()
                } else {
                    "encrypted".into()
                }
            });
        let (ja, en) = removal_reason(&[threat]);
        self.notice.add(Entry {
            subject_ja: name.clone(),
            subject_en: name.clone(),
            ja: ja.into(),
            en: en.into(),
            removed: true,
        });
        self.notice.token(token);
        let reason = if threat == threats::MAIL_SIGNATURE {
            "signature removed: it cannot stay valid in a rebuilt message"
        } else {
            "encrypted content cannot be inspected"
        };
        let leaf = format!("attachment[{}]/{name}", self.n);
        self.record(&leaf, Kind::Unknown, Action::Removed, &[threat], reason);
    }

    fn attach(
        &mut self,
        part: &MessagePart<'_>,
        bytes: &[u8],
        declared: &str,
        fallback: Option<&str>,
    ) {
        if self.parts_exhausted {
            self.skipped += 1;
            return;
        }
        self.n += 1;
        let n = self.n;
        let raw_name = self.name_of(part);
        let shown = raw_name
            .as_deref()
            .or(fallback)
            .map(|s| normalize_filename(s).name);
        let segment = match &shown {
            Some(s) => format!("attachment[{n}]/{s}"),
            None => format!("attachment[{n}]"),
        };
        let label = shown.clone().unwrap_or_else(|| format!("attachment[{n}]"));
        let before = self.cx.items().len();
        let outcome = self.cx.sanitize_child(
            &segment,
            PartInput {
                bytes,
                name: raw_name.as_deref().or(fallback),
                declared_type: Some(declared),
            },
        );
        match outcome {
            PartOutcome::Kept(p) => {
                let name = p
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("attachment{n}.{}", ext_for(&p.mime)));
                if p.action.changes_meaning() || !p.threats.is_empty() {
                    let (ja, en) = match p.action {
                        Action::ConvertedToText => ("テキストに変換", "converted to text"),
                        Action::Rasterized => ("画像に変換（無害化）", "rasterized"),
                        Action::Converted => ("形式を変換", "converted"),
                        _ => ("危険な要素を除去", "dangerous content removed"),
                    };
                    let (ja, en) = if name != label {
                        (format!("{ja}（{name}）"), format!("{en} ({name})"))
                    } else {
                        (ja.to_owned(), en.to_owned())
                    };
                    self.notice.add(Entry {
                        subject_ja: label.clone(),
                        subject_en: label.clone(),
                        ja,
                        en,
                        removed: false,
                    });
                    self.notice.token(Token::ChgAttach);
                }
                // A nested message carries its own notice; say here that it has one.
                let inner_changed = p.kind == Kind::Mail
                    && self
                        .cx
                        .items()
                        .get(before..)
                        .unwrap_or_default()
                        .iter()
                        .any(|i| !i.threats.is_empty() || i.action.changes_meaning());
                if inner_changed {
                    self.notice.add(Entry {
                        subject_ja: label.clone(),
                        subject_en: label.clone(),
                        ja: "添付メールの内容を無害化（詳細は添付メール内の通知）".into(),
                        en: "attached message sanitized (see the notice inside it)".into(),
                        removed: false,
                    });
                    self.notice.token(Token::ChgAttach);
                }
                // What the part's own sanitizer removed inside it (archive members, ...).
                let inner: Vec<(String, Vec<String>)> = self
                    .cx
                    .items()
                    .get(before..)
                    .unwrap_or_default()
                    .iter()
                    .filter(|i| i.action == Action::Removed)
                    .map(|i| (i.path.clone(), i.threats.clone()))
                    .collect();
                for (path, ts) in inner {
                    let ids: Vec<&str> = ts.iter().map(String::as_str).collect();
                    let (ja, en) = removal_reason(&ids);
                    self.notice.add(Entry {
                        subject_ja: path.clone(),
                        subject_en: path,
                        ja: ja.into(),
                        en: en.into(),
                        removed: true,
                    });
                    self.notice.token(Token::DelAttach);
                }
                self.attachments.push(Attachment {
                    bytes: p.bytes.into_vec(),
                    name,
                    mime: p.mime,
                });
            }
            PartOutcome::Removed(r) => {
                let (ja, en) = removal_reason(&r.threats);
                self.notice.add(Entry {
                    subject_ja: label.clone(),
                    subject_en: label,
                    ja: ja.into(),
                    en: en.into(),
                    removed: true,
                });
                self.notice.token(Token::DelAttach);
                if r.threats.contains(&threats::LIMIT_PARTS) {
                    self.parts_exhausted = true;
                }
            }
        }
    }

    /// Writes the new message.
    fn finish(mut self) -> Vec<u8> {
        let policy = self.cx.policy();
        let mut head = Vec::with_capacity(2048);
        let root_headers = self
            .msg
            .parts
            .first()
            .map(|p| p.headers.as_slice())
            .unwrap_or_default();
        let f = headers::write_headers(&mut head, root_headers, self.raw, policy);

        if self.skipped > 0 {
            let msg = format!("{} more parts removed after the part limit", self.skipped);
            self.record(
                "attachment[*]",
                Kind::Unknown,
                Action::Removed,
                &[threats::LIMIT_PARTS],
                &msg,
            );
            self.notice.add(Entry {
                subject_ja: format!("残り {} 個の部品", self.skipped),
                subject_en: format!("{} more parts", self.skipped),
                ja: "部品の数が上限を超えたため削除".into(),
                en: "removed: too many parts".into(),
                removed: true,
            });
            self.notice.token(Token::DelAttach);
        }

        // Header findings.
        for name in &f.forged {
            self.notice.add(Entry {
                subject_ja: format!("ヘッダー {name}"),
                subject_en: format!("header {name}"),
                ja: "偽装された判定ヘッダーを削除".into(),
                en: "forged verdict header removed".into(),
                removed: false,
            });
        }
        if !f.forged.is_empty() {
            self.notice.token(Token::DelHeader);
            let leaf = "header/X-Mugai";
            self.record(
                leaf,
                Kind::Mail,
                Action::Removed,
                &[threats::MAIL_FORGED_HEADER],
                "inbound X-Mugai-* headers are never trusted",
            );
        }
        if f.duplicate_from {
            self.notice.token(Token::DelHeader);
            self.notice.add(Entry {
                subject_ja: "From ヘッダー".into(),
                subject_en: "From header".into(),
                ja: "重複した差出人を削除（最初のものを採用）".into(),
                en: "duplicate From removed (the first one is kept)".into(),
                removed: false,
            });
            self.record(
                "header/From",
                Kind::Mail,
                Action::Removed,
                &[threats::MAIL_DUPLICATE_FROM],
                "the message had more than one From header; the first is kept",
            );
        }
        for name in &f.bidi {
            self.notice.token(Token::ChgHeader);
            self.notice.add(Entry {
                subject_ja: format!("ヘッダー {name}"),
                subject_en: format!("header {name}"),
                ja: "見えない制御文字（文字の向き等）を削除".into(),
                en: "invisible or bidi control characters removed".into(),
                removed: false,
            });
            let leaf = format!("header/{name}");
            self.record(
                &leaf,
                Kind::Text,
                Action::Converted,
                &[threats::TEXT_BIDI_CONTROL],
                "invisible or bidi control characters removed",
            );
        }

        let text = self.body_text();
        let notice = self.notice.render(&policy.notice, self.cx.report_id());
        let mut full = String::with_capacity(notice.len() + text.len() + 2);
        full.push_str(&notice);
        full.push_str(&text);

        let mut out = head;
        write_trailer_headers(&mut out, &self.notice, self.cx.report_id());
        let rid: String = self
            .cx
            .report_id()
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(32)
            .collect();
        if self.attachments.is_empty() {
            write_text_part_headers(&mut out, &full);
            out.extend_from_slice(b"\r\n");
            write_text_body(&mut out, &full);
            return out;
        }
        let boundary = format!("=_mugai_{}_{rid}", self.cx.depth());
        out.extend_from_slice(
            format!("Content-Type: multipart/mixed;\r\n boundary=\"{boundary}\"\r\n\r\n")
                .as_bytes(),
        );
        out.extend_from_slice(b"This is a multi-part message in MIME format.\r\n");
        out.extend_from_slice(format!("\r\n--{boundary}\r\n").as_bytes());
        write_text_part_headers(&mut out, &full);
        out.extend_from_slice(b"\r\n");
        write_text_body(&mut out, &full);
        for a in &self.attachments {
            out.extend_from_slice(format!("\r\n--{boundary}\r\n").as_bytes());
            write_attachment(&mut out, a, &boundary);
        }
        out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        out
    }

    /// The body text (without the notice), with the report items and notice entries for what
    /// was done to it.
    fn body_text(&mut self) -> String {
        let (mut text, src) = match self.body.take() {
            Some((t, s)) => (t, Some(s)),
            None => (String::new(), None),
        };
        for e in std::mem::take(&mut self.extra) {
            text.push_str("\n\n――――――――――――――――――――\n");
            text.push_str(&e);
        }
        let (mut text, bidi) = normalize_text(&text);
        self.bidi |= bidi;
        if let Some(stripped) = strip_pgp(&text) {
            text = stripped;
            self.pgp = true;
        }
        if matches!(src, Some(BodySource::Plain | BodySource::PlainOverHtml)) {
            let (t, n) = rewrite_links_linear(&text, self.cx.policy().links.mode);
            text = t;
            self.links += n;
        }
        let mut body_threats: Vec<&str> = Vec::new();
        let (kind, action, reason) = match src {
            Some(BodySource::Html) => {
                self.notice.add(Entry {
                    subject_ja: "本文".into(),
                    subject_en: "body".into(),
                    ja: "HTMLをテキストに変換".into(),
                    en: "HTML converted to plain text".into(),
                    removed: false,
                });
                body_threats.push(threats::HTML_BODY);
                (
                    Kind::Html,
                    Action::ConvertedToText,
                    "HTML body converted to plain text",
                )
            }
            Some(BodySource::PlainOverHtml) => {
                self.notice.add(Entry {
                    subject_ja: "本文".into(),
                    subject_en: "body".into(),
                    ja: "HTML版を削除し、テキスト版を配信".into(),
                    en: "HTML version dropped; the plain-text version is delivered".into(),
                    removed: false,
                });
                body_threats.push(threats::HTML_BODY);
                (
                    Kind::Text,
                    Action::ConvertedToText,
                    "text/plain alternative delivered; the HTML alternative was dropped",
                )
            }
            _ => (Kind::Text, Action::Kept, "plain text body kept"),
        };
        // HTML converted anywhere (the body, or further inline HTML parts).
        for t in &self.html_threats {
            if !body_threats.contains(t) {
                body_threats.push(t);
            }
        }
        if body_threats.contains(&threats::HTML_BODY) {
            self.notice.token(Token::ChgText);
        }
        if self.bidi {
            body_threats.push(threats::TEXT_BIDI_CONTROL);
            self.notice.token(Token::ChgHeader);
            self.notice.add(Entry {
                subject_ja: "本文".into(),
                subject_en: "body".into(),
                ja: "見えない制御文字（文字の向き等）を削除".into(),
                en: "invisible or bidi control characters removed".into(),
                removed: false,
            });
        }
        if self.lossy {
            body_threats.push(threats::MAIL_CHARSET);
        }
        if src.is_some() {
            self.record("body", kind, action, &body_threats, reason);
        }
        if self.pgp {
            self.notice.token(Token::DelAttach);
            self.notice.add(Entry {
                subject_ja: "本文中の暗号化ブロック".into(),
                subject_en: "encrypted block in the body".into(),
                ja: "暗号化されていて検査できないため削除".into(),
                en: "removed: encrypted, cannot be inspected".into(),
                removed: true,
            });
            self.record(
                "body/pgp",
                Kind::Text,
                Action::Removed,
                &[threats::MAIL_ENCRYPTED],
                "inline PGP message removed: encrypted content cannot be inspected",
            );
        }
        if self.links > 0 {
            self.notice.token(Token::RepLink);
            let mode = self.cx.policy().links.mode;
            let (ja, en) = match mode {
                crate::policy::LinkMode::Remove => ("リンクを削除", "links removed"),
                _ => ("リンクを無効化", "links defanged"),
            };
            self.notice.add(Entry {
                subject_ja: "本文".into(),
                subject_en: "body".into(),
                ja: format!("{ja}（{} 件）", self.links),
                en: format!("{en} ({})", self.links),
                removed: false,
            });
            let path = self.path("body/links");
            self.cx.record(ReportItem {
                path,
                kind: Kind::Text,
                action: Action::Converted,
                threats: vec![threats::LINK_REWRITTEN.to_owned()],
                reason: format!("{} links rewritten", self.links),
                detail: Some(serde_json::json!({ "count": self.links })),
            });
        }
        text
    }
}

/// The walk recurses once per multipart level; whatever the policy's depth limit says, it
/// never goes deeper than this (the stack stays small).
const MAX_MIME_DEPTH: u32 = 64;

/// Content types that make mail-parser parse a nested message, and the same-length private
/// subtypes they are renamed to before parsing.
const NESTING_TYPES: [(&[u8], &[u8]); 3] = [
    (b"message/rfc822", b"message/x-mug1"),
    (b"message/global", b"message/x-mug2"),
    (b"multipart/digest", b"multipart/x-mugd"),
];

/// mail-parser builds nested messages into a recursive structure whose `drop` and `into_owned`
/// recurse once per level: a message nested 20,000 deep (1.4 MB) overflows the stack, and a
/// base64-encoded one does so inside the parser. So mail-parser never sees a nested message:
/// on `Content-Type` lines (and folded continuations) the nesting types are renamed to private
/// subtypes of the same length, which it keeps as opaque parts; the walk treats those as
/// messages and hands them to `sanitize_child`, which re-parses each one level at a time under
/// the depth limit. Bodies are untouched (base64 and quoted-printable lines never start with
/// `Content-Type:` or whitespace).
fn defuse_nesting(input: &[u8]) -> Cow<'_, [u8]> {
    let mut out: Option<Vec<u8>> = None;
    let mut start = 0usize;
    let mut prev_was_ct = false;
    while start < input.len() {
        let end = input
            .get(start..)
            .and_then(|r| r.iter().position(|b| *b == b'\n'))
            .map_or(input.len(), |i| start + i + 1);
        let line = input.get(start..end).unwrap_or_default();
        let is_ct = line.len() >= 13
            && line
                .get(..13)
                .is_some_and(|h| h.eq_ignore_ascii_case(b"content-type:"));
        let continuation = prev_was_ct && matches!(line.first(), Some(b' ' | b'\t'));
        if is_ct || continuation {
            for (from, to) in NESTING_TYPES {
                let mut i = 0usize;
                while let Some(w) = line.get(i..i + from.len()) {
                    if w.eq_ignore_ascii_case(from) {
                        let buf = out.get_or_insert_with(|| input.to_vec());
                        if let Some(dst) = buf.get_mut(start + i..start + i + to.len()) {
                            dst.copy_from_slice(to);
                        }
                        i += from.len();
                    } else {
                        i += 1;
                    }
                }
            }
        }
        prev_was_ct = is_ct || continuation;
        start = end;
    }
    match out {
        Some(v) => Cow::Owned(v),
        None => Cow::Borrowed(input),
    }
}

/// A file extension for a content type (for parts that had no name).
fn ext_for(mime: &str) -> &'static str {
    match crate::sniff::mime_base(mime).as_str() {
        "text/plain" => "txt",
        "text/calendar" => "ics",
        "text/csv" => "csv",
        "message/rfc822" => "eml",
        "application/pdf" => "pdf",
        "image/png" => "png",
        "image/jpeg" => "jpg",
        "image/gif" => "gif",
        "application/zip" => "zip",
        _ => "bin",
    }
}

/// Only `type/subtype` and a charset survive from a sanitizer's content type, as tokens.
fn safe_mime(mime: &str) -> String {
    let base = crate::sniff::mime_base(mime);
    let ok = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    match base.split_once('/') {
        Some((t, s)) if ok(t) && ok(s) => base,
        _ => "application/octet-stream".into(),
    }
}

/// Whether a rebuilt nested message can go in as 7bit: ASCII, CRLF only, lines ≤ 998, and no
/// line that could be read as our boundary.
fn embeddable_7bit(bytes: &[u8], boundary: &str) -> bool {
    if !bytes.is_ascii() {
        return false;
    }
    let mut prev = 0u8;
    let mut col = 0usize;
    for &b in bytes {
        match b {
            b'\n' if prev != b'\r' => return false,
            b'\n' => col = 0,
            b'\r' => {}
            0 => return false,
            _ => {
                if prev == b'\r' {
                    return false;
                }
                col += 1;
                if col > 998 {
                    return false;
                }
            }
        }
        prev = b;
    }
    let marker = format!("\n--{boundary}");
    !bytes.windows(marker.len()).any(|w| w == marker.as_bytes()) && prev == b'\n'
}

fn write_attachment(out: &mut Vec<u8>, a: &Attachment, boundary: &str) {
    let mime = safe_mime(&a.mime);
    let name = build::one_line(&a.name);
    let mut ct_params = vec![build::rfc2047_name_param(&name)];
    if mime == "text/plain" || mime == "text/calendar" || mime == "text/csv" {
        ct_params.insert(0, "charset=utf-8".into());
    }
    build::write_params(out, "Content-Type", &mime, &ct_params);
    build::write_params(
        out,
        "Content-Disposition",
        "attachment",
        &build::rfc2231_params("filename", &name),
    );
    if mime == "message/rfc822" && embeddable_7bit(&a.bytes, boundary) {
        out.extend_from_slice(b"Content-Transfer-Encoding: 7bit\r\n\r\n");
        out.extend_from_slice(&a.bytes);
    } else {
        out.extend_from_slice(b"Content-Transfer-Encoding: base64\r\n\r\n");
        build::base64_body(out, &a.bytes);
    }
}
