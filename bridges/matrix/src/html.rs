//! Formatted bodies: Matrix HTML (`org.matrix.custom.html`) to
//! [`Rich`] text and back.
//!
//! Incoming HTML is parsed and sanitised with `ruma-html` (html5ever) in
//! its compat mode — only the elements and attributes the Matrix
//! specification suggests survive, rich-reply fallbacks (`<mx-reply>`) are
//! removed — and only then walked into spans, so no markup from the
//! network ever reaches XMPP as markup. Outgoing [`Rich`] text is rendered
//! into the HTML subset Matrix clients understand (`<font color>`,
//! `data-mx-bg-color`, `data-mx-spoiler` …), every text escaped.

use std::fmt::Write as _;

use ferry_bridge::text::escape_html;
use ferry_bridge::{Color, Rich, Style};
use ruma_html::{Html, NodeData, NodeRef, SanitizerConfig};

/// Converts a Matrix HTML body to rich text. Returns `None` when the HTML
/// carries no formatting at all (plain text in a `<p>`, say).
pub fn html_to_rich(html: &str) -> Option<Rich> {
    let doc = Html::parse(html);
    doc.sanitize_with(
        &SanitizerConfig::compat()
            .remove_reply_fallback()
            // Elements whose text is not content.
            .remove_elements([
                "script", "style", "noscript", "template", "title", "head", "iframe", "object",
                "embed", "svg", "math",
            ]),
    );
    let mut walker = Walker::default();
    for child in doc.children() {
        walker.node(&child, &Style::default());
    }
    let mut rich = walker.rich;
    trim_end(&mut rich);
    trim_start(&mut rich);
    if rich.spans.is_empty() || !rich.is_styled() {
        return None;
    }
    Some(rich)
}

#[derive(Default)]
struct Walker {
    rich: Rich,
    /// Whether the text so far ends a line (or nothing was written yet).
    at_line_start: bool,
    started: bool,
    /// Whether the last text written ended with a space (for whitespace
    /// collapsing).
    last_space: bool,
}

impl Walker {
    fn text(&mut self, text: &str, style: &Style) {
        if text.is_empty() {
            return;
        }
        if style.pre {
            self.push(text, style);
            return;
        }
        let mut out = String::with_capacity(text.len());
        for c in text.chars() {
            if c.is_whitespace() {
                let leading = self.at_line_start && out.is_empty();
                if !(self.last_space || leading) {
                    out.push(' ');
                }
                self.last_space = true;
            } else {
                out.push(c);
                self.last_space = false;
            }
        }
        if !out.is_empty() {
            self.push(&out, style);
        }
    }

    fn push(&mut self, text: &str, style: &Style) {
        // A quotation must sit on its own lines: the line-break that
        // separates it is written without the quote depth.
        self.rich.push(text, style);
        self.started = true;
        self.at_line_start = text.ends_with('\n');
        self.last_space = text.ends_with([' ', '\n']);
    }

    fn newline(&mut self, style: &Style) {
        let plain = Style {
            quote: style.quote,
            pre: false,
            ..Style::default()
        };
        self.push("\n", &plain);
    }

    /// Makes sure what follows starts on a new line.
    fn block_break(&mut self, style: &Style) {
        if self.started && !self.at_line_start {
            self.newline(style);
        }
    }

