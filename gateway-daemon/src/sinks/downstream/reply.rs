//! Replies read from the downstream MTA, sans I/O: bytes in, bounded and cleaned replies out.
//!
//! The downstream is a peer we do not control, so everything it says is untrusted input:
//! - a reply has at most [`MAX_LINES`] lines of at most [`MAX_LINE`] bytes each (LF included);
//!   more is a protocol error, never a bigger buffer, so reading one reply holds at most
//!   `MAX_LINES * MAX_LINE` bytes plus one read;
//! - every line of a multiline reply (`250-...`, last `250 ...`) must carry the same code
//!   (RFC 5321 §4.2.1), so a `250-` line can never turn a final `550` into a success;
//! - codes outside 200..=599 are protocol errors (1xx and 6xx+ are not SMTP replies);
//! - the text of each line is cleaned before anyone sees it: the enhanced status code (RFC 3463)
//!   is split off, control characters are dropped, anything but printable ASCII becomes `?`,
//!   and it is cut to [`MAX_TEXT`] characters, since it may be relayed to the upstream client
//!   and written to logs.
//!
//! [`parse`] looks at the bytes buffered so far and says whether they start with a complete
//! reply (and how many bytes it used), need more bytes, or can never be a valid reply.

/// Longest reply line we accept, in bytes, LF included (RFC 5321 allows 512; some servers
/// send longer texts, so we are lenient but bounded).
pub(crate) const MAX_LINE: usize = 1000;

/// Most lines in one reply (an EHLO reply lists one extension per line; real servers send
/// about 15).
pub(crate) const MAX_LINES: usize = 64;

/// Characters of text kept per line after cleaning.
pub(crate) const MAX_TEXT: usize = 200;

/// One reply from the downstream, cleaned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DsReply {
    /// The three-digit code, 200..=599.
    pub code: u16,
    /// The enhanced status code of the first line (`"5.1.1"`), when it has one of the
    /// reply's class.
    pub status: Option<String>,
    /// The cleaned text of each line, without code and enhanced status; never empty.
    pub lines: Vec<String>,
    /// The reply as received (bounded as above), for parsing an EHLO reply's extensions.
    pub raw: Vec<u8>,
}

impl DsReply {
    /// 2xx.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 4xx.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// 5xx.
    pub fn is_permanent(&self) -> bool {
        (500..600).contains(&self.code)
    }

    /// The reply in one short line for logs and our own reply texts: `550 5.1.1 No such user`.
    pub fn summary(&self) -> String {
        let text = self.lines.first().map(String::as_str).unwrap_or_default();
        match &self.status {
            Some(s) => format!("{} {s} {text}", self.code),
            None => format!("{} {text}", self.code),
        }
        .trim_end()
        .to_owned()
    }
}

/// What the buffered bytes hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// A complete reply, which used this many bytes of the buffer.
    Reply(DsReply, usize),
    /// Not a complete reply yet: read more.
    Incomplete,
    /// Not a valid reply, whatever follows: give up on this connection.
    Invalid(&'static str),
}

/// Looks for one complete reply at the start of `buf` (see the module docs).
pub(crate) fn parse(buf: &[u8]) -> Parsed {
    let mut pos = 0;
    let mut code = None;
    let mut status = None;
    let mut lines = Vec::new();
    loop {
        let rest = buf.get(pos..).unwrap_or_default();
        let Some(lf) = rest.iter().position(|b| *b == b'\n') else {
            if rest.len() >= MAX_LINE {
                return Parsed::Invalid("reply line too long");
            }
            return Parsed::Incomplete;
        };
        if lf >= MAX_LINE {
            return Parsed::Invalid("reply line too long");
        }
        let line = rest.get(..lf).unwrap_or_default();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        pos += lf + 1;

        let (this_code, last, text) = match split_line(line) {
            Ok(parts) => parts,
            Err(why) => return Parsed::Invalid(why),
        };
        match code {
            None => code = Some(this_code),
            Some(c) if c != this_code => {
                return Parsed::Invalid("reply lines with different codes");
            }
            Some(_) => {}
        }
        if lines.len() >= MAX_LINES {
            return Parsed::Invalid("reply with too many lines");
        }
        let (line_status, text) = split_status(this_code, text);
        if lines.is_empty() {
            status = line_status.map(str::to_owned);
        }
        lines.push(clean(text));
        if last {
            let raw = buf.get(..pos).unwrap_or_default().to_vec();
            return Parsed::Reply(
                DsReply {
                    code: this_code,
                    status,
                    lines,
                    raw,
                },
                pos,
            );
        }
    }
}

