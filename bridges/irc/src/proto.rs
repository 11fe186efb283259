//! IRC lines: parsing what a server sends (IRCv3 message tags, source
//! prefix, command, parameters) and writing what we send.
//!
//! Parsing works on bytes: a line that is not UTF-8 is decoded with the
//! configured fallback encoding (`encoding_in`, ISO-8859-1 by default), one
//! parameter at a time. Writing goes through [`Line`], the only way to
//! produce bytes for the wire: it refuses CR, LF and NUL in any parameter,
//! so text from XMPP can never start a second command.

use std::fmt;

use encoding_rs::Encoding;

/// Who sent a message: `nick!user@host` or a server name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Source {
    /// The nickname, or the server name.
    pub nick: String,
    /// The user (ident), when given.
    pub user: Option<String>,
    /// The host, when given.
    pub host: Option<String>,
}

impl Source {
    /// Parses `nick!user@host` (each part after the nick optional).
    pub fn parse(s: &str) -> Source {
        let (rest, host) = match s.split_once('@') {
            Some((r, h)) => (r, Some(h.to_owned())),
            None => (s, None),
        };
        let (nick, user) = match rest.split_once('!') {
            Some((n, u)) => (n, Some(u.to_owned())),
            None => (rest, None),
        };
        Source {
            nick: nick.to_owned(),
            user,
            host,
        }
    }

    /// Whether this looks like a server rather than a user (no `!`/`@`,
    /// a dot in the name).
    pub fn is_server(&self) -> bool {
        self.user.is_none() && self.host.is_none() && self.nick.contains('.')
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.nick)?;
        if let Some(u) = &self.user {
            write!(f, "!{u}")?;
        }
        if let Some(h) = &self.host {
            write!(f, "@{h}")?;
        }
        Ok(())
    }
}

/// A message received from a server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Message {
    /// IRCv3 tags, unescaped, in order (value empty when absent).
    pub tags: Vec<(String, String)>,
    /// The source prefix.
    pub source: Option<Source>,
    /// The command, upper-case (or a three-digit numeric).
    pub command: String,
    /// The parameters, the trailing one included.
    pub params: Vec<String>,
}

impl Message {
    /// Parses one line (without its CR LF). Returns None for an empty or
    /// command-less line.
    pub fn parse(line: &[u8], fallback: &'static Encoding) -> Option<Message> {
        let mut rest = trim_eol(line);
        let mut msg = Message::default();
        if let Some(after) = rest.strip_prefix(b"@") {
            let (tags, r) = split_word(after);
            rest = r;
            for tag in tags.split(|b| *b == b';').filter(|t| !t.is_empty()) {
                let tag = String::from_utf8_lossy(tag);
                let (k, v) = match tag.split_once('=') {
                    Some((k, v)) => (k.to_owned(), unescape_tag(v)),
                    None => (tag.into_owned(), String::new()),
                };
                msg.tags.push((k, v));
            }
        }
        rest = skip_spaces(rest);
        if let Some(after) = rest.strip_prefix(b":") {
            let (src, r) = split_word(after);
            msg.source = Some(Source::parse(&decode(src, fallback)));
            rest = skip_spaces(r);
        }
        let (cmd, r) = split_word(rest);
        if cmd.is_empty() {
            return None;
        }
        msg.command = String::from_utf8_lossy(cmd).to_ascii_uppercase();
        rest = r;
        loop {
            rest = skip_spaces(rest);
            if rest.is_empty() {
                break;
            }
            if let Some(trailing) = rest.strip_prefix(b":") {
                msg.params.push(decode(trailing, fallback));
                break;
            }
            let (p, r) = split_word(rest);
            msg.params.push(decode(p, fallback));
            rest = r;
        }
        Some(msg)
    }

    /// A tag's value, if present.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The nickname of the source, or "" without one.
    pub fn nick(&self) -> &str {
        self.source.as_ref().map(|s| s.nick.as_str()).unwrap_or("")
    }

    /// Parameter `i`, or "".
    pub fn param(&self, i: usize) -> &str {
        self.params.get(i).map(String::as_str).unwrap_or("")
    }

    /// The last parameter, or "".
    pub fn trailing(&self) -> &str {
        self.params.last().map(String::as_str).unwrap_or("")
    }
}

