//! The MIME walk: picks the body, hands every other part to `sanitize_child`, removes
//! signatures, encrypted and too-deep parts, and writes the new message.

use std::borrow::Cow;

use mail_parser::{Encoding, Message, MessagePart, MimeHeaders, PartType};

use super::body::{is_stub, normalize_text, strip_pgp, strip_pgp_signature};
use super::notice::{Entry, Notice, Token, removal_reason};
use super::{
    build, charset, headers, write_text_body, write_text_part_headers, write_trailer_headers,
};
use crate::error::SanitizeError;
use crate::formats::html::html_to_text;
use crate::links::rewrite_links_linear;
use crate::pipeline::{Context, PartInput, PartOutcome};
use crate::report::{Action, Kind, ReportItem};
use crate::threats;
use crate::unicode::normalize_filename;

#[derive(Debug)]
/// What [`Walker::header_change`] records for one header field.
struct HeaderChange<'s> {
    name: &'s str,
    token: Token,
    ja: &'static str,
    en: &'static str,
    kind: Kind,
    action: Action,
    threat: &'static str,
    reason: &'static str,
}

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

pub(super) struct Walker<'c, 'a, 'm> {
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

/// Lower-case type and subtype (text/plain when absent).
fn ctype_of(part: &MessagePart<'_>) -> (String, String) {
    match part.content_type() {
        Some(ct) => (
            ct.ctype().to_ascii_lowercase(),
            ct.subtype().unwrap_or_default().to_ascii_lowercase(),
        ),
        None => ("text".into(), "plain".into()),
    }
}

/// The declared transfer encoding, from the field renamed before parsing (see `parse`).
fn transfer_encoding(part: &MessagePart<'_>) -> Encoding {
    let Some(h) = part.headers.iter().find(|h| {
        h.name
            .as_str()
            .eq_ignore_ascii_case(super::parse::HIDDEN_CTE)
    }) else {
        return Encoding::None;
    };
    let value = match &h.value {
        mail_parser::HeaderValue::Text(t) => t.as_ref(),
        _ => "",
    };
    let token = value
        .trim()
        .split(|c: char| c.is_whitespace() || c == ';' || c == '(')
        .next()
        .unwrap_or_default();
    if token.eq_ignore_ascii_case("base64") {
        Encoding::Base64
    } else if token.eq_ignore_ascii_case("quoted-printable") {
        Encoding::QuotedPrintable
    } else {
        Encoding::None
    }
}

fn is_attachment_disposition(part: &MessagePart<'_>) -> bool {
    part.content_disposition()
        .is_some_and(|d| d.is_attachment())
}

