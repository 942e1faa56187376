#!/usr/bin/env python3
"""Generate the mail corpus: corpus/samples/mail/*.eml.

Deterministic (no clocks, no random boundaries) and inert: the "executables" are a few bytes
of an MZ/PE header stub that no loader would run, the scripts call functions that do not exist,
and every host name is under .example. Messages are built by hand as bytes, because several of
them are deliberately malformed in ways Python's email generator would repair.

Run from anywhere:  python3 corpus/gen/mail.py
The manifest (corpus/manifest/mail.toml) is maintained by hand next to this script.
"""

from __future__ import annotations

import base64
import hashlib
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "samples" / "mail"

DATE = "Date: Mon, 02 Nov 2026 09:30:00 +0900"
FROM = "From: =?UTF-8?B?5biC5b255omA?= <sender@city.example>"
TO = "To: staff@lg.example"

# A PE-looking stub: DOS header magic, e_lfanew pointing at a "PE\0\0" signature, DOS stub text.
# It is not a runnable program (no sections, no code), but every sniffer calls it a PE.
PE_STUB = (
    b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00"
    + b"\xb8" + b"\x00" * 7 + b"\x40" + b"\x00" * 35
    + b"\x40\x00\x00\x00"  # e_lfanew = 0x40
    + b"PE\x00\x00\x4c\x01\x00\x00"  # signature, machine i386, zero sections
    + b"This program cannot be run in DOS mode.\r\r\n$"
    + b"\x00" * 24
)


def crlf(*lines: str | bytes) -> bytes:
    """Join header/body lines with CRLF; str lines are UTF-8."""
    out = []
    for line in lines:
        out.append(line.encode("utf-8") if isinstance(line, str) else line)
    return b"\r\n".join(out) + b"\r\n"


def b64(data: bytes, width: int = 76) -> bytes:
    enc = base64.b64encode(data)
    return b"\r\n".join(enc[i : i + width] for i in range(0, len(enc), width))


def rfc2047(text: str, charset: str = "UTF-8") -> str:
    if charset.upper() == "ISO-2022-JP":
        raw = to_iso2022jp(text)
    else:
        raw = text.encode(charset if charset.upper() != "SHIFT_JIS" else "cp932")
    return f"=?{charset}?B?{base64.b64encode(raw).decode()}?="


def to_iso2022jp(text: str) -> bytes:
    """ISO-2022-JP as Japanese mailers really send it: CP932 characters (including NEC row 13,
    ①㈱) mapped to their JIS row/cell. Python's iso2022_jp codec refuses those characters."""
    out = bytearray()
    in_jis = False
    for ch in text:
        sj = ch.encode("cp932")
        if len(sj) == 1:
            if in_jis:
                out += b"\x1b(B"
                in_jis = False
            out += sj
            continue
        c1, c2 = sj[0], sj[1]
        base = 0x70 if c1 < 0xA0 else 0xB0
        if c2 < 0x9F:
            j1 = (c1 - base) * 2 - 1
            j2 = c2 - (0x20 if c2 > 0x7F else 0x1F)
        else:
            j1 = (c1 - base) * 2
            j2 = c2 - 0x7E
        if not (0x21 <= j1 <= 0x7E and 0x21 <= j2 <= 0x7E):
            raise ValueError(f"{ch!r} has no ISO-2022-JP form")
        if not in_jis:
            out += b"\x1b$B"
            in_jis = True
        out += bytes([j1, j2])
    if in_jis:
        out += b"\x1b(B"
    return bytes(out)


def to_utf7_strict(text: str) -> bytes:
    """UTF-7 with '<' and '>' base64-encoded too (the classic filter-evasion form)."""
    raw = text.encode("utf-7")
    return raw.replace(b"<", b"+ADw-").replace(b">", b"+AD4-")


SAMPLES: dict[str, bytes] = {}


def sample(name: str):
    def register(fn):
        SAMPLES[name] = fn()
        return fn

    return register


