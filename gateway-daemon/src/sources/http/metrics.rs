//! Process-wide counters in the Prometheus text format (`GET /metrics`).
//!
//! One global [`Metrics`] ([`metrics()`]); any source records into it with the `inc_*` /
//! [`Metrics::record`] calls, and the HTTP API renders it. Labels come only from small fixed
//! sets (vector's instrumentation rule): verdicts, kinds and actions are enums; threat ids not
//! in `sanitizer_core::threats::ALL` become `other`; sources and routes are `&'static str`
//! chosen by our code, never by a request.
//!
//! Families:
//! - `mugai_messages_total{source,result}`, `mugai_files_total{source,result}`: items by
//!   verdict (`clean`, `sanitized`, `blocked`).
//! - `mugai_items_total{kind,action}`: report items.
//! - `mugai_threats_total{threat}`: threat ids found.
//! - `mugai_sanitize_duration_seconds{source}`: histogram of time spent sanitizing an item.
//! - `mugai_smtp_sessions_total`: SMTP connections accepted.
//! - `mugai_http_requests_total{route,code}`: HTTP requests answered.
//! - `mugai_auth_failures_total`, `mugai_auth_throttled_total`: failed and refused logins.
//! - gauges filled at scrape time by the caller: `mugai_quarantine_items`,
//!   `mugai_pool_workers`, `mugai_http_in_flight`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use sanitizer_core::report::{Action, Report};

/// Upper bounds (seconds) of the duration histogram's buckets.
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];

/// A histogram with [`BUCKETS`].
#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        for (b, c) in BUCKETS.iter().zip(self.counts.iter_mut()) {
            if secs <= *b {
                *c += 1;
            }
        }
        self.count += 1;
        self.sum += secs;
    }
}

/// Counters keyed by label values.
#[derive(Debug, Default)]
struct Families {
    messages: BTreeMap<(&'static str, &'static str), u64>,
    files: BTreeMap<(&'static str, &'static str), u64>,
    items: BTreeMap<(&'static str, &'static str), u64>,
    threats: BTreeMap<&'static str, u64>,
    durations: BTreeMap<&'static str, Histogram>,
    requests: BTreeMap<(&'static str, u16), u64>,
}

/// The process's metrics (see the module docs).
#[derive(Debug, Default)]
pub struct Metrics {
    families: Mutex<Families>,
    smtp_sessions: AtomicU64,
    auth_failures: AtomicU64,
    auth_throttled: AtomicU64,
}

/// The one process-wide [`Metrics`].
pub fn metrics() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(Metrics::default)
}

/// The label for a threat id: itself when it is a known id, else `other`.
pub fn threat_label(id: &str) -> &'static str {
    sanitizer_core::threats::ALL
        .iter()
        .find(|t| **t == id)
        .copied()
        .unwrap_or("other")
}

/// The label for an action (the report's snake_case name).
pub fn action_label(a: Action) -> &'static str {
    match a {
        Action::Kept => "kept",
        Action::Rebuilt => "rebuilt",
        Action::Rasterized => "rasterized",
        Action::ConvertedToText => "converted_to_text",
        Action::Converted => "converted",
        Action::Reencoded => "reencoded",
        Action::Removed => "removed",
    }
}

/// Values of the gauges, read by the caller when rendering.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    /// Rows in the quarantine index.
    pub quarantine_items: Option<u64>,
    /// Worker processes the pool may run at once.
    pub pool_workers: u64,
    /// HTTP requests being handled now.
    pub http_in_flight: u64,
}

impl Metrics {
    fn families(&self) -> std::sync::MutexGuard<'_, Families> {
        self.families.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records one finished item from `source` (`smtp`, `http`, `dropdir`): a message when
    /// `mail`, else a file; its items, threats, and the time it took to sanitize.
    pub fn record(&self, source: &'static str, mail: bool, report: &Report, took: Duration) {
        let mut f = self.families();
        let by_result = if mail { &mut f.messages } else { &mut f.files };
        *by_result
            .entry((source, report.verdict.as_str()))
            .or_default() += 1;
        for item in &report.items {
            *f.items
                .entry((item.kind.as_str(), action_label(item.action)))
                .or_default() += 1;
        }
        for t in report.threats() {
            *f.threats.entry(threat_label(t)).or_default() += 1;
        }
        f.durations
            .entry(source)
            .or_default()
            .observe(took.as_secs_f64());
    }

