//! The token sink that turns html5ever's token stream into text.
//!
//! Invariants:
//! - Streaming: one pass over the tokens, no DOM, no recursion. Only the elements that change
//!   the layout (lists, quotes, pre, tables, template, svg/math) are kept on a stack, capped at
//!   [`MAX_STACK`] entries; deeper elements still contribute their text, without layout.
//!   End-tag matching looks at most [`MAX_STACK`] entries, so the work is linear in the input.
//! - Output is proportional to the input: each input character is emitted at most once, and
//!   each tag adds at most a bounded number of characters (line prefixes are capped).
//! - The tree builder normally switches the tokenizer into raw-text states; without it, the sink
//!   does so itself (`script`, `style`, `title`, `textarea`, ...), so text inside those elements
//!   is never taken for markup, and script and style text never reaches the output.

use std::cell::RefCell;

use html5ever::tokenizer::states::RawKind;
use html5ever::tokenizer::{Tag, TagKind, Token, TokenSink, TokenSinkResult};

use super::detect;
use crate::policy::LinkMode;
use crate::unicode::is_invisible_control;

/// Most layout elements tracked at once.
const MAX_STACK: usize = 256;
/// Width of the line drawn for `<hr>`.
const HR_WIDTH: usize = 40;
/// Most list-indent / quote levels drawn in a line prefix.
const MAX_PREFIX_LEVELS: usize = 8;

