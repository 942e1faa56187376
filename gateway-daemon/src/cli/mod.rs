//! The `mugai` command line: [`args`] declares the arguments and help; this module runs the
//! small commands (`policy`, `check-policy`, `config`, `check-config`, `quarantine`, `audit`,
//! `completions`, `man`) and
//! `run` the sanitizing ones (`sanitize`, `mail`).
//!
//! Exit codes (CONTRACT.md): 0 every input produced a safe output; 3 at least one input was
//! blocked; 2 usage or configuration error; 1 anything else (I/O). When several apply, 1 wins
//! over 3, and 3 over 0.
//!
//! Standard error may be closed or a pipe that closes early: messages to it are best effort
//! and never panic. A closed standard output (`mugai policy | head -1`) ends the command
//! quietly.

pub mod args;
mod run;

use std::io::{self, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use sanitizer_core::{DEFAULT_POLICY_TOML, Policy};

pub use args::{
    AuditCommand, Cli, Command, Common, MailArgs, PolicyArgs, QuarantineCommand, SanitizeArgs,
    UserCommand,
};

use crate::app::load_policy;
use crate::config::{Config, DEFAULT_CONFIG_TOML};
use crate::i18n::Lang;
use crate::sinks::atomic::{Access, Existing, write_atomic};
use crate::sinks::outbox::escape_for_display;
use crate::sinks::quarantine::{DirStore, QuarantineError, QuarantineStore, load_key};

/// Why a command stopped before its work was done.
#[derive(Debug)]
enum Fatal {
    /// A usage error in the named subcommand (exit 2, formatted by clap).
    Usage(&'static str, String),
    /// A configuration error (exit 2).
    Config(String),
    /// Anything else (exit 1).
    Io(String),
    /// Standard output was closed by its reader: stop quietly (exit 0).
    Closed,
}

/// Writes a line on standard error, best effort: a closed or broken stderr is not an error.
pub(crate) fn say(line: &str) {
    let mut e = io::stderr().lock();
    let _ = writeln!(e, "{line}");
}

/// Writes to standard output; a reader that went away ends the command quietly.
fn print_out(bytes: &[u8]) -> Result<(), Fatal> {
    let mut so = io::stdout().lock();
    match so.write_all(bytes).and_then(|()| so.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(Fatal::Closed),
        Err(e) => Err(Fatal::Io(format!("standard output: {e}"))),
    }
}

/// Parses the command line, runs it, and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The daemon sets up its own logging from its configuration.
    if !matches!(cli.command, Command::Serve { .. }) {
        init_tracing();
    }
    match dispatch(cli) {
        Ok(code) => code,
        Err(Fatal::Usage(sub, msg)) => {
            let mut cmd = Cli::command();
            cmd.build();
            let err = match cmd.find_subcommand_mut(sub) {
                Some(sc) => sc.error(clap::error::ErrorKind::ArgumentConflict, msg),
                None => cmd.error(clap::error::ErrorKind::ArgumentConflict, msg),
            };
            let _ = err.print();
            ExitCode::from(2)
        }
        Err(Fatal::Config(msg)) => {
            say(&format!("mugai: {msg}"));
            ExitCode::from(2)
        }
        Err(Fatal::Io(msg)) => {
            say(&format!("mugai: {msg}"));
            ExitCode::from(1)
        }
        Err(Fatal::Closed) => ExitCode::SUCCESS,
    }
}

/// `mugai serve`: configuration errors exit 2, everything else 1.
fn serve(path: Option<std::path::PathBuf>) -> Result<ExitCode, Fatal> {
    let config = match &path {
        Some(p) => Config::load(p).map_err(|e| Fatal::Config(format!("{e:#}")))?,
        None => Config::default(),
    };
    crate::serve::run(config, path).map_err(|e| Fatal::Config(format!("{e:#}")))?;
    Ok(ExitCode::SUCCESS)
}

/// Logs go to standard error, filtered by `RUST_LOG` (`warn` by default). They never contain
/// message bodies. Write errors (a closed stderr) are ignored by the subscriber.
fn init_tracing() {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::WARN));
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(io::stderr)
                .with_ansi(io::stderr().is_terminal())
                .with_filter(filter),
        )
        .try_init();
}

