//! Unit tests of the mail module, asserting on the re-parsed output (mail-parser) and on the
//! wire form (CRLF, line lengths, 7-bit).

use encoding_rs::{EUC_JP, Encoding, ISO_2022_JP, SHIFT_JIS};
use mail_parser::{MessageParser, MimeHeaders};

use super::build::base64_string;
use crate::policy::{LinkMode, Policy};
use crate::report::{Action, Report, Verdict};
use crate::{sanitize_mail, threats};

fn enc(e: &'static Encoding, s: &str) -> Vec<u8> {
    let (b, _, errors) = e.encode(s);
    assert!(!errors, "{s} not encodable in {}", e.name());
    b.into_owned()
}

fn b64(b: &[u8]) -> String {
    base64_string(b)
}

/// The output must be 7-bit, CRLF only, lines ≤ 998 octets.
fn assert_wire_clean(out: &[u8]) {
    assert!(out.is_ascii(), "output is not 7-bit");
    let mut prev = 0u8;
    let mut col = 0usize;
    for (i, &b) in out.iter().enumerate() {
        match b {
            b'\n' => {
                assert_eq!(prev, b'\r', "bare LF at {i}");
                col = 0;
            }
            b'\r' => {
                assert_eq!(out.get(i + 1), Some(&b'\n'), "bare CR at {i}");
            }
            _ => {
                col += 1;
                assert!(col <= 998, "line over 998 octets at {i}");
            }
        }
        prev = b;
    }
    assert!(out.ends_with(b"\r\n"));
}

struct Out {
    bytes: Vec<u8>,
    report: Report,
}

