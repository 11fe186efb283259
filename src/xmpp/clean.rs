//! Cleaning of text that came from a network before it goes into a stanza,
//! and the message size limit.
//!
//! XML 1.0 allows only tab, line feed, carriage return and the characters
//! from U+0020 up, minus the surrogates and U+FFFE/U+FFFF; the XML writer
//! refuses anything else, which would break the component stream. So every
//! string from a network goes through [`clean`]: C0 controls other than tab
//! and line feed are dropped, a carriage return becomes a line feed (a
//! CR LF pair becomes one line feed, as an XML parser would read it), and
//! U+FFFE/U+FFFF are dropped. Rust strings cannot hold unpaired surrogates.

use std::borrow::Cow;

/// Whether a character may appear in an XML 1.0 document as it is.
fn allowed(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\u{20}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..)
}

/// Returns `text` made valid as XML 1.0 character data (borrowed when it
/// already was).
pub fn clean(text: &str) -> Cow<'_, str> {
    if text.chars().all(allowed) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\r' {
            if chars.peek() != Some(&'\n') {
                out.push('\n');
            }
        } else if allowed(c) {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Cleans an optional string.
pub fn clean_opt(text: Option<&str>) -> Option<String> {
    text.map(|t| clean(t).into_owned())
}

/// Cuts `text` to at most `max` bytes on a character boundary, appending a
/// marker that says how long the original was. Returns the text unchanged
/// when it fits.
pub fn truncate(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let marker = format!(" […] (message truncated: {} bytes)", text.len());
    let keep = max.saturating_sub(marker.len());
    let mut end = keep.min(text.len());
    while end > 0 && !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = String::with_capacity(end + marker.len());
    out.push_str(&text[..end]);
    out.push_str(&marker);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use xmpp_parsers::minidom::Element;

    #[test]
    fn valid_text_is_borrowed() {
        assert!(matches!(clean("héllo\tworld\n😀"), Cow::Borrowed(_)));
    }

    #[test]
    fn controls_and_noncharacters_are_dropped() {
        assert_eq!(clean("a\u{0}b\u{1}c\u{8}d\u{b}e\u{c}f\u{1f}g"), "abcdefg");
        assert_eq!(clean("x\u{fffe}y\u{ffff}z"), "xyz");
        assert_eq!(clean("keep\ttab\nand lf"), "keep\ttab\nand lf");
        // U+FFFD and astral characters stay.
        assert_eq!(clean("\u{fffd}\u{1f600}"), "\u{fffd}\u{1f600}");
    }

    #[test]
    fn carriage_returns_become_line_feeds() {
        assert_eq!(clean("a\rb"), "a\nb");
        assert_eq!(clean("a\r\nb"), "a\nb");
        assert_eq!(clean("a\r\r\nb"), "a\n\nb");
        assert_eq!(clean("end\r"), "end\n");
    }

    #[test]
    fn cleaned_text_survives_the_xml_writer_and_parser() {
        let nasty: String = (0u32..0x30)
            .filter_map(char::from_u32)
            .chain(['\u{fffe}', '\u{ffff}', '\u{d7ff}', '\u{e000}'])
            .collect();
        let cleaned = clean(&nasty);
        let mut el = Element::bare("body", "jabber:client");
        el.append_text(cleaned.to_string());
        let s = String::from(&el);
        let back: Element = s.parse().expect("cleaned text parses");
        assert_eq!(back.text(), cleaned);
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate("short", 10), "short");
        let long = "é".repeat(100);
        let cut = truncate(&long, 80);
        assert!(cut.len() <= 80, "{}", cut.len());
        assert!(cut.ends_with("(message truncated: 200 bytes)"));
        assert!(cut.starts_with('é'));
    }
}
