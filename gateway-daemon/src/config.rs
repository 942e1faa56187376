//! The daemon's own configuration (TOML): what belongs to the machine — host paths (LibreOffice,
//! font files and directories), the worker pool size, the quarantine directory — and the
//! sanitizing policy as a `[policy]` table of the same shape as a policy file.
//!
//! The core receives none of these paths: the daemon reads the fonts
//! ([`crate::fonts::FileFonts`]) and starts LibreOffice, and lends them to the core as
//! services, so `sanitizer-core` reads no files itself. `mugai config` prints the defaults
//! ([`DEFAULT_CONFIG_TOML`]); `mugai check-config FILE` checks a file, including what would
//! fail at run time on this machine ([`Config::runtime_problems`]).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use sanitizer_core::Policy;

use crate::sources::smtp::session::BareLineEnds;
use serde::{Deserialize, Serialize};

/// The defaults, commented (what `mugai config` prints).
pub const DEFAULT_CONFIG_TOML: &str = include_str!("default_config.toml");

/// Paths on this machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Host {
    /// The LibreOffice binary (a name is looked up in `PATH` once, at start-up).
    pub soffice: String,
    /// Tesseract, for text recognition on rasterized pages (policy `pdf.ocr`); a name is looked
    /// up in `PATH` once, at start-up; "" = no OCR.
    pub tesseract: String,
    /// CJK font collection for text a PDF does not embed (sans; serif too when
    /// `cjk_serif_font` is empty).
    pub cjk_font: PathBuf,
    /// CJK serif (Mincho) font collection; empty = `cjk_font`.
    pub cjk_serif_font: PathBuf,
    /// The only directory SVG text is drawn with fonts from.
    pub svg_font_dir: PathBuf,
}

impl Default for Host {
    fn default() -> Host {
        Host {
            soffice: "soffice".into(),
            tesseract: "tesseract".into(),
            cjk_font: "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc".into(),
            cjk_serif_font: "/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc".into(),
            svg_font_dir: "/usr/share/fonts".into(),
        }
    }
}

impl Host {
    /// Directories the sandboxed workers must be able to read for these fonts.
    pub fn font_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = Vec::new();
        let files = [&self.cjk_font, &self.cjk_serif_font];
        let parents = files
            .into_iter()
            .filter(|p| !p.as_os_str().is_empty())
            .filter_map(|p| p.parent().map(Path::to_path_buf));
        let svg = (!self.svg_font_dir.as_os_str().is_empty()).then(|| self.svg_font_dir.clone());
        for d in parents.chain(svg) {
            if !dirs.iter().any(|k| d.starts_with(k)) {
                dirs.retain(|k| !k.starts_with(&d));
                dirs.push(d);
            }
        }
        dirs
    }
}

/// The worker pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PoolSettings {
    /// Idle sandboxed workers kept ready; 0 = one per CPU.
    pub workers: usize,
    /// Let workers and the LibreOffice helper run where Landlock cannot be enforced (a kernel
    /// without it). Default false: they refuse to start there, because without Landlock a
    /// compromised worker could read any file the `nobody` user can.
    pub allow_without_landlock: bool,
}

/// The quarantine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuarantineSettings {
    /// Directory of the store; empty = none (`mugai serve` requires one).
    pub dir: PathBuf,
    /// File holding the 32-byte key originals are encrypted with at rest (XChaCha20-Poly1305);
    /// empty = originals stored in clear. `mugai serve` creates it (0600) when missing.
    pub key_file: PathBuf,
    /// Days an entry is kept; older entries are purged by a background task. 0 = forever.
    pub retention_days: u32,
}

impl Default for QuarantineSettings {
    fn default() -> QuarantineSettings {
        QuarantineSettings {
            dir: PathBuf::new(),
            key_file: PathBuf::new(),
            retention_days: 90,
        }
    }
}

/// TLS for a listener or a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    /// Never.
    None,
    /// When the peer offers it; plaintext otherwise.
    #[default]
    Opportunistic,
    /// Always; a peer without it is a transient failure (451).
    Required,
}