impl Out {
    fn text(&self) -> String {
        let m = MessageParser::default().parse(&self.bytes).unwrap();
        m.body_text(0).unwrap_or_default().replace("\r\n", "\n")
    }
    fn subject(&self) -> String {
        let m = MessageParser::default().parse(&self.bytes).unwrap();
        m.subject().unwrap_or_default().to_owned()
    }
    fn header(&self, name: &str) -> Option<String> {
        let m = MessageParser::default().parse(&self.bytes).unwrap();
        m.header_raw(name).map(|s| s.trim().to_owned())
    }
    fn attachments(&self) -> Vec<(String, String, Vec<u8>)> {
        let m = MessageParser::default().parse(&self.bytes).unwrap();
        m.attachments()
            .map(|a| {
                let ct = a
                    .content_type()
                    .map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or_default()))
                    .unwrap_or_default();
                (
                    a.attachment_name().unwrap_or_default().to_owned(),
                    ct,
                    a.contents().to_vec(),
                )
            })
            .collect()
    }
    fn threats(&self) -> Vec<&str> {
        self.report.threats()
    }
    fn raw(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

fn run_with(raw: &[u8], policy: &Policy) -> Out {
    let o = sanitize_mail(raw, policy);
    let bytes = o.message.into_vec();
    assert_wire_clean(&bytes);
    Out {
        bytes,
        report: o.report,
    }
}

fn run(raw: &[u8]) -> Out {
    run_with(raw, &Policy::default())
}

const PLAIN: &str = "From: Taro <taro@example.jp>\r\nTo: hanako@city.example.lg.jp\r\nSubject: hello\r\nDate: Tue, 1 Jul 2025 10:00:00 +0900\r\nMessage-ID: <abc@example.jp>\r\nX-Spam-Score: 1\r\n\r\nHello,\r\nsee you tomorrow.\r\n";

#[test]
fn plain_text_mail_stays_clean() {
    let o = run(PLAIN.as_bytes());
    assert_eq!(o.report.verdict, Verdict::Clean, "{:?}", o.report.items);
    assert_eq!(o.text().trim_end(), "Hello,\nsee you tomorrow.");
    assert!(
        !o.text().contains("Mugai"),
        "no notice when nothing changed"
    );
    assert!(o.header("X-Mugai-Sanitized").is_none());
    assert_eq!(o.header("X-Mugai-Report-Id").unwrap(), o.report.id);
    assert!(o.header("X-Spam-Score").is_none(), "not allow-listed");
    assert_eq!(o.header("Message-ID").unwrap(), "<abc@example.jp>");
    assert_eq!(o.header("MIME-Version").unwrap(), "1.0");
    assert_eq!(o.subject(), "hello");
    let m = MessageParser::default().parse(&o.bytes).unwrap();
    assert_eq!(
        m.from().unwrap().first().unwrap().address().unwrap(),
        "taro@example.jp"
    );
    assert_eq!(m.from().unwrap().first().unwrap().name().unwrap(), "Taro");
    assert!(m.date().is_some());
    let body = o.report.items.iter().find(|i| i.path == "body").unwrap();
    assert_eq!(body.action, Action::Kept);
}

#[test]
fn plain_text_with_bare_lf_works_too() {
    let o = run(PLAIN.replace("\r\n", "\n").as_bytes());
    assert_eq!(o.report.verdict, Verdict::Clean);
    assert_eq!(o.text().trim_end(), "Hello,\nsee you tomorrow.");
}

const HTML_ONLY: &str = "From: a@example.jp\r\nTo: b@example.jp\r\nSubject: html\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>Dear customer,</p><script>alert(1)</script><a href=\"https://evil.example.com/login\">log in</a><img src=\"http://track.example.com/p.gif\"></body></html>\r\n";

#[test]
fn html_body_becomes_text_with_notice() {
    let o = run(HTML_ONLY.as_bytes());
    assert_eq!(o.report.verdict, Verdict::Sanitized);
    let text = o.text();
    assert!(text.contains("Dear customer"), "{text}");
    assert!(!text.contains("<script"), "{text}");
    assert!(!text.contains("alert(1)") || !text.contains("<"), "{text}");
    assert!(!o.raw().to_ascii_lowercase().contains("text/html"));
    // Notice on top, Japanese first.
    let ja = text.find("無害化").unwrap();
    let en = text.find("sanitized").unwrap();
    let body = text.find("Dear customer").unwrap();
    assert!(ja < en && en < body, "{text}");
    assert!(text.contains("HTMLをテキストに変換"), "{text}");
    assert!(o.threats().contains(&threats::HTML_BODY));
    assert!(o.threats().contains(&threats::HTML_SCRIPT));
    let tokens = o.header("X-Mugai-Sanitized").unwrap();
    assert!(tokens.contains("CHG_TEXT"), "{tokens}");
    let item = o.report.items.iter().find(|i| i.path == "body").unwrap();
    assert_eq!(item.action, Action::ConvertedToText);
}

fn alternative(plain: &str) -> String {
    format!(
        "From: a@example.jp\r\nSubject: alt\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{plain}\r\n--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>HTML version <b>only</b> text</p>\r\n--b1--\r\n"
    )
}

#[test]
fn alternative_prefers_text_plain() {
    let o = run(alternative("Plain version of the message, long enough to be real.").as_bytes());
    let text = o.text();
    assert!(text.contains("Plain version"), "{text}");
    assert!(!text.contains("only text"), "{text}");
    assert!(text.contains("テキスト版を配信"), "{text}");
    assert!(o.header("X-Mugai-Sanitized").unwrap().contains("CHG_TEXT"));
}

#[test]
fn other_renderings_in_an_alternative_are_not_attachments() {
    let raw = "From: a@example.jp\r\nSubject: alt3\r\nContent-Type: multipart/alternative; boundary=A\r\n\r\n--A\r\nContent-Type: text/plain\r\n\r\nmeeting at ten\r\n--A\r\nContent-Type: text/enriched\r\n\r\n<bold>meeting</bold>\r\n--A\r\nContent-Type: text/html\r\n\r\n<b>meeting</b>\r\n--A\r\nContent-Type: text/calendar; method=REQUEST\r\n\r\nBEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n--A--\r\n";
    let o = run(raw.as_bytes());
    assert!(o.text().contains("meeting at ten"));
    let paths: Vec<&str> = o.report.items.iter().map(|i| i.path.as_str()).collect();
    assert_eq!(
        paths
            .iter()
            .filter(|p| p.starts_with("attachment["))
            .count(),
        1,
        "{paths:?}"
    );
    assert!(paths.contains(&"attachment[1]/invite.ics"), "{paths:?}");
}

#[test]
fn stub_text_alternative_uses_html() {
    for stub in [
        "",
        "This is an HTML message.",
        "HTMLメールです",
        "Please view in HTML",
    ] {
        let o = run(alternative(stub).as_bytes());
        let text = o.text();
        assert!(text.contains("HTML version"), "{stub:?}: {text}");
        assert!(text.contains("only"), "{text}");
        assert!(!text.contains("<b>"), "{text}");
    }
}

#[test]
fn iso_2022_jp_html_mail_with_cp50220_extensions() {
    // (HTML whitespace, U+3000 included, is html_to_text's business, so none here.)
    let body_text = "①㈱髙橋様お見積書を送付いたします。";
    let html = format!("<html><body><p>{body_text}</p></body></html>");
    let html_bytes = enc(ISO_2022_JP, &html);
    let subject = format!(
        "=?ISO-2022-JP?B?{}?=",
        b64(&enc(ISO_2022_JP, "①御見積の件"))
    );
    let from = format!("=?ISO-2022-JP?B?{}?=", b64(&enc(ISO_2022_JP, "髙橋")));
    let mut raw = format!(
        "From: {from} <takahashi@example.jp>\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=\"CP50220\"\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
    )
    .into_bytes();
    raw.extend_from_slice(&html_bytes);
    raw.extend_from_slice(b"\r\n");
    let o = run(&raw);
    assert!(o.text().contains(body_text), "{}", o.text());
    assert_eq!(o.subject(), "①御見積の件");
    let m = MessageParser::default().parse(&o.bytes).unwrap();
    assert_eq!(m.from().unwrap().first().unwrap().name().unwrap(), "髙橋");
    // Same with the standard label.
    let raw2 = String::from_utf8_lossy(&raw).replace("CP50220", "ISO-2022-JP");
    assert!(run(raw2.as_bytes()).text().contains(body_text));
}

fn labelled(label: &str, cte: &str, body: &[u8]) -> Vec<u8> {
    let mut raw = format!(
        "From: a@example.jp\r\nSubject: charset\r\nContent-Type: text/plain; charset={label}\r\nContent-Transfer-Encoding: {cte}\r\n\r\n"
    )
    .into_bytes();
    if cte == "base64" {
        raw.extend_from_slice(b64(body).as_bytes());
    } else {
        raw.extend_from_slice(body);
    }
    raw.extend_from_slice(b"\r\n");
    raw
}

#[test]
fn japanese_and_other_charsets_decode_without_mojibake() {
    let ja = "①㈱髙橋様 お世話になっております。";
    let cases: Vec<(&str, &str, Vec<u8>, &str)> = vec![
        ("Shift_JIS", "8bit", enc(SHIFT_JIS, ja), ja),
        ("cp932", "base64", enc(SHIFT_JIS, ja), ja),
        ("windows-31j", "8bit", enc(SHIFT_JIS, ja), ja),
        ("iso-2022-jp", "7bit", enc(ISO_2022_JP, ja), ja),
        (
            "EUC-JP",
            "base64",
            enc(EUC_JP, "髙橋様 お世話になっております。"),
            "髙橋様 お世話になっております。",
        ),
        (
            "utf-7",
            "7bit",
            b"+ZYeB9FH6ckh5Pg-, 1980.".to_vec(),
            "文致出版社, 1980.",
        ),
        ("utf-8", "base64", ja.as_bytes().to_vec(), ja),
        (
            "iso-8859-1",
            "8bit",
            b"caf\xe9 cr\xe8me".to_vec(),
            "café crème",
        ),
        ("iso-8859-2", "8bit", b"\xb1\xe6".to_vec(), "ąć"),
        (
            "windows-1252",
            "8bit",
            b"\x93quoted\x94 \x80".to_vec(),
            "\u{201c}quoted\u{201d} €",
        ),
        ("x-unknown-charset", "8bit", enc(SHIFT_JIS, ja), ja),
    ];
    for (label, cte, bytes, want) in cases {
        let o = run(&labelled(label, cte, &bytes));
        let text = o.text();
        assert!(text.contains(want), "{label}: {text:?}");
        assert!(!text.contains('\u{FFFD}'), "{label}: {text:?}");
    }
    // Unlabelled Shift_JIS is guessed.
    let mut raw = b"From: a@example.jp\r\nSubject: x\r\n\r\n".to_vec();
    raw.extend_from_slice(&enc(SHIFT_JIS, ja));
    assert!(run(&raw).text().contains(ja));
}

#[test]
fn raw_legacy_charset_headers_are_decoded() {
    let mut raw = b"From: ".to_vec();
    raw.extend_from_slice(&enc(ISO_2022_JP, "髙橋"));
    raw.extend_from_slice(b" <t@example.jp>\r\nTo: ");
    raw.extend_from_slice(&enc(SHIFT_JIS, "①総務課"));
    raw.extend_from_slice(b" <soumu@city.example.lg.jp>\r\nSubject: ");
    raw.extend_from_slice(&enc(ISO_2022_JP, "①至急"));
    raw.extend_from_slice(b"\r\n\r\nbody\r\n");
    let o = run(&raw);
    assert_eq!(o.subject(), "①至急");
    let m = MessageParser::default().parse(&o.bytes).unwrap();
    assert_eq!(m.from().unwrap().first().unwrap().name().unwrap(), "髙橋");
    assert_eq!(m.to().unwrap().first().unwrap().name().unwrap(), "①総務課");
    assert_eq!(
        m.to().unwrap().first().unwrap().address().unwrap(),
        "soumu@city.example.lg.jp"
    );
}

#[test]
fn undecodable_bytes_are_replaced_never_raw() {
    let mut bytes = "日本語の本文 ".as_bytes().to_vec();
    bytes.extend_from_slice(b"\xff\xfe\x80 end");
    let o = run(&labelled("utf-8", "8bit", &bytes));
    let text = o.text();
    assert!(
        text.contains("日本語の本文 ") && text.contains(" end"),
        "{text}"
    );
    assert!(text.contains('\u{FFFD}'), "{text}");
    assert!(o.threats().contains(&threats::MAIL_CHARSET));
}

#[test]
fn rfc2047_headers_in_shift_jis_and_rfc2231_filenames() {
    let subject = format!("=?Shift_JIS?B?{}?=", b64(&enc(SHIFT_JIS, "㈱髙橋の請求書")));
    let fname = "請求書①.html";
    let pct: String = fname.bytes().map(|b| format!("%{b:02X}")).collect();
    let (p1, p2) = pct.split_at(pct.len() / 2 / 3 * 3);
    let raw = format!(
        "From: a@example.jp\r\nSubject: {subject}\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nsee attached\r\n--zz\r\nContent-Type: text/html\r\nContent-Disposition: attachment;\r\n filename*0*=utf-8''{p1};\r\n filename*1*={p2}\r\n\r\n<p>請求額 <b>1000円</b></p>\r\n--zz--\r\n"
    );
    let o = run(raw.as_bytes());
    assert_eq!(o.subject(), "㈱髙橋の請求書");
    let atts = o.attachments();
    assert_eq!(atts.len(), 1, "{}", o.raw());
    // The HTML attachment went through the HTML sanitizer: text now, renamed.
    assert_eq!(atts[0].0, "請求書①.txt");
    assert_eq!(atts[0].1, "text/plain");
    let content = String::from_utf8(atts[0].2.clone()).unwrap();
    assert!(
        content.contains("請求額") && !content.contains("<b>"),
        "{content}"
    );
    assert!(
        o.report
            .items
            .iter()
            .any(|i| i.path == "attachment[1]/請求書①.html")
    );
}

fn with_attachment(ct: &str, name: &str, body_b64: &str) -> String {
    format!(
        "From: a@example.jp\r\nSubject: att\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\nPlease see the attachment.\r\n--XX\r\nContent-Type: {ct}; name=\"{name}\"\r\nContent-Disposition: attachment; filename=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{body_b64}\r\n--XX--\r\n"
    )
}

#[test]
fn executable_attachment_is_removed_and_listed() {
    let raw = with_attachment(
        "application/octet-stream",
        "invoice.pdf.exe",
        &b64(b"MZ\x90\x00\x03\x00\x00\x00"),
    );
    let o = run(raw.as_bytes());
    assert!(o.attachments().is_empty());
    let text = o.text();
    assert!(text.contains("invoice.pdf.exe"), "{text}");
    assert!(text.contains("実行ファイル"), "{text}");
    assert!(text.contains("executable"), "{text}");
    assert!(
        text.contains(&o.report.id),
        "release text names the report id"
    );
    assert!(text.contains("Please see the attachment."));
    assert!(
        o.header("X-Mugai-Sanitized")
            .unwrap()
            .contains("DEL_ATTACH")
    );
    assert!(o.threats().contains(&threats::EXECUTABLE));
    assert!(!o.raw().contains(&b64(b"MZ\x90\x00\x03\x00\x00\x00")));
}

#[test]
fn nested_message_is_sanitized_and_attached() {
    let inner = HTML_ONLY.replace("Subject: html", "Subject: inner");
    let raw = format!(
        "From: a@example.jp\r\nSubject: fwd\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\nforwarding\r\n--XX\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment; filename=\"fwd.eml\"\r\n\r\n{inner}\r\n--XX--\r\n"
    );
    let o = run(raw.as_bytes());
    let atts = o.attachments();
    assert_eq!(atts.len(), 1, "{}", o.raw());
    assert_eq!(atts[0].1, "message/rfc822");
    let nested = MessageParser::default().parse(&atts[0].2).unwrap();
    assert_eq!(nested.subject(), Some("inner"));
    let ntext = nested.body_text(0).unwrap();
    assert!(ntext.contains("Dear customer"), "{ntext}");
    assert!(!String::from_utf8_lossy(&atts[0].2).contains("<script"));
    assert!(
        o.report
            .items
            .iter()
            .any(|i| i.path == "attachment[1]/fwd.eml/body")
    );
    assert!(
        o.text().contains("添付メールの内容を無害化"),
        "{}",
        o.text()
    );
    assert!(
        o.header("X-Mugai-Sanitized")
            .unwrap()
            .contains("CHG_ATTACH")
    );
}

#[test]
fn signed_mail_keeps_content_and_drops_signature() {
    let raw = "From: a@example.jp\r\nSubject: signed\r\nContent-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256; boundary=\"S\"\r\n\r\n--S\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nSigned hello.\r\n--S\r\nContent-Type: application/pkcs7-signature; name=\"smime.p7s\"\r\nContent-Transfer-Encoding: base64\r\n\r\nMIIBAAAA\r\n--S--\r\n";
    let o = run(raw.as_bytes());
    assert!(o.text().contains("Signed hello."));
    assert!(o.attachments().is_empty());
    assert!(o.threats().contains(&threats::MAIL_SIGNATURE));
    assert!(o.text().contains("電子署名"));
    assert!(o.header("X-Mugai-Sanitized").unwrap().contains("DEL_SIGN"));
}

#[test]
fn signature_first_or_of_unknown_type_is_still_the_signature() {
    let raw = "From: a@example.jp\r\nSubject: s\r\nContent-Type: multipart/signed; protocol=\"application/x-odd-signature\"; boundary=S\r\n\r\n--S\r\nContent-Type: application/x-odd-signature\r\n\r\nSIG\r\n--S\r\nContent-Type: text/plain\r\n\r\nthe signed text\r\n--S--\r\n";
    let o = run(raw.as_bytes());
    assert!(o.text().contains("the signed text"), "{}", o.text());
    assert!(o.threats().contains(&threats::MAIL_SIGNATURE));
    assert!(o.attachments().is_empty());
}

#[test]
fn encrypted_content_is_removed() {
    let raw = "From: a@example.jp\r\nSubject: enc\r\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data; name=\"smime.p7m\"\r\nContent-Transfer-Encoding: base64\r\n\r\nMIIBAAAA\r\n";
    let o = run(raw.as_bytes());
    assert!(o.threats().contains(&threats::MAIL_ENCRYPTED));
    assert!(o.attachments().is_empty());
    assert!(o.text().contains("暗号化"));
    let pgp = "From: a@example.jp\r\nSubject: pgp\r\n\r\nhi\r\n-----BEGIN PGP MESSAGE-----\r\nhQEMA123\r\n-----END PGP MESSAGE-----\r\nbye\r\n";
    let o = run(pgp.as_bytes());
    let t = o.text();
    assert!(
        t.contains("hi") && t.contains("bye") && !t.contains("hQEMA123"),
        "{t}"
    );
    assert!(o.threats().contains(&threats::MAIL_ENCRYPTED));
    let signed = "From: a@example.jp\r\nSubject: clear\r\n\r\n-----BEGIN PGP SIGNED MESSAGE-----\r\nHash: SHA256\r\n\r\nsigned words\r\n-----BEGIN PGP SIGNATURE-----\r\niQEzBAEB\r\n-----END PGP SIGNATURE-----\r\n";
    let o = run(signed.as_bytes());
    let t = o.text();
    assert!(t.contains("signed words") && !t.contains("iQEzBAEB"), "{t}");
    assert!(o.threats().contains(&threats::MAIL_SIGNATURE));
    assert!(o.header("X-Mugai-Sanitized").unwrap().contains("DEL_SIGN"));
}

#[test]
fn headers_are_allow_listed_and_traced() {
    let raw = "Received: from mx.example.jp (mx.example.jp [192.0.2.1])\r\n\tby gw.city.example.lg.jp with ESMTP id 123\r\n\tfor <b@city.example.lg.jp>; Tue, 1 Jul 2025 10:00:00 +0900\r\nAuthentication-Results: mx.city.example.lg.jp; spf=pass smtp.mailfrom=a@example.jp\r\nAuthentication-Results: evil.example; dkim=pass\r\nX-Mugai-Sanitized: NONE\r\nX-Mugai-Verdict: clean\r\nFrom: a@example.jp\r\nFrom: ceo@example.jp\r\nTo: b@city.example.lg.jp\r\nSubject: inv\u{202E}fdp.exe\r\nX-Mailer: evil\r\nContent-Type: text/plain\r\n\r\nbody\r\n";
    let mut policy = Policy::default();
    policy.mail.trusted_authserv_id = Some("mx.city.example.lg.jp".into());
    let o = run_with(raw.as_bytes(), &policy);
    let out = o.raw().replace("\r\n ", " ");
    assert!(out.contains("Received: from mx.example.jp"), "{out}");
    assert!(out.contains("by gw.city.example.lg.jp"));
    assert!(out.contains("Authentication-Results: mx.city.example.lg.jp;"));
    assert!(!out.contains("evil.example"));
    assert!(!out.contains("X-Mailer"));
    assert!(!out.contains("NONE") && !out.contains("X-Mugai-Verdict"));
    assert!(o.threats().contains(&threats::MAIL_FORGED_HEADER));
    assert!(o.threats().contains(&threats::MAIL_DUPLICATE_FROM));
    assert!(o.threats().contains(&threats::TEXT_BIDI_CONTROL));
    assert_eq!(o.subject(), "invfdp.exe");
    assert_eq!(out.matches("\r\nFrom:").count(), 1);
    let m = MessageParser::default().parse(&o.bytes).unwrap();
    assert_eq!(
        m.from().unwrap().first().unwrap().address().unwrap(),
        "a@example.jp"
    );
    let tokens = o.header("X-Mugai-Sanitized").unwrap();
    assert!(tokens.contains("DEL_HEADER"), "{tokens}");
    // Without a trusted id, every Authentication-Results goes.
    let o = run(raw.as_bytes());
    assert!(!o.raw().contains("Authentication-Results"));
}

#[test]
fn end_of_data_lookalikes_become_plain_crlf_text() {
    let raw = b"From: a@example.jp\r\nSubject: smuggle\r\n\r\nline1\n.\nMAIL FROM:<x@y>\r.\rline3\n.\r\nend\r\n";
    let o = run(raw);
    let text = o.text();
    assert!(
        text.contains("line1\n.\nMAIL FROM:<x@y>\n.\nline3\n.\nend"),
        "{text:?}"
    );
    // No "." line and no bare CR/LF on the wire (assert_wire_clean ran in `run`).
    assert!(!o.raw().contains("\r\n.\r\n"));
    assert!(o.threats().contains(&threats::MAIL_BARE_LINE_ENDING));
    // LF throughout is a Unix file, not smuggling.
    let o = run(PLAIN.replace("\r\n", "\n").as_bytes());
    assert!(!o.threats().contains(&threats::MAIL_BARE_LINE_ENDING));
}

#[test]
fn long_lines_are_wrapped_on_the_wire() {
    let raw = format!(
        "From: a@example.jp\r\nSubject: {}\r\n\r\n{}\r\n",
        "s".repeat(2000),
        "x".repeat(5000)
    );
    let o = run(raw.as_bytes());
    assert!(o.text().contains(&"x".repeat(5000)));
    assert_eq!(o.subject().len(), 2000);
}

#[test]
fn links_in_plain_text_are_defanged() {
    let raw =
        "From: a@example.jp\r\nSubject: l\r\n\r\nLogin at https://evil.example.com/login now\r\n";
    let o = run(raw.as_bytes());
    let t = o.text();
    assert!(t.contains("hxxps://evil[.]example[.]com/login"), "{t}");
    assert!(!t.contains("https://evil.example.com"));
    assert!(t.contains("リンクを無効化"));
    assert!(o.threats().contains(&threats::LINK_REWRITTEN));
    assert!(o.header("X-Mugai-Sanitized").unwrap().contains("REP_LINK"));
    let mut keep = Policy::default();
    keep.links.mode = LinkMode::Keep;
    let o = run_with(raw.as_bytes(), &keep);
    assert!(o.text().contains("https://evil.example.com/login"));
    assert_eq!(o.report.verdict, Verdict::Clean);
}

#[test]
fn bidi_controls_are_stripped_from_the_body() {
    let raw =
        "From: a@example.jp\r\nSubject: b\r\n\r\nopen invoice\u{202E}gpj.exe and\u{200B}zero\r\n";
    let o = run(raw.as_bytes());
    let t = o.text();
    assert!(t.contains("invoicegpj.exe andzero"), "{t}");
    assert!(o.threats().contains(&threats::TEXT_BIDI_CONTROL));
}

fn nested_multipart(depth: usize) -> String {
    let mut s = String::from("From: a@example.jp\r\nSubject: deep\r\n");
    for i in 0..depth {
        s.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n"
        ));
    }
    s.push_str("Content-Type: text/plain\r\n\r\ndeepest\r\n");
    for i in (0..depth).rev() {
        s.push_str(&format!("--b{i}--\r\n"));
    }
    s
}

