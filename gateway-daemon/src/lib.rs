//! # gateway-daemon: the edges of Mugai
//!
//! The `mugai` binary: the command line (`mugai sanitize`, `mugai mail`, `mugai policy`,
//! `mugai quarantine`), and later the SMTP relay, the drop directory and the HTTP admin. All
//! content work is done by `sanitizer-core`; this crate moves items in and out.
//!
//! The shape: **sources → one transform → sinks**.
//! - [`sources`]: where items come from ([`sources::files`] today; the relay, the drop
//!   directory and HTTP are further sources beside it).
//! - [`sanitize`]: the one transform. [`sanitize::Transform`] runs a [`sanitize::Job`] into a
//!   [`sanitize::JobOutcome`]; [`sanitize::InProcess`] runs it in this process,
//!   [`isolate::pool::Isolated`] in sandboxed one-job worker processes ([`isolate`]).
//! - [`sinks`]: where finished items go — the [`sinks::quarantine`] store, the
//!   [`sinks::outbox`] and the [`sinks::report`] log — each answering with a result
//!   ([`sinks::Delivered`] or [`sinks::DeliverError`], transient or not).
//! - [`app`]: the composition root (policy → converter → transform → sinks); [`batch`]: the
//!   ordered bounded executor; [`shutdown`]: the one stop signal every source watches;
//!   [`config`]: the daemon's own TOML (host paths, pool, quarantine, `[policy]`);
//!   [`fonts`]: the configured fonts, lent to the core (which reads no files);
//!   [`cli`]: arguments and the commands that run them; [`i18n`]: words for people.
//!
//! ```
//! use gateway_daemon::sanitize::{InProcess, Job, Mode, Transform};
//! use sanitizer_core::Policy;
//!
//! let t = InProcess::new(Policy::default());
//! let job = Job { input: b"<p>Hello</p>".to_vec(), name: Some("a.html".into()), mode: Mode::File, password: None };
//! let out = t.run(&job).unwrap();
//! assert_eq!(out.output.unwrap().name, "a.txt");
//! ```

pub mod actor;
pub mod app;
pub mod batch;
pub mod cli;
pub mod config;
pub mod convert;
pub mod fonts;
pub mod i18n;
pub mod isolate;
pub mod logging;
pub mod ocr;
pub mod release;
pub mod sanitize;
pub mod serve;
pub mod shutdown;
pub mod sinks;
pub mod sources;
pub mod users;

/// The version of this build.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
