//! XEP-0071 XHTML-IM, both ways: the `<html/>` payload of a message read
//! into a [`Rich`] text, and a [`Rich`] text written as one.
//!
//! Reading keeps what chat networks can show: `strong`/`b`, `em`/`i`,
//! `u`, `s`/`del`/`strike`, `code`, `pre`, `blockquote`, `a href`, `br`,
//! paragraphs and list items as lines, and the CSS properties of `style`
//! attributes that have an equivalent (weight, slant, decoration, colours).
//! Whitespace is collapsed as HTML does, except inside `pre`. Unknown
//! elements contribute their text; images their `alt` text.

use ferry_bridge::{Color, Rich, Style};
use xmpp_parsers::minidom::{Element, Node};

use crate::gateway::xml::ns;

/// Reads the XHTML-IM payload of a message (the `<html/>` element), if it
/// has a body.
pub fn parse(html: &Element) -> Option<Rich> {
    let body = html.children().find(|c| c.is("body", ns::XHTML))?;
    let mut w = Walker {
        out: Rich::default(),
        pending_space: false,
        at_line_start: true,
    };
    w.element_children(body, &Style::default());
    let mut out = w.out;
    // Trim trailing newlines left by block elements.
    while let Some(last) = out.spans.last_mut() {
        let trimmed = last.text.trim_end_matches('\n').len();
        if trimmed == 0 {
            out.spans.pop();
        } else {
            last.text.truncate(trimmed);
            break;
        }
    }
    Some(out)
}

struct Walker {
    out: Rich,
    pending_space: bool,
    at_line_start: bool,
}

impl Walker {
    fn text(&mut self, text: &str, style: &Style) {
        if style.pre {
            self.out.push(text, style);
            self.at_line_start = text.ends_with('\n');
            self.pending_space = false;
            return;
        }
        // A collapsed space between elements takes no inline style.
        let base = Style {
            quote: style.quote,
            ..Style::default()
        };
        let mut buf = String::new();
        for c in text.chars() {
            if c.is_whitespace() {
                if !self.at_line_start {
                    self.pending_space = true;
                }
            } else {
                if self.pending_space {
                    if buf.is_empty() {
                        self.out.push(" ", &base);
                    } else {
                        buf.push(' ');
                    }
                    self.pending_space = false;
                }
                buf.push(c);
                self.at_line_start = false;
            }
        }
        if !buf.is_empty() {
            self.out.push(&buf, style);
        }
    }

    fn newline(&mut self, style: &Style) {
        let plain = Style {
            quote: style.quote,
            ..Style::default()
        };
        self.out.push("\n", &plain);
        self.at_line_start = true;
        self.pending_space = false;
    }

    fn block_break(&mut self, style: &Style) {
        if !self.at_line_start {
            self.newline(style);
        }
    }

    fn element_children(&mut self, el: &Element, style: &Style) {
        for node in el.nodes() {
            match node {
                Node::Text(t) => self.text(t, style),
                Node::Element(child) => self.element(child, style),
            }
        }
    }

    fn element(&mut self, el: &Element, style: &Style) {
        let mut st = style.clone();
        if let Some(css) = el.attr("style") {
            apply_css(&mut st, css);
        }
        match el.name() {
            "br" => {
                self.newline(style);
                return;
            }
            "strong" | "b" => st.bold = true,
            "em" | "i" | "cite" => st.italic = true,
            "u" | "ins" => st.underline = true,
            "s" | "del" | "strike" => st.strike = true,
            "code" | "tt" | "kbd" | "samp" => st.code = true,
            "a" => {
                if let Some(href) = el.attr("href") {
                    st.link = Some(href.to_owned());
                }
            }
            "img" => {
                let alt = el.attr("alt").or(el.attr("src")).unwrap_or("");
                self.text(alt, &st);
                return;
            }
            "pre" => {
                self.block_break(style);
                st.pre = true;
                self.element_children(el, &st);
                self.newline(style);
                return;
            }
            "blockquote" => {
                self.block_break(style);
                st.quote = st.quote.saturating_add(1);
                self.element_children(el, &st);
                self.block_break(&st);
                return;
            }
            "p" | "div" | "ul" | "ol" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => {
                self.block_break(style);
                self.element_children(el, &st);
                self.block_break(style);
                return;
            }
            "li" => {
                self.block_break(style);
                self.text("• ", style);
                self.element_children(el, &st);
                self.block_break(style);
                return;
            }
            _ => {}
        }
        self.element_children(el, &st);
    }
}

