//! 無害化コンソール: the web console for quarantine review and release, served on the HTTP
//! listener at `/` and `/console/...` next to the `/v1` API.
//!
//! ## Pages
//! | route | who | what |
//! |---|---|---|
//! | `GET /console/login`, `POST /console/login` | anyone | サインイン (users store, API rate limits) |
//! | `POST /console/logout` | signed in | サインアウト |
//! | `GET /console/` | signed in | 隔離一覧: filters, newest first, paged |
//! | `GET /console/item/{report_id}` | who may see it | 詳細: envelope, reasons, preview, report, hash, release state |
//! | `POST /console/item/{id}/request` | requester | 解除申請 ([`crate::release::Release::request`]) |
//! | `POST /console/item/{id}/approve`, `.../refuse` | approver, admin (not the requester) | 承認 / 却下 |
//! | `POST /console/item/{id}/unlock` | who may see it | PPAP password ([`crate::release::Release::unlock_with_password`]) |
//! | `GET /console/audit` | admin | 監査ログ, chain verified ([`crate::sinks::audit::verify`]) |
//! | `GET /console/config` | admin | 設定の確認: running config, `serve::check` warnings |
//! | `GET /console/static/style.css` | anyone | the embedded style sheet |
//!
//! ## Sessions and CSRF
//! Signing in makes a session: 32 random bytes (hex) in the `mugai_session` cookie
//! (`HttpOnly; SameSite=Strict; Path=/`, plus `Secure` when the listener has TLS). The server
//! keeps the map token → (actor, CSRF token, last use); a session unused for
//! `http.console_idle_secs` is gone, as are all sessions on restart. The actor (role,
//! addresses) is the one verified at sign-in. Every form carries the session's CSRF token
//! (32 other random bytes) in a hidden `csrf` field; every POST but sign-in without the
//! right one (compared in constant time) gets 403, and a POST whose `Origin` header names
//! another host gets 403 too (`Origin: null`, which our own no-referrer policy makes browsers
//! send, is left to the token). Failed sign-ins count against the same per-user and
//! per-address limits as the API's Basic logins ([`super::auth`]).
//!
//! ## Output safety
//! Pages are [maud] templates: every interpolated string is HTML-escaped at compile-checked
//! call sites. Strings from mail or files also go through
//! [`crate::sinks::outbox::escape_for_display`], so bidi controls (RTLO) and other invisible
//! or control characters show as `\u{202e}`-style text. Every answer carries a strict
//! `Content-Security-Policy` (no script at all), `X-Frame-Options: DENY`,
//! `Referrer-Policy: no-referrer`, `X-Content-Type-Options: nosniff` and
//! `Cache-Control: no-store`.

mod pages;
pub mod preview;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use rand::TryRng as _;

use super::api::query_pairs;
use super::{Api, Resp};
use crate::actor::{Actor, Role};
use crate::i18n::Lang;
use crate::release::{ReleaseError, Target};
use crate::sinks::index::{HeldItem, ReleaseRequest, RequestFilter, Search};

/// The session cookie's name.
const SESSION_COOKIE: &str = "mugai_session";
/// The language cookie's name (set by `?lang=`).
const LANG_COOKIE: &str = "mugai_lang";
/// Most sessions kept; the least recently used goes first over it.
const MAX_SESSIONS: usize = 10_000;
/// Largest form body.
const MAX_FORM_BYTES: u64 = 64 * 1024;
/// Rows per page in the list and the audit log.
pub const PAGE: usize = 50;
/// Most bytes of the audit log read for its page (the newest ones).
const MAX_AUDIT_BYTES: u64 = 16 << 20;

/// The style sheet, embedded in the binary.
const STYLE_CSS: &str = include_str!("style.css");

/// The headers every console answer carries.
const SECURITY_HEADERS: [(&str, &str); 5] = [
    (
        "content-security-policy",
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'",
    ),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("x-content-type-options", "nosniff"),
    ("cache-control", "no-store"),
];

/// A signed-in user's session.
#[derive(Debug, Clone)]
struct Session {
    actor: Actor,
    csrf: String,
    last_seen: Instant,
}