fn trim_eol(mut line: &[u8]) -> &[u8] {
    while let Some((last, rest)) = line.split_last() {
        if *last == b'\n' || *last == b'\r' {
            line = rest;
        } else {
            break;
        }
    }
    line
}

fn skip_spaces(mut s: &[u8]) -> &[u8] {
    while let Some(r) = s.strip_prefix(b" ") {
        s = r;
    }
    s
}

fn split_word(s: &[u8]) -> (&[u8], &[u8]) {
    match s.iter().position(|b| *b == b' ') {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, &[]),
    }
}

/// Decodes bytes from the wire: UTF-8 when valid, else the fallback
/// encoding. NUL bytes are dropped.
pub fn decode(bytes: &[u8], fallback: &'static Encoding) -> String {
    let s = match std::str::from_utf8(bytes) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => fallback.decode_without_bom_handling(bytes).0,
    };
    if s.contains('\0') {
        s.replace('\0', "")
    } else {
        s.into_owned()
    }
}

/// Undoes IRCv3 tag value escaping.
pub fn unescape_tag(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(':') => out.push(';'),
            Some('s') => out.push(' '),
            Some('\\') => out.push('\\'),
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// IRCv3 tag value escaping.
pub fn escape_tag(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            ';' => out.push_str("\\:"),
            ' ' => out.push_str("\\s"),
            '\\' => out.push_str("\\\\"),
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            '\0' => {}
            c => out.push(c),
        }
    }
    out
}

/// Why a line could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// A parameter holds CR, LF or NUL.
    #[error("the text contains a line break or NUL character, which IRC cannot carry")]
    ForbiddenCharacter,
    /// A middle parameter is empty, holds a space or starts with ':'.
    #[error("{0:?} cannot be used as an IRC parameter")]
    BadParameter(String),
    /// The line is longer than the server accepts.
    #[error("the IRC line is too long ({0} bytes)")]
    TooLong(usize),
}

/// A line ready for the wire (without CR LF), built only through
/// [`Line::new`] and its helpers.
#[derive(Clone, PartialEq, Eq)]
pub struct Line {
    text: String,
    /// Bytes of the line (tags excluded) as the server counts them against
    /// its 512-byte limit, encoded.
    encoding: Option<&'static Encoding>,
    /// Whether the line may skip the flood-control queue (registration,
    /// PONG, QUIT).
    pub urgent: bool,
}

impl fmt::Debug for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print secrets sent at registration.
        let upper = self.text.to_ascii_uppercase();
        if upper.starts_with("PASS ")
            || upper.starts_with("AUTHENTICATE ")
            || upper.starts_with("WEBIRC ")
            || upper.starts_with("OPER ")
        {
            let cmd = self.text.split(' ').next().unwrap_or("");
            write!(f, "Line({cmd} <hidden>)")
        } else {
            write!(f, "Line({:?})", self.text)
        }
    }
}

/// Longest line (tags excluded, CR LF included) RFC 1459 allows.
pub const MAX_LINE: usize = 512;

impl Line {
    /// Builds `COMMAND p1 p2 :last`. Middle parameters must be non-empty
    /// and without spaces; no parameter may hold CR, LF or NUL.
    pub fn new(command: &str, params: &[&str]) -> Result<Line, LineError> {
        Line::tagged(&[], command, params)
    }

