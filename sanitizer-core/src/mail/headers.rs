//! Header fields of the output: only allow-listed fields, decoded and re-encoded.
//!
//! - Copied (first occurrence only): From, To, Cc, Reply-To, Subject, Date, Message-ID,
//!   In-Reply-To, References, plus `policy.mail.extra_headers` (never a MIME or `X-Mugai-*`
//!   field). A second From is dropped and reported.
//! - Trace: `Received` kept (unfolded, controls removed, refolded) when
//!   `policy.mail.keep_received`; `Authentication-Results` only when its authserv-id equals
//!   `policy.mail.trusted_authserv_id`.
//! - Inbound `X-Mugai-*` fields are always dropped (a sender must not forge our verdict).
//! - Text (Subject, display names) has bidi and zero-width controls removed; links in the
//!   Subject and extra free-text fields follow the link policy like links in the body.
//! - Structured fields are never copied as raw text: `Date` is written from the parsed date
//!   (RFC 5322 format), `Message-ID`/`In-Reply-To`/`References` as `<id>` from the parsed ids
//!   with only msg-id characters. A field that does not parse is dropped and reported
//!   ([`HeaderFindings::malformed`]); free text (Subject, extra headers) is decoded and
//!   re-encoded.

use std::borrow::Cow;

use mail_parser::{Addr, Address, Header, HeaderValue, MessageParser};

use super::build::{self, write_folded, write_unstructured};
use super::charset;
use crate::links::rewrite_links_linear;
use crate::policy::Policy;
use crate::unicode::strip_invisible;

/// Fields copied besides trace fields, in output order.
const ALLOWED: [&str; 9] = [
    "Date",
    "From",
    "To",
    "Cc",
    "Reply-To",
    "Subject",
    "Message-ID",
    "In-Reply-To",
    "References",
];

/// Fields `extra_headers` can never add: we write them ourselves or they define structure.
fn never_extra(lower: &str) -> bool {
    lower.starts_with("content-")
        || lower.starts_with("x-mugai-")
        || matches!(
            lower,
            "mime-version" | "received" | "authentication-results" | "bcc"
        )
        || ALLOWED.iter().any(|a| a.eq_ignore_ascii_case(lower))
}

/// What the header pass found, for the report and the notice.
#[derive(Debug, Default)]
pub(crate) struct HeaderFindings {
    /// Names of fields whose text had bidi/zero-width controls removed.
    pub bidi: Vec<String>,
    /// Names of forged `X-Mugai-*` fields dropped.
    pub forged: Vec<String>,
    /// A second `From` field was dropped.
    pub duplicate_from: bool,
    /// Number of untrusted `Authentication-Results` dropped.
    pub auth_dropped: usize,
    /// Decoded Subject (for the notice-only message and tests).
    pub subject: Option<String>,
    /// Names of structured fields (Date, Message-ID, ...) dropped because they did not parse.
    pub malformed: Vec<String>,
    /// Free-text fields (Subject, extra headers) whose links were rewritten, with the count.
    pub links: Vec<(String, usize)>,
}

fn raw_value<'a>(raw: &'a [u8], h: &Header<'_>) -> &'a [u8] {
    raw.get(h.offset_start as usize..h.offset_end as usize)
        .unwrap_or_default()
}

