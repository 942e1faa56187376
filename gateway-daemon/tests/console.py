#!/usr/bin/env python3
"""The 無害化コンソール in Chromium, driven by tests/console.rs.

Environment: MUGAI_BASE (http://127.0.0.1:PORT), MUGAI_PASSWORD (every user's), MUGAI_SHOTS
(screenshot folder). Users: staff (requester, staff@...), other (requester), kacho
(approver), admin. Held items: 請求書 (seikyu.exe), "<script>alert(1)</script>" (an RTLO file
name), both for staff, and "for someone else" for other.

Exits non-zero (an AssertionError) at the first thing that is not as it should be.
"""

import os
import sys
import urllib.error
import urllib.parse
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

BASE = os.environ["MUGAI_BASE"]
PASSWORD = os.environ["MUGAI_PASSWORD"]
SHOTS = os.environ["MUGAI_SHOTS"]


def browser():
    o = Options()
    o.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1366,768",
              "--lang=ja"):
        o.add_argument(a)
    o.add_experimental_option("prefs", {"intl.accept_languages": "ja"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)


def shot(d, name):
    # As tall as the page, 1366 wide: one picture per page for the CI artifacts.
    height = d.execute_script("return document.documentElement.scrollHeight")
    d.set_window_size(1366, max(768, min(int(height) + 140, 4000)))
    d.save_screenshot(os.path.join(SHOTS, f"{name}.png"))
    d.set_window_size(1366, 768)
    with open(os.path.join(SHOTS, f"{name}.html"), "w", encoding="utf-8") as f:
        f.write(d.page_source)
    print(f"screenshot {name}.png ({d.title})")


def click_and_wait(d, element):
    """Submits a form by its button and waits until the next page replaced this one."""
    old = d.find_element(By.TAG_NAME, "html")
    element.click()
    WebDriverWait(d, 10).until(EC.staleness_of(old))


def no_alert(d):
    try:
        d.switch_to.alert
    except NoAlertPresentException:
        return
    raise AssertionError("a script ran: an alert is open")


def sign_in(d, user):
    d.get(BASE + "/console/login")
    assert d.find_element(By.CSS_SELECTOR, "html").get_attribute("lang") == "ja"
    d.find_element(By.ID, "user").send_keys(user)
    d.find_element(By.ID, "password").send_keys(PASSWORD)
    click_and_wait(d, d.find_element(By.CSS_SELECTOR, "form.card button[type=submit]"))
    WebDriverWait(d, 10).until(lambda d: d.current_url.rstrip("/").endswith("/console"))
    assert user in d.find_element(By.CSS_SELECTOR, ".who").text


def sign_out(d):
    click_and_wait(d, d.find_element(By.CSS_SELECTOR, "header form button"))
    WebDriverWait(d, 10).until(lambda d: "/console/login" in d.current_url)
    d.get(BASE + "/console/")
    assert "/console/login" in d.current_url, "signed out means signed out"


def post(path, fields, cookie):
    """A form POST outside the browser: (status, body)."""
    data = urllib.parse.urlencode(fields).encode()
    req = urllib.request.Request(BASE + path, data=data, method="POST")
    req.add_header("Content-Type", "application/x-www-form-urlencoded")
    if cookie:
        req.add_header("Cookie", f"mugai_session={cookie}")
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def item_links(d):
    return {a.text: a.get_attribute("href")
            for a in d.find_elements(By.CSS_SELECTOR, "table.items td a")}


def main():
    d = browser()
    try:
        run(d)
    finally:
        d.quit()


def run(d):
    # Security headers on a console page (checked once, outside the browser).
    with urllib.request.urlopen(BASE + "/console/login") as r:
        h = r.headers
        assert h["Content-Security-Policy"].startswith("default-src 'none'"), h
        assert h["X-Frame-Options"] == "DENY"
        assert h["Referrer-Policy"] == "no-referrer"
        assert h["X-Content-Type-Options"] == "nosniff"
        assert h["Cache-Control"] == "no-store"

    d.get(BASE + "/")
    assert "/console/login" in d.current_url, d.current_url
    shot(d, "login")

    # A requester sees their two items, not the other requester's.
    sign_in(d, "staff")
    links = item_links(d)
    print("staff sees:", list(links))
    assert "請求書" in links, links
    hostile = [t for t in links if t.startswith("<script>")]
    assert hostile == ["<script>alert(1)</script> 請求書\\u{202e}fdp.exe"], hostile
    assert "for someone else" not in links, links
    assert len(links) == 2, links
    no_alert(d)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in d.page_source
    cookie = d.get_cookie("mugai_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict", cookie
    shot(d, "list")

    # The detail page: Japanese reasons, the preview, the hash; asks for release.
    d.get(links["請求書"])
    item_url = d.current_url
    item_path = urllib.parse.urlparse(item_url).path
    reasons = [e.text for e in d.find_elements(By.CSS_SELECTOR, "li.reason span[lang=ja]")]
    print("reasons:", reasons)
    assert reasons and all(any("\u3040" <= c <= "\u30ff" or "\u4e00" <= c <= "\u9fff"
                                   for c in r) for r in reasons), reasons
    assert "無害化のお知らせ" in d.find_element(By.CSS_SELECTOR, "pre.preview").text
    # The safe preview: the sanitized PDF drawn as pictures by a worker, loaded under the CSP.
    thumbs = d.find_elements(By.CSS_SELECTOR, "div.thumbs img")
    assert len(thumbs) == 1, len(thumbs)
    caption = d.find_element(By.CSS_SELECTOR, "div.thumbs figcaption").text
    assert caption == "mitsumori.pdf p.1", caption
    loaded = d.execute_script(
        "return Array.from(document.querySelectorAll('div.thumbs img'))"
        ".map(i => [i.complete, i.naturalWidth, i.naturalHeight]);")
    print("thumbnails:", loaded)
    assert all(c and w > 100 and h > w for c, w, h in loaded), loaded
    thumb_path = urllib.parse.urlparse(thumbs[0].get_attribute("src")).path
    assert thumb_path.startswith(item_path + "/thumb/"), thumb_path
    assert len(d.find_element(By.CSS_SELECTOR, "dl.summary code").text) == 64
    assert not d.find_elements(By.ID, "approve"), "a requester gets no approve button"
    shot(d, "detail")
    d.find_element(By.ID, "reason").send_keys("取引先からの正式な請求書のため")
    click_and_wait(d, d.find_element(By.ID, "request"))
    assert "承認待ち" in d.find_element(By.CSS_SELECTOR, "td.state").text
    assert "解除申請を受け付けました" in d.page_source
    assert not d.find_elements(By.ID, "approve"), "still no approve button for the requester"
    assert not d.find_elements(By.ID, "request"), "no second request while one is pending"
    shot(d, "requested")

    # Forged POSTs from the requester's session: approving their own request is refused by
    # the two-person rule, and any POST without the CSRF token is refused outright.
    csrf = d.find_element(By.CSS_SELECTOR, "input[name=csrf]").get_attribute("value")
    session = cookie["value"]
    status, body = post(item_path + "/approve", {"csrf": csrf, "reason": "自分で承認"}, session)
    print("forged approve:", status)
    assert status == 403, (status, body)
    status, _ = post(item_path + "/approve", {"reason": "no token"}, session)
    assert status == 403, status
    status, _ = post(item_path + "/request", {"csrf": "0" * 64, "reason": "x"}, session)
    assert status == 403, status
    status, _ = post("/console/logout", {}, session)
    assert status == 403, "sign-out needs the token too"

    # The hostile subject and RTLO file name are inert text.
    d.get(links[hostile[0]])
    no_alert(d)
    shot(d, "inert")
    src = d.page_source
    assert "<script>" not in src.replace("&lt;script&gt;", ""), "a live script tag"
    assert "\u202e" not in src, "a live RTLO reached the page"
    assert "\\u{202e}" in src, "the RTLO is shown as an escape"
    assert d.find_element(By.CSS_SELECTOR, "dd.subject").text == hostile[0]
    # The core already strips the RTLO from the attachment's name and says why.
    assert "invoicefdp.exe" in src and "filename.bidi_control" in src
    sign_out(d)

    # Another requester sees only their own item and cannot open staff's by its address.
    sign_in(d, "other")
    assert list(item_links(d)) == ["for someone else"], item_links(d)
    d.get(item_url)
    assert "見つからないか" in d.page_source
    assert not d.find_elements(By.CSS_SELECTOR, "dl.summary")
    # Nor its preview pictures, cached as they are.
    req = urllib.request.Request(BASE + thumb_path)
    req.add_header("Cookie", "mugai_session=" + d.get_cookie("mugai_session")["value"])
    try:
        urllib.request.urlopen(req)
        raise AssertionError("another requester got staff's preview picture")
    except urllib.error.HTTPError as e:
        assert e.code == 404, e.code
    sign_out(d)

    # The approver sees every item, approves the request.
    sign_in(d, "kacho")
    links = item_links(d)
    assert len(links) == 3, links
    d.get(item_url)
    d.find_element(By.ID, "approve-reason").send_keys("業務上必要と確認した")
    click_and_wait(d, d.find_element(By.ID, "approve"))
    assert "承認しました" in d.page_source, d.page_source
    assert "承認済み" in d.find_element(By.CSS_SELECTOR, "td.state").text
    shot(d, "approver")
    # The approver may not open the admin pages.
    d.get(BASE + "/console/audit")
    assert "管理者だけ" in d.page_source
    sign_out(d)

    # The admin sees both steps in the audit log, with the chain verified.
    sign_in(d, "admin")
    d.get(BASE + "/console/audit")
    chain = d.find_element(By.ID, "chain")
    assert "改ざんはありません" in chain.text, chain.text
    text = d.find_element(By.CSS_SELECTOR, "ol.audit").text
    assert "release_requested" in text and "release_approved" in text
    shot(d, "audit")
    d.get(BASE + "/console/audit?q=release_approved")
    assert len(d.find_elements(By.CSS_SELECTOR, "ol.audit li")) == 1
    d.get(BASE + "/console/config")
    cfg = d.find_element(By.CSS_SELECTOR, "pre.config").text
    assert "[http]" in cfg and "console_idle_secs = 600" in cfg, cfg[:400]
    shot(d, "config")
    # English by switch.
    d.get(BASE + "/console/?lang=en")
    assert d.find_element(By.CSS_SELECTOR, "html").get_attribute("lang") == "en"
    assert "Quarantine" in d.find_element(By.TAG_NAME, "h1").text
    shot(d, "list-en")
    print("console.py: all checks passed")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"FAILED: {e!r}", file=sys.stderr)
        raise
