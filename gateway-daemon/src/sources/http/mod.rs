//! The HTTP API: a hyper 1 HTTP/1.1 server on the daemon's tokio runtime, a source like the
//! SMTP relay (same transform, quarantine and audit log, from [`crate::serve::Shared`]).
//!
//! ## Routes
//! | route | auth | what |
//! |---|---|---|
//! | `GET /healthz` | none | 200 while the process runs |
//! | `GET /readyz` | none | 200 when new work can be done (running, quarantine writable, a worker starts), else 503 |
//! | `GET /metrics` | none from loopback, else any user | Prometheus text ([`metrics`]) |
//! | `POST /v1/sanitize?filename=N[&format=json]` | any role | one file ([`api`]) |
//! | `POST /v1/sanitize/mail[?filename=N&format=json]` | any role | one RFC 5322 message |
//! | `GET /v1/reports/{id}` | the caller who made it; approver, admin | a recent report |
//! | `GET /v1/quarantine?...` | any role (requesters: their items) | index search, newest first |
//! | `GET /v1/quarantine/{report_id}` | as above | metadata and report |
//! | `GET /v1/quarantine/{report_id}/original` | approver, admin | the original, audited |
//! | `/`, `/console/...` | console session | the web console ([`console`]) |
//!
//! ## Authentication
//! Every `/v1` route needs `Authorization: Bearer <token>` or HTTP Basic `user:password`
//! against the users store ([`crate::users`]); 401 with `WWW-Authenticate` otherwise. Failed
//! logins are limited per user and per client address ([`auth`]): after 5 in a minute, 429.
//!
//! ## Limits
//! - Bodies over `http.max_body_bytes` get 413: refused from `Content-Length` before reading,
//!   or while streaming as soon as the count passes the limit (never more is buffered).
//! - At most `http.max_concurrent` `/v1` requests at once; the next one gets 503 with
//!   `Retry-After` (the health routes are never refused, so probes see the truth).
//! - Each `/v1` request has `http.timeout_secs` from its headers to its answer (503 after);
//!   request headers must arrive within 30 s.
//! - Listening anywhere but loopback requires `http.tls_cert` and `http.tls_key` (rustls).
//! - When the daemon leaves `Running` (SIGTERM), the listener closes and open connections
//!   finish the request in flight, then close; when the grace period ends they are dropped.
//!
//! ## Adding a route
//! 1. Add a variant to [`Route`] and its pattern in [`Route::parse`] (method and path
//!    segments; `{id}`-style segments are captured as `String`s), and its metrics name in
//!    [`Route::name`].
//! 2. Handle it in `Api::dispatch`: the arm receives the authenticated [`Ctx`] (actor,
//!    client address) and the request, and returns a [`Resp`]. Use [`read_body`] for bodies
//!    (it enforces the limit), [`json`] / [`error`] for answers, and check the role with
//!    [`Ctx::require`]. The concurrency cap, timeout, auth and metrics apply automatically to
//!    every `/v1` route.

pub mod api;
pub mod auth;
pub mod console;
pub mod metrics;
pub mod release_api;

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::actor::{Actor, Role};
use crate::config::HttpSettings;
use crate::release::Release;
use crate::serve::Shared;
use crate::sources::smtp::server::RunState;
use crate::users::UserStore;

/// A response body: the whole answer in memory (outputs are bounded by the body limit).
pub type Body = Full<Bytes>;
/// A response.
pub type Resp = Response<Body>;

/// Seconds a client is told to wait after a transient failure.
pub const RETRY_AFTER_SECS: u64 = 30;