/// The server-side session map (module docs).
#[derive(Debug, Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// A new session for `actor`: its cookie token.
    fn create(&self, actor: Actor, now: Instant) -> Option<String> {
        let token = random_hex()?;
        let csrf = random_hex()?;
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(
            token.clone(),
            Session {
                actor,
                csrf,
                last_seen: now,
            },
        );
        Some(token)
    }

    /// The live session of `token`, touched; expired sessions are dropped.
    fn get(&self, token: &str, idle: Duration, now: Instant) -> Option<Session> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        map.retain(|_, s| now.saturating_duration_since(s.last_seen) < idle);
        let s = map.get_mut(token)?;
        s.last_seen = now;
        Some(s.clone())
    }

    /// Ends the session of `token`.
    fn remove(&self, token: &str) {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(token);
    }
}

/// 32 random bytes from the system, as hex.
fn random_hex() -> Option<String> {
    let mut raw = [0u8; 32];
    rand::rngs::SysRng.try_fill_bytes(&mut raw).ok()?;
    Some(hex::encode(raw))
}

/// What a page needs to know about the request.
#[derive(Debug, Clone)]
pub struct View {
    /// The page language.
    pub lang: Lang,
    /// The signed-in user, if any.
    pub actor: Option<Actor>,
    /// The session's CSRF token ("" when signed out).
    pub csrf: String,
}

impl View {
    /// `ja` or `en` by the page language.
    pub fn t(&self, ja: &'static str, en: &'static str) -> &'static str {
        match self.lang {
            Lang::Ja => ja,
            Lang::En => en,
        }
    }

    /// Whether the user is an admin.
    pub fn is_admin(&self) -> bool {
        self.actor.as_ref().is_some_and(|a| a.role == Role::Admin)
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers()
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The page language: `?lang=` first, then the cookie it sets, then `Accept-Language`
/// (English when `en` comes before `ja` or `ja` is absent), else Japanese.
fn lang_of(req: &Request<Incoming>, query: &[(String, String)]) -> (Lang, Option<Lang>) {
    let parse = |s: &str| match s {
        "en" => Some(Lang::En),
        "ja" => Some(Lang::Ja),
        _ => None,
    };
    let asked = query
        .iter()
        .find(|(k, _)| k == "lang")
        .and_then(|(_, v)| parse(v));
    if let Some(l) = asked {
        return (l, Some(l));
    }
    if let Some(l) = cookie(req, LANG_COOKIE).and_then(parse) {
        return (l, None);
    }
    let accept = req
        .headers()
        .get(http::header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    (accept_language(accept), None)
}

/// The language an `Accept-Language` value prefers (first of `ja`/`en` in order of quality).
fn accept_language(accept: &str) -> Lang {
    let mut best: Option<(f32, usize, Lang)> = None;
    for (i, part) in accept.split(',').enumerate() {
        let mut fields = part.split(';');
        let tag = fields.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = fields
            .filter_map(|f| f.trim().strip_prefix("q="))
            .find_map(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        let lang = if tag == "en" || tag.starts_with("en-") {
            Lang::En
        } else if tag == "ja" || tag.starts_with("ja-") {
            Lang::Ja
        } else {
            continue;
        };
        let better = match best {
            None => true,
            Some((bq, bi, _)) => q > bq || (q == bq && i < bi),
        };
        if better && q > 0.0 {
            best = Some((q, i, lang));
        }
    }
    best.map_or(Lang::Ja, |(_, _, l)| l)
}

/// `resp` with the console's security headers.
fn secured(mut resp: Resp) -> Resp {
    let h = resp.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        h.insert(name, HeaderValue::from_static(value));
    }
    resp
}

/// An HTML page.
fn html(status: StatusCode, markup: maud::Markup) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(markup.into_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secured(r)
}

/// A 303 to `location` (a path of ours).
fn redirect(location: &str) -> Resp {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(http::header::LOCATION, v);
    }
    secured(r)
}

/// The first value of `key` in form or query pairs.
fn field<'a>(pairs: &'a [(String, String)], key: &str) -> &'a str {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map_or("", |(_, v)| v.as_str())
}