/// `250-text` → (250, not last, "text"); `250 text` and a bare `250` are last lines.
fn split_line(line: &[u8]) -> Result<(u16, bool, &[u8]), &'static str> {
    let Some(([d0, d1, d2], rest)) = line.split_first_chunk::<3>() else {
        return Err("reply line without a code");
    };
    if !(d0.is_ascii_digit() && d1.is_ascii_digit() && d2.is_ascii_digit()) {
        return Err("reply line without a code");
    }
    let code = u16::from(d0 - b'0') * 100 + u16::from(d1 - b'0') * 10 + u16::from(d2 - b'0');
    if !(200..600).contains(&code) {
        return Err("reply code out of range");
    }
    match rest.split_first() {
        None => Ok((code, true, &[])),
        Some((b' ', text)) => Ok((code, true, text)),
        Some((b'-', text)) => Ok((code, false, text)),
        Some(_) => Err("reply line with a bad separator"),
    }
}

/// Splits a leading enhanced status code (`5.1.1 `) of the reply's class off `text`.
fn split_status(code: u16, text: &[u8]) -> (Option<&str>, &[u8]) {
    let end = text.iter().position(|b| *b == b' ').unwrap_or(text.len());
    let word = text.get(..end).unwrap_or_default();
    let rest = text.get(end..).unwrap_or_default();
    let rest = rest.strip_prefix(b" ").unwrap_or(rest);
    let Ok(word) = std::str::from_utf8(word) else {
        return (None, text);
    };
    let mut parts = word.split('.');
    let (Some(class), Some(subject), Some(detail), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return (None, text);
    };
    let digits = |s: &str, max: usize| {
        !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit())
    };
    let class_matches = class.len() == 1 && class.bytes().next() == Some(b'0' + (code / 100) as u8);
    if class_matches && digits(subject, 3) && digits(detail, 3) {
        (Some(word), rest)
    } else {
        (None, text)
    }
}