/// A route, parsed from the method and path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /healthz`.
    Healthz,
    /// `GET /readyz`.
    Readyz,
    /// `GET /metrics`.
    Metrics,
    /// `POST /v1/sanitize`.
    Sanitize,
    /// `POST /v1/sanitize/mail`.
    SanitizeMail,
    /// `GET /v1/reports/{id}`.
    Report(String),
    /// `GET /v1/quarantine`.
    QuarantineList,
    /// `GET /v1/quarantine/{report_id}`.
    QuarantineItem(String),
    /// `GET /v1/quarantine/{report_id}/original`.
    QuarantineOriginal(String),
    /// `POST /v1/quarantine/{report_id}/requests`: ask for a release.
    ReleaseRequest(String),
    /// `GET /v1/quarantine/{report_id}/requests`.
    ReleaseRequestsOf(String),
    /// `POST /v1/quarantine/{report_id}/release`: approve or refuse.
    ReleaseDecide(String),
    /// `POST /v1/quarantine/{report_id}/password`: unlock a PPAP archive.
    ReleasePassword(String),
    /// `GET /v1/requests`.
    ReleaseRequests,
    /// `/` and `/console/...`: the web console (its own sessions; [`console`]).
    Console,
    /// A known path with another method.
    MethodNotAllowed,
    /// Anything else.
    NotFound,
}

impl Route {
    /// The route of `method` `path`.
    pub fn parse(method: &Method, path: &str) -> Route {
        let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let get = method == Method::GET || method == Method::HEAD;
        let post = method == Method::POST;
        if path == "/" || path == "/console" || path.starts_with("/console/") {
            return Route::Console;
        }
        match segs.as_slice() {
            ["healthz"] if get => Route::Healthz,
            ["readyz"] if get => Route::Readyz,
            ["metrics"] if get => Route::Metrics,
            ["v1", "sanitize"] if post => Route::Sanitize,
            ["v1", "sanitize", "mail"] if post => Route::SanitizeMail,
            ["v1", "reports", id] if get => Route::Report((*id).to_owned()),
            ["v1", "quarantine"] if get => Route::QuarantineList,
            ["v1", "quarantine", id] if get => Route::QuarantineItem((*id).to_owned()),
            ["v1", "quarantine", id, "original"] if get => {
                Route::QuarantineOriginal((*id).to_owned())
            }
            ["v1", "quarantine", id, "requests"] if post => Route::ReleaseRequest((*id).to_owned()),
            ["v1", "quarantine", id, "requests"] if get => {
                Route::ReleaseRequestsOf((*id).to_owned())
            }
            ["v1", "quarantine", id, "release"] if post => Route::ReleaseDecide((*id).to_owned()),
            ["v1", "quarantine", id, "password"] if post => {
                Route::ReleasePassword((*id).to_owned())
            }
            ["v1", "requests"] if get => Route::ReleaseRequests,
            ["healthz" | "readyz" | "metrics"]
            | ["v1", "sanitize"]
            | ["v1", "sanitize", "mail"]
            | ["v1", "reports", _]
            | ["v1", "quarantine"]
            | ["v1", "quarantine", _]
            | [
                "v1",
                "quarantine",
                _,
                "original" | "requests" | "release" | "password",
            ]
            | ["v1", "requests"] => Route::MethodNotAllowed,
            _ => Route::NotFound,
        }
    }

    /// A fixed name for metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Route::Healthz => "healthz",
            Route::Readyz => "readyz",
            Route::Metrics => "metrics",
            Route::Sanitize => "sanitize",
            Route::SanitizeMail => "sanitize_mail",
            Route::Report(_) => "report",
            Route::QuarantineList => "quarantine_list",
            Route::QuarantineItem(_) => "quarantine_item",
            Route::QuarantineOriginal(_) => "quarantine_original",
            Route::ReleaseRequest(_) => "release_request",
            Route::ReleaseRequestsOf(_) => "release_requests_of",
            Route::ReleaseDecide(_) => "release_decide",
            Route::ReleasePassword(_) => "release_password",
            Route::ReleaseRequests => "release_requests",
            Route::Console => "console",
            Route::MethodNotAllowed => "method_not_allowed",
            Route::NotFound => "not_found",
        }
    }
}