/// Writes the copied header fields of the message whose top-level header list is `headers`
/// (parsed from `raw`).
pub(crate) fn write_headers(
    out: &mut Vec<u8>,
    headers: &[Header<'_>],
    raw: &[u8],
    policy: &Policy,
) -> HeaderFindings {
    let mut f = HeaderFindings::default();
    // Trace fields first, in their original order (newest on top). They are the one kind of
    // field written from its raw text, and only as printable ASCII on one line, refolded
    // (`ascii_trace`); the notice-only message keeps them too (RFC 5321 forbids deleting
    // them, and their count is the loop detector's hop count).
    for h in headers {
        let name = h.name.as_str();
        if name.eq_ignore_ascii_case("received") && policy.mail.keep_received {
            let v = ascii_trace(raw_value(raw, h));
            if !v.is_empty() {
                write_folded(out, "Received", &v);
            }
        } else if name.eq_ignore_ascii_case("authentication-results") {
            let v = ascii_trace(raw_value(raw, h));
            let trusted = policy
                .mail
                .trusted_authserv_id
                .as_deref()
                .is_some_and(|id| {
                    authserv_id(&v).is_some_and(|got| got.eq_ignore_ascii_case(id.trim()))
                });
            if trusted {
                write_folded(out, "Authentication-Results", &v);
            } else {
                f.auth_dropped += 1;
            }
        } else if name.len() >= 8
            && name
                .get(..8)
                .is_some_and(|p| p.eq_ignore_ascii_case("x-mugai-"))
        {
            f.forged.push(clean_name(name));
        }
    }
    out.extend_from_slice(b"MIME-Version: 1.0\r\n");
    for want in ALLOWED {
        let mut seen = headers
            .iter()
            .filter(|h| h.name.as_str().eq_ignore_ascii_case(want));
        let Some(h) = seen.next() else {
            continue;
        };
        if want == "From" && seen.next().is_some() {
            f.duplicate_from = true;
        }
        write_one(out, want, h, raw, policy, &mut f);
    }
    for extra in &policy.mail.extra_headers {
        let lower = extra.trim().to_ascii_lowercase();
        if lower.is_empty()
            || never_extra(&lower)
            || !lower.bytes().all(|b| b.is_ascii_graphic() && b != b':')
        {
            continue;
        }
        if let Some(h) = headers
            .iter()
            .find(|h| h.name.as_str().eq_ignore_ascii_case(&lower))
        {
            let name = clean_name(h.name.as_str());
            let text = charset::decode_header(raw_value(raw, h));
            let text = strip_reporting(&name, &text, &mut f);
            let text = rewrite_links(&name, &text, policy, &mut f);
            write_unstructured(out, &name, &text);
        }
    }
    f
}

fn clean_name(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_graphic() && *c != ':')
        .take(76)
        .collect()
}

fn strip_reporting(name: &str, text: &str, f: &mut HeaderFindings) -> String {
    let (clean, found) = strip_invisible(text);
    if found && !f.bidi.iter().any(|n| n == name) {
        f.bidi.push(name.to_owned());
    }
    build::one_line(&clean)
}

/// Links in a free-text field follow the link policy, as links in the body do: a Subject is
/// shown as text, and some clients make its URLs clickable.
fn rewrite_links(name: &str, text: &str, policy: &Policy, f: &mut HeaderFindings) -> String {
    let (text, n) = rewrite_links_linear(text, policy.links.mode);
    if n > 0 {
        f.links.push((name.to_owned(), n));
    }
    text
}

