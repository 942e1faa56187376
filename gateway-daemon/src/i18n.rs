//! Words for people: the language of terminal messages, and threat ids as sentences.
//!
//! The CLI speaks Japanese when asked (`--lang ja`) or when the locale is Japanese
//! (`LC_ALL`, `LC_MESSAGES` or `LANG` starting with `ja`), English otherwise. Notes left for
//! blocked files (`NAME.blocked.txt`) are always bilingual, Japanese first, because whoever
//! opens them may not be whoever ran the command.
//!
//! Threat ids (`pdf.javascript`) are for machines and auditors; [`threat_ja`] and
//! [`threat_en`] say the same in a sentence. An id without its own sentence falls back to its
//! family (`pdf.*`), so a new id never shows up as nothing.

/// The language of messages for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// 日本語.
    Ja,
    /// English.
    En,
}

impl Lang {
    /// `--lang` if given, else the locale (`LC_ALL` > `LC_MESSAGES` > `LANG`), else English.
    pub fn detect(flag: Option<Lang>) -> Lang {
        if let Some(l) = flag {
            return l;
        }
        let locale = ["LC_ALL", "LC_MESSAGES", "LANG"]
            .iter()
            .filter_map(|k| std::env::var(k).ok())
            .find(|v| !v.is_empty());
        match locale {
            Some(v) if v.starts_with("ja") => Lang::Ja,
            _ => Lang::En,
        }
    }

    /// Picks the text for this language.
    pub fn pick<'a>(self, ja: &'a str, en: &'a str) -> &'a str {
        match self {
            Lang::Ja => ja,
            Lang::En => en,
        }
    }

    /// The separator after a label: full-width after Japanese.
    pub fn colon(self) -> &'static str {
        self.pick("：", ": ")
    }
}

/// One threat id (or family) and what it means.
struct Sentence {
    id: &'static str,
    ja: &'static str,
    en: &'static str,
}

const fn s(id: &'static str, ja: &'static str, en: &'static str) -> Sentence {
    Sentence { id, ja, en }
}

/// Exact ids first, then families (`pdf.`), then the catch-all (``).
const SENTENCES: &[Sentence] = &[
    s(
        "archive.encrypted",
        "パスワード付き（暗号化）の圧縮ファイルのため、中身を検査できません",
        "password-protected (encrypted) archive: its contents cannot be checked",
    ),
    s(
        "pdf.encrypted",
        "暗号化された PDF のため、中身を検査できません",
        "encrypted PDF: its contents cannot be checked",
    ),
    s(
        "office.encrypted",
        "パスワード付き（暗号化）の Office 文書のため、中身を検査できません",
        "password-protected (encrypted) Office document: its contents cannot be checked",
    ),
    s(
        "content.encrypted",
        "暗号化されているため、中身を検査できません",
        "encrypted: its contents cannot be checked",
    ),
    s(
        "executable.binary",
        "実行ファイル（プログラム）です",
        "an executable program",
    ),
    s(
        "script.code",
        "スクリプト（プログラム）です",
        "a script (program code)",
    ),
    s(
        "filename.executable",
        "ファイル名が実行ファイルまたはスクリプトを示しています",
        "the file name says executable or script",
    ),
    s(
        "filename.double_extension",
        "拡張子を偽装したファイル名です（例: .pdf.exe）",
        "a disguised double extension (e.g. .pdf.exe)",
    ),
    s(
        "filename.bidi_control",
        "ファイル名に文字の向きを変える制御文字（RLO など）が含まれています",
        "the file name contains bidirectional control characters (RLO)",
    ),
    s(
        "mime.type_mismatch",
        "ファイルの種類と中身が一致しません",
        "the declared type does not match the content",
    ),
    s(
        "format.unsupported",
        "無害化に対応していない形式です",
        "a format Mugai cannot make safe",
    ),
    s(
        "parse.failed",
        "ファイルが壊れているか、解析できません",
        "the file is damaged or could not be parsed",
    ),
    s(
        "recheck.failed",
        "無害化後の検査に合格しませんでした",
        "the sanitized result failed the final check",
    ),
    s(
        "limit.deadline",
        "処理時間の上限を超えました",
        "processing took longer than allowed",
    ),
    s(
        "limit.memory",
        "使用メモリの上限を超えました",
        "processing needed more memory than allowed",
    ),
    s(
        "limit.input_bytes",
        "ファイルが大きすぎます",
        "the file is larger than allowed",
    ),
    s(
        "limit.ratio",
        "圧縮率が異常に高いファイル（圧縮爆弾の疑い）です",
        "an abnormal compression ratio (a suspected zip bomb)",
    ),
    s(
        "limit.",
        "処理の上限（大きさ・数・深さなど）を超えました",
        "a processing limit (size, count, depth) was exceeded",
    ),
    s(
        "worker.",
        "無害化処理が異常終了しました",
        "the sanitizing process failed",
    ),
    s(
        "sandbox.violation",
        "無害化処理が禁止された操作を試みました",
        "the sanitizing process attempted a forbidden operation",
    ),
    s(
        "ooxml.vba_macro",
        "マクロ（VBA）を含んでいます",
        "contains macros (VBA)",
    ),
    s(
        "ole2.vba_macro",
        "マクロ（VBA）を含んでいます",
        "contains macros (VBA)",
    ),
    s(
        "ooxml.macro_enabled_type",
        "マクロ有効形式（アドイン・スライドショー・テンプレートを含む）です",
        "a macro-enabled type (including add-ins, slideshows and templates)",
    ),
    s(
        "ooxml.dde",
        "DDE（外部プログラムの呼び出し）を含んでいます",
        "contains DDE (calls to other programs)",
    ),
    s(
        "pdf.javascript",
        "PDF に JavaScript が含まれています",
        "the PDF contains JavaScript",
    ),
    s(
        "pdf.",
        "PDF に危険な要素（動作・リンク・埋め込みファイルなど）が含まれています",
        "the PDF contains active elements (actions, links, embedded files)",
    ),
    s(
        "ooxml.",
        "Office 文書に危険な要素（マクロ・外部リンク・埋め込みオブジェクトなど）が含まれています",
        "the Office document contains active elements (macros, external links, embedded objects)",
    ),
    s(
        "odf.",
        "文書に危険な要素（マクロ・外部リンク・埋め込みオブジェクトなど）が含まれています",
        "the document contains active elements (macros, external links, embedded objects)",
    ),
    s(
        "ole2.",
        "Office 文書に危険な要素が含まれています",
        "the Office document contains active elements",
    ),
    s(
        "html.",
        "HTML にスクリプトや外部参照などが含まれています",
        "the HTML contains scripts or remote content",
    ),
    s(
        "svg.",
        "SVG 画像にスクリプトや外部参照が含まれています",
        "the SVG image contains scripts or external references",
    ),
    s(
        "archive.",
        "圧縮ファイルに危険な要素（パスの細工・特殊ファイルなど）が含まれています",
        "the archive contains dangerous entries (crafted paths, special files)",
    ),
    s(
        "mail.",
        "メールの形式に問題があります",
        "the message is malformed",
    ),
    s("", "安全な形にできませんでした", "could not be made safe"),
];