    fn node(&mut self, node: &NodeRef, style: &Style) {
        match node.data() {
            NodeData::Text(text) => {
                let text = text.borrow();
                self.text(&text, style);
            }
            NodeData::Element(el) => {
                let name = el.name.local.as_ref().to_ascii_lowercase();
                let attrs = el.attrs.borrow();
                let attr = |n: &str| {
                    attrs
                        .iter()
                        .find(|a| a.name.local.as_ref() == n)
                        .map(|a| a.value.to_string())
                };
                let mut st = style.clone();
                let mut block = false;
                let mut prefix: Option<String> = None;
                let mut suffix: Option<&str> = None;
                match name.as_str() {
                    "b" | "strong" => st.bold = true,
                    "i" | "em" => st.italic = true,
                    "u" => st.underline = true,
                    "del" | "s" | "strike" => st.strike = true,
                    "code" => st.code = true,
                    "pre" => {
                        st.pre = true;
                        st.code = false;
                        block = true;
                    }
                    "blockquote" => {
                        st.quote = st.quote.saturating_add(1);
                        block = true;
                    }
                    "a" => {
                        if let Some(href) = attr("href") {
                            st.link = Some(href);
                        }
                    }
                    "font" | "span" => {
                        if let Some(c) = attr("data-mx-color")
                            .or_else(|| attr("color"))
                            .and_then(|c| Color::parse(&c))
                        {
                            st.fg = Some(c);
                        }
                        if let Some(c) = attr("data-mx-bg-color").and_then(|c| Color::parse(&c)) {
                            st.bg = Some(c);
                        }
                        if attrs
                            .iter()
                            .any(|a| a.name.local.as_ref() == "data-mx-spoiler")
                        {
                            st.spoiler = true;
                        }
                    }
                    "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => {
                        st.bold = true;
                        block = true;
                    }
                    "p" | "div" | "ul" | "ol" | "table" | "tr" | "details" | "summary"
                    | "caption" => block = true,
                    "li" => {
                        block = true;
                        let ordered = node
                            .parent()
                            .and_then(|p| {
                                p.as_element()
                                    .map(|e| e.name.local.as_ref().eq_ignore_ascii_case("ol"))
                            })
                            .unwrap_or(false);
                        prefix = Some(if ordered {
                            let n = 1 + count_previous_items(node);
                            format!("{n}. ")
                        } else {
                            "• ".into()
                        });
                    }
                    "td" | "th" => {
                        if node.prev_sibling().is_some() {
                            prefix = Some(" | ".into());
                        }
                        if name == "th" {
                            st.bold = true;
                        }
                    }
                    "br" => {
                        self.newline(style);
                        return;
                    }
                    "hr" => {
                        self.block_break(style);
                        self.push("———", &Style::default());
                        self.newline(style);
                        return;
                    }
                    "img" => {
                        let alt = attr("alt").or_else(|| attr("title")).unwrap_or_default();
                        if !alt.is_empty() {
                            self.text(&alt, style);
                        }
                        return;
                    }
                    "sup" | "sub" => {}
                    _ => {}
                }
                if name == "p" && self.started {
                    // Paragraphs are separated by an empty line.
                    self.block_break(style);
                    if !self.rich.to_plain().ends_with("\n\n") {
                        self.newline(style);
                    }
                } else if block {
                    self.block_break(style);
                }
                if let Some(p) = prefix {
                    let pst = Style {
                        quote: st.quote,
                        ..Style::default()
                    };
                    self.push(&p, &pst);
                    self.last_space = true;
                }
                for child in node.children() {
                    self.node(&child, &st);
                }
                if let Some(s) = suffix.take() {
                    self.push(s, style);
                }
                if block {
                    self.block_break(style);
                }
            }
            NodeData::Document | NodeData::Other => {
                for child in node.children() {
                    self.node(&child, style);
                }
            }
        }
    }
}

fn count_previous_items(node: &NodeRef) -> usize {
    let mut n = 0;
    let mut cur = node.prev_sibling();
    while let Some(s) = cur {
        if s.as_element()
            .is_some_and(|e| e.name.local.as_ref().eq_ignore_ascii_case("li"))
        {
            n += 1;
        }
        cur = s.prev_sibling();
    }
    n
}

fn trim_end(rich: &mut Rich) {
    while let Some(last) = rich.spans.last_mut() {
        let t = last.text.trim_end_matches(['\n', ' ']).len();
        last.text.truncate(t);
        if last.text.is_empty() {
            rich.spans.pop();
        } else {
            break;
        }
    }
}

