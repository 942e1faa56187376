//! The command line's arguments and help (clap derive), apart from running them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::i18n::Lang;

/// The exit codes, for help texts.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  every input produced a safe output
  3  at least one input was blocked (no output; the report says why)
  2  usage or configuration error (bad option, invalid policy file)
  1  anything else (an input could not be read, an output could not be written)
  When several apply: 1 wins over 3, 3 over 0.";

const TOP_EXAMPLES: &str = "\
Examples:
  mugai sanitize invoice.html -o invoice.txt
  mugai sanitize --report report.jsonl inbox/ -o safe/
  mugai mail < in.eml > safe.eml
  mugai policy > policy.toml
  mugai quarantine list /var/lib/mugai/quarantine
  mugai completions bash > /etc/bash_completion.d/mugai
  RUST_LOG=info mugai sanitize ...   # logs on standard error (default: warnings only)
  LANG=ja_JP.UTF-8 mugai ...          # messages in Japanese (or --lang ja)

";

const SANITIZE_HELP: &str = "\
Output naming:
  One input file ('-' = standard input): OUTPUT is that file ('-' = standard output); if
  OUTPUT is an existing directory or ends in '/', the output is written into it.
  Several inputs or a directory: OUTPUT is a directory (created if missing). Each output keeps
  its path relative to the input directory it came from (for file arguments, just the file
  name). The extension changes when the type changed (page.html -> page.txt,
  a.docm -> a.docx, mail -> .eml). An existing file is never overwritten: a numeric suffix is
  added instead (a.txt, a (2).txt, ...). A blocked input gets no output, but a note
  NAME.blocked.txt with the reason is written where its output would have gone.
  Mail files (.eml, or content that is an RFC 5322 message) are sanitized as mail.

  The output directory may not be, or lie inside, an input directory (untrusted originals
  and safe copies never share a folder). Symlinks inside input directories are skipped with
  a message, never followed.

Reports:
  --report FILE appends one JSON object per input (JSON Lines), flushed after each input, with
  the time and the input and output paths; '-' writes them to standard output. Without
  --report, a one-line result per input goes to standard error. A summary block (counts, time,
  blocked inputs by name) ends every run on standard error; --quiet silences both.

Examples:
  mugai sanitize invoice.html -o invoice.txt
  mugai sanitize --report report.jsonl inbox/ -o safe/
  mugai sanitize --quarantine /var/lib/mugai/quarantine a.pdf b.docx c.eml -o out/
  mugai sanitize page.html -o - | less
  curl -s https://example.jp/form.html | mugai sanitize - -o form.txt

";

const MAIL_HELP: &str = "\
Examples:
  mugai mail < in.eml > safe.eml
  mugai mail --report report.json in.eml -o safe.eml
  mugai mail --policy strict.toml --quarantine /var/lib/mugai/quarantine in.eml -o -

";

const QUARANTINE_HELP: &str = "\
Encrypted quarantines:
  When the configuration sets [quarantine] key_file, originals are encrypted at rest. list and
  show work without the key (reports are not encrypted); get needs it: pass the configuration
  with --config. Without it, get of an encrypted original fails (exit 2).

Releasing originals (request, release, refuse, purge, requests):
  These read [quarantine], [downstream], [audit] and [http] released_dir from --config FILE
  and act as the operator (an admin named cli:<unix user>). A release needs a pending request
  made or entered by someone else: nobody, admins included, approves their own (two-person
  rule). For a staff member who phoned in, enter the request with --as USER; a second operator
  (another Unix account) then releases it. Mail goes, as the original with an
  X-Mugai-Released header, through the downstream to its original recipients; a file is
  written to [http] released_dir. If delivery fails the request stays approved: run release
  again to retry. Every step is written to the audit log, which only one process may hold:
  while mugai serve runs, use its HTTP API instead.
  Exit codes: 0 done; 2 usage or configuration error (missing --reason); 1 refused (not
  allowed, no such item or request, already decided) or delivery failed.

Examples:
  mugai quarantine request --config /etc/mugai/mugai.toml 0193a6c2-... --as suzuki \
      --reason \"取引先に確認済み (phoned 10:15)\"
  sudo -u admin2 mugai quarantine release --config /etc/mugai/mugai.toml 0193a6c2-... \
      --reason \"内容確認済み\"
  mugai quarantine requests --config /etc/mugai/mugai.toml --state pending
  mugai quarantine unlock --config /etc/mugai/mugai.toml 0193a6c2-... < password.txt
  mugai quarantine purge --config /etc/mugai/mugai.toml 0193a6c2-... --reason \"誤送信\"
  mugai quarantine list /var/lib/mugai/quarantine
  mugai quarantine show /var/lib/mugai/quarantine 0193a6c2-...   # a report id
  mugai quarantine get /var/lib/mugai/quarantine 3f2a... -o /root/review/original.bin
  mugai quarantine get --config /etc/mugai/mugai.toml /var/lib/mugai/quarantine 0193a6c2-... \\
      -o /root/review/original.eml

