//! HTML to [`Rich`] text and back, in every [`Dialect`]: one renderer and
//! one parser, with the dialects' differences spelled out where they
//! matter.
//!
//! Parsing runs html5ever's WHATWG tokenizer (entities, attributes, broken
//! markup) and walks the tokens with a stack of open elements, closing what
//! HTML closes implicitly (`<p>`, `<li>`, table cells). Only text and the
//! styles of [`Style`] come out, so the parser is also the sanitiser: no
//! element, attribute or script of the input survives as markup, and links
//! are kept only for schemes a chat client may open.

use std::cell::RefCell;
use std::fmt::Write as _;

use html5ever::tendril::StrTendril;
use html5ever::tokenizer::states::RawKind;
use html5ever::tokenizer::{
    BufferQueue, Tag, TagKind, Token, TokenSink, TokenSinkResult, Tokenizer, TokenizerOpts,
};

use crate::text::{Color, Dialect, Rich, Style, escape_html};

// ---------------------------------------------------------------- render

/// Renders rich text as an HTML fragment of a dialect.
pub(crate) fn render(rich: &Rich, dialect: Dialect) -> String {
    let mut out = String::new();
    let mut quote = 0u8;
    let mut in_pre = false;
    let (pre_open, pre_close) = match dialect {
        Dialect::XhtmlIm => ("<pre>", "</pre>"),
        Dialect::Matrix | Dialect::Email => ("<pre><code>", "</code></pre>"),
    };
    let quote_open = match dialect {
        Dialect::Email => {
            "<blockquote style=\"margin:0 0 0 .8ex;border-left:1px solid #ccc;padding-left:1ex\">"
        }
        Dialect::XhtmlIm | Dialect::Matrix => "<blockquote>",
    };
    let br = match dialect {
        Dialect::Email => "<br>",
        Dialect::XhtmlIm | Dialect::Matrix => "<br/>",
    };
    for span in &rich.spans {
        let st = &span.style;
        if st.pre != in_pre || st.quote != quote {
            if in_pre {
                out.push_str(pre_close);
            }
            while quote > st.quote {
                out.push_str("</blockquote>");
                quote -= 1;
            }
            while quote < st.quote {
                out.push_str(quote_open);
                quote += 1;
            }
            if st.pre {
                out.push_str(pre_open);
            }
            in_pre = st.pre;
        }
        let mut close: Vec<&str> = Vec::new();
        let mut open = |out: &mut String, tag: &str, end: &'static str| {
            out.push_str(tag);
            close.push(end);
        };
        if let Some(link) = &st.link {
            open(
                &mut out,
                &format!("<a href=\"{}\">", escape_html(link)),
                "</a>",
            );
        }
        if st.bold {
            open(&mut out, "<strong>", "</strong>");
        }
        if st.italic {
            open(&mut out, "<em>", "</em>");
        }
        if st.code && !st.pre {
            open(&mut out, "<code>", "</code>");
        }
        match dialect {
            Dialect::Matrix => {
                if st.underline {
                    open(&mut out, "<u>", "</u>");
                }
                if st.strike {
                    open(&mut out, "<del>", "</del>");
                }
                if let Some(fg) = st.fg {
                    open(
                        &mut out,
                        &format!("<font color=\"{}\">", fg.to_hex()),
                        "</font>",
                    );
                }
                if st.bg.is_some() || st.spoiler {
                    let mut tag = String::from("<span");
                    if let Some(bg) = st.bg {
                        let _ = write!(tag, " data-mx-bg-color=\"{}\"", bg.to_hex());
                    }
                    if st.spoiler {
                        tag.push_str(" data-mx-spoiler");
                    }
                    tag.push('>');
                    open(&mut out, &tag, "</span>");
                }
            }
            Dialect::XhtmlIm | Dialect::Email => {
                let css = css_of(st, dialect);
                if !css.is_empty() {
                    open(&mut out, &format!("<span style=\"{css}\">"), "</span>");
                }
            }
        }
        let escaped = escape_html(&span.text);
        if in_pre {
            out.push_str(&escaped);
        } else {
            out.push_str(&escaped.replace('\n', br));
        }
        for c in close.iter().rev() {
            out.push_str(c);
        }
    }
    if in_pre {
        out.push_str(pre_close);
    }
    for _ in 0..quote {
        out.push_str("</blockquote>");
    }
    // The line break that ends a quotation is the closing tag's.
    out.replace(&format!("{br}</blockquote>"), "</blockquote>")
}