/// Who is asking, as authenticated, and from where.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The authenticated user.
    pub actor: Actor,
    /// The client's address.
    pub client_ip: IpAddr,
}

impl Ctx {
    /// 403 unless the actor has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), Box<Resp>> {
        if roles.contains(&self.actor.role) {
            Ok(())
        } else {
            Err(Box::new(error(
                StatusCode::FORBIDDEN,
                &format!("the {} role may not do this", self.actor.role.as_str()),
            )))
        }
    }

    /// Whether this actor sees every item (approver, admin) rather than their own.
    pub fn sees_all(&self) -> bool {
        self.actor.role.may_decide()
    }
}

/// A JSON answer.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Resp {
    let mut body = serde_json::to_vec(value).unwrap_or_default();
    body.push(b'\n');
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

/// A JSON error `{"error": message}`; 503 answers carry `Retry-After`, 401 a
/// `WWW-Authenticate` challenge for both schemes.
pub fn error(status: StatusCode, message: &str) -> Resp {
    let mut r = json(status, &serde_json::json!({ "error": message }));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut().insert(
            http::header::RETRY_AFTER,
            HeaderValue::from(RETRY_AFTER_SECS),
        );
    }
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().append(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"mugai\""),
        );
        r.headers_mut().append(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"mugai\", charset=\"UTF-8\""),
        );
    }
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        // The rest of the body is not read: the connection cannot be reused.
        r.headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

/// Reads a request body of at most `limit` bytes: 413 as soon as it is known to be larger
/// (from `Content-Length`, or counting while streaming), 400 when the body breaks off.
pub async fn read_body(req: Request<Incoming>, limit: u64) -> Result<Vec<u8>, Box<Resp>> {
    let too_big = || {
        Box::new(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the body is larger than the limit of {limit} bytes (http.max_body_bytes)"),
        ))
    };
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_big());
    }
    let cap = usize::try_from(declared.unwrap_or(0).min(limit)).unwrap_or(0);
    let mut buf = Vec::with_capacity(cap);
    let mut body = req.into_body();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            Box::new(error(
                StatusCode::BAD_REQUEST,
                &format!("the body could not be read: {e}"),
            ))
        })?;
        if let Ok(data) = frame.into_data() {
            if (buf.len() as u64).saturating_add(data.len() as u64) > limit {
                return Err(too_big());
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf)
}

/// A report kept for `GET /v1/reports/{id}`.
#[derive(Debug, Clone)]
struct Cached {
    at: Instant,
    owner: String,
    report: Arc<serde_json::Value>,
}

/// Recent reports, in memory: each kept `ttl`, at most `max` (oldest dropped first). Lost on
/// restart; reports of held items stay in the quarantine index for good.
#[derive(Debug)]
pub struct ReportCache {
    ttl: Duration,
    max: usize,
    inner: Mutex<(HashMap<String, Cached>, VecDeque<String>)>,
}

impl ReportCache {
    /// Keeps reports `ttl`, at most `max` of them.
    pub fn new(ttl: Duration, max: usize) -> ReportCache {
        ReportCache {
            ttl,
            max,
            inner: Mutex::new((HashMap::new(), VecDeque::new())),
        }
    }

    /// Keeps `report` (JSON) under `id`, visible to `owner`.
    pub fn insert(&self, id: &str, owner: &str, report: serde_json::Value, now: Instant) {
        let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let (map, order) = &mut *g;
        map.insert(
            id.to_owned(),
            Cached {
                at: now,
                owner: owner.to_owned(),
                report: Arc::new(report),
            },
        );
        order.push_back(id.to_owned());
        Self::prune(map, order, self.ttl, self.max, now);
    }

    fn prune(
        map: &mut HashMap<String, Cached>,
        order: &mut VecDeque<String>,
        ttl: Duration,
        max: usize,
        now: Instant,
    ) {
        while let Some(first) = order.front() {
            let expired = map
                .get(first)
                .is_none_or(|c| now.saturating_duration_since(c.at) >= ttl);
            if !expired && map.len() <= max {
                break;
            }
            if let Some(id) = order.pop_front() {
                map.remove(&id);
            }
        }
    }

