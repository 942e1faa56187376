//! # gateway-daemon: the edges of Mugai
//!
//! The `mugai` binary: the command line (`mugai sanitize`, `mugai mail`, `mugai policy`), and
//! later the SMTP relay, the drop directory and the HTTP admin. Sources are nouns (`smtp`,
//! `dropdir`, `http`), the transform is the verb (`sanitize`), sinks are nouns (`downstream`,
//! `outbox`, `quarantine`). All content work is done by `sanitizer-core`.
//!
//! Main types:
//! - [`sanitize::Transform`] runs a [`sanitize::Job`] into a [`sanitize::JobOutcome`]; the
//!   in-process [`sanitize::InProcess`] can be replaced by a pool of isolated workers.
//! - [`quarantine::QuarantineStore`] keeps originals that were not clean;
//!   [`quarantine::DirStore`] is its directory backend.
//! - [`outbox`] names and writes outputs without ever overwriting.
//!
//! ```
//! use gateway_daemon::sanitize::{InProcess, Job, Mode, Transform};
//! use sanitizer_core::Policy;
//!
//! let t = InProcess::new(Policy::default());
//! let job = Job { input: b"<p>Hello</p>".to_vec(), name: Some("a.html".into()), mode: Mode::File };
//! let out = t.run(&job).unwrap();
//! assert_eq!(out.output.unwrap().name, "a.txt");
//! ```

pub mod atomic;
pub mod cli;
pub mod convert;
pub mod outbox;
pub mod quarantine;
pub mod sanitize;

/// The version of this build.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub mod confine;
pub mod pool;
pub mod sandbox;
pub mod wire;
pub mod worker;