";

const AUDIT_HELP: &str = "\
Exit codes:
  0  the chain is intact (prints the number of lines and the head: keep a copy of it elsewhere;
     lines removed from the very end can only be noticed against such a copy)
  1  the chain is broken (the first bad line and why), or the file cannot be read

Example:
  mugai audit verify /var/lib/mugai/audit.jsonl

";

const POLICY_HELP: &str = "\
Examples:
  mugai policy > policy.toml         # start from the defaults, then edit
  mugai policy --check policy.toml   # same as: mugai check-policy policy.toml

";

/// Content Disarm and Reconstruction for mail and files.
///
/// Mugai turns untrusted mail and files into safe ones: mail bodies become plain text,
/// documents are rebuilt from an allow-list or rendered to images, and everything active
/// (scripts, macros, executables, external links) is removed. Each input gets a JSON report
/// saying what was found and done.
#[derive(Debug, Parser)]
#[command(name = "mugai", version, after_help = format!("{TOP_EXAMPLES}{EXIT_CODES}"))]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Sanitize files (and mail files) into an output file or directory.
    ///
    /// Each INPUT (a file or a directory, walked recursively) is sanitized under the policy:
    /// rebuilt, converted or re-encoded into a safe form, or blocked when that is impossible
    /// (executables, encrypted or malformed files, bombs). Nothing is ever written in place;
    /// outputs go to OUTPUT following the naming rules below.
    #[command(after_help = format!("{SANITIZE_HELP}{EXIT_CODES}"))]
    Sanitize(SanitizeArgs),
    /// Sanitize one RFC 5322 message (standard input to standard output by default).
    ///
    /// The message is rebuilt: the body becomes plain text with a notice of what was done at
    /// the top, attachments are sanitized or removed, and the verdict is recorded in the
    /// X-Mugai-Sanitized and X-Mugai-Report-Id headers. A mail is never blocked: at worst the
    /// recipient gets a notice-only message, and the exit code is 0.
    #[command(after_help = format!("{MAIL_HELP}{EXIT_CODES}"))]
    Mail(MailArgs),
    /// Print the default policy (commented TOML), or check a policy file.
    ///
    /// The printed policy is the built-in default; save it, edit it and pass it with --policy.
    /// Unknown keys are errors, so a typo cannot silently weaken the policy.
    #[command(after_help = POLICY_HELP)]
    Policy(PolicyArgs),
    /// Check a policy file: syntax, values, and what would fail at run time on this machine
    /// with the default configuration (missing fonts, LibreOffice, unimplemented options).
    /// Prints OK, or each problem (exit 2).
    CheckPolicy {
        /// The policy file (TOML).
        file: PathBuf,
    },
    /// Run the daemon: the inline SMTP relay (internet-side MTA -> Mugai -> LGWAN-side MTA).
    ///
    /// Every message is sanitized in the sandboxed worker pool and handed downstream (an SMTP
    /// server, or a directory for first runs); the sender hears 250 only after the downstream
    /// accepted the sanitized message, so nothing is lost: on any transient failure it hears
    /// 451 and retries. Originals that were not clean are kept in the quarantine (encrypted
    /// when a key is configured) and each message is recorded in the hash-chained audit log.
    /// Runs in the foreground; SIGTERM stops it gracefully, SIGHUP reloads the policy and
    /// reopens the log file.
    #[command(after_help = SERVE_HELP)]
    Serve {
        /// The configuration (TOML; see `mugai config`). Default: the built-in configuration,
        /// which has no quarantine, so one is needed in practice (deploy/mugai.toml has one).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Print the default configuration (commented TOML): host paths, worker pool, quarantine.
    ///
    /// Paths on this machine live here, not in the policy, so one policy can serve several
    /// machines. Save it, edit it and pass it with --config.
    Config,
    /// Check a configuration file: syntax, values, its `[policy]`, and what would fail at run
    /// time on this machine (fonts, LibreOffice). Prints OK, or each problem (exit 2).
    CheckConfig {
        /// The configuration file (TOML).
        file: PathBuf,
    },
    /// Look up quarantined originals (kept with --quarantine DIR) by report id or SHA-256.
    ///
    /// The notice and NAME.blocked.txt quote a report id; `show` finds the entry from it, and
    /// `get` writes the original (untrusted!) to a path you name, never beside safe outputs.
    #[command(subcommand, after_help = QUARANTINE_HELP)]
    Quarantine(QuarantineCommand),
    /// Check the hash-chained audit log (the configuration's audit.file).
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) on standard output.
    #[command(after_help = "Example:\n  mugai man > /usr/local/share/man/man1/mugai.1\n")]
    Man,
    /// Manage the HTTP API's users: roles, passwords, API tokens, mail addresses.
    ///
    /// The store is the configuration's `http.users_file` (SQLite, owner-only). Passwords are
    /// kept as argon2id hashes and tokens as SHA-256: neither can be shown again.
    #[command(subcommand, after_help = USER_HELP)]
    User(UserCommand),
}

