//! iCalendar (`.ics`, `text/calendar`) and vCard (`.vcf`): converted to a short text summary.
//!
//! Calendar invitations carry attachments (`ATTACH`, inline base64 or a URL), alarms that run
//! actions (`VALARM` with `ACTION:PROCEDURE`/`EMAIL`), and links; a client that imports them acts
//! on them. The recipient only needs to read what the event or contact says, so the file becomes
//! text: for events/tasks SUMMARY, DTSTART/DTEND/DUE, LOCATION, ORGANIZER, ATTENDEE and
//! DESCRIPTION; for vCards FN, ORG, TITLE, TEL and EMAIL. `ATTACH`, `URL` (and vCard `PHOTO`,
//! `LOGO`, `SOUND`, `KEY`) and whole `VALARM` components are dropped and reported. Links left in
//! the text (a DESCRIPTION often holds a meeting URL) are rewritten by the link policy.
//!
//! Content lines are unfolded (RFC 5545 §3.1) and text values unescaped (`\n`, `\,`, `\;`).

use crate::error::SanitizeError;
use crate::links::rewrite_links_in_text;
use crate::pipeline::{Context, FormatSanitizer, Rebuilt};
use crate::report::{Action, Kind};
use crate::threats;

/// Most content lines read; the rest is ignored (and said so).
const MAX_LINES: usize = 100_000;

/// One content line: name (upper case), parameters, raw value.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Line {
    name: String,
    params: Vec<(String, String)>,
    value: String,
}

fn parse_line(line: &str) -> Option<Line> {
    // The value starts at the first ':' that is not inside a quoted parameter value.
    let mut in_quotes = false;
    let mut colon = None;
    for (i, c) in line.char_indices() {
        match c {
            '"' => in_quotes = !in_quotes,
            ':' if !in_quotes => {
                colon = Some(i);
                break;
            }
            _ => {}
        }
    }
    let colon = colon?;
    let (head, value) = (line.get(..colon)?, line.get(colon + 1..)?);
    let mut parts = head.split(';');
    let name = parts.next()?.trim().to_ascii_uppercase();
    // A property name may carry a vCard group prefix (`item1.EMAIL`).
    let name = name.rsplit('.').next().unwrap_or_default().to_owned();
    let params = parts
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            Some((
                k.trim().to_ascii_uppercase(),
                v.trim_matches('"').to_owned(),
            ))
        })
        .collect();
    Some(Line {
        name,
        params,
        value: value.to_owned(),
    })
}

fn unescape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n' | 'N') => out.push('\n'),
                Some(other) => out.push(other),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `20261201T100000Z` → `2026-12-01 10:00 UTC`; `20261201` → `2026-12-01`; anything else as is.
fn format_datetime(v: &str, tzid: Option<&str>) -> String {
    let b = v.as_bytes();
    let digits = |r: std::ops::Range<usize>| -> Option<&str> {
        let s = v.get(r)?;
        s.bytes().all(|c| c.is_ascii_digit()).then_some(s)
    };
    let date = match (digits(0..4), digits(4..6), digits(6..8)) {
        (Some(y), Some(m), Some(d)) => format!("{y}-{m}-{d}"),
        _ => return v.to_owned(),
    };
    let mut out = date;
    if b.get(8) == Some(&b'T')
        && let (Some(h), Some(mi)) = (digits(9..11), digits(11..13))
    {
        out.push_str(&format!(" {h}:{mi}"));
        if b.get(15) == Some(&b'Z') {
            out.push_str(" UTC");
        }
    }
    if let Some(tz) = tzid {
        out.push_str(&format!(" ({tz})"));
    }
    out
}

fn param<'a>(line: &'a Line, key: &str) -> Option<&'a str> {
    line.params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// A person: `CN <address>` from ORGANIZER/ATTENDEE.
fn format_person(line: &Line) -> String {
    let addr = line
        .value
        .strip_prefix("mailto:")
        .or_else(|| line.value.strip_prefix("MAILTO:"))
        .unwrap_or(&line.value);
    match param(line, "CN") {
        Some(cn) if !cn.is_empty() => format!("{cn} <{addr}>"),
        _ => addr.to_owned(),
    }
}

/// The text summary of a calendar or vCard and what was dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalendarText {
    /// The summary, `\n` line ends.
    pub text: String,
    /// Threat ids of what was dropped.
    pub threats: Vec<&'static str>,
}

