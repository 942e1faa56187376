#![warn(missing_docs)]

//! # sanitizer-core: Content Disarm and Reconstruction for mail and files
//!
//! Untrusted bytes in; a newly built safe form and a [`Report`] out. Mail bodies become plain
//! text, attachments are rebuilt by their own format sanitizers or removed, and every decision is
//! recorded with a stable threat id ([`threats`]). This crate is pure and synchronous: no
//! sockets, no files, no async runtime; the only clock it reads is the deadline in its
//! [`Budget`].
//!
//! Main types:
//! - [`Policy`]: what to do per content kind, links, notices and [`Limits`]; loaded from TOML.
//! - [`sanitize_mail`] → [`MailOutcome`]: a mail is never blocked; at worst it becomes a
//!   notice-only message.
//! - [`sanitize_file`] → [`FileOutcome`]: a file is sanitized or blocked.
//! - [`FormatSanitizer`]: the one trait every format implements; [`Context::sanitize_child`] is
//!   the one place recursion happens.
//! - [`SafeBytes`]: output bytes, constructible only inside this crate.
//!
//! ## Example
//! ```
//! use sanitizer_core::{Policy, Verdict, sanitize_file};
//!
//! let policy = Policy::default();
//! // An executable is blocked whatever its name says.
//! let outcome = sanitize_file(b"MZ\x90\x00\x03", Some("invoice.pdf"), &policy);
//! assert!(outcome.output.is_none());
//! assert_eq!(outcome.report.verdict, Verdict::Blocked);
//! assert!(outcome.report.threats().contains(&"executable.binary"));
//! ```
//!
//! ## Invariants
//! - Fail closed: a part that cannot be parsed, rebuilt or finished within its limits is removed;
//!   a file that cannot be made safe is blocked. Input bytes are never passed through on error.
//! - Bounded: every input is charged to a [`Budget`] (bytes, decoded bytes, depth, parts, pages,
//!   pixels, deadline); a tripped limit is a verdict, not a panic.
//! - The content decides which sanitizer runs; a dangerous name or declared type removes the part
//!   whatever its bytes.

pub(crate) mod codepage;
pub mod error;
pub mod formats;
pub mod limits;
pub mod links;
pub mod mail;
pub mod naming;
pub mod pipeline;
pub mod policy;
pub mod preview;
pub mod recheck;
pub mod report;
pub mod sniff;
pub mod threats;
pub mod unicode;

pub use error::SanitizeError;
pub use limits::{Budget, LimitKind, Limits};
pub use pipeline::{
    Context, Converter, FileOutcome, FontSource, Fonts, FormatSanitizer, MailOutcome, PartInput,
    PartOutcome, Rebuilt, Removal, SafeBytes, SafeFile, SafePart, Services, failed_file,
    failed_mail, sanitize_file, sanitize_file_with, sanitize_mail, sanitize_mail_with,
};
pub use policy::{DEFAULT_POLICY_TOML, Policy, PolicyError};
pub use report::{Action, FileInfo, Kind, Report, ReportItem, Verdict};
/// The font database type SVG text is drawn with (see [`FontSource::svg_fonts`]).
pub use resvg::usvg::fontdb;

#[cfg(test)]
pub(crate) mod testing {
    //! Test helpers. Tests may read files; the library itself never does.
    use std::sync::{Arc, OnceLock};

    use crate::{FontSource, Fonts, fontdb};

    /// Debian's Noto CJK fonts and system font directory, as the daemon would lend them.
    pub(crate) fn fonts() -> Arc<dyn FontSource> {
        static FONTS: OnceLock<Arc<dyn FontSource>> = OnceLock::new();
        Arc::clone(FONTS.get_or_init(|| {
            let read = |p: &str| std::fs::read(p).ok().map(Arc::new);
            let mut db = fontdb::Database::new();
            db.load_fonts_dir("/usr/share/fonts");
            db.set_sans_serif_family("Noto Sans CJK JP");
            db.set_serif_family("Noto Serif CJK JP");
            Arc::new(Fonts {
                cjk_sans: read("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),
                cjk_serif: read("/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc"),
                svg: Some(Arc::new(db)),
            })
        }))
    }

    /// `sanitize_file` with those fonts lent.
    pub(crate) fn sanitize_file(
        input: &[u8],
        name: Option<&str>,
        policy: &crate::Policy,
    ) -> crate::FileOutcome {
        let fonts = fonts();
        crate::sanitize_file_with(
            input,
            name,
            policy,
            crate::Services {
                converter: None,
                fonts: Some(&fonts),
                archive_password: None,
                ocr: None,
            },
        )
    }
}