@sample("html_iso2022jp_script.eml")
def _():
    html = (
        "<html><head><script>window.mugaiXssMarker('cookie')</script></head>"
        '<body onload="mugaiOnloadMarker()">'
        "<p>お世話になっております。①本日の会議資料を㈱ハマダよりお送りします。</p>"
        '<p><a href="http://phish.example/login" onclick="mugaiClickMarker()">資料はこちら</a></p>'
        '<img src="http://tracker.example/p.gif" width=1 height=1>'
        "</body></html>"
    )
    return crlf(
        DATE,
        FROM,
        TO,
        "Subject: " + rfc2047("①会議資料の送付（㈱ハマダ）", "ISO-2022-JP"),
        "Message-ID: <corpus.html-iso2022jp@city.example>",
        "MIME-Version: 1.0",
        "Content-Type: text/html; charset=ISO-2022-JP",
        "Content-Transfer-Encoding: 7bit",
        "",
        to_iso2022jp(html),
    )


@sample("iso2022jp_nec_chars.eml")
def _():
    body = "①から⑳までの番号と㈱・㈲・№の表記を確認してください。\n以上です。\n"
    return crlf(
        DATE,
        FROM,
        TO,
        "Subject: " + rfc2047("㈱ＡＢＣ商事より①見積書のご案内", "ISO-2022-JP"),
        "Message-ID: <corpus.iso2022jp-nec@city.example>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=ISO-2022-JP",
        "Content-Transfer-Encoding: 7bit",
        "",
        *[to_iso2022jp(line) for line in body.splitlines()],
    )


@sample("sjis_cp932_body.eml")
def _():
    body = "髙橋様\r\n①住民票の写し　②戸籍謄本\r\n㈱髙島屋の件もよろしくお願いします。\r\n"
    return crlf(
        DATE,
        FROM,
        TO,
        "Subject: " + rfc2047("髙橋様へ①書類の件", "Shift_JIS"),
        "Message-ID: <corpus.sjis@city.example>",
        "MIME-Version: 1.0",
        # Declared Shift_JIS, really CP932 (the usual case): ①㈱髙 are CP932 extensions.
        "Content-Type: text/plain; charset=Shift_JIS",
        "Content-Transfer-Encoding: 8bit",
        "",
        body.encode("cp932"),
    )


@sample("eucjp_body.eml")
def _():
    body = "住民税の納付期限についてお知らせします。\r\n期限は十一月三十日です。\r\n"
    return crlf(
        DATE,
        FROM,
        TO,
        "Subject: " + rfc2047("納付期限のお知らせ", "EUC-JP"),
        "Message-ID: <corpus.eucjp@city.example>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=EUC-JP",
        "Content-Transfer-Encoding: 8bit",
        "",
        body.encode("euc_jp"),
    )


@sample("utf7_html.eml")
def _():
    html = (
        "<html><body><p>会議のお知らせ：明日十時から第二会議室です。</p>"
        "<script>mugaiUtf7Marker()</script>"
        '<img src="http://tracker.example/u7.gif"></body></html>'
    )
    return crlf(
        DATE,
        FROM,
        TO,
        "Subject: " + rfc2047("会議のお知らせ"),
        "Message-ID: <corpus.utf7@city.example>",
        "MIME-Version: 1.0",
        "Content-Type: text/html; charset=UTF-7",
        "Content-Transfer-Encoding: 7bit",
        "",
        to_utf7_strict(html),
    )


def mixed(subject: str, mid: str, body: str, parts: list[bytes], boundary: str = "==b1==") -> bytes:
    out = crlf(
        DATE,
        FROM,
        TO,
        "Subject: " + rfc2047(subject),
        f"Message-ID: <corpus.{mid}@city.example>",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/mixed; boundary="{boundary}"',
        "",
        "This is a multi-part message in MIME format.",
        f"--{boundary}",
        "Content-Type: text/plain; charset=UTF-8",
        "Content-Transfer-Encoding: base64",
        "",
        b64(body.encode("utf-8")),
    )
    for p in parts:
        out += crlf(f"--{boundary}") + p
    return out + crlf(f"--{boundary}--")


