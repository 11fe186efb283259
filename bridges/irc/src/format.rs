//! IRC formatting control codes <-> [`Rich`] text, and cutting formatted
//! lines to fit the server's line length without losing their style.
//!
//! Codes: `^B` bold, `^]` italic, `^_` underline, `^^` strikethrough, `^Q`
//! monospace, `^V` reverse, `^O` reset, `^C` colour (`^Cfg[,bg]`, the
//! 99-colour palette, 99 = default) and `^D` hex colour (`^DRRGGBB[,RRGGBB]`).
//! Other control characters are dropped on the way in (a bell, a stray
//! CTCP marker), so the core never sees them.

use ferry_bridge::{Color, Rich, Style};
use std::fmt::Write as _;

use encoding_rs::Encoding;

use crate::proto::wire_len;

const BOLD: char = '\x02';
const COLOR: char = '\x03';
const HEX_COLOR: char = '\x04';
const RESET: char = '\x0f';
const MONOSPACE: char = '\x11';
const REVERSE: char = '\x16';
const ITALIC: char = '\x1d';
const STRIKE: char = '\x1e';
const UNDERLINE: char = '\x1f';

/// The IRC colour palette: 0–15 (mIRC) and 16–98 (the extended colours);
/// 99 means "default".
pub const PALETTE: [u32; 99] = [
    0xffffff, 0x000000, 0x00007f, 0x009300, 0xff0000, 0x7f0000, 0x9c009c, 0xfc7f00, 0xffff00,
    0x00fc00, 0x009393, 0x00ffff, 0x0000fc, 0xff00ff, 0x7f7f7f, 0xd2d2d2, // 0-15
    0x470000, 0x472100, 0x474700, 0x324700, 0x004700, 0x00472c, 0x004747, 0x002747, 0x000047,
    0x2e0047, 0x470047, 0x47002a, // 16-27
    0x740000, 0x743a00, 0x747400, 0x517400, 0x007400, 0x007449, 0x007474, 0x004074, 0x000074,
    0x4b0074, 0x740074, 0x740045, // 28-39
    0xb50000, 0xb56300, 0xb5b500, 0x7db500, 0x00b500, 0x00b571, 0x00b5b5, 0x0063b5, 0x0000b5,
    0x7500b5, 0xb500b5, 0xb5006b, // 40-51
    0xff0000, 0xff8c00, 0xffff00, 0xb2ff00, 0x00ff00, 0x00ffa0, 0x00ffff, 0x008cff, 0x0000ff,
    0xa500ff, 0xff00ff, 0xff0098, // 52-63
    0xff5959, 0xffb459, 0xffff71, 0xcfff60, 0x6fff6f, 0x65ffc9, 0x6dffff, 0x59b4ff, 0x5959ff,
    0xc459ff, 0xff66ff, 0xff59bc, // 64-75
    0xff9c9c, 0xffd39c, 0xffff9c, 0xe2ff9c, 0x9cff9c, 0x9cffdb, 0x9cffff, 0x9cd3ff, 0x9c9cff,
    0xdc9cff, 0xff9cff, 0xff94d3, // 76-87
    0x000000, 0x131313, 0x282828, 0x363636, 0x4d4d4d, 0x656565, 0x818181, 0x9f9f9f, 0xbcbcbc,
    0xe2e2e2, 0xffffff, // 88-98
];

fn palette_color(i: usize) -> Option<Color> {
    PALETTE.get(i).map(|&rgb| {
        Color(
            (rgb >> 16) as u8,
            ((rgb >> 8) & 0xff) as u8,
            (rgb & 0xff) as u8,
        )
    })
}

/// The palette index closest to a colour (exact matches in 0–15 first).
pub fn nearest_palette(c: Color) -> u8 {
    let mut best = (u32::MAX, 0u8);
    for (i, &rgb) in PALETTE.iter().enumerate() {
        let (r, g, b) = (
            (rgb >> 16) as i32,
            ((rgb >> 8) & 0xff) as i32,
            (rgb & 0xff) as i32,
        );
        let d =
            ((r - c.0 as i32).pow(2) + (g - c.1 as i32).pow(2) + (b - c.2 as i32).pow(2)) as u32;
        if d < best.0 {
            best = (d, i as u8);
        }
    }
    best.1
}