fn trim_start(rich: &mut Rich) {
    while let Some(first) = rich.spans.first_mut() {
        let t = first.text.trim_start_matches(['\n', ' ']).to_owned();
        first.text = t;
        if first.text.is_empty() {
            rich.spans.remove(0);
        } else {
            break;
        }
    }
}

/// Renders rich text as Matrix HTML.
pub fn rich_to_html(rich: &Rich) -> String {
    let mut out = String::new();
    let mut quote = 0u8;
    let mut in_pre = false;
    for span in &rich.spans {
        let st = &span.style;
        if st.pre != in_pre || st.quote != quote {
            if in_pre {
                out.push_str("</code></pre>");
            }
            while quote > st.quote {
                out.push_str("</blockquote>");
                quote -= 1;
            }
            while quote < st.quote {
                out.push_str("<blockquote>");
                quote += 1;
            }
            if st.pre {
                out.push_str("<pre><code>");
            }
            in_pre = st.pre;
        }
        let mut close: Vec<&str> = Vec::new();
        if let Some(link) = &st.link {
            let _ = write!(out, "<a href=\"{}\">", escape_html(link));
            close.push("</a>");
        }
        if st.bold {
            out.push_str("<strong>");
            close.push("</strong>");
        }
        if st.italic {
            out.push_str("<em>");
            close.push("</em>");
        }
        if st.underline {
            out.push_str("<u>");
            close.push("</u>");
        }
        if st.strike {
            out.push_str("<del>");
            close.push("</del>");
        }
        if st.code && !st.pre {
            out.push_str("<code>");
            close.push("</code>");
        }
        if let Some(fg) = st.fg {
            let _ = write!(out, "<font color=\"{}\">", fg.to_hex());
            close.push("</font>");
        }
        if st.bg.is_some() || st.spoiler {
            out.push_str("<span");
            if let Some(bg) = st.bg {
                let _ = write!(out, " data-mx-bg-color=\"{}\"", bg.to_hex());
            }
            if st.spoiler {
                out.push_str(" data-mx-spoiler");
            }
            out.push('>');
            close.push("</span>");
        }
        let escaped = escape_html(&span.text);
        if in_pre {
            out.push_str(&escaped);
        } else {
            // Line breaks that end a quotation are implied by the closing
            // tag.
            out.push_str(&escaped.replace('\n', "<br/>"));
        }
        for c in close.iter().rev() {
            out.push_str(c);
        }
    }
    if in_pre {
        out.push_str("</code></pre>");
    }
    for _ in 0..quote {
        out.push_str("</blockquote>");
    }
    out.replace("<br/></blockquote>", "</blockquote>")
}

