//! The relay's downstream: where a sanitized message goes, in lockstep with the upstream MTA.
//!
//! The relay is a synchronous proxy (amavisd-new, Postfix `smtpd_proxy_filter`): it answers
//! the upstream client only after the downstream answered, and keeps no queue of its own. So
//! every step here returns the [`Reply`] to give upstream:
//! [`Downstream::begin`] (MAIL), [`Transaction::rcpt`] (each RCPT), [`Transaction::data`] (the
//! sanitized message), [`Transaction::abort`] (RSET or a dropped client). Two kinds:
//! - `smtp` (`smtp.rs`): one SMTP connection per transaction to the LGWAN-side MTA, opened at
//!   MAIL (connect, EHLO, STARTTLS per settings, MAIL FROM), one RCPT per upstream RCPT, and
//!   the message after it was sanitized. While it is sanitized the caller sends NOOPs
//!   ([`Transaction::keepalive`]); a session the downstream dropped anyway is re-opened at
//!   `data` and MAIL plus the accepted RCPTs are replayed first.
//! - `dir` (`dir.rs` documents the files): every message becomes a file in a directory,
//!   durable before 250.
//!
//! # Replies (CONTRACT.md: the only transient reply is 451)
//! | downstream | upstream gets |
//! |---|---|
//! | 2xx to MAIL / RCPT / the message | `250` (2xx to the message only: never 2xx otherwise) |
//! | 4xx to anything, `421`, no answer in time, connection refused or lost, a reply that is not SMTP, TLS required but not offered or failed, a refused greeting or EHLO | `451 4.4.x` naming the downstream (4.4.1 no connection, 4.4.2 lost, late, garbled or TLS, 4.4.0 a 4xx or refused setup) |
//! | 5xx to MAIL / RCPT / DATA / the message | the same code and enhanced status (`5.0.0` when it gave none), text prefixed `downstream: ` |
//! | a failure after the message was sent but before its reply | `451`: the upstream retries, which at worst delivers twice — never loses |
//! | (not asked) an address with control characters, `<` or `>`, over 256 octets, or not ASCII without SMTPUTF8 | `501` / `553`, nothing sent |
//!
//! A failed replay (MAIL or a previously accepted RCPT refused on the new connection) is a
//! `451` for the message, not the 5xx the downstream gave: the upstream was already told 250
//! for those steps, and on its retry the same refusal comes back at MAIL or RCPT, where it
//! belongs. Replies read from the downstream are untrusted input: bounded (64 lines of 1000
//! bytes at most), parsed (multiline, one code throughout) and cleaned (printable ASCII, 200
//! characters a line) in `reply.rs`.
//!
//! # TLS
//! - `none`: never STARTTLS.
//! - `opportunistic` (Postfix `may`): STARTTLS when offered, the certificate not verified;
//!   plaintext when not offered; when STARTTLS is refused or the handshake fails, one new
//!   plaintext connection.
//! - `required`: STARTTLS must be offered and the certificate must verify against `tls_ca`
//!   (PEM), or the webpki roots when it is empty, for the host of `address` (an IP address is
//!   checked against the certificate's IP SANs). Anything else is `451`, never plaintext.
//!
//! After STARTTLS anything the server sent in plaintext beyond the `220` is discarded
//! (CVE-2011-0411 class) and EHLO is sent again (RFC 3207).
//!
//! # 8BITMIME and SMTPUTF8: never downgraded, refused permanently
//! Nothing is converted, so a message the downstream cannot take unchanged is refused, and
//! permanently (RFC 6152 §3 and RFC 6531 §3.4 allow only conversion or a non-delivery; the
//! downstream is fixed configuration, so a retry would only delay the same answer for days):
//! - `SMTPUTF8` is passed on when the upstream used it. If the downstream does not advertise
//!   it, MAIL is refused: `553 5.6.7` when the sender address itself is not ASCII, else
//!   `550 5.6.9` (RFC 6531 codes).
//! - `BODY=8BITMIME` is passed on when the upstream used it and the downstream advertises
//!   8BITMIME. Whether 8 bits are *needed* is decided on the sanitized bytes at `data`: a
//!   message with any octet over 127 for a downstream without 8BITMIME gets `554 5.6.3`
//!   (conversion required but not supported); a 7-bit message goes through unchanged, declared
//!   or not (the sanitizer re-encodes bodies, so this is the common case).
//! - `SIZE=n` (the upstream's declared size) is passed on when the downstream advertises SIZE.
//!
//! # Not done (deliberately)
//! No PIPELINING: every command waits for its reply, which keeps per-recipient answers exact
//! and the replay simple; the relay is in lockstep with its own client anyway. No connection
//! reuse across transactions: each transaction has its own session, closed with QUIT after
//! the message (or on abort) in the background.

