//! The console's pages as maud templates. maud escapes every `(expr)` it interpolates; text
//! from mail and files goes through [`shown`] first so control and bidi characters are
//! visible escapes rather than live formatting.

use maud::{DOCTYPE, Markup, html};

use super::{Filters, Notice, PAGE, View};
use crate::actor::Role;
use crate::i18n::{Lang, threat_en, threat_ja};
use crate::sinks::index::{HeldItem, HoldStatus, ReleaseRequest, RequestState};
use crate::sinks::outbox::escape_for_display;

/// Untrusted text made inert for display (maud then HTML-escapes it).
fn shown(s: &str) -> String {
    escape_for_display(s)
}

/// Multi-line untrusted text made inert: as [`shown`] line by line, the line breaks kept.
fn shown_lines(s: &str) -> String {
    s.split('\n').map(shown).collect::<Vec<_>>().join("\n")
}

/// An RFC 3339 time from the index as Japan time (`2026-12-03 23:12:08`), or as stored
/// when it does not parse.
fn jst(t: &str) -> String {
    // Japan keeps +09:00 all year: no time zone database needed.
    t.parse::<jiff::Timestamp>().map_or_else(
        |_| shown(t),
        |ts| {
            ts.to_zoned_datetime(jiff::tz::TimeZone::fixed(jiff::tz::offset(9)))
                .strftime("%Y-%m-%d %H:%M:%S")
                .to_string()
        },
    )
}

/// A hold status in words.
fn status_name(view: &View, s: HoldStatus) -> &'static str {
    match s {
        HoldStatus::Held => view.t("保留中", "held"),
        HoldStatus::Delivered => view.t("無害化版を配送済み", "safe version delivered"),
        HoldStatus::Deferred => view.t("配送再試行中", "delivery deferred"),
        HoldStatus::Released => view.t("原本を解除済み", "original released"),
        HoldStatus::Refused => view.t("配送先が拒否", "refused downstream"),
        HoldStatus::Purged => view.t("原本は削除済み", "original purged"),
    }
}

/// A report action in words.
fn action_name(view: &View, a: &str) -> String {
    match a {
        "kept" => view.t("そのまま", "kept").to_owned(),
        "rebuilt" => view.t("作り直し", "rebuilt").to_owned(),
        "rasterized" => view.t("画像化", "rasterized").to_owned(),
        "converted_to_text" => view.t("テキスト化", "converted to text").to_owned(),
        "converted" => view.t("形式を変換", "converted").to_owned(),
        "reencoded" => view.t("再エンコード", "re-encoded").to_owned(),
        "removed" => view.t("削除", "removed").to_owned(),
        other => shown(other),
    }
}

