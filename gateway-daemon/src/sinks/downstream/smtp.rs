//! The `smtp` downstream: an SMTP client in lockstep with the relay's upstream session.
//!
//! One connection per transaction. [`SmtpTransaction::begin`] connects (within
//! `connect_timeout_secs`, greeting included), sends EHLO, STARTTLS per the TLS mode (then
//! EHLO again) and MAIL; each command then waits for its reply for `reply_timeout_secs`,
//! except the reply to the message, which may take the data timeout (10 minutes by default).
//!
//! Connection states: a transaction holds `Some(conn)` while the session is known to be in
//! step, and `None` once it is not (a timeout, a lost connection, a `421`, a NOOP that failed,
//! or a future dropped mid-command: every command takes the connection out while it runs).
//! From `None`, the next [`SmtpTransaction::rcpt`] or [`SmtpTransaction::data`] opens a new
//! session and replays MAIL and the RCPTs accepted so far, in order; a replay that does not
//! reproduce every earlier 2xx is a `451`. `data` also retries once, with a replay, when a
//! session that was idle refuses DATA because it was closed meanwhile (`421`, EOF, reset):
//! nothing was delivered yet, so this can never duplicate. After the message is sent, nothing
//! is retried: a lost reply is a `451` and the upstream's retry may deliver twice.
//!
//! Replies are framed and cleaned by [`super::reply`]; EHLO extensions are read with
//! `smtp-proto`'s EHLO parser (the crate the upstream session is built on). lettre is not
//! used: its transport aborts a transaction at the first refused recipient, and its low-level
//! connection would still leave the timeouts, keepalive, replay and reply mapping to us.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;

use super::reply::{self, DsReply, Parsed};
use super::{MailParams, tls, transient};
use crate::config::{DownstreamSettings, TlsMode};
use crate::sources::smtp::session::Reply;

/// Bytes of message handed to the socket at a time.
const CHUNK: usize = 64 * 1024;

/// Lines of a downstream 5xx passed on to the upstream.
const MAX_PASSED_LINES: usize = 5;

/// How long the background QUIT may take.
const QUIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest envelope address we send (RFC 5321 §4.5.3.1.3: 256 octets for a path).
const MAX_ADDRESS: usize = 256;

/// The downstream MTA and how to talk to it (from the settings).
#[derive(Debug, Clone)]
pub(crate) struct SmtpClient {
    /// `address` as configured, for messages.
    address: String,
    host: String,
    port: u16,
    helo: String,
    tls: TlsMode,
    /// For `required`: verifying configuration.
    verified: Option<Arc<ClientConfig>>,
    /// For `opportunistic`: encrypting, not verifying.
    unverified: Option<Arc<ClientConfig>>,
    server_name: ServerName<'static>,
    connect_timeout: Duration,
    reply_timeout: Duration,
    data_timeout: Duration,
    keepalive: Duration,
}

impl SmtpClient {
    /// Checks and prepares the settings.
    pub(crate) fn new(
        settings: &DownstreamSettings,
        hostname: &str,
        keepalive: Duration,
        data_timeout: Duration,
    ) -> anyhow::Result<SmtpClient> {
        let (host, port) = split_address(&settings.address)
            .with_context(|| format!("downstream.address {:?}", settings.address))?;
        let helo = if settings.helo.is_empty() {
            hostname
        } else {
            &settings.helo
        };
        anyhow::ensure!(
            !helo.is_empty() && helo.bytes().all(|b| b.is_ascii_graphic()),
            "downstream.helo {helo:?}: not a host name (set downstream.helo or smtp.hostname)"
        );
        anyhow::ensure!(
            settings.connect_timeout_secs > 0 && settings.reply_timeout_secs > 0,
            "downstream.connect_timeout_secs and reply_timeout_secs must be at least 1"
        );
        let (verified, unverified) = match settings.tls {
            TlsMode::None => (None, None),
            TlsMode::Opportunistic => (None, Some(tls::unverified()?)),
            TlsMode::Required => (Some(tls::verified(&settings.tls_ca)?), None),
        };
        let server_name = match tls::server_name(&host) {
            Some(name) => name,
            None if settings.tls == TlsMode::Required => anyhow::bail!(
                "downstream.address {:?}: with tls = \"required\" the host must be a DNS name \
                 or an IP address to check the certificate against",
                settings.address
            ),
            // Opportunistic TLS checks no name; this one only fills the SNI field.
            None => {
                ServerName::try_from("downstream.invalid").context("placeholder TLS server name")?
            }
        };
        Ok(SmtpClient {
            address: settings.address.clone(),
            host,
            port,
            helo: helo.to_owned(),
            tls: settings.tls,
            verified,
            unverified,
            server_name,
            connect_timeout: Duration::from_secs(settings.connect_timeout_secs),
            reply_timeout: Duration::from_secs(settings.reply_timeout_secs),
            data_timeout,
            keepalive,
        })
    }

