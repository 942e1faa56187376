//! The relay's I/O loop: a tokio listener running one [`Session`] per connection, in lockstep
//! with a downstream transaction.
//!
//! The model is a synchronous proxy (amavisd-new, Postfix `smtpd_proxy_filter`): MAIL and each
//! RCPT are offered downstream as the client sends them, so the client hears the downstream's
//! verdict on each recipient; at the end of data the message is sanitized in the worker pool,
//! the original is held in the quarantine (durable), the sanitized message goes downstream,
//! and only when the downstream said 250 does the client hear 250. Nothing is queued here: on
//! any transient failure the client hears 451 and its own queue keeps the message.
//!
//! What is transient and what is not (CONTRACT.md):
//! - downstream 4xx, timeout, unreachable; quarantine disk full; no worker could be started;
//!   too busy to start sanitizing before the reply deadline → **451**;
//! - anything about the content (malformed, hostile, too slow, the worker killed) → the core's
//!   verdict, at worst a notice-only message, **never** 451 (the sender would retry the same
//!   hostile input for days);
//! - downstream 5xx → the same 5xx.
//!
//! CPU-heavy work never runs on the async threads: sanitizing runs on the blocking pool behind
//! a semaphore ([`crate::config::SmtpSettings::max_sanitizing`]), so a burst of large PDFs
//! queues there while every session keeps answering. While a message is being sanitized the
//! downstream transaction gets a NOOP every `downstream.keepalive_secs`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use sanitizer_core::report::Verdict;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use super::session::{Envelope, Event, Reply, Session, SessionConfig};
use crate::sanitize::{Current, Job, Mode};
use crate::sinks::audit::{AuditLog, AuditRecord, Durations};
use crate::sinks::downstream::{Downstream, MailParams, Transaction};
use crate::sinks::index::{HeldItem, HoldStatus};
use crate::sinks::quarantine::QuarantineId;
use crate::sinks::vault::Vault;

/// Where the relay is in its life: running, draining after SIGTERM (finish what is in flight,
/// take nothing new), or stopping (the grace period is over: 421 to whoever is left).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// Serving.
    Running,
    /// SIGTERM: no new connections or transactions; in-flight transactions finish.
    Draining,
    /// Grace period over: every session answers 421 and closes.
    Stopping,
}

/// The relay's settings, from `[smtp]`.
#[derive(Debug, Clone)]
pub struct RelaySettings {
    /// The protocol layer's settings.
    pub session: SessionConfig,
    /// Client networks allowed to connect.
    pub networks: Vec<IpNet>,
    /// Waiting for a command.
    pub command_timeout: Duration,
    /// Waiting for each chunk of message data.
    pub data_timeout: Duration,
    /// From the end of data to our reply.
    pub reply_deadline: Duration,
    /// `Received:` headers a message may carry before it is a loop.
    pub max_received: usize,
}

/// Everything a session needs, shared by all sessions.
pub struct Relay {
    settings: RelaySettings,
    tls: Option<tokio_rustls::TlsAcceptor>,
    downstream: Downstream,
    transform: Arc<Current>,
    sanitizing: Arc<Semaphore>,
    vault: Arc<Vault>,
    audit: Option<Arc<AuditLog>>,
    state: watch::Receiver<RunState>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("settings", &self.settings)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// What a relay is built from.
pub struct RelayParts {
    /// `[smtp]`, resolved.
    pub settings: RelaySettings,
    /// The STARTTLS acceptor, when a certificate is configured.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Where sanitized messages go.
    pub downstream: Downstream,
    /// The transform (worker pool), shared with the other sources and replaced on SIGHUP.
    pub transform: Arc<Current>,
    /// Messages sanitized at once.
    pub max_sanitizing: usize,
    /// The quarantine.
    pub vault: Arc<Vault>,
    /// The audit log, if configured.
    pub audit: Option<Arc<AuditLog>>,
    /// The run state the sessions watch.
    pub state: watch::Receiver<RunState>,
}

/// A connection's facts, for `Received:`, the audit log and the quarantine index.
#[derive(Debug, Clone)]
struct Peer {
    ip: IpAddr,
    tls: bool,
}

/// The 12-hex-digit queue id of one message (in our replies, `Received:` and the audit log).
fn queue_id() -> String {
    let n: u64 = rand::random();
    format!("{:012X}", n & 0xFFFF_FFFF_FFFF)
}

/// Whether `ip` is in one of `networks` (IPv4-mapped IPv6 addresses count as IPv4).
pub fn allowed(ip: IpAddr, networks: &[IpNet]) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    networks.iter().any(|n| n.contains(&ip))
}