/// The frame of every page.
fn layout(view: &View, title: &str, body: Markup) -> Markup {
    let lang = match view.lang {
        Lang::Ja => "ja",
        Lang::En => "en",
    };
    html! {
        (DOCTYPE)
        html lang=(lang) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " — " (view.t("無害化コンソール", "Mugai console")) }
                link rel="stylesheet" href="/console/static/style.css";
            }
            body {
                header.top {
                    a.brand href="/console/" { (view.t("無害化コンソール", "Mugai console")) }
                    @if let Some(actor) = &view.actor {
                        nav aria-label=(view.t("メニュー", "Menu")) {
                            a href="/console/" { (view.t("隔離一覧", "Quarantine")) }
                            @if actor.role == Role::Admin {
                                a href="/console/audit" { (view.t("監査ログ", "Audit log")) }
                                a href="/console/config" { (view.t("設定の確認", "Configuration")) }
                            }
                        }
                        span.who { (shown(&actor.name)) " (" (role_name(view, actor.role)) ")" }
                        form.inline method="post" action="/console/logout" {
                            input type="hidden" name="csrf" value=(view.csrf);
                            button type="submit" { (view.t("サインアウト", "Sign out")) }
                        }
                    }
                    span.langs {
                        a href="?lang=ja" lang="ja" { "日本語" }
                        " | "
                        a href="?lang=en" lang="en" { "English" }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
}

fn role_name(view: &View, role: Role) -> &'static str {
    match role {
        Role::Requester => view.t("申請者", "requester"),
        Role::Approver => view.t("承認者", "approver"),
        Role::Admin => view.t("管理者", "admin"),
    }
}

/// A page with one sentence.
pub fn message(view: &View, text: &str) -> Markup {
    layout(
        view,
        view.t("お知らせ", "Notice"),
        html! {
            p.error role="alert" { (text) }
            p { a href="/console/" { (view.t("隔離一覧へ戻る", "Back to the list")) } }
        },
    )
}

/// サインイン.
pub fn login(view: &View, error: Option<&str>) -> Markup {
    layout(
        view,
        view.t("サインイン", "Sign in"),
        html! {
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form.card method="post" action="/console/login" {
                p {
                    label for="user" { (view.t("ユーザー名", "User name")) }
                    input #user type="text" name="user" autocomplete="username" required autofocus;
                }
                p {
                    label for="password" { (view.t("パスワード", "Password")) }
                    input #password type="password" name="password" autocomplete="current-password" required;
                }
                button type="submit" { (view.t("サインイン", "Sign in")) }
            }
        },
    )
}

fn verdict_name(view: &View, v: &str) -> String {
    match v {
        "clean" => view.t("問題なし", "clean").to_owned(),
        "sanitized" => view.t("無害化済み", "sanitized").to_owned(),
        "blocked" => view.t("遮断", "blocked").to_owned(),
        other => shown(other),
    }
}

/// 隔離一覧.
pub fn list(view: &View, f: &Filters, rows: &[HeldItem], total: u64) -> Markup {
    let pages = total.div_ceil(PAGE as u64).max(1);
    layout(
        view,
        view.t("隔離一覧", "Quarantine"),
        html! {
            form.filters method="get" action="/console/" {
                fieldset {
                    legend { (view.t("絞り込み", "Filter")) }
                    label { (view.t("開始日", "From")) " " input type="date" name="since" value=(f.since); }
                    label { (view.t("終了日", "To")) " " input type="date" name="until" value=(f.until); }
                    label { (view.t("差出人", "Sender")) " " input type="text" name="sender" value=(f.sender); }
                    label { (view.t("件名", "Subject")) " " input type="text" name="subject" value=(f.subject); }
                    label { (view.t("判定", "Verdict")) " "
                        select name="verdict" {
                            option value="" selected[f.verdict.is_empty()] { (view.t("すべて", "any")) }
                            @for v in ["sanitized", "blocked", "clean"] {
                                option value=(v) selected[f.verdict == v] { (verdict_name(view, v)) }
                            }
                        }
                    }
                    label { (view.t("脅威 ID", "Threat id")) " " input type="text" name="threat" value=(f.threat) placeholder="ooxml.vba_macro"; }
                    button type="submit" { (view.t("検索", "Search")) }
                }
            }
            @if f.date_error() {
                p.error role="alert" { (view.t("日付は YYYY-MM-DD で入力してください(無視しました)。", "Dates are YYYY-MM-DD (ignored).")) }
            }
            p { (total) (view.t(" 件", " items")) }
            @if rows.is_empty() {
                p { (view.t("該当する項目はありません。", "Nothing matches.")) }
            } @else {
                table.items {
                    thead { tr {
                        th scope="col" { (view.t("受信日時", "Received")) }
                        th scope="col" { (view.t("差出人", "Sender")) }
                        th scope="col" { (view.t("件名 / ファイル名", "Subject / file")) }
                        th scope="col" { (view.t("判定", "Verdict")) }
                        th scope="col" { (view.t("理由", "Why")) }
                        th scope="col" { (view.t("状態", "State")) }
                    } }
                    tbody {
                        @for r in rows {
                            tr {
                                td.time { (jst(&r.received_at)) }
                                td { (shown(r.header_from.as_deref().or(r.mail_from.as_deref()).unwrap_or("-"))) }
                                td {
                                    a href=(format!("/console/item/{}", r.report_id)) {
                                        (shown(r.subject.as_deref().or(r.file_name.as_deref()).unwrap_or("(件名なし)")))
                                    }
                                }
                                td { (verdict_name(view, &r.verdict)) }
                                td { ul.reasons { @for t in r.threats.iter().take(3) {
                                    li { (match view.lang { Lang::Ja => threat_ja(t), Lang::En => threat_en(t) }) }
                                } } }
                                td { (status_name(view, r.status)) }
                            }
                        }
                    }
                }
            }
            nav.pager aria-label=(view.t("ページ", "Pages")) {
                @if f.page > 1 { a href=(f.query(f.page - 1)) { (view.t("← 新しい方", "← Newer")) } }
                span { (f.page) " / " (pages) }
                @if f.page < pages { a href=(f.query(f.page + 1)) { (view.t("古い方 →", "Older →")) } }
            }
        },
    )
}

fn state_name(view: &View, s: RequestState) -> &'static str {
    match s {
        RequestState::Pending => view.t("承認待ち", "pending"),
        RequestState::Approved => view.t("承認済み", "approved"),
        RequestState::Refused => view.t("却下", "refused"),
    }
}