@sample("exe_named_pdf.eml")
def _():
    att = crlf(
        'Content-Type: application/pdf; name="=?UTF-8?B?6KuL5rGC5pu4LnBkZg==?="',
        "Content-Transfer-Encoding: base64",
        "Content-Disposition: attachment; filename*=UTF-8''%E8%AB%8B%E6%B1%82%E6%9B%B8.pdf",
        "",
        b64(PE_STUB),
    )
    return mixed("請求書の送付", "exe-pdf", "請求書を添付いたします。ご確認ください。", [att])


@sample("rtlo_filename.eml")
def _():
    # "invoice\u202Egpj.exe" displays as "invoiceexe.jpg". Content is harmless text: the
    # name alone must get the part removed (or renamed) and the bidi control reported.
    att = crlf(
        "Content-Type: application/octet-stream",
        "Content-Transfer-Encoding: base64",
        "Content-Disposition: attachment; filename*=UTF-8''invoice%E2%80%AEgpj.exe",
        "",
        b64("これはテキストです。\n".encode("utf-8")),
    )
    return mixed("写真をお送りします", "rtlo", "写真を添付します。", [att])


@sample("nested_rfc822.eml")
def _():
    inner = mixed(
        "転送元のメッセージ",
        "inner",
        "内側のメッセージ本文です。",
        [
            crlf(
                'Content-Type: application/x-msdownload; name="setup.exe"',
                "Content-Transfer-Encoding: base64",
                'Content-Disposition: attachment; filename="setup.exe"',
                "",
                b64(PE_STUB),
            )
        ],
        boundary="==inner==",
    )
    part = crlf(
        "Content-Type: message/rfc822",
        'Content-Disposition: attachment; filename="forward.eml"',
        "",
    ) + inner
    return mixed("転送します", "outer", "外側のメッセージ本文です。", [part])


@sample("deep_multipart.eml")
def _():
    depth = 50
    out = crlf(
        DATE,
        FROM,
        TO,
        "Subject: " + rfc2047("深い入れ子のメール"),
        "Message-ID: <corpus.deep@city.example>",
        "MIME-Version: 1.0",
        'Content-Type: multipart/mixed; boundary="d0"',
        "",
        "--d0",
        "Content-Type: text/plain; charset=UTF-8",
        "Content-Transfer-Encoding: base64",
        "",
        b64("最上位の本文です。".encode("utf-8")),
    )
    for i in range(1, depth + 1):
        out += crlf(f"--d{i - 1}", f'Content-Type: multipart/mixed; boundary="d{i}"', "")
    out += crlf(
        f"--d{depth}",
        "Content-Type: text/plain; charset=UTF-8",
        "Content-Transfer-Encoding: base64",
        "",
        b64("深い階層の本文DEEPMARKER".encode("utf-8")),
    )
    for i in range(depth, -1, -1):
        out += crlf(f"--d{i}--")
    return out


@sample("many_parts.eml")
def _():
    parts = [
        crlf("Content-Type: text/plain; charset=US-ASCII", "", f"p{i}") for i in range(2000)
    ]
    return mixed("部品の多いメール", "many", "二千個の部品を含むメールです。", parts, boundary="m")


@sample("multipart_signed.eml")
def _():
    sig = bytes((i * 37 + 11) % 256 for i in range(300))
    return crlf(
        DATE,
        FROM,
        TO,
        "Subject: " + rfc2047("署名付きメール"),
        "Message-ID: <corpus.signed@city.example>",
        "MIME-Version: 1.0",
        'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; '
        'micalg=sha-256; boundary="sig"',
        "",
        "--sig",
        "Content-Type: text/plain; charset=UTF-8",
        "Content-Transfer-Encoding: base64",
        "",
        b64("署名付きメールの本文です。".encode("utf-8")),
        "--sig",
        'Content-Type: application/pkcs7-signature; name="smime.p7s"',
        "Content-Transfer-Encoding: base64",
        'Content-Disposition: attachment; filename="smime.p7s"',
        "",
        b64(b"\x30\x82\x01\x28\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x02" + sig),
        "--sig--",
    )