/// The SMTP relay's listener (`mugai serve`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpSettings {
    /// Run the relay.
    pub enabled: bool,
    /// Addresses to listen on (`IP:PORT`).
    pub listen: Vec<String>,
    /// Our host name in the greeting, EHLO reply and `Received:`; "" = the system's.
    pub hostname: String,
    /// Client networks allowed to connect (CIDR); others get 554 at the greeting.
    pub client_networks: Vec<String>,
    /// Recipient domains accepted (others 550 5.7.1). Subdomains must be listed themselves.
    pub accepted_domains: Vec<String>,
    /// Largest message in bytes (advertised with SIZE; 552 over it).
    pub max_message_bytes: u64,
    /// Most recipients per message (452 over it).
    pub max_recipients: usize,
    /// Longest text line in a message, CRLF included.
    pub max_line: usize,
    /// Concurrent SMTP sessions; more wait in the kernel's accept queue.
    pub max_sessions: usize,
    /// Messages sanitized at once (CPU-heavy work in the pool); 0 = the pool's worker count.
    pub max_sanitizing: usize,
    /// `Received:` headers a message may already carry; more is a mail loop (554 5.4.6).
    pub max_received: usize,
    /// Bare CR or LF inside a message: "normalize" (LF → CRLF, CR → space) or "reject" (550).
    pub bare_line_ends: BareLineEnds,
    /// Seconds to wait for a command (RFC 5321 4.5.3.2.7: 5 minutes).
    pub command_timeout_secs: u64,
    /// Seconds to wait for each chunk of message data (RFC 5321: 3 minutes).
    pub data_timeout_secs: u64,
    /// Seconds a message may take from its end of data to our reply (sanitizing plus
    /// delivery); kept well inside the sender's 600 s. Sanitizing over it is a verdict
    /// (notice-only), delivery over it a 451.
    pub reply_deadline_secs: u64,
    /// PEM certificate chain for STARTTLS; "" = STARTTLS not offered.
    pub tls_cert: PathBuf,
    /// PEM private key for STARTTLS.
    pub tls_key: PathBuf,
    /// Seconds in-flight transactions may take to finish after SIGTERM; then 421.
    pub shutdown_grace_secs: u64,
}

impl Default for SmtpSettings {
    fn default() -> SmtpSettings {
        SmtpSettings {
            enabled: true,
            listen: vec!["127.0.0.1:2525".into()],
            hostname: String::new(),
            client_networks: vec!["127.0.0.0/8".into(), "::1/128".into()],
            accepted_domains: vec!["example.lg.jp".into()],
            max_message_bytes: 50 * 1024 * 1024,
            max_recipients: 100,
            max_line: 1000,
            max_sessions: 100,
            max_sanitizing: 0,
            max_received: 30,
            bare_line_ends: BareLineEnds::Normalize,
            command_timeout_secs: 300,
            data_timeout_secs: 180,
            reply_deadline_secs: 480,
            tls_cert: PathBuf::new(),
            tls_key: PathBuf::new(),
            shutdown_grace_secs: 30,
        }
    }
}

/// The kind of downstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DownstreamKind {
    /// A directory: one file per delivered message, durable before 250.
    Dir,
    /// An SMTP server (the LGWAN-side MTA).
    Smtp,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// For people.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// Where sanitized messages go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DownstreamSettings {
    /// "dir": each message written as a file in `dir` (first runs, demos); "smtp": relayed to
    /// the LGWAN-side MTA at `address`.
    pub kind: DownstreamKind,
    /// Directory for `kind = "dir"`.
    pub dir: PathBuf,
    /// `HOST:PORT` of the downstream MTA for `kind = "smtp"`.
    pub address: String,
    /// Our EHLO name downstream; "" = `smtp.hostname`.
    pub helo: String,
    /// TLS to the downstream MTA: "none", "opportunistic" or "required".
    pub tls: TlsMode,
    /// PEM CA certificates to verify the downstream with; "" = the Mozilla roots built into mugai (webpki-roots).
    pub tls_ca: PathBuf,
    /// Seconds to connect and read the greeting.
    pub connect_timeout_secs: u64,
    /// Seconds to wait for each downstream reply (after the message itself: up to
    /// `smtp.reply_deadline_secs`).
    pub reply_timeout_secs: u64,
    /// While a message is sanitized, a NOOP is sent downstream every this many seconds so an
    /// MTA with a short idle timeout keeps the session; a dropped session is re-opened and
    /// MAIL/RCPT replayed before DATA.
    pub keepalive_secs: u64,
}

impl Default for DownstreamSettings {
    fn default() -> DownstreamSettings {
        DownstreamSettings {
            kind: DownstreamKind::Dir,
            dir: "mugai-data/delivered".into(),
            address: "127.0.0.1:10026".into(),
            helo: String::new(),
            tls: TlsMode::Opportunistic,
            tls_ca: PathBuf::new(),
            connect_timeout_secs: 30,
            reply_timeout_secs: 300,
            keepalive_secs: 5,
        }
    }
}

/// The audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// The hash-chained JSON Lines file, one line per message; "" = none.
    pub file: PathBuf,
    /// File holding a key: envelope addresses are then logged as HMAC-SHA256 under it instead
    /// of in clear. "" = in clear.
    pub address_hmac_key_file: PathBuf,
}

