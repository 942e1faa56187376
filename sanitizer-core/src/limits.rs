//! Resource limits and the per-item budget that enforces them.
//!
//! [`Limits`] is data: conservative defaults, loadable from the policy's `[limits]` table. For
//! each item (a mail or a file) the pipeline turns it into a [`Budget`], which is threaded
//! explicitly (`&mut`) through every sanitizer: never a global. Every charge either succeeds or
//! returns [`SanitizeError::Limit`], which the pipeline turns into a verdict (the part removed,
//! the file blocked), never a panic.
//!
//! Decompression goes through [`read_capped`], which stops at the remaining decoded-bytes budget
//! instead of trusting a declared size.

use std::io::Read;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::SanitizeError;

/// Which limit tripped. Its [`LimitKind::threat_id`] is the `limit.*` id used in reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LimitKind {
    /// Input larger than `max_input_bytes`.
    InputBytes,
    /// Total decompressed/decoded bytes over `max_decoded_bytes`.
    DecodedBytes,
    /// A compression ratio over `max_ratio`.
    Ratio,
    /// Nesting deeper than `max_depth`.
    Depth,
    /// More parts/members than `max_parts`.
    Parts,
    /// Output larger than `max_output_bytes`.
    OutputBytes,
    /// More pages than `max_pages`.
    Pages,
    /// A page or image over `max_pixels_per_image`.
    Pixels,
    /// All pages/images together over `max_total_pixels`.
    TotalPixels,
    /// More animation frames than `max_frames`.
    Frames,
    /// The wall-clock deadline for the item passed.
    Deadline,
}

impl LimitKind {
    /// The stable threat id (`limit.depth`, `limit.deadline`, ...).
    pub fn threat_id(self) -> &'static str {
        use crate::threats as t;
        match self {
            LimitKind::InputBytes => t::LIMIT_INPUT_BYTES,
            LimitKind::DecodedBytes => t::LIMIT_DECODED_BYTES,
            LimitKind::Ratio => t::LIMIT_RATIO,
            LimitKind::Depth => t::LIMIT_DEPTH,
            LimitKind::Parts => t::LIMIT_PARTS,
            LimitKind::OutputBytes => t::LIMIT_OUTPUT_BYTES,
            LimitKind::Pages => t::LIMIT_PAGES,
            LimitKind::Pixels => t::LIMIT_PIXELS,
            LimitKind::TotalPixels => t::LIMIT_TOTAL_PIXELS,
            LimitKind::Frames => t::LIMIT_FRAMES,
            LimitKind::Deadline => t::LIMIT_DEADLINE,
        }
    }
}

/// Resource limits for one item (a mail or a file, with everything inside it).
///
/// The defaults are the strict profile a municipality would run; each field says its default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Limits {
    /// Largest input accepted, in bytes. Default 50 MiB (typical municipal mail cap).
    pub max_input_bytes: u64,
    /// Total bytes produced by decoding and decompression (base64, Flate, ZIP members...) across
    /// the whole item. Default 512 MiB.
    pub max_decoded_bytes: u64,
    /// Largest compression ratio of any single compressed member or stream. Default 200.
    pub max_ratio: u64,
    /// Deepest nesting of containers (multipart, message/rfc822, archives). Default 10.
    pub max_depth: u32,
    /// Most parts (MIME parts, archive members, embedded files) in one item. Default 1000.
    pub max_parts: u32,
    /// Largest output for the whole item, in bytes. Default 200 MiB.
    pub max_output_bytes: u64,
    /// Most pages in one document. Default 1000.
    pub max_pages: u32,
    /// Most pixels in one page or image (width x height). Default 40,000,000 (≈ A3 at 300 DPI).
    pub max_pixels_per_image: u64,
    /// Most pixels in all pages and images of the item together. Default 2,000,000,000.
    pub max_total_pixels: u64,
    /// Most frames in one animated image. Default 200.
    pub max_frames: u32,
    /// Wall-clock time for the whole item, in milliseconds. Default 120,000 (2 minutes).
    pub deadline_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_input_bytes: 50 * 1024 * 1024,
            max_decoded_bytes: 512 * 1024 * 1024,
            max_ratio: 200,
            max_depth: 10,
            max_parts: 1000,
            max_output_bytes: 200 * 1024 * 1024,
            max_pages: 1000,
            max_pixels_per_image: 40_000_000,
            max_total_pixels: 2_000_000_000,
            max_frames: 200,
            deadline_ms: 120_000,
        }
    }
}

