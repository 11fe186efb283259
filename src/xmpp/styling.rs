//! XEP-0393 Message Styling, both ways: a styled body parsed into a
//! [`Rich`] text, and a [`Rich`] text written as a styled body.
//!
//! Parsing follows the XEP: blocks first (preformatted blocks opened by a
//! line starting with three backticks, quotations of lines starting with
//! `>`, with the first whitespace after the `>` trimmed, and plain lines),
//! then spans inside plain lines, matched lazily. An opening directive sits
//! at the start of a line or after whitespace and is followed by neither
//! whitespace nor the same directive; a closing one follows no whitespace;
//! a span is never empty. The directive characters are not part of the
//! [`Rich`] text.

use ferry_bridge::{Rich, Style};

/// Whether a character is whitespace in the sense of the XEP.
fn is_ws(c: char) -> bool {
    c.is_whitespace()
}

/// Parses a styled body.
pub fn parse(body: &str) -> Rich {
    let lines: Vec<&str> = body.split('\n').collect();
    let mut out = Rich::default();
    parse_blocks(&lines, 0, &mut out);
    out
}

fn parse_blocks(lines: &[&str], depth: u8, out: &mut Rich) {
    let base = Style {
        quote: depth,
        ..Style::default()
    };
    let mut i = 0;
    let mut first = true;
    while i < lines.len() {
        let line = lines[i];
        if !first {
            out.push("\n", &base);
        }
        first = false;
        if line.starts_with("```") {
            let pre = Style {
                pre: true,
                quote: depth,
                ..Style::default()
            };
            let mut j = i + 1;
            let mut body = Vec::new();
            while j < lines.len() && lines[j] != "```" {
                body.push(lines[j]);
                j += 1;
            }
            out.push(&body.join("\n"), &pre);
            // Skip the closing line when there is one.
            i = if j < lines.len() { j + 1 } else { j };
        } else if line.starts_with('>') {
            let mut quoted = Vec::new();
            let mut j = i;
            while j < lines.len() && lines[j].starts_with('>') {
                let rest = &lines[j][1..];
                let rest = match rest.chars().next() {
                    Some(c) if is_ws(c) => &rest[c.len_utf8()..],
                    _ => rest,
                };
                quoted.push(rest);
                j += 1;
            }
            parse_blocks(&quoted, depth.saturating_add(1), out);
            i = j;
        } else {
            parse_spans(line, &base, out);
            i += 1;
        }
    }
}

fn with_directive(style: &Style, d: char) -> Style {
    let mut s = style.clone();
    match d {
        '*' => s.bold = true,
        '_' => s.italic = true,
        '~' => s.strike = true,
        '`' => s.code = true,
        _ => {}
    }
    s
}

fn parse_spans(text: &str, style: &Style, out: &mut Rich) {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let n = chars.len();
    let mut i = 0;
    let mut plain_from = 0; // byte offset
    while i < n {
        let (pos, c) = chars[i];
        let opens = matches!(c, '*' | '_' | '~' | '`')
            && (i == 0 || is_ws(chars[i - 1].1))
            && i + 1 < n
            && !is_ws(chars[i + 1].1)
            && chars[i + 1].1 != c;
        if opens {
            let close = (i + 2..n).find(|&j| chars[j].1 == c && !is_ws(chars[j - 1].1));
            if let Some(j) = close {
                out.push(&text[plain_from..pos], style);
                let inner = &text[chars[i + 1].0..chars[j].0];
                let inner_style = with_directive(style, c);
                if c == '`' {
                    out.push(inner, &inner_style);
                } else {
                    parse_spans(inner, &inner_style, out);
                }
                i = j + 1;
                plain_from = if i < n { chars[i].0 } else { text.len() };
                continue;
            }
        }
        i += 1;
    }
    out.push(&text[plain_from..], style);
}

