//! The relay's downstream: where a sanitized message goes, in lockstep with the upstream MTA.
//!
//! The relay is a synchronous proxy (amavisd-new, Postfix `smtpd_proxy_filter`): it answers
//! the upstream client only after the downstream answered, and keeps no queue of its own. So
//! every step here returns the [`Reply`] to give upstream:
//! [`Downstream::begin`] (MAIL), [`Transaction::rcpt`] (each RCPT), [`Transaction::data`] (the
//! sanitized message), [`Transaction::abort`] (RSET or a dropped client).
//!
//! Kinds: `dir` (`dir.rs` documents the files): every message becomes a file in a directory,
//! durable before 250. `smtp` (relaying to the LGWAN-side MTA) comes next.

mod dir;

use std::sync::Arc;
use std::time::Duration;

use crate::config::{DownstreamKind, DownstreamSettings};
use crate::sources::smtp::session::Reply;

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
            DownstreamKind::Smtp => {
                anyhow::bail!("downstream kind \"smtp\" for {hostname}: not built yet")
            }
        };
        Ok(Downstream { kind, keepalive })
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
        }
    }
}

/// One open transaction (after a 2xx to MAIL); `Send`.
#[derive(Debug)]
pub struct Transaction {
    kind: TxKind,
    keepalive: Duration,
}

#[derive(Debug)]
enum TxKind {
    Dir(dir::DirTransaction),
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
        }
    }

    /// Called every [`Transaction::keepalive_interval`] while the message is being sanitized:
    /// sends NOOP so a downstream with a short idle timeout keeps the session. A failure only
    /// marks the connection dead (`data` re-opens it); it is never an error to the caller.
    pub async fn keepalive(&mut self) {
        match &mut self.kind {
            TxKind::Dir(_) => {}
        }
    }

    /// Sends the (sanitized) message, CRLF line ends: if the connection died meanwhile,
    /// re-opens it and replays MAIL and the accepted RCPTs first; then DATA, the dot-stuffed
    /// body, the final dot. Returns the reply for the upstream (2xx only when the downstream
    /// said 2xx to the message; `dir`: once the file is durable).
    pub async fn data(self, message: &[u8]) -> Reply {
        match self.kind {
            TxKind::Dir(t) => t.data(message).await,
        }
    }

    /// Abandons the transaction (the upstream sent RSET, or went away): QUIT and close.
    pub async fn abort(self) {
        match self.kind {
            TxKind::Dir(_) => {}
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