    /// Sets how long the reply to the message may take.
    pub(crate) fn set_data_timeout(&mut self, timeout: Duration) {
        self.data_timeout = timeout;
    }

    /// A new session, ready for MAIL: connect, greeting, EHLO, STARTTLS per the mode.
    async fn open(&self) -> Result<Live, Fail> {
        match self.tls {
            TlsMode::None => self.open_with(None, false).await,
            TlsMode::Required => self.open_with(self.verified.as_ref(), true).await,
            TlsMode::Opportunistic => match self.open_with(self.unverified.as_ref(), false).await {
                Err(Fail::Tls(why)) => {
                    tracing::info!(
                        downstream = %self.address,
                        reason = %why,
                        "Downstream TLS failed; trying once more in plaintext."
                    );
                    self.open_with(None, false).await
                }
                other => other,
            },
        }
    }

    async fn open_with(
        &self,
        tls: Option<&Arc<ClientConfig>>,
        required: bool,
    ) -> Result<Live, Fail> {
        let connecting = async {
            let tcp = TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map_err(Fail::Connect)?;
            // Commands are small and each waits for its reply: do not delay them.
            let _ = tcp.set_nodelay(true);
            let mut conn = Conn::new(tcp);
            let greeting = conn.read_reply(Stage::Greeting).await?;
            if greeting.code != 220 {
                return Err(Fail::Refused(Stage::Greeting, greeting));
            }
            Ok(conn)
        };
        let mut conn = timeout(self.connect_timeout, connecting)
            .await
            .map_err(|_| Fail::Timeout(Stage::Connect))??;
        self.ehlo(&mut conn).await?;

        let Some(config) = tls else {
            return Ok(conn.boxed());
        };
        if !conn.caps.starttls {
            if required {
                close(conn.boxed());
                return Err(Fail::Tls("STARTTLS not offered".into()));
            }
            return Ok(conn.boxed());
        }
        let r = conn
            .command("STARTTLS", self.reply_timeout, Stage::StartTls)
            .await?;
        if r.code != 220 {
            return Err(Fail::Tls(format!("STARTTLS refused: {}", r.summary())));
        }
        let Conn { io: tcp, buf, .. } = conn;
        if !buf.is_empty() {
            // Bytes sent before the handshake must not be read as if they came over TLS.
            tracing::warn!(
                downstream = %self.address,
                bytes = buf.len(),
                "Downstream sent data after its STARTTLS reply; discarded."
            );
        }
        let connector = TlsConnector::from(Arc::clone(config));
        let stream = timeout(
            self.connect_timeout,
            connector.connect(self.server_name.clone(), tcp),
        )
        .await
        .map_err(|_| Fail::Tls("TLS handshake timed out".into()))?
        .map_err(|e| Fail::Tls(format!("TLS handshake failed: {e}")))?;
        let mut conn = Conn::new(Box::new(stream) as Box<dyn Io>);
        self.ehlo(&mut conn).await?;
        Ok(conn)
    }

