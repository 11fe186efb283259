//! Quote and signature stripping: the chat body of a mail is what its
//! author wrote this time, without the quoted history under or above it
//! ("On … wrote:" and `>` lines, Outlook's "-----Original Message-----")
//! and without the signature after `-- `. Modelled on what Delta Chat
//! does; when stripping would leave nothing, the text stays whole. The
//! full text stays reachable (the `full` preference, the `show-full-text`
//! command).

/// A simplified text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Simplified {
    /// What the author wrote.
    pub text: String,
    /// Whether something (quote, signature) was cut.
    pub cut: bool,
}

fn is_quote(line: &str) -> bool {
    line.starts_with('>')
}

fn is_blank(line: &str) -> bool {
    line.trim().is_empty()
}

/// "On Tue, 1 Jul 2025, Bob wrote:", "Am … schrieb …:", "Le … a écrit :".
fn is_quote_headline(line: &str) -> bool {
    let l = line.trim_end();
    l.len() <= 120 && l.ends_with(':') && !l.starts_with('>')
}

fn is_outlook_separator(line: &str) -> bool {
    let l = line.trim();
    (l.starts_with("-----") && l.to_ascii_lowercase().contains("original message"))
        || (l.len() >= 20 && l.chars().all(|c| c == '_'))
}

/// Strips quotes and signature.
pub fn simplify(text: &str) -> Simplified {
    let normalized = text.replace("\r\n", "\n").replace('\r', "\n");
    let lines: Vec<&str> = normalized.split('\n').collect();
    let mut start = 0;
    let mut end = lines.len();
    let mut cut = false;

    // A quote at the top (top-posted reply below it is rare; a reply
    // under a full quote is common in mailing lists).
    let mut i = 0;
    while i < end && (is_blank(lines[i]) || is_quote(lines[i])) {
        i += 1;
    }
    if i > 0 && lines[..i].iter().any(|l| is_quote(l)) {
        start = i;
        cut = true;
    } else if i < end && is_quote_headline(lines[i]) {
        let mut j = i + 1;
        while j < end && (is_blank(lines[j]) || is_quote(lines[j])) {
            j += 1;
        }
        if lines[i + 1..j].iter().any(|l| is_quote(l)) {
            start = j;
            cut = true;
        }
    }

    // The signature: everything from a "-- " line.
    if let Some(pos) = lines[start..end]
        .iter()
        .position(|l| *l == "-- " || *l == "--  ")
    {
        end = start + pos;
        cut = true;
    }
    // Outlook's quoted original.
    if let Some(pos) = lines[start..end]
        .iter()
        .position(|l| is_outlook_separator(l))
    {
        end = start + pos;
        cut = true;
    }
    // A quote at the bottom, with its headline.
    let mut k = end;
    while k > start && (is_blank(lines[k - 1]) || is_quote(lines[k - 1])) {
        k -= 1;
    }
    if k < end && lines[k..end].iter().any(|l| is_quote(l)) {
        end = k;
        cut = true;
        while end > start && is_blank(lines[end - 1]) {
            end -= 1;
        }
        if end > start && is_quote_headline(lines[end - 1]) {
            end -= 1;
        }
    }

    let kept = lines[start..end].join("\n");
    let kept = kept.trim_matches('\n').trim_end();
    if kept.trim().is_empty() {
        return Simplified {
            text: normalized.trim().to_owned(),
            cut: false,
        };
    }
    Simplified {
        text: kept.to_owned(),
        cut,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bottom_quote_and_headline_go() {
        let s = simplify("Sounds good!\n\nOn Tue, 1 Jul 2025, Bob wrote:\n> lunch?\n> at 12\n");
        assert_eq!(s.text, "Sounds good!");
        assert!(s.cut);
    }

    #[test]
    fn top_quote_goes() {
        let s = simplify("> lunch?\n> at 12\n\nyes, 12 is fine");
        assert_eq!(s.text, "yes, 12 is fine");
    }

    #[test]
    fn signature_goes() {
        let s = simplify("Hi\nsee you\n-- \nBob\nACME Corp\n");
        assert_eq!(s.text, "Hi\nsee you");
        assert!(s.cut);
    }

    #[test]
    fn outlook_original_goes() {
        let s = simplify("Agreed.\n\n-----Original Message-----\nFrom: x\nSubject: y\n\nold");
        assert_eq!(s.text, "Agreed.");
    }

    #[test]
    fn interleaved_quotes_stay_and_nothing_is_emptied() {
        let t = "> q1\nanswer 1\n> q2\nanswer 2";
        assert_eq!(simplify(t).text, "answer 1\n> q2\nanswer 2");
        let only = "> all quote\n> nothing else";
        let s = simplify(only);
        assert_eq!(s.text, only);
        assert!(!s.cut);
        assert_eq!(simplify("plain text").text, "plain text");
        assert!(!simplify("plain text").cut);
    }
}
