//! The framing between the daemon and its worker processes, over the worker's stdin/stdout.
//!
//! A frame is `tag: u8`, `header_len: u32 LE`, a JSON header, `body_len: u64 LE`, raw body
//! bytes. Lengths are checked against caps before anything is allocated, so a compromised
//! worker cannot make the parent allocate without bound.
//!
//! | tag | direction | header | body |
//! |---|---|---|---|
//! | `W` | worker → parent | sandbox status | empty: the worker is confined and ready |
//! | `J` | parent → worker | [`JobHeader`] | input bytes |
//! | `C` | worker → parent | [`ConvertRequest`] | document to convert |
//! | `c` | parent → worker | [`ConvertReply`] | converted document |
//! | `O` | worker → parent | [`OcrRequest`] | 8-bit grey page image, row-major |
//! | `o` | parent → worker | [`OcrReply`] (the words) | empty |
//! | `R` | worker → parent | [`ResultHeader`] | output bytes (empty when blocked) |
//! | `P` | worker → parent | [`PreviewHeader`] | raw RGB pictures, one after another |

use std::io::{self, Read, Write};

use sanitizer_core::{Kind, Policy, Report};
use serde::{Deserialize, Serialize};

/// Largest JSON header accepted (reports of 2,000-part mails fit easily).
pub const MAX_HEADER: u32 = 16 * 1024 * 1024;

/// Frame tags.
pub mod tag {
    /// The worker is confined and ready for its job.
    pub const READY: u8 = b'W';
    /// A job.
    pub const JOB: u8 = b'J';
    /// A conversion request from the worker.
    pub const CONVERT: u8 = b'C';
    /// The answer to a conversion request.
    pub const CONVERT_REPLY: u8 = b'c';
    /// The job's result.
    pub const RESULT: u8 = b'R';
    /// The pictures of a preview job.
    pub const PREVIEW: u8 = b'P';
    /// A text-recognition request from the worker.
    pub const OCR: u8 = b'O';
    /// The answer to a text-recognition request.
    pub const OCR_REPLY: u8 = b'o';
}

pub use crate::sanitize::Mode;

/// The job header.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobHeader {
    /// Mail or file.
    pub mode: Mode,
    /// File name, for files.
    pub name: Option<String>,
    /// The policy to apply.
    pub policy: Policy,
    /// Whether the parent can convert documents (LibreOffice) on the worker's behalf.
    pub converter: bool,
    /// Whether the parent can recognise text (Tesseract) on the worker's behalf.
    #[serde(default)]
    pub ocr: bool,
    /// The configured font paths (the worker reads them lazily, inside its sandbox, and lends
    /// them to the core).
    pub host: crate::config::Host,
    /// A PPAP password for a file job (see `crate::sanitize::Job::password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<crate::sanitize::Password>,
    /// Set for a preview job: the worker answers with the output's pictures ([`tag::PREVIEW`])
    /// instead of the output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<sanitizer_core::preview::PreviewLimits>,
}

/// The header of a preview result: each picture's label and size; the body holds their RGB
/// pixels (`width * height * 3` bytes each) in this order. The parent checks every size
/// against the job's limits and the body length before it uses a byte.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreviewHeader {
    /// The pictures, in order.
    pub pictures: Vec<PictureHeader>,
}

/// One picture of a [`PreviewHeader`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PictureHeader {
    /// What it shows (`p.1`, `report.pdf p.2`): a claim, shown escaped.
    pub label: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// A conversion the worker asks the parent to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConvertRequest {
    /// Original extension (`doc`).
    pub from_ext: String,
    /// Target format (`docx`, `pdf`).
    pub to: String,
    /// Milliseconds the worker can still wait.
    pub timeout_ms: u64,
}

/// The parent's answer to a conversion.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConvertReply {
    /// `None` on success (body holds the document), else the error.
    pub error: Option<String>,
}

/// A page the worker asks the parent to recognise text on (`O` frame; the body holds
/// `width` x `height` grey bytes). The parent checks every field before acting on it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OcrRequest {
    /// Image width in pixels.
    pub width: u32,
    /// Image height in pixels.
    pub height: u32,
    /// Resolution the page was rendered at.
    pub dpi: u32,
    /// Tesseract languages (`jpn+eng`).
    pub languages: String,
    /// Milliseconds the worker can still wait.
    pub timeout_ms: u64,
}

/// One recognised word, in image pixels (a wire copy of [`sanitizer_core::pipeline::OcrWord`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OcrWordWire {
    /// The word.
    pub text: String,
    /// Left edge.
    pub left: u32,
    /// Top edge.
    pub top: u32,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
}

/// The parent's answer to a text-recognition request (`o` frame, empty body).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OcrReply {
    /// `None` on success, else the error.
    pub error: Option<String>,
    /// The words found.
    #[serde(default)]
    pub words: Vec<OcrWordWire>,
}

