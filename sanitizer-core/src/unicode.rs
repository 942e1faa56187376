//! Invisible and direction-changing characters, and file name normalisation.
//!
//! Bidi controls (U+202E "RTLO" makes `gpj.exe` display as `exe.jpg`) and zero-width characters
//! are stripped from subjects, display names, file names and bodies.

use crate::threats;

/// Whether `c` is a bidi control or an invisible formatting character that we strip.
pub fn is_invisible_control(c: char) -> bool {
    matches!(c,
        '\u{200B}'..='\u{200F}' // zero-width space/non-joiner/joiner, LRM, RLM
        | '\u{202A}'..='\u{202E}' // LRE RLE PDF LRO RLO
        | '\u{2060}'..='\u{2064}' // word joiner, invisible operators
        | '\u{2066}'..='\u{2069}' // LRI RLI FSI PDI
        | '\u{061C}' // Arabic letter mark
        | '\u{FEFF}' // zero-width no-break space / BOM
        | '\u{180E}' // Mongolian vowel separator
        | '\u{FFF9}'..='\u{FFFB}' // interlinear annotations
    )
}

/// Removes bidi and zero-width controls. Returns the cleaned text and whether any were found.
pub fn strip_invisible(s: &str) -> (String, bool) {
    if !s.chars().any(is_invisible_control) {
        return (s.to_owned(), false);
    }
    (
        s.chars().filter(|c| !is_invisible_control(*c)).collect(),
        true,
    )
}

/// Removes bidi/zero-width controls and every C0/C1 control except tab and line breaks.
pub fn clean_text(s: &str) -> (String, bool) {
    let mut found = false;
    let out: String = s
        .chars()
        .filter(|&c| {
            let drop =
                is_invisible_control(c) || (c.is_control() && c != '\n' && c != '\t' && c != '\r');
            found |= drop && is_invisible_control(c);
            !drop
        })
        .collect();
    (out, found)
}

/// Longest file name we produce, in characters (before the extension is counted).
pub const MAX_FILENAME_CHARS: usize = 120;

/// A file name made safe to write anywhere, and what was wrong with the original.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizedName {
    /// The safe name: no path separators, controls, bidi characters, leading dots, or trailing
    /// dots/spaces; never empty.
    pub name: String,
    /// Threat ids found in the original name.
    pub threats: Vec<&'static str>,
}

/// Normalises an untrusted file name (from a MIME header or an archive member).
pub fn normalize_filename(raw: &str) -> NormalizedName {
    let mut found = Vec::new();
    let (no_bidi, had_bidi) = strip_invisible(raw);
    if had_bidi {
        found.push(threats::FILENAME_BIDI_CONTROL);
    }
    // Keep only the last path component; a name with separators or traversal is reported.
    let last = no_bidi
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default()
        .to_owned();
    if last.len() != no_bidi.len() || no_bidi.contains("..") {
        found.push(threats::FILENAME_PATH);
    }
    let mut name: String = last
        .chars()
        .map(|c| {
            if c.is_control() || matches!(c, ':' | '*' | '?' | '"' | '<' | '>' | '|') {
                '_'
            } else {
                c
            }
        })
        .collect();
    if raw.chars().any(|c| c.is_control()) && !found.contains(&threats::FILENAME_PATH) {
        found.push(threats::FILENAME_PATH);
    }
    let trimmed = name
        .trim_end_matches(['.', ' '])
        .trim_start_matches(['.', ' '])
        .to_owned();
    name = trimmed;
    if name.chars().count() > MAX_FILENAME_CHARS {
        // Keep the extension: it matters to the recipient.
        let ext = extension(&name)
            .map(|e| format!(".{e}"))
            .unwrap_or_default();
        let keep = MAX_FILENAME_CHARS.saturating_sub(ext.chars().count());
        name = name.chars().take(keep).collect::<String>() + &ext;
    }
    if name.is_empty() {
        name = "attachment".into();
    }
    // Windows would open the device instead of the file (`CON.txt`, `nul`).
    let name = crate::naming::avoid_reserved(&name);
    NormalizedName {
        name,
        threats: found,
    }
}

/// The lower-case extension of a file name, without the dot.
pub fn extension(name: &str) -> Option<String> {
    let (stem, ext) = name.rsplit_once('.')?;
    if stem.is_empty() || ext.is_empty() || ext.len() > 10 {
        return None;
    }
    Some(ext.to_ascii_lowercase())
}

/// Replaces (or adds) the extension of `name`.
pub fn with_extension(name: &str, ext: &str) -> String {
    match name.rsplit_once('.') {
        Some((stem, old)) if !stem.is_empty() && !old.is_empty() && old.len() <= 10 => {
            format!("{stem}.{ext}")
        }
        _ => format!("{name}.{ext}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtlo_is_stripped_and_reported() {
        let n = normalize_filename("invoice\u{202E}fdp.exe");
        assert_eq!(n.name, "invoicefdp.exe");
        assert!(n.threats.contains(&threats::FILENAME_BIDI_CONTROL));
    }

    #[test]
    fn paths_and_trailing_dots_are_removed() {
        let n = normalize_filename("../../etc/passwd");
        assert_eq!(n.name, "passwd");
        assert!(n.threats.contains(&threats::FILENAME_PATH));
        assert_eq!(normalize_filename("C:\\x\\a.pdf. . ").name, "a.pdf");
        assert_eq!(normalize_filename("...").name, "attachment");
        assert_eq!(normalize_filename("a\0b.txt").name, "a_b.txt");
    }

    #[test]
    fn long_names_keep_extension() {
        let long = format!("{}.pdf", "あ".repeat(500));
        let n = normalize_filename(&long);
        assert_eq!(n.name.chars().count(), MAX_FILENAME_CHARS);
        assert!(n.name.ends_with(".pdf"));
    }

    #[test]
    fn extensions() {
        assert_eq!(extension("a.DocM").as_deref(), Some("docm"));
        assert_eq!(extension(".bashrc"), None);
        assert_eq!(with_extension("a.docm", "docx"), "a.docx");
        assert_eq!(with_extension("README", "txt"), "README.txt");
    }

    #[test]
    fn japanese_text_is_untouched() {
        let s = "①㈱髙橋 様\n見積書";
        assert_eq!(clean_text(s), (s.to_owned(), false));
        assert_eq!(strip_invisible("a\u{200B}b"), ("ab".to_owned(), true));
    }
}