/// Whether a POST's `Origin` (when sent and not `null`) is this host: a mismatch means another
/// site made the request.
fn same_origin(req: &Request<Incoming>) -> bool {
    let Some(origin) = req
        .headers()
        .get(http::header::ORIGIN)
        .and_then(|v| v.to_str().ok())
    else {
        return true;
    };
    // Our own `Referrer-Policy: no-referrer` makes browsers send `Origin: null` on our forms:
    // nothing to compare, so the CSRF token decides.
    if origin == "null" {
        return true;
    }
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let origin_host = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .unwrap_or("");
    !host.is_empty() && origin_host.eq_ignore_ascii_case(host)
}

/// The path segments under `/console` (`/` is the list).
fn segments(path: &str) -> Vec<&str> {
    path.trim_start_matches('/')
        .trim_start_matches("console")
        .split('/')
        .filter(|s| !s.is_empty())
        .collect()
}

/// Answers a console request (`/` or `/console/...`).
pub(super) async fn handle(api: &Arc<Api>, req: Request<Incoming>, peer: SocketAddr) -> Resp {
    let query = query_pairs(req.uri().query().unwrap_or(""));
    let (lang, set_lang) = lang_of(&req, &query);
    // The API's per-request limit applies here too (a slow disk must not pin a connection).
    let limit = Duration::from_secs(api.settings.timeout_secs);
    let answered = tokio::time::timeout(limit, route(api, req, peer, lang, &query)).await;
    let mut resp = answered.unwrap_or_else(|_| {
        let view = View {
            lang,
            actor: None,
            csrf: String::new(),
        };
        html(
            StatusCode::SERVICE_UNAVAILABLE,
            pages::message(
                &view,
                view.t(
                    "時間内に処理できませんでした。しばらくしてからやり直してください。",
                    "This took too long; try again later.",
                ),
            ),
        )
    });
    if let Some(l) = set_lang {
        let v = match l {
            Lang::Ja => "ja",
            Lang::En => "en",
        };
        if let Ok(h) = HeaderValue::from_str(&format!(
            "{LANG_COOKIE}={v}; Path=/; HttpOnly; SameSite=Strict; Max-Age=31536000"
        )) {
            resp.headers_mut().append(http::header::SET_COOKIE, h);
        }
    }
    resp
}

async fn route(
    api: &Arc<Api>,
    req: Request<Incoming>,
    peer: SocketAddr,
    lang: Lang,
    query: &[(String, String)],
) -> Resp {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    if path == "/" {
        return redirect("/console/");
    }
    let segs = segments(&path);
    let get = method == Method::GET || method == Method::HEAD;
    let post = method == Method::POST;
    let mut view = View {
        lang,
        actor: None,
        csrf: String::new(),
    };
    match segs.as_slice() {
        ["static", "style.css"] if get => {
            let mut r = Response::new(Full::new(Bytes::from_static(STYLE_CSS.as_bytes())));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/css; charset=utf-8"),
            );
            return secured(r);
        }
        ["login"] if get => return html(StatusCode::OK, pages::login(&view, None)),
        ["login"] if post => return sign_in(api, req, peer, &view).await,
        _ => {}
    }
    let idle = Duration::from_secs(api.settings.console_idle_secs.max(1));
    let token = cookie(&req, SESSION_COOKIE).map(str::to_owned);
    let session = token
        .as_deref()
        .and_then(|t| api.console.get(t, idle, Instant::now()));
    let Some(session) = session else {
        if post {
            return html(
                StatusCode::FORBIDDEN,
                pages::message(&view, view.t("サインインしてください。", "Please sign in.")),
            );
        }
        return redirect("/console/login");
    };
    view.actor = Some(session.actor.clone());
    view.csrf = session.csrf.clone();
    let actor = session.actor;
    let form = if post {
        if !same_origin(&req) {
            return forbidden_csrf(&view);
        }
        let body = match super::read_body(req, MAX_FORM_BYTES).await {
            Ok(b) => b,
            Err(r) => return secured(*r),
        };
        let pairs = query_pairs(&String::from_utf8_lossy(&body));
        let sent = field(&pairs, "csrf");
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            sent.as_bytes(),
            session.csrf.as_bytes(),
        )) {
            tracing::warn!(user = %actor.name, client_ip = %peer.ip(), "Console POST without a valid CSRF token refused.");
            return forbidden_csrf(&view);
        }
        pairs
    } else {
        Vec::new()
    };
    match segs.as_slice() {
        ["logout"] if post => {
            if let Some(t) = token {
                api.console.remove(&t);
            }
            let mut r = redirect("/console/login");
            if let Ok(h) = HeaderValue::from_str(&format!(
                "{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
            )) {
                r.headers_mut().insert(http::header::SET_COOKIE, h);
            }
            r
        }
        [] if get => list(api, &view, &actor, query).await,
        ["item", id] if get => detail(api, &view, &actor, id, query, None).await,
        ["item", id, "thumb", file] if get => thumb(api, &view, &actor, id, file).await,
        ["item", id, action] if post => act(api, &view, &actor, id, action, &form).await,
        ["audit"] if get => {
            if actor.role != Role::Admin {
                return admins_only(&view);
            }
            audit_page(api, &view, query).await
        }
        ["config"] if get => {
            if actor.role != Role::Admin {
                return admins_only(&view);
            }
            let (_, warnings) = crate::serve::check(&api.shared.config);
            html(
                StatusCode::OK,
                pages::config(&view, &config_toml(&api.shared.config), &warnings),
            )
        }
        _ => html(
            StatusCode::NOT_FOUND,
            pages::message(&view, view.t("ページが見つかりません。", "No such page.")),
        ),
    }
}

