//! XEP-0106 JID escaping: writing a network address as a JID local part
//! and reading it back.
//!
//! Ten characters cannot appear in a local part: space `"` `&` `'` `/` `:`
//! `<` `>` `@` and the escape character `\` itself when it starts one of
//! the escape sequences. Each is written as `\` followed by two lower-case
//! hex digits. The rules for a backslash, which reproduce every example of
//! the XEP (including its "exceptions" section):
//!
//! * followed by two hex digits that form one of the ten escapes, it is
//!   escaped to `\5c` (so `\3a` in an address survives as `\5c3a`);
//! * followed by two hex digits that form no escape (`\41`, `\ba`), it is
//!   left alone: an invalid escape sequence is not modified;
//! * followed by a digit that could start an escape (`2` to `5`) and then
//!   something else (`\2p`, or `\4` at the end), it is left alone: a partial
//!   escape sequence is not modified;
//! * anywhere else (`\n`, `\c` of `c:\cool`, a final `\`), it is escaped.
//!
//! Unescaping turns exactly the ten sequences back into their characters
//! and nothing else, so `unescape(escape(a)) == a` for every address.

/// The characters that must be escaped, with their escape codes.
const TABLE: [(char, &str); 10] = [
    (' ', "20"),
    ('"', "22"),
    ('&', "26"),
    ('\'', "27"),
    ('/', "2f"),
    (':', "3a"),
    ('<', "3c"),
    ('>', "3e"),
    ('@', "40"),
    ('\\', "5c"),
];

fn code_of(c: char) -> Option<&'static str> {
    TABLE.iter().find(|(ch, _)| *ch == c).map(|(_, code)| *code)
}

fn char_of(code: &str) -> Option<char> {
    TABLE.iter().find(|(_, c)| *c == code).map(|(ch, _)| *ch)
}

/// Whether a backslash at byte `i` of `s` must itself be escaped.
fn backslash_needs_escape(s: &str, i: usize) -> bool {
    let rest = &s[i + 1..];
    let mut it = rest.chars();
    let a = it.next();
    let b = it.next();
    match (a, b) {
        (Some(a), Some(b)) if a.is_ascii_hexdigit() && b.is_ascii_hexdigit() => {
            // A complete sequence: escape only if it would be read back as
            // one of the ten characters.
            let mut code = String::with_capacity(2);
            code.push(a);
            code.push(b);
            char_of(&code).is_some()
        }
        // Partial sequence: starts like an escape code, then stops.
        (Some('2'..='5'), _) => false,
        _ => true,
    }
}

/// Escapes a network address into a JID local part (XEP-0106).
pub fn escape(address: &str) -> String {
    let mut out = String::with_capacity(address.len() + 8);
    for (i, c) in address.char_indices() {
        if c == '\\' {
            if backslash_needs_escape(address, i) {
                out.push_str("\\5c");
            } else {
                out.push('\\');
            }
        } else if let Some(code) = code_of(c) {
            out.push('\\');
            out.push_str(code);
        } else {
            out.push(c);
        }
    }
    out
}

/// An address that cannot be written as a JID local part.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EscapeError {
    /// XEP-0106 forbids `\20` at the start or end of a local part.
    #[error("an address cannot start or end with a space")]
    EdgeSpace,
    /// Empty address.
    #[error("the address is empty")]
    Empty,
}

/// Escapes an address typed by a user, refusing what XEP-0106 cannot
/// represent (a space at either end).
pub fn escape_checked(address: &str) -> Result<String, EscapeError> {
    if address.is_empty() {
        return Err(EscapeError::Empty);
    }
    if address.starts_with(' ') || address.ends_with(' ') {
        return Err(EscapeError::EdgeSpace);
    }
    Ok(escape(address))
}

