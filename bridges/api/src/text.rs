//! Formatted text in a form every network can map to and from.
//!
//! A [`Rich`] text is a sequence of [`Span`]s, each a piece of text with a
//! [`Style`]. Line breaks are `\n` inside span text. Block structure is kept
//! to what chat networks have in common: a line whose spans are all
//! `quote > 0` is a quotation, spans marked `pre` are a preformatted block.
//! The core turns this into XMPP (XEP-0393 styling in the body, XHTML-IM);
//! bridges turn it into their network's markup (IRC control codes, Matrix
//! HTML, email HTML). HTML in every dialect is written and read here, by
//! [`Rich::to_html`] and [`Rich::from_html`] with a [`Dialect`].

/// Formatted text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rich {
    /// The spans, in order.
    pub spans: Vec<Span>,
}

/// A piece of text with one style.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Span {
    /// The text (may contain `\n`).
    pub text: String,
    /// How it looks.
    pub style: Style,
}

/// The style of a span.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Style {
    /// Bold / strong.
    pub bold: bool,
    /// Italic / emphasis.
    pub italic: bool,
    /// Underlined.
    pub underline: bool,
    /// Struck through.
    pub strike: bool,
    /// Inline monospace.
    pub code: bool,
    /// Part of a preformatted block.
    pub pre: bool,
    /// Quotation depth (0 = not quoted).
    pub quote: u8,
    /// Text colour.
    pub fg: Option<Color>,
    /// Background colour.
    pub bg: Option<Color>,
    /// Hyperlink target.
    pub link: Option<String>,
    /// Hidden until revealed (spoiler).
    pub spoiler: bool,
}

impl Style {
    /// Whether this is the plain style.
    pub fn is_plain(&self) -> bool {
        *self == Style::default()
    }
}

/// An sRGB colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Color(pub u8, pub u8, pub u8);

impl Color {
    /// `#rrggbb`.
    pub fn to_hex(self) -> String {
        format!("#{:02x}{:02x}{:02x}", self.0, self.1, self.2)
    }

    /// Parses `#rgb`, `#rrggbb` or one of the sixteen CSS basic colour names.
    pub fn parse(s: &str) -> Option<Color> {
        let s = s.trim();
        if let Some(hex) = s.strip_prefix('#') {
            let digits: Vec<u8> = hex
                .chars()
                .map(|c| c.to_digit(16).map(|d| d as u8))
                .collect::<Option<_>>()?;
            return match digits.as_slice() {
                [r, g, b] => Some(Color(r * 17, g * 17, b * 17)),
                [r1, r2, g1, g2, b1, b2] => Some(Color(r1 * 16 + r2, g1 * 16 + g2, b1 * 16 + b2)),
                _ => None,
            };
        }
        let c = match s.to_ascii_lowercase().as_str() {
            "black" => Color(0, 0, 0),
            "silver" => Color(192, 192, 192),
            "gray" | "grey" => Color(128, 128, 128),
            "white" => Color(255, 255, 255),
            "maroon" => Color(128, 0, 0),
            "red" => Color(255, 0, 0),
            "purple" => Color(128, 0, 128),
            "fuchsia" | "magenta" => Color(255, 0, 255),
            "green" => Color(0, 128, 0),
            "lime" => Color(0, 255, 0),
            "olive" => Color(128, 128, 0),
            "yellow" => Color(255, 255, 0),
            "navy" => Color(0, 0, 128),
            "blue" => Color(0, 0, 255),
            "teal" => Color(0, 128, 128),
            "aqua" | "cyan" => Color(0, 255, 255),
            "orange" => Color(255, 165, 0),
            _ => return None,
        };
        Some(c)
    }
}

impl Rich {
    /// Text without any style.
    pub fn plain(text: impl Into<String>) -> Self {
        Rich {
            spans: vec![Span {
                text: text.into(),
                style: Style::default(),
            }],
        }
    }

    /// Appends text in a style, merging with the last span when the style is
    /// the same.
    pub fn push(&mut self, text: &str, style: &Style) {
        if text.is_empty() {
            return;
        }
        if let Some(last) = self.spans.last_mut()
            && last.style == *style
        {
            last.text.push_str(text);
            return;
        }
        self.spans.push(Span {
            text: text.to_owned(),
            style: style.clone(),
        });
    }

    /// The text without any formatting.
    pub fn to_plain(&self) -> String {
        self.spans.iter().map(|s| s.text.as_str()).collect()
    }

    /// Whether any span carries a style.
    pub fn is_styled(&self) -> bool {
        self.spans.iter().any(|s| !s.style.is_plain())
    }

    /// Renders as a fragment of HTML in a dialect (see [`Dialect`]), every
    /// text and attribute escaped.
    pub fn to_html(&self, dialect: Dialect) -> String {
        crate::html::render(self, dialect)
    }

    /// Reads HTML of a dialect: the text and the styles [`Style`] can say,
    /// nothing else (no markup of the input survives as markup, links are
    /// kept only for http(s), mailto, xmpp and matrix URIs). The result is
    /// unstyled when the HTML had no formatting ([`Rich::is_styled`]).
    pub fn from_html(html: &str, dialect: Dialect) -> Rich {
        crate::html::parse(html, dialect)
    }
}

/// The HTML a network speaks. Rendering and parsing share the walker and
/// differ only where the dialects do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// XEP-0071 XHTML-IM body content: `<strong>`, `<em>`, `<code>`,
    /// `<pre>`, `<blockquote>`, `<a href>`, `<br/>`, and CSS in `style`
    /// attributes for underline, strike-through and colours. Paragraphs
    /// are single lines.
    XhtmlIm,
    /// Matrix `org.matrix.custom.html`: `<u>`, `<del>`, `<font color>`,
    /// `data-mx-bg-color`, `data-mx-spoiler`, `<pre><code>`; rich-reply
    /// fallbacks (`<mx-reply>`) are not content; no CSS. Paragraphs are
    /// separated by an empty line.
    Matrix,
    /// The HTML part of an email: whole documents with `<head>` and
    /// `<style>` are read (their content is not text), CSS in `style`
    /// attributes counts; written as a fragment with inline styles only.
    /// Paragraphs are separated by an empty line.
    Email,
}

/// Escapes `&`, `<`, `>`, `"` and `'` for HTML text and attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escapes_and_nests() {
        let mut r = Rich::default();
        r.push("a<b ", &Style::default());
        r.push(
            "bold",
            &Style {
                bold: true,
                fg: Some(Color(255, 0, 0)),
                ..Style::default()
            },
        );
        r.push("\nnext", &Style::default());
        assert_eq!(
            r.to_html(Dialect::XhtmlIm),
            "a&lt;b <strong><span style=\"color: #ff0000;\">bold</span></strong><br/>next"
        );
        assert_eq!(r.to_plain(), "a<b bold\nnext");
    }

    #[test]
    fn quotes_and_pre_blocks() {
        let mut r = Rich::default();
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
        assert_eq!(
            r.to_html(Dialect::XhtmlIm),
            "<blockquote>q</blockquote><pre>x&lt;y</pre>"
        );
    }

    #[test]
    fn colours_parse() {
        assert_eq!(Color::parse("#f00"), Some(Color(255, 0, 0)));
        assert_eq!(Color::parse("#00ff7f"), Some(Color(0, 255, 127)));
        assert_eq!(Color::parse("Navy"), Some(Color(0, 0, 128)));
        assert_eq!(Color::parse("#12"), None);
        assert_eq!(Color::parse("nope"), None);
    }
}