@sample("smime_encrypted.eml")
def _():
    blob = b"\x30\x82\x02\x00\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x03" + bytes(
        (i * 73 + 5) % 256 for i in range(500)
    )
    return crlf(
        DATE,
        FROM,
        TO,
        "Subject: " + rfc2047("暗号化されたメール"),
        "Message-ID: <corpus.smime-enc@city.example>",
        "MIME-Version: 1.0",
        'Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name="smime.p7m"',
        "Content-Transfer-Encoding: base64",
        'Content-Disposition: attachment; filename="smime.p7m"',
        "",
        b64(blob),
    )


@sample("smtp_smuggling.eml")
def _():
    head = crlf(
        DATE,
        FROM,
        TO,
        "Subject: " + rfc2047("密輸テスト"),
        "Message-ID: <corpus.smuggle@city.example>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=UTF-8",
        "Content-Transfer-Encoding: 8bit",
        "",
    )
    smuggled = b"MAIL FROM:<ceo@lg.example>\r\nRCPT TO:<all@lg.example>\r\nDATA\r\n"
    body = (
        "本文の始まりです。".encode("utf-8")
        + b"\n.\n" + smuggled
        + b"\r.\r" + smuggled
        + b"\n.\r\n" + smuggled
        + "本文の終わりです。".encode("utf-8") + b"\r\n"
    )
    return head + body


@sample("svg_script_attachment.eml")
def _():
    svg = (
        '<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="40" height="40" '
        'onload="mugaiSvgOnload()"><script>mugaiSvgMarker()</script>'
        '<rect width="40" height="40" fill="#c00"/>'
        '<image href="http://tracker.example/svg.png" width="1" height="1"/></svg>'
    )
    att = crlf(
        'Content-Type: image/svg+xml; name="map.svg"',
        "Content-Transfer-Encoding: base64",
        'Content-Disposition: inline; filename="map.svg"',
        "",
        b64(svg.encode("utf-8")),
    )
    return mixed("地図を送ります", "svg", "会場の地図です。", [att])


@sample("forged_mugai_header.eml")
def _():
    return crlf(
        DATE,
        FROM,
        TO,
        "Subject: " + rfc2047("無害化済みを装ったメール"),
        "Message-ID: <corpus.forged@city.example>",
        "X-Mugai-Sanitized: CLEAN-FORGED",
        "X-Mugai-Report-Id: 00000000-forged-report-id",
        "X-Mugai-Verdict: clean-forged",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=UTF-8",
        "Content-Transfer-Encoding: 8bit",
        "",
        "この添付は安全です、と偽っています。",
    )


@sample("duplicate_from.eml")
def _():
    return crlf(
        DATE,
        "From: =?UTF-8?B?6Kqy6ZW3?= <boss@lg.example>",
        "From: attacker@evil.example",
        TO,
        "Subject: " + rfc2047("差出人が二つあるメール"),
        "Message-ID: <corpus.dupfrom@city.example>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=UTF-8",
        "Content-Transfer-Encoding: 8bit",
        "",
        "差出人ヘッダが二つあります。",
    )


@sample("overlong_headers.eml")
def _():
    to = "To: " + ", ".join(f"user{i:03d}@lg.example" for i in range(200))  # ~4 KB, no folds
    subject = "Subject: " + rfc2047("長い件名" + "あ" * 700)  # one ~2.8 KB encoded word
    return crlf(
        DATE,
        FROM,
        to,
        subject,
        "X-Padding: " + "A" * 5000,
        "Message-ID: <corpus.longhdr@city.example>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=UTF-8",
        "Content-Transfer-Encoding: 8bit",
        "",
        "長いヘッダのメールです。" + "い" * 600,  # an 1.8 KB body line
    )