/// Writes a rich text as a styled body: `*bold*`, `_italic_`, `~strike~`,
/// `` `code` ``, fenced preformatted blocks and `> ` quotations. Links are
/// written as `text <url>` when the text is not the URL itself; colours
/// and underlining have no styling and are dropped.
pub fn render(rich: &Rich) -> String {
    // Split the spans into lines.
    let mut lines: Vec<Vec<(String, Style)>> = vec![Vec::new()];
    for span in &rich.spans {
        let mut parts = span.text.split('\n');
        if let Some(first) = parts.next()
            && !first.is_empty()
            && let Some(line) = lines.last_mut()
        {
            line.push((first.to_owned(), span.style.clone()));
        }
        for part in parts {
            let mut line = Vec::new();
            if !part.is_empty() {
                line.push((part.to_owned(), span.style.clone()));
            } else if span.style.pre {
                // Keep empty lines of a preformatted block inside it.
                line.push((String::new(), span.style.clone()));
            }
            lines.push(line);
        }
    }
    let mut out: Vec<String> = Vec::with_capacity(lines.len());
    let mut i = 0;
    while i < lines.len() {
        let line = &lines[i];
        let is_pre = !line.is_empty() && line.iter().all(|(_, s)| s.pre);
        let depth = line.iter().map(|(_, s)| s.quote).max().unwrap_or(0);
        let prefix = quote_prefix(depth);
        if is_pre {
            out.push(format!("{prefix}```"));
            let mut j = i;
            while j < lines.len() && !lines[j].is_empty() && lines[j].iter().all(|(_, s)| s.pre) {
                let text: String = lines[j].iter().map(|(t, _)| t.as_str()).collect();
                out.push(format!("{prefix}{text}"));
                j += 1;
            }
            out.push(format!("{prefix}```"));
            i = j;
            continue;
        }
        let mut text = prefix;
        for (t, s) in line {
            text.push_str(&render_span(t, s));
        }
        out.push(text);
        i += 1;
    }
    out.join("\n")
}

fn quote_prefix(depth: u8) -> String {
    if depth == 0 {
        String::new()
    } else {
        let mut p = ">".repeat(usize::from(depth));
        p.push(' ');
        p
    }
}

