//! The Tesseract text recogniser lent to the core ([`sanitizer_core::pipeline::Ocr`]) for rasterized
//! pages that carry no text (policy `pdf.ocr`).
//!
//! Each call writes the 8-bit grey page as a PGM file into a fresh private directory and runs
//! `tesseract page.pgm stdout -l LANGS --dpi DPI tsv` there, confined like LibreOffice
//! ([`crate::convert`]): through the `mugai __confine` trampoline (no network, Landlock, resource
//! limits, `nobody` when we are root), with an emptied environment, in its own process group,
//! killed when the deadline passes. The directory is removed afterwards whatever happened.
//!
//! Tesseract reads a page a document author drew, so its output is untrusted: it is read
//! through a descriptor we opened (never a path the helper could swap), at most
//! [`MAX_TSV_BYTES`]; the TSV is parsed without indexing or unwrapping; words are clamped to
//! the image, control and bidirectional-override characters are dropped, and the number and
//! length of words are capped. The language list is checked against `[a-z_]+(\+[a-z_]+)*`
//! before it reaches the command line.
//!
//! Failure modes: tesseract missing or exiting non-zero (missing language data included: its
//! last message is in the error), the deadline passing, output over the cap: each is an
//! `Err(String)`; the core then delivers the page without a text layer and warns.

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sanitizer_core::pipeline::{Ocr, OcrWord};

/// Largest TSV output read from tesseract (a dense A4 page at 300 DPI is about 100 KB).
pub const MAX_TSV_BYTES: u64 = 8 * 1024 * 1024;
/// Largest image accepted, in pixels (A4 at 600 DPI is 35 million).
pub const MAX_PIXELS: u64 = 64 * 1024 * 1024;
/// Most words kept from one page.
pub const MAX_WORDS: usize = 50_000;
/// Longest word kept, in characters (longer ones are cut).
pub const MAX_WORD_CHARS: usize = 256;
/// Longest language list accepted.
pub const MAX_LANGUAGES_LEN: usize = 128;
/// Words tesseract is less sure of than this (0–100) are left out: a wrong word in an
/// invisible layer misleads search and copy more than a missing one.
pub const MIN_CONFIDENCE: f32 = 40.0;

/// Tesseract, run as an external process per page.
#[derive(Debug, Clone)]
pub struct Tesseract {
    tesseract: PathBuf,
    timeout: Duration,
    confine: Option<PathBuf>,
    allow_without_landlock: bool,
}

impl Tesseract {
    /// A recogniser running `tesseract` (an absolute path when confined), giving each page at
    /// most `timeout` (and never more than the caller's deadline).
    pub fn new(tesseract: impl Into<PathBuf>, timeout: Duration) -> Tesseract {
        Tesseract {
            tesseract: tesseract.into(),
            timeout,
            confine: None,
            allow_without_landlock: false,
        }
    }