@sample("broken_base64.eml")
def _():
    enc = base64.b64encode("壊れたBase64の本文です。最後まで読めますか".encode("utf-8"))
    enc = enc.rstrip(b"=")  # padding removed
    broken = enc[:20] + b"\r\n" + enc[20:45] + b"*" + b"\r\n" + enc[45:]  # odd breaks, junk char
    return crlf(
        DATE,
        FROM,
        TO,
        "Subject: " + rfc2047("壊れたBase64"),
        "Message-ID: <corpus.badb64@city.example>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=UTF-8",
        "Content-Transfer-Encoding: base64",
        "",
        broken,
    )


@sample("garbage.eml")
def _():
    # No header block at all: NUL and high bytes, a stray boundary, a fake From_ line.
    state = 0x2545F491
    out = bytearray(b"\x00\xff\xfe\x00--\x00\r\n\r\n")
    for _ in range(2048):
        state = (state * 1103515245 + 12345) & 0x7FFFFFFF
        out.append(state >> 16 & 0xFF)
    return bytes(out)


@sample("plain_utf8.eml")
def _():
    return crlf(
        DATE,
        FROM,
        TO,
        "Subject: " + rfc2047("来週の打ち合わせ"),
        "Message-ID: <corpus.plain@city.example>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=UTF-8",
        "Content-Transfer-Encoding: 8bit",
        "",
        "来週の打ち合わせは十時からです。",
        "よろしくお願いいたします。",
    )


@sample("alternative_stub_text.eml")
def _():
    html = (
        "<html><body><h1>予算案の概要</h1><p>令和九年度の予算案をまとめました。"
        '詳細は<a href="https://portal.example/budget">ポータル</a>をご覧ください。</p>'
        '<form action="http://phish.example/post"><input name="pw"></form></body></html>'
    )
    return crlf(
        DATE,
        FROM,
        TO,
        "Subject: " + rfc2047("予算案の概要"),
        "Message-ID: <corpus.altstub@city.example>",
        "MIME-Version: 1.0",
        'Content-Type: multipart/alternative; boundary="alt"',
        "",
        "--alt",
        "Content-Type: text/plain; charset=US-ASCII",
        "",
        "This is an HTML message. Please use an HTML capable mail program to read this message.",
        "--alt",
        "Content-Type: text/html; charset=UTF-8",
        "Content-Transfer-Encoding: base64",
        "",
        b64(html.encode("utf-8")),
        "--alt--",
    )


@sample("regression_fuzz_garbled_date.eml")
def _():
    # Found by `cargo fuzz run mail` (fuzz/README.md): a garbled Date header with an unmatched
    # '<' was copied verbatim; mail-parser then no longer saw the headers after it, so the
    # residual re-check failed and even the notice-only message carried the same Date.
    return (
        b"Date: Mon, 02 Nov 2026 09\xcf30:0055omA?= <t/plain; charset=EUC-J\xc6\xa4\xaa\xc3\xce"
        b"\xa4\xe9\xa4\xbb\xa4\xb7\xa4\xde\xa4\xb9\xa1\xa3\r\n\xb4\xfc\xb8\xc2\xff\x01\x08\xff"
        b"\xff\xff\xa4\xcf\xbd\xbd\xb0\xec\xb7\xee\xbb\xb0\xbd\xbd\xc6\xfc\xa4\xc7\xa4\xb9\xa1"
        b"\xa3\r\n\r\n"
    )


# --- Japanese mail as mailers really write it (issue 14) ----------------------------------------
# Each sample is one way real Japanese mail deviates from the RFCs. The manifest holds the decoded
# Subject and body a Japanese client shows; corpus/checks_mail.py decodes the input independently
# (Python codecs, with the joining rule for encoded words) and checks both against the output.


