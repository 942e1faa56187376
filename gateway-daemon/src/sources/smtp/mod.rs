//! The SMTP source: the inline relay between the internet-side and the LGWAN-side MTA.
//!
//! - [`session`]: the protocol, sans I/O (bytes in, replies and steps out), tested by feeding
//!   bytes.
//!
//! The I/O loop (tokio listener, STARTTLS, timeouts, the downstream client in lockstep, the
//! quarantine before 250) is built on this session; see the README's status section for what
//! exists today.

pub mod server;
pub mod session;