    /// Like [`Line::new`] with client tags (`@k=v;…`).
    pub fn tagged(
        tags: &[(&str, Option<&str>)],
        command: &str,
        params: &[&str],
    ) -> Result<Line, LineError> {
        let mut text = String::with_capacity(64);
        if !tags.is_empty() {
            text.push('@');
            for (i, (k, v)) in tags.iter().enumerate() {
                if k.is_empty() || k.contains([' ', ';', '=', '\r', '\n', '\0']) {
                    return Err(LineError::BadParameter((*k).to_owned()));
                }
                if i > 0 {
                    text.push(';');
                }
                text.push_str(k);
                if let Some(v) = v {
                    text.push('=');
                    text.push_str(&escape_tag(v));
                }
            }
            text.push(' ');
        }
        if command.is_empty() || !command.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(LineError::BadParameter(command.to_owned()));
        }
        text.push_str(command);
        for (i, p) in params.iter().enumerate() {
            if p.contains(['\r', '\n', '\0']) {
                return Err(LineError::ForbiddenCharacter);
            }
            let last = i + 1 == params.len();
            text.push(' ');
            if last && (p.is_empty() || p.contains(' ') || p.starts_with(':')) {
                text.push(':');
            } else if p.is_empty() || p.contains(' ') || p.starts_with(':') {
                return Err(LineError::BadParameter((*p).to_owned()));
            }
            text.push_str(p);
        }
        Ok(Line {
            text,
            encoding: None,
            urgent: false,
        })
    }

    /// A raw line typed by the user (a message to the server's JID).
    /// Refuses CR, LF and NUL; a leading `/` is dropped.
    pub fn raw(text: &str) -> Result<Line, LineError> {
        let text = text.trim_end_matches(' ');
        let text = text.strip_prefix('/').unwrap_or(text).trim_start();
        if text.contains(['\r', '\n', '\0']) {
            return Err(LineError::ForbiddenCharacter);
        }
        if text.is_empty() {
            return Err(LineError::BadParameter(String::new()));
        }
        if text.len() + 2 > MAX_LINE && !text.starts_with('@') {
            return Err(LineError::TooLong(text.len() + 2));
        }
        Ok(Line {
            text: text.to_owned(),
            encoding: None,
            urgent: false,
        })
    }

    /// Marks the line as urgent (not subject to flood control).
    pub fn urgent(mut self) -> Line {
        self.urgent = true;
        self
    }

    /// Encodes the line's text with a non-UTF-8 encoding on the wire.
    pub fn with_encoding(mut self, encoding: Option<&'static Encoding>) -> Line {
        self.encoding = encoding.filter(|e| *e != encoding_rs::UTF_8);
        self
    }

    /// The line as text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The command word.
    pub fn command(&self) -> &str {
        let t = if self.text.starts_with('@') {
            self.text.split_once(' ').map(|(_, r)| r).unwrap_or("")
        } else {
            &self.text
        };
        t.split(' ').next().unwrap_or("")
    }

    /// Appends the line and CR LF to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        match self.encoding {
            None => out.extend_from_slice(self.text.as_bytes()),
            Some(enc) => {
                // Tags stay UTF-8; only the rest is transcoded.
                let (tags, rest) = if self.text.starts_with('@') {
                    match self.text.split_once(' ') {
                        Some((t, r)) => (Some(t), r),
                        None => (None, self.text.as_str()),
                    }
                } else {
                    (None, self.text.as_str())
                };
                if let Some(t) = tags {
                    out.extend_from_slice(t.as_bytes());
                    out.push(b' ');
                }
                out.extend_from_slice(&enc.encode(rest).0);
            }
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// Bytes `s` takes on the wire in `encoding` (UTF-8 when None).
pub fn wire_len(s: &str, encoding: Option<&'static Encoding>) -> usize {
    match encoding.filter(|e| *e != encoding_rs::UTF_8) {
        None => s.len(),
        Some(enc) => enc.encode(s).0.len(),
    }
}