fn write_one(
    out: &mut Vec<u8>,
    name: &str,
    h: &Header<'_>,
    raw: &[u8],
    policy: &Policy,
    f: &mut HeaderFindings,
) {
    let rawv = raw_value(raw, h);
    match name {
        "Subject" => {
            let text = charset::decode_header(rawv);
            let text = strip_reporting(name, &text, f);
            let text = rewrite_links(name, &text, policy, f);
            write_unstructured(out, name, &text);
            f.subject = Some(text);
        }
        "Date" => {
            if let HeaderValue::DateTime(d) = &h.value
                && d.is_valid()
            {
                write_folded(out, name, &d.to_rfc822());
            } else {
                // Never the raw text: a garbled date (an unmatched `<`, stray bytes) can make
                // a reader misparse the fields after it.
                f.malformed.push(name.to_owned());
            }
        }
        "From" | "To" | "Cc" | "Reply-To" => {
            let reparsed;
            let legacy = (!rawv.is_ascii() && std::str::from_utf8(rawv).is_err())
                || rawv.contains(&0x1B)
                || rawv.windows(2).any(|w| w == b"=?");
            let value = if legacy {
                // Raw text in a legacy charset (8-bit Shift_JIS, or unencoded ISO-2022-JP
                // escapes from old clients), or encoded words (which mail-parser decodes one
                // by one, so a character split across two words breaks, and not at all inside
                // quotes): decode it first, then parse the addresses from UTF-8 so display
                // names do not turn into U+FFFD or escape garbage.
                reparsed = reparse_address(name, rawv);
                reparsed.as_ref()
            } else {
                match &h.value {
                    HeaderValue::Address(a) => Some(a),
                    _ => None,
                }
            };
            if let Some(a) = value {
                let v = format_address(a, name, f);
                if !v.is_empty() {
                    write_folded(out, name, &v);
                }
            }
        }
        _ => {
            // Message-ID, In-Reply-To, References.
            let ids: Vec<&str> = match &h.value {
                HeaderValue::Text(t) => vec![t.as_ref()],
                HeaderValue::TextList(l) => l.iter().map(|c| c.as_ref()).collect(),
                _ => Vec::new(),
            };
            let ids: Vec<String> = ids
                .into_iter()
                .filter(|id| is_msg_id(id))
                .take(if name == "References" { 100 } else { 1 })
                .map(|id| format!("<{id}>"))
                .collect();
            if ids.is_empty() {
                if !rawv.iter().all(u8::is_ascii_whitespace) {
                    f.malformed.push(name.to_owned());
                }
            } else {
                write_folded(out, name, &ids.join(" "));
            }
        }
    }
}

/// The inside of a msg-id (RFC 5322 3.6.4, without the angle brackets): atext, `.`, `@`, and
/// the brackets of a no-fold-literal; nothing that could end the id or start a comment.
fn is_msg_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() < 900
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~.@[]".contains(&b))
}

fn reparse_address(name: &str, rawv: &[u8]) -> Option<Address<'static>> {
    let unfolded: Vec<u8> = rawv
        .iter()
        .copied()
        .filter(|b| *b != b'\r' && *b != b'\n')
        .collect();
    let text = charset::guess(&unfolded).text.into_owned();
    let text = decode_address_words(&text);
    let fake = format!("{name}:{text}\r\n\r\n");
    let msg = MessageParser::default().parse_headers(fake.as_bytes())?;
    let parsed = msg.parts.first()?.headers.first()?;
    match &parsed.value {
        HeaderValue::Address(a) => Some(owned_address(a)),
        _ => None,
    }
}

/// An address list with its RFC 2047 words decoded in place, still parseable: the words of a
/// quoted string (`"=?ISO-2022-JP?B?...?=" <a@example.jp>`, which RFC 2047 forbids and every
/// Japanese client decodes) are decoded inside the quotes, a phrase that holds encoded words
/// becomes a quoted string. Angle addresses and comments are copied unchanged.
fn decode_address_words(text: &str) -> String {
    if !text.contains("=?") {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut phrase = String::new();
    let mut chars = text.chars().peekable();
    // Outside quotes, angle brackets and comments, text collects in `phrase` until a special.
    let flush_phrase = |phrase: &mut String, out: &mut String| {
        if phrase.contains("=?") {
            let lead = phrase.len() - phrase.trim_start().len();
            let trail = phrase.len() - phrase.trim_end().len();
            out.push_str(phrase.get(..lead).unwrap_or_default());
            let inner = phrase.trim();
            let decoded = charset::decode_header(inner.as_bytes());
            out.push('"');
            out.push_str(&quote_escape(&decoded));
            out.push('"');
            out.push_str(phrase.get(phrase.len() - trail..).unwrap_or_default());
        } else {
            out.push_str(phrase);
        }
        phrase.clear();
    };
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                flush_phrase(&mut phrase, &mut out);
                let mut inner = String::new();
                while let Some(q) = chars.next() {
                    match q {
                        '\\' => {
                            if let Some(e) = chars.next() {
                                inner.push(e);
                            }
                        }
                        '"' => break,
                        _ => inner.push(q),
                    }
                }
                let inner = if inner.contains("=?") {
                    charset::decode_header(inner.as_bytes())
                } else {
                    inner
                };
                out.push('"');
                out.push_str(&quote_escape(&inner));
                out.push('"');
            }
            '<' | '(' => {
                flush_phrase(&mut phrase, &mut out);
                let close = if c == '<' { '>' } else { ')' };
                out.push(c);
                for q in chars.by_ref() {
                    out.push(q);
                    if q == close {
                        break;
                    }
                }
            }
            ',' | ';' | ':' | '@' | '>' | ')' | '[' | ']' | '\\' => {
                flush_phrase(&mut phrase, &mut out);
                out.push(c);
            }
            _ => phrase.push(c),
        }
    }
    flush_phrase(&mut phrase, &mut out);
    out
}

