use super::*;
use crate::policy::LinkMode;
use crate::threats;

fn policy(mode: LinkMode) -> Policy {
    let mut p = Policy::default();
    p.links.mode = mode;
    p
}

fn text(html: &str) -> String {
    html_to_text(html, &policy(LinkMode::Defang)).text
}

fn threats_of(html: &str) -> Vec<&'static str> {
    html_to_text(html, &policy(LinkMode::Defang)).threats
}

/// HTML snippet → expected text (defang mode). The trailing newline is implied.
const CASES: &[(&str, &str, &str)] = &[
    (
        "paragraphs",
        "<p>一段落目。</p><p>二段落目。</p>",
        "一段落目。\n\n二段落目。",
    ),
    (
        "br",
        "一行目<br>二行目<br/><br>四行目",
        "一行目\n二行目\n\n四行目",
    ),
    (
        "japanese wrapped in source",
        "<p>市民の皆さまへ、\n今月の市政だよりを\r\n  お届けします。</p>",
        "市民の皆さまへ、今月の市政だよりをお届けします。",
    ),
    (
        "latin wrapped in source",
        "<p>Dear   citizens,\n  this is\tthe news.</p>",
        "Dear citizens, this is the news.",
    ),
    (
        "explicit space between japanese stays",
        "<p>東京 大阪</p>",
        "東京 大阪",
    ),
    (
        "mixed japanese and latin across a line break",
        "<p>受付は\nWeb から</p>",
        "受付は Web から",
    ),
    (
        "headings",
        "<h1>市政だより</h1><p>本文</p><h2>お知らせ</h2>本文2",
        "市政だより\n\n本文\n\nお知らせ\n\n本文2",
    ),
    (
        "horizontal rule",
        "<p>上</p><hr>下",
        "上\n\n----------------------------------------\n下",
    ),
    (
        "inline elements keep spaces",
        "<b>太字</b> と <i>斜体</i>",
        "太字 と 斜体",
    ),
    (
        "unordered list",
        "<p>持ち物：</p><ul><li>筆記用具</li><li>上履き</li></ul><p>以上</p>",
        "持ち物：\n\n・筆記用具\n・上履き\n\n以上",
    ),
    (
        "ordered list with start",
        "<ol start=\"3\"><li>三</li><li>四</li></ol>",
        "3. 三\n4. 四",
    ),
    (
        "nested lists",
        "<ul><li>A<ul><li>A1</li><li>A2</li></ul></li><li>B</li></ul>",
        "・A\n  ・A1\n  ・A2\n・B",
    ),
    (
        "unclosed li",
        "<ul><li>一<li>二<li>三</ul>",
        "・一\n・二\n・三",
    ),
    (
        "data table",
        "<table><tr><th>日付</th><th>行事</th></tr><tr><td>7月5日</td><td>説明会</td></tr>\
         <tr><td>7月12日</td><td></td></tr></table>",
        "日付 | 行事\n7月5日 | 説明会\n7月12日",
    ),
    (
        "table with empty leading cell and whitespace",
        "<table>\n <tr>\n  <td> </td>\n  <td>\n 値 </td>\n  <td>単位</td>\n </tr>\n</table>",
        "値 | 単位",
    ),
    (
        "spacer cells and spacer paragraphs leave nothing",
        "<p>&nbsp;</p><table><tr><td>&nbsp;</td><td>本文</td><td>&nbsp;</td></tr>\
         <tr><td width=\"10\">&nbsp;</td><td>a</td><td>&nbsp;</td><td>b</td></tr></table>",
        "本文\na | b",
    ),
    (
        "layout table cells with paragraphs",
        "<table><tr><td><p>左の段落</p><p>次の段落</p></td></tr></table>",
        "左の段落\n\n次の段落",
    ),
    (
        "nested tables",
        "<table><tr><td><table><tr><td>a</td><td>b</td></tr></table></td><td>c</td></tr></table>",
        "a | b\nc",
    ),
    (
        "pre keeps whitespace",
        "<p>前</p><pre>\n  line 1\n    line  2\n</pre><p>後</p>",
        "前\n\n  line 1\n    line  2\n\n後",
    ),
    (
        "character references",
        "&lt;tag&gt; &amp; &quot;q&quot; &#x3042;&#12356; &copy; &nbsp;x&nbsp;&nbsp;y &amp",
        "<tag> & \"q\" あい ©  x  y &",
    ),
    ("nbsp is a space", "単価&nbsp;100円", "単価 100円"),
    (
        "script and style hide their text",
        "<style>p{color:red}</style><p>見える</p><script>document.write('<p>x</p>')</script>\
         <script><!-- if (a<b) { alert('</p>') } --></script>終わり",
        "見える\n\n終わり",
    ),
    (
        "script end tag inside a string does not leak",
        "<script>var s = \"</scr\" + \"ipt>\"; hidden();</script>見える",
        "見える",
    ),
    (
        "comments",
        "前<!-- <script>alert(1)</script> 隠れ -->後",
        "前後",
    ),
    (
        "comment hiding a tag",
        "<!-- <p>隠れ</p> -->見える",
        "見える",
    ),
    (
        "bogus comment and cdata",
        "a<!DOCTYPE html>b<![CDATA[c]]>d<?php echo 1 ?>e",
        "abde",
    ),
    (
        "split script tag is text, not a script",
        "<scr<script>ipt>alert(1)</script>x",
        "ipt>alert(1)x",
    ),
    (
        "title is not body text",
        "<head><title>件名</title></head><body>本文</body>",
        "本文",
    ),
    (
        "textarea shows its text verbatim",
        "<textarea>\n<b>太字</b>\n</textarea>",
        "<b>太字</b>",
    ),
    (
        "template content is inert",
        "<template><p>隠れ</p></template>見える",
        "見える",
    ),
    (
        "unclosed tags and broken attributes",
        "<div><p>段落<b>太字<i>斜体</p><div class=\"x>閉じない",
        "段落太字斜体",
    ),
    ("stray end tags", "</p></li></table>本文</div>", "本文"),
    (
        "link with text",
        "詳しくは<a href=\"https://www.city.example.lg.jp/a\">こちら</a>へ",
        "詳しくはこちら (hxxps://www[.]city[.]example[.]lg[.]jp/a)へ",
    ),
    (
        "link whose text is the url",
        "<a href=\"https://example.jp/a\">https://example.jp/a</a>",
        "hxxps://example[.]jp/a",
    ),
    (
        "url anchor ending in a line break",
        "<a href=\"https://example.jp/\">https://example.jp/<br></a>次",
        "hxxps://example[.]jp/\n次",
    ),
    (
        "link text naming another host shows both",
        "<a href=\"https://evil.example/\">https://bank.example.jp/</a>",
        "hxxps://bank[.]example[.]jp/ (hxxps://evil[.]example/)",
    ),
    (
        "mailto and tel",
        "<a href=\"mailto:info@city.example.jp\">info@city.example.jp</a> \
         <a href=\"tel:0312345678\">電話</a>",
        "mailto:info@city[.]example[.]jp 電話 (tel:0312345678)",
    ),
    (
        "relative, fragment and javascript hrefs are not printed",
        "<a href=\"/a\">相対</a> <a href=\"#top\">上へ</a> <a href=\"javascript:x()\">押す</a>",
        "相対 上へ 押す",
    ),
    (
        "plain text url in a text node",
        "<p>詳細はhttps://example.jp/aをご覧ください。</p>",
        "詳細はhxxps://example[.]jp/aをご覧ください。",
    ),
    (
        "image alt text, never the image url",
        "<img src=\"https://t.example/p.gif\" alt=\"ロゴ\"><img src=\"https://t.example/q.gif\">",
        "[ロゴ]",
    ),
    (
        "image link without alt shows the link",
        "<a href=\"https://example.jp/\"><img src=\"cid:x\"></a>",
        "hxxps://example[.]jp/",
    ),
    (
        "blockquote",
        "<p>引用：</p><blockquote>元のメール<br>二行目</blockquote>返信",
        "引用：\n\n> 元のメール\n> 二行目\n\n返信",
    ),
    (
        "invisible and bidi controls are dropped",
        "a\u{202E}b\u{200B}c\u{7}d",
        "abcd",
    ),
    (
        "plaintext element",
        "<p>x</p><plaintext><b>y</b>\n</p>",
        "x\n\n<b>y</b>\n</p>",
    ),
    ("empty input", "", ""),
];

