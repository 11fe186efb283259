//! ISUPPORT (numeric 005): the facts a server announces about itself that
//! change how we talk to it — channel types, nickname prefixes and their
//! modes, case mapping, line length, MONITOR.

use crate::casemap::{CaseMapping, DEFAULT_CHANTYPES};

/// What the server told us in 005 lines (with RFC defaults until then).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Isupport {
    /// `CHANTYPES`.
    pub chantypes: String,
    /// `PREFIX`: (mode, prefix character), highest rank first.
    pub prefix: Vec<(char, char)>,
    /// `CASEMAPPING`.
    pub casemapping: CaseMapping,
    /// `CHANMODES` groups A,B,C,D (list, always-param, param-when-set, flag).
    pub chanmodes: [String; 4],
    /// `STATUSMSG` prefixes (`@#chan`).
    pub statusmsg: String,
    /// `MODES`: most mode changes with a parameter in one MODE command.
    pub modes: usize,
    /// `NETWORK`.
    pub network: Option<String>,
    /// `LINELEN` (bytes, tags excluded).
    pub linelen: usize,
    /// `MONITOR` limit, if the server has MONITOR.
    pub monitor: Option<usize>,
    /// `NICKLEN`.
    pub nicklen: Option<usize>,
    /// `CHATHISTORY`: most messages one history request returns.
    pub chathistory: Option<usize>,
}

impl Default for Isupport {
    fn default() -> Self {
        Self {
            chantypes: DEFAULT_CHANTYPES.to_owned(),
            prefix: vec![('o', '@'), ('v', '+')],
            casemapping: CaseMapping::Rfc1459,
            chanmodes: ["b".into(), "k".into(), "l".into(), "imnpst".into()],
            statusmsg: String::new(),
            modes: 3,
            network: None,
            linelen: 512,
            monitor: None,
            nicklen: None,
            chathistory: None,
        }
    }
}

impl Isupport {
    /// Applies the tokens of one 005 line (without the nick and the
    /// trailing "are supported by this server").
    pub fn apply<'a>(&mut self, tokens: impl IntoIterator<Item = &'a str>) {
        for tok in tokens {
            let (negate, tok) = match tok.strip_prefix('-') {
                Some(t) => (true, t),
                None => (false, tok),
            };
            let (key, value) = match tok.split_once('=') {
                Some((k, v)) => (k, v),
                None => (tok, ""),
            };
            let defaults = Isupport::default();
            match key.to_ascii_uppercase().as_str() {
                "CHANTYPES" => {
                    self.chantypes = if negate {
                        defaults.chantypes
                    } else {
                        value.to_owned()
                    }
                }
                "PREFIX" => {
                    self.prefix = if negate {
                        defaults.prefix
                    } else {
                        parse_prefix(value).unwrap_or_default()
                    }
                }
                "CASEMAPPING" => self.casemapping = CaseMapping::from_isupport(value),
                "CHANMODES" => {
                    let mut groups = value.split(',').map(str::to_owned);
                    for slot in self.chanmodes.iter_mut() {
                        *slot = groups.next().unwrap_or_default();
                    }
                }
                "STATUSMSG" => self.statusmsg = value.to_owned(),
                "MODES" => self.modes = value.parse().unwrap_or(3).max(1),
                "NETWORK" => self.network = (!negate).then(|| value.to_owned()),
                "LINELEN" => self.linelen = value.parse().unwrap_or(512).clamp(512, 16384),
                "MONITOR" => self.monitor = (!negate).then(|| value.parse().unwrap_or(100)),
                "NICKLEN" | "MAXNICKLEN" => self.nicklen = value.parse().ok(),
                "CHATHISTORY" => self.chathistory = (!negate).then(|| value.parse().unwrap_or(100)),
                _ => {}
            }
        }
    }

    /// The rank of a status mode (0 = highest), if it is one.
    pub fn rank_of_mode(&self, mode: char) -> Option<usize> {
        self.prefix.iter().position(|(m, _)| *m == mode)
    }

    /// The status mode of a prefix character (`@` -> `o`).
    pub fn mode_of_prefix(&self, prefix: char) -> Option<char> {
        self.prefix
            .iter()
            .find(|(_, p)| *p == prefix)
            .map(|(m, _)| *m)
    }

    /// Whether a mode takes a parameter when set (`+`) or unset (`-`).
    pub fn mode_takes_param(&self, mode: char, adding: bool) -> bool {
        if self.rank_of_mode(mode).is_some() {
            return true;
        }
        let [a, b, c, _] = &self.chanmodes;
        a.contains(mode) || b.contains(mode) || (adding && c.contains(mode))
    }

    /// Whether `name` is a channel name.
    pub fn is_channel(&self, name: &str) -> bool {
        name.chars()
            .next()
            .is_some_and(|c| self.chantypes.contains(c))
    }

    /// Splits `@#chan` into (`@`, `#chan`) when the server has STATUSMSG.
    pub fn strip_statusmsg<'a>(&self, target: &'a str) -> (&'a str, &'a str) {
        let n = target
            .char_indices()
            .find(|(_, c)| !self.statusmsg.contains(*c))
            .map(|(i, _)| i)
            .unwrap_or(target.len());
        target.split_at(n)
    }
}

fn parse_prefix(value: &str) -> Option<Vec<(char, char)>> {
    let rest = value.strip_prefix('(')?;
    let (modes, prefixes) = rest.split_once(')')?;
    Some(modes.chars().zip(prefixes.chars()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_inspircd_tokens() {
        let mut i = Isupport::default();
        i.apply("AWAYLEN=200 CASEMAPPING=ascii CHANMODES=b,k,l,imnpst CHANTYPES=# PREFIX=(qaohv)~&@%+ STATUSMSG=@+ MODES=20 NETWORK=TestNet MONITOR=30 LINELEN=512".split(' '));
        assert_eq!(i.chantypes, "#");
        assert_eq!(i.casemapping, CaseMapping::Ascii);
        assert_eq!(i.prefix[0], ('q', '~'));
        assert_eq!(i.mode_of_prefix('%'), Some('h'));
        assert_eq!(i.rank_of_mode('v'), Some(4));
        assert_eq!(i.modes, 20);
        assert_eq!(i.monitor, Some(30));
        assert_eq!(i.network.as_deref(), Some("TestNet"));
        assert!(i.mode_takes_param('k', false));
        assert!(i.mode_takes_param('l', true));
        assert!(!i.mode_takes_param('l', false));
        assert!(!i.mode_takes_param('n', true));
        assert!(i.mode_takes_param('o', false));
        assert_eq!(i.strip_statusmsg("@#c"), ("@", "#c"));
        assert_eq!(i.strip_statusmsg("#c"), ("", "#c"));
        i.apply(["-MONITOR"]);
        assert_eq!(i.monitor, None);
    }

    #[test]
    fn bad_prefix_means_no_prefixes() {
        let mut i = Isupport::default();
        i.apply(["PREFIX=garbage"]);
        assert!(i.prefix.is_empty());
        i.apply(["PREFIX="]);
        assert!(i.prefix.is_empty());
    }
}
