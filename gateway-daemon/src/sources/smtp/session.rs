//! The SMTP server session, sans I/O: bytes in, events out.
//!
//! [`Session::feed`] appends what the client sent; [`Session::next_event`] returns what to do
//! next, in order: a [`Event::Reply`] to send, or a step that needs the caller's answer
//! ([`Event::Mail`], [`Event::Rcpt`], [`Event::Message`]: the relay asks the downstream MTA in
//! lockstep and answers with [`Session::answer`]). While an answer is pending no further
//! command is processed, so pipelined commands keep their order and meaning. The I/O loop owns
//! sockets, TLS and timeouts; this module owns the protocol, so every rule here is tested by
//! feeding bytes.
//!
//! Rules that matter for safety:
//! - **End of DATA is `CRLF . CRLF` found on the raw bytes**, before any normalisation.
//!   `LF . LF`, `LF . CRLF` and `CR . CRLF` never end a message, and nothing after them is
//!   read as a command (SMTP smuggling). Only after the end is found are bare LF turned into
//!   CRLF and bare CR into a space — or the message rejected, per [`BareLineEnds`].
//! - After `STARTTLS` every byte the client sent in plaintext after the command is discarded
//!   (command injection, CVE-2011-0411 class) and the session starts over (RFC 3207).
//! - Only configured recipient domains are accepted (550 5.7.1 otherwise): never an open relay.
//! - Every buffer is bounded: command lines ([`Limits::max_command_line`]), the message
//!   ([`Limits::max_message_bytes`]: over it the rest is read and dropped, then 552), text lines
//!   ([`Limits::max_line`]), recipients ([`Limits::max_recipients`]: 452), protocol errors
//!   ([`Limits::max_errors`]: 421 and close).

use std::borrow::Cow;

use smtp_proto::{MAIL_BODY_8BITMIME, MAIL_SMTPUTF8, Request};

/// What to do with bare CR or LF inside a message (after its end was found on the raw bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BareLineEnds {
    /// Bare LF becomes CRLF, bare CR a space (default: what senders mean).
    #[default]
    Normalize,
    /// The message is rejected with 550 5.6.2.
    Reject,
}

/// The session's limits (from the daemon config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest message (advertised with SIZE; 552 over it).
    pub max_message_bytes: u64,
    /// Most recipients per transaction (452 4.5.3 over it).
    pub max_recipients: usize,
    /// Longest command line, CRLF included (RFC 5321: 512).
    pub max_command_line: usize,
    /// Longest text line in a message, CRLF included (RFC 5321: 1000).
    pub max_line: usize,
    /// Protocol errors before the session is closed with 421.
    pub max_errors: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_message_bytes: 50 * 1024 * 1024,
            max_recipients: 100,
            max_command_line: 512,
            max_line: 1000,
            max_errors: 10,
        }
    }
}

/// How the session presents itself and what it accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// Our host name, in the greeting and EHLO reply.
    pub hostname: String,
    /// Recipient domains accepted (lower case; a domain also covers nothing else: list
    /// subdomains explicitly). Empty = none: every recipient is refused.
    pub accepted_domains: Vec<String>,
    /// STARTTLS is offered (a certificate is configured).
    pub starttls: bool,
    /// Bare CR/LF handling.
    pub bare_line_ends: BareLineEnds,
    /// Limits.
    pub limits: Limits,
}

/// An SMTP reply: code, enhanced status and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// Lines of text (the enhanced status code, if any, is part of each line).
    pub lines: Vec<String>,
}

impl Reply {
    /// A one-line reply.
    pub fn new(code: u16, text: impl Into<String>) -> Reply {
        Reply {
            code,
            lines: vec![text.into()],
        }
    }

    /// The bytes on the wire: `250-first\r\n250 last\r\n`.
    pub fn to_wire(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let n = self.lines.len();
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i + 1 == n { ' ' } else { '-' };
            // A reply line never carries CR or LF of its own.
            let clean: String = line.chars().filter(|c| *c != '\r' && *c != '\n').collect();
            out.extend_from_slice(format!("{}{sep}{clean}\r\n", self.code).as_bytes());
        }
        if n == 0 {
            out.extend_from_slice(format!("{} \r\n", self.code).as_bytes());
        }
        out
    }

    /// 2xx.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }
}