/// A URL already rewritten by the link policy: the final pass must not rewrite it again.
type Protected = (usize, usize);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ws {
    None,
    Space,
    /// The collapsed whitespace contained a line break (matters between CJK characters).
    Newline,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Raw {
    /// Text inside is dropped (script, title, iframe, ...).
    Hidden,
    /// CSS: dropped, scanned for remote resources at the end tag.
    Style,
    /// Text inside is shown verbatim (textarea, xmp, plaintext).
    Verbatim,
}

#[derive(Debug)]
enum FrameKind {
    List {
        ordered: bool,
        next: u64,
    },
    Quote,
    Pre,
    Table {
        cells: u32,
        row_content: bool,
        pending_sep: bool,
    },
    Template,
    Foreign,
    /// An element the reader never sees (`display:none`, `hidden`, ...: see [`hides`]), and the
    /// names of the elements opened inside it since, so that their end tags do not end it.
    Hidden {
        inner: Vec<html5ever::LocalName>,
    },
}

#[derive(Debug)]
struct Frame {
    name: html5ever::LocalName,
    kind: FrameKind,
}

#[derive(Debug)]
struct Anchor {
    /// The href when it is a URL worth printing (http, https, ftp, mailto, tel, www.).
    href: Option<String>,
    /// Byte offset in `out` where the anchor text starts, set at its first content.
    start: Option<usize>,
}

/// Text being built, plus the layout state.
#[derive(Debug)]
pub(super) struct Renderer {
    pub(super) out: String,
    protected: Vec<Protected>,
    mode: LinkMode,
    pub(super) links: usize,
    pub(super) threats: Vec<&'static str>,
    ws: Ws,
    /// Line breaks wanted before the next content (1 = new line, 2 = blank line).
    want: u8,
    line_start: bool,
    last: Option<char>,
    raw: Option<Raw>,
    css: String,
    stack: Vec<Frame>,
    /// Elements pushed beyond `MAX_STACK`, not tracked.
    overflow: usize,
    hidden: usize,
    pre: usize,
    quote: usize,
    lists: usize,
    foreign: usize,
    /// Drop one line feed right after `<pre>`, as HTML does.
    pre_skip_lf: bool,
    marker: Option<String>,
    anchor: Option<Anchor>,
}

impl Renderer {
    pub(super) fn new(mode: LinkMode, capacity: usize) -> Self {
        Renderer {
            out: String::with_capacity(capacity),
            protected: Vec::new(),
            mode,
            links: 0,
            threats: Vec::new(),
            ws: Ws::None,
            want: 0,
            line_start: true,
            last: None,
            raw: None,
            css: String::new(),
            stack: Vec::new(),
            overflow: 0,
            hidden: 0,
            pre: 0,
            quote: 0,
            lists: 0,
            foreign: 0,
            pre_skip_lf: false,
            marker: None,
            anchor: None,
        }
    }

    fn threat(&mut self, id: &'static str) {
        if !self.threats.contains(&id) {
            self.threats.push(id);
        }
    }

    // ---- output primitives ----

    fn trim_line_end(&mut self) {
        let keep = self.out.trim_end_matches([' ', '\t']).len();
        self.out.truncate(keep);
    }

    fn trailing_newlines(&self) -> u8 {
        let b = self.out.as_bytes();
        let mut n = 0u8;
        for &c in b.iter().rev().take(3) {
            if c != b'\n' {
                break;
            }
            n += 1;
        }
        n
    }

    fn newline(&mut self) {
        self.trim_line_end();
        self.out.push('\n');
        self.line_start = true;
        self.last = None;
        self.ws = Ws::None;
    }

    /// Asks for `n` line breaks before the next content.
    fn block(&mut self, n: u8) {
        self.want = self.want.max(n);
        self.ws = Ws::None;
    }

    fn line_prefix(&mut self) {
        for _ in 0..self.quote.min(MAX_PREFIX_LEVELS) {
            self.out.push_str("> ");
        }
        for _ in 0..self.lists.saturating_sub(1).min(MAX_PREFIX_LEVELS) {
            self.out.push_str("  ");
        }
    }

    fn table_mut(&mut self) -> Option<(&mut bool, &mut bool, &mut u32)> {
        self.stack.iter_mut().rev().find_map(|f| match &mut f.kind {
            FrameKind::Table {
                cells,
                row_content,
                pending_sep,
            } => Some((row_content, pending_sep, cells)),
            _ => None,
        })
    }

    /// Everything that must precede a visible character `c`: pending line breaks, the line
    /// prefix, a list marker, a table cell separator, collapsed whitespace.
    fn begin(&mut self, c: char) {
        if self.want > 0 {
            if !self.out.is_empty() {
                self.trim_line_end();
                let have = self.trailing_newlines();
                for _ in have..self.want {
                    self.out.push('\n');
                }
                self.line_start = true;
                self.last = None;
            }
            self.want = 0;
            self.ws = Ws::None;
        }
        let mut fresh_line = false;
        if self.line_start {
            self.line_prefix();
            self.line_start = false;
            self.ws = Ws::None;
            fresh_line = true;
        }
        if let Some(m) = self.marker.take() {
            self.out.push_str(&m);
            self.ws = Ws::None;
            self.last = None;
        }
        if let Some((row_content, pending_sep, _)) = self.table_mut() {
            let sep = *pending_sep && *row_content && !fresh_line;
            *pending_sep = false;
            *row_content = true;
            if sep {
                self.trim_line_end();
                self.out.push_str(" | ");
                self.ws = Ws::None;
            }
        }
        match self.ws {
            Ws::None => {}
            Ws::Space => self.out.push(' '),
            Ws::Newline => {
                if !(self.last.is_some_and(is_wide) && is_wide(c)) {
                    self.out.push(' ');
                }
            }
        }
        self.ws = Ws::None;
        if let Some(a) = &mut self.anchor
            && a.start.is_none()
        {
            a.start = Some(self.out.len());
        }
    }

    fn emit(&mut self, c: char) {
        self.begin(c);
        self.out.push(c);
        self.last = Some(c);
    }

    /// Text from a character token.
    fn text(&mut self, s: &str) {
        if self.hidden > 0 {
            return;
        }
        match self.raw {
            Some(Raw::Hidden) => return,
            Some(Raw::Style) => {
                self.css.push_str(s);
                return;
            }
            Some(Raw::Verbatim) => return self.verbatim(s),
            None => {}
        }
        if self.pre > 0 {
            return self.verbatim(s);
        }
        let mut rest = s;
        while let Some(c) = rest.chars().next() {
            let len = c.len_utf8();
            match c {
                ' ' | '\t' | '\x0C' => {
                    if self.ws == Ws::None {
                        self.ws = Ws::Space;
                    }
                }
                '\n' | '\r' => self.ws = Ws::Newline,
                // Spacer `&nbsp;` (empty cells, `<p>&nbsp;</p>`) before any text on a line or
                // in a cell is plain whitespace, so layout spacers leave no stray separators.
                '\u{A0}'
                    if self.line_start
                        || self.want > 0
                        || self.table_mut().is_some_and(|(_, sep, _)| *sep) =>
                {
                    if self.ws == Ws::None {
                        self.ws = Ws::Space;
                    }
                }
                '\u{A0}' => {
                    // A no-break space is a space that does not collapse.
                    self.begin(' ');
                    self.out.push(' ');
                    self.last = Some(' ');
                }
                c if is_dropped(c) => {}
                c => {
                    // A run of ordinary characters is copied in one go.
                    let run = rest
                        .find(|c: char| is_special(c) || is_dropped(c))
                        .unwrap_or(rest.len());
                    let word = rest.get(..run).unwrap_or("");
                    self.begin(c);
                    self.out.push_str(word);
                    self.last = word.chars().next_back();
                    rest = rest.get(run.max(len)..).unwrap_or("");
                    continue;
                }
            }
            rest = rest.get(len..).unwrap_or("");
        }
    }

    fn verbatim(&mut self, s: &str) {
        for c in s.chars() {
            if std::mem::take(&mut self.pre_skip_lf) && c == '\n' {
                continue;
            }
            match c {
                '\n' => {
                    // Flush pending breaks first so a leading blank line is not lost.
                    if self.want > 0 && !self.out.is_empty() {
                        self.begin(' ');
                    }
                    self.newline();
                }
                '\u{A0}' => {
                    self.begin(' ');
                    self.out.push(' ');
                }
                c if is_dropped(c) && c != '\t' => {}
                c => {
                    self.ws = Ws::None;
                    self.begin(c);
                    self.out.push(c);
                    self.last = Some(c);
                }
            }
        }
    }

    fn push_frame(&mut self, name: &html5ever::LocalName, kind: FrameKind) {
        if self.stack.len() >= MAX_STACK {
            self.overflow += 1;
            return;
        }
        match kind {
            FrameKind::List { .. } => self.lists += 1,
            FrameKind::Quote => self.quote += 1,
            FrameKind::Pre => self.pre += 1,
            FrameKind::Template | FrameKind::Hidden { .. } => self.hidden += 1,
            FrameKind::Foreign => self.foreign += 1,
            FrameKind::Table { .. } => {}
        }
        self.stack.push(Frame {
            name: name.clone(),
            kind,
        });
    }

    fn pop_frame(&mut self) {
        if let Some(f) = self.stack.pop() {
            match f.kind {
                FrameKind::List { .. } => self.lists = self.lists.saturating_sub(1),
                FrameKind::Quote => self.quote = self.quote.saturating_sub(1),
                FrameKind::Pre => self.pre = self.pre.saturating_sub(1),
                FrameKind::Template | FrameKind::Hidden { .. } => {
                    self.hidden = self.hidden.saturating_sub(1);
                }
                FrameKind::Foreign => self.foreign = self.foreign.saturating_sub(1),
                FrameKind::Table { .. } => {}
            }
        }
    }

    /// Closes the innermost open element called `name` and everything opened after it.
    fn close(&mut self, name: &str) {
        if self.overflow > 0 {
            // Untracked elements close first; we cannot tell which, so count them down.
            self.overflow -= 1;
            return;
        }
        if let Some(pos) = self.stack.iter().rposition(|f| &*f.name == name) {
            while self.stack.len() > pos {
                self.pop_frame();
            }
        }
    }

    // ---- content the reader never sees ----

    fn innermost_hidden(&self) -> Option<usize> {
        self.stack
            .iter()
            .rposition(|f| matches!(f.kind, FrameKind::Hidden { .. }))
    }

    /// Pops the stack down to (and including) position `pos`.
    fn pop_to(&mut self, pos: usize) {
        while self.stack.len() > pos {
            self.pop_frame();
        }
    }

    /// Before a start tag is rendered: opens a hidden frame for an element that hides its
    /// content, or notes the element inside the open one.
    fn hidden_start(&mut self, tag: &Tag) {
        let name: &str = &tag.name;
        if let Some(pos) = self.innermost_hidden()
            && let Some(Frame {
                name: open,
                kind: FrameKind::Hidden { inner },
            }) = self.stack.get(pos)
            && inner.is_empty()
            && implicitly_closed(open, name)
        {
            // `<p hidden>a<p>b`: the second `<p>` ends the first, as in HTML.
            self.pop_to(pos);
        }
        if is_void(name) || (tag.self_closing && self.foreign > 0) {
            return;
        }
        if hides(&tag.attrs) {
            self.push_frame(&tag.name, FrameKind::Hidden { inner: Vec::new() });
        } else if let Some(pos) = self.innermost_hidden()
            && let Some(Frame {
                kind: FrameKind::Hidden { inner },
                ..
            }) = self.stack.get_mut(pos)
            && inner.len() < MAX_STACK
        {
            inner.push(tag.name.clone());
        }
    }

    /// After an end tag: ends an element opened inside a hidden one, or the hidden one itself,
    /// or (the end of an element that contains it) the hidden one and looks further out.
    fn hidden_end(&mut self, name: &str) {
        while let Some(pos) = self.innermost_hidden() {
            let Some(Frame {
                name: open,
                kind: FrameKind::Hidden { inner },
            }) = self.stack.get_mut(pos)
            else {
                return;
            };
            if let Some(i) = inner.iter().rposition(|n| &**n == name) {
                inner.truncate(i);
                return;
            }
            let own = &**open == name;
            self.pop_to(pos);
            if own {
                return;
            }
        }
    }

    // ---- links ----

    fn push_url(&mut self, url: &str) {
        let shown = crate::links::rewrite_url(url, self.mode);
        if self.mode != LinkMode::Keep {
            self.links += 1;
        }
        let start = self.out.len();
        self.out.push_str(&shown);
        self.protected.push((start, self.out.len()));
        self.last = shown.chars().next_back();
    }

    fn open_anchor(&mut self, tag: &Tag) {
        self.close_anchor();
        let href = detect::attr(&tag.attrs, "href")
            .filter(|_| self.hidden == 0)
            .and_then(printable_url);
        self.anchor = Some(Anchor { href, start: None });
    }

    fn close_anchor(&mut self) {
        let Some(Anchor { href, start }) = self.anchor.take() else {
            return;
        };
        let Some(href) = href else { return };
        let anchor_text = start
            .and_then(|s| self.out.get(s..))
            .map(str::trim)
            .unwrap_or("");
        if anchor_text.is_empty() {
            // An image link without alt text, or an empty anchor: the URL alone.
            self.emit_url_token(&href);
        } else if same_url(anchor_text, &href) {
            let s = start.unwrap_or(self.out.len());
            let ended_line = self
                .out
                .get(s..)
                .is_some_and(|t| t.trim_end_matches([' ', '\t']).ends_with('\n'));
            self.out.truncate(s);
            self.protected.retain(|&(b, _)| b < s);
            self.line_start = false;
            self.push_url(&href);
            if ended_line {
                self.newline();
            }
        } else {
            // `text (url)`; stays on the anchor's line even if a break is pending.
            if self.line_start {
                self.begin('(');
                self.out.push('(');
            } else {
                self.trim_line_end();
                self.out.push_str(" (");
            }
            self.push_url(&href);
            self.out.push(')');
            self.last = Some(')');
        }
    }

    fn emit_url_token(&mut self, url: &str) {
        self.begin('(');
        self.push_url(url);
    }

    // ---- tags ----

    fn start_tag(&mut self, tag: &Tag) -> TokenSinkResult<()> {
        let name: &str = &tag.name;
        {
            let threats = &mut self.threats;
            detect::start_tag(name, &tag.attrs, &mut |id| {
                if !threats.contains(&id) {
                    threats.push(id);
                }
            });
        }
        self.hidden_start(tag);
        // Raw-text elements: switch the tokenizer like the tree builder would.
        let raw = match name {
            "script" => Some((Raw::Hidden, RawKind::ScriptData)),
            "style" => Some((Raw::Style, RawKind::Rawtext)),
            "iframe" | "noembed" | "noframes" => Some((Raw::Hidden, RawKind::Rawtext)),
            "xmp" => Some((Raw::Verbatim, RawKind::Rawtext)),
            "title" => Some((Raw::Hidden, RawKind::Rcdata)),
            "textarea" => Some((Raw::Verbatim, RawKind::Rcdata)),
            _ => None,
        };
        if let Some((what, kind)) = raw {
            if what == Raw::Verbatim {
                self.block(1);
                self.pre_skip_lf = true;
            }
            self.raw = Some(what);
            self.css.clear();
            return TokenSinkResult::RawData(kind);
        }
        match name {
            "plaintext" => {
                self.block(2);
                self.raw = Some(Raw::Verbatim);
                return TokenSinkResult::Plaintext;
            }
            "br" if self.hidden == 0 => {
                if self.want > 0 && !self.out.is_empty() {
                    self.begin(' ');
                }
                if !self.out.is_empty() {
                    self.newline();
                }
            }
            "p" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6" | "dl" | "figure" | "address"
            | "fieldset" | "details" => self.block(2),
            "hr" if self.hidden == 0 => {
                self.block(1);
                self.emit('-');
                self.out.push_str(&"-".repeat(HR_WIDTH - 1));
                self.block(1);
            }
            "div" | "section" | "article" | "header" | "footer" | "nav" | "aside" | "main"
            | "center" | "summary" | "dt" | "dd" | "figcaption" | "caption" | "legend"
            | "option" | "form" | "hgroup" | "body" | "html" => self.block(1),
            "ul" | "ol" | "menu" | "dir" => {
                self.block(if self.lists == 0 { 2 } else { 1 });
                let start = if name == "ol" {
                    detect::attr(&tag.attrs, "start")
                        .and_then(|s| s.trim().parse::<u64>().ok())
                        .unwrap_or(1)
                } else {
                    1
                };
                self.push_frame(
                    &tag.name,
                    FrameKind::List {
                        ordered: name == "ol",
                        next: start,
                    },
                );
            }
            "li" => {
                self.block(1);
                let ordered = self.stack.iter_mut().rev().find_map(|f| match &mut f.kind {
                    FrameKind::List { ordered, next } => {
                        let n = *next;
                        *next = next.saturating_add(1);
                        Some(ordered.then_some(n))
                    }
                    _ => None,
                });
                // A hidden item leaves no marker for the text after it.
                self.marker = (self.hidden == 0).then(|| match ordered {
                    Some(Some(n)) => format!("{n}. "),
                    _ => "・".to_owned(),
                });
            }
            "blockquote" => {
                self.block(2);
                self.push_frame(&tag.name, FrameKind::Quote);
            }
            "pre" | "listing" => {
                self.block(2);
                self.pre_skip_lf = true;
                self.push_frame(&tag.name, FrameKind::Pre);
            }
            "table" => {
                self.block(1);
                self.push_frame(
                    &tag.name,
                    FrameKind::Table {
                        cells: 0,
                        row_content: false,
                        pending_sep: false,
                    },
                );
            }
            "tr" => {
                self.block(1);
                if let Some((row_content, pending_sep, cells)) = self.table_mut() {
                    *row_content = false;
                    *pending_sep = false;
                    *cells = 0;
                }
            }
            "td" | "th" => {
                let mut space = false;
                if let Some((_, pending_sep, cells)) = self.table_mut() {
                    if *cells > 0 {
                        *pending_sep = true;
                    }
                    *cells = cells.saturating_add(1);
                } else {
                    space = true;
                }
                if space && self.ws == Ws::None {
                    self.ws = Ws::Space;
                }
            }
            "template" => self.push_frame(&tag.name, FrameKind::Template),
            "svg" | "math" => self.push_frame(&tag.name, FrameKind::Foreign),
            "a" => self.open_anchor(tag),
            "img" | "area" | "input" => {
                let alt = detect::attr(&tag.attrs, "alt")
                    .map(|a| a.split_whitespace().collect::<Vec<_>>().join(" "))
                    .filter(|a| !a.is_empty());
                if let (Some(alt), 0, false) = (alt, self.hidden, hides(&tag.attrs)) {
                    self.emit('[');
                    for c in alt.chars().filter(|c| !is_dropped(*c)) {
                        self.out.push(c);
                    }
                    self.out.push(']');
                    self.last = Some(']');
                }
            }
            _ => {}
        }
        TokenSinkResult::Continue
    }

    fn end_tag(&mut self, tag: &Tag) {
        let name: &str = &tag.name;
        if self.raw.take() == Some(Raw::Style) {
            if detect::css_has_remote(&self.css) {
                self.threat(crate::threats::HTML_REMOTE_RESOURCE);
            }
            self.css.clear();
        }
        match name {
            "p" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6" | "dl" | "figure" | "address"
            | "fieldset" | "details" | "xmp" | "textarea" | "plaintext" => self.block(2),
            "div" | "section" | "article" | "header" | "footer" | "nav" | "aside" | "main"
            | "center" | "summary" | "dt" | "dd" | "figcaption" | "caption" | "legend"
            | "option" | "form" | "hgroup" | "li" | "tr" => self.block(1),
            // `</br>` is a `<br>` in HTML.
            "br" if !self.out.is_empty() && self.hidden == 0 => self.newline(),
            "ul" | "ol" | "menu" | "dir" => {
                self.close(name);
                self.block(if self.lists == 0 { 2 } else { 1 });
            }
            "blockquote" | "pre" | "listing" => {
                self.close(name);
                self.block(2);
            }
            "table" => {
                self.close(name);
                self.block(1);
            }
            "template" | "svg" | "math" => self.close(name),
            "a" => self.close_anchor(),
            _ => {}
        }
        self.hidden_end(name);
    }

    /// The text, with links in text rewritten by policy (URLs from hrefs already are).
    pub(super) fn finish(mut self) -> (String, usize, Vec<&'static str>) {
        self.close_anchor();
        self.trim_line_end();
        let keep = self.out.trim_end().len();
        self.out.truncate(keep);
        let mut links = self.links;
        if self.mode == LinkMode::Keep {
            if !self.out.is_empty() {
                self.out.push('\n');
            }
            return (self.out, links, self.threats);
        }
        let mut text = String::with_capacity(self.out.len() + self.out.len() / 8);
        let mut at = 0;
        for &(s, e) in &self.protected {
            if let (Some(plain), Some(url)) = (self.out.get(at..s), self.out.get(s..e)) {
                let (t, n) = crate::links::rewrite_links_in_text(plain, self.mode);
                text.push_str(&t);
                text.push_str(url);
                links += n;
                at = e;
            }
        }
        if let Some(plain) = self.out.get(at..) {
            let (t, n) = crate::links::rewrite_links_in_text(plain, self.mode);
            text.push_str(&t);
            links += n;
        }
        if !text.is_empty() {
            text.push('\n');
        }
        (text, links, self.threats)
    }
}

/// html5ever wants a sink it can call through `&self`.
pub(super) struct Sink(pub(super) RefCell<Renderer>);

impl TokenSink for Sink {
    type Handle = ();

    fn process_token(&self, token: Token, _line: u64) -> TokenSinkResult<()> {
        // html5ever calls the sink one method at a time, so the borrow cannot fail.
        let Ok(mut r) = self.0.try_borrow_mut() else {
            return TokenSinkResult::Continue;
        };
        match token {
            Token::CharacterTokens(t) => r.text(&t),
            Token::TagToken(tag) => match tag.kind {
                TagKind::StartTag => return r.start_tag(&tag),
                TagKind::EndTag => r.end_tag(&tag),
            },
            Token::CommentToken(_)
            | Token::DoctypeToken(_)
            | Token::NullCharacterToken
            | Token::EOFToken
            | Token::ParseError(_) => {}
        }
        TokenSinkResult::Continue
    }

    fn adjusted_current_node_present_but_not_in_html_namespace(&self) -> bool {
        // Inside svg/math, `<![CDATA[...]]>` is text (as in browsers); elsewhere a comment.
        self.0.try_borrow().is_ok_and(|r| r.foreign > 0)
    }
}

/// Elements that have no content and no end tag.
fn is_void(name: &str) -> bool {
    matches!(
        name,
        "area"
            | "base"
            | "br"
            | "col"
            | "embed"
            | "hr"
            | "img"
            | "input"
            | "keygen"
            | "link"
            | "meta"
            | "param"
            | "source"
            | "track"
            | "wbr"
    )
}

/// Whether an open element `open` whose end tag is optional ends where `starting` starts.
fn implicitly_closed(open: &str, starting: &str) -> bool {
    match open {
        "p" => matches!(
            starting,
            "p" | "div"
                | "table"
                | "ul"
                | "ol"
                | "dl"
                | "h1"
                | "h2"
                | "h3"
                | "h4"
                | "h5"
                | "h6"
                | "pre"
                | "blockquote"
                | "section"
                | "article"
                | "header"
                | "footer"
                | "nav"
                | "aside"
                | "main"
                | "form"
                | "hr"
                | "address"
                | "fieldset"
                | "figure"
                | "details"
                | "menu"
        ),
        "li" => starting == "li",
        "dt" | "dd" => matches!(starting, "dt" | "dd"),
        "td" | "th" => matches!(starting, "td" | "th" | "tr"),
        "tr" => starting == "tr",
        "option" => starting == "option",
        _ => false,
    }
}

/// Whether an element hides its content from the reader: the `hidden` attribute, or inline CSS
/// `display:none`, `visibility:hidden|collapse`, `mso-hide:all` (Outlook), `opacity:0`, or a
/// zero-size box that clips its content (`max-height:0; overflow:hidden`, also width/height,
/// or `font-size:0` with `line-height:0`). This is how mail preheaders (the teaser line that
/// clients show in the message list) and hidden "salad" text are written. Inline styles only:
/// class rules in `<style>` blocks are not applied.
pub(super) fn hides(attrs: &[html5ever::Attribute]) -> bool {
    detect::attr(attrs, "hidden").is_some() || detect::attr(attrs, "style").is_some_and(css_hides)
}

fn css_hides(style: &str) -> bool {
    let css: String = style
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    let zero = |v: &str| {
        let n = v.trim_end_matches(|c: char| c.is_ascii_alphabetic() || c == '%');
        !n.is_empty() && n.parse::<f64>().is_ok_and(|x| x == 0.0)
    };
    let (mut zero_box, mut clipped, mut zero_font, mut zero_line) = (false, false, false, false);
    for decl in css.split(';') {
        let Some((prop, value)) = decl.split_once(':') else {
            continue;
        };
        let value = value.trim_end_matches("!important");
        match prop {
            "display" if value == "none" => return true,
            "visibility" if value == "hidden" || value == "collapse" => return true,
            "mso-hide" if value == "all" => return true,
            "opacity" if zero(value) => return true,
            "max-height" | "height" | "max-width" | "width" if zero(value) => zero_box = true,
            "overflow" | "overflow-x" | "overflow-y" if value == "hidden" => clipped = true,
            "font-size" if zero(value) => zero_font = true,
            "line-height" if zero(value) => zero_line = true,
            _ => {}
        }
    }
    (zero_box && clipped) || (zero_font && zero_line)
}

/// East Asian wide characters, between which a source line break is not a space
/// (CSS Text 3, segment break transformation).
fn is_wide(c: char) -> bool {
    matches!(c,
        '\u{1100}'..='\u{115F}'
        | '\u{2E80}'..='\u{303E}'
        | '\u{3041}'..='\u{33FF}'
        | '\u{3400}'..='\u{4DBF}'
        | '\u{4E00}'..='\u{9FFF}'
        | '\u{A000}'..='\u{A4CF}'
        | '\u{F900}'..='\u{FAFF}'
        | '\u{FE30}'..='\u{FE4F}'
        | '\u{FF00}'..='\u{FF60}'
        | '\u{FF61}'..='\u{FF9F}'
        | '\u{FFE0}'..='\u{FFE6}'
        | '\u{20000}'..='\u{3FFFD}')
}

/// Characters that need more than copying: collapsible whitespace and the no-break space.
fn is_special(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\x0C' | '\n' | '\r' | '\u{A0}')
}

/// Controls and invisible formatting characters never reach the text.
fn is_dropped(c: char) -> bool {
    (c.is_control() && c != '\n') || is_invisible_control(c)
}

/// The href as it will be printed, when it is a link a reader may want: http(s), ftp, mailto,
/// tel, `www.` and protocol-relative. Relative links, fragments, `cid:`, `data:`, `javascript:`
/// and other schemes are not printed.
fn printable_url(href: &str) -> Option<String> {
    let url: String = href
        .trim_matches(|c: char| c.is_ascii_whitespace() || c.is_control())
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r') && !is_invisible_control(*c))
        .collect();
    let lower: String = url
        .chars()
        .take(8)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let ok = [
        "http://", "https://", "ftp://", "mailto:", "tel:", "www.", "//",
    ]
    .iter()
    .any(|p| lower.starts_with(p));
    (ok && url.len() > 4).then_some(url)
}

/// Whether the anchor text just repeats the URL (then the URL is printed once).
fn same_url(text: &str, href: &str) -> bool {
    fn norm(s: &str) -> String {
        let s = s.trim();
        let lower = s.to_ascii_lowercase();
        let mut t = lower.as_str();
        for p in ["https://", "http://", "ftp://", "mailto:", "tel:", "//"] {
            if let Some(r) = t.strip_prefix(p) {
                t = r;
                break;
            }
        }
        t.trim_end_matches('/').to_owned()
    }
    text.len() <= href.len() + 16 && norm(text) == norm(href)
}