/// 詳細.
pub fn detail(
    view: &View,
    item: &HeldItem,
    requests: &[ReleaseRequest],
    notice: Option<&Notice>,
    pictures: Option<&[super::preview::Picture]>,
) -> Markup {
    let report: serde_json::Value =
        serde_json::from_str(&item.report_json).unwrap_or(serde_json::Value::Null);
    let pretty = serde_json::to_string_pretty(&report).unwrap_or_default();
    let sha = report
        .pointer("/input/sha256")
        .and_then(|v| v.as_str())
        .unwrap_or("-");
    let removed: Vec<&serde_json::Value> = report
        .get("items")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter(|i| {
                    i.get("action").and_then(|v| v.as_str()) != Some("kept")
                        || i.get("threats")
                            .and_then(|t| t.as_array())
                            .is_some_and(|t| !t.is_empty())
                })
                .collect()
        })
        .unwrap_or_default();
    let actor = view.actor.as_ref();
    let pending = requests.iter().find(|r| r.state == RequestState::Pending);
    let may_decide = actor.is_some_and(|a| {
        a.role.may_decide()
            && pending.is_some_and(|p| p.requester != a.name && p.entered_by != a.name)
    });
    let may_request = actor.is_some_and(|a| a.role == Role::Requester) && pending.is_none();
    let encrypted = item.threats.iter().any(|t| t == "archive.encrypted");
    let id = &item.report_id;
    layout(
        view,
        view.t("詳細", "Details"),
        html! {
            @if let Some(n) = notice {
                p class=(if n.ok { "ok" } else { "error" }) role="status" { (shown(&n.text)) }
            }
            section {
                h2 { (view.t("取り除いたものと理由", "What was removed and why")) }
                @if removed.is_empty() {
                    p { (view.t("取り除いた部分はありません。", "Nothing was removed.")) }
                }
                ul.removed {
                    @for i in &removed {
                        li {
                            strong.path { (shown(i.get("path").and_then(|v| v.as_str()).unwrap_or("-"))) }
                            " — " (action_name(view, i.get("action").and_then(|v| v.as_str()).unwrap_or("-")))
                            ul {
                                @for t in i.get("threats").and_then(|v| v.as_array()).into_iter().flatten().filter_map(|t| t.as_str()) {
                                    li.reason {
                                        span lang="ja" { (threat_ja(t)) }
                                        br;
                                        span.en lang="en" { (threat_en(t)) " (" code { (shown(t)) } ")" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            section {
                h2 { (view.t("概要", "Summary")) }
                dl.summary {
                    dt { (view.t("件名", "Subject")) } dd.subject { (shown(item.subject.as_deref().unwrap_or("-"))) }
                    dt { (view.t("差出人 (From)", "From")) } dd { (shown(item.header_from.as_deref().unwrap_or("-"))) }
                    dt { (view.t("エンベロープ送信者", "Envelope sender")) } dd { (shown(item.mail_from.as_deref().unwrap_or("-"))) }
                    dt { (view.t("宛先", "Recipients")) } dd { (shown(&item.rcpt_to.join(", "))) }
                    @if let Some(n) = &item.file_name { dt { (view.t("ファイル名", "File name")) } dd { (shown(n)) } }
                    dt { (view.t("受信日時", "Received")) } dd { (jst(&item.received_at)) " (JST)" }
                    dt { (view.t("経路", "Source")) } dd { (shown(&item.source)) " " (shown(item.client_ip.as_deref().unwrap_or(""))) " " (shown(item.helo.as_deref().unwrap_or(""))) }
                    dt { "Message-ID" } dd { (shown(item.message_id.as_deref().unwrap_or("-"))) }
                    dt { (view.t("大きさ", "Size")) } dd { (item.size) " bytes" }
                    dt { (view.t("判定", "Verdict")) } dd { (verdict_name(view, &item.verdict)) }
                    dt { (view.t("隔離の状態", "Hold state")) } dd { (status_name(view, item.status)) }
                    dt { (view.t("原本の SHA-256", "Original's SHA-256")) } dd { code { (shown(sha)) } }
                    dt { (view.t("レポート ID", "Report id")) } dd { code { (shown(id)) } }
                }
            }
            section {
                h2 { (view.t("安全なプレビュー", "Safe preview")) }
                p.hint { (view.t(
                    "無害化した後の内容を画像にしたものです(原本は表示しません)。",
                    "The sanitized form, drawn as pictures in a sandboxed worker (the original is never shown).",
                )) }
                @match pictures {
                    Some(pics) if !pics.is_empty() => {
                        div.thumbs {
                            @for (n, p) in pics.iter().enumerate() {
                                figure {
                                    img src=(format!("/console/item/{id}/thumb/{n}.png"))
                                        width=(p.width) height=(p.height)
                                        alt=(format!("{} {}", view.t("プレビュー", "Preview"), shown(&p.label)));
                                    figcaption { (shown(&p.label)) }
                                }
                            }
                        }
                    }
                    Some(_) => p { (view.t("画像で表示できる内容はありません(本文・通知のみ)。", "Nothing to draw: text and notice only.")) }
                    None => p { (view.t("プレビュー画像を作れませんでした(原本が削除されたか、処理に失敗しました)。", "No preview pictures (the original was purged, or drawing failed).")) }
                }
                h3 { (view.t("受信者への通知の内容", "What the recipient was told")) }
                pre.preview { (preview_text(&report)) }
            }
            section {
                h2 { (view.t("解除申請", "Release")) }
                @if requests.is_empty() {
                    p { (view.t("解除申請はまだありません。", "No release request yet.")) }
                } @else {
                    table.requests {
                        thead { tr {
                            th scope="col" { "#" }
                            th scope="col" { (view.t("申請者", "Requester")) }
                            th scope="col" { (view.t("理由", "Reason")) }
                            th scope="col" { (view.t("状態", "State")) }
                            th scope="col" { (view.t("判断者", "Decided by")) }
                            th scope="col" { (view.t("判断の理由", "Decision reason")) }
                        } }
                        tbody { @for r in requests { tr {
                            td { (r.id) }
                            td { (shown(&r.requester)) }
                            td { (shown(&r.reason)) }
                            td.state { (state_name(view, r.state)) }
                            td { (shown(r.decided_by.as_deref().unwrap_or("-"))) }
                            td { (shown(r.decision_reason.as_deref().unwrap_or("-"))) }
                        } } }
                    }
                }
                @if may_request {
                    form.card method="post" action=(format!("/console/item/{id}/request")) {
                        input type="hidden" name="csrf" value=(view.csrf);
                        p {
                            label for="reason" { (view.t("申請の理由(必須)", "Reason (required)")) }
                            textarea #reason name="reason" required rows="3" {}
                        }
                        button #request type="submit" { (view.t("解除を申請する", "Ask for release")) }
                    }
                }
                @if may_decide {
                    form.card method="post" action=(format!("/console/item/{id}/approve")) {
                        input type="hidden" name="csrf" value=(view.csrf);
                        p {
                            label for="approve-reason" { (view.t("承認の理由(必須)", "Reason to approve (required)")) }
                            textarea #approve-reason name="reason" required rows="2" {}
                        }
                        button #approve type="submit" { (view.t("承認して原本を届ける", "Approve and deliver the original")) }
                    }
                    form.card method="post" action=(format!("/console/item/{id}/refuse")) {
                        input type="hidden" name="csrf" value=(view.csrf);
                        p {
                            label for="refuse-reason" { (view.t("却下の理由(必須)", "Reason to refuse (required)")) }
                            textarea #refuse-reason name="reason" required rows="2" {}
                        }
                        button #refuse type="submit" { (view.t("却下する", "Refuse")) }
                    }
                }
                @if encrypted {
                    form.card method="post" action=(format!("/console/item/{id}/unlock")) {
                        input type="hidden" name="csrf" value=(view.csrf);
                        p {
                            label for="ppap" { (view.t("暗号化 ZIP のパスワード(別便で届いたもの)", "The encrypted ZIP's password (sent separately)")) }
                            input #ppap type="password" name="password" autocomplete="off" required;
                        }
                        button type="submit" { (view.t("パスワードで開いて無害化する", "Open with the password and sanitize")) }
                    }
                }
            }
            section {
                h2 { (view.t("レポート", "Report")) }
                pre.report { (shown_lines(&pretty)) }
            }
        },
    )
}

/// The notice a recipient reads, rebuilt from the report: Japanese, then English.
fn preview_text(report: &serde_json::Value) -> String {
    let mut ja = String::from("【無害化のお知らせ】\n");
    let mut en = String::from("[Mugai notice]\n");
    let items = report
        .get("items")
        .and_then(|v| v.as_array())
        .cloned()
        .unwrap_or_default();
    for i in &items {
        let action = i.get("action").and_then(|v| v.as_str()).unwrap_or("");
        if action == "kept" {
            continue;
        }
        let path = shown(i.get("path").and_then(|v| v.as_str()).unwrap_or("-"));
        let threats: Vec<&str> = i
            .get("threats")
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str())
            .collect();
        let mut why: Vec<&str> = Vec::new();
        for t in &threats {
            if !why.contains(t) {
                why.push(t);
            }
        }
        let in_lang = |lang| View {
            lang,
            actor: None,
            csrf: String::new(),
        };
        let (vja, ven) = (in_lang(Lang::Ja), in_lang(Lang::En));
        let mut ja_why: Vec<&str> = why.iter().map(|t| threat_ja(t)).collect();
        let mut en_why: Vec<&str> = why.iter().map(|t| threat_en(t)).collect();
        ja_why.dedup();
        en_why.dedup();
        let tail = |why: &[&str], sep: &str| {
            if why.is_empty() {
                String::new()
            } else {
                format!(" — {}", why.join(sep))
            }
        };
        ja.push_str(&format!(
            "・{path}: {}{}\n",
            action_name(&vja, action),
            tail(&ja_why, "。")
        ));
        en.push_str(&format!(
            "- {path}: {}{}\n",
            action_name(&ven, action),
            tail(&en_why, "; ")
        ));
    }
    format!("{ja}\n{en}")
}

/// 監査ログ.
pub fn audit(
    view: &View,
    verified: Option<&Result<crate::sinks::audit::VerifySummary, String>>,
    lines: &[String],
    total: u64,
    search: &str,
    page: u64,
) -> Markup {
    let pages = total.div_ceil(PAGE as u64).max(1);
    let link = |p: u64| {
        let q: String = search
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        format!("?q={q}&page={p}")
    };
    layout(
        view,
        view.t("監査ログ", "Audit log"),
        html! {
            @match verified {
                None => p.error { (view.t("監査ログは設定されていません。", "No audit log is configured.")) }
                Some(Ok(s)) => p.ok #chain role="status" {
                    (view.t("ハッシュチェーンを検証しました: 改ざんはありません。", "Hash chain verified: intact."))
                    " " (s.records) (view.t(" 件、先頭 ", " records, head ")) code { (s.head) }
                }
                Some(Err(e)) => p.error #chain role="alert" {
                    (view.t("ハッシュチェーンの検証に失敗しました: ", "Hash chain verification FAILED: ")) (shown(e))
                }
            }
            form.filters method="get" action="/console/audit" {
                label for="q" { (view.t("文字列で検索", "Search text")) }
                " " input #q type="search" name="q" value=(search);
                " " button type="submit" { (view.t("検索", "Search")) }
            }
            p { (total) (view.t(" 行(新しい順)", " lines, newest first")) }
            ol.audit {
                @for l in lines { li { code { (shown(l)) } } }
            }
            nav.pager aria-label=(view.t("ページ", "Pages")) {
                @if page > 1 { a href=(link(page - 1)) { (view.t("← 新しい方", "← Newer")) } }
                span { (page) " / " (pages) }
                @if page < pages { a href=(link(page + 1)) { (view.t("古い方 →", "Older →")) } }
            }
        },
    )
}

/// 設定の確認.
pub fn config(view: &View, toml: &str, warnings: &[String]) -> Markup {
    layout(
        view,
        view.t("設定の確認", "Configuration"),
        html! {
            h2 { (view.t("設定の警告", "Warnings")) }
            @if warnings.is_empty() {
                p.ok { (view.t("警告はありません。", "No warnings.")) }
            } @else {
                ul.warnings { @for w in warnings { li { (w) } } }
            }
            h2 { (view.t("動作中の設定(読み取り専用)", "Running configuration (read-only)")) }
            pre.config { (toml) }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actor::Actor;

    fn item(subject: &str, path: &str) -> HeldItem {
        HeldItem {
            report_id: "0195e5a4-0000-7000-8000-000000000000".into(),
            quarantine_id: "q".into(),
            received_at: "2026-12-03T14:00:00Z".into(),
            source: "smtp".into(),
            client_ip: None,
            helo: None,
            mail_from: Some("a@example.jp".into()),
            rcpt_to: vec!["staff@city.example.lg.jp".into()],
            message_id: None,
            subject: Some(subject.into()),
            header_from: None,
            file_name: None,
            size: 1,
            verdict: "sanitized".into(),
            threats: vec!["executable.binary".into()],
            report_json: serde_json::json!({
                "input": {"sha256": "ab"},
                "items": [{"path": path, "action": "removed", "threats": ["executable.binary"]}]
            })
            .to_string(),
            status: HoldStatus::Held,
            downstream_reply: None,
        }
    }

    fn view(role: Role) -> View {
        View {
            lang: Lang::Ja,
            actor: Some(Actor {
                name: "staff".into(),
                role,
                addresses: vec![],
            }),
            csrf: "tok".into(),
        }
    }

    #[test]
    fn hostile_text_is_escaped_and_bidi_made_visible() {
        let page = detail(
            &view(Role::Requester),
            &item(
                "<script>alert(1)</script>\u{202e}",
                "attachment[1]/a\u{202e}txt.exe",
            ),
            &[],
            None,
            Some(&[super::super::preview::Picture {
                label: "<img src=x onerror=alert(1)>.pdf p.1".into(),
                width: 10,
                height: 14,
                png: bytes::Bytes::new(),
            }]),
        )
        .into_string();
        assert!(!page.contains("<script>"), "{page}");
        assert!(!page.contains("<img src=x"), "{page}");
        assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;.pdf p.1"));
        assert!(
            page.contains("src=\"/console/item/0195e5a4-0000-7000-8000-000000000000/thumb/0.png\""),
            "{page}"
        );
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;\\u{202e}"));
        assert!(!page.contains('\u{202e}'));
        assert!(page.contains("a\\u{202e}txt.exe"));
        assert!(page.contains(threat_ja("executable.binary")));
        assert!(page.contains("2026-12-03 23:00:00 (JST)"));
        // A requester gets the request form (with the CSRF token), not the decision forms.
        assert!(page.contains("name=\"csrf\" value=\"tok\""));
        assert!(page.contains("id=\"request\"") && !page.contains("id=\"approve\""));
    }

    #[test]
    fn encrypted_archives_get_a_password_field() {
        let mut it = item("s", "attachment[1]/a.zip");
        assert!(
            !detail(&view(Role::Requester), &it, &[], None, None)
                .into_string()
                .contains("name=\"password\"")
        );
        it.threats = vec!["archive.encrypted".into()];
        let page = detail(&view(Role::Requester), &it, &[], None, None).into_string();
        assert!(
            page.contains("type=\"password\" name=\"password\""),
            "{page}"
        );
        assert!(page.contains("/unlock\""));
    }

    #[test]
    fn approvers_decide_only_others_requests() {
        let req = |requester: &str| ReleaseRequest {
            id: 1,
            report_id: "r".into(),
            requester: requester.into(),
            entered_by: requester.into(),
            reason: "r".into(),
            created_at: "t".into(),
            state: RequestState::Pending,
            decided_by: None,
            decision_reason: None,
            decided_at: None,
            delivered_at: None,
            delivery_reply: None,
        };
        let it = item("s", "p");
        let other = detail(&view(Role::Approver), &it, &[req("someone")], None, None).into_string();
        assert!(other.contains("id=\"approve\"") && other.contains("id=\"refuse\""));
        let own = detail(&view(Role::Approver), &it, &[req("staff")], None, None).into_string();
        assert!(
            !own.contains("id=\"approve\""),
            "no button on one's own request"
        );
    }
}