    async fn ehlo<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        conn: &mut Conn<S>,
    ) -> Result<(), Fail> {
        let r = conn
            .command(
                &format!("EHLO {}", self.helo),
                self.reply_timeout,
                Stage::Ehlo,
            )
            .await?;
        if r.code != 250 {
            return Err(Fail::Refused(Stage::Ehlo, r));
        }
        conn.caps = Caps::from_ehlo(&r);
        Ok(())
    }

    /// The MAIL command for this envelope on a session with `caps`.
    fn mail_line(&self, from: &str, params: &MailParams, caps: Caps) -> String {
        let mut line = format!("MAIL FROM:<{from}>");
        if params.eight_bit && caps.eight_bit {
            line.push_str(" BODY=8BITMIME");
        }
        if params.smtputf8 {
            line.push_str(" SMTPUTF8");
        }
        if let (Some(size), true) = (params.size, caps.size) {
            line.push_str(&format!(" SIZE={size}"));
        }
        line
    }

    /// The reply for the upstream after `fail`, logged for the operator.
    fn failed(&self, fail: &Fail) -> Reply {
        tracing::warn!(downstream = %self.address, error = %fail, "Downstream unavailable.");
        fail.reply()
    }
}

/// `HOST:PORT` or `[IPV6]:PORT` into its parts.
fn split_address(address: &str) -> anyhow::Result<(String, u16)> {
    let bracketed = address.strip_prefix('[');
    let (host, port) = match bracketed {
        Some(rest) => rest.split_once("]:").context("expected [IPV6]:PORT")?,
        None => address.rsplit_once(':').context("expected HOST:PORT")?,
    };
    anyhow::ensure!(!host.is_empty(), "expected HOST:PORT");
    anyhow::ensure!(
        bracketed.is_some() || !host.contains(':'),
        "an IPv6 address goes in brackets: [IPV6]:PORT"
    );
    let port: u16 = port.parse().context("bad port")?;
    anyhow::ensure!(port != 0, "port 0");
    Ok((host.to_owned(), port))
}

/// What the downstream offers (from its EHLO reply).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Caps {
    starttls: bool,
    eight_bit: bool,
    smtputf8: bool,
    size: bool,
}

impl Caps {
    fn from_ehlo(r: &DsReply) -> Caps {
        use smtp_proto::{EXT_8BIT_MIME, EXT_SIZE, EXT_SMTP_UTF8, EXT_START_TLS};
        match smtp_proto::EhloResponse::parse(&mut r.raw.iter()) {
            Ok(e) => Caps {
                starttls: e.capabilities & EXT_START_TLS != 0,
                eight_bit: e.capabilities & EXT_8BIT_MIME != 0,
                smtputf8: e.capabilities & EXT_SMTP_UTF8 != 0,
                size: e.capabilities & EXT_SIZE != 0,
            },
            Err(e) => {
                // A 250 we could frame but not read as extensions: assume none (no STARTTLS,
                // so `required` fails safe; no 8BITMIME/SMTPUTF8, so nothing is downgraded).
                tracing::debug!(error = ?e, "Downstream EHLO extensions unreadable; assuming none.");
                Caps::default()
            }
        }
    }
}

/// A byte stream to the downstream, plain or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A session after its setup.
type Live = Conn<Box<dyn Io>>;

/// One SMTP session: the stream and what was read but not yet used.
struct Conn<S> {
    io: S,
    buf: Vec<u8>,
    caps: Caps,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    fn new(io: S) -> Conn<S> {
        Conn {
            io,
            buf: Vec::new(),
            caps: Caps::default(),
        }
    }

    /// The next reply; bounded by [`reply::parse`], no timeout of its own.
    async fn read_reply(&mut self, stage: Stage) -> Result<DsReply, Fail> {
        loop {
            match reply::parse(&self.buf) {
                Parsed::Reply(r, used) => {
                    self.buf.drain(..used.min(self.buf.len()));
                    return Ok(r);
                }
                Parsed::Invalid(why) => return Err(Fail::Protocol(stage, why)),
                Parsed::Incomplete => {}
            }
            let mut chunk = [0u8; 4096];
            let n = self
                .io
                .read(&mut chunk)
                .await
                .map_err(|e| Fail::Io(stage, e))?;
            if n == 0 {
                return Err(Fail::Io(stage, io::ErrorKind::UnexpectedEof.into()));
            }
            self.buf
                .extend_from_slice(chunk.get(..n).unwrap_or_default());
        }
    }

    async fn write(&mut self, bytes: &[u8], stage: Stage) -> Result<(), Fail> {
        self.io
            .write_all(bytes)
            .await
            .map_err(|e| Fail::Io(stage, e))
    }

