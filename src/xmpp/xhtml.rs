//! XEP-0071 XHTML-IM, both ways: the `<html/>` payload of a message read
//! into a [`Rich`] text, and a [`Rich`] text written as one, through the
//! bridge API's one HTML renderer and parser in its XHTML-IM dialect
//! ([`Dialect::XhtmlIm`]).
//!
//! Reading keeps what chat networks can show: `strong`/`b`, `em`/`i`,
//! `u`, `s`/`del`/`strike`, `code`, `pre`, `blockquote`, `a href`, `br`,
//! paragraphs and list items as lines, and the CSS properties of `style`
//! attributes that have an equivalent (weight, slant, decoration, colours).
//! Whitespace is collapsed as HTML does, except inside `pre`. Unknown
//! elements contribute their text; images their `alt` text.

use ferry_bridge::{Dialect, Rich};
use xmpp_parsers::minidom::Element;

use crate::xmpp::xml::ns;

/// Reads the XHTML-IM payload of a message (the `<html/>` element), if it
/// has a body.
pub fn parse(html: &Element) -> Option<Rich> {
    let body = html.children().find(|c| c.is("body", ns::XHTML))?;
    Some(Rich::from_html(&String::from(body), Dialect::XhtmlIm))
}

/// Writes a rich text as an XHTML-IM `<html/>` payload, or `None` when the
/// text has no style (then the body says it all).
pub fn render(rich: &Rich) -> Option<Element> {
    if !rich.is_styled() {
        return None;
    }
    let fragment = rich.to_html(Dialect::XhtmlIm);
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
    use ferry_bridge::{Color, Style};

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