#[test]
fn snippets_convert_as_expected() {
    let mut failures = Vec::new();
    for (name, html, want) in CASES {
        let got = text(html);
        let want = if want.is_empty() {
            String::new()
        } else {
            format!("{want}\n")
        };
        if got != want {
            failures.push(format!(
                "{name}:\n  html: {html:?}\n  want: {want:?}\n  got:  {got:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn japanese_newsletter_reads_well() {
    let html = "<html><head><style>td{font-size:14px}</style></head><body>\
        <table width=\"600\"><tr><td>\n\
        <h2>■ 防災訓練のお知らせ</h2>\n\
        <p>台風シーズンを前に、\n地域合同の防災訓練を実施します。\n\
        <br>どなたでも参加できます。</p>\n\
        <table border=\"1\"><tr><th>日時</th><th>会場</th></tr>\n\
        <tr><td>7月12日（土）10:00</td><td>中央公園</td></tr></table>\n\
        <p>申込は<a href=\"https://www.city.example.lg.jp/bousai\">申込フォーム</a>から。</p>\n\
        </td></tr></table></body></html>";
    assert_eq!(
        text(html),
        "■ 防災訓練のお知らせ\n\n\
         台風シーズンを前に、地域合同の防災訓練を実施します。\n\
         どなたでも参加できます。\n\n\
         日時 | 会場\n\
         7月12日（土）10:00 | 中央公園\n\n\
         申込は申込フォーム (hxxps://www[.]city[.]example[.]lg[.]jp/bousai)から。\n"
    );
}

#[test]
fn nothing_of_the_markup_survives() {
    let html = "<style>@import url(https://t.example/a.css); .x{}</style>\
        <script>stealCookies()</script><!-- secret --><p onclick=\"evil()\" style=\"color:red\">\
        text</p><iframe src=\"https://x.example\">fallback</iframe><noscript>ns</noscript>";
    let t = text(html);
    for bad in [
        "<",
        ">",
        "stealCookies",
        "secret",
        "evil",
        "color",
        "import",
        "fallback",
    ] {
        assert!(!t.contains(bad), "{bad:?} survived in {t:?}");
    }
    assert!(t.contains("text"));
}

#[test]
fn each_threat_is_detected() {
    let cases: &[(&str, &str)] = &[
        ("<script>x()</script>", threats::HTML_SCRIPT),
        ("<SCRIPT src=x.js></SCRIPT>", threats::HTML_SCRIPT),
        (
            "<a href=\"javascript:alert(1)\">x</a>",
            threats::HTML_SCRIPT,
        ),
        (
            "<a href=\" JAVA&#x09;SCRIPT:alert(1)\">x</a>",
            threats::HTML_SCRIPT,
        ),
        ("<a href=\"vbscript:msgbox\">x</a>", threats::HTML_SCRIPT),
        ("<img src=x onerror=alert(1)>", threats::HTML_EVENT_HANDLER),
        ("<body onload=\"x()\">", threats::HTML_EVENT_HANDLER),
        (
            "<iframe src=\"https://x.example\"></iframe>",
            threats::HTML_EMBED,
        ),
        ("<frameset><frame src=a></frameset>", threats::HTML_EMBED),
        ("<object data=x></object>", threats::HTML_EMBED),
        ("<embed src=x.swf>", threats::HTML_EMBED),
        ("<applet code=x></applet>", threats::HTML_EMBED),
        (
            "<form action=\"https://x.example/\"><input name=p></form>",
            threats::HTML_FORM,
        ),
        ("<input type=password>", threats::HTML_FORM),
        (
            "<meta http-equiv=\"Refresh\" content=\"0;url=https://x.example\">",
            threats::HTML_META_REFRESH,
        ),
        (
            "<base href=\"https://x.example/\">",
            threats::HTML_META_REFRESH,
        ),
        (
            "<img src=\"https://t.example/o.gif\" width=1 height=1>",
            threats::HTML_REMOTE_RESOURCE,
        ),
        (
            "<img src=\"//t.example/o.gif\">",
            threats::HTML_REMOTE_RESOURCE,
        ),
        (
            "<img srcset=\"a.png 1x, https://t.example/b.png 2x\">",
            threats::HTML_REMOTE_RESOURCE,
        ),
        (
            "<link rel=stylesheet href=\"https://t.example/a.css\">",
            threats::HTML_REMOTE_RESOURCE,
        ),
        (
            "<table background=\"http://t.example/bg.png\">",
            threats::HTML_REMOTE_RESOURCE,
        ),
        (
            "<div style=\"background:url(https://t.example/p.gif)\">x</div>",
            threats::HTML_REMOTE_RESOURCE,
        ),
        (
            "<style>.a{background:url('//t.example/p.gif')}</style>",
            threats::HTML_REMOTE_RESOURCE,
        ),
        (
            "<style>@import \"https://t.example/a.css\";</style>",
            threats::HTML_REMOTE_RESOURCE,
        ),
        (
            "<svg><image href=\"https://t.example/p.png\"/></svg>",
            threats::HTML_REMOTE_RESOURCE,
        ),
    ];
    for (html, id) in cases {
        assert!(threats_of(html).contains(id), "{id} not found in {html:?}");
    }
}

#[test]
fn clean_mail_html_has_no_threats() {
    let html = "<p style=\"color:#333\">本文 <a href=\"https://example.jp/\">リンク</a></p>\
        <img src=\"cid:logo@example\" alt=\"ロゴ\"><img src=\"data:image/png;base64,AAAA\">\
        <link rel=alternate href=\"https://example.jp/feed\"><!-- <script> -->\
        <p>javascript: の入門</p><div style=\"background:url(cid:bg)\">x</div>";
    assert_eq!(threats_of(html), Vec::<&str>::new());
}

#[test]
fn threats_inside_comments_or_raw_text_are_not_elements() {
    // A commented-out script is not a script element; the text of a title is not markup.
    assert!(!threats_of("<!-- <script>x()</script> -->").contains(&threats::HTML_SCRIPT));
    assert!(!threats_of("<title><iframe></title>").contains(&threats::HTML_EMBED));
}

#[test]
fn links_in_each_mode() {
    let html = "<a href=\"https://example.jp/a\">案内</a> と https://example.jp/b";
    let d = html_to_text(html, &policy(LinkMode::Defang));
    assert_eq!(
        d.text,
        "案内 (hxxps://example[.]jp/a) と hxxps://example[.]jp/b\n"
    );
    assert_eq!(d.links, 2);
    let k = html_to_text(html, &policy(LinkMode::Keep));
    assert_eq!(
        k.text,
        "案内 (https://example.jp/a) と https://example.jp/b\n"
    );
    assert_eq!(k.links, 0);
    let r = html_to_text(html, &policy(LinkMode::Remove));
    assert_eq!(r.text, "案内 ([link removed]) と [link removed]\n");
    assert_eq!(r.links, 2);
}

#[test]
fn href_urls_are_not_defanged_twice() {
    let t = text("<a href=\"mailto:a.b@example.jp?subject=x.y\">連絡</a>");
    assert_eq!(t, "連絡 (mailto:a[.]b@example[.]jp?subject=x.y)\n");
    let t = text("<a href=\"https://例え.jp/\">例</a>");
    assert_eq!(t, "例 (hxxps://例え[.]jp/)\n");
}

#[test]
fn deep_nesting_does_not_recurse_and_keeps_the_text() {
    let n = 50_000;
    let html = format!(
        "{}深い{}",
        "<div><ul><li><blockquote>".repeat(n),
        "</blockquote></li></ul></div>".repeat(n)
    );
    let t = text(&html);
    assert!(t.contains("深い"));
    // Prefixes are capped: the line holding the text is short.
    let line = t.lines().find(|l| l.contains("深い")).unwrap();
    assert!(line.len() < 100, "{line:?}");
    assert!(t.len() < 1000, "{}", t.len());
}

#[test]
fn ten_megabytes_of_divs_stay_linear_and_bounded() {
    // 10 MB of unclosed <div> plus text: must finish (linear) and produce little output.
    let html = "<div>x".repeat(10 * 1024 * 1024 / 6);
    let t = text(&html);
    assert_eq!(t.lines().count(), 10 * 1024 * 1024 / 6);
    assert!(t.len() <= html.len() / 2, "{}", t.len());
    // Closing tags that match nothing (the stack-search worst case).
    let html = format!("{}{}", "<ul>".repeat(300_000), "</ol>".repeat(300_000));
    assert_eq!(text(&html), "");
}

#[test]
fn output_is_proportional_to_input() {
    for unit in [
        "<br>",
        "<li>x",
        "<td>x",
        "<p>x",
        "<a href=\"https://a.b\">",
        "<img alt=a>",
        "&nbsp;",
    ] {
        let html = unit.repeat(50_000);
        let t = text(&html);
        assert!(
            t.len() <= html.len() * 4,
            "{unit}: {} from {}",
            t.len(),
            html.len()
        );
    }
}

#[test]
fn html_files_are_decoded_by_bom_meta_or_guess() {
    let (sjis, _, _) = encoding_rs::SHIFT_JIS.encode("<p>見積書</p>");
    let meta = [b"<meta charset=\"shift_jis\">".as_slice(), &sjis].concat();
    assert!(decode_html(&meta).contains("見積書"));
    let (euc, _, _) =
        encoding_rs::EUC_JP.encode("<p>市役所からのお知らせです。よろしくお願いします。</p>");
    assert!(decode_html(&euc).contains("市役所"));
    assert_eq!(decode_html("<p>ｘ</p>".as_bytes()), "<p>ｘ</p>");
    let bom = [b"\xEF\xBB\xBF".as_slice(), "<p>あ</p>".as_bytes()].concat();
    assert_eq!(decode_html(&bom), "<p>あ</p>");
}

#[test]
fn html_file_becomes_a_text_file_without_the_markup() {
    let (sjis, _, _) = encoding_rs::SHIFT_JIS.encode(
        "<html><head><meta charset=\"Shift_JIS\"><script>alert(1)</script></head>\
         <body onload=\"x()\"><p>見積書を送付します。</p></body></html>",
    );
    let out = crate::sanitize_file(&sjis, Some("mitsumori.html"), &Policy::default());
    let file = out.output.expect("an HTML file is converted, not blocked");
    assert!(file.name.ends_with(".txt"), "{}", file.name);
    let text = String::from_utf8(file.bytes.as_slice().to_vec()).unwrap();
    assert_eq!(text, "見積書を送付します。\n");
    let threats: Vec<&str> = out
        .report
        .items
        .iter()
        .flat_map(|i| i.threats.iter().map(String::as_str))
        .collect();
    assert!(threats.contains(&threats::HTML_SCRIPT), "{threats:?}");
    assert!(
        threats.contains(&threats::HTML_EVENT_HANDLER),
        "{threats:?}"
    );
}

#[test]
fn text_the_reader_never_sees_is_not_shown() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "preheader",
            "<body><div style=\"display:none;font-size:1px;color:#fff;line-height:1px;max-height:0px;max-width:0px;opacity:0;overflow:hidden;mso-hide:all\">今だけ！当選のお知らせ&nbsp;&zwnj;</div><p>本文です。</p></body>",
            "本文です。",
        ),
        (
            "display none with spaces and case",
            "<p>見える<span style=\"DISPLAY : None !important\">見えない</span>文</p>",
            "見える文",
        ),
        (
            "visibility",
            "<p>a<span style='visibility:hidden'>b</span>c</p>",
            "ac",
        ),
        (
            "mso-hide",
            "<p>a<span style='mso-hide:all'>b</span>c</p>",
            "ac",
        ),
        ("hidden attribute", "<p>a<span hidden>b</span>c</p>", "ac"),
        (
            "zero box clipped",
            "<p>a</p><div style='max-height:0;overflow:hidden'>b</div><p>c</p>",
            "a\n\nc",
        ),
        (
            "zero font and line height",
            "<p>a<span style='font-size:0;line-height:0'>b</span>c</p>",
            "ac",
        ),
        (
            "nested same name inside hidden",
            "<div style='display:none'><div>x</div>y<div>z</div></div><p>shown</p>",
            "shown",
        ),
        (
            "raw text and lists inside hidden",
            "<div hidden><style>p{}</style><ul><li>x</li></ul>y</div><p>shown</p>",
            "shown",
        ),
        (
            "unclosed hidden span ends with its parent",
            "<table><tr><td><span style='display:none'>x</td><td>shown</td></tr></table>",
            "shown",
        ),
        (
            "optional end tags",
            "<p style='display:none'>x<p>shown<ul><li hidden>y<li>z</ul>",
            "shown\n\n・z",
        ),
        (
            "hidden image alt and link",
            "<p>a<img alt='隠し' style='display:none'><span hidden><a href='https://x.example/'>l</a></span>b</p>",
            "ab",
        ),
        (
            "not hidden: a zero box that does not clip, font-size 0 alone",
            "<div style='height:0'>a</div><div style='font-size:0'><span style='font-size:14px'>b</span></div>",
            "a\nb",
        ),
    ];
    for (what, html, want) in cases {
        assert_eq!(text(html), format!("{want}\n"), "{what}");
    }
    // The links inside hidden text are not counted; threats inside it are still reported.
    let h = html_to_text(
        "<div style='display:none'><a href='https://x.example/'>x</a><img src='http://t.example/p.gif'></div>ok",
        &policy(LinkMode::Defang),
    );
    assert_eq!(h.text, "ok\n");
    assert_eq!(h.links, 0);
    assert!(h.threats.contains(&threats::HTML_REMOTE_RESOURCE));
}