/// Parses IRC formatting into rich text. The plain text of the result is
/// the line with every control code removed.
pub fn parse(text: &str) -> Rich {
    let mut rich = Rich::default();
    let mut style = Style::default();
    let mut reversed = false;
    let mut chars = text.chars().peekable();
    let mut buf = String::new();
    let flush = |rich: &mut Rich, buf: &mut String, style: &Style, reversed: bool| {
        if buf.is_empty() {
            return;
        }
        let mut st = style.clone();
        if reversed {
            let (fg, bg) = (st.fg, st.bg);
            st.fg = Some(bg.unwrap_or(Color(255, 255, 255)));
            st.bg = Some(fg.unwrap_or(Color(0, 0, 0)));
        }
        rich.push(buf, &st);
        buf.clear();
    };
    while let Some(c) = chars.next() {
        match c {
            BOLD | ITALIC | UNDERLINE | STRIKE | MONOSPACE | REVERSE | RESET | COLOR
            | HEX_COLOR => {
                flush(&mut rich, &mut buf, &style, reversed);
                match c {
                    BOLD => style.bold = !style.bold,
                    ITALIC => style.italic = !style.italic,
                    UNDERLINE => style.underline = !style.underline,
                    STRIKE => style.strike = !style.strike,
                    MONOSPACE => style.code = !style.code,
                    REVERSE => reversed = !reversed,
                    RESET => {
                        style = Style::default();
                        reversed = false;
                    }
                    COLOR => {
                        let fg = take_digits(&mut chars);
                        match fg {
                            None => {
                                style.fg = None;
                                style.bg = None;
                            }
                            Some(fg) => {
                                style.fg = palette_color(fg);
                                if chars.peek() == Some(&',') {
                                    let mut look = chars.clone();
                                    look.next();
                                    if look.peek().is_some_and(|d| d.is_ascii_digit()) {
                                        chars.next();
                                        if let Some(bg) = take_digits(&mut chars) {
                                            style.bg = palette_color(bg);
                                        }
                                    }
                                }
                            }
                        }
                    }
                    _ => {
                        // HEX_COLOR
                        match take_hex(&mut chars) {
                            None => {
                                style.fg = None;
                                style.bg = None;
                            }
                            Some(fg) => {
                                style.fg = Some(fg);
                                if chars.peek() == Some(&',') {
                                    let mut look = chars.clone();
                                    look.next();
                                    if take_hex(&mut look).is_some() {
                                        chars.next();
                                        style.bg = take_hex(&mut chars);
                                    }
                                }
                            }
                        }
                    }
                }
            }
            '\t' | '\n' => buf.push(c),
            c if c.is_control() => {}
            c => buf.push(c),
        }
    }
    flush(&mut rich, &mut buf, &style, reversed);
    rich
}