    /// The recogniser for `tesseract` (configuration `host.tesseract`) when that binary exists,
    /// looked up in `PATH` when it is a bare name; `None` when it is empty or not installed.
    pub fn find(tesseract: &str, timeout: Duration) -> Option<Tesseract> {
        if tesseract.is_empty() {
            return None;
        }
        let path = Path::new(tesseract);
        let found = if path.components().count() > 1 {
            path.is_file().then(|| path.to_path_buf())
        } else {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join(tesseract))
                    .find(|p| p.is_file())
            })
        }?;
        Some(Tesseract::new(found, timeout))
    }

    /// Runs every recognition confined by `mugai __confine` (`mugai` is the executable that
    /// provides the trampoline, normally `std::env::current_exe()`).
    pub fn confined(mut self, mugai: impl Into<PathBuf>) -> Tesseract {
        self.confine = Some(mugai.into());
        self
    }

    /// Lets the confined recogniser run where Landlock cannot be enforced (configuration
    /// `pool.allow_without_landlock`); by default it refuses to start there.
    pub fn allow_without_landlock(mut self, allow: bool) -> Tesseract {
        self.allow_without_landlock = allow;
        self
    }

    fn run(
        &self,
        grey: &[u8],
        width: u32,
        height: u32,
        dpi: u32,
        languages: &str,
        deadline: Instant,
    ) -> Result<Vec<OcrWord>, String> {
        let dir = tempfile::Builder::new()
            .prefix("mugai-ocr-")
            .tempdir()
            .map_err(|e| format!("temporary directory: {e}"))?;
        crate::convert::restrict(dir.path())?;
        let src = dir.path().join("page.pgm");
        write_pgm(&src, grey, width, height).map_err(|e| format!("writing the page: {e}"))?;
        // Output and messages go to files opened here: we read them back through these
        // descriptors, so the helper cannot swap in another file under the same name.
        let mut out = tempfile::tempfile_in(dir.path()).map_err(|e| format!("output: {e}"))?;
        let mut log = tempfile::tempfile_in(dir.path()).map_err(|e| format!("log: {e}"))?;
        let stdout = out.try_clone().map_err(|e| format!("output: {e}"))?;
        let stderr = log.try_clone().map_err(|e| format!("log: {e}"))?;
        let give_up = deadline.min(Instant::now() + self.timeout);
        let secs = give_up.saturating_duration_since(Instant::now()).as_secs();
        let mut cmd = crate::convert::helper_command(
            self.confine.as_deref(),
            &self.tesseract,
            dir.path(),
            secs.saturating_mul(2).saturating_add(5),
            4 << 30,
            self.allow_without_landlock,
        )?;
        cmd.arg("page.pgm")
            .arg("stdout")
            .arg("-l")
            .arg(languages)
            .arg("--dpi")
            .arg(dpi.to_string())
            .arg("tsv")
            // One thread per page: the pool already runs one job per core.
            .env("OMP_THREAD_LIMIT", "1")
            .stdout(stdout)
            .stderr(stderr);
        let status =
            crate::convert::run_helper(&mut cmd, "tesseract", give_up, Duration::from_millis(10))?;
        if !status.success() {
            let said = read_capped(&mut log, 64 * 1024).unwrap_or_default();
            let said = String::from_utf8_lossy(&said);
            let last = said
                .lines()
                .map(str::trim)
                .rfind(|l| !l.is_empty() && !l.starts_with("Warning"))
                .unwrap_or("no message");
            return Err(format!("tesseract failed ({status}): {}", clean_text(last)));
        }
        let tsv = read_capped(&mut out, MAX_TSV_BYTES)?;
        Ok(parse_tsv(&tsv, width, height))
    }
}

impl Ocr for Tesseract {
    fn recognize(
        &self,
        grey: &[u8],
        width: u32,
        height: u32,
        dpi: u32,
        languages: &str,
        deadline: Instant,
    ) -> Result<Vec<OcrWord>, String> {
        check_image(grey.len(), width, height)?;
        if !(10..=2400).contains(&dpi) {
            return Err(format!("OCR resolution {dpi} DPI is out of range"));
        }
        check_languages(languages)?;
        self.run(grey, width, height, dpi, languages, deadline)
    }
}

/// Checks that an image of `width` x `height` 8-bit pixels is `len` bytes long, not empty and
/// at most [`MAX_PIXELS`].
pub fn check_image(len: usize, width: u32, height: u32) -> Result<(), String> {
    let pixels = u64::from(width) * u64::from(height);
    if pixels == 0 {
        return Err("empty image".into());
    }
    if pixels > MAX_PIXELS {
        return Err(format!(
            "image of {width}x{height} pixels is over the OCR cap of {MAX_PIXELS}"
        ));
    }
    if u64::try_from(len).ok() != Some(pixels) {
        return Err(format!(
            "image of {width}x{height} pixels comes with {len} bytes"
        ));
    }
    Ok(())
}

/// Checks a tesseract language list (`jpn+eng`): `[a-z_]+(\+[a-z_]+)*`, at most
/// [`MAX_LANGUAGES_LEN`] bytes. Anything else never reaches the command line.
pub fn check_languages(languages: &str) -> Result<(), String> {
    let ok = !languages.is_empty()
        && languages.len() <= MAX_LANGUAGES_LEN
        && languages
            .split('+')
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "OCR language list {:?} is not of the form jpn+eng",
            clean_text(languages.get(..40).unwrap_or("(long)"))
        ))
    }
}

fn write_pgm(path: &Path, grey: &[u8], width: u32, height: u32) -> std::io::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    write!(f, "P5\n{width} {height}\n255\n")?;
    f.write_all(grey)?;
    f.into_inner().map_err(|e| e.into_error())?.sync_all()
}

/// Reads `file` from its start, failing when it holds more than `cap` bytes.
fn read_capped(file: &mut std::fs::File, cap: u64) -> Result<Vec<u8>, String> {
    file.rewind()
        .map_err(|e| format!("reading tesseract's output: {e}"))?;
    let mut bytes = Vec::new();
    file.take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| format!("reading tesseract's output: {e}"))?;
    if bytes.len() as u64 > cap {
        return Err(format!("tesseract's output is over {cap} bytes"));
    }
    Ok(bytes)
}

/// Whether `c` is dropped from recognised text: control characters, bidirectional controls
/// (which could reorder what a reader sees), byte-order marks and zero-width characters.
fn dropped(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{2069}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
        )
}