#[test]
fn deep_multipart_nesting_is_cut_at_the_depth_limit() {
    let started = std::time::Instant::now();
    let o = run(nested_multipart(5000).as_bytes());
    assert!(
        started.elapsed().as_secs() < 20,
        "took {:?}",
        started.elapsed()
    );
    assert!(o.threats().contains(&threats::LIMIT_DEPTH));
    assert!(!o.text().contains("deepest"));
    assert!(o.text().contains("入れ子が深すぎる"));
    // A policy allowing absurd depth still cannot make the walk recurse 5,000 times.
    let mut lax = Policy::default();
    lax.limits.max_depth = 1_000_000;
    let o = run_with(nested_multipart(5000).as_bytes(), &lax);
    assert!(o.threats().contains(&threats::LIMIT_DEPTH));
    // Within the limit, the text is found.
    let o = run(nested_multipart(5).as_bytes());
    assert!(o.text().contains("deepest"));
    assert!(!o.threats().contains(&threats::LIMIT_DEPTH));
}

#[test]
fn deep_message_rfc822_nesting_is_cut_by_sanitize_child() {
    let mut s = String::from("From: a@example.jp\r\nSubject: innermost\r\n\r\ninnermost body\r\n");
    for i in 0..5000 {
        s = format!(
            "From: a@example.jp\r\nSubject: level {i}\r\nContent-Type: message/rfc822\r\n\r\n{s}"
        );
    }
    let started = std::time::Instant::now();
    let o = run(s.as_bytes());
    assert!(
        started.elapsed().as_secs() < 20,
        "took {:?}",
        started.elapsed()
    );
    assert!(
        o.threats().contains(&threats::LIMIT_DEPTH),
        "{:?}",
        o.report.items
    );
}