fn forbidden_csrf(view: &View) -> Resp {
    html(
        StatusCode::FORBIDDEN,
        pages::message(
            view,
            view.t(
                "フォームの確認用トークンが一致しないため、処理しませんでした。ページを開き直してください。",
                "The form's check token did not match, so nothing was done. Reload the page.",
            ),
        ),
    )
}

fn admins_only(view: &View) -> Resp {
    html(
        StatusCode::FORBIDDEN,
        pages::message(
            view,
            view.t(
                "このページは管理者だけが開けます。",
                "Only administrators may open this page.",
            ),
        ),
    )
}

/// `POST /console/login`.
async fn sign_in(api: &Arc<Api>, req: Request<Incoming>, peer: SocketAddr, view: &View) -> Resp {
    if !same_origin(&req) {
        return forbidden_csrf(view);
    }
    let body = match super::read_body(req, MAX_FORM_BYTES).await {
        Ok(b) => b,
        Err(r) => return secured(*r),
    };
    let pairs = query_pairs(&String::from_utf8_lossy(&body));
    let user = field(&pairs, "user").trim().to_owned();
    let password = zeroize::Zeroizing::new(field(&pairs, "password").to_owned());
    let failed =
        |status: StatusCode, msg: &'static str| html(status, pages::login(view, Some(msg)));
    if user.is_empty() || password.is_empty() {
        return failed(
            StatusCode::UNAUTHORIZED,
            view.t(
                "ユーザー名とパスワードを入力してください。",
                "Enter a user name and a password.",
            ),
        );
    }
    // The same limiter and keys as the API's Basic logins.
    let header = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{user}:{}", password.as_str())
        )
    );
    let header = zeroize::Zeroizing::new(header);
    match super::auth::authenticate(&api.users, &api.limiter, Some(header.as_bytes()), peer.ip())
        .await
    {
        Ok(actor) => {
            tracing::info!(user = %actor.name, client_ip = %peer.ip(), "Console sign-in.");
            let Some(token) = api.console.create(actor, Instant::now()) else {
                return failed(
                    StatusCode::SERVICE_UNAVAILABLE,
                    view.t(
                        "セッションを作成できませんでした。",
                        "No session could be made.",
                    ),
                );
            };
            let secure = if api.settings.tls_cert.as_os_str().is_empty() {
                ""
            } else {
                "; Secure"
            };
            let mut r = redirect("/console/");
            if let Ok(h) = HeaderValue::from_str(&format!(
                "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{secure}"
            )) {
                r.headers_mut().insert(http::header::SET_COOKIE, h);
            }
            r
        }
        Err(super::auth::Denied::Unauthorized) => failed(
            StatusCode::UNAUTHORIZED,
            view.t(
                "ユーザー名またはパスワードが違います。",
                "Wrong user name or password.",
            ),
        ),
        Err(super::auth::Denied::Throttled(_)) => failed(
            StatusCode::TOO_MANY_REQUESTS,
            view.t(
                "失敗が続いたため、しばらくサインインできません。1 分ほど待ってください。",
                "Too many failed sign-ins; wait a minute and try again.",
            ),
        ),
        Err(super::auth::Denied::Unavailable(_)) => failed(
            StatusCode::SERVICE_UNAVAILABLE,
            view.t(
                "ユーザー情報を読めません。管理者に連絡してください。",
                "The users store cannot be read; tell an administrator.",
            ),
        ),
    }
}