fn dispatch(cli: Cli) -> Result<ExitCode, Fatal> {
    match cli.command {
        Command::Policy(PolicyArgs { check: Some(file) }) | Command::CheckPolicy { file } => {
            check_policy(&file)
        }
        Command::Policy(PolicyArgs { check: None }) => {
            print_out(DEFAULT_POLICY_TOML.as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Sanitize(args) => run::sanitize(args),
        Command::Mail(args) => run::mail(args),
        Command::Quarantine(q) => quarantine(q),
        Command::Audit(AuditCommand::Verify { file }) => audit_verify(&file),
        Command::Config => {
            print_out(DEFAULT_CONFIG_TOML.as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig { file } => check_config(&file),
        Command::Serve { config } => serve(config),
        Command::Completions { shell } => {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "mugai", &mut buf);
            print_out(&buf)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::User(cmd) => user(cmd),
        Command::Man => {
            let mut buf = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut buf)
                .map_err(|e| Fatal::Io(format!("manual page: {e}")))?;
            print_out(&buf)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `mugai user ...`: edits the users store named by the configuration's `http.users_file`.
fn user(cmd: UserCommand) -> Result<ExitCode, Fatal> {
    use crate::users::{UserError, UserStore};
    let config = match &cmd {
        UserCommand::Add { config, .. }
        | UserCommand::Passwd { config, .. }
        | UserCommand::Remove { config, .. }
        | UserCommand::List { config }
        | UserCommand::Token { config, .. } => config.clone(),
    };
    let config = match &config {
        Some(p) => Config::load(p).map_err(|e| Fatal::Config(format!("{e:#}")))?,
        None => Config::default(),
    };
    let fatal = |e: UserError| match e {
        UserError::Invalid(_) | UserError::NotFound(_) | UserError::Exists(_) => {
            Fatal::Usage("user", e.to_string())
        }
        e => Fatal::Io(e.to_string()),
    };
    let store = UserStore::open(&config.http.users_file).map_err(fatal)?;
    let read_password = || -> Result<String, Fatal> {
        let mut line = String::new();
        io::stdin()
            .read_line(&mut line)
            .map_err(|e| Fatal::Io(format!("standard input: {e}")))?;
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    };
    match cmd {
        UserCommand::Add {
            name,
            role,
            addresses,
            password_stdin,
            ..
        } => {
            let Some(role) = crate::actor::Role::parse(&role) else {
                return Err(Fatal::Usage(
                    "user",
                    format!("--role {role:?}: requester, approver or admin"),
                ));
            };
            let password = if password_stdin {
                Some(read_password()?)
            } else {
                None
            };
            store
                .add(&name, role, &addresses, password.as_deref())
                .map_err(fatal)?;
            say(&format!("mugai: user {name} added ({})", role.as_str()));
        }
        UserCommand::Passwd { name, .. } => {
            let password = read_password()?;
            store.set_password(&name, &password).map_err(fatal)?;
            say(&format!("mugai: password of {name} changed"));
        }
        UserCommand::Remove { name, .. } => {
            store.remove(&name).map_err(fatal)?;
            say(&format!("mugai: user {name} removed"));
        }
        UserCommand::List { .. } => {
            let mut out = String::new();
            for u in store.list().map_err(fatal)? {
                out.push_str(&format!(
                    "{}\t{}\tpassword={}\ttoken={}\t{}\n",
                    u.name,
                    u.role.as_str(),
                    if u.has_password { "yes" } else { "no" },
                    if u.has_token { "yes" } else { "no" },
                    u.addresses.join(",")
                ));
            }
            print_out(out.as_bytes())?;
        }
        UserCommand::Token { name, .. } => {
            let token = store.new_token(&name).map_err(fatal)?;
            print_out(format!("{token}\n").as_bytes())?;
            say("mugai: this token is shown only now; the previous one no longer works");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Loads a policy file for a command; problems are configuration errors (exit 2).
fn policy_for(path: Option<&Path>) -> Result<Policy, Fatal> {
    match path {
        Some(p) => load_policy(p).map_err(|e| Fatal::Config(format!("{e:#}"))),
        None => Ok(Policy::default()),
    }
}

/// `check-policy`: parse and validate, then look for what would fail at run time.
fn check_policy(file: &Path) -> Result<ExitCode, Fatal> {
    let policy = policy_for(Some(file))?;
    let config = Config {
        policy,
        ..Config::default()
    };
    report_problems(file, "policy", &config.runtime_problems())
}

/// `check-config`: parse and validate (its [policy] too), then look for what would fail.
fn check_config(file: &Path) -> Result<ExitCode, Fatal> {
    let config = Config::load(file).map_err(|e| Fatal::Config(format!("{e:#}")))?;
    let (mut problems, warnings) = crate::serve::check(&config);
    for w in &warnings {
        say(&format!(
            "mugai: configuration file {}: warning: {w}",
            file.display()
        ));
    }
    problems.extend(config.runtime_problems());
    report_problems(file, "configuration", &problems)
}

/// Prints `FILE: OK`, or each problem on stderr with exit 2.
fn report_problems(file: &Path, what: &str, problems: &[String]) -> Result<ExitCode, Fatal> {
    if problems.is_empty() {
        print_out(format!("{}: OK\n", file.display()).as_bytes())?;
        return Ok(ExitCode::SUCCESS);
    }
    for p in problems {
        say(&format!("mugai: {what} file {}: {p}", file.display()));
    }
    Ok(ExitCode::from(2))
}

/// A quarantine error for people: a missing or wrong key is the caller's configuration
/// (exit 2), anything else exit 1.
fn quarantine_fatal(e: QuarantineError) -> Fatal {
    match e {
        QuarantineError::Key(_) => Fatal::Config(e.to_string()),
        e => Fatal::Io(e.to_string()),
    }
}

/// `mugai quarantine request|release|refuse|purge|requests`: the release library
/// ([`crate::release`]) as the operator.
fn release_command(cmd: QuarantineCommand) -> Result<ExitCode, Fatal> {
    use crate::actor::Actor;
    use crate::release::{Release, ReleaseError, Target};
    use crate::sinks::index::{RequestFilter, RequestState};
    use std::sync::Arc;

    let config_path = match &cmd {
        QuarantineCommand::Request { config, .. }
        | QuarantineCommand::Release { config, .. }
        | QuarantineCommand::Refuse { config, .. }
        | QuarantineCommand::Purge { config, .. }
        | QuarantineCommand::Requests { config, .. }
        | QuarantineCommand::Unlock { config, .. } => config.clone(),
        _ => return Err(Fatal::Io("not a release command".into())),
    };
    let config = Config::load(&config_path).map_err(|e| Fatal::Config(format!("{e:#}")))?;
    let vault = crate::sinks::vault::Vault::open(&config.quarantine)
        .map_err(|e| Fatal::Config(format!("{e:#}")))?;
    let needs_audit = !matches!(cmd, QuarantineCommand::Requests { .. });
    let audit = if needs_audit {
        crate::sinks::audit::AuditLog::open(&config.audit)
            .map_err(|e| {
                Fatal::Io(format!(
                    "{e:#} (while mugai serve holds the audit log, release through its HTTP API)"
                ))
            })?
            .map(Arc::new)
    } else {
        None
    };
    let downstream = if matches!(
        cmd,
        QuarantineCommand::Release { .. } | QuarantineCommand::Unlock { .. }
    ) {
        Some(
            crate::sinks::downstream::Downstream::new(
                &config.downstream,
                &crate::serve::system_hostname(),
            )
            .map_err(|e| Fatal::Config(format!("downstream: {e:#}")))?,
        )
    } else {
        None
    };
    let release = Release::new(
        Arc::new(vault),
        audit,
        downstream,
        config.http.released_dir.clone(),
    );
    let actor = Actor::operator();
    let fail = |e: ReleaseError| match e {
        ReleaseError::Invalid(m) => Fatal::Usage("quarantine", m),
        e => Fatal::Io(e.to_string()),
    };
    let show = |r: &crate::sinks::index::ReleaseRequest| {
        format!(
            "request {}: {} {} requester={}{} reason={}{}{}\n",
            r.id,
            r.state.as_str(),
            r.report_id,
            escape_for_display(&r.requester),
            if r.entered_by == r.requester {
                String::new()
            } else {
                format!(" entered_by={}", escape_for_display(&r.entered_by))
            },
            escape_for_display(&r.reason),
            r.decided_by
                .as_deref()
                .map_or_else(String::new, |d| format!(
                    " decided_by={} ({})",
                    escape_for_display(d),
                    escape_for_display(r.decision_reason.as_deref().unwrap_or(""))
                )),
            match (&r.delivered_at, &r.delivery_reply) {
                (Some(at), _) => format!(" delivered_at={at}"),
                (None, Some(reply)) => format!(" undelivered: {}", escape_for_display(reply)),
                _ => String::new(),
            }
        )
    };
    match cmd {
        QuarantineCommand::Request {
            report_id,
            reason,
            on_behalf,
            ..
        } => {
            let req = match on_behalf {
                Some(user) => release.request_on_behalf(&actor, &user, &report_id, &reason),
                None => release.request(&actor, &report_id, &reason),
            }
            .map_err(fail)?;
            print_out(show(&req).as_bytes())?;
        }
        QuarantineCommand::Release { target, reason, .. } => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Fatal::Io(format!("runtime: {e}")))?;
            let done = rt
                .block_on(release.approve(&actor, &Target::parse(&target), &reason))
                .map_err(fail)?;
            print_out(show(&done.request).as_bytes())?;
            say(&format!(
                "mugai: released: {}",
                escape_for_display(&done.delivered_to)
            ));
        }
        QuarantineCommand::Refuse { target, reason, .. } => {
            let req = release
                .refuse(&actor, &Target::parse(&target), &reason)
                .map_err(fail)?;
            print_out(show(&req).as_bytes())?;
        }
        QuarantineCommand::Purge {
            report_id, reason, ..
        } => {
            let rows = release.purge(&actor, &report_id, &reason).map_err(fail)?;
            print_out(format!("purged {report_id}: {rows} row(s) marked purged\n").as_bytes())?;
        }
        QuarantineCommand::Unlock { report_id, .. } => {
            let mut line = String::new();
            io::stdin()
                .read_line(&mut line)
                .map_err(|e| Fatal::Io(format!("standard input: {e}")))?;
            let password =
                crate::sanitize::Password::new(line.trim_end_matches(['\r', '\n']).to_owned());
            zeroize::Zeroize::zeroize(&mut line);
            if password.as_bytes().is_empty() {
                return Err(Fatal::Usage(
                    "quarantine",
                    "give the password on standard input".into(),
                ));
            }
            let transform = crate::app::transform(config.policy.clone(), &config, false)
                .map_err(|e| Fatal::Io(format!("{e:#}")))?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Fatal::Io(format!("runtime: {e}")))?;
            let done = rt
                .block_on(release.unlock_with_password(&actor, &report_id, password, transform))
                .map_err(fail)?;
            print_out(
                format!(
                    "unlocked {report_id}: report {} {}; delivered: {}\n",
                    done.report.id,
                    done.report.verdict.as_str(),
                    escape_for_display(&done.written_to)
                )
                .as_bytes(),
            )?;
        }
        QuarantineCommand::Requests { state, report, .. } => {
            let state = match state.as_deref() {
                None => None,
                Some(s) => Some(RequestState::parse(s).ok_or_else(|| {
                    Fatal::Usage(
                        "quarantine",
                        format!("--state {s:?}: pending, approved or refused"),
                    )
                })?),
            };
            let list = release
                .list_requests(
                    &actor,
                    &RequestFilter {
                        state,
                        report_id: report,
                        limit: crate::sinks::index::Search::MAX_LIMIT,
                        ..RequestFilter::default()
                    },
                )
                .map_err(fail)?;
            let out: String = list.iter().map(show).collect();
            print_out(out.as_bytes())?;
        }
        _ => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// `mugai quarantine list|show|get` (and the release commands, in [`release_command`]).
fn quarantine(cmd: QuarantineCommand) -> Result<ExitCode, Fatal> {
    // The key comes from the configuration's [quarantine] key_file, if one is given; it is
    // only read here, never created.
    let open = |dir: &Path, config: Option<&Path>| {
        if !dir.is_dir() {
            return Err(Fatal::Config(format!(
                "{} is not a quarantine directory",
                dir.display()
            )));
        }
        let key_file = match config {
            Some(p) => {
                Config::load(p)
                    .map_err(|e| Fatal::Config(format!("{e:#}")))?
                    .quarantine
                    .key_file
            }
            None => std::path::PathBuf::new(),
        };
        let key = if key_file.as_os_str().is_empty() {
            None
        } else {
            Some(load_key(&key_file).map_err(|e| Fatal::Config(format!("{e:#}")))?)
        };
        DirStore::open_with_key(dir, key).map_err(quarantine_fatal)
    };
    let lookup = |store: &DirStore, key: &str| {
        let id = store.find(key).map_err(|e| Fatal::Io(e.to_string()))?;
        store.get(&id).map_err(quarantine_fatal)
    };
    match cmd {
        QuarantineCommand::List { dir, config } => {
            let store = open(&dir, config.as_deref())?;
            let ids = store.list().map_err(|e| Fatal::Io(e.to_string()))?;
            let mut out = String::new();
            for id in ids {
                // Reports only: listing needs no key and does not read the originals.
                let reports = store.reports(&id).map_err(quarantine_fatal)?;
                let when = store
                    .stored_at(&id)
                    .and_then(|t| jiff::Timestamp::try_from(t).ok())
                    .map_or_else(|| "-".to_owned(), |t| format!("{t:.0}"));
                let last = reports.last();
                let name = last
                    .and_then(|r| r.input.name.as_deref())
                    .map_or_else(|| "-".to_owned(), escape_for_display);
                let verdict = last.map_or("-", |r| r.verdict.as_str());
                let threats = last.map(|r| r.threats().join(",")).unwrap_or_default();
                out.push_str(&format!(
                    "{id}  {when}  {verdict:<9}  {name}  [{threats}]  reports: {}\n",
                    reports.len()
                ));
            }
            print_out(out.as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
        QuarantineCommand::Show {
            dir,
            id,
            json,
            config,
        } => {
            let store = open(&dir, config.as_deref())?;
            // Reports only: showing needs no key; the size is the one the reports recorded.
            let id = store.find(&id).map_err(|e| Fatal::Io(e.to_string()))?;
            let reports = store.reports(&id).map_err(quarantine_fatal)?;
            let mut out = String::new();
            if json {
                for r in &reports {
                    out.push_str(&r.to_json_line());
                    out.push('\n');
                }
            } else {
                out.push_str(&format!(
                    "sha256: {}\nsize: {} bytes\nstored: {}\n",
                    id,
                    reports.last().map_or(0, |r| r.input.size),
                    store
                        .stored_at(&id)
                        .and_then(|t| jiff::Timestamp::try_from(t).ok())
                        .map_or_else(|| "-".to_owned(), |t| format!("{t:.0}")),
                ));
                for r in &reports {
                    out.push_str(&format!(
                        "report {}: {} {:?} kind={} threats=[{}]\n",
                        r.id,
                        escape_for_display(r.input.name.as_deref().unwrap_or("-")),
                        r.verdict,
                        r.input.kind,
                        r.threats().join(", ")
                    ));
                    for item in &r.items {
                        out.push_str(&format!(
                            "  {} {:?}: {}\n",
                            escape_for_display(&item.path),
                            item.action,
                            escape_for_display(&item.reason)
                        ));
                    }
                }
            }
            print_out(out.as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
        QuarantineCommand::Get {
            dir,
            id,
            output,
            config,
        } => {
            let store = open(&dir, config.as_deref())?;
            let entry = lookup(&store, &id)?;
            let parent = match output.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
                _ => std::path::PathBuf::from("."),
            };
            let Some(name) = output.file_name().map(|n| n.to_string_lossy().into_owned()) else {
                return Err(Fatal::Usage("quarantine", "-o needs a file name".into()));
            };
            write_atomic(
                &parent,
                &name,
                &entry.original,
                Existing::Keep,
                Access::Private,
            )
            .map_err(|e| Fatal::Io(format!("{}: {e}", output.display())))?;
            let lang = Lang::detect(None);
            say(&format!(
                "{}{}{} ({} bytes, sha256 {})",
                lang.pick(
                    "mugai: 原本（未検査・危険な可能性あり）を書き出しました",
                    "mugai: wrote the original (untrusted, possibly dangerous) to "
                ),
                lang.pick("：", ""),
                output.display(),
                entry.original.len(),
                entry.id
            ));
            Ok(ExitCode::SUCCESS)
        }
        cmd @ (QuarantineCommand::Request { .. }
        | QuarantineCommand::Release { .. }
        | QuarantineCommand::Refuse { .. }
        | QuarantineCommand::Purge { .. }
        | QuarantineCommand::Requests { .. }
        | QuarantineCommand::Unlock { .. }) => release_command(cmd),
    }
}

/// `mugai audit verify FILE`: exit 0 with "chain intact: N lines", or 1 with the first bad
/// line and why.
fn audit_verify(file: &Path) -> Result<ExitCode, Fatal> {
    use crate::sinks::audit::{VerifyError, verify};
    match verify(file) {
        Ok(s) => {
            let recovered = if s.recovered_lines > 0 {
                format!(
                    "; {} damaged line(s) after crashes, each recorded by a recovery line",
                    s.recovered_lines
                )
            } else {
                String::new()
            };
            print_out(
                format!(
                    "{}: chain intact: {} lines; last seq {}; head sha256 {}{recovered}\n",
                    file.display(),
                    s.lines,
                    s.last_seq,
                    s.head
                )
                .as_bytes(),
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ VerifyError::Io { .. }) => Err(Fatal::Io(e.to_string())),
        Err(e) => {
            say(&format!(
                "mugai: {}: chain broken: {}",
                file.display(),
                escape_for_display(&e.to_string())
            ));
            Ok(ExitCode::from(1))
        }
    }
}
