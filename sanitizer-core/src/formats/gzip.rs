//! GZIP streams: the content is decompressed (capped), sanitized through the pipeline as a part
//! of its own (a `.tar.gz` becomes a TAR, whose members are sanitized in turn) and compressed
//! again.
//!
//! Concatenated gzip members are read as one stream, as `gunzip` does. The inner part's name is
//! the gzip header's file name when there is one, else the outer name without `.gz` (`.tgz`
//! gives `.tar`). Decompression stops at `compressed × max_ratio` (`limit.ratio`) and at the
//! item's decoded-bytes budget. When the inner part is removed, so is the gzip file (there is
//! nothing left to deliver); a bomb-like limit tripped inside is reported as that limit. The
//! output keeps the header's modification time and carries the sanitized inner name; it is
//! decompressed again and compared before it leaves.

use std::io::{Read, Write};

use flate2::bufread::MultiGzDecoder;
use flate2::{Compression, GzBuilder};

use super::archive::{MemberPath, Members, decode_name};
use crate::error::SanitizeError;
use crate::limits::{LimitKind, read_capped};
use crate::pipeline::{Context, FormatSanitizer, Rebuilt};
use crate::report::{Action, Kind};

/// Rebuilds GZIP files.
#[derive(Debug, Clone, Copy)]
pub struct GzipSanitizer;

impl FormatSanitizer for GzipSanitizer {
    fn name(&self) -> &'static str {
        "gzip"
    }

    fn sanitize(&self, input: &[u8], cx: &mut Context<'_>) -> Result<Rebuilt, SanitizeError> {
        let ratio = cx.budget().limits().max_ratio;
        let cap = (input.len() as u64).saturating_mul(ratio).max(64 * 1024);
        let mut decoder = MultiGzDecoder::new(input);
        let inner = read_capped((&mut decoder).take(cap.saturating_add(1)), cx.budget())?;
        if inner.len() as u64 > cap {
            return Err(SanitizeError::limit(
                LimitKind::Ratio,
                format!("gzip content expands beyond {ratio} times its compressed size"),
            ));
        }
        cx.budget()
            .check_ratio(input.len() as u64, inner.len() as u64)?;
        let header_name = decoder
            .header()
            .and_then(|h| h.filename())
            .map(decode_name)
            .filter(|n| !n.trim().is_empty());
        let mtime = decoder.header().map_or(0, |h| h.mtime());
        let raw_name = header_name.unwrap_or_else(|| inner_name_from(cx.path()));

        let path = MemberPath::parse(&raw_name);
        // Only the file name of the inner part matters; a path in the gzip header is dropped.
        let path = MemberPath {
            dirs: Vec::new(),
            ..path
        };
        let mut members = Members::default();
        members.sanitize(cx, &path, &inner, None)?;
        let Some(kept) = members.kept.first() else {
            return Err(removed_inner(cx));
        };

        let mut encoder = GzBuilder::new()
            .filename(kept.path.as_bytes())
            .mtime(mtime)
            .write(Vec::new(), Compression::default());
        let fail = |e: std::io::Error| SanitizeError::Internal(format!("writing gzip: {e}"));
        encoder.write_all(kept.bytes.as_slice()).map_err(fail)?;
        let out = encoder.finish().map_err(fail)?;
        recheck(&out, kept.bytes.as_slice())?;
        Ok(
            Rebuilt::new(out, Action::Rebuilt, Kind::Gzip, "application/gzip")
                .with_threats(members.threats.iter().copied())
                .with_reason(format!("gzip rebuilt around sanitized {}", kept.path)),
        )
    }
}

/// The error for a gzip whose only content was removed: carries the inner part's first threat
/// so the report says why (an executable inside a `.gz` is reported as such on the gzip too).
fn removed_inner(cx: &Context<'_>) -> SanitizeError {
    let threat = cx
        .items()
        .iter()
        .rev()
        .find(|i| i.path.starts_with(cx.path()) && i.path != cx.path())
        .and_then(|i| i.threats.first())
        .and_then(|t| crate::threats::ALL.iter().find(|a| **a == t.as_str()))
        .copied()
        .unwrap_or(crate::threats::PARSE_FAILED);
    SanitizeError::Forbidden {
        threat,
        reason: "the compressed content was removed, so nothing is left to deliver".into(),
    }
}

