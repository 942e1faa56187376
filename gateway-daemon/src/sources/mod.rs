//! Sources: where items come from. Each source reads items, hands them to the one transform
//! ([`crate::sanitize::Transform`]) and the finished items to the sinks ([`crate::sinks`]),
//! and stops when the [`crate::shutdown::Shutdown`] signal says so.
//!
//! - [`files`]: files and directories named on the command line, and standard input.
//! - [`smtp`]: the SMTP relay (today its protocol session; the I/O loop comes next).
//! - [`dropdir`]: the drop directory (inbox → outbox, claimed by rename, crash-safe).
//!
//! The HTTP API (`http.rs`) will be a further source beside them.

pub mod dropdir;
pub mod files;
pub mod http;
pub mod smtp;
