//! Who is calling: `Authorization: Bearer <token>` or HTTP Basic (`user:password`), checked
//! against the [`UserStore`](crate::users::UserStore), with failed logins rate-limited per
//! user name and per client address.
//!
//! A failure is logged with the user name (if any) and the client address, never the secret.
//! While a user or an address is over the limit, every login from it is refused with 429 before
//! any secret is checked, so guessing cannot go on, not even with the right password.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::actor::Actor;

/// Failed logins allowed per key within [`WINDOW`].
pub const MAX_FAILURES: usize = 5;
/// The rate limiter's sliding window.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Keys tracked at most; beyond it, keys whose failures all expired are dropped first, then
/// the oldest (so a flood of addresses cannot grow memory without bound).
const MAX_KEYS: usize = 100_000;

/// Failed attempts per key (a user name or a client address) in a sliding window.
#[derive(Debug)]
pub struct RateLimiter {
    max: usize,
    window: Duration,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl RateLimiter {
    /// `max` failures per `window` per key.
    pub fn new(max: usize, window: Duration) -> RateLimiter {
        RateLimiter {
            max,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(wait)` while `key` has `max` failures within the window: how long until one
    /// expires.
    pub fn check(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut map = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(q) = map.get_mut(key) else {
            return Ok(());
        };
        while q
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= self.window)
        {
            q.pop_front();
        }
        if q.len() < self.max {
            return Ok(());
        }
        let oldest = q.front().copied().unwrap_or(now);
        Err(self
            .window
            .saturating_sub(now.saturating_duration_since(oldest))
            .max(Duration::from_secs(1)))
    }

    /// Records a failure for `key`.
    pub fn fail(&self, key: &str, now: Instant) {
        let mut map = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_KEYS && !map.contains_key(key) {
            let window = self.window;
            map.retain(|_, q| {
                q.back()
                    .is_some_and(|t| now.saturating_duration_since(*t) < window)
            });
            if map.len() >= MAX_KEYS {
                let oldest = map
                    .iter()
                    .min_by_key(|(_, q)| q.back().copied())
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    map.remove(&k);
                }
            }
        }
        let q = map.entry(key.to_owned()).or_default();
        q.push_back(now);
        while q.len() > self.max {
            q.pop_front();
        }
    }

    /// Forgets `key`'s failures (a successful login by that user).
    pub fn clear(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }
}

/// Credentials as sent.
#[derive(Debug, PartialEq, Eq)]
pub enum Credentials {
    /// `Bearer <token>`.
    Token(String),
    /// `Basic base64(user:password)`.
    Password {
        /// The user name.
        user: String,
        /// The password.
        password: String,
    },
}

/// Parses an `Authorization` header value; `None` when it is neither a bearer token nor
/// well-formed Basic credentials.
pub fn parse_authorization(value: &[u8]) -> Option<Credentials> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        if rest.is_empty() || rest.len() > 256 {
            return None;
        }
        return Some(Credentials::Token(rest.to_owned()));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        if rest.len() > 1024 {
            return None;
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (user, password) = text.split_once(':')?;
        return Some(Credentials::Password {
            user: user.to_owned(),
            password: password.to_owned(),
        });
    }
    None
}

/// Why a request is not authenticated.
#[derive(Debug)]
pub enum Denied {
    /// No or bad credentials: 401.
    Unauthorized,
    /// Too many failures: 429 with `Retry-After`.
    Throttled(Duration),
    /// The store could not be read: 503.
    Unavailable(String),
}

/// The rate-limiter keys of a login: the user's and the address's.
fn keys(user: Option<&str>, ip: IpAddr) -> (Option<String>, String) {
    (user.map(|u| format!("user:{u}")), format!("ip:{ip}"))
}

/// Authenticates a request's `Authorization` header value (if any) from `ip`.
pub async fn authenticate(
    store: &std::sync::Arc<crate::users::UserStore>,
    limiter: &RateLimiter,
    header: Option<&[u8]>,
    ip: IpAddr,
) -> Result<Actor, Denied> {
    let Some(creds) = header.and_then(parse_authorization) else {
        return Err(Denied::Unauthorized);
    };
    let user = match &creds {
        Credentials::Password { user, .. } => Some(user.clone()),
        Credentials::Token(_) => None,
    };
    let (user_key, ip_key) = keys(user.as_deref(), ip);
    let now = Instant::now();
    let throttled = limiter
        .check(&ip_key, now)
        .err()
        .or_else(|| user_key.as_ref().and_then(|k| limiter.check(k, now).err()));
    if let Some(wait) = throttled {
        super::metrics::metrics().inc_auth_throttled();
        tracing::warn!(user = user.as_deref().unwrap_or("-"), client_ip = %ip, "Login refused: too many failures.");
        return Err(Denied::Throttled(wait));
    }
    let store = std::sync::Arc::clone(store);
    // argon2 is slow on purpose: off the async threads.
    let found = tokio::task::spawn_blocking(move || match creds {
        Credentials::Token(t) => store.verify_token(&t),
        Credentials::Password { user, password } => store.verify_password(&user, &password),
    })
    .await
    .map_err(|e| Denied::Unavailable(e.to_string()))?
    .map_err(|e| {
        tracing::error!(error = %e, "The users store cannot be read.");
        Denied::Unavailable(e.to_string())
    })?;
    match found {
        Some(actor) => {
            if let Some(k) = &user_key {
                limiter.clear(k);
            }
            Ok(actor)
        }
        None => {
            let now = Instant::now();
            limiter.fail(&ip_key, now);
            if let Some(k) = &user_key {
                limiter.fail(k, now);
            }
            super::metrics::metrics().inc_auth_failure();
            tracing::warn!(user = user.as_deref().unwrap_or("-"), client_ip = %ip, "Login failed.");
            Err(Denied::Unauthorized)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_trips_after_max_and_recovers_after_the_window() {
        let l = RateLimiter::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..3 {
            assert!(l.check("k", t0).is_ok(), "attempt {i}");
            l.fail("k", t0 + Duration::from_secs(i));
        }
        let wait = l.check("k", t0 + Duration::from_secs(10)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(50));
        assert!(l.check("other", t0).is_ok(), "keys are separate");
        // The first failure expires at 60 s: one more attempt is allowed.
        assert!(l.check("k", t0 + Duration::from_secs(60)).is_ok());
        l.clear("k");
        assert!(l.check("k", t0 + Duration::from_secs(11)).is_ok());
    }

    #[test]
    fn limiter_memory_is_bounded() {
        let l = RateLimiter::new(1, Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..(MAX_KEYS + 10) {
            l.fail(&format!("ip:{i}"), t0);
        }
        let n = l.failures.lock().unwrap().len();
        assert!(n <= MAX_KEYS, "{n}");
    }

    #[test]
    fn authorization_headers_parse() {
        assert_eq!(
            parse_authorization(b"Bearer mugai_ab"),
            Some(Credentials::Token("mugai_ab".into()))
        );
        // "alice:pa:ss" — a password may contain ':'.
        assert_eq!(
            parse_authorization(b"Basic YWxpY2U6cGE6c3M="),
            Some(Credentials::Password {
                user: "alice".into(),
                password: "pa:ss".into()
            })
        );
        assert_eq!(parse_authorization(b"Basic !!!"), None);
        assert_eq!(parse_authorization(b"Digest x"), None);
        assert_eq!(parse_authorization(b"Bearer"), None);
        assert_eq!(parse_authorization(&[0xff, 0xfe]), None);
    }
}