/// What one item may still spend. Created by the pipeline from [`Limits`] at the start of an
/// item; every sanitizer charges it as it goes.
#[derive(Debug, Clone)]
pub struct Budget {
    limits: Limits,
    started: Instant,
    deadline: Instant,
    decoded: u64,
    parts: u32,
    output: u64,
    total_pixels: u64,
}

impl Budget {
    /// A fresh budget whose deadline starts now.
    pub fn new(limits: &Limits) -> Budget {
        let now = Instant::now();
        let deadline = now
            .checked_add(Duration::from_millis(limits.deadline_ms))
            .unwrap_or(now);
        Budget {
            limits: limits.clone(),
            started: now,
            deadline,
            decoded: 0,
            parts: 0,
            output: 0,
            total_pixels: 0,
        }
    }

    /// The limits this budget was made from.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The instant the item's deadline passes.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Milliseconds since the budget was made (for the report's `duration_ms`).
    pub fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Fails with `limit.deadline` once the deadline has passed. Call it in every loop that
    /// can run long (pages, members, parts).
    pub fn check_deadline(&self) -> Result<(), SanitizeError> {
        if Instant::now() >= self.deadline {
            return Err(SanitizeError::limit(
                LimitKind::Deadline,
                format!("deadline of {} ms passed", self.limits.deadline_ms),
            ));
        }
        Ok(())
    }

    /// Checks the size of an input before any work is done on it.
    pub fn check_input(&self, len: u64) -> Result<(), SanitizeError> {
        if len > self.limits.max_input_bytes {
            return Err(SanitizeError::limit(
                LimitKind::InputBytes,
                format!(
                    "input of {len} bytes is over {}",
                    self.limits.max_input_bytes
                ),
            ));
        }
        Ok(())
    }

    /// Charges `n` decoded/decompressed bytes.
    pub fn charge_decoded(&mut self, n: u64) -> Result<(), SanitizeError> {
        self.decoded = self.decoded.saturating_add(n);
        if self.decoded > self.limits.max_decoded_bytes {
            return Err(SanitizeError::limit(
                LimitKind::DecodedBytes,
                format!("decoded data over {} bytes", self.limits.max_decoded_bytes),
            ));
        }
        Ok(())
    }

    /// Decoded bytes that may still be produced.
    pub fn decoded_remaining(&self) -> u64 {
        self.limits.max_decoded_bytes.saturating_sub(self.decoded)
    }

    /// Checks one compression ratio (`expanded / compressed`).
    pub fn check_ratio(&self, compressed: u64, expanded: u64) -> Result<(), SanitizeError> {
        // Tiny members compress absurdly well and are harmless; judge only above 64 KiB.
        if expanded > 64 * 1024 && expanded / compressed.max(1) > self.limits.max_ratio {
            return Err(SanitizeError::limit(
                LimitKind::Ratio,
                format!(
                    "compression ratio {} over {}",
                    expanded / compressed.max(1),
                    self.limits.max_ratio
                ),
            ));
        }
        Ok(())
    }

    /// Checks that a container at `depth` (top level = 0) may be opened.
    pub fn check_depth(&self, depth: u32) -> Result<(), SanitizeError> {
        if depth > self.limits.max_depth {
            return Err(SanitizeError::limit(
                LimitKind::Depth,
                format!("nested deeper than {}", self.limits.max_depth),
            ));
        }
        Ok(())
    }

    /// Charges one part (MIME part, archive member, embedded file).
    pub fn charge_part(&mut self) -> Result<(), SanitizeError> {
        self.parts = self.parts.saturating_add(1);
        if self.parts > self.limits.max_parts {
            return Err(SanitizeError::limit(
                LimitKind::Parts,
                format!("more than {} parts", self.limits.max_parts),
            ));
        }
        Ok(())
    }

    /// Charges `n` bytes of output.
    pub fn charge_output(&mut self, n: u64) -> Result<(), SanitizeError> {
        self.output = self.output.saturating_add(n);
        if self.output > self.limits.max_output_bytes {
            return Err(SanitizeError::limit(
                LimitKind::OutputBytes,
                format!("output over {} bytes", self.limits.max_output_bytes),
            ));
        }
        Ok(())
    }

    /// Checks a page count before rendering.
    pub fn check_pages(&self, pages: u64) -> Result<(), SanitizeError> {
        if pages > u64::from(self.limits.max_pages) {
            return Err(SanitizeError::limit(
                LimitKind::Pages,
                format!("{pages} pages, over {}", self.limits.max_pages),
            ));
        }
        Ok(())
    }