/// The number of `Received:` fields in the header of `message`.
pub fn received_count(message: &[u8]) -> usize {
    let end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(message.len(), |p| p + 2);
    let head = message.get(..end).unwrap_or(message);
    head.split(|&b| b == b'\n')
        .filter(|line| {
            line.get(..9)
                .is_some_and(|p| p.eq_ignore_ascii_case(b"received:"))
        })
        .count()
}

/// A value for a trace header: printable ASCII without spaces or parentheses, bounded.
fn trace_token(s: &str) -> String {
    let t: String = s
        .chars()
        .filter(|c| c.is_ascii_graphic() && !matches!(c, '(' | ')' | ';' | '<' | '>'))
        .take(255)
        .collect();
    if t.is_empty() { "unknown".into() } else { t }
}

/// The `Received:` field we prepend (RFC 5321 4.4), CRLF-terminated and folded.
fn received_header(
    env: &Envelope,
    peer: &Peer,
    hostname: &str,
    qid: &str,
    now: &jiff::ZonedDateTime,
) -> String {
    let with = match (peer.tls, env.smtputf8) {
        (false, false) => "ESMTP",
        (true, false) => "ESMTPS",
        (false, true) => "UTF8SMTP",
        (true, true) => "UTF8SMTPS",
    };
    let date = jiff::fmt::rfc2822::to_string(now).unwrap_or_default();
    let mut h = format!(
        "Received: from {} ([{}])\r\n\tby {} (Mugai) with {with} id {qid}",
        trace_token(&env.helo),
        peer.ip,
        trace_token(hostname),
    );
    if let [one] = env.to.as_slice() {
        h.push_str(&format!("\r\n\tfor <{}>", trace_token(one)));
    }
    h.push_str(&format!(";\r\n\t{date}\r\n"));
    h
}

/// Header fields for the quarantine index: Message-ID, Subject, From (decoded by the mail
/// parser; untrusted text, escaped by whoever displays it).
fn header_summary(message: &[u8]) -> (Option<String>, Option<String>, Option<String>) {
    let Some(parsed) = mail_parser::MessageParser::default().parse_headers(message) else {
        return (None, None, None);
    };
    let bound = |s: &str| s.chars().take(998).collect::<String>();
    let id = parsed.message_id().map(bound);
    let subject = parsed.subject().map(bound);
    let from = parsed
        .from()
        .and_then(|a| a.first())
        .and_then(|a| a.address().map(bound).or_else(|| a.name().map(bound)));
    (id, subject, from)
}

/// Whether a reply is one of ours for a transient failure.
fn transient(text: &str) -> Reply {
    Reply::new(451, text.to_string())
}

impl Relay {
    /// A relay from its parts.
    pub fn new(parts: RelayParts) -> Relay {
        Relay {
            settings: parts.settings,
            tls: parts.tls,
            downstream: parts.downstream,
            transform: parts.transform,
            sanitizing: Arc::new(Semaphore::new(parts.max_sanitizing.max(1))),
            vault: parts.vault,
            audit: parts.audit,
            state: parts.state,
        }
    }