/// Looks an encoding up by label (`ISO-8859-1`, `latin1`, `cp1252` …).
pub fn encoding_for(label: &str) -> Option<&'static Encoding> {
    Encoding::for_label(label.trim().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use encoding_rs::WINDOWS_1252;

    fn p(s: &[u8]) -> Message {
        Message::parse(s, WINDOWS_1252).expect("parses")
    }

    #[test]
    fn parses_tags_source_command_params() {
        let m = p(b"@time=2023-01-01T00:00:00.000Z;msgid=a\\sb;+draft/reply=x :nick!u@h PRIVMSG #c :hello world\r\n");
        assert_eq!(m.tag("time"), Some("2023-01-01T00:00:00.000Z"));
        assert_eq!(m.tag("msgid"), Some("a b"));
        assert_eq!(m.tag("+draft/reply"), Some("x"));
        let s = m.source.clone().unwrap();
        assert_eq!(
            (s.nick.as_str(), s.user.as_deref(), s.host.as_deref()),
            ("nick", Some("u"), Some("h"))
        );
        assert_eq!(m.command, "PRIVMSG");
        assert_eq!(m.params, vec!["#c", "hello world"]);
    }

    #[test]
    fn parses_numerics_and_missing_trailing() {
        let m = p(b":irc.x 005 me CHANTYPES=# PREFIX=(ov)@+ :are supported");
        assert_eq!(m.command, "005");
        assert_eq!(m.params.len(), 4);
        assert!(m.source.unwrap().is_server());
        let m = p(b"PING  irc.x");
        assert_eq!(m.params, vec!["irc.x"]);
        let m = p(b":a JOIN #c");
        assert_eq!(m.trailing(), "#c");
        let m = p(b":a PRIVMSG #c :");
        assert_eq!(m.params, vec!["#c", ""]);
        assert!(Message::parse(b"", WINDOWS_1252).is_none());
        assert!(Message::parse(b"@a=b ", WINDOWS_1252).is_none());
    }

    #[test]
    fn latin1_lines_are_decoded_with_the_fallback() {
        let m = p(b":n!u@h PRIVMSG #c :caf\xe9 cr\xe8me");
        assert_eq!(m.trailing(), "café crème");
        // Valid UTF-8 is kept as is.
        let m = p(":n!u@h PRIVMSG #c :café".as_bytes());
        assert_eq!(m.trailing(), "café");
        // NUL bytes are dropped.
        let m = p(b":n PRIVMSG #c :a\0b");
        assert_eq!(m.trailing(), "ab");
    }

    #[test]
    fn tag_escaping_round_trips() {
        let v = "a;b c\\d\r\ne";
        assert_eq!(unescape_tag(&escape_tag(v)), v);
        assert_eq!(unescape_tag("trailing\\"), "trailing");
    }

    #[test]
    fn lines_refuse_injection() {
        assert_eq!(
            Line::new("PRIVMSG", &["#c", "hi\r\nQUIT :x"]),
            Err(LineError::ForbiddenCharacter)
        );
        assert_eq!(
            Line::new("PRIVMSG", &["#c", "a\0b"]),
            Err(LineError::ForbiddenCharacter)
        );
        assert!(Line::new("PRIVMSG", &["#c d", "x"]).is_err());
        assert!(Line::new("PRIVMSG", &[":c", "x"]).is_err());
        assert!(Line::new("PRI VMSG", &["x"]).is_err());
        assert_eq!(
            Line::raw("WHOIS x\nQUIT"),
            Err(LineError::ForbiddenCharacter)
        );
        assert!(Line::tagged(&[("a b", None)], "TAGMSG", &["#c"]).is_err());
    }

    #[test]
    fn lines_are_written_with_a_colon_only_where_needed() {
        let l = Line::new("PRIVMSG", &["#c", "hello world"]).unwrap();
        assert_eq!(l.as_str(), "PRIVMSG #c :hello world");
        let l = Line::new("JOIN", &["#c", "key"]).unwrap();
        assert_eq!(l.as_str(), "JOIN #c key");
        let l = Line::new("PRIVMSG", &["#c", ":)"]).unwrap();
        assert_eq!(l.as_str(), "PRIVMSG #c ::)");
        let l = Line::new("TOPIC", &["#c", ""]).unwrap();
        assert_eq!(l.as_str(), "TOPIC #c :");
        let l = Line::tagged(
            &[("+typing", Some("active")), ("label", Some("a;b"))],
            "TAGMSG",
            &["#c"],
        )
        .unwrap();
        assert_eq!(l.as_str(), "@+typing=active;label=a\\:b TAGMSG #c");
        assert_eq!(l.command(), "TAGMSG");
        let mut out = Vec::new();
        l.write_to(&mut out);
        assert!(out.ends_with(b"\r\n"));
    }

    #[test]
    fn raw_lines_drop_a_slash_and_refuse_empty() {
        assert_eq!(Line::raw("/whois bob").unwrap().as_str(), "whois bob");
        assert!(Line::raw("   ").is_err());
        assert!(Line::raw(&"x".repeat(600)).is_err());
    }

    #[test]
    fn lines_are_transcoded() {
        let l = Line::new("PRIVMSG", &["#c", "café"])
            .unwrap()
            .with_encoding(encoding_for("latin1"));
        let mut out = Vec::new();
        l.write_to(&mut out);
        assert_eq!(out, b"PRIVMSG #c caf\xe9\r\n");
        assert_eq!(wire_len("café", encoding_for("latin1")), 4);
        assert_eq!(wire_len("café", None), 5);
    }

    #[test]
    fn secrets_are_not_printed() {
        let l = Line::new("PASS", &["hunter2"]).unwrap();
        assert!(!format!("{l:?}").contains("hunter2"));
        let l = Line::new("AUTHENTICATE", &["c2VjcmV0"]).unwrap();
        assert!(!format!("{l:?}").contains("c2VjcmV0"));
    }
}