/// The inline CSS of a span's decoration and colours.
fn css_of(st: &Style, dialect: Dialect) -> String {
    let mut css = String::new();
    match (st.underline, st.strike) {
        (true, true) => css.push_str("text-decoration: underline line-through;"),
        (true, false) => css.push_str("text-decoration: underline;"),
        (false, true) => css.push_str("text-decoration: line-through;"),
        (false, false) => {}
    }
    if let Some(fg) = st.fg {
        let _ = write!(css, "color: {};", fg.to_hex());
    }
    if let Some(bg) = st.bg {
        let _ = write!(css, "background-color: {};", bg.to_hex());
    }
    if st.spoiler && dialect == Dialect::Email && st.fg.is_none() && st.bg.is_none() {
        // Text as dark as its background until selected.
        css.push_str("color: #000000;background-color: #000000;");
    }
    css
}

// ----------------------------------------------------------------- parse

/// Reads HTML of a dialect into rich text.
pub(crate) fn parse(html: &str, dialect: Dialect) -> Rich {
    let sink = Sink(RefCell::new(Vec::new()));
    let tokenizer = Tokenizer::new(sink, TokenizerOpts::default());
    let input = BufferQueue::default();
    input.push_back(StrTendril::from_slice(html));
    let _ = tokenizer.feed(&input);
    tokenizer.end();
    let tokens = tokenizer.sink.0.into_inner();
    let mut w = Walker::new(dialect);
    for t in tokens {
        match t {
            Piece::Text(t) => w.text(&t),
            Piece::Start(tag) => w.start(&tag),
            Piece::End(name) => w.end(&name),
        }
    }
    w.finish()
}

/// What the walker needs of the tokens.
enum Piece {
    Text(String),
    Start(Tag),
    End(String),
}

/// Collects the tokens; switches the tokenizer to raw text inside elements
/// whose content is not markup (as the HTML tree builder would), so that a
/// `<` in a script does not start a tag.
struct Sink(RefCell<Vec<Piece>>);

impl TokenSink for Sink {
    type Handle = ();

    fn process_token(&self, token: Token, _line: u64) -> TokenSinkResult<()> {
        let mut out = self.0.borrow_mut();
        match token {
            Token::CharacterTokens(t) => out.push(Piece::Text(t.to_string())),
            Token::TagToken(tag) => {
                let name: String = tag.name.as_ref().to_ascii_lowercase();
                if tag.kind == TagKind::EndTag {
                    out.push(Piece::End(name));
                    return TokenSinkResult::Continue;
                }
                let raw = match name.as_str() {
                    "script" => Some(RawKind::ScriptData),
                    "style" | "xmp" | "iframe" | "noembed" | "noframes" | "noscript" => {
                        Some(RawKind::Rawtext)
                    }
                    "title" | "textarea" => Some(RawKind::Rcdata),
                    _ => None,
                };
                let self_closing = tag.self_closing;
                out.push(Piece::Start(tag));
                if let Some(kind) = raw
                    && !self_closing
                {
                    return TokenSinkResult::RawData(kind);
                }
            }
            Token::NullCharacterToken
            | Token::CommentToken(_)
            | Token::DoctypeToken(_)
            | Token::EOFToken
            | Token::ParseError(_) => {}
        }
        TokenSinkResult::Continue
    }
}

/// Elements that have no content and no end tag.
const VOID: &[&str] = &[
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
    "track", "wbr",
];