    /// Checks a frame count before decoding.
    pub fn check_frames(&self, frames: u64) -> Result<(), SanitizeError> {
        if frames > u64::from(self.limits.max_frames) {
            return Err(SanitizeError::limit(
                LimitKind::Frames,
                format!("{frames} frames, over {}", self.limits.max_frames),
            ));
        }
        Ok(())
    }

    /// Charges one image or page of `width` x `height` pixels, checked before it is decoded or
    /// rendered: both the per-image and the item-wide pixel limits.
    pub fn charge_pixels(&mut self, width: u64, height: u64) -> Result<(), SanitizeError> {
        let pixels = width.saturating_mul(height);
        if pixels > self.limits.max_pixels_per_image {
            return Err(SanitizeError::limit(
                LimitKind::Pixels,
                format!(
                    "{width}x{height} pixels, over {}",
                    self.limits.max_pixels_per_image
                ),
            ));
        }
        self.total_pixels = self.total_pixels.saturating_add(pixels);
        if self.total_pixels > self.limits.max_total_pixels {
            return Err(SanitizeError::limit(
                LimitKind::TotalPixels,
                format!("over {} pixels in total", self.limits.max_total_pixels),
            ));
        }
        Ok(())
    }
}

/// Reads `reader` to its end, charging every byte to the decoded-bytes budget; stops with
/// `limit.decoded_bytes` as soon as the budget is spent instead of allocating further.
///
/// Every decompressor (Flate, ZIP members, gzip...) must be read through this function.
pub fn read_capped<R: Read>(reader: R, budget: &mut Budget) -> Result<Vec<u8>, SanitizeError> {
    let remaining = budget.decoded_remaining();
    let mut out = Vec::new();
    // Read one byte past the allowance so that "exactly at the limit" and "over" differ.
    let mut limited = reader.take(remaining.saturating_add(1));
    limited
        .read_to_end(&mut out)
        .map_err(|e| SanitizeError::Malformed(format!("decompression failed: {e}")))?;
    budget.charge_decoded(out.len() as u64)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Limits {
        Limits {
            max_input_bytes: 10,
            max_decoded_bytes: 100,
            max_ratio: 10,
            max_depth: 2,
            max_parts: 3,
            max_output_bytes: 50,
            max_pages: 5,
            max_pixels_per_image: 100,
            max_total_pixels: 150,
            max_frames: 4,
            deadline_ms: 0,
        }
    }

    fn kind(r: Result<(), SanitizeError>) -> Option<LimitKind> {
        match r {
            Err(SanitizeError::Limit { kind, .. }) => Some(kind),
            _ => None,
        }
    }

    #[test]
    fn every_limit_trips() {
        let mut b = Budget::new(&tiny());
        assert_eq!(kind(b.check_input(10)), None);
        assert_eq!(kind(b.check_input(11)), Some(LimitKind::InputBytes));
        assert_eq!(kind(b.charge_decoded(100)), None);
        assert_eq!(kind(b.charge_decoded(1)), Some(LimitKind::DecodedBytes));
        assert_eq!(kind(b.check_ratio(1000, 100_000)), Some(LimitKind::Ratio));
        assert_eq!(kind(b.check_ratio(10_000, 100_000)), None);
        assert_eq!(kind(b.check_depth(2)), None);
        assert_eq!(kind(b.check_depth(3)), Some(LimitKind::Depth));
        for _ in 0..3 {
            assert_eq!(kind(b.charge_part()), None);
        }
        assert_eq!(kind(b.charge_part()), Some(LimitKind::Parts));
        assert_eq!(kind(b.charge_output(50)), None);
        assert_eq!(kind(b.charge_output(1)), Some(LimitKind::OutputBytes));
        assert_eq!(kind(b.check_pages(6)), Some(LimitKind::Pages));
        assert_eq!(kind(b.check_frames(5)), Some(LimitKind::Frames));
        assert_eq!(kind(b.charge_pixels(10, 11)), Some(LimitKind::Pixels));
        assert_eq!(kind(b.charge_pixels(10, 10)), None);
        assert_eq!(kind(b.charge_pixels(10, 10)), Some(LimitKind::TotalPixels));
        assert_eq!(kind(b.check_deadline()), Some(LimitKind::Deadline));
    }

    #[test]
    fn capped_reader_stops_at_budget() {
        let mut b = Budget::new(&tiny());
        let data = vec![7u8; 1000];
        let r = read_capped(&data[..], &mut b);
        assert!(matches!(
            r,
            Err(SanitizeError::Limit {
                kind: LimitKind::DecodedBytes,
                ..
            })
        ));
        let mut b = Budget::new(&tiny());
        assert_eq!(
            read_capped(&data[..100], &mut b).map(|v| v.len()).ok(),
            Some(100)
        );
    }
}
