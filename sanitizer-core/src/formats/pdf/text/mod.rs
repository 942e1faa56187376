//! The invisible text layer of rasterized pages (`pdf.text_layer`, `pdf.ocr`).
//!
//! Words come from the original's content streams (as Unicode, only where they were visible)
//! or from an OCR engine for pages without text; they are written over the page image in text
//! render mode 3 with one font the output controls. Nothing of the original's fonts, actions,
//! links or annotations crosses.

/// One word of the text layer, positioned in page space (PDF points, origin bottom left, the
/// same space as the rasterized page's MediaBox).
#[derive(Debug, Clone, PartialEq)]
pub struct Word {
    /// The word as Unicode text (no control characters).
    pub text: String,
    /// Left edge.
    pub x0: f32,
    /// Bottom edge (descender line).
    pub y0: f32,
    /// Right edge.
    pub x1: f32,
    /// Top edge.
    pub y1: f32,
}