/// Elements whose content is not text.
const SKIPPED: &[&str] = &[
    "script", "style", "noscript", "template", "title", "head", "iframe", "object", "svg", "math",
    "xmp", "noembed", "noframes", "textarea", "select",
];

/// Block elements that end an open `<p>` (as HTML does).
const CLOSES_P: &[&str] = &[
    "p",
    "div",
    "ul",
    "ol",
    "blockquote",
    "pre",
    "table",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "section",
    "article",
    "header",
    "footer",
    "address",
    "dl",
];

/// What closing an element does to the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Close {
    /// Nothing (inline elements).
    Inline,
    /// The next text starts on a new line.
    Block,
    /// A preformatted block ends with a line break.
    Pre,
    /// A quotation ends its line inside the quotation.
    Quote,
    /// Content was skipped.
    Skip,
}

#[derive(Debug)]
struct Frame {
    name: String,
    /// The style of the content.
    style: Style,
    close: Close,
    /// A list: whether numbered, and the next number.
    list: Option<(bool, u32)>,
    /// A table row: how many cells it has had.
    cells: u32,
}

struct Walker {
    dialect: Dialect,
    out: Rich,
    stack: Vec<Frame>,
    skip: u32,
    pending_space: bool,
    at_line_start: bool,
    started: bool,
    /// A newline right after `<pre>` is not content.
    after_pre_start: bool,
}

impl Walker {
    fn new(dialect: Dialect) -> Walker {
        Walker {
            dialect,
            out: Rich::default(),
            stack: Vec::new(),
            skip: 0,
            pending_space: false,
            at_line_start: true,
            started: false,
            after_pre_start: false,
        }
    }

    fn style(&self) -> Style {
        self.stack
            .last()
            .map(|f| f.style.clone())
            .unwrap_or_default()
    }

    fn push(&mut self, text: &str, style: &Style) {
        self.out.push(text, style);
        self.started = true;
        self.at_line_start = text.ends_with('\n');
    }

    fn text(&mut self, text: &str) {
        if self.skip > 0 {
            return;
        }
        let style = self.style();
        let mut text = text;
        if std::mem::take(&mut self.after_pre_start) {
            text = text.strip_prefix('\n').unwrap_or(text);
        }
        if style.pre {
            if !text.is_empty() {
                self.push(text, &style);
                self.pending_space = false;
            }
            return;
        }
        // A collapsed space between elements takes no inline style.
        let base = Style {
            quote: style.quote,
            ..Style::default()
        };
        let mut buf = String::new();
        for c in text.chars() {
            // HTML collapses ASCII white space only (not U+00A0).
            if c.is_ascii_whitespace() {
                if !self.at_line_start || !buf.is_empty() {
                    self.pending_space = true;
                }
            } else {
                if self.pending_space {
                    if buf.is_empty() {
                        self.push(" ", &base);
                    } else {
                        buf.push(' ');
                    }
                    self.pending_space = false;
                }
                buf.push(c);
            }
        }
        if !buf.is_empty() {
            self.push(&buf, &style);
        }
    }

    fn newline(&mut self, style: &Style) {
        let plain = Style {
            quote: style.quote,
            ..Style::default()
        };
        self.push("\n", &plain);
        self.pending_space = false;
    }

    fn block_break(&mut self, style: &Style) {
        if self.started && !self.at_line_start {
            self.newline(style);
        }
        self.pending_space = false;
    }

    /// An empty line before a paragraph (Matrix, email).
    fn paragraph_break(&mut self, style: &Style) {
        self.block_break(style);
        if self.started && !self.out.to_plain().ends_with("\n\n") {
            self.newline(style);
        }
    }

