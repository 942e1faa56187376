//! `mugai serve`: the long-running daemon. Today it runs the SMTP relay
//! ([`crate::sources::smtp::server`]); the drop directory and the HTTP API join it here.
//!
//! Start-up checks everything it can before the first connection (configuration, quarantine
//! and its key, audit log, TLS files, listen addresses, the worker pool) and fails with the
//! file or key at fault. Then:
//! - **SIGTERM / SIGINT**: stop accepting; transactions in flight get
//!   `smtp.shutdown_grace_secs` to finish; whoever is left hears 421 (their MTA retries).
//! - **SIGHUP**: reopen the log file, and re-read the configuration file's `[policy]`; a
//!   policy that does not load is refused with an error in the log and the old one kept.
//! - A background task purges quarantine entries older than `quarantine.retention_days`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use ipnet::IpNet;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::config::{Config, SmtpSettings};
use crate::sanitize::Current;
use crate::sinks::audit::AuditLog;
use crate::sinks::downstream::Downstream;
use crate::sinks::vault::Vault;
use crate::sources::smtp::server::{Relay, RelayParts, RelaySettings, RunState};
use crate::sources::smtp::session::{Limits, SessionConfig};

/// This machine's host name, for the greeting when `smtp.hostname` is empty.
pub fn system_hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The relay's settings from `[smtp]`; errors name the key.
pub fn relay_settings(smtp: &SmtpSettings, hostname: &str) -> anyhow::Result<RelaySettings> {
    let mut networks = Vec::new();
    for n in &smtp.client_networks {
        let net: IpNet = n
            .parse()
            .or_else(|_| n.parse::<std::net::IpAddr>().map(IpNet::from))
            .with_context(|| format!("smtp.client_networks: {n:?} is not a network (CIDR)"))?;
        networks.push(net);
    }
    let mut domains = Vec::new();
    for d in &smtp.accepted_domains {
        let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
        if d.is_empty() || d.contains('@') || d.contains(char::is_whitespace) {
            bail!("smtp.accepted_domains: {d:?} is not a domain");
        }
        domains.push(d);
    }
    if smtp.max_line < 1000 {
        bail!("smtp.max_line must be at least 1000 (RFC 5321 4.5.3.1.6)");
    }
    if smtp.max_recipients < 1 || smtp.max_message_bytes < 1024 {
        bail!("smtp.max_recipients must be at least 1 and smtp.max_message_bytes at least 1024");
    }
    if smtp.reply_deadline_secs == 0 || smtp.reply_deadline_secs >= 600 {
        bail!(
            "smtp.reply_deadline_secs must be between 1 and 599: senders give up after 600 s \
             (RFC 5321 4.5.3.2.6) and would send the message again"
        );
    }
    Ok(RelaySettings {
        session: SessionConfig {
            hostname: hostname.to_owned(),
            accepted_domains: domains,
            starttls: false,
            bare_line_ends: smtp.bare_line_ends,
            limits: Limits {
                max_message_bytes: smtp.max_message_bytes,
                max_recipients: smtp.max_recipients,
                max_line: smtp.max_line,
                ..Limits::default()
            },
        },
        networks,
        command_timeout: Duration::from_secs(smtp.command_timeout_secs.max(1)),
        data_timeout: Duration::from_secs(smtp.data_timeout_secs.max(1)),
        reply_deadline: Duration::from_secs(smtp.reply_deadline_secs),
        max_received: smtp.max_received,
    })
}

/// A TLS server configuration from a PEM certificate chain and key; errors name
/// `{section}.tls_cert` / `{section}.tls_key`.
pub fn tls_server_config(
    cert: &Path,
    key: &Path,
    section: &str,
) -> anyhow::Result<rustls::ServerConfig> {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("{section}.tls_cert {}", cert.display()))?;
    if certs.is_empty() {
        bail!(
            "{section}.tls_cert {}: no certificate in it",
            cert.display()
        );
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("{section}.tls_key {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .with_context(|| {
            format!("{section}.tls_cert and {section}.tls_key do not make a usable pair")
        })
}