fn render_span(text: &str, style: &Style) -> String {
    let mut inner = text.to_owned();
    if let Some(link) = &style.link
        && link != text
    {
        inner = format!("{text} <{link}>");
    }
    let trimmed = inner.trim();
    if trimmed.is_empty() {
        return inner;
    }
    let lead = &inner[..inner.len() - inner.trim_start().len()];
    let trail = &inner[inner.trim_end().len()..];
    let mut core = trimmed.to_owned();
    let mut wrap = |d: char, on: bool| {
        if on {
            core = format!("{d}{core}{d}");
        }
    };
    wrap('`', style.code && !style.pre);
    wrap('~', style.strike);
    wrap('_', style.italic);
    wrap('*', style.bold);
    format!("{lead}{core}{trail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn styled(rich: &Rich) -> Vec<(String, &'static str)> {
        rich.spans
            .iter()
            .map(|s| {
                let st = &s.style;
                let tag = match (st.bold, st.italic, st.strike, st.code, st.pre) {
                    (false, false, false, false, false) => "plain",
                    (true, false, false, false, false) => "bold",
                    (false, true, false, false, false) => "italic",
                    (false, false, true, false, false) => "strike",
                    (false, false, false, true, false) => "code",
                    (true, false, false, true, false) => "bold+code",
                    (true, true, false, false, false) => "bold+italic",
                    (_, _, _, _, true) => "pre",
                    _ => "other",
                };
                (s.text.clone(), tag)
            })
            .collect()
    }

    fn is_plain(body: &str) {
        let r = parse(body);
        assert!(!r.is_styled(), "{body:?} should be plain: {r:?}");
        assert_eq!(r.to_plain(), body);
    }

    #[test]
    fn xep_examples_that_style() {
        assert_eq!(styled(&parse("*strong*")), vec![("strong".into(), "bold")]);
        assert_eq!(
            styled(&parse("plain *strong* plain")),
            vec![
                ("plain ".into(), "plain"),
                ("strong".into(), "bold"),
                (" plain".into(), "plain")
            ]
        );
        assert_eq!(
            styled(&parse("*strong* plain *strong*")),
            vec![
                ("strong".into(), "bold"),
                (" plain ".into(), "plain"),
                ("strong".into(), "bold")
            ]
        );
        assert_eq!(
            styled(&parse("*strong*plain*")),
            vec![("strong".into(), "bold"), ("plain*".into(), "plain")]
        );
        assert_eq!(
            styled(&parse("* plain *strong*")),
            vec![("* plain ".into(), "plain"), ("strong".into(), "bold")]
        );
    }

    #[test]
    fn xep_examples_that_do_not_style() {
        for body in [
            "not strong*",
            "*not strong",
            "*not \n strong*",
            "*not *strong",
            "**",
            "****",
        ] {
            is_plain(body);
        }
    }

    #[test]
    fn emphasis_strike_and_monospace() {
        assert_eq!(
            styled(&parse("Everyone ~dis~likes cake.")),
            vec![
                ("Everyone ".into(), "plain"),
                ("dis".into(), "strike"),
                ("likes cake.".into(), "plain")
            ]
        );
        assert_eq!(
            styled(&parse("_most_ people")),
            vec![("most".into(), "italic"), (" people".into(), "plain")]
        );
        assert_eq!(
            styled(&parse("This is `*monospace*`")),
            vec![("This is ".into(), "plain"), ("*monospace*".into(), "code")]
        );
        assert_eq!(
            styled(&parse("This is *`monospace and bold`*")),
            vec![
                ("This is ".into(), "plain"),
                ("monospace and bold".into(), "bold+code")
            ]
        );
    }

    #[test]
    fn nested_spans() {
        let r = parse("_emphasized *strong* span_");
        assert_eq!(
            styled(&r),
            vec![
                ("emphasized ".into(), "italic"),
                ("strong".into(), "bold+italic"),
                (" span".into(), "italic")
            ]
        );
    }

    #[test]
    fn preformatted_blocks() {
        let r = parse("```ignored\n(println \"*Hello*\")\n```\n\nafter *x*");
        assert_eq!(r.spans[0].text, "(println \"*Hello*\")");
        assert!(r.spans[0].style.pre);
        assert_eq!(r.to_plain(), "(println \"*Hello*\")\n\nafter x");
        // Unclosed: runs to the end.
        let r = parse("```\ncode\nmore");
        assert_eq!(r.to_plain(), "code\nmore");
        assert!(r.spans.iter().all(|s| s.style.pre));
    }

    #[test]
    fn quotations() {
        let r = parse("> That that is, is.\n\nSaid the old hermit.");
        assert_eq!(r.spans[0].text, "That that is, is.");
        assert_eq!(r.spans[0].style.quote, 1);
        assert_eq!(r.to_plain(), "That that is, is.\n\nSaid the old hermit.");
        let r = parse(">> deep\n> shallow\nnone");
        let depths: Vec<(String, u8)> = r
            .spans
            .iter()
            .filter(|s| !s.text.trim().is_empty())
            .map(|s| (s.text.trim().to_owned(), s.style.quote))
            .collect();
        assert_eq!(
            depths,
            vec![
                ("deep".to_owned(), 2),
                ("shallow".to_owned(), 1),
                ("none".to_owned(), 0)
            ]
        );
    }

    #[test]
    fn render_round_trips_through_parse() {
        for body in [
            "plain *strong* plain",
            "_it_ and ~st~ and `co*de`",
            "> quoted *bold*\nnot quoted",
            "```\nlet x = *y*;\n\nz\n```\nafter",
            "*`both`*",
        ] {
            let rich = parse(body);
            let again = parse(&render(&rich));
            assert_eq!(
                again,
                rich,
                "round trip of {body:?} via {:?}",
                render(&rich)
            );
        }
    }

    #[test]
    fn render_moves_whitespace_outside_directives() {
        let mut r = Rich::default();
        r.push("a", &Style::default());
        r.push(
            " bold ",
            &Style {
                bold: true,
                ..Style::default()
            },
        );
        r.push("b", &Style::default());
        assert_eq!(render(&r), "a *bold* b");
    }

    #[test]
    fn render_links() {
        let mut r = Rich::default();
        r.push(
            "the docs",
            &Style {
                link: Some("https://example.org/".into()),
                ..Style::default()
            },
        );
        assert_eq!(render(&r), "the docs <https://example.org/>");
    }
}