    /// Accepts connections on `listener` until the run state leaves `Running`, each served by
    /// its own task; at most `max_sessions` at once (more wait in the accept queue). Returns
    /// when every session has ended.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, max_sessions: usize) {
        let sessions = Arc::new(Semaphore::new(max_sessions.max(1)));
        let mut state = self.state.clone();
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            let permit = tokio::select! {
                p = Arc::clone(&sessions).acquire_owned() => p,
                _ = state.wait_for(|s| *s != RunState::Running) => break,
            };
            let Ok(permit) = permit else { break };
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = state.wait_for(|s| *s != RunState::Running) => break,
            };
            match accepted {
                Ok((stream, addr)) => {
                    let relay = Arc::clone(&self);
                    tasks.spawn(async move {
                        relay.connection(stream, addr).await;
                        drop(permit);
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            while tasks.try_join_next().is_some() {}
        }
        drop(listener);
        while tasks.join_next().await.is_some() {}
    }

    /// One connection, from greeting to close.
    async fn connection(&self, stream: TcpStream, addr: SocketAddr) {
        let _ = stream.set_nodelay(true);
        crate::sources::http::metrics::metrics().inc_smtp_session();
        let ip = addr.ip();
        let mut stream = stream;
        if !allowed(ip, &self.settings.networks) {
            tracing::info!(client = %ip, "connection refused: client network not allowed");
            let reply = Reply::new(554, "5.7.1 Access denied: client network not allowed");
            let _ = stream.write_all(&reply.to_wire()).await;
            let _ = stream.shutdown().await;
            return;
        }
        if *self.state.borrow() != RunState::Running {
            let reply = Reply::new(421, "4.3.2 Service shutting down, try again later");
            let _ = stream.write_all(&reply.to_wire()).await;
            return;
        }
        tracing::debug!(client = %ip, "connected");
        let mut session = Session::new(SessionConfig {
            starttls: self.tls.is_some(),
            ..self.settings.session.clone()
        });
        let mut peer = Peer { ip, tls: false };
        let first = session.greeting().to_wire();
        match self
            .run(&mut stream, &mut session, &peer, Some(first))
            .await
        {
            Ended::Closed => {}
            Ended::StartTls => {
                let Some(acceptor) = self.tls.clone() else {
                    return;
                };
                match tokio::time::timeout(self.settings.command_timeout, acceptor.accept(stream))
                    .await
                {
                    Ok(Ok(mut tls)) => {
                        session.tls_started();
                        peer.tls = true;
                        if let Ended::StartTls = self.run(&mut tls, &mut session, &peer, None).await
                        {
                            tracing::warn!(client = %ip, "STARTTLS inside TLS refused");
                        }
                        let _ = tls.shutdown().await;
                    }
                    Ok(Err(e)) => tracing::info!(client = %ip, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::info!(client = %ip, "TLS handshake timed out"),
                }
            }
        }
    }

    /// Runs the session on `io` until it closes or switches to TLS.
    async fn run<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        io: &mut S,
        session: &mut Session,
        peer: &Peer,
        greeting: Option<Vec<u8>>,
    ) -> Ended {
        let mut out: Vec<u8> = greeting.unwrap_or_default();
        let mut txn: Option<Transaction> = None;
        let mut buf = vec![0u8; 64 * 1024];
        let mut state = self.state.clone();
        let ended = 'session: loop {
            while let Some(event) = session.next_event() {
                match event {
                    Event::Reply(r) => out.extend_from_slice(&r.to_wire()),
                    Event::Reset(r) => {
                        if let Some(t) = txn.take() {
                            t.abort().await;
                        }
                        out.extend_from_slice(&r.to_wire());
                    }
                    Event::Mail { from } => {
                        // Lockstep: what the client pipelined so far is answered first.
                        if flush(io, &mut out).await.is_err() {
                            break 'session Ended::Closed;
                        }
                        let reply = if *state.borrow() != RunState::Running {
                            Reply::new(421, "4.3.2 Service shutting down, try again later")
                        } else {
                            if let Some(t) = txn.take() {
                                t.abort().await;
                            }
                            let params = MailParams {
                                eight_bit: false,
                                smtputf8: false,
                                size: None,
                            };
                            let params = session_params(session, params);
                            let (reply, t) = self.downstream.begin(&from, &params).await;
                            txn = t;
                            reply
                        };
                        let closing = reply.code == 421;
                        out.extend_from_slice(&session.answer(reply).to_wire());
                        if closing {
                            let _ = flush(io, &mut out).await;
                            break 'session Ended::Closed;
                        }
                    }
                    Event::Rcpt { to } => {
                        if flush(io, &mut out).await.is_err() {
                            break 'session Ended::Closed;
                        }
                        let reply = match txn.as_mut() {
                            Some(t) => t.rcpt(&to).await,
                            None => transient("4.4.1 No downstream transaction"),
                        };
                        out.extend_from_slice(&session.answer(reply).to_wire());
                    }
                    Event::Message { envelope, data } => {
                        if flush(io, &mut out).await.is_err() {
                            break 'session Ended::Closed;
                        }
                        let reply = match txn.take() {
                            Some(t) => self.message(t, envelope, data, peer).await,
                            None => transient("4.4.1 No downstream transaction"),
                        };
                        out.extend_from_slice(&session.answer(reply).to_wire());
                    }
                    Event::StartTls(r) => {
                        if let Some(t) = txn.take() {
                            t.abort().await;
                        }
                        out.extend_from_slice(&r.to_wire());
                        if flush(io, &mut out).await.is_err() {
                            break 'session Ended::Closed;
                        }
                        return Ended::StartTls;
                    }
                    Event::Close(r) => {
                        out.extend_from_slice(&r.to_wire());
                        let _ = flush(io, &mut out).await;
                        break 'session Ended::Closed;
                    }
                }
            }
            if flush(io, &mut out).await.is_err() {
                break Ended::Closed;
            }
            let now = *state.borrow();
            if now == RunState::Stopping || (now == RunState::Draining && !session.in_transaction())
            {
                out.extend_from_slice(
                    &Reply::new(421, "4.3.2 Service shutting down, try again later").to_wire(),
                );
                let _ = flush(io, &mut out).await;
                break Ended::Closed;
            }
            let wait = if session.in_data() {
                self.settings.data_timeout
            } else {
                self.settings.command_timeout
            };
            let read = tokio::select! {
                r = tokio::time::timeout(wait, io.read(&mut buf)) => r,
                _ = state.changed() => continue,
            };
            match read {
                Err(_) => {
                    out.extend_from_slice(
                        &Reply::new(421, "4.4.2 Timeout exceeded, closing").to_wire(),
                    );
                    let _ = flush(io, &mut out).await;
                    break Ended::Closed;
                }
                Ok(Ok(0)) | Ok(Err(_)) => break Ended::Closed,
                Ok(Ok(n)) => session.feed(buf.get(..n).unwrap_or_default()),
            }
        };
        if let Some(t) = txn.take() {
            t.abort().await;
        }
        ended
    }

    /// A complete message: sanitize, hold, deliver, record; the reply for the client.
    async fn message(
        &self,
        txn: Transaction,
        envelope: Envelope,
        data: Vec<u8>,
        peer: &Peer,
    ) -> Reply {
        let started = Instant::now();
        let deadline = started + self.settings.reply_deadline;
        let received = received_count(&data);
        if received > self.settings.max_received {
            txn.abort().await;
            tracing::warn!(hops = received, "mail loop: too many Received headers");
            return Reply::new(
                554,
                format!("5.4.6 Too many hops ({received} Received: headers): mail loop"),
            );
        }
        let qid = queue_id();
        let now = jiff::ZonedDateTime::now();
        let mut original =
            received_header(&envelope, peer, &self.settings.session.hostname, &qid, &now)
                .into_bytes();
        original.extend_from_slice(&data);
        drop(data);

        // Sanitize in the pool, behind the semaphore, keeping the downstream session alive.
        let mut txn = txn;
        let sanitized = self.sanitize(&mut txn, original, deadline).await;
        let sanitize_ms = started.elapsed().as_millis();
        let (original, mut outcome) = match sanitized {
            Ok(v) => v,
            Err(reply) => {
                txn.abort().await;
                tracing::warn!(queue_id = %qid, reply = %reply.lines.join(" "), "deferred before delivery");
                return reply;
            }
        };
        // A mail always has an output (notice-only at worst); without one there is nothing
        // safe to deliver, so nothing is.
        let Some(output) = outcome.output.take() else {
            txn.abort().await;
            tracing::error!(queue_id = %qid, "the transform returned no message for a mail");
            return transient("4.3.0 Internal error, try again later");
        };
        let output = output.into_bytes();
        let report_id = outcome.report.id.clone();

        // The original is durable in the quarantine before anything is delivered.
        let (message_id, subject, header_from) = header_summary(&original);
        let held = if outcome.report.verdict == Verdict::Clean {
            None
        } else {
            let item = HeldItem {
                received_at: now.timestamp().to_string(),
                client_ip: Some(peer.ip.to_string()),
                helo: Some(envelope.helo.clone()),
                mail_from: Some(envelope.from.clone()),
                rcpt_to: envelope.to.clone(),
                message_id: message_id.clone(),
                subject,
                header_from,
                size: original.len() as u64,
                ..HeldItem::for_report(&outcome.report, "smtp")
            };
            outcome.report.quarantine_id = Some(QuarantineId::of(&original).to_string());
            let vault = Arc::clone(&self.vault);
            let report = outcome.report.clone();
            let original = Arc::clone(&original);
            // An empty `report_json` is filled from the report by the vault.
            let put =
                tokio::task::spawn_blocking(move || vault.hold(&original, &item, &report)).await;
            match put {
                Ok(Ok(id)) => Some(id),
                Ok(Err(e)) => {
                    txn.abort().await;
                    tracing::error!(queue_id = %qid, error = %e, "quarantine failed; deferring");
                    return transient("4.3.0 Quarantine unavailable, try again later");
                }
                Err(e) => {
                    txn.abort().await;
                    tracing::error!(queue_id = %qid, error = %e, "quarantine task failed");
                    return transient("4.3.0 Quarantine unavailable, try again later");
                }
            }
        };

        // Deliver, within what is left of the reply deadline.
        let left = deadline.saturating_duration_since(Instant::now());
        let deliver_started = Instant::now();
        let reply = match tokio::time::timeout(left, txn.data(&output)).await {
            Ok(r) => r,
            Err(_) => transient("4.4.7 Downstream delivery timed out"),
        };
        let deliver_ms = deliver_started.elapsed().as_millis();
        let reply_text = format!("{} {}", reply.code, reply.lines.join(" "));
        if held.is_some() {
            let status = if reply.is_positive() {
                HoldStatus::Delivered
            } else {
                HoldStatus::Deferred
            };
            let vault = Arc::clone(&self.vault);
            let rid = report_id.clone();
            let text = reply_text.clone();
            let set =
                tokio::task::spawn_blocking(move || vault.set_delivery(&rid, status, &text)).await;
            if !matches!(set, Ok(Ok(()))) {
                tracing::error!(queue_id = %qid, "could not record the downstream reply");
            }
        }
        if let Some(audit) = &self.audit {
            let mut record = AuditRecord::from_report(&outcome.report);
            record.queue_id = qid.clone();
            record.client_ip = Some(peer.ip.to_string());
            record.mail_from = Some(envelope.from.clone());
            record.rcpt_to = envelope.to.clone();
            record.message_id = message_id.clone();
            record.size_in = original.len() as u64;
            record.size_out = Some(output.len() as u64);
            record.downstream_reply = Some(reply_text.clone());
            record.durations_ms = Durations {
                sanitize: ms(sanitize_ms),
                deliver: ms(deliver_ms),
                total: ms(started.elapsed().as_millis()),
            };
            let audit = Arc::clone(audit);
            let wrote = tokio::task::spawn_blocking(move || audit.append(&record)).await;
            if !matches!(wrote, Ok(Ok(()))) {
                tracing::error!(queue_id = %qid, "could not append to the audit log");
            }
        }
        tracing::info!(
            queue_id = %qid,
            verdict = outcome.report.verdict.as_str(),
            report_id = %report_id,
            recipients = envelope.to.len(),
            size = original.len(),
            downstream = %reply.code,
            ms = started.elapsed().as_millis() as u64,
            "message"
        );
        crate::sources::http::metrics::metrics().record(
            "smtp",
            true,
            &outcome.report,
            Duration::from_millis(ms(sanitize_ms)),
        );
        if reply.is_positive() {
            Reply::new(250, format!("2.0.0 Ok: queued as {qid}"))
        } else {
            reply
        }
    }

    /// Runs the transform on the blocking pool; `Err` is the transient reply to give.
    async fn sanitize(
        &self,
        txn: &mut Transaction,
        original: Vec<u8>,
        deadline: Instant,
    ) -> Result<(Arc<Vec<u8>>, crate::sanitize::JobOutcome), Reply> {
        // keepalive_secs = 0 turns keepalive off (a dropped session is then replayed).
        let every = txn.keepalive_interval();
        let mut tick = tokio::time::interval(if every.is_zero() {
            Duration::from_secs(86_400)
        } else {
            every
        });
        tick.tick().await;
        // Wait for a sanitizing slot, keeping the downstream session alive meanwhile.
        let sem = Arc::clone(&self.sanitizing);
        let acquire = sem.acquire_owned();
        tokio::pin!(acquire);
        let permit = loop {
            tokio::select! {
                p = &mut acquire => break p,
                _ = tick.tick() => txn.keepalive().await,
                _ = tokio::time::sleep_until(deadline.into()) => {
                    return Err(transient("4.3.2 Too busy to sanitize, try again later"));
                }
            }
        };
        let Ok(permit) = permit else {
            return Err(transient("4.3.2 Service shutting down"));
        };
        let transform = self.transform.get();
        let job = Job {
            input: original,
            name: None,
            mode: Mode::Mail,
            password: None,
        };
        let task = tokio::task::spawn_blocking(move || {
            let r = transform.run(&job);
            (job.input, r)
        });
        tokio::pin!(task);
        let joined = loop {
            tokio::select! {
                r = &mut task => break r,
                _ = tick.tick() => txn.keepalive().await,
            }
        };
        drop(permit);
        match joined {
            Ok((input, Ok(outcome))) => Ok((Arc::new(input), outcome)),
            Ok((_, Err(e))) => {
                tracing::error!(error = %e, "the transform could not run");
                Err(transient("4.3.0 Sanitizer unavailable, try again later"))
            }
            Err(e) => {
                tracing::error!(error = %e, "the sanitizing task failed");
                Err(transient("4.3.0 Sanitizer unavailable, try again later"))
            }
        }
    }
}