impl Default for AuditSettings {
    fn default() -> AuditSettings {
        AuditSettings {
            file: "mugai-data/audit.jsonl".into(),
            address_hmac_key_file: PathBuf::new(),
        }
    }
}

/// The drop directory (`mugai serve`): files dropped in `inbox` come out sanitized in
/// `outbox`, subfolders preserved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DropdirSettings {
    /// Run the drop directory.
    pub enabled: bool,
    /// Where files arrive (writable from the internet side only).
    pub inbox: PathBuf,
    /// Where sanitized files appear (readable from the LGWAN side only).
    pub outbox: PathBuf,
    /// Claimed files in progress; on the same file system as `inbox` (claims are renames).
    pub work: PathBuf,
    /// Reports (JSON, one per file); "" = beside each output as `NAME.report.json`.
    pub reports: PathBuf,
    /// Seconds a file's size and mtime must stay unchanged before it is taken.
    pub settle_secs: u64,
    /// Seconds between full rescans of the inbox (inotify is the fast path).
    pub rescan_secs: u64,
    /// Files sanitized at once; 0 = the pool's worker count.
    pub max_concurrent: usize,
}

impl Default for DropdirSettings {
    fn default() -> DropdirSettings {
        DropdirSettings {
            enabled: true,
            inbox: "mugai-data/inbox".into(),
            outbox: "mugai-data/outbox".into(),
            work: "mugai-data/work".into(),
            reports: PathBuf::new(),
            settle_secs: 2,
            rescan_secs: 30,
            max_concurrent: 0,
        }
    }
}

/// The HTTP API and admin listener (`mugai serve`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Run the HTTP listener.
    pub enabled: bool,
    /// `IP:PORT`; anything but loopback requires `tls_cert`/`tls_key`.
    pub listen: String,
    /// PEM certificate chain; "" = plain HTTP (loopback only).
    pub tls_cert: PathBuf,
    /// PEM private key.
    pub tls_key: PathBuf,
    /// Users, roles, password hashes and API tokens (`mugai user ...` edits it).
    pub users_file: PathBuf,
    /// Largest request body in bytes (413 over it).
    pub max_body_bytes: u64,
    /// Requests handled at once (503 over it).
    pub max_concurrent: usize,
    /// Seconds a request may take.
    pub timeout_secs: u64,
    /// Seconds a report stays available at `/v1/reports/{id}`.
    pub report_retention_secs: u64,
    /// Where approved file releases are written (`released/` in the drop directory's outbox
    /// by default).
    pub released_dir: PathBuf,
    /// Seconds a console (web page) session lives without a request before it must sign in
    /// again.
    pub console_idle_secs: u64,
}

impl Default for HttpSettings {
    fn default() -> HttpSettings {
        HttpSettings {
            enabled: true,
            listen: "127.0.0.1:8025".into(),
            tls_cert: PathBuf::new(),
            tls_key: PathBuf::new(),
            users_file: "mugai-data/users.sqlite".into(),
            max_body_bytes: 50 * 1024 * 1024,
            max_concurrent: 16,
            timeout_secs: 300,
            report_retention_secs: 86_400,
            released_dir: "mugai-data/outbox/released".into(),
            console_idle_secs: 1800,
        }
    }
}

/// Operational logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// "human" or "json".
    pub format: LogFormat,
    /// Log file (reopened on SIGHUP); "" = standard error.
    pub file: PathBuf,
    /// tracing filter, e.g. "info" or "mugai=debug".
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> LogSettings {
        LogSettings {
            format: LogFormat::Human,
            file: PathBuf::new(),
            level: "info".into(),
        }
    }
}

/// Everything but the policy, as it appears in the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Machine {
    host: Host,
    pool: PoolSettings,
    quarantine: QuarantineSettings,
    smtp: SmtpSettings,
    downstream: DownstreamSettings,
    audit: AuditSettings,
    log: LogSettings,
    dropdir: DropdirSettings,
    http: HttpSettings,
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Config {
    /// Host paths.
    pub host: Host,
    /// The worker pool.
    pub pool: PoolSettings,
    /// The quarantine.
    pub quarantine: QuarantineSettings,
    /// The SMTP relay's listener.
    pub smtp: SmtpSettings,
    /// Where sanitized messages go.
    pub downstream: DownstreamSettings,
    /// The audit log.
    pub audit: AuditSettings,
    /// Operational logs.
    pub log: LogSettings,
    /// The drop directory.
    pub dropdir: DropdirSettings,
    /// The HTTP API.
    pub http: HttpSettings,
    /// The sanitizing policy (`[policy]`).
    pub policy: Policy,
}