/// The list page's filters, as typed.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    /// From this day (YYYY-MM-DD, JST).
    pub since: String,
    /// To this day (YYYY-MM-DD, JST), inclusive.
    pub until: String,
    /// Sender contains.
    pub sender: String,
    /// Subject contains.
    pub subject: String,
    /// Verdict.
    pub verdict: String,
    /// Threat id.
    pub threat: String,
    /// Page number from 1.
    pub page: u64,
}

impl Filters {
    fn parse(q: &[(String, String)]) -> Filters {
        let f = |k| field(q, k).trim().to_owned();
        Filters {
            since: f("since"),
            until: f("until"),
            sender: f("sender"),
            subject: f("subject"),
            verdict: f("verdict"),
            threat: f("threat"),
            page: field(q, "page")
                .parse::<u64>()
                .unwrap_or(1)
                .clamp(1, 1_000_000),
        }
    }

    /// The index search (bad dates are ignored, and said so by [`Filters::date_error`]).
    fn search(&self) -> Search {
        let day = |d: &str, time: &str| -> Option<jiff::Timestamp> {
            format!("{d}T{time}+09:00").parse().ok()
        };
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        Search {
            sender: opt(&self.sender),
            subject: opt(&self.subject),
            verdict: opt(&self.verdict),
            threat: opt(&self.threat),
            since: day(&self.since, "00:00:00"),
            until: day(&self.until, "23:59:59.999"),
            limit: PAGE,
            offset: (self.page - 1).saturating_mul(PAGE as u64),
            ..Search::default()
        }
    }

    /// Whether a date was typed that is not YYYY-MM-DD.
    pub fn date_error(&self) -> bool {
        let bad = |d: &str| !d.is_empty() && d.parse::<jiff::civil::Date>().is_err();
        bad(&self.since) || bad(&self.until)
    }

    /// The query string of these filters at `page`.
    pub fn query(&self, page: u64) -> String {
        let enc = |s: &str| {
            s.bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect::<String>()
        };
        format!(
            "?since={}&until={}&sender={}&subject={}&verdict={}&threat={}&page={page}",
            enc(&self.since),
            enc(&self.until),
            enc(&self.sender),
            enc(&self.subject),
            enc(&self.verdict),
            enc(&self.threat),
        )
    }
}

/// `GET /console/`: 隔離一覧.
async fn list(api: &Arc<Api>, view: &View, actor: &Actor, q: &[(String, String)]) -> Resp {
    let filters = Filters::parse(q);
    let search = filters.search();
    let vault = Arc::clone(&api.shared.vault);
    let ctx = super::Ctx {
        actor: actor.clone(),
        client_ip: std::net::IpAddr::from([127, 0, 0, 1]),
    };
    let found = tokio::task::spawn_blocking(move || {
        let index = vault.index();
        if ctx.sees_all() {
            Ok((index.search(&search)?, index.count(&search)?))
        } else {
            super::api::requester_search(index, &ctx, &search)
        }
    })
    .await;
    match found {
        Ok(Ok((rows, total))) => html(StatusCode::OK, pages::list(view, &filters, &rows, total)),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "Console: quarantine search failed.");
            unavailable(view)
        }
        Err(e) => {
            tracing::error!(error = %e, "Console: quarantine search failed.");
            unavailable(view)
        }
    }
}

fn unavailable(view: &View) -> Resp {
    html(
        StatusCode::SERVICE_UNAVAILABLE,
        pages::message(
            view,
            view.t(
                "隔離の索引を読めませんでした。しばらくしてからやり直してください。",
                "The quarantine index could not be read; try again later.",
            ),
        ),
    )
}