#[test]
fn very_deep_nested_messages_do_not_overflow_the_stack() {
    // 25,000 levels inline (1.8 MB), and a base64-wrapped 20,000-level chain: mail-parser
    // would recurse once per level (drop, into_owned) on its own; the test thread has 2 MB.
    let chain = |levels: usize| {
        let mut s = String::with_capacity(levels * 50 + 64);
        for i in (0..levels).rev() {
            s.push_str(&format!(
                "Subject: l{i}\r\nContent-Type: message/rfc822\r\n\r\n"
            ));
        }
        s.push_str("From: a@example.jp\r\nSubject: innermost\r\n\r\ninnermost body\r\n");
        s
    };
    let wrapped = format!(
        "From: a@example.jp\r\nSubject: wrap\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n",
        b64(chain(20_000).as_bytes())
    );
    let o = run(wrapped.as_bytes());
    assert!(
        o.threats().contains(&threats::LIMIT_DEPTH),
        "{:?}",
        o.report.items
    );
    let s = chain(25_000);
    let started = std::time::Instant::now();
    let o = run(format!("From: a@example.jp\r\n{s}").as_bytes());
    assert!(
        started.elapsed().as_secs() < 20,
        "took {:?}",
        started.elapsed()
    );
    assert!(o.threats().contains(&threats::LIMIT_DEPTH));
}

#[test]
fn deep_nesting_in_any_syntax_does_not_overflow_the_stack() {
    // Value syntax mail-parser accepts (spaces, comments, odd field names) must not matter.
    let level = |i: usize| match i % 3 {
        0 => format!("Subject: l{i}\r\nContent-Type: message / rfc822\r\n\r\n"),
        1 => format!("Subject: l{i}\r\nContent-Type : (c)Message/RFC822\r\n\r\n"),
        _ => format!("Subject: l{i}\r\nContent-Type: \"message/rfc822\"\r\n\r\n"),
    };
    let mut chain = String::new();
    for i in (0..25_000).rev() {
        chain.push_str(&level(i));
    }
    chain.push_str("From: a@example.jp\r\nSubject: innermost\r\n\r\ninnermost\r\n");
    // (Levels the sniffer does not take for mail are removed as unsupported instead of being
    // opened: either way nothing deep survives, and nothing crashes.)
    let deep_survives = |o: &Out| {
        o.report
            .items
            .iter()
            .any(|i| i.action != Action::Removed && i.path.matches("message.eml").count() > 10)
            || o.threats().contains(&threats::INTERNAL_ERROR)
    };
    let o = run(format!("From: a@example.jp\r\n{chain}").as_bytes());
    assert!(!deep_survives(&o), "{:?}", o.report.items);
    let wrapped = format!(
        "From: a@example.jp\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding :\tBASE64\r\n\r\n{}\r\n",
        b64(chain.as_bytes())
    );
    let o = run(wrapped.as_bytes());
    assert!(!deep_survives(&o), "{:?}", o.report.items);
    assert_eq!(o.report.verdict, Verdict::Sanitized);
    // A chain in plain syntax behind an odd CTE field name still reaches the depth limit.
    let plain: String = (0..25_000)
        .map(|i| format!("Subject: l{i}\r\nContent-Type: message/rfc822\r\n\r\n"))
        .collect();
    let wrapped = format!(
        "From: a@example.jp\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding :\tBASE64\r\n\r\n{}\r\n",
        b64(format!("{plain}From: a@example.jp\r\nSubject: x\r\n\r\nx\r\n").as_bytes())
    );
    let o = run(wrapped.as_bytes());
    assert!(
        o.threats().contains(&threats::LIMIT_DEPTH),
        "{:?}",
        o.report.items
    );
}

#[test]
fn digest_parts_are_nested_messages() {
    let raw = "From: a@example.jp\r\nSubject: digest\r\nContent-Type: multipart/digest; boundary=D\r\n\r\n--D\r\n\r\nFrom: b@example.jp\r\nSubject: first\r\n\r\nfirst body\r\n--D\r\n\r\nFrom: c@example.jp\r\nSubject: second\r\n\r\nsecond body\r\n--D--\r\n";
    let o = run(raw.as_bytes());
    // Nested messages are rebuilt as message/rfc822 attachments (sniffed as mail).
    let atts = o.attachments();
    assert_eq!(atts.len(), 2, "{}", o.raw());
    assert!(atts.iter().all(|a| a.1 == "message/rfc822"));
    let first = MessageParser::default().parse(&atts[0].2).unwrap();
    assert_eq!(first.subject(), Some("first"));
}