    /// Sends `line` and reads its reply, both within `limit`.
    async fn command(
        &mut self,
        line: &str,
        limit: Duration,
        stage: Stage,
    ) -> Result<DsReply, Fail> {
        let exchange = async {
            self.write(format!("{line}\r\n").as_bytes(), stage).await?;
            self.io.flush().await.map_err(|e| Fail::Io(stage, e))?;
            self.read_reply(stage).await
        };
        timeout(limit, exchange)
            .await
            .map_err(|_| Fail::Timeout(stage))?
    }
}

impl<S: Io + 'static> Conn<S> {
    fn boxed(self) -> Live {
        Conn {
            io: Box::new(self.io),
            buf: self.buf,
            caps: self.caps,
        }
    }
}

/// Ends a session politely in the background: QUIT, wait briefly for 221, close. Nobody waits
/// for it; without a runtime (never the case in the relay) the connection is just dropped.
fn close(mut conn: Live) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            let _ = conn.command("QUIT", QUIT_TIMEOUT, Stage::Quit).await;
            let _ = timeout(QUIT_TIMEOUT, conn.io.shutdown()).await;
        });
    }
}

/// Where in the session something happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Connect,
    Greeting,
    Ehlo,
    StartTls,
    Mail,
    Rcpt,
    Data,
    Message,
    Noop,
    Quit,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Connect => "connect",
            Stage::Greeting => "greeting",
            Stage::Ehlo => "EHLO",
            Stage::StartTls => "STARTTLS",
            Stage::Mail => "MAIL",
            Stage::Rcpt => "RCPT",
            Stage::Data => "DATA",
            Stage::Message => "end of data",
            Stage::Noop => "NOOP",
            Stage::Quit => "QUIT",
        })
    }
}

/// Why a session could not go on; every one is transient (451) for the upstream.
#[derive(Debug)]
enum Fail {
    /// The TCP connection could not be made (refused, unreachable, no such host).
    Connect(io::Error),
    /// No (complete) reply in time.
    Timeout(Stage),
    /// The connection broke (reset, EOF, broken pipe).
    Io(Stage, io::Error),
    /// The bytes were not an SMTP reply.
    Protocol(Stage, &'static str),
    /// A reply that ends session setup (greeting, EHLO).
    Refused(Stage, DsReply),
    /// STARTTLS required but not offered, refused, or the handshake failed.
    Tls(String),
}

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fail::Connect(e) => write!(f, "cannot connect: {e}"),
            Fail::Timeout(Stage::Connect) => write!(f, "no connection or greeting in time"),
            Fail::Timeout(stage) => write!(f, "no reply to {stage} in time"),
            Fail::Io(stage, e) => write!(f, "connection lost at {stage}: {e}"),
            Fail::Protocol(stage, why) => write!(f, "bad reply to {stage}: {why}"),
            Fail::Refused(stage, r) => write!(f, "{stage} refused: {}", r.summary()),
            Fail::Tls(why) => write!(f, "TLS: {why}"),
        }
    }
}

impl Fail {
    fn reply(&self) -> Reply {
        let status = match self {
            Fail::Connect(_) | Fail::Timeout(Stage::Connect) => "4.4.1",
            Fail::Refused(..) => "4.4.0",
            Fail::Timeout(_) | Fail::Io(..) | Fail::Protocol(..) | Fail::Tls(_) => "4.4.2",
        };
        transient(status, format_args!("downstream {self}"))
    }

    /// The connection is gone or out of step, but the downstream was reachable and idle:
    /// worth one new session before anything was delivered.
    fn is_lost_connection(&self) -> bool {
        matches!(self, Fail::Io(..))
    }
}

/// The upstream's reply for a downstream reply to a transaction command that was not 2xx.
fn answer(stage: Stage, r: &DsReply) -> Reply {
    if r.is_transient() {
        return transient(
            "4.4.0",
            format_args!("downstream deferred {stage}: {}", r.summary()),
        );
    }
    if r.is_permanent() {
        let status = r.status.as_deref().unwrap_or("5.0.0");
        let lines = r
            .lines
            .iter()
            .take(MAX_PASSED_LINES)
            .enumerate()
            .map(|(i, text)| {
                let prefix = if i == 0 { "downstream: " } else { "" };
                format!("{status} {prefix}{text}").trim_end().to_owned()
            })
            .collect();
        return Reply {
            code: r.code,
            lines,
        };
    }
    // A 2xx or 3xx where it makes no sense (354 to MAIL, 250 to DATA).
    transient(
        "4.4.2",
        format_args!(
            "downstream gave an unexpected reply to {stage}: {}",
            r.summary()
        ),
    )
}

