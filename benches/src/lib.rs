//! Sample builders for Mugai's throughput benchmarks.
//!
//! Everything is generated, deterministic and inert:
//! - [`newsletter_html`]: a ~50 KB municipal newsletter in HTML (Japanese paragraphs, layout
//!   and data tables, lists, many links, a tracking pixel), as a UTF-8 string.
//! - [`newsletter_mail`]: that newsletter as a `multipart/alternative` mail whose HTML part is
//!   ISO-2022-JP (7bit), the way Japanese mailers still send it.
//! - [`attachments_mail`]: a ~5 MB mail with a short ISO-2022-JP text body and several PNG and
//!   JPEG attachments (noisy pixels so that they do not compress away).
//!
//! Used by `benches/mail.rs` (criterion) and `src/bin/mailbench.rs` (a plain table).

use std::fmt::Write as _;

/// Sentences of the kind a city newsletter is made of; cycled to build paragraphs.
const SENTENCES: [&str; 12] = [
    "市民の皆さまへ、今月の市政だよりをお届けします。",
    "令和七年度の住民税の納付期限は六月三十日（月）です。",
    "口座振替をご希望の方は、市役所税務課または最寄りの支所でお手続きください。",
    "子育て支援センターでは、毎週水曜日に親子ふれあい広場を開催しています。",
    "参加費は無料ですが、定員は先着二十組となっておりますので、事前にお申し込みください。",
    "市立図書館の開館時間は、平日午前九時から午後八時まで、土日祝日は午後五時までです。",
    "台風シーズンを前に、ハザードマップで避難所と避難経路をご確認ください。",
    "マイナンバーカードの休日交付窓口を、第二・第四日曜日に開設します。",
    "ごみの分別ルールが四月から一部変わりました。詳しくは下記の表をご覧ください。",
    "高齢者向けのインフルエンザ予防接種の費用助成は、十月一日から開始します。",
    "市民プールは七月十九日から八月三十一日まで営業します（雨天時は休業）。",
    "お問い合わせは、各担当課までお電話またはメールでご連絡ください。",
];

const EVENTS: [(&str, &str, &str); 6] = [
    (
        "7月5日（土）",
        "夏まつり実行委員会説明会",
        "市民会館 2階 会議室A",
    ),
    (
        "7月12日（土）",
        "防災訓練（地域合同）",
        "中央公園 多目的広場",
    ),
    (
        "7月20日（日）",
        "子ども科学教室「水のふしぎ」",
        "科学館 実験室",
    ),
    (
        "8月2日（土）",
        "花火大会（荒天時は翌日）",
        "河川敷 第二駐車場付近",
    ),
    (
        "8月9日（土）",
        "健康づくりウォーキング",
        "市役所 正面玄関 集合",
    ),
    (
        "8月23日（土）",
        "地域猫ボランティア講習会",
        "保健センター 1階",
    ),
];

