//! The error a format sanitizer returns when it cannot produce a safe output.
//!
//! Every variant is a *verdict*, not a crash: the pipeline turns it into "part removed" (inside a
//! mail or archive) or "file blocked" (at the top level), with the threat id and reason in the
//! report. The categories are what a caller can act on.

use crate::limits::LimitKind;
use crate::threats;

/// Why a sanitizer gave up on its input.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SanitizeError {
    /// The input could not be parsed or rebuilt.
    #[error("malformed: {0}")]
    Malformed(String),
    /// A resource limit tripped.
    #[error("limit exceeded ({}): {detail}", kind.threat_id())]
    Limit {
        /// Which limit.
        kind: LimitKind,
        /// Human-readable detail.
        detail: String,
    },
    /// The format is recognised but not supported (一太郎, HEIC, 7z, ...).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The content is encrypted and cannot be inspected; `threat` is the format's id
    /// (`pdf.encrypted`, `office.encrypted`, `archive.encrypted`).
    #[error("encrypted: {reason}")]
    Encrypted {
        /// Threat id, from [`crate::threats`].
        threat: &'static str,
        /// Human-readable reason.
        reason: String,
    },
    /// The content is of a forbidden kind (executable, script); `threat` names it.
    #[error("forbidden: {reason}")]
    Forbidden {
        /// Threat id, from [`crate::threats`].
        threat: &'static str,
        /// Human-readable reason.
        reason: String,
    },
    /// Our own output failed the residual re-check: fail closed.
    #[error("residual re-check failed: {0}")]
    Recheck(String),
    /// The isolated worker that sanitized the item failed (killed, crashed, sandbox violation);
    /// `threat` names the cause (`worker.killed`, `limit.memory`, `sandbox.violation`, ...).
    #[error("worker failed ({threat}): {detail}")]
    Worker {
        /// Threat id of the cause.
        threat: &'static str,
        /// Human-readable detail.
        detail: String,
    },
    /// Something that should not happen (a caught panic, an internal invariant).
    #[error("internal error: {0}")]
    Internal(String),
}

impl SanitizeError {
    /// Shorthand for a limit error.
    pub fn limit(kind: LimitKind, detail: impl Into<String>) -> SanitizeError {
        SanitizeError::Limit {
            kind,
            detail: detail.into(),
        }
    }

    /// Shorthand for an encrypted input of the format whose threat id is `threat`.
    pub fn encrypted(threat: &'static str, reason: impl Into<String>) -> SanitizeError {
        SanitizeError::Encrypted {
            threat,
            reason: reason.into(),
        }
    }

    /// The threat id this error is reported under.
    pub fn threat_id(&self) -> &'static str {
        match self {
            SanitizeError::Malformed(_) => threats::PARSE_FAILED,
            SanitizeError::Limit { kind, .. } => kind.threat_id(),
            SanitizeError::Unsupported(_) => threats::UNSUPPORTED_FORMAT,
            SanitizeError::Encrypted { threat, .. }
            | SanitizeError::Forbidden { threat, .. }
            | SanitizeError::Worker { threat, .. } => threat,
            SanitizeError::Recheck(_) => threats::RESIDUAL_RECHECK,
            SanitizeError::Internal(_) => threats::INTERNAL_ERROR,
        }
    }

    /// Whether this outcome says the content itself is hostile-looking (as opposed to merely
    /// unsupported). Unsupported formats are named as such, not as malicious.
    pub fn is_threat(&self) -> bool {
        !matches!(self, SanitizeError::Unsupported(_))
    }
}