/// The envelope of one transaction.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Envelope {
    /// The client's EHLO/HELO name.
    pub helo: String,
    /// MAIL FROM (empty for the null sender `<>`).
    pub from: String,
    /// Accepted recipients, in order.
    pub to: Vec<String>,
    /// BODY=8BITMIME was given.
    pub eight_bit: bool,
    /// SMTPUTF8 was given.
    pub smtputf8: bool,
    /// The SIZE the client declared, if any.
    pub declared_size: Option<u64>,
}

/// What the caller must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Send this reply.
    Reply(Reply),
    /// Open a transaction downstream for `from`; answer with its reply.
    Mail {
        /// The envelope sender.
        from: String,
    },
    /// Offer this recipient downstream; answer with its reply (it is added on 2xx).
    Rcpt {
        /// The recipient.
        to: String,
    },
    /// A complete message (dot-unstuffed, CRLF line ends): sanitize and deliver, then answer
    /// with the reply for the client (250 only after the downstream said 250).
    Message {
        /// The envelope.
        envelope: Envelope,
        /// The message.
        data: Vec<u8>,
    },
    /// The transaction was reset (RSET, or EHLO/HELO again): abort the downstream transaction
    /// if one is open, then send this reply.
    Reset(Reply),
    /// Abort any downstream transaction, send this `220` reply, then switch the connection to
    /// TLS and call [`Session::tls_started`].
    StartTls(Reply),
    /// Send this reply, then close the connection.
    Close(Reply),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Mail,
    Rcpt,
    Message,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for EHLO/HELO.
    Greeted,
    /// EHLO/HELO done, no transaction.
    Ready,
    /// MAIL accepted.
    InMail,
    /// Reading message data.
    Data,
    /// Closed; nothing more is processed.
    Closed,
}

/// One SMTP server session (see the module docs).
#[derive(Debug)]
pub struct Session {
    cfg: SessionConfig,
    phase: Phase,
    pending: Option<(Pending, String)>,
    buf: Vec<u8>,
    /// Bytes of `buf` already searched for the end of data.
    scanned: usize,
    envelope: Envelope,
    /// Message bytes dropped because the message is over the size limit.
    oversize: bool,
    errors: u32,
    tls: bool,
    /// Skip input up to the next LF (after an over-long command line).
    discard_line: bool,
    data_started: bool,
}

/// `CRLF . CRLF`: the only end of message data.
const END: &[u8] = b"\r\n.\r\n";

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

impl Session {
    /// A new session; send [`Session::greeting`] first.
    pub fn new(cfg: SessionConfig) -> Session {
        Session {
            cfg,
            phase: Phase::Greeted,
            pending: None,
            buf: Vec::new(),
            scanned: 0,
            envelope: Envelope::default(),
            oversize: false,
            errors: 0,
            tls: false,
            discard_line: false,
            data_started: false,
        }
    }

    /// The 220 greeting.
    pub fn greeting(&self) -> Reply {
        Reply::new(220, format!("{} ESMTP Mugai", self.cfg.hostname))
    }

    /// Whether the connection is in TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The transaction so far (MAIL parameters, accepted recipients).
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// Whether message data is being read (the I/O loop waits with the data timeout).
    pub fn in_data(&self) -> bool {
        self.phase == Phase::Data
    }

    /// Whether a transaction is open (MAIL accepted, or data being read).
    pub fn in_transaction(&self) -> bool {
        matches!(self.phase, Phase::InMail | Phase::Data)
    }

    /// Whether the session is closed.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Appends bytes the client sent.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.phase != Phase::Closed {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// Bytes buffered and not yet processed (the I/O loop stops reading while this is large
    /// and an answer is pending, so a pipelining client cannot grow it without bound).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The connection is now TLS: the session starts over (the client must EHLO again).
    pub fn tls_started(&mut self) {
        self.tls = true;
        self.phase = Phase::Greeted;
        self.envelope = Envelope::default();
        self.buf.clear();
        self.scanned = 0;
    }