/// The envelope parameters the client gave, for the downstream MAIL. SIZE is not passed on:
/// the sanitized message is not the one the client measured.
fn session_params(session: &Session, mut params: MailParams) -> MailParams {
    let env = session.envelope();
    params.eight_bit = env.eight_bit;
    params.smtputf8 = env.smtputf8;
    params.size = None;
    params
}

/// Milliseconds as the audit log records them.
fn ms(v: u128) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// Writes and clears `out`.
async fn flush<S: AsyncWrite + Unpin>(io: &mut S, out: &mut Vec<u8>) -> std::io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    io.write_all(out).await?;
    io.flush().await?;
    out.clear();
    Ok(())
}

/// How a session run ended.
enum Ended {
    /// Closed (QUIT, error, timeout, shutdown).
    Closed,
    /// The client asked for TLS and was told 220.
    StartTls,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn received_fields_are_counted_in_the_header_only() {
        let m = b"Received: a\r\nreceived: b\r\nRECEIVED:c\r\nSubject: x\r\n\r\nReceived: body\r\n";
        assert_eq!(received_count(m), 3);
        assert_eq!(received_count(b"Subject: none\r\n\r\n"), 0);
        assert_eq!(received_count(b"Received: x"), 1);
        assert_eq!(received_count(b""), 0);
    }