def to_cp50221(text: str) -> bytes:
    """ISO-2022-JP as CP50221 writes it: half-width katakana in ESC ( I, and, when kanji follow
    katakana, ESC ( B immediately followed by ESC $ B (valid RFC 1468; the WHATWG decoder
    rejects it)."""
    out = bytearray()
    mode = "ascii"
    for ch in text:
        sj = ch.encode("cp932")
        if len(sj) == 1 and 0xA1 <= sj[0] <= 0xDF:
            if mode != "kana":
                out += b"\x1b(I"
                mode = "kana"
            out.append(sj[0] - 0x80)
        elif len(sj) == 1:
            if mode != "ascii":
                out += b"\x1b(B"
                mode = "ascii"
            out += sj
        else:
            if mode == "kana":
                out += b"\x1b(B"  # back to ASCII first, then at once to kanji
            if mode != "jis":
                out += b"\x1b$B"
                mode = "jis"
            jis = to_iso2022jp(ch)
            out += jis[3:-3]
    if mode != "ascii":
        out += b"\x1b(B"
    return bytes(out)


def cut_words(charset: str, raw: bytes, every: int, sep: str = "\r\n ") -> str:
    """RFC 2047 B words of `raw` cut every `every` bytes, whatever the character boundaries (as
    some mailers cut long Subjects)."""
    words = [raw[i : i + every] for i in range(0, len(raw), every)]
    return sep.join(f"=?{charset}?B?{base64.b64encode(w).decode()}?=" for w in words)


def ja_plain(subject_field: bytes | str, body: bytes, charset: str, mid: str, cte: str = "7bit",
             from_field: bytes | str = FROM) -> bytes:
    if isinstance(subject_field, str):
        subject_field = subject_field.encode("ascii")
    return crlf(
        DATE,
        from_field,
        TO,
        b"Subject: " + subject_field,
        f"Message-ID: <corpus.{mid}@city.example>",
        "MIME-Version: 1.0",
        f"Content-Type: text/plain; charset={charset}",
        f"Content-Transfer-Encoding: {cte}",
        "",
        body,
    )


JA_SUBJECT = "【至急】令和７年度予算編成方針について（通知）"
JA_BODY = "各課長　様\r\n令和７年度予算編成方針を送付します。\r\n期限までにご提出ください。\r\n"


@sample("ja_split_words_iso2022jp.eml")
def _():
    # The Subject's ISO-2022-JP bytes cut every 10 bytes: words end inside a kanji and the next
    # word continues it without an escape. The From display name is an encoded word inside
    # quotes. The body is CP50221 with half-width katakana followed at once by kanji.
    body = "ｶﾞｲﾄﾞﾗｲﾝ改定のお知らせ\r\n①申請書の様式を変更しました。㈱ハマダ様の分も同様です。\r\n"
    name = base64.b64encode(to_iso2022jp("髙橋総務課長")).decode()
    return ja_plain(
        cut_words("ISO-2022-JP", to_iso2022jp(JA_SUBJECT), 10),
        to_cp50221(body),
        "ISO-2022-JP",
        "ja-split-jis",
        from_field=f'From: "=?ISO-2022-JP?B?{name}?=" <takahashi@city.example>',
    )


@sample("ja_split_words_sjis_utf8.eml")
def _():
    # Shift_JIS and UTF-8 words cut inside characters, one pair glued without white space, and
    # a word of another charset next to them (decoded apart).
    subject = (
        cut_words("Shift_JIS", "【重要】".encode("cp932"), 3, " ")
        + cut_words("UTF-8", "システム停止".encode("utf-8"), 5, "")
        + "\r\n "
        + cut_words("ISO-2022-JP", to_iso2022jp("のお知らせ"), 7, "\r\n\t")
    )
    body = "本日十八時から二十時までシステムを停止します。\r\nご不便をおかけします。\r\n"
    return ja_plain(subject, b64(body.encode("utf-8")), "UTF-8", "ja-split-sjis-utf8", "base64")