    /// The answer to a pending [`Event::Mail`], [`Event::Rcpt`] or [`Event::Message`]; returns
    /// the reply to send to the client.
    pub fn answer(&mut self, reply: Reply) -> Reply {
        let Some((what, arg)) = self.pending.take() else {
            return reply;
        };
        match what {
            Pending::Mail if reply.is_positive() => {
                self.envelope.from = arg;
                self.envelope.to.clear();
                self.phase = Phase::InMail;
            }
            Pending::Mail => {}
            Pending::Rcpt if reply.is_positive() => self.envelope.to.push(arg),
            Pending::Rcpt => {}
            Pending::Message => {
                let helo = std::mem::take(&mut self.envelope.helo);
                self.envelope = Envelope {
                    helo,
                    ..Envelope::default()
                };
                self.phase = Phase::Ready;
            }
        }
        reply
    }

    /// The next thing to do, or `None` when more input (or an answer) is needed.
    pub fn next_event(&mut self) -> Option<Event> {
        if self.pending.is_some() || self.phase == Phase::Closed {
            return None;
        }
        if self.phase == Phase::Data {
            return self.data_event();
        }
        loop {
            if self.discard_line {
                let lf = self.buf.iter().position(|&b| b == b'\n');
                match lf {
                    Some(i) => {
                        self.buf.drain(..=i);
                        self.discard_line = false;
                        return Some(self.error(Reply::new(500, "5.5.2 Line too long")));
                    }
                    None => {
                        self.buf.clear();
                        return None;
                    }
                }
            }
            let Some(lf) = self.buf.iter().position(|&b| b == b'\n') else {
                if self.buf.len() >= self.cfg.limits.max_command_line {
                    self.buf.clear();
                    self.discard_line = true;
                    continue;
                }
                return None;
            };
            if lf + 1 > self.cfg.limits.max_command_line {
                self.buf.drain(..=lf);
                return Some(self.error(Reply::new(500, "5.5.2 Line too long")));
            }
            let line: Vec<u8> = self.buf.drain(..=lf).collect();
            return Some(self.command(&line));
        }
    }

    /// A protocol error: counted; too many close the session.
    fn error(&mut self, reply: Reply) -> Event {
        self.errors = self.errors.saturating_add(1);
        if self.errors >= self.cfg.limits.max_errors {
            self.phase = Phase::Closed;
            return Event::Close(Reply::new(421, "4.7.0 Too many errors, closing"));
        }
        Event::Reply(reply)
    }

    fn reset_transaction(&mut self) {
        let helo = std::mem::take(&mut self.envelope.helo);
        self.envelope = Envelope {
            helo,
            ..Envelope::default()
        };
    }