#[test]
fn two_thousand_parts_keep_notice_and_report_bounded() {
    let mut s = String::from(
        "From: a@example.jp\r\nSubject: many\r\nContent-Type: multipart/mixed; boundary=\"M\"\r\n\r\n--M\r\nContent-Type: text/plain\r\n\r\nmany parts\r\n",
    );
    for i in 0..2000 {
        s.push_str(&format!("--M\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"f{i}.bin\"\r\n\r\n\x01\x02data{i}\r\n"));
    }
    s.push_str("--M--\r\n");
    let started = std::time::Instant::now();
    let o = run(s.as_bytes());
    assert!(started.elapsed().as_secs() < 20);
    assert!(o.threats().contains(&threats::LIMIT_PARTS));
    let text = o.text();
    assert!(text.lines().count() < 120, "{} lines", text.lines().count());
    assert!(text.contains("many parts"));
    assert!(o.report.items.len() < 1100, "{}", o.report.items.len());
    assert!(
        o.report
            .items
            .iter()
            .any(|i| i.path == "attachment[*]" && i.reason.contains("more parts removed"))
    );
}

#[test]
fn inline_text_parts_count_against_the_part_limit() {
    let mut policy = Policy::default();
    policy.limits.max_parts = 50;
    let mut s = String::from(
        "From: a@example.jp\r\nSubject: many\r\nContent-Type: multipart/mixed; boundary=\"M\"\r\n\r\n",
    );
    for i in 0..200 {
        s.push_str(&format!(
            "--M\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\ninline part number {i:03}\r\n"
        ));
    }
    s.push_str("--M--\r\n");
    let o = run_with(s.as_bytes(), &policy);
    assert!(
        o.threats().contains(&threats::LIMIT_PARTS),
        "{:?}",
        o.report.items
    );
    assert_eq!(o.report.verdict, Verdict::Sanitized);
    let text = o.text();
    assert!(text.contains("inline part number 000"));
    assert!(!text.contains("inline part number 199"), "{text}");
    let kept = (0..200)
        .filter(|i| text.contains(&format!("inline part number {i:03}")))
        .count();
    assert!(kept <= 50, "{kept} parts kept");
    let summary: Vec<_> = o
        .report
        .items
        .iter()
        .filter(|i| i.path == "attachment[*]")
        .collect();
    assert_eq!(summary.len(), 1, "{:?}", o.report.items);
    assert!(summary[0].reason.contains("more parts removed"));
}

#[test]
fn garbled_structured_headers_are_dropped_not_copied() {
    let raw = b"Message-ID: <a(b)c@x> \"quoted\"\r\nIn-Reply-To: <ok.1@example.jp>\r\nReferences: <r1@example.jp> <bad\"id@x> <r2@example.jp>\r\nDate: Mon, 02 Nov 2026 09\xcf30:0055omA?= <t/plain; charset=EUC-J\r\nX-Eaten: mail-parser reads this line as part of the Date\r\nFrom: a@example.jp\r\nSubject: after the date\r\n\r\nbody\r\n";
    let o = run(raw);
    let raw_out = o.raw();
    assert!(!raw_out.contains("0055omA"), "{raw_out}");
    assert!(!raw_out.contains("<t/plain"), "{raw_out}");
    assert!(!raw_out.contains("quoted"), "{raw_out}");
    assert!(o.header("Date").is_none(), "{raw_out}");
    assert!(o.header("Message-ID").is_none(), "{raw_out}");
    // The fields after the garbled one still read correctly.
    assert_eq!(o.subject(), "after the date");
    assert!(
        raw_out.contains("In-Reply-To: <ok.1@example.jp>"),
        "{raw_out}"
    );
    assert!(raw_out.contains("<r1@example.jp>") && raw_out.contains("<r2@example.jp>"));
    assert!(!raw_out.contains("bad"), "{raw_out}");
    assert!(o.threats().contains(&threats::MAIL_HEADER_DROPPED));
    for name in ["header/Date", "header/Message-ID"] {
        assert!(
            o.report.items.iter().any(|i| i.path == name),
            "{name}: {:?}",
            o.report.items
        );
    }
    assert_eq!(o.report.verdict, Verdict::Sanitized);
}

#[test]
fn valid_date_is_reformatted_from_the_parsed_value() {
    let raw = b"Date: mon,  2 nov 2026 09:30:05 +0900 (JST)\r\nFrom: a@example.jp\r\nSubject: d\r\n\r\nbody\r\n";
    let o = run(raw);
    let raw_out = o.raw();
    assert!(
        raw_out.contains("Date: Mon, 2 Nov 2026 09:30:05 +0900\r\n"),
        "{raw_out}"
    );
    assert!(!raw_out.contains("JST"));
    assert_eq!(o.report.verdict, Verdict::Clean);
}

#[test]
fn notice_only_never_copies_raw_header_text() {
    use crate::pipeline::{Context, Services, Session};
    let policy = Policy::default();
    let mut session = Session::new(&policy);
    let cx = Context::new(&policy, Services::default(), &mut session, String::new());
    let raw = b"Received: from evil (<script>) by mx\r\nDate: Mon, 02 Nov 2026 09\xcf30:0055omA?= <t/plain\r\nMessage-ID: <x y>\r\nSubject: s\r\n\r\nSECRET\r\n";
    let err = crate::SanitizeError::Internal("boom".into());
    let out = super::notice_only(raw, &err, &cx);
    assert_wire_clean(&out);
    let text = String::from_utf8_lossy(&out);
    for bad in ["0055omA", "<t/plain", "<x y>", "SECRET"] {
        assert!(!text.contains(bad), "{bad}: {text}");
    }
    let m = MessageParser::default().parse(&out).unwrap();
    assert_eq!(m.subject(), Some("s"));
    assert!(m.header_raw("X-Mugai-Report-Id").is_some());
}

#[test]
fn notice_only_keeps_received_headers_refolded() {
    use crate::pipeline::{Context, Services, Session};
    let policy = Policy::default();
    let mut session = Session::new(&policy);
    let cx = Context::new(&policy, Services::default(), &mut session, String::new());
    let long_hop = format!(
        "from relay.example.jp by mx2{}",
        " with ESMTP id 0123456789abcdef;".repeat(60)
    );
    let raw = format!(
        "Received: from mx1.example.jp\r\n\tby mx.city.example.lg.jp with ESMTP id 1;\r\n Mon, 2 Nov 2026 09:30:00 +0900\r\nReceived: {long_hop}\r\nReceived: from a\x01b \u{3042} by c\r\nSubject: s\r\n\r\nbody\r\n"
    );
    let err = crate::SanitizeError::Internal("boom".into());
    let out = super::notice_only(raw.as_bytes(), &err, &cx);
    assert_wire_clean(&out);
    let m = MessageParser::default().parse(&out).unwrap();
    assert_eq!(
        m.header_values("Received").count(),
        3,
        "{}",
        String::from_utf8_lossy(&out)
    );
    let text = String::from_utf8_lossy(&out).replace("\r\n ", " ");
    assert!(text.contains(
        "Received: from mx1.example.jp by mx.city.example.lg.jp with ESMTP id 1; Mon, 2 Nov 2026 09:30:00 +0900\r\n"
    ), "{text}");
    assert!(text.contains("Received: from a b by c\r\n"), "{text}");
    // Refolded, never over 998 octets (checked by assert_wire_clean) and still whole.
    assert!(text.contains(&long_hop), "{text}");
    // The order (newest on top) is kept, and they come before our own fields.
    let first = text.find("mx1.example.jp").unwrap();
    assert!(first < text.find("relay.example.jp").unwrap());
    assert!(text.find("from a b").unwrap() < text.find("X-Mugai-Report-Id").unwrap());
}