/// A ~50 KB (UTF-8) newsletter in HTML: what a mail client would receive as text/html.
pub fn newsletter_html() -> String {
    let mut h = String::with_capacity(60_000);
    h.push_str(
        "<!DOCTYPE html>\n<html lang=\"ja\"><head><meta charset=\"iso-2022-jp\">\n\
         <title>市政だより 7月号</title>\n<style type=\"text/css\">\n\
         body{margin:0;padding:0;font-family:'Hiragino Kaku Gothic ProN',Meiryo,sans-serif}\n\
         .box{border:1px solid #ccc;padding:8px} td{font-size:14px;line-height:1.6}\n\
         </style></head>\n<body bgcolor=\"#ffffff\">\n\
         <table width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" border=\"0\"><tr><td align=\"center\">\n\
         <table width=\"640\" cellpadding=\"0\" cellspacing=\"0\" border=\"0\">\n",
    );
    let mut section = 0usize;
    while h.len() < 48_000 {
        section += 1;
        let _ = write!(
            h,
            "<tr><td style=\"padding:16px 24px\">\n<h2 style=\"color:#0a5;font-size:18px\">\
             ■ お知らせ {section}：{}</h2>\n",
            SENTENCES.get(section % SENTENCES.len()).unwrap_or(&"")
        );
        for p in 0..3 {
            h.push_str("<p>");
            for k in 0..4 {
                let s = SENTENCES
                    .get((section * 7 + p * 3 + k) % SENTENCES.len())
                    .unwrap_or(&"");
                // Source line breaks inside Japanese text, as HTML mailers wrap them.
                let _ = writeln!(h, "{s}");
            }
            let _ = writeln!(
                h,
                "詳しくは<a href=\"https://www.city.example.lg.jp/news/{section}/{p}.html\" \
                 target=\"_blank\" style=\"color:#06c\">こちらのページ</a>をご覧ください。</p>"
            );
        }
        if section.is_multiple_of(2) {
            h.push_str(
                "<table class=\"box\" width=\"100%\" border=\"1\" cellspacing=\"0\">\n\
                 <tr><th>日付</th><th>行事</th><th>会場</th></tr>\n",
            );
            for (d, e, v) in EVENTS {
                let _ = writeln!(h, "<tr><td>{d}</td><td>{e}</td><td>{v}</td></tr>");
            }
            h.push_str("</table>\n");
        } else {
            h.push_str("<ul>\n");
            for (d, e, _) in EVENTS.iter().take(4) {
                let _ = writeln!(h, "  <li>{d}&nbsp;{e}</li>");
            }
            h.push_str("</ul>\n");
        }
        let _ = write!(
            h,
            "<p style=\"font-size:12px\">担当：市民協働課 &#9742; 03-1234-{:04}<br>\n\
             メール：<a href=\"mailto:kyodo{section}@city.example.lg.jp\">\
             kyodo{section}@city.example.lg.jp</a></p>\n</td></tr>\n",
            1000 + section
        );
    }
    h.push_str(
        "<tr><td style=\"padding:16px 24px;font-size:12px;color:#666\">\n\
         配信停止は <a href=\"https://mail.city.example.lg.jp/unsubscribe?id=12345&amp;k=abc\">\
         https://mail.city.example.lg.jp/unsubscribe?id=12345&amp;k=abc</a> から。<br>\n\
         &copy; 2025 Example City. All rights reserved.\n\
         <img src=\"https://track.example.com/open.gif?u=12345\" width=\"1\" height=\"1\" alt=\"\">\n\
         </td></tr>\n</table>\n</td></tr></table>\n</body></html>\n",
    );
    h
}

/// Encodes `text` as ISO-2022-JP line by line (each line returns to ASCII, as RFC 1468 wants).
pub fn iso_2022_jp(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let line = line.strip_suffix('\n').unwrap_or(line);
        let (bytes, _, _) = encoding_rs::ISO_2022_JP.encode(line);
        out.extend_from_slice(&bytes);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// An RFC 2047 encoded word in ISO-2022-JP.
fn encoded_word(s: &str) -> String {
    let (bytes, _, _) = encoding_rs::ISO_2022_JP.encode(s);
    let mut b64 = Vec::new();
    base64_lines(&bytes, &mut b64);
    format!(
        "=?ISO-2022-JP?B?{}?=",
        String::from_utf8_lossy(&b64).trim_end()
    )
}

fn headers(out: &mut Vec<u8>, subject: &str, content_type: &str) {
    let subject = encoded_word(subject);
    let from = encoded_word("市役所だより");
    out.extend_from_slice(
        format!(
            "Return-Path: <news@city.example.lg.jp>\r\n\
             Received: from mx.example.net (mx.example.net [192.0.2.10])\r\n\
             \tby gw.example.lg.jp with ESMTPS id 4Zx9; Tue, 1 Jul 2025 09:00:00 +0900\r\n\
             From: {from} <news@city.example.lg.jp>\r\n\
             To: staff@city.example.lg.jp\r\n\
             Subject: {subject}\r\n\
             Date: Tue, 1 Jul 2025 09:00:00 +0900\r\n\
             Message-ID: <20250701090000.12345@city.example.lg.jp>\r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: {content_type}\r\n\r\n"
        )
        .as_bytes(),
    );
}

/// The newsletter as a ~50 KB `multipart/alternative` mail: a short text/plain part and the
/// HTML part, both ISO-2022-JP, 7bit.
pub fn newsletter_mail() -> Vec<u8> {
    let html = newsletter_html();
    let mut m = Vec::with_capacity(html.len() + 4096);
    headers(
        &mut m,
        "市政だより 7月号",
        "multipart/alternative; boundary=\"==b1==\"",
    );
    m.extend_from_slice(
        b"--==b1==\r\nContent-Type: text/plain; charset=ISO-2022-JP\r\n\
          Content-Transfer-Encoding: 7bit\r\n\r\n",
    );
    m.extend_from_slice(&iso_2022_jp(
        "市政だより 7月号\nHTML版をご覧ください。\nhttps://www.city.example.lg.jp/news/\n",
    ));
    m.extend_from_slice(
        b"\r\n--==b1==\r\nContent-Type: text/html; charset=ISO-2022-JP\r\n\
          Content-Transfer-Encoding: 7bit\r\n\r\n",
    );
    m.extend_from_slice(&iso_2022_jp(&html));
    m.extend_from_slice(b"\r\n--==b1==--\r\n");
    m
}

/// Deterministic noise (xorshift), so images do not compress away and runs are comparable.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u8 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 24) as u8
    }
}