fn sentence(id: &str) -> &'static Sentence {
    SENTENCES
        .iter()
        .find(|s| s.id == id)
        .or_else(|| {
            SENTENCES
                .iter()
                .find(|s| s.id.ends_with('.') && id.starts_with(s.id))
        })
        .or_else(|| SENTENCES.last())
        .unwrap_or(&FALLBACK)
}

static FALLBACK: Sentence = s("", "安全な形にできませんでした", "could not be made safe");

/// The threat id that best explains a verdict: the first with a sentence of its own, else
/// the first with a family sentence, else the first.
pub fn best_threat<'a>(ids: &[&'a str]) -> Option<&'a str> {
    let exact = |id: &str| SENTENCES.iter().any(|s| s.id == id);
    let family = |id: &str| {
        SENTENCES
            .iter()
            .any(|s| s.id.ends_with('.') && id.starts_with(s.id))
    };
    ids.iter()
        .find(|id| exact(id))
        .or_else(|| ids.iter().find(|id| family(id)))
        .or_else(|| ids.first())
        .copied()
}

/// A threat id as a Japanese sentence (no final 。).
pub fn threat_ja(id: &str) -> &'static str {
    sentence(id).ja
}

/// A threat id as an English phrase.
pub fn threat_en(id: &str) -> &'static str {
    sentence(id).en
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_then_family_then_fallback() {
        assert!(threat_ja("archive.encrypted").contains("パスワード付き"));
        assert!(threat_ja("pdf.launch").contains("PDF"));
        assert_eq!(threat_en("no.such_id"), "could not be made safe");
        assert_eq!(threat_en("limit.pages"), threat_en("limit.parts"));
    }

    #[test]
    fn best_threat_prefers_a_sentence() {
        assert_eq!(
            best_threat(&["filename.path", "filename.executable", "executable.binary"]),
            Some("filename.executable")
        );
        assert_eq!(best_threat(&["x.y", "pdf.launch"]), Some("pdf.launch"));
        assert_eq!(best_threat(&["x.y"]), Some("x.y"));
        assert_eq!(best_threat(&[]), None);
    }

    #[test]
    fn flag_wins_over_locale() {
        assert_eq!(Lang::detect(Some(Lang::En)), Lang::En);
        assert_eq!(Lang::detect(Some(Lang::Ja)), Lang::Ja);
    }
}
