//! Sinks: where a sanitized item goes after the transform.
//!
//! Every source hands each finished item to the same sinks, in this order: the
//! [`quarantine`] keeps the original when the verdict is not `clean` (durable before anything
//! is delivered), a [`Delivery`] puts the safe output (or the blocked note) where it belongs,
//! and the [`report`] log records what happened. A sink answers with a result, never by
//! setting flags: [`Delivered`] on success, [`DeliverError`] (transient or not) otherwise, and
//! the source decides what that means for it (an exit code, an SMTP reply, a retry).

pub mod atomic;
pub mod audit;
pub mod downstream;
pub mod index;
pub mod outbox;
pub mod quarantine;
pub mod report;
#[cfg(test)]
mod testfs;
pub mod vault;

use std::path::PathBuf;

use crate::sanitize::{Job, JobOutcome};

/// Where a delivered item went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    /// The safe output was written to this file.
    File(PathBuf),
    /// The safe output was written to standard output.
    Stdout,
    /// The item was blocked; this note says why.
    BlockedNote(PathBuf),
    /// The item was blocked and this sink leaves no trace of it (a single blocked file).
    Nothing,
}

impl Delivered {
    /// A path or `<stdout>` for people, if something was written.
    pub fn display(&self) -> Option<String> {
        match self {
            Delivered::File(p) | Delivered::BlockedNote(p) => Some(p.display().to_string()),
            Delivered::Stdout => Some("<stdout>".to_owned()),
            Delivered::Nothing => None,
        }
    }
}

/// A sink could not do its part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DeliverError {
    /// Worth retrying later (disk full, downstream down); otherwise permanent.
    pub transient: bool,
    /// What went wrong, naming the destination.
    pub message: String,
    /// The I/O error kind, when an I/O error caused it (a closed pipe ends a run quietly).
    pub io: Option<std::io::ErrorKind>,
}

impl DeliverError {
    /// From an I/O error on `what`; transient when the error is (disk full, quota, ...).
    pub fn io(what: impl std::fmt::Display, e: &std::io::Error) -> DeliverError {
        DeliverError {
            transient: atomic::is_transient(e),
            message: format!("{what}: {e}"),
            io: Some(e.kind()),
        }
    }

    /// `transient` or `permanent`, for messages.
    pub fn kind(&self) -> &'static str {
        if self.transient {
            "transient"
        } else {
            "permanent"
        }
    }
}

/// Puts one finished item where it belongs.
pub trait Delivery {
    /// Delivers `outcome` (the output, or a note when blocked) for `job`. It may update the
    /// report (for example the output name actually written).
    fn deliver(&mut self, job: &Job, outcome: &mut JobOutcome) -> Result<Delivered, DeliverError>;
}