impl<'c, 'a, 'm> Walker<'c, 'a, 'm> {
    pub(super) fn new(cx: &'c mut Context<'a>, msg: &'m Message<'m>) -> Self {
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

    /// A change to one header field: its notice token and entry, and its report item.
    fn header_change(&mut self, c: HeaderChange<'_>) {
        self.notice.token(c.token);
        self.notice.add(Entry {
            subject_ja: format!("ヘッダー {}", c.name),
            subject_en: format!("header {}", c.name),
            ja: c.ja.into(),
            en: c.en.into(),
            removed: false,
        });
        let leaf = format!("header/{}", c.name);
        self.record(&leaf, c.kind, c.action, &[c.threat], c.reason);
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
        // mail-parser saw no transfer encodings (see `parse`): the raw body is decoded here,
        // leniently (broken padding, stray characters), by the declared encoding.
        let raw = self
            .raw
            .get(part.offset_body as usize..part.offset_end as usize)
            .unwrap_or_default();
        let bytes: Cow<'m, [u8]> = match transfer_encoding(part) {
            Encoding::Base64 => Cow::Owned(charset::base64_decode(raw)),
            Encoding::QuotedPrintable => Cow::Owned(charset::qp_decode(raw)),
            Encoding::None => Cow::Borrowed(raw),
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
        // mail-parser already decoded it with the same encoding_rs decoder we would use. Only
        // for unencoded bodies (mail-parser never sees a transfer encoding), and never for the
        // Japanese legacy charsets: ISO-2022-JP has our own decoder, and a Shift_JIS or EUC-JP
        // label is checked against the bytes (`charset::decode`).
        let unencoded = matches!(transfer_encoding(part), Encoding::None);
        let fast = unencoded
            && match (parsed, label.as_deref()) {
                (Some(t), Some(l)) if !part.is_encoding_problem => {
                    let theirs =
                        mail_parser::decoders::charsets::map::charset_decoder(l.as_bytes());
                    match charset::plan(Some(l)) {
                        // us-ascii and unknown labels: only when there was nothing to guess.
                        charset::Plan::Guess => t.is_ascii() && !t.contains('\u{1B}'),
                        charset::Plan::Iso2022Jp => false,
                        charset::Plan::Whatwg(enc)
                            if enc == encoding_rs::SHIFT_JIS || enc == encoding_rs::EUC_JP =>
                        {
                            false
                        }
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
        if d.mislabelled.is_some() {
            self.cx.warn(super::WARN_CHARSET_MISLABELLED);
        }
        Ok(d.text.into_owned())
    }

    pub(super) fn walk(&mut self, id: usize, depth: u32) -> Result<(), SanitizeError> {
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
                // Body parts count against the part limit like attachments.
                if !self.charge_own_part() {
                    return Ok(());
                }
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
            && self.charge_own_part()
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
    pub(super) fn finish(mut self) -> Vec<u8> {
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
        for name in &f.malformed {
            self.header_change(HeaderChange {
                name,
                token: Token::DelHeader,
                ja: "解析できない値のため削除",
                en: "removed: the value could not be parsed",
                kind: Kind::Mail,
                action: Action::Removed,
                threat: threats::MAIL_HEADER_DROPPED,
                reason: "a structured header field that does not parse is not copied",
            });
        }
        for (name, n) in &f.links {
            self.notice.token(Token::RepLink);
            let (ja, en) = match policy.links.mode {
                crate::policy::LinkMode::Remove => ("リンクを削除", "links removed"),
                _ => ("リンクを無効化", "links defanged"),
            };
            self.notice.add(Entry {
                subject_ja: format!("ヘッダー {name}"),
                subject_en: format!("header {name}"),
                ja: format!("{ja}（{n} 件）"),
                en: format!("{en} ({n})"),
                removed: false,
            });
            let path = self.path(&format!("header/{name}"));
            self.cx.record(ReportItem {
                path,
                kind: Kind::Text,
                action: Action::Converted,
                threats: vec![threats::LINK_REWRITTEN.to_owned()],
                reason: format!("{n} links rewritten in the {name} field"),
                detail: Some(serde_json::json!({ "count": n })),
            });
        }
        for name in &f.bidi {
            self.header_change(HeaderChange {
                name,
                token: Token::ChgHeader,
                ja: "見えない制御文字（文字の向き等）を削除",
                en: "invisible or bidi control characters removed",
                kind: Kind::Text,
                action: Action::Converted,
                threat: threats::TEXT_BIDI_CONTROL,
                reason: "invisible or bidi control characters removed",
            });
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
        let mut pgp_signature = false;
        if let Some(stripped) = strip_pgp_signature(&text) {
            text = stripped;
            pgp_signature = true;
        }
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
        if pgp_signature {
            self.notice.token(Token::DelSign);
            let (ja, en) = removal_reason(&[threats::MAIL_SIGNATURE]);
            self.notice.add(Entry {
                subject_ja: "本文中の電子署名".into(),
                subject_en: "signature in the body".into(),
                ja: ja.into(),
                en: en.into(),
                removed: false,
            });
            self.record(
                "body/signature",
                Kind::Text,
                Action::Removed,
                &[threats::MAIL_SIGNATURE],
                "inline PGP signature removed: it cannot stay valid in a rebuilt message",
            );
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