#[test]
fn binary_noise_without_headers_is_notice_only() {
    let mut raw = b"\x00\xff\xfe\x00--\x00\r\n\r\n".to_vec();
    let mut x = 0x9e37_79b9u32;
    for _ in 0..3000 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        raw.push(x.to_le_bytes()[1]);
    }
    raw.extend_from_slice(b"\r\nleaked text\r\n");
    let o = run(&raw);
    assert!(
        o.threats().contains(&threats::MAIL_UNPARSEABLE),
        "{:?}",
        o.report.items
    );
    assert!(!o.threats().contains(&threats::MAIL_BARE_LINE_ENDING));
    assert!(!o.text().contains("leaked text"));
    assert!(o.text().contains("無害化"));
    assert_eq!(o.report.verdict, Verdict::Sanitized);
    // A message whose body is binary but whose header block is sound is not unparseable.
    let mut ok = b"From: a@example.jp\r\nSubject: bin\r\n\r\n".to_vec();
    ok.extend_from_slice(&raw);
    let o = run(&ok);
    assert!(
        !o.threats().contains(&threats::MAIL_UNPARSEABLE),
        "{:?}",
        o.report.items
    );
    assert_eq!(o.subject(), "bin");
}

#[test]
fn many_signature_parts_keep_the_report_bounded() {
    let mut s = String::from(
        "From: a@example.jp\r\nSubject: sigs\r\nContent-Type: multipart/mixed; boundary=\"M\"\r\n\r\n--M\r\nContent-Type: text/plain\r\n\r\nbody\r\n",
    );
    for _ in 0..3000 {
        s.push_str("--M\r\nContent-Type: application/pkcs7-signature\r\n\r\nx\r\n");
    }
    s.push_str("--M--\r\n");
    let o = run(s.as_bytes());
    assert!(o.report.items.len() < 1100, "{}", o.report.items.len());
    assert!(o.threats().contains(&threats::LIMIT_PARTS));
    assert!(o.text().lines().count() < 120);
}

#[test]
fn decoded_bytes_limit_removes_the_part() {
    let mut policy = Policy::default();
    policy.limits.max_decoded_bytes = 200;
    let raw = with_attachment("application/pdf", "big.pdf", &b64(&[b'A'; 4000]));
    let o = run_with(raw.as_bytes(), &policy);
    assert!(
        o.threats().contains(&threats::LIMIT_DECODED_BYTES),
        "{:?}",
        o.report.items
    );
    assert!(o.attachments().is_empty());
}

#[test]
fn unparseable_input_becomes_notice_only() {
    let o = run(b"");
    assert!(
        o.threats().contains(&threats::MAIL_UNPARSEABLE),
        "{:?}",
        o.report.items
    );
    assert!(o.text().contains("無害化"));
    assert_eq!(o.report.verdict, Verdict::Sanitized);
}

#[test]
fn notice_only_keeps_safe_headers_and_no_body() {
    use crate::pipeline::{Context, Services, Session};
    let policy = Policy::default();
    let mut session = Session::new(&policy);
    let cx = Context::new(&policy, Services::default(), &mut session, String::new());
    let subject = format!("=?ISO-2022-JP?B?{}?=", b64(&enc(ISO_2022_JP, "至急")));
    let raw = format!(
        "From: a@example.jp\r\nSubject: {subject}\r\nX-Evil: 1\r\n\r\nSECRET BODY <script>\r\n"
    );
    let err = crate::SanitizeError::Internal("boom".into());
    let out = super::notice_only(raw.as_bytes(), &err, &cx);
    assert_wire_clean(&out);
    let m = MessageParser::default().parse(&out).unwrap();
    assert_eq!(m.subject(), Some("至急"));
    assert!(m.header_raw("X-Evil").is_none());
    let text = m.body_text(0).unwrap();
    assert!(!text.contains("SECRET"), "{text}");
    assert!(text.contains("無害化"));
    // Garbage that is not even headers: minimal headers.
    let out = super::notice_only(b"\x00\x01\x02", &err, &cx);
    assert_wire_clean(&out);
    assert!(String::from_utf8_lossy(&out).contains("X-Mugai-Report-Id"));
}

#[test]
fn deadline_is_checked_before_work() {
    use crate::limits::LimitKind;
    use crate::pipeline::{Context, Services, Session};
    let mut policy = Policy::default();
    policy.limits.deadline_ms = 1;
    let mut session = Session::new(&policy);
    std::thread::sleep(std::time::Duration::from_millis(5));
    let mut cx = Context::new(&policy, Services::default(), &mut session, String::new());
    let err = super::sanitize_message(PLAIN.as_bytes(), &mut cx).unwrap_err();
    assert!(
        matches!(
            err,
            crate::SanitizeError::Limit {
                kind: LimitKind::Deadline,
                ..
            }
        ),
        "{err}"
    );
    // Through the public entry point the mail still gets a notice-only message.
    let out = super::notice_only(PLAIN.as_bytes(), &err, &cx);
    assert_wire_clean(&out);
    assert!(!String::from_utf8_lossy(&out).contains("see you tomorrow"));
}

#[test]
fn segmented_link_rewriting_equals_whole_text() {
    let texts = [
        "a https://x.example.jp/a, b\nwww.example.com\n\nmailto:a@b.jp tel:0312345678 http://y.jp.\nno links here\nftp://f.example/x https://z.example/?q=1",
        "詳細はhttps://example.jp/a（こちら）とwww.example.com。また<http://b.example/x>\"http://c.example\"",
        "xhttp://a.b/c:d:e http://a/tel:1 HTTPS://UP.EXAMPLE/X 'www.q.example'(ftp://f.example)",
        "",
        ":",
        "http://",
        "wwww.x.jp ww.w.jp Www.Example.COM/x w:ww.a",
        "a\u{0B}http://vt.example b\u{A0}http://nbsp.example\u{3000}https://ideo.example",
    ];
    for text in texts {
        for mode in [LinkMode::Defang, LinkMode::Remove, LinkMode::Keep] {
            assert_eq!(
                crate::links::rewrite_links_linear(text, mode),
                crate::links::rewrite_links_in_text(text, mode),
                "{text}"
            );
        }
    }
}

