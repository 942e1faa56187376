//! Fonts for text the PDF does not embed, above all Japanese.
//!
//! hayro's default resolver substitutes a Latin standard font for every non-embedded font, so a
//! PDF that names `MS-Mincho` or an Adobe-Japan1 CID font without embedding it renders blank
//! where its Japanese text is. [`FontResolver`] maps those fonts to the CJK font files named in
//! the policy (Debian's Noto CJK collections): the face is chosen from the CID collection
//! (Japan1, Korea1, GB1, CNS1) and Mincho/Gothic (serif/sans) from the PostScript name.
//!
//! The font bytes come from the caller's [`FontSource`] (the core reads no files); without
//! one, or when it has no CJK font, the text is left out and the item carries the
//! `pdf.font_missing` warning.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use hayro::hayro_interpret::font::{FallbackFontQuery, FontData, FontQuery};
use hayro::hayro_interpret::hayro_cmap::CidFamily;

use crate::pipeline::FontSource;

/// Which face of a Noto CJK collection serves a CID family (JP, KR, SC, TC are faces 0–3).
fn face_for(family: &CidFamily) -> Option<u32> {
    match family {
        CidFamily::AdobeJapan1 => Some(0),
        CidFamily::AdobeKorea1 => Some(1),
        CidFamily::AdobeGB1 => Some(2),
        CidFamily::AdobeCNS1 => Some(3),
        _ => None,
    }
}

/// Font names of the usual Japanese system and printer fonts, as they appear (often
/// abbreviated) in PostScript names.
const JAPANESE_NAMES: &[&str] = &[
    "mincho",
    "gothic",
    "ryumin",
    "gothicbbb",
    "heiseimin",
    "heiseikakugo",
    "kozmin",
    "kozgo",
    "hiragino",
    "meiryo",
    "yugoth",
    "yumin",
    "msgothic",
    "msmincho",
    "ipamincho",
    "ipagothic",
    "ipaex",
    "takao",
    "osaka",
    "notosanscjk",
    "notoserifcjk",
    "sourcehan",
    "maru",
];

/// Name fragments that say serif (Mincho, Song, Ming, Batang).
const SERIF_NAMES: &[&str] = &[
    "mincho",
    "min-",
    "ryumin",
    "heiseimin",
    "kozmin",
    "yumin",
    "serif",
    "song",
    "ming",
    "batang",
    "明朝",
];

fn query_names(q: &FallbackFontQuery) -> String {
    let mut s = String::new();
    for n in [&q.post_script_name, &q.font_name, &q.font_family]
        .into_iter()
        .flatten()
    {
        s.push_str(&n.to_lowercase());
        s.push(' ');
    }
    s
}

/// Whether a font with these names looks CJK although it declares no CID collection. Names
/// that are not ASCII (Shift_JIS `ＭＳ 明朝` written as name bytes) count as CJK too.
fn looks_cjk(names: &str) -> bool {
    let compact: String = names.chars().filter(|c| *c != '-' && *c != '_').collect();
    !names.is_ascii() || JAPANESE_NAMES.iter().any(|n| compact.contains(n))
}

fn looks_serif(q: &FallbackFontQuery, names: &str) -> bool {
    SERIF_NAMES.iter().any(|n| names.contains(n))
        || (q.is_serif && !names.contains("gothic") && !names.contains("sans"))
}

/// Resolves fonts a PDF does not embed; shared by the render threads of one document.
#[derive(Clone)]
pub struct FontResolver {
    source: Option<Arc<dyn FontSource>>,
    missing: Arc<AtomicBool>,
}

impl FontResolver {
    /// A resolver taking CJK fonts from `source` (none: CJK text is left out).
    pub fn new(source: Option<Arc<dyn FontSource>>) -> FontResolver {
        FontResolver {
            source,
            missing: Arc::new(AtomicBool::new(false)),
        }
    }

    fn load(&self, serif: bool) -> Option<FontData> {
        let bytes = self.source.as_ref()?.cjk(serif)?;
        Some(bytes as FontData)
    }

    /// Whether some text could not be given a font (the page may be incomplete).
    pub fn font_missing(&self) -> bool {
        self.missing.load(Ordering::Relaxed)
    }

    /// Records that a font could not be loaded (also used by the warning sink).
    pub fn mark_missing(&self) {
        self.missing.store(true, Ordering::Relaxed);
    }

    /// Answers one hayro font query.
    pub fn resolve(&self, query: &FontQuery) -> Option<(FontData, u32)> {
        match query {
            FontQuery::Standard(s) => Some(s.get_font_data()),
            FontQuery::Fallback(q) => {
                let names = query_names(q);
                let face = match q.character_collection.as_ref() {
                    Some(cc) => face_for(&cc.family),
                    None => None,
                }
                .or_else(|| looks_cjk(&names).then_some(0));
                let Some(face) = face else {
                    return Some(q.pick_standard_font().get_font_data());
                };
                match self.load(looks_serif(q, &names)) {
                    Some(data) => Some((data, face)),
                    None => {
                        self.mark_missing();
                        None
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(name: &str) -> FallbackFontQuery {
        FallbackFontQuery {
            post_script_name: Some(name.to_owned()),
            ..Default::default()
        }
    }

    #[test]
    fn japanese_names_are_recognised() {
        for n in [
            "MS-Mincho",
            "MS-PGothic",
            "Ryumin-Light",
            "GothicBBB-Medium",
            "HeiseiMin-W3",
            "HeiseiKakuGo-W5",
            "KozMinPr6N-Regular",
            "\u{ff2d}\u{ff33}\u{660e}\u{671d}",
        ] {
            assert!(looks_cjk(&query_names(&q(n))), "{n}");
        }
        for n in ["Helvetica", "ArialMT", "TimesNewRomanPSMT"] {
            assert!(!looks_cjk(&query_names(&q(n))), "{n}");
        }
        assert!(looks_serif(
            &q("Ryumin-Light"),
            &query_names(&q("Ryumin-Light"))
        ));
        assert!(!looks_serif(&q("MS-Gothic"), &query_names(&q("MS-Gothic"))));
    }

    #[test]
    fn no_font_marks_missing() {
        let empty: Arc<dyn FontSource> = Arc::new(crate::Fonts::default());
        for source in [None, Some(empty)] {
            let r = FontResolver::new(source);
            assert!(r.resolve(&FontQuery::Fallback(q("MS-Mincho"))).is_none());
            assert!(r.font_missing());
        }
        let r = FontResolver::new(Some(crate::testing::fonts()));
        assert!(r.resolve(&FontQuery::Fallback(q("MS-Mincho"))).is_some());
        assert!(!r.font_missing());
        // Latin fonts still fall back to the standard fonts.
        let r = FontResolver::new(None);
        assert!(r.resolve(&FontQuery::Fallback(q("ArialMT"))).is_some());
        assert!(!r.font_missing());
    }
}