    /// Counts an SMTP connection accepted.
    pub fn inc_smtp_session(&self) {
        self.smtp_sessions.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an HTTP request answered on `route` (a fixed name) with `code`.
    pub fn inc_http_request(&self, route: &'static str, code: u16) {
        *self.families().requests.entry((route, code)).or_default() += 1;
    }

    /// Counts a failed login.
    pub fn inc_auth_failure(&self) {
        self.auth_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a login refused by the rate limiter.
    pub fn inc_auth_throttled(&self) {
        self.auth_throttled.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition (format 0.0.4) of every family, with `gauges`.
    pub fn render(&self, gauges: Gauges) -> String {
        let f = self.families();
        let mut out = String::new();
        let w = &mut out;
        block(
            w,
            "mugai_messages_total",
            "counter",
            "Mail messages sanitized, by source and verdict.",
        );
        for ((s, r), n) in &f.messages {
            let _ = writeln!(
                w,
                "mugai_messages_total{{source=\"{s}\",result=\"{r}\"}} {n}"
            );
        }
        block(
            w,
            "mugai_files_total",
            "counter",
            "Files sanitized, by source and verdict.",
        );
        for ((s, r), n) in &f.files {
            let _ = writeln!(w, "mugai_files_total{{source=\"{s}\",result=\"{r}\"}} {n}");
        }
        block(
            w,
            "mugai_items_total",
            "counter",
            "Report items (parts), by kind and action.",
        );
        for ((k, a), n) in &f.items {
            let _ = writeln!(w, "mugai_items_total{{kind=\"{k}\",action=\"{a}\"}} {n}");
        }
        block(
            w,
            "mugai_threats_total",
            "counter",
            "Threats found, by threat id.",
        );
        for (t, n) in &f.threats {
            let _ = writeln!(w, "mugai_threats_total{{threat=\"{t}\"}} {n}");
        }
        block(
            w,
            "mugai_sanitize_duration_seconds",
            "histogram",
            "Time spent sanitizing one item.",
        );
        for (s, h) in &f.durations {
            for (b, c) in BUCKETS.iter().zip(h.counts.iter()) {
                let _ = writeln!(
                    w,
                    "mugai_sanitize_duration_seconds_bucket{{source=\"{s}\",le=\"{b}\"}} {c}"
                );
            }
            let _ = writeln!(
                w,
                "mugai_sanitize_duration_seconds_bucket{{source=\"{s}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                w,
                "mugai_sanitize_duration_seconds_sum{{source=\"{s}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                w,
                "mugai_sanitize_duration_seconds_count{{source=\"{s}\"}} {}",
                h.count
            );
        }
        block(
            w,
            "mugai_smtp_sessions_total",
            "counter",
            "SMTP connections accepted.",
        );
        let _ = writeln!(
            w,
            "mugai_smtp_sessions_total {}",
            self.smtp_sessions.load(Ordering::Relaxed)
        );
        block(
            w,
            "mugai_http_requests_total",
            "counter",
            "HTTP requests answered, by route and status code.",
        );
        for ((r, c), n) in &f.requests {
            let _ = writeln!(
                w,
                "mugai_http_requests_total{{route=\"{r}\",code=\"{c}\"}} {n}"
            );
        }
        block(
            w,
            "mugai_auth_failures_total",
            "counter",
            "Failed HTTP logins.",
        );
        let _ = writeln!(
            w,
            "mugai_auth_failures_total {}",
            self.auth_failures.load(Ordering::Relaxed)
        );
        block(
            w,
            "mugai_auth_throttled_total",
            "counter",
            "HTTP logins refused by the rate limiter.",
        );
        let _ = writeln!(
            w,
            "mugai_auth_throttled_total {}",
            self.auth_throttled.load(Ordering::Relaxed)
        );
        if let Some(q) = gauges.quarantine_items {
            block(
                w,
                "mugai_quarantine_items",
                "gauge",
                "Rows in the quarantine index.",
            );
            let _ = writeln!(w, "mugai_quarantine_items {q}");
        }
        block(
            w,
            "mugai_pool_workers",
            "gauge",
            "Sanitizing worker processes the pool may run at once.",
        );
        let _ = writeln!(w, "mugai_pool_workers {}", gauges.pool_workers);
        block(
            w,
            "mugai_http_in_flight",
            "gauge",
            "HTTP requests being handled now.",
        );
        let _ = writeln!(w, "mugai_http_in_flight {}", gauges.http_in_flight);
        out
    }
}

fn block(w: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(w, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_threats_are_other_and_rendering_counts() {
        assert_eq!(threat_label("html.script"), "html.script");
        assert_eq!(threat_label("evil\"}\nlabel"), "other");
        let m = Metrics::default();
        let report = sanitizer_core::sanitize_file_with(
            b"<script>x</script><p>hi</p>",
            Some("a.html"),
            &sanitizer_core::Policy::default(),
            sanitizer_core::Services::default(),
        )
        .report;
        m.record("http", false, &report, Duration::from_millis(30));
        m.record("http", false, &report, Duration::from_millis(3));
        m.inc_smtp_session();
        let text = m.render(Gauges {
            quarantine_items: Some(2),
            pool_workers: 4,
            http_in_flight: 0,
        });
        assert!(text.contains("mugai_files_total{source=\"http\",result=\"sanitized\"} 2"));
        assert!(text.contains("mugai_threats_total{threat=\"html.script\"} 2"));
        assert!(
            text.contains("mugai_sanitize_duration_seconds_bucket{source=\"http\",le=\"0.005\"} 1")
        );
        assert!(text.contains("mugai_sanitize_duration_seconds_count{source=\"http\"} 2"));
        assert!(text.contains("mugai_smtp_sessions_total 1"));
        assert!(text.contains("mugai_quarantine_items 2"));
    }
}