mod dir;
mod reply;
mod smtp;
mod tls;

use std::sync::Arc;
use std::time::Duration;

use crate::config::{DownstreamKind, DownstreamSettings};
use crate::sources::smtp::session::Reply;

/// How long to wait for the reply to the final dot unless set with
/// [`Downstream::with_data_timeout`]: RFC 5321 §4.5.3.2.6 gives the server 10 minutes.
pub const DEFAULT_DATA_TIMEOUT: Duration = Duration::from_secs(600);

/// Keepalive interval used when `keepalive_secs` is 0 (keepalives effectively off).
const NO_KEEPALIVE: Duration = Duration::from_secs(24 * 60 * 60);

/// Envelope parameters passed on downstream (never silently downgraded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MailParams {
    /// The upstream gave `BODY=8BITMIME`.
    pub eight_bit: bool,
    /// The upstream gave `SMTPUTF8`.
    pub smtputf8: bool,
    /// The size the upstream declared (`SIZE=`), if any.
    pub size: Option<u64>,
}

/// The configured downstream; cheap to clone (shared inside), `Send + Sync`.
#[derive(Debug, Clone)]
pub struct Downstream {
    kind: Kind,
    keepalive: Duration,
}

#[derive(Debug, Clone)]
enum Kind {
    Dir(Arc<dir::DirSink>),
    Smtp(Arc<smtp::SmtpClient>),
}

impl Downstream {
    /// The downstream described by `settings`; `hostname` is our EHLO name when
    /// `settings.helo` is empty. Fails on settings that cannot work (a bad address, zero
    /// timeouts, an unreadable `tls_ca`, a directory that cannot be created).
    pub fn new(settings: &DownstreamSettings, hostname: &str) -> anyhow::Result<Downstream> {
        let keepalive = match settings.keepalive_secs {
            0 => NO_KEEPALIVE,
            s => Duration::from_secs(s),
        };
        let kind = match settings.kind {
            DownstreamKind::Dir => Kind::Dir(Arc::new(dir::DirSink::new(&settings.dir)?)),
            DownstreamKind::Smtp => Kind::Smtp(Arc::new(smtp::SmtpClient::new(
                settings,
                hostname,
                keepalive,
                DEFAULT_DATA_TIMEOUT,
            )?)),
        };
        Ok(Downstream { kind, keepalive })
    }

    /// The same downstream waiting up to `timeout` for the reply to the message (default
    /// [`DEFAULT_DATA_TIMEOUT`]); the relay sets it to what is left of its reply deadline.
    #[must_use]
    pub fn with_data_timeout(mut self, timeout: Duration) -> Downstream {
        if let Kind::Smtp(client) = &mut self.kind {
            Arc::make_mut(client).set_data_timeout(timeout);
        }
        self
    }

    /// Opens a transaction for MAIL FROM `from` (empty for the null sender): for `smtp`
    /// connect, EHLO, STARTTLS per settings and MAIL; for `dir` nothing. Returns the reply for
    /// the upstream client and, when it is 2xx, the open transaction.
    pub async fn begin(&self, from: &str, params: &MailParams) -> (Reply, Option<Transaction>) {
        match &self.kind {
            Kind::Dir(sink) => {
                let (reply, tx) = dir::DirTransaction::begin(sink, from, params);
                (reply, tx.map(|t| Transaction::new(TxKind::Dir(t), self)))
            }
            Kind::Smtp(client) => {
                let (reply, tx) = smtp::SmtpTransaction::begin(client, from, params).await;
                (
                    reply,
                    tx.map(|t| Transaction::new(TxKind::Smtp(Box::new(t)), self)),
                )
            }
        }
    }
}