    fn command(&mut self, line: &[u8]) -> Event {
        // smtp-proto wants the line with its LF; a bare-LF command line is accepted as sent.
        let parsed = Request::parse(&mut line.iter());
        let req = match parsed {
            Ok(r) => r,
            Err(smtp_proto::Error::UnknownCommand) => {
                return self.error(Reply::new(500, "5.5.1 Command unrecognized"));
            }
            Err(smtp_proto::Error::InvalidSenderAddress) => {
                return self.error(Reply::new(501, "5.1.7 Invalid sender address"));
            }
            Err(smtp_proto::Error::InvalidRecipientAddress) => {
                return self.error(Reply::new(501, "5.1.3 Invalid recipient address"));
            }
            Err(smtp_proto::Error::UnsupportedParameter { .. })
            | Err(smtp_proto::Error::InvalidParameter { .. }) => {
                return self.error(Reply::new(555, "5.5.4 Unsupported or invalid parameter"));
            }
            Err(_) => return self.error(Reply::new(501, "5.5.4 Syntax error")),
        };
        match req {
            Request::Ehlo { host } => self.hello(host, true),
            Request::Helo { host } => self.hello(host, false),
            Request::Lhlo { .. } => self.error(Reply::new(500, "5.5.1 LMTP is not spoken here")),
            Request::Mail { from } => {
                if self.phase == Phase::Greeted {
                    return self.error(Reply::new(503, "5.5.1 Say EHLO first"));
                }
                if self.phase != Phase::Ready {
                    return self.error(Reply::new(503, "5.5.1 Nested MAIL command"));
                }
                let size = u64::try_from(from.size).unwrap_or(u64::MAX);
                if from.size > 0 && size > self.cfg.limits.max_message_bytes {
                    return Event::Reply(Reply::new(
                        552,
                        format!(
                            "5.3.4 Message size exceeds the limit of {} bytes",
                            self.cfg.limits.max_message_bytes
                        ),
                    ));
                }
                self.envelope.eight_bit = from.flags & MAIL_BODY_8BITMIME != 0;
                self.envelope.smtputf8 = from.flags & MAIL_SMTPUTF8 != 0;
                self.envelope.declared_size = (from.size > 0).then_some(size);
                let addr = from.address.into_owned();
                self.pending = Some((Pending::Mail, addr.clone()));
                Event::Mail { from: addr }
            }
            Request::Rcpt { to } => {
                if self.phase != Phase::InMail {
                    return self.error(Reply::new(503, "5.5.1 Need MAIL before RCPT"));
                }
                if self.envelope.to.len() >= self.cfg.limits.max_recipients {
                    return Event::Reply(Reply::new(452, "4.5.3 Too many recipients"));
                }
                let addr = to.address.into_owned();
                if !self.domain_accepted(&addr) {
                    return Event::Reply(Reply::new(
                        550,
                        "5.7.1 Relaying denied: recipient domain not accepted here",
                    ));
                }
                self.pending = Some((Pending::Rcpt, addr.clone()));
                Event::Rcpt { to: addr }
            }
            Request::Data => {
                if self.phase != Phase::InMail {
                    return self.error(Reply::new(503, "5.5.1 Need MAIL before DATA"));
                }
                if self.envelope.to.is_empty() {
                    return self.error(Reply::new(554, "5.5.1 No valid recipients"));
                }
                self.phase = Phase::Data;
                self.scanned = 0;
                self.oversize = false;
                self.data_started = true;
                Event::Reply(Reply::new(354, "Start mail input; end with <CRLF>.<CRLF>"))
            }
            Request::Rset => {
                self.reset_transaction();
                if self.phase == Phase::InMail {
                    self.phase = Phase::Ready;
                }
                Event::Reset(Reply::new(250, "2.0.0 Reset"))
            }
            Request::Noop { .. } => Event::Reply(Reply::new(250, "2.0.0 OK")),
            Request::Vrfy { .. } => Event::Reply(Reply::new(
                252,
                "2.5.0 Cannot VRFY user, but will accept message and attempt delivery",
            )),
            Request::Quit => {
                self.phase = Phase::Closed;
                Event::Close(Reply::new(221, "2.0.0 Bye"))
            }
            Request::StartTls => {
                if !self.cfg.starttls || self.tls {
                    return self.error(Reply::new(502, "5.5.1 STARTTLS not available"));
                }
                // Anything the client pipelined after STARTTLS arrived in plaintext: drop it.
                self.buf.clear();
                self.reset_transaction();
                self.phase = Phase::Greeted;
                Event::StartTls(Reply::new(220, "2.0.0 Ready to start TLS"))
            }
            Request::Help { .. } => Event::Reply(Reply::new(
                214,
                "2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP VRFY QUIT STARTTLS",
            )),
            _ => self.error(Reply::new(502, "5.5.1 Command not implemented")),
        }
    }

    fn hello(&mut self, host: Cow<'_, str>, extended: bool) -> Event {
        self.reset_transaction();
        self.envelope.helo = host.into_owned();
        self.phase = Phase::Ready;
        let mut lines = vec![format!(
            "{} greets {}",
            self.cfg.hostname, self.envelope.helo
        )];
        if extended {
            lines.push("PIPELINING".into());
            lines.push(format!("SIZE {}", self.cfg.limits.max_message_bytes));
            lines.push("8BITMIME".into());
            lines.push("SMTPUTF8".into());
            lines.push("ENHANCEDSTATUSCODES".into());
            if self.cfg.starttls && !self.tls {
                lines.push("STARTTLS".into());
            }
        }
        // EHLO/HELO resets any transaction (RFC 5321 4.1.4).
        Event::Reset(Reply { code: 250, lines })
    }

    fn domain_accepted(&self, addr: &str) -> bool {
        let Some((_, domain)) = addr.rsplit_once('@') else {
            return false;
        };
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        self.cfg.accepted_domains.contains(&domain)
    }