    /// The report `id` and who made it, unless expired.
    pub fn get(&self, id: &str, now: Instant) -> Option<(String, Arc<serde_json::Value>)> {
        let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let (map, order) = &mut *g;
        Self::prune(map, order, self.ttl, self.max, now);
        map.get(id)
            .filter(|c| now.saturating_duration_since(c.at) < self.ttl)
            .map(|c| (c.owner.clone(), Arc::clone(&c.report)))
    }
}

/// Most reports kept in memory.
const MAX_CACHED_REPORTS: usize = 50_000;

/// The HTTP API's state, shared by every connection.
#[derive(Debug)]
pub struct Api {
    shared: Shared,
    settings: HttpSettings,
    users: Arc<UserStore>,
    limiter: auth::RateLimiter,
    reports: ReportCache,
    slots: Arc<Semaphore>,
    in_flight: AtomicU64,
    ready: Mutex<Option<(Instant, Result<(), String>)>>,
    release: Release,
    console: console::Sessions,
    previews: console::preview::Previews,
}

/// Whether `ip` is a loopback address (IPv4-mapped ones included).
fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// The TLS acceptor for `cert` and `key` (PEM), HTTP/1.1 by ALPN; errors name the key at
/// fault.
fn tls_acceptor(cert: &Path, key: &Path) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    let mut config = crate::serve::tls_server_config(cert, key, "http")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Checks `[http]`: the listen address, TLS for anything but loopback, limits. Returns the
/// address and the TLS acceptor, if any.
pub fn settings(
    http: &HttpSettings,
) -> anyhow::Result<(SocketAddr, Option<tokio_rustls::TlsAcceptor>)> {
    let addr: SocketAddr = http
        .listen
        .parse()
        .with_context(|| format!("http.listen: {:?} is not IP:PORT", http.listen))?;
    let has_cert = !http.tls_cert.as_os_str().is_empty();
    let has_key = !http.tls_key.as_os_str().is_empty();
    if has_cert != has_key {
        bail!("http.tls_cert and http.tls_key must be set together");
    }
    if !has_cert && !is_loopback(addr.ip()) {
        bail!(
            "http.listen {addr}: not a loopback address, so http.tls_cert and http.tls_key are \
             required (passwords and originals must not cross the network in the clear)"
        );
    }
    if http.max_body_bytes == 0 || http.max_concurrent == 0 || http.timeout_secs == 0 {
        bail!("http.max_body_bytes, http.max_concurrent and http.timeout_secs must be above 0");
    }
    if http.users_file.as_os_str().is_empty() {
        bail!("http.users_file is empty: the API has no users (see `mugai user add`)");
    }
    let tls = if has_cert {
        Some(tls_acceptor(&http.tls_cert, &http.tls_key)?)
    } else {
        None
    };
    Ok((addr, tls))
}

/// Starts the HTTP API's listener into `servers` (from `mugai serve`).
pub async fn start(shared: &Shared, servers: &mut tokio::task::JoinSet<()>) -> anyhow::Result<()> {
    let http = shared.config.http.clone();
    let (addr, tls) = settings(&http)?;
    let users = Arc::new(UserStore::open(&http.users_file).context("http.users_file")?);
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("http.listen: cannot listen on {addr}"))?;
    let local = listener.local_addr().map_or(addr, |a| a);
    let api = Arc::new(Api {
        shared: shared.clone(),
        limiter: auth::RateLimiter::new(auth::MAX_FAILURES, auth::WINDOW),
        reports: ReportCache::new(
            Duration::from_secs(http.report_retention_secs),
            MAX_CACHED_REPORTS,
        ),
        slots: Arc::new(Semaphore::new(http.max_concurrent)),
        in_flight: AtomicU64::new(0),
        ready: Mutex::new(None),
        release: Release::from_shared(shared).context("release service")?,
        console: console::Sessions::default(),
        previews: console::preview::Previews::default(),
        users,
        settings: http,
    });
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(listen = %local, tls = tls.is_some(), "HTTP API listening");
    crate::cli::say(&format!("mugai: HTTP API on {scheme}://{local}/"));
    servers.spawn(api.serve(listener, tls));
    Ok(())
}