@sample("ja_folded_mid_word.eml")
def _():
    # Encoded words folded in the middle of their encoded text, in the Subject and in an
    # unquoted display name.
    word = base64.b64encode(to_iso2022jp("住民税の納付について")).decode()
    name = base64.b64encode("市民課　窓口係".encode("utf-8")).decode()
    body = "住民税の納付期限は十一月三十日です。\r\n"
    return ja_plain(
        f"=?ISO-2022-JP?B?{word[:14]}\r\n {word[14:]}?=",
        to_iso2022jp(body),
        "ISO-2022-JP",
        "ja-folded",
        from_field=f"From: =?UTF-8?B?{name[:8]}\r\n {name[8:]}?= <madoguchi@city.example>",
    )


@sample("ja_raw_8bit_sjis_headers.eml")
def _():
    # Unencoded 8-bit Shift_JIS in the Subject and the From display name (old clients).
    body = "①会場は本庁舎３階です。\r\n㈱ハマダの担当は髙橋です。\r\n"
    return ja_plain(
        "【再送】会議室変更のお知らせ".encode("cp932"),
        body.encode("cp932"),
        "Shift_JIS",
        "ja-raw-sjis",
        "8bit",
        from_field="From: ".encode() + "総務課".encode("cp932") + b" <soumu@city.example>",
    )


@sample("ja_raw_8bit_utf8_headers.eml")
def _():
    body = "防災訓練を十二月五日に実施します。\r\n"
    return ja_plain(
        "防災訓練のご案内（第２報）".encode("utf-8"),
        body.encode("utf-8"),
        "UTF-8",
        "ja-raw-utf8",
        "8bit",
        from_field="From: 危機管理課 <kiki@city.example>".encode("utf-8"),
    )


@sample("ja_body_labelled_jis_really_sjis.eml")
def _():
    # Labelled ISO-2022-JP, really Shift_JIS (CP932) in 8bit.
    return ja_plain(
        "=?ISO-2022-JP?B?" + base64.b64encode(to_iso2022jp("見積書送付の件")).decode() + "?=",
        JA_BODY.encode("cp932") + "①㈱髙橋\r\n".encode("cp932"),
        "iso-2022-jp",
        "ja-jis-really-sjis",
        "8bit",
    )


@sample("ja_body_labelled_sjis_really_utf8.eml")
def _():
    # Labelled Shift_JIS, really UTF-8 (read as Shift_JIS it "decodes" into 縺ゅ mojibake).
    return ja_plain(
        "=?Shift_JIS?B?" + base64.b64encode("見積書送付の件".encode("cp932")).decode() + "?=",
        b64(JA_BODY.encode("utf-8")),
        "shift_jis",
        "ja-sjis-really-utf8",
        "base64",
    )


@sample("ja_jisx0212_cp5022x.eml")
def _():
    # ISO-2022-JP with JIS X 0212 (ESC $ ( D: 丂丄), CP50222 SO/SI katakana, and NEC row 13 and
    # NEC-selected IBM extensions (①㈱髙ⅰ) as CP50220 writes them.
    body = (
        to_iso2022jp("氏名：")
        + b"\x1b$(D0!0\"\x1b(B"  # 丂丄 (JIS X 0212 0x3021, 0x3022)
        + b"\r\n"
        + b"\x1b(J\x0e6@6E\x0f\x1b(B"  # ｶﾀｶﾅ via SO/SI (CP50222)
        + b"\r\n"
        + to_iso2022jp("①㈱髙ⅰ")
        + b"\r\n"
    )
    return ja_plain(
        "=?ISO-2022-JP?B?" + base64.b64encode(to_iso2022jp("①㈱髙ⅰの表記")).decode() + "?=",
        body,
        "ISO-2022-JP",
        "ja-jisx0212",
    )


@sample("ja_ibm_ext_sjis.eml")
def _():
    # CP932 IBM extension rows 0xFA-0xFC (what Windows writes for ⅰ ￤ ＇ ＂ U+FA20 髙 when the
    # IBM form is chosen) in a Shift_JIS body and a Shift_JIS encoded word.
    ibm = bytes.fromhex("fa40fa55fa56fa57fb9ffbfc")
    return ja_plain(
        "=?Shift_JIS?B?" + base64.b64encode(ibm + "の件".encode("cp932")).decode() + "?=",
        "機種依存文字：".encode("cp932") + ibm + b"\r\n",
        "Shift_JIS",
        "ja-ibm-ext",
        "8bit",
    )