    #[test]
    fn our_received_field_is_folded_and_inert() {
        let env = Envelope {
            helo: "evil\r\nX-Injected: 1 (x)".into(),
            to: vec!["staff@city.example.lg.jp".into()],
            ..Envelope::default()
        };
        let peer = Peer {
            ip: "192.0.2.1".parse().unwrap(),
            tls: true,
        };
        let now = jiff::Timestamp::from_second(1_800_000_000)
            .unwrap()
            .to_zoned_datetime(jiff::tz::TimeZone::UTC);
        let h = received_header(&env, &peer, "mugai.example", "ABC123", &now);
        assert!(h.starts_with("Received: from evilX-Injected:1x ([192.0.2.1])\r\n\tby mugai.example (Mugai) with ESMTPS id ABC123\r\n\tfor <staff@city.example.lg.jp>;\r\n\t"), "{h}");
        assert!(h.ends_with("+0000\r\n"), "{h}");
        assert_eq!(h.matches("\r\n").count(), 4, "{h}");
        assert!(h.lines().skip(1).all(|l| l.starts_with('\t')), "{h}");
        // Several recipients: no `for` clause (it would disclose the others).
        let env = Envelope {
            to: vec!["a@x".into(), "b@x".into()],
            ..Envelope::default()
        };
        let h = received_header(&env, &peer, "m", "Q", &now);
        assert!(!h.contains("for <"), "{h}");
        assert!(h.starts_with("Received: from unknown "), "{h}");
    }

    #[test]
    fn client_networks_include_mapped_ipv4() {
        let nets: Vec<IpNet> = vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
        assert!(allowed("127.0.0.1".parse().unwrap(), &nets));
        assert!(allowed("::ffff:127.0.0.1".parse().unwrap(), &nets));
        assert!(allowed("::1".parse().unwrap(), &nets));
        assert!(!allowed("10.0.0.1".parse().unwrap(), &nets));
        assert!(!allowed("::ffff:10.0.0.1".parse().unwrap(), &nets));
    }

    #[test]
    fn header_summary_decodes_japanese_subjects() {
        let m = b"From: =?ISO-2022-JP?B?GyRCOzNFRBsoQg==?= <yamada@example.jp>\r\n\
Subject: =?ISO-2022-JP?B?GyRCOCtAUT1xJE4kNDBGRmIbKEI=?=\r\nMessage-ID: <a@b>\r\n\r\nbody\r\n";
        let (id, subject, from) = header_summary(m);
        assert_eq!(id.as_deref(), Some("a@b"));
        assert_eq!(subject.as_deref(), Some("見積書のご案内"));
        assert_eq!(from.as_deref(), Some("yamada@example.jp"));
        assert_eq!(header_summary(b"garbage"), (None, None, None));
    }
}