/// `text` without the characters [`dropped`] removes, cut to [`MAX_WORD_CHARS`].
fn clean_text(text: &str) -> String {
    text.chars()
        .filter(|&c| !dropped(c))
        .take(MAX_WORD_CHARS)
        .collect()
}

/// Parses tesseract's TSV (`level page block par line word left top width height conf text`)
/// into the words (level 5) of at least [`MIN_CONFIDENCE`] with some text left after
/// cleaning, clamped to a `width` x `height` image. Lines that do not parse are skipped; at
/// most [`MAX_WORDS`] words are kept.
pub fn parse_tsv(tsv: &[u8], width: u32, height: u32) -> Vec<OcrWord> {
    let text = String::from_utf8_lossy(tsv);
    let mut words = Vec::new();
    for line in text.lines() {
        if words.len() >= MAX_WORDS {
            break;
        }
        if let Some(w) = parse_word(line, width, height) {
            words.push(w);
        }
    }
    words
}

fn parse_word(line: &str, width: u32, height: u32) -> Option<OcrWord> {
    let mut f = line.splitn(12, '\t');
    if f.next()?.trim() != "5" {
        return None;
    }
    // page, block, paragraph, line, word numbers.
    for _ in 0..5 {
        f.next()?;
    }
    let mut num = || f.next()?.trim().parse::<i64>().ok();
    let (left, top, w, h) = (num()?, num()?, num()?, num()?);
    let conf: f32 = f.next()?.trim().parse().ok()?;
    // NaN is never confident enough.
    if conf.is_nan() || conf < MIN_CONFIDENCE {
        return None;
    }
    let text = clean_text(f.next()?.trim_end_matches(['\r', '\n']));
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    // Clamp the box to the image; a box wholly outside it, or empty, is dropped.
    let right = left.saturating_add(w).min(i64::from(width));
    let bottom = top.saturating_add(h).min(i64::from(height));
    let (left, top) = (left.max(0), top.max(0));
    if right <= left || bottom <= top {
        return None;
    }
    Some(OcrWord {
        text: text.to_owned(),
        left: u32::try_from(left).ok()?,
        top: u32::try_from(top).ok()?,
        width: u32::try_from(right - left).ok()?,
        height: u32::try_from(bottom - top).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext\n";

    fn word(text: &str, l: u32, t: u32, w: u32, h: u32) -> OcrWord {
        OcrWord {
            text: text.into(),
            left: l,
            top: t,
            width: w,
            height: h,
        }
    }

    #[test]
    fn words_are_read_from_tesseract_tsv() {
        let tsv = format!(
            "{HEAD}1\t1\t0\t0\t0\t0\t0\t0\t1241\t1754\t-1\t\n\
             4\t1\t1\t1\t1\t0\t120\t122\t587\t20\t-1\t\n\
             5\t1\t1\t1\t1\t1\t120\t122\t109\t16\t92.03\tSanitized\n\
             5\t1\t1\t1\t2\t1\t119\t145\t51\t33\t91.64\t請求\r\n\
             5\t1\t1\t1\t2\t2\t170\t149\t10\t20\t12.5\tnoise\n\
             5\t1\t1\t1\t2\t3\t170\t149\t10\t20\t95\t   \n"
        );
        assert_eq!(
            parse_tsv(tsv.as_bytes(), 1241, 1754),
            [
                word("Sanitized", 120, 122, 109, 16),
                word("請求", 119, 145, 51, 33)
            ]
        );
    }

    #[test]
    fn hostile_tsv_is_clamped_filtered_or_skipped() {
        let lines = [
            // Boxes past the image are clamped; wholly outside or negative-sized, dropped.
            "5\t1\t1\t1\t1\t1\t90\t-5\t50\t20\t99\tedge",
            "5\t1\t1\t1\t1\t1\t200\t10\t5\t5\t99\toutside",
            "5\t1\t1\t1\t1\t1\t10\t10\t-5\t5\t99\tnegative",
            "5\t1\t1\t1\t1\t1\t-1000\t0\t2000\t5\t99\thuge",
            "5\t1\t1\t1\t1\t1\t-9223372036854775808\t0\t9223372036854775807\t5\t99\tmin",
            "5\t1\t1\t1\t1\t1\t99999999999999999999\t0\t5\t5\t99\toverflow",
            // Bidi overrides and controls are dropped; what is left stays.
            "5\t1\t1\t1\t1\t1\t0\t0\t10\t10\t99\tab\u{202E}c\u{0007}d\u{200B}",
            "5\t1\t1\t1\t1\t1\t0\t0\t10\t10\t99\t\u{202E}\u{2066}",
            // Short lines, junk, NaN confidence, tabs inside the text.
            "5\t1\t1",
            "",
            "\t\t\t\t\t\t\t\t\t\t\t",
            "5\t1\t1\t1\t1\t1\t0\t0\t10\t10\tNaN\tnan",
            "5\t1\t1\t1\t1\t1\t0\t0\t10\t10\t99\ttab\there",
        ];
        let mut tsv = lines.join("\n").into_bytes();
        tsv.extend_from_slice(b"\n5\t1\t1\t1\t1\t1\t0\t0\t10\t10\t99\tbad\xff\xfeutf8\n");
        let words = parse_tsv(&tsv, 100, 50);
        assert_eq!(
            words,
            [
                word("edge", 90, 0, 10, 15),
                word("huge", 0, 0, 100, 5),
                word("abcd", 0, 0, 10, 10),
                word("tabhere", 0, 0, 10, 10),
                word("bad\u{FFFD}\u{FFFD}utf8", 0, 0, 10, 10),
            ]
        );
    }

    #[test]
    fn word_count_and_length_are_capped() {
        let long = "x".repeat(10_000);
        let tsv = format!("5\t1\t1\t1\t1\t1\t0\t0\t10\t10\t99\t{long}\n");
        let words = parse_tsv(tsv.as_bytes(), 100, 100);
        assert_eq!(
            words.first().map(|w| w.text.chars().count()),
            Some(MAX_WORD_CHARS)
        );
        let many = "5\t1\t1\t1\t1\t1\t0\t0\t1\t1\t99\tw\n".repeat(MAX_WORDS + 10);
        assert_eq!(parse_tsv(many.as_bytes(), 10, 10).len(), MAX_WORDS);
    }

    #[test]
    fn language_lists_are_checked_before_they_reach_argv() {
        for ok in ["eng", "jpn+eng", "jpn_vert+chi_sim+eng"] {
            assert!(check_languages(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "+",
            "eng+",
            "+eng",
            "eng++jpn",
            "ENG",
            "eng jpn",
            "--tessdata-dir",
            "eng;rm",
            "../eng",
            "eng\n",
            "jpn-eng",
            "日本語",
        ] {
            assert!(check_languages(bad).is_err(), "{bad:?}");
        }
        assert!(check_languages(&"a".repeat(MAX_LANGUAGES_LEN + 1)).is_err());
    }

    #[test]
    fn images_are_checked() {
        assert!(check_image(6, 3, 2).is_ok());
        assert!(check_image(5, 3, 2).is_err());
        assert!(check_image(0, 0, 5).is_err());
        assert!(check_image(usize::MAX, u32::MAX, u32::MAX).is_err());
        let t = Tesseract::new("/nonexistent/tesseract", Duration::from_secs(5));
        let at = Instant::now() + Duration::from_secs(5);
        assert!(t.recognize(&[0; 5], 3, 2, 150, "eng", at).is_err());
        assert!(t.recognize(&[0; 6], 3, 2, 150, "eng;x", at).is_err());
        assert!(t.recognize(&[0; 6], 3, 2, 0, "eng", at).is_err());
        let err = t.recognize(&[0; 6], 3, 2, 150, "eng", at).unwrap_err();
        assert!(err.contains("cannot start"), "{err}");
    }

    fn tesseract() -> Option<Tesseract> {
        let found = Tesseract::find("tesseract", Duration::from_secs(60));
        if found.is_none() {
            assert!(
                std::env::var_os("CI").is_none(),
                "tesseract must be installed in CI"
            );
            eprintln!("NOTICE: tesseract not installed; OCR engine test skipped");
        }
        found
    }

    /// A grey page with a black bar: tesseract runs, finds no confident words, and a language
    /// without data fails with tesseract's own words.
    #[test]
    fn runs_tesseract_and_reports_missing_language_data() {
        let Some(t) = tesseract() else { return };
        let (w, h) = (200u32, 100u32);
        let mut grey = vec![255u8; 200 * 100];
        for px in grey.iter_mut().skip(200 * 40).take(200 * 10) {
            *px = 0;
        }
        let at = Instant::now() + Duration::from_secs(60);
        let words = t.recognize(&grey, w, h, 150, "eng", at).unwrap();
        assert!(
            words
                .iter()
                .all(|x| x.left + x.width <= w && x.top + x.height <= h)
        );
        let err = t
            .recognize(&grey, w, h, 150, "zzz_nonexistent", at)
            .unwrap_err();
        assert!(err.contains("tesseract failed"), "{err}");
        // A deadline that has passed: killed, and the call fails quickly.
        let err = t
            .recognize(&grey, w, h, 150, "eng", Instant::now())
            .unwrap_err();
        assert!(err.contains("timed out"), "{err}");
    }
}