/// Summarises an iCalendar or vCard text.
pub fn calendar_to_text(input: &str, cx: &mut Context<'_>) -> Result<CalendarText, SanitizeError> {
    let mut found: Vec<&'static str> = Vec::new();
    let mut note = |t: &'static str| {
        if !found.contains(&t) {
            found.push(t);
        }
    };
    // Unfold: a line starting with space or tab continues the previous one.
    let mut lines: Vec<String> = Vec::new();
    for raw in input.split('\n') {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if let Some(cont) = raw.strip_prefix([' ', '\t'])
            && let Some(last) = lines.last_mut()
        {
            last.push_str(cont);
            continue;
        }
        if lines.len() >= MAX_LINES {
            break;
        }
        lines.push(raw.to_owned());
    }

    let mut out = String::new();
    let mut stack: Vec<String> = Vec::new();
    for (i, raw) in lines.iter().enumerate() {
        if i.is_multiple_of(4096) {
            cx.budget().check_deadline()?;
        }
        let Some(line) = parse_line(raw) else {
            continue;
        };
        let value = line.value.trim();
        match line.name.as_str() {
            "BEGIN" => {
                let comp = value.to_ascii_uppercase();
                if comp == "VALARM" {
                    note(threats::CALENDAR_ALARM);
                }
                let heading = match comp.as_str() {
                    "VEVENT" => Some("予定 / Event"),
                    "VTODO" => Some("タスク / Task"),
                    "VJOURNAL" => Some("メモ / Journal"),
                    "VCARD" => Some("連絡先 / Contact"),
                    _ => None,
                };
                if let Some(h) = heading
                    && !stack.iter().any(|c| c == "VALARM")
                {
                    if !out.is_empty() {
                        out.push('\n');
                    }
                    out.push_str(&format!("【{h}】\n"));
                }
                if stack.len() < 64 {
                    stack.push(comp);
                }
                continue;
            }
            "END" => {
                stack.pop();
                continue;
            }
            _ => {}
        }
        // Nothing inside an alarm or a time zone definition is shown.
        if stack.iter().any(|c| c == "VALARM" || c == "VTIMEZONE") {
            continue;
        }
        let label = match line.name.as_str() {
            "ATTACH" | "PHOTO" | "LOGO" | "SOUND" | "KEY" => {
                note(threats::CALENDAR_ATTACHMENT);
                continue;
            }
            "URL" | "SOURCE" | "CONFERENCE" => {
                note(threats::CALENDAR_URL);
                continue;
            }
            "SUMMARY" => "件名 / Summary",
            "DTSTART" => "開始 / Start",
            "DTEND" => "終了 / End",
            "DUE" => "期限 / Due",
            "LOCATION" => "場所 / Location",
            "ORGANIZER" => "主催者 / Organizer",
            "ATTENDEE" => "出席者 / Attendee",
            "DESCRIPTION" => "内容 / Description",
            "FN" => "氏名 / Name",
            "ORG" => "所属 / Organization",
            "TITLE" => "役職 / Title",
            "TEL" => "電話 / Phone",
            "EMAIL" => "メール / Email",
            _ => continue,
        };
        let shown = match line.name.as_str() {
            "DTSTART" | "DTEND" | "DUE" => format_datetime(value, param(&line, "TZID")),
            "ORGANIZER" | "ATTENDEE" => format_person(&line),
            "ORG" => unescape(value).replace(';', " "),
            _ => unescape(value),
        };
        if shown.contains('\n') {
            out.push_str(&format!("{label}:\n"));
            for l in shown.lines() {
                out.push_str(&format!("  {l}\n"));
            }
        } else {
            out.push_str(&format!("{label}: {shown}\n"));
        }
    }
    let (text, links) = rewrite_links_in_text(&out, cx.policy().links.mode);
    if links > 0 {
        note(threats::LINK_REWRITTEN);
    }
    Ok(CalendarText {
        text,
        threats: found,
    })
}

/// Calendars and vCards become a text summary.
#[derive(Debug, Clone, Copy)]
pub struct CalendarSanitizer;