/// The inside of a quoted string: `\` and `"` escaped, line breaks and other controls gone.
fn quote_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn owned_address(a: &Address<'_>) -> Address<'static> {
    let own = |x: &Addr<'_>| Addr {
        name: x.name.as_ref().map(|n| Cow::Owned(n.to_string())),
        address: x.address.as_ref().map(|n| Cow::Owned(n.to_string())),
    };
    match a {
        Address::List(l) => Address::List(l.iter().map(own).collect()),
        Address::Group(g) => Address::Group(
            g.iter()
                .map(|g| mail_parser::Group {
                    name: g.name.as_ref().map(|n| Cow::Owned(n.to_string())),
                    addresses: g.addresses.iter().map(own).collect(),
                })
                .collect(),
        ),
    }
}

/// A display name as mail-parser decoded it, with leftover encoded words decoded by our own
/// decoder (charsets mail-parser does not know) and invisible controls removed.
fn display_name(raw: &str, header: &str, f: &mut HeaderFindings) -> String {
    let decoded = if raw.contains("=?") {
        charset::decode_header(raw.as_bytes())
    } else {
        raw.to_owned()
    };
    strip_reporting(header, &decoded, f)
}

/// A syntactically safe addr-spec, or `None`.
fn safe_addr(a: &str) -> Option<&str> {
    let a = a.trim();
    (!a.is_empty()
        && a.len() <= 254
        && a.bytes()
            .all(|b| b.is_ascii_graphic() && !b"<>()[]\\,;:\"".contains(&b)))
    .then_some(a)
}

fn format_addr(x: &Addr<'_>, header: &str, f: &mut HeaderFindings) -> Option<String> {
    let name = x
        .name
        .as_deref()
        .map(|n| display_name(n, header, f))
        .unwrap_or_default();
    let addr = x.address.as_deref().unwrap_or_default();
    match safe_addr(addr) {
        Some(a) if name.is_empty() => Some(a.to_owned()),
        Some(a) => Some(format!("{} <{a}>", build::phrase(&name))),
        None => {
            // Not a deliverable addr-spec (internationalised, garbled): keep it readable as an
            // empty group whose name is the text, which is valid RFC 5322 and cannot be replied
            // to by accident.
            let text = build::one_line(&format!("{name} {addr}"));
            let text = strip_reporting(header, &text, f);
            (!text.is_empty()).then(|| format!("{}:;", build::phrase(&text)))
        }
    }
}

fn format_address(a: &Address<'_>, header: &str, f: &mut HeaderFindings) -> String {
    let mut parts: Vec<String> = Vec::new();
    match a {
        Address::List(list) => {
            for x in list.iter().take(1000) {
                if let Some(s) = format_addr(x, header, f) {
                    parts.push(s);
                }
            }
        }
        Address::Group(groups) => {
            for g in groups.iter().take(100) {
                let members: Vec<String> = g
                    .addresses
                    .iter()
                    .take(1000)
                    .filter_map(|x| format_addr(x, header, f))
                    .collect();
                match &g.name {
                    Some(n) => {
                        let n = display_name(n, header, f);
                        let label = if n.is_empty() {
                            "undisclosed-recipients".to_owned()
                        } else {
                            build::phrase(&n)
                        };
                        parts.push(format!("{label}: {};", members.join(", ")));
                    }
                    None => parts.extend(members),
                }
            }
        }
    }
    parts.join(", ")
}