/// Refuses an address that cannot go into a command line as it is; the upstream session
/// parsed it already, so this is a second line of defence against command injection.
fn check_address(address: &str, smtputf8: bool, stage: Stage) -> Result<(), Reply> {
    let status = if stage == Stage::Mail {
        "5.1.7"
    } else {
        "5.1.3"
    };
    if address.len() > MAX_ADDRESS
        || address
            .chars()
            .any(|c| c.is_control() || c == '<' || c == '>')
    {
        return Err(Reply::new(
            501,
            format!("{status} Address not usable downstream"),
        ));
    }
    if !smtputf8 && !address.is_ascii() {
        return Err(Reply::new(553, "5.6.7 Non-ASCII address needs SMTPUTF8"));
    }
    Ok(())
}

/// An open downstream transaction (see the module docs for its states).
pub(crate) struct SmtpTransaction {
    client: Arc<SmtpClient>,
    conn: Option<Live>,
    from: String,
    params: MailParams,
    accepted: Vec<String>,
}

impl fmt::Debug for SmtpTransaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpTransaction")
            .field("downstream", &self.client.address)
            .field("connected", &self.conn.is_some())
            .field("recipients", &self.accepted.len())
            .finish()
    }
}

impl Drop for SmtpTransaction {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            close(conn);
        }
    }
}

impl SmtpTransaction {
    /// Opens a session and sends MAIL (see [`super::Downstream::begin`]).
    pub(crate) async fn begin(
        client: &Arc<SmtpClient>,
        from: &str,
        params: &MailParams,
    ) -> (Reply, Option<SmtpTransaction>) {
        if let Err(reply) = check_address(from, params.smtputf8, Stage::Mail) {
            return (reply, None);
        }
        let mut conn = match client.open().await {
            Ok(conn) => conn,
            Err(fail) => return (client.failed(&fail), None),
        };
        if params.smtputf8 && !conn.caps.smtputf8 {
            tracing::warn!(
                downstream = %client.address,
                "Downstream does not offer SMTPUTF8; an internationalized message was refused."
            );
            close(conn);
            let reply = if from.is_ascii() {
                Reply::new(
                    550,
                    "5.6.9 Downstream does not support SMTPUTF8; not delivered unconverted",
                )
            } else {
                Reply::new(553, "5.6.7 Downstream does not support non-ASCII addresses")
            };
            return (reply, None);
        }
        let line = client.mail_line(from, params, conn.caps);
        match conn.command(&line, client.reply_timeout, Stage::Mail).await {
            Ok(r) if r.is_positive() => {
                let tx = SmtpTransaction {
                    client: Arc::clone(client),
                    conn: Some(conn),
                    from: from.to_owned(),
                    params: *params,
                    accepted: Vec::new(),
                };
                (Reply::new(250, "2.1.0 Ok"), Some(tx))
            }
            Ok(r) => {
                tracing::debug!(downstream = %client.address, reply = %r.summary(), "Downstream refused MAIL.");
                if r.code != 421 {
                    close(conn);
                }
                (answer(Stage::Mail, &r), None)
            }
            Err(fail) => (client.failed(&fail), None),
        }
    }

    /// See [`super::Transaction::rcpt`].
    pub(crate) async fn rcpt(&mut self, to: &str) -> Reply {
        if let Err(reply) = check_address(to, self.params.smtputf8, Stage::Rcpt) {
            return reply;
        }
        let mut conn = match self.conn.take() {
            Some(conn) => conn,
            None => match self.reopen().await {
                Ok(conn) => conn,
                Err(reply) => return reply,
            },
        };
        let line = format!("RCPT TO:<{to}>");
        match conn
            .command(&line, self.client.reply_timeout, Stage::Rcpt)
            .await
        {
            Ok(r) if r.is_positive() => {
                self.accepted.push(to.to_owned());
                self.conn = Some(conn);
                Reply::new(250, "2.1.5 Ok")
            }
            Ok(r) => {
                tracing::debug!(downstream = %self.client.address, reply = %r.summary(), "Downstream refused a recipient.");
                if r.code != 421 {
                    self.conn = Some(conn);
                }
                answer(Stage::Rcpt, &r)
            }
            Err(fail) => self.client.failed(&fail),
        }
    }