    fn start(&mut self, tag: &Tag) {
        let name: String = tag.name.as_ref().to_ascii_lowercase();
        let attr = |n: &str| {
            tag.attrs
                .iter()
                .find(|a| a.name.local.as_ref().eq_ignore_ascii_case(n))
                .map(|a| a.value.to_string())
        };
        let void = VOID.contains(&name.as_str()) || tag.self_closing;
        if self.skip > 0 {
            if SKIPPED.contains(&name.as_str()) && !void {
                self.stack.push(Frame {
                    name,
                    style: Style::default(),
                    close: Close::Skip,
                    list: None,
                    cells: 0,
                });
                self.skip += 1;
            }
            return;
        }
        self.close_implied(&name);
        let outer = self.style();
        let skipped = SKIPPED.contains(&name.as_str())
            || (self.dialect == Dialect::Matrix && name == "mx-reply");
        if skipped {
            if !void {
                self.stack.push(Frame {
                    name,
                    style: outer,
                    close: Close::Skip,
                    list: None,
                    cells: 0,
                });
                self.skip += 1;
            }
            return;
        }
        let mut st = outer.clone();
        if self.dialect != Dialect::Matrix
            && let Some(css) = attr("style")
        {
            apply_css(&mut st, &css);
        }
        let mut close = Close::Inline;
        let mut list = None;
        match name.as_str() {
            "br" => {
                self.newline(&outer);
                return;
            }
            "hr" => {
                self.block_break(&outer);
                self.push("———", &Style::default());
                self.newline(&outer);
                return;
            }
            "img" => {
                let mut alt = attr("alt").or_else(|| attr("title"));
                if alt.is_none() && self.dialect == Dialect::XhtmlIm {
                    alt = attr("src");
                }
                if let Some(alt) = alt {
                    self.text_styled(&alt, &st);
                }
                return;
            }
            "strong" | "b" => st.bold = true,
            "em" | "i" | "cite" | "var" => st.italic = true,
            "u" | "ins" => st.underline = true,
            "s" | "del" | "strike" => st.strike = true,
            "code" | "tt" | "kbd" | "samp" if !st.pre => st.code = true,
            "a" => {
                if let Some(href) = attr("href").filter(|h| safe_link(h)) {
                    st.link = Some(href);
                }
            }
            "font" | "span" => {
                if self.dialect != Dialect::XhtmlIm
                    && let Some(c) = attr("data-mx-color")
                        .or_else(|| attr("color"))
                        .and_then(|c| Color::parse(&c))
                {
                    st.fg = Some(c);
                }
                if self.dialect == Dialect::Matrix {
                    if let Some(c) = attr("data-mx-bg-color").and_then(|c| Color::parse(&c)) {
                        st.bg = Some(c);
                    }
                    if attr("data-mx-spoiler").is_some() {
                        st.spoiler = true;
                    }
                }
            }
            "pre" => {
                self.block_break(&outer);
                st.pre = true;
                st.code = false;
                close = Close::Pre;
                self.after_pre_start = true;
            }
            "blockquote" => {
                self.block_break(&outer);
                st.quote = st.quote.saturating_add(1);
                close = Close::Quote;
            }
            "p" => {
                if self.dialect == Dialect::XhtmlIm {
                    self.block_break(&outer);
                } else {
                    self.paragraph_break(&outer);
                }
                close = Close::Block;
            }
            "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => {
                self.block_break(&outer);
                st.bold = true;
                close = Close::Block;
            }
            "ul" | "ol" => {
                self.block_break(&outer);
                let start = attr("start")
                    .and_then(|s| s.trim().parse::<u32>().ok())
                    .unwrap_or(1);
                list = Some((name == "ol", start));
                close = Close::Block;
            }
            "li" => {
                self.block_break(&outer);
                let number = self
                    .stack
                    .iter_mut()
                    .rev()
                    .find_map(|f| f.list.as_mut())
                    .and_then(|(ordered, next)| {
                        let n = *next;
                        *next = next.saturating_add(1);
                        ordered.then_some(n)
                    });
                let prefix = match number {
                    Some(n) => format!("{n}. "),
                    None => "• ".to_owned(),
                };
                let plain = Style {
                    quote: outer.quote,
                    ..Style::default()
                };
                self.push(&prefix, &plain);
                close = Close::Block;
            }
            "td" | "th" => {
                let first = self
                    .stack
                    .iter_mut()
                    .rev()
                    .find(|f| f.name == "tr")
                    .map(|row| {
                        row.cells += 1;
                        row.cells == 1
                    })
                    .unwrap_or(true);
                if !first {
                    let plain = Style {
                        quote: outer.quote,
                        ..Style::default()
                    };
                    self.push(" | ", &plain);
                    self.pending_space = false;
                }
                if name == "th" {
                    st.bold = true;
                }
            }
            "div" | "table" | "tr" | "dl" | "dt" | "dd" | "section" | "article" | "header"
            | "footer" | "address" | "details" | "summary" | "caption" | "center" => {
                self.block_break(&outer);
                close = Close::Block;
            }
            _ => {}
        }
        if void {
            return;
        }
        self.stack.push(Frame {
            name,
            style: st,
            close,
            list,
            cells: 0,
        });
    }

    /// A text with a style of its own (an image's alternative text).
    fn text_styled(&mut self, text: &str, style: &Style) {
        self.stack.push(Frame {
            name: String::new(),
            style: style.clone(),
            close: Close::Inline,
            list: None,
            cells: 0,
        });
        self.text(text);
        self.stack.pop();
    }

    /// Closes what a start tag closes implicitly in HTML.
    fn close_implied(&mut self, name: &str) {
        let implied: &[&str] = match name {
            "li" => &["li"],
            "dt" | "dd" => &["dt", "dd"],
            "tr" => &["tr", "td", "th"],
            "td" | "th" => &["td", "th"],
            n if CLOSES_P.contains(&n) => &["p"],
            _ => &[],
        };
        // Only within the nearest container (a list item does not close
        // one of an outer list).
        let boundary: &[&str] = match name {
            "li" => &["ul", "ol"],
            "tr" | "td" | "th" => &["table"],
            _ => &["blockquote", "li", "td", "th", "div"],
        };
        let found = self
            .stack
            .iter()
            .rposition(|f| implied.contains(&f.name.as_str()));
        let limit = self
            .stack
            .iter()
            .rposition(|f| boundary.contains(&f.name.as_str()));
        if let Some(i) = found
            && limit.is_none_or(|l| i > l)
        {
            self.close_to(i);
        }
    }

    fn end(&mut self, name: &str) {
        if let Some(i) = self.stack.iter().rposition(|f| f.name == name) {
            // While skipping, only the skipped elements are on the stack.
            self.close_to(i);
        } else if name == "p" && self.skip == 0 {
            // `</p>` without `<p>` is an empty paragraph in HTML.
            let outer = self.style();
            self.block_break(&outer);
        } else if name == "br" && self.skip == 0 {
            let outer = self.style();
            self.newline(&outer);
        }
    }

    /// Closes the frames from the top down to index `i`, included.
    fn close_to(&mut self, i: usize) {
        while self.stack.len() > i {
            let Some(f) = self.stack.pop() else {
                return;
            };
            let outer = self.style();
            match f.close {
                Close::Inline => {}
                Close::Block => self.block_break(&outer),
                Close::Pre => {
                    self.newline(&outer);
                    self.after_pre_start = false;
                }
                Close::Quote => self.block_break(&f.style),
                Close::Skip => self.skip = self.skip.saturating_sub(1),
            }
        }
    }

    fn finish(mut self) -> Rich {
        self.close_to(0);
        let mut out = self.out;
        while let Some(last) = out.spans.last_mut() {
            let keep = if last.style.pre {
                last.text.trim_end_matches('\n').len()
            } else {
                last.text.trim_end_matches(['\n', ' ']).len()
            };
            if keep == 0 {
                out.spans.pop();
            } else {
                last.text.truncate(keep);
                break;
            }
        }
        while let Some(first) = out.spans.first_mut() {
            let trimmed = first.text.trim_start_matches(['\n', ' ']);
            if trimmed.is_empty() {
                out.spans.remove(0);
            } else {
                first.text = trimmed.to_owned();
                break;
            }
        }
        out
    }
}