#[test]
fn hostile_link_density_stays_linear() {
    let line = "<http://a".repeat(200_000); // 1.8 MB on one line
    let started = std::time::Instant::now();
    let (out, n) = crate::links::rewrite_links_linear(&line, LinkMode::Defang);
    assert_eq!(n, 200_000);
    assert!(out.starts_with("<hxxp://a<hxxp://a"));
    assert!(
        started.elapsed().as_secs() < 10,
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn broken_base64_body_is_still_decoded() {
    let body = b64("壊れたパディングの本文です".as_bytes());
    let raw = format!(
        "From: a@example.jp\r\nSubject: b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{}!!\r\n{}\r\n",
        &body[..8],
        &body[8..]
    );
    let o = run(raw.as_bytes());
    assert!(
        o.text().contains("壊れたパディングの本文です"),
        "{}",
        o.text()
    );
}

#[test]
fn extra_headers_and_received_policy() {
    let raw = "Received: from a by b; Tue, 1 Jul 2025 10:00:00 +0900\r\nFrom: a@example.jp\r\nSubject: s\r\nX-Ticket: =?UTF-8?B?5qGI5Lu2?= 42\r\nContent-Type: text/plain\r\n\r\nbody\r\n";
    let mut policy = Policy::default();
    policy.mail.extra_headers = vec!["X-Ticket".into(), "Content-Type".into()];
    policy.mail.keep_received = false;
    let o = run_with(raw.as_bytes(), &policy);
    let m = MessageParser::default().parse(&o.bytes).unwrap();
    // mail-parser keeps unknown fields raw, so decode the RFC 2047 word here.
    let ticket = m.header_raw("X-Ticket").unwrap();
    assert_eq!(
        super::charset::decode_header(ticket.trim().as_bytes()),
        "案件 42"
    );
    assert!(m.header_raw("Received").is_none());
    // Content-Type cannot be smuggled through extra_headers: exactly one, ours.
    assert_eq!(o.raw().matches("Content-Type:").count(), 1);
    assert_eq!(o.report.verdict, Verdict::Clean);
}

#[test]
fn related_images_and_calendar_go_through_sanitize_child() {
    let raw = format!(
        "From: a@example.jp\r\nSubject: rel\r\nContent-Type: multipart/mixed; boundary=O\r\n\r\n--O\r\nContent-Type: multipart/related; boundary=R\r\n\r\n--R\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>see <img src=\"cid:logo\"></p>\r\n--R\r\nContent-Type: image/png\r\nContent-ID: <logo>\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--R--\r\n--O\r\nContent-Type: text/calendar; method=REQUEST; charset=utf-8\r\n\r\nBEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nSUMMARY:会議\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n--O--\r\n",
        b64(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    );
    let o = run(raw.as_bytes());
    assert!(o.text().contains("see"), "{}", o.text());
    let paths: Vec<&str> = o.report.items.iter().map(|i| i.path.as_str()).collect();
    assert!(paths.contains(&"attachment[1]"), "{paths:?}");
    assert!(paths.contains(&"attachment[2]/invite.ics"), "{paths:?}");
    let cal = o
        .report
        .items
        .iter()
        .find(|i| i.path == "attachment[2]/invite.ics")
        .unwrap();
    assert_eq!(cal.kind, crate::report::Kind::Calendar);
}

#[test]
fn several_inline_text_parts_are_joined_into_the_body() {
    let raw = "From: a@example.jp\r\nSubject: j\r\nContent-Type: multipart/mixed; boundary=J\r\n\r\n--J\r\nContent-Type: text/plain\r\n\r\nfirst part\r\n--J\r\nContent-Type: text/plain\r\n\r\nmailing list footer\r\n--J--\r\n";
    let o = run(raw.as_bytes());
    let t = o.text();
    assert!(
        t.contains("first part") && t.contains("mailing list footer"),
        "{t}"
    );
    assert!(o.attachments().is_empty());
    assert_eq!(o.report.verdict, Verdict::Clean);
}

#[test]
fn base64_wrapped_nested_message_is_kept_as_7bit_rfc822() {
    let inner = "From: b@example.jp\r\nSubject: inner\r\n\r\ninner text\r\n";
    let raw = format!(
        "From: a@example.jp\r\nSubject: outer\r\nContent-Type: multipart/mixed; boundary=W\r\n\r\n--W\r\nContent-Type: text/plain\r\n\r\nouter text\r\n--W\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--W--\r\n",
        b64(inner.as_bytes())
    );
    let o = run(raw.as_bytes());
    let atts = o.attachments();
    assert_eq!(atts.len(), 1, "{}", o.raw());
    let nested = MessageParser::default().parse(&atts[0].2).unwrap();
    assert_eq!(nested.subject(), Some("inner"));
    assert!(o.raw().contains("Content-Transfer-Encoding: 7bit"));
}

/// Mutated versions of the samples above (bytes flipped, cut, CR/LF and boundaries inserted):
/// never a panic, never blocked, always a wire-clean message.
#[test]
fn mutated_mail_always_yields_a_clean_message() {
    let html = HTML_ONLY.to_owned();
    let seeds: Vec<Vec<u8>> = vec![
        PLAIN.as_bytes().to_vec(),
        html.into_bytes(),
        alternative("text").into_bytes(),
        with_attachment("application/pdf", "a.pdf", &b64(b"%PDF-1.4 x")).into_bytes(),
        nested_multipart(12).into_bytes(),
        labelled("iso-2022-jp", "base64", &enc(ISO_2022_JP, "①㈱髙橋")),
    ];
    let inserts: [&[u8]; 8] = [
        b"\r",
        b"\n",
        b"\r\n.\r\n",
        b"\n--XX\n",
        b"=?utf-8?b?",
        b"\x1b$B",
        b"\xff\xfe",
        b"\0",
    ];
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let policy = Policy::default();
    for round in 0..1500 {
        let mut m = seeds[round % seeds.len()].clone();
        for _ in 0..(1 + next() % 6) {
            let pos = (next() as usize) % (m.len() + 1);
            match next() % 4 {
                0 if !m.is_empty() => {
                    let i = pos.min(m.len() - 1);
                    m[i] ^= 1 << (next() % 8);
                }
                1 => m.truncate(pos),
                2 => {
                    let ins = inserts[(next() as usize) % inserts.len()];
                    m.splice(pos..pos, ins.iter().copied());
                }
                _ => {
                    let end = (pos + (next() as usize) % 16).min(m.len());
                    m.drain(pos..end);
                }
            }
        }
        let o = sanitize_mail(&m, &policy);
        assert_ne!(o.report.verdict, Verdict::Blocked);
        assert_wire_clean(o.message.as_slice());
        assert!(
            !o.report.threats().contains(&threats::INTERNAL_ERROR),
            "round {round}"
        );
    }
}

// --- Japanese mail as mailers really write it (issue 14) ---------------------------------------

/// RFC 2047 B words of `bytes` cut every `every` bytes, the way some mailers cut long Subjects:
/// regardless of character (or ISO-2022-JP escape) boundaries.
fn cut_words(charset: &str, bytes: &[u8], every: usize, sep: &str) -> String {
    bytes
        .chunks(every)
        .map(|c| format!("=?{charset}?B?{}?=", b64(c)))
        .collect::<Vec<_>>()
        .join(sep)
}

#[test]
fn encoded_words_cut_inside_a_character_are_joined_as_bytes() {
    let subject = "【至急】令和７年度予算編成方針について（通知）";
    for (label, e) in [
        ("ISO-2022-JP", ISO_2022_JP),
        ("Shift_JIS", SHIFT_JIS),
        ("UTF-8", encoding_rs::UTF_8),
    ] {
        let bytes = enc(e, subject);
        for every in [7, 9, 10, 13] {
            for sep in ["\r\n ", " ", "", "\r\n\t"] {
                let raw = format!(
                    "From: a@example.jp\r\nSubject: {}\r\n\r\nbody\r\n",
                    cut_words(label, &bytes, every, sep)
                );
                let o = run(raw.as_bytes());
                assert_eq!(o.subject(), subject, "{label} every {every} sep {sep:?}");
            }
        }
    }
    // Words of different charsets are decoded apart, and the space between them goes.
    let raw = format!(
        "From: a@example.jp\r\nSubject: Re: {} {}\r\n\r\nbody\r\n",
        cut_words("UTF-8", "見積".as_bytes(), 4, " "),
        cut_words("ISO-2022-JP", &enc(ISO_2022_JP, "書の件"), 5, "\r\n "),
    );
    assert_eq!(run(raw.as_bytes()).subject(), "Re: 見積書の件");
}

#[test]
fn iso_2022_jp_escapes_back_to_back_decode_without_replacement() {
    // ｶﾞｲﾄﾞﾗｲﾝ in ESC ( I, then ESC ( B ESC $ B at once (valid RFC 1468; the WHATWG decoder
    // emits U+FFFD there).
    let mut body = b"\x1b(I6^2D^W2]\x1b(B\x1b$B2~Dj$N$*CN$i$;\x1b(B\r\n".to_vec();
    body.extend_from_slice(b"\x1b$B-!-j\x1b(B\r\n");
    for label in ["ISO-2022-JP", "CP50221", "cp50220"] {
        let o = run(&labelled(label, "7bit", &body));
        let text = o.text();
        assert!(
            text.contains("ｶﾞｲﾄﾞﾗｲﾝ改定のお知らせ\n①㈱"),
            "{label}: {text:?}"
        );
        assert!(!o.threats().contains(&threats::MAIL_CHARSET), "{label}");
        assert!(o.report.warnings.is_empty(), "{:?}", o.report.warnings);
    }
    // The same in a Subject, split over two words.
    let raw = format!(
        "From: a@example.jp\r\nSubject: =?ISO-2022-JP?B?{}?= =?ISO-2022-JP?B?{}?=\r\n\r\nx\r\n",
        b64(b"\x1b(I6^2D^W2]\x1b(B"),
        b64(b"\x1b$B2~Dj\x1b(B")
    );
    assert_eq!(run(raw.as_bytes()).subject(), "ｶﾞｲﾄﾞﾗｲﾝ改定");
}

#[test]
fn encoded_words_in_quoted_and_split_display_names() {
    let name = "髙橋総務課長（①担当）";
    let jis = enc(ISO_2022_JP, name);
    let raw = format!(
        "From: \"=?ISO-2022-JP?B?{}?=\" <takahashi@example.jp>\r\nTo: {} <soumu@city.example.lg.jp>, \"=?UTF-8?B?{}?= 様\" <b@example.jp>\r\nCc: =?Shift_JIS?B?{}?=<c@example.jp>\r\nSubject: s\r\n\r\nbody\r\n",
        b64(&jis),
        cut_words("ISO-2022-JP", &jis, 7, "\r\n "),
        b64("鈴木, \"一郎\"".as_bytes()),
        b64(&enc(SHIFT_JIS, "㈱ハマダ")),
    );
    let o = run(raw.as_bytes());
    let m = MessageParser::default().parse(&o.bytes).unwrap();
    let from = m.from().unwrap().first().unwrap();
    assert_eq!(from.name().unwrap(), name);
    assert_eq!(from.address().unwrap(), "takahashi@example.jp");
    let to: Vec<_> = m.to().unwrap().iter().collect();
    assert_eq!(to.len(), 2, "{}", o.raw());
    assert_eq!(to[0].name().unwrap(), name);
    assert_eq!(to[0].address().unwrap(), "soumu@city.example.lg.jp");
    assert_eq!(to[1].name().unwrap(), "鈴木, \"一郎\" 様");
    assert_eq!(to[1].address().unwrap(), "b@example.jp");
    let cc = m.cc().unwrap().first().unwrap();
    assert_eq!(cc.name().unwrap(), "㈱ハマダ");
    assert_eq!(cc.address().unwrap(), "c@example.jp");
}

#[test]
fn encoded_words_folded_mid_word_or_without_space() {
    let subject = "住民税の納付について";
    let word = b64(&enc(ISO_2022_JP, subject));
    let (a, b) = word.split_at(10);
    // Folded inside the encoded text.
    let raw = format!("From: a@example.jp\r\nSubject: =?ISO-2022-JP?B?{a}\r\n {b}?=\r\n\r\nx\r\n");
    assert_eq!(run(raw.as_bytes()).subject(), subject);
    // Glued to text and to each other.
    let raw = format!(
        "From: a@example.jp\r\nSubject: Re:=?ISO-2022-JP?B?{word}?==?UTF-8?B?{}?=\r\n\r\nx\r\n",
        b64("（再送）".as_bytes())
    );
    assert_eq!(
        run(raw.as_bytes()).subject(),
        format!("Re:{subject}（再送）")
    );
    // A space that is not folding white space stays literal text.
    let raw = "From: a@example.jp\r\nSubject: =?UTF-8?Q?a b?=\r\n\r\nx\r\n";
    assert_eq!(run(raw.as_bytes()).subject(), "=?UTF-8?Q?a b?=");
}

#[test]
fn raw_8bit_utf8_and_shift_jis_headers_are_decoded() {
    for bytes in [
        "【重要】システム停止のお知らせ".as_bytes().to_vec(),
        enc(SHIFT_JIS, "【重要】システム停止のお知らせ"),
        enc(EUC_JP, "【重要】システム停止のお知らせ"),
    ] {
        let mut raw = b"From: a@example.jp\r\nSubject: ".to_vec();
        raw.extend_from_slice(&bytes);
        raw.extend_from_slice(b"\r\n\r\nbody\r\n");
        assert_eq!(run(&raw).subject(), "【重要】システム停止のお知らせ");
    }
}

#[test]
fn mislabelled_japanese_bodies_are_read_as_what_decodes_and_warned() {
    let ja = "①㈱髙橋様\r\nいつもお世話になっております。来週の会議の件です。\r\n";
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("iso-2022-jp", enc(SHIFT_JIS, ja)),
        ("ISO-2022-JP", ja.as_bytes().to_vec()),
        (
            "iso-2022-jp",
            enc(
                EUC_JP,
                "髙橋様 いつもお世話になっております。来週の会議の件です。",
            ),
        ),
        ("shift_jis", ja.as_bytes().to_vec()),
        ("Shift_JIS", enc(ISO_2022_JP, ja)),
        ("euc-jp", enc(SHIFT_JIS, ja)),
    ];
    for (label, bytes) in cases {
        for cte in ["8bit", "base64"] {
            let o = run(&labelled(label, cte, &bytes));
            let text = o.text();
            assert!(
                text.contains("いつもお世話になっております。来週の会議の件です。"),
                "{label}/{cte}: {text:?}"
            );
            assert!(text.contains("髙橋様"), "{label}/{cte}: {text:?}");
            assert!(!text.contains('\u{FFFD}'), "{label}/{cte}: {text:?}");
            assert_eq!(
                o.report.warnings,
                vec![super::WARN_CHARSET_MISLABELLED.to_owned()],
                "{label}/{cte}"
            );
            // Decoding by another charset changes no meaning.
            assert_eq!(o.report.verdict, Verdict::Clean, "{label}/{cte}");
        }
    }
    // ISO-2022-JP with a UTF-8 footer added by a list server: both parts read.
    let mut jis_footer = enc(ISO_2022_JP, ja);
    jis_footer.extend_from_slice("-- \r\n配信停止はこちらまで\r\n".as_bytes());
    let o = run(&labelled("iso-2022-jp", "8bit", &jis_footer));
    assert!(o.text().contains("来週の会議の件です。"), "{:?}", o.text());
    assert!(o.text().contains("配信停止はこちらまで"), "{:?}", o.text());
    assert!(!o.text().contains('\u{FFFD}'));
    // Correct labels are not warned about.
    for (label, bytes) in [
        ("shift_jis", enc(SHIFT_JIS, ja)),
        ("iso-2022-jp", enc(ISO_2022_JP, ja)),
        ("euc-jp", enc(EUC_JP, "髙橋様 来週の会議の件です。")),
    ] {
        let o = run(&labelled(label, "8bit", &bytes));
        assert!(
            o.report.warnings.is_empty(),
            "{label}: {:?}",
            o.report.warnings
        );
        assert!(o.text().contains("来週の会議の件です。"), "{label}");
    }
}

#[test]
fn jis_x_0212_and_ibm_extension_characters() {
    // JIS X 0212 (ISO-2022-JP-1 / CP50220 decoders): 丂 0x3021, 丄 0x3022.
    let o = run(&labelled(
        "ISO-2022-JP",
        "7bit",
        b"\x1b$(D0!0\"\x1b(B \x1b$B4A;z\x1b(B\r\n",
    ));
    assert!(o.text().contains("丂丄 漢字"), "{:?}", o.text());
    // CP932 IBM extension rows 0xFA-0xFC (ⅰ ￤ № U+FA20 髙) in Shift_JIS, and their NEC-selected
    // forms in ISO-2022-JP (rows 89-92) as CP50220 writes them.
    let sjis = b"\xfa\x40\xfa\x55\xfa\x59\xfb\x9f\xfb\xfc\r\n";
    let o = run(&labelled("Shift_JIS", "8bit", sjis));
    assert!(o.text().contains("ⅰ￤№\u{FA20}髙"), "{:?}", o.text());
    assert!(o.report.warnings.is_empty());
    let o = run(&labelled("iso-2022-jp", "7bit", b"\x1b$B|q|b\x1b(B\r\n"));
    assert!(o.text().contains("ⅰ髙"), "{:?}", o.text());
}

// --- mail items of issue 8 ------------------------------------------------------------------------

#[test]
fn links_in_the_subject_follow_the_link_policy() {
    let subject = format!(
        "=?UTF-8?B?{}?=",
        b64("【重要】https://login.bank.example/verify を確認してください".as_bytes())
    );
    let raw = format!("From: a@example.jp\r\nSubject: {subject}\r\n\r\nbody\r\n");
    let o = run(raw.as_bytes());
    assert_eq!(
        o.subject(),
        "【重要】hxxps://login[.]bank[.]example/verify を確認してください"
    );
    assert!(!o.raw().contains("bank.example"), "{}", o.raw());
    let item = o
        .report
        .items
        .iter()
        .find(|i| i.path == "header/Subject")
        .expect("a report item for the Subject");
    assert_eq!(item.threats, vec![threats::LINK_REWRITTEN.to_owned()]);
    assert_eq!(o.report.verdict, Verdict::Sanitized);
    assert!(o.header("X-Mugai-Sanitized").unwrap().contains("REP_LINK"));
    assert!(o.text().contains("ヘッダー Subject"), "{}", o.text());
    // Removed by policy; kept by policy (and then not reported).
    let mut policy = Policy::default();
    policy.links.mode = LinkMode::Remove;
    let o = run_with(raw.as_bytes(), &policy);
    assert_eq!(o.subject(), "【重要】[link removed] を確認してください");
    policy.links.mode = LinkMode::Keep;
    let o = run_with(raw.as_bytes(), &policy);
    assert!(o.subject().contains("https://login.bank.example/verify"));
    assert_eq!(o.report.verdict, Verdict::Clean);
}