/// Removes a rich-reply fallback (`> <@user> quoted` lines and the empty
/// line after them) from the start of a plain-text body.
pub fn strip_plain_reply_fallback(body: &str) -> &str {
    if !body.starts_with("> ") {
        return body;
    }
    let mut rest = body;
    while rest.starts_with('>') {
        match rest.find('\n') {
            Some(i) => rest = &rest[i + 1..],
            None => return body,
        }
    }
    rest.strip_prefix('\n').unwrap_or(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans(r: &Rich) -> Vec<(String, Style)> {
        r.spans
            .iter()
            .map(|s| (s.text.clone(), s.style.clone()))
            .collect()
    }

    #[test]
    fn basic_formatting_becomes_spans() {
        let r = html_to_rich("hello <b>bold</b> and <em>it</em>").expect("styled");
        assert_eq!(r.to_plain(), "hello bold and it");
        let s = spans(&r);
        assert!(s.iter().any(|(t, st)| t == "bold" && st.bold));
        assert!(s.iter().any(|(t, st)| t == "it" && st.italic));
    }

    #[test]
    fn scripts_and_unknown_markup_never_pass() {
        let html = "<script>alert(1)</script><b onclick=\"x()\">hi</b><iframe src=x></iframe>\
                    <a href=\"javascript:alert(1)\">link</a><img src=\"http://evil/x.png\" alt=\"pic\">";
        let r = html_to_rich(html).expect("styled");
        let plain = r.to_plain();
        assert!(!plain.contains("alert"), "{plain}");
        assert!(plain.contains("hi"));
        assert!(plain.contains("link"));
        for s in &r.spans {
            if let Some(l) = &s.style.link {
                assert!(!l.starts_with("javascript"), "{l}");
            }
        }
    }

    #[test]
    fn reply_fallback_is_removed() {
        let html = "<mx-reply><blockquote><a href=\"https://matrix.to/#/!r:hs/$e\">In reply to</a> \
                    quoted</blockquote></mx-reply>the <b>answer</b>";
        let r = html_to_rich(html).expect("styled");
        assert_eq!(r.to_plain(), "the answer");
        assert_eq!(
            strip_plain_reply_fallback("> <@a:hs> quoted\n> more\n\nthe answer"),
            "the answer"
        );
        assert_eq!(strip_plain_reply_fallback("plain"), "plain");
        assert_eq!(
            strip_plain_reply_fallback("> only a quote"),
            "> only a quote"
        );
    }

    #[test]
    fn blocks_lists_quotes_and_code() {
        let html = "<p>one</p><p>two</p><blockquote>quoted</blockquote><ul><li>a</li><li>b</li></ul>\
                    <ol><li>x</li><li>y</li></ol><pre><code>let x = 1;\nx</code></pre>";
        let r = html_to_rich(html).expect("styled");
        assert_eq!(
            r.to_plain(),
            "one\n\ntwo\nquoted\n• a\n• b\n1. x\n2. y\nlet x = 1;\nx"
        );
        assert!(
            r.spans
                .iter()
                .any(|s| s.text.contains("quoted") && s.style.quote == 1)
        );
        assert!(
            r.spans
                .iter()
                .any(|s| s.text.contains("let x") && s.style.pre)
        );
    }

    #[test]
    fn colours_spoilers_and_links() {
        let html = "<font color=\"#ff0000\">red</font> <span data-mx-bg-color=\"#00ff00\">bg</span> \
                    <span data-mx-spoiler>secret</span> <a href=\"https://example.org\">site</a>";
        let r = html_to_rich(html).expect("styled");
        let s = spans(&r);
        assert!(
            s.iter()
                .any(|(t, st)| t == "red" && st.fg == Some(Color(255, 0, 0)))
        );
        assert!(
            s.iter()
                .any(|(t, st)| t == "bg" && st.bg == Some(Color(0, 255, 0)))
        );
        assert!(s.iter().any(|(t, st)| t == "secret" && st.spoiler));
        assert!(
            s.iter()
                .any(|(t, st)| t == "site" && st.link.as_deref() == Some("https://example.org"))
        );
    }

    #[test]
    fn plain_html_is_not_rich() {
        assert_eq!(html_to_rich("<p>just text</p>"), None);
        assert_eq!(html_to_rich(""), None);
    }

    #[test]
    fn rich_renders_to_matrix_html_and_back() {
        let mut r = Rich::default();
        r.push("a<b ", &Style::default());
        r.push(
            "bold",
            &Style {
                bold: true,
                ..Style::default()
            },
        );
        r.push(
            " red",
            &Style {
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
        r.push(
            "x<y",
            &Style {
                pre: true,
                ..Style::default()
            },
        );
        let html = rich_to_html(&r);
        assert_eq!(
            html,
            "a&lt;b <strong>bold</strong><font color=\"#ff0000\"> red</font><br/>\
             <blockquote>q</blockquote><pre><code>x&lt;y</code></pre>"
        );
        let back = html_to_rich(&html).expect("styled");
        assert_eq!(back.to_plain(), "a<b bold red\nq\nx<y");
    }
}