fn take_digits(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<usize> {
    let mut n = None::<usize>;
    for _ in 0..2 {
        match chars.peek() {
            Some(d) if d.is_ascii_digit() => {
                n = Some(n.unwrap_or(0) * 10 + d.to_digit(10).unwrap_or(0) as usize);
                chars.next();
            }
            _ => break,
        }
    }
    n
}

fn take_hex(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<Color> {
    let look: String = chars.clone().take(6).collect();
    if look.len() == 6 && look.chars().all(|c| c.is_ascii_hexdigit()) {
        for _ in 0..6 {
            chars.next();
        }
        Color::parse(&format!("#{look}"))
    } else {
        None
    }
}

/// Removes every formatting and control code.
pub fn strip(text: &str) -> String {
    parse(text).to_plain()
}

/// The formatting in effect at some point of an IRC line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct IrcState {
    bold: bool,
    italic: bool,
    underline: bool,
    strike: bool,
    mono: bool,
    fg: Option<u8>,
    bg: Option<u8>,
}

impl IrcState {
    fn from_style(st: &Style) -> Self {
        let (mut fg, mut bg) = (st.fg.map(nearest_palette), st.bg.map(nearest_palette));
        if st.spoiler {
            fg = Some(1);
            bg = Some(1);
        }
        IrcState {
            bold: st.bold,
            italic: st.italic,
            underline: st.underline,
            strike: st.strike,
            mono: st.code || st.pre,
            fg,
            bg,
        }
    }

    /// Codes that take `self` to `to`. `next` is the text that follows
    /// (a colour code must not swallow its leading digits).
    fn transition(&self, to: &IrcState, next: Option<char>, out: &mut String) {
        if self.bold != to.bold {
            out.push(BOLD);
        }
        if self.italic != to.italic {
            out.push(ITALIC);
        }
        if self.underline != to.underline {
            out.push(UNDERLINE);
        }
        if self.strike != to.strike {
            out.push(STRIKE);
        }
        if self.mono != to.mono {
            out.push(MONOSPACE);
        }
        if self.fg != to.fg || self.bg != to.bg {
            out.push(COLOR);
            match (to.fg, to.bg) {
                (None, None) => {
                    if next.is_some_and(|c| c.is_ascii_digit() || c == ',') {
                        // "^C1" would read as colour 1: end with an empty toggle.
                        out.push(BOLD);
                        out.push(BOLD);
                    }
                }
                (fg, bg) => {
                    let _ = write!(out, "{:02}", fg.unwrap_or(99));
                    if let Some(bg) = bg {
                        let _ = write!(out, ",{bg:02}");
                    } else if self.bg.is_some() {
                        out.push_str(",99");
                    }
                    if next == Some(',') && bg.is_none() && self.bg.is_none() {
                        out.push(BOLD);
                        out.push(BOLD);
                    }
                }
            }
        }
    }

    fn apply(&mut self, code: &str) {
        let mut chars = code.chars();
        match chars.next() {
            Some(BOLD) => self.bold = !self.bold,
            Some(ITALIC) => self.italic = !self.italic,
            Some(UNDERLINE) => self.underline = !self.underline,
            Some(STRIKE) => self.strike = !self.strike,
            Some(MONOSPACE) => self.mono = !self.mono,
            Some(RESET) => *self = IrcState::default(),
            Some(COLOR) => {
                let rest: &str = chars.as_str();
                if rest.is_empty() {
                    self.fg = None;
                    self.bg = None;
                } else {
                    let (fg, bg) = match rest.split_once(',') {
                        Some((f, b)) => (f, Some(b)),
                        None => (rest, None),
                    };
                    self.fg = fg.parse::<u8>().ok().filter(|n| *n < 99);
                    if let Some(b) = bg {
                        self.bg = b.parse::<u8>().ok().filter(|n| *n < 99);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Renders rich text with IRC control codes. Links whose text differs
/// from their target get the target appended in angle brackets; quoted
/// lines start with `> `.
pub fn render(rich: &Rich) -> String {
    let mut out = String::new();
    let mut state = IrcState::default();
    let mut at_line_start = true;
    for span in &rich.spans {
        let target = IrcState::from_style(&span.style);
        let mut text = span.text.clone();
        if let Some(link) = &span.style.link
            && !text.contains(link.as_str())
        {
            text = if text.trim().is_empty() {
                link.clone()
            } else {
                format!("{text} <{link}>")
            };
        }
        for (i, line) in text.split('\n').enumerate() {
            if i > 0 {
                out.push('\n');
                // Styles do not survive a line break on IRC.
                state = IrcState::default();
                at_line_start = true;
            }
            if line.is_empty() {
                continue;
            }
            if at_line_start && span.style.quote > 0 {
                for _ in 0..span.style.quote {
                    out.push_str("> ");
                }
            }
            at_line_start = false;
            state.transition(&target, line.chars().next(), &mut out);
            state = target.clone();
            out.push_str(line);
        }
    }
    out
}

/// Splits one IRC line (no `\n`) into pieces of at most `max` bytes on the
/// wire, on character boundaries, preferring a space in the second half of
/// a piece. Each piece after the first starts by restoring the formatting
/// in effect where the previous one ended.
pub fn split_line(text: &str, max: usize, encoding: Option<&'static Encoding>) -> Vec<String> {
    let max = max.max(16);
    if wire_len(text, encoding) <= max {
        return vec![text.to_owned()];
    }
    let mut pieces = Vec::new();
    let mut cur = String::new();
    let mut cur_len = 0usize;
    let mut content = false;
    let mut state = IrcState::default();
    // (byte index of the last space in `cur`, the formatting there)
    let mut last_space: Option<(usize, IrcState)> = None;
    for token in tokens(text) {
        let tl = wire_len(token, encoding);
        if content && cur_len + tl > max {
            let mut rest = String::new();
            let mut rest_state = state.clone();
            if let Some((pos, st)) = last_space.take()
                && pos * 2 >= cur.len()
            {
                rest = cur[pos + 1..].to_owned();
                cur.truncate(pos);
                rest_state = st;
            }
            pieces.push(std::mem::take(&mut cur));
            IrcState::default().transition(
                &rest_state,
                rest.chars().next().or(token.chars().next()),
                &mut cur,
            );
            cur.push_str(&rest);
            cur_len = wire_len(&cur, encoding);
            content = !rest.is_empty();
            // The restored prefix and carried-over text must leave room.
            if cur_len + tl > max && content {
                pieces.push(std::mem::take(&mut cur));
                IrcState::default().transition(&state, token.chars().next(), &mut cur);
                cur_len = wire_len(&cur, encoding);
                content = false;
            }
        }
        if token.starts_with(is_code) {
            state.apply(token);
        } else {
            content = true;
            if token == " " {
                last_space = Some((cur.len(), state.clone()));
            }
        }
        cur.push_str(token);
        cur_len += tl;
    }
    if content || pieces.is_empty() {
        pieces.push(cur);
    }
    pieces
}

fn is_code(c: char) -> bool {
    matches!(
        c,
        BOLD | COLOR | HEX_COLOR | RESET | MONOSPACE | REVERSE | ITALIC | STRIKE | UNDERLINE
    )
}

/// Splits text into formatting codes (a colour code with its digits is
/// one token) and single characters.
fn tokens(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < text.len() {
        let c = text[i..].chars().next().unwrap_or(' ');
        let mut end = i + c.len_utf8();
        if c == COLOR {
            let mut digits = 0;
            while digits < 2 && end < bytes.len() && bytes[end].is_ascii_digit() {
                end += 1;
                digits += 1;
            }
            if digits > 0
                && end + 1 < bytes.len()
                && bytes[end] == b','
                && bytes[end + 1].is_ascii_digit()
            {
                end += 2;
                if end < bytes.len() && bytes[end].is_ascii_digit() {
                    end += 1;
                }
            }
        }
        out.push(&text[i..end]);
        i = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_bridge::Span;

    fn styled(text: &str, f: impl FnOnce(&mut Style)) -> Span {
        let mut style = Style::default();
        f(&mut style);
        Span {
            text: text.into(),
            style,
        }
    }

    #[test]
    fn parses_every_code() {
        let r = parse("a\x02b\x02\x1di\x1d\x1fu\x1f\x1es\x1e\x11m\x11");
        assert_eq!(r.to_plain(), "abiusm");
        assert!(r.spans[1].style.bold);
        assert!(r.spans[2].style.italic);
        assert!(r.spans[3].style.underline);
        assert!(r.spans[4].style.strike);
        assert!(r.spans[5].style.code);
    }

    #[test]
    fn parses_colours_and_reset() {
        let r = parse("\x0304red\x03 \x0312,08blue on yellow\x0f plain");
        assert_eq!(r.spans[0].style.fg, Some(Color(255, 0, 0)));
        assert_eq!(r.spans[1].style, Style::default());
        assert_eq!(r.spans[2].style.fg, Some(Color(0, 0, 0xfc)));
        assert_eq!(r.spans[2].style.bg, Some(Color(255, 255, 0)));
        assert_eq!(r.spans[3].text, " plain");
        assert!(r.spans[3].style.is_plain());
        // extended palette and 99 = default
        let r = parse("\x0352x\x0399y");
        assert_eq!(r.spans[0].style.fg, Some(Color(255, 0, 0)));
        assert_eq!(r.spans[1].style.fg, None);
        // hex colours
        let r = parse("\x04ff8000,000000z");
        assert_eq!(r.spans[0].style.fg, Some(Color(255, 128, 0)));
        assert_eq!(r.spans[0].style.bg, Some(Color(0, 0, 0)));
    }

    #[test]
    fn malformed_codes_do_not_eat_text() {
        // Three digits: colour 12, then "3".
        let r = parse("\x03123x");
        assert_eq!(r.to_plain(), "3x");
        // A comma without a background is text.
        let r = parse("\x034,x");
        assert_eq!(r.to_plain(), ",x");
        // A colour code at the end.
        assert_eq!(parse("x\x03").to_plain(), "x");
        assert_eq!(parse("x\x0312,").to_plain(), "x,");
        // Short hex is not a colour.
        assert_eq!(parse("\x04fff y").to_plain(), "fff y");
        // Unknown control characters vanish, text stays.
        assert_eq!(
            parse("bell\x07 \x01ACTION\x01 \x1b[0m").to_plain(),
            "bell ACTION [0m"
        );
    }

    #[test]
    fn reverse_swaps_colours() {
        let r = parse("\x16rev");
        assert_eq!(r.spans[0].style.fg, Some(Color(255, 255, 255)));
        assert_eq!(r.spans[0].style.bg, Some(Color(0, 0, 0)));
    }

    #[test]
    fn renders_styles() {
        let rich = Rich {
            spans: vec![
                styled("bold", |s| s.bold = true),
                styled(" and ", |_| {}),
                styled("red", |s| s.fg = Some(Color(255, 0, 0))),
                styled("1", |_| {}),
            ],
        };
        let out = render(&rich);
        assert_eq!(out, "\x02bold\x02 and \x0304red\x03\x02\x021");
        assert_eq!(parse(&out).to_plain(), "bold and red1");
        assert_eq!(parse(&out), rich);
    }

    #[test]
    fn renders_links_quotes_code_and_spoilers() {
        let rich = Rich {
            spans: vec![
                styled("quoted\nnext", |s| s.quote = 1),
                styled("\n", |_| {}),
                styled("site", |s| s.link = Some("https://x.org/".into())),
                styled(" ", |_| {}),
                styled("x()", |s| s.code = true),
                styled("secret", |s| s.spoiler = true),
            ],
        };
        let out = render(&rich);
        assert_eq!(
            out,
            "> quoted\n> next\nsite <https://x.org/> \x11x()\x11\x0301,01secret"
        );
    }

    #[test]
    fn round_trips_every_simple_style() {
        for f in [
            (|s: &mut Style| s.bold = true) as fn(&mut Style),
            |s| s.italic = true,
            |s| s.underline = true,
            |s| s.strike = true,
            |s| s.code = true,
            |s| {
                s.fg = Some(Color(0, 0, 0x7f));
                s.bg = Some(Color(0xd2, 0xd2, 0xd2))
            },
        ] {
            let rich = Rich {
                spans: vec![styled("a", |_| {}), styled("b", f), styled("c", |_| {})],
            };
            assert_eq!(parse(&render(&rich)), rich);
        }
    }

    #[test]
    fn nearest_colours() {
        assert_eq!(nearest_palette(Color(255, 0, 0)), 4);
        assert_eq!(nearest_palette(Color(250, 5, 5)), 4);
        assert_eq!(nearest_palette(Color(0x13, 0x13, 0x13)), 89);
    }

    #[test]
    fn splits_on_char_boundaries_and_spaces() {
        let text = "é".repeat(300);
        let parts = split_line(&text, 100, None);
        assert!(parts.iter().all(|p| p.len() <= 100));
        assert_eq!(parts.concat(), text);
        let words = "word ".repeat(50);
        let parts = split_line(words.trim_end(), 42, None);
        assert!(parts.iter().all(|p| p.len() <= 42 && !p.starts_with(' ')));
        assert_eq!(parts.join(" "), words.trim_end());
    }

    #[test]
    fn split_pieces_keep_their_formatting() {
        let text = format!("\x02\x0304{}\x0f tail", "x".repeat(150));
        let parts = split_line(&text, 64, None);
        assert!(parts.len() >= 3);
        for p in &parts[1..parts.len() - 1] {
            assert!(p.starts_with("\x02\x0304"), "{p:?}");
            assert!(p.len() <= 64);
        }
        let plain: String = parts.iter().map(|p| strip(p)).collect();
        assert_eq!(plain, format!("{} tail", "x".repeat(150)));
    }

    #[test]
    fn splits_by_encoded_length() {
        let enc = crate::proto::encoding_for("latin1");
        let text = "é".repeat(150);
        let parts = split_line(&text, 100, enc);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].chars().count(), 100);
    }
}