impl Config {
    /// Parses a configuration; unknown keys are errors, missing keys take their defaults.
    pub fn from_toml(text: &str) -> anyhow::Result<Config> {
        let mut table: toml::Table = text.parse().context("not valid TOML")?;
        let policy = match table.remove("policy") {
            None => Policy::default(),
            Some(toml::Value::Table(t)) => Policy::from_toml(&t.to_string()).context("[policy]")?,
            Some(_) => anyhow::bail!("policy must be a table ([policy])"),
        };
        let machine: Machine = table.try_into().context("invalid configuration")?;
        Ok(Config {
            host: machine.host,
            pool: machine.pool,
            quarantine: machine.quarantine,
            smtp: machine.smtp,
            downstream: machine.downstream,
            audit: machine.audit,
            log: machine.log,
            dropdir: machine.dropdir,
            http: machine.http,
            policy,
        })
    }

    /// Reads and parses a configuration file; errors name the file.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("configuration file {}", path.display()))?;
        Config::from_toml(&text).with_context(|| format!("configuration file {}", path.display()))
    }

    /// What in this configuration would fail at run time on this machine: fonts that cannot
    /// be read, a missing font directory, LibreOffice not found while the policy needs it.
    pub fn runtime_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let readable = |p: &Path| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file()) && std::fs::File::open(p).is_ok()
        };
        let h = &self.host;
        if !readable(&h.cjk_font) {
            problems.push(format!(
                "host.cjk_font: cannot read {}: Japanese text that a PDF does not embed would be \
                 missing from rasterized pages (install fonts-noto-cjk, or set the path)",
                h.cjk_font.display()
            ));
        }
        if !h.cjk_serif_font.as_os_str().is_empty() && !readable(&h.cjk_serif_font) {
            problems.push(format!(
                "host.cjk_serif_font: cannot read {} (install fonts-noto-cjk, set the path, or \
                 set \"\" to use host.cjk_font)",
                h.cjk_serif_font.display()
            ));
        }
        if !h.svg_font_dir.is_dir() {
            problems.push(format!(
                "host.svg_font_dir: {} is not a directory: SVG text would be drawn without fonts",
                h.svg_font_dir.display()
            ));
        }
        let office = &self.policy.office;
        if (office.convert_legacy || office.rasterize)
            && crate::convert::LibreOffice::find(&h.soffice, std::time::Duration::from_secs(60))
                .is_none()
        {
            problems.push(format!(
                "host.soffice: LibreOffice ({:?}) not found: legacy .doc/.xls/.ppt files would be \
                 removed (install libreoffice-writer-nogui, -calc-nogui, -impress-nogui, or set \
                 policy.office.convert_legacy = false and policy.office.rasterize = false)",
                h.soffice
            ));
        }
        if self.policy.pdf.ocr
            && crate::ocr::Tesseract::find(&h.tesseract, std::time::Duration::from_secs(60))
                .is_none()
        {
            problems.push(format!(
                "host.tesseract: Tesseract ({:?}) not found: pages without text would be \
                 delivered without a text layer (install tesseract-ocr and tesseract-ocr-jpn, or \
                 set policy.pdf.ocr = false)",
                h.tesseract
            ));
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_printed_defaults_are_the_defaults() {
        assert_eq!(
            Config::from_toml(DEFAULT_CONFIG_TOML).unwrap(),
            Config::default()
        );
    }

    #[test]
    fn policy_table_and_unknown_keys() {
        let c = Config::from_toml(
            "[host]\nsoffice = \"/opt/lo/soffice\"\n[policy.pdf]\nmode = \"clean\"\n",
        )
        .unwrap();
        assert_eq!(c.host.soffice, "/opt/lo/soffice");
        assert_eq!(c.policy.pdf.mode, sanitizer_core::policy::PdfMode::Clean);
        let err = Config::from_toml("[host]\nsofice = \"x\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("sofice"), "{err:#}");
        let err = Config::from_toml("[policy.pdf]\ndpi = 5\n").unwrap_err();
        assert!(format!("{err:#}").contains("pdf.dpi"), "{err:#}");
    }

    #[test]
    fn font_dirs_are_deduplicated_parents() {
        let h = Host::default();
        assert_eq!(h.font_dirs(), [PathBuf::from("/usr/share/fonts")]);
        let h = Host {
            cjk_font: "/opt/fonts/a.ttc".into(),
            cjk_serif_font: "".into(),
            svg_font_dir: "/srv/svgfonts".into(),
            ..Host::default()
        };
        assert_eq!(
            h.font_dirs(),
            [PathBuf::from("/opt/fonts"), PathBuf::from("/srv/svgfonts")]
        );
    }
}