    /// In DATA: look for the end marker on the raw bytes.
    fn data_event(&mut self) -> Option<Event> {
        // The DATA command's own CRLF precedes the first data line: a message whose first line
        // is "." is empty. Prepend it once so one search covers that case.
        if self.data_started {
            self.buf.splice(0..0, b"\r\n".iter().copied());
            self.data_started = false;
        }
        let from = self.scanned.saturating_sub(END.len() - 1);
        let Some(end) = find(&self.buf, END, from) else {
            self.scanned = self.buf.len();
            let max = usize::try_from(self.cfg.limits.max_message_bytes).unwrap_or(usize::MAX);
            // Over the limit: keep only the tail that could hold the start of the marker.
            if self.buf.len() > max.saturating_add(END.len()) {
                self.oversize = true;
                let keep = END.len() - 1;
                let cut = self.buf.len() - keep;
                self.buf.drain(..cut);
                self.scanned = self.buf.len();
            }
            return None;
        };
        // The message is between the leading CRLF and the marker, plus its final CRLF.
        let raw: Vec<u8> = self.buf.drain(..end + END.len()).collect();
        self.scanned = 0;
        let body = raw.get(2..end + 2).unwrap_or_default();
        let envelope = self.envelope.clone();
        if self.oversize || body.len() as u64 > self.cfg.limits.max_message_bytes {
            self.finish_rejected();
            return Some(Event::Reply(Reply::new(
                552,
                format!(
                    "5.3.4 Message size exceeds the limit of {} bytes",
                    self.cfg.limits.max_message_bytes
                ),
            )));
        }
        match unstuff(body, self.cfg.bare_line_ends, self.cfg.limits.max_line) {
            Ok(data) => {
                self.pending = Some((Pending::Message, String::new()));
                Some(Event::Message { envelope, data })
            }
            Err(reply) => {
                self.finish_rejected();
                Some(Event::Reply(reply))
            }
        }
    }

    fn finish_rejected(&mut self) {
        self.reset_transaction();
        self.phase = Phase::Ready;
        self.oversize = false;
    }
}