/// An RGB photo-like image: gradients plus noise.
fn noisy_rgb(w: u32, h: u32, seed: u64) -> image::RgbImage {
    let mut n = Noise(seed | 1);
    image::RgbImage::from_fn(w, h, |x, y| {
        let r = (x * 255 / w.max(1)) as u8;
        let g = (y * 255 / h.max(1)) as u8;
        image::Rgb([
            r.wrapping_add(n.next() / 4),
            g.wrapping_add(n.next() / 4),
            n.next() / 2,
        ])
    })
}

/// A PNG of `w`×`h` noisy pixels.
pub fn png(w: u32, h: u32, seed: u64) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let _ = noisy_rgb(w, h, seed).write_to(&mut out, image::ImageFormat::Png);
    out.into_inner()
}

/// A JPEG (quality 90) of `w`×`h` noisy pixels.
pub fn jpeg(w: u32, h: u32, seed: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90);
    let _ = noisy_rgb(w, h, seed).write_with_encoder(enc);
    out
}

fn base64_lines(data: &[u8], out: &mut Vec<u8>) {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let sym = |i: u32| *T.get((i & 63) as usize).unwrap_or(&b'A');
    let mut col = 0;
    for chunk in data.chunks(3) {
        let b = |i: usize| u32::from(*chunk.get(i).unwrap_or(&0));
        let v = (b(0) << 16) | (b(1) << 8) | b(2);
        out.push(sym(v >> 18));
        out.push(sym(v >> 12));
        out.push(if chunk.len() > 1 { sym(v >> 6) } else { b'=' });
        out.push(if chunk.len() > 2 { sym(v) } else { b'=' });
        col += 4;
        if col == 76 {
            out.extend_from_slice(b"\r\n");
            col = 0;
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// A ~5 MB mail: a short ISO-2022-JP text body and three JPEG and two PNG attachments.
pub fn attachments_mail() -> Vec<u8> {
    let mut m = Vec::with_capacity(5_500_000);
    headers(
        &mut m,
        "現地調査の写真",
        "multipart/mixed; boundary=\"==m1==\"",
    );
    m.extend_from_slice(
        b"--==m1==\r\nContent-Type: text/plain; charset=ISO-2022-JP\r\n\
          Content-Transfer-Encoding: 7bit\r\n\r\n",
    );
    m.extend_from_slice(&iso_2022_jp(
        "お疲れさまです。\n現地調査の写真を送ります。\nご確認をお願いいたします。\n",
    ));
    let files: [(&str, &str, Vec<u8>); 5] = [
        ("site1.jpg", "image/jpeg", jpeg(900, 700, 1)),
        ("site2.jpg", "image/jpeg", jpeg(900, 700, 2)),
        ("site3.jpg", "image/jpeg", jpeg(900, 700, 3)),
        ("map.png", "image/png", png(480, 360, 4)),
        ("plan.png", "image/png", png(480, 360, 5)),
    ];
    for (name, mime, data) in files {
        m.extend_from_slice(
            format!(
                "\r\n--==m1==\r\nContent-Type: {mime}; name=\"{name}\"\r\n\
                 Content-Disposition: attachment; filename=\"{name}\"\r\n\
                 Content-Transfer-Encoding: base64\r\n\r\n"
            )
            .as_bytes(),
        );
        base64_lines(&data, &mut m);
    }
    m.extend_from_slice(b"\r\n--==m1==--\r\n");
    m
}

/// The decoded text/html body of a mail (as the mail sanitizer sees it), if any.
pub fn html_body(mail: &[u8]) -> Option<String> {
    let msg = mail_parser::MessageParser::default().parse(mail)?;
    msg.body_html(0).map(|s| s.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_have_the_intended_size_and_decode() {
        let html = newsletter_html();
        assert!((45_000..60_000).contains(&html.len()), "{}", html.len());
        let mail = newsletter_mail();
        assert!((40_000..70_000).contains(&mail.len()), "{}", mail.len());
        let body = html_body(&mail).unwrap();
        assert!(body.contains("市政だより"));
        assert!(body.contains("住民税"));
    }
}