/// The STARTTLS acceptor, when `smtp.tls_cert` is set.
pub fn tls_acceptor(smtp: &SmtpSettings) -> anyhow::Result<Option<tokio_rustls::TlsAcceptor>> {
    if smtp.tls_cert.as_os_str().is_empty() {
        if !smtp.tls_key.as_os_str().is_empty() {
            bail!("smtp.tls_key is set but smtp.tls_cert is not");
        }
        return Ok(None);
    }
    let config = tls_server_config(&smtp.tls_cert, &smtp.tls_key, "smtp")?;
    Ok(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))))
}

/// What `mugai check-config` finds in the daemon's sections: errors (the daemon would not
/// start) and warnings (it would start, but something is likely wrong, such as a downstream
/// MTA that does not answer now).
pub fn check(config: &Config) -> (Vec<String>, Vec<String>) {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let smtp = &config.smtp;
    if let Err(e) = relay_settings(smtp, "check") {
        errors.push(format!("{e:#}"));
    }
    if let Err(e) = tls_acceptor(smtp) {
        errors.push(format!("{e:#}"));
    }
    for addr in &smtp.listen {
        if addr.parse::<SocketAddr>().is_err() {
            errors.push(format!("smtp.listen: {addr:?} is not IP:PORT"));
        }
    }
    if smtp.enabled && smtp.listen.is_empty() {
        errors.push("smtp.listen: no address to listen on".into());
    }
    if config.http.enabled
        && let Err(e) = crate::sources::http::settings(&config.http)
    {
        errors.push(format!("{e:#}"));
    }
    if smtp.accepted_domains.is_empty() {
        warnings.push("smtp.accepted_domains is empty: every recipient will be refused".into());
    }
    let q = &config.quarantine;
    if q.dir.as_os_str().is_empty() {
        warnings.push(
            "quarantine.dir is empty: `mugai serve` will not start without a quarantine".into(),
        );
    }
    if !q.key_file.as_os_str().is_empty() {
        match std::fs::metadata(&q.key_file) {
            Ok(m) => {
                use std::os::unix::fs::PermissionsExt as _;
                if m.permissions().mode() & 0o077 != 0 {
                    errors.push(format!(
                        "quarantine.key_file {}: readable by group or others (chmod 600 it)",
                        q.key_file.display()
                    ));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => warnings.push(format!(
                "quarantine.key_file {}: does not exist yet; `mugai serve` will create it (keep a \
                 copy: without it the originals cannot be read)",
                q.key_file.display()
            )),
            Err(e) => errors.push(format!("quarantine.key_file {}: {e}", q.key_file.display())),
        }
    } else if !q.dir.as_os_str().is_empty() {
        warnings.push(
            "quarantine.key_file is empty: originals (personal data, live malware) are stored \
             unencrypted"
                .into(),
        );
    }
    let hmac = &config.audit.address_hmac_key_file;
    if !hmac.as_os_str().is_empty() && std::fs::File::open(hmac).is_err() {
        errors.push(format!(
            "audit.address_hmac_key_file {}: cannot be read",
            hmac.display()
        ));
    }
    let d = &config.downstream;
    match d.kind {
        crate::config::DownstreamKind::Smtp => {
            use std::net::ToSocketAddrs as _;
            match d.address.to_socket_addrs().map(|mut a| a.next()) {
                Ok(Some(sa)) => {
                    if std::net::TcpStream::connect_timeout(&sa, Duration::from_secs(3)).is_err() {
                        warnings.push(format!(
                            "downstream.address {}: nothing answers there now (the relay will \
                             answer 451 until it does)",
                            d.address
                        ));
                    }
                }
                _ => errors.push(format!(
                    "downstream.address {:?} is not HOST:PORT",
                    d.address
                )),
            }
            if d.tls == crate::config::TlsMode::Required
                && !d.tls_ca.as_os_str().is_empty()
                && !d.tls_ca.is_file()
            {
                errors.push(format!(
                    "downstream.tls_ca {}: not a file",
                    d.tls_ca.display()
                ));
            }
        }
        crate::config::DownstreamKind::Dir => {
            if d.dir.as_os_str().is_empty() {
                errors.push("downstream.dir is empty".into());
            } else if !d.dir.is_dir() {
                warnings.push(format!(
                    "downstream.dir {}: does not exist yet; `mugai serve` will create it",
                    d.dir.display()
                ));
            }
        }
    }
    if let Err(e) = config
        .log
        .level
        .parse::<tracing_subscriber::filter::Targets>()
    {
        errors.push(format!("log.level {:?}: {e}", config.log.level));
    }
    (errors, warnings)
}

/// What every source of the daemon shares, built once at start-up.
#[derive(Debug, Clone)]
pub struct Shared {
    /// The configuration as loaded at start-up.
    pub config: Arc<Config>,
    /// The transform (worker pool); replaced on SIGHUP.
    pub transform: Arc<Current>,
    /// The quarantine.
    pub vault: Arc<Vault>,
    /// The audit log, if configured.
    pub audit: Option<Arc<AuditLog>>,
    /// Where the daemon is in its life; sources stop taking work when it leaves `Running`.
    pub state: watch::Receiver<RunState>,
    /// Pool workers (for concurrency caps that default to it).
    pub workers: usize,
    /// Our host name.
    pub hostname: String,
}

/// Starts the SMTP relay's listeners into `servers`.
async fn start_smtp(shared: &Shared, servers: &mut tokio::task::JoinSet<()>) -> anyhow::Result<()> {
    let config = &shared.config;
    let settings = relay_settings(&config.smtp, &shared.hostname)?;
    let tls = tls_acceptor(&config.smtp)?;
    // The reply to the final dot may take what is left of the reply deadline (the relay
    // bounds the whole delivery by it too).
    let downstream = Downstream::new(&config.downstream, &shared.hostname)
        .context("downstream")?
        .with_data_timeout(settings.reply_deadline);
    let max_sanitizing = if config.smtp.max_sanitizing > 0 {
        config.smtp.max_sanitizing
    } else {
        shared.workers
    };
    let mut listeners = Vec::new();
    for addr in &config.smtp.listen {
        let sa: SocketAddr = addr
            .parse()
            .with_context(|| format!("smtp.listen: {addr:?} is not IP:PORT"))?;
        let l = TcpListener::bind(sa)
            .await
            .with_context(|| format!("smtp.listen: cannot listen on {sa}"))?;
        listeners.push(l);
    }
    let relay = Arc::new(Relay::new(RelayParts {
        settings,
        tls,
        downstream,
        transform: Arc::clone(&shared.transform),
        max_sanitizing,
        vault: Arc::clone(&shared.vault),
        audit: shared.audit.clone(),
        state: shared.state.clone(),
    }));
    for l in listeners {
        let local = l.local_addr().map(|a| a.to_string()).unwrap_or_default();
        tracing::info!(listen = %local, "SMTP relay listening");
        let target = match config.downstream.kind {
            crate::config::DownstreamKind::Dir => {
                format!("directory {}", config.downstream.dir.display())
            }
            crate::config::DownstreamKind::Smtp => format!("SMTP {}", config.downstream.address),
        };
        crate::cli::say(&format!(
            "mugai: SMTP relay listening on {local}, delivering to {target}"
        ));
        servers.spawn(Arc::clone(&relay).serve(l, config.smtp.max_sessions));
    }
    Ok(())
}

/// Starts the HTTP API's listener into `servers` ([`crate::sources::http`]).
async fn start_http(shared: &Shared, servers: &mut tokio::task::JoinSet<()>) -> anyhow::Result<()> {
    crate::sources::http::start(shared, servers).await
}

/// Starts the drop directory ([`crate::sources::dropdir`]) into `servers`: checks its folders
/// (and that `work` shares the inbox's file system), sweeps stale temporary files from the
/// outbox, then runs until the daemon stops taking work.
async fn start_dropdir(
    shared: &Shared,
    servers: &mut tokio::task::JoinSet<()>,
) -> anyhow::Result<()> {
    use crate::sources::dropdir::{Dropdir, Timing};
    let settings = &shared.config.dropdir;
    let max_input = shared.config.policy.limits.max_input_bytes;
    let dropdir = Dropdir::open(
        settings,
        max_input,
        Arc::clone(&shared.transform),
        Arc::clone(&shared.vault),
        shared.audit.clone(),
    )?;
    let dropdir = Arc::new(dropdir);
    let d = Arc::clone(&dropdir);
    let swept = tokio::task::spawn_blocking(move || d.sweep_outbox())
        .await
        .unwrap_or(0);
    if swept > 0 {
        tracing::info!(
            files = swept,
            "drop directory: stale temporary files removed"
        );
    }
    let timing = Timing {
        settle: Duration::from_secs(settings.settle_secs),
        rescan: Duration::from_secs(settings.rescan_secs),
        max_concurrent: if settings.max_concurrent > 0 {
            settings.max_concurrent
        } else {
            shared.workers
        },
    };
    crate::cli::say(&format!(
        "mugai: drop directory {} -> {}",
        settings.inbox.display(),
        settings.outbox.display()
    ));
    servers.spawn(crate::sources::dropdir::run(
        dropdir,
        timing,
        shared.state.clone(),
    ));
    Ok(())
}

/// Runs the daemon until SIGTERM/SIGINT. `config_path` is re-read on SIGHUP.
pub fn run(config: Config, config_path: Option<PathBuf>) -> anyhow::Result<()> {
    let log = crate::logging::init(&config.log)?;
    if !config.smtp.enabled && !config.dropdir.enabled && !config.http.enabled {
        bail!("nothing to serve: [smtp], [dropdir] and [http] are all disabled");
    }
    if config.quarantine.dir.as_os_str().is_empty() {
        bail!(
            "[quarantine] dir is required by mugai serve: the original of every item that \
             is not clean is kept there before it is answered for (see deploy/mugai.toml)"
        );
    }
    let hostname = if config.smtp.hostname.is_empty() {
        system_hostname()
    } else {
        config.smtp.hostname.clone()
    };
    let vault = Arc::new(Vault::open(&config.quarantine).context("quarantine")?);
    // Leftovers of a crash: temporary files of writes that never finished, and index rows of
    // messages whose sender got no reply (it retries; the rows become `deferred`).
    vault
        .store()
        .sweep_temp(Duration::from_secs(3600))
        .context("quarantine: sweeping temporary files")?;
    vault
        .recover_interrupted()
        .context("quarantine: recovering rows of an interrupted run")?;
    let audit = AuditLog::open(&config.audit)
        .context("audit log")?
        .map(Arc::new);
    let transform = crate::app::transform(config.policy.clone(), &config, false)?;
    let workers = if config.pool.workers > 0 {
        config.pool.workers
    } else {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("mugai-io")
        .build()
        .context("cannot start the async runtime")?;
    let (state_tx, state_rx) = watch::channel(RunState::Running);
    let shared = Shared {
        config: Arc::new(config),
        transform: Arc::new(Current::new(transform)),
        vault,
        audit,
        state: state_rx,
        workers,
        hostname,
    };
    runtime.block_on(async move {
        let config = Arc::clone(&shared.config);
        let mut servers = tokio::task::JoinSet::new();
        if config.smtp.enabled {
            start_smtp(&shared, &mut servers).await?;
        }
        if config.http.enabled {
            start_http(&shared, &mut servers).await?;
        }
        if config.dropdir.enabled {
            start_dropdir(&shared, &mut servers).await?;
        }
        crate::cli::say(&format!(
            "mugai: quarantine {}; SIGTERM stops, SIGHUP reloads the policy",
            config.quarantine.dir.display()
        ));
        let purge = tokio::spawn(purge_loop(
            Arc::clone(&shared.vault),
            shared.audit.clone(),
            config.quarantine.retention_days,
        ));

        let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
        let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => reload(&shared.transform, &log, config_path.as_deref()).await,
                done = servers.join_next() => {
                    if done.is_none() { break; }
                }
            }
        }
        tracing::info!("stopping: nothing new is taken; work in flight may finish");
        let _ = state_tx.send(RunState::Draining);
        let grace = Duration::from_secs(config.smtp.shutdown_grace_secs);
        let drained = tokio::time::timeout(grace, async {
            while servers.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("grace period over: 421 to the sessions still open");
            let _ = state_tx.send(RunState::Stopping);
            let _ = tokio::time::timeout(Duration::from_secs(5), async {
                while servers.join_next().await.is_some() {}
            })
            .await;
        }
        purge.abort();
        tracing::info!("stopped");
        Ok::<(), anyhow::Error>(())
    })?;
    runtime.shutdown_timeout(Duration::from_secs(2));
    Ok(())
}

/// SIGHUP: reopen the log, reload the policy (the old one stays when the new one fails).
async fn reload(current: &Current, log: &crate::logging::LogFile, path: Option<&Path>) {
    if let Err(e) = log.reopen() {
        tracing::error!(error = %e, "SIGHUP: cannot reopen the log file");
    }
    let Some(path) = path.map(Path::to_path_buf) else {
        tracing::info!("SIGHUP: log reopened; no configuration file to reload");
        return;
    };
    let built = tokio::task::spawn_blocking(move || {
        let config = Config::load(&path)?;
        let transform = crate::app::transform(config.policy.clone(), &config, false)?;
        Ok::<_, anyhow::Error>(transform)
    })
    .await;
    match built {
        Ok(Ok(t)) => {
            current.set(t);
            tracing::info!("SIGHUP: policy reloaded");
        }
        Ok(Err(e)) => {
            tracing::error!(
                error = format!("{e:#}"),
                "SIGHUP: new policy refused; keeping the old one"
            );
        }
        Err(e) => tracing::error!(error = %e, "SIGHUP: reload failed; keeping the old policy"),
    }
}

/// Hourly: purges expired quarantine entries, and logs the audit log's head (its last `seq`
/// and hash) so that lines removed from the end of the chain show up against the
/// operational log (see `sinks::audit`, "Limits of a hash chain").
async fn purge_loop(vault: Arc<Vault>, audit: Option<Arc<AuditLog>>, retention_days: u32) {
    let mut every = tokio::time::interval(Duration::from_secs(3600));
    loop {
        every.tick().await;
        if let Some(a) = &audit {
            let (seq, head) = a.head();
            tracing::info!(seq, head = %head, file = %a.path().display(), "audit log head");
        }
        if retention_days == 0 {
            continue;
        }
        let v = Arc::clone(&vault);
        let done =
            tokio::task::spawn_blocking(move || v.purge_expired(jiff::Timestamp::now())).await;
        match done {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(purged = n, "quarantine: expired entries purged"),
            Ok(Err(e)) => tracing::error!(error = %e, "quarantine purge failed"),
            Err(e) => tracing::error!(error = %e, "quarantine purge task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked_with_the_key_named() {
        let ok = relay_settings(&SmtpSettings::default(), "mx.example").unwrap();
        assert_eq!(ok.session.accepted_domains, ["example.lg.jp"]);
        assert_eq!(ok.networks.len(), 2);
        let bad = SmtpSettings {
            client_networks: vec!["10.0.0.0/33".into()],
            ..SmtpSettings::default()
        };
        let e = relay_settings(&bad, "h").unwrap_err();
        assert!(format!("{e:#}").contains("smtp.client_networks"), "{e:#}");
        let bad = SmtpSettings {
            reply_deadline_secs: 600,
            ..SmtpSettings::default()
        };
        let e = relay_settings(&bad, "h").unwrap_err();
        assert!(format!("{e:#}").contains("reply_deadline_secs"), "{e:#}");
        let single = SmtpSettings {
            client_networks: vec!["192.0.2.7".into()],
            accepted_domains: vec!["City.Example.LG.JP.".into()],
            ..SmtpSettings::default()
        };
        let s = relay_settings(&single, "h").unwrap();
        assert_eq!(s.session.accepted_domains, ["city.example.lg.jp"]);
        assert!(crate::sources::smtp::server::allowed(
            "192.0.2.7".parse().unwrap(),
            &s.networks
        ));
        assert!(!crate::sources::smtp::server::allowed(
            "192.0.2.8".parse().unwrap(),
            &s.networks
        ));
    }
}