/// Applies the CSS declarations that have a [`Style`] equivalent.
fn apply_css(style: &mut Style, css: &str) {
    for decl in css.split(';') {
        let Some((prop, value)) = decl.split_once(':') else {
            continue;
        };
        let value = value.trim().to_ascii_lowercase();
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

/// Writes a rich text as an XHTML-IM `<html/>` payload, or `None` when the
/// text has no style (then the body says it all).
pub fn render(rich: &Rich) -> Option<Element> {
    if !rich.is_styled() {
        return None;
    }
    let fragment = rich.to_html();
    let source = format!(
        "<html xmlns='{}'><body xmlns='{}'>{}</body></html>",
        ns::XHTML_IM,
        ns::XHTML,
        fragment
    );
    source.parse::<Element>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn html(body: &str) -> Element {
        format!(
            "<html xmlns='{}'><body xmlns='{}'>{}</body></html>",
            ns::XHTML_IM,
            ns::XHTML,
            body
        )
        .parse()
        .expect("test html parses")
    }

    #[test]
    fn basic_styles() {
        let r = parse(&html(
            "a <strong>b</strong> <em>c</em> <span style='text-decoration: underline; color: #ff0000'>d</span>",
        ))
        .expect("has body");
        assert_eq!(r.to_plain(), "a b c d");
        let b = r.spans.iter().find(|s| s.text == "b").expect("b");
        assert!(b.style.bold);
        let c = r.spans.iter().find(|s| s.text == "c").expect("c");
        assert!(c.style.italic);
        let d = r.spans.iter().find(|s| s.text == "d").expect("d");
        assert!(d.style.underline);
        assert_eq!(d.style.fg, Some(Color(255, 0, 0)));
    }

    #[test]
    fn whitespace_collapses_and_breaks_make_lines() {
        let r = parse(&html("<p>one\n   two</p><p>three<br/>four</p>")).expect("body");
        assert_eq!(r.to_plain(), "one two\nthree\nfour");
    }

    #[test]
    fn links_code_pre_and_quotes() {
        let r = parse(&html(
            "see <a href='https://x.org/'>x</a><pre>a  b\nc</pre><blockquote>q</blockquote>",
        ))
        .expect("body");
        let link = r.spans.iter().find(|s| s.text == "x").expect("x");
        assert_eq!(link.style.link.as_deref(), Some("https://x.org/"));
        let pre = r.spans.iter().find(|s| s.style.pre).expect("pre");
        assert_eq!(pre.text, "a  b\nc");
        let q = r.spans.iter().find(|s| s.text == "q").expect("q");
        assert_eq!(q.style.quote, 1);
    }

    #[test]
    fn no_body_is_none() {
        let el: Element = format!("<html xmlns='{}'/>", ns::XHTML_IM)
            .parse()
            .expect("parses");
        assert!(parse(&el).is_none());
    }

    #[test]
    fn render_round_trips() {
        let mut r = Rich::default();
        r.push("plain ", &Style::default());
        r.push(
            "bold",
            &Style {
                bold: true,
                ..Style::default()
            },
        );
        r.push(" & <tags>", &Style::default());
        let el = render(&r).expect("styled");
        let back = parse(&el).expect("body");
        assert_eq!(back, r);
        assert!(render(&Rich::plain("nothing")).is_none());
    }
}