impl Api {
    /// The release service (the endpoints of [`release_api`]).
    pub fn release(&self) -> Result<Release, String> {
        Ok(self.release.clone())
    }

    /// The transform jobs run with now.
    pub fn transform(&self) -> Arc<dyn crate::sanitize::Transform> {
        self.shared.transform.get()
    }

    /// Accepts connections until the daemon leaves `Running`, then waits for the open ones.
    async fn serve(self: Arc<Self>, listener: TcpListener, tls: Option<tokio_rustls::TlsAcceptor>) {
        let mut state = self.shared.state.clone();
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let accepted = tokio::select! {
                _ = state.wait_for(|s| *s != RunState::Running) => break,
                accepted = listener.accept() => accepted,
                Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            };
            match accepted {
                Ok((stream, peer)) => {
                    conns.spawn(Arc::clone(&self).connection(stream, peer, tls.clone()));
                }
                Err(e) => {
                    // Out of file descriptors, usually: let some connections end.
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        drop(listener);
        while conns.join_next().await.is_some() {}
    }

    async fn connection(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) {
        let _ = stream.set_nodelay(true);
        match tls {
            Some(acceptor) => {
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
                    Ok(Ok(s)) => self.http(TokioIo::new(s), peer).await,
                    Ok(Err(e)) => {
                        tracing::debug!(client_ip = %peer.ip(), error = %e, "TLS handshake failed")
                    }
                    Err(_) => tracing::debug!(client_ip = %peer.ip(), "TLS handshake timed out"),
                }
            }
            None => self.http(TokioIo::new(stream), peer).await,
        }
    }

    async fn http<I>(self: Arc<Self>, io: TokioIo<I>, peer: SocketAddr)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let api = Arc::clone(&self);
        let service = hyper::service::service_fn(move |req| {
            let api = Arc::clone(&api);
            async move { Ok::<_, Infallible>(api.handle(req, peer).await) }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(30))
            .serve_connection(io, service);
        tokio::pin!(conn);
        let mut state = self.shared.state.clone();
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(client_ip = %peer.ip(), error = %e, "HTTP connection ended");
                }
                return;
            }
            _ = state.wait_for(|s| *s != RunState::Running) => {}
        }
        // Draining: finish the request in flight, then close; drop it when the grace ends.
        conn.as_mut().graceful_shutdown();
        tokio::select! {
            _ = conn.as_mut() => {}
            _ = state.wait_for(|s| *s == RunState::Stopping) => {}
        }
    }

    /// Answers one request.
    async fn handle(self: Arc<Self>, req: Request<Incoming>, peer: SocketAddr) -> Resp {
        let route = Route::parse(req.method(), req.uri().path());
        let name = route.name();
        let resp = self.route(route, req, peer).await;
        metrics::metrics().inc_http_request(name, resp.status().as_u16());
        resp
    }

    async fn route(
        self: &Arc<Self>,
        route: Route,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Resp {
        match route {
            Route::Healthz => return json(StatusCode::OK, &serde_json::json!({"status": "ok"})),
            Route::Readyz => return self.readyz().await,
            Route::Console => return console::handle(self, req, peer).await,
            Route::NotFound => return error(StatusCode::NOT_FOUND, "no such route"),
            Route::MethodNotAllowed => {
                return error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed here");
            }
            _ => {}
        }
        let header = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .map(|v| v.as_bytes().to_vec());
        if route == Route::Metrics && is_loopback(peer.ip()) {
            return self.metrics().await;
        }
        let actor = match auth::authenticate(
            &self.users,
            &self.limiter,
            header.as_deref(),
            peer.ip(),
        )
        .await
        {
            Ok(a) => a,
            Err(auth::Denied::Unauthorized) => {
                return error(StatusCode::UNAUTHORIZED, "authentication required");
            }
            Err(auth::Denied::Throttled(wait)) => {
                let mut r = error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many failed logins; try again later",
                );
                r.headers_mut().insert(
                    http::header::RETRY_AFTER,
                    HeaderValue::from(wait.as_secs().max(1)),
                );
                return r;
            }
            Err(auth::Denied::Unavailable(_)) => {
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the users store is unavailable",
                );
            }
        };
        if route == Route::Metrics {
            return self.metrics().await;
        }
        let ctx = Ctx {
            actor,
            client_ip: peer.ip(),
        };
        let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() else {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many requests in progress; try again later",
            );
        };
        // A guard, not a decrement after the await: hyper drops this future when the client
        // goes away, and the gauge must not leak then.
        struct InFlight<'a>(&'a AtomicU64);
        impl Drop for InFlight<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let counted = InFlight(&self.in_flight);
        let limit = Duration::from_secs(self.settings.timeout_secs);
        let answered = tokio::time::timeout(limit, self.dispatch(route, ctx, req)).await;
        drop(counted);
        drop(permit);
        answered.unwrap_or_else(|_| {
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the request took longer than http.timeout_secs",
            )
        })
    }

    /// Runs an authenticated `/v1` route.
    async fn dispatch(self: &Arc<Self>, route: Route, ctx: Ctx, req: Request<Incoming>) -> Resp {
        let query = req.uri().query().unwrap_or("").to_owned();
        let result = match route {
            Route::Sanitize => {
                api::sanitize(self, &ctx, req, &query, crate::sanitize::Mode::File).await
            }
            Route::SanitizeMail => {
                api::sanitize(self, &ctx, req, &query, crate::sanitize::Mode::Mail).await
            }
            Route::Report(id) => api::report(self, &ctx, &id),
            Route::QuarantineList => api::quarantine_list(self, &ctx, &query).await,
            Route::QuarantineItem(id) => api::quarantine_item(self, &ctx, &id).await,
            Route::QuarantineOriginal(id) => api::quarantine_original(self, &ctx, &id).await,
            Route::ReleaseRequest(id) => release_api::request(self, &ctx, &id, req).await,
            Route::ReleaseRequestsOf(id) => release_api::requests_of(self, &ctx, &id).await,
            Route::ReleaseDecide(id) => release_api::decide(self, &ctx, &id, req).await,
            Route::ReleasePassword(id) => release_api::password(self, &ctx, &id, req).await,
            Route::ReleaseRequests => release_api::requests(self, &ctx, &query).await,
            _ => Ok(error(StatusCode::NOT_FOUND, "no such route")),
        };
        result.unwrap_or_else(|r| *r)
    }

    async fn metrics(&self) -> Resp {
        let vault = Arc::clone(&self.shared.vault);
        let count = tokio::task::spawn_blocking(move || {
            vault
                .index()
                .count(&crate::sinks::index::Search::default())
                .ok()
        })
        .await
        .ok()
        .flatten();
        let text = metrics::metrics().render(metrics::Gauges {
            quarantine_items: count,
            pool_workers: self.shared.workers as u64,
            http_in_flight: self.in_flight.load(Ordering::Relaxed),
        });
        let mut r = Response::new(Full::new(Bytes::from(text)));
        r.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        r
    }

    /// Whether new work can be done now: running, the quarantine writable and its index
    /// readable, and the transform able to run a job (a worker starts). The result is kept
    /// for a few seconds so frequent probes do not start a worker each.
    async fn readyz(self: &Arc<Self>) -> Resp {
        const KEEP: Duration = Duration::from_secs(5);
        if *self.shared.state.borrow() != RunState::Running {
            return error(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
        }
        let cached = self
            .ready
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .filter(|(at, _)| at.elapsed() < KEEP)
            .map(|(_, r)| r.clone());
        let result = match cached {
            Some(r) => r,
            None => {
                let api = Arc::clone(self);
                let r = tokio::task::spawn_blocking(move || api.ready_check())
                    .await
                    .unwrap_or_else(|e| Err(format!("readiness check failed: {e}")));
                *self.ready.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some((Instant::now(), r.clone()));
                r
            }
        };
        match result {
            Ok(()) => json(StatusCode::OK, &serde_json::json!({"status": "ready"})),
            Err(why) => error(StatusCode::SERVICE_UNAVAILABLE, &why),
        }
    }

    fn ready_check(&self) -> Result<(), String> {
        let root = self.shared.vault.store().root().to_owned();
        nix::unistd::access(&root, nix::unistd::AccessFlags::W_OK)
            .map_err(|e| format!("quarantine {} is not writable: {e}", root.display()))?;
        self.shared
            .vault
            .index()
            .count(&crate::sinks::index::Search {
                limit: 1,
                ..Default::default()
            })
            .map_err(|e| format!("quarantine index: {e}"))?;
        let job = crate::sanitize::Job {
            input: b"ready\n".to_vec(),
            name: Some("readyz.txt".into()),
            mode: crate::sanitize::Mode::File,
            password: None,
        };
        self.shared
            .transform
            .get()
            .run(&job)
            .map(|_| ())
            .map_err(|e| format!("the sanitizer cannot run: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse() {
        assert_eq!(Route::parse(&Method::GET, "/healthz"), Route::Healthz);
        assert_eq!(Route::parse(&Method::POST, "/v1/sanitize"), Route::Sanitize);
        assert_eq!(
            Route::parse(&Method::GET, "/v1/quarantine/abc/original"),
            Route::QuarantineOriginal("abc".into())
        );
        assert_eq!(
            Route::parse(&Method::GET, "/v1/sanitize"),
            Route::MethodNotAllowed
        );
        assert_eq!(
            Route::parse(&Method::GET, "/v1/sanitize/x"),
            Route::NotFound
        );
        assert_eq!(Route::parse(&Method::GET, "//"), Route::NotFound);
        assert_eq!(Route::parse(&Method::GET, "/"), Route::Console);
        assert_eq!(
            Route::parse(&Method::POST, "/console/login"),
            Route::Console
        );
        assert_eq!(Route::parse(&Method::GET, "/consoles"), Route::NotFound);
    }

    #[test]
    fn reports_expire_and_are_bounded() {
        let c = ReportCache::new(Duration::from_secs(10), 2);
        let t0 = Instant::now();
        c.insert("a", "alice", serde_json::json!({"id": "a"}), t0);
        assert_eq!(c.get("a", t0 + Duration::from_secs(9)).unwrap().0, "alice");
        assert!(c.get("a", t0 + Duration::from_secs(10)).is_none());
        c.insert("b", "x", serde_json::json!({}), t0);
        c.insert("c", "x", serde_json::json!({}), t0);
        c.insert("d", "x", serde_json::json!({}), t0);
        assert!(c.get("b", t0).is_none(), "oldest dropped over the bound");
        assert!(c.get("d", t0).is_some());
    }

    #[test]
    fn non_loopback_needs_tls() {
        let mut s = HttpSettings {
            listen: "0.0.0.0:8443".into(),
            ..HttpSettings::default()
        };
        let Err(e) = settings(&s) else {
            panic!("a public address without TLS was accepted")
        };
        assert!(format!("{e:#}").contains("tls_cert"), "{e:#}");
        s.listen = "[::1]:8025".into();
        assert!(settings(&s).is_ok());
        assert!(is_loopback("::ffff:127.0.0.1".parse().unwrap()));
    }
}