impl From<sanitizer_core::pipeline::OcrWord> for OcrWordWire {
    fn from(w: sanitizer_core::pipeline::OcrWord) -> OcrWordWire {
        OcrWordWire {
            text: w.text,
            left: w.left,
            top: w.top,
            width: w.width,
            height: w.height,
        }
    }
}

impl From<OcrWordWire> for sanitizer_core::pipeline::OcrWord {
    fn from(w: OcrWordWire) -> sanitizer_core::pipeline::OcrWord {
        sanitizer_core::pipeline::OcrWord {
            text: w.text,
            left: w.left,
            top: w.top,
            width: w.width,
            height: w.height,
        }
    }
}

/// The result header.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResultHeader {
    /// The worker's report (the parent re-checks the output; it does not trust this).
    pub report: Report,
    /// Output file name (files).
    pub name: Option<String>,
    /// Output content type.
    pub mime: Option<String>,
    /// Output kind.
    pub kind: Option<Kind>,
    /// Whether there is an output (false: blocked).
    pub has_output: bool,
}

/// One frame, read.
#[derive(Debug)]
pub struct Frame {
    /// The tag.
    pub tag: u8,
    /// The JSON header.
    pub header: Vec<u8>,
    /// The body.
    pub body: Vec<u8>,
}

impl Frame {
    /// Parses the header as `T`.
    pub fn header<T: for<'de> Deserialize<'de>>(&self) -> io::Result<T> {
        serde_json::from_slice(&self.header)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

/// Writes one frame.
pub fn write_frame<W: Write, H: Serialize>(
    w: &mut W,
    tag: u8,
    header: &H,
    body: &[u8],
) -> io::Result<()> {
    let h =
        serde_json::to_vec(header).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let hlen = u32::try_from(h.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "header too large"))?;
    w.write_all(&[tag])?;
    w.write_all(&hlen.to_le_bytes())?;
    w.write_all(&h)?;
    w.write_all(&(body.len() as u64).to_le_bytes())?;
    w.write_all(body)?;
    w.flush()
}

/// Reads one frame whose body is at most `max_body` bytes. `Ok(None)` on a clean end of stream
/// before the first byte.
pub fn read_frame<R: Read>(r: &mut R, max_body: u64) -> io::Result<Option<Frame>> {
    let mut tag = [0u8; 1];
    if r.read(&mut tag)? == 0 {
        return Ok(None);
    }
    let mut len4 = [0u8; 4];
    r.read_exact(&mut len4)?;
    let hlen = u32::from_le_bytes(len4);
    if hlen > MAX_HEADER {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "frame header too large",
        ));
    }
    // Read through `take`, never a pre-sized buffer: memory grows only with bytes that arrive.
    let mut header = Vec::new();
    (&mut *r).take(u64::from(hlen)).read_to_end(&mut header)?;
    if header.len() != hlen as usize {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "truncated frame header",
        ));
    }
    let mut len8 = [0u8; 8];
    r.read_exact(&mut len8)?;
    let blen = u64::from_le_bytes(len8);
    if blen > max_body {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "frame body too large",
        ));
    }
    let blen = usize::try_from(blen)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "frame body too large"))?;
    let mut body = Vec::new();
    (&mut *r).take(blen as u64).read_to_end(&mut body)?;
    if body.len() != blen {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "truncated frame",
        ));
    }
    let [tag] = tag;
    Ok(Some(Frame { tag, header, body }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_caps_hold() {
        let mut buf = Vec::new();
        let req = ConvertRequest {
            from_ext: "doc".into(),
            to: "docx".into(),
            timeout_ms: 5,
        };
        write_frame(&mut buf, tag::CONVERT, &req, b"abc").unwrap();
        let f = read_frame(&mut &buf[..], 10).unwrap().unwrap();
        assert_eq!(f.tag, tag::CONVERT);
        assert_eq!(f.body, b"abc");
        assert_eq!(f.header::<ConvertRequest>().unwrap().to, "docx");
        assert!(read_frame(&mut &buf[..], 2).is_err());
        assert!(read_frame(&mut &buf[..buf.len() - 1], 10).is_err());
        assert!(read_frame(&mut &b""[..], 10).unwrap().is_none());
    }

    /// A frame that announces more than it carries allocates only what arrived.
    #[test]
    fn announced_lengths_allocate_nothing_until_bytes_arrive() {
        let mut lying = vec![tag::RESULT];
        lying.extend_from_slice(&MAX_HEADER.to_le_bytes());
        lying.extend_from_slice(b"{}");
        let err = read_frame(&mut &lying[..], 10).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        let mut big_body = vec![tag::RESULT];
        big_body.extend_from_slice(&2u32.to_le_bytes());
        big_body.extend_from_slice(b"{}");
        big_body.extend_from_slice(&u64::MAX.to_le_bytes());
        let err = read_frame(&mut &big_body[..], 1 << 20).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
