//! Formatted bodies: Matrix HTML (`org.matrix.custom.html`) to
//! [`Rich`] text and back, in the Matrix dialect of the bridge API's one
//! HTML renderer and parser ([`Dialect::Matrix`]): only text and styles
//! come out of the network's HTML (rich-reply fallbacks, scripts and
//! unknown markup never reach XMPP as markup), and outgoing text uses the
//! subset Matrix clients understand (`<font color>`, `data-mx-bg-color`,
//! `data-mx-spoiler` …).

use ferry_bridge::{Dialect, Rich};

/// Converts a Matrix HTML body to rich text. Returns `None` when the HTML
/// carries no formatting at all (plain text in a `<p>`, say).
pub fn html_to_rich(html: &str) -> Option<Rich> {
    let rich = Rich::from_html(html, Dialect::Matrix);
    (!rich.spans.is_empty() && rich.is_styled()).then_some(rich)
}

/// Renders rich text as Matrix HTML.
pub fn rich_to_html(rich: &Rich) -> String {
    rich.to_html(Dialect::Matrix)
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
    use ferry_bridge::{Color, Style};

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