/// An outcome shown at the top of the detail page.
#[derive(Debug, Clone)]
pub struct Notice {
    /// Whether it went well.
    pub ok: bool,
    /// What to say.
    pub text: String,
}

/// `GET /console/item/{id}` (and the page again after a failed action, with `notice`).
async fn detail(
    api: &Arc<Api>,
    view: &View,
    actor: &Actor,
    id: &str,
    q: &[(String, String)],
    notice: Option<(StatusCode, Notice)>,
) -> Resp {
    let release = api.release.clone();
    let (actor2, id2) = (actor.clone(), id.to_owned());
    let found = tokio::task::spawn_blocking(move || -> Result<_, ReleaseError> {
        let item = release.item_for(&actor2, &id2)?;
        let requests = release.list_requests(
            &actor2,
            &RequestFilter {
                report_id: Some(id2.clone()),
                limit: 100,
                ..RequestFilter::default()
            },
        )?;
        Ok((item, requests))
    })
    .await;
    let (item, requests): (HeldItem, Vec<ReleaseRequest>) = match found {
        Ok(Ok(x)) => x,
        Ok(Err(ReleaseError::NotFound(_) | ReleaseError::Invalid(_))) => {
            return html(
                StatusCode::NOT_FOUND,
                pages::message(
                    view,
                    view.t(
                        "この項目は見つからないか、表示する権限がありません。",
                        "No such item, or not one you may see.",
                    ),
                ),
            );
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "Console: item lookup failed.");
            return unavailable(view);
        }
        Err(e) => {
            tracing::error!(error = %e, "Console: item lookup failed.");
            return unavailable(view);
        }
    };
    let (status, notice) = match notice {
        Some((s, n)) => (s, Some(n)),
        None => (StatusCode::OK, done_notice(view, field(q, "done"))),
    };
    let pictures = match api
        .previews
        .get(&api.release, &api.shared.transform, actor, id)
        .await
    {
        Ok(p) => Some(p),
        Err(ReleaseError::Gone(_)) => None,
        Err(e) => {
            tracing::warn!(report_id = %id, error = %e, "Console: no preview pictures.");
            None
        }
    };
    html(
        status,
        pages::detail(
            view,
            &item,
            &requests,
            notice.as_ref(),
            pictures.as_deref().map(Vec::as_slice),
        ),
    )
}

/// `GET /console/item/{id}/thumb/{n}.png`: one preview picture, under the detail page's rules.
async fn thumb(api: &Arc<Api>, view: &View, actor: &Actor, id: &str, file: &str) -> Resp {
    let not_found = || {
        html(
            StatusCode::NOT_FOUND,
            pages::message(view, view.t("ページが見つかりません。", "No such page.")),
        )
    };
    let Some(n) = file
        .strip_suffix(".png")
        .and_then(|n| n.parse::<usize>().ok())
    else {
        return not_found();
    };
    let pictures = match api
        .previews
        .get(&api.release, &api.shared.transform, actor, id)
        .await
    {
        Ok(p) => p,
        Err(ReleaseError::NotFound(_) | ReleaseError::Invalid(_) | ReleaseError::Gone(_)) => {
            return not_found();
        }
        Err(e) => {
            tracing::warn!(report_id = %id, error = %e, "Console: no preview pictures.");
            return unavailable(view);
        }
    };
    let Some(p) = pictures.get(n) else {
        return not_found();
    };
    let mut r = Response::new(Full::new(p.png.clone()));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("image/png"));
    secured(r)
}

/// The notice after a successful action (`?done=`), fixed texts only.
fn done_notice(view: &View, done: &str) -> Option<Notice> {
    let text = match done {
        "request" => view.t(
            "解除申請を受け付けました。承認者の判断を待っています。",
            "Your release request was recorded; it waits for an approver.",
        ),
        "approve" => view.t(
            "承認しました。原本を宛先へ届けました。",
            "Approved; the original was delivered.",
        ),
        "refuse" => view.t("却下しました。", "Refused."),
        "unlock" => view.t(
            "パスワードで開き、無害化したものを届けました。",
            "Opened with the password; the sanitized contents were delivered.",
        ),
        _ => return None,
    };
    Some(Notice {
        ok: true,
        text: text.to_owned(),
    })
}