/// One open transaction (after a 2xx to MAIL); `Send`.
///
/// Every method is cancel-safe in the sense that matters: a future dropped half-way (the
/// relay gave up waiting) leaves an `smtp` transaction with its connection marked dead, so a
/// later `data` re-opens it and replays rather than talking to a session in an unknown state.
#[derive(Debug)]
pub struct Transaction {
    kind: TxKind,
    keepalive: Duration,
}

#[derive(Debug)]
enum TxKind {
    Dir(dir::DirTransaction),
    Smtp(Box<smtp::SmtpTransaction>),
}

impl Transaction {
    fn new(kind: TxKind, downstream: &Downstream) -> Transaction {
        Transaction {
            kind,
            keepalive: downstream.keepalive,
        }
    }

    /// RCPT in lockstep: the reply for the upstream; on 2xx the recipient is part of the
    /// transaction.
    pub async fn rcpt(&mut self, to: &str) -> Reply {
        match &mut self.kind {
            TxKind::Dir(t) => t.rcpt(to),
            TxKind::Smtp(t) => t.rcpt(to).await,
        }
    }

    /// Called every [`Transaction::keepalive_interval`] while the message is being sanitized:
    /// sends NOOP so a downstream with a short idle timeout keeps the session. A failure only
    /// marks the connection dead (`data` re-opens it); it is never an error to the caller.
    pub async fn keepalive(&mut self) {
        match &mut self.kind {
            TxKind::Dir(_) => {}
            TxKind::Smtp(t) => t.keepalive().await,
        }
    }

    /// Sends the (sanitized) message, CRLF line ends: if the connection died meanwhile,
    /// re-opens it and replays MAIL and the accepted RCPTs first; then DATA, the dot-stuffed
    /// body, the final dot. Returns the reply for the upstream (2xx only when the downstream
    /// said 2xx to the message; `dir`: once the file is durable).
    pub async fn data(self, message: &[u8]) -> Reply {
        match self.kind {
            TxKind::Dir(t) => t.data(message).await,
            TxKind::Smtp(t) => t.data(message).await,
        }
    }

    /// Abandons the transaction (the upstream sent RSET, or went away): QUIT and close.
    pub async fn abort(self) {
        match self.kind {
            TxKind::Dir(_) => {}
            TxKind::Smtp(t) => t.abort(),
        }
    }

    /// Time between keepalives (`keepalive_secs`; a day when that is 0).
    pub fn keepalive_interval(&self) -> Duration {
        self.keepalive
    }
}

/// `451` with a class-4 enhanced status and a reason that names the downstream.
pub(crate) fn transient(status: &str, reason: impl std::fmt::Display) -> Reply {
    Reply::new(451, format!("{status} {reason}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_and_futures_can_move_between_threads() {
        // The relay runs each session in its own task: the shared handle, the transaction
        // and every future it awaits must be able to move between worker threads.
        fn send<T: Send>(_: T) {}
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Downstream>();
        let d = tempfile::tempdir().unwrap();
        let settings = DownstreamSettings {
            kind: DownstreamKind::Dir,
            dir: d.path().to_path_buf(),
            ..DownstreamSettings::default()
        };
        let ds = Downstream::new(&settings, "mugai.test").unwrap();
        send(ds.begin("", &MailParams::default()));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (_, tx) = rt.block_on(ds.begin("", &MailParams::default()));
        let mut tx = tx.unwrap();
        send(tx.rcpt("a@example.lg.jp"));
        send(tx.keepalive());
        send(tx.data(b"x\r\n"));
        let (_, tx) = rt.block_on(ds.begin("", &MailParams::default()));
        send(tx.unwrap().abort());

        let smtp = DownstreamSettings {
            kind: DownstreamKind::Smtp,
            ..DownstreamSettings::default()
        };
        let ds = Downstream::new(&smtp, "mugai.test")
            .unwrap()
            .with_data_timeout(Duration::from_secs(1));
        send(ds.begin("", &MailParams::default()));
    }
}