/// Whether a link may be kept: a scheme a chat client opens safely.
fn safe_link(href: &str) -> bool {
    let h = href.trim().to_ascii_lowercase();
    ["http://", "https://", "mailto:", "xmpp:", "matrix:"]
        .iter()
        .any(|s| h.starts_with(s))
}

/// Applies the CSS declarations that have a [`Style`] equivalent.
fn apply_css(style: &mut Style, css: &str) {
    for decl in css.split(';') {
        let Some((prop, value)) = decl.split_once(':') else {
            continue;
        };
        let value = value
            .trim()
            .trim_end_matches("!important")
            .trim()
            .to_ascii_lowercase();
        match prop.trim().to_ascii_lowercase().as_str() {
            "font-weight" => {
                style.bold = value == "bold"
                    || value == "bolder"
                    || value.parse::<u32>().is_ok_and(|w| w >= 600);
            }
            "font-style" => style.italic = value == "italic" || value == "oblique",
            "text-decoration" | "text-decoration-line" => {
                style.underline = value.contains("underline");
                style.strike = value.contains("line-through");
            }
            "color" => style.fg = Color::parse(&value).or(style.fg),
            "background-color" | "background" => style.bg = Color::parse(&value).or(style.bg),
            "font-family" if value.contains("monospace") => style.code = true,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn styled(text: &str, f: impl FnOnce(&mut Style)) -> Rich {
        let mut st = Style::default();
        f(&mut st);
        let mut r = Rich::default();
        r.push(text, &st);
        r
    }

    fn find<'a>(r: &'a Rich, text: &str) -> &'a Style {
        &r.spans
            .iter()
            .find(|s| s.text == text)
            .unwrap_or_else(|| panic!("no span {text:?} in {r:?}"))
            .style
    }

    #[test]
    fn every_dialect_renders_its_own_tags() {
        let mut r = Rich::default();
        r.push("a<b ", &Style::default());
        r.push(
            "u",
            &Style {
                underline: true,
                fg: Some(Color(255, 0, 0)),
                ..Style::default()
            },
        );
        r.push("\n", &Style::default());
        r.push(
            "q",
            &Style {
                quote: 1,
                ..Style::default()
            },
        );
        assert_eq!(
            r.to_html(Dialect::XhtmlIm),
            "a&lt;b <span style=\"text-decoration: underline;color: #ff0000;\">u</span><br/><blockquote>q</blockquote>"
        );
        assert_eq!(
            r.to_html(Dialect::Matrix),
            "a&lt;b <u><font color=\"#ff0000\">u</font></u><br/><blockquote>q</blockquote>"
        );
        let email = r.to_html(Dialect::Email);
        assert!(email.starts_with("a&lt;b <span style=\"text-decoration: underline;color: #ff0000;\">u</span><br><blockquote style="), "{email}");
    }

    #[test]
    fn every_dialect_reads_back_what_it_writes() {
        let mut r = Rich::default();
        r.push("plain ", &Style::default());
        r.push(
            "bold",
            &Style {
                bold: true,
                ..Style::default()
            },
        );
        r.push(" & <tags> ", &Style::default());
        r.push(
            "red",
            &Style {
                fg: Some(Color(255, 0, 0)),
                ..Style::default()
            },
        );
        r.push(" ", &Style::default());
        r.push(
            "link",
            &Style {
                link: Some("https://example.org/?a=1&b=2".into()),
                ..Style::default()
            },
        );
        for d in [Dialect::XhtmlIm, Dialect::Matrix, Dialect::Email] {
            assert_eq!(Rich::from_html(&r.to_html(d), d), r, "{d:?}");
        }
    }

    #[test]
    fn paragraphs_differ_by_dialect() {
        let html = "<p>one\n   two</p><p>three<br/>four</p>";
        assert_eq!(
            Rich::from_html(html, Dialect::XhtmlIm).to_plain(),
            "one two\nthree\nfour"
        );
        assert_eq!(
            Rich::from_html(html, Dialect::Matrix).to_plain(),
            "one two\n\nthree\nfour"
        );
    }

    #[test]
    fn scripts_styles_heads_and_unsafe_links_never_pass() {
        let html = "<html><head><title>T</title><style>p { color: red } a<b</style></head>\
                    <body><script>if (a<b) alert(1)</script><b onclick=\"x()\">hi</b>\
                    <a href=\"javascript:alert(1)\">link</a> <img src=\"http://evil/x.png\" alt=\"pic\">\
                    <iframe src=x>inner</iframe></body></html>";
        for d in [Dialect::XhtmlIm, Dialect::Matrix, Dialect::Email] {
            let r = Rich::from_html(html, d);
            let plain = r.to_plain();
            assert_eq!(plain, "hilink pic", "{d:?}");
            assert!(r.spans.iter().all(|s| s.style.link.is_none()), "{d:?}");
        }
    }

    #[test]
    fn matrix_reply_fallbacks_and_mx_attributes() {
        let html = "<mx-reply><blockquote><a href=\"https://matrix.to/#/!r:hs/$e\">In reply to</a> \
                    quoted</blockquote></mx-reply>the <b>answer</b> \
                    <span data-mx-bg-color=\"#00ff00\">bg</span> <span data-mx-spoiler>secret</span>";
        let r = Rich::from_html(html, Dialect::Matrix);
        assert_eq!(r.to_plain(), "the answer bg secret");
        assert_eq!(find(&r, "bg").bg, Some(Color(0, 255, 0)));
        assert!(find(&r, "secret").spoiler);
        // Other dialects do not know these attributes.
        let r = Rich::from_html(html, Dialect::XhtmlIm);
        assert!(r.to_plain().contains("quoted"));
        assert!(r.spans.iter().all(|s| s.style.bg.is_none()));
    }

    #[test]
    fn lists_quotes_tables_and_pre() {
        let html = "<p>one</p><p>two</p><blockquote>quoted</blockquote><ul><li>a<li>b</ul>\
                    <ol start=\"3\"><li>x</li><li>y</li></ol><pre><code>let x = 1;\nx</code></pre>\
                    <table><tr><th>k</th><td>v</td></tr><tr><td>1</td><td>2</td></tr></table>";
        let r = Rich::from_html(html, Dialect::Matrix);
        assert_eq!(
            r.to_plain(),
            "one\n\ntwo\nquoted\n• a\n• b\n3. x\n4. y\nlet x = 1;\nx\nk | v\n1 | 2"
        );
        assert_eq!(find(&r, "quoted\n").quote, 1);
        assert!(find(&r, "let x = 1;\nx").pre);
        assert!(find(&r, "k").bold);
    }

    #[test]
    fn email_documents_with_css() {
        let html = "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><style>.x{}</style></head>\
                    <body><div>Hello <span style=\"font-weight:bold; color: #00f\">you</span>,</div>\
                    <div><br></div><div>see <i>this</i>&nbsp;&amp; that</div></body></html>";
        let r = Rich::from_html(html, Dialect::Email);
        assert_eq!(r.to_plain(), "Hello you,\n\nsee this\u{a0}& that");
        let you = find(&r, "you");
        assert!(you.bold);
        assert_eq!(you.fg, Some(Color(0, 0, 255)));
        assert!(find(&r, "this").italic);
    }

    #[test]
    fn plain_html_is_not_styled() {
        assert!(!Rich::from_html("<p>just text</p>", Dialect::Matrix).is_styled());
        assert!(Rich::from_html("", Dialect::Email).spans.is_empty());
        assert_eq!(Rich::from_html("a<b>b", Dialect::XhtmlIm), {
            let mut r = Rich::plain("a");
            r.push(
                "b",
                &Style {
                    bold: true,
                    ..Style::default()
                },
            );
            r
        });
        assert_eq!(
            Rich::from_html("<em>x</em>", Dialect::Email),
            styled("x", |s| s.italic = true)
        );
    }
}