/// Printable ASCII only, at most [`MAX_TEXT`] characters: tabs become spaces, other control
/// characters are dropped, anything else becomes `?`.
pub(crate) fn clean(text: &[u8]) -> String {
    String::from_utf8_lossy(text)
        .chars()
        .filter_map(|c| match c {
            '\t' => Some(' '),
            c if c.is_control() => None,
            ' '..='~' => Some(c),
            _ => Some('?'),
        })
        .take(MAX_TEXT)
        .collect::<String>()
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(bytes: &[u8]) -> (DsReply, usize) {
        match parse(bytes) {
            Parsed::Reply(r, n) => (r, n),
            other => panic!("{other:?} for {:?}", String::from_utf8_lossy(bytes)),
        }
    }

    #[test]
    fn one_line_with_enhanced_status() {
        let bytes = b"550 5.1.1 <a@b>: no such user\r\nleftover";
        let (r, n) = reply(bytes);
        assert_eq!(n, bytes.len() - "leftover".len());
        assert_eq!(r.code, 550);
        assert_eq!(r.status.as_deref(), Some("5.1.1"));
        assert_eq!(r.lines, ["<a@b>: no such user"]);
        assert_eq!(r.summary(), "550 5.1.1 <a@b>: no such user");
        assert!(r.is_permanent() && !r.is_transient() && !r.is_positive());
    }

    #[test]
    fn multiline_and_bare_code_and_lf_only() {
        let bytes = b"250-mx.example\n250-PIPELINING\n250-SIZE 1000\n250\n";
        let (r, n) = reply(bytes);
        assert_eq!(n, bytes.len());
        assert_eq!(r.code, 250);
        assert_eq!(r.status, None);
        assert_eq!(r.lines, ["mx.example", "PIPELINING", "SIZE 1000", ""]);
        assert_eq!(r.raw.len(), n);
    }

    #[test]
    fn status_of_another_class_or_shape_stays_text() {
        let (r, _) = reply(b"451 5.1.1 odd\r\n");
        assert_eq!(r.status, None);
        assert_eq!(r.lines, ["5.1.1 odd"]);
        let (r, _) = reply(b"250 8BITMIME\r\n");
        assert_eq!(r.status, None);
        assert_eq!(r.lines, ["8BITMIME"]);
        let (r, _) = reply(b"250 2.0.0\r\n");
        assert_eq!(r.status.as_deref(), Some("2.0.0"));
        assert_eq!(r.lines, [""]);
    }

    #[test]
    fn incomplete_until_the_last_line() {
        assert_eq!(parse(b""), Parsed::Incomplete);
        assert_eq!(parse(b"25"), Parsed::Incomplete);
        assert_eq!(parse(b"250-a\r\n250-b\r\n"), Parsed::Incomplete);
        assert_eq!(parse(b"250-a\r\n250 b"), Parsed::Incomplete);
    }

    #[test]
    fn a_250_line_cannot_make_a_550_a_success() {
        assert_eq!(
            parse(b"250-fine\r\n550 no\r\n"),
            Parsed::Invalid("reply lines with different codes")
        );
    }

    #[test]
    fn garbage_is_invalid() {
        for bad in [
            &b"hello\r\n"[..],
            b"25x ok\r\n",
            b"250_ok\r\n",
            b"\r\n",
            b"199 too small\r\n",
            b"600 too big\r\n",
            b"099 x\r\n",
        ] {
            assert!(
                matches!(parse(bad), Parsed::Invalid(_)),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn sizes_are_bounded() {
        // A line that never ends is refused once it is too long, not buffered forever.
        let endless = vec![b'2'; MAX_LINE];
        assert_eq!(parse(&endless), Parsed::Invalid("reply line too long"));
        assert_eq!(parse(&endless[..MAX_LINE - 1]), Parsed::Incomplete);
        let mut long = b"250 ".to_vec();
        long.extend(std::iter::repeat_n(b'x', MAX_LINE));
        long.extend_from_slice(b"\r\n");
        assert_eq!(parse(&long), Parsed::Invalid("reply line too long"));

        let many = "250-x\r\n".repeat(MAX_LINES) + "250 end\r\n";
        assert_eq!(
            parse(many.as_bytes()),
            Parsed::Invalid("reply with too many lines")
        );
        let enough = "250-x\r\n".repeat(MAX_LINES - 1) + "250 end\r\n";
        assert_eq!(reply(enough.as_bytes()).0.lines.len(), MAX_LINES);

        // Text is cut for the upstream and the logs.
        let mut wide = b"550 ".to_vec();
        wide.extend(std::iter::repeat_n(b'y', MAX_LINE - 10));
        wide.extend_from_slice(b"\r\n");
        assert_eq!(reply(&wide).0.lines[0].len(), MAX_TEXT);
    }

    #[test]
    fn text_is_cleaned() {
        let (r, _) = reply(b"550 5.7.1 bad\x1b[31m\tred\x00 \xe3\x81\x82 \xff\r\r\n");
        assert_eq!(r.lines, ["bad[31m red ? ?"]);
        // A bare CR inside a line cannot start a new reply line upstream.
        let (r, _) = reply(b"550 a\rb\r\n");
        assert_eq!(r.lines, ["ab"]);
    }
}