/// Unescapes a JID local part into the network address (XEP-0106): only
/// the ten escape sequences are decoded.
pub fn unescape(local: &str) -> String {
    let mut out = String::with_capacity(local.len());
    let mut i = 0;
    let bytes = local.as_bytes();
    while i < local.len() {
        if bytes[i] == b'\\'
            && i + 3 <= local.len()
            && local.is_char_boundary(i + 3)
            && let Some(c) = char_of(&local[i + 1..i + 3])
        {
            out.push(c);
            i += 3;
            continue;
        }
        // Copy one character.
        let ch_len = local[i..].chars().next().map(char::len_utf8).unwrap_or(1);
        out.push_str(&local[i..i + ch_len]);
        i += ch_len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every example of XEP-0106 (table of §5.1, the email, SIP, IM, IMPS,
    /// LDAP and IRC examples, the introduction and the exceptions).
    const EXAMPLES: &[(&str, &str)] = &[
        // Introduction and §3.
        ("d'artagnan", "d\\27artagnan"),
        ("tréville@musketeers.lit", "tréville\\40musketeers.lit"),
        // §5.1 JID examples 1–12.
        ("space cadet", "space\\20cadet"),
        ("call me \"ishmael\"", "call\\20me\\20\\22ishmael\\22"),
        ("at&t guy", "at\\26t\\20guy"),
        ("d'artagnan", "d\\27artagnan"),
        ("/.fanboy", "\\2f.fanboy"),
        ("::foo::", "\\3a\\3afoo\\3a\\3a"),
        ("<foo>", "\\3cfoo\\3e"),
        ("user@host", "user\\40host"),
        ("c:\\net", "c\\3a\\5cnet"),
        ("c:\\\\net", "c\\3a\\5c\\5cnet"),
        ("c:\\cool stuff", "c\\3a\\5ccool\\20stuff"),
        ("c:\\5commas", "c\\3a\\5c5commas"),
        // §5.2–5.4 email, SIP, IM/PRES (after URI decoding).
        (
            "here's_a_wild_&_/cr%zy/_address",
            "here\\27s_a_wild_\\26_\\2fcr%zy\\2f_address",
        ),
        // §5.5 IMPS.
        (
            "here's_a_wild_&_/cr%zy/_address_for:<wv>(\"IMPS\")",
            "here\\27s_a_wild_\\26_\\2fcr%zy\\2f_address_for\\3a\\3cwv\\3e(\\22IMPS\\22)",
        ),
        ("\\3and\\2is\\5cool", "\\5c3and\\2is\\5c5cool"),
        // §5.6 LDAP (the UTF-8 representation, with the DN's own `\,`
        // removed as the XEP says; `\E9` is no escape and stays).
        (
            "CN=D'Artagnan Saint-Andr\\E9,O=Example & Company, Inc.,DC=example,DC=com",
            "CN=D\\27Artagnan\\20Saint-Andr\\E9,O=Example\\20\\26\\20Company,\\20Inc.,DC=example,DC=com",
        ),
        // §5.7 IRC.
        (
            "somenick!user\"&'/:<>\\3address",
            "somenick!user\\22\\26\\27\\2f\\3a\\3c\\3e\\5c3address",
        ),
    ];

    /// §4.4 exceptions: not modified by escaping or unescaping.
    const UNCHANGED: &[&str] = &["\\2plus\\2is\\4", "foo\\bar", "foob\\41r"];

    #[test]
    fn every_xep_example_escapes() {
        for (address, jid) in EXAMPLES {
            assert_eq!(escape(address), *jid, "escaping {address:?}");
        }
    }

    #[test]
    fn every_xep_example_unescapes() {
        for (address, jid) in EXAMPLES {
            assert_eq!(unescape(jid), *address, "unescaping {jid:?}");
        }
    }

    #[test]
    fn exceptions_are_left_alone() {
        for s in UNCHANGED {
            assert_eq!(escape(s), *s, "escaping {s:?}");
            assert_eq!(unescape(s), *s, "unescaping {s:?}");
        }
    }

    #[test]
    fn round_trips() {
        for s in [
            "",
            "\\",
            "a\\",
            "\\5c",
            "\\5C",
            "#rust%irc.libera.chat",
            "@alice:example.org",
            "ünïcødé 😀",
            "\\\\\\",
            "\\20\\40",
            "x\\2",
        ] {
            assert_eq!(unescape(&escape(s)), s, "round trip of {s:?}");
        }
    }

    #[test]
    fn edge_spaces_are_refused_for_user_input() {
        assert_eq!(escape_checked(" a"), Err(EscapeError::EdgeSpace));
        assert_eq!(escape_checked("a "), Err(EscapeError::EdgeSpace));
        assert_eq!(escape_checked(""), Err(EscapeError::Empty));
        assert_eq!(escape_checked("a b").as_deref(), Ok("a\\20b"));
    }

    #[test]
    fn only_lowercase_sequences_unescape() {
        // Case is significant: \3A is not an escape.
        assert_eq!(unescape("a\\3Ab"), "a\\3Ab");
        assert_eq!(unescape("a\\3ab"), "a:b");
    }
}