/// `POST /console/item/{id}/{action}`.
async fn act(
    api: &Arc<Api>,
    view: &View,
    actor: &Actor,
    id: &str,
    action: &str,
    form: &[(String, String)],
) -> Resp {
    let release = api.release.clone();
    let reason = field(form, "reason").to_owned();
    let result: Result<(), ReleaseError> = match action {
        "request" => {
            let (r, a, i) = (release.clone(), actor.clone(), id.to_owned());
            tokio::task::spawn_blocking(move || r.request(&a, &i, &reason).map(|_| ()))
                .await
                .unwrap_or_else(|e| Err(ReleaseError::Internal(e.to_string())))
        }
        "approve" => release
            .approve(actor, &Target::Report(id.to_owned()), &reason)
            .await
            .map(|_| ()),
        "refuse" => {
            let (r, a, i) = (release.clone(), actor.clone(), id.to_owned());
            tokio::task::spawn_blocking(move || {
                r.refuse(&a, &Target::Report(i), &reason).map(|_| ())
            })
            .await
            .unwrap_or_else(|e| Err(ReleaseError::Internal(e.to_string())))
        }
        "unlock" => {
            let password = crate::sanitize::Password::new(field(form, "password").to_owned());
            release
                .unlock_with_password(actor, id, password, api.shared.transform.get())
                .await
                .map(|_| ())
        }
        _ => {
            return html(
                StatusCode::NOT_FOUND,
                pages::message(view, view.t("ページが見つかりません。", "No such page.")),
            );
        }
    };
    match result {
        Ok(()) => {
            tracing::info!(user = %actor.name, action, report_id = id, "Console action done.");
            redirect(&format!("/console/item/{id}?done={action}"))
        }
        Err(e) => {
            let status =
                StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            tracing::info!(user = %actor.name, action, report_id = id, error = %e, "Console action refused.");
            let text = format!("{}: {}", error_ja(view, &e), e);
            detail(
                api,
                view,
                actor,
                id,
                &[],
                Some((status, Notice { ok: false, text })),
            )
            .await
        }
    }
}

/// A Japanese (or English) sentence for a release error's kind.
fn error_ja(view: &View, e: &ReleaseError) -> &'static str {
    match e {
        ReleaseError::Invalid(_) => view.t("入力が正しくありません", "Not accepted"),
        ReleaseError::Forbidden(_) => view.t("この操作は許可されていません", "Not allowed"),
        ReleaseError::NotFound(_) => view.t("見つかりません", "Not found"),
        ReleaseError::Conflict(_) => view.t("今の状態ではできません", "Not in this state"),
        ReleaseError::Gone(_) => view.t("原本は削除済みです", "The original is gone"),
        ReleaseError::WrongPassword { .. } => view.t("パスワードが違います", "Wrong password"),
        ReleaseError::TooManyAttempts(_) => view.t("試行回数の上限です", "Too many attempts"),
        ReleaseError::Transient(_) | ReleaseError::DownstreamRefused(_) => view.t(
            "配送できませんでした。後でやり直してください",
            "Could not deliver; try again later",
        ),
        _ => view.t("処理できませんでした", "Could not be done"),
    }
}

/// `GET /console/audit`: the audit log, newest first, `q` filtering, the chain verified.
async fn audit_page(api: &Arc<Api>, view: &View, q: &[(String, String)]) -> Resp {
    let search = field(q, "q").to_owned();
    let page = field(q, "page")
        .parse::<u64>()
        .unwrap_or(1)
        .clamp(1, 1_000_000);
    let Some(path) = api.shared.audit.as_ref().map(|a| a.path().to_owned()) else {
        return html(
            StatusCode::OK,
            pages::audit(view, None, &[], 0, &search, page),
        );
    };
    let needle = search.clone();
    let read = tokio::task::spawn_blocking(move || {
        let verified = crate::sinks::audit::verify(&path).map_err(|e| e.to_string());
        let lines = read_tail(&path, MAX_AUDIT_BYTES).unwrap_or_default();
        let matching: Vec<String> = lines
            .lines()
            .rev()
            .filter(|l| !l.trim().is_empty() && (needle.is_empty() || l.contains(&needle)))
            .map(str::to_owned)
            .collect();
        (verified, matching)
    })
    .await;
    let Ok((verified, matching)) = read else {
        return unavailable(view);
    };
    let total = matching.len() as u64;
    let skip = usize::try_from((page - 1).saturating_mul(PAGE as u64)).unwrap_or(usize::MAX);
    let shown: Vec<String> = matching.into_iter().skip(skip).take(PAGE).collect();
    html(
        StatusCode::OK,
        pages::audit(view, Some(&verified), &shown, total, &search, page),
    )
}

