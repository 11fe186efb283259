//! HTML from mail: made readable as text (html2text) for the chat body,
//! and sanitised (ammonia) to a small set of harmless tags for clients
//! that show formatting. Scripts, styles, event handlers, remote images
//! and forms never survive.

use std::collections::HashSet;

/// The HTML rendered as plain text, with links kept as footnotes.
pub fn to_text(html: &str) -> String {
    // A wide line: chat clients wrap lines themselves.
    match html2text::from_read(html.as_bytes(), 10_000) {
        Ok(text) => text
            .lines()
            .map(str::trim_end)
            .collect::<Vec<_>>()
            .join("\n")
            .trim()
            .to_owned(),
        Err(_) => String::new(),
    }
}

/// The tags kept by [`sanitize`]: what XHTML-IM and most clients show.
const TAGS: &[&str] = &[
    "a",
    "b",
    "blockquote",
    "br",
    "cite",
    "code",
    "del",
    "em",
    "i",
    "li",
    "ol",
    "p",
    "pre",
    "s",
    "strong",
    "u",
    "ul",
];

/// The HTML with only harmless tags and attributes left.
pub fn sanitize(html: &str) -> String {
    let tags: HashSet<&str> = TAGS.iter().copied().collect();
    let mut builder = ammonia::Builder::default();
    builder
        .tags(tags)
        .tag_attributes(std::iter::once(("a", std::iter::once("href").collect())).collect())
        .generic_attributes(HashSet::new())
        .url_schemes(["http", "https", "mailto"].into_iter().collect())
        .link_rel(Some("noopener noreferrer"))
        .strip_comments(true);
    builder.clean(html).to_string().trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_and_handlers_go() {
        let dirty = "<p onclick='x()'>Hi <script>alert(1)</script><img src='http://t/x.gif'>\
                     <a href='javascript:evil()'>a</a> <a href='https://ok.example/'>b</a>\
                     <style>p{}</style></p>";
        let clean = sanitize(dirty);
        for bad in ["onclick", "script", "alert", "img", "javascript", "style"] {
            assert!(!clean.contains(bad), "{bad} in {clean}");
        }
        assert!(clean.contains("https://ok.example/"), "{clean}");
    }

    #[test]
    fn text_is_readable() {
        let t = to_text("<h1>Title</h1><p>First <b>bold</b></p><ul><li>one</li><li>two</li></ul>");
        assert!(
            t.contains("Title") && t.contains("bold") && t.contains("one"),
            "{t}"
        );
        assert!(!t.contains('<'), "{t}");
    }
}