const USER_HELP: &str = "\
Examples:
  mugai user add tanaka --role requester --address tanaka@city.example.lg.jp --config mugai.toml
  printf '%s\\n' \"$PASSWORD\" | mugai user add kacho --role approver --password-stdin
  mugai user token scanner-01        # prints a new API token once (replaces the old one)
  mugai user list
  curl -H \"Authorization: Bearer $TOKEN\" --data-binary @a.docx \\
       'http://127.0.0.1:8025/v1/sanitize?filename=a.docx' -o safe.docx
";

/// `mugai user ...`.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user.
    Add {
        /// The user name (letters, digits, '.', '_', '@', '-').
        name: String,
        /// requester (sees their own items), approver (decides releases), admin.
        #[arg(long, value_name = "ROLE")]
        role: String,
        /// A mail address of theirs (repeatable): a requester sees items addressed to these.
        #[arg(long = "address", value_name = "ADDR")]
        addresses: Vec<String>,
        /// Read a password from the first line of standard input (without it the user can
        /// sign in only with a token: `mugai user token NAME`).
        #[arg(long)]
        password_stdin: bool,
        /// The configuration (for `http.users_file`).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Set a user's password from the first line of standard input.
    Passwd {
        /// The user name.
        name: String,
        /// The configuration (for `http.users_file`).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Remove a user (with their token).
    Remove {
        /// The user name.
        name: String,
        /// The configuration (for `http.users_file`).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// List the users: name, role, password and token set or not, addresses.
    List {
        /// The configuration (for `http.users_file`).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Make a new API token for a user and print it (once; the previous one stops working).
    Token {
        /// The user name.
        name: String,
        /// The configuration (for `http.users_file`).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

const SERVE_HELP: &str = "\
Examples:
  mugai serve --config deploy/mugai.toml
      Relay on 127.0.0.1:2525 into ./mugai-data/delivered (one file per message), quarantine
      and audit log under ./mugai-data. Try it:
        swaks --server 127.0.0.1:2525 --to staff@example.lg.jp --attach @invoice.docm
  mugai check-config /etc/mugai/mugai.toml
      Check a configuration before (re)starting the service.

Replies the sender may see: 250 only after the downstream said 250; 451 when the downstream
is down or says 4xx, the quarantine disk is full, or the relay is overloaded (the sender's
queue retries); 5xx when the downstream refuses; 550 5.7.1 for a recipient domain not in
smtp.accepted_domains; 554 for a client outside smtp.client_networks or a mail loop.
";

/// `mugai quarantine ...`.
#[derive(Debug, Subcommand)]
pub enum QuarantineCommand {
    /// List the entries: SHA-256, when stored, input name, verdict, threats.
    List {
        /// The quarantine directory.
        dir: PathBuf,
        /// Configuration whose quarantine.key_file holds the key (see below).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Show one entry and its reports (JSON with --json).
    Show {
        /// The quarantine directory.
        dir: PathBuf,
        /// A report id (from the notice or NAME.blocked.txt) or the original's SHA-256.
        id: String,
        /// Print the stored reports as JSON Lines instead of a summary.
        #[arg(long)]
        json: bool,
        /// Configuration whose quarantine.key_file holds the key (see below).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Write the original of an entry to FILE (never overwritten; mode 0600).
    Get {
        /// The quarantine directory.
        dir: PathBuf,
        /// A report id or the original's SHA-256.
        id: String,
        /// Where to write the original. It is the untrusted file itself: keep it away from
        /// safe outputs.
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
        /// Configuration whose quarantine.key_file holds the key: needed for originals
        /// encrypted at rest.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Ask for the release of a held original (see "Releasing originals" below).
    Request {
        /// The daemon's configuration.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// The held item's report id.
        report_id: String,
        /// Why it is needed (recorded in the audit log).
        #[arg(long, value_name = "TEXT")]
        reason: String,
        /// Enter the request for this user (a staff member who phoned in).
        #[arg(long = "as", value_name = "USER")]
        on_behalf: Option<String>,
    },
    /// Approve a pending request made by someone else and deliver the original (again, to
    /// retry a delivery that failed).
    Release {
        /// The daemon's configuration.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// A request number, or a report id (its newest request).
        target: String,
        /// Why it is approved (recorded in the audit log).
        #[arg(long, value_name = "TEXT")]
        reason: String,
    },
    /// Refuse a pending request made by someone else.
    Refuse {
        /// The daemon's configuration.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// A request number, or a report id (its newest request).
        target: String,
        /// Why it is refused (recorded in the audit log).
        #[arg(long, value_name = "TEXT")]
        reason: String,
    },
    /// Delete a held original now; its rows stay, marked purged.
    Purge {
        /// The daemon's configuration.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// The held item's report id (every item sharing the same original is purged).
        report_id: String,
        /// Why (recorded in the audit log).
        #[arg(long, value_name = "TEXT")]
        reason: String,
    },
    /// Open a held password-protected ZIP (PPAP) with its password, read from standard input
    /// (never from the command line, where other users could see it): it is sanitized again
    /// in a worker and delivered like any sanitized item (mail to its recipients, a file into
    /// http.released_dir). No approval needed: nothing unsanitized crosses.
    Unlock {
        /// The daemon's configuration.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// The held item's report id.
        report_id: String,
    },
    /// List release requests, newest first.
    Requests {
        /// The daemon's configuration.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Only requests in this state (pending, approved, refused).
        #[arg(long)]
        state: Option<String>,
        /// Only requests for this report id.
        #[arg(long, value_name = "REPORT-ID")]
        report: Option<String>,
    },
}

/// `mugai audit ...`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain: every line's seq follows the one before and its prev is the
    /// SHA-256 of the line before. Prints "chain intact: N lines" or the first bad line and why
    /// (changed, deleted, reordered, not a record).
    #[command(after_help = AUDIT_HELP)]
    Verify {
        /// The audit log (JSON Lines).
        file: PathBuf,
    },
}

/// Options shared by `sanitize` and `mail`.
#[derive(Debug, Args)]
pub struct Common {
    /// Sanitizing policy (TOML; see `mugai policy`). Default: the `[policy]` of --config, else
    /// the built-in policy.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Mugai configuration (TOML; see `mugai config`): host paths (LibreOffice, fonts), worker
    /// pool, quarantine directory, and a `[policy]` table. Default: the built-in configuration.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Write the JSON report(s) here, one object per line; `-` for standard output.
    #[arg(long, value_name = "FILE|-")]
    pub report: Option<PathBuf>,
    /// Keep each original whose verdict is not `clean`, with its report, in this directory
    /// (content-addressed; look entries up with `mugai quarantine`).
    #[arg(long, value_name = "DIR")]
    pub quarantine: Option<PathBuf>,
    /// No per-input lines and no summary on standard error.
    #[arg(short, long)]
    pub quiet: bool,
    /// Language of messages: ja or en. Default: Japanese when the locale is (LANG=ja_JP...).
    #[arg(long, value_name = "LANG")]
    pub lang: Option<Lang>,
    /// Sanitize inside this process instead of sandboxed, one-job worker processes. For
    /// debugging only: a hostile input could then hang or crash the command itself.
    #[arg(long)]
    pub no_isolation: bool,
}

/// `mugai sanitize`.
#[derive(Debug, Args)]
pub struct SanitizeArgs {
    /// Shared options.
    #[command(flatten)]
    pub common: Common,
    /// Input files or directories; `-` (alone) for standard input.
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,
    /// Output file (one input file; `-` for standard output) or directory.
    #[arg(short, long, value_name = "OUTPUT", required = true)]
    pub output: PathBuf,
    /// Inputs sanitized in parallel in a batch. Default: the number of CPUs.
    #[arg(short, long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub jobs: Option<u16>,
}

/// `mugai mail`.
#[derive(Debug, Args)]
pub struct MailArgs {
    /// Shared options.
    #[command(flatten)]
    pub common: Common,
    /// The message; `-` (default) for standard input.
    #[arg(value_name = "INPUT|-", default_value = "-")]
    pub input: PathBuf,
    /// Where the safe message goes; `-` (default) for standard output.
    #[arg(short, long, value_name = "OUTPUT|-", default_value = "-")]
    pub output: PathBuf,
}

/// `mugai policy`.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// Check this policy file instead of printing the defaults.
    #[arg(long, value_name = "FILE")]
    pub check: Option<PathBuf>,
}