/// The last `max` bytes of `path` as text, starting at a line boundary.
fn read_tail(path: &std::path::Path, max: u64) -> std::io::Result<String> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let start = len.saturating_sub(max);
    f.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    f.take(max).read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    if start > 0 {
        return Ok(text
            .split_once('\n')
            .map_or_else(String::new, |(_, rest)| rest.to_owned()));
    }
    Ok(text)
}

/// The running configuration as TOML, section by section (key files appear as paths only:
/// the config holds no secrets itself).
fn config_toml(c: &crate::config::Config) -> String {
    fn section<T: serde::Serialize>(out: &mut String, name: &str, value: &T) {
        let body =
            toml::to_string_pretty(value).unwrap_or_else(|e| format!("# cannot be shown: {e}\n"));
        out.push_str(&format!("[{name}]\n{body}\n"));
    }
    let mut out = String::new();
    section(&mut out, "host", &c.host);
    section(&mut out, "pool", &c.pool);
    section(&mut out, "quarantine", &c.quarantine);
    section(&mut out, "smtp", &c.smtp);
    section(&mut out, "downstream", &c.downstream);
    section(&mut out, "audit", &c.audit);
    section(&mut out, "log", &c.log);
    section(&mut out, "dropdir", &c.dropdir);
    section(&mut out, "http", &c.http);
    section(&mut out, "policy", &c.policy);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_prefers_by_quality_then_order() {
        assert_eq!(accept_language(""), Lang::Ja);
        assert_eq!(accept_language("en-US,en;q=0.9"), Lang::En);
        assert_eq!(accept_language("ja,en;q=0.8"), Lang::Ja);
        assert_eq!(accept_language("fr, en;q=0.5, ja;q=0.9"), Lang::Ja);
        assert_eq!(accept_language("de, en;q=0.3"), Lang::En);
        assert_eq!(accept_language("en;q=0"), Lang::Ja);
    }

    #[test]
    fn sessions_expire_when_idle() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let actor = Actor::operator();
        let token = s.create(actor, t0).unwrap();
        let idle = Duration::from_secs(60);
        let first = s.get(&token, idle, t0 + Duration::from_secs(59)).unwrap();
        assert_eq!(first.csrf.len(), 64);
        assert_ne!(first.csrf, token);
        // Touched at 59 s: alive until 119 s.
        assert!(s.get(&token, idle, t0 + Duration::from_secs(118)).is_some());
        assert!(s.get(&token, idle, t0 + Duration::from_secs(179)).is_none());
        assert!(s.get("forged", idle, t0).is_none());
    }

    #[test]
    fn filters_make_a_search_in_japan_time() {
        let q = query_pairs("since=2026-12-01&until=2026-12-02&sender=a%40b&page=3&verdict=");
        let f = Filters::parse(&q);
        let s = f.search();
        assert_eq!(s.sender.as_deref(), Some("a@b"));
        assert_eq!(s.verdict, None);
        assert_eq!(s.offset, 2 * PAGE as u64);
        assert_eq!(
            s.since.unwrap().to_string(),
            "2026-11-30T15:00:00Z",
            "midnight JST"
        );
        assert!(!f.date_error());
        assert!(Filters::parse(&query_pairs("since=yesterday")).date_error());
        assert!(f.query(4).contains("sender=a%40b") && f.query(4).ends_with("page=4"));
    }

    #[test]
    fn segments_under_console() {
        assert!(segments("/console/").is_empty());
        assert!(segments("/console").is_empty());
        assert_eq!(
            segments("/console/item/x/approve"),
            ["item", "x", "approve"]
        );
    }
}