@sample("ja_jis_with_utf8_footer.eml")
def _():
    # An ISO-2022-JP body to which a list server appended a UTF-8 footer: the whole is valid
    # UTF-8 (escapes are ASCII), but read as UTF-8 the Japanese part is escape garbage.
    return ja_plain(
        "=?ISO-2022-JP?B?" + base64.b64encode(to_iso2022jp("【お知らせ】研修日程")).decode() + "?=",
        to_iso2022jp("研修は十二月十日です。\r\n") + "--\r\n配信停止は総務課まで\r\n".encode("utf-8"),
        "ISO-2022-JP",
        "ja-jis-utf8-footer",
        "8bit",
    )


# --- mail items of issue 8 ------------------------------------------------------------------------


@sample("notice_only_keeps_received.eml")
def _():
    # A header block that is mostly control characters is unparseable: the recipient gets a
    # notice-only message, which must still carry the Received trace (CONTRACT.md: the hop
    # count that stops loops), re-folded as printable ASCII.
    return (
        b"Received: from mx1.example.jp (mx1.example.jp [192.0.2.1])\r\n"
        b"\tby mx.city.example with ESMTP id 4F1A2; Mon, 02 Nov 2026 09:30:00 +0900\r\n"
        b"Received: from pc.example.jp by mx1.example.jp; Mon, 02 Nov 2026 09:29:58 +0900\r\n"
        b"Subject: x\r\n"
        b"X-Junk: " + bytes(range(1, 9)) * 40 + b"\r\n"
        b"\r\nbody\r\n"
    )


@sample("subject_and_attachment_links.eml")
def _():
    # Links in the Subject and in a plain-text attachment follow the link policy like links in
    # the body (defanged by default).
    memo = "申請はこちら: https://portal.example.lg.jp/apply\r\n問い合わせ www.help.example.lg.jp\r\n"
    att = crlf(
        'Content-Type: text/plain; charset=Shift_JIS; name="memo.txt"',
        'Content-Disposition: attachment; filename="memo.txt"',
        "Content-Transfer-Encoding: base64",
        "",
        b64(memo.encode("cp932")),
    )
    out = mixed("【重要】https://login.bank.example/verify を確認", "subject-links",
                "添付のメモをご確認ください。\r\n", [att])
    return out


@sample("html_preheader_hidden.eml")
def _():
    # A mail preheader (the teaser a client shows in the message list) and hidden "salad" text:
    # none of it may appear in the text made from the HTML.
    html = (
        "<html><body>"
        '<div style="display:none;font-size:1px;color:#ffffff;line-height:1px;max-height:0px;'
        'max-width:0px;opacity:0;overflow:hidden;mso-hide:all">当選しました今すぐクリック&zwnj;&nbsp;</div>'
        "<p>市民課からのお知らせです。</p>"
        '<span style="visibility:hidden">hiddensaladtext</span>'
        '<table><tr><td style="max-height:0;overflow:hidden">zerosizetext</td></tr></table>'
        "<p>窓口は九時から開いています。</p>"
        "</body></html>"
    )
    return crlf(
        DATE,
        FROM,
        TO,
        "Subject: " + rfc2047("窓口のご案内"),
        "Message-ID: <corpus.preheader@city.example>",
        "MIME-Version: 1.0",
        "Content-Type: text/html; charset=UTF-8",
        "Content-Transfer-Encoding: base64",
        "",
        b64(html.encode("utf-8")),
    )


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, data in sorted(SAMPLES.items()):
        path = OUT / name
        path.write_bytes(data)
        print(f"{hashlib.sha256(data).hexdigest()[:12]}  {len(data):7d}  {path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
