//! Mail: an untrusted RFC 5322 message in, a newly built safe message out.

use crate::error::SanitizeError;
use crate::pipeline::{Context, FormatSanitizer, Rebuilt};
use crate::report::{Action, Kind};

/// Sanitizes nested messages (message/rfc822 parts) through the pipeline.
#[derive(Debug, Clone, Copy)]
pub struct MailSanitizer;

impl FormatSanitizer for MailSanitizer {
    fn name(&self) -> &'static str {
        "mail"
    }

    fn sanitize(&self, input: &[u8], cx: &mut Context<'_>) -> Result<Rebuilt, SanitizeError> {
        let bytes = sanitize_message(input, cx)?;
        Ok(Rebuilt::new(
            bytes,
            Action::Rebuilt,
            Kind::Mail,
            "message/rfc822",
        ))
    }
}

/// Builds the safe message for `input` (placeholder until the mail module lands).
pub(crate) fn sanitize_message(
    input: &[u8],
    cx: &mut Context<'_>,
) -> Result<Vec<u8>, SanitizeError> {
    let _ = (input, cx);
    Err(SanitizeError::Unsupported(
        "mail sanitizer not built yet".into(),
    ))
}

/// A safe message that carries only the notice, for mail that could not be sanitized.
pub(crate) fn notice_only(input: &[u8], err: &SanitizeError, cx: &Context<'_>) -> Vec<u8> {
    let _ = input;
    format!(
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nX-Mugai-Report-Id: {}\r\n\r\n{}\r\n",
        cx.report_id(),
        err
    )
    .into_bytes()
}