impl FormatSanitizer for CalendarSanitizer {
    fn name(&self) -> &'static str {
        "calendar"
    }

    fn sanitize(&self, input: &[u8], cx: &mut Context<'_>) -> Result<Rebuilt, SanitizeError> {
        let decoded = super::text::decode(input);
        cx.budget().charge_decoded(decoded.text.len() as u64)?;
        let summary = calendar_to_text(&decoded.text, cx)?;
        let cleaned = super::text::clean(&summary.text);
        let mut found = summary.threats;
        if cleaned.bidi {
            found.push(threats::TEXT_BIDI_CONTROL);
        }
        let mut reason = "calendar/contact converted to a text summary".to_owned();
        if found.contains(&threats::CALENDAR_ATTACHMENT) {
            reason.push_str("; attachments removed");
        }
        if found.contains(&threats::CALENDAR_ALARM) {
            reason.push_str("; alarms removed");
        }
        Ok(Rebuilt::new(
            cleaned.text.into_bytes(),
            Action::ConvertedToText,
            Kind::Text,
            "text/plain; charset=utf-8",
        )
        .with_extension("txt")
        .with_threats(found)
        .with_reason(reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;
    use crate::sanitize_file;

    const ICS: &str = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r\n\
SUMMARY:予算説明会\\, 第2回\r\nDTSTART;TZID=Asia/Tokyo:20261201T100000\r\n\
DTEND:20261201T020000Z\r\nLOCATION:本庁舎 3階 会議室\r\n\
ORGANIZER;CN=\"Sato: Finance\":mailto:sato@city.example.lg.jp\r\n\
DESCRIPTION:資料は https://evil.example/doc を参照\\n持ち物: 筆記用具\r\n\
ATTACH;ENCODING=BASE64;VALUE=BINARY;FMTTYPE=application/x-msdownload:TVqQAAMAAAAEAAAA\r\n\
URL:https://evil.example/join\r\n\
BEGIN:VALARM\r\nACTION:PROCEDURE\r\nATTACH:file:///C:/Windows/System32/calc.exe\r\n\
DESCRIPTION:alarm text\r\nEND:VALARM\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";

    #[test]
    fn ics_becomes_a_summary_without_attach_alarm_or_live_links() {
        let out = sanitize_file(ICS.as_bytes(), Some("invite.ics"), &Policy::default());
        let t = out.report.threats();
        for id in [
            threats::CALENDAR_ATTACHMENT,
            threats::CALENDAR_ALARM,
            threats::CALENDAR_URL,
        ] {
            assert!(t.contains(&id), "{id}");
        }
        let file = out.output.unwrap();
        assert_eq!(file.name, "invite.txt");
        let text = String::from_utf8(file.bytes.into_vec()).unwrap();
        assert!(
            text.contains("件名 / Summary: 予算説明会, 第2回\r\n"),
            "{text}"
        );
        assert!(text.contains("開始 / Start: 2026-12-01 10:00 (Asia/Tokyo)"));
        assert!(text.contains("終了 / End: 2026-12-01 02:00 UTC"));
        assert!(text.contains("場所 / Location: 本庁舎 3階 会議室"));
        assert!(text.contains("Sato: Finance <sato@city.example.lg.jp>"));
        assert!(text.contains("hxxps://evil[.]example/doc"));
        assert!(text.contains("  持ち物: 筆記用具"));
        for gone in [
            "TVqQ",
            "calc.exe",
            "alarm text",
            "https://",
            "evil.example/join",
        ] {
            assert!(!text.contains(gone), "{gone} in {text}");
        }
    }

    #[test]
    fn folded_vcard() {
        let vcf = "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:髙橋 一\r\n  郎\r\nORG:○○市;総務課\r\n\
TEL;TYPE=WORK:03-1234-5678\r\nitem1.EMAIL:taka@example.jp\r\nPHOTO;ENCODING=b:AAAA\r\nEND:VCARD\r\n";
        let out = sanitize_file(vcf.as_bytes(), Some("card.vcf"), &Policy::default());
        assert!(out.report.threats().contains(&threats::CALENDAR_ATTACHMENT));
        let text = String::from_utf8(out.output.unwrap().bytes.into_vec()).unwrap();
        assert!(text.contains("氏名 / Name: 髙橋 一 郎"), "{text}");
        assert!(text.contains("所属 / Organization: ○○市 総務課"));
        assert!(text.contains("電話 / Phone: 03-1234-5678"));
        assert!(text.contains("メール / Email: taka@example.jp"));
        assert!(!text.contains("AAAA"));
    }
}