/// Removes dot-stuffing and normalises line ends (the end marker was already removed; the
/// body ends with CRLF). Over-long lines and, under [`BareLineEnds::Reject`], bare CR or LF are
/// refused with the reply to send.
fn unstuff(body: &[u8], bare: BareLineEnds, max_line: usize) -> Result<Vec<u8>, Reply> {
    let mut out = Vec::with_capacity(body.len());
    let mut line_len = 0usize;
    let mut at_line_start = true;
    let mut i = 0usize;
    while let Some(&b) = body.get(i) {
        let next = body.get(i + 1).copied();
        if at_line_start && b == b'.' {
            // A leading dot was doubled by the sender; drop one.
            i += 1;
            at_line_start = false;
            line_len += 1;
            continue;
        }
        at_line_start = false;
        match (b, next) {
            (b'\r', Some(b'\n')) => {
                out.extend_from_slice(b"\r\n");
                i += 2;
                line_len = 0;
                at_line_start = true;
                continue;
            }
            (b'\r', _) => {
                if bare == BareLineEnds::Reject {
                    return Err(Reply::new(550, "5.6.2 Bare CR in message refused"));
                }
                out.push(b' ');
            }
            (b'\n', _) => {
                if bare == BareLineEnds::Reject {
                    return Err(Reply::new(550, "5.6.2 Bare LF in message refused"));
                }
                out.extend_from_slice(b"\r\n");
                i += 1;
                line_len = 0;
                at_line_start = true;
                continue;
            }
            _ => out.push(b),
        }
        i += 1;
        line_len += 1;
        if line_len + 2 > max_line {
            return Err(Reply::new(
                552,
                format!("5.3.4 Message line longer than {max_line} octets"),
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> SessionConfig {
        SessionConfig {
            hostname: "mugai.city.example.lg.jp".into(),
            accepted_domains: vec!["city.example.lg.jp".into()],
            starttls: true,
            bare_line_ends: BareLineEnds::Normalize,
            limits: Limits {
                max_message_bytes: 10_000,
                max_recipients: 3,
                ..Limits::default()
            },
        }
    }

    /// What the client saw and what reached the caller, with a downstream that answers
    /// `answer(event)` to each step.
    #[derive(Debug, Default)]
    struct Transcript {
        codes: Vec<u16>,
        replies: Vec<Reply>,
        messages: Vec<(Envelope, Vec<u8>)>,
        steps: Vec<String>,
    }

    fn drive(s: &mut Session, input: &[u8], downstream: impl Fn(&Event) -> Reply) -> Transcript {
        let mut t = Transcript::default();
        s.feed(input);
        while let Some(ev) = s.next_event() {
            let reply = match &ev {
                Event::Reply(r) | Event::Reset(r) | Event::StartTls(r) | Event::Close(r) => {
                    r.clone()
                }
                Event::Mail { from } => {
                    t.steps.push(format!("MAIL {from}"));
                    s.answer(downstream(&ev))
                }
                Event::Rcpt { to } => {
                    t.steps.push(format!("RCPT {to}"));
                    s.answer(downstream(&ev))
                }
                Event::Message { envelope, data } => {
                    t.messages.push((envelope.clone(), data.clone()));
                    s.answer(downstream(&ev))
                }
            };
            if matches!(ev, Event::Reset(_)) {
                t.steps.push("RESET".into());
            }
            t.codes.push(reply.code);
            t.replies.push(reply);
        }
        t
    }

    fn ok(_: &Event) -> Reply {
        Reply::new(250, "2.0.0 OK")
    }

    const HEAD: &[u8] = b"EHLO client.example\r\nMAIL FROM:<a@example.jp>\r\n\
RCPT TO:<staff@city.example.lg.jp>\r\nDATA\r\n";

    #[test]
    fn a_pipelined_transaction_in_one_write() {
        let mut s = Session::new(cfg());
        let mut input = HEAD.to_vec();
        input.extend_from_slice(b"Subject: hi\r\n\r\n..leading dot\r\nbody\r\n.\r\nQUIT\r\n");
        let t = drive(&mut s, &input, ok);
        assert_eq!(t.codes, [250, 250, 250, 354, 250, 221]);
        assert_eq!(t.messages.len(), 1);
        let (env, data) = &t.messages[0];
        assert_eq!(env.helo, "client.example");
        assert_eq!(env.from, "a@example.jp");
        assert_eq!(env.to, ["staff@city.example.lg.jp"]);
        assert_eq!(data, b"Subject: hi\r\n\r\n.leading dot\r\nbody\r\n");
        assert!(s.is_closed());
        let ehlo = String::from_utf8(t.replies[0].to_wire()).unwrap();
        for ext in [
            "PIPELINING",
            "SIZE 10000",
            "8BITMIME",
            "SMTPUTF8",
            "STARTTLS",
        ] {
            assert!(ehlo.contains(ext), "{ehlo}");
        }
        assert!(ehlo.ends_with("250 STARTTLS\r\n") && ehlo.starts_with("250-"));
    }

    #[test]
    fn byte_at_a_time_is_the_same_as_all_at_once() {
        let mut input = HEAD.to_vec();
        input.extend_from_slice(b"Subject: x\r\n\r\nline\r\n.\r\nQUIT\r\n");
        let mut whole = Session::new(cfg());
        let a = drive(&mut whole, &input, ok);
        let mut bytes = Session::new(cfg());
        let mut codes = Vec::new();
        let mut msgs = Vec::new();
        for b in &input {
            let t = drive(&mut bytes, std::slice::from_ref(b), ok);
            codes.extend(t.codes);
            msgs.extend(t.messages);
        }
        assert_eq!(codes, a.codes);
        assert_eq!(msgs, a.messages);
    }

    #[test]
    fn only_crlf_dot_crlf_ends_data_and_nothing_after_a_fake_end_is_a_command() {
        for fake in [
            &b"\n.\n"[..],
            b"\n.\r\n",
            b"\r.\r\n",
            b"\r\n.\n",
            b"\r\n.\r\r\n",
        ] {
            let mut s = Session::new(cfg());
            let mut input = HEAD.to_vec();
            input.extend_from_slice(b"Subject: one\r\n\r\nfirst");
            input.extend_from_slice(fake);
            input.extend_from_slice(
                b"MAIL FROM:<evil@example.jp>\r\nRCPT TO:<victim@city.example.lg.jp>\r\n\
DATA\r\nSubject: smuggled\r\n\r\nx\r\n.\r\n",
            );
            let t = drive(&mut s, &input, ok);
            // One message only: the smuggled commands are part of its body.
            assert_eq!(t.messages.len(), 1, "{fake:?}");
            assert_eq!(t.codes, [250, 250, 250, 354, 250], "{fake:?}");
            assert_eq!(
                t.steps,
                [
                    "RESET",
                    "MAIL a@example.jp",
                    "RCPT staff@city.example.lg.jp"
                ]
            );
            let data = String::from_utf8_lossy(&t.messages[0].1).into_owned();
            assert!(
                data.contains("MAIL FROM:<evil@example.jp>"),
                "{fake:?}: {data}"
            );
            assert!(data.contains("Subject: smuggled"), "{fake:?}");
            // Line ends were normalised only after the end was found: no bare CR or LF left.
            let b = t.messages[0].1.as_slice();
            for (i, &c) in b.iter().enumerate() {
                if c == b'\n' {
                    assert_eq!(b.get(i.wrapping_sub(1)), Some(&b'\r'), "{fake:?}: {data:?}");
                }
                if c == b'\r' {
                    assert_eq!(b.get(i + 1), Some(&b'\n'), "{fake:?}: {data:?}");
                }
            }
        }
    }

    #[test]
    fn bare_line_ends_can_be_refused() {
        let mut c = cfg();
        c.bare_line_ends = BareLineEnds::Reject;
        let mut s = Session::new(c);
        let mut input = HEAD.to_vec();
        input.extend_from_slice(b"Subject: x\n\nbody\r\n.\r\nNOOP\r\n");
        let t = drive(&mut s, &input, ok);
        assert_eq!(t.codes, [250, 250, 250, 354, 550, 250]);
        assert!(t.messages.is_empty());
    }

    #[test]
    fn an_empty_message_and_a_first_line_dot() {
        let mut s = Session::new(cfg());
        let mut input = HEAD.to_vec();
        input.extend_from_slice(b".\r\n");
        let t = drive(&mut s, &input, ok);
        assert_eq!(t.codes, [250, 250, 250, 354, 250]);
        assert_eq!(t.messages[0].1, b"");
    }

    #[test]
    fn relay_is_denied_and_recipients_are_limited() {
        let mut s = Session::new(cfg());
        let t = drive(
            &mut s,
            b"EHLO c\r\nMAIL FROM:<a@example.jp>\r\nRCPT TO:<x@gmail.example>\r\n\
RCPT TO:<a@city.example.lg.jp>\r\nRCPT TO:<b@CITY.example.lg.jp>\r\n\
RCPT TO:<c@city.example.lg.jp.>\r\nRCPT TO:<d@city.example.lg.jp>\r\n\
RCPT TO:<e@sub.city.example.lg.jp>\r\n",
            ok,
        );
        assert_eq!(t.codes, [250, 250, 550, 250, 250, 250, 452, 452]);
        let r = String::from_utf8(t.replies[2].to_wire()).unwrap();
        assert!(r.starts_with("550 5.7.1"), "{r}");
    }

    #[test]
    fn downstream_answers_go_to_the_client_in_lockstep() {
        let mut s = Session::new(cfg());
        let downstream = |ev: &Event| match ev {
            Event::Rcpt { to } if to.starts_with("gone") => Reply::new(550, "5.1.1 No such user"),
            Event::Rcpt { to } if to.starts_with("full") => Reply::new(452, "4.2.2 Mailbox full"),
            Event::Message { .. } => Reply::new(451, "4.3.0 Downstream unavailable"),
            _ => Reply::new(250, "2.0.0 OK"),
        };
        let mut input = b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<gone@city.example.lg.jp>\r\n\
RCPT TO:<full@city.example.lg.jp>\r\nRCPT TO:<ok@city.example.lg.jp>\r\nDATA\r\n"
            .to_vec();
        input.extend_from_slice(b"Subject: x\r\n\r\ny\r\n.\r\n");
        let t = drive(&mut s, &input, downstream);
        assert_eq!(t.codes, [250, 250, 550, 452, 250, 354, 451]);
        assert_eq!(t.messages[0].0.to, ["ok@city.example.lg.jp"]);
        assert_eq!(t.messages[0].0.from, "");
    }

    #[test]
    fn data_without_recipients_and_commands_out_of_order() {
        let mut s = Session::new(cfg());
        let t = drive(
            &mut s,
            b"MAIL FROM:<a@example.jp>\r\nEHLO c\r\nRCPT TO:<a@city.example.lg.jp>\r\nDATA\r\n\
MAIL FROM:<a@example.jp>\r\nDATA\r\nMAIL FROM:<b@example.jp>\r\nRSET\r\nVRFY x\r\n\
BDAT 10 LAST\r\nFOO\r\nHELP\r\nNOOP\r\n",
            ok,
        );
        assert_eq!(
            t.codes,
            [
                503, 250, 503, 503, 250, 554, 503, 250, 252, 502, 500, 214, 250
            ]
        );
    }

    #[test]
    fn size_is_enforced_at_mail_and_after_data() {
        let mut s = Session::new(cfg());
        let t = drive(
            &mut s,
            b"EHLO c\r\nMAIL FROM:<a@example.jp> SIZE=20000\r\nMAIL FROM:<a@example.jp> SIZE=500\r\n",
            ok,
        );
        assert_eq!(t.codes, [250, 552, 250]);
        let mut s = Session::new(cfg());
        let mut input = HEAD.to_vec();
        for _ in 0..300 {
            input.extend_from_slice(b"0123456789012345678901234567890123456789012345678\r\n");
        }
        input.extend_from_slice(b".\r\nNOOP\r\n");
        let t = drive(&mut s, &input, ok);
        assert_eq!(t.codes, [250, 250, 250, 354, 552, 250]);
        assert!(t.messages.is_empty());
        // The buffer did not keep the whole oversized message.
        assert!(s.buffered() < 100);
    }

    #[test]
    fn long_lines_are_refused() {
        let mut s = Session::new(cfg());
        let mut input = b"EHLO ".to_vec();
        input.extend(std::iter::repeat_n(b'x', 2000));
        input.extend_from_slice(b"\r\nNOOP\r\n");
        let t = drive(&mut s, &input, ok);
        assert_eq!(t.codes, [500, 250]);
        let mut s = Session::new(cfg());
        let mut input = HEAD.to_vec();
        input.extend(std::iter::repeat_n(b'y', 1200));
        input.extend_from_slice(b"\r\n.\r\n");
        let t = drive(&mut s, &input, ok);
        assert_eq!(t.codes, [250, 250, 250, 354, 552]);
    }

    #[test]
    fn starttls_drops_plaintext_pipelined_after_it_and_starts_over() {
        let mut s = Session::new(cfg());
        let t = drive(
            &mut s,
            b"EHLO c\r\nSTARTTLS\r\nMAIL FROM:<injected@example.jp>\r\n",
            ok,
        );
        assert_eq!(t.codes, [250, 220]);
        assert!(t.steps.iter().all(|s| !s.contains("injected")));
        s.tls_started();
        assert!(s.is_tls());
        // The injected MAIL is gone; the client must EHLO again.
        let t = drive(
            &mut s,
            b"MAIL FROM:<a@example.jp>\r\nEHLO c\r\nSTARTTLS\r\n",
            ok,
        );
        assert_eq!(t.codes, [503, 250, 502]);
        let ehlo = String::from_utf8(t.replies[1].to_wire()).unwrap();
        assert!(!ehlo.contains("STARTTLS"), "not offered twice: {ehlo}");
    }

    #[test]
    fn too_many_errors_close_the_session() {
        let mut s = Session::new(cfg());
        let t = drive(&mut s, &b"FOO\r\n".repeat(20), ok);
        assert_eq!(t.codes.len(), 10);
        assert_eq!(t.codes.last(), Some(&421));
        assert!(s.is_closed());
    }

    #[test]
    fn replies_never_carry_line_breaks_of_their_own() {
        let r = Reply::new(250, "a\r\n250 forged");
        assert_eq!(r.to_wire(), b"250 a250 forged\r\n");
    }
}
