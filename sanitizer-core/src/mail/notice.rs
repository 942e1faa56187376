//! The recipient's notice (Japanese first, then English) and the `X-Mugai-Sanitized` tokens.

use crate::policy::NoticeTemplates;
use crate::threats;

/// Most entries listed one by one; the rest are summarised as "N more".
const MAX_LISTED: usize = 30;

/// The delimiter line above and below the notice.
pub(crate) const RULE: &str = "━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━";
/// The notice's title line.
pub(crate) const TITLE: &str = "【Mugai 無害化通知 / Sanitization notice】";

/// One token of the `X-Mugai-Sanitized` header (m-FILTER's convention, extended).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Token {
    /// The HTML body was converted to text (or dropped for its text alternative).
    ChgText,
    /// A part (attachment, encrypted or over-limit content) was removed.
    DelAttach,
    /// An attachment was converted, rasterized or rebuilt with content removed.
    ChgAttach,
    /// Links were defanged or removed.
    RepLink,
    /// A signature was removed.
    DelSign,
    /// A forged `X-Mugai-*` header (or a duplicate From) was dropped.
    DelHeader,
    /// Header or body text had invisible/bidi controls removed.
    ChgHeader,
}

impl Token {
    /// The header token.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Token::ChgText => "CHG_TEXT",
            Token::DelAttach => "DEL_ATTACH",
            Token::ChgAttach => "CHG_ATTACH",
            Token::RepLink => "REP_LINK",
            Token::DelSign => "DEL_SIGN",
            Token::DelHeader => "DEL_HEADER",
            Token::ChgHeader => "CHG_HEADER",
        }
    }
}

/// One line of the notice.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// What it is about (`本文`, a file name).
    pub subject_ja: String,
    /// The same in English.
    pub subject_en: String,
    /// What happened, Japanese.
    pub ja: String,
    /// What happened, English.
    pub en: String,
    /// Whether something was removed (the release text is added then).
    pub removed: bool,
}

/// Everything the notice and the header summarise.
#[derive(Debug, Default)]
pub(crate) struct Notice {
    /// Entries in the order they happened.
    pub entries: Vec<Entry>,
    /// Entries not listed (over [`MAX_LISTED`]) still count here.
    pub more: usize,
    /// Tokens, deduplicated.
    pub tokens: Vec<Token>,
    /// An entry beyond the listed ones was a removal.
    pub any_removed_hidden: bool,
}

impl Notice {
    /// Adds an entry (bounded: beyond [`MAX_LISTED`] only counted).
    pub(crate) fn add(&mut self, e: Entry) {
        if self.entries.len() < MAX_LISTED {
            self.entries.push(e);
        } else {
            self.more += 1;
            self.any_removed_hidden |= e.removed;
        }
    }

    /// Adds a token once.
    pub(crate) fn token(&mut self, t: Token) {
        if !self.tokens.contains(&t) {
            self.tokens.push(t);
        }
    }

    /// Whether there is anything to tell.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.more == 0
    }

    /// `X-Mugai-Sanitized` value, or `None` when nothing changed.
    pub(crate) fn header_value(&self) -> Option<String> {
        if self.tokens.is_empty() {
            return None;
        }
        let mut t = self.tokens.clone();
        t.sort();
        Some(t.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(" "))
    }

    /// The notice block (lines joined by `\n`, ending with a blank line), or empty.
    pub(crate) fn render(&self, templates: &NoticeTemplates, report_id: &str) -> String {
        if self.is_empty() {
            return String::new();
        }
        let mut ja_items = String::new();
        let mut en_items = String::new();
        for e in &self.entries {
            ja_items.push_str(&format!("・{}: {}\n", e.subject_ja, e.ja));
            en_items.push_str(&format!("- {}: {}\n", e.subject_en, e.en));
        }
        if self.more > 0 {
            ja_items.push_str(&format!("・ほか {} 件\n", self.more));
            en_items.push_str(&format!("- and {} more\n", self.more));
        }
        // Templates come from the policy file: no CR, no other controls in the body.
        let fill = |t: &str, items: &str| {
            let filled = t
                .replace("{items}", items.trim_end())
                .replace("{report_id}", report_id);
            filled
                .chars()
                .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
                .collect::<String>()
        };
        let mut s = String::new();
        s.push_str(RULE);
        s.push('\n');
        s.push_str(TITLE);
        s.push('\n');
        s.push_str(fill(&templates.ja, &ja_items).trim_end());
        s.push_str("\n\n");
        s.push_str(fill(&templates.en, &en_items).trim_end());
        s.push('\n');
        // An empty release template says nothing (no quarantine keeps the original).
        if (self.entries.iter().any(|e| e.removed) || self.any_removed_hidden)
            && !templates.release.trim().is_empty()
        {
            s.push('\n');
            s.push_str(fill(&templates.release, "").trim_end());
            s.push('\n');
        }
        s.push_str(&format!("Report-ID: {report_id}\n"));
        s.push_str(RULE);
        s.push_str("\n\n");
        s
    }
}