    /// See [`super::Transaction::keepalive`].
    pub(crate) async fn keepalive(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        // A NOOP slower than the keepalive interval means a sick session: a fresh one at
        // `data` is better than waiting the full reply timeout here.
        let limit = self
            .client
            .reply_timeout
            .min(self.client.keepalive)
            .max(Duration::from_secs(1));
        match conn.command("NOOP", limit, Stage::Noop).await {
            Ok(r) if r.is_positive() => self.conn = Some(conn),
            Ok(r) => {
                tracing::debug!(downstream = %self.client.address, reply = %r.summary(), "Downstream refused NOOP; the session will be re-opened.");
                if r.code != 421 {
                    close(conn);
                }
            }
            Err(fail) => {
                tracing::debug!(downstream = %self.client.address, error = %fail, "Keepalive failed; the session will be re-opened.");
            }
        }
    }

    /// See [`super::Transaction::data`].
    pub(crate) async fn data(mut self, message: &[u8]) -> Reply {
        if self.accepted.is_empty() {
            return Reply::new(554, "5.5.1 No valid recipients");
        }
        let (mut conn, mut fresh) = match self.conn.take() {
            Some(conn) => (conn, false),
            None => match self.reopen().await {
                Ok(conn) => (conn, true),
                Err(reply) => return reply,
            },
        };
        let needs_8bit = message.iter().any(|b| *b >= 0x80);
        loop {
            if needs_8bit && !conn.caps.eight_bit {
                tracing::warn!(
                    downstream = %self.client.address,
                    "Downstream does not offer 8BITMIME; an 8-bit message was refused."
                );
                close(conn);
                return Reply::new(
                    554,
                    "5.6.3 Downstream does not support 8BITMIME; not delivered unconverted",
                );
            }
            match conn
                .command("DATA", self.client.reply_timeout, Stage::Data)
                .await
            {
                Ok(r) if r.code == 354 => break,
                Ok(r) if r.code == 421 && !fresh => {
                    tracing::debug!(downstream = %self.client.address, reply = %r.summary(), "Downstream closed the idle session; re-opening.");
                }
                Ok(r) => {
                    if r.code != 421 {
                        close(conn);
                    }
                    return answer(Stage::Data, &r);
                }
                Err(fail) if fail.is_lost_connection() && !fresh => {
                    tracing::debug!(downstream = %self.client.address, error = %fail, "Downstream dropped the idle session; re-opening.");
                }
                Err(fail) => return self.client.failed(&fail),
            }
            fresh = true;
            conn = match self.reopen().await {
                Ok(conn) => conn,
                Err(reply) => return reply,
            };
        }

        let limit = self.client.data_timeout;
        let bare = match timeout(limit, send_message(&mut conn, message)).await {
            Ok(Ok(bare)) => bare,
            Ok(Err(fail)) => return self.client.failed(&fail),
            Err(_) => return self.client.failed(&Fail::Timeout(Stage::Message)),
        };
        if bare > 0 {
            tracing::warn!(
                downstream = %self.client.address,
                count = bare,
                "Message had bare CR or LF; sent as line ends."
            );
        }
        let outcome = timeout(limit, conn.read_reply(Stage::Message))
            .await
            .unwrap_or(Err(Fail::Timeout(Stage::Message)));
        match outcome {
            Ok(r) if r.is_positive() => {
                close(conn);
                tracing::debug!(downstream = %self.client.address, reply = %r.summary(), "Message delivered downstream.");
                Reply::new(
                    250,
                    format!("2.0.0 Ok: delivered downstream ({})", r.summary()),
                )
            }
            Ok(r) => {
                if r.code != 421 {
                    close(conn);
                }
                answer(Stage::Message, &r)
            }
            Err(fail) => {
                // Sent, but the outcome is unknown: the upstream retries, which at worst
                // delivers twice.
                self.client.failed(&fail)
            }
        }
    }

