//! Windows code pages (as Outlook, RTF and other Microsoft formats name them) mapped to
//! encodings: one table for every format that carries a code page number.

use encoding_rs::Encoding;

/// The encoding for Windows code page `cp`, or `None` when it is not one we decode.
///
/// Approximations, chosen deliberately: the DOS code pages 437 and 850 and ASCII/Latin-1
/// (20127, 28591) decode as Windows-1252, their common superset for text; Mac Japanese
/// (10001) as Shift_JIS; GBK (936) as its superset GB18030; the ISO-2022-JP variants
/// (50220-50222) with the ISO-2022-JP decoder.
pub(crate) fn encoding_for_codepage(cp: u32) -> Option<&'static Encoding> {
    use encoding_rs as e;
    Some(match cp {
        932 | 10001 => e::SHIFT_JIS,
        50220..=50222 => e::ISO_2022_JP,
        20932 | 51932 => e::EUC_JP,
        65001 => e::UTF_8,
        1200 => e::UTF_16LE,
        1201 => e::UTF_16BE,
        936 | 54936 => e::GB18030,
        949 => e::EUC_KR,
        950 => e::BIG5,
        874 => e::WINDOWS_874,
        1250 => e::WINDOWS_1250,
        1251 => e::WINDOWS_1251,
        1252 | 437 | 850 | 20127 | 28591 => e::WINDOWS_1252,
        1253 => e::WINDOWS_1253,
        1254 => e::WINDOWS_1254,
        1255 => e::WINDOWS_1255,
        1256 => e::WINDOWS_1256,
        1257 => e::WINDOWS_1257,
        1258 => e::WINDOWS_1258,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn japanese_code_pages() {
        assert_eq!(encoding_for_codepage(932), Some(encoding_rs::SHIFT_JIS));
        assert_eq!(encoding_for_codepage(50220), Some(encoding_rs::ISO_2022_JP));
        assert_eq!(encoding_for_codepage(51932), Some(encoding_rs::EUC_JP));
        assert_eq!(encoding_for_codepage(936), Some(encoding_rs::GB18030));
        assert_eq!(encoding_for_codepage(12345), None);
    }
}