/// A trace field value as printable ASCII on one line (`Received`, `Authentication-Results`,
/// an unparseable `Date`): controls and non-ASCII become spaces, whitespace collapsed.
pub(crate) fn ascii_trace(raw: &[u8]) -> String {
    let mut s = String::with_capacity(raw.len());
    let mut space = false;
    for &b in raw {
        if b.is_ascii_graphic() {
            if space && !s.is_empty() {
                s.push(' ');
            }
            space = false;
            s.push(char::from(b));
        } else {
            space = true;
        }
    }
    s
}

/// The authserv-id of an `Authentication-Results` value: the first token before `;`, with a
/// version number after it allowed (RFC 8601 §2.2), comments removed.
fn authserv_id(v: &str) -> Option<&str> {
    let head = v.split(';').next()?.trim();
    let head = head.split('(').next()?.trim();
    let id = head.split_whitespace().next()?;
    (!id.is_empty()).then_some(id)
}

/// The file name of a part, read from the raw `Content-Disposition` `filename` or `Content-Type`
/// `name` parameter: RFC 2231 continuations are joined *before* percent- and charset-decoding
/// (a character split across segments survives), any charset label we know is honoured
/// (`cp932`), RFC 2047 words and raw 8-bit names are decoded too.
pub(crate) fn part_filename(part: &mail_parser::MessagePart<'_>, raw: &[u8]) -> Option<String> {
    let find = |header: &str, param: &str| {
        part.headers
            .iter()
            .filter(|h| h.name.as_str().eq_ignore_ascii_case(header))
            .find_map(|h| param_from_raw(raw_value(raw, h), param))
    };
    find("content-disposition", "filename")
        .or_else(|| find("content-type", "name"))
        .filter(|n| !n.trim().is_empty())
}

