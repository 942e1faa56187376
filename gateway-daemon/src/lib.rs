//! # gateway-daemon: the edges of Mugai
//!
//! The `mugai` binary: the command line (`mugai sanitize`, `mugai mail`, `mugai policy`), and
//! later the SMTP relay, the drop directory and the HTTP admin. Sources are nouns (`smtp`,
//! `dropdir`, `http`), the transform is the verb (`sanitize`), sinks are nouns (`downstream`,
//! `outbox`, `quarantine`). All content work is done by `sanitizer-core`.
//!
//! ```
//! // The library side of the binary is used by its integration tests.
//! let _ = gateway_daemon::VERSION;
//! ```

pub mod convert;

/// The version of this build.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