/// The outer file name (last report path segment) without `.gz`; `.tgz` becomes `.tar`.
fn inner_name_from(path: &str) -> String {
    let last = path.rsplit('/').next().unwrap_or_default();
    let lower = last.to_ascii_lowercase();
    if lower.ends_with(".tgz") {
        format!("{}.tar", last.get(..last.len() - 4).unwrap_or_default())
    } else if lower.ends_with(".gz") {
        last.get(..last.len() - 3).unwrap_or_default().to_owned()
    } else {
        "content".to_owned()
    }
}

/// Decompresses our own output with a fresh decoder and compares it with what we meant to write.
fn recheck(out: &[u8], want: &[u8]) -> Result<(), SanitizeError> {
    let mut got = Vec::new();
    MultiGzDecoder::new(out)
        .take(want.len() as u64 + 1)
        .read_to_end(&mut got)
        .map_err(|e| SanitizeError::Recheck(format!("rebuilt gzip: {e}")))?;
    if got != want {
        return Err(SanitizeError::Recheck(
            "rebuilt gzip does not decompress to the sanitized content".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;
    use crate::sanitize_file;
    use crate::threats;

    fn gz(name: Option<&str>, data: &[u8]) -> Vec<u8> {
        let mut b = GzBuilder::new();
        if let Some(n) = name {
            b = b.filename(n);
        }
        let mut e = b.write(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn gunzip(b: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        MultiGzDecoder::new(b).read_to_end(&mut v).unwrap();
        v
    }

    #[test]
    fn tar_gz_members_are_sanitized() {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in [
            ("run.sh", &b"#!/bin/sh\necho pwned\n"[..]),
            (
                "page.html",
                &b"<html><script>x()</script><p>Hi</p></html>"[..],
            ),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o755);
            b.append_data(&mut h, name, data).unwrap();
        }
        let tgz = gz(None, &b.into_inner().unwrap());
        let out = sanitize_file(&tgz, Some("bundle.tar.gz"), &Policy::default());
        let file = out.output.expect("kept");
        assert_eq!(file.kind, Kind::Gzip);
        assert_eq!(file.name, "bundle.tar.gz");
        let members = super::super::tar::list(&gunzip(file.bytes.as_slice()));
        let names: Vec<&str> = members.iter().map(|m| m.0.as_str()).collect();
        assert_eq!(names, ["page.txt"]);
        assert!(out.report.threats().contains(&threats::SCRIPT));
        assert!(
            out.report
                .items
                .iter()
                .any(|i| i.path == "bundle.tar.gz/bundle.tar/run.sh")
        );
    }

    #[test]
    fn executable_inside_gzip_removes_the_file() {
        let g = gz(Some("tool.exe"), b"MZ\x90\0");
        let out = sanitize_file(&g, Some("tool.gz"), &Policy::default());
        assert!(out.output.is_none());
        assert!(out.report.threats().contains(&threats::EXECUTABLE));
    }

    #[test]
    fn gzip_bomb_trips_ratio() {
        let g = gz(None, &vec![0u8; 20 * 1024 * 1024]);
        let out = sanitize_file(&g, Some("zeros.gz"), &Policy::default());
        assert!(out.output.is_none());
        assert!(out.report.threats().contains(&threats::LIMIT_RATIO));
    }

    #[test]
    fn inner_names() {
        assert_eq!(inner_name_from("a/b.tar.gz"), "b.tar");
        assert_eq!(inner_name_from("x.TGZ"), "x.tar");
        assert_eq!(inner_name_from("attachment[1]"), "content");
        assert!(recheck(&gz(None, b"abc"), b"abd").is_err());
        assert!(recheck(&gz(None, b"abc"), b"abc").is_ok());
    }
}