/// Short reasons (Japanese, English) for the threats of a removed part.
pub(crate) fn removal_reason(threat_ids: &[&str]) -> (&'static str, &'static str) {
    let has = |p: &str| threat_ids.iter().any(|t| t.starts_with(p));
    let is = |id: &str| threat_ids.contains(&id);
    if is(threats::EXECUTABLE)
        || is(threats::SCRIPT)
        || is(threats::FILENAME_EXECUTABLE)
        || is(threats::MIME_EXECUTABLE)
    {
        (
            "実行ファイル・スクリプトのため削除",
            "removed: executable or script",
        )
    } else if is(threats::MAIL_ENCRYPTED)
        || is(threats::ENCRYPTED)
        || is(threats::ARCHIVE_ENCRYPTED)
        || is(threats::PDF_ENCRYPTED)
        || is(threats::OFFICE_ENCRYPTED)
    {
        (
            "暗号化されていて検査できないため削除",
            "removed: encrypted, cannot be inspected",
        )
    } else if is(threats::MAIL_SIGNATURE) {
        (
            "電子署名を削除（本文の書き換えで無効になるため）",
            "signature removed (a rewritten message cannot keep it valid)",
        )
    } else if is(threats::LIMIT_DEPTH) {
        ("入れ子が深すぎるため削除", "removed: nested too deep")
    } else if is(threats::LIMIT_PARTS) {
        ("部品の数が上限を超えたため削除", "removed: too many parts")
    } else if is(threats::LIMIT_DEADLINE) {
        ("処理時間の上限を超えたため削除", "removed: took too long")
    } else if has("limit.") {
        (
            "サイズ等の上限を超えたため削除",
            "removed: over a size limit",
        )
    } else if is(threats::UNSUPPORTED_FORMAT) {
        (
            "対応していない形式のため削除",
            "removed: unsupported format",
        )
    } else if is(threats::PARSE_FAILED) || is(threats::MAIL_UNPARSEABLE) {
        ("解析できないため削除", "removed: could not be parsed")
    } else if is(threats::INTERNAL_ERROR) {
        (
            "処理中にエラーが発生したため削除",
            "removed: processing failed",
        )
    } else {
        ("危険な内容を含むため削除", "removed: dangerous content")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(removed: bool) -> Entry {
        Entry {
            subject_ja: "a.exe".into(),
            subject_en: "a.exe".into(),
            ja: "削除".into(),
            en: "removed".into(),
            removed,
        }
    }

    #[test]
    fn notice_is_bounded_and_bilingual() {
        let mut n = Notice::default();
        for _ in 0..2000 {
            n.add(entry(true));
        }
        let text = n.render(&NoticeTemplates::default(), "RID");
        assert!(text.contains("ほか 1970 件"));
        assert!(text.contains("and 1970 more"));
        assert!(text.find("無害化").unwrap() < text.find("sanitized").unwrap());
        assert!(text.contains("RID"));
        assert!(text.lines().count() < 100);
    }

    #[test]
    fn tokens_are_sorted_and_unique() {
        let mut n = Notice::default();
        n.token(Token::RepLink);
        n.token(Token::ChgText);
        n.token(Token::RepLink);
        assert_eq!(n.header_value().as_deref(), Some("CHG_TEXT REP_LINK"));
        assert_eq!(Notice::default().header_value(), None);
    }
}