/// Splits a parameter list at `;` outside quoted strings.
fn split_params(v: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0usize;
    let mut quoted = false;
    let mut escaped = false;
    for (i, &b) in v.iter().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match b {
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b';' if !quoted => {
                out.push(v.get(start..i).unwrap_or_default());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(v.get(start..).unwrap_or_default());
    out
}

fn trim_bytes(v: &[u8]) -> &[u8] {
    let start = v.iter().take_while(|b| b.is_ascii_whitespace()).count();
    let rest = v.get(start..).unwrap_or_default();
    let end = rest.len()
        - rest
            .iter()
            .rev()
            .take_while(|b| b.is_ascii_whitespace())
            .count();
    rest.get(..end).unwrap_or_default()
}

fn unquote(v: &[u8]) -> Vec<u8> {
    let v = trim_bytes(v);
    let Some(inner) = v
        .strip_prefix(b"\"")
        .map(|r| r.strip_suffix(b"\"").unwrap_or(r))
    else {
        return v.to_vec();
    };
    let mut out = Vec::with_capacity(inner.len());
    let mut esc = false;
    for &b in inner {
        if b == b'\\' && !esc {
            esc = true;
            continue;
        }
        esc = false;
        out.push(b);
    }
    out
}

fn percent_decode(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0usize;
    while let Some(&b) = v.get(i) {
        if b == b'%'
            && let (Some(h), Some(l)) = (
                v.get(i + 1).and_then(|c| char::from(*c).to_digit(16)),
                v.get(i + 2).and_then(|c| char::from(*c).to_digit(16)),
            )
        {
            out.push(((h << 4) | l) as u8);
            i += 3;
            continue;
        }
        out.push(b);
        i += 1;
    }
    out
}

fn param_from_raw(value: &[u8], param: &str) -> Option<String> {
    // Unfold first: continuations are usually on their own lines.
    let unfolded: Vec<u8> = value
        .iter()
        .copied()
        .filter(|b| *b != b'\r' && *b != b'\n')
        .collect();
    let mut plain: Option<Vec<u8>> = None;
    let mut segs: Vec<(u32, bool, Vec<u8>)> = Vec::new();
    for seg in split_params(&unfolded).into_iter().skip(1).take(200) {
        let Some(eq) = seg.iter().position(|b| *b == b'=') else {
            continue;
        };
        let key = String::from_utf8_lossy(trim_bytes(seg.get(..eq).unwrap_or_default()))
            .to_ascii_lowercase();
        let val = unquote(seg.get(eq + 1..).unwrap_or_default());
        if key == param {
            plain = Some(val);
        } else if let Some(rest) = key.strip_prefix(param).and_then(|r| r.strip_prefix('*')) {
            if rest.is_empty() {
                segs.push((0, true, val));
            } else {
                let (num, enc) = match rest.strip_suffix('*') {
                    Some(n) => (n, true),
                    None => (rest, false),
                };
                if let Ok(n) = num.parse::<u32>() {
                    segs.push((n, enc, val));
                }
            }
        }
    }
    if !segs.is_empty() {
        segs.sort_by_key(|s| s.0);
        let mut label: Option<String> = None;
        let mut bytes = Vec::new();
        for (i, (_, enc, val)) in segs.iter().enumerate() {
            let mut v: &[u8] = val;
            if i == 0 && *enc {
                // charset'language'value
                let mut it = v.splitn(3, |b| *b == b'\'');
                if let (Some(cs), Some(_lang), Some(rest)) = (it.next(), it.next(), it.next()) {
                    label = Some(String::from_utf8_lossy(cs).into_owned());
                    v = rest;
                }
            }
            if *enc {
                bytes.extend_from_slice(&percent_decode(v));
            } else {
                bytes.extend_from_slice(v);
            }
        }
        let label = label.filter(|l| !l.is_empty());
        return Some(charset::decode(&bytes, label.as_deref()).text.into_owned());
    }
    let v = plain?;
    if v.windows(2).any(|w| w == b"=?") {
        Some(charset::decode_header(&v))
    } else {
        Some(charset::guess(&v).text.into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authserv_id_is_the_first_token() {
        assert_eq!(
            authserv_id("mx.example.lg.jp; spf=pass smtp.mailfrom=a@b"),
            Some("mx.example.lg.jp")
        );
        assert_eq!(
            authserv_id("mx.example.lg.jp 1 (comment); dkim=pass"),
            Some("mx.example.lg.jp")
        );
        assert_eq!(authserv_id(""), None);
    }

    #[test]
    fn rfc2231_continuations_join_before_decoding() {
        let v = b"attachment;\r\n filename*0*=utf-8''%E8%AB%8B%E6;\r\n filename*1*=%B1%82.pdf";
        assert_eq!(param_from_raw(v, "filename").as_deref(), Some("請求.pdf"));
        let v = b"attachment; filename*=cp932''%8A%94.txt";
        assert_eq!(param_from_raw(v, "filename").as_deref(), Some("株.txt"));
        let (jis, _, _) = encoding_rs::ISO_2022_JP.encode("氏名");
        let v = format!(
            "attachment; filename=\"=?ISO-2022-JP?B?{}?=.doc\"",
            super::build::base64_string(&jis)
        );
        assert_eq!(
            param_from_raw(v.as_bytes(), "filename").as_deref(),
            Some("氏名.doc")
        );
        let v = b"attachment; filename=\"a \\\"b\\\".txt\"; size=3";
        assert_eq!(
            param_from_raw(v, "filename").as_deref(),
            Some("a \"b\".txt")
        );
    }

    #[test]
    fn trace_values_lose_controls() {
        assert_eq!(
            ascii_trace(b"from a\r\n\tby b\x00\x1b with\rSMTP; \xe3\x81\x82 x"),
            "from a by b with SMTP; x"
        );
    }
}
