//! CTCP: `\x01COMMAND args\x01` inside PRIVMSG (queries, ACTION) and
//! NOTICE (replies).

/// A CTCP message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ctcp<'a> {
    /// The command, as sent (compare case-insensitively).
    pub command: &'a str,
    /// Everything after the command and one space.
    pub args: &'a str,
}

impl Ctcp<'_> {
    /// Whether the command is `cmd` (ASCII case-insensitive).
    pub fn is(&self, cmd: &str) -> bool {
        self.command.eq_ignore_ascii_case(cmd)
    }
}

/// Parses a CTCP message; the closing `\x01` is optional, as clients
/// often drop it.
pub fn parse(text: &str) -> Option<Ctcp<'_>> {
    let inner = text.strip_prefix('\x01')?;
    let inner = inner.strip_suffix('\x01').unwrap_or(inner);
    let (command, args) = match inner.split_once(' ') {
        Some((c, a)) => (c, a),
        None => (inner, ""),
    };
    if command.is_empty() {
        return None;
    }
    Some(Ctcp { command, args })
}

/// Writes a CTCP message. `\x01` in the arguments is dropped.
pub fn format(command: &str, args: &str) -> String {
    let args: String = args.chars().filter(|c| *c != '\x01').collect();
    if args.is_empty() {
        format!("\x01{command}\x01")
    } else {
        format!("\x01{command} {args}\x01")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_queries_and_actions() {
        assert_eq!(
            parse("\x01ACTION waves\x01"),
            Some(Ctcp {
                command: "ACTION",
                args: "waves"
            })
        );
        assert_eq!(
            parse("\x01VERSION"),
            Some(Ctcp {
                command: "VERSION",
                args: ""
            })
        );
        assert!(parse("\x01version\x01").unwrap().is("VERSION"));
        assert_eq!(parse("plain"), None);
        assert_eq!(parse("\x01\x01"), None);
    }

    #[test]
    fn formats_without_nested_markers() {
        assert_eq!(format("PING", "123"), "\x01PING 123\x01");
        assert_eq!(format("VERSION", ""), "\x01VERSION\x01");
        assert_eq!(format("ACTION", "a\x01b"), "\x01ACTION ab\x01");
    }
}