    /// See [`super::Transaction::abort`].
    pub(crate) fn abort(mut self) {
        if let Some(conn) = self.conn.take() {
            close(conn);
        }
    }

    /// A new session with MAIL and every accepted RCPT replayed, or the reply for the
    /// upstream when that fails.
    async fn reopen(&mut self) -> Result<Live, Reply> {
        let client = &self.client;
        let mut conn = client.open().await.map_err(|fail| client.failed(&fail))?;
        let refused = |what: String| {
            tracing::warn!(downstream = %client.address, step = %what, "Downstream did not accept the replayed transaction.");
            transient(
                "4.4.2",
                format_args!("downstream session was re-opened but {what}"),
            )
        };
        if self.params.smtputf8 && !conn.caps.smtputf8 {
            close(conn);
            return Err(refused("SMTPUTF8 is no longer offered".into()));
        }
        let line = client.mail_line(&self.from, &self.params, conn.caps);
        match conn.command(&line, client.reply_timeout, Stage::Mail).await {
            Ok(r) if r.is_positive() => {}
            Ok(r) => {
                close(conn);
                return Err(refused(format!("MAIL got {}", r.summary())));
            }
            Err(fail) => return Err(client.failed(&fail)),
        }
        for to in &self.accepted {
            let line = format!("RCPT TO:<{to}>");
            match conn.command(&line, client.reply_timeout, Stage::Rcpt).await {
                Ok(r) if r.is_positive() => {}
                Ok(r) => {
                    close(conn);
                    return Err(refused(format!("RCPT got {}", r.summary())));
                }
                Err(fail) => return Err(client.failed(&fail)),
            }
        }
        Ok(conn)
    }
}

/// Sends `message` as DATA content and the final dot; returns how many bare CR or LF were
/// sent as line ends.
async fn send_message(conn: &mut Live, message: &[u8]) -> Result<usize, Fail> {
    let mut stuffer = Stuffer::default();
    let mut out = Vec::with_capacity(CHUNK * 2 + 8);
    for chunk in message.chunks(CHUNK) {
        out.clear();
        stuffer.push(chunk, &mut out);
        conn.write(&out, Stage::Message).await?;
    }
    out.clear();
    let bare = stuffer.finish(&mut out);
    conn.write(&out, Stage::Message).await?;
    conn.io
        .flush()
        .await
        .map_err(|e| Fail::Io(Stage::Message, e))?;
    Ok(bare)
}

/// Turns message bytes into DATA content, in pieces: a `.` starting a line is doubled, every
/// line ends in CRLF (a bare CR or LF becomes CRLF too, so nothing the downstream might read
/// as a line end escapes the stuffing), and [`Stuffer::finish`] ends the last line and adds
/// the final `.`.
#[derive(Debug)]
struct Stuffer {
    line_start: bool,
    pending_cr: bool,
    bare: usize,
}

impl Default for Stuffer {
    fn default() -> Stuffer {
        Stuffer {
            line_start: true,
            pending_cr: false,
            bare: 0,
        }
    }
}

impl Stuffer {
    fn push(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &b in input {
            if self.pending_cr {
                self.pending_cr = false;
                out.extend_from_slice(b"\r\n");
                self.line_start = true;
                if b == b'\n' {
                    continue;
                }
                self.bare += 1;
            }
            match b {
                b'\r' => self.pending_cr = true,
                b'\n' => {
                    out.extend_from_slice(b"\r\n");
                    self.line_start = true;
                    self.bare += 1;
                }
                _ => {
                    if self.line_start && b == b'.' {
                        out.push(b'.');
                    }
                    out.push(b);
                    self.line_start = false;
                }
            }
        }
    }

    fn finish(mut self, out: &mut Vec<u8>) -> usize {
        if self.pending_cr {
            out.extend_from_slice(b"\r\n");
            self.line_start = true;
            self.bare += 1;
        }
        if !self.line_start {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
        self.bare
    }
}

#[cfg(test)]
mod tests;
